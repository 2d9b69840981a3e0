/*
 * The hub's storage core (db.c): the connections, the write transaction, the
 * read side, statement caching, error mapping, schema set-up and change
 * notices. Every hub feature (ingest, feed, purchases, upstream, erasure)
 * reaches the database through this and hub/sql.h only; struct ts_hub_store
 * is opaque outside db.c, and what differs between SQLite and PostgreSQL
 * stays in db.c and sql.c.
 *
 * Locks: one writer connection behind a mutex (held from
 * ts_hub_db_write_begin to commit or rollback, or between ts_hub_db_use and
 * ts_hub_db_release), one reader connection behind another (between
 * ts_hub_db_read_begin and ts_hub_db_read_end). An in-memory SQLite database
 * exists once: there the reader is the writer and shares its mutex. Never
 * take the writer while holding the reader.
 */
#ifndef TS_HUB_DB_H
#define TS_HUB_DB_H

#include "hub.h"
#include "sql.h"

/*
 * A feature's statements: sql[i], or pg[i] on PostgreSQL when pg and pg[i]
 * are set. The feature declares it static and const next to the code that
 * runs the statements; the store prepares each on first use on the writer
 * connection and keeps it, keyed by the table's address.
 */
struct ts_hub_stmts {
    const char *const *sql;
    const char *const *pg;
    size_t n;
};

/* A feature's part of the schema: setup runs inside the opening write
 * transaction, in the order the parts are given, and creates or upgrades
 * the feature's tables with ts_hub_db_ddl and ts_hub_db_add_column. */
struct ts_hub_db_part {
    const char *name;
    enum ts_err (*setup)(struct ts_hub_store *s);
};

/*
 * Opens path (an SQLite file, ":memory:" or a postgresql:// URI) with the
 * tenant key. Without TS_HUB_STORE_RDONLY it creates or upgrades the schema
 * (meta first, then parts[0..n)), refusing a database from a newer hub, and
 * opens the read side's connection and, on PostgreSQL, the listener.
 */
enum ts_err ts_hub_db_open(const char *path, const struct ts_tenant_key *key, int flags,
                           const struct ts_hub_db_part *parts, size_t nparts,
                           struct ts_hub_store **out, char *err, size_t errsz);

/* ---- writing ---------------------------------------------------------------*/

enum {
    TS_HUB_TXN_DURABLE = 1, /* synchronous=FULL: the commit survives a power cut */
    TS_HUB_TXN_SECURE = 2,  /* deleted bytes are overwritten and the WAL emptied after */
};

/*
 * Takes the writer and begins its transaction (BEGIN IMMEDIATE: writers of
 * every process on the database take turns). On failure the writer is
 * released again. flags: TS_HUB_TXN_*.
 */
enum ts_err ts_hub_db_write_begin(struct ts_hub_store *s, unsigned flags);
/* Commits (rolling back if the commit fails) and releases the writer; with
 * changed, wakes long-poll waiters once the commit succeeded. */
enum ts_err ts_hub_db_write_commit(struct ts_hub_store *s, bool changed);
/* Rolls back and releases the writer. */
void ts_hub_db_write_rollback(struct ts_hub_store *s);
/* Ends the transaction by what the work in it returned: commits after
 * TS_OK (as ts_hub_db_write_commit), rolls back after anything else.
 * Returns rc, or the commit's error. */
enum ts_err ts_hub_db_write_end(struct ts_hub_store *s, enum ts_err rc, bool changed);

/* The writer connection outside a transaction (the upstream forwarder's
 * reads), until ts_hub_db_release. */
struct ts_sql *ts_hub_db_use(struct ts_hub_store *s);
void ts_hub_db_release(struct ts_hub_store *s);

/* The writer connection; only while the caller holds it (above). */
struct ts_sql *ts_hub_db_writer(struct ts_hub_store *s);

/* Statement id of table t, prepared on the writer on first use, reset and
 * with its bindings cleared; NULL (logged) when it cannot be prepared.
 * Only while the caller holds the writer. */
struct ts_sql_stmt *ts_hub_db_st(struct ts_hub_store *s, const struct ts_hub_stmts *t, size_t id);

/* Takes the next global feed sequence number, in a write transaction; its
 * commit tells hubs sharing the database to look at their feeds. */
