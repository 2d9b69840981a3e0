/*
 * The payment card guard (PRODUCT.md §4.1, §6): the one check for card data
 * wherever outside bytes enter — scans at the driver boundary
 * (ts_driver_emit) and POST /api/v1/scan, every string of a purchase body
 * (agent/purchase.c), every line of receipt text from the tap
 * (drivers/escpos_relay.c), and the hub's purchase intake as a second line
 * (hub/purchase_parse.c). Nothing here logs; callers log once, masked.
 *
 * A card number is:
 *   - magnetic-stripe track data (ISO/IEC 7813 track 1 "%B<PAN>^NAME^
 *     YYMM...?" and track 2 ";<PAN>=YYMM...?", with or without sentinels);
 *   - a number of 13 to 19 digits that passes the Luhn check (ISO/IEC 7812-1
 *     Annex B) and does not start with 0 (no card issuer does; leading zeros
 *     in front of one are not part of it). Looked at: each run of digits on
 *     its own, every 13..19 digit window of a run longer than 19 (a number
 *     hidden in a longer one), and every sequence of whole runs joined by one
 *     to three separators (space, tab, '-', '.', '_', '/'), as card numbers
 *     are printed in groups ("5105.1051.0510.5100", "3566  0020  2036  0505").
 * Exceptions (the allowed ranges):
 *   - a group of exactly 13 digits that is a valid EAN-13 (GS1 mod-10):
 *     product and in-store loyalty barcodes, which pass Luhn 1 in 10;
 *   - in a scan that is a GS1 element string (FNC1 AIM id), the values of
 *     AIs whose GS1 check digit the parser verified (00, 01, 02, 414, 8017,
 *     8018: GTINs, SSCCs, GSRNs); every other element's value is checked
 *     like text ("]C1" "90" PAN is caught);
 *   - a whole text that is a machine-made key: a UUID (messageIds) or a hex
 *     digest of 32, 40 or 64 digits with a hex letter (card references);
 *   - numbers starting with a configured prefix ([guard] allow_prefixes:
 *     private-label loyalty ranges).
 */
#ifndef TS_GUARD_H
#define TS_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#define TS_GUARD_MAX_PREFIXES 16

struct ts_conf;

struct ts_guard {
    int nprefixes;
    char prefixes[TS_GUARD_MAX_PREFIXES][20]; /* digits only */
};

enum ts_guard_verdict {
    TS_GUARD_PASS = 0,
    TS_GUARD_TRACK, /* magnetic-stripe track 1 / track 2 data */
    TS_GUARD_PAN,   /* a Luhn-valid 13-19 digit number outside the allowed ranges */
};

/* Where a card number was found: bytes [off, end) of the text (separators
 * included; for track data the whole track, its PAN ending at pan_end), and
 * its last four digits for a log line ("…5556"). */
struct ts_guard_hit {
    enum ts_guard_verdict kind;
    size_t off, end, pan_end;
    char last4[5];
};

/* Reads [guard] allow_prefixes (comma- or space-separated digit strings).
 * A missing section leaves g empty (only the built-in exceptions apply). */
enum ts_err ts_guard_conf(const struct ts_conf *conf, struct ts_guard *g, char *err, size_t errsz);

/* Classifies a scan. aim is the AIM id ("]C1") or NULL; data/len the decoded
 * bytes. g may be NULL (no configured prefixes). */
enum ts_guard_verdict ts_guard_check(const struct ts_guard *g, const char *aim, const char *data,
                                     size_t len);

/* The first card number in text s[0..n) (no GS1 exemption: text is not a
 * scan). TS_GUARD_PASS when none; *hit (may be NULL) set otherwise. */
enum ts_guard_verdict ts_guard_find(const struct ts_guard *g, const char *s, size_t n,
                                    struct ts_guard_hit *hit);

/*
 * Masks every card number in s[0..n) in place: each digit of a number but
 * its last four becomes '*' (track data: the whole track but the PAN's last
 * four), so the length and the UTF-8 shape stay. Returns how many were
 * masked; *first (may be NULL) describes the first one.
 */
size_t ts_guard_mask(const struct ts_guard *g, char *s, size_t n, struct ts_guard_hit *first);

/* What ts_guard_json found in a document. */
struct ts_guard_json_report {
    size_t masked;   /* free-text strings masked in place */
    size_t refused;  /* identifier strings (or object keys) holding a card number */
    char field[128]; /* the first refused one's path, else the first masked one's */
    char last4[5];   /* its number's last four digits */
    enum ts_guard_verdict kind;
};

struct json_t;

/*
 * Runs the guard over every string of a JSON document (object values, array
 * elements and object keys, at any depth). A string whose path matches one
 * of idents (NULL-terminated; "products[].sku" matches every index,
 * "context.tillside.barcode" a nested member) is an identifier: masking would
 * change what it names, so it is left alone and its path ("products[2].sku")
 * appended to refused (may be NULL) for the caller to refuse the document.
 * Every other string is masked in place (ts_guard_mask). A key holding a
 * card number is refused too ("<path>.(key)"). rep is zeroed first. Never
 * logs. TS_ERR_NOMEM when a masked copy cannot be made (the document then
 * holds the card number still: refuse it).
 */
enum ts_err ts_guard_json(const struct ts_guard *g, struct json_t *doc, const char *const *idents,
                          struct json_t *refused, struct ts_guard_json_report *rep);

/* ISO/IEC 7812-1 Annex B (Luhn) over n ASCII digits. */
bool ts_luhn_valid(const char *digits, size_t n);

#endif
