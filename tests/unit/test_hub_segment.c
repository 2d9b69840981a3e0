/* Unit tests for the hub's Segment batch parser and its configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"

#define NOW 1780000000000LL /* 2026-05-28T... */

static int parse(const char *body, struct ts_seg_batch **b, char *err, size_t errsz)
{
    return ts_seg_parse(body, strlen(body), NOW, b, err, errsz);
}

static void test_parses_identify_and_track(void **state)
{
    (void)state;
    const char *body =
        "{\"batch\":["
        "{\"type\":\"identify\",\"userId\":\"u1\",\"messageId\":\"m1\","
        " \"timestamp\":\"2026-05-01T10:00:00.250Z\",\"traits\":{\"firstName\":\"Ada\","
        " \"lastName\":\"Lovelace\",\"loyalty_ids\":[\"2000-0000 00015\",4012345678901],"
        " \"tier\":\"gold\",\"points\":\"1200\",\"home_store\":\"S001\","
        " \"consent\":{\"personalization\":false}}},"
        "{\"type\":\"track\",\"event\":\"Product Added\",\"anonymousId\":\"a1\","
        " \"originalTimestamp\":\"2026-05-01T12:00:00+02:00\","
        " \"properties\":{\"sku\":\"SKU-1\",\"name\":\"Jacket\",\"price\":\"129.90\","
        " \"quantity\":2}},"
        "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":42,"
        " \"properties\":{\"order_id\":\"W-1\",\"revenue\":59.9,\"currency\":\"EUR\","
        " \"products\":[{\"product_id\":\"A\"},{\"name\":\"no id\"},{\"id\":7}]}},"
        "{\"type\":\"page\",\"userId\":\"u1\"},"
        "{\"type\":\"track\",\"event\":\"Checkout Started\",\"userId\":\"u1\"}"
        "]}";
    struct ts_seg_batch *b = NULL;
    char err[256];
    assert_int_equal(parse(body, &b, err, sizeof err), TS_OK);
    assert_int_equal(b->n, 5);

    const struct ts_seg_event *e = &b->ev[0];
    assert_int_equal(e->kind, TS_SEG_IDENTIFY);
    assert_string_equal(e->user_id, "u1");
    assert_null(e->anonymous_id);
    assert_string_equal(e->message_id, "m1");
    assert_true(e->at_ms % 1000 == 250);
    assert_null(e->name);
    assert_string_equal(e->first_name, "Ada");
    assert_string_equal(e->last_name, "Lovelace");
    assert_int_equal(e->nloyalty, 2);
    assert_string_equal(e->loyalty[0], "2000000000015"); /* normalized */
    assert_string_equal(e->loyalty[1], "4012345678901"); /* from a JSON integer */
    assert_true(e->has_points);
    assert_int_equal(e->points, 1200);
    assert_int_equal(e->consent, 0);
    assert_string_equal(e->home_store, "S001");

    e = &b->ev[1];
    assert_int_equal(e->kind, TS_SEG_CART_ADD);
    assert_string_equal(e->anonymous_id, "a1");
    assert_null(e->message_id);
    int64_t want;
    assert_int_equal(ts_iso8601_parse("2026-05-01T10:00:00Z", &want), TS_OK);
    assert_true(e->at_ms == want); /* the +02:00 offset applied */
    assert_int_equal(e->nproducts, 1);
    assert_string_equal(e->products[0].product_id, "SKU-1");
    assert_true(e->products[0].has_price && e->products[0].price > 129.89 &&
                e->products[0].price < 129.91);
    assert_int_equal(e->products[0].quantity, 2);

    e = &b->ev[2];
    assert_int_equal(e->kind, TS_SEG_ORDER);
    assert_string_equal(e->user_id, "42");
    assert_true(e->at_ms == NOW); /* no timestamp: receive time */
    assert_string_equal(e->order_id, "W-1");
    assert_true(e->has_total && e->total > 59.8 && e->total < 60.0);
    assert_int_equal(e->nproducts, 2); /* the product without an id is skipped */
    assert_string_equal(e->products[1].product_id, "7");

    assert_int_equal(b->ev[3].kind, TS_SEG_IGNORE);
    assert_int_equal(b->ev[4].kind, TS_SEG_IGNORE);
    ts_seg_batch_free(b);
}

