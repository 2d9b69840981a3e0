/*
 * Enrolment's half of the small CA (see pki.h): the agent's key and signing
 * request, the hub's signer that turns a request into a terminal
 * certificate naming what the hub decides, and reading certificates back
 * (days left, serial, public key pin).
 */
#include "pki_int.h"

#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_csr.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* DER SubjectPublicKeyInfo of an EC P-256 key starts with exactly these 26
 * bytes (RFC 5480 §2: id-ecPublicKey, namedCurve prime256v1, then the
 * 66-byte BIT STRING header) and is 91 bytes long. Comparing the encoding
 * is the one check that reads the same in mbedTLS 2.28 and 3.6. */
static const unsigned char P256_SPKI_PREFIX[26] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};

static bool spki_is_p256(const unsigned char *der, size_t len)
{
    return len == 91 && memcmp(der, P256_SPKI_PREFIX, sizeof P256_SPKI_PREFIX) == 0;
}

static enum ts_err sha256(const unsigned char *in, size_t n, unsigned char out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    return md && mbedtls_md(md, in, n, out) == 0 ? TS_OK : TS_ERR_TLS;
}

struct ts_pki_signer {
    pthread_mutex_t mu; /* the RNG and the CA key are used by one signature at a time */
    struct pki_rng rng;
    mbedtls_x509_crt ca;
    mbedtls_pk_context ca_key;
    char issuer[512];
    char *ca_pem;
};

enum ts_err ts_pki_signer_new(const char *ca_cert_file, const char *ca_key_file,
                              struct ts_pki_signer **out, char *err, size_t errsz)
{
    int rc, ret;
    struct ts_pki_signer *s = calloc(1, sizeof *s);
    if (!s)
        return TS_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    mbedtls_x509_crt_init(&s->ca);
    mbedtls_pk_init(&s->ca_key);
    if ((rc = ts_pki_rng_init(&s->rng, err, errsz)))
        goto out;
    if ((rc = ts_read_file(ca_cert_file, 1 << 20, &s->ca_pem, NULL))) {
        ts_errf(err, errsz, "cannot read the CA certificate %s: %s", ca_cert_file, ts_strerror(rc));
        goto out;
    }
    rc = TS_ERR_CONFIG;
    if ((ret = mbedtls_x509_crt_parse_file(&s->ca, ca_cert_file))) {
        ts_pki_mberr(err, errsz, "cannot load the CA certificate", ret);
        goto out;
    }
    if ((ret = ts_compat_pk_parse_keyfile(&s->ca_key, ca_key_file, mbedtls_ctr_drbg_random,
                                          &s->rng.drbg))) {
        ts_pki_mberr(err, errsz, "cannot load the CA key", ret);
        goto out;
    }
    if (ts_compat_pk_check_pair(&s->ca.pk, &s->ca_key, mbedtls_ctr_drbg_random, &s->rng.drbg)) {
        ts_errf(err, errsz, "%s does not belong to %s", ca_key_file, ca_cert_file);
        goto out;
    }
    if ((rc = ts_pki_name_to_string(&s->ca.subject, s->issuer, sizeof s->issuer, err, errsz)))
        goto out;
    *out = s;
    s = NULL;
out:
    ts_pki_signer_free(s);
    return rc;
}

void ts_pki_signer_free(struct ts_pki_signer *s)
{
    if (!s)
        return;
    mbedtls_pk_free(&s->ca_key);
    mbedtls_x509_crt_free(&s->ca);
    ts_pki_rng_free(&s->rng);
    pthread_mutex_destroy(&s->mu);
    free(s->ca_pem);
    free(s);
}

const char *ts_pki_signer_ca_pem(const struct ts_pki_signer *s)
{
    return s ? s->ca_pem : NULL;
}

