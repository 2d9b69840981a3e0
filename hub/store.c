/*
 * The hub's SQLite store: schema, the transaction around a batch, and the
 * read side (feed pages, lookups, stats).
 *
 * The feed is a table with one row per (store, customer) stamped with a
 * global sequence number from meta.seq. Every change to a customer re-stamps
 * their rows, so "WHERE store_id=? AND seq>? ORDER BY seq" returns each
 * customer once, at their latest state, and a cursor is just a seq. Writes are
 * serialized on the one connection, so a reader never sees seq N+1 committed
 * before seq N.
 */
#include "store_int.h"
#include "purchases.h"
#include "dbver.h"

#include <jansson.h>
#include <fcntl.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
    "INSERT INTO meta(k, v) VALUES('schema', 1), ('seq', 0), ('events', 0), ('horizon', 0)"
    "  ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS customers("
    "  id TEXT PRIMARY KEY, cid TEXT NOT NULL, name TEXT, first_name TEXT, last_name TEXT,"
    "  tier TEXT, points INTEGER, consent INTEGER NOT NULL DEFAULT 1, home_store TEXT,"
    "  suggested_id TEXT, suggested_name TEXT, card TEXT, keys TEXT, prev_keys TEXT,"
    "  seq INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL DEFAULT 0);"
    /* anonymousId → the userId an identify tied it to */
    "CREATE TABLE IF NOT EXISTS anon_map(anonymous_id TEXT PRIMARY KEY, customer TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS anon_map_customer ON anon_map(customer);"
    /* key under the current tenant key, prev_key under the second version */
    "CREATE TABLE IF NOT EXISTS identifiers("
    "  key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, customer TEXT NOT NULL,"
    "  prev_key TEXT);"
    "CREATE INDEX IF NOT EXISTS identifiers_customer ON identifiers(customer);"
    "CREATE TABLE IF NOT EXISTS products(product_id TEXT PRIMARY KEY, name TEXT, price REAL);"
    /* one row per Product Viewed, pruned per customer when the card is rebuilt */
    "CREATE TABLE IF NOT EXISTS views(customer TEXT NOT NULL, product_id TEXT NOT NULL,"
    "  at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS views_customer ON views(customer, at);"
    "CREATE TABLE IF NOT EXISTS cart(customer TEXT NOT NULL, product_id TEXT NOT NULL,"
    "  quantity INTEGER NOT NULL, price REAL, at INTEGER NOT NULL,"
    "  PRIMARY KEY(customer, product_id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS wishlist(customer TEXT NOT NULL, product_id TEXT NOT NULL,"
    "  at INTEGER NOT NULL, PRIMARY KEY(customer, product_id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS orders(order_id TEXT PRIMARY KEY, customer TEXT NOT NULL,"
    "  total REAL, currency TEXT, status TEXT NOT NULL, at INTEGER NOT NULL, status_at INTEGER);"
    /* products a customer ordered, and who viewed a product (suggest.c) */
    "CREATE TABLE IF NOT EXISTS bought(customer TEXT NOT NULL, product_id TEXT NOT NULL,"
    "  at INTEGER NOT NULL, PRIMARY KEY(customer, product_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS views_product ON views(product_id, at);"
    "CREATE INDEX IF NOT EXISTS orders_customer ON orders(customer, at);"
    "CREATE TABLE IF NOT EXISTS processed(message_id TEXT PRIMARY KEY, at INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    /* op 'upsert' or 'erase'; cid kept so an erase outlives the customer row,
     * at (ms) says when an erase row became one, for pruning tombstones. An
     * erased customer's rows are keyed 'erased:<cid>', not by their id. */
    "CREATE TABLE IF NOT EXISTS feed(store_id TEXT NOT NULL, customer TEXT NOT NULL,"
    "  seq INTEGER NOT NULL, op TEXT NOT NULL, cid TEXT NOT NULL, at INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(store_id, customer)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS feed_seq ON feed(store_id, seq);"
    /* a card rebuild finds every store row of one customer */
    "CREATE INDEX IF NOT EXISTS feed_customer ON feed(customer);";

