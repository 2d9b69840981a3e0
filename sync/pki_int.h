/*
 * What pki.c and pki_csr.c share. Private to sync/pki*.c.
 */
#ifndef TS_PKI_INT_H
#define TS_PKI_INT_H

#include "pki.h"
#include "tls_compat.h"
#include "../common/ts.h"

#include <mbedtls/entropy.h>

#define PKI_DAY 86400

struct pki_rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

struct cert_spec {
    const char *subject, *issuer;
    mbedtls_pk_context *subject_key, *issuer_key;
    int64_t not_before, not_after;
    bool ca, server;
    const unsigned char *san;
    size_t san_len;
    const char *out;
};

void ts_pki_mberr(char *err, size_t errsz, const char *what, int ret);
enum ts_err ts_pki_rng_init(struct pki_rng *r, char *err, size_t errsz);
void ts_pki_rng_free(struct pki_rng *r);
/* "CN=..,OU=..,O=.." from the parts given (NULL/"" left out); refuses the
 * characters mbedTLS's subject parser would read differently. */
enum ts_err ts_pki_build_subject(const char *cn, const char *ou, const char *o, char *out,
                                 size_t outsz, char *err, size_t errsz);
/* A parsed name back into that syntax (the CA's subject as issuer). */
enum ts_err ts_pki_name_to_string(const mbedtls_x509_name *n, char *out, size_t outsz, char *err,
                                  size_t errsz);
/* Signs one certificate into pem (PEM text, NUL-terminated); serial_hex
 * gets its serial number as lowercase hex. */
enum ts_err ts_pki_sign_cert(const struct cert_spec *s, struct pki_rng *r, unsigned char *pem,
                             size_t pemsz, char serial_hex[33], char *err, size_t errsz);

#endif
