/*
 * The agent's loopback HTTP API (PRODUCT.md §4.4, PROTOCOL.md "Local API")
 * on libmicrohttpd. One thread per connection, so a Server-Sent Events
 * stream may simply block in its content reader while it waits on the bus.
 *
 * Every request passes the Host guard first (a DNS-rebinding page in the
 * associate's browser cannot name our loopback address); every POST needs
 * the bearer token. Nothing ever sends Access-Control-Allow-Origin.
 */
#include "agent.h"
#include "hublink.h"
#include "purchase.h"
#include "input.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define API_BODY_MAX (64 * 1024)
#define API_CONN_LIMIT 64u
#define API_TIMEOUT_S 30u /* idle limit for ordinary requests */
#define SSE_TIMEOUT_S 60u /* streams write at least every keepalive */
#define SSE_KEEPALIVE_MS 15000
#define SSE_SLICE_MS 500 /* how often a waiting stream looks for shutdown / hangup */
#define SSE_BLOCK 4096
#define SSE_HELLO ": tillside\nretry: 2000\n\n"

#define PAGE_CSP                                                                                   \
    "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "                  \
    "connect-src 'self'"

struct ts_api {
    struct ts_agent *a;
    struct MHD_Daemon *mhd;
    int port;
    char hosts[3][32]; /* the Host values we answer to */
    atomic_int stopping;
    char *page; /* the page with its key filled in (session.c) */
    size_t page_len;
};

enum route {
    R_PAGE,
    R_SESSION,
    R_EVENTS,
    R_SCAN,
    R_CLEAR,
    R_STATUS,
    R_LIVEZ,
    R_READYZ,
    R_METRICS,
    R_PURCHASES
};

static const struct route_def {
    const char *path;
    enum route route;
    const char *allow; /* methods, as sent in Allow on a 405 */
} routes[] = {
    {"/", R_PAGE, "GET, HEAD"},
    {"/api/v1/session", R_SESSION, "GET, HEAD"},
    {"/api/v1/events", R_EVENTS, "GET"},
    {"/api/v1/scan", R_SCAN, "POST"},
    {"/api/v1/session/clear", R_CLEAR, "POST"},
    {"/api/v1/status", R_STATUS, "GET, HEAD"},
    {"/livez", R_LIVEZ, "GET, HEAD"},
    {"/readyz", R_READYZ, "GET, HEAD"},
    {"/metrics", R_METRICS, "GET, HEAD"},
    {"/api/v1/purchases", R_PURCHASES, "POST"}, /* purchase.c */
};

/* Per-request state, lives from the first handler call to NOTIFY_COMPLETED. */
struct req {
    const struct route_def *def;
    bool answered; /* a response was queued on the first call */
    bool too_big;
    bool nomem;
    ts_buf body;
};

/* One SSE stream: where it is in the bus and the bytes not yet handed to
 * MHD (an event may be larger than one reader buffer). */
struct sse {
    struct ts_api *api;
    int fd; /* the client socket, only polled for hangup */
    uint64_t last_id;
    ts_buf out;
    size_t off;
};

/* ---- responses ------------------------------------------------------------*/

static void add_common_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Queues body (copied) with the JSON headers; allow adds an Allow header. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, const char *json,
                                 const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    add_common_headers(resp);
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return queue(c, status, resp);
}

/* The error shape of PROTOCOL.md: {"error": "<message>"}. */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                  const char *allow)
{
    ts_buf b = {0};
    enum MHD_Result ret =
        ts_json_error(&b, msg) == TS_OK ? send_json(c, status, b.data, allow) : MHD_NO;
    ts_buf_free(&b);
    return ret;
}

static enum MHD_Result send_empty(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    add_common_headers(resp);
    return queue(c, status, resp);
}

static enum MHD_Result send_page(struct ts_api *api, struct MHD_Connection *c)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(api->page_len, api->page, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    add_common_headers(resp);
    return queue(c, MHD_HTTP_OK, resp);
}

/* ---- server-sent events ---------------------------------------------------*/

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
static int sse_next(struct sse *s)
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

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/*
 * Opens a stream. With Last-Event-ID the client resumes right after it (the
 * bus skips to its oldest event if that one is gone). A fresh client, or one
 * holding an id from before an agent restart, starts at the newest event and
 * first gets the current session as a `customer` event, so an opened page
 * shows the card at once. The last id is read before the session so a scan
 * racing with the connect is sent twice at worst, never lost.
 */
static enum MHD_Result start_events(struct ts_api *api, struct MHD_Connection *c)
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
    if (lei && parse_u64(lei, &resume) && resume <= newest) {
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
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    }

    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, s, sse_free);
    if (!resp) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    add_common_headers(resp);
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, SSE_TIMEOUT_S);
    return queue(c, MHD_HTTP_OK, resp);
}

