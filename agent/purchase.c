/*
 * Purchases on the agent (see purchase.h): the local API body is checked
 * field by field, turned into a Segment "Order Completed" track event
 * (https://segment.com/docs/connections/spec/ecommerce/v2/#order-completed)
 * and committed to the outbox before anyone hears "202".
 */
#include "purchase.h"
#include "txcount.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_purchase_outbox_path(const struct ts_agent_config *c, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/outbox.db", c->state_dir);
}

enum ts_err ts_purchase_open(struct ts_agent *core, struct ts_purch **out, char *err, size_t errsz)
{
    char path[TS_AGENT_PATH_MAX + 16];
    struct ts_purch *p = calloc(1, sizeof *p);
    if (!p)
        return TS_ERR_NOMEM;
    p->core = core;
    ts_purchase_outbox_path(&core->cfg, path, sizeof path);
    int rc = ts_worker_init(&p->w);
    if (rc == TS_OK)
        rc = ts_outbox_open(path, NULL, &p->ob, err, errsz);
    if (rc == TS_OK && (rc = ts_txcount_open(core->cfg.state_dir, &p->tx)))
        ts_outbox_close(p->ob);
    if (rc) {
        ts_worker_destroy(&p->w);
        free(p);
        return rc;
    }
    *out = p;
    return TS_OK;
}

void ts_purchase_close(struct ts_purch *p)
{
    if (!p)
        return;
    ts_outbox_close(p->ob);
    ts_txcount_close(p->tx);
    ts_worker_destroy(&p->w);
    free(p);
}

/* ---- validation -------------------------------------------------------------*/

static void bad(json_t *fields, const char *name)
{
    json_array_append_new(fields, json_string(name));
}

