/*
 * What every vendor file shares (hub/sink.h): configuration lookups, the
 * item list, joining items into a batch body, the default verdict of an
 * HTTP status, rate headers, and the registry of vendors.
 */
#include "sink.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern const struct ts_sink_vendor ts_sink_segment, ts_sink_rudderstack, ts_sink_klaviyo,
    ts_sink_braze, ts_sink_bloomreach, ts_sink_salesforce, ts_sink_iterable;

/* Adding a vendor: its file defines one const struct ts_sink_vendor and it
 * is named here (docs/ARCHITECTURE.md "Sinks"). */
static const struct ts_sink_vendor *const vendors[] = {
    &ts_sink_segment,
    &ts_sink_rudderstack,
    &ts_sink_klaviyo,
    &ts_sink_braze,
    &ts_sink_bloomreach,
    &ts_sink_salesforce,
    &ts_sink_iterable,
};

const struct ts_sink_vendor *ts_sink_vendor_at(size_t i)
{
    return i < sizeof vendors / sizeof vendors[0] ? vendors[i] : NULL;
}

const struct ts_sink_vendor *ts_sink_vendor_find(const char *type)
{
    for (size_t i = 0; type && ts_sink_vendor_at(i); i++)
        if (strcmp(vendors[i]->type, type) == 0)
            return vendors[i];
    return NULL;
}

const char *ts_sink_conf_get(const struct ts_sink_conf *c, const char *key, const char *def)
{
    for (size_t i = 0; i < c->nkv; i++)
        if (strcmp(c->kv[i].key, key) == 0)
            return c->kv[i].value;
    return def;
}

enum ts_err ts_sink_items_add(struct ts_sink_items *it, void *item, const char *dedup)
{
    json_t *j = item;
    if (!j)
        return TS_ERR_NOMEM;
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(j);
    if (!t)
        return TS_ERR_NOMEM;
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 4;
        struct ts_sink_item *v = realloc(it->v, cap * sizeof *v);
        if (!v) {
            free(t);
            return TS_ERR_NOMEM;
        }
        it->v = v;
        it->cap = cap;
    }
    struct ts_sink_item *x = &it->v[it->n++];
    x->json = t;
    x->len = strlen(t);
    ts_strlcpy(x->dedup, dedup ? dedup : "", sizeof x->dedup);
    return TS_OK;
}

void ts_sink_items_free(struct ts_sink_items *it)
{
    for (size_t i = 0; i < it->n; i++)
        free(it->v[i].json);
    free(it->v);
    memset(it, 0, sizeof *it);
}

void ts_sink_fetch_resp_free(struct ts_sink_fetch_resp *r)
{
    if (r)
        ts_buf_free(&r->body);
}

enum ts_err ts_sink_join(const struct ts_sink_item *const *items, size_t n, const char *prefix,
                         const char *suffix, ts_buf *body)
{
    enum ts_err rc = ts_buf_puts(body, prefix);
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        if (i && (rc = ts_buf_puts(body, ",")))
            break;
        rc = ts_buf_append(body, items[i]->json, items[i]->len);
    }
    return rc == TS_OK ? ts_buf_puts(body, suffix) : rc;
}

const void *ts_sink_props(const struct ts_sink_event *e)
{
    json_t *p = json_object_get((json_t *)e->event, "properties");
    return json_is_object(p) ? p : NULL;
}

enum ts_sink_verdict ts_sink_status_verdict(int status, size_t n)
{
    if (status >= 200 && status < 300)
        return TS_SINK_OK;
    if (status == 401)
        return TS_SINK_AUTH;
    if (status == 408 || status == 429 || status >= 500 || status < 200)
        return TS_SINK_RETRY;
    return n > 1 ? TS_SINK_SPLIT : TS_SINK_DEAD;
}

static long num_header(const struct ts_sink_answer *a, const char *prefix, const char *name)
{
    char h[64];
    snprintf(h, sizeof h, "%s%s", prefix, name);
    const char *v = a->header ? a->header(a, h) : NULL;
    if (!v)
        return -1;
    /* The IETF draft allows "100, 100;w=60": the first number counts. */
    char *end;
    long x = strtol(v, &end, 10);
    return end == v || x < 0 ? -1 : x;
}

void ts_sink_rate_headers(const struct ts_sink_answer *a, const char *prefix, bool reset_is_epoch,
                          struct ts_sink_rate_hint *h)
{
    h->limit = num_header(a, prefix, "Limit");
    h->remaining = num_header(a, prefix, "Remaining");
    long reset = num_header(a, prefix, "Reset");
    h->reset_ms = -1;
    if (reset >= 0) {
        int64_t now_s = ts_now_wall_ms() / 1000;
        int64_t d = reset_is_epoch ? (reset > now_s ? reset - now_s : 0) : reset;
        h->reset_ms = d * 1000;
    }
    long ra = a->header ? num_header(a, "", "Retry-After") : -1;
    if (ra >= 0)
        h->retry_after_ms = (int64_t)ra * 1000;
}

void ts_sink_reason(const struct ts_sink_answer *a, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "HTTP %d: ", a->status);
    size_t o = n > 0 && (size_t)n < outsz ? (size_t)n : 0;
    ts_sanitize(a->body ? a->body : "", a->body ? (a->len < 160 ? a->len : 160) : 0, out + o,
                outsz - o, ' ');
}
