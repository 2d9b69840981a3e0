/*
 * Fuzzes what the sinks read from a vendor (hub/sink.h): the bytes are an
 * answer -- the first two give the status and item count, the rest is the
 * body, and "Name: value" lines of it double as headers -- handed to every
 * vendor's parse() and rate() over items of every shape. Hostile answers
 * must give a verdict per item within the enum, never crash or leak.
 */
#define _GNU_SOURCE /* strcasestr */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sink.h"

static const char *hdr(const struct ts_sink_answer *a, const char *name)
{
    /* a header is any "name: " the body contains, up to the next NUL/newline */
    static char v[64];
    const char *p = a->body ? strcasestr(a->body, name) : NULL;
    if (!p || p[strlen(name)] != ':')
        return NULL;
    p += strlen(name) + 1;
    size_t n = strcspn(p, "\n");
    if (n >= sizeof v)
        n = sizeof v - 1;
    memcpy(v, p, n);
    v[n] = '\0';
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const int statuses[] = {200, 201, 202, 400, 401, 403, 408, 413, 422, 429, 500, 503};
    int status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    size_t n = 1 + data[1] % 8;
    char *body = malloc(size - 1);
    if (!body)
        return 0;
    memcpy(body, data + 2, size - 2);
    body[size - 2] = '\0';
    struct ts_sink_item iv[8];
    const struct ts_sink_item *items[8];
    static char ev[] = "{\"name\":\"ecommerce.order_placed\"}", pu[] = "{\"product_id\":\"x\"}";
    for (size_t i = 0; i < n; i++) {
        iv[i].json = i % 2 ? pu : ev;
        iv[i].len = strlen(iv[i].json);
        iv[i].dedup[0] = '\0';
        items[i] = &iv[i];
    }
    struct ts_sink_answer a = {.status = status, .body = body, .len = size - 2, .header = hdr};
    for (size_t k = 0; ts_sink_vendor_at(k); k++) {
        const struct ts_sink_vendor *v = ts_sink_vendor_at(k);
        struct ts_sink_result r[8];
        memset(r, 0, sizeof r);
        enum ts_sink_verdict vd = v->parse(NULL, &a, items, n, r);
        if (vd > TS_SINK_ITEMS)
            abort();
        for (size_t i = 0; vd == TS_SINK_ITEMS && i < n; i++)
            if (r[i].v != TS_SINK_OK && r[i].v != TS_SINK_RETRY && r[i].v != TS_SINK_DEAD)
                abort();
        struct ts_sink_rate_hint h = {-1, -1, -1, -1};
        if (v->rate)
            v->rate(NULL, &a, &h);
    }
    free(body);
    return 0;
}
