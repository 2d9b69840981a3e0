/*
 * A small certificate authority with mbedTLS's x509write: EC P-256 keys, a
 * self-signed CA, server and terminal certificates. Enough for the demo, the
 * tests and a store chain's own enrolment CA; not a general PKI toolkit.
 */
#include "pki_int.h"
#include "../common/ts.h"

#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_csr.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ts_pki_mberr(char *err, size_t errsz, const char *what, int ret)
{
    char mb[160];
    ts_compat_strerror(ret, mb, sizeof mb);
    ts_errf(err, errsz, "%s: %s", what, mb);
}

enum ts_err ts_pki_rng_init(struct pki_rng *r, char *err, size_t errsz)
{
    static const unsigned char pers[] = "tillside-pki";
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    if (ts_compat_crypto_init() != 0) {
        ts_errf(err, errsz, "cannot initialise the crypto library");
        return TS_ERR_TLS;
    }
    int ret =
        mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy, pers, sizeof pers - 1);
    if (ret) {
        ts_pki_mberr(err, errsz, "cannot seed the random generator", ret);
        return TS_ERR_TLS;
    }
    return TS_OK;
}

void ts_pki_rng_free(struct pki_rng *r)
{
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
}

/* Subject parts go through mbedTLS's "CN=..,O=.." parser, whose escaping
 * differs between versions; names with its special characters are refused
 * instead of escaped. Store and terminal names never need them. */
static enum ts_err check_part(const char *what, const char *v, char *err, size_t errsz)
{
    if (strlen(v) > 64) {
        ts_errf(err, errsz, "%s is longer than 64 characters", what);
        return TS_ERR_INVAL;
    }
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || strchr(",+=\\\"<>;#", *p)) {
            ts_errf(err, errsz, "%s may not contain '%c' or control characters", what,
                    *p >= 0x20 ? *p : '?');
            return TS_ERR_INVAL;
        }
    }
    return TS_OK;
}

enum ts_err ts_pki_build_subject(const char *cn, const char *ou, const char *o, char *out,
                                 size_t outsz, char *err, size_t errsz)
{
    const char *keys[] = {"CN", "OU", "O"}, *vals[] = {cn, ou, o};
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < 3; i++) {
        if (!vals[i] || !vals[i][0])
            continue;
        int rc = check_part(keys[i], vals[i], err, errsz);
        if (rc)
            return rc;
        used += (size_t)snprintf(out + used, outsz - used, "%s%s=%s", used ? "," : "", keys[i],
                                 vals[i]);
    }
    if (used == 0) {
        ts_errf(err, errsz, "a certificate needs at least a CN");
        return TS_ERR_INVAL;
    }
    return TS_OK;
}

/* The issuer of a certificate is the CA's subject, spelled the way
 * mbedtls_x509write_crt_set_issuer_name parses it. */
enum ts_err ts_pki_name_to_string(const mbedtls_x509_name *n, char *out, size_t outsz, char *err,
                                  size_t errsz)
{
    size_t used = 0;
    out[0] = '\0';
    for (; n; n = n->next) {
        if (!n->oid.p)
            continue;
        const char *sn = NULL;
        char val[128];
        if (mbedtls_oid_get_attr_short_name(&n->oid, &sn) != 0 || n->val.len >= sizeof val) {
            ts_errf(err, errsz, "the CA's subject has an attribute this tool cannot copy");
            return TS_ERR_INVAL;
        }
        memcpy(val, n->val.p, n->val.len);
        val[n->val.len] = '\0';
        if (check_part("CA subject", val, err, errsz))
            return TS_ERR_INVAL;
        int k = snprintf(out + used, outsz - used, "%s%s=%s", used ? "," : "", sn, val);
        if (k < 0 || (size_t)k >= outsz - used) {
            ts_errf(err, errsz, "the CA's subject is too long");
            return TS_ERR_INVAL;
        }
        used += (size_t)k;
    }
    return TS_OK;
}

