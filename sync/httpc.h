/*
 * A small HTTP/1.1 client for one base URL ("https://hub:8443" or
 * "http://host:port"), keeping one connection alive between requests and
 * reconnecting transparently once when the kept connection turned out dead.
 * Over https a reconnect resumes the client's last TLS session (tls.h), so
 * only the first connect, and one after the session's lifetime or a
 * certificate renewal, pays for a full handshake.
 * Not thread-safe: one client per thread.
 */
#ifndef TS_HTTPC_H
#define TS_HTTPC_H

#include "../common/ts.h"

#include <stdatomic.h>
#include <stddef.h>

struct ts_httpc;

struct ts_httpc_opts {
    const char *base_url;  /* scheme://host[:port] */
    const char *ca_file;   /* https: CA to verify the server */
    const char *cert_file; /* https: client certificate (mutual TLS) */
    const char *key_file;
    const char *pin_sha256; /* https: the server's public key hash too (tls.h); NULL = none */
    int connect_timeout_ms; /* default 5000 */
    const char *user_agent; /* default "tillside/<version>" */
    size_t max_body;        /* largest response body accepted; default 64 MiB */
    bool no_resume;         /* https: a full TLS handshake on every connect */
};

struct ts_http_resp {
    int status;
    ts_buf body;
    char content_type[128];
    char content_encoding[32]; /* "" when absent; the body is as received */
    int retry_after_s;         /* -1 when absent */
    int64_t date_s;            /* the Date header as Unix seconds, 0 when absent (doctor) */
    ts_buf head;               /* every header as "name: value\n" lines (rate headers) */
};
/* The value of header name (case-insensitive) in r->head into out, or NULL. */
const char *ts_http_resp_header(const struct ts_http_resp *r, const char *name, char *out,
                                size_t outsz);

enum ts_err ts_httpc_new(const struct ts_httpc_opts *o, struct ts_httpc **out, char *err,
                         size_t errsz);
void ts_httpc_free(struct ts_httpc *c);

/*
 * Sends one request and waits for the whole response within timeout_ms
 * (total). extra_headers is NULL or "Name: value\r\n..." lines. On transport
 * failure returns a TS_ERR_* and ts_httpc_error() tells why in words; an HTTP
 * error status is not a failure (resp->status says it). Free resp with
 * ts_http_resp_free.
 */
enum ts_err ts_httpc_request(struct ts_httpc *c, const char *method, const char *path_query,
                             const char *extra_headers, const char *content_type, const void *body,
                             size_t body_len, int timeout_ms, struct ts_http_resp *resp);
const char *ts_httpc_error(const struct ts_httpc *c);
/* Drops the kept connection (next request reconnects). */
void ts_httpc_disconnect(struct ts_httpc *c);
/*
 * Lets another thread cut a request short: while *flag is non-zero, waiting
 * for a response ends within about 200 ms with TS_ERR_CLOSED ("cancelled").
 * A long-poll can then be stopped at shutdown. flag must outlive the client;
 * NULL removes it.
 */
void ts_httpc_set_cancel(struct ts_httpc *c, const atomic_int *flag);
/* How many connections this client has opened so far (keep-alive checks,
 * metrics): ones the server accepted, so a TLS 1.3 server's refusal of our
 * certificate after the handshake does not count. */
unsigned long ts_httpc_connects(const struct ts_httpc *c);
/* How many of those resumed a TLS session (abbreviated handshakes). */
unsigned long ts_httpc_resumed(const struct ts_httpc *c);
void ts_http_resp_free(struct ts_http_resp *r);

#endif
