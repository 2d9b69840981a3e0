/*
 * Iterable: purchases through the Commerce API's trackPurchase; returns as
 * the custom event "refund" (it_map_refund below).
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
 *   the default below is a conservative 10 requests per second per project
 *   (the figure Iterable gives for its bulk track endpoint), which
 *   [sink.NAME] rate overrides with the figure from the project's contract.
 * Identity: user.userId is the CDP user id; with identity = email the
 *   e-mail address where the hub knows it. An event without a customer is
 *   not sent (Iterable needs a user): counted by the forwarder.
 */
#include "sink_line.h"

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

/*
 * A return: Iterable's Commerce API tracks purchases and carts only, so a
 * refund is the documented custom event, POST /api/events/track
 * (https://api.iterable.com/api/docs#events_track): eventName "refund",
 * email or userId, id (an event tracked again under its id is updated, not
 * added: the messageId makes a resend harmless), createdAt (seconds) and
 * dataFields with the refunded order, amount and lines.
 */
#define REFUND_EVENT "{\"eventName\""
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
    bool by_email = s->by_email && e->email && strcmp(e->profile, e->email) == 0;
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:o}", "eventName", "refund",
                          by_email ? "email" : "userId", e->profile, "id", e->id, "createdAt",
                          (json_int_t)(e->at_ms / 1000), "dataFields", f);
    return ts_sink_items_add(out, j, e->id);
}

static enum ts_err it_map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                          char *err, size_t errsz)
{
    struct it_state *s = state;
    struct ts_sink_order o;
    if (ts_sink_order_of(e, &o, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    if (!e->profile) {
        ts_errf(err, errsz, "no known customer: Iterable needs a user");
        return TS_ERR_INVAL;
    }
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
    bool by_email = s->by_email && e->email && strcmp(e->profile, e->email) == 0;
    json_t *user = by_email ? json_pack("{s:s}", "email", e->profile)
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

static enum ts_err it_build(void *state, const struct ts_sink_item *const *items, size_t n,
                            struct ts_sink_request *req, char *err, size_t errsz)
{
    (void)state, (void)err, (void)errsz;
    /* one item per request: a refund event, or a purchase */
    bool refund = n == 1 && strncmp(items[0]->json, REFUND_EVENT, strlen(REFUND_EVENT)) == 0;
    snprintf(req->path, sizeof req->path,
             refund ? "/api/events/track" : "/api/commerce/trackPurchase");
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
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN,
    .anonymous = false,
    .limits = {.max_items = 1, .rate = 10, .burst = 10, .max_in_flight = 2}, /* no order */
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
};
