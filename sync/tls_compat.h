/*
 * The one place that knows mbedTLS 2.28 (Debian 12) from 3.6 LTS. tls.c and
 * pki.c call these wrappers and never test MBEDTLS_VERSION_* themselves.
 * Private to sync/: not for other components.
 */
#ifndef TS_TLS_COMPAT_H
#define TS_TLS_COMPAT_H

#include <mbedtls/version.h>

#if MBEDTLS_VERSION_MAJOR >= 3
#include <mbedtls/build_info.h>
#else
#include <mbedtls/config.h>
#endif

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <mbedtls/x509_csr.h>
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#endif

#include <stdio.h>
#include <string.h>

/* 3.x hides struct fields behind MBEDTLS_PRIVATE(); 2.28 has no such macro. */
#ifndef MBEDTLS_PRIVATE
#define MBEDTLS_PRIVATE(member) member
#endif

typedef int (*ts_rng_fn)(void *, unsigned char *, size_t);

/* 3.x runs its crypto through PSA, which must be initialised before any
 * handshake or key operation (TLS 1.3 needs it even without
 * MBEDTLS_USE_PSA_CRYPTO). Idempotent. */
static inline int ts_compat_crypto_init(void)
{
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_PSA_CRYPTO_C)
    return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
#else
    return 0;
#endif
}

/* TLS 1.2 is the floor: Debian's 2.28 still compiles in 1.0 and 1.1. The
 * ceiling is the library's best: TLS 1.3 on 3.6 builds that have it (Debian
 * 13's do), so agent and hub speak 1.3 with each other there; 2.28 stays at
 * 1.2. */
static inline void ts_compat_conf_versions(mbedtls_ssl_config *conf)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_3);
#else
    mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
#endif
#else
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

/*
 * The cipher suites both ends offer and accept: AEAD with forward secrecy
 * only. mbedTLS's default list also has CBC with SHA-1, CCM_8 (a truncated
 * 8-byte tag) and Camellia suites, and static-RSA/PSK key exchanges. TLS 1.2:
 * ECDHE (ECDSA or RSA certificates) with AES-GCM or ChaCha20-Poly1305 (the
 * latter where the library has it; mbedTLS skips ids it does not know).
 * TLS 1.3 (3.6): its AES-GCM and ChaCha20-Poly1305 suites, not CCM/CCM_8,
 * and only the key exchange modes with an (EC)DHE share, so a resumed
 * session keeps forward secrecy too (no pure-PSK mode). The list is static
 * (mbedTLS keeps the pointer). Documented in docs/OPERATIONS.md "Security".
 */
static inline void ts_compat_conf_suites(mbedtls_ssl_config *conf)
{
    static const int suites[] = {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
        MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
        MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
#endif
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        0,
    };
    mbedtls_ssl_conf_ciphersuites(conf, suites);
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
    mbedtls_ssl_conf_tls13_key_exchange_modes(conf,
                                              MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ALL);
#endif
}

/* The best version this build negotiates with a peer of the same build. */
static inline const char *ts_compat_best_version(void)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_PSA_CRYPTO_C) &&                       \
    defined(MBEDTLS_SSL_PROTO_TLS1_3)
    return "TLS 1.3";
#else
    return "TLS 1.2";
#endif
}

/* "mbedTLS 3.6.6": the library actually loaded, not the headers. */
static inline void ts_compat_library(char *buf, size_t n)
{
#if defined(MBEDTLS_VERSION_C)
    char v[18] = "";
    mbedtls_version_get_string(v);
    snprintf(buf, n, "mbedTLS %s", v);
#else
    snprintf(buf, n, "mbedTLS %s", MBEDTLS_VERSION_STRING);
#endif
}

/* The negotiated version in our words ("TLS 1.3"), NULL before the
 * handshake. */
static inline const char *ts_compat_conn_version(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    switch (mbedtls_ssl_get_version_number(ssl)) {
    case MBEDTLS_SSL_VERSION_TLS1_3:
        return "TLS 1.3";
    case MBEDTLS_SSL_VERSION_TLS1_2:
        return "TLS 1.2";
    default:
        return NULL;
    }
#else
    return strcmp(mbedtls_ssl_get_version(ssl), "TLSv1.2") == 0 ? "TLS 1.2" : NULL;
#endif
}

/* Client: TLS 1.3 session tickets arrive after the handshake, and 3.6.1+
 * drops them unless told to hand them over (mbedtls_ssl_read then returns
 * MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET, see ts_compat_read_ticket). */
static inline void ts_compat_conf_client_tickets(mbedtls_ssl_config *conf)
{
#if defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED) &&                              \
    defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_CLI_C)
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#else
    (void)conf;
#endif
}

