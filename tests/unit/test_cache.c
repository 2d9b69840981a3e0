/*
 * The agent's SQLite cache (sync/cache.c): pages applied with their cursor
 * all-or-nothing, lookup by key, persistence across reopen, physical erasure
 * (secure_delete + WAL truncation), and clear errors for bad files.
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
#include "feed.h"
#include "ts.h"

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define K3 "3333333333333333333333333333333333333333333333333333333333333333"
#define K4 "4444444444444444444444444444444444444444444444444444444444444444"

/* Names that appear nowhere else, so finding them in the file bytes means
 * the card is still there. */
#define NAME1 "Ada Zyxwvutsrq"
#define NAME2 "Bo Qponmlkjih"

static const char page1[] =
    "{\"kv\":1,\"items\":["
    "{\"op\":\"upsert\",\"cid\":\"c1\",\"keys\":[\"" K1 "\"],\"card\":{\"name\":\"" NAME1 "\"}},"
    "{\"op\":\"upsert\",\"cid\":\"c2\",\"keys\":[\"" K2 "\",\"" K3 "\"],"
    "\"card\":{\"name\":\"" NAME2 "\"}}"
    "],\"cursor\":\"c1.aa.2\",\"more\":false}";

static const char page2[] =
    "{\"kv\":1,\"items\":["
    "{\"op\":\"upsert\",\"cid\":\"c2\",\"keys\":[\"" K2 "\"],\"card\":{\"name\":\"Bo B\"}},"
    "{\"op\":\"erase\",\"cid\":\"c1\"}"
    "],\"cursor\":\"c1.aa.4\",\"more\":false}";

