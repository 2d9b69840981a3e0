/*
 * ts_fleetsim --long-poll S: the fleet as agents run it by default
 * (agent/syncer.c, [hub] long_poll_s = 20). Each terminal keeps one
 * connection to the hub for its feed: it pages through its full sync
 * (GET /v1/feed?limit=500&since=…, following `more` at once), and once a
 * page says more=false it asks with &wait=S, held at the hub until its
 * store's slice changes or S seconds pass; whatever the answer, it asks
 * again at once on the same connection. A 503/429 waits Retry-After plus
 * the agent's full-jitter backoff; a transport failure closes the
 * connection and backs off the same way. Purchases (POST /v1/purchases, one
 * sale) go on the terminal's second connection, as the agent's uploader
 * thread has its own: kept open after the upload until the hub closes it
 * when idle, reused when it is still open.
 *
 * Many connections per thread: --threads workers (default 4), each an
 * epoll loop over its terminals' sockets, on the project's own TLS
 * (sync/tls.c) and HTTP parser (sync/http.c), nothing blocking: a
 * nonblocking TCP connect, the handshake in steps (ts_tls_connect_begin /
 * ts_tls_connect_step, resuming the terminal's session as ts_tls_connect
 * does), reads and writes with timeout 0 (one try on the nonblocking
 * socket; a request is small enough for the socket buffer). Connects are
 * timed from the TCP connect to the handshake's end (connect_full,
 * connect_resumed). Against 127.0.0.1 each store's terminals connect from
 * their own address, 127.1.X.Y (a store's router), so the hub's limit per
 * source address ([hub] max_unauthenticated_per_address, 128) applies per
 * store as it would in the field, not to the whole fleet at once.
 *
 * Recorded per terminal: every `lpmark-N` in an answer's inflated body (a
 * card name bench/fleet_lp.py gives a customer through /v1/batch), with the
 * wall-clock time the answer was whole, so the driver computes change ->
 * every affected terminal informed. Errors by kind (connect, tls, timeout,
 * closed, http_503, http_other, proto), apart for the warm-up. No health
 * reports on the polls (the agent sends one on a change or a heartbeat).
 */
#include "fleetsim.h"
#include "feed.h"
#include "gzip.h"
#include "http.h"
#include "tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <unistd.h>

#define PAGE_LIMIT 500  /* the agent's [hub] page_limit */
#define TIMEOUT_MS 5000 /* the agent's [hub] timeout_ms; a long-poll gets + wait */
#define CONNECT_TIMEOUT_MS 10000
#define BACKOFF_BASE_MS 500 /* agent/syncer.c */
#define BACKOFF_FLOOR_MS 100
#define BACKOFF_MAX_MS 30000
#define FEED_MAX_BODY (32u << 20)
#define TIMER_PASS_MS 5.0 /* how often a worker looks at its terminals' timers */
#define MARK "lpmark-"

enum ekind { E_CONNECT, E_TLS, E_TIMEOUT, E_CLOSED, E_BUSY, E_STATUS, E_PROTO, E_NKINDS };
static const char *const ekind_name[E_NKINDS] = {"connect",  "tls",        "timeout", "closed",
                                                 "http_503", "http_other", "proto"};

struct lopts {
    const char *url, *pki;
    char host[256];
    int port;
    struct sockaddr_storage addr; /* host, resolved once */
    socklen_t addrlen;
    int terminals, stores, threads, wait_s;
    double duration_s, warmup_s, purchase_every_s;
};

struct lterm;

enum cstate { C_NONE, C_TCP, C_TLS, C_READY };