/*
 * The server's handshake. A TLS 1.3 server judges the client's certificate
 * after it sent its own Finished; when mbedTLS 3.6 refuses it there, the
 * alert goes out under the handshake keys while the client, whose side of
 * the handshake is over, reads with the application keys: it sees a bad
 * record MAC instead of certificate_revoked (Mbed-TLS/mbedtls#10877, open).
 * So on TLS 1.3 the server verifies with VERIFY_OPTIONAL (set once the
 * ClientHello chose 1.3; the CertificateRequest is sent all the same) and
 * tls.c refuses a failed verification itself right after the handshake,
 * under keys the client can read (verify_client: a listener that asks for
 * client certificates). *optional says it was set. TLS 1.2 (and
 * 2.28) keep VERIFY_REQUIRED: the refusal is part of their handshake.
 */
static inline int ts_compat_server_handshake(mbedtls_ssl_context *ssl, int verify_client,
                                             int *optional)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3) &&                   \
    defined(MBEDTLS_SSL_SERVER_NAME_INDICATION)
    /* as mbedtls_ssl_handshake: until HANDSHAKE_OVER itself, the TLS 1.3
     * NewSessionTicket states after it included */
    while (ssl->MBEDTLS_PRIVATE(state) != MBEDTLS_SSL_HANDSHAKE_OVER) {
        if (verify_client && !*optional && ssl->MBEDTLS_PRIVATE(state) > MBEDTLS_SSL_CLIENT_HELLO &&
            mbedtls_ssl_get_version_number(ssl) == MBEDTLS_SSL_VERSION_TLS1_3) {
            mbedtls_ssl_set_hs_authmode(ssl, MBEDTLS_SSL_VERIFY_OPTIONAL);
            *optional = 1;
        }
        int ret = mbedtls_ssl_handshake_step(ssl);
        if (ret)
            return ret;
    }
    return 0;
#else
    (void)verify_client;
    (void)optional;
    return mbedtls_ssl_handshake(ssl);
#endif
}

/* A TLS 1.3 peer's alert mbedTLS could not read: 3.6 sends an alert raised
 * around a key change under the keys of the side it left (the client's
 * refusal of our certificate reaches a server as a bad record MAC, see
 * above). Only on TLS 1.3, where no other record fails that way in a
 * handshake between our own two ends. */
static inline int ts_compat_alert_unreadable(const mbedtls_ssl_context *ssl, int ret)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03020000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
    return ret == MBEDTLS_ERR_SSL_INVALID_MAC &&
           mbedtls_ssl_get_version_number(ssl) == MBEDTLS_SSL_VERSION_TLS1_3;
#else
    (void)ssl;
    (void)ret;
    return 0;
#endif
}

/* 3.x wants an RNG for key blinding when it parses/checks private keys. */
static inline int ts_compat_pk_parse_keyfile(mbedtls_pk_context *pk, const char *path,
                                             ts_rng_fn f_rng, void *p_rng)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_pk_parse_keyfile(pk, path, NULL, f_rng, p_rng);
#else
    (void)f_rng;
    (void)p_rng;
    return mbedtls_pk_parse_keyfile(pk, path, NULL);
#endif
}

static inline int ts_compat_pk_check_pair(const mbedtls_pk_context *pub,
                                          const mbedtls_pk_context *prv, ts_rng_fn f_rng,
                                          void *p_rng)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_pk_check_pair(pub, prv, f_rng, p_rng);
#else
    (void)f_rng;
    (void)p_rng;
    return mbedtls_pk_check_pair(pub, prv);
#endif
}

/* 3.x takes the signature buffer's size (pki_crl.c signs a CRL itself:
 * mbedTLS has no CRL writer). */
static inline int ts_compat_pk_sign(mbedtls_pk_context *pk, mbedtls_md_type_t md,
                                    const unsigned char *hash, size_t hash_len, unsigned char *sig,
                                    size_t sig_size, size_t *sig_len, ts_rng_fn f_rng, void *p_rng)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_pk_sign(pk, md, hash, hash_len, sig, sig_size, sig_len, f_rng, p_rng);
#else
    (void)sig_size; /* MBEDTLS_PK_SIGNATURE_MAX_SIZE is what callers pass */
    return mbedtls_pk_sign(pk, md, hash, hash_len, sig, sig_len, f_rng, p_rng);
#endif
}

/* Serial numbers: an MPI in 2.28, raw big-endian bytes from 3.4 on (the MPI
 * setter is deprecated there and gone with MBEDTLS_DEPRECATED_REMOVED). */
static inline int ts_compat_crt_set_serial(mbedtls_x509write_cert *crt, unsigned char *serial,
                                           size_t len)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03040000
    return mbedtls_x509write_crt_set_serial_raw(crt, serial, len);
#else
    mbedtls_mpi mpi;
    mbedtls_mpi_init(&mpi);
    int ret = mbedtls_mpi_read_binary(&mpi, serial, len);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_serial(crt, &mpi);
    mbedtls_mpi_free(&mpi);
    return ret;
#endif
}

/* A fresh EC P-256 key in pk. With 3.6's PSA-held EC keys
 * (MBEDTLS_PK_USE_PSA_EC_DATA) the ecp_keypair is not reachable, so the key
 * is made by PSA and copied in. */
