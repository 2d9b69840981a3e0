/*
 * Unit tests for the hub's HTTP handler, called directly with hand-built
 * requests and certificate identities (no sockets): routing, write-key
 * auth, store scoping, cursors and the exact JSON shapes of PROTOCOL.md.
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

#include "gzip.h"
#include "hub.h"
#include "hubdb.h"
#include "throttle.h"

#include <mbedtls/md.h>

#define NOW 1780000000000LL
#define KEY_HEX "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
/* base64("test-write-key:") */
#define AUTH_OK "Basic dGVzdC13cml0ZS1rZXk6"

static int64_t fixed_now(void)
{
    return NOW;
}

struct fx {
    struct ts_hub_config cfg;
    struct ts_hub_store *store;
    struct ts_hub_api api;
    struct ts_peer_id t01, nostore, other_tenant;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[256];
    assert_non_null(f);
    assert_int_equal(ts_hub_config_parse("hub.conf",
                                         "[hub]\ndb = :memory:\n[cdp]\nwrite_key = test-write-key\n"
                                         "[tenant]\nname = acme\nkey = " KEY_HEX "\n"
                                         "[feed]\npage_limit = 3\n",
                                         &f->cfg, err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_hub_store_open(test_hub_db(), &f->cfg.key, 0, &f->store, err, sizeof err),
                     TS_OK);
    f->api = (struct ts_hub_api){.cfg = &f->cfg, .store = f->store, .now_ms = fixed_now};
    f->t01 = (struct ts_peer_id){.verified = true, .cn = "T01", .ou = "S001", .o = "acme"};
    f->nostore = (struct ts_peer_id){.verified = true, .cn = "cdp", .o = "acme"};
    f->other_tenant = (struct ts_peer_id){.verified = true, .cn = "T01", .ou = "S001", .o = "evil"};
    *state = f;
    return 0;
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
    json_t *json; /* NULL when the body is not JSON (a test failure) */
    char headers[512];
};

/* Calls the handler like ts_httpd would and parses the JSON answer. */
static struct answer call(struct fx *f, const char *method, const char *target, const char *auth,
                          const char *body, const struct ts_peer_id *peer)
{
    struct ts_http_msg msg;
    memset(&msg, 0, sizeof msg);
    char hname[] = "Authorization";
    char hval[512];
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
    /* A parked long-poll: ts_httpd hands it over again on a change notice
     * or at its deadline; here, every 20 ms until it answers. */
    while (resp.park_until_ms) {
        req.park_until_ms = resp.park_until_ms;
        ts_sleep_ms(20);
        req.park_expired = ts_now_mono_ms() >= req.park_until_ms;
        ts_buf_free(&resp.body);
        memset(&resp, 0, sizeof resp);
        ts_hub_api_handle(&f->api, &req, &resp);
    }
    struct answer a = {.status = resp.status};
    assert_string_equal(resp.content_type, "application/json");
    a.json = json_loads(resp.body.data ? resp.body.data : "", 0, NULL);
    if (!a.json)
        fail_msg("%s %s: body is not JSON: %s", method, target, resp.body.data);
    ts_strlcpy(a.headers, resp.extra_headers, sizeof a.headers);
    if (a.status >= 400)
        assert_non_null(json_string_value(json_object_get(a.json, "error")));
    ts_buf_free(&resp.body);
    return a;
}

static long long customers(struct fx *f)
{
    ts_buf b = {0};
    assert_int_equal(ts_hub_store_stats(f->store, &b), TS_OK);
    json_t *j = json_loads(b.data, 0, NULL);
    long long n = json_integer_value(json_object_get(j, "customers"));
    json_decref(j);
    ts_buf_free(&b);
    return n;
}

/* Body for one customer in store with three views and a cart add. */
static void customer_body(char *out, size_t outsz, const char *user, const char *loyalty,
                          const char *store)
{
    snprintf(out, outsz,
             "{\"batch\":[{\"type\":\"identify\",\"userId\":\"%s\",\"messageId\":\"%s-i\","
             "\"traits\":{\"name\":\"Ada Lovelace\",\"loyalty_id\":\"%s\",\"tier\":\"gold\","
             "\"home_store\":\"%s\"}},"
             "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"%s\","
             "\"properties\":{\"product_id\":\"SKU-RUN-42\"}},"
             "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"%s\","
             "\"properties\":{\"product_id\":\"SKU-RUN-42\"}},"
             "{\"type\":\"track\",\"event\":\"Product Viewed\",\"userId\":\"%s\","
             "\"properties\":{\"product_id\":\"SKU-RUN-42\"}},"
             "{\"type\":\"track\",\"event\":\"Product Added\",\"userId\":\"%s\","
             "\"properties\":{\"product_id\":\"SKU-JKT-7\",\"price\":129.0}}]}",
             user, user, loyalty, store, user, user, user, user);
}

static void post_customer(struct fx *f, const char *user, const char *loyalty, const char *store)
{
    char body[2048];
    customer_body(body, sizeof body, user, loyalty, store);
    struct answer a = call(f, "POST", "/v1/batch", AUTH_OK, body, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
}

static void test_batch_accepted(void **state)
{
    struct fx *f = *state;
    char body[2048];
    customer_body(body, sizeof body, "u-ada", "2000000000015", "S001");
    struct answer a = call(f, "POST", "/v1/batch", AUTH_OK, body, NULL);
    assert_int_equal(a.status, 200);
    assert_true(json_is_true(json_object_get(a.json, "success")));
    assert_int_equal(json_integer_value(json_object_get(a.json, "accepted")), 5);
    assert_int_equal(json_object_size(a.json), 2);
    json_decref(a.json);
    assert_int_equal(customers(f), 1);

    /* The write key as user name with any password works too. */
    customer_body(body, sizeof body, "u-bob", "2000000000022", "S001");
    a = call(f, "POST", "/v1/batch", "basic dGVzdC13cml0ZS1rZXk6YW55dGhpbmc=", body, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    assert_int_equal(customers(f), 2);
}

static void test_batch_refused_changes_nothing(void **state)
{
    struct fx *f = *state;
    char good[2048];
    customer_body(good, sizeof good, "u-x", "2000000000015", "S001");
    static const char *bad_auth[] = {
        NULL,
        "Basic bm9wZTo=",                 /* "nope:" */
        "Basic dGVzdC13cml0ZS1rZXk=",     /* "test-write-key" with no colon: ok, see below */
        "Basic dGVzdC13cml0ZS1rZXlYOg==", /* "test-write-keyX:" */
        "Basic OnRlc3Qtd3JpdGUta2V5",     /* ":test-write-key" (key as password) */
        "Basic !!!!",
        "Bearer test-write-key",
        "Basic ",
    };
    for (size_t i = 0; i < sizeof bad_auth / sizeof bad_auth[0]; i++) {
        if (i == 2)
            continue;
        struct answer a = call(f, "POST", "/v1/batch", bad_auth[i], good, NULL);
        assert_int_equal(a.status, 401);
        assert_string_equal(json_string_value(json_object_get(a.json, "error")),
                            "invalid write key");
        assert_non_null(strstr(a.headers, "WWW-Authenticate: Basic"));
        json_decref(a.json);
    }
    static const struct {
        const char *body, *needle;
    } bad[] = {
        {"{\"batch\": [ {\"type\": \"identify\", ", "malformed JSON"},
        {"{\"events\": []}", "batch"},
        {"", "malformed JSON"},
        {"{\"batch\":[{\"userId\":\"u1\",\"traits\":{\"name\":\"X\"}}]}", "batch[0]"},
        {"{\"batch\":[{\"type\":\"identify\",\"userId\":\"u1\",\"traits\":{\"name\":\"X\"}},"
         "{\"type\":\"track\",\"event\":\"Product Viewed\"}]}",
         "batch[1]"},
        {"{\"batch\":[{\"type\":\"identify\",\"userId\":\"u1\",\"timestamp\":\"soon\"}]}",
         "batch[0]: bad timestamp"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct answer a = call(f, "POST", "/v1/batch", AUTH_OK, bad[i].body, NULL);
        assert_int_equal(a.status, 400);
        const char *msg = json_string_value(json_object_get(a.json, "error"));
        if (!strstr(msg, bad[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, msg, bad[i].needle);
        json_decref(a.json);
    }
    assert_int_equal(customers(f), 0);

    /* Over Segment's 500 KB limit: refused before parsing. */
    size_t big = TS_HUB_MAX_BODY + 10;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = '\0';
    struct answer a = call(f, "POST", "/v1/batch", AUTH_OK, huge, NULL);
    assert_int_equal(a.status, 413);
    json_decref(a.json);
    free(huge);
    assert_int_equal(customers(f), 0);

    /* A key without the colon is still the user name. */
    a = call(f, "POST", "/v1/batch", bad_auth[2], good, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    assert_int_equal(customers(f), 1);
}

static const char *cursor_of(json_t *page)
{
    return json_string_value(json_object_get(page, "cursor"));
}

static void test_feed(void **state)
{
    struct fx *f = *state;
    char user[16], loy[16], target[128];
    for (int i = 0; i < 5; i++) {
        snprintf(user, sizeof user, "u%d", i);
        snprintf(loy, sizeof loy, "20000000%05d", i);
        post_customer(f, user, loy, "S001");
    }
    post_customer(f, "u-far", "2000000099999", "S002");

    /* Default limit from the config (3), then the rest. */
    struct answer a = call(f, "GET", "/v1/feed", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_integer_value(json_object_get(a.json, "kv")), 1);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 3);
    assert_true(json_is_true(json_object_get(a.json, "more")));
    json_t *first = json_array_get(json_object_get(a.json, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "op")), "upsert");
    assert_non_null(json_object_get(first, "card"));
    assert_int_equal(json_array_size(json_object_get(first, "keys")), 1);
    char cur[64];
    ts_strlcpy(cur, cursor_of(a.json), sizeof cur);
    assert_int_equal(strncmp(cur, "c1.", 3), 0);
    json_decref(a.json);

    snprintf(target, sizeof target, "/v1/feed?since=%s&limit=10", cur);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 2);
    assert_true(json_is_false(json_object_get(a.json, "more")));
    ts_strlcpy(cur, cursor_of(a.json), sizeof cur);
    json_decref(a.json);

    /* No news: same cursor back. */
    snprintf(target, sizeof target, "/v1/feed?since=%s", cur);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 0);
    assert_string_equal(cursor_of(a.json), cur);
    json_decref(a.json);

    /* limit is clamped, not refused */
    a = call(f, "GET", "/v1/feed?limit=0", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 1);
    json_decref(a.json);
    a = call(f, "GET", "/v1/feed?since=&limit=99999999999999999999", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 5);
    json_decref(a.json);

    /* S002's terminal sees only S002. */
    struct ts_peer_id s2 = f->t01;
    ts_strlcpy(s2.ou, "S002", sizeof s2.ou);
    a = call(f, "GET", "/v1/feed", NULL, NULL, &s2);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 1);
    json_decref(a.json);

    char ep[9];
    snprintf(ep, sizeof ep, "%08x", (unsigned)ts_hub_store_epoch(f->store));
    assert_int_equal(strncmp(cur + 3, ep, 8), 0);
    static const char *bad_cursor[] = {"x",
                                       "c1.",
                                       "c1.1",
                                       "c1.00000000",
                                       "c1.00000000.",
                                       "c1.00000000.01",
                                       "c1.0000000g.1",
                                       "c1.0000000.1",
                                       "c1.00000000.zz",
                                       "c2.00000000.1",
                                       "C1.00000000.1",
                                       "c1.00000000.1%00",
                                       "c1.00000000.11111111111111111",
                                       "c1.00000000-1"};
    for (size_t i = 0; i < sizeof bad_cursor / sizeof bad_cursor[0]; i++) {
        snprintf(target, sizeof target, "/v1/feed?since=%s", bad_cursor[i]);
        a = call(f, "GET", target, NULL, NULL, &f->t01);
        if (a.status != 400)
            fail_msg("cursor '%s' gave %d", bad_cursor[i], a.status);
        json_decref(a.json);
    }
    a = call(f, "GET", "/v1/feed?limit=ten", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 400);
    json_decref(a.json);
    /* A cursor this database never issued: ahead of it (restored from an
     * older backup), or from another database (replaced): resync. */
    char other[TS_HUB_CURSOR_MAX];
    ts_hub_cursor_format(ts_hub_store_epoch(f->store), 0xffffff, other);
    snprintf(target, sizeof target, "/v1/feed?since=%s", other);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 410);
    json_decref(a.json);
    ts_hub_cursor_format(ts_hub_store_epoch(f->store) ^ 1u, 1, other);
    snprintf(target, sizeof target, "/v1/feed?since=%s", other);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 410);
    json_decref(a.json);

