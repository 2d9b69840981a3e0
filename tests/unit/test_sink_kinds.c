/*
 * Consent, redeemed offers and returns at the Klaviyo and Data Cloud vendor
 * files (hub/sink_klaviyo.c, hub/sink_salesforce.c) called directly: what
 * each kind maps to, which endpoint build() picks, and that together()
 * never lets two endpoints share a request. The HTTP side runs against the
 * contract servers in tests/blackbox/test_sinks4.py.
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

static const char *const consent_text =
    "{\"type\":\"identify\",\"messageId\":\"c-1\",\"traits\":{\"personalization_consent\":false,"
    "\"email_consent\":false},\"context\":{\"tillside\":{\"store\":\"S001\",\"terminal\":\"T01\","
    "\"receipt\":\"consent:1\",\"associate\":\"A-17\"}}}";
static const char *const coupon_text =
    "{\"type\":\"track\",\"event\":\"Coupon Applied\",\"messageId\":\"coupon-c9-SPRING10\","
    "\"properties\":{\"coupon_id\":\"SPRING10\",\"coupon_name\":\"10 % off\",\"order_id\":\"R-9\"},"
    "\"context\":{\"tillside\":{\"store\":\"S001\",\"terminal\":\"T01\",\"cid\":\"c9\"}}}";
static const char *const refund_text =
    "{\"type\":\"track\",\"event\":\"Order Refunded\",\"messageId\":\"m-r\","
    "\"properties\":{\"order_id\":\"S001-T01-000123\",\"total\":19,\"currency\":\"EUR\","
    "\"products\":[{\"sku\":\"SKU-HAT-1\",\"name\":\"Hat\",\"price\":19,\"quantity\":1}]},"
    "\"context\":{\"tillside\":{\"store\":\"S001\",\"terminal\":\"T01\","
    "\"receipt\":\"return:R-1\"}}}";

struct fx {
    const struct ts_sink_vendor *v;
    struct ts_sink_conf conf;
    void *state;
    struct ts_sink_items items;
};

static void setup(struct fx *f, const char *type, const char *const *kv, size_t nkv, unsigned send)
{
    memset(f, 0, sizeof *f);
    f->v = ts_sink_vendor_find(type);
    assert_non_null(f->v);
    snprintf(f->conf.name, sizeof f->conf.name, "t");
    snprintf(f->conf.type, sizeof f->conf.type, "%s", type);
    f->conf.send = send;
    for (size_t i = 0; i < nkv; i++) {
        snprintf(f->conf.kv[i].key, sizeof f->conf.kv[i].key, "%s", kv[2 * i]);
        snprintf(f->conf.kv[i].value, sizeof f->conf.kv[i].value, "%s", kv[2 * i + 1]);
    }
    f->conf.nkv = nkv;
    char err[200];
    assert_int_equal(f->v->init(&f->conf, &f->state, err, sizeof err), TS_OK);
}

/* Maps text as kind (the forwarder sets each item's kind after map()). */
static void map(struct fx *f, const char *text, enum ts_sink_kind kind, const char *email)
{
    json_t *ev = json_loads(text, 0, NULL);
    assert_non_null(ev);
    struct ts_sink_event e = {.kind = kind,
                              .id = json_string_value(json_object_get(ev, "messageId")),
                              .event = ev,
                              .user_id = "u-ada",
                              .email = email,
                              .profile = "u-ada",
                              .at_ms = 1764700000123LL};
    char err[200];
    size_t first = f->items.n;
    assert_int_equal(f->v->map(f->state, &e, &f->items, err, sizeof err), TS_OK);
    for (size_t i = first; i < f->items.n; i++)
        f->items.v[i].kind = (int)kind;
    json_decref(ev);
}

static void teardown(struct fx *f)
{
    ts_sink_items_free(&f->items);
    if (f->v->fini)
        f->v->fini(f->state);
}

/* build() of items [i, i+n) -> its path; *body the parsed body. */
static const char *build(struct fx *f, size_t i, size_t n, json_t **body)
{
    static struct ts_sink_request req;
    const struct ts_sink_item *ptr[8];
    for (size_t k = 0; k < n; k++)
        ptr[k] = &f->items.v[i + k];
    ts_buf_free(&req.body);
    ts_buf_free(&req.headers);
    memset(&req, 0, sizeof req);
    char err[200];
    assert_int_equal(f->v->build(f->state, ptr, n, &req, err, sizeof err), TS_OK);
    *body = json_loadb(req.body.data, req.body.len, 0, NULL);
    assert_non_null(*body);
    return req.path;
}

