/*
 * The hub's INI configuration. Everything is checked at start-up so that a
 * typo stops the hub with "file:line: what is wrong" instead of surfacing as
 * refused agents at 3 a.m.
 */
#include "hub.h"
#include "../common/conf.h"
#include "proxy.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies an optional string value; a value that does not fit is an error
 * rather than a silently truncated path or key. */
static enum ts_err get_str(const struct ts_conf *c, const char *sec, const char *key,
                           const char *def, char *out, size_t outsz, char *err, size_t errsz)
{
    const char *v = ts_conf_get(c, sec, key, def);
    if (ts_strlcpy(out, v ? v : "", outsz) >= outsz) {
        char where[TS_HUB_PATH_MAX + 32];
        snprintf(err, errsz, "%s: [%s] %s: value too long (max %zu bytes)",
                 ts_conf_where(c, sec, key, where, sizeof where), sec, key, outsz - 1);
        return TS_ERR_CONFIG;
    }
    return TS_OK;
}

static enum ts_err fail(const struct ts_conf *c, const char *sec, const char *key, const char *what,
                        char *err, size_t errsz)
{
    char where[TS_HUB_PATH_MAX + 32];
    snprintf(err, errsz, "%s: [%s] %s: %s", ts_conf_where(c, sec, key, where, sizeof where), sec,
             key, what);
    return TS_ERR_CONFIG;
}

/* "host:port" with a non-empty host (or "[v6]") and a port 0..65535. */
static bool listen_ok(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] == '\0')
        return false;
    long port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        port = port * 10 + (*p - '0');
        if (port > 65535)
            return false;
    }
    return true;
}

/* Enrolment and renewal (hub/enroll.c, docs/OPERATIONS.md): the second
 * listener needs the CA that signs terminal certificates. */
static enum ts_err trust_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz)
{
    int rc;
    long days;
    if ((rc = get_str(c, "hub", "enroll_listen", "", o->enroll_listen, sizeof o->enroll_listen, err,
                      errsz)) ||
        (rc = get_str(c, "hub", "ca_cert", "", o->ca_cert, sizeof o->ca_cert, err, errsz)) ||
        (rc = get_str(c, "hub", "ca_key", "", o->ca_key, sizeof o->ca_key, err, errsz)) ||
        (rc = get_str(c, "hub", "public_url", "", o->public_url, sizeof o->public_url, err,
                      errsz)) ||
        (rc = ts_conf_get_int(c, "hub", "cert_days", 90, 1, 3650, &days, err, errsz)))
        return rc;
    o->cert_days = (int)days;
    if (o->enroll_listen[0] && !listen_ok(o->enroll_listen))
        return fail(c, "hub", "enroll_listen", "expected host:port", err, errsz);
    if (o->enroll_listen[0] && !o->ca_key[0])
        return fail(c, "hub", "ca_key",
                    "required when enroll_listen is set (the key of the CA that signs terminal "
                    "certificates)",
                    err, errsz);
    if (o->ca_key[0] && !o->ca_cert[0] && !o->client_ca[0])
        return fail(c, "hub", "ca_cert", "required when ca_key is set", err, errsz);
    if (o->public_url[0] && strncmp(o->public_url, "https://", 8) != 0 &&
        strncmp(o->public_url, "http://", 7) != 0)
        return fail(c, "hub", "public_url", "expected https://host:port", err, errsz);
    return TS_OK;
}

/* The CDP's listener and the server's capacities ([hub], sync/httpd.h;
 * docs/OPERATIONS.md "Sizing"): the defaults serve 10,000 terminals. */
