/*
 * In-store purchases at the hub (docs/PROTOCOL.md "POST /v1/purchases"):
 * the batch parser (purchase_parse.c), storing them exactly once by messageId
 * with the profile update (purchases.c), the HTTP handler
 * (purchase_http.c), receipt and order lookups (purchase_lookup.c), /metrics
 * (metrics.c), and forwarding them upstream to a Segment-compatible CDP
 * through a durable outbox table (upstream.c).
 */
#ifndef TS_HUB_PURCHASES_H
#define TS_HUB_PURCHASES_H

#include "hub.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_HUB_PURCHASE_MAX_EVENT (32u * 1024u) /* Segment's per-event limit */
#define TS_HUB_PURCHASE_MAX_PRODUCTS 500

enum ts_hub_purchase_status {
    TS_HUB_P_ACCEPTED = 0,
    TS_HUB_P_DUPLICATE, /* messageId (or this store's receipt) stored before */
    TS_HUB_P_REJECTED,  /* invalid event; error says why; nothing stored */
};

/* What a till event is (the values of enum ts_sink_kind, hub/sink.h). */
enum ts_hub_till_kind {
    TS_HUB_TILL_PURCHASE = 1, /* track "Order Completed" */
    TS_HUB_TILL_RETURN = 2,   /* track "Order Refunded" */
    TS_HUB_TILL_CONSENT = 4,  /* identify with consent traits */
};

struct ts_hub_purchase {
    enum ts_hub_till_kind kind;
    const char *message_id; /* NULL when the event had none (then rejected) */
    const char *store, *terminal, *receipt, *cid, *currency, *source; /* cid NULL = unknown */
    const char *barcode; /* context.tillside.barcode: the printed receipt barcode, NULL = none */
    /* A return: receipt is its key ("return:ID"), original the sale's receipt
     * (properties.order_id). Consent: receipt is "consent:ID"; personalization
     * -1 = not given, 0 or 1; associate NULL = not given. */
    const char *original, *associate;
    int personalization, email_consent, sms_consent;
    double total;
    int64_t at_ms; /* originalTimestamp, else receive time */
    void *event;   /* json_t *: the event as forwarded upstream */
    char *text;    /* event as compact JSON text, as stored; owned by the batch */
    enum ts_hub_purchase_status status;
    char error[160]; /* for TS_HUB_P_REJECTED */
};

struct ts_hub_pbatch {
    struct ts_hub_purchase *p;
    size_t n;
    void *root; /* json_t * of the whole body */
};

/* Events in which the payment card guard masked or refused card data,
 * since start (purchase_parse.c; tillside_hub_guard_drops_total). */
unsigned long long ts_hub_purchases_card_data(void);

/*
 * Parses body[0..len) as {"batch": [event...]} of "Order Completed" track
 * events from a terminal of store (its certificate's OU). TS_ERR_INVAL (err
 * says why) only when the body is not such a batch at all; an invalid event
 * is marked TS_HUB_P_REJECTED with its reason, and so is an event that names
 * another store. now_ms stands in for a missing originalTimestamp.
 */
enum ts_err ts_hub_purchases_parse(const char *body, size_t len, const char *store, int64_t now_ms,
                                   struct ts_hub_pbatch **out, char *err, size_t errsz);
void ts_hub_pbatch_free(struct ts_hub_pbatch *b);
/* Member name of the JSON object obj (a json_t *) when it is a string of
 * 1..max bytes without control characters, else NULL. Borrowed from obj. */
const char *ts_hub_purchase_member(const void *obj, const char *name, size_t max);

struct ts_hub_purchase_counts {
    size_t accepted, duplicates, rejected, customers; /* customers whose card changed */
};

/*
 * Stores the batch's valid events in one durable transaction (synchronous
 * FULL): each once by messageId (a second event for a receipt this store
 * already recorded is a duplicate too), marking p[i].status. Accepted
 * purchases of a known customer (context.tillside.cid) take the items out of
 * the online cart, add the in-store order to the card and re-stamp the card
 * in every feed that has it. With forward, each accepted purchase is queued
 * for upstream.c in the same transaction. TS_ERR_FULL when the disk is full.
 */