static const char *const stmt_sql[ST_COUNT] = {
    [ST_SEQ_NEXT] = "UPDATE meta SET v = v + 1 WHERE k = 'seq' RETURNING v",
    [ST_EVENTS_ADD] = "UPDATE meta SET v = v + ?1 WHERE k = 'events'",
    [ST_PROCESSED_ADD] = "INSERT INTO processed(message_id, at) VALUES(?1, ?2)"
                         " ON CONFLICT DO NOTHING",
    [ST_CUST_EXISTS] = "SELECT 1 FROM customers WHERE id = ?1",
    [ST_CUST_INSERT] = "INSERT INTO customers(id, cid, created) VALUES(?1, ?2, ?3)",
    [ST_CUST_TRAITS] =
        "UPDATE customers SET tier = coalesce(?2, tier),"
        " points = coalesce(?3, points), consent = coalesce(?4, consent),"
        " home_store = coalesce(?5, home_store),"
        " suggested_name = CASE WHEN CAST(?6 AS TEXT) IS NULL THEN suggested_name ELSE ?7 END,"
        " suggested_id = coalesce(?6, suggested_id) WHERE id = ?1",
    [ST_CUST_NAME] = "UPDATE customers SET name = ?2 WHERE id = ?1",
    [ST_CUST_SPLIT_NAME] =
        "UPDATE customers SET first_name = coalesce(?2, first_name),"
        " last_name = coalesce(?3, last_name),"
        " name = nullif(trim(coalesce(?2, first_name, '') || ' ' || coalesce(?3, last_name, '')),"
        " '') WHERE id = ?1",
    [ST_ANON_GET] = "SELECT customer FROM anon_map WHERE anonymous_id = ?1",
    [ST_ANON_SET] = "INSERT INTO anon_map(anonymous_id, customer) VALUES(?1, ?2)"
                    " ON CONFLICT(anonymous_id) DO UPDATE SET customer = excluded.customer",
    [ST_IDENT_OWNER] = "SELECT customer FROM identifiers WHERE key = ?1",
    [ST_IDENT_SET] = "INSERT INTO identifiers(key, kind, value, customer, prev_key)"
                     " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(key) DO UPDATE SET"
                     " customer = excluded.customer, prev_key = excluded.prev_key",
    [ST_PRODUCT_UPSERT] = "INSERT INTO products(product_id, name, price) VALUES(?1, ?2, ?3)"
                          " ON CONFLICT(product_id) DO UPDATE SET"
                          " name = coalesce(excluded.name, products.name),"
                          " price = coalesce(excluded.price, products.price)",
    [ST_VIEW_ADD] = "INSERT INTO views(customer, product_id, at) VALUES(?1, ?2, ?3)",
    [ST_CART_ADD] = "INSERT INTO cart(customer, product_id, quantity, price, at)"
                    " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(customer, product_id) DO UPDATE SET"
                    " quantity = min(cart.quantity + excluded.quantity, 1000000),"
                    " price = coalesce(excluded.price, cart.price), at = excluded.at",
    [ST_CART_SUB] =
        "UPDATE cart SET quantity = quantity - ?3 WHERE customer = ?1 AND product_id = ?2",
    [ST_CART_DEL] = "DELETE FROM cart WHERE customer = ?1 AND product_id = ?2",
    [ST_CART_DEL_EMPTY] = "DELETE FROM cart WHERE customer = ?1 AND product_id = ?2"
                          " AND quantity <= 0",
    [ST_WISH_ADD] = "INSERT INTO wishlist(customer, product_id, at) VALUES(?1, ?2, ?3)"
                    " ON CONFLICT(customer, product_id) DO UPDATE SET at = excluded.at",
    [ST_WISH_DEL] = "DELETE FROM wishlist WHERE customer = ?1 AND product_id = ?2",
    [ST_ORDER_UPSERT] =
        "INSERT INTO orders(order_id, customer, total, currency, status, at)"
        " VALUES(?1, ?2, ?3, ?4, 'placed', ?5) ON CONFLICT(order_id) DO UPDATE SET"
        " customer = excluded.customer, total = coalesce(excluded.total, orders.total),"
        " currency = coalesce(excluded.currency, orders.currency), at = excluded.at",
    /* ?1 = surviving customer, ?2 = the anonymous one merged into it; the
     * survivor's own traits win, consent needs both to agree. */
    [ST_MERGE_TRAITS] =
        "UPDATE customers SET (name, first_name, last_name, tier, points, home_store,"
        " suggested_id, suggested_name, consent) = (SELECT coalesce(t.name, f.name),"
        " coalesce(t.first_name, f.first_name), coalesce(t.last_name, f.last_name),"
        " coalesce(t.tier, f.tier), coalesce(t.points, f.points),"
        " coalesce(t.home_store, f.home_store), coalesce(t.suggested_id, f.suggested_id),"
        " CASE WHEN t.suggested_id IS NULL THEN f.suggested_name ELSE t.suggested_name END,"
        " min(t.consent, f.consent) FROM customers t, customers f WHERE t.id = ?1 AND f.id = ?2)"
        " WHERE id = ?1",
    [ST_MERGE_VIEWS] = "UPDATE views SET customer = ?1 WHERE customer = ?2",
    [ST_MERGE_CART] = "INSERT INTO cart(customer, product_id, quantity, price, at)"
                      " SELECT CAST(?1 AS TEXT), product_id, quantity, price, at FROM cart"
                      " WHERE customer = ?2 ON CONFLICT(customer, product_id) DO UPDATE SET"
                      " quantity = min(cart.quantity + excluded.quantity, 1000000)",
    [ST_MERGE_CART_DEL] = "DELETE FROM cart WHERE customer = ?2",
    [ST_MERGE_WISH] = "INSERT INTO wishlist(customer, product_id, at)"
                      " SELECT CAST(?1 AS TEXT), product_id, at FROM wishlist WHERE customer = ?2"
                      " ON CONFLICT DO NOTHING",
    [ST_MERGE_WISH_DEL] = "DELETE FROM wishlist WHERE customer = ?2",
    [ST_MERGE_ORDERS] = "UPDATE orders SET customer = ?1 WHERE customer = ?2",
    [ST_MERGE_IDENT] = "UPDATE identifiers SET customer = ?1 WHERE customer = ?2",
    [ST_MERGE_ANON] = "UPDATE anon_map SET customer = ?1 WHERE customer = ?2",
    [ST_FEED_ERASE_ALL] =
        "UPDATE feed SET op = 'erase', seq = ?2, at = ?3 WHERE customer = ?1 AND op = 'upsert'",
    [ST_CUST_DELETE] = "DELETE FROM customers WHERE id = ?1",
    [ST_LOAD_CUST] = "SELECT cid, name, tier, points, consent, home_store, suggested_id,"
                     " suggested_name FROM customers WHERE id = ?1",
    [ST_VIEWS_PRUNE] = "DELETE FROM views WHERE customer = ?1 AND (at < ?2 OR rowid IN"
                       " (SELECT rowid FROM views WHERE customer = ?1 ORDER BY at DESC"
                       " LIMIT -1 OFFSET ?3))",
    [ST_LOAD_VIEWS] = "SELECT v.product_id, p.name, v.at FROM views v"
                      " LEFT JOIN products p ON p.product_id = v.product_id"
                      " WHERE v.customer = ?1 ORDER BY v.product_id",
    [ST_LOAD_CART] = "SELECT c.product_id, p.name, c.price, c.quantity FROM cart c"
                     " LEFT JOIN products p ON p.product_id = c.product_id"
                     " WHERE c.customer = ?1 ORDER BY c.at DESC, c.product_id LIMIT ?2",
    [ST_LOAD_WISH] = "SELECT w.product_id, p.name FROM wishlist w"
                     " LEFT JOIN products p ON p.product_id = w.product_id"
                     " WHERE w.customer = ?1 ORDER BY w.at DESC, w.product_id LIMIT ?2",
    [ST_LOAD_ORDERS] = "SELECT order_id, total, currency, status, at, store_id FROM orders"
                       " WHERE customer = ?1 ORDER BY at DESC, order_id LIMIT ?2",
    [ST_PRODUCT_NAME] = "SELECT name FROM products WHERE product_id = ?1",
    [ST_LOAD_KEYS] = "SELECT key, prev_key FROM identifiers WHERE customer = ?1"
                     " ORDER BY kind = 'loyalty' DESC, key LIMIT ?2",
    [ST_CUST_STAMP] =
        "UPDATE customers SET card = ?2, keys = ?3, seq = ?4, updated = ?5, prev_keys = ?6"
        " WHERE id = ?1",
    [ST_FEED_UPSERT] = "INSERT INTO feed(store_id, customer, seq, op, cid)"
                       " VALUES(?1, ?2, ?3, 'upsert', ?4) ON CONFLICT(store_id, customer)"
                       " DO UPDATE SET seq = excluded.seq, op = 'upsert', cid = excluded.cid",
    [ST_FEED_ERASE_OTHERS] = "UPDATE feed SET op = 'erase', seq = ?2, at = ?4 WHERE customer = ?1"
                             " AND op = 'upsert' AND store_id IS DISTINCT FROM ?3",
    /* An order status from an event newer than the one that set the
     * current status (events may arrive out of order); an order first
     * heard of through a status event is recorded with it. */
    [ST_ORDER_STATUS] =
        "INSERT INTO orders(order_id, customer, total, currency, status, at, status_at)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT(order_id) DO UPDATE SET"
        " status = excluded.status, status_at = excluded.status_at,"
        " total = coalesce(excluded.total, orders.total),"
        " currency = coalesce(excluded.currency, orders.currency)"
        " WHERE excluded.status_at >= coalesce(orders.status_at, 0)",
    [ST_BOUGHT_ADD] =
        "INSERT INTO bought(customer, product_id, at) VALUES(?1, ?2, ?3)"
        " ON CONFLICT(customer, product_id) DO UPDATE SET at = max(bought.at, excluded.at)",
    [ST_MERGE_BOUGHT] = "INSERT INTO bought(customer, product_id, at)"
                        " SELECT CAST(?1 AS TEXT), product_id, at FROM bought WHERE customer = ?2"
                        " ON CONFLICT DO NOTHING",
    [ST_MERGE_BOUGHT_DEL] = "DELETE FROM bought WHERE customer = ?2",
    /* ?1 customer, ?2 their top interest, ?3 how many recent viewers of it
     * to ask. A peer counts once per product, a purchase three times a
     * view; two views' worth of support at least. */
    [ST_SUGGEST] =
        "WITH peers AS (SELECT DISTINCT r.customer FROM (SELECT customer FROM views"
        "   WHERE product_id = ?2 AND customer <> ?1 ORDER BY at DESC LIMIT ?3) r"
        "   JOIN customers c ON c.id = r.customer AND c.consent = 1),"
        " seen(product_id, customer, w) AS (SELECT v.product_id, v.customer, 1 FROM views v"
        "   JOIN peers p ON p.customer = v.customer UNION ALL SELECT b.product_id, b.customer, 3"
        "   FROM bought b JOIN peers p ON p.customer = b.customer),"
        " per AS (SELECT product_id, max(w) AS w FROM seen GROUP BY product_id, customer)"
        " SELECT per.product_id, pr.name, sum(per.w) AS score FROM per"
        " LEFT JOIN products pr ON pr.product_id = per.product_id"
        " WHERE per.product_id <> ?2"
        "  AND per.product_id NOT IN (SELECT product_id FROM views WHERE customer = ?1)"
        "  AND per.product_id NOT IN (SELECT product_id FROM bought WHERE customer = ?1)"
        "  AND per.product_id NOT IN (SELECT product_id FROM cart WHERE customer = ?1)"
        "  AND per.product_id NOT IN (SELECT product_id FROM wishlist WHERE customer = ?1)"
        " GROUP BY per.product_id, pr.name HAVING sum(per.w) >= 2 ORDER BY score DESC, "
        "per.product_id LIMIT 1",
};