static enum ts_err serve_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz)
{
    static const struct {
        const char *key;
        long def, min, max;
        size_t off;
    } ints[] = {
        {"max_connections", 16384, 16, 1000000, offsetof(struct ts_hub_config, max_connections)},
        {"max_unauthenticated", 1024, 8, 100000,
         offsetof(struct ts_hub_config, max_unauthenticated)},
        {"max_unauthenticated_per_address", 128, 1, 100000,
         offsetof(struct ts_hub_config, max_unauthenticated_per_address)},
        {"handshake_timeout_s", 10, 1, 300, offsetof(struct ts_hub_config, handshake_timeout_s)},
        {"request_head_timeout_s", 10, 1, 300,
         offsetof(struct ts_hub_config, request_head_timeout_s)},
        {"workers", 8, 1, 256, offsetof(struct ts_hub_config, workers)},
        {"retry_after_s", 2, 1, 3600, offsetof(struct ts_hub_config, retry_after_s)},
        {"max_feed_polls", 15000, 1, 1000000, offsetof(struct ts_hub_config, max_feed_polls)},
        {"max_purchase_uploads", 64, 1, 100000,
         offsetof(struct ts_hub_config, max_purchase_uploads)},
        {"max_cdp_batches", 8, 1, 10000, offsetof(struct ts_hub_config, max_cdp_batches)},
    };
    int rc;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        long v;
        if ((rc = ts_conf_get_int(c, "hub", ints[i].key, ints[i].def, ints[i].min, ints[i].max, &v,
                                  err, errsz)))
            return rc;
        *(int *)(void *)((char *)o + ints[i].off) = (int)v;
    }
    if ((rc = get_str(c, "hub", "cdp_listen", "", o->cdp_listen, sizeof o->cdp_listen, err, errsz)))
        return rc;
    if (o->cdp_listen[0] && !listen_ok(o->cdp_listen))
        return fail(c, "hub", "cdp_listen", "expected host:port", err, errsz);
    if (o->cdp_listen[0] && !o->tls_cert[0])
        return fail(c, "hub", "cdp_listen",
                    "needs tls_cert and tls_key (the CDP connects over TLS without a client "
                    "certificate)",
                    err, errsz);
    return TS_OK;
}

/* Key rotation and erasure tombstones (docs/OPERATIONS.md): [tenant]
 * previous_key / previous_key_version, [feed] tombstone_days. */
/*
 * [retention] (docs/OPERATIONS.md "Retention"): how long each kind of row
 * is kept. tombstone_days was [feed] tombstone_days before and is still
 * read there; giving both with different values is refused.
 */
static enum ts_err retention_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                                  size_t errsz)
{
    long old_days, days, purch, sent, quiet, processed, period;
    int rc;
    if ((rc = ts_conf_get_int(c, "feed", "tombstone_days", 90, 1, 3650, &old_days, err, errsz)) ||
        (rc = ts_conf_get_int(c, "retention", "tombstone_days", old_days, 1, 3650, &days, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, "retention", "purchases_days", 400, 0, 36500, &purch, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, "retention", "upstream_sent_days", 30, 1, 3650, &sent, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, "retention", "profile_quiet_days", 730, 0, 36500, &quiet, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, "retention", "processed_days", 30, 1, 3650, &processed, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, "retention", "period_s", 3600, 60, 86400, &period, err, errsz)))
        return rc;
    if (days != old_days && ts_conf_get(c, "feed", "tombstone_days", NULL))
        return fail(c, "retention", "tombstone_days",
                    "differs from [feed] tombstone_days (the older name): set one", err, errsz);
    o->tombstone_days = (int)days;
    o->retention = (struct ts_hub_retention){.purchases_days = (int)purch,
                                             .upstream_sent_days = (int)sent,
                                             .profile_quiet_days = (int)quiet,
                                             .processed_days = (int)processed,
                                             .period_s = (int)period};
    return TS_OK;
}

/* Key rotation (docs/OPERATIONS.md): [tenant] previous_key /
 * previous_key_version. */
