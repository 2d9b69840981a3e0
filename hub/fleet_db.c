/*
 * The last health report per terminal (fleet.h), in the hub database: one
 * row per (tenant, store, terminal) of the verified client certificate,
 * with when it last polled and when it last reported. A poll without a
 * report costs a write only every touch interval (a third of
 * [fleet] stale_after_s, at most a minute), remembered in memory here, so
 * 10,000 long-polling terminals do not mean a write per request.
 */
#include "fleet.h"
#include "matchrate.h"
#include "parts.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "fleet"
#define NBUCKETS 4096
#define MAX_SEEN 65536     /* terminals remembered; past it the memory starts over */
#define LOG_EVERY_MS 60000 /* malformed reports: one log line a minute, with a count */

struct seen {
    struct seen *next;
    int64_t written_ms;
    char key[200];
};

struct ts_hub_fleet {
    pthread_mutex_t mu;
    int64_t touch_ms;
    struct seen *b[NBUCKETS];
    size_t n;
    int64_t logged_ms;
    unsigned long unlogged;
};

/* problems: the TS_FLEET_* bits of the report (all but stale, which is
 * decided when read), and the outbox figures, so /metrics and the page add
 * them up in SQL without parsing 10,000 reports. */
static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS fleet(tenant TEXT NOT NULL, store_id TEXT NOT NULL,"
    "  terminal TEXT NOT NULL, seen_at INTEGER NOT NULL, reported_at INTEGER NOT NULL DEFAULT 0,"
    "  report TEXT, problems INTEGER NOT NULL DEFAULT 128, outbox_depth INTEGER NOT NULL DEFAULT 0,"
    "  dead_letters INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(tenant, store_id, terminal));";

enum ts_err ts_hub_fleet_schema(struct ts_hub_store *s)
{
    return ts_hub_db_ddl(s, schema_sql);
}

static const char *const write_sql[] = {
    "INSERT INTO fleet(tenant, store_id, terminal, seen_at) VALUES(?1, ?2, ?3, ?4)"
    " ON CONFLICT(tenant, store_id, terminal) DO UPDATE SET seen_at = excluded.seen_at",
    "INSERT INTO fleet(tenant, store_id, terminal, seen_at, reported_at, report, problems,"
    " outbox_depth, dead_letters) VALUES(?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT(tenant, store_id, terminal) DO UPDATE SET seen_at = excluded.seen_at,"
    " reported_at = excluded.reported_at, report = excluded.report, problems = excluded.problems,"
    " outbox_depth = excluded.outbox_depth, dead_letters = excluded.dead_letters",
};
static const struct ts_hub_stmts write_stmts = {write_sql, NULL, 2};

enum ts_err ts_hub_fleet_new(int stale_after_s, struct ts_hub_fleet **out)
{
    struct ts_hub_fleet *f = calloc(1, sizeof *f);
    if (!f)
        return TS_ERR_NOMEM;
    pthread_mutex_init(&f->mu, NULL);
    int64_t t = (int64_t)stale_after_s * 1000 / 3;
    f->touch_ms = t < 1000 ? 1000 : t > 60000 ? 60000 : t;
    *out = f;
    return TS_OK;
}

static void forget_all(struct ts_hub_fleet *f)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (f->b[i]) {
            struct seen *e = f->b[i];
            f->b[i] = e->next;
            free(e);
        }
    }
    f->n = 0;
}

