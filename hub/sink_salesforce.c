/*
 * Salesforce Data Cloud: purchases as records of one object of an
 * Ingestion API connector, sent by streaming insert.
 *
 * Auth, two steps, both in auth() on the forwarder's fetch client:
 *   1. OAuth 2.0 client credentials at the org's My Domain, [sink.NAME]
 *      login_url (default: url; the forwarder needs url for every sink)
 * (https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm):
 *      POST {login_url}/services/oauth2/token, form grant_type=
 *      client_credentials, client_id, client_secret -> {access_token,
 *      instance_url}: the core token.
 *   2. The Data Cloud token exchange
 * (https://developer.salesforce.com/docs/data/data-cloud-ref/guide/c360a-api-get-started.html,
 *      "Exchanging Salesforce Access Token for Data Cloud Access Token"):
 *      POST {instance_url}/services/a360/token, form grant_type=
 *      urn:salesforce:grant-type:external:cdp, subject_token=<core token>,
 *      subject_token_type=urn:ietf:params:oauth:token-type:access_token ->
 *      {access_token, instance_url, token_type "Bearer", expires_in}; the
 *      instance_url there is the Data Cloud tenant where the Ingestion API
 *      is served (often a bare host name: https:// is added).
 *   The token is renewed a minute before expires_in runs out and once after
 *   a 401 (the forwarder calls auth() again, then retries once).
 * Insert
 * (https://developer.salesforce.com/docs/atlas.en-us.c360a_api.meta/c360a_api/c360a_api_insert_records.htm):
 *   POST {tenant}/api/v1/ingest/sources/{source}/{object} with
 *   {"data": [records]}; 202 {"accepted": true}; "All fields defined in the
 *   schema must be present in the request payload ... send in a blank
 *   value". Records are processed asynchronously.
 * Limits
 * (https://developer.salesforce.com/docs/atlas.en-us.c360a_api.meta/c360a_api/c360a_api_streaming_insert_example.htm):
 *   "The payload must be less than 200 KB" per request. dateTime fields in
 *   yyyy-MM-ddTHH:mm:ss.SSSZ (Get Started, "Valid Date Format in Records").
 *   Get Started: on HTTP 429 the app backs off and retries. A 403 (the
 *   connected app or user lacks a permission) is retried too: nothing is
 *   dead-lettered for a setting. The requests
 *   per second the tenant allows is not stated in the pages we could read;
 *   the default below (25/s) is a guess that [sink.NAME] rate replaces.
 * Mapping: one record per purchase line (the object's primary key is
 *   line_id = "<messageId>:<line>", so Data Cloud's upsert on the primary
 *   key makes a resend harmless), the order's fields repeated on each line:
 *   line_id, message_id, order_id, customer_id, email, store_id, terminal,
 *   product_id, sku, product_name, quantity, price, line_total,
 *   order_total, currency, purchased_at, event_type ("purchase", or
 *   "return": a till's return as lines of the refunded order_id, amounts
 *   positive). A purchase without lines is one
 *   record with line 0 and blank product fields. docs/OPERATIONS.md gives
 *   the object's schema for the connector. Anonymous purchases are sent
 *   (customer_id blank): the data lake keeps them; [sink.NAME] anonymous =
 *   false stops that.
 * Consent and redeemed offers: records of their own objects of the same
 *   connector (the Ingestion API takes one object per request, its name in
 *   the path, so together() keeps each request to one object), when
 *   [sink.NAME] consent_object / coupon_object name them; docs/OPERATIONS.md
 *   gives their schemas. Without the key the kind is not in the sink's
 *   default send, and send = consent (or coupons) without it is refused at
 *   the send line. A consent record (primary key consent_id = the stored
 *   message id): consent_id, customer_id, email, store_id, terminal,
 *   associate, personalization, email_consent, sms_consent ("granted",
 *   "withdrawn", or blank when the choice was not asked), recorded_at. A
 *   redemption record (primary key redemption_id = the stored message id,
 *   one per customer and code): redemption_id, coupon_code, coupon_name,
 *   order_id, customer_id, email, store_id, terminal, redeemed_at.
 */
