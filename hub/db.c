/*
 * The hub's storage core: the store handle and its connections, the write
 * transaction, the read side, cached statements, schema set-up and versions,
 * and the change notices long-polls wait for (db.h).
 *
 * Writes are serialized on the one writer connection (and, through BEGIN
 * IMMEDIATE, across processes sharing a PostgreSQL database), so a reader
 * never sees feed seq N+1 committed before seq N.
 */
#include "db.h"
#include "dbver.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Feature statement tables a store may cache (ingest, rebuild, suggest,
 * purchases, feed...). */
#define MAX_TABLES 32 /* statement tables (one per feature file: 11 now) */

struct cached {
    const struct ts_hub_stmts *t;
    struct ts_sql_stmt **st;
};

struct ts_hub_store {
    struct ts_sql *db;  /* the writer */
    pthread_mutex_t mu; /* one user of db at a time */
    unsigned txn_flags; /* of the open write transaction */
    /* Long-poll: gen counts committed changes (ingest, erase, re-key);
     * waiters sleep on changed until it moves or closing is set. */
    pthread_mutex_t wmu;
    pthread_cond_t changed;
    uint64_t gen;
    bool closing;
    /* A second, read-only connection for feed pages, lookups and stats, so
     * a terminal's live lookup (300 ms budget) never waits behind a large
     * batch: WAL gives it the last committed snapshot. NULL for in-memory
     * databases, where readers share db and mu. */
    struct ts_sql *rdb;
    pthread_mutex_t rmu;
    /* PostgreSQL: a third connection listening for other processes'
     * commits (NOTIFY tillside_feed); its thread wakes our waiters. */
    struct ts_sql *ldb;
    pthread_t listener;
    bool listener_started;
    int wake[2];               /* the pipe that ends the listener */
    _Atomic bool listening;    /* notices arrive: waiters need not look each second */
    _Atomic bool watching;     /* SQLite: watch_run looks for other processes' commits */
    _Atomic uint64_t rechecks; /* listen_run's looks without a notice */
    int64_t watch_start;       /* its first data_version */
    /* ts_hub_store_on_change: called after every change notice (parked
     * long-polls are woken with it); set before serving, read after */
    void (*on_change[4])(void *);
    void *on_change_ud[4];
    int non_change;
    struct ts_hub_feedwatch *fw; /* feed_watch.c, freed with fw_free */
    void (*fw_free)(struct ts_hub_feedwatch *);
    struct ts_tenant_key key;
    struct ts_tenant_key prev; /* second key version (rotation); len 0 = none */
    uint32_t epoch;
    bool bulk; /* ts_hub_store_set_bulk */
    struct cached cache[MAX_TABLES];
    size_t ncache;
};

#define FEED_CHANNEL "tillside_feed"

/* ---- errors ----------------------------------------------------------------*/

enum ts_err ts_hub_db_err(struct ts_sql *db, const char *what)
{
    enum ts_err code = ts_sql_err(db);
    TS_ERROR("hub", "store: %s: %s", what, ts_sql_errmsg(db));
    return code == TS_ERR_FULL ? TS_ERR_FULL : TS_ERR_DB;
}

enum ts_err ts_hub_db_werr(struct ts_hub_store *s, const char *what)
{
    return ts_hub_db_err(s->db, what);
}

enum ts_err ts_hub_db_exec(struct ts_sql *db, const char *sql)
{
    return ts_sql_exec(db, sql) == TS_OK ? TS_OK : ts_hub_db_err(db, sql);
}

/* ---- writing ---------------------------------------------------------------*/

struct ts_sql *ts_hub_db_use(struct ts_hub_store *s)
{
    pthread_mutex_lock(&s->mu);
    return s->db;
}

void ts_hub_db_release(struct ts_hub_store *s)
{
    pthread_mutex_unlock(&s->mu);
}

struct ts_sql *ts_hub_db_writer(struct ts_hub_store *s)
{
    return s->db;
}