#define FEED_CHANNEL "tillside_feed"

/* Where PostgreSQL needs other words for the same statement. */
static const char *const stmt_sql_pg[ST_COUNT] = {
    [ST_VIEWS_PRUNE] = "DELETE FROM views WHERE customer = ?1 AND (at < ?2 OR ctid IN"
                       " (SELECT ctid FROM views WHERE customer = ?1 ORDER BY at DESC OFFSET ?3))",
};

static int db_err(struct ts_sql *db, const char *what)
{
    int code = ts_sql_errcode(db);
    TS_ERROR("hub", "store: %s: %s", what, ts_sql_errmsg(db));
    return code == TS_SQL_FULL ? TS_ERR_FULL : TS_ERR_DB;
}

int ts_hub_db_err(struct ts_hub_store *s, const char *what)
{
    return db_err(s->db, what);
}

/* The read side: its own connection when there is one. */
static struct ts_sql *rd_lock(struct ts_hub_store *s)
{
    pthread_mutex_lock(s->rdb ? &s->rmu : &s->mu);
    return s->rdb ? s->rdb : s->db;
}

static void rd_unlock(struct ts_hub_store *s)
{
    pthread_mutex_unlock(s->rdb ? &s->rmu : &s->mu);
}

struct ts_sql_stmt *ts_hub_st(struct ts_hub_store *s, enum stmt_id id)
{
    if (!s->st[id]) {
        const char *sql = ts_sql_is_pg(s->db) && stmt_sql_pg[id] ? stmt_sql_pg[id] : stmt_sql[id];
        if (ts_sql_prepare(s->db, sql, &s->st[id]) != TS_SQL_OK) {
            ts_hub_db_err(s, sql);
            return NULL;
        }
        return s->st[id];
    }
    ts_sql_reset(s->st[id]);
    ts_sql_clear_bindings(s->st[id]);
    return s->st[id];
}

