/*
 * Iterable: purchases through the Commerce API's trackPurchase; returns as
 * the custom event "refund" (it_map_refund below); a redeemed offer as the
 * custom event "coupon_redeemed" (it_map_coupon); a consent choice as
 * profile fields through POST /api/users/update (it_map_consent).
 *
 * Reference: https://api.iterable.com/api/docs#commerce_trackPurchase
 *   POST {url}/api/commerce/trackPurchase, JSON body
 *   {id, user: {userId | email, preferUserId}, items: [{id, sku, name,
 *   price, quantity}], total, createdAt, dataFields}. The API key goes in
 *   the "Api-Key" header (https://support.iterable.com/hc/en-us/articles/
 *   360043464871, "API Keys"). Item id, name, price and quantity are
 *   required; total is required.
 * Dedup: the purchase "id"; Iterable keeps one purchase per id, so a retry
 *   after a lost answer does not count the sale twice. We send the stored
 *   event's messageId.
 * Batching: trackPurchase takes one purchase per request and Iterable has
 *   no bulk purchase endpoint (the bulk endpoints, /api/events/trackBulk and
 *   /api/users/bulkUpdate, carry custom events and profile fields, not
 *   purchases with their revenue), so max_items is 1.
 * Answers (https://api.iterable.com/api/docs, "Response codes"): 200 with
 *   {"code": "Success"}; 400 with a code such as BadParams, BadJsonBody or
 *   InvalidEmailAddressError (permanent: dead letter); 401 BadApiKey; 429
 *   when over the rate limit; 5xx retried; 403 (a key without the
 *   permission for this endpoint) retried too, for it is a setting to fix.
 * Rate: Iterable limits each endpoint per project and answers 429 past it;
 *   the figure for trackPurchase is not in the material we could read, so
 *   the default is a conservative 10 requests per second per project (the
 *   figure Iterable gives for its bulk track endpoint), which [sink.NAME]
 *   rate overrides with the figure from the project's contract. The limit
 *   counts requests in fixed one-second windows, so the bucket is one
 *   request deep (burst 1: never ten at once on a start with a backlog, as
 *   a deeper bucket did -- up to 8 answers 429 in bench/sink_drain2.py) and
 *   paces 9 a second: a tenth under the limit, so the time between our send
 *   and Iterable's count (TLS, the network, its front end) cannot put an
 *   eleventh into one window.
 * Identity: user.userId is the CDP user id; with identity = email the
 *   e-mail address where the hub knows it. An event without a customer is
 *   not sent (Iterable needs a user): counted by the forwarder.
 */
#include "sink_line.h"
#include "sink_till.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const required[] = {"api_key", NULL};
static const char *const secrets[] = {"api_key", NULL};

struct it_state {
    char key_header[512];
    bool by_email; /* identity = email */
};

static enum ts_err it_init(const struct ts_sink_conf *c, void **state, char *err, size_t errsz)
{
    const char *key = ts_sink_conf_get(c, "api_key", "");
    if (!*key || strpbrk(key, "\r\n")) {
        ts_errf(err, errsz, "[sink.%s] api_key: required, one line", c->name);
        return TS_ERR_INVAL;
    }
    struct it_state *s = calloc(1, sizeof *s);
    if (!s) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    snprintf(s->key_header, sizeof s->key_header, "Api-Key: %s\r\n", key);
    s->by_email = c->identity == TS_SINK_ID_EMAIL;
    *state = s;
    return TS_OK;
}

static void it_fini(void *state)
{
    free(state);
}

static bool it_by_email(const struct it_state *s, const struct ts_sink_event *e)
{
    return s->by_email && e->email && strcmp(e->profile, e->email) == 0;
}

/* The custom event name of e with dataFields fields (stolen) through
 * /api/events/track; its id, the stored event's messageId, is the dedup key. */
static enum ts_err it_event(const struct it_state *s, const struct ts_sink_event *e,
                            const char *name, json_t *fields, struct ts_sink_items *out)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:o}", "eventName", name,
                          it_by_email(s, e) ? "email" : "userId", e->profile, "id", e->id,
                          "createdAt", (json_int_t)(e->at_ms / 1000), "dataFields", fields);
    return ts_sink_items_add(out, j, e->id);
}

/*
 * A return: Iterable's Commerce API tracks purchases and carts only, so a
 * refund is the documented custom event, POST /api/events/track
 * (https://api.iterable.com/api/docs#events_track): eventName "refund",
 * email or userId, id (an event tracked again under its id is updated, not
 * added: the messageId makes a resend harmless), createdAt (seconds) and
 * dataFields with the refunded order, amount and lines.
 */
