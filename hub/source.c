/*
 * Inbound CDP sources: POST /v1/sources/NAME for each [source.NAME] of
 * hub.conf (docs/PROTOCOL.md "Sources", docs/OPERATIONS.md). This file
 * holds what every vendor shares: the configuration, the route, the order
 * of the steps and the answers; each vendor's signature and vocabulary are
 * in source_<vendor>.c.
 *
 * The steps: find the source, verify the request as the vendor documents
 * (a bad signature or token, or a signed time outside the window, is 401
 * and stores nothing), refuse a delivery seen before (409, the replay
 * cache below), map the payload to Segment-shaped events, parse them with
 * segment.c and store them with the /v1/batch ingest path. The answer
 * follows the vendor's retry rules: 2xx only once the events are
 * committed, 5xx (retried) when storing failed, 400 only for events that
 * are bad in themselves, and for lenient vendors (Bloomreach) never a 400
 * for one bad record: the good ones are stored and the bad ones listed.
 */
#include "source_int.h"
#include "db.h"
#include "throttle.h"
#include "../common/conf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "hub"

static const struct ts_src_vendor *const vendors[] = {
    &ts_src_segment, &ts_src_rudderstack, &ts_src_braze,
    &ts_src_klaviyo, &ts_src_bloomreach,  &ts_src_salesforce,
};
#define NVENDORS (sizeof vendors / sizeof vendors[0])

const struct ts_src_vendor *ts_src_vendor_of(int type)
{
    for (size_t i = 0; i < NVENDORS; i++)
        if (vendors[i]->type == type)
            return vendors[i];
    return NULL;
}

const char *ts_hub_source_type_name(int type)
{
    const struct ts_src_vendor *v = ts_src_vendor_of(type);
    return v ? v->name : "?";
}

/* ---- configuration ------------------------------------------------------------*/

static enum ts_err get(const struct ts_conf *c, const char *sec, const char *key, char *out,
                       size_t outsz, char *err, size_t errsz)
{
    const char *v = ts_conf_get(c, sec, key, "");
    if (ts_strlcpy(out, v, outsz) >= outsz)
        return ts_conf_errf(c, sec, key, err, errsz, "value too long (max %zu bytes)", outsz - 1);
    return TS_OK;
}

static bool name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

static enum ts_err one_source(const struct ts_conf *c, const char *sec,
                              struct ts_hub_source_conf *s, char *err, size_t errsz)
{
    int rc;
    char type[64];
    long win;
    memset(s, 0, sizeof *s);
    if (ts_strlcpy(s->name, sec + 7, sizeof s->name) >= sizeof s->name || !name_ok(s->name))
        return ts_conf_errf(c, sec, "type", err, errsz,
                            "the source name must be 1 to 63 letters, digits, '-' or '_'");
    if ((rc = get(c, sec, "type", type, sizeof type, err, errsz)) ||
        (rc = get(c, sec, "secret", s->secret, sizeof s->secret, err, errsz)) ||
        (rc = get(c, sec, "user", s->user, sizeof s->user, err, errsz)) ||
        (rc = get(c, sec, "header", s->header, sizeof s->header, err, errsz)))
        return rc;
    for (size_t i = 0; i < NVENDORS; i++)
        if (strcmp(type, vendors[i]->name) == 0)
            s->type = vendors[i]->type;
    const struct ts_src_vendor *v = ts_src_vendor_of(s->type);
    if (!v)
        return ts_conf_errf(c, sec, "type", err, errsz,
                            "expected segment_webhook, rudderstack_webhook, braze_currents, "
                            "klaviyo_webhook, bloomreach_webhook or salesforce_data_action");
    /* Where a vendor signs nothing, the configured secret is the only
     * proof: it must be there and not guessable. */
    if (strlen(s->secret) < 16)
        return ts_conf_errf(c, sec, "secret", err, errsz,
                            "required, at least 16 characters (the vendor's signing secret or "
                            "token)");
    if (s->type == TS_SRC_BLOOMREACH && !s->user[0])
        ts_strlcpy(s->user, "tillside", sizeof s->user);
    if (s->type == TS_SRC_RUDDERSTACK && !s->header[0])
        ts_strlcpy(s->header, "X-Tillside-Secret", sizeof s->header);
    if ((rc = ts_conf_get_int(c, sec, "replay_window_s", v->default_window_s, 0, 7 * 86400, &win,
                              err, errsz)))
        return rc;
    s->window_s = (int)win;
    return TS_OK;
}

