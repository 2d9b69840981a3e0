/*
 * hub/sql.h on SQLite (straight through) and on PostgreSQL (libpq: each
 * statement runs with PQexecParams, parameters sent as text and typed by
 * the server from the statement, the whole result held until the next
 * reset).
 */
#include "sql.h"

#include "../common/ts.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parameter types: bound text, integers and doubles are sent typed, so the
 * server need not guess from the statement (a NULL is left to it). */
#define PG_INT8 20
#define PG_TEXT 25
#define PG_FLOAT8 701
#define TS_SQL_MAX_PARAMS 64

/* Taken by every PostgreSQL writer transaction (see sql.h). */
#define TS_SQL_PG_WRITE_LOCK 0x74696c6cL /* "till" */

struct ts_sql {
    sqlite3 *lite;
    PGconn *pg;
    bool rdonly;
    uint64_t session;      /* counts reconnections */
    uint64_t lock_session; /* the session the try-locks were taken in, plus 1 */
    uint64_t locks;        /* ts_sql_try_lock locks held, by bit */
    char notify[64];       /* channel to notify at COMMIT, "" = none */
    char listen[64];       /* channel this connection listens on, "" = none */
    int64_t changes;
    enum ts_err errcode;
    char err[512];
    ts_buf copy; /* rows of a COPY not sent yet */
};

struct ts_sql_stmt {
    struct ts_sql *db;
    sqlite3_stmt *lite;
    /* PostgreSQL */
    char *sql; /* with $N parameters */
    int nparams;
    char **vals;
    Oid *types; /* from the bind calls; text for a parameter the SQL skips */
    unsigned char used[TS_SQL_MAX_PARAMS];
    PGresult *res;
    int row, nrows;
};

bool ts_sql_target_is_pg(const char *target)
{
    return strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0;
}

