/*
 * TLS over TCP with mbedTLS for both ends (see tls.h). Sockets are
 * nonblocking; every wait is a poll() against a deadline, so no read, write
 * or handshake can hang a thread longer than its caller allowed. Version
 * differences between mbedTLS 2.28 and 3.6 live in tls_compat.h.
 */
#include "tls.h"
#include "tls_compat.h"

#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>

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
#include <time.h>
#include <unistd.h>

struct ts_tls_ctx {
    bool server;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt own;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    pthread_mutex_t rng_mu; /* the DRBG is shared by every connection */
};

struct ts_tls_conn {
    int fd;
    bool tls;
    int sys_errno; /* last socket error seen by the BIO callbacks */
    mbedtls_ssl_context ssl;
    struct ts_peer_id peer;
};

#define DEFAULT_TIMEOUT_MS 15000

/* Connections of many threads draw from one DRBG; mbedTLS may or may not be
 * built with MBEDTLS_THREADING_C, so the lock is ours. */
static int locked_rng(void *p, unsigned char *out, size_t n)
{
    struct ts_tls_ctx *c = p;
    pthread_mutex_lock(&c->rng_mu);
    int ret = mbedtls_ctr_drbg_random(&c->drbg, out, n);
    pthread_mutex_unlock(&c->rng_mu);
    return ret;
}

static int64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : ts_now_mono_ms() + timeout_ms;
}

/* Waits for events on fd until the deadline (-1 = none). */
static int wait_fd(int fd, short events, int64_t deadline)
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

static int load_file_check(const char *what, const char *path, char *err, size_t errsz)
{
    if (access(path, R_OK) != 0) {
        ts_errf(err, errsz, "cannot read %s %s: %s", what, path, strerror(errno));
        return errno == ENOENT ? TS_ERR_NOTFOUND : TS_ERR_PERM;
    }
    return TS_OK;
}

int ts_tls_ctx_new(const struct ts_tls_opts *o, struct ts_tls_ctx **out, char *err, size_t errsz)
{
    char mb[160];
    int ret, rc = TS_OK;
    if (!o || !out || !o->ca_file || !o->ca_file[0]) {
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
    pthread_mutex_init(&c->rng_mu, NULL);
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_x509_crt_init(&c->own);
    mbedtls_pk_init(&c->key);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);

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
    if ((rc = load_file_check("CA file", o->ca_file, err, errsz)))
        goto out;
    if ((ret = mbedtls_x509_crt_parse_file(&c->ca, o->ca_file)) < 0) {
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "cannot load CA file %s: %s", o->ca_file, mb);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    if (have_cert) {
        if ((rc = load_file_check("certificate", o->cert_file, err, errsz)) ||
            (rc = load_file_check("key", o->key_file, err, errsz)))
            goto out;
        if ((ret = mbedtls_x509_crt_parse_file(&c->own, o->cert_file)) != 0) {
            ts_compat_strerror(ret, mb, sizeof mb);
            ts_errf(err, errsz, "cannot load certificate %s: %s", o->cert_file, mb);
            rc = TS_ERR_CONFIG;
            goto out;
        }
        if ((ret = ts_compat_pk_parse_keyfile(&c->key, o->key_file, locked_rng, c)) != 0) {
            ts_compat_strerror(ret, mb, sizeof mb);
            ts_errf(err, errsz, "cannot load key %s: %s", o->key_file, mb);
            rc = TS_ERR_CONFIG;
            goto out;
        }
        if (ts_compat_pk_check_pair(&c->own.pk, &c->key, locked_rng, c) != 0) {
            ts_errf(err, errsz, "certificate %s does not match key %s", o->cert_file, o->key_file);
            rc = TS_ERR_CONFIG;
            goto out;
        }
    }
    if ((ret = mbedtls_ssl_config_defaults(
             &c->conf, o->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
             MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT))) {
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "TLS configuration failed: %s", mb);
        rc = TS_ERR_TLS;
        goto out;
    }
    ts_compat_min_tls12(&c->conf);
    /* Both directions verify: the hub refuses terminals without a
     * certificate from its CA, the agent refuses an impostor hub. */
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
    mbedtls_ssl_conf_rng(&c->conf, locked_rng, c);
    if (have_cert && (ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->own, &c->key))) {
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "cannot use certificate %s: %s", o->cert_file, mb);
        rc = TS_ERR_CONFIG;
        goto out;
    }
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
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_x509_crt_free(&c->own);
    mbedtls_pk_free(&c->key);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    pthread_mutex_destroy(&c->rng_mu);
    free(c);
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

/* ---- verification and identity ------------------------------------------ */

