/*
 * Offers (offers.h, docs/PROTOCOL.md "Offers"): the CDP's `offers` trait kept
 * per customer, the valid ones for the card, and redeeming one at a till.
 *
 * A redemption is one durable write transaction: the conditional UPDATE
 * (redeemed_at IS NULL) decides who wins when two tills try at once (SQLite:
 * BEGIN IMMEDIATE serializes writers; PostgreSQL: the row lock makes the
 * second UPDATE see the first's commit and change nothing), the Segment
 * "Coupon Applied" event is stored in the row and queued for the sinks, and
 * the card is rebuilt, so every store's feed drops the offer.
 */
#include "offers.h"
#include "parts.h"
#include "purchases.h"
#include "sinks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "offers"

static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS offers(customer TEXT NOT NULL, code TEXT NOT NULL,"
    "  description TEXT, expires_at INTEGER, granted INTEGER NOT NULL, redeemed_at INTEGER,"
    "  redeemed_store TEXT, redeemed_terminal TEXT, receipt TEXT, message_id TEXT, event TEXT,"
    "  PRIMARY KEY(customer, code));"
    "CREATE INDEX IF NOT EXISTS offers_code ON offers(code);"
    "CREATE INDEX IF NOT EXISTS offers_message ON offers(message_id);";

enum ts_err ts_hub_offers_schema(struct ts_hub_store *s)
{
    return ts_hub_db_ddl(s, schema_sql);
}

enum q {
    Q_UPSERT,
    Q_WITHDRAW_ALL,
    Q_MARK,
    Q_SWEEP,
    Q_CUST_BY_CID,
    Q_FIND,
    Q_REDEEM,
    Q_COUNT,
};

static const char *const q_sql[Q_COUNT] = {
    /* mark = 1: named by this identify (the sweep below keeps it) */
    [Q_UPSERT] = "INSERT INTO offers(customer, code, description, expires_at, granted)"
                 " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(customer, code) DO UPDATE SET"
                 " description = excluded.description, expires_at = excluded.expires_at,"
                 " granted = excluded.granted",
    [Q_WITHDRAW_ALL] = "DELETE FROM offers WHERE customer = ?1 AND redeemed_at IS NULL",
    [Q_MARK] = "UPDATE offers SET granted = -granted WHERE customer = ?1 AND code = ?2",
    /* unredeemed offers the new list did not name; marks undone */
    [Q_SWEEP] = "DELETE FROM offers WHERE customer = ?1 AND redeemed_at IS NULL AND granted > 0",
    [Q_CUST_BY_CID] = "SELECT id FROM customers WHERE cid = ?1",
    [Q_FIND] = "SELECT o.customer, o.description, o.expires_at, o.redeemed_at, o.redeemed_store,"
               " c.cid FROM offers o JOIN customers c ON c.id = o.customer"
               " WHERE o.code = ?1 AND (CAST(?2 AS TEXT) IS NULL OR o.customer = ?2)"
               " ORDER BY o.customer LIMIT 2",
    [Q_REDEEM] = "UPDATE offers SET redeemed_at = ?3, redeemed_store = ?4, redeemed_terminal = ?5,"
                 " receipt = ?6, message_id = ?7, event = ?8"
                 " WHERE customer = ?1 AND code = ?2 AND redeemed_at IS NULL",
};
static const struct ts_hub_stmts stmts = {q_sql, NULL, Q_COUNT};

static struct ts_sql_stmt *q(struct ts_hub_store *s, enum q id)
{
    return ts_hub_db_st(s, &stmts, id);
}

static enum ts_err done(struct ts_hub_store *s, struct ts_sql_stmt *st, const char *what)
{
    if (!st)
        return TS_ERR_DB;
    int rc = ts_sql_step(st);
    ts_sql_reset(st);
    return rc == TS_SQL_DONE || rc == TS_SQL_ROW ? TS_OK : ts_hub_db_werr(s, what);
}

/* ---- the trait ---------------------------------------------------------------*/

enum ts_err ts_hub_offers_apply(struct ts_hub_store *s, const char *cust,
                                const struct ts_seg_event *e, int64_t now_ms)
{
    (void)now_ms;
    if (!e->has_offers)
        return TS_OK;
    int rc = TS_OK;
    if (e->noffers == 0) { /* "offers": [] withdraws every open offer */
        struct ts_sql_stmt *st = q(s, Q_WITHDRAW_ALL);
        if (st)
            ts_sql_bind_text(st, 1, cust);
        return done(s, st, "offers withdraw");
    }
    /* granted holds the identify's time; while this identify runs, the
     * offers it names have it negated (Q_MARK), so the sweep finds the
     * unredeemed ones it does not name by granted > 0. */
    for (size_t i = 0; rc == TS_OK && i < e->noffers; i++) {
        const struct ts_seg_offer *o = &e->offers[i];
        struct ts_sql_stmt *st = q(s, Q_UPSERT);
        if (!st)
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, cust);
        ts_sql_bind_text(st, 2, o->code);
        ts_sql_bind_text(st, 3, o->description);
        if (o->expires_ms > 0)
            ts_sql_bind_int64(st, 4, o->expires_ms);
        ts_sql_bind_int64(st, 5, e->at_ms > 0 ? e->at_ms : 1);
        if ((rc = done(s, st, "offer upsert")))
            return rc;
        if ((st = q(s, Q_MARK))) {
            ts_sql_bind_text(st, 1, cust);
            ts_sql_bind_text(st, 2, o->code);
        }
        rc = done(s, st, "offer mark");
    }
    struct ts_sql_stmt *st = q(s, Q_SWEEP);
    if (st)
        ts_sql_bind_text(st, 1, cust);
    if (rc == TS_OK)
        rc = done(s, st, "offers sweep");
    /* Undo the marks: named offers are ordinary again. */
    for (size_t i = 0; rc == TS_OK && i < e->noffers; i++) {
        if ((st = q(s, Q_MARK))) {
            ts_sql_bind_text(st, 1, cust);
            ts_sql_bind_text(st, 2, e->offers[i].code);
        }
        rc = done(s, st, "offer unmark");
    }
    return rc;
}