static void expect_invalid(const char *body, const char *needle)
{
    struct ts_seg_batch *b = NULL;
    char err[256] = "";
    assert_int_equal(parse(body, &b, err, sizeof err), TS_ERR_INVAL);
    assert_null(b);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_rejects_bad_envelopes(void **state)
{
    (void)state;
    expect_invalid("{\"batch\": [ {\"type\": \"identify\", ", "malformed JSON");
    expect_invalid("{\"events\": []}", "\"batch\" array");
    expect_invalid("[1,2]", "\"batch\" array");
    expect_invalid("{\"batch\": {}}", "\"batch\" array");
    expect_invalid("{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\"},"
                   "{\"userId\":\"u1\",\"traits\":{}}]}",
                   "batch[1]: missing type");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"Product Viewed\"}]}",
                   "batch[0]: event has neither userId nor anonymousId");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":\"\"}]}", "neither");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":[1]}]}",
                   "userId must be");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"userId\":\"u\"}]}", "without an event");
    expect_invalid("{\"batch\":[{\"type\":\"fly\",\"userId\":\"u\"}]}", "unknown type");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":\"u\","
                   "\"timestamp\":\"yesterday\"}]}",
                   "batch[0]: bad timestamp");
    /* A truncated offset must not be read past its end. */
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":\"u\","
                   "\"timestamp\":\"2026-05-01T10:00:00+1:2\"}]}",
                   "bad timestamp");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":\"u\","
                   "\"originalTimestamp\":12}]}",
                   "bad originalTimestamp");
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":\"u\","
                   "\"messageId\":{}}]}",
                   "messageId");
    expect_invalid("{\"batch\":[\"identify\"]}", "not an object");
    /* Duplicate keys anywhere are refused, not read last-wins: each of these
     * is a valid batch if one of the two values is dropped. */
    expect_invalid("{\"batch\":[{\"type\":\"identify\",\"userId\":\"u-ada\","
                   "\"userId\":\"u-eve\"}]}",
                   "duplicate");
    expect_invalid("{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\","
                   "\"traits\":{\"tier\":\"gold\",\"tier\":\"bronze\"}}]}",
                   "duplicate");
    expect_invalid("{\"batch\":[],\"batch\":[{\"type\":\"identify\",\"userId\":\"u\"}]}",
                   "duplicate");
}

static void test_lenient_payload(void **state)
{
    (void)state;
    /* Odd traits and properties are ignored field by field, not fatal. */
    const char *body =
        "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"name\":[1],"
        " \"points\":\"lots\",\"loyalty_id\":\"  \",\"consent\":\"yes\",\"tier\":7}},"
        "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u\","
        " \"properties\":{\"name\":\"no id\",\"price\":\"abc\"}},"
        "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u\",\"properties\":7}]}";
    struct ts_seg_batch *b = NULL;
    char err[256];
    assert_int_equal(parse(body, &b, err, sizeof err), TS_OK);
    assert_null(b->ev[0].name);
    assert_false(b->ev[0].has_points);
    assert_int_equal(b->ev[0].nloyalty, 0);
    assert_int_equal(b->ev[0].consent, -1);
    assert_null(b->ev[0].tier);
    assert_int_equal(b->ev[1].kind, TS_SEG_IGNORE); /* no product id: nothing to keep */
    assert_int_equal(b->ev[2].kind, TS_SEG_IGNORE);
    ts_seg_batch_free(b);

    assert_int_equal(parse("{\"batch\":[]}", &b, err, sizeof err), TS_OK);
    assert_int_equal(b->n, 0);
    ts_seg_batch_free(b);
    ts_seg_batch_free(NULL);
}

