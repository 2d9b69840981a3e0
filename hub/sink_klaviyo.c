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
static const char *const options[] = {"revision", NULL};

#define DEFAULT_REVISION "2025-01-15"

struct klaviyo {
    char headers[800];
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
 * through its value). OrderId names the refunded sale; unique_id is the
 * return's own id, so two partial refunds of one order are two events.
 */
static enum ts_err map_refund(const struct ts_sink_event *e, const json_t *p,
                              struct ts_sink_items *out, char *err, size_t errsz)
{
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
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
        json_pack("{s:s?,s:o,s:o,s:s?,s:s?,s:s?}", "OrderId",
                  json_string_value(json_object_get(p, "order_id")), "ItemNames", names, "Items",
                  lines, "Reason", json_string_value(json_object_get(p, "reason")), "Store",
                  json_string_value(json_object_get(tl, "store")), "Terminal",
                  json_string_value(json_object_get(tl, "terminal")));
    enum ts_err rc = ts_sink_items_add(
        out,
        entry(e, "Refunded Order", props, json_number_value(json_object_get(p, "total")),
              json_string_value(json_object_get(p, "currency")), e->id),
        e->id);
    if (rc != TS_OK)
        ts_errf(err, errsz, "out of memory");
    return rc;
}

static enum ts_err map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                       char *err, size_t errsz)
{
    (void)state;
    const json_t *p = ts_sink_props(e);
    if (!p || !e->profile) {
        ts_errf(err, errsz, "no order properties or no profile");
        return TS_ERR_INVAL;
    }
    if (e->kind == TS_SINK_RETURN)
        return map_refund(e, p, out, err, errsz);
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

static enum ts_err build(void *state, const struct ts_sink_item *const *items, size_t n,
                         struct ts_sink_request *req, char *err, size_t errsz)
{
    struct klaviyo *k = state;
    snprintf(req->path, sizeof req->path, "/api/event-bulk-create-jobs");
    snprintf(req->content_type, sizeof req->content_type, "application/vnd.api+json");
    if (ts_buf_puts(&req->headers, k->headers) != TS_OK ||
        ts_sink_join(items, n,
                     "{\"data\":{\"type\":\"event-bulk-create-job\",\"attributes\":"
                     "{\"events-bulk-create\":{\"data\":[",
                     "]}}}}", &req->body) != TS_OK) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    return TS_OK;
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
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN,
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
};
