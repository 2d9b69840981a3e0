/*
 * The per-store feed the terminals follow: its table, feed pages, the
 * long-poll on it, and live lookups by identifier key, all read on the
 * store's read side (db.h). rebuild.c writes the rows, erase.c turns them
 * into tombstones and prunes them.
 *
 * One row per (store, customer), stamped with a global sequence number
 * (meta.seq) at every change, so "WHERE store_id=? AND seq>? ORDER BY seq"
 * returns each customer once, at their latest state, and a cursor is just a
 * seq.
 */
#include "parts.h"

#include <stdatomic.h>
#include <string.h>

/* op 'upsert' or 'erase'; cid kept so an erase outlives the customer row,
 * at (ms) says when an erase row became one, for pruning tombstones. An
 * erased customer's rows are keyed 'erased:<cid>', not by their id. */
static const char *const schema_sql =
    "INSERT INTO meta(k, v) VALUES('horizon', 0) ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS feed(store_id TEXT NOT NULL, customer TEXT NOT NULL,"
    "  seq INTEGER NOT NULL, op TEXT NOT NULL, cid TEXT NOT NULL, at INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(store_id, customer)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS feed_seq ON feed(store_id, seq);"
    /* the feed watch finds the stores a commit changed (feed_watch.c) */
    "CREATE INDEX IF NOT EXISTS feed_by_seq ON feed(seq);"
    /* a card rebuild finds every store row of one customer */
    "CREATE INDEX IF NOT EXISTS feed_customer ON feed(customer);";

enum ts_err ts_hub_feed_schema(struct ts_hub_store *s)
{
    enum ts_err rc = ts_hub_db_ddl(s, schema_sql);
    /* Erase rows from before tombstones had an age count as made now, so
     * they are kept their full time. */
    return rc ? rc
              : ts_hub_db_add_column(s, "feed", "at", "at INTEGER NOT NULL DEFAULT 0",
                                     "UPDATE feed SET at = CAST(strftime('%s', 'now') AS INTEGER)"
                                     " * 1000 WHERE op = 'erase'");
}

/* Has store_id's feed a row after since? -1 on error. */
static int has_change(struct ts_hub_store *s, const char *store_id, uint64_t since)
{
    struct ts_sql_stmt *st = NULL;
    int rc = -1;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (ts_sql_prepare(db, "SELECT 1 FROM feed WHERE store_id = ?1 AND seq > ?2 LIMIT 1", &st) ==
        TS_OK) {
        ts_sql_bind_text(st, 1, store_id);
        ts_sql_bind_int64(st, 2, (int64_t)since);
        int step = ts_sql_step(st);
        rc = step == TS_SQL_ROW ? 1 : step == TS_SQL_DONE ? 0 : -1;
    }
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    return rc;
}

bool ts_hub_store_wait(struct ts_hub_store *s, const char *store_id, uint64_t since, int timeout_ms)
{
    int64_t deadline = ts_now_mono_ms() + timeout_ms;
    for (;;) {
        bool closing;
        uint64_t gen = ts_hub_db_changes(s, &closing);
        if (closing)
            return false;
        int ch = has_change(s, store_id, since);
        if (ch != 0)
            return ch > 0; /* on an error, stop waiting: the caller answers what it has */
        int64_t left = deadline - ts_now_mono_ms();
        if (left <= 0)
            return false;
        ts_hub_db_wait_change(s, gen, left);
    }
}

uint64_t ts_hub_store_horizon(struct ts_hub_store *s)
{
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    uint64_t h = (uint64_t)ts_hub_db_meta(db, "horizon");
    ts_hub_db_read_end(s, false);
    return h;
}

/* Appends one feed item. The card and keys are JSON we wrote ourselves and
 * the cid is hex, so plain concatenation is safe and avoids re-parsing a
 * million cards during a full sync. prev_keys is NULL without a second key
 * version. */
static enum ts_err feed_item(ts_buf *b, const char *op, const char *cid, const char *card,
                             const char *keys, const char *prev_keys)
{
    if (b->len && ts_buf_puts(b, ","))
        return TS_ERR_NOMEM;
    if (strcmp(op, "upsert") == 0 && card && keys)
        return ts_buf_printf(b, "{\"op\":\"upsert\",\"cid\":\"%s\",\"keys\":%s%s%s,\"card\":%s}",
                             cid, keys, prev_keys ? ",\"prev_keys\":" : "",
                             prev_keys ? prev_keys : "", card);
    return ts_buf_printf(b, "{\"op\":\"erase\",\"cid\":\"%s\"}", cid);
}

/* Feed pages read since start, by every store of the process (metrics). */
static _Atomic uint64_t feed_reads;