struct lconn {
    struct lterm *t;
    bool purchase; /* the uploader's connection, else the syncer's */
    enum cstate state;
    int fd;                  /* while C_TCP, before the TLS connection owns it */
    struct ts_tls_conn *tls; /* from C_TLS on */
    bool reused;             /* has answered a request before */
    bool busy;               /* a request is out, or waits for the connection */
    bool retried;            /* this request was sent again on a fresh connection */
    bool written;            /* ... and is on the wire */
    double conn_t0, sent_ms, deadline_ms;
    int waited_s; /* feed: the wait asked */
    ts_buf out;   /* the request, kept until answered (sent again once) */
    ts_buf in;
    struct ts_http_msg m;
    char mid[96]; /* purchase: its messageId */
};

struct lterm {
    int idx;
    char store[16], name[16];
    struct ts_tls_ctx *ctx;
    struct lconn feed, buy;
    char cursor[TS_FEED_MAX_CURSOR + 1];
    bool synced, caught_up;
    double feed_due; /* < 0: none (a request is out) */
    double buy_due;  /* 0: none */
    unsigned failures;
    unsigned long receipts;
};

struct mark {
    int mark, term;
    int64_t wall_ms;
};

struct lworker {
    pthread_t thr;
    const struct lopts *o;
    struct lterm *t;
    size_t nt;
    int ep;
    unsigned seed;
    double measure_at, end_at;
    /* [0] warm-up, [1] the measured window */
    unsigned long errors[2][E_NKINDS], full[2], resumed[2], kept_closed[2];
    unsigned long answers_items, answers_empty, items, purchases_ok;
    struct fleet_samples first, purchase, connect_full, connect_resumed, late;
    struct mark *marks;
    size_t nmarks, capmarks;
};

static void note_mark(struct lworker *w, int mark, int term, int64_t wall)
{
    if (w->nmarks == w->capmarks) {
        size_t cap = w->capmarks ? w->capmarks * 2 : 256;
        struct mark *nm = realloc(w->marks, cap * sizeof *nm);
        if (!nm)
            return;
        w->marks = nm;
        w->capmarks = cap;
    }
    w->marks[w->nmarks++] = (struct mark){mark, term, wall};
}

static int in_window(const struct lworker *w, double now)
{
    return now >= w->measure_at;
}

/* Drops the connection; the request (busy, out) stays for a retry or fail(). */
static void conn_close(struct lworker *w, struct lconn *c)
{
    if (c->tls) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, ts_tls_fd(c->tls), NULL);
        ts_tls_close(c->tls);
        c->tls = NULL;
    } else if (c->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_NONE;
    c->reused = false;
    c->written = false;
    ts_buf_free(&c->in);
    ts_http_msg_clear(&c->m);
}

/* After a failure of the feed: the next poll after the backoff (at least
 * retry_after_ms, a 503's Retry-After). */
static void feed_backoff(struct lterm *t, int64_t retry_after_ms)
{
    t->failures++;
    int64_t b = ts_backoff_ms(t->failures - 1, BACKOFF_BASE_MS, BACKOFF_MAX_MS, BACKOFF_FLOOR_MS);
    t->feed_due = fleet_now_ms() + (double)(retry_after_ms + b);
}

static void buy_schedule(struct lworker *w, struct lterm *t)
{
    /* uniform over twice the mean: the mean interval is --purchase-every */
    t->buy_due = fleet_now_ms() + fleet_jitter(&w->seed, 2000.0 * w->o->purchase_every_s) + 1;
}

/* The request failed: counted, the connection closed, the next try
 * scheduled. */
static atomic_int g_told; /* errors described on stderr so far */

static void fail(struct lworker *w, struct lconn *c, enum ekind k);

/* fail(), and the first few failures in words on stderr. */
static void fail_why(struct lworker *w, struct lconn *c, enum ekind k, const char *why)
{
    if (atomic_fetch_add(&g_told, 1) < 10)
        fprintf(stderr, "fleetsim: %s %s %s: %s: %s\n", c->t->store, c->t->name,
                c->purchase ? "purchase" : "feed", ekind_name[k], why);
    fail(w, c, k);
}