static inline int ts_compat_ec_p256_genkey(mbedtls_pk_context *pk, ts_rng_fn f_rng, void *p_rng)
{
#if defined(MBEDTLS_PK_USE_PSA_EC_DATA)
    (void)f_rng;
    (void)p_rng;
    psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
    mbedtls_svc_key_id_t id = MBEDTLS_SVC_KEY_ID_INIT;
    psa_set_key_type(&attr, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
    psa_set_key_bits(&attr, 256);
    psa_set_key_usage_flags(&attr, PSA_KEY_USAGE_EXPORT | PSA_KEY_USAGE_SIGN_HASH);
    psa_set_key_algorithm(&attr, PSA_ALG_ECDSA(PSA_ALG_ANY_HASH));
    if (psa_generate_key(&attr, &id) != PSA_SUCCESS)
        return MBEDTLS_ERR_PK_BAD_INPUT_DATA;
    int ret = mbedtls_pk_copy_from_psa(id, pk);
    psa_destroy_key(id);
    return ret;
#else
    int ret = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0)
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk), f_rng, p_rng);
    return ret;
#endif
}

/* A read result that only says a TLS 1.3 session ticket arrived (client):
 * take it (mbedtls_ssl_get_session) and read again. */
static inline int ts_compat_read_ticket(int ret)
{
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
    return ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET;
#else
    (void)ret;
    return 0;
#endif
}

/* Read results that only mean "call again": early data we never accept. */
static inline int ts_compat_read_retry(int ret)
{
#if defined(MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA)
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA)
        return 1;
#endif
    (void)ret;
    return 0;
}

/* The description byte of the last alert the peer sent (RFC 8446 §6,
 * "certificate_revoked" = 44 ...), or -1. mbedTLS has no getter for it; the
 * record stays in in_msg after MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE, in both
 * versions (private in 3.x). Only read right after that error. */
static inline int ts_compat_received_alert(const mbedtls_ssl_context *ssl)
{
    const unsigned char *m = ssl->MBEDTLS_PRIVATE(in_msg);
    return m ? m[1] : -1;
}

/* mbedtls_x509_csr_parse does not check the request's self-signature (the
 * proof that the requester holds the key); this does. The signature fields
 * are private in 3.x. 0 when it verifies. */
static inline int ts_compat_csr_verify_signature(mbedtls_x509_csr *csr)
{
    unsigned char hash[MBEDTLS_MD_MAX_SIZE];
    mbedtls_md_type_t md = csr->MBEDTLS_PRIVATE(sig_md);
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(md);
    if (!info)
        return MBEDTLS_ERR_X509_UNKNOWN_SIG_ALG;
    int ret = mbedtls_md(info, csr->cri.p, csr->cri.len, hash);
    if (ret == 0)
        ret = mbedtls_pk_verify_ext(csr->MBEDTLS_PRIVATE(sig_pk), csr->MBEDTLS_PRIVATE(sig_opts),
                                    &csr->pk, md, hash, mbedtls_md_get_size(info),
                                    csr->MBEDTLS_PRIVATE(sig).p, csr->MBEDTLS_PRIVATE(sig).len);
    return ret;
}

/* The client certificate a (server-side) session was authenticated with,
 * as the full handshake left it (MBEDTLS_SSL_KEEP_PEER_CERTIFICATE, on in
 * both versions' defaults). tls.c seals it into its own part of each ticket:
 * 3.6 does not serialize a TLS 1.3 session's peer certificate at all.
 * NULL without it: such a session is then never resumed. */
static inline const mbedtls_x509_crt *ts_compat_session_peer_cert(const mbedtls_ssl_session *s)
{
#if defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
    return s->MBEDTLS_PRIVATE(peer_cert);
#else
    (void)s;
    return NULL;
#endif
}

static inline uint32_t ts_compat_session_verify_result(const mbedtls_ssl_session *s)
{
    return s->MBEDTLS_PRIVATE(verify_result);
}

/* Whether a client's session is complete when the handshake ends: TLS 1.2
 * (the ticket came in the handshake, or an abbreviated one kept the old
 * session). A TLS 1.3 server's tickets arrive after the handshake, as
 * NewSessionTicket messages the client reads with the application data
 * (ts_compat_read_ticket); the session is kept then. */
static inline int ts_compat_session_at_handshake(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    return mbedtls_ssl_get_version_number(ssl) == MBEDTLS_SSL_VERSION_TLS1_2;
#else
    (void)ssl;
    return 1; /* 2.28 negotiates nothing above TLS 1.2 */
#endif
}

/* mbedtls_strerror exists only with MBEDTLS_ERROR_C. */
static inline void ts_compat_strerror(int ret, char *buf, size_t n)
{
#if defined(MBEDTLS_ERROR_C)
    mbedtls_strerror(ret, buf, n);
#else
    snprintf(buf, n, "mbedTLS error -0x%04x", (unsigned)-ret);
#endif
}

#endif
