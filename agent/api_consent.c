/*
 * Consent at the till (PROTOCOL.md "POST /api/v1/consent"): the customer at
 * the counter opts in or out of personalisation (and marketing by e-mail or
 * SMS), the associate records it on the page or the POS posts it. The
 * choice is
 *   - applied to the card on screen at once (without personalisation the
 *     card shows who the customer is and nothing about their browsing, as
 *     the hub's cards do: hub/summary.c);
 *   - committed to the one journal under "consent:<messageId>" as a Segment
 *     identify with the consent traits
 *     (https://segment.com/docs/connections/spec/identify/: userId or
 *     anonymousId, traits), terminal, time and the associate's id in
 *     context.tillside: the hub keeps it as an audit row, updates the
 *     profile (every store's card at its next feed page) and sends it to the
 *     sinks that take consent.
 * Behind the API token or the page key, like session/clear (session.c).
 */
#include "purchase.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const choices[][2] = {
    {"personalization", "personalization_consent"},
    {"email", "email_consent"},
    {"sms", "sms_consent"},
};

static void validate(json_t *c, json_t *fields)
{
    if (!json_is_object(c)) {
        json_array_append_new(fields, json_string("(body)"));
        return;
    }
    size_t given = 0;
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++) {
        json_t *v = json_object_get(c, choices[i][0]);
        if (v && !json_is_boolean(v))
            json_array_append_new(fields, json_string(choices[i][0]));
        given += json_is_boolean(v);
    }
    if (!given)
        json_array_append_new(fields, json_string("personalization"));
    json_t *as = json_object_get(c, "associate");
    if (as && !json_is_null(as) && !ts_till_text_ok(as, 64))
        json_array_append_new(fields, json_string("associate"));
    json_t *cid = json_object_get(c, "cid");
    if (cid && !json_is_null(cid) && !ts_till_text_ok(cid, 64))
        json_array_append_new(fields, json_string("cid"));
    json_t *cust = json_object_get(c, "customer");
    if (cust && !json_is_null(cust) &&
        (!json_is_object(cust) || !ts_till_text_ok(json_object_get(cust, "code"), TS_SCAN_MAX - 1)))
        json_array_append_new(fields, json_string("customer.code"));
}

/* The card on screen's cid ("" when none). */
static void screen_cid(struct ts_agent *a, char *out, size_t outsz)
{
    char *text = ts_agent_session(a);
    json_t *s = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    const char *cid = json_string_value(json_object_get(json_object_get(s, "card"), "cid"));
    ts_strlcpy(out, cid ? cid : "", outsz);
    json_decref(s);
}

/* Whose consent: the body's cid, else its customer code, else the card on
 * screen (the page's control). "" when nobody. */
static void whose(struct ts_agent *a, json_t *c, char *cid, size_t cidsz)
{
    const char *given = json_string_value(json_object_get(c, "cid"));
    json_t *code = json_object_get(json_object_get(c, "customer"), "code");
    if (given)
        ts_strlcpy(cid, given, cidsz);
    else if (json_is_string(code))
        ts_till_code_cid(a, code, cid, cidsz);
    else
        screen_cid(a, cid, cidsz);
}

/* The card on screen, when it is cid's, takes the choice at once. */
static void apply_on_screen(struct ts_agent *a, const char *cid, json_t *personalization)
{
    if (!json_is_boolean(personalization))
        return;
    char *text = NULL;
    pthread_mutex_lock(&a->mu);
    json_t *s = a->session_json ? json_loads(a->session_json, 0, NULL) : NULL;
    json_t *card = json_object_get(s, "card");
    const char *on = json_string_value(json_object_get(card, "cid"));
    if (on && strcmp(on, cid) == 0) {
        json_object_set(card, "consent", personalization);
        if (json_is_false(personalization)) {
            json_object_del(card, "interests");
            json_object_del(card, "orders");
            json_object_del(card, "suggested");
        }
        text = json_dumps(s, JSON_COMPACT);
        if (text) {
            free(a->session_json);
            a->session_json = strdup(text);
        }
    }
    pthread_mutex_unlock(&a->mu);
    json_decref(s);
    if (text)
        ts_bus_publish(a->bus, "customer", text);
    free(text);
}

