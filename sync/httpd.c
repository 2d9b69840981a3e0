/*
 * The hub's HTTP(S) server (see httpd.h): one accept thread, one detached
 * thread per connection up to max_conns, HTTP/1.1 keep-alive and
 * pipelining, TLS with required client certificates through tls.h.
 * ts_httpd_stop wakes every blocked thread by shutting its socket down and
 * waits until the last connection thread has let go of the server.
 */
#include "httpd.h"
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_MAX_BYTES (8u << 20)
#define DRAIN_MAX_MS 2000
#define HANDSHAKE_LINGER_MS 500

struct conn {
    struct ts_httpd *s;
    int fd;
    char remote[64];
    struct conn *prev, *next;
};

struct ts_httpd {
    int lfd;
    int port;
    pthread_t accept_thr;
    struct ts_tls_ctx *tls;
    ts_tls_peer_check peer_check;
    void *peer_check_ud;
    ts_httpd_handler handler;
    void *ud;
    int max_conns;
    int io_timeout_ms;
    size_t max_body;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t idle;
    bool stopping;
    int nconns;
    struct conn *conns;
};

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } known[] = {
        {100, "Continue"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {507, "Insufficient Storage"},
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (known[i].status == status)
            return known[i].text;
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

void ts_httpd_error(struct ts_httpd_resp *resp, int status, const char *msg)
{
    if (!resp)
        return;
    resp->status = status;
    ts_strlcpy(resp->content_type, "application/json", sizeof resp->content_type);
    ts_json_error(&resp->body, msg);
}

static bool is_stopping(struct ts_httpd *s)
{
    pthread_mutex_lock(&s->mu);
    bool st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/*
 * Writes one response. Content-Length always (none for 1xx/204, whose
 * framing forbids it), and no body bytes for HEAD or bodiless statuses.
 */
static int send_response(struct ts_httpd *s, struct ts_tls_conn *tc, const char *method,
                         struct ts_httpd_resp *r, bool keep)
{
    ts_buf head = {0};
    int st = r->status, rc;
    bool no_body = st < 200 || st == 204 || st == 304;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    ts_buf_printf(&head, "HTTP/1.1 %d %s\r\nDate: %s\r\n", st, reason(st), date);
    if (!no_body)
        ts_buf_printf(&head, "Content-Type: %s\r\n",
                      r->content_type[0] ? r->content_type : "application/json");
    if (st >= 200 && st != 204)
        ts_buf_printf(&head, "Content-Length: %zu\r\n", no_body ? 0 : r->body.len);
    ts_buf_printf(&head, "Connection: %s\r\n", keep ? "keep-alive" : "close");
    size_t xl = strnlen(r->extra_headers, sizeof r->extra_headers);
    if (xl) {
        ts_buf_append(&head, r->extra_headers, xl);
        if (xl < 2 || memcmp(r->extra_headers + xl - 2, "\r\n", 2) != 0)
            ts_buf_puts(&head, "\r\n");
    }
    ts_buf_puts(&head, "\r\n");
    bool body = !no_body && strcmp(method, "HEAD") != 0 && r->body.len > 0;
    if (body && r->body.len <= 65536) {
        rc = ts_buf_append(&head, r->body.data, r->body.len);
        body = false;
        if (rc)
            goto out;
    }
    if (!head.data) {
        rc = TS_ERR_NOMEM;
        goto out;
    }
    rc = ts_tls_write(tc, head.data, head.len, s->io_timeout_ms);
    if (rc == TS_OK && body)
        rc = ts_tls_write(tc, r->body.data, r->body.len, s->io_timeout_ms);
out:
    ts_buf_free(&head);
    return rc;
}

static void send_error(struct ts_httpd *s, struct ts_tls_conn *tc, int status, const char *msg)
{
    struct ts_httpd_resp r = {0};
    ts_httpd_error(&r, status, msg);
    send_response(s, tc, "GET", &r, false);
    ts_buf_free(&r.body);
}

/* After refusing a request whose body is still arriving, read and drop it
 * for a while: closing with unread data makes the kernel send a reset that
 * can destroy the refusal before the client reads it. */
static void drain(struct ts_tls_conn *tc)
{
    char buf[16384];
    size_t total = 0;
    int64_t end = ts_now_mono_ms() + DRAIN_MAX_MS;
    while (total < DRAIN_MAX_BYTES) {
        int64_t left = end - ts_now_mono_ms();
        if (left <= 0)
            break;
        long n = ts_tls_read(tc, buf, sizeof buf, (int)left);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

/* Does the head ask for "Expect: 100-continue"? (Checked on the raw head,
 * which is only parsed into fields once the whole body is in.) */
static bool wants_continue(const char *head, size_t n)
{
    static const char key[] = "\r\nexpect:";
    for (size_t i = 0; i + sizeof key - 1 < n; i++) {
        if (strncasecmp(head + i, key, sizeof key - 1) != 0)
            continue;
        const char *v = head + i + sizeof key - 1, *e = head + n;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        return (size_t)(e - v) >= 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
    return false;
}

/*
 * Asks peer_check again about a kept connection's certificate: before a
 * request is handled, and before its answer goes out, so a terminal
 * revoked while its request waited (a long-poll) gets nothing more.
 */
static bool peer_refused(struct ts_httpd *s, struct conn *c, struct ts_tls_conn *tc)
{
    const struct ts_peer_id *peer = ts_tls_peer(tc);
    char why[160] = "";
    if (!s->peer_check || !peer || s->peer_check(s->peer_check_ud, peer, why, sizeof why))
        return false;
    TS_WARN("httpd", "%s: %s: %s; closing the connection", c->remote,
            why[0] ? why : "certificate refused", peer->subject);
    return true;
}

/* Runs one request through the handler and answers it. */
static int dispatch(struct ts_httpd *s, struct conn *c, struct ts_tls_conn *tc,
                    const struct ts_http_msg *m, bool *keep)
{
    struct ts_httpd_req req = {
        .method = m->method,
        .target = m->target,
        .msg = m,
        .body = m->body.data ? m->body.data : "",
        .body_len = m->body.len,
        .peer = ts_tls_peer(tc),
        .tls_resumed = ts_tls_resumed(tc),
        .tls_version = ts_tls_version(tc),
    };
    ts_strlcpy(req.remote_addr, c->remote, sizeof req.remote_addr);
    struct ts_httpd_resp resp = {.status = 200};
    ts_strlcpy(resp.content_type, "application/json", sizeof resp.content_type);
    if (ts_http_target_path(m->target, req.path, sizeof req.path) != TS_OK)
        ts_httpd_error(&resp, 414, "request target too long");
    else
        s->handler(s->ud, &req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        TS_ERROR("httpd", "handler for %s %s set status %d", m->method, req.path, resp.status);
        ts_httpd_error(&resp, 500, "internal error");
    }
    *keep = *keep && !is_stopping(s);
    TS_DEBUG("httpd", "%s %s %s -> %d", c->remote, m->method, req.path, resp.status);
    int rc = peer_refused(s, c, tc) ? TS_ERR_AUTH : send_response(s, tc, m->method, &resp, *keep);
    ts_buf_free(&resp.body);
    return rc;
}

/* The keep-alive loop of one connection: parse, dispatch, repeat. */
static void serve(struct ts_httpd *s, struct conn *c, struct ts_tls_conn *tc)
{
    ts_buf in = {0};
    struct ts_http_msg m = {0};
    bool sent_continue = false;
    char rbuf[16384];
    for (;;) {
        size_t used = 0;
        int rc = ts_http_parse(&m, true, in.data, in.len, s->max_body, &used);
        if (rc == TS_ERR_AGAIN) {
            if (!sent_continue && m.ps.head_len &&
                wants_continue(in.data + m.ps.head_start, m.ps.head_len)) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (ts_tls_write(tc, cont, sizeof cont - 1, s->io_timeout_ms))
                    break;
                sent_continue = true;
            }
            long n = ts_tls_read(tc, rbuf, sizeof rbuf, s->io_timeout_ms);
            if (n == TS_ERR_TIMEOUT && in.len > 0)
                send_error(s, tc, 408, "request not received in time");
            if (n <= 0)
                break; /* closed, idle timeout, or stopping */
            if (ts_buf_append(&in, rbuf, (size_t)n)) {
                send_error(s, tc, 503, "out of memory");
                break;
            }
            continue;
        }
        if (rc == TS_ERR_FULL) {
            char msg[96];
            if (m.ps.head_len) { /* the head was whole: it is the body that is too big */
                snprintf(msg, sizeof msg, "request body too large (limit %zu bytes)", s->max_body);
                send_error(s, tc, 413, msg);
            } else {
                send_error(s, tc, 431, "request header too large");
            }
            drain(tc);
            break;
        }
        if (rc != TS_OK) {
            send_error(s, tc, rc == TS_ERR_PROTO ? 400 : 500,
                       rc == TS_ERR_PROTO ? "malformed HTTP request" : "internal error");
            break;
        }
        if (peer_refused(s, c, tc))
            break;
        bool keep = m.keep_alive;
        rc = dispatch(s, c, tc, &m, &keep);
        ts_http_msg_clear(&m);
        sent_continue = false;
        memmove(in.data, in.data + used, in.len - used);
        in.len -= used;
        in.data[in.len] = '\0';
        if (rc || !keep)
            break;
    }
    ts_http_msg_clear(&m);
    ts_buf_free(&in);
}

/*
 * After a refused handshake: the alert saying why ("certificate revoked")
 * is written, but the client's last flight is still unread, and closing
 * now would make the kernel answer with a reset that destroys the alert
 * before the client reads it. So: half-close, then read until the client
 * hangs up (or HANDSHAKE_LINGER_MS passed).
 */
static void linger(int fd)
{
    char buf[4096];
    int64_t end = ts_now_mono_ms() + HANDSHAKE_LINGER_MS;
    shutdown(fd, SHUT_WR);
    for (;;) {
        int64_t left = end - ts_now_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0)
            break;
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct ts_httpd *s = c->s;
    struct ts_tls_conn *tc = NULL;
    char err[256] = "";
    int rc = ts_tls_accept(s->tls, c->fd, s->io_timeout_ms, &tc, err, sizeof err);
    if (rc == TS_OK) {
        serve(s, c, tc);
    } else if (!is_stopping(s)) {
        TS_WARN("httpd", "TLS handshake with %s failed: %s", c->remote, err);
        linger(c->fd);
    }

    /* Unlink before closing, under the lock, so ts_httpd_stop never shuts
     * down a descriptor number that has been closed and reused. */
    pthread_mutex_lock(&s->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (tc)
        ts_tls_close(tc);
    else
        close(c->fd);
    s->nconns--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    free(c);
    return NULL;
}

static void remote_name(const struct sockaddr_storage *ss, char *out, size_t outsz)
{
    out[0] = '\0';
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)outsz);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)outsz);
}

static void *accept_main(void *arg)
{
    struct ts_httpd *s = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (is_stopping(s))
                break;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            TS_WARN("httpd", "accept: %s", strerror(errno));
            ts_sleep_ms(100); /* EMFILE and friends: do not spin */
            continue;
        }
        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            break;
        }
        if (s->nconns >= s->max_conns) {
            pthread_mutex_unlock(&s->mu);
            TS_WARN("httpd", "connection limit (%d) reached, refusing a connection", s->max_conns);
            if (!s->tls) {
                static const char busy[] =
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    "Content-Length: 27\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
                    "{\"error\":\"server too busy\"}";
                (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        remote_name(&ss, c->remote, sizeof c->remote);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        pthread_t t;
        if (pthread_create(&t, &attr, conn_main, c) != 0) {
            s->conns = c->next;
            if (c->next)
                c->next->prev = NULL;
            s->nconns--;
            close(fd);
            free(c);
            TS_WARN("httpd", "cannot start a connection thread");
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

/* "host:port", "[v6]:port" or ":port" (all interfaces). */
static enum ts_err split_listen(const char *l, char *host, size_t hsz, char *port, size_t psz)
{
    const char *colon;
    if (l[0] == '[') {
        const char *rb = strchr(l, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - l - 1) >= hsz)
            return TS_ERR_CONFIG;
        memcpy(host, l + 1, (size_t)(rb - l - 1));
        host[rb - l - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(l, ':');
        if (!colon || (size_t)(colon - l) >= hsz)
            return TS_ERR_CONFIG;
        memcpy(host, l, (size_t)(colon - l));
        host[colon - l] = '\0';
    }
    /* atoi took "4294975488" for 8192 (it wraps). */
    int num;
    if (ts_port_parse(colon + 1, strlen(colon + 1), true, &num) != TS_OK ||
        ts_strlcpy(port, colon + 1, psz) >= psz)
        return TS_ERR_CONFIG;
    return TS_OK;
}

static enum ts_err listen_on(const char *listen_addr, int *fd_out, int *port_out, char *err,
                             size_t errsz)
{
    char host[256], port[16];
    if (!listen_addr || split_listen(listen_addr, host, sizeof host, port, sizeof port)) {
        ts_errf(err, errsz, "invalid listen address \"%s\" (want host:port)",
                listen_addr ? listen_addr : "");
        return TS_ERR_CONFIG;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (g) {
        ts_errf(err, errsz, "cannot resolve listen address %s: %s", listen_addr, gai_strerror(g));
        return TS_ERR_CONFIG;
    }
    int last = 0, fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0)
            break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        ts_errf(err, errsz, "cannot listen on %s: %s", listen_addr, strerror(last));
        return last == EACCES ? TS_ERR_PERM : TS_ERR_IO;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return TS_OK;
}

enum ts_err ts_httpd_start(const struct ts_httpd_opts *o, ts_httpd_handler h, void *ud,
                           struct ts_httpd **out, char *err, size_t errsz)
{
    if (!o || !h || !out) {
        ts_errf(err, errsz, "invalid arguments");
        return TS_ERR_INVAL;
    }
    bool tls = o->cert_file && o->cert_file[0];
    bool need_ca = !o->no_client_cert;
    if (tls && (!o->key_file || !o->key_file[0] ||
                (need_ca && (!o->client_ca_file || !o->client_ca_file[0])))) {
        ts_errf(err, errsz, "TLS needs a certificate, its key and the CA for client certificates");
        return TS_ERR_CONFIG;
    }
    struct ts_httpd *s = calloc(1, sizeof *s);
    if (!s)
        return TS_ERR_NOMEM;
    s->lfd = -1;
    s->handler = h;
    s->ud = ud;
    s->max_conns = o->max_conns > 0 ? o->max_conns : 256;
    s->io_timeout_ms = o->io_timeout_ms > 0 ? o->io_timeout_ms : 15000;
    s->max_body = o->max_body ? o->max_body : (size_t)1 << 20;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    int rc = TS_OK;
    if (tls) {
        struct ts_tls_opts to = {.ca_file = o->client_ca_file,
                                 .cert_file = o->cert_file,
                                 .key_file = o->key_file,
                                 .server = true,
                                 .no_client_auth = o->no_client_cert,
                                 .peer_check = o->peer_check,
                                 .peer_check_ud = o->peer_check_ud,
                                 .session_lifetime_s = o->tls_session_lifetime_s,
                                 .no_resume = o->no_resume,
                                 .ticket_keys = o->ticket_keys,
                                 .ticket_keys_ud = o->ticket_keys_ud};
        s->peer_check = o->no_client_cert ? NULL : o->peer_check;
        s->peer_check_ud = o->peer_check_ud;
        if ((rc = ts_tls_ctx_new(&to, &s->tls, err, errsz)))
            goto fail;
    }
    if ((rc = listen_on(o->listen, &s->lfd, &s->port, err, errsz)))
        goto fail;
    if (pthread_create(&s->accept_thr, NULL, accept_main, s) != 0) {
        ts_errf(err, errsz, "cannot start the accept thread");
        rc = TS_ERR_NOMEM;
        goto fail;
    }
    TS_INFO("httpd", "listening on %s (port %d, %s)", o->listen, s->port,
            !tls                ? "plain HTTP"
            : o->no_client_cert ? "TLS, no client certificate asked"
                                : "TLS, client certificates required");
    *out = s;
    return TS_OK;
fail:
    if (s->lfd >= 0)
        close(s->lfd);
    ts_tls_ctx_free(s->tls);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}

int ts_httpd_port(const struct ts_httpd *s)
{
    return s ? s->port : -1;
}

void ts_httpd_stop(struct ts_httpd *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (struct conn *c = s->conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR); /* wakes reads, writes and handshakes */
    pthread_mutex_unlock(&s->mu);
    shutdown(s->lfd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->accept_thr, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    while (s->nconns > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    ts_tls_ctx_free(s->tls);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