/* A printable string of 1..max bytes (no control characters). */
bool ts_till_text_ok(json_t *v, size_t max)
{
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

bool ts_till_amount_ok(json_t *v)
{
    return json_is_number(v) && isfinite(json_number_value(v)) && json_number_value(v) >= 0 &&
           json_number_value(v) < 1e12;
}

/* quantity: a whole number from 1 (a JSON integer, or a real like 2.0). */
bool ts_till_quantity_ok(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 1 && json_integer_value(v) <= 1000000;
    double d = json_is_real(v) ? json_real_value(v) : 0;
    return d >= 1 && d <= 1000000 && floor(d) == d;
}

/* A time between 2000 and 2100: outside it the till's clock or the POS is
 * wrong, and the hub would refuse the event after the 202. */
static bool time_ok(json_t *v)
{
    int64_t ms;
    return !v || json_is_null(v) ||
           (json_is_string(v) && ts_iso8601_parse(json_string_value(v), &ms) == TS_OK &&
            ms >= 946684800000LL && ms < 4102444800000LL);
}

static void check_lines(json_t *products, json_t *fields)
{
    if (!json_is_array(products) || json_array_size(products) == 0 ||
        json_array_size(products) > TS_PURCHASE_MAX_PRODUCTS) {
        bad(fields, "products");
        return;
    }
    size_t i;
    json_t *l;
    char name[64];
    json_array_foreach(products, i, l)
    {
        if (!json_is_object(l)) {
            snprintf(name, sizeof name, "products[%zu]", i);
            bad(fields, name);
            continue;
        }
        json_t *sku = json_object_get(l, "sku"), *pid = json_object_get(l, "product_id");
        json_t *nm = json_object_get(l, "name");
        /* null counts as absent: a line needs a real sku or product_id */
        bool has_sku = sku && !json_is_null(sku), has_pid = pid && !json_is_null(pid);
        if ((has_sku && !ts_till_text_ok(sku, 128)) || (!has_sku && !has_pid)) {
            snprintf(name, sizeof name, "products[%zu].sku", i);
            bad(fields, name);
        }
        if (pid && !json_is_null(pid) && !ts_till_text_ok(pid, 128)) {
            snprintf(name, sizeof name, "products[%zu].product_id", i);
            bad(fields, name);
        }
        if (nm && !json_is_null(nm) && !json_is_string(nm)) {
            snprintf(name, sizeof name, "products[%zu].name", i);
            bad(fields, name);
        }
        if (!ts_till_quantity_ok(json_object_get(l, "quantity"))) {
            snprintf(name, sizeof name, "products[%zu].quantity", i);
            bad(fields, name);
        }
        if (!ts_till_amount_ok(json_object_get(l, "price"))) {
            snprintf(name, sizeof name, "products[%zu].price", i);
            bad(fields, name);
        }
    }
}

/* sale: a purchase's own fields too (tax, discount, transaction_started_at),
 * in the order PROTOCOL.md lists them. */
static void validate_order(json_t *p, json_t *fields, bool sale)
{
    json_t *cur = json_object_get(p, "currency");
    const char *c = json_string_value(cur);
    bool cur_ok = c && strlen(c) == 3;
    for (int i = 0; cur_ok && i < 3; i++)
        cur_ok = (c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= 'a' && c[i] <= 'z');
    if (!cur_ok)
        bad(fields, "currency");
    if (!ts_till_amount_ok(json_object_get(p, "total")))
        bad(fields, "total");
    static const char *const opt_amounts[] = {"tax", "discount"};
    for (size_t i = 0; sale && i < 2; i++) {
        json_t *v = json_object_get(p, opt_amounts[i]);
        if (v && !json_is_null(v) && !ts_till_amount_ok(v))
            bad(fields, opt_amounts[i]);
    }
    if (!time_ok(json_object_get(p, "at")))
        bad(fields, "at");
    check_lines(json_object_get(p, "products"), fields);
    /* When the POS opened the sale: a scan since then is the customer's. */
    if (sale && !time_ok(json_object_get(p, "transaction_started_at")))
        bad(fields, "transaction_started_at");
    json_t *cust = json_object_get(p, "customer");
    if (cust && !json_is_null(cust)) {
        json_t *code = json_object_get(cust, "code");
        if (!json_is_object(cust) || !ts_till_text_ok(code, TS_SCAN_MAX - 1))
            bad(fields, "customer.code");
    }
}

/* Appends the name of every bad field to fields (PROTOCOL.md lists them). */
static void validate(json_t *p, json_t *fields)
{
    if (!json_is_object(p)) {
        bad(fields, "(body)");
        return;
    }
    if (!ts_till_text_ok(json_object_get(p, "receipt"), 64))
        bad(fields, "receipt");
    json_t *bc = json_object_get(p, "barcode");
    if (bc && !ts_till_text_ok(bc, 128))
        bad(fields, "barcode");
    validate_order(p, fields, true);
}

void ts_till_validate_order(json_t *p, json_t *fields)
{
    validate_order(p, fields, false);
}

/*
 * The payment card guard over every string of the body (PRODUCT.md §6: never
 * keep a card number in a purchase). A card number in free text (a product
 * name, a note) is masked to its last four and the purchase goes on; in an
 * identifier (receipt, barcode, customer code, sku, product_id) masking would
 * change what the purchase names, so those fields are refused (400, named).
 * Logged once per body, masked; every body with a number is counted in
 * tillside_guard_drops_total. false when the body must be refused.
 */
bool ts_till_guard(struct ts_agent *a, const char *what, const char *source, json_t *p,
                   const char *const *idents, json_t *fields, char *err, size_t errsz)
{
    struct ts_guard_json_report rep;
    json_t *refused = json_array();
    int rc = refused ? ts_guard_json(&a->cfg.guard, p, idents, refused, &rep) : TS_ERR_NOMEM;
    if (rc == TS_OK && rep.refused == 0 && rep.masked == 0) {
        json_decref(refused);
        return true;
    }
    if (rc != TS_OK && !refused) {
        ts_errf(err, errsz, "out of memory");
        return false;
    }
    atomic_fetch_add(&a->api_guard_drops, 1);
    if (rep.refused == 0 && rc == TS_OK) {
        TS_WARN("guard", "payment card number masked in %s of a %s from %s (…%s)", rep.field, what,
                source, rep.last4);
        json_decref(refused);
        return true;
    }
    TS_WARN("guard", "%s from %s refused: payment card %s in %s (…%s)", what, source,
            rep.kind == TS_GUARD_TRACK ? "track data" : "number", rep.field, rep.last4);
    ts_buf b = {0};
    size_t i;
    json_t *f;
    json_array_foreach(refused, i, f)
    {
        ts_buf_printf(&b, "%s%s", i ? ", " : "", json_string_value(f));
        json_array_append(fields, f);
    }
    ts_errf(err, errsz,
            "payment card data in %s: refused (a card number is never recorded, and masking an "
            "identifier would change what it names)",
            b.data ? b.data : "the body");
    ts_buf_free(&b);
    json_decref(refused);
    return false;
}

/* ---- customer -----------------------------------------------------------------*/

/* The cid of a card JSON text, into out ("" when none). */
static void card_cid(const char *card, char *out, size_t outsz)
{
    json_t *o = card ? json_loads(card, 0, NULL) : NULL;
    const char *cid = json_string_value(json_object_get(o, "cid"));
    ts_strlcpy(out, cid ? cid : "", outsz);
    json_decref(o);
}

/* The cid of the session on screen ("" when none or unknown). */
static void session_cid(struct ts_agent *a, char *out, size_t outsz)
{
    out[0] = '\0';
    char *text = ts_agent_session(a); /* the core's copy, under its lock */
    json_t *s = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    const char *cid = json_string_value(json_object_get(json_object_get(s, "card"), "cid"));
    ts_strlcpy(out, cid ? cid : "", outsz);
    json_decref(s);
}

/* The card of the latest loyalty scan at or after opened_ms: the session on
 * screen, else the sessions shown before it (a misscan or a product after
 * the card does not lose the customer). A receipt or order scan shows
 * another sale's customer and never counts. "" when none. */
static void transaction_cid(struct ts_agent *a, int64_t opened_ms, char *cid, size_t cidsz)
{
    cid[0] = '\0';
    for (int n = 0; n <= TS_AGENT_RECENT && !cid[0]; n++) {
        char *text = NULL;
        if (n == 0) {
            pthread_mutex_lock(&a->mu);
            text = a->session_json ? strdup(a->session_json) : NULL;
            pthread_mutex_unlock(&a->mu);
        } else {
            text = ts_agent_previous(a, n);
        }
        json_t *s = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        json_t *scan = json_object_get(s, "scan");
        const char *at = json_string_value(json_object_get(scan, "at"));
        const char *kind = json_string_value(json_object_get(scan, "kind"));
        const char *c = json_string_value(json_object_get(json_object_get(s, "card"), "cid"));
        int64_t at_ms;
        bool inside = at && ts_iso8601_parse(at, &at_ms) == TS_OK && at_ms >= opened_ms;
        if (inside && c && kind && !strcmp(kind, "loyalty"))
            ts_strlcpy(cid, c, cidsz);
        bool before = s && !inside;
        json_decref(s);
        if (before)
            break; /* older sessions were scanned before the sale opened too */
    }
}

void ts_till_code_cid(struct ts_agent *a, json_t *code, char *cid, size_t cidsz)
{
    struct ts_scan scan;
    char norm[TS_SCAN_MAX], keys[2][TS_IDENT_KEY_HEX];
    int nkeys = 0;
    cid[0] = '\0';
    if (!json_is_string(code))
        return;
    if (ts_scan_from_text("purchase", json_string_value(code), json_string_length(code), NULL,
                          &scan) == TS_OK &&
        ts_ident_normalize(scan.data, scan.data_len, norm, sizeof norm) == TS_OK)
        nkeys = ts_agent_ident_keys(&a->cfg, TS_IDENT_LOYALTY, norm, keys);
    char *card = NULL;
    int64_t synced;
    if (ts_agent_cache_find(a, keys, nkeys, &card, &synced) != TS_OK)
        card = NULL;
    card_cid(card, cid, cidsz);
    free(card);
}

/*
 * Whose purchase (PROTOCOL.md "Attribution"): only the transaction says.
 * A customer code in the body (the POS, or the receipt tap's loyalty_re)
 * is looked up in the cache (never sent anywhere itself: only the card's
 * cid travels); else, when the POS says when the sale opened
 * (transaction_started_at), the card of a loyalty scan since then
 * (transaction_cid); else the sale is anonymous. The card still on screen
 * from an earlier customer never decides. "" when anonymous.
 */
static void resolve_customer(struct ts_agent *a, json_t *p, char *cid, size_t cidsz)
{
    cid[0] = '\0';
    json_t *code = json_object_get(json_object_get(p, "customer"), "code");
    if (!json_is_string(code)) {
        const char *opened = json_string_value(json_object_get(p, "transaction_started_at"));
        int64_t opened_ms;
        if (opened && ts_iso8601_parse(opened, &opened_ms) == TS_OK)
            transaction_cid(a, opened_ms, cid, cidsz);
        return;
    }
    ts_till_code_cid(a, code, cid, cidsz);
}

/* ---- the event -------------------------------------------------------------*/

/* A random UUID whose hex happens to hold 13..19 decimal digits (across
 * its dashes) that pass Luhn reads as a card number to the guard, and the
 * hub would refuse the event for its messageId (about one in 20,000 ids;
 * fuzz_purchase_body found it): such an id is drawn again. */
void ts_till_uuid4(char out[37])
{
    for (int tries = 0; tries < 16; tries++) {
        uint8_t b[16];
        if (ts_random(b, sizeof b) != TS_OK) /* getrandom(2) does not fail once seeded */
            memset(b, 0, sizeof b);
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* RFC 4122 §4.4: version 4, variant 10 */
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
        if (ts_guard_find(NULL, out, 36, NULL) == TS_GUARD_PASS)
            return;
    }
}

static json_t *num_or_zero(json_t *v)
{
    return json_real(json_is_number(v) ? json_number_value(v) : 0.0);
}

/* The products[] of the Segment spec: product_id and sku both set (one
 * stands in for the other), price and quantity as given. */
json_t *ts_till_products(json_t *in)
{
    json_t *out = json_array(), *l;
    size_t i;
    json_array_foreach(in, i, l)
    {
        json_t *sku = json_object_get(l, "sku"), *pid = json_object_get(l, "product_id");
        if (!json_is_string(sku))
            sku = pid;
        if (!json_is_string(pid))
            pid = sku;
        json_t *q = json_object_get(l, "quantity");
        json_t *o = json_pack("{s:O, s:O, s:s, s:o, s:I}", "product_id", pid, "sku", sku, "name",
                              json_is_string(json_object_get(l, "name"))
                                  ? json_string_value(json_object_get(l, "name"))
                                  : "",
                              "price", num_or_zero(json_object_get(l, "price")), "quantity",
                              (json_int_t)(json_is_integer(q) ? json_integer_value(q)
                                                              : (json_int_t)json_number_value(q)));
        json_array_append_new(out, o);
    }
    return out;
}

json_t *ts_till_envelope(struct ts_agent *a, const char *type, const char *mid, json_t *body,
                         int64_t now_ms, const char *key, const char *source, const char *cid)
{
    char at[40], anon[140];
    int64_t at_ms = now_ms;
    json_t *atv = json_object_get(body, "at");
    if (json_is_string(atv))
        ts_iso8601_parse(json_string_value(atv), &at_ms);
    ts_iso8601(at_ms, at, sizeof at);
    snprintf(anon, sizeof anon, "%s:%s", a->cfg.store, a->cfg.terminal);
    json_t *tl = json_pack("{s:s, s:s, s:s, s:s}", "store", a->cfg.store, "terminal",
                           a->cfg.terminal, "receipt", key, "source", source);
    if (tl && cid && *cid)
        json_object_set_new(tl, "cid", json_string(cid));
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:o, s:{s:s, s:s}}}", "type", type, "messageId", mid,
                     "anonymousId", anon, "originalTimestamp", at, "context", "tillside", tl,
                     "library", "name", "tillside", "version", TS_VERSION);
}