int ts_hub_next_seq(struct ts_hub_store *s, int64_t *seq)
{
    struct ts_sql_stmt *st = ts_hub_st(s, ST_SEQ_NEXT);
    if (!st || ts_sql_step(st) != TS_SQL_ROW)
        return ts_hub_db_err(s, "next seq");
    *seq = ts_sql_column_int64(st, 0);
    ts_sql_reset(st);
    /* hubs sharing the database wake their long-polls when this commits */
    ts_sql_notify_on_commit(s->db, FEED_CHANNEL);
    return TS_OK;
}

static int exec(struct ts_hub_store *s, const char *sql)
{
    return ts_sql_exec(s->db, sql) == TS_SQL_OK ? TS_OK : ts_hub_db_err(s, sql);
}

static int64_t meta_get(struct ts_sql *db, const char *k)
{
    struct ts_sql_stmt *st = NULL;
    int64_t v = 0;
    if (ts_sql_prepare(db, "SELECT v FROM meta WHERE k = ?1", &st) == TS_SQL_OK &&
        ts_sql_bind_text(st, 1, k) == TS_SQL_OK && ts_sql_step(st) == TS_SQL_ROW)
        v = ts_sql_column_int64(st, 0);
    ts_sql_finalize(st);
    return v;
}

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
    for (int i = 0; i < ST_COUNT; i++)
        ts_sql_finalize(s->st[i]);
    ts_sql_close(s->rdb);
    ts_sql_close(s->db);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Does table have column? -1 on error. */
static int has_column(struct ts_sql *db, const char *table, const char *column)
{
    struct ts_sql_stmt *st = NULL;
    int rc = -1;
    if (ts_sql_prepare(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", &st) ==
        TS_SQL_OK) {
        ts_sql_bind_text(st, 1, table);
        ts_sql_bind_text(st, 2, column);
        int step = ts_sql_step(st);
        rc = step == TS_SQL_ROW ? 1 : step == TS_SQL_DONE ? 0 : -1;
    }
    ts_sql_finalize(st);
    return rc;
}

/*
 * Brings a database made by an older hub up to this schema (inside the
 * opening transaction). Erase rows from before tombstones had an age count
 * as made now, so they are kept their full time.
 */
static int migrate(struct ts_hub_store *s)
{
    static const struct {
        const char *table, *column, *sql;
    } cols[] = {
        {"feed", "at",
         "ALTER TABLE feed ADD COLUMN at INTEGER NOT NULL DEFAULT 0;"
         "UPDATE feed SET at = CAST(strftime('%s', 'now') AS INTEGER) * 1000 WHERE op = 'erase'"},
        {"identifiers", "prev_key", "ALTER TABLE identifiers ADD COLUMN prev_key TEXT"},
        {"customers", "prev_keys", "ALTER TABLE customers ADD COLUMN prev_keys TEXT"},
        {"orders", "status_at", "ALTER TABLE orders ADD COLUMN status_at INTEGER"},
    };
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        int h = has_column(s->db, cols[i].table, cols[i].column);
        if (h < 0 || (h == 0 && exec(s, cols[i].sql)))
            return TS_ERR_DB;
    }
    return exec(s, "CREATE INDEX IF NOT EXISTS identifiers_prev ON identifiers(prev_key)"
                   " WHERE prev_key IS NOT NULL");
}