void ts_hub_store_feed_counts(struct ts_hub_store *s, uint64_t *reads, uint64_t *rechecks)
{
    *reads = atomic_load(&feed_reads);
    *rechecks = ts_hub_db_rechecks(s);
}

enum ts_err ts_hub_store_feed(struct ts_hub_store *s, const char *store_id, uint64_t since,
                              int limit, struct ts_hub_feed_page *page)
{
    int rc = TS_OK;
    struct ts_sql_stmt *st = NULL;
    bool prev = ts_hub_db_prev(s) != NULL;
    ts_buf_reset(&page->items);
    page->nitems = 0;
    page->more = false;
    page->last_seq = since;
    atomic_fetch_add(&feed_reads, 1);
    /* One read transaction: the horizon and the rows from one snapshot, so
     * a prune committing in between cannot slip a tombstone past us. */
    struct ts_sql *db = ts_hub_db_read_begin(s, true);
    if (since > (uint64_t)ts_hub_db_meta(db, "seq")) {
        rc = TS_ERR_GONE; /* a cursor from before this database was replaced */
        goto out;
    }
    /* Tombstones up to the horizon were pruned: a cursor below it may have
     * missed an erasure. A cursor of 0 has seen nothing, so has nothing to
     * erase either. */
    if (since > 0 && since < (uint64_t)ts_hub_db_meta(db, "horizon")) {
        rc = TS_ERR_GONE;
        goto out;
    }
    if (ts_sql_prepare(db,
                       "SELECT f.seq, f.op, f.cid, c.card, c.keys, c.prev_keys FROM feed f"
                       " LEFT JOIN customers c ON c.id = f.customer AND f.op = 'upsert'"
                       " WHERE f.store_id = ?1 AND f.seq > ?2 ORDER BY f.seq LIMIT ?3",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "feed");
        goto out;
    }
    ts_sql_bind_text(st, 1, store_id);
    ts_sql_bind_int64(st, 2, (int64_t)since);
    ts_sql_bind_int64(st, 3, limit + 1); /* one extra row tells whether there is more */
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        if (page->nitems == (size_t)limit) {
            page->more = true;
            break;
        }
        const char *op = ts_sql_column_text(st, 1);
        const char *cid = ts_sql_column_text(st, 2);
        if ((rc = feed_item(&page->items, op ? op : "erase", cid ? cid : "",
                            ts_sql_column_text(st, 3), ts_sql_column_text(st, 4),
                            prev ? ts_sql_column_text(st, 5) : NULL)))
            goto out;
        page->last_seq = (uint64_t)ts_sql_column_int64(st, 0);
        page->nitems++;
    }
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        rc = ts_hub_db_err(db, "feed");
out:
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, true);
    return rc;
}

enum ts_err ts_hub_store_lookup(struct ts_hub_store *s, const char *key_hex, ts_buf *out)
{
    int rc = TS_ERR_NOTFOUND;
    struct ts_sql_stmt *st = NULL;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    /* Either key version finds the customer: a terminal that has not yet
     * switched to the new key keeps finding people during a rotation. */
    if (ts_sql_prepare(db,
                       "SELECT c.cid, c.card, c.keys, c.prev_keys FROM identifiers i"
                       " JOIN customers c ON c.id = i.customer WHERE i.key = ?1"
                       " UNION ALL SELECT c.cid, c.card, c.keys, c.prev_keys FROM identifiers i"
                       " JOIN customers c ON c.id = i.customer WHERE i.prev_key = ?1 LIMIT 1",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "lookup");
        goto out;
    }
    ts_sql_bind_text(st, 1, key_hex);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW && ts_sql_column_text(st, 1) && ts_sql_column_text(st, 2)) {
        const char *prev = ts_sql_column_text(st, 3);
        const struct ts_tenant_key *pk = ts_hub_db_prev(s);
        int kv = ts_hub_db_key(s)->version;
        if (prev && pk)
            rc = ts_buf_printf(out,
                               "{\"kv\":%d,\"prev_kv\":%d,\"cid\":\"%s\",\"keys\":%s,"
                               "\"prev_keys\":%s,\"card\":%s}",
                               kv, pk->version, ts_sql_column_text(st, 0),
                               ts_sql_column_text(st, 2), prev, ts_sql_column_text(st, 1));
        else
            rc = ts_buf_printf(out, "{\"kv\":%d,\"cid\":\"%s\",\"keys\":%s,\"card\":%s}", kv,
                               ts_sql_column_text(st, 0), ts_sql_column_text(st, 2),
                               ts_sql_column_text(st, 1));
    } else if (step != TS_SQL_ROW && step != TS_SQL_DONE) {
        rc = ts_hub_db_err(db, "lookup");
    }
out:
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    return rc;
}
