/* AIM ids → UnifiedPOS ScanDataType, GS1 element strings, check digits
 * (sources in symbology.h). */
#include "symbology.h"
#include "ts.h"

#include <stdio.h>
#include <string.h>

#define GS 0x1d

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

bool ts_gs1_check_ok(const char *d, size_t n)
{
    if (n < 2 || !all_digits(d, n))
        return false;
    /* GS1 GenSpecs §7.9.1: from the right, excluding the check digit, the
     * weights alternate 3, 1, 3, ... */
    unsigned sum = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned v = (unsigned)(d[n - 2 - i] - '0');
        sum += (i % 2 == 0) ? 3 * v : v;
    }
    return (10 - sum % 10) % 10 == (unsigned)(d[n - 1] - '0');
}

bool ts_gs1_is_ean13(const char *s, size_t n)
{
    return n == 13 && ts_gs1_check_ok(s, n);
}
bool ts_gs1_is_ean8(const char *s, size_t n)
{
    return n == 8 && ts_gs1_check_ok(s, n);
}
bool ts_gs1_is_upca(const char *s, size_t n)
{
    return n == 12 && ts_gs1_check_ok(s, n);
}

bool ts_symbology_is_gs1_aim(const char *aim)
{
    /* ISO/IEC 15424 modifier tables: ]C1 GS1-128, ]d2 GS1 DataMatrix, ]Q3
     * GS1 QR (FNC1 first position), ]e0 GS1 DataBar (always GS1), ]J1 GS1
     * DotCode. */
    if (!aim || strlen(aim) != 3 || aim[0] != ']')
        return false;
    return !strcmp(aim, "]C1") || !strcmp(aim, "]d2") || !strcmp(aim, "]Q3") ||
           !strcmp(aim, "]e0") || !strcmp(aim, "]J1");
}

enum ts_upos_sdt ts_symbology_upos(const char *aim, const char *data, size_t len)
{
    if (!aim || strlen(aim) != 3 || aim[0] != ']')
        return TS_SDT_UNKNOWN;
    char m = aim[2];
    switch (aim[1]) {
    case 'A': /* Code 39 */
        return TS_SDT_CODE39;
    case 'C': /* Code 128; modifier 1 = FNC1 first (GS1-128) */
        return m == '1' ? TS_SDT_EAN128 : TS_SDT_CODE128;
    case 'E':
        /* ]E0 EAN-13/UPC-A/UPC-E without add-on, ]E4 EAN-8, ]E1/]E2 the
         * add-on alone, ]E3 symbol with add-on. Scanners send UPC-A under
         * ]E0 as 13 digits with a leading 0. */
        if (m == '4')
            return TS_SDT_EAN8;
        if (m == '3')
            return len >= 13 && data[0] == '0' ? TS_SDT_UPCA_S : TS_SDT_EAN13_S;
        if (len == 8)
            return TS_SDT_UPCE;
        if (len == 12 || (len == 13 && data[0] == '0'))
            return TS_SDT_UPCA;
        return TS_SDT_EAN13;
    case 'F':
        return TS_SDT_CODABAR;
    case 'G':
        return TS_SDT_CODE93;
    case 'I':
        return TS_SDT_ITF;
    case 'S':
    case 'R':
        return TS_SDT_TF; /* Standard / Matrix 2 of 5 */
    case 'L':
        return TS_SDT_PDF417;
    case 'U':
        return TS_SDT_MAXICODE;
    case 'd':
        return TS_SDT_DATAMATRIX;
    case 'Q':
        return TS_SDT_QRCODE;
    case 'z':
        return TS_SDT_AZTEC;
    case 'e':
        /* DataBar Expanded carries AIs beyond (01); a bare (01) is the
         * omnidirectional kind. */
        return len > 16 ? TS_SDT_GS1DATABAR_E : TS_SDT_GS1DATABAR;
    case 'X':
    case 'Z':
        return TS_SDT_OTHER;
    default:
        return TS_SDT_OTHER;
    }
}

