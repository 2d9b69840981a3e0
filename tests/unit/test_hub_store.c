/*
 * Unit tests for the hub's store: Segment events in, cards and lookups out,
 * on an in-memory SQLite database with a fixed clock (hub_store_fx.h).
 */
#include "hub_store_fx.h"

static void test_card_from_identify_views_cart(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u-ada", "2000000000015", "S001", true, 3);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000015");
    assert_non_null(a);
    json_t *card = card_of(a);
    assert_string_equal(json_string_value(json_object_get(card, "name")), "Ada Lovelace");
    assert_string_equal(json_string_value(json_object_get(card, "tier")), "gold");
    assert_int_equal(num(card, "points"), 1200);
    assert_true(json_is_true(json_object_get(card, "consent")));
    assert_int_equal(num(a, "kv"), 1);

    /* cart first, then views by score */
    json_t *list = json_object_get(card, "interests");
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "product_id")),
                        "SKU-JKT-7");
    json_t *cart = interest(card, "SKU-JKT-7");
    assert_string_equal(sig(cart), "cart");
    assert_int_equal(num(cart, "quantity"), 1);
    assert_true(json_real_value(json_object_get(cart, "price")) == 129.0);
    assert_string_equal(json_string_value(json_object_get(cart, "name")), "Rain Jacket");
    json_t *run = interest(card, "SKU-RUN-42");
    assert_string_equal(sig(run), "viewed");
    assert_int_equal(num(run, "count"), 3);
    double score = json_real_value(json_object_get(run, "score"));
    assert_true(score > 2.9 && score <= 3.0); /* three views an hour ago */
    assert_ptr_equal(json_array_get(list, 1), run);
    assert_int_equal(num(interest(card, "SKU-HAT-1"), "count"), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(card, "suggested"), "product_id")),
        "SKU-RUN-42");
    assert_int_equal(json_array_size(json_object_get(card, "orders")), 0);

    /* cid: opaque, 32 hex chars, same in the answer and the card, never the userId */
    const char *cid = json_string_value(json_object_get(a, "cid"));
    assert_int_equal(strlen(cid), 32);
    assert_string_equal(cid, json_string_value(json_object_get(card, "cid")));
    char want[33];
    assert_int_equal(ts_hub_cid(&f->key, "u-ada", want), TS_OK);
    assert_string_equal(cid, want);
    char *dump = json_dumps(a, 0);
    assert_null(strstr(dump, "u-ada"));
    assert_null(strstr(dump, "2000000000015"));
    free(dump);
    json_t *keys = json_object_get(a, "keys");
    assert_int_equal(json_array_size(keys), 1);
    assert_string_equal(json_string_value(json_array_get(keys, 0)),
                        key_of(f, TS_IDENT_LOYALTY, "2000000000015"));
    char upd[40];
    ts_iso8601(NOW, upd, sizeof upd);
    assert_string_equal(json_string_value(json_object_get(card, "updated")), upd);
    json_decref(a);
}

static void test_consent_false_hides_interests(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u-no", "2000000000022", "S001", false, 3);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000022");
    json_t *card = card_of(a);
    assert_string_equal(json_string_value(json_object_get(card, "name")), "Ada Lovelace");
    assert_true(json_is_false(json_object_get(card, "consent")));
    assert_null(json_object_get(card, "interests"));
    assert_null(json_object_get(card, "orders"));
    assert_null(json_object_get(card, "suggested"));
    json_decref(a);
}

static void test_cart_remove_and_quantities(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u1", "2000000000039", "S001", true, 1);
    ingest(f, "{\"type\":\"track\",\"event\":\"Product Removed\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-JKT-7\"}},"
              "{\"type\":\"track\",\"event\":\"Product Added\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-B\",\"quantity\":3}},"
              "{\"type\":\"track\",\"event\":\"Product Removed\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-B\",\"quantity\":1}}");
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000039");
    json_t *card = card_of(a);
    assert_null(interest(card, "SKU-JKT-7"));
    json_t *b = interest(card, "SKU-B");
    assert_string_equal(sig(b), "cart");
    assert_int_equal(num(b, "quantity"), 2);
    assert_null(json_object_get(b, "price"));
    json_decref(a);

    /* An online order takes its products out of the cart and is listed,
     * and the order number finds the customer too. */
    ingest(f, "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u1\","
              "\"timestamp\":\"2026-05-28T10:00:00.000Z\",\"properties\":{\"order_id\":\"W-1001\","
              "\"total\":59.9,\"currency\":\"EUR\",\"products\":[{\"product_id\":\"SKU-B\"}]}}");
    a = lookup(f, TS_IDENT_ORDER, "w-1001");
    assert_non_null(a);
    card = card_of(a);
    assert_null(interest(card, "SKU-B"));
    json_t *o = json_array_get(json_object_get(card, "orders"), 0);
    assert_string_equal(json_string_value(json_object_get(o, "order_id")), "W-1001");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "placed");
    assert_string_equal(json_string_value(json_object_get(o, "currency")), "EUR");
    assert_string_equal(json_string_value(json_object_get(o, "at")), "2026-05-28T10:00:00.000Z");
    assert_true(json_real_value(json_object_get(o, "total")) == 59.9);
    assert_int_equal(json_array_size(json_object_get(a, "keys")), 2);
    json_decref(a);
}