enum ts_err ts_pki_signer_sign(struct ts_pki_signer *s, const char *csr_pem, size_t csr_len,
                               const char *cn, const char *ou, const char *o, int64_t not_before,
                               int64_t not_after, char **cert_pem, char serial[48], char *err,
                               size_t errsz)
{
    char subject[256];
    unsigned char der[160], pem[4096];
    mbedtls_x509_csr csr;
    int rc = TS_ERR_INVAL, ret;
    mbedtls_x509_csr_init(&csr);
    if (!s || !csr_pem || !cert_pem || not_after <= not_before) {
        ts_errf(err, errsz, "invalid signing request");
        goto out;
    }
    if ((rc = ts_pki_build_subject(cn, ou, o, subject, sizeof subject, err, errsz)))
        goto out;
    rc = TS_ERR_INVAL;
    if (csr_len == 0 || csr_len > 16384 || !memmem(csr_pem, csr_len, "-----BEGIN", 10)) {
        ts_errf(err, errsz, "csr is not a PEM certificate signing request");
        goto out;
    }
    /* mbedTLS wants PEM NUL-terminated, with the NUL counted */
    char *z = malloc(csr_len + 1);
    if (!z) {
        rc = TS_ERR_NOMEM;
        goto out;
    }
    memcpy(z, csr_pem, csr_len);
    z[csr_len] = '\0';
    ret = mbedtls_x509_csr_parse(&csr, (const unsigned char *)z, csr_len + 1);
    free(z);
    if (ret) {
        ts_pki_mberr(err, errsz, "csr is not a valid certificate signing request", ret);
        goto out;
    }
    int n = mbedtls_pk_write_pubkey_der(&csr.pk, der, sizeof der);
    if (n <= 0 || !spki_is_p256(der + sizeof der - (size_t)n, (size_t)n)) {
        ts_errf(err, errsz, "csr key must be EC P-256");
        goto out;
    }
    if (ts_compat_csr_verify_signature(&csr) != 0) {
        ts_errf(err, errsz, "csr signature does not verify (not signed by its own key)");
        goto out;
    }
    /* The subject the requester asked for is ignored: the hub decides who
     * the certificate names. */
    struct cert_spec spec = {.subject = subject,
                             .issuer = s->issuer,
                             .subject_key = &csr.pk,
                             .issuer_key = &s->ca_key,
                             .not_before = not_before,
                             .not_after = not_after};
    pthread_mutex_lock(&s->mu);
    rc = ts_pki_sign_cert(&spec, &s->rng, pem, sizeof pem, serial, err, errsz);
    pthread_mutex_unlock(&s->mu);
    if (rc)
        goto out;
    if (!(*cert_pem = strdup((char *)pem)))
        rc = TS_ERR_NOMEM;
out:
    mbedtls_x509_csr_free(&csr);
    return rc;
}

