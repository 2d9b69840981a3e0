/*
 * GET /metrics: the hub's Prometheus text, from the purchase counts in the
 * database, the upstream forwarder's counters, the purchase answers
 * counted here since start and the fleet's health per store.
 */
#include "matchrate.h"
#include "purchases.h"
#include "sinks.h"
#include "throttle.h"
#include "fleet.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* The servers (ts_hub_metrics_set_server), read under servers_mu so none
 * is stopped while its counters are read. */
#define MAX_SERVERS 4
static pthread_mutex_t servers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const char *listener;
    struct ts_httpd *srv;
} servers[MAX_SERVERS];
static int nservers;

void ts_hub_metrics_set_server(const char *listener, struct ts_httpd *srv)
{
    pthread_mutex_lock(&servers_mu);
    if (!srv)
        nservers = 0;
    else if (nservers < MAX_SERVERS) {
        servers[nservers].listener = listener;
        servers[nservers++].srv = srv;
    }
    pthread_mutex_unlock(&servers_mu);
}

/* One labelled sample per server. */
static void httpd_family(ts_buf *b, const char *name, const char *type, const char *help,
                         const struct ts_httpd_stats *st,
                         long (*get)(const struct ts_httpd_stats *))
{
    ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (int i = 0; i < nservers; i++)
        ts_buf_printf(b, "%s{listener=\"%s\"} %ld\n", name, servers[i].listener, get(&st[i]));
}

static long get_conns(const struct ts_httpd_stats *st)
{
    return st->conns;
}
static long get_pending(const struct ts_httpd_stats *st)
{
    return st->pending;
}
static long get_parked(const struct ts_httpd_stats *st)
{
    return st->parked;
}
static long get_woken(const struct ts_httpd_stats *st)
{
    return st->woken;
}

/* The HTTP servers' connections, parked long-polls and refusals (httpd.h
 * ts_httpd_stats), labelled by listener; refusals by reason, the capacity
 * classes by class. docs/OPERATIONS.md "Metrics" lists them. */
static void httpd_metrics(ts_buf *b)
{
    static const char *const cls[TS_HTTPD_CLASSES] = {[TS_HUB_CLASS_FEED] = "feed",
                                                      [TS_HUB_CLASS_PURCHASES] = "purchases",
                                                      [TS_HUB_CLASS_CDP] = "cdp"};
    struct ts_httpd_stats st[MAX_SERVERS];
    pthread_mutex_lock(&servers_mu);
    for (int i = 0; i < nservers; i++)
        ts_httpd_stats(servers[i].srv, &st[i]);
    httpd_family(b, "tillside_hub_httpd_connections", "gauge",
                 "Open connections that have authenticated (a client certificate, or a first "
                 "whole request).",
                 st, get_conns);
    httpd_family(b, "tillside_hub_httpd_unauthenticated_connections", "gauge",
                 "Open connections that have not authenticated yet (in the TLS handshake or "
                 "before their first request).",
                 st, get_pending);
    httpd_family(b, "tillside_hub_httpd_parked", "gauge",
                 "Long-polls held with nothing to answer yet.", st, get_parked);
    httpd_family(b, "tillside_hub_httpd_woken_total", "counter",
                 "Parked long-polls handed to the handler again by a change to their store.", st,
                 get_woken);
    ts_buf_puts(b, "# HELP tillside_hub_httpd_refused_total Connections and requests refused "
                   "since start, by reason.\n# TYPE tillside_hub_httpd_refused_total counter\n");
    for (int i = 0; i < nservers; i++) {
        const char *l = servers[i].listener;
        ts_buf_printf(
            b,
            "tillside_hub_httpd_refused_total{listener=\"%s\",reason=\"unauthenticated\"} %ld\n"
            "tillside_hub_httpd_refused_total{listener=\"%s\",reason=\"per_source\"} %ld\n"
            "tillside_hub_httpd_refused_total{listener=\"%s\",reason=\"connections\"} %ld\n"
            "tillside_hub_httpd_refused_total{listener=\"%s\",reason=\"handshake_deadline\"} %ld\n"
            "tillside_hub_httpd_refused_total{listener=\"%s\",reason=\"head_deadline\"} %ld\n",
            l, st[i].refused_pending, l, st[i].refused_source, l, st[i].refused_capacity, l,
            st[i].timed_out_handshake, l, st[i].timed_out_head);
        for (int k = 0; k < TS_HTTPD_CLASSES; k++)
            if (cls[k])
                ts_buf_printf(b,
                              "tillside_hub_httpd_refused_total{listener=\"%s\",reason=\"class\","
                              "class=\"%s\"} %ld\n",
                              l, cls[k], st[i].refused_class_n[k]);
    }
    ts_buf_puts(b, "# HELP tillside_hub_tls_handshakes_total TLS handshakes completed since start, "
                   "full or resumed (a session ticket).\n"
                   "# TYPE tillside_hub_tls_handshakes_total counter\n");
    for (int i = 0; i < nservers; i++)
        ts_buf_printf(b,
                      "tillside_hub_tls_handshakes_total{listener=\"%s\",kind=\"full\"} %ld\n"
                      "tillside_hub_tls_handshakes_total{listener=\"%s\",kind=\"resumed\"} %ld\n",
                      servers[i].listener, st[i].handshakes_full, servers[i].listener,
                      st[i].handshakes_resumed);
    pthread_mutex_unlock(&servers_mu);
}

