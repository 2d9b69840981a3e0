/*
 * Rebuilding one customer's card after a change: load what the tables hold,
 * let summary.c rank it, store the card and identifier keys as JSON text
 * (so feed pages are plain concatenation), and re-stamp the customer's feed
 * rows with a fresh sequence number so every store holding them sees the
 * change after its cursor.
 */
#include "offers.h"
#include "parts.h"

#include <stdlib.h>
#include <string.h>

#define MAX_VIEWS_KEPT 500                        /* per customer */
#define VIEW_HORIZON_MS (90LL * 24 * 3600 * 1000) /* decayed below 0.2 % by then */
#define MAX_CART_LOADED 16
#define MAX_WISH_LOADED 16
#define MAX_KEYS 100 /* loyalty ids first, then order keys */

/* Every statement a rebuild runs, prepared once on first use (db.h). */
enum stmt_id {
    ST_LOAD_CUST,
    ST_VIEWS_PRUNE,
    ST_LOAD_VIEWS,
    ST_LOAD_CART,
    ST_LOAD_WISH,
    ST_LOAD_ORDERS,
    ST_PRODUCT_NAME,
    ST_LOAD_KEYS,
    ST_CUST_STAMP,
    ST_FEED_UPSERT,
    ST_FEED_ERASE_OTHERS,
    ST_REKEY_IDS,
    ST_REKEY_CUST,
    ST_REKEY_FEED,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_LOAD_CUST] = "SELECT cid, name, tier, points, consent, home_store, suggested_id,"
                     " suggested_name, predictions FROM customers WHERE id = ?1",
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
    /* keyset pagination: the re-key loop updates the table it walks */
    [ST_REKEY_IDS] = "SELECT id FROM customers WHERE card IS NOT NULL AND id > ?1"
                     " ORDER BY id LIMIT 1000",
    [ST_REKEY_CUST] = "UPDATE customers SET keys = ?2, prev_keys = ?3, seq = ?4 WHERE id = ?1",
    [ST_REKEY_FEED] = "UPDATE feed SET seq = ?2 WHERE customer = ?1 AND op = 'upsert'",
};

/* Where PostgreSQL needs other words for the same statement. */
static const char *const stmt_sql_pg[ST_COUNT] = {
    [ST_VIEWS_PRUNE] = "DELETE FROM views WHERE customer = ?1 AND (at < ?2 OR ctid IN"
                       " (SELECT ctid FROM views WHERE customer = ?1 ORDER BY at DESC OFFSET ?3))",
};
static const struct ts_hub_stmts stmts = {stmt_sql, stmt_sql_pg, ST_COUNT};

/* The cached statement id, reset (db.h). */
static struct ts_sql_stmt *stmt(struct ts_hub_store *s, enum stmt_id id)
{
    return ts_hub_db_st(s, &stmts, id);
}

/* Strings copied out of SQLite rows; they must outlive the next step. */
struct pool {
    char **s;
    size_t n, cap;
};

static const char *dup(struct pool *p, struct ts_sql_stmt *st, int col, bool *nomem)
{
    const char *v = ts_sql_column_text(st, col);
    if (!v)
        return NULL;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        char **a = realloc(p->s, cap * sizeof *a);
        if (!a) {
            *nomem = true;
            return NULL;
        }
        p->s = a;
        p->cap = cap;
    }
    char *c = strdup(v);
    if (!c) {
        *nomem = true;
        return NULL;
    }
    p->s[p->n++] = c;
    return c;
}

static void pool_free(struct pool *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->s[i]);
    free(p->s);
}

/* A statement with ?1 = customer and ?2 = a limit (when used). */
static struct ts_sql_stmt *query(struct ts_hub_store *s, enum stmt_id id, const char *cust,
                                 int limit)
{
    struct ts_sql_stmt *st = stmt(s, id);
    if (st) {
        ts_sql_bind_text(st, 1, cust);
        if (limit > 0)
            ts_sql_bind_int64(st, 2, limit);
    }
    return st;
}

struct loaded {
    struct ts_hub_profile p;
    struct ts_hub_view *views;
    struct ts_hub_line *cart, *wish;
    struct ts_hub_order *orders;
    struct ts_seg_offer *offers; /* offers.c */
    const char *home_store;
    ts_buf keys, prev_keys; /* JSON arrays; prev_keys empty without a second key */
    struct pool pool;
    char peer_id[TS_SEG_MAX_ID + 1], peer_name[TS_SEG_MAX_TEXT + 1]; /* suggest.c */
};

static void loaded_free(struct loaded *l)
{
    free(l->views);
    free(l->cart);
    free(l->wish);
    free(l->orders);
    free(l->offers);
    ts_buf_free(&l->keys);
    ts_buf_free(&l->prev_keys);
    pool_free(&l->pool);
}

