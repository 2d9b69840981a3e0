/*
 * In-store purchases on the agent (PRODUCT.md §4.5, PROTOCOL.md "POST
 * /api/v1/purchases"): validation, the Segment "Order Completed" event,
 * the durable commit into the outbox (sync/outbox.h) and, in uploader.c,
 * the thread that uploads the outbox to the hub.
 */
#ifndef TS_AGENT_PURCHASE_H
#define TS_AGENT_PURCHASE_H

#include "agent.h"
#include "outbox.h"
#include "worker.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#define TS_PURCHASE_MAX_EVENT (32 * 1024) /* Segment's per-event limit */
#define TS_PURCHASE_MAX_PRODUCTS 500

struct ts_uploader;

/* The purchases handle: the journal, the upload thread and their counters.
 * The outbox and the worker have their own locks; the counters are atomic. */
struct ts_purch {
    struct ts_agent *core; /* session and bus (borrowed, outlives the handle) */
    struct ts_outbox *ob;
    struct ts_worker w; /* the upload thread: its stop, kick and sleeps */
    struct ts_uploader *up;
    struct ts_txcount *tx; /* txcount.c: transactions per day (match rate) */
    /* counters since start, for /metrics */
    atomic_uint_fast64_t recorded, duplicates, refused_full, uploads, upload_failures, sent,
        dead_lettered;
    atomic_int_fast64_t last_upload_ok_ms; /* wall ms, 0 = never */
};

/* <state_dir>/outbox.db */
void ts_purchase_outbox_path(const struct ts_agent_config *c, char *out, size_t outsz);
/* Opens the outbox (<state_dir>/outbox.db) into a new handle reporting to
 * core; _close frees it (NULL-safe, after the uploader stopped). */
enum ts_err ts_purchase_open(struct ts_agent *core, struct ts_purch **out, char *err, size_t errsz);
void ts_purchase_close(struct ts_purch *pu);

/*
 * Validates purchase (the local API body), makes its Segment event with a
 * new messageId, commits it durably and only then returns TS_OK with the
 * id. A receipt recorded before gives TS_OK, *duplicate and the first id.
 * TS_ERR_INVAL: err lists the bad fields ("invalid fields: total,
 * products[0].quantity"). TS_ERR_FULL: the disk is full, nothing recorded.
 * After a new purchase, publishes `purchase` on the bus and clears the
 * session when the purchase is its customer's.
 */
enum ts_err ts_agent_purchase_submit(struct ts_purch *pu, const char *source, json_t *purchase,
                                     char message_id[64], bool *duplicate, char *err, size_t errsz);
/* The same with the bad fields as a JSON array (appended to fields). */
enum ts_err ts_purchase_submit_fields(struct ts_purch *pu, const char *source, json_t *purchase,
                                      char message_id[64], bool *duplicate, json_t *fields,
                                      char *err, size_t errsz);

/* POST /api/v1/purchases for api.c: the HTTP status, the JSON answer in out. */
unsigned ts_purchase_http(struct ts_purch *pu, const char *body, size_t len, ts_buf *out);
/* outbox_depth, outbox_oldest_age_s, dead_letters for /api/v1/status. */
void ts_purchase_status_add(struct ts_purch *pu, json_t *status);
/* The outbox metrics for /metrics (Prometheus text). */
void ts_purchase_metrics(struct ts_purch *pu, ts_buf *b);

/* ---- every till event (purchase.c) ------------------------------------------
 * Returns (api_returns.c) and consent (api_consent.c) travel the purchases'
 * one pipeline: the same checks, the same journal and uploader, the hub's
 * same POST /v1/purchases (PROTOCOL.md "Till events"). */

/* A printable string of 1..max bytes; an amount >= 0; a whole quantity >= 1. */
bool ts_till_text_ok(json_t *v, size_t max);
bool ts_till_amount_ok(json_t *v);
bool ts_till_quantity_ok(json_t *v);
/* currency, total, at, products[] and customer.code as a purchase has them:
 * the name of each bad one appended to fields. */
