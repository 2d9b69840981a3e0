/* libFuzzer target: feed pages and lookup answers from a hostile hub, parsed
 * and (when valid) applied to an in-memory cache. */
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ts_cache *cache;
    char err[256];
    if (!cache && ts_cache_open(":memory:", &cache, err, sizeof err) != TS_OK)
        return 0;
    struct ts_feed_page page;
    if (ts_feed_parse((const char *)data, size, &page, err, sizeof err) == TS_OK) {
        ts_cache_apply_page(cache, &page, 1, err, sizeof err);
        ts_feed_page_free(&page);
    }
    if (ts_feed_parse_lookup((const char *)data, size, &page, err, sizeof err) == TS_OK) {
        ts_cache_put_live(cache, &page, 1);
        ts_feed_page_free(&page);
    }
    return 0;
}
