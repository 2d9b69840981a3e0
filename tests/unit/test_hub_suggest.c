/*
 * Unit tests for hub/suggest.c through the real store (in-memory SQLite):
 * Segment events in, the card's order statuses and suggested product out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "hubdb.h"

#define NOW 1780000000000LL
#define MIN (60LL * 1000)
#define KEY_HEX "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"

struct fx {
    struct ts_hub_store *s;
    struct ts_tenant_key key;
    unsigned msg; /* messageId counter */
    ts_buf batch;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256];
    assert_non_null(f);
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &f->key), TS_OK);
    assert_int_equal(ts_hub_store_open(test_hub_db(), &f->key, 0, &f->s, err, sizeof err), TS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ts_hub_store_close(f->s);
    ts_buf_free(&f->batch);
    free(f);
    return 0;
}

/* Adds one event (JSON members after type/userId/messageId/timestamp). */
static void ev(struct fx *f, const char *user, int64_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void ev(struct fx *f, const char *user, int64_t at, const char *fmt, ...)
{
    char ts[40], rest[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rest, sizeof rest, fmt, ap);
    va_end(ap);
    ts_iso8601(at, ts, sizeof ts);
    ts_buf_printf(&f->batch, "%s{\"userId\":\"%s\",\"messageId\":\"m%u\",\"timestamp\":\"%s\",%s}",
                  f->batch.len ? "," : "", user, ++f->msg, ts, rest);
}

static void flush(struct fx *f)
{
    ts_buf body = {0};
    struct ts_seg_batch *b = NULL;
    struct ts_hub_ingest_result r = {0};
    char err[256] = "";
    assert_int_equal(ts_buf_printf(&body, "{\"batch\":[%s]}", f->batch.data), TS_OK);
    if (ts_seg_parse(body.data, body.len, NOW, &b, err, sizeof err) != TS_OK)
        fail_msg("parse: %s", err);
    assert_int_equal(ts_hub_store_ingest(f->s, b, NOW, &r), TS_OK);
    ts_seg_batch_free(b);
    ts_buf_free(&body);
    ts_buf_reset(&f->batch);
}

static void identify(struct fx *f, const char *user, const char *loyalty, bool consent,
                     const char *extra)
{
    ev(f, user, NOW - 60 * MIN,
       "\"type\":\"identify\",\"traits\":{\"name\":\"%s\",\"loyalty_id\":\"%s\","
       "\"home_store\":\"S001\",\"consent\":{\"personalization\":%s}%s}",
       user, loyalty, consent ? "true" : "false", extra ? extra : "");
}

static void viewed(struct fx *f, const char *user, const char *pid, int64_t at)
{
    ev(f, user, at,
       "\"type\":\"track\",\"event\":\"Product Viewed\",\"properties\":{\"product_id\":\"%s\","
       "\"name\":\"Name of %s\"}",
       pid, pid);
}

static void ordered(struct fx *f, const char *user, const char *oid, const char *pid, int64_t at)
{
    ev(f, user, at,
       "\"type\":\"track\",\"event\":\"Order Completed\",\"properties\":{\"order_id\":\"%s\","
       "\"total\":10,\"currency\":\"EUR\",\"products\":[{\"product_id\":\"%s\","
       "\"name\":\"Name of %s\",\"quantity\":1}]}",
       oid, pid, pid);
}

static json_t *card(struct fx *f, const char *loyalty)
{
    char norm[64], key[TS_IDENT_KEY_HEX];
    ts_buf out = {0};
    assert_int_equal(ts_ident_normalize(loyalty, strlen(loyalty), norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(&f->key, TS_IDENT_LOYALTY, norm, key), TS_OK);
    assert_int_equal(ts_hub_store_lookup(f->s, key, &out), TS_OK);
    json_t *j = json_loads(out.data, 0, NULL);
    assert_non_null(j);
    ts_buf_free(&out);
    json_t *c = json_incref(json_object_get(j, "card"));
    json_decref(j);
    return c;
}

/* The suggested product id on a customer's card, "" when none (copied). */
static const char *suggested(struct fx *f, const char *loyalty)
{
    static char id[128];
    json_t *c = card(f, loyalty);
    const char *s =
        json_string_value(json_object_get(json_object_get(c, "suggested"), "product_id"));
    snprintf(id, sizeof id, "%s", s ? s : "");
    json_decref(c);
    return id;
}

static const char *order_status(struct fx *f, const char *loyalty, const char *oid)
{
    static char st[64];
    json_t *c = card(f, loyalty), *o;
    size_t i;
    st[0] = '\0';
    json_array_foreach(json_object_get(c, "orders"), i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "order_id")), oid) == 0)
            snprintf(st, sizeof st, "%s", json_string_value(json_object_get(o, "status")));
    }
    json_decref(c);
    return st;
}