/* Since start. */
static atomic_ullong n_accepted, n_duplicates, n_rejected;

void ts_hub_metrics_count_purchases(const struct ts_hub_purchase_counts *c)
{
    atomic_fetch_add(&n_accepted, c->accepted);
    atomic_fetch_add(&n_duplicates, c->duplicates);
    atomic_fetch_add(&n_rejected, c->rejected);
}

static void metric(ts_buf *b, const char *name, const char *type, const char *help, double v)
{
    ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void ts_hub_metrics_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                           struct ts_httpd_resp *resp)
{
    (void)req;
    json_t *o = json_object();
    struct ts_hub_upstream_metrics m = {0};
    ts_hub_purchases_stats(api->store, o);
    json_t *p = json_object_get(o, "purchases");
    ts_hub_upstream_metrics(api->upstream, &m);
    ts_buf_reset(&resp->body);
    ts_buf *b = &resp->body;
    ts_buf_printf(b,
                  "# HELP tillside_hub_purchases_total Purchase events answered since start, by "
                  "outcome.\n# TYPE tillside_hub_purchases_total counter\n"
                  "tillside_hub_purchases_total{result=\"accepted\"} %llu\n"
                  "tillside_hub_purchases_total{result=\"duplicate\"} %llu\n"
                  "tillside_hub_purchases_total{result=\"rejected\"} %llu\n",
                  atomic_load(&n_accepted), atomic_load(&n_duplicates), atomic_load(&n_rejected));
    metric(b, "tillside_hub_guard_drops_total", "counter",
           "Purchase events in which the payment card guard masked or refused card data.",
           (double)ts_hub_purchases_card_data());
    metric(b, "tillside_hub_purchases_stored", "gauge", "Purchases held in the hub database.",
           (double)json_integer_value(json_object_get(p, "stored")));
    metric(b, "tillside_hub_upstream_pending", "gauge",
           "Purchases waiting to be forwarded to the CDP.",
           (double)json_integer_value(json_object_get(p, "pending")));
    metric(b, "tillside_hub_upstream_dead", "gauge",
           "Purchases the CDP refused for good (dead letters); alarm when above 0.",
           (double)json_integer_value(json_object_get(p, "dead")));
    metric(b, "tillside_hub_upstream_forwarded_total", "counter",
           "Purchases the CDP accepted since start.", (double)m.forwarded);
    metric(b, "tillside_hub_upstream_requests_total", "counter",
           "Requests sent to the CDP since start.", (double)m.requests);
    metric(b, "tillside_hub_upstream_failures_total", "counter",
           "Requests to the CDP that failed and will be retried, since start.", (double)m.failures);
    metric(b, "tillside_hub_upstream_dead_total", "counter",
           "Purchases moved to the dead letters since start.", (double)m.dead);
    if (m.last_success_ms)
        metric(b, "tillside_hub_upstream_last_success_timestamp_seconds", "gauge",
               "Wall-clock time of the last request the CDP accepted.",
               (double)m.last_success_ms / 1000.0);
    uint64_t reads, rechecks;
    ts_hub_store_feed_counts(api->store, &reads, &rechecks);
    metric(b, "tillside_hub_feed_reads_total", "counter",
           "Feed pages read from the database since start (one query each): polls, and parked "
           "long-polls looking again.",
           (double)reads);
    metric(b, "tillside_hub_feed_rechecks_total", "counter",
           "Looks at the feed for other processes' commits made without a notice (PostgreSQL: "
           "one query for the whole process every 10 s, each second while it cannot listen).",
           (double)rechecks);
    ts_hub_sink_metrics_text(api->store, api->upstream, b);
    ts_hub_throttle_metrics(api->throttle, b);
    /* Per store, from the terminals' last reports (fleet_db.c). */
    ts_hub_fleet_metrics(api->store, api->now_ms(), api->cfg->fleet_stale_after_s, b);
    ts_hub_match_metrics(api->store, b); /* matchrate.c */
    ts_hub_sources_metrics(api->cfg, b);
    httpd_metrics(b);
    json_decref(o);
    resp->status = 200;
    ts_strlcpy(resp->content_type, "text/plain; version=0.0.4; charset=utf-8",
               sizeof resp->content_type);
}
