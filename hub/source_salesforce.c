/*
 * salesforce_data_action: Salesforce Data Cloud webhook data action targets
 * (https://developer.salesforce.com/docs/data/data-cloud-ref/guide/c360a-api-webhook-data-action-targets-in-customer-data-platform.html).
 *
 * - "Data Cloud data actions use the HMACSHA256 signature algorithm" with
 *   the secret key generated for the target; the signature of the payload
 *   arrives in the x-signature header ("Payload Signature", and the Java
 *   sample under "Validating the Signature", which Base64-encodes the
 *   HMAC). Hex is accepted too. Compared in constant time.
 * - Body: {"creationDateTime", "count", "schemas": [...], "events":
 *   [DataObjectDataChgEvent]}. creationDateTime is inside the signed body,
 *   so it bounds replays (replay_window_s, default 86400 s, since retries
 *   keep the payload's creation time).
 * - Each DataObjectDataChgEvent names its data model object
 *   (SourceObjectDeveloperName), the change (EventType), its id (EventUid,
 *   the dedupe key) and the record (PayloadCurrentValue) with Customer 360
 *   field names: ssot__Individual__dlm (ssot__Id__c, ssot__FirstName__c,
 *   ssot__LastName__c), ssot__LoyaltyProgramMember__dlm
 *   (ssot__MembershipNumber__c, ssot__IndividualId__c, the tier and points
 *   balance, and the member's store, ssot__PreferredStoreId__c), product browse and
 *   shopping cart engagements (ssot__ProductId__c, ssot__IndividualId__c,
 *   ssot__EngagementTypeId__c) and sales orders (ssot__Id__c,
 *   ssot__GrandTotalAmount__c, ssot__OrderStatus__c,
 *   ssot__SoldToCustomerId__c), as in the Data Cloud data model
 *   (https://developer.salesforce.com/docs/data/data-cloud-dmo-mapping/guide/c360dm-model-overview.html).
 * - Data Cloud retries failed deliveries; a 400 is kept for bad events.
 */
#include "source_int.h"

#include <stdio.h>
#include <string.h>

static enum ts_err verify(struct ts_src_ctx *c)
{
    const char *body = c->req->body ? c->req->body : "";
    const char *sig = ts_src_header(c, "x-signature");
    if (!ts_src_hmac_ok(c, MBEDTLS_MD_SHA256, body, c->req->body_len, NULL, 0, sig, TS_SRC_B64) &&
        !ts_src_hmac_ok(c, MBEDTLS_MD_SHA256, body, c->req->body_len, NULL, 0, sig, TS_SRC_HEX))
        return TS_ERR_AUTH;
    if (c->conf->window_s <= 0)
        return TS_OK;
    json_t *root = json_loadb(body, c->req->body_len, 0, NULL);
    int64_t at;
    int rc = TS_OK;
    if (!ts_src_time(json_object_get(root, "creationDateTime"), &at)) {
        ts_errf(c->err, sizeof c->err, "no creationDateTime to check the replay window against");
        rc = TS_ERR_GONE;
    } else {
        rc = ts_src_window(c, at);
    }
    json_decref(root);
    return rc;
}

#define F(x) "ssot__" x "__c"

