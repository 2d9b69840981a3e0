/*
 * TLS between hub and terminals, the trust side: a peer check (revocation)
 * refusing a handshake and a kept connection, session resumption and what
 * ends it (revocation, expiry, another key, its lifetime, renewal), the
 * enrolment listener without client certificates, renewed files picked up,
 * CSR-signed certificates. On mbedTLS 2.28 (TLS 1.2) and 3.6 (TLS 1.3).
 */
#include "tls_fx.h"

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