/* target without a password, for messages */
static void redact(const char *target, char *out, size_t outsz)
{
    const char *scheme = strstr(target, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (!colon) {
        snprintf(out, outsz, "%s", target);
        return;
    }
    snprintf(out, outsz, "%.*s:***%s", (int)(colon - target), target, at);
}

/* libpq's messages end in a newline */
static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

static void pg_exec_quiet(struct ts_sql *db, const char *sql)
{
    PQclear(PQexec(db->pg, sql));
}

/* After a lost connection (server restart, network): reconnect, so the
 * next statement works. The failed one is reported to its caller, whose
 * transaction is gone with the connection; session locks are gone too. */
static void pg_check_link(struct ts_sql *db)
{
    if (PQstatus(db->pg) != CONNECTION_BAD)
        return;
    PQreset(db->pg);
    db->session++;
    if (PQstatus(db->pg) != CONNECTION_OK)
        return;
    pg_exec_quiet(db, "SET client_min_messages = warning");
    if (db->rdonly)
        pg_exec_quiet(db, "SET default_transaction_read_only = on");
}

static void pg_fail(struct ts_sql *db, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(db->pg);
    db->errcode = state && strcmp(state, "53100") == 0 ? TS_ERR_FULL : TS_ERR_DB;
    snprintf(db->err, sizeof db->err, "%s", msg && msg[0] ? msg : "PostgreSQL error");
    chomp(db->err);
    pg_check_link(db);
}

enum ts_err ts_sql_open(const char *target, int flags, struct ts_sql **out, char *err, size_t errsz)
{
    struct ts_sql *db = calloc(1, sizeof *db);
    if (!db) {
        snprintf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    if (ts_sql_target_is_pg(target)) {
        char shown[256];
        redact(target, shown, sizeof shown);
        db->pg = PQconnectdb(target);
        if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
            snprintf(err, errsz, "%s: %s", shown,
                     db->pg ? PQerrorMessage(db->pg) : "out of memory");
            chomp(err);
            ts_sql_close(db);
            return TS_ERR_DB;
        }
        db->rdonly = flags & TS_SQL_RDONLY;
        /* quiet NOTICEs ("relation already exists, skipping") off stderr */
        if (ts_sql_exec(db, "SET client_min_messages = warning") != TS_OK ||
            ((flags & TS_SQL_RDONLY) &&
             ts_sql_exec(db, "SET default_transaction_read_only = on") != TS_OK)) {
            snprintf(err, errsz, "%s: %s", shown, db->err);
            ts_sql_close(db);
            return TS_ERR_DB;
        }
        *out = db;
        return TS_OK;
    }
    int oflags = (flags & TS_SQL_RDONLY ? SQLITE_OPEN_READONLY
                                        : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                 SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(target, &db->lite, oflags, NULL) != SQLITE_OK) {
        snprintf(err, errsz, "%s: %s", target,
                 db->lite ? sqlite3_errmsg(db->lite) : "out of memory");
        ts_sql_close(db);
        return TS_ERR_DB;
    }
    sqlite3_busy_timeout(db->lite, 5000);
    sqlite3_extended_result_codes(db->lite, 0);
    *out = db;
    return TS_OK;
}

void ts_sql_close(struct ts_sql *db)
{
    if (!db)
        return;
    sqlite3_close(db->lite);
    if (db->pg)
        PQfinish(db->pg);
    ts_buf_free(&db->copy);
    free(db);
}

bool ts_sql_is_pg(const struct ts_sql *db)
{
    return db->pg != NULL;
}

struct sqlite3 *ts_sql_sqlite(struct ts_sql *db)
{
    return db->lite;
}

/* Runs sql on PostgreSQL (simple protocol: several statements allowed). */
static enum ts_err pg_exec(struct ts_sql *db, const char *sql)
{
    PGresult *res = PQexec(db->pg, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = TS_OK;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        db->changes = strtoll(PQcmdTuples(res), NULL, 10);
    else {
        pg_fail(db, res);
        rc = db->errcode;
    }
    PQclear(res);
    return rc;
}

enum ts_err ts_sql_exec(struct ts_sql *db, const char *sql)
{
    if (db->pg) {
        while (*sql == ' ')
            sql++;
        if (strncasecmp(sql, "PRAGMA", 6) == 0)
            return TS_OK;
        if (strcasecmp(sql, "BEGIN IMMEDIATE") == 0) {
            char begin[96];
            snprintf(begin, sizeof begin, "BEGIN; SELECT pg_advisory_xact_lock(%ld)",
                     TS_SQL_PG_WRITE_LOCK);
            return pg_exec(db, begin);
        }
        if (strcasecmp(sql, "BEGIN") == 0)
            return pg_exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ");
        if (strcasecmp(sql, "COMMIT") == 0 && db->notify[0]) {
            char commit[96];
            snprintf(commit, sizeof commit, "NOTIFY %s; COMMIT", db->notify);
            db->notify[0] = '\0';
            return pg_exec(db, commit);
        }
        if (strcasecmp(sql, "ROLLBACK") == 0)
            db->notify[0] = '\0';
        return pg_exec(db, sql);
    }
    char *msg = NULL;
    int rc = sqlite3_exec(db->lite, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        db->errcode = rc == SQLITE_FULL ? TS_ERR_FULL : TS_ERR_DB;
        snprintf(db->err, sizeof db->err, "%s", msg ? msg : sqlite3_errmsg(db->lite));
        sqlite3_free(msg);
        return db->errcode;
    }
    return TS_OK;
}

/* ---- COPY (PostgreSQL bulk loading) ---------------------------------------*/

#define COPY_SEND 65536

enum ts_err ts_sql_copy_begin(struct ts_sql *db, const char *copy_sql)
{
    if (!db->pg) {
        db->errcode = TS_ERR_INVAL;
        snprintf(db->err, sizeof db->err, "COPY is PostgreSQL's");
        return TS_ERR_INVAL;
    }
    ts_buf_reset(&db->copy);
    PGresult *res = PQexec(db->pg, copy_sql);
    enum ts_err rc = TS_OK;
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        pg_fail(db, res);
        rc = db->errcode;
    }
    PQclear(res);
    return rc;
}

static enum ts_err copy_send(struct ts_sql *db)
{
    if (db->copy.len && PQputCopyData(db->pg, db->copy.data, (int)db->copy.len) != 1) {
        pg_fail(db, NULL);
        return db->errcode;
    }
    ts_buf_reset(&db->copy);
    return TS_OK;
}

/* COPY's text format: tab between columns, \N for NULL, and backslash,
 * tab, newline and carriage return escaped. */
enum ts_err ts_sql_copy_row(struct ts_sql *db, const char *const *vals, int n)
{
    ts_buf *b = &db->copy;
    for (int i = 0; i < n; i++) {
        if ((i && ts_buf_puts(b, "\t")) || (!vals[i] && ts_buf_puts(b, "\\N")))
            return TS_ERR_NOMEM;
        for (const char *p = vals[i]; p && *p;) {
            size_t plain = strcspn(p, "\\\t\n\r");
            if (ts_buf_append(b, p, plain))
                return TS_ERR_NOMEM;
            p += plain;
            if (*p) {
                char esc[3] = {'\\', *p == '\\' ? '\\' : *p == '\t' ? 't' : *p == '\n' ? 'n' : 'r'};
                if (ts_buf_append(b, esc, 2))
                    return TS_ERR_NOMEM;
                p++;
            }
        }
    }
    if (ts_buf_puts(b, "\n"))
        return TS_ERR_NOMEM;
    return b->len >= COPY_SEND ? copy_send(db) : TS_OK;
}

enum ts_err ts_sql_copy_end(struct ts_sql *db, int64_t *rows)
{
    enum ts_err rc = copy_send(db);
    if (PQputCopyEnd(db->pg, rc ? "aborted by the client" : NULL) != 1 && rc == TS_OK) {
        pg_fail(db, NULL);
        rc = db->errcode;
    }
    PGresult *res;
    while ((res = PQgetResult(db->pg))) {
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            if (rows)
                *rows = strtoll(PQcmdTuples(res), NULL, 10);
        } else if (rc == TS_OK) {
            pg_fail(db, res);
            rc = db->errcode;
        }
        PQclear(res);
    }
    return rc;
}

