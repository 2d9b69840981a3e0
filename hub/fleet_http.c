/*
 * The read-only fleet page for HQ (fleet.h, docs/OPERATIONS.md "Fleet"):
 * GET /fleet and /fleet.js (embedded from hub/page/), and GET /v1/fleet,
 * the JSON the page reads every few seconds. Open to a verified client
 * certificate of the tenant (on the TLS listener, or vouched for by the
 * proxy in front) or to [fleet] admin_user with its password (Basic auth,
 * compared in constant time). It shows no customer data, only terminals
 * and their health, and the script puts every value in with textContent:
 * terminal and store names come from certificates.
 */
#include "fleet.h"
#include "matchrate.h"
#include "sinks.h"
#include "throttle.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define COMP "fleet"

extern const char ts_hub_fleet_html[], ts_hub_fleet_js[];
extern const size_t ts_hub_fleet_html_len, ts_hub_fleet_js_len;

/* Authorization: Basic base64(admin_user ":" password). */
static bool admin_ok(const struct ts_hub_config *cfg, const struct ts_httpd_req *req)
{
    const char *h = req->msg ? ts_http_header(req->msg, "Authorization") : NULL;
    return ts_basic_auth_ok(h, cfg->fleet_admin_user, cfg->fleet_admin_password);
}

/* Who may look; otherwise answers 401 (with a credential configured), 403,
 * or 429 to an address that failed the admin password too often
 * (throttle.c), and returns false. */
static bool allowed(const struct ts_hub_api *api, const struct ts_httpd_req *req,
                    struct ts_httpd_resp *resp)
{
    const struct ts_hub_config *cfg = api->cfg;
    const struct ts_peer_id *p = req->peer;
    bool basic = req->msg && ts_http_header(req->msg, "Authorization");
    if (!basic && p && p->verified && (!cfg->tenant[0] || strcmp(p->o, cfg->tenant) == 0))
        return true;
    char addr[64];
    int64_t now = api->now_ms();
    ts_hub_throttle_client_addr(req, addr, sizeof addr);
    if (basic && cfg->fleet_admin_user[0]) {
        int wait = ts_hub_throttle_auth_wait(api->throttle, TS_HUB_SECRET_FLEET_ADMIN, addr, now);
        if (wait) {
            ts_hub_throttle_answer_429(resp, wait,
                                       "too many failed admin passwords from this address");
            return false;
        }
        if (admin_ok(cfg, req)) {
            ts_hub_throttle_auth_ok(api->throttle, TS_HUB_SECRET_FLEET_ADMIN, addr);
            return true;
        }
        ts_hub_throttle_auth_failed(api->throttle, TS_HUB_SECRET_FLEET_ADMIN, addr, now);
    }
    TS_WARN(COMP, "%s from %s refused: %s", req->path, addr,
            basic ? "wrong admin user or password" : "no certificate of this tenant");
    if (cfg->fleet_admin_user[0]) {
        ts_strlcpy(resp->extra_headers, "WWW-Authenticate: Basic realm=\"tillside fleet\"\r\n",
                   sizeof resp->extra_headers);
        ts_httpd_error(resp, 401, "the fleet page needs the admin user or a client certificate");
    } else {
        ts_httpd_error(resp, 403, "the fleet page needs a client certificate of this tenant");
    }
    return false;
}

static void common_headers(struct ts_httpd_resp *resp)
{
    size_t n = strlen(resp->extra_headers);
    snprintf(resp->extra_headers + n, sizeof resp->extra_headers - n,
             "Content-Security-Policy: default-src 'none'; script-src 'self'; connect-src 'self';"
             " style-src 'unsafe-inline'; frame-ancestors 'none'\r\n"
             "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
             "Referrer-Policy: no-referrer\r\n");
}

static void asset(struct ts_httpd_resp *resp, const char *type, const char *data, size_t len)
{
    ts_buf_reset(&resp->body);
    if (ts_buf_append(&resp->body, data, len) != TS_OK) {
        ts_httpd_error(resp, 503, "out of memory");
        return;
    }
    resp->status = 200;
    ts_strlcpy(resp->content_type, type, sizeof resp->content_type);
    common_headers(resp);
}

void ts_hub_fleet_page(struct ts_hub_api *api, const struct ts_httpd_req *req,
                       struct ts_httpd_resp *resp)
{
    if (allowed(api, req, resp))
        asset(resp, "text/html; charset=utf-8", ts_hub_fleet_html, ts_hub_fleet_html_len);
}

void ts_hub_fleet_script(struct ts_hub_api *api, const struct ts_httpd_req *req,
                         struct ts_httpd_resp *resp)
{
    if (allowed(api, req, resp))
        asset(resp, "text/javascript; charset=utf-8", ts_hub_fleet_js, ts_hub_fleet_js_len);
}

struct listing {
    ts_buf *out;
    bool unhealthy;
    long count, stale, unhealthy_n, listed;
    int64_t now_ms;
    enum ts_err rc;
    const char *store_filter; /* ?store=, NULL = all */
};

