/*
 * The payment card guard (PRODUCT.md §4.1): runs on every completed scan at
 * the driver boundary (ts_driver_emit) before the bytes are stored, logged,
 * shown or uploaded anywhere.
 *
 * Dropped: magnetic-stripe track data (ISO/IEC 7813 track 1 "%B<PAN>^NAME^
 * YYMM...?" and track 2 ";<PAN>=YYMM...?", with or without sentinels), and
 * any run of 13 to 19 digits (spaces or dashes between groups allowed, as
 * printed on cards) that passes the Luhn check (ISO/IEC 7812-1 Annex B),
 * unless the run is in an allowed range:
 *   - the whole scan is a valid EAN-13 (GS1 mod-10 check digit): product and
 *     in-store loyalty barcodes, which pass Luhn by chance about 1 in 10;
 *   - the scan is a GS1 element string (FNC1 AIM id or GS-separated AIs)
 *     that parses completely, e.g. a GSRN in AI 8018;
 *   - the number starts with one of the configured allowed prefixes
 *     ([guard] allow_prefixes: private-label loyalty ranges).
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

/* Reads [guard] allow_prefixes (comma- or space-separated digit strings).
 * A missing section leaves g empty (only the built-in exceptions apply). */
int ts_guard_conf(const struct ts_conf *conf, struct ts_guard *g, char *err, size_t errsz);

/* Classifies a scan. aim is the AIM id ("]C1") or NULL; data/len the decoded
 * bytes. g may be NULL (no configured prefixes). Never logs. */
enum ts_guard_verdict ts_guard_check(const struct ts_guard *g, const char *aim, const char *data,
                                     size_t len);

/* ISO/IEC 7812-1 Annex B (Luhn) over n ASCII digits. */
bool ts_luhn_valid(const char *digits, size_t n);

#endif
