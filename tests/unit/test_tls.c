/*
 * The transport end to end: certificates made by ts_pki_*, a real ts_httpd
 * on 127.0.0.1 and ts_httpc talking to it over mutual TLS, plain HTTP and raw
 * sockets. Checks what an operator sees: who gets in, who is refused, and
 * what the error says.
 */
#include "tls_fx.h"

#include <poll.h>

static void test_mutual_tls_sees_identity(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 0, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    struct ts_http_resp r;
    int rc = ts_httpc_request(c, "GET", "/v1/feed?since=", NULL, NULL, NULL, 0, 5000, &r);
    if (rc != TS_OK)
        fail_msg("request failed: %s", ts_httpc_error(c));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "ou")), "S001");
    assert_string_equal(json_string_value(json_object_get(j, "cn")), "T01");
    assert_string_equal(json_string_value(json_object_get(j, "o")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/feed");
    assert_true(json_is_true(json_object_get(j, "verified")));
    assert_int_equal(json_integer_value(json_object_get(j, "days")), 10);
    /* agent and hub speak the best version the library has with each other:
     * TLS 1.3 on mbedTLS 3.6, TLS 1.2 on 2.28 */
    char lib[64];
    ts_tls_library(lib, sizeof lib);
    const char *tls = json_string_value(json_object_get(j, "tls"));
    printf("%s, %s\n", lib, tls ? tls : "?");
    assert_string_equal(tls, ts_tls_best_version());
    json_decref(j);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* The agent side refusing a hub certificate: TS_ERR_CERT and words. */
static void expect_refused(const char *server_prefix, const char *words)
{
    struct ts_httpd *s = start(server_prefix, 0, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    struct ts_http_resp r;
    int rc = ts_httpc_request(c, "GET", "/v1/feed", NULL, NULL, NULL, 0, 5000, &r);
    assert_int_equal(rc, TS_ERR_CERT);
    const char *e = ts_httpc_error(c);
    if (!strstr(e, words))
        fail_msg("error \"%s\" does not mention \"%s\"", e, words);
    assert_non_null(strstr(e, "TLS: "));
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

static void test_refuses_other_ca_server(void **state)
{
    (void)state;
    expect_refused("evilhub", "not trusted by the configured CA");
}

static void test_refuses_wrong_host(void **state)
{
    (void)state;
    expect_refused("wronghost", "host name mismatch (expected localhost)");
}

static void test_refuses_expired_server(void **state)
{
    (void)state;
    expect_refused("expired", "certificate expired");
}

/* The hub side refusing a terminal: the request never reaches the handler. */
static void expect_client_refused(const char *client_prefix)
{
    struct ts_httpd *s = start("hub", 0, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), client_prefix);
    struct ts_http_resp r;
    int rc = ts_httpc_request(c, "GET", "/v1/feed", NULL, NULL, NULL, 0, 5000, &r);
    if (rc == TS_OK)
        fail_msg("served with status %d: %s", r.status, r.body.data ? r.body.data : "");
    assert_true(rc == TS_ERR_TLS || rc == TS_ERR_CLOSED || rc == TS_ERR_CERT);
    assert_true(strlen(ts_httpc_error(c)) > 0);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

static void test_refuses_client_without_cert(void **state)
{
    (void)state;
    expect_client_refused(NULL);
}

static void test_refuses_client_from_other_ca(void **state)
{
    (void)state;
    expect_client_refused("t66");
}

static void test_plain_http_and_error_json(void **state)
{
    (void)state;
    struct ts_httpd *s = start(NULL, 0, 0);
    struct ts_httpc *c = client(false, ts_httpd_port(s), NULL);
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "POST", "/v1/batch", "X-Extra: 1\r\n", "application/json",
                                      "{}", 2, 2000, &r),
                     TS_OK);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_true(json_is_true(json_object_get(j, "plain")));
    assert_int_equal(json_integer_value(json_object_get(j, "len")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    json_decref(j);
    ts_http_resp_free(&r);
    /* ts_httpd_error escapes what it is given. */
    assert_int_equal(ts_httpc_request(c, "GET", "/error", NULL, NULL, NULL, 0, 2000, &r), TS_OK);
    assert_int_equal(r.status, 409);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "said \"no\"\n\\ twice");
    json_decref(j);
    ts_http_resp_free(&r);
    /* HEAD: headers only, and the connection stays usable. */
    assert_int_equal(ts_httpc_request(c, "HEAD", "/x", NULL, NULL, NULL, 0, 2000, &r), TS_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    ts_http_resp_free(&r);
    assert_int_equal(ts_httpc_request(c, "GET", "/y", NULL, NULL, NULL, 0, 2000, &r), TS_OK);
    assert_int_equal(ts_httpc_connects(c), 1);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

static void test_keep_alive_and_reconnect(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 0, 300); /* idle connections closed after 300 ms */
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    struct ts_http_resp r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ts_httpc_request(c, "GET", "/k", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
        assert_int_equal(r.status, 200);
        ts_http_resp_free(&r);
    }
    assert_int_equal(ts_httpc_connects(c), 1);
    /* The server drops the idle connection; the next request reconnects
     * without the caller noticing. */
    ts_sleep_ms(700);
    assert_int_equal(ts_httpc_request(c, "POST", "/k", NULL, "text/plain", "x", 1, 5000, &r),
                     TS_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(ts_httpc_connects(c), 2);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

static void test_body_too_large_gets_413(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 1 << 20, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    size_t n = 2u << 20;
    char *big = malloc(n);
    memset(big, 'a', n);
    struct ts_http_resp r;
    int rc =
        ts_httpc_request(c, "POST", "/v1/purchases", NULL, "application/json", big, n, 10000, &r);
    if (rc != TS_OK)
        fail_msg("request failed: %s", ts_httpc_error(c));
    assert_int_equal(r.status, 413);
    json_t *j = body_json(&r);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "too large"));
    json_decref(j);
    ts_http_resp_free(&r);
    /* A body just under the limit goes through on a new connection. */
    rc = ts_httpc_request(c, "POST", "/ok", NULL, "application/json", big, (1 << 20) - 10, 10000,
                          &r);
    assert_int_equal(rc, TS_OK);
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    free(big);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

static void test_error_texts(void **state)
{
    (void)state;
    /* Nothing listening: the port of a socket we bound and closed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    int port = ntohs(a.sin_port);
    struct ts_httpc *c = client(false, port, NULL);
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/", NULL, NULL, NULL, 0, 2000, &r),
                     TS_ERR_CONNECT);
    char want[128];
    snprintf(want, sizeof want, "connect to localhost:%d failed: Connection refused", port);
    assert_string_equal(ts_httpc_error(c), want);
    /* Listening but never answering: the request deadline is the limit. */
    assert_int_equal(listen(fd, 4), 0);
    int64_t t0 = ts_now_mono_ms();
    assert_int_equal(ts_httpc_request(c, "GET", "/", NULL, NULL, NULL, 0, 300, &r), TS_ERR_TIMEOUT);
    int64_t took = ts_now_mono_ms() - t0;
    assert_true(took >= 290 && took < 2000);
    if (!strstr(ts_httpc_error(c), "timed out after 300 ms"))
        fail_msg("timeout text: %s", ts_httpc_error(c));
    ts_httpc_free(c);
    close(fd);
}

/* Raw bytes: pipelined requests answered in order, garbage gets a 400. */
static void test_raw_pipelining_and_400(void **state)
{
    (void)state;
    struct ts_httpd *s = start(NULL, 0, 2000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)ts_httpd_port(s))};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *two = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /two HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /three HTTP/1.1\r\nHost: x\r\n fold\r\n\r\n";
    assert_int_equal(send(fd, two, strlen(two), 0), (ssize_t)strlen(two));
    char buf[8192];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    char *one = strstr(buf, "\"/one\""), *tw = strstr(buf, "\"/two\"");
    char *bad = strstr(buf, "HTTP/1.1 400 Bad Request");
    assert_non_null(one);
    assert_non_null(tw);
    assert_non_null(bad);
    assert_true(one < tw && tw < bad);
    assert_non_null(strstr(bad, "Connection: close"));
    assert_non_null(strstr(buf, "X-Echo: 1\r\n"));
    close(fd);
    ts_httpd_stop(s);
}

struct worker {
    int port;
    int ok;
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    char url[64], ca[512], crt[512], key[512], err[256];
    snprintf(url, sizeof url, "https://localhost:%d", w->port);
    path(ca, sizeof ca, "ca/ca.pem");
    path(crt, sizeof crt, "t01.pem");
    path(key, sizeof key, "t01.key");
    struct ts_httpc_opts o = {.base_url = url, .ca_file = ca, .cert_file = crt, .key_file = key};
    struct ts_httpc *c = NULL;
    if (ts_httpc_new(&o, &c, err, sizeof err) != TS_OK)
        return NULL;
    for (int i = 0; i < 10; i++) {
        struct ts_http_resp r;
        if (ts_httpc_request(c, "GET", "/c", NULL, NULL, NULL, 0, 5000, &r) == TS_OK &&
            r.status == 200)
            w->ok++;
        ts_http_resp_free(&r);
        if (i % 3 == 0)
            ts_httpc_disconnect(c); /* more handshakes on the shared server context */
    }
    ts_httpc_free(c);
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 0, 0);
    pthread_t t[6];
    struct worker w[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (struct worker){.port = ts_httpd_port(s)};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 10);
    }
    ts_httpd_stop(s);
}

/* Stopping with a client connected and idle must not hang. */
static void test_stop_with_open_connection(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 0, 60000);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
    ts_http_resp_free(&r);
    int64_t t0 = ts_now_mono_ms();
    ts_httpd_stop(s);
    assert_true(ts_now_mono_ms() - t0 < 2000);
    ts_httpc_free(c);
}