    /* Scoping needs a verified certificate with a store of this tenant, and
     * the refusal says which part is missing or wrong. */
    const struct ts_peer_id bare = {.verified = true, .cn = "T99"}; /* neither OU nor O */
    const struct {
        const struct ts_peer_id *peer;
        const char *path, *error;
    } refused[] = {
        {NULL, "/v1/feed", "a verified client certificate is required"},
        {&f->nostore, "/v1/feed", "client certificate has no OU (store)"},
        {&bare, "/v1/feed", "client certificate has no OU (store)"},
        {&bare, "/v1/lookup?order=W-1", "client certificate has no OU (store)"},
        {&bare, "/v1/purchases", "client certificate has no OU (store)"},
        {&f->other_tenant, "/v1/feed", "client certificate belongs to another tenant (O=evil)"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        bool post = strcmp(refused[i].path, "/v1/purchases") == 0;
        a = call(f, post ? "POST" : "GET", refused[i].path, NULL, post ? "{\"batch\":[]}" : NULL,
                 refused[i].peer);
        assert_int_equal(a.status, 403);
        assert_string_equal(json_string_value(json_object_get(a.json, "error")), refused[i].error);
        json_decref(a.json);
    }
}

static void test_lookup(void **state)
{
    struct fx *f = *state;
    post_customer(f, "u-ada", "2000000000015", "S002");
    char key[TS_IDENT_KEY_HEX], target[160];
    assert_int_equal(ts_ident_key(&f->cfg.key, TS_IDENT_LOYALTY, "2000000000015", key), TS_OK);

    /* any store's terminal finds any customer */
    snprintf(target, sizeof target, "/v1/lookup?key=%s", key);
    struct answer a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_integer_value(json_object_get(a.json, "kv")), 1);
    assert_int_equal(strlen(json_string_value(json_object_get(a.json, "cid"))), 32);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a.json, "keys"), 0)), key);
    json_t *card = json_object_get(a.json, "card");
    assert_string_equal(json_string_value(json_object_get(card, "name")), "Ada Lovelace");
    json_t *first = json_array_get(json_object_get(card, "interests"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "signal")), "cart");
    json_t *second = json_array_get(json_object_get(card, "interests"), 1);
    assert_int_equal(json_integer_value(json_object_get(second, "count")), 3);
    json_decref(a.json);

    for (char *p = key; *p; p++) /* upper-case hex is the same key */
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    snprintf(target, sizeof target, "/v1/lookup?key=%s", key);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    json_decref(a.json);

    assert_int_equal(ts_ident_key(&f->cfg.key, TS_IDENT_LOYALTY, "2999999999996", key), TS_OK);
    snprintf(target, sizeof target, "/v1/lookup?key=%s", key);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 404);
    assert_string_equal(json_string_value(json_object_get(a.json, "error")), "unknown customer");
    json_decref(a.json);

    static const char *bad[] = {
        "/v1/lookup", "/v1/lookup?key=", "/v1/lookup?key=abc", "/v1/lookup?key=2000000000015",
        /* 64 characters after key=, not all hex */
        ("/v1/lookup?key=zz6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
         "6b6b6b6b6b6b6b6b6b")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = call(f, "GET", bad[i], NULL, NULL, &f->t01);
        if (a.status != 400)
            fail_msg("%s gave %d", bad[i], a.status);
        json_decref(a.json);
    }
    a = call(f, "GET", target, NULL, NULL, NULL);
    assert_int_equal(a.status, 403);
    json_decref(a.json);
}

