/*
 * Finding in-store purchases and online orders again (GET /v1/lookup?receipt=
 * and ?order=, docs/PROTOCOL.md) and counting purchases and their forwarding
 * state for `tillside-hub stats` and /metrics. Everything here reads through
 * the store's read-side connection, so a receipt scanned at the till never
 * waits behind a large batch being written.
 */
#include "purchases.h"
#include "db.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends ,"cid":..,"keys":..,"card":.. (with the rotation's second key
 * version) for customer cust, if they still exist. */
enum ts_err ts_hub_card_of(struct ts_hub_store *s, struct ts_sql *db, const char *cust, ts_buf *out)
{
    struct ts_sql_stmt *st = NULL;
    int rc = TS_OK;
    if (!cust)
        return TS_OK;
    if (ts_sql_prepare(db, "SELECT cid, card, keys, prev_keys FROM customers WHERE id = ?1", &st) !=
        TS_OK)
        return ts_hub_db_err(db, "lookup card");
    ts_sql_bind_text(st, 1, cust);
    if (ts_sql_step(st) == TS_SQL_ROW && ts_sql_column_text(st, 1) && ts_sql_column_text(st, 2)) {
        const char *prev = ts_sql_column_text(st, 3);
        rc = ts_buf_printf(out, ",\"cid\":\"%s\",\"keys\":%s", ts_sql_column_text(st, 0),
                           ts_sql_column_text(st, 2));
        const struct ts_tenant_key *pk = ts_hub_db_prev(s);
        if (rc == TS_OK && prev && pk)
            rc = ts_buf_printf(out, ",\"prev_kv\":%d,\"prev_keys\":%s", pk->version, prev);
        if (rc == TS_OK)
            rc = ts_buf_printf(out, ",\"card\":%s", ts_sql_column_text(st, 1));
    }
    ts_sql_finalize(st);
    return rc;
}

static enum ts_err put_json(ts_buf *out, const char *name, json_t *o)
{
    char *t = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    int rc = t ? ts_buf_printf(out, ",\"%s\":%s", name, t) : TS_ERR_NOMEM;
    free(t);
    json_decref(o);
    return rc;
}

static json_t *when(int64_t ms)
{
    char at[40];
    ts_iso8601(ms, at, sizeof at);
    return json_string(at);
}

/* "in store", or "returned" / "partly returned" by the refunds in column i
 * against the sale's total. */
static const char *returned_status(struct ts_sql_stmt *st, int i, double total)
{
    if (ts_sql_column_type(st, i) == TS_SQL_NULL)
        return "in store";
    return ts_sql_column_double(st, i) >= total - 0.005 ? "returned" : "partly returned";
}

enum ts_err ts_hub_lookup_receipt(struct ts_hub_store *s, const char *receipt, ts_buf *out)
{
    char norm[TS_SEG_MAX_ID + 1];
    struct ts_sql_stmt *st = NULL;
    int rc = TS_ERR_NOTFOUND;
    if (ts_ident_normalize(receipt, strlen(receipt), norm, sizeof norm) != TS_OK)
        return TS_ERR_NOTFOUND;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    /* Receipt numbers are unique per store; should two stores share one,
     * the newest sale answers. */
    if (ts_sql_prepare(
            db,
            "SELECT p.receipt, p.store_id, p.terminal, p.total, p.currency, p.at,"
            " p.event, coalesce(c.id, o.customer),"
            /* what came back of it: returns name the sale's receipt */
            " (SELECT sum(r.total) FROM purchases r WHERE r.kind = 2 AND r.original = p.receipt)"
            " FROM purchases p"
            " LEFT JOIN customers c ON c.id = p.customer"
            " LEFT JOIN orders o ON o.order_id = p.receipt AND o.store_id = p.store_id"
            " WHERE (p.receipt_norm = ?1 OR p.barcode_norm = ?1) AND p.kind = 1"
            " ORDER BY p.at DESC LIMIT 1",
            &st) != TS_OK) {
        rc = ts_hub_db_err(db, "receipt lookup");
        goto out;
    }
    ts_sql_bind_text(st, 1, norm);
    int step = ts_sql_step(st);
    if (step != TS_SQL_ROW) {
        rc = step == TS_SQL_DONE ? TS_ERR_NOTFOUND : ts_hub_db_err(db, "receipt lookup");
        goto out;
    }
    json_t *ev = json_loads(ts_sql_column_text(st, 6), 0, NULL);
    json_t *products = json_object_get(json_object_get(ev, "properties"), "products");
    json_t *pj = json_pack("{s:s, s:s, s:f, s:s, s:o, s:s}", "receipt", ts_sql_column_text(st, 0),
                           "store", ts_sql_column_text(st, 1), "total", ts_sql_column_double(st, 3),
                           "currency", ts_sql_column_text(st, 4) ? ts_sql_column_text(st, 4) : "",
                           "at", when(ts_sql_column_int64(st, 5)), "status",
                           returned_status(st, 8, ts_sql_column_double(st, 3)));
    if (pj && ts_sql_column_type(st, 8) != TS_SQL_NULL)
        json_object_set_new(pj, "refunded", json_real(ts_sql_column_double(st, 8)));
    if (pj && ts_sql_column_text(st, 2))
        json_object_set_new(pj, "terminal", json_string(ts_sql_column_text(st, 2)));
    if (pj && json_is_array(products))
        json_object_set(pj, "products", products);
    json_decref(ev);
    rc = ts_buf_printf(out, "{\"kv\":%d", ts_hub_db_key(s)->version);
    if (rc == TS_OK)
        rc = ts_hub_card_of(s, db, ts_sql_column_text(st, 7), out);
    if (rc == TS_OK)
        rc = put_json(out, "purchase", pj);
    else
        json_decref(pj);
    if (rc == TS_OK)
        rc = ts_buf_puts(out, "}");
out:
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    return rc;
}

