/*
 * TLS over TCP with mbedTLS for both ends (see tls.h). Sockets are
 * nonblocking; every wait is a poll() against a deadline, so no read, write
 * or handshake can hang a thread longer than its caller allowed. Version
 * differences between mbedTLS 2.28 and 3.6 live in tls_compat.h; what the
 * peer is and whether to trust it, in tls_verify.c; session resumption
 * (the server's tickets, the client's kept session), in tls_session.c.
 */
#include "tls_int.h"

#include <mbedtls/net_sockets.h>
#include <mbedtls/platform_util.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 15000
#define DEFAULT_SESSION_LIFETIME_S 3600
#define MAX_SESSION_LIFETIME_S 86400

int64_t ts_tls_deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : ts_now_mono_ms() + timeout_ms;
}

/* Waits for events on fd until the deadline (-1 = none). */
enum ts_err ts_tls_wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            int64_t left = deadline - ts_now_mono_ms();
            if (left <= 0)
                return TS_ERR_TIMEOUT;
            ms = left > 60000 ? 60000 : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n > 0)
            return TS_OK; /* readable, writable or an error the next call reports */
        if (n < 0 && errno != EINTR)
            return TS_ERR_IO;
    }
}

/* ---- context ------------------------------------------------------------ */

static enum ts_err load_file_check(const char *what, const char *path, char *err, size_t errsz)
{
    if (access(path, R_OK) != 0) {
        ts_errf(err, errsz, "cannot read %s %s: %s", what, path, strerror(errno));
        return errno == ENOENT ? TS_ERR_NOTFOUND : TS_ERR_PERM;
    }
    return TS_OK;
}

static bool file_id_of(const char *path, struct file_id *id)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    *id = (struct file_id){
        .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
    return true;
}

static bool file_id_same(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void tls_conf_free(struct tls_conf *t)
{
    if (!t)
        return;
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_x509_crt_free(&t->own);
    mbedtls_pk_free(&t->key);
    free(t);
}

/* Drops one reference (ctx->mu held); frees on the last. */
static void tls_conf_unref(struct tls_conf *t)
{
    if (t && --t->refs == 0)
        tls_conf_free(t);
}

static enum ts_err tls_conf_load(struct ts_tls_ctx *c, struct tls_conf **out, char *err,
                                 size_t errsz)
{
    char mb[160];
    int ret, rc = TS_OK;
    struct tls_conf *t = calloc(1, sizeof *t);
    if (!t)
        return TS_ERR_NOMEM;
    t->refs = 1;
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->own);
    mbedtls_pk_init(&t->key);
    if (c->have_cert) {
        if ((rc = load_file_check("certificate", c->cert_file, err, errsz)) ||
            (rc = load_file_check("key", c->key_file, err, errsz)))
            goto out;
        /* The identities first: a file replaced while we read it is then
         * seen as changed again at the next check, never as current. */
        file_id_of(c->cert_file, &t->cert_id);
        file_id_of(c->key_file, &t->key_id);
        if ((ret = mbedtls_x509_crt_parse_file(&t->own, c->cert_file)) != 0) {
            ts_compat_strerror(ret, mb, sizeof mb);
            ts_errf(err, errsz, "cannot load certificate %s: %s", c->cert_file, mb);
            rc = TS_ERR_CONFIG;
            goto out;
        }
        if ((ret = ts_compat_pk_parse_keyfile(&t->key, c->key_file, ts_tls_rng, c)) != 0) {
            ts_compat_strerror(ret, mb, sizeof mb);
            ts_errf(err, errsz, "cannot load key %s: %s", c->key_file, mb);
            rc = TS_ERR_CONFIG;
            goto out;
        }
        if (ts_compat_pk_check_pair(&t->own.pk, &t->key, ts_tls_rng, c) != 0) {
            ts_errf(err, errsz, "certificate %s does not match key %s", c->cert_file, c->key_file);
            rc = TS_ERR_CONFIG;
            goto out;
        }
    }
    if ((ret = mbedtls_ssl_config_defaults(
             &t->conf, c->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
             MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT))) {
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "TLS configuration failed: %s", mb);
        rc = TS_ERR_TLS;
        goto out;
    }
    ts_compat_conf_versions(&t->conf);
    ts_compat_conf_suites(&t->conf);
    if (!c->server)
        ts_compat_conf_client_tickets(&t->conf);
    /* Both directions verify: the hub refuses terminals without a
     * certificate from its CA, the agent refuses an impostor hub. Only the
     * enrolment listener does not ask: its callers have no certificate yet
     * and prove themselves with a one-time token instead. */
    if (c->no_client_auth) {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&t->conf, &c->ca, NULL);
    }
    mbedtls_ssl_conf_rng(&t->conf, ts_tls_rng, c);
    if (c->tickets)
        mbedtls_ssl_conf_session_tickets_cb(&t->conf, ts_tls_ticket_write, ts_tls_ticket_parse, c);
    if (c->have_cert && (ret = mbedtls_ssl_conf_own_cert(&t->conf, &t->own, &t->key))) {
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "cannot use certificate %s: %s", c->cert_file, mb);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    *out = t;
    t = NULL;
