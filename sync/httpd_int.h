/*
 * What the hub's HTTP server files share (httpd.h): httpd.c (start, stop,
 * answers, the worker pool that runs the handler) and httpd_loop.c (the
 * event loop that owns the sockets). Private to sync/httpd*.c.
 *
 * Who touches a connection: the loop thread, except while it is C_WORK,
 * when exactly one worker has it (handed over and back through the queues
 * under s->mu, which orders the memory). All counting (capacity, sources,
 * classes) happens on the loop thread.
 */
#ifndef TS_HTTPD_INT_H
#define TS_HTTPD_INT_H

#include "httpd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum conn_state {
    C_HANDSHAKE, /* TLS handshake in steps */
    C_READ,      /* reading a request (or idle between two) */
    C_WORK,      /* a worker has it */
    C_PARKED,    /* a parked long-poll: waits for a wake or its deadline */
    C_LINGER,    /* answered for the last time: half-closed, reading what still comes */
    C_DEAD,      /* closed; freed at the end of the loop's round */
};

/* What a worker says should happen to a connection it hands back: the
 * outcome of a request, or of a handshake step (workers run those too, so
 * the ECDSA work of full handshakes does not stall the loop and uses every
 * core). */
enum conn_next { N_READ, N_PARK, N_CLOSE, N_HS_AGAIN, N_HS_DONE, N_HS_FAILED };

struct src;   /* connections from one source address (httpd_loop.c) */
struct topic; /* what requests are parked on, with its last position (httpd_loop.c) */

/* A ts_httpd_wake_topic not yet taken by the loop. */
struct topic_wake {
    char topic[64];
    uint64_t pos;
};

struct hconn {
    struct ts_httpd *s;
    int fd;
    struct ts_tls_conn *tc;
    enum conn_state st;
    uint32_t ev; /* events registered with epoll; 0 = not registered */
    bool authed; /* counted in s->nconns, else in s->npending and its source */
    bool over;   /* authenticated over max_conns: the next request gets 503, then close */
    bool verified_cert;
    char remote[64];
    struct src *src;
    int64_t deadline;   /* of the current state (monotonic ms) */
    int64_t head_start; /* first byte of the request being read; 0 = none yet */
    ts_buf in;
    struct ts_http_msg m; /* the request being parsed, then handled */
    bool sent_continue, decoded;
    bool hs_job, hs_want_write; /* the job is a handshake step; its result */
    char hs_err[200];
    int cls; /* capacity class of the request in hand, -1 = none */
    /* parked */
    int64_t park_until, park_recheck_at;
    int park_recheck_ms;
    bool park_expired;
    char topic[64];     /* parked on (ts_httpd_park_on); "" = none */
    uint64_t seen;      /* the topic's position the handler saw */
    uint64_t wake_seen; /* s->wake_gen when its handler began (a request parked on no topic) */
    struct topic *tp;   /* while parked on it, listed there: */
    struct hconn *tprev, *tnext;
    enum conn_next next_step;  /* set by the worker */
    struct hconn *prev, *next; /* every connection of the server (loop thread only) */
    struct hconn *qnext;       /* job or done queue */
};

struct ts_httpd {
    int lfd, port, epfd, evfd;
    bool tls_on, client_certs;
    pthread_t loop_thr;
    struct ts_tls_ctx *tls;
    ts_tls_peer_check peer_check;
    void *peer_check_ud;
    ts_httpd_handler handler;
    void *ud;
    struct ts_httpd_opts o; /* with defaults filled in; strings not kept */
    _Atomic bool stopping, wake_pending;
    _Atomic uint64_t wake_gen; /* ts_httpd_wake calls so far */
    /* loop thread only */
    struct hconn *conns, *graveyard;
    long nconns, npending;
    int class_n[TS_HTTPD_CLASSES];
    struct src **srcs;     /* hash table */
    struct topic **topics; /* hash table */
    long ntopics;
    int64_t listen_paused_until;
    int64_t next_log_ms;
    long log_pending, log_source, log_capacity, log_class[TS_HTTPD_CLASSES], log_timeouts;
    /* workers */
    pthread_mutex_t mu; /* guards the queues and workers_stop */
    pthread_cond_t jobs_cv;
    struct hconn *jobs, *jobs_tail, *done, *done_tail;
    struct hconn *rejobs, *rejobs_tail; /* parked requests handed over again: after jobs */
    bool workers_stop;
    /* ts_httpd_wake_topic's, until the loop takes them (under mu) */
    struct topic_wake *twakes;
    size_t ntwakes, twakes_cap;
    int nworkers;
    pthread_t *workers;
    /* counters (ts_httpd_stats) */
    _Atomic long st_conns, st_pending, st_parked, st_ref_pending, st_ref_source, st_ref_capacity,
        st_ref_class, st_timed_out, st_to_handshake, st_to_head, st_woken, st_stop_answered,
        st_hs_full, st_hs_resumed;
    _Atomic long st_ref_class_n[TS_HTTPD_CLASSES];
};

#define DRAIN_MAX_BYTES (8u << 20)
#define DRAIN_MAX_MS 2000
#define HANDSHAKE_LINGER_MS 500

/* ---- httpd.c ---- */

/* The whole answer (head and body, no body for HEAD and bodiless
 * statuses) into out. */
enum ts_err ts_httpd_format(const char *method, const struct ts_httpd_resp *r, bool keep,
                            ts_buf *out);
/* Workers: starts them; stop joins them. */
enum ts_err ts_httpd_workers_start(struct ts_httpd *s);
void ts_httpd_workers_stop(struct ts_httpd *s);
/* Loop: hands a connection to a worker (its state already C_WORK). */
void ts_httpd_job_push(struct ts_httpd *s, struct hconn *c);
/* Loop: takes every connection workers have handed back. */
struct hconn *ts_httpd_done_take(struct ts_httpd *s);
/* Loop: takes the pending topic wakes (*n of them; free() the array). */
struct topic_wake *ts_httpd_twakes_take(struct ts_httpd *s, size_t *n);

/* ---- httpd_topic.c ---- */

/* The topic called name, made (at position pos) if new; NULL when the table
 * is full or memory is short. */
struct topic *ts_httpd_topic_get(struct ts_httpd *s, const char *name, uint64_t pos);
uint64_t ts_httpd_topic_pos(const struct topic *t);
/* Moves t to pos: the first request parked on it (walk hconn.tnext; take
 * those with seen < pos), or NULL when pos is not past t's position. */
struct hconn *ts_httpd_topic_announce(struct topic *t, uint64_t pos);
void ts_httpd_topic_link(struct topic *t, struct hconn *c);
void ts_httpd_topic_unlink(struct hconn *c); /* no-op when c is on none */
void ts_httpd_topics_free(struct ts_httpd *s);

/* ---- httpd_loop.c ---- */

enum ts_err ts_httpd_loop_init(struct ts_httpd *s, char *err, size_t errsz);
void *ts_httpd_loop_main(void *arg);
/* After the loop thread ended and the workers are joined: closes and frees
 * every connection and the loop's resources. */
void ts_httpd_loop_free(struct ts_httpd *s);
/* Wakes the loop (a handed-back connection, a wake, stopping). */
void ts_httpd_loop_kick(struct ts_httpd *s);

#endif
