/*
 * Two things on the card that come from more than one customer event:
 *
 * - The suggested product. A CDP trait `suggested_product` wins (the
 *   marketing team knows best); otherwise "customers who looked at what
 *   this customer looks at most also looked at / bought ...": the recent
 *   viewers of the customer's top interest, each counted once per product,
 *   a purchase worth three views, leaving out everything this customer
 *   already viewed, bought, carts or wishes for (the associate should
 *   bring up something new). Only customers with personalization consent
 *   lend their behaviour, and only customers with consent get a suggestion.
 *   It is computed when the customer's card is rebuilt, i.e. whenever their
 *   own events change it.
 * - The order status: Segment's E-commerce spec has Order Completed,
 *   Order Updated, Order Cancelled and Order Refunded; shops add Order
 *   Shipped and friends, or send a `status` property. They are mapped onto
 *   a few statuses the page translates (placed, processing, shipped,
 *   ready_for_pickup, delivered, picked_up, cancelled, refunded, returned);
 *   the newest event wins, whatever order events arrive in.
 */
#include "parts.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How many recent viewers of the top interest are asked: enough for a
 * stable answer, few enough that the query stays around a millisecond
 * however popular the product is (measured: ~1 ms at 30 peers on a
 * 20,000-customer store; bulk imports skip it, see ts_hub_store_set_bulk). */
#define SUGGEST_PEERS 30

/* The statements, prepared once on first use (db.h). */
enum stmt_id { ST_ORDER_STATUS, ST_SUGGEST, ST_COUNT };

static const char *const stmt_sql[ST_COUNT] = {
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
static const struct ts_hub_stmts stmts = {stmt_sql, NULL, ST_COUNT};

/* The cached statement id, reset (db.h). */
static struct ts_sql_stmt *stmt(struct ts_hub_store *s, enum stmt_id id)
{
    return ts_hub_db_st(s, &stmts, id);
}

static const struct {
    const char *event, *status;
} by_event[] = {
    {"Order Shipped", "shipped"},
    {"Order Delivered", "delivered"},
    {"Order Ready for Pickup", "ready_for_pickup"},
    {"Order Picked Up", "picked_up"},
    {"Order Cancelled", "cancelled"},
    {"Order Refunded", "refunded"},
    {"Order Returned", "returned"},
};

/* Words shops use for a status, normalized (lowercase, '_' between words). */
static const struct {
    const char *word, *status;
} by_word[] = {
    {"placed", "placed"},
    {"pending", "placed"},
    {"new", "placed"},
    {"created", "placed"},
    {"confirmed", "placed"},
    {"paid", "placed"},
    {"open", "placed"},
    {"processing", "processing"},
    {"in_progress", "processing"},
    {"preparing", "processing"},
    {"picking", "processing"},
    {"packed", "processing"},
    {"shipped", "shipped"},
    {"dispatched", "shipped"},
    {"in_transit", "shipped"},
    {"out_for_delivery", "shipped"},
    {"fulfilled", "shipped"},
    {"sent", "shipped"},
    {"ready_for_pickup", "ready_for_pickup"},
    {"ready_for_collection", "ready_for_pickup"},
    {"ready_to_collect", "ready_for_pickup"},
    {"awaiting_pickup", "ready_for_pickup"},
    {"ready", "ready_for_pickup"},
    {"delivered", "delivered"},
    {"complete", "delivered"},
    {"completed", "delivered"},
    {"picked_up", "picked_up"},
    {"collected", "picked_up"},
    {"cancelled", "cancelled"},
    {"canceled", "cancelled"},
    {"void", "cancelled"},
    {"voided", "cancelled"},
    {"refunded", "refunded"},
    {"partially_refunded", "refunded"},
    {"returned", "returned"},
};

const char *ts_hub_order_status(const char *event_name, const char *status_prop)
{
    for (size_t i = 0; event_name && i < sizeof by_event / sizeof by_event[0]; i++)
        if (strcmp(event_name, by_event[i].event) == 0)
            return by_event[i].status;
    if (!status_prop)
        return NULL;
    /* "Ready for pickup", "ready-for-pickup", "READY_FOR_PICKUP" alike. */
    char w[40];
    size_t n = 0;
    bool gap = false;
    for (const char *p = status_prop; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c)) {
            if (gap && n)
                w[n++] = '_';
            gap = false;
            if (n + 2 >= sizeof w)
                return NULL; /* longer than any word we know */
            w[n++] = (char)tolower(c);
        } else {
            gap = true;
        }
    }
    w[n] = '\0';
    for (size_t i = 0; i < sizeof by_word / sizeof by_word[0]; i++)
        if (strcmp(w, by_word[i].word) == 0)
            return by_word[i].status;
    return NULL;
}

const char *ts_hub_top_interest(const struct ts_hub_profile *p)
{
    if (p->ncart)
        return p->cart[0].product_id; /* loaded newest first */
    const char *best = NULL;
    double best_score = 0;
    /* Views come sorted by product: sum each run's decayed weight. */
    for (size_t i = 0; i < p->nviews;) {
        size_t j = i;
        double score = 0;
        for (; j < p->nviews && strcmp(p->views[j].product_id, p->views[i].product_id) == 0; j++) {
            int64_t age = p->now_ms - p->views[j].at_ms;
            score += pow(0.5, (double)(age < 0 ? 0 : age) / (double)TS_HUB_HALF_LIFE_MS);
        }
        if (score > best_score) {
            best_score = score;
            best = p->views[i].product_id;
        }
        i = j;
    }
    return best;
}

enum ts_err ts_hub_suggest_peers(struct ts_hub_store *s, const char *cust, const char *top,
                                 char *id, size_t idsz, char *name, size_t namesz)
{
    id[0] = name[0] = '\0';
    struct ts_sql_stmt *st = stmt(s, ST_SUGGEST);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, top);
    ts_sql_bind_int64(st, 3, SUGGEST_PEERS);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW) {
        const char *v = ts_sql_column_text(st, 0);
        const char *nm = ts_sql_column_text(st, 1);
        ts_strlcpy(id, v ? v : "", idsz);
        ts_strlcpy(name, nm ? nm : "", namesz);
    }
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        return ts_hub_db_werr(s, "suggest");
    return TS_OK;
}

enum ts_err ts_hub_order_status_apply(struct ts_hub_store *s, const char *cust,
                                      const struct ts_seg_event *e)
{
    struct ts_sql_stmt *st = stmt(s, ST_ORDER_STATUS);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->order_id);
    ts_sql_bind_text(st, 2, cust);
    if (e->has_total)
        ts_sql_bind_double(st, 3, e->total);
    ts_sql_bind_text(st, 4, e->currency);
    ts_sql_bind_text(st, 5, e->order_status);
    ts_sql_bind_int64(st, 6, e->at_ms);
    int rc = ts_sql_step(st);
    ts_sql_reset(st);
    return rc == TS_SQL_DONE ? TS_OK : ts_hub_db_werr(s, "order status");
}
