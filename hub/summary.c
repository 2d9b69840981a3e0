/*
 * The customer card (docs/PROTOCOL.md "Customer card"): what the associate
 * sees when this customer is scanned. Pure functions of what the store
 * loaded, so the ranking rules can be tested without SQL.
 */
#include "hub.h"

#include <jansson.h>
#include <math.h>
#include <mbedtls/md.h>
#include <stdlib.h>
#include <string.h>

/* Views older than this add under 5 % of one fresh view to a score: not an
 * interest worth a line on the card any more (about 30 days). */
#define MIN_SCORE 0.05

enum ts_err ts_hub_cid(const struct ts_tenant_key *k, const char *internal_id, char out[33])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t ctx;
    uint8_t mac[32];
    char hex[65];
    mbedtls_md_init(&ctx);
    int rc = mbedtls_md_setup(&ctx, md, 1);
    if (rc == 0)
        rc = mbedtls_md_hmac_starts(&ctx, k->key, k->len);
    if (rc == 0)
        rc = mbedtls_md_hmac_update(&ctx, (const unsigned char *)"cid:", 4);
    if (rc == 0)
        rc = mbedtls_md_hmac_update(&ctx, (const unsigned char *)internal_id, strlen(internal_id));
    if (rc == 0)
        rc = mbedtls_md_hmac_finish(&ctx, mac);
    mbedtls_md_free(&ctx);
    if (rc != 0)
        return TS_ERR_INVAL;
    /* 128 bits is ample to tell a chain's customers apart and keeps the
     * reference short on screen and in logs. */
    ts_hex_encode(mac, 16, hex);
    memcpy(out, hex, 33);
    return TS_OK;
}

struct viewed {
    const char *product_id, *name;
    double score;
    long count;
    int64_t last_at;
};

/* Highest score first; ties by most recent view, then id, so the card is
 * the same on every rebuild. */
static int viewed_cmp(const void *a, const void *b)
{
    const struct viewed *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    if (x->last_at != y->last_at)
        return x->last_at < y->last_at ? 1 : -1;
    return strcmp(x->product_id, y->product_id);
}

/* Groups the (product-sorted) views into decayed scores and 7-day counts. */
static size_t aggregate(const struct ts_hub_profile *p, struct viewed *out)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nviews; i++) {
        const struct ts_hub_view *v = &p->views[i];
        if (n == 0 || strcmp(out[n - 1].product_id, v->product_id) != 0) {
            out[n] = (struct viewed){.product_id = v->product_id, .last_at = v->at_ms};
            n++;
        }
        struct viewed *w = &out[n - 1];
        /* A timestamp from the future (client clock skew) counts as now. */
        int64_t age = p->now_ms - v->at_ms;
        if (age < 0)
            age = 0;
        w->score += pow(0.5, (double)age / (double)TS_HUB_HALF_LIFE_MS);
        if (age <= TS_HUB_RECENT_MS)
            w->count++;
        if (v->at_ms > w->last_at)
            w->last_at = v->at_ms;
        if (!w->name && v->name)
            w->name = v->name;
    }
    qsort(out, n, sizeof *out, viewed_cmp);
    return n;
}

static bool in_cart(const struct ts_hub_profile *p, const char *id)
{
    for (size_t i = 0; i < p->ncart; i++)
        if (strcmp(p->cart[i].product_id, id) == 0)
            return true;
    return false;
}

static const struct viewed *find_viewed(const struct viewed *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].product_id, id) == 0)
            return &v[i];
    return NULL;
}

static bool listed(json_t *interests, const char *id)
{
    size_t i;
    json_t *it;
    json_array_foreach(interests, i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "product_id")), id) == 0)
            return true;
    }
    return false;
}

/* json_object_set_new that remembers a failure instead of checking each call. */
static void put(json_t *o, const char *k, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(o, k, v) != 0)
        *ok = false;
}

static json_t *item(const char *id, const char *name, const char *signal, bool *ok)
{
    json_t *o = json_object();
    if (!o) {
        *ok = false;
        return NULL;
    }
    put(o, "product_id", json_string(id), ok);
    if (name)
        put(o, "name", json_string(name), ok);
    put(o, "signal", json_string(signal), ok);
    return o;
}

static void append(json_t *arr, json_t *o, bool *ok)
{
    if (!o || json_array_append_new(arr, o) != 0)
        *ok = false;
}

static void add_interests(const struct ts_hub_profile *p, const struct viewed *v, size_t nv,
                          json_t *arr, bool *ok)
{
    for (size_t i = 0; i < p->ncart && json_array_size(arr) < TS_HUB_MAX_INTERESTS; i++) {
        const struct ts_hub_line *c = &p->cart[i];
        json_t *o = item(c->product_id, c->name, "cart", ok);
        if (o) {
            put(o, "quantity", json_integer(c->quantity), ok);
            if (c->has_price)
                put(o, "price", json_real(c->price), ok);
            /* A product both in the cart and viewed is listed once, at its
             * strongest signal, but keeps its view count. */
            const struct viewed *w = find_viewed(v, nv, c->product_id);
            if (w && w->count > 0)
                put(o, "count", json_integer(w->count), ok);
        }
        append(arr, o, ok);
    }
    for (size_t i = 0; i < nv && json_array_size(arr) < TS_HUB_MAX_INTERESTS; i++) {
        if (v[i].score < MIN_SCORE || in_cart(p, v[i].product_id))
            continue;
        json_t *o = item(v[i].product_id, v[i].name, "viewed", ok);
        if (o) {
            put(o, "count", json_integer(v[i].count), ok);
            put(o, "score", json_real(round(v[i].score * 100.0) / 100.0), ok);
        }
        append(arr, o, ok);
    }
    for (size_t i = 0; i < p->nwish && json_array_size(arr) < TS_HUB_MAX_INTERESTS; i++) {
        if (listed(arr, p->wishlist[i].product_id))
            continue;
        append(arr, item(p->wishlist[i].product_id, p->wishlist[i].name, "wishlist", ok), ok);
    }
}