/*
 * Schema versions (PRAGMA user_version, dbver.h): 0/1 = the first release
 * (06a07ff, meta 'schema' = 1), 2 = tombstone ages, key rotation columns,
 * order status times, bought, purchases and the upstream outbox (migrate()
 * and ts_hub_purchases_schema() add those to an older file).
 */
#define TS_HUB_SCHEMA_VERSION 2
static const struct ts_db_step schema_steps[] = {
    {2, "UPDATE meta SET v = 2 WHERE k = 'schema'", NULL},
};

static void sql_ident_key(sqlite3_context *ctx, int argc, sqlite3_value **argv);
static int meta_set(struct ts_hub_store *s, const char *k, int64_t v);
static bool meta_has(struct ts_sql *db, const char *k);

int ts_hub_exec_ddl(struct ts_hub_store *s, const char *ddl)
{
    return ts_sql_exec_ddl(s->db, ddl) == TS_SQL_OK ? TS_OK : ts_hub_db_err(s, "schema");
}

/* SQLite's two-argument min() and max(), which the statements use. */
static const char *const pg_functions_sql =
    "CREATE OR REPLACE FUNCTION min(bigint, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT LEAST($1, $2)';"
    "CREATE OR REPLACE FUNCTION max(bigint, bigint) RETURNS bigint LANGUAGE sql IMMUTABLE"
    "  AS 'SELECT GREATEST($1, $2)';";

/* The schema version of a PostgreSQL database, kept in meta 'schema' (an
 * SQLite file keeps it in user_version, dbver.h): a database from a newer
 * hub is refused, an older one is brought up to this one. */
static int pg_version(struct ts_hub_store *s, const char *shown, char *err, size_t errsz)
{
    int64_t v = meta_get(s->db, "schema");
    if (v > TS_HUB_SCHEMA_VERSION) {
        snprintf(err, errsz,
                 "%s: schema version %lld is newer than this tillside-hub knows (%d): "
                 "upgrade the hub, do not downgrade it",
                 shown, (long long)v, TS_HUB_SCHEMA_VERSION);
        return TS_ERR_DB;
    }
    return meta_set(s, "schema", TS_HUB_SCHEMA_VERSION);
}

/* Creates or upgrades the schema in one write transaction; two hub
 * processes starting together on one PostgreSQL take turns. */
static int setup_schema(struct ts_hub_store *s, const char *path, char *err, size_t errsz)
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
    int rc = exec(s, "PRAGMA journal_mode=WAL") || exec(s, "PRAGMA synchronous=NORMAL") ||
             exec(s, "BEGIN IMMEDIATE");
    if (rc == TS_OK && pg)
        rc = exec(s, pg_functions_sql) || ts_hub_exec_ddl(s, schema_sql) ||
             ts_hub_exec_ddl(s, "CREATE INDEX IF NOT EXISTS identifiers_prev ON"
                                " identifiers(prev_key) WHERE prev_key IS NOT NULL") ||
             ts_hub_purchases_schema(s) || pg_version(s, path, verr, sizeof verr);
    else if (rc == TS_OK)
        rc =
            ts_db_version_check(ts_sql_sqlite(s->db), path, TS_HUB_SCHEMA_VERSION, verr,
                                sizeof verr) ||
            exec(s, schema_sql) || migrate(s) || ts_hub_purchases_schema(s) ||
            ts_db_migrate(ts_sql_sqlite(s->db), path, TS_HUB_SCHEMA_VERSION, schema_steps,
                          sizeof schema_steps / sizeof schema_steps[0], s, NULL, verr, sizeof verr);
    /* the feed's epoch: random, once per database */
    if (rc == TS_OK && !meta_has(s->db, "epoch"))
        rc = meta_set(s, "epoch", epoch);
    if (rc == TS_OK)
        rc = exec(s, "COMMIT");
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

