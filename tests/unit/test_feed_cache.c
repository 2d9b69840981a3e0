/* Feed page validation and the agent's cache: atomic apply, rejection,
 * lookup by key, persistence of the cursor, erasure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "feed.h"
#include "ts.h"

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define K3 "3333333333333333333333333333333333333333333333333333333333333333"

static const char page1[] =
    "{\"kv\":1,\"items\":["
    "{\"op\":\"upsert\",\"cid\":\"c1\",\"keys\":[\"" K1 "\"],\"card\":{\"name\":\"Ada Zyxwv\"}},"
    "{\"op\":\"upsert\",\"cid\":\"c2\",\"keys\":[\"" K2 "\",\"" K3 "\"],\"card\":{\"name\":\"Bo\"}}"
    "],\"cursor\":\"c1.aa.2\",\"more\":false}";

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ts-cache-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

static struct ts_cache *open_cache(void)
{
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/cache.db", tmpdir);
    struct ts_cache *c = NULL;
    assert_int_equal(ts_cache_open(path, &c, err, sizeof err), TS_OK);
    return c;
}

static void test_parse_valid_page(void **state)
{
    (void)state;
    struct ts_feed_page p;
    char err[256];
    assert_int_equal(ts_feed_parse(page1, strlen(page1), &p, err, sizeof err), TS_OK);
    assert_int_equal(p.kv, 1);
    assert_int_equal(p.nitems, 2);
    assert_string_equal(p.cursor, "c1.aa.2");
    assert_false(p.more);
    assert_int_equal(p.items[1].nkeys, 2);
    assert_string_equal(p.items[1].keys[1], K3);
    assert_non_null(strstr(p.items[0].card, "Ada Zyxwv"));
    ts_feed_page_free(&p);
    ts_feed_page_free(NULL);
}

static void test_parse_rejects_garbage(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "[]",
        "{\"kv\":1,\"items\":[],\"cursor\":\"c\",\"mor",
        "{\"kv\":1,\"items\":[],\"cursor\":\"c\"}",                        /* no more */
        "{\"kv\":1,\"items\":[],\"cursor\":\"\",\"more\":false}",          /* empty cursor */
        "{\"kv\":1,\"items\":[],\"cursor\":\"a b\",\"more\":false}",       /* space in cursor */
        "{\"kv\":0,\"items\":[],\"cursor\":\"c\",\"more\":false}",         /* bad kv */
        "{\"kv\":1,\"items\":[{\"op\":\"explode\",\"cid\":\"a\"}],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":1,\"items\":[{\"op\":\"erase\"}],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":1,\"items\":[{\"op\":\"erase\",\"cid\":\"a'b\"}],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"zz\"],\"card\":{}}],"
        "\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1
        "\"],\"card\":\"x\"}],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":1,\"kv\":2,\"items\":[],\"cursor\":\"c\",\"more\":false}", /* duplicate key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ts_feed_page p;
        char err[256] = "";
        int rc = ts_feed_parse(bad[i], strlen(bad[i]), &p, err, sizeof err);
        if (rc != TS_ERR_PROTO)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_true(err[0] != '\0'); /* a reason a technician can read */
    }
}

