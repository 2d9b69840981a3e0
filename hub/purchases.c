/*
 * In-store purchases at the hub: POST /v1/purchases (agent batches of
 * Segment "Order Completed" events over mutual TLS), stored exactly once by
 * messageId, the customer's profile updated (cart, recent orders, feeds),
 * queued for upstream.c, and found again by receipt or order number.
 *
 * Validation is per event: a bad event is answered in "rejected" with its
 * reason and the rest of the batch is stored, so one malformed receipt never
 * blocks a terminal's outbox. Only a body that is not a batch at all is a 400.
 */
#include "purchases.h"
#include "store_int.h"

#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "hub"

/* Since start, for /metrics. */
static atomic_ullong n_accepted, n_duplicates, n_rejected;

/* ---- parsing ---------------------------------------------------------------*/

/* A string member of 1..max bytes without control characters, else NULL. */
static const char *str_member(json_t *o, const char *name, size_t max)
{
    const char *v = json_string_value(json_object_get(o, name));
    if (!v)
        return NULL;
    size_t n = json_string_length(json_object_get(o, name));
    if (n == 0 || n > max || strlen(v) != n)
        return NULL; /* empty, too long, or an embedded NUL */
    for (const unsigned char *c = (const unsigned char *)v; *c; c++)
        if (*c < 0x20)
            return NULL;
    return v;
}

