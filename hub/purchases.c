/*
 * Storing in-store purchases at the hub: each event of a checked batch
 * (purchase_parse.c) exactly once by messageId, the customer's profile
 * updated (cart, bought, recent orders, the receipt's identifier key), the
 * card rebuilt and re-stamped in the feed, and the purchase queued for the
 * upstream forwarder, all in one durable transaction. purchase_http.c
 * answers the terminal; purchase_lookup.c finds purchases again.
 */
#include "parts.h"
#include "purchases.h"
#include "sinks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* a purchase names its customer by card cid */
    "CREATE INDEX IF NOT EXISTS customers_cid ON customers(cid);"
    /* consent recorded at a till: who, where, when, by whom (never erased
     * with the purchases' customer link: it is the proof of the choice) */
    "CREATE TABLE IF NOT EXISTS consent_audit(message_id TEXT PRIMARY KEY, store_id TEXT NOT NULL,"
    "  terminal TEXT, customer TEXT, cid TEXT NOT NULL, personalization INTEGER,"
    "  email INTEGER, sms INTEGER, associate TEXT, at INTEGER NOT NULL,"
    "  received INTEGER NOT NULL, source TEXT);";

enum ts_err ts_hub_purchases_schema(struct ts_hub_store *s)
{
    enum ts_err rc = ts_hub_db_ddl(s, schema_sql);
    /* In-store orders name their store on the card. */
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "orders", "store_id", "store_id TEXT", NULL);
    /* Till events of every kind share the table (PROTOCOL.md "Till events"):
     * kind 1 purchase, 2 return (original = the sale's receipt), 4 consent. */
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "purchases", "kind", "kind INTEGER NOT NULL DEFAULT 1", NULL);
    if (rc == TS_OK)
        rc = ts_hub_db_add_column(s, "purchases", "original", "original TEXT", NULL);
    if (rc == TS_OK)
        rc = ts_hub_db_ddl(s, "CREATE INDEX IF NOT EXISTS purchases_original ON purchases(original)"
                              " WHERE original IS NOT NULL;");
    return rc;
}

enum q {
    Q_INSERT,
    Q_CUST_BY_CID,
    Q_PRODUCT,
    Q_ORDER,
    Q_HOME,
    Q_IDENT,
    Q_ORIGINAL,
    Q_RETURNED,
    Q_UNBOUGHT,
    Q_CONSENT,
    Q_AUDIT,
    Q_COUNT,
};

static const char *const q_sql[Q_COUNT] = {
    [Q_INSERT] = "INSERT INTO purchases(message_id, store_id, terminal, receipt,"
                 " receipt_norm, customer, cid, total, currency, at, received, source, event,"
                 " barcode_norm, kind, original)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                 " ON CONFLICT DO NOTHING",
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
    /* a return's customer is the original sale's: this store's first */
    [Q_ORIGINAL] = "SELECT customer, cid FROM purchases WHERE receipt = ?1 AND kind = 1"
                   " ORDER BY CASE WHEN store_id = ?2 THEN 0 ELSE 1 END, at DESC LIMIT 1",
    /* the card's order shows what came back */
    [Q_RETURNED] = "UPDATE orders SET status = CASE WHEN (SELECT sum(total) FROM purchases"
                   " WHERE kind = 2 AND original = ?1) >= coalesce(total, 0) - 0.005"
                   " THEN 'returned' ELSE 'partly returned' END WHERE order_id = ?1",
    /* what came back is no longer bought (suggestions, the interest summary) */
    [Q_UNBOUGHT] = "DELETE FROM bought WHERE customer = ?1 AND product_id = ?2",
    [Q_CONSENT] = "UPDATE customers SET consent = ?2 WHERE id = ?1",
    [Q_AUDIT] = "INSERT INTO consent_audit(message_id, store_id, terminal, customer, cid,"
                " personalization, email, sms, associate, at, received, source)"
                " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                " ON CONFLICT DO NOTHING",
};
static const struct ts_hub_stmts stmts = {q_sql, NULL, Q_COUNT};

struct ctx {
    struct ts_hub_store *s;
    char **touched;
    size_t ntouched;
};

static enum ts_err step_done(struct ctx *c, struct ts_sql_stmt *st, const char *what)
{
    int rc = ts_sql_step(st);
    ts_sql_reset(st);
    return rc == TS_SQL_DONE || rc == TS_SQL_ROW ? TS_OK : ts_hub_db_werr(c->s, what);
}

/* The cached statement id, reset (db.h); ts_hub_purchases_store made sure
 * each can be prepared. */
static struct ts_sql_stmt *q(struct ctx *c, enum q id)
{
    return ts_hub_db_st(c->s, &stmts, id);
}

/* The items leave the online cart (by as many as were bought), count as
 * bought for suggestions, and the receipt becomes an in-store order. */
