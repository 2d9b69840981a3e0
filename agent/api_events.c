/*
 * GET /api/v1/events: Server-Sent Events from the bus. MHD runs one thread
 * per connection, so a stream simply blocks in its content reader while it
 * waits on the bus, looking every SSE_SLICE_MS for shutdown or a hangup.
 */
#include "api_int.h"

#include <inttypes.h>
#include <poll.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One SSE stream: where it is in the bus and the bytes not yet handed to
 * MHD (an event may be larger than one reader buffer). */
struct sse {
    struct ts_api *api;
    int fd; /* the client socket, only polled for hangup */
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
static int sse_format(ts_buf *out, uint64_t id, const char *type, const char *data)
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
        if (atomic_load(&s->api->stopping) || a->stopping || sse_peer_gone(s))
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

static void sse_free(void *cls)
{
    struct sse *s = cls;
    ts_buf_free(&s->out);
    free(s);
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
    ts_api_common_headers(resp);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, SSE_TIMEOUT_S);
    return ts_api_queue(c, MHD_HTTP_OK, resp);
}
