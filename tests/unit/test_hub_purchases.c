/*
 * Unit tests for in-store purchases at the hub (hub/purchases.c,
 * hub/upstream.c), through the real HTTP handler with hand-built terminal
 * identities: exactly-once by messageId, per-event rejection, the store
 * taken from the certificate, the profile update (cart, recent orders, feed),
 * receipt and order lookups, and forwarding to a CDP played by an in-process
 * ts_httpd server (outage with Retry-After, a refused event dead-lettered).
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
#include "purchases.h"
#include "sql.h"

#include <fcntl.h>
#include <unistd.h>

#define NOW 1780000000000LL
#define KEY_HEX "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
#define AUTH_OK "Basic dGVzdC13cml0ZS1rZXk6" /* base64("test-write-key:") */

static int64_t fixed_now(void)
{
    return NOW;
}

struct fx {
    struct ts_hub_config cfg;
    struct ts_hub_store *store;
    struct ts_hub_api api;
    struct ts_peer_id t01, s002, nostore;
};

static int setup_with(void **state, const char *extra)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256], conf[1024];
    assert_non_null(f);
    snprintf(conf, sizeof conf,
             "[hub]\ndb = :memory:\n[cdp]\nwrite_key = test-write-key\n"
             "[tenant]\nname = acme\nkey = " KEY_HEX "\n%s",
             extra);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &f->cfg, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_store_open(test_hub_db(), &f->cfg.key, 0, &f->store, err, sizeof err),
                     TS_OK);
    f->api = (struct ts_hub_api){.cfg = &f->cfg, .store = f->store, .now_ms = fixed_now};
    f->t01 = (struct ts_peer_id){.verified = true, .cn = "T01", .ou = "S001", .o = "acme"};
    f->s002 = (struct ts_peer_id){.verified = true, .cn = "T09", .ou = "S002", .o = "acme"};
    f->nostore = (struct ts_peer_id){.verified = true, .cn = "cdp", .o = "acme"};
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, "");
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ts_hub_store_close(f->store);
    free(f);
    return 0;
}

struct answer {
    int status;
    json_t *json;
};

static struct answer call(struct fx *f, const char *method, const char *target, const char *auth,
                          const char *body, const struct ts_peer_id *peer)
{
    struct ts_http_msg msg;
    memset(&msg, 0, sizeof msg);
    char hname[] = "Authorization", hval[128];
    if (auth) {
        ts_strlcpy(hval, auth, sizeof hval);
        msg.headers[0] = (struct ts_http_header){.name = hname, .value = hval};
        msg.nheaders = 1;
    }
    struct ts_httpd_req req = {
        .method = method,
        .target = target,
        .msg = &msg,
        .body = body ? body : "",
        .body_len = body ? strlen(body) : 0,
        .peer = peer,
        .remote_addr = "127.0.0.1",
    };
    assert_int_equal(ts_http_target_path(target, req.path, sizeof req.path), TS_OK);
    struct ts_httpd_resp resp;
    memset(&resp, 0, sizeof resp);
    ts_hub_api_handle(&f->api, &req, &resp);
    struct answer a = {.status = resp.status};
    a.json = json_loads(resp.body.data ? resp.body.data : "", 0, NULL);
    if (!a.json)
        fail_msg("%s %s: body is not JSON: %s", method, target, resp.body.data);
    ts_buf_free(&resp.body);
    return a;
}

/* One Order Completed event; cid NULL = no customer, store NULL = left out. */
static void event(char *out, size_t outsz, const char *mid, const char *receipt, const char *store,
                  const char *cid, const char *sku, const char *currency)
{
    char ctx[256] = "";
    int n = snprintf(ctx, sizeof ctx, "\"terminal\":\"T01\",\"receipt\":\"%s\",\"source\":\"api\"",
                     receipt);
    if (store)
        n += snprintf(ctx + n, sizeof ctx - (size_t)n, ",\"store\":\"%s\"", store);
    if (cid)
        snprintf(ctx + n, sizeof ctx - (size_t)n, ",\"cid\":\"%s\"", cid);
    snprintf(out, outsz,
             "{\"type\":\"track\",\"event\":\"Order Completed\",\"messageId\":\"%s\","
             "\"anonymousId\":\"S001:T01\",\"originalTimestamp\":\"2026-05-28T10:00:00.000Z\","
             "\"sentAt\":\"2026-05-28T10:00:01.000Z\",\"properties\":{\"order_id\":\"%s\","
             "\"total\":129.0,\"revenue\":108.4,\"tax\":20.6,\"discount\":0,\"currency\":\"%s\","
             "\"products\":[{\"product_id\":\"%s\",\"sku\":\"%s\",\"name\":\"TRAIL JKT\","
             "\"price\":129.0,\"quantity\":1}]},\"context\":{\"tillside\":{%s}}}",
             mid, receipt, currency, sku, sku, ctx);
}

