/*
 * Segment HTTP API batches (https://segment.com/docs/connections/sources/
 * catalog/libraries/server/http-api/#batch) parsed into ts_seg_events.
 *
 * Two rules shape this file. The envelope is strict: a batch that is not JSON,
 * has no "batch" array, or an event without a type, an identity or with an
 * unreadable timestamp fails as a whole, so the CDP learns of the problem and
 * nothing half-applied is left behind (docs/PROTOCOL.md). The payload is
 * lenient: traits and properties of the wrong type or absurd size are ignored
 * field by field, because real SDKs and CDP transformations send prices as
 * strings and loyalty numbers as integers, and one odd trait must not drop a
 * whole day of events.
 */
#include "hub.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct priv {
    json_t *root;
    char **owned; /* strings made here (converted numbers, normalized ids) */
    size_t nowned, capowned;
};

struct parser {
    struct priv *pv;
    char *err;
    size_t errsz;
    size_t idx;            /* event index for messages */
    bool batch_sent;       /* the batch carries a top-level sentAt */
    int64_t batch_sent_ms; /* ... and this is it */
};

static enum ts_err bad(struct parser *ps, const char *what)
{
    snprintf(ps->err, ps->errsz, "batch[%zu]: %s", ps->idx, what);
    return TS_ERR_INVAL;
}

/* Keeps a copy of s[0..n) alive as long as the batch. NULL on OOM. */
static const char *own(struct priv *pv, const char *s, size_t n)
{
    if (pv->nowned == pv->capowned) {
        size_t cap = pv->capowned ? pv->capowned * 2 : 16;
        char **p = realloc(pv->owned, cap * sizeof *p);
        if (!p)
            return NULL;
        pv->owned = p;
        pv->capowned = cap;
    }
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    pv->owned[pv->nowned++] = c;
    return c;
}

/*
 * A bounded, non-empty string from a JSON string or integer (ids arrive both
 * ways). Returns NULL when absent, empty, of another type or longer than max;
 * *nomem is set when the copy of an integer could not be made.
 */
static const char *str_or_int(struct priv *pv, const json_t *v, size_t max, bool *nomem)
{
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        return n > 0 && n <= max ? json_string_value(v) : NULL;
    }
    if (json_is_integer(v)) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        const char *s = own(pv, buf, (size_t)n);
        if (!s)
            *nomem = true;
        return s;
    }
    return NULL;
}

static const char *text(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    return n > 0 && n <= TS_SEG_MAX_TEXT ? json_string_value(v) : NULL;
}

/* A finite number from a JSON number or a numeric string ("12.90"). */
static bool number(const json_t *v, double lo, double hi, double *out)
{
    double d;
    if (json_is_number(v)) {
        d = json_number_value(v);
    } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 40) {
        char *end;
        d = strtod(json_string_value(v), &end);
        if (*end != '\0')
            return false;
    } else {
        return false;
    }
    if (!isfinite(d) || d < lo || d > hi)
        return false;
    *out = d;
    return true;
}

/* Strict ISO-8601 shape check before ts_iso8601_parse, which trusts that a
 * "+hh:mm" offset is complete: YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|z|+hh:mm|-hh:mm]. */
bool ts_hub_iso_shape(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd";
    size_t i = 0;
    for (; pat[i]; i++) {
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return false;
    }
    s += i;
    if (*s == '.') {
        size_t n = 0;
        for (s++; *s >= '0' && *s <= '9'; s++)
            n++;
        if (n == 0 || n > 9)
            return false;
    }
    if (*s == 'Z' || *s == 'z')
        return s[1] == '\0';
    if (*s == '+' || *s == '-')
        return s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' && s[3] == ':' &&
               s[4] >= '0' && s[4] <= '9' && s[5] >= '0' && s[5] <= '9' && s[6] == '\0';
    return *s == '\0';
}

/* Reads one timestamp field: absent/null → not set, anything unreadable → error. */
static enum ts_err timestamp(struct parser *ps, const json_t *ev, const char *key, bool *set,
                             int64_t *at)
{
    const json_t *v = json_object_get(ev, key);
    *set = false;
    if (!v || json_is_null(v))
        return TS_OK;
    char msg[64];
    snprintf(msg, sizeof msg, "bad %s (expected ISO-8601)", key);
    if (!json_is_string(v) || !ts_hub_iso_shape(json_string_value(v)) ||
        ts_iso8601_parse(json_string_value(v), at) != TS_OK)
        return bad(ps, msg);
    *set = true;
    return TS_OK;
}