/* Scanning the receipt (its number or its printed barcode) later finds the
 * card in the store's cache too: the identifier key joins the card's keys. */
static enum ts_err link_receipt(struct ctx *c, const char *norm, const char *cust)
{
    char key[TS_IDENT_KEY_HEX], pkey[TS_IDENT_KEY_HEX];
    const struct ts_tenant_key *pk = ts_hub_db_prev(c->s);
    if (!norm || ts_ident_key(ts_hub_db_key(c->s), TS_IDENT_RECEIPT, norm, key) != TS_OK ||
        (pk && ts_ident_key(pk, TS_IDENT_RECEIPT, norm, pkey)))
        return TS_OK; /* nothing printable: no key, still an order */
    struct ts_sql_stmt *st = q(c, Q_IDENT);
    ts_sql_bind_text(st, 1, key);
    ts_sql_bind_text(st, 2, norm);
    ts_sql_bind_text(st, 3, cust);
    ts_sql_bind_text(st, 4, pk ? pkey : NULL);
    return step_done(c, st, "purchase receipt key");
}

static enum ts_err apply_profile(struct ctx *c, const struct ts_hub_purchase *p, const char *cust,
                                 const char *receipt_norm, const char *barcode_norm)
{
    json_t *props = json_object_get(p->event, "properties");
    json_t *products = json_object_get(props, "products");
    int rc = TS_OK;
    for (size_t i = 0; rc == TS_OK && i < json_array_size(products); i++) {
        json_t *it = json_array_get(products, i);
        const char *pid = ts_hub_purchase_member(it, "product_id", TS_SEG_MAX_ID);
        const char *sku = ts_hub_purchase_member(it, "sku", TS_SEG_MAX_ID);
        json_int_t qty = json_is_integer(json_object_get(it, "quantity"))
                             ? json_integer_value(json_object_get(it, "quantity"))
                             : 1;
        const char *ids[2] = {pid ? pid : sku, pid && sku && strcmp(pid, sku) != 0 ? sku : NULL};
        struct ts_sql_stmt *st = q(c, Q_PRODUCT);
        ts_sql_bind_text(st, 1, ids[0]);
        ts_sql_bind_text(st, 2, ts_hub_purchase_member(it, "name", TS_SEG_MAX_TEXT));
        rc = step_done(c, st, "purchase product");
        /* The online cart may hold the product under its sku. */
        if (rc == TS_OK)
            rc = ts_hub_ingest_bought(c->s, cust, ids[0], ids[1], qty, p->at_ms);
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

static enum ts_err touch(struct ctx *c, const char *cust)
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
static enum ts_err customer_of(struct ctx *c, const char *cid, char *out, size_t outsz)
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
    return step == TS_SQL_ROW || step == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(c->s, "cid lookup");
}

static void bind_tri(struct ts_sql_stmt *st, int i, int v)
{
    if (v < 0)
        ts_sql_bind_null(st, i);
    else
        ts_sql_bind_int64(st, i, v);
}

/* The consent's audit row, and the profile's consent: every card of the
 * customer is rebuilt (touch) and reaches every store at its next page. */
static enum ts_err apply_consent(struct ctx *c, const struct ts_hub_purchase *p, const char *cust,
                                 int64_t now_ms)
{
    struct ts_sql_stmt *st = q(c, Q_AUDIT);
    ts_sql_bind_text(st, 1, p->message_id);
    ts_sql_bind_text(st, 2, p->store);
    ts_sql_bind_text(st, 3, p->terminal);
    ts_sql_bind_text(st, 4, cust[0] ? cust : NULL);
    ts_sql_bind_text(st, 5, p->cid);
    bind_tri(st, 6, p->personalization);
    bind_tri(st, 7, p->email_consent);
    bind_tri(st, 8, p->sms_consent);
    ts_sql_bind_text(st, 9, p->associate);
    ts_sql_bind_int64(st, 10, p->at_ms);
    ts_sql_bind_int64(st, 11, now_ms);
    ts_sql_bind_text(st, 12, p->source);
    int rc = step_done(c, st, "consent audit");
    if (rc != TS_OK || !cust[0] || p->personalization < 0)
        return rc;
    st = q(c, Q_CONSENT);
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_int64(st, 2, p->personalization);
    return step_done(c, st, "consent update");
}

/* The original sale's customer for a return, into cust (unchanged when the
 * hub stored no such sale or it was anonymous). */
static enum ts_err original_customer(struct ctx *c, const struct ts_hub_purchase *p, char *cust,
                                     size_t custsz)
{
    struct ts_sql_stmt *st = q(c, Q_ORIGINAL);
    ts_sql_bind_text(st, 1, p->original);
    ts_sql_bind_text(st, 2, p->store);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW && ts_sql_column_text(st, 0))
        ts_strlcpy(cust, ts_sql_column_text(st, 0), custsz);
    ts_sql_reset(st);
    return step == TS_SQL_ROW || step == TS_SQL_DONE ? TS_OK
                                                     : ts_hub_db_werr(c->s, "original sale");
}

