/*
 * TLS over TCP with mbedTLS, for both sides: the agent's client (mutual TLS
 * to the hub) and the hub's server (client certificates required). TLS >= 1.2,
 * CA verification, host name check, timeouts on every read and write.
 * The mbedTLS 2.28 / 3.6 API differences live in tls_compat.h only.
 */
#ifndef TS_TLS_H
#define TS_TLS_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>

struct ts_tls_ctx;  /* shared configuration: CA, own certificate and key, RNG */
struct ts_tls_conn; /* one connection (TLS or plain TCP) */

struct ts_tls_opts {
    const char *ca_file;   /* CA(s) to verify the peer; required for TLS */
    const char *cert_file; /* own certificate chain (PEM) */
    const char *key_file;  /* own private key (PEM) */
    bool server;           /* server side: requires and verifies client certs */
};

/* Loads files; on failure err says which file and why. */
int ts_tls_ctx_new(const struct ts_tls_opts *o, struct ts_tls_ctx **out, char *err, size_t errsz);
void ts_tls_ctx_free(struct ts_tls_ctx *c);

/* Identity taken from a verified peer certificate subject. */
struct ts_peer_id {
    bool verified;
    char subject[256]; /* e.g. "CN=T01, OU=S001, O=acme" */
    char cn[64];       /* terminal */
    char ou[64];       /* store */
    char o[64];        /* tenant */
    int days_left;     /* days until the certificate expires */
};

/*
 * Client: connects to host:port within timeout_ms. ctx NULL = plain TCP.
 * With TLS, verifies the chain against the CA, the host name (SAN/CN) and
 * validity dates; on failure returns TS_ERR_CERT and err names the reason
 * ("certificate expired", "host name mismatch", "not trusted by CA").
 */
int ts_tls_connect(struct ts_tls_ctx *ctx, const char *host, int port, int timeout_ms,
                   struct ts_tls_conn **out, char *err, size_t errsz);

/* Server: wraps an accepted socket and runs the handshake (ctx NULL = plain).
 * On success the connection owns fd (ts_tls_close closes it); on failure fd
 * stays the caller's to close, and err says why ("no certificate presented",
 * "certificate not trusted by the configured CA", ...).
 * A ctx may be shared by any number of threads and connections at once. */
int ts_tls_accept(struct ts_tls_ctx *ctx, int fd, int timeout_ms, struct ts_tls_conn **out,
                  char *err, size_t errsz);

/* Reads up to n bytes; returns bytes read (>0), TS_ERR_CLOSED at EOF,
 * TS_ERR_TIMEOUT after timeout_ms without data, or another error.
 * timeout_ms < 0 waits without limit (connect/accept: 0 means 15 s). */
long ts_tls_read(struct ts_tls_conn *c, void *buf, size_t n, int timeout_ms);
/* Writes all n bytes or fails. */
int ts_tls_write(struct ts_tls_conn *c, const void *buf, size_t n, int timeout_ms);
/* Peer identity after a verified handshake (client and server side); NULL
 * for plain TCP. Valid until ts_tls_close. */
const struct ts_peer_id *ts_tls_peer(const struct ts_tls_conn *c);
/* Sends close_notify (best effort), closes the socket, frees. NULL ok. */
void ts_tls_close(struct ts_tls_conn *c);

#endif
