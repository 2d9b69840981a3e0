/*
 * The hub's database connection: SQLite (a file) or PostgreSQL (libpq, a
 * "postgresql://" or "postgres://" URI), behind one small statement API in
 * SQLite's shape: prepare, bind, step through rows, read columns, reset.
 *
 * SQL is written once, in the subset both servers run: "?N" parameters
 * (rewritten to "$N" for PostgreSQL), ON CONFLICT upserts with the target's
 * columns qualified by its table name, IS DISTINCT FROM, two-argument
 * min()/max() (created as functions in a PostgreSQL schema by the store).
 * DDL differs and stays with its caller (ts_sql_is_pg).
 *
 * Transactions: "BEGIN IMMEDIATE" is how a writer begins. On PostgreSQL it
 * also takes a transaction-scoped advisory lock, so writers from several hub
 * processes commit one at a time, as on SQLite: feed sequence numbers commit
 * in order and a reader never sees seq N+1 before seq N. "BEGIN" (a reader's
 * snapshot) is REPEATABLE READ there. PRAGMA statements are SQLite's and do
 * nothing on PostgreSQL.
 *
 * A connection is used by one thread at a time (the caller's mutex).
 */
#ifndef TS_HUB_SQL_H
#define TS_HUB_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/ts.h"

struct sqlite3;

/*
 * Errors are enum ts_err: TS_ERR_FULL when the disk is full (SQLITE_FULL,
 * PostgreSQL 53100), TS_ERR_DB for every other database error. Stepping a
 * statement has two more outcomes, neither an error:
 */
enum {
    TS_SQL_ROW = 100,  /* a row to read */
    TS_SQL_DONE = 101, /* no more rows */
};

/* Column types (SQLite's numbers). */
enum { TS_SQL_INTEGER = 1, TS_SQL_FLOAT = 2, TS_SQL_TEXT = 3, TS_SQL_NULL = 5 };

/* ts_sql_open flags */
enum { TS_SQL_RDONLY = 1 };

struct ts_sql;
struct ts_sql_stmt;

/* Does target name a PostgreSQL database (a postgres[ql]:// URI)? */
bool ts_sql_target_is_pg(const char *target);

/* Opens target: a PostgreSQL URI, or an SQLite file (created unless RDONLY;
 * ":memory:" works). The error names target (without a URI's password). */
enum ts_err ts_sql_open(const char *target, int flags, struct ts_sql **out, char *err,
                        size_t errsz);
void ts_sql_close(struct ts_sql *db);

bool ts_sql_is_pg(const struct ts_sql *db);
/* The SQLite handle (for SQLite-only features), NULL on PostgreSQL. */
struct sqlite3 *ts_sql_sqlite(struct ts_sql *db);

/*
 * Takes the session-wide lock `which` if no other connection holds it and
 * keeps it while this connection lives: *held says whether this connection
 * has it. Lets one of several hub processes on one PostgreSQL database do a
 * job that must run once (the upstream forwarder). Always held on SQLite,
 * where one process owns the file.
 */
enum ts_err ts_sql_try_lock(struct ts_sql *db, int64_t which, bool *held);

/*
 * Change notices between processes (PostgreSQL NOTIFY/LISTEN; SQLite has
 * none). ts_sql_notify_on_commit: send a notice on channel when the open
 * transaction commits (with the COMMIT, no round trip of its own; nothing if
 * it rolls back). ts_sql_listen: receive channel's notices on this
 * connection, which then serves nothing else. ts_sql_wait_notice: wait up
 * to timeout_ms for one, or until wake_fd (may be -1) is readable: 1 = a
 * notice came, 0 = none, -1 = the connection is down (it is re-established
 * and listens again on a later call) or this is SQLite.
 */
void ts_sql_notify_on_commit(struct ts_sql *db, const char *channel);
enum ts_err ts_sql_listen(struct ts_sql *db, const char *channel);
int ts_sql_wait_notice(struct ts_sql *db, int wake_fd, int timeout_ms);

/* Runs one or more statements without results. */
enum ts_err ts_sql_exec(struct ts_sql *db, const char *sql);
/* Runs SQLite DDL (CREATE TABLE/INDEX IF NOT EXISTS ...), worded for
 * PostgreSQL there: INTEGER PRIMARY KEY becomes BIGSERIAL PRIMARY KEY (a row
 * id given on insert), INTEGER BIGINT (times are in ms), REAL DOUBLE
 * PRECISION, and WITHOUT ROWID goes. */
enum ts_err ts_sql_exec_ddl(struct ts_sql *db, const char *ddl);
/* SQLite: does table have column? -1 on error. */
int ts_sql_has_column(struct ts_sql *db, const char *table, const char *column);
/*
 * Bulk loading on PostgreSQL: ts_sql_copy_begin runs copy_sql (a "COPY
 * table(columns) FROM STDIN"), ts_sql_copy_row sends one row of n values
 * (NULL = SQL NULL; numbers as text) in COPY's text format, batched into
 * large messages, and ts_sql_copy_end ends it, *rows (may be NULL) = the
 * rows the server took. After a failed row, still call ts_sql_copy_end; it
 * returns the first error. TS_ERR_INVAL on SQLite, which has no COPY.
 */
enum ts_err ts_sql_copy_begin(struct ts_sql *db, const char *copy_sql);
enum ts_err ts_sql_copy_row(struct ts_sql *db, const char *const *vals, int n);
enum ts_err ts_sql_copy_end(struct ts_sql *db, int64_t *rows);
/* Rows the last INSERT, UPDATE or DELETE changed. */
int64_t ts_sql_changes(struct ts_sql *db);
/* The last error's message, and the error itself (TS_OK when there was
 * none, TS_ERR_FULL when the disk is full, else TS_ERR_DB). */
const char *ts_sql_errmsg(struct ts_sql *db);
enum ts_err ts_sql_err(struct ts_sql *db);

/* TS_OK, or an error (ts_sql_errmsg says which). */
enum ts_err ts_sql_prepare(struct ts_sql *db, const char *sql, struct ts_sql_stmt **out);
/* Parameters count from 1; text is copied, NULL text binds NULL. */
enum ts_err ts_sql_bind_int64(struct ts_sql_stmt *st, int i, int64_t v);
enum ts_err ts_sql_bind_double(struct ts_sql_stmt *st, int i, double v);
enum ts_err ts_sql_bind_text(struct ts_sql_stmt *st, int i, const char *v);
enum ts_err ts_sql_bind_null(struct ts_sql_stmt *st, int i);
/* TS_SQL_ROW (a row to read), TS_SQL_DONE, or an error (negative). */
int ts_sql_step(struct ts_sql_stmt *st);
/* Back to before the first step; bindings stay. */
void ts_sql_reset(struct ts_sql_stmt *st);
void ts_sql_clear_bindings(struct ts_sql_stmt *st);
void ts_sql_finalize(struct ts_sql_stmt *st);

/* Columns of the current row, counting from 0. Text is valid until the
 * next step, reset or finalize; NULL for SQL NULL. */
int ts_sql_column_count(struct ts_sql_stmt *st);
int ts_sql_column_type(struct ts_sql_stmt *st, int i);
const char *ts_sql_column_text(struct ts_sql_stmt *st, int i);
int64_t ts_sql_column_int64(struct ts_sql_stmt *st, int i);
double ts_sql_column_double(struct ts_sql_stmt *st, int i);

#endif
