/*
 * Applying a validated Segment batch to the store, in one write transaction
 * (db.h): identity resolution (userId, or anonymousId mapped to the
 * userId an identify tied it to), the per-event updates, and at the end one
 * card rebuild and feed re-stamp per customer the batch touched.
 */
#include "offers.h"
#include "parts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Customers and what the CDP tells about them; meta 'events' counts the
 * events applied. */
static const char *const schema_sql =
    "INSERT INTO meta(k, v) VALUES('events', 0) ON CONFLICT DO NOTHING;"
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
    "  WITHOUT ROWID;";

enum ts_err ts_hub_ingest_schema(struct ts_hub_store *s)
{
    /* Columns an older database lacks (key rotation, order status times). */
    enum ts_err rc = ts_hub_db_ddl(s, schema_sql);
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "identifiers", "prev_key", "prev_key TEXT", NULL);
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "customers", "prev_keys", "prev_keys TEXT", NULL);
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "orders", "status_at", "status_at INTEGER", NULL);
    if (rc == TS_OK) /* bands from the CDP's predictions (predict.c) */
        rc = ts_hub_db_add_column(s, "customers", "predictions", "predictions TEXT", NULL);
    if (rc == TS_OK) /* the identify's e-mail trait: for sinks only, never in a card */
        rc = ts_hub_db_add_column(s, "customers", "email", "email TEXT", NULL);
    if (rc == TS_OK)
        rc = ts_hub_db_ddl(s, "CREATE INDEX IF NOT EXISTS identifiers_prev ON"
                              " identifiers(prev_key) WHERE prev_key IS NOT NULL");
    return rc;
}

/* Every statement ingest runs, prepared once on first use (db.h). */
enum stmt_id {
    ST_EVENTS_ADD,
    ST_PROCESSED_ADD,
    ST_CUST_EXISTS,
    ST_CUST_INSERT,
    ST_CUST_TRAITS,
    ST_CUST_NAME,
    ST_CUST_SPLIT_NAME,
    ST_ANON_GET,
    ST_ANON_SET,
    ST_IDENT_OWNER,
    ST_IDENT_SET,
    ST_PRODUCT_UPSERT,
    ST_VIEW_ADD,
    ST_CART_ADD,
    ST_CART_SUB,
    ST_CART_DEL,
    ST_CART_DEL_EMPTY,
    ST_WISH_ADD,
    ST_WISH_DEL,
    ST_ORDER_UPSERT,
    ST_BOUGHT_ADD,
    ST_MERGE_TRAITS,
    ST_MERGE_VIEWS,
    ST_MERGE_CART,
    ST_MERGE_CART_DEL,
    ST_MERGE_WISH,
    ST_MERGE_WISH_DEL,
    ST_MERGE_ORDERS,
    ST_MERGE_IDENT,
    ST_MERGE_ANON,
    ST_MERGE_BOUGHT,
    ST_MERGE_BOUGHT_DEL,
    ST_FEED_ERASE_ALL,
    ST_CUST_DELETE,
    ST_PRED_GET,
    ST_PRED_SET,
    ST_MERGE_PRED,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
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
        " suggested_id = coalesce(?6, suggested_id), email = coalesce(?8, email) WHERE id = ?1",
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
        "INSERT INTO orders(order_id, customer, total, currency, status, at, store_id)"
        " VALUES(?1, ?2, ?3, ?4, 'placed', ?5, ?6) ON CONFLICT(order_id) DO UPDATE SET"
        " customer = excluded.customer, total = coalesce(excluded.total, orders.total),"
        " currency = coalesce(excluded.currency, orders.currency), at = excluded.at,"
        " store_id = coalesce(excluded.store_id, orders.store_id)",
    [ST_BOUGHT_ADD] =
        "INSERT INTO bought(customer, product_id, at) VALUES(?1, ?2, ?3)"
        " ON CONFLICT(customer, product_id) DO UPDATE SET at = max(bought.at, excluded.at)",
    /* ?1 = surviving customer, ?2 = the anonymous one merged into it; the
     * survivor's own traits win, consent needs both to agree. */
    [ST_MERGE_TRAITS] =
        "UPDATE customers SET (name, first_name, last_name, tier, points, home_store,"
        " suggested_id, suggested_name, consent, email) = (SELECT coalesce(t.name, f.name),"
        " coalesce(t.first_name, f.first_name), coalesce(t.last_name, f.last_name),"
        " coalesce(t.tier, f.tier), coalesce(t.points, f.points),"
        " coalesce(t.home_store, f.home_store), coalesce(t.suggested_id, f.suggested_id),"
        " CASE WHEN t.suggested_id IS NULL THEN f.suggested_name ELSE t.suggested_name END,"
        " min(t.consent, f.consent), coalesce(t.email, f.email)"
        " FROM customers t, customers f WHERE t.id = ?1 AND f.id = ?2)"
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
    [ST_MERGE_BOUGHT] = "INSERT INTO bought(customer, product_id, at)"
                        " SELECT CAST(?1 AS TEXT), product_id, at FROM bought WHERE customer = ?2"
                        " ON CONFLICT DO NOTHING",
    [ST_MERGE_BOUGHT_DEL] = "DELETE FROM bought WHERE customer = ?2",
    [ST_FEED_ERASE_ALL] =
        "UPDATE feed SET op = 'erase', seq = ?2, at = ?3 WHERE customer = ?1 AND op = 'upsert'",
    [ST_CUST_DELETE] = "DELETE FROM customers WHERE id = ?1",
    [ST_PRED_GET] = "SELECT predictions FROM customers WHERE id = ?1",
    [ST_PRED_SET] = "UPDATE customers SET predictions = ?2 WHERE id = ?1",
    /* the survivor's own predictions win, as its traits do */
    [ST_MERGE_PRED] = "UPDATE customers SET predictions = coalesce(predictions,"
                      " (SELECT f.predictions FROM customers f WHERE f.id = ?2)) WHERE id = ?1",
};
static const struct ts_hub_stmts stmts = {stmt_sql, NULL, ST_COUNT};

