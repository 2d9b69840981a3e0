/*
 * One sink's forwarder (hub/sinks.h): its own thread, HTTPS clients, token
 * bucket, backoff and auth, over its own rows of the sink queue. The vendor
 * file (hub/sink.h) maps, builds and parses; everything else is here, the
 * same for every vendor.
 *
 * Rules (docs/ARCHITECTURE.md "Sinks", PRODUCT.md 4.5 for the retries):
 *   - up to max_in_flight requests at once (the vendor's limits, or
 *     [sink.NAME] max_in_flight): the sink's thread reads, maps, claims and
 *     builds each batch (its rows marked in flight in the queue, so no
 *     other request takes them and a kill -9 sends them again), a sender
 *     thread per slot makes the round trip, and each answer is parsed and
 *     marked on its own; the token bucket paces them all;
 *   - a failed request (timeout, 408, 429, 5xx) pauses
 *     the sink for a full-jitter backoff (common/backoff.c) that grows with
 *     consecutive failures, at least Retry-After: an outage costs at most
 *     the requests in flight per backoff step, never a busy loop;
 *   - the token bucket starts at the vendor's documented rate; rate headers
 *     (remaining 0 until the reset, remaining/reset) slow it, a 429 halves
 *     it, and each success gives back 5% of the documented rate;
 *   - a whole-batch 4xx is split: its items go again one by one, so only
 *     the bad one is dead-lettered, with the mapped payload and the reply;
 *   - per-item answers mark each item; an acknowledged item never goes again;
 *   - a 401 asks the vendor's auth() again, once, then counts as a failure.
 */
#include "parts.h"
#include "sinks.h"
#include "../sync/httpc.h"
#include "worker.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "sinks"
#define BASE_BACKOFF_MS 1000
#define REQUEST_TIMEOUT_MS 15000
#define MAX_ROWS 1000
#define IDLE_POLL_MS 2000 /* rows queued by another process (upstream retry) */

/* One request in flight: its batch, its own HTTPS client and sender thread.
 * IDLE -> (dispatcher) BUSY -> (sender) DONE -> (dispatcher) IDLE; st under
 * the sink's mu, the rest owned by whoever moved it last. */
enum slot_state { SLOT_IDLE, SLOT_BUSY, SLOT_DONE };
struct slot {
    struct ts_hub_sink *k;
    pthread_t th;
    bool started;
    enum slot_state st;
    struct ts_httpc *http;
    char base[512];
    struct ts_hub_sinkq_row *rows; /* claimed: in flight in the queue */
    size_t n;
    struct ts_sink_item *iv;
    const struct ts_sink_item **items;
    struct ts_sink_request req;
    char path[1100];
    struct ts_http_resp resp;
    int hrc;
    char err[300];
    bool auth_retried;
    int64_t at, wall_at; /* when it went: the caller's clock and the wall's */
};

struct ts_hub_sink {
    struct ts_hub_store *s;
    struct ts_sink_conf conf;
    const struct ts_sink_vendor *v;
    void *state;
    pthread_mutex_t mu; /* the slots' st, busy, quit */
    pthread_cond_t cv;
    bool quit;
    size_t nslots, busy;
    struct slot slots[TS_SINK_MAX_IN_FLIGHT];
    atomic_int reap; /* a slot is answered */
    bool recovered;  /* what a former run had in flight is pending again */
    struct ts_sink_auth auth;
    bool have_auth;
    /* the token bucket, in requests (or items, limits.rate_per_item) */
    double doc_rate, rate, burst, tokens;
    int64_t bucket_ms;
    int64_t paused_until; /* wall ms: no request before (backoff, rate headers) */
    int fails;            /* consecutive failed requests */
    struct ts_worker w;
    atomic_int cancel;
    atomic_ullong requests, sent, failures, dead, throttled, skipped;
    _Atomic int64_t last_success_ms;
    _Atomic double cur_rate;
};

