/*
 * TLS session resumption for tls.c: the server's session tickets (sealed
 * under rotating keys, made here or shared through ts_tls_opts.ticket_keys;
 * the certificate inside is judged again on every resume) and the client's
 * kept session, offered again to the same hub. docs/PROTOCOL.md, "TLS session resumption", says
 * what either side promises.
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
 * A ticket is the session, sealed whole under one of the context's ticket
 * keys (RFC 5077 §4 and RFC 8446 §4.6.1 leave the format to the server):
 *
 *   u32 key id | nonce[12] | tag[16] | sealed
 *   sealed = AES-256-GCM(key, nonce, aad = key id)
 *            (u64 auth_ms | u16 cert_len | client certificate, DER |
 *             mbedtls_ssl_session_save of the session)
 *
 * Our fields carry who the client is and when its certificate was verified
 * in a full handshake. mbedTLS keeps neither for TLS 1.3: it does not put
 * the peer certificate into a 1.3 session, and it stamps every ticket it
 * issues (one after each resumption too) with the time it is issued. The
 * lifetime must count from the full handshake and a resumed connection
 * must still know the terminal, on both versions, so both come from here.
 * The session is serialised by mbedTLS itself (as its own ticket module
 * does), but sealed under our keys, so hubs that share the keys
 * (ts_tls_opts.ticket_keys) open each other's tickets.
 */
#define SEAL_HDR (4 + 12 + 16)
#define SEAL_FIXED (8 + 2)
#define KEYS_RECHECK_MS (60 * 1000)
#define KEYS_MISS_MS 1000
#define KEYS_RETRY_MS 5000

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

/* Without a ticket_keys hook: a fresh random key every lifetime, the one
 * before it kept (tk_mu held). */
static int memory_keys_locked(struct ts_tls_ctx *c, int64_t now)
{
    if (c->ntkeys && now - c->tkeys[0].created_ms < c->session_lifetime_ms)
        return 0;
    struct ts_tls_ticket_key k = {.created_ms = now};
    int ret = ts_tls_rng(c, k.key, sizeof k.key);
    if (ret == 0)
        ret = ts_tls_rng(c, (unsigned char *)&k.id, sizeof k.id);
    if (ret)
        return ret;
    c->tkeys[1] = c->tkeys[0];
    c->tkeys[0] = k;
    c->ntkeys = c->ntkeys ? 2 : 1;
    mbedtls_platform_zeroize(&k, sizeof k);
    return 0;
}

/* Asks the hook for the keys (tk_mu held); on failure keeps what it had. */
static void hook_keys_locked(struct ts_tls_ctx *c, int64_t now)
{
    struct ts_tls_ticket_key k[2];
    size_t n = 0;
    int life = (int)(c->session_lifetime_ms / 1000);
    bool ok = c->ticket_keys(c->ticket_keys_ud, now, life, k, &n) == TS_OK && n >= 1 && n <= 2;
    if (ok) {
        memcpy(c->tkeys, k, sizeof k);
        c->ntkeys = n;
    } else {
        /* Without any key a TLS 1.3 handshake would fail at its ticket:
         * one of our own until the shared ones come (its tickets resume
         * here only). */
        TS_WARN("tls", "cannot load the shared session ticket keys; %s",
                c->ntkeys ? "keeping the ones held" : "using one of this process until then");
        if (!c->ntkeys)
            (void)memory_keys_locked(c, now);
    }
    mbedtls_platform_zeroize(k, sizeof k);
    int64_t next = now + (ok ? KEYS_RECHECK_MS : KEYS_RETRY_MS);
    if (c->ntkeys && c->tkeys[0].created_ms + c->session_lifetime_ms < next)
        next = c->tkeys[0].created_ms + c->session_lifetime_ms;
    c->tk_next_ms = next > now ? next : now + KEYS_MISS_MS;
}

/*
 * Copies the key to seal with (id 0) or the one named id into *out; false
 * when there is none. Refreshes the keys when they are due, or when id is
 * not among them (at most once a second: a made-up id costs nothing).
 */
static bool find_key_locked(struct ts_tls_ctx *c, bool seal, uint32_t id,
                            struct ts_tls_ticket_key *out)
{
    for (size_t i = 0; i < c->ntkeys; i++)
        if (seal ? i == 0 : c->tkeys[i].id == id) {
            *out = c->tkeys[i];
            return true;
        }
    return false;
}