/* One track event with the given time fields; at_ms of the parsed event. */
static int64_t event_at(const char *fields, const char *batch_extra)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"batch\":[{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"u\","
             "\"properties\":{\"sku\":\"A\"}%s%s}]%s}",
             fields[0] ? "," : "", fields, batch_extra);
    struct ts_seg_batch *b = NULL;
    char err[256] = "";
    if (parse(body, &b, err, sizeof err) != TS_OK)
        fail_msg("parse failed: %s", err);
    int64_t at = b->ev[0].at_ms;
    ts_seg_batch_free(b);
    return at;
}

#define DAY_MS (86400LL * 1000)

static void test_sent_at_corrects_client_clock(void **state)
{
    (void)state;
    char f[256];
    /* A phone 10 days slow: it viewed the product 5 minutes before sending,
     * by its own clock. Received at NOW, so it happened at NOW - 5 min. */
    int64_t slow = NOW - 10 * DAY_MS;
    char ot[40], sent[40];
    ts_iso8601(slow - 300000, ot, sizeof ot);
    ts_iso8601(slow, sent, sizeof sent);
    snprintf(f, sizeof f, "\"originalTimestamp\":\"%s\",\"sentAt\":\"%s\"", ot, sent);
    assert_int_equal(event_at(f, ""), NOW - 300000);
    /* 10 days fast, sentAt on the batch as the server libraries send it. */
    int64_t fast = NOW + 10 * DAY_MS;
    ts_iso8601(fast - 60000, ot, sizeof ot);
    ts_iso8601(fast, sent, sizeof sent);
    snprintf(f, sizeof f, "\"timestamp\":\"%s\"", ot);
    char extra[80];
    snprintf(extra, sizeof extra, ",\"sentAt\":\"%s\"", sent);
    assert_int_equal(event_at(f, extra), NOW - 60000);
    /* The event's own sentAt wins over the batch's. */
    snprintf(f, sizeof f, "\"timestamp\":\"%s\",\"sentAt\":\"%s\"", ot, sent);
    assert_int_equal(event_at(f, ",\"sentAt\":\"2000-01-01T00:00:00Z\""), NOW - 60000);
    /* Backfilled history keeps its age: sent now, happened a year ago. */
    ts_iso8601(NOW - 365 * DAY_MS, ot, sizeof ot);
    ts_iso8601(NOW, sent, sizeof sent);
    snprintf(f, sizeof f, "\"timestamp\":\"%s\",\"sentAt\":\"%s\"", ot, sent);
    assert_int_equal(event_at(f, ""), NOW - 365 * DAY_MS);
    /* Without sentAt the sender's time stands, but never after receipt. */
    ts_iso8601(NOW - DAY_MS, ot, sizeof ot);
    snprintf(f, sizeof f, "\"originalTimestamp\":\"%s\"", ot);
    assert_int_equal(event_at(f, ""), NOW - DAY_MS);
    ts_iso8601(NOW + DAY_MS, ot, sizeof ot);
    snprintf(f, sizeof f, "\"originalTimestamp\":\"%s\"", ot);
    assert_int_equal(event_at(f, ""), NOW);
    /* Happened after it was sent: impossible, clamped to receipt. */
    ts_iso8601(NOW + 5000, ot, sizeof ot);
    ts_iso8601(NOW, sent, sizeof sent);
    snprintf(f, sizeof f, "\"timestamp\":\"%s\",\"sentAt\":\"%s\"", ot, sent);
    assert_int_equal(event_at(f, ""), NOW);
    assert_int_equal(event_at("", ""), NOW);
    expect_invalid("{\"batch\":[{\"type\":\"track\",\"event\":\"X\",\"userId\":\"u\","
                   "\"sentAt\":\"soon\"}]}",
                   "batch[0]: bad sentAt");
    expect_invalid("{\"batch\":[],\"sentAt\":7}", "bad sentAt");
}

