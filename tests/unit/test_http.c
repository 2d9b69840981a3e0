/* Unit tests for the HTTP/1.1 parser and the target helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "httpd.h"
#include "ts.h"

#define MAXB (64 * 1024)

/* Parses s (a C string) in one go. */
static int parse(struct ts_http_msg *m, bool req, const char *s, size_t *consumed)
{
    ts_http_msg_clear(m);
    return ts_http_parse(m, req, s, strlen(s), MAXB, consumed);
}

static void test_request_basic(void **state)
{
    (void)state;
    struct ts_http_msg m = {0};
    size_t used = 0;
    const char *r = "GET /v1/feed?since=abc&limit=5 HTTP/1.1\r\n"
                    "Host: hub:8443\r\n"
                    "X-Spaces:   padded value \t\r\n"
                    "\r\n";
    assert_int_equal(parse(&m, true, r, &used), TS_OK);
    assert_int_equal(used, strlen(r));
    assert_string_equal(m.method, "GET");
    assert_string_equal(m.target, "/v1/feed?since=abc&limit=5");
    assert_int_equal(m.minor_version, 1);
    assert_int_equal(m.nheaders, 2);
    assert_string_equal(ts_http_header(&m, "host"), "hub:8443");
    assert_string_equal(ts_http_header(&m, "X-SPACES"), "padded value");
    assert_null(ts_http_header(&m, "Content-Length"));
    assert_true(m.keep_alive);
    assert_int_equal(m.body.len, 0);
    ts_http_msg_clear(&m);
}

static void test_request_body_incremental(void **state)
{
    (void)state;
    const char *r = "POST /v1/purchases HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
    size_t n = strlen(r), used = 0;
    struct ts_http_msg m = {0};
    /* Every prefix is "need more"; the whole is one message. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ts_http_parse(&m, true, r, i, MAXB, &used), TS_ERR_AGAIN);
    assert_int_equal(ts_http_parse(&m, true, r, n, MAXB, &used), TS_OK);
    assert_int_equal(used, n);
    assert_string_equal(m.method, "POST");
    assert_int_equal(m.body.len, 11);
    assert_string_equal(m.body.data, "hello world");
    ts_http_msg_clear(&m);
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    struct ts_http_msg m = {0};
    size_t used;
    assert_int_equal(parse(&m, true, "GET / HTTP/1.0\r\n\r\n", &used), TS_OK);
    assert_false(m.keep_alive);
    assert_int_equal(m.minor_version, 0);
    assert_int_equal(parse(&m, true, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &used),
                     TS_OK);
    assert_true(m.keep_alive);
    assert_int_equal(parse(&m, true, "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &used),
                     TS_OK);
    assert_false(m.keep_alive);
    /* A response that runs until close can never be kept. */
    assert_int_equal(parse(&m, false, "HTTP/1.1 200 OK\r\n\r\nabc", &used), TS_ERR_AGAIN);
    ts_http_msg_clear(&m);
}

static void test_chunked(void **state)
{
    (void)state;
    const char *r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Type: application/json\r\n\r\n"
                    "4\r\n{\"a\"\r\n"
                    "A;ext=1\r\n:123456789\r\n"
                    "1\r\n}\r\n"
                    "0\r\nX-Trailer: yes\r\n\r\n"
                    "HTTP/1.1 204 No Content\r\n\r\n";
    size_t n = strlen(r), used = 0;
    struct ts_http_msg m = {0};
    /* Byte by byte: the chunk walk resumes and still yields one message. */
    size_t i;
    int rc = TS_ERR_AGAIN;
    for (i = 1; i <= n && rc == TS_ERR_AGAIN; i++)
        rc = ts_http_parse(&m, false, r, i, MAXB, &used);
    assert_int_equal(rc, TS_OK);
    assert_int_equal(m.status, 200);
    assert_string_equal(m.body.data, "{\"a\":123456789}");
    assert_true(m.keep_alive);
    assert_string_equal(r + used, "HTTP/1.1 204 No Content\r\n\r\n");
    size_t first = used;
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, false, r + first, n - first, MAXB, &used), TS_OK);
    assert_int_equal(m.status, 204);
    assert_int_equal(m.body.len, 0);
    ts_http_msg_clear(&m);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *r = "\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
                    "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *expect[] = {"/a", "/b", "/c"};
    size_t n = strlen(r), off = 0, used;
    struct ts_http_msg m = {0};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ts_http_parse(&m, true, r + off, n - off, MAXB, &used), TS_OK);
        assert_string_equal(m.target, expect[k]);
        if (k == 1)
            assert_string_equal(m.body.data, "xyz");
        off += used;
        ts_http_msg_clear(&m);
    }
    assert_int_equal(off, n);
    assert_int_equal(ts_http_parse(&m, true, r + off, 0, MAXB, &used), TS_ERR_AGAIN);
}