static enum ts_err it_map_refund(const struct it_state *s, const struct ts_sink_event *e,
                                 const struct ts_sink_order *o, struct ts_sink_items *out)
{
    const json_t *p = ts_sink_props(e);
    json_t *f = json_pack("{s:s,s:f,s:O}", "orderId", o->order_id, "total", o->total, "items",
                          json_object_get(p, "products"));
    const char *reason = json_string_value(json_object_get(p, "reason"));
    if (f && reason)
        json_object_set_new(f, "reason", json_string(reason));
    if (f && o->currency)
        json_object_set_new(f, "currency", json_string(o->currency));
    if (f && o->store)
        json_object_set_new(f, "storeId", json_string(o->store));
    return it_event(s, e, "refund", f, out);
}

/*
 * A redeemed offer: the custom event "coupon_redeemed" through POST
 * /api/events/track (as a refund above; its id, the stored event's
 * messageId, makes a resend an update of the same event), dataFields the
 * coupon_id, coupon_name, order_id and store.
 */
static enum ts_err it_map_coupon(const struct it_state *s, const struct ts_sink_event *e,
                                 struct ts_sink_items *out, char *err, size_t errsz)
{
    struct ts_sink_coupon c;
    if (ts_sink_coupon_of(e, &c, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    return it_event(s, e, "coupon_redeemed", ts_sink_coupon_props(&c), out);
}

/*
 * A consent choice: POST /api/users/update (https://api.iterable.com/api/docs
 * #users_updateUser: email or userId, dataFields "to store in the user
 * profile", preferUserId to create a user by userId, mergeNestedObjects)
 * with the choices as the profile fields personalization_consent,
 * email_consent and sms_consent (each only when asked at the till), and
 * consent_updated_at / consent_store. A resend sets the same fields again:
 * no dedup key is needed. Iterable's own opt-out of a channel is not sent:
 * POST /api/users/updateSubscriptions (unsubscribedChannelIds) "overwrites
 * existing data if the field is provided and not null" (#users_updateSubscriptions),
 * so one till's choice would re-subscribe the customer to every channel she
 * left elsewhere, and the per-user subscriptions endpoints (PATCH/DELETE
 * /api/subscriptions/{group}/{id}/user/{email}) are off until "you contact
 * your CSM" (#subscriptions); a retailer's journeys filter on email_consent.
 */
static enum ts_err it_map_consent(const struct it_state *s, const struct ts_sink_event *e,
                                  struct ts_sink_items *out, char *err, size_t errsz)
{
    struct ts_sink_consent c;
    if (ts_sink_consent_of(e, &c, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    char at[40];
    ts_iso8601(e->at_ms, at, sizeof at);
    json_t *f = json_pack("{s:s}", "consent_updated_at", at);
    if (f && c.personalization >= 0)
        json_object_set_new(f, "personalization_consent", json_boolean(c.personalization));
    if (f && c.email >= 0)
        json_object_set_new(f, "email_consent", json_boolean(c.email));
    if (f && c.sms >= 0)
        json_object_set_new(f, "sms_consent", json_boolean(c.sms));
    if (f && c.store)
        json_object_set_new(f, "consent_store", json_string(c.store));
    bool by_email = it_by_email(s, e);
    json_t *j = by_email ? json_pack("{s:o,s:s}", "dataFields", f, "email", e->profile)
                         : json_pack("{s:o,s:s,s:b}", "dataFields", f, "userId", e->profile,
                                     "preferUserId", 1);
    return ts_sink_items_add(out, j, NULL);
}

static enum ts_err it_map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                          char *err, size_t errsz)
{
    struct it_state *s = state;
    if (!e->profile) {
        ts_errf(err, errsz, "no known customer: Iterable needs a user");
        return TS_ERR_INVAL;
    }
    if (e->kind == TS_SINK_CONSENT)
        return it_map_consent(s, e, out, err, errsz);
    if (e->kind == TS_SINK_COUPON)
        return it_map_coupon(s, e, out, err, errsz);
    struct ts_sink_order o;
    if (ts_sink_order_of(e, &o, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    if (e->kind == TS_SINK_RETURN)
        return it_map_refund(s, e, &o, out);
    json_t *items = json_array();
    enum ts_err rc = items ? TS_OK : TS_ERR_NOMEM;
    for (size_t i = 0; rc == TS_OK && i < o.nlines; i++) {
        struct ts_sink_line l;
        if ((rc = ts_sink_line_at(e, i, &l, err, errsz)))
            goto out;
        json_t *it = json_pack("{s:s,s:s,s:f,s:I}", "id", l.product_id, "name",
                               l.name ? l.name : l.product_id, "price", l.price, "quantity",
                               (json_int_t)(l.quantity + 0.5));
        if (it && l.sku)
            json_object_set_new(it, "sku", json_string(l.sku));
        if (json_array_append_new(items, it))
            rc = TS_ERR_NOMEM;
    }
    if (rc)
        goto out;
    json_t *user = it_by_email(s, e)
                       ? json_pack("{s:s}", "email", e->profile)
                       : json_pack("{s:s,s:b}", "userId", e->profile, "preferUserId", 1);
    json_t *fields = json_pack("{s:s,s:s}", "orderId", o.order_id, "channel", "in store");
    if (fields && o.store)
        json_object_set_new(fields, "storeId", json_string(o.store));
    if (fields && o.terminal)
        json_object_set_new(fields, "terminal", json_string(o.terminal));
    if (fields && o.currency)
        json_object_set_new(fields, "currency", json_string(o.currency));
    /* createdAt: seconds since the epoch (the reference's "Time of purchase"). */
    json_t *j =
        json_pack("{s:s,s:o,s:o,s:f,s:I,s:o}", "id", e->id, "user", user, "items", items, "total",
                  o.total, "createdAt", (json_int_t)(e->at_ms / 1000), "dataFields", fields);
    return ts_sink_items_add(out, j, e->id); /* j owns items now */
out:
    json_decref(items);
    return rc;
}

/* The endpoint of an item, by its kind: a purchase, a custom event (a
 * refund, a redeemed offer) or a profile update (consent). */
static const char *it_path(const struct ts_sink_item *it)
{
    switch (it->kind) {
    case TS_SINK_RETURN:
    case TS_SINK_COUPON:
        return "/api/events/track";
    case TS_SINK_CONSENT:
        return "/api/users/update";
    default:
        return "/api/commerce/trackPurchase";
    }
}

/* One endpoint per request (each takes one object; max_items is 1 anyway). */
static bool it_together(void *state, const struct ts_sink_item *a, const struct ts_sink_item *b)
{
    (void)state;
    return strcmp(it_path(a), it_path(b)) == 0;
}

static enum ts_err it_build(void *state, const struct ts_sink_item *const *items, size_t n,
                            struct ts_sink_request *req, char *err, size_t errsz)
{
    (void)state, (void)err, (void)errsz;
    snprintf(req->path, sizeof req->path, "%s", it_path(items[0]));
    return ts_sink_join(items, n, "", "", &req->body);
}

static enum ts_err it_auth(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                           int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz)
{
    struct it_state *s = state;
    (void)c, (void)f, (void)now_ms, (void)err, (void)errsz;
    ts_strlcpy(out->headers, s->key_header, sizeof out->headers); /* static: never expires */
    out->expires_ms = 0;
    return TS_OK;
}

static enum ts_sink_verdict it_parse(void *state, const struct ts_sink_answer *a,
                                     const struct ts_sink_item *const *items, size_t n,
                                     struct ts_sink_result *results)
{
    (void)state, (void)items;
    enum ts_sink_verdict v = ts_sink_status_verdict_keyed(a->status, n);
    if (v == TS_SINK_OK) {
        /* A 200 says "Success" in its code; anything else is not one. */
        json_t *j = json_loadb(a->body, a->len, 0, NULL);
        const char *code = json_string_value(json_object_get(j, "code"));
        if (code && strcmp(code, "Success") != 0)
            v = TS_SINK_DEAD;
        json_decref(j);
    }
    if (v != TS_SINK_OK)
        ts_sink_reason(a, results[0].reason, sizeof results[0].reason);
    return v;
}

const struct ts_sink_vendor ts_sink_iterable = {
    .type = "iterable",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = false,
    .limits = {.max_items = 1, .rate = 9, .burst = 1, .max_in_flight = 2}, /* no order */
    .required = required,
    .secrets = secrets,
    .options = NULL,
    .init = it_init,
    .fini = it_fini,
    .map = it_map,
    .build = it_build,
    .auth = it_auth,
    .parse = it_parse,
    .rate = NULL,
    .together = it_together,
};
