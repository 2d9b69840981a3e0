/*
 * Building the Segment-shaped events the adapters hand to segment.c, and
 * the vocabulary shared by vendors whose event names are free text.
 */
#include "source_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

json_t *ts_src_event(struct ts_src_ctx *c, const char *ev, const char *user_id,
                     const char *anonymous_id, const char *vendor_id, int64_t at_ms)
{
    json_t *e = json_object();
    if (!e)
        return NULL;
    bool identify = strcmp(ev, "identify") == 0;
    json_object_set_new(e, "type", json_string(identify ? "identify" : "track"));
    if (!identify)
        json_object_set_new(e, "event", json_string(ev));
    if (user_id && user_id[0])
        json_object_set_new(e, "userId", json_string(user_id));
    if (anonymous_id && anonymous_id[0])
        json_object_set_new(e, "anonymousId", json_string(anonymous_id));
    if (vendor_id && vendor_id[0]) {
        char mid[TS_SEG_MAX_ID + 1];
        int n = snprintf(mid, sizeof mid, "%s:%s", c->conf->name, vendor_id);
        if (n > 0 && (size_t)n < sizeof mid)
            json_object_set_new(e, "messageId", json_string(mid));
        else
            json_object_set_new(e, "messageId", json_string(vendor_id)); /* refused, named */
    }
    if (at_ms > 0) {
        char iso[40];
        ts_iso8601(at_ms, iso, sizeof iso);
        json_object_set_new(e, "timestamp", json_string(iso));
    }
    if (json_array_append_new(c->out, e))
        return NULL;
    return e;
}

static json_t *member_obj(json_t *e, const char *key)
{
    json_t *o = json_object_get(e, key);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(e, key, o);
    }
    return o;
}

json_t *ts_src_traits(json_t *e)
{
    return member_obj(e, "traits");
}

json_t *ts_src_props(json_t *e)
{
    return member_obj(e, "properties");
}

void ts_src_copy(json_t *dst, const char *key, const json_t *v)
{
    if (dst && (json_is_string(v) || json_is_number(v) || json_is_boolean(v)))
        json_object_set_new(dst, key, json_deep_copy(v));
}

const char *ts_src_text(const json_t *o, const char *const *keys, char *buf, size_t bufsz)
{
    for (size_t i = 0; keys[i]; i++) {
        const json_t *v = json_object_get(o, keys[i]);
        if (json_is_string(v) && json_string_length(v) > 0) {
            if (ts_strlcpy(buf, json_string_value(v), bufsz) < bufsz)
                return buf;
        } else if (json_is_integer(v)) {
            snprintf(buf, bufsz, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            return buf;
        }
    }
    return NULL;
}

void ts_src_reject(struct ts_src_ctx *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rejected++;
    if (!c->errors)
        c->errors = json_array();
    if (json_array_size(c->errors) < 20)
        json_array_append_new(c->errors, json_string(msg));
}

/* Lower case, letters and digits only: "Added to Cart", "added_to_cart"
 * and "addedToCart" all read "addedtocart". */
static void squash(const char *in, char *out, size_t outsz)
{
    size_t n = 0;
    for (; *in && n + 1 < outsz; in++)
        if (isalnum((unsigned char)*in))
            out[n++] = (char)tolower((unsigned char)*in);
    out[n] = '\0';
}

const char *ts_src_vocab(const char *name)
{
    static const struct {
        const char *squashed, *segment;
    } map[] = {
        /* Segment's own names, spelled any way */
        {"productviewed", "Product Viewed"},
        {"productadded", "Product Added"},
        {"productremoved", "Product Removed"},
        {"productaddedtowishlist", "Product Added to Wishlist"},
        {"productremovedfromwishlist", "Product Removed from Wishlist"},
        {"checkoutstarted", "Checkout Started"},
        {"ordercompleted", "Order Completed"},
        {"ordercancelled", "Order Cancelled"},
        {"orderrefunded", "Order Refunded"},
        {"ordershipped", "Order Shipped"},
        {"orderdelivered", "Order Delivered"},
        {"orderupdated", "Order Updated"},
        /* Klaviyo's e-commerce metrics
         * (https://developers.klaviyo.com/en/docs/guide_to_integrating_a_platform_without_a_pre_built_klaviyo_integration)
         */
        {"viewedproduct", "Product Viewed"},
        {"addedtocart", "Product Added"},
        {"startedcheckout", "Checkout Started"},
        {"placedorder", "Order Completed"},
        {"fulfilledorder", "Order Shipped"},
        {"cancelledorder", "Order Cancelled"},
        {"refundedorder", "Order Refunded"},
        /* common custom-event names (Braze custom events, Bloomreach) */
        {"viewitem", "Product Viewed"},
        {"viewproduct", "Product Viewed"},
        {"addtocart", "Product Added"},
        {"removefromcart", "Product Removed"},
        {"removedfromcart", "Product Removed"},
        {"addtowishlist", "Product Added to Wishlist"},
        {"addedtowishlist", "Product Added to Wishlist"},
        {"removefromwishlist", "Product Removed from Wishlist"},
        {"removedfromwishlist", "Product Removed from Wishlist"},
        {"checkout", "Checkout Started"},
        {"purchase", "Order Completed"},
        {"ordershippedstatus", "Order Shipped"},
    };
    char sq[96];
    squash(name, sq, sizeof sq);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(sq, map[i].squashed) == 0)
            return map[i].segment;
    return NULL;
}

