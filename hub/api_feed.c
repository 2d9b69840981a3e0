/*
 * GET /v1/feed and GET /v1/lookup: a terminal's store slice page by page
 * with its cursor and long-poll (feed.c), and live lookups by identifier
 * key, receipt or order (feed.c, purchase_lookup.c). Answers over
 * TS_GZIP_MIN_BODY go gzip'd to clients that accept it.
 */
#include "api_int.h"
#include "purchases.h"
#include "../sync/gzip.h"
#include "throttle.h"
#include "fleet.h"

#include <mbedtls/md.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "hub"

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

void ts_hub_api_feed(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp)
{
    char since_s[64], limit_s[32], wait_s[32], cursor[TS_HUB_CURSOR_MAX];
    uint64_t since = 0;
    long wait = 0;
    uint32_t epoch = ts_hub_store_epoch(api->store), cursor_epoch = epoch;
    long limit = api->cfg->page_limit;
    if (!ts_hub_api_peer_ok(api, req, true, resp))
        return;
    const char *store = req->peer->ou;
    ts_hub_fleet_note(api->fleet, api->store, req->peer, req->msg, api->now_ms()); /* fleet_db.c */
    int rc = ts_hub_api_param(req, "since", since_s, sizeof since_s);
    if (rc == TS_ERR_INVAL ||
        (rc == TS_OK && ts_hub_cursor_parse(since_s, &cursor_epoch, &since) != TS_OK)) {
        TS_WARN(COMP, "feed store=%s: malformed cursor", store);
        ts_httpd_error(resp, 400, "malformed cursor");
        return;
    }
    bool has_since = rc == TS_OK;
    rc = ts_hub_api_param(req, "limit", limit_s, sizeof limit_s);
    if (rc == TS_OK) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (*end != '\0') {
            ts_httpd_error(resp, 400, "limit must be an integer");
            return;
        }
    } else if (rc == TS_ERR_INVAL) {
        ts_httpd_error(resp, 400, "limit must be an integer");
        return;
    }
    limit = limit < 1 ? 1 : limit > TS_HUB_FEED_MAX_LIMIT ? TS_HUB_FEED_MAX_LIMIT : limit;
    /* Long-poll: with nothing new, hold the request up to wait seconds. */
    rc = ts_hub_api_param(req, "wait", wait_s, sizeof wait_s);
    if (rc == TS_OK) {
        char *end;
        wait = strtol(wait_s, &end, 10);
        rc = *end != '\0' || wait < 0 ? TS_ERR_INVAL : TS_OK;
    }
    if (rc == TS_ERR_INVAL) {
        ts_httpd_error(resp, 400, "wait must be a number of seconds");
        return;
    }
    wait = wait > TS_HUB_FEED_MAX_WAIT ? TS_HUB_FEED_MAX_WAIT : wait;

    /* The store's last seq before its feed is read: a commit after this
     * moves it and wakes the poll parked below (feed_watch.c). */
    uint64_t seen = 0;
    bool watched = wait > 0 && ts_hub_store_feed_seen(api->store, store, &seen);
    struct ts_hub_feed_page page = {0};
    rc = cursor_epoch == epoch ? ts_hub_store_feed(api->store, store, since, (int)limit, &page)
                               : TS_ERR_GONE;
    if (rc == TS_OK && ts_hub_predict_store_off(&api->cfg->predict, store))
        ts_hub_predict_strip(&page.items); /* [predictions] stores_off */
    /* Nothing new and a long-poll: park the request (httpd.h), costing only
     * its connection, until the store changes or the wait is over; it is
     * handed back here then, and asks again. */
    if (rc == TS_OK && page.nitems == 0 && wait > 0 && !req->park_expired &&
        !ts_hub_store_closing(api->store)) {
        int64_t until = req->park_until_ms ? req->park_until_ms : ts_now_mono_ms() + wait * 1000;
        if (watched) /* woken only by a change to this store */
            ts_httpd_park_on(resp, until, ts_hub_store_recheck_ms(api->store, true), store, seen);
        else
            ts_httpd_park(resp, until, ts_hub_store_recheck_ms(api->store, false));
        ts_buf_free(&page.items);
        return;
    }
    if (rc == TS_ERR_GONE) {
        TS_WARN(COMP,
                "feed store=%s since=%s: cursor from another database, ahead of it, or older "
                "than the erasure horizon: resync",
                store, since_s);
        ts_httpd_error(resp, 410, "cursor unknown to this hub; resynchronize from scratch");
    } else if (rc != TS_OK) {
        ts_httpd_error(resp, 500, "cannot read the feed");
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
            ts_httpd_error(resp, 503, "out of memory");
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

/* A signed order code, "ID.SIG" with SIG the first 16 bytes of
 * HMAC-SHA256(order_secret, ID) in hex (docs/PROTOCOL.md "Signed order
 * codes"): the ID is cut out of code in place when SIG is right. Compared in
 * constant time. */
static bool order_signed(const struct ts_hub_config *cfg, char *code)
{
    char *dot = strrchr(code, '.');
    if (!dot || dot == code || strlen(dot + 1) != 2 * TS_HUB_ORDER_SIG_BYTES)
        return false;
    unsigned char mac[32], want[TS_HUB_ORDER_SIG_BYTES];
    size_t got = 0;
    if (ts_hex_decode(dot + 1, want, sizeof want, &got) != TS_OK || got != sizeof want)
        return false;
    if (mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), cfg->order_secret,
                        cfg->order_secret_len, (const unsigned char *)code, (size_t)(dot - code),
                        mac) != 0)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < sizeof want; i++)
        diff |= (unsigned char)(mac[i] ^ want[i]);
    if (diff)
        return false;
    *dot = '\0';
    return true;
}