static enum ts_err rotation_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                                 size_t errsz)
{
    long pkv;
    int rc;
    if ((rc =
             ts_conf_get_int(c, "tenant", "previous_key_version", 0, 0, 1000000, &pkv, err, errsz)))
        return rc;
    const char *hex = ts_conf_get(c, "tenant", "previous_key", "");
    if (!hex[0] && pkv == 0)
        return TS_OK;
    if (!hex[0])
        return fail(c, "tenant", "previous_key", "required when previous_key_version is set", err,
                    errsz);
    if (pkv == 0 || pkv == o->key.version)
        return fail(c, "tenant", "previous_key_version",
                    "required with previous_key, and different from key_version", err, errsz);
    if (ts_tenant_key_parse(hex, (int)pkv, &o->prev_key) != TS_OK || o->prev_key.len < 32)
        return fail(c, "tenant", "previous_key", "expected 64 to 128 hex digits (32 to 64 bytes)",
                    err, errsz);
    return TS_OK;
}

/* Forwarding purchases to the CDP (hub/upstream.c, docs/OPERATIONS.md):
 * [upstream] url, write_key, ca_file, max_backoff_s. */
static enum ts_err upstream_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                                 size_t errsz)
{
    long cap;
    int rc;
    if ((rc = get_str(c, "upstream", "url", "", o->upstream_url, sizeof o->upstream_url, err,
                      errsz)) ||
        (rc = get_str(c, "upstream", "write_key", "", o->upstream_write_key,
                      sizeof o->upstream_write_key, err, errsz)) ||
        (rc = get_str(c, "upstream", "ca_file", "/etc/ssl/certs/ca-certificates.crt",
                      o->upstream_ca_file, sizeof o->upstream_ca_file, err, errsz)) ||
        (rc = ts_conf_get_int(c, "upstream", "max_backoff_s", 300, 1, 86400, &cap, err, errsz)))
        return rc;
    o->upstream_max_backoff_s = (int)cap;
    /* Segment's docs give the batch endpoint in full; the base is kept. */
    size_t n = strlen(o->upstream_url);
    if (n >= 9 && strcmp(o->upstream_url + n - 9, "/v1/batch") == 0)
        o->upstream_url[n - 9] = '\0';
    if (o->upstream_url[0] && strncmp(o->upstream_url, "https://", 8) != 0 &&
        strncmp(o->upstream_url, "http://", 7) != 0)
        return fail(c, "upstream", "url", "expected https://host[:port]", err, errsz);
    /* write_key may come from [hub] secrets_file: sink_config.c checks it */
    return TS_OK;
}

/* Limits against guessing (hub/throttle.c, docs/OPERATIONS.md "Security"):
 * [lookup] and [throttle]. */
static enum ts_err throttle_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                                 size_t errsz)
{
    long rate, burst, slow, win, min, pct, free_f, cap;
    bool own = false;
    int rc;
    if ((rc = ts_conf_get_int(c, "lookup", "rate_per_min", 60, 1, 600000, &rate, err, errsz)) ||
        (rc = ts_conf_get_int(c, "lookup", "burst", 20, 1, 100000, &burst, err, errsz)) ||
        (rc = ts_conf_get_int(c, "lookup", "flagged_rate_per_min", 6, 1, 600000, &slow, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, "lookup", "miss_window_s", 600, 10, 86400, &win, err, errsz)) ||
        (rc = ts_conf_get_int(c, "lookup", "miss_min", 20, 1, 1000000, &min, err, errsz)) ||
        (rc = ts_conf_get_int(c, "lookup", "miss_percent", 80, 1, 100, &pct, err, errsz)) ||
        (rc = ts_conf_get_bool(c, "lookup", "orders_own_store", false, &own, err, errsz)) ||
        (rc = ts_conf_get_int(c, "throttle", "free_failures", 5, 1, 1000, &free_f, err, errsz)) ||
        (rc = ts_conf_get_int(c, "throttle", "max_delay_s", 300, 1, 86400, &cap, err, errsz)))
        return rc;
    if (slow > rate)
        return fail(c, "lookup", "flagged_rate_per_min",
                    "must not be above rate_per_min (it slows flagged terminals down)", err, errsz);
    o->lookup_rate_per_min = (int)rate;
    o->lookup_burst = (int)burst;
    o->lookup_flagged_rate_per_min = (int)slow;
    o->lookup_miss_window_s = (int)win;
    o->lookup_miss_min = (int)min;
    o->lookup_miss_percent = (int)pct;
    o->lookup_orders_own_store = own;
    o->throttle_free_failures = (int)free_f;
    o->throttle_max_delay_s = (int)cap;
    const char *hex = ts_conf_get(c, "lookup", "order_secret", "");
    size_t n = strlen(hex);
    o->order_secret_len = 0;
    if (n == 0)
        return TS_OK;
    size_t got = 0;
    if (n < 32 || n > 2 * sizeof o->order_secret ||
        ts_hex_decode(hex, o->order_secret, sizeof o->order_secret, &got) != TS_OK || got != n / 2)
        return fail(c, "lookup", "order_secret", "expected 32 to 128 hex digits (16 to 64 bytes)",
                    err, errsz);
    o->order_secret_len = n / 2;
    return TS_OK;
}

