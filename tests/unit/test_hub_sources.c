/* Unit tests for the inbound sources' shared plumbing (hub/source*.c): the
 * [source.NAME] configuration, HMAC verification against the RFC test
 * vectors, times as vendors send them, the shared vocabulary, and an
 * adapter's payload through ts_src_batch into segment.c's events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "source_int.h"

static const char BASE[] = "[cdp]\nwrite_key = k\n[tenant]\nname = acme\nkey = "
                           "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n";

static int conf(struct ts_hub_config *c, const char *extra, char *err, size_t errsz)
{
    char text[4096];
    snprintf(text, sizeof text, "%s%s", BASE, extra);
    return ts_hub_config_parse("hub.conf", text, c, err, errsz);
}

static void test_config(void **state)
{
    (void)state;
    static struct ts_hub_config c;
    char err[256] = "";
    assert_int_equal(conf(&c,
                          "[source.kl]\ntype = klaviyo_webhook\nsecret = 0123456789abcdef\n"
                          "[source.rs]\ntype = rudderstack_webhook\nsecret = 0123456789abcdef\n"
                          "[source.br]\ntype = bloomreach_webhook\nsecret = 0123456789abcdef\n"
                          "[source.sf]\ntype = salesforce_data_action\nsecret = 0123456789abcdef\n"
                          "[source.seg]\ntype = segment_webhook\nsecret = 0123456789abcdef\n"
                          "replay_window_s = 60\n",
                          err, sizeof err),
                     TS_OK);
    assert_int_equal(c.nsources, 5);
    assert_string_equal(c.sources[0].name, "kl");
    assert_int_equal(c.sources[0].type, TS_SRC_KLAVIYO);
    assert_int_equal(c.sources[0].window_s, 300); /* the vendor's default */
    assert_string_equal(c.sources[1].header, "X-Tillside-Secret");
    assert_string_equal(c.sources[2].user, "tillside");
    assert_int_equal(c.sources[3].window_s, 86400);
    assert_int_equal(c.sources[4].window_s, 60);
    assert_string_equal(ts_hub_source_type_name(TS_SRC_BRAZE), "braze_currents");

    assert_int_equal(
        conf(&c, "[source.x]\ntype = braze_currents\nsecret = short\n", err, sizeof err),
        TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[source.x] secret"));
    assert_null(strstr(err, "short")); /* the secret is not repeated */
    assert_int_equal(
        conf(&c, "[source.x]\ntype = mailchimp\nsecret = 0123456789abcdef\n", err, sizeof err),
        TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[source.x] type"));
    assert_int_equal(conf(&c, "[source.a b]\ntype = braze_currents\nsecret = 0123456789abcdef\n",
                          err, sizeof err),
                     TS_ERR_CONFIG);
    assert_int_equal(conf(&c, "", err, sizeof err), TS_OK);
    assert_int_equal(c.nsources, 0);
}

/* RFC 2202 and RFC 4231 test case 2: key "Jefe". */
static void test_hmac(void **state)
{
    (void)state;
    static const char msg[] = "what do ya want for nothing?";
    struct ts_hub_source_conf sc = {.secret = "Jefe"};
    struct ts_httpd_req req = {0};
    struct ts_src_ctx c = {.conf = &sc, .req = &req};
    const char *what = "what do ya", *rest = " want for nothing?";
    assert_true(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA1, msg, strlen(msg), NULL, 0,
                               "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", TS_SRC_HEX));
    assert_true(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA256, what, strlen(what), rest, strlen(rest),
                               " 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 ",
                               TS_SRC_HEX));
    assert_true(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA256, msg, strlen(msg), NULL, 0,
                               "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=", TS_SRC_B64));
    /* one digit off, too short, wrong encoding, no signature, wrong key */
    assert_false(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA1, msg, strlen(msg), NULL, 0,
                                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c78", TS_SRC_HEX));
    assert_false(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA1, msg, strlen(msg), NULL, 0,
                                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c", TS_SRC_HEX));
    assert_false(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA256, msg, strlen(msg), NULL, 0,
                                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                                TS_SRC_B64));
    assert_false(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA1, msg, strlen(msg), NULL, 0, NULL, TS_SRC_HEX));
    sc.secret[0] = 'j';
    assert_false(ts_src_hmac_ok(&c, MBEDTLS_MD_SHA1, msg, strlen(msg), NULL, 0,
                                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", TS_SRC_HEX));
    assert_true(ts_src_same("abc", 3, "abc"));
    assert_false(ts_src_same("abc", 3, "abd"));
    assert_false(ts_src_same("ab", 2, "abc"));
    assert_false(ts_src_same("", 0, "")); /* an empty secret never matches */
}

static void test_time_and_window(void **state)
{
    (void)state;
    int64_t ms;
    json_t *v = json_integer(1780000000);
    assert_true(ts_src_time(v, &ms));
    assert_int_equal(ms, 1780000000000LL);
    json_decref(v);
    v = json_integer(1780000000123LL);
    assert_true(ts_src_time(v, &ms));
    assert_int_equal(ms, 1780000000123LL);
    json_decref(v);
    v = json_string("2026-05-28T20:26:40.000Z");
    assert_true(ts_src_time(v, &ms));
    assert_int_equal(ms, 1780000000000LL);
    json_decref(v);
    v = json_string("1780000000.5");
    assert_true(ts_src_time(v, &ms));
    assert_int_equal(ms, 1780000000500LL);
    json_decref(v);
    v = json_string("yesterday");
    assert_false(ts_src_time(v, &ms));
    json_decref(v);

    struct ts_hub_source_conf sc = {.window_s = 300};
    struct ts_src_ctx c = {.conf = &sc, .now_ms = 1780000000000LL};
    assert_int_equal(ts_src_window(&c, c.now_ms - 299000), TS_OK);
    assert_int_equal(ts_src_window(&c, c.now_ms + 299000), TS_OK);
    assert_int_equal(ts_src_window(&c, c.now_ms - 301000), TS_ERR_GONE);
    assert_int_equal(ts_src_window(&c, c.now_ms + 301000), TS_ERR_GONE);
    sc.window_s = 0;
    assert_int_equal(ts_src_window(&c, 0), TS_OK);
}

static void test_vocab(void **state)
{
    (void)state;
    assert_string_equal(ts_src_vocab("Viewed Product"), "Product Viewed");
    assert_string_equal(ts_src_vocab("added_to_cart"), "Product Added");
    assert_string_equal(ts_src_vocab("Placed Order"), "Order Completed");
    assert_string_equal(ts_src_vocab("view_item"), "Product Viewed");
    assert_string_equal(ts_src_vocab("removeFromWishlist"), "Product Removed from Wishlist");
    assert_null(ts_src_vocab("email_delivered"));
    assert_null(ts_src_vocab(""));
}

/* body through the adapter of type into segment.c's events. */
static int batch(int type, const char *body, struct ts_seg_batch **b, size_t *rejected)
{
    struct ts_hub_source_conf sc = {.name = "s", .type = type, .secret = "0123456789abcdef"};
    struct ts_httpd_req req = {.body = body, .body_len = strlen(body)};
    struct ts_src_ctx c = {
        .conf = &sc, .req = &req, .now_ms = 1780000000000LL, .out = json_array()};
    char err[300];
    size_t n;
    int rc = ts_src_batch(&c, ts_src_vendor_of(type), b, &n, err, sizeof err);
    if (rejected)
        *rejected = c.rejected;
    json_decref(c.out);
    json_decref(c.errors);
    return rc;
}

static void test_braze_purchase(void **state)
{
    (void)state;
    struct ts_seg_batch *b = NULL;
    assert_int_equal(
        batch(TS_SRC_BRAZE,
              "{\"events\": [{\"event_type\": \"users.behaviors.Purchase\", \"id\": \"p-1\","
              " \"time\": 1779990000, \"user\": {\"external_user_id\": \"u1\"},"
              " \"properties\": {\"product_id\": \"SKU-1\", \"price\": 12.5, \"currency\": \"EUR\","
              " \"purchase_properties\": {\"order_id\": \"O-9\"}}},"
              " {\"event_type\": \"users.messages.email.Open\", \"id\": \"x\", \"user\": {}}]}",
              &b, NULL),
        TS_OK);
    assert_int_equal(b->n, 1); /* the email open is counted, not passed on */
    assert_int_equal(b->ev[0].kind, TS_SEG_ORDER);
    assert_string_equal(b->ev[0].user_id, "u1");
    assert_string_equal(b->ev[0].message_id, "s:p-1");
    assert_string_equal(b->ev[0].order_id, "O-9");
    assert_int_equal(b->ev[0].nproducts, 1);
    assert_string_equal(b->ev[0].products[0].product_id, "SKU-1");
    assert_int_equal(b->ev[0].at_ms, 1779990000000LL);
    ts_seg_batch_free(b);
    /* not Braze's envelope: a 400 */
    assert_int_equal(batch(TS_SRC_BRAZE, "[1]", &b, NULL), TS_ERR_INVAL);
    assert_null(b);
}

/* Bloomreach: the bad record is dropped and counted, the good one kept. */
static void test_bloomreach_lenient(void **state)
{
    (void)state;
    struct ts_seg_batch *b = NULL;
    size_t rejected = 0;
    assert_int_equal(
        batch(
            TS_SRC_BLOOMREACH,
            "{\"events\": [{\"event_id\": \"e1\", \"type\": \"view_item\","
            " \"customer_ids\": {\"registered\": \"u1\"}, \"properties\": {\"product_id\": \"P\"}},"
            " {\"event_id\": \"e2\", \"type\": \"view_item\", \"customer_ids\": {},"
            " \"properties\": {\"product_id\": \"P\"}}, 7]}",
            &b, &rejected),
        TS_OK);
    assert_int_equal(rejected, 2);
    assert_int_equal(b->n, 1);
    assert_int_equal(b->ev[0].kind, TS_SEG_VIEWED);
    ts_seg_batch_free(b);
}

int main(void)
{
    ts_log_set_level(TS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),          cmocka_unit_test(test_hmac),
        cmocka_unit_test(test_time_and_window), cmocka_unit_test(test_vocab),
        cmocka_unit_test(test_braze_purchase),  cmocka_unit_test(test_bloomreach_lenient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
