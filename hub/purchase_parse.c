/*
 * Parsing and checking the body of POST /v1/purchases: agent batches of
 * Segment "Order Completed" events (docs/PROTOCOL.md).
 *
 * Validation is per event: a bad event is answered in "rejected" with its
 * reason and the rest of the batch is stored, so one malformed receipt never
 * blocks a terminal's outbox. Only a body that is not a batch at all is a 400.
 */
#include "purchases.h"
#include "guard.h"

#include <jansson.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ts_hub_purchase_member(const void *obj, const char *name, size_t max)
{
    json_t *o = (json_t *)obj;
    const char *v = json_string_value(json_object_get(o, name));
    if (!v)
        return NULL;
    size_t n = json_string_length(json_object_get(o, name));
    if (n == 0 || n > max || strlen(v) != n)
        return NULL; /* empty, too long, or an embedded NUL */
    for (const unsigned char *c = (const unsigned char *)v; *c; c++)
        if (*c < 0x20)
            return NULL;
    return v;
}

static bool num_member(json_t *o, const char *name, double *out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* Why an event is refused, into p->error; false when it is fine. */
static bool reject(struct ts_hub_purchase *p, const char *fmt, const char *arg)
{
    p->status = TS_HUB_P_REJECTED;
    snprintf(p->error, sizeof p->error, fmt, arg ? arg : "");
    return true;
}

static bool bad_products(struct ts_hub_purchase *p, json_t *products)
{
    size_t n = json_array_size(products);
    if (!json_is_array(products) || n == 0)
        return reject(p, "properties.products must list at least one product%s", NULL);
    if (n > TS_HUB_PURCHASE_MAX_PRODUCTS)
        return reject(p, "properties.products has more than 500 lines%s", NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(products, i);
        char where[48];
        double d;
        snprintf(where, sizeof where, "products[%zu]", i);
        if (!json_is_object(it))
            return reject(p, "properties.%s is not an object", where);
        if (!ts_hub_purchase_member(it, "product_id", TS_SEG_MAX_ID) &&
            !ts_hub_purchase_member(it, "sku", TS_SEG_MAX_ID))
            return reject(p, "properties.%s needs a product_id or sku", where);
        json_t *q = json_object_get(it, "quantity");
        if (q &&
            (!json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > 1000000))
            return reject(p, "properties.%s.quantity must be a whole number from 1", where);
        if (json_object_get(it, "price") && (!num_member(it, "price", &d) || d < 0 || d > 1e12))
            return reject(p, "properties.%s.price must be a number >= 0", where);
    }
    return false;
}

static atomic_ullong n_card_data;

unsigned long long ts_hub_purchases_card_data(void)
{
    return atomic_load(&n_card_data);
}

/*
 * The payment card guard's second line (the agent's is drivers/guard.c on the
 * body): terminals that predate it, or anything else holding a terminal
 * certificate, must not get a card number into the purchases table or
 * upstream. Free text is masked; an identifier holding one refuses the event
 * (masking would change what it names). true when the event is refused.
 */
static bool card_data(struct ts_hub_purchase *p, json_t *e, const char *store)
{
    static const char *const idents[] = {"messageId",
                                         "anonymousId",
                                         "userId",
                                         "properties.order_id",
                                         "properties.products[].sku",
                                         "properties.products[].product_id",
                                         "context.tillside.store",
                                         "context.tillside.terminal",
                                         "context.tillside.receipt",
                                         "context.tillside.barcode",
                                         "context.tillside.cid",
                                         "properties.return_id",
                                         "context.tillside.original_receipt",
                                         "context.tillside.associate",
                                         NULL};
    struct ts_guard_json_report rep;
    json_t *refused = json_array();
    int rc = ts_guard_json(NULL, e, idents, refused, &rep);
    /* The answer names the event by its messageId, unless that is the card
     * number. */
    bool mid_ok = true;
    size_t i;
    json_t *f;
    json_array_foreach(refused, i, f) mid_ok &= strcmp(json_string_value(f), "messageId") != 0;
    json_decref(refused);
    if (rc == TS_OK && !rep.refused && !rep.masked)
        return false;
    atomic_fetch_add(&n_card_data, 1);
    if (rc == TS_OK && !rep.refused) {
        TS_WARN("purchases", "store %s: payment card number masked in %s (…%s)", store, rep.field,
                rep.last4);
        return false;
    }
    TS_WARN("purchases", "store %s: event refused: payment card data in %s (…%s)", store, rep.field,
            rep.last4);
    if (mid_ok)
        p->message_id = ts_hub_purchase_member(e, "messageId", TS_SEG_MAX_ID);
    return reject(p, "payment card data in %.96s: refused (never stored or forwarded)", rep.field);
}

static int consent_trait(json_t *traits, const char *name)
{
    json_t *v = json_object_get(traits, name);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* A consent identify: its key, its customer and the choices. */
static bool bad_consent(struct ts_hub_purchase *p, json_t *e, json_t *tl)
{
    p->receipt = tl ? ts_hub_purchase_member(tl, "receipt", TS_SEG_MAX_ID) : NULL;
    if (!p->receipt || strncmp(p->receipt, "consent:", 8) != 0)
        return reject(p, "context.tillside.receipt must be the consent's key (consent:ID)%s", NULL);
    if (!p->cid)
        return reject(p, "context.tillside.cid (whose consent) missing%s", NULL);
    json_t *traits = json_object_get(e, "traits");
    if (!json_is_object(traits))
        return reject(p, "traits missing%s", NULL);
    p->personalization = consent_trait(traits, "personalization_consent");
    p->email_consent = consent_trait(traits, "email_consent");
    p->sms_consent = consent_trait(traits, "sms_consent");
    if (p->personalization < 0 && p->email_consent < 0 && p->sms_consent < 0)
        return reject(p,
                      "traits name no consent (personalization_consent, email_consent, "
                      "sms_consent)%s",
                      NULL);
    p->associate = ts_hub_purchase_member(tl, "associate", 64);
    p->currency = "";
    return false;
}

/* Checks one event and fills p from it; false when it is valid. */
static bool bad_event(struct ts_hub_purchase *p, json_t *e, const char *store, int64_t now_ms)
{
    if (!json_is_object(e))
        return reject(p, "event is not an object%s", NULL);
    if (card_data(p, e, store))
        return true;
    p->message_id = ts_hub_purchase_member(e, "messageId", TS_SEG_MAX_ID);
    if (!p->message_id)
        return reject(p, "messageId missing or not a string of 1..256 bytes%s", NULL);
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *name = json_string_value(json_object_get(e, "event"));
    if (type && strcmp(type, "identify") == 0)
        p->kind = TS_HUB_TILL_CONSENT;
    else if (!type || strcmp(type, "track") != 0)
        return reject(p, "type must be \"track\" or \"identify\"%s", NULL);
    else if (name && strcmp(name, "Order Completed") == 0)
        p->kind = TS_HUB_TILL_PURCHASE;
    else if (name && strcmp(name, "Order Refunded") == 0)
        p->kind = TS_HUB_TILL_RETURN;
    else
        return reject(p, "event must be \"Order Completed\" or \"Order Refunded\"%s", NULL);
    json_t *props = json_object_get(e, "properties");
    if (p->kind != TS_HUB_TILL_CONSENT && !json_is_object(props))
        return reject(p, "properties missing%s", NULL);
    json_t *ctx = json_object_get(e, "context");
    json_t *tl = json_is_object(ctx) ? json_object_get(ctx, "tillside") : NULL;
    if (tl && !json_is_object(tl))
        return reject(p, "context.tillside is not an object%s", NULL);
    /* A terminal records purchases of its own store only. */
    const char *st = tl ? json_string_value(json_object_get(tl, "store")) : NULL;
    if (st && strcmp(st, store) != 0)
        return reject(p, "context.tillside.store is not this terminal's store (%s)", store);
    p->store = store;
    p->terminal = tl ? ts_hub_purchase_member(tl, "terminal", TS_SEG_MAX_ID) : NULL;
    p->source = tl ? ts_hub_purchase_member(tl, "source", TS_SEG_MAX_ID) : NULL;
    p->barcode = tl ? ts_hub_purchase_member(tl, "barcode", TS_SEG_MAX_ID) : NULL;
    p->cid = tl ? ts_hub_purchase_member(tl, "cid", 64) : NULL;
    if (tl && json_object_get(tl, "cid") && !json_is_null(json_object_get(tl, "cid")) && !p->cid)
        return reject(p, "context.tillside.cid must be a card cid%s", NULL);
    if (p->kind == TS_HUB_TILL_CONSENT) {
        if (bad_consent(p, e, tl))
            return true;
        goto timestamp;
    }
    p->receipt = ts_hub_purchase_member(props, "order_id", TS_SEG_MAX_ID);
    if (!p->receipt)
        return reject(p, "properties.order_id (the receipt number) missing%s", NULL);
    const char *r2 = tl ? ts_hub_purchase_member(tl, "receipt", TS_SEG_MAX_ID) : NULL;
    if (p->kind == TS_HUB_TILL_RETURN) {
        /* The return's own key; order_id names the sale it refunds. */
        p->original = p->receipt;
        p->receipt = r2;
        p->barcode = NULL;
        if (!r2 || strncmp(r2, "return:", 7) != 0)
            return reject(p, "context.tillside.receipt must be the return's key (return:ID)%s",
                          NULL);
    } else if (r2 && strcmp(r2, p->receipt) != 0)
        return reject(p, "context.tillside.receipt differs from properties.order_id%s", NULL);
    p->currency = json_string_value(json_object_get(props, "currency"));
    if (!p->currency || strlen(p->currency) != 3 || p->currency[0] < 'A' || p->currency[0] > 'Z' ||
        p->currency[1] < 'A' || p->currency[1] > 'Z' || p->currency[2] < 'A' ||
        p->currency[2] > 'Z')
        return reject(p, "properties.currency must be 3 capital letters (ISO 4217)%s", NULL);
    if (!num_member(props, "total", &p->total) || p->total < 0 || p->total > 1e12)
        return reject(p, "properties.total must be a number >= 0%s", NULL);
    static const char *const optional[] = {"revenue", "tax", "discount"};
    for (size_t i = 0; i < 3; i++) {
        double d;
        if (json_object_get(props, optional[i]) && !num_member(props, optional[i], &d))
            return reject(p, "properties.%s must be a number", optional[i]);
    }
    if (bad_products(p, json_object_get(props, "products")))
        return true;
timestamp:
    p->at_ms = now_ms;
    json_t *ts = json_object_get(e, "originalTimestamp");
    if (!ts)
        ts = json_object_get(e, "timestamp");
    if (ts) {
        const char *t = json_string_value(ts);
        if (!t || !ts_hub_iso_shape(t) || ts_iso8601_parse(t, &p->at_ms) != TS_OK)
            return reject(p, "originalTimestamp is not an ISO-8601 time%s", NULL);
    }
    /* What goes upstream names the store even when the agent left it out. */
    if (!tl) {
        tl = json_object();
        if (!json_is_object(ctx)) {
            ctx = json_object();
            json_object_set_new(e, "context", ctx);
        }
        json_object_set_new(ctx, "tillside", tl);
    }
    if (!st)
        json_object_set_new(tl, "store", json_string(store));
    /* The text is what the purchases table keeps and upstream.c forwards,
     * so its size is the one that counts. */
    p->text = json_dumps(e, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!p->text || strlen(p->text) > TS_HUB_PURCHASE_MAX_EVENT) {
        free(p->text);
        p->text = NULL;
        return reject(p, "event larger than 32 KB%s", NULL);
    }
    p->event = e;
    return false;
}

enum ts_err ts_hub_purchases_parse(const char *body, size_t len, const char *store, int64_t now_ms,
                                   struct ts_hub_pbatch **out, char *err, size_t errsz)
{
    json_error_t je;
    *out = NULL;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        ts_errf(err, errsz, "body is not JSON: %s (line %d)", je.text, je.line);
        return TS_ERR_INVAL;
    }
    json_t *arr = json_object_get(root, "batch");
    if (!json_is_array(arr)) {
        json_decref(root);
        ts_errf(err, errsz, "body is not a batch: {\"batch\": [event, ...]} expected");
        return TS_ERR_INVAL;
    }
    struct ts_hub_pbatch *b = calloc(1, sizeof *b);
    size_t n = json_array_size(arr);
    if (!b || !(b->p = calloc(n ? n : 1, sizeof *b->p))) {
        free(b);
        json_decref(root);
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    b->root = root;
    b->n = n;
    for (size_t i = 0; i < n; i++)
        bad_event(&b->p[i], json_array_get(arr, i), store, now_ms);
    *out = b;
    return TS_OK;
}

void ts_hub_pbatch_free(struct ts_hub_pbatch *b)
{
    if (!b)
        return;
    json_decref(b->root);
    for (size_t i = 0; i < b->n; i++)
        free(b->p[i].text);
    free(b->p);
    free(b);
}