/* ---- handlers -------------------------------------------------------------*/

/* HTTP status for a failure of the core. */
static unsigned status_for(int rc)
{
    switch (rc) {
    case TS_ERR_INVAL:
        return MHD_HTTP_BAD_REQUEST;
    case TS_ERR_TIMEOUT:
        return MHD_HTTP_GATEWAY_TIMEOUT;
    case TS_ERR_CLOSED:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/*
 * POST /api/v1/scan {"code": "...", "aim": "]E0"}: validates the body,
 * normalises it into a scan like any input and answers with the session the
 * core made of it. The code itself is never logged or echoed back.
 */
static enum MHD_Result post_scan(struct ts_api *api, struct MHD_Connection *c, const ts_buf *body)
{
    enum MHD_Result ret = MHD_NO;
    char msg[256] = "";
    unsigned status = MHD_HTTP_BAD_REQUEST;
    char *session = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body->data ? body->data : "", body->len, 0, &jerr);
    if (!root) {
        snprintf(msg, sizeof msg, "invalid JSON: %s", jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(msg, sizeof msg, "body must be a JSON object");
        goto out;
    }
    json_t *code = json_object_get(root, "code");
    json_t *aim = json_object_get(root, "aim");
    if (!json_is_string(code)) {
        snprintf(msg, sizeof msg, "\"code\" must be a string");
        goto out;
    }
    if (json_string_length(code) == 0) {
        snprintf(msg, sizeof msg, "\"code\" is empty");
        goto out;
    }
    if (aim && !json_is_null(aim) && !json_is_string(aim)) {
        snprintf(msg, sizeof msg, "\"aim\" must be a string");
        goto out;
    }

    struct ts_scan scan;
    int rc = ts_scan_from_text("api", json_string_value(code), json_string_length(code),
                               json_is_string(aim) ? json_string_value(aim) : NULL, &scan);
    if (rc != TS_OK) {
        snprintf(msg, sizeof msg, "invalid code");
        goto out;
    }
    /* The payment card guard, as at the driver boundary: POS software may
     * post whatever the scanner read. Counted, never logged or stored. It
     * sees the code as a driver's framer would pass it: without the
     * surrounding whitespace and suffix (" 2100019914270\r\n" is an EAN-13). */
    size_t g0 = 0, g1 = scan.data_len;
    while (g0 < g1 && (unsigned char)scan.data[g0] <= ' ')
        g0++;
    while (g1 > g0 && (unsigned char)scan.data[g1 - 1] <= ' ')
        g1--;
    if (ts_guard_check(&api->a->cfg.guard, scan.aim, scan.data + g0, g1 - g0) != TS_GUARD_PASS) {
        atomic_fetch_add(&api->a->api_guard_drops, 1);
        TS_WARN("guard", "payment card data dropped from the local API");
        memset(&scan, 0, sizeof scan);
        status = 422; /* Unprocessable Content */
        snprintf(msg, sizeof msg,
                 "payment card data refused: a card number or magnetic stripe data is never "
                 "processed");
        goto out;
    }
    rc = ts_agent_scan(api->a, &scan, &session);
    if (rc == TS_OK && !session)
        session = ts_agent_session(api->a);
    if (rc != TS_OK || !session) {
        status = rc == TS_OK ? MHD_HTTP_INTERNAL_SERVER_ERROR : status_for(rc);
        snprintf(msg, sizeof msg, "scan failed: %s", ts_strerror(rc == TS_OK ? TS_ERR_NOMEM : rc));
        goto out;
    }
    ret = send_json(c, MHD_HTTP_OK, session, NULL);
out:
    if (*msg)
        ret = send_error(c, status, msg, NULL);
    free(session);
    json_decref(root);
    return ret;
}

static enum MHD_Result get_status(struct ts_api *api, struct MHD_Connection *c)
{
    ts_buf b = {0};
    enum MHD_Result ret;
    int rc = ts_agent_status_json(api->a, &b);
    if (rc == TS_OK && b.data)
        ret = send_json(c, MHD_HTTP_OK, b.data, NULL);
    else
        ret = send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, ts_strerror(rc ? rc : TS_ERR_NOMEM),
                         NULL);
    ts_buf_free(&b);
    return ret;
}

/* One Prometheus metric with its HELP and TYPE lines. */
static void metric(ts_buf *b, const char *name, const char *type, const char *help, double v)
{
    ts_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/*
 * GET /metrics in the Prometheus text format (version 0.0.4): what a
 * fleet dashboard watches per terminal. Certificate gauges are left out
 * while unknown rather than reported as 0, which would read as "expired".
 */
static enum MHD_Result get_metrics(struct ts_api *api, struct MHD_Connection *c)
{
    struct ts_agent *a = api->a;
    ts_buf b = {0};
    int own = 0, hub = 0;
    bool have_hub = false, have_own = ts_trust_days(a, &own, &have_hub, &hub);
    pthread_mutex_lock(&a->mu);
    int64_t cards = ts_cache_count(a->cache);
    bool up = a->link_online;
    uint64_t scans = a->scans, items = a->feed_items_applied, pages = a->feed_pages_applied;
    uint64_t hit = a->lookups_hit, miss = a->lookups_miss, live = ts_hublink_answers(a->hub);
    int64_t last_sync = a->last_sync_wall_ms;
    pthread_mutex_unlock(&a->mu);
    metric(&b, "tillside_cards", "gauge", "Customer cards in the local cache.", (double)cards);
    metric(&b, "tillside_link_up", "gauge", "1 when the last sync with the hub succeeded.",
           up ? 1 : 0);
    metric(&b, "tillside_scans_total", "counter", "Scans resolved since start.", (double)scans);
    metric(&b, "tillside_feed_items_applied_total", "counter",
           "Feed changes applied to the cache since start.", (double)items);
    metric(&b, "tillside_feed_pages_applied_total", "counter",
           "Feed pages applied to the cache since start.", (double)pages);
    ts_buf_printf(&b,
                  "# HELP tillside_lookups_total Lookups since start, by where the answer came "
                  "from.\n# TYPE tillside_lookups_total counter\n"
                  "tillside_lookups_total{result=\"hit\"} %" PRIu64 "\n"
                  "tillside_lookups_total{result=\"miss\"} %" PRIu64 "\n"
                  "tillside_lookups_total{result=\"live\"} %" PRIu64 "\n",
                  hit, miss, live);
    if (last_sync)
        metric(&b, "tillside_last_sync_timestamp_seconds", "gauge",
               "Wall-clock time of the last applied feed page.", (double)last_sync / 1000.0);
    /* In seconds, Prometheus' base unit (promtool check metrics refuses a
     * "days" metric), counted in whole days: alert on < 14 * 86400. */
    unsigned in_states[3];
    uint64_t guard_drops;
    ts_inputs_counts(a->inputs, in_states, &guard_drops);
    guard_drops += atomic_load(&a->api_guard_drops); /* POST /api/v1/scan too */
    ts_buf_printf(&b, "# HELP tillside_inputs Configured inputs (scanners) by state.\n"
                      "# TYPE tillside_inputs gauge\n");
    for (int st = 0; st < 3; st++)
        ts_buf_printf(&b, "tillside_inputs{state=\"%s\"} %u\n",
                      ts_input_state_name((enum ts_input_state)st), in_states[st]);
    metric(&b, "tillside_guard_drops_total", "counter",
           "Scans dropped by the payment card guard (card numbers, magnetic stripe data).",
           (double)guard_drops);
    if (have_own)
        metric(&b, "tillside_cert_remaining_seconds", "gauge",
               "Time until this terminal's certificate expires, in whole days.", own * 86400.0);
    if (have_hub)
        metric(&b, "tillside_hub_cert_remaining_seconds", "gauge",
               "Time until the hub's certificate expires, in whole days.", hub * 86400.0);
    ts_purchase_metrics(a, &b); /* outbox depth, oldest age, dead letters, uploads */
    if (!b.data)
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    ts_buf_free(&b);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    add_common_headers(resp);
    return queue(c, MHD_HTTP_OK, resp);
}

static enum MHD_Result handle_get(struct ts_api *api, struct MHD_Connection *c, enum route r)
{
    switch (r) {
    case R_PAGE:
        return send_page(api, c);
    case R_SESSION: {
        /* ?previous=N: the N-th card before the one on screen (session.c). */
        const char *prev = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "previous");
        uint64_t n = 0;
        if (prev && (!parse_u64(prev, &n) || n < 1 || n > TS_AGENT_RECENT))
            return send_error(c, MHD_HTTP_BAD_REQUEST, "previous must be 1 to 5", NULL);
        char *s = n ? ts_agent_previous(api->a, (int)n) : ts_agent_session(api->a);
        enum MHD_Result ret = s ? send_json(c, MHD_HTTP_OK, s, NULL) : send_empty(c, 204);
        free(s);
        return ret;
    }
    case R_EVENTS:
        return start_events(api, c);
    case R_STATUS:
        return get_status(api, c);
    case R_LIVEZ:
        return send_json(c, MHD_HTTP_OK, "{\"ok\":true}", NULL);
    case R_METRICS:
        return get_metrics(api, c);
    case R_READYZ:
        /* The API is only started once the cache is open. */
        return send_json(c, MHD_HTTP_OK, "{\"ready\":true}", NULL);
    default:
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "no handler", NULL);
    }
}

