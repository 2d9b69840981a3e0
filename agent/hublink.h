/*
 * The agent's link to the hub for everything that is not the feed: one
 * place that makes a hub client with the configured certificates and pin,
 * and the live lookup path every scan uses (a card by key, a sale by
 * receipt or order): request within a deadline, gzip'd answer inflated
 * under a cap, the card's key versions checked against ours, the card and
 * its keys written into the cache. A loyalty, receipt or order scan that
 * asks the hub therefore checks and caches alike.
 *
 * Depends on the configuration, the cache and sync/ only: no agent state,
 * so every agent file may call it without a circle.
 */
#ifndef TS_AGENT_HUBLINK_H
#define TS_AGENT_HUBLINK_H

#include "agent.h"

#include <jansson.h>
#include <stdatomic.h>

struct ts_httpc;

/* A client for the hub (mutual TLS with [hub] ca/cert/key, [hub] pin). */
enum ts_err ts_hublink_client(const struct ts_agent_config *cfg, int connect_timeout_ms,
                              struct ts_httpc **out, char *err, size_t errsz);

struct ts_hublink;

struct ts_hublink_opts {
    const struct ts_agent_config *cfg; /* borrowed; outlives the link */
    struct ts_cache *cache;            /* found cards go here (borrowed) */
    pthread_mutex_t *cache_mu;         /* held around every cache write */
    atomic_int *unreachable;           /* set when the hub could not be reached (may be NULL) */
};

/* The link; its client is made at the first lookup. */
enum ts_err ts_hublink_new(const struct ts_hublink_opts *o, struct ts_hublink **out);
void ts_hublink_free(struct ts_hublink *h); /* NULL ok */

/*
 * GET path (a /v1/lookup query) within timeout_ms in total; one lookup at a
 * time per link (its own lock: one kept-alive connection).
 * TS_OK: *answer is the answer object (json_decref it). When it carries a
 * card ("card" with "kv", "cid", "keys") whose key versions we hold, the card
 * and its keys were written to the cache and *card (when card is not NULL) is
 * its JSON text (free it); a card we cannot use (another tenant key version,
 * malformed) is removed from *answer and logged, *card stays NULL.
 * TS_ERR_NOTFOUND: the hub answered 404. TS_ERR_CONNECT: not reachable
 * (unreachable set, connection dropped). TS_ERR_PROTO: another status or a
 * body that is not a JSON object.
 */
enum ts_err ts_hublink_get(struct ts_hublink *h, const char *what, const char *path, int timeout_ms,
                           json_t **answer, char **card);

/*
 * POST body (JSON) to path within timeout_ms, on the same link and lock.
 * TS_OK with *status the HTTP status and *answer its JSON object body (NULL
 * when it has none); a 200's card is checked and cached as for
 * ts_hublink_get. TS_ERR_CONNECT: not reachable.
 */
enum ts_err ts_hublink_post(struct ts_hublink *h, const char *what, const char *path,
                            const char *body, size_t len, int timeout_ms, int *status,
                            json_t **answer);

/* Answers with a usable card or sale since start (status "lookups.live"). */
uint64_t ts_hublink_answers(const struct ts_hublink *h);

#endif
