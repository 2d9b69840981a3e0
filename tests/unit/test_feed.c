/*
 * Feed page parsing (sync/feed.c): a valid page comes out whole; every kind
 * of malformed page is refused as a whole with a reason a technician can
 * act on, and nothing is left allocated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"
#include "ts.h"

#define K1 "1111111111111111111111111111111111111111111111111111111111111111"
#define K2 "2222222222222222222222222222222222222222222222222222222222222222"
#define KA "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

static const char page1[] =
    "{\"kv\":1,\"items\":["
    "{\"op\":\"upsert\",\"cid\":\"c1\",\"keys\":[\"" K1 "\"],"
    "\"card\":{\"name\":\"Ada Lovelace\",\"points\":1200,\"interests\":[{\"signal\":\"cart\"}]}},"
    "{\"op\":\"upsert\",\"cid\":\"c2\",\"keys\":[\"" K2 "\",\"" KA "\"],\"card\":{}},"
    "{\"op\":\"erase\",\"cid\":\"c3\"}"
    "],\"cursor\":\"c1.aa.2\",\"more\":true,\"extra\":\"ignored\"}";

static void test_valid_page(void **state)
{
    (void)state;
    struct ts_feed_page p;
    char err[256] = "";
    assert_int_equal(ts_feed_parse(page1, strlen(page1), &p, err, sizeof err), TS_OK);
    assert_int_equal(p.kv, 1);
    assert_int_equal(p.nitems, 3);
    assert_string_equal(p.cursor, "c1.aa.2");
    assert_true(p.more);
    assert_int_equal(p.items[0].op, TS_FEED_UPSERT);
    assert_string_equal(p.items[0].cid, "c1");
    assert_int_equal(p.items[0].nkeys, 1);
    assert_string_equal(p.items[0].keys[0], K1);
    /* The card is kept as compact JSON text, whole. */
    assert_string_equal(p.items[0].card, "{\"name\":\"Ada Lovelace\",\"points\":1200,"
                                         "\"interests\":[{\"signal\":\"cart\"}]}");
    assert_int_equal(p.items[1].nkeys, 2);
    assert_string_equal(p.items[1].keys[1], KA);
    assert_string_equal(p.items[1].card, "{}");
    assert_int_equal(p.items[2].op, TS_FEED_ERASE);
    assert_string_equal(p.items[2].cid, "c3");
    assert_null(p.items[2].card);
    ts_feed_page_free(&p);
    assert_int_equal(p.nitems, 0);
    ts_feed_page_free(&p); /* twice, and NULL, are fine */
    ts_feed_page_free(NULL);
}

static void test_empty_page(void **state)
{
    (void)state;
    static const char body[] = "{\"kv\":3,\"items\":[],\"cursor\":\"x\",\"more\":false}";
    struct ts_feed_page p;
    char err[256];
    assert_int_equal(ts_feed_parse(body, strlen(body), &p, err, sizeof err), TS_OK);
    assert_int_equal(p.kv, 3);
    assert_int_equal(p.nitems, 0);
    assert_false(p.more);
    ts_feed_page_free(&p);
}

/* One malformed page and a word its reason must contain. */
struct bad {
    const char *body;
    const char *reason;
};

#define PAGE(items) "{\"kv\":1,\"items\":[" items "],\"cursor\":\"c\",\"more\":false}"

