/*
 * CRL writer (pki_crl.h). The structure is RFC 5280 §5.1:
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm,
 *                                  signatureValue BIT STRING }
 *   TBSCertList ::= SEQUENCE { version INTEGER (1 = v2), signature
 *       AlgorithmIdentifier, issuer Name, thisUpdate Time, nextUpdate Time,
 *       revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER,
 *       revocationDate Time } OPTIONAL, crlExtensions [0] EXPLICIT
 *       Extensions (cRLNumber, §5.2.3) }
 *
 * DER is written front to back: each constructed value is built in a
 * buffer of its own and then wrapped with its tag and length. The issuer is
 * the CA certificate's subject copied byte for byte, so a verifier's name
 * comparison cannot differ from the one it makes for the certificates.
 */
#include "pki_crl.h"
#include "pki_int.h"

#include <mbedtls/pem.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ecdsa-with-SHA256 (RFC 5758 §3.2: parameters absent) and
 * sha256WithRSAEncryption (RFC 4055 §5: parameters NULL). */
static const unsigned char ALG_ECDSA_SHA256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                                 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const unsigned char ALG_RSA_SHA256[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                               0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
static const unsigned char OID_CRL_NUMBER[] = {0x06, 0x03, 0x55, 0x1d, 0x14}; /* 2.5.29.20 */

static enum ts_err der_head(ts_buf *b, unsigned char tag, size_t len)
{
    unsigned char h[10];
    size_t n = 0;
    h[n++] = tag;
    if (len < 0x80) {
        h[n++] = (unsigned char)len;
    } else {
        unsigned char l[8];
        size_t k = 0;
        for (size_t v = len; v; v >>= 8)
            l[k++] = (unsigned char)(v & 0xff);
        h[n++] = (unsigned char)(0x80 | k);
        while (k)
            h[n++] = l[--k];
    }
    return ts_buf_append(b, h, n);
}

static enum ts_err der_tlv(ts_buf *b, unsigned char tag, const void *v, size_t n)
{
    int rc = der_head(b, tag, n);
    return rc ? rc : n ? ts_buf_append(b, v, n) : TS_OK;
}

/* An INTEGER from big-endian magnitude bytes: minimal, and a 0x00 in front
 * when the top bit is set so it stays positive (X.690 §8.3). */
static enum ts_err der_uint_bytes(ts_buf *b, const unsigned char *v, size_t n)
{
    unsigned char tmp[72];
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    if (n == 0 || n + 1 > sizeof tmp)
        return TS_ERR_INVAL;
    size_t k = 0;
    if (v[0] & 0x80)
        tmp[k++] = 0;
    memcpy(tmp + k, v, n);
    return der_tlv(b, 0x02, tmp, n + k);
}

static enum ts_err der_uint(ts_buf *b, uint64_t v)
{
    unsigned char be[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        be[i] = (unsigned char)(v & 0xff);
    return der_uint_bytes(b, be, sizeof be);
}

/* UTCTime through 2049, GeneralizedTime after (RFC 5280 §5.1.2.4). */
static enum ts_err der_time(ts_buf *b, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char s[20];
    if (!gmtime_r(&tt, &tm))
        return TS_ERR_INVAL;
    if (tm.tm_year >= 50 && tm.tm_year < 150) {
        strftime(s, sizeof s, "%y%m%d%H%M%SZ", &tm);
        return der_tlv(b, 0x17, s, strlen(s));
    }
    strftime(s, sizeof s, "%Y%m%d%H%M%SZ", &tm);
    return der_tlv(b, 0x18, s, strlen(s));
}

/* Wraps inner as one value of tag into out. */
static enum ts_err der_wrap(ts_buf *out, unsigned char tag, const ts_buf *inner)
{
    return der_tlv(out, tag, inner->data, inner->len);
}

static enum ts_err serial_bytes(const char *hex, unsigned char *out, size_t outsz, size_t *n)
{
    char tmp[80];
    size_t len = hex ? strlen(hex) : 0;
    if (len == 0 || len + 2 > sizeof tmp)
        return TS_ERR_INVAL;
    /* An odd number of digits is a serial whose first byte is < 0x10. */
    snprintf(tmp, sizeof tmp, "%s%s", len % 2 ? "0" : "", hex);
    return ts_hex_decode(tmp, out, outsz, n);
}

static enum ts_err revoked_list(ts_buf *out, const struct ts_pki_crl_entry *e, size_t n, char *err,
                                size_t errsz)
{
    ts_buf all = {0}, one = {0};
    int rc = TS_OK;
    for (size_t i = 0; rc == TS_OK && i < n; i++) {
        unsigned char sn[40];
        size_t sl;
        if (serial_bytes(e[i].serial_hex, sn, sizeof sn, &sl) != TS_OK) {
            ts_errf(err, errsz, "not a hex serial number: \"%.60s\"",
                    e[i].serial_hex ? e[i].serial_hex : "");
            rc = TS_ERR_INVAL;
            break;
        }
        ts_buf_reset(&one);
        if ((rc = der_uint_bytes(&one, sn, sl)) || (rc = der_time(&one, e[i].revoked_at)) ||
            (rc = der_wrap(&all, 0x30, &one)))
            break;
    }
    if (rc == TS_OK && n > 0) /* an empty list is left out, not written empty */
        rc = der_wrap(out, 0x30, &all);
    ts_buf_free(&all);
    ts_buf_free(&one);
    return rc;
}

/* crlExtensions [0] EXPLICIT SEQUENCE { cRLNumber } */
static enum ts_err crl_extensions(ts_buf *out, uint64_t number)
{
    ts_buf num = {0}, ext = {0}, exts = {0}, seq = {0};
    int rc;
    if ((rc = der_uint(&num, number)) ||
        (rc = ts_buf_append(&ext, OID_CRL_NUMBER, sizeof OID_CRL_NUMBER)) ||
        (rc = der_wrap(&ext, 0x04, &num)) || (rc = der_wrap(&exts, 0x30, &ext)) ||
        (rc = der_wrap(&seq, 0x30, &exts)))
        goto out;
    rc = der_wrap(out, 0xa0, &seq);
out:
    ts_buf_free(&num);
    ts_buf_free(&ext);
    ts_buf_free(&exts);
    ts_buf_free(&seq);
    return rc;
}

static enum ts_err to_pem(const ts_buf *der, char **pem, char *err, size_t errsz)
{
    size_t cap = der->len * 2 + 128, olen = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return TS_ERR_NOMEM;
    int ret = mbedtls_pem_write_buffer("-----BEGIN X509 CRL-----\n", "-----END X509 CRL-----\n",
                                       (const unsigned char *)der->data, der->len, buf, cap, &olen);
    if (ret) {
        ts_pki_mberr(err, errsz, "cannot encode the CRL", ret);
        free(buf);
        return TS_ERR_TLS;
    }
    *pem = (char *)buf;
    return TS_OK;
}

enum ts_err ts_pki_crl_make(const char *ca_cert_file, const char *ca_key_file,
                            const struct ts_pki_crl_entry *entries, size_t n, int64_t this_update,
                            int64_t next_update, uint64_t crl_number, char **pem, char *err,
                            size_t errsz)
{
    struct pki_rng r;
    mbedtls_x509_crt ca;
    mbedtls_pk_context key;
    ts_buf tbs = {0}, body = {0}, all = {0};
    unsigned char hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE + 1];
    size_t sig_len = 0;
    int rc, ret;
    mbedtls_x509_crt_init(&ca);
    mbedtls_pk_init(&key);
    if ((rc = ts_pki_rng_init(&r, err, errsz)))
        goto out_norng;
    if ((ret = mbedtls_x509_crt_parse_file(&ca, ca_cert_file))) {
        ts_pki_mberr(err, errsz, "cannot load the CA certificate", ret);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    if ((ret = ts_compat_pk_parse_keyfile(&key, ca_key_file, mbedtls_ctr_drbg_random, &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot load the CA key", ret);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    if (ts_compat_pk_check_pair(&ca.pk, &key, mbedtls_ctr_drbg_random, &r.drbg) != 0) {
        ts_errf(err, errsz, "%s does not belong to %s", ca_key_file, ca_cert_file);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    bool rsa = mbedtls_pk_get_type(&key) == MBEDTLS_PK_RSA;
    const unsigned char *alg = rsa ? ALG_RSA_SHA256 : ALG_ECDSA_SHA256;
    size_t alg_len = rsa ? sizeof ALG_RSA_SHA256 : sizeof ALG_ECDSA_SHA256;

    if ((rc = der_uint(&body, 1)) || (rc = ts_buf_append(&body, alg, alg_len)) ||
        (rc = ts_buf_append(&body, ca.subject_raw.p, ca.subject_raw.len)) ||
        (rc = der_time(&body, this_update)) || (rc = der_time(&body, next_update)) ||
        (rc = revoked_list(&body, entries, n, err, errsz)) ||
        (rc = crl_extensions(&body, crl_number)) || (rc = der_wrap(&tbs, 0x30, &body)))
        goto out;

    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md || (ret = mbedtls_md(md, (const unsigned char *)tbs.data, tbs.len, hash)) ||
        (ret = ts_compat_pk_sign(&key, MBEDTLS_MD_SHA256, hash, sizeof hash, sig + 1,
                                 sizeof sig - 1, &sig_len, mbedtls_ctr_drbg_random, &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot sign the CRL", md ? ret : -1);
        rc = TS_ERR_TLS;
        goto out;
    }
    sig[0] = 0; /* BIT STRING: no unused bits */
    ts_buf_reset(&body);
    if ((rc = ts_buf_append(&body, tbs.data, tbs.len)) ||
        (rc = ts_buf_append(&body, alg, alg_len)) ||
        (rc = der_tlv(&body, 0x03, sig, sig_len + 1)) || (rc = der_wrap(&all, 0x30, &body)))
        goto out;
    rc = to_pem(&all, pem, err, errsz);
out:
    ts_pki_rng_free(&r);
out_norng:
    if (rc == TS_ERR_NOMEM)
        ts_errf(err, errsz, "out of memory");
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&ca);
    ts_buf_free(&tbs);
    ts_buf_free(&body);
    ts_buf_free(&all);
    return rc;
}
