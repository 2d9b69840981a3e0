/*
 * What the files of the agent's loopback API share (api.c: server, guards
 * and routing; api_reply.c: responses; api_events.c: the SSE stream;
 * api_scan.c: POST /api/v1/scan; api_status.c: status and metrics). Private
 * to agent/api*.c.
 */
#ifndef TS_AGENT_API_INT_H
#define TS_AGENT_API_INT_H

#include "agent.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SSE_TIMEOUT_S 60u /* streams write at least every keepalive */
#define SSE_KEEPALIVE_MS 15000
#define SSE_SLICE_MS 500 /* how often a waiting stream looks for shutdown / hangup */
#define SSE_BLOCK 4096
#define SSE_HELLO ": tillside\nretry: 2000\n\n"
/* Event streams: at most SSE_PER_CLIENT per client address (a new one
 * closes that client's oldest: a page that reloads always gets its stream),
 * SSE_MAX in all (then 429), so that of the API's connections most are
 * left for the page and the other requests. */
#define SSE_PER_CLIENT 4
#define SSE_MAX 16

#define PAGE_CSP                                                                                   \
    "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "                  \
    "connect-src 'self'"

struct sse;

struct ts_api {
    struct ts_agent *a;        /* the session/cache core (deps.core) */
    struct ts_agent_parts dep; /* the other subsystems' handles, borrowed */
    struct MHD_Daemon *mhd;
    int port;
    char hosts[3][32]; /* the Host values we answer to */
    atomic_int stopping;
    char *page; /* the page with its key filled in (session.c) */
    size_t page_len;
    /* api_events.c: the open streams, oldest first */
    pthread_mutex_t sse_mu;
    struct sse *streams[SSE_MAX];
    int nstreams;
    atomic_uint_fast64_t sse_evicted, sse_refused;
};

/* ---- api_reply.c: responses (every one gets no-store and nosniff) ---- */
void ts_api_common_headers(struct MHD_Response *resp);
/* Queues resp and releases our reference. */
enum MHD_Result ts_api_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp);
/* Queues json (copied) with the JSON headers; allow adds an Allow header. */
enum MHD_Result ts_api_send_json(struct MHD_Connection *c, unsigned status, const char *json,
                                 const char *allow);
/* The error shape of PROTOCOL.md: {"error": "<message>"}. */
enum MHD_Result ts_api_send_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                  const char *allow);
enum MHD_Result ts_api_send_empty(struct MHD_Connection *c, unsigned status);
/* The associate page, with its CSP and framing headers. */
enum MHD_Result ts_api_send_page(struct ts_api *api, struct MHD_Connection *c);
/* Plain decimal digits only (no sign, no blanks). */
bool ts_api_parse_u64(const char *s, uint64_t *out);

/* ---- the endpoint groups ---- */
/* GET /api/v1/events (api_events.c). */
enum MHD_Result ts_api_start_events(struct ts_api *api, struct MHD_Connection *c);
/* Streams open now, closed for a newer one of the same client, refused. */
void ts_api_sse_counts(struct ts_api *api, unsigned *open, uint64_t *evicted, uint64_t *refused);
/* POST /api/v1/scan (api_scan.c). */
enum MHD_Result ts_api_post_scan(struct ts_api *api, struct MHD_Connection *c, const ts_buf *body);
/* POST /api/v1/offers/redeem (api_offers.c): asks the hub, live. */
#define TS_OFFER_CODE_MAX 64
enum MHD_Result ts_api_post_offer_redeem(struct ts_api *api, struct MHD_Connection *c,
                                         const ts_buf *body);
/* GET /api/v1/status and /metrics (api_status.c). */
enum MHD_Result ts_api_get_status(struct ts_api *api, struct MHD_Connection *c);
enum MHD_Result ts_api_get_metrics(struct ts_api *api, struct MHD_Connection *c);

#endif
