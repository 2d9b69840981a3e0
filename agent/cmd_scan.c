/* `tillside scan CODE [--aim ]E0]`: a scan sent to the running agent, the card printed. */
#include "cmd.h"
#include "httpc.h"
#include "render.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ts_cmd_scan(const struct ts_agent_config *cfg, const char *code, const char *aim)
{
    char *token = NULL;
    if (ts_read_file(cfg->token_file, 4096, &token, NULL) != TS_OK) {
        fprintf(stderr,
                "tillside: cannot read the API token %s (is the agent running, and may "
                "this user read its state directory?)\n",
                cfg->token_file);
        return 1;
    }
    token[strcspn(token, "\r\n")] = '\0';
    struct ts_httpc *c = NULL;
    if (ts_cmd_api_client(cfg, &c)) {
        free(token);
        return 1;
    }
    json_t *body = json_pack("{s:s, s:s}", "code", code, "aim", aim ? aim : "");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", token);
    free(token);
    struct ts_http_resp r = {0};
    int exit_code = 1;
    if (!text) {
        fprintf(stderr, "tillside: the code is not valid UTF-8 text\n");
    } else if (ts_httpc_request(c, "POST", "/api/v1/scan", hdr, "application/json", text,
                                strlen(text), 5000, &r)) {
        fprintf(stderr, "tillside: the agent is not answering: %s\n", ts_httpc_error(c));
    } else {
        json_t *sess = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
        const char *status = json_string_value(json_object_get(sess, "status"));
        if (r.status != 200 || !status) {
            const char *e = json_string_value(json_object_get(sess, "error"));
            fprintf(stderr, "tillside: scan refused (HTTP %d): %s\n", r.status, e ? e : "?");
        } else {
            struct ts_render out = {.f = stdout};
            ts_render_session(&out, sess);
            exit_code = strcmp(status, "found") == 0 ? 0 : 1;
        }
        json_decref(sess);
    }
    free(text);
    ts_http_resp_free(&r);
    ts_httpc_free(c);
    return exit_code;
}
