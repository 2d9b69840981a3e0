/*
 * klaviyo_webhook: Klaviyo's system webhooks
 * (https://developers.klaviyo.com/en/docs/working_with_system_webhooks).
 *
 * - Headers: Klaviyo-Webhook-Id, Klaviyo-Signature ("the HMAC-SHA256
 *   signature") and Klaviyo-Timestamp ("when the webhook request was
 *   sent"). The signature is the hex HMAC-SHA256, under the webhook's
 *   secret, of the raw body followed by the Klaviyo-Timestamp value (HMAC
 *   signature verification, same page; as also summarised in
 *   https://www.skills.sh/hookdeck/webhook-skills/klaviyo-webhooks);
 *   compared in constant time.
 * - The timestamp is signed, so it bounds replays: outside replay_window_s
 *   (default 300 s) the request is refused. meta.klaviyo_webhook_id "must
 *   match the Klaviyo-Webhook-Id request header".
 * - Body: {"data": [{"external_id", "topic", "payload"}], "meta": {...}}:
 *   external_id is the event's id (dedupe), topic names the metric
 *   ("event:klaviyo.viewed_product" ...), payload has the shape of a Get
 *   Event answer (https://developers.klaviyo.com/en/reference/get_event):
 *   attributes.datetime, attributes.event_properties,
 *   relationships.profile, and with include=profile the profile in
 *   "included" (external_id, first_name, last_name, properties).
 * - Properties follow Klaviyo's e-commerce metrics (Viewed Product:
 *   ProductID, ProductName, Price; Added to Cart: AddedItemProductID ...;
 *   Placed Order: OrderId, $value, Items[]:
 *   https://developers.klaviyo.com/en/docs/guide_to_integrating_a_platform_without_a_pre_built_klaviyo_integration).
 * - Klaviyo retries 5xx and timeouts; nothing documented for 4xx but
 *   dropping, so a 400 is kept for bad events.
 */
#include "source_int.h"

#include <stdio.h>
#include <string.h>

static enum ts_err verify(struct ts_src_ctx *c)
{
    const char *ts = ts_src_header(c, "Klaviyo-Timestamp");
    const char *body = c->req->body ? c->req->body : "";
    if (!ts || !ts_src_hmac_ok(c, MBEDTLS_MD_SHA256, body, c->req->body_len, ts, strlen(ts),
                               ts_src_header(c, "Klaviyo-Signature"), TS_SRC_HEX))
        return TS_ERR_AUTH;
    int64_t sent;
    json_t *v = json_string(ts);
    bool ok = v && ts_src_time(v, &sent);
    json_decref(v);
    if (!ok) {
        ts_errf(c->err, sizeof c->err, "unreadable Klaviyo-Timestamp");
        return TS_ERR_GONE;
    }
    /* The replay key is the signature: it covers body and timestamp, so a
     * request sent again is caught while Klaviyo's retries, signed anew,
     * are stored as duplicates of the events they carry. */
    snprintf(c->replay_key, sizeof c->replay_key, "sig:%.128s",
             ts_src_header(c, "Klaviyo-Signature"));
    return ts_src_window(c, sent);
}

/* The included profile of the event, NULL when none. */
static const json_t *profile_of(const json_t *payload, const json_t *ev)
{
    const json_t *rel = json_object_get(json_object_get(ev, "relationships"), "profile");
    const char *pid = json_string_value(json_object_get(json_object_get(rel, "data"), "id"));
    size_t i;
    const json_t *inc;
    json_array_foreach(json_object_get(payload, "included"), i, inc)
    {
        const char *t = json_string_value(json_object_get(inc, "type"));
        const char *id = json_string_value(json_object_get(inc, "id"));
        if (t && strcmp(t, "profile") == 0 && (!pid || (id && strcmp(id, pid) == 0)))
            return inc;
    }
    return NULL;
}

static void item(json_t *dst, const json_t *src, const char *prefix)
{
    char k[4][48];
    snprintf(k[0], sizeof k[0], "%sProductID", prefix);
    snprintf(k[1], sizeof k[1], "%sProductName", prefix);
    snprintf(k[2], sizeof k[2], "%sPrice", prefix);
    snprintf(k[3], sizeof k[3], "%sQuantity", prefix);
    ts_src_pick(dst, "product_id", src, (const char *const[]){k[0], "SKU", "product_id", NULL});
    ts_src_pick(dst, "name", src, (const char *const[]){k[1], "name", NULL});
    ts_src_pick(dst, "price", src, (const char *const[]){k[2], "ItemPrice", "price", NULL});
    ts_src_pick(dst, "quantity", src, (const char *const[]){k[3], "quantity", NULL});
}

