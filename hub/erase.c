/*
 * Erasure (GDPR art. 17) and the tombstones it leaves.
 *
 * Erasing a customer deletes everything the hub holds about them and turns
 * each of their feed rows into an erase item keyed by the card reference
 * only ('erased:<cid>'), so every store that had the card deletes it at its
 * next sync while the hub forgets the user id. Those tombstones must outlive
 * any cursor an agent may still hold; they are pruned after tombstone_days,
 * and pruning raises a horizon below which cursors are answered 410 Gone: an
 * agent that old may have missed an erasure, so it starts over from an empty
 * cache instead (see docs/PROTOCOL.md).
 */
#include "parts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)

/* Runs sql with ?1 = text a (NULL: none) or, when a is NULL, ?1 = the
 * integer b; *changes (may be NULL) gets ts_sql_changes(). */
static enum ts_err run(struct ts_hub_store *s, const char *sql, const char *a, int64_t b,
                       int *changes)
{
    struct ts_sql_stmt *st = NULL;
    int rc = TS_OK;
    if (ts_sql_prepare(ts_hub_db_writer(s), sql, &st) != TS_OK)
        return ts_hub_db_werr(s, sql);
    if (a)
        ts_sql_bind_text(st, 1, a);
    else
        ts_sql_bind_int64(st, 1, b);
    int step = ts_sql_step(st);
    if (step != TS_SQL_DONE && step != TS_SQL_ROW)
        rc = ts_hub_db_werr(s, sql);
    else if (changes)
        *changes = (int)(step == TS_SQL_ROW ? ts_sql_column_int64(st, 0)
                                            : ts_sql_changes(ts_hub_db_writer(s)));
    ts_sql_finalize(st);
    return rc;
}

/* The internal id (userId) of the customer to erase, into out. */
static enum ts_err find_customer(struct ts_hub_store *s, const char *user_id, const char *loyalty,
                                 char *out, size_t outsz)
{
    struct ts_sql_stmt *st = NULL;
    char key[TS_IDENT_KEY_HEX], norm[TS_SEG_MAX_LOYALTY_LEN + 1];
    const char *sql = "SELECT id FROM customers WHERE id = ?1";
    const char *arg = user_id;
    if (loyalty) {
        if (ts_ident_normalize(loyalty, strlen(loyalty), norm, sizeof norm) != TS_OK ||
            ts_ident_key(ts_hub_db_key(s), TS_IDENT_LOYALTY, norm, key) != TS_OK)
            return TS_ERR_NOTFOUND;
        sql = "SELECT customer FROM identifiers WHERE key = ?1";
        arg = key;
    }
    if (!arg || ts_sql_prepare(ts_hub_db_writer(s), sql, &st) != TS_OK)
        return arg ? ts_hub_db_werr(s, "find customer") : TS_ERR_NOTFOUND;
    ts_sql_bind_text(st, 1, arg);
    int step = ts_sql_step(st), rc = TS_ERR_NOTFOUND;
    if (step == TS_SQL_ROW) {
        const char *id = ts_sql_column_text(st, 0);
        rc = id && ts_strlcpy(out, id, outsz) < outsz ? TS_OK : TS_ERR_NOTFOUND;
    } else if (step != TS_SQL_DONE) {
        rc = ts_hub_db_werr(s, "find customer");
    }
    ts_sql_finalize(st);
    return rc;
}

