/*
 * The trust thread of a running agent (docs/OPERATIONS.md "Renewal",
 * "Expiry"): it watches the terminal certificate, renews it over the
 * mutual-TLS link when fewer than [hub] renew_days are left (a new key each
 * time, files replaced so that a crash at any point leaves a working pair),
 * probes the hub's certificate hourly, and from 14 days ahead warns once a
 * day, in `status` and in /metrics. Its state has its own lock (w.mu).
 */
#include "agent.h"
#include "hublink.h"
#include "httpc.h"
#include "pki.h"
#include "tls.h"
#include "url.h"
#include "worker.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMP "trust"
#define WARN_DAYS 14
#define CHECK_MS (3600LL * 1000) /* certificate files and the hub, hourly */
#define WARN_EVERY_MS (24LL * 3600 * 1000)
#define RENEW_RETRY_MIN_MS (60LL * 1000)
#define RENEW_RETRY_MAX_MS (3600LL * 1000)

struct ts_trust {
    const struct ts_agent_config *cfg; /* borrowed, outlives the handle */
    struct ts_worker w;                /* the thread; w.mu also guards everything below */
    bool have_own, have_hub;
    int own_days, hub_days;
    int64_t own_not_after; /* Unix seconds */
    char own_error[256];   /* our certificate cannot be read */
    char renew_error[256]; /* the last renewal attempt failed */
};

static bool sleep_or_stop(struct ts_trust *t, int64_t ms)
{
    return ts_worker_sleep(&t->w, ms, TS_WORKER_NO_KICK);
}

/*
 * A renewal replaces key and certificate as key.new + cert.new, then
 * renames the key, then the certificate. Crashed before the first rename:
 * the old pair is intact, the leftovers go. Crashed between the two: the
 * new key is in place, so the new certificate must follow it.
 */
static void finish_interrupted_renewal(const struct ts_agent_config *cfg)
{
    char kn[TS_AGENT_PATH_MAX + 8], cn[TS_AGENT_PATH_MAX + 8];
    snprintf(kn, sizeof kn, "%s.new", cfg->hub_key);
    snprintf(cn, sizeof cn, "%s.new", cfg->hub_cert);
    if (access(kn, F_OK) == 0) {
        unlink(kn);
        unlink(cn);
        TS_INFO(COMP, "discarded an unfinished certificate renewal (%s)", kn);
    } else if (access(cn, F_OK) == 0) {
        if (rename(cn, cfg->hub_cert) == 0)
            TS_WARN(COMP, "finished an interrupted certificate renewal: %s", cfg->hub_cert);
        else
            TS_ERROR(COMP, "cannot finish an interrupted renewal: %s -> %s: %s", cn, cfg->hub_cert,
                     strerror(errno));
    }
}

static void check_own(struct ts_trust *t)
{
    struct ts_pki_cert_info i;
    char err[256];
    int rc = ts_pki_cert_info_file(t->cfg->hub_cert, &i, err, sizeof err);
    pthread_mutex_lock(&t->w.mu);
    t->have_own = rc == TS_OK;
    if (rc == TS_OK) {
        t->own_days = i.days_left;
        t->own_not_after = i.not_after;
        t->own_error[0] = '\0';
    } else {
        ts_strlcpy(t->own_error, err, sizeof t->own_error);
    }
    pthread_mutex_unlock(&t->w.mu);
}