static void test_responses_without_body(void **state)
{
    (void)state;
    struct ts_http_msg m = {0};
    size_t used;
    /* 304 and 1xx never have a body, whatever Content-Length says. */
    assert_int_equal(
        parse(&m, false, "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", &used), TS_OK);
    assert_int_equal(m.body.len, 0);
    assert_int_equal(parse(&m, false, "HTTP/1.1 100 Continue\r\n\r\n", &used), TS_OK);
    assert_int_equal(m.status, 100);
    /* A response to HEAD: the caller says so through m->method. */
    const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    ts_http_msg_clear(&m);
    strcpy(m.method, "HEAD");
    assert_int_equal(ts_http_parse(&m, false, h, strlen(h), MAXB, &used), TS_OK);
    assert_int_equal(used, strlen(h));
    assert_int_equal(m.body.len, 0);
    /* Status line without a reason phrase. */
    assert_int_equal(parse(&m, false, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", &used), TS_OK);
    assert_int_equal(m.status, 200);
    ts_http_msg_clear(&m);
}

static void test_until_close(void **state)
{
    (void)state;
    const char *r = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
    struct ts_http_msg m = {0};
    size_t used;
    assert_int_equal(ts_http_parse(&m, false, r, strlen(r), MAXB, &used), TS_ERR_AGAIN);
    assert_int_equal(ts_http_parse_eof(&m, r, strlen(r), MAXB, &used), TS_OK);
    assert_string_equal(m.body.data, "all of it");
    assert_false(m.keep_alive);
    ts_http_msg_clear(&m);
    /* A Content-Length response cut short is a truncation, not a success. */
    const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_int_equal(ts_http_parse_eof(&m, t, strlen(t), MAXB, &used), TS_ERR_CLOSED);
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse_eof(&m, "HTTP/1.1 2", 10, MAXB, &used), TS_ERR_CLOSED);
    ts_http_msg_clear(&m);
}

/* RFC 9112 §6.1: HTTP/1.0 has no chunked coding, so a 1.0 message with
 * Transfer-Encoding is faulty framing (a smuggling vector between a 1.0 proxy
 * and us): refused whatever it asks for, even keep-alive. The same body as
 * 1.1 parses, so it is the version that is refused. */
static void test_http10_transfer_encoding(void **state)
{
    (void)state;
    struct ts_http_msg m = {0};
    size_t used;
    const char *req10 = "POST /v1/batch HTTP/1.0\r\nConnection: keep-alive\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(parse(&m, true, req10, &used), TS_ERR_PROTO);
    assert_false(m.keep_alive);
    const char *req10_clen = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                             "Content-Length: 5\r\n\r\nhello";
    assert_int_equal(parse(&m, true, req10_clen, &used), TS_ERR_PROTO);
    const char *resp10 = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_int_equal(parse(&m, false, resp10, &used), TS_ERR_PROTO);
    const char *req11 = "POST /v1/batch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(parse(&m, true, req11, &used), TS_OK);
    assert_string_equal(m.body.data, "hello");
    assert_true(m.keep_alive);
    /* 1.0 with a Content-Length stays fine (and closes unless asked not to). */
    const char *req10_ok = "POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(parse(&m, true, req10_ok, &used), TS_OK);
    assert_false(m.keep_alive);
    ts_http_msg_clear(&m);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *bad_req[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n continued\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n",         /* bare CR */
        "GET / HTTP/1.1\nHost: x\n\n",                     /* bare LF */
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",           /* space in name */
        "GET / HTTP/1.1\r\nName : x\r\n\r\n",              /* space before colon */
        "GET / HTTP/1.1\r\n: x\r\n\r\n",                   /* empty name */
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",               /* no colon */
        "GE(T / HTTP/1.1\r\n\r\n",                         /* bad method token */
        "GET  / HTTP/1.1\r\n\r\n",                         /* double space */
        "GET / HTTP/2.0\r\n\r\n",                          /* version */
        "GET /\x01 HTTP/1.1\r\n\r\n",                      /* CTL in target */
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",             /* CTL in value */
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n0\r\n\r\n",
    };
    struct ts_http_msg m = {0};
    size_t used;
    for (size_t i = 0; i < sizeof bad_req / sizeof *bad_req; i++) {
        int rc = parse(&m, true, bad_req[i], &used);
        if (rc != TS_ERR_PROTO)
            fail_msg("request %zu (%s) gave %d, wanted TS_ERR_PROTO", i, bad_req[i], rc);
    }
    /* A NUL byte inside a header value. */
    static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, true, nul, sizeof nul - 1, MAXB, &used), TS_ERR_PROTO);
    static const char *bad_resp[] = {
        "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n", "HTTP/1.2 200 OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",     "\r\n\r\n", /* responses get no empty-line grace */
    };
    for (size_t i = 0; i < sizeof bad_resp / sizeof *bad_resp; i++)
        assert_int_equal(parse(&m, false, bad_resp[i], &used), TS_ERR_PROTO);
    ts_http_msg_clear(&m);
}