void ts_hub_fleet_free(struct ts_hub_fleet *f)
{
    if (!f)
        return;
    forget_all(f);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static uint32_t hash(const char *s)
{
    return ts_hash_str(s);
}

/* Is a write of key due (a report always is)? Marks it written at now_ms. */
static bool due(struct ts_hub_fleet *f, const char *key, bool report, int64_t now_ms)
{
    pthread_mutex_lock(&f->mu);
    struct seen **head = &f->b[hash(key) % NBUCKETS], *e = *head;
    while (e && strcmp(e->key, key) != 0)
        e = e->next;
    if (!e) {
        if (f->n >= MAX_SEEN)
            forget_all(f);
        e = calloc(1, sizeof *e);
        if (e) {
            ts_strlcpy(e->key, key, sizeof e->key);
            e->written_ms = INT64_MIN / 2;
            e->next = *head;
            *head = e;
            f->n++;
        }
    }
    bool yes = !e || report || now_ms - e->written_ms >= f->touch_ms;
    if (e && yes)
        e->written_ms = now_ms;
    pthread_mutex_unlock(&f->mu);
    return yes;
}

/* Malformed reports are logged at most once a minute, with how many. */
static void log_bad(struct ts_hub_fleet *f, const struct ts_peer_id *peer, const char *why,
                    int64_t now_ms)
{
    pthread_mutex_lock(&f->mu);
    bool log = now_ms - f->logged_ms >= LOG_EVERY_MS;
    unsigned long n = ++f->unlogged;
    if (log) {
        f->logged_ms = now_ms;
        f->unlogged = 0;
    }
    pthread_mutex_unlock(&f->mu);
    if (log)
        TS_WARN(COMP,
                "health report from store=%s terminal=%s dropped: %s (%lu in the last minute)",
                peer->ou, peer->cn, why, n);
}

static enum ts_err write_row(struct ts_hub_store *s, const struct ts_peer_id *peer, int64_t now_ms,
                             const char *report, const struct ts_fleet_report *r)
{
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    struct ts_sql_stmt *st = ts_hub_db_st(s, &write_stmts, report ? 1 : 0);
    if (!st)
        return ts_hub_db_write_end(s, TS_ERR_DB, false);
    ts_sql_bind_text(st, 1, peer->o);
    ts_sql_bind_text(st, 2, peer->ou);
    ts_sql_bind_text(st, 3, peer->cn);
    ts_sql_bind_int64(st, 4, now_ms);
    if (report) {
        struct ts_fleet_row row = {.seen_ms = now_ms, .has_report = true, .r = *r};
        ts_sql_bind_text(st, 5, report);
        ts_sql_bind_int64(st, 6, ts_fleet_problems(&row, now_ms, 1) & ~(unsigned)TS_FLEET_STALE);
        ts_sql_bind_int64(st, 7, r->outbox_depth);
        ts_sql_bind_int64(st, 8, r->dead_letters);
    }
    rc = ts_sql_step(st) == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(s, "fleet write");
    ts_sql_reset(st);
    if (rc == TS_OK && report)
        rc = ts_hub_match_write(s, peer->ou, peer->cn, r, now_ms); /* matchrate.c */
    return ts_hub_db_write_end(s, rc, false);
}

void ts_hub_fleet_note(struct ts_hub_fleet *f, struct ts_hub_store *s,
                       const struct ts_peer_id *peer, const struct ts_http_msg *msg, int64_t now_ms)
{
    if (!f || !peer || !peer->verified || !peer->ou[0])
        return;
    const char *h = msg ? ts_http_header(msg, TS_FLEET_HEADER) : NULL;
    struct ts_fleet_report r;
    ts_buf json = {0};
    char key[200], why[160];
    bool report = false;
    if (h) {
        if (ts_fleet_report_decode(h, strlen(h), &r, why, sizeof why) != TS_OK)
            log_bad(f, peer, why, now_ms);
        else
            report = ts_fleet_report_json(&r, &json) == TS_OK;
    }
    snprintf(key, sizeof key, "%.63s/%.63s/%.63s", peer->o, peer->ou, peer->cn);
    if (due(f, key, report, now_ms) &&
        write_row(s, peer, now_ms, report ? json.data : NULL, &r) != TS_OK)
        TS_WARN(COMP, "cannot record the poll of store=%s terminal=%s", peer->ou, peer->cn);
    ts_buf_free(&json);
}

enum ts_err ts_hub_fleet_each(struct ts_hub_store *s, const char *store, int64_t now_ms,
                              int stale_after_s,
                              void (*fn)(void *ud, const struct ts_fleet_brief *b), void *ud)
{
    struct ts_sql_stmt *st = NULL;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    enum ts_err rc = TS_OK;
    int64_t cut = now_ms - (int64_t)stale_after_s * 1000;
    if (ts_sql_prepare(db,
                       store ? "SELECT store_id, terminal, seen_at, reported_at, problems, report,"
                               " tenant FROM fleet WHERE store_id = ?1 ORDER BY terminal, tenant"
                             : "SELECT store_id, terminal, seen_at, reported_at, problems, report,"
                               " tenant FROM fleet ORDER BY store_id, terminal, tenant",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "fleet list");
        goto out;
    }
    if (store)
        ts_sql_bind_text(st, 1, store);
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        struct ts_fleet_brief b = {0};
        b.store = ts_sql_column_text(st, 0);
        b.terminal = ts_sql_column_text(st, 1);
        b.seen_ms = ts_sql_column_int64(st, 2);
        b.reported_ms = ts_sql_column_int64(st, 3);
        b.problems = (unsigned)ts_sql_column_int64(st, 4) | (b.seen_ms < cut ? TS_FLEET_STALE : 0);
        b.report = ts_sql_column_text(st, 5);
        b.tenant = ts_sql_column_text(st, 6);
        if (b.store && b.terminal && b.tenant)
            fn(ud, &b);
    }
    if (step != TS_SQL_DONE)
        rc = ts_hub_db_err(db, "fleet list");
out:
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    return rc;
}

struct parsed {
    void (*fn)(void *ud, const struct ts_fleet_row *row);
    void *ud;
};

