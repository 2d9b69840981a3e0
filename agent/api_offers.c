/*
 * POST /api/v1/offers/redeem (bearer token; PROTOCOL.md "Offers"): the POS
 * redeems an offer on the customer's card. The hub decides (POST
 * /v1/offers/redeem over the terminal's mutual TLS, the live lookup's link):
 * an offer can be used once in the whole chain, so the till never accepts
 * one it could not check. The answer and an `offer` event on the bus say
 * what happened; a redeemed offer leaves the card on screen at once.
 */
#include "api_int.h"
#include "hublink.h"
#include "offers.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDEEM_MIN_TIMEOUT_MS 3000 /* a fresh TLS handshake may be needed */

/* The session's card cid into out ("" when none). */
static void session_cid(struct ts_agent *a, char *out, size_t outsz)
{
    char *s = ts_agent_session(a);
    json_t *o = s ? json_loads(s, 0, NULL) : NULL;
    const char *cid = json_string_value(json_object_get(json_object_get(o, "card"), "cid"));
    ts_strlcpy(out, cid ? cid : "", outsz);
    json_decref(o);
    free(s);
}

/* The redeemed offer leaves the card on screen (and the sessions the
 * page may step back to show it again from the cache). */
static void drop_from_session(struct ts_agent *a, const char *cid, const char *code)
{
    pthread_mutex_lock(&a->mu);
    json_t *s = a->session_json ? json_loads(a->session_json, 0, NULL) : NULL;
    json_t *card = json_object_get(s, "card");
    json_t *offers = json_object_get(card, "offers");
    const char *scid = json_string_value(json_object_get(card, "cid"));
    bool changed = false;
    for (size_t i = json_array_size(offers); scid && strcmp(scid, cid) == 0 && i-- > 0;) {
        const char *c = json_string_value(json_object_get(json_array_get(offers, i), "code"));
        if (c && strcmp(c, code) == 0 && json_array_remove(offers, i) == 0)
            changed = true;
    }
    char *text = changed ? json_dumps(s, JSON_COMPACT) : NULL;
    if (text) {
        free(a->session_json);
        a->session_json = text;
    }
    pthread_mutex_unlock(&a->mu);
    json_decref(s);
}

static void publish(struct ts_agent *a, const char *code, const char *cid, int status,
                    const char *msg)
{
    json_t *ev = json_pack("{s:s, s:s?, s:b, s:i, s:s?}", "code", code, "cid", cid[0] ? cid : NULL,
                           "redeemed", status == 200, "status", status, "message", msg);
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (s)
        ts_bus_publish(a->bus, "offer", s);
    free(s);
}

unsigned ts_agent_offer_redeem(struct ts_agent *a, const char *code, const char *cidv,
                               const char *receipt, json_t **offer, char *cid_out, size_t cidsz,
                               char *msg, size_t msgsz)
{
    char cid[64] = "";
    msg[0] = '\0';
    if (cid_out && cidsz)
        cid_out[0] = '\0';
    if (offer)
        *offer = NULL;
    /* Whose offer: the caller's cid, else the card on screen (a shared
     * campaign code is then found on the right customer). */
    if (cidv) /* "" = by code alone */
        ts_strlcpy(cid, cidv, sizeof cid);
    else
        session_cid(a, cid, sizeof cid);
    json_t *req = json_pack("{s:s, s:s?, s:s?}", "code", code, "cid", cid[0] ? cid : NULL,
                            "receipt", receipt);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text) {
        snprintf(msg, msgsz, "out of memory");
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    int timeout = (int)a->cfg.timeout_ms;
    if (timeout < REDEEM_MIN_TIMEOUT_MS)
        timeout = REDEEM_MIN_TIMEOUT_MS;
    int status = 0;
    json_t *ans = NULL;
    enum ts_err rc = ts_hublink_post(a->hub, "offer", "/v1/offers/redeem", text, strlen(text),
                                     timeout, &status, &ans);
    free(text);
    unsigned st;
    if (rc == TS_ERR_CONNECT || (rc == TS_OK && (status == 503 || status == 507))) {
        snprintf(msg, msgsz,
                 "offer %.64s cannot be checked now: the hub is not reachable; do not accept "
                 "it until the till is online again",
                 code);
        st = MHD_HTTP_SERVICE_UNAVAILABLE;
    } else if (rc != TS_OK) {
        snprintf(msg, msgsz, "offer %.64s could not be checked: %s", code, ts_strerror(rc));
        st = MHD_HTTP_BAD_GATEWAY;
    } else if (status == 200) {
        const char *acid = json_string_value(json_object_get(ans, "cid"));
        if (acid)
            drop_from_session(a, acid, code);
        if (acid && cid_out)
            ts_strlcpy(cid_out, acid, cidsz);
        if (offer)
            *offer = json_incref(json_object_get(ans, "redeemed"));
        st = MHD_HTTP_OK;
        TS_INFO("offer", "offer %.64s redeemed", code);
    } else {
        /* The hub's refusal as it words it: already redeemed (409), expired
         * (410), unknown (404). */
        const char *e = json_string_value(json_object_get(ans, "error"));
        snprintf(msg, msgsz, "%s", e ? e : "the hub refused the offer");
        st = status >= 400 && status < 500 ? (unsigned)status : MHD_HTTP_BAD_GATEWAY;
        TS_INFO("offer", "offer %.64s refused: %s", code, msg);
    }
    publish(a, code, st == MHD_HTTP_OK && cid_out && cid_out[0] ? cid_out : cid, (int)st,
            st == MHD_HTTP_OK ? NULL : msg);
    json_decref(ans);
    return st;
}

enum MHD_Result ts_api_post_offer_redeem(struct ts_api *api, struct MHD_Connection *c,
                                         const ts_buf *body)
{
    json_t *in = json_loadb(body->data ? body->data : "", body->len, JSON_REJECT_DUPLICATES, NULL);
    const char *code = json_string_value(json_object_get(in, "code"));
    const char *cidv = json_string_value(json_object_get(in, "cid"));
    const char *receipt = json_string_value(json_object_get(in, "receipt"));
    char cid[64], msg[320];
    if (!json_is_object(in) || !code || !*code || strlen(code) > TS_OFFER_CODE_MAX ||
        (json_object_get(in, "receipt") && !receipt) || (json_object_get(in, "cid") && !cidv)) {
        json_decref(in);
        return ts_api_send_error(c, MHD_HTTP_BAD_REQUEST,
                                 "body must be {\"code\": \"...\", \"receipt\"?: \"...\", "
                                 "\"cid\"?: \"...\"} with a code of 1 to 64 characters",
                                 NULL);
    }
    json_t *offer = NULL;
    unsigned st = ts_agent_offer_redeem(api->a, code, cidv, receipt, &offer, cid, sizeof cid, msg,
                                        sizeof msg);
    json_decref(in);
    if (st != MHD_HTTP_OK)
        return ts_api_send_error(c, st, msg, NULL);
    json_t *out =
        json_pack("{s:b, s:o?, s:s?}", "redeemed", 1, "offer", offer, "cid", cid[0] ? cid : NULL);
    char *o = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    enum MHD_Result ret =
        o ? ts_api_send_json(c, MHD_HTTP_OK, o, NULL)
          : ts_api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    free(o);
    return ret;
}