out:
    tls_conf_free(t);
    return rc;
}

enum ts_err ts_tls_ctx_new(const struct ts_tls_opts *o, struct ts_tls_ctx **out, char *err,
                           size_t errsz)
{
    char mb[160];
    int ret, rc = TS_OK;
    bool no_client_auth = o && o->server && o->no_client_auth;
    if (!o || !out || (!no_client_auth && (!o->ca_file || !o->ca_file[0]))) {
        ts_errf(err, errsz, "TLS needs a CA file");
        return TS_ERR_CONFIG;
    }
    bool have_cert = o->cert_file && o->cert_file[0], have_key = o->key_file && o->key_file[0];
    if (have_cert != have_key || (o->server && !have_cert)) {
        ts_errf(err, errsz, "TLS needs both a certificate and its key%s",
                o->server ? " on the server side" : "");
        return TS_ERR_CONFIG;
    }
    struct ts_tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return TS_ERR_NOMEM;
    c->server = o->server;
    c->no_client_auth = no_client_auth;
    c->have_cert = have_cert;
    c->peer_check = o->server ? o->peer_check : NULL;
    c->peer_check_ud = o->peer_check_ud;
    c->no_resume = o->no_resume;
    pthread_mutex_init(&c->rng_mu, NULL);
    pthread_mutex_init(&c->mu, NULL);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    pthread_mutex_init(&c->tk_mu, NULL);
    mbedtls_ssl_session_init(&c->session);

    if (!o->server && o->pin_sha256 && o->pin_sha256[0]) {
        if (ts_tls_pin_parse(o->pin_sha256, c->pin) != TS_OK) {
            ts_errf(err, errsz,
                    "public key pin \"%.80s\" is not a SHA-256 in hex (64 digits) or base64",
                    o->pin_sha256);
            rc = TS_ERR_CONFIG;
            goto out;
        }
        c->has_pin = true;
    }
    if (have_cert &&
        (!(c->cert_file = strdup(o->cert_file)) || !(c->key_file = strdup(o->key_file)))) {
        rc = TS_ERR_NOMEM;
        goto out;
    }
    if (ts_compat_crypto_init() != 0) {
        ts_errf(err, errsz, "cannot initialise the crypto library");
        rc = TS_ERR_TLS;
        goto out;
    }
    static const unsigned char pers[] = "tillside-tls";
    if ((ret = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, pers,
                                     sizeof pers - 1))) {
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "cannot seed the random generator: %s", mb);
        rc = TS_ERR_TLS;
        goto out;
    }
    /* Tickets only where they carry an identity: the enrolment listener
     * (no client certificates) has nothing worth resuming. */
    if (o->server && !no_client_auth && !o->no_resume) {
        int life = o->session_lifetime_s > 0 ? o->session_lifetime_s : DEFAULT_SESSION_LIFETIME_S;
        if (life > MAX_SESSION_LIFETIME_S)
            life = MAX_SESSION_LIFETIME_S;
        c->session_lifetime_ms = (int64_t)life * 1000;
        c->ticket_keys = o->ticket_keys;
        c->ticket_keys_ud = o->ticket_keys_ud;
        c->tickets = true; /* the keys come with the first ticket (tls_session.c) */
    }
    if (!no_client_auth) {
        if ((rc = load_file_check("CA file", o->ca_file, err, errsz)))
            goto out;
        if ((ret = mbedtls_x509_crt_parse_file(&c->ca, o->ca_file)) < 0) {
            ts_compat_strerror(ret, mb, sizeof mb);
            ts_errf(err, errsz, "cannot load CA file %s: %s", o->ca_file, mb);
            rc = TS_ERR_CONFIG;
            goto out;
        }
    }
    if ((rc = tls_conf_load(c, &c->cur, err, errsz)))
        goto out;
    c->cur->gen = ++c->gens;
    *out = c;
    c = NULL;