/* The cached statement id, reset (db.h). */
static struct ts_sql_stmt *stmt(struct ts_hub_store *s, enum stmt_id id)
{
    return ts_hub_db_st(s, &stmts, id);
}

/* Customers to rebuild at the end of the batch (sorted and de-duplicated
 * there, so a batch of 10,000 events for one customer rebuilds one card). */
struct touched {
    char **ids;
    size_t n, cap;
};

struct ing {
    struct ts_hub_store *s;
    struct touched t;
    int64_t now;
};

static enum ts_err touch(struct ing *g, const char *id)
{
    struct touched *t = &g->t;
    if (t->n && strcmp(t->ids[t->n - 1], id) == 0)
        return TS_OK; /* the common case: consecutive events of one customer */
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **p = realloc(t->ids, cap * sizeof *p);
        if (!p)
            return TS_ERR_NOMEM;
        t->ids = p;
        t->cap = cap;
    }
    if (!(t->ids[t->n] = strdup(id)))
        return TS_ERR_NOMEM;
    t->n++;
    return TS_OK;
}

/* Steps a statement that returns no rows (or whose rows we ignore). */
static enum ts_err run(struct ing *g, struct ts_sql_stmt *st, const char *what)
{
    if (!st)
        return TS_ERR_DB;
    int rc = ts_sql_step(st);
    if (rc != TS_SQL_DONE && rc != TS_SQL_ROW)
        return ts_hub_db_werr(g->s, what);
    ts_sql_reset(st);
    return TS_OK;
}

/* Binds ?1 and ?2 (text) to a statement and runs it. */
static enum ts_err run2(struct ing *g, enum stmt_id id, const char *a, const char *b)
{
    struct ts_sql_stmt *st = stmt(g->s, id);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, a);
    ts_sql_bind_text(st, 2, b);
    return run(g, st, "update");
}

/* Copies column i as text into out (which holds ids of TS_SEG_MAX_ID). */
static bool col_copy(struct ts_sql_stmt *st, int i, char *out, size_t outsz)
{
    const char *v = ts_sql_column_text(st, i);
    return v && ts_strlcpy(out, v, outsz) < outsz;
}

