/*
 * Unit tests for in-store purchases at the hub (hub/purchases.c), through the
 * real HTTP handler with hand-built terminal identities: exactly-once by
 * messageId, per-event rejection, the store taken from the certificate, the
 * profile update (cart, recent orders, feed), receipt lookups, the back-off.
 */
#include "hub_purchases_fx.h"

static void test_same_message_twice_stored_once(void **state)
{
    struct fx *f = *state;
    char e[2048];
    event(e, sizeof e, "m-1", "S001-T01-000001", "S001", NULL, "SKU-1", "EUR");
    struct answer a = post(f, &f->t01, e, NULL);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a.json, "accepted"), 0)),
                        "m-1");
    assert_int_equal(count(a.json, "duplicates"), 0);
    json_decref(a.json);
    /* The agent did not see the answer and sends the same event again. */
    a = post(f, &f->t01, e, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(count(a.json, "accepted"), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a.json, "duplicates"), 0)),
                        "m-1");
    json_decref(a.json);
    /* Twice within one batch: the second is the duplicate. */
    char e2[2048];
    event(e2, sizeof e2, "m-2", "S001-T01-000002", "S001", NULL, "SKU-1", "EUR");
    a = post(f, &f->t01, e2, e2);
    assert_int_equal(count(a.json, "accepted"), 1);
    assert_int_equal(count(a.json, "duplicates"), 1);
    json_decref(a.json);
    /* The same receipt under a new messageId is the same sale. */
    event(e2, sizeof e2, "m-3", "S001-T01-000002", "S001", NULL, "SKU-1", "EUR");
    a = post(f, &f->t01, e2, NULL);
    assert_int_equal(count(a.json, "duplicates"), 1);
    json_decref(a.json);
    assert_int_equal(pstat(f, "stored"), 2);
}

static void test_bad_event_rejected_alone(void **state)
{
    struct fx *f = *state;
    char good[2048], bad[2048];
    event(good, sizeof good, "m-good", "S001-T01-000010", "S001", NULL, "SKU-1", "EUR");
    event(bad, sizeof bad, "m-bad", "S001-T01-000011", "S001", NULL, "SKU-1", "euro");
    struct answer a = post(f, &f->t01, bad, good);
    assert_int_equal(a.status, 200);
    assert_int_equal(count(a.json, "accepted"), 1);
    json_t *r = json_array_get(json_object_get(a.json, "rejected"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "messageId")), "m-bad");
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "currency"));
    json_decref(a.json);
    assert_int_equal(pstat(f, "stored"), 1);

    /* Other ways an event is refused, each on its own. */
    static const struct {
        const char *from, *to, *needle;
    } cases[] = {
        {"\"total\":129.0", "\"total\":-1", "total"},
        {"\"quantity\":1", "\"quantity\":0", "quantity"},
        {"\"Order Completed\"", "\"Order Shipped\"", "Order Completed"},
        /* a refund names its own key (purchase_parse.c, returns) */
        {"\"Order Completed\"", "\"Order Refunded\"", "return:ID"},
        {"\"messageId\":\"m-x\",", "", "messageId"},
        {"\"order_id\":\"S001-T01-000012\",", "", "order_id"},
        {"\"originalTimestamp\":\"2026-05-28T10:00:00.000Z\"", "\"originalTimestamp\":\"yday\"",
         "originalTimestamp"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char e[2048], body[4096];
        event(e, sizeof e, "m-x", "S001-T01-000012", "S001", NULL, "SKU-1", "EUR");
        char *at = strstr(e, cases[i].from);
        assert_non_null(at);
        snprintf(body, sizeof body, "%.*s%s%s", (int)(at - e), e, cases[i].to,
                 at + strlen(cases[i].from));
        a = post(f, &f->t01, body, NULL);
        assert_int_equal(a.status, 200);
        assert_int_equal(count(a.json, "accepted"), 0);
        r = json_array_get(json_object_get(a.json, "rejected"), 0);
        const char *why = json_string_value(json_object_get(r, "error"));
        if (!why || !strstr(why, cases[i].needle))
            fail_msg("case %zu: error \"%s\" does not mention %s", i, why, cases[i].needle);
        json_decref(a.json);
    }
    assert_int_equal(pstat(f, "stored"), 1);

    /* Not a batch at all: 400. No store in the certificate: 403. */
    a = call(f, "POST", "/v1/purchases", NULL, "{\"events\":[]}", &f->t01);
    assert_int_equal(a.status, 400);
    json_decref(a.json);
    a = call(f, "POST", "/v1/purchases", NULL, "[1,2", &f->t01);
    assert_int_equal(a.status, 400);
    json_decref(a.json);
    a = post(f, &f->nostore, good, NULL);
    assert_int_equal(a.status, 403);
    json_decref(a.json);
    a = post(f, NULL, good, NULL);
    assert_int_equal(a.status, 403);
    json_decref(a.json);
}

