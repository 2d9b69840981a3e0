/*
 * tillside-hub internals shared between the hub's files: configuration, the
 * Segment batch parser, the store (SQLite or PostgreSQL), the card builder,
 * trust and the HTTP API handler. Nothing here is used outside hub/ (and its tests and fuzzer).
 */
#ifndef TS_HUB_H
#define TS_HUB_H

#include "../common/ts.h"
#include "../sync/httpd.h"
#include "../sync/ident.h"
#include "sink.h"
#include "predict.h"
#include "source.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- config.c ------------------------------------------------------------ */

#define TS_HUB_PATH_MAX 1024
#define TS_HUB_ORDER_SIG_BYTES 16 /* signed order codes: ID "." hex(HMAC[0..16)) */

/* [retention] (retention.c, docs/OPERATIONS.md "Retention"), in days. */
struct ts_hub_retention {
    int purchases_days;     /* stored purchases, by when received; 0 = forever */
    int upstream_sent_days; /* forwarded (sent) outbox rows; pending and dead ones stay */
    int profile_quiet_days; /* customers unchanged this long are erased; 0 = never */
    int processed_days;     /* CDP messageIds remembered against redelivery */
    int period_s;           /* how often the janitor runs */
};

struct ts_hub_config {
    char listen[256];               /* host:port */
    char db[TS_HUB_PATH_MAX];       /* SQLite file or postgresql:// URI */
    char tls_cert[TS_HUB_PATH_MAX]; /* empty = plain HTTP behind a TLS proxy */
    char tls_key[TS_HUB_PATH_MAX];
    char client_ca[TS_HUB_PATH_MAX];
    enum ts_log_level log_level;
    char write_key[256]; /* CDP Basic-auth write key */
    char tenant[64];     /* must match the O of terminal certificates */
    struct ts_tenant_key key;
    int page_limit; /* default feed page size, 1..1000 */
    /* [tenant] previous_key / previous_key_version: the second key version
     * during a rotation (len 0 = none); feed items carry keys for both. */
    struct ts_tenant_key prev_key;
    int tombstone_days; /* [retention] (or [feed]) tombstone_days: how long erasures are kept */
    struct ts_hub_retention retention;
    /* enrolment and renewal (enroll.c) */
    char enroll_listen[256];       /* host:port of the enrolment listener; "" = none */
    char ca_cert[TS_HUB_PATH_MAX]; /* enrolment CA certificate; "" = client_ca */
    char ca_key[TS_HUB_PATH_MAX];  /* its key; "" = no enrolment or renewal */
    int cert_days;                 /* validity of issued terminal certificates */
    char public_url[512];          /* main listener URL given to enrolled agents; "" = derive */
    /* [upstream]: where accepted purchases are forwarded (upstream.c);
     * url "" = not forwarded */
    char upstream_url[512];
    char upstream_write_key[256];
    char upstream_ca_file[TS_HUB_PATH_MAX];
    int upstream_max_backoff_s; /* cap of the retry backoff */
    /* [sink.NAME] sections, and [upstream] as sink "upstream" of type
     * segment (sink_config.c); credentials may come from [hub] secrets_file */
#define TS_HUB_MAX_SINKS 8
    struct ts_sink_conf sinks[TS_HUB_MAX_SINKS];
    size_t nsinks;
    char secrets_file[TS_HUB_PATH_MAX];
    /* [hub] listen_plain: plain HTTP for a TLS-terminating proxy that passes
     * the verified client identity in headers (proxy.c); "" = none */
    char listen_plain[256];
    char trusted_proxy[256]; /* the proxy's addresses, comma-separated */
    char proxy_verify_header[64], proxy_dn_header[64], proxy_serial_header[64],
        proxy_v_end_header[64];
    /* [lookup] and [throttle]: limits against guessing (throttle.c,
     * docs/OPERATIONS.md "Security") */
    int lookup_rate_per_min, lookup_burst, lookup_flagged_rate_per_min;
    int lookup_miss_window_s, lookup_miss_min, lookup_miss_percent;
    bool lookup_orders_own_store; /* ?order= answers orders naming the terminal's store only */
    uint8_t order_secret[64];     /* ?order= needs ID.SIG, SIG = HMAC over ID (len 0 = no) */
    size_t order_secret_len;
    int throttle_free_failures, throttle_max_delay_s;
    /* [fleet] (fleet*.c, docs/OPERATIONS.md "Fleet"): terminals silent
     * longer than stale_after_s are stale; the fleet page also opens to
     * admin_user with the password in admin_password_file (Basic auth). */
    int fleet_stale_after_s;
    char fleet_admin_user[64];
    char fleet_admin_password_file[TS_HUB_PATH_MAX];
    char fleet_admin_password[128];
    struct ts_hub_source_conf sources[TS_HUB_MAX_SOURCES]; /* [source.NAME] (source.c) */
    size_t nsources;
    /* [hub] serving (main.c, sync/httpd.h, docs/OPERATIONS.md "Sizing"):
     * the CDP's own listener ("" = none) and the capacities */
    char cdp_listen[256];
    int max_connections, max_unauthenticated, max_unauthenticated_per_address;
    int handshake_timeout_s, request_head_timeout_s, workers, retry_after_s;
    int max_feed_polls, max_purchase_uploads, max_cdp_batches;
    struct ts_hub_predict_conf predict; /* [predictions] (predict.c) */
};