out:
    ts_tls_ctx_free(c);
    return rc;
}

void ts_tls_ctx_free(struct ts_tls_ctx *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    tls_conf_unref(c->cur); /* connections must be closed by now */
    pthread_mutex_unlock(&c->mu);
    mbedtls_ssl_session_free(&c->session);
    mbedtls_platform_zeroize(c->tkeys, sizeof c->tkeys);
    pthread_mutex_destroy(&c->tk_mu);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    pthread_mutex_destroy(&c->rng_mu);
    pthread_mutex_destroy(&c->mu);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

/*
 * The configuration a new connection should use, with a reference taken.
 * A client whose certificate or key file changed since it was loaded
 * (renewal) loads the new pair first; when that fails (a pair caught half
 * replaced, say) it keeps the old one, which still works, and tries again
 * at the next connect.
 */
static struct tls_conf *tls_conf_get(struct ts_tls_ctx *c)
{
    struct file_id cid, kid;
    struct tls_conf *fresh = NULL;
    pthread_mutex_lock(&c->mu);
    bool stale = !c->server && c->have_cert && file_id_of(c->cert_file, &cid) &&
                 file_id_of(c->key_file, &kid) &&
                 (!file_id_same(&cid, &c->cur->cert_id) || !file_id_same(&kid, &c->cur->key_id));
    pthread_mutex_unlock(&c->mu);
    if (stale && tls_conf_load(c, &fresh, NULL, 0) != TS_OK)
        fresh = NULL;
    pthread_mutex_lock(&c->mu);
    if (fresh) {
        tls_conf_unref(c->cur);
        c->cur = fresh;
        fresh->gen = ++c->gens; /* the kept session was made with the old pair */
    }
    struct tls_conf *t = c->cur;
    t->refs++;
    pthread_mutex_unlock(&c->mu);
    return t;
}

static void tls_conf_put(struct ts_tls_ctx *c, struct tls_conf *t)
{
    if (!c || !t)
        return;
    pthread_mutex_lock(&c->mu);
    tls_conf_unref(t);
    pthread_mutex_unlock(&c->mu);
}

/* ---- socket BIO --------------------------------------------------------- */

/* MSG_NOSIGNAL: a peer that vanished must give EPIPE, not kill the process. */
static int bio_send(void *p, const unsigned char *buf, size_t len)
{
    struct ts_tls_conn *c = p;
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        c->sys_errno = errno;
        return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
                                                     : MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int bio_recv(void *p, unsigned char *buf, size_t len)
{
    struct ts_tls_conn *c = p;
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_READ;
        c->sys_errno = errno;
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

static void set_socket_opts(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int one = 1;
    /* request/response traffic: do not let Nagle hold back the last segment */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/*
 * One go at the handshake on the nonblocking socket: TS_OK when it is over
 * (and the peer judged), TS_ERR_AGAIN when it must wait for the socket
 * (*want_write: to be writable, else readable), or a failure with err in
 * words: a verify failure (TS_ERR_CERT) names the reasons; a refused or
 * broken handshake (TS_ERR_TLS) says who hung up.
 */
static enum ts_err handshake_step(struct ts_tls_conn *c, bool server, const char *host,
                                  bool *want_write, char *err, size_t errsz)
{
    /* c->hs_optional, server: verification left to us (TLS 1.3, tls_compat.h) */
    ts_tls_tl_conn = c;
    int ret = server ? ts_compat_server_handshake(&c->ssl, !c->ctx->no_client_auth, &c->hs_optional)
                     : mbedtls_ssl_handshake(&c->ssl);
    ts_tls_tl_conn = NULL;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        *want_write = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
        return TS_ERR_AGAIN;
    }
    if (ret != 0) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
        if (flags != 0 && flags != (uint32_t)-1) {
            ts_tls_describe_refusal(c, flags, host, err, errsz);
            return TS_ERR_CERT;
        }
        if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ||
            (server && ts_compat_alert_unreadable(&c->ssl, ret))) {
            if (server) {
                ts_errf(err, errsz, "%s",
                        "the client aborted the handshake (does it trust our certificate?)");
                return TS_ERR_TLS;
            }
            return ts_tls_describe_alert(ts_compat_received_alert(&c->ssl), err, errsz);
        }
        if (ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == MBEDTLS_ERR_NET_CONN_RESET) {
            ts_errf(err, errsz, "the %s closed the connection during the TLS handshake",
                    server ? "client" : "server");
        } else if (ret == MBEDTLS_ERR_NET_SEND_FAILED || ret == MBEDTLS_ERR_NET_RECV_FAILED) {
            ts_errf(err, errsz, "TLS handshake failed: %s", strerror(c->sys_errno));
        } else {
            char mb[160];
            ts_compat_strerror(ret, mb, sizeof mb);
            ts_errf(err, errsz, "TLS handshake failed: %s", mb);
        }
        return TS_ERR_TLS;
    }
    /* A verification left to us (TLS 1.3 server): a full handshake whose
     * client certificate failed is refused now, with the alert a TLS 1.2
     * handshake would have sent, under keys the client reads. A resumed one
     * was judged in ts_tls_ticket_parse. */
    uint32_t flags = c->hs_optional ? mbedtls_ssl_get_verify_result(&c->ssl) : 0;
    if (flags != 0 && !(c->ticket_ok && !c->chain_checked)) {
        (void)mbedtls_ssl_send_alert_message(&c->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                             ts_tls_refusal_alert(c, flags));
        ts_tls_describe_refusal(c, flags, host, err, errsz);
        return TS_ERR_CERT;
    }
    ts_tls_fill_peer(c);
    return TS_OK;
}

/* Runs the handshake to completion or the deadline. */
static enum ts_err handshake(struct ts_tls_conn *c, bool server, const char *host, int64_t deadline,
                             char *err, size_t errsz)
{
    for (;;) {
        bool want_write = false;
        enum ts_err rc = handshake_step(c, server, host, &want_write, err, errsz);
        if (rc != TS_ERR_AGAIN)
            return rc;
        rc = ts_tls_wait_fd(c->fd, want_write ? POLLOUT : POLLIN, deadline);
        if (rc == TS_ERR_TIMEOUT) {
            ts_errf(err, errsz, "TLS handshake timed out");
            return TS_ERR_TIMEOUT;
        }
        if (rc)
            return rc;
    }
}

static enum ts_err handshake_done(struct ts_tls_conn *c, const char *host, char *err, size_t errsz);

/* conn_start_tls's deadline for "set up only, the caller steps the handshake". */
#define NO_HANDSHAKE (-2)

static enum ts_err conn_start_tls(struct ts_tls_conn *c, struct ts_tls_ctx *ctx, const char *host,
                                  int port, int64_t deadline, char *err, size_t errsz)
{
    c->tls = true;
    c->ctx = ctx;
    c->tc = tls_conf_get(ctx);
    c->handshake_ms = ts_now_wall_ms();
    if (!ctx->server && strlen(host) < sizeof c->host) {
        ts_strlcpy(c->host, host, sizeof c->host);
        c->port = port;
    }
    mbedtls_ssl_init(&c->ssl);
    int ret = mbedtls_ssl_setup(&c->ssl, &c->tc->conf);
    /* Always set on the client: it is what the certificate is checked
     * against (and 3.6 refuses to verify without it), resumed or not. */
    if (ret == 0 && !ctx->server)
        ret = mbedtls_ssl_set_hostname(&c->ssl, host);
    if (ret) {
        char mb[160];
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "TLS setup failed: %s", mb);
        return ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TS_ERR_NOMEM : TS_ERR_TLS;
    }
    /* On every connection, also without a pin or a revocation hook: that
     * it ran tells a full handshake from a resumed one. */
    mbedtls_ssl_set_verify(&c->ssl, ts_tls_verify_cb, c);
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    if (!ctx->server && !ctx->no_resume)
        ts_tls_offer_session(c, host, port);
    if (deadline == NO_HANDSHAKE)
        return TS_OK;
    int rc = handshake(c, ctx->server, host, deadline, err, errsz);
    if (rc) {
        if (!ctx->server)
            ts_tls_forget_session(ctx);
        return rc;
    }
    return handshake_done(c, host, err, errsz);
}