static bool num_member(json_t *o, const char *name, double *out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* Why an event is refused, into p->error; false when it is fine. */
static bool reject(struct ts_hub_purchase *p, const char *fmt, const char *arg)
{
    p->status = TS_HUB_P_REJECTED;
    snprintf(p->error, sizeof p->error, fmt, arg ? arg : "");
    return true;
}

static bool bad_products(struct ts_hub_purchase *p, json_t *products)
{
    size_t n = json_array_size(products);
    if (!json_is_array(products) || n == 0)
        return reject(p, "properties.products must list at least one product%s", NULL);
    if (n > TS_HUB_PURCHASE_MAX_PRODUCTS)
        return reject(p, "properties.products has more than 500 lines%s", NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(products, i);
        char where[48];
        double d;
        snprintf(where, sizeof where, "products[%zu]", i);
        if (!json_is_object(it))
            return reject(p, "properties.%s is not an object", where);
        if (!str_member(it, "product_id", TS_SEG_MAX_ID) && !str_member(it, "sku", TS_SEG_MAX_ID))
            return reject(p, "properties.%s needs a product_id or sku", where);
        json_t *q = json_object_get(it, "quantity");
        if (q &&
            (!json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > 1000000))
            return reject(p, "properties.%s.quantity must be a whole number from 1", where);
        if (json_object_get(it, "price") && (!num_member(it, "price", &d) || d < 0 || d > 1e12))
            return reject(p, "properties.%s.price must be a number >= 0", where);
    }
    return false;
}

/* Checks one event and fills p from it; false when it is valid. */
static bool bad_event(struct ts_hub_purchase *p, json_t *e, const char *store, int64_t now_ms)
{
    if (!json_is_object(e))
        return reject(p, "event is not an object%s", NULL);
    p->message_id = str_member(e, "messageId", TS_SEG_MAX_ID);
    if (!p->message_id)
        return reject(p, "messageId missing or not a string of 1..256 bytes%s", NULL);
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *name = json_string_value(json_object_get(e, "event"));
    if (!type || strcmp(type, "track") != 0)
        return reject(p, "type must be \"track\"%s", NULL);
    if (!name || strcmp(name, "Order Completed") != 0)
        return reject(p, "event must be \"Order Completed\"%s", NULL);
    json_t *props = json_object_get(e, "properties");
    if (!json_is_object(props))
        return reject(p, "properties missing%s", NULL);
    json_t *ctx = json_object_get(e, "context");
    json_t *tl = json_is_object(ctx) ? json_object_get(ctx, "tillside") : NULL;
    if (tl && !json_is_object(tl))
        return reject(p, "context.tillside is not an object%s", NULL);
    /* A terminal records purchases of its own store only. */
    const char *st = tl ? json_string_value(json_object_get(tl, "store")) : NULL;
    if (st && strcmp(st, store) != 0)
        return reject(p, "context.tillside.store is not this terminal's store (%s)", store);
    p->store = store;
    p->terminal = tl ? str_member(tl, "terminal", TS_SEG_MAX_ID) : NULL;
    p->source = tl ? str_member(tl, "source", TS_SEG_MAX_ID) : NULL;
    p->barcode = tl ? str_member(tl, "barcode", TS_SEG_MAX_ID) : NULL;
    p->cid = tl ? str_member(tl, "cid", 64) : NULL;
    if (tl && json_object_get(tl, "cid") && !json_is_null(json_object_get(tl, "cid")) && !p->cid)
        return reject(p, "context.tillside.cid must be a card cid%s", NULL);
    p->receipt = str_member(props, "order_id", TS_SEG_MAX_ID);
    if (!p->receipt)
        return reject(p, "properties.order_id (the receipt number) missing%s", NULL);
    const char *r2 = tl ? str_member(tl, "receipt", TS_SEG_MAX_ID) : NULL;
    if (r2 && strcmp(r2, p->receipt) != 0)
        return reject(p, "context.tillside.receipt differs from properties.order_id%s", NULL);
    p->currency = json_string_value(json_object_get(props, "currency"));
    if (!p->currency || strlen(p->currency) != 3 || p->currency[0] < 'A' || p->currency[0] > 'Z' ||
        p->currency[1] < 'A' || p->currency[1] > 'Z' || p->currency[2] < 'A' ||
        p->currency[2] > 'Z')
        return reject(p, "properties.currency must be 3 capital letters (ISO 4217)%s", NULL);
    if (!num_member(props, "total", &p->total) || p->total < 0 || p->total > 1e12)
        return reject(p, "properties.total must be a number >= 0%s", NULL);
    static const char *const optional[] = {"revenue", "tax", "discount"};
    for (size_t i = 0; i < 3; i++) {
        double d;
        if (json_object_get(props, optional[i]) && !num_member(props, optional[i], &d))
            return reject(p, "properties.%s must be a number", optional[i]);
    }
    if (bad_products(p, json_object_get(props, "products")))
        return true;
    p->at_ms = now_ms;
    json_t *ts = json_object_get(e, "originalTimestamp");
    if (!ts)
        ts = json_object_get(e, "timestamp");
    if (ts) {
        const char *t = json_string_value(ts);
        if (!t || !ts_hub_iso_shape(t) || ts_iso8601_parse(t, &p->at_ms) != TS_OK)
            return reject(p, "originalTimestamp is not an ISO-8601 time%s", NULL);
    }
    /* What goes upstream names the store even when the agent left it out. */
    if (!tl) {
        tl = json_object();
        if (!json_is_object(ctx)) {
            ctx = json_object();
            json_object_set_new(e, "context", ctx);
        }
        json_object_set_new(ctx, "tillside", tl);
    }
    if (!st)
        json_object_set_new(tl, "store", json_string(store));
    /* The text is what the purchases table keeps and upstream.c forwards,
     * so its size is the one that counts. */
    p->text = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!p->text || strlen(p->text) > TS_HUB_PURCHASE_MAX_EVENT) {
        free(p->text);
        p->text = NULL;
        return reject(p, "event larger than 32 KB%s", NULL);
    }
    p->event = e;
    return false;
}

int ts_hub_purchases_parse(const char *body, size_t len, const char *store, int64_t now_ms,
                           struct ts_hub_pbatch **out, char *err, size_t errsz)
{
    json_error_t je;
    *out = NULL;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        ts_errf(err, errsz, "body is not JSON: %s (line %d)", je.text, je.line);
        return TS_ERR_INVAL;
    }
    json_t *arr = json_object_get(root, "batch");
    if (!json_is_array(arr)) {
        json_decref(root);
        ts_errf(err, errsz, "body is not a batch: {\"batch\": [event, ...]} expected");
        return TS_ERR_INVAL;
    }
    struct ts_hub_pbatch *b = calloc(1, sizeof *b);
    size_t n = json_array_size(arr);
    if (!b || !(b->p = calloc(n ? n : 1, sizeof *b->p))) {
        free(b);
        json_decref(root);
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    b->root = root;
    b->n = n;
    for (size_t i = 0; i < n; i++)
        bad_event(&b->p[i], json_array_get(arr, i), store, now_ms);
    *out = b;
    return TS_OK;
}

void ts_hub_pbatch_free(struct ts_hub_pbatch *b)
{
    if (!b)
        return;
    json_decref(b->root);
    for (size_t i = 0; i < b->n; i++)
        free(b->p[i].text);
    free(b->p);
    free(b);
}