struct fx {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ts-cache-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/cache.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

static struct ts_cache *open_cache(const struct fx *f)
{
    char err[256] = "";
    struct ts_cache *c = NULL;
    if (ts_cache_open(f->path, &c, err, sizeof err) != TS_OK)
        fail_msg("open: %s", err);
    return c;
}

static void apply_text(struct ts_cache *c, const char *text, int64_t now)
{
    struct ts_feed_page p;
    char err[256] = "";
    assert_int_equal(ts_feed_parse(text, strlen(text), &p, err, sizeof err), TS_OK);
    if (ts_cache_apply_page(c, &p, now, err, sizeof err) != TS_OK)
        fail_msg("apply: %s", err);
    ts_feed_page_free(&p);
}

/* The card's name for key, or NULL when the key is unknown. */
static char *name_of(struct ts_cache *c, const char *key)
{
    char *card = NULL;
    int rc = ts_cache_lookup(c, key, &card, NULL);
    if (rc == TS_ERR_NOTFOUND)
        return NULL;
    assert_int_equal(rc, TS_OK);
    const char *p = strstr(card, "\"name\":\"");
    assert_non_null(p);
    p += 8;
    char *name = strndup(p, strcspn(p, "\""));
    free(card);
    return name;
}

static void expect_name(struct ts_cache *c, const char *key, const char *want)
{
    char *got = name_of(c, key);
    if (!want) {
        if (got)
            fail_msg("key %.8s… still finds %s", key, got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void expect_cursor(struct ts_cache *c, const char *want)
{
    char cur[TS_FEED_MAX_CURSOR + 1];
    assert_int_equal(ts_cache_cursor(c, cur, sizeof cur), TS_OK);
    assert_string_equal(cur, want);
}

/* True when needle occurs in the bytes of path (a missing file holds
 * nothing). */
static bool file_contains(const char *path, const char *needle)
{
    char *bytes = NULL;
    size_t len = 0;
    if (ts_read_file(path, 256u << 20, &bytes, &len) == TS_ERR_NOTFOUND)
        return false;
    assert_non_null(bytes);
    bool found = memmem(bytes, len, needle, strlen(needle)) != NULL;
    free(bytes);
    return found;
}

static bool cache_files_contain(const struct fx *f, const char *needle)
{
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    return file_contains(f->path, needle) || file_contains(wal, needle);
}

static void test_fresh_cache(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    assert_int_equal(ts_cache_count(c), 0);
    expect_cursor(c, "");
    assert_int_equal(ts_cache_last_sync(c), 0);
    char *card = NULL;
    assert_int_equal(ts_cache_lookup(c, K1, &card, NULL), TS_ERR_NOTFOUND);
    assert_int_equal(ts_cache_lookup(c, "not-hex", &card, NULL), TS_ERR_INVAL);
    assert_int_equal(ts_cache_lookup(c, "1111", &card, NULL), TS_ERR_INVAL);
    assert_null(card);
    ts_cache_close(c);
    ts_cache_close(NULL);
}

static void test_apply_lookup_reopen(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    apply_text(c, page1, 1000);
    assert_int_equal(ts_cache_count(c), 2);
    expect_cursor(c, "c1.aa.2");
    assert_int_equal(ts_cache_last_sync(c), 1000);
    expect_name(c, K1, NAME1);
    expect_name(c, K2, NAME2); /* every key of a card finds it */
    expect_name(c, K3, NAME2);
    expect_name(c, K4, NULL);
    char *card = NULL;
    int64_t at = 0;
    assert_int_equal(ts_cache_lookup(c, K3, &card, &at), TS_OK);
    assert_int_equal(at, 1000);
    free(card);
    ts_cache_close(c);

    /* Cards, cursor and last sync survive a restart. */
    c = open_cache(f);
    expect_cursor(c, "c1.aa.2");
    assert_int_equal(ts_cache_last_sync(c), 1000);
    assert_int_equal(ts_cache_count(c), 2);

    /* An upsert replaces the card and its keys (K3 dropped); an erase takes
     * the card and all of its keys. */
    apply_text(c, page2, 2000);
    assert_int_equal(ts_cache_count(c), 1);
    expect_name(c, K1, NULL);
    expect_name(c, K2, "Bo B");
    expect_name(c, K3, NULL);
    expect_cursor(c, "c1.aa.4");
    assert_int_equal(ts_cache_last_sync(c), 2000);

    /* A key that moves to another customer follows the newest page. */
    apply_text(c,
               "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"c5\",\"keys\":[\"" K2
               "\"],\"card\":{\"name\":\"Cy\"}}],\"cursor\":\"c1.aa.5\",\"more\":false}",
               3000);
    expect_name(c, K2, "Cy");
    /* An erase of someone we never had is not an error. */
    apply_text(c, "{\"kv\":1,\"items\":[{\"op\":\"erase\",\"cid\":\"zz\"}],\"cursor\":\"c1.aa.6\","
                  "\"more\":false}",
               4000);
    expect_cursor(c, "c1.aa.6");
    ts_cache_close(c);
}

/* A page that fails inside the transaction leaves cards, keys and cursor as
 * they were, whichever item fails. */
static void test_failed_page_changes_nothing(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    apply_text(c, page1, 1000);

    char keys[1][65] = {K4}, badkeys[1][65] = {"zz"};
    struct ts_feed_item items[3] = {
        {.op = TS_FEED_UPSERT, .cid = "c9", .nkeys = 1, .keys = keys, .card = "{\"name\":\"H\"}"},
        {.op = TS_FEED_ERASE, .cid = "c1"},
        {.op = TS_FEED_UPSERT, .cid = "c8", .nkeys = 1, .keys = badkeys, .card = "{}"},
    };
    struct ts_feed_page p = {.kv = 1, .nitems = 3, .items = items};
    snprintf(p.cursor, sizeof p.cursor, "c1.aa.99");
    char err[256] = "";
    assert_int_not_equal(ts_cache_apply_page(c, &p, 5000, err, sizeof err), TS_OK);
    assert_non_null(strstr(err, f->path));

    /* Same again, failing on a card the database refuses (NULL). */
    items[2] = (struct ts_feed_item){.op = TS_FEED_UPSERT, .cid = "c8", .nkeys = 0, .keys = keys,
                                     .card = NULL};
    assert_int_not_equal(ts_cache_apply_page(c, &p, 5000, err, sizeof err), TS_OK);

    expect_cursor(c, "c1.aa.2");
    assert_int_equal(ts_cache_last_sync(c), 1000);
    assert_int_equal(ts_cache_count(c), 2);
    expect_name(c, K1, NAME1); /* the erase in the failed page did not happen */
    expect_name(c, K4, NULL);
    /* And the connection is usable afterwards (no transaction left open). */
    apply_text(c, page2, 6000);
    expect_cursor(c, "c1.aa.4");
    ts_cache_close(c);

    c = open_cache(f);
    expect_cursor(c, "c1.aa.4");
    ts_cache_close(c);
}

/*
 * GDPR erasure: once the page is applied, the erased customer's name is in
 * neither the database file nor its WAL — while the cache is still open, as
 * it is in the running agent. The name is checked to be there first, so
 * the test cannot pass by not looking in the right place.
 */
static void test_erase_is_physical(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    struct ts_cache *reader = open_cache(f); /* the agent has two connections */
    apply_text(c, page1, 1000);
    expect_name(reader, K1, NAME1);
    assert_true(cache_files_contain(f, NAME1));
    assert_true(cache_files_contain(f, NAME2));

    apply_text(c, page2, 2000);
    expect_name(reader, K1, NULL);
    assert_false(cache_files_contain(f, NAME1));
    assert_false(cache_files_contain(f, NAME2)); /* the replaced card too */
    assert_true(cache_files_contain(f, "Bo B"));
    ts_cache_close(reader);
    ts_cache_close(c);
    assert_false(cache_files_contain(f, NAME1));
}

static void test_live_card_and_reset(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    apply_text(c, page1, 1000);

    static const char live[] =
        "{\"kv\":1,\"cid\":\"c7\",\"keys\":[\"" K4 "\"],\"card\":{\"name\":\"Live One\"}}";
    struct ts_feed_page one;
    char err[256];
    assert_int_equal(ts_feed_parse_lookup(live, strlen(live), &one, err, sizeof err), TS_OK);
    assert_int_equal(ts_cache_put_live(c, &one, 7000), TS_OK);
    ts_feed_page_free(&one);
    expect_name(c, K4, "Live One");
    expect_cursor(c, "c1.aa.2");                 /* a live card is not a sync */
    assert_int_equal(ts_cache_last_sync(c), 1000);

    assert_int_equal(ts_cache_reset(c), TS_OK); /* 410: start over */
    assert_int_equal(ts_cache_count(c), 0);
    expect_cursor(c, "");
    expect_name(c, K1, NULL);
    assert_false(cache_files_contain(f, NAME1));
    ts_cache_close(c);
}

static void test_bad_files_are_named(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    struct ts_cache *c = NULL;

    /* Not a database at all. */
    FILE *fp = fopen(f->path, "w");
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", fp);
    fclose(fp);
    assert_int_equal(ts_cache_open(f->path, &c, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "not a database"));
    assert_null(c);
    err[0] = '\0';
    assert_int_equal(ts_cache_open_readonly(f->path, &c, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, f->path));

    /* A directory that does not exist. */
    char path[200];
    snprintf(path, sizeof path, "%s/no/such/dir/cache.db", f->dir);
    assert_int_equal(ts_cache_open(path, &c, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, path));
}

static void test_readonly(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    struct ts_cache *ro = NULL;

    /* Missing: said so, and nothing is created. */
    assert_int_equal(ts_cache_open_readonly(f->path, &ro, err, sizeof err), TS_ERR_NOTFOUND);
    assert_non_null(strstr(err, f->path));
    assert_int_not_equal(access(f->path, F_OK), 0);

    /* Some other SQLite database is not taken for a cache. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ts_cache_open_readonly(f->path, &ro, err, sizeof err), TS_ERR_DB);
    assert_non_null(strstr(err, "not a tillside cache"));
    unlink(f->path);

    /* Next to a writer, it reads what was committed and cannot write. */
    struct ts_cache *c = open_cache(f);
    apply_text(c, page1, 1000);
    assert_int_equal(ts_cache_open_readonly(f->path, &ro, err, sizeof err), TS_OK);
    expect_name(ro, K1, NAME1);
    expect_cursor(ro, "c1.aa.2");
    struct ts_feed_page p;
    assert_int_equal(ts_feed_parse(page2, strlen(page2), &p, err, sizeof err), TS_OK);
    assert_int_not_equal(ts_cache_apply_page(ro, &p, 2000, err, sizeof err), TS_OK);
    assert_int_equal(ts_cache_apply_page(c, &p, 2000, err, sizeof err), TS_OK);
    ts_feed_page_free(&p);
    expect_name(ro, K1, NULL);
    ts_cache_close(ro);
    ts_cache_close(c);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_cache),         T(test_apply_lookup_reopen),
        T(test_failed_page_changes_nothing), T(test_erase_is_physical),
        T(test_live_card_and_reset), T(test_bad_files_are_named),
        T(test_readonly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