void ts_till_validate_order(json_t *p, json_t *fields);
/* The card guard over body (what: "purchase", "return", ...): idents are the
 * identifier fields refused (named in fields) when one holds a card number;
 * free text is masked. false when the body is refused (err says why). */
bool ts_till_guard(struct ts_agent *a, const char *what, const char *source, json_t *body,
                   const char *const *idents, json_t *fields, char *err, size_t errsz);
/* The cid of the cached card a loyalty code names ("" when none). */
void ts_till_code_cid(struct ts_agent *a, json_t *code, char *cid, size_t cidsz);
void ts_till_uuid4(char out[37]);
/* Segment products[] of the body's lines. */
json_t *ts_till_products(json_t *in);
/* A Segment event's frame: type, messageId, anonymousId (store:terminal),
 * originalTimestamp (body's "at", else now), context.tillside {store,
 * terminal, receipt = key, source, cid} and context.library. */
json_t *ts_till_envelope(struct ts_agent *a, const char *type, const char *mid, json_t *body,
                         int64_t now_ms, const char *key, const char *source, const char *cid);
/* The body's currency in capitals (validated before). */
void ts_till_currency(json_t *body, char cur[4]);
/* Publishes o (reference stolen; NULL = nothing) on the bus as type. */
void ts_till_publish(struct ts_agent *a, const char *type, json_t *o);
/* err = "invalid fields: a, b". */
void ts_till_fields_text(json_t *fields, char *err, size_t errsz);
/* Commits event under key (unique in the journal: a receipt, "return:ID",
 * "consent:ID") durably; *dup and the first id when key was recorded
 * before. TS_ERR_FULL: disk full, nothing recorded. Kicks the uploader. */
enum ts_err ts_till_commit(struct ts_purch *pu, const char *what, const char *key,
                           const char *source, const char *cid, const char *event, const char *mid,
                           int64_t now_ms, bool *dup, char message_id[64], char *err, size_t errsz);
typedef enum ts_err (*ts_till_submit_fn)(struct ts_purch *pu, const char *source, json_t *body,
                                         char message_id[64], bool *duplicate, json_t *fields,
                                         char *err, size_t errsz);
/* The local API's answer for a submit function: 202 {message_id}, 200
 * duplicate, 400 {error, fields}, 507 disk full. */
unsigned ts_till_http(struct ts_purch *pu, ts_till_submit_fn fn, const char *body, size_t len,
                      ts_buf *out);

/* POST /api/v1/returns (api_returns.c): a return or exchange's refund as
 * Segment "Order Refunded"; key "return:<return_id>". */
enum ts_err ts_return_submit(struct ts_purch *pu, const char *source, json_t *ret,
                             char message_id[64], bool *duplicate, json_t *fields, char *err,
                             size_t errsz);
/* POST /api/v1/consent (api_consent.c): the customer's choices as a
 * Segment identify with consent traits, applied to the card on screen. */
enum ts_err ts_consent_submit(struct ts_purch *pu, const char *source, json_t *c,
                              char message_id[64], bool *duplicate, json_t *fields, char *err,
                              size_t errsz);

/* ---- uploader.c ------------------------------------------------------------*/

/* Starts the upload thread (its own HTTP client). */
enum ts_err ts_uploader_start(struct ts_purch *pu, char *err, size_t errsz);
/* Stops and joins it; NULL-safe. */
void ts_uploader_stop(struct ts_purch *pu);
/* Wakes the upload thread: new rows are pending. */
void ts_uploader_kick(struct ts_purch *pu);

/* The uploader's wait after its attempt-th consecutive failure (from 1):
 * ts_backoff_pick_ms (full jitter, uniform in [50 ms, min(cap, base *
 * 2^(attempt-1))]), never below retry_after_ms. r is a uniform random
 * 32-bit number. */
int64_t ts_uploader_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, int64_t retry_after_ms,
                               uint32_t r);

#endif
