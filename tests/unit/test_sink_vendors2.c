/*
 * The Bloomreach, Data Cloud and Iterable vendor files (hub/sink_*.c)
 * called directly: a stored till purchase mapped to the vendor's items,
 * the request built from them, and the vendor's answers read back
 * (per-command results, whole-batch refusals, 401, 429). The HTTP side,
 * auth included, runs against the contract servers in
 * tests/blackbox/test_sinks2.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka after the headers it needs */
#include <cmocka.h>

#include "sink.h"

#include <jansson.h>
#include <string.h>

static const char *const ev_text =
    "{\"type\":\"track\",\"event\":\"Order Completed\",\"messageId\":\"m-1\","
    "\"properties\":{\"order_id\":\"S001-T01-000123\",\"total\":59.8,\"currency\":\"EUR\","
    "\"products\":[{\"product_id\":\"SKU-JKT-7\",\"sku\":\"SKU-JKT-7\",\"name\":\"Jacket\","
    "\"price\":49.9,\"quantity\":1},{\"sku\":\"SKU-SOCK\",\"price\":\"4.95\",\"quantity\":2}]},"
    "\"context\":{\"tillside\":{\"store\":\"S001\",\"terminal\":\"T01\"}}}";

struct fx {
    const struct ts_sink_vendor *v;
    struct ts_sink_conf conf;
    void *state;
    json_t *ev;
    struct ts_sink_event e;
    struct ts_sink_items items;
};

static void setup(struct fx *f, const char *type, const char *const *kv, size_t nkv)
{
    memset(f, 0, sizeof *f);
    f->v = ts_sink_vendor_find(type);
    assert_non_null(f->v);
    snprintf(f->conf.name, sizeof f->conf.name, "t");
    snprintf(f->conf.type, sizeof f->conf.type, "%s", type);
    for (size_t i = 0; i < nkv; i++) {
        snprintf(f->conf.kv[i].key, sizeof f->conf.kv[i].key, "%s", kv[2 * i]);
        snprintf(f->conf.kv[i].value, sizeof f->conf.kv[i].value, "%s", kv[2 * i + 1]);
    }
    f->conf.nkv = nkv;
    char err[200];
    assert_int_equal(f->v->init(&f->conf, &f->state, err, sizeof err), TS_OK);
    f->ev = json_loads(ev_text, 0, NULL);
    assert_non_null(f->ev);
    f->e = (struct ts_sink_event){.kind = TS_SINK_PURCHASE,
                                  .id = "m-1",
                                  .event = f->ev,
                                  .user_id = "u-ada",
                                  .email = "ada@example.com",
                                  .profile = "u-ada",
                                  .at_ms = 1764700000123LL,
                                  .now_ms = 1764700001000LL};
}

static void teardown(struct fx *f)
{
    ts_sink_items_free(&f->items);
    if (f->v->fini)
        f->v->fini(f->state);
    json_decref(f->ev);
}

static json_t *built(struct fx *f, size_t n, struct ts_sink_request *req)
{
    const struct ts_sink_item *ptr[16];
    for (size_t i = 0; i < n; i++)
        ptr[i] = &f->items.v[i];
    memset(req, 0, sizeof *req);
    char err[200];
    assert_int_equal(f->v->build(f->state, ptr, n, req, err, sizeof err), TS_OK);
    json_t *j = json_loadb(req->body.data, req->body.len, 0, NULL);
    assert_non_null(j);
    return j;
}

static const struct ts_sink_item *const *ptrs(struct fx *f)
{
    static const struct ts_sink_item *p[16];
    for (size_t i = 0; i < f->items.n && i < 16; i++)
        p[i] = &f->items.v[i];
    return p;
}

static const char *no_header(const struct ts_sink_answer *a, const char *name)
{
    (void)a, (void)name;
    return NULL;
}

static struct ts_sink_answer answer(int status, const char *body)
{
    return (struct ts_sink_answer){status, body, strlen(body), no_header, NULL};
}