/* One product from a properties object or a products[] element. Returns
 * false (product skipped) when it has no usable id. */
static bool product(struct priv *pv, const json_t *o, struct ts_seg_product *p, bool *nomem)
{
    memset(p, 0, sizeof *p);
    static const char *id_keys[] = {"product_id", "sku", "id"};
    for (size_t i = 0; i < 3 && !p->product_id; i++)
        p->product_id = str_or_int(pv, json_object_get(o, id_keys[i]), TS_SEG_MAX_ID, nomem);
    if (!p->product_id)
        return false;
    p->name = text(o, "name");
    p->has_price = number(json_object_get(o, "price"), 0, 1e9, &p->price);
    double q;
    p->quantity = 1;
    if (number(json_object_get(o, "quantity"), 1, 1e6, &q)) {
        p->quantity = (long)q;
        p->has_quantity = true;
    }
    return true;
}

static enum ts_err parse_products(struct parser *ps, const json_t *props, struct ts_seg_event *e)
{
    bool nomem = false;
    const json_t *arr = json_object_get(props, "products");
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    bool order = e->kind == TS_SEG_ORDER || e->kind == TS_SEG_ORDER_STATUS;
    if (!order)
        n = 1; /* single-product events carry the product in properties */
    e->products = calloc(n ? n : 1, sizeof *e->products);
    if (!e->products)
        return TS_ERR_NOMEM;
    if (!order) {
        if (product(ps->pv, props, &e->products[0], &nomem))
            e->nproducts = 1;
        else
            e->kind = TS_SEG_IGNORE; /* nothing to remember without a product id */
    } else {
        for (size_t i = 0; i < n; i++) {
            const json_t *it = json_array_get(arr, i);
            if (json_is_object(it) && product(ps->pv, it, &e->products[e->nproducts], &nomem))
                e->nproducts++;
        }
    }
    return nomem ? TS_ERR_NOMEM : TS_OK;
}

static enum ts_err parse_order(struct parser *ps, const json_t *props, struct ts_seg_event *e)
{
    bool nomem = false;
    e->order_id = str_or_int(ps->pv, json_object_get(props, "order_id"), TS_SEG_MAX_ID, &nomem);
    if (!e->order_id)
        e->order_id = str_or_int(ps->pv, json_object_get(props, "orderId"), TS_SEG_MAX_ID, &nomem);
    e->has_total = number(json_object_get(props, "total"), -1e12, 1e12, &e->total) ||
                   number(json_object_get(props, "revenue"), -1e12, 1e12, &e->total);
    e->order_store = text(props, "pickup_store");
    if (!e->order_store)
        e->order_store = text(props, "store_id");
    const char *cur = text(props, "currency");
    if (cur && strlen(cur) <= 8)
        e->currency = cur;
    if (nomem)
        return TS_ERR_NOMEM;
    return parse_products(ps, props, e);
}

/*
 * A loyalty id from traits: integers and strings, normalized (sync/ident.h).
 * An id longer than TS_SEG_MAX_LOYALTY_LEN refuses the batch with the field
 * named: it would otherwise be dropped while the CDP hears 200, and the
 * customer's card would never resolve at the till. Other unusable values
 * (empty, of another type, nothing left after normalizing) are ignored as
 * the payload rule above says.
 */
static enum ts_err add_loyalty(struct parser *ps, struct ts_seg_event *e, const json_t *v,
                               const char *field)
{
    bool nomem = false;
    if (json_is_string(v) && json_string_length(v) > TS_SEG_MAX_LOYALTY_LEN) {
        char msg[160];
        snprintf(msg, sizeof msg, "traits.%s is %zu bytes long; a loyalty id may have at most %d",
                 field, json_string_length(v), TS_SEG_MAX_LOYALTY_LEN);
        return bad(ps, msg);
    }
    const char *raw = str_or_int(ps->pv, v, TS_SEG_MAX_LOYALTY_LEN, &nomem);
    char norm[TS_SEG_MAX_LOYALTY_LEN + 1];
    if (nomem)
        return TS_ERR_NOMEM;
    if (!raw || e->nloyalty == TS_SEG_MAX_LOYALTY ||
        ts_ident_normalize(raw, strlen(raw), norm, sizeof norm) != TS_OK)
        return TS_OK; /* unusable id: ignored, the rest of the identify still counts */
    for (size_t i = 0; i < e->nloyalty; i++)
        if (strcmp(e->loyalty[i], norm) == 0)
            return TS_OK;
    const char *s = own(ps->pv, norm, strlen(norm));
    if (!s)
        return TS_ERR_NOMEM;
    e->loyalty[e->nloyalty++] = s;
    return TS_OK;
}