static void fail(struct lworker *w, struct lconn *c, enum ekind k)
{
    w->errors[in_window(w, fleet_now_ms())][k]++;
    conn_close(w, c);
    c->busy = false;
    ts_buf_free(&c->out);
    if (c->purchase)
        buy_schedule(w, c->t);
    else
        feed_backoff(c->t, 0);
}

static void watch(struct lworker *w, struct lconn *c, int fd, uint32_t events, bool add)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(w->ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

static void conn_start(struct lworker *w, struct lconn *c);

/* Writes the request on a ready connection. A kept connection that turns
 * out dead is replaced once, as ts_httpc does. */
static void write_out(struct lworker *w, struct lconn *c)
{
    enum ts_err rc = ts_tls_write(c->tls, c->out.data, c->out.len, TIMEOUT_MS);
    if (rc == TS_OK) {
        c->written = true;
        c->sent_ms = fleet_now_ms();
        c->deadline_ms = c->sent_ms + TIMEOUT_MS + c->waited_s * 1000.0;
        return;
    }
    if (c->reused && !c->retried) {
        w->kept_closed[in_window(w, fleet_now_ms())]++;
        conn_close(w, c);
        c->retried = true;
        conn_start(w, c);
        return;
    }
    fail(w, c, rc == TS_ERR_TIMEOUT ? E_TIMEOUT : E_CLOSED);
}

/* One go at the handshake; the request goes out when it is over. */
static void tls_step(struct lworker *w, struct lconn *c)
{
    bool want_write = false;
    char err[256];
    enum ts_err rc = ts_tls_connect_step(c->tls, &want_write, err, sizeof err);
    if (rc == TS_ERR_AGAIN) {
        watch(w, c, ts_tls_fd(c->tls), want_write ? EPOLLOUT : EPOLLIN, false);
        return;
    }
    if (rc != TS_OK) {
        fail_why(w, c, E_TLS, err);
        return;
    }
    double now = fleet_now_ms();
    int win = in_window(w, c->conn_t0);
    bool resumed = ts_tls_resumed(c->tls);
    if (resumed)
        w->resumed[win]++;
    else
        w->full[win]++;
    if (win)
        fleet_add(resumed ? &w->connect_resumed : &w->connect_full, now - c->conn_t0);
    c->state = C_READY;
    watch(w, c, ts_tls_fd(c->tls), EPOLLIN, false);
    write_out(w, c);
}

/* The TCP connect is over (or failed). */
static void tcp_done(struct lworker *w, struct lconn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        fail(w, c, E_CONNECT);
        return;
    }
    char err[256];
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (ts_tls_connect_begin(c->t->ctx, c->fd, w->o->host, w->o->port, &c->tls, err, sizeof err) !=
        TS_OK) {
        fail(w, c, E_TLS);
        return;
    }
    c->fd = -1; /* the TLS connection's now */
    c->state = C_TLS;
    watch(w, c, ts_tls_fd(c->tls), EPOLLOUT, true);
    tls_step(w, c);
}

/* A nonblocking TCP connect, then the handshake in steps (tls.h). */
static void conn_start(struct lworker *w, struct lconn *c)
{
    c->conn_t0 = fleet_now_ms();
    c->deadline_ms = c->conn_t0 + CONNECT_TIMEOUT_MS;
    c->fd = socket(w->o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fail(w, c, E_CONNECT);
        return;
    }
    if (w->o->addr.ss_family == AF_INET &&
        ((const struct sockaddr_in *)&w->o->addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
        /* a store's terminals share its address (its router), as the hub
         * sees a real fleet: 127.1.X.Y per store, within the hub's limit
         * of connections in the handshake per address */
        int si = c->t->idx % w->o->stores;
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(0x7f010000u | (uint32_t)(si / 200) << 8 |
                                                           (uint32_t)(si % 200 + 10))};
        if (bind(c->fd, (const struct sockaddr *)&src, sizeof src) != 0) {
            fail_why(w, c, E_CONNECT, strerror(errno));
            return;
        }
    }
    int r = connect(c->fd, (const struct sockaddr *)&w->o->addr, w->o->addrlen);
    if (r != 0 && errno != EINPROGRESS) {
        fail(w, c, E_CONNECT);
        return;
    }
    c->state = C_TCP;
    watch(w, c, c->fd, EPOLLOUT, true);
    if (r == 0)
        tcp_done(w, c);
}

