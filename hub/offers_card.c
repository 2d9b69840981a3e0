/*
 * The card's offers (offers.h): what rebuild.c loads for summary.c. Apart
 * from offers.c, which rebuilds the card after a redemption, so the two
 * never call each other.
 */
#include "offers.h"

#include <stdlib.h>
#include <string.h>

static const char *const q_sql[] = {
    "SELECT code, description, expires_at FROM offers WHERE customer = ?1"
    " AND redeemed_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)"
    " ORDER BY expires_at IS NULL, expires_at, code LIMIT ?3",
};
static const struct ts_hub_stmts stmts = {q_sql, NULL, 1};

enum ts_err ts_hub_offers_load(struct ts_hub_store *s, const char *cust, int64_t now_ms,
                               struct ts_seg_offer **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    struct ts_sql_stmt *st = ts_hub_db_st(s, &stmts, 0);
    if (!st)
        return TS_ERR_DB;
    ts_sql_bind_text(st, 1, cust);
    ts_sql_bind_int64(st, 2, now_ms);
    ts_sql_bind_int64(st, 3, TS_SEG_MAX_OFFERS);
    /* One block: the entries, then their strings (at most 8 × (64 + 512)). */
    size_t cap = TS_SEG_MAX_OFFERS * sizeof **out +
                 TS_SEG_MAX_OFFERS * (TS_OFFER_MAX_CODE + 2 + TS_SEG_MAX_TEXT + 2);
    char *blk = malloc(cap), *p = blk ? blk + TS_SEG_MAX_OFFERS * sizeof **out : NULL;
    if (!blk) {
        ts_sql_reset(st);
        return TS_ERR_NOMEM;
    }
    struct ts_seg_offer *v = (struct ts_seg_offer *)(void *)blk;
    int step;
    while ((step = ts_sql_step(st)) == TS_SQL_ROW && *n < TS_SEG_MAX_OFFERS) {
        const char *code = ts_sql_column_text(st, 0), *desc = ts_sql_column_text(st, 1);
        size_t cl = strlen(code ? code : ""), dl = desc ? strlen(desc) : 0;
        if (cl > TS_OFFER_MAX_CODE || dl > TS_SEG_MAX_TEXT)
            continue;
        memcpy(p, code ? code : "", cl + 1);
        v[*n] = (struct ts_seg_offer){.code = p, .expires_ms = ts_sql_column_int64(st, 2)};
        p += cl + 1;
        if (desc) {
            memcpy(p, desc, dl + 1);
            v[*n].description = p;
            p += dl + 1;
        }
        (*n)++;
    }
    ts_sql_reset(st);
    if (step != TS_SQL_DONE && step != TS_SQL_ROW) {
        free(blk);
        *n = 0;
        return ts_hub_db_werr(s, "offers load");
    }
    *out = v;
    return TS_OK;
}