static enum ts_err erase_locked(struct ts_hub_store *s, const char *user_id, const char *loyalty,
                                int64_t now_ms, struct ts_hub_erase_result *res)
{
    char id[TS_SEG_MAX_ID + 1], cid[33] = "";
    struct ts_sql_stmt *st = NULL;
    int rc = find_customer(s, user_id, loyalty, id, sizeof id);
    if (rc)
        return rc;
    if (ts_sql_prepare(ts_hub_db_writer(s), "SELECT cid FROM customers WHERE id = ?1", &st) ==
            TS_OK &&
        ts_sql_bind_text(st, 1, id) == TS_OK && ts_sql_step(st) == TS_SQL_ROW &&
        ts_sql_column_text(st, 0))
        ts_strlcpy(cid, ts_sql_column_text(st, 0), sizeof cid);
    ts_sql_finalize(st);
    if (!cid[0])
        return ts_hub_db_werr(s, "erase: customer without cid");
    int64_t seq;
    if ((rc = ts_hub_db_next_seq(s, &seq)))
        return rc;
    /* Feed rows of the customer and of anonymous ids merged into them become
     * tombstones that name only the cid; the rows keyed by ids go. */
    static const char *const owned =
        " (customer = ?1 OR customer IN (SELECT anonymous_id FROM anon_map WHERE customer = ?1))";
    char sql[512];
    int stores = 0;
    snprintf(sql, sizeof sql, "SELECT count(DISTINCT store_id) FROM feed WHERE%s", owned);
    if ((rc = run(s, sql, id, 0, &stores)))
        return rc;
    snprintf(sql, sizeof sql,
             "INSERT INTO feed(store_id, customer, seq, op, cid, at)"
             " SELECT DISTINCT store_id, 'erased:' || cid, %lld, 'erase', cid, %lld FROM feed"
             " WHERE%s ON CONFLICT(store_id, customer) DO UPDATE SET seq = excluded.seq,"
             " op = excluded.op, cid = excluded.cid, at = excluded.at",
             (long long)seq, (long long)now_ms, owned);
    if ((rc = run(s, sql, id, 0, NULL)))
        return rc;
    snprintf(sql, sizeof sql, "DELETE FROM feed WHERE%s", owned);
    if ((rc = run(s, sql, id, 0, NULL)))
        return rc;
    static const char *const del[] = {
        "DELETE FROM views WHERE customer = ?1",
        "DELETE FROM cart WHERE customer = ?1",
        "DELETE FROM wishlist WHERE customer = ?1",
        "DELETE FROM orders WHERE customer = ?1",
        "DELETE FROM identifiers WHERE customer = ?1",
        "DELETE FROM anon_map WHERE customer = ?1",
        "DELETE FROM bought WHERE customer = ?1",
        "DELETE FROM offers WHERE customer = ?1", /* offers.c */
        /* purchases stay (they are the stores' sales) but forget who bought */
        "UPDATE purchases SET customer = NULL, cid = NULL WHERE customer = ?1",
        "DELETE FROM customers WHERE id = ?1",
    };
    for (size_t i = 0; rc == TS_OK && i < sizeof del / sizeof del[0]; i++)
        rc = run(s, del[i], id, 0, NULL);
    if (rc == TS_OK && res) {
        memcpy(res->cid, cid, sizeof res->cid);
        res->stores = (size_t)stores;
    }
    return rc;
}

enum ts_err ts_hub_erase_in_txn(struct ts_hub_store *s, const char *user_id, int64_t now_ms,
                                struct ts_hub_erase_result *res)
{
    return erase_locked(s, user_id, NULL, now_ms, res);
}

enum ts_err ts_hub_store_erase(struct ts_hub_store *s, const char *user_id, const char *loyalty,
                               int64_t now_ms, struct ts_hub_erase_result *res)
{
    struct ts_hub_erase_result r = {0};
    /* Deleted bytes are overwritten, and no copy is left in the WAL. */
    int rc = ts_hub_db_write_begin(s, TS_HUB_TXN_SECURE);
    if (rc != TS_OK)
        return rc;
    rc = erase_locked(s, user_id, loyalty, now_ms, &r);
    if ((rc = ts_hub_db_write_end(s, rc, true)))
        return rc;
    if (res)
        *res = r;
    return TS_OK;
}

enum ts_err ts_hub_store_prune(struct ts_hub_store *s, int64_t now_ms, int64_t keep_ms,
                               size_t *removed)
{
    int64_t cutoff = now_ms - keep_ms;
    int n = 0;
    int rc = ts_hub_db_write_begin(s, 0);
    if (rc != TS_OK)
        return rc;
    /* The horizon first, while the rows that set it are still there. */
    rc = run(s,
             "UPDATE meta SET v = max(v, (SELECT coalesce(max(seq), 0) FROM feed"
             " WHERE op = 'erase' AND at < ?1)) WHERE k = 'horizon'",
             NULL, cutoff, NULL);
    if (rc == TS_OK)
        rc = run(s, "DELETE FROM feed WHERE op = 'erase' AND at < ?1", NULL, cutoff, &n);
    if ((rc = ts_hub_db_write_end(s, rc, false)))
        return rc;
    if (removed)
        *removed = (size_t)n;
    return TS_OK;
}
