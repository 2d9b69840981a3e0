/*
 * Fuzzes the hub's intake of CDP batches: the bytes are a /v1/batch body,
 * parsed and validated by ts_seg_parse and, when valid, applied to an
 * in-memory store, whose feed and stats are then read back. Hostile batches
 * must be refused or stored, never crash, leak or corrupt the store.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "hub.h"

static struct ts_hub_store *store;
static struct ts_tenant_key key;
static unsigned runs;

static void reopen(void)
{
    char err[256];
    ts_hub_store_close(store);
    store = NULL;
    if (ts_hub_store_open(":memory:", &key, 0, &store, err, sizeof err) != TS_OK) {
        fprintf(stderr, "fuzz_segment: %s\n", err);
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
    /* A fresh database now and then keeps memory bounded over long runs
     * while still letting batches interact (merges, dedupe, re-stamps). */
    if (++runs % 2000 == 0)
        reopen();
    struct ts_seg_batch *b = NULL;
    char err[256];
    if (ts_seg_parse((const char *)data, size, 1780000000000LL, &b, err, sizeof err) != TS_OK)
        return 0;
    struct ts_hub_ingest_result r;
    if (ts_hub_store_ingest(store, b, 1780000000000LL, &r) != TS_OK)
        abort(); /* a valid batch must always be storable */
    ts_seg_batch_free(b);
    struct ts_hub_feed_page page = {0};
    if (ts_hub_store_feed(store, "S001", 0, 50, &page) != TS_OK)
        abort();
    ts_buf_free(&page.items);
    ts_buf st = {0};
    if (ts_hub_store_stats(store, &st) != TS_OK)
        abort();
    ts_buf_free(&st);
    return 0;
}
