/*
 * The event loop of one listener (httpd_int.h): epoll over the listening
 * socket, an eventfd (workers handing connections back, wakes, stop) and
 * every connection the loop holds. It accepts, runs TLS handshakes in
 * steps, reads and parses requests, and hands whole ones to the workers;
 * it parks long-polls and hands them over again on a wake or at their
 * deadline. Every state has an overall deadline (the handshake, a request
 * head from its first byte, a body, an idle kept connection), checked by a
 * sweep every SWEEP_MS. Refusals are counted and logged at most once per
 * REFUSAL_LOG_MS.
 */
#include "httpd_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SWEEP_MS 100
#define ACCEPT_BATCH 256
#define SRC_BUCKETS 4096
#define REFUSAL_LOG_MS 10000
#define EMFILE_PAUSE_MS 100
#define STOP_ANSWER_MS 3000

struct src {
    char addr[64];
    int pending;
    struct src *next;
};

/* ---- sources ---------------------------------------------------------------*/

static unsigned src_hash(const char *a)
{
    return ts_hash_str(a) % SRC_BUCKETS;
}

static struct src *src_get(struct ts_httpd *s, const char *addr, bool create)
{
    unsigned h = src_hash(addr);
    for (struct src *e = s->srcs[h]; e; e = e->next)
        if (strcmp(e->addr, addr) == 0)
            return e;
    if (!create)
        return NULL;
    struct src *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    ts_strlcpy(e->addr, addr, sizeof e->addr);
    e->next = s->srcs[h];
    s->srcs[h] = e;
    return e;
}

static void src_put(struct ts_httpd *s, struct src *e)
{
    if (!e || --e->pending > 0)
        return;
    struct src **pp = &s->srcs[src_hash(e->addr)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    free(e);
}

/* ---- refusals, logged at a bounded rate ------------------------------------*/

static void log_refusals(struct ts_httpd *s, int64_t now, bool force)
{
    long cls = 0;
    for (int i = 0; i < TS_HTTPD_CLASSES; i++)
        cls += s->log_class[i];
    long any = s->log_pending + s->log_source + s->log_capacity + cls + s->log_timeouts;
    if (!any || (!force && now < s->next_log_ms))
        return;
    char classes[256] = "";
    size_t n = 0;
    for (int i = 0; i < TS_HTTPD_CLASSES && n < sizeof classes; i++)
        if (s->log_class[i])
            n += (size_t)snprintf(classes + n, sizeof classes - n, ", %ld %s over capacity",
                                  s->log_class[i],
                                  s->o.class_name[i] ? s->o.class_name[i] : "requests");
    TS_WARN("httpd",
            "port %d, last %d s: refused %ld connection(s) over the unauthenticated capacity "
            "(%d), %ld over %d per source address, %ld over the connection capacity (%d); "
            "%ld timed out%s",
            s->port, REFUSAL_LOG_MS / 1000, s->log_pending, s->o.max_pending, s->log_source,
            s->o.max_pending_per_source, s->log_capacity, s->o.max_conns, s->log_timeouts, classes);
    s->log_pending = s->log_source = s->log_capacity = s->log_timeouts = 0;
    memset(s->log_class, 0, sizeof s->log_class);
    s->next_log_ms = now + REFUSAL_LOG_MS;
}

/* ---- connections -----------------------------------------------------------*/

static void set_events(struct ts_httpd *s, struct hconn *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    if (ev == 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    } else {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        if (epoll_ctl(s->epfd, c->ev ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) != 0)
            TS_WARN("httpd", "epoll_ctl: %s", strerror(errno));
    }
    c->ev = ev;
}

static void conn_free(struct ts_httpd *s, struct hconn *c)
{
    set_events(s, c, 0);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->authed) {
        s->nconns--;
    } else {
        s->npending--;
        src_put(s, c->src);
    }
    if (c->st == C_PARKED)
        atomic_fetch_sub(&s->st_parked, 1);
    ts_httpd_topic_unlink(c);
    if (c->cls >= 0)
        s->class_n[c->cls]--;
    atomic_store(&s->st_conns, s->nconns);
    atomic_store(&s->st_pending, s->npending);
    if (c->tc)
        ts_tls_close(c->tc);
    else
        close(c->fd);
    ts_http_msg_clear(&c->m);
    ts_buf_free(&c->in);
    /* freed after this round of events, which may still name it */
    c->st = C_DEAD;
    c->qnext = s->graveyard;
    s->graveyard = c;
}

