/*
 * Reads and writes on an established connection (tls.h), TLS or plain TCP,
 * each against its deadline, and what a connection tells about itself.
 */
#include "tls_int.h"

#include <mbedtls/net_sockets.h>

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

long ts_tls_read(struct ts_tls_conn *c, void *buf, size_t n, int timeout_ms)
{
    if (!c || !buf || n == 0)
        return TS_ERR_INVAL;
    if (n > 1 << 20)
        n = 1 << 20;
    int64_t deadline = ts_tls_deadline_of(timeout_ms);
    for (;;) {
        short ev = POLLIN;
        if (c->tls) {
            ts_tls_tl_conn = c; /* a server may still write its tickets here */
            int ret = mbedtls_ssl_read(&c->ssl, buf, n);
            ts_tls_tl_conn = NULL;
            if (ret > 0)
                return ret;
            if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ||
                ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == MBEDTLS_ERR_NET_CONN_RESET)
                return TS_ERR_CLOSED;
            if (ts_compat_read_ticket(ret)) {
                ts_tls_keep_session(c);
                continue;
            }
            if (ts_compat_read_retry(ret))
                continue;
            /* TLS 1.3 clients finish the handshake before the server has
             * judged their certificate: a refusal arrives as an alert on
             * the first read, in the words a TLS 1.2 handshake gives. */
            if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && !c->ctx->server) {
                ts_tls_forget_session(c->ctx);
                return ts_tls_describe_alert(ts_compat_received_alert(&c->ssl), c->err,
                                             sizeof c->err);
            }
            if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
                ev = POLLOUT;
            } else if (ret != MBEDTLS_ERR_SSL_WANT_READ) {
                char mb[160];
                ts_compat_strerror(ret, mb, sizeof mb);
                TS_DEBUG("tls", "read failed: %s", mb);
                return TS_ERR_TLS;
            }
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
        int rc = ts_tls_wait_fd(c->fd, ev, deadline);
        if (rc)
            return rc;
    }
}

enum ts_err ts_tls_write(struct ts_tls_conn *c, const void *buf, size_t n, int timeout_ms)
{
    if (!c || (!buf && n))
        return TS_ERR_INVAL;
    const unsigned char *p = buf;
    int64_t deadline = ts_tls_deadline_of(timeout_ms);
    while (n > 0) {
        size_t chunk = n > (1 << 20) ? (1 << 20) : n;
        short ev = POLLOUT;
        if (c->tls) {
            ts_tls_tl_conn = c;
            int ret = mbedtls_ssl_write(&c->ssl, p, chunk);
            ts_tls_tl_conn = NULL;
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
        int rc = ts_tls_wait_fd(c->fd, ev, deadline);
        if (rc)
            return rc;
    }
    return TS_OK;
}

const struct ts_peer_id *ts_tls_peer(const struct ts_tls_conn *c)
{
    return c && c->tls ? &c->peer : NULL;
}

bool ts_tls_resumed(const struct ts_tls_conn *c)
{
    return c && c->tls && c->resumed;
}

const char *ts_tls_version(const struct ts_tls_conn *c)
{
    return c && c->tls ? ts_compat_conn_version(&c->ssl) : NULL;
}

const char *ts_tls_best_version(void)
{
    return ts_compat_best_version();
}

void ts_tls_library(char *buf, size_t n)
{
    ts_compat_library(buf, n);
}

const char *ts_tls_error(const struct ts_tls_conn *c)
{
    return c ? c->err : "";
}
