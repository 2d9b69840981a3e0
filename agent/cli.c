/* The tillside command-line subcommands other than `run`. */
#include "agent.h"
#include "cli.h"
#include "httpc.h"
#include "render.h"

#include <jansson.h>
#include <mbedtls/version.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A client for the running agent's loopback API. */
static int api_client(const struct ts_agent_config *cfg, struct ts_httpc **out)
{
    char url[128], err[256];
    if (strchr(cfg->api_host, ':'))
        snprintf(url, sizeof url, "http://[%s]:%d", cfg->api_host, cfg->api_port);
    else
        snprintf(url, sizeof url, "http://%s:%d", cfg->api_host, cfg->api_port);
    struct ts_httpc_opts o = {.base_url = url, .connect_timeout_ms = 2000};
    int rc = ts_httpc_new(&o, out, err, sizeof err);
    if (rc)
        fprintf(stderr, "tillside: %s\n", err);
    return rc;
}

int ts_cli_scan(const struct ts_agent_config *cfg, const char *code, const char *aim)
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
    if (api_client(cfg, &c)) {
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

/*
 * Looks a code up in the cache file itself, read-only, so it works with the
 * agent stopped and never competes with it for writes. Prints the card JSON
 * (or, with as_text, what the associate would read).
 */
int ts_cli_lookup(const struct ts_agent_config *cfg, const char *code, bool as_text)
{
    char norm[TS_SCAN_MAX], keys[2][TS_IDENT_KEY_HEX], err[1200], path[TS_AGENT_PATH_MAX + 16];
    struct ts_scan scan;
    int nkeys = 0;
    if (ts_scan_from_text("cli", code, strlen(code), NULL, &scan) ||
        ts_ident_normalize(scan.data, scan.data_len, norm, sizeof norm) ||
        (nkeys = ts_agent_ident_keys(cfg, TS_IDENT_LOYALTY, norm, keys)) == 0) {
        fprintf(stderr, "tillside: not a valid code\n");
        return 1;
    }
    ts_agent_cache_path(cfg, path, sizeof path);
    struct ts_cache *c = NULL;
    if (ts_cache_open_readonly(path, &c, err, sizeof err)) {
        fprintf(stderr, "tillside: %s\n", err);
        return 1;
    }
    char *card = NULL;
    int64_t synced = 0;
    /* During a key rotation the cache may hold either version's keys. */
    int rc = TS_ERR_NOTFOUND;
    for (int k = 0; k < nkeys && rc == TS_ERR_NOTFOUND; k++)
        rc = ts_cache_lookup(c, keys[k], &card, &synced);
    ts_cache_close(c);
    if (rc == TS_ERR_NOTFOUND) {
        printf("unknown customer\n");
        return 1;
    }
    if (rc) {
        fprintf(stderr, "tillside: lookup in %s failed: %s\n", path, ts_strerror(rc));
        return 1;
    }
    if (!as_text) {
        printf("%s\n", card);
    } else {
        json_t *o = json_loads(card, 0, NULL);
        char at[32];
        ts_iso8601(synced, at, sizeof at);
        struct ts_render r = {.f = stdout};
        ts_render_card(&r, o);
        printf("  (from cache, synced %s)\n", at);
        json_decref(o);
    }
    free(card);
    return 0;
}

int ts_cli_status(const struct ts_agent_config *cfg, bool as_json)
{
    struct ts_httpc *c = NULL;
    if (api_client(cfg, &c))
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

int ts_cli_version(void)
{
    printf("tillside %s (mbedTLS %s, SQLite %s, jansson %s)\n", TS_VERSION, MBEDTLS_VERSION_STRING,
           sqlite3_libversion(), JANSSON_VERSION);
    return 0;
}