static enum ts_err one(struct ts_src_ctx *c, size_t idx, const json_t *ev)
{
    (void)idx;
    const char *obj = json_string_value(json_object_get(ev, "SourceObjectDeveloperName"));
    const char *chg = json_string_value(json_object_get(ev, "EventType"));
    const json_t *v = json_object_get(ev, "PayloadCurrentValue");
    char vid[200], uid[TS_SEG_MAX_ID + 1];
    const char *id =
        ts_src_text(ev, (const char *const[]){"EventUid", "EventId", NULL}, vid, sizeof vid);
    int64_t at = 0;
    if (!ts_src_time(json_object_get(ev, "EventCreationDateTime"), &at))
        ts_src_time(json_object_get(ev, "EventPublishDateTime"), &at);
    if (!obj || !json_is_object(v) || (chg && strcmp(chg, "DELETE") == 0)) {
        c->unknown++;
        return TS_OK;
    }
    json_t *e, *p;
    if (strstr(obj, "Individual")) {
        const char *u = ts_src_text(v, (const char *const[]){F("Id"), NULL}, uid, sizeof uid);
        if (!(e = ts_src_event(c, "identify", u, NULL, id, at)))
            return TS_ERR_NOMEM;
        json_t *tr = ts_src_traits(e);
        ts_src_pick(tr, "first_name", v, (const char *const[]){F("FirstName"), NULL});
        ts_src_pick(tr, "last_name", v, (const char *const[]){F("LastName"), NULL});
        return TS_OK;
    }
    const char *u = ts_src_text(
        v, (const char *const[]){F("IndividualId"), F("SoldToCustomerId"), F("PartyId"), NULL}, uid,
        sizeof uid);
    if (strstr(obj, "LoyaltyProgramMember")) {
        if (!(e = ts_src_event(c, "identify", u, NULL, id, at)))
            return TS_ERR_NOMEM;
        json_t *tr = ts_src_traits(e);
        ts_src_pick(tr, "loyalty_id", v, (const char *const[]){F("MembershipNumber"), NULL});
        ts_src_pick(tr, "tier", v,
                    (const char *const[]){F("LoyaltyTierName"), F("TierName"), NULL});
        ts_src_pick(tr, "points", v, (const char *const[]){F("PointsBalance"), NULL});
        ts_src_pick(tr, "home_store", v,
                    (const char *const[]){F("PreferredStoreId"), F("EnrollmentStoreId"), NULL});
        return TS_OK;
    }
    const char *seg = NULL;
    if (strstr(obj, "ProductBrowseEngagement"))
        seg = "Product Viewed";
    else if (strstr(obj, "ShoppingCartEngagement") || strstr(obj, "CartEngagement")) {
        const char *t = json_string_value(json_object_get(v, F("EngagementTypeId")));
        seg =
            t && (strstr(t, "Remove") || strstr(t, "remove")) ? "Product Removed" : "Product Added";
    } else if (strstr(obj, "SalesOrder")) {
        const char *st = json_string_value(json_object_get(v, F("OrderStatus")));
        seg = st && strcmp(st, "Cancelled") == 0 ? "Order Cancelled" : "Order Completed";
    }
    if (!seg) {
        c->unknown++;
        return TS_OK;
    }
    if (!(e = ts_src_event(c, seg, u, NULL, id, at)))
        return TS_ERR_NOMEM;
    p = ts_src_props(e);
    ts_src_pick(p, "product_id", v, (const char *const[]){F("ProductId"), F("ProductSKU"), NULL});
    ts_src_pick(p, "name", v, (const char *const[]){F("ProductName"), NULL});
    ts_src_pick(p, "price", v, (const char *const[]){F("UnitPriceAmount"), NULL});
    ts_src_pick(p, "quantity", v, (const char *const[]){F("ProductQuantity"), NULL});
    if (strncmp(seg, "Order", 5) == 0) {
        ts_src_pick(p, "order_id", v, (const char *const[]){F("Id"), NULL});
        ts_src_pick(p, "total", v, (const char *const[]){F("GrandTotalAmount"), NULL});
        ts_src_pick(p, "currency", v, (const char *const[]){F("CurrencyId"), NULL});
    }
    return TS_OK;
}

static enum ts_err map(struct ts_src_ctx *c, const json_t *root)
{
    return ts_src_each(c, json_object_get(root, "events"),
                       "{\"creationDateTime\", \"events\": [...]}", one);
}

const struct ts_src_vendor ts_src_salesforce = {
    .type = TS_SRC_SALESFORCE,
    .name = "salesforce_data_action",
    .verify = verify,
    .map = map,
    .default_window_s = 86400,
};
