/* The match rate (matchrate.h). */
#include "matchrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BIG 1000000000000LL
#define MAX_ROWS 4000 /* store-days listed at most */

static enum ts_err bad(char *err, size_t errsz, const char *field, const char *why)
{
    ts_errf(err, errsz, "%s: %s", field, why);
    return TS_ERR_INVAL;
}

static bool day_ok(const char *s)
{
    static const char pat[] = "dddd-dd-dd";
    for (size_t i = 0; i < 10; i++)
        if (!s[i] || (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]))
            return false;
    return s[10] == '\0';
}

static bool count(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > BIG)
        return false;
    *out = json_integer_value(v);
    return true;
}

enum ts_err ts_hub_match_parse_tx(const json_t *v, struct ts_fleet_report *r, char *err,
                                  size_t errsz)
{
    const json_t *off = json_object_get(v, "utc_offset_s");
    const json_t *days = json_object_get(v, "days");
    if (!json_is_object(v) || json_object_size(v) != 2 || !json_is_integer(off) || !days)
        return bad(err, errsz, "tx", "expected {\"utc_offset_s\", \"days\"}");
    if (json_integer_value(off) < -14 * 3600 || json_integer_value(off) > 14 * 3600)
        return bad(err, errsz, "tx.utc_offset_s", "out of range");
    if (!json_is_array(days) || json_array_size(days) > TS_FLEET_MAX_TX)
        return bad(err, errsz, "tx.days", "expected an array of at most 3 days");
    r->utc_offset_s = json_integer_value(off);
    r->ntx = 0;
    size_t i;
    const json_t *d;
    json_array_foreach(days, i, d)
    {
        struct ts_fleet_tx *t = &r->tx[r->ntx];
        const char *day = json_string_value(json_object_get(d, "day"));
        if (!json_is_object(d) || json_object_size(d) != 3 || !day || !day_ok(day) ||
            !count(json_object_get(d, "all"), &t->all) ||
            !count(json_object_get(d, "identified"), &t->identified) || t->identified > t->all)
            return bad(err, errsz, "tx.days",
                       "expected {\"day\": \"YYYY-MM-DD\", \"all\", \"identified\" <= all}");
        for (size_t j = 0; j < r->ntx; j++)
            if (strcmp(r->tx[j].day, day) == 0)
                return bad(err, errsz, "tx.days", "a day given twice");
        memcpy(t->day, day, 11);
        r->ntx++;
    }
    return TS_OK;
}

json_t *ts_hub_match_tx_json(const struct ts_fleet_report *r)
{
    json_t *days = json_array();
    for (size_t i = 0; days && i < r->ntx; i++)
        json_array_append_new(days, json_pack("{s:s, s:I, s:I}", "day", r->tx[i].day, "all",
                                              (json_int_t)r->tx[i].all, "identified",
                                              (json_int_t)r->tx[i].identified));
    return json_pack("{s:I, s:o}", "utc_offset_s", (json_int_t)r->utc_offset_s, "days", days);
}

/* ---- storing ------------------------------------------------------------------*/

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS match_days(store_id TEXT NOT NULL, terminal TEXT NOT NULL,"
    "  day TEXT NOT NULL, all_n INTEGER NOT NULL, identified INTEGER NOT NULL,"
    "  utc_offset_s INTEGER NOT NULL, reported_at INTEGER NOT NULL,"
    "  PRIMARY KEY(store_id, terminal, day));";

enum ts_err ts_hub_match_schema(struct ts_hub_store *s)
{
    return ts_hub_db_ddl(s, schema_sql);
}

static const char *const write_sql[] = {
    "INSERT INTO match_days(store_id, terminal, day, all_n, identified, utc_offset_s,"
    " reported_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(store_id, terminal, day)"
    " DO UPDATE SET all_n = excluded.all_n, identified = excluded.identified,"
    " utc_offset_s = excluded.utc_offset_s, reported_at = excluded.reported_at",
};
static const struct ts_hub_stmts write_stmts = {write_sql, NULL, 1};

enum ts_err ts_hub_match_write(struct ts_hub_store *s, const char *store, const char *terminal,
                               const struct ts_fleet_report *r, int64_t now_ms)
{
    for (size_t i = 0; i < r->ntx; i++) {
        struct ts_sql_stmt *st = ts_hub_db_st(s, &write_stmts, 0);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, store);
        ts_sql_bind_text(st, 2, terminal);
        ts_sql_bind_text(st, 3, r->tx[i].day);
        ts_sql_bind_int64(st, 4, r->tx[i].all);
        ts_sql_bind_int64(st, 5, r->tx[i].identified);
        ts_sql_bind_int64(st, 6, r->utc_offset_s);
        ts_sql_bind_int64(st, 7, now_ms);
        int step = ts_sql_step(st);
        ts_sql_reset(st);
        if (step != TS_SQL_DONE)
            return ts_hub_db_werr(s, "match rate write");
    }
    return TS_OK;
}

/* ---- reading ------------------------------------------------------------------*/

/* Midnight of day at UTC offset off, as wall ms. */
static int64_t day_start_ms(const char *day, int64_t off)
{
    struct tm tm = {0};
    tm.tm_year = atoi(day) - 1900;
    tm.tm_mon = atoi(day + 5) - 1;
    tm.tm_mday = atoi(day + 8);
    return ((int64_t)timegm(&tm) - off) * 1000;
}