static void test_pki_files_and_cli(void **state)
{
    (void)state;
    char d[512], out[600], f[700];
    snprintf(d, sizeof d, "%s/cli", g_dir);
    snprintf(out, sizeof out, "%s/term", d);
    char *bad[] = {"pki", "issue", "--dir", d, NULL};
    assert_int_equal(ts_pki_main(4, bad), 2); /* no --cn / --out */
    char *bad2[] = {"pki", "frobnicate", NULL};
    assert_int_equal(ts_pki_main(2, bad2), 2);
    char *init[] = {"pki", "init", "--dir", d, "--cn", "cli CA", "--days", "5", NULL};
    assert_int_equal(ts_pki_main(8, init), 0);
    assert_int_equal(ts_pki_main(8, init), 1); /* never overwrites a CA */
    char *iss[] = {"pki",      "issue", "--dir", d,      "--cn",  "T02",
                   "--ou",     "S002",  "--o",   "acme", "--dns", "a.example,127.0.0.1",
                   "--server", "--out", out,     NULL};
    assert_int_equal(ts_pki_main(15, iss), 0);
    char *comma[] = {"pki", "issue", "--dir", d, "--cn", "a,b", "--out", out, NULL};
    assert_int_equal(ts_pki_main(8, comma), 1);

    struct stat st;
    snprintf(f, sizeof f, "%s.key", out);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(f, sizeof f, "%s/ca.key", d);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* The certificate chains to its CA, names the subject parts and SANs. */
    mbedtls_x509_crt ca, crt;
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&crt);
    snprintf(f, sizeof f, "%s/ca.pem", d);
    assert_int_equal(mbedtls_x509_crt_parse_file(&ca, f), 0);
    snprintf(f, sizeof f, "%s.pem", out);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, f), 0);
    uint32_t flags = 0;
    assert_int_equal(mbedtls_x509_crt_verify(&crt, &ca, NULL, "a.example", &flags, NULL, NULL), 0);
    assert_int_equal(crt.issuer_raw.len, ca.subject_raw.len);
    assert_memory_equal(crt.issuer_raw.p, ca.subject_raw.p, ca.subject_raw.len);
    char dn[256];
    mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject);
    assert_string_equal(dn, "CN=T02, OU=S002, O=acme");
    mbedtls_x509_crt_free(&crt);
    mbedtls_x509_crt_init(&crt);
    /* --expired: not after yesterday. */
    char *exp[] = {"pki", "issue", "--dir", d, "--cn", "old", "--expired", "--out", out, NULL};
    assert_int_equal(ts_pki_main(9, exp), 0);
    snprintf(f, sizeof f, "%s.pem", out);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, f), 0);
    assert_int_equal(mbedtls_x509_time_is_past(&crt.valid_to), 1);
    mbedtls_x509_crt_free(&crt);
    mbedtls_x509_crt_free(&ca);
}