/* Runs st to the end, growing *arr by elem bytes per row and calling row(). */
typedef void (*row_fn)(struct loaded *l, struct ts_sql_stmt *st, void *elem, bool *nomem);

static enum ts_err load_rows(struct ts_hub_store *s, struct ts_sql_stmt *st, struct loaded *l,
                             void **arr, size_t elem, size_t *n, row_fn row)
{
    size_t cap = 0;
    bool nomem = false;
    int step;
    if (!st)
        return TS_ERR_DB;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            void *a = realloc(*arr, cap * elem);
            if (!a)
                return TS_ERR_NOMEM;
            *arr = a;
        }
        char *e = (char *)*arr + *n * elem;
        memset(e, 0, elem);
        row(l, st, e, &nomem);
        if (nomem)
            return TS_ERR_NOMEM;
        (*n)++;
    }
    ts_sql_reset(st);
    return step == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(s, "load");
}

static void view_row(struct loaded *l, struct ts_sql_stmt *st, void *elem, bool *nomem)
{
    struct ts_hub_view *v = elem;
    v->product_id = dup(&l->pool, st, 0, nomem);
    v->name = dup(&l->pool, st, 1, nomem);
    v->at_ms = ts_sql_column_int64(st, 2);
    if (!v->product_id)
        v->product_id = "";
}

static void line_row(struct loaded *l, struct ts_sql_stmt *st, void *elem, bool *nomem)
{
    struct ts_hub_line *c = elem;
    c->product_id = dup(&l->pool, st, 0, nomem);
    c->name = dup(&l->pool, st, 1, nomem);
    if (!c->product_id)
        c->product_id = "";
    if (ts_sql_column_count(st) > 2) { /* cart lines carry price and quantity */
        c->has_price = ts_sql_column_type(st, 2) != TS_SQL_NULL;
        c->price = ts_sql_column_double(st, 2);
        c->quantity = (long)ts_sql_column_int64(st, 3);
    }
}

static void order_row(struct loaded *l, struct ts_sql_stmt *st, void *elem, bool *nomem)
{
    struct ts_hub_order *o = elem;
    o->order_id = dup(&l->pool, st, 0, nomem);
    if (!o->order_id)
        o->order_id = "";
    o->has_total = ts_sql_column_type(st, 1) != TS_SQL_NULL;
    o->total = ts_sql_column_double(st, 1);
    o->currency = dup(&l->pool, st, 2, nomem);
    o->status = dup(&l->pool, st, 3, nomem);
    o->at_ms = ts_sql_column_int64(st, 4);
    o->store = dup(&l->pool, st, 5, nomem);
}

/* The customer row; TS_ERR_NOTFOUND when merged away. */
static enum ts_err load_customer(struct ts_hub_store *s, const char *cust, struct loaded *l)
{
    bool nomem = false;
    struct ts_sql_stmt *st = query(s, ST_LOAD_CUST, cust, 0);
    if (!st)
        return TS_ERR_DB;
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW) {
        struct ts_hub_profile *p = &l->p;
        p->cid = dup(&l->pool, st, 0, &nomem);
        p->name = dup(&l->pool, st, 1, &nomem);
        p->tier = dup(&l->pool, st, 2, &nomem);
        p->has_points = ts_sql_column_type(st, 3) != TS_SQL_NULL;
        p->points = ts_sql_column_int64(st, 3);
        p->consent = ts_sql_column_int64(st, 4) != 0;
        l->home_store = dup(&l->pool, st, 5, &nomem);
        p->suggested_id = dup(&l->pool, st, 6, &nomem);
        p->suggested_name = dup(&l->pool, st, 7, &nomem);
        p->predictions = dup(&l->pool, st, 8, &nomem); /* predict.c */
    }
    ts_sql_reset(st);
    if (step == TS_SQL_DONE)
        return TS_ERR_NOTFOUND;
    if (step != TS_SQL_ROW)
        return ts_hub_db_werr(s, "load customer");
    if (nomem || !l->p.cid)
        return nomem ? TS_ERR_NOMEM : TS_ERR_DB;
    if (l->p.suggested_id && !l->p.suggested_name) {
        /* A suggested_product trait naming only an id: the catalogue knows
         * its name if the product was ever seen in an event. */
        if (!(st = query(s, ST_PRODUCT_NAME, l->p.suggested_id, 0)))
            return TS_ERR_DB;
        if (ts_sql_step(st) == TS_SQL_ROW)
            l->p.suggested_name = dup(&l->pool, st, 0, &nomem);
        ts_sql_reset(st);
    }
    return nomem ? TS_ERR_NOMEM : TS_OK;
}