/* [fleet] stale_after_s, admin_user, admin_password_file (fleet*.c). The
 * password is read here, once: a missing or empty file stops the hub. */
static enum ts_err fleet_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz)
{
    long stale;
    int rc;
    if ((rc = ts_conf_get_int(c, "fleet", "stale_after_s", 300, 2, 30 * 86400, &stale, err,
                              errsz)) ||
        (rc = get_str(c, "fleet", "admin_user", "", o->fleet_admin_user, sizeof o->fleet_admin_user,
                      err, errsz)) ||
        (rc = get_str(c, "fleet", "admin_password_file", "", o->fleet_admin_password_file,
                      sizeof o->fleet_admin_password_file, err, errsz)))
        return rc;
    o->fleet_stale_after_s = (int)stale;
    if (strchr(o->fleet_admin_user, ':'))
        return fail(c, "fleet", "admin_user", "must not contain ':' (Basic auth)", err, errsz);
    if (!o->fleet_admin_user[0] != !o->fleet_admin_password_file[0])
        return fail(c, "fleet", o->fleet_admin_user[0] ? "admin_password_file" : "admin_user",
                    "admin_user and admin_password_file go together", err, errsz);
    if (!o->fleet_admin_user[0])
        return TS_OK;
    char *pw = NULL;
    size_t n = 0;
    if (ts_read_file(o->fleet_admin_password_file, sizeof o->fleet_admin_password, &pw, &n) !=
        TS_OK)
        return fail(c, "fleet", "admin_password_file", "cannot read it (at most 127 bytes)", err,
                    errsz);
    while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
        pw[--n] = '\0';
    bool ok = n >= 12 && n < sizeof o->fleet_admin_password;
    if (ok)
        memcpy(o->fleet_admin_password, pw, n + 1);
    memset(pw, 0, n);
    free(pw);
    if (!ok)
        return fail(c, "fleet", "admin_password_file",
                    "the password must be 12 to 127 bytes on its first line", err, errsz);
    return TS_OK;
}