/* Fetches one feed page and returns its items (parsed). */
static void test_duplicate_message_ids(void **state)
{
    struct fx *f = *state;
    ts_buf b = {0};
    customer(&b, "u-dup", "2000000000077", "S001", true, 3);
    struct ts_hub_ingest_result r = ingest(f, b.data);
    assert_int_equal(r.duplicates, 0);
    assert_int_equal(r.applied, 6);
    r = ingest(f, b.data); /* the CDP retried the whole batch */
    assert_int_equal(r.duplicates, 6);
    assert_int_equal(r.applied, 0);
    /* and a duplicate inside one batch */
    r = ingest(f, "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-dup\","
                  "\"messageId\":\"same\",\"properties\":{\"product_id\":\"SKU-RUN-42\"}},"
                  "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-dup\","
                  "\"messageId\":\"same\",\"properties\":{\"product_id\":\"SKU-RUN-42\"}}");
    assert_int_equal(r.duplicates, 1);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000077");
    assert_int_equal(num(interest(card_of(a), "SKU-RUN-42"), "count"), 4);
    json_decref(a);
    ts_buf_free(&b);
    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(f->s, &st), TS_OK);
    json_t *stats = json_loads(st.data, 0, NULL);
    assert_int_equal(num(stats, "events"), 7);
    json_decref(stats);
    ts_buf_free(&st);
}

static void test_lookup_unknown(void **state)
{
    struct fx *f = *state;
    assert_null(lookup(f, TS_IDENT_LOYALTY, "2999999999996"));
    add_customer(f, "u", "2000000000084", "S001", true, 1);
    assert_null(lookup(f, TS_IDENT_ORDER, "2000000000084")); /* kinds are separate */
}

static void test_anonymous_browsing_merges_on_identify(void **state)
{
    struct fx *f = *state;
    ingest(f, "{\"type\":\"track\",\"event\":\"Product Viewed\",\"anonymousId\":\"anon-1\","
              "\"properties\":{\"product_id\":\"SKU-X\",\"name\":\"X\"}},"
              "{\"type\":\"track\",\"event\":\"Product Added to Wishlist\","
              "\"anonymousId\":\"anon-1\",\"properties\":{\"product_id\":\"SKU-W\"}}");
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-m\",\"anonymousId\":\"anon-1\","
              "\"traits\":{\"name\":\"Merged\",\"loyalty_id\":\"2000000000091\","
              "\"home_store\":\"S001\"}},"
              "{\"type\":\"track\",\"event\":\"Product Viewed\",\"anonymousId\":\"anon-1\","
              "\"properties\":{\"product_id\":\"SKU-X\"}}");
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000091");
    json_t *card = card_of(a);
    assert_string_equal(json_string_value(json_object_get(card, "name")), "Merged");
    assert_int_equal(num(interest(card, "SKU-X"), "count"), 2);
    assert_string_equal(sig(interest(card, "SKU-W")), "wishlist");
    json_decref(a);
    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(f->s, &st), TS_OK);
    json_t *stats = json_loads(st.data, 0, NULL);
    assert_int_equal(num(stats, "customers"), 1);
    json_decref(stats);
    ts_buf_free(&st);
}

