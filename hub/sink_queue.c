/*
 * The sinks' durable queue (hub/sinks.h): table sink_queue, one row per
 * sink and stored event until the sink maps it, then one per vendor item.
 * Filled in the purchase's own transaction, so a crash between storing and
 * forwarding loses nothing; every sink has its own rows, retry state and
 * dead letters, so one vendor's outage never holds another back.
 *
 * Upgrade: a database of an older hub has table upstream_outbox (the one
 * [upstream] forwarder); its rows move to sink "upstream" (what [upstream]
 * runs as) in the schema transaction, states and attempts kept, and the
 * table goes.
 */
#include "parts.h"
#include "purchases.h"
#include "sinks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "sinks"
#define TS_HUB_LOCK_FORWARDER 1
#define FOLLOWER_RETRY_MS 5000 /* a hub that does not forward asks again this often */
#define SHARED_POLL_MS 1000

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS sink_queue(sink TEXT NOT NULL, event_id TEXT NOT NULL,"
    "  item INTEGER NOT NULL, kind INTEGER NOT NULL DEFAULT 1,"
    "  state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_at INTEGER NOT NULL, solo INTEGER NOT NULL DEFAULT 0, payload TEXT, dedup TEXT,"
    "  reason TEXT, reply TEXT, created INTEGER NOT NULL, done_at INTEGER,"
    "  inflight INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(sink, event_id, item)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS sink_queue_due ON sink_queue(sink, state, next_at);";

static bool has_table(struct ts_sql *db, const char *name)
{
    struct ts_sql_stmt *st = NULL;
    bool yes = false;
    const char *q = ts_sql_is_pg(db) ? "SELECT 1 FROM pg_tables WHERE tablename = ?1"
                                       " AND schemaname = current_schema()"
                                     : "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                                       " AND name = ?1";
    if (ts_sql_prepare(db, q, &st) == TS_OK && ts_sql_bind_text(st, 1, name) == TS_OK)
        yes = ts_sql_step(st) == TS_SQL_ROW;
    ts_sql_finalize(st);
    return yes;
}

enum ts_err ts_hub_upstream_schema(struct ts_hub_store *s)
{
    enum ts_err rc = ts_hub_db_ddl(s, schema_sql);
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "sink_queue", "inflight",
                                  "inflight INTEGER NOT NULL DEFAULT 0", NULL);
    struct ts_sql *db = ts_hub_db_writer(s);
    if (rc != TS_OK || !has_table(db, "upstream_outbox"))
        return rc;
    rc = ts_hub_db_exec(db, "INSERT INTO sink_queue(sink, event_id, item, kind, state, attempts,"
                            " next_at, solo, reason, created, done_at)"
                            " SELECT 'upstream', message_id, -1, 1, state, attempts, next_at,"
                            " solo, reason, created, done_at FROM upstream_outbox WHERE true"
                            " ON CONFLICT DO NOTHING");
    if (rc == TS_OK)
        rc = ts_hub_db_exec(db, "DROP TABLE upstream_outbox");
    if (rc == TS_OK)
        TS_INFO(COMP, "moved the upstream outbox to the sink queue (sink \"upstream\")");
    return rc;
}

/* ---- queueing --------------------------------------------------------------*/

#define MAX_TARGETS 32
static struct {
    char name[64];
    unsigned send;
} targets[MAX_TARGETS];
static size_t ntargets;

void ts_hub_sinkq_set_targets(const struct ts_sink_conf *const *sinks, size_t n)
{
    ntargets = 0;
    for (size_t i = 0; i < n && ntargets < MAX_TARGETS; i++) {
        ts_strlcpy(targets[ntargets].name, sinks[i]->name, sizeof targets[0].name);
        targets[ntargets++].send = sinks[i]->send;
    }
}

static const char *const queue_sql[] = {
    "INSERT INTO sink_queue(sink, event_id, item, kind, next_at, created)"
    " VALUES(?1, ?2, -1, ?3, ?4, ?4) ON CONFLICT DO NOTHING",
    /* a redeemed offer for a sink not sent coupons (its send, or a Data
     * Cloud sink without coupon_object): counted as skipped */
    "INSERT INTO sink_queue(sink, event_id, item, kind, state, reason, next_at, created, done_at)"
    " VALUES(?1, ?2, -1, ?3, 'skipped', 'this sink is not sent coupons (send)', ?4, ?4, ?4)"
    " ON CONFLICT DO NOTHING",
};
static const struct ts_hub_stmts queue_stmts = {queue_sql, NULL, 2};

