/*
 * Fuzzes the hub's intake of terminal purchases: the bytes are a
 * POST /v1/purchases body, parsed per event by ts_hub_purchases_parse and
 * stored in an in-memory store (with forwarding queued), whose receipt
 * lookups, feed and stats are then read back. Hostile batches must be
 * refused or stored, never crash, leak or corrupt the store.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "purchases.h"

static struct ts_hub_store *store;
static struct ts_tenant_key key;
static unsigned runs;

static void reopen(void)
{
    char err[256];
    ts_hub_store_close(store);
    store = NULL;
    if (ts_hub_store_open(":memory:", &key, 0, &store, err, sizeof err) != TS_OK) {
        fprintf(stderr, "fuzz_purchases: %s\n", err);
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
    struct ts_hub_pbatch *b = NULL;
    char err[256];
    if (ts_hub_purchases_parse((const char *)data, size, "S001", 1780000000000LL, &b, err,
                               sizeof err) != TS_OK)
        return 0;
    struct ts_hub_purchase_counts c;
    if (ts_hub_purchases_store(store, b, true, 1780000000000LL, &c) != TS_OK)
        abort(); /* valid events must always be storable */
    if (c.accepted + c.duplicates + c.rejected != b->n)
        abort(); /* every event gets exactly one answer */
    for (size_t i = 0; i < b->n; i++) {
        ts_buf out = {0};
        if (b->p[i].status != TS_HUB_P_REJECTED &&
            ts_hub_lookup_receipt(store, b->p[i].receipt, &out) == TS_ERR_DB)
            abort();
        ts_buf_free(&out);
    }
    ts_hub_pbatch_free(b);
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
