/*
 * The agent's loopback HTTP API (PRODUCT.md §4.4, PROTOCOL.md "Local API")
 * on libmicrohttpd. One thread per connection, so a Server-Sent Events
 * stream may simply block in its content reader while it waits on the bus.
 *
 * Every request passes the Host guard first (a DNS-rebinding page in the
 * associate's browser cannot name our loopback address); every POST needs
 * the bearer token. Nothing ever sends Access-Control-Allow-Origin.
 */
#include "api_int.h"
#include "purchase.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define API_BODY_MAX (64 * 1024)
/* Connections (a thread each). Event streams take at most SSE_MAX of them
 * (api_int.h); the headroom above that is for a burst of connections that
 * are still on their way in or out — a flood of stream attempts from one
 * process outpaces the threads ending the streams it replaces — so the page
 * and the other requests are still accepted meanwhile. */
#define API_CONN_LIMIT 256u
#define API_TIMEOUT_S 30u /* idle limit for ordinary requests */

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
    R_PURCHASES,
    R_OFFER_REDEEM,
    R_RETURNS,
    R_CONSENT
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
    {"/api/v1/purchases", R_PURCHASES, "POST"},        /* purchase.c */
    {"/api/v1/returns", R_RETURNS, "POST"},            /* api_returns.c */
    {"/api/v1/consent", R_CONSENT, "POST"},            /* api_consent.c */
    {"/api/v1/offers/redeem", R_OFFER_REDEEM, "POST"}, /* api_offers.c */
};

/* Per-request state, lives from the first handler call to NOTIFY_COMPLETED. */
struct req {
    const struct route_def *def;
    bool answered; /* a response was queued on the first call */
    bool too_big;
    bool nomem;
    ts_buf body;
};

/* ---- handlers -------------------------------------------------------------*/

static enum MHD_Result handle_get(struct ts_api *api, struct MHD_Connection *c, enum route r)
{
    switch (r) {
    case R_PAGE:
        return ts_api_send_page(api, c);
    case R_SESSION: {
        /* ?previous=N: the N-th card before the one on screen (session.c). */
        const char *prev = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "previous");
        uint64_t n = 0;
        if (prev && (!ts_api_parse_u64(prev, &n) || n < 1 || n > TS_AGENT_RECENT))
            return ts_api_send_error(c, MHD_HTTP_BAD_REQUEST, "previous must be 1 to 5", NULL);
        char *s = n ? ts_agent_previous(api->a, (int)n) : ts_agent_session(api->a);
        enum MHD_Result ret =
            s ? ts_api_send_json(c, MHD_HTTP_OK, s, NULL) : ts_api_send_empty(c, 204);
        free(s);
        return ret;
    }
    case R_EVENTS:
        return ts_api_start_events(api, c);
    case R_STATUS:
        return ts_api_get_status(api, c);
    case R_LIVEZ:
        return ts_api_send_json(c, MHD_HTTP_OK, "{\"ok\":true}", NULL);
    case R_METRICS:
        return ts_api_get_metrics(api, c);
    case R_READYZ:
        /* The API is only started once the cache is open. */
        return ts_api_send_json(c, MHD_HTTP_OK, "{\"ready\":true}", NULL);
    default:
        return ts_api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "no handler", NULL);
    }
}

static enum MHD_Result handle_post(struct ts_api *api, struct MHD_Connection *c, struct req *r)
{
    if (r->too_big)
        return ts_api_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than 64 KiB",
                                 NULL);
    if (r->nomem)
        return ts_api_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
    if (r->def->route == R_SCAN)
        return ts_api_post_scan(api, c, &r->body);
    if (r->def->route == R_OFFER_REDEEM)
        return ts_api_post_offer_redeem(api, c, &r->body);
    if (r->def->route == R_PURCHASES || r->def->route == R_RETURNS || r->def->route == R_CONSENT) {
        if (!api->dep.purch) /* run without a journal (tests of the other endpoints) */
            return ts_api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no purchase journal", NULL);
        ts_buf out = {0};
        ts_till_submit_fn fn = r->def->route == R_RETURNS   ? ts_return_submit
                               : r->def->route == R_CONSENT ? ts_consent_submit
                                                            : ts_purchase_submit_fields;
        unsigned st = ts_till_http(api->dep.purch, fn, r->body.data, r->body.len, &out);
        enum MHD_Result ret = ts_api_send_json(c, st, out.data ? out.data : "{}", NULL);
        ts_buf_free(&out);
        return ret;
    }
    ts_agent_clear(api->a);
    return ts_api_send_json(c, MHD_HTTP_OK, "{\"ok\":true}", NULL);
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

/* The API token, or for the clear and consent endpoints also the page key
 * the associate page was served with (session.c). */
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
        return ts_api_send_error(c, MHD_HTTP_BAD_REQUEST, "missing Host header", NULL);
    if (!host_allowed(api, host)) {
        TS_WARN("api", "refused request for Host %.64s (DNS-rebinding guard)", host);
        snprintf(msg, sizeof msg, "Host must be 127.0.0.1:%d, localhost:%d or [::1]:%d", api->port,
                 api->port, api->port);
        return ts_api_send_error(c, MHD_HTTP_MISDIRECTED_REQUEST, msg, NULL);
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0)
            r->def = &routes[i];
    if (!r->def)
        return ts_api_send_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint", NULL);
    if (!method_allowed(r->def->allow, method)) {
        snprintf(msg, sizeof msg, "method %.16s not allowed; use %s", method, r->def->allow);
        return ts_api_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, msg, r->def->allow);
    }
    if (strcmp(method, "POST") != 0)
        return handle_get(api, c, r->def->route);
    if (!bearer_ok(api, c, r->def->route == R_CLEAR || r->def->route == R_CONSENT)) {
        TS_WARN("api", "refused %s without a valid bearer token", url);
        return ts_api_send_error(c, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token", NULL);
    }
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared;
    if (cl && ts_api_parse_u64(cl, &declared) && declared > API_BODY_MAX)
        return ts_api_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than 64 KiB",
                                 NULL);
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
    /* A client that went away mid-response (an event stream closed by its
     * page, or by us for a newer one) is routine: a flood of them must not
     * flood the log. */
    ts_log(strstr(msg, "no longer available") ? TS_LOG_DEBUG : TS_LOG_WARN, "api", "%s", msg);
}

/* ---- start / stop ---------------------------------------------------------*/

/*
 * Binds and listens on host:port ourselves rather than letting MHD do it,
 * so a failure names the address and the OS reason, and so the ephemeral
 * port is known (and the Host guard armed) before the first request.
 * Only loopback addresses are accepted: this API has no other protection
 * against the shop network than not being on it.
 */
static enum ts_err open_listener(const char *host, int port, int *fd_out, bool *v6, int *bound_port,
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

enum ts_err ts_api_start(const struct ts_agent_parts *deps, struct ts_api **out, char *err,
                         size_t errsz)
{
    struct ts_agent *a = deps->core;
    int fd = -1, port = 0, rc;
    bool v6 = false;
    char where[96];
    struct ts_api *api = calloc(1, sizeof *api);
    if (!api) {
        snprintf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    api->a = a;
    api->dep = *deps;
    pthread_mutex_init(&api->sse_mu, NULL);
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
    if (api) {
        free(api->page);
        pthread_mutex_destroy(&api->sse_mu);
    }
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
    pthread_mutex_destroy(&api->sse_mu);
    free(api->page);
    free(api);
}