static void klaviyo_consent_coupon_refund(void **unused)
{
    (void)unused;
    static const char *const kv[] = {"api_key", "pk", "list_id", "Y6nRLr"};
    struct fx f;
    setup(&f, "klaviyo", kv, 2, 0);
    /* Without a known e-mail address only the profile property can go. */
    map(&f, consent_text, TS_SINK_CONSENT, NULL);
    assert_int_equal(f.items.n, 1);
    map(&f, consent_text, TS_SINK_CONSENT, "ada@example.com");
    assert_int_equal(f.items.n, 3); /* profile property + e-mail unsubscribe */
    map(&f, coupon_text, TS_SINK_COUPON, NULL);
    map(&f, refund_text, TS_SINK_RETURN, NULL);
    assert_int_equal(f.items.n, 5);
    json_t *b;
    assert_string_equal(build(&f, 0, 1, &b), "/api/profile-import");
    json_t *pa = json_object_get(json_object_get(b, "data"), "attributes");
    assert_string_equal(json_string_value(json_object_get(pa, "external_id")), "u-ada");
    assert_true(json_is_false(
        json_object_get(json_object_get(pa, "properties"), "personalization_consent")));
    json_decref(b);
    assert_string_equal(build(&f, 2, 1, &b), "/api/profile-subscription-bulk-delete-jobs");
    json_t *d = json_object_get(b, "data");
    assert_string_equal(json_string_value(json_object_get(d, "type")),
                        "profile-subscription-bulk-delete-job");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(json_object_get(d, "relationships"), "list"), "data"),
            "id")),
        "Y6nRLr");
    json_t *prof = json_array_get(
        json_object_get(json_object_get(json_object_get(d, "attributes"), "profiles"), "data"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(prof, "attributes"), "email")),
        "ada@example.com");
    assert_non_null(strstr(f.items.v[2].json, "\"consent\":\"UNSUBSCRIBED\""));
    json_decref(b);
    assert_string_equal(build(&f, 3, 2, &b), "/api/event-bulk-create-jobs");
    json_decref(b);
    assert_non_null(strstr(f.items.v[3].json, "\"name\":\"Redeemed Coupon\""));
    assert_string_equal(f.items.v[3].dedup, "coupon-c9-SPRING10");
    /* The refund is keyed by the return, not the message. */
    assert_string_equal(f.items.v[4].dedup, "S001:return:R-1");
    assert_non_null(strstr(f.items.v[4].json, "\"unique_id\":\"S001:return:R-1\""));
    assert_non_null(strstr(f.items.v[4].json, "\"ReturnId\":\"R-1\""));
    /* One endpoint per request; a profile import holds one profile. */
    assert_false(f.v->together(f.state, &f.items.v[0], &f.items.v[1]));
    assert_false(f.v->together(f.state, &f.items.v[2], &f.items.v[3]));
    assert_false(f.v->together(f.state, &f.items.v[3], &f.items.v[2]));
    assert_true(f.v->together(f.state, &f.items.v[3], &f.items.v[4]));
    teardown(&f);
    /* A list id that is not one is refused at its key. */
    static const char *const bad[] = {"api_key", "pk", "list_id", "no such!"};
    struct ts_sink_conf c = {.name = "t", .type = "klaviyo", .nkv = 2};
    for (size_t i = 0; i < 2; i++) {
        snprintf(c.kv[i].key, sizeof c.kv[i].key, "%s", bad[2 * i]);
        snprintf(c.kv[i].value, sizeof c.kv[i].value, "%s", bad[2 * i + 1]);
    }
    void *st = NULL;
    char err[200];
    assert_int_equal(f.v->init(&c, &st, err, sizeof err), TS_ERR_INVAL);
    assert_non_null(strstr(err, "list_id:"));
}

