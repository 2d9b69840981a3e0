/*
 * Receipt rules: POSIX extended regexes from a config section that turn the
 * text of a printed receipt (escpos.h) into a purchase object in the shape of
 * the local API's POST /api/v1/purchases body (docs/PROTOCOL.md), plus
 * "barcode" (the receipt's printed barcode) so that scanning the receipt
 * later finds the purchase. Syntax: docs/OPERATIONS.md "Receipt tap".
 */
#ifndef TS_ESCPOS_RULES_H
#define TS_ESCPOS_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "escpos.h"
#include "guard.h"

struct json_t;
struct ts_receipt_rules;

/* Compiles the rule keys of [section]. TS_ERR_CONFIG with err
 * "file:line: [section] key: ..." on a bad regex or value, or when a
 * required rule (receipt_re, total_re, item_re, currency or currency_re)
 * is missing. */
enum ts_err ts_receipt_rules_load(const struct ts_conf *conf, const char *section,
                                  struct ts_receipt_rules **out, char *err, size_t errsz);
void ts_receipt_rules_free(struct ts_receipt_rules *r); /* NULL ok */

/*
 * Applies the rules to one receipt. wall_ms becomes "at" (the time the
 * receipt was cut, i.e. the time of sale). On success *out is a new object
 * the caller owns (json_decref). TS_ERR_NOTFOUND when the receipt is not a
 * sale (no receipt number, total or line item: an X report, a copy, a
 * drawer slip) with err saying which; the caller logs it and moves on.
 */
enum ts_err ts_receipt_rules_apply(const struct ts_receipt_rules *r,
                                   const struct ts_escpos_receipt *rc, int64_t wall_ms,
                                   struct json_t **out, char *err, size_t errsz);

struct ts_guard;

/* A receipt after the payment card guard: its own copy of the text with every
 * card number masked line by line (ts_guard_mask), and a printed barcode or
 * 2D code that is card data blanked. */
struct ts_receipt_guarded {
    struct ts_escpos_receipt r; /* r.text points into text */
    char *text;
    size_t hits;         /* card numbers masked or codes blanked */
    unsigned first_line; /* 1-based line of the first one, 0 for a code */
    struct ts_guard_hit first;
};

/*
 * Runs the guard over everything a receipt carries, before the rules parse it
 * and before anything is stored or logged (PRODUCT.md §6): the tap never
 * keeps a card number from receipt text. g may be NULL. Never logs; the
 * caller logs out->first (masked) once. TS_ERR_NOMEM leaves nothing to free.
 */
enum ts_err ts_receipt_guard(const struct ts_guard *g, const struct ts_escpos_receipt *in,
                             struct ts_receipt_guarded *out);
void ts_receipt_guarded_free(struct ts_receipt_guarded *gr); /* NULL ok */

/* The keys ts_receipt_rules_load reads, for the unknown-key check. */
#define TS_RECEIPT_RULES_KEYS                                                                      \
    "store", "terminal", "receipt_format", "currency", "decimal", "item_price", "barcode_from",    \
        "store_re", "terminal_re", "receipt_re", "total_re", "tax_re", "discount_re",              \
        "currency_re", "loyalty_re", "item_re", "qty_re", "skip_re", "item_fields", "qty_fields",  \
        "refund_re", "original_re", "coupon_re"

#endif
