/*
 * What every tillside-hub command does first: load the configuration file
 * (and open the store it names), saying on stderr why it could not.
 */
#include "cmd.h"

#include <stdio.h>

int ts_hub_cmd_config(const char *conf, struct ts_hub_config *cfg)
{
    char err[1024];
    if (ts_hub_config_load(conf, cfg, err, sizeof err) != TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return 1;
    }
    return 0;
}

struct ts_hub_store *ts_hub_cmd_store(const char *conf, int flags, struct ts_hub_config *cfg)
{
    struct ts_hub_store *st = NULL;
    char err[1024];
    if (ts_hub_cmd_config(conf, cfg))
        return NULL;
    if (ts_hub_store_open(cfg->db, &cfg->key, flags, &st, err, sizeof err) != TS_OK) {
        fprintf(stderr, "tillside-hub: %s\n", err);
        return NULL;
    }
    return st;
}