static void test_limits(void **state)
{
    (void)state;
    struct ts_http_msg m = {0};
    size_t used;
    /* Declared body over the limit: refused as soon as the head is in. */
    const char *big = "POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
    assert_int_equal(parse(&m, true, big, &used), TS_ERR_FULL);
    assert_int_equal(parse(&m, true,
                           "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                           &used),
                     TS_ERR_FULL);
    /* Chunked body over the limit. */
    ts_buf b = {0};
    ts_buf_puts(&b, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    ts_buf_printf(&b, "%x\r\n", MAXB / 2);
    for (int i = 0; i < MAXB / 2; i++)
        ts_buf_append(&b, "a", 1);
    ts_buf_puts(&b, "\r\n");
    ts_buf_printf(&b, "%x\r\n", MAXB / 2 + 1);
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, true, b.data, b.len, MAXB, &used), TS_ERR_FULL);
    /* Huge chunk size does not overflow. */
    assert_int_equal(parse(&m, true,
                           "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "ffffffffffffffffffff\r\n",
                           &used),
                     TS_ERR_FULL);
    /* Head over 16 KiB, with and without the blank line. */
    ts_buf_reset(&b);
    ts_buf_puts(&b, "GET / HTTP/1.1\r\n");
    while (b.len <= TS_HTTP_MAX_HEAD)
        ts_buf_puts(&b, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, true, b.data, b.len, MAXB, &used), TS_ERR_FULL);
    ts_buf_puts(&b, "\r\n");
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, true, b.data, b.len, MAXB, &used), TS_ERR_FULL);
    /* Too many header fields. */
    ts_buf_reset(&b);
    ts_buf_puts(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= TS_HTTP_MAX_HEADERS; i++)
        ts_buf_printf(&b, "X-%d: v\r\n", i);
    ts_buf_puts(&b, "\r\n");
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, true, b.data, b.len, MAXB, &used), TS_ERR_FULL);
    /* Exactly at the limit is fine. */
    ts_buf_reset(&b);
    ts_buf_printf(&b, "POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MAXB);
    for (int i = 0; i < MAXB; i++)
        ts_buf_append(&b, "z", 1);
    ts_http_msg_clear(&m);
    assert_int_equal(ts_http_parse(&m, true, b.data, b.len, MAXB, &used), TS_OK);
    assert_int_equal(m.body.len, MAXB);
    ts_http_msg_clear(&m);
    ts_buf_free(&b);
}

