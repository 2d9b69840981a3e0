/* The agent's SQLite cache of customer cards (see cache.h). */
#include "cache.h"

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
    ST_COUNT,
    ST__N
};

static const char *const stmt_sql[ST__N] = {
    [ST_DEL_KEYS] = "DELETE FROM card_keys WHERE cid = ?1",
    [ST_UPSERT_CARD] = "INSERT INTO cards(cid, card, kv, synced_at) VALUES(?1, ?2, ?3, ?4) "
                       "ON CONFLICT(cid) DO UPDATE SET card = excluded.card, kv = excluded.kv, "
                       "synced_at = excluded.synced_at",
    /* A key that moved to another customer follows the newest page. */
    [ST_PUT_KEY] = "INSERT INTO card_keys(key, cid) VALUES(?1, ?2) "
                   "ON CONFLICT(key) DO UPDATE SET cid = excluded.cid",
    [ST_ERASE] = "DELETE FROM cards WHERE cid = ?1",
    [ST_LOOKUP] = "SELECT c.card, c.synced_at FROM card_keys k JOIN cards c ON c.cid = k.cid "
                  "WHERE k.key = ?1",
    [ST_SET_META] = "INSERT INTO meta(k, v) VALUES(?1, ?2) "
                    "ON CONFLICT(k) DO UPDATE SET v = excluded.v",
    [ST_GET_META] = "SELECT v FROM meta WHERE k = ?1",
    [ST_COUNT] = "SELECT count(*) FROM cards",
};

struct ts_cache {
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    char path[1024];
};

static const char schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = NORMAL;"
    "PRAGMA secure_delete = ON;"
    "PRAGMA foreign_keys = ON;"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS cards("
    "  cid TEXT PRIMARY KEY, card TEXT NOT NULL, kv INTEGER NOT NULL,"
    "  synced_at INTEGER NOT NULL);"
    /* Keys are the 32 HMAC bytes, not hex: half the size on 1M-card caches. */
    "CREATE TABLE IF NOT EXISTS card_keys("
    "  key BLOB PRIMARY KEY, cid TEXT NOT NULL REFERENCES cards(cid) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS card_keys_cid ON card_keys(cid);"
    "PRAGMA user_version = 1;";

void ts_cache_close(struct ts_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/*
 * Opens path and prepares every statement. Read-write connections create
 * the file and the schema (idempotent); read-only ones only check that the
 * statements prepare, which fails on anything that is not our schema.
 */
static int open_cache(const char *path, bool readonly, struct ts_cache **out, char *err,
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
        rc = sqlite3_exec(c->db, readonly ? "PRAGMA query_only = ON" : schema, NULL, NULL, NULL);
    }
    for (int i = 0; rc == SQLITE_OK && i < ST__N; i++)
        rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
                                NULL);
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

int ts_cache_open(const char *path, struct ts_cache **out, char *err, size_t errsz)
{
    return open_cache(path, false, out, err, errsz);
}

int ts_cache_open_readonly(const char *path, struct ts_cache **out, char *err, size_t errsz)
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

static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? TS_OK : (rc == SQLITE_FULL ? TS_ERR_FULL : TS_ERR_DB);
}

static int set_meta(struct ts_cache *c, const char *k, const char *v)
{
    sqlite3_stmt *s = stmt(c, ST_SET_META);
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, v, -1, SQLITE_STATIC);
    return step_done(s);
}

/* Writes one upsert: the card row, then its keys replacing the old ones. */
static int put_card(struct ts_cache *c, const struct ts_feed_item *it, int kv, int64_t now_ms)
{
    sqlite3_stmt *s = stmt(c, ST_UPSERT_CARD);
    sqlite3_bind_text(s, 1, it->cid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, it->card, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, kv);
    sqlite3_bind_int64(s, 4, now_ms);
    int rc = step_done(s);
    if (rc)
        return rc;
    s = stmt(c, ST_DEL_KEYS);
    sqlite3_bind_text(s, 1, it->cid, -1, SQLITE_STATIC);
    if ((rc = step_done(s)))
        return rc;
    for (size_t k = 0; k < it->nkeys; k++) {
        uint8_t raw[32];
        size_t n;
        if (ts_hex_decode(it->keys[k], raw, sizeof raw, &n) != TS_OK || n != 32)
            return TS_ERR_INVAL;
        s = stmt(c, ST_PUT_KEY);
        sqlite3_bind_blob(s, 1, raw, 32, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, it->cid, -1, SQLITE_STATIC);
        if ((rc = step_done(s)))
            return rc;
    }
    return TS_OK;
}