const struct ts_sink_conf *ts_hub_sink_conf(const struct ts_hub_sink *k)
{
    return &k->conf;
}

/* ---- the client ----------------------------------------------------------------*/

static enum ts_err slot_connect(struct ts_hub_sink *k, struct slot *sl, const char *base, char *err,
                                size_t errsz)
{
    if (sl->http && strcmp(sl->base, base) == 0)
        return TS_OK;
    ts_httpc_free(sl->http);
    sl->http = NULL;
    struct ts_httpc_opts o = {
        .base_url = base,
        .ca_file = k->conf.ca_file[0] ? k->conf.ca_file : NULL,
        .max_body = 256 * 1024, /* vendors answer small JSON */
    };
    enum ts_err rc = ts_httpc_new(&o, &sl->http, err, errsz);
    if (rc != TS_OK)
        return rc;
    ts_httpc_set_cancel(sl->http, &k->cancel);
    ts_strlcpy(sl->base, base, sizeof sl->base);
    return TS_OK;
}

/* auth()'s fetch: a request to another URL (a token endpoint) on a
 * client of its own, verified against the sink's CA file. */
static enum ts_err fetch(struct ts_sink_fetch *f, const char *method, const char *url,
                         const char *headers, const char *ctype, const char *body, size_t len,
                         struct ts_sink_fetch_resp *resp, char *err, size_t errsz)
{
    struct ts_hub_sink *k = f->ctx;
    char base[512];
    const char *p = strstr(url, "://");
    const char *slash = p ? strchr(p + 3, '/') : NULL;
    size_t bl = slash ? (size_t)(slash - url) : strlen(url);
    if (bl >= sizeof base) {
        ts_errf(err, errsz, "token URL too long");
        return TS_ERR_INVAL;
    }
    memcpy(base, url, bl);
    base[bl] = '\0';
    struct ts_httpc *c = NULL;
    struct ts_httpc_opts o = {.base_url = base,
                              .ca_file = k->conf.ca_file[0] ? k->conf.ca_file : NULL,
                              .max_body = 256 * 1024};
    enum ts_err rc = ts_httpc_new(&o, &c, err, errsz);
    if (rc != TS_OK)
        return rc;
    ts_httpc_set_cancel(c, &k->cancel);
    struct ts_http_resp r = {0};
    rc = ts_httpc_request(c, method, slash ? slash : "/", headers, ctype, body, len,
                          REQUEST_TIMEOUT_MS, &r);
    if (rc != TS_OK) {
        ts_errf(err, errsz, "%s", ts_httpc_error(c));
    } else {
        resp->status = r.status;
        resp->body = r.body;
        r.body = (ts_buf){0};
    }
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    return rc;
}

/* ---- the bucket ---------------------------------------------------------------*/

static void refill(struct ts_hub_sink *k, int64_t now)
{
    if (now > k->bucket_ms) {
        k->tokens += (double)(now - k->bucket_ms) * k->rate / 1000.0;
        if (k->tokens > k->burst)
            k->tokens = k->burst;
    }
    k->bucket_ms = now;
}

/* ms until cost tokens are there (0 = now). */
static int64_t bucket_wait(struct ts_hub_sink *k, double cost, int64_t now)
{
    refill(k, now);
    if (cost > k->burst)
        cost = k->burst;
    if (k->tokens >= cost)
        return 0;
    return (int64_t)ceil((cost - k->tokens) * 1000.0 / k->rate);
}

static void set_rate(struct ts_hub_sink *k, double r)
{
    double floor = k->doc_rate / 64 < 0.05 ? k->doc_rate / 64 : 0.05;
    k->rate = r < floor ? floor : (r > k->doc_rate ? k->doc_rate : r);
    atomic_store(&k->cur_rate, k->rate);
}

/* ---- life ------------------------------------------------------------------------*/

static void *slot_main(void *arg);

