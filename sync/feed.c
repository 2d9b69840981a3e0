/*
 * Feed page parsing and validation (see feed.h and docs/PROTOCOL.md).
 *
 * A small JSON reader of its own walks the page once, validating as it goes
 * (RFC 8259 grammar, UTF-8, escapes, nesting depth) and handing out spans of
 * the input: a card's text is copied, not rebuilt. Loading each page into a
 * jansson tree and serialising every card again was two thirds of the
 * agent's CPU time in a full sync of 1,000,000 cards (callgrind, see
 * docs/BENCHMARKS.md). The fields the agent uses are restricted alphabets
 * (hex keys, cids, cursors), so their strings must come without escapes.
 */
#include "feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64 /* cards are 4 levels deep; this only bounds the recursion */

struct rd {
    const char *start, *p, *end;
    char *err;
    size_t errsz;
};

/* ---- the JSON reader ------------------------------------------------------ */

static enum ts_err syntax(struct rd *r, const char *what)
{
    snprintf(r->err, r->errsz, "not valid JSON at byte %zu: %s", (size_t)(r->p - r->start), what);
    return TS_ERR_PROTO;
}

static void ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool eat(struct rd *r, char c)
{
    ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static bool peek(struct rd *r, char c)
{
    ws(r);
    return r->p < r->end && *r->p == c;
}

static enum ts_err hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;
    if (end - p < 4)
        return TS_ERR_PROTO;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = (c >= '0' && c <= '9')   ? (unsigned)(c - '0')
                     : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                     : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10)
                                              : 16u;
        if (d > 15)
            return TS_ERR_PROTO;
        v = v << 4 | d;
    }
    *out = v;
    return TS_OK;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF), 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        n = 2;
    else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        lo = p[0] == 0xe0 ? 0xa0 : 0x80;
        hi = p[0] == 0xed ? 0x9f : 0xbf;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        lo = p[0] == 0xf0 ? 0x90 : 0x80;
        hi = p[0] == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* A string at r->p: s and n get the raw text between the quotes, *esc whether
 * it held an escape. Escapes are checked (\u0000 and lone surrogates are
 * refused, as jansson does), control characters and bad UTF-8 too. */
static enum ts_err string(struct rd *r, const char **s, size_t *n, bool *esc)
{
    if (!eat(r, '"'))
        return syntax(r, "expected a string");
    const char *b = r->p;
    bool e = false;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20)
            return syntax(r, "control character in a string");
        if (c >= 0x80) {
            size_t l = utf8_len((const unsigned char *)r->p, (const unsigned char *)r->end);
            if (!l)
                return syntax(r, "invalid UTF-8");
            r->p += l;
            continue;
        }
        r->p++;
        if (c != '\\')
            continue;
        e = true;
        if (r->p >= r->end)
            break;
        char x = *r->p++;
        if (x == 'u') {
            unsigned u, lo;
            if (hex4(r->p, r->end, &u))
                return syntax(r, "bad \\u escape");
            r->p += 4;
            if (u == 0)
                return syntax(r, "\\u0000 in a string");
            if (u >= 0xdc00 && u <= 0xdfff)
                return syntax(r, "lone low surrogate");
            if (u >= 0xd800 && u <= 0xdbff) {
                if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' ||
                    hex4(r->p + 2, r->end, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return syntax(r, "lone high surrogate");
                r->p += 6;
            }
        } else if (!strchr("\"\\/bfnrt", x) || x == '\0') {
            return syntax(r, "bad escape");
        }
    }
    if (r->p >= r->end)
        return syntax(r, "unterminated string");
    *s = b;
    *n = (size_t)(r->p - b);
    *esc = e;
    r->p++;
    return TS_OK;
}

