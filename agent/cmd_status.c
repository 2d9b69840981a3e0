/* `tillside status [--json]`: the running agent's link, cache and sync state. */
#include "cmd.h"
#include "httpc.h"
#include "render.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One line per input of a status "devices" array, as the input thread sees it. */
static void print_inputs(FILE *out, json_t *devices)
{
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d)
    {
        fprintf(out, "%-20s %s (%s): %s, %s\n", "input",
                json_string_value(json_object_get(d, "name")),
                json_string_value(json_object_get(d, "driver")),
                json_string_value(json_object_get(d, "state")),
                json_string_value(json_object_get(d, "detail")));
    }
}

void ts_cmd_inputs_print(FILE *out, const char *conf_path)
{
    struct ts_agent_config *cfg = calloc(1, sizeof *cfg);
    struct ts_httpc *c = NULL;
    struct ts_http_resp r = {0};
    char err[512];
    if (!cfg || ts_agent_config_load(conf_path, cfg, err, sizeof err) != TS_OK) {
        free(cfg); /* no configuration: the listing above is all there is */
        return;
    }
    fprintf(out, "\nConfigured inputs (%s):\n", conf_path);
    json_t *o = NULL;
    if (ts_cmd_api_client(cfg, &c) == TS_OK &&
        ts_httpc_request(c, "GET", "/api/v1/status", NULL, NULL, NULL, 0, 3000, &r) == TS_OK &&
        r.status == 200)
        o = json_loadb(r.body.data, r.body.len, 0, NULL);
    json_t *devices = json_object_get(o, "devices");
    if (!o)
        fprintf(out,
                "  the agent is not running: no state to show (start it, then tillside status)\n");
    else if (json_array_size(devices) == 0)
        fprintf(out, "  none ([input.NAME] sections; scans only through the API)\n");
    else
        print_inputs(out, devices);
    json_decref(o);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    free(cfg);
}

int ts_cmd_status(const struct ts_agent_config *cfg, bool as_json)
{
    struct ts_httpc *c = NULL;
    if (ts_cmd_api_client(cfg, &c))
        return 1;
    struct ts_http_resp r = {0};
    int exit_code = 0;
    if (ts_httpc_request(c, "GET", "/api/v1/status", NULL, NULL, NULL, 0, 3000, &r) ||
        r.status != 200) {
        printf("tillside is not running (no answer on %s:%d: %s)\n", cfg->api_host, cfg->api_port,
               r.status ? "bad status" : ts_httpc_error(c));
        exit_code = 3;
    } else if (as_json) {
        printf("%s\n", r.body.data);
    } else {
        json_t *o = json_loadb(r.body.data, r.body.len, 0, NULL);
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v)
        {
            if (json_is_object(v))
                continue;
            if (!strcmp(k, "devices") && json_is_array(v)) {
                print_inputs(stdout, v);
                continue;
            }
            char *t = json_dumps(v, JSON_ENCODE_ANY);
            if (json_is_string(v))
                printf("%-20s %s\n", k, json_string_value(v));
            else
                printf("%-20s %s\n", k, t ? t : "?");
            free(t);
        }
        json_decref(o);
    }
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    return exit_code;
}