/* ---- trust: pins, revocation hook, enrolment listener, renewal ----------- */

static void pin_of(const char *prefix, char b64[48], char hex[65])
{
    char f[512];
    struct ts_pki_cert_info i;
    snprintf(f, sizeof f, "%s/%s.pem", g_dir, prefix);
    assert_int_equal(ts_pki_cert_info_file(f, &i, NULL, 0), TS_OK);
    assert_int_equal(ts_pki_pin_text(i.spki_sha256, b64, hex), TS_OK);
}

static struct ts_httpc *pinned_client(int port, const char *pin, int *rc_new, char *err,
                                      size_t errsz)
{
    char url[128], crt[512], key[512], ca[512];
    snprintf(url, sizeof url, "https://localhost:%d", port);
    path(ca, sizeof ca, "ca/ca.pem");
    path(crt, sizeof crt, "t01.pem");
    path(key, sizeof key, "t01.key");
    struct ts_httpc_opts o = {.base_url = url,
                              .ca_file = ca,
                              .cert_file = crt,
                              .key_file = key,
                              .pin_sha256 = pin,
                              .connect_timeout_ms = 2000};
    struct ts_httpc *c = NULL;
    *rc_new = ts_httpc_new(&o, &c, err, errsz);
    return c;
}

static void test_pin(void **state)
{
    (void)state;
    char b64[48], hex[65], other_b64[48], other_hex[65], err[256];
    int rc;
    pin_of("hub", b64, hex);
    pin_of("evilhub", other_b64, other_hex);
    assert_int_equal(strlen(b64), 44);
    struct ts_httpd *s = start("hub", 0, 0);
    const char *good[] = {b64, hex};
    for (int k = 0; k < 2; k++) {
        struct ts_httpc *c = pinned_client(ts_httpd_port(s), good[k], &rc, err, sizeof err);
        assert_int_equal(rc, TS_OK);
        struct ts_http_resp r;
        assert_int_equal(ts_httpc_request(c, "GET", "/x", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
        assert_int_equal(r.status, 200);
        ts_http_resp_free(&r);
        ts_httpc_free(c);
    }
    /* a valid pin of another key: refused although the CA vouches */
    struct ts_httpc *c = pinned_client(ts_httpd_port(s), other_b64, &rc, err, sizeof err);
    assert_int_equal(rc, TS_OK);
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/x", NULL, NULL, NULL, 0, 5000, &r), TS_ERR_CERT);
    if (!strstr(ts_httpc_error(c), "public key pin mismatch"))
        fail_msg("error: %s", ts_httpc_error(c));
    ts_httpc_free(c);
    /* malformed pins are configuration errors */
    const char *bad[] = {"abc",
                         /* 64 characters, not all hex */
                         "zz00000000000000000000000000000000000000000000000000000000000000",
                         "not base64 at all, but 44 characters long!!="};
    for (int k = 0; k < 3; k++) {
        c = pinned_client(ts_httpd_port(s), bad[k], &rc, err, sizeof err);
        assert_int_equal(rc, TS_ERR_CONFIG);
        assert_non_null(strstr(err, "pin"));
        ts_httpc_free(c);
    }
    unsigned char raw[32];
    assert_int_equal(ts_tls_pin_parse(hex, raw), TS_OK);
    b64[43] = '\0'; /* padding is optional */
    assert_int_equal(ts_tls_pin_parse(b64, raw), TS_OK);
    ts_httpd_stop(s);
}

/* The client handshake in steps (ts_tls_connect_begin/step, an event
 * loop's connect): one poll() per step, as the fleet simulator's epoll loop
 * runs it. Returns the step's final code; err in words. */
static int stepped_connect(struct ts_tls_ctx *ctx, int port, struct ts_tls_conn **out, char *err,
                           size_t errsz)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)connect(fd, (struct sockaddr *)&sa, sizeof sa); /* EINPROGRESS */
    struct pollfd pw = {.fd = fd, .events = POLLOUT};
    assert_int_equal(poll(&pw, 1, 10000), 1);
    assert_int_equal(ts_tls_connect_begin(ctx, fd, "localhost", port, out, err, errsz), TS_OK);
    for (int i = 0; i < 1000; i++) {
        bool want_write = false;
        int rc = ts_tls_connect_step(*out, &want_write, err, errsz);
        if (rc != TS_ERR_AGAIN)
            return rc;
        struct pollfd p = {.fd = ts_tls_fd(*out), .events = want_write ? POLLOUT : POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1);
    }
    fail_msg("the handshake did not end in 1000 steps");
    return TS_ERR_TIMEOUT;
}

