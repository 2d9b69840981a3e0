/*
 * The normalized scan event every input yields (drivers, local API, CLI):
 * source, timestamps, raw bytes, decoded data and the AIM symbology id.
 * Hardware drivers arrive in issue 3; the skeleton feeds this from the API.
 */
#ifndef TS_SCAN_H
#define TS_SCAN_H

#include "../common/ts.h"

#include <stddef.h>
#include <stdint.h>

#define TS_SCAN_MAX 512

struct ts_scan {
    char source[32];          /* input name, "api", "cli" */
    int64_t mono_ms, wall_ms; /* when the scan completed */
    char data[TS_SCAN_MAX];   /* decoded data, NUL-terminated, no AIM prefix */
    size_t data_len;
    char aim[4];   /* "]E0" style symbology identifier, or "" */
    int upos_type; /* UnifiedPOS ScanDataType (drivers/symbology.h), 0 = unknown */
};

/*
 * Builds a scan from a code as typed or posted. A leading AIM identifier
 * ("]" + letter + modifier) in code is split off unless aim is given
 * explicitly. Rejects empty codes, codes longer than TS_SCAN_MAX - 1 and
 * codes containing NUL with TS_ERR_INVAL.
 */
enum ts_err ts_scan_from_text(const char *source, const char *code, size_t len, const char *aim,
                              struct ts_scan *out);

/* Masks a code for logs and display: at most the last 4 characters shown
 * ("…1234"); codes of 4 or fewer characters are masked entirely. */
void ts_scan_mask(const char *code, char *out, size_t outsz);

#endif
