/*
 * The sync thread: pulls the store's feed from the hub over mutual TLS and
 * applies it to the cache page by page, each page together with its cursor
 * in one transaction. On failure it marks the link offline and backs off
 * (exponential, full jitter, capped) — it never busy-loops against a hub
 * that is down.
 */
#include "agent.h"
#include "hublink.h"
#include "health.h"
#include "gzip.h"
#include "httpc.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_MS 500  /* the first retry waits up to this */
#define BACKOFF_FLOOR_MS 100 /* never a tight loop */
#define BACKOFF_MAX_MS 30000

struct ts_syncer {
    struct ts_agent *a;
    struct ts_agent_parts parts; /* for the health report */
    struct ts_cache *cache;      /* the thread's own connection */
    struct ts_httpc *http;
    struct ts_worker w; /* the thread, its stop flag and its sleeps */
    unsigned failures;
    bool caught_up;         /* the last page said more=false: long-poll next */
    int64_t next_prune_ms;  /* monotonic time of the next retention run */
    int64_t retry_after_ms; /* the hub's Retry-After on its last 503/429 */

    struct ts_health *health; /* health.c: the report sent with the polls */
};

/* Sleeps up to ms, returning early (true) when asked to stop. */
static bool sleep_or_stop(struct ts_syncer *s, int64_t ms)
{
    return ts_worker_sleep(&s->w, ms, TS_WORKER_NO_KICK);
}

static bool stop_requested(struct ts_syncer *s)
{
    return ts_worker_stopping(&s->w);
}

/* After the n-th consecutive failure (from 1): full jitter between the
 * floor and min(cap, base * 2^(n-1)) (common/backoff.c), and never sooner
 * than a busy hub's Retry-After (503, 429) plus the same jitter, so a fleet
 * refused at once does not come back at once. */
static int64_t backoff_ms(unsigned failures, int64_t retry_after_ms)
{
    int64_t b = ts_backoff_ms(failures ? failures - 1 : 0, BACKOFF_BASE_MS, BACKOFF_MAX_MS,
                              BACKOFF_FLOOR_MS);
    return retry_after_ms > 0 ? retry_after_ms + b : b;
}

/* Inflated feed pages larger than this are refused (a zip bomb, or a hub
 * gone wrong); a page of 1,000 full cards is a few MB. */
#define FEED_MAX_BODY (32u << 20)
#define DAY_MS (24LL * 3600 * 1000)
#define PRUNE_PERIOD_MS (3600LL * 1000)

/* The feed request for cursor: ?limit, ?since (escaped) and, when we are
 * caught up, ?wait for a long-poll. */
static void feed_path(const struct ts_agent_config *cfg, const char *cursor, long wait_s,
                      char *path, size_t pathsz)
{
    int n = snprintf(path, pathsz, "/v1/feed?limit=%ld", cfg->page_limit);
    if (wait_s > 0)
        n += snprintf(path + n, pathsz - (size_t)n, "&wait=%ld", wait_s);
    n += snprintf(path + n, pathsz - (size_t)n, "&since=");
    /* Cursors are printable ASCII without spaces (checked by the parser);
     * escape the few characters that are special in a query string. */
    for (const char *p = cursor; *p && (size_t)n + 4 < pathsz; p++) {
        if (*p == '&' || *p == '+' || *p == '%' || *p == '#' || *p == '?' || *p == '=')
            n += snprintf(path + n, pathsz - (size_t)n, "%%%02X", (unsigned char)*p);
        else
            path[n++] = *p;
    }
    path[n] = '\0';
}

/* Retention and the size bound, hourly and after a resync. */
static void prune(struct ts_syncer *s)
{
    const struct ts_agent_config *cfg = &s->a->cfg;
    int64_t removed = 0;
    if (ts_cache_prune(s->cache, ts_now_wall_ms(), cfg->retention_days * DAY_MS, cfg->max_cards,
                       &removed) != TS_OK)
        TS_WARN("sync", "cannot prune the cache (retention, size bound)");
    else if (removed)
        TS_INFO("sync", "removed %lld card(s) past retention (%ld days) or the size bound (%ld)",
                (long long)removed, cfg->retention_days, cfg->max_cards);
    s->next_prune_ms = ts_now_mono_ms() + PRUNE_PERIOD_MS;
}

/*
 * Fetches and applies one page. Returns TS_OK with *pause_ms set (0: ask
 * again at once), or an error with a human reason in why (logged once by
 * the caller).
 */