const char *ts_symbology_name(enum ts_upos_sdt t)
{
    switch (t) {
    case TS_SDT_UPCA:
        return "UPC-A";
    case TS_SDT_UPCE:
        return "UPC-E";
    case TS_SDT_EAN8:
        return "EAN-8";
    case TS_SDT_EAN13:
        return "EAN-13";
    case TS_SDT_TF:
        return "2 of 5";
    case TS_SDT_ITF:
        return "ITF";
    case TS_SDT_CODABAR:
        return "Codabar";
    case TS_SDT_CODE39:
        return "Code 39";
    case TS_SDT_CODE93:
        return "Code 93";
    case TS_SDT_CODE128:
        return "Code 128";
    case TS_SDT_UPCA_S:
        return "UPC-A+add-on";
    case TS_SDT_UPCE_S:
        return "UPC-E+add-on";
    case TS_SDT_EAN8_S:
        return "EAN-8+add-on";
    case TS_SDT_EAN13_S:
        return "EAN-13+add-on";
    case TS_SDT_EAN128:
        return "GS1-128";
    case TS_SDT_GS1DATABAR:
        return "GS1 DataBar";
    case TS_SDT_GS1DATABAR_E:
        return "GS1 DataBar Expanded";
    case TS_SDT_PDF417:
        return "PDF417";
    case TS_SDT_MAXICODE:
        return "MaxiCode";
    case TS_SDT_DATAMATRIX:
        return "Data Matrix";
    case TS_SDT_QRCODE:
        return "QR Code";
    case TS_SDT_UQRCODE:
        return "Micro QR";
    case TS_SDT_AZTEC:
        return "Aztec";
    case TS_SDT_UPDF417:
        return "MicroPDF417";
    case TS_SDT_OTHER:
        return "other";
    case TS_SDT_UNKNOWN:
        break;
    }
    return "unknown";
}

/* ---- GS1 element strings ------------------------------------------------ */

/* One AI family: prefix digits, how many digits the AI has, the data length
 * (fixed: min == max) and whether the data is numeric / carries a GS1 check
 * digit. GS1 GenSpecs 22.0 §3.2 table; only the AIs a till meets, an
 * unknown AI stops the parse (its length cannot be known). */
struct ai_def {
    const char *prefix;
    unsigned char ai_len, min, max;
    bool numeric, check;
};