/* Sends a request on c, connecting first when it has no connection. */
static void send_req(struct lworker *w, struct lconn *c, const char *req, size_t len, int wait_s)
{
    ts_buf_reset(&c->out);
    if (ts_buf_append(&c->out, req, len) != TS_OK)
        return;
    c->busy = true;
    c->retried = false;
    c->written = false;
    c->waited_s = wait_s;
    if (c->state == C_READY)
        write_out(w, c);
    else if (c->state == C_NONE)
        conn_start(w, c);
}

static void start_feed(struct lworker *w, struct lterm *t)
{
    const struct lopts *o = w->o;
    char req[TS_FEED_MAX_CURSOR * 3 + 512];
    int wait_s = t->caught_up ? o->wait_s : 0;
    int n = snprintf(req, sizeof req, "GET /v1/feed?limit=%d", PAGE_LIMIT);
    if (wait_s > 0)
        n += snprintf(req + n, sizeof req - (size_t)n, "&wait=%d", wait_s);
    n += snprintf(req + n, sizeof req - (size_t)n, "&since=");
    /* the agent's escaping (agent/syncer.c feed_path) */
    for (const char *p = t->cursor; *p && (size_t)n + 4 < sizeof req - 160; p++) {
        if (*p == '&' || *p == '+' || *p == '%' || *p == '#' || *p == '?' || *p == '=')
            n += snprintf(req + n, sizeof req - (size_t)n, "%%%02X", (unsigned char)*p);
        else
            req[n++] = *p;
    }
    n += snprintf(req + n, sizeof req - (size_t)n,
                  " HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: tillside-fleetsim\r\n"
                  "Accept-Encoding: gzip\r\n\r\n",
                  o->host, o->port);
    t->feed_due = -1;
    send_req(w, &t->feed, req, (size_t)n, wait_s);
}

