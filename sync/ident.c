/* Identifier normalization and HMAC keying (see ident.h). */
#include "ident.h"
#include "../common/ts.h"

#include <mbedtls/md.h>
#include <string.h>

static const char *kind_names[] = {"loyalty", "receipt", "order", "product"};

const char *ts_ident_kind_name(enum ts_ident_kind k)
{
    return (unsigned)k < 4 ? kind_names[k] : "unknown";
}

enum ts_err ts_ident_kind_parse(const char *s, enum ts_ident_kind *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, kind_names[i]) == 0) {
            *out = (enum ts_ident_kind)i;
            return TS_OK;
        }
    return TS_ERR_INVAL;
}

enum ts_err ts_ident_normalize(const char *raw, size_t rawlen, char *out, size_t outsz)
{
    size_t n = 0;
    for (size_t i = 0; i < rawlen; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c <= 0x20 || c == 0x7f || c == '-')
            continue; /* whitespace, control (CR/LF/TAB/GS), separators */
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 'a' + 'A');
        if (n + 1 >= outsz)
            return TS_ERR_INVAL;
        out[n++] = (char)c;
    }
    if (n == 0)
        return TS_ERR_INVAL;
    out[n] = '\0';
    return TS_OK;
}

enum ts_err ts_tenant_key_parse(const char *hex, int version, struct ts_tenant_key *out)
{
    struct ts_tenant_key k = {.version = version};
    if (!hex || ts_hex_decode(hex, k.key, sizeof k.key, &k.len) != TS_OK || k.len < 16)
        return TS_ERR_INVAL;
    *out = k;
    return TS_OK;
}

enum ts_err ts_ident_key(const struct ts_tenant_key *k, enum ts_ident_kind kind,
                         const char *normalized, char hex[TS_IDENT_KEY_HEX])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t ctx;
    uint8_t mac[32];
    const char *kn = ts_ident_kind_name(kind);
    mbedtls_md_init(&ctx);
    int rc = mbedtls_md_setup(&ctx, md, 1);
    if (rc == 0)
        rc = mbedtls_md_hmac_starts(&ctx, k->key, k->len);
    if (rc == 0)
        rc = mbedtls_md_hmac_update(&ctx, (const unsigned char *)kn, strlen(kn));
    if (rc == 0)
        rc = mbedtls_md_hmac_update(&ctx, (const unsigned char *)":", 1);
    if (rc == 0)
        rc = mbedtls_md_hmac_update(&ctx, (const unsigned char *)normalized, strlen(normalized));
    if (rc == 0)
        rc = mbedtls_md_hmac_finish(&ctx, mac);
    mbedtls_md_free(&ctx);
    if (rc != 0)
        return TS_ERR_INVAL;
    ts_hex_encode(mac, sizeof mac, hex);
    return TS_OK;
}