/* ---- storing ---------------------------------------------------------------*/

static const char *const schema_sql =
    /* one row per purchase; event is the Segment event as forwarded */
    "CREATE TABLE IF NOT EXISTS purchases(message_id TEXT PRIMARY KEY, store_id TEXT NOT NULL,"
    "  terminal TEXT, receipt TEXT NOT NULL, receipt_norm TEXT, customer TEXT, cid TEXT,"
    "  total REAL, currency TEXT, at INTEGER NOT NULL, received INTEGER NOT NULL, source TEXT,"
    "  event TEXT NOT NULL, barcode_norm TEXT);"
    /* a receipt is unique per store: a second messageId for it is a duplicate */
    "CREATE UNIQUE INDEX IF NOT EXISTS purchases_receipt ON purchases(store_id, receipt);"
    "CREATE INDEX IF NOT EXISTS purchases_receipt_norm ON purchases(receipt_norm);"
    /* the printed barcode, when it is not just the receipt number */
    "CREATE INDEX IF NOT EXISTS purchases_barcode_norm ON purchases(barcode_norm)"
    "  WHERE barcode_norm IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS purchases_customer ON purchases(customer);"
    /* the durable outbox of upstream.c: state pending, sent or dead */
    "CREATE TABLE IF NOT EXISTS upstream_outbox(message_id TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_at INTEGER NOT NULL, solo INTEGER NOT NULL DEFAULT 0, reason TEXT,"
    "  created INTEGER NOT NULL, done_at INTEGER) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS upstream_due ON upstream_outbox(state, next_at);"
    /* a purchase names its customer by card cid */
    "CREATE INDEX IF NOT EXISTS customers_cid ON customers(cid);";

int ts_hub_purchases_schema(struct ts_hub_store *s)
{
    struct ts_sql_stmt *st = NULL;
    bool has_store = false;
    if (ts_hub_exec_ddl(s, schema_sql) != TS_OK)
        return TS_ERR_DB;
    if (ts_sql_is_pg(s->db))
        return ts_hub_exec_ddl(s, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS store_id TEXT");
    /* In-store orders name their store on the card. */
    if (ts_sql_prepare(s->db, "SELECT 1 FROM pragma_table_info('orders') WHERE name = 'store_id'",
                       &st) != TS_SQL_OK)
        return ts_hub_db_err(s, "purchases schema");
    has_store = ts_sql_step(st) == TS_SQL_ROW;
    ts_sql_finalize(st);
    if (!has_store &&
        ts_sql_exec(s->db, "ALTER TABLE orders ADD COLUMN store_id TEXT") != TS_SQL_OK)
        return ts_hub_db_err(s, "purchases schema");
    return TS_OK;
}

enum q {
    Q_INSERT,
    Q_OUTBOX,
    Q_CUST_BY_CID,
    Q_PRODUCT,
    Q_ORDER,
    Q_HOME,
    Q_IDENT,
    Q_COUNT,
};

static const char *const q_sql[Q_COUNT] = {
    [Q_INSERT] = "INSERT INTO purchases(message_id, store_id, terminal, receipt,"
                 " receipt_norm, customer, cid, total, currency, at, received, source, event,"
                 " barcode_norm)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                 " ON CONFLICT DO NOTHING",
    [Q_OUTBOX] = "INSERT INTO upstream_outbox(message_id, next_at, created)"
                 " VALUES(?1, ?2, ?2) ON CONFLICT DO NOTHING",
    [Q_CUST_BY_CID] = "SELECT id FROM customers WHERE cid = ?1",
    /* a till's product name ("TRAIL JKT M") never overwrites the catalogue's */
    [Q_PRODUCT] = "INSERT INTO products(product_id, name) VALUES(?1, ?2)"
                  " ON CONFLICT DO NOTHING",
    [Q_ORDER] = "INSERT INTO orders(order_id, customer, total, currency, status, at, store_id)"
                " VALUES(?1, ?2, ?3, ?4, 'in store', ?5, ?6) ON CONFLICT(order_id) DO NOTHING",
    /* the store a customer buys in gets their card when no home store is known */
    [Q_HOME] = "UPDATE customers SET home_store = ?2 WHERE id = ?1 AND home_store IS NULL",
    /* scanning the receipt later finds the card in the store's cache too */
    [Q_IDENT] = "INSERT INTO identifiers(key, kind, value, customer, prev_key)"
                " VALUES(?1, 'receipt', ?2, ?3, ?4) ON CONFLICT(key) DO NOTHING",
};

struct ctx {
    struct ts_hub_store *s;
    struct ts_sql_stmt *q[Q_COUNT];
    char **touched;
    size_t ntouched;
};

static int step_done(struct ctx *c, struct ts_sql_stmt *st, const char *what)
{
    int rc = ts_sql_step(st);
    ts_sql_reset(st);
    return rc == TS_SQL_DONE || rc == TS_SQL_ROW ? TS_OK : ts_hub_db_err(c->s, what);
}

static struct ts_sql_stmt *q(struct ctx *c, enum q id)
{
    ts_sql_reset(c->q[id]);
    ts_sql_clear_bindings(c->q[id]);
    return c->q[id];
}

/* Runs one of store.c's (customer, product, n) line statements. */
static int line(struct ctx *c, enum stmt_id id, const char *cust, const char *pid, bool has_n,
                int64_t n)
{
    struct ts_sql_stmt *st = ts_hub_st(c->s, id);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, pid);
    if (has_n)
        ts_sql_bind_int64(st, 3, n);
    return step_done(c, st, "purchase line");
}

