/*
 * What every tillside-hub command does first: load the configuration file,
 * saying on stderr why it could not.
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
