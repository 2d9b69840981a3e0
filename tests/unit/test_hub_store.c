/*
 * Unit tests for the hub's store: Segment events in, cards, feed pages and
 * lookups out, on an in-memory SQLite database with a fixed clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "hubdb.h"

#define NOW 1780000000000LL
#define DAY (24LL * 3600 * 1000)
#define KEY_HEX "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"

struct fx {
    struct ts_hub_store *s;
    struct ts_tenant_key key;
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
    free(f);
    return 0;
}

/* Ingests {"batch":[events]} at time now; returns the result. */
static struct ts_hub_ingest_result ingest_at(struct fx *f, int64_t now, const char *events)
{
    ts_buf body = {0};
    struct ts_seg_batch *b = NULL;
    struct ts_hub_ingest_result r = {0};
    char err[256] = "";
    assert_int_equal(ts_buf_printf(&body, "{\"batch\":[%s]}", events), TS_OK);
    int rc = ts_seg_parse(body.data, body.len, now, &b, err, sizeof err);
    if (rc != TS_OK)
        fail_msg("parse: %s", err);
    assert_int_equal(ts_hub_store_ingest(f->s, b, now, &r), TS_OK);
    ts_seg_batch_free(b);
    ts_buf_free(&body);
    return r;
}

static struct ts_hub_ingest_result ingest(struct fx *f, const char *events)
{
    return ingest_at(f, NOW, events);
}

/* Events like tests/blackbox/tslib.py customer_batch: identify, N views of
 * SKU-RUN-42, one view of SKU-HAT-1, one cart add of SKU-JKT-7. */
static void customer(ts_buf *out, const char *user, const char *loyalty, const char *store,
                     bool consent, int views)
{
    char ts[40];
    ts_iso8601(NOW - 3600 * 1000, ts, sizeof ts);
    ts_buf_printf(out,
                  "%s{\"type\":\"identify\",\"userId\":\"%s\",\"messageId\":\"%s-id\","
                  "\"timestamp\":\"%s\",\"traits\":{\"name\":\"Ada Lovelace\","
                  "\"loyalty_id\":\"%s\",\"tier\":\"gold\",\"points\":1200,"
                  "\"home_store\":\"%s\",\"consent\":{\"personalization\":%s}}}",
                  out->len ? "," : "", user, user, ts, loyalty, store, consent ? "true" : "false");
    for (int i = 0; i < views; i++)
        ts_buf_printf(out,
                      ",{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"%s\","
                      "\"messageId\":\"%s-v%d\",\"timestamp\":\"%s\",\"properties\":"
                      "{\"product_id\":\"SKU-RUN-42\",\"name\":\"Trail Runner 42\","
                      "\"price\":89.0}}",
                      user, user, i, ts);
    ts_buf_printf(out,
                  ",{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"%s\","
                  "\"messageId\":\"%s-v-other\",\"timestamp\":\"%s\",\"properties\":"
                  "{\"product_id\":\"SKU-HAT-1\",\"name\":\"Wool Hat\",\"price\":19.0}}",
                  user, user, ts);
    ts_buf_printf(out,
                  ",{\"type\":\"track\",\"event\":\"Product Added\",\"userId\":\"%s\","
                  "\"messageId\":\"%s-c1\",\"timestamp\":\"%s\",\"properties\":"
                  "{\"product_id\":\"SKU-JKT-7\",\"name\":\"Rain Jacket\",\"price\":129.0,"
                  "\"quantity\":1}}",
                  user, user, ts);
}

static void add_customer(struct fx *f, const char *user, const char *loyalty, const char *store,
                         bool consent, int views)
{
    ts_buf b = {0};
    customer(&b, user, loyalty, store, consent, views);
    ingest(f, b.data);
    ts_buf_free(&b);
}