/* The items leave the online cart (by as many as were bought), count as
 * bought for suggestions, and the receipt becomes an in-store order. */
/* Scanning the receipt (its number or its printed barcode) later finds the
 * card in the store's cache too: the identifier key joins the card's keys. */
static int link_receipt(struct ctx *c, const char *norm, const char *cust)
{
    char key[TS_IDENT_KEY_HEX], pkey[TS_IDENT_KEY_HEX];
    if (!norm || ts_ident_key(&c->s->key, TS_IDENT_RECEIPT, norm, key) != TS_OK ||
        (c->s->prev.len && ts_ident_key(&c->s->prev, TS_IDENT_RECEIPT, norm, pkey)))
        return TS_OK; /* nothing printable: no key, still an order */
    struct ts_sql_stmt *st = q(c, Q_IDENT);
    ts_sql_bind_text(st, 1, key);
    ts_sql_bind_text(st, 2, norm);
    ts_sql_bind_text(st, 3, cust);
    ts_sql_bind_text(st, 4, c->s->prev.len ? pkey : NULL);
    return step_done(c, st, "purchase receipt key");
}

static int apply_profile(struct ctx *c, const struct ts_hub_purchase *p, const char *cust,
                         const char *receipt_norm, const char *barcode_norm)
{
    json_t *props = json_object_get(p->event, "properties");
    json_t *products = json_object_get(props, "products");
    int rc = TS_OK;
    for (size_t i = 0; rc == TS_OK && i < json_array_size(products); i++) {
        json_t *it = json_array_get(products, i);
        const char *pid = str_member(it, "product_id", TS_SEG_MAX_ID);
        const char *sku = str_member(it, "sku", TS_SEG_MAX_ID);
        json_int_t qty = json_is_integer(json_object_get(it, "quantity"))
                             ? json_integer_value(json_object_get(it, "quantity"))
                             : 1;
        const char *ids[2] = {pid ? pid : sku, pid && sku && strcmp(pid, sku) != 0 ? sku : NULL};
        struct ts_sql_stmt *st = q(c, Q_PRODUCT);
        ts_sql_bind_text(st, 1, ids[0]);
        ts_sql_bind_text(st, 2, str_member(it, "name", TS_SEG_MAX_TEXT));
        rc = step_done(c, st, "purchase product");
        /* The online cart may hold the product under its sku. */
        for (int k = 0; rc == TS_OK && k < 2 && ids[k]; k++) {
            rc = line(c, ST_CART_SUB, cust, ids[k], true, qty);
            if (rc == TS_OK)
                rc = line(c, ST_CART_DEL_EMPTY, cust, ids[k], false, 0);
        }
        if (rc == TS_OK)
            rc = line(c, ST_BOUGHT_ADD, cust, ids[0], true, p->at_ms);
    }
    if (rc != TS_OK)
        return rc;
    struct ts_sql_stmt *st = q(c, Q_ORDER);
    ts_sql_bind_text(st, 1, p->receipt);
    ts_sql_bind_text(st, 2, cust);
    ts_sql_bind_double(st, 3, p->total);
    ts_sql_bind_text(st, 4, p->currency);
    ts_sql_bind_int64(st, 5, p->at_ms);
    ts_sql_bind_text(st, 6, p->store);
    if ((rc = step_done(c, st, "purchase order")))
        return rc;
    st = q(c, Q_HOME);
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, p->store);
    if ((rc = step_done(c, st, "purchase home store")) ||
        (rc = link_receipt(c, receipt_norm, cust)))
        return rc;
    if (barcode_norm && (!receipt_norm || strcmp(barcode_norm, receipt_norm) != 0))
        rc = link_receipt(c, barcode_norm, cust);
    return rc;
}

