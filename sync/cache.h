/*
 * The agent's SQLite cache: customer cards keyed by identifier HMAC, the feed
 * cursor and sync metadata. Raw identifiers never enter it. One ts_cache is
 * one connection: use it from one thread at a time.
 */
#ifndef TS_CACHE_H
#define TS_CACHE_H

#include "../common/ts.h"
#include "feed.h"

#include <stdbool.h>
#include <stdint.h>

struct ts_cache;

/* Opens or creates path (WAL, secure_delete). A file that is not a usable
 * database gives TS_ERR_DB and err names the file and SQLite's reason. */
enum ts_err ts_cache_open(const char *path, struct ts_cache **out, char *err, size_t errsz);
/* Opens an existing cache for reading only (the CLI's `lookup`, next to a
 * running agent): never creates the file or changes it. A missing file is
 * TS_ERR_NOTFOUND, anything that is not a tillside cache TS_ERR_DB. */
enum ts_err ts_cache_open_readonly(const char *path, struct ts_cache **out, char *err,
                                   size_t errsz);
void ts_cache_close(struct ts_cache *c);

/*
 * Applies every item of page and stores page->cursor, in one transaction:
 * afterwards either all of it or none of it is in the file. now_ms is the
 * wall time recorded as the cards' synced_at and as the last sync. When the
 * page erased anyone, the WAL is checkpointed and truncated before this
 * returns, so the erased cards are physically gone from both files (with
 * secure_delete they were overwritten with zeros, not just unlinked).
 * Identifier keys of every version the page carries (keys and prev_keys)
 * are stored, so a lookup may use either.
 *
 * While a resync runs (ts_cache_resync_begin), upserts go to the shadow
 * slice and page->cursor becomes the resync's position, erasures apply to
 * both slices at once, and the page with more == false swaps the shadow
 * slice in (same transaction): lookups see the old slice until then.
 *
 * Catching up (page->more), the commit may be held for up to 32 pages or
 * 1 s and made with a later page: the cursor always travels in the same
 * transaction as its cards. Other connections see the pages at that commit;
 * ts_cache_flush commits at once (the syncer calls it before it waits).
 */
/* Commits pages held back by ts_cache_apply_page (no-op when none). */
enum ts_err ts_cache_flush(struct ts_cache *c);
enum ts_err ts_cache_apply_page(struct ts_cache *c, const struct ts_feed_page *page, int64_t now_ms,
                                char *err, size_t errsz);
/* Stores one card (a live lookup result) without touching the cursor or
 * the last sync time. */
enum ts_err ts_cache_put_live(struct ts_cache *c, const struct ts_feed_page *one, int64_t now_ms);

/* Card JSON (malloc'd) and its synced_at for a key; TS_ERR_NOTFOUND if none. */
enum ts_err ts_cache_lookup(struct ts_cache *c, const char *key_hex, char **card_json,
                            int64_t *synced_at_ms);
int64_t ts_cache_count(struct ts_cache *c);
/* Saved cursor into out ("" when none). */
enum ts_err ts_cache_cursor(struct ts_cache *c, char *out, size_t outsz);
/* Wall time (ms) of the last applied feed page, 0 when never. */
int64_t ts_cache_last_sync(struct ts_cache *c);
/* Forgets the cursor and every card (a full resync follows). */
enum ts_err ts_cache_reset(struct ts_cache *c);

/*
 * Starts a full resync beside the live cards (after 410 Gone): an empty
 * shadow slice that feed pages fill from an empty cursor. A resync already
 * under way is thrown away and started again. The live cards, the cursor
 * and everything else in the file stay as they are until the swap.
 */
enum ts_err ts_cache_resync_begin(struct ts_cache *c);
/*
 * Where the next feed request starts: the resync's cursor while one runs
 * (*resyncing true; "" before its first page), else the saved cursor ("" for
 * a first sync). A resync survives a restart and continues where it was.
 */
enum ts_err ts_cache_position(struct ts_cache *c, char *cursor, size_t cursorsz, bool *resyncing);
/*
 * Retention and the size bound: deletes the cards not refreshed (synced_at)
 * since now_ms - retention_ms, then, while more than max_cards remain (< 0:
 * no bound), the least recently synced ones. *removed (may be NULL) gets how
 * many went. Removed cards are overwritten and the WAL truncated, as for
 * erasures.
 */
enum ts_err ts_cache_prune(struct ts_cache *c, int64_t now_ms, int64_t retention_ms,
                           int64_t max_cards, int64_t *removed);

#endif
