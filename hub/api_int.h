/*
 * Private to the hub's endpoint files (api.c, api_http.c, api_batch.c,
 * api_feed.c): the endpoints the router calls and the helpers they share
 * (api_http.c).
 */
#ifndef TS_HUB_API_INT_H
#define TS_HUB_API_INT_H

#include "hub.h"

/* 200 with the JSON text as the body. */
void ts_hub_api_ok(struct ts_httpd_resp *resp, const char *text);
/* Agent endpoints need a verified terminal certificate of this tenant (and,
 * with need_ou, a store); otherwise answers 403 (logged) and returns false. */
bool ts_hub_api_peer_ok(const struct ts_hub_api *api, const struct ts_httpd_req *req, bool need_ou,
                        struct ts_httpd_resp *resp);
/* A query parameter: TS_ERR_NOTFOUND when absent, TS_ERR_INVAL when it does
 * not fit. Empty values read as absent. */
enum ts_err ts_hub_api_param(const struct ts_httpd_req *req, const char *name, char *out,
                             size_t outsz);

/* The endpoints. */
void ts_hub_api_batch(struct ts_hub_api *api, const struct ts_httpd_req *req,
                      struct ts_httpd_resp *resp); /* api_batch.c: POST /v1/batch */
void ts_hub_api_feed(struct ts_hub_api *api, const struct ts_httpd_req *req,
                     struct ts_httpd_resp *resp); /* api_feed.c: GET /v1/feed */
void ts_hub_api_lookup(struct ts_hub_api *api, const struct ts_httpd_req *req,
                       struct ts_httpd_resp *resp); /* api_feed.c: GET /v1/lookup */

#endif
