/*
 * The hub purchase tests' fixture (test_hub_purchases.c, test_hub_forward.c):
 * a store on TS_TEST_PG or in-memory SQLite with a fixed clock, the real API
 * handler called with hand-built terminal identities, and purchase events.
 */
#ifndef TS_TEST_HUB_PURCHASES_FX_H
#define TS_TEST_HUB_PURCHASES_FX_H

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

static inline int64_t fixed_now(void)
{
    return NOW;
}

struct fx {
    struct ts_hub_config cfg;
    struct ts_hub_store *store;
    struct ts_hub_api api;
    struct ts_peer_id t01, s002, nostore;
};

static inline int setup_with(void **state, const char *extra)
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

static inline int setup(void **state)
{
    return setup_with(state, "");
}

static inline int teardown(void **state)
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

static inline struct answer call(struct fx *f, const char *method, const char *target,
                                 const char *auth, const char *body, const struct ts_peer_id *peer)
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
static inline void event(char *out, size_t outsz, const char *mid, const char *receipt,
                         const char *store, const char *cid, const char *sku, const char *currency)
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

static inline struct answer post(struct fx *f, const struct ts_peer_id *peer, const char *e1,
                                 const char *e2)
{
    char body[8192];
    snprintf(body, sizeof body, "{\"batch\":[%s%s%s],\"sentAt\":\"2026-05-28T10:00:01Z\"}", e1,
             e2 ? "," : "", e2 ? e2 : "");
    return call(f, "POST", "/v1/purchases", NULL, body, peer);
}

static inline long long pstat(struct fx *f, const char *name)
{
    ts_buf b = {0};
    assert_int_equal(ts_hub_store_stats(f->store, &b), TS_OK);
    json_t *j = json_loads(b.data, 0, NULL);
    long long n = json_integer_value(json_object_get(json_object_get(j, "purchases"), name));
    json_decref(j);
    ts_buf_free(&b);
    return n;
}

static inline size_t count(json_t *a, const char *name)
{
    return json_array_size(json_object_get(a, name));
}

/* A customer of S001 with two products in the online cart; returns the cid. */
static inline void online_customer(struct fx *f, char cid[64])
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
static inline json_t *feed_card(struct fx *f, const char *cid)
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

static inline bool in_cart(json_t *card, const char *pid)
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

#endif