/* What the hub wrote itself parses; anything else reads as no report. */
static void parse_row(void *ud, const struct ts_fleet_brief *b)
{
    struct parsed *p = ud;
    struct ts_fleet_row row;
    char why[160];
    memset(&row, 0, sizeof row);
    ts_strlcpy(row.tenant, b->tenant, sizeof row.tenant);
    ts_strlcpy(row.store, b->store, sizeof row.store);
    ts_strlcpy(row.terminal, b->terminal, sizeof row.terminal);
    row.seen_ms = b->seen_ms;
    row.reported_ms = b->reported_ms;
    row.has_report = b->report && ts_fleet_report_parse(b->report, strlen(b->report), &row.r, why,
                                                        sizeof why) == TS_OK;
    p->fn(p->ud, &row);
}

enum ts_err ts_hub_fleet_list(struct ts_hub_store *s, const char *store,
                              void (*fn)(void *ud, const struct ts_fleet_row *row), void *ud)
{
    struct parsed p = {fn, ud};
    return ts_hub_fleet_each(s, store, 0, 0, parse_row, &p);
}

enum ts_err ts_hub_fleet_forget(struct ts_hub_store *s, const char *store, const char *terminal,
                                int64_t before_ms,
                                void (*fn)(void *ud, const char *store, const char *terminal,
                                           int64_t seen_ms),
                                void *ud, long *removed)
{
    /* ?1 terminal or NULL, ?2 store or NULL, ?3 the cut when no terminal */
    static const char *const sql = "DELETE FROM fleet WHERE (?2 IS NULL OR store_id = ?2) AND"
                                   " CASE WHEN ?1 IS NULL THEN seen_at < ?3 ELSE terminal = ?1 END"
                                   " RETURNING store_id, terminal, seen_at";
    *removed = 0;
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    struct ts_sql_stmt *st = NULL;
    struct ts_sql *db = ts_hub_db_writer(s);
    if (ts_sql_prepare(db, sql, &st) != TS_OK)
        rc = ts_hub_db_err(db, "fleet forget");
    if (rc == TS_OK) {
        if (terminal)
            ts_sql_bind_text(st, 1, terminal);
        else
            ts_sql_bind_null(st, 1);
        if (store)
            ts_sql_bind_text(st, 2, store);
        else
            ts_sql_bind_null(st, 2);
        ts_sql_bind_int64(st, 3, before_ms);
        int step;
        while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
            (*removed)++;
            const char *sid = ts_sql_column_text(st, 0), *term = ts_sql_column_text(st, 1);
            if (fn && sid && term)
                fn(ud, sid, term, ts_sql_column_int64(st, 2));
        }
        if (step != TS_SQL_DONE)
            rc = ts_hub_db_err(db, "fleet forget");
    }
    ts_sql_finalize(st);
    return ts_hub_db_write_end(s, rc, false);
}

/* ---- /metrics: per store, never per terminal or customer ---------------------*/

/* A label value as Prometheus' text format wants it: \\, \" and \n escaped. */
static void label(ts_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            ts_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            ts_buf_puts(b, "\\n");
        else
            ts_buf_printf(b, "%c", *v);
    }
}

void ts_hub_fleet_metrics(struct ts_hub_store *s, int64_t now_ms, int stale_after_s, ts_buf *b)
{
    static const char *const m[][2] = {
        {"tillside_hub_fleet_terminals", "Terminals that ever polled, per store."},
        {"tillside_hub_fleet_stale_terminals",
         "Terminals silent for longer than [fleet] stale_after_s, per store."},
        {"tillside_hub_fleet_unhealthy_terminals",
         "Terminals with any problem `tillside-hub fleet --unhealthy` lists, per store."},
        {"tillside_hub_fleet_outbox_depth",
         "Purchases waiting on the store's terminals, as they last reported."},
        {"tillside_hub_fleet_dead_letters",
         "Purchases the hub refused for good on the store's terminals, as they last reported."},
    };
    struct ts_sql_stmt *st = NULL;
    ts_buf v[5] = {{0}};
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (ts_sql_prepare(db,
                       "SELECT store_id, count(*), sum(CASE WHEN seen_at < ?1 THEN 1 ELSE 0 END),"
                       " sum(CASE WHEN seen_at < ?1 OR problems != 0 THEN 1 ELSE 0 END),"
                       " sum(outbox_depth), sum(dead_letters) FROM fleet GROUP BY store_id"
                       " ORDER BY store_id",
                       &st) != TS_OK) {
        ts_hub_db_err(db, "fleet metrics");
        goto out;
    }
    ts_sql_bind_int64(st, 1, now_ms - (int64_t)stale_after_s * 1000);
    while (ts_sql_step(st) == TS_SQL_ROW) {
        const char *store = ts_sql_column_text(st, 0);
        for (int i = 0; store && i < 5; i++) {
            ts_buf_printf(&v[i], "%s{store=\"", m[i][0]);
            label(&v[i], store);
            ts_buf_printf(&v[i], "\"} %lld\n", (long long)ts_sql_column_int64(st, i + 1));
        }
    }
    for (int i = 0; i < 5; i++)
        ts_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s", m[i][0], m[i][1], m[i][0],
                      v[i].data ? v[i].data : "");
out:
    for (int i = 0; i < 5; i++)
        ts_buf_free(&v[i]);
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
}
