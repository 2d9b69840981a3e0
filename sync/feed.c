/* Feed page parsing and validation (see feed.h and docs/PROTOCOL.md). */
#include "feed.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A key list ("keys" or "prev_keys") into *out / *n. */
static int parse_keys(json_t *keys, const char *name, size_t idx, char (**out)[65], size_t *n,
                      char *err, size_t errsz)
{
    if (!json_is_array(keys) || json_array_size(keys) > TS_FEED_MAX_KEYS) {
        snprintf(err, errsz, "items[%zu].%s: expected an array of at most %d keys", idx, name,
                 TS_FEED_MAX_KEYS);
        return TS_ERR_PROTO;
    }
    size_t cnt = json_array_size(keys);
    *out = calloc(cnt ? cnt : 1, sizeof **out);
    if (!*out)
        return TS_ERR_NOMEM;
    *n = cnt;
    for (size_t k = 0; k < cnt; k++) {
        const char *key = json_string_value(json_array_get(keys, k));
        if (!key || !is_key_hex(key)) {
            snprintf(err, errsz, "items[%zu].%s[%zu]: not a 64-char lowercase hex key", idx, name,
                     k);
            return TS_ERR_PROTO;
        }
        memcpy((*out)[k], key, 65);
    }
    return TS_OK;
}

/* Validates one item object into it; idx is used in messages. prev says
 * whether the page named a second key version (prev_kv). */
static int parse_item(json_t *o, size_t idx, bool prev, struct ts_feed_item *it, char *err,
                      size_t errsz)
{
    if (!json_is_object(o)) {
        snprintf(err, errsz, "items[%zu]: not an object", idx);
        return TS_ERR_PROTO;
    }
    const char *op = json_string_value(json_object_get(o, "op"));
    const char *cid = json_string_value(json_object_get(o, "cid"));
    if (!op || (strcmp(op, "upsert") != 0 && strcmp(op, "erase") != 0)) {
        snprintf(err, errsz, "items[%zu].op: expected \"upsert\" or \"erase\"", idx);
        return TS_ERR_PROTO;
    }
    if (!cid || !is_cid(cid)) {
        snprintf(err, errsz, "items[%zu].cid: missing or malformed", idx);
        return TS_ERR_PROTO;
    }
    it->op = op[0] == 'u' ? TS_FEED_UPSERT : TS_FEED_ERASE;
    memcpy(it->cid, cid, strlen(cid) + 1);
    if (it->op == TS_FEED_ERASE)
        return TS_OK;

    json_t *card = json_object_get(o, "card");
    json_t *prev_keys = json_object_get(o, "prev_keys");
    int rc = parse_keys(json_object_get(o, "keys"), "keys", idx, &it->keys, &it->nkeys, err, errsz);
    if (rc)
        return rc;
    if (prev_keys && !prev) {
        snprintf(err, errsz, "items[%zu].prev_keys: the page names no prev_kv", idx);
        return TS_ERR_PROTO;
    }
    if (prev_keys &&
        (rc = parse_keys(prev_keys, "prev_keys", idx, &it->prev_keys, &it->nprev_keys, err, errsz)))
        return rc;
    if (!json_is_object(card)) {
        snprintf(err, errsz, "items[%zu].card: expected an object", idx);
        return TS_ERR_PROTO;
    }
    it->card = json_dumps(card, JSON_COMPACT);
    return it->card ? TS_OK : TS_ERR_NOMEM;
}

static int parse_root(json_t *root, bool lookup, struct ts_feed_page *page, char *err, size_t errsz)
{
    if (!json_is_object(root)) {
        snprintf(err, errsz, "page is not a JSON object");
        return TS_ERR_PROTO;
    }
    json_t *kv = json_object_get(root, "kv");
    if (!json_is_integer(kv) || json_integer_value(kv) < 1 || json_integer_value(kv) > 1000000) {
        snprintf(err, errsz, "kv: expected a positive integer key version");
        return TS_ERR_PROTO;
    }
    page->kv = (int)json_integer_value(kv);
    json_t *pkv = json_object_get(root, "prev_kv");
    if (pkv && (!json_is_integer(pkv) || json_integer_value(pkv) < 1 ||
                json_integer_value(pkv) > 1000000 || json_integer_value(pkv) == page->kv)) {
        snprintf(err, errsz, "prev_kv: expected a positive key version other than kv");
        return TS_ERR_PROTO;
    }
    page->prev_kv = pkv ? (int)json_integer_value(pkv) : 0;
    if (lookup) {
        json_t *item = json_deep_copy(root);
        if (!item)
            return TS_ERR_NOMEM;
        json_object_set_new(item, "op", json_string("upsert"));
        page->items = calloc(1, sizeof *page->items);
        if (!page->items) {
            json_decref(item);
            return TS_ERR_NOMEM;
        }
        page->nitems = 1;
        int rc = parse_item(item, 0, page->prev_kv != 0, &page->items[0], err, errsz);
        json_decref(item);
        return rc;
    }
    json_t *items = json_object_get(root, "items");
    json_t *cursor = json_object_get(root, "cursor");
    json_t *more = json_object_get(root, "more");
    if (!json_is_array(items) || json_array_size(items) > TS_FEED_MAX_ITEMS) {
        snprintf(err, errsz, "items: expected an array of at most %d items", TS_FEED_MAX_ITEMS);
        return TS_ERR_PROTO;
    }
    const char *cur = json_string_value(cursor);
    if (!cur || !*cur || strlen(cur) > TS_FEED_MAX_CURSOR) {
        snprintf(err, errsz, "cursor: missing, empty or longer than %d", TS_FEED_MAX_CURSOR);
        return TS_ERR_PROTO;
    }
    for (const char *p = cur; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            snprintf(err, errsz, "cursor: contains non-printable characters");
            return TS_ERR_PROTO;
        }
    if (!json_is_boolean(more)) {
        snprintf(err, errsz, "more: expected true or false");
        return TS_ERR_PROTO;
    }
    memcpy(page->cursor, cur, strlen(cur) + 1);
    page->more = json_is_true(more);
    size_t n = json_array_size(items);
    page->items = calloc(n ? n : 1, sizeof *page->items);
    if (!page->items)
        return TS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        page->nitems = i + 1;
        int rc = parse_item(json_array_get(items, i), i, page->prev_kv != 0, &page->items[i], err,
                            errsz);
        if (rc)
            return rc;
    }
    return TS_OK;
}

static int parse(const char *body, size_t len, bool lookup, struct ts_feed_page *page, char *err,
                 size_t errsz)
{
    memset(page, 0, sizeof *page);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errsz, "not valid JSON at line %d column %d: %s", je.line, je.column,
                 je.text);
        return TS_ERR_PROTO;
    }
    int rc = parse_root(root, lookup, page, err, errsz);
    json_decref(root);
    if (rc)
        ts_feed_page_free(page);
    return rc;
}

int ts_feed_parse(const char *body, size_t len, struct ts_feed_page *page, char *err, size_t errsz)
{
    return parse(body, len, false, page, err, errsz);
}

int ts_feed_parse_lookup(const char *body, size_t len, struct ts_feed_page *page, char *err,
                         size_t errsz)
{
    return parse(body, len, true, page, err, errsz);
}