/* A number (RFC 8259 grammar); *integer when it has no fraction/exponent. */
static enum ts_err number(struct rd *r, bool *integer)
{
    ws(r);
    const char *p = r->p;
    if (p < r->end && *p == '-')
        p++;
    if (p >= r->end || *p < '0' || *p > '9')
        return syntax(r, "expected a value");
    if (*p == '0')
        p++;
    else
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    bool in = true;
    if (p < r->end && *p == '.') {
        in = false;
        if (++p >= r->end || *p < '0' || *p > '9')
            return syntax(r, "bad number");
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        in = false;
        p++;
        if (p < r->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= r->end || *p < '0' || *p > '9')
            return syntax(r, "bad number");
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    r->p = p;
    if (integer)
        *integer = in;
    return TS_OK;
}

static bool literal(struct rd *r, const char *word)
{
    size_t n = strlen(word);
    ws(r);
    if ((size_t)(r->end - r->p) >= n && memcmp(r->p, word, n) == 0) {
        r->p += n;
        return true;
    }
    return false;
}

/* Steps over one value of any kind, validating it. */
static enum ts_err value(struct rd *r, int depth)
{
    const char *s;
    size_t n;
    bool e;
    ws(r);
    if (r->p >= r->end)
        return syntax(r, "expected a value");
    if (depth > MAX_DEPTH)
        return syntax(r, "nested too deeply");
    char c = *r->p;
    if (c == '"')
        return string(r, &s, &n, &e);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        r->p++;
        if (eat(r, close))
            return TS_OK;
        do {
            int rc;
            if (c == '{') {
                if ((rc = string(r, &s, &n, &e)))
                    return rc;
                if (!eat(r, ':'))
                    return syntax(r, "expected ':'");
            }
            if ((rc = value(r, depth + 1)))
                return rc;
        } while (eat(r, ','));
        return eat(r, close) ? TS_OK
                             : syntax(r, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    if (literal(r, "true") || literal(r, "false") || literal(r, "null"))
        return TS_OK;
    return number(r, NULL);
}

/*
 * Object walking: obj_next reads the separator and the next key (with its
 * ':'), returning 1 with the key, 0 at the closing brace. first starts true.
 */
static int obj_next(struct rd *r, bool *first, const char **k, size_t *kn)
{
    bool e;
    if (eat(r, '}'))
        return 0;
    if (!*first && !eat(r, ','))
        return syntax(r, "expected ',' or '}'");
    *first = false;
    int rc = string(r, k, kn, &e);
    if (rc)
        return rc;
    if (e)
        *kn = 0; /* an escaped key is none of ours; its value is skipped */
    return eat(r, ':') ? 1 : syntax(r, "expected ':'");
}

static bool key_is(const char *k, size_t kn, const char *name)
{
    return kn == strlen(name) && memcmp(k, name, kn) == 0;
}

/* A string field without escapes copied into out (NUL-terminated), or
 * false when it is not a string, has escapes or is longer than max. */
static bool plain_string(struct rd *r, char *out, size_t max, int *rc)
{
    const char *s;
    size_t n;
    bool e;
    if (!peek(r, '"')) {
        *rc = value(r, 0);
        return false;
    }
    if ((*rc = string(r, &s, &n, &e)) || e || n > max)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* ---- feed semantics --------------------------------------------------------- */

static bool is_key_hex(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == 64;
}

/* cids are opaque to the agent but become SQLite keys and log text: keep them
 * to a safe alphabet. */
static bool is_cid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return n > 0 && n <= TS_FEED_MAX_CID;
}

void ts_feed_page_free(struct ts_feed_page *page)
{
    if (!page)
        return;
    for (size_t i = 0; i < page->nitems; i++) {
        free(page->items[i].keys);
        free(page->items[i].prev_keys);
        free(page->items[i].card);
    }
    free(page->items);
    memset(page, 0, sizeof *page);
}

static enum ts_err dup_key(struct rd *r, const char *name)
{
    char what[64];
    snprintf(what, sizeof what, "duplicate key \"%s\"", name);
    return syntax(r, what);
}

/* A key list ("keys" or "prev_keys") into *out / *n. */
static enum ts_err parse_keys(struct rd *r, const char *name, size_t idx, char (**out)[65],
                              size_t *n)
{
    if (*out)
        return dup_key(r, name);
    if (!eat(r, '[')) {
        snprintf(r->err, r->errsz, "items[%zu].%s: expected an array of at most %d keys", idx, name,
                 TS_FEED_MAX_KEYS);
        return TS_ERR_PROTO;
    }
    size_t cap = 2;
    *out = malloc(cap * sizeof **out);
    if (!*out)
        return TS_ERR_NOMEM;
    *n = 0;
    if (eat(r, ']'))
        return TS_OK;
    do {
        int rc = TS_OK;
        if (*n == TS_FEED_MAX_KEYS) {
            snprintf(r->err, r->errsz, "items[%zu].%s: expected an array of at most %d keys", idx,
                     name, TS_FEED_MAX_KEYS);
            return TS_ERR_PROTO;
        }
        if (*n == cap) {
            char(*more)[65] = realloc(*out, 2 * cap * sizeof **out);
            if (!more)
                return TS_ERR_NOMEM;
            *out = more;
            cap *= 2;
        }
        if (!plain_string(r, (*out)[*n], 64, &rc) || !is_key_hex((*out)[*n])) {
            if (rc)
                return rc;
            snprintf(r->err, r->errsz, "items[%zu].%s[%zu]: not a 64-char lowercase hex key", idx,
                     name, *n);
            return TS_ERR_PROTO;
        }
        (*n)++;
    } while (eat(r, ','));
    return eat(r, ']') ? TS_OK : syntax(r, "expected ',' or ']'");
}

/* The card object's text, copied without the whitespace between tokens. */
static enum ts_err parse_card(struct rd *r, size_t idx, char **out)
{
    if (*out)
        return dup_key(r, "card");
    if (!peek(r, '{')) {
        int rc = value(r, 0);
        if (rc)
            return rc;
        snprintf(r->err, r->errsz, "items[%zu].card: expected an object", idx);
        return TS_ERR_PROTO;
    }
    const char *b = r->p;
    int rc = value(r, 1);
    if (rc)
        return rc;
    size_t n = (size_t)(r->p - b), o = 0;
    char *t = malloc(n + 1);
    if (!t)
        return TS_ERR_NOMEM;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (in) {
            if (c == '\\')
                t[o++] = b[i++]; /* the escaped character follows */
            else if (c == '"')
                in = false;
        } else if (c == '"') {
            in = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        }
        t[o++] = b[i];
    }
    t[o] = '\0';
    *out = t;
    return TS_OK;
}

/*
 * One key of an item (or of a lookup answer, which is an item with kv):
 * returns 1 when the key was not an item field (the caller handles or skips
 * it), 0 when consumed, an error otherwise. seen tracks op and cid.
 */
enum {
    SEEN_OP = 1,
    SEEN_CID = 2,
    SEEN_KV = 4,
    SEEN_PKV = 8,
    SEEN_ITEMS = 16,
    SEEN_CURSOR = 32,
    SEEN_MORE = 64
};

static enum ts_err item_field(struct rd *r, const char *k, size_t kn, size_t idx,
                              struct ts_feed_item *it, unsigned *seen)
{
    int rc = TS_OK;
    if (key_is(k, kn, "op")) {
        char op[8];
        if (*seen & SEEN_OP)
            return dup_key(r, "op");
        *seen |= SEEN_OP;
        if (!plain_string(r, op, sizeof op - 1, &rc) ||
            (strcmp(op, "upsert") != 0 && strcmp(op, "erase") != 0)) {
            if (rc)
                return rc;
            snprintf(r->err, r->errsz, "items[%zu].op: expected \"upsert\" or \"erase\"", idx);
            return TS_ERR_PROTO;
        }
        it->op = op[0] == 'u' ? TS_FEED_UPSERT : TS_FEED_ERASE;
        return TS_OK;
    }
    if (key_is(k, kn, "cid")) {
        if (*seen & SEEN_CID)
            return dup_key(r, "cid");
        *seen |= SEEN_CID;
        if (!plain_string(r, it->cid, TS_FEED_MAX_CID, &rc) || !is_cid(it->cid)) {
            if (rc)
                return rc;
            snprintf(r->err, r->errsz, "items[%zu].cid: missing or malformed", idx);
            return TS_ERR_PROTO;
        }
        return TS_OK;
    }
    if (key_is(k, kn, "keys"))
        return parse_keys(r, "keys", idx, &it->keys, &it->nkeys);
    if (key_is(k, kn, "prev_keys"))
        return parse_keys(r, "prev_keys", idx, &it->prev_keys, &it->nprev_keys);
    if (key_is(k, kn, "card"))
        return parse_card(r, idx, &it->card);
    return value(r, 1); /* a key items do not have: skipped */
}

/* What every item must have once its object is read; prev says whether the
 * page names a second key version. Erasures drop what they do not need. */
static enum ts_err item_done(struct rd *r, size_t idx, bool prev, struct ts_feed_item *it,
                             unsigned seen)
{
    if (!(seen & SEEN_OP)) {
        snprintf(r->err, r->errsz, "items[%zu].op: expected \"upsert\" or \"erase\"", idx);
        return TS_ERR_PROTO;
    }
    if (!(seen & SEEN_CID)) {
        snprintf(r->err, r->errsz, "items[%zu].cid: missing or malformed", idx);
        return TS_ERR_PROTO;
    }
    if (it->op == TS_FEED_ERASE) {
        free(it->keys);
        free(it->prev_keys);
        free(it->card);
        it->keys = it->prev_keys = NULL;
        it->card = NULL;
        it->nkeys = it->nprev_keys = 0;
        return TS_OK;
    }
    if (!it->keys) {
        snprintf(r->err, r->errsz, "items[%zu].keys: expected an array of at most %d keys", idx,
                 TS_FEED_MAX_KEYS);
        return TS_ERR_PROTO;
    }
    if (it->prev_keys && !prev) {
        snprintf(r->err, r->errsz, "items[%zu].prev_keys: the page names no prev_kv", idx);
        return TS_ERR_PROTO;
    }
    if (!it->card) {
        snprintf(r->err, r->errsz, "items[%zu].card: expected an object", idx);
        return TS_ERR_PROTO;
    }
    return TS_OK;
}

static enum ts_err parse_item(struct rd *r, size_t idx, struct ts_feed_item *it, unsigned *seen)
{
    if (!eat(r, '{')) {
        int rc = value(r, 0);
        if (rc)
            return rc;
        snprintf(r->err, r->errsz, "items[%zu]: not an object", idx);
        return TS_ERR_PROTO;
    }
    bool first = true;
    const char *k;
    size_t kn;
    int rc;
    while ((rc = obj_next(r, &first, &k, &kn)) == 1) {
        rc = item_field(r, k, kn, idx, it, seen);
        if (rc)
            return rc;
    }
    return rc;
}

static enum ts_err parse_items(struct rd *r, struct ts_feed_page *page, unsigned *item_seen)
{
    if (!eat(r, '[')) {
        snprintf(r->err, r->errsz, "items: expected an array of at most %d items",
                 TS_FEED_MAX_ITEMS);
        return TS_ERR_PROTO;
    }
    if (eat(r, ']'))
        return TS_OK;
    size_t cap = 0;
    do {
        if (page->nitems == TS_FEED_MAX_ITEMS) {
            snprintf(r->err, r->errsz, "items: expected an array of at most %d items",
                     TS_FEED_MAX_ITEMS);
            return TS_ERR_PROTO;
        }
        if (page->nitems == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct ts_feed_item *ni = realloc(page->items, ncap * sizeof *ni);
            if (!ni)
                return TS_ERR_NOMEM;
            memset(ni + cap, 0, (ncap - cap) * sizeof *ni);
            page->items = ni;
            cap = ncap;
        }
        size_t i = page->nitems++;
        item_seen[i] = 0;
        int rc = parse_item(r, i, &page->items[i], &item_seen[i]);
        if (rc)
            return rc;
    } while (eat(r, ','));
    return eat(r, ']') ? TS_OK : syntax(r, "expected ',' or ']'");
}

/* kv / prev_kv: a positive integer key version. */
static bool key_version(struct rd *r, int *out, int *rc)
{
    bool integer = false;
    ws(r);
    const char *b = r->p;
    if (r->p >= r->end || !(*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))) {
        *rc = value(r, 0);
        return false;
    }
    if ((*rc = number(r, &integer)) || !integer || r->p - b > 7 || *b == '-')
        return false;
    long v = 0;
    for (const char *p = b; p < r->p; p++)
        v = v * 10 + (*p - '0');
    if (v < 1 || v > 1000000)
        return false;
    *out = (int)v;
    return true;
}