/* Reads and validates the INI file; err gets "file:line: ..." on failure. */
enum ts_err ts_hub_config_load(const char *path, struct ts_hub_config *out, char *err,
                               size_t errsz);
/* The [sink.NAME] sections and [upstream] into o->sinks (sink_config.c,
 * called by config.c after [upstream]). */
struct ts_conf;
enum ts_err ts_hub_sinks_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz);
/* Same from text in memory (name appears in messages). */
enum ts_err ts_hub_config_parse(const char *name, const char *text, struct ts_hub_config *out,
                                char *err, size_t errsz);

/* ---- segment.c -----------------------------------------------------------
 * A Segment HTTP API batch, parsed and validated as a whole before anything is
 * stored. Strings are borrowed from the batch and live until
 * ts_seg_batch_free. */

#define TS_SEG_MAX_ID 256    /* userId, anonymousId, messageId, product and order ids */
#define TS_SEG_MAX_TEXT 512  /* names, tiers, store ids longer than this are ignored */
#define TS_SEG_MAX_LOYALTY 8 /* loyalty ids taken from one identify */
/* Longest loyalty id: what a scanner can deliver (drivers/scan.h TS_SCAN_MAX
 * - 1), so an app QR whose whole text is the id (a URL) still keys. Longer
 * ones refuse the batch, naming the field. */
#define TS_SEG_MAX_LOYALTY_LEN 511

enum ts_seg_kind {
    TS_SEG_IGNORE = 0, /* valid but carries nothing we keep (page, screen, Cart Viewed...) */
    TS_SEG_IDENTIFY,
    TS_SEG_VIEWED,
    TS_SEG_CART_ADD,
    TS_SEG_CART_REMOVE,
    TS_SEG_WISH_ADD,
    TS_SEG_WISH_REMOVE,
    TS_SEG_ORDER,
    TS_SEG_ORDER_STATUS, /* Order Updated / Shipped / Cancelled / Refunded ... */
};

struct ts_seg_product {
    const char *product_id;
    const char *name; /* NULL when absent */
    double price;
    bool has_price;
    long quantity; /* 1 when absent (has_quantity false) */
    bool has_quantity;
};

/* One offer of the identify trait `offers` (offers.c, PROTOCOL.md "Offers"). */
#define TS_SEG_MAX_OFFERS 8
#define TS_OFFER_MAX_CODE 64
struct ts_seg_offer {
    const char *code;        /* 1..64 printable bytes */
    const char *description; /* NULL = none */
    int64_t expires_ms;      /* 0 = does not expire */
};