static void test_apply_lookup_and_reopen(void **state)
{
    (void)state;
    struct ts_cache *c = open_cache();
    struct ts_feed_page p;
    char err[256], cur[64];
    assert_int_equal(ts_feed_parse(page1, strlen(page1), &p, err, sizeof err), TS_OK);
    assert_int_equal(ts_cache_apply_page(c, &p, 1000, err, sizeof err), TS_OK);
    ts_feed_page_free(&p);
    assert_int_equal(ts_cache_count(c), 2);
    char *card = NULL;
    int64_t at = 0;
    assert_int_equal(ts_cache_lookup(c, K3, &card, &at), TS_OK);
    assert_non_null(strstr(card, "\"Bo\""));
    assert_int_equal(at, 1000);
    free(card);
    assert_int_equal(ts_cache_lookup(c, "4444444444444444444444444444444444444444444444444444444444444444",
                                     &card, &at),
                     TS_ERR_NOTFOUND);
    ts_cache_close(c);

    c = open_cache(); /* the cursor and cards survive a restart */
    assert_int_equal(ts_cache_cursor(c, cur, sizeof cur), TS_OK);
    assert_string_equal(cur, "c1.aa.2");
    assert_int_equal(ts_cache_count(c), 2);

    /* Upsert moves K3 to c1 and drops c2's old K2 by replacing c2's keys. */
    static const char page2[] =
        "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"c2\",\"keys\":[\"" K2
        "\"],\"card\":{\"name\":\"Bo B\"}},{\"op\":\"erase\",\"cid\":\"c1\"}],"
        "\"cursor\":\"c1.aa.4\",\"more\":false}";
    assert_int_equal(ts_feed_parse(page2, strlen(page2), &p, err, sizeof err), TS_OK);
    assert_int_equal(ts_cache_apply_page(c, &p, 2000, err, sizeof err), TS_OK);
    ts_feed_page_free(&p);
    assert_int_equal(ts_cache_count(c), 1);
    assert_int_equal(ts_cache_lookup(c, K1, &card, &at), TS_ERR_NOTFOUND); /* erased */
    assert_int_equal(ts_cache_lookup(c, K3, &card, &at), TS_ERR_NOTFOUND); /* dropped key */
    assert_int_equal(ts_cache_lookup(c, K2, &card, &at), TS_OK);
    assert_non_null(strstr(card, "Bo B"));
    free(card);
    ts_cache_cursor(c, cur, sizeof cur);
    assert_string_equal(cur, "c1.aa.4");
    ts_cache_close(c);

    /* The erased customer's name is physically gone from the file (secure
     * delete) once the WAL is checkpointed into it by the last close. */
    char path[128], *bytes = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/cache.db", tmpdir);
    assert_int_equal(ts_read_file(path, 64 << 20, &bytes, &len), TS_OK);
    assert_null(memmem(bytes, len, "Ada Zyxwv", 9));
    free(bytes);
}

static void test_failed_apply_changes_nothing(void **state)
{
    (void)state;
    struct ts_cache *c = open_cache();
    char err[256], cur[64];
    ts_cache_cursor(c, cur, sizeof cur);
    int64_t before = ts_cache_count(c);
    /* A page whose second item carries a key that does not decode fails in
     * the middle of the transaction: nothing of it may stay. */
    struct ts_feed_page p = {0};
    struct ts_feed_item items[2] = {0};
    char keys[1][65] = {K1};
    char badkeys[1][65] = {"zz"};
    items[0] = (struct ts_feed_item){.op = TS_FEED_UPSERT, .cid = "c9", .nkeys = 1, .keys = keys,
                                     .card = "{\"name\":\"Half\"}"};
    items[1] = (struct ts_feed_item){.op = TS_FEED_UPSERT, .cid = "c8", .nkeys = 1,
                                     .keys = badkeys, .card = "{}"};
    p.kv = 1;
    p.nitems = 2;
    p.items = items;
    snprintf(p.cursor, sizeof p.cursor, "c1.aa.99");
    assert_int_not_equal(ts_cache_apply_page(c, &p, 3000, err, sizeof err), TS_OK);
    char cur2[64];
    ts_cache_cursor(c, cur2, sizeof cur2);
    assert_string_equal(cur, cur2);
    assert_int_equal(ts_cache_count(c), before);
    char *card = NULL;
    assert_int_equal(ts_cache_lookup(c, K1, &card, NULL), TS_ERR_NOTFOUND);
    ts_cache_close(c);
}

static void test_corrupt_file_is_named(void **state)
{
    (void)state;
    char path[128], err[256] = "";
    snprintf(path, sizeof path, "%s/corrupt.db", tmpdir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", f);
    fclose(f);
    struct ts_cache *c = NULL;
    assert_int_equal(ts_cache_open(path, &c, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_page),
        cmocka_unit_test(test_parse_rejects_garbage),
        cmocka_unit_test(test_apply_lookup_and_reopen),
        cmocka_unit_test(test_failed_apply_changes_nothing),
        cmocka_unit_test(test_corrupt_file_is_named),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
