/*
 * tillside-escpos: the receipt tap on its own, for writing receipt rules
 * and for tests (docs/OPERATIONS.md "Receipt tap").
 *
 *   tillside-escpos parse [-c CONF -s SECTION] [--codepage CP] FILE...
 *       parses captured printer bytes; one JSON line per receipt:
 *       {"text", "barcode", "code2d", "cut", "purchase" | "error"}
 *   tillside-escpos relay -c CONF
 *       runs every [input.*] with driver = escpos like the agent does and
 *       prints each parsed purchase as one JSON line on stdout (states and
 *       logs on stderr) instead of submitting it. Stops on SIGINT/SIGTERM.
 */
#include "driver.h"
#include "escpos.h"
#include "escpos_relay.h"
#include "escpos_rules.h"
#include "ts.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

struct parse_ctx {
    struct ts_receipt_rules *rules;
    char errtext[256];
};

static void print_receipt(void *ctx, const struct ts_escpos_receipt *raw)
{
    struct parse_ctx *pc = ctx;
    /* Captures are receipts customers were given: the tool shows them as the
     * tap would keep them, card numbers masked. */
    struct ts_receipt_guarded gr;
    if (ts_receipt_guard(NULL, raw, &gr) != TS_OK)
        return;
    const struct ts_escpos_receipt *r = &gr.r;
    json_t *o = json_object(), *purchase = NULL;
    char err[256] = "";
    char *s;
    json_object_set_new(o, "text", json_string(r->text));
    json_object_set_new(o, "barcode", json_string(r->barcode));
    json_object_set_new(o, "code2d", json_string(r->code2d));
    json_object_set_new(o, "cut", json_boolean(r->cut));
    if (r->truncated)
        json_object_set_new(o, "truncated", json_true());
    if (pc->rules) {
        if (ts_receipt_rules_apply(pc->rules, r, ts_now_wall_ms(), &purchase, err, sizeof err) ==
            TS_OK)
            json_object_set_new(o, "purchase", purchase);
        else
            json_object_set_new(o, "error", json_string(err));
    }
    s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(12));
    if (s)
        puts(s);
    free(s);
    json_decref(o);
    ts_receipt_guarded_free(&gr);
}

static int cmd_parse(int argc, char **argv)
{
    const char *conf_path = NULL, *section = NULL, *cpname = NULL;
    struct ts_conf *conf = NULL;
    struct parse_ctx pc = {0};
    enum ts_escpos_cp cp = TS_ESCPOS_CP437;
    char err[512];
    int i, rc = 2;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            conf_path = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            section = argv[++i];
        else if (!strcmp(argv[i], "--codepage") && i + 1 < argc)
            cpname = argv[++i];
        else
            break;
    }
    if (i >= argc || (conf_path && !section)) {
        fprintf(stderr,
                "usage: tillside-escpos parse [-c CONF -s SECTION] [--codepage CP] FILE...\n");
        return 2;
    }
    if (conf_path) {
        if (ts_conf_load(conf_path, &conf, err, sizeof err) != TS_OK ||
            ts_receipt_rules_load(conf, ts_conf_get(conf, section, "rules", section), &pc.rules,
                                  err, sizeof err) != TS_OK) {
            fprintf(stderr, "tillside-escpos: %s\n", err);
            goto out;
        }
        if (!cpname)
            cpname = ts_conf_get(conf, section, "codepage", NULL);
    }
    if (cpname && ts_escpos_cp_parse(cpname, &cp) != TS_OK) {
        fprintf(stderr, "tillside-escpos: unknown code page %s (437, 850, 858, 1252)\n", cpname);
        goto out;
    }
    for (; i < argc; i++) {
        struct ts_escpos *p = NULL;
        char *data = NULL;
        size_t len = 0;
        if (ts_read_file(argv[i], 64u << 20, &data, &len) != TS_OK) {
            fprintf(stderr, "tillside-escpos: %s: %s\n", argv[i], strerror(errno));
            goto out;
        }
        if (ts_escpos_new(cp, print_receipt, &pc, &p) != TS_OK) {
            free(data);
            goto out;
        }
        ts_escpos_feed(p, data, len);
        ts_escpos_flush(p);
        ts_escpos_free(p);
        free(data);
    }
    rc = 0;
