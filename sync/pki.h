/*
 * Certificates with mbedTLS: a local CA, server and terminal certificates,
 * EC P-256 keys. Used by `tillside-hub pki ...` for demos and tests, and by
 * enrolment: the agent makes its key and signing request here, the hub
 * signs requests with its enrolment CA here.
 */
#ifndef TS_PKI_H
#define TS_PKI_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates dir/ca.pem and dir/ca.key (0600): a self-signed EC P-256 CA. */
enum ts_err ts_pki_ca_init(const char *dir, const char *cn, int days, char *err, size_t errsz);

struct ts_pki_issue {
    const char *ca_cert_file, *ca_key_file; /* issuer */
    const char *cn, *ou, *o;                /* subject: terminal/host, store, tenant */
    const char *dns;                        /* comma-separated DNS SANs, or NULL */
    bool server;                            /* serverAuth vs clientAuth EKU */
    int64_t not_before, not_after;          /* Unix seconds */
    const char *out_cert_file;              /* PEM certificate */
    const char *out_key_file;               /* PEM private key, 0600 */
};

/* Generates a key and a certificate signed by the CA. */
enum ts_err ts_pki_issue(const struct ts_pki_issue *p, char *err, size_t errsz);

/* ---- enrolment ----------------------------------------------------------- */

/* The hub's enrolment CA, loaded once. Thread-safe. */
struct ts_pki_signer;

enum ts_err ts_pki_signer_new(const char *ca_cert_file, const char *ca_key_file,
                              struct ts_pki_signer **out, char *err, size_t errsz);
void ts_pki_signer_free(struct ts_pki_signer *s);
/* The CA certificate file's text, valid until ts_pki_signer_free. */
const char *ts_pki_signer_ca_pem(const struct ts_pki_signer *s);

/*
 * Signs a PEM certificate signing request (PKCS#10) as a terminal
 * (clientAuth) certificate for CN=cn, OU=ou, O=o: the subject the request
 * asks for is ignored. The request must carry an EC P-256 key and verify
 * under it. TS_ERR_INVAL (err says why) for a request to refuse. On success
 * *cert_pem is malloc'd PEM and serial its serial number in hex.
 */
enum ts_err ts_pki_signer_sign(struct ts_pki_signer *s, const char *csr_pem, size_t csr_len,
                               const char *cn, const char *ou, const char *o, int64_t not_before,
                               int64_t not_after, char **cert_pem, char serial[48], char *err,
                               size_t errsz);

/*
 * A fresh EC P-256 key and a signing request for it (subject CN=cn). Both
 * PEM, malloc'd; free the key with ts_pki_free_secret. spki_sha256 gets the
 * hash of the public key, to match the certificate that comes back.
 */
enum ts_err ts_pki_new_key_csr(const char *cn, char **key_pem, char **csr_pem,
                               unsigned char spki_sha256[32], char *err, size_t errsz);
/* Overwrites a secret string before freeing it. NULL ok. */
void ts_pki_free_secret(char *s);

struct ts_pki_cert_info {
    char subject[256], cn[64], ou[64], o[64];
    char serial[48];               /* hex, as struct ts_peer_id has it */
    int64_t not_before, not_after; /* Unix seconds */
    int days_left;                 /* whole days from now; negative when expired */
    unsigned char spki_sha256[32]; /* the public key pin of this certificate */
};

/* The first certificate in a PEM text or file. */
enum ts_err ts_pki_cert_info_pem(const char *pem, size_t len, struct ts_pki_cert_info *out,
                                 char *err, size_t errsz);
enum ts_err ts_pki_cert_info_file(const char *path, struct ts_pki_cert_info *out, char *err,
                                  size_t errsz);
/* A pin as an operator writes it: base64 (44 chars) and hex (64). */
enum ts_err ts_pki_pin_text(const unsigned char sha[32], char b64[48], char hex[65]);

/* `tillside-hub pki init|issue|pin ...`: returns a process exit code. */
int ts_pki_main(int argc, char **argv);

#endif
