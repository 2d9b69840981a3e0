/*
 * The hub behind a TLS-terminating proxy (hub/proxy.c) and the CRL it
 * writes for that proxy (sync/pki_crl.c), called directly: which headers
 * make an identity and from whom, what the configuration refuses, and that
 * a CRL we write is one mbedTLS's verifier reads and applies (nginx's
 * OpenSSL reading it is tests/blackbox/test_nginx.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pki.h"
#include "pki_crl.h"
#include "proxy.h"

#define KEY_HEX "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"

static int conf_text(const char *hub_extra, struct ts_hub_config *cfg, char *err, size_t errsz)
{
    char text[2048];
    snprintf(text, sizeof text,
             "[hub]\nlisten = 127.0.0.1:0\ndb = /tmp/unused.db\n%s\n"
             "[cdp]\nwrite_key = k\n[tenant]\nname = acme\nkey = %s\n",
             hub_extra, KEY_HEX);
    return ts_hub_config_parse("hub.conf", text, cfg, err, errsz);
}

static struct ts_hub_config proxied(void)
{
    struct ts_hub_config cfg;
    char err[512] = "";
    int rc = conf_text("listen_plain = 127.0.0.1:0\ntrusted_proxy = 127.0.0.1, ::1, 10.0.0.5", &cfg,
                       err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    return cfg;
}

/* A request head with these headers (name, value, name, value, NULL). */
static void msg_with(struct ts_http_msg *m, ...)
{
    va_list ap;
    memset(m, 0, sizeof *m);
    va_start(ap, m);
    for (char *n; (n = va_arg(ap, char *)) != NULL;) {
        m->headers[m->nheaders].name = n;
        m->headers[m->nheaders].value = va_arg(ap, char *);
        m->nheaders++;
    }
    va_end(ap);
}

static void config_rules(void **state)
{
    (void)state;
    struct ts_hub_config cfg;
    char err[512] = "";
    assert_int_equal(conf_text("", &cfg, err, sizeof err), TS_OK);
    assert_string_equal(cfg.listen_plain, "");
    /* Without trusted_proxy anybody reaching the port could be any terminal. */
    assert_int_equal(conf_text("listen_plain = 127.0.0.1:8080", &cfg, err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "trusted_proxy"));
    assert_non_null(strstr(err, "hub.conf"));
    assert_int_equal(conf_text("listen_plain = 127.0.0.1:8080\ntrusted_proxy = nginx.local", &cfg,
                               err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "trusted_proxy"));
    assert_int_equal(
        conf_text("listen_plain = 8080\ntrusted_proxy = 127.0.0.1", &cfg, err, sizeof err),
        TS_ERR_CONFIG);
    assert_non_null(strstr(err, "listen_plain"));
    cfg = proxied();
    assert_string_equal(cfg.proxy_verify_header, "X-SSL-Client-Verify");
    assert_string_equal(cfg.proxy_dn_header, "X-SSL-Client-S-DN");
}

static void trusted_addresses(void **state)
{
    (void)state;
    struct ts_hub_config cfg = proxied();
    assert_true(ts_hub_proxy_trusted(&cfg, "127.0.0.1"));
    assert_true(ts_hub_proxy_trusted(&cfg, "::1"));
    assert_true(ts_hub_proxy_trusted(&cfg, "10.0.0.5"));
    assert_true(ts_hub_proxy_trusted(&cfg, "::ffff:10.0.0.5")); /* v4 on a v6 socket */
    assert_false(ts_hub_proxy_trusted(&cfg, "127.0.0.2"));
    assert_false(ts_hub_proxy_trusted(&cfg, "10.0.0.50"));
    assert_false(ts_hub_proxy_trusted(&cfg, ""));
    assert_false(ts_hub_proxy_trusted(&cfg, NULL));
}

