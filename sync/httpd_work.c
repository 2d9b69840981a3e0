/*
 * The hub's HTTP(S) server, its worker pool (see httpd.h and httpd_int.h):
 * answers, and the workers that run TLS handshake steps and the handler on
 * whole requests the event loop (httpd_loop.c) hands over. A worker writes
 * its answer itself, against io_timeout_ms, then hands the connection back
 * to the loop (keep-alive), asks it to park it (a long-poll), or to close
 * it, and wakes the loop (ts_httpd_loop_kick). Apart from httpd.c (start,
 * stop, listening sockets) so that the loop and the workers depend on this
 * file and it on neither.
 */
#include "httpd_int.h"
#include "gzip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

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

enum ts_err ts_httpd_format(const char *method, const struct ts_httpd_resp *r, bool keep,
                            ts_buf *out)
{
    int st = r->status;
    bool no_body = st < 200 || st == 204 || st == 304;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    ts_buf_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", st, reason(st), date);
    if (!no_body)
        ts_buf_printf(out, "Content-Type: %s\r\n",
                      r->content_type[0] ? r->content_type : "application/json");
    if (st >= 200 && st != 204)
        ts_buf_printf(out, "Content-Length: %zu\r\n", no_body ? 0 : r->body.len);
    ts_buf_printf(out, "Connection: %s\r\n", keep ? "keep-alive" : "close");
    size_t xl = strnlen(r->extra_headers, sizeof r->extra_headers);
    if (xl) {
        ts_buf_append(out, r->extra_headers, xl);
        if (xl < 2 || memcmp(r->extra_headers + xl - 2, "\r\n", 2) != 0)
            ts_buf_puts(out, "\r\n");
    }
    ts_buf_puts(out, "\r\n");
    if (!no_body && strcmp(method, "HEAD") != 0 && r->body.len > 0)
        ts_buf_append(out, r->body.data, r->body.len);
    return out->data ? TS_OK : TS_ERR_NOMEM;
}

void ts_httpd_park(struct ts_httpd_resp *resp, int64_t until_ms, int recheck_ms)
{
    resp->park_until_ms = until_ms > 0 ? until_ms : 1;
    resp->park_recheck_ms = recheck_ms;
    resp->park_topic[0] = '\0';
}

void ts_httpd_park_on(struct ts_httpd_resp *resp, int64_t until_ms, int recheck_ms,
                      const char *topic, uint64_t seen)
{
    ts_httpd_park(resp, until_ms, recheck_ms);
    if (topic &&
        ts_strlcpy(resp->park_topic, topic, sizeof resp->park_topic) >= sizeof resp->park_topic)
        resp->park_topic[0] = '\0'; /* too long to name: woken by every wake */
    resp->park_seen = seen;
}

/*
 * Asks peer_check again about a kept connection's certificate: before a
 * request is handled, and before its answer goes out, so a terminal
 * revoked while its request waited (a long-poll) gets nothing more.
 */
static bool peer_refused(struct ts_httpd *s, struct hconn *c)
{
    const struct ts_peer_id *peer = ts_tls_peer(c->tc);
    char why[160] = "";
    if (!s->peer_check || !peer || s->peer_check(s->peer_check_ud, peer, why, sizeof why))
        return false;
    TS_WARN("httpd", "%s: %s: %s; closing the connection", c->remote,
            why[0] ? why : "certificate refused", peer->subject);
    return true;
}

/* Content-Encoding: gzip request bodies are inflated before the handler
 * sees them, to at most max_body bytes (a bomb: 413, nothing handled). */
static bool decode_body(struct ts_httpd *s, struct hconn *c, struct ts_httpd_resp *resp)
{
    const char *ce = ts_http_header(&c->m, "Content-Encoding");
    if (c->decoded || !ce || !ce[0] || strcasecmp(ce, "identity") == 0)
        return true;
    c->decoded = true;
    if (strcasecmp(ce, "gzip") != 0) {
        ts_httpd_error(resp, 415, "unsupported Content-Encoding (gzip or identity)");
        return false;
    }
    int rc = ts_gzip_decode_body(&c->m.body, "gzip", s->o.max_body);
    if (rc == TS_ERR_FULL) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body inflates past the limit (%zu bytes)",
                 s->o.max_body);
        TS_WARN("httpd", "%s %s: gzip body inflates past %zu bytes: refused", c->remote,
                c->m.target, s->o.max_body);
        ts_httpd_error(resp, 413, msg);
        return false;
    }
    if (rc) {
        ts_httpd_error(resp, 400, "malformed gzip request body");
        return false;
    }
    return true;
}

