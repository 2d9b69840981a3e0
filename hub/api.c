/*
 * The hub's HTTP API (docs/PROTOCOL.md): the ts_httpd handler with routing,
 * write-key authentication for the CDP, certificate scoping for agents, and
 * the JSON answers. Requests are hostile until proven otherwise: every input
 * is length-checked before use and the work per request is bounded (a batch
 * by the body limit, a feed page by the limit clamp).
 */
#include "hub.h"
#include "purchases.h"
#include "../sync/gzip.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "hub"

/* ---- small helpers --------------------------------------------------------*/

/* {"error": msg} with the message JSON-escaped (it may quote the request). */
static void fail(struct ts_httpd_resp *resp, int status, const char *msg)
{
    resp->status = status;
    ts_buf_reset(&resp->body);
    json_t *o = json_pack("{s:s}", "error", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    ts_buf_puts(&resp->body, s ? s : "{\"error\":\"internal error\"}");
    free(s);
    json_decref(o);
}

static void ok_json(struct ts_httpd_resp *resp, const char *text)
{
    resp->status = 200;
    ts_buf_reset(&resp->body);
    ts_buf_puts(&resp->body, text);
}

void ts_hub_cursor_format(uint32_t epoch, uint64_t seq, char out[TS_HUB_CURSOR_MAX])
{
    snprintf(out, TS_HUB_CURSOR_MAX, "c1.%08x.%llx", (unsigned)epoch, (unsigned long long)seq);
}

/* Lowercase hex digits of s[0..n) into *v; false on anything else. */
static bool hex_u64(const char *s, size_t n, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        *v = (*v << 4) | (uint64_t)d;
    }
    return true;
}

/* Only the canonical form ts_hub_cursor_format writes is accepted, so a
 * cursor that round-trips is byte-identical to the one the agent saved. */
enum ts_err ts_hub_cursor_parse(const char *s, uint32_t *epoch, uint64_t *seq)
{
    uint64_t e, v;
    if (strncmp(s, "c1.", 3) != 0 || strlen(s) < 13 || s[11] != '.')
        return TS_ERR_INVAL;
    const char *h = s + 12;
    size_t n = strlen(h);
    if (!hex_u64(s + 3, 8, &e) || n == 0 || n > 16 || (n > 1 && h[0] == '0') || !hex_u64(h, n, &v))
        return TS_ERR_INVAL;
    *epoch = (uint32_t)e;
    *seq = v;
    return TS_OK;
}

/* Constant-time comparison so the write key cannot be guessed byte by byte
 * from response times. */
static bool same_secret(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)(b[i] ^ (i < alen ? a[i] : 0));
    return diff == 0;
}

/* Basic auth with the write key as the user name; Segment sends
 * base64(write_key + ":") and some libraries put a password after it. */
static bool write_key_ok(const struct ts_hub_api *api, const struct ts_httpd_req *req)
{
    const char *h = req->msg ? ts_http_header(req->msg, "Authorization") : NULL;
    uint8_t dec[512];
    size_t n;
    if (!h || strncasecmp(h, "Basic ", 6) != 0)
        return false;
    h += 6;
    while (*h == ' ')
        h++;
    size_t len = strlen(h);
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    if (len > 600 || ts_base64_decode(h, len, dec, sizeof dec, &n) != TS_OK)
        return false;
    const char *colon = memchr(dec, ':', n);
    size_t user_len = colon ? (size_t)(colon - (const char *)dec) : n;
    return user_len > 0 && same_secret((const char *)dec, user_len, api->cfg->write_key);
}

/* Agent endpoints need a verified terminal certificate of this tenant. */
static bool peer_ok(const struct ts_hub_api *api, const struct ts_httpd_req *req, bool need_ou,
                    struct ts_httpd_resp *resp)
{
    const struct ts_peer_id *p = req->peer;
    const char *why = NULL;
    if (!p || !p->verified)
        why = need_ou ? "client certificate has no store (OU)"
                      : "a verified client certificate is required";
    else if (api->cfg->tenant[0] && strcmp(p->o, api->cfg->tenant) != 0)
        why = "client certificate belongs to another tenant (O)";
    else if (need_ou && p->ou[0] == '\0')
        why = "client certificate has no store (OU)";
    if (!why)
        return true;
    /* Logged: a terminal polling with the wrong certificate shows up here. */
    TS_WARN(COMP, "%s from %s (%s) refused: %s", req->path, req->remote_addr,
            p ? p->subject : "no certificate", why);
    fail(resp, 403, why);
    return false;
}