struct ts_seg_event {
    enum ts_seg_kind kind;
    const char *user_id;      /* NULL or non-empty */
    const char *anonymous_id; /* NULL or non-empty; at least one of the two is set */
    const char *message_id;   /* NULL when the sender gave none (no dedupe then) */
    int64_t at_ms;            /* timestamp, originalTimestamp, or receive time */
    /* identify traits (NULL / has_ false when not sent: identify is a partial update) */
    const char *name, *first_name, *last_name, *tier, *home_store;
    const char *email; /* traits.email: kept for the sinks (identity = email), off the feed */
    long long points;
    bool has_points;
    int consent;                             /* -1 not sent, 0 or 1 */
    const char *loyalty[TS_SEG_MAX_LOYALTY]; /* normalized with ts_ident_normalize */
    size_t nloyalty;
    const char *suggested_id, *suggested_name;
    /* track: one product for single-product events, products[] for orders */
    struct ts_seg_product *products;
    size_t nproducts;
    const char *order_id, *currency;
    /* the store an online order is collected in (properties.pickup_store or
     * store_id; click-and-collect), NULL = none named */
    const char *order_store;
    double total;
    bool has_total;
    /* orders: the status the event sets, one of ts_hub_order_status's
     * names; NULL = none (an Order Completed is "placed") */
    const char *order_status;
    /* identify: the traits object as sent (a json_t, borrowed like the
     * strings), for the prediction traits (predict.c); NULL otherwise */
    const void *traits;
    /* identify: traits.offers, the customer's current offers (has_offers
     * false when the trait was not sent) */
    bool has_offers;
    struct ts_seg_offer offers[TS_SEG_MAX_OFFERS];
    size_t noffers;
};

struct ts_seg_batch {
    struct ts_seg_event *ev;
    size_t n;
    void *priv; /* the parsed JSON and owned strings */
};

/*
 * Parses body[0..len) as {"batch": [event, ...]}. Any invalid event fails the
 * whole batch with TS_ERR_INVAL and err naming the event index and the
 * problem ("batch[3]: event has neither userId nor anonymousId"). now_ms is
 * the receive time used when an event carries no timestamp.
 */
enum ts_err ts_seg_parse(const char *body, size_t len, int64_t now_ms, struct ts_seg_batch **out,
                         char *err, size_t errsz);
void ts_seg_batch_free(struct ts_seg_batch *b);

/* ---- summary.c -----------------------------------------------------------
 * The customer card of docs/PROTOCOL.md, built from what the store loaded. */

#define TS_HUB_HALF_LIFE_MS (7LL * 24 * 3600 * 1000)
#define TS_HUB_RECENT_MS (7LL * 24 * 3600 * 1000) /* window for "count" */
#define TS_HUB_MAX_INTERESTS 8
#define TS_HUB_MAX_ORDERS 5

struct ts_hub_line { /* a cart or wishlist line */
    const char *product_id;
    const char *name;
    double price;
    bool has_price;
    long quantity;
};

struct ts_hub_view { /* one Product Viewed, grouped by product_id (sorted) */
    const char *product_id;
    const char *name;
    int64_t at_ms;
};

struct ts_hub_order {
    const char *order_id;
    double total;
    bool has_total;
    const char *currency;
    const char *status;
    int64_t at_ms;
    const char *store; /* in-store purchases (purchases.c): the store; NULL online */
};

struct ts_hub_profile {
    const char *cid;
    const char *name, *tier; /* NULL = unknown, key left out */
    long long points;
    bool has_points;
    bool consent;
    const char *suggested_id, *suggested_name; /* trait; NULL = derive */
    const char *peer_id, *peer_name;           /* from other customers (suggest.c); NULL = none */
    const struct ts_hub_line *cart;
    size_t ncart;
    const struct ts_hub_view *views; /* sorted by product_id */
    size_t nviews;
    const struct ts_hub_line *wishlist;
    size_t nwish;
    const struct ts_hub_order *orders; /* newest first */
    size_t norders;
    const char *predictions;           /* stored bands (predict.c); NULL = none */
    const struct ts_seg_offer *offers; /* not redeemed (offers.c); expired ones left out */
    size_t noffers;
    int64_t updated_ms; /* hub time of the last change */
    int64_t now_ms;     /* reference for decay and the 7-day count */
};

