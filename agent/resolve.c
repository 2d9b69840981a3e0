/*
 * Receipt and order scans (PRODUCT.md §4.2): the sale behind a scanned
 * receipt barcode or online-order QR, and the customer who made it. The
 * card comes from the cache when the hub already joined the receipt's key
 * to it; the sale from this terminal's purchase journal (a receipt it
 * recorded) or from the hub (`GET /v1/lookup?receipt=` / `?order=`).
 */
#include "agent.h"
#include "hublink.h"
#include "outbox.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sale as the hub describes it (PROTOCOL.md), from a journal event. */
static json_t *purchase_from_event(const char *event)
{
    json_t *e = json_loads(event, 0, NULL);
    if (!e)
        return NULL;
    json_t *pr = json_object_get(e, "properties");
    json_t *tl = json_object_get(json_object_get(e, "context"), "tillside");
    json_t *p = json_object();
    json_object_set(p, "receipt", json_object_get(pr, "order_id"));
    json_object_set(p, "store", json_object_get(tl, "store"));
    json_object_set(p, "terminal", json_object_get(tl, "terminal"));
    json_object_set(p, "total", json_object_get(pr, "total"));
    json_object_set(p, "currency", json_object_get(pr, "currency"));
    json_object_set(p, "at", json_object_get(e, "originalTimestamp"));
    json_object_set_new(p, "status", json_string("in store"));
    json_object_set(p, "products", json_object_get(pr, "products"));
    /* The cid lets the caller find the card without the hub. */
    json_t *cid = json_object_get(tl, "cid");
    if (json_is_string(cid))
        json_object_set(p, "cid", cid);
    json_decref(e);
    return p;
}

static void url_escape(const char *in, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)in; *s && o + 4 < outsz; s++) {
        if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.' || *s == '~') {
            out[o++] = (char)*s;
        } else {
            out[o++] = '%';
            out[o++] = hex[*s >> 4];
            out[o++] = hex[*s & 15];
        }
    }
    out[o] = '\0';
}

/* GET /v1/lookup?receipt= or ?order= within lookup_timeout_ms through the
 * hub link (which checks the card's key version and caches it, as for a
 * loyalty scan); the parsed answer or NULL (404, offline, error). */
static json_t *hub_lookup(struct ts_agent *a, enum ts_ident_kind kind, const char *value)
{
    char esc[3 * TS_SCAN_MAX + 1], path[3 * TS_SCAN_MAX + 64];
    json_t *ans = NULL;
    url_escape(value, esc, sizeof esc);
    snprintf(path, sizeof path, "/v1/lookup?%s=%s", kind == TS_IDENT_RECEIPT ? "receipt" : "order",
             esc);
    if (ts_hublink_get(a->hub, ts_ident_kind_name(kind), path, (int)a->cfg.lookup_timeout_ms, &ans,
                       NULL) != TS_OK)
        return NULL;
    return ans;
}

enum ts_err ts_agent_resolve_sale(struct ts_agent *a, enum ts_ident_kind kind, const char *value,
                                  char keys[][TS_IDENT_KEY_HEX], int nkeys, bool online,
                                  json_t *sess)
{
    char *card = NULL, state[8];
    int64_t synced = 0;
    const char *source = NULL;
    json_t *sale = NULL, *card_o = NULL;

    if (ts_agent_cache_find(a, keys, nkeys, &card, &synced) != TS_OK)
        card = NULL;
    pthread_mutex_lock(&a->mu);
    if (card)
        a->lookups_hit++;
    else
        a->lookups_miss++;
    pthread_mutex_unlock(&a->mu);
    if (card) {
        card_o = json_loads(card, 0, NULL);
        source = "cache";
        free(card);
    }
    /* A receipt this terminal recorded: the journal has the sale even
     * before (or without) the hub. */
    char *event = NULL;
    if (kind == TS_IDENT_RECEIPT && a->journal &&
        ts_outbox_find_receipt(a->journal, value, &event, state) == TS_OK) {
        sale = purchase_from_event(event);
        free(event);
        if (!source)
            source = "journal";
    }
    if (online && (!sale || !card_o)) {
        json_t *ans = hub_lookup(a, kind, value);
        if (ans) {
            json_t *s = json_object_get(ans, kind == TS_IDENT_RECEIPT ? "purchase" : "order");
            if (!sale && json_is_object(s))
                sale = json_incref(s);
            json_t *c = json_object_get(ans, "card");
            if (!card_o && json_is_object(c)) {
                card_o = json_incref(c);
                synced = ts_now_wall_ms();
                source = "live";
            } else if (!source) {
                source = "live";
            }
            json_decref(ans);
        }
    }
    if (sale)
        json_object_del(sale, "cid");
    if (card_o || sale) {
        char synced_s[32];
        ts_iso8601(synced ? synced : ts_now_wall_ms(), synced_s, sizeof synced_s);
        json_object_set_new(sess, "status", json_string("found"));
        json_object_set_new(sess, "source", json_string(source));
        json_object_set_new(sess, "synced_at", json_string(synced_s));
        json_object_set_new(sess, "card", card_o ? card_o : json_null());
        if (sale)
            json_object_set_new(sess, kind == TS_IDENT_RECEIPT ? "purchase" : "order", sale);
        return TS_OK;
    }
    return TS_ERR_NOTFOUND;
}