static void test_store_from_certificate(void **state)
{
    struct fx *f = *state;
    char e[2048];
    /* A terminal of S002 cannot record a sale for S001... */
    event(e, sizeof e, "m-s", "S001-T01-000020", "S001", NULL, "SKU-1", "EUR");
    struct answer a = post(f, &f->s002, e, NULL);
    assert_int_equal(count(a.json, "accepted"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_array_get(json_object_get(a.json, "rejected"), 0), "error")),
                           "store"));
    json_decref(a.json);
    /* ...and one that names no store records it for its own. */
    event(e, sizeof e, "m-s", "S002-T09-000020", NULL, NULL, "SKU-1", "EUR");
    a = post(f, &f->s002, e, NULL);
    assert_int_equal(count(a.json, "accepted"), 1);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?receipt=S002-T09-000020", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    json_t *p = json_object_get(a.json, "purchase");
    assert_string_equal(json_string_value(json_object_get(p, "store")), "S002");
    assert_null(json_object_get(a.json, "card")); /* nobody known bought it */
    json_decref(a.json);
}

static void test_purchase_updates_profile(void **state)
{
    struct fx *f = *state;
    char cid[64], e[2048];
    online_customer(f, cid);
    json_t *card = feed_card(f, cid);
    assert_true(in_cart(card, "SKU-JKT"));
    assert_true(in_cart(card, "SKU-HAT"));
    json_decref(card);

    event(e, sizeof e, "m-ada", "S001-T01-000030", "S001", cid, "SKU-JKT", "EUR");
    struct answer a = post(f, &f->t01, e, NULL);
    assert_int_equal(count(a.json, "accepted"), 1);
    json_decref(a.json);

    card = feed_card(f, cid);
    assert_false(in_cart(card, "SKU-JKT")); /* bought in store: out of the online cart */
    assert_true(in_cart(card, "SKU-HAT"));
    json_t *orders = json_object_get(card, "orders"), *in_store = NULL;
    for (size_t i = 0; i < json_array_size(orders); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(orders, i), "order_id")),
                   "S001-T01-000030") == 0)
            in_store = json_array_get(orders, i);
    assert_non_null(in_store);
    assert_string_equal(json_string_value(json_object_get(in_store, "status")), "in store");
    assert_string_equal(json_string_value(json_object_get(in_store, "store")), "S001");
    assert_true(json_number_value(json_object_get(in_store, "total")) == 129.0);
    json_decref(card);

    /* Scanning the receipt later finds the purchase and the card. */
    a = call(f, "GET", "/v1/lookup?receipt=s001-t01-000030", NULL, NULL, &f->s002);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "cid")), cid);
    assert_non_null(json_object_get(json_object_get(a.json, "card"), "orders"));
    json_t *p = json_object_get(a.json, "purchase");
    assert_string_equal(json_string_value(json_object_get(p, "receipt")), "S001-T01-000030");
    assert_string_equal(json_string_value(json_object_get(p, "terminal")), "T01");
    assert_int_equal(json_array_size(json_object_get(p, "products")), 1);
    json_decref(a.json);
    /* The online order by its number, with its status. */
    a = call(f, "GET", "/v1/lookup?order=W-1001", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    p = json_object_get(a.json, "order");
    assert_string_equal(json_string_value(json_object_get(p, "status")), "placed");
    assert_string_equal(json_string_value(json_object_get(a.json, "cid")), cid);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?receipt=NOPE-1", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 404);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?order=W-404", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 404);
    json_decref(a.json);
    /* A duplicate changes nothing: the card is not re-stamped. */
    struct answer before = call(f, "GET", "/v1/feed", NULL, NULL, &f->t01);
    a = post(f, &f->t01, e, NULL);
    assert_int_equal(count(a.json, "duplicates"), 1);
    json_decref(a.json);
    struct answer after = call(f, "GET", "/v1/feed", NULL, NULL, &f->t01);
    assert_string_equal(json_string_value(json_object_get(before.json, "cursor")),
                        json_string_value(json_object_get(after.json, "cursor")));
    json_decref(before.json);
    json_decref(after.json);

    /* Erased (GDPR): the sale stays, nobody is named by it any more. */
    struct ts_hub_erase_result er;
    assert_int_equal(ts_hub_store_erase(f->store, "u-ada", NULL, NOW, &er), TS_OK);
    a = call(f, "GET", "/v1/lookup?receipt=S001-T01-000030", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_non_null(json_object_get(a.json, "purchase"));
    assert_null(json_object_get(a.json, "cid"));
    assert_null(json_object_get(a.json, "card"));
    json_decref(a.json);
}

