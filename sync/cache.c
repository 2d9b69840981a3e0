/*
 * The agent's SQLite cache of customer cards (see cache.h).
 *
 * Two sets of tables: the live one (cards, card_keys) that lookups read, and
 * during a 410 resync a shadow one (cards_new, card_keys_new) that the new
 * slice is written into page by page. The last page swaps them with DROP and
 * RENAME inside one transaction, so a reader sees either the whole old slice
 * or the whole new one, never a mixture and never an empty cache.
 */
#include "cache.h"
#include "dbver.h"
#include "sqlerr.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    ST_DEL_KEYS,
    ST_UPSERT_CARD,
    ST_PUT_KEY,
    ST_ERASE,
    ST_LOOKUP,
    ST_SET_META,
    ST_GET_META,
    ST_DEL_META,
    ST_COUNT,
    ST__N
};

/* The statements that write one table set; %s is "" or "_new". */
static const char *const put_sql[] = {
    [ST_DEL_KEYS] = "DELETE FROM card_keys%s WHERE cid = ?1",
    [ST_UPSERT_CARD] = ("INSERT INTO cards%s(cid, card, kv, synced_at) VALUES(?1, ?2, ?3, ?4) "
                        "ON CONFLICT(cid) DO UPDATE SET card = excluded.card, kv = excluded.kv, "
                        "synced_at = excluded.synced_at"),
    /* A key that moved to another customer follows the newest page. */
    [ST_PUT_KEY] = ("INSERT INTO card_keys%s(key, cid) VALUES(?1, ?2) "
                    "ON CONFLICT(key) DO UPDATE SET cid = excluded.cid"),
    [ST_ERASE] = "DELETE FROM cards%s WHERE cid = ?1",
};
#define PUT_N (ST_ERASE + 1)

/* The rest; the first PUT_N come from put_sql with the live table names. */
static const char *const stmt_sql[ST__N] = {
    [ST_LOOKUP] = "SELECT c.card, c.synced_at FROM card_keys k JOIN cards c ON c.cid = k.cid "
                  "WHERE k.key = ?1",
    [ST_SET_META] = "INSERT INTO meta(k, v) VALUES(?1, ?2) "
                    "ON CONFLICT(k) DO UPDATE SET v = excluded.v",
    [ST_GET_META] = "SELECT v FROM meta WHERE k = ?1",
    [ST_DEL_META] = "DELETE FROM meta WHERE k = ?1",
    [ST_COUNT] = "SELECT count(*) FROM cards",
};

struct ts_cache {
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    bool truncate_due; /* a WAL truncation after deletions has not succeeded yet */
    /* A catch-up commits several pages at once (see apply); open while some
     * applied pages and their cursor wait for that commit. */
    bool txn_open;
    int txn_pages;
    int64_t txn_start_ms; /* monotonic */
    char path[1024];
};

/* Catching up, pages are committed together up to this many or this old:
 * each commit of random-key cards rewrites ~1,000 b-tree pages, so one
 * commit per page spent most of a full sync writing the same pages again. */
#define GROUP_PAGES 32
#define GROUP_MS 1000

/* meta keys: "cursor" (live slice), "last_sync" (ms), and while a resync
 * runs "resync" = the cursor of the shadow slice ("" before its first page). */