static enum ts_err ensure_customer(struct ing *g, const char *id)
{
    struct ts_sql_stmt *st = stmt(g->s, ST_CUST_EXISTS);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, id);
    int rc = ts_sql_step(st);
    ts_sql_reset(st);
    if (rc == TS_SQL_ROW)
        return TS_OK;
    if (rc != TS_SQL_DONE)
        return ts_hub_db_werr(g->s, "customer lookup");
    char cid[33];
    if (ts_hub_cid(ts_hub_db_key(g->s), id, cid) != TS_OK)
        return TS_ERR_INVAL;
    if (!(st = stmt(g->s, ST_CUST_INSERT)))
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, id);
    ts_sql_bind_text(st, 2, cid);
    ts_sql_bind_int64(st, 3, g->now);
    return run(g, st, "customer insert");
}

/*
 * The anonymous visitor `anon` turned out to be `user`: everything recorded
 * under the anonymous id moves to the user, the anonymous customer
 * disappears, and any store that had its card is told to erase it.
 */
static enum ts_err merge(struct ing *g, const char *user, const char *anon)
{
    static const enum stmt_id steps[] = {
        ST_MERGE_TRAITS, ST_MERGE_VIEWS,    ST_MERGE_CART,       ST_MERGE_CART_DEL,
        ST_MERGE_WISH,   ST_MERGE_WISH_DEL, ST_MERGE_ORDERS,     ST_MERGE_IDENT,
        ST_MERGE_ANON,   ST_MERGE_BOUGHT,   ST_MERGE_BOUGHT_DEL, ST_MERGE_PRED,
    };
    int rc = ensure_customer(g, user);
    for (size_t i = 0; rc == TS_OK && i < sizeof steps / sizeof steps[0]; i++)
        rc = run2(g, steps[i], user, anon);
    int64_t seq;
    if (rc == TS_OK)
        rc = ts_hub_db_next_seq(g->s, &seq);
    if (rc == TS_OK) {
        struct ts_sql_stmt *st = stmt(g->s, ST_FEED_ERASE_ALL);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, anon);
        ts_sql_bind_int64(st, 2, seq);
        ts_sql_bind_int64(st, 3, g->now);
        rc = run(g, st, "feed erase");
    }
    if (rc == TS_OK)
        rc = run2(g, ST_CUST_DELETE, anon, NULL);
    return rc;
}

/* Records anon → user and folds an existing anonymous customer into user. */
static enum ts_err link_anonymous(struct ing *g, const char *user, const char *anon)
{
    char prev[TS_SEG_MAX_ID + 1] = "";
    struct ts_sql_stmt *st = stmt(g->s, ST_ANON_GET);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, anon);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW)
        col_copy(st, 0, prev, sizeof prev);
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        return ts_hub_db_werr(g->s, "anon lookup");
    if (strcmp(prev, user) == 0)
        return TS_OK;
    int rc = run2(g, ST_ANON_SET, anon, user);
    if (rc != TS_OK)
        return rc;
    if (!(st = stmt(g->s, ST_CUST_EXISTS)))
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, anon);
    step = ts_sql_step(st);
    ts_sql_reset(st);
    if (step == TS_SQL_ROW)
        return merge(g, user, anon);
    return step == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(g->s, "customer lookup");
}

/* The internal customer id of an event: its userId, else what its
 * anonymousId was mapped to, else the anonymousId itself. */
static enum ts_err resolve(struct ing *g, const struct ts_seg_event *e, char *out, size_t outsz)
{
    if (e->user_id) {
        ts_strlcpy(out, e->user_id, outsz);
        if (e->anonymous_id && strcmp(e->anonymous_id, e->user_id) != 0)
            return link_anonymous(g, e->user_id, e->anonymous_id);
        return TS_OK;
    }
    ts_strlcpy(out, e->anonymous_id, outsz);
    struct ts_sql_stmt *st = stmt(g->s, ST_ANON_GET);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->anonymous_id);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW)
        col_copy(st, 0, out, outsz);
    ts_sql_reset(st);
    return step == TS_SQL_ROW || step == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(g->s, "anon lookup");
}

