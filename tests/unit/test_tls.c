/*
 * The transport end to end: certificates made by ts_pki_*, a real ts_httpd
 * on 127.0.0.1 and ts_httpc talking to it over mutual TLS, plain HTTP and raw
 * sockets. Checks what an operator sees: who gets in, who is refused, and
 * what the error says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <mbedtls/x509_crt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "httpc.h"
#include "httpd.h"
#include "pki.h"
#include "tls.h"
#include "ts.h"

static char g_dir[256];

static void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* Issues dir/<prefix>.pem/.key signed by the CA in ca_dir, valid from
 * not_before to not_after (Unix seconds). */
static void issue_for(const char *ca_dir, const char *prefix, const char *cn, const char *ou,
                      const char *dns, bool server, int64_t not_before, int64_t not_after)
{
    char cac[512], cak[512], crt[512], key[512], err[256] = "";
    snprintf(cac, sizeof cac, "%s/%s/ca.pem", g_dir, ca_dir);
    snprintf(cak, sizeof cak, "%s/%s/ca.key", g_dir, ca_dir);
    snprintf(crt, sizeof crt, "%s/%s.pem", g_dir, prefix);
    snprintf(key, sizeof key, "%s/%s.key", g_dir, prefix);
    struct ts_pki_issue p = {.ca_cert_file = cac,
                             .ca_key_file = cak,
                             .cn = cn,
                             .ou = ou,
                             .o = "acme",
                             .dns = dns,
                             .server = server,
                             .not_before = not_before,
                             .not_after = not_after,
                             .out_cert_file = crt,
                             .out_key_file = key};
    int rc = ts_pki_issue(&p, err, sizeof err);
    if (rc != TS_OK)
        fail_msg("issue %s: %s", prefix, err);
}

/* The same, valid for 10 days and an hour, or expired since yesterday. */
static void issue(const char *ca_dir, const char *prefix, const char *cn, const char *ou,
                  const char *dns, bool server, bool expired)
{
    int64_t now = (int64_t)time(NULL);
    issue_for(ca_dir, prefix, cn, ou, dns, server, expired ? now - 30 * 86400 : now - 60,
              expired ? now - 86400 : now + 10 * 86400 + 3600);
}