/* What a transaction's flags ask of the connection, and undoing it. */
static void txn_pragmas(struct ts_hub_store *s, unsigned flags, bool on)
{
    /* The durable commit: FULL for this transaction only (CDP batches,
     * which the CDP can replay, stay at NORMAL). Secure: overwrite what is
     * deleted (this connection only; other batches are not slowed). */
    if (flags & TS_HUB_TXN_DURABLE)
        ts_sql_exec(s->db, on ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    if (flags & TS_HUB_TXN_SECURE)
        ts_sql_exec(s->db, on ? "PRAGMA secure_delete = ON" : "PRAGMA secure_delete = OFF");
}

enum ts_err ts_hub_db_write_begin(struct ts_hub_store *s, unsigned flags)
{
    pthread_mutex_lock(&s->mu);
    txn_pragmas(s, flags, true);
    if (ts_sql_exec(s->db, "BEGIN IMMEDIATE") != TS_OK) {
        enum ts_err rc = ts_hub_db_err(s->db, "begin");
        txn_pragmas(s, flags, false);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    s->txn_flags = flags;
    return TS_OK;
}

/* Ends the transaction's settings and releases the writer. */
static void write_end(struct ts_hub_store *s, bool ok)
{
    /* A secure erasure leaves no copy of the deleted rows in the WAL. */
    if (ok && (s->txn_flags & TS_HUB_TXN_SECURE) && ts_sql_sqlite(s->db))
        sqlite3_wal_checkpoint_v2(ts_sql_sqlite(s->db), NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                  NULL);
    txn_pragmas(s, s->txn_flags, false);
    s->txn_flags = 0;
    pthread_mutex_unlock(&s->mu);
}

enum ts_err ts_hub_db_write_commit(struct ts_hub_store *s, bool changed)
{
    enum ts_err rc = ts_hub_db_exec(s->db, "COMMIT");
    if (rc != TS_OK)
        ts_sql_exec(s->db, "ROLLBACK");
    write_end(s, rc == TS_OK);
    if (rc == TS_OK && changed)
        ts_hub_db_notify(s);
    return rc;
}

void ts_hub_db_write_rollback(struct ts_hub_store *s)
{
    ts_sql_exec(s->db, "ROLLBACK");
    write_end(s, false);
}

enum ts_err ts_hub_db_write_end(struct ts_hub_store *s, enum ts_err rc, bool changed)
{
    if (rc == TS_OK)
        return ts_hub_db_write_commit(s, changed);
    ts_hub_db_write_rollback(s);
    return rc;
}

struct ts_sql_stmt *ts_hub_db_st(struct ts_hub_store *s, const struct ts_hub_stmts *t, size_t id)
{
    struct cached *c = NULL;
    for (size_t i = 0; i < s->ncache && !c; i++)
        if (s->cache[i].t == t)
            c = &s->cache[i];
    if (!c) {
        struct ts_sql_stmt **st = s->ncache < MAX_TABLES ? calloc(t->n, sizeof *st) : NULL;
        if (!st) {
            TS_ERROR("hub", "store: no room for another statement table");
            return NULL;
        }
        c = &s->cache[s->ncache++];
        c->t = t;
        c->st = st;
    }
    if (c->st[id]) {
        ts_sql_reset(c->st[id]);
        ts_sql_clear_bindings(c->st[id]);
        return c->st[id];
    }
    const char *sql = ts_sql_is_pg(s->db) && t->pg && t->pg[id] ? t->pg[id] : t->sql[id];
    if (ts_sql_prepare(s->db, sql, &c->st[id]) != TS_OK) {
        ts_hub_db_err(s->db, sql);
        c->st[id] = NULL;
    }
    return c->st[id];
}

/* ---- meta ------------------------------------------------------------------*/

int64_t ts_hub_db_meta(struct ts_sql *db, const char *k)
{
    struct ts_sql_stmt *st = NULL;
    int64_t v = 0;
    if (ts_sql_prepare(db, "SELECT v FROM meta WHERE k = ?1", &st) == TS_OK &&
        ts_sql_bind_text(st, 1, k) == TS_OK && ts_sql_step(st) == TS_SQL_ROW)
        v = ts_sql_column_int64(st, 0);
    ts_sql_finalize(st);
    return v;
}

bool ts_hub_db_meta_has(struct ts_sql *db, const char *k)
{
    struct ts_sql_stmt *st = NULL;
    bool has = ts_sql_prepare(db, "SELECT 1 FROM meta WHERE k = ?1", &st) == TS_OK &&
               ts_sql_bind_text(st, 1, k) == TS_OK && ts_sql_step(st) == TS_SQL_ROW;
    ts_sql_finalize(st);
    return has;
}

enum ts_err ts_hub_db_meta_set(struct ts_hub_store *s, const char *k, int64_t v)
{
    struct ts_sql_stmt *st = NULL;
    enum ts_err rc = TS_OK;
    if (ts_sql_prepare(s->db,
                       "INSERT INTO meta(k, v) VALUES(?1, ?2)"
                       " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                       &st) != TS_OK ||
        ts_sql_bind_text(st, 1, k) != TS_OK || ts_sql_bind_int64(st, 2, v) != TS_OK ||
        ts_sql_step(st) != TS_SQL_DONE)
        rc = ts_hub_db_err(s->db, "meta");
    ts_sql_finalize(st);
    return rc;
}

enum ts_err ts_hub_db_next_seq(struct ts_hub_store *s, int64_t *seq)
{
    static const char *const sql[] = {"UPDATE meta SET v = v + 1 WHERE k = 'seq' RETURNING v"};
    static const struct ts_hub_stmts stmts = {sql, NULL, 1};
    struct ts_sql_stmt *st = ts_hub_db_st(s, &stmts, 0);
    if (!st || ts_sql_step(st) != TS_SQL_ROW)
        return ts_hub_db_err(s->db, "next seq");
    *seq = ts_sql_column_int64(st, 0);
    ts_sql_reset(st);
    /* hubs sharing the database wake their long-polls when this commits */
    ts_sql_notify_on_commit(s->db, FEED_CHANNEL);
    return TS_OK;
}

/* ---- reading ---------------------------------------------------------------*/

struct ts_sql *ts_hub_db_read_begin(struct ts_hub_store *s, bool snapshot)
{
    pthread_mutex_lock(s->rdb ? &s->rmu : &s->mu);
    struct ts_sql *db = s->rdb ? s->rdb : s->db;
    /* A failed BEGIN only costs the one snapshot; the reads still run. */
    if (snapshot && ts_sql_exec(db, "BEGIN") != TS_OK)
        TS_WARN("hub", "store: read snapshot: %s", ts_sql_errmsg(db));
    return db;
}

void ts_hub_db_read_end(struct ts_hub_store *s, bool snapshot)
{
    if (snapshot)
        ts_sql_exec(s->rdb ? s->rdb : s->db, "COMMIT");
    pthread_mutex_unlock(s->rdb ? &s->rmu : &s->mu);
}

/* ---- schema ----------------------------------------------------------------*/

enum ts_err ts_hub_db_ddl(struct ts_hub_store *s, const char *ddl)
{
    return ts_sql_exec_ddl(s->db, ddl) == TS_OK ? TS_OK : ts_hub_db_err(s->db, "schema");
}

enum ts_err ts_hub_db_add_column(struct ts_hub_store *s, const char *table, const char *column,
                                 const char *decl, const char *fill)
{
    char sql[512];
    bool pg = ts_sql_is_pg(s->db);
    snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s%s", table, pg ? "IF NOT EXISTS " : "",
             decl);
    if (pg)
        return ts_hub_db_ddl(s, sql);
    int h = ts_sql_has_column(s->db, table, column);
    if (h < 0)
        return ts_hub_db_err(s->db, "schema");
    if (h > 0)
        return TS_OK;
    enum ts_err rc = ts_hub_db_exec(s->db, sql);
    return rc == TS_OK && fill ? ts_hub_db_exec(s->db, fill) : rc;
}

/* The core's own table: the schema version, the feed's sequence and epoch. */
static const char *const meta_sql =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
    "INSERT INTO meta(k, v) VALUES('schema', 1), ('seq', 0) ON CONFLICT DO NOTHING;";

/* SQLite's two-argument min() and max(), which the statements use. */
static const char *const pg_functions_sql =
    "CREATE OR REPLACE FUNCTION min(bigint, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT LEAST($1, $2)';"
    "CREATE OR REPLACE FUNCTION max(bigint, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT GREATEST($1, $2)';";

/*
 * Schema versions (PRAGMA user_version, dbver.h): 0/1 = the first release
 * (06a07ff, meta 'schema' = 1), 2 = tombstone ages, key rotation columns,
 * order status times, bought, purchases and the upstream outbox (the parts'
 * ts_hub_db_add_column calls add those to an older file).
 */
#define TS_HUB_SCHEMA_VERSION 2
static const struct ts_db_step schema_steps[] = {
    {2, "UPDATE meta SET v = 2 WHERE k = 'schema'", NULL},
};

/* The schema version of a PostgreSQL database, kept in meta 'schema' (an
 * SQLite file keeps it in user_version, dbver.h): a database from a newer
 * hub is refused, an older one is brought up to this one. */
static enum ts_err pg_version(struct ts_hub_store *s, const char *shown, char *err, size_t errsz)
{
    int64_t v = ts_hub_db_meta(s->db, "schema");
    if (v > TS_HUB_SCHEMA_VERSION) {
        snprintf(err, errsz,
                 "%s: schema version %lld is newer than this tillside-hub knows (%d): "
                 "upgrade the hub, do not downgrade it",
                 shown, (long long)v, TS_HUB_SCHEMA_VERSION);
        return TS_ERR_DB;
    }
    return ts_hub_db_meta_set(s, "schema", TS_HUB_SCHEMA_VERSION);
}

/* Creates or upgrades the schema in one write transaction; two hub
 * processes starting together on one PostgreSQL take turns. */
static enum ts_err setup_schema(struct ts_hub_store *s, const char *path,
                                const struct ts_hub_db_part *parts, size_t nparts, char *err,
                                size_t errsz)
{
    bool pg = ts_sql_is_pg(s->db);
    uint32_t epoch = 0;
    char verr[512] = "";
    ts_random(&epoch, sizeof epoch);
    /* The idempotent part (CREATE IF NOT EXISTS, missing columns) runs on
     * every open; versioned steps (dbver.h) for what cannot be idempotent.
     * A database from a newer hub is refused before anything is written.
     * WAL lets `tillside-hub stats` and later readers run beside the hub;
     * NORMAL sync is enough for CDP events, which the CDP can replay. */
    enum ts_err rc = ts_hub_db_exec(s->db, "PRAGMA journal_mode=WAL");
    if (rc == TS_OK)
        rc = ts_hub_db_exec(s->db, "PRAGMA synchronous=NORMAL");
    if (rc == TS_OK)
        rc = ts_hub_db_exec(s->db, "BEGIN IMMEDIATE");
    if (rc == TS_OK)
        rc = pg ? ts_hub_db_exec(s->db, pg_functions_sql)
                : ts_db_version_check(ts_sql_sqlite(s->db), path, TS_HUB_SCHEMA_VERSION, verr,
                                      sizeof verr);
    if (rc == TS_OK)
        rc = ts_hub_db_ddl(s, meta_sql);
    for (size_t i = 0; rc == TS_OK && i < nparts; i++)
        rc = parts[i].setup(s);
    if (rc == TS_OK)
        rc = pg ? pg_version(s, path, verr, sizeof verr)
                : ts_db_migrate(ts_sql_sqlite(s->db), path, TS_HUB_SCHEMA_VERSION, schema_steps,
                                sizeof schema_steps / sizeof schema_steps[0], s, NULL, verr,
                                sizeof verr);
    /* the feed's epoch: random, once per database */
    if (rc == TS_OK && !ts_hub_db_meta_has(s->db, "epoch"))
        rc = ts_hub_db_meta_set(s, "epoch", epoch);
    if (rc == TS_OK)
        rc = ts_hub_db_exec(s->db, "COMMIT");
    if (rc != TS_OK) {
        if (verr[0])
            snprintf(err, errsz, "%s", verr);
        else
            snprintf(err, errsz, "%s: cannot set up the schema: %s", path, ts_sql_errmsg(s->db));
        ts_sql_exec(s->db, "ROLLBACK");
        return TS_ERR_DB;
    }
    return TS_OK;
}

/* ---- key rotation ------------------------------------------------------------*/

/*
 * SQL function ts_ident_key(which, kind, value): the identifier's key under
 * the current (which = 0) or the second (1) tenant key; NULL when there is no
 * second key. Lets a rotation re-key the identifiers table in one UPDATE.
 */
static void sql_ident_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    struct ts_hub_store *s = sqlite3_user_data(ctx);
    const struct ts_tenant_key *k = sqlite3_value_int(argv[0]) ? &s->prev : &s->key;
    const char *kind_s = (const char *)sqlite3_value_text(argv[1]);
    const char *value = (const char *)sqlite3_value_text(argv[2]);
    enum ts_ident_kind kind;
    char hex[TS_IDENT_KEY_HEX];
    (void)argc;
    if (!k->len || !kind_s || !value || ts_ident_kind_parse(kind_s, &kind) != TS_OK ||
        ts_ident_key(k, kind, value, hex) != TS_OK) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_text(ctx, hex, -1, SQLITE_TRANSIENT);
}

/* What sql_ident_key does in one UPDATE on SQLite, on PostgreSQL: a cursor
 * over the identifiers as they were (the updates do not move it), each row
 * re-keyed from C. */
static enum ts_err rekey_identifiers_pg(struct ts_hub_store *s)
{
    struct ts_sql_stmt *fetch = NULL, *upd = NULL;
    enum ts_err rc =
        ts_hub_db_exec(s->db, "DECLARE rekey CURSOR FOR SELECT key, kind, value FROM identifiers");
    if (rc == TS_OK &&
        (ts_sql_prepare(s->db, "FETCH 1000 FROM rekey", &fetch) != TS_OK ||
         ts_sql_prepare(s->db, "UPDATE identifiers SET key = ?2, prev_key = ?3 WHERE key = ?1",
                        &upd) != TS_OK))
        rc = ts_hub_db_err(s->db, "re-key");
    for (bool more = true; rc == TS_OK && more;) {
        ts_sql_reset(fetch);
        int step = TS_SQL_DONE;
        more = false;
        while (rc == TS_OK && (step = ts_sql_step(fetch)) == TS_SQL_ROW) {
            const char *kind_s = ts_sql_column_text(fetch, 1);
            const char *value = ts_sql_column_text(fetch, 2);
            char hex[TS_IDENT_KEY_HEX], prev[TS_IDENT_KEY_HEX];
            enum ts_ident_kind kind;
            more = true;
            if (!kind_s || !value || ts_ident_kind_parse(kind_s, &kind) != TS_OK ||
                ts_ident_key(&s->key, kind, value, hex) != TS_OK)
                continue; /* not ours to re-key; SQLite's function leaves it too */
            bool has_prev = s->prev.len && ts_ident_key(&s->prev, kind, value, prev) == TS_OK;
            ts_sql_reset(upd);
            ts_sql_bind_text(upd, 1, ts_sql_column_text(fetch, 0));
            ts_sql_bind_text(upd, 2, hex);
            ts_sql_bind_text(upd, 3, has_prev ? prev : NULL);
            if (ts_sql_step(upd) != TS_SQL_DONE)
                rc = ts_hub_db_err(s->db, "re-key");
        }
        if (rc == TS_OK && step != TS_SQL_DONE && step != TS_SQL_ROW)
            rc = ts_hub_db_err(s->db, "re-key");
    }
    ts_sql_finalize(fetch);
    ts_sql_finalize(upd);
    if (rc == TS_OK)
        rc = ts_hub_db_exec(s->db, "CLOSE rekey");
    return rc;
}

enum ts_err ts_hub_db_rekey_identifiers(struct ts_hub_store *s)
{
    if (ts_sql_is_pg(s->db))
        return rekey_identifiers_pg(s);
    return ts_hub_db_exec(s->db, "UPDATE identifiers SET key = ts_ident_key(0, kind, value),"
                                 " prev_key = ts_ident_key(1, kind, value)");
}

const struct ts_tenant_key *ts_hub_db_key(const struct ts_hub_store *s)
{
    return &s->key;
}

const struct ts_tenant_key *ts_hub_db_prev(const struct ts_hub_store *s)
{
    return s->prev.len ? &s->prev : NULL;
}

void ts_hub_db_set_prev(struct ts_hub_store *s, const struct ts_tenant_key *prev)
{
    memset(&s->prev, 0, sizeof s->prev);
    if (prev && prev->len)
        s->prev = *prev;
}

bool ts_hub_db_bulk(const struct ts_hub_store *s)
{
    return s->bulk;
}

bool ts_hub_db_shared(const struct ts_hub_store *s)
{
    return ts_sql_is_pg(s->db);
}

void ts_hub_store_set_bulk(struct ts_hub_store *s, bool bulk)
{
    s->bulk = bulk;
}

uint32_t ts_hub_store_epoch(const struct ts_hub_store *s)
{
    return s->epoch;
}

int ts_hub_store_prev_kv(const struct ts_hub_store *s)
{
    return s->prev.len ? s->prev.version : 0;
}

/* ---- change notices ---------------------------------------------------------*/

void ts_hub_db_notify(struct ts_hub_store *s)
{
    void (*fn[4])(void *);
    void *ud[4];
    pthread_mutex_lock(&s->wmu);
    s->gen++;
    pthread_cond_broadcast(&s->changed);
    int n = s->non_change;
    memcpy(fn, s->on_change, sizeof fn);
    memcpy(ud, s->on_change_ud, sizeof ud);
    pthread_mutex_unlock(&s->wmu);
    for (int i = 0; i < n; i++)
        fn[i](ud[i]);
}

enum ts_err ts_hub_store_on_change(struct ts_hub_store *s, void (*fn)(void *), void *ud)
{
    enum ts_err rc = TS_OK;
    pthread_mutex_lock(&s->wmu);
    if (!fn)
        s->non_change = 0;
    else if (s->non_change >= (int)(sizeof s->on_change / sizeof *s->on_change))
        rc = TS_ERR_FULL;
    else {
        s->on_change_ud[s->non_change] = ud;
        s->on_change[s->non_change++] = fn;
    }
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

struct ts_hub_feedwatch *ts_hub_db_feedwatch(struct ts_hub_store *s)
{
    return s->fw;
}

void ts_hub_db_set_feedwatch(struct ts_hub_store *s, struct ts_hub_feedwatch *fw,
                             void (*free_fn)(struct ts_hub_feedwatch *))
{
    s->fw = fw;
    s->fw_free = free_fn;
}

bool ts_hub_store_closing(struct ts_hub_store *s)
{
    bool closing;
    (void)ts_hub_db_changes(s, &closing);
    return closing;
}

void ts_hub_store_shutdown(struct ts_hub_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->wmu);
    s->closing = true;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->wmu);
}

