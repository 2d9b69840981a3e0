/*
 * ts_fleetsim: N simulated terminals against one hub, through the agent's
 * own transport and feed code (sync/httpc.c over sync/tls.c, sync/gzip.c,
 * sync/feed.c). Each terminal has its own client certificate (CN=Tnnnn,
 * OU=Sxxx, issued here with the CA in --pki when missing), polls
 * GET /v1/feed every --interval seconds with jitter, follows its cursor and
 * `more`, and now and then uploads a purchase batch (POST /v1/purchases,
 * the Segment batch of the purchase contract) on the same connection.
 *
 * The terminals share --threads worker threads; a worker serves its
 * terminals in due order and records how late it started each one, so a
 * simulator that cannot keep up shows it (sched_late) instead of silently
 * measuring less load. A fresh TCP + TLS connection per poll: the hub closes
 * idle kept connections after 15 s, so at a 30 s interval every poll
 * reconnects in the real fleet too. As in the agent, the reconnect resumes
 * the terminal's TLS session (sync/tls.c: session tickets, an abbreviated
 * handshake without certificates or ECDHE/ECDSA); only a terminal's first
 * poll, and the first after the hub's ticket lifetime (1 h), does a full
 * handshake. --no-resume makes every poll a full handshake (the agent
 * before resumption). No long-poll (?wait=) in this mode: that is
 * --long-poll (below), the agents' default.
 *
 * A fleet that has been running a while has its sessions already; one that
 * starts cold (every terminal's first poll: a full handshake and a full
 * sync) is a hub restart's thundering herd. --warmup S runs those first
 * polls spread over S seconds before the measured --duration begins (their
 * lateness is reported apart, as sched_late_warmup); without it the first
 * polls fall into the measured window, spread over one interval.
 *
 * Prints one JSON object with latency percentiles (ms) per request kind,
 * the handshakes (full and resumed) and the simulator's own CPU time over
 * the measured window (cpu_s, all threads), so a caller can put a cost on a
 * poll; "fleetsim: measuring" on stderr marks the window's start.
 *
 * --long-poll S is the other mode, the agents' default: kept connections
 * long-polling with ?wait=S, many per thread (fleetsim_lp.c).
 */
#include "fleetsim.h"
#include "feed.h"
#include "gzip.h"
#include "httpc.h"
#include "pki.h"

#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct opts {
    const char *url, *pki;
    int terminals, stores, threads;
    double interval_s, duration_s, purchase_every_s, warmup_s;
    bool no_resume;
};

struct term {
    int idx;
    char store[16], name[16];
    char cert[512], key[512];
    struct ts_httpc *c;
    char cursor[TS_FEED_MAX_CURSOR + 1];
    bool synced; /* first full sync done */
    int64_t due;
    unsigned long receipts;
    unsigned long warm_connects, warm_resumed; /* handshakes before the measured window */
};

struct worker {
    pthread_t thr;
    const struct opts *o;
    struct term *t;
    size_t nt;
    unsigned seed;
    double measure_at; /* fleet_now_ms() when the measured window begins */
    struct fleet_samples first, feed, purchase, late, warm_late;
    unsigned long errors, non2xx, items;
};

static atomic_int g_stop;

void fleet_add(struct fleet_samples *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = v;
}

double fleet_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time of the whole process (every thread), seconds. */
double fleet_cpu_now_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

double fleet_jitter(unsigned *seed, double span)
{
    return span * ((double)rand_r(seed) / RAND_MAX);
}

/* One feed cycle: pages until `more` is false. false on a transport error. */
static bool poll_feed(struct worker *w, struct term *t)
{
    for (int pages = 0; pages < 1000; pages++) {
        char path[512];
        snprintf(path, sizeof path, "/v1/feed?limit=500%s%s", t->cursor[0] ? "&since=" : "",
                 t->cursor);
        struct ts_http_resp r = {0};
        double t0 = fleet_now_ms();
        int rc = ts_httpc_request(t->c, "GET", path, "Accept-Encoding: gzip\r\n", NULL, NULL, 0,
                                  30000, &r);
        double dt = fleet_now_ms() - t0;
        if (rc != TS_OK) {
            w->errors++;
            ts_http_resp_free(&r);
            return false;
        }
        fleet_add(t->synced ? &w->feed : &w->first, dt);
        if (r.status != 200) {
            w->non2xx++;
            ts_http_resp_free(&r);
            return true;
        }
        struct ts_feed_page page = {0};
        char err[256];
        if (ts_gzip_decode_body(&r.body, r.content_encoding, 64u << 20) != TS_OK ||
            ts_feed_parse(r.body.data, r.body.len, &page, err, sizeof err) != TS_OK) {
            w->errors++;
            ts_http_resp_free(&r);
            return false;
        }
        w->items += page.nitems;
        ts_strlcpy(t->cursor, page.cursor, sizeof t->cursor);
        bool more = page.more;
        ts_feed_page_free(&page);
        ts_http_resp_free(&r);
        if (!more)
            break;
    }
    t->synced = true;
    return true;
}

