/*
 * GET /api/v1/events: Server-Sent Events from the bus. MHD runs one thread
 * per connection, so a stream simply blocks in its content reader while it
 * waits on the bus, looking every SSE_SLICE_MS for shutdown or a hangup.
 */
#include "api_int.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SSE_BUSY "{\"error\":\"too many event streams open; try again shortly\"}"

/* One SSE stream: where it is in the bus and the bytes not yet handed to
 * MHD (an event may be larger than one reader buffer). */
struct sse {
    struct ts_api *api;
    int fd; /* the client socket, only polled for hangup */
    struct sockaddr_storage peer;
    atomic_int evicted; /* closed for a newer stream of the same client */
    bool listed;        /* in api->streams (under sse_mu) */
    uint64_t last_id;
    ts_buf out;
    size_t off;
};

/*
 * Appends one SSE event. The bus carries single-line JSON, but should a
 * producer ever hand over text with line breaks, each line becomes its own
 * "data:" field, which EventSource joins back with "\n" — the stream can
 * never be desynchronised by its payload.
 */
static enum ts_err sse_format(ts_buf *out, uint64_t id, const char *type, const char *data)
{
    int rc = ts_buf_printf(out, "id: %" PRIu64 "\nevent: %s\n", id, type);
    const char *p = data;
    while (rc == TS_OK) {
        size_t n = strcspn(p, "\r\n");
        rc = ts_buf_puts(out, "data: ");
        if (rc == TS_OK)
            rc = ts_buf_append(out, p, n);
        if (rc == TS_OK)
            rc = ts_buf_puts(out, "\n");
        p += n;
        if (!*p)
            break;
        p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
    }
    if (rc == TS_OK)
        rc = ts_buf_puts(out, "\n");
    return rc;
}

/* True when the client has closed its end (an SSE client never sends
 * anything after its request, so readable-with-hangup means gone). */
static bool sse_peer_gone(const struct sse *s)
{
    if (s->fd < 0)
        return false;
    struct pollfd p = {.fd = s->fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Fills s->out with the next thing to send: the next bus event, or a
 * keepalive comment after SSE_KEEPALIVE_MS of silence. Waits in short
 * slices so ts_api_stop and a vanished client end the stream promptly even
 * when nobody closed the bus. TS_ERR_CLOSED means end the stream.
 */
static enum ts_err sse_next(struct sse *s)
{
    struct ts_agent *a = s->api->a;
    int64_t deadline = ts_now_mono_ms() + SSE_KEEPALIVE_MS;
    for (;;) {
        if (atomic_load(&s->api->stopping) || atomic_load(&s->evicted) || sse_peer_gone(s))
            return TS_ERR_CLOSED;
        int64_t left = deadline - ts_now_mono_ms();
        if (left <= 0)
            return ts_buf_puts(&s->out, ": keepalive\n\n");
        struct ts_bus_event ev = {0};
        int rc =
            ts_bus_next(a->bus, s->last_id, left < SSE_SLICE_MS ? (int)left : SSE_SLICE_MS, &ev);
        if (rc == TS_ERR_TIMEOUT)
            continue;
        if (rc != TS_OK)
            return rc;
        rc = sse_format(&s->out, ev.id, ev.type, ev.data ? ev.data : "null");
        s->last_id = ev.id;
        free(ev.data);
        return rc;
    }
}

/* MHD content reader: hands out pending bytes first, then waits for more. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse *s = cls;
    (void)pos;
    if (s->off >= s->out.len) {
        ts_buf_reset(&s->out);
        s->off = 0;
        int rc = sse_next(s);
        if (rc == TS_ERR_CLOSED)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (rc != TS_OK) {
            TS_WARN("api", "event stream ended: %s", ts_strerror(rc));
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = s->out.len - s->off;
    if (n > max)
        n = max;
    memcpy(buf, s->out.data + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

/* Removes s from the open streams (under sse_mu). */
static void unlist(struct ts_api *api, struct sse *s)
{
    for (int i = 0; i < api->nstreams; i++)
        if (api->streams[i] == s) {
            memmove(&api->streams[i], &api->streams[i + 1],
                    (size_t)(api->nstreams - i - 1) * sizeof api->streams[0]);
            api->nstreams--;
            break;
        }
    s->listed = false;
}

static void sse_free(void *cls)
{
    struct sse *s = cls;
    pthread_mutex_lock(&s->api->sse_mu);
    if (s->listed)
        unlist(s->api, s);
    pthread_mutex_unlock(&s->api->sse_mu);
    ts_buf_free(&s->out);
    free(s);
}

static bool same_client(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
    if (x->ss_family != y->ss_family)
        return false;
    if (x->ss_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)x)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)(const void *)y)->sin_addr.s_addr;
    if (x->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)(const void *)x)->sin6_addr,
                      &((const struct sockaddr_in6 *)(const void *)y)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return true;
}