static char *key_of(struct fx *f, enum ts_ident_kind kind, const char *raw)
{
    static char hex[TS_IDENT_KEY_HEX];
    char norm[64];
    assert_int_equal(ts_ident_normalize(raw, strlen(raw), norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(&f->key, kind, norm, hex), TS_OK);
    return hex;
}

/* The lookup answer for a loyalty number, parsed; NULL when unknown. */
static json_t *lookup(struct fx *f, enum ts_ident_kind kind, const char *raw)
{
    ts_buf out = {0};
    int rc = ts_hub_store_lookup(f->s, key_of(f, kind, raw), &out);
    if (rc == TS_ERR_NOTFOUND) {
        ts_buf_free(&out);
        return NULL;
    }
    assert_int_equal(rc, TS_OK);
    json_error_t e;
    json_t *j = json_loads(out.data, 0, &e);
    if (!j)
        fail_msg("lookup answer is not JSON: %s: %s", e.text, out.data);
    ts_buf_free(&out);
    return j;
}

static json_t *card_of(json_t *answer)
{
    return json_object_get(answer, "card");
}

static json_t *interest(json_t *card, const char *pid)
{
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(card, "interests"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "product_id")), pid) == 0)
            return it;
    }
    return NULL;
}

static const char *sig(json_t *it)
{
    return json_string_value(json_object_get(it, "signal"));
}

static long long num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

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
static json_t *page(struct fx *f, const char *store, uint64_t since, int limit, bool *more,
                    uint64_t *last)
{
    struct ts_hub_feed_page p = {0};
    assert_int_equal(ts_hub_store_feed(f->s, store, since, limit, &p), TS_OK);
    ts_buf b = {0};
    ts_buf_printf(&b, "[%s]", p.items.data ? p.items.data : "");
    json_t *items = json_loads(b.data, 0, NULL);
    assert_non_null(items);
    assert_int_equal(json_array_size(items), p.nitems);
    *more = p.more;
    *last = p.last_seq;
    ts_buf_free(&b);
    ts_buf_free(&p.items);
    return items;
}

static void test_feed_paging_and_restamp(void **state)
{
    struct fx *f = *state;
    char user[16], loy[16], cids[5][33];
    for (int i = 0; i < 5; i++) {
        snprintf(user, sizeof user, "u%d", i);
        snprintf(loy, sizeof loy, "20000000%05d", i);
        add_customer(f, user, loy, "S001", true, 1);
        ts_hub_cid(&f->key, user, cids[i]);
    }
    add_customer(f, "u-other", "2000000099999", "S002", true, 1);

    uint64_t since = 0, last;
    bool more;
    int seen = 0;
    const bool want_more[] = {true, true, false};
    for (int p = 0; p < 3; p++) {
        json_t *items = page(f, "S001", since, 2, &more, &last);
        assert_int_equal(json_array_size(items), p < 2 ? 2 : 1);
        assert_int_equal(more, want_more[p]);
        assert_true(last > since);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            assert_string_equal(json_string_value(json_object_get(it, "op")), "upsert");
            /* customers were added in order, so the feed lists them in order */
            assert_string_equal(json_string_value(json_object_get(it, "cid")), cids[seen]);
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(it, "card"), "cid")), cids[seen]);
            assert_int_equal(json_array_size(json_object_get(it, "keys")), 1);
            seen++;
        }
        json_decref(items);
        since = last;
    }
    assert_int_equal(seen, 5);

    /* Nothing new: empty page, cursor unchanged. */
    json_t *items = page(f, "S001", since, 2, &more, &last);
    assert_int_equal(json_array_size(items), 0);
    assert_false(more);
    assert_true(last == since);
    json_decref(items);

    /* A later change to customer 1 re-appears after the cursor, once. */
    ingest(f, "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-NEW\"}},"
              "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u1\","
              "\"properties\":{\"product_id\":\"SKU-NEW\"}}");
    items = page(f, "S001", since, 10, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(it, "cid")), cids[1]);
    assert_int_equal(num(interest(json_object_get(it, "card"), "SKU-NEW"), "count"), 2);
    json_decref(items);

    /* A full resync lists every customer once at their latest state. */
    items = page(f, "S001", 0, 1000, &more, &last);
    assert_int_equal(json_array_size(items), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 4), "cid")),
                        cids[1]);
    json_decref(items);

    /* A cursor from the future (the hub's database was replaced) is gone. */
    struct ts_hub_feed_page p = {0};
    assert_int_equal(ts_hub_store_feed(f->s, "S001", last + 1000, 10, &p), TS_ERR_GONE);
    ts_buf_free(&p.items);
}

