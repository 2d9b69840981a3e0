/* Agent configuration: INI file → struct ts_agent_config, validated. */
#include "agent.h"
#include "conf.h"
#include "input.h"
#include "tls.h"
#include "url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A key written with nothing after '=' ("token_file =") means "use the
 * default", as if it were not there. */
static const char *get(const struct ts_conf *c, const char *sec, const char *key, const char *def)
{
    const char *v = ts_conf_get(c, sec, key, def);
    return v && *v ? v : def;
}

/* Copies a string option; too long is an error naming file:line. */
static enum ts_err get_str(const struct ts_conf *c, const char *sec, const char *key,
                           const char *def, char *out, size_t outsz, char *err, size_t errsz)
{
    const char *v = get(c, sec, key, def);
    if (ts_strlcpy(out, v ? v : "", outsz) >= outsz)
        return ts_conf_errf(c, sec, key, err, errsz, "value too long (max %zu)", outsz - 1);
    return TS_OK;
}

/* ts_conf_get_int, with an empty value meaning the default. */
static enum ts_err get_int(const struct ts_conf *c, const char *sec, const char *key, long def,
                           long min, long max, long *out, char *err, size_t errsz)
{
    const char *v = ts_conf_get(c, sec, key, NULL);
    if (v && !*v) {
        *out = def;
        return TS_OK;
    }
    return ts_conf_get_int(c, sec, key, def, min, max, out, err, errsz);
}

static enum ts_err fail(const struct ts_conf *c, const char *sec, const char *key, char *err,
                        size_t errsz, const char *msg)
{
    return ts_conf_errf(c, sec, key, err, errsz, "%s", msg);
}

/* <state_dir>/enrolled.conf: here, with the rest of configuration loading,
 * so loading a configuration never calls into enrolment. */
enum ts_err ts_enrolled_conf_load(const char *state_dir, struct ts_conf **out, char *path_out,
                                  size_t pathsz, char *err, size_t errsz)
{
    char path[TS_AGENT_PATH_MAX + 32];
    if (pathsz)
        path_out[0] = '\0';
    snprintf(path, sizeof path, "%s/%s", state_dir, TS_ENROLLED_CONF);
    if (access(path, F_OK) != 0)
        return TS_ERR_NOTFOUND;
    int rc = ts_conf_load(path, out, err, errsz);
    if (rc == TS_OK && pathsz)
        ts_strlcpy(path_out, path, pathsz);
    return rc;
}

/* Where a key is read from: <state_dir>/enrolled.conf (written by
 * `tillside enroll`, enr) overrides the main file for the keys it sets, so
 * errors name the file and line the value really came from. */
static const struct ts_conf *pick(const struct ts_conf *c, const struct ts_conf *enr,
                                  const char *sec, const char *key)
{
    return enr && ts_conf_get(enr, sec, key, NULL) ? enr : c;
}

/* "host:port" or "[v6]:port" → host (without brackets) and port. Only
 * loopback addresses are accepted: the API carries customer data. */
static enum ts_err parse_listen(const char *v, char *host, size_t hostsz, int *port)
{
    const char *colon;
    size_t hl;
    if (v[0] == '[') {
        const char *end = strchr(v, ']');
        if (!end || end[1] != ':')
            return TS_ERR_INVAL;
        hl = (size_t)(end - v - 1);
        if (hl >= hostsz)
            return TS_ERR_INVAL;
        memcpy(host, v + 1, hl);
        colon = end + 1;
    } else {
        colon = strrchr(v, ':');
        if (!colon || (hl = (size_t)(colon - v)) >= hostsz)
            return TS_ERR_INVAL;
        memcpy(host, v, hl);
    }
    host[hl] = '\0';
    int p;
    if (ts_port_parse(colon + 1, strlen(colon + 1), true, &p) != TS_OK)
        return TS_ERR_INVAL;
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0)
        return TS_ERR_PERM;
    if (strcmp(host, "localhost") == 0)
        ts_strlcpy(host, "127.0.0.1", hostsz);
    *port = p;
    return TS_OK;
}

/* [identity] previous_tenant_key + previous_key_version: during a key
 * rotation the key this terminal tries second. Both or neither. */
static enum ts_err previous_key(const struct ts_conf *c, struct ts_agent_config *o, char *err,
                                size_t errsz)
{
    long pver;
    int rc = get_int(c, "identity", "previous_key_version", 0, 0, 1000000, &pver, err, errsz);
    if (rc)
        return rc;
    const char *key = get(c, "identity", "previous_tenant_key", NULL);
    if (!key && !pver)
        return TS_OK;
    if (!key)
        return fail(c, "identity", "previous_tenant_key", err, errsz,
                    "required when previous_key_version is set");
    if (!pver || pver == o->tenant.version)
        return fail(c, "identity", "previous_key_version", err, errsz,
                    "required with previous_tenant_key, and different from key_version");
    if (ts_tenant_key_parse(key, (int)pver, &o->prev_tenant) != TS_OK)
        return fail(c, "identity", "previous_tenant_key", err, errsz,
                    "expected 32 to 64 bytes written as hex");
    return TS_OK;
}

