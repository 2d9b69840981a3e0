/*
 * braze_currents: Braze Currents' custom HTTP connector
 * (https://www.braze.com/docs/user_guide/data/distribution/braze_currents/setting_up_currents/custom_http_connector/).
 *
 * - "Events are sent to the endpoint as a JSON array in the following
 *   format: {"events": [event1, event2, ...]}", up to 100 per request.
 * - Authentication: the optional bearer token of the Current's details; the
 *   hub requires it ("Authorization: Bearer <secret>"). Braze signs
 *   nothing and sends no delivery time, so there is no window to check.
 * - Retries: Braze retries server and network errors, and on a 400 it
 *   splits the batch and resends events one by one, dropping those still
 *   refused alone. So a 400 is kept for events that are bad in themselves
 *   (segment.c refuses them, naming the field); event types the hub does
 *   not use are counted and answered 2xx. Other errors are retried, and
 *   "if the issue persists for more than 5 days, the integration is
 *   disabled" (same page, "Error monitoring"): a replayed batch (identical
 *   body) is answered 200 {"replay": true}, storing nothing, rather than a
 *   409 Braze would retry for days.
 * - Event shapes, custom HTTP connector tab of the event glossary
 *   (https://www.braze.com/docs/user_guide/data/braze_currents/event_glossary/customer_behavior_events/):
 *   {"event_type", "id", "time" (seconds), "user": {"user_id",
 *   "external_user_id"}, "properties"}. users.behaviors.CustomEvent
 *   carries "name" and "custom_properties"; users.behaviors.Purchase
 *   "product_id", "price", "currency" and "purchase_properties";
 *   users.behaviors.subscription.GlobalStateChange a subscription state.
 *   The event id dedupes.
 */
#include "source_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const id_keys[] = {"product_id", "sku", "id", NULL},
                         *name_keys[] = {"name", "product_name", "title", NULL},
                         *price_keys[] = {"price", NULL}, *qty_keys[] = {"quantity", NULL};

static void product(json_t *props, const json_t *src)
{
    ts_src_pick(props, "product_id", src, id_keys);
    ts_src_pick(props, "name", src, name_keys);
    ts_src_pick(props, "price", src, price_keys);
    ts_src_pick(props, "quantity", src, qty_keys);
}

static enum ts_err one(struct ts_src_ctx *c, size_t idx, const json_t *ev)
{
    (void)idx;
    char uid[TS_SEG_MAX_ID + 1], bid[TS_SEG_MAX_ID + 1], id[200];
    static const char *const ext[] = {"external_user_id", NULL}, *bz[] = {"user_id", NULL},
                             *idk[] = {"id", NULL};
    const json_t *user = json_object_get(ev, "user"), *p = json_object_get(ev, "properties");
    const char *type = json_string_value(json_object_get(ev, "event_type"));
    const char *u = ts_src_text(user, ext, uid, sizeof uid);
    /* The Braze id where the user has no external id yet: anonymous. */
    const char *anon = u ? NULL : ts_src_text(user, bz, bid, sizeof bid);
    const char *vid = ts_src_text(ev, idk, id, sizeof id);
    int64_t at = 0;
    ts_src_time(json_object_get(ev, "time"), &at);
    json_t *e;
    if (!type) {
        c->unknown++;
        return TS_OK;
    }
    if (strcmp(type, "users.behaviors.Purchase") == 0) {
        const json_t *pp = json_object_get(p, "purchase_properties");
        if (!(e = ts_src_event(c, "Order Completed", u, anon, vid, at)))
            return TS_ERR_NOMEM;
        json_t *props = ts_src_props(e), *items = json_array(), *it = json_object();
        static const char *const order[] = {"order_id", NULL};
        if (!ts_src_pick(props, "order_id", pp, order))
            json_object_set_new(props, "order_id", json_string(vid ? vid : "braze-purchase"));
        ts_src_pick(props, "currency", p, (const char *const[]){"currency", NULL});
        ts_src_pick(props, "pickup_store", pp, (const char *const[]){"pickup_store", NULL});
        product(it, p);
        ts_src_pick(it, "quantity", pp, qty_keys);
        json_array_append_new(items, it);
        json_object_set_new(props, "products", items);
        ts_src_pick(props, "total", p, price_keys);
        return TS_OK;
    }
    if (strcmp(type, "users.behaviors.subscription.GlobalStateChange") == 0) {
        const char *st = json_string_value(json_object_get(p, "subscription_status"));
        if (!st)
            st = json_string_value(json_object_get(p, "state"));
        if (!st) {
            c->unknown++;
            return TS_OK;
        }
        if (!(e = ts_src_event(c, "identify", u, anon, vid, at)))
            return TS_ERR_NOMEM;
        bool yes = strcasecmp(st, "Subscribed") == 0 || strcasecmp(st, "Opted In") == 0;
        json_object_set_new(ts_src_traits(e), "personalization_consent", json_boolean(yes));
        return TS_OK;
    }
    if (strcmp(type, "users.behaviors.CustomEvent") != 0) {
        c->unknown++; /* message engagement, sessions ...: not the card's */
        return TS_OK;
    }
    const char *name = json_string_value(json_object_get(p, "name"));
    const json_t *cp = json_object_get(p, "custom_properties");
    const char *seg = name ? ts_src_vocab(name) : NULL;
    bool profile = ts_src_has_profile(cp);
    if (!seg && !profile) {
        c->unknown++;
        return TS_OK;
    }
    if (profile) { /* a custom event with profile traits also updates the profile */
        char pid[220];
        snprintf(pid, sizeof pid, "%s.profile", vid ? vid : "");
        if (!(e = ts_src_event(c, "identify", u, anon, vid ? pid : NULL, at)))
            return TS_ERR_NOMEM;
        ts_src_profile(ts_src_traits(e), cp);
    }
    if (!seg)
        return TS_OK;
    if (!(e = ts_src_event(c, seg, u, anon, vid, at)))
        return TS_ERR_NOMEM;
    json_t *props = ts_src_props(e);
    product(props, cp);
    static const char *const order[] = {"order_id", NULL}, *total[] = {"total", "revenue", NULL};
    ts_src_pick(props, "order_id", cp, order);
    ts_src_pick(props, "total", cp, total);
    return TS_OK;
}

static enum ts_err map(struct ts_src_ctx *c, const json_t *root)
{
    return ts_src_each(c, json_object_get(root, "events"), "{\"events\": [...]}", one);
}

static enum ts_err verify(struct ts_src_ctx *c)
{
    return ts_src_bearer_ok(c) ? TS_OK : TS_ERR_AUTH;
}

const struct ts_src_vendor ts_src_braze = {
    .type = TS_SRC_BRAZE,
    .name = "braze_currents",
    .verify = verify,
    .map = map,
    .replay_2xx = true,
};