static const struct ai_def ai_table[] = {
    {"00", 2, 18, 18, true, true},                                    /* SSCC */
    {"01", 2, 14, 14, true, true},                                    /* GTIN */
    {"02", 2, 14, 14, true, true},                                    /* GTIN of contained items */
    {"03", 2, 14, 14, true, false},   {"10", 2, 1, 20, false, false}, /* batch/lot */
    {"11", 2, 6, 6, true, false},                                     /* dates YYMMDD */
    {"12", 2, 6, 6, true, false},     {"13", 2, 6, 6, true, false},
    {"15", 2, 6, 6, true, false},     {"16", 2, 6, 6, true, false},
    {"17", 2, 6, 6, true, false},     {"20", 2, 2, 2, true, false},
    {"21", 2, 1, 20, false, false}, /* serial */
    {"22", 2, 1, 20, false, false},   {"235", 3, 1, 28, false, false},
    {"240", 3, 1, 30, false, false},  {"241", 3, 1, 30, false, false},
    {"242", 3, 1, 6, true, false},    {"243", 3, 1, 20, false, false},
    {"250", 3, 1, 30, false, false},  {"251", 3, 1, 30, false, false},
    {"253", 3, 13, 30, false, false}, {"254", 3, 1, 20, false, false},
    {"255", 3, 13, 25, true, false},  {"30", 2, 1, 8, true, false},
    {"31", 4, 6, 6, true, false}, /* 310n-316n measures */
    {"32", 4, 6, 6, true, false},     {"33", 4, 6, 6, true, false},
    {"34", 4, 6, 6, true, false},     {"35", 4, 6, 6, true, false},
    {"36", 4, 6, 6, true, false},     {"37", 2, 1, 8, true, false},
    {"390", 4, 1, 15, true, false},   {"391", 4, 4, 18, true, false},
    {"392", 4, 1, 15, true, false},   {"393", 4, 4, 18, true, false},
    {"394", 4, 4, 4, true, false},    {"400", 3, 1, 30, false, false}, /* customer's order number */
    {"401", 3, 1, 30, false, false},  {"402", 3, 17, 17, true, true},
    {"403", 3, 1, 30, false, false},  {"410", 3, 13, 13, true, true}, /* GLNs */
    {"411", 3, 13, 13, true, true},   {"412", 3, 13, 13, true, true},
    {"413", 3, 13, 13, true, true},   {"414", 3, 13, 13, true, true},
    {"415", 3, 13, 13, true, true},   {"416", 3, 13, 13, true, true},
    {"417", 3, 13, 13, true, true},   {"420", 3, 1, 20, false, false},
    {"421", 3, 4, 12, false, false},  {"422", 3, 3, 3, true, false},
    {"7003", 4, 10, 10, true, false}, {"8003", 4, 15, 30, false, false},
    {"8004", 4, 1, 30, false, false}, {"8005", 4, 6, 6, true, false},
    {"8006", 4, 18, 18, true, false}, {"8017", 4, 18, 18, true, true}, /* GSRN - provider */
    {"8018", 4, 18, 18, true, true}, /* GSRN - recipient (loyalty) */
    {"8020", 4, 1, 25, false, false}, {"8200", 4, 1, 70, false, false},
    {"90", 2, 1, 30, false, false},   {"91", 2, 1, 90, false, false},
    {"92", 2, 1, 90, false, false},   {"93", 2, 1, 90, false, false},
    {"94", 2, 1, 90, false, false},   {"95", 2, 1, 90, false, false},
    {"96", 2, 1, 90, false, false},   {"97", 2, 1, 90, false, false},
    {"98", 2, 1, 90, false, false},   {"99", 2, 1, 90, false, false},
};

/* The table entry whose prefix matches s, longest prefix first. */
static const struct ai_def *ai_find(const char *s, size_t n)
{
    const struct ai_def *best = NULL;
    size_t bl = 0;
    for (size_t i = 0; i < sizeof ai_table / sizeof *ai_table; i++) {
        size_t pl = strlen(ai_table[i].prefix);
        if (pl <= n && pl > bl && memcmp(s, ai_table[i].prefix, pl) == 0) {
            best = &ai_table[i];
            bl = pl;
        }
    }
    return best;
}

/* GS1 GenSpecs §7.11: the characters allowed in AI data ("CSET 82"). */
static bool cset82(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c != '\0' && strchr("!\"%&'()*+,-./:;<=>?_", c));
}

static enum ts_err add_field(struct ts_gs1 *g, const struct ai_def *d, const char *ai,
                             const char *v, size_t vn, char *err, size_t errsz)
{
    if (g->n >= TS_GS1_MAX_FIELDS) {
        ts_errf(err, errsz, "more than %d fields", TS_GS1_MAX_FIELDS);
        return TS_ERR_INVAL;
    }
    if (vn < d->min || vn > d->max) {
        ts_errf(err, errsz, "AI %s: %zu characters, expected %u..%u", ai, vn, d->min, d->max);
        return TS_ERR_INVAL;
    }
    for (size_t i = 0; i < vn; i++)
        if (d->numeric ? (v[i] < '0' || v[i] > '9') : !cset82(v[i])) {
            ts_errf(err, errsz, "AI %s: character %zu not allowed", ai, i + 1);
            return TS_ERR_INVAL;
        }
    if (d->check && !ts_gs1_check_ok(v, vn)) {
        ts_errf(err, errsz, "AI %s: check digit wrong", ai);
        return TS_ERR_INVAL;
    }
    struct ts_gs1_field *f = &g->f[g->n++];
    ts_strlcpy(f->ai, ai, sizeof f->ai);
    memcpy(f->value, v, vn);
    f->value[vn] = '\0';
    return TS_OK;
}

