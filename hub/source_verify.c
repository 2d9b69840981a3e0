/*
 * Verification plumbing the source adapters share: HMACs through mbedTLS
 * md, constant-time comparison, bearer and Basic credentials and the
 * window a signed send time must fall in. Which of these a vendor needs,
 * and over which bytes, is in its own file beside the vendor's doc.
 */
#include "source_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool ts_src_same(const void *a, size_t alen, const char *b)
{
    return b[0] && ts_secret_eq(a, alen, b);
}

const char *ts_src_header(const struct ts_src_ctx *c, const char *name)
{
    return c->req->msg ? ts_http_header(c->req->msg, name) : NULL;
}

/* sig without surrounding blanks, decoded into out; false when it is not
 * of the expected encoding or size. */
static bool decode_sig(const char *sig, enum ts_src_enc enc, uint8_t *out, size_t want)
{
    char buf[256];
    while (*sig == ' ' || *sig == '\t')
        sig++;
    size_t n = strlen(sig);
    while (n && (sig[n - 1] == ' ' || sig[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, sig, n);
    buf[n] = '\0';
    size_t got = 0;
    if (enc == TS_SRC_HEX)
        return n == 2 * want && ts_hex_decode(buf, out, want, &got) == TS_OK && got == want;
    return ts_base64_decode(buf, n, out, want, &got) == TS_OK && got == want;
}

bool ts_src_hmac_ok(const struct ts_src_ctx *c, mbedtls_md_type_t md, const void *p1, size_t n1,
                    const void *p2, size_t n2, const char *sig, enum ts_src_enc enc)
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(md);
    uint8_t mac[MBEDTLS_MD_MAX_SIZE], want[MBEDTLS_MD_MAX_SIZE];
    if (!info || !sig || !c->conf->secret[0])
        return false;
    size_t len = mbedtls_md_get_size(info);
    if (!decode_sig(sig, enc, want, len))
        return false;
    mbedtls_md_context_t ctx;
    mbedtls_md_init(&ctx);
    const unsigned char *key = (const unsigned char *)c->conf->secret;
    int ret = mbedtls_md_setup(&ctx, info, 1);
    if (!ret)
        ret = mbedtls_md_hmac_starts(&ctx, key, strlen(c->conf->secret));
    if (!ret && n1)
        ret = mbedtls_md_hmac_update(&ctx, p1, n1);
    if (!ret && n2)
        ret = mbedtls_md_hmac_update(&ctx, p2, n2);
    if (!ret)
        ret = mbedtls_md_hmac_finish(&ctx, mac);
    mbedtls_md_free(&ctx);
    if (ret)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= mac[i] ^ want[i];
    return diff == 0;
}

/* The Authorization header's credentials after scheme ("Bearer "). */
static const char *auth_param(const struct ts_src_ctx *c, const char *scheme, size_t *len)
{
    const char *h = ts_src_header(c, "Authorization");
    size_t sl = strlen(scheme);
    if (!h || strncasecmp(h, scheme, sl) != 0)
        return NULL;
    h += sl;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    *len = n;
    return h;
}

bool ts_src_bearer_ok(const struct ts_src_ctx *c)
{
    size_t n;
    const char *tok = auth_param(c, "Bearer ", &n);
    return tok && ts_src_same(tok, n, c->conf->secret);
}

bool ts_src_basic_ok(const struct ts_src_ctx *c)
{
    return ts_basic_auth_ok(ts_src_header(c, "Authorization"), c->conf->user, c->conf->secret);
}

enum ts_err ts_src_window(struct ts_src_ctx *c, int64_t sent_ms)
{
    int64_t w = (int64_t)c->conf->window_s * 1000;
    if (w <= 0)
        return TS_OK;
    int64_t d = c->now_ms - sent_ms;
    if (d > w || d < -w) {
        ts_errf(c->err, sizeof c->err,
                "signed send time is %lld s from the hub's clock (window %d s): stale or replayed",
                (long long)(d / 1000), c->conf->window_s);
        return TS_ERR_GONE;
    }
    return TS_OK;
}

bool ts_src_time(const json_t *v, int64_t *ms)
{
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (!(d > 0 && d < 1e14))
            return false;
        /* Seconds until the year 5138; above that, milliseconds. */
        *ms = d < 1e11 ? (int64_t)(d * 1000.0) : (int64_t)d;
        return true;
    }
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    if (ts_hub_iso_shape(s))
        return ts_iso8601_parse(s, ms) == TS_OK;
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end != '\0')
        return false;
    json_t *n = json_real(d);
    bool ok = n && ts_src_time(n, ms);
    json_decref(n);
    return ok;
}