static enum ts_err sync_page(struct ts_syncer *s, int64_t *pause_ms, char *why, size_t whysz)
{
    struct ts_agent *a = s->a;
    char cursor[TS_FEED_MAX_CURSOR + 1], path[TS_FEED_MAX_CURSOR * 3 + 96];
    bool resyncing = false;
    int rc;
    *pause_ms = a->cfg.poll_interval_ms;
    if (!s->http) {
        /* Certificates that cannot be loaded keep the link down, not the
         * agent: the till still answers from the cache, and status says why.
         * Retried with the same backoff, so fixing the files is enough. */
        char err[512];
        if ((rc = ts_hublink_client(&a->cfg, (int)a->cfg.timeout_ms, &s->http, err, sizeof err))) {
            snprintf(why, whysz, "cannot set up TLS to the hub: %s", err);
            return rc;
        }
        ts_httpc_set_cancel(s->http, &a->sync_interrupt);
    }
    rc = ts_cache_position(s->cache, cursor, sizeof cursor, &resyncing);
    if (rc) {
        snprintf(why, whysz, "cannot read the saved cursor");
        return rc;
    }
    /* Caught up: hold the request at the hub until something changes, so an
     * online change reaches the till in well under a second. */
    long wait_s = s->caught_up && !resyncing ? a->cfg.long_poll_s : 0;
    feed_path(&a->cfg, cursor, wait_s, path, sizeof path);

    struct ts_http_resp r = {0};
    struct ts_feed_page page = {0};
    char hdrs[TS_HEALTH_MAX_JSON * 2];
    ts_health_headers(&s->health, &s->parts, "Accept-Encoding: gzip\r\n", hdrs, sizeof hdrs);
    int64_t t0 = ts_now_mono_ms();
    rc = ts_httpc_request(s->http, "GET", path, hdrs, NULL, NULL, 0,
                          (int)(a->cfg.timeout_ms + wait_s * 1000), &r);
    if (rc && !stop_requested(s) && atomic_exchange(&a->sync_interrupt, 0)) {
        /* A live lookup could not reach the hub: rather than sit out the
         * long-poll, find out now whether the link works (a plain request
         * fails within timeout_ms when it does not). */
        TS_DEBUG("sync", "checking the link after a failed live lookup");
        ts_http_resp_free(&r);
        ts_httpc_disconnect(s->http);
        wait_s = 0;
        feed_path(&a->cfg, cursor, 0, path, sizeof path);
        t0 = ts_now_mono_ms();
        rc =
            ts_httpc_request(s->http, "GET", path, hdrs, NULL, NULL, 0, (int)a->cfg.timeout_ms, &r);
    }
    if (rc) {
        snprintf(why, whysz, "feed request failed: %s", ts_httpc_error(s->http));
        ts_httpc_disconnect(s->http);
        s->caught_up = false;
        goto out;
    }
    ts_health_note(s->health, &r); /* clock skew from the Date header */
    if (r.status == 410) {
        /* The hub no longer has our position: build its slice again from
         * scratch beside the live cards, which keep answering meanwhile. A
         * 410 for a full sync is a hub fault; retrying at once would spin. */
        if (!cursor[0]) {
            snprintf(why, whysz, "feed request answered HTTP 410 for a full sync");
            rc = TS_ERR_PROTO;
            goto out;
        }
        TS_WARN("sync", "hub answered 410 Gone for our cursor: resynchronizing beside the "
                        "live cache");
        rc = ts_cache_resync_begin(s->cache);
        if (rc)
            snprintf(why, whysz, "cannot start a resync in the cache");
        s->caught_up = false;
        *pause_ms = 0;
        goto out;
    }
    if (r.status == 503 || r.status == 429) {
        /* busy: wait as asked (at most the backoff cap), then catch up */
        int ra = r.retry_after_s > 0 ? r.retry_after_s : 1;
        s->retry_after_ms = ra * 1000LL > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ra * 1000LL;
    }
    if (r.status != 200) {
        char excerpt[160];
        ts_sanitize(r.body.data, r.body.len, excerpt, sizeof excerpt, ' ');
        snprintf(why, whysz, "feed request answered HTTP %d: %s", r.status, excerpt);
        rc = TS_ERR_PROTO;
        goto out;
    }
    char err[256];
    if ((rc = ts_gzip_decode_body(&r.body, r.content_encoding, FEED_MAX_BODY))) {
        snprintf(why, whysz, "feed page rejected: %s body cannot be decoded (%s)",
                 r.content_encoding,
                 rc == TS_ERR_FULL ? "inflates past the size limit" : ts_strerror(rc));
        goto out;
    }
    if ((rc = ts_feed_parse(r.body.data, r.body.len, &page, err, sizeof err))) {
        snprintf(why, whysz, "feed page rejected: %s", err);
        goto out;
    }
    if (!ts_agent_kv_usable(&a->cfg, page.kv, page.prev_kv)) {
        snprintf(why, whysz, "feed page rejected: key version %d, ours is %d", page.kv,
                 a->cfg.tenant.version);
        rc = TS_ERR_PROTO;
        goto out;
    }
    int64_t now = ts_now_wall_ms();
    if ((rc = ts_cache_apply_page(s->cache, &page, now, err, sizeof err))) {
        snprintf(why, whysz, "cannot store feed page: %s", err);
        goto out;
    }
    ts_agent_note_page(a, page.nitems, now);
    if (page.nitems)
        TS_INFO("sync", "applied %zu change(s)%s, more=%d", page.nitems,
                resyncing ? " to the resync" : "", page.more);
    if (resyncing && !page.more) {
        TS_INFO("sync", "resync complete: the new slice replaced the old cache");
        prune(s);
    }
    /* "more" with nothing in it and the same cursor would have us ask the
     * same question forever: wait for the next poll instead. */
    bool more = page.more && (page.nitems > 0 || strcmp(page.cursor, cursor) != 0);
    bool was_caught_up = s->caught_up;
    s->caught_up = !page.more;
    if (more) {
        *pause_ms = 0;
    } else if (a->cfg.long_poll_s > 0) {
        /* The next request long-polls; only a hub that answered a long-poll
         * at once with nothing (one that ignores ?wait) gets the poll
         * interval between requests, so it is never hammered. */
        bool held = ts_now_mono_ms() - t0 >= wait_s * 500;
        if (!was_caught_up || wait_s == 0 || page.nitems > 0 || held)
            *pause_ms = 0;
    }
out:
    ts_feed_page_free(&page);
    ts_http_resp_free(&r);
    return rc;
}

