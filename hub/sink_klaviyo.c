/*
 * Klaviyo (hub/sink.h): the Events API's bulk endpoint, one "Placed Order"
 * plus one "Ordered Product" per line (a return: one "Refunded Order"),
 * Klaviyo's own e-commerce convention
 * ("Integrate a platform without a pre-built Klaviyo integration":
 * https://developers.klaviyo.com/en/docs/integrate_a_platform_without_a_pre_built_klaviyo_integration).
 *
 * Bulk Create Events, https://developers.klaviyo.com/en/reference/bulk_create_events
 *   - POST /api/event-bulk-create-jobs, JSON:API (application/vnd.api+json)
 *   - header "revision: YYYY-MM-DD" required; "Authorization: Klaviyo-API-Key <private key>"
 *   - up to 1,000 events per request, 5 MB per payload, 100 KB per string
 *   - rate: burst 10/s, steady 150/m (fixed windows, per account)
 *   - unique_id dedups an event per profile and metric; repeated in one
 *     request, the whole request fails
 *   - answers 202 Accepted (the job runs later): no per-event result
 * Consent at the till (a stored identify with personalization_consent /
 * email_consent / sms_consent), Klaviyo's way
 * ("Collect email and SMS consent via API":
 * https://developers.klaviyo.com/en/docs/collect_email_and_sms_consent_via_api):
 *   - e-mail marketing granted: Bulk Subscribe Profiles,
 *     https://developers.klaviyo.com/en/reference/bulk_subscribe_profiles
 *     POST /api/profile-subscription-bulk-create-jobs, data.type
 *     "profile-subscription-bulk-create-job", attributes.profiles.data =
 *     [{type "profile", attributes {email, subscriptions {email {marketing
 *     {consent "SUBSCRIBED"}}}}}], custom_source; optional relationships.list
 *     ([sink.NAME] list_id; without one the account's default opt-in
 *     applies); up to 1,000 profiles; 202.
 *   - withdrawn: Bulk Unsubscribe Profiles,
 *     https://developers.klaviyo.com/en/reference/bulk_unsubscribe_profiles
 *     POST /api/profile-subscription-bulk-delete-jobs, data.type
 *     "profile-subscription-bulk-delete-job", the same profiles with
 *     {consent "UNSUBSCRIBED"}; up to 100 profiles per call (together()
 *     cuts a batch there); without a list the profile is
 *     unsubscribed globally, which is what an opt-out at the counter means.
 *   Both need the e-mail address (or an E.164 phone number, which the hub
 *   never has): a consent without a known address sends no subscription;
 *   SMS consent is not sent to Klaviyo.
 *   - personalization: a profile property (personalization_consent, true or
 *     false) through Create or Update Profile,
 *     https://developers.klaviyo.com/en/reference/create_or_update_profile
 *     POST /api/profile-import, {data: {type "profile", attributes
 *     {external_id | email, properties {...}}}}, one profile per request.
 *   Each request holds one endpoint's items (together()); consent items
 *   carry their route in their own JSON ({"route", "data"}).
 * A redeemed offer: one "Redeemed Coupon" event (CouponCode, CouponName,
 *   OrderId, Store, Terminal), unique_id the stored message id (one per
 *   customer and code), so a flow can exit on it.
 * Rate limits and errors, https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling
 *   - RateLimit-Limit / -Remaining / -Reset (seconds) on non-429 answers,
 *     Retry-After on a 429
 *   - errors: {"errors": [{"status", "code", "title", "detail", "source": {"pointer"}}]}
 */
#include "sink.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const required[] = {"api_key", NULL};
static const char *const secrets[] = {"api_key", NULL};
static const char *const options[] = {"revision", "list_id", NULL};

#define DEFAULT_REVISION "2025-01-15"

/* Bulk Unsubscribe Profiles: "Maximum number of profiles per call: 100". */
#define MAX_UNSUBSCRIBE 100

struct klaviyo {
    char headers[800];
    char list_id[64]; /* [sink.NAME] list_id: the list a subscription joins ("" = none) */
    /* together()'s count of the batch being cut: its first item's and second
     * item's dedup keys and how many it holds so far */
    char first[160], second[160];
    size_t taken;
};

