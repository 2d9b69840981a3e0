/*
 * The agent's side of the inputs: the [input.*] sections run on the input
 * thread (drivers/input.c) and every scan that passed the payment card
 * guard goes through ts_agent_scan like a scan posted to the local API.
 */
#include "agent.h"
#include "conf.h"
#include "input.h"
#include "offers.h"
#include "purchase.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

/* The inputs handle: the drivers' handle (its own lock, drivers/input.h)
 * and where what they read goes. */
struct ts_agent_inputs {
    struct ts_agent *core;  /* scans (borrowed) */
    struct ts_purch *purch; /* receipts from the escpos tap (borrowed, may be NULL) */
    struct ts_inputs *drivers;
};

static void on_scan(void *ctx, const struct ts_scan *scan)
{
    struct ts_agent_inputs *in = ctx;
    int rc = ts_agent_scan(in->core, scan, NULL);
    if (rc)
        TS_WARN("input", "[%s] scan not resolved: %s", scan->source, ts_strerror(rc));
}

/* A receipt the escpos tap parsed (drivers/escpos_relay.c): into the
 * outbox like a purchase the POS posted, source "escpos:NAME"; dedupe by
 * receipt number happens in submit. Runs after the printer took the bytes,
 * so a refused purchase never holds up printing: it is logged. */
/* An offer's code the receipt rules found (coupon_re): redeemed at the hub
 * with the receipt; the outcome is logged and shown on the page as an
 * `offer` event (a refusal there tells the associate to take it back). */
static void redeem_coupons(struct ts_agent_inputs *in, const char *input, json_t *purchase)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(purchase, "coupons"), i, c)
    {
        char msg[320];
        const char *code = json_string_value(c);
        if (!code)
            continue;
        unsigned st = ts_agent_offer_redeem(in->core, code, "",
                                            json_string_value(json_object_get(purchase, "receipt")),
                                            NULL, NULL, 0, msg, sizeof msg);
        if (st != 200)
            TS_WARN("input", "[%s] offer on receipt %s not redeemed: %s", input,
                    json_string_value(json_object_get(purchase, "receipt")), msg);
    }
}

static void on_purchase(void *ctx, const char *input, json_t *purchase)
{
    struct ts_agent_inputs *in = ctx;
    char source[96], mid[64], err[512];
    bool dup = false;
    snprintf(source, sizeof source, "escpos:%s", input);
    /* A refund receipt (the rules' refund_re) is a return (api_returns.c). */
    const char *kind = json_string_value(json_object_get(purchase, "kind"));
    json_t *fields = json_array();
    int rc =
        kind && strcmp(kind, "return") == 0
            ? ts_return_submit(in->purch, source, purchase, mid, &dup, fields, err, sizeof err)
            : ts_agent_purchase_submit(in->purch, source, purchase, mid, &dup, err, sizeof err);
    json_decref(fields);
    if (rc != TS_OK)
        TS_WARN("input", "[%s] receipt %s not recorded: %s", input,
                json_string_value(json_object_get(purchase, "receipt")), err);
    else
        TS_INFO("input", "[%s] receipt %s %s (message %s)", input,
                json_string_value(json_object_get(purchase, "receipt")),
                dup ? "already recorded" : "recorded", mid);
    if (rc == TS_OK && !dup)
        redeem_coupons(in, input, purchase);
}

enum ts_err ts_agent_inputs_new(struct ts_agent *core, struct ts_purch *purch,
                                const struct ts_conf *conf, struct ts_agent_inputs **out, char *err,
                                size_t errsz)
{
    struct ts_agent_inputs *in = calloc(1, sizeof *in);
    if (!in)
        return TS_ERR_NOMEM;
    in->core = core;
    in->purch = purch;
    struct ts_driver_host host = {.ctx = in, .on_scan = on_scan, .on_purchase = on_purchase};
    int rc = ts_inputs_open(conf, &host, &in->drivers, err, errsz);
    if (rc != TS_OK) {
        free(in);
        return rc;
    }
    *out = in;
    return TS_OK;
}

enum ts_err ts_agent_inputs_start(struct ts_agent_inputs *in, char *err, size_t errsz)
{
    int rc = ts_inputs_start(in->drivers);
    if (rc != TS_OK)
        ts_errf(err, errsz, "cannot start the input thread: %s", ts_strerror(rc));
    else if (ts_inputs_count(in->drivers))
        TS_INFO("input", "%zu input(s) configured", ts_inputs_count(in->drivers));
    return rc;
}

void ts_agent_inputs_stop(struct ts_agent_inputs *in)
{
    if (in)
        ts_inputs_stop(in->drivers);
}

void ts_agent_inputs_free(struct ts_agent_inputs *in)
{
    if (!in)
        return;
    ts_inputs_free(in->drivers);
    free(in);
}

struct ts_inputs *ts_agent_inputs_drivers(const struct ts_agent_inputs *in)
{
    return in ? in->drivers : NULL;
}
