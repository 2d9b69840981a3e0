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
    apply_text(c,
               "{\"kv\":1,\"items\":[{\"op\":\"erase\",\"cid\":\"zz\"}],\"cursor\":\"c1.aa.6\","
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
    items[2] = (struct ts_feed_item){
        .op = TS_FEED_UPSERT, .cid = "c8", .nkeys = 0, .keys = keys, .card = NULL};
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
    expect_cursor(c, "c1.aa.2"); /* a live card is not a sync */
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

#define K5 "5555555555555555555555555555555555555555555555555555555555555555"
#define K6 "6666666666666666666666666666666666666666666666666666666666666666"

/* During a key rotation a page carries every identifier under both key
 * versions; either finds the card, and a later page without the old
 * version's keys drops them. */
static void test_prev_keys_both_find_the_card(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    apply_text(
        c,
        "{\"kv\":2,\"prev_kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"r1\",\"keys\":[\"" K4
        "\"],\"prev_keys\":[\"" K5 "\"],\"card\":{\"name\":\"Rita\"}}],"
        "\"cursor\":\"c1.aa.5\",\"more\":false}",
        1000);
    expect_name(c, K4, "Rita");
    expect_name(c, K5, "Rita");
    apply_text(c,
               "{\"kv\":2,\"items\":[{\"op\":\"upsert\",\"cid\":\"r1\",\"keys\":[\"" K4
               "\"],\"card\":{\"name\":\"Rita\"}}],\"cursor\":\"c1.aa.6\",\"more\":false}",
               2000);
    expect_name(c, K4, "Rita");
    expect_name(c, K5, NULL);
    ts_cache_close(c);

    /* prev_keys need the page's prev_kv, which must differ from kv. */
    static const char *bad[] = {
        "{\"kv\":2,\"items\":[{\"op\":\"upsert\",\"cid\":\"r1\",\"keys\":[],\"prev_keys\":[],"
        "\"card\":{}}],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":2,\"prev_kv\":2,\"items\":[],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":2,\"prev_kv\":\"1\",\"items\":[],\"cursor\":\"c\",\"more\":false}",
        "{\"kv\":2,\"prev_kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"r1\",\"keys\":[],"
        "\"prev_keys\":[\"zz\"],\"card\":{}}],\"cursor\":\"c\",\"more\":false}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ts_feed_page p;
        char err[256] = "";
        if (ts_feed_parse(bad[i], strlen(bad[i]), &p, err, sizeof err) != TS_ERR_PROTO)
            fail_msg("case %zu accepted: %s", i, bad[i]);
    }
}

static const char live_slice[] =
    "{\"kv\":1,\"items\":["
    "{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1 "\"],\"card\":{\"name\":\"Old A\"}},"
    "{\"op\":\"upsert\",\"cid\":\"b\",\"keys\":[\"" K2 "\"],\"card\":{\"name\":\"Old B\"}},"
    "{\"op\":\"upsert\",\"cid\":\"c\",\"keys\":[\"" K3 "\"],\"card\":{\"name\":\"Old C\"}}"
    "],\"cursor\":\"c1.old.3\",\"more\":false}";

static void expect_position(struct ts_cache *c, const char *cursor, bool resyncing)
{
    char cur[TS_FEED_MAX_CURSOR + 1];
    bool r = !resyncing;
    assert_int_equal(ts_cache_position(c, cur, sizeof cur, &r), TS_OK);
    assert_string_equal(cur, cursor);
    assert_int_equal(r, resyncing);
}

/*
 * 410 Gone: the new slice is built in a shadow beside the live cards while
 * lookups keep answering from the old slice, whole; the resync survives a
 * restart; an erasure reaches the live cards at once; the last page swaps
 * the new slice in, so afterwards the cache is exactly the hub's slice.
 */
static void test_resync_beside_live_cache(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f);
    apply_text(c, live_slice, 1000);
    expect_position(c, "c1.old.3", false);
    for (int round = 0; round < 2; round++) { /* twice: the swapped-in index has another name */
        assert_int_equal(ts_cache_resync_begin(c), TS_OK);
        expect_position(c, "", true);
        apply_text(c,
                   "{\"kv\":1,\"items\":["
                   "{\"op\":\"upsert\",\"cid\":\"b\",\"keys\":[\"" K2 "\"],\"card\":{\"name\":"
                   "\"New B\"}},"
                   "{\"op\":\"upsert\",\"cid\":\"d\",\"keys\":[\"" K4 "\"],\"card\":{\"name\":"
                   "\"New D\"}}],\"cursor\":\"c1.new.2\",\"more\":true}",
                   2000);
        expect_name(c, K1, "Old A");
        expect_name(c, K2, "Old B");
        expect_name(c, K4, NULL);
        assert_int_equal(ts_cache_count(c), 3);
        expect_cursor(c, "c1.old.3");
        expect_position(c, "c1.new.2", true);

        ts_cache_close(c); /* the agent restarts mid-resync */
        c = open_cache(f);
        expect_position(c, "c1.new.2", true);
        expect_name(c, K3, "Old C");

        apply_text(c,
                   "{\"kv\":1,\"items\":[{\"op\":\"erase\",\"cid\":\"a\"},"
                   "{\"op\":\"upsert\",\"cid\":\"e\",\"keys\":[\"" K5 "\"],\"card\":{\"name\":"
                   "\"New E\"}}],\"cursor\":\"c1.new.4\",\"more\":true}",
                   3000);
        expect_name(c, K1, NULL); /* erased now, not at the swap */
        expect_name(c, K3, "Old C");
        expect_name(c, K5, NULL);

        apply_text(c,
                   "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"f\",\"keys\":[\"" K6
                   "\"],\"card\":{\"name\":\"New F\"}}],\"cursor\":\"c1.new.5\",\"more\":false}",
                   4000);
        expect_position(c, "c1.new.5", false);
        expect_cursor(c, "c1.new.5");
        assert_int_equal(ts_cache_count(c), 4);
        expect_name(c, K2, "New B");
        expect_name(c, K3, NULL); /* not in the new slice */
        expect_name(c, K4, "New D");
        expect_name(c, K5, "New E");
        expect_name(c, K6, "New F");
        assert_false(cache_files_contain(f, "Old C"));

        /* The swapped-in tables work like the old ones: key replacement,
         * erasure with its keys, reopen. */
        apply_text(c,
                   "{\"kv\":1,\"items\":[{\"op\":\"erase\",\"cid\":\"d\"},{\"op\":\"upsert\","
                   "\"cid\":\"b\",\"keys\":[\"" K3 "\"],\"card\":{\"name\":\"Newer B\"}}],"
                   "\"cursor\":\"c1.new.7\",\"more\":false}",
                   5000);
        expect_name(c, K4, NULL);
        expect_name(c, K2, NULL);
        expect_name(c, K3, "Newer B");
        ts_cache_close(c);
        c = open_cache(f);
        assert_int_equal(ts_cache_count(c), 3);
        assert_int_equal(ts_cache_reset(c), TS_OK);
        apply_text(c, live_slice, 1000);
    }
    /* A resync started again (a second 410) starts from scratch. */
    assert_int_equal(ts_cache_resync_begin(c), TS_OK);
    apply_text(c,
               "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"x\",\"keys\":[\"" K6
               "\"],\"card\":{\"name\":\"Gone X\"}}],\"cursor\":\"c1.n.1\",\"more\":true}",
               2000);
    assert_int_equal(ts_cache_resync_begin(c), TS_OK);
    expect_position(c, "", true);
    apply_text(c, "{\"kv\":1,\"items\":[],\"cursor\":\"c1.n.0\",\"more\":false}", 3000);
    assert_int_equal(ts_cache_count(c), 0);
    expect_name(c, K6, NULL);
    ts_cache_close(c);
}

