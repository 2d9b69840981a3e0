/* The payment card guard (rules in guard.h). Nothing here logs or copies the
 * scanned bytes anywhere but the stack, which is wiped before returning. */
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

enum ts_err ts_guard_conf(const struct ts_conf *conf, struct ts_guard *g, char *err, size_t errsz)
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
 * ISO/IEC 7813 track data at s[i]. Track 1: '%' 'B' PAN '^' NAME '^' ...;
 * track 2: ';' PAN '=' YYMM ...; readers and keyboard wedges may drop the
 * sentinels, so the PAN + separator pattern alone is enough: 12-19 digits
 * followed by '^' (track 1) or '=' and 4 digits (track 2's expiry). On a
 * match, [i, *end) is the track (to its end sentinel, the end of the line or
 * of the text) and [*p0, *p1) its PAN.
 */
static bool track_at(const char *s, size_t n, size_t i, size_t *end, size_t *p0, size_t *p1)
{
    size_t j = i;
    if (s[j] == '%' && j + 1 < n && (s[j + 1] == 'B' || s[j + 1] == 'b'))
        j += 2;
    else if (s[j] == ';')
        j++;
    else if (!digit(s[j]) || (i > 0 && digit(s[i - 1])))
        return false; /* only at the start of a digit run */
    size_t d0 = j;
    while (j < n && digit(s[j]))
        j++;
    size_t nd = j - d0;
    if (nd < 12 || nd > 19 || j >= n)
        return false;
    if (s[j] == '^') {
        while (j < n && s[j] != '?' && s[j] != '\n' && s[j] != '\r')
            j++;
    } else if (s[j] == '=' && j + 4 < n && digit(s[j + 1]) && digit(s[j + 2]) && digit(s[j + 3]) &&
               digit(s[j + 4])) {
        j++;
        while (j < n && digit(s[j]))
            j++;
    } else {
        return false;
    }
    if (j < n && s[j] == '?')
        j++;
    *end = j;
    *p0 = d0;
    *p1 = d0 + nd;
    return true;
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

static bool sep(char c)
{
    return c == ' ' || c == '\t' || c == '-' || c == '.' || c == '_' || c == '/';
}

#define MAX_SEP 3   /* separator bytes between two groups of one number */
#define RUN_CAP 512 /* digits looked at together; longer runs go in chunks */
#define WIN_MAX 19
#define WIN_MIN 13

/* A run of digit groups: the digits, where each is in the text, and where
 * groups start. */
struct run {
    size_t nd;
    bool long0; /* the group at 0 goes on from a previous chunk: windows only */
    char d[RUN_CAP];
    size_t pos[RUN_CAP];
    bool gstart[RUN_CAP];
};

/* Is d[a, a+len) a card number? None starts with 0 (ISO/IEC 7812-1: major
 * industry identifier 0 is no card issuer). */
static bool candidate(const struct ts_guard *g, const struct run *r, size_t a, size_t len)
{
    if (r->d[a] == '0')
        return false;
    if (!ts_luhn_valid(r->d + a, len) || allowed_prefix(g, r->d + a, len))
        return false;
    /* A 13-digit group that is an EAN-13 on its own is a product. */
    return !(len == 13 && r->gstart[a] && (a + 13 == r->nd || r->gstart[a + 13]) &&
             ts_gs1_is_ean13(r->d + a, 13));
}

static void hit_of(const struct run *r, size_t a, size_t len, struct ts_guard_hit *h)
{
    h->kind = TS_GUARD_PAN;
    h->off = r->pos[a];
    h->end = h->pan_end = r->pos[a + len - 1] + 1;
    memcpy(h->last4, r->d + a + len - 4, 4);
    h->last4[4] = '\0';
}

static size_t group_end(const struct run *r, size_t a)
{
    size_t b = a + 1;
    while (b < r->nd && !r->gstart[b])
        b++;
    return b;
}

/*
 * The candidates of a collected run (rules in guard.h): each group on its own
 * (from its first non-zero digit, since leading zeros do not change the Luhn
 * sum: "0" + a PAN is the PAN; every 13..19 window of a group longer than
 * 19), and every sequence of whole groups of 13..19 digits, as a number is
 * printed in groups.
 */
static bool run_check(const struct ts_guard *g, const struct run *r, struct ts_guard_hit *h)
{
    for (size_t s0 = 0; s0 < r->nd; s0 = group_end(r, s0)) {
        size_t e = group_end(r, s0), a = s0;
        if (e - s0 > WIN_MAX || (s0 == 0 && r->long0)) {
            for (a = s0; a + WIN_MIN <= e; a++)
                for (size_t len = WIN_MIN; len <= WIN_MAX && a + len <= e; len++)
                    if (candidate(g, r, a, len)) {
                        hit_of(r, a, len, h);
                        return true;
                    }
            continue;
        }
        while (a < e && r->d[a] == '0')
            a++;
        if (e - a >= WIN_MIN && candidate(g, r, a, e - a)) {
            hit_of(r, a, e - a, h);
            return true;
        }
        /* whole groups from this one on */
        for (size_t e2 = e; e2 < r->nd && e2 - s0 <= WIN_MAX;) {
            e2 = group_end(r, e2);
            size_t len = e2 - s0;
            if (len >= WIN_MIN && len <= WIN_MAX && candidate(g, r, s0, len)) {
                hit_of(r, s0, len, h);
                return true;
            }
        }
    }
    return false;
}

static bool hex(char c)
{
    return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A machine-made key: a UUID in its RFC 4122 text form (messageIds) or a
 * hex digest of 32, 40 or 64 digits (card references, hashes), with at least
 * one hex letter. Digit runs in those are chance (a 32-digit hex string holds
 * a Luhn-valid 13+ digit run about 1 time in 300). */
static bool machine_key(const char *s, size_t n)
{
    bool uuid = n == 36, letter = false;
    if (n != 36 && n != 32 && n != 40 && n != 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (uuid && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (s[i] != '-')
                return false;
            continue;
        }
        if (!hex(s[i]))
            return false;
        letter |= !digit(s[i]);
    }
    return letter;
}

/* A machine-made key, bare or as a journal key: a lowercase word and ':' in
 * front of it ("consent:<uuid>", "return:<uuid>"). The word holds no digit,
 * so the key is what the bare one is; without this the agent's consent keys
 * were refused by the hub about one time in 390 (a chance Luhn-valid run
 * across the UUID's groups, no longer seen as a UUID). */
static bool keyed_machine_key(const char *s, size_t n)
{
    size_t w = 0;
    while (w < n && w < 16 && s[w] >= 'a' && s[w] <= 'z')
        w++;
    if (w > 0 && w < n && s[w] == ':' && machine_key(s + w + 1, n - w - 1))
        return true;
    return machine_key(s, n);
}

/* The first card number at or after from. */
static enum ts_guard_verdict find_from(const struct ts_guard *g, const char *s, size_t n,
                                       size_t from, struct ts_guard_hit *h)
{
    static __thread struct run r;
    enum ts_guard_verdict v = TS_GUARD_PASS;
    size_t i = from;
    if (keyed_machine_key(s, n))
        return TS_GUARD_PASS;
    while (i < n) {
        size_t end, p0, p1;
        if ((s[i] == '%' || s[i] == ';' || digit(s[i])) && track_at(s, n, i, &end, &p0, &p1)) {
            h->kind = TS_GUARD_TRACK;
            h->off = i;
            h->end = end;
            h->pan_end = p1;
            memcpy(h->last4, s + p1 - 4, 4);
            h->last4[4] = '\0';
            v = TS_GUARD_TRACK;
            goto out;
        }
        if (!digit(s[i])) {
            i++;
            continue;
        }
        r.nd = 0;
        r.long0 = false;
        bool start = true;
        while (i < n) {
            if (r.nd == RUN_CAP) {
                /* A very long run: look at what is here, then keep what a
                 * number could still share with the digits to come — the
                 * whole groups within the last WIN_MAX - 1 digits, or the
                 * last WIN_MAX - 1 digits of a long open group. */
                if (run_check(g, &r, h)) {
                    v = TS_GUARD_PAN;
                    goto out;
                }
                size_t ls = RUN_CAP, c = RUN_CAP - (WIN_MAX - 1);
                while (!r.gstart[--ls])
                    ;
                bool long0 = ls < c;
                if (!long0)
                    while (!r.gstart[c])
                        c++;
                size_t keep = RUN_CAP - c;
                memmove(r.d, r.d + c, keep);
                memmove(r.pos, r.pos + c, keep * sizeof r.pos[0]);
                memmove(r.gstart, r.gstart + c, keep);
                r.gstart[0] = true;
                r.nd = keep;
                r.long0 = long0;
            }
            r.d[r.nd] = s[i];
            r.pos[r.nd] = i;
            r.gstart[r.nd] = start;
            r.nd++;
            i++;
            start = false;
            if (i < n && digit(s[i]))
                continue;
            /* End of a group: another one follows after 1..MAX_SEP separators? */
            size_t k = 0;
            while (k < MAX_SEP && i + k < n && sep(s[i + k]))
                k++;
            if (k == 0 || i + k >= n || !digit(s[i + k]))
                break;
            /* a track right after the separators starts a run of its own */
            if (track_at(s, n, i + k, &end, &p0, &p1))
                break;
            i += k;
            start = true;
        }
        if (run_check(g, &r, h)) {
            v = TS_GUARD_PAN;
            goto out;
        }
    }
out:
    explicit_bzero(&r, sizeof r);
    return v;
}

enum ts_guard_verdict ts_guard_find(const struct ts_guard *g, const char *s, size_t n,
                                    struct ts_guard_hit *hit)
{
    struct ts_guard_hit h;
    enum ts_guard_verdict v = find_from(g, s, n, 0, &h);
    if (v != TS_GUARD_PASS && hit)
        *hit = h;
    return v;
}

size_t ts_guard_mask(const struct ts_guard *g, char *s, size_t n, struct ts_guard_hit *first)
{
    struct ts_guard_hit h;
    size_t count = 0, from = 0;
    while (find_from(g, s, n, from, &h) != TS_GUARD_PASS) {
        if (count++ == 0 && first)
            *first = h;
        /* A number: every digit but the last four. Track data: every byte
         * (the name, expiry and discretionary data too) but the PAN's last
         * four. */
        size_t keep = 4;
        for (size_t i = h.end; i-- > h.off;) {
            bool last4 = h.kind == TS_GUARD_PAN ? digit(s[i]) && keep > 0
                                                : i < h.pan_end && i + 4 >= h.pan_end;
            if (h.kind == TS_GUARD_PAN && !digit(s[i]))
                continue;
            if (last4)
                keep--;
            else
                s[i] = '*';
        }
        /* The kept digits may join what follows into a new number: look
         * again from here. */
        from = h.off;
    }
    return count;
}

/* AIs whose value carries a GS1 check digit the parser verified (GTIN,
 * SSCC, GLN, GSRN): a product or service key, not free text. */
static bool gs1_checked_ai(const char *ai)
{
    static const char *const keys[] = {"00", "01", "02", "414", "8017", "8018"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(ai, keys[i]) == 0)
            return true;
    return false;
}

enum ts_guard_verdict ts_guard_check(const struct ts_guard *g, const char *aim, const char *s,
                                     size_t n)
{
    struct ts_guard_hit h;
    enum ts_guard_verdict v = find_from(g, s, n, 0, &h);
    if (v == TS_GUARD_TRACK)
        return v;
    /* Whole-scan exceptions: an EAN-13 (product or in-store loyalty number),
     * and the keys of a GS1 element string; its other values are text. */
    if (ts_gs1_is_ean13(s, n))
        return TS_GUARD_PASS;
    static __thread struct ts_gs1 gs1;
    char err[8];
    if (ts_symbology_is_gs1_aim(aim) && ts_gs1_parse(s, n, &gs1, err, sizeof err) == TS_OK) {
        v = TS_GUARD_PASS;
        for (int i = 0; i < gs1.n && v == TS_GUARD_PASS; i++)
            if (!gs1_checked_ai(gs1.f[i].ai))
                v = find_from(g, gs1.f[i].value, strlen(gs1.f[i].value), 0, &h);
        explicit_bzero(&gs1, sizeof gs1);
    }
    return v;
}