/* Builds the card as compact JSON text; *out is malloc'd, free() it. */
enum ts_err ts_hub_card_build(const struct ts_hub_profile *p, char **out);

/* ---- suggest.c ------------------------------------------------------------
 * The suggested product from what other customers did, and order statuses
 * from the online order events. */

/* The order status an event sets: "Order Shipped" → "shipped", "Order
 * Updated" with properties.status "Ready for pickup" → "ready_for_pickup"...
 * status_prop may be NULL. NULL when the event says nothing we know. The
 * result is a static string. */
const char *ts_hub_order_status(const char *event_name, const char *status_prop);
/* The customer's strongest interest: the newest cart line, else the
 * most-viewed product (decayed); NULL when there is none. */
const char *ts_hub_top_interest(const struct ts_hub_profile *p);

/* cid = first 32 hex chars of HMAC-SHA256(tenant key, "cid:" + internal id). */
enum ts_err ts_hub_cid(const struct ts_tenant_key *k, const char *internal_id, char out[33]);

/* ---- store.c, db.c, ingest.c, feed.c: the store --------------------------- */

struct ts_hub_store;

enum { TS_HUB_STORE_RDONLY = 1 };

/* Opens (creating unless RDONLY) the store at path: an SQLite file
 * (":memory:" works) or a PostgreSQL database named by a postgresql:// URI
 * (hub/sql.h), which several hub processes may share. The key makes cids and
 * identifier keys. A writer and a reader connection, each guarded by a mutex:
 * every call below is thread-safe. */
enum ts_err ts_hub_store_open(const char *path, const struct ts_tenant_key *key, int flags,
                              struct ts_hub_store **out, char *err, size_t errsz);
void ts_hub_store_close(struct ts_hub_store *s);
/* Bulk mode (import): card rebuilds skip the suggestion from other
 * customers (about a millisecond of SQL per card, suggest.c), leaving the
 * card's own fallback. */
void ts_hub_store_set_bulk(struct ts_hub_store *s, bool bulk);

struct ts_hub_ingest_result {
    size_t applied;    /* events stored (including ones with nothing to keep) */
    size_t duplicates; /* skipped: messageId seen before */
    size_t customers;  /* distinct customers whose card changed */
};

/* Applies a validated batch in one transaction: all or nothing. now_ms is the
 * hub time written as the cards' "updated" and used for decay. */
enum ts_err ts_hub_store_ingest(struct ts_hub_store *s, const struct ts_seg_batch *b,
                                int64_t now_ms, struct ts_hub_ingest_result *res);

struct ts_hub_feed_page {
    ts_buf items; /* JSON array elements, comma-separated, without brackets */
    size_t nitems;
    bool more;
    uint64_t last_seq; /* seq of the last item; since when nitems == 0 */
};

/*
 * One page of a store's feed: rows with seq > since in seq order, at most
 * limit. TS_ERR_GONE when since is ahead of the hub (the hub's data was
 * replaced; the agent must resync). page->items is reset first; the caller
 * frees it with ts_buf_free.
 */
enum ts_err ts_hub_store_feed(struct ts_hub_store *s, const char *store_id, uint64_t since,
                              int limit, struct ts_hub_feed_page *page);

/* {"kv":..,"cid":..,"keys":[..],"card":{..}} for a 64-hex identifier key
 * (lowercase), or TS_ERR_NOTFOUND. */
enum ts_err ts_hub_store_lookup(struct ts_hub_store *s, const char *key_hex, ts_buf *out);

/* The random id this database was created with (see feed cursors). */
uint32_t ts_hub_store_epoch(const struct ts_hub_store *s);

/* {"customers":N,"events":N,"seq":N,"stores":{"S001":N,...}} */
enum ts_err ts_hub_store_stats(struct ts_hub_store *s, ts_buf *out);

/* ---- store.c, feed.c, erase.c: rotation, long-poll, erasure, tombstones --- */