enum ts_err ts_hub_sinkq_queue(struct ts_hub_store *s, enum ts_sink_kind kind, const char *id,
                               int64_t now_ms)
{
    for (size_t i = 0; i < ntargets; i++) {
        bool skip = !(targets[i].send & kind);
        if (skip && kind != TS_SINK_COUPON)
            continue;
        struct ts_sql_stmt *st = ts_hub_db_st(s, &queue_stmts, skip ? 1 : 0);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, targets[i].name);
        ts_sql_bind_text(st, 2, id);
        ts_sql_bind_int64(st, 3, kind);
        ts_sql_bind_int64(st, 4, now_ms);
        int step = ts_sql_step(st);
        ts_sql_reset(st);
        if (step != TS_SQL_DONE)
            return ts_hub_db_werr(s, "sink queue insert");
    }
    return TS_OK;
}

enum ts_err ts_hub_upstream_queue(struct ts_hub_store *s, const char *message_id, int64_t now_ms)
{
    return ts_hub_sinkq_queue(s, TS_SINK_PURCHASE, message_id, now_ms);
}

/* ---- sending ---------------------------------------------------------------*/

void ts_hub_sinkq_rows_free(struct ts_hub_sinkq_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].payload);
        rows[i].payload = NULL;
    }
}

/* Rows a former run (this process before a kill, or the hub that forwarded
 * before us) had in flight go again: the vendor may not have them. */
static enum ts_err recover(struct ts_sql *db, const char *sink, bool *recovered)
{
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = TS_OK;
    if (ts_sql_prepare(db, "UPDATE sink_queue SET inflight = 0 WHERE sink = ?1 AND inflight = 1",
                       &st) != TS_OK ||
        ts_sql_bind_text(st, 1, sink) != TS_OK || ts_sql_step(st) != TS_SQL_DONE)
        rc = ts_hub_db_err(db, "sink queue recover");
    ts_sql_finalize(st);
    *recovered = rc == TS_OK;
    return rc;
}

enum ts_err ts_hub_sinkq_due(struct ts_hub_store *s, const char *sink, int64_t now,
                             struct ts_hub_sinkq_row *rows, size_t max, size_t *n, int64_t *next,
                             bool *recovered)
{
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = TS_OK;
    bool leading = false;
    *n = 0;
    *next = INT64_MAX;
    struct ts_sql *db = ts_hub_db_use(s);
    /* Of several hubs on one PostgreSQL database one forwards (the others
     * would send the same rows); another takes over when it goes. */
    if (ts_sql_try_lock(db, TS_HUB_LOCK_FORWARDER, &leading) != TS_OK || !leading) {
        *next = now + FOLLOWER_RETRY_MS;
        *recovered = false; /* when it leads, what the leader had in flight goes again */
        goto out;
    }
    if (!*recovered && (rc = recover(db, sink, recovered)) != TS_OK)
        goto out;
    if (ts_sql_prepare(
            db,
            "SELECT event_id, item, attempts, solo, next_at, kind, payload, dedup, created"
            " FROM sink_queue WHERE sink = ?1 AND state = 'pending' AND inflight = 0"
            " ORDER BY next_at, created, event_id, item LIMIT ?2",
            &st) != TS_OK) {
        rc = ts_hub_db_err(db, "sink queue read");
        goto out;
    }
    ts_sql_bind_text(st, 1, sink);
    ts_sql_bind_int64(st, 2, (int64_t)max);
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        int64_t at = ts_sql_column_int64(st, 4);
        if (at > now) {
            *next = at;
            break;
        }
        bool solo = ts_sql_column_int64(st, 3) != 0;
        if (solo && *n > 0)
            break;
        struct ts_hub_sinkq_row *r = &rows[*n];
        memset(r, 0, sizeof *r);
        ts_strlcpy(r->event_id, ts_sql_column_text(st, 0), sizeof r->event_id);
        r->item = (int)ts_sql_column_int64(st, 1);
        r->attempts = (int)ts_sql_column_int64(st, 2);
        r->solo = solo;
        r->kind = (int)ts_sql_column_int64(st, 5);
        const char *p = ts_sql_column_text(st, 6);
        if (p && !(r->payload = strdup(p))) {
            rc = TS_ERR_NOMEM;
            break;
        }
        r->len = p ? strlen(p) : 0;
        const char *d = ts_sql_column_text(st, 7);
        ts_strlcpy(r->dedup, d ? d : "", sizeof r->dedup);
        r->created = ts_sql_column_int64(st, 8);
        (*n)++;
        if (solo)
            break;
    }
    if (rc == TS_OK && step != TS_SQL_ROW && step != TS_SQL_DONE)
        rc = ts_hub_db_err(db, "sink queue read");
    else if (*n == max || (*n > 0 && step == TS_SQL_ROW))
        *next = now; /* more are due at once */
    /* Other hubs on a shared database queue rows without waking us. */
    if (ts_hub_db_shared(s) && *next > now + SHARED_POLL_MS)
        *next = now + SHARED_POLL_MS;