static int group_setup(void **state)
{
    (void)state;
    char err[256] = "", d[512];
    snprintf(g_dir, sizeof g_dir, "/tmp/ts-test-tls-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    path(d, sizeof d, "ca");
    if (ts_pki_ca_init(d, "test CA", 30, err, sizeof err) != TS_OK) {
        fprintf(stderr, "ca init: %s\n", err);
        return -1;
    }
    path(d, sizeof d, "other");
    if (ts_pki_ca_init(d, "evil CA", 30, err, sizeof err) != TS_OK)
        return -1;
    issue("ca", "hub", "localhost", NULL, "localhost", true, false);
    issue("ca", "t01", "T01", "S001", NULL, false, false);
    issue("ca", "expired", "localhost", NULL, "localhost", true, true);
    issue("ca", "wronghost", "hub.elsewhere.example", NULL, "hub.elsewhere.example", true, false);
    issue("other", "evilhub", "localhost", NULL, "localhost", true, false);
    issue("other", "t66", "T66", "S001", NULL, false, false);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Echoes what the server knows about the caller. */
static void echo(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    (void)ud;
    if (strcmp(req->path, "/error") == 0) {
        ts_httpd_error(resp, 409, "said \"no\"\n\\ twice");
        return;
    }
    json_t *j = json_pack("{s:s, s:s, s:I}", "path", req->path, "method", req->method, "len",
                          (json_int_t)req->body_len);
    if (req->peer) {
        json_object_set_new(j, "cn", json_string(req->peer->cn));
        json_object_set_new(j, "ou", json_string(req->peer->ou));
        json_object_set_new(j, "o", json_string(req->peer->o));
        json_object_set_new(j, "days", json_integer(req->peer->days_left));
        json_object_set_new(j, "verified", json_boolean(req->peer->verified));
        json_object_set_new(j, "serial", json_string(req->peer->serial));
        json_object_set_new(j, "resumed", json_boolean(req->tls_resumed));
        json_object_set_new(j, "tls", json_string(req->tls_version ? req->tls_version : ""));
    } else {
        json_object_set_new(j, "plain", json_true());
    }
    char *s = json_dumps(j, JSON_COMPACT);
    ts_buf_puts(&resp->body, s);
    free(s);
    json_decref(j);
    ts_strlcpy(resp->extra_headers, "X-Echo: 1\r\n", sizeof resp->extra_headers);
}

/* Starts an httpd on 127.0.0.1:0; server_prefix NULL = plain HTTP. */
static struct ts_httpd *start(const char *server_prefix, size_t max_body, int io_timeout_ms)
{
    char crt[512], key[512], ca[512], err[256] = "";
    struct ts_httpd_opts o = {
        .listen = "127.0.0.1:0", .max_body = max_body, .io_timeout_ms = io_timeout_ms};
    if (server_prefix) {
        snprintf(crt, sizeof crt, "%s/%s.pem", g_dir, server_prefix);
        snprintf(key, sizeof key, "%s/%s.key", g_dir, server_prefix);
        path(ca, sizeof ca, "ca/ca.pem");
        o.cert_file = crt;
        o.key_file = key;
        o.client_ca_file = ca;
    }
    struct ts_httpd *s = NULL;
    int rc = ts_httpd_start(&o, echo, NULL, &s, err, sizeof err);
    if (rc != TS_OK)
        fail_msg("httpd start: %s", err);
    return s;
}

/* A client for https://localhost:port with client_prefix's certificate. */
static struct ts_httpc *client(bool https, int port, const char *client_prefix)
{
    char url[128], crt[512], key[512], ca[512], err[256] = "";
    snprintf(url, sizeof url, "%s://localhost:%d", https ? "https" : "http", port);
    path(ca, sizeof ca, "ca/ca.pem");
    struct ts_httpc_opts o = {.base_url = url, .ca_file = ca, .connect_timeout_ms = 2000};
    if (client_prefix) {
        snprintf(crt, sizeof crt, "%s/%s.pem", g_dir, client_prefix);
        snprintf(key, sizeof key, "%s/%s.key", g_dir, client_prefix);
        o.cert_file = crt;
        o.key_file = key;
    }
    struct ts_httpc *c = NULL;
    if (ts_httpc_new(&o, &c, err, sizeof err) != TS_OK)
        fail_msg("httpc new: %s", err);
    return c;
}

static json_t *body_json(const struct ts_http_resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &je);
    if (!j)
        fail_msg("response body is not JSON: %s", r->body.data ? r->body.data : "");
    return j;
}

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

/* Refuses one serial; counts how often it was asked. */
struct revoker {
    char serial[48];
    int asked;
    pthread_mutex_t mu;
};

static bool revoker_check(void *ud, const struct ts_peer_id *p, char *why, size_t whysz)
{
    struct revoker *rv = ud;
    pthread_mutex_lock(&rv->mu);
    rv->asked++;
    bool ok = strcmp(p->serial, rv->serial) != 0;
    pthread_mutex_unlock(&rv->mu);
    if (!ok)
        snprintf(why, whysz, "certificate revoked (test)");
    return ok;
}

/* An httpd with the hub certificate and the test CA for clients, echoing;
 * o gives the rest (listen defaults to 127.0.0.1:0). */
static struct ts_httpd *start_hub_with(struct ts_httpd_opts o)
{
    char crt[512], key[512], ca[512], err[256] = "";
    path(crt, sizeof crt, "hub.pem");
    path(key, sizeof key, "hub.key");
    path(ca, sizeof ca, "ca/ca.pem");
    o.listen = o.listen ? o.listen : "127.0.0.1:0";
    o.cert_file = crt;
    o.key_file = key;
    o.client_ca_file = ca;
    struct ts_httpd *s = NULL;
    if (ts_httpd_start(&o, echo, NULL, &s, err, sizeof err) != TS_OK)
        fail_msg("httpd on %s: %s", o.listen, err);
    return s;
}

static struct ts_httpd *start_checked(struct revoker *rv)
{
    return start_hub_with((struct ts_httpd_opts){.peer_check = revoker_check, .peer_check_ud = rv});
}

static void test_peer_check_refuses_handshake_and_kept_connection(void **state)
{
    (void)state;
    struct revoker rv = {.serial = "none"};
    pthread_mutex_init(&rv.mu, NULL);
    char f[512];
    struct ts_pki_cert_info t01;
    path(f, sizeof f, "t01.pem");
    assert_int_equal(ts_pki_cert_info_file(f, &t01, NULL, 0), TS_OK);
    struct ts_httpd *s = start_checked(&rv);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/a", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    assert_true(rv.asked >= 2); /* at the handshake and before the request */
    /* revoked while connected: the kept connection is closed at the next
     * request, the reconnect is refused in the handshake with the reason */
    pthread_mutex_lock(&rv.mu);
    ts_strlcpy(rv.serial, t01.serial, sizeof rv.serial);
    pthread_mutex_unlock(&rv.mu);
    assert_int_equal(ts_httpc_request(c, "GET", "/b", NULL, NULL, NULL, 0, 5000, &r), TS_ERR_CERT);
    if (!strstr(ts_httpc_error(c), "the server refused our certificate: certificate revoked"))
        fail_msg("error: %s", ts_httpc_error(c));
    assert_int_equal(ts_httpc_connects(c), 1); /* the second handshake failed */
    ts_httpc_free(c);
    /* another terminal still gets in */
    issue("ca", "t02", "T02", "S001", NULL, false, false);
    c = client(true, ts_httpd_port(s), "t02");
    assert_int_equal(ts_httpc_request(c, "GET", "/c", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
    pthread_mutex_destroy(&rv.mu);
}

/* ---- session resumption ------------------------------------------------- */

/* A GET on a new connection: the server must have seen the terminal cn of
 * store ou, verified, on a resumed or a full handshake as said. The serial
 * it saw goes to serial (NULL = not wanted). */
static void expect_echo(struct ts_httpc *c, const char *cn, const char *ou, bool resumed,
                        char *serial, size_t serialsz)
{
    ts_httpc_disconnect(c);
    struct ts_http_resp r;
    if (ts_httpc_request(c, "GET", "/who", NULL, NULL, NULL, 0, 5000, &r) != TS_OK)
        fail_msg("GET failed: %s", ts_httpc_error(c));
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    ts_http_resp_free(&r);
    assert_string_equal(json_string_value(json_object_get(j, "cn")), cn);
    assert_string_equal(json_string_value(json_object_get(j, "ou")), ou);
    assert_string_equal(json_string_value(json_object_get(j, "o")), "acme");
    assert_true(json_is_true(json_object_get(j, "verified")));
    if (json_is_true(json_object_get(j, "resumed")) != resumed)
        fail_msg("the server saw %s handshake", resumed ? "a full" : "a resumed");
    assert_string_equal(json_string_value(json_object_get(j, "tls")), ts_tls_best_version());
    if (serial)
        ts_strlcpy(serial, json_string_value(json_object_get(j, "serial")), serialsz);
    json_decref(j);
}

/* A full handshake, then a resumed one, with the same identity. */
static void expect_full_then_resumed(struct ts_httpc *c, const char *cn, const char *ou)
{
    unsigned long n = ts_httpc_resumed(c);
    char s1[48], s2[48];
    expect_echo(c, cn, ou, false, s1, sizeof s1);
    expect_echo(c, cn, ou, true, s2, sizeof s2);
    assert_string_equal(s1, s2);
    assert_int_equal(ts_httpc_resumed(c), n + 1);
}

static const char *serial_of(const char *prefix, struct ts_pki_cert_info *i)
{
    char f[512];
    snprintf(f, sizeof f, "%s/%s.pem", g_dir, prefix);
    assert_int_equal(ts_pki_cert_info_file(f, i, NULL, 0), TS_OK);
    return i->serial;
}

/* A reconnect resumes the session: no certificate exchanged (both ends say
 * so), and the hub still knows who it is talking to. */
static void test_reconnect_resumes_session(void **state)
{
    (void)state;
    struct ts_pki_cert_info t01;
    serial_of("t01", &t01);
    struct ts_httpd *s = start("hub", 0, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    expect_full_then_resumed(c, "T01", "S001");
    for (int i = 0; i < 3; i++) {
        char serial[48];
        expect_echo(c, "T01", "S001", true, serial, sizeof serial);
        assert_string_equal(serial, t01.serial);
    }
    assert_int_equal(ts_httpc_connects(c), 5);
    assert_int_equal(ts_httpc_resumed(c), 4);
    ts_httpc_free(c);

    /* a client that does not want it never resumes */
    char url[128], ca[512], crt[512], key[512], err[256];
    snprintf(url, sizeof url, "https://localhost:%d", ts_httpd_port(s));
    path(ca, sizeof ca, "ca/ca.pem");
    path(crt, sizeof crt, "t01.pem");
    path(key, sizeof key, "t01.key");
    struct ts_httpc_opts o = {
        .base_url = url, .ca_file = ca, .cert_file = crt, .key_file = key, .no_resume = true};
    assert_int_equal(ts_httpc_new(&o, &c, err, sizeof err), TS_OK);
    expect_echo(c, "T01", "S001", false, NULL, 0);
    expect_echo(c, "T01", "S001", false, NULL, 0);
    assert_int_equal(ts_httpc_resumed(c), 0);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* Reconnecting when the hub refuses the certificate: TS_ERR_CERT whose
 * words contain words. */
static void expect_reconnect_refused(struct ts_httpc *c, const char *words)
{
    ts_httpc_disconnect(c);
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/who", NULL, NULL, NULL, 0, 5000, &r),
                     TS_ERR_CERT);
    if (!strstr(ts_httpc_error(c), words))
        fail_msg("error \"%s\" does not say \"%s\"", ts_httpc_error(c), words);
    ts_http_resp_free(&r);
}

/* A certificate revoked after its session began cannot ride the session:
 * the hub takes no ticket peer_check refuses, the full handshake that
 * follows refuses the certificate with the usual words, and the client
 * drops the session. */
static void test_revoked_certificate_cannot_resume(void **state)
{
    (void)state;
    struct revoker rv = {.serial = "none"};
    pthread_mutex_init(&rv.mu, NULL);
    issue("ca", "t03", "T03", "S002", NULL, false, false);
    struct ts_pki_cert_info t03;
    serial_of("t03", &t03);
    struct ts_httpd *s = start_checked(&rv);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t03");
    expect_full_then_resumed(c, "T03", "S002");
    pthread_mutex_lock(&rv.mu);
    ts_strlcpy(rv.serial, t03.serial, sizeof rv.serial);
    int asked = rv.asked;
    pthread_mutex_unlock(&rv.mu);
    expect_reconnect_refused(c, "the server refused our certificate: certificate revoked");
    /* asked for the ticket, then again in the full handshake */
    assert_true(rv.asked >= asked + 2);
    assert_int_equal(ts_httpc_connects(c), 2);
    assert_int_equal(ts_httpc_resumed(c), 1);
    /* lifted again: the session was dropped, so a full handshake */
    pthread_mutex_lock(&rv.mu);
    ts_strlcpy(rv.serial, "none", sizeof rv.serial);
    pthread_mutex_unlock(&rv.mu);
    expect_full_then_resumed(c, "T03", "S002");
    ts_httpc_free(c);
    ts_httpd_stop(s);
    pthread_mutex_destroy(&rv.mu);
}

/* A certificate that expired since its session began is refused too. */
static void test_expired_certificate_cannot_resume(void **state)
{
    (void)state;
    int64_t not_after = (int64_t)time(NULL) + 3;
    issue_for("ca", "short", "T04", "S002", NULL, false, not_after - 60, not_after);
    struct ts_httpd *s = start("hub", 0, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "short");
    expect_full_then_resumed(c, "T04", "S002");
    while ((int64_t)time(NULL) <= not_after)
        ts_sleep_ms(100);
    expect_reconnect_refused(c, "certificate expired");
    assert_int_equal(ts_httpc_resumed(c), 1);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* A ticket sealed by another key (the hub restarted: a new key in memory)
 * is not taken; the client gets a full handshake without noticing, and a
 * fresh ticket that resumes from then on. */
static void test_ticket_of_other_key_gives_full_handshake(void **state)
{
    (void)state;
    struct ts_httpd *s = start("hub", 0, 0);
    int port = ts_httpd_port(s);
    struct ts_httpc *c = client(true, port, "t01");
    expect_full_then_resumed(c, "T01", "S001");
    ts_httpc_disconnect(c);
    ts_httpd_stop(s);
    char listen_at[64];
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%d", port);
    s = start_hub_with((struct ts_httpd_opts){.listen = listen_at});
    expect_full_then_resumed(c, "T01", "S001");
    assert_int_equal(ts_httpc_connects(c), 4);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* Tickets resume for the lifetime counted from the full handshake; a
 * resumption within it does not extend it. (Tickets are checked in whole
 * seconds: 2 s lifetime, resumed after 1.5 s, refused 3.2 s after the full
 * handshake. The server's two ticket keys still hold any ticket made in
 * this time, so the refusal is the lifetime's.) */
static void test_session_lifetime_bounds_resumption(void **state)
{
    (void)state;
    struct ts_httpd *s = start_hub_with((struct ts_httpd_opts){.tls_session_lifetime_s = 2});
    struct ts_httpc *c = client(true, ts_httpd_port(s), "t01");
    int64_t t0 = ts_now_mono_ms();
    expect_full_then_resumed(c, "T01", "S001");
    ts_sleep_ms(t0 + 1500 - ts_now_mono_ms());
    expect_echo(c, "T01", "S001", true, NULL, 0);
    ts_sleep_ms(t0 + 3200 - ts_now_mono_ms());
    expect_full_then_resumed(c, "T01", "S001");
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* A renewed certificate is shown to the hub in a full handshake at the
 * next connect, not hidden behind the old certificate's session. */
static void test_renewal_ends_resumption(void **state)
{
    (void)state;
    char crt[512], key[512], ca[512], url[128], err[256] = "", seen[48];
    issue("ca", "res-a", "T08", "S001", NULL, false, false);
    issue("ca", "res-b", "T08", "S001", NULL, false, false);
    struct ts_pki_cert_info a, b;
    serial_of("res-a", &a);
    serial_of("res-b", &b);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cd '%s' && cp res-a.pem res-live.pem && cp res-a.key res-live.key",
             g_dir);
    assert_int_equal(system(cmd), 0);
    path(crt, sizeof crt, "res-live.pem");
    path(key, sizeof key, "res-live.key");
    path(ca, sizeof ca, "ca/ca.pem");
    struct ts_httpd *s = start("hub", 0, 0);
    snprintf(url, sizeof url, "https://localhost:%d", ts_httpd_port(s));
    struct ts_httpc_opts o = {.base_url = url, .ca_file = ca, .cert_file = crt, .key_file = key};
    struct ts_httpc *c = NULL;
    assert_int_equal(ts_httpc_new(&o, &c, err, sizeof err), TS_OK);
    expect_full_then_resumed(c, "T08", "S001");
    expect_echo(c, "T08", "S001", true, seen, sizeof seen);
    assert_string_equal(seen, a.serial);
    /* renewal: key, then certificate, each replaced by rename */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp res-b.key res-live.key.new && mv res-live.key.new res-live.key && "
             "cp res-b.pem res-live.pem.new && mv res-live.pem.new res-live.pem",
             g_dir);
    assert_int_equal(system(cmd), 0);
    expect_full_then_resumed(c, "T08", "S001");
    expect_echo(c, "T08", "S001", true, seen, sizeof seen);
    assert_string_equal(seen, b.serial);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* The enrolment listener: TLS with the server certificate, no client
 * certificate asked, so a client without one is served. */
static void test_listener_without_client_certs(void **state)
{
    (void)state;
    char crt[512], key[512], err[256] = "";
    path(crt, sizeof crt, "hub.pem");
    path(key, sizeof key, "hub.key");
    struct ts_httpd_opts o = {
        .listen = "127.0.0.1:0", .cert_file = crt, .key_file = key, .no_client_cert = true};
    struct ts_httpd *s = NULL;
    if (ts_httpd_start(&o, echo, NULL, &s, err, sizeof err) != TS_OK)
        fail_msg("httpd: %s", err);
    struct ts_httpc *c = client(true, ts_httpd_port(s), NULL);
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/v1/enroll", NULL, NULL, NULL, 0, 5000, &r),
                     TS_OK);
    json_t *j = body_json(&r);
    assert_false(json_is_true(json_object_get(j, "verified")));
    assert_string_equal(json_string_value(json_object_get(j, "cn")), "");
    json_decref(j);
    ts_http_resp_free(&r);
    /* no tickets here: nothing to resume without a client identity */
    ts_httpc_disconnect(c);
    assert_int_equal(ts_httpc_request(c, "GET", "/v1/enroll", NULL, NULL, NULL, 0, 5000, &r),
                     TS_OK);
    ts_http_resp_free(&r);
    assert_int_equal(ts_httpc_connects(c), 2);
    assert_int_equal(ts_httpc_resumed(c), 0);
    ts_httpc_free(c);
    ts_httpd_stop(s);
}

/* Renewal replaces the files; the client's next connection presents the
 * new certificate, the one open before keeps the old. */
static void test_client_picks_up_renewed_files(void **state)
{
    (void)state;
    char crt[512], key[512], ca[512], url[128], err[256] = "", src[512], dst[512];
    issue("ca", "renew-a", "T05", "S001", NULL, false, false);
    issue("ca", "renew-b", "T05", "S001", NULL, false, false);
    path(crt, sizeof crt, "live.pem");
    path(key, sizeof key, "live.key");
    path(ca, sizeof ca, "ca/ca.pem");
    struct ts_pki_cert_info a, b;
    path(src, sizeof src, "renew-a.pem");
    assert_int_equal(ts_pki_cert_info_file(src, &a, NULL, 0), TS_OK);
    path(src, sizeof src, "renew-b.pem");
    assert_int_equal(ts_pki_cert_info_file(src, &b, NULL, 0), TS_OK);
    const char *ext[] = {"pem", "key"};
    for (int k = 0; k < 2; k++) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "cp %s/renew-a.%s %s/live.%s", g_dir, ext[k], g_dir, ext[k]);
        assert_int_equal(system(cmd), 0);
    }
    struct revoker rv = {.serial = "none"};
    pthread_mutex_init(&rv.mu, NULL);
    struct ts_httpd *s = start_checked(&rv);
    snprintf(url, sizeof url, "https://localhost:%d", ts_httpd_port(s));
    struct ts_httpc_opts o = {.base_url = url, .ca_file = ca, .cert_file = crt, .key_file = key};
    struct ts_httpc *c = NULL;
    assert_int_equal(ts_httpc_new(&o, &c, err, sizeof err), TS_OK);
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
    ts_http_resp_free(&r);
    /* renewal: key first, then certificate, each by rename */
    for (int k = 1; k >= 0; k--) {
        snprintf(src, sizeof src, "%s/renew-b.%s", g_dir, ext[k]);
        snprintf(dst, sizeof dst, "%s/live.%s.new", g_dir, ext[k]);
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "cp %s %s", src, dst);
        assert_int_equal(system(cmd), 0);
        snprintf(src, sizeof src, "%s/live.%s", g_dir, ext[k]);
        assert_int_equal(rename(dst, src), 0);
    }
    /* the kept connection still runs on A; revoking A closes it and the
     * reconnect must present B */
    pthread_mutex_lock(&rv.mu);
    ts_strlcpy(rv.serial, a.serial, sizeof rv.serial);
    pthread_mutex_unlock(&rv.mu);
    assert_int_equal(ts_httpc_request(c, "GET", "/", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    assert_int_equal(ts_httpc_connects(c), 2);
    ts_httpc_free(c);
    ts_httpd_stop(s);
    pthread_mutex_destroy(&rv.mu);
    (void)b;
}

/* The agent side of enrolment: key + CSR here, signed there, names what
 * the signer says, and the certificate works for mutual TLS. */
static void test_csr_signed_certificate_works(void **state)
{
    (void)state;
    char cac[512], cak[512], err[256] = "", *key = NULL, *csr = NULL, *cert = NULL, serial[48];
    unsigned char spki[32];
    path(cac, sizeof cac, "ca/ca.pem");
    path(cak, sizeof cak, "ca/ca.key");
    struct ts_pki_signer *sg = NULL;
    assert_int_equal(ts_pki_signer_new(cac, cak, &sg, err, sizeof err), TS_OK);
    assert_non_null(strstr(ts_pki_signer_ca_pem(sg), "BEGIN CERTIFICATE"));
    assert_int_equal(ts_pki_new_key_csr("asks to be the hub", &key, &csr, spki, err, sizeof err),
                     TS_OK);
    assert_non_null(strstr(key, "PRIVATE KEY"));
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(ts_pki_signer_sign(sg, csr, strlen(csr), "T06", "S003", "acme", now - 60,
                                        now + 3 * 86400 + 60, &cert, serial, err, sizeof err),
                     TS_OK);
    struct ts_pki_cert_info i;
    assert_int_equal(ts_pki_cert_info_pem(cert, strlen(cert), &i, NULL, 0), TS_OK);
    assert_string_equal(i.subject, "CN=T06, OU=S003, O=acme");
    assert_string_equal(i.serial, serial);
    assert_int_equal(i.days_left, 3);
    assert_memory_equal(i.spki_sha256, spki, 32);
    /* bad subject parts are refused */
    char *c2 = NULL;
    assert_int_equal(ts_pki_signer_sign(sg, csr, strlen(csr), "T,06", "S003", "acme", now, now + 60,
                                        &c2, serial, err, sizeof err),
                     TS_ERR_INVAL);
    /* mutual TLS with it */
    char f[512];
    path(f, sizeof f, "csr.pem");
    assert_int_equal(ts_write_file_atomic(f, cert, strlen(cert), 0644), TS_OK);
    path(f, sizeof f, "csr.key");
    assert_int_equal(ts_write_file_atomic(f, key, strlen(key), 0600), TS_OK);
    struct ts_httpd *s = start("hub", 0, 0);
    struct ts_httpc *c = client(true, ts_httpd_port(s), "csr");
    struct ts_http_resp r;
    assert_int_equal(ts_httpc_request(c, "GET", "/", NULL, NULL, NULL, 0, 5000, &r), TS_OK);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "cn")), "T06");
    assert_string_equal(json_string_value(json_object_get(j, "ou")), "S003");
    json_decref(j);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    ts_httpd_stop(s);
    free(cert);
    free(csr);
    ts_pki_free_secret(key);
    ts_pki_signer_free(sg);
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
        cmocka_unit_test(test_peer_check_refuses_handshake_and_kept_connection),
        cmocka_unit_test(test_reconnect_resumes_session),
        cmocka_unit_test(test_revoked_certificate_cannot_resume),
        cmocka_unit_test(test_expired_certificate_cannot_resume),
        cmocka_unit_test(test_ticket_of_other_key_gives_full_handshake),
        cmocka_unit_test(test_session_lifetime_bounds_resumption),
        cmocka_unit_test(test_renewal_ends_resumption),
        cmocka_unit_test(test_listener_without_client_certs),
        cmocka_unit_test(test_client_picks_up_renewed_files),
        cmocka_unit_test(test_csr_signed_certificate_works),
    };
    ts_log_set_level(TS_LOG_ERROR);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