static const char schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "PRAGMA secure_delete = ON;"
    "PRAGMA foreign_keys = ON;"
    /* A page of 500 random-key cards dirties ~1,000 b-tree pages: with the
     * default 1,000-page auto-checkpoint nearly every commit checkpointed
     * and synced, and a full sync spent most of its time there. */
    "PRAGMA wal_autocheckpoint = 16384;"
    "PRAGMA journal_size_limit = 67108864;"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS cards("
    "  cid TEXT PRIMARY KEY, card TEXT NOT NULL, kv INTEGER NOT NULL,"
    "  synced_at INTEGER NOT NULL);"
    /* Keys are the 32 HMAC bytes, not hex: half the size on 1M-card caches. */
    "CREATE TABLE IF NOT EXISTS card_keys("
    "  key BLOB PRIMARY KEY, cid TEXT NOT NULL REFERENCES cards(cid) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    /* TS_CACHE_SCHEMA_VERSION: unchanged since the first release (06a07ff);
     * a new version adds its steps here and bumps both. */
    "PRAGMA user_version = 1;";
#define TS_CACHE_SCHEMA_VERSION 1

/* The index on card_keys(cid) (erasures, key replacement) changes its name
 * with every swap (an index keeps its name across a table RENAME); these are
 * the two names it alternates between. */
static const char *const cid_index[2] = {"card_keys_cid", "card_keys_cid2"};

void ts_cache_close(struct ts_cache *c)
{
    if (!c)
        return;
    ts_cache_flush(c);
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Which of cid_index names the live card_keys index: 0 or 1, 2 when it has
 * none (a new file), -1 on error. */
static int live_index_slot(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int slot = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_master WHERE type = 'index'"
                           " AND tbl_name = 'card_keys' AND name IN (?1, ?2)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, cid_index[0], -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, cid_index[1], -1, SQLITE_STATIC);
        int st = sqlite3_step(s);
        if (st == SQLITE_ROW)
            slot = strcmp((const char *)sqlite3_column_text(s, 0), cid_index[0]) == 0 ? 0 : 1;
        else if (st == SQLITE_DONE)
            slot = 2;
    }
    sqlite3_finalize(s);
    return slot;
}

/* Creates the card_keys(cid) index unless it exists under either name. */
static int ensure_cid_index(sqlite3 *db)
{
    int slot = live_index_slot(db);
    if (slot < 0)
        return SQLITE_ERROR;
    if (slot < 2)
        return SQLITE_OK;
    return sqlite3_exec(db, "CREATE INDEX card_keys_cid ON card_keys(cid)", NULL, NULL, NULL);
}

/*
 * Opens path and prepares every statement. Read-write connections create
 * the file and the schema (idempotent); read-only ones only check that the
 * statements prepare, which fails on anything that is not our schema.
 */
static enum ts_err open_cache(const char *path, bool readonly, struct ts_cache **out, char *err,
                              size_t errsz)
{
    struct ts_cache *c = calloc(1, sizeof *c);
    if (!c)
        return TS_ERR_NOMEM;
    snprintf(c->path, sizeof c->path, "%s", path);
    int flags = SQLITE_OPEN_NOMUTEX |
                (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(c->db, 5000);
        /* A cache written by a newer agent is left alone (dbver.h). */
        if (ts_db_version_check(c->db, path, TS_CACHE_SCHEMA_VERSION, err, errsz) != TS_OK) {
            ts_cache_close(c);
            return TS_ERR_DB;
        }
        rc = sqlite3_exec(c->db, readonly ? "PRAGMA query_only = ON" : schema, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && !readonly)
        rc = ensure_cid_index(c->db);
    for (int i = 0; rc == SQLITE_OK && i < ST__N; i++) {
        char sql[256];
        if (i < PUT_N)
            snprintf(sql, sizeof sql, put_sql[i], "");
        rc = sqlite3_prepare_v3(c->db, i < PUT_N ? sql : stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &c->st[i], NULL);
    }
    if (rc != SQLITE_OK) {
        const char *why = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
        if (readonly && strstr(why, "no such table"))
            why = "not a tillside cache";
        snprintf(err, errsz, "cache %s: %s", path, why);
        ts_cache_close(c);
        return TS_ERR_DB;
    }
    *out = c;
    return TS_OK;
}

enum ts_err ts_cache_open(const char *path, struct ts_cache **out, char *err, size_t errsz)
{
    return open_cache(path, false, out, err, errsz);
}

enum ts_err ts_cache_open_readonly(const char *path, struct ts_cache **out, char *err, size_t errsz)
{
    /* SQLite would say "unable to open database file"; say what is wrong. */
    if (access(path, F_OK) != 0) {
        snprintf(err, errsz, "cache %s: no such file (has the agent run and synced yet?)", path);
        return TS_ERR_NOTFOUND;
    }
    return open_cache(path, true, out, err, errsz);
}

static sqlite3_stmt *stmt(struct ts_cache *c, int which)
{
    sqlite3_stmt *s = c->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* The error is read before the reset, which forgets the OS errno. */
static enum ts_err step_done(sqlite3_stmt *s)
{
    enum ts_err rc = ts_sqlite_err(sqlite3_db_handle(s), sqlite3_step(s), NULL);
    sqlite3_reset(s);
    return rc;
}

static enum ts_err exec(struct ts_cache *c, const char *sql)
{
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return TS_OK;
    return ts_sqlite_err(c->db, sqlite3_errcode(c->db), NULL);
}

static enum ts_err set_meta(struct ts_cache *c, const char *k, const char *v)
{
    sqlite3_stmt *s = stmt(c, ST_SET_META);
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, v, -1, SQLITE_STATIC);
    return step_done(s);
}

static enum ts_err del_meta(struct ts_cache *c, const char *k)
{
    sqlite3_stmt *s = stmt(c, ST_DEL_META);
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    return step_done(s);
}

/* A meta value into out; TS_ERR_NOTFOUND (out "") when absent. */
static enum ts_err get_meta(struct ts_cache *c, const char *k, char *out, size_t outsz)
{
    sqlite3_stmt *s = stmt(c, ST_GET_META);
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        snprintf(out, outsz, "%s", v ? v : "");
    } else if (outsz) {
        out[0] = '\0';
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? TS_OK : rc == SQLITE_DONE ? TS_ERR_NOTFOUND : TS_ERR_DB;
}

/* The write statements of one table set. */
struct tset {
    sqlite3_stmt *st[PUT_N];
    bool owned; /* prepared for this page (shadow tables), finalized after */
};

static enum ts_err shadow_prepare(struct ts_cache *c, struct tset *t)
{
    memset(t, 0, sizeof *t);
    t->owned = true;
    for (int i = 0; i < PUT_N; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, put_sql[i], "_new");
        if (sqlite3_prepare_v2(c->db, sql, -1, &t->st[i], NULL) != SQLITE_OK)
            return TS_ERR_DB;
    }
    return TS_OK;
}

static void tset_done(struct tset *t)
{
    for (int i = 0; t->owned && i < PUT_N; i++)
        sqlite3_finalize(t->st[i]);
}

static sqlite3_stmt *tstmt(struct tset *t, int which)
{
    sqlite3_stmt *s = t->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static enum ts_err put_keys(struct tset *t, const char *cid, char (*keys)[65], size_t n)
{
    for (size_t k = 0; k < n; k++) {
        uint8_t raw[32];
        size_t len;
        if (ts_hex_decode(keys[k], raw, sizeof raw, &len) != TS_OK || len != 32)
            return TS_ERR_INVAL;
        sqlite3_stmt *s = tstmt(t, ST_PUT_KEY);
        sqlite3_bind_blob(s, 1, raw, 32, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, cid, -1, SQLITE_STATIC);
        int rc = step_done(s);
        if (rc)
            return rc;
    }
    return TS_OK;
}

/* Writes one upsert: the card row, then its keys (every key version the
 * page carries) replacing the old ones. */
static enum ts_err put_card(struct tset *t, const struct ts_feed_item *it, int kv, int64_t now_ms)
{
    sqlite3_stmt *s = tstmt(t, ST_UPSERT_CARD);
    sqlite3_bind_text(s, 1, it->cid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, it->card, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, kv);
    sqlite3_bind_int64(s, 4, now_ms);
    int rc = step_done(s);
    if (rc)
        return rc;
    s = tstmt(t, ST_DEL_KEYS);
    sqlite3_bind_text(s, 1, it->cid, -1, SQLITE_STATIC);
    if ((rc = step_done(s)) || (rc = put_keys(t, it->cid, it->keys, it->nkeys)))
        return rc;
    return put_keys(t, it->cid, it->prev_keys, it->nprev_keys);
}

static enum ts_err erase_card(struct tset *t, const char *cid)
{
    sqlite3_stmt *s = tstmt(t, ST_ERASE);
    sqlite3_bind_text(s, 1, cid, -1, SQLITE_STATIC);
    return step_done(s);
}

/*
 * After erasures: moves every page into the main file and truncates the WAL,
 * so no copy of an erased card survives in an old WAL frame. Readers are
 * waited for by the busy handler; should one hold on past it (or a writer
 * get in between), the erasure is committed all the same and the truncation
 * is tried again after every later write until it succeeds.
 */
static void checkpoint_truncate(struct ts_cache *c)
{
    int log = -1, done = -1;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
    /* An in-memory or rollback-journal database has no WAL: nothing due. */
    c->truncate_due = rc != SQLITE_OK || log > 0;
    if (c->truncate_due)
        TS_WARN("cache", "%s: WAL not truncated yet after a deletion (%s); will retry", c->path,
                rc != SQLITE_OK ? sqlite3_errmsg(c->db) : "frames left");
}

/*
 * Replaces the live tables by the shadow ones (inside the caller's
 * transaction). The old tables are dropped, which with secure_delete zeroes
 * their pages. RENAME also rewrites card_keys_new's foreign key to point at
 * the renamed cards table; the shadow index already has the name the old
 * live one did not.
 */
static enum ts_err swap_in(struct ts_cache *c)
{
    return exec(c, "DROP TABLE card_keys; DROP TABLE cards;"
                   "ALTER TABLE cards_new RENAME TO cards;"
                   "ALTER TABLE card_keys_new RENAME TO card_keys;");
}

/*
 * One transaction for the whole page (and its cursor when save_cursor):
 * any failure rolls all of it back, so the cache is always at some page
 * boundary the hub sent. During a resync, upserts go to the shadow tables,
 * erasures to both (an erasure must not wait for the resync to finish), and
 * the last page swaps the shadow tables in.
 */
enum ts_err ts_cache_flush(struct ts_cache *c)
{
    if (!c || !c->txn_open)
        return TS_OK;
    int rc = exec(c, "COMMIT");
    if (rc != TS_OK)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    c->txn_open = false;
    return rc;
}

static enum ts_err apply(struct ts_cache *c, const struct ts_feed_page *page, int64_t now_ms,
                         bool save_cursor, char *err, size_t errsz)
{
    bool erased = false, resync = false, swapped = false;
    struct tset live = {0}, shadow = {0};
    memcpy(live.st, c->st, sizeof live.st); /* ST_DEL_KEYS..ST_ERASE come first */
    int rc = TS_OK;
    if (!c->txn_open) {
        if ((rc = exec(c, "BEGIN IMMEDIATE")))
            goto out;
        c->txn_open = true;
        c->txn_pages = 0;
        c->txn_start_ms = ts_now_mono_ms();
    }
    if (save_cursor) {
        char rcur[TS_FEED_MAX_CURSOR + 1];
        int g = get_meta(c, "resync", rcur, sizeof rcur);
        if (g == TS_ERR_DB) {
            rc = TS_ERR_DB;
            goto out;
        }
        resync = g == TS_OK;
        if (resync && (rc = shadow_prepare(c, &shadow)))
            goto out;
    }
    struct tset *into = resync ? &shadow : &live;
    for (size_t i = 0; i < page->nitems && rc == TS_OK; i++) {
        const struct ts_feed_item *it = &page->items[i];
        if (it->op == TS_FEED_UPSERT) {
            rc = put_card(into, it, page->kv, now_ms);
        } else {
            rc = erase_card(&live, it->cid);
            if (rc == TS_OK && resync)
                rc = erase_card(&shadow, it->cid);
            erased = true;
        }
    }
    tset_done(&shadow); /* before a swap: no statement may hold the tables */
    if (rc == TS_OK && save_cursor) {
        char ms[32];
        snprintf(ms, sizeof ms, "%lld", (long long)now_ms);
        if (resync && !page->more) {
            rc = swap_in(c);
            if (rc == TS_OK)
                rc = del_meta(c, "resync");
            swapped = true;
        }
        if (rc == TS_OK)
            rc = set_meta(c, resync && !swapped ? "resync" : "cursor", page->cursor);
        if (rc == TS_OK)
            rc = set_meta(c, "last_sync", ms);
    }
    /* Mid catch-up the commit may wait for the next pages: the cursor in
     * the transaction still matches the cards in it, so a crash loses only
     * pages that will be fetched again. Erasures and a finished slice are
     * committed at once. */
    c->txn_pages++;
    if (rc == TS_OK &&
        !(save_cursor && page->more && !erased && !swapped && c->txn_pages < GROUP_PAGES &&
          ts_now_mono_ms() - c->txn_start_ms < GROUP_MS))
        rc = ts_cache_flush(c);
    else if (rc == TS_OK)
        return TS_OK;
out:
    if (rc != TS_OK) {
        if (err)
            snprintf(err, errsz, "cache %s: %s", c->path,
                     rc == TS_ERR_INVAL ? "malformed key in page" : sqlite3_errmsg(c->db));
        tset_done(&shadow);
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        c->txn_open = false;
    } else if (erased || swapped || c->truncate_due) {
        checkpoint_truncate(c);
    }
    return rc;
}

enum ts_err ts_cache_apply_page(struct ts_cache *c, const struct ts_feed_page *page, int64_t now_ms,
                                char *err, size_t errsz)
{
    return apply(c, page, now_ms, true, err, errsz);
}

enum ts_err ts_cache_put_live(struct ts_cache *c, const struct ts_feed_page *one, int64_t now_ms)
{
    return apply(c, one, now_ms, false, NULL, 0);
}

enum ts_err ts_cache_resync_begin(struct ts_cache *c)
{
    if (ts_cache_flush(c) != TS_OK)
        return TS_ERR_DB;
    int slot = live_index_slot(c->db);
    if (slot < 0)
        return TS_ERR_DB;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE;"
             "DROP TABLE IF EXISTS card_keys_new; DROP TABLE IF EXISTS cards_new;"
             "CREATE TABLE cards_new("
             "  cid TEXT PRIMARY KEY, card TEXT NOT NULL, kv INTEGER NOT NULL,"
             "  synced_at INTEGER NOT NULL);"
             "CREATE TABLE card_keys_new("
             "  key BLOB PRIMARY KEY,"
             "  cid TEXT NOT NULL REFERENCES cards_new(cid) ON DELETE CASCADE) WITHOUT ROWID;"
             "CREATE INDEX %s ON card_keys_new(cid);"
             "INSERT INTO meta(k, v) VALUES('resync', '')"
             "  ON CONFLICT(k) DO UPDATE SET v = excluded.v;"
             "COMMIT;",
             cid_index[slot == 0 ? 1 : 0]);
    int rc = exec(c, sql);
    if (rc != TS_OK)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

enum ts_err ts_cache_position(struct ts_cache *c, char *cursor, size_t cursorsz, bool *resyncing)
{
    int rc = get_meta(c, "resync", cursor, cursorsz);
    if (rc == TS_OK) {
        *resyncing = true;
        return TS_OK;
    }
    if (rc != TS_ERR_NOTFOUND)
        return rc;
    *resyncing = false;
    rc = get_meta(c, "cursor", cursor, cursorsz);
    return rc == TS_ERR_NOTFOUND ? TS_OK : rc;
}

enum ts_err ts_cache_prune(struct ts_cache *c, int64_t now_ms, int64_t retention_ms,
                           int64_t max_cards, int64_t *removed)
{
    sqlite3_stmt *s = NULL;
    int64_t gone = 0;
    int rc = ts_cache_flush(c);
    if (rc == TS_OK)
        rc = exec(c, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    if (sqlite3_prepare_v2(c->db, "DELETE FROM cards WHERE synced_at < ?1", -1, &s, NULL) !=
        SQLITE_OK) {
        rc = TS_ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(s, 1, now_ms - retention_ms);
    if ((rc = step_done(s)))
        goto out;
    gone += sqlite3_changes(c->db);
    sqlite3_finalize(s);
    s = NULL;
    int64_t n = ts_cache_count(c);
    if (n < 0) {
        rc = TS_ERR_DB;
        goto out;
    }
    if (max_cards >= 0 && n > max_cards) {
        /* Least recently synced first; cid breaks ties so the choice is
         * the same on every run. */
        if (sqlite3_prepare_v2(c->db,
                               "DELETE FROM cards WHERE cid IN (SELECT cid FROM cards"
                               " ORDER BY synced_at, cid LIMIT ?1)",
                               -1, &s, NULL) != SQLITE_OK) {
            rc = TS_ERR_DB;
            goto out;
        }
        sqlite3_bind_int64(s, 1, n - max_cards);
        if ((rc = step_done(s)))
            goto out;
        gone += sqlite3_changes(c->db);
    }
    rc = exec(c, "COMMIT");
out:
    sqlite3_finalize(s);
    if (rc != TS_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (gone || c->truncate_due)
        checkpoint_truncate(c);
    if (removed)
        *removed = gone;
    return TS_OK;
}

enum ts_err ts_cache_lookup(struct ts_cache *c, const char *key_hex, char **card_json,
                            int64_t *synced_at_ms)
{
    uint8_t raw[32];
    size_t n;
    if (ts_hex_decode(key_hex, raw, sizeof raw, &n) != TS_OK || n != 32)
        return TS_ERR_INVAL;
    sqlite3_stmt *s = stmt(c, ST_LOOKUP);
    sqlite3_bind_blob(s, 1, raw, 32, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 0);
        char *card = text ? strdup(text) : NULL;
        int64_t at = sqlite3_column_int64(s, 1);
        sqlite3_reset(s);
        if (!card)
            return TS_ERR_NOMEM;
        *card_json = card;
        if (synced_at_ms)
            *synced_at_ms = at;
        return TS_OK;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? TS_ERR_NOTFOUND : TS_ERR_DB;
}

int64_t ts_cache_count(struct ts_cache *c)
{
    sqlite3_stmt *s = stmt(c, ST_COUNT);
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    return n;
}

enum ts_err ts_cache_cursor(struct ts_cache *c, char *out, size_t outsz)
{
    int rc = get_meta(c, "cursor", out, outsz);
    return rc == TS_ERR_NOTFOUND ? TS_OK : rc;
}

int64_t ts_cache_last_sync(struct ts_cache *c)
{
    sqlite3_stmt *s = stmt(c, ST_GET_META);
    sqlite3_bind_text(s, 1, "last_sync", -1, SQLITE_STATIC);
    int64_t ms = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return ms;
}

enum ts_err ts_cache_reset(struct ts_cache *c)
{
    ts_cache_flush(c);
    int rc = sqlite3_exec(c->db,
                          "BEGIN IMMEDIATE; DELETE FROM card_keys; DELETE FROM cards;"
                          "DROP TABLE IF EXISTS card_keys_new; DROP TABLE IF EXISTS cards_new;"
                          "DELETE FROM meta WHERE k IN ('cursor', 'resync'); COMMIT;",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return TS_ERR_DB;
    }
    checkpoint_truncate(c);
    return TS_OK;
}
