/*
 * Bloomreach Engagement: purchases as tracked events through the batch
 * commands endpoint of the Tracking API.
 *
 * Reference: https://documentation.bloomreach.com/engagement/reference/batch-commands-2
 *   POST {url}/track/v2/projects/{project_token}/batch with
 *   {"commands": [{"name": "customers/events", "command_id": ..., "data":
 *   {"customer_ids": {...}, "event_type": ..., "timestamp": ...,
 *   "properties": {...}}}]}; "up to 50 commands in a batch".
 * Auth (https://documentation.bloomreach.com/engagement/reference/authentication):
 *   private access, HTTP Basic with the API key id and secret.
 * Mapping (https://documentation.bloomreach.com/engagement/docs/custom-events,
 *   "purchase" and "purchase_item"; and .../reference/tips-and-best-practices:
 *   "1x purchase + 4x purchase_item" in one batch): one purchase event with
 *   purchase_id, purchase_status, purchase_source_type "store",
 *   purchase_source_name, product_ids, product_list, total_price,
 *   total_quantity; then one purchase_item per line with the same purchase_id
 *   and product_id, title, price, quantity, total_price (a return: the same
 *   with purchase_status "refunded"). Each is one command,
 *   so a purchase is 1 + lines items and a batch of 50 carries several.
 * Customer: customer_ids {<customer_id key, default "registered">: profile};
 *   Bloomreach needs at least one id ("At least one id should be specified",
 *   .../reference/tracking-api-error-messages), so no anonymous events.
 * Answers (.../reference/tracking-api-error-messages): a batch refused as a
 *   whole is a 4xx with success false; an accepted batch is 200 with
 *   "results", one {"success": ..., "errors": [...]} per command in order.
 *   A command that failed is permanent (tips-and-best-practices: "HTTP 200
 *   with success = false ... Retrying will not help"); 429 and 5xx are
 *   retried, and so is 403 ("You do not have the necessary permissions ...
 *   allow required permissions"): a key to fix, not an item to drop.
 * Rate (https://documentation.bloomreach.com/engagement/docs/tracking-api-overview-2):
 *   6,000 requests per minute per IP address (100 per second); past it 429
 *   and the request's data is ignored, so a 429 is never an acknowledgement.
 * Dedup: Bloomreach has none: an acknowledged command is never sent again
 *   (the forwarder's rule for a vendor without a dedup key).
 * Consent at the till (https://documentation.bloomreach.com/engagement/docs/consent,
 *   "Tracking Consent": the event "has to be consent", with action "accept"
 *   or "reject", category "the ID of the consent category, as defined in
 *   project settings", timestamp, and valid_until, a Unix time or
 *   "unlimited", needed when granting): one consent command per choice made,
 *   in the same batch endpoint; the categories are [sink.NAME]
 *   consent_email, consent_sms and consent_personalization (defaults email,
 *   sms, personalization), a choice whose category is set to "" not sent.
 * A redeemed offer: the custom event coupon_redeemed (custom-events above:
 *   any event type with its properties) with coupon_id, coupon_name,
 *   order_id, store.
 */
#include "sink_line.h"
#include "sink_till.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const required[] = {"project_token", "key_id", "key_secret", NULL};
static const char *const secrets[] = {"key_id", "key_secret", NULL};
static const char *const options[] = {"customer_id", "consent_email", "consent_sms",
                                      "consent_personalization", NULL};

struct br_state {
    char path[400];
    char auth[600];
    char id_key[64]; /* the customer_ids key of the profile */
    /* the consent categories of e-mail, SMS and personalization; "" = not sent */
    char cat[3][64];
};

static enum ts_err br_init(const struct ts_sink_conf *c, void **state, char *err, size_t errsz)
{
    const char *tok = ts_sink_conf_get(c, "project_token", "");
    const char *id = ts_sink_conf_get(c, "key_id", "");
    const char *sec = ts_sink_conf_get(c, "key_secret", "");
    const char *idk = ts_sink_conf_get(c, "customer_id", "registered");
    if (!*tok || strspn(tok, "0123456789abcdefABCDEF-") != strlen(tok) || strlen(tok) > 64) {
        ts_errf(err, errsz, "[sink.%s] project_token: expected the project's token (hex, -)",
                c->name);
        return TS_ERR_INVAL;
    }
    if (!*id || !*sec || strpbrk(id, ":\r\n") || strpbrk(sec, "\r\n") || strlen(id) > 128 ||
        strlen(sec) > 200) {
        ts_errf(err, errsz, "[sink.%s] key_id and key_secret: required, one line each", c->name);
        return TS_ERR_INVAL;
    }
    if (!*idk || strlen(idk) >= 64 || strpbrk(idk, "\"\\\r\n")) {
        ts_errf(err, errsz, "[sink.%s] customer_id: expected the name of a customer id", c->name);
        return TS_ERR_INVAL;
    }
    struct br_state *s = calloc(1, sizeof *s);
    if (!s) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    snprintf(s->path, sizeof s->path, "/track/v2/projects/%s/batch", tok);
    char user[340], enc[480];
    snprintf(user, sizeof user, "%s:%s", id, sec);
    ts_base64_encode(user, strlen(user), enc, sizeof enc);
    snprintf(s->auth, sizeof s->auth, "Authorization: Basic %s\r\n", enc);
    ts_strlcpy(s->id_key, idk, sizeof s->id_key);
    static const char *const cat_key[3][2] = {{"consent_email", "email"},
                                              {"consent_sms", "sms"},
                                              {"consent_personalization", "personalization"}};
    for (int i = 0; i < 3; i++) {
        const char *v = ts_sink_conf_get(c, cat_key[i][0], cat_key[i][1]);
        if (strlen(v) >= sizeof s->cat[i] || strpbrk(v, "\"\\\r\n")) {
            free(s);
            ts_errf(err, errsz, "[sink.%s] %s: expected a consent category's id", c->name,
                    cat_key[i][0]);
            return TS_ERR_INVAL;
        }
        ts_strlcpy(s->cat[i], v, sizeof s->cat[i]);
    }
    *state = s;
    return TS_OK;
}