uint64_t ts_hub_db_changes(struct ts_hub_store *s, bool *closing)
{
    pthread_mutex_lock(&s->wmu);
    uint64_t gen = s->gen;
    *closing = s->closing;
    pthread_mutex_unlock(&s->wmu);
    return gen;
}

/* Changes committed by another process (`tillside-hub erase`, `import`, a
 * second hub) signal nobody here on SQLite: waiters look again this often.
 * On PostgreSQL the listener thread wakes them, and looks (listen_run) in
 * case a notice was lost. */
#define WAIT_SLICE_MS 1000
#define WAIT_SLICE_LISTENING_MS 10000

int ts_hub_store_recheck_ms(struct ts_hub_store *s, bool watched)
{
    if (atomic_load(&s->watching))
        return 0; /* watch_run signals other processes' commits */
    if (watched && s->listener_started)
        return 0; /* listen_run's looks wake its store (feed_watch.c) */
    return atomic_load(&s->listening) ? WAIT_SLICE_LISTENING_MS : WAIT_SLICE_MS;
}

uint64_t ts_hub_db_rechecks(struct ts_hub_store *s)
{
    return atomic_load(&s->rechecks);
}

void ts_hub_db_wait_change(struct ts_hub_store *s, uint64_t seen, int64_t max_ms)
{
    int64_t slice = atomic_load(&s->listening) ? WAIT_SLICE_LISTENING_MS : WAIT_SLICE_MS;
    int64_t left = max_ms < slice ? max_ms : slice;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->wmu);
    while (s->gen == seen && !s->closing &&
           pthread_cond_timedwait(&s->changed, &s->wmu, &ts) == 0) {
    }
    pthread_mutex_unlock(&s->wmu);
}