out:
    ts_receipt_rules_free(pc.rules);
    ts_conf_free(conf);
    return rc;
}

static void relay_state(void *ctx, const char *input, enum ts_input_state st, const char *detail)
{
    static const char *names[] = {"waiting", "open", "error"};
    (void)ctx;
    fprintf(stderr, "state %s %s: %s\n", input, names[st], detail);
}

static void relay_purchase(void *ctx, const char *input, json_t *purchase)
{
    json_t *o = json_pack("{s:s, s:O}", "input", input, "purchase", purchase);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(12)) : NULL;
    (void)ctx;
    if (s) {
        puts(s);
        fflush(stdout);
    }
    free(s);
    json_decref(o);
}

static void relay_guard_drop(void *ctx, const char *input)
{
    (void)ctx;
    fprintf(stderr, "guard drop %s: payment card data dropped from a receipt\n", input);
}

static void relay_refused(void *ctx, const char *input, const char *peer)
{
    (void)ctx;
    fprintf(stderr, "refused %s: connection from %s not in allow\n", input, peer);
}

#define MAX_TAPS 16

static int cmd_relay(int argc, char **argv)
{
    struct ts_conf *conf = NULL;
    struct ts_driver_host host = {.on_state = relay_state,
                                  .on_purchase = relay_purchase,
                                  .on_guard_drop = relay_guard_drop,
                                  .on_peer_refused = relay_refused};
    void *taps[MAX_TAPS];
    size_t ntaps = 0;
    char err[512];
    const char *sec;
    int rc = 2;
    if (argc != 3 || strcmp(argv[1], "-c")) {
        fprintf(stderr, "usage: tillside-escpos relay -c CONF\n");
        return 2;
    }
    if (ts_conf_load(argv[2], &conf, err, sizeof err) != TS_OK) {
        fprintf(stderr, "tillside-escpos: %s\n", err);
        return 2;
    }
    for (size_t i = 0; (sec = ts_conf_section(conf, i)) != NULL; i++) {
        if (strncmp(sec, "input.", 6) || strcmp(ts_conf_get(conf, sec, "driver", ""), "escpos"))
            continue;
        if (ntaps == MAX_TAPS ||
            ts_escpos_driver.open(conf, sec, &host, &taps[ntaps], err, sizeof err) != TS_OK) {
            fprintf(stderr, "tillside-escpos: %s\n", ntaps == MAX_TAPS ? "too many taps" : err);
            goto out;
        }
        ntaps++;
    }
    if (!ntaps) {
        fprintf(stderr, "tillside-escpos: no [input.NAME] with driver = escpos in %s\n", argv[2]);
        goto out;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "ready\n");
    while (!stop) {
        struct pollfd fds[MAX_TAPS * 4];
        int counts[MAX_TAPS], total = 0, timeout;
        int64_t deadline = -1, now;
        for (size_t i = 0; i < ntaps; i++) {
            counts[i] = ts_escpos_driver.pollfds(taps[i], fds + total, 4, &deadline);
            total += counts[i];
        }
        now = ts_now_mono_ms();
        timeout = deadline < 0 ? 1000 : deadline <= now ? 0 : (int)(deadline - now);
        if (timeout > 1000)
            timeout = 1000;
        if (poll(fds, (nfds_t)total, timeout) < 0 && errno != EINTR)
            break;
        now = ts_now_mono_ms();
        total = 0;
        for (size_t i = 0; i < ntaps; i++) {
            ts_escpos_driver.dispatch(taps[i], fds + total, counts[i], now);
            total += counts[i];
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < ntaps; i++)
        ts_escpos_driver.close(taps[i]);
    ts_conf_free(conf);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "parse"))
        return cmd_parse(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "relay"))
        return cmd_relay(argc - 1, argv + 1);
    fprintf(stderr, "usage: tillside-escpos parse|relay ... (see docs/OPERATIONS.md)\n");
    return 2;
}