/* The order shows it came back; the lines are no longer bought. */
static enum ts_err apply_return(struct ctx *c, const struct ts_hub_purchase *p, const char *cust)
{
    struct ts_sql_stmt *st = q(c, Q_RETURNED);
    ts_sql_bind_text(st, 1, p->original);
    int rc = step_done(c, st, "order returned");
    json_t *products = json_object_get(json_object_get(p->event, "properties"), "products");
    for (size_t i = 0; rc == TS_OK && i < json_array_size(products); i++) {
        json_t *it = json_array_get(products, i);
        const char *ids[2] = {ts_hub_purchase_member(it, "product_id", TS_SEG_MAX_ID),
                              ts_hub_purchase_member(it, "sku", TS_SEG_MAX_ID)};
        for (int k = 0; rc == TS_OK && k < 2; k++) {
            if (!ids[k])
                continue;
            st = q(c, Q_UNBOUGHT);
            ts_sql_bind_text(st, 1, cust);
            ts_sql_bind_text(st, 2, ids[k]);
            rc = step_done(c, st, "return unbought");
        }
    }
    return rc;
}

static enum ts_err store_one(struct ctx *c, struct ts_hub_purchase *p, bool forward, int64_t now_ms)
{
    char cust[TS_SEG_MAX_ID + 1], norm[TS_SEG_MAX_ID + 1], bnorm[TS_SEG_MAX_ID + 1];
    int rc = customer_of(c, p->cid, cust, sizeof cust);
    if (rc == TS_OK && p->kind == TS_HUB_TILL_RETURN)
        rc = original_customer(c, p, cust, sizeof cust);
    if (rc != TS_OK)
        return rc;
    bool sale = p->kind == TS_HUB_TILL_PURCHASE;
    bool has_norm =
        sale && ts_ident_normalize(p->receipt, strlen(p->receipt), norm, sizeof norm) == TS_OK;
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
    ts_sql_bind_int64(st, 15, p->kind ? p->kind : TS_HUB_TILL_PURCHASE);
    ts_sql_bind_text(st, 16, p->original);
    if ((rc = step_done(c, st, "purchase insert")))
        return rc;
    if (ts_sql_changes(ts_hub_db_writer(c->s)) == 0) {
        /* Seen before: by messageId, or this store's receipt under another
         * messageId (the same sale must not count twice). */
        p->status = TS_HUB_P_DUPLICATE;
        return TS_OK;
    }
    p->status = TS_HUB_P_ACCEPTED;
    if (forward) {
        if ((rc = ts_hub_sinkq_queue(c->s, (enum ts_sink_kind)(p->kind ? p->kind : 1),
                                     p->message_id, now_ms)))
            return rc;
    }
    if (p->kind == TS_HUB_TILL_CONSENT && (rc = apply_consent(c, p, cust, now_ms)))
        return rc;
    if (!cust[0])
        return TS_OK;
    if (p->kind == TS_HUB_TILL_RETURN && (rc = apply_return(c, p, cust)))
        return rc;
    if (sale && (rc = apply_profile(c, p, cust, has_norm ? norm : NULL, has_bnorm ? bnorm : NULL)))
        return rc;
    return touch(c, cust);
}

enum ts_err ts_hub_purchases_store(struct ts_hub_store *s, struct ts_hub_pbatch *b, bool forward,
                                   int64_t now_ms, struct ts_hub_purchase_counts *cnt)
{
    struct ctx c = {.s = s};
    struct ts_hub_purchase_counts r = {0};
    /* The agent deletes a purchase from its outbox once we answer, so the
     * commit must survive a power cut. */
    int rc = ts_hub_db_write_begin(s, TS_HUB_TXN_DURABLE);
    if (rc != TS_OK)
        return rc;
    /* Prepared (and kept) up front: the steps below need not check. */
    for (int i = 0; rc == TS_OK && i < Q_COUNT; i++)
        if (!q(&c, (enum q)i))
            rc = TS_ERR_DB;
    for (size_t i = 0; rc == TS_OK && i < b->n; i++)
        if (b->p[i].status != TS_HUB_P_REJECTED)
            rc = store_one(&c, &b->p[i], forward, now_ms);
    for (size_t i = 0; rc == TS_OK && i < c.ntouched; i++) {
        bool rebuilt = false;
        rc = ts_hub_rebuild(s, c.touched[i], now_ms, &rebuilt);
        r.customers += rebuilt;
    }
    rc = ts_hub_db_write_end(s, rc, r.customers > 0);
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
    if (cnt)
        *cnt = r;
    return TS_OK;
}