enum ts_err ts_hub_db_next_seq(struct ts_hub_store *s, int64_t *seq);

/* ---- reading ---------------------------------------------------------------*/

/*
 * The read side's connection until ts_hub_db_read_end: the last committed
 * state, never waiting behind a batch being written. With snapshot, every
 * statement until the end reads one snapshot (REPEATABLE READ on
 * PostgreSQL). Pass the same snapshot to both.
 */
struct ts_sql *ts_hub_db_read_begin(struct ts_hub_store *s, bool snapshot);
void ts_hub_db_read_end(struct ts_hub_store *s, bool snapshot);

/* ---- errors, schema, meta ----------------------------------------------------*/

/* Logs db's last error ("store: what: message") and maps it: TS_ERR_FULL
 * for a full disk, else TS_ERR_DB. Pass the connection that failed. */
enum ts_err ts_hub_db_err(struct ts_sql *db, const char *what);
/* The same for the writer, which the caller holds. */
enum ts_err ts_hub_db_werr(struct ts_hub_store *s, const char *what);
/* Runs sql (no results) on db; its error logged and mapped as above. */
enum ts_err ts_hub_db_exec(struct ts_sql *db, const char *sql);

/* Runs SQLite DDL (CREATE TABLE/INDEX IF NOT EXISTS) on the writer, worded
 * for PostgreSQL when it is one. */
enum ts_err ts_hub_db_ddl(struct ts_hub_store *s, const char *ddl);
/* Adds a column an older database lacks: "ALTER TABLE table ADD COLUMN
 * decl", then (SQLite, only when it was missing) fill, which may be NULL. */
enum ts_err ts_hub_db_add_column(struct ts_hub_store *s, const char *table, const char *column,
                                 const char *decl, const char *fill);

/* meta's integer k on db (0 when absent), whether it has k, and setting
 * it on the writer. */
int64_t ts_hub_db_meta(struct ts_sql *db, const char *k);
bool ts_hub_db_meta_has(struct ts_sql *db, const char *k);
enum ts_err ts_hub_db_meta_set(struct ts_hub_store *s, const char *k, int64_t v);

/* ---- the store's settings ---------------------------------------------------*/

const struct ts_tenant_key *ts_hub_db_key(const struct ts_hub_store *s);
/* The second key version, NULL when there is none. */
const struct ts_tenant_key *ts_hub_db_prev(const struct ts_hub_store *s);
/* Sets it (prev NULL or len 0 = none); only while holding the writer. */
void ts_hub_db_set_prev(struct ts_hub_store *s, const struct ts_tenant_key *prev);
/* ts_hub_store_set_bulk's flag. */
bool ts_hub_db_bulk(const struct ts_hub_store *s);
/* May other processes write this database (PostgreSQL), so that what they
 * queue is only seen by looking? */
bool ts_hub_db_shared(const struct ts_hub_store *s);

/*
 * In the write transaction: gives every identifier its key under the
 * current and the second tenant key (an SQL function in one UPDATE on
 * SQLite, a cursor on PostgreSQL).
 */
enum ts_err ts_hub_db_rekey_identifiers(struct ts_hub_store *s);

/* ---- change notices ---------------------------------------------------------*/

/* The feed watch (feed_watch.c) the store keeps and frees with itself. */
struct ts_hub_feedwatch;
struct ts_hub_feedwatch *ts_hub_db_feedwatch(struct ts_hub_store *s);
void ts_hub_db_set_feedwatch(struct ts_hub_store *s, struct ts_hub_feedwatch *fw,
                             void (*free_fn)(struct ts_hub_feedwatch *));

/* The PostgreSQL listener's looks without a notice (ts_hub_store_feed_counts). */
uint64_t ts_hub_db_rechecks(struct ts_hub_store *s);
/* Wakes long-poll waiters after a commit that may have changed a feed. */
void ts_hub_db_notify(struct ts_hub_store *s);
/* How many changes were signalled so far; *closing once the store shuts
 * down. */
uint64_t ts_hub_db_changes(struct ts_hub_store *s, bool *closing);
/* Sleeps until the count moves past seen, the store shuts down, or at most
 * max_ms, cut to how often changes signalled by nobody (other processes)
 * must be looked for. */
void ts_hub_db_wait_change(struct ts_hub_store *s, uint64_t seen, int64_t max_ms);

#endif