/* The customer's identifier keys as JSON arrays: out under the current key,
 * prev (left empty when the store has no second key) under the previous
 * one, in the same order. */
enum ts_err ts_hub_load_keys(struct ts_hub_store *s, const char *cust, ts_buf *out, ts_buf *prev)
{
    struct ts_sql_stmt *st = query(s, ST_LOAD_KEYS, cust, MAX_KEYS);
    bool two = ts_hub_db_prev(s) != NULL;
    int step = TS_SQL_DONE, rc = ts_buf_puts(out, "[");
    if (!st)
        return TS_ERR_DB;
    if (rc == TS_OK && two)
        rc = ts_buf_puts(prev, "[");
    for (size_t i = 0; rc == TS_OK && (step = ts_sql_step(st)) == TS_SQL_ROW; i++) {
        const char *k = ts_sql_column_text(st, 0);
        const char *p = ts_sql_column_text(st, 1);
        /* keys are our own lowercase hex: no escaping needed */
        rc = ts_buf_printf(out, "%s\"%s\"", i ? "," : "", k ? k : "");
        if (rc == TS_OK && two && p)
            rc = ts_buf_printf(prev, "%s\"%s\"", prev->len > 1 ? "," : "", p);
    }
    ts_sql_reset(st);
    if (rc == TS_OK && step != TS_SQL_DONE)
        return ts_hub_db_werr(s, "load keys");
    if (rc == TS_OK && two)
        rc = ts_buf_puts(prev, "]");
    return rc ? rc : ts_buf_puts(out, "]");
}

static enum ts_err load(struct ts_hub_store *s, const char *cust, int64_t now, struct loaded *l)
{
    int rc = load_customer(s, cust, l);
    if (rc != TS_OK)
        return rc;
    /* Bounded work per rebuild however long a customer has been browsing. */
    struct ts_sql_stmt *st = query(s, ST_VIEWS_PRUNE, cust, 0);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_int64(st, 2, now - VIEW_HORIZON_MS);
    ts_sql_bind_int64(st, 3, MAX_VIEWS_KEPT);
    if (ts_sql_step(st) != TS_SQL_DONE)
        return ts_hub_db_werr(s, "prune views");
    ts_sql_reset(st);
    struct ts_hub_profile *p = &l->p;
    if ((rc = load_rows(s, query(s, ST_LOAD_VIEWS, cust, 0), l, (void **)&l->views,
                        sizeof *l->views, &p->nviews, view_row)) ||
        (rc = load_rows(s, query(s, ST_LOAD_CART, cust, MAX_CART_LOADED), l, (void **)&l->cart,
                        sizeof *l->cart, &p->ncart, line_row)) ||
        (rc = load_rows(s, query(s, ST_LOAD_WISH, cust, MAX_WISH_LOADED), l, (void **)&l->wish,
                        sizeof *l->wish, &p->nwish, line_row)) ||
        (rc = load_rows(s, query(s, ST_LOAD_ORDERS, cust, TS_HUB_MAX_ORDERS), l,
                        (void **)&l->orders, sizeof *l->orders, &p->norders, order_row)) ||
        (rc = ts_hub_load_keys(s, cust, &l->keys, &l->prev_keys)) ||
        (rc = ts_hub_offers_load(s, cust, now, &l->offers, &p->noffers)))
        return rc;
    p->offers = l->offers;
    p->views = l->views;
    p->cart = l->cart;
    p->wishlist = l->wish;
    p->orders = l->orders;
    p->now_ms = now;
    /* What other customers did, for the suggestion; not asked when the
     * card will carry no suggestion from it anyway. */
    const char *top =
        p->consent && !p->suggested_id && !ts_hub_db_bulk(s) ? ts_hub_top_interest(p) : NULL;
    if (top && (rc = ts_hub_suggest_peers(s, cust, top, l->peer_id, sizeof l->peer_id, l->peer_name,
                                          sizeof l->peer_name)))
        return rc;
    if (l->peer_id[0]) {
        p->peer_id = l->peer_id;
        p->peer_name = l->peer_name[0] ? l->peer_name : NULL;
    }
    return TS_OK;
}