/* ?order= with the store restriction and signed codes, and the lookup
 * budget through the handler (429 + Retry-After). The pickup store comes
 * from Order Completed, stored on both SQLite and PostgreSQL. */
static void test_lookup_limits(void **state)
{
    struct fx *f = *state;
    const char *orders =
        "{\"batch\":[{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-1\","
        "\"properties\":{\"order_id\":\"W-1\",\"total\":5,\"pickup_store\":\"S002\"}},"
        "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-2\","
        "\"properties\":{\"order_id\":\"W-2\",\"total\":6,\"store_id\":\"S001\"}},"
        "{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-3\","
        "\"properties\":{\"order_id\":\"W-3\",\"total\":7}}]}";
    struct answer a = call(f, "POST", "/v1/batch", AUTH_OK, orders, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    static const struct {
        const char *order;
        int open, own_store;
    } want[] = {{"W-1", 200, 404}, {"W-2", 200, 200}, {"W-3", 200, 404}};
    for (int pass = 0; pass < 2; pass++) {
        f->cfg.lookup_orders_own_store = pass == 1;
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            char target[64];
            snprintf(target, sizeof target, "/v1/lookup?order=%s", want[i].order);
            a = call(f, "GET", target, NULL, NULL, &f->t01);
            if (a.status != (pass ? want[i].own_store : want[i].open))
                fail_msg("%s (own store %d): %d", want[i].order, pass, a.status);
            json_decref(a.json);
        }
    }
    /* signed codes: HMAC-SHA256(secret, "W-2")[0..16) */
    f->cfg.lookup_orders_own_store = false;
    memset(f->cfg.order_secret, 0x5e, 32);
    f->cfg.order_secret_len = 32;
    unsigned char mac[32];
    assert_int_equal(mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                                     f->cfg.order_secret, 32, (const unsigned char *)"W-2", 3, mac),
                     0);
    char hex[65], target[128];
    ts_hex_encode(mac, 16, hex);
    snprintf(target, sizeof target, "/v1/lookup?order=W-2.%s", hex);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(a.json, "order"), "order_id")), "W-2");
    json_decref(a.json);
    snprintf(target, sizeof target, "/v1/lookup?order=W-1.%s", hex); /* W-2's signature */
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 403);
    json_decref(a.json);
    a = call(f, "GET", "/v1/lookup?order=W-2", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 403);
    json_decref(a.json);
    f->cfg.order_secret_len = 0;

    /* the budget: burst 3, then 429 with Retry-After for this terminal only */
    f->cfg.lookup_burst = 3;
    struct ts_hub_throttle *l = NULL;
    assert_int_equal(ts_hub_throttle_new(&f->cfg, &l), TS_OK);
    f->api.throttle = l;
    for (int i = 0; i < 3; i++) {
        a = call(f, "GET", "/v1/lookup?order=W-2", NULL, NULL, &f->t01);
        assert_int_equal(a.status, 200);
        json_decref(a.json);
    }
    a = call(f, "GET", "/v1/lookup?order=W-2", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 429);
    assert_non_null(strstr(a.headers, "Retry-After: 1\r\n"));
    assert_int_equal(json_integer_value(json_object_get(a.json, "retry_after")), 1);
    json_decref(a.json);
    struct ts_peer_id t02 = f->t01;
    ts_strlcpy(t02.cn, "T02", sizeof t02.cn);
    a = call(f, "GET", "/v1/lookup?order=W-2", NULL, NULL, &t02);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    f->api.throttle = NULL;
    ts_hub_throttle_free(l);
}