/* ?receipt= and ?order= (purchase_lookup.c); false when neither was asked. */
static bool lookup_purchase(struct ts_hub_api *api, const struct ts_httpd_req *req,
                            struct ts_httpd_resp *resp)
{
    char v[TS_SEG_MAX_ID + 2 * TS_HUB_ORDER_SIG_BYTES + 2];
    bool receipt = ts_hub_api_param(req, "receipt", v, sizeof v) != TS_ERR_NOTFOUND;
    if (!receipt && ts_hub_api_param(req, "order", v, sizeof v) == TS_ERR_NOTFOUND)
        return false;
    int rc = ts_hub_api_param(req, receipt ? "receipt" : "order", v, sizeof v);
    if (rc != TS_OK) {
        ts_httpd_error(resp, 400,
                       receipt ? "malformed receipt parameter" : "malformed order parameter");
        return true;
    }
    const struct ts_hub_config *cfg = api->cfg;
    if (!receipt && cfg->order_secret_len && !order_signed(cfg, v)) {
        TS_DEBUG(COMP, "lookup store=%s terminal=%s: order code without a valid signature",
                 req->peer->ou, req->peer->cn);
        ts_httpd_error(resp, 403, "order code without a valid signature");
        return true;
    }
    ts_buf_reset(&resp->body);
    rc = receipt ? ts_hub_lookup_receipt(api->store, v, &resp->body)
                 : ts_hub_lookup_order(api->store, v,
                                       cfg->lookup_orders_own_store ? req->peer->ou : NULL,
                                       &resp->body);
    TS_DEBUG(COMP, "lookup store=%s %s found=%d", req->peer->ou, receipt ? "receipt" : "order",
             rc == TS_OK);
    if (rc == TS_ERR_NOTFOUND)
        ts_httpd_error(resp, 404, receipt ? "unknown receipt" : "unknown order");
    else if (rc != TS_OK)
        ts_httpd_error(resp, 500, "cannot read the store");
    else {
        resp->status = 200;
        maybe_gzip(req, resp);
    }
    return true;
}

/* One lookup, by key, receipt or order, answered into resp. */
static void lookup(struct ts_hub_api *api, const struct ts_httpd_req *req,
                   struct ts_httpd_resp *resp)
{
    char key[TS_IDENT_KEY_HEX + 1];
    if (lookup_purchase(api, req, resp))
        return;
    int rc = ts_hub_api_param(req, "key", key, sizeof key);
    if (rc == TS_ERR_NOTFOUND) {
        ts_httpd_error(resp, 400, "missing key parameter");
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
        ts_httpd_error(resp, 400, "malformed key (expected 64 hex digits)");
        return;
    }
    ts_buf_reset(&resp->body);
    rc = ts_hub_store_lookup(api->store, key, &resp->body);
    if (rc == TS_OK && ts_hub_predict_store_off(&api->cfg->predict, req->peer->ou))
        ts_hub_predict_strip(&resp->body);
    TS_DEBUG(COMP, "lookup store=%s found=%d", req->peer->ou, rc == TS_OK);
    if (rc == TS_ERR_NOTFOUND)
        ts_httpd_error(resp, 404, "unknown customer");
    else if (rc != TS_OK)
        ts_httpd_error(resp, 500, "cannot read the store");
    else {
        resp->status = 200;
        maybe_gzip(req, resp);
    }
}

/*
 * GET /v1/lookup: chain-wide by design, so each terminal has a budget
 * (throttle.c): over it 429 + Retry-After, and a terminal whose lookups mostly
 * find nothing is flagged and slowed. Refused and malformed lookups count as
 * misses; server errors count as nothing.
 */
void ts_hub_api_lookup(struct ts_hub_api *api, const struct ts_httpd_req *req,
                       struct ts_httpd_resp *resp)
{
    if (!ts_hub_api_peer_ok(api, req, true, resp))
        return;
    const char *store = req->peer->ou, *terminal = req->peer->cn;
    int64_t now = api->now_ms();
    int wait = ts_hub_throttle_lookup_take(api->throttle, store, terminal, now);
    if (wait) {
        ts_hub_throttle_answer_429(resp, wait, "too many lookups from this terminal; retry later");
        return;
    }
    lookup(api, req, resp);
    if (resp->status < 500)
        ts_hub_throttle_lookup_done(api->throttle, store, terminal, resp->status == 200, now);
}
