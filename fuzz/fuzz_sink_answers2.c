/*
 * The answers of Bloomreach, Data Cloud and Iterable as their vendor files
 * read them (parse(): per-command results, whole refusals) and Data Cloud's
 * two token answers as its auth() reads them: arbitrary bytes must never
 * crash or leak, and every verdict must be one the forwarder knows.
 * Input: byte 0 picks the vendor (and auth), bytes 1-2 the HTTP status,
 * byte 3 the item count, the rest the body.
 */
#include "sink.h"

#include <stdlib.h>
#include <string.h>

static const char *no_header(const struct ts_sink_answer *a, const char *name)
{
    (void)a, (void)name;
    return NULL;
}

struct feed {
    const uint8_t *data;
    size_t len;
    int status;
};

/* Both token steps answer with the fuzzed body. */
static enum ts_err fetch(struct ts_sink_fetch *f, const char *method, const char *url,
                         const char *headers, const char *content_type, const char *body,
                         size_t len, struct ts_sink_fetch_resp *resp, char *err, size_t errsz)
{
    (void)method, (void)url, (void)headers, (void)content_type, (void)body, (void)len;
    (void)err, (void)errsz;
    struct feed *d = f->ctx;
    resp->status = d->status;
    ts_buf_append(&resp->body, d->data, d->len);
    return TS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"bloomreach", "salesforce", "iterable"};
    static const char *const kv[][2] = {
        {"project_token", "0a1b"}, {"key_id", "k"},
        {"key_secret", "s"},       {"login_url", "https://acme.my.salesforce.com"},
        {"client_id", "c"},        {"client_secret", "s"},
        {"source", "src"},         {"object", "obj"},
        {"api_key", "k"}};
    if (size < 4)
        return 0;
    const struct ts_sink_vendor *v = ts_sink_vendor_find(types[data[0] % 3]);
    if (!v)
        return 0;
    static struct ts_sink_conf c;
    memset(&c, 0, sizeof c);
    strcpy(c.name, "f");
    strcpy(c.type, v->type);
    for (size_t i = 0; i < 9; i++) {
        strcpy(c.kv[i].key, kv[i][0]);
        strcpy(c.kv[i].value, kv[i][1]);
    }
    c.nkv = 9;
    void *st = NULL;
    char err[256];
    if (v->init(&c, &st, err, sizeof err) != TS_OK)
        abort(); /* the configuration above is valid */
    int status = (data[1] << 8 | data[2]) % 600;
    size_t n = 1 + data[3] % 50;
    char *body = malloc(size - 4 + 1);
    memcpy(body, data + 4, size - 4);
    body[size - 4] = '\0';
    if (data[0] % 6 == 4) { /* Data Cloud's token answers */
        struct feed d = {data + 4, size - 4, status};
        struct ts_sink_fetch f = {fetch, &d};
        struct ts_sink_auth a = {0};
        if (v->auth(st, &c, &f, 1000, &a, err, sizeof err) == TS_OK &&
            (strncmp(a.base_url, "https://", 8) != 0 || !strstr(a.headers, "Bearer ")))
            abort();
    } else {
        struct ts_sink_answer a = {status, body, size - 4, no_header, NULL};
        struct ts_sink_result r[50];
        memset(r, 0, sizeof r);
        /* parse() may look at the items it answers: n empty JSON objects */
        struct ts_sink_item it[50], *ip[50];
        for (size_t i = 0; i < n; i++) {
            it[i] = (struct ts_sink_item){.json = (char *)"{}", .len = 2};
            ip[i] = &it[i];
        }
        enum ts_sink_verdict vd = v->parse(st, &a, (const struct ts_sink_item *const *)ip, n, r);
        if (vd == TS_SINK_ITEMS) {
            for (size_t i = 0; i < n; i++)
                if (r[i].v != TS_SINK_OK && r[i].v != TS_SINK_RETRY && r[i].v != TS_SINK_DEAD)
                    abort();
        } else if (vd > TS_SINK_ITEMS) {
            abort();
        }
    }
    free(body);
    if (v->fini)
        v->fini(st);
    return 0;
}
