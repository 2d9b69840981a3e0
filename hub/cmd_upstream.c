/*
 * `tillside-hub upstream list|show|retry|drop [--sink NAME]`: the sinks'
 * queues and dead letters from the command line (docs/OPERATIONS.md
 * "Sinks"), instead of hand-written SQL. A running hub picks up retried
 * rows within its idle poll (a few seconds).
 */
#include "cmd.h"
#include "sinks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void up_usage(FILE *f)
{
    fprintf(f, "usage: tillside-hub upstream list [--sink NAME] [--limit N] [--json]\n"
               "       tillside-hub upstream show [--sink NAME] EVENT\n"
               "       tillside-hub upstream retry [--sink NAME] (EVENT | --all)\n"
               "       tillside-hub upstream drop [--sink NAME] (EVENT | --all)\n"
               "Lists each sink's queue and its dead letters, shows one event's mapped items\n"
               "with the vendor's reply, sends dead letters again (once each), or deletes them.\n");
}

static void print_list(const char *text)
{
    json_t *o = json_loads(text, 0, NULL), *x;
    size_t i;
    printf("%-16s %9s %9s %7s %8s %12s\n", "SINK", "PENDING", "SENT", "DEAD", "SKIPPED",
           "OLDEST(s)");
    json_array_foreach(json_object_get(o, "sinks"), i, x) printf(
        "%-16s %9lld %9lld %7lld %8lld %12.0f\n", json_string_value(json_object_get(x, "sink")),
        (long long)json_integer_value(json_object_get(x, "pending")),
        (long long)json_integer_value(json_object_get(x, "sent")),
        (long long)json_integer_value(json_object_get(x, "dead")),
        (long long)json_integer_value(json_object_get(x, "skipped")),
        json_number_value(json_object_get(x, "oldest_pending_age_s")));
    json_t *dead = json_object_get(o, "dead");
    if (json_array_size(dead)) {
        printf("\n%-16s %-36s %4s %8s %-24s %s\n", "SINK", "EVENT", "ITEM", "ATTEMPTS", "AT",
               "REASON");
        json_array_foreach(dead, i, x) printf(
            "%-16s %-36s %4lld %8lld %-24s %s\n", json_string_value(json_object_get(x, "sink")),
            json_string_value(json_object_get(x, "event")),
            (long long)json_integer_value(json_object_get(x, "item")),
            (long long)json_integer_value(json_object_get(x, "attempts")),
            json_string_value(json_object_get(x, "at")),
            json_string_value(json_object_get(x, "reason"))
                ? json_string_value(json_object_get(x, "reason"))
                : "");
    }
    json_decref(o);
}

int ts_hub_upstream_main(int argc, char **argv, const char *conf)
{
    const char *verb = NULL, *sink = NULL, *event = NULL;
    bool all = false, as_json = false;
    long limit = 100;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if ((strcmp(o, "-c") == 0 || strcmp(o, "--config") == 0) && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(o, "--sink") == 0 && i + 1 < argc) {
            sink = argv[++i];
        } else if (strcmp(o, "--limit") == 0 && i + 1 < argc) {
            limit = strtol(argv[++i], NULL, 10);
        } else if (strcmp(o, "--all") == 0) {
            all = true;
        } else if (strcmp(o, "--json") == 0) {
            as_json = true;
        } else if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            up_usage(stdout);
            return 0;
        } else if (o[0] == '-') {
            fprintf(stderr, "tillside-hub upstream: unexpected argument '%s'\n", o);
            up_usage(stderr);
            return 2;
        } else if (!verb) {
            verb = o;
        } else if (!event) {
            event = o;
        } else {
            up_usage(stderr);
            return 2;
        }
    }
    bool list = verb && strcmp(verb, "list") == 0, show = verb && strcmp(verb, "show") == 0;
    bool retry = verb && strcmp(verb, "retry") == 0, drop = verb && strcmp(verb, "drop") == 0;
    if (!(list || show || retry || drop) || (show && !event) ||
        ((retry || drop) && !event == !all) || (list && event) || limit < 1) {
        up_usage(stderr);
        return 2;
    }
    struct ts_hub_config cfg;
    struct ts_hub_store *store =
        ts_hub_cmd_store(conf, list || show ? TS_HUB_STORE_RDONLY : 0, &cfg);
    if (!store)
        return 1;
    ts_buf out = {0};
    long long n = 0;
    enum ts_err rc;
    if (list)
        rc = ts_hub_sinkq_list(store, sink, (size_t)limit, &out);
    else if (show)
        rc = ts_hub_sinkq_show(store, sink, event, &out);
    else if (retry)
        rc = ts_hub_sinkq_retry(store, sink, event, &n);
    else
        rc = ts_hub_sinkq_drop(store, sink, event, &n);
    ts_hub_store_close(store);
    if (rc == TS_ERR_NOTFOUND) {
        fprintf(stderr, "tillside-hub upstream: no event '%s'%s%s\n", event,
                sink ? " at sink " : "", sink ? sink : "");
    } else if (rc != TS_OK) {
        fprintf(stderr, "tillside-hub upstream: %s\n", ts_strerror(rc));
    } else if (list && !as_json) {
        print_list(out.data);
    } else if (list || show) {
        printf("%s\n", out.data);
    } else {
        printf("%s %lld dead letter(s)%s\n", retry ? "queued again" : "dropped", n,
               retry ? "; the running hub sends them within seconds" : "");
    }
    ts_buf_free(&out);
    return rc == TS_OK ? 0 : 1;
}