enum ts_err ts_hub_sources_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                                size_t errsz)
{
    const char *sec;
    o->nsources = 0;
    for (size_t i = 0; (sec = ts_conf_section(c, i)); i++) {
        if (strncmp(sec, "source.", 7) != 0)
            continue;
        if (o->nsources == TS_HUB_MAX_SOURCES)
            return ts_conf_errf(c, sec, "type", err, errsz, "at most %d sources",
                                TS_HUB_MAX_SOURCES);
        int rc = one_source(c, sec, &o->sources[o->nsources], err, errsz);
        if (rc)
            return rc;
        o->nsources++;
    }
    return TS_OK;
}

int ts_hub_sources_check(const struct ts_hub_config *cfg, void *out_file)
{
    FILE *f = out_file;
    for (size_t i = 0; i < cfg->nsources; i++) {
        const struct ts_hub_source_conf *s = &cfg->sources[i];
        fprintf(f, "source %s: %s at POST /v1/sources/%s", s->name,
                ts_hub_source_type_name(s->type), s->name);
        if (s->window_s)
            fprintf(f, ", signed time within %d s", s->window_s);
        fprintf(f, "\n");
    }
    return 0;
}

/* ---- counters -------------------------------------------------------------------*/

enum {
    C_ACCEPTED,
    C_DUPLICATE,
    C_UNKNOWN,
    C_REJECTED,
    C_SIGNATURE,
    C_STALE,
    C_REPLAY,
    C_THROTTLED,
    C_N
};
static const char *const counter_names[C_N] = {"accepted", "duplicate",     "unknown",
                                               "rejected", "bad_signature", "stale",
                                               "replay",   "throttled"};
static atomic_ullong counters[TS_HUB_MAX_SOURCES][C_N];

static void count(size_t src, int what, size_t n)
{
    if (src < TS_HUB_MAX_SOURCES && n)
        atomic_fetch_add(&counters[src][what], n);
}

void ts_hub_sources_metrics(const struct ts_hub_config *cfg, ts_buf *b)
{
    if (!cfg->nsources)
        return;
    ts_buf_printf(b, "# HELP tillside_hub_source_events_total Events and requests from inbound "
                     "CDP sources since start, by source and result.\n"
                     "# TYPE tillside_hub_source_events_total counter\n");
    for (size_t i = 0; i < cfg->nsources; i++)
        for (int k = 0; k < C_N; k++)
            ts_buf_printf(b, "tillside_hub_source_events_total{source=\"%s\",result=\"%s\"} %llu\n",
                          cfg->sources[i].name, counter_names[k], atomic_load(&counters[i][k]));
}

/* ---- the replay cache -------------------------------------------------------------*/

#define REPLAY_KEEP_MS (7LL * 24 * 3600 * 1000)

enum ts_err ts_hub_source_schema(struct ts_hub_store *s)
{
    int rc = ts_hub_db_ddl(s, "CREATE TABLE IF NOT EXISTS source_replay(source TEXT NOT NULL,"
                              " delivery TEXT NOT NULL, at INTEGER NOT NULL,"
                              " PRIMARY KEY(source, delivery))");
    return rc ? rc
              : ts_hub_db_ddl(s, "CREATE INDEX IF NOT EXISTS source_replay_at"
                                 " ON source_replay(at)");
}

enum { Q_SEEN, Q_ADD, Q_PRUNE, Q_N };
static const char *const replay_sql[Q_N] = {
    [Q_SEEN] = "SELECT 1 FROM source_replay WHERE source = ?1 AND delivery = ?2",
    [Q_ADD] = ("INSERT INTO source_replay(source, delivery, at) VALUES(?1, ?2, ?3)"
               " ON CONFLICT DO NOTHING"),
    [Q_PRUNE] = "DELETE FROM source_replay WHERE at < ?1",
};
static const struct ts_hub_stmts replay_stmts = {replay_sql, NULL, Q_N};