void ts_till_currency(json_t *body, char cur[4])
{
    const char *c = json_string_value(json_object_get(body, "currency"));
    for (int i = 0; i < 3; i++)
        cur[i] = (char)(c[i] >= 'a' ? c[i] - 'a' + 'A' : c[i]);
    cur[3] = '\0';
}

/* The event as stored: everything but sentAt, which the uploader stamps. */
static char *make_event(struct ts_agent *a, json_t *p, const char *mid, const char *source,
                        const char *cid, int64_t now_ms)
{
    char cur[4];
    ts_till_currency(p, cur);
    const char *receipt = json_string_value(json_object_get(p, "receipt"));
    double total = json_number_value(json_object_get(p, "total"));
    json_t *taxv = json_object_get(p, "tax");
    double tax = json_is_number(taxv) ? json_number_value(taxv) : 0.0;
    /* Segment: revenue excludes tax and shipping. */
    double revenue = total - tax > 0 ? total - tax : 0.0;
    json_t *ev = ts_till_envelope(a, "track", mid, p, now_ms, receipt, source, cid);
    json_t *tl = json_object_get(json_object_get(ev, "context"), "tillside");
    /* The receipt's printed barcode (receipt tap, or the POS): the hub
     * indexes it so scanning the old receipt later finds this sale. */
    json_t *bc = json_object_get(p, "barcode");
    if (tl && json_is_string(bc) && json_string_length(bc) > 0 && json_string_length(bc) <= 128)
        json_object_set(tl, "barcode", bc);
    if (ev) {
        json_object_set_new(ev, "event", json_string("Order Completed"));
        json_object_set_new(ev, "properties",
                            json_pack("{s:s, s:f, s:f, s:f, s:o, s:s, s:o}", "order_id", receipt,
                                      "total", total, "revenue", revenue, "tax", tax, "discount",
                                      num_or_zero(json_object_get(p, "discount")), "currency", cur,
                                      "products",
                                      ts_till_products(json_object_get(p, "products"))));
    }
    char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    return text;
}

