/*
 * Symbology handling shared by every input and the identity rules:
 *   - AIM symbology identifiers (ISO/IEC 15424, "]" + code character +
 *     modifier) mapped to the UnifiedPOS ScanDataType values (UnifiedPOS
 *     1.14, chapter 16 "Scanner", ScanDataType property; the same numbers as
 *     OposScan.h / jpos.ScannerConst);
 *   - GS1 element strings (GS1 General Specifications 22.0, §7.8 "GS1
 *     Application Identifiers in data carriers": FNC1 in first position is
 *     transmitted as the AIM id ]C1 (GS1-128), ]d2 (GS1 DataMatrix), ]Q3 (GS1
 *     QR), ]e0 (GS1 DataBar); the FNC1 separator after a variable-length
 *     field as GS, 0x1D); the fixed / variable lengths come from §7.8.5 and
 *     the AI table in §3.2;
 *   - GS1 mod-10 check digits (§7.9.1) for EAN-8, EAN-13, UPC-A, GTIN-14,
 *     SSCC (AI 00) and GSRN (AI 8017/8018).
 */
#ifndef TS_SYMBOLOGY_H
#define TS_SYMBOLOGY_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>

/* UnifiedPOS ScanDataType values (UPOS 1.14 §16, OposScan.h). */
enum ts_upos_sdt {
    TS_SDT_UNKNOWN = 0,
    TS_SDT_UPCA = 101,
    TS_SDT_UPCE = 102,
    TS_SDT_EAN8 = 103,
    TS_SDT_EAN13 = 104,
    TS_SDT_TF = 105,
    TS_SDT_ITF = 106,
    TS_SDT_CODABAR = 107,
    TS_SDT_CODE39 = 108,
    TS_SDT_CODE93 = 109,
    TS_SDT_CODE128 = 110,
    TS_SDT_UPCA_S = 111,
    TS_SDT_UPCE_S = 112,
    TS_SDT_EAN8_S = 118,
    TS_SDT_EAN13_S = 119,
    TS_SDT_EAN128 = 120, /* GS1-128 */
    TS_SDT_GS1DATABAR = 131,
    TS_SDT_GS1DATABAR_E = 132,
    TS_SDT_PDF417 = 201,
    TS_SDT_MAXICODE = 202,
    TS_SDT_DATAMATRIX = 203,
    TS_SDT_QRCODE = 204,
    TS_SDT_UQRCODE = 205,
    TS_SDT_AZTEC = 206,
    TS_SDT_UPDF417 = 207,
    TS_SDT_OTHER = 501,
};

/* The ScanDataType for an AIM id and its data (the data decides EAN-13 vs
 * UPC-A under ]E0 and add-ons). aim NULL or "" → TS_SDT_UNKNOWN. */
enum ts_upos_sdt ts_symbology_upos(const char *aim, const char *data, size_t len);
/* A short name for logs and the page ("EAN-13", "QR Code", ...). */
const char *ts_symbology_name(enum ts_upos_sdt t);

/* True when the AIM id says the symbol started with FNC1 in first position,
 * i.e. the data is a GS1 element string. */
bool ts_symbology_is_gs1_aim(const char *aim);

/* GS1 mod-10 check digit (weights 3,1 from the right) over n digits, the last
 * being the check digit. False on non-digits or n < 2. */
bool ts_gs1_check_ok(const char *digits, size_t n);
/* The EAN-13 / EAN-8 / UPC-A / GTIN-14 shapes: length and check digit. */
bool ts_gs1_is_ean13(const char *s, size_t n);
bool ts_gs1_is_ean8(const char *s, size_t n);
bool ts_gs1_is_upca(const char *s, size_t n);

#define TS_GS1_MAX_FIELDS 16
#define TS_GS1_MAX_VALUE 90

struct ts_gs1_field {
    char ai[5];                       /* "01", "8018" */
    char value[TS_GS1_MAX_VALUE + 1]; /* NUL-terminated */
};

struct ts_gs1 {
    int n;
    struct ts_gs1_field f[TS_GS1_MAX_FIELDS];
};

/*
 * Parses a GS1 element string: AIs followed by their data, GS (0x1D)
 * after variable-length fields that are not last (a GS after a fixed one is
 * tolerated). data is what follows the AIM id. Also accepts the
 * human-readable form "(01)09501101530003(17)...". Checks lengths, numeric
 * fields and the check digits of AIs 00, 01, 02, 414, 8017 and 8018.
 * TS_ERR_INVAL with a reason in err (no data copied into it) otherwise.
 */
enum ts_err ts_gs1_parse(const char *data, size_t len, struct ts_gs1 *out, char *err, size_t errsz);
/* The value of ai in a parsed string, or NULL. */
const char *ts_gs1_get(const struct ts_gs1 *g, const char *ai);

#endif
