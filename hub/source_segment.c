/*
 * segment_webhook: Segment's Webhooks (Actions) destination
 * (https://segment.com/docs/connections/destinations/catalog/actions-webhook/).
 *
 * - The body is one Segment event, or with batching enabled a JSON array of
 *   them ("Batch size limits": up to 4000 per request), in the Segment spec
 *   (https://segment.com/docs/connections/spec/); they are copied as they
 *   are and read by segment.c, so sentAt corrects the sender's clock and
 *   the messageId dedupes as on /v1/batch.
 * - "If you provide a shared secret, Segment will sign requests with an
 *   HMAC in the X-Signature request header. The HMAC is a hex-encoded SHA1
 *   hash generated using the shared secret and the request body" (Getting
 *   started, step 5). The hub requires the shared secret.
 * - Segment retries 5xx and 429 and drops other 4xx
 *   (https://segment.com/docs/connections/destinations/#retries-between-segment-and-destinations),
 *   so a batch with a truly bad event is answered 400 as a whole.
 * - Segment signs no delivery time; with replay_window_s set, the events'
 *   sentAt (inside the signed body) must fall in the window.
 */
#include "source_int.h"

#include <string.h>

enum ts_err ts_src_spec_window(struct ts_src_ctx *c)
{
    if (c->conf->window_s <= 0)
        return TS_OK;
    json_t *root = json_loadb(c->req->body ? c->req->body : "", c->req->body_len, 0, NULL);
    const json_t *first = json_is_array(root) ? json_array_get(root, 0) : root;
    int64_t sent;
    int rc = TS_OK;
    if (!ts_src_time(json_object_get(first, "sentAt"), &sent)) {
        ts_errf(c->err, sizeof c->err, "no sentAt to check the replay window against");
        rc = TS_ERR_GONE;
    } else {
        rc = ts_src_window(c, sent);
    }
    json_decref(root);
    return rc;
}

static enum ts_err verify(struct ts_src_ctx *c)
{
    const char *body = c->req->body ? c->req->body : "";
    if (!ts_src_hmac_ok(c, MBEDTLS_MD_SHA1, body, c->req->body_len, NULL, 0,
                        ts_src_header(c, "X-Signature"), TS_SRC_HEX))
        return TS_ERR_AUTH;
    return ts_src_spec_window(c);
}

const struct ts_src_vendor ts_src_segment = {
    .type = TS_SRC_SEGMENT,
    .name = "segment_webhook",
    .verify = verify,
    .map = ts_src_map_spec,
};