/* ---- order status ----------------------------------------------------------*/

static void test_status_words(void **state)
{
    (void)state;
    assert_string_equal(ts_hub_order_status("Order Shipped", NULL), "shipped");
    assert_string_equal(ts_hub_order_status("Order Cancelled", "whatever"), "cancelled");
    assert_string_equal(ts_hub_order_status("Order Refunded", NULL), "refunded");
    assert_string_equal(ts_hub_order_status("Order Updated", "Ready for pickup"),
                        "ready_for_pickup");
    assert_string_equal(ts_hub_order_status("Order Updated", "READY-FOR-PICKUP"),
                        "ready_for_pickup");
    assert_string_equal(ts_hub_order_status("Order Updated", "in_transit"), "shipped");
    assert_string_equal(ts_hub_order_status("Order Updated", "canceled"), "cancelled");
    assert_string_equal(ts_hub_order_status("Order Completed", "processing"), "processing");
    assert_null(ts_hub_order_status("Order Updated", NULL));
    assert_null(ts_hub_order_status("Order Updated", "lost in space"));
    assert_null(ts_hub_order_status("Order Updated", ""));
    assert_null(ts_hub_order_status("Order Completed", NULL));
    char longw[200];
    memset(longw, 'a', sizeof longw - 1);
    longw[sizeof longw - 1] = '\0';
    assert_null(ts_hub_order_status("Order Updated", longw));
}

static void test_status_follows_events(void **state)
{
    struct fx *f = *state;
    identify(f, "ada", "2000000000015", true, NULL);
    ordered(f, "ada", "W-1", "SKU-A", NOW - 50 * MIN);
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-1"), "placed");

    ev(f, "ada", NOW - 30 * MIN,
       "\"type\":\"track\",\"event\":\"Order Shipped\",\"properties\":{\"order_id\":\"W-1\"}");
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-1"), "shipped");

    /* An older update arriving late does not move the status back. */
    ev(f, "ada", NOW - 40 * MIN,
       "\"type\":\"track\",\"event\":\"Order Updated\",\"properties\":{\"order_id\":\"W-1\","
       "\"status\":\"processing\"}");
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-1"), "shipped");

    ev(f, "ada", NOW - 10 * MIN,
       "\"type\":\"track\",\"event\":\"Order Updated\",\"properties\":{\"order_id\":\"W-1\","
       "\"status\":\"Ready for pickup\"}");
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-1"), "ready_for_pickup");

    /* An update without a status we know changes nothing. */
    ev(f, "ada", NOW - 5 * MIN,
       "\"type\":\"track\",\"event\":\"Order Updated\",\"properties\":{\"order_id\":\"W-1\","
       "\"status\":\"with the courier's cat\"}");
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-1"), "ready_for_pickup");

    /* A status heard before the order itself is kept when it arrives. */
    ev(f, "ada", NOW - 2 * MIN,
       "\"type\":\"track\",\"event\":\"Order Cancelled\",\"properties\":{\"order_id\":\"W-2\"}");
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-2"), "cancelled");
    ordered(f, "ada", "W-2", "SKU-B", NOW - 20 * MIN);
    flush(f);
    assert_string_equal(order_status(f, "2000000000015", "W-2"), "cancelled");
}

/* ---- suggestion ------------------------------------------------------------*/

/* Peers bea and cem viewed the top interest P; bea bought R, both viewed
 * Q. dan (no consent) viewed P and S a lot. */