enum ts_err ts_hub_sink_new(struct ts_hub_store *s, const struct ts_sink_conf *c,
                            struct ts_hub_sink **out, char *err, size_t errsz)
{
    *out = NULL;
    const struct ts_sink_vendor *v = ts_sink_vendor_find(c->type);
    if (!v) {
        ts_errf(err, errsz, "[sink.%s] type: unknown vendor \"%s\"", c->name, c->type);
        return TS_ERR_CONFIG;
    }
    struct ts_hub_sink *k = calloc(1, sizeof *k);
    if (!k) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    k->s = s;
    k->conf = *c;
    k->v = v;
    k->doc_rate = c->rate > 0 ? c->rate : v->limits.rate;
    k->burst = v->limits.burst > 1 ? v->limits.burst : 1;
    k->tokens = k->burst;
    k->bucket_ms = ts_now_wall_ms();
    set_rate(k, k->doc_rate);
    int mif = c->max_in_flight > 0 ? c->max_in_flight : v->limits.max_in_flight;
    k->nslots = mif < 1 ? 1 : (mif > TS_SINK_MAX_IN_FLIGHT ? TS_SINK_MAX_IN_FLIGHT : (size_t)mif);
    enum ts_err rc = ts_worker_init(&k->w);
    if (rc != TS_OK || pthread_mutex_init(&k->mu, NULL) != 0 || pthread_cond_init(&k->cv, NULL)) {
        free(k);
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    if ((rc = v->init(&k->conf, &k->state, err, errsz))) {
        ts_hub_sink_free(k);
        return rc;
    }
    for (size_t i = 0; i < k->nslots; i++) {
        struct slot *sl = &k->slots[i];
        sl->k = k;
        if ((rc = slot_connect(k, sl, k->conf.url, err, errsz)) != TS_OK) {
            ts_hub_sink_free(k);
            return rc;
        }
        if (pthread_create(&sl->th, NULL, slot_main, sl) != 0) {
            ts_errf(err, errsz, "[sink.%s] cannot start a sender thread", c->name);
            ts_hub_sink_free(k);
            return TS_ERR_NOMEM;
        }
        sl->started = true;
    }
    *out = k;
    return TS_OK;
}

void ts_hub_sink_free(struct ts_hub_sink *k)
{
    if (!k)
        return;
    ts_worker_request_stop(&k->w);
    atomic_store(&k->cancel, 1);
    ts_worker_stop(&k->w);
    pthread_mutex_lock(&k->mu);
    k->quit = true; /* a request in flight is cut: its rows stay in flight, and go again */
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    for (size_t i = 0; i < k->nslots; i++) {
        struct slot *sl = &k->slots[i];
        if (sl->started)
            pthread_join(sl->th, NULL);
        ts_hub_sinkq_rows_free(sl->rows, sl->n);
        free(sl->rows);
        free(sl->iv);
        free(sl->items);
        ts_http_resp_free(&sl->resp);
        ts_buf_free(&sl->req.body);
        ts_buf_free(&sl->req.headers);
        ts_httpc_free(sl->http);
    }
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    if (k->v->fini)
        k->v->fini(k->state);
    ts_worker_destroy(&k->w);
    free(k);
}

void ts_hub_sink_kick(struct ts_hub_sink *k)
{
    if (k)
        ts_worker_kick(&k->w);
}

void ts_hub_sink_metrics(const struct ts_hub_sink *k, struct ts_hub_sink_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (!k)
        return;
    m->requests = atomic_load(&k->requests);
    m->sent = atomic_load(&k->sent);
    m->failures = atomic_load(&k->failures);
    m->dead = atomic_load(&k->dead);
    m->throttled = atomic_load(&k->throttled);
    m->skipped = atomic_load(&k->skipped);
    m->rate = atomic_load(&k->cur_rate);
    m->last_success_ms = atomic_load(&k->last_success_ms);
}

/* ---- one request -------------------------------------------------------------------*/

struct answer_ctx {
    const struct ts_http_resp *r;
    char buf[256];
};

static const char *answer_header(const struct ts_sink_answer *a, const char *name)
{
    struct answer_ctx *c = (struct answer_ctx *)a->ctx;
    return ts_http_resp_header(c->r, name, c->buf, sizeof c->buf);
}

/* Whether auth is due, and getting it. */
static enum ts_err ensure_auth(struct ts_hub_sink *k, int64_t now, char *err, size_t errsz)
{
    if (k->have_auth && (!k->auth.expires_ms || k->auth.expires_ms > now))
        return TS_OK;
    struct ts_sink_fetch f = {.request = fetch, .ctx = k};
    memset(&k->auth, 0, sizeof k->auth);
    enum ts_err rc = k->v->auth(k->state, &k->conf, &f, now, &k->auth, err, errsz);
    if (rc != TS_OK)
        return rc;
    k->have_auth = true;
    return TS_OK;
}

static void failed(struct ts_hub_sink *k, int64_t now, int64_t floor_ms, const char *why, size_t n,
                   int64_t *next_at)
{
    uint32_t r = 0;
    ts_random(&r, sizeof r);
    int64_t cap = (int64_t)k->conf.max_backoff_s * 1000;
    int64_t d = ts_backoff_pick_ms((unsigned)k->fails, BASE_BACKOFF_MS, cap, 0, r);
    if (d < floor_ms)
        d = floor_ms;
    if (d < 100)
        d = 100; /* never a tight loop, whatever the jitter drew */
    k->fails++;
    *next_at = now + d;
    if (*next_at > k->paused_until)
        k->paused_until = *next_at;
    atomic_fetch_add(&k->failures, 1);
    TS_WARN(COMP, "[sink.%s] %zu item(s) not forwarded (%s); next try in %lld ms", k->conf.name, n,
            why, (long long)d);
}

/* Rate headers: slow down to what is left of the window. */
static void apply_hints(struct ts_hub_sink *k, const struct ts_sink_rate_hint *h, int64_t now)
{
    if (h->remaining == 0 && h->reset_ms > 0 && now + h->reset_ms > k->paused_until)
        k->paused_until = now + h->reset_ms;
    if (h->remaining > 0 && h->reset_ms > 0) {
        double allowed = (double)h->remaining * 1000.0 / (double)h->reset_ms;
        if (allowed < k->rate)
            set_rate(k, allowed);
    }
}

/* ---- one request in a slot ----------------------------------------------------------*/

/* The slot's batch is over: frees it; the slot is idle again. */
static void slot_clear(struct ts_hub_sink *k, struct slot *sl)
{
    ts_hub_sinkq_rows_free(sl->rows, sl->n);
    free(sl->rows);
    free(sl->iv);
    free(sl->items);
    ts_http_resp_free(&sl->resp);
    sl->resp = (struct ts_http_resp){0};
    sl->rows = NULL;
    sl->iv = NULL;
    sl->items = NULL;
    sl->n = 0;
    pthread_mutex_lock(&k->mu);
    sl->st = SLOT_IDLE;
    k->busy--;
    pthread_mutex_unlock(&k->mu);
}

/* Every item of the slot's batch RETRY with reason why, then marked. */
static enum ts_err slot_retry_all(struct ts_hub_sink *k, struct slot *sl, const char *why,
                                  int64_t now)
{
    struct ts_sink_result *res = calloc(sl->n, sizeof *res);
    enum ts_sink_verdict *verdict = calloc(sl->n, sizeof *verdict);
    enum ts_err rc = TS_ERR_NOMEM;
    int64_t next_at = now;
    if (res && verdict) {
        for (size_t i = 0; i < sl->n; i++) {
            verdict[i] = TS_SINK_RETRY;
            ts_strlcpy(res[i].reason, why, sizeof res[i].reason);
        }
        failed(k, now, 0, why, sl->n, &next_at);
        rc = ts_hub_sinkq_mark(k->s, k->conf.name, sl->rows, sl->n, verdict, res, NULL, now,
                               next_at);
    }
    free(res);
    free(verdict);
    slot_clear(k, sl);
    return rc;
}

/* Auth, build and hand the slot's batch to its sender thread. */
static enum ts_err launch(struct ts_hub_sink *k, struct slot *sl, int64_t now)
{
    char err[300] = "", why[320];
    if (ensure_auth(k, now, err, sizeof err) != TS_OK) {
        snprintf(why, sizeof why, "auth: %s", err);
        return slot_retry_all(k, sl, why, now);
    }
    const char *base = k->auth.base_url[0] ? k->auth.base_url : k->conf.url;
    ts_buf_reset(&sl->req.body);
    ts_buf_reset(&sl->req.headers);
    ts_strlcpy(sl->req.method, "POST", sizeof sl->req.method);
    ts_strlcpy(sl->req.content_type, "application/json", sizeof sl->req.content_type);
    sl->req.path[0] = '\0';
    if (slot_connect(k, sl, base, err, sizeof err) != TS_OK ||
        k->v->build(k->state, sl->items, sl->n, &sl->req, err, sizeof err) != TS_OK)
        return slot_retry_all(k, sl, err, now);
    ts_buf_puts(&sl->req.headers, k->auth.headers);
    const char *pfx = strstr(sl->base, "://");
    pfx = pfx ? strchr(pfx + 3, '/') : NULL; /* a base URL with a path prefix */
    snprintf(sl->path, sizeof sl->path, "%s%s", pfx ? pfx : "", sl->req.path);
    atomic_fetch_add(&k->requests, 1);
    sl->at = now;
    sl->wall_at = ts_now_wall_ms();
    ts_http_resp_free(&sl->resp);
    sl->resp = (struct ts_http_resp){0};
    pthread_mutex_lock(&k->mu);
    sl->st = SLOT_BUSY;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    return TS_OK;
}

/* The sender thread of one slot: the HTTPS round trip, nothing else. */
static void *slot_main(void *arg)
{
    struct slot *sl = arg;
    struct ts_hub_sink *k = sl->k;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (sl->st != SLOT_BUSY && !k->quit)
            pthread_cond_wait(&k->cv, &k->mu);
        if (k->quit)
            break;
        pthread_mutex_unlock(&k->mu);
        sl->hrc = ts_httpc_request(sl->http, sl->req.method, sl->path, sl->req.headers.data,
                                   sl->req.content_type, sl->req.body.data, sl->req.body.len,
                                   REQUEST_TIMEOUT_MS, &sl->resp);
        if (sl->hrc != TS_OK) {
            snprintf(sl->err, sizeof sl->err, "%s", ts_httpc_error(sl->http));
            ts_httpc_disconnect(sl->http);
        }
        pthread_mutex_lock(&k->mu);
        sl->st = SLOT_DONE;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
        atomic_store(&k->reap, 1);
        ts_worker_kick(&k->w);
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* A slot's answer: parse, rate hints, verdicts, marks. */
static enum ts_err finish(struct ts_hub_sink *k, struct slot *sl, int64_t now)
{
    size_t n = sl->n;
    if (sl->hrc != TS_OK)
        return slot_retry_all(k, sl, sl->err, now);
    struct ts_sink_result *res = calloc(n, sizeof *res);
    enum ts_sink_verdict *verdict = calloc(n, sizeof *verdict);
    enum ts_err rc = TS_OK;
    int64_t next_at = now;
    char *reply = NULL;
    if (!res || !verdict) {
        free(res);
        free(verdict);
        return slot_retry_all(k, sl, "out of memory", now);
    }
    struct ts_http_resp *resp = &sl->resp;
    if (resp->body.data)
        ts_buf_append(&resp->body, "", 1), resp->body.len--; /* NUL-terminated for parse() */
    struct answer_ctx actx = {.r = resp};
    struct ts_sink_answer a = {.status = resp->status,
                               .body = resp->body.data ? resp->body.data : "",
                               .len = resp->body.len,
                               .header = answer_header,
                               .ctx = &actx};
    struct ts_sink_rate_hint h = {-1, -1, -1, -1};
    if (k->v->rate)
        k->v->rate(k->state, &a, &h);
    else
        h.retry_after_ms = resp->retry_after_s >= 0 ? (int64_t)resp->retry_after_s * 1000 : -1;
    apply_hints(k, &h, now);
    enum ts_sink_verdict v = k->v->parse(k->state, &a, sl->items, n, res);
    if (v == TS_SINK_AUTH && !sl->auth_retried) {
        sl->auth_retried = true;
        k->have_auth = false; /* a token refused before it expired: once more */
        free(res);
        free(verdict);
        return launch(k, sl, now);
    }
    if (resp->status == 429) {
        atomic_fetch_add(&k->throttled, 1);
        set_rate(k, k->rate / 2); /* cut sharply */
        k->tokens = 0;
    }
    reply = strndup(a.body, a.len < 2000 ? a.len : 2000);
    bool any_retry = false;
    for (size_t i = 0; i < n; i++) {
        if (v == TS_SINK_ITEMS) {
            verdict[i] = res[i].v;
        } else {
            verdict[i] = v == TS_SINK_AUTH ? TS_SINK_RETRY : v;
            if (i)
                memcpy(res[i].reason, res[0].reason, sizeof res[i].reason);
        }
        if (verdict[i] == TS_SINK_SPLIT && n == 1)
            verdict[i] = TS_SINK_DEAD;
        any_retry |= verdict[i] == TS_SINK_RETRY;
    }
    if (any_retry) {
        failed(k, now, h.retry_after_ms, res[0].reason, n, &next_at);
    } else {
        k->fails = 0;
        set_rate(k, k->rate + k->doc_rate / 20); /* grown back slowly */
    }
    size_t ok = 0, dead = 0;
    for (size_t i = 0; i < n; i++) {
        ok += verdict[i] == TS_SINK_OK;
        dead += verdict[i] == TS_SINK_DEAD;
    }
    atomic_fetch_add(&k->sent, ok);
    atomic_fetch_add(&k->dead, dead);
    if (ok)
        atomic_store(&k->last_success_ms, now);
    if (dead)
        TS_ERROR(COMP, "[sink.%s] %zu item(s) refused for good, dead-lettered: %s", k->conf.name,
                 dead, res[0].reason);
    if (v == TS_SINK_SPLIT && n > 1)
        TS_WARN(COMP, "[sink.%s] batch of %zu refused (%s): sending them one by one", k->conf.name,
                n, res[0].reason);
    rc = ts_hub_sinkq_mark(k->s, k->conf.name, sl->rows, n, verdict, res, reply, now, next_at);
    free(reply);
    free(res);
    free(verdict);
    slot_clear(k, sl);
    return rc;
}

/* ---- the dispatcher ----------------------------------------------------------------*/

/* An idle slot (taken: counted busy), NULL when every one is in flight. */
static struct slot *take_slot(struct ts_hub_sink *k)
{
    struct slot *sl = NULL;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; !sl && i < k->nslots; i++)
        if (k->slots[i].st == SLOT_IDLE)
            sl = &k->slots[i];
    if (sl)
        k->busy++;
    pthread_mutex_unlock(&k->mu);
    return sl;
}

static void give_back(struct ts_hub_sink *k)
{
    pthread_mutex_lock(&k->mu);
    k->busy--;
    pthread_mutex_unlock(&k->mu);
}

/* One request's worth of due rows (mapping new events first) into slot sl,
 * claimed and sent; *next_ms = when to look again. sl is given back when
 * nothing goes. */
static enum ts_err send_some(struct ts_hub_sink *k, struct slot *sl, int64_t now, int64_t *next_ms)
{
    /* Read (and map) as many rows as one request takes. */
    size_t per = k->v->limits.max_items ? k->v->limits.max_items : MAX_ROWS;
    if (per > MAX_ROWS)
        per = MAX_ROWS;
    struct ts_hub_sinkq_row *rows = calloc(per, sizeof *rows);
    if (!rows) {
        give_back(k);
        return TS_ERR_NOMEM;
    }
    size_t n = 0;
    enum ts_err rc;
    for (int round = 0;; round++) {
        rc = ts_hub_sinkq_due(k->s, k->conf.name, now, rows, per, &n, next_ms, &k->recovered);
        size_t unmapped = 0;
        for (size_t i = 0; i < n; i++)
            unmapped += rows[i].item < 0;
        if (rc == TS_OK && unmapped) {
            int skipped = 0, dead = 0;
            rc = ts_hub_sinkq_expand(k->s, &k->conf, k->v, k->state, rows, n, now, &skipped, &dead);
            atomic_fetch_add(&k->skipped, (unsigned)skipped);
            atomic_fetch_add(&k->dead, (unsigned)dead);
        }
        if (rc != TS_OK || unmapped == 0 || round > 8)
            break;
        ts_hub_sinkq_rows_free(rows, n); /* mapped: read the items back */
        n = 0;
    }
    size_t items = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].item >= 0)
            rows[items++] = rows[i];
        else
            free(rows[i].payload);
    if (n > items && *next_ms > now)
        *next_ms = now; /* more are due */
    /* As many as fit the vendor's bytes per request and may go with the
     * first (its together()); the rest wait. */
    size_t used = 0, bytes = 64;
    for (; used < items; used++) {
        if (used && k->v->limits.max_bytes && bytes + rows[used].len + 1 > k->v->limits.max_bytes)
            break;
        if (used && k->v->together) {
            struct ts_sink_item a = {.json = rows[0].payload,
                                     .len = rows[0].len,
                                     .kind = rows[0].kind},
                                b = {.json = rows[used].payload,
                                     .len = rows[used].len,
                                     .kind = rows[used].kind};
            ts_strlcpy(a.dedup, rows[0].dedup, sizeof a.dedup);
            ts_strlcpy(b.dedup, rows[used].dedup, sizeof b.dedup);
            if (!k->v->together(k->state, &a, &b))
                break;
        }
        bytes += rows[used].len + 1;
    }
    if (used<items && * next_ms> now)
        *next_ms = now;
    ts_hub_sinkq_rows_free(rows + used, items - used);
    int64_t wait = 0;
    double cost = k->v->limits.rate_per_item ? (double)used : 1.0;
    if (rc == TS_OK && used > 0 && (wait = bucket_wait(k, cost, now)) > 0)
        *next_ms = now + wait;
    if (rc == TS_OK && used > 0 && wait == 0)
        rc = ts_hub_sinkq_claim(k->s, k->conf.name, rows, used);
    if (rc != TS_OK || used == 0 || wait > 0) {
        ts_hub_sinkq_rows_free(rows, used);
        free(rows);
        give_back(k);
        return rc;
    }
    k->tokens -= cost;
    sl->rows = rows;
    sl->n = used;
    sl->iv = calloc(used, sizeof *sl->iv);
    sl->items = calloc(used, sizeof *sl->items);
    sl->auth_retried = false;
    if (!sl->iv || !sl->items)
        return slot_retry_all(k, sl, "out of memory", now);
    for (size_t i = 0; i < used; i++) {
        sl->iv[i].json = rows[i].payload;
        sl->iv[i].len = rows[i].len;
        ts_strlcpy(sl->iv[i].dedup, rows[i].dedup, sizeof sl->iv[i].dedup);
        sl->iv[i].kind = rows[i].kind;
        sl->items[i] = &sl->iv[i];
    }
    rc = launch(k, sl, now);
    *next_ms = k->paused_until > now ? k->paused_until : now; /* the next slot at once */
    return rc;
}

