/*
 * POST /v1/purchases: a terminal's batch of purchase events, parsed
 * (purchase_parse.c), stored (purchases.c) and answered event by event:
 * accepted, duplicate or rejected with the reason.
 */
#include "purchases.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "hub"

void ts_hub_purchases_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                             struct ts_httpd_resp *resp)
{
    struct ts_hub_pbatch *b = NULL;
    char err[256];
    const char *store = req->peer->ou; /* api.c checked the certificate */
    if (req->body_len > TS_HUB_MAX_BODY) {
        ts_httpd_error(resp, 413, "request larger than 500 KB");
        return;
    }
    int64_t now = api->now_ms();
    int rc = ts_hub_purchases_parse(req->body ? req->body : "", req->body_len, store, now, &b, err,
                                    sizeof err);
    if (rc != TS_OK) {
        TS_WARN(COMP, "purchases from %s/%s refused: %s", store, req->peer->cn, err);
        if (rc == TS_ERR_NOMEM)
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 5\r\n");
        ts_httpd_error(resp, rc == TS_ERR_NOMEM ? 503 : 400, err);
        return;
    }
    struct ts_hub_purchase_counts c;
    rc = ts_hub_purchases_store(api->store, b, api->cfg->nsinks > 0, now, &c);
    if (rc != TS_OK) {
        /* Nothing stored: the agent keeps the events and retries later. */
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n",
                 rc == TS_ERR_FULL ? 60 : 5);
        ts_httpd_error(resp, rc == TS_ERR_FULL ? 507 : 503,
                       rc == TS_ERR_FULL ? "hub storage full" : "cannot store the purchases now");
        ts_hub_pbatch_free(b);
        return;
    }
    ts_hub_metrics_count_purchases(&c);
    ts_hub_upstream_kick(api->upstream);
    json_t *o = json_pack("{s:[], s:[], s:[]}", "accepted", "duplicates", "rejected");
    for (size_t i = 0; o && i < b->n; i++) {
        const struct ts_hub_purchase *p = &b->p[i];
        if (p->status == TS_HUB_P_ACCEPTED)
            json_array_append_new(json_object_get(o, "accepted"), json_string(p->message_id));
        else if (p->status == TS_HUB_P_DUPLICATE)
            json_array_append_new(json_object_get(o, "duplicates"), json_string(p->message_id));
        else {
            json_t *r = json_pack("{s:s?, s:I, s:s}", "messageId", p->message_id, "index",
                                  (json_int_t)i, "error", p->error);
            json_array_append_new(json_object_get(o, "rejected"), r);
            TS_WARN(COMP, "purchase %s from %s/%s rejected: %s",
                    p->message_id ? p->message_id : "(no messageId)", store, req->peer->cn,
                    p->error);
        }
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        ts_httpd_error(resp, 500, "out of memory");
    } else {
        resp->status = 200;
        ts_buf_reset(&resp->body);
        ts_buf_puts(&resp->body, text);
        free(text);
    }
    TS_INFO(COMP,
            "purchases store=%s terminal=%s events=%zu accepted=%zu duplicates=%zu "
            "rejected=%zu customers=%zu",
            store, req->peer->cn, b->n, c.accepted, c.duplicates, c.rejected, c.customers);
    ts_hub_pbatch_free(b);
}
