/*
 * Unit tests for the agent's loopback API (agent/api.c): a real agent on a
 * temporary state directory, the API on an ephemeral port, and a plain
 * socket client that checks the bytes that come back — Host guard, bearer
 * token, status codes, JSON shapes and the page (the SSE stream:
 * test_agent_sse.c).
 * No syncer runs, so the link is never online and no hub is ever asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_api_fx.h"

static void test_host_guard(void **state)
{
    struct fx *f = *state;
    char h[64];
    expect_error(http(f, "GET", "/livez", "evil.example", NULL, NULL), 421);
    expect_error(http(f, "GET", "/", "evil.example", NULL, NULL), 421);
    expect_error(http(f, "GET", "/api/v1/events", "evil.example", NULL, NULL), 421);
    /* A rebinding page would send its own name, even with our token. */
    expect_error(http(f, "POST", "/api/v1/scan", "evil.example:80", "", "{\"code\":\"1\"}"), 421);
    snprintf(h, sizeof h, "127.0.0.1:%d", f->port + 1);
    expect_error(http(f, "GET", "/livez", h, NULL, NULL), 421);

    const char *ok[] = {"127.0.0.1:%d", "localhost:%d", "[::1]:%d"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(h, sizeof h, ok[i], f->port);
        struct resp r = http(f, "GET", "/livez", h, NULL, NULL);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    static const char nohost[] = "GET /livez HTTP/1.0\r\n\r\n";
    struct resp r = raw_request(f->port, nohost, sizeof nohost - 1);
    assert_int_equal(r.status, 400);
    resp_free(&r);
}

static void test_bearer(void **state)
{
    struct fx *f = *state;
    const char *body = "{\"code\":\"CARD-0001\"}";
    struct resp r = http(f, "POST", "/api/v1/scan", NULL, NULL, body);
    assert_int_equal(r.status, 401);
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "error", NULL), "missing or wrong bearer token");
    json_decref(j);
    resp_free(&r);
    expect_error(http(f, "POST", "/api/v1/scan", NULL, "not-the-token", body), 401);
    char almost[80];
    snprintf(almost, sizeof almost, "%.*sX", (int)strlen(f->a->token) - 1, f->a->token);
    expect_error(http(f, "POST", "/api/v1/scan", NULL, almost, body), 401);
    expect_error(http(f, "POST", "/api/v1/session/clear", NULL, NULL, "{}"), 401);
    /* Nothing happened. */
    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 204);
    resp_free(&r);
}

static void test_scan_and_session(void **state)
{
    struct fx *f = *state;
    struct resp r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    resp_free(&r);

    r = http(f, "POST", "/api/v1/scan", NULL, "",
             "{\"code\":\"CARD-UNKNOWN-0042\",\"aim\":\"]C0\"}");
    assert_int_equal(r.status, 200);
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "status", NULL), "unknown");
    assert_string_equal(jstr(j, "link", NULL), "offline");
    assert_string_equal(jstr(j, "scan", "code_masked"), "…0042");
    assert_string_equal(jstr(j, "scan", "aim"), "]C0");
    assert_null(strstr(r.body, "CARD-UNKNOWN")); /* never echoed raw */
    json_decref(j);
    char *posted = strdup(r.body);
    resp_free(&r);

    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_decref(json_body(&r));
    assert_string_equal(r.body, posted);
    resp_free(&r);
    free(posted);

    r = http(f, "POST", "/api/v1/session/clear", NULL, "", NULL);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    resp_free(&r);
    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 204);
    resp_free(&r);
}

