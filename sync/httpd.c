/*
 * The hub's HTTP(S) server (see httpd.h and httpd_int.h): start and stop
 * and the listening sockets. The event loop is httpd_loop.c, the worker pool
 * and answers httpd_work.c.
 */
#include "httpd_int.h"
#include "gzip.h"
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* "host:port", "[v6]:port" or ":port" (all interfaces). */
static enum ts_err split_listen(const char *l, char *host, size_t hsz, char *port, size_t psz)
{
    const char *colon;
    if (l[0] == '[') {
        const char *rb = strchr(l, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - l - 1) >= hsz)
            return TS_ERR_CONFIG;
        memcpy(host, l + 1, (size_t)(rb - l - 1));
        host[rb - l - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(l, ':');
        if (!colon || (size_t)(colon - l) >= hsz)
            return TS_ERR_CONFIG;
        memcpy(host, l, (size_t)(colon - l));
        host[colon - l] = '\0';
    }
    /* atoi took "4294975488" for 8192 (it wraps). */
    int num;
    if (ts_port_parse(colon + 1, strlen(colon + 1), true, &num) != TS_OK ||
        ts_strlcpy(port, colon + 1, psz) >= psz)
        return TS_ERR_CONFIG;
    return TS_OK;
}

static enum ts_err listen_on(const char *listen_addr, int *fd_out, int *port_out, char *err,
                             size_t errsz)
{
    char host[256], port[16];
    if (!listen_addr || split_listen(listen_addr, host, sizeof host, port, sizeof port)) {
        ts_errf(err, errsz, "invalid listen address \"%s\" (want host:port)",
                listen_addr ? listen_addr : "");
        return TS_ERR_CONFIG;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (g) {
        ts_errf(err, errsz, "cannot resolve listen address %s: %s", listen_addr, gai_strerror(g));
        return TS_ERR_CONFIG;
    }
    int last = 0, fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4096) == 0)
            break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        ts_errf(err, errsz, "cannot listen on %s: %s", listen_addr, strerror(last));
        return last == EACCES ? TS_ERR_PERM : TS_ERR_IO;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return TS_OK;
}

static void fill_defaults(struct ts_httpd_opts *o)
{
    o->max_conns = o->max_conns > 0 ? o->max_conns : 16384;
    o->max_pending = o->max_pending > 0 ? o->max_pending : 1024;
    o->max_pending_per_source = o->max_pending_per_source > 0 ? o->max_pending_per_source : 128;
    o->handshake_timeout_ms = o->handshake_timeout_ms > 0 ? o->handshake_timeout_ms : 10000;
    o->head_timeout_ms = o->head_timeout_ms > 0 ? o->head_timeout_ms : 10000;
    o->io_timeout_ms = o->io_timeout_ms > 0 ? o->io_timeout_ms : 15000;
    o->max_body = o->max_body ? o->max_body : (size_t)1 << 20;
    o->workers = o->workers > 0 ? o->workers : 4;
    o->retry_after_s = o->retry_after_s > 0 ? o->retry_after_s : 2;
    o->listen = o->cert_file = o->key_file = o->client_ca_file = NULL;
}

enum ts_err ts_httpd_start(const struct ts_httpd_opts *o, ts_httpd_handler h, void *ud,
                           struct ts_httpd **out, char *err, size_t errsz)
{
    if (!o || !h || !out) {
        ts_errf(err, errsz, "invalid arguments");
        return TS_ERR_INVAL;
    }
    bool tls = o->cert_file && o->cert_file[0];
    bool need_ca = !o->no_client_cert;
    if (tls && (!o->key_file || !o->key_file[0] ||
                (need_ca && (!o->client_ca_file || !o->client_ca_file[0])))) {
        ts_errf(err, errsz, "TLS needs a certificate, its key and the CA for client certificates");
        return TS_ERR_CONFIG;
    }
    struct ts_httpd *s = calloc(1, sizeof *s);
    if (!s)
        return TS_ERR_NOMEM;
    s->lfd = s->epfd = s->evfd = -1;
    s->handler = h;
    s->ud = ud;
    s->o = *o;
    fill_defaults(&s->o);
    s->tls_on = tls;
    s->client_certs = tls && !o->no_client_cert;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->jobs_cv, NULL);
    bool loop_started = false;
    int rc = TS_OK;
    if (tls) {
        struct ts_tls_opts to = {.ca_file = o->client_ca_file,
                                 .cert_file = o->cert_file,
                                 .key_file = o->key_file,
                                 .server = true,
                                 .no_client_auth = o->no_client_cert,
                                 .peer_check = o->peer_check,
                                 .peer_check_ud = o->peer_check_ud,
                                 .session_lifetime_s = o->tls_session_lifetime_s,
                                 .no_resume = o->no_resume,
                                 .ticket_keys = o->ticket_keys,
                                 .ticket_keys_ud = o->ticket_keys_ud};
        s->peer_check = o->no_client_cert ? NULL : o->peer_check;
        s->peer_check_ud = o->peer_check_ud;
        if ((rc = ts_tls_ctx_new(&to, &s->tls, err, errsz)))
            goto fail;
    }
    if ((rc = listen_on(o->listen, &s->lfd, &s->port, err, errsz)) ||
        (rc = ts_httpd_loop_init(s, err, errsz)))
        goto fail;
    if ((rc = ts_httpd_workers_start(s)) ||
        (rc = pthread_create(&s->loop_thr, NULL, ts_httpd_loop_main, s) ? TS_ERR_NOMEM : TS_OK)) {
        ts_errf(err, errsz, "cannot start the server's threads");
        goto fail;
    }
    loop_started = true;
    TS_INFO("httpd", "listening on %s (port %d, %s; %d workers, up to %d connections)", o->listen,
            s->port,
            !tls                ? "plain HTTP"
            : o->no_client_cert ? "TLS, no client certificate asked"
                                : "TLS, client certificates required",
            s->o.workers, s->o.max_conns);
    *out = s;
    return TS_OK;