/*
 * After erasures: moves every page into the main file and truncates the WAL,
 * so no copy of an erased card survives in an old WAL frame. Readers are
 * waited for by the busy handler; should one hold on past it, the erasure
 * is still committed and the next erasure (or close) retries.
 */
static void checkpoint_truncate(struct ts_cache *c)
{
    sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

/*
 * One transaction for the whole page (and its cursor when save_cursor):
 * any failure rolls all of it back, so the cache is always at some page
 * boundary the hub sent.
 */
static int apply(struct ts_cache *c, const struct ts_feed_page *page, int64_t now_ms,
                 bool save_cursor, char *err, size_t errsz)
{
    bool erased = false;
    int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? TS_OK
                                                                                   : TS_ERR_DB;
    if (rc)
        goto out;
    for (size_t i = 0; i < page->nitems && rc == TS_OK; i++) {
        const struct ts_feed_item *it = &page->items[i];
        if (it->op == TS_FEED_UPSERT) {
            rc = put_card(c, it, page->kv, now_ms);
        } else {
            sqlite3_stmt *s = stmt(c, ST_ERASE);
            sqlite3_bind_text(s, 1, it->cid, -1, SQLITE_STATIC);
            rc = step_done(s);
            erased = true;
        }
    }
    if (rc == TS_OK && save_cursor) {
        char ms[32];
        snprintf(ms, sizeof ms, "%lld", (long long)now_ms);
        rc = set_meta(c, "cursor", page->cursor);
        if (rc == TS_OK)
            rc = set_meta(c, "last_sync", ms);
    }
    if (rc == TS_OK && sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = sqlite3_errcode(c->db) == SQLITE_FULL ? TS_ERR_FULL : TS_ERR_DB;
out:
    if (rc != TS_OK) {
        if (err)
            snprintf(err, errsz, "cache %s: %s", c->path,
                     rc == TS_ERR_INVAL ? "malformed key in page" : sqlite3_errmsg(c->db));
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    } else if (erased) {
        checkpoint_truncate(c);
    }
    return rc;
}

int ts_cache_apply_page(struct ts_cache *c, const struct ts_feed_page *page, int64_t now_ms,
                        char *err, size_t errsz)
{
    return apply(c, page, now_ms, true, err, errsz);
}

int ts_cache_put_live(struct ts_cache *c, const struct ts_feed_page *one, int64_t now_ms)
{
    return apply(c, one, now_ms, false, NULL, 0);
}

int ts_cache_lookup(struct ts_cache *c, const char *key_hex, char **card_json,
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

int ts_cache_cursor(struct ts_cache *c, char *out, size_t outsz)
{
    sqlite3_stmt *s = stmt(c, ST_GET_META);
    sqlite3_bind_text(s, 1, "cursor", -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(out, outsz, "%s", (const char *)sqlite3_column_text(s, 0));
    else if (outsz)
        out[0] = '\0';
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? TS_OK : TS_ERR_DB;
}

int64_t ts_cache_last_sync(struct ts_cache *c)
{
    sqlite3_stmt *s = stmt(c, ST_GET_META);
    sqlite3_bind_text(s, 1, "last_sync", -1, SQLITE_STATIC);
    int64_t ms = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return ms;
}

int ts_cache_reset(struct ts_cache *c)
{
    int rc = sqlite3_exec(c->db,
                          "BEGIN IMMEDIATE; DELETE FROM card_keys; DELETE FROM cards;"
                          "DELETE FROM meta WHERE k = 'cursor'; COMMIT;",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return TS_ERR_DB;
    }
    checkpoint_truncate(c);
    return TS_OK;
}