/* Identified purchases of store sold in [from, to) that reached every sink
 * they were queued for (none pending, dead or skipped). */
static int64_t delivered(struct ts_sql *db, struct ts_sql_stmt **st, const char *store,
                         int64_t from, int64_t to)
{
    if (!*st && ts_sql_prepare(db,
                               "SELECT count(*) FROM purchases p WHERE p.store_id = ?1"
                               " AND p.cid IS NOT NULL AND p.at >= ?2 AND p.at < ?3"
                               " AND EXISTS(SELECT 1 FROM sink_queue q"
                               "  WHERE q.event_id = p.message_id)"
                               " AND NOT EXISTS(SELECT 1 FROM sink_queue q"
                               "  WHERE q.event_id = p.message_id AND q.state <> 'sent')",
                               st) != TS_OK)
        return 0;
    ts_sql_reset(*st);
    ts_sql_bind_text(*st, 1, store);
    ts_sql_bind_int64(*st, 2, from);
    ts_sql_bind_int64(*st, 3, to);
    int64_t n = ts_sql_step(*st) == TS_SQL_ROW ? ts_sql_column_int64(*st, 0) : 0;
    ts_sql_reset(*st);
    return n;
}

static json_t *share(int64_t num, int64_t den)
{
    char s[48];
    snprintf(s, sizeof s, "%lld/%lld", (long long)num, (long long)den);
    return json_string(s);
}

enum ts_err ts_hub_match_list(struct ts_hub_store *s, const char *store, bool latest_only,
                              json_t **out)
{
    json_t *arr = json_array();
    struct ts_sql_stmt *st = NULL, *dst = NULL;
    if (!arr)
        return TS_ERR_NOMEM;
    struct ts_sql *db = ts_hub_db_read_begin(s, true);
    /* An older database (stats opens it read-only) has no table: []. */
    if (ts_sql_prepare(db,
                       "SELECT m.store_id, m.day, count(*), sum(m.all_n), sum(m.identified),"
                       " max(m.utc_offset_s) FROM match_days m"
                       " WHERE (CAST(?1 AS TEXT) IS NULL OR m.store_id = ?1) AND (?2 = 0 OR m.day ="
                       "  (SELECT max(x.day) FROM match_days x WHERE x.store_id = m.store_id))"
                       " GROUP BY m.store_id, m.day ORDER BY m.day DESC, m.store_id LIMIT ?3",
                       &st) == TS_OK) {
        ts_sql_bind_text(st, 1, store);
        ts_sql_bind_int64(st, 2, latest_only);
        ts_sql_bind_int64(st, 3, MAX_ROWS);
        while (ts_sql_step(st) == TS_SQL_ROW) {
            const char *sid = ts_sql_column_text(st, 0), *day = ts_sql_column_text(st, 1);
            int64_t all = ts_sql_column_int64(st, 3), id = ts_sql_column_int64(st, 4);
            int64_t off = ts_sql_column_int64(st, 5);
            if (!sid || !day || !day_ok(day))
                continue;
            int64_t from = day_start_ms(day, off);
            int64_t del = delivered(db, &dst, sid, from, from + 86400000LL);
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o}", "store", sid, "day", day,
                               "terminals", (json_int_t)ts_sql_column_int64(st, 2), "transactions",
                               (json_int_t)all, "identified", (json_int_t)id, "delivered",
                               (json_int_t)del, "identified_share", share(id, all),
                               "delivered_share", share(del, id)));
        }
    }
    ts_sql_finalize(dst);
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, true);
    *out = arr;
    return TS_OK;
}

void ts_hub_match_metrics(struct ts_hub_store *s, ts_buf *b)
{
    json_t *arr = NULL;
    if (ts_hub_match_list(s, NULL, true, &arr) != TS_OK)
        return;
    static const char *const names[3][2] = {
        {"transactions", "Transactions the store's tills counted on its newest local day"},
        {"identified", "Of those, tied to a known customer"},
        {"delivered", "Identified purchases of that day that reached every sink"},
    };
    for (int k = 0; k < 3; k++) {
        ts_buf_printf(b, "# HELP tillside_hub_match_%s %s\n# TYPE tillside_hub_match_%s gauge\n",
                      names[k][0], names[k][1], names[k][0]);
        size_t i;
        json_t *row;
        json_array_foreach(arr, i, row)
        {
            /* store ids are certificate OUs: printable, but escape " and \ */
            char esc[140];
            const char *sid = json_string_value(json_object_get(row, "store"));
            size_t n = 0;
            for (const char *c = sid; c && *c && n + 2 < sizeof esc; c++) {
                if (*c == '"' || *c == '\\')
                    esc[n++] = '\\';
                esc[n++] = *c;
            }
            esc[n] = '\0';
            ts_buf_printf(b, "tillside_hub_match_%s{store=\"%s\",day=\"%s\"} %lld\n", names[k][0],
                          esc, json_string_value(json_object_get(row, "day")),
                          (long long)json_integer_value(json_object_get(row, names[k][0])));
        }
    }
    json_decref(arr);
}