static enum ts_err init(const struct ts_sink_conf *c, void **state, char *err, size_t errsz)
{
    struct klaviyo *k = calloc(1, sizeof *k);
    if (!k) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    snprintf(k->headers, sizeof k->headers,
             "Authorization: Klaviyo-API-Key %s\r\nrevision: %s\r\n"
             "Accept: application/vnd.api+json\r\n",
             ts_sink_conf_get(c, "api_key", ""), ts_sink_conf_get(c, "revision", DEFAULT_REVISION));
    const char *list = ts_sink_conf_get(c, "list_id", "");
    if (strlen(list) >= sizeof k->list_id || strspn(list, "abcdefghijklmnopqrstuvwxyz"
                                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                          "0123456789") != strlen(list)) {
        free(k);
        ts_errf(err, errsz, "[sink.%s] list_id: expected a Klaviyo list id (letters and digits)",
                c->name);
        return TS_ERR_INVAL;
    }
    ts_strlcpy(k->list_id, list, sizeof k->list_id);
    *state = k;
    return TS_OK;
}

static void fini(void *state)
{
    free(state);
}

/* {"data": {"type": type, "attributes": attrs}} */
static json_t *resource(const char *type, json_t *attrs)
{
    return json_pack("{s:{s:s,s:o}}", "data", "type", type, "attributes", attrs);
}

/* One event-bulk-create entry: the profile with one event of metric. */
static json_t *entry(const struct ts_sink_event *e, const char *metric, json_t *props, double value,
                     const char *currency, const char *unique_id)
{
    char when[40];
    ts_iso8601(e->at_ms, when, sizeof when);
    json_t *prof = json_object();
    /* external_id: the CDP's id; email when the sink is set to use it. */
    if (e->profile == e->email)
        json_object_set_new(prof, "email", json_string(e->email));
    else
        json_object_set_new(prof, "external_id", json_string(e->profile));
    json_t *ev = json_pack("{s:o,s:s,s:f,s:s,s:o}", "properties", props, "time", when, "value",
                           value, "unique_id", unique_id, "metric",
                           resource("metric", json_pack("{s:s}", "name", metric)));
    if (ev && currency)
        json_object_set_new(ev, "value_currency", json_string(currency));
    json_t *evs =
        json_pack("{s:[o]}", "data", json_pack("{s:s,s:o}", "type", "event", "attributes", ev));
    return json_pack("{s:s,s:{s:o,s:o}}", "type", "event-bulk-create", "attributes", "profile",
                     resource("profile", prof), "events", evs);
}

/*
 * A return: one "Refunded Order", the refund event of Klaviyo's e-commerce
 * convention (the guide above lists Placed Order, Ordered Product, Fulfilled
 * Order, Cancelled Order and Refunded Order; counted against lifetime value
 * through its value). OrderId names the refunded sale, ReturnId the return;
 * unique_id is "<store>:return:<ID>", the return's own key.
 */