out:
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    return rc;
}

/* What mapping made of one row: its items, or the state it ends in. */
struct mapped {
    const char *state_to; /* NULL = replaced by items; "dead" or "skipped" */
    char why[300];
    struct ts_sink_items items;
};

/* Maps row with the stored event read by st (prepared on db): *m. */
static enum ts_err map_row(struct ts_sql_stmt *st, const struct ts_sink_conf *c,
                           const struct ts_sink_vendor *v, void *state,
                           const struct ts_hub_sinkq_row *row, int64_t now, struct mapped *m)
{
    ts_sql_reset(st);
    ts_sql_bind_text(st, 1, row->event_id);
    if (ts_sql_step(st) != TS_SQL_ROW) {
        m->state_to = "dead";
        snprintf(m->why, sizeof m->why, "the stored event is gone (kind %d)", row->kind);
        return TS_OK;
    }
    json_t *ev = json_loads(ts_sql_column_text(st, 0), 0, NULL);
    if (!ev)
        return TS_ERR_DB;
    const char *uid = ts_sql_column_text(st, 1);
    /* The address the hub knows for the customer (an identify's traits.email),
     * else Segment's convention for one known with the event. */
    const char *email = uid ? ts_sql_column_text(st, 3) : NULL;
    if (!email || !email[0])
        email = json_string_value(
            json_object_get(json_object_get(json_object_get(ev, "context"), "traits"), "email"));
    struct ts_sink_event e = {
        .kind = (enum ts_sink_kind)row->kind,
        .id = row->event_id,
        .event = ev,
        .user_id = uid,
        .email = email,
        .at_ms = ts_sql_column_int64(st, 2),
        .now_ms = now,
    };
    e.profile = c->identity == TS_SINK_ID_EMAIL && email ? email : e.user_id;
    if (!e.profile && !c->anonymous) {
        m->state_to = "skipped";
        snprintf(m->why, sizeof m->why, "no known customer; [sink.%s] takes no anonymous events",
                 c->name);
    } else if (v->map(state, &e, &m->items, m->why, sizeof m->why) != TS_OK) {
        m->state_to = "dead";
    }
    for (size_t i = 0; !m->state_to && i < m->items.n; i++)
        if (v->limits.max_item_bytes && m->items.v[i].len > v->limits.max_item_bytes) {
            m->state_to = "dead";
            snprintf(m->why, sizeof m->why, "mapped item %zu is %zu bytes, over the vendor's %zu",
                     i, m->items.v[i].len, v->limits.max_item_bytes);
        }
    json_decref(ev);
    return TS_OK;
}

static const char *const expand_sql[] = {
    "UPDATE sink_queue SET state = ?4, reason = ?5, done_at = ?3"
    " WHERE sink = ?1 AND event_id = ?2 AND item = -1",
    "DELETE FROM sink_queue WHERE sink = ?1 AND event_id = ?2 AND item = -1",
    "INSERT INTO sink_queue(sink, event_id, item, kind, next_at, payload, dedup, created)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
};

