/* libFuzzer target: feed pages and lookup answers from a hostile hub, parsed
 * and (when valid) applied to an in-memory cache, then read back. Checks the
 * promises a caller relies on, not only that nothing crashes: a page that
 * parses applies, its cursor is what the cache then holds, and every key of
 * an upsert finds a card. Each input is also tried as a gzip body (inflated
 * under a cap) and applied to a cache in the middle of a 410 resync. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache.h"
#include "feed.h"
#include "gzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads back what a valid page should have left in the cache. */
static void check_applied(struct ts_cache *cache, const struct ts_feed_page *page, bool cursor)
{
    char cur[TS_FEED_MAX_CURSOR + 1];
    if (cursor &&
        (ts_cache_cursor(cache, cur, sizeof cur) != TS_OK || strcmp(cur, page->cursor) != 0))
        abort();
    for (size_t i = 0; i < page->nitems; i++) {
        const struct ts_feed_item *it = &page->items[i];
        for (size_t k = 0; it->op == TS_FEED_UPSERT && k < it->nkeys + it->nprev_keys; k++) {
            char *card = NULL;
            const char *key = k < it->nkeys ? it->keys[k] : it->prev_keys[k - it->nkeys];
            int rc = ts_cache_lookup(cache, key, &card, NULL);
            /* In a page a later item may have erased the card; a lone
             * lookup answer must be found. Never any other failure. */
            if (rc != TS_OK && (rc != TS_ERR_NOTFOUND || !cursor))
                abort();
            free(card);
        }
    }
}

/* A second cache that is always in the middle of a 410 resync: the same
 * page goes to the shadow slice, and the last page of a resync swaps it in.
 * Its position afterwards must be the page's cursor either way. */
static void try_resync(struct ts_cache *rs, const struct ts_feed_page *page)
{
    char err[256], cur[TS_FEED_MAX_CURSOR + 1];
    bool resyncing = false;
    if (ts_cache_position(rs, cur, sizeof cur, &resyncing) != TS_OK)
        abort();
    if (!resyncing && ts_cache_resync_begin(rs) != TS_OK)
        abort();
    if (ts_cache_apply_page(rs, page, 1, err, sizeof err) != TS_OK)
        abort();
    if (ts_cache_position(rs, cur, sizeof cur, &resyncing) != TS_OK ||
        strcmp(cur, page->cursor) != 0 || resyncing != page->more)
        abort();
    if (!page->more)
        check_applied(rs, page, true); /* swapped in: lookups see the page */
}

/* The feed parser is its own JSON reader: whatever it accepts, jansson
 * must accept as JSON too, and every card it copied must be an object. */
static void check_json(const char *data, size_t size, const struct ts_feed_page *page)
{
    json_t *all = json_loadb(data, size, 0, NULL);
    if (!json_is_object(all))
        abort();
    json_decref(all);
    for (size_t i = 0; i < page->nitems; i++) {
        if (page->items[i].op != TS_FEED_UPSERT)
            continue;
        json_t *card = json_loads(page->items[i].card, 0, NULL);
        if (!json_is_object(card))
            abort();
        json_decref(card);
    }
}

static void try_body(struct ts_cache *cache, struct ts_cache *rs, const char *data, size_t size)
{
    char err[256];
    struct ts_feed_page page;
    if (ts_feed_parse(data, size, &page, err, sizeof err) == TS_OK) {
        if (page.nitems > TS_FEED_MAX_ITEMS || !page.cursor[0])
            abort();
        check_json(data, size, &page);
        if (ts_cache_apply_page(cache, &page, 1, err, sizeof err) != TS_OK)
            abort(); /* whatever the parser accepts, the cache must take */
        check_applied(cache, &page, true);
        try_resync(rs, &page);
        ts_feed_page_free(&page);
    }
    if (ts_feed_parse_lookup(data, size, &page, err, sizeof err) == TS_OK) {
        check_json(data, size, &page);
        if (page.nitems != 1 || ts_cache_put_live(cache, &page, 1) != TS_OK)
            abort();
        check_applied(cache, &page, false);
        ts_feed_page_free(&page);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ts_cache *cache, *rs;
    char err[256];
    if (!cache && ts_cache_open(":memory:", &cache, err, sizeof err) != TS_OK)
        return 0;
    if (!rs && ts_cache_open(":memory:", &rs, err, sizeof err) != TS_OK)
        return 0;
    /* Keep memory bounded over millions of runs. */
    if (ts_cache_count(cache) > 20000)
        ts_cache_reset(cache);
    if (ts_cache_count(rs) > 20000)
        ts_cache_reset(rs);

    try_body(cache, rs, (const char *)data, size);
    /* The same bytes as a gzip body (Content-Encoding: gzip), inflated with
     * the agent's kind of cap: a bomb must stop at the cap, anything that
     * inflates is a page like any other. */
    ts_buf plain = {0};
    int rc = ts_gzip_inflate(data, size, 1u << 20, &plain);
    if (rc == TS_OK) {
        if (plain.len > 1u << 20)
            abort();
        try_body(cache, rs, plain.data ? plain.data : "", plain.len);
    } else if (plain.data || plain.len) {
        abort(); /* a refused body leaves nothing behind */
    }
    ts_buf_free(&plain);
    return 0;
}