/*
 * Takes a place for a new stream: a client at SSE_PER_CLIENT gives up its
 * oldest (told at once through the bus, so its thread and connection go
 * within a moment, not after a slice); with SSE_MAX open in all the new one
 * is refused. false = refused.
 */
static bool admit(struct ts_api *api, struct sse *s)
{
    struct sse *oldest = NULL;
    int mine = 0;
    pthread_mutex_lock(&api->sse_mu);
    for (int i = 0; i < api->nstreams; i++)
        if (same_client(&api->streams[i]->peer, &s->peer) && mine++ == 0)
            oldest = api->streams[i];
    if (mine >= SSE_PER_CLIENT) {
        atomic_store(&oldest->evicted, 1);
        unlist(api, oldest);
        atomic_fetch_add(&api->sse_evicted, 1);
    }
    bool ok = api->nstreams < SSE_MAX;
    if (ok) {
        api->streams[api->nstreams++] = s;
        s->listed = true;
    }
    pthread_mutex_unlock(&api->sse_mu);
    if (mine >= SSE_PER_CLIENT)
        ts_bus_wake(api->a->bus);
    return ok;
}

void ts_api_sse_counts(struct ts_api *api, unsigned *open, uint64_t *evicted, uint64_t *refused)
{
    pthread_mutex_lock(&api->sse_mu);
    *open = (unsigned)api->nstreams;
    pthread_mutex_unlock(&api->sse_mu);
    *evicted = atomic_load(&api->sse_evicted);
    *refused = atomic_load(&api->sse_refused);
}

/*
 * Opens a stream. With Last-Event-ID the client resumes right after it (the
 * bus skips to its oldest event if that one is gone). A fresh client, or one
 * holding an id from before an agent restart, starts at the newest event and
 * first gets the current session as a `customer` event, so an opened page
 * shows the card at once. The last id is read before the session so a scan
 * racing with the connect is sent twice at worst, never lost.
 */
enum MHD_Result ts_api_start_events(struct ts_api *api, struct MHD_Connection *c)
{
    struct ts_agent *a = api->a;
    struct sse *s = calloc(1, sizeof *s);
    if (!s)
        return MHD_NO;
    s->api = api;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    s->fd = ci ? ci->connect_fd : -1;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr)
        memcpy(&s->peer, ci->client_addr,
               ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                      : sizeof(struct sockaddr_in));
    if (!admit(api, s)) {
        free(s);
        atomic_fetch_add(&api->sse_refused, 1);
        struct MHD_Response *r = MHD_create_response_from_buffer(strlen(SSE_BUSY), (void *)SSE_BUSY,
                                                                 MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "2");
        ts_api_common_headers(r);
        return ts_api_queue(c, 429, r);
    }

    uint64_t newest = ts_bus_last_id(a->bus), resume = 0;
    const char *lei = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    int rc = ts_buf_puts(&s->out, SSE_HELLO);
    if (lei && ts_api_parse_u64(lei, &resume) && resume <= newest) {
        s->last_id = resume;
    } else {
        s->last_id = newest;
        char *session = ts_agent_session(a);
        if (session && rc == TS_OK)
            rc = sse_format(&s->out, newest, "customer", session);
        free(session);
    }
    if (rc != TS_OK) {
        sse_free(s);
        return ts_api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    }

    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, s, sse_free);
    if (!resp) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    /* One stream per connection: when it ends (closed for a newer one, or
     * shutdown) the connection goes too, instead of idling as keep-alive. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    ts_api_common_headers(resp);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, SSE_TIMEOUT_S);
    return ts_api_queue(c, MHD_HTTP_OK, resp);
}