int fleet_purchase_body(char *body, size_t bodysz, const char *store, const char *name, int idx,
                        unsigned long receipt_no, unsigned *seed, char *mid)
{
    char receipt[64], ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(receipt, sizeof receipt, "%s-%s-%06lu-%ld", store, name, receipt_no, (long)now);
    snprintf(mid, 96, "fleet-%s", receipt);
    double total = 5.0 + (double)(rand_r(seed) % 9000) / 100.0;
    int n = snprintf(
        body, bodysz,
        "{\"batch\":[{\"type\":\"track\",\"event\":\"Order Completed\",\"messageId\":\"%s\","
        "\"anonymousId\":\"%s:%s\",\"originalTimestamp\":\"%s\",\"sentAt\":\"%s\","
        "\"properties\":{\"order_id\":\"%s\",\"total\":%.2f,\"revenue\":%.2f,\"tax\":0,"
        "\"discount\":0,\"currency\":\"EUR\",\"products\":[{\"product_id\":\"SKU-%d\","
        "\"sku\":\"SKU-%d\",\"name\":\"Fleet item\",\"price\":%.2f,\"quantity\":1}]},"
        "\"context\":{\"tillside\":{\"store\":\"%s\",\"terminal\":\"%s\",\"receipt\":\"%s\","
        "\"source\":\"api\"}}}],\"sentAt\":\"%s\"}",
        mid, store, name, ts, ts, receipt, total, total, idx % 50, idx % 50, total, store, name,
        receipt, ts);
    return n < 0 || (size_t)n >= bodysz ? -1 : n;
}

static void upload_purchase(struct worker *w, struct term *t)
{
    char mid[96], body[2048];
    int n = fleet_purchase_body(body, sizeof body, t->store, t->name, t->idx, ++t->receipts,
                                &w->seed, mid);
    if (n < 0) {
        w->errors++;
        return;
    }
    struct ts_http_resp r = {0};
    double t0 = fleet_now_ms();
    int rc = ts_httpc_request(t->c, "POST", "/v1/purchases", NULL, "application/json", body,
                              (size_t)n, 30000, &r);
    double dt = fleet_now_ms() - t0;
    if (rc != TS_OK)
        w->errors++;
    else {
        fleet_add(&w->purchase, dt);
        if (r.status != 200 || !strstr(r.body.data ? r.body.data : "", mid))
            w->non2xx++;
    }
    ts_http_resp_free(&r);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    double end = w->measure_at + o->duration_s * 1000.0;
    double p_purchase = o->purchase_every_s > 0 ? o->interval_s / o->purchase_every_s : 0;
    while (!atomic_load(&g_stop)) {
        struct term *next = NULL;
        for (size_t i = 0; i < w->nt; i++)
            if (!next || w->t[i].due < next->due)
                next = &w->t[i];
        double wait = (double)next->due - fleet_now_ms();
        if (fleet_now_ms() + (wait > 0 ? wait : 0) >= end)
            break;
        if (wait > 0) {
            ts_sleep_ms((int64_t)wait + 1);
            continue; /* re-check the stop flag and the order */
        }
        bool warm = (double)next->due < w->measure_at;
        fleet_add(warm ? &w->warm_late : &w->late, -wait);
        bool ok = poll_feed(w, next);
        if (!warm && ok && fleet_jitter(&w->seed, 1.0) < p_purchase)
            upload_purchase(w, next);
        ts_httpc_disconnect(next->c);
        if (warm) {
            /* warmed up: the measured window starts with polls spread over
             * one interval, as in a fleet that has been running a while */
            next->warm_connects = ts_httpc_connects(next->c);
            next->warm_resumed = ts_httpc_resumed(next->c);
            next->due = (int64_t)(w->measure_at + fleet_jitter(&w->seed, o->interval_s * 1000.0));
            continue;
        }
        /* the agent's schedule: the interval plus up to 10 % jitter */
        next->due = (int64_t)(fleet_now_ms() + o->interval_s * 1000.0 +
                              fleet_jitter(&w->seed, o->interval_s * 100.0));
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void fleet_print_stats(const char *name, struct fleet_samples *s, bool comma)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_d);
    double p50 = 0, p90 = 0, p99 = 0, max = 0;
    if (s->n) {
        p50 = s->v[(size_t)(0.50 * (double)(s->n - 1))];
        p90 = s->v[(size_t)(0.90 * (double)(s->n - 1))];
        p99 = s->v[(size_t)ceil(0.99 * (double)(s->n - 1))];
        max = s->v[s->n - 1];
    }
    printf("  \"%s\": {\"n\": %zu, \"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"max\": %.2f}%s\n",
           name, s->n, p50, p90, p99, max, comma ? "," : "");
}

