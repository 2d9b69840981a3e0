/*
 * tillside agent internals shared between agent/ files: configuration, the
 * event bus, the core state (session, link, counters), the sync thread, the
 * local API. Nothing here is used outside agent/ (and its tests).
 */
#ifndef TS_AGENT_H
#define TS_AGENT_H

#include "../common/ts.h"
#include "../drivers/scan.h"
#include "../sync/cache.h"
#include "../sync/ident.h"
#include "../drivers/guard.h"
#include "rules.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_AGENT_DEFAULT_CONFIG "/etc/tillside/tillside.conf"
#define TS_AGENT_PATH_MAX 1024

/* ---- config.c ------------------------------------------------------------ */

/* Marketing channels consent can be recorded for at the till. */
enum ts_consent_channel {
    TS_CONSENT_EMAIL = 1u << 0,
    TS_CONSENT_SMS = 1u << 1,
};

struct ts_agent_config {
    char path[TS_AGENT_PATH_MAX]; /* the file it came from */
    char store[64], terminal[64];
    char state_dir[TS_AGENT_PATH_MAX];
    enum ts_log_level log_level;
    char hub_url[512];
    char hub_ca[TS_AGENT_PATH_MAX], hub_cert[TS_AGENT_PATH_MAX], hub_key[TS_AGENT_PATH_MAX];
    char hub_pin[96]; /* [hub] pin_sha256: the hub's public key hash, "" = no pin */
    long renew_days;  /* [hub] renew_days: renew with fewer days left; 0 = never */
    char enrolled[TS_AGENT_PATH_MAX + 16]; /* <state_dir>/enrolled.conf when it was merged */
    long poll_interval_ms, timeout_ms, lookup_timeout_ms, page_limit;
    struct ts_tenant_key tenant;
    char api_host[64]; /* loopback address to bind */
    int api_port;
    char token_file[TS_AGENT_PATH_MAX];
    /* [identity] previous_tenant_key / previous_key_version: tried after
     * tenant at lookup during a key rotation; len 0 = none. */
    struct ts_tenant_key prev_tenant;
    long long_poll_s;    /* [hub] long_poll_s: feed ?wait= when caught up, 0 = poll */
    long retention_days; /* [cache] retention_days: cards not refreshed this long go */
    long max_cards;      /* [cache] max_cards: beyond it the least recently synced go */
    long idle_clear_s;   /* [page] idle_clear_s: clear the card after this long; 0 = never */
    /* [page] consent_channels: the marketing channels the till asks about
     * (TS_CONSENT_EMAIL | TS_CONSENT_SMS; default both, "none" = neither) */
    unsigned consent_channels;
    /* [outbox] (purchase.c, uploader.c): retry backoff base and cap, and the
     * largest upload request (Segment's 475 KB unless lowered for tests). */
    long outbox_backoff_ms, outbox_backoff_max_ms, outbox_batch_bytes;
    /* [rule.*] identity rules (rules.c), compiled into a->rules at open;
     * [guard] for codes posted to the API (drivers check their own). */
    struct ts_rules_conf rules;
    struct ts_guard guard;
};

/* Reads and validates the INI file; err gets "file:line: [section] key: ..." */
enum ts_err ts_agent_config_load(const char *path, struct ts_agent_config *out, char *err,
                                 size_t errsz);
enum ts_err ts_agent_config_parse(const char *name, const char *text, struct ts_agent_config *out,
                                  char *err, size_t errsz);
#define TS_ENROLLED_CONF "enrolled.conf"
struct ts_conf;
/* Loads <state_dir>/enrolled.conf (written by `tillside enroll`), which
 * config loading lets override the main file for the keys it sets; its path
 * goes to path_out. TS_ERR_NOTFOUND (path_out "") when the terminal was not
 * enrolled. */
enum ts_err ts_enrolled_conf_load(const char *state_dir, struct ts_conf **out, char *path_out,
                                  size_t pathsz, char *err, size_t errsz);
/* <state_dir>/cache.db */
void ts_agent_cache_path(const struct ts_agent_config *c, char *out, size_t outsz);
/* The identifier keys to try for a normalized code, in order: the current
 * tenant key, then the previous one during a rotation. Returns how many
 * (0 when keying failed). */
