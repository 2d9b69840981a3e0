/*
 * `tillside-hub erase [-c FILE] [--loyalty ID | CUSTOMER]`: erases one
 * customer at the hub (erase.c) from the command line.
 */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

static void erase_usage(FILE *f)
{
    fprintf(f, "usage: tillside-hub erase [-c FILE] CUSTOMER\n"
               "       tillside-hub erase [-c FILE] --loyalty ID\n"
               "Deletes the customer (CUSTOMER = the CDP userId) at the hub and tells every\n"
               "store that holds their card to delete it at its next sync.\n");
}

int ts_hub_erase_main(int argc, char **argv, const char *conf)
{
    const char *user = NULL, *loyalty = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if ((strcmp(o, "-c") == 0 || strcmp(o, "--config") == 0) && i + 1 < argc) {
            conf = argv[++i];
        } else if (strcmp(o, "--loyalty") == 0 && i + 1 < argc) {
            loyalty = argv[++i];
        } else if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            erase_usage(stdout);
            return 0;
        } else if (o[0] == '-' || user) {
            fprintf(stderr, "tillside-hub erase: unexpected argument '%s'\n", o);
            erase_usage(stderr);
            return 2;
        } else {
            user = o;
        }
    }
    if (!user == !loyalty || (user && !*user) || (loyalty && !*loyalty)) {
        erase_usage(stderr);
        return 2;
    }
    struct ts_hub_config cfg;
    struct ts_hub_store *store = ts_hub_cmd_store(conf, 0, &cfg);
    if (!store)
        return 1;
    struct ts_hub_erase_result r;
    int rc = ts_hub_store_erase(store, user, loyalty, ts_now_wall_ms(), &r);
    ts_hub_store_close(store);
    if (rc == TS_ERR_NOTFOUND) {
        if (loyalty)
            fprintf(stderr, "tillside-hub erase: no customer has that loyalty id\n");
        else
            fprintf(stderr, "tillside-hub erase: no customer '%s'\n", user);
        return 1;
    }
    if (rc != TS_OK) {
        fprintf(stderr, "tillside-hub erase: %s\n", ts_strerror(rc));
        return 1;
    }
    printf("erased customer %s: %zu store(s) will delete the card at their next sync; the "
           "erasure is kept %d days\n",
           r.cid, r.stores, cfg.tombstone_days);
    return 0;
}
