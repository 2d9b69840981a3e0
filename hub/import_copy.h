/*
 * The bulk path of `tillside-hub import` into PostgreSQL (import_copy.c):
 * events are ingested into a scratch SQLite store first (the same code,
 * without a network round trip per statement), then every table of it is
 * sent to the empty PostgreSQL database with COPY, in one transaction.
 */
#ifndef TS_HUB_IMPORT_COPY_H
#define TS_HUB_IMPORT_COPY_H

#include "hub.h"

/* Can dst take a bulk load: a PostgreSQL store holding no customers, feed
 * rows, purchases or remembered messageIds, its seq never used? */
enum ts_err ts_hub_import_can_copy(struct ts_hub_store *dst, bool *can);

/*
 * Copies every table of the SQLite store at scratch (closed by now) into
 * dst, and its seq and event count, in one write transaction that checks
 * dst is still empty (TS_ERR_AGAIN when it is not; nothing copied). Hubs
 * sharing dst are told of the change. *tables and *rows count what went.
 */
enum ts_err ts_hub_import_copy(struct ts_hub_store *dst, const char *scratch, size_t *tables,
                               int64_t *rows, char *err, size_t errsz);

#endif