static int touch(struct ctx *c, const char *cust)
{
    for (size_t i = 0; i < c->ntouched; i++)
        if (strcmp(c->touched[i], cust) == 0)
            return TS_OK;
    char **t = realloc(c->touched, (c->ntouched + 1) * sizeof *t);
    if (!t)
        return TS_ERR_NOMEM;
    c->touched = t;
    if (!(t[c->ntouched] = strdup(cust)))
        return TS_ERR_NOMEM;
    c->ntouched++;
    return TS_OK;
}

/* The customer's internal id for a card cid into out ("" = none known). */
static int customer_of(struct ctx *c, const char *cid, char *out, size_t outsz)
{
    out[0] = '\0';
    if (!cid)
        return TS_OK;
    struct ts_sql_stmt *st = q(c, Q_CUST_BY_CID);
    ts_sql_bind_text(st, 1, cid);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW && ts_sql_column_text(st, 0))
        ts_strlcpy(out, ts_sql_column_text(st, 0), outsz);
    ts_sql_reset(st);
    return step == TS_SQL_ROW || step == TS_SQL_DONE ? TS_OK : ts_hub_db_err(c->s, "cid lookup");
}

static int store_one(struct ctx *c, struct ts_hub_purchase *p, bool forward, int64_t now_ms)
{
    char cust[TS_SEG_MAX_ID + 1], norm[TS_SEG_MAX_ID + 1], bnorm[TS_SEG_MAX_ID + 1];
    int rc = customer_of(c, p->cid, cust, sizeof cust);
    if (rc != TS_OK)
        return rc;
    bool has_norm = ts_ident_normalize(p->receipt, strlen(p->receipt), norm, sizeof norm) == TS_OK;
    bool has_bnorm = p->barcode && ts_ident_normalize(p->barcode, strlen(p->barcode), bnorm,
                                                      sizeof bnorm) == TS_OK;
    struct ts_sql_stmt *st = q(c, Q_INSERT);
    ts_sql_bind_text(st, 1, p->message_id);
    ts_sql_bind_text(st, 2, p->store);
    ts_sql_bind_text(st, 3, p->terminal);
    ts_sql_bind_text(st, 4, p->receipt);
    ts_sql_bind_text(st, 5, has_norm ? norm : NULL);
    ts_sql_bind_text(st, 6, cust[0] ? cust : NULL);
    ts_sql_bind_text(st, 7, p->cid);
    ts_sql_bind_double(st, 8, p->total);
    ts_sql_bind_text(st, 9, p->currency);
    ts_sql_bind_int64(st, 10, p->at_ms);
    ts_sql_bind_int64(st, 11, now_ms);
    ts_sql_bind_text(st, 12, p->source);
    ts_sql_bind_text(st, 13, p->text);
    ts_sql_bind_text(st, 14, has_bnorm ? bnorm : NULL);
    if ((rc = step_done(c, st, "purchase insert")))
        return rc;
    if (ts_sql_changes(c->s->db) == 0) {
        /* Seen before: by messageId, or this store's receipt under another
         * messageId (the same sale must not count twice). */
        p->status = TS_HUB_P_DUPLICATE;
        return TS_OK;
    }
    p->status = TS_HUB_P_ACCEPTED;
    if (forward) {
        st = q(c, Q_OUTBOX);
        ts_sql_bind_text(st, 1, p->message_id);
        ts_sql_bind_int64(st, 2, now_ms);
        if ((rc = step_done(c, st, "outbox insert")))
            return rc;
    }
    if (!cust[0])
        return TS_OK;
    if ((rc = apply_profile(c, p, cust, has_norm ? norm : NULL, has_bnorm ? bnorm : NULL)))
        return rc;
    return touch(c, cust);
}

