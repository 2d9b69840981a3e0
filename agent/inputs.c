/*
 * The agent's side of the inputs: the [input.*] sections run on the input
 * thread (drivers/input.c) and every scan that passed the payment card
 * guard goes through ts_agent_scan like a scan posted to the local API.
 */
#include "agent.h"
#include "conf.h"
#include "input.h"
#include "purchase.h"

#include <jansson.h>
#include <stdio.h>

static void on_scan(void *ctx, const struct ts_scan *scan)
{
    struct ts_agent *a = ctx;
    int rc = ts_agent_scan(a, scan, NULL);
    if (rc)
        TS_WARN("input", "[%s] scan not resolved: %s", scan->source, ts_strerror(rc));
}

/* A receipt the escpos tap parsed (drivers/escpos_relay.c): into the
 * outbox like a purchase the POS posted, source "escpos:NAME"; dedupe by
 * receipt number happens in submit. Runs after the printer took the bytes,
 * so a refused purchase never holds up printing: it is logged. */
static void on_purchase(void *ctx, const char *input, json_t *purchase)
{
    struct ts_agent *a = ctx;
    char source[96], mid[64], err[512];
    bool dup = false;
    snprintf(source, sizeof source, "escpos:%s", input);
    int rc = ts_agent_purchase_submit(a, source, purchase, mid, &dup, err, sizeof err);
    if (rc != TS_OK)
        TS_WARN("input", "[%s] receipt %s not recorded: %s", input,
                json_string_value(json_object_get(purchase, "receipt")), err);
    else
        TS_INFO("input", "[%s] receipt %s %s (message %s)", input,
                json_string_value(json_object_get(purchase, "receipt")),
                dup ? "already recorded" : "recorded", mid);
}

enum ts_err ts_agent_inputs_start(struct ts_agent *a, const struct ts_conf *conf, char *err,
                                  size_t errsz)
{
    struct ts_driver_host host = {.ctx = a, .on_scan = on_scan, .on_purchase = on_purchase};
    int rc;
    if ((rc = ts_inputs_open(conf, &host, &a->inputs, err, errsz)) == TS_OK &&
        (rc = ts_inputs_start(a->inputs)) != TS_OK)
        ts_errf(err, errsz, "cannot start the input thread: %s", ts_strerror(rc));
    if (rc == TS_OK && ts_inputs_count(a->inputs))
        TS_INFO("input", "%zu input(s) configured", ts_inputs_count(a->inputs));
    return rc;
}

void ts_agent_inputs_stop(struct ts_agent *a)
{
    if (!a)
        return;
    ts_inputs_free(a->inputs);
    a->inputs = NULL;
}