static void bury(struct ts_httpd *s)
{
    while (s->graveyard) {
        struct hconn *c = s->graveyard;
        s->graveyard = c->qnext;
        free(c);
    }
}

/* The connection has shown who it is: it leaves the unauthenticated
 * capacity (and its source's share) for the authenticated one. */
static void conn_authed(struct ts_httpd *s, struct hconn *c)
{
    if (c->authed)
        return;
    c->authed = true;
    s->npending--;
    src_put(s, c->src);
    c->src = NULL;
    if (s->nconns >= s->o.max_conns) {
        c->over = true;
        s->log_capacity++;
        atomic_fetch_add(&s->st_ref_capacity, 1);
    }
    s->nconns++;
    atomic_store(&s->st_conns, s->nconns);
    atomic_store(&s->st_pending, s->npending);
}

/* Half-closes and reads what still comes for a while, so closing with
 * unread data does not reset the connection before the client has read
 * our last answer (or the alert of a refused handshake). */
static void conn_linger(struct ts_httpd *s, struct hconn *c, int64_t now, int ms)
{
    shutdown(c->fd, SHUT_WR);
    c->st = C_LINGER;
    c->deadline = now + ms;
    c->head_start = 0;
    ts_buf_free(&c->in);
    c->in.len = 0; /* counts what was drained */
    set_events(s, c, EPOLLIN | EPOLLRDHUP);
}

/* A last answer from the loop itself (tried once: it is small and the
 * socket's buffer is empty), then linger. */
static void answer_close(struct ts_httpd *s, struct hconn *c, int status, const char *msg,
                         int64_t now)
{
    struct ts_httpd_resp r = {.status = status};
    ts_httpd_error(&r, status, msg);
    if (status == 503)
        snprintf(r.extra_headers, sizeof r.extra_headers, "Retry-After: %d\r\n",
                 s->o.retry_after_s);
    ts_buf out = {0};
    if (ts_httpd_format("GET", &r, false, &out) == TS_OK)
        (void)ts_tls_write(c->tc, out.data, out.len, 0);
    ts_buf_free(&out);
    ts_buf_free(&r.body);
    conn_linger(s, c, now, DRAIN_MAX_MS);
}

static void remote_name(const struct sockaddr_storage *ss, char *out, size_t outsz)
{
    out[0] = '\0';
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)outsz);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)outsz);
}

static void to_read(struct ts_httpd *s, struct hconn *c, int64_t now, int idle_ms)
{
    c->st = C_READ;
    c->deadline = now + idle_ms;
    c->head_start = 0;
    set_events(s, c, EPOLLIN | EPOLLRDHUP);
}

/* Refuses a connection before anything is read: plain HTTP gets a 503 (it
 * costs nothing), TLS a close (answering would need the handshake such
 * floods want us to spend). */
static void refuse(struct ts_httpd *s, int fd)
{
    if (!s->tls_on) {
        static const char busy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Content-Length: 27\r\nConnection: close\r\nRetry-After: 2\r\n\r\n"
            "{\"error\":\"server too busy\"}";
        (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    close(fd);
}

static void do_accept(struct ts_httpd *s, int64_t now)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                TS_WARN("httpd", "accept: %s: pausing", strerror(errno));
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
                s->listen_paused_until = now + EMFILE_PAUSE_MS;
            }
            return; /* EAGAIN and friends */
        }
        char remote[64];
        remote_name(&ss, remote, sizeof remote);
        if (s->npending >= s->o.max_pending) {
            s->log_pending++;
            atomic_fetch_add(&s->st_ref_pending, 1);
            refuse(s, fd);
            continue;
        }
        struct src *e = src_get(s, remote, true);
        if (!e || e->pending >= s->o.max_pending_per_source) {
            s->log_source++;
            atomic_fetch_add(&s->st_ref_source, 1);
            refuse(s, fd);
            continue;
        }
        struct hconn *c = calloc(1, sizeof *c);
        struct ts_tls_conn *tc = NULL;
        char err[256];
        if (!c || ts_tls_accept_begin(s->tls, fd, &tc, err, sizeof err) != TS_OK) {
            free(c);
            close(fd);
            if (e->pending == 0)
                e->pending = 1, src_put(s, e);
            continue;
        }
        e->pending++;
        c->s = s;
        c->fd = fd;
        c->tc = tc;
        c->src = e;
        c->cls = -1;
        ts_strlcpy(c->remote, remote, sizeof c->remote);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->npending++;
        atomic_store(&s->st_pending, s->npending);
        if (s->tls_on) {
            c->st = C_HANDSHAKE;
            c->deadline = now + s->o.handshake_timeout_ms;
            set_events(s, c, EPOLLIN | EPOLLRDHUP);
        } else {
            to_read(s, c, now, s->o.head_timeout_ms);
        }
    }
}