/* Retention and the size bound, with "now" injected. */
static void test_retention_and_size_bound(void **state)
{
    struct fx *f = *state;
    const int64_t day = 24LL * 3600 * 1000, t0 = 1780000000000LL;
    struct ts_cache *c = open_cache(f);
    static const struct {
        const char *cid, *key, *name;
        int64_t at;
    } cards[] = {
        {"a", K1, "Ancient", t0 - 40 * day},
        {"b", K2, "Older", t0 - 20 * day},
        {"c", K3, "Recent", t0 - 1000},
        {"d", K4, "Newest", t0},
    };
    for (size_t i = 0; i < 4; i++) {
        char page[512];
        snprintf(page, sizeof page,
                 "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"%s\",\"keys\":[\"%s\"],"
                 "\"card\":{\"name\":\"%s\"}}],\"cursor\":\"c1.x.%zu\",\"more\":false}",
                 cards[i].cid, cards[i].key, cards[i].name, i + 1);
        apply_text(c, page, cards[i].at);
    }
    int64_t removed = -1;
    /* 30 days, generous bound: the card not refreshed for 40 days goes,
     * physically. */
    assert_int_equal(ts_cache_prune(c, t0, 30 * day, 1000, &removed), TS_OK);
    assert_int_equal(removed, 1);
    expect_name(c, K1, NULL);
    expect_name(c, K2, "Older");
    assert_false(cache_files_contain(f, "Ancient"));
    assert_int_equal(ts_cache_prune(c, t0, 30 * day, 1000, &removed), TS_OK);
    assert_int_equal(removed, 0);
    /* Eleven days on, the 20-day-old card has passed 30 days too. */
    assert_int_equal(ts_cache_prune(c, t0 + 11 * day, 30 * day, 1000, &removed), TS_OK);
    assert_int_equal(removed, 1);
    expect_name(c, K2, NULL);
    /* A refresh (the hub sent the card again) restarts its clock. */
    apply_text(c,
               "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"c\",\"keys\":[\"" K3
               "\"],\"card\":{\"name\":\"Recent\"}}],\"cursor\":\"c1.x.9\",\"more\":false}",
               t0 + 29 * day);
    assert_int_equal(ts_cache_prune(c, t0 + 31 * day, 30 * day, 1000, &removed), TS_OK);
    assert_int_equal(removed, 1); /* d, synced at t0 */
    expect_name(c, K3, "Recent");
    expect_name(c, K4, NULL);
    /* Over the size bound the least recently synced go first. */
    apply_text(
        c,
        "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"e\",\"keys\":[\"" K5
        "\"],\"card\":{\"name\":\"Fresh E\"}},{\"op\":\"upsert\",\"cid\":\"g\",\"keys\":[\"" K6
        "\"],\"card\":{\"name\":\"Fresh G\"}}],\"cursor\":\"c1.x.10\",\"more\":false}",
        t0 + 30 * day);
    assert_int_equal(ts_cache_count(c), 3);
    assert_int_equal(ts_cache_prune(c, t0 + 30 * day, 30 * day, 2, &removed), TS_OK);
    assert_int_equal(removed, 1);
    expect_name(c, K3, NULL);
    expect_name(c, K5, "Fresh E");
    expect_name(c, K6, "Fresh G");
    ts_cache_close(c);
}