static enum ts_err replay_seen(struct ts_hub_store *s, const char *src, const char *key, bool *seen)
{
    ts_hub_db_use(s);
    struct ts_sql_stmt *st = ts_hub_db_st(s, &replay_stmts, Q_SEEN);
    int rc = TS_ERR_DB;
    if (st) {
        ts_sql_bind_text(st, 1, src);
        ts_sql_bind_text(st, 2, key);
        int r = ts_sql_step(st);
        *seen = r == TS_SQL_ROW;
        rc = r == TS_SQL_ROW || r == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(s, "replay cache");
        ts_sql_reset(st);
    }
    ts_hub_db_release(s);
    return rc;
}

static enum ts_err step(struct ts_hub_store *s, struct ts_sql_stmt *st)
{
    if (!st)
        return TS_ERR_DB;
    int r = ts_sql_step(st);
    ts_sql_reset(st);
    return r == TS_SQL_DONE || r == TS_SQL_ROW ? TS_OK : ts_hub_db_werr(s, "replay cache");
}

static enum ts_err replay_add(struct ts_hub_store *s, const char *src, const char *key,
                              int64_t now_ms)
{
    int rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    struct ts_sql_stmt *st = ts_hub_db_st(s, &replay_stmts, Q_ADD);
    if (st) {
        ts_sql_bind_text(st, 1, src);
        ts_sql_bind_text(st, 2, key);
        ts_sql_bind_int64(st, 3, now_ms);
    }
    rc = step(s, st);
    if (rc == TS_OK && (st = ts_hub_db_st(s, &replay_stmts, Q_PRUNE)))
        ts_sql_bind_int64(st, 1, now_ms - REPLAY_KEEP_MS);
    if (rc == TS_OK)
        rc = step(s, st);
    return ts_hub_db_write_end(s, rc, false);
}

/* The body's SHA-256 in hex: the delivery's identity where the vendor
 * gives none (an identical signed body sent again is a replay). */
static void body_hash(const struct ts_httpd_req *req, char *out, size_t outsz)
{
    uint8_t h[32];
    char hex[65];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md ||
        mbedtls_md(md, (const unsigned char *)(req->body ? req->body : ""), req->body_len, h)) {
        ts_strlcpy(out, "", outsz);
        return;
    }
    ts_hex_encode(h, sizeof h, hex);
    snprintf(out, outsz, "sha256:%s", hex);
}

/* ---- the request --------------------------------------------------------------------*/

static void answer(struct ts_httpd_resp *resp, int status, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    resp->status = status;
    ts_buf_reset(&resp->body);
    ts_buf_puts(&resp->body, text ? text : "{}");
    free(text);
    json_decref(o);
}

/* Events that segment.c refuses one at a time are dropped and listed
 * (lenient vendors); *kept is the array of the others. */
static enum ts_err drop_bad(struct ts_src_ctx *c, json_t **kept)
{
    json_t *good = json_array();
    size_t i;
    json_t *e;
    if (!good)
        return TS_ERR_NOMEM;
    json_array_foreach(c->out, i, e)
    {
        json_t *one = json_pack("{s:[O]}", "batch", e);
        char *text = one ? json_dumps(one, JSON_COMPACT) : NULL;
        json_decref(one);
        if (!text) {
            json_decref(good);
            return TS_ERR_NOMEM;
        }
        struct ts_seg_batch *b = NULL;
        char err[256];
        int rc = ts_seg_parse(text, strlen(text), c->now_ms, &b, err, sizeof err);
        free(text);
        ts_seg_batch_free(b);
        if (rc == TS_ERR_NOMEM) {
            json_decref(good);
            return rc;
        }
        if (rc == TS_OK)
            json_array_append(good, e);
        else { /* named by the vendor's id where it has one ("batch[0]: " cut) */
            const char *mid = json_string_value(json_object_get(e, "messageId"));
            const char *why = strchr(err, ':') ? strchr(err, ':') + 1 : err;
            while (*why == ' ')
                why++;
            if (mid)
                ts_src_reject(c, "event %s: %s", strchr(mid, ':') ? strchr(mid, ':') + 1 : mid,
                              why);
            else
                ts_src_reject(c, "event %zu: %s", i, why);
        }
    }
    *kept = good;
    return TS_OK;
}