/* ---- submit ------------------------------------------------------------------*/

void ts_till_fields_text(json_t *fields, char *err, size_t errsz)
{
    ts_buf b = {0};
    size_t i;
    json_t *f;
    ts_buf_puts(&b, "invalid fields: ");
    json_array_foreach(fields, i, f) ts_buf_printf(&b, "%s%s", i ? ", " : "", json_string_value(f));
    ts_errf(err, errsz, "%s", b.data ? b.data : "invalid purchase");
    ts_buf_free(&b);
}

void ts_till_publish(struct ts_agent *a, const char *type, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text)
        ts_bus_publish(a->bus, type, text);
    free(text);
}

enum ts_err ts_till_commit(struct ts_purch *pu, const char *what, const char *key,
                           const char *source, const char *cid, const char *event, const char *mid,
                           int64_t now_ms, bool *dup, char message_id[64], char *err, size_t errsz)
{
    char existing[TS_OUTBOX_ID_MAX];
    struct ts_outbox_entry e = {.message_id = mid,
                                .receipt = key,
                                .source = source,
                                .cid = cid && cid[0] ? cid : NULL,
                                .event = event};
    *dup = false;
    int rc = ts_outbox_add(pu->ob, &e, now_ms, dup, existing);
    if (rc == TS_ERR_FULL) {
        atomic_fetch_add(&pu->refused_full, 1);
        ts_errf(err, errsz,
                "disk full: the %s was not recorded; free space on the "
                "state directory's file system and post it again",
                what);
        return rc;
    }
    if (rc != TS_OK) {
        ts_errf(err, errsz, "cannot record the %s: %s", what, ts_strerror(rc));
        return rc;
    }
    ts_strlcpy(message_id, *dup ? existing : mid, 64);
    if (*dup) {
        atomic_fetch_add(&pu->duplicates, 1);
        TS_INFO("purchase", "%s %s from %s already recorded as %s", what, key, source, existing);
        return TS_OK;
    }
    atomic_fetch_add(&pu->recorded, 1);
    TS_INFO("purchase", "recorded %s %s %s from %s%s", what, mid, key, source,
            cid && cid[0] ? " (known customer)" : "");
    ts_uploader_kick(pu);
    return TS_OK;
}

