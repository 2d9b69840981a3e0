/*
 * The hub's HTTP(S) server: a listening socket, an accept thread and one
 * thread per connection (capped), HTTP/1.1 keep-alive, TLS with required
 * client certificates via tls.h, or plain HTTP when no TLS files are given
 * (behind a TLS-terminating proxy). Handlers run on connection threads and
 * must be thread-safe.
 */
#ifndef TS_HTTPD_H
#define TS_HTTPD_H

#include "../common/ts.h"
#include "http.h"
#include "tls.h"

#include <stdbool.h>
#include <stddef.h>

struct ts_httpd;

struct ts_httpd_req {
    const char *method;
    const char *target;            /* raw "path?query" */
    char path[512];                /* target before '?' */
    const struct ts_http_msg *msg; /* headers: ts_http_header(req->msg, "...") */
    const char *body;              /* NUL-terminated */
    size_t body_len;
    const struct ts_peer_id *peer; /* verified client certificate, or NULL (plain) */
    bool tls_resumed;              /* the connection resumed a TLS session (tls.h) */
    const char *tls_version;       /* "TLS 1.2", "TLS 1.3"; NULL for plain */
    char remote_addr[64];
};

struct ts_httpd_resp {
    int status;              /* default 200 */
    char content_type[64];   /* default "application/json" */
    char extra_headers[512]; /* "Name: value\r\n" lines */
    ts_buf body;
};

typedef void (*ts_httpd_handler)(void *ud, const struct ts_httpd_req *req,
                                 struct ts_httpd_resp *resp);

struct ts_httpd_opts {
    const char *listen;    /* "host:port"; port 0 = ephemeral */
    const char *cert_file; /* NULL = plain HTTP */
    const char *key_file;
    const char *client_ca_file; /* CA that issues terminal certificates */
    bool no_client_cert;        /* TLS without asking for a client certificate (enrolment) */
    /* Optional, with client certificates: asked at every handshake and
     * again before every request on a kept connection, so a certificate
     * revoked while its terminal is connected is refused at its next
     * request (the connection is closed; the client's reconnect is then
     * refused in the handshake). */
    ts_tls_peer_check peer_check;
    void *peer_check_ud;
    /* With client certificates: TLS session tickets let a terminal resume
     * its session for this long after its full handshake (0 = 3600 s; the
     * ticket keys are in memory only unless ticket_keys gives them). peer_check is asked before a
     * ticket is taken, too. no_resume = full handshakes only. */
    int tls_session_lifetime_s;
    bool no_resume;
    /* With client certificates, optional: shared ticket keys (tls.h). */
    ts_tls_ticket_keys_fn ticket_keys;
    void *ticket_keys_ud;
    int max_conns;     /* default 256 */
    int io_timeout_ms; /* default 15000 */
    size_t max_body;   /* default 1 MiB; larger → 413 */
};

enum ts_err ts_httpd_start(const struct ts_httpd_opts *o, ts_httpd_handler h, void *ud,
                           struct ts_httpd **out, char *err, size_t errsz);
/* The bound port (useful with port 0). */
int ts_httpd_port(const struct ts_httpd *s);
/* Stops accepting, closes connections, joins threads, frees. NULL ok. */
void ts_httpd_stop(struct ts_httpd *s);

/* Convenience: JSON error body {"error": msg} with status. */
void ts_httpd_error(struct ts_httpd_resp *resp, int status, const char *msg);

#endif