static void test_routing(void **state)
{
    struct fx *f = *state;
    struct answer a = call(f, "GET", "/livez", NULL, NULL, NULL);
    assert_int_equal(a.status, 200);
    assert_true(json_is_true(json_object_get(a.json, "ok")));
    json_decref(a.json);
    a = call(f, "GET", "/nope", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 404);
    json_decref(a.json);
    a = call(f, "GET", "/v1/batch", AUTH_OK, NULL, NULL);
    assert_int_equal(a.status, 405);
    assert_non_null(strstr(a.headers, "Allow: POST"));
    json_decref(a.json);
    a = call(f, "DELETE", "/v1/feed", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 405);
    json_decref(a.json);
}

static void test_cursor_and_base64(void **state)
{
    (void)state;
    char c[TS_HUB_CURSOR_MAX];
    uint64_t v;
    uint32_t e;
    const uint64_t seqs[] = {0, 1, 255, 0x123456789abcdefULL, UINT64_MAX};
    const uint32_t epochs[] = {0, 0xabcd, UINT32_MAX};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        for (size_t k = 0; k < sizeof epochs / sizeof epochs[0]; k++) {
            ts_hub_cursor_format(epochs[k], seqs[i], c);
            assert_int_equal(ts_hub_cursor_parse(c, &e, &v), TS_OK);
            assert_true(v == seqs[i] && e == epochs[k]);
        }
    }
    ts_hub_cursor_format(0xabcd, 0, c);
    assert_string_equal(c, "c1.0000abcd.0");
    ts_hub_cursor_format(UINT32_MAX, UINT64_MAX, c);
    assert_string_equal(c, "c1.ffffffff.ffffffffffffffff");

    uint8_t out[64];
    size_t n;
    assert_int_equal(ts_base64_decode("Zm9vYmFy", 8, out, sizeof out, &n), TS_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(ts_base64_decode("Zm9vYg==", 8, out, sizeof out, &n), TS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ts_base64_decode("Zm9vYg", 6, out, sizeof out, &n), TS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ts_base64_decode("Zm9vY", 5, out, sizeof out, &n), TS_ERR_INVAL);
    assert_int_equal(ts_base64_decode("Zm9v=g==", 8, out, sizeof out, &n), TS_ERR_INVAL);
    assert_int_equal(ts_base64_decode("Zm9vYmFy", 8, out, 5, &n), TS_ERR_INVAL);
    assert_int_equal(ts_base64_decode("", 0, out, sizeof out, &n), TS_OK);
    assert_int_equal(n, 0);
}