static enum MHD_Result handle_post(struct ts_api *api, struct MHD_Connection *c, struct req *r)
{
    if (r->too_big)
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than 64 KiB", NULL);
    if (r->nomem)
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    if (r->def->route == R_SCAN)
        return post_scan(api, c, &r->body);
    if (r->def->route == R_PURCHASES) {
        ts_buf out = {0};
        unsigned st = ts_purchase_http(api->a, r->body.data, r->body.len, &out);
        enum MHD_Result ret = send_json(c, st, out.data ? out.data : "{}", NULL);
        ts_buf_free(&out);
        return ret;
    }
    ts_agent_clear(api->a);
    return send_json(c, MHD_HTTP_OK, "{\"ok\":true}", NULL);
}

/* ---- guards ---------------------------------------------------------------*/

static bool host_allowed(const struct ts_api *api, const char *host)
{
    for (size_t i = 0; i < sizeof api->hosts / sizeof api->hosts[0]; i++)
        if (strcasecmp(host, api->hosts[i]) == 0)
            return true;
    return false;
}

/* Compares in time that depends only on the token's length, never on where
 * the first difference is. An empty token never matches. */
static bool token_equal(const char *got, size_t got_len, const char *want)
{
    size_t n = strlen(want);
    unsigned diff = (n == 0) | (got_len != n);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < got_len ? got[i] : 0);
    return diff == 0;
}