/*
 * traits.offers: [{"code", "description", "expires_at"}] (PROTOCOL.md
 * "Offers"), the customer's current offers. Lenient like every trait: an
 * entry without a usable code, or whose expires_at is not ISO-8601, is left
 * out (an offer must not show for ever because its expiry was garbled); past
 * TS_SEG_MAX_OFFERS the rest are ignored.
 */
static void parse_offers(struct parser *ps, const json_t *arr, struct ts_seg_event *e, bool *nomem)
{
    if (!json_is_array(arr))
        return;
    e->has_offers = true;
    for (size_t i = 0; i < json_array_size(arr) && e->noffers < TS_SEG_MAX_OFFERS; i++) {
        const json_t *o = json_array_get(arr, i);
        const char *code = str_or_int(ps->pv, json_object_get(o, "code"), TS_OFFER_MAX_CODE, nomem);
        bool printable = code && *code;
        for (const char *c = code; c && *c; c++)
            printable &= (unsigned char)*c > 0x20 && (unsigned char)*c < 0x7f;
        if (!printable)
            continue;
        const json_t *x = json_object_get(o, "expires_at");
        int64_t exp = 0;
        if (x && !json_is_null(x) &&
            (!json_is_string(x) || !ts_hub_iso_shape(json_string_value(x)) ||
             ts_iso8601_parse(json_string_value(x), &exp) != TS_OK || exp <= 0))
            continue;
        e->offers[e->noffers++] = (struct ts_seg_offer){
            .code = code, .description = text(o, "description"), .expires_ms = exp};
    }
}

static enum ts_err parse_traits(struct parser *ps, const json_t *tr, struct ts_seg_event *e)
{
    int rc;
    e->consent = -1;
    if (!json_is_object(tr))
        return TS_OK;
    e->traits = tr;
    e->name = text(tr, "name");
    e->first_name = text(tr, "firstName") ? text(tr, "firstName") : text(tr, "first_name");
    e->last_name = text(tr, "lastName") ? text(tr, "lastName") : text(tr, "last_name");
    e->tier = text(tr, "tier");
    const char *em = text(tr, "email");
    if (em && strlen(em) < 320 && strchr(em, '@')) /* RFC 5321's longest path */
        e->email = em;
    const char *hs = text(tr, "home_store");
    if (hs && strlen(hs) < 64) /* a certificate OU is at most 64 characters */
        e->home_store = hs;
    double pts;
    if (number(json_object_get(tr, "points"), -1e12, 1e12, &pts)) {
        e->points = (long long)pts;
        e->has_points = true;
    }
    const json_t *c = json_object_get(tr, "consent");
    if (json_is_object(c))
        c = json_object_get(c, "personalization");
    if (!json_is_boolean(c))
        c = json_object_get(tr, "personalization_consent");
    if (json_is_boolean(c))
        e->consent = json_is_true(c) ? 1 : 0;

    static const char *single[] = {"loyalty_id", "loyaltyId"};
    for (size_t i = 0; i < 2; i++)
        if ((rc = add_loyalty(ps, e, json_object_get(tr, single[i]), single[i])))
            return rc;
    const json_t *arr = json_object_get(tr, "loyalty_ids");
    for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
        char field[40];
        snprintf(field, sizeof field, "loyalty_ids[%zu]", i);
        if ((rc = add_loyalty(ps, e, json_array_get(arr, i), field)))
            return rc;
    }

    const json_t *sp = json_object_get(tr, "suggested_product");
    bool nomem = false;
    if (json_is_object(sp)) {
        e->suggested_id =
            str_or_int(ps->pv, json_object_get(sp, "product_id"), TS_SEG_MAX_ID, &nomem);
        e->suggested_name = e->suggested_id ? text(sp, "name") : NULL;
    } else {
        e->suggested_id = str_or_int(ps->pv, sp, TS_SEG_MAX_ID, &nomem);
    }
    parse_offers(ps, json_object_get(tr, "offers"), e, &nomem);
    return nomem ? TS_ERR_NOMEM : TS_OK;
}

