/*
 * `tillside-hub fleet [-c FILE] [--store S] [--unhealthy] [--json]`: every
 * terminal's last health report (fleet_db.c) as a table or JSON, terminals
 * silent for longer than [fleet] stale_after_s flagged stale. --unhealthy
 * keeps the terminals with any problem (docs/OPERATIONS.md "Fleet").
 * `tillside-hub fleet forget [--store S] TERMINAL | --stale-for DAYS`
 * removes terminals that left the fleet (a till taken out of service).
 */
#include "cmd.h"
#include "fleet.h"
#include "matchrate.h"
#include "sinks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fleet_usage(FILE *f)
{
    fprintf(f, "usage: tillside-hub fleet [-c FILE] [--store S] [--unhealthy] [--json]\n"
               "Every terminal's last health report. Problems: stale (silent longer than\n"
               "[fleet] stale_after_s), link_down, outbox_old, dead_letters, cert_expiring,\n"
               "clock_skew, input_not_open, no_report. --unhealthy lists only terminals with one.\n"
               "       tillside-hub fleet forget [-c FILE] [--store S] TERMINAL\n"
               "       tillside-hub fleet forget [-c FILE] [--store S] --stale-for DAYS\n"
               "Removes a terminal that left the fleet (of every store without --store), or every\n"
               "terminal not seen for DAYS days. A terminal that polls again reappears.\n");
}

static void forgot(void *ud, const char *store, const char *terminal, int64_t seen_ms)
{
    char a[64], b[64], seen[40];
    (void)ud;
    ts_sanitize(store, strlen(store), a, sizeof a, '?');
    ts_sanitize(terminal, strlen(terminal), b, sizeof b, '?');
    ts_iso8601(seen_ms, seen, sizeof seen);
    printf("forgot %s/%s (last seen %s)\n", a, b, seen);
}

static int forget_main(int argc, char **argv, const char *conf)
{
    const char *store = NULL, *terminal = NULL;
    long days = -1;
    bool verb = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (!verb && strcmp(a, "forget") == 0) {
            verb = true;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(a, "--store") == 0 && i + 1 < argc && argv[i + 1][0]) {
            store = argv[++i];
        } else if (strcmp(a, "--stale-for") == 0 && i + 1 < argc &&
                   (days = strtol(argv[i + 1], &end, 10)) >= 1 && days <= 36500 && !*end) {
            i++;
        } else if (a[0] != '-' && a[0] && !terminal) {
            terminal = a;
        } else {
            fprintf(stderr, "tillside-hub fleet forget: unexpected argument '%s'%s\n", a,
                    strcmp(a, "--stale-for") == 0 ? " (want a number of days, 1 or more)" : "");
            fleet_usage(stderr);
            return 2;
        }
    }
    if (!terminal == (days < 0)) {
        fprintf(stderr, "tillside-hub fleet forget: give a TERMINAL or --stale-for DAYS\n");
        fleet_usage(stderr);
        return 2;
    }
    struct ts_hub_config cfg;
    struct ts_hub_store *st = ts_hub_cmd_store(conf, 0, &cfg);
    if (!st)
        return 1;
    long n = 0;
    int64_t cut = ts_now_wall_ms() - (days > 0 ? days : 0) * 86400000LL;
    int rc = ts_hub_fleet_forget(st, store, terminal, cut, forgot, NULL, &n);
    ts_hub_store_close(st);
    if (rc != TS_OK) {
        fprintf(stderr, "tillside-hub fleet forget: %s\n", ts_strerror(rc));
        return 1;
    }
    if (n == 0 && terminal) {
        fprintf(stderr, "tillside-hub fleet forget: no terminal %s%s%s in the fleet\n", terminal,
                store ? " in store " : "", store ? store : "");
        return 1;
    }
    printf("%ld terminal(s) forgotten\n", n);
    return 0;
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

/* The match rate of each store's newest day (matchrate.c): a table after
 * the terminals, or "match_rate" in the JSON document. */
static json_t *match_rate(struct ts_hub_store *st, const char *store, bool print)
{
    json_t *arr = NULL;
    if (ts_hub_match_list(st, store, true, &arr) != TS_OK)
        return NULL;
    if (print && json_array_size(arr)) {
        printf("\n%-8s %-10s %6s %10s %9s %11s %9s\n", "STORE", "DAY", "TILLS", "IDENTIFIED",
               "OF_ALL", "DELIVERED", "OF_IDENT");
        size_t i;
        json_t *r;
        json_array_foreach(arr, i, r)
        {
            printf("%-8s %-10s %6lld %10lld %9s %11lld %9s\n",
                   json_string_value(json_object_get(r, "store")),
                   json_string_value(json_object_get(r, "day")),
                   (long long)json_integer_value(json_object_get(r, "terminals")),
                   (long long)json_integer_value(json_object_get(r, "identified")),
                   json_string_value(json_object_get(r, "identified_share")),
                   (long long)json_integer_value(json_object_get(r, "delivered")),
                   json_string_value(json_object_get(r, "delivered_share")));
        }
    }
    return arr;
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
    for (int i = 1; i < argc; i++) { /* "forget", after any -c FILE or --store S */
        if (strcmp(argv[i], "forget") == 0)
            return forget_main(argc, argv, conf);
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0 ||
             strcmp(argv[i], "--store") == 0) &&
            i + 1 < argc)
            i++;
    }
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
    struct ts_hub_store *st = ts_hub_cmd_store(conf, 0, &cfg);
    if (!st)
        return 1;
    o.now_ms = ts_now_wall_ms();
    o.stale_after_s = cfg.fleet_stale_after_s;
    o.rows = json_array();
    if (!o.json)
        printf("%-8s %-12s %8s %-4s %6s %8s %6s %6s %4s %-6s %5s %6s %-10s %s\n", "STORE",
               "TERMINAL", "SEEN", "LINK", "LAG_S", "CARDS", "OUTBOX", "OLD_S", "DEAD", "INPUTS",
               "CERT", "SKEW", "VERSION", "HEALTH");
    int rc = o.rows ? ts_hub_fleet_list(st, store, each, &o) : TS_ERR_NOMEM;
    json_t *match = rc == TS_OK ? match_rate(st, store, !o.json) : NULL;
    json_t *sinks = NULL;
    if (rc == TS_OK)
        rc = ts_hub_sinkq_fleet(st, &cfg, o.now_ms, &sinks);
    ts_hub_store_close(st);
    if (rc == TS_OK && !o.json)
        print_sinks(sinks);
    if (rc == TS_OK && o.json) {
        char now[40];
        ts_iso8601(o.now_ms, now, sizeof now);
        json_t *doc =
            json_pack("{s:s, s:i, s:O, s:O, s:O?}", "now", now, "stale_after_s", o.stale_after_s,
                      "terminals", o.rows, "sinks", sinks, "match_rate", match);
        char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        if (text)
            printf("%s\n", text);
        else
            rc = TS_ERR_NOMEM;
        free(text);
        json_decref(doc);
    }
    json_decref(o.rows);
    json_decref(match);
    json_decref(sinks);
    if (rc != TS_OK) {
        fprintf(stderr, "tillside-hub fleet: %s\n", ts_strerror(rc));
        return 1;
    }
    return 0;
}
