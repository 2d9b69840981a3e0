/*
 * The bulk path of `tillside-hub import` into PostgreSQL (import_copy.h).
 * Statement by statement, an import into PostgreSQL waits for one network
 * round trip per statement, dozens per event; ingesting into a scratch
 * SQLite file runs the same ingest code in-process, and COPY then moves
 * each finished table in a stream. Only into an empty database: the
 * scratch store's sequence numbers and rows are the whole truth only when
 * there is nothing to merge them with.
 */
#include "import_copy.h"
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 64

/* The one integer a query returns, or -1. */
static int64_t query_int(struct ts_sql *db, const char *sql)
{
    struct ts_sql_stmt *st = NULL;
    int64_t v = -1;
    if (ts_sql_prepare(db, sql, &st) == TS_OK && ts_sql_step(st) == TS_SQL_ROW)
        v = ts_sql_column_int64(st, 0);
    ts_sql_finalize(st);
    return v;
}

static bool empty(struct ts_sql *db)
{
    return query_int(db, "SELECT CASE WHEN EXISTS(SELECT 1 FROM customers)"
                         " OR EXISTS(SELECT 1 FROM feed) OR EXISTS(SELECT 1 FROM purchases)"
                         " OR EXISTS(SELECT 1 FROM processed) THEN 1 ELSE 0 END") == 0 &&
           ts_hub_db_meta(db, "seq") == 0;
}

enum ts_err ts_hub_import_can_copy(struct ts_hub_store *dst, bool *can)
{
    struct ts_sql *db = ts_hub_db_read_begin(dst, false);
    *can = ts_sql_is_pg(db) && empty(db);
    ts_hub_db_read_end(dst, false);
    return TS_OK;
}

/* Appends "name" (quoted) to b, after a comma unless first. */
static enum ts_err put_ident(ts_buf *b, const char *name, bool first)
{
    return ts_buf_printf(b, "%s\"%s\"", first ? "" : ", ", name);
}

/* Copies table t of src into dst's writer: *rows gets the count. */
static enum ts_err copy_table(struct ts_sql *src, struct ts_sql *dst, const char *t, int64_t *rows,
                              char *err, size_t errsz)
{
    struct ts_sql_stmt *st = NULL;
    ts_buf cols = {0}, sql = {0};
    int n = 0;
    enum ts_err rc =
        ts_sql_prepare(src, "SELECT name FROM pragma_table_info(?1) ORDER BY cid", &st);
    if (rc == TS_OK)
        ts_sql_bind_text(st, 1, t);
    while (rc == TS_OK && ts_sql_step(st) == TS_SQL_ROW && n < MAX_COLS)
        rc = put_ident(&cols, ts_sql_column_text(st, 0), n++ == 0);
    ts_sql_finalize(st);
    st = NULL;
    if (rc == TS_OK && (n == 0 || n == MAX_COLS))
        rc = TS_ERR_INVAL;
    if (rc == TS_OK)
        rc = ts_buf_printf(&sql, "SELECT %s FROM \"%s\"", cols.data, t);
    if (rc == TS_OK && (rc = ts_sql_prepare(src, sql.data, &st)) != TS_OK)
        ts_errf(err, errsz, "scratch table %s: %s", t, ts_sql_errmsg(src));
    ts_buf_reset(&sql);
    if (rc == TS_OK &&
        (rc = ts_buf_printf(&sql, "COPY \"%s\"(%s) FROM STDIN", t, cols.data)) == TS_OK &&
        (rc = ts_sql_copy_begin(dst, sql.data)) == TS_OK) {
        const char *vals[MAX_COLS];
        int step;
        while (rc == TS_OK && (step = ts_sql_step(st)) == TS_SQL_ROW) {
            for (int i = 0; i < n; i++)
                vals[i] = ts_sql_column_text(st, i);
            rc = ts_sql_copy_row(dst, vals, n);
        }
        if (rc == TS_OK && step != TS_SQL_DONE) {
            ts_errf(err, errsz, "reading scratch table %s: %s", t, ts_sql_errmsg(src));
            rc = TS_ERR_DB;
        }
        enum ts_err end = ts_sql_copy_end(dst, rows);
        if (end && rc == TS_OK) {
            ts_errf(err, errsz, "COPY %s: %s", t, ts_sql_errmsg(dst));
            rc = end;
        }
    } else if (rc && !err[0]) {
        ts_errf(err, errsz, "COPY %s: %s", t, ts_sql_errmsg(dst));
    }
    ts_sql_finalize(st);
    ts_buf_free(&cols);
    ts_buf_free(&sql);
    return rc;
}

/* Every table of src but meta, into dst; then its seq and event count. */
static enum ts_err copy_all(struct ts_sql *src, struct ts_hub_store *dst, size_t *tables,
                            int64_t *rows, char *err, size_t errsz)
{
    struct ts_sql *db = ts_hub_db_writer(dst);
    struct ts_sql_stmt *st = NULL;
    if (!empty(db)) {
        ts_errf(err, errsz, "the database was written to meanwhile");
        return TS_ERR_AGAIN;
    }
    enum ts_err rc =
        ts_sql_prepare(src,
                       "SELECT name FROM sqlite_master WHERE type = 'table'"
                       " AND name NOT LIKE 'sqlite_%' AND name <> 'meta' ORDER BY name",
                       &st);
    while (rc == TS_OK && ts_sql_step(st) == TS_SQL_ROW) {
        char t[128];
        int64_t n = 0;
        ts_strlcpy(t, ts_sql_column_text(st, 0), sizeof t);
        if ((rc = copy_table(src, db, t, &n, err, errsz)) == TS_OK) {
            (*tables)++;
            *rows += n;
        }
    }
    ts_sql_finalize(st);
    int64_t seq = ts_hub_db_meta(src, "seq"), events = ts_hub_db_meta(src, "events");
    if (rc == TS_OK && (rc = ts_hub_db_meta_set(dst, "seq", seq)) == TS_OK && events > 0)
        rc = ts_hub_db_meta_set(dst, "events", events);
    if (rc && !err[0])
        ts_errf(err, errsz, "%s", ts_sql_errmsg(db));
    return rc;
}

enum ts_err ts_hub_import_copy(struct ts_hub_store *dst, const char *scratch, size_t *tables,
                               int64_t *rows, char *err, size_t errsz)
{
    struct ts_sql *src = NULL;
    *tables = 0;
    *rows = 0;
    err[0] = '\0';
    enum ts_err rc = ts_sql_open(scratch, TS_SQL_RDONLY, &src, err, errsz);
    if (rc)
        return rc;
    if ((rc = ts_hub_db_write_begin(dst, 0)) == TS_OK) {
        rc = copy_all(src, dst, tables, rows, err, errsz);
        rc = ts_hub_db_write_end(dst, rc, true);
    }
    ts_sql_close(src);
    /* Fresh statistics, so the planner knows the tables are not empty. */
    if (rc == TS_OK) {
        struct ts_sql *db = ts_hub_db_use(dst);
        (void)ts_hub_db_exec(db, "ANALYZE");
        ts_hub_db_release(dst);
    }
    if (rc && !err[0])
        ts_errf(err, errsz, "the copy failed");
    return rc;
}
