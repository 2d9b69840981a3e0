/*
 * Identifier normalization and keying. The agent never stores raw loyalty
 * numbers: both sides compute HMAC-SHA256(tenant_key, "<kind>:<normalized>")
 * and exchange the lowercase hex of it (64 chars). Hub and agent must agree
 * byte for byte, so this file is the single definition.
 */
#ifndef TS_IDENT_H
#define TS_IDENT_H

#include "../common/ts.h"

#include <stddef.h>
#include <stdint.h>

#define TS_IDENT_KEY_HEX 65 /* 64 hex chars + NUL */
#define TS_TENANT_KEY_MAX 64

enum ts_ident_kind {
    TS_IDENT_LOYALTY = 0,
    TS_IDENT_RECEIPT,
    TS_IDENT_ORDER,
    TS_IDENT_PRODUCT,
};

const char *ts_ident_kind_name(enum ts_ident_kind k);
enum ts_err ts_ident_kind_parse(const char *s, enum ts_ident_kind *out);

/*
 * Normalizes a scanned or CDP-supplied identifier: trims whitespace and
 * control characters, drops spaces and dashes inside, uppercases ASCII
 * letters. Returns TS_ERR_INVAL when nothing printable is left or the result
 * does not fit (outsz bytes).
 */
enum ts_err ts_ident_normalize(const char *raw, size_t rawlen, char *out, size_t outsz);

/* The tenant key for HMAC, with its version (from config or enrolment). */
struct ts_tenant_key {
    uint8_t key[TS_TENANT_KEY_MAX];
    size_t len;
    int version;
};

/* Parses a hex key (32..64 bytes). */
enum ts_err ts_tenant_key_parse(const char *hex, int version, struct ts_tenant_key *out);

/* hex = HMAC-SHA256(key, kind ":" normalized), lowercase hex. */
enum ts_err ts_ident_key(const struct ts_tenant_key *k, enum ts_ident_kind kind,
                         const char *normalized, char hex[TS_IDENT_KEY_HEX]);

#endif