/* A raw answer: status, extra headers and the body bytes as sent. */
struct raw {
    int status;
    char headers[512];
    ts_buf body;
};

/* GET target as t01 with an Accept-Encoding header (NULL: none). */
static struct raw get_raw(struct fx *f, const char *target, const char *accept_encoding)
{
    struct ts_http_msg msg;
    memset(&msg, 0, sizeof msg);
    char hname[] = "Accept-Encoding", hval[128];
    if (accept_encoding) {
        ts_strlcpy(hval, accept_encoding, sizeof hval);
        msg.headers[0] = (struct ts_http_header){.name = hname, .value = hval};
        msg.nheaders = 1;
    }
    struct ts_httpd_req req = {
        .method = "GET",
        .target = target,
        .msg = &msg,
        .body = "",
        .peer = &f->t01,
        .remote_addr = "127.0.0.1",
    };
    assert_int_equal(ts_http_target_path(target, req.path, sizeof req.path), TS_OK);
    struct ts_httpd_resp resp;
    memset(&resp, 0, sizeof resp);
    ts_hub_api_handle(&f->api, &req, &resp);
    struct raw r = {.status = resp.status, .body = resp.body};
    ts_strlcpy(r.headers, resp.extra_headers, sizeof r.headers);
    return r;
}

/*
 * gzip: a feed page over 1 KiB goes compressed to a client that accepts it,
 * and inflates to exactly the page a client without gzip gets; small
 * answers go plain; either way the answer says it varies by encoding.
 */
