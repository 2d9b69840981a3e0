/*
 * TLS session ticket keys kept in the hub database (ticketkeys.c), for hub
 * processes that share one PostgreSQL database: a ts_tls_ticket_keys_fn
 * (sync/tls.h) with ud = the struct ts_hub_store.
 */
#ifndef TS_HUB_TICKETKEYS_H
#define TS_HUB_TICKETKEYS_H

#include "../sync/tls.h"
#include "hub.h"

/* The table of the keys (a schema part, store.c). */
enum ts_err ts_hub_ticketkeys_schema(struct ts_hub_store *s);

enum ts_err ts_hub_ticket_keys(void *ud, int64_t now_ms, int lifetime_s,
                               struct ts_tls_ticket_key keys[2], size_t *n);

#endif
