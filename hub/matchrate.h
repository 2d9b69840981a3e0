/*
 * The match rate (matchrate.c, docs/PROTOCOL.md "Match rate"): each
 * terminal's transactions per local day arrive in its health report ("tx",
 * parsed here for fleet.c) and are kept per store, terminal and day; the
 * hub adds what it knows itself, how many identified purchases of that day
 * reached every sink, and answers per store and day with exact counts:
 * identified / all and delivered / identified. Never per customer.
 */
#ifndef TS_HUB_MATCHRATE_H
#define TS_HUB_MATCHRATE_H

#include "db.h"
#include "fleet.h"

#include <jansson.h>

/* The report's "tx": {"utc_offset_s": N, "days": [{"day", "all",
 * "identified"}]} (at most TS_FLEET_MAX_TX days, identified <= all, days
 * YYYY-MM-DD, no other keys) into r. */
enum ts_err ts_hub_match_parse_tx(const json_t *v, struct ts_fleet_report *r, char *err,
                                  size_t errsz);
/* And back, for the stored report (a new reference). */
json_t *ts_hub_match_tx_json(const struct ts_fleet_report *r);

/* The schema part: table match_days. */
enum ts_err ts_hub_match_schema(struct ts_hub_store *s);
/* In the caller's write transaction: the report's days for store/terminal. */
enum ts_err ts_hub_match_write(struct ts_hub_store *s, const char *store, const char *terminal,
                               const struct ts_fleet_report *r, int64_t now_ms);

/* [{"store", "day", "terminals", "transactions", "identified", "delivered",
 *   "identified_share": "I/T", "delivered_share": "D/I"}], newest day first,
 * then by store; store NULL = every store; latest_only: each store's newest
 * day alone. A database without the table: []. */
enum ts_err ts_hub_match_list(struct ts_hub_store *s, const char *store, bool latest_only,
                              json_t **out);

/* /metrics lines: each store's newest day (metrics.c). */
void ts_hub_match_metrics(struct ts_hub_store *s, ts_buf *b);

#endif
