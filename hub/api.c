/*
 * The hub's HTTP API (docs/PROTOCOL.md): the ts_httpd handler and its
 * routes, one file per endpoint group: api_batch.c (the CDP's batches),
 * api_feed.c (feed and lookups), purchase_http.c, metrics.c, enroll.c
 * (renewal); api_http.c holds what they share. Requests are hostile until proven otherwise: every
 * input is length-checked before use and the work per request is bounded (a batch by the body
 * limit, a feed page by the limit clamp).
 */
#include "api_int.h"
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
    {"/metrics", "GET", ts_hub_metrics_handle},
    {"/fleet", "GET", ts_hub_fleet_page},
    {"/fleet.js", "GET", ts_hub_fleet_script},
    {"/v1/fleet", "GET", ts_hub_fleet_json},
};

void ts_hub_api_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct ts_hub_api *api = ud;
    resp->status = 200;
    ts_strlcpy(resp->content_type, "application/json", sizeof resp->content_type);
    if (strncmp(req->path, "/v1/sources/", 12) == 0) { /* source.c, until the CDP listener */
        ts_hub_sources_handle(api, req, resp);
        return;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        if (!req->method || strcmp(req->method, routes[i].method) != 0) {
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n",
                     routes[i].method);
            ts_httpd_error(resp, 405, "method not allowed");
            return;
        }
        routes[i].fn(api, req, resp);
        return;
    }
    ts_httpd_error(resp, 404, "not found");
}