enum ts_err ts_pki_new_key_csr(const char *cn, char **key_pem, char **csr_pem,
                               unsigned char spki_sha256[32], char *err, size_t errsz)
{
    char subject[256];
    unsigned char kbuf[2048], cbuf[2048], der[160];
    struct pki_rng r;
    mbedtls_pk_context key;
    mbedtls_x509write_csr req;
    int rc, ret;
    mbedtls_pk_init(&key);
    mbedtls_x509write_csr_init(&req);
    if ((rc = ts_pki_rng_init(&r, err, errsz)))
        goto out;
    if ((rc = ts_pki_build_subject(cn && cn[0] ? cn : "tillside terminal", NULL, NULL, subject,
                                   sizeof subject, err, errsz)))
        goto out;
    rc = TS_ERR_TLS;
    if ((ret = ts_compat_ec_p256_genkey(&key, mbedtls_ctr_drbg_random, &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot generate a key", ret);
        goto out;
    }
    mbedtls_x509write_csr_set_md_alg(&req, MBEDTLS_MD_SHA256);
    mbedtls_x509write_csr_set_key(&req, &key);
    if ((ret = mbedtls_x509write_csr_set_subject_name(&req, subject)) ||
        (ret = mbedtls_x509write_csr_pem(&req, cbuf, sizeof cbuf, mbedtls_ctr_drbg_random,
                                         &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot make the signing request", ret);
        goto out;
    }
    if ((ret = mbedtls_pk_write_key_pem(&key, kbuf, sizeof kbuf))) {
        ts_pki_mberr(err, errsz, "cannot encode the key", ret);
        goto out;
    }
    int n = mbedtls_pk_write_pubkey_der(&key, der, sizeof der);
    if (n <= 0 || sha256(der + sizeof der - (size_t)n, (size_t)n, spki_sha256)) {
        ts_errf(err, errsz, "cannot encode the public key");
        goto out;
    }
    char *k = strdup((char *)kbuf), *c = strdup((char *)cbuf);
    if (!k || !c) {
        ts_pki_free_secret(k);
        free(c);
        rc = TS_ERR_NOMEM;
        goto out;
    }
    *key_pem = k;
    *csr_pem = c;
    rc = TS_OK;
out:
    mbedtls_platform_zeroize(kbuf, sizeof kbuf);
    mbedtls_x509write_csr_free(&req);
    mbedtls_pk_free(&key);
    ts_pki_rng_free(&r);
    return rc;
}

void ts_pki_free_secret(char *s)
{
    if (!s)
        return;
    mbedtls_platform_zeroize(s, strlen(s));
    free(s);
}

static int64_t x509_unix(const mbedtls_x509_time *t)
{
    struct tm tm = {.tm_year = t->year - 1900,
                    .tm_mon = t->mon - 1,
                    .tm_mday = t->day,
                    .tm_hour = t->hour,
                    .tm_min = t->min,
                    .tm_sec = t->sec};
    return (int64_t)timegm(&tm);
}

static void copy_value(char *dst, size_t dstsz, const mbedtls_x509_buf *v)
{
    size_t n = v->len < dstsz - 1 ? v->len : dstsz - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (v->p[i] < 0x20 || v->p[i] == 0x7f) ? '?' : (char)v->p[i];
    dst[n] = '\0';
}

/* The first certificate of crt as a ts_pki_cert_info. */
static enum ts_err info_of(const mbedtls_x509_crt *crt, int64_t now, struct ts_pki_cert_info *out)
{
    struct ts_pki_cert_info i = {0};
    if (mbedtls_x509_dn_gets(i.subject, sizeof i.subject, &crt->subject) < 0)
        i.subject[0] = '\0';
    for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
        if (!n->oid.p)
            continue;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
            copy_value(i.cn, sizeof i.cn, &n->val);
        else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORG_UNIT, &n->oid) == 0)
            copy_value(i.ou, sizeof i.ou, &n->val);
        else if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORGANIZATION, &n->oid) == 0)
            copy_value(i.o, sizeof i.o, &n->val);
    }
    const unsigned char *sp = crt->serial.p;
    size_t sl = crt->serial.len;
    while (sl > 1 && sp[0] == 0) {
        sp++;
        sl--;
    }
    if (sl * 2 >= sizeof i.serial)
        sl = sizeof i.serial / 2 - 1;
    ts_hex_encode(sp, sl, i.serial);
    i.not_before = x509_unix(&crt->valid_from);
    i.not_after = x509_unix(&crt->valid_to);
    int64_t left = i.not_after - now;
    i.days_left = (int)(left >= 0 ? left / PKI_DAY : -((-left + PKI_DAY - 1) / PKI_DAY));
    if (sha256(crt->pk_raw.p, crt->pk_raw.len, i.spki_sha256))
        return TS_ERR_TLS;
    *out = i;
    return TS_OK;
}

enum ts_err ts_pki_cert_info_pem(const char *pem, size_t len, struct ts_pki_cert_info *out,
                                 char *err, size_t errsz)
{
    mbedtls_x509_crt crt;
    if (ts_compat_crypto_init() != 0) {
        ts_errf(err, errsz, "cannot initialise the crypto library");
        return TS_ERR_TLS;
    }
    mbedtls_x509_crt_init(&crt);
    int rc = TS_ERR_INVAL;
    char *z = malloc(len + 1);
    if (!z)
        return TS_ERR_NOMEM;
    memcpy(z, pem, len);
    z[len] = '\0';
    int ret = mbedtls_x509_crt_parse(&crt, (const unsigned char *)z, len + 1);
    free(z);
    if (ret)
        ts_pki_mberr(err, errsz, "not a PEM certificate", ret);
    else
        rc = info_of(&crt, (int64_t)time(NULL), out);
    mbedtls_x509_crt_free(&crt);
    return rc;
}

enum ts_err ts_pki_cert_info_file(const char *path, struct ts_pki_cert_info *out, char *err,
                                  size_t errsz)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ts_read_file(path, 1 << 20, &text, &len);
    if (rc) {
        ts_errf(err, errsz, "cannot read %s: %s", path, ts_strerror(rc));
        return rc;
    }
    char e[200] = "";
    rc = ts_pki_cert_info_pem(text, len, out, e, sizeof e);
    if (rc)
        ts_errf(err, errsz, "%s: %s", path, e);
    free(text);
    return rc;
}

enum ts_err ts_pki_pin_text(const unsigned char sha[32], char b64[48], char hex[65])
{
    if (ts_base64_encode(sha, 32, b64, 48) == 0)
        return TS_ERR_INVAL;
    ts_hex_encode(sha, 32, hex);
    return TS_OK;
}