int ts_agent_ident_keys(const struct ts_agent_config *c, enum ts_ident_kind kind, const char *norm,
                        char keys[2][TS_IDENT_KEY_HEX]);
/* Can we use what a hub page keyed with versions kv and prev_kv (0 = none)
 * carries, i.e. is one of them a version we have the key of? */
bool ts_agent_kv_usable(const struct ts_agent_config *c, int kv, int prev_kv);

/* ---- bus.c ----------------------------------------------------------------
 * Numbered events in a ring. Publishers never block on readers: a reader that
 * fell more than the ring's capacity behind skips to the oldest event kept. */

struct ts_bus;

struct ts_bus_event {
    uint64_t id;   /* 1, 2, 3 ... */
    char type[16]; /* scan, customer, link, clear */
    char *data;    /* JSON text, malloc'd copy owned by the caller */
};

enum ts_err ts_bus_new(size_t capacity, struct ts_bus **out);
void ts_bus_free(struct ts_bus *b);
/* Copies json; returns the new event id (0 on allocation failure). */
uint64_t ts_bus_publish(struct ts_bus *b, const char *type, const char *json);
/* The id of the newest event (0 when none). */
uint64_t ts_bus_last_id(struct ts_bus *b);
/*
 * Waits up to timeout_ms for the first event with id > after and copies it
 * into *out (free out->data). TS_ERR_TIMEOUT when none came, TS_ERR_CLOSED
 * once ts_bus_close was called (wakes every waiter).
 */
enum ts_err ts_bus_next(struct ts_bus *b, uint64_t after, int timeout_ms, struct ts_bus_event *out);
/* Makes every waiting ts_bus_next return TS_ERR_TIMEOUT now (a reader that
 * was told to stop looks at its flag at once). */
void ts_bus_wake(struct ts_bus *b);
void ts_bus_close(struct ts_bus *b);

/* ---- core.c ---------------------------------------------------------------
 * The agent's shared state. Thread-safe: the sync thread, API threads and
 * the main thread all call in. */

struct ts_hublink;

#define TS_AGENT_RECENT 5 /* sessions kept for "previous card" */

struct ts_agent {
    struct ts_agent_config cfg;
    pthread_mutex_t cache_mu; /* guards cache, and nothing else */
    struct ts_cache *cache;   /* the lookup connection (the sync thread has its own) */
    struct ts_bus *bus;       /* thread-safe on its own */
    char token[65];           /* local API bearer token (set at open, then read-only) */
    /* Guards the session, the link state and the counters below, and
     * nothing of any other subsystem (each has its own handle and lock:
     * purchase.h, trust, inputs, syncer, API). Never held while taking
     * cache_mu or the reverse. */
    pthread_mutex_t mu;
    char *session_json; /* current session (see PROTOCOL.md), NULL = none */
    bool link_online;
    bool link_known; /* false until the first sync attempt finished */
    char last_error[512];
    int64_t last_sync_wall_ms; /* 0 = never */
    uint64_t feed_pages_applied, feed_items_applied;
    uint64_t scans, lookups_hit, lookups_miss;
    struct ts_hublink *hub; /* hublink.c: every live lookup (its own lock) */
    /* Set to cut the sync thread's long-poll short: at stop, and when a live
     * lookup could not reach the hub (the sync thread then checks the link
     * with a plain request instead of sitting in a 20 s wait). */
    atomic_int sync_interrupt;
    /* session.c: idle clear and the "previous card" history (guarded by mu) */
    int64_t session_mono_ms;       /* when session_json was last set */
    char *recent[TS_AGENT_RECENT]; /* sessions shown, newest first */
    int64_t recent_mono_ms[TS_AGENT_RECENT];
    char page_key[65];      /* lets the served page clear the card, nothing more */
    struct ts_rules *rules; /* rules.c: compiled [rule.*] + defaults (read-only after open) */
    /* This terminal's purchase journal for receipt scans (resolve.c): the
     * purchases handle's outbox (its own lock), borrowed; set once by
     * ts_agent_set_journal before any thread starts. NULL = none. */
    struct ts_outbox *journal;
    atomic_uint_fast64_t api_guard_drops; /* scans and purchase bodies the guard dropped from */
};

/* The session/cache core: opens the cache (creating state_dir), loads or
 * creates the API token, the bus, the rules and the hub link. No thread. */