/* The socket is ready for the handshake's next step: a worker runs it. */
static void handshake(struct ts_httpd *s, struct hconn *c)
{
    c->hs_job = true;
    c->st = C_WORK;
    set_events(s, c, 0);
    ts_httpd_job_push(s, c);
}

/* A worker ran a step of c's handshake. */
static void handshake_stepped(struct ts_httpd *s, struct hconn *c, int64_t now)
{
    c->hs_job = false;
    c->st = C_HANDSHAKE;
    if (now >= c->deadline || atomic_load(&s->stopping)) {
        conn_free(s, c); /* the sweep skipped it while a worker had it */
        return;
    }
    if (c->next_step == N_HS_AGAIN) {
        set_events(s, c, (c->hs_want_write ? EPOLLOUT : EPOLLIN) | EPOLLRDHUP);
        return;
    }
    if (c->next_step == N_HS_FAILED) {
        TS_WARN("httpd", "TLS handshake with %s failed: %s", c->remote, c->hs_err);
        conn_linger(s, c, now, HANDSHAKE_LINGER_MS);
        return;
    }
    const struct ts_peer_id *peer = ts_tls_peer(c->tc);
    if (s->client_certs && peer && peer->verified)
        conn_authed(s, c);
    /* The first request must come within the head deadline; later ones
     * within the idle time of a kept connection. */
    to_read(s, c, now, c->authed ? s->o.io_timeout_ms : s->o.head_timeout_ms);
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

/* Hands the parsed request in c->m on: to a worker, or a 503 when its
 * class is at capacity (or the connection over max_conns). */
static void dispatch(struct ts_httpd *s, struct hconn *c, int64_t now)
{
    conn_authed(s, c); /* a whole request: no longer a silent or trickling peer */
    if (c->over) {
        answer_close(s, c, 503, "server at connection capacity; retry later", now);
        return;
    }
    char path[512];
    int cls = -1;
    if (s->o.classify && ts_http_target_path(c->m.target, path, sizeof path) == TS_OK)
        cls = s->o.classify(s->ud, c->m.method, path);
    if (cls >= TS_HTTPD_CLASSES)
        cls = -1;
    if (cls >= 0 && s->o.class_max[cls] > 0 && s->class_n[cls] >= s->o.class_max[cls]) {
        s->log_class[cls]++;
        atomic_fetch_add(&s->st_ref_class, 1);
        atomic_fetch_add(&s->st_ref_class_n[cls], 1);
        struct ts_httpd_resp r = {.status = 503};
        ts_httpd_error(&r, 503, "server busy; retry later");
        snprintf(r.extra_headers, sizeof r.extra_headers, "Retry-After: %d\r\n",
                 s->o.retry_after_s);
        ts_buf out = {0};
        bool keep = c->m.keep_alive;
        int rc = ts_httpd_format(c->m.method, &r, keep, &out);
        if (rc == TS_OK)
            rc = ts_tls_write(c->tc, out.data, out.len, 0);
        ts_buf_free(&out);
        ts_buf_free(&r.body);
        ts_http_msg_clear(&c->m);
        if (rc != TS_OK || !keep)
            conn_linger(s, c, now, DRAIN_MAX_MS);
        else
            to_read(s, c, now, s->o.io_timeout_ms);
        return;
    }
    c->cls = cls;
    if (cls >= 0)
        s->class_n[cls]++;
    c->park_until = 0;
    c->park_expired = false;
    c->decoded = false;
    c->st = C_WORK;
    set_events(s, c, 0);
    ts_httpd_job_push(s, c);
}

/* Parses what c->in holds; dispatches a whole request. False when c is gone
 * to a worker or closing. */
static bool parse_in(struct ts_httpd *s, struct hconn *c, int64_t now)
{
    size_t used = 0;
    int rc = ts_http_parse(&c->m, true, c->in.data, c->in.len, s->o.max_body, &used);
    if (rc == TS_ERR_AGAIN) {
        if (c->in.len > 0 && !c->head_start) {
            c->head_start = now;
            c->deadline = now + s->o.head_timeout_ms; /* overall, not per read */
        }
        if (c->m.ps.head_len && c->deadline == c->head_start + s->o.head_timeout_ms)
            c->deadline = now + s->o.io_timeout_ms; /* the head is in: the body's time */
        if (!c->sent_continue && c->m.ps.head_len &&
            wants_continue(c->in.data + c->m.ps.head_start, c->m.ps.head_len)) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            (void)ts_tls_write(c->tc, cont, sizeof cont - 1, 0);
            c->sent_continue = true;
        }
        return true;
    }
    if (rc == TS_ERR_FULL) {
        char msg[96];
        if (c->m.ps.head_len) /* the head was whole: it is the body that is too big */
            snprintf(msg, sizeof msg, "request body too large (limit %zu bytes)", s->o.max_body);
        answer_close(s, c, c->m.ps.head_len ? 413 : 431,
                     c->m.ps.head_len ? msg : "request header too large", now);
        return false;
    }
    if (rc != TS_OK) {
        answer_close(s, c, rc == TS_ERR_PROTO ? 400 : 500,
                     rc == TS_ERR_PROTO ? "malformed HTTP request" : "internal error", now);
        return false;
    }
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    c->in.data[c->in.len] = '\0';
    c->sent_continue = false;
    c->head_start = 0;
    dispatch(s, c, now);
    return false;
}