/* One handshake with the hub, for its certificate's days left. */
static void probe_hub(struct ts_trust *t)
{
    const struct ts_agent_config *cfg = t->cfg;
    char err[512];
    struct ts_url url;
    if (ts_url_parse(cfg->hub_url, &url, NULL, 0) != TS_OK || !url.https)
        return; /* plain http: a proxy's certificate is not ours to watch */
    const char *host = url.host;
    int port = url.port;
    struct ts_tls_opts o = {.ca_file = cfg->hub_ca,
                            .cert_file = cfg->hub_cert,
                            .key_file = cfg->hub_key,
                            .pin_sha256 = cfg->hub_pin};
    struct ts_tls_ctx *ctx = NULL;
    struct ts_tls_conn *conn = NULL;
    if (ts_tls_ctx_new(&o, &ctx, err, sizeof err) == TS_OK &&
        ts_tls_connect(ctx, host, port, (int)cfg->timeout_ms, &conn, err, sizeof err) == TS_OK) {
        const struct ts_peer_id *p = ts_tls_peer(conn);
        pthread_mutex_lock(&t->w.mu);
        t->have_hub = p != NULL;
        t->hub_days = p ? p->days_left : 0;
        pthread_mutex_unlock(&t->w.mu);
    } else {
        TS_DEBUG(COMP, "hub certificate check: %s", err);
    }
    ts_tls_close(conn);
    ts_tls_ctx_free(ctx);
}

/* Writes the renewed pair as described at finish_interrupted_renewal. */
static enum ts_err install_pair(const struct ts_agent_config *cfg, const char *key_pem,
                                const char *cert_pem, char *why, size_t whysz)
{
    char kn[TS_AGENT_PATH_MAX + 8], cn[TS_AGENT_PATH_MAX + 8];
    snprintf(kn, sizeof kn, "%s.new", cfg->hub_key);
    snprintf(cn, sizeof cn, "%s.new", cfg->hub_cert);
    int rc = ts_write_file_atomic(cn, cert_pem, strlen(cert_pem), 0644);
    if (rc == TS_OK)
        rc = ts_write_file_atomic(kn, key_pem, strlen(key_pem), 0600);
    if (rc) {
        ts_errf(why, whysz, "cannot write the new certificate next to %s: %s", cfg->hub_cert,
                ts_strerror(rc));
        unlink(kn);
        unlink(cn);
        return rc;
    }
    if (rename(kn, cfg->hub_key) != 0) {
        ts_errf(why, whysz, "cannot replace %s: %s", cfg->hub_key, strerror(errno));
        unlink(kn);
        unlink(cn);
        return TS_ERR_IO;
    }
    if (rename(cn, cfg->hub_cert) != 0) {
        /* the next start finishes it (finish_interrupted_renewal) */
        ts_errf(why, whysz, "cannot replace %s: %s", cfg->hub_cert, strerror(errno));
        return TS_ERR_IO;
    }
    return TS_OK;
}

/*
 * POST /v1/renew with a request for a new key, over the link the current
 * certificate still opens. The hub names the new certificate after the
 * one we present; we check it is for our new key and the same terminal.
 */
static enum ts_err renew(struct ts_trust *t, char *why, size_t whysz)
{
    const struct ts_agent_config *cfg = t->cfg;
    char *key_pem = NULL, *csr_pem = NULL, *body = NULL, err[512];
    unsigned char spki[32];
    struct ts_httpc *http = NULL;
    struct ts_http_resp r = {0};
    struct ts_pki_cert_info old, neu;
    json_t *o = NULL;
    int rc;
    if ((rc = ts_pki_cert_info_file(cfg->hub_cert, &old, why, whysz)) ||
        (rc = ts_pki_new_key_csr(old.cn, &key_pem, &csr_pem, spki, why, whysz)))
        goto out;
    if ((rc = ts_hublink_client(cfg, (int)cfg->timeout_ms, &http, err, sizeof err))) {
        ts_errf(why, whysz, "%s", err);
        goto out;
    }
    json_t *req = json_pack("{s:s}", "csr", csr_pem);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        rc = TS_ERR_NOMEM;
        goto out;
    }
    if ((rc = ts_httpc_request(http, "POST", "/v1/renew", NULL, "application/json", body,
                               strlen(body), (int)cfg->timeout_ms * 2, &r))) {
        ts_errf(why, whysz, "%s", ts_httpc_error(http));
        goto out;
    }
    o = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    const char *cert = json_string_value(json_object_get(o, "certificate"));
    rc = TS_ERR_PROTO;
    if (r.status != 200) {
        const char *e = json_string_value(json_object_get(o, "error"));
        ts_errf(why, whysz, "the hub answered HTTP %d: %s", r.status, e ? e : "no reason given");
        goto out;
    }
    if (!cert || ts_pki_cert_info_pem(cert, strlen(cert), &neu, err, sizeof err) != TS_OK ||
        memcmp(neu.spki_sha256, spki, 32) != 0 || strcmp(neu.cn, old.cn) != 0 ||
        strcmp(neu.ou, old.ou) != 0) {
        ts_errf(why, whysz, "the hub's certificate is not for this key and terminal");
        goto out;
    }
    if ((rc = install_pair(cfg, key_pem, cert, why, whysz)))
        goto out;
    char until[32];
    ts_iso8601(neu.not_after * 1000, until, sizeof until);
    TS_INFO(COMP, "renewed the terminal certificate: serial %s -> %s, valid until %s (%d days)",
            old.serial, neu.serial, until, neu.days_left);