#include "sink_line.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "less than 200 KB"; a record alone in {"data":[...]} (12 bytes more) must fit it */
#define DC_MAX_BYTES (200u * 1000u - 1u)
#define RENEW_EARLY_MS 60000

static const char *const required[] = {"client_id", "client_secret", "source", "object", NULL};
static const char *const options[] = {"login_url", "consent_object", "coupon_object", NULL};
static const char *const secrets[] = {"client_id", "client_secret", NULL};

struct dc_state {
    char login_url[512];
    char client_id[256], client_secret[256];
    char path[400];         /* purchases and returns: [sink.NAME] object */
    char consent_path[400]; /* consent_object's; "" = none */
    char coupon_path[400];  /* coupon_object's; "" = none */
};

/* An API name of a connector or object: letters, digits, '_'. */
static bool api_name(const char *s)
{
    return *s && strlen(s) < 120 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
               strlen(s);
}

static enum ts_err dc_init(const struct ts_sink_conf *c, void **state, char *err, size_t errsz)
{
    const char *login = ts_sink_conf_get(c, "login_url", c->url); /* default: url */
    const char *id = ts_sink_conf_get(c, "client_id", "");
    const char *sec = ts_sink_conf_get(c, "client_secret", "");
    const char *src = ts_sink_conf_get(c, "source", "");
    const char *obj = ts_sink_conf_get(c, "object", "");
    if (strncmp(login, "https://", 8) != 0 || strlen(login) >= 500) {
        ts_errf(err, errsz, "[sink.%s] login_url: expected https://<My Domain>", c->name);
        return TS_ERR_INVAL;
    }
    if (!*id || !*sec || strlen(id) >= 256 || strlen(sec) >= 256) {
        ts_errf(err, errsz, "[sink.%s] client_id and client_secret: required", c->name);
        return TS_ERR_INVAL;
    }
    if (!api_name(src) || !api_name(obj)) {
        ts_errf(err, errsz, "[sink.%s] source and object: the connector's API names", c->name);
        return TS_ERR_INVAL;
    }
    const char *cobj = ts_sink_conf_get(c, "consent_object", "");
    const char *kobj = ts_sink_conf_get(c, "coupon_object", "");
    if ((*cobj && !api_name(cobj)) || (*kobj && !api_name(kobj))) {
        ts_errf(err, errsz, "[sink.%s] %s: the connector's API name of an object", c->name,
                *cobj && !api_name(cobj) ? "consent_object" : "coupon_object");
        return TS_ERR_INVAL;
    }
    if (((c->send & TS_SINK_CONSENT) && !*cobj) || ((c->send & TS_SINK_COUPON) && !*kobj)) {
        bool consent = (c->send & TS_SINK_CONSENT) && !*cobj;
        ts_errf(err, errsz, "[sink.%s] send: %s needs %s (the Data Cloud object for its records)",
                c->name, consent ? "consent" : "coupons",
                consent ? "consent_object" : "coupon_object");
        return TS_ERR_INVAL;
    }
    struct dc_state *s = calloc(1, sizeof *s);
    if (!s) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    ts_strlcpy(s->login_url, login, sizeof s->login_url);
    size_t n = strlen(s->login_url);
    while (n > 0 && s->login_url[n - 1] == '/')
        s->login_url[--n] = '\0';
    ts_strlcpy(s->client_id, id, sizeof s->client_id);
    ts_strlcpy(s->client_secret, sec, sizeof s->client_secret);
    snprintf(s->path, sizeof s->path, "/api/v1/ingest/sources/%s/%s", src, obj);
    if (*cobj)
        snprintf(s->consent_path, sizeof s->consent_path, "/api/v1/ingest/sources/%s/%s", src,
                 cobj);
    if (*kobj)
        snprintf(s->coupon_path, sizeof s->coupon_path, "/api/v1/ingest/sources/%s/%s", src, kobj);
    *state = s;
    return TS_OK;
}

static void dc_fini(void *state)
{
    struct dc_state *s = state;
    if (s)
        memset(s->client_secret, 0, sizeof s->client_secret);
    free(s);
}