static enum ts_seg_kind track_kind(const char *name)
{
    static const struct {
        const char *name;
        enum ts_seg_kind kind;
    } map[] = {
        {"Product Viewed", TS_SEG_VIEWED},
        {"Product Added", TS_SEG_CART_ADD},
        {"Product Removed", TS_SEG_CART_REMOVE},
        {"Product Added to Wishlist", TS_SEG_WISH_ADD},
        {"Product Removed from Wishlist", TS_SEG_WISH_REMOVE},
        {"Order Completed", TS_SEG_ORDER},
        /* Segment E-commerce spec v2 order lifecycle, and the fulfilment
         * events shops commonly add (suggest.c maps them to a status). */
        {"Order Updated", TS_SEG_ORDER_STATUS},
        {"Order Shipped", TS_SEG_ORDER_STATUS},
        {"Order Delivered", TS_SEG_ORDER_STATUS},
        {"Order Ready for Pickup", TS_SEG_ORDER_STATUS},
        {"Order Picked Up", TS_SEG_ORDER_STATUS},
        {"Order Cancelled", TS_SEG_ORDER_STATUS},
        {"Order Refunded", TS_SEG_ORDER_STATUS},
        {"Order Returned", TS_SEG_ORDER_STATUS},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(name, map[i].name) == 0)
            return map[i].kind;
    return TS_SEG_IGNORE; /* Cart Viewed, Checkout Started, anything custom */
}

static int identity(struct parser *ps, const json_t *ev, const char *key, const char **out)
{
    const json_t *v = json_object_get(ev, key);
    bool nomem = false;
    *out = NULL;
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
        return TS_OK;
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a string of at most %d bytes", key, TS_SEG_MAX_ID);
    if (!(*out = str_or_int(ps->pv, v, TS_SEG_MAX_ID, &nomem)))
        return nomem ? TS_ERR_NOMEM : bad(ps, msg);
    return TS_OK;
}

/*
 * When the event happened, on the hub's clock. The sender's time is its
 * timestamp, else its originalTimestamp; with a sentAt (the event's own, else
 * the batch's, as the server libraries send it) the sender's clock offset is
 * taken out by Segment's rule, timestamp = receivedAt - (sentAt -
 * originalTimestamp) (https://segment.com/docs/connections/spec/common/
 * #timestamps): a phone 10 days slow still has today's views counted as
 * today's. Backfilled history keeps its age, since only the offset between
 * the two clocks is removed. An event cannot happen after it was received,
 * so a later result is clamped to receivedAt. No time at all: receivedAt.
 */
static enum ts_err event_time(struct parser *ps, const json_t *ev, int64_t now_ms, int64_t *at)
{
    bool set, sent_set;
    int64_t sent_ms;
    enum ts_err rc;
    *at = now_ms;
    if ((rc = timestamp(ps, ev, "timestamp", &set, at)))
        return rc;
    if (!set && (rc = timestamp(ps, ev, "originalTimestamp", &set, at)))
        return rc;
    if ((rc = timestamp(ps, ev, "sentAt", &sent_set, &sent_ms)))
        return rc;
    if (!sent_set && ps->batch_sent) {
        sent_set = true;
        sent_ms = ps->batch_sent_ms;
    }
    if (!set)
        *at = now_ms;
    else if (sent_set)
        *at = now_ms - (sent_ms - *at);
    if (*at > now_ms)
        *at = now_ms;
    return TS_OK;
}

