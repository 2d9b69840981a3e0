/* libFuzzer target: feed pages and lookup answers from a hostile hub, parsed
 * and (when valid) applied to an in-memory cache, then read back. Checks the
 * promises a caller relies on, not only that nothing crashes: a page that
 * parses applies, its cursor is what the cache then holds, and every key of
 * an upsert finds a card. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads back what a valid page should have left in the cache. */
static void check_applied(struct ts_cache *cache, const struct ts_feed_page *page, bool cursor)
{
    char cur[TS_FEED_MAX_CURSOR + 1];
    if (cursor && (ts_cache_cursor(cache, cur, sizeof cur) != TS_OK ||
                   strcmp(cur, page->cursor) != 0))
        abort();
    for (size_t i = 0; i < page->nitems; i++) {
        const struct ts_feed_item *it = &page->items[i];
        for (size_t k = 0; it->op == TS_FEED_UPSERT && k < it->nkeys; k++) {
            char *card = NULL;
            int rc = ts_cache_lookup(cache, it->keys[k], &card, NULL);
            /* In a page a later item may have erased the card; a lone
             * lookup answer must be found. Never any other failure. */
            if (rc != TS_OK && (rc != TS_ERR_NOTFOUND || !cursor))
                abort();
            free(card);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ts_cache *cache;
    char err[256];
    if (!cache && ts_cache_open(":memory:", &cache, err, sizeof err) != TS_OK)
        return 0;
    /* Keep memory bounded over millions of runs. */
    if (ts_cache_count(cache) > 20000)
        ts_cache_reset(cache);

    struct ts_feed_page page;
    if (ts_feed_parse((const char *)data, size, &page, err, sizeof err) == TS_OK) {
        if (page.nitems > TS_FEED_MAX_ITEMS || !page.cursor[0])
            abort();
        if (ts_cache_apply_page(cache, &page, 1, err, sizeof err) != TS_OK)
            abort(); /* whatever the parser accepts, the cache must take */
        check_applied(cache, &page, true);
        ts_feed_page_free(&page);
    }
    if (ts_feed_parse_lookup((const char *)data, size, &page, err, sizeof err) == TS_OK) {
        if (page.nitems != 1 || ts_cache_put_live(cache, &page, 1) != TS_OK)
            abort();
        check_applied(cache, &page, false);
        ts_feed_page_free(&page);
    }
    return 0;
}