static void test_store_scoping_and_moves(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u-a", "2000000000046", "S001", true, 1);
    add_customer(f, "u-b", "2000000000053", "S002", true, 1);
    char cid_b[33];
    ts_hub_cid(&f->key, "u-b", cid_b);
    bool more;
    uint64_t last, s1;
    json_t *items = page(f, "S001", 0, 100, &more, &s1);
    assert_int_equal(json_array_size(items), 1);
    assert_string_not_equal(json_string_value(json_object_get(json_array_get(items, 0), "cid")),
                            cid_b);
    json_decref(items);
    items = page(f, "S002", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "cid")), cid_b);
    json_decref(items);
    items = page(f, "S999", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    /* u-b moves to S001: S001 gets the upsert, S002 an erase. */
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-b\",\"traits\":{\"home_store\":\"S001\"}}");
    items = page(f, "S001", s1, 100, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "cid")), cid_b);
    json_decref(items);
    items = page(f, "S002", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(it, "op")), "erase");
    assert_string_equal(json_string_value(json_object_get(it, "cid")), cid_b);
    assert_null(json_object_get(it, "card"));
    json_decref(items);

    /* A customer without a home store is in no slice but still found. */
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-c\",\"traits\":{\"loyalty_id\":"
              "\"2000000000060\"}}");
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "2000000000060");
    assert_non_null(a);
    json_decref(a);
    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(f->s, &st), TS_OK);
    json_t *stats = json_loads(st.data, 0, NULL);
    assert_int_equal(num(stats, "customers"), 3);
    assert_int_equal(num(json_object_get(stats, "stores"), "S001"), 2);
    assert_null(json_object_get(json_object_get(stats, "stores"), "S002"));
    json_decref(stats);
    ts_buf_free(&st);
}

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
static json_t *only_item(struct fx *f, const char *store, uint64_t since, uint64_t *last)
{
    bool more;
    json_t *items = page(f, store, since, 100, &more, last);
    assert_int_equal(json_array_size(items), 1);
    json_t *it = json_incref(json_array_get(items, 0));
    json_decref(items);
    return it;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/*
 * GDPR erasure: the customer is gone from the hub (by userId or by loyalty
 * number, anonymous browsing merged into them included), every store that
 * had the card gets an erase naming only the cid, and a full sync lists no
 * trace of them but that tombstone.
 */
static void test_erase_customer(void **state)
{
    struct fx *f = *state;
    ingest(f, "{\"type\":\"track\",\"event\":\"Product Viewed\",\"anonymousId\":\"anon-e\","
              "\"properties\":{\"product_id\":\"SKU-X\"}}");
    add_customer(f, "u-ada", "2000000000015", "S001", true, 2);
    ingest(f, "{\"type\":\"identify\",\"userId\":\"u-ada\",\"anonymousId\":\"anon-e\"},"
              "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-ada\","
              "\"properties\":{\"order_id\":\"W-77\",\"total\":10}}");
    add_customer(f, "u-bob", "2000000000022", "S001", true, 1);
    add_customer(f, "u-cat", "2000000000039", "S002", true, 1);
    char cid[33];
    ts_hub_cid(&f->key, "u-ada", cid);
    bool more;
    uint64_t last, after;
    json_decref(page(f, "S001", 0, 100, &more, &last));

    struct ts_hub_erase_result r;
    memset(&r, 0xff, sizeof r);
    assert_int_equal(ts_hub_store_erase(f->s, "u-ada", NULL, NOW, &r), TS_OK);
    assert_string_equal(r.cid, cid);
    assert_int_equal(r.stores, 1);
    assert_null(lookup(f, TS_IDENT_LOYALTY, "2000000000015"));
    assert_null(lookup(f, TS_IDENT_ORDER, "W-77"));

    /* S001 is told to erase; S002 never had the card and hears nothing. */
    json_t *it = only_item(f, "S001", last, &after);
    assert_string_equal(str(it, "op"), "erase");
    assert_string_equal(str(it, "cid"), cid);
    assert_null(json_object_get(it, "card"));
    assert_null(json_object_get(it, "keys"));
    json_decref(it);
    json_decref(page(f, "S002", 0, 100, &more, &last));
    json_t *items = page(f, "S002", last, 100, &more, &after);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    /* A full sync shows bob's card and ada's tombstone, nothing else. */
    char bob[33];
    ts_hub_cid(&f->key, "u-bob", bob);
    items = page(f, "S001", 0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(str(json_array_get(items, 0), "cid"), bob);
    assert_string_equal(str(json_array_get(items, 0), "op"), "upsert");
    assert_string_equal(str(json_array_get(items, 1), "cid"), cid);
    assert_string_equal(str(json_array_get(items, 1), "op"), "erase");
    char *dump = json_dumps(items, 0);
    assert_null(strstr(dump, "u-ada"));
    assert_null(strstr(dump, "SKU-X")); /* what ada browsed anonymously */
    free(dump);
    json_decref(items);

    ts_buf st = {0};
    assert_int_equal(ts_hub_store_stats(f->s, &st), TS_OK);
    assert_non_null(strstr(st.data, "\"customers\":2"));
    ts_buf_free(&st);

    /* By loyalty number (as scanned: normalized first), once only. */
    assert_int_equal(ts_hub_store_erase(f->s, NULL, " 2000-0000-00022 ", NOW, &r), TS_OK);
    assert_null(lookup(f, TS_IDENT_LOYALTY, "2000000000022"));
    assert_int_equal(ts_hub_store_erase(f->s, NULL, "2000000000022", NOW, &r), TS_ERR_NOTFOUND);
    assert_int_equal(ts_hub_store_erase(f->s, "u-ada", NULL, NOW, &r), TS_ERR_NOTFOUND);
    assert_int_equal(ts_hub_store_erase(f->s, "nobody", NULL, NOW, &r), TS_ERR_NOTFOUND);
    json_t *c = lookup(f, TS_IDENT_LOYALTY, "2000000000039");
    assert_non_null(c); /* the others are untouched */
    json_decref(c);
}

/* Tombstones are kept keep_ms, then pruned; pruning raises the horizon and
 * a cursor below it is gone (410), while a full sync still works. */
static void test_tombstones_pruned_raise_horizon(void **state)
{
    struct fx *f = *state;
    const int64_t keep = 90 * DAY;
    add_customer(f, "u1", "2000000000046", "S001", true, 1);
    add_customer(f, "u2", "2000000000053", "S001", true, 1);
    add_customer(f, "u3", "2000000000060", "S001", true, 1);
    bool more;
    uint64_t s0, s1, s2, last;
    json_decref(page(f, "S001", 0, 100, &more, &s0));
    /* u1 moves away at NOW (an erase for S001), u2 is erased a day later. */
    ingest_at(f, NOW,
              "{\"type\":\"identify\",\"userId\":\"u1\",\"traits\":{\"home_store\":"
              "\"S009\"}}");
    json_decref(page(f, "S001", 0, 100, &more, &s1));
    assert_int_equal(ts_hub_store_erase(f->s, "u2", NULL, NOW + DAY, NULL), TS_OK);
    json_decref(page(f, "S001", 0, 100, &more, &s2));
    assert_true(s0 < s1 && s1 < s2);
    assert_true(ts_hub_store_horizon(f->s) == 0);

    size_t removed = 99;
    assert_int_equal(ts_hub_store_prune(f->s, NOW + 30 * DAY, keep, &removed), TS_OK);
    assert_int_equal(removed, 0);
    json_decref(page(f, "S001", s0, 100, &more, &last)); /* still served */

    /* 90 days and a bit after the move: its tombstone goes. */
    assert_int_equal(ts_hub_store_prune(f->s, NOW + keep + 1, keep, &removed), TS_OK);
    assert_int_equal(removed, 1);
    assert_true(ts_hub_store_horizon(f->s) == s1);
    struct ts_hub_feed_page p = {0};
    assert_int_equal(ts_hub_store_feed(f->s, "S001", s0, 10, &p), TS_ERR_GONE);
    ts_buf_free(&p.items);
    json_t *items = page(f, "S001", s1, 100, &more, &last); /* saw the move: fine */
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(str(json_array_get(items, 0), "op"), "erase");
    json_decref(items);
    items = page(f, "S001", 0, 100, &more, &last); /* a full sync: u3 and u2's tombstone */
    assert_int_equal(json_array_size(items), 2);
    json_decref(items);

    assert_int_equal(ts_hub_store_prune(f->s, NOW + DAY + keep + 1, keep, &removed), TS_OK);
    assert_int_equal(removed, 1);
    assert_true(ts_hub_store_horizon(f->s) == s2);
    assert_int_equal(ts_hub_store_feed(f->s, "S001", s1, 10, &p), TS_ERR_GONE);
    ts_buf_free(&p.items);
    items = page(f, "S001", s2, 100, &more, &last);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    /* Pruning never lowers the horizon. */
    assert_int_equal(ts_hub_store_prune(f->s, NOW, keep, &removed), TS_OK);
    assert_true(ts_hub_store_horizon(f->s) == s2);
}

struct later {
    struct fx *f;
    const char *user, *store;
    int delay_ms;
};

static void *ingest_later(void *arg)
{
    struct later *l = arg;
    ts_sleep_ms(l->delay_ms);
    add_customer(l->f, l->user, "2000000000077", l->store, true, 1);
    return NULL;
}

/* Long-poll: a waiter wakes when its store's feed changes, not for another
 * store's change, times out otherwise, and is released at shutdown. */
static void test_wait_for_change(void **state)
{
    struct fx *f = *state;
    add_customer(f, "u1", "2000000000084", "S001", true, 1);
    bool more;
    uint64_t last;
    json_decref(page(f, "S001", 0, 100, &more, &last));
    assert_true(ts_hub_store_wait(f->s, "S001", 0, 5000)); /* already there: at once */

    int64_t t0 = ts_now_mono_ms();
    assert_false(ts_hub_store_wait(f->s, "S001", last, 150));
    int64_t dt = ts_now_mono_ms() - t0;
    assert_true(dt >= 140 && dt < 1500);

    pthread_t th;
    struct later other = {f, "u-other", "S002", 100};
    assert_int_equal(pthread_create(&th, NULL, ingest_later, &other), 0);
    assert_false(ts_hub_store_wait(f->s, "S001", last, 600));
    pthread_join(th, NULL);

    struct later mine = {f, "u-mine", "S001", 200};
    t0 = ts_now_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, ingest_later, &mine), 0);
    assert_true(ts_hub_store_wait(f->s, "S001", last, 10000));
    dt = ts_now_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(dt >= 150 && dt < 1000); /* woken by the commit, not by polling */

    json_decref(page(f, "S001", 0, 100, &more, &last));
    ts_hub_store_shutdown(f->s);
    t0 = ts_now_mono_ms();
    assert_false(ts_hub_store_wait(f->s, "S001", last, 10000));
    assert_true(ts_now_mono_ms() - t0 < 500);
}