/* Words for the verify flags an operator can act on; the rest in mbedTLS's. */
static void describe_verify(uint32_t flags, const char *host, char *err, size_t errsz)
{
    static const struct {
        uint32_t flag;
        const char *text;
    } known[] = {
        {MBEDTLS_X509_BADCERT_MISSING, "no certificate presented"},
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "certificate not trusted by the configured CA"},
        {MBEDTLS_X509_BADCERT_EXPIRED, "certificate expired"},
        {MBEDTLS_X509_BADCERT_FUTURE, "certificate not valid yet (check the clock)"},
        {MBEDTLS_X509_BADCERT_REVOKED, "certificate revoked"},
        {MBEDTLS_X509_BADCERT_KEY_USAGE, "certificate key usage does not allow this"},
        {MBEDTLS_X509_BADCERT_EXT_KEY_USAGE,
         "certificate not issued for this role (extended key usage)"},
    };
    size_t used = 0;
    uint32_t rest = flags;
    err[0] = '\0';
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        if (!(flags & known[i].flag))
            continue;
        rest &= ~known[i].flag;
        int n = snprintf(err + used, errsz - used, "%s%s", used ? "; " : "", known[i].text);
        used += n > 0 ? (size_t)n : 0;
        if (used >= errsz)
            return;
    }
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        rest &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
        int n = snprintf(err + used, errsz - used, "%shost name mismatch (expected %s)",
                         used ? "; " : "", host ? host : "?");
        used += n > 0 ? (size_t)n : 0;
        if (used >= errsz)
            return;
    }
    if (rest || used == 0) {
        char info[256];
        int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", rest ? rest : flags);
        while (n > 0 && (info[n - 1] == '\n' || info[n - 1] == ' '))
            info[--n] = '\0';
        for (char *p = info; *p; p++)
            if (*p == '\n')
                *p = ';';
        snprintf(err + used, errsz - used, "%s%s", used ? "; " : "",
                 n > 0 ? info : "certificate verification failed");
    }
}

static void copy_name_value(char *dst, size_t dstsz, const mbedtls_x509_buf *v)
{
    size_t n = v->len < dstsz - 1 ? v->len : dstsz - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = v->p[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[n] = '\0';
}

static void fill_peer(struct ts_tls_conn *c)
{
    const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&c->ssl);
    if (!crt)
        return;
    c->peer.verified = mbedtls_ssl_get_verify_result(&c->ssl) == 0;
    if (mbedtls_x509_dn_gets(c->peer.subject, sizeof c->peer.subject, &crt->subject) < 0)
        c->peer.subject[0] = '\0';
    for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
        if (!n->oid.p)
            continue;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
            copy_name_value(c->peer.cn, sizeof c->peer.cn, &n->val);
        else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORG_UNIT, &n->oid) == 0)
            copy_name_value(c->peer.ou, sizeof c->peer.ou, &n->val);
        else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORGANIZATION, &n->oid) == 0)
            copy_name_value(c->peer.o, sizeof c->peer.o, &n->val);
    }
    const mbedtls_x509_time *t = &crt->valid_to;
    struct tm tm = {.tm_year = t->year - 1900,
                    .tm_mon = t->mon - 1,
                    .tm_mday = t->day,
                    .tm_hour = t->hour,
                    .tm_min = t->min,
                    .tm_sec = t->sec};
    int64_t left = (int64_t)timegm(&tm) - (int64_t)time(NULL);
    /* floor: a certificate expiring in 10 hours has 0 days left */
    c->peer.days_left = (int)(left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
}

/*
 * Runs the handshake to completion or the deadline. On failure err says why
 * in words: a verify failure (TS_ERR_CERT) names the reasons; a refused or
 * broken handshake (TS_ERR_TLS) says who hung up.
 */
static int handshake(struct ts_tls_conn *c, bool server, const char *host, int64_t deadline,
                     char *err, size_t errsz)
{
    for (;;) {
        int ret = mbedtls_ssl_handshake(&c->ssl);
        if (ret == 0)
            break;
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            int rc = wait_fd(c->fd, ret == MBEDTLS_ERR_SSL_WANT_READ ? POLLIN : POLLOUT, deadline);
            if (rc == TS_ERR_TIMEOUT) {
                ts_errf(err, errsz, "TLS handshake timed out");
                return TS_ERR_TIMEOUT;
            }
            if (rc)
                return rc;
            continue;
        }
        uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
        if (flags != 0 && flags != (uint32_t)-1) {
            describe_verify(flags, host, err, errsz);
            return TS_ERR_CERT;
        }
        if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
            ts_errf(err, errsz, "%s",
                    server ? "the client aborted the handshake (does it trust our certificate?)"
                           : "the server refused the handshake (a missing or untrusted client "
                             "certificate?)");
        } else if (ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == MBEDTLS_ERR_NET_CONN_RESET) {
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
    fill_peer(c);
    return TS_OK;
}

