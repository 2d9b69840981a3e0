/*
 * The TLS tests' fixture (test_tls.c, test_tls_trust.c): a throwaway CA
 * directory with a hub, a terminal, an expired, a wrong-host and another
 * CA's certificates, an echo server on httpd and an httpc client.
 */
#ifndef TS_TEST_TLS_FX_H
#define TS_TEST_TLS_FX_H

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

static inline void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

/* Issues dir/<prefix>.pem/.key signed by the CA in ca_dir, valid from
 * not_before to not_after (Unix seconds). */
static inline void issue_for(const char *ca_dir, const char *prefix, const char *cn, const char *ou,
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
static inline void issue(const char *ca_dir, const char *prefix, const char *cn, const char *ou,
                         const char *dns, bool server, bool expired)
{
    int64_t now = (int64_t)time(NULL);
    issue_for(ca_dir, prefix, cn, ou, dns, server, expired ? now - 30 * 86400 : now - 60,
              expired ? now - 86400 : now + 10 * 86400 + 3600);
}

static inline int group_setup(void **state)
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

static inline int group_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Echoes what the server knows about the caller. */
static inline void echo(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
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
static inline struct ts_httpd *start(const char *server_prefix, size_t max_body, int io_timeout_ms)
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
static inline struct ts_httpc *client(bool https, int port, const char *client_prefix)
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

static inline json_t *body_json(const struct ts_http_resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &je);
    if (!j)
        fail_msg("response body is not JSON: %s", r->body.data ? r->body.data : "");
    return j;
}

#endif
