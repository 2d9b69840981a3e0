/*
 * Feed pages (GET /v1/feed, docs/PROTOCOL.md): parsing and strict validation
 * of what the hub sent before anything touches the cache. A page is all or
 * nothing: one bad item rejects the page.
 */
#ifndef TS_FEED_H
#define TS_FEED_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>

#define TS_FEED_MAX_ITEMS 1000
#define TS_FEED_MAX_KEYS 128
#define TS_FEED_MAX_CURSOR 256
#define TS_FEED_MAX_CID 64

enum ts_feed_op { TS_FEED_UPSERT = 1, TS_FEED_ERASE = 2 };

struct ts_feed_item {
    enum ts_feed_op op;
    char cid[TS_FEED_MAX_CID + 1];
    size_t nkeys;
    char (*keys)[65]; /* nkeys lowercase hex HMACs under key version kv */
    size_t nprev_keys;
    char (*prev_keys)[65]; /* the same identifiers under prev_kv (rotation) */
    char *card;            /* compact JSON object text (upsert only) */
};

struct ts_feed_page {
    int kv;
    int prev_kv; /* the hub's second key version during a rotation, 0 = none */
    size_t nitems;
    struct ts_feed_item *items;
    char cursor[TS_FEED_MAX_CURSOR + 1];
    bool more;
};

/*
 * Parses body[0..len). On TS_ERR_PROTO, err says what is wrong and where
 * ("items[3].keys[0]: not a 64-char lowercase hex key"). The page owns its
 * memory: release it with ts_feed_page_free (NULL ok).
 */
enum ts_err ts_feed_parse(const char *body, size_t len, struct ts_feed_page *page, char *err,
                          size_t errsz);
void ts_feed_page_free(struct ts_feed_page *page);

/* Parses a single card answer from /v1/lookup ({"kv","cid","keys","card"})
 * into a one-item upsert page (cursor left empty). */
enum ts_err ts_feed_parse_lookup(const char *body, size_t len, struct ts_feed_page *page, char *err,
                                 size_t errsz);

#endif