static void test_malformed_pages(void **state)
{
    (void)state;
    static const struct bad bad[] = {
        {"", "JSON"},
        {"{\"kv\":1,\"items\":[],\"cursor\":\"c\",\"mor", "JSON"},
        {"[]", "object"},
        {"\"page\"", "JSON"},
        {"{\"items\":[],\"cursor\":\"c\",\"more\":false}", "kv"},
        {"{\"kv\":0,\"items\":[],\"cursor\":\"c\",\"more\":false}", "kv"},
        {"{\"kv\":\"1\",\"items\":[],\"cursor\":\"c\",\"more\":false}", "kv"},
        {"{\"kv\":1,\"cursor\":\"c\",\"more\":false}", "items"},
        {"{\"kv\":1,\"items\":{},\"cursor\":\"c\",\"more\":false}", "items"},
        {"{\"kv\":1,\"items\":[],\"more\":false}", "cursor"},
        {"{\"kv\":1,\"items\":[],\"cursor\":\"\",\"more\":false}", "cursor"},
        {"{\"kv\":1,\"items\":[],\"cursor\":7,\"more\":false}", "cursor"},
        {"{\"kv\":1,\"items\":[],\"cursor\":\"a b\",\"more\":false}", "cursor"},
        {"{\"kv\":1,\"items\":[],\"cursor\":\"a\\nb\",\"more\":false}", "cursor"},
        {"{\"kv\":1,\"items\":[],\"cursor\":\"c\"}", "more"},
        {"{\"kv\":1,\"items\":[],\"cursor\":\"c\",\"more\":\"yes\"}", "more"},
        {"{\"kv\":1,\"kv\":2,\"items\":[],\"cursor\":\"c\",\"more\":false}", "JSON"},
        {PAGE("1"), "items[0]"},
        {PAGE("{\"op\":\"explode\",\"cid\":\"a\"}"), "items[0].op"},
        {PAGE("{\"cid\":\"a\"}"), "items[0].op"},
        {PAGE("{\"op\":\"erase\"}"), "items[0].cid"},
        {PAGE("{\"op\":\"erase\",\"cid\":\"\"}"), "items[0].cid"},
        {PAGE("{\"op\":\"erase\",\"cid\":5}"), "items[0].cid"},
        {PAGE("{\"op\":\"erase\",\"cid\":\"a'b\"}"), "items[0].cid"},
        {PAGE("{\"op\":\"erase\",\"cid\":\"" K1 "x\"}"), "items[0].cid"}, /* 65 chars */
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"card\":{}}"), "items[0].keys"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":\"" K1 "\",\"card\":{}}"),
         "items[0].keys"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"zz\"],\"card\":{}}"),
         "items[0].keys[0]"},
        /* Upper case, 63 and 65 characters, a number: none is a key. */
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1 "\",\"ABCDEF0123456789abcdef01"
              "23456789abcdef0123456789abcdef0123456789\"],\"card\":{}}"),
         "items[0].keys[1]"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"111111111111111111111111111111111"
              "111111111111111111111111111111\"],\"card\":{}}"),
         "items[0].keys[0]"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1 "1\"],\"card\":{}}"),
         "items[0].keys[0]"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[7],\"card\":{}}"), "items[0].keys[0]"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1 "\"]}"), "items[0].card"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1 "\"],\"card\":\"x\"}"),
         "items[0].card"},
        {PAGE("{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[\"" K1 "\"],\"card\":[]}"),
         "items[0].card"},
        /* A bad item after good ones still rejects the whole page. */
        {PAGE("{\"op\":\"erase\",\"cid\":\"a\"},{\"op\":\"erase\",\"cid\":\"b\"},"
              "{\"op\":\"upsert\",\"cid\":\"c\",\"keys\":[],\"card\":null}"),
         "items[2].card"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ts_feed_page p;
        char err[256] = "";
        int rc = ts_feed_parse(bad[i].body, strlen(bad[i].body), &p, err, sizeof err);
        if (rc != TS_ERR_PROTO)
            fail_msg("case %zu accepted (rc %d): %s", i, rc, bad[i].body);
        if (!strstr(err, bad[i].reason))
            fail_msg("case %zu: reason '%s' does not mention '%s'", i, err, bad[i].reason);
        assert_int_equal(p.nitems, 0); /* nothing half-parsed is handed out */
        assert_null(p.items);
    }
}

/* Builds a page with n erase items and the given cursor. */
static char *page_of(size_t n, const char *cursor)
{
    ts_buf b = {0};
    ts_buf_puts(&b, "{\"kv\":1,\"items\":[");
    for (size_t i = 0; i < n; i++)
        ts_buf_printf(&b, "%s{\"op\":\"erase\",\"cid\":\"c%zu\"}", i ? "," : "", i);
    ts_buf_printf(&b, "],\"cursor\":\"%s\",\"more\":false}", cursor);
    return ts_buf_steal(&b);
}