static enum ts_err parse_event(struct parser *ps, const json_t *ev, int64_t now_ms,
                               struct ts_seg_event *e)
{
    int rc;
    memset(e, 0, sizeof *e);
    e->consent = -1;
    if (!json_is_object(ev))
        return bad(ps, "event is not an object");
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type)
        return bad(ps, "missing type");
    if ((rc = identity(ps, ev, "userId", &e->user_id)) ||
        (rc = identity(ps, ev, "anonymousId", &e->anonymous_id)))
        return rc;
    if (!e->user_id && !e->anonymous_id)
        return bad(ps, "event has neither userId nor anonymousId");

    const json_t *mid = json_object_get(ev, "messageId");
    if (mid && !json_is_null(mid)) {
        if (!json_is_string(mid) || json_string_length(mid) > TS_SEG_MAX_ID)
            return bad(ps, "messageId must be a string of at most 256 bytes");
        if (json_string_length(mid) > 0)
            e->message_id = json_string_value(mid);
    }

    if ((rc = event_time(ps, ev, now_ms, &e->at_ms)))
        return rc;

    if (strcmp(type, "identify") == 0) {
        e->kind = TS_SEG_IDENTIFY;
        return parse_traits(ps, json_object_get(ev, "traits"), e);
    }
    if (strcmp(type, "track") == 0) {
        const json_t *name = json_object_get(ev, "event");
        if (!json_is_string(name) || json_string_length(name) == 0)
            return bad(ps, "track event without an event name");
        e->kind = track_kind(json_string_value(name));
        /* json_object_get on a non-object yields NULL, so odd properties
         * simply read as empty. */
        const json_t *props = json_object_get(ev, "properties");
        if (e->kind == TS_SEG_ORDER || e->kind == TS_SEG_ORDER_STATUS) {
            const char *st = text(props, "status");
            e->order_status = ts_hub_order_status(json_string_value(name),
                                                  st ? st : text(props, "fulfillment_status"));
            return parse_order(ps, props, e);
        }
        if (e->kind != TS_SEG_IGNORE)
            return parse_products(ps, props, e);
        return TS_OK;
    }
    static const char *ignored[] = {"page", "screen", "group", "alias"};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(type, ignored[i]) == 0)
            return TS_OK;
    return bad(ps, "unknown type (expected identify, track, page, screen, group or alias)");
}

void ts_seg_batch_free(struct ts_seg_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->ev[i].products);
    free(b->ev);
    struct priv *pv = b->priv;
    if (pv) {
        for (size_t i = 0; i < pv->nowned; i++)
            free(pv->owned[i]);
        free(pv->owned);
        json_decref(pv->root);
        free(pv);
    }
    free(b);
}

enum ts_err ts_seg_parse(const char *body, size_t len, int64_t now_ms, struct ts_seg_batch **out,
                         char *err, size_t errsz)
{
    int rc = TS_ERR_NOMEM;
    struct ts_seg_batch *b = calloc(1, sizeof *b);
    struct priv *pv = calloc(1, sizeof *pv);
    if (!b || !pv) {
        free(pv);
        snprintf(err, errsz, "out of memory");
        goto out;
    }
    b->priv = pv;
    json_error_t jerr;
    pv->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!pv->root) {
        snprintf(err, errsz, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        rc = TS_ERR_INVAL;
        goto out;
    }
    const json_t *arr = json_object_get(pv->root, "batch");
    if (!json_is_array(arr)) {
        snprintf(err, errsz, "body must be an object with a \"batch\" array");
        rc = TS_ERR_INVAL;
        goto out;
    }
    size_t n = json_array_size(arr);
    b->ev = calloc(n ? n : 1, sizeof *b->ev);
    if (!b->ev) {
        snprintf(err, errsz, "out of memory");
        goto out;
    }
    struct parser ps = {.pv = pv, .err = err, .errsz = errsz};
    const json_t *sent = json_object_get(pv->root, "sentAt");
    if (sent && !json_is_null(sent) &&
        (!json_is_string(sent) || !ts_hub_iso_shape(json_string_value(sent)) ||
         ts_iso8601_parse(json_string_value(sent), &ps.batch_sent_ms) != TS_OK)) {
        snprintf(err, errsz, "bad sentAt (expected ISO-8601)");
        rc = TS_ERR_INVAL;
        goto out;
    }
    ps.batch_sent = sent && !json_is_null(sent);
    for (size_t i = 0; i < n; i++) {
        ps.idx = i;
        b->n = i + 1; /* so ts_seg_batch_free releases this event's products */
        rc = parse_event(&ps, json_array_get(arr, i), now_ms, &b->ev[i]);
        if (rc == TS_ERR_NOMEM)
            snprintf(err, errsz, "out of memory");
        if (rc != TS_OK)
            goto out;
    }
    b->n = n;
    rc = TS_OK;
out:
    if (rc != TS_OK) {
        ts_seg_batch_free(b);
        return rc;
    }
    *out = b;
    return TS_OK;
}