/* Points an identifier key at cust; a previous owner loses it (and its card
 * is rebuilt without the key). */
static enum ts_err link_identifier(struct ing *g, const char *cust, enum ts_ident_kind kind,
                                   const char *norm)
{
    char key[TS_IDENT_KEY_HEX], pkey[TS_IDENT_KEY_HEX], prev[TS_SEG_MAX_ID + 1] = "";
    const struct ts_tenant_key *pk = ts_hub_db_prev(g->s);
    if (ts_ident_key(ts_hub_db_key(g->s), kind, norm, key) != TS_OK ||
        (pk && ts_ident_key(pk, kind, norm, pkey) != TS_OK))
        return TS_ERR_INVAL;
    struct ts_sql_stmt *st = stmt(g->s, ST_IDENT_OWNER);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, key);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW)
        col_copy(st, 0, prev, sizeof prev);
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        return ts_hub_db_werr(g->s, "identifier lookup");
    if (strcmp(prev, cust) == 0)
        return TS_OK;
    int rc = prev[0] ? touch(g, prev) : TS_OK;
    if (rc != TS_OK || !(st = stmt(g->s, ST_IDENT_SET)))
        return rc ? rc : TS_ERR_DB;
    ts_sql_bind_text(st, 1, key);
    ts_sql_bind_text(st, 2, ts_ident_kind_name(kind));
    ts_sql_bind_text(st, 3, norm);
    ts_sql_bind_text(st, 4, cust);
    ts_sql_bind_text(st, 5, pk ? pkey : NULL);
    return run(g, st, "identifier upsert");
}

/* The prediction traits an identify carries, as bands (predict.c). */
static enum ts_err apply_predictions(struct ing *g, const char *cust, const struct ts_seg_event *e)
{
    struct ts_sql_stmt *st = stmt(g->s, ST_PRED_GET);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    int step = ts_sql_step(st);
    const char *old = step == TS_SQL_ROW ? ts_sql_column_text(st, 0) : NULL;
    char *text = NULL;
    int rc = ts_hub_predict_merge(old, e->traits, e->at_ms, &text);
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE) {
        free(text);
        return ts_hub_db_werr(g->s, "predictions");
    }
    if (rc == TS_ERR_NOTFOUND)
        return TS_OK;
    if (rc == TS_OK)
        rc = run2(g, ST_PRED_SET, cust, text);
    free(text);
    return rc;
}

static enum ts_err apply_identify(struct ing *g, const char *cust, const struct ts_seg_event *e)
{
    int rc = TS_OK;
    if (e->name)
        rc = run2(g, ST_CUST_NAME, cust, e->name);
    else if (e->first_name || e->last_name) {
        struct ts_sql_stmt *st = stmt(g->s, ST_CUST_SPLIT_NAME);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, cust);
        ts_sql_bind_text(st, 2, e->first_name);
        ts_sql_bind_text(st, 3, e->last_name);
        rc = run(g, st, "name update");
    }
    if (rc != TS_OK)
        return rc;
    struct ts_sql_stmt *st = stmt(g->s, ST_CUST_TRAITS);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, e->tier);
    if (e->has_points)
        ts_sql_bind_int64(st, 3, e->points);
    if (e->consent >= 0)
        ts_sql_bind_int64(st, 4, e->consent);
    ts_sql_bind_text(st, 5, e->home_store);
    ts_sql_bind_text(st, 6, e->suggested_id);
    ts_sql_bind_text(st, 7, e->suggested_name);
    ts_sql_bind_text(st, 8, e->email);
    if ((rc = run(g, st, "traits update")))
        return rc;
    for (size_t i = 0; rc == TS_OK && i < e->nloyalty; i++)
        rc = link_identifier(g, cust, TS_IDENT_LOYALTY, e->loyalty[i]);
    if (rc == TS_OK && e->traits)
        rc = apply_predictions(g, cust, e);
    return rc ? rc : ts_hub_offers_apply(g->s, cust, e, e->at_ms); /* offers.c */
}