static void x509_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(out, 32, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* DER length octets; returns how many were written. */
static size_t der_len(unsigned char *p, size_t n)
{
    if (n < 0x80) {
        p[0] = (unsigned char)n;
        return 1;
    }
    if (n < 0x100) {
        p[0] = 0x81;
        p[1] = (unsigned char)n;
        return 2;
    }
    p[0] = 0x82;
    p[1] = (unsigned char)(n >> 8);
    p[2] = (unsigned char)n;
    return 3;
}

/*
 * subjectAltName (RFC 5280 §4.2.1.6) from a comma-separated list: IP
 * literals become iPAddress, everything else dNSName. Written by hand
 * because mbedTLS 2.28 has no SAN writer. out must hold 1024 bytes.
 */
static enum ts_err der_san(const char *list, unsigned char *out, size_t *outlen, char *err,
                           size_t errsz)
{
    unsigned char body[1000];
    size_t bl = 0;
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        char name[256];
        if (n >= sizeof name) {
            ts_errf(err, errsz, "DNS name too long");
            return TS_ERR_INVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        unsigned char ip[16];
        size_t iplen = 0;
        if (inet_pton(AF_INET, name, ip) == 1)
            iplen = 4;
        else if (inet_pton(AF_INET6, name, ip) == 1)
            iplen = 16;
        const unsigned char *val = iplen ? ip : (const unsigned char *)name;
        size_t vl = iplen ? iplen : n;
        if (!iplen)
            for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                      (name[i] >= '0' && name[i] <= '9') || strchr(".-*_", name[i]))) {
                    ts_errf(err, errsz, "invalid DNS name \"%s\"", name);
                    return TS_ERR_INVAL;
                }
        if (bl + vl + 4 > sizeof body) {
            ts_errf(err, errsz, "too many DNS names");
            return TS_ERR_INVAL;
        }
        body[bl++] = iplen ? 0x87 : 0x82; /* [7] iPAddress, [2] dNSName */
        bl += der_len(body + bl, vl);
        memcpy(body + bl, val, vl);
        bl += vl;
    }
    if (bl == 0) {
        *outlen = 0;
        return TS_OK;
    }
    out[0] = 0x30;
    size_t h = 1 + der_len(out + 1, bl);
    memcpy(out + h, body, bl);
    *outlen = h + bl;
    return TS_OK;
}

static enum ts_err write_key(mbedtls_pk_context *key, const char *path, char *err, size_t errsz)
{
    unsigned char pem[2048];
    int ret = mbedtls_pk_write_key_pem(key, pem, sizeof pem);
    if (ret) {
        ts_pki_mberr(err, errsz, "cannot encode the key", ret);
        return TS_ERR_TLS;
    }
    int rc = ts_write_file_atomic(path, pem, strlen((char *)pem), 0600);
    mbedtls_platform_zeroize(pem, sizeof pem);
    if (rc)
        ts_errf(err, errsz, "cannot write %s: %s", path, ts_strerror(rc));
    return rc;
}

/* Signs one certificate into pem (PEM text, NUL-terminated); serial_hex
 * gets its serial number as lowercase hex. */
