/*
 * The purchase journal, outbox and dead letters (see outbox.h).
 *
 * Why its own file: the card cache is disposable (a 410 resync rebuilds it,
 * an operator may delete it), purchases are not. Why synchronous=FULL in WAL
 * mode: the WAL is fsync'd at every commit, so a purchase the API answered
 * 202 for survives a power cut (https://www.sqlite.org/pragma.html#pragma_synchronous:
 * "With synchronous=FULL in WAL mode, an additional sync operation of the WAL
 * file happens after each transaction commit").
 */
#include "outbox.h"
#include "dbver.h"
#include "sqlerr.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS journal("
    "  seq INTEGER PRIMARY KEY,"
    "  message_id TEXT NOT NULL UNIQUE,"
    "  receipt TEXT NOT NULL UNIQUE,"
    "  source TEXT NOT NULL,"
    "  cid TEXT,"
    "  event TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending', 'sent', 'dead')),"
    "  reason TEXT,"
    "  done_at INTEGER);"
    /* the outbox and the dead letters are the rows of one state, in order */
    "CREATE INDEX IF NOT EXISTS journal_state ON journal(state, seq);";

enum {
    ST_ADD,
    ST_BY_RECEIPT,
    ST_PENDING,
    ST_SENT,
    ST_DEAD,
    ST_RETRY_ONE,
    ST_RETRY_ALL,
    ST_COUNTS,
    ST_OLDEST,
    ST__N
};

static const char *const stmt_sql[ST__N] = {
    [ST_ADD] = "INSERT INTO journal(message_id, receipt, source, cid, event, created) "
               "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(receipt) DO NOTHING",
    [ST_BY_RECEIPT] = "SELECT message_id, event, state FROM journal WHERE receipt = ?1",
    [ST_PENDING] = "SELECT seq, message_id, event FROM journal WHERE state = 'pending' AND "
                   "seq > ?1 ORDER BY seq LIMIT ?2",
    [ST_SENT] = "UPDATE journal SET state = 'sent', done_at = ?2 WHERE message_id = ?1 AND "
                "state = 'pending'",
    [ST_DEAD] = "UPDATE journal SET state = 'dead', reason = ?2, done_at = ?3 WHERE "
                "message_id = ?1 AND state = 'pending'",
    [ST_RETRY_ONE] = "UPDATE journal SET state = 'pending', done_at = NULL WHERE message_id = ?1 "
                     "AND state = 'dead'",
    [ST_RETRY_ALL] = "UPDATE journal SET state = 'pending', done_at = NULL WHERE state = 'dead'",
    [ST_COUNTS] = "SELECT state, count(*) FROM journal GROUP BY state",
    [ST_OLDEST] = "SELECT created FROM journal WHERE state = 'pending' ORDER BY seq LIMIT 1",
};

struct ts_outbox {
    char path[1024];
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    pthread_mutex_t mu;
};

/* A failed write is "full" when SQLite says so or when the space ran out;
 * the caller then answers 507 rather than 500. */
static enum ts_err db_err(struct ts_outbox *o, int rc, const char *what)
{
    enum ts_err e = ts_sqlite_err(o->db, rc, o->path);
    if (e == TS_ERR_FULL) {
        TS_WARN("outbox", "%s: disk full (%s)", what, sqlite3_errmsg(o->db));
        return TS_ERR_FULL;
    }
    TS_ERROR("outbox", "%s: %s (%d, errno %d)", what, sqlite3_errmsg(o->db),
             sqlite3_extended_errcode(o->db), sqlite3_system_errno(o->db));
    return e == TS_OK ? TS_ERR_DB : e;
}

/* Steps a statement that returns no rows, then resets it; the error is
 * read before the reset, which forgets the OS errno. */
