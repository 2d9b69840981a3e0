/*
 * Retention: what the hub deletes so its database reaches a steady size
 * under a steady load, and the janitor thread that runs it (at start, then
 * every [retention] period_s). docs/OPERATIONS.md "Retention" lists the
 * keys and their defaults.
 *
 * Nothing a store still needs goes: a customer is erased only after
 * profile_quiet_days without a change, and as `tillside-hub erase` does it
 * (erase.c), so every store that had the card gets an erase item; the
 * erase items themselves go after tombstone_days, which raises the horizon
 * below which a cursor gets 410 Gone and resyncs (docs/PROTOCOL.md). A
 * purchase whose forwarding is still pending or dead stays, and so does its
 * outbox row; only sent rows age out.
 *
 * Every delete runs in transactions of at most BATCH rows, so a CDP batch
 * or a purchase upload waits behind one short transaction at most.
 */
#include "parts.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)
#define BATCH 2000
#define ERASE_BATCH 100
#define MAX_ERASE_PER_RUN 20000

/* Indexes the deletes below look rows up by. */
static const char *const schema_sql =
    "CREATE INDEX IF NOT EXISTS purchases_received ON purchases(received);"
    "CREATE INDEX IF NOT EXISTS processed_at ON processed(at);"
    "CREATE INDEX IF NOT EXISTS customers_updated ON customers(updated);";

enum ts_err ts_hub_retention_schema(struct ts_hub_store *s)
{
    return ts_hub_db_ddl(s, schema_sql);
}

/* Runs sql (?1 = arg) on the writer; *changed gets the rows it changed. */
static enum ts_err exec1(struct ts_hub_store *s, const char *sql, int64_t arg, int64_t *changed)
{
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = ts_sql_prepare(ts_hub_db_writer(s), sql, &st);
    if (rc == TS_OK) {
        ts_sql_bind_int64(st, 1, arg);
        rc = ts_sql_step(st) == TS_SQL_DONE ? TS_OK : TS_ERR_DB;
    }
    ts_sql_finalize(st);
    if (rc)
        return ts_hub_db_werr(s, "retention");
    if (changed)
        *changed = ts_sql_changes(ts_hub_db_writer(s));
    return TS_OK;
}

/* Deletes in transactions of BATCH rows until sql (which deletes at most
 * BATCH rows older than ?1) deletes fewer; *total counts them. */
static enum ts_err delete_batches(struct ts_hub_store *s, const char *sql, int64_t cutoff,
                                  size_t *total)
{
    int64_t n;
    do {
        enum ts_err rc = ts_hub_db_write_begin(s, 0);
        if (rc)
            return rc;
        n = 0;
        rc = exec1(s, sql, cutoff, &n);
        if ((rc = ts_hub_db_write_end(s, rc, false)))
            return rc;
        *total += (size_t)n;
    } while (n >= BATCH);
    return TS_OK;
}

/* The ids of up to ERASE_BATCH customers unchanged since before cutoff. */
static enum ts_err quiet_ids(struct ts_hub_store *s, int64_t cutoff, char ids[][TS_SEG_MAX_ID + 1],
                             size_t *n)
{
    struct ts_sql_stmt *st = NULL;
    *n = 0;
    if (ts_sql_prepare(ts_hub_db_writer(s),
                       "SELECT id FROM customers WHERE updated < ?1 ORDER BY updated LIMIT 100",
                       &st) != TS_OK)
        return ts_hub_db_werr(s, "retention: quiet profiles");
    ts_sql_bind_int64(st, 1, cutoff);
    int step = TS_SQL_DONE;
    while (*n < ERASE_BATCH && (step = ts_sql_step(st)) == TS_SQL_ROW) {
        const char *id = ts_sql_column_text(st, 0);
        if (id && ts_strlcpy(ids[*n], id, sizeof ids[*n]) < sizeof ids[*n])
            (*n)++;
    }
    enum ts_err rc =
        *n < ERASE_BATCH && step != TS_SQL_DONE ? ts_hub_db_werr(s, "quiet profiles") : TS_OK;
    ts_sql_finalize(st);
    return rc;
}

/* Erases customers unchanged since before cutoff, ERASE_BATCH per
 * transaction (deleted bytes overwritten, as for `tillside-hub erase`). */
static enum ts_err erase_quiet(struct ts_hub_store *s, int64_t cutoff, int64_t now_ms,
                               size_t *total)
{
    static char ids[ERASE_BATCH][TS_SEG_MAX_ID + 1]; /* the janitor runs one pass at a time */
    /* A customer from before the hub stamped changes has no time: their
     * quiet time starts now. */
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    rc = exec1(s, "UPDATE customers SET updated = ?1 WHERE updated = 0", now_ms, NULL);
    if ((rc = ts_hub_db_write_end(s, rc, false)))
        return rc;
    size_t n;
    do {
        if ((rc = ts_hub_db_write_begin(s, TS_HUB_TXN_SECURE)))
            return rc;
        rc = quiet_ids(s, cutoff, ids, &n);
        for (size_t i = 0; rc == TS_OK && i < n; i++) {
            rc = ts_hub_erase_in_txn(s, ids[i], now_ms, NULL);
            if (rc == TS_ERR_NOTFOUND)
                rc = TS_OK; /* merged away meanwhile */
        }
        if ((rc = ts_hub_db_write_end(s, rc, n > 0)))
            return rc;
        *total += n;
    } while (n == ERASE_BATCH && *total < MAX_ERASE_PER_RUN);
    return TS_OK;
}