/* The API token, or for the clear endpoint alone also the page key the
 * associate page was served with (session.c). */
static bool bearer_ok(const struct ts_api *api, struct MHD_Connection *c, bool page_key_ok)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    size_t n = strlen(h);
    while (n && h[n - 1] == ' ')
        n--;
    return token_equal(h, n, api->a->token) || (page_key_ok && token_equal(h, n, api->a->page_key));
}

static bool method_allowed(const char *allow, const char *method)
{
    size_t m = strlen(method);
    for (const char *p = allow; *p;) {
        size_t n = strcspn(p, ", ");
        if (n == m && strncmp(p, method, m) == 0)
            return true;
        p += n;
        p += strspn(p, ", ");
    }
    return false;
}

/*
 * First call for a request, headers only: Host guard, routing, method,
 * token and declared body size. GETs are answered right here; a POST that
 * passes waits for its body. Refusals are queued before any body is read.
 */
static enum MHD_Result begin(struct ts_api *api, struct MHD_Connection *c, struct req *r,
                             const char *url, const char *method)
{
    char msg[160];
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    r->answered = true;
    if (!host || !*host)
        return send_error(c, MHD_HTTP_BAD_REQUEST, "missing Host header", NULL);
    if (!host_allowed(api, host)) {
        TS_WARN("api", "refused request for Host %.64s (DNS-rebinding guard)", host);
        snprintf(msg, sizeof msg, "Host must be 127.0.0.1:%d, localhost:%d or [::1]:%d", api->port,
                 api->port, api->port);
        return send_error(c, MHD_HTTP_MISDIRECTED_REQUEST, msg, NULL);
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0)
            r->def = &routes[i];
    if (!r->def)
        return send_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint", NULL);
    if (!method_allowed(r->def->allow, method)) {
        snprintf(msg, sizeof msg, "method %.16s not allowed; use %s", method, r->def->allow);
        return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, msg, r->def->allow);
    }
    if (strcmp(method, "POST") != 0)
        return handle_get(api, c, r->def->route);
    if (!bearer_ok(api, c, r->def->route == R_CLEAR)) {
        TS_WARN("api", "refused %s without a valid bearer token", url);
        return send_error(c, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token", NULL);
    }
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared;
    if (cl && parse_u64(cl, &declared) && declared > API_BODY_MAX)
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than 64 KiB", NULL);
    r->answered = false;
    return MHD_YES;
}

/*
 * MHD's access handler, called once with the headers, then once per body
 * chunk, then once more with no data. Bodies past API_BODY_MAX are drained
 * and dropped (MHD allows no answer mid-body) and get 413 at the end.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct ts_api *api = cls;
    struct req *r = *con_cls;
    (void)version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return begin(api, c, r, url, method);
    }
    if (*upload_size) {
        if (!r->answered && !r->too_big && !r->nomem) {
            if (r->body.len + *upload_size > API_BODY_MAX)
                r->too_big = true;
            else if (ts_buf_append(&r->body, upload, *upload_size) != TS_OK)
                r->nomem = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    r->answered = true;
    return handle_post(api, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *r = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (!r)
        return;
    ts_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

/* libmicrohttpd's own complaints, one log line each. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    ts_log(TS_LOG_WARN, "api", "%s", msg);
}

/* ---- start / stop ---------------------------------------------------------*/

