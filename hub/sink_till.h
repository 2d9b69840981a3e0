/*
 * What the vendor files read from the two stored till events that are not
 * sales (hub/sink.h): a consent choice (kind TS_SINK_CONSENT, a Segment
 * identify whose traits hold personalization_consent / email_consent /
 * sms_consent, hub/purchase_parse.c) and a redeemed offer (kind
 * TS_SINK_COUPON, Segment's "Coupon Applied" track, hub/offers.c).
 */
#ifndef TS_HUB_SINK_TILL_H
#define TS_HUB_SINK_TILL_H

#include "sink.h"

/* Each choice: 1 given, 0 withdrawn, -1 not asked at the till. */
struct ts_sink_consent {
    int personalization, email, sms;
    const char *store; /* context.tillside.store; NULL when absent */
};

/* The choices of a consent event; TS_ERR_INVAL with err when it names none. */
enum ts_err ts_sink_consent_of(const struct ts_sink_event *e, struct ts_sink_consent *c, char *err,
                               size_t errsz);

struct ts_sink_coupon {
    const char *code;     /* properties.coupon_id; never NULL */
    const char *name;     /* properties.coupon_name; NULL when absent */
    const char *order_id; /* properties.order_id (the receipt); NULL when absent */
    const char *store;    /* context.tillside.store; NULL when absent */
};

/* The redeemed offer of a Coupon Applied event; TS_ERR_INVAL with err when
 * it has no coupon_id. */
enum ts_err ts_sink_coupon_of(const struct ts_sink_event *e, struct ts_sink_coupon *c, char *err,
                              size_t errsz);

/* The properties of a redeemed offer as the vendors' custom events carry
 * them: {coupon_id, coupon_name?, order_id?, store?, channel: "in store"}
 * (a new json_t *, NULL when out of memory). */
void *ts_sink_coupon_props(const struct ts_sink_coupon *c);

#endif