static void test_feed_gzip(void **state)
{
    struct fx *f = *state;
    char user[16], loy[16];
    for (int i = 0; i < 3; i++) {
        snprintf(user, sizeof user, "g%d", i);
        snprintf(loy, sizeof loy, "20000000%05d", i);
        post_customer(f, user, loy, "S001");
    }
    struct raw plain = get_raw(f, "/v1/feed?limit=3", NULL);
    assert_int_equal(plain.status, 200);
    assert_true(plain.body.len > TS_GZIP_MIN_BODY);
    assert_null(strstr(plain.headers, "Content-Encoding"));
    assert_non_null(strstr(plain.headers, "Vary: Accept-Encoding\r\n"));

    struct raw gz = get_raw(f, "/v1/feed?limit=3", "br, gzip");
    assert_int_equal(gz.status, 200);
    assert_non_null(strstr(gz.headers, "Content-Encoding: gzip\r\n"));
    assert_non_null(strstr(gz.headers, "Vary: Accept-Encoding\r\n"));
    assert_true(gz.body.len < plain.body.len / 2);
    ts_buf out = {0};
    assert_int_equal(ts_gzip_inflate(gz.body.data, gz.body.len, 1 << 20, &out), TS_OK);
    assert_int_equal(out.len, plain.body.len);
    assert_memory_equal(out.data, plain.body.data, out.len);
    ts_buf_free(&out);
    ts_buf_free(&gz.body);

    /* gzip;q=0 means no; a small page is not worth it. */
    gz = get_raw(f, "/v1/feed?limit=3", "gzip;q=0");
    assert_null(strstr(gz.headers, "Content-Encoding"));
    ts_buf_free(&gz.body);
    gz = get_raw(f, "/v1/feed?limit=1&since=c1.00000000.0", "gzip");
    assert_int_equal(gz.status, 410); /* another epoch */
    assert_null(strstr(gz.headers, "Content-Encoding"));
    ts_buf_free(&gz.body);
    json_t *j = json_loadb(plain.body.data, plain.body.len, 0, NULL);
    char target[128];
    snprintf(target, sizeof target, "/v1/feed?since=%s", cursor_of(j));
    json_decref(j);
    gz = get_raw(f, target, "gzip");
    assert_int_equal(gz.status, 200);
    assert_true(gz.body.len < TS_GZIP_MIN_BODY);
    assert_null(strstr(gz.headers, "Content-Encoding"));
    assert_non_null(strstr(gz.headers, "Vary: Accept-Encoding"));
    ts_buf_free(&gz.body);
    ts_buf_free(&plain.body);
}