/* ---- redeeming -----------------------------------------------------------------*/

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

/* Member k of o, when a string of 1..max printable bytes, into out; absent
 * is fine unless required. */
static bool member(const json_t *o, const char *k, bool required, char *out, size_t max)
{
    const json_t *v = json_object_get(o, k);
    out[0] = '\0';
    if (!v || json_is_null(v))
        return !required;
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (n == 0 || n > max || strlen(json_string_value(v)) != n ||
        !printable(json_string_value(v), n))
        return false;
    memcpy(out, json_string_value(v), n + 1);
    return true;
}

enum ts_err ts_hub_offers_parse_redeem(const char *body, size_t len, struct ts_hub_redeem_req *r,
                                       char *err, size_t errsz)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    enum ts_err rc = TS_ERR_INVAL;
    if (!json_is_object(o))
        ts_errf(err, errsz, "body must be a JSON object {\"code\": ...}");
    else if (!member(o, "code", true, r->code, TS_OFFER_MAX_CODE))
        ts_errf(err, errsz, "code must be a string of 1 to %d characters", TS_OFFER_MAX_CODE);
    else if (!member(o, "cid", false, r->cid, sizeof r->cid - 1))
        ts_errf(err, errsz, "cid must be a string of at most %zu characters", sizeof r->cid - 1);
    else if (!member(o, "receipt", false, r->receipt, sizeof r->receipt - 1))
        ts_errf(err, errsz, "receipt must be a string of at most %zu characters",
                sizeof r->receipt - 1);
    else
        rc = TS_OK;
    json_decref(o);
    return rc;
}

struct outcome {
    int status; /* HTTP */
    char msg[300];
    char cust[TS_SEG_MAX_ID + 1];
    char description[TS_SEG_MAX_TEXT + 1];
    char message_id[160];
};

static void day_of(int64_t ms, char out[11])
{
    char iso[40];
    ts_iso8601(ms, iso, sizeof iso);
    memcpy(out, iso, 10);
    out[10] = '\0';
}

/* The Coupon Applied event (Segment e-commerce spec v2, "Coupon Applied":
 * https://segment.com/docs/connections/spec/ecommerce/v2/#coupon-applied;
 * order_id, coupon_id, coupon_name), without userId: the sink adds the
 * customer's as for purchases. */
static char *coupon_event(const struct ts_hub_redeem_req *r, const struct outcome *oc,
                          const char *cid, const char *store, const char *terminal, int64_t now)
{
    char at[40];
    ts_iso8601(now, at, sizeof at);
    json_t *props = json_pack("{s:s}", "coupon_id", r->code);
    if (props && oc->description[0])
        json_object_set_new(props, "coupon_name", json_string(oc->description));
    if (props && r->receipt[0])
        json_object_set_new(props, "order_id", json_string(r->receipt));
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:{s:{s:s, s:s, s:s?}}}", "type", "track", "event",
                  "Coupon Applied", "messageId", oc->message_id, "timestamp", at, "properties",
                  props, "context", "tillside", "store", store, "terminal", terminal, "cid", cid);
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    return s;
}

