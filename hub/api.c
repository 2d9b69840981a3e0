/*
 * The hub's HTTP API (docs/PROTOCOL.md): the ts_httpd handler and its
 * routes, one file per endpoint group: api_batch.c (the CDP's batches),
 * api_feed.c (feed and lookups), purchase_http.c, metrics.c, enroll.c
 * (renewal); api_http.c holds what they share. Requests are hostile until proven otherwise: every
 * input is length-checked before use and the work per request is bounded (a batch by the body
 * limit, a feed page by the limit clamp).
 */
#include "api_int.h"
#include "offers.h"
#include "purchases.h"
#include "fleet.h"

#include <stdio.h>
#include <string.h>

#define COMP "hub"

/* ---- endpoints --------------------------------------------------------------*/

/* In-store purchases from a terminal; the store is its certificate's OU. */
static void do_purchases(struct ts_hub_api *api, const struct ts_httpd_req *req,
                         struct ts_httpd_resp *resp)
{
    if (ts_hub_api_peer_ok(api, req, true, resp))
        ts_hub_purchases_handle(api, req, resp);
}

/* A terminal redeems an offer (offers.c); its store from its certificate. */
static void do_offers(struct ts_hub_api *api, const struct ts_httpd_req *req,
                      struct ts_httpd_resp *resp)
{
    if (ts_hub_api_peer_ok(api, req, true, resp))
        ts_hub_offers_handle(api, req, resp);
}

/* A terminal renews its own certificate: the new one names the same
 * terminal, store and tenant as the one it presents (enroll.c). */
static void do_renew(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp)
{
    if (!ts_hub_api_peer_ok(api, req, true, resp))
        return;
    ts_hub_trust_renew(api->trust, req, resp);
}

static void do_livez(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp)
{
    (void)api;
    (void)req;
    ts_hub_api_ok(resp, "{\"ok\":true}");
}

typedef void (*endpoint_fn)(struct ts_hub_api *, const struct ts_httpd_req *,
                            struct ts_httpd_resp *);

static const struct route {
    const char *path, *method;
    endpoint_fn fn;
} routes[] = {
    {"/v1/batch", "POST", ts_hub_api_batch},
    {"/v1/feed", "GET", ts_hub_api_feed},
    {"/v1/lookup", "GET", ts_hub_api_lookup},
    {"/v1/renew", "POST", do_renew},
    {"/livez", "GET", do_livez},
    {"/v1/purchases", "POST", do_purchases},
    {"/v1/offers/redeem", "POST", do_offers}, /* offers.c */
    {"/metrics", "GET", ts_hub_metrics_handle},
    {"/fleet", "GET", ts_hub_fleet_page},
    {"/fleet.js", "GET", ts_hub_fleet_script},
    {"/v1/fleet", "GET", ts_hub_fleet_json},
};

/* Runs the route of table[0..n) for req, or a CDP source's adapter for
 * /v1/sources/NAME (source.c: each verifies its vendor's signature); 405 for
 * another method, 404 for no route. */
static void route(const struct route *table, size_t n, void *ud, const struct ts_httpd_req *req,
                  struct ts_httpd_resp *resp, const char *not_found)
{
    struct ts_hub_api *api = ud;
    resp->status = 200;
    ts_strlcpy(resp->content_type, "application/json", sizeof resp->content_type);
    if (strncmp(req->path, "/v1/sources/", 12) == 0) {
        ts_hub_sources_handle(api, req, resp);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(req->path, table[i].path) != 0)
            continue;
        if (!req->method || strcmp(req->method, table[i].method) != 0) {
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n",
                     table[i].method);
            ts_httpd_error(resp, 405, "method not allowed");
            return;
        }
        table[i].fn(api, req, resp);
        return;
    }
    ts_httpd_error(resp, 404, not_found);
}

void ts_hub_api_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    route(routes, sizeof routes / sizeof *routes, ud, req, resp, "not found");
}

int ts_hub_api_classify(void *ud, const char *method, const char *path)
{
    (void)ud;
    (void)method;
    if (strcmp(path, "/v1/feed") == 0)
        return TS_HUB_CLASS_FEED;
    if (strcmp(path, "/v1/purchases") == 0)
        return TS_HUB_CLASS_PURCHASES;
    if (strcmp(path, "/v1/batch") == 0 || strncmp(path, "/v1/sources/", 12) == 0)
        return TS_HUB_CLASS_CDP;
    return -1;
}

/* The CDP listener's routes: the CDP's own endpoints (and /v1/sources/NAME,
 * see route()) and nothing a terminal uses. */
static const struct route cdp_routes[] = {
    {"/v1/batch", "POST", ts_hub_api_batch},
    {"/livez", "GET", do_livez},
};

void ts_hub_api_cdp_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    route(cdp_routes, sizeof cdp_routes / sizeof *cdp_routes, ud, req, resp,
          "not found on the CDP listener");
}

void ts_hub_api_serve_opts(const struct ts_hub_config *cfg, struct ts_httpd_opts *o)
{
    o->max_conns = cfg->max_connections;
    o->max_pending = cfg->max_unauthenticated;
    o->max_pending_per_source = cfg->max_unauthenticated_per_address;
    o->handshake_timeout_ms = cfg->handshake_timeout_s * 1000;
    o->head_timeout_ms = cfg->request_head_timeout_s * 1000;
    o->workers = cfg->workers;
    o->retry_after_s = cfg->retry_after_s;
    o->classify = ts_hub_api_classify;
    o->class_max[TS_HUB_CLASS_FEED] = cfg->max_feed_polls;
    o->class_max[TS_HUB_CLASS_PURCHASES] = cfg->max_purchase_uploads;
    o->class_max[TS_HUB_CLASS_CDP] = cfg->max_cdp_batches;
    o->class_name[TS_HUB_CLASS_FEED] = "feed requests";
    o->class_name[TS_HUB_CLASS_PURCHASES] = "purchase uploads";
    o->class_name[TS_HUB_CLASS_CDP] = "CDP batches";
}