static struct answer post(struct fx *f, const struct ts_peer_id *peer, const char *e1,
                          const char *e2)
{
    char body[8192];
    snprintf(body, sizeof body, "{\"batch\":[%s%s%s],\"sentAt\":\"2026-05-28T10:00:01Z\"}", e1,
             e2 ? "," : "", e2 ? e2 : "");
    return call(f, "POST", "/v1/purchases", NULL, body, peer);
}

static long long pstat(struct fx *f, const char *name)
{
    ts_buf b = {0};
    assert_int_equal(ts_hub_store_stats(f->store, &b), TS_OK);
    json_t *j = json_loads(b.data, 0, NULL);
    long long n = json_integer_value(json_object_get(json_object_get(j, "purchases"), name));
    json_decref(j);
    ts_buf_free(&b);
    return n;
}

static size_t count(json_t *a, const char *name)
{
    return json_array_size(json_object_get(a, name));
}

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
        {"\"Order Completed\"", "\"Order Refunded\"", "Order Completed"},
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

/* A customer of S001 with two products in the online cart; returns the cid. */
static void online_customer(struct fx *f, char cid[64])
{
    const char *body =
        "{\"batch\":[{\"type\":\"identify\",\"userId\":\"u-ada\",\"messageId\":\"i1\","
        "\"traits\":{\"name\":\"Ada\",\"loyalty_id\":\"2000000000015\",\"home_store\":\"S001\"}},"
        "{\"type\":\"track\",\"event\":\"Product Added\",\"userId\":\"u-ada\",\"messageId\":\"c1\","
        "\"properties\":{\"product_id\":\"SKU-JKT\",\"name\":\"Trail jacket\",\"price\":129.0}},"
        "{\"type\":\"track\",\"event\":\"Product Added\",\"userId\":\"u-ada\",\"messageId\":\"c2\","
        "\"properties\":{\"product_id\":\"SKU-HAT\",\"name\":\"Wool hat\",\"price\":19.0}},"
        "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-ada\","
        "\"messageId\":\"o1\",\"properties\":{\"order_id\":\"W-1001\",\"total\":59.9,"
        "\"currency\":\"EUR\",\"products\":[{\"product_id\":\"SKU-RUN\"}]}}]}";
    struct answer a = call(f, "POST", "/v1/batch", AUTH_OK, body, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?order=W-1001", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    ts_strlcpy(cid, json_string_value(json_object_get(a.json, "cid")), 64);
    json_decref(a.json);
}

/* The S001 feed's card for cid (a new reference the caller frees). */
static json_t *feed_card(struct fx *f, const char *cid)
{
    struct answer a = call(f, "GET", "/v1/feed?limit=1000", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    json_t *items = json_object_get(a.json, "items"), *card = NULL;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        if (strcmp(json_string_value(json_object_get(it, "cid")), cid) == 0)
            card = json_incref(json_object_get(it, "card"));
    }
    json_decref(a.json);
    assert_non_null(card);
    return card;
}

static bool in_cart(json_t *card, const char *pid)
{
    json_t *arr = json_object_get(card, "interests");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *it = json_array_get(arr, i);
        if (strcmp(json_string_value(json_object_get(it, "signal")), "cart") == 0 &&
            strcmp(json_string_value(json_object_get(it, "product_id")), pid) == 0)
            return true;
    }
    return false;
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

struct cdp {
    pthread_mutex_t mu;
    int requests;
    int fail_next;   /* answer fail_status this many times */
    int fail_status; /* with Retry-After: 7 for 503 and 429 */
    json_t *got;     /* messageId → userId (or "") of every accepted event */
    int got_twice;   /* an accepted messageId arrived again */
    char auth[128];
};

static void cdp_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct cdp *c = ud;
    pthread_mutex_lock(&c->mu);
    c->requests++;
    const char *h = ts_http_header(req->msg, "Authorization");
    ts_strlcpy(c->auth, h ? h : "", sizeof c->auth);
    if (c->fail_next > 0) {
        c->fail_next--;
        if (c->fail_status == 503 || c->fail_status == 429)
            ts_strlcpy(resp->extra_headers, "Retry-After: 7\r\n", sizeof resp->extra_headers);
        ts_httpd_error(resp, c->fail_status, "not now");
        pthread_mutex_unlock(&c->mu);
        return;
    }
    json_t *b = json_loads(req->body, 0, NULL), *arr = json_object_get(b, "batch");
    /* Like Segment: an invalid event fails the whole request. */
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (strstr(json_string_value(json_object_get(
                       json_object_get(json_array_get(arr, i), "properties"), "order_id")),
                   "BAD")) {
            ts_httpd_error(resp, 400, "invalid event");
            json_decref(b);
            pthread_mutex_unlock(&c->mu);
            return;
        }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i);
        const char *mid = json_string_value(json_object_get(e, "messageId"));
        const char *uid = json_string_value(json_object_get(e, "userId"));
        if (json_object_get(c->got, mid))
            c->got_twice++;
        json_object_set_new(c->got, mid, json_string(uid ? uid : ""));
    }
    json_decref(b);
    ts_buf_reset(&resp->body);
    ts_buf_puts(&resp->body, "{\"success\":true}");
    pthread_mutex_unlock(&c->mu);
}

