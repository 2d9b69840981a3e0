/*
 * Forwarding stored events to the retailer's CDPs and engagement platforms:
 * the set of sinks ([sink.NAME] sections, and [upstream] as sink "upstream"
 * of type segment). Each sink is its own thread over its own rows of the
 * durable sink queue (sink_core.c, sink_queue.c); the vendors are one file
 * each behind hub/sink.h. This file only creates, starts, kicks and stops
 * them, and sums their counters for the hub's old upstream metrics.
 */
#include "parts.h"
#include "purchases.h"
#include "sink_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ts_hub_upstream {
    struct ts_hub_store *s;
    size_t n;
    struct ts_hub_sink *sinks[TS_HUB_MAX_SINKS];
};

int64_t ts_hub_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, int64_t retry_after_ms,
                          uint32_t r)
{
    int64_t d = ts_backoff_pick_ms(attempt > 0 ? (unsigned)attempt : 0, base_ms, cap_ms, 0, r);
    return d < retry_after_ms ? retry_after_ms : d;
}

enum ts_err ts_hub_upstream_new(struct ts_hub_store *s, const struct ts_hub_config *cfg,
                                struct ts_hub_upstream **out, char *err, size_t errsz)
{
    *out = NULL;
    struct ts_hub_upstream *u = calloc(1, sizeof *u);
    if (!u) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    u->s = s;
    const struct ts_sink_conf *confs[TS_HUB_MAX_SINKS];
    for (size_t i = 0; i < cfg->nsinks; i++) {
        enum ts_err rc = ts_hub_sink_new(s, &cfg->sinks[i], &u->sinks[u->n], err, errsz);
        if (rc != TS_OK) {
            ts_hub_upstream_free(u);
            return rc;
        }
        confs[u->n] = ts_hub_sink_conf(u->sinks[u->n]);
        u->n++;
    }
    ts_hub_sinkq_set_targets(confs, u->n);
    *out = u;
    return TS_OK;
}

enum ts_err ts_hub_upstream_start(struct ts_hub_upstream *u)
{
    for (size_t i = 0; i < u->n; i++) {
        enum ts_err rc = ts_hub_sink_start(u->sinks[i]);
        if (rc != TS_OK)
            return rc;
    }
    return TS_OK;
}

void ts_hub_upstream_kick(struct ts_hub_upstream *u)
{
    for (size_t i = 0; u && i < u->n; i++)
        ts_hub_sink_kick(u->sinks[i]);
}

void ts_hub_upstream_free(struct ts_hub_upstream *u)
{
    if (!u)
        return;
    ts_hub_sinkq_set_targets(NULL, 0);
    for (size_t i = 0; i < u->n; i++)
        ts_hub_sink_free(u->sinks[i]);
    free(u);
}

enum ts_err ts_hub_upstream_run_once(struct ts_hub_upstream *u, int64_t now_ms, int64_t *next_ms)
{
    enum ts_err rc = TS_OK;
    *next_ms = INT64_MAX;
    for (size_t i = 0; i < u->n; i++) {
        int64_t next = INT64_MAX;
        enum ts_err r = ts_hub_sink_run_once(u->sinks[i], now_ms, &next);
        if (r != TS_OK)
            rc = r;
        if (next < *next_ms)
            *next_ms = next;
    }
    return rc;
}

size_t ts_hub_upstream_count(const struct ts_hub_upstream *u)
{
    return u ? u->n : 0;
}

struct ts_hub_sink *ts_hub_upstream_sink(const struct ts_hub_upstream *u, size_t i)
{
    return u && i < u->n ? u->sinks[i] : NULL;
}

void ts_hub_upstream_metrics(const struct ts_hub_upstream *u, struct ts_hub_upstream_metrics *m)
{
    memset(m, 0, sizeof *m);
    for (size_t i = 0; u && i < u->n; i++) {
        struct ts_hub_sink_metrics k;
        ts_hub_sink_metrics(u->sinks[i], &k);
        m->requests += k.requests;
        m->forwarded += k.sent;
        m->failures += k.failures;
        m->dead += k.dead;
        if (k.last_success_ms > m->last_success_ms)
            m->last_success_ms = k.last_success_ms;
    }
}

/* One labelled line per sink: name{sink="NAME"} value. */
static enum ts_err line(ts_buf *b, const char *name, const char *sink, double v)
{
    return ts_buf_printf(b, "%s{sink=\"%s\"} %.10g\n", name, sink, v);
}

enum ts_err ts_hub_sink_metrics_text(struct ts_hub_store *s, const struct ts_hub_upstream *u,
                                     ts_buf *b)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"tillside_hub_sink_pending", "gauge", "Items and events waiting for the sink"},
        {"tillside_hub_sink_oldest_pending_age_seconds", "gauge", "Age of the oldest waiting"},
        {"tillside_hub_sink_sent_total", "counter", "Items the sink acknowledged since start"},
        {"tillside_hub_sink_failed_requests_total", "counter", "Requests that failed (retried)"},
        {"tillside_hub_sink_dead", "gauge", "Dead letters of the sink"},
        {"tillside_hub_sink_throttled_total", "counter", "429 answers since start"},
        {"tillside_hub_sink_skipped_anonymous", "gauge",
         "Events without a known customer the sink does not take"},
        {"tillside_hub_sink_rate", "gauge", "The sink's current request rate per second"},
    };
    enum ts_err rc = TS_OK;
    size_t n = ts_hub_upstream_count(u);
    struct ts_hub_sinkq_counts *c = calloc(n ? n : 1, sizeof *c);
    struct ts_hub_sink_metrics *k = calloc(n ? n : 1, sizeof *k);
    if (!c || !k)
        rc = TS_ERR_NOMEM;
    int64_t now = ts_now_wall_ms();
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        ts_hub_sinkq_counts(s, ts_hub_sink_conf(u->sinks[i])->name, &c[i]);
        ts_hub_sink_metrics(u->sinks[i], &k[i]);
    }
    for (size_t j = 0; rc == TS_OK && n && j < sizeof m / sizeof m[0]; j++) {
        rc = ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m[j].name, m[j].help, m[j].name,
                           m[j].type);
        for (size_t i = 0; rc == TS_OK && i < n; i++) {
            const char *name = ts_hub_sink_conf(u->sinks[i])->name;
            double v[] = {
                (double)c[i].pending, c[i].oldest_ms ? (double)(now - c[i].oldest_ms) / 1000.0 : 0,
                (double)k[i].sent,    (double)k[i].failures,
                (double)c[i].dead,    (double)k[i].throttled,
                (double)c[i].skipped, k[i].rate};
            rc = line(b, m[j].name, name, v[j]);
        }
    }
    free(c);
    free(k);
    return rc;
}
