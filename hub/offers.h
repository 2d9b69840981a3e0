/*
 * Offers at the hub (docs/PROTOCOL.md "Offers"): the CDP's identify trait
 * `offers` stored per customer (ingest.c calls ts_hub_offers_apply), the
 * valid ones on the card (rebuild.c loads them, summary.c shows them), and
 * POST /v1/offers/redeem from a terminal: marked redeemed once, atomically,
 * with a Segment "Coupon Applied" event queued for the sinks in the same
 * transaction, and the card re-stamped in the feed.
 */
#ifndef TS_HUB_OFFERS_H
#define TS_HUB_OFFERS_H

#include "db.h"

/* The offers' part of the schema (struct ts_hub_db_part, db.h). */
enum ts_err ts_hub_offers_schema(struct ts_hub_store *s);

/* In the ingest transaction: e->offers become cust's current offers. New
 * codes are added, known ones get the new description and expiry, offers
 * not redeemed that the list no longer names are withdrawn; redeemed ones
 * stay redeemed (and off the card) whatever the CDP sends. */
enum ts_err ts_hub_offers_apply(struct ts_hub_store *s, const char *cust,
                                const struct ts_seg_event *e, int64_t now_ms);

/* cust's offers that are neither redeemed nor expired at now_ms, soonest
 * expiry first, at most TS_SEG_MAX_OFFERS, into one allocation *out
 * (free() it; strings inside it). */
enum ts_err ts_hub_offers_load(struct ts_hub_store *s, const char *cust, int64_t now_ms,
                               struct ts_seg_offer **out, size_t *n);

/* A terminal's redemption request. */
struct ts_hub_redeem_req {
    char code[TS_OFFER_MAX_CODE + 1];
    char cid[64];      /* "" = find the offer by code alone */
    char receipt[128]; /* "" = none */
};

/* Parses the body {"code", "cid"?, "receipt"?} (fuzz_offers). TS_ERR_INVAL
 * with err saying which member is wrong. */
enum ts_err ts_hub_offers_parse_redeem(const char *body, size_t len, struct ts_hub_redeem_req *r,
                                       char *err, size_t errsz);

/* POST /v1/offers/redeem for api.c (the terminal's store from its
 * certificate). */
struct ts_hub_api;
struct ts_httpd_req;
struct ts_httpd_resp;
void ts_hub_offers_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                          struct ts_httpd_resp *resp);

/* {"active": N, "redeemed": N} into *o (a json_t * object) as "offers". */
enum ts_err ts_hub_offers_stats(struct ts_hub_store *s, void *o);

#endif
