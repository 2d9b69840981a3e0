/*
 * The upload thread: drains the outbox to the hub's POST /v1/purchases as
 * Segment batches (PROTOCOL.md "Agent → hub purchases").
 *
 * Delivery is at least once: rows are marked sent only after the hub's 200
 * named them (accepted or duplicate), so a crash between the answer and the
 * mark resends them and the hub, idempotent by messageId, answers
 * "duplicate". What the uploader promises besides:
 *   - requests hold at most [outbox] batch_bytes (475 KB) and events at most
 *     32 KB (bigger ones are dead-lettered, never sent);
 *   - failures (no answer, 408, 429, 5xx) back off exponentially with full
 *     jitter up to backoff_max_ms, never less than the hub's Retry-After and
 *     never less than MIN_WAIT_MS: there is no busy loop, and new purchases
 *     arriving during a back-off do not cut it short;
 *   - a 4xx other than 408/429 for a whole batch is retried one event at a
 *     time so that only the event the hub refuses on its own is
 *     dead-lettered; an event the hub's answer rejects is dead-lettered with
 *     the hub's reason, and the rest of the batch goes on.
 */
#include "httpc.h"
#include "purchase.h"
#include "hublink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 2000          /* events per request, whatever their size */
#define IDLE_POLL_MS 5000      /* with nothing to send, look again (CLI retries) */
#define MIN_WAIT_MS 50         /* the floor under full jitter's zero */
#define MAX_RETRY_AFTER_S 3600 /* a Retry-After beyond this is taken as this */
#define BATCH_OVERHEAD 128     /* {"batch":[...],"sentAt":"..."} */
#define SENT_AT_FIELD 48       /* "sentAt":"2026-11-28T16:37:15.123Z", */

struct ts_uploader {
    struct ts_agent *a; /* the core: configuration (borrowed) */
    struct ts_purch *p; /* the purchases handle this uploader drains */
    atomic_int cancel;  /* cuts a request short at stop */
    struct ts_httpc *hc;
    int attempt;      /* consecutive failures */
    size_t solo_left; /* send this many rows one by one (after a 4xx batch) */
    size_t max_bytes; /* halved after a 413 until a batch passes */
    bool failing;     /* the last round failed (log transitions only) */
};

int64_t ts_uploader_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, int64_t retry_after_ms,
                               uint32_t r)
{
    /* attempt counts failures from 1; ts_backoff_pick_ms counts retries from 0 */
    int64_t wait = ts_backoff_pick_ms(attempt > 0 ? (unsigned)attempt - 1 : 0, base_ms, cap_ms,
                                      MIN_WAIT_MS, r);
    return wait < retry_after_ms ? retry_after_ms : wait;
}

void ts_uploader_kick(struct ts_purch *p)
{
    if (!p)
        return;
    ts_worker_kick(&p->w);
}

enum round { R_IDLE, R_PROGRESS, R_FAIL };

/* {"batch":[events with sentAt],"sentAt":"..."}: stored events lack sentAt,
 * which is spliced in after their opening brace. */
static int build_batch(const struct ts_outbox_row *rows, size_t n, const char *sent_at, ts_buf *b)
{
    int rc = ts_buf_puts(b, "{\"batch\":[");
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        rc = ts_buf_printf(b, "%s{\"sentAt\":\"%s\",", i ? "," : "", sent_at);
        if (rc == TS_OK)
            rc = ts_buf_append(b, rows[i].event + 1, rows[i].event_len - 1);
    }
    if (rc == TS_OK)
        rc = ts_buf_printf(b, "],\"sentAt\":\"%s\"}", sent_at);
    return rc;
}

static void dead(struct ts_uploader *u, const char *id, const char *reason)
{
    struct ts_purch *p = u->p;
    if (ts_outbox_mark_dead(p->ob, id, reason, ts_now_wall_ms()) == TS_OK) {
        atomic_fetch_add(&p->dead_lettered, 1);
        TS_ERROR("outbox", "purchase %s moved to the dead letters: %s", id, reason);
    }
}