/* One request of c through the handler, and its answer written. */
static enum conn_next run_request(struct ts_httpd *s, struct hconn *c)
{
    const struct ts_http_msg *m = &c->m;
    if (peer_refused(s, c))
        return N_CLOSE;
    struct ts_httpd_resp resp = {.status = 200};
    ts_strlcpy(resp.content_type, "application/json", sizeof resp.content_type);
    struct ts_httpd_req req = {
        .method = m->method,
        .target = m->target,
        .msg = m,
        .peer = ts_tls_peer(c->tc),
        .tls_resumed = ts_tls_resumed(c->tc),
        .tls_version = ts_tls_version(c->tc),
        .park_until_ms = c->park_until,
        .park_expired = c->park_expired,
    };
    ts_strlcpy(req.remote_addr, c->remote, sizeof req.remote_addr);
    /* Read before the handler looks at its data: a change it does not see
     * wakes after this, and take_done hands the request back at once. */
    c->wake_seen = atomic_load(&s->wake_gen);
    if (ts_http_target_path(m->target, req.path, sizeof req.path) != TS_OK) {
        ts_httpd_error(&resp, 414, "request target too long");
    } else if (decode_body(s, c, &resp)) {
        req.body = m->body.data ? m->body.data : "";
        req.body_len = m->body.len;
        s->handler(s->ud, &req, &resp);
    }
    if (resp.park_until_ms && !c->park_expired && !atomic_load(&s->stopping)) {
        c->park_until = resp.park_until_ms;
        c->park_recheck_ms = resp.park_recheck_ms;
        memcpy(c->topic, resp.park_topic, sizeof c->topic);
        c->seen = resp.park_seen;
        ts_buf_free(&resp.body);
        return N_PARK;
    }
    if (resp.status < 100 || resp.status > 599 || resp.park_until_ms) {
        if (!resp.park_until_ms)
            TS_ERROR("httpd", "handler for %s %s set status %d", m->method, req.path, resp.status);
        ts_httpd_error(&resp, resp.park_until_ms ? 503 : 500,
                       resp.park_until_ms ? "shutting down" : "internal error");
    }
    bool keep = m->keep_alive && !atomic_load(&s->stopping);
    TS_DEBUG("httpd", "%s %s %s -> %d", c->remote, m->method, req.path, resp.status);
    ts_buf out = {0};
    int rc = peer_refused(s, c) ? TS_ERR_AUTH : ts_httpd_format(m->method, &resp, keep, &out);
    if (rc == TS_OK)
        rc = ts_tls_write(c->tc, out.data, out.len, s->o.io_timeout_ms);
    ts_buf_free(&out);
    ts_buf_free(&resp.body);
    return rc == TS_OK && keep ? N_READ : N_CLOSE;
}

/* One step of a TLS handshake, as far as the socket allows; a completed
 * one counted as full or resumed. */
static enum conn_next handshake_step(struct ts_httpd *s, struct hconn *c)
{
    c->hs_err[0] = '\0';
    enum ts_err rc = ts_tls_accept_step(c->tc, &c->hs_want_write, c->hs_err, sizeof c->hs_err);
    if (rc == TS_OK)
        atomic_fetch_add(ts_tls_resumed(c->tc) ? &s->st_hs_resumed : &s->st_hs_full, 1);
    return rc == TS_OK ? N_HS_DONE : rc == TS_ERR_AGAIN ? N_HS_AGAIN : N_HS_FAILED;
}

static void *worker_main(void *arg)
{
    struct ts_httpd *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->jobs && !s->rejobs && !s->workers_stop)
            pthread_cond_wait(&s->jobs_cv, &s->mu);
        if (s->workers_stop)
            break;
        /* new requests and handshakes before parked long-polls looking
         * again: a wake hands thousands over at once */
        struct hconn **q = s->jobs ? &s->jobs : &s->rejobs;
        struct hconn *c = *q;
        *q = c->qnext;
        if (!*q)
            *(q == &s->jobs ? &s->jobs_tail : &s->rejobs_tail) = NULL;
        pthread_mutex_unlock(&s->mu);
        c->next_step = c->hs_job ? handshake_step(s, c) : run_request(s, c);
        pthread_mutex_lock(&s->mu);
        c->qnext = NULL;
        if (s->done_tail)
            s->done_tail->qnext = c;
        else
            s->done = c;
        s->done_tail = c;
        pthread_mutex_unlock(&s->mu);
        ts_httpd_loop_kick(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void ts_httpd_job_push(struct ts_httpd *s, struct hconn *c)
{
    bool again = c->park_until && !c->hs_job;
    struct hconn **head = again ? &s->rejobs : &s->jobs,
                 **tail = again ? &s->rejobs_tail : &s->jobs_tail;
    pthread_mutex_lock(&s->mu);
    c->qnext = NULL;
    if (*tail)
        (*tail)->qnext = c;
    else
        *head = c;
    *tail = c;
    pthread_cond_signal(&s->jobs_cv);
    pthread_mutex_unlock(&s->mu);
}

struct topic_wake *ts_httpd_twakes_take(struct ts_httpd *s, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    struct topic_wake *w = s->twakes;
    *n = s->ntwakes;
    s->twakes = NULL;
    s->ntwakes = s->twakes_cap = 0;
    pthread_mutex_unlock(&s->mu);
    return w;
}

struct hconn *ts_httpd_done_take(struct ts_httpd *s)
{
    pthread_mutex_lock(&s->mu);
    struct hconn *c = s->done;
    s->done = s->done_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    return c;
}

enum ts_err ts_httpd_workers_start(struct ts_httpd *s)
{
    s->workers = calloc((size_t)s->o.workers, sizeof *s->workers);
    if (!s->workers)
        return TS_ERR_NOMEM;
    for (; s->nworkers < s->o.workers; s->nworkers++)
        if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) != 0)
            return TS_ERR_NOMEM;
    return TS_OK;
}

void ts_httpd_workers_stop(struct ts_httpd *s)
{
    pthread_mutex_lock(&s->mu);
    s->workers_stop = true;
    pthread_cond_broadcast(&s->jobs_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    free(s->workers);
    s->workers = NULL;
    s->nworkers = 0;
}

void ts_httpd_loop_kick(struct ts_httpd *s)
{
    uint64_t one = 1;
    if (s->evfd >= 0)
        (void)!write(s->evfd, &one, sizeof one);
}