/* Answers first, then requests while a slot is free and rows are due;
 * *next_ms = when to look again (INT64_MAX: when a request is answered or
 * a purchase arrives). */
static enum ts_err pump(struct ts_hub_sink *k, int64_t now, int64_t *next_ms)
{
    enum ts_err rc = TS_OK;
    const int64_t now0 = now, wall0 = ts_now_wall_ms();
    for (;;) {
        atomic_store(&k->reap, 0);
        for (size_t i = 0; i < k->nslots; i++) {
            struct slot *sl = &k->slots[i];
            pthread_mutex_lock(&k->mu);
            bool done = sl->st == SLOT_DONE;
            pthread_mutex_unlock(&k->mu);
            /* On the clock it was sent by (run_once's may be a test's), moved on by
             * the round trip. */
            int64_t at = sl->at + (ts_now_wall_ms() - sl->wall_at);
            if (done && (rc = finish(k, sl, at)) != TS_OK)
                TS_WARN(COMP, "[sink.%s] marking an answer: %s", k->conf.name, ts_strerror(rc));
        }
        if (k->paused_until > now) {
            *next_ms = k->paused_until;
            return TS_OK;
        }
        struct slot *sl = take_slot(k);
        if (!sl) {
            *next_ms = INT64_MAX;
            return TS_OK;
        }
        int64_t next = INT64_MAX;
        rc = send_some(k, sl, now, &next);
        if (rc != TS_OK || next > now) {
            *next_ms = rc != TS_OK ? now + BASE_BACKOFF_MS : next;
            return rc;
        }
        now = now0 + (ts_now_wall_ms() - wall0); /* the caller's clock, moved on */
        if (ts_worker_stopping(&k->w))
            return TS_OK;
    }
}