/* Applies a 200 answer; returns how many rows left the outbox. */
static size_t apply_answer(struct ts_uploader *u, const struct ts_http_resp *r, size_t n, bool *ok)
{
    struct ts_purch *p = u->p;
    json_t *o = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    json_t *acc = json_object_get(o, "accepted"), *dup = json_object_get(o, "duplicates");
    json_t *rej = json_object_get(o, "rejected");
    size_t done = 0;
    *ok = json_is_array(acc) || json_is_array(dup) || json_is_array(rej);
    if (!*ok) {
        TS_WARN("outbox", "hub answered 200 without accepted/duplicates/rejected lists");
        goto out;
    }
    const char **ids = calloc(n + 1, sizeof *ids);
    size_t k = 0;
    json_t *lists[2] = {acc, dup}, *v;
    size_t i;
    for (int l = 0; ids && l < 2; l++) {
        json_array_foreach(lists[l], i, v)
        {
            if (json_is_string(v) && k < n)
                ids[k++] = json_string_value(v);
        }
    }
    if (ids && k && ts_outbox_mark_sent(p->ob, ids, k, ts_now_wall_ms()) == TS_OK) {
        done += k;
        atomic_fetch_add(&p->sent, k);
    } else if (k) {
        *ok = false; /* not marked: they go again and come back as duplicates */
    }
    free(ids);
    json_array_foreach(rej, i, v)
    {
        const char *id = json_string_value(json_object_get(v, "messageId"));
        const char *why = json_string_value(json_object_get(v, "error"));
        char reason[300];
        snprintf(reason, sizeof reason, "hub rejected the event: %s", why ? why : "no reason");
        if (id) {
            dead(u, id, reason);
            done++;
        }
    }
out:
    json_decref(o);
    return done;
}

/* The hub's {"error": ...} of a refusal, for a dead letter's reason. */
static void refusal_reason(const struct ts_http_resp *r, char *out, size_t outsz)
{
    json_t *o = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    const char *e = json_string_value(json_object_get(o, "error"));
    snprintf(out, outsz, "hub answered HTTP %d: %s", r->status, e ? e : "no reason given");
    json_decref(o);
}

/* One request's worth of the outbox. *retry_after_ms gets the hub's ask. */
static enum round run_round(struct ts_uploader *u, int64_t *retry_after_ms)
{
    struct ts_agent *a = u->a;
    struct ts_purch *p = u->p;
    struct ts_outbox_row *rows = NULL;
    size_t n = 0, got = 0;
    ts_buf body = {0};
    struct ts_http_resp r = {0};
    enum round res = R_FAIL;
    char err[512];
    *retry_after_ms = 0;

    size_t max_rows = u->solo_left ? 1 : MAX_ROWS;
    if (ts_outbox_pending(p->ob, 0, max_rows, u->max_bytes - BATCH_OVERHEAD, &rows, &got) != TS_OK)
        return R_FAIL;
    n = got;
    if (n == 0) {
        u->solo_left = 0;
        res = R_IDLE;
        goto out;
    }
    /* Rows that can never be sent leave at once (32 KB with sentAt). */
    for (size_t i = 0; i < n; i++)
        if (rows[i].event_len + SENT_AT_FIELD > TS_PURCHASE_MAX_EVENT ||
            rows[i].event_len + SENT_AT_FIELD + BATCH_OVERHEAD > u->max_bytes ||
            rows[i].event_len < 2 || rows[i].event[0] != '{') {
            dead(u, rows[i].message_id, "event larger than 32 KB or malformed");
            res = R_PROGRESS;
            goto out;
        }
    /* The per-row size check above kept each row under the cap; the sum,
     * with sentAt, must fit too. */
    while (n > 1) {
        size_t total = BATCH_OVERHEAD;
        for (size_t i = 0; i < n; i++)
            total += rows[i].event_len + SENT_AT_FIELD;
        if (total <= u->max_bytes)
            break;
        n--;
    }
    if (!u->hc && ts_hublink_client(&a->cfg, (int)a->cfg.timeout_ms, &u->hc, err, sizeof err)) {
        if (!u->failing)
            TS_WARN("outbox", "cannot upload: %s", err);
        goto out;
    }
    ts_httpc_set_cancel(u->hc, &u->cancel);
    char sent_at[40];
    ts_iso8601(ts_now_wall_ms(), sent_at, sizeof sent_at);
    if (build_batch(rows, n, sent_at, &body) != TS_OK)
        goto out;
    atomic_fetch_add(&p->uploads, 1);
    int rc = ts_httpc_request(u->hc, "POST", "/v1/purchases", NULL, "application/json", body.data,
                              body.len, (int)a->cfg.timeout_ms, &r);
    if (rc != TS_OK) {
        if (!u->failing)
            TS_WARN("outbox", "upload of %zu purchases failed: %s", n, ts_httpc_error(u->hc));
        ts_httpc_disconnect(u->hc);
        goto out;
    }
    if (r.retry_after_s > 0)
        *retry_after_ms =
            (int64_t)(r.retry_after_s > MAX_RETRY_AFTER_S ? MAX_RETRY_AFTER_S : r.retry_after_s) *
            1000;
    if (r.status == 200) {
        bool ok;
        size_t done = apply_answer(u, &r, n, &ok);
        if (u->solo_left)
            u->solo_left--;
        if (ok && done > 0) {
            res = R_PROGRESS;
            u->max_bytes = (size_t)a->cfg.outbox_batch_bytes;
            atomic_store(&p->last_upload_ok_ms, ts_now_wall_ms());
            if (u->failing)
                TS_INFO("outbox", "uploads flow again (%zu purchases in this batch)", done);
        }
    } else if (r.status == 413) {
        /* Smaller requests until one passes; a lone event too large dies. */
        if (n > 1 && u->max_bytes / 2 >= TS_PURCHASE_MAX_EVENT + BATCH_OVERHEAD) {
            u->max_bytes /= 2;
            res = R_PROGRESS;
        } else if (n > 1) {
            u->solo_left = n;
            res = R_PROGRESS;
        } else {
            refusal_reason(&r, err, sizeof err);
            dead(u, rows[0].message_id, err);
            if (u->solo_left)
                u->solo_left--;
            res = R_PROGRESS;
        }
    } else if (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429 &&
               r.status != 401 && r.status != 403 && r.status != 404 && r.status != 421) {
        /* The hub refuses the request for what is in it: find the event. */
        if (n > 1) {
            TS_WARN("outbox", "hub answered HTTP %d to a batch of %zu; sending them one by one",
                    r.status, n);
            u->solo_left = n;
        } else {
            refusal_reason(&r, err, sizeof err);
            dead(u, rows[0].message_id, err);
            if (u->solo_left)
                u->solo_left--;
        }
        res = R_PROGRESS;
    } else {
        /* 408, 429, 5xx, and refusals that say nothing about the events
         * (401/403: our certificate; 404/421: a hub without the endpoint):
         * keep every event and try later. */
        if (!u->failing)
            TS_WARN("outbox", "hub answered HTTP %d to an upload; retrying later", r.status);
    }
out:
    if (res == R_FAIL)
        atomic_fetch_add(&p->upload_failures, 1);
    ts_http_resp_free(&r);
    ts_buf_free(&body);
    ts_outbox_rows_free(rows, got);
    return res;
}