/*
 * Sets the second key version (prev NULL or len 0 = none) next to the key
 * the store was opened with. When the pair differs from the one the
 * database was last stamped with, every identifier is re-keyed and every
 * customer re-stamped in one transaction, so every store receives the new
 * keys (*restamped, may be NULL, says how many). Call once after opening a
 * store that ingests; feed items and lookups then carry both versions.
 */
enum ts_err ts_hub_store_set_keys(struct ts_hub_store *s, const struct ts_tenant_key *prev,
                                  size_t *restamped);
/* The second key version feed items carry ("prev_kv"), 0 when none. */
int ts_hub_store_prev_kv(const struct ts_hub_store *s);

/* Calls fn(ud) after every commit that may have changed a feed (this
 * process's, or another's the PostgreSQL listener heard of): the servers'
 * ts_httpd_wake, so parked long-polls look again. Up to 4, set before
 * serving; fn NULL removes them all (before the servers stop). fn must be
 * quick and thread-safe. */
enum ts_err ts_hub_store_on_change(struct ts_hub_store *s, void (*fn)(void *), void *ud);
/* Calls fn(ud, store_id, seq) when a change notice (as for on_change)
 * moved store_id's feed to seq, for the stores ts_hub_store_feed_seen was
 * asked about (feed_watch.c): the servers' ts_httpd_wake_topic, so a change
 * to one store wakes only its parked long-polls. Up to 4, set before
 * serving; uses one of the on_change places. fn must be quick. */
enum ts_err ts_hub_store_on_feed(struct ts_hub_store *s,
                                 void (*fn)(void *ud, const char *store_id, uint64_t seq),
                                 void *ud);
/* The last feed seq of store_id as ts_hub_store_on_feed announces it:
 * read it before reading the feed, park having seen it. False without
 * ts_hub_store_on_feed (or on an error): park to be woken by every change. */
bool ts_hub_store_feed_seen(struct ts_hub_store *s, const char *store_id, uint64_t *seq);
/* Whether ts_hub_store_shutdown was called. */
bool ts_hub_store_closing(struct ts_hub_store *s);
/* How often a parked long-poll must look by itself for changes nobody
 * signals: 0 (never) once ts_hub_store_watch runs on SQLite, and on
 * PostgreSQL for a poll parked on its store's seq (watched: the listener
 * thread looks for the whole process, at a notice, after a reconnect and
 * every 10 s, 1 s while it cannot listen); else 10 s while the PostgreSQL
 * listener hears other processes, 1 s otherwise. */
int ts_hub_store_recheck_ms(struct ts_hub_store *s, bool watched);
/* Feed pages read since the process started (ts_hub_store_feed, one query
 * each), and the PostgreSQL listener's looks without a notice since the
 * store was opened (one query each for the process, whatever the number of
 * parked polls). */
void ts_hub_store_feed_counts(struct ts_hub_store *s, uint64_t *reads, uint64_t *rechecks);
/* `run`, on SQLite: a thread that looks once a second whether another
 * process committed (PRAGMA data_version) and signals the change notice
 * then, so parked long-polls need not look each by itself. Stopped by
 * ts_hub_store_close. No-op on PostgreSQL (its listener does that). */
enum ts_err ts_hub_store_watch(struct ts_hub_store *s);

/*
 * Long-poll: returns true as soon as store_id's feed has a change after
 * since, false after timeout_ms without one or once ts_hub_store_shutdown
 * was called. Commits in this process wake it at once; changes committed by
 * other processes on the same database are seen within a second.
 */
bool ts_hub_store_wait(struct ts_hub_store *s, const char *store_id, uint64_t since,
                       int timeout_ms);
/* Releases every waiter for good (before stopping the server). NULL ok. */
void ts_hub_store_shutdown(struct ts_hub_store *s);

struct ts_hub_erase_result {
    char cid[33];  /* the erased customer's card reference */
    size_t stores; /* stores whose feed got the erase */
};