static size_t find_source(const struct ts_hub_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

enum ts_err ts_src_batch(struct ts_src_ctx *c, const struct ts_src_vendor *v,
                         struct ts_seg_batch **out, size_t *nevents, char *err, size_t errsz)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->req->body ? c->req->body : "", c->req->body_len,
                              JSON_REJECT_DUPLICATES, &jerr);
    json_t *batch = NULL, *events = NULL;
    char *text = NULL;
    int rc;
    *out = NULL;
    *nevents = 0;
    if (!root) {
        ts_errf(err, errsz, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                jerr.text);
        return TS_ERR_INVAL;
    }
    if ((rc = v->map(c, root)) != TS_OK) {
        ts_errf(err, errsz, "%s", rc == TS_ERR_NOMEM ? "out of memory" : c->err);
        goto out;
    }
    if (v->lenient)
        rc = drop_bad(c, &events);
    else
        events = json_incref(c->out);
    if (rc == TS_OK) {
        *nevents = json_array_size(events);
        batch = json_pack("{s:o}", "batch", events);
        text = batch ? json_dumps(batch, JSON_COMPACT) : NULL;
        rc = text ? ts_seg_parse(text, strlen(text), c->now_ms, out, err, errsz) : TS_ERR_NOMEM;
    }
    if (rc == TS_ERR_NOMEM)
        ts_errf(err, errsz, "out of memory");
out:
    free(text);
    json_decref(batch);
    json_decref(root);
    return rc;
}

/* Verified and not a replay: map, parse, store and answer. */
static void ingest(struct ts_hub_api *api, struct ts_src_ctx *c, size_t idx,
                   const struct ts_src_vendor *v, struct ts_httpd_resp *resp)
{
    struct ts_seg_batch *b = NULL;
    char err[300];
    size_t n;
    int rc = ts_src_batch(c, v, &b, &n, err, sizeof err);
    if (rc != TS_OK) {
        TS_WARN(COMP, "source %s: refused from %s: %s", c->conf->name, c->req->remote_addr, err);
        count(idx, C_REJECTED, n ? n : 1);
        if (rc == TS_ERR_INVAL && v->lenient) /* a 400 would stop the vendor's webhook */
            answer(resp, 200,
                   json_pack("{s:b,s:i,s:i,s:[s]}", "success", 0, "accepted", 0, "rejected",
                             (int)(n ? n : 1), "errors", err));
        else
            ts_httpd_error(resp, rc == TS_ERR_NOMEM ? 503 : 400, err);
        return;
    }
    struct ts_hub_ingest_result r = {0};
    rc = ts_hub_store_ingest(api->store, b, c->now_ms, &r);
    if (rc != TS_OK) {
        /* 5xx: every vendor retries these, and nothing was committed. */
        ts_httpd_error(resp, rc == TS_ERR_FULL ? 507 : 503,
                       rc == TS_ERR_FULL ? "hub storage full" : "cannot store the events");
        ts_seg_batch_free(b);
        return;
    }
    if (c->replay_key[0] && replay_add(api->store, c->conf->name, c->replay_key, c->now_ms))
        TS_WARN(COMP, "source %s: delivery stored but not remembered as seen", c->conf->name);
    count(idx, C_ACCEPTED, r.applied);
    count(idx, C_DUPLICATE, r.duplicates);
    count(idx, C_UNKNOWN, c->unknown);
    count(idx, C_REJECTED, c->rejected);
    TS_INFO(COMP, "source %s: events=%zu applied=%zu duplicates=%zu unknown=%zu rejected=%zu",
            c->conf->name, b->n, r.applied, r.duplicates, c->unknown, c->rejected);
    json_t *o = json_pack("{s:b,s:I,s:I,s:I,s:I}", "success", 1, "accepted", (json_int_t)r.applied,
                          "duplicates", (json_int_t)r.duplicates, "ignored", (json_int_t)c->unknown,
                          "rejected", (json_int_t)c->rejected);
    if (o && c->errors)
        json_object_set(o, "errors", c->errors);
    answer(resp, 200, o);
    ts_seg_batch_free(b);
}