enum ts_err ts_hub_lookup_order(struct ts_hub_store *s, const char *order_id,
                                const char *only_store, ts_buf *out)
{
    struct ts_sql_stmt *st = NULL;
    int rc;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (ts_sql_prepare(db,
                       "SELECT order_id, customer, total, currency, status, at, store_id"
                       " FROM orders WHERE order_id = ?1",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "order lookup");
        goto out;
    }
    ts_sql_bind_text(st, 1, order_id);
    int step = ts_sql_step(st);
    if (step != TS_SQL_ROW) {
        rc = step == TS_SQL_DONE ? TS_ERR_NOTFOUND : ts_hub_db_err(db, "order lookup");
        goto out;
    }
    /* The same answer as an unknown id: another store's order is not even
     * confirmed to exist. */
    const char *its_store = ts_sql_column_text(st, 6);
    if (only_store && (!its_store || strcmp(its_store, only_store) != 0)) {
        rc = TS_ERR_NOTFOUND;
        goto out;
    }
    json_t *o = json_pack("{s:s, s:s, s:o}", "order_id", ts_sql_column_text(st, 0), "status",
                          ts_sql_column_text(st, 4) ? ts_sql_column_text(st, 4) : "placed", "at",
                          when(ts_sql_column_int64(st, 5)));
    if (o && ts_sql_column_type(st, 2) != TS_SQL_NULL)
        json_object_set_new(o, "total", json_real(ts_sql_column_double(st, 2)));
    if (o && ts_sql_column_text(st, 3))
        json_object_set_new(o, "currency", json_string(ts_sql_column_text(st, 3)));
    if (o && ts_sql_column_text(st, 6))
        json_object_set_new(o, "store", json_string(ts_sql_column_text(st, 6)));
    rc = ts_buf_printf(out, "{\"kv\":%d", ts_hub_db_key(s)->version);
    if (rc == TS_OK)
        rc = ts_hub_card_of(s, db, ts_sql_column_text(st, 1), out);
    if (rc == TS_OK)
        rc = put_json(out, "order", o);
    else
        json_decref(o);
    if (rc == TS_OK)
        rc = ts_buf_puts(out, "}");
out:
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    return rc;
}

enum ts_err ts_hub_purchases_stats(struct ts_hub_store *s, void *obj)
{
    json_t *o = obj, *p = json_object();
    struct ts_sql_stmt *st = NULL;
    static const char *const names[4] = {"stored", "forwarded", "pending", "dead"};
    long long v[4] = {0};
    if (!p)
        return TS_ERR_NOMEM;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    /* An older database (opened read-only by `stats`) has no tables: zeros. */
    if (ts_sql_prepare(db,
                       "SELECT (SELECT count(*) FROM purchases),"
                       " (SELECT count(*) FROM sink_queue WHERE state = 'sent'),"
                       " (SELECT count(*) FROM sink_queue WHERE state = 'pending'),"
                       " (SELECT count(*) FROM sink_queue WHERE state = 'dead')",
                       &st) == TS_OK &&
        ts_sql_step(st) == TS_SQL_ROW)
        for (int i = 0; i < 4; i++)
            v[i] = ts_sql_column_int64(st, i);
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    for (int i = 0; i < 4; i++)
        json_object_set_new(p, names[i], json_integer(v[i]));
    json_object_set_new(o, "purchases", p);
    return TS_OK;
}