static void test_limits(void **state)
{
    (void)state;
    struct ts_feed_page p;
    char err[256] = "";
    char cursor[TS_FEED_MAX_CURSOR + 2];

    /* Exactly the limits: accepted. */
    memset(cursor, 'q', TS_FEED_MAX_CURSOR);
    cursor[TS_FEED_MAX_CURSOR] = '\0';
    char *body = page_of(TS_FEED_MAX_ITEMS, cursor);
    assert_int_equal(ts_feed_parse(body, strlen(body), &p, err, sizeof err), TS_OK);
    assert_int_equal(p.nitems, TS_FEED_MAX_ITEMS);
    assert_int_equal(strlen(p.cursor), TS_FEED_MAX_CURSOR);
    ts_feed_page_free(&p);
    free(body);

    /* One more item: refused. */
    body = page_of(TS_FEED_MAX_ITEMS + 1, "c");
    assert_int_equal(ts_feed_parse(body, strlen(body), &p, err, sizeof err), TS_ERR_PROTO);
    assert_non_null(strstr(err, "items"));
    assert_non_null(strstr(err, "1000"));
    free(body);

    /* One more cursor character: refused. */
    cursor[TS_FEED_MAX_CURSOR] = 'q';
    cursor[TS_FEED_MAX_CURSOR + 1] = '\0';
    body = page_of(1, cursor);
    assert_int_equal(ts_feed_parse(body, strlen(body), &p, err, sizeof err), TS_ERR_PROTO);
    assert_non_null(strstr(err, "cursor"));
    free(body);

    /* Deep nesting inside a card cannot exhaust the stack. */
    ts_buf b = {0};
    ts_buf_puts(
        &b, "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"a\",\"keys\":[],\"card\":{\"x\":");
    for (int i = 0; i < 100000; i++)
        ts_buf_puts(&b, "[");
    assert_int_equal(ts_feed_parse(b.data, b.len, &p, err, sizeof err), TS_ERR_PROTO);
    ts_buf_free(&b);

    /* Bytes after the JSON value, and a NUL inside, are not a page. */
    static const char trailing[] = "{\"kv\":1,\"items\":[],\"cursor\":\"c\",\"more\":false} x";
    assert_int_equal(ts_feed_parse(trailing, strlen(trailing), &p, err, sizeof err), TS_ERR_PROTO);
    static const char nul[] = "{\"kv\":1,\"items\":[],\"cursor\":\"c\",\"more\":false}\0";
    assert_int_equal(ts_feed_parse(nul, sizeof nul - 1, &p, err, sizeof err), TS_ERR_PROTO);
}

static void test_lookup_answer(void **state)
{
    (void)state;
    static const char ok[] =
        "{\"kv\":1,\"cid\":\"c7\",\"keys\":[\"" K1 "\"],\"card\":{\"name\":\"Bo\"}}";
    struct ts_feed_page p;
    char err[256] = "";
    assert_int_equal(ts_feed_parse_lookup(ok, strlen(ok), &p, err, sizeof err), TS_OK);
    assert_int_equal(p.nitems, 1);
    assert_int_equal(p.items[0].op, TS_FEED_UPSERT);
    assert_string_equal(p.items[0].cid, "c7");
    assert_string_equal(p.items[0].card, "{\"name\":\"Bo\"}");
    assert_string_equal(p.cursor, "");
    ts_feed_page_free(&p);

    static const char *bad[] = {
        "{\"error\":\"unknown customer\"}",
        "{\"kv\":1,\"cid\":\"c7\",\"keys\":[\"" K1 "\"]}",
        "{\"kv\":1,\"keys\":[\"" K1 "\"],\"card\":{}}",
        "{\"kv\":1,\"cid\":\"c7\",\"keys\":[\"nope\"],\"card\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (ts_feed_parse_lookup(bad[i], strlen(bad[i]), &p, err, sizeof err) != TS_ERR_PROTO)
            fail_msg("lookup case %zu accepted: %s", i, bad[i]);
        assert_true(err[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_page),      cmocka_unit_test(test_empty_page),
        cmocka_unit_test(test_malformed_pages), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_lookup_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