/* In the write transaction: finds, checks and marks the offer. */
static enum ts_err redeem_locked(struct ts_hub_store *s, const struct ts_hub_redeem_req *r,
                                 const char *store, const char *terminal, int64_t now,
                                 struct outcome *oc)
{
    struct ts_sql_stmt *st;
    char by_cust[TS_SEG_MAX_ID + 1] = "", cid[64] = "";
    int step;
    if (r->cid[0]) {
        if (!(st = q(s, Q_CUST_BY_CID)))
            return TS_ERR_DB;
        ts_sql_bind_text(st, 1, r->cid);
        if ((step = ts_sql_step(st)) == TS_SQL_ROW)
            ts_strlcpy(by_cust, ts_sql_column_text(st, 0), sizeof by_cust);
        ts_sql_reset(st);
        if (step != TS_SQL_ROW && step != TS_SQL_DONE)
            return ts_hub_db_werr(s, "offer customer");
        if (!by_cust[0]) {
            oc->status = 404;
            snprintf(oc->msg, sizeof oc->msg, "unknown customer");
            return TS_OK;
        }
    }
    if (!(st = q(s, Q_FIND)))
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, r->code);
    ts_sql_bind_text(st, 2, by_cust[0] ? by_cust : NULL);
    int rows = 0;
    int64_t expires = 0, redeemed = 0;
    char rstore[80] = "";
    while ((step = ts_sql_step(st)) == TS_SQL_ROW && ++rows == 1) {
        ts_strlcpy(oc->cust, ts_sql_column_text(st, 0), sizeof oc->cust);
        const char *d = ts_sql_column_text(st, 1);
        ts_strlcpy(oc->description, d ? d : "", sizeof oc->description);
        expires = ts_sql_column_int64(st, 2);
        redeemed = ts_sql_column_int64(st, 3);
        const char *rs = ts_sql_column_text(st, 4);
        ts_strlcpy(rstore, rs ? rs : "?", sizeof rstore);
        ts_strlcpy(cid, ts_sql_column_text(st, 5) ? ts_sql_column_text(st, 5) : "", sizeof cid);
    }
    ts_sql_reset(st);
    if (step != TS_SQL_ROW && step != TS_SQL_DONE)
        return ts_hub_db_werr(s, "offer find");
    char day[11];
    if (rows == 0) {
        oc->status = 404;
        snprintf(oc->msg, sizeof oc->msg, "offer %s is not known%s", r->code,
                 by_cust[0] ? " for this customer" : "");
    } else if (rows > 1) {
        oc->status = 409;
        snprintf(oc->msg, sizeof oc->msg,
                 "offer %s is held by several customers: scan the customer's card first", r->code);
    } else if (redeemed > 0) {
        day_of(redeemed, day);
        oc->status = 409;
        snprintf(oc->msg, sizeof oc->msg, "offer %s was already redeemed at store %s on %s",
                 r->code, rstore, day);
    } else if (expires > 0 && expires <= now) {
        day_of(expires, day);
        oc->status = 410;
        snprintf(oc->msg, sizeof oc->msg, "offer %s expired on %s", r->code, day);
    }
    if (oc->status)
        return TS_OK;
    /* One redemption per (customer, code): the id is stable, so a sink's
     * dedup catches a replay of the same event. */
    snprintf(oc->message_id, sizeof oc->message_id, "coupon-%s-%s", cid, r->code);
    char *ev = coupon_event(r, oc, cid, store, terminal, now);
    if (!ev || !(st = q(s, Q_REDEEM))) {
        free(ev);
        return ev ? TS_ERR_DB : TS_ERR_NOMEM;
    }
    ts_sql_bind_text(st, 1, oc->cust);
    ts_sql_bind_text(st, 2, r->code);
    ts_sql_bind_int64(st, 3, now);
    ts_sql_bind_text(st, 4, store);
    ts_sql_bind_text(st, 5, terminal);
    ts_sql_bind_text(st, 6, r->receipt[0] ? r->receipt : NULL);
    ts_sql_bind_text(st, 7, oc->message_id);
    ts_sql_bind_text(st, 8, ev);
    enum ts_err rc = done(s, st, "offer redeem");
    free(ev);
    if (rc != TS_OK)
        return rc;
    if (ts_sql_changes(ts_hub_db_writer(s)) == 0) { /* another hub's till was first */
        oc->status = 409;
        snprintf(oc->msg, sizeof oc->msg, "offer %s was already redeemed", r->code);
        return TS_OK;
    }
    bool rebuilt = false;
    if ((rc = ts_hub_sinkq_queue(s, TS_SINK_COUPON, oc->message_id, now)) ||
        (rc = ts_hub_rebuild(s, oc->cust, now, &rebuilt)))
        return rc;
    oc->status = 200;
    return TS_OK;
}

