/*
 * Fuzzes every inbound source adapter (hub/source_<vendor>.c): the first
 * byte picks the vendor, the rest is the request body, mapped by the
 * adapter and parsed by segment.c as POST /v1/sources/NAME would (after
 * verification, which a fuzzer cannot pass), then stored in an in-memory
 * store. Hostile payloads must be refused or stored, never crash, leak or
 * corrupt the store.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source_int.h"

static struct ts_hub_store *store;
static struct ts_tenant_key key;
static unsigned runs;

static void reopen(void)
{
    char err[256];
    ts_hub_store_close(store);
    store = NULL;
    if (ts_hub_store_open(":memory:", &key, 0, &store, err, sizeof err) != TS_OK) {
        fprintf(stderr, "fuzz_sources: %s\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store) {
        ts_log_set_level(TS_LOG_ERROR);
        if (ts_tenant_key_parse("6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b",
                                1, &key) != TS_OK)
            abort();
        reopen();
    }
    if (++runs % 2000 == 0)
        reopen();
    if (size < 1)
        return 0;
    struct ts_hub_source_conf conf = {.name = "fz", .secret = "0123456789abcdef"};
    conf.type = TS_SRC_SEGMENT + data[0] % 6;
    const struct ts_src_vendor *v = ts_src_vendor_of(conf.type);
    if (!v)
        abort();
    char *body = malloc(size); /* NUL-terminated, as the HTTP server hands it over */
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';
    struct ts_httpd_req req = {.method = "POST", .body = body, .body_len = size - 1};
    struct ts_src_ctx c = {
        .conf = &conf, .req = &req, .now_ms = 1780000000000LL, .out = json_array()};
    struct ts_seg_batch *b = NULL;
    char err[300];
    size_t n;
    if (c.out && ts_src_batch(&c, v, &b, &n, err, sizeof err) == TS_OK) {
        struct ts_hub_ingest_result r;
        if (ts_hub_store_ingest(store, b, c.now_ms, &r) != TS_OK)
            abort(); /* what an adapter made and segment.c accepted must be storable */
    }
    ts_seg_batch_free(b);
    json_decref(c.out);
    json_decref(c.errors);
    free(body);
    return 0;
}