/* Reads all there is. False when the connection is gone (closed, or
 * lingering). */
static bool read_some(struct ts_httpd *s, struct hconn *c, int64_t now)
{
    char buf[16384];
    for (;;) {
        long n = ts_tls_read(c->tc, buf, sizeof buf, 0);
        if (n == TS_ERR_TIMEOUT)
            return true;
        if (n <= 0) {
            conn_free(s, c);
            return false;
        }
        if (c->in.len + (size_t)n > s->o.max_body + TS_HTTP_MAX_HEAD + 65536 ||
            ts_buf_append(&c->in, buf, (size_t)n)) {
            /* more than any request may be (a parked one's pipelined next) */
            answer_close(s, c, 413, "request too large", now);
            return false;
        }
        if (c->st == C_READ && !parse_in(s, c, now))
            return false;
    }
}

static void on_event(struct ts_httpd *s, struct hconn *c, uint32_t ev, int64_t now)
{
    switch (c->st) {
    case C_HANDSHAKE:
        handshake(s, c);
        break;
    case C_READ:
    case C_PARKED:
        read_some(s, c, now);
        break;
    case C_LINGER: {
        char buf[16384];
        for (;;) {
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n > 0 && (c->in.len += (size_t)n) < DRAIN_MAX_BYTES)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            conn_free(s, c); /* EOF, an error, or enough */
            break;
        }
        break;
    }
    case C_WORK:
    case C_DEAD:
        (void)ev; /* not registered */
        break;
    }
}

/* Hands a parked request to a worker again. */
static void unpark(struct ts_httpd *s, struct hconn *c, bool expired)
{
    atomic_fetch_sub(&s->st_parked, 1);
    if (!expired)
        atomic_fetch_add(&s->st_woken, 1);
    ts_httpd_topic_unlink(c);
    c->park_expired = expired;
    c->st = C_WORK;
    set_events(s, c, 0);
    ts_httpd_job_push(s, c);
}

/* A request the handler parked. On a topic whose position is already past
 * what the handler saw (a change committed while it looked), it is handed
 * over again at once. */