static json_t *orders(const struct ts_hub_profile *p, bool *ok)
{
    json_t *arr = json_array();
    if (!arr) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < p->norders && i < TS_HUB_MAX_ORDERS; i++) {
        const struct ts_hub_order *o = &p->orders[i];
        json_t *j = json_object();
        char at[40];
        ts_iso8601(o->at_ms, at, sizeof at);
        if (j) {
            put(j, "order_id", json_string(o->order_id), ok);
            if (o->has_total)
                put(j, "total", json_real(o->total), ok);
            if (o->currency)
                put(j, "currency", json_string(o->currency), ok);
            put(j, "status", json_string(o->status ? o->status : "placed"), ok);
            if (o->store) /* bought in this store (purchases.c) */
                put(j, "store", json_string(o->store), ok);
            put(j, "at", json_string(at), ok);
        }
        append(arr, j, ok);
    }
    return arr;
}

/* The trait wins, then what customers with the same top interest went for
 * (suggest.c); otherwise the most-viewed product that is not already in
 * the cart (the associate can point at it on the shelf). */
static json_t *suggested(const struct ts_hub_profile *p, const struct viewed *v, size_t nv,
                         bool *ok)
{
    const char *id = p->suggested_id, *name = p->suggested_name;
    if (!id && p->peer_id) { /* what similar customers went for (suggest.c) */
        id = p->peer_id;
        name = p->peer_name;
    }
    for (size_t i = 0; !id && i < nv; i++)
        if (v[i].score >= MIN_SCORE && !in_cart(p, v[i].product_id)) {
            id = v[i].product_id;
            name = v[i].name;
        }
    if (!id)
        return NULL;
    json_t *o = json_object();
    if (!o) {
        *ok = false;
        return NULL;
    }
    put(o, "product_id", json_string(id), ok);
    if (name)
        put(o, "name", json_string(name), ok);
    return o;
}

/* What the CDP predicts (predict.c), last of the card's members so a store
 * with hints off gets it cut out without re-parsing (ts_hub_predict_strip);
 * like the interests, only with personalization consent. */
static void prediction(json_t *card, const struct ts_hub_profile *p, bool *ok)
{
    if (!p->consent || !p->predictions)
        return;
    json_t *o = ts_hub_predict_card(p->predictions, p->now_ms);
    if (o)
        put(card, "prediction", o, ok);
}

/* The customer's open offers (offers.c loaded the ones neither redeemed
 * nor expired): code, description, expires_at. The agent drops one whose
 * expires_at has passed when it shows the card (PROTOCOL.md "Offers"). An
 * offer is the customer's own, not browsing: shown with or without
 * personalization consent. */
static void add_offers(const struct ts_hub_profile *p, json_t *card, bool *ok)
{
    if (!p->noffers)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < p->noffers; i++) {
        const struct ts_seg_offer *o = &p->offers[i];
        json_t *j = json_object();
        if (j) {
            put(j, "code", json_string(o->code), ok);
            if (o->description)
                put(j, "description", json_string(o->description), ok);
            if (o->expires_ms > 0) {
                char at[40];
                ts_iso8601(o->expires_ms, at, sizeof at);
                put(j, "expires_at", json_string(at), ok);
            }
        }
        append(arr, j, ok);
    }
    put(card, "offers", arr, ok);
}

enum ts_err ts_hub_card_build(const struct ts_hub_profile *p, char **out)
{
    int rc = TS_ERR_NOMEM;
    bool ok = true;
    struct viewed *v = calloc(p->nviews ? p->nviews : 1, sizeof *v);
    json_t *card = json_object();
    if (!v || !card)
        goto out;
    size_t nv = aggregate(p, v);

    put(card, "cid", json_string(p->cid), &ok);
    if (p->name)
        put(card, "name", json_string(p->name), &ok);
    if (p->tier)
        put(card, "tier", json_string(p->tier), &ok);
    if (p->has_points)
        put(card, "points", json_integer(p->points), &ok);
    put(card, "consent", json_boolean(p->consent), &ok);
    /* Without personalization consent the card identifies the customer and
     * their loyalty status, nothing about their browsing. */
    if (p->consent) {
        json_t *arr = json_array();
        if (arr)
            add_interests(p, v, nv, arr, &ok);
        put(card, "interests", arr, &ok);
        put(card, "orders", orders(p, &ok), &ok);
        json_t *s = suggested(p, v, nv, &ok);
        if (s)
            put(card, "suggested", s, &ok);
    }
    add_offers(p, card, &ok);
    char upd[40];
    ts_iso8601(p->updated_ms, upd, sizeof upd);
    put(card, "updated", json_string(upd), &ok);
    prediction(card, p, &ok);
    if (!ok)
        goto out;
    /* Ten significant digits print 129.0 and 89.99 as written, not as
     * 89.989999999999995. */
    char *s = json_dumps(card, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!s)
        goto out;
    *out = s;
    rc = TS_OK;
out:
    json_decref(card);
    free(v);
    return rc;
}