/*
 * GDPR erasure of one customer, found by Segment userId (loyalty NULL) or by
 * loyalty number (user_id NULL): profile, identifiers, views, cart,
 * wishlist, orders and anonymous-id links are deleted in one transaction,
 * and every store that had the customer in its slice gets an erase item
 * (a tombstone, kept tombstone_days). TS_ERR_NOTFOUND when nobody matches.
 */
enum ts_err ts_hub_store_erase(struct ts_hub_store *s, const char *user_id, const char *loyalty,
                               int64_t now_ms, struct ts_hub_erase_result *res);
/*
 * Deletes tombstones older than keep_ms and raises the horizon to the newest
 * one deleted: cursors below it get 410 Gone (they may have missed an
 * erasure). *removed (may be NULL) gets the count.
 */
enum ts_err ts_hub_store_prune(struct ts_hub_store *s, int64_t now_ms, int64_t keep_ms,
                               size_t *removed);
/* The seq below which cursors are refused (0 = none). */
uint64_t ts_hub_store_horizon(struct ts_hub_store *s);

/* ---- retention.c ---------------------------------------------------------- */

/* What one retention pass removed. */
struct ts_hub_retention_result {
    size_t profiles;   /* quiet customers erased (their stores got erase items) */
    size_t purchases;  /* purchases past purchases_days */
    size_t sent;       /* forwarded outbox rows past upstream_sent_days */
    size_t processed;  /* remembered messageIds past processed_days */
    size_t tombstones; /* erase items past tombstone_days (the horizon rose) */
};

/*
 * One retention pass at now_ms (docs/OPERATIONS.md "Retention"): erases
 * customers unchanged for profile_quiet_days as `tillside-hub erase` does,
 * deletes purchases received more than purchases_days ago unless their
 * forwarding is still pending or dead, sent outbox rows done more than
 * upstream_sent_days ago, messageIds older than processed_days, and
 * tombstones older than tombstone_days (ts_hub_store_prune). Works in
 * bounded transactions, so writers are never held up for long.
 */
enum ts_err ts_hub_retention_run(struct ts_hub_store *s, const struct ts_hub_retention *r,
                                 int tombstone_days, int64_t now_ms,
                                 struct ts_hub_retention_result *out);

/* Runs retention at start and then every r->period_s on its own thread. */
struct ts_hub_janitor;
enum ts_err ts_hub_janitor_start(struct ts_hub_store *s, const struct ts_hub_retention *r,
                                 int tombstone_days, struct ts_hub_janitor **out);
void ts_hub_janitor_stop(struct ts_hub_janitor *j); /* NULL ok */

/* ---- api.c --------------------------------------------------------------- */

#define TS_HUB_MAX_BODY (500u * 1024u) /* Segment's own batch limit */
#define TS_HUB_FEED_MAX_LIMIT 1000
#define TS_HUB_FEED_MAX_WAIT 25 /* seconds a long-poll (?wait=) may be held */

struct ts_hub_api {
    const struct ts_hub_config *cfg;
    struct ts_hub_store *store;
    int64_t (*now_ms)(void);          /* wall clock; injectable for tests */
    struct ts_hub_trust *trust;       /* enroll.c; NULL = renewal answers 503 */
    struct ts_hub_upstream *upstream; /* upstream.c; NULL = purchases not forwarded */
    struct ts_hub_throttle *throttle; /* throttle.c; NULL = no rate limits */
    struct ts_hub_fleet *fleet;       /* fleet_db.c; NULL = health reports ignored */
};

struct ts_hub_throttle;

/* The ts_httpd handler; ud is a struct ts_hub_api. Thread-safe. */
void ts_hub_api_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp);
/* The handler of [hub] cdp_listen (TLS without client certificates):
 * /v1/batch with its Basic auth, and nothing for terminals (404). */
void ts_hub_api_cdp_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp);
/* ts_httpd_opts.classify: the capacity class of a request. */
enum { TS_HUB_CLASS_FEED, TS_HUB_CLASS_PURCHASES, TS_HUB_CLASS_CDP };

