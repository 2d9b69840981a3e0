/*
 * bloomreach_webhook: Bloomreach Engagement scenario webhooks
 * (https://documentation.bloomreach.com/engagement/docs/webhooks: a scenario's
 * webhook node sends the JSON payload its Jinja template makes).
 *
 * - A scenario's webhook node sends the body its template defines;
 *   docs/OPERATIONS.md gives the template the hub reads: {"events": [{
 *   "event_id", "type", "timestamp" (seconds), "customer_ids":
 *   {"registered", "cookie"}, "properties", "customer": {...}}]}, where
 *   type and properties are Bloomreach's own tracking vocabulary
 *   (https://documentation.bloomreach.com/engagement/docs/ecommerce-events:
 *   view_item, cart_update with action add/remove, purchase with
 *   purchase_id, purchase_status and total_price, consent with category
 *   and action accept/reject) and customer holds customer attributes.
 * - Authentication: the webhook's Basic authorization
 *   ("Authorization: Basic base64(user:secret)"); Bloomreach signs nothing,
 *   so the configured secret is required.
 * - Answers
 * (https://documentation.bloomreach.com/engagement/docs/creating-api-endpoint-for-webhooks): "HTTP
 * 200 for success or processing failure", 500 to have the request retried, and 400, 404, 410, 412,
 * 413 and 418 "prevent the webhook from sending any other request for all chunks"; "if request
 * processing fails due to input specific to this single request, your API should return HTTP 200
 * with error message". So the adapter is lenient: the good records are stored and the bad ones
 * listed in a 200, and a body the hub cannot read at all is a 200 {"success": false, "errors":
 * [...]} too. The same page asks for HTTP Basic authorization.
 */
#include "source_int.h"

#include <stdio.h>
#include <string.h>

static void product(json_t *p, const json_t *src)
{
    ts_src_pick(p, "product_id", src, (const char *const[]){"product_id", "item_id", "sku", NULL});
    ts_src_pick(p, "name", src, (const char *const[]){"title", "name", NULL});
    ts_src_pick(p, "price", src, (const char *const[]){"price", NULL});
    ts_src_pick(p, "quantity", src, (const char *const[]){"quantity", NULL});
}

static const char *kind(const char *type, const json_t *props)
{
    const char *action = json_string_value(json_object_get(props, "action"));
    if (strcmp(type, "cart_update") == 0)
        return action && strcmp(action, "remove") == 0 ? "Product Removed" : "Product Added";
    if (strcmp(type, "wishlist_update") == 0)
        return action && strcmp(action, "remove") == 0 ? "Product Removed from Wishlist"
                                                       : "Product Added to Wishlist";
    if (strcmp(type, "purchase") == 0) {
        const char *st = json_string_value(json_object_get(props, "purchase_status"));
        if (!st || strcmp(st, "success") == 0)
            return "Order Completed";
        return strcmp(st, "canceled") == 0 || strcmp(st, "cancelled") == 0 ? "Order Cancelled"
                                                                           : "Order Updated";
    }
    return ts_src_vocab(type);
}

static enum ts_err one(struct ts_src_ctx *c, size_t idx, const json_t *ev)
{
    char uid[TS_SEG_MAX_ID + 1], cid[TS_SEG_MAX_ID + 1], vid[200];
    const json_t *ids = json_object_get(ev, "customer_ids");
    const json_t *props = json_object_get(ev, "properties");
    const json_t *cust = json_object_get(ev, "customer");
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *u = ts_src_text(ids, (const char *const[]){"registered", NULL}, uid, sizeof uid);
    const char *a = ts_src_text(ids, (const char *const[]){"cookie", NULL}, cid, sizeof cid);
    const char *id = ts_src_text(ev, (const char *const[]){"event_id", NULL}, vid, sizeof vid);
    int64_t at = 0;
    if (!json_is_object(ev) || !type) {
        ts_src_reject(c, "event %zu: not an object with a type", idx);
        return TS_OK;
    }
    ts_src_time(json_object_get(ev, "timestamp"), &at);
    json_t *e;
    if (json_is_object(cust) || strcmp(type, "consent") == 0) {
        char pid[220];
        snprintf(pid, sizeof pid, "%s.profile", id ? id : "");
        if (!(e = ts_src_event(c, "identify", u, a, id ? pid : NULL, at)))
            return TS_ERR_NOMEM;
        json_t *tr = ts_src_traits(e);
        ts_src_profile(tr, cust);
        const char *cat = json_string_value(json_object_get(props, "category"));
        const char *act = json_string_value(json_object_get(props, "action"));
        if (strcmp(type, "consent") == 0 && cat && act && strcmp(cat, "personalization") == 0)
            json_object_set_new(tr, "personalization_consent",
                                json_boolean(strcmp(act, "accept") == 0));
        if (strcmp(type, "consent") == 0 || strcmp(type, "customer_update") == 0)
            return TS_OK;
    }
    const char *seg = kind(type, props);
    if (!seg) {
        c->unknown++;
        return TS_OK;
    }
    if (!(e = ts_src_event(c, seg, u, a, id, at)))
        return TS_ERR_NOMEM;
    json_t *p = ts_src_props(e);
    product(p, props);
    if (strncmp(seg, "Order", 5) == 0) {
        ts_src_pick(p, "order_id", props, (const char *const[]){"purchase_id", "order_id", NULL});
        ts_src_pick(p, "total", props, (const char *const[]){"total_price", NULL});
        ts_src_pick(p, "pickup_store", props, (const char *const[]){"pickup_store", NULL});
        json_t *items = json_array();
        size_t i;
        const json_t *it;
        json_array_foreach(json_object_get(props, "items"), i, it)
        {
            json_t *o = json_object();
            product(o, it);
            json_array_append_new(items, o);
        }
        json_object_set_new(p, "products", items);
    }
    return TS_OK;
}

static enum ts_err map(struct ts_src_ctx *c, const json_t *root)
{
    const json_t *evs = json_object_get(root, "events");
    if (json_is_object(root) && !evs)
        return one(c, 0, root); /* a template sending one record */
    return ts_src_each(c, evs, "{\"events\": [...]} or one event", one);
}

static enum ts_err verify(struct ts_src_ctx *c)
{
    return ts_src_basic_ok(c) ? TS_OK : TS_ERR_AUTH;
}

const struct ts_src_vendor ts_src_bloomreach = {
    .type = TS_SRC_BLOOMREACH,
    .name = "bloomreach_webhook",
    .verify = verify,
    .map = map,
    .lenient = true,
};