void ts_hub_sources_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                           struct ts_httpd_resp *resp)
{
    const char *name = req->path + strlen("/v1/sources/");
    size_t idx = find_source(api->cfg, name);
    if (idx == SIZE_MAX) {
        ts_httpd_error(resp, 404, "no such source");
        return;
    }
    if (!req->method || strcmp(req->method, "POST") != 0) {
        ts_strlcpy(resp->extra_headers, "Allow: POST\r\n", sizeof resp->extra_headers);
        ts_httpd_error(resp, 405, "method not allowed");
        return;
    }
    if (req->body_len > TS_HUB_MAX_BODY) {
        ts_httpd_error(resp, 413, "body larger than 500 KB");
        return;
    }
    const struct ts_hub_source_conf *conf = &api->cfg->sources[idx];
    const struct ts_src_vendor *v = ts_src_vendor_of(conf->type);
    struct ts_src_ctx c = {.conf = conf, .req = req, .now_ms = api->now_ms(), .out = json_array()};
    if (!c.out) {
        ts_httpd_error(resp, 503, "out of memory");
        return;
    }
    /* An address that failed signatures too often is not even checked
     * (throttle.c, as the write key): guessing a secret is slowed to a few
     * tries per hour, the vendor's own deliveries from elsewhere go on. */
    char addr[64];
    int rc;
    ts_hub_throttle_client_addr(req, addr, sizeof addr);
    int wait = ts_hub_throttle_auth_wait(api->throttle, TS_HUB_SECRET_SOURCE, addr, c.now_ms);
    if (wait) {
        count(idx, C_THROTTLED, 1);
        ts_hub_throttle_answer_429(resp, wait, "too many bad signatures from this address");
        goto out;
    }
    rc = v->verify(&c);
    if (rc != TS_OK) {
        /* The reason goes to the log (never the secret); the sender learns
         * only which check failed. */
        bool stale = rc == TS_ERR_GONE;
        count(idx, stale ? C_STALE : C_SIGNATURE, 1);
        if (!stale) /* a stale time was signed with the right secret */
            ts_hub_throttle_auth_failed(api->throttle, TS_HUB_SECRET_SOURCE, addr, c.now_ms);
        TS_WARN(COMP, "source %s: refused from %s: %s", conf->name, req->remote_addr,
                stale ? c.err : "bad signature or credentials");
        ts_httpd_error(resp, 401,
                       stale ? "stale: signed time outside the replay window"
                             : "bad signature or credentials");
        goto out;
    }
    ts_hub_throttle_auth_ok(api->throttle, TS_HUB_SECRET_SOURCE, addr);
    if (!c.replay_key[0])
        body_hash(req, c.replay_key, sizeof c.replay_key);
    bool seen = false;
    if (replay_seen(api->store, conf->name, c.replay_key, &seen) != TS_OK) {
        ts_httpd_error(resp, 503, "cannot read the replay cache");
        goto out;
    }
    if (seen) {
        count(idx, C_REPLAY, 1);
        TS_WARN(COMP, "source %s: replayed delivery from %s refused", conf->name, req->remote_addr);
        if (v->replay_2xx)
            answer(resp, 200,
                   json_pack("{s:b,s:i,s:i,s:b}", "success", 1, "accepted", 0, "duplicates", 0,
                             "replay", 1));
        else
            ts_httpd_error(resp, 409, "replay: this delivery was stored before");
        goto out;
    }
    ingest(api, &c, idx, v, resp);
out:
    json_decref(c.out);
    json_decref(c.errors);
}
