/*
 * Applying a validated Segment batch to the store, inside the transaction
 * store.c opened: identity resolution (userId, or anonymousId mapped to the
 * userId an identify tied it to), the per-event updates, and at the end one
 * card rebuild and feed re-stamp per customer the batch touched.
 */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int touch(struct ing *g, const char *id)
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
static int run(struct ing *g, struct ts_sql_stmt *st, const char *what)
{
    if (!st)
        return TS_ERR_DB;
    int rc = ts_sql_step(st);
    if (rc != TS_SQL_DONE && rc != TS_SQL_ROW)
        return ts_hub_db_err(g->s, what);
    ts_sql_reset(st);
    return TS_OK;
}

/* Binds ?1 and ?2 (text) to a statement and runs it. */
static int run2(struct ing *g, enum stmt_id id, const char *a, const char *b)
{
    struct ts_sql_stmt *st = ts_hub_st(g->s, id);
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

static int ensure_customer(struct ing *g, const char *id)
{
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_CUST_EXISTS);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, id);
    int rc = ts_sql_step(st);
    ts_sql_reset(st);
    if (rc == TS_SQL_ROW)
        return TS_OK;
    if (rc != TS_SQL_DONE)
        return ts_hub_db_err(g->s, "customer lookup");
    char cid[33];
    if (ts_hub_cid(&g->s->key, id, cid) != TS_OK)
        return TS_ERR_INVAL;
    if (!(st = ts_hub_st(g->s, ST_CUST_INSERT)))
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
static int merge(struct ing *g, const char *user, const char *anon)
{
    static const enum stmt_id steps[] = {
        ST_MERGE_TRAITS, ST_MERGE_VIEWS,    ST_MERGE_CART,       ST_MERGE_CART_DEL,
        ST_MERGE_WISH,   ST_MERGE_WISH_DEL, ST_MERGE_ORDERS,     ST_MERGE_IDENT,
        ST_MERGE_ANON,   ST_MERGE_BOUGHT,   ST_MERGE_BOUGHT_DEL,
    };
    int rc = ensure_customer(g, user);
    for (size_t i = 0; rc == TS_OK && i < sizeof steps / sizeof steps[0]; i++)
        rc = run2(g, steps[i], user, anon);
    int64_t seq;
    if (rc == TS_OK)
        rc = ts_hub_next_seq(g->s, &seq);
    if (rc == TS_OK) {
        struct ts_sql_stmt *st = ts_hub_st(g->s, ST_FEED_ERASE_ALL);
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
static int link_anonymous(struct ing *g, const char *user, const char *anon)
{
    char prev[TS_SEG_MAX_ID + 1] = "";
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_ANON_GET);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, anon);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW)
        col_copy(st, 0, prev, sizeof prev);
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        return ts_hub_db_err(g->s, "anon lookup");
    if (strcmp(prev, user) == 0)
        return TS_OK;
    int rc = run2(g, ST_ANON_SET, anon, user);
    if (rc != TS_OK)
        return rc;
    if (!(st = ts_hub_st(g->s, ST_CUST_EXISTS)))
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, anon);
    step = ts_sql_step(st);
    ts_sql_reset(st);
    if (step == TS_SQL_ROW)
        return merge(g, user, anon);
    return step == TS_SQL_DONE ? TS_OK : ts_hub_db_err(g->s, "customer lookup");
}

/* The internal customer id of an event: its userId, else what its
 * anonymousId was mapped to, else the anonymousId itself. */
static int resolve(struct ing *g, const struct ts_seg_event *e, char *out, size_t outsz)
{
    if (e->user_id) {
        ts_strlcpy(out, e->user_id, outsz);
        if (e->anonymous_id && strcmp(e->anonymous_id, e->user_id) != 0)
            return link_anonymous(g, e->user_id, e->anonymous_id);
        return TS_OK;
    }
    ts_strlcpy(out, e->anonymous_id, outsz);
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_ANON_GET);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->anonymous_id);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW)
        col_copy(st, 0, out, outsz);
    ts_sql_reset(st);
    return step == TS_SQL_ROW || step == TS_SQL_DONE ? TS_OK : ts_hub_db_err(g->s, "anon lookup");
}

/* Points an identifier key at cust; a previous owner loses it (and its card
 * is rebuilt without the key). */