static int exec(struct ts_hub_store *s, const char *sql)
{
    return ts_sql_exec(s->db, sql) == TS_SQL_OK ? TS_OK : ts_hub_db_err(s, sql);
}

int ts_hub_purchases_store(struct ts_hub_store *s, struct ts_hub_pbatch *b, bool forward,
                           int64_t now_ms, struct ts_hub_purchase_counts *cnt)
{
    struct ctx c = {.s = s};
    struct ts_hub_purchase_counts r = {0};
    int rc = TS_OK;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < Q_COUNT; i++)
        if (ts_sql_prepare(s->db, q_sql[i], &c.q[i]) != TS_SQL_OK) {
            rc = ts_hub_db_err(s, q_sql[i]);
            goto out;
        }
    /* The agent deletes a purchase from its outbox once we answer, so the
     * commit must survive a power cut: FULL for this transaction only (CDP
     * batches, which the CDP can replay, stay at NORMAL). */
    if ((rc = exec(s, "PRAGMA synchronous=FULL")) || (rc = exec(s, "BEGIN IMMEDIATE")))
        goto out;
    for (size_t i = 0; rc == TS_OK && i < b->n; i++)
        if (b->p[i].status != TS_HUB_P_REJECTED)
            rc = store_one(&c, &b->p[i], forward, now_ms);
    for (size_t i = 0; rc == TS_OK && i < c.ntouched; i++) {
        bool rebuilt = false;
        rc = ts_hub_rebuild(s, c.touched[i], now_ms, &rebuilt);
        r.customers += rebuilt;
    }
    if (rc == TS_OK)
        rc = exec(s, "COMMIT");
    if (rc != TS_OK)
        ts_sql_exec(s->db, "ROLLBACK");
out:
    ts_sql_exec(s->db, "PRAGMA synchronous=NORMAL");
    for (int i = 0; i < Q_COUNT; i++)
        ts_sql_finalize(c.q[i]);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < c.ntouched; i++)
        free(c.touched[i]);
    free(c.touched);
    if (rc != TS_OK) {
        /* Nothing was stored: the statuses set so far must not be reported. */
        for (size_t i = 0; i < b->n; i++)
            if (b->p[i].status != TS_HUB_P_REJECTED)
                b->p[i].status = TS_HUB_P_ACCEPTED;
        return rc;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->p[i].status == TS_HUB_P_ACCEPTED)
            r.accepted++;
        else if (b->p[i].status == TS_HUB_P_DUPLICATE)
            r.duplicates++;
        else
            r.rejected++;
    }
    atomic_fetch_add(&n_accepted, r.accepted);
    atomic_fetch_add(&n_duplicates, r.duplicates);
    atomic_fetch_add(&n_rejected, r.rejected);
    if (r.customers)
        ts_hub_store_notify(s);
    if (cnt)
        *cnt = r;
    return TS_OK;
}

/* ---- HTTP ------------------------------------------------------------------*/

static void fail(struct ts_httpd_resp *resp, int status, const char *msg)
{
    ts_httpd_error(resp, status, msg);
}

