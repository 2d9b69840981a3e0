/* What the commands share: loading the configuration, the running agent's API client. */
#include "cmd.h"
#include "httpc.h"

#include <stdio.h>
#include <string.h>

/* A client for the running agent's loopback API. */
enum ts_err ts_cmd_api_client(const struct ts_agent_config *cfg, struct ts_httpc **out)
{
    char url[128], err[256];
    if (strchr(cfg->api_host, ':'))
        snprintf(url, sizeof url, "http://[%s]:%d", cfg->api_host, cfg->api_port);
    else
        snprintf(url, sizeof url, "http://%s:%d", cfg->api_host, cfg->api_port);
    struct ts_httpc_opts o = {.base_url = url, .connect_timeout_ms = 2000};
    enum ts_err rc = ts_httpc_new(&o, out, err, sizeof err);
    if (rc)
        fprintf(stderr, "tillside: %s\n", err);
    return rc;
}

enum ts_err ts_cmd_load_config(const char *conf_path, struct ts_agent_config *cfg)
{
    char err[1024];
    enum ts_err rc = ts_agent_config_load(conf_path, cfg, err, sizeof err);
    if (rc != TS_OK) {
        fprintf(stderr, "tillside: %s\n", err);
        return rc;
    }
    ts_log_set_level(cfg->log_level);
    return TS_OK;
}
