/*
 * libFuzzer target: the local API's till event bodies -- purchase
 * (agent/purchase.c), return (api_returns.c) and consent (api_consent.c):
 * each input is fed to all three through the real agent's ts_till_http. Beyond "no crash", it
 * checks the contract between the two ends: the answer is JSON with the status's shape (a 400 lists
 * its fields), and an event the agent recorded (202) is one the hub's parser (hub/purchases.c)
 * accepts — the agent never queues what the hub would dead-letter.
 */
#define _DEFAULT_SOURCE   /* mkdtemp */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "purchase.h"
#include "purchases.h"

/* One kind: the answer's shape, and a recorded event the hub takes. */
static void one(ts_till_submit_fn fn, int kind, const uint8_t *data, size_t size)
{
    ts_buf out = {0};
    unsigned status = ts_till_http(purch, fn, (const char *)data, size, &out);
    json_t *ans = json_loadb(out.data ? out.data : "", out.len, 0, NULL);
    if (!json_is_object(ans))
        die("answer is not a JSON object", out.data);
    if (status == 400 && !json_is_array(json_object_get(ans, "fields")))
        die("400 without fields", out.data);
    if ((status == 200 || status == 202) && !json_is_string(json_object_get(ans, "message_id")))
        die("2xx without message_id", out.data);
    if (status != 200 && status != 202 && status != 400 && status != 507)
        die("unexpected status", out.data);
    if (status == 202) {
        json_t *body = json_loadb((const char *)data, size, 0, NULL);
        char key[300];
        if (kind == 0)
            snprintf(key, sizeof key, "%s", json_string_value(json_object_get(body, "receipt")));
        else if (kind == 1)
            snprintf(key, sizeof key, "return:%s",
                     json_string_value(json_object_get(body, "return_id")));
        else
            snprintf(key, sizeof key, "consent:%s",
                     json_string_value(json_object_get(ans, "message_id")));
        hub_takes(key);
        json_decref(body);
    }
    json_decref(ans);
    ts_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!agent)
        open_agent();
    one(ts_purchase_submit_fields, 0, data, size);
    one(ts_return_submit, 1, data, size);
    one(ts_consent_submit, 2, data, size);
    return 0;
}