/* Terminals resending the same batch at the same moment. */
struct racer {
    struct fx *f;
    const char *body;
    size_t accepted, duplicates;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct ts_http_msg msg;
    memset(&msg, 0, sizeof msg);
    struct ts_httpd_req req = {.method = "POST",
                               .target = "/v1/purchases",
                               .path = "/v1/purchases",
                               .msg = &msg,
                               .body = r->body,
                               .body_len = strlen(r->body),
                               .peer = &r->f->t01};
    struct ts_httpd_resp resp;
    memset(&resp, 0, sizeof resp);
    ts_hub_api_handle(&r->f->api, &req, &resp);
    json_t *j = json_loads(resp.body.data ? resp.body.data : "", 0, NULL);
    r->accepted = json_array_size(json_object_get(j, "accepted"));
    r->duplicates = json_array_size(json_object_get(j, "duplicates"));
    json_decref(j);
    ts_buf_free(&resp.body);
    return NULL;
}

static void test_concurrent_resends_stored_once(void **state)
{
    struct fx *f = *state;
    ts_buf body = {0};
    ts_buf_puts(&body, "{\"batch\":[");
    for (int i = 0; i < 20; i++) {
        char e[2048], mid[32], receipt[32];
        snprintf(mid, sizeof mid, "m-race-%d", i);
        snprintf(receipt, sizeof receipt, "S001-T01-%06d", 500 + i);
        event(e, sizeof e, mid, receipt, "S001", NULL, "SKU-1", "EUR");
        ts_buf_printf(&body, "%s%s", i ? "," : "", e);
    }
    ts_buf_puts(&body, "]}");
    struct racer r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){.f = f, .body = body.data};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    size_t acc = 0, dup = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        acc += r[i].accepted;
        dup += r[i].duplicates;
    }
    assert_int_equal(acc, 20);
    assert_int_equal(dup, 60);
    assert_int_equal(pstat(f, "stored"), 20);
    ts_buf_free(&body);
}

static void test_printed_barcode_finds_sale(void **state)
{
    struct fx *f = *state;
    char cid[64], e[2048], body[2200];
    online_customer(f, cid);
    /* The receipt tap records the barcode the till printed, which need not
     * be the receipt number. */
    event(e, sizeof e, "m-bc", "S001-T01-000777", "S001", cid, "SKU-HAT", "EUR");
    char *at = strstr(e, "\"source\":\"api\"");
    assert_non_null(at);
    snprintf(body, sizeof body, "%.*s\"source\":\"escpos:front\",\"barcode\":\"99-0001-777\"%s",
             (int)(at - e), e, at + strlen("\"source\":\"api\""));
    struct answer a = post(f, &f->t01, body, NULL);
    assert_int_equal(count(a.json, "accepted"), 1);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?receipt=990001777", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(a.json, "purchase"), "receipt")),
        "S001-T01-000777");
    assert_string_equal(json_string_value(json_object_get(a.json, "cid")), cid);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?receipt=S001-T01-000777", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
}

static void test_backoff(void **state)
{
    (void)state;
    /* Full jitter: anywhere in [0, min(cap, base * 2^n)], never past the cap,
     * never before Retry-After. */
    assert_int_equal(ts_hub_backoff_ms(0, 1000, 300000, -1, 0), 0);
    assert_int_equal(ts_hub_backoff_ms(0, 1000, 300000, -1, UINT32_MAX), 1000);
    assert_int_equal(ts_hub_backoff_ms(3, 1000, 300000, -1, UINT32_MAX), 8000);
    assert_int_equal(ts_hub_backoff_ms(60, 1000, 300000, -1, UINT32_MAX), 300000);
    assert_int_equal(ts_hub_backoff_ms(3, 1000, 300000, 30000, 0), 30000);
    int64_t d = ts_hub_backoff_ms(4, 1000, 300000, -1, UINT32_MAX / 2);
    assert_true(d >= 7900 && d <= 8100);
}

/* ---- forwarding, against a CDP played by ts_httpd ---------------------------*/

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    ts_log_set_level(TS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        T(test_same_message_twice_stored_once), T(test_bad_event_rejected_alone),
        T(test_store_from_certificate),         T(test_purchase_updates_profile),
        T(test_concurrent_resends_stored_once), T(test_printed_barcode_finds_sale),
        cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