enum ts_err ts_purchase_submit_fields(struct ts_purch *pu, const char *source, json_t *purchase,
                                      char message_id[64], bool *duplicate, json_t *fields,
                                      char *err, size_t errsz)
{
    char cid[96], mid[37];
    char *event = NULL;
    bool dup = false;
    int rc;
    if (!pu) {
        ts_errf(err, errsz, "the purchase journal is not open");
        return TS_ERR_CLOSED;
    }
    struct ts_agent *a = pu->core;
    static const char *const idents[] = {
        "receipt", "barcode", "customer.code", "products[].sku", "products[].product_id", NULL};
    if (!ts_till_guard(a, "purchase", source, purchase, idents, fields, err, errsz)) {
        validate(purchase, fields);
        return TS_ERR_INVAL;
    }
    validate(purchase, fields);
    if (json_array_size(fields) > 0) {
        ts_till_fields_text(fields, err, errsz);
        return TS_ERR_INVAL;
    }
    resolve_customer(a, purchase, cid, sizeof cid);
    ts_till_uuid4(mid);
    int64_t now = ts_now_wall_ms();
    if (!(event = make_event(a, purchase, mid, source, cid, now))) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    /* Room for the sentAt the uploader adds. */
    if (strlen(event) + 48 > TS_PURCHASE_MAX_EVENT) {
        bad(fields, "products");
        ts_errf(err, errsz, "purchase larger than 32 KB as an event: fewer or shorter products");
        rc = TS_ERR_INVAL;
        goto out;
    }
    const char *receipt = json_string_value(json_object_get(purchase, "receipt"));
    rc = ts_till_commit(pu, "purchase", receipt, source, cid, event, mid, now, &dup, message_id,
                        err, errsz);
    if (rc != TS_OK)
        goto out;
    *duplicate = dup;
    if (dup)
        goto out;
    ts_txcount_add(pu->tx, cid[0] != '\0', now); /* the match rate (txcount.c): sales only */
    /* The associate's page shows the purchase, then the card goes: the
     * conversation with that customer is over. */
    json_t *ev = json_pack("{s:s, s:s, s:O, s:s, s:s, s:s?}", "message_id", mid, "receipt", receipt,
                           "total", json_object_get(purchase, "total"), "currency",
                           json_string_value(json_object_get(purchase, "currency")), "source",
                           source, "cid", cid[0] ? cid : NULL);
    ts_till_publish(a, "purchase", ev);
    char on_screen[96];
    session_cid(a, on_screen, sizeof on_screen);
    if (cid[0] && strcmp(cid, on_screen) == 0)
        ts_agent_clear_reason(a, "purchase");
out:
    free(event);
    return rc;
}