void ts_hub_purchases_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                             struct ts_httpd_resp *resp)
{
    struct ts_hub_pbatch *b = NULL;
    char err[256];
    const char *store = req->peer->ou; /* api.c checked the certificate */
    if (req->body_len > TS_HUB_MAX_BODY) {
        fail(resp, 413, "request larger than 500 KB");
        return;
    }
    int64_t now = api->now_ms();
    int rc = ts_hub_purchases_parse(req->body ? req->body : "", req->body_len, store, now, &b, err,
                                    sizeof err);
    if (rc != TS_OK) {
        TS_WARN(COMP, "purchases from %s/%s refused: %s", store, req->peer->cn, err);
        if (rc == TS_ERR_NOMEM)
            snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 5\r\n");
        fail(resp, rc == TS_ERR_NOMEM ? 503 : 400, err);
        return;
    }
    struct ts_hub_purchase_counts c;
    rc = ts_hub_purchases_store(api->store, b, api->cfg->upstream_url[0] != '\0', now, &c);
    if (rc != TS_OK) {
        /* Nothing stored: the agent keeps the events and retries later. */
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %d\r\n",
                 rc == TS_ERR_FULL ? 60 : 5);
        fail(resp, rc == TS_ERR_FULL ? 507 : 503,
             rc == TS_ERR_FULL ? "hub storage full" : "cannot store the purchases now");
        ts_hub_pbatch_free(b);
        return;
    }
    ts_hub_upstream_kick(api->upstream);
    json_t *o = json_pack("{s:[], s:[], s:[]}", "accepted", "duplicates", "rejected");
    for (size_t i = 0; o && i < b->n; i++) {
        const struct ts_hub_purchase *p = &b->p[i];
        if (p->status == TS_HUB_P_ACCEPTED)
            json_array_append_new(json_object_get(o, "accepted"), json_string(p->message_id));
        else if (p->status == TS_HUB_P_DUPLICATE)
            json_array_append_new(json_object_get(o, "duplicates"), json_string(p->message_id));
        else {
            json_t *r = json_pack("{s:s?, s:i, s:s}", "messageId", p->message_id, "index",
                                  (json_int_t)i, "error", p->error);
            json_array_append_new(json_object_get(o, "rejected"), r);
            TS_WARN(COMP, "purchase %s from %s/%s rejected: %s",
                    p->message_id ? p->message_id : "(no messageId)", store, req->peer->cn,
                    p->error);
        }
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        fail(resp, 500, "out of memory");
    } else {
        resp->status = 200;
        ts_buf_reset(&resp->body);
        ts_buf_puts(&resp->body, text);
        free(text);
    }
    TS_INFO(COMP,
            "purchases store=%s terminal=%s events=%zu accepted=%zu duplicates=%zu "
            "rejected=%zu customers=%zu",
            store, req->peer->cn, b->n, c.accepted, c.duplicates, c.rejected, c.customers);
    ts_hub_pbatch_free(b);
}

static void metric(ts_buf *b, const char *name, const char *type, const char *help, double v)
{
    ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void ts_hub_metrics_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                           struct ts_httpd_resp *resp)
{
    (void)req;
    json_t *o = json_object();
    struct ts_hub_upstream_metrics m = {0};
    ts_hub_purchases_stats(api->store, o);
    json_t *p = json_object_get(o, "purchases");
    ts_hub_upstream_metrics(api->upstream, &m);
    ts_buf_reset(&resp->body);
    ts_buf *b = &resp->body;
    ts_buf_printf(b,
                  "# HELP tillside_hub_purchases_total Purchase events answered since start, by "
                  "outcome.\n# TYPE tillside_hub_purchases_total counter\n"
                  "tillside_hub_purchases_total{result=\"accepted\"} %llu\n"
                  "tillside_hub_purchases_total{result=\"duplicate\"} %llu\n"
                  "tillside_hub_purchases_total{result=\"rejected\"} %llu\n",
                  atomic_load(&n_accepted), atomic_load(&n_duplicates), atomic_load(&n_rejected));
    metric(b, "tillside_hub_purchases_stored", "gauge", "Purchases held in the hub database.",
           (double)json_integer_value(json_object_get(p, "stored")));
    metric(b, "tillside_hub_upstream_pending", "gauge",
           "Purchases waiting to be forwarded to the CDP.",
           (double)json_integer_value(json_object_get(p, "pending")));
    metric(b, "tillside_hub_upstream_dead", "gauge",
           "Purchases the CDP refused for good (dead letters); alarm when above 0.",
           (double)json_integer_value(json_object_get(p, "dead")));
    metric(b, "tillside_hub_upstream_forwarded_total", "counter",
           "Purchases the CDP accepted since start.", (double)m.forwarded);
    metric(b, "tillside_hub_upstream_requests_total", "counter",
           "Requests sent to the CDP since start.", (double)m.requests);
    metric(b, "tillside_hub_upstream_failures_total", "counter",
           "Requests to the CDP that failed and will be retried, since start.", (double)m.failures);
    metric(b, "tillside_hub_upstream_dead_total", "counter",
           "Purchases moved to the dead letters since start.", (double)m.dead);
    if (m.last_success_ms)
        metric(b, "tillside_hub_upstream_last_success_timestamp_seconds", "gauge",
               "Wall-clock time of the last request the CDP accepted.",
               (double)m.last_success_ms / 1000.0);
    json_decref(o);
    resp->status = 200;
    ts_strlcpy(resp->content_type, "text/plain; version=0.0.4; charset=utf-8",
               sizeof resp->content_type);
}
