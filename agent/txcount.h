/*
 * Transactions per local day for the match rate (txcount.c, docs/PROTOCOL.md
 * "Match rate"): every purchase this till records (POS API and receipt
 * tap), identified or not, counted by the terminal's local calendar day and
 * kept across restarts in <state_dir>/transactions.json. The health report
 * (health.c) carries the last TS_TX_REPORT_DAYS days to the hub.
 */
#ifndef TS_AGENT_TXCOUNT_H
#define TS_AGENT_TXCOUNT_H

#include "agent.h"

#include <jansson.h>

#define TS_TX_KEEP_DAYS 14
#define TS_TX_REPORT_DAYS 3

struct ts_txcount;

/* Opens (reads) the counts of state_dir; a missing file is no counts, an
 * unreadable one is logged and started afresh. */
enum ts_err ts_txcount_open(const char *state_dir, struct ts_txcount **out);
void ts_txcount_close(struct ts_txcount *t); /* NULL ok */

/* One transaction at wall time now_ms, identified when it names a known
 * customer; written to disk before it returns. NULL ok. */
enum ts_err ts_txcount_add(struct ts_txcount *t, bool identified, int64_t now_ms);

/* {"utc_offset_s": N, "days": [{"day": "YYYY-MM-DD", "all": N, "identified": N}]}
 * of the newest TS_TX_REPORT_DAYS days, newest first; NULL when none (or
 * t is NULL). */
json_t *ts_txcount_report(struct ts_txcount *t, int64_t now_ms);

/* The local day of wall time ms ("YYYY-MM-DD") and its UTC offset. */
void ts_txcount_day(int64_t ms, char day[11], long *utc_offset_s);

#endif