enum ts_err ts_agent_purchase_submit(struct ts_purch *pu, const char *source, json_t *purchase,
                                     char message_id[64], bool *duplicate, char *err, size_t errsz)
{
    json_t *fields = json_array();
    if (!fields)
        return TS_ERR_NOMEM;
    int rc =
        ts_purchase_submit_fields(pu, source, purchase, message_id, duplicate, fields, err, errsz);
    json_decref(fields);
    return rc;
}

/* ---- HTTP, status, metrics ----------------------------------------------------*/

static void answer(ts_buf *out, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    ts_buf_puts(out, s ? s : "{\"error\":\"out of memory\"}");
    free(s);
    json_decref(o);
}

unsigned ts_purchase_http(struct ts_purch *pu, const char *body, size_t len, ts_buf *out)
{
    return ts_till_http(pu, ts_purchase_submit_fields, body, len, out);
}

unsigned ts_till_http(struct ts_purch *pu, ts_till_submit_fn fn, const char *body, size_t len,
                      ts_buf *out)
{
    json_error_t jerr;
    char err[512], mid[64];
    bool dup = false;
    json_t *p = json_loadb(body ? body : "", len, 0, &jerr);
    if (!p) {
        /* jansson's text may quote the offending bytes, which need not be
         * UTF-8: then say where, not what (fuzz_purchase_body found it). */
        snprintf(err, sizeof err, "invalid JSON: %s", jerr.text);
        json_t *msg = json_string(err);
        if (!msg)
            msg = json_sprintf("invalid JSON at line %d, column %d", jerr.line, jerr.column);
        answer(out, json_pack("{s:o, s:[]}", "error", msg, "fields"));
        return 400;
    }
    json_t *fields = json_array();
    int rc = fn(pu, "api", p, mid, &dup, fields, err, sizeof err);
    json_decref(p);
    unsigned status;
    if (rc == TS_OK && dup) {
        status = 200;
        answer(out, json_pack("{s:s, s:b}", "message_id", mid, "duplicate", 1));
    } else if (rc == TS_OK) {
        status = 202;
        answer(out, json_pack("{s:s}", "message_id", mid));
    } else if (rc == TS_ERR_INVAL) {
        status = 400;
        answer(out, json_pack("{s:s, s:O}", "error", err, "fields", fields));
    } else {
        status = rc == TS_ERR_FULL ? 507 : 500;
        answer(out, json_pack("{s:s}", "error", err));
    }
    json_decref(fields);
    return status;
}