/*
 * Waits until deadline (monotonic ms) or stop; a kick ends the wait only
 * when kickable (idle), not during a back-off.
 */
static bool wait_until(struct ts_purch *p, int64_t deadline, bool kickable)
{
    return ts_worker_sleep(&p->w, deadline - ts_now_mono_ms(),
                           kickable ? TS_WORKER_KICKABLE : TS_WORKER_NO_KICK);
}

static void upload_thread(struct ts_worker *w, void *arg)
{
    (void)w;
    struct ts_uploader *u = arg;
    struct ts_agent *a = u->a;
    struct ts_purch *p = u->p;
    int64_t deadline = 0;
    bool kickable = true;
    while (!wait_until(p, deadline, kickable)) {
        int64_t retry_after = 0;
        enum round res = run_round(u, &retry_after);
        int64_t now = ts_now_mono_ms();
        if (res == R_PROGRESS) {
            u->attempt = 0;
            u->failing = false;
            deadline = now; /* straight on to the next batch */
            kickable = true;
        } else if (res == R_IDLE) {
            u->attempt = 0;
            u->failing = false;
            deadline = now + IDLE_POLL_MS;
            kickable = true;
        } else {
            uint32_t r = 0;
            ts_random(&r, sizeof r);
            if (u->attempt < 62)
                u->attempt++;
            int64_t wait = ts_uploader_backoff_ms(u->attempt, a->cfg.outbox_backoff_ms,
                                                  a->cfg.outbox_backoff_max_ms, retry_after, r);
            if (!u->failing)
                TS_INFO("outbox", "retrying uploads with back-off (next in %lld ms)",
                        (long long)wait);
            TS_DEBUG("outbox", "upload attempt %d failed; next in %lld ms", u->attempt,
                     (long long)wait);
            u->failing = true;
            deadline = now + wait;
            kickable = false;
        }
    }
}

enum ts_err ts_uploader_start(struct ts_purch *p, char *err, size_t errsz)
{
    if (!p) {
        ts_errf(err, errsz, "the purchase journal is not open");
        return TS_ERR_CLOSED;
    }
    struct ts_uploader *u = calloc(1, sizeof *u);
    if (!u)
        return TS_ERR_NOMEM;
    u->a = p->core;
    u->p = p;
    u->max_bytes = (size_t)p->core->cfg.outbox_batch_bytes;
    if (ts_worker_start(&p->w, upload_thread, u) != TS_OK) {
        free(u);
        ts_errf(err, errsz, "cannot start the upload thread");
        return TS_ERR_NOMEM;
    }
    p->up = u;
    return TS_OK;
}

void ts_uploader_stop(struct ts_purch *p)
{
    if (!p || !p->up)
        return;
    struct ts_uploader *u = p->up;
    atomic_store(&u->cancel, 1);
    ts_worker_stop(&p->w);
    ts_httpc_free(u->hc);
    free(u);
    p->up = NULL;
}
