/*
 * Returns and exchanges at the till (PROTOCOL.md "POST /api/v1/returns"):
 * the POS (or the receipt tap's refund rule) names the original receipt,
 * the lines that came back and the amount refunded. The body is checked
 * like a purchase's (the card guard, 400 naming the fields), turned into a
 * Segment "Order Refunded" track event
 * (https://segment.com/docs/connections/spec/ecommerce/v2/#order-refunded:
 * order_id of the original order, total, currency, products) and committed
 * to the one journal under "return:<return_id>" before the 202, so posting
 * the same return twice records it once. An exchange is a return plus a
 * new purchase. Whose return: the hub's, from the original purchase it
 * stored for that receipt; a customer code in the body only when the hub
 * knows no original.
 */
#include "purchase.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETURN_KEY_PREFIX "return:"

static void validate(json_t *r, json_t *fields)
{
    if (!json_is_object(r)) {
        json_array_append_new(fields, json_string("(body)"));
        return;
    }
    if (!ts_till_text_ok(json_object_get(r, "return_id"), 64))
        json_array_append_new(fields, json_string("return_id"));
    if (!ts_till_text_ok(json_object_get(r, "original_receipt"), 64))
        json_array_append_new(fields, json_string("original_receipt"));
    json_t *why = json_object_get(r, "reason");
    if (why && !json_is_null(why) && !ts_till_text_ok(why, 200))
        json_array_append_new(fields, json_string("reason"));
    ts_till_validate_order(r, fields);
}

static char *make_event(struct ts_agent *a, json_t *r, const char *mid, const char *key,
                        const char *source, const char *cid, int64_t now_ms)
{
    char cur[4];
    ts_till_currency(r, cur);
    json_t *ev = ts_till_envelope(a, "track", mid, r, now_ms, key, source, cid);
    json_t *tl = json_object_get(json_object_get(ev, "context"), "tillside");
    json_t *props =
        json_pack("{s:O, s:O, s:f, s:s, s:o}", "order_id", json_object_get(r, "original_receipt"),
                  "return_id", json_object_get(r, "return_id"), "total",
                  json_number_value(json_object_get(r, "total")), "currency", cur, "products",
                  ts_till_products(json_object_get(r, "products")));
    json_t *why = json_object_get(r, "reason");
    if (props && json_is_string(why))
        json_object_set(props, "reason", why);
    if (!ev || !tl || !props) {
        json_decref(props);
        json_decref(ev);
        return NULL;
    }
    json_object_set_new(tl, "kind", json_string("return"));
    json_object_set(tl, "original_receipt", json_object_get(r, "original_receipt"));
    json_object_set_new(ev, "event", json_string("Order Refunded"));
    json_object_set_new(ev, "properties", props);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return text;
}

enum ts_err ts_return_submit(struct ts_purch *pu, const char *source, json_t *ret,
                             char message_id[64], bool *duplicate, json_t *fields, char *err,
                             size_t errsz)
{
    static const char *const idents[] = {"return_id",      "original_receipt",      "customer.code",
                                         "products[].sku", "products[].product_id", NULL};
    char cid[96], mid[37], key[80];
    if (!pu) {
        ts_errf(err, errsz, "the purchase journal is not open");
        return TS_ERR_CLOSED;
    }
    struct ts_agent *a = pu->core;
    bool guard_ok = ts_till_guard(a, "return", source, ret, idents, fields, err, errsz);
    validate(ret, fields);
    if (!guard_ok)
        return TS_ERR_INVAL;
    if (json_array_size(fields) > 0) {
        ts_till_fields_text(fields, err, errsz);
        return TS_ERR_INVAL;
    }
    ts_till_code_cid(a, json_object_get(json_object_get(ret, "customer"), "code"), cid, sizeof cid);
    snprintf(key, sizeof key, RETURN_KEY_PREFIX "%s",
             json_string_value(json_object_get(ret, "return_id")));
    ts_till_uuid4(mid);
    int64_t now = ts_now_wall_ms();
    char *event = make_event(a, ret, mid, key, source, cid, now);
    if (!event) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    int rc = TS_OK;
    if (strlen(event) + 48 > TS_PURCHASE_MAX_EVENT) {
        json_array_append_new(fields, json_string("products"));
        ts_errf(err, errsz, "return larger than 32 KB as an event: fewer or shorter products");
        rc = TS_ERR_INVAL;
    } else {
        rc = ts_till_commit(pu, "return", key, source, cid, event, mid, now, duplicate, message_id,
                            err, errsz);
    }
    if (rc == TS_OK && !*duplicate) {
        json_t *ev = json_pack("{s:s, s:O, s:O, s:O, s:s, s:s, s:s?}", "message_id", mid,
                               "return_id", json_object_get(ret, "return_id"), "original_receipt",
                               json_object_get(ret, "original_receipt"), "total",
                               json_object_get(ret, "total"), "currency",
                               json_string_value(json_object_get(ret, "currency")), "source",
                               source, "cid", cid[0] ? cid : NULL);
        ts_till_publish(a, "return", ev);
    }
    free(event);
    return rc;
}