enum ts_err ts_sql_try_lock(struct ts_sql *db, int64_t which, bool *held)
{
    *held = true;
    if (!db->pg)
        return TS_OK;
    if (db->lock_session != db->session + 1) {
        /* a new session holds none of the old one's locks */
        db->lock_session = db->session + 1;
        db->locks = 0;
    }
    if (which >= 0 && which < 64 && (db->locks & (1ULL << which)))
        return TS_OK;
    char sql[80];
    snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%ld, %ld)", TS_SQL_PG_WRITE_LOCK,
             (long)which);
    PGresult *res = PQexec(db->pg, sql);
    int rc = TS_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        pg_fail(db, res);
        rc = db->errcode;
        *held = false;
    } else {
        *held = PQgetvalue(res, 0, 0)[0] == 't';
        if (*held && which >= 0 && which < 64)
            db->locks |= 1ULL << which;
    }
    PQclear(res);
    return rc;
}

void ts_sql_notify_on_commit(struct ts_sql *db, const char *channel)
{
    if (db->pg)
        snprintf(db->notify, sizeof db->notify, "%s", channel);
}

enum ts_err ts_sql_listen(struct ts_sql *db, const char *channel)
{
    if (!db->pg)
        return TS_ERR_DB;
    char sql[80];
    snprintf(sql, sizeof sql, "LISTEN %s", channel);
    if (channel != db->listen) /* a re-LISTEN after a reconnect passes its own */
        snprintf(db->listen, sizeof db->listen, "%s", channel);
    return pg_exec(db, sql);
}

/* Frees the notices received so far; true if there was one. */
static bool drain_notices(PGconn *c)
{
    bool got = false;
    PGnotify *n;
    while ((n = PQnotifies(c)) != NULL) {
        got = true;
        PQfreemem(n);
    }
    return got;
}