static void identity_from_headers(void **state)
{
    (void)state;
    struct ts_hub_config cfg = proxied();
    struct ts_http_msg m;
    struct ts_peer_id id;
    char why[256];
    /* nginx >= 1.11.6: RFC 2253, most specific first; serial in uppercase
     * with a leading zero byte as OpenSSL may print it. */
    msg_with(&m, "x-ssl-client-verify", "SUCCESS", "X-SSL-Client-S-DN", "CN=T01,OU=S001,O=acme",
             "X-SSL-Client-Serial", "00A1B2", "X-SSL-Client-V-End", "Jan  1 00:00:00 2099 GMT",
             NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_OK);
    assert_true(id.verified);
    assert_string_equal(id.cn, "T01");
    assert_string_equal(id.ou, "S001");
    assert_string_equal(id.o, "acme");
    assert_string_equal(id.serial, "a1b2"); /* as tls_verify.c has it */
    assert_true(id.days_left > 365);

    /* escapes: "\," inside a value and UTF-8 written as \HH bytes */
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", "X-SSL-Client-S-DN",
             "CN=T\\2C01,OU=Caf\\C3\\A9 Nord,O=acme\\, inc", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_OK);
    assert_string_equal(id.cn, "T,01");
    assert_string_equal(id.ou, "Caf\xc3\xa9 Nord");
    assert_string_equal(id.o, "acme, inc");

    /* $ssl_client_s_dn_legacy */
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", "X-SSL-Client-S-DN", "/O=acme/OU=S002/CN=T07",
             NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_OK);
    assert_string_equal(id.cn, "T07");
    assert_string_equal(id.ou, "S002");

    /* no certificate at all: not an error here, the endpoint decides */
    msg_with(&m, NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_NOTFOUND);
    msg_with(&m, "X-SSL-Client-Verify", "NONE", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_NOTFOUND);

    /* refused: failed verification, missing or ambiguous subject, bad serial */
    msg_with(&m, "X-SSL-Client-Verify", "FAILED:certificate revoked", "X-SSL-Client-S-DN",
             "CN=T01,OU=S001,O=acme", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_AUTH);
    assert_non_null(strstr(why, "certificate revoked"));
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_AUTH);
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", "X-SSL-Client-S-DN",
             "CN=T01,OU=S001,OU=S002,O=acme", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_AUTH);
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", "X-SSL-Client-S-DN", "OU=S001,O=acme", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_AUTH);
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", "X-SSL-Client-S-DN", "CN=T01,OU=S001,O=acme",
             "X-SSL-Client-Serial", "12:34", NULL);
    assert_int_equal(ts_hub_proxy_identity(&cfg, &m, &id, why, sizeof why), TS_ERR_AUTH);
}

/* Nothing of an untrusted peer's request reaches the API, whatever it says. */
static void untrusted_peer_refused(void **state)
{
    (void)state;
    struct ts_hub_config cfg = proxied();
    struct ts_hub_api api = {.cfg = &cfg}; /* no store: reaching it would crash */
    struct ts_http_msg m;
    msg_with(&m, "X-SSL-Client-Verify", "SUCCESS", "X-SSL-Client-S-DN", "CN=T01,OU=S001,O=acme",
             NULL);
    struct ts_httpd_req req = {
        .method = "GET", .target = "/v1/feed", .path = "/v1/feed", .msg = &m, .body = ""};
    snprintf(req.remote_addr, sizeof req.remote_addr, "192.0.2.7");
    struct ts_httpd_resp resp = {.status = 200};
    ts_hub_proxy_handle(&api, &req, &resp);
    assert_int_equal(resp.status, 403);
    assert_non_null(strstr(resp.body.data, "trusted proxy"));
    ts_buf_free(&resp.body);
    /* from the proxy, but the proxy says verification failed */
    msg_with(&m, "X-SSL-Client-Verify", "FAILED:unable to get issuer certificate", NULL);
    snprintf(req.remote_addr, sizeof req.remote_addr, "127.0.0.1");
    resp = (struct ts_httpd_resp){.status = 200};
    ts_hub_proxy_handle(&api, &req, &resp);
    assert_int_equal(resp.status, 403);
    ts_buf_free(&resp.body);
}

/* ---- CRL ------------------------------------------------------------------ */

static char g_dir[128];

static void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

static void issue(const char *cn, const char *out)
{
    char ca[200], cakey[200], crt[200], key[200], err[256];
    path(ca, sizeof ca, "ca.pem");
    path(cakey, sizeof cakey, "ca.key");
    snprintf(crt, sizeof crt, "%s/%s.pem", g_dir, out);
    snprintf(key, sizeof key, "%s/%s.key", g_dir, out);
    int64_t now = (int64_t)time(NULL);
    struct ts_pki_issue p = {.ca_cert_file = ca,
                             .ca_key_file = cakey,
                             .cn = cn,
                             .ou = "S001",
                             .o = "acme",
                             .not_before = now - 60,
                             .not_after = now + 86400,
                             .out_cert_file = crt,
                             .out_key_file = key};
    if (ts_pki_issue(&p, err, sizeof err))
        fail_msg("%s", err);
}