static json_t *text_or_blank(const char *s)
{
    return json_string(s ? s : "");
}

/* What a record's line is: "purchase", or "return" for a till's return
 * (order_id the refunded sale, the amounts what went back): the type field
 * of the one configured object. */
static const char *event_type(const struct ts_sink_event *e)
{
    return e->kind == TS_SINK_RETURN ? "return" : "purchase";
}

/* A consent trait of the stored identify: "granted", "withdrawn" or "". */
static json_t *choice(const struct ts_sink_event *e, const char *trait)
{
    const json_t *v = json_object_get(json_object_get(e->event, "traits"), trait);
    return json_string(!json_is_boolean(v) ? "" : json_is_true(v) ? "granted" : "withdrawn");
}

/* The member of the stored event's context.tillside (or properties), or "". */
static json_t *member(const struct ts_sink_event *e, const char *obj, const char *key)
{
    const json_t *o = strcmp(obj, "tillside") == 0
                          ? json_object_get(json_object_get(e->event, "context"), "tillside")
                          : json_object_get(e->event, obj);
    return text_or_blank(json_string_value(json_object_get(o, key)));
}

/* A consent (a stored identify) or a redeemed offer: one record. */
static enum ts_err dc_map_one(const struct ts_sink_event *e, struct ts_sink_items *out, char *err,
                              size_t errsz)
{
    char at[40];
    ts_iso8601(e->at_ms, at, sizeof at);
    json_t *r = json_object();
    if (!r)
        return TS_ERR_NOMEM;
    bool consent = e->kind == TS_SINK_CONSENT;
    json_object_set_new(r, consent ? "consent_id" : "redemption_id", json_string(e->id));
    if (!consent) {
        const char *code = json_string_value(
            json_object_get(json_object_get(e->event, "properties"), "coupon_id"));
        if (!code) {
            json_decref(r);
            ts_errf(err, errsz, "a redeemed offer without coupon_id");
            return TS_ERR_INVAL;
        }
        json_object_set_new(r, "coupon_code", json_string(code));
        json_object_set_new(r, "coupon_name", member(e, "properties", "coupon_name"));
        json_object_set_new(r, "order_id", member(e, "properties", "order_id"));
    }
    json_object_set_new(r, "customer_id", text_or_blank(e->user_id));
    json_object_set_new(r, "email", text_or_blank(e->email));
    json_object_set_new(r, "store_id", member(e, "tillside", "store"));
    json_object_set_new(r, "terminal", member(e, "tillside", "terminal"));
    if (consent) {
        json_object_set_new(r, "associate", member(e, "tillside", "associate"));
        json_object_set_new(r, "personalization", choice(e, "personalization_consent"));
        json_object_set_new(r, "email_consent", choice(e, "email_consent"));
        json_object_set_new(r, "sms_consent", choice(e, "sms_consent"));
    }
    json_object_set_new(r, consent ? "recorded_at" : "redeemed_at", json_string(at));
    return ts_sink_items_add(out, r, e->id);
}

