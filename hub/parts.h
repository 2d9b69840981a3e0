/*
 * What the store's features offer the store (store.c) and each other: their
 * parts of the schema (struct ts_hub_db_part), the card rebuild every
 * change ends in, and the few statements two features share. Each runs
 * inside a write transaction the caller holds (db.h).
 */
#ifndef TS_HUB_PARTS_H
#define TS_HUB_PARTS_H

#include "db.h"

/* ---- schema parts, in the order store.c gives them ------------------------ */

enum ts_err ts_hub_ingest_schema(struct ts_hub_store *s);    /* ingest.c: customers and profile */
enum ts_err ts_hub_feed_schema(struct ts_hub_store *s);      /* feed.c: the per-store feed */
enum ts_err ts_hub_upstream_schema(struct ts_hub_store *s);  /* upstream.c: the outbox */
enum ts_err ts_hub_fleet_schema(struct ts_hub_store *s);     /* fleet_db.c: health reports */
enum ts_err ts_hub_retention_schema(struct ts_hub_store *s); /* retention.c: its indexes */

/* ---- erase.c ----------------------------------------------------------------*/

/* Erases the customer user_id as ts_hub_store_erase does, inside the write
 * transaction the caller holds (begun with TS_HUB_TXN_SECURE). */
enum ts_err ts_hub_erase_in_txn(struct ts_hub_store *s, const char *user_id, int64_t now_ms,
                                struct ts_hub_erase_result *res);

/* ---- ingest.c ---------------------------------------------------------------*/

/* A purchase of qty of product pid by cust at at_ms: it leaves the online
 * cart (by qty; also under the sku alt, when not NULL), and counts as
 * bought for suggestions. */
enum ts_err ts_hub_ingest_bought(struct ts_hub_store *s, const char *cust, const char *pid,
                                 const char *alt, int64_t qty, int64_t at_ms);

/* ---- rebuild.c --------------------------------------------------------------*/

/* Rebuilds cust's card and keys from the tables, stamps them with a new seq
 * and re-stamps the customer's feed rows. A customer that no longer exists
 * (merged away) is skipped with *rebuilt false. */
enum ts_err ts_hub_rebuild(struct ts_hub_store *s, const char *cust, int64_t now_ms, bool *rebuilt);

/* The customer's identifier keys as JSON arrays, current and (when the
 * store has a second key) previous version. */
enum ts_err ts_hub_load_keys(struct ts_hub_store *s, const char *cust, ts_buf *out, ts_buf *prev);

/* After the identifiers table was re-keyed: gives every customer with a
 * card its new keys and a new seq, re-stamping their feed rows so every
 * store receives the keys. */
enum ts_err ts_hub_rekey_all(struct ts_hub_store *s, size_t *restamped);

/* ---- suggest.c --------------------------------------------------------------*/

/* The product other customers most often viewed or bought alongside top
 * (customers with consent who viewed top lately), leaving out what cust
 * viewed, bought, has in the cart or wishlist. id[0] = '\0' when nothing
 * stands out. */
enum ts_err ts_hub_suggest_peers(struct ts_hub_store *s, const char *cust, const char *top,
                                 char *id, size_t idsz, char *name, size_t namesz);

/* Records the status an order event carries (e->order_id and
 * e->order_status set) unless a later event already set one. */
enum ts_err ts_hub_order_status_apply(struct ts_hub_store *s, const char *cust,
                                      const struct ts_seg_event *e);

/* ---- upstream.c -------------------------------------------------------------*/

/* Queues an accepted purchase for the forwarder. */
enum ts_err ts_hub_upstream_queue(struct ts_hub_store *s, const char *message_id, int64_t now_ms);

#endif