out:
    json_decref(o);
    free(body);
    ts_http_resp_free(&r);
    ts_httpc_free(http);
    ts_pki_free_secret(key_pem);
    free(csr_pem);
    return rc;
}

/* Fills warnings (t->w.mu held); each text names the problem and the date. */
static void warnings_locked(const struct ts_trust *t, json_t *arr)
{
    const struct ts_agent_config *cfg = t->cfg;
    char msg[512], until[32];
    if (t->have_own && t->own_days <= WARN_DAYS) {
        ts_iso8601(t->own_not_after * 1000, until, sizeof until);
        int n = t->own_days < 0
                    ? snprintf(msg, sizeof msg, "terminal certificate expired on %s", until)
                    : snprintf(msg, sizeof msg, "terminal certificate expires in %d day%s (%s)",
                               t->own_days, t->own_days == 1 ? "" : "s", until);
        if (n > 0 && (size_t)n < sizeof msg && cfg->renew_days == 0)
            snprintf(msg + n, sizeof msg - (size_t)n, "; automatic renewal is off");
        json_array_append_new(arr, json_string(msg));
    }
    if (t->renew_error[0]) {
        snprintf(msg, sizeof msg, "certificate renewal failed: %s", t->renew_error);
        json_array_append_new(arr, json_string(msg));
    }
    if (!t->have_own && t->own_error[0]) {
        snprintf(msg, sizeof msg, "cannot read the terminal certificate: %s", t->own_error);
        json_array_append_new(arr, json_string(msg));
    }
    if (t->have_hub && t->hub_days <= WARN_DAYS) {
        snprintf(msg, sizeof msg, "hub certificate %s %d day%s%s",
                 t->hub_days < 0 ? "expired" : "expires in",
                 t->hub_days < 0 ? -t->hub_days : t->hub_days,
                 (t->hub_days == 1 || t->hub_days == -1) ? "" : "s", t->hub_days < 0 ? " ago" : "");
        json_array_append_new(arr, json_string(msg));
    }
}