static enum ts_err stamp(struct ts_hub_store *s, const char *cust, const struct loaded *l,
                         const char *card, int64_t now)
{
    int64_t seq;
    int rc = ts_hub_db_next_seq(s, &seq);
    if (rc != TS_OK)
        return rc;
    struct ts_sql_stmt *st = stmt(s, ST_CUST_STAMP);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, card);
    ts_sql_bind_text(st, 3, l->keys.data);
    ts_sql_bind_int64(st, 4, seq);
    ts_sql_bind_int64(st, 5, now);
    ts_sql_bind_text(st, 6, l->prev_keys.len ? l->prev_keys.data : NULL);
    if (ts_sql_step(st) != TS_SQL_DONE)
        return ts_hub_db_werr(s, "stamp customer");
    if (l->home_store) {
        if (!(st = stmt(s, ST_FEED_UPSERT)))
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, l->home_store);
        ts_sql_bind_text(st, 2, cust);
        ts_sql_bind_int64(st, 3, seq);
        ts_sql_bind_text(st, 4, l->p.cid);
        if (ts_sql_step(st) != TS_SQL_DONE)
            return ts_hub_db_werr(s, "stamp feed");
    }
    /* A customer who moved to another home store leaves the old store's
     * slice: that store gets an erase. */
    if (!(st = stmt(s, ST_FEED_ERASE_OTHERS)))
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_int64(st, 2, seq);
    ts_sql_bind_text(st, 3, l->home_store);
    ts_sql_bind_int64(st, 4, now);
    if (ts_sql_step(st) != TS_SQL_DONE)
        return ts_hub_db_werr(s, "stamp feed");
    return TS_OK;
}

enum ts_err ts_hub_rebuild(struct ts_hub_store *s, const char *cust, int64_t now_ms, bool *rebuilt)
{
    struct loaded l;
    char *card = NULL;
    memset(&l, 0, sizeof l);
    *rebuilt = false;
    int rc = load(s, cust, now_ms, &l);
    if (rc == TS_ERR_NOTFOUND) {
        rc = TS_OK;
        goto out;
    }
    if (rc != TS_OK)
        goto out;
    l.p.updated_ms = now_ms;
    l.p.now_ms = now_ms;
    if ((rc = ts_hub_card_build(&l.p, &card)) || (rc = stamp(s, cust, &l, card, now_ms)))
        goto out;
    *rebuilt = true;
out:
    free(card);
    loaded_free(&l);
    return rc;
}

/* Next batch of customer ids after `after` (keyset pagination: the loop
 * below updates the table it walks, so no statement stays open across it). */
static enum ts_err next_ids(struct ts_hub_store *s, const char *after, struct pool *ids)
{
    bool nomem = false;
    struct ts_sql_stmt *q = stmt(s, ST_REKEY_IDS);
    if (!q)
        return TS_ERR_DB;
    ts_sql_bind_text(q, 1, after);
    int step;
    while ((step = ts_sql_step(q)) == TS_SQL_ROW && !nomem)
        dup(ids, q, 0, &nomem);
    ts_sql_reset(q);
    if (nomem)
        return TS_ERR_NOMEM;
    return step == TS_SQL_ROW || step == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(s, "rekey ids");
}

/* Gives cust the keys and seq a re-key stamps. */
static enum ts_err restamp(struct ts_hub_store *s, const char *cust)
{
    ts_buf keys = {0}, prev = {0};
    int64_t seq;
    struct ts_sql_stmt *up, *feed;
    int rc = ts_hub_load_keys(s, cust, &keys, &prev);
    if (rc == TS_OK)
        rc = ts_hub_db_next_seq(s, &seq);
    if (rc == TS_OK && (!(up = stmt(s, ST_REKEY_CUST)) || !(feed = stmt(s, ST_REKEY_FEED))))
        rc = TS_ERR_DB;
    if (rc == TS_OK) {
        ts_sql_bind_text(up, 1, cust);
        ts_sql_bind_text(up, 2, keys.data);
        ts_sql_bind_text(up, 3, prev.len ? prev.data : NULL);
        ts_sql_bind_int64(up, 4, seq);
        ts_sql_bind_text(feed, 1, cust);
        ts_sql_bind_int64(feed, 2, seq);
        if (ts_sql_step(up) != TS_SQL_DONE || ts_sql_step(feed) != TS_SQL_DONE)
            rc = ts_hub_db_werr(s, "rekey stamp");
    }
    ts_buf_free(&keys);
    ts_buf_free(&prev);
    return rc;
}

enum ts_err ts_hub_rekey_all(struct ts_hub_store *s, size_t *restamped)
{
    struct pool ids = {0};
    char last[TS_SEG_MAX_ID + 1] = "";
    size_t n = 0;
    int rc = TS_OK;
    for (;;) {
        pool_free(&ids);
        memset(&ids, 0, sizeof ids);
        if ((rc = next_ids(s, last, &ids)) || ids.n == 0)
            break;
        for (size_t i = 0; rc == TS_OK && i < ids.n; i++, n++)
            rc = restamp(s, ids.s[i]);
        if (rc)
            break;
        ts_strlcpy(last, ids.s[ids.n - 1], sizeof last);
    }
    pool_free(&ids);
    if (rc == TS_OK && restamped)
        *restamped = n;
    return rc;
}
