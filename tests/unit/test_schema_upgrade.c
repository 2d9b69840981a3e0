/*
 * Upgrading from the previous release's databases: files made with the
 * schema exactly as released in 06a07ff (tests/fixtures/schema-06a07ff/,
 * copied from `git show 06a07ff:...`) and filled with data the way that
 * release wrote it are opened by this build; the data must still be served,
 * the schema version must be the current one, and a file from a newer
 * release must be refused without being touched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "dbver.h"
#include "hub.h"
#include "outbox.h"

#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define CARD "{\"name\":\"Ada Lovelace\",\"tier\":\"gold\",\"points\":1200}"

static char *slurp(const char *path)
{
    char *text = NULL;
    assert_int_equal(ts_read_file(path, 1 << 20, &text, NULL), TS_OK);
    return text;
}

/* A file made by the old release: its schema SQL, then its rows. */
static void make_old(const char *path, const char *schema_file, const char *rows)
{
    char *schema = slurp(schema_file);
    sqlite3 *db = NULL;
    unlink(path);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, schema, NULL, NULL, &err);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, rows, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("old schema: %s", err);
    sqlite3_close(db);
    free(schema);
}

static int user_version(const char *path)
{
    sqlite3 *db = NULL;
    int v = -1;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(ts_db_version(db, &v), TS_OK);
    sqlite3_close(db);
    return v;
}

static void set_user_version(const char *path, int v)
{
    sqlite3 *db = NULL;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void cleanup(const char *path)
{
    char p[512];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void test_cache_from_06a07ff(void **state)
{
    (void)state;
    char path[] = "/tmp/hpk-upgrade-cache-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    make_old(path, TS_FIXTURES "/schema-06a07ff/cache.sql",
             "INSERT INTO meta(k, v) VALUES('cursor', '7.42'), ('last_sync', '1700000000000');"
             "INSERT INTO cards(cid, card, kv, synced_at) VALUES('c1', '" CARD
             "', 1, 1700000000000);"
             "INSERT INTO card_keys(key, cid) VALUES(x'" KEY_HEX "', 'c1');");

    struct ts_cache *c = NULL;
    char err[512];
    assert_int_equal(ts_cache_open(path, &c, err, sizeof err), TS_OK);
    char *card = NULL;
    int64_t synced = 0;
    assert_int_equal(ts_cache_lookup(c, KEY_HEX, &card, &synced), TS_OK);
    assert_non_null(strstr(card, "Ada Lovelace"));
    assert_int_equal(synced, 1700000000000);
    assert_int_equal(ts_cache_count(c), 1);
    char cursor[64];
    assert_int_equal(ts_cache_cursor(c, cursor, sizeof cursor), TS_OK);
    assert_string_equal(cursor, "7.42"); /* no resync after an upgrade */
    free(card);
    ts_cache_close(c);
    assert_int_equal(user_version(path), 1);

    /* A cache from a newer agent is refused, and left as it was. */
    set_user_version(path, 99);
    assert_int_equal(ts_cache_open(path, &c, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, "schema version 99 is newer"));
    assert_int_equal(user_version(path), 99);
    cleanup(path);
}

static void test_hub_from_06a07ff(void **state)
{
    (void)state;
    char path[] = "/tmp/hpk-upgrade-hub-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    make_old(path, TS_FIXTURES "/schema-06a07ff/hub.sql",
             "UPDATE meta SET v = 3 WHERE k = 'seq';"
             "INSERT INTO customers(id, cid, name, tier, points, home_store, card, keys, seq,"
             " updated, created) VALUES('u1', 'c1', 'Ada Lovelace', 'gold', 1200, 'S001', '" CARD
             "', '[\"" KEY_HEX "\"]', 3, 1700000000000, 1690000000000);"
             "INSERT INTO identifiers(key, kind, value, customer) VALUES('" KEY_HEX
             "', 'loyalty', 'L-1', 'u1');"
             "INSERT INTO orders(order_id, customer, total, currency, status, at)"
             " VALUES('o1', 'u1', 12.5, 'EUR', 'completed', 1695000000000);"
             "INSERT INTO feed(store_id, customer, seq, op, cid) VALUES('S001', 'u1', 3,"
             " 'upsert', 'c1'), ('S002', 'u9', 2, 'erase', 'c9');");
    assert_int_equal(user_version(path), 0);

    struct ts_tenant_key key;
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &key), TS_OK);
    struct ts_hub_store *s = NULL;
    char err[512];
    assert_int_equal(ts_hub_store_open(path, &key, 0, &s, err, sizeof err), TS_OK);

    ts_buf out = {0};
    assert_int_equal(ts_hub_store_lookup(s, KEY_HEX, &out), TS_OK);
    assert_non_null(strstr(out.data, "Ada Lovelace"));
    assert_non_null(strstr(out.data, "\"c1\""));
    ts_buf_free(&out);

    /* A terminal that synced before the upgrade continues after seq 0 and
     * sees the same store slice (the card and the other store's erasure). */
    struct ts_hub_feed_page page = {0};
    assert_int_equal(ts_hub_store_feed(s, "S001", 0, 10, &page), TS_OK);
    assert_int_equal(page.nitems, 1);
    assert_non_null(strstr(page.items.data, "c1"));
    ts_buf_free(&page.items);
    assert_int_equal(ts_hub_store_feed(s, "S002", 0, 10, &page), TS_OK);
    assert_int_equal(page.nitems, 1);
    assert_non_null(strstr(page.items.data, "c9"));
    ts_buf_free(&page.items);
    assert_int_equal(ts_hub_store_stats(s, &out), TS_OK);
    assert_non_null(strstr(out.data, "\"customers\":1"));
    ts_buf_free(&out);
    ts_hub_store_close(s);
    assert_int_equal(user_version(path), 2);

    /* Opening again is a no-op for the version; a newer file is refused. */
    assert_int_equal(ts_hub_store_open(path, &key, 0, &s, err, sizeof err), TS_OK);
    ts_hub_store_close(s);
    assert_int_equal(user_version(path), 2);
    set_user_version(path, 3);
    assert_int_equal(ts_hub_store_open(path, &key, 0, &s, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, "schema version 3 is newer"));
    cleanup(path);
}