static void run(struct ts_worker *w, void *arg)
{
    (void)w;
    struct ts_syncer *s = arg;
    struct ts_agent *a = s->a;
    char why[768], last_why[768] = "";
    for (;;) {
        if (ts_now_mono_ms() >= s->next_prune_ms)
            prune(s);
        int64_t pause = 0;
        enum ts_err rc = sync_page(s, &pause, why, sizeof why);
        if (stop_requested(s))
            break; /* a cancelled long-poll is no failure */
        if (rc == TS_OK) {
            s->failures = 0;
            last_why[0] = '\0';
            ts_agent_set_link(a, true, NULL);
            if (pause > 0) {
                ts_cache_flush(s->cache);
                if (sleep_or_stop(s, pause))
                    break;
            }
            continue;
        }
        s->failures++;
        /* Pages held for a group commit must not wait out the backoff. */
        ts_cache_flush(s->cache);
        /* Log a repeated failure once, not once per retry. */
        if (strcmp(why, last_why) != 0)
            TS_ERROR("sync", "%s", why);
        ts_strlcpy(last_why, why, sizeof last_why);
        /* A page the hub sent but we refused means the link works; still
         * call it offline: the cache is no longer being refreshed. */
        ts_agent_set_link(a, false, why);
        int64_t wait = backoff_ms(s->failures, s->retry_after_ms);
        s->retry_after_ms = 0;
        if (sleep_or_stop(s, wait))
            break;
    }
}

enum ts_err ts_syncer_start(const struct ts_agent_parts *parts, struct ts_syncer **out, char *err,
                            size_t errsz)
{
    struct ts_agent *a = parts->core;
    struct ts_syncer *s = calloc(1, sizeof *s);
    if (!s)
        return TS_ERR_NOMEM;
    s->a = a;
    s->parts = *parts;
    char path[TS_AGENT_PATH_MAX + 16];
    ts_agent_cache_path(&a->cfg, path, sizeof path);
    int rc = ts_worker_init(&s->w);
    if (rc == TS_OK)
        rc = ts_cache_open(path, &s->cache, err, errsz);
    if (rc == TS_OK && (rc = ts_worker_start(&s->w, run, s)) != TS_OK)
        snprintf(err, errsz, "cannot start the sync thread");
    if (rc) {
        ts_httpc_free(s->http);
        ts_cache_close(s->cache);
        ts_worker_destroy(&s->w);
        free(s);
        return rc;
    }
    *out = s;
    return TS_OK;
}

void ts_syncer_stop(struct ts_syncer *s)
{
    if (!s)
        return;
    /* The flag first: the thread reads an interrupt it finds without a stop
     * as "a lookup failed, long-poll again". */
    ts_worker_request_stop(&s->w);
    atomic_store(&s->a->sync_interrupt, 1); /* cuts a long-poll short */
    ts_worker_stop(&s->w);
    ts_httpc_free(s->http);
    ts_cache_close(s->cache);
    ts_worker_destroy(&s->w);
    ts_health_free(s->health);
    free(s);
}