enum ts_err ts_src_map_spec(struct ts_src_ctx *c, const json_t *root)
{
    if (json_is_object(root)) {
        const char *name = json_string_value(json_object_get(root, "event"));
        if (name && !ts_src_vocab(name))
            c->unknown++;
        json_t *cp = json_deep_copy(root);
        return cp && json_array_append_new(c->out, cp) == 0 ? TS_OK : TS_ERR_NOMEM;
    }
    if (!json_is_array(root)) {
        ts_errf(c->err, sizeof c->err, "body must be an event object or an array of events");
        return TS_ERR_INVAL;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(root, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "event"));
        if (name && !ts_src_vocab(name))
            c->unknown++; /* passed on all the same: segment.c ignores it */
        json_t *cp = json_deep_copy(e);
        if (!cp || json_array_append_new(c->out, cp))
            return TS_ERR_NOMEM;
    }
    return TS_OK;
}

enum ts_err ts_src_each(struct ts_src_ctx *c, const json_t *arr, const char *shape,
                        enum ts_err (*one)(struct ts_src_ctx *c, size_t i, const json_t *ev))
{
    if (!json_is_array(arr)) {
        ts_errf(c->err, sizeof c->err, "body must be %s", shape);
        return TS_ERR_INVAL;
    }
    size_t i;
    const json_t *ev;
    json_array_foreach(arr, i, ev)
    {
        enum ts_err rc = one(c, i, ev);
        if (rc)
            return rc;
    }
    return TS_OK;
}

bool ts_src_pick(json_t *dst, const char *dstkey, const json_t *src, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++) {
        const json_t *v = json_object_get(src, keys[i]);
        if ((json_is_string(v) && json_string_length(v)) || json_is_number(v) ||
            json_is_boolean(v)) {
            ts_src_copy(dst, dstkey, v);
            return true;
        }
    }
    return false;
}

void ts_src_profile(json_t *traits, const json_t *src)
{
    static const char *const first[] = {"first_name", "firstName", "firstname", NULL},
                             *last[] = {"last_name", "lastName", "lastname", NULL},
                             *name[] = {"full_name", NULL},
                             *loyalty[] = {"loyalty_id", "loyaltyId", "loyalty_number", NULL},
                             *tier[] = {"tier", "loyalty_tier", NULL},
                             *points[] = {"points", "loyalty_points", NULL},
                             *store[] = {"home_store", "homeStore", NULL};
    ts_src_pick(traits, "first_name", src, first);
    ts_src_pick(traits, "last_name", src, last);
    ts_src_pick(traits, "name", src, name);
    ts_src_pick(traits, "loyalty_id", src, loyalty);
    ts_src_pick(traits, "tier", src, tier);
    ts_src_pick(traits, "points", src, points);
    ts_src_pick(traits, "home_store", src, store);
    ts_hub_predict_copy(traits, src); /* the CDP's predictions (predict.c) */
}

bool ts_src_has_profile(const json_t *src)
{
    /* not "name": on a product event that is the product's */
    static const char *const keys[] = {"first_name", "firstName",  "last_name", "lastName",
                                       "full_name",  "loyalty_id", "loyaltyId", "tier",
                                       "points",     "home_store", NULL};
    for (size_t i = 0; keys[i]; i++)
        if (json_object_get(src, keys[i]))
            return true;
    return ts_hub_predict_present(src);
}