/* The one-forwarder release kept its queue in upstream_outbox: opening the
 * file moves every row to the sink queue as sink "upstream" (what [upstream]
 * runs as), states and attempts kept, so pending purchases still go. */
static void test_upstream_outbox_moves(void **state)
{
    (void)state;
    char path[] = "/tmp/hpk-upgrade-outbox-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE upstream_outbox(message_id TEXT PRIMARY KEY,"
                     "  state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL"
                     "  DEFAULT 0, next_at INTEGER NOT NULL, solo INTEGER NOT NULL DEFAULT 0,"
                     "  reason TEXT, created INTEGER NOT NULL, done_at INTEGER) WITHOUT ROWID;"
                     "INSERT INTO upstream_outbox(message_id, state, attempts, next_at, reason,"
                     " created) VALUES('m1', 'pending', 3, 5, 'HTTP 503', 1),"
                     " ('m2', 'dead', 1, 5, 'HTTP 400: bad', 2), ('m3', 'sent', 1, 5, NULL, 3);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct ts_tenant_key key;
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &key), TS_OK);
    struct ts_hub_store *s = NULL;
    char err[512];
    assert_int_equal(ts_hub_store_open(path, &key, 0, &s, err, sizeof err), TS_OK);
    ts_hub_store_close(s);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT group_concat(event_id || ':' || state || ':' ||"
                                        " attempts || ':' || item, ',') FROM (SELECT * FROM"
                                        " sink_queue WHERE sink = 'upstream' ORDER BY event_id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0),
                        "m1:pending:3:-1,m2:dead:1:-1,m3:sent:1:-1");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM sqlite_master WHERE name ="
                                        " 'upstream_outbox'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    cleanup(path);
}

/* The purchase outbox is new in this release: version 1, and a file from a
 * newer agent is refused like the others. */
static void test_outbox_versioned(void **state)
{
    (void)state;
    char path[] = "/tmp/hpk-upgrade-outbox-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    struct ts_outbox *o = NULL;
    char err[512];
    assert_int_equal(ts_outbox_open(path, NULL, &o, err, sizeof err), TS_OK);
    ts_outbox_close(o);
    assert_int_equal(user_version(path), 1);
    set_user_version(path, 5);
    o = NULL;
    assert_int_not_equal(ts_outbox_open(path, NULL, &o, err, sizeof err), TS_OK);
    assert_null(o);
    assert_non_null(strstr(err, "schema version 5 is newer"));
    cleanup(path);
}

/* The step runner itself: steps above the file's version run, in order,
 * once. */
static int count_step(sqlite3 *db, void *ud)
{
    (void)db;
    ++*(int *)ud;
    return TS_OK;
}

static void test_steps_run_once(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    char err[256];
    int calls = 0, from = -1;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    const struct ts_db_step steps[] = {
        {1, "CREATE TABLE t(a)", NULL},
        {2, "ALTER TABLE t ADD COLUMN b", NULL},
        {3, NULL, count_step},
    };
    assert_int_equal(ts_db_migrate(db, "mem", 3, steps, 3, &calls, &from, err, sizeof err), TS_OK);
    assert_int_equal(from, 0);
    assert_int_equal(calls, 1);
    assert_int_equal(ts_db_migrate(db, "mem", 3, steps, 3, &calls, &from, err, sizeof err), TS_OK);
    assert_int_equal(from, 3);
    assert_int_equal(calls, 1);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO t(a, b) VALUES(1, 2)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_from_06a07ff),
        cmocka_unit_test(test_hub_from_06a07ff),
        cmocka_unit_test(test_outbox_versioned),
        cmocka_unit_test(test_upstream_outbox_moves),
        cmocka_unit_test(test_steps_run_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
