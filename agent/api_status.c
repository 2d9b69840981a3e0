/* GET /api/v1/status and /metrics (Prometheus text). */
#include "api_int.h"
#include "purchase.h"
#include "input.h"

#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum MHD_Result ts_api_get_status(struct ts_api *api, struct MHD_Connection *c)
{
    /* The core's part (link, cache, counters), then each subsystem adds
     * its own from its handle. */
    json_t *o = ts_agent_status_object(api->a);
    if (o) {
        /* [input.*]: name, driver, state, detail (e.g. the udev rule to install). */
        json_object_set_new(o, "devices",
                            ts_inputs_devices_json(ts_agent_inputs_drivers(api->dep.inputs)));
        ts_trust_status_add(api->dep.trust, o);    /* certificate days left, expiry warnings */
        ts_purchase_status_add(api->dep.purch, o); /* outbox_depth, dead_letters */
    }
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    enum MHD_Result ret =
        s ? ts_api_send_json(c, MHD_HTTP_OK, s, NULL)
          : ts_api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, ts_strerror(TS_ERR_NOMEM), NULL);
    free(s);
    return ret;
}

/* One Prometheus metric with its HELP and TYPE lines. */
static void metric(ts_buf *b, const char *name, const char *type, const char *help, double v)
{
    ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/*
 * GET /metrics in the Prometheus text format (version 0.0.4): what a
 * fleet dashboard watches per terminal. Certificate gauges are left out
 * while unknown rather than reported as 0, which would read as "expired".
 */
enum MHD_Result ts_api_get_metrics(struct ts_api *api, struct MHD_Connection *c)
{
    struct ts_agent *a = api->a;
    struct ts_inputs *inputs = ts_agent_inputs_drivers(api->dep.inputs);
    ts_buf b = {0};
    int own = 0, hub = 0;
    bool have_hub = false, have_own = ts_trust_days(api->dep.trust, &own, &have_hub, &hub);
    struct ts_agent_counters k;
    ts_agent_counters(a, &k);
    int64_t cards = k.cards, last_sync = k.last_sync_wall_ms;
    bool up = k.link_up;
    uint64_t scans = k.scans, items = k.feed_items_applied, pages = k.feed_pages_applied;
    uint64_t hit = k.lookups_hit, miss = k.lookups_miss, live = k.lookups_live;
    metric(&b, "tillside_cards", "gauge", "Customer cards in the local cache.", (double)cards);
    metric(&b, "tillside_link_up", "gauge", "1 when the last sync with the hub succeeded.",
           up ? 1 : 0);
    metric(&b, "tillside_scans_total", "counter", "Scans resolved since start.", (double)scans);
    metric(&b, "tillside_feed_items_applied_total", "counter",
           "Feed changes applied to the cache since start.", (double)items);
    metric(&b, "tillside_feed_pages_applied_total", "counter",
           "Feed pages applied to the cache since start.", (double)pages);
    ts_buf_printf(&b,
                  "# HELP tillside_lookups_total Lookups since start, by where the answer came "
                  "from.\n# TYPE tillside_lookups_total counter\n"
                  "tillside_lookups_total{result=\"hit\"} %" PRIu64 "\n"
                  "tillside_lookups_total{result=\"miss\"} %" PRIu64 "\n"
                  "tillside_lookups_total{result=\"live\"} %" PRIu64 "\n",
                  hit, miss, live);
    if (last_sync)
        metric(&b, "tillside_last_sync_timestamp_seconds", "gauge",
               "Wall-clock time of the last applied feed page.", (double)last_sync / 1000.0);
    /* In seconds, Prometheus' base unit (promtool check metrics refuses a
     * "days" metric), counted in whole days: alert on < 14 * 86400. */
    unsigned in_states[3];
    uint64_t guard_drops;
    ts_inputs_counts(inputs, in_states, &guard_drops);
    guard_drops += atomic_load(&a->api_guard_drops); /* POST /api/v1/scan and purchases too */
    ts_buf_printf(&b, "# HELP tillside_inputs Configured inputs (scanners) by state.\n"
                      "# TYPE tillside_inputs gauge\n");
    for (int st = 0; st < 3; st++)
        ts_buf_printf(&b, "tillside_inputs{state=\"%s\"} %u\n",
                      ts_input_state_name((enum ts_input_state)st), in_states[st]);
    metric(&b, "tillside_guard_drops_total", "counter",
           "Scans, purchases and receipts in which the payment card guard dropped or masked card "
           "data (card numbers, magnetic stripe data).",
           (double)guard_drops);
    unsigned streams;
    uint64_t evicted, refused;
    ts_api_sse_counts(api, &streams, &evicted, &refused);
    metric(&b, "tillside_api_event_streams", "gauge", "Event streams (SSE) open now.",
           (double)streams);
    metric(&b, "tillside_api_event_streams_closed_total", "counter",
           "Event streams closed because the same client opened a newer one past its limit.",
           (double)evicted);
    metric(&b, "tillside_api_event_streams_refused_total", "counter",
           "Event streams refused with 429 (every place taken).", (double)refused);
    metric(&b, "tillside_tap_refused_total", "counter",
           "Connections to a receipt tap from peers not in its allow list (refused, nothing read).",
           (double)ts_inputs_refused(inputs));
    if (have_own)
        metric(&b, "tillside_cert_remaining_seconds", "gauge",
               "Time until this terminal's certificate expires, in whole days.", own * 86400.0);
    if (have_hub)
        metric(&b, "tillside_hub_cert_remaining_seconds", "gauge",
               "Time until the hub's certificate expires, in whole days.", hub * 86400.0);
    ts_purchase_metrics(api->dep.purch, &b); /* outbox depth, oldest age, dead letters, uploads */
    if (!b.data)
        return ts_api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    ts_buf_free(&b);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    ts_api_common_headers(resp);
    return ts_api_queue(c, MHD_HTTP_OK, resp);
}
