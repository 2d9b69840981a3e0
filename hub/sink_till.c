/* Consent and coupon events as the vendor files read them (sink_till.h). */
#include "sink_till.h"

#include <jansson.h>

static const char *tillside(const struct ts_sink_event *e, const char *key)
{
    const json_t *tl = json_object_get(json_object_get(e->event, "context"), "tillside");
    return json_string_value(json_object_get(tl, key));
}

static int choice(const json_t *traits, const char *name)
{
    const json_t *v = json_object_get(traits, name);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

enum ts_err ts_sink_consent_of(const struct ts_sink_event *e, struct ts_sink_consent *c, char *err,
                               size_t errsz)
{
    const json_t *traits = json_object_get(e->event, "traits");
    c->personalization = choice(traits, "personalization_consent");
    c->email = choice(traits, "email_consent");
    c->sms = choice(traits, "sms_consent");
    c->store = tillside(e, "store");
    if (c->personalization < 0 && c->email < 0 && c->sms < 0) {
        ts_errf(err, errsz, "the consent event names no choice");
        return TS_ERR_INVAL;
    }
    return TS_OK;
}

enum ts_err ts_sink_coupon_of(const struct ts_sink_event *e, struct ts_sink_coupon *c, char *err,
                              size_t errsz)
{
    const json_t *p = ts_sink_props(e);
    c->code = json_string_value(json_object_get(p, "coupon_id"));
    c->name = json_string_value(json_object_get(p, "coupon_name"));
    c->order_id = json_string_value(json_object_get(p, "order_id"));
    c->store = tillside(e, "store");
    if (!c->code || !*c->code) {
        ts_errf(err, errsz, "the coupon event has no coupon_id");
        return TS_ERR_INVAL;
    }
    return TS_OK;
}

void *ts_sink_coupon_props(const struct ts_sink_coupon *c)
{
    json_t *p = json_pack("{s:s,s:s}", "coupon_id", c->code, "channel", "in store");
    if (p && c->name)
        json_object_set_new(p, "coupon_name", json_string(c->name));
    if (p && c->order_id)
        json_object_set_new(p, "order_id", json_string(c->order_id));
    if (p && c->store)
        json_object_set_new(p, "store", json_string(c->store));
    return p;
}