static int conn_start_tls(struct ts_tls_conn *c, struct ts_tls_ctx *ctx, const char *host,
                          int64_t deadline, char *err, size_t errsz)
{
    c->tls = true;
    mbedtls_ssl_init(&c->ssl);
    int ret = mbedtls_ssl_setup(&c->ssl, &ctx->conf);
    /* Always set on the client: it is what the certificate is checked
     * against (and 3.6 refuses to verify without it). */
    if (ret == 0 && !ctx->server)
        ret = mbedtls_ssl_set_hostname(&c->ssl, host);
    if (ret) {
        char mb[160];
        ts_compat_strerror(ret, mb, sizeof mb);
        ts_errf(err, errsz, "TLS setup failed: %s", mb);
        return ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? TS_ERR_NOMEM : TS_ERR_TLS;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
    return handshake(c, ctx->server, host, deadline, err, errsz);
}

/* ---- connect / accept --------------------------------------------------- */

/*
 * Tries every address of host in turn ("localhost" may resolve to ::1 first
 * while the server listens on 127.0.0.1), sharing the time left between the
 * addresses still to try.
 */
static int tcp_connect(const char *host, int port, int timeout_ms, int64_t deadline, int *fd_out,
                       char *err, size_t errsz)
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
            int w = wait_fd(fd, POLLOUT, my_deadline);
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

int ts_tls_connect(struct ts_tls_ctx *ctx, const char *host, int port, int timeout_ms,
                   struct ts_tls_conn **out, char *err, size_t errsz)
{
    if (!host || !out || port <= 0 || port > 65535 || (ctx && ctx->server)) {
        ts_errf(err, errsz, "invalid connect arguments");
        return TS_ERR_INVAL;
    }
    if (timeout_ms == 0)
        timeout_ms = DEFAULT_TIMEOUT_MS;
    int64_t deadline = deadline_of(timeout_ms);
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
    if (ctx && (rc = conn_start_tls(c, ctx, host, deadline, err, errsz))) {
        ts_tls_close(c);
        return rc;
    }
    *out = c;
    return TS_OK;
}

int ts_tls_accept(struct ts_tls_ctx *ctx, int fd, int timeout_ms, struct ts_tls_conn **out,
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
    if (ctx && (rc = conn_start_tls(c, ctx, NULL, deadline_of(timeout_ms), err, errsz))) {
        mbedtls_ssl_free(&c->ssl); /* the socket stays the caller's on failure */
        free(c);
        return rc;
    }
    *out = c;
    return TS_OK;
}

/* ---- I/O ---------------------------------------------------------------- */

long ts_tls_read(struct ts_tls_conn *c, void *buf, size_t n, int timeout_ms)
{
    if (!c || !buf || n == 0)
        return TS_ERR_INVAL;
    if (n > 1 << 20)
        n = 1 << 20;
    int64_t deadline = deadline_of(timeout_ms);
    for (;;) {
        short ev = POLLIN;
        if (c->tls) {
            int ret = mbedtls_ssl_read(&c->ssl, buf, n);
            if (ret > 0)
                return ret;
            if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ||
                ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == MBEDTLS_ERR_NET_CONN_RESET)
                return TS_ERR_CLOSED;
            if (ts_compat_read_retry(ret))
                continue;
            if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
                ev = POLLOUT;
            else if (ret != MBEDTLS_ERR_SSL_WANT_READ)
                return TS_ERR_TLS;
        } else {
            ssize_t r = recv(c->fd, buf, n, 0);
            if (r > 0)
                return (long)r;
            if (r == 0 || errno == ECONNRESET)
                return TS_ERR_CLOSED;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return TS_ERR_IO;
        }
        int rc = wait_fd(c->fd, ev, deadline);
        if (rc)
            return rc;
    }
}

int ts_tls_write(struct ts_tls_conn *c, const void *buf, size_t n, int timeout_ms)
{
    if (!c || (!buf && n))
        return TS_ERR_INVAL;
    const unsigned char *p = buf;
    int64_t deadline = deadline_of(timeout_ms);
    while (n > 0) {
        size_t chunk = n > (1 << 20) ? (1 << 20) : n;
        short ev = POLLOUT;
        if (c->tls) {
            int ret = mbedtls_ssl_write(&c->ssl, p, chunk);
            if (ret > 0) {
                p += ret;
                n -= (size_t)ret;
                continue;
            }
            if (ret == MBEDTLS_ERR_NET_CONN_RESET)
                return TS_ERR_CLOSED;
            if (ret == MBEDTLS_ERR_SSL_WANT_READ)
                ev = POLLIN;
            else if (ret != MBEDTLS_ERR_SSL_WANT_WRITE)
                return TS_ERR_TLS;
        } else {
            ssize_t r = send(c->fd, p, chunk, MSG_NOSIGNAL);
            if (r >= 0) {
                p += r;
                n -= (size_t)r;
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return TS_ERR_CLOSED;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return TS_ERR_IO;
        }
        int rc = wait_fd(c->fd, ev, deadline);
        if (rc)
            return rc;
    }
    return TS_OK;
}

const struct ts_peer_id *ts_tls_peer(const struct ts_tls_conn *c)
{
    return c && c->tls ? &c->peer : NULL;
}

void ts_tls_close(struct ts_tls_conn *c)
{
    if (!c)
        return;
    if (c->tls) {
        (void)mbedtls_ssl_close_notify(&c->ssl); /* one nonblocking try */
        mbedtls_ssl_free(&c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}