/* Writes what mapping made of rows[0..n) in one transaction. */
static enum ts_err store_mapped(struct ts_hub_store *s, const struct ts_sink_conf *c,
                                const struct ts_hub_sinkq_row *rows, const struct mapped *m,
                                size_t n, int64_t now)
{
    struct ts_sql_stmt *st[3] = {0};
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    struct ts_sql *db = ts_hub_db_writer(s);
    for (int i = 0; rc == TS_OK && i < 3; i++)
        rc = ts_sql_prepare(db, expand_sql[i], &st[i]);
    for (size_t r = 0; rc == TS_OK && r < n; r++) {
        if (rows[r].item >= 0)
            continue;
        struct ts_sql_stmt *q = st[m[r].state_to ? 0 : 1];
        ts_sql_reset(q);
        ts_sql_bind_text(q, 1, c->name);
        ts_sql_bind_text(q, 2, rows[r].event_id);
        if (m[r].state_to) {
            ts_sql_bind_int64(q, 3, now);
            ts_sql_bind_text(q, 4, m[r].state_to);
            ts_sql_bind_text(q, 5, m[r].why);
        }
        if (ts_sql_step(q) != TS_SQL_DONE)
            rc = TS_ERR_DB;
        for (size_t i = 0; rc == TS_OK && !m[r].state_to && i < m[r].items.n; i++) {
            ts_sql_reset(st[2]);
            ts_sql_bind_text(st[2], 1, c->name);
            ts_sql_bind_text(st[2], 2, rows[r].event_id);
            ts_sql_bind_int64(st[2], 3, (int64_t)i);
            ts_sql_bind_int64(st[2], 4, rows[r].kind);
            ts_sql_bind_int64(st[2], 5, now);
            ts_sql_bind_text(st[2], 6, m[r].items.v[i].json);
            ts_sql_bind_text(st[2], 7, m[r].items.v[i].dedup);
            ts_sql_bind_int64(st[2], 8, rows[r].created); /* the event's age and place */
            if (ts_sql_step(st[2]) != TS_SQL_DONE)
                rc = TS_ERR_DB;
        }
    }
    if (rc != TS_OK)
        rc = ts_hub_db_werr(s, "sink queue expand");
    for (int i = 0; i < 3; i++)
        ts_sql_finalize(st[i]);
    return ts_hub_db_write_end(s, rc, false);
}

enum ts_err ts_hub_sinkq_expand(struct ts_hub_store *s, const struct ts_sink_conf *c,
                                const struct ts_sink_vendor *v, void *state,
                                const struct ts_hub_sinkq_row *rows, size_t n, int64_t now,
                                int *skipped, int *dead)
{
    struct mapped *m = calloc(n ? n : 1, sizeof *m);
    if (!m)
        return TS_ERR_NOMEM;
    struct ts_sql_stmt *st = NULL;
    struct ts_sql *db = ts_hub_db_use(s);
    enum ts_err rc = ts_sql_prepare(db,
                                    "SELECT p.event, c.id, p.at, c.email FROM purchases p LEFT JOIN"
                                    " customers c ON c.id = p.customer WHERE p.message_id = ?1"
                                    /* a redeemed offer's Coupon Applied (offers.c) */
                                    " UNION ALL SELECT o.event, c.id, o.redeemed_at, c.email"
                                    " FROM offers o JOIN customers c ON c.id = o.customer"
                                    " WHERE o.message_id = ?1",
                                    &st);
    if (rc != TS_OK)
        rc = ts_hub_db_err(db, "sink queue event");
    for (size_t r = 0; rc == TS_OK && r < n; r++)
        if (rows[r].item < 0)
            rc = map_row(st, c, v, state, &rows[r], now, &m[r]);
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    if (rc == TS_OK)
        rc = store_mapped(s, c, rows, m, n, now);
    for (size_t r = 0; r < n; r++) {
        if (rc == TS_OK && rows[r].item < 0 && m[r].state_to) {
            if (strcmp(m[r].state_to, "dead") == 0) {
                (*dead)++;
                TS_ERROR(COMP, "[sink.%s] event %s dead-lettered: %s", c->name, rows[r].event_id,
                         m[r].why);
            } else {
                (*skipped)++;
            }
        }
        ts_sink_items_free(&m[r].items);
    }
    free(m);
    return rc;
}

enum ts_err ts_hub_sinkq_claim(struct ts_hub_store *s, const char *sink,
                               const struct ts_hub_sinkq_row *rows, size_t n)
{
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc;
    if ((rc = ts_hub_db_write_begin(s, 0)))
        return rc;
    struct ts_sql *db = ts_hub_db_writer(s);
    if (ts_sql_prepare(db,
                       "UPDATE sink_queue SET inflight = 1 WHERE sink = ?1 AND event_id = ?2"
                       " AND item = ?3",
                       &st) != TS_OK)
        rc = TS_ERR_DB;
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        ts_sql_reset(st);
        ts_sql_bind_text(st, 1, sink);
        ts_sql_bind_text(st, 2, rows[i].event_id);
        ts_sql_bind_int64(st, 3, rows[i].item);
        if (ts_sql_step(st) != TS_SQL_DONE)
            rc = TS_ERR_DB;
    }
    if (rc != TS_OK)
        rc = ts_hub_db_werr(s, "sink queue claim");
    ts_sql_finalize(st);
    return ts_hub_db_write_end(s, rc, false);
}

