/*
 * Forwarding accepted purchases to the CDP: a thread that reads due rows of
 * the upstream_outbox table (filled in the purchase's own transaction, so a
 * crash between storing and forwarding loses nothing), sends them as Segment
 * HTTP API batches to [upstream] url + "/v1/batch" with Basic auth, and
 * marks them sent, retries them later, or dead-letters them.
 *
 * Retry rules are the agent's (PRODUCT.md 4.5): exponential backoff with
 * full jitter and a cap, at least Retry-After, one request in flight, and a
 * failure pauses all sending until the backoff ends, so an outage costs one
 * request per backoff step, never a busy loop. A 4xx other than 408/429 is
 * permanent: Segment refuses a batch as a whole, so the batch's events are
 * then sent one by one ("solo") and only the event refused on its own goes
 * to the dead letters, with the status and answer as reason.
 */
#include "parts.h"
#include "purchases.h"
#include "../sync/httpc.h"
#include "worker.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "upstream"
#define BATCH_MAX_BYTES (475u * 1024u) /* Segment: 500 KB per request, with room */
#define BATCH_MAX_EVENTS 500 /* fewer round trips to a distant CDP; bytes bound it first */
#define BASE_BACKOFF_MS 1000
#define REQUEST_TIMEOUT_MS 15000
#define FOLLOWER_RETRY_MS 5000 /* a hub that does not forward asks again this often */
#define TS_HUB_LOCK_FORWARDER 1
#define SHARED_POLL_MS 1000

struct ts_hub_upstream {
    struct ts_hub_store *s;
    struct ts_httpc *http;
    char auth[400]; /* "Authorization: Basic ...\r\n" */
    int64_t cap_ms;
    int64_t paused_until; /* wall ms: no request before (backoff after a failure) */
    int fails;            /* consecutive failed requests */
    struct ts_worker w;   /* the forwarder thread: stop, kick, sleeps */
    atomic_int cancel;    /* cuts a request short at shutdown */
    atomic_ullong requests, forwarded, failures, dead;
    _Atomic int64_t last_success_ms;
};

int64_t ts_hub_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, int64_t retry_after_ms,
                          uint32_t r)
{
    int64_t d = ts_backoff_pick_ms(attempt > 0 ? (unsigned)attempt : 0, base_ms, cap_ms, 0, r);
    return d < retry_after_ms ? retry_after_ms : d;
}