static void bloomreach_purchase_and_items(void **unused)
{
    (void)unused;
    static const char *const kv[] = {"project_token", "0a1b-2c3d",  "key_id",
                                     "kid",           "key_secret", "ksec"};
    struct fx f;
    setup(&f, "bloomreach", kv, 3);
    char err[200];
    assert_int_equal(f.v->map(f.state, &f.e, &f.items, err, sizeof err), TS_OK);
    assert_int_equal(f.items.n, 3); /* purchase + one purchase_item per line */
    struct ts_sink_request req;
    json_t *b = built(&f, 3, &req);
    assert_string_equal(req.path, "/track/v2/projects/0a1b-2c3d/batch");
    json_t *c = json_object_get(b, "commands");
    json_t *p = json_object_get(json_object_get(json_array_get(c, 0), "data"), "properties");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(json_array_get(c, 0), "data"), "customer_ids"),
            "registered")),
        "u-ada");
    assert_string_equal(json_string_value(json_object_get(p, "purchase_id")), "S001-T01-000123");
    assert_true(json_number_value(json_object_get(p, "total_price")) == 59.8);
    json_t *i2 = json_object_get(json_object_get(json_array_get(c, 2), "data"), "properties");
    assert_string_equal(json_string_value(json_object_get(i2, "product_id")), "SKU-SOCK");
    assert_true(json_number_value(json_object_get(i2, "total_price")) == 9.9);
    json_decref(b);
    ts_buf_free(&req.body);
    ts_buf_free(&req.headers);

    struct ts_sink_auth au = {0};
    assert_int_equal(f.v->auth(f.state, &f.conf, NULL, 0, &au, err, sizeof err), TS_OK);
    assert_string_equal(au.headers, "Authorization: Basic a2lkOmtzZWM=\r\n");

    /* Per-command status: the second command failed for good, the third
     * has no result (retried). */
    struct ts_sink_result r[3];
    struct ts_sink_answer a = answer(200, "{\"success\":true,\"results\":[{\"success\":true},"
                                          "{\"success\":false,\"errors\":[\"value too long\"]}]}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 3, r), TS_SINK_ITEMS);
    assert_int_equal(r[0].v, TS_SINK_OK);
    assert_int_equal(r[1].v, TS_SINK_DEAD);
    assert_non_null(strstr(r[1].reason, "value too long"));
    assert_int_equal(r[2].v, TS_SINK_RETRY);
    a = answer(400, "{\"success\":false,\"message\":\"Invalid JSON\"}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 3, r), TS_SINK_SPLIT);
    a = answer(200, "{\"success\":false}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 1, r), TS_SINK_DEAD);
    a = answer(429, "");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 3, r), TS_SINK_RETRY);
    a = answer(403, "{\"success\":false}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 3, r), TS_SINK_RETRY);
    /* An anonymous purchase cannot go: Bloomreach needs a customer id. */
    f.e.profile = NULL;
    assert_int_equal(f.v->map(f.state, &f.e, &f.items, err, sizeof err), TS_ERR_INVAL);
    teardown(&f);
}

static void salesforce_records(void **unused)
{
    (void)unused;
    static const char *const kv[] = {"login_url",     "https://acme.my.salesforce.com",
                                     "client_id",     "cid",
                                     "client_secret", "csec",
                                     "source",        "tillside",
                                     "object",        "purchase_line"};
    struct fx f;
    setup(&f, "salesforce", kv, 5);
    char err[200];
    f.e.user_id = NULL, f.e.email = NULL, f.e.profile = NULL; /* anonymous: still a record */
    assert_int_equal(f.v->map(f.state, &f.e, &f.items, err, sizeof err), TS_OK);
    assert_int_equal(f.items.n, 2); /* one record per line */
    assert_string_equal(f.items.v[1].dedup, "m-1:2");
    struct ts_sink_request req;
    json_t *b = built(&f, 2, &req);
    assert_string_equal(req.path, "/api/v1/ingest/sources/tillside/purchase_line");
    json_t *r = json_array_get(json_object_get(b, "data"), 1);
    assert_string_equal(json_string_value(json_object_get(r, "line_id")), "m-1:2");
    assert_string_equal(json_string_value(json_object_get(r, "customer_id")), "");
    assert_string_equal(json_string_value(json_object_get(r, "purchased_at")),
                        "2025-12-02T18:26:40.123Z");
    assert_true(json_number_value(json_object_get(r, "line_total")) == 9.9);
    assert_int_equal(json_object_size(r), 17); /* every field of the schema, blank or not */
    assert_string_equal(json_string_value(json_object_get(r, "event_type")), "purchase");
    json_decref(b);
    ts_buf_free(&req.body);
    ts_buf_free(&req.headers);
    struct ts_sink_result res[2];
    struct ts_sink_answer a = answer(202, "{\"accepted\":true}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 2, res), TS_SINK_OK);
    a = answer(401, "[]");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 2, res), TS_SINK_AUTH);
    a = answer(400, "[{\"errorCode\":\"INVALID_INPUT\"}]");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 2, res), TS_SINK_SPLIT);
    teardown(&f);
}