/* The listener thread: other processes' commits wake our waiters. */
static void *listen_run(void *arg)
{
    struct ts_hub_store *s = arg;
    for (;;) {
        int r = ts_sql_wait_notice(s->ldb, s->wake[0], 5000);
        struct pollfd p = {.fd = s->wake[0], .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return NULL;
        if (r != 0)
            ts_hub_store_notify(s); /* a notice, or back after an outage: look */
        atomic_store(&s->listening, r >= 0);
    }
}

static int start_listener(struct ts_hub_store *s, const char *path, char *err, size_t errsz)
{
    int rc = ts_sql_open(path, 0, &s->ldb, err, errsz);
    if (rc)
        return rc;
    if (ts_sql_listen(s->ldb, FEED_CHANNEL) != TS_SQL_OK) {
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

int ts_hub_store_open(const char *path, const struct ts_tenant_key *key, int flags,
                      struct ts_hub_store **out, char *err, size_t errsz)
{
    int rc = TS_ERR_NOMEM;
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
    if (!ro && (rc = setup_schema(s, path, err, errsz)))
        goto out;
    if (ro && exec(s, "SELECT v FROM meta WHERE k = 'schema'")) {
        snprintf(err, errsz, "%s: not a tillside-hub database: %s", path, ts_sql_errmsg(s->db));
        rc = TS_ERR_DB;
        goto out;
    }
    s->epoch = (uint32_t)meta_get(s->db, "epoch");
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

uint32_t ts_hub_store_epoch(const struct ts_hub_store *s)
{
    return s->epoch;
}

int ts_hub_store_prev_kv(const struct ts_hub_store *s)
{
    return s->prev.len ? s->prev.version : 0;
}

uint64_t ts_hub_store_horizon(struct ts_hub_store *s)
{
    struct ts_sql *db = rd_lock(s);
    uint64_t h = (uint64_t)meta_get(db, "horizon");
    rd_unlock(s);
    return h;
}

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
static int rekey_identifiers_pg(struct ts_hub_store *s)
{
    struct ts_sql_stmt *fetch = NULL, *upd = NULL;
    int rc = exec(s, "DECLARE rekey CURSOR FOR SELECT key, kind, value FROM identifiers");
    if (rc == TS_OK &&
        (ts_sql_prepare(s->db, "FETCH 1000 FROM rekey", &fetch) != TS_SQL_OK ||
         ts_sql_prepare(s->db, "UPDATE identifiers SET key = ?2, prev_key = ?3 WHERE key = ?1",
                        &upd) != TS_SQL_OK))
        rc = ts_hub_db_err(s, "re-key");
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
                rc = ts_hub_db_err(s, "re-key");
        }
        if (rc == TS_OK && step != TS_SQL_DONE && step != TS_SQL_ROW)
            rc = ts_hub_db_err(s, "re-key");
    }
    ts_sql_finalize(fetch);
    ts_sql_finalize(upd);
    if (rc == TS_OK)
        rc = exec(s, "CLOSE rekey");
    return rc;
}

/* 48 bits of an HMAC under the key, so the database can tell that a key
 * changed without holding it; 0 for no key. */
static int64_t key_fp(const struct ts_tenant_key *k)
{
    char out[33];
    uint64_t v;
    if (!k->len || ts_hub_cid(k, "\x01tillside key fingerprint", out) != TS_OK)
        return 0;
    out[12] = '\0';
    v = strtoull(out, NULL, 16);
    return (int64_t)v;
}

static int meta_set(struct ts_hub_store *s, const char *k, int64_t v)
{
    struct ts_sql_stmt *st = NULL;
    int rc = TS_OK;
    if (ts_sql_prepare(s->db,
                       "INSERT INTO meta(k, v) VALUES(?1, ?2)"
                       " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                       &st) != TS_SQL_OK ||
        ts_sql_bind_text(st, 1, k) != TS_SQL_OK || ts_sql_bind_int64(st, 2, v) != TS_SQL_OK ||
        ts_sql_step(st) != TS_SQL_DONE)
        rc = ts_hub_db_err(s, "meta");
    ts_sql_finalize(st);
    return rc;
}

/* Has meta the key k? */
static bool meta_has(struct ts_sql *db, const char *k)
{
    struct ts_sql_stmt *st = NULL;
    bool has = ts_sql_prepare(db, "SELECT 1 FROM meta WHERE k = ?1", &st) == TS_SQL_OK &&
               ts_sql_bind_text(st, 1, k) == TS_SQL_OK && ts_sql_step(st) == TS_SQL_ROW;
    ts_sql_finalize(st);
    return has;
}

int ts_hub_store_set_keys(struct ts_hub_store *s, const struct ts_tenant_key *prev,
                          size_t *restamped)
{
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    memset(&s->prev, 0, sizeof s->prev);
    if (prev && prev->len)
        s->prev = *prev;
    const int64_t want[4] = {key_fp(&s->key), s->key.version, key_fp(&s->prev),
                             s->prev.len ? s->prev.version : 0};
    static const char *const names[4] = {"key_fp", "key_kv", "prev_fp", "prev_kv"};
    int rc = exec(s, "BEGIN IMMEDIATE");
    if (rc)
        goto out;
    /* A database from before rotation support was keyed with the current
     * key and no second one. */
    bool legacy = !meta_has(s->db, "key_fp");
    bool same = true;
    for (int i = 0; i < 4; i++) {
        int64_t had = legacy ? (i < 2 ? want[i] : 0) : meta_get(s->db, names[i]);
        same = same && had == want[i];
    }
    if (!same) {
        char prev_s[32] = "";
        if (s->prev.len)
            snprintf(prev_s, sizeof prev_s, ", previous %d", s->prev.version);
        TS_INFO("hub", "tenant key versions changed (now %d%s): re-keying every identifier",
                s->key.version, prev_s);
        rc = ts_sql_is_pg(s->db)
                 ? rekey_identifiers_pg(s)
                 : exec(s, "UPDATE identifiers SET key = ts_ident_key(0, kind, value),"
                           " prev_key = ts_ident_key(1, kind, value)");
        if (rc == TS_OK)
            rc = ts_hub_rekey_all(s, &n);
    }
    for (int i = 0; rc == TS_OK && i < 4; i++)
        rc = meta_set(s, names[i], want[i]);
    if (rc == TS_OK)
        rc = exec(s, "COMMIT");
    if (rc != TS_OK)
        ts_sql_exec(s->db, "ROLLBACK");
out:
    pthread_mutex_unlock(&s->mu);
    if (rc == TS_OK && n) {
        TS_INFO("hub", "re-stamped %zu customer(s) with the new keys", n);
        ts_hub_store_notify(s);
    }
    if (rc == TS_OK && restamped)
        *restamped = n;
    return rc;
}

int ts_hub_store_ingest(struct ts_hub_store *s, const struct ts_seg_batch *b, int64_t now_ms,
                        struct ts_hub_ingest_result *res)
{
    struct ts_hub_ingest_result r = {0};
    pthread_mutex_lock(&s->mu);
    int rc = exec(s, "BEGIN IMMEDIATE");
    if (rc == TS_OK) {
        rc = ts_hub_ingest_locked(s, b, now_ms, &r);
        if (rc == TS_OK)
            rc = exec(s, "COMMIT");
        if (rc != TS_OK)
            ts_sql_exec(s->db, "ROLLBACK");
    }
    pthread_mutex_unlock(&s->mu);
    if (rc == TS_OK && r.customers)
        ts_hub_store_notify(s);
    if (rc == TS_OK && res)
        *res = r;
    return rc;
}

void ts_hub_store_notify(struct ts_hub_store *s)
{
    pthread_mutex_lock(&s->wmu);
    s->gen++;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->wmu);
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

/* Has store_id's feed a row after since? -1 on error. */
static int has_change(struct ts_hub_store *s, const char *store_id, uint64_t since)
{
    struct ts_sql_stmt *st = NULL;
    int rc = -1;
    struct ts_sql *db = rd_lock(s);
    if (ts_sql_prepare(db, "SELECT 1 FROM feed WHERE store_id = ?1 AND seq > ?2 LIMIT 1", &st) ==
        TS_SQL_OK) {
        ts_sql_bind_text(st, 1, store_id);
        ts_sql_bind_int64(st, 2, (int64_t)since);
        int step = ts_sql_step(st);
        rc = step == TS_SQL_ROW ? 1 : step == TS_SQL_DONE ? 0 : -1;
    }
    ts_sql_finalize(st);
    rd_unlock(s);
    return rc;
}

/* Changes committed by another process (`tillside-hub erase`, `import`, a
 * second hub) signal nobody here on SQLite: waiters look again this often.
 * On PostgreSQL the listener thread wakes them; the long slice only covers
 * a notice lost in a reconnect. */
#define WAIT_SLICE_MS 1000
#define WAIT_SLICE_LISTENING_MS 10000

bool ts_hub_store_wait(struct ts_hub_store *s, const char *store_id, uint64_t since, int timeout_ms)
{
    int64_t deadline = ts_now_mono_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&s->wmu);
        uint64_t gen = s->gen;
        bool closing = s->closing;
        pthread_mutex_unlock(&s->wmu);
        if (closing)
            return false;
        int ch = has_change(s, store_id, since);
        if (ch != 0)
            return ch > 0; /* on an error, stop waiting: the caller answers what it has */
        int64_t left = deadline - ts_now_mono_ms();
        if (left <= 0)
            return false;
        int64_t slice = atomic_load(&s->listening) ? WAIT_SLICE_LISTENING_MS : WAIT_SLICE_MS;
        if (left > slice)
            left = slice;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->wmu);
        while (s->gen == gen && !s->closing &&
               pthread_cond_timedwait(&s->changed, &s->wmu, &ts) == 0) {
        }
        pthread_mutex_unlock(&s->wmu);
    }
}