/* [page] consent_channels = email, sms | none: which marketing channels the
 * page's consent form and POST /api/v1/consent offer (a retailer without
 * SMS marketing does not ask about it). */
static enum ts_err consent_channels(const struct ts_conf *c, struct ts_agent_config *o, char *err,
                                    size_t errsz)
{
    const char *v = get(c, "page", "consent_channels", "email, sms");
    o->consent_channels = 0;
    if (strcmp(v, "none") == 0)
        return TS_OK;
    char buf[128];
    ts_strlcpy(buf, v, sizeof buf);
    char *save = NULL;
    size_t n = 0;
    for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save), n++) {
        if (strcmp(t, "email") == 0)
            o->consent_channels |= TS_CONSENT_EMAIL;
        else if (strcmp(t, "sms") == 0)
            o->consent_channels |= TS_CONSENT_SMS;
        else
            return ts_conf_errf(c, "page", "consent_channels", err, errsz,
                                "\"%s\": expected email, sms (comma-separated) or none", t);
    }
    if (n == 0)
        return fail(c, "page", "consent_channels", err, errsz,
                    "empty: name email and/or sms, or none");
    return TS_OK;
}

static enum ts_err from_conf(const struct ts_conf *c, const struct ts_conf *enr,
                             struct ts_agent_config *o, char *err, size_t errsz)
{
    int rc;
    long v;
#define STR(sec, key, def, field)                                                                  \
    if ((rc = get_str(pick(c, enr, sec, key), sec, key, def, o->field, sizeof o->field, err,       \
                      errsz)))                                                                     \
    return rc
#define INT(sec, key, def, min, max, field)                                                        \
    if ((rc = get_int(pick(c, enr, sec, key), sec, key, def, min, max, &v, err, errsz)))           \
        return rc;                                                                                 \
    o->field = v
    STR("agent", "store", "", store);
    STR("agent", "terminal", "", terminal);
    STR("agent", "state_dir", "/var/lib/tillside", state_dir);
    const char *lvl = get(c, "agent", "log_level", "info");
    if (ts_log_level_parse(lvl, &o->log_level) != TS_OK)
        return fail(c, "agent", "log_level", err, errsz, "expected debug, info, warn or error");
    STR("hub", "url", "", hub_url);
    struct ts_url url;
    if (ts_url_parse(o->hub_url, &url, NULL, 0) != TS_OK)
        return fail(pick(c, enr, "hub", "url"), "hub", "url", err, errsz,
                    enr || o->hub_url[0] ? "expected https://host:port"
                                         : "expected https://host:port (or run `tillside enroll`)");
    STR("hub", "ca", "/etc/tillside/ca.pem", hub_ca);
    STR("hub", "cert", "/etc/tillside/terminal.pem", hub_cert);
    STR("hub", "key", "/etc/tillside/terminal.key", hub_key);
    INT("hub", "poll_interval_ms", 5000, 50, 3600000, poll_interval_ms);
    INT("hub", "timeout_ms", 5000, 100, 600000, timeout_ms);
    INT("hub", "lookup_timeout_ms", 300, 10, 60000, lookup_timeout_ms);
    INT("hub", "page_limit", 500, 1, 1000, page_limit);
    INT("hub", "long_poll_s", 20, 0, 25, long_poll_s);
    INT("cache", "retention_days", 30, 1, 3650, retention_days);
    INT("cache", "max_cards", 2000000, 1, 100000000, max_cards);
    INT("page", "idle_clear_s", 120, 0, 86400, idle_clear_s);
    if ((rc = consent_channels(c, o, err, errsz)))
        return rc;
    INT("outbox", "backoff_ms", 1000, 10, 600000, outbox_backoff_ms);
    INT("outbox", "backoff_max_ms", 300000, 10, 3600000, outbox_backoff_max_ms);
    INT("outbox", "batch_bytes", 475 * 1024, 33 * 1024, 475 * 1024, outbox_batch_bytes);
    STR("hub", "pin_sha256", "", hub_pin);
    unsigned char pin[32];
    if (o->hub_pin[0] && ts_tls_pin_parse(o->hub_pin, pin) != TS_OK)
        return fail(pick(c, enr, "hub", "pin_sha256"), "hub", "pin_sha256", err, errsz,
                    "expected the SHA-256 of the hub's public key in base64 (44 characters) or "
                    "hex (64 digits)");
    INT("hub", "renew_days", 30, 0, 3650, renew_days);
    long kver;
    const struct ts_conf *ic = pick(c, enr, "identity", "tenant_key");
    if ((rc = get_int(ic, "identity", "key_version", 1, 1, 1000000, &kver, err, errsz)))
        return rc;
    const char *key = get(ic, "identity", "tenant_key", NULL);
    if (!key || !*key)
        return fail(c, "identity", "tenant_key", err, errsz,
                    "missing: the tenant key (hex) from enrolment is required");
    if (ts_tenant_key_parse(key, (int)kver, &o->tenant) != TS_OK)
        return fail(ic, "identity", "tenant_key", err, errsz,
                    "expected 32 to 64 bytes written as hex");
    /* An enrolment that delivered a rotation's second key wins, as for the
     * current one. */
    if ((rc = previous_key(pick(c, enr, "identity", "previous_tenant_key"), o, err, errsz)))
        return rc;
    const char *listen = get(c, "api", "listen", "127.0.0.1:8765");
    rc = parse_listen(listen, o->api_host, sizeof o->api_host, &o->api_port);
    if (rc == TS_ERR_PERM)
        return fail(c, "api", "listen", err, errsz,
                    "must be a loopback address (127.0.0.1, ::1 or localhost): the API "
                    "serves customer data");
    if (rc)
        return fail(c, "api", "listen", err, errsz, "expected host:port");
    char def_token[TS_AGENT_PATH_MAX + 16];
    snprintf(def_token, sizeof def_token, "%s/api.token", o->state_dir);
    STR("api", "token_file", def_token, token_file);
    /* [input.*] and [guard]: every driver's own validation, the one run
     * does when it opens the inputs (drivers/input.h). */
    if ((rc = ts_inputs_check(c, err, errsz)))
        return rc;
    if ((rc = ts_guard_conf(c, &o->guard, err, errsz)) ||
        (rc = ts_rules_conf_read(c, &o->rules, err, errsz)))
        return rc;
#undef STR
#undef INT
    return TS_OK;
}

