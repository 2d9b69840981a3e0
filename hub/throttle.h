/*
 * What the hub does against guessing (docs/OPERATIONS.md "Security"):
 *
 * - per terminal, a token bucket on GET /v1/lookup ([lookup] rate_per_min,
 *   burst): over it, 429 with Retry-After;
 * - per terminal, the share of lookups that found nothing over a window
 *   ([lookup] miss_window_s, miss_min, miss_percent): a terminal above it is
 *   flagged (logged once, /metrics, `tillside-hub stats`) and slowed to
 *   [lookup] flagged_rate_per_min until a window passes without it;
 * - per source address, failed CDP write keys, enrolment tokens, fleet
 *   admin passwords and source signatures (/v1/sources/NAME): after
 *   [throttle] free_failures, each failure shuts the address out for 1 s,
 *   2 s, 4 s ... up to [throttle] max_delay_s (429 with Retry-After, the key
 *   is not even looked at); a success resets it; other addresses are not
 *   affected.
 *
 * In memory, per hub process; bounded (the least recently seen entries go
 * first). All functions accept a NULL limiter (no limits) and are
 * thread-safe.
 */
#ifndef TS_HUB_THROTTLE_H
#define TS_HUB_THROTTLE_H

#include "hub.h"

struct ts_hub_throttle;

/* cfg must outlive it. */
enum ts_err ts_hub_throttle_new(const struct ts_hub_config *cfg, struct ts_hub_throttle **out);
void ts_hub_throttle_free(struct ts_hub_throttle *l);

/* A flagged terminal, as `flagged` hands it over (strings live during the
 * call). */
struct ts_hub_flag {
    const char *store, *terminal;
    unsigned long lookups, misses; /* in the window that flagged it */
    int64_t at_ms;
};

/* Called (outside the limiter's lock) when a terminal is flagged; the hub
 * records it for `tillside-hub stats` (enroll.c). */
void ts_hub_throttle_on_flag(struct ts_hub_throttle *l,
                             void (*fn)(void *ud, const struct ts_hub_flag *f), void *ud);

/* Takes one lookup from the terminal's bucket: 0 when it may go on, else the
 * seconds to wait (Retry-After, >= 1). */
int ts_hub_throttle_lookup_take(struct ts_hub_throttle *l, const char *store, const char *terminal,
                                int64_t now_ms);
/* The outcome of a lookup that went on: found, or a miss (404, or an order
 * code without a valid signature). May flag the terminal. */
void ts_hub_throttle_lookup_done(struct ts_hub_throttle *l, const char *store, const char *terminal,
                                 bool found, int64_t now_ms);

/* Failed-secret throttling per source address, by what was guessed. */
enum ts_hub_secret {
    TS_HUB_SECRET_WRITE_KEY,
    TS_HUB_SECRET_ENROLL_TOKEN,
    TS_HUB_SECRET_FLEET_ADMIN, /* [fleet] admin_user's password (fleet_http.c) */
    TS_HUB_SECRET_SOURCE,      /* a [source.NAME]'s signature or credentials (source.c) */
    TS_HUB_NSECRETS
};
/* 0 when addr may try now, else the seconds it must wait. */
int ts_hub_throttle_auth_wait(struct ts_hub_throttle *l, enum ts_hub_secret what, const char *addr,
                              int64_t now_ms);
void ts_hub_throttle_auth_failed(struct ts_hub_throttle *l, enum ts_hub_secret what,
                                 const char *addr, int64_t now_ms);
void ts_hub_throttle_auth_ok(struct ts_hub_throttle *l, enum ts_hub_secret what, const char *addr);

/* Prometheus text for /metrics: lookups by result, 429s by reason, the
 * flagged terminals (a gauge, and one series per flagged terminal). */
void ts_hub_throttle_metrics(struct ts_hub_throttle *l, ts_buf *b);

/* The client's address for throttling: remote_addr, or on the plain
 * listener the address the trusted proxy forwarded (proxy.c puts it in front
 * of " via PROXY"). */
void ts_hub_throttle_client_addr(const struct ts_httpd_req *req, char *out, size_t outsz);

/* resp gets 429, Retry-After and {"error": msg, "retry_after": s}. */
void ts_hub_throttle_answer_429(struct ts_httpd_resp *resp, int retry_after_s, const char *msg);

/* Records a flag in the trust tables (enroll.c; ud = struct ts_hub_trust),
 * for ts_hub_throttle_on_flag; and lists them, oldest first, for `stats`
 * (works from another process, as `revoke --list`). */
void ts_hub_trust_record_flag(void *ud, const struct ts_hub_flag *f);
enum ts_err ts_hub_trust_list_flags(const char *target,
                                    void (*fn)(void *ud, const struct ts_hub_flag *f), void *ud,
                                    char *err, size_t errsz);

/* The enrolment listener's ts_httpd handler (enroll_http.c; ud = the
 * struct ts_hub_api with trust and throttle): ts_hub_enroll_handle behind the
 * enrolment-token throttle. */
void ts_hub_enroll_listener_handle(void *ud, const struct ts_httpd_req *req,
                                   struct ts_httpd_resp *resp);

#endif