/* "(01)0950...(10)ABC": the human-readable interpretation. */
static enum ts_err parse_hri(const char *s, size_t n, struct ts_gs1 *g, char *err, size_t errsz)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] != '(') {
            ts_errf(err, errsz, "expected '(' at %zu", i + 1);
            return TS_ERR_INVAL;
        }
        const char *close = memchr(s + i, ')', n - i);
        size_t al = close ? (size_t)(close - s - i - 1) : 0;
        char ai[5];
        if (!close || al < 2 || al > 4 || !all_digits(s + i + 1, al)) {
            ts_errf(err, errsz, "bad AI at %zu", i + 1);
            return TS_ERR_INVAL;
        }
        memcpy(ai, s + i + 1, al);
        ai[al] = '\0';
        const struct ai_def *d = ai_find(ai, al);
        if (!d || d->ai_len != al) {
            ts_errf(err, errsz, "unknown AI (%s)", ai);
            return TS_ERR_INVAL;
        }
        size_t v0 = i + al + 2, v1 = v0;
        while (v1 < n && s[v1] != '(')
            v1++;
        int rc = add_field(g, d, ai, s + v0, v1 - v0, err, errsz);
        if (rc)
            return rc;
        i = v1;
    }
    return TS_OK;
}

enum ts_err ts_gs1_parse(const char *s, size_t n, struct ts_gs1 *out, char *err, size_t errsz)
{
    struct ts_gs1 g = {0};
    int rc = TS_OK;
    /* A leading FNC1 some scanners transmit as GS as well as the AIM id. */
    while (n && s[0] == GS) {
        s++;
        n--;
    }
    if (n == 0) {
        ts_errf(err, errsz, "empty");
        return TS_ERR_INVAL;
    }
    if (s[0] == '(') {
        rc = parse_hri(s, n, &g, err, errsz);
        goto out;
    }
    size_t i = 0;
    while (i < n) {
        const struct ai_def *d = ai_find(s + i, n - i);
        if (!d || i + d->ai_len > n || !all_digits(s + i, d->ai_len)) {
            ts_errf(err, errsz, "unknown AI at %zu", i + 1);
            rc = TS_ERR_INVAL;
            goto out;
        }
        char ai[5];
        memcpy(ai, s + i, d->ai_len);
        ai[d->ai_len] = '\0';
        size_t v0 = i + d->ai_len, v1;
        if (d->min == d->max) {
            if (v0 + d->min > n) {
                ts_errf(err, errsz, "AI %s: data cut short", ai);
                rc = TS_ERR_INVAL;
                goto out;
            }
            v1 = v0 + d->min;
        } else {
            const char *gs = memchr(s + v0, GS, n - v0);
            v1 = gs ? (size_t)(gs - s) : n;
        }
        if ((rc = add_field(&g, d, ai, s + v0, v1 - v0, err, errsz)))
            goto out;
        i = v1;
        if (i < n && s[i] == GS) {
            i++;
            if (i == n) /* a trailing separator carries nothing */
                break;
        }
    }
out:
    if (rc == TS_OK && g.n == 0) {
        ts_errf(err, errsz, "no fields");
        rc = TS_ERR_INVAL;
    }
    if (rc == TS_OK)
        *out = g;
    return rc;
}

const char *ts_gs1_get(const struct ts_gs1 *g, const char *ai)
{
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->f[i].ai, ai))
            return g->f[i].value;
    return NULL;
}
