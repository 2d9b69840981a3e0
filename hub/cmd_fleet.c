/*
 * `tillside-hub fleet [-c FILE] [--store S] [--unhealthy] [--json]`: every
 * terminal's last health report (fleet_db.c) as a table or JSON, terminals
 * silent for longer than [fleet] stale_after_s flagged stale. --unhealthy
 * keeps the terminals with any problem (docs/OPERATIONS.md "Fleet").
 */
#include "cmd.h"
#include "fleet.h"
#include "sinks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fleet_usage(FILE *f)
{
    fprintf(f,
            "usage: tillside-hub fleet [-c FILE] [--store S] [--unhealthy] [--json]\n"
            "Every terminal's last health report. Problems: stale (silent longer than\n"
            "[fleet] stale_after_s), link_down, outbox_old, dead_letters, cert_expiring,\n"
            "clock_skew, input_not_open, no_report. --unhealthy lists only terminals with one.\n");
}

struct out {
    bool json, unhealthy;
    int64_t now_ms;
    int stale_after_s;
    json_t *rows;
    size_t listed;
};

/* Names come from certificates: printable ASCII only on a terminal. */
static const char *clean(const char *s, char *buf, size_t bufsz)
{
    ts_sanitize(s, strlen(s), buf, bufsz, '?');
    return buf;
}

static void print_row(const struct ts_fleet_row *row, unsigned p, int64_t now_ms)
{
    char store[64], term[64], health[160] = "", seen[24], ver[40], cert[24] = "-", skew[24] = "-",
                              ins[48] = "-";
    for (unsigned i = 0; i < TS_FLEET_NPROBLEMS; i++)
        if (p & (1u << i)) {
            size_t n = strlen(health);
            snprintf(health + n, sizeof health - n, "%s%s", n ? "," : "",
                     ts_fleet_problem_name(1u << i));
        }
    snprintf(seen, sizeof seen, "%llds", (long long)((now_ms - row->seen_ms) / 1000));
    const struct ts_fleet_report *r = &row->r;
    if (!row->has_report) {
        printf("%-8s %-12s %8s %-4s %6s %8s %6s %6s %4s %-6s %5s %6s %-10s %s\n",
               clean(row->store, store, sizeof store), clean(row->terminal, term, sizeof term),
               seen, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", health[0] ? health : "ok");
        return;
    }
    if (r->has_cert)
        snprintf(cert, sizeof cert, "%lldd", (long long)r->cert_days);
    if (r->has_skew)
        snprintf(skew, sizeof skew, "%+llds", (long long)r->skew_s);
    unsigned open = 0;
    for (size_t i = 0; i < r->ninputs; i++)
        open += strcmp(r->inputs[i].state, "open") == 0;
    if (r->ninputs)
        snprintf(ins, sizeof ins, "%u/%zu", open, r->ninputs);
    printf("%-8s %-12s %8s %-4s %6lld %8lld %6lld %6lld %4lld %-6s %5s %6s %-10s %s\n",
           clean(row->store, store, sizeof store), clean(row->terminal, term, sizeof term), seen,
           r->link_up ? "up" : "down", (long long)r->lag_s, (long long)r->cards,
           (long long)r->outbox_depth, (long long)r->outbox_oldest_s, (long long)r->dead_letters,
           ins, cert, skew, clean(r->version, ver, sizeof ver), health[0] ? health : "ok");
}

static void each(void *ud, const struct ts_fleet_row *row)
{
    struct out *o = ud;
    unsigned p = ts_fleet_problems(row, o->now_ms, o->stale_after_s);
    if (o->unhealthy && !p)
        return;
    o->listed++;
    if (o->json)
        json_array_append_new(o->rows, ts_fleet_row_json(row, o->now_ms, o->stale_after_s));
    else
        print_row(row, p, o->now_ms);
}

/* The sinks' queues under the terminals (hub/sinks.h ts_hub_sinkq_fleet). */
static void print_sinks(json_t *sinks)
{
    if (!json_array_size(sinks))
        return;
    printf("\n%-16s %-12s %8s %8s %10s %8s %6s %8s\n", "SINK", "TYPE", "PENDING", "OLDEST_S",
           "SENT", "FAILED", "DEAD", "RATE/S");
    size_t i;
    json_t *k;
    json_array_foreach(sinks, i, k)
    {
        printf("%-16s %-12s %8lld %8lld %10lld %8lld %6lld %8.1f\n",
               json_string_value(json_object_get(k, "sink")),
               json_string_value(json_object_get(k, "type")),
               (long long)json_integer_value(json_object_get(k, "pending")),
               (long long)json_integer_value(json_object_get(k, "oldest_pending_age_s")),
               (long long)json_integer_value(json_object_get(k, "sent")),
               (long long)json_integer_value(json_object_get(k, "failed")),
               (long long)json_integer_value(json_object_get(k, "dead")),
               json_real_value(json_object_get(k, "rate")));
    }
}

int ts_hub_fleet_main(int argc, char **argv, const char *conf)
{
    const char *store = NULL;
    struct out o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(a, "--store") == 0 && i + 1 < argc && argv[i + 1][0]) {
            store = argv[++i];
        } else if (strcmp(a, "--unhealthy") == 0) {
            o.unhealthy = true;
        } else if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fleet_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tillside-hub fleet: unexpected argument '%s'\n", a);
            fleet_usage(stderr);
            return 2;
        }
    }
    struct ts_hub_config cfg;
    struct ts_hub_store *st = NULL;
    char err[1024];
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    if (ts_hub_store_open(cfg.db, &cfg.key, 0, &st, err, sizeof err) != TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return 1;
    }
    o.now_ms = ts_now_wall_ms();
    o.stale_after_s = cfg.fleet_stale_after_s;
    o.rows = json_array();
    if (!o.json)
        printf("%-8s %-12s %8s %-4s %6s %8s %6s %6s %4s %-6s %5s %6s %-10s %s\n", "STORE",
               "TERMINAL", "SEEN", "LINK", "LAG_S", "CARDS", "OUTBOX", "OLD_S", "DEAD", "INPUTS",
               "CERT", "SKEW", "VERSION", "HEALTH");
    int rc = o.rows ? ts_hub_fleet_list(st, store, each, &o) : TS_ERR_NOMEM;
    json_t *sinks = NULL;
    if (rc == TS_OK)
        rc = ts_hub_sinkq_fleet(st, &cfg, o.now_ms, &sinks);
    ts_hub_store_close(st);
    if (rc == TS_OK && !o.json)
        print_sinks(sinks);
    if (rc == TS_OK && o.json) {
        char now[40];
        ts_iso8601(o.now_ms, now, sizeof now);
        json_t *doc = json_pack("{s:s, s:i, s:O, s:O}", "now", now, "stale_after_s",
                                o.stale_after_s, "terminals", o.rows, "sinks", sinks);
        char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        if (text)
            printf("%s\n", text);
        else
            rc = TS_ERR_NOMEM;
        free(text);
        json_decref(doc);
    }
    json_decref(o.rows);
    json_decref(sinks);
    if (rc != TS_OK) {
        fprintf(stderr, "tillside-hub fleet: %s\n", ts_strerror(rc));
        return 1;
    }
    return 0;
}