/* A query parameter: TS_ERR_NOTFOUND when absent, TS_ERR_INVAL when it does
 * not fit. Empty values read as absent. */
static int param(const struct ts_httpd_req *req, const char *name, char *out, size_t outsz)
{
    int rc = ts_http_query_param(req->target ? req->target : "", name, out, outsz);
    if (rc == TS_OK && out[0] == '\0')
        return TS_ERR_NOTFOUND;
    return rc == TS_OK || rc == TS_ERR_NOTFOUND ? rc : TS_ERR_INVAL;
}

/* Feed and lookup answers over TS_GZIP_MIN_BODY go gzip'd to clients that
 * accept it (a 1,000-card page shrinks about tenfold); the answer varies
 * with Accept-Encoding either way. Returns whether it compressed. */
static bool maybe_gzip(const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    size_t xl = strlen(resp->extra_headers);
    snprintf(resp->extra_headers + xl, sizeof resp->extra_headers - xl,
             "Vary: Accept-Encoding\r\n");
    if (resp->status != 200 || resp->body.len < TS_GZIP_MIN_BODY || !req->msg ||
        !ts_gzip_accepted(ts_http_header(req->msg, "Accept-Encoding")))
        return false;
    ts_buf z = {0};
    if (ts_gzip_compress(resp->body.data, resp->body.len, &z) != TS_OK) {
        ts_buf_free(&z);
        return false; /* the plain body still goes */
    }
    ts_buf_free(&resp->body);
    resp->body = z;
    xl = strlen(resp->extra_headers);
    snprintf(resp->extra_headers + xl, sizeof resp->extra_headers - xl,
             "Content-Encoding: gzip\r\n");
    return true;
}

/* ---- endpoints --------------------------------------------------------------*/

static void do_batch(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp)
{
    struct ts_seg_batch *b = NULL;
    char err[256];
    if (!write_key_ok(api, req)) {
        ts_strlcpy(resp->extra_headers, "WWW-Authenticate: Basic realm=\"tillside-hub\"\r\n",
                   sizeof resp->extra_headers);
        TS_WARN(COMP, "batch refused from %s: invalid write key", req->remote_addr);
        fail(resp, 401, "invalid write key");
        return;
    }
    if (req->body_len > TS_HUB_MAX_BODY) {
        fail(resp, 413, "batch larger than 500 KB");
        return;
    }
    int64_t now = api->now_ms();
    int rc = ts_seg_parse(req->body ? req->body : "", req->body_len, now, &b, err, sizeof err);
    if (rc != TS_OK) {
        TS_WARN(COMP, "batch refused from %s: %s", req->remote_addr, err);
        fail(resp, rc == TS_ERR_NOMEM ? 503 : 400, err);
        return;
    }
    struct ts_hub_ingest_result r;
    rc = ts_hub_store_ingest(api->store, b, now, &r);
    if (rc != TS_OK) {
        fail(resp, rc == TS_ERR_FULL ? 507 : 500,
             rc == TS_ERR_FULL ? "hub storage full" : "cannot store the batch");
    } else {
        TS_INFO(COMP, "batch events=%zu applied=%zu duplicates=%zu customers=%zu", b->n, r.applied,
                r.duplicates, r.customers);
        char out[96];
        snprintf(out, sizeof out, "{\"success\":true,\"accepted\":%zu}", b->n);
        ok_json(resp, out);
    }
    ts_seg_batch_free(b);
}

