/*
 * The hub's HTTP(S) server: one event-loop thread per listener (epoll)
 * holding every connection on nonblocking sockets, with nonblocking TLS
 * handshakes, HTTP/1.1 keep-alive, TLS with required client certificates
 * via tls.h (or none asked: enrolment, the CDP), or plain HTTP when no TLS
 * files are given (behind a TLS-terminating proxy). Whole requests go to a
 * small pool of worker threads that run the handler, which must be
 * thread-safe. A handler may park a request (a long-poll with nothing to
 * say yet): it is handed to it again when ts_httpd_wake is called or its
 * deadline comes, and costs only its socket and TLS state meanwhile.
 * docs/ARCHITECTURE.md "The hub's HTTP server" has the design.
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
    /* A parked request handed over again (ts_httpd_park): the deadline it
     * was parked until (monotonic ms; 0 on its first run) and whether that
     * deadline has come (answer now, with what there is). */
    int64_t park_until_ms;
    bool park_expired;
};

struct ts_httpd_resp {
    int status;              /* default 200 */
    char content_type[64];   /* default "application/json" */
    char extra_headers[512]; /* "Name: value\r\n" lines */
    ts_buf body;
    int64_t park_until_ms; /* ts_httpd_park: set = park instead of answering */
    int park_recheck_ms;
    char park_topic[64]; /* ts_httpd_park_on: "" = woken by every wake */
    uint64_t park_seen;
};

/* Capacity classes (ts_httpd_opts.classify): a request of a class over
 * its limit is answered 503 with Retry-After without reaching the handler. */
#define TS_HTTPD_CLASSES 4

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
    /* Connections that have authenticated: a verified client certificate
     * at the end of the handshake, or (no client certificate asked, plain
     * HTTP) a first whole request head. Over it, the next request is
     * answered 503 with Retry-After and the connection closed. */
    int max_conns; /* default 16384 */
    /* Connections that have not authenticated yet, in all and from one
     * source address: over either, a new connection is closed at once
     * (plain HTTP: 503 first). 0 = defaults 1024 and 128. */
    int max_pending;
    int max_pending_per_source;
    int handshake_timeout_ms; /* the whole TLS handshake; default 10000 */
    int head_timeout_ms;      /* a whole request head, from its first byte; default 10000 */
    int io_timeout_ms;        /* a body, a response, an idle kept connection; default 15000 */
    size_t max_body;          /* default 1 MiB; larger → 413; also the inflated size of a
                                 Content-Encoding: gzip body (bigger → 413) */
    int workers;              /* handler threads; default 4 */
    /* Optional: the class (0..TS_HTTPD_CLASSES-1, or -1 for none) of a
     * request by method and path, asked on the event loop (no blocking);
     * class_max[i] requests of class i at once (being handled or parked),
     * 0 = no limit; class_name[i] for the log. retry_after_s: 503's
     * Retry-After (default 2). */
    int (*classify)(void *ud, const char *method, const char *path);
    int class_max[TS_HTTPD_CLASSES];
    const char *class_name[TS_HTTPD_CLASSES];
    int retry_after_s;
};

/* Counters for /metrics and tests: gauges (conns, pending, parked) and
 * counters since start. refused_class_n by class (class_name). */
struct ts_httpd_stats {
    long conns, pending, parked;
    long refused_pending, refused_source, refused_capacity, refused_class, timed_out;
    long refused_class_n[TS_HTTPD_CLASSES];
    long timed_out_handshake, timed_out_head;
    long woken, stop_answered;
    long handshakes_full, handshakes_resumed; /* TLS handshakes completed, since start */
};

enum ts_err ts_httpd_start(const struct ts_httpd_opts *o, ts_httpd_handler h, void *ud,
                           struct ts_httpd **out, char *err, size_t errsz);
/* The bound port (useful with port 0). */
int ts_httpd_port(const struct ts_httpd *s);
/* Stops accepting, closes connections, joins threads, frees. NULL ok. */
void ts_httpd_stop(struct ts_httpd *s);

/* Wakes every parked request: each is handed to the handler again (store
 * changed). Thread-safe, async-signal-unsafe, cheap; NULL ok. */
void ts_httpd_wake(struct ts_httpd *s);
/* Wakes only the requests parked on topic (ts_httpd_park_on) that saw less
 * than pos, and those parked without a topic. The server remembers the
 * highest pos of each topic, so a request parking after its topic moved
 * past what it saw is handed over again at once (no lost wake). Wakes are
 * coalesced; thread-safe, cheap; NULL ok. */
void ts_httpd_wake_topic(struct ts_httpd *s, const char *topic, uint64_t pos);
/* From a handler: do not answer yet; hand this request over again on
 * ts_httpd_wake, every recheck_ms (0: only on wakes), or at until_ms
 * (monotonic) with req->park_expired set. When the server stops, a parked
 * request is handed over once more with park_expired set, so it gets its
 * answer (Connection: close) rather than a bare close. */
void ts_httpd_park(struct ts_httpd_resp *resp, int64_t until_ms, int recheck_ms);
/* ts_httpd_park on a topic (a store's feed) having seen position seen
 * (its last change): ts_httpd_wake_topic(topic, pos > seen) wakes it. */
void ts_httpd_park_on(struct ts_httpd_resp *resp, int64_t until_ms, int recheck_ms,
                      const char *topic, uint64_t seen);
void ts_httpd_stats(struct ts_httpd *s, struct ts_httpd_stats *out);

/* Convenience: JSON error body {"error": msg} with status. */
void ts_httpd_error(struct ts_httpd_resp *resp, int status, const char *msg);

#endif