/* Appends one feed item. The card and keys are JSON we wrote ourselves and
 * the cid is hex, so plain concatenation is safe and avoids re-parsing a
 * million cards during a full sync. prev_keys is NULL without a second key
 * version. */
static int feed_item(ts_buf *b, const char *op, const char *cid, const char *card, const char *keys,
                     const char *prev_keys)
{
    if (b->len && ts_buf_puts(b, ","))
        return TS_ERR_NOMEM;
    if (strcmp(op, "upsert") == 0 && card && keys)
        return ts_buf_printf(b, "{\"op\":\"upsert\",\"cid\":\"%s\",\"keys\":%s%s%s,\"card\":%s}",
                             cid, keys, prev_keys ? ",\"prev_keys\":" : "",
                             prev_keys ? prev_keys : "", card);
    return ts_buf_printf(b, "{\"op\":\"erase\",\"cid\":\"%s\"}", cid);
}

int ts_hub_store_feed(struct ts_hub_store *s, const char *store_id, uint64_t since, int limit,
                      struct ts_hub_feed_page *page)
{
    int rc = TS_OK;
    struct ts_sql_stmt *st = NULL;
    ts_buf_reset(&page->items);
    page->nitems = 0;
    page->more = false;
    page->last_seq = since;
    struct ts_sql *db = rd_lock(s);
    /* One read transaction: the horizon and the rows from one snapshot, so
     * a prune committing in between cannot slip a tombstone past us. */
    bool txn = ts_sql_exec(db, "BEGIN") == TS_SQL_OK;
    if (since > (uint64_t)meta_get(db, "seq")) {
        rc = TS_ERR_GONE; /* a cursor from before this database was replaced */
        goto out;
    }
    /* Tombstones up to the horizon were pruned: a cursor below it may have
     * missed an erasure. A cursor of 0 has seen nothing, so has nothing to
     * erase either. */
    if (since > 0 && since < (uint64_t)meta_get(db, "horizon")) {
        rc = TS_ERR_GONE;
        goto out;
    }
    if (ts_sql_prepare(db,
                       "SELECT f.seq, f.op, f.cid, c.card, c.keys, c.prev_keys FROM feed f"
                       " LEFT JOIN customers c ON c.id = f.customer AND f.op = 'upsert'"
                       " WHERE f.store_id = ?1 AND f.seq > ?2 ORDER BY f.seq LIMIT ?3",
                       &st) != TS_SQL_OK) {
        rc = db_err(db, "feed");
        goto out;
    }
    ts_sql_bind_text(st, 1, store_id);
    ts_sql_bind_int64(st, 2, (int64_t)since);
    ts_sql_bind_int64(st, 3, limit + 1); /* one extra row tells whether there is more */
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        if (page->nitems == (size_t)limit) {
            page->more = true;
            break;
        }
        const char *op = ts_sql_column_text(st, 1);
        const char *cid = ts_sql_column_text(st, 2);
        if ((rc = feed_item(&page->items, op ? op : "erase", cid ? cid : "",
                            ts_sql_column_text(st, 3), ts_sql_column_text(st, 4),
                            s->prev.len ? ts_sql_column_text(st, 5) : NULL)))
            goto out;
        page->last_seq = (uint64_t)ts_sql_column_int64(st, 0);
        page->nitems++;
    }
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        rc = db_err(db, "feed");
out:
    ts_sql_finalize(st);
    if (txn)
        ts_sql_exec(db, "COMMIT");
    rd_unlock(s);
    return rc;
}

