/*
 * What tls.c and tls_verify.c share: the context, a connection, and the
 * verification helpers. Private to sync/tls*.c.
 */
#ifndef TS_TLS_INT_H
#define TS_TLS_INT_H

#include "tls.h"
#include "tls_compat.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

/* Which file was loaded: a renewal replaces the file (rename), a rewrite
 * in place changes its size or time. */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/*
 * One loaded certificate + key and the mbedTLS configuration that uses
 * them. Reference-counted: the context holds one reference while it is
 * current, every connection one while it lives, so a client context can
 * swap in a renewed pair while an old connection still runs on the old one.
 */
struct tls_conf {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt own;
    mbedtls_pk_context key;
    struct file_id cert_id, key_id;
    unsigned gen; /* which load this is: a kept session belongs to one */
    int refs;
};

struct ts_tls_ctx {
    bool server, no_client_auth, have_cert, has_pin;
    unsigned char pin[32];
    ts_tls_peer_check peer_check;
    void *peer_check_ud;
    char *cert_file, *key_file; /* copies, for reloads */
    mbedtls_x509_crt ca;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    pthread_mutex_t rng_mu; /* the DRBG is shared by every connection */
    pthread_mutex_t mu;     /* guards cur, every tls_conf's refs, the kept session */
    struct tls_conf *cur;
    unsigned gens; /* tls_conf loads so far */
    /* server: session tickets (tls_session.c), sealed under the newest of
     * tkeys, opened under the one their id names; from ticket_keys when
     * set, else made here. tk_mu guards tkeys and the times. */
    bool tickets;
    ts_tls_ticket_keys_fn ticket_keys;
    void *ticket_keys_ud;
    pthread_mutex_t tk_mu;
    struct ts_tls_ticket_key tkeys[2];
    size_t ntkeys;
    int64_t tk_next_ms; /* when to ask for the keys again */
    int64_t tk_miss_ms; /* when an unknown key id last made us ask */
    int64_t session_lifetime_ms;
    /* client: the last session, offered again to the same host and port
     * while the certificate it was made with is still the current one */
    bool no_resume, have_session;
    mbedtls_ssl_session session;
    char session_host[256];
    int session_port;
    unsigned session_gen;
    struct ts_peer_id session_peer; /* the server the kept session was made with */
};

struct ts_tls_conn {
    int fd;
    bool tls;
    int sys_errno; /* last socket error seen by the BIO callbacks */
    struct ts_tls_ctx *ctx;
    struct tls_conf *tc; /* the configuration this connection runs on */
    mbedtls_ssl_context ssl;
    struct ts_peer_id peer;
    bool pin_mismatch;     /* client: the verify callback refused the pin */
    bool refused_by_check; /* server: peer_check said no */
    bool chain_checked;    /* the peer's certificate chain was verified (a full handshake) */
    bool offered;          /* client: a kept session was offered */
    bool resumed;          /* the handshake resumed a session */
    char refused_why[160];
    char refused_subject[256];
    /* client: where it connected (a TLS 1.3 ticket is kept when it comes) */
    char host[256];
    int port;
    struct ts_peer_id offered_peer; /* whom the offered session was made with */
    char err[256];                  /* why the last read failed, when it says more */
    /* server: the ticket this handshake resumed (ticket_parse) */
    bool ticket_ok;
    int64_t auth_ms;            /* when the ticket's certificate was verified (full handshake) */
    unsigned char *ticket_cert; /* its DER, sealed again into the next ticket */
    size_t ticket_cert_len;
    struct ts_peer_id ticket_peer;
    int64_t handshake_ms; /* when this handshake began */
    int hs_optional;      /* server: verification left to us (TLS 1.3, tls_compat.h) */
    bool hs_done;         /* ts_tls_accept_step: the handshake is over */
};

/* ---- tls.c, for tls_io.c ---- */

/* now + timeout_ms on the monotonic clock; -1 (none) for timeout_ms < 0. */
int64_t ts_tls_deadline_of(int timeout_ms);
/* Waits for events on fd until the deadline (-1 = none). */
enum ts_err ts_tls_wait_fd(int fd, short events, int64_t deadline);

/* ---- tls_verify.c ---- */

/* Words for failed verification flags ("certificate expired; host name
 * mismatch (expected hub)"). */
void ts_tls_describe_verify(uint32_t flags, const char *host, char *err, size_t errsz);
/* Subject parts, serial and days left of a certificate. */
void ts_tls_peer_from_crt(const mbedtls_x509_crt *crt, struct ts_peer_id *p);
/* mbedtls_ssl_set_verify callback (p = the connection): the pin and the
 * revocation hook, at the leaf. */
int ts_tls_verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags);
/* The client's words for a server's fatal alert; TS_ERR_CERT or TS_ERR_TLS. */
enum ts_err ts_tls_describe_alert(int alert, char *err, size_t errsz);
/* Server: may a session that authenticated crt earlier still be resumed?
 * The certificate must be within its validity dates now and the context's
 * peer_check must still let it in. false says why. */
bool ts_tls_session_peer_ok(struct ts_tls_ctx *ctx, const mbedtls_x509_crt *crt, char *why,
                            size_t whysz);
/* After a handshake: who the peer is (c->peer, from its certificate). */
void ts_tls_fill_peer(struct ts_tls_conn *c);
/* Words for a failed verification of the peer's certificate. */
void ts_tls_describe_refusal(struct ts_tls_conn *c, uint32_t flags, const char *host, char *err,
                             size_t errsz);
/* The alert (RFC 8446 §6.2) a server refuses a client certificate with. */
unsigned char ts_tls_refusal_alert(const struct ts_tls_conn *c, uint32_t flags);

/* Connections of many threads draw from one DRBG; mbedTLS may or may not be
 * built with MBEDTLS_THREADING_C, so the lock is ours. */
static inline int ts_tls_rng(void *p, unsigned char *out, size_t n)
{
    struct ts_tls_ctx *c = p;
    pthread_mutex_lock(&c->rng_mu);
    int ret = mbedtls_ctr_drbg_random(&c->drbg, out, n);
    pthread_mutex_unlock(&c->rng_mu);
    return ret;
}

/* ---- tls_session.c: resumption ------------------------------------------ */

/* The connection whose handshake, read or write runs on this thread: the
 * ticket callbacks, which mbedTLS calls with the context only, read and
 * record what belongs to it. tls.c sets it around every mbedTLS call. */
extern _Thread_local struct ts_tls_conn *ts_tls_tl_conn;
/* mbedtls_ssl_conf_session_tickets_cb's write and parse (p: the context). */
int ts_tls_ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                        const unsigned char *end, size_t *tlen, uint32_t *lifetime);
int ts_tls_ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len);
/* Client: offers the kept session to host:port; keeps this connection's. */
void ts_tls_offer_session(struct ts_tls_conn *c, const char *host, int port);
void ts_tls_keep_session(struct ts_tls_conn *c);

#endif
