/*
 * Lookup rate limits, miss flagging and failed-secret throttling (throttle.h).
 * One mutex around two small hash tables (terminals, source addresses);
 * every operation is a few arithmetic steps under it, never I/O: logging and
 * the flag callback happen after it is released.
 */
#include "throttle.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "throttle"
#define NBUCKETS 4096
#define MAX_ENTRIES 32768 /* per table: 10,000 terminals fit, and as many addresses */
#define LOG_EVERY_MS 60000
#define FIRST_DELAY_S 1

struct ent {
    struct ent *next, *older, *newer; /* hash chain; LRU list, newest at head */
    char key[144];
    int64_t seen_ms;
    /* lookups: token bucket, in ticks of 1/60000 token (a rate per minute
     * is then a whole number of ticks per millisecond) */
    int64_t ticks;
    int64_t refill_ms;
    /* lookups: the current miss window */
    int64_t win_start_ms;
    unsigned long win_lookups, win_misses;
    bool flagged, win_bad;
    unsigned long long limited;
    int64_t logged_ms;
    unsigned long unlogged; /* 429s since the last log line */
    /* secrets: failures in a row and the shut-out */
    unsigned fails;
    int64_t until_ms;
};

struct table {
    struct ent *b[NBUCKETS];
    struct ent *newest, *oldest;
    size_t n;
};

struct ts_hub_throttle {
    const struct ts_hub_config *cfg;
    pthread_mutex_t mu;
    struct table term, addr;
    unsigned long long found, missed, limited_lookup, limited_auth[TS_HUB_NSECRETS],
        failed_auth[TS_HUB_NSECRETS];
    void (*on_flag)(void *, const struct ts_hub_flag *);
    void *on_flag_ud;
};

/* ---- tables ---------------------------------------------------------------*/

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void lru_unlink(struct table *t, struct ent *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        t->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        t->oldest = e->newer;
    e->older = e->newer = NULL;
}

static void lru_push(struct table *t, struct ent *e)
{
    e->older = t->newest;
    e->newer = NULL;
    if (t->newest)
        t->newest->newer = e;
    t->newest = e;
    if (!t->oldest)
        t->oldest = e;
}

static void drop(struct table *t, struct ent *e)
{
    struct ent **pp = &t->b[hash(e->key) % NBUCKETS];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    lru_unlink(t, e);
    free(e);
    t->n--;
}