static enum ts_err dc_map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                          char *err, size_t errsz)
{
    (void)state;
    if (e->kind == TS_SINK_CONSENT || e->kind == TS_SINK_COUPON)
        return dc_map_one(e, out, err, errsz);
    struct ts_sink_order o;
    if (ts_sink_order_of(e, &o, err, errsz) != TS_OK)
        return TS_ERR_INVAL;
    char at[40];
    ts_iso8601(e->at_ms, at, sizeof at); /* yyyy-MM-ddTHH:mm:ss.SSSZ */
    size_t n = o.nlines ? o.nlines : 1;
    for (size_t i = 0; i < n; i++) {
        struct ts_sink_line l = {0};
        if (o.nlines && ts_sink_line_at(e, i, &l, err, errsz) != TS_OK)
            return TS_ERR_INVAL;
        char key[160];
        snprintf(key, sizeof key, "%s:%zu", e->id, o.nlines ? i + 1 : 0);
        json_t *r = json_object();
        if (!r)
            return TS_ERR_NOMEM;
        json_object_set_new(r, "line_id", json_string(key));
        json_object_set_new(r, "message_id", json_string(e->id));
        json_object_set_new(r, "order_id", json_string(o.order_id));
        json_object_set_new(r, "customer_id", text_or_blank(e->user_id));
        json_object_set_new(r, "email", text_or_blank(e->email));
        json_object_set_new(r, "store_id", text_or_blank(o.store));
        json_object_set_new(r, "terminal", text_or_blank(o.terminal));
        json_object_set_new(r, "product_id", text_or_blank(l.product_id));
        json_object_set_new(r, "sku", text_or_blank(l.sku));
        json_object_set_new(r, "product_name", text_or_blank(l.name));
        json_object_set_new(r, "quantity", json_real(l.quantity));
        json_object_set_new(r, "price", json_real(l.price));
        json_object_set_new(r, "line_total", json_real(l.price * l.quantity));
        json_object_set_new(r, "order_total", json_real(o.total));
        json_object_set_new(r, "currency", text_or_blank(o.currency));
        json_object_set_new(r, "purchased_at", json_string(at));
        json_object_set_new(r, "event_type", json_string(event_type(e)));
        enum ts_err rc = ts_sink_items_add(out, r, key);
        if (rc)
            return rc;
    }
    return TS_OK;
}

/* The ingestion path of an item of kind. */
static const char *object_path(const struct dc_state *s, int kind)
{
    return kind == TS_SINK_CONSENT  ? s->consent_path
           : kind == TS_SINK_COUPON ? s->coupon_path
                                    : s->path;
}

static enum ts_err dc_build(void *state, const struct ts_sink_item *const *items, size_t n,
                            struct ts_sink_request *req, char *err, size_t errsz)
{
    struct dc_state *s = state;
    (void)err, (void)errsz;
    ts_strlcpy(req->path, object_path(s, items[0]->kind), sizeof req->path);
    return ts_sink_join(items, n, "{\"data\":[", "]}", &req->body);
}

/* One object per request: purchases and returns share theirs. */
static bool dc_together(void *state, const struct ts_sink_item *a, const struct ts_sink_item *b)
{
    return object_path(state, a->kind) == object_path(state, b->kind);
}

/* Consent only with consent_object, redeemed offers only with coupon_object. */
static unsigned dc_default_kinds(const struct ts_sink_conf *c)
{
    unsigned k = TS_SINK_PURCHASE | TS_SINK_RETURN;
    if (*ts_sink_conf_get(c, "consent_object", ""))
        k |= TS_SINK_CONSENT;
    if (*ts_sink_conf_get(c, "coupon_object", ""))
        k |= TS_SINK_COUPON;
    return k;
}

/* application/x-www-form-urlencoded "k=v" appended to b ('&' first unless empty). */
static enum ts_err form(ts_buf *b, const char *k, const char *v)
{
    enum ts_err rc = ts_buf_printf(b, "%s%s=", b->len ? "&" : "", k);
    for (const unsigned char *p = (const unsigned char *)v; rc == TS_OK && *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~')
            rc = ts_buf_append(b, p, 1);
        else
            rc = ts_buf_printf(b, "%%%02X", *p);
    }
    return rc;
}

/* POSTs the form to url and returns its JSON answer (or NULL with err). */
static json_t *post_form(struct ts_sink_fetch *f, const char *url, const ts_buf *body,
                         const char *what, char *err, size_t errsz)
{
    struct ts_sink_fetch_resp r = {0};
    enum ts_err rc =
        f->request(f, "POST", url, "Accept: application/json\r\n",
                   "application/x-www-form-urlencoded", body->data, body->len, &r, err, errsz);
    json_t *j = NULL;
    if (rc == TS_OK && r.status == 200)
        j = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    if (rc == TS_OK && !j) {
        char clean[120];
        ts_sanitize(r.body.data ? r.body.data : "", r.body.len < 100 ? r.body.len : 100, clean,
                    sizeof clean, ' ');
        ts_errf(err, errsz, "%s: HTTP %d: %s", what, r.status, clean);
    }
    ts_sink_fetch_resp_free(&r);
    return j;
}