static void park(struct ts_httpd *s, struct hconn *c, int64_t now)
{
    c->st = C_PARKED;
    atomic_fetch_add(&s->st_parked, 1);
    c->park_recheck_at = c->park_recheck_ms > 0 ? now + c->park_recheck_ms : 0;
    set_events(s, c, EPOLLIN | EPOLLRDHUP);
    struct topic *tp = c->topic[0] ? ts_httpd_topic_get(s, c->topic, c->seen) : NULL;
    if (tp && ts_httpd_topic_pos(tp) > c->seen)
        unpark(s, c, false);
    else if (tp)
        ts_httpd_topic_link(tp, c);
    else if (atomic_load(&s->wake_gen) != c->wake_seen)
        unpark(s, c, now >= c->park_until); /* a wake came while its handler ran */
}

/* The topic wakes announced since the last round: only the requests parked
 * on a topic that moved past what they saw are handed over (and those
 * parked on none). True when any came. */
static bool topic_wakes(struct ts_httpd *s, bool *untopiced)
{
    size_t n = 0;
    struct topic_wake *w = ts_httpd_twakes_take(s, &n);
    for (size_t i = 0; i < n; i++) {
        struct topic *tp = ts_httpd_topic_get(s, w[i].topic, w[i].pos);
        if (!tp) {
            *untopiced = true; /* a full table: none parked on it has a topic */
            continue;
        }
        struct hconn *c = ts_httpd_topic_announce(tp, w[i].pos);
        while (c) {
            struct hconn *nx = c->tnext;
            if (c->seen < w[i].pos)
                unpark(s, c, false);
            c = nx;
        }
    }
    free(w);
    if (n)
        *untopiced = true;
    return n > 0;
}

/* What workers handed back. */
static void take_done(struct ts_httpd *s, int64_t now)
{
    struct hconn *c = ts_httpd_done_take(s);
    while (c) {
        struct hconn *nx = c->qnext;
        c->qnext = NULL;
        if (c->hs_job) {
            handshake_stepped(s, c, now);
        } else if (c->next_step == N_PARK) {
            park(s, c, now);
        } else {
            if (c->cls >= 0)
                s->class_n[c->cls]--;
            c->cls = -1;
            ts_http_msg_clear(&c->m);
            if (c->next_step == N_CLOSE || atomic_load(&s->stopping)) {
                conn_free(s, c);
            } else {
                to_read(s, c, now, s->o.io_timeout_ms);
                if (c->in.len)
                    parse_in(s, c, now); /* a pipelined request */
            }
        }
        c = nx;
    }
}

/* wake: every parked request looks again; untopiced: those parked on no
 * topic. */
static void sweep(struct ts_httpd *s, int64_t now, bool wake, bool untopiced)
{
    struct hconn *c = s->conns;
    while (c) {
        struct hconn *nx = c->next;
        switch (c->st) {
        case C_PARKED:
            if (wake || (untopiced && !c->tp) || now >= c->park_until ||
                (c->park_recheck_at && now >= c->park_recheck_at))
                unpark(s, c, now >= c->park_until);
            break;
        case C_HANDSHAKE:
        case C_READ:
            if (now < c->deadline)
                break;
            if (c->st == C_HANDSHAKE || !c->authed || c->in.len > 0 || c->head_start) {
                s->log_timeouts++; /* not an idle kept connection: worth a word */
                atomic_fetch_add(&s->st_timed_out, 1);
                atomic_fetch_add(c->st == C_HANDSHAKE ? &s->st_to_handshake : &s->st_to_head, 1);
            }
            if (c->st == C_READ && (c->in.len > 0 || c->head_start))
                answer_close(s, c, 408, "request not received in time", now);
            else
                conn_free(s, c); /* a handshake, or an idle kept connection */
            break;
        case C_LINGER:
            if (now >= c->deadline)
                conn_free(s, c);
            break;
        case C_WORK:
        case C_DEAD:
            break;
        }
        c = nx;
    }
}

enum ts_err ts_httpd_loop_init(struct ts_httpd *s, char *err, size_t errsz)
{
    s->srcs = calloc(SRC_BUCKETS, sizeof *s->srcs);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &s->lfd};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &s->evfd};
    if (!s->srcs || s->epfd < 0 || s->evfd < 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &le) != 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ee) != 0) {
        ts_errf(err, errsz, "cannot set up the event loop: %s", strerror(errno));
        return TS_ERR_IO;
    }
    return TS_OK;
}