int ts_hub_store_lookup(struct ts_hub_store *s, const char *key_hex, ts_buf *out)
{
    int rc = TS_ERR_NOTFOUND;
    struct ts_sql_stmt *st = NULL;
    struct ts_sql *db = rd_lock(s);
    /* Either key version finds the customer: a terminal that has not yet
     * switched to the new key keeps finding people during a rotation. */
    if (ts_sql_prepare(db,
                       "SELECT c.cid, c.card, c.keys, c.prev_keys FROM identifiers i"
                       " JOIN customers c ON c.id = i.customer WHERE i.key = ?1"
                       " UNION ALL SELECT c.cid, c.card, c.keys, c.prev_keys FROM identifiers i"
                       " JOIN customers c ON c.id = i.customer WHERE i.prev_key = ?1 LIMIT 1",
                       &st) != TS_SQL_OK) {
        rc = db_err(db, "lookup");
        goto out;
    }
    ts_sql_bind_text(st, 1, key_hex);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW && ts_sql_column_text(st, 1) && ts_sql_column_text(st, 2)) {
        const char *prev = ts_sql_column_text(st, 3);
        if (prev && s->prev.len)
            rc = ts_buf_printf(out,
                               "{\"kv\":%d,\"prev_kv\":%d,\"cid\":\"%s\",\"keys\":%s,"
                               "\"prev_keys\":%s,\"card\":%s}",
                               s->key.version, s->prev.version, ts_sql_column_text(st, 0),
                               ts_sql_column_text(st, 2), prev, ts_sql_column_text(st, 1));
        else
            rc = ts_buf_printf(out, "{\"kv\":%d,\"cid\":\"%s\",\"keys\":%s,\"card\":%s}",
                               s->key.version, ts_sql_column_text(st, 0), ts_sql_column_text(st, 2),
                               ts_sql_column_text(st, 1));
    } else if (step != TS_SQL_ROW && step != TS_SQL_DONE) {
        rc = db_err(db, "lookup");
    }
out:
    ts_sql_finalize(st);
    rd_unlock(s);
    return rc;
}

int ts_hub_store_stats(struct ts_hub_store *s, ts_buf *out)
{
    int rc = TS_ERR_NOMEM;
    struct ts_sql_stmt *st = NULL;
    json_t *o = json_object(), *stores = json_object();
    char *text = NULL;
    struct ts_sql *db = rd_lock(s);
    bool locked = true;
    if (!o || !stores)
        goto out;
    if (ts_sql_prepare(db, "SELECT count(*) FROM customers", &st) != TS_SQL_OK ||
        ts_sql_step(st) != TS_SQL_ROW) {
        rc = db_err(db, "stats");
        goto out;
    }
    json_object_set_new(o, "customers", json_integer(ts_sql_column_int64(st, 0)));
    json_object_set_new(o, "events", json_integer(meta_get(db, "events")));
    json_object_set_new(o, "seq", json_integer(meta_get(db, "seq")));
    ts_sql_finalize(st);
    st = NULL;
    if (ts_sql_prepare(db,
                       "SELECT store_id, count(*) FROM feed WHERE op = 'upsert'"
                       " GROUP BY store_id ORDER BY store_id",
                       &st) != TS_SQL_OK) {
        rc = db_err(db, "stats");
        goto out;
    }
    while (ts_sql_step(st) == TS_SQL_ROW) {
        const char *id = ts_sql_column_text(st, 0);
        if (id)
            json_object_set_new(stores, id, json_integer(ts_sql_column_int64(st, 1)));
    }
    json_object_set(o, "stores", stores);
    ts_sql_finalize(st);
    st = NULL;
    rd_unlock(s); /* purchases.c takes the read side itself */
    locked = false;
    ts_hub_purchases_stats(s, o);
    text = json_dumps(o, JSON_COMPACT);
    rc = text ? ts_buf_puts(out, text) : TS_ERR_NOMEM;
out:
    free(text);
    ts_sql_finalize(st);
    json_decref(stores);
    json_decref(o);
    if (locked)
        rd_unlock(s);
    return rc;
}