static int link_identifier(struct ing *g, const char *cust, enum ts_ident_kind kind,
                           const char *norm)
{
    char key[TS_IDENT_KEY_HEX], pkey[TS_IDENT_KEY_HEX], prev[TS_SEG_MAX_ID + 1] = "";
    if (ts_ident_key(&g->s->key, kind, norm, key) != TS_OK ||
        (g->s->prev.len && ts_ident_key(&g->s->prev, kind, norm, pkey) != TS_OK))
        return TS_ERR_INVAL;
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_IDENT_OWNER);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, key);
    int step = ts_sql_step(st);
    if (step == TS_SQL_ROW)
        col_copy(st, 0, prev, sizeof prev);
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        return ts_hub_db_err(g->s, "identifier lookup");
    if (strcmp(prev, cust) == 0)
        return TS_OK;
    int rc = prev[0] ? touch(g, prev) : TS_OK;
    if (rc != TS_OK || !(st = ts_hub_st(g->s, ST_IDENT_SET)))
        return rc ? rc : TS_ERR_DB;
    ts_sql_bind_text(st, 1, key);
    ts_sql_bind_text(st, 2, ts_ident_kind_name(kind));
    ts_sql_bind_text(st, 3, norm);
    ts_sql_bind_text(st, 4, cust);
    ts_sql_bind_text(st, 5, g->s->prev.len ? pkey : NULL);
    return run(g, st, "identifier upsert");
}

static int apply_identify(struct ing *g, const char *cust, const struct ts_seg_event *e)
{
    int rc = TS_OK;
    if (e->name)
        rc = run2(g, ST_CUST_NAME, cust, e->name);
    else if (e->first_name || e->last_name) {
        struct ts_sql_stmt *st = ts_hub_st(g->s, ST_CUST_SPLIT_NAME);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, cust);
        ts_sql_bind_text(st, 2, e->first_name);
        ts_sql_bind_text(st, 3, e->last_name);
        rc = run(g, st, "name update");
    }
    if (rc != TS_OK)
        return rc;
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_CUST_TRAITS);
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
    if ((rc = run(g, st, "traits update")))
        return rc;
    for (size_t i = 0; rc == TS_OK && i < e->nloyalty; i++)
        rc = link_identifier(g, cust, TS_IDENT_LOYALTY, e->loyalty[i]);
    return rc;
}

static int product_upsert(struct ing *g, const struct ts_seg_product *p)
{
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_PRODUCT_UPSERT);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, p->product_id);
    ts_sql_bind_text(st, 2, p->name);
    if (p->has_price)
        ts_sql_bind_double(st, 3, p->price);
    return run(g, st, "product upsert");
}

/* Binds (customer, product_id, then an integer) and runs. */
static int run_cp(struct ing *g, enum stmt_id id, const char *cust, const char *pid, bool has_n,
                  int64_t n)
{
    struct ts_sql_stmt *st = ts_hub_st(g->s, id);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_text(st, 2, pid);
    if (has_n)
        ts_sql_bind_int64(st, 3, n);
    return run(g, st, "line update");
}

static int apply_order(struct ing *g, const char *cust, const struct ts_seg_event *e)
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
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_ORDER_UPSERT);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->order_id);
    ts_sql_bind_text(st, 2, cust);
    if (e->has_total)
        ts_sql_bind_double(st, 3, e->total);
    ts_sql_bind_text(st, 4, e->currency);
    ts_sql_bind_int64(st, 5, e->at_ms);
    if ((rc = run(g, st, "order upsert")) ||
        (e->order_status && (rc = ts_hub_order_status_apply(g->s, cust, e))))
        return rc;
    /* The order confirmation QR scanned at the till finds this customer. */
    char norm[TS_SEG_MAX_ID + 1];
    if (ts_ident_normalize(e->order_id, strlen(e->order_id), norm, sizeof norm) == TS_OK)
        rc = link_identifier(g, cust, TS_IDENT_ORDER, norm);
    return rc;
}

static int apply_event(struct ing *g, const char *cust, const struct ts_seg_event *e)
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
        struct ts_sql_stmt *st = ts_hub_st(g->s, ST_CART_ADD);
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
static int seen_before(struct ing *g, const struct ts_seg_event *e, int *dup)
{
    *dup = 0;
    if (!e->message_id)
        return TS_OK;
    struct ts_sql_stmt *st = ts_hub_st(g->s, ST_PROCESSED_ADD);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, e->message_id);
    ts_sql_bind_int64(st, 2, g->now);
    int rc = run(g, st, "dedupe");
    if (rc == TS_OK)
        *dup = ts_sql_changes(g->s->db) == 0;
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ts_hub_ingest_locked(struct ts_hub_store *s, const struct ts_seg_batch *b, int64_t now_ms,
                         struct ts_hub_ingest_result *res)
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
        struct ts_sql_stmt *st = ts_hub_st(s, ST_EVENTS_ADD);
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