/* When the forwarder looks again with nothing pending: not until woken on
 * SQLite (a new purchase wakes it), in a second on PostgreSQL, where other
 * hubs sharing the database queue purchases too. */
static bool idle_next(int64_t next, int64_t now)
{
    int64_t wall = ts_now_wall_ms(); /* run_once moves its clock on to the wall's */
    if (!getenv("TS_TEST_PG"))
        return next == INT64_MAX;
    return next >= now + 1000 && next <= (wall > now ? wall : now) + 1000;
}

static void test_forwarding(void **state)
{
    struct fx *f = *state;
    struct cdp c = {.got = json_object()};
    pthread_mutex_init(&c.mu, NULL);
    struct ts_httpd *srv = NULL;
    char err[256], url[64], e1[2048], e2[2048], e3[2048], cid[64];
    struct ts_httpd_opts o = {.listen = "127.0.0.1:0"};
    assert_int_equal(ts_httpd_start(&o, cdp_handle, &c, &srv, err, sizeof err), TS_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/batch", ts_httpd_port(srv));
    char conf[256];
    snprintf(conf, sizeof conf, "[upstream]\nurl = %s\nwrite_key = cdp-key\nmax_backoff_s = 60\n",
             url);
    teardown(state);
    setup_with(state, conf);
    f = *state;
    struct ts_hub_upstream *u = NULL;
    assert_int_equal(ts_hub_upstream_new(f->store, &f->cfg, &u, err, sizeof err), TS_OK);
    f->api.upstream = u;

    online_customer(f, cid);
    event(e1, sizeof e1, "m-f1", "S001-T01-000041", "S001", cid, "SKU-JKT", "EUR");
    event(e2, sizeof e2, "m-f2", "S001-T01-000042", "S001", NULL, "SKU-1", "EUR");
    event(e3, sizeof e3, "m-f3", "S001-T01-BAD43", "S001", NULL, "SKU-1", "EUR");
    struct answer a = post(f, &f->t01, e1, e2);
    assert_int_equal(count(a.json, "accepted"), 2);
    json_decref(a.json);
    a = post(f, &f->t01, e3, NULL);
    assert_int_equal(count(a.json, "accepted"), 1);
    json_decref(a.json);
    assert_int_equal(pstat(f, "pending"), 3);

    /* Timeouts and rate limits without Retry-After are retried after a
     * backoff (never at once), and lose nothing. */
    int64_t now = NOW, next;
    static const int transient[] = {408, 500, 502};
    for (size_t i = 0; i < 3; i++) {
        c.fail_next = 1;
        c.fail_status = transient[i];
        assert_int_equal(ts_hub_upstream_run_once(u, now, &next), TS_OK);
        assert_int_equal(c.requests, (int)i + 1);
        assert_true(next >= now + 100);
        assert_int_equal(pstat(f, "pending"), 3);
        now = next;
    }
    /* The CDP is down: one request, then nothing until Retry-After. */
    c.requests = 0;
    c.fail_next = 1;
    c.fail_status = 429;
    assert_int_equal(ts_hub_upstream_run_once(u, now, &next), TS_OK);
    assert_int_equal(c.requests, 1);
    assert_true(next >= now + 7000);
    assert_true(next <= now + 60000);
    assert_int_equal(ts_hub_upstream_run_once(u, now + 3000, &next), TS_OK);
    assert_int_equal(c.requests, 1); /* no busy loop while paused */
    assert_int_equal(pstat(f, "pending"), 3);
    c.fail_next = 1;
    c.fail_status = 503;
    assert_int_equal(ts_hub_upstream_run_once(u, next, &next), TS_OK);
    assert_int_equal(c.requests, 2);
    assert_int_equal(pstat(f, "pending"), 3);

    /* Back up: the batch is refused for the BAD event, sent one by one,
     * and only that event dies. */
    int64_t t = next;
    assert_int_equal(ts_hub_upstream_run_once(u, t, &next), TS_OK);
    assert_int_equal(pstat(f, "pending"), 0);
    assert_int_equal(pstat(f, "forwarded"), 2);
    assert_int_equal(pstat(f, "dead"), 1);
    assert_int_equal(json_object_size(c.got), 2);
    assert_int_equal(c.got_twice, 0);
    assert_string_equal(json_string_value(json_object_get(c.got, "m-f1")), "u-ada");
    assert_string_equal(json_string_value(json_object_get(c.got, "m-f2")), "");
    assert_string_equal(c.auth, "Basic Y2RwLWtleTo="); /* base64("cdp-key:") */
    assert_true(idle_next(next, t));
    int before = c.requests;
    t = ts_now_wall_ms() + 1000;
    assert_int_equal(ts_hub_upstream_run_once(u, t, &next), TS_OK);
    assert_int_equal(c.requests, before); /* nothing left to send */
    assert_true(idle_next(next, t));

    struct ts_httpd_resp resp;
    memset(&resp, 0, sizeof resp);
    struct ts_httpd_req req = {.method = "GET", .target = "/metrics", .path = "/metrics"};
    ts_hub_metrics_handle(&f->api, &req, &resp);
    assert_non_null(strstr(resp.body.data, "tillside_hub_upstream_dead 1\n"));
    assert_non_null(strstr(resp.body.data, "tillside_hub_upstream_pending 0\n"));
    assert_non_null(strstr(resp.body.data, "tillside_hub_upstream_forwarded_total 2\n"));
    ts_buf_free(&resp.body);

    ts_hub_upstream_free(u);
    ts_httpd_stop(srv);
    json_decref(c.got);
    pthread_mutex_destroy(&c.mu);
}

static void test_parser_limits(void **state)
{
    (void)state;
    struct ts_hub_pbatch *b = NULL;
    char err[256];
    /* An event over 32 KB, otherwise valid, is refused on its own. */
    size_t n = 40 * 1024;
    char *big = malloc(n + 4096), e[2048];
    assert_non_null(big);
    event(e, sizeof e, "m", "S001-T01-000900", "S001", NULL, "SKU-1", "EUR");
    char *cut = strstr(e, "\"discount\":0");
    assert_non_null(cut);
    int k = snprintf(big, n + 4096, "{\"batch\":[%.*s\"note\":\"", (int)(cut - e), e);
    memset(big + k, 'x', n);
    snprintf(big + k + n, 4096 - (size_t)k, "\",%s, 7]}", cut);
    assert_int_equal(ts_hub_purchases_parse(big, strlen(big), "S001", NOW, &b, err, sizeof err),
                     TS_OK);
    assert_int_equal(b->n, 2);
    assert_int_equal(b->p[0].status, TS_HUB_P_REJECTED);
    assert_non_null(strstr(b->p[0].error, "32 KB"));
    assert_int_equal(b->p[1].status, TS_HUB_P_REJECTED);
    assert_null(b->p[1].message_id);
    ts_hub_pbatch_free(b);
    b = NULL;
    /* A key given twice (a second total after the one the till printed) is
     * refused with the body, not read last-wins. */
    event(e, sizeof e, "m-dup", "S001-T01-000901", "S001", NULL, "SKU-1", "EUR");
    cut = strstr(e, "\"discount\":0");
    snprintf(big, n + 4096, "{\"batch\":[%.*s\"discount\":5,%s]}", (int)(cut - e), e, cut);
    assert_int_equal(ts_hub_purchases_parse(big, strlen(big), "S001", NOW, &b, err, sizeof err),
                     TS_ERR_INVAL);
    assert_null(b);
    assert_non_null(strstr(err, "duplicate"));
    free(big);
}

static void test_upstream_config(void **state)
{
    (void)state;
    struct ts_hub_config cfg;
    char err[256];
    const char *base = "[cdp]\nwrite_key = k\n[tenant]\nkey = " KEY_HEX "\n[upstream]\n";
    char conf[512];
    snprintf(conf, sizeof conf, "%surl = https://api.segment.io/v1/batch\nwrite_key = w\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_OK);
    assert_string_equal(cfg.upstream_url, "https://api.segment.io"); /* the batch path is ours */
    assert_int_equal(cfg.upstream_max_backoff_s, 300);
    snprintf(conf, sizeof conf, "%surl = https://cdp.example\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[upstream] write_key"));
    snprintf(conf, sizeof conf, "%surl = ftp://cdp.example\nwrite_key = w\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[upstream] url"));
    snprintf(conf, sizeof conf, "%s", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_OK);
    assert_string_equal(cfg.upstream_url, ""); /* not forwarded */
}