static enum ts_err product_upsert(struct ing *g, const struct ts_seg_product *p)
{
    struct ts_sql_stmt *st = stmt(g->s, ST_PRODUCT_UPSERT);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, p->product_id);
    ts_sql_bind_text(st, 2, p->name);
    if (p->has_price)
        ts_sql_bind_double(st, 3, p->price);
    return run(g, st, "product upsert");
}

/* Binds (customer, product_id, then an integer) and runs. */
static enum ts_err run_cp(struct ing *g, enum stmt_id id, const char *cust, const char *pid,
                          bool has_n, int64_t n)
{
    struct ts_sql_stmt *st = stmt(g->s, id);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, pid);
    if (has_n)
        ts_sql_bind_int64(st, 3, n);
    return run(g, st, "line update");
}

static enum ts_err apply_order(struct ing *g, const char *cust, const struct ts_seg_event *e)
{
    int rc = TS_OK;
    /* What was bought online leaves the cart. */
    for (size_t i = 0; rc == TS_OK && i < e->nproducts; i++) {
        rc = product_upsert(g, &e->products[i]);
        if (rc == TS_OK)
            rc = run_cp(g, ST_CART_DEL, cust, e->products[i].product_id, false, 0);
        /* what customers buy feeds other customers' suggestions (suggest.c) */
        if (rc == TS_OK)
            rc = run_cp(g, ST_BOUGHT_ADD, cust, e->products[i].product_id, true, e->at_ms);
    }
    if (rc != TS_OK || !e->order_id)
        return rc;
    struct ts_sql_stmt *st = stmt(g->s, ST_ORDER_UPSERT);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->order_id);
    ts_sql_bind_text(st, 2, cust);
    if (e->has_total)
        ts_sql_bind_double(st, 3, e->total);
    ts_sql_bind_text(st, 4, e->currency);
    ts_sql_bind_int64(st, 5, e->at_ms);
    ts_sql_bind_text(st, 6, e->order_store);
    if ((rc = run(g, st, "order upsert")) ||
        (e->order_status && (rc = ts_hub_order_status_apply(g->s, cust, e))))
        return rc;
    /* The order confirmation QR scanned at the till finds this customer. */
    char norm[TS_SEG_MAX_ID + 1];
    if (ts_ident_normalize(e->order_id, strlen(e->order_id), norm, sizeof norm) == TS_OK)
        rc = link_identifier(g, cust, TS_IDENT_ORDER, norm);
    return rc;
}

static enum ts_err apply_event(struct ing *g, const char *cust, const struct ts_seg_event *e)
{
    const struct ts_seg_product *p = e->nproducts ? &e->products[0] : NULL;
    int rc;
    switch (e->kind) {
    case TS_SEG_IDENTIFY:
        return apply_identify(g, cust, e);
    case TS_SEG_VIEWED:
        if ((rc = product_upsert(g, p)))
            return rc;
        return run_cp(g, ST_VIEW_ADD, cust, p->product_id, true, e->at_ms);
    case TS_SEG_CART_ADD: {
        if ((rc = product_upsert(g, p)))
            return rc;
        struct ts_sql_stmt *st = stmt(g->s, ST_CART_ADD);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, cust);
        ts_sql_bind_text(st, 2, p->product_id);
        ts_sql_bind_int64(st, 3, p->quantity);
        if (p->has_price)
            ts_sql_bind_double(st, 4, p->price);
        ts_sql_bind_int64(st, 5, e->at_ms);
        return run(g, st, "cart add");
    }
    case TS_SEG_CART_REMOVE:
        /* Segment's quantity here is how many were removed; without it the
         * whole line goes. */
        if (!p->has_quantity)
            return run_cp(g, ST_CART_DEL, cust, p->product_id, false, 0);
        if ((rc = run_cp(g, ST_CART_SUB, cust, p->product_id, true, p->quantity)))
            return rc;
        return run_cp(g, ST_CART_DEL_EMPTY, cust, p->product_id, false, 0);
    case TS_SEG_WISH_ADD:
        if ((rc = product_upsert(g, p)))
            return rc;
        return run_cp(g, ST_WISH_ADD, cust, p->product_id, true, e->at_ms);
    case TS_SEG_WISH_REMOVE:
        return run_cp(g, ST_WISH_DEL, cust, p->product_id, false, 0);
    case TS_SEG_ORDER:
        return apply_order(g, cust, e);
    case TS_SEG_ORDER_STATUS:
        return e->order_id && e->order_status ? ts_hub_order_status_apply(g->s, cust, e) : TS_OK;
    case TS_SEG_IGNORE:
        break;
    }
    return TS_OK;
}