/* After a handshake that succeeded: whom it was with, and what to keep. */
static enum ts_err handshake_done(struct ts_tls_conn *c, const char *host, char *err, size_t errsz)
{
    struct ts_tls_ctx *ctx = c->ctx;
    (void)host;
    /* Both ends verify certificates on every full handshake, so one that
     * completed without a verified chain resumed a session. */
    c->resumed = !c->chain_checked && (ctx->server ? c->ticket_ok : c->offered);
    /* Whom a resumed connection talks to: the ticket's client certificate
     * (server), the server of the offered session's full handshake
     * (client). mbedTLS knows neither after a TLS 1.3 resumption. */
    if (c->resumed)
        c->peer = ctx->server ? c->ticket_peer : c->offered_peer;
    if (ctx->server && c->resumed && !c->peer.verified) {
        /* ts_tls_ticket_parse only takes tickets that carry a verified client
         * certificate; never let a resumed connection in without one */
        (void)mbedtls_ssl_send_alert_message(&c->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                             MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED);
        ts_errf(err, errsz, "resumed session without a verified client certificate");
        return TS_ERR_CERT;
    }
    if (!ctx->server && !c->resumed && ts_compat_session_at_handshake(&c->ssl))
        ts_tls_keep_session(c);
    TS_DEBUG("tls", "%s %s%s", ctx->server ? "accepted" : "connected",
             ts_compat_conn_version(&c->ssl) ? ts_compat_conn_version(&c->ssl) : "TLS",
             c->resumed ? ", resumed" : "");
    return TS_OK;
}

