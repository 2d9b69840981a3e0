/*
 * The agent's hub link (agent/hublink.c) as every live lookup uses it: a
 * real agent against a plain-HTTP stand-in hub (ts_httpd). A receipt scan
 * that asks the hub must check the card's key version and cache the card,
 * exactly like a loyalty scan does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "tmpdir.h"
#include "httpd.h"
#include "hublink.h"

#define KEY "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
#define CARD "{\"cid\":\"c-ada\",\"name\":\"Ada Lovelace\",\"tier\":\"gold\"}"

struct fx {
    char dir[64];
    struct ts_httpd *hub;
    struct ts_agent *a;
    pthread_mutex_t mu;
    int kv;                      /* the key version the stand-in hub answers with */
    char rkey[TS_IDENT_KEY_HEX]; /* the receipt's identifier key */
    char lkey[TS_IDENT_KEY_HEX]; /* the customer's loyalty key */
    int requests;
};

/* /v1/lookup?receipt= and ?key=: Ada's card with both keys, under fx->kv. */
static void hub_handler(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct fx *f = ud;
    pthread_mutex_lock(&f->mu);
    f->requests++;
    int kv = f->kv;
    pthread_mutex_unlock(&f->mu);
    const char *q = strchr(req->target, '?');
    if (strcmp(req->path, "/v1/lookup") != 0 || !q) {
        ts_httpd_error(resp, 404, "unknown");
        return;
    }
    ts_buf_printf(&resp->body, "{\"kv\":%d,\"cid\":\"c-ada\",\"keys\":[\"%s\",\"%s\"],\"card\":%s",
                  kv, f->lkey, f->rkey, CARD);
    if (strncmp(q, "?receipt=", 9) == 0)
        ts_buf_puts(&resp->body, ",\"purchase\":{\"receipt\":\"R-1\",\"store\":\"S002\","
                                 "\"total\":59.9,\"currency\":\"EUR\",\"status\":\"in store\"}");
    ts_buf_puts(&resp->body, "}");
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char text[1024], err[256], norm[64];
    struct ts_agent_config cfg;
    assert_non_null(f);
    ts_log_set_level(TS_LOG_ERROR);
    pthread_mutex_init(&f->mu, NULL);
    f->kv = 1;
    struct ts_httpd_opts o = {.listen = "127.0.0.1:0"};
    assert_int_equal(ts_httpd_start(&o, hub_handler, f, &f->hub, err, sizeof err), TS_OK);
    strcpy(f->dir, "/tmp/ts-hublink-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(text, sizeof text,
             "[agent]\nstore = S001\nterminal = T01\nstate_dir = %s\n"
             "[hub]\nurl = http://127.0.0.1:%d\nlookup_timeout_ms = 5000\n"
             "[identity]\ntenant_key = " KEY "\n[api]\nlisten = 127.0.0.1:0\n",
             f->dir, ts_httpd_port(f->hub));
    assert_int_equal(ts_agent_config_parse("test.conf", text, &cfg, err, sizeof err), TS_OK);
    assert_int_equal(ts_agent_open(&cfg, &f->a, err, sizeof err), TS_OK);
    assert_int_equal(ts_ident_normalize("R-1", 3, norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(&f->a->cfg.tenant, TS_IDENT_RECEIPT, norm, f->rkey), TS_OK);
    assert_int_equal(ts_ident_normalize("2100019914270", 13, norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(&f->a->cfg.tenant, TS_IDENT_LOYALTY, norm, f->lkey), TS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ts_agent_close(f->a);
    ts_httpd_stop(f->hub);
    ts_test_rm_tree(f->dir);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static bool cached(struct fx *f, const char *key)
{
    char *card = NULL;
    int64_t synced = 0;
    pthread_mutex_lock(&f->a->cache_mu);
    int rc = ts_cache_lookup(f->a->cache, key, &card, &synced);
    pthread_mutex_unlock(&f->a->cache_mu);
    free(card);
    return rc == TS_OK;
}

static json_t *resolve_receipt(struct fx *f, bool online)
{
    char keys[1][TS_IDENT_KEY_HEX];
    memcpy(keys[0], f->rkey, sizeof keys[0]);
    json_t *sess = json_object();
    int rc = ts_agent_resolve_sale(f->a, TS_IDENT_RECEIPT, "R-1", keys, 1, online, sess);
    if (rc != TS_OK) {
        json_decref(sess);
        return NULL;
    }
    return sess;
}

/* A receipt scan the hub answers fills the cache, so the same receipt (and
 * the buyer's loyalty card) is found with the link down. */
static void test_receipt_lookup_fills_cache(void **state)
{
    struct fx *f = *state;
    json_t *s = resolve_receipt(f, true);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(s, "source")), "live");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "card"), "name")),
                        "Ada Lovelace");
    assert_non_null(json_object_get(s, "purchase"));
    json_decref(s);
    assert_true(cached(f, f->rkey));
    assert_true(cached(f, f->lkey));

    s = resolve_receipt(f, false); /* offline now */
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(s, "source")), "cache");
    assert_string_equal(json_string_value(json_object_get(json_object_get(s, "card"), "cid")),
                        "c-ada");
    json_decref(s);
}

/* A card keyed under a tenant key version we do not hold is refused for a
 * receipt scan as for a loyalty scan: not shown, not cached. The sale the
 * hub knows is still shown. */
static void test_receipt_lookup_checks_key_version(void **state)
{
    struct fx *f = *state;
    f->kv = 7;
    json_t *s = resolve_receipt(f, true);
    assert_non_null(s);
    assert_true(json_is_null(json_object_get(s, "card")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(s, "purchase"), "receipt")), "R-1");
    json_decref(s);
    assert_false(cached(f, f->rkey));
    assert_false(cached(f, f->lkey));
}

/* The loyalty path through the same link: found and cached under our key
 * version, refused under another. */
static void test_loyalty_lookup_same_rules(void **state)
{
    struct fx *f = *state;
    struct ts_scan sc;
    char *sess = NULL;
    ts_agent_set_link(f->a, true, NULL);
    f->kv = 7;
    assert_int_equal(ts_scan_from_text("test", "2100019914270", 13, NULL, &sc), TS_OK);
    assert_int_equal(ts_agent_scan(f->a, &sc, &sess), TS_OK);
    assert_non_null(strstr(sess, "\"unknown\""));
    free(sess);
    assert_false(cached(f, f->lkey));
    f->kv = 1;
    assert_int_equal(ts_agent_scan(f->a, &sc, &sess), TS_OK);
    assert_non_null(strstr(sess, "Ada Lovelace"));
    free(sess);
    assert_true(cached(f, f->lkey));
    assert_true(ts_hublink_answers(f->a->hub) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receipt_lookup_fills_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receipt_lookup_checks_key_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loyalty_lookup_same_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
