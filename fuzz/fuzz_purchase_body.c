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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ts_agent *agent;
static struct ts_purch *purch; /* the purchases handle, as `tillside run` makes it */

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_purchase_body: %s: %s\n", what, detail ? detail : "");
    abort();
}

static char dir[] = "/tmp/ts-fuzz-purchase-XXXXXX";

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The state directory goes when the fuzzer exits normally. */
static void cleanup(void)
{
    ts_purchase_close(purch);
    purch = NULL;
    ts_agent_close(agent);
    agent = NULL;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void open_agent(void)
{
    char text[1024], err[256];
    struct ts_agent_config cfg;
    if (!mkdtemp(dir))
        die("mkdtemp", NULL);
    snprintf(text, sizeof text,
             "[agent]\nstore = S001\nterminal = T01\nstate_dir = %s\n"
             "[hub]\nurl = https://localhost:1\n[identity]\ntenant_key = "
             "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n",
             dir);
    ts_log_set_level(TS_LOG_ERROR);
    if (ts_agent_config_parse("fuzz.conf", text, &cfg, err, sizeof err) ||
        ts_agent_open(&cfg, &agent, err, sizeof err) ||
        ts_purchase_open(agent, &purch, err, sizeof err))
        die("agent", err);
    ts_agent_set_journal(agent, purch->ob);
    atexit(cleanup);
}

/* The recorded event, as the uploader would send it, through the hub's
 * parser. */
static void hub_takes(const char *receipt)
{
    char *ev = NULL, st[8], err[256];
    if (ts_outbox_find_receipt(purch->ob, receipt, &ev, st) != TS_OK)
        die("202 but not in the outbox", receipt);
    if (strlen(ev) + 48 > TS_PURCHASE_MAX_EVENT)
        die("recorded event over 32 KB", receipt);
    ts_buf b = {0};
    ts_buf_printf(&b, "{\"batch\":[{\"sentAt\":\"2026-11-29T00:00:00.000Z\",%s]}", ev + 1);
    struct ts_hub_pbatch *pb = NULL;
    if (ts_hub_purchases_parse(b.data, b.len, "S001", 0, &pb, err, sizeof err) != TS_OK)
        die("hub refused the batch", err);
    if (pb->n != 1 || pb->p[0].status == TS_HUB_P_REJECTED)
        die("hub rejects what the agent recorded", pb->n ? pb->p[0].error : "no event");
    ts_hub_pbatch_free(pb);
    ts_buf_free(&b);
    free(ev);
}

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