static void start_purchase(struct lworker *w, struct lterm *t)
{
    char body[2048], req[2560];
    t->buy_due = 0;
    int n = fleet_purchase_body(body, sizeof body, t->store, t->name, t->idx, ++t->receipts,
                                &w->seed, t->buy.mid);
    if (n < 0)
        return;
    int m = snprintf(req, sizeof req,
                     "POST /v1/purchases HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: "
                     "tillside-fleetsim\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     w->o->host, w->o->port, n, body);
    if (m < 0 || (size_t)m >= sizeof req)
        return;
    send_req(w, &t->buy, req, (size_t)m, 0);
}

static void scan_marks(struct lworker *w, const struct lterm *t, const char *b, size_t len,
                       int64_t wall)
{
    const char *p = b, *end = b + len;
    while (p < end && (p = memmem(p, (size_t)(end - p), MARK, sizeof MARK - 1)) != NULL) {
        p += sizeof MARK - 1;
        int v = 0;
        bool any = false;
        while (p < end && *p >= '0' && *p <= '9' && v < 100000000) {
            v = v * 10 + (*p++ - '0');
            any = true;
        }
        if (any)
            note_mark(w, v, t->idx, wall);
    }
}

static int retry_after_ms(const struct ts_http_msg *m)
{
    const char *ra = ts_http_header(m, "Retry-After");
    int s = ra ? atoi(ra) : 0;
    s = s > 0 ? s : 1;
    return s * 1000 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s * 1000;
}

static void feed_answer(struct lworker *w, struct lterm *t, struct ts_http_msg *m, double now)
{
    int win = in_window(w, now);
    if (m->status == 503 || m->status == 429) {
        w->errors[win][E_BUSY]++;
        feed_backoff(t, retry_after_ms(m));
        return;
    }
    if (m->status != 200) {
        w->errors[win][E_STATUS]++;
        feed_backoff(t, 0);
        return;
    }
    const char *ce = ts_http_header(m, "Content-Encoding");
    struct ts_feed_page page = {0};
    char err[256];
    if (ts_gzip_decode_body(&m->body, ce ? ce : "", FEED_MAX_BODY) != TS_OK ||
        ts_feed_parse(m->body.data, m->body.len, &page, err, sizeof err) != TS_OK) {
        w->errors[win][E_PROTO]++;
        ts_feed_page_free(&page);
        conn_close(w, &t->feed);
        feed_backoff(t, 0);
        return;
    }
    scan_marks(w, t, m->body.data, m->body.len, ts_now_wall_ms());
    if (!t->synced && win)
        fleet_add(&w->first, now - t->feed.sent_ms);
    if (t->feed.waited_s > 0 && win) {
        if (page.nitems)
            w->answers_items++;
        else
            w->answers_empty++;
    }
    if (win)
        w->items += page.nitems;
    bool more = page.more && (page.nitems > 0 || strcmp(page.cursor, t->cursor) != 0);
    ts_strlcpy(t->cursor, page.cursor, sizeof t->cursor);
    t->caught_up = !page.more;
    if (!more)
        t->synced = true;
    t->failures = 0;
    ts_feed_page_free(&page);
    t->feed_due = now; /* at once: a next page, or the next long-poll */
}

static void purchase_answer(struct lworker *w, struct lterm *t, struct ts_http_msg *m, double now)
{
    int win = in_window(w, now);
    if (win)
        fleet_add(&w->purchase, now - t->buy.sent_ms);
    if (m->status == 503 || m->status == 429)
        w->errors[win][E_BUSY]++;
    else if (m->status != 200 || !m->body.data || !strstr(m->body.data, t->buy.mid))
        w->errors[win][E_STATUS]++;
    else
        w->purchases_ok++;
    buy_schedule(w, t);
}

static void on_readable(struct lworker *w, struct lconn *c)
{
    char buf[16384];
    bool closed = false;
    enum ts_err why = TS_OK;
    for (;;) {
        long r = ts_tls_read(c->tls, buf, sizeof buf, 0);
        if (r > 0) {
            if (ts_buf_append(&c->in, buf, (size_t)r) != TS_OK) {
                closed = true;
                why = TS_ERR_NOMEM;
                break;
            }
            continue;
        }
        if (r == TS_ERR_TIMEOUT)
            break; /* nothing more for now */
        closed = true;
        why = (enum ts_err)r;
        break;
    }
    struct lterm *t = c->t;
    if (c->busy && c->in.len) {
        size_t used = 0;
        enum ts_err rc = ts_http_parse(&c->m, false, c->in.data, c->in.len, FEED_MAX_BODY, &used);
        if (rc == TS_OK) {
            double now = fleet_now_ms();
            c->busy = false;
            c->reused = true;
            bool keep = c->m.keep_alive && !closed;
            if (c->purchase)
                purchase_answer(w, t, &c->m, now);
            else
                feed_answer(w, t, &c->m, now);
            ts_http_msg_clear(&c->m);
            ts_buf_free(&c->in);
            ts_buf_free(&c->out);
            if (!keep)
                conn_close(w, c);
            /* the agent asks again at once: a next page, or the next
             * long-poll (after a failure, feed_due is the backoff's end) */
            if (!c->purchase && t->feed_due >= 0 && t->feed_due <= now)
                start_feed(w, t);
            return;
        }
        if (rc != TS_ERR_AGAIN) {
            fail(w, c, E_PROTO);
            return;
        }
    }
    if (!closed)
        return;
    if (!c->busy) {
        conn_close(w, c); /* the hub ended an idle kept connection */
        return;
    }
    if (!c->in.len && c->reused && !c->retried) {
        /* the kept connection had died under the request: once more,
         * fresh, as ts_httpc does */
        w->kept_closed[in_window(w, fleet_now_ms())]++;
        conn_close(w, c);
        c->retried = true;
        conn_start(w, c);
        return;
    }
    fail_why(w, c, why == TS_ERR_CLOSED ? E_CLOSED : E_TLS,
             why == TS_ERR_CLOSED ? "closed under the request" : ts_strerror(why));
}

static void timers(struct lworker *w, double now)
{
    bool win = in_window(w, now);
    for (size_t i = 0; i < w->nt; i++) {
        struct lterm *t = &w->t[i];
        if (t->feed.busy && now > t->feed.deadline_ms)
            fail(w, &t->feed, E_TIMEOUT);
        if (t->buy.busy && now > t->buy.deadline_ms)
            fail(w, &t->buy, E_TIMEOUT);
        if (t->feed_due >= 0 && now >= t->feed_due && !t->feed.busy) {
            if (win && t->feed_due >= w->measure_at)
                fleet_add(&w->late, now - t->feed_due);
            start_feed(w, t);
        }
        if (win && w->o->purchase_every_s > 0) {
            if (t->buy_due == 0 && !t->buy.busy)
                buy_schedule(w, t);
            else if (t->buy_due > 0 && now >= t->buy_due && !t->buy.busy)
                start_purchase(w, t);
        }
    }
}

static atomic_int g_held; /* terminals with a long-poll out when the window ends */

static void *lworker_main(void *arg)
{
    struct lworker *w = arg;
    struct epoll_event evs[256];
    double last_pass = 0;
    for (;;) {
        double now = fleet_now_ms();
        if (now >= w->end_at)
            break;
        if (now - last_pass >= TIMER_PASS_MS) {
            timers(w, now);
            last_pass = now;
        }
        int n = epoll_wait(w->ep, evs, 256, (int)TIMER_PASS_MS);
        for (int i = 0; i < n; i++) {
            struct lconn *c = evs[i].data.ptr;
            if (c->state == C_TCP)
                tcp_done(w, c);
            else if (c->state == C_TLS)
                tls_step(w, c);
            else if (c->state == C_READY)
                on_readable(w, c);
        }
    }
    int held = 0;
    for (size_t i = 0; i < w->nt; i++)
        held += w->t[i].feed.busy && w->t[i].feed.waited_s > 0;
    atomic_fetch_add(&g_held, held);
    return NULL;
}

static long self_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static void print_kinds(const char *name, const unsigned long *k, const char *tail)
{
    printf("  \"%s\": {", name);
    for (int i = 0; i < E_NKINDS; i++)
        printf("\"%s\": %lu%s", ekind_name[i], k[i], i + 1 < E_NKINDS ? ", " : "");
    printf("}%s\n", tail);
}

int fleet_lp_main(int argc, char **argv)
{
    struct lopts o = {.terminals = 100,
                      .stores = 100,
                      .threads = 4,
                      .wait_s = 20,
                      .duration_s = 90,
                      .purchase_every_s = 300};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--url"))
            o.url = v;
        else if (!strcmp(a, "--pki"))
            o.pki = v;
        else if (!strcmp(a, "--terminals"))
            o.terminals = atoi(v);
        else if (!strcmp(a, "--stores"))
            o.stores = atoi(v);
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--long-poll"))
            o.wait_s = atoi(v);
        else if (!strcmp(a, "--duration"))
            o.duration_s = atof(v);
        else if (!strcmp(a, "--purchase-every"))
            o.purchase_every_s = atof(v);
        else if (!strcmp(a, "--warmup"))
            o.warmup_s = atof(v);
        else {
            fprintf(stderr, "fleetsim: unknown option %s (long-poll mode)\n", a);
            return 2;
        }
    }
    if (!o.url || !o.pki || o.terminals < 1 || o.stores < 1 || o.threads < 1 || o.wait_s < 1 ||
        strncmp(o.url, "https://", 8) != 0 ||
        sscanf(o.url + 8, "%255[^:/]:%d", o.host, &o.port) != 2) {
        fprintf(stderr, "usage: ts_fleetsim --long-poll S --url https://localhost:PORT --pki DIR "
                        "[--terminals N] [--stores S] [--threads T] [--duration S] "
                        "[--purchase-every S] [--warmup S]\n");
        return 2;
    }
    ts_log_set_level(TS_LOG_ERROR);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", o.port);
    if (getaddrinfo(o.host, portstr, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "fleetsim: cannot resolve %s\n", o.host);
        return 2;
    }
    memcpy(&o.addr, ai->ai_addr, ai->ai_addrlen);
    o.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    /* a socket per terminal, two while it uploads */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.terminals * 2 + 64)
        fprintf(stderr, "fleetsim: warning: open file limit %lu is below 2 per terminal\n",
                (unsigned long)rl.rlim_cur);
    if (o.threads > o.terminals)
        o.threads = o.terminals;
    struct lworker *ws = calloc((size_t)o.threads, sizeof *ws);
    char ca[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", o.pki);
    double start = fleet_now_ms();
    long rss_empty = self_rss_kb();
    for (int k = 0; k < o.threads; k++) {
        ws[k].o = &o;
        ws[k].seed = (unsigned)k * 7919u + 1;
        ws[k].t = calloc((size_t)o.terminals / (size_t)o.threads + 1, sizeof(struct lterm));
        ws[k].ep = epoll_create1(EPOLL_CLOEXEC);
    }
    for (int i = 0; i < o.terminals; i++) {
        struct lworker *w = &ws[i % o.threads];
        struct lterm *t = &w->t[w->nt++];
        t->idx = i;
        snprintf(t->store, sizeof t->store, "S%03d", i % o.stores + 1);
        snprintf(t->name, sizeof t->name, "T%04d", i / o.stores + 1);
        char cert[512], key[512], err[256];
        if (fleet_ensure_cert(o.pki, t->store, t->name, cert, key))
            return 1;
        struct ts_tls_opts to = {.ca_file = ca, .cert_file = cert, .key_file = key};
        if (ts_tls_ctx_new(&to, &t->ctx, err, sizeof err)) {
            fprintf(stderr, "fleetsim: terminal %d: %s\n", i, err);
            return 1;
        }
        t->feed.t = t->buy.t = t;
        t->feed.fd = t->buy.fd = -1;
        t->buy.purchase = true;
    }
    long rss_setup = self_rss_kb();
    double setup_ms = fleet_now_ms() - start;
    double t0 = fleet_now_ms(), measure_at = t0 + o.warmup_s * 1000.0;
    double first_span = o.warmup_s > 0 ? o.warmup_s : 1.0;
    unsigned seed = 42;
    for (int k = 0; k < o.threads; k++) {
        ws[k].measure_at = measure_at;
        ws[k].end_at = measure_at + o.duration_s * 1000.0;
        for (size_t i = 0; i < ws[k].nt; i++)
            ws[k].t[i].feed_due = t0 + fleet_jitter(&seed, first_span * 1000.0);
    }
    for (int k = 0; k < o.threads; k++)
        pthread_create(&ws[k].thr, NULL, lworker_main, &ws[k]);
    if (measure_at > fleet_now_ms())
        ts_sleep_ms((int64_t)(measure_at - fleet_now_ms()));
    double cpu0 = fleet_cpu_now_s();
    fprintf(stderr, "fleetsim: measuring\n");
    fflush(stderr);
    /* the simulator's own memory with every connection held, just before
     * the window ends */
    long rss_held = 0;
    double rss_at = measure_at + o.duration_s * 1000.0 - 2000.0;
    if (rss_at > fleet_now_ms())
        ts_sleep_ms((int64_t)(rss_at - fleet_now_ms()));
    rss_held = self_rss_kb();
    for (int k = 0; k < o.threads; k++)
        pthread_join(ws[k].thr, NULL);
    double ran = (fleet_now_ms() - measure_at) / 1000.0, cpu = fleet_cpu_now_s() - cpu0;

    struct fleet_samples first = {0}, purchase = {0}, cfull = {0}, cres = {0}, late = {0};
    unsigned long err[2][E_NKINDS] = {{0}}, full[2] = {0}, resumed[2] = {0}, kept[2] = {0};
    unsigned long items_ans = 0, empty_ans = 0, items = 0, bought = 0, nerr = 0;
    for (int k = 0; k < o.threads; k++) {
        struct lworker *w = &ws[k];
        fleet_merge(&first, &w->first);
        fleet_merge(&purchase, &w->purchase);
        fleet_merge(&cfull, &w->connect_full);
        fleet_merge(&cres, &w->connect_resumed);
        fleet_merge(&late, &w->late);
        for (int p = 0; p < 2; p++) {
            for (int i = 0; i < E_NKINDS; i++)
                err[p][i] += w->errors[p][i];
            full[p] += w->full[p];
            resumed[p] += w->resumed[p];
            kept[p] += w->kept_closed[p];
        }
        items_ans += w->answers_items;
        empty_ans += w->answers_empty;
        items += w->items;
        bought += w->purchases_ok;
    }
    for (int i = 0; i < E_NKINDS; i++)
        nerr += err[1][i];
    printf("{\n  \"mode\": \"long-poll\", \"terminals\": %d, \"stores\": %d, \"threads\": %d, "
           "\"wait_s\": %d,\n"
           "  \"ran_s\": %.1f, \"setup_s\": %.1f, \"warmup_s\": %.1f, \"errors\": %lu,\n",
           o.terminals, o.stores, o.threads, o.wait_s, ran, setup_ms / 1000.0, o.warmup_s, nerr);
    print_kinds("errors_by_kind", err[1], ",");
    print_kinds("errors_warmup_by_kind", err[0], ",");
    printf("  \"kept_closed\": %lu, \"kept_closed_warmup\": %lu, \"held_at_end\": %d,\n"
           "  \"long_polls_answered\": {\"with_items\": %lu, \"empty\": %lu}, \"items\": %lu, "
           "\"purchases_ok\": %lu,\n"
           "  \"handshakes\": {\"full\": %lu, \"resumed\": %lu}, "
           "\"handshakes_warmup\": {\"full\": %lu, \"resumed\": %lu},\n"
           "  \"cpu_s\": %.3f, \"rss_kb\": {\"empty\": %ld, \"setup\": %ld, \"held\": %ld},\n",
           kept[1], kept[0], atomic_load(&g_held), items_ans, empty_ans, items, bought, full[1],
           resumed[1], full[0], resumed[0], cpu, rss_empty, rss_setup, rss_held);
    fleet_print_stats("feed_first", &first, true);
    fleet_print_stats("purchase", &purchase, true);
    fleet_print_stats("connect_full", &cfull, true);
    fleet_print_stats("connect_resumed", &cres, true);
    fleet_print_stats("sched_late", &late, true);
    printf("  \"marks\": [");
    bool firstm = true;
    for (int k = 0; k < o.threads; k++)
        for (size_t i = 0; i < ws[k].nmarks; i++) {
            printf("%s[%d, %d, %lld]", firstm ? "" : ",", ws[k].marks[i].mark, ws[k].marks[i].term,
                   (long long)ws[k].marks[i].wall_ms);
            firstm = false;
        }
    printf("]\n}\n");
    fflush(stdout);
    for (int k = 0; k < o.threads; k++) {
        for (size_t i = 0; i < ws[k].nt; i++) {
            conn_close(&ws[k], &ws[k].t[i].feed);
            conn_close(&ws[k], &ws[k].t[i].buy);
            ts_tls_ctx_free(ws[k].t[i].ctx);
        }
        close(ws[k].ep);
    }
    return nerr ? 1 : 0;
}