/* {"redeemed": {...}, "kv", "cid", "keys", "card"}: the card as a lookup
 * gives it, so the till caches the card without the offer at once. */
static enum ts_err answer(struct ts_hub_store *s, const struct ts_hub_redeem_req *r,
                          const struct outcome *oc, const char *store, int64_t now, ts_buf *out)
{
    char at[40];
    ts_iso8601(now, at, sizeof at);
    json_t *red = json_pack("{s:s, s:s, s:s}", "code", r->code, "store", store, "at", at);
    if (red && oc->description[0])
        json_object_set_new(red, "description", json_string(oc->description));
    char *rt = red ? json_dumps(red, JSON_COMPACT) : NULL;
    json_decref(red);
    if (!rt)
        return TS_ERR_NOMEM;
    enum ts_err rc =
        ts_buf_printf(out, "{\"redeemed\":%s,\"kv\":%d", rt, ts_hub_db_key(s)->version);
    free(rt);
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (rc == TS_OK)
        rc = ts_hub_card_of(s, db, oc->cust, out);
    ts_hub_db_read_end(s, false);
    return rc ? rc : ts_buf_puts(out, "}");
}

void ts_hub_offers_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                          struct ts_httpd_resp *resp)
{
    struct ts_hub_redeem_req r;
    struct outcome oc = {0};
    char err[200];
    const char *store = req->peer->ou, *terminal = req->peer->cn;
    if (ts_hub_offers_parse_redeem(req->body ? req->body : "", req->body_len, &r, err,
                                   sizeof err) != TS_OK) {
        ts_httpd_error(resp, 400, err);
        return;
    }
    int64_t now = api->now_ms();
    struct ts_hub_store *s = api->store;
    enum ts_err rc = ts_hub_db_write_begin(s, TS_HUB_TXN_DURABLE);
    if (rc == TS_OK) {
        /* Two statements: the order in which a call's arguments are
         * evaluated is unspecified, and GCC read oc.status before
         * redeem_locked set it, so a redemption never told this process's
         * long-polls (on SQLite they learned it only when their wait ran out). */
        rc = redeem_locked(s, &r, store, terminal, now, &oc);
        rc = ts_hub_db_write_end(s, rc, oc.status == 200);
    }
    if (rc != TS_OK) {
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 5\r\n");
        ts_httpd_error(resp, rc == TS_ERR_FULL ? 507 : 503, "cannot redeem the offer now");
        return;
    }
    if (oc.status != 200) {
        TS_INFO(COMP, "offer %s at %s/%s refused: %s", r.code, store, terminal, oc.msg);
        ts_httpd_error(resp, oc.status, oc.msg);
        return;
    }
    ts_hub_upstream_kick(api->upstream);
    ts_buf_reset(&resp->body);
    if (answer(s, &r, &oc, store, now, &resp->body) != TS_OK) {
        ts_httpd_error(resp, 500, "redeemed, but the answer could not be made");
        return;
    }
    resp->status = 200;
    TS_INFO(COMP, "offer %s redeemed at %s/%s", r.code, store, terminal);
}

enum ts_err ts_hub_offers_stats(struct ts_hub_store *s, void *obj)
{
    struct ts_sql_stmt *st = NULL;
    long long v[2] = {0};
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    if (ts_sql_prepare(db,
                       "SELECT (SELECT count(*) FROM offers WHERE redeemed_at IS NULL),"
                       " (SELECT count(*) FROM offers WHERE redeemed_at IS NOT NULL)",
                       &st) == TS_OK &&
        ts_sql_step(st) == TS_SQL_ROW)
        for (int i = 0; i < 2; i++)
            v[i] = ts_sql_column_int64(st, i);
    ts_sql_finalize(st);
    ts_hub_db_read_end(s, false);
    json_t *o = json_pack("{s:I, s:I}", "open", (json_int_t)v[0], "redeemed", (json_int_t)v[1]);
    return o && json_object_set_new(obj, "offers", o) == 0 ? TS_OK : TS_ERR_NOMEM;
}