static enum ts_err parse(const char *body, size_t len, bool lookup, struct ts_feed_page *page,
                         char *err, size_t errsz)
{
    memset(page, 0, sizeof *page);
    struct rd r = {body, body, body + len, err, errsz};
    unsigned seen = 0, one_seen = 0;
    unsigned *item_seen = lookup ? NULL : calloc(TS_FEED_MAX_ITEMS, sizeof *item_seen);
    bool more = false;
    int rc = TS_OK;
    if (!lookup && !item_seen)
        return TS_ERR_NOMEM;
    if (lookup) {
        page->items = calloc(1, sizeof *page->items);
        if (!page->items) {
            rc = TS_ERR_NOMEM;
            goto out;
        }
        page->nitems = 1;
        page->items[0].op = TS_FEED_UPSERT;
        one_seen = SEEN_OP;
    }
    if (!eat(&r, '{')) {
        if ((rc = value(&r, 0)) == TS_OK) {
            snprintf(err, errsz, "page is not a JSON object");
            rc = TS_ERR_PROTO;
        }
        goto out;
    }
    bool first = true;
    const char *k;
    size_t kn;
    while ((rc = obj_next(&r, &first, &k, &kn)) == 1) {
        rc = TS_OK;
        if (key_is(k, kn, "kv") || key_is(k, kn, "prev_kv")) {
            bool prev = kn == 7;
            unsigned bit = prev ? SEEN_PKV : SEEN_KV;
            if (seen & bit) {
                rc = dup_key(&r, prev ? "prev_kv" : "kv");
                goto out;
            }
            seen |= bit;
            if (!key_version(&r, prev ? &page->prev_kv : &page->kv, &rc)) {
                if (!rc) {
                    snprintf(err, errsz,
                             prev ? "prev_kv: expected a positive key version other "
                                    "than kv"
                                  : "kv: expected a positive integer key version");
                    rc = TS_ERR_PROTO;
                }
                goto out;
            }
        } else if (lookup) {
            /* an answer is an upsert whatever it says */
            rc = key_is(k, kn, "op") ? 1 : item_field(&r, k, kn, 0, &page->items[0], &one_seen);
            if (rc == 1)
                rc = value(&r, 1);
        } else if (key_is(k, kn, "items")) {
            if (seen & SEEN_ITEMS) {
                rc = dup_key(&r, "items");
                goto out;
            }
            seen |= SEEN_ITEMS;
            rc = parse_items(&r, page, item_seen);
        } else if (key_is(k, kn, "cursor")) {
            if (seen & SEEN_CURSOR) {
                rc = dup_key(&r, "cursor");
                goto out;
            }
            seen |= SEEN_CURSOR;
            bool ok = plain_string(&r, page->cursor, TS_FEED_MAX_CURSOR, &rc) && page->cursor[0];
            for (const char *p = page->cursor; ok && *p; p++)
                ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
            if (!ok && !rc) {
                snprintf(err, errsz,
                         "cursor: missing, empty, longer than %d or not printable ASCII",
                         TS_FEED_MAX_CURSOR);
                rc = TS_ERR_PROTO;
            }
        } else if (key_is(k, kn, "more")) {
            if (seen & SEEN_MORE) {
                rc = dup_key(&r, "more");
                goto out;
            }
            seen |= SEEN_MORE;
            if (literal(&r, "true")) {
                more = true;
            } else if (literal(&r, "false")) {
                more = false;
            } else if ((rc = value(&r, 0)) == TS_OK) {
                snprintf(err, errsz, "more: expected true or false");
                rc = TS_ERR_PROTO;
            }
        } else {
            rc = value(&r, 1);
        }
        if (rc)
            goto out;
    }
    if (rc)
        goto out;
    ws(&r);
    if (r.p != r.end) {
        rc = syntax(&r, "bytes after the page");
        goto out;
    }
    if (!(seen & SEEN_KV)) {
        snprintf(err, errsz, "kv: expected a positive integer key version");
        rc = TS_ERR_PROTO;
        goto out;
    }
    if (page->prev_kv && page->prev_kv == page->kv) {
        snprintf(err, errsz, "prev_kv: expected a positive key version other than kv");
        rc = TS_ERR_PROTO;
        goto out;
    }
    if (lookup) {
        rc = item_done(&r, 0, page->prev_kv != 0, &page->items[0], one_seen);
        goto out;
    }
    if (!(seen & SEEN_ITEMS)) {
        snprintf(err, errsz, "items: expected an array of at most %d items", TS_FEED_MAX_ITEMS);
        rc = TS_ERR_PROTO;
        goto out;
    }
    if (!(seen & SEEN_CURSOR)) {
        snprintf(err, errsz, "cursor: missing, empty, longer than %d or not printable ASCII",
                 TS_FEED_MAX_CURSOR);
        rc = TS_ERR_PROTO;
        goto out;
    }
    if (!(seen & SEEN_MORE)) {
        snprintf(err, errsz, "more: expected true or false");
        rc = TS_ERR_PROTO;
        goto out;
    }
    page->more = more;
    for (size_t i = 0; i < page->nitems && rc == TS_OK; i++)
        rc = item_done(&r, i, page->prev_kv != 0, &page->items[i], item_seen[i]);
out:
    free(item_seen);
    if (rc)
        ts_feed_page_free(page);
    return rc;
}

enum ts_err ts_feed_parse(const char *body, size_t len, struct ts_feed_page *page, char *err,
                          size_t errsz)
{
    return parse(body, len, false, page, err, errsz);
}

enum ts_err ts_feed_parse_lookup(const char *body, size_t len, struct ts_feed_page *page, char *err,
                                 size_t errsz)
{
    return parse(body, len, true, page, err, errsz);
}