enum ts_err ts_hub_sink_run_once(struct ts_hub_sink *k, int64_t now_ms, int64_t *next_ms)
{
    /* The requests it sends are answered before it returns. */
    const int64_t now0 = now_ms, wall0 = ts_now_wall_ms();
    for (;;) {
        enum ts_err rc = pump(k, now_ms, next_ms);
        pthread_mutex_lock(&k->mu);
        bool waiting = k->busy > 0;
        while (k->busy > 0) {
            bool done = false;
            for (size_t i = 0; i < k->nslots; i++)
                done |= k->slots[i].st == SLOT_DONE;
            if (done)
                break;
            pthread_cond_wait(&k->cv, &k->mu);
        }
        pthread_mutex_unlock(&k->mu);
        if (!waiting || rc != TS_OK)
            return rc;
        now_ms = now0 + (ts_now_wall_ms() - wall0);
    }
}

static void run(struct ts_worker *w, void *arg)
{
    struct ts_hub_sink *k = arg;
    for (;;) {
        int64_t now = ts_now_wall_ms(), next = INT64_MAX;
        pump(k, now, &next);
        pthread_mutex_lock(&w->mu);
        /* Kicks while paused wait for the pause to end; answers do not. */
        if ((w->kicked && k->paused_until <= ts_now_wall_ms()) || atomic_load(&k->reap))
            next = now;
        w->kicked = false;
        int64_t wait = next == INT64_MAX ? IDLE_POLL_MS : next - ts_now_wall_ms();
        if (wait > IDLE_POLL_MS && k->paused_until <= ts_now_wall_ms())
            wait = IDLE_POLL_MS;
        bool stop = ts_worker_sleep_locked(w, wait > 60000 ? 60000 : wait, TS_WORKER_KICKABLE);
        pthread_mutex_unlock(&w->mu);
        if (stop)
            return;
    }
}

enum ts_err ts_hub_sink_start(struct ts_hub_sink *k)
{
    /* A restart is often the fix for what made the vendor refuse (a key, a
     * URL): what waits for a backoff from before goes now. */
    ts_hub_sinkq_reset_backoff(k->s, k->conf.name, ts_now_wall_ms());
    return ts_worker_start(&k->w, run, k);
}