static struct ent *find(struct table *t, const char *key)
{
    for (struct ent *e = t->b[hash(key) % NBUCKETS]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/*
 * The entry for key, made when missing (the least recently seen one goes
 * when the table is full). NULL only without memory: callers then let the
 * request through, as a hub without limits would.
 */
static struct ent *get(struct table *t, const char *key, int64_t now_ms)
{
    struct ent **head = &t->b[hash(key) % NBUCKETS], *found = find(t, key);
    if (found) {
        lru_unlink(t, found);
        lru_push(t, found);
        found->seen_ms = now_ms;
        return found;
    }
    if (t->n >= MAX_ENTRIES && t->oldest)
        drop(t, t->oldest);
    struct ent *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    ts_strlcpy(e->key, key, sizeof e->key);
    e->seen_ms = e->refill_ms = e->win_start_ms = now_ms;
    e->ticks = -1; /* full at first use */
    e->next = *head;
    *head = e;
    lru_push(t, e);
    t->n++;
    return e;
}

static void table_free(struct table *t)
{
    while (t->oldest)
        drop(t, t->oldest);
}

enum ts_err ts_hub_throttle_new(const struct ts_hub_config *cfg, struct ts_hub_throttle **out)
{
    struct ts_hub_throttle *l = calloc(1, sizeof *l);
    if (!l)
        return TS_ERR_NOMEM;
    l->cfg = cfg;
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return TS_OK;
}

void ts_hub_throttle_free(struct ts_hub_throttle *l)
{
    if (!l)
        return;
    table_free(&l->term);
    table_free(&l->addr);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void ts_hub_throttle_on_flag(struct ts_hub_throttle *l,
                             void (*fn)(void *, const struct ts_hub_flag *), void *ud)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->on_flag = fn;
    l->on_flag_ud = ud;
    pthread_mutex_unlock(&l->mu);
}

/* ---- lookups --------------------------------------------------------------*/

static void term_key(const char *store, const char *terminal, char *out, size_t outsz)
{
    snprintf(out, outsz, "%.63s/%.63s", store ? store : "", terminal ? terminal : "");
}

/* Ends the miss window when it is over: a flagged terminal whose window
 * passed without being flagged again is let go. Returns whether it was. */
static bool roll_window(const struct ts_hub_config *cfg, struct ent *e, int64_t now_ms)
{
    if (now_ms - e->win_start_ms < (int64_t)cfg->lookup_miss_window_s * 1000)
        return false;
    bool cleared = e->flagged && !e->win_bad;
    if (cleared)
        e->flagged = false;
    e->win_start_ms = now_ms;
    e->win_lookups = e->win_misses = 0;
    e->win_bad = false;
    return cleared;
}

int ts_hub_throttle_lookup_take(struct ts_hub_throttle *l, const char *store, const char *terminal,
                                int64_t now_ms)
{
    if (!l)
        return 0;
    const struct ts_hub_config *cfg = l->cfg;
    char key[144];
    term_key(store, terminal, key, sizeof key);
    int wait = 0;
    bool log = false, cleared = false, flagged = false;
    unsigned long suppressed = 0;
    pthread_mutex_lock(&l->mu);
    struct ent *e = get(&l->term, key, now_ms);
    if (e) {
        cleared = roll_window(cfg, e, now_ms);
        flagged = e->flagged;
        const int64_t one = 60000;
        int64_t rate = flagged ? cfg->lookup_flagged_rate_per_min : cfg->lookup_rate_per_min;
        /* A flagged terminal also loses its burst: one lookup at a time. */
        int64_t cap = flagged ? one : (int64_t)cfg->lookup_burst * one;
        if (e->ticks < 0 || e->ticks > cap)
            e->ticks = cap;
        int64_t dt = now_ms > e->refill_ms ? now_ms - e->refill_ms : 0;
        e->ticks = dt > cap / rate ? cap : e->ticks + dt * rate;
        if (e->ticks > cap)
            e->ticks = cap;
        e->refill_ms = now_ms;
        if (e->ticks >= one) {
            e->ticks -= one;
        } else {
            int64_t ms = (one - e->ticks + rate - 1) / rate;
            wait = (int)((ms + 999) / 1000);
            wait = wait < 1 ? 1 : wait;
            e->limited++;
            l->limited_lookup++;
            e->unlogged++;
            if (now_ms - e->logged_ms >= LOG_EVERY_MS || e->logged_ms == 0) {
                log = true;
                suppressed = e->unlogged;
                e->unlogged = 0;
                e->logged_ms = now_ms;
            }
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (cleared)
        TS_INFO(COMP, "terminal %s/%s: lookups look normal again, no longer flagged", store,
                terminal);
    /* Rate-limited: the first refusal, then one line a minute at most. */
    if (log)
        TS_WARN(COMP,
                "terminal %s/%s: lookups over the limit (%d/min%s), answering 429 (%lu refused "
                "since the last line)",
                store, terminal,
                flagged ? cfg->lookup_flagged_rate_per_min : cfg->lookup_rate_per_min,
                flagged ? ", flagged" : "", suppressed);
    return wait;
}

void ts_hub_throttle_lookup_done(struct ts_hub_throttle *l, const char *store, const char *terminal,
                                 bool found, int64_t now_ms)
{
    if (!l)
        return;
    const struct ts_hub_config *cfg = l->cfg;
    char key[144];
    term_key(store, terminal, key, sizeof key);
    struct ts_hub_flag f = {.store = store, .terminal = terminal, .at_ms = now_ms};
    bool newly = false;
    pthread_mutex_lock(&l->mu);
    struct ent *e = get(&l->term, key, now_ms);
    if (e) {
        roll_window(cfg, e, now_ms);
        e->win_lookups++;
        if (found) {
            l->found++;
        } else {
            l->missed++;
            e->win_misses++;
        }
        if (e->win_misses >= (unsigned long)cfg->lookup_miss_min &&
            e->win_misses * 100 >= e->win_lookups * (unsigned long)cfg->lookup_miss_percent) {
            e->win_bad = true;
            if (!e->flagged) {
                e->flagged = newly = true;
                f.lookups = e->win_lookups;
                f.misses = e->win_misses;
            }
        }
    }
    void (*fn)(void *, const struct ts_hub_flag *) = l->on_flag;
    void *ud = l->on_flag_ud;
    pthread_mutex_unlock(&l->mu);
    if (!newly)
        return;
    /* Once per flagging: the terminal stays flagged (and quiet) while its
     * lookups keep missing. */
    TS_WARN(COMP,
            "terminal %s/%s flagged: %lu of its last %lu lookups found nothing (guessing?); "
            "slowed to %d lookups/min",
            store, terminal, f.misses, f.lookups, cfg->lookup_flagged_rate_per_min);
    if (fn)
        fn(ud, &f);
}

/* ---- failed secrets -------------------------------------------------------*/

static const char *const secret_name[TS_HUB_NSECRETS] = {"write_key", "enroll_token", "fleet_admin",
                                                         "source_signature"};
static const char *const secret_said[TS_HUB_NSECRETS] = {
    "write key", "enrolment token", "fleet admin password", "source signature"};

static void addr_key(enum ts_hub_secret what, const char *addr, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s|%.100s", secret_name[what], addr ? addr : "");
}

int ts_hub_throttle_auth_wait(struct ts_hub_throttle *l, enum ts_hub_secret what, const char *addr,
                              int64_t now_ms)
{
    if (!l)
        return 0;
    char key[144];
    addr_key(what, addr, key, sizeof key);
    int wait = 0;
    pthread_mutex_lock(&l->mu);
    /* Asking makes no entry: only failures do. */
    struct ent *e = find(&l->addr, key);
    if (e && e->until_ms > now_ms) {
        wait = (int)((e->until_ms - now_ms + 999) / 1000);
        l->limited_auth[what]++;
    }
    pthread_mutex_unlock(&l->mu);
    return wait;
}

void ts_hub_throttle_auth_failed(struct ts_hub_throttle *l, enum ts_hub_secret what,
                                 const char *addr, int64_t now_ms)
{
    if (!l)
        return;
    const struct ts_hub_config *cfg = l->cfg;
    char key[144];
    addr_key(what, addr, key, sizeof key);
    int64_t delay_s = 0;
    unsigned fails = 0;
    pthread_mutex_lock(&l->mu);
    l->failed_auth[what]++;
    struct ent *e = get(&l->addr, key, now_ms);
    if (e) {
        fails = ++e->fails;
        if (fails >= (unsigned)cfg->throttle_free_failures) {
            unsigned k = fails - (unsigned)cfg->throttle_free_failures;
            delay_s = k >= 30 ? cfg->throttle_max_delay_s : (int64_t)FIRST_DELAY_S << k;
            if (delay_s > cfg->throttle_max_delay_s)
                delay_s = cfg->throttle_max_delay_s;
            e->until_ms = now_ms + delay_s * 1000;
        }
    }
    pthread_mutex_unlock(&l->mu);
    /* Once when the address is first shut out, then at every doubling up to
     * the cap: a handful of lines per guesser, not one per guess. */
    if (delay_s &&
        (delay_s < cfg->throttle_max_delay_s || fails == (unsigned)cfg->throttle_free_failures))
        TS_WARN(COMP, "%s: %u failed %s attempts in a row; refusing it for %lld s (429)", addr,
                fails, secret_said[what], (long long)delay_s);
}

void ts_hub_throttle_auth_ok(struct ts_hub_throttle *l, enum ts_hub_secret what, const char *addr)
{
    if (!l)
        return;
    char key[144];
    addr_key(what, addr, key, sizeof key);
    pthread_mutex_lock(&l->mu);
    struct ent *e = find(&l->addr, key);
    if (e)
        drop(&l->addr, e);
    pthread_mutex_unlock(&l->mu);
}

/* ---- answers and metrics --------------------------------------------------*/

void ts_hub_throttle_client_addr(const struct ts_httpd_req *req, char *out, size_t outsz)
{
    const char *via = strstr(req->remote_addr, " via ");
    size_t n = via ? (size_t)(via - req->remote_addr) : strlen(req->remote_addr);
    snprintf(out, outsz, "%.*s", (int)(n < outsz ? n : outsz - 1), req->remote_addr);
}

void ts_hub_throttle_answer_429(struct ts_httpd_resp *resp, int retry_after_s, const char *msg)
{
    size_t xl = strlen(resp->extra_headers);
    snprintf(resp->extra_headers + xl, sizeof resp->extra_headers - xl, "Retry-After: %d\r\n",
             retry_after_s);
    resp->status = 429;
    ts_buf_reset(&resp->body);
    char esc[256];
    size_t o = 0;
    for (const char *p = msg; *p && o + 2 < sizeof esc; p++) {
        if (*p == '"' || *p == '\\')
            esc[o++] = '\\';
        esc[o++] = *p;
    }
    esc[o] = '\0';
    ts_buf_printf(&resp->body, "{\"error\":\"%s\",\"retry_after\":%d}", esc, retry_after_s);
}

void ts_hub_throttle_metrics(struct ts_hub_throttle *l, ts_buf *b)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    unsigned long long nflagged = 0;
    for (struct ent *e = l->term.oldest; e; e = e->newer)
        nflagged += e->flagged;
    ts_buf_printf(b,
                  "# HELP tillside_hub_lookups_total Lookups answered since start, by result.\n"
                  "# TYPE tillside_hub_lookups_total counter\n"
                  "tillside_hub_lookups_total{result=\"found\"} %llu\n"
                  "tillside_hub_lookups_total{result=\"missed\"} %llu\n"
                  "tillside_hub_lookups_total{result=\"limited\"} %llu\n",
                  l->found, l->missed, l->limited_lookup);
    ts_buf_printf(b, "# HELP tillside_hub_auth_failures_total Failed secrets since start, by "
                     "kind.\n# TYPE tillside_hub_auth_failures_total counter\n");
    for (int i = 0; i < TS_HUB_NSECRETS; i++)
        ts_buf_printf(b, "tillside_hub_auth_failures_total{secret=\"%s\"} %llu\n", secret_name[i],
                      l->failed_auth[i]);
    ts_buf_printf(b, "# HELP tillside_hub_auth_throttled_total Requests answered 429 for earlier "
                     "failed secrets from their address, since start.\n"
                     "# TYPE tillside_hub_auth_throttled_total counter\n");
    for (int i = 0; i < TS_HUB_NSECRETS; i++)
        ts_buf_printf(b, "tillside_hub_auth_throttled_total{secret=\"%s\"} %llu\n", secret_name[i],
                      l->limited_auth[i]);
    ts_buf_printf(b,
                  "# HELP tillside_hub_lookup_flagged_terminals Terminals whose lookups mostly "
                  "miss (slowed).\n# TYPE tillside_hub_lookup_flagged_terminals gauge\n"
                  "tillside_hub_lookup_flagged_terminals %llu\n"
                  "# HELP tillside_hub_lookup_flagged One series per flagged terminal.\n"
                  "# TYPE tillside_hub_lookup_flagged gauge\n",
                  nflagged);
    for (struct ent *e = l->term.oldest; e; e = e->newer) {
        if (!e->flagged)
            continue;
        const char *slash = strchr(e->key, '/');
        if (!slash)
            continue;
        /* store and terminal names are certificate fields: keep them to
         * characters a label value can hold unescaped */
        char st[64], te[64];
        size_t n = 0;
        for (const char *p = e->key; p < slash && n + 1 < sizeof st; p++)
            st[n++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
        st[n] = '\0';
        n = 0;
        for (const char *p = slash + 1; *p && n + 1 < sizeof te; p++)
            te[n++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
        te[n] = '\0';
        ts_buf_printf(b, "tillside_hub_lookup_flagged{store=\"%s\",terminal=\"%s\"} 1\n", st, te);
    }
    pthread_mutex_unlock(&l->mu);
}