static void trust_main(struct ts_worker *w, void *arg)
{
    (void)w;
    struct ts_trust *t = arg;
    const struct ts_agent_config *cfg = t->cfg;
    int64_t next_renew = 0, next_probe = 0, last_warn = -WARN_EVERY_MS;
    unsigned failures = 0;
    char why[512];
    for (;;) {
        int64_t now = ts_now_mono_ms();
        check_own(t);
        pthread_mutex_lock(&t->w.mu);
        bool due = t->have_own && cfg->renew_days > 0 && t->own_days < cfg->renew_days;
        int days = t->own_days;
        pthread_mutex_unlock(&t->w.mu);
        if (due && now >= next_renew) {
            TS_INFO(COMP, "terminal certificate has %d day%s left (renew_days = %ld): renewing",
                    days, days == 1 ? "" : "s", cfg->renew_days);
            why[0] = '\0';
            int rc = renew(t, why, sizeof why);
            pthread_mutex_lock(&t->w.mu);
            ts_strlcpy(t->renew_error, rc ? why : "", sizeof t->renew_error);
            pthread_mutex_unlock(&t->w.mu);
            if (rc) {
                failures++;
                /* Jittered, so a fleet whose hub was down does not come back
                 * at the same second. */
                next_renew = now + ts_backoff_ms(failures - 1, RENEW_RETRY_MIN_MS,
                                                 RENEW_RETRY_MAX_MS, RENEW_RETRY_MIN_MS / 2);
                TS_WARN(COMP, "certificate renewal failed: %s (next try in %lld s)", why,
                        (long long)((next_renew - now) / 1000));
            } else {
                failures = 0;
                check_own(t);
            }
        }
        if (now >= next_probe) {
            probe_hub(t);
            next_probe = now + CHECK_MS;
        }
        json_t *warn = json_array();
        pthread_mutex_lock(&t->w.mu);
        warnings_locked(t, warn);
        pthread_mutex_unlock(&t->w.mu);
        if (json_array_size(warn) && now - last_warn >= WARN_EVERY_MS) {
            size_t i;
            json_t *x;
            json_array_foreach(warn, i, x) TS_WARN(COMP, "%s", json_string_value(x));
            last_warn = now;
        }
        json_decref(warn);
        int64_t wait = next_probe - now;
        if (due && next_renew > now && next_renew - now < wait)
            wait = next_renew - now;
        if (wait > CHECK_MS)
            wait = CHECK_MS;
        if (sleep_or_stop(t, wait < 1000 ? 1000 : wait))
            break;
    }
}

enum ts_err ts_trust_start(const struct ts_agent_config *cfg, struct ts_trust **out, char *err,
                           size_t errsz)
{
    struct ts_trust *t = calloc(1, sizeof *t);
    if (!t)
        return TS_ERR_NOMEM;
    t->cfg = cfg;
    if (ts_worker_init(&t->w) != TS_OK) {
        free(t);
        return TS_ERR_NOMEM;
    }
    finish_interrupted_renewal(cfg);
    check_own(t); /* status has the days left from the first request on */
    if (ts_worker_start(&t->w, trust_main, t) != TS_OK) {
        ts_errf(err, errsz, "cannot start the certificate thread");
        ts_worker_destroy(&t->w);
        free(t);
        return TS_ERR_NOMEM;
    }
    *out = t;
    return TS_OK;
}

void ts_trust_stop(struct ts_trust *t)
{
    if (!t)
        return;
    ts_worker_stop(&t->w);
    ts_worker_destroy(&t->w);
    free(t);
}

void ts_trust_status_add(struct ts_trust *t, struct json_t *o)
{
    if (!t || !o)
        return;
    json_t *w = json_array();
    char until[32];
    pthread_mutex_lock(&t->w.mu);
    if (t->have_own)
        ts_iso8601(t->own_not_after * 1000, until, sizeof until);
    json_object_set_new(o, "cert_days_left", t->have_own ? json_integer(t->own_days) : json_null());
    json_object_set_new(o, "cert_not_after", t->have_own ? json_string(until) : json_null());
    json_object_set_new(o, "hub_cert_days_left",
                        t->have_hub ? json_integer(t->hub_days) : json_null());
    warnings_locked(t, w);
    pthread_mutex_unlock(&t->w.mu);
    json_object_set_new(o, "warnings", w);
}

bool ts_trust_days(struct ts_trust *t, int *own, bool *have_hub, int *hub)
{
    if (!t)
        return false;
    pthread_mutex_lock(&t->w.mu);
    bool have = t->have_own;
    *own = t->own_days;
    *have_hub = t->have_hub;
    *hub = t->hub_days;
    pthread_mutex_unlock(&t->w.mu);
    return have;
}