static void test_loyalty_id_limit(void **state)
{
    (void)state;
    /* An app-QR URL as the whole id fits (up to 511 bytes)... */
    char id[TS_SEG_MAX_LOYALTY_LEN + 2], body[2048];
    const char *url = "HTTPS://APP.EXAMPLE/LOYALTY?CARD=";
    memset(id, 'A', sizeof id);
    memcpy(id, url, strlen(url));
    id[TS_SEG_MAX_LOYALTY_LEN] = '\0';
    snprintf(
        body, sizeof body,
        "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"loyalty_id\":\"%s\"}}]}",
        id);
    struct ts_seg_batch *b = NULL;
    char err[256];
    assert_int_equal(parse(body, &b, err, sizeof err), TS_OK);
    assert_int_equal(b->ev[0].nloyalty, 1);
    assert_string_equal(b->ev[0].loyalty[0], id);
    ts_seg_batch_free(b);
    /* ...one byte more refuses the batch, naming the field. */
    id[TS_SEG_MAX_LOYALTY_LEN] = 'A';
    id[TS_SEG_MAX_LOYALTY_LEN + 1] = '\0';
    snprintf(
        body, sizeof body,
        "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"loyalty_id\":\"%s\"}}]}",
        id);
    expect_invalid(body, "batch[0]: traits.loyalty_id is 512 bytes long");
    snprintf(body, sizeof body,
             "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u\",\"traits\":{\"loyalty_ids\":"
             "[\"1\",\"%s\"]}}]}",
             id);
    expect_invalid(body, "traits.loyalty_ids[1] is 512 bytes long");
}

static const char *good_conf =
    "[hub]\n"
    "listen = 127.0.0.1:0\n"
    "db = /tmp/x/hub.db\n"
    "tls_cert =\n"
    "[cdp]\n"
    "write_key = secret\n"
    "[tenant]\n"
    "name = acme\n"
    "key = 6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n"
    "key_version = 3\n";

static void test_config(void **state)
{
    (void)state;
    struct ts_hub_config c;
    char err[512];
    assert_int_equal(ts_hub_config_parse("hub.conf", good_conf, &c, err, sizeof err), TS_OK);
    assert_string_equal(c.listen, "127.0.0.1:0");
    assert_string_equal(c.tls_cert, "");
    assert_string_equal(c.write_key, "secret");
    assert_string_equal(c.tenant, "acme");
    assert_int_equal(c.key.version, 3);
    assert_int_equal(c.key.len, 32);
    assert_int_equal(c.page_limit, 500);
    assert_int_equal(c.log_level, TS_LOG_INFO);

    char text[2048];
    snprintf(text, sizeof text, "%s[feed]\npage_limit = 5000\n", good_conf);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "hub.conf:12:"));

    snprintf(text, sizeof text, "%s", good_conf);
    memcpy(strstr(text, "tls_cert =\n"), "tls_cert=/\n", 11);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "tls_key"));

    snprintf(text, sizeof text, "%s", good_conf);
    char *k = strstr(text, "key = 6b");
    k[7] = 'z';
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "hub.conf:9: [tenant] key"));

    snprintf(text, sizeof text, "%s", good_conf);
    memcpy(strstr(text, "write_key = secret"), "write_kez", 9);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "write_key"));

    snprintf(text, sizeof text, "%s", good_conf);
    memcpy(strstr(text, "127.0.0.1:0"), "127.0.0.1:x", 11);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "hub.conf:2: [hub] listen"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_identify_and_track),
        cmocka_unit_test(test_rejects_bad_envelopes),
        cmocka_unit_test(test_lenient_payload),
        cmocka_unit_test(test_sent_at_corrects_client_clock),
        cmocka_unit_test(test_loyalty_id_limit),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
