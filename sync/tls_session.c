/*
 * TLS session resumption for tls.c: the server's session tickets (our sealed
 * part in front of mbedTLS's ticket; the certificate inside is judged again
 * on every resume) and the client's kept session, offered again to the same
 * hub. docs/PROTOCOL.md, "TLS session resumption", says what either side
 * promises.
 */
#include "tls_int.h"

#include <mbedtls/platform_util.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- session tickets (server) ------------------------------------------ */

/*
 * mbedTLS calls the ticket callbacks with the context only, from inside
 * mbedtls_ssl_handshake: handshake() names the connection it runs for the
 * thread it runs on, so the callbacks can read and record what belongs to
 * that connection.
 */
_Thread_local struct ts_tls_conn *ts_tls_tl_conn;

/*
 * A ticket is our sealed part, then mbedTLS's ticket of the session (RFC
 * 5077 §4 and RFC 8446 §4.6.1 leave the format to the server):
 *
 *   u16 n | nonce[12] | tag[16] | sealed[n] | mbedTLS's ticket
 *   sealed = AES-256-GCM(ticket_key, nonce, aad = mbedTLS's ticket)
 *            (u64 auth_ms | u16 cert_len | client certificate, DER)
 *
 * Our part carries who the client is and when its certificate was verified
 * in a full handshake. mbedTLS keeps neither for TLS 1.3: it does not put
 * the peer certificate into a 1.3 ticket, and it stamps every ticket it
 * issues (one after each resumption too) with the time it is issued. The
 * lifetime must count from the full handshake and a resumed connection
 * must still know the terminal, on both versions, so both come from here.
 * The AAD ties our part to mbedTLS's: it cannot be moved to another ticket.
 */
#define SEAL_HDR (2 + 12 + 16)
#define SEAL_FIXED (8 + 2)

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int k = n - 1; k >= 0; k--, v >>= 8)
        p[k] = (unsigned char)(v & 0xff);
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v = v << 8 | p[k];
    return v;
}

int ts_tls_ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                        const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    struct ts_tls_ctx *c = p;
    struct ts_tls_conn *conn = ts_tls_tl_conn;
    const unsigned char *der = NULL;
    size_t der_len = 0;
    int64_t auth = 0;
    if (conn && conn->chain_checked) { /* a full handshake: the certificate it verified */
        const mbedtls_x509_crt *crt = ts_compat_session_peer_cert(session);
        if (crt && ts_compat_session_verify_result(session) == 0) {
            der = crt->raw.p;
            der_len = crt->raw.len;
        }
        auth = conn->handshake_ms;
    } else if (conn && conn->ticket_ok) { /* resumed: what the resumed ticket said */
        der = conn->ticket_cert;
        der_len = conn->ticket_cert_len;
        auth = conn->auth_ms;
    } /* else sealed without a certificate: it never resumes */
    size_t n = SEAL_FIXED + der_len;
    if (n > 0xffff || (size_t)(end - start) < SEAL_HDR + n)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    unsigned char *inner = start + SEAL_HDR + n;
    size_t inner_len = 0;
    int ret = mbedtls_ssl_ticket_write(&c->ticket, session, inner, end, &inner_len, lifetime);
    if (ret)
        return ret;
    unsigned char *plain = malloc(n);
    if (!plain)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    put_be(plain, (uint64_t)auth, 8);
    put_be(plain + 8, der_len, 2);
    if (der_len)
        memcpy(plain + SEAL_FIXED, der, der_len);
    put_be(start, n, 2);
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    if ((ret = ts_tls_rng(c, start + 2, 12)) == 0 &&
        (ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, c->ticket_key, 256)) == 0)
        ret = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, n, start + 2, 12, inner,
                                        inner_len, plain, start + SEAL_HDR, 16, start + 14);
    mbedtls_gcm_free(&gcm);
    mbedtls_platform_zeroize(plain, n);
    free(plain);
    if (ret)
        return ret;
    *tlen = SEAL_HDR + n + inner_len;
    return 0;
}

/*
 * A ticket a client offers: our part must open (our key, not moved from
 * another ticket), mbedTLS's too (its key, its own age limit), the full
 * handshake it came from must lie within the lifetime, and the client
 * certificate sealed in it must still be good: within its dates and let in
 * by peer_check (revocation). Any failure only means "no resumption":
 * mbedTLS then runs a full handshake, where the certificate is verified
 * afresh and a revoked one is refused with certificate_revoked as always.
 * On success the connection learns whom it resumed (ts_tls_tl_conn).
 */
