/*
 * The forwarder's own parts (not the vendor interface, which is sink.h):
 * the durable per-sink queue (sink_queue.c), one sink's worker
 * (sink_core.c), the set of sinks (upstream.c) and what the CLI and
 * /metrics read (cmd_upstream.c, metrics.c).
 *
 * Queue rows, table sink_queue, key (sink, event_id, item):
 *   item -1  a stored event not yet mapped for this sink (queued with the
 *            purchase, in its transaction);
 *   item i   the vendor's i-th item of it, with its payload and dedup key.
 * state: pending, sent, dead (with reason and the vendor's reply), or
 * skipped (an event without a known customer for a sink that takes none);
 * inflight 1: a pending item in a request not yet answered.
 */
#ifndef TS_HUB_SINKS_H
#define TS_HUB_SINKS_H

#include "hub.h"
#include "sink.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- sink_queue.c ------------------------------------------------------------*/

/* The sinks events are queued for (set at start-up by upstream.c, before
 * purchases arrive): names and their send bits. */
void ts_hub_sinkq_set_targets(const struct ts_sink_conf *const *sinks, size_t n);

/* Queues event id of kind for every target sink taking that kind, in the
 * caller's write transaction. */
enum ts_err ts_hub_sinkq_queue(struct ts_hub_store *s, enum ts_sink_kind kind, const char *id,
                               int64_t now_ms);

/* One due row. payload NULL for item -1. */
struct ts_hub_sinkq_row {
    char event_id[TS_SEG_MAX_ID + 1];
    int item;
    int attempts;
    bool solo;
    int kind;
    int64_t created; /* when the event was queued */
    char *payload;   /* malloc'd */
    size_t len;
    char dedup[160];
};
void ts_hub_sinkq_rows_free(struct ts_hub_sinkq_row *rows, size_t n);

/* Due rows of sink not in flight, oldest first, up to max (a solo row comes
 * alone); *next = when the next falls due (now when more are due, INT64_MAX
 * none). Not the leader of hubs on one PostgreSQL: none, *next a few seconds
 * on, *recovered false. Leading with *recovered false: the rows a former run
 * left in flight are pending again first (a kill -9 mid-request), then
 * *recovered is true. */
enum ts_err ts_hub_sinkq_due(struct ts_hub_store *s, const char *sink, int64_t now,
                             struct ts_hub_sinkq_row *rows, size_t max, size_t *n, int64_t *next,
                             bool *recovered);

/* Marks rows[0..n) in flight (one request's batch, before it goes), so no
 * other request of the sink takes them; ts_hub_sinkq_mark ends that. */
enum ts_err ts_hub_sinkq_claim(struct ts_hub_store *s, const char *sink,
                               const struct ts_hub_sinkq_row *rows, size_t n);

/* Maps the rows of rows[0..n) with item -1 with vendor v for sink c,
 * replacing each by its items (or marking it dead or skipped), in one
 * transaction; *skipped / *dead count what it did. */
enum ts_err ts_hub_sinkq_expand(struct ts_hub_store *s, const struct ts_sink_conf *c,
                                const struct ts_sink_vendor *v, void *state,
                                const struct ts_hub_sinkq_row *rows, size_t n, int64_t now,
                                int *skipped, int *dead);

/* Marks rows[i] by verdict[i] (OK, RETRY, SPLIT, DEAD) in one transaction:
 * RETRY at next_at, DEAD with reason[i] and reply. */
enum ts_err ts_hub_sinkq_mark(struct ts_hub_store *s, const char *sink,
                              const struct ts_hub_sinkq_row *rows, size_t n,
                              const enum ts_sink_verdict *verdict, const struct ts_sink_result *res,
                              const char *reply, int64_t now, int64_t next_at);

/* At start: what waits for a backoff of a former run goes now. */
enum ts_err ts_hub_sinkq_reset_backoff(struct ts_hub_store *s, const char *sink, int64_t now);

struct ts_hub_sinkq_counts {
    long long pending, sent, dead, skipped;
    int64_t oldest_ms; /* created of the oldest pending row, 0 none */
};
/* Per sink; on the read side. */
enum ts_err ts_hub_sinkq_counts(struct ts_hub_store *s, const char *sink,
                                struct ts_hub_sinkq_counts *c);

/* ---- the CLI (cmd_upstream.c) over the queue ----------------------------------
 * sink NULL = every sink; event NULL = every dead letter (retry, drop). */
/* {"sinks": [{"sink", "pending", "sent", "dead", "skipped", "oldest"}],
 *  "dead": [{"sink", "event", "item", "attempts", "reason", "at"}]} */
enum ts_err ts_hub_sinkq_list(struct ts_hub_store *s, const char *sink, size_t limit, ts_buf *json);
/* One event's rows with payload, reason and reply; TS_ERR_NOTFOUND. */
enum ts_err ts_hub_sinkq_show(struct ts_hub_store *s, const char *sink, const char *event,
                              ts_buf *json);
/* Dead rows back to pending (due now, sent alone) / deleted; *n = how many. */
enum ts_err ts_hub_sinkq_retry(struct ts_hub_store *s, const char *sink, const char *event,
                               long long *n);
enum ts_err ts_hub_sinkq_drop(struct ts_hub_store *s, const char *sink, const char *event,
                              long long *n);

/* The fleet view's sinks (`tillside-hub fleet`, /v1/fleet), one per configured
 * sink, from the queue so the CLI and the running hub say the same: a json_t *
 * array of {"sink", "type", "pending", "oldest_pending_age_s", "sent" (items
 * delivered), "failed" (pending items that failed at least once), "dead",
 * "rate" (items delivered per second over the last minute)}. */
enum ts_err ts_hub_sinkq_fleet(struct ts_hub_store *s, const struct ts_hub_config *cfg, int64_t now,
                               json_t **out);

/* ---- sink_core.c -------------------------------------------------------------*/

struct ts_hub_sink;

enum ts_err ts_hub_sink_new(struct ts_hub_store *s, const struct ts_sink_conf *c,
                            struct ts_hub_sink **out, char *err, size_t errsz);
enum ts_err ts_hub_sink_start(struct ts_hub_sink *k);
void ts_hub_sink_kick(struct ts_hub_sink *k);
void ts_hub_sink_free(struct ts_hub_sink *k);
/* One pass, as the thread runs it (tests). */
enum ts_err ts_hub_sink_run_once(struct ts_hub_sink *k, int64_t now_ms, int64_t *next_ms);
const struct ts_sink_conf *ts_hub_sink_conf(const struct ts_hub_sink *k);

struct ts_hub_sink_metrics {
    uint64_t requests, sent, failures, dead, throttled, skipped; /* since start */
    double rate;             /* the bucket's current rate, per second */
    int64_t last_success_ms; /* 0 = never */
};
void ts_hub_sink_metrics(const struct ts_hub_sink *k, struct ts_hub_sink_metrics *m);

/* ---- upstream.c: the set -------------------------------------------------------*/

/* The number of sinks and the i-th (metrics.c, stats). */
size_t ts_hub_upstream_count(const struct ts_hub_upstream *u);
struct ts_hub_sink *ts_hub_upstream_sink(const struct ts_hub_upstream *u, size_t i);

/* /metrics lines for every sink of u (with pending and oldest age from s). */
enum ts_err ts_hub_sink_metrics_text(struct ts_hub_store *s, const struct ts_hub_upstream *u,
                                     ts_buf *b);

#endif
