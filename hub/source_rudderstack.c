/*
 * rudderstack_webhook: RudderStack's Webhook destination
 * (https://www.rudderstack.com/docs/destinations/webhooks/).
 *
 * - The body is the RudderStack event as the SDK sent it, in RudderStack's
 *   event spec, which follows Segment's (identify, track with "Product
 *   Viewed" ... of the e-commerce spec,
 *   https://www.rudderstack.com/docs/event-spec/ecommerce-events-spec/):
 *   read by segment.c like /v1/batch.
 * - RudderStack signs nothing; the destination sends the "Headers" its
 *   connection settings configure. The hub requires one of them, [source]
 *   header (default X-Tillside-Secret), to carry the configured secret,
 *   compared in constant time.
 * - RudderStack retries 5xx and 429 and aborts on other 4xx
 *   (https://www.rudderstack.com/docs/destinations/destination-faqs/), so
 *   only a truly bad event gets a 400.
 * - With replay_window_s set, the event's sentAt must fall in the window.
 */
#include "source_int.h"

#include <string.h>

static enum ts_err verify(struct ts_src_ctx *c)
{
    const char *v = ts_src_header(c, c->conf->header);
    if (!v || !ts_src_same(v, strlen(v), c->conf->secret))
        return TS_ERR_AUTH;
    return ts_src_spec_window(c);
}

const struct ts_src_vendor ts_src_rudderstack = {
    .type = TS_SRC_RUDDERSTACK,
    .name = "rudderstack_webhook",
    .verify = verify,
    .map = ts_src_map_spec,
};