/* ---- connect / accept --------------------------------------------------- */

/*
 * Tries every address of host in turn ("localhost" may resolve to ::1 first
 * while the server listens on 127.0.0.1), sharing the time left between the
 * addresses still to try.
 */
static enum ts_err tcp_connect(const char *host, int port, int timeout_ms, int64_t deadline,
                               int *fd_out, char *err, size_t errsz)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0) {
        ts_errf(err, errsz, "connect to %s:%d failed: cannot resolve host: %s", host, port,
                gai_strerror(g));
        return TS_ERR_CONNECT;
    }
    int naddr = 0, last_errno = ECONNREFUSED, rc = TS_ERR_CONNECT;
    bool timed_out = false;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        naddr++;
    for (struct addrinfo *a = res; a; a = a->ai_next, naddr--) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int64_t my_deadline = deadline;
        if (deadline >= 0 && naddr > 1)
            my_deadline = ts_now_mono_ms() + (deadline - ts_now_mono_ms()) / naddr;
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            int w = ts_tls_wait_fd(fd, POLLOUT, my_deadline);
            if (w == TS_OK) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                    soerr = errno;
                r = soerr ? -1 : 0;
                errno = soerr;
            } else {
                timed_out = w == TS_ERR_TIMEOUT;
                errno = timed_out ? ETIMEDOUT : errno;
                r = -1;
            }
        }
        if (r == 0) {
            set_socket_opts(fd);
            *fd_out = fd;
            rc = TS_OK;
            break;
        }
        last_errno = errno;
        close(fd);
        if (deadline >= 0 && ts_now_mono_ms() >= deadline)
            break;
    }
    freeaddrinfo(res);
    if (rc == TS_OK)
        return TS_OK;
    if (timed_out && last_errno == ETIMEDOUT) {
        ts_errf(err, errsz, "connect to %s:%d timed out after %d ms", host, port, timeout_ms);
        return TS_ERR_TIMEOUT;
    }
    ts_errf(err, errsz, "connect to %s:%d failed: %s", host, port, strerror(last_errno));
    return TS_ERR_CONNECT;
}

enum ts_err ts_tls_connect(struct ts_tls_ctx *ctx, const char *host, int port, int timeout_ms,
                           struct ts_tls_conn **out, char *err, size_t errsz)
{
    if (!host || !out || port <= 0 || port > 65535 || (ctx && ctx->server)) {
        ts_errf(err, errsz, "invalid connect arguments");
        return TS_ERR_INVAL;
    }
    if (timeout_ms == 0)
        timeout_ms = DEFAULT_TIMEOUT_MS;
    int64_t deadline = ts_tls_deadline_of(timeout_ms);
    bool retried = false;
again:;
    int fd = -1;
    int rc = tcp_connect(host, port, timeout_ms, deadline, &fd, err, errsz);
    if (rc)
        return rc;
    struct ts_tls_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return TS_ERR_NOMEM;
    }
    c->fd = fd;
    if (ctx && (rc = conn_start_tls(c, ctx, host, port, deadline, err, errsz))) {
        /* A server that broke the handshake over the session we offered
         * (instead of ignoring it) gets one full handshake more, if there
         * is time; the session is gone by now. Refusals (TS_ERR_CERT) and
         * timeouts stand. */
        bool again = c->offered && rc == TS_ERR_TLS && !retried &&
                     (deadline < 0 || ts_now_mono_ms() < deadline);
        ts_tls_close(c);
        if (again) {
            TS_DEBUG("tls", "resuming with %s:%d failed (%s): full handshake", host, port, err);
            retried = true;
            goto again;
        }
        return rc;
    }
    *out = c;
    return TS_OK;
}