/* The servers whose connection counters /metrics shows (metrics.c), by
 * listener name ("main", "plain", "cdp", "enroll"; up to 4). srv NULL
 * removes them all: before the servers stop. Thread-safe. */
void ts_hub_metrics_set_server(const char *listener, struct ts_httpd *srv);
int ts_hub_api_classify(void *ud, const char *method, const char *path);
/* The [hub] capacities and deadlines into a listener's options. */
void ts_hub_api_serve_opts(const struct ts_hub_config *cfg, struct ts_httpd_opts *o);

/* Feed cursors: "c1.<epoch>.<seq>", the store's epoch as 8 lowercase hex
 * digits and the hub sequence number in lowercase hex. Opaque to agents; the
 * epoch is drawn when the database is created, so a cursor saved against a
 * database that has since been replaced is recognized (410) instead of
 * silently skipping the new database's first changes. */
#define TS_HUB_CURSOR_MAX 40
void ts_hub_cursor_format(uint32_t epoch, uint64_t seq, char out[TS_HUB_CURSOR_MAX]);
enum ts_err ts_hub_cursor_parse(const char *s, uint32_t *epoch, uint64_t *seq);

/* ---- enroll.c -------------------------------------------------------------
 * Enrolment tokens, the enrolment listener, renewal and revocation, with
 * their state in trust_* tables of the hub database. */

struct ts_hub_trust;

/* Opens the trust tables in cfg->db (creating them) and, with [hub] ca_key,
 * loads the enrolment CA. now_ms NULL = wall clock. cfg must outlive it. */
enum ts_err ts_hub_trust_open(const struct ts_hub_config *cfg, int64_t (*now_ms)(void),
                              struct ts_hub_trust **out, char *err, size_t errsz);
void ts_hub_trust_close(struct ts_hub_trust *t);
/* The main listener's port, for the hub_url enrolment answers with. */
void ts_hub_trust_set_main_port(struct ts_hub_trust *t, int port);
/* ts_tls_peer_check for the main listener (ud = trust): false for a revoked
 * certificate. Thread-safe. */
bool ts_hub_trust_peer_ok(void *ud, const struct ts_peer_id *peer, char *why, size_t whysz);
/* ts_httpd handler of the enrolment listener (ud = trust): POST /v1/enroll. */
void ts_hub_enroll_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp);
/* POST /v1/renew for an already verified terminal (req->peer). */
void ts_hub_trust_renew(struct ts_hub_trust *t, const struct ts_httpd_req *req,
                        struct ts_httpd_resp *resp);

/* A one-time enrolment token for terminal of store, valid ttl_ms from
 * now_ms, stored (as its SHA-256) in the trust tables of the database
 * target. */
#define TS_HUB_TOKEN_HEX 33
enum ts_err ts_hub_trust_add_token(const char *target, const char *store, const char *terminal,
                                   int64_t now_ms, int64_t ttl_ms, char token[TS_HUB_TOKEN_HEX],
                                   char *err, size_t errsz);
/* Revokes the certificate serial (hex; terminal and store then NULL) or
 * every certificate of terminal (of store, NULL = any) made until now_ms;
 * running hubs refuse it from their next request. shown gets the serial as
 * compared; *certs how many certificates this hub issued to the terminal. */
enum ts_err ts_hub_trust_revoke(const char *target, const char *terminal, const char *store,
                                const char *serial, const char *reason, int64_t now_ms, char *shown,
                                size_t shownsz, long *certs, char *err, size_t errsz);
struct ts_hub_revocation {
    const char *serial; /* NULL: by name */
    const char *cn, *ou, *reason;
    int64_t at_ms;
};
/* Calls fn for every revocation, oldest first; r lives during the call. */
enum ts_err ts_hub_trust_list_revoked(const char *target,
                                      void (*fn)(void *ud, const struct ts_hub_revocation *r),
                                      void *ud, char *err, size_t errsz);

/* YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|+hh:mm|-hh:mm]: ts_iso8601_parse trusts the
 * shape, so CDP events and purchases check it first (segment.c). */
bool ts_hub_iso_shape(const char *s);

#endif