void fleet_merge(struct fleet_samples *into, const struct fleet_samples *from)
{
    for (size_t i = 0; i < from->n; i++)
        fleet_add(into, from->v[i]);
}

int fleet_ensure_cert(const char *pki, const char *store, const char *name, char *cert, char *key)
{
    char dir[400], ca[512], cakey[512], err[256];
    snprintf(dir, sizeof dir, "%s/fleet", pki);
    mkdir(dir, 0700);
    snprintf(cert, 512, "%s/%s-%s.pem", dir, store, name);
    snprintf(key, 512, "%s/%s-%s.key", dir, store, name);
    if (access(cert, R_OK) == 0 && access(key, R_OK) == 0)
        return 0;
    snprintf(ca, sizeof ca, "%s/ca.pem", pki);
    snprintf(cakey, sizeof cakey, "%s/ca.key", pki);
    int64_t now = (int64_t)time(NULL);
    struct ts_pki_issue p = {.ca_cert_file = ca,
                             .ca_key_file = cakey,
                             .cn = name,
                             .ou = store,
                             .o = "acme",
                             .not_before = now - 3600,
                             .not_after = now + 30 * 86400,
                             .out_cert_file = cert,
                             .out_key_file = key};
    if (ts_pki_issue(&p, err, sizeof err)) {
        fprintf(stderr, "fleetsim: %s: %s\n", cert, err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.terminals = 100,
                     .stores = 100,
                     .threads = 32,
                     .interval_s = 30,
                     .duration_s = 90,
                     .purchase_every_s = 300};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--long-poll"))
            return fleet_lp_main(argc, argv);
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--no-resume")) {
            o.no_resume = true;
            i--; /* a flag: no value */
        } else if (!strcmp(a, "--url"))
            o.url = v;
        else if (!strcmp(a, "--pki"))
            o.pki = v;
        else if (!strcmp(a, "--terminals"))
            o.terminals = atoi(v);
        else if (!strcmp(a, "--stores"))
            o.stores = atoi(v);
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--interval"))
            o.interval_s = atof(v);
        else if (!strcmp(a, "--duration"))
            o.duration_s = atof(v);
        else if (!strcmp(a, "--purchase-every"))
            o.purchase_every_s = atof(v);
        else if (!strcmp(a, "--warmup"))
            o.warmup_s = atof(v);
        else {
            fprintf(stderr, "fleetsim: unknown option %s\n", a);
            return 2;
        }
    }
    if (!o.url || !o.pki || o.terminals < 1 || o.stores < 1 || o.threads < 1) {
        fprintf(stderr, "usage: ts_fleetsim --url https://localhost:PORT --pki DIR "
                        "[--terminals N] [--stores S] [--threads T] [--interval S] "
                        "[--duration S] [--purchase-every S] [--warmup S] [--no-resume]\n");
        return 2;
    }
    ts_log_set_level(TS_LOG_ERROR);
    if (o.threads > o.terminals)
        o.threads = o.terminals;
    struct term *terms = calloc((size_t)o.terminals, sizeof *terms);
    struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
    char ca[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", o.pki);
    double start = fleet_now_ms();
    unsigned seed = 42;
    for (int i = 0; i < o.terminals; i++) {
        struct term *t = &terms[i];
        t->idx = i;
        snprintf(t->store, sizeof t->store, "S%03d", i % o.stores + 1);
        snprintf(t->name, sizeof t->name, "T%04d", i / o.stores + 1);
        if (fleet_ensure_cert(o.pki, t->store, t->name, t->cert, t->key))
            return 1;
        struct ts_httpc_opts ho = {.base_url = o.url,
                                   .ca_file = ca,
                                   .cert_file = t->cert,
                                   .key_file = t->key,
                                   .connect_timeout_ms = 10000,
                                   .no_resume = o.no_resume};
        char err[256];
        if (ts_httpc_new(&ho, &t->c, err, sizeof err)) {
            fprintf(stderr, "fleetsim: terminal %d: %s\n", i, err);
            return 1;
        }
    }
    double setup_ms = fleet_now_ms() - start;
    /* First polls spread evenly over the warm-up, or else over one interval
     * of the measured window. */
    double t0 = fleet_now_ms(), measure_at = t0 + o.warmup_s * 1000.0;
    double first_span = o.warmup_s > 0 ? o.warmup_s : o.interval_s;
    for (int i = 0; i < o.terminals; i++)
        terms[i].due = (int64_t)(t0 + fleet_jitter(&seed, first_span * 1000.0));
    for (int k = 0; k < o.threads; k++) {
        ws[k].o = &o;
        ws[k].seed = (unsigned)k * 7919u + 1;
        ws[k].measure_at = measure_at;
        ws[k].t = calloc((size_t)o.terminals / (size_t)o.threads + 1, sizeof(struct term));
    }
    /* terminals are moved into their worker's array (no sharing) */
    for (int i = 0; i < o.terminals; i++) {
        struct worker *w = &ws[i % o.threads];
        w->t[w->nt++] = terms[i];
    }
    for (int k = 0; k < o.threads; k++)
        pthread_create(&ws[k].thr, NULL, worker_main, &ws[k]);
    /* the caller (bench/fleet.py) starts its own measurements on this line */
    if (measure_at > fleet_now_ms())
        ts_sleep_ms((int64_t)(measure_at - fleet_now_ms()));
    double cpu0 = fleet_cpu_now_s();
    fprintf(stderr, "fleetsim: measuring\n");
    fflush(stderr);
    struct fleet_samples first = {0}, feed = {0}, purchase = {0}, late = {0}, warm_late = {0};
    unsigned long errors = 0, non2xx = 0, items = 0, connects = 0, resumed = 0, warm_connects = 0,
                  warm_resumed = 0;
    for (int k = 0; k < o.threads; k++) {
        pthread_join(ws[k].thr, NULL);
        fleet_merge(&first, &ws[k].first);
        fleet_merge(&feed, &ws[k].feed);
        fleet_merge(&purchase, &ws[k].purchase);
        fleet_merge(&late, &ws[k].late);
        fleet_merge(&warm_late, &ws[k].warm_late);
        errors += ws[k].errors;
        non2xx += ws[k].non2xx;
        items += ws[k].items;
    }
    double ran = (fleet_now_ms() - measure_at) / 1000.0, cpu = fleet_cpu_now_s() - cpu0;
    for (int k = 0; k < o.threads; k++)
        for (size_t i = 0; i < ws[k].nt; i++) {
            const struct term *t = &ws[k].t[i];
            connects += ts_httpc_connects(t->c) - t->warm_connects;
            resumed += ts_httpc_resumed(t->c) - t->warm_resumed;
            warm_connects += t->warm_connects;
            warm_resumed += t->warm_resumed;
            ts_httpc_free(t->c);
        }
    printf("{\n  \"terminals\": %d, \"stores\": %d, \"threads\": %d, \"interval_s\": %.1f,\n"
           "  \"ran_s\": %.1f, \"setup_s\": %.1f, \"errors\": %lu, \"non2xx\": %lu, "
           "\"items\": %lu,\n"
           "  \"resume\": %s, \"warmup_s\": %.1f, "
           "\"handshakes\": {\"full\": %lu, \"resumed\": %lu}, "
           "\"handshakes_warmup\": {\"full\": %lu, \"resumed\": %lu}, \"cpu_s\": %.3f,\n",
           o.terminals, o.stores, o.threads, o.interval_s, ran, setup_ms / 1000.0, errors, non2xx,
           items, o.no_resume ? "false" : "true", o.warmup_s, connects - resumed, resumed,
           warm_connects - warm_resumed, warm_resumed, cpu);
    fleet_print_stats("feed_first", &first, true);
    fleet_print_stats("feed", &feed, true);
    fleet_print_stats("purchase", &purchase, true);
    fleet_print_stats("sched_late_warmup", &warm_late, true);
    fleet_print_stats("sched_late", &late, false);
    printf("}\n");
    return errors ? 1 : 0;
}