#define KEY2_HEX "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b"

static char *key_under(const struct ts_tenant_key *k, enum ts_ident_kind kind, const char *raw,
                       char hex[TS_IDENT_KEY_HEX])
{
    char norm[64];
    assert_int_equal(ts_ident_normalize(raw, strlen(raw), norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(k, kind, norm, hex), TS_OK);
    return hex;
}

static bool found_by(struct ts_hub_store *s, const char *key)
{
    ts_buf out = {0};
    int rc = ts_hub_store_lookup(s, key, &out);
    ts_buf_free(&out);
    assert_true(rc == TS_OK || rc == TS_ERR_NOTFOUND);
    return rc == TS_OK;
}

/*
 * Key rotation in the documented steps, on a database file the hub reopens
 * with each new configuration: the second key is added (every customer
 * re-stamped with prev_keys), the current key switches (re-stamped again,
 * lookups by either key keep working), the old key is dropped.
 */
static void test_key_rotation_restamps(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_hub_rotate.XXXXXX", path[256], err[256];
    assert_non_null(mkdtemp(dir));
    test_hub_db_file(path, sizeof path, dir);
    struct ts_tenant_key k1, k2;
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &k1), TS_OK);
    assert_int_equal(ts_tenant_key_parse(KEY2_HEX, 2, &k2), TS_OK);
    char h1[TS_IDENT_KEY_HEX], h2[TS_IDENT_KEY_HEX];
    key_under(&k1, TS_IDENT_LOYALTY, "2000000000091", h1);
    key_under(&k2, TS_IDENT_LOYALTY, "2000000000091", h2);

    struct fx f = {.key = k1};
    size_t n = 99;
    bool more;
    uint64_t last, s0;
    assert_int_equal(ts_hub_store_open(path, &k1, 0, &f.s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f.s, NULL, &n), TS_OK);
    assert_int_equal(n, 0); /* nothing changed */
    add_customer(&f, "r1", "2000000000091", "S001", true, 1);
    add_customer(&f, "r2", "2000000000107", "S001", true, 1);
    json_decref(page(&f, "S001", 0, 100, &more, &s0));
    assert_true(found_by(f.s, h1));
    assert_false(found_by(f.s, h2));

    /* Step 1: both keys known, the old one still current. */
    assert_int_equal(ts_hub_store_set_keys(f.s, &k2, &n), TS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ts_hub_store_prev_kv(f.s), 2);
    json_t *items = page(&f, "S001", s0, 100, &more, &last);
    assert_int_equal(json_array_size(items), 2); /* both re-sent */
    json_t *r1 = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (strcmp(json_string_value(json_array_get(json_object_get(it, "keys"), 0)), h1) == 0)
            r1 = it;
    }
    assert_non_null(r1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r1, "prev_keys"), 0)), h2);
    json_decref(items);
    assert_true(found_by(f.s, h1));
    assert_true(found_by(f.s, h2));
    ts_buf out = {0};
    assert_int_equal(ts_hub_store_lookup(f.s, h2, &out), TS_OK);
    json_t *a = json_loads(out.data, 0, NULL);
    assert_int_equal(num(a, "kv"), 1);
    assert_int_equal(num(a, "prev_kv"), 2);
    json_decref(a);
    ts_buf_free(&out);
    assert_int_equal(ts_hub_store_set_keys(f.s, &k2, &n), TS_OK);
    assert_int_equal(n, 0); /* same pair: no re-stamp */
    ts_hub_store_close(f.s);

    /* Step 2: the hub switches its current key (restart with a new config). */
    f.key = k2;
    assert_int_equal(ts_hub_store_open(path, &k2, 0, &f.s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f.s, &k1, &n), TS_OK);
    assert_int_equal(n, 2);
    json_decref(page(&f, "S001", 0, 100, &more, &s0));
    items = page(&f, "S001", last, 100, &more, &last);
    assert_int_equal(json_array_size(items), 2);
    json_array_foreach(items, i, it)
    {
        if (strcmp(json_string_value(json_array_get(json_object_get(it, "keys"), 0)), h2) == 0)
            assert_string_equal(
                json_string_value(json_array_get(json_object_get(it, "prev_keys"), 0)), h1);
    }
    json_decref(items);
    assert_true(found_by(f.s, h1));
    assert_true(found_by(f.s, h2));
    /* A customer who arrives now gets keys under both versions too. */
    add_customer(&f, "r3", "2000000000114", "S001", true, 1);
    char n3a[TS_IDENT_KEY_HEX], n3b[TS_IDENT_KEY_HEX];
    assert_true(found_by(f.s, key_under(&k1, TS_IDENT_LOYALTY, "2000000000114", n3a)));
    assert_true(found_by(f.s, key_under(&k2, TS_IDENT_LOYALTY, "2000000000114", n3b)));
    ts_hub_store_close(f.s);

    /* Step 3: the old key is dropped. */
    assert_int_equal(ts_hub_store_open(path, &k2, 0, &f.s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f.s, NULL, &n), TS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ts_hub_store_prev_kv(f.s), 0);
    assert_true(found_by(f.s, h2));
    assert_false(found_by(f.s, h1));
    items = page(&f, "S001", 0, 100, &more, &last);
    json_array_foreach(items, i, it) assert_null(json_object_get(it, "prev_keys"));
    json_decref(items);
    ts_hub_store_close(f.s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_card_from_identify_views_cart),
        T(test_consent_false_hides_interests),
        T(test_cart_remove_and_quantities),
        T(test_feed_paging_and_restamp),
        T(test_store_scoping_and_moves),
        T(test_duplicate_message_ids),
        T(test_lookup_unknown),
        T(test_anonymous_browsing_merges_on_identify),
        T(test_decay_and_recent_count),
        T(test_interests_capped_at_eight),
        T(test_erase_customer),
        T(test_tombstones_pruned_raise_horizon),
        T(test_wait_for_change),
        cmocka_unit_test(test_key_rotation_restamps),
        cmocka_unit_test(test_file_store_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