static void do_feed(struct ts_hub_api *api, const struct ts_httpd_req *req,
                    struct ts_httpd_resp *resp)
{
    char since_s[64], limit_s[32], wait_s[32], cursor[TS_HUB_CURSOR_MAX];
    uint64_t since = 0;
    long wait = 0;
    uint32_t epoch = ts_hub_store_epoch(api->store), cursor_epoch = epoch;
    long limit = api->cfg->page_limit;
    if (!peer_ok(api, req, true, resp))
        return;
    const char *store = req->peer->ou;
    int rc = param(req, "since", since_s, sizeof since_s);
    if (rc == TS_ERR_INVAL ||
        (rc == TS_OK && ts_hub_cursor_parse(since_s, &cursor_epoch, &since) != TS_OK)) {
        TS_WARN(COMP, "feed store=%s: malformed cursor", store);
        fail(resp, 400, "malformed cursor");
        return;
    }
    bool has_since = rc == TS_OK;
    rc = param(req, "limit", limit_s, sizeof limit_s);
    if (rc == TS_OK) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end != '\0') {
            fail(resp, 400, "limit must be an integer");
            return;
        }
    } else if (rc == TS_ERR_INVAL) {
        fail(resp, 400, "limit must be an integer");
        return;
    }
    limit = limit < 1 ? 1 : limit > TS_HUB_FEED_MAX_LIMIT ? TS_HUB_FEED_MAX_LIMIT : limit;
    /* Long-poll: with nothing new, hold the request up to wait seconds. */
    rc = param(req, "wait", wait_s, sizeof wait_s);
    if (rc == TS_OK) {
        char *end;
        wait = strtol(wait_s, &end, 10);
        rc = *end != '\0' || wait < 0 ? TS_ERR_INVAL : TS_OK;
    }
    if (rc == TS_ERR_INVAL) {
        fail(resp, 400, "wait must be a number of seconds");
        return;
    }
    wait = wait > TS_HUB_FEED_MAX_WAIT ? TS_HUB_FEED_MAX_WAIT : wait;

    struct ts_hub_feed_page page = {0};
    rc = cursor_epoch == epoch ? ts_hub_store_feed(api->store, store, since, (int)limit, &page)
                               : TS_ERR_GONE;
    if (rc == TS_OK && page.nitems == 0 && wait > 0 &&
        ts_hub_store_wait(api->store, store, since, (int)wait * 1000))
        rc = ts_hub_store_feed(api->store, store, since, (int)limit, &page);
    if (rc == TS_ERR_GONE) {
        TS_WARN(COMP,
                "feed store=%s since=%s: cursor from another database, ahead of it, or older "
                "than the erasure horizon: resync",
                store, since_s);
        fail(resp, 410, "cursor unknown to this hub; resynchronize from scratch");
    } else if (rc != TS_OK) {
        fail(resp, 500, "cannot read the feed");
    } else {
        ts_hub_cursor_format(epoch, page.last_seq, cursor);
        ts_buf_reset(&resp->body);
        resp->status = 200;
        int prev_kv = ts_hub_store_prev_kv(api->store);
        char prev[32] = "";
        if (prev_kv)
            snprintf(prev, sizeof prev, ",\"prev_kv\":%d", prev_kv);
        if (ts_buf_printf(&resp->body, "{\"kv\":%d%s,\"items\":[", api->cfg->key.version, prev) ||
            ts_buf_append(&resp->body, page.items.data ? page.items.data : "", page.items.len) ||
            ts_buf_printf(&resp->body, "],\"cursor\":\"%s\",\"more\":%s}", cursor,
                          page.more ? "true" : "false")) {
            fail(resp, 503, "out of memory");
        } else {
            size_t plain = resp->body.len;
            bool gz = maybe_gzip(req, resp);
            TS_INFO(COMP, "feed store=%s since=%s items=%zu more=%d bytes=%zu%s", store,
                    has_since ? since_s : "-", page.nitems, page.more ? 1 : 0, plain,
                    gz ? " gzip" : "");
        }
    }
    ts_buf_free(&page.items);
}