struct poster {
    struct fx *f;
    int delay_ms;
};

static void *post_later(void *arg)
{
    struct poster *p = arg;
    ts_sleep_ms(p->delay_ms);
    post_customer(p->f, "u-late", "2000000055555", "S001");
    return NULL;
}

/* ?wait: nothing new holds the request up to that many seconds; a batch
 * committed meanwhile answers it at once; bad values are refused. */
static void test_feed_long_poll(void **state)
{
    struct fx *f = *state;
    post_customer(f, "u1", "2000000000015", "S001");
    struct answer a = call(f, "GET", "/v1/feed?wait=5", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200); /* something to send: at once */
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 1);
    char target[160], cur[64];
    ts_strlcpy(cur, cursor_of(a.json), sizeof cur);
    json_decref(a.json);

    snprintf(target, sizeof target, "/v1/feed?since=%s&wait=1", cur);
    int64_t t0 = ts_now_mono_ms();
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    int64_t dt = ts_now_mono_ms() - t0;
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 0);
    assert_string_equal(cursor_of(a.json), cur);
    assert_true(dt >= 950 && dt < 3000);
    json_decref(a.json);

    pthread_t th;
    struct poster p = {f, 300};
    assert_int_equal(pthread_create(&th, NULL, post_later, &p), 0);
    snprintf(target, sizeof target, "/v1/feed?since=%s&wait=20", cur);
    t0 = ts_now_mono_ms();
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    dt = ts_now_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 1);
    assert_true(dt >= 250 && dt < 2000);
    json_decref(a.json);

    static const char *const bad[] = {"/v1/feed?wait=soon", "/v1/feed?wait=-1",
                                      "/v1/feed?wait=1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = call(f, "GET", bad[i], NULL, NULL, &f->t01);
        assert_int_equal(a.status, 400);
        json_decref(a.json);
    }
}

