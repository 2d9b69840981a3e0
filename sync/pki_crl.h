/*
 * Certificate revocation lists (RFC 5280 §5) signed by the hub's enrolment
 * CA, for a TLS-terminating proxy in front of the hub (nginx's ssl_crl).
 * mbedTLS 2.28 and 3.6 parse CRLs but cannot write them, so the DER is
 * built here and signed with mbedtls_pk_sign.
 */
#ifndef TS_PKI_CRL_H
#define TS_PKI_CRL_H

#include <stddef.h>
#include <stdint.h>

struct ts_pki_crl_entry {
    const char *serial_hex; /* as struct ts_peer_id has it: hex, any case */
    int64_t revoked_at;     /* Unix seconds */
};

/*
 * A v2 CRL over entries[0..n) issued by the CA (its certificate and key in
 * PEM files): thisUpdate this_update, nextUpdate next_update (Unix
 * seconds), cRLNumber crl_number. On success *pem is malloc'd PEM text
 * ("-----BEGIN X509 CRL-----"). TS_ERR_INVAL for a serial that is not hex,
 * TS_ERR_CONFIG for a CA that does not load (err says why).
 */
enum ts_err ts_pki_crl_make(const char *ca_cert_file, const char *ca_key_file,
                            const struct ts_pki_crl_entry *entries, size_t n, int64_t this_update,
                            int64_t next_update, uint64_t crl_number, char **pem, char *err,
                            size_t errsz);

#endif
