/*
 * Certificates with mbedTLS: a local CA, server and terminal certificates,
 * EC P-256 keys. Used by `tillside-hub pki ...` for demos and tests today and
 * by enrolment (CSR signing) later.
 */
#ifndef TS_PKI_H
#define TS_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates dir/ca.pem and dir/ca.key (0600): a self-signed EC P-256 CA. */
int ts_pki_ca_init(const char *dir, const char *cn, int days, char *err, size_t errsz);

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
int ts_pki_issue(const struct ts_pki_issue *p, char *err, size_t errsz);

/* `tillside-hub pki init|issue ...`: returns a process exit code. */
int ts_pki_main(int argc, char **argv);

#endif