/* Each delete removes at most BATCH rows older than ?1 (a time in ms). */
static const char *const deletes[] = {
    /* purchases that every sink is done with (sent, or skipped as not its
     * kind or without a customer), or that no sink was queued for */
    "DELETE FROM purchases WHERE message_id IN (SELECT p.message_id FROM purchases p"
    " WHERE p.received < ?1 AND NOT EXISTS (SELECT 1 FROM sink_queue q"
    " WHERE q.event_id = p.message_id AND q.state NOT IN ('sent', 'skipped')) LIMIT 2000)",
    /* the sinks' delivered rows; pending and dead ones stay */
    ("DELETE FROM sink_queue WHERE (sink, event_id, item) IN (SELECT sink, event_id, item FROM"
     " sink_queue WHERE state IN ('sent', 'skipped') AND COALESCE(done_at, created) < ?1"
     " LIMIT 2000)"),
    ("DELETE FROM processed WHERE message_id IN (SELECT message_id FROM processed"
     " WHERE at < ?1 LIMIT 2000)"),
};

enum ts_err ts_hub_retention_run(struct ts_hub_store *s, const struct ts_hub_retention *r,
                                 int tombstone_days, int64_t now_ms,
                                 struct ts_hub_retention_result *out)
{
    struct ts_hub_retention_result res = {0};
    const int days[] = {r->purchases_days, r->upstream_sent_days, r->processed_days};
    size_t *counts[] = {&res.purchases, &res.sent, &res.processed};
    enum ts_err rc = TS_OK;
    if (r->profile_quiet_days > 0)
        rc = erase_quiet(s, now_ms - r->profile_quiet_days * DAY_MS, now_ms, &res.profiles);
    for (size_t i = 0; rc == TS_OK && i < sizeof deletes / sizeof deletes[0]; i++)
        if (days[i] > 0) /* 0 = kept forever */
            rc = delete_batches(s, deletes[i], now_ms - days[i] * DAY_MS, counts[i]);
    /* Last: the erasures above are tombstones now, kept their full time. */
    if (rc == TS_OK)
        rc = ts_hub_store_prune(s, now_ms, tombstone_days * DAY_MS, &res.tombstones);
    if (out)
        *out = res;
    return rc;
}

/* ---- the janitor thread --------------------------------------------------*/

struct ts_hub_janitor {
    struct ts_hub_store *s;
    struct ts_hub_retention r;
    int tombstone_days;
    struct ts_worker w;
};

static void janitor_run(struct ts_worker *w, void *arg)
{
    struct ts_hub_janitor *j = arg;
    do {
        struct ts_hub_retention_result n = {0};
        if (ts_hub_retention_run(j->s, &j->r, j->tombstone_days, ts_now_wall_ms(), &n) != TS_OK)
            TS_WARN("hub", "retention pass failed (see above); trying again in %d s",
                    j->r.period_s);
        if (n.profiles || n.purchases || n.sent || n.processed || n.tombstones)
            TS_INFO("hub",
                    "retention: erased %zu quiet profile(s); deleted %zu purchase(s), %zu sent "
                    "outbox row(s), %zu messageId(s), %zu tombstone(s); horizon now %llu",
                    n.profiles, n.purchases, n.sent, n.processed, n.tombstones,
                    (unsigned long long)ts_hub_store_horizon(j->s));
    } while (!ts_worker_sleep(w, (int64_t)j->r.period_s * 1000, TS_WORKER_KICKABLE));
}

enum ts_err ts_hub_janitor_start(struct ts_hub_store *s, const struct ts_hub_retention *r,
                                 int tombstone_days, struct ts_hub_janitor **out)
{
    struct ts_hub_janitor *j = calloc(1, sizeof *j);
    if (!j)
        return TS_ERR_NOMEM;
    j->s = s;
    j->r = *r;
    if (j->r.period_s <= 0)
        j->r.period_s = 3600;
    j->tombstone_days = tombstone_days;
    if (ts_worker_init(&j->w) != TS_OK || ts_worker_start(&j->w, janitor_run, j) != TS_OK) {
        ts_worker_destroy(&j->w);
        free(j);
        return TS_ERR_NOMEM;
    }
    *out = j;
    return TS_OK;
}

void ts_hub_janitor_stop(struct ts_hub_janitor *j)
{
    if (!j)
        return;
    ts_worker_stop(&j->w);
    ts_worker_destroy(&j->w);
    free(j);
}