enum ts_err ts_hub_upstream_new(struct ts_hub_store *s, const struct ts_hub_config *cfg,
                                struct ts_hub_upstream **out, char *err, size_t errsz)
{
    *out = NULL;
    struct ts_hub_upstream *u = calloc(1, sizeof *u);
    if (!u) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    u->s = s;
    u->cap_ms = (int64_t)cfg->upstream_max_backoff_s * 1000;
    if (ts_worker_init(&u->w) != TS_OK) {
        free(u);
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    /* Segment's Basic auth: the write key as user name, no password. */
    char user[sizeof cfg->upstream_write_key + 2], enc[sizeof user * 4 / 3 + 8];
    snprintf(user, sizeof user, "%s:", cfg->upstream_write_key);
    ts_base64_encode(user, strlen(user), enc, sizeof enc);
    snprintf(u->auth, sizeof u->auth, "Authorization: Basic %s\r\n", enc);
    struct ts_httpc_opts o = {
        .base_url = cfg->upstream_url,
        .ca_file = cfg->upstream_ca_file[0] ? cfg->upstream_ca_file : NULL,
        .max_body = 64 * 1024, /* the CDP's answer is a small JSON */
    };
    int rc = ts_httpc_new(&o, &u->http, err, errsz);
    if (rc != TS_OK) {
        ts_hub_upstream_free(u);
        return rc;
    }
    ts_httpc_set_cancel(u->http, &u->cancel);
    *out = u;
    return TS_OK;
}

/* The durable outbox: state pending, sent or dead. */
static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS upstream_outbox(message_id TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_at INTEGER NOT NULL, solo INTEGER NOT NULL DEFAULT 0, reason TEXT,"
    "  created INTEGER NOT NULL, done_at INTEGER) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS upstream_due ON upstream_outbox(state, next_at);";

enum ts_err ts_hub_upstream_schema(struct ts_hub_store *s)
{
    return ts_hub_db_ddl(s, schema_sql);
}

static const char *const queue_sql[] = {
    "INSERT INTO upstream_outbox(message_id, next_at, created) VALUES(?1, ?2, ?2)"
    " ON CONFLICT DO NOTHING",
};
static const struct ts_hub_stmts queue_stmts = {queue_sql, NULL, 1};

enum ts_err ts_hub_upstream_queue(struct ts_hub_store *s, const char *message_id, int64_t now_ms)
{
    struct ts_sql_stmt *st = ts_hub_db_st(s, &queue_stmts, 0);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, message_id);
    ts_sql_bind_int64(st, 2, now_ms);
    int step = ts_sql_step(st);
    ts_sql_reset(st);
    return step == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(s, "outbox insert");
}

/* One due row. */
struct row {
    char id[TS_SEG_MAX_ID + 1];
    int attempts;
    bool solo;
};

/* Due rows, oldest first, into rows (up to max); a solo row comes alone. */
static enum ts_err due_rows(struct ts_hub_upstream *u, int64_t now, struct row *rows, size_t max,
                            size_t *n, int64_t *next)
{
    struct ts_hub_store *s = u->s;
    struct ts_sql_stmt *st = NULL;
    int rc = TS_OK;
    bool leading = false;
    *n = 0;
    *next = INT64_MAX;
    struct ts_sql *db = ts_hub_db_use(s);
    /* Of several hubs on one PostgreSQL database one forwards (the others
     * would send the same rows); another takes over when it goes. */
    if (ts_sql_try_lock(db, TS_HUB_LOCK_FORWARDER, &leading) != TS_OK || !leading) {
        *next = now + FOLLOWER_RETRY_MS;
        goto out;
    }
    if (ts_sql_prepare(db,
                       "SELECT message_id, attempts, solo, next_at FROM upstream_outbox"
                       " WHERE state = 'pending' ORDER BY next_at, created, message_id"
                       " LIMIT ?1",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "outbox read");
        goto out;
    }
    ts_sql_bind_int64(st, 1, (int64_t)max);
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        int64_t at = ts_sql_column_int64(st, 3);
        if (at > now) {
            *next = at;
            break;
        }
        bool solo = ts_sql_column_int64(st, 2) != 0;
        if (solo && *n > 0)
            break;
        struct row *r = &rows[(*n)++];
        ts_strlcpy(r->id, ts_sql_column_text(st, 0), sizeof r->id);
        r->attempts = (int)ts_sql_column_int64(st, 1);
        r->solo = solo;
        if (solo)
            break;
    }
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        rc = ts_hub_db_err(db, "outbox read");
    else if (*n == max || (*n > 0 && step == TS_SQL_ROW))
        *next = now; /* more are due at once */
    /* Other hubs on a shared database queue rows without waking us. */
    if (ts_hub_db_shared(s) && *next > now + SHARED_POLL_MS)
        *next = now + SHARED_POLL_MS;
out:
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    return rc;
}

/* The request body for rows: their events, each with the customer's CDP
 * userId when the hub knows the customer now, and sentAt. Rows whose event
 * no longer fits are left for the next request (*used says how many went). */
static enum ts_err build_body(struct ts_hub_upstream *u, const struct row *rows, size_t n,
                              int64_t now, ts_buf *body, size_t *used)
{
    struct ts_hub_store *s = u->s;
    struct ts_sql_stmt *st = NULL;
    char sent[40];
    int rc = TS_OK;
    *used = 0;
    ts_iso8601(now, sent, sizeof sent);
    ts_buf_reset(body);
    ts_buf_puts(body, "{\"batch\":[");
    struct ts_sql *db = ts_hub_db_use(s);
    if (ts_sql_prepare(db,
                       "SELECT p.event, c.id FROM purchases p LEFT JOIN customers c"
                       " ON c.id = p.customer WHERE p.message_id = ?1",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "outbox event");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ts_sql_reset(st);
        ts_sql_bind_text(st, 1, rows[i].id);
        json_t *e = NULL;
        if (ts_sql_step(st) == TS_SQL_ROW)
            e = json_loads(ts_sql_column_text(st, 0), 0, NULL);
        if (!e) {
            rc = TS_ERR_DB; /* the purchase row is gone: cannot happen short of corruption */
            TS_ERROR(COMP, "purchase %s has no stored event", rows[i].id);
            goto out;
        }
        if (ts_sql_column_text(st, 1))
            json_object_set_new(e, "userId", json_string(ts_sql_column_text(st, 1)));
        json_object_set_new(e, "sentAt", json_string(sent));
        char *t = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(e);
        if (!t) {
            rc = TS_ERR_NOMEM;
            goto out;
        }
        size_t tl = strlen(t);
        if (i > 0 && body->len + tl + 64 > BATCH_MAX_BYTES) {
            free(t);
            break;
        }
        rc = ts_buf_printf(body, "%s%s", i ? "," : "", t);
        free(t);
        if (rc != TS_OK)
            goto out;
        (*used)++;
    }
    rc = ts_buf_printf(body, "],\"sentAt\":\"%s\"}", sent);
out:
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    return rc;
}