enum ts_err ts_agent_config_parse(const char *name, const char *text, struct ts_agent_config *out,
                                  char *err, size_t errsz)
{
    struct ts_conf *c = NULL;
    int rc = ts_conf_parse(name, text, &c, err, errsz);
    if (rc)
        return rc;
    struct ts_agent_config cfg = {0};
    ts_strlcpy(cfg.path, name, sizeof cfg.path);
    rc = from_conf(c, NULL, &cfg, err, errsz);
    ts_conf_free(c);
    if (rc == TS_OK)
        *out = cfg;
    return rc;
}

/* A file also merges what enrolment wrote into its state directory. */
enum ts_err ts_agent_config_load(const char *path, struct ts_agent_config *out, char *err,
                                 size_t errsz)
{
    char *text = NULL;
    struct ts_conf *c = NULL, *enr = NULL;
    struct ts_agent_config cfg = {0};
    int rc = ts_read_file(path, 1 << 20, &text, NULL);
    if (rc) {
        snprintf(err, errsz, "%s: cannot read (%s)", path, ts_strerror(rc));
        return rc;
    }
    if ((rc = ts_conf_parse(path, text, &c, err, errsz)))
        goto out;
    rc = ts_enrolled_conf_load(get(c, "agent", "state_dir", "/var/lib/tillside"), &enr,
                               cfg.enrolled, sizeof cfg.enrolled, err, errsz);
    if (rc == TS_ERR_NOTFOUND)
        rc = TS_OK;
    if (rc)
        goto out;
    ts_strlcpy(cfg.path, path, sizeof cfg.path);
    if ((rc = from_conf(c, enr, &cfg, err, errsz)) == TS_OK)
        *out = cfg;
out:
    ts_conf_free(enr);
    ts_conf_free(c);
    free(text);
    return rc;
}

void ts_agent_cache_path(const struct ts_agent_config *c, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/cache.db", c->state_dir);
}

int ts_agent_ident_keys(const struct ts_agent_config *c, enum ts_ident_kind kind, const char *norm,
                        char keys[2][TS_IDENT_KEY_HEX])
{
    int n = 0;
    if (ts_ident_key(&c->tenant, kind, norm, keys[n]) == TS_OK)
        n++;
    if (n && c->prev_tenant.len && ts_ident_key(&c->prev_tenant, kind, norm, keys[n]) == TS_OK)
        n++;
    return n;
}

bool ts_agent_kv_usable(const struct ts_agent_config *c, int kv, int prev_kv)
{
    int mine[2] = {c->tenant.version, c->prev_tenant.len ? c->prev_tenant.version : 0};
    for (int i = 0; i < 2; i++)
        if (mine[i] && (mine[i] == kv || mine[i] == prev_kv))
            return true;
    return false;
}