/* ?receipt= and ?order= (purchases.c); false when neither was asked. */
static bool lookup_purchase(struct ts_hub_api *api, const struct ts_httpd_req *req,
                            struct ts_httpd_resp *resp)
{
    char v[TS_SEG_MAX_ID + 1];
    bool receipt = param(req, "receipt", v, sizeof v) != TS_ERR_NOTFOUND;
    if (!receipt && param(req, "order", v, sizeof v) == TS_ERR_NOTFOUND)
        return false;
    int rc = param(req, receipt ? "receipt" : "order", v, sizeof v);
    if (rc != TS_OK) {
        fail(resp, 400, receipt ? "malformed receipt parameter" : "malformed order parameter");
        return true;
    }
    ts_buf_reset(&resp->body);
    rc = receipt ? ts_hub_lookup_receipt(api->store, v, &resp->body)
                 : ts_hub_lookup_order(api->store, v, &resp->body);
    TS_DEBUG(COMP, "lookup store=%s %s found=%d", req->peer->ou, receipt ? "receipt" : "order",
             rc == TS_OK);
    if (rc == TS_ERR_NOTFOUND)
        fail(resp, 404, receipt ? "unknown receipt" : "unknown order");
    else if (rc != TS_OK)
        fail(resp, 500, "cannot read the store");
    else {
        resp->status = 200;
        maybe_gzip(req, resp);
    }
    return true;
}

static void do_lookup(struct ts_hub_api *api, const struct ts_httpd_req *req,
                      struct ts_httpd_resp *resp)
{
    char key[TS_IDENT_KEY_HEX + 1];
    if (!peer_ok(api, req, false, resp))
        return;
    if (lookup_purchase(api, req, resp))
        return;
    int rc = param(req, "key", key, sizeof key);
    if (rc == TS_ERR_NOTFOUND) {
        fail(resp, 400, "missing key parameter");
        return;
    }
    size_t n = rc == TS_OK ? strlen(key) : 0;
    bool hex = n == TS_IDENT_KEY_HEX - 1;
    for (size_t i = 0; hex && i < n; i++) {
        char c = key[i];
        if (c >= 'A' && c <= 'F')
            key[i] = (char)(c - 'A' + 'a');
        else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            hex = false;
    }
    if (!hex) {
        fail(resp, 400, "malformed key (expected 64 hex digits)");
        return;
    }
    ts_buf_reset(&resp->body);
    rc = ts_hub_store_lookup(api->store, key, &resp->body);
    TS_DEBUG(COMP, "lookup store=%s found=%d", req->peer->ou, rc == TS_OK);
    if (rc == TS_ERR_NOTFOUND)
        fail(resp, 404, "unknown customer");
    else if (rc != TS_OK)
        fail(resp, 500, "cannot read the store");
    else {
        resp->status = 200;
        maybe_gzip(req, resp);
    }
}

/* A terminal renews its own certificate: the new one names the same
 * terminal, store and tenant as the one it presents (enroll.c). */
/* In-store purchases from a terminal; the store is its certificate's OU. */
static void do_purchases(struct ts_hub_api *api, const struct ts_httpd_req *req,
                         struct ts_httpd_resp *resp)
{
    if (peer_ok(api, req, true, resp))
        ts_hub_purchases_handle(api, req, resp);
}

static void do_renew(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp)
{
    if (!peer_ok(api, req, true, resp))
        return;
    ts_hub_trust_renew(api->trust, req, resp);
}

static void do_livez(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp)
{
    (void)api;
    (void)req;
    ok_json(resp, "{\"ok\":true}");
}

typedef void (*endpoint_fn)(struct ts_hub_api *, const struct ts_httpd_req *,
                            struct ts_httpd_resp *);

static const struct route {
    const char *path, *method;
    endpoint_fn fn;
} routes[] = {
    {"/v1/batch", "POST", do_batch},
    {"/v1/feed", "GET", do_feed},
    {"/v1/lookup", "GET", do_lookup},
    {"/v1/renew", "POST", do_renew},
    {"/livez", "GET", do_livez},
    {"/v1/purchases", "POST", do_purchases},
    {"/metrics", "GET", ts_hub_metrics_handle},
};

void ts_hub_api_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct ts_hub_api *api = ud;
    resp->status = 200;
    ts_strlcpy(resp->content_type, "application/json", sizeof resp->content_type);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        if (!req->method || strcmp(req->method, routes[i].method) != 0) {
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n",
                     routes[i].method);
            fail(resp, 405, "method not allowed");
            return;
        }
        routes[i].fn(api, req, resp);
        return;
    }
    fail(resp, 404, "not found");
}