/* s as a JSON string (jansson's escaping), appended to out. */
static void json_str(ts_buf *out, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (!t || ts_buf_puts(out, t) != TS_OK)
        ts_buf_puts(out, "\"?\"");
    free(t);
    json_decref(j);
}

/* One terminal as the objects of ts_fleet_row_json, the report as the hub
 * stored it. */
static void add(void *ud, const struct ts_fleet_brief *b)
{
    struct listing *l = ud;
    char seen[40], rep[40];
    l->count++;
    l->stale += (b->problems & TS_FLEET_STALE) != 0;
    l->unhealthy_n += b->problems != 0;
    if (l->unhealthy && !b->problems)
        return;
    ts_buf *o = l->out;
    ts_iso8601(b->seen_ms, seen, sizeof seen);
    ts_buf_puts(o, l->listed++ ? ",{\"store\":" : "{\"store\":");
    json_str(o, b->store);
    ts_buf_puts(o, ",\"terminal\":");
    json_str(o, b->terminal);
    ts_buf_printf(o, ",\"seen_at\":\"%s\",\"age_s\":%lld,\"stale\":%s,\"problems\":[", seen,
                  (long long)((l->now_ms - b->seen_ms) / 1000),
                  b->problems & TS_FLEET_STALE ? "true" : "false");
    for (unsigned i = 0, n = 0; i < TS_FLEET_NPROBLEMS; i++)
        if (b->problems & (1u << i))
            ts_buf_printf(o, "%s\"%s\"", n++ ? "," : "", ts_fleet_problem_name(1u << i));
    ts_buf_puts(o, "]");
    if (b->report && b->reported_ms) {
        ts_iso8601(b->reported_ms, rep, sizeof rep);
        ts_buf_printf(o, ",\"reported_at\":\"%s\",\"report\":%s", rep, b->report);
    }
    if (ts_buf_puts(o, "}") != TS_OK)
        l->rc = TS_ERR_NOMEM;
}

/* ?store=S and ?unhealthy=1 narrow the list; count, stale and unhealthy
 * are always of the whole (store's) fleet. */
/* ,"match_rate":[...]: each store's newest day (matchrate.c); counts of
 * transactions only, no customer data. */
static enum ts_err match_rate(struct ts_hub_store *s, const char *store, ts_buf *out)
{
    json_t *arr = NULL;
    enum ts_err rc = ts_hub_match_list(s, store, true, &arr);
    char *text = rc == TS_OK ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    rc = text ? ts_buf_printf(out, ",\"match_rate\":%s", text) : TS_ERR_NOMEM;
    free(text);
    return rc;
}

void ts_hub_fleet_json(struct ts_hub_api *api, const struct ts_httpd_req *req,
                       struct ts_httpd_resp *resp)
{
    char store[64], flag[8], now_s[40];
    if (!allowed(api, req, resp))
        return;
    const char *t = req->target ? req->target : "";
    int rc = ts_http_query_param(t, "store", store, sizeof store);
    int rc2 = ts_http_query_param(t, "unhealthy", flag, sizeof flag);
    if ((rc != TS_OK && rc != TS_ERR_NOTFOUND) || (rc2 != TS_OK && rc2 != TS_ERR_NOTFOUND)) {
        ts_httpd_error(resp, 400, "malformed store or unhealthy parameter");
        return;
    }
    ts_buf items = {0};
    struct listing l = {.out = &items,
                        .unhealthy = rc2 == TS_OK && strcmp(flag, "1") == 0,
                        .now_ms = api->now_ms()};
    int stale_s = api->cfg->fleet_stale_after_s;
    l.store_filter = rc == TS_OK && store[0] ? store : NULL;
    rc = ts_hub_fleet_each(api->store, l.store_filter, l.now_ms, stale_s, add, &l);
    /* The sinks' queues beside the terminals: pending, oldest, sent, failed,
     * dead, rate (no customer data either). */
    json_t *sinks = NULL;
    if (rc == TS_OK)
        rc = ts_hub_sinkq_fleet(api->store, api->cfg, l.now_ms, &sinks);
    char *sinks_text = sinks ? json_dumps(sinks, JSON_COMPACT) : NULL;
    json_decref(sinks);
    ts_iso8601(l.now_ms, now_s, sizeof now_s);
    ts_buf_reset(&resp->body);
    if (rc != TS_OK || l.rc != TS_OK || !sinks_text ||
        ts_buf_printf(&resp->body,
                      "{\"now\":\"%s\",\"stale_after_s\":%d,\"count\":%ld,\"stale\":%ld,"
                      "\"unhealthy\":%ld,\"terminals\":[",
                      now_s, stale_s, l.count, l.stale, l.unhealthy_n) ||
        ts_buf_append(&resp->body, items.data ? items.data : "", items.len) ||
        ts_buf_puts(&resp->body, "]") || match_rate(api->store, l.store_filter, &resp->body) ||
        ts_buf_printf(&resp->body, ",\"sinks\":%s}", sinks_text)) {
        ts_httpd_error(resp, 500, "cannot read the fleet");
    } else {
        resp->status = 200;
        common_headers(resp);
    }
    free(sinks_text);
    ts_buf_free(&items);
}
