/*
 * What `tillside-hub upstream list|show|retry|drop` and `stats` read and
 * change in the sink queue (hub/sinks.h): counts per sink, dead letters
 * with their reason, one event's rows with the mapped payload and the
 * vendor's reply, and putting dead letters back or deleting them.
 */
#include "parts.h"
#include "purchases.h"
#include "sinks.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *text_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static enum ts_err dump(json_t *o, ts_buf *out)
{
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!t)
        return TS_ERR_NOMEM;
    ts_buf_reset(out);
    enum ts_err rc = ts_buf_puts(out, t);
    free(t);
    return rc;
}

enum ts_err ts_hub_sinkq_list(struct ts_hub_store *s, const char *sink, size_t limit, ts_buf *json)
{
    json_t *o = json_object(), *sinks = json_array(), *dead = json_array();
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = TS_ERR_DB;
    json_object_set_new(o, "sinks", sinks);
    json_object_set_new(o, "dead", dead);
    struct ts_sql *db = ts_hub_db_read_begin(s, true);
    int64_t now = ts_now_wall_ms();
    if (ts_sql_prepare(db,
                       "SELECT sink, sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END),"
                       " sum(CASE WHEN state = 'sent' THEN 1 ELSE 0 END),"
                       " sum(CASE WHEN state = 'dead' THEN 1 ELSE 0 END),"
                       " sum(CASE WHEN state = 'skipped' THEN 1 ELSE 0 END),"
                       " min(CASE WHEN state = 'pending' THEN created END)"
                       " FROM sink_queue WHERE (?1 = '' OR sink = ?1) GROUP BY sink"
                       " ORDER BY sink",
                       &st) != TS_OK)
        goto out;
    ts_sql_bind_text(st, 1, sink ? sink : ""); /* '' = every sink (typed for PostgreSQL) */
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        int64_t oldest = ts_sql_column_int64(st, 5);
        json_array_append_new(
            sinks, json_pack("{s:s,s:I,s:I,s:I,s:I,s:f}", "sink", ts_sql_column_text(st, 0),
                             "pending", (json_int_t)ts_sql_column_int64(st, 1), "sent",
                             (json_int_t)ts_sql_column_int64(st, 2), "dead",
                             (json_int_t)ts_sql_column_int64(st, 3), "skipped",
                             (json_int_t)ts_sql_column_int64(st, 4), "oldest_pending_age_s",
                             oldest ? (double)(now - oldest) / 1000.0 : 0.0));
    }
    ts_sql_finalize(st);
    st = NULL;
    if (step != TS_SQL_DONE ||
        ts_sql_prepare(db,
                       "SELECT sink, event_id, item, attempts, reason, done_at FROM sink_queue"
                       " WHERE state = 'dead' AND (?1 = '' OR sink = ?1)"
                       " ORDER BY done_at DESC, sink, event_id, item LIMIT ?2",
                       &st) != TS_OK)
        goto out;
    ts_sql_bind_text(st, 1, sink ? sink : ""); /* '' = every sink (typed for PostgreSQL) */
    ts_sql_bind_int64(st, 2, (int64_t)limit);
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        char at[40];
        ts_iso8601(ts_sql_column_int64(st, 5), at, sizeof at);
        json_array_append_new(dead, json_pack("{s:s,s:s,s:I,s:I,s:o,s:s}", "sink",
                                              ts_sql_column_text(st, 0), "event",
                                              ts_sql_column_text(st, 1), "item",
                                              (json_int_t)ts_sql_column_int64(st, 2), "attempts",
                                              (json_int_t)ts_sql_column_int64(st, 3), "reason",
                                              text_or_null(ts_sql_column_text(st, 4)), "at", at));
    }
    rc = step == TS_SQL_DONE ? TS_OK : TS_ERR_DB;
out:
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, true);
    if (rc != TS_OK) {
        json_decref(o);
        return rc;
    }
    return dump(o, json);
}

enum ts_err ts_hub_sinkq_show(struct ts_hub_store *s, const char *sink, const char *event,
                              ts_buf *json)
{
    json_t *rows = json_array();
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = TS_ERR_DB;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (ts_sql_prepare(db,
                       "SELECT sink, item, state, attempts, payload, dedup, reason, reply,"
                       " created, done_at FROM sink_queue WHERE event_id = ?1"
                       " AND (?2 = '' OR sink = ?2) ORDER BY sink, item",
                       &st) == TS_OK) {
        ts_sql_bind_text(st, 1, event);
        ts_sql_bind_text(st, 2, sink ? sink : "");
        int step;
        while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
            const char *p = ts_sql_column_text(st, 4);
            json_t *payload = p ? json_loads(p, 0, NULL) : NULL;
            char created[40];
            ts_iso8601(ts_sql_column_int64(st, 8), created, sizeof created);
            json_array_append_new(rows, json_pack("{s:s,s:I,s:s,s:I,s:o,s:o,s:o,s:o,s:s}", "sink",
                                                  ts_sql_column_text(st, 0), "item",
                                                  (json_int_t)ts_sql_column_int64(st, 1), "state",
                                                  ts_sql_column_text(st, 2), "attempts",
                                                  (json_int_t)ts_sql_column_int64(st, 3), "payload",
                                                  payload ? payload : json_null(), "dedup",
                                                  text_or_null(ts_sql_column_text(st, 5)), "reason",
                                                  text_or_null(ts_sql_column_text(st, 6)), "reply",
                                                  text_or_null(ts_sql_column_text(st, 7)), "queued",
                                                  created));
        }
        rc = step == TS_SQL_DONE ? TS_OK : TS_ERR_DB;
    }
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    if (rc == TS_OK && json_array_size(rows) == 0)
        rc = TS_ERR_NOTFOUND;
    if (rc != TS_OK) {
        json_decref(rows);
        return rc;
    }
    return dump(json_pack("{s:s,s:o}", "event", event, "rows", rows), json);
}