void ts_purchase_status_add(struct ts_purch *pu, json_t *status)
{
    struct ts_outbox_stats st;
    if (!pu || ts_outbox_stats(pu->ob, &st) != TS_OK)
        return;
    int64_t now = ts_now_wall_ms();
    json_object_set_new(status, "outbox_depth", json_integer(st.pending));
    json_object_set_new(status, "dead_letters", json_integer(st.dead));
    json_object_set_new(status, "purchases_sent", json_integer(st.sent));
    json_object_set_new(status, "outbox_oldest_age_s",
                        json_integer(st.oldest_pending_ms && now > st.oldest_pending_ms
                                         ? (now - st.oldest_pending_ms) / 1000
                                         : 0));
}

static void metric(ts_buf *b, const char *name, const char *type, const char *help, double v)
{
    ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void ts_purchase_metrics(struct ts_purch *p, ts_buf *b)
{
    struct ts_outbox_stats st;
    if (!p || ts_outbox_stats(p->ob, &st) != TS_OK)
        return;
    int64_t now = ts_now_wall_ms();
    metric(b, "tillside_outbox_depth", "gauge", "Purchases waiting to be uploaded.",
           (double)st.pending);
    metric(b, "tillside_outbox_oldest_age_seconds", "gauge",
           "Age of the oldest purchase waiting to be uploaded (0 when none).",
           st.oldest_pending_ms && now > st.oldest_pending_ms
               ? (double)(now - st.oldest_pending_ms) / 1000.0
               : 0.0);
    metric(b, "tillside_outbox_dead_letters", "gauge",
           "Purchases the hub refused for good; alarm when above 0 (`tillside outbox list`).",
           (double)st.dead);
    metric(b, "tillside_purchases_recorded_total", "counter",
           "Purchases committed to the journal since start.", (double)atomic_load(&p->recorded));
    metric(b, "tillside_purchases_refused_disk_full_total", "counter",
           "Purchases refused with 507 because the disk was full, since start.",
           (double)atomic_load(&p->refused_full));
    metric(b, "tillside_outbox_uploads_total", "counter", "Upload requests sent to the hub.",
           (double)atomic_load(&p->uploads));
    metric(b, "tillside_outbox_upload_failures_total", "counter",
           "Upload requests that failed (no answer, 5xx, 429, ...).",
           (double)atomic_load(&p->upload_failures));
    metric(b, "tillside_outbox_sent_total", "counter",
           "Purchases the hub acknowledged (accepted or duplicate) since start.",
           (double)atomic_load(&p->sent));
    metric(b, "tillside_outbox_dead_lettered_total", "counter",
           "Purchases moved to the dead letters since start.",
           (double)atomic_load(&p->dead_lettered));
    int64_t ok = atomic_load(&p->last_upload_ok_ms);
    if (ok)
        metric(b, "tillside_outbox_last_upload_timestamp_seconds", "gauge",
               "Wall-clock time of the last successful upload.", (double)ok / 1000.0);
}