int ts_sql_wait_notice(struct ts_sql *db, int wake_fd, int timeout_ms)
{
    if (!db->pg || !db->listen[0])
        return -1;
    if (PQstatus(db->pg) != CONNECTION_OK) {
        pg_check_link(db);
        if (PQstatus(db->pg) != CONNECTION_OK || ts_sql_listen(db, db->listen) != TS_OK) {
            struct pollfd w = {.fd = wake_fd, .events = POLLIN};
            poll(&w, wake_fd >= 0 ? 1 : 0, timeout_ms);
            return -1;
        }
        return 1; /* notices may have been missed while down: look */
    }
    if (!PQconsumeInput(db->pg)) {
        pg_check_link(db);
        return -1;
    }
    if (drain_notices(db->pg))
        return 1;
    struct pollfd p[2] = {{.fd = PQsocket(db->pg), .events = POLLIN},
                          {.fd = wake_fd, .events = POLLIN}};
    if (poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms) <= 0 || !(p[0].revents & (POLLIN | POLLHUP)))
        return 0;
    if (!PQconsumeInput(db->pg)) {
        pg_check_link(db);
        return -1;
    }
    return drain_notices(db->pg) ? 1 : 0;
}

int ts_sql_has_column(struct ts_sql *db, const char *table, const char *column)
{
    struct ts_sql_stmt *st = NULL;
    int rc = -1;
    if (ts_sql_prepare(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", &st) == TS_OK) {
        ts_sql_bind_text(st, 1, table);
        ts_sql_bind_text(st, 2, column);
        int step = ts_sql_step(st);
        rc = step == TS_SQL_ROW ? 1 : step == TS_SQL_DONE ? 0 : -1;
    }
    ts_sql_finalize(st);
    return rc;
}

enum ts_err ts_sql_exec_ddl(struct ts_sql *db, const char *ddl)
{
    if (!db->pg)
        return ts_sql_exec(db, ddl);
    static const struct {
        const char *from, *to;
    } words[] = {{"INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY"},
                 {"INTEGER", "BIGINT"},
                 {"REAL", "DOUBLE PRECISION"},
                 {"WITHOUT ROWID", ""}};
    const size_t nwords = sizeof words / sizeof words[0];
    ts_buf b = {0};
    int rc = TS_OK;
    for (const char *p = ddl; *p && rc == TS_OK;) {
        size_t k = nwords;
        if (p == ddl || !(isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            for (k = 0; k < nwords; k++) {
                size_t n = strlen(words[k].from);
                if (strncmp(p, words[k].from, n) == 0 && !isalnum((unsigned char)p[n]) &&
                    p[n] != '_')
                    break;
            }
        if (k < nwords) {
            rc = ts_buf_puts(&b, words[k].to);
            p += strlen(words[k].from);
        } else {
            rc = ts_buf_append(&b, p++, 1);
        }
    }
    if (rc == TS_OK)
        rc = ts_buf_append(&b, "", 1);
    rc = rc == TS_OK ? pg_exec(db, b.data) : TS_ERR_DB;
    ts_buf_free(&b);
    return rc;
}

int64_t ts_sql_changes(struct ts_sql *db)
{
    return db->lite ? sqlite3_changes(db->lite) : db->changes;
}

const char *ts_sql_errmsg(struct ts_sql *db)
{
    return db->lite ? sqlite3_errmsg(db->lite) : db->err;
}

enum ts_err ts_sql_err(struct ts_sql *db)
{
    if (db->lite) {
        int c = sqlite3_errcode(db->lite);
        return c == SQLITE_FULL ? TS_ERR_FULL : c == SQLITE_OK ? TS_OK : TS_ERR_DB;
    }
    return db->errcode;
}

/* ---- statements ---------------------------------------------------------- */

/* sql with ?N (and bare ?, numbered in order) as $N, outside quotes. */
static char *pg_translate(const char *sql, int *nparams, unsigned char used[TS_SQL_MAX_PARAMS])
{
    size_t n = strlen(sql);
    char *out = malloc(n * 2 + 1);
    if (!out)
        return NULL;
    char *o = out;
    int next = 1, max = 0;
    char quote = 0;
    for (const char *p = sql; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
            *o++ = *p;
            continue;
        }
        if (*p == '\'' || *p == '"') {
            quote = *p;
            *o++ = *p;
            continue;
        }
        if (*p != '?') {
            *o++ = *p;
            continue;
        }
        int num = 0;
        while (p[1] >= '0' && p[1] <= '9' && num < 10000)
            num = num * 10 + (*++p - '0');
        if (num == 0)
            num = next;
        next = num + 1;
        if (num > max)
            max = num;
        if (num <= TS_SQL_MAX_PARAMS)
            used[num - 1] = 1;
        o += sprintf(o, "$%d", num);
    }
    *o = '\0';
    *nparams = max;
    return out;
}

enum ts_err ts_sql_prepare(struct ts_sql *db, const char *sql, struct ts_sql_stmt **out)
{
    *out = NULL;
    struct ts_sql_stmt *st = calloc(1, sizeof *st);
    if (!st)
        return TS_ERR_DB;
    st->db = db;
    if (db->lite) {
        if (sqlite3_prepare_v2(db->lite, sql, -1, &st->lite, NULL) != SQLITE_OK) {
            free(st);
            return TS_ERR_DB;
        }
        *out = st;
        return TS_OK;
    }
    st->sql = pg_translate(sql, &st->nparams, st->used);
    if (st->nparams > TS_SQL_MAX_PARAMS) {
        snprintf(db->err, sizeof db->err, "more than %d parameters", TS_SQL_MAX_PARAMS);
        ts_sql_finalize(st);
        return TS_ERR_DB;
    }
    st->vals = st->nparams ? calloc((size_t)st->nparams, sizeof *st->vals) : NULL;
    st->types = st->nparams ? calloc((size_t)st->nparams, sizeof *st->types) : NULL;
    if (!st->sql || (st->nparams && (!st->vals || !st->types))) {
        snprintf(db->err, sizeof db->err, "out of memory");
        ts_sql_finalize(st);
        return TS_ERR_DB;
    }
    for (int i = 0; i < st->nparams; i++)
        st->types[i] = st->used[i] ? 0 : PG_TEXT;
    st->row = -1;
    *out = st;
    return TS_OK;
}

static enum ts_err pg_bind(struct ts_sql_stmt *st, int i, char *v, Oid type)
{
    if (i < 1 || i > st->nparams) {
        free(v);
        snprintf(st->db->err, sizeof st->db->err, "parameter %d out of range", i);
        return TS_ERR_DB;
    }
    free(st->vals[i - 1]);
    st->vals[i - 1] = v;
    if (st->used[i - 1])
        st->types[i - 1] = type;
    return TS_OK;
}

enum ts_err ts_sql_bind_int64(struct ts_sql_stmt *st, int i, int64_t v)
{
    if (st->lite)
        return sqlite3_bind_int64(st->lite, i, v) == SQLITE_OK ? TS_OK : TS_ERR_DB;
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    char *c = strdup(buf);
    return c ? pg_bind(st, i, c, PG_INT8) : TS_ERR_DB;
}

enum ts_err ts_sql_bind_double(struct ts_sql_stmt *st, int i, double v)
{
    if (st->lite)
        return sqlite3_bind_double(st->lite, i, v) == SQLITE_OK ? TS_OK : TS_ERR_DB;
    char buf[32];
    snprintf(buf, sizeof buf, "%.17g", v);
    char *c = strdup(buf);
    return c ? pg_bind(st, i, c, PG_FLOAT8) : TS_ERR_DB;
}

enum ts_err ts_sql_bind_text(struct ts_sql_stmt *st, int i, const char *v)
{
    if (!v)
        return ts_sql_bind_null(st, i);
    if (st->lite)
        return sqlite3_bind_text(st->lite, i, v, -1, SQLITE_TRANSIENT) == SQLITE_OK ? TS_OK
                                                                                    : TS_ERR_DB;
    char *c = strdup(v);
    return c ? pg_bind(st, i, c, PG_TEXT) : TS_ERR_DB;
}

enum ts_err ts_sql_bind_null(struct ts_sql_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_bind_null(st->lite, i) == SQLITE_OK ? TS_OK : TS_ERR_DB;
    return pg_bind(st, i, NULL, 0); /* typed by the statement */
}

int ts_sql_step(struct ts_sql_stmt *st)
{
    if (st->lite) {
        int rc = sqlite3_step(st->lite);
        if (rc == SQLITE_ROW)
            return TS_SQL_ROW;
        if (rc == SQLITE_DONE)
            return TS_SQL_DONE;
        return rc == SQLITE_FULL ? TS_ERR_FULL : TS_ERR_DB;
    }
    struct ts_sql *db = st->db;
    if (!st->res) {
        st->res = PQexecParams(db->pg, st->sql, st->nparams, st->types,
                               (const char *const *)st->vals, NULL, NULL, 0);
        ExecStatusType s = PQresultStatus(st->res);
        if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
            pg_fail(db, st->res);
            PQclear(st->res);
            st->res = NULL;
            return db->errcode;
        }
        st->nrows = PQntuples(st->res);
        st->row = -1;
        db->changes = strtoll(PQcmdTuples(st->res), NULL, 10);
    }
    if (st->row + 1 < st->nrows) {
        st->row++;
        return TS_SQL_ROW;
    }
    st->row = st->nrows;
    return TS_SQL_DONE;
}

void ts_sql_reset(struct ts_sql_stmt *st)
{
    if (!st)
        return;
    if (st->lite) {
        sqlite3_reset(st->lite);
        return;
    }
    PQclear(st->res);
    st->res = NULL;
    st->row = -1;
}

void ts_sql_clear_bindings(struct ts_sql_stmt *st)
{
    if (!st)
        return;
    if (st->lite) {
        sqlite3_clear_bindings(st->lite);
        return;
    }
    for (int i = 0; i < st->nparams; i++) {
        free(st->vals[i]);
        st->vals[i] = NULL;
    }
}

void ts_sql_finalize(struct ts_sql_stmt *st)
{
    if (!st)
        return;
    sqlite3_finalize(st->lite);
    ts_sql_clear_bindings(st->lite ? NULL : st);
    PQclear(st->res);
    free(st->vals);
    free(st->types);
    free(st->sql);
    free(st);
}

/* ---- columns ------------------------------------------------------------- */

static bool pg_cell(struct ts_sql_stmt *st, int i)
{
    return st->res && st->row >= 0 && st->row < st->nrows && i >= 0 && i < PQnfields(st->res) &&
           !PQgetisnull(st->res, st->row, i);
}

int ts_sql_column_count(struct ts_sql_stmt *st)
{
    if (st->lite)
        return sqlite3_column_count(st->lite);
    return st->res ? PQnfields(st->res) : 0;
}

int ts_sql_column_type(struct ts_sql_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_column_type(st->lite, i);
    if (!pg_cell(st, i))
        return TS_SQL_NULL;
    switch (PQftype(st->res, i)) {
    case 20: /* int8 */
    case 21: /* int2 */
    case 23: /* int4 */
    case 16: /* bool */
        return TS_SQL_INTEGER;
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1700: /* numeric */
        return TS_SQL_FLOAT;
    default:
        return TS_SQL_TEXT;
    }
}

const char *ts_sql_column_text(struct ts_sql_stmt *st, int i)
{
    if (st->lite)
        return (const char *)sqlite3_column_text(st->lite, i);
    return pg_cell(st, i) ? PQgetvalue(st->res, st->row, i) : NULL;
}

int64_t ts_sql_column_int64(struct ts_sql_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_column_int64(st->lite, i);
    if (!pg_cell(st, i))
        return 0;
    const char *v = PQgetvalue(st->res, st->row, i);
    if (v[0] == 't' && v[1] == '\0')
        return 1;
    if (ts_sql_column_type(st, i) == TS_SQL_FLOAT)
        return (int64_t)strtod(v, NULL);
    return strtoll(v, NULL, 10);
}

double ts_sql_column_double(struct ts_sql_stmt *st, int i)
{
    if (st->lite)
        return sqlite3_column_double(st->lite, i);
    return pg_cell(st, i) ? strtod(PQgetvalue(st->res, st->row, i), NULL) : 0.0;
}
