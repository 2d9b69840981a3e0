/*
 * Enrolment, renewal and revocation at the hub (hub/enroll.c) and the CSR
 * signing underneath (sync/pki.c), called directly: the hub's answers to
 * good, reused, expired and malformed requests, that the hub and not the
 * requester decides what a certificate names, and which certificates a
 * revocation keeps out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "pki.h"

#define KEY_HEX "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"

/* An EC P-384 request (openssl req -newkey ec:P-384): well formed, wrong curve. */
static const char P384_CSR[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
                               "MIIBBzCBjgIBADAPMQ0wCwYDVQQDDARldmlsMHYwEAYHKoZIzj0CAQYFK4EEACID\n"
                               "YgAERTw3tP0VnLszhNeI7oxGQFUnPj+dIOWIIs0Gbf29/oJOfKptUiniTL22xIJZ\n"
                               "kjZZhcQGJuB/aMSGODwnEbABvD0LvCBYPdF6YFxtm1jiqHmFpOFoV5q9weYKefan\n"
                               "kL90oAAwCgYIKoZIzj0EAwIDaAAwZQIxAL1FWg/O9rX+gQW8vikDMo6xWfIW3IOA\n"
                               "RGSE5tchr5GlOhdSXh8plFNivYvMx0Bw5AIwNRwhgJhbS0XMsmdGJorgTRVmeCiM\n"
                               "ETEv903kqIGUq1UPHi+kXuOqUQgEpLM5Wnhk\n"
                               "-----END CERTIFICATE REQUEST-----\n";

static char g_dir[256], g_conf[300];
static int64_t g_skew_ms; /* added to the wall clock the hub sees */

static int64_t skewed_now(void)
{
    return ts_now_wall_ms() + g_skew_ms;
}

struct fx {
    struct ts_hub_config cfg;
    struct ts_hub_trust *trust;
};

static int group_setup(void **state)
{
    (void)state;
    char err[256], ca[300];
    snprintf(g_dir, sizeof g_dir, "/tmp/ts-test-enroll-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(ca, sizeof ca, "%s/ca", g_dir);
    if (ts_pki_ca_init(ca, "enrol CA", 30, err, sizeof err) != TS_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    snprintf(g_conf, sizeof g_conf, "%s/hub.conf", g_dir);
    FILE *f = fopen(g_conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            "[hub]\ndb = %s/hub.db\nclient_ca = %s/ca.pem\nca_key = %s/ca.key\ncert_days = 60\n"
            "public_url = https://hub.example:8443\n"
            "[cdp]\nwrite_key = k\n[tenant]\nname = acme\nkey = " KEY_HEX "\n",
            g_dir, ca, ca);
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[512];
    g_skew_ms = 0;
    assert_int_equal(ts_hub_config_load(g_conf, &f->cfg, err, sizeof err), TS_OK);
    if (ts_hub_trust_open(&f->cfg, skewed_now, &f->trust, err, sizeof err) != TS_OK)
        fail_msg("trust open: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ts_hub_trust_close(f->trust);
    free(f);
    return 0;
}

/* Runs a tillside-hub subcommand and returns its first stdout line. */
static int cli(int (*fn)(int, char **, const char *), char *out, size_t outsz, int argc,
               char **argv)
{
    char path[300];
    snprintf(path, sizeof path, "%s/stdout", g_dir);
    fflush(stdout);
    int saved = dup(1);
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    dup2(fileno(f), 1);
    int rc = fn(argc, argv, g_conf);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    rewind(f);
    out[0] = '\0';
    if (!fgets(out, (int)outsz, f))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
    return rc;
}

static void make_token(const char *store, const char *terminal, const char *ttl, char *token,
                       size_t n)
{
    char *argv[] = {"enroll-token",   "--store", (char *)store, "--terminal",
                    (char *)terminal, "--ttl",   (char *)ttl,   NULL};
    assert_int_equal(cli(ts_hub_enroll_token_main, token, n, 7, argv), 0);
    assert_int_equal(strlen(token), 32);
}

struct answer {
    int status;
    json_t *json;
};

static struct answer call(void (*h)(void *, const struct ts_httpd_req *, struct ts_httpd_resp *),
                          void *ud, const char *method, const char *path, const char *body,
                          const struct ts_peer_id *peer)
{
    struct ts_http_msg msg;
    memset(&msg, 0, sizeof msg);
    struct ts_httpd_req req = {.method = method,
                               .target = path,
                               .msg = &msg,
                               .body = body ? body : "",
                               .body_len = body ? strlen(body) : 0,
                               .peer = peer,
                               .remote_addr = "127.0.0.1"};
    ts_strlcpy(req.path, path, sizeof req.path);
    struct ts_httpd_resp resp;
    memset(&resp, 0, sizeof resp);
    h(ud, &req, &resp);
    struct answer a = {.status = resp.status,
                       .json = json_loads(resp.body.data ? resp.body.data : "", 0, NULL)};
    if (!a.json)
        fail_msg("%s %s: not JSON: %s", method, path, resp.body.data ? resp.body.data : "");
    ts_buf_free(&resp.body);
    return a;
}

static void renew_handler(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    ts_hub_trust_renew(ud, req, resp);
}

static char *enroll_body(const char *token, const char *csr)
{
    json_t *o = json_pack("{s:s, s:s}", "token", token, "csr", csr);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static const char *err_of(const struct answer *a)
{
    const char *e = json_string_value(json_object_get(a->json, "error"));
    return e ? e : "";
}

/* A terminal's request with a subject of its choosing: the hub ignores it. */
static void test_enroll_issues_what_the_token_says(void **state)
{
    struct fx *f = *state;
    char token[80], *key = NULL, *csr = NULL, *body;
    unsigned char spki[32];
    make_token("S001", "T07", "1h", token, sizeof token);
    assert_int_equal(ts_pki_new_key_csr("S999-admin", &key, &csr, spki, NULL, 0), TS_OK);
    body = enroll_body(token, csr);
    struct answer a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
    assert_int_equal(a.status, 200);
    const char *cert = json_string_value(json_object_get(a.json, "certificate"));
    assert_non_null(cert);
    struct ts_pki_cert_info i;
    assert_int_equal(ts_pki_cert_info_pem(cert, strlen(cert), &i, NULL, 0), TS_OK);
    assert_string_equal(i.subject, "CN=T07, OU=S001, O=acme");
    assert_memory_equal(i.spki_sha256, spki, 32);
    assert_true(i.days_left == 59 || i.days_left == 60);
    assert_string_equal(json_string_value(json_object_get(a.json, "tenant_key")), KEY_HEX);
    assert_int_equal(json_integer_value(json_object_get(a.json, "key_version")), 1);
    assert_string_equal(json_string_value(json_object_get(a.json, "hub_url")),
                        "https://hub.example:8443");
    assert_non_null(strstr(json_string_value(json_object_get(a.json, "ca")), "BEGIN CERT"));
    assert_string_equal(json_string_value(json_object_get(a.json, "serial")), i.serial);
    json_decref(a.json);

    /* once only */
    a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
    assert_int_equal(a.status, 403);
    assert_string_equal(err_of(&a), "enrolment token already used");
    json_decref(a.json);
    free(body);
    ts_pki_free_secret(key);
    free(csr);
}

static void test_enroll_refusals(void **state)
{
    struct fx *f = *state;
    char token[80], *key = NULL, *csr = NULL, *body;
    unsigned char spki[32];
    assert_int_equal(ts_pki_new_key_csr(NULL, &key, &csr, spki, NULL, 0), TS_OK);
    make_token("S001", "T08", "1h", token, sizeof token);

    static const struct {
        const char *body, *words;
        int status;
    } bad[] = {
        {"{\"token\": \"x\"", "malformed", 400},
        {"[]", "JSON object", 400},
        {"{\"token\": 1, \"csr\": \"x\"}", "non-empty strings", 400},
        {"{\"token\": \"0123\", \"csr\": \"x\"}", "unknown enrolment token", 403},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        struct answer a =
            call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", bad[k].body, NULL);
        assert_int_equal(a.status, bad[k].status);
        if (!strstr(err_of(&a), bad[k].words))
            fail_msg("%s: error \"%s\" lacks \"%s\"", bad[k].body, err_of(&a), bad[k].words);
        json_decref(a.json);
    }
    /* A CSR to refuse does not spend the token: wrong curve, then garbage,
     * then a signature that does not verify. */
    char tampered[4096];
    ts_strlcpy(tampered, csr, sizeof tampered);
    char *sig = strstr(tampered, "-----END") - 6; /* inside the signature's base64 */
    *sig = *sig == 'A' ? 'B' : 'A';
    const char *csrs[] = {P384_CSR, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", tampered};
    const char *words[] = {"P-256", "csr", "csr"};
    for (size_t k = 0; k < 3; k++) {
        body = enroll_body(token, csrs[k]);
        struct answer a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
        assert_int_equal(a.status, 400);
        if (!strstr(err_of(&a), words[k]))
            fail_msg("csr %zu: error \"%s\" lacks \"%s\"", k, err_of(&a), words[k]);
        json_decref(a.json);
        free(body);
    }
    body = enroll_body(token, csr);
    struct answer a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    free(body);

    /* expired: the hub's clock two hours later */
    make_token("S001", "T09", "1h", token, sizeof token);
    g_skew_ms = 2 * 3600 * 1000;
    body = enroll_body(token, csr);
    a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
    assert_int_equal(a.status, 403);
    assert_string_equal(err_of(&a), "enrolment token expired");
    json_decref(a.json);
    free(body);

    a = call(ts_hub_enroll_handle, f->trust, "GET", "/v1/enroll", NULL, NULL);
    assert_int_equal(a.status, 405);
    json_decref(a.json);
    a = call(ts_hub_enroll_handle, f->trust, "GET", "/v1/feed", NULL, NULL);
    assert_int_equal(a.status, 404);
    json_decref(a.json);

    char out[256];
    char *bad_args[] = {"enroll-token", "--store", "S 1", "--terminal", "T1", NULL};
    assert_int_equal(cli(ts_hub_enroll_token_main, out, sizeof out, 5, bad_args), 2);
    char *bad_ttl[] = {"enroll-token", "--store", "S1", "--terminal", "T1", "--ttl", "31d", NULL};
    assert_int_equal(cli(ts_hub_enroll_token_main, out, sizeof out, 7, bad_ttl), 2);
    ts_pki_free_secret(key);
    free(csr);
}

static struct ts_peer_id peer_of(const char *pem)
{
    struct ts_pki_cert_info i;
    assert_int_equal(ts_pki_cert_info_pem(pem, strlen(pem), &i, NULL, 0), TS_OK);
    struct ts_peer_id p = {.verified = true};
    ts_strlcpy(p.subject, i.subject, sizeof p.subject);
    ts_strlcpy(p.cn, i.cn, sizeof p.cn);
    ts_strlcpy(p.ou, i.ou, sizeof p.ou);
    ts_strlcpy(p.o, i.o, sizeof p.o);
    ts_strlcpy(p.serial, i.serial, sizeof p.serial);
    return p;
}

/* Renews for peer; returns the new certificate's identity. */
static struct ts_peer_id renew_as(struct fx *f, const struct ts_peer_id *peer, int want_status)
{
    char *key = NULL, *csr = NULL;
    unsigned char spki[32];
    assert_int_equal(ts_pki_new_key_csr("someone else", &key, &csr, spki, NULL, 0), TS_OK);
    json_t *o = json_pack("{s:s}", "csr", csr);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    struct answer a = call(renew_handler, f->trust, "POST", "/v1/renew", body, peer);
    assert_int_equal(a.status, want_status);
    struct ts_peer_id p = {0};
    if (want_status == 200) {
        const char *cert = json_string_value(json_object_get(a.json, "certificate"));
        assert_non_null(cert);
        p = peer_of(cert);
        struct ts_pki_cert_info i;
        assert_int_equal(ts_pki_cert_info_pem(cert, strlen(cert), &i, NULL, 0), TS_OK);
        assert_memory_equal(i.spki_sha256, spki, 32);
    }
    json_decref(a.json);
    free(body);
    ts_pki_free_secret(key);
    free(csr);
    return p;
}

/* A body naming "token" twice is refused (400), not read as its last
 * value: with last-wins the second, valid token below would enrol. The
 * valid token is not spent by the refusal. */
static void test_enroll_duplicate_keys(void **state)
{
    struct fx *f = *state;
    char token[80], *key = NULL, *csr = NULL;
    unsigned char spki[32];
    assert_int_equal(ts_pki_new_key_csr(NULL, &key, &csr, spki, NULL, 0), TS_OK);
    make_token("S001", "T10", "1h", token, sizeof token);
    json_t *c = json_string(csr);
    char *csr_json = json_dumps(c, JSON_ENCODE_ANY);
    json_decref(c);
    char body[8192];
    snprintf(body, sizeof body, "{\"token\": \"0123\", \"csr\": %s, \"token\": \"%s\"}", csr_json,
             token);
    struct answer a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
    assert_int_equal(a.status, 400);
    if (!strstr(err_of(&a), "duplicate"))
        fail_msg("error \"%s\" does not say duplicate", err_of(&a));
    json_decref(a.json);
    char *good = enroll_body(token, csr);
    a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", good, NULL);
    assert_int_equal(a.status, 200);
    json_decref(a.json);
    free(good);
    free(csr_json);
    ts_pki_free_secret(key);
    free(csr);
}

static void test_renew_keeps_the_presented_identity(void **state)
{
    struct fx *f = *state;
    struct ts_peer_id t01 = {
        .verified = true, .cn = "T01", .ou = "S001", .o = "acme", .serial = "4a"};
    struct ts_peer_id p = renew_as(f, &t01, 200);
    assert_string_equal(p.subject, "CN=T01, OU=S001, O=acme");
    assert_string_not_equal(p.serial, "4a");
}

static void test_revocation(void **state)
{
    struct fx *f = *state;
    char out[256], why[160];
    struct ts_peer_id t03 = {
        .verified = true, .cn = "T03", .ou = "S002", .o = "acme", .serial = "7f01"};
    struct ts_peer_id t04 = t03;
    ts_strlcpy(t04.cn, "T04", sizeof t04.cn);
    ts_strlcpy(t04.serial, "7f02", sizeof t04.serial);
    struct ts_peer_id issued = renew_as(f, &t03, 200); /* a certificate this hub made */
    assert_true(ts_hub_trust_peer_ok(f->trust, &t03, why, sizeof why));

    /* by name: every T03 certificate of S002 made until now */
    char *by_name[] = {"revoke", "--terminal", "T03", "--store", "S002", NULL};
    assert_int_equal(cli(ts_hub_revoke_main, out, sizeof out, 5, by_name), 0);
    assert_non_null(strstr(out, "T03"));
    assert_false(ts_hub_trust_peer_ok(f->trust, &t03, why, sizeof why));
    assert_non_null(strstr(why, "revoked"));
    assert_false(ts_hub_trust_peer_ok(f->trust, &issued, why, sizeof why));
    assert_true(ts_hub_trust_peer_ok(f->trust, &t04, why, sizeof why));
    struct ts_peer_id other_store = t03;
    ts_strlcpy(other_store.ou, "S001", sizeof other_store.ou);
    assert_true(ts_hub_trust_peer_ok(f->trust, &other_store, why, sizeof why));

    /* a certificate issued after the revocation (a new enrolment) gets in */
    char token[80], *key = NULL, *csr = NULL;
    unsigned char spki[32];
    g_skew_ms += 1000; /* the enrolment comes a second after the revocation */
    make_token("S002", "T03", "1h", token, sizeof token);
    assert_int_equal(ts_pki_new_key_csr(NULL, &key, &csr, spki, NULL, 0), TS_OK);
    char *body = enroll_body(token, csr);
    struct answer a = call(ts_hub_enroll_handle, f->trust, "POST", "/v1/enroll", body, NULL);
    assert_int_equal(a.status, 200);
    const char *cert = json_string_value(json_object_get(a.json, "certificate"));
    struct ts_peer_id again = peer_of(cert);
    assert_string_equal(again.subject, "CN=T03, OU=S002, O=acme");
    assert_true(ts_hub_trust_peer_ok(f->trust, &again, why, sizeof why));
    json_decref(a.json);
    free(body);
    ts_pki_free_secret(key);
    free(csr);

    /* by serial, given in upper case with a leading zero byte */
    char *by_serial[] = {"revoke", "--serial", "007F02", NULL};
    assert_int_equal(cli(ts_hub_revoke_main, out, sizeof out, 3, by_serial), 0);
    assert_false(ts_hub_trust_peer_ok(f->trust, &t04, why, sizeof why));
    assert_non_null(strstr(why, "7f02"));

    char *bad[] = {"revoke", "--serial", "xyz", NULL};
    assert_int_equal(cli(ts_hub_revoke_main, out, sizeof out, 3, bad), 2);
    char *both[] = {"revoke", "--serial", "7f", "--terminal", "T1", NULL};
    assert_int_equal(cli(ts_hub_revoke_main, out, sizeof out, 5, both), 2);
}

/* Without [hub] ca_key the hub says so instead of failing obscurely. */
static void test_no_enrolment_ca(void **state)
{
    (void)state;
    struct ts_hub_config cfg;
    struct ts_hub_trust *t = NULL;
    char err[512], conf[600];
    snprintf(conf, sizeof conf,
             "[hub]\ndb = %s/plain.db\n[cdp]\nwrite_key = k\n[tenant]\nname = acme\nkey = " KEY_HEX
             "\n",
             g_dir);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_trust_open(&cfg, NULL, &t, err, sizeof err), TS_OK);
    struct answer a = call(ts_hub_enroll_handle, t, "POST", "/v1/enroll",
                           "{\"token\":\"x\",\"csr\":\"y\"}", NULL);
    assert_int_equal(a.status, 503);
    assert_non_null(strstr(err_of(&a), "ca_key"));
    json_decref(a.json);
    struct ts_peer_id p = {.verified = true, .cn = "T01", .ou = "S001"};
    a = call(renew_handler, t, "POST", "/v1/renew", "{\"csr\":\"y\"}", &p);
    assert_int_equal(a.status, 503);
    json_decref(a.json);
    ts_hub_trust_close(t);

    /* enroll_listen without a CA key is a configuration error */
    snprintf(conf, sizeof conf,
             "[hub]\nenroll_listen = 127.0.0.1:8444\n[cdp]\nwrite_key = k\n[tenant]\nkey = " KEY_HEX
             "\n");
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "ca_key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enroll_issues_what_the_token_says, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enroll_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enroll_duplicate_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_keeps_the_presented_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation, setup, teardown),
        cmocka_unit_test(test_no_enrolment_ca),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