static void test_decay_and_recent_count(void **state)
{
    struct fx *f = *state;
    char ev[4096], t14[40], t1[40];
    ts_iso8601(NOW - 14 * DAY, t14, sizeof t14);
    ts_iso8601(NOW - DAY, t1, sizeof t1);
    snprintf(ev, sizeof ev,
             "{\"type\":\"identify\",\"userId\":\"u-d\",\"traits\":{\"loyalty_id\":\"2100\"}},"
             "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-d\","
             "\"timestamp\":\"%s\",\"properties\":{\"product_id\":\"OLD\"}},"
             "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-d\","
             "\"timestamp\":\"%s\",\"properties\":{\"product_id\":\"OLD\"}},"
             "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-d\","
             "\"timestamp\":\"%s\",\"properties\":{\"product_id\":\"NEW\"}}",
             t14, t14, t1);
    ingest(f, ev);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2100");
    json_t *card = card_of(a);
    json_t *list = json_object_get(card, "interests");
    /* one view a day ago (0.91) beats two views two half-lives ago (0.5) */
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "product_id")),
                        "NEW");
    json_t *old = interest(card, "OLD");
    assert_int_equal(num(old, "count"), 0); /* none in the last 7 days */
    assert_true(json_real_value(json_object_get(old, "score")) == 0.5);
    assert_int_equal(num(interest(card, "NEW"), "count"), 1);
    json_decref(a);
}

static void test_interests_capped_at_eight(void **state)
{
    struct fx *f = *state;
    ts_buf b = {0};
    ts_buf_printf(&b, "{\"type\":\"identify\",\"userId\":\"u-many\","
                      "\"traits\":{\"loyalty_id\":\"2200\",\"suggested_product\":"
                      "{\"product_id\":\"SUG\",\"name\":\"Rain cover\"}}}");
    for (int i = 0; i < 12; i++)
        ts_buf_printf(&b,
                      ",{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u-many\","
                      "\"properties\":{\"product_id\":\"P%02d\"}}",
                      i);
    ingest(f, b.data);
    ts_buf_free(&b);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2200");
    json_t *card = card_of(a);
    assert_int_equal(json_array_size(json_object_get(card, "interests")), 8);
    json_t *s = json_object_get(card, "suggested");
    assert_string_equal(json_string_value(json_object_get(s, "product_id")), "SUG");
    assert_string_equal(json_string_value(json_object_get(s, "name")), "Rain cover");
    json_decref(a);
}

/* On a file the read side has its own connection: it must see each
 * committed batch at once, and a read-only open (stats) must work beside it. */
static void test_file_store_readers(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_hub_store.XXXXXX", path[256], err[256];
    assert_non_null(mkdtemp(dir));
    test_hub_db_file(path, sizeof path, dir);
    struct fx f = {0};
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &f.key), TS_OK);
    assert_int_equal(ts_hub_store_open(path, &f.key, 0, &f.s, err, sizeof err), TS_OK);
    bool more;
    uint64_t last;
    for (int i = 0; i < 3; i++) {
        char user[16], loy[16];
        snprintf(user, sizeof user, "f%d", i);
        snprintf(loy, sizeof loy, "21000000%05d", i);
        add_customer(&f, user, loy, "S001", true, 2);
        json_t *items = page(&f, "S001", 0, 100, &more, &last);
        assert_int_equal(json_array_size(items), i + 1);
        json_decref(items);
        json_t *a = lookup(&f, TS_IDENT_LOYALTY, loy);
        assert_non_null(a);
        json_decref(a);
    }
    struct ts_hub_store *ro = NULL;
    assert_int_equal(ts_hub_store_open(path, &f.key, TS_HUB_STORE_RDONLY, &ro, err, sizeof err),
                     TS_OK);
    /* the epoch is the database's: the same on reopen, not another's */
    assert_true(ts_hub_store_epoch(ro) == ts_hub_store_epoch(f.s));
    struct ts_hub_store *mem = NULL;
    assert_int_equal(ts_hub_store_open(":memory:", &f.key, 0, &mem, err, sizeof err), TS_OK);
    struct ts_hub_store *mem2 = NULL;
    assert_int_equal(ts_hub_store_open(":memory:", &f.key, 0, &mem2, err, sizeof err), TS_OK);
    assert_true(ts_hub_store_epoch(mem) != ts_hub_store_epoch(f.s) ||
                ts_hub_store_epoch(mem2) != ts_hub_store_epoch(f.s));
    ts_hub_store_close(mem);
    ts_hub_store_close(mem2);
    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(ro, &st), TS_OK);
    assert_non_null(strstr(st.data, "\"customers\":3"));
    ts_buf_free(&st);
    ts_hub_store_close(ro);
    ts_hub_store_close(f.s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The one item of a page as JSON (fails unless there is exactly one). */

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_card_from_identify_views_cart),
        T(test_consent_false_hides_interests),
        T(test_cart_remove_and_quantities),
        T(test_duplicate_message_ids),
        T(test_lookup_unknown),
        T(test_anonymous_browsing_merges_on_identify),
        T(test_decay_and_recent_count),
        T(test_interests_capped_at_eight),
        cmocka_unit_test(test_file_store_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