static enum ts_err dc_auth(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                           int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz)
{
    struct dc_state *s = state;
    (void)c;
    char url[600];
    ts_buf b = {0};
    enum ts_err rc = form(&b, "grant_type", "client_credentials");
    if (rc == TS_OK && !(rc = form(&b, "client_id", s->client_id)))
        rc = form(&b, "client_secret", s->client_secret);
    snprintf(url, sizeof url, "%s/services/oauth2/token", s->login_url);
    json_t *core = rc == TS_OK ? post_form(f, url, &b, "OAuth token", err, errsz) : NULL;
    const char *tok = json_string_value(json_object_get(core, "access_token"));
    const char *inst = json_string_value(json_object_get(core, "instance_url"));
    json_t *dc = NULL;
    if (core && (!tok || !inst || strncmp(inst, "https://", 8) != 0)) {
        ts_errf(err, errsz, "OAuth token: answer without access_token or https instance_url");
    } else if (core) {
        ts_buf_reset(&b);
        rc = form(&b, "grant_type", "urn:salesforce:grant-type:external:cdp");
        if (rc == TS_OK && !(rc = form(&b, "subject_token", tok)))
            rc = form(&b, "subject_token_type", "urn:ietf:params:oauth:token-type:access_token");
        snprintf(url, sizeof url, "%.500s/services/a360/token", inst);
        if (rc == TS_OK)
            dc = post_form(f, url, &b, "Data Cloud token exchange", err, errsz);
    }
    const char *dtok = json_string_value(json_object_get(dc, "access_token"));
    const char *tenant = json_string_value(json_object_get(dc, "instance_url"));
    json_t *exp = json_object_get(dc, "expires_in");
    enum ts_err out_rc = rc ? rc : TS_ERR_IO;
    if (dc && (!dtok || !tenant || !*tenant || strpbrk(dtok, "\r\n") || strlen(dtok) > 3800)) {
        ts_errf(err, errsz, "Data Cloud token exchange: answer without access_token/instance_url");
    } else if (dc) {
        snprintf(out->headers, sizeof out->headers, "Authorization: Bearer %s\r\n", dtok);
        snprintf(out->base_url, sizeof out->base_url, "%s%.490s",
                 strncmp(tenant, "https://", 8) == 0 ? "" : "https://", tenant);
        /* expires_in in seconds (a number, or a string in some answers) */
        double secs = json_is_number(exp)   ? json_number_value(exp)
                      : json_is_string(exp) ? atof(json_string_value(exp))
                                            : 7200;
        int64_t life = (int64_t)(secs * 1000);
        out->expires_ms = now_ms + (life > 2 * RENEW_EARLY_MS ? life - RENEW_EARLY_MS : life / 2);
        out_rc = TS_OK;
    }
    json_decref(core);
    json_decref(dc);
    ts_buf_free(&b);
    return out_rc;
}

static enum ts_sink_verdict dc_parse(void *state, const struct ts_sink_answer *a,
                                     const struct ts_sink_item *const *items, size_t n,
                                     struct ts_sink_result *results)
{
    (void)state, (void)items;
    enum ts_sink_verdict v = ts_sink_status_verdict_keyed(a->status, n);
    if (v != TS_SINK_OK)
        ts_sink_reason(a, results[0].reason, sizeof results[0].reason);
    return v;
}

const struct ts_sink_vendor ts_sink_salesforce = {
    .type = "salesforce",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = true,
    .limits = {.max_items = 0,
               .max_bytes = DC_MAX_BYTES,
               .max_item_bytes = DC_MAX_BYTES - 12,
               .rate = 25,
               .max_in_flight = 4,
               .burst = 25},
    .required = required,
    .secrets = secrets,
    .options = options,
    .init = dc_init,
    .fini = dc_fini,
    .map = dc_map,
    .build = dc_build,
    .auth = dc_auth,
    .parse = dc_parse,
    .rate = NULL,
    .together = dc_together,
    .default_kinds = dc_default_kinds,
};