/*
 * Binds and listens on host:port ourselves rather than letting MHD do it,
 * so a failure names the address and the OS reason, and so the ephemeral
 * port is known (and the Host guard armed) before the first request.
 * Only loopback addresses are accepted: this API has no other protection
 * against the shop network than not being on it.
 */
static int open_listener(const char *host, int port, int *fd_out, bool *v6, int *bound_port,
                         char *where, size_t wheresz, char *err, size_t errsz)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    char h[64];
    int fd = -1, rc = TS_OK;
    bool loopback;
    memset(&ss, 0, sizeof ss);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
        snprintf(h, sizeof h, "%.*s", (int)(hl - 2), host + 1);
    else
        ts_strlcpy(h, strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host, sizeof h);
    if (port < 0 || port > 65535) {
        snprintf(err, errsz, "api port %d out of range", port);
        return TS_ERR_CONFIG;
    }

    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        slen = sizeof *sin;
        *v6 = false;
        snprintf(where, wheresz, "%s:%d", h, port);
        loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        slen = sizeof *sin6;
        *v6 = true;
        snprintf(where, wheresz, "[%s]:%d", h, port);
        loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
    } else {
        snprintf(err, errsz, "api listen address \"%s\" is not an IP address", host);
        return TS_ERR_CONFIG;
    }
    if (!loopback) {
        snprintf(err, errsz, "api listen address %s is not a loopback address", h);
        return TS_ERR_CONFIG;
    }

    int one = 1;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (*v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &slen) != 0) {
        rc = errno == EACCES ? TS_ERR_PERM : TS_ERR_IO;
        snprintf(err, errsz, "cannot listen on %s: %s", where, strerror(errno));
        goto out;
    }
    *bound_port = ntohs(*v6 ? sin6->sin6_port : sin->sin_port);
    snprintf(where, wheresz, *v6 ? "[%s]:%d" : "%s:%d", h, *bound_port);
    *fd_out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

int ts_api_start(struct ts_agent *a, struct ts_api **out, char *err, size_t errsz)
{
    int fd = -1, port = 0, rc;
    bool v6 = false;
    char where[96];
    struct ts_api *api = calloc(1, sizeof *api);
    if (!api) {
        snprintf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    api->a = a;
    if (!(api->page = ts_agent_page_render(a, &api->page_len))) {
        snprintf(err, errsz, "out of memory");
        rc = TS_ERR_NOMEM;
        goto out;
    }
    rc = open_listener(a->cfg.api_host, a->cfg.api_port, &fd, &v6, &port, where, sizeof where, err,
                       errsz);
    if (rc != TS_OK)
        goto out;
    api->port = port;
    snprintf(api->hosts[0], sizeof api->hosts[0], "127.0.0.1:%d", port);
    snprintf(api->hosts[1], sizeof api->hosts[1], "localhost:%d", port);
    snprintf(api->hosts[2], sizeof api->hosts[2], "[::1]:%d", port);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    api->mhd =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
                         api, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
                         API_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, API_TIMEOUT_S,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_END);
    if (!api->mhd) {
        /* MHD leaves a listen socket it was given open when it fails to start. */
        snprintf(err, errsz, "cannot start the local API on %s (see the log)", where);
        rc = TS_ERR_IO;
        goto out;
    }
    fd = -1; /* MHD closes it in MHD_stop_daemon */
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port && info->port != port)
        TS_WARN("api", "MHD reports port %u, socket has %d", info->port, port);
    TS_INFO("api", "listening on http://%s/", where);
    *out = api;
    api = NULL;
out:
    if (fd >= 0)
        close(fd);
    if (api)
        free(api->page);
    free(api);
    return rc;
}

int ts_api_port(const struct ts_api *api)
{
    return api ? api->port : 0;
}

/*
 * Stops accepting and ends every stream: waiting readers notice the flag
 * within SSE_SLICE_MS (or at once when the bus was closed first), then
 * MHD_stop_daemon joins the connection threads.
 */
void ts_api_stop(struct ts_api *api)
{
    if (!api)
        return;
    atomic_store(&api->stopping, 1);
    MHD_stop_daemon(api->mhd);
    free(api->page);
    free(api);
}
