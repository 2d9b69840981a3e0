/*
 * Braze (hub/sink.h): POST /users/track.
 *
 * Track users, https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
 *   - "Authorization: Bearer <REST API key>"
 *   - body {"events": [...], "purchases": [...], "attributes": [...]}; each
 *     object names the user by external_id (or email, user_alias, braze_id)
 *   - answers 201 {"message": "success", "errors": [{"type", "input_array",
 *     "index"}]} when some objects were refused, 400 when all were
 *   - no dedup key: an acknowledged object must never be sent again
 * Rate limits, https://www.braze.com/docs/api/api_limits/
 *   - /users/track: 3,000 requests per three seconds; 75 events, 75
 *     purchases and 75 attributes per request
 *   - X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (a Unix
 *     time) on every answer; 429 past the limit
 * Recommended events,
 * https://www.braze.com/docs/user_guide/data/activation/events/recommended_events
 *   - ecommerce.order_placed: order_id, total_value, currency (ISO 4217),
 *     products [{product_id, product_name, variant_id, quantity, price}],
 *     source -- all required
 *   - ecommerce.order_refunded: the same order-level schema, for a refund
 *     of (part of) the order order_id
 * Purchase object (the legacy way, [sink.NAME] purchases = legacy),
 * https://www.braze.com/docs/api/objects_filters/purchase_object/
 *   - one object per product: product_id, currency, price, quantity, time
 * Consent at the till: one user attributes object in the same request's
 * "attributes" array, https://www.braze.com/docs/api/objects_filters/user_attributes_object/
 *   - "_update_existing_only": false (the default for an external_id; said,
 *     so a profile known by e-mail is created as one known by id would be)
 *   - the Braze profile field email_subscribe: "opted_in" (explicitly
 *     confirmed) or "unsubscribed" ("Managing user subscriptions",
 *     https://www.braze.com/docs/user_guide/message_building_by_channel/email/managing_user_subscriptions)
 *   - SMS is a subscription group in Braze: with [sink.NAME] sms_group (the
 *     group's id) the profile field subscription_groups [{subscription_group_id,
 *     subscription_state: "subscribed" | "unsubscribed"}]; without one the
 *     custom attribute sms_consent (true/false)
 *   - personalization_consent: a custom attribute (true/false)
 * A redeemed offer: the custom event "coupon_redeemed" (event object,
 * https://www.braze.com/docs/api/objects_filters/event_object/: name, time,
 * properties) with coupon_id, coupon_name, order_id, store.
 */
#include "sink.h"
#include "sink_till.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const required[] = {"api_key", NULL};
static const char *const secrets[] = {"api_key", NULL};
static const char *const options[] = {"purchases", "sms_group", NULL};

struct braze {
    char auth[400];
    bool legacy;        /* purchases = legacy: the purchases array, one per line */
    char sms_group[80]; /* the SMS subscription group's id; "" = none */
};

static enum ts_err init(const struct ts_sink_conf *c, void **state, char *err, size_t errsz)
{
    const char *mode = ts_sink_conf_get(c, "purchases", "ecommerce");
    if (strcmp(mode, "ecommerce") != 0 && strcmp(mode, "legacy") != 0) {
        ts_errf(err, errsz, "[sink.%s] purchases: expected ecommerce or legacy", c->name);
        return TS_ERR_CONFIG;
    }
    struct braze *b = calloc(1, sizeof *b);
    if (!b) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    b->legacy = strcmp(mode, "legacy") == 0;
    const char *grp = ts_sink_conf_get(c, "sms_group", "");
    if (strlen(grp) >= sizeof b->sms_group || strpbrk(grp, "\"\\\r\n")) {
        free(b);
        ts_errf(err, errsz, "[sink.%s] sms_group: expected a subscription group's id", c->name);
        return TS_ERR_CONFIG;
    }
    ts_strlcpy(b->sms_group, grp, sizeof b->sms_group);
    snprintf(b->auth, sizeof b->auth, "Authorization: Bearer %s\r\n",
             ts_sink_conf_get(c, "api_key", ""));
    *state = b;
    return TS_OK;
}

