/*
 * Unit tests for hub/sql.c, the statement API over SQLite and PostgreSQL:
 * the same statements (?N parameters, upserts, NULLs, integers beyond 32
 * bits, doubles, a parameter the SQL skips) give the same rows on both, and a
 * connection error never shows a URI's password. Runs on SQLite, and on
 * PostgreSQL too under tests/tools/with_pg.sh (test_hub_sql_pg).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hub.h"
#include "hubdb.h"
#include "sql.h"

static struct ts_sql *open_db(void)
{
    struct ts_sql *db = NULL;
    char err[512];
    if (ts_sql_open(test_hub_db(), 0, &db, err, sizeof err) != TS_OK)
        fail_msg("open: %s", err);
    return db;
}

static void test_statements_same_on_both(void **state)
{
    (void)state;
    struct ts_sql *db = open_db();
    assert_int_equal(ts_sql_exec_ddl(db, "CREATE TABLE t(k TEXT PRIMARY KEY, n INTEGER NOT NULL,"
                                         " x REAL, note TEXT) WITHOUT ROWID;"
                                         "CREATE TABLE r(id INTEGER PRIMARY KEY, k TEXT)"),
                     TS_OK);
    struct ts_sql_stmt *up = NULL, *sel = NULL;
    /* ?3 skipped by the SQL: still bindable, and no type to guess */
    assert_int_equal(ts_sql_prepare(db,
                                    "INSERT INTO t(k, n, x, note) VALUES(?1, ?2, ?4, ?5)"
                                    " ON CONFLICT(k) DO UPDATE SET n = t.n + excluded.n,"
                                    " note = coalesce(excluded.note, t.note)",
                                    &up),
                     TS_OK);
    for (int i = 0; i < 3; i++) {
        ts_sql_reset(up);
        ts_sql_bind_text(up, 1, "a");
        ts_sql_bind_int64(up, 2, 5000000000LL); /* beyond 32 bits */
        ts_sql_bind_text(up, 3, "unused");
        ts_sql_bind_double(up, 4, 0.1);
        ts_sql_bind_text(up, 5, i == 0 ? "it's \"quoted\" ?1" : NULL);
        assert_int_equal(ts_sql_step(up), TS_SQL_DONE);
        assert_int_equal(ts_sql_changes(db), 1);
    }
    ts_sql_finalize(up);
    assert_int_equal(ts_sql_exec(db, "INSERT INTO r(k) VALUES('x'), ('y')"), TS_OK);
    assert_int_equal(ts_sql_changes(db), 2);
    assert_int_equal(
        ts_sql_prepare(db, "SELECT k, n, x, note, NULL FROM t WHERE k = ? AND '?' = '?'", &sel),
        TS_OK);
    ts_sql_bind_text(sel, 1, "a");
    assert_int_equal(ts_sql_step(sel), TS_SQL_ROW);
    assert_int_equal(ts_sql_column_count(sel), 5);
    assert_string_equal(ts_sql_column_text(sel, 0), "a");
    assert_true(ts_sql_column_int64(sel, 1) == 15000000000LL);
    assert_int_equal(ts_sql_column_type(sel, 1), TS_SQL_INTEGER);
    assert_true(ts_sql_column_double(sel, 2) == 0.1);
    assert_int_equal(ts_sql_column_type(sel, 2), TS_SQL_FLOAT);
    assert_string_equal(ts_sql_column_text(sel, 3), "it's \"quoted\" ?1");
    assert_int_equal(ts_sql_column_type(sel, 4), TS_SQL_NULL);
    assert_null(ts_sql_column_text(sel, 4));
    assert_int_equal(ts_sql_step(sel), TS_SQL_DONE);
    /* reset keeps the bindings */
    ts_sql_reset(sel);
    assert_int_equal(ts_sql_step(sel), TS_SQL_ROW);
    ts_sql_finalize(sel);
    assert_int_equal(ts_sql_prepare(db, "SELECT id FROM r ORDER BY id", &sel), TS_OK);
    assert_int_equal(ts_sql_step(sel), TS_SQL_ROW);
    int64_t first = ts_sql_column_int64(sel, 0);
    assert_int_equal(ts_sql_step(sel), TS_SQL_ROW);
    assert_true(ts_sql_column_int64(sel, 0) > first); /* INTEGER PRIMARY KEY numbers rows */
    ts_sql_finalize(sel);
    /* an error is reported, and the connection works afterwards */
    assert_int_not_equal(ts_sql_exec(db, "SELECT * FROM no_such_table"), TS_OK);
    assert_non_null(strstr(ts_sql_errmsg(db), "no_such_table"));
    assert_int_equal(ts_sql_exec(db, "BEGIN IMMEDIATE"), TS_OK);
    assert_int_equal(ts_sql_exec(db, "DELETE FROM r"), TS_OK);
    assert_int_equal(ts_sql_exec(db, "ROLLBACK"), TS_OK);
    assert_int_equal(ts_sql_prepare(db, "SELECT count(*) FROM r", &sel), TS_OK);
    assert_int_equal(ts_sql_step(sel), TS_SQL_ROW);
    assert_int_equal(ts_sql_column_int64(sel, 0), 2);
    ts_sql_finalize(sel);
    bool held = false;
    assert_int_equal(ts_sql_try_lock(db, 1, &held), TS_OK);
    assert_true(held);
    ts_sql_close(db);
}

/* Only one of two connections holds a lock; it frees with its holder. */
static void test_try_lock(void **state)
{
    (void)state;
    const char *uri = getenv("TS_TEST_PG");
    if (!uri)
        skip(); /* SQLite: always held, one process owns the file */
    struct ts_sql *a = NULL, *b = NULL;
    char err[512];
    bool ha = false, hb = true;
    assert_int_equal(ts_sql_open(uri, 0, &a, err, sizeof err), TS_OK);
    assert_int_equal(ts_sql_open(uri, 0, &b, err, sizeof err), TS_OK);
    assert_int_equal(ts_sql_try_lock(a, 1, &ha), TS_OK);
    assert_int_equal(ts_sql_try_lock(b, 1, &hb), TS_OK);
    assert_true(ha);
    assert_false(hb);
    ts_sql_close(a);
    /* the server ends a's session a moment after the client hangs up */
    for (int i = 0; i < 100 && !hb; i++) {
        assert_int_equal(ts_sql_try_lock(b, 1, &hb), TS_OK);
        if (!hb)
            usleep(50000);
    }
    assert_true(hb);
    ts_sql_close(b);
}

static void test_password_not_shown(void **state)
{
    (void)state;
    struct ts_sql *db = NULL;
    char err[512] = "";
    assert_true(ts_sql_target_is_pg("postgresql:///x"));
    assert_true(ts_sql_target_is_pg("postgres://h/x"));
    assert_false(ts_sql_target_is_pg("/var/lib/tillside-hub/hub.db"));
    assert_int_equal(ts_sql_open("postgresql://hub:s3cret@127.0.0.1:1/x?connect_timeout=2", 0, &db,
                                 err, sizeof err),
                     TS_ERR_DB);
    assert_null(strstr(err, "s3cret"));
    assert_non_null(strstr(err, "postgresql://hub:***@127.0.0.1:1/x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statements_same_on_both),
        cmocka_unit_test(test_try_lock),
        cmocka_unit_test(test_password_not_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