fail:
    (void)loop_started;
    ts_httpd_workers_stop(s);
    ts_httpd_loop_free(s);
    if (s->lfd >= 0)
        close(s->lfd);
    ts_tls_ctx_free(s->tls);
    pthread_cond_destroy(&s->jobs_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}

int ts_httpd_port(const struct ts_httpd *s)
{
    return s ? s->port : -1;
}

void ts_httpd_wake(struct ts_httpd *s)
{
    if (!s)
        return;
    atomic_fetch_add(&s->wake_gen, 1);
    atomic_store(&s->wake_pending, true);
    ts_httpd_loop_kick(s);
}

/* Under s->mu. */
static bool grow_twakes(struct ts_httpd *s)
{
    size_t cap = s->twakes_cap ? s->twakes_cap * 2 : 16;
    struct topic_wake *w = cap <= 65536 ? realloc(s->twakes, cap * sizeof *w) : NULL;
    if (!w)
        return false;
    s->twakes = w;
    s->twakes_cap = cap;
    return true;
}

void ts_httpd_wake_topic(struct ts_httpd *s, const char *topic, uint64_t pos)
{
    if (!s)
        return;
    if (!topic || strlen(topic) >= sizeof s->twakes->topic) {
        ts_httpd_wake(s);
        return;
    }
    bool all = false;
    pthread_mutex_lock(&s->mu);
    size_t i = 0;
    while (i < s->ntwakes && strcmp(s->twakes[i].topic, topic) != 0)
        i++;
    if (i < s->ntwakes) {
        if (pos > s->twakes[i].pos)
            s->twakes[i].pos = pos; /* coalesced with one the loop has not taken yet */
    } else if (s->ntwakes < s->twakes_cap || grow_twakes(s)) {
        ts_strlcpy(s->twakes[s->ntwakes].topic, topic, sizeof s->twakes->topic);
        s->twakes[s->ntwakes++].pos = pos;
    } else {
        all = true; /* no room to say which: everyone looks */
    }
    pthread_mutex_unlock(&s->mu);
    if (all)
        atomic_store(&s->wake_pending, true);
    ts_httpd_loop_kick(s);
}

void ts_httpd_stats(struct ts_httpd *s, struct ts_httpd_stats *o)
{
    *o = (struct ts_httpd_stats){0};
    if (!s)
        return;
    o->conns = atomic_load(&s->st_conns);
    o->pending = atomic_load(&s->st_pending);
    o->parked = atomic_load(&s->st_parked);
    o->refused_pending = atomic_load(&s->st_ref_pending);
    o->refused_source = atomic_load(&s->st_ref_source);
    o->refused_capacity = atomic_load(&s->st_ref_capacity);
    o->refused_class = atomic_load(&s->st_ref_class);
    o->timed_out = atomic_load(&s->st_timed_out);
    for (int i = 0; i < TS_HTTPD_CLASSES; i++)
        o->refused_class_n[i] = atomic_load(&s->st_ref_class_n[i]);
    o->timed_out_handshake = atomic_load(&s->st_to_handshake);
    o->timed_out_head = atomic_load(&s->st_to_head);
    o->woken = atomic_load(&s->st_woken);
    o->stop_answered = atomic_load(&s->st_stop_answered);
    o->handshakes_full = atomic_load(&s->st_hs_full);
    o->handshakes_resumed = atomic_load(&s->st_hs_resumed);
}

/*
 * The loop first (it closes what it holds at once), then the workers: a
 * worker writing to a slow client is woken by shutting the sockets down,
 * which ts_httpd_loop_free does for every connection before it joins.
 */
void ts_httpd_stop(struct ts_httpd *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    ts_httpd_loop_kick(s);
    pthread_join(s->loop_thr, NULL);
    for (struct hconn *c = s->conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR); /* wakes workers' writes */
    ts_httpd_workers_stop(s);
    ts_httpd_loop_free(s);
    close(s->lfd);
    ts_tls_ctx_free(s->tls);
    pthread_cond_destroy(&s->jobs_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->twakes);
    free(s);
}