static enum ts_err from_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                             size_t errsz)
{
    int rc;
    memset(o, 0, sizeof *o);
    if ((rc = get_str(c, "hub", "listen", "127.0.0.1:8443", o->listen, sizeof o->listen, err,
                      errsz)) ||
        (rc = get_str(c, "hub", "db", "/var/lib/tillside-hub/hub.db", o->db, sizeof o->db, err,
                      errsz)) ||
        (rc = get_str(c, "hub", "tls_cert", "", o->tls_cert, sizeof o->tls_cert, err, errsz)) ||
        (rc = get_str(c, "hub", "tls_key", "", o->tls_key, sizeof o->tls_key, err, errsz)) ||
        (rc = get_str(c, "hub", "client_ca", "", o->client_ca, sizeof o->client_ca, err, errsz)) ||
        (rc = get_str(c, "cdp", "write_key", "", o->write_key, sizeof o->write_key, err, errsz)) ||
        (rc = get_str(c, "tenant", "name", "", o->tenant, sizeof o->tenant, err, errsz)))
        return rc;
    if (!listen_ok(o->listen))
        return fail(c, "hub", "listen", "expected host:port", err, errsz);
    if (o->db[0] == '\0')
        return fail(c, "hub", "db", "must name the SQLite database file or a postgresql:// URI",
                    err, errsz);
    /* With a certificate the hub terminates TLS itself and then must verify
     * terminals, so the key and the client CA are required too. */
    if (o->tls_cert[0] != '\0') {
        if (o->tls_key[0] == '\0')
            return fail(c, "hub", "tls_key", "required when tls_cert is set", err, errsz);
        if (o->client_ca[0] == '\0')
            return fail(c, "hub", "client_ca", "required when tls_cert is set", err, errsz);
    }
    if ((rc = trust_conf(c, o, err, errsz)) || (rc = upstream_conf(c, o, err, errsz)) ||
        (rc = ts_hub_sinks_conf(c, o, err, errsz)) || (rc = ts_hub_proxy_conf(c, o, err, errsz)) ||
        (rc = throttle_conf(c, o, err, errsz)) || (rc = fleet_conf(c, o, err, errsz)) ||
        (rc = ts_hub_sources_conf(c, o, err, errsz)) || (rc = serve_conf(c, o, err, errsz)) ||
        (rc = retention_conf(c, o, err, errsz)) ||
        (rc = ts_hub_predict_conf(c, &o->predict, err, errsz)))
        return rc;
    const char *lvl = ts_conf_get(c, "hub", "log_level", "info");
    if (ts_log_level_parse(lvl, &o->log_level) != TS_OK)
        return fail(c, "hub", "log_level", "expected debug, info, warn or error", err, errsz);
    if (o->write_key[0] == '\0')
        return fail(c, "cdp", "write_key", "required (the CDP's Basic-auth key)", err, errsz);

    long kv, limit;
    if ((rc = ts_conf_get_int(c, "tenant", "key_version", 1, 1, 1000000, &kv, err, errsz)) ||
        (rc = ts_conf_get_int(c, "feed", "page_limit", 500, 1, TS_HUB_FEED_MAX_LIMIT, &limit, err,
                              errsz)))
        return rc;
    const char *hex = ts_conf_get(c, "tenant", "key", NULL);
    if (!hex || hex[0] == '\0')
        return fail(c, "tenant", "key", "required (hex, 32 to 64 bytes)", err, errsz);
    if (ts_tenant_key_parse(hex, (int)kv, &o->key) != TS_OK || o->key.len < 32)
        return fail(c, "tenant", "key", "expected 64 to 128 hex digits (32 to 64 bytes)", err,
                    errsz);
    o->page_limit = (int)limit;
    return rotation_conf(c, o, err, errsz);
}

/* Out-param is written on success only. */
static int finish(struct ts_conf *c, struct ts_hub_config *out, char *err, size_t errsz)
{
    struct ts_hub_config tmp;
    int rc = from_conf(c, &tmp, err, errsz);
    ts_conf_free(c);
    if (rc == TS_OK) {
        *out = tmp;
        ts_hub_predict_use(&out->predict); /* what ingest and card rebuilds band with */
    }
    return rc;
}

enum ts_err ts_hub_config_parse(const char *name, const char *text, struct ts_hub_config *out,
                                char *err, size_t errsz)
{
    struct ts_conf *c = NULL;
    int rc = ts_conf_parse(name, text, &c, err, errsz);
    return rc != TS_OK ? rc : finish(c, out, err, errsz);
}

enum ts_err ts_hub_config_load(const char *path, struct ts_hub_config *out, char *err, size_t errsz)
{
    struct ts_conf *c = NULL;
    int rc = ts_conf_load(path, &c, err, errsz);
    return rc != TS_OK ? rc : finish(c, out, err, errsz);
}