static void datacloud_consent_coupon_objects(void **unused)
{
    (void)unused;
    static const char *const kv[] = {"login_url",      "https://acme.my.salesforce.com",
                                     "client_id",      "cid",
                                     "client_secret",  "csec",
                                     "source",         "tillside",
                                     "object",         "purchase_line",
                                     "consent_object", "till_consent",
                                     "coupon_object",  "coupon_redemption"};
    struct fx f;
    unsigned all = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON;
    setup(&f, "salesforce", kv, 7, all);
    assert_int_equal(f.v->default_kinds(&f.conf), all);
    map(&f, consent_text, TS_SINK_CONSENT, "ada@example.com");
    map(&f, coupon_text, TS_SINK_COUPON, NULL);
    map(&f, refund_text, TS_SINK_RETURN, NULL);
    assert_int_equal(f.items.n, 3);
    json_t *b;
    assert_string_equal(build(&f, 0, 1, &b), "/api/v1/ingest/sources/tillside/till_consent");
    json_t *r = json_array_get(json_object_get(b, "data"), 0);
    assert_int_equal(json_object_size(r), 10); /* every field of the schema */
    assert_string_equal(json_string_value(json_object_get(r, "consent_id")), "c-1");
    assert_string_equal(json_string_value(json_object_get(r, "personalization")), "withdrawn");
    assert_string_equal(json_string_value(json_object_get(r, "email_consent")), "withdrawn");
    assert_string_equal(json_string_value(json_object_get(r, "sms_consent")), "");
    assert_string_equal(json_string_value(json_object_get(r, "associate")), "A-17");
    assert_string_equal(json_string_value(json_object_get(r, "recorded_at")),
                        "2025-12-02T18:26:40.123Z");
    json_decref(b);
    assert_string_equal(build(&f, 1, 1, &b), "/api/v1/ingest/sources/tillside/coupon_redemption");
    r = json_array_get(json_object_get(b, "data"), 0);
    assert_int_equal(json_object_size(r), 9);
    assert_string_equal(json_string_value(json_object_get(r, "coupon_code")), "SPRING10");
    assert_string_equal(json_string_value(json_object_get(r, "order_id")), "R-9");
    json_decref(b);
    assert_string_equal(build(&f, 2, 1, &b), "/api/v1/ingest/sources/tillside/purchase_line");
    json_decref(b);
    assert_false(f.v->together(f.state, &f.items.v[0], &f.items.v[1]));
    assert_false(f.v->together(f.state, &f.items.v[2], &f.items.v[0]));
    assert_true(f.v->together(f.state, &f.items.v[2], &f.items.v[2]));
    teardown(&f);
    /* Without the objects: not in the default send, refused when asked for. */
    setup(&f, "salesforce", kv, 5, TS_SINK_PURCHASE);
    assert_int_equal(f.v->default_kinds(&f.conf), TS_SINK_PURCHASE | TS_SINK_RETURN);
    void *st = NULL;
    char err[200];
    f.conf.send = TS_SINK_PURCHASE | TS_SINK_CONSENT;
    assert_int_equal(f.v->init(&f.conf, &st, err, sizeof err), TS_ERR_INVAL);
    assert_non_null(strstr(err, "send: consent needs consent_object"));
    f.conf.send = TS_SINK_COUPON;
    assert_int_equal(f.v->init(&f.conf, &st, err, sizeof err), TS_ERR_INVAL);
    assert_non_null(strstr(err, "send: coupons needs coupon_object"));
    teardown(&f);
}

/* Bulk Unsubscribe Profiles takes 100 profiles: a batch of 150 opt-outs is
 * cut after the 100th, however often the forwarder asks again. */
static void klaviyo_unsubscribe_cut_at_100(void **unused)
{
    (void)unused;
    static const char *const kv[] = {"api_key", "pk"};
    struct fx f;
    setup(&f, "klaviyo", kv, 1, 0);
    for (int i = 0; i < 150; i++) {
        char text[400];
        snprintf(text, sizeof text,
                 "{\"type\":\"identify\",\"messageId\":\"c-%d\",\"traits\":"
                 "{\"email_consent\":false},\"context\":{\"tillside\":{\"store\":\"S001\"}}}",
                 i);
        map(&f, text, TS_SINK_CONSENT, "ada@example.com");
    }
    assert_int_equal(f.items.n, 150);
    for (int round = 0; round < 2; round++) {
        size_t used = 1;
        while (used < f.items.n && f.v->together(f.state, &f.items.v[0], &f.items.v[used]))
            used++;
        assert_int_equal(used, 100);
    }
    /* The next batch starts at the 101st. */
    size_t used = 101;
    while (used < f.items.n && f.v->together(f.state, &f.items.v[100], &f.items.v[used]))
        used++;
    assert_int_equal(used, 150);
    teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(klaviyo_consent_coupon_refund),
        cmocka_unit_test(datacloud_consent_coupon_objects),
        cmocka_unit_test(klaviyo_unsubscribe_cut_at_100),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