static void peers(struct fx *f)
{
    identify(f, "bea", "2000000000022", true, NULL);
    identify(f, "cem", "2000000000039", true, NULL);
    identify(f, "dan", "2000000000046", false, NULL);
    viewed(f, "bea", "P", NOW - 40 * MIN);
    viewed(f, "bea", "Q", NOW - 39 * MIN);
    ordered(f, "bea", "W-B1", "R", NOW - 38 * MIN);
    viewed(f, "cem", "P", NOW - 37 * MIN);
    viewed(f, "cem", "Q", NOW - 36 * MIN);
    for (int i = 0; i < 5; i++) {
        viewed(f, "dan", "P", NOW - 35 * MIN + i);
        viewed(f, "dan", "S", NOW - 30 * MIN + i);
    }
    flush(f);
}

static void test_suggest_from_peers(void **state)
{
    struct fx *f = *state;
    peers(f);
    identify(f, "ada", "2000000000015", true, NULL);
    for (int i = 0; i < 3; i++)
        viewed(f, "ada", "P", NOW - 20 * MIN + i);
    flush(f);
    /* R: one peer bought it (3); Q: two peers viewed it (2); S: only the
     * customer without consent. */
    assert_string_equal(suggested(f, "2000000000015"), "R");
    json_t *c = card(f, "2000000000015");
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "suggested"), "name")),
                        "Name of R");
    json_decref(c);

    /* What the customer already looked at is not suggested again. */
    viewed(f, "ada", "R", NOW - 10 * MIN);
    flush(f);
    assert_string_equal(suggested(f, "2000000000015"), "Q");
}

static void test_suggest_excludes_owned_and_weak(void **state)
{
    struct fx *f = *state;
    peers(f);
    identify(f, "ada", "2000000000015", true, NULL);
    viewed(f, "ada", "P", NOW - 20 * MIN);
    ordered(f, "ada", "W-A1", "R", NOW - 15 * MIN); /* already bought R */
    ev(f, "ada", NOW - 14 * MIN,
       "\"type\":\"track\",\"event\":\"Product Added\",\"properties\":{\"product_id\":\"Q\"}");
    flush(f);
    /* Top interest is now the cart (Q); who viewed Q viewed P (ada has
     * seen it) and bought R (ada has it): nothing new from peers, so the
     * card falls back to its own most-viewed product not in the cart. */
    assert_string_equal(suggested(f, "2000000000015"), "P");
}

static void test_suggest_trait_wins_and_consent(void **state)
{
    struct fx *f = *state;
    peers(f);
    identify(f, "ada", "2000000000015", true,
             ",\"suggested_product\":{\"product_id\":\"T\",\"name\":\"Trait pick\"}");
    viewed(f, "ada", "P", NOW - 20 * MIN);
    identify(f, "eve", "2000000000053", false, NULL);
    viewed(f, "eve", "P", NOW - 20 * MIN);
    flush(f);
    assert_string_equal(suggested(f, "2000000000015"), "T");
    /* Without consent the card has no suggestion at all. */
    assert_string_equal(suggested(f, "2000000000053"), "");
}

static void test_top_interest(void **state)
{
    (void)state;
    struct ts_hub_view v[] = {
        {.product_id = "A", .at_ms = NOW - 20 * 24 * 60 * MIN}, /* old: decayed */
        {.product_id = "A", .at_ms = NOW - 21 * 24 * 60 * MIN},
        {.product_id = "A", .at_ms = NOW - 22 * 24 * 60 * MIN},
        {.product_id = "B", .at_ms = NOW - MIN},
        {.product_id = "B", .at_ms = NOW - 2 * MIN},
    };
    struct ts_hub_profile p = {.views = v, .nviews = 5, .now_ms = NOW};
    assert_string_equal(ts_hub_top_interest(&p), "B");
    struct ts_hub_line cart[] = {{.product_id = "C"}};
    p.cart = cart;
    p.ncart = 1;
    assert_string_equal(ts_hub_top_interest(&p), "C");
    struct ts_hub_profile none = {.now_ms = NOW};
    assert_null(ts_hub_top_interest(&none));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_words),
        cmocka_unit_test_setup_teardown(test_status_follows_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suggest_from_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suggest_excludes_owned_and_weak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suggest_trait_wins_and_consent, setup, teardown),
        cmocka_unit_test(test_top_interest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
