/*
 * `tillside outbox list|retry`: the operator's view of the purchase outbox
 * and dead letters. Works on <state_dir>/outbox.db directly, so it answers
 * with the agent stopped too; beside a running agent SQLite's locking keeps
 * both consistent, and the upload thread finds retried rows within seconds.
 */
#include "cmd.h"
#include "purchase.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool print_row(void *ud, const struct ts_outbox_item *it)
{
    bool *any = ud;
    char created[40], done[40] = "-";
    ts_iso8601(it->created_ms, created, sizeof created);
    if (it->done_ms)
        ts_iso8601(it->done_ms, done, sizeof done);
    printf("%-36s  %-7s  %-24s  %-10s  %s  %s%s%s\n", it->message_id, it->state, it->receipt,
           it->source, created, done, it->reason ? "  " : "", it->reason ? it->reason : "");
    *any = true;
    return true;
}

static int usage(void)
{
    fprintf(stderr, "usage: tillside outbox list [--pending|--sent|--dead|--all] [--limit N]\n"
                    "       tillside outbox retry MESSAGE_ID... | --all\n");
    return 2;
}

int ts_cmd_outbox(const struct ts_agent_config *cfg, int argc, const char *const *argv)
{
    char path[TS_AGENT_PATH_MAX + 16], err[1200];
    const char *sub = argc > 0 ? argv[0] : "list";
    struct ts_outbox *o = NULL;
    int exit_code = 1;
    if (strcmp(sub, "list") != 0 && strcmp(sub, "retry") != 0)
        return usage();
    ts_purchase_outbox_path(cfg, path, sizeof path);
    int rc = ts_outbox_open_existing(path, &o, err, sizeof err);
    if (rc == TS_ERR_NOTFOUND && strcmp(sub, "list") == 0) {
        printf("outbox empty (%s does not exist yet)\n", path);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "tillside: %s\n", err);
        return 1;
    }
    if (strcmp(sub, "list") == 0) {
        const char *state = NULL; /* default: what still needs someone: pending + dead */
        bool pending_and_dead = true, any = false;
        long limit = 1000;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--pending") == 0 || strcmp(argv[i], "--sent") == 0 ||
                strcmp(argv[i], "--dead") == 0) {
                state = argv[i] + 2;
                pending_and_dead = false;
            } else if (strcmp(argv[i], "--all") == 0) {
                state = NULL;
                pending_and_dead = false;
            } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
                limit = strtol(argv[++i], NULL, 10);
            } else {
                exit_code = usage();
                goto out;
            }
        }
        struct ts_outbox_stats st;
        if ((rc = ts_outbox_stats(o, &st)) == TS_OK)
            printf("pending %lld  dead %lld  sent %lld\n", (long long)st.pending,
                   (long long)st.dead, (long long)st.sent);
        if (rc == TS_OK && pending_and_dead) {
            rc = ts_outbox_list(o, "dead", limit, print_row, &any);
            if (rc == TS_OK)
                rc = ts_outbox_list(o, "pending", limit, print_row, &any);
        } else if (rc == TS_OK) {
            rc = ts_outbox_list(o, state, limit, print_row, &any);
        }
        if (rc) {
            fprintf(stderr, "tillside: cannot read %s: %s\n", path, ts_strerror(rc));
            goto out;
        }
        exit_code = 0;
        goto out;
    }
    /* retry */
    if (argc < 2) {
        exit_code = usage();
        goto out;
    }
    int64_t total = 0, moved = 0;
    exit_code = 0;
    for (int i = 1; i < argc; i++) {
        bool all = strcmp(argv[i], "--all") == 0;
        rc = ts_outbox_retry(o, all ? NULL : argv[i], &moved);
        if (rc == TS_ERR_NOTFOUND) {
            fprintf(stderr, "tillside: %s is not a dead letter\n", argv[i]);
            exit_code = 1;
        } else if (rc) {
            fprintf(stderr, "tillside: cannot retry %s: %s\n", argv[i], ts_strerror(rc));
            exit_code = 1;
        }
        total += moved;
    }
    printf("%lld dead letter%s back in the outbox\n", (long long)total, total == 1 ? "" : "s");
out:
    ts_outbox_close(o);
    return exit_code;
}

int ts_cmd_outbox_main(int argc, char **argv, const char *conf_path)
{
    const char *args[32];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            conf_path = argv[++i];
        else if (n < 32)
            args[n++] = argv[i];
    }
    struct ts_agent_config cfg;
    if (ts_cmd_load_config(conf_path, &cfg) != TS_OK)
        return 1;
    return ts_cmd_outbox(&cfg, n, args);
}