enum ts_err ts_hub_purchases_store(struct ts_hub_store *s, struct ts_hub_pbatch *b, bool forward,
                                   int64_t now_ms, struct ts_hub_purchase_counts *c);

/* The purchases' part of the schema (struct ts_hub_db_part, db.h). */
enum ts_err ts_hub_purchases_schema(struct ts_hub_store *s);

/*
 * GET /v1/lookup?receipt= and ?order=: {"kv",...,"cid","keys","card",
 * "purchase": {...}} (the lookup shape plus the purchase or order; without
 * "cid"/"keys"/"card" when the purchase has no known customer), or
 * TS_ERR_NOTFOUND.
 */
enum ts_err ts_hub_lookup_receipt(struct ts_hub_store *s, const char *receipt, ts_buf *out);
/* only_store non-NULL: an order that does not name that store (its pickup
 * store, or the store of a till sale) reads as unknown. */
enum ts_err ts_hub_lookup_order(struct ts_hub_store *s, const char *order_id,
                                const char *only_store, ts_buf *out);

/* Appends ,"cid","keys"(,"prev_kv","prev_keys"),"card" of customer cust
 * (nothing for NULL or a customer without a card) read on db. */
struct ts_sql;
enum ts_err ts_hub_card_of(struct ts_hub_store *s, struct ts_sql *db, const char *cust,
                           ts_buf *out);

/* Purchase and forwarding counts: {"stored","forwarded","pending","dead"}
 * into *o (a json_t * object); zeros for a database without the tables. */
enum ts_err ts_hub_purchases_stats(struct ts_hub_store *s, void *o);

/* Counts the answer to one purchase batch for /metrics (metrics.c). */
void ts_hub_metrics_count_purchases(const struct ts_hub_purchase_counts *c);

/* POST /v1/purchases (purchase_http.c) and GET /metrics (metrics.c) for
 * api.c. */
void ts_hub_purchases_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                             struct ts_httpd_resp *resp);
void ts_hub_metrics_handle(struct ts_hub_api *api, const struct ts_httpd_req *req,
                           struct ts_httpd_resp *resp);

/* ---- upstream.c ------------------------------------------------------------
 * The forwarder: one thread sending due outbox rows as Segment batches to
 * [upstream] url with Basic auth, exponential backoff with full jitter
 * (capped) on failures, Retry-After honoured, and a 4xx other than 408/429
 * moving the event to the dead letters with the reason (a batch refused as a
 * whole is retried one event at a time, so only the bad event dies). */

struct ts_hub_upstream;

enum ts_err ts_hub_upstream_new(struct ts_hub_store *s, const struct ts_hub_config *cfg,
                                struct ts_hub_upstream **out, char *err, size_t errsz);
/* Starts the thread (after _new). */
enum ts_err ts_hub_upstream_start(struct ts_hub_upstream *u);
/* Stops and joins the thread, frees. NULL ok. */
void ts_hub_upstream_free(struct ts_hub_upstream *u);
/* New rows are due: send now instead of at the next wake-up. NULL ok. */
void ts_hub_upstream_kick(struct ts_hub_upstream *u);
/*
 * One pass (what the thread runs): sends every row due at now_ms, in
 * batches, and returns the time the next row falls due in *next_ms (INT64_MAX
 * when none). For tests; not while the thread runs.
 */
enum ts_err ts_hub_upstream_run_once(struct ts_hub_upstream *u, int64_t now_ms, int64_t *next_ms);

struct ts_hub_upstream_metrics {
    uint64_t requests, forwarded, failures, dead; /* since start */
    int64_t last_success_ms;                      /* 0 = never */
};
void ts_hub_upstream_metrics(const struct ts_hub_upstream *u, struct ts_hub_upstream_metrics *m);

/* Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"):
 * uniform in [0, min(cap, base * 2^attempt)], at least retry_after_ms. r is
 * a uniform random 32-bit number. */
int64_t ts_hub_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, int64_t retry_after_ms,
                          uint32_t r);

#endif