static void br_fini(void *state)
{
    free(state);
}

/* One customers/events command; command_id names the item in answers. */
static enum ts_err command(const struct br_state *s, const struct ts_sink_event *e,
                           const char *type, json_t *props, size_t k, struct ts_sink_items *out)
{
    char cid[192];
    snprintf(cid, sizeof cid, "%s:%zu", e->id, k);
    json_t *ids = json_object();
    if (ids)
        json_object_set_new(ids, s->id_key, json_string(e->profile));
    json_t *c = json_pack("{s:s,s:s,s:{s:o,s:s,s:f,s:o}}", "name", "customers/events", "command_id",
                          cid, "data", "customer_ids", ids, "event_type", type, "timestamp",
                          (double)e->at_ms / 1000.0, "properties", props);
    return ts_sink_items_add(out, c, NULL);
}

/* A till's return is the refunded sale's purchase (purchase_id: its
 * receipt) again, with purchase_status "refunded" and the amounts and lines
 * that went back (the custom-events page above: purchase_status says what
 * happened to the purchase). */
static const char *purchase_status(const struct ts_sink_event *e)
{
    return e->kind == TS_SINK_RETURN ? "refunded" : "success";
}

/* A consent choice: a consent command per channel asked (the header). */
static enum ts_err br_map_consent(const struct br_state *s, const struct ts_sink_event *e,
                                  struct ts_sink_items *out, char *err, size_t errsz)
{
    struct ts_sink_consent c;
    if (ts_sink_consent_of(e, &c, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    const int choice[3] = {c.email, c.sms, c.personalization};
    enum ts_err rc = TS_OK;
    size_t k = 0;
    for (size_t i = 0; rc == TS_OK && i < 3; i++) {
        if (choice[i] < 0 || !s->cat[i][0])
            continue;
        json_t *p = json_pack("{s:s,s:s,s:I}", "action", choice[i] ? "accept" : "reject",
                              "category", s->cat[i], "timestamp", (json_int_t)(e->at_ms / 1000));
        if (p && choice[i])
            json_object_set_new(p, "valid_until", json_string("unlimited"));
        if (p && c.store)
            json_object_set_new(p, "store", json_string(c.store));
        if (p)
            json_object_set_new(p, "source", json_string("pos"));
        rc = command(s, e, "consent", p, k++, out);
    }
    if (rc == TS_OK && k == 0) {
        ts_errf(err, errsz, "no consent category configured for the choices made");
        return TS_ERR_INVAL;
    }
    return rc;
}

static enum ts_err br_map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                          char *err, size_t errsz)
{
    struct br_state *s = state;
    if (!e->profile) {
        ts_errf(err, errsz, "no known customer: Bloomreach needs a customer id");
        return TS_ERR_INVAL;
    }
    if (e->kind == TS_SINK_CONSENT)
        return br_map_consent(s, e, out, err, errsz);
    if (e->kind == TS_SINK_COUPON) {
        struct ts_sink_coupon c;
        if (ts_sink_coupon_of(e, &c, err, errsz) != TS_OK)
            return TS_ERR_INVAL;
        return command(s, e, "coupon_redeemed", ts_sink_coupon_props(&c), 0, out);
    }
    struct ts_sink_order o;
    if (ts_sink_order_of(e, &o, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    struct ts_sink_line *lines = calloc(o.nlines ? o.nlines : 1, sizeof *lines);
    if (!lines)
        return TS_ERR_NOMEM;
    json_t *ids = json_array(), *list = json_array();
    double qty = 0;
    enum ts_err rc = TS_OK;
    for (size_t i = 0; rc == TS_OK && i < o.nlines; i++) {
        if ((rc = ts_sink_line_at(e, i, &lines[i], err, errsz)))
            break;
        qty += lines[i].quantity;
        if (json_array_append_new(ids, json_string(lines[i].product_id)) ||
            json_array_append_new(list, json_pack("{s:s,s:f}", "product_id", lines[i].product_id,
                                                  "quantity", lines[i].quantity)))
            rc = TS_ERR_NOMEM;
    }
    json_t *common = json_pack("{s:s,s:s,s:s}", "purchase_id", o.order_id, "purchase_status",
                               purchase_status(e), "purchase_source_type", "store");
    if (common && o.store)
        json_object_set_new(common, "purchase_source_name", json_string(o.store));
    if (common && o.currency)
        json_object_set_new(common, "currency", json_string(o.currency));
    if (rc != TS_OK || !ids || !list || !common) {
        json_decref(ids), json_decref(list), json_decref(common), free(lines);
        return rc ? rc : TS_ERR_NOMEM;
    }
    json_t *p = json_deep_copy(common);
    if (p && o.terminal)
        json_object_set_new(p, "terminal", json_string(o.terminal));
    json_object_set_new(p, "product_ids", ids);
    json_object_set_new(p, "product_list", list);
    json_object_set_new(p, "total_price", json_real(o.total));
    json_object_set_new(p, "total_quantity", json_real(qty));
    rc = command(s, e, "purchase", p, 0, out);
    for (size_t i = 0; rc == TS_OK && i < o.nlines; i++) {
        const struct ts_sink_line *l = &lines[i];
        json_t *q = json_deep_copy(common);
        json_object_set_new(q, "product_id", json_string(l->product_id));
        if (l->name)
            json_object_set_new(q, "title", json_string(l->name));
        if (l->sku)
            json_object_set_new(q, "sku", json_string(l->sku));
        json_object_set_new(q, "price", json_real(l->price));
        json_object_set_new(q, "quantity", json_real(l->quantity));
        json_object_set_new(q, "total_price", json_real(l->price * l->quantity));
        rc = command(s, e, "purchase_item", q, i + 1, out);
    }
    json_decref(common);
    free(lines);
    return rc;
}

static enum ts_err br_build(void *state, const struct ts_sink_item *const *items, size_t n,
                            struct ts_sink_request *req, char *err, size_t errsz)
{
    struct br_state *s = state;
    (void)err, (void)errsz;
    ts_strlcpy(req->path, s->path, sizeof req->path);
    return ts_sink_join(items, n, "{\"commands\":[", "]}", &req->body);
}

static enum ts_err br_auth(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                           int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz)
{
    struct br_state *s = state;
    (void)c, (void)f, (void)now_ms, (void)err, (void)errsz;
    ts_strlcpy(out->headers, s->auth, sizeof out->headers);
    out->expires_ms = 0;
    return TS_OK;
}

/* "command failed: <errors>" for a command's result. */
static void cmd_reason(const json_t *r, char *out, size_t outsz)
{
    char *t = json_dumps(json_object_get(r, "errors"), JSON_COMPACT);
    char clean[160];
    ts_sanitize(t ? t : "", t ? strlen(t) : 0, clean, sizeof clean, ' ');
    snprintf(out, outsz, "HTTP 200, command refused: %s", clean);
    free(t);
}

static enum ts_sink_verdict br_parse(void *state, const struct ts_sink_answer *a,
                                     const struct ts_sink_item *const *items, size_t n,
                                     struct ts_sink_result *results)
{
    (void)state, (void)items;
    enum ts_sink_verdict v = ts_sink_status_verdict_keyed(a->status, n);
    json_t *j = v == TS_SINK_OK ? json_loadb(a->body, a->len, 0, NULL) : NULL;
    json_t *rs = json_object_get(j, "results");
    if (v == TS_SINK_OK && !json_is_true(json_object_get(j, "success")))
        v = ts_sink_status_verdict(400, n); /* 200 with success false: the request is wrong */
    else if (v == TS_SINK_OK && !json_is_array(rs))
        v = TS_SINK_RETRY; /* not the documented answer: unknown whether it was stored */
    if (v != TS_SINK_OK) {
        ts_sink_reason(a, results[0].reason, sizeof results[0].reason);
        json_decref(j);
        return v;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(rs, i);
        results[i].reason[0] = '\0';
        if (json_is_true(json_object_get(r, "success"))) {
            results[i].v = TS_SINK_OK;
        } else if (r) {
            results[i].v = TS_SINK_DEAD;
            cmd_reason(r, results[i].reason, sizeof results[i].reason);
        } else {
            results[i].v = TS_SINK_RETRY; /* no result for it: send it again */
            snprintf(results[i].reason, sizeof results[i].reason, "no result for the command");
        }
    }
    json_decref(j);
    return TS_SINK_ITEMS;
}

const struct ts_sink_vendor ts_sink_bloomreach = {
    .type = "bloomreach",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = false,
    .limits = {.max_items = 50, .rate = 100, .burst = 100, .max_in_flight = 4}, /* no order */
    .required = required,
    .secrets = secrets,
    .options = options,
    .init = br_init,
    .fini = br_fini,
    .map = br_map,
    .build = br_build,
    .auth = br_auth,
    .parse = br_parse,
    .rate = NULL,
};