static void iterable_track_purchase(void **unused)
{
    (void)unused;
    static const char *const kv[] = {"api_key", "it-key"};
    struct fx f;
    setup(&f, "iterable", kv, 1);
    char err[200];
    assert_int_equal(f.v->map(f.state, &f.e, &f.items, err, sizeof err), TS_OK);
    assert_int_equal(f.items.n, 1);
    assert_string_equal(f.items.v[0].dedup, "m-1");
    struct ts_sink_request req;
    json_t *b = built(&f, 1, &req);
    assert_string_equal(req.path, "/api/commerce/trackPurchase");
    assert_string_equal(json_string_value(json_object_get(b, "id")), "m-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(b, "user"), "userId")),
                        "u-ada");
    json_t *it = json_array_get(json_object_get(b, "items"), 1);
    assert_string_equal(json_string_value(json_object_get(it, "id")), "SKU-SOCK");
    assert_string_equal(json_string_value(json_object_get(it, "name")), "SKU-SOCK");
    assert_int_equal(json_integer_value(json_object_get(it, "quantity")), 2);
    assert_int_equal(json_integer_value(json_object_get(b, "createdAt")), 1764700000);
    json_decref(b);
    ts_buf_free(&req.body);
    ts_buf_free(&req.headers);
    struct ts_sink_auth au = {0};
    assert_int_equal(f.v->auth(f.state, &f.conf, NULL, 0, &au, err, sizeof err), TS_OK);
    assert_string_equal(au.headers, "Api-Key: it-key\r\n");
    struct ts_sink_result r[1];
    struct ts_sink_answer a = answer(200, "{\"msg\":\"\",\"code\":\"Success\"}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 1, r), TS_SINK_OK);
    a = answer(400, "{\"code\":\"InvalidEmailAddressError\"}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 1, r), TS_SINK_DEAD);
    assert_non_null(strstr(r[0].reason, "InvalidEmailAddressError"));
    a = answer(429, "{}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 1, r), TS_SINK_RETRY);
    /* A key without the permission: retried, never a dead letter. */
    a = answer(403, "{\"code\":\"Forbidden\"}");
    assert_int_equal(f.v->parse(f.state, &a, ptrs(&f), 1, r), TS_SINK_RETRY);
    /* A line without a readable price is refused before any request. */
    json_object_set_new(
        json_array_get(json_object_get(json_object_get(f.ev, "properties"), "products"), 0),
        "price", json_string("12,90"));
    assert_int_equal(f.v->map(f.state, &f.e, &f.items, err, sizeof err), TS_ERR_INVAL);
    assert_non_null(strstr(err, "price"));
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bloomreach_purchase_and_items),
        cmocka_unit_test(salesforce_records),
        cmocka_unit_test(iterable_track_purchase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