enum ts_err ts_pki_sign_cert(const struct cert_spec *s, struct pki_rng *r, unsigned char *pem,
                             size_t pemsz, char serial_hex[33], char *err, size_t errsz)
{
    mbedtls_x509write_cert crt;
    unsigned char serial[16];
    char nb[32], na[32];
    int ret, rc = TS_ERR_TLS;
    mbedtls_x509write_crt_init(&crt);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, s->subject_key);
    mbedtls_x509write_crt_set_issuer_key(&crt, s->issuer_key);
    if ((rc = ts_random(serial, sizeof serial))) {
        ts_errf(err, errsz, "no randomness for the serial number");
        goto out;
    }
    rc = TS_ERR_TLS;
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40); /* positive, full length */
    ts_hex_encode(serial, sizeof serial, serial_hex);
    x509_time(s->not_before, nb);
    x509_time(s->not_after, na);
    if ((ret = ts_compat_crt_set_serial(&crt, serial, sizeof serial)) ||
        (ret = mbedtls_x509write_crt_set_subject_name(&crt, s->subject)) ||
        (ret = mbedtls_x509write_crt_set_issuer_name(&crt, s->issuer)) ||
        (ret = mbedtls_x509write_crt_set_validity(&crt, nb, na)) ||
        (ret = mbedtls_x509write_crt_set_basic_constraints(&crt, s->ca, s->ca ? 0 : -1)) ||
        (ret = mbedtls_x509write_crt_set_subject_key_identifier(&crt)) ||
        (ret = mbedtls_x509write_crt_set_authority_key_identifier(&crt))) {
        ts_pki_mberr(err, errsz, "cannot build the certificate", ret);
        goto out;
    }
    if (s->ca) {
        ret = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                            MBEDTLS_X509_KU_CRL_SIGN);
    } else {
        /* extendedKeyUsage: SEQUENCE { id-kp-serverAuth | id-kp-clientAuth } */
        unsigned char eku[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                               0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
        if (!s->server)
            eku[sizeof eku - 1] = 0x02;
        ret = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
        if (ret == 0)
            ret = mbedtls_x509write_crt_set_extension(
                &crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, eku, sizeof eku);
        if (ret == 0 && s->san_len)
            ret = mbedtls_x509write_crt_set_extension(
                &crt, MBEDTLS_OID_SUBJECT_ALT_NAME, MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME),
                0, s->san, s->san_len);
    }
    if (ret) {
        ts_pki_mberr(err, errsz, "cannot set certificate extensions", ret);
        goto out;
    }
    if ((ret = mbedtls_x509write_crt_pem(&crt, pem, pemsz, mbedtls_ctr_drbg_random, &r->drbg))) {
        ts_pki_mberr(err, errsz, "cannot sign the certificate", ret);
        goto out;
    }
    rc = TS_OK;
out:
    mbedtls_x509write_crt_free(&crt);
    return rc;
}

/* Signs and writes one certificate (PEM, 0644). */
static enum ts_err write_cert(const struct cert_spec *s, struct pki_rng *r, char *err, size_t errsz)
{
    unsigned char pem[4096];
    char serial[33];
    int rc = ts_pki_sign_cert(s, r, pem, sizeof pem, serial, err, errsz);
    if (rc == TS_OK && (rc = ts_write_file_atomic(s->out, pem, strlen((char *)pem), 0644)))
        ts_errf(err, errsz, "cannot write %s: %s", s->out, ts_strerror(rc));
    return rc;
}