static bool ticket_key(struct ts_tls_ctx *c, bool seal, uint32_t id, struct ts_tls_ticket_key *out)
{
    int64_t now = ts_now_wall_ms();
    pthread_mutex_lock(&c->tk_mu);
    if (!c->ticket_keys)
        (void)memory_keys_locked(c, now);
    else if (c->ntkeys == 0 || now >= c->tk_next_ms)
        hook_keys_locked(c, now);
    bool found = find_key_locked(c, seal, id, out);
    /* another process may have made a newer key since we last asked */
    if (!found && !seal && c->ticket_keys && now - c->tk_miss_ms >= KEYS_MISS_MS) {
        c->tk_miss_ms = now;
        hook_keys_locked(c, now);
        found = find_key_locked(c, seal, id, out);
    }
    pthread_mutex_unlock(&c->tk_mu);
    return found;
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
    if (der_len > 0xffff || (size_t)(end - start) < SEAL_HDR + SEAL_FIXED + der_len)
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    struct ts_tls_ticket_key k;
    if (!ticket_key(c, true, 0, &k))
        return MBEDTLS_ERR_SSL_INTERNAL_ERROR; /* no ticket: full handshakes only */
    size_t cap = (size_t)(end - start) - SEAL_HDR, saved = 0;
    unsigned char *plain = malloc(cap);
    int ret = plain ? 0 : MBEDTLS_ERR_SSL_ALLOC_FAILED;
    if (ret == 0) {
        put_be(plain, (uint64_t)auth, 8);
        put_be(plain + 8, der_len, 2);
        if (der_len)
            memcpy(plain + SEAL_FIXED, der, der_len);
        ret = mbedtls_ssl_session_save(session, plain + SEAL_FIXED + der_len,
                                       cap - SEAL_FIXED - der_len, &saved);
    }
    size_t n = SEAL_FIXED + der_len + saved;
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    if (ret == 0) {
        put_be(start, k.id, 4);
        if ((ret = ts_tls_rng(c, start + 4, 12)) == 0 &&
            (ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k.key, 256)) == 0)
            ret = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, n, start + 4, 12, start, 4,
                                            plain, start + SEAL_HDR, 16, start + 16);
    }
    mbedtls_gcm_free(&gcm);
    mbedtls_platform_zeroize(&k, sizeof k);
    if (plain) {
        mbedtls_platform_zeroize(plain, cap);
        free(plain);
    }
    if (ret)
        return ret;
    *tlen = SEAL_HDR + n;
    /* What is left of the lifetime counted from the full handshake, in whole
     * seconds rounded up: a TLS 1.3 client drops a ticket older than the
     * lifetime it was given (RFC 8446 4.6.1), so rounding down would end
     * resumption up to a second before the hub would (mbedTLS 3.6 does). */
    int64_t left = (c->session_lifetime_ms - (ts_now_wall_ms() - auth) + 999) / 1000;
    *lifetime = (uint32_t)(left < 1                               ? 1
                           : left > c->session_lifetime_ms / 1000 ? c->session_lifetime_ms / 1000
                                                                  : left);
    return 0;
}

/*
 * A ticket a client offers: it must open under the key its id names (one
 * this context holds: the newest or the one before), the full handshake it
 * came from must lie within the lifetime, and the client certificate sealed
 * in it must still be good: within its dates and let in by peer_check
 * (revocation). Any failure only means "no resumption": mbedTLS then runs
 * a full handshake, where the certificate is verified afresh and a revoked
 * one is refused with certificate_revoked as always. On success the
 * connection learns whom it resumed (ts_tls_tl_conn).
 */
int ts_tls_ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    struct ts_tls_ctx *c = p;
    struct ts_tls_conn *conn = ts_tls_tl_conn;
    if (!conn || len < SEAL_HDR + SEAL_FIXED)
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    struct ts_tls_ticket_key k;
    if (!ticket_key(c, false, (uint32_t)get_be(buf, 4), &k)) {
        TS_DEBUG("tls", "not resuming a session (its ticket key is not held): full handshake");
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    }
    size_t n = len - SEAL_HDR;
    unsigned char *plain = malloc(n);
    if (!plain) {
        mbedtls_platform_zeroize(&k, sizeof k);
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    }
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int ret = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k.key, 256);
    if (ret == 0)
        ret = mbedtls_gcm_auth_decrypt(&gcm, n, buf + 4, 12, buf, 4, buf + 16, 16, buf + SEAL_HDR,
                                       plain);
    mbedtls_gcm_free(&gcm);
    mbedtls_platform_zeroize(&k, sizeof k);
    size_t der_len = ret ? 0 : (size_t)get_be(plain + 8, 2);
    if (ret || SEAL_FIXED + der_len > n ||
        mbedtls_ssl_session_load(session, plain + SEAL_FIXED + der_len, n - SEAL_FIXED - der_len) !=
            0) {
        mbedtls_platform_zeroize(plain, n);
        free(plain);
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    }
    int64_t auth = (int64_t)get_be(plain, 8), age = ts_now_wall_ms() - auth;
    char why[320] = "";
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    if (der_len == 0 || mbedtls_x509_crt_parse_der(&crt, plain + SEAL_FIXED, der_len) != 0)
        ts_errf(why, sizeof why, "the session carries no client certificate");
    else if (age > c->session_lifetime_ms || age < -60000)
        ts_errf(why, sizeof why, "the session is older than its lifetime");
    else
        (void)ts_tls_session_peer_ok(c, &crt, why, sizeof why);
    if (!why[0]) {
        unsigned char *copy = malloc(der_len);
        if (!copy) {
            ts_errf(why, sizeof why, "out of memory");
        } else {
            memcpy(copy, plain + SEAL_FIXED, der_len);
            free(conn->ticket_cert);
            conn->ticket_cert = copy;
            conn->ticket_cert_len = der_len;
            conn->auth_ms = auth;
            conn->ticket_peer = (struct ts_peer_id){.verified = true};
            ts_tls_peer_from_crt(&crt, &conn->ticket_peer);
            conn->ticket_ok = true;
        }
    }
    mbedtls_x509_crt_free(&crt);
    mbedtls_platform_zeroize(plain, n);
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
