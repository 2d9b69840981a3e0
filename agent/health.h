/*
 * The terminal's health report for the hub (health.c, docs/PROTOCOL.md
 * "Health reports"): built from the agent's state and sent as the
 * X-Tillside-Health header of feed polls when it changed (looked at every
 * 5 s at most), and at least every TS_HEALTH_HEARTBEAT_MS, so HQ sees every
 * till (`tillside-hub fleet`).
 */
#ifndef TS_AGENT_HEALTH_H
#define TS_AGENT_HEALTH_H

#include "agent.h"
#include "httpc.h"

#define TS_HEALTH_HEARTBEAT_MS 60000
#define TS_HEALTH_MAX_JSON 1536 /* the hub refuses larger reports */

struct ts_health;

/*
 * The request headers of the next feed poll into out: base (e.g.
 * "Accept-Encoding: gzip\r\n") and, when due, "X-Tillside-Health: ...\r\n".
 * *h is made on first use (NULL: the report is skipped, the poll still
 * goes). Only the sync thread calls it.
 */
void ts_health_headers(struct ts_health **h, const struct ts_agent_parts *p, const char *base,
                       char *out, size_t outsz);
/* After a feed answer: the clock skew from its Date header. NULL ok. */
void ts_health_note(struct ts_health *h, const struct ts_http_resp *r);
void ts_health_free(struct ts_health *h); /* NULL ok */

/* The report as JSON text into out (tests, `tillside status` could show it). */
enum ts_err ts_health_json(struct ts_health *h, const struct ts_agent_parts *p, ts_buf *out);

#endif
