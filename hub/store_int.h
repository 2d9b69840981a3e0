/*
 * Private to hub/store.c and hub/ingest.c: the store handle, its cached
 * prepared statements and small helpers.
 */
#ifndef TS_HUB_STORE_INT_H
#define TS_HUB_STORE_INT_H

#include "hub.h"

#include <pthread.h>
#include <stdatomic.h>
#include "sql.h"

/* Every statement the store runs, prepared once on first use. */
enum stmt_id {
    ST_SEQ_NEXT,
    ST_EVENTS_ADD,
    ST_PROCESSED_ADD,
    ST_CUST_EXISTS,
    ST_CUST_INSERT,
    ST_CUST_TRAITS,
    ST_CUST_NAME,
    ST_CUST_SPLIT_NAME,
    ST_ANON_GET,
    ST_ANON_SET,
    ST_IDENT_OWNER,
    ST_IDENT_SET,
    ST_PRODUCT_UPSERT,
    ST_VIEW_ADD,
    ST_CART_ADD,
    ST_CART_SUB,
    ST_CART_DEL,
    ST_CART_DEL_EMPTY,
    ST_WISH_ADD,
    ST_WISH_DEL,
    ST_ORDER_UPSERT,
    ST_MERGE_TRAITS,
    ST_MERGE_VIEWS,
    ST_MERGE_CART,
    ST_MERGE_CART_DEL,
    ST_MERGE_WISH,
    ST_MERGE_WISH_DEL,
    ST_MERGE_ORDERS,
    ST_MERGE_IDENT,
    ST_MERGE_ANON,
    ST_FEED_ERASE_ALL,
    ST_CUST_DELETE,
    ST_LOAD_CUST,
    ST_VIEWS_PRUNE,
    ST_LOAD_VIEWS,
    ST_LOAD_CART,
    ST_LOAD_WISH,
    ST_LOAD_ORDERS,
    ST_PRODUCT_NAME,
    ST_LOAD_KEYS,
    ST_CUST_STAMP,
    ST_FEED_UPSERT,
    ST_FEED_ERASE_OTHERS,
    ST_ORDER_STATUS, /* suggest.c: order statuses and co-occurrence */
    ST_BOUGHT_ADD,
    ST_MERGE_BOUGHT,
    ST_MERGE_BOUGHT_DEL,
    ST_SUGGEST,
    ST_COUNT
};

struct ts_hub_store {
    struct ts_sql *db;  /* the writer: batches */
    pthread_mutex_t mu; /* one user of db at a time */
    /* Long-poll: gen counts committed changes (ingest, erase, re-key);
     * waiters sleep on changed until it moves or closing is set. */
    pthread_mutex_t wmu;
    pthread_cond_t changed;
    uint64_t gen;
    bool closing;
    /* A second, read-only connection for feed pages, lookups and stats, so
     * a terminal's live lookup (300 ms budget) never waits behind a large
     * batch: WAL gives it the last committed snapshot. NULL for in-memory
     * databases, where readers share db and mu. */
    struct ts_sql *rdb;
    pthread_mutex_t rmu;
    /* PostgreSQL: a third connection listening for other processes'
     * commits (NOTIFY tillside_feed); its thread wakes our waiters. */
    struct ts_sql *ldb;
    pthread_t listener;
    bool listener_started;
    int wake[2];            /* the pipe that ends the listener */
    _Atomic bool listening; /* notices arrive: waiters need not look each second */
    struct ts_tenant_key key;
    struct ts_tenant_key prev; /* second key version (rotation); len 0 = none */
    uint32_t epoch;
    bool bulk; /* ts_hub_store_set_bulk */
    struct ts_sql_stmt *st[ST_COUNT];
};

/* The cached statement id, reset and with bindings cleared; NULL (logged)
 * when it cannot be prepared. */
struct ts_sql_stmt *ts_hub_st(struct ts_hub_store *s, enum stmt_id id);
/* Logs the connection's last error and maps it to TS_ERR_DB / TS_ERR_FULL. */
int ts_hub_db_err(struct ts_hub_store *s, const char *what);

/* Runs SQLite DDL (CREATE TABLE/INDEX IF NOT EXISTS) on the store's
 * database, worded for PostgreSQL when it is one. */
int ts_hub_exec_ddl(struct ts_hub_store *s, const char *ddl);

/* Takes the next global feed sequence number (inside a transaction). */
int ts_hub_next_seq(struct ts_hub_store *s, int64_t *seq);

/* Rebuilds cust's card and keys from the tables, stamps them with a new seq
 * and re-stamps the customer's feed rows (rebuild.c). A customer that no
 * longer exists (merged away) is skipped with *rebuilt false. */
int ts_hub_rebuild(struct ts_hub_store *s, const char *cust, int64_t now_ms, bool *rebuilt);

/* The customer's identifier keys as JSON arrays, current and (when the
 * store has a second key) previous version (rebuild.c). */
int ts_hub_load_keys(struct ts_hub_store *s, const char *cust, ts_buf *out, ts_buf *prev);

/* Inside a transaction, after the identifiers table was re-keyed: gives
 * every customer with a card its new keys and a new seq, re-stamping their
 * feed rows so every store receives the keys (rebuild.c). */
int ts_hub_rekey_all(struct ts_hub_store *s, size_t *restamped);

/* The product other customers most often viewed or bought alongside top
 * (customers with consent who viewed top lately), leaving out what cust
 * viewed, bought, has in the cart or wishlist (suggest.c). id[0] = '\0'
 * when nothing stands out. */
int ts_hub_suggest_peers(struct ts_hub_store *s, const char *cust, const char *top, char *id,
                         size_t idsz, char *name, size_t namesz);

/* Records the status an order event carries (e->order_id and
 * e->order_status set) unless a later event already set one (suggest.c). */
int ts_hub_order_status_apply(struct ts_hub_store *s, const char *cust,
                              const struct ts_seg_event *e);

/* Wakes long-poll waiters after a commit that may have changed a feed. */
void ts_hub_store_notify(struct ts_hub_store *s);

/* Applies the events of a batch inside an open transaction (ingest.c). */
int ts_hub_ingest_locked(struct ts_hub_store *s, const struct ts_seg_batch *b, int64_t now_ms,
                         struct ts_hub_ingest_result *res);

#endif