/* A request on a stepped connection: the echo server's JSON (who it saw). */
static json_t *stepped_get(struct ts_tls_conn *c)
{
    const char req[] = "GET /v1/feed HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(ts_tls_write(c, req, sizeof req - 1, 5000), TS_OK);
    ts_buf in = {0};
    struct ts_http_msg m = {0};
    size_t used = 0;
    int rc = TS_ERR_AGAIN;
    while (rc == TS_ERR_AGAIN) {
        char buf[4096];
        long n = ts_tls_read(c, buf, sizeof buf, 5000);
        assert_true(n > 0);
        assert_int_equal(ts_buf_append(&in, buf, (size_t)n), TS_OK);
        rc = ts_http_parse(&m, false, in.data, in.len, 1 << 20, &used);
    }
    assert_int_equal(rc, TS_OK);
    assert_int_equal(m.status, 200);
    json_error_t je;
    json_t *j = json_loadb(m.body.data, m.body.len, 0, &je);
    assert_non_null(j);
    ts_http_msg_clear(&m);
    ts_buf_free(&in);
    return j;
}

static void test_stepped_client_handshake(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 0, 0);
    char crt[512], key[512], ca[512], err[256] = "";
    snprintf(crt, sizeof crt, "%s/t01.pem", g_dir);
    snprintf(key, sizeof key, "%s/t01.key", g_dir);
    path(ca, sizeof ca, "ca/ca.pem");
    struct ts_tls_opts o = {.ca_file = ca, .cert_file = crt, .key_file = key};
    struct ts_tls_ctx *ctx = NULL;
    assert_int_equal(ts_tls_ctx_new(&o, &ctx, err, sizeof err), TS_OK);
    /* first connect: a full handshake, both certificates verified */
    struct ts_tls_conn *c = NULL;
    int rc = stepped_connect(ctx, ts_httpd_port(s), &c, err, sizeof err);
    if (rc != TS_OK)
        fail_msg("stepped handshake failed: %s", err);
    assert_false(ts_tls_resumed(c));
    assert_string_equal(ts_tls_peer(c)->cn, "localhost");
    json_t *j = stepped_get(c);
    assert_string_equal(json_string_value(json_object_get(j, "cn")), "T01");
    assert_true(json_is_true(json_object_get(j, "verified")));
    json_decref(j);
    ts_tls_close(c);
    /* the second resumes the session the first one kept */
    rc = stepped_connect(ctx, ts_httpd_port(s), &c, err, sizeof err);
    if (rc != TS_OK)
        fail_msg("stepped resumption failed: %s", err);
    assert_true(ts_tls_resumed(c));
    j = stepped_get(c);
    assert_string_equal(json_string_value(json_object_get(j, "ou")), "S001");
    json_decref(j);
    ts_tls_close(c);
    ts_httpd_stop(s);
    /* a hub from another CA is refused with the words ts_tls_connect has */
    s = start("evilhub", 0, 0);
    rc = stepped_connect(ctx, ts_httpd_port(s), &c, err, sizeof err);
    assert_int_equal(rc, TS_ERR_CERT);
    if (!strstr(err, "not trusted by the configured CA"))
        fail_msg("error \"%s\" does not say why", err);
    ts_tls_close(c);
    ts_tls_ctx_free(ctx);
    ts_httpd_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual_tls_sees_identity),
        cmocka_unit_test(test_refuses_other_ca_server),
        cmocka_unit_test(test_refuses_wrong_host),
        cmocka_unit_test(test_refuses_expired_server),
        cmocka_unit_test(test_refuses_client_without_cert),
        cmocka_unit_test(test_refuses_client_from_other_ca),
        cmocka_unit_test(test_plain_http_and_error_json),
        cmocka_unit_test(test_keep_alive_and_reconnect),
        cmocka_unit_test(test_body_too_large_gets_413),
        cmocka_unit_test(test_error_texts),
        cmocka_unit_test(test_raw_pipelining_and_400),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_stop_with_open_connection),
        cmocka_unit_test(test_pki_files_and_cli),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_stepped_client_handshake),
    };
    ts_log_set_level(TS_LOG_ERROR);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
