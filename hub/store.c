/*
 * The store's public face (hub.h): opening it with every feature's part of
 * the schema, the tenant key pair and the re-keying a rotation needs, and
 * the counts `tillside-hub stats` shows. The connections, transactions and
 * statements are the storage core's (db.c); each feature keeps its own
 * statements (ingest.c, rebuild.c, feed.c, purchases.c, upstream.c ...).
 *
 * The feed is a table with one row per (store, customer) stamped with a
 * global sequence number from meta.seq. Every change to a customer re-stamps
 * their rows, so "WHERE store_id=? AND seq>? ORDER BY seq" returns each
 * customer once, at their latest state, and a cursor is just a seq.
 */
#include "matchrate.h"
#include "offers.h"
#include "parts.h"
#include "ticketkeys.h"
#include "purchases.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In this order: purchases add a column to ingest's orders, the outbox
 * follows the purchases it forwards; source.c's replay cache stands alone. */
static const struct ts_hub_db_part parts[] = {
    /* clang-format off */
    {"ingest", ts_hub_ingest_schema},
    {"feed", ts_hub_feed_schema},
    {"purchases", ts_hub_purchases_schema},
    {"upstream", ts_hub_upstream_schema},
    {"fleet", ts_hub_fleet_schema}, /* fleet_db.c: the last health report per terminal */
    {"sources", ts_hub_source_schema},
    {"retention", ts_hub_retention_schema},
    {"ticketkeys", ts_hub_ticketkeys_schema},
    {"offers", ts_hub_offers_schema}, /* offers.c: the CDP's offers per customer */
    {"match", ts_hub_match_schema},   /* matchrate.c: transactions per store and day */
    /* clang-format on */
};

enum ts_err ts_hub_store_open(const char *path, const struct ts_tenant_key *key, int flags,
                              struct ts_hub_store **out, char *err, size_t errsz)
{
    return ts_hub_db_open(path, key, flags, parts, sizeof parts / sizeof parts[0], out, err, errsz);
}

/* 48 bits of an HMAC under the key, so the database can tell that a key
 * changed without holding it; 0 for no key. */
static int64_t key_fp(const struct ts_tenant_key *k)
{
    char out[33];
    uint64_t v;
    if (!k || !k->len || ts_hub_cid(k, "\x01tillside key fingerprint", out) != TS_OK)
        return 0;
    out[12] = '\0';
    v = strtoull(out, NULL, 16);
    return (int64_t)v;
}

enum ts_err ts_hub_store_set_keys(struct ts_hub_store *s, const struct ts_tenant_key *prev,
                                  size_t *restamped)
{
    size_t n = 0;
    static const char *const names[4] = {"key_fp", "key_kv", "prev_fp", "prev_kv"};
    enum ts_err rc = ts_hub_db_write_begin(s, 0);
    if (rc)
        return rc;
    ts_hub_db_set_prev(s, prev);
    const struct ts_tenant_key *key = ts_hub_db_key(s), *pk = ts_hub_db_prev(s);
    const int64_t want[4] = {key_fp(key), key->version, key_fp(pk), pk ? pk->version : 0};
    struct ts_sql *db = ts_hub_db_writer(s);
    /* A database from before rotation support was keyed with the current
     * key and no second one. */
    bool legacy = !ts_hub_db_meta_has(db, "key_fp");
    bool same = true;
    for (int i = 0; i < 4; i++) {
        int64_t had = legacy ? (i < 2 ? want[i] : 0) : ts_hub_db_meta(db, names[i]);
        same = same && had == want[i];
    }
    if (!same) {
        char prev_s[32] = "";
        if (pk)
            snprintf(prev_s, sizeof prev_s, ", previous %d", pk->version);
        TS_INFO("hub", "tenant key versions changed (now %d%s): re-keying every identifier",
                key->version, prev_s);
        rc = ts_hub_db_rekey_identifiers(s);
        if (rc == TS_OK)
            rc = ts_hub_rekey_all(s, &n);
    }
    for (int i = 0; rc == TS_OK && i < 4; i++)
        rc = ts_hub_db_meta_set(s, names[i], want[i]);
    if ((rc = ts_hub_db_write_end(s, rc, n > 0)))
        return rc;
    if (n)
        TS_INFO("hub", "re-stamped %zu customer(s) with the new keys", n);
    if (restamped)
        *restamped = n;
    return TS_OK;
}

enum ts_err ts_hub_store_stats(struct ts_hub_store *s, ts_buf *out)
{
    int rc = TS_ERR_NOMEM;
    struct ts_sql_stmt *st = NULL;
    json_t *o = json_object(), *stores = json_object();
    char *text = NULL;
    struct ts_sql *db = ts_hub_db_read_begin(s, false);
    bool locked = true;
    if (!o || !stores)
        goto out;
    if (ts_sql_prepare(db, "SELECT count(*) FROM customers", &st) != TS_OK ||
        ts_sql_step(st) != TS_SQL_ROW) {
        rc = ts_hub_db_err(db, "stats");
        goto out;
    }
    json_object_set_new(o, "customers", json_integer(ts_sql_column_int64(st, 0)));
    json_object_set_new(o, "events", json_integer(ts_hub_db_meta(db, "events")));
    json_object_set_new(o, "seq", json_integer(ts_hub_db_meta(db, "seq")));
    ts_sql_finalize(st);
    st = NULL;
    if (ts_sql_prepare(db,
                       "SELECT store_id, count(*) FROM feed WHERE op = 'upsert'"
                       " GROUP BY store_id ORDER BY store_id",
                       &st) != TS_OK) {
        rc = ts_hub_db_err(db, "stats");
        goto out;
    }
    while (ts_sql_step(st) == TS_SQL_ROW) {
        const char *id = ts_sql_column_text(st, 0);
        if (id)
            json_object_set_new(stores, id, json_integer(ts_sql_column_int64(st, 1)));
    }
    json_object_set(o, "stores", stores);
    ts_sql_finalize(st);
    st = NULL;
    ts_hub_db_read_end(s, false); /* purchase_lookup.c takes the read side itself */
    locked = false;
    ts_hub_purchases_stats(s, o);
    ts_hub_offers_stats(s, o); /* offers.c */
    json_t *match = NULL;
    if (ts_hub_match_list(s, NULL, false, &match) == TS_OK) /* matchrate.c */
        json_object_set_new(o, "match_rate", match);
    text = json_dumps(o, JSON_COMPACT);
    rc = text ? ts_buf_puts(out, text) : TS_ERR_NOMEM;
out:
    free(text);
    ts_sql_finalize(st);
    json_decref(stores);
    json_decref(o);
    if (locked)
        ts_hub_db_read_end(s, false);
    return rc;
}