static enum ts_err one(struct ts_src_ctx *c, size_t idx, const json_t *d)
{
    (void)idx;
    const char *topic = json_string_value(json_object_get(d, "topic"));
    const json_t *payload = json_object_get(d, "payload");
    const json_t *ev =
        json_object_get(payload, "data") ? json_object_get(payload, "data") : payload;
    const json_t *attr = json_object_get(ev, "attributes");
    const json_t *props = json_object_get(attr, "event_properties");
    char vid[200], uid[TS_SEG_MAX_ID + 1];
    const char *id = ts_src_text(d, (const char *const[]){"external_id", NULL}, vid, sizeof vid);
    const json_t *rel = json_object_get(json_object_get(ev, "relationships"), "profile");
    const char *anon = json_string_value(json_object_get(json_object_get(rel, "data"), "id"));
    const json_t *prof = profile_of(payload, ev);
    const json_t *pattr = json_object_get(prof, "attributes");
    const char *user =
        ts_src_text(pattr, (const char *const[]){"external_id", NULL}, uid, sizeof uid);
    int64_t at = 0;
    if (!ts_src_time(json_object_get(attr, "datetime"), &at))
        ts_src_time(json_object_get(attr, "timestamp"), &at);
    const char *dot = topic ? strrchr(topic, '.') : NULL;
    const char *seg = dot ? ts_src_vocab(dot + 1) : NULL;
    json_t *e;
    if (pattr) { /* the profile as Klaviyo knows it */
        char pid[220];
        snprintf(pid, sizeof pid, "%s.profile", id ? id : "");
        if (!(e = ts_src_event(c, "identify", user, anon, id ? pid : NULL, at)))
            return TS_ERR_NOMEM;
        json_t *tr = ts_src_traits(e);
        ts_src_profile(tr, pattr);
        const json_t *pp = json_object_get(pattr, "properties");
        ts_src_profile(tr, pp);
        ts_src_pick(tr, "personalization_consent", pp,
                    (const char *const[]){"personalization_consent", NULL});
    }
    if (!seg) {
        c->unknown++;
        return TS_OK;
    }
    if (!(e = ts_src_event(c, seg, user, anon, id, at)))
        return TS_ERR_NOMEM;
    json_t *p = ts_src_props(e);
    if (strcmp(seg, "Product Added") == 0 || strcmp(seg, "Product Removed") == 0)
        item(p, props, "AddedItem");
    else
        item(p, props, "");
    if (strncmp(seg, "Order", 5) == 0) {
        ts_src_pick(p, "order_id", props, (const char *const[]){"OrderId", "$event_id", NULL});
        ts_src_pick(p, "total", props, (const char *const[]){"$value", NULL});
        json_t *items = json_array();
        size_t i;
        const json_t *it;
        json_array_foreach(json_object_get(props, "Items"), i, it)
        {
            json_t *o = json_object();
            item(o, it, "");
            json_array_append_new(items, o);
        }
        json_object_set_new(p, "products", items);
    }
    return TS_OK;
}

static enum ts_err map(struct ts_src_ctx *c, const json_t *root)
{
    const json_t *data = json_object_get(root, "data");
    const char *hid = ts_src_header(c, "Klaviyo-Webhook-Id");
    const char *mid =
        json_string_value(json_object_get(json_object_get(root, "meta"), "klaviyo_webhook_id"));
    if (hid && mid && strcmp(hid, mid) != 0) {
        ts_errf(c->err, sizeof c->err, "meta.klaviyo_webhook_id does not match Klaviyo-Webhook-Id");
        return TS_ERR_INVAL;
    }
    return ts_src_each(c, data, "{\"data\": [...], \"meta\": {...}}", one);
}

const struct ts_src_vendor ts_src_klaviyo = {
    .type = TS_SRC_KLAVIYO,
    .name = "klaviyo_webhook",
    .verify = verify,
    .map = map,
    .default_window_s = 300,
};
