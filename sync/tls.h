/*
 * TLS over TCP with mbedTLS, for both sides: the agent's client (mutual TLS
 * to the hub) and the hub's server (client certificates required, or not
 * asked for on the enrolment listener). TLS >= 1.2, CA verification, host
 * name check, optional public key pinning and a revocation hook, timeouts
 * on every read and write, and session resumption by session tickets
 * (RFC 5077 on TLS 1.2, PSK resumption on TLS 1.3, RFC 8446 §2.2): the
 * server seals each session, with the client certificate it verified and
 * when, in a ticket under a rotating key (in memory, or shared through the
 * ticket_keys hook), the client offers
 * its last session again on its next connect, and the abbreviated
 * handshake skips the certificate exchange and the ECDSA work of a full
 * one. Agent and hub speak TLS 1.3 with mbedTLS 3.6, TLS 1.2 with 2.28 (and
 * 1.2 with each other across the two). The mbedTLS 2.28 / 3.6 differences
 * live in tls_compat.h only.
 */
#ifndef TS_TLS_H
#define TS_TLS_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ts_tls_ctx;  /* shared configuration: CA, own certificate and key, RNG */
struct ts_tls_conn; /* one connection (TLS or plain TCP) */

/* Identity taken from a peer certificate. */
struct ts_peer_id {
    bool verified;
    char subject[256]; /* e.g. "CN=T01, OU=S001, O=acme" */
    char cn[64];       /* terminal */
    char ou[64];       /* store */
    char o[64];        /* tenant */
    char serial[48];   /* serial number, lowercase hex without leading zero bytes */
    int days_left;     /* whole days until the certificate expires (negative: expired) */
};

/*
 * Server side: asked during every handshake, after the chain verified, with
 * the client certificate's identity. Returns true to let it in; false
 * refuses the handshake as "certificate revoked" (the client gets a
 * certificate_revoked alert: in the handshake on TLS 1.2, right after it on
 * TLS 1.3). Also asked for every ticket a client offers to resume with.
 * why (optional) is logged. Called on
 * connection threads at once: must be thread-safe.
 */
typedef bool (*ts_tls_peer_check)(void *ud, const struct ts_peer_id *peer, char *why, size_t whysz);

/*
 * Server side: a session ticket key. Tickets are sealed under the newest
 * key (keys[0]) and opened under whichever of the keys their id names.
 */
struct ts_tls_ticket_key {
    uint32_t id;
    int64_t created_ms; /* wall clock */
    unsigned char key[32];
};

/*
 * Server side, optional: where the ticket keys come from, so several
 * processes can share them (a terminal then resumes on whichever one it
 * reaches). Asked at now_ms for the keys to use: fills keys[0] (the newest,
 * made at most lifetime_s ago, or made now) and keys[1] (the one before it,
 * when there is one), *n = how many. Asked again when the newest is
 * lifetime_s old, once a minute to learn a key another process made, and
 * (at most once a second) when a ticket names a key not held. A failure
 * keeps the keys held so far (none yet: a key made in memory, whose tickets
 * resume on this process only), and it is asked again 5 s later. Without
 * it the keys are made in memory and rotated every lifetime_s.
 */
typedef enum ts_err (*ts_tls_ticket_keys_fn)(void *ud, int64_t now_ms, int lifetime_s,
                                             struct ts_tls_ticket_key keys[2], size_t *n);

struct ts_tls_opts {
    const char *ca_file;   /* CA(s) to verify the peer; required unless no_client_auth */
    const char *cert_file; /* own certificate chain (PEM) */
    const char *key_file;  /* own private key (PEM) */
    bool server;           /* server side: requires and verifies client certs */
    bool no_client_auth;   /* server side: do not ask for a client certificate at all */
    /* Client side: the server's public key must also hash to this (SHA-256
     * of its SubjectPublicKeyInfo, 64 hex digits or base64); NULL/"" = off. */
    const char *pin_sha256;
    ts_tls_peer_check peer_check; /* server side, optional */
    void *peer_check_ud;
    /* Session resumption, on by default. Client: keeps the last session of
     * this context (per host and port) and offers it at the next connect;
     * a server that does not take it gives a full handshake, silently.
     * Server (with client certificates only): issues session tickets that
     * resume for session_lifetime_s seconds counted from the full
     * handshake that authenticated the client (0 = 3600, at most 86400).
     * A ticket is taken only while its client certificate is still within
     * its validity dates and peer_check still lets it in; otherwise the
     * client gets a full handshake and is judged there. The ticket keys
     * rotate every session_lifetime_s (the previous one still opens
     * tickets); they live in memory only unless ticket_keys supplies them:
     * then a restarted server, or another one sharing them, resumes what
     * was issued. no_resume turns it off. */
    int session_lifetime_s;
    bool no_resume;
    ts_tls_ticket_keys_fn ticket_keys; /* server side, optional (above) */
    void *ticket_keys_ud;
};

/*
 * Loads files; on failure err says which file and why. A client context
 * notices when its certificate or key file is replaced (renewal) and uses
 * the new pair from the next ts_tls_connect on; connections already open
 * keep the pair they started with.
 */
enum ts_err ts_tls_ctx_new(const struct ts_tls_opts *o, struct ts_tls_ctx **out, char *err,
                           size_t errsz);
void ts_tls_ctx_free(struct ts_tls_ctx *c);