int ts_tls_ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    struct ts_tls_ctx *c = p;
    struct ts_tls_conn *conn = ts_tls_tl_conn;
    if (!conn || len < SEAL_HDR)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    size_t n = (size_t)get_be(buf, 2);
    if (n < SEAL_FIXED || len - SEAL_HDR < n)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    unsigned char *inner = buf + SEAL_HDR + n;
    size_t inner_len = len - SEAL_HDR - n;
    unsigned char *plain = malloc(n);
    if (!plain)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, c->ticket_key, 256);
    if (ret == 0)
        ret = mbedtls_gcm_auth_decrypt(&gcm, n, buf + 2, 12, inner, inner_len, buf + 14, 16,
                                       buf + SEAL_HDR, plain);
    mbedtls_gcm_free(&gcm);
    if (ret) {
        free(plain);
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    }
    /* before mbedTLS opens its part in place: the AAD was checked above */
    if ((ret = mbedtls_ssl_ticket_parse(&c->ticket, session, inner, inner_len))) {
        free(plain);
        return ret;
    }
    int64_t auth = (int64_t)get_be(plain, 8), age = ts_now_wall_ms() - auth;
    size_t der_len = (size_t)get_be(plain + 8, 2);
    char why[320] = "";
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    if (der_len == 0 || SEAL_FIXED + der_len != n ||
        mbedtls_x509_crt_parse_der(&crt, plain + SEAL_FIXED, der_len) != 0)
        ts_errf(why, sizeof why, "the session carries no client certificate");
    else if (age > c->session_lifetime_ms || age < -60000)
        ts_errf(why, sizeof why, "the session is older than its lifetime");
    else
        (void)ts_tls_session_peer_ok(c, &crt, why, sizeof why);
    if (!why[0]) {
        free(conn->ticket_cert);
        memmove(plain, plain + SEAL_FIXED, der_len);
        conn->ticket_cert = plain;
        conn->ticket_cert_len = der_len;
        plain = NULL;
        conn->auth_ms = auth;
        conn->ticket_peer = (struct ts_peer_id){.verified = true};
        ts_tls_peer_from_crt(&crt, &conn->ticket_peer);
        conn->ticket_ok = true;
    }
    mbedtls_x509_crt_free(&crt);
    free(plain);
    if (why[0]) {
        TS_DEBUG("tls", "not resuming a session (%s): full handshake", why);
        return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    }
    return 0;
}

/*
 * Loads the certificate and key (when configured) and builds the mbedTLS
 * configuration around them and the context's CA and RNG.
 */
/* Client: drops the kept session (ctx->mu held). */
static void forget_session_locked(struct ts_tls_ctx *c)
{
    if (c->have_session) {
        mbedtls_ssl_session_free(&c->session);
        mbedtls_ssl_session_init(&c->session);
        c->have_session = false;
    }
}

void ts_tls_forget_session(struct ts_tls_ctx *ctx)
{
    if (!ctx || ctx->server)
        return;
    pthread_mutex_lock(&ctx->mu);
    forget_session_locked(ctx);
    pthread_mutex_unlock(&ctx->mu);
}

/*
 * Client: offers the kept session when it is for this host and port and
 * was made with the certificate this connection presents (a renewed pair
 * must be shown to the server in a full handshake). A failure to set it
 * only costs the resumption.
 */
void ts_tls_offer_session(struct ts_tls_conn *c, const char *host, int port)
{
    struct ts_tls_ctx *ctx = c->ctx;
    pthread_mutex_lock(&ctx->mu);
    if (ctx->have_session && (ctx->session_gen != c->tc->gen || ctx->session_port != port ||
                              strcmp(ctx->session_host, host) != 0))
        forget_session_locked(ctx);
    if (ctx->have_session && mbedtls_ssl_set_session(&c->ssl, &ctx->session) == 0) {
        c->offered = true;
        c->offered_peer = ctx->session_peer;
    }
    pthread_mutex_unlock(&ctx->mu);
}

/* Client: keeps this connection's session for the next connect: a TLS 1.2
 * one when the handshake ends, a TLS 1.3 one when its ticket arrives (a
 * resumed connection's fresh ticket replaces the one it used). */
void ts_tls_keep_session(struct ts_tls_conn *c)
{
    struct ts_tls_ctx *ctx = c->ctx;
    if (ctx->no_resume || !c->host[0])
        return;
    pthread_mutex_lock(&ctx->mu);
    forget_session_locked(ctx);
    if (mbedtls_ssl_get_session(&c->ssl, &ctx->session) == 0) {
        ctx->have_session = true;
        ts_strlcpy(ctx->session_host, c->host, sizeof ctx->session_host);
        ctx->session_port = c->port;
        ctx->session_gen = c->tc->gen;
        ctx->session_peer = c->peer;
    } else {
        mbedtls_ssl_session_free(&ctx->session);
        mbedtls_ssl_session_init(&ctx->session);
    }
    pthread_mutex_unlock(&ctx->mu);
}