enum ts_err ts_tls_accept(struct ts_tls_ctx *ctx, int fd, int timeout_ms, struct ts_tls_conn **out,
                          char *err, size_t errsz)
{
    if (fd < 0 || !out || (ctx && !ctx->server)) {
        ts_errf(err, errsz, "invalid accept arguments");
        return TS_ERR_INVAL;
    }
    if (timeout_ms == 0)
        timeout_ms = DEFAULT_TIMEOUT_MS;
    set_socket_opts(fd);
    struct ts_tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return TS_ERR_NOMEM;
    c->fd = fd;
    int rc = TS_OK;
    if (ctx && (rc = conn_start_tls(c, ctx, NULL, 0, ts_tls_deadline_of(timeout_ms), err, errsz))) {
        c->fd = -1; /* the socket stays the caller's on failure */
        ts_tls_close(c);
        return rc;
    }
    *out = c;
    return TS_OK;
}

/* Event loops (tls.h): set up now, the handshake in steps. host NULL: the
 * server's side. On failure the socket stays the caller's. */
static enum ts_err conn_begin(struct ts_tls_ctx *ctx, int fd, const char *host, int port,
                              struct ts_tls_conn **out, char *err, size_t errsz)
{
    set_socket_opts(fd);
    struct ts_tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return TS_ERR_NOMEM;
    c->fd = fd;
    int rc = ctx ? conn_start_tls(c, ctx, host, port, NO_HANDSHAKE, err, errsz) : TS_OK;
    if (rc) {
        c->fd = -1;
        ts_tls_close(c);
        return rc;
    }
    c->hs_done = !ctx;
    *out = c;
    return TS_OK;
}

enum ts_err ts_tls_accept_begin(struct ts_tls_ctx *ctx, int fd, struct ts_tls_conn **out, char *err,
                                size_t errsz)
{
    if (fd < 0 || !out || (ctx && !ctx->server)) {
        ts_errf(err, errsz, "invalid accept arguments");
        return TS_ERR_INVAL;
    }
    return conn_begin(ctx, fd, NULL, 0, out, err, errsz);
}

enum ts_err ts_tls_accept_step(struct ts_tls_conn *c, bool *want_write, char *err, size_t errsz)
{
    *want_write = false;
    if (c->hs_done)
        return TS_OK;
    enum ts_err rc = handshake_step(c, true, NULL, want_write, err, errsz);
    if (rc == TS_OK && (rc = handshake_done(c, NULL, err, errsz)) == TS_OK)
        c->hs_done = true;
    return rc;
}

enum ts_err ts_tls_connect_begin(struct ts_tls_ctx *ctx, int fd, const char *host, int port,
                                 struct ts_tls_conn **out, char *err, size_t errsz)
{
    if (fd < 0 || !out || !host || port <= 0 || port > 65535 || (ctx && ctx->server)) {
        ts_errf(err, errsz, "invalid connect arguments");
        return TS_ERR_INVAL;
    }
    return conn_begin(ctx, fd, host, port, out, err, errsz);
}

enum ts_err ts_tls_connect_step(struct ts_tls_conn *c, bool *want_write, char *err, size_t errsz)
{
    *want_write = false;
    if (c->hs_done)
        return TS_OK;
    enum ts_err rc = handshake_step(c, false, c->host, want_write, err, errsz);
    if (rc == TS_OK && (rc = handshake_done(c, c->host, err, errsz)) == TS_OK)
        c->hs_done = true;
    else if (rc != TS_ERR_AGAIN)
        ts_tls_forget_session(c->ctx); /* as ts_tls_connect: the next one is a full handshake */
    return rc;
}

int ts_tls_fd(const struct ts_tls_conn *c)
{
    return c ? c->fd : -1;
}

void ts_tls_close(struct ts_tls_conn *c)
{
    if (!c)
        return;
    if (c->tls) {
        if (c->fd >= 0)
            (void)mbedtls_ssl_close_notify(&c->ssl); /* one nonblocking try */
        mbedtls_ssl_free(&c->ssl);
        tls_conf_put(c->ctx, c->tc);
        free(c->ticket_cert);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}