/* Stopping: no new connections, nothing more read; every parked request
 * is handed over once more as expired, so it gets the answer it would have
 * got at its deadline (Connection: close) instead of a bare close, for up
 * to STOP_ANSWER_MS. */
static void answer_parked(struct ts_httpd *s)
{
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
    int64_t now = ts_now_mono_ms(), end = now + STOP_ANSWER_MS;
    long n = 0;
    for (struct hconn *c = s->conns; c; c = c->next) {
        if (c->st == C_PARKED) {
            unpark(s, c, true);
            n++;
        } else if (c->st != C_WORK) {
            set_events(s, c, 0);
        }
    }
    atomic_fetch_add(&s->st_stop_answered, n);
    for (;;) {
        take_done(s, now); /* answered: closed (stopping) */
        bury(s);
        bool busy = false;
        for (struct hconn *c = s->conns; c && !busy; c = c->next)
            busy = c->st == C_WORK && c->park_until && !c->hs_job;
        if (!busy || now >= end)
            break;
        struct epoll_event ev;
        if (epoll_wait(s->epfd, &ev, 1, 100) > 0) {
            uint64_t v;
            (void)!read(s->evfd, &v, sizeof v);
        }
        now = ts_now_mono_ms();
    }
    if (n)
        TS_INFO("httpd", "port %d: answered %ld parked request(s) before stopping", s->port, n);
}

void *ts_httpd_loop_main(void *arg)
{
    struct ts_httpd *s = arg;
    struct epoll_event evs[256];
    int64_t next_sweep = ts_now_mono_ms() + SWEEP_MS;
    while (!atomic_load(&s->stopping)) {
        int n = epoll_wait(s->epfd, evs, (int)(sizeof evs / sizeof *evs), SWEEP_MS);
        int64_t now = ts_now_mono_ms();
        bool kicked = false;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s->lfd) {
                do_accept(s, now);
            } else if (p == &s->evfd) {
                uint64_t v;
                (void)!read(s->evfd, &v, sizeof v);
                kicked = true;
            } else {
                /* a connection freed earlier in this batch is never in it:
                 * conn_free deregisters, but the batch was taken before, so
                 * skip pointers no longer on the list */
                struct hconn *c = p;
                if (c->st != C_DEAD) /* freed earlier in this batch: on the graveyard */
                    on_event(s, c, evs[i].events, now);
            }
        }
        if (kicked)
            take_done(s, now);
        bool untopiced = false;
        bool twoke = kicked && topic_wakes(s, &untopiced);
        bool wake = atomic_exchange(&s->wake_pending, false);
        if (wake || (twoke && untopiced) || now >= next_sweep) {
            sweep(s, now, wake, untopiced);
            if (now >= next_sweep) {
                next_sweep = now + SWEEP_MS;
                log_refusals(s, now, false);
            }
        }
        bury(s);
        if (s->listen_paused_until && now >= s->listen_paused_until) {
            struct epoll_event le = {.events = EPOLLIN, .data.ptr = &s->lfd};
            epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &le);
            s->listen_paused_until = 0;
        }
    }
    answer_parked(s);
    log_refusals(s, ts_now_mono_ms(), true);
    return NULL;
}

void ts_httpd_loop_free(struct ts_httpd *s)
{
    /* what workers handed back, and what they never took, is on s->conns */
    while (s->conns) {
        struct hconn *c = s->conns;
        if (c->st == C_PARKED)
            atomic_fetch_sub(&s->st_parked, 1);
        c->st = C_READ;
        conn_free(s, c);
    }
    bury(s);
    ts_httpd_topics_free(s);
    s->jobs = s->jobs_tail = s->done = s->done_tail = s->rejobs = s->rejobs_tail = NULL;
    if (s->srcs) {
        for (int i = 0; i < SRC_BUCKETS; i++)
            while (s->srcs[i]) {
                struct src *e = s->srcs[i];
                s->srcs[i] = e->next;
                free(e);
            }
        free(s->srcs);
        s->srcs = NULL;
    }
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->evfd >= 0)
        close(s->evfd);
    s->epfd = s->evfd = -1;
}