enum outcome { SENT, RETRY, SPLIT, DEAD };

/* Marks rows[0..n) with the outcome in one transaction. */
static enum ts_err mark(struct ts_hub_upstream *u, const struct row *rows, size_t n,
                        enum outcome oc, int64_t now, int64_t next_at, const char *reason)
{
    static const char *const sql[] = {
        [SENT] = "UPDATE upstream_outbox SET state = 'sent', done_at = ?2, reason = NULL,"
                 " attempts = attempts + 1 WHERE message_id = ?1",
        [RETRY] = "UPDATE upstream_outbox SET attempts = attempts + 1, next_at = ?3,"
                  " reason = ?4 WHERE message_id = ?1",
        [SPLIT] = "UPDATE upstream_outbox SET solo = 1, reason = ?4 WHERE message_id = ?1",
        [DEAD] = "UPDATE upstream_outbox SET state = 'dead', done_at = ?2, reason = ?4,"
                 " attempts = attempts + 1 WHERE message_id = ?1",
    };
    struct ts_hub_store *s = u->s;
    struct ts_sql_stmt *st = NULL;
    int rc = TS_OK;
    if ((rc = ts_hub_db_write_begin(s, 0)))
        return rc;
    if (ts_sql_prepare(ts_hub_db_writer(s), sql[oc], &st) != TS_OK) {
        rc = ts_hub_db_werr(s, "outbox mark");
        goto out;
    }
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        ts_sql_reset(st);
        ts_sql_bind_text(st, 1, rows[i].id);
        ts_sql_bind_int64(st, 2, now);
        ts_sql_bind_int64(st, 3, next_at);
        ts_sql_bind_text(st, 4, reason);
        if (ts_sql_step(st) != TS_SQL_DONE)
            rc = ts_hub_db_werr(s, "outbox mark");
    }
out:
    ts_sql_finalize(st);
    return ts_hub_db_write_end(s, rc, false);
}

/* "HTTP 400: <answer>" with the answer cut short and kept printable. */
static void reason_of(const struct ts_http_resp *r, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "HTTP %d: ", r->status);
    size_t o = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; r->body.data && i < r->body.len && o + 1 < outsz && i < 200; i++) {
        char c = r->body.data[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? c : ' ';
    }
    out[o < outsz ? o : outsz - 1] = '\0';
}

/* Sends one request for the due rows; *next_ms = when to look again. */
static enum ts_err send_some(struct ts_hub_upstream *u, int64_t now, int64_t *next_ms)
{
    size_t n, used;
    ts_buf body = {0};
    struct row *rows = malloc(BATCH_MAX_EVENTS * sizeof *rows);
    if (!rows)
        return TS_ERR_NOMEM;
    int rc = due_rows(u, now, rows, BATCH_MAX_EVENTS, &n, next_ms);
    if (rc == TS_OK && n > 0)
        rc = build_body(u, rows, n, now, &body, &used);
    if (rc != TS_OK || n == 0) {
        ts_buf_free(&body);
        free(rows);
        return rc;
    }
    if (used < n)
        *next_ms = now;
    n = used;
    struct ts_http_resp resp = {0};
    atomic_fetch_add(&u->requests, 1);
    rc = ts_httpc_request(u->http, "POST", "/v1/batch", u->auth, "application/json", body.data,
                          body.len, REQUEST_TIMEOUT_MS, &resp);
    ts_buf_free(&body);
    char reason[300];
    enum outcome oc;
    int64_t retry_after = -1;
    if (rc != TS_OK) {
        snprintf(reason, sizeof reason, "%s", ts_httpc_error(u->http));
        ts_httpc_disconnect(u->http);
        oc = RETRY;
    } else {
        reason_of(&resp, reason, sizeof reason);
        retry_after = resp.retry_after_s >= 0 ? (int64_t)resp.retry_after_s * 1000 : -1;
        if (resp.status >= 200 && resp.status < 300)
            oc = SENT;
        else if (resp.status == 408 || resp.status == 429 || resp.status >= 500 ||
                 resp.status < 200)
            oc = RETRY;
        else
            oc = n > 1 ? SPLIT : DEAD;
    }
    ts_http_resp_free(&resp);
    int64_t next_at = now;
    if (oc == RETRY) {
        uint32_t r = 0;
        ts_random(&r, sizeof r);
        /* The pause grows with consecutive failures of the link, not with
         * one row's attempts: a new purchase during an outage waits too. */
        int64_t d = ts_hub_backoff_ms(u->fails, BASE_BACKOFF_MS, u->cap_ms, retry_after, r);
        if (d < 100)
            d = 100; /* never a tight loop, whatever the jitter drew */
        u->fails++;
        next_at = now + d;
        u->paused_until = next_at;
        atomic_fetch_add(&u->failures, 1);
        TS_WARN(COMP, "%zu purchase(s) not forwarded (%s); next try in %lld ms", n, reason,
                (long long)d);
        *next_ms = next_at;
    } else {
        u->fails = 0;
        u->paused_until = 0;
        if (oc == SENT) {
            atomic_fetch_add(&u->forwarded, n);
            atomic_store(&u->last_success_ms, now);
            TS_INFO(COMP, "forwarded %zu purchase(s)", n);
        } else if (oc == SPLIT) {
            TS_WARN(COMP, "batch of %zu refused (%s): sending them one by one", n, reason);
        } else {
            atomic_fetch_add(&u->dead, n);
            TS_ERROR(COMP, "purchase %s refused for good, dead-lettered: %s", rows[0].id, reason);
        }
        *next_ms = now; /* look again at once: more may be due */
    }
    rc = mark(u, rows, n, oc, now, next_at, oc == SENT ? NULL : reason);
    free(rows);
    return rc;
}