static enum ts_err map_refund(const struct ts_sink_event *e, const json_t *p,
                              struct ts_sink_items *out, char *err, size_t errsz)
{
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
    /* The return's own key (context.tillside.receipt "return:ID", the one the
     * hub stores it under per store): the same return however often it is
     * sent is one Klaviyo event; two returns of one order are two. */
    const char *store = json_string_value(json_object_get(tl, "store"));
    const char *ret = json_string_value(json_object_get(tl, "receipt"));
    char uid[160];
    if (ret && strncmp(ret, "return:", 7) == 0)
        snprintf(uid, sizeof uid, "%s:%s", store ? store : "", ret);
    else
        ts_strlcpy(uid, e->id, sizeof uid); /* an older stored return: its message id */
    ret = ret && strncmp(ret, "return:", 7) == 0 ? ret + 7 : NULL;
    json_t *names = json_array(), *lines = json_array(), *it;
    size_t i;
    json_array_foreach(json_object_get(p, "products"), i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        if (name && *name)
            json_array_append_new(names, json_string(name));
        json_array_append(lines, it);
    }
    json_t *props =
        json_pack("{s:s?,s:s?,s:o,s:o,s:s?,s:s?,s:s?}", "OrderId",
                  json_string_value(json_object_get(p, "order_id")), "ReturnId", ret, "ItemNames",
                  names, "Items", lines, "Reason", json_string_value(json_object_get(p, "reason")),
                  "Store", store, "Terminal", json_string_value(json_object_get(tl, "terminal")));
    enum ts_err rc = ts_sink_items_add(
        out,
        entry(e, "Refunded Order", props, json_number_value(json_object_get(p, "total")),
              json_string_value(json_object_get(p, "currency")), uid),
        uid);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

/* The endpoints a Klaviyo request goes to; a consent item names its own. */
enum route { R_EVENTS = 0, R_SUBSCRIBE, R_UNSUBSCRIBE, R_PROFILE };
static const char *const route_names[] = {"events", "subscribe", "unsubscribe", "profile"};

/* A consent item: {"route": name, "data": the element of that endpoint}. */
static enum ts_err add_routed(struct ts_sink_items *out, enum route r, json_t *data,
                              const char *dedup)
{
    return ts_sink_items_add(out, json_pack("{s:s,s:o}", "route", route_names[r], "data", data),
                             dedup);
}

/* The consent traits of a stored identify -> Klaviyo's consent calls. */
static enum ts_err map_consent(const struct ts_sink_event *e, struct ts_sink_items *out, char *err,
                               size_t errsz)
{
    const json_t *traits = json_object_get(e->event, "traits");
    const json_t *pers = json_object_get(traits, "personalization_consent");
    const json_t *mail = json_object_get(traits, "email_consent");
    char key[160];
    enum ts_err rc = TS_OK;
    if (json_is_boolean(pers)) {
        json_t *attrs =
            json_pack("{s:{s:b}}", "properties", "personalization_consent", json_is_true(pers));
        if (attrs && e->profile == e->email)
            json_object_set_new(attrs, "email", json_string(e->email));
        else if (attrs)
            json_object_set_new(attrs, "external_id", json_string(e->profile));
        snprintf(key, sizeof key, "%s:profile", e->id);
        rc = add_routed(out, R_PROFILE,
                        json_pack("{s:s,s:o}", "type", "profile", "attributes", attrs), key);
    }
    if (rc == TS_OK && json_is_boolean(mail) && e->email && e->email[0]) {
        bool yes = json_is_true(mail);
        json_t *prof = json_pack("{s:s,s:{s:s,s:{s:{s:{s:s}}}}}", "type", "profile", "attributes",
                                 "email", e->email, "subscriptions", "email", "marketing",
                                 "consent", yes ? "SUBSCRIBED" : "UNSUBSCRIBED");
        snprintf(key, sizeof key, "%s:email", e->id);
        rc = add_routed(out, yes ? R_SUBSCRIBE : R_UNSUBSCRIBE, prof, key);
    }
    if (rc != TS_OK) {
        ts_errf(err, errsz, "out of memory");
        return rc;
    }
    if (out->n == 0) {
        ts_errf(err, errsz,
                "nothing Klaviyo can take: e-mail consent needs the customer's e-mail address, "
                "which the hub does not know, and SMS consent a phone number");
        return TS_ERR_INVAL;
    }
    return TS_OK;
}

/* A redeemed offer (offers.c's Coupon Applied) -> one "Redeemed Coupon". */
static enum ts_err map_coupon(const struct ts_sink_event *e, const json_t *p,
                              struct ts_sink_items *out, char *err, size_t errsz)
{
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
    const char *code = json_string_value(json_object_get(p, "coupon_id"));
    if (!code) {
        ts_errf(err, errsz, "a redeemed offer without coupon_id");
        return TS_ERR_INVAL;
    }
    json_t *props = json_pack("{s:s,s:s?,s:s?,s:s?,s:s?}", "CouponCode", code, "CouponName",
                              json_string_value(json_object_get(p, "coupon_name")), "OrderId",
                              json_string_value(json_object_get(p, "order_id")), "Store",
                              json_string_value(json_object_get(tl, "store")), "Terminal",
                              json_string_value(json_object_get(tl, "terminal")));
    enum ts_err rc =
        ts_sink_items_add(out, entry(e, "Redeemed Coupon", props, 0, NULL, e->id), e->id);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

static enum ts_err map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                       char *err, size_t errsz)
{
    (void)state;
    const json_t *p = ts_sink_props(e);
    if (e->kind == TS_SINK_CONSENT && e->profile)
        return map_consent(e, out, err, errsz);
    if (!p || !e->profile) {
        ts_errf(err, errsz, "no order properties or no profile");
        return TS_ERR_INVAL;
    }
    if (e->kind == TS_SINK_RETURN)
        return map_refund(e, p, out, err, errsz);
    if (e->kind == TS_SINK_COUPON)
        return map_coupon(e, p, out, err, errsz);
    const char *order = json_string_value(json_object_get(p, "order_id"));
    const char *cur = json_string_value(json_object_get(p, "currency"));
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
    json_t *products = json_object_get(p, "products");
    json_t *names = json_array(), *lines = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(products, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        if (name)
            json_array_append_new(names, json_string(name));
        json_array_append(lines, it);
    }
    json_t *po = json_pack("{s:s?,s:o,s:o,s:s?,s:s?}", "OrderId", order, "ItemNames", names,
                           "Items", lines, "Store", json_string_value(json_object_get(tl, "store")),
                           "Terminal", json_string_value(json_object_get(tl, "terminal")));
    double total = json_number_value(json_object_get(p, "total"));
    enum ts_err rc = ts_sink_items_add(out, entry(e, "Placed Order", po, total, cur, e->id), e->id);
    json_array_foreach(products, i, it)
    {
        if (rc != TS_OK)
            break;
        char uid[160];
        snprintf(uid, sizeof uid, "%s:%zu", e->id, i); /* unique per line, stable */
        const char *pid = json_string_value(json_object_get(it, "product_id"));
        json_t *q = json_object_get(it, "quantity");
        double price = json_number_value(json_object_get(it, "price"));
        double qty = json_is_number(q) ? json_number_value(q) : 1;
        json_t *pp =
            json_pack("{s:s?,s:s?,s:s?,s:f,s:f,s:s?}", "OrderId", order, "ProductID", pid, "SKU",
                      json_string_value(json_object_get(it, "sku")), "Quantity", qty, "ItemPrice",
                      price, "ProductName", json_string_value(json_object_get(it, "name")));
        rc = ts_sink_items_add(out, entry(e, "Ordered Product", pp, price * qty, cur, uid), uid);
    }
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

/* The endpoint of an item: a consent item's own route, else the events'. */
static enum route route_of(const struct ts_sink_item *it)
{
    if (it->kind != TS_SINK_CONSENT)
        return R_EVENTS;
    json_t *j = json_loadb(it->json, it->len, 0, NULL);
    const char *r = json_string_value(json_object_get(j, "route"));
    enum route out = R_EVENTS;
    for (size_t i = 1; r && i < sizeof route_names / sizeof route_names[0]; i++)
        if (strcmp(r, route_names[i]) == 0)
            out = (enum route)i;
    json_decref(j);
    return out;
}

/* One request per endpoint; Create or Update Profile takes one profile. */
/* One request per endpoint; Create or Update Profile takes one profile and
 * an unsubscribe job MAX_UNSUBSCRIBE. The forwarder asks for each next
 * item of a batch in turn, so a batch is counted from its first two items'
 * keys (a new first item, or the same second one again, starts a new
 * count; a miscount can only cut a batch early). */
static bool together(void *state, const struct ts_sink_item *a, const struct ts_sink_item *b)
{
    struct klaviyo *k = state;
    enum route r = route_of(a);
    if (r == R_PROFILE || r != route_of(b))
        return false;
    if (r != R_UNSUBSCRIBE)
        return true;
    if (strcmp(k->first, a->dedup) != 0 || strcmp(k->second, b->dedup) == 0) {
        ts_strlcpy(k->first, a->dedup, sizeof k->first);
        ts_strlcpy(k->second, b->dedup, sizeof k->second);
        k->taken = 1;
    }
    return ++k->taken <= MAX_UNSUBSCRIBE;
}

/* The "data" elements of consent items, joined by ','. */
static enum ts_err join_data(const struct ts_sink_item *const *items, size_t n, ts_buf *body)
{
    enum ts_err rc = TS_OK;
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        json_t *j = json_loadb(items[i]->json, items[i]->len, 0, NULL);
        char *d = j ? json_dumps(json_object_get(j, "data"), JSON_COMPACT) : NULL;
        rc = d ? ts_buf_printf(body, "%s%s", i ? "," : "", d) : TS_ERR_NOMEM;
        free(d);
        json_decref(j);
    }
    return rc;
}

static enum ts_err build(void *state, const struct ts_sink_item *const *items, size_t n,
                         struct ts_sink_request *req, char *err, size_t errsz)
{
    struct klaviyo *k = state;
    enum route r = route_of(items[0]);
    snprintf(req->content_type, sizeof req->content_type, "application/vnd.api+json");
    enum ts_err rc = ts_buf_puts(&req->headers, k->headers);
    if (r == R_EVENTS) {
        snprintf(req->path, sizeof req->path, "/api/event-bulk-create-jobs");
        if (rc == TS_OK)
            rc = ts_sink_join(items, n,
                              "{\"data\":{\"type\":\"event-bulk-create-job\",\"attributes\":"
                              "{\"events-bulk-create\":{\"data\":[",
                              "]}}}}", &req->body);
    } else if (r == R_PROFILE) {
        snprintf(req->path, sizeof req->path, "/api/profile-import");
        if (rc == TS_OK && !(rc = ts_buf_puts(&req->body, "{\"data\":")) &&
            !(rc = join_data(items, 1, &req->body)))
            rc = ts_buf_puts(&req->body, "}");
    } else {
        bool sub = r == R_SUBSCRIBE;
        snprintf(req->path, sizeof req->path, "/api/profile-subscription-bulk-%s-jobs",
                 sub ? "create" : "delete");
        if (rc == TS_OK)
            rc = ts_buf_printf(&req->body,
                               "{\"data\":{\"type\":\"profile-subscription-bulk-%s-job\","
                               "\"attributes\":{%s\"profiles\":{\"data\":[",
                               sub ? "create" : "delete",
                               sub ? "\"custom_source\":\"tillside: in store\"," : "");
        if (rc == TS_OK && !(rc = join_data(items, n, &req->body)))
            rc = ts_buf_puts(&req->body, "]}}");
        if (rc == TS_OK && k->list_id[0])
            rc = ts_buf_printf(&req->body,
                               ",\"relationships\":{\"list\":{\"data\":{\"type\":\"list\","
                               "\"id\":\"%s\"}}}",
                               k->list_id);
        if (rc == TS_OK)
            rc = ts_buf_puts(&req->body, "}}");
    }
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

static enum ts_err auth(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                        int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz)
{
    (void)state, (void)c, (void)f, (void)now_ms, (void)err, (void)errsz;
    out->headers[0] = '\0'; /* the key travels in build()'s headers */
    return TS_OK;
}

static enum ts_sink_verdict parse(void *state, const struct ts_sink_answer *a,
                                  const struct ts_sink_item *const *items, size_t n,
                                  struct ts_sink_result *r)
{
    (void)state, (void)items;
    enum ts_sink_verdict v = ts_sink_status_verdict(a->status, n);
    if (v == TS_SINK_AUTH)
        v = TS_SINK_RETRY; /* a private key: no refresh, retried until fixed */
    if (v != TS_SINK_OK)
        ts_sink_reason(a, r[0].reason, sizeof r[0].reason);
    return v;
}

static void rate(void *state, const struct ts_sink_answer *a, struct ts_sink_rate_hint *h)
{
    (void)state;
    ts_sink_rate_headers(a, "RateLimit-", false, h);
}

const struct ts_sink_vendor ts_sink_klaviyo = {
    .type = "klaviyo",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = false, /* an event needs a profile identifier */
    .limits = {.max_items = 1000,
               .max_bytes = 4900u * 1024u, /* 5 MB, with room */
               .max_item_bytes = 100u * 1024u,
               .rate = 150.0 / 60.0, /* steady 150/m */
               .max_in_flight = 2,
               .burst = 10}, /* burst 10/s */
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
    .together = together,
};