/* What fn(arg) writes to stderr (the log), NUL-terminated, into out. */
static void capture_stderr(void (*fn)(void *), void *arg, char *out, size_t outsz)
{
    char path[] = "/tmp/ts-test-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    assert_true(dup2(fd, 2) == 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, outsz - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

struct lookup_call {
    struct ts_hub_store *store;
    int rc;
};

static void lookup_receipt(void *arg)
{
    struct lookup_call *c = arg;
    ts_buf out = {0};
    c->rc = ts_hub_lookup_receipt(c->store, "S001-T01-000042", &out);
    ts_buf_free(&out);
}

/* A lookup that fails on the read side's connection says why it failed
 * there, not what the writer last said (which is nothing wrong at all). */
static void test_lookup_failure_names_reader_error(void **state)
{
    (void)state;
    char dir[] = "/tmp/ts-test-hub-XXXXXX", db[1024], err[256], log[4096];
    struct ts_tenant_key key = {.len = 32, .version = 1};
    memset(key.key, 0x6b, 32);
    assert_non_null(mkdtemp(dir));
    test_hub_db_file(db, sizeof db, dir);
    struct ts_hub_store *store = NULL;
    assert_int_equal(ts_hub_store_open(db, &key, 0, &store, err, sizeof err), TS_OK);
    /* Another process takes the table away under the running hub. */
    struct ts_sql *other = NULL;
    assert_int_equal(ts_sql_open(db, 0, &other, err, sizeof err), TS_OK);
    assert_int_equal(ts_sql_exec(other, "DROP TABLE purchases"), TS_OK);
    ts_sql_close(other);
    struct lookup_call c = {.store = store};
    capture_stderr(lookup_receipt, &c, log, sizeof log);
    assert_int_equal(c.rc, TS_ERR_DB);
    assert_non_null(strstr(log, "receipt lookup"));
    assert_non_null(strstr(log, "purchases")); /* "no such table" / "does not exist" */
    ts_hub_store_close(store);
    if (!getenv("TS_TEST_PG")) {
        char f[1100];
        static const char *const tails[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            snprintf(f, sizeof f, "%s%s", db, tails[i]);
            unlink(f);
        }
    }
    rmdir(dir);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    ts_log_set_level(TS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        T(test_same_message_twice_stored_once),
        T(test_bad_event_rejected_alone),
        T(test_store_from_certificate),
        T(test_purchase_updates_profile),
        T(test_concurrent_resends_stored_once),
        T(test_printed_barcode_finds_sale),
        cmocka_unit_test(test_backoff),
        T(test_forwarding),
        cmocka_unit_test(test_parser_limits),
        cmocka_unit_test(test_upstream_config),
        cmocka_unit_test(test_lookup_failure_names_reader_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