static void test_bad_requests(void **state)
{
    struct fx *f = *state;
    const char *bad[] = {"{\"code\":",
                         "[1,2]",
                         "{}",
                         "{\"code\":5}",
                         "{\"code\":\"\"}",
                         "{\"code\":\"ok\",\"aim\":7}",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(http(f, "POST", "/api/v1/scan", NULL, "", bad[i]), 400);

    struct resp r = http(f, "POST", "/api/v1/scan", NULL, "", "{\"code\":\"1234\",\"aim\":\"xx\"}");
    assert_int_equal(r.status, 400);
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "error", NULL), "invalid code");
    json_decref(j);
    resp_free(&r);

    /* 64 KiB + 1 of otherwise valid JSON. */
    size_t big = 64 * 1024 + 1;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    memcpy(body, "{\"code\":\"1234\"}", 15);
    body[big] = '\0';
    expect_error(http(f, "POST", "/api/v1/scan", NULL, "", body), 413);
    free(body);

    /* Without Content-Length (chunked) the cap holds too. */
    ts_buf q = {0};
    ts_buf_printf(&q,
                  "POST /api/v1/scan HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                  f->host, f->a->token);
    for (int i = 0; i < 20; i++) {
        ts_buf_printf(&q, "1000\r\n");
        for (int k = 0; k < 0x1000; k++)
            ts_buf_append(&q, " ", 1);
        ts_buf_puts(&q, "\r\n");
    }
    ts_buf_puts(&q, "0\r\n\r\n");
    expect_error(raw_request(f->port, q.data, q.len), 413);
    ts_buf_free(&q);

    expect_error(http(f, "GET", "/api/v1/nope", NULL, NULL, NULL), 404);
    expect_error(http(f, "GET", "/index.php", NULL, NULL, NULL), 404);
    r = http(f, "DELETE", "/api/v1/session", NULL, "", NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(&r, "Allow"), "GET, HEAD");
    resp_free(&r);
    r = http(f, "GET", "/api/v1/scan", NULL, NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(&r, "Allow"), "POST");
    json_decref(json_body(&r));
    resp_free(&r);
    /* CORS preflights get nothing that would let a page read us. */
    r = http(f, "OPTIONS", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
}

static void test_page_and_probes(void **state)
{
    struct fx *f = *state;
    struct resp r = http(f, "GET", "/", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    assert_non_null(strstr(header(&r, "Content-Security-Policy"), "default-src 'self'"));
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    /* The embedded page with the page key filled in (session.c); the
     * issue's budget is 50 KB for everything the page needs. */
    assert_true(r.body_len <= 50 * 1024);
    assert_non_null(strstr(r.body, f->a->page_key));
    assert_null(strstr(r.body, f->a->token));
    assert_null(strstr(r.body, "@@"));
    assert_non_null(strstr(r.body, "<html"));
    assert_non_null(strstr(r.body, "/api/v1/events"));
    assert_null(strstr(r.body, "http://"));
    assert_null(strstr(r.body, "https://"));
    assert_null(strstr(r.body, "innerHTML"));
    resp_free(&r);

    r = http(f, "GET", "/livez", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *j = json_body(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    resp_free(&r);
    r = http(f, "GET", "/readyz", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_true(json_is_true(json_object_get(j, "ready")));
    json_decref(j);
    resp_free(&r);
    r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_string_equal(jstr(j, "version", NULL), TS_VERSION);
    assert_string_equal(jstr(j, "link", NULL), "offline");
    json_decref(j);
    resp_free(&r);
}

/*
 * A scan of a cached customer: the POST answers only after `scan` and
 * `customer` were published, the session carries the card with its
 * freshness, every open stream gets it, and the raw code is nowhere.
 */
static void test_scan_found_from_cache(void **state)
{
    struct fx *f = *state;
    struct sse s1, s2;
    seed_card(f, "2100-0199-1427-0", "c-ada", ADA_CARD);
    sse_open(f, &s1, NULL);
    sse_open(f, &s2, NULL);

    uint64_t before = ts_bus_last_id(f->a->bus);
    struct resp r = http(f, "POST", "/api/v1/scan", NULL, "",
                         "{\"code\":\" 2100019914270\\r\\n\",\"aim\":\"]E0\"}");
    assert_int_equal(r.status, 200);
    assert_true(ts_bus_last_id(f->a->bus) >= before + 2); /* published before the answer */
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "status", NULL), "found");
    assert_string_equal(jstr(j, "source", NULL), "cache");
    assert_string_equal(jstr(j, "link", NULL), "offline");
    assert_string_equal(jstr(j, "card", "name"), "Ada Lovelace");
    assert_string_equal(jstr(j, "card", "tier"), "gold");
    assert_string_equal(jstr(j, "scan", "code_masked"), "…4270");
    assert_string_equal(jstr(j, "scan", "aim"), "]E0");
    assert_string_equal(jstr(j, "scan", "kind"), "loyalty");
    int64_t synced;
    assert_int_equal(ts_iso8601_parse(jstr(j, "synced_at", NULL), &synced), TS_OK);
    assert_true(llabs(ts_now_wall_ms() - synced) < 60000);
    assert_null(strstr(r.body, "2100019914270"));
    json_decref(j);
    char *posted = strdup(r.body);
    resp_free(&r);

    for (struct sse *s = &s1; s; s = s == &s1 ? &s2 : NULL) {
        struct event ev;
        assert_true(sse_next(s, &ev, IO_TIMEOUT_MS));
        assert_string_equal(ev.type, "scan");
        assert_null(strstr(ev.data, "2100019914270"));
        free(ev.data);
        assert_true(sse_next(s, &ev, IO_TIMEOUT_MS));
        assert_string_equal(ev.type, "customer");
        assert_string_equal(ev.data, posted); /* the same session the POST answered */
        free(ev.data);
    }
    sse_close(&s1);
    sse_close(&s2);

    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, posted);
    resp_free(&r);
    free(posted);

    /* Another code of no one is unknown, and replaces the session. */
    r = http(f, "POST", "/api/v1/scan", NULL, "", "{\"code\":\"2100019914287\"}");
    j = json_body(&r);
    assert_string_equal(jstr(j, "status", NULL), "unknown");
    assert_null(json_object_get(j, "card"));
    json_decref(j);
    resp_free(&r);
}

static void test_status_fields(void **state)
{
    struct fx *f = *state;
    struct resp r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    json_t *j = json_body(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "cards")), 0);
    assert_true(json_is_false(json_object_get(j, "cursor_saved")));
    assert_true(json_is_null(json_object_get(j, "last_sync")));
    assert_true(json_is_null(json_object_get(j, "last_error")));
    assert_string_equal(jstr(j, "hub", NULL), "https://localhost:1");
    assert_string_equal(jstr(j, "store", NULL), "S001");
    assert_string_equal(jstr(j, "terminal", NULL), "T01");
    json_decref(j);
    resp_free(&r);

    seed_card(f, "CARD-0001", "c1", ADA_CARD);
    ts_agent_note_page(f->a, 1, ts_now_wall_ms());
    ts_agent_set_link(f->a, false, "feed request failed: TLS: certificate expired");
    r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    j = json_body(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "cards")), 1);
    assert_true(json_is_true(json_object_get(j, "cursor_saved")));
    int64_t at;
    assert_int_equal(ts_iso8601_parse(jstr(j, "last_sync", NULL), &at), TS_OK);
    assert_string_equal(jstr(j, "last_error", NULL),
                        "feed request failed: TLS: certificate expired");
    assert_string_equal(jstr(j, "link", NULL), "offline");
    assert_int_equal(json_integer_value(json_object_get(j, "feed_pages_applied")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "feed_items_applied")), 1);
    json_decref(j);
    resp_free(&r);

    ts_agent_set_link(f->a, true, NULL);
    r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    j = json_body(&r);
    assert_string_equal(jstr(j, "link", NULL), "online");
    json_decref(j);
    resp_free(&r);
}

static void test_listen_errors(void **state)
{
    struct fx *f = *state;
    struct ts_api *other = NULL;
    char err[256], want[128];
    struct ts_agent_parts deps = {.core = f->a};
    int saved_port = f->a->cfg.api_port;
    f->a->cfg.api_port = f->port;
    assert_int_not_equal(ts_api_start(&deps, &other, err, sizeof err), TS_OK);
    assert_null(other);
    snprintf(want, sizeof want, "cannot listen on 127.0.0.1:%d: Address already in use", f->port);
    assert_string_equal(err, want);
    f->a->cfg.api_port = saved_port;

    char saved_host[sizeof f->a->cfg.api_host];
    memcpy(saved_host, f->a->cfg.api_host, sizeof saved_host);
    strcpy(f->a->cfg.api_host, "0.0.0.0");
    assert_int_equal(ts_api_start(&deps, &other, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "loopback"));
    memcpy(f->a->cfg.api_host, saved_host, sizeof saved_host);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_and_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_and_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_found_from_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