/* *dup = 1 when the event's messageId was processed before (skip it). */
static enum ts_err seen_before(struct ing *g, const struct ts_seg_event *e, int *dup)
{
    *dup = 0;
    if (!e->message_id)
        return TS_OK;
    struct ts_sql_stmt *st = stmt(g->s, ST_PROCESSED_ADD);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->message_id);
    ts_sql_bind_int64(st, 2, g->now);
    int rc = run(g, st, "dedupe");
    if (rc == TS_OK)
        *dup = ts_sql_changes(ts_hub_db_writer(g->s)) == 0;
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Applies the events of a batch inside the open transaction. */
static enum ts_err ingest_locked(struct ts_hub_store *s, const struct ts_seg_batch *b,
                                 int64_t now_ms, struct ts_hub_ingest_result *res)
{
    struct ing g = {.s = s, .now = now_ms};
    char cust[TS_SEG_MAX_ID + 1];
    int rc = TS_OK;
    for (size_t i = 0; rc == TS_OK && i < b->n; i++) {
        const struct ts_seg_event *e = &b->ev[i];
        int dup;
        if ((rc = seen_before(&g, e, &dup)))
            break;
        if (dup) {
            res->duplicates++;
            continue;
        }
        res->applied++;
        if (e->kind == TS_SEG_IGNORE)
            continue; /* no customer record for a page view alone */
        if ((rc = resolve(&g, e, cust, sizeof cust)) || (rc = ensure_customer(&g, cust)) ||
            (rc = apply_event(&g, cust, e)))
            break;
        rc = touch(&g, cust);
    }
    if (rc == TS_OK && g.t.n) {
        qsort(g.t.ids, g.t.n, sizeof *g.t.ids, cmp_str);
        for (size_t i = 0; rc == TS_OK && i < g.t.n; i++) {
            if (i && strcmp(g.t.ids[i], g.t.ids[i - 1]) == 0)
                continue;
            bool rebuilt = false;
            rc = ts_hub_rebuild(s, g.t.ids[i], now_ms, &rebuilt);
            res->customers += rebuilt;
        }
    }
    if (rc == TS_OK) {
        struct ts_sql_stmt *st = stmt(s, ST_EVENTS_ADD);
        if (!st)
            rc = TS_ERR_DB;
        else {
            ts_sql_bind_int64(st, 1, (int64_t)res->applied);
            rc = run(&g, st, "event count");
        }
    }
    for (size_t i = 0; i < g.t.n; i++)
        free(g.t.ids[i]);
    free(g.t.ids);
    return rc;
}

enum ts_err ts_hub_store_ingest(struct ts_hub_store *s, const struct ts_seg_batch *b,
                                int64_t now_ms, struct ts_hub_ingest_result *res)
{
    struct ts_hub_ingest_result r = {0};
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc != TS_OK)
        return rc;
    rc = ingest_locked(s, b, now_ms, &r);
    if ((rc = ts_hub_db_write_end(s, rc, r.customers > 0)))
        return rc;
    if (res)
        *res = r;
    return TS_OK;
}

enum ts_err ts_hub_ingest_bought(struct ts_hub_store *s, const char *cust, const char *pid,
                                 const char *alt, int64_t qty, int64_t at_ms)
{
    struct ing g = {.s = s, .now = at_ms};
    const char *ids[2] = {pid, alt};
    int rc = TS_OK;
    for (int k = 0; rc == TS_OK && k < 2 && ids[k]; k++) {
        rc = run_cp(&g, ST_CART_SUB, cust, ids[k], true, qty);
        if (rc == TS_OK)
            rc = run_cp(&g, ST_CART_DEL_EMPTY, cust, ids[k], false, 0);
    }
    return rc ? rc : run_cp(&g, ST_BOUGHT_ADD, cust, pid, true, at_ms);
}