enum ts_err ts_hub_upstream_run_once(struct ts_hub_upstream *u, int64_t now_ms, int64_t *next_ms)
{
    *next_ms = INT64_MAX;
    if (u->paused_until > now_ms) {
        *next_ms = u->paused_until;
        return TS_OK;
    }
    for (;;) {
        int64_t next;
        int rc = send_some(u, now_ms, &next);
        if (rc != TS_OK || next > now_ms) {
            *next_ms = rc != TS_OK ? now_ms + BASE_BACKOFF_MS : next;
            return rc;
        }
        if (u->paused_until > now_ms) {
            *next_ms = u->paused_until;
            return TS_OK;
        }
        now_ms = ts_now_wall_ms() > now_ms ? ts_now_wall_ms() : now_ms;
        if (ts_worker_stopping(&u->w))
            return TS_OK;
    }
}

static void run(struct ts_worker *w, void *arg)
{
    struct ts_hub_upstream *u = arg;
    for (;;) {
        int64_t now = ts_now_wall_ms(), next;
        ts_hub_upstream_run_once(u, now, &next);
        pthread_mutex_lock(&w->mu);
        /* Kicks while paused wait for the pause to end. */
        if (w->kicked && u->paused_until <= ts_now_wall_ms())
            next = now;
        w->kicked = false;
        int64_t wait = next == INT64_MAX ? 60000 : next - ts_now_wall_ms();
        bool stop = ts_worker_sleep_locked(w, wait > 60000 ? 60000 : wait, TS_WORKER_KICKABLE);
        pthread_mutex_unlock(&w->mu);
        if (stop)
            return;
    }
}

enum ts_err ts_hub_upstream_start(struct ts_hub_upstream *u)
{
    /* A restart is often the fix for what made the CDP refuse (a key, a
     * URL): what waits for a backoff from before goes now. */
    struct ts_hub_store *s = u->s;
    struct ts_sql *db = ts_hub_db_use(s);
    struct ts_sql_stmt *st = NULL;
    if (ts_sql_prepare(db,
                       "UPDATE upstream_outbox SET next_at = ?1 WHERE state = 'pending'"
                       " AND next_at > ?1",
                       &st) != TS_OK ||
        ts_sql_bind_int64(st, 1, ts_now_wall_ms()) != TS_OK || ts_sql_step(st) != TS_SQL_DONE)
        ts_hub_db_err(db, "outbox reset"); /* logged; the rows still go when due */
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    return ts_worker_start(&u->w, run, u);
}

void ts_hub_upstream_kick(struct ts_hub_upstream *u)
{
    if (!u)
        return;
    ts_worker_kick(&u->w);
}

void ts_hub_upstream_free(struct ts_hub_upstream *u)
{
    if (!u)
        return;
    ts_worker_request_stop(&u->w);
    atomic_store(&u->cancel, 1);
    ts_worker_stop(&u->w); /* joins a started thread */
    ts_httpc_free(u->http);
    ts_worker_destroy(&u->w);
    free(u);
}

void ts_hub_upstream_metrics(const struct ts_hub_upstream *u, struct ts_hub_upstream_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (!u)
        return;
    m->requests = atomic_load(&u->requests);
    m->forwarded = atomic_load(&u->forwarded);
    m->failures = atomic_load(&u->failures);
    m->dead = atomic_load(&u->dead);
    m->last_success_ms = atomic_load(&u->last_success_ms);
}
