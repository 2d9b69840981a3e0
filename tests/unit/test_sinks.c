/*
 * The sinks' pieces without a network (hub/sink*.c): [sink.NAME]
 * configuration and its errors, each vendor's mapping of a stored purchase,
 * Braze's per-item errors mapped back to the items sent, and rate headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "hub.h"

#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define BASE "[cdp]\nwrite_key = k\n[tenant]\nkey = " KEY_HEX "\n"

static struct ts_hub_config cfg;

static enum ts_err parse(const char *extra, char *err, size_t errsz)
{
    char conf[2048];
    snprintf(conf, sizeof conf, BASE "%s", extra);
    return ts_hub_config_parse("hub.conf", conf, &cfg, err, errsz);
}

static void test_config(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(parse("[sink.kl]\ntype = klaviyo\nurl = https://a.klaviyo.com/\n"
                           "api_key = pk\n[upstream]\nurl = https://api.segment.io\n"
                           "write_key = w\n",
                           err, sizeof err),
                     TS_OK);
    assert_int_equal(cfg.nsinks, 2);
    assert_string_equal(cfg.sinks[0].name, "upstream"); /* [upstream] is a segment sink */
    assert_string_equal(cfg.sinks[0].type, "segment");
    assert_string_equal(cfg.sinks[1].url, "https://a.klaviyo.com"); /* no trailing '/' */
    assert_false(cfg.sinks[1].anonymous);                           /* klaviyo's default */
    assert_int_equal(cfg.sinks[1].send,
                     TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON);
    assert_string_equal(ts_sink_conf_get(&cfg.sinks[1], "api_key", ""), "pk");
    assert_true(cfg.sinks[1].kv[0].secret);

    assert_int_equal(parse("[sink.x]\ntype = nosuch\nurl = https://x\n", err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[sink.x] type: expected one of segment"));
    assert_int_equal(parse("[sink.x]\ntype = braze\nurl = https://x\n", err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[sink.x] api_key: required"));
    /* Every vendor takes all four kinds now (Data Cloud's consent and coupons
     * need their objects: test_sink_kinds); an unknown kind is refused. */
    assert_int_equal(parse("[sink.x]\ntype = braze\nurl = https://x\napi_key = k\n"
                           "send = purchases, refunds\n",
                           err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "\"refunds\": expected purchases, returns, consent or coupons"));
    assert_int_equal(parse("[sink.x]\ntype = braze\nurl = https://x\napi_key = k\n"
                           "send = purchases, consent\n",
                           err, sizeof err),
                     TS_OK);
    assert_int_equal(
        parse("[sink.x]\ntype = segment\nurl = ftp://x\nwrite_key = k\n", err, sizeof err),
        TS_ERR_CONFIG);
    assert_int_equal(parse("[sink.x]\ntype = segment\nurl = https://x\nwrite_key = k\n"
                           "identity = phone\n",
                           err, sizeof err),
                     TS_ERR_CONFIG);
    assert_int_equal(parse("[sink.upstream]\ntype = segment\nurl = https://x\nwrite_key = k\n"
                           "[upstream]\nurl = https://y\nwrite_key = w\n",
                           err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "a second sink named upstream"));
    assert_int_equal(parse("[hub]\nsecrets_file = /nonexistent/secrets\n", err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "secrets_file"));
}

static const char *const EVENT =
    "{\"type\":\"track\",\"event\":\"Order Completed\",\"messageId\":\"m-1\","
    "\"anonymousId\":\"S001:T01\",\"properties\":{\"order_id\":\"R-1\",\"total\":30,"
    "\"currency\":\"EUR\",\"products\":[{\"product_id\":\"P1\",\"sku\":\"S1\",\"name\":\"Hat\","
    "\"price\":10,\"quantity\":1},{\"product_id\":\"P2\",\"name\":\"Scarf\",\"price\":10,"
    "\"quantity\":2}]},\"context\":{\"tillside\":{\"store\":\"S001\",\"terminal\":\"T01\"}}}";

static void map_with(const char *type, const char *extra, struct ts_sink_items *out)
{
    char err[256], conf[512];
    snprintf(conf, sizeof conf, "[sink.x]\ntype = %s\nurl = https://x\n%s", type, extra);
    assert_int_equal(parse(conf, err, sizeof err), TS_OK);
    const struct ts_sink_vendor *v = ts_sink_vendor_find(type);
    void *st = NULL;
    assert_int_equal(v->init(&cfg.sinks[0], &st, err, sizeof err), TS_OK);
    json_t *ev = json_loads(EVENT, 0, NULL);
    struct ts_sink_event e = {.kind = TS_SINK_PURCHASE,
                              .id = "m-1",
                              .event = ev,
                              .user_id = "u-ada",
                              .profile = "u-ada",
                              .at_ms = 1700000000000};
    assert_int_equal(v->map(st, &e, out, err, sizeof err), TS_OK);
    json_decref(ev);
    if (v->fini)
        v->fini(st);
}

static void test_mappings(void **state)
{
    (void)state;
    struct ts_sink_items it = {0};
    map_with("klaviyo", "api_key = k\n", &it);
    assert_int_equal(it.n, 3); /* Placed Order + one Ordered Product per line */
    assert_string_equal(it.v[0].dedup, "m-1");
    assert_string_equal(it.v[2].dedup, "m-1:1");
    assert_non_null(strstr(it.v[0].json, "\"name\":\"Placed Order\""));
    assert_non_null(strstr(it.v[0].json, "\"external_id\":\"u-ada\""));
    assert_non_null(strstr(it.v[2].json, "\"value\":20"));
    ts_sink_items_free(&it);
    map_with("braze", "api_key = k\n", &it);
    assert_int_equal(it.n, 1);
    assert_string_equal(it.v[0].dedup, ""); /* Braze has no dedup key */
    assert_non_null(strstr(it.v[0].json, "\"name\":\"ecommerce.order_placed\""));
    assert_non_null(strstr(it.v[0].json, "\"variant_id\":\"S1\""));
    ts_sink_items_free(&it);
    map_with("braze", "api_key = k\npurchases = legacy\n", &it);
    assert_int_equal(it.n, 2);
    assert_non_null(strstr(it.v[1].json, "\"quantity\":2"));
    ts_sink_items_free(&it);
    map_with("segment", "write_key = k\n", &it);
    assert_int_equal(it.n, 1);
    assert_string_equal(it.v[0].dedup, "m-1");
    assert_non_null(strstr(it.v[0].json, "\"userId\":\"u-ada\""));
    ts_sink_items_free(&it);
}

static const char *hdr(const struct ts_sink_answer *a, const char *name)
{
    const char *const *h = a->ctx;
    for (; h[0]; h += 2)
        if (strcasecmp(h[0], name) == 0)
            return h[1];
    return NULL;
}

static void test_braze_errors_and_rate(void **state)
{
    (void)state;
    const struct ts_sink_vendor *v = ts_sink_vendor_find("braze");
    struct ts_sink_item iv[3] = {{.json = "{\"name\":\"e0\"}"},
                                 {.json = "{\"product_id\":\"p0\"}"},
                                 {.json = "{\"name\":\"e1\"}"}};
    const struct ts_sink_item *items[3] = {&iv[0], &iv[1], &iv[2]};
    for (int i = 0; i < 3; i++)
        iv[i].len = strlen(iv[i].json);
    /* the second event (index 1 of "events") and the only purchase refused */
    const char *body = "{\"message\":\"success\",\"errors\":[{\"type\":\"bad\",\"input_array\":"
                       "\"events\",\"index\":1},{\"type\":\"worse\",\"input_array\":\"purchases\","
                       "\"index\":0}]}";
    const char *const hs[] = {"X-RateLimit-Remaining",
                              "0",
                              "X-RateLimit-Reset",
                              "4000000000",
                              "X-RateLimit-Limit",
                              "3000",
                              NULL};
    struct ts_sink_answer a = {
        .status = 201, .body = body, .len = strlen(body), .header = hdr, .ctx = hs};
    struct ts_sink_result r[3];
    memset(r, 0, sizeof r);
    assert_int_equal(v->parse(NULL, &a, items, 3, r), TS_SINK_ITEMS);
    assert_int_equal(r[0].v, TS_SINK_OK);
    assert_int_equal(r[1].v, TS_SINK_DEAD);
    assert_int_equal(r[2].v, TS_SINK_DEAD);
    assert_non_null(strstr(r[2].reason, "bad"));
    struct ts_sink_rate_hint h = {-1, -1, -1, -1};
    v->rate(NULL, &a, &h);
    assert_int_equal(h.limit, 3000);
    assert_int_equal(h.remaining, 0);
    assert_true(h.reset_ms > 0); /* a Unix time turned into the wait */
    a.status = 503;
    assert_int_equal(v->parse(NULL, &a, items, 3, r), TS_SINK_RETRY);
    a.status = 400;
    a.body = "{}";
    a.len = 2;
    assert_int_equal(v->parse(NULL, &a, items, 3, r), TS_SINK_SPLIT);
    assert_int_equal(v->parse(NULL, &a, items, 1, r), TS_SINK_DEAD);
}

int main(void)
{
    ts_log_set_level(TS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_mappings),
        cmocka_unit_test(test_braze_errors_and_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