static void fini(void *state)
{
    free(state);
}

static void who(json_t *o, const struct ts_sink_event *e)
{
    json_object_set_new(o, e->profile == e->email ? "email" : "external_id",
                        json_string(e->profile));
}

/* A recommended eCommerce event (name: ecommerce.order_placed, or
 * ecommerce.order_refunded for a till's return -- the same order-level
 * schema, order_id naming the original order) of the order properties p. */
static json_t *ecommerce_event(const struct ts_sink_event *e, const json_t *p, const char *name,
                               const char *when)
{
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
    json_t *lines = json_array(), *it;
    size_t i;
    json_array_foreach(json_object_get(p, "products"), i, it)
    {
        const char *pid = json_string_value(json_object_get(it, "product_id"));
        const char *sku = json_string_value(json_object_get(it, "sku"));
        const char *pname = json_string_value(json_object_get(it, "name"));
        json_t *q = json_object_get(it, "quantity");
        json_array_append_new(
            lines,
            json_pack("{s:s?,s:s?,s:s?,s:I,s:f}", "product_id", pid ? pid : sku, "product_name",
                      pname && *pname ? pname : (pid ? pid : sku), "variant_id", sku ? sku : pid,
                      "quantity", (json_int_t)(json_is_integer(q) ? json_integer_value(q) : 1),
                      "price", json_number_value(json_object_get(it, "price"))));
    }
    json_t *o =
        json_pack("{s:s,s:s,s:{s:s?,s:f,s:s?,s:o,s:s,s:s?}}", "name", name, "time", when,
                  "properties", "order_id", json_string_value(json_object_get(p, "order_id")),
                  "total_value", json_number_value(json_object_get(p, "total")), "currency",
                  json_string_value(json_object_get(p, "currency")), "products", lines, "source",
                  "pos", "store", json_string_value(json_object_get(tl, "store")));
    const char *reason = json_string_value(json_object_get(p, "reason"));
    if (o && reason)
        json_object_set_new(json_object_get(o, "properties"), "reason", json_string(reason));
    if (o)
        who(o, e);
    return o;
}

/* A return: ecommerce.order_refunded (recommended events, above), also
 * with purchases = legacy (purchase objects cannot be negative). */