static void test_target_helpers(void **state)
{
    (void)state;
    char path[16], v[64];
    assert_int_equal(ts_http_target_path("/v1/feed?since=1", path, sizeof path), TS_OK);
    assert_string_equal(path, "/v1/feed");
    assert_int_equal(ts_http_target_path("/livez", path, sizeof path), TS_OK);
    assert_string_equal(path, "/livez");
    assert_int_equal(ts_http_target_path("/a/very/long/path/indeed", path, sizeof path),
                     TS_ERR_INVAL);

    const char *t = "/v1/lookup?key=ab%2Fcd&name=Ada+Love%20lace&empty=&flag&since=";
    assert_int_equal(ts_http_query_param(t, "key", v, sizeof v), TS_OK);
    assert_string_equal(v, "ab/cd");
    assert_int_equal(ts_http_query_param(t, "name", v, sizeof v), TS_OK);
    assert_string_equal(v, "Ada Love lace");
    assert_int_equal(ts_http_query_param(t, "empty", v, sizeof v), TS_OK);
    assert_string_equal(v, "");
    assert_int_equal(ts_http_query_param(t, "flag", v, sizeof v), TS_OK);
    assert_string_equal(v, "");
    assert_int_equal(ts_http_query_param(t, "since", v, sizeof v), TS_OK);
    assert_string_equal(v, "");
    assert_int_equal(ts_http_query_param(t, "ke", v, sizeof v), TS_ERR_NOTFOUND);
    assert_int_equal(ts_http_query_param("/x", "key", v, sizeof v), TS_ERR_NOTFOUND);
    assert_int_equal(ts_http_query_param("/x?a=%zz", "a", v, sizeof v), TS_ERR_INVAL);
    assert_int_equal(ts_http_query_param("/x?a=%4", "a", v, sizeof v), TS_ERR_INVAL);
    assert_int_equal(ts_http_query_param("/x?a=%00", "a", v, sizeof v), TS_ERR_INVAL);
    assert_int_equal(ts_http_query_param("/x?a=0123456789", "a", v, 5), TS_ERR_INVAL);
    /* Encoded names match too; the first occurrence wins. */
    assert_int_equal(ts_http_query_param("/x?s%69nce=1&since=2", "since", v, sizeof v), TS_OK);
    assert_string_equal(v, "1");
}

static void no_handler(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    (void)ud;
    (void)req;
    ts_httpd_error(resp, 500, "unused");
}

/* A listen port the server would not really bind is refused up front:
 * atoi took "4294975488" for 8192 and "99999999999999999999" for -1. */
static void test_listen_port_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1:8x", "127.0.0.1:70000",      "127.0.0.1:-1",
        "127.0.0.1:",   "127.0.0.1:4294975488", "127.0.0.1:99999999999999999999",
        "[::1]:65536"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ts_httpd_opts o = {.listen = bad[i]};
        struct ts_httpd *h = NULL;
        char err[256] = "";
        if (ts_httpd_start(&o, no_handler, NULL, &h, err, sizeof err) == TS_OK) {
            ts_httpd_stop(h);
            fail_msg("listened on \"%s\"", bad[i]);
        }
        assert_null(h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_basic),
        cmocka_unit_test(test_request_body_incremental),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_responses_without_body),
        cmocka_unit_test(test_until_close),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_target_helpers),
        cmocka_unit_test(test_listen_port_refused),
        cmocka_unit_test(test_http10_transfer_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
