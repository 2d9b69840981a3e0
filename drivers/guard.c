/* The payment card guard (rules in guard.h). Nothing here logs or copies the
 * scanned bytes anywhere but the stack. */
#include "guard.h"
#include "conf.h"
#include "symbology.h"
#include "ts.h"

#include <stdio.h>
#include <string.h>

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

bool ts_luhn_valid(const char *d, size_t n)
{
    if (n < 2)
        return false;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!digit(d[n - 1 - i]))
            return false;
        unsigned v = (unsigned)(d[n - 1 - i] - '0');
        if (i % 2 == 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

int ts_guard_conf(const struct ts_conf *conf, struct ts_guard *g, char *err, size_t errsz)
{
    struct ts_guard out = {0};
    const char *v = ts_conf_get(conf, "guard", "allow_prefixes", "");
    while (*v) {
        size_t n = strcspn(v, ", \t");
        if (n) {
            char where[256];
            bool ok = n < sizeof out.prefixes[0] && out.nprefixes < TS_GUARD_MAX_PREFIXES;
            for (size_t i = 0; ok && i < n; i++)
                ok = digit(v[i]);
            if (!ok) {
                ts_errf(err, errsz,
                        "%s: [guard] allow_prefixes: expected up to %d digit prefixes (1 to 19 "
                        "digits each)",
                        ts_conf_where(conf, "guard", "allow_prefixes", where, sizeof where),
                        TS_GUARD_MAX_PREFIXES);
                return TS_ERR_CONFIG;
            }
            memcpy(out.prefixes[out.nprefixes], v, n);
            out.prefixes[out.nprefixes++][n] = '\0';
        }
        v += n;
        v += strspn(v, ", \t");
    }
    *g = out;
    return TS_OK;
}

/*
 * ISO/IEC 7813 track data. Track 1: '%' 'B' PAN '^' NAME '^' ...; track 2:
 * ';' PAN '=' YYMM ...; readers and keyboard wedges may drop the sentinels,
 * so the PAN + separator pattern alone is enough: 12-19 digits followed by
 * '^' (track 1) or '=' followed by 4 digits (track 2's expiry).
 */
static bool has_track(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        if (s[j] == '%' && j + 1 < n && (s[j + 1] == 'B' || s[j + 1] == 'b'))
            j += 2;
        else if (s[j] == ';')
            j++;
        else if (i > 0 && digit(s[i - 1]))
            continue; /* only look at the start of a digit run */
        size_t d0 = j;
        while (j < n && digit(s[j]))
            j++;
        size_t nd = j - d0;
        if (nd < 12 || nd > 19 || j >= n)
            continue;
        if (s[j] == '^')
            return true;
        if (s[j] == '=' && j + 4 < n && digit(s[j + 1]) && digit(s[j + 2]) && digit(s[j + 3]) &&
            digit(s[j + 4]))
            return true;
    }
    return false;
}

static bool allowed_prefix(const struct ts_guard *g, const char *d, size_t n)
{
    for (int i = 0; g && i < g->nprefixes; i++) {
        size_t pl = strlen(g->prefixes[i]);
        if (pl <= n && memcmp(d, g->prefixes[i], pl) == 0)
            return true;
    }
    return false;
}

enum ts_guard_verdict ts_guard_check(const struct ts_guard *g, const char *aim, const char *s,
                                     size_t n)
{
    if (has_track(s, n))
        return TS_GUARD_TRACK;
    /* Whole-scan exceptions: an EAN-13 (product or in-store loyalty number)
     * and a GS1 element string (GSRN 8018, GTIN + serial, ...). */
    if (ts_gs1_is_ean13(s, n))
        return TS_GUARD_PASS;
    struct ts_gs1 gs1;
    char err[8];
    if (ts_symbology_is_gs1_aim(aim) && ts_gs1_parse(s, n, &gs1, err, sizeof err) == TS_OK)
        return TS_GUARD_PASS;
    /* Every maximal run of digits, with single spaces or dashes between
     * groups as printed on a card ("4111 1111 1111 1111"). */
    char run[24];
    size_t i = 0;
    while (i < n) {
        if (!digit(s[i])) {
            i++;
            continue;
        }
        size_t nd = 0;
        bool too_long = false;
        while (i < n) {
            if (digit(s[i])) {
                if (nd < sizeof run)
                    run[nd] = s[i];
                nd++;
                i++;
            } else if ((s[i] == ' ' || s[i] == '-') && i + 1 < n && digit(s[i + 1]) && nd) {
                i++;
            } else {
                break;
            }
        }
        too_long = nd > 19;
        if (!too_long && nd >= 13 && ts_luhn_valid(run, nd) && !allowed_prefix(g, run, nd)) {
            explicit_bzero(run, sizeof run);
            return TS_GUARD_PAN;
        }
    }
    explicit_bzero(run, sizeof run);
    return TS_GUARD_PASS;
}