static uint32_t verify_flags(const char *cert, const mbedtls_x509_crl *crl)
{
    char ca_path[200], crt_path[200];
    mbedtls_x509_crt ca, crt;
    uint32_t flags = 0;
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&crt);
    path(ca_path, sizeof ca_path, "ca.pem");
    snprintf(crt_path, sizeof crt_path, "%s/%s.pem", g_dir, cert);
    assert_int_equal(mbedtls_x509_crt_parse_file(&ca, ca_path), 0);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, crt_path), 0);
    (void)mbedtls_x509_crt_verify(&crt, &ca, (mbedtls_x509_crl *)crl, NULL, &flags, NULL, NULL);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&crt);
    return flags;
}

static void crl_revokes_listed_only(void **state)
{
    (void)state;
    char err[256], ca[200], cakey[200];
    snprintf(g_dir, sizeof g_dir, "/tmp/hng-crl-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    if (ts_pki_ca_init(g_dir, "crl test CA", 30, err, sizeof err))
        fail_msg("%s", err);
    path(ca, sizeof ca, "ca.pem");
    path(cakey, sizeof cakey, "ca.key");
    issue("T01", "t01");
    issue("T02", "t02");
    struct ts_pki_cert_info info;
    char t01[200];
    snprintf(t01, sizeof t01, "%s/t01.pem", g_dir);
    assert_int_equal(ts_pki_cert_info_file(t01, &info, err, sizeof err), TS_OK);

    /* The serial as the hub stores it, plus one with the top bit set (needs
     * a 0x00 in DER) and an odd number of digits. */
    int64_t now = (int64_t)time(NULL);
    struct ts_pki_crl_entry e[] = {{info.serial, now - 10}, {"ff01", now - 5}, {"abc", now - 1}};
    char *pem = NULL;
    assert_int_equal(
        ts_pki_crl_make(ca, cakey, e, 3, now - 60, now + 86400, 7, &pem, err, sizeof err), TS_OK);
    assert_non_null(strstr(pem, "-----BEGIN X509 CRL-----"));

    mbedtls_x509_crl crl;
    mbedtls_x509_crl_init(&crl);
    assert_int_equal(mbedtls_x509_crl_parse(&crl, (const unsigned char *)pem, strlen(pem) + 1), 0);
    assert_int_equal(crl.version, 2);
    int n = 0;
    for (const mbedtls_x509_crl_entry *x = &crl.entry; x && x->serial.len; x = x->next)
        n++;
    assert_int_equal(n, 3);
    /* signed by the CA (a bad signature would flag BADCRL_NOT_TRUSTED) */
    assert_int_equal(verify_flags("t01", &crl), MBEDTLS_X509_BADCERT_REVOKED);
    assert_int_equal(verify_flags("t02", &crl), 0);
    mbedtls_x509_crl_free(&crl);
    free(pem);

    /* An empty list is a valid CRL too (nginx needs one before any revoke). */
    assert_int_equal(
        ts_pki_crl_make(ca, cakey, NULL, 0, now - 60, now + 86400, 8, &pem, err, sizeof err),
        TS_OK);
    mbedtls_x509_crl_init(&crl);
    assert_int_equal(mbedtls_x509_crl_parse(&crl, (const unsigned char *)pem, strlen(pem) + 1), 0);
    assert_int_equal(verify_flags("t01", &crl), 0);
    mbedtls_x509_crl_free(&crl);
    free(pem);

    /* Not hex: refused, nothing written. */
    struct ts_pki_crl_entry bad = {"12:34", now};
    pem = NULL;
    assert_int_equal(
        ts_pki_crl_make(ca, cakey, &bad, 1, now - 60, now + 86400, 9, &pem, err, sizeof err),
        TS_ERR_INVAL);
    assert_null(pem);
    /* A key that is not the CA's. */
    char t02key[200];
    snprintf(t02key, sizeof t02key, "%s/t02.key", g_dir);
    assert_int_equal(
        ts_pki_crl_make(ca, t02key, NULL, 0, now - 60, now + 86400, 9, &pem, err, sizeof err),
        TS_ERR_CONFIG);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_rules),
        cmocka_unit_test(trusted_addresses),
        cmocka_unit_test(identity_from_headers),
        cmocka_unit_test(untrusted_peer_refused),
        cmocka_unit_test(crl_revokes_listed_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