static enum ts_err change(struct ts_hub_store *s, const char *sql, const char *sink,
                          const char *event, long long *n)
{
    struct ts_sql_stmt *st = NULL;
    *n = 0;
    enum ts_err rc = ts_hub_db_write_begin(s, TS_HUB_TXN_DURABLE);
    if (rc)
        return rc;
    if (ts_sql_prepare(ts_hub_db_writer(s), sql, &st) != TS_OK) {
        rc = ts_hub_db_werr(s, "sink queue change");
    } else {
        ts_sql_bind_int64(st, 1, ts_now_wall_ms());
        ts_sql_bind_text(st, 2, sink ? sink : "");
        ts_sql_bind_text(st, 3, event ? event : "");
        if (ts_sql_step(st) != TS_SQL_DONE)
            rc = ts_hub_db_werr(s, "sink queue change");
        else
            *n = ts_sql_changes(ts_hub_db_writer(s));
    }
    ts_sql_finalize(st);
    return ts_hub_db_write_end(s, rc, false);
}

enum ts_err ts_hub_sinkq_retry(struct ts_hub_store *s, const char *sink, const char *event,
                               long long *n)
{
    /* Sent alone: the batch it was refused in does not hold it back again. */
    return change(s,
                  "UPDATE sink_queue SET state = 'pending', next_at = ?1, solo = 1,"
                  " attempts = 0, done_at = NULL WHERE state = 'dead'"
                  " AND (?2 = '' OR sink = ?2) AND (?3 = '' OR event_id = ?3)",
                  sink, event, n);
}

enum ts_err ts_hub_sinkq_drop(struct ts_hub_store *s, const char *sink, const char *event,
                              long long *n)
{
    return change(s,
                  "DELETE FROM sink_queue WHERE state = 'dead' AND ?1 > 0"
                  " AND (?2 = '' OR sink = ?2) AND (?3 = '' OR event_id = ?3)",
                  sink, event, n);
}

enum ts_err ts_hub_sinkq_fleet(struct ts_hub_store *s, const struct ts_hub_config *cfg, int64_t now,
                               json_t **out)
{
    json_t *arr = json_array();
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = arr ? TS_OK : TS_ERR_NOMEM;
    *out = NULL;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (rc == TS_OK &&
        (ts_sql_prepare(db,
                        "SELECT sum(CASE WHEN state = 'pending' THEN 1 ELSE 0 END),"
                        " min(CASE WHEN state = 'pending' THEN created END),"
                        " sum(CASE WHEN state = 'sent' THEN 1 ELSE 0 END),"
                        " sum(CASE WHEN state = 'pending' AND attempts > 0 THEN 1 ELSE 0 END),"
                        " sum(CASE WHEN state = 'dead' THEN 1 ELSE 0 END),"
                        " sum(CASE WHEN state = 'sent' AND done_at >= ?2 THEN 1 ELSE 0 END)"
                        " FROM sink_queue WHERE sink = ?1",
                        &st) != TS_OK))
        rc = TS_ERR_DB;
    for (size_t i = 0; rc == TS_OK && i < cfg->nsinks; i++) {
        const struct ts_sink_conf *k = &cfg->sinks[i];
        ts_sql_reset(st);
        ts_sql_bind_text(st, 1, k->name);
        ts_sql_bind_int64(st, 2, now - 60000);
        if (ts_sql_step(st) != TS_SQL_ROW) {
            rc = TS_ERR_DB;
            break;
        }
        int64_t oldest = ts_sql_column_int64(st, 1);
        json_t *o = json_pack(
            "{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:f}", "sink", k->name, "type", k->type, "pending",
            (json_int_t)ts_sql_column_int64(st, 0), "oldest_pending_age_s",
            (json_int_t)(oldest > 0 && now > oldest ? (now - oldest) / 1000 : 0), "sent",
            (json_int_t)ts_sql_column_int64(st, 2), "failed",
            (json_int_t)ts_sql_column_int64(st, 3), "dead", (json_int_t)ts_sql_column_int64(st, 4),
            "rate", (double)ts_sql_column_int64(st, 5) / 60.0);
        if (!o || json_array_append_new(arr, o) != 0)
            rc = TS_ERR_NOMEM;
    }
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    if (rc == TS_OK)
        *out = arr;
    else
        json_decref(arr);
    return rc;
}