enum ts_err ts_hub_sinkq_mark(struct ts_hub_store *s, const char *sink,
                              const struct ts_hub_sinkq_row *rows, size_t n,
                              const enum ts_sink_verdict *verdict, const struct ts_sink_result *res,
                              const char *reply, int64_t now, int64_t next_at)
{
    static const char *const sql[] = {
        [TS_SINK_OK] =
            "UPDATE sink_queue SET state = 'sent', done_at = ?4, reason = NULL, inflight = 0,"
            " attempts = attempts + 1 WHERE sink = ?1 AND event_id = ?2 AND item = ?3",
        [TS_SINK_RETRY] =
            "UPDATE sink_queue SET attempts = attempts + 1, next_at = ?5, inflight = 0,"
            " reason = ?6 WHERE sink = ?1 AND event_id = ?2 AND item = ?3",
        [TS_SINK_SPLIT] =
            "UPDATE sink_queue SET solo = 1, reason = ?6, inflight = 0 WHERE sink = ?1"
            " AND event_id = ?2 AND item = ?3",
        [TS_SINK_DEAD] =
            "UPDATE sink_queue SET state = 'dead', done_at = ?4, reason = ?6, inflight = 0,"
            " reply = ?7, attempts = attempts + 1 WHERE sink = ?1"
            " AND event_id = ?2 AND item = ?3",
    };
    struct ts_sql_stmt *st[4] = {0};
    enum ts_err rc;
    if ((rc = ts_hub_db_write_begin(s, 0)))
        return rc;
    struct ts_sql *db = ts_hub_db_writer(s);
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        enum ts_sink_verdict v = verdict[i];
        if (v > TS_SINK_DEAD)
            v = TS_SINK_RETRY;
        if (!st[v] && ts_sql_prepare(db, sql[v], &st[v]) != TS_OK) {
            rc = TS_ERR_DB;
            break;
        }
        ts_sql_reset(st[v]);
        ts_sql_bind_text(st[v], 1, sink);
        ts_sql_bind_text(st[v], 2, rows[i].event_id);
        ts_sql_bind_int64(st[v], 3, rows[i].item);
        ts_sql_bind_int64(st[v], 4, now);
        ts_sql_bind_int64(st[v], 5, next_at);
        ts_sql_bind_text(st[v], 6, res[i].reason[0] ? res[i].reason : NULL);
        ts_sql_bind_text(st[v], 7, reply);
        if (ts_sql_step(st[v]) != TS_SQL_DONE)
            rc = TS_ERR_DB;
    }
    if (rc != TS_OK)
        rc = ts_hub_db_werr(s, "sink queue mark");
    for (int i = 0; i < 4; i++)
        ts_sql_finalize(st[i]);
    return ts_hub_db_write_end(s, rc, false);
}

enum ts_err ts_hub_sinkq_reset_backoff(struct ts_hub_store *s, const char *sink, int64_t now)
{
    struct ts_sql *db = ts_hub_db_use(s);
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = TS_OK;
    if (ts_sql_prepare(db,
                       "UPDATE sink_queue SET next_at = ?1 WHERE sink = ?2 AND state = 'pending'"
                       " AND next_at > ?1",
                       &st) != TS_OK ||
        ts_sql_bind_int64(st, 1, now) != TS_OK || ts_sql_bind_text(st, 2, sink) != TS_OK ||
        ts_sql_step(st) != TS_SQL_DONE)
        rc = ts_hub_db_err(db, "sink queue reset"); /* logged; the rows still go when due */
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    return rc;
}

enum ts_err ts_hub_sinkq_counts(struct ts_hub_store *s, const char *sink,
                                struct ts_hub_sinkq_counts *c)
{
    struct ts_sql_stmt *st = NULL;
    memset(c, 0, sizeof *c);
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    enum ts_err rc = TS_ERR_DB;
    if (ts_sql_prepare(db,
                       "SELECT state, count(*), min(created) FROM sink_queue WHERE sink = ?1"
                       " GROUP BY state",
                       &st) == TS_OK &&
        ts_sql_bind_text(st, 1, sink) == TS_OK) {
        int step;
        while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
            const char *state = ts_sql_column_text(st, 0);
            long long k = ts_sql_column_int64(st, 1);
            if (strcmp(state, "pending") == 0) {
                c->pending = k;
                c->oldest_ms = ts_sql_column_int64(st, 2);
            } else if (strcmp(state, "sent") == 0) {
                c->sent = k;
            } else if (strcmp(state, "dead") == 0) {
                c->dead = k;
            } else if (strcmp(state, "skipped") == 0) {
                c->skipped = k;
            }
        }
        rc = step == TS_SQL_DONE ? TS_OK : TS_ERR_DB;
    }
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    return rc;
}
