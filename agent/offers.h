/*
 * Redeeming an offer at this till (api_offers.c, docs/PROTOCOL.md "Offers"):
 * asked of the hub live, never decided here. Used by POST
 * /api/v1/offers/redeem and by the receipt tap (inputs.c, coupon_re).
 */
#ifndef TS_AGENT_OFFERS_H
#define TS_AGENT_OFFERS_H

#include "agent.h"

#include <jansson.h>

/*
 * Redeems code (cid: whose offer; NULL = the card on screen's, "" = found by
 * code alone, as for a receipt, whose customer is not the screen's to say;
 * receipt may be NULL). Returns the HTTP status to answer with:
 * 200 (*offer, when not NULL, the hub's "redeemed" object, json_decref it,
 * and *cid_out the customer), the hub's refusal (404, 409, 410) or 503 when it
 * cannot be checked, msg saying why in words. Publishes `offer` on the bus
 * and drops a redeemed offer from the card on screen.
 */
unsigned ts_agent_offer_redeem(struct ts_agent *a, const char *code, const char *cid,
                               const char *receipt, json_t **offer, char *cid_out, size_t cidsz,
                               char *msg, size_t msgsz);

#endif