/* A cursor older than the newest pruned tombstone is answered 410 (it may
 * have missed an erasure); a full sync is not. */
static void test_feed_gone_below_horizon(void **state)
{
    struct fx *f = *state;
    post_customer(f, "u1", "2000000000015", "S001");
    post_customer(f, "u2", "2000000000022", "S001");
    struct answer a = call(f, "GET", "/v1/feed", NULL, NULL, &f->t01);
    char old[64], target[128];
    ts_strlcpy(old, cursor_of(a.json), sizeof old);
    json_decref(a.json);
    assert_int_equal(ts_hub_store_erase(f->store, "u1", NULL, NOW, NULL), TS_OK);
    snprintf(target, sizeof target, "/v1/feed?since=%s", old);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    json_t *it = json_array_get(json_object_get(a.json, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(it, "op")), "erase");
    json_decref(a.json);

    assert_int_equal(
        ts_hub_store_prune(f->store, NOW + 91LL * 24 * 3600 * 1000, 90LL * 24 * 3600 * 1000, NULL),
        TS_OK);
    a = call(f, "GET", target, NULL, NULL, &f->t01);
    assert_int_equal(a.status, 410);
    json_decref(a.json);
    a = call(f, "GET", "/v1/feed", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "items")), 1);
    json_decref(a.json);
}

/* With a second key configured, pages and lookups name both versions. */
static void test_prev_key_versions(void **state)
{
    struct fx *f = *state;
    post_customer(f, "u1", "2000000000015", "S001");
    struct ts_tenant_key k2;
    assert_int_equal(
        ts_tenant_key_parse("2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b", 2,
                            &k2),
        TS_OK);
    assert_int_equal(ts_hub_store_set_keys(f->store, &k2, NULL), TS_OK);
    struct answer a = call(f, "GET", "/v1/feed", NULL, NULL, &f->t01);
    assert_int_equal(a.status, 200);
    assert_int_equal(json_integer_value(json_object_get(a.json, "kv")), 1);
    assert_int_equal(json_integer_value(json_object_get(a.json, "prev_kv")), 2);
    json_t *it = json_array_get(json_object_get(a.json, "items"), 0);
    json_t *pk = json_object_get(it, "prev_keys");
    assert_int_equal(json_array_size(pk), 1);
    char target[128];
    snprintf(target, sizeof target, "/v1/lookup?key=%s", json_string_value(json_array_get(pk, 0)));
    json_decref(a.json);
    a = call(f, "GET", target, NULL, NULL, &f->t01); /* found by the other version's key */
    assert_int_equal(a.status, 200);
    assert_int_equal(json_integer_value(json_object_get(a.json, "prev_kv")), 2);
    assert_int_equal(json_array_size(json_object_get(a.json, "prev_keys")), 1);
    json_decref(a.json);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_batch_accepted),
        T(test_batch_refused_changes_nothing),
        T(test_feed),
        T(test_lookup),
        T(test_lookup_limits),
        T(test_routing),
        T(test_cursor_and_base64),
        T(test_feed_gzip),
        T(test_feed_long_poll),
        T(test_feed_gone_below_horizon),
        T(test_prev_key_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