/*
 * Client: connects to host:port within timeout_ms. ctx NULL = plain TCP.
 * With TLS, verifies the chain against the CA, the host name (SAN/CN) and
 * validity dates; on failure returns TS_ERR_CERT and err names the reason
 * ("certificate expired", "host name mismatch", "not trusted by CA",
 * "public key pin mismatch"); a server that refuses our certificate gives
 * TS_ERR_CERT too ("the server refused our certificate: certificate
 * revoked"), in TLS 1.2. A TLS 1.3 server judges it after our side of the
 * handshake is over: its refusal comes from the first ts_tls_read, as
 * TS_ERR_CERT with the same words in ts_tls_error.
 */
enum ts_err ts_tls_connect(struct ts_tls_ctx *ctx, const char *host, int port, int timeout_ms,
                           struct ts_tls_conn **out, char *err, size_t errsz);

/* Server: wraps an accepted socket and runs the handshake (ctx NULL = plain).
 * On success the connection owns fd (ts_tls_close closes it); on failure fd
 * stays the caller's to close, and err says why ("no certificate presented",
 * "certificate not trusted by the configured CA", ...).
 * A ctx may be shared by any number of threads and connections at once. */
enum ts_err ts_tls_accept(struct ts_tls_ctx *ctx, int fd, int timeout_ms, struct ts_tls_conn **out,
                          char *err, size_t errsz);

/*
 * Server, for an event loop: wraps an accepted socket (made nonblocking)
 * without running the handshake; ts_tls_accept_step then runs as much of it
 * as the socket allows: TS_OK once it is over (at once for ctx NULL, plain
 * TCP), TS_ERR_AGAIN when it waits for the socket (*want_write: writable,
 * else readable), or a failure with err in words as ts_tls_accept's. The
 * connection owns fd from ts_tls_accept_begin's success on (ts_tls_close),
 * also after a failed step. Reads and writes with timeout_ms 0 then try
 * once: TS_ERR_TIMEOUT says the socket is not ready.
 */
enum ts_err ts_tls_accept_begin(struct ts_tls_ctx *ctx, int fd, struct ts_tls_conn **out, char *err,
                                size_t errsz);
enum ts_err ts_tls_accept_step(struct ts_tls_conn *c, bool *want_write, char *err, size_t errsz);
/*
 * Client, for an event loop: wraps a connected nonblocking socket (the
 * caller's TCP connect is over) for host:port without running the
 * handshake, offering the context's kept session as ts_tls_connect does;
 * ts_tls_connect_step then runs as much of the handshake as the socket
 * allows, with the returns of ts_tls_accept_step and the verification and
 * words of ts_tls_connect. A failed step forgets the kept session; unlike
 * ts_tls_connect it does not try again by itself. The connection owns fd
 * from ts_tls_connect_begin's success on (ts_tls_close).
 */
enum ts_err ts_tls_connect_begin(struct ts_tls_ctx *ctx, int fd, const char *host, int port,
                                 struct ts_tls_conn **out, char *err, size_t errsz);
enum ts_err ts_tls_connect_step(struct ts_tls_conn *c, bool *want_write, char *err, size_t errsz);
/* The connection's socket. */
int ts_tls_fd(const struct ts_tls_conn *c);

/* Reads up to n bytes; returns bytes read (>0), TS_ERR_CLOSED at EOF,
 * TS_ERR_TIMEOUT after timeout_ms without data, TS_ERR_CERT when the
 * server refused our certificate only after the handshake (TLS 1.3), or
 * another error.
 * timeout_ms < 0 waits without limit (connect/accept: 0 means 15 s). */
long ts_tls_read(struct ts_tls_conn *c, void *buf, size_t n, int timeout_ms);
/* Writes all n bytes or fails. */
enum ts_err ts_tls_write(struct ts_tls_conn *c, const void *buf, size_t n, int timeout_ms);
/* Peer identity after a verified handshake (client and server side); NULL
 * for plain TCP. Valid until ts_tls_close. After a resumed handshake it is
 * the certificate of the full handshake the session came from. */
const struct ts_peer_id *ts_tls_peer(const struct ts_tls_conn *c);
/* Whether the handshake was an abbreviated one, resuming an earlier
 * session (no certificate was exchanged or verified on it). */
bool ts_tls_resumed(const struct ts_tls_conn *c);
/* The negotiated protocol, "TLS 1.2" or "TLS 1.3"; NULL for plain TCP. */
const char *ts_tls_version(const struct ts_tls_conn *c);
/* The best protocol this build negotiates with a peer of the same build:
 * "TLS 1.3" with mbedTLS 3.6 (where it is compiled in), "TLS 1.2" with 2.28. */
const char *ts_tls_best_version(void);
/* The TLS library loaded, e.g. "mbedTLS 3.6.6". */
void ts_tls_library(char *buf, size_t n);
/* Why the last ts_tls_read failed, when it knows more than its code (a
 * server's refusal after a TLS 1.3 handshake: "the server refused our
 * certificate: certificate revoked"); "" otherwise. */
const char *ts_tls_error(const struct ts_tls_conn *c);
/* Client: drops the kept session; the next connect does a full handshake. */
void ts_tls_forget_session(struct ts_tls_ctx *ctx);
/* Sends close_notify (best effort), closes the socket, frees. NULL ok. */
void ts_tls_close(struct ts_tls_conn *c);

/* Parses a public key pin: SHA-256 as 64 hex digits or base64 (44 chars,
 * padding optional). TS_ERR_INVAL on anything else. */
enum ts_err ts_tls_pin_parse(const char *s, unsigned char out[32]);

#endif
