/*
 * The hub store tests' fixture (test_hub_store.c, test_hub_feed.c): an
 * in-memory SQLite database (or TS_TEST_PG's PostgreSQL) with a fixed clock,
 * and helpers to ingest Segment events and read cards, keys and lookups.
 */
#ifndef TS_TEST_HUB_STORE_FX_H
#define TS_TEST_HUB_STORE_FX_H

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

static inline int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256];
    assert_non_null(f);
    assert_int_equal(ts_tenant_key_parse(KEY_HEX, 1, &f->key), TS_OK);
    assert_int_equal(ts_hub_store_open(test_hub_db(), &f->key, 0, &f->s, err, sizeof err), TS_OK);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    ts_hub_store_close(f->s);
    free(f);
    return 0;
}

/* Ingests {"batch":[events]} at time now; returns the result. */
static inline struct ts_hub_ingest_result ingest_at(struct fx *f, int64_t now, const char *events)
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

static inline struct ts_hub_ingest_result ingest(struct fx *f, const char *events)
{
    return ingest_at(f, NOW, events);
}

/* Events like tests/blackbox/tslib.py customer_batch: identify, N views of
 * SKU-RUN-42, one view of SKU-HAT-1, one cart add of SKU-JKT-7. */
static inline void customer(ts_buf *out, const char *user, const char *loyalty, const char *store,
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

static inline void add_customer(struct fx *f, const char *user, const char *loyalty,
                                const char *store, bool consent, int views)
{
    ts_buf b = {0};
    customer(&b, user, loyalty, store, consent, views);
    ingest(f, b.data);
    ts_buf_free(&b);
}

static inline char *key_of(struct fx *f, enum ts_ident_kind kind, const char *raw)
{
    static char hex[TS_IDENT_KEY_HEX];
    char norm[64];
    assert_int_equal(ts_ident_normalize(raw, strlen(raw), norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(&f->key, kind, norm, hex), TS_OK);
    return hex;
}

/* The lookup answer for a loyalty number, parsed; NULL when unknown. */
static inline json_t *lookup(struct fx *f, enum ts_ident_kind kind, const char *raw)
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

static inline json_t *card_of(json_t *answer)
{
    return json_object_get(answer, "card");
}

static inline json_t *interest(json_t *card, const char *pid)
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

static inline const char *sig(json_t *it)
{
    return json_string_value(json_object_get(it, "signal"));
}

static inline long long num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static inline json_t *page(struct fx *f, const char *store, uint64_t since, int limit, bool *more,
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

#endif