static enum ts_err map_refund(const struct ts_sink_event *e, const json_t *p,
                              struct ts_sink_items *out, char *err, size_t errsz)
{
    char when[40];
    ts_iso8601(e->at_ms, when, sizeof when);
    enum ts_err rc =
        ts_sink_items_add(out, ecommerce_event(e, p, "ecommerce.order_refunded", when), NULL);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

/* A consent choice: one user attributes object (the header above). */
static enum ts_err map_consent(const struct braze *b, const struct ts_sink_event *e,
                               struct ts_sink_items *out, char *err, size_t errsz)
{
    struct ts_sink_consent c;
    if (ts_sink_consent_of(e, &c, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    json_t *o = json_pack("{s:b}", "_update_existing_only", 0);
    if (!o)
        return TS_ERR_NOMEM;
    who(o, e);
    if (c.email >= 0)
        json_object_set_new(o, "email_subscribe",
                            json_string(c.email ? "opted_in" : "unsubscribed"));
    if (c.sms >= 0 && b->sms_group[0])
        json_object_set_new(o, "subscription_groups",
                            json_pack("[{s:s,s:s}]", "subscription_group_id", b->sms_group,
                                      "subscription_state", c.sms ? "subscribed" : "unsubscribed"));
    else if (c.sms >= 0)
        json_object_set_new(o, "sms_consent", json_boolean(c.sms));
    if (c.personalization >= 0)
        json_object_set_new(o, "personalization_consent", json_boolean(c.personalization));
    enum ts_err rc = ts_sink_items_add(out, o, NULL);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

/* A redeemed offer: the custom event coupon_redeemed. */
static enum ts_err map_coupon(const struct ts_sink_event *e, struct ts_sink_items *out, char *err,
                              size_t errsz)
{
    struct ts_sink_coupon c;
    if (ts_sink_coupon_of(e, &c, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    char when[40];
    ts_iso8601(e->at_ms, when, sizeof when);
    json_t *o = json_pack("{s:s,s:s,s:o}", "name", "coupon_redeemed", "time", when, "properties",
                          ts_sink_coupon_props(&c));
    if (o)
        who(o, e);
    enum ts_err rc = ts_sink_items_add(out, o, NULL);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

static enum ts_err map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                       char *err, size_t errsz)
{
    struct braze *b = state;
    if (e->profile && e->kind == TS_SINK_CONSENT)
        return map_consent(b, e, out, err, errsz);
    if (e->profile && e->kind == TS_SINK_COUPON)
        return map_coupon(e, out, err, errsz);
    const json_t *p = ts_sink_props(e);
    if (!p || !e->profile) {
        ts_errf(err, errsz, "no order properties or no profile");
        return TS_ERR_INVAL;
    }
    if (e->kind == TS_SINK_RETURN)
        return map_refund(e, p, out, err, errsz);
    char when[40];
    ts_iso8601(e->at_ms, when, sizeof when);
    const char *order = json_string_value(json_object_get(p, "order_id"));
    const char *cur = json_string_value(json_object_get(p, "currency"));
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
    const char *store = json_string_value(json_object_get(tl, "store"));
    json_t *products = json_object_get(p, "products"), *it;
    size_t i;
    enum ts_err rc = TS_OK;
    if (b->legacy) {
        json_array_foreach(products, i, it)
        {
            const char *pid = json_string_value(json_object_get(it, "product_id"));
            if (!pid)
                pid = json_string_value(json_object_get(it, "sku"));
            json_t *q = json_object_get(it, "quantity");
            json_t *o =
                json_pack("{s:s?,s:s?,s:f,s:I,s:s,s:{s:s?,s:s?}}", "product_id", pid, "currency",
                          cur, "price", json_number_value(json_object_get(it, "price")), "quantity",
                          (json_int_t)(json_is_integer(q) ? json_integer_value(q) : 1), "time",
                          when, "properties", "order_id", order, "store", store);
            who(o, e);
            if ((rc = ts_sink_items_add(out, o, NULL)))
                break;
        }
        if (rc != TS_OK)
            ts_errf(err, errsz, "out of memory");
        return rc;
    }
    rc = ts_sink_items_add(out, ecommerce_event(e, p, "ecommerce.order_placed", when), NULL);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

/* The users/track array of an item: a consent is an attributes object, a
 * legacy purchase object has product_id at the top, an event has name. */
static const char *const arrays[] = {"events", "purchases", "attributes"};
static int array_of(const struct ts_sink_item *it)
{
    if (it->kind == TS_SINK_CONSENT)
        return 2;
    return strncmp(it->json, "{\"product_id\"", 13) == 0;
}

static enum ts_err build(void *state, const struct ts_sink_item *const *items, size_t n,
                         struct ts_sink_request *req, char *err, size_t errsz)
{
    (void)state;
    snprintf(req->path, sizeof req->path, "/users/track");
    enum ts_err rc = ts_buf_puts(&req->body, "{\"events\":[");
    for (int pass = 0; rc == TS_OK && pass < 3; pass++) {
        bool first = true;
        if (pass > 0)
            rc = ts_buf_puts(&req->body, pass == 1 ? "],\"purchases\":[" : "],\"attributes\":[");
        for (size_t i = 0; rc == TS_OK && i < n; i++) {
            if (array_of(items[i]) != pass)
                continue;
            if (!first)
                rc = ts_buf_puts(&req->body, ",");
            first = false;
            if (rc == TS_OK)
                rc = ts_buf_append(&req->body, items[i]->json, items[i]->len);
        }
    }
    if (rc == TS_OK)
        rc = ts_buf_puts(&req->body, "]}");
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

static enum ts_err auth(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                        int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz)
{
    (void)c, (void)f, (void)now_ms, (void)err, (void)errsz;
    ts_strlcpy(out->headers, ((struct braze *)state)->auth, sizeof out->headers);
    return TS_OK;
}

/* Braze names a refused object by its array and its index there; build()
 * sent the events first, then the purchases, then the attributes: that
 * maps it back. */
static size_t item_of(const struct ts_sink_item *const *items, size_t n, const char *array,
                      size_t idx)
{
    int want = 0;
    for (int a = 0; array && a < 3; a++)
        if (strcmp(array, arrays[a]) == 0)
            want = a;
    for (size_t i = 0, k = 0; i < n; i++)
        if (array_of(items[i]) == want && k++ == idx)
            return i;
    return n;
}

static enum ts_sink_verdict parse(void *state, const struct ts_sink_answer *a,
                                  const struct ts_sink_item *const *items, size_t n,
                                  struct ts_sink_result *r)
{
    (void)state;
    enum ts_sink_verdict v = ts_sink_status_verdict(a->status, n);
    json_t *root = a->len ? json_loadb(a->body, a->len, 0, NULL) : NULL;
    json_t *errs = json_object_get(root, "errors");
    /* 201 with "errors": those objects were refused for good and the
     * others stored; a 400 naming objects: those are bad, the rest were not
     * looked at -- they go again (Braze has no dedup, but nothing of a
     * refused request was stored). */
    if ((a->status == 201 || a->status == 400) && json_is_array(errs) &&
        json_array_size(errs) > 0) {
        bool named = true;
        for (size_t i = 0; i < n; i++) {
            r[i].v = a->status == 201 ? TS_SINK_OK : TS_SINK_RETRY;
            snprintf(r[i].reason, sizeof r[i].reason, "sent again: another object was refused");
        }
        size_t k;
        json_t *e;
        json_array_foreach(errs, k, e)
        {
            json_t *ix = json_object_get(e, "index");
            size_t at =
                json_is_integer(ix) && json_integer_value(ix) >= 0
                    ? item_of(items, n, json_string_value(json_object_get(e, "input_array")),
                              (size_t)json_integer_value(ix))
                    : n;
            if (at >= n) {
                named = false;
                continue;
            }
            const char *t = json_string_value(json_object_get(e, "type"));
            r[at].v = TS_SINK_DEAD;
            snprintf(r[at].reason, sizeof r[at].reason, "HTTP %d: %s", a->status,
                     t ? t : "refused");
        }
        json_decref(root);
        if (named)
            return TS_SINK_ITEMS;
        if (a->status == 201)
            return TS_SINK_OK; /* stored; errors we cannot place: nothing to resend */
        ts_sink_reason(a, r[0].reason, sizeof r[0].reason);
        return v;
    }
    json_decref(root);
    if (v == TS_SINK_AUTH)
        v = TS_SINK_RETRY; /* a REST key: no refresh, retried until fixed */
    if (v != TS_SINK_OK)
        ts_sink_reason(a, r[0].reason, sizeof r[0].reason);
    return v;
}

static void rate(void *state, const struct ts_sink_answer *a, struct ts_sink_rate_hint *h)
{
    (void)state;
    ts_sink_rate_headers(a, "X-RateLimit-", true, h);
}

const struct ts_sink_vendor ts_sink_braze = {
    .type = "braze",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = false, /* every object must name a user */
    .limits = {.max_items = 75,
               .max_bytes = 4u * 1024u * 1024u, /* not documented; kept moderate */
               .max_item_bytes = 50u * 1024u,   /* event properties: under 50 KB */
               .rate = 1000,                    /* 3,000 per 3 s */
               .max_in_flight = 4,
               .burst = 100},
    .required = required,
    .secrets = secrets,
    .options = options,
    .init = init,
    .fini = fini,
    .map = map,
    .build = build,
    .auth = auth,
    .parse = parse,
    .rate = rate,
};