enum ts_err ts_agent_open(const struct ts_agent_config *cfg, struct ts_agent **out, char *err,
                          size_t errsz);
void ts_agent_close(struct ts_agent *a);
struct ts_outbox;
/* Lends the core the purchase journal receipt scans look in (NULL = none);
 * call before any thread that scans starts, and clear after they stopped. */
void ts_agent_set_journal(struct ts_agent *a, struct ts_outbox *journal);
/* The watchdog's proof of life: the core's locks can be taken (each in
 * turn, as a scan takes them). */
bool ts_agent_alive(struct ts_agent *a);

/*
 * Resolves a scan (cache first, live lookup on a miss while online), makes
 * it the current session, publishes `scan` then `customer` on the bus, and
 * returns the session JSON (malloc'd) in *session_out when not NULL.
 */
enum ts_err ts_agent_scan(struct ts_agent *a, const struct ts_scan *scan, char **session_out);
/* The first of keys (nkeys of them: during a key rotation the cache may
 * hold either version's) the cache knows: TS_OK with the card JSON
 * (malloc'd) and when it was synced, TS_ERR_NOTFOUND when none is. */
enum ts_err ts_agent_cache_find(struct ts_agent *a, char keys[][TS_IDENT_KEY_HEX], int nkeys,
                                char **card, int64_t *synced_ms);
/* Current session JSON (malloc'd copy) or NULL when none. */
char *ts_agent_session(struct ts_agent *a);
/* Clears the session and publishes `clear`. */
void ts_agent_clear(struct ts_agent *a);
/* The core's counters and link state for /metrics, each read under its lock. */
struct ts_agent_counters {
    int64_t cards;
    bool link_up;
    uint64_t scans, feed_items_applied, feed_pages_applied;
    uint64_t lookups_hit, lookups_miss, lookups_live;
    int64_t last_sync_wall_ms; /* 0 = never */
};
void ts_agent_counters(struct ts_agent *a, struct ts_agent_counters *out);
struct json_t;
/* The core's part of the status object (see PROTOCOL.md): link, cache,
 * counters; the API adds the other subsystems' parts. NULL when out of
 * memory. */
struct json_t *ts_agent_status_object(struct ts_agent *a);
/* Called by the sync thread: records link state, publishes `link` on change.
 * error (NULL when online) becomes last_error. */
void ts_agent_set_link(struct ts_agent *a, bool online, const char *error);
/* Called by the sync thread after a page was applied. */
void ts_agent_note_page(struct ts_agent *a, size_t items, int64_t wall_ms);

/* ---- session.c ------------------------------------------------------------
 * What the associate page needs around the session: the idle clear, the
 * last few sessions ("previous card") and the page key. */

/* Called with a->mu held whenever a scan makes sess the current session. */
void ts_agent_remember_locked(struct ts_agent *a, const char *sess);
/* The n-th session before the one on screen (n >= 1; when nothing is on
 * screen, n = 1 is the last one shown), malloc'd, or NULL. Sessions older
 * than TS_AGENT_RECENT_MAX_MS are forgotten. */
char *ts_agent_previous(struct ts_agent *a, int n);
/* Clears the session like ts_agent_clear, publishing `clear` with
 * {"reason": reason}. */
void ts_agent_clear_reason(struct ts_agent *a, const char *reason);
/* Derives a->page_key from the API token (stable across restarts). */
enum ts_err ts_agent_page_key_init(struct ts_agent *a);
/* The associate page with the page key and settings filled in (malloc'd). */
char *ts_agent_page_render(const struct ts_agent *a, size_t *len);
struct ts_idle;
/* Starts the thread that clears an idle session ([page] idle_clear_s). */
enum ts_err ts_idle_start(struct ts_agent *a, struct ts_idle **out);
void ts_idle_stop(struct ts_idle *t); /* NULL ok */

/* ---- inputs.c -------------------------------------------------------------
 * The [input.*] sections (drivers/input.h) feeding ts_agent_scan. */
struct ts_agent_inputs;
struct ts_inputs;
struct ts_purch;
/* Opens every [input.*] section of conf (the parsed configuration file the
 * program loaded; borrowed for the call); scans go to core, receipts the
 * escpos tap parsed to purch (both borrowed, outliving the handle). Devices
 * need not be present. No thread yet. */