enum ts_err ts_consent_submit(struct ts_purch *pu, const char *source, json_t *c,
                              char message_id[64], bool *duplicate, json_t *fields, char *err,
                              size_t errsz)
{
    static const char *const idents[] = {"cid", "customer.code", "associate", NULL};
    char cid[96] = "", mid[37], key[48];
    if (!pu) {
        ts_errf(err, errsz, "the purchase journal is not open");
        return TS_ERR_CLOSED;
    }
    struct ts_agent *a = pu->core;
    bool guard_ok = ts_till_guard(a, "consent", source, c, idents, fields, err, errsz);
    validate(c, fields);
    if (!guard_ok)
        return TS_ERR_INVAL;
    /* A channel the till does not offer ([page] consent_channels) is not
     * recorded: the customer was never asked about it. */
    static const struct {
        const char *name;
        unsigned bit;
    } offered[] = {{"email", TS_CONSENT_EMAIL}, {"sms", TS_CONSENT_SMS}};
    for (size_t i = 0; json_array_size(fields) == 0 && i < 2; i++)
        if (json_object_get(c, offered[i].name) && !(a->cfg.consent_channels & offered[i].bit)) {
            json_array_append_new(fields, json_string(offered[i].name));
            ts_errf(err, errsz,
                    "invalid fields: %s (this till does not record consent for it: [page] "
                    "consent_channels)",
                    offered[i].name);
            return TS_ERR_INVAL;
        }
    if (json_array_size(fields) == 0) {
        whose(a, c, cid, sizeof cid);
        if (!cid[0])
            json_array_append_new(fields, json_string("customer"));
    }
    if (json_array_size(fields) > 0) {
        ts_till_fields_text(fields, err, errsz);
        if (!cid[0] && json_array_size(fields) == 1)
            ts_errf(err, errsz,
                    "invalid fields: customer (no known customer: scan the card first, or send "
                    "cid or customer.code)");
        return TS_ERR_INVAL;
    }
    ts_till_uuid4(mid);
    snprintf(key, sizeof key, "consent:%s", mid);
    int64_t now = ts_now_wall_ms();
    json_t *ev = ts_till_envelope(a, "identify", mid, c, now, key, source, cid);
    json_t *tl = json_object_get(json_object_get(ev, "context"), "tillside");
    json_t *traits = json_object();
    for (size_t i = 0; traits && i < sizeof choices / sizeof choices[0]; i++) {
        json_t *v = json_object_get(c, choices[i][0]);
        if (json_is_boolean(v))
            json_object_set(traits, choices[i][1], v);
    }
    char *event = NULL;
    if (ev && tl && traits) {
        json_object_set_new(tl, "kind", json_string("consent"));
        json_t *as = json_object_get(c, "associate");
        if (json_is_string(as))
            json_object_set(tl, "associate", as);
        json_object_set(ev, "traits", traits);
        event = json_dumps(ev, JSON_COMPACT);
    }
    json_decref(ev);
    if (!event) {
        json_decref(traits);
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    int rc = ts_till_commit(pu, "consent", key, source, cid, event, mid, now, duplicate, message_id,
                            err, errsz);
    free(event);
    if (rc == TS_OK) {
        apply_on_screen(a, cid, json_object_get(c, "personalization"));
        json_t *bus =
            json_pack("{s:s, s:s, s:O, s:s?}", "message_id", mid, "cid", cid, "choices", traits,
                      "associate", json_string_value(json_object_get(c, "associate")));
        ts_till_publish(a, "consent", bus);
    }
    json_decref(traits);
    return rc;
}