enum ts_err ts_pki_ca_init(const char *dir, const char *cn, int days, char *err, size_t errsz)
{
    char cert_path[4096], key_path[4096], subject[256];
    struct pki_rng r;
    mbedtls_pk_context key;
    int rc, ret;
    mbedtls_pk_init(&key);
    if ((rc = ts_pki_rng_init(&r, err, errsz)))
        goto out;
    if (!dir || !dir[0]) {
        ts_errf(err, errsz, "no CA directory given");
        rc = TS_ERR_INVAL;
        goto out;
    }
    if ((rc = ts_pki_build_subject(cn && cn[0] ? cn : "tillside CA", NULL, NULL, subject,
                                   sizeof subject, err, errsz)))
        goto out;
    snprintf(cert_path, sizeof cert_path, "%s/ca.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/ca.key", dir);
    if (access(key_path, F_OK) == 0) {
        /* a CA key is what every issued certificate hangs on: never clobber one */
        ts_errf(err, errsz, "%s already exists; remove it to create a new CA", key_path);
        rc = TS_ERR_INVAL;
        goto out;
    }
    if ((rc = ts_mkdir_p(dir, 0700))) {
        ts_errf(err, errsz, "cannot create %s: %s", dir, ts_strerror(rc));
        goto out;
    }
    if ((ret = ts_compat_ec_p256_genkey(&key, mbedtls_ctr_drbg_random, &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot generate the CA key", ret);
        rc = TS_ERR_TLS;
        goto out;
    }
    int64_t now = (int64_t)time(NULL);
    struct cert_spec s = {.subject = subject,
                          .issuer = subject,
                          .subject_key = &key,
                          .issuer_key = &key,
                          .not_before = now - 3600,
                          .not_after = now + (int64_t)(days > 0 ? days : 3650) * PKI_DAY,
                          .ca = true,
                          .out = cert_path};
    if ((rc = write_key(&key, key_path, err, errsz)) || (rc = write_cert(&s, &r, err, errsz)))
        goto out;
out:
    mbedtls_pk_free(&key);
    ts_pki_rng_free(&r);
    return rc;
}

enum ts_err ts_pki_issue(const struct ts_pki_issue *p, char *err, size_t errsz)
{
    char subject[256], issuer[512];
    unsigned char san[1024];
    size_t san_len = 0;
    struct pki_rng r;
    mbedtls_x509_crt ca;
    mbedtls_pk_context ca_key, key;
    int rc, ret;
    mbedtls_x509_crt_init(&ca);
    mbedtls_pk_init(&ca_key);
    mbedtls_pk_init(&key);
    if ((rc = ts_pki_rng_init(&r, err, errsz)))
        goto out;
    if (!p || !p->ca_cert_file || !p->ca_key_file || !p->out_cert_file || !p->out_key_file ||
        !p->cn || !p->cn[0] || p->not_after <= p->not_before) {
        ts_errf(err, errsz, "issue needs a CA, a CN, output files and a validity period");
        rc = TS_ERR_INVAL;
        goto out;
    }
    if ((rc = ts_pki_build_subject(p->cn, p->ou, p->o, subject, sizeof subject, err, errsz)))
        goto out;
    /* Server certificates always name their host in the SAN: modern clients
     * no longer fall back to the CN. */
    const char *dns = p->dns && p->dns[0] ? p->dns : (p->server ? p->cn : NULL);
    if (dns && (rc = der_san(dns, san, &san_len, err, errsz)))
        goto out;
    if ((ret = mbedtls_x509_crt_parse_file(&ca, p->ca_cert_file))) {
        ts_pki_mberr(err, errsz, "cannot load the CA certificate", ret);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    if ((ret = ts_compat_pk_parse_keyfile(&ca_key, p->ca_key_file, mbedtls_ctr_drbg_random,
                                          &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot load the CA key", ret);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    if (ts_compat_pk_check_pair(&ca.pk, &ca_key, mbedtls_ctr_drbg_random, &r.drbg) != 0) {
        ts_errf(err, errsz, "%s does not belong to %s", p->ca_key_file, p->ca_cert_file);
        rc = TS_ERR_CONFIG;
        goto out;
    }
    if ((rc = ts_pki_name_to_string(&ca.subject, issuer, sizeof issuer, err, errsz)))
        goto out;
    if ((ret = ts_compat_ec_p256_genkey(&key, mbedtls_ctr_drbg_random, &r.drbg))) {
        ts_pki_mberr(err, errsz, "cannot generate a key", ret);
        rc = TS_ERR_TLS;
        goto out;
    }
    struct cert_spec s = {.subject = subject,
                          .issuer = issuer,
                          .subject_key = &key,
                          .issuer_key = &ca_key,
                          .not_before = p->not_before,
                          .not_after = p->not_after,
                          .server = p->server,
                          .san = san,
                          .san_len = san_len,
                          .out = p->out_cert_file};
    if ((rc = write_key(&key, p->out_key_file, err, errsz)) ||
        (rc = write_cert(&s, &r, err, errsz)))
        goto out;
out:
    mbedtls_pk_free(&key);
    mbedtls_pk_free(&ca_key);
    mbedtls_x509_crt_free(&ca);
    ts_pki_rng_free(&r);
    return rc;
}