enum ts_err ts_agent_inputs_new(struct ts_agent *core, struct ts_purch *purch,
                                const struct ts_conf *conf, struct ts_agent_inputs **out, char *err,
                                size_t errsz);
/* Starts the input thread. */
enum ts_err ts_agent_inputs_start(struct ts_agent_inputs *in, char *err, size_t errsz);
/* Stops and joins the input thread (no more scans or receipts); the
 * drivers' state stays readable. NULL-safe. */
void ts_agent_inputs_stop(struct ts_agent_inputs *in);
/* Stops the thread and closes the drivers; NULL-safe. */
void ts_agent_inputs_free(struct ts_agent_inputs *in);
/* The drivers' handle (thread-safe on its own, drivers/input.h) for status
 * and metrics; NULL for NULL. */
struct ts_inputs *ts_agent_inputs_drivers(const struct ts_agent_inputs *in);

/* ---- syncer.c -------------------------------------------------------------*/

struct ts_syncer;
/* Starts the sync thread (its own cache connection and HTTP client); it
 * reports to core (link state, pages applied). */
struct ts_agent_parts;
/* parts: the core, and the handles the health report reads (NULL members ok). */
enum ts_err ts_syncer_start(const struct ts_agent_parts *parts, struct ts_syncer **out, char *err,
                            size_t errsz);
/* Stops and joins it; NULL ok. */
void ts_syncer_stop(struct ts_syncer *s);

/* ---- api.c ----------------------------------------------------------------*/

struct ts_api;
struct ts_trust;
/* The handles `run` made, lent to the API and to the sync thread's health
 * report (health.c); each outlives its borrowers. */
struct ts_agent_parts {
    struct ts_agent *core;          /* session, scans, bus, token, status */
    struct ts_purch *purch;         /* POST /api/v1/purchases, outbox status; NULL = 503 */
    struct ts_trust *trust;         /* certificate days in status; NULL = none */
    struct ts_agent_inputs *inputs; /* devices in status and metrics; NULL = none */
};
/* Starts the loopback HTTP API (libmicrohttpd) on cfg.api_host:api_port
 * (port 0 = ephemeral). */
enum ts_err ts_api_start(const struct ts_agent_parts *deps, struct ts_api **out, char *err,
                         size_t errsz);
int ts_api_port(const struct ts_api *api);
/* Ends SSE streams, stops the daemon; NULL ok. */
void ts_api_stop(struct ts_api *api);
/* The embedded associate page (generated from agent/page/index.html). */
extern const char ts_page_index_html[];
extern const size_t ts_page_index_html_len;

/* ---- trust.c --------------------------------------------------------------
 * The trust thread: certificate expiry, renewal, the hub certificate's
 * expiry. (`tillside enroll` itself is a command: cmd_enroll.c.) */

struct json_t;
/* Finishes a renewal a crash interrupted, then starts the thread (cfg
 * borrowed, outliving the handle). */
enum ts_err ts_trust_start(const struct ts_agent_config *cfg, struct ts_trust **out, char *err,
                           size_t errsz);
/* Stops and joins it, frees it; NULL-safe. */
void ts_trust_stop(struct ts_trust *t);
/* Adds cert_days_left, hub_cert_days_left, cert_not_after and warnings to
 * a status object (nothing for NULL). */
void ts_trust_status_add(struct ts_trust *t, struct json_t *status);
/* Days left of our certificate and of the hub's (false when unknown). */
bool ts_trust_days(struct ts_trust *t, int *own, bool *have_hub, int *hub);

/* ---- resolve.c ------------------------------------------------------------
 * Receipt and order scans: the card (cache by the receipt/order key, or the
 * hub) and the sale (this terminal's purchase journal, or the hub's
 * /v1/lookup?receipt= / ?order=). On TS_OK sets status, source, synced_at,
 * card (null when the sale has no known customer) and purchase / order in
 * sess; TS_ERR_NOTFOUND when neither was found. */
enum ts_err ts_agent_resolve_sale(struct ts_agent *a, enum ts_ident_kind kind, const char *value,
                                  char keys[][TS_IDENT_KEY_HEX], int nkeys, bool online,
                                  struct json_t *sess);

#endif