/* The erased customer's identifier key (raw HMAC bytes, as stored) is gone
 * from the files too, also when the card shared its pages with hundreds of
 * others and was updated before it was erased. */
static void test_erase_leaves_no_key_bytes(void **state)
{
    struct fx *f = *state;
    struct ts_cache *c = open_cache(f), *reader = open_cache(f);
    static const char key[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    uint8_t raw[33] = {0};
    size_t rawlen;
    assert_int_equal(ts_hex_decode(key, raw, 32, &rawlen), TS_OK);
    ts_buf page = {0};
    ts_buf_puts(&page, "{\"kv\":1,\"items\":[");
    for (int i = 0; i < 300; i++)
        ts_buf_printf(&page,
                      "{\"op\":\"upsert\",\"cid\":\"n%d\",\"keys\":[\"%064x\"],\"card\":{\"name\":"
                      "\"Neighbour %d\",\"pad\":\"%0200d\"}},",
                      i, i + 1, i, i);
    ts_buf_printf(&page,
                  "{\"op\":\"upsert\",\"cid\":\"v\",\"keys\":[\"%s\"],\"card\":{\"name\":"
                  "\"" NAME1 "\"}}],\"cursor\":\"c1.x.1\",\"more\":false}",
                  key);
    apply_text(c, page.data, 1000);
    ts_buf_free(&page);
    char upd[512];
    snprintf(upd, sizeof upd,
             "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"v\",\"keys\":[\"%s\"],\"card\":"
             "{\"name\":\"" NAME1 "\",\"tier\":\"gold\"}}],\"cursor\":\"c1.x.2\",\"more\":false}",
             key);
    apply_text(c, upd, 2000);
    expect_name(reader, key, NAME1);
    assert_true(cache_files_contain(f, NAME1));
    assert_true(cache_files_contain(f, (const char *)raw)); /* no NUL inside this key */

    apply_text(c,
               "{\"kv\":1,\"items\":[{\"op\":\"erase\",\"cid\":\"v\"}],\"cursor\":\"c1.x.3\","
               "\"more\":false}",
               3000);
    expect_name(reader, key, NULL);
    assert_false(cache_files_contain(f, NAME1));
    assert_false(cache_files_contain(f, (const char *)raw));
    assert_false(cache_files_contain(f, key));
    char shm[160];
    snprintf(shm, sizeof shm, "%s-shm", f->path);
    assert_false(file_contains(shm, (const char *)raw));
    ts_cache_close(reader);
    ts_cache_close(c);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_cache),
        T(test_apply_lookup_reopen),
        T(test_failed_page_changes_nothing),
        T(test_erase_is_physical),
        T(test_live_card_and_reset),
        T(test_bad_files_are_named),
        T(test_readonly),
        T(test_prev_keys_both_find_the_card),
        T(test_resync_beside_live_cache),
        T(test_retention_and_size_bound),
        T(test_erase_leaves_no_key_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