static enum ts_err step_done(struct ts_outbox *o, sqlite3_stmt *s, const char *what)
{
    int src = sqlite3_step(s);
    int rc = src == SQLITE_DONE ? TS_OK : db_err(o, src, what);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

void ts_outbox_close(struct ts_outbox *o)
{
    if (!o)
        return;
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(o->st[i]);
    sqlite3_close(o->db);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

static enum ts_err open_db(const char *path, const char *vfs, int flags, struct ts_outbox **out,
                           char *err, size_t errsz)
{
    struct ts_outbox *o = calloc(1, sizeof *o);
    int rc = TS_ERR_DB;
    if (!o)
        return TS_ERR_NOMEM;
    pthread_mutex_init(&o->mu, NULL);
    ts_strlcpy(o->path, path, sizeof o->path);
    int src = sqlite3_open_v2(path, &o->db, flags | SQLITE_OPEN_FULLMUTEX, vfs);
    if (src != SQLITE_OK) {
        ts_errf(err, errsz, "%s: %s", path, o->db ? sqlite3_errmsg(o->db) : "cannot open");
        rc = src == SQLITE_CANTOPEN && !(flags & SQLITE_OPEN_CREATE) ? TS_ERR_NOTFOUND : TS_ERR_DB;
        goto fail;
    }
    /* A writer waiting for the CLI's `outbox retry` (or the reverse) waits. */
    sqlite3_busy_timeout(o->db, 5000);
    if (sqlite3_exec(o->db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                     "PRAGMA foreign_keys = OFF;",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(o->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        ts_errf(err, errsz, "%s: %s", path, sqlite3_errmsg(o->db));
        rc = db_err(o, sqlite3_errcode(o->db), "opening");
        goto fail;
    }
    /* Schema version 1 (dbver.h): refuses a file from a newer agent, stamps a
     * new one. A later version adds its steps here. */
    if (ts_db_migrate(o->db, path, 1, NULL, 0, NULL, NULL, err, errsz) != TS_OK)
        goto fail;
    for (int i = 0; i < ST__N; i++)
        if (sqlite3_prepare_v3(o->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &o->st[i],
                               NULL) != SQLITE_OK) {
            ts_errf(err, errsz, "%s: not a tillside outbox (%s)", path, sqlite3_errmsg(o->db));
            goto fail;
        }
    *out = o;
    return TS_OK;
fail:
    ts_outbox_close(o);
    return rc;
}

enum ts_err ts_outbox_open(const char *path, const char *vfs, struct ts_outbox **out, char *err,
                           size_t errsz)
{
    return open_db(path, vfs, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, out, err, errsz);
}

enum ts_err ts_outbox_open_existing(const char *path, struct ts_outbox **out, char *err,
                                    size_t errsz)
{
    if (access(path, F_OK) != 0) {
        ts_errf(err, errsz, "%s: no outbox (no purchase recorded yet)", path);
        return TS_ERR_NOTFOUND;
    }
    return open_db(path, NULL, SQLITE_OPEN_READWRITE, out, err, errsz);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

enum ts_err ts_outbox_add(struct ts_outbox *o, const struct ts_outbox_entry *e, int64_t now_ms,
                          bool *duplicate, char existing_id[TS_OUTBOX_ID_MAX])
{
    int rc = TS_OK;
    if (!e->message_id || strlen(e->message_id) >= TS_OUTBOX_ID_MAX || !e->receipt || !e->event ||
        !e->source)
        return TS_ERR_INVAL;
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *s = o->st[ST_ADD];
    bind_text(s, 1, e->message_id);
    bind_text(s, 2, e->receipt);
    bind_text(s, 3, e->source);
    bind_text(s, 4, e->cid);
    bind_text(s, 5, e->event);
    sqlite3_bind_int64(s, 6, now_ms);
    if ((rc = step_done(o, s, "recording a purchase")) != TS_OK)
        goto out;
    *duplicate = sqlite3_changes(o->db) == 0;
    if (*duplicate) {
        s = o->st[ST_BY_RECEIPT];
        bind_text(s, 1, e->receipt);
        if (sqlite3_step(s) == SQLITE_ROW)
            ts_strlcpy(existing_id, (const char *)sqlite3_column_text(s, 0), TS_OUTBOX_ID_MAX);
        else
            rc = db_err(o, sqlite3_errcode(o->db), "reading a recorded receipt");
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
out:
    pthread_mutex_unlock(&o->mu);
    return rc;
}

void ts_outbox_rows_free(struct ts_outbox_row *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++)
        free(rows[i].event);
    free(rows);
}

enum ts_err ts_outbox_pending(struct ts_outbox *o, int64_t after, size_t max_rows, size_t max_bytes,
                              struct ts_outbox_row **rows, size_t *n)
{
    int rc = TS_OK;
    size_t got = 0, bytes = 0;
    struct ts_outbox_row *r = calloc(max_rows ? max_rows : 1, sizeof *r);
    if (!r)
        return TS_ERR_NOMEM;
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *s = o->st[ST_PENDING];
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max_rows);
    int src;
    while (got < max_rows && (src = sqlite3_step(s)) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(s, 2);
        if (got > 0 && bytes + len > max_bytes)
            break;
        r[got].seq = sqlite3_column_int64(s, 0);
        ts_strlcpy(r[got].message_id, (const char *)sqlite3_column_text(s, 1),
                   sizeof r[got].message_id);
        r[got].event = malloc(len + 1);
        if (!r[got].event) {
            rc = TS_ERR_NOMEM;
            break;
        }
        memcpy(r[got].event, sqlite3_column_text(s, 2), len + 1);
        r[got].event_len = len;
        bytes += len;
        got++;
    }
    if (rc == TS_OK && got < max_rows && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = db_err(o, src, "reading the outbox");
    sqlite3_reset(s);
    pthread_mutex_unlock(&o->mu);
    if (rc != TS_OK) {
        ts_outbox_rows_free(r, got);
        return rc;
    }
    *rows = r;
    *n = got;
    return TS_OK;
}

static enum ts_err exec_locked(struct ts_outbox *o, const char *sql)
{
    int src = sqlite3_exec(o->db, sql, NULL, NULL, NULL);
    return src == SQLITE_OK ? TS_OK : db_err(o, src, sql);
}

enum ts_err ts_outbox_mark_sent(struct ts_outbox *o, const char *const *ids, size_t n,
                                int64_t now_ms)
{
    if (n == 0)
        return TS_OK;
    pthread_mutex_lock(&o->mu);
    /* A mark lost to a power cut costs one resend, which the hub answers
     * "duplicate": no fsync for it (the next purchase's FULL commit syncs
     * the WAL up to here anyway). The WAL keeps commits in order, so a cut
     * can only lose a suffix of marks, never a purchase recorded before. */
    int rc = exec_locked(o, "PRAGMA synchronous = NORMAL");
    if (rc == TS_OK)
        rc = exec_locked(o, "BEGIN IMMEDIATE");
    sqlite3_stmt *s = o->st[ST_SENT];
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        bind_text(s, 1, ids[i]);
        sqlite3_bind_int64(s, 2, now_ms);
        rc = step_done(o, s, "marking purchases sent");
    }
    if (rc == TS_OK)
        rc = exec_locked(o, "COMMIT");
    if (rc != TS_OK && !sqlite3_get_autocommit(o->db))
        sqlite3_exec(o->db, "ROLLBACK", NULL, NULL, NULL);
    /* Every other write (a purchase above all) is FULL again. */
    if (sqlite3_exec(o->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK) {
        TS_ERROR("outbox", "cannot restore synchronous=FULL: %s", sqlite3_errmsg(o->db));
        rc = TS_ERR_DB;
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

enum ts_err ts_outbox_mark_dead(struct ts_outbox *o, const char *id, const char *reason,
                                int64_t now_ms)
{
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *s = o->st[ST_DEAD];
    bind_text(s, 1, id);
    bind_text(s, 2, reason ? reason : "");
    sqlite3_bind_int64(s, 3, now_ms);
    int rc = step_done(o, s, "moving a purchase to the dead letters");
    pthread_mutex_unlock(&o->mu);
    return rc;
}

enum ts_err ts_outbox_retry(struct ts_outbox *o, const char *id, int64_t *moved)
{
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *s = o->st[id ? ST_RETRY_ONE : ST_RETRY_ALL];
    if (id)
        bind_text(s, 1, id);
    int rc = step_done(o, s, "retrying dead letters");
    int64_t n = rc == TS_OK ? sqlite3_changes(o->db) : 0;
    pthread_mutex_unlock(&o->mu);
    if (rc == TS_OK && id && n == 0)
        rc = TS_ERR_NOTFOUND;
    if (moved)
        *moved = n;
    return rc;
}

enum ts_err ts_outbox_stats(struct ts_outbox *o, struct ts_outbox_stats *st)
{
    struct ts_outbox_stats r = {0};
    int rc = TS_OK, src;
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *s = o->st[ST_COUNTS];
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(s, 0);
        int64_t v = sqlite3_column_int64(s, 1);
        if (strcmp(state, "pending") == 0)
            r.pending = v;
        else if (strcmp(state, "sent") == 0)
            r.sent = v;
        else if (strcmp(state, "dead") == 0)
            r.dead = v;
    }
    if (src != SQLITE_DONE)
        rc = db_err(o, src, "counting the outbox");
    sqlite3_reset(s);
    s = o->st[ST_OLDEST];
    if (rc == TS_OK && sqlite3_step(s) == SQLITE_ROW)
        r.oldest_pending_ms = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    pthread_mutex_unlock(&o->mu);
    if (rc == TS_OK)
        *st = r;
    return rc;
}

static const char *col(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

enum ts_err ts_outbox_list(struct ts_outbox *o, const char *state, long limit,
                           bool (*fn)(void *ud, const struct ts_outbox_item *it), void *ud)
{
    sqlite3_stmt *s = NULL;
    int rc = TS_OK, src;
    pthread_mutex_lock(&o->mu);
    src = sqlite3_prepare_v2(o->db,
                             "SELECT message_id, receipt, source, state, reason, cid, created, "
                             "coalesce(done_at, 0), event FROM journal WHERE ?1 IS NULL OR "
                             "state = ?1 ORDER BY seq LIMIT ?2",
                             -1, &s, NULL);
    if (src != SQLITE_OK) {
        rc = db_err(o, src, "listing the outbox");
        goto out;
    }
    bind_text(s, 1, state);
    sqlite3_bind_int64(s, 2, limit > 0 ? limit : -1);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        struct ts_outbox_item it = {
            .message_id = col(s, 0),
            .receipt = col(s, 1),
            .source = col(s, 2),
            .state = col(s, 3),
            .reason = col(s, 4),
            .cid = col(s, 5),
            .created_ms = sqlite3_column_int64(s, 6),
            .done_ms = sqlite3_column_int64(s, 7),
            .event = col(s, 8),
        };
        if (!fn(ud, &it)) {
            src = SQLITE_DONE;
            break;
        }
    }
    if (src != SQLITE_DONE)
        rc = db_err(o, src, "listing the outbox");
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&o->mu);
    return rc;
}

enum ts_err ts_outbox_find_receipt(struct ts_outbox *o, const char *receipt, char **event,
                                   char state[8])
{
    int rc = TS_ERR_NOTFOUND;
    pthread_mutex_lock(&o->mu);
    sqlite3_stmt *s = o->st[ST_BY_RECEIPT];
    bind_text(s, 1, receipt);
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        char *ev = strdup(col(s, 1));
        rc = ev ? TS_OK : TS_ERR_NOMEM;
        if (ev) {
            *event = ev;
            ts_strlcpy(state, col(s, 2), 8);
        }
    } else if (src != SQLITE_DONE) {
        rc = db_err(o, src, "finding a receipt");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&o->mu);
    return rc;
}