/* The listener thread: a notice, a reconnect and every slice without one
 * (10 s; 1 s while it cannot listen) is a look (feed_watch.c: one query for
 * the process, the stores whose seq moved woken), not one per parked poll. */
static void *listen_run(void *arg)
{
    struct ts_hub_store *s = arg;
    int64_t next = ts_now_mono_ms() + WAIT_SLICE_LISTENING_MS;
    for (;;) {
        int64_t left = next - ts_now_mono_ms();
        int r = ts_sql_wait_notice(s->ldb, s->wake[0], (int)(left < 0 ? 0 : left));
        struct pollfd p = {.fd = s->wake[0], .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return NULL;
        atomic_store(&s->listening, r >= 0);
        if (r == 0 && ts_now_mono_ms() < next)
            continue;                           /* woken early with nothing to read */
        atomic_fetch_add(&s->rechecks, r <= 0); /* a look without a notice */
        ts_hub_db_notify(s);
        next = ts_now_mono_ms() + (r >= 0 ? WAIT_SLICE_LISTENING_MS : WAIT_SLICE_MS);
    }
}

static enum ts_err start_listener(struct ts_hub_store *s, const char *path, char *err, size_t errsz)
{
    enum ts_err rc = ts_sql_open(path, 0, &s->ldb, err, errsz);
    if (rc)
        return rc;
    if (ts_sql_listen(s->ldb, FEED_CHANNEL) != TS_OK) {
        snprintf(err, errsz, "%s: LISTEN: %s", path, ts_sql_errmsg(s->ldb));
        return TS_ERR_DB;
    }
    if (pipe2(s->wake, O_CLOEXEC) != 0 || pthread_create(&s->listener, NULL, listen_run, s) != 0) {
        snprintf(err, errsz, "cannot start the listener thread");
        return TS_ERR_IO;
    }
    atomic_store(&s->listening, true);
    s->listener_started = true;
    return TS_OK;
}

/* SQLite: another process's commit (`erase`, `import`, a second hub) moves
 * the writer connection's data_version, which nothing of ours does; one
 * look a second wakes every waiter (and parked long-poll) only then. */
static int64_t data_version(struct ts_hub_store *s)
{
    struct ts_sql_stmt *st = NULL;
    int64_t v = -1;
    struct ts_sql *db = ts_hub_db_use(s);
    if (ts_sql_prepare(db, "PRAGMA data_version", &st) == TS_OK && ts_sql_step(st) == TS_SQL_ROW)
        v = ts_sql_column_int64(st, 0);
    ts_sql_finalize(st);
    ts_hub_db_release(s);
    return v;
}

static void *watch_run(void *arg)
{
    struct ts_hub_store *s = arg;
    int64_t seen = s->watch_start;
    for (;;) {
        struct pollfd p = {.fd = s->wake[0], .events = POLLIN};
        if (poll(&p, 1, WAIT_SLICE_MS) != 0)
            return NULL;
        int64_t v = data_version(s);
        if (v != seen)
            ts_hub_db_notify(s);
        seen = v;
    }
}

enum ts_err ts_hub_store_watch(struct ts_hub_store *s)
{
    if (ts_sql_is_pg(s->db) || !s->rdb)
        return TS_OK; /* the listener hears them; an in-memory database has no others */
    if (pipe2(s->wake, O_CLOEXEC) != 0)
        return TS_ERR_IO;
    s->watch_start = data_version(s); /* before anyone is served */
    if (pthread_create(&s->listener, NULL, watch_run, s) != 0)
        return TS_ERR_NOMEM;
    s->listener_started = true;
    atomic_store(&s->watching, true);
    return TS_OK;
}

/* ---- open and close ---------------------------------------------------------*/

void ts_hub_store_close(struct ts_hub_store *s)
{
    if (!s)
        return;
    if (s->listener_started) {
        if (write(s->wake[1], "x", 1) < 0)
            TS_WARN("hub", "cannot wake the listener thread");
        pthread_join(s->listener, NULL);
    }
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    ts_sql_close(s->ldb);
    for (size_t i = 0; i < s->ncache; i++) {
        for (size_t k = 0; k < s->cache[i].t->n; k++)
            ts_sql_finalize(s->cache[i].st[k]);
        free(s->cache[i].st);
    }
    ts_sql_close(s->rdb);
    ts_sql_close(s->db);
    if (s->fw_free)
        s->fw_free(s->fw);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

enum ts_err ts_hub_db_open(const char *path, const struct ts_tenant_key *key, int flags,
                           const struct ts_hub_db_part *parts, size_t nparts,
                           struct ts_hub_store **out, char *err, size_t errsz)
{
    enum ts_err rc = TS_ERR_NOMEM;
    struct ts_hub_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errsz, "out of memory");
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &ca);
    pthread_condattr_destroy(&ca);
    s->wake[0] = s->wake[1] = -1;
    s->key = *key;
    bool ro = flags & TS_HUB_STORE_RDONLY;
    bool pg = ts_sql_target_is_pg(path);
    if ((rc = ts_sql_open(path, ro ? TS_SQL_RDONLY : 0, &s->db, err, errsz)))
        goto out;
    if (!ro && (rc = setup_schema(s, path, parts, nparts, err, errsz)))
        goto out;
    if (ro && ts_hub_db_exec(s->db, "SELECT v FROM meta WHERE k = 'schema'")) {
        snprintf(err, errsz, "%s: not a tillside-hub database: %s", path, ts_sql_errmsg(s->db));
        rc = TS_ERR_DB;
        goto out;
    }
    s->epoch = (uint32_t)ts_hub_db_meta(s->db, "epoch");
    if (!ro && !pg &&
        sqlite3_create_function_v2(ts_sql_sqlite(s->db), "ts_ident_key", 3,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC, s, sql_ident_key, NULL, NULL,
                                   NULL) != SQLITE_OK) {
        snprintf(err, errsz, "%s: %s", path, ts_sql_errmsg(s->db));
        rc = TS_ERR_DB;
        goto out;
    }
    /* The read side's own connection (not for an in-memory SQLite
     * database, which exists once). */
    if (!ro && (pg || (path[0] && strcmp(path, ":memory:") != 0)) &&
        (rc = ts_sql_open(path, TS_SQL_RDONLY, &s->rdb, err, errsz)))
        goto out;
    if (!ro && pg && (rc = start_listener(s, path, err, errsz)))
        goto out;
    rc = TS_OK;
out:
    if (rc != TS_OK) {
        ts_hub_store_close(s);
        return rc;
    }
    *out = s;
    return TS_OK;
}
