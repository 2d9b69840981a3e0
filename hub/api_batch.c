/*
 * POST /v1/batch: a Segment batch from the CDP, authenticated by the write
 * key, validated as a whole (segment.c) and applied in one transaction
 * (ingest.c).
 */
#include "api_int.h"
#include "throttle.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define COMP "hub"

/* Basic auth with the write key as the user name; Segment sends
 * base64(write_key + ":") and some libraries put a password after it. */
static bool write_key_ok(const struct ts_hub_api *api, const struct ts_httpd_req *req)
{
    const char *h = req->msg ? ts_http_header(req->msg, "Authorization") : NULL;
    return ts_basic_auth_ok(h, api->cfg->write_key, NULL);
}

void ts_hub_api_batch(struct ts_hub_api *api, const struct ts_httpd_req *req,
                      struct ts_httpd_resp *resp)
{
    struct ts_seg_batch *b = NULL;
    char err[256], addr[64];
    int64_t now = api->now_ms();
    /* An address that failed the key too often is not even asked for it
     * (throttle.c): guessing is slowed to a few tries per hour, and the right
     * key from elsewhere is not affected. */
    ts_hub_throttle_client_addr(req, addr, sizeof addr);
    int wait = ts_hub_throttle_auth_wait(api->throttle, TS_HUB_SECRET_WRITE_KEY, addr, now);
    if (wait) {
        ts_hub_throttle_answer_429(resp, wait, "too many failed write keys from this address");
        return;
    }
    if (!write_key_ok(api, req)) {
        ts_strlcpy(resp->extra_headers, "WWW-Authenticate: Basic realm=\"tillside-hub\"\r\n",
                   sizeof resp->extra_headers);
        TS_WARN(COMP, "batch refused from %s: invalid write key", req->remote_addr);
        ts_hub_throttle_auth_failed(api->throttle, TS_HUB_SECRET_WRITE_KEY, addr, now);
        ts_httpd_error(resp, 401, "invalid write key");
        return;
    }
    ts_hub_throttle_auth_ok(api->throttle, TS_HUB_SECRET_WRITE_KEY, addr);
    if (req->body_len > TS_HUB_MAX_BODY) {
        ts_httpd_error(resp, 413, "batch larger than 500 KB");
        return;
    }
    int rc = ts_seg_parse(req->body ? req->body : "", req->body_len, now, &b, err, sizeof err);
    if (rc != TS_OK) {
        TS_WARN(COMP, "batch refused from %s: %s", req->remote_addr, err);
        ts_httpd_error(resp, rc == TS_ERR_NOMEM ? 503 : 400, err);
        return;
    }
    struct ts_hub_ingest_result r;
    rc = ts_hub_store_ingest(api->store, b, now, &r);
    if (rc != TS_OK) {
        ts_httpd_error(resp, rc == TS_ERR_FULL ? 507 : 500,
                       rc == TS_ERR_FULL ? "hub storage full" : "cannot store the batch");
    } else {
        TS_INFO(COMP, "batch events=%zu applied=%zu duplicates=%zu customers=%zu", b->n, r.applied,
                r.duplicates, r.customers);
        char out[96];
        snprintf(out, sizeof out, "{\"success\":true,\"accepted\":%zu}", b->n);
        ts_hub_api_ok(resp, out);
    }
    ts_seg_batch_free(b);
}
