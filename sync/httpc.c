/*
 * HTTP/1.1 client for one base URL (see httpc.h): keeps one connection
 * alive, reconnects once when the kept one turns out dead, and puts every
 * failure into words an operator can act on ("connect to hub:8443 failed:
 * Connection refused", "TLS: certificate expired", "timed out after 300 ms").
 */
#include "httpc.h"
#include "url.h"
#include "http.h"
#include "tls.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_REQUEST_TIMEOUT_MS 30000

struct ts_httpc {
    bool https;
    char host[256];    /* as resolved: no IPv6 brackets */
    char hosthdr[300]; /* Host header value */
    char prefix[256];  /* path of the base URL, prepended to requests */
    int port;
    int connect_timeout_ms;
    size_t max_body;
    char ua[128];
    struct ts_tls_ctx *tls;
    struct ts_tls_conn *conn;
    unsigned long connects, resumed;
    const atomic_int *cancel; /* see ts_httpc_set_cancel */
    char err[512];
};

/* Reads are cut into slices this long when a cancel flag is set. */
#define CANCEL_SLICE_MS 200

/* The base URL (common/url.h's parser) into host, port, Host header and
 * path prefix. */
static enum ts_err parse_url(struct ts_httpc *c, const char *url, char *err, size_t errsz)
{
    struct ts_url u;
    enum ts_err rc = ts_url_parse(url, &u, err, errsz);
    if (rc != TS_OK)
        return rc;
    if (strlen(u.host) >= sizeof c->host || strlen(u.path) >= sizeof c->prefix) {
        ts_errf(err, errsz, "invalid base URL \"%s\"", url);
        return TS_ERR_CONFIG;
    }
    c->https = u.https;
    ts_strlcpy(c->host, u.host, sizeof c->host);
    ts_strlcpy(c->prefix, u.path, sizeof c->prefix);
    c->port = u.port;
    bool v6 = strchr(c->host, ':') != NULL;
    bool default_port = c->port == (c->https ? 443 : 80);
    snprintf(c->hosthdr, sizeof c->hosthdr, "%s%s%s", v6 ? "[" : "", c->host, v6 ? "]" : "");
    if (!default_port) {
        size_t n = strlen(c->hosthdr);
        snprintf(c->hosthdr + n, sizeof c->hosthdr - n, ":%d", c->port);
    }
    return TS_OK;
}

enum ts_err ts_httpc_new(const struct ts_httpc_opts *o, struct ts_httpc **out, char *err,
                         size_t errsz)
{
    if (!o || !o->base_url || !out) {
        ts_errf(err, errsz, "no base URL");
        return TS_ERR_CONFIG;
    }
    struct ts_httpc *c = calloc(1, sizeof *c);
    if (!c)
        return TS_ERR_NOMEM;
    int rc = parse_url(c, o->base_url, err, errsz);
    if (rc)
        goto fail;
    c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    c->max_body = o->max_body ? o->max_body : (size_t)64 << 20;
    ts_strlcpy(c->ua, o->user_agent && o->user_agent[0] ? o->user_agent : "tillside/" TS_VERSION,
               sizeof c->ua);
    if (strpbrk(c->ua, "\r\n")) {
        ts_errf(err, errsz, "invalid user agent");
        rc = TS_ERR_CONFIG;
        goto fail;
    }
    if (c->https) {
        struct ts_tls_opts to = {.ca_file = o->ca_file,
                                 .cert_file = o->cert_file,
                                 .key_file = o->key_file,
                                 .pin_sha256 = o->pin_sha256,
                                 .server = false,
                                 .no_resume = o->no_resume};
        if ((rc = ts_tls_ctx_new(&to, &c->tls, err, errsz)))
            goto fail;
    }
    *out = c;
    return TS_OK;
fail:
    ts_httpc_free(c);
    return rc;
}

void ts_httpc_disconnect(struct ts_httpc *c)
{
    if (!c)
        return;
    ts_tls_close(c->conn);
    c->conn = NULL;
}

void ts_httpc_free(struct ts_httpc *c)
{
    if (!c)
        return;
    ts_httpc_disconnect(c);
    ts_tls_ctx_free(c->tls);
    free(c);
}

const char *ts_httpc_error(const struct ts_httpc *c)
{
    return c ? c->err : "no client";
}

void ts_httpc_set_cancel(struct ts_httpc *c, const atomic_int *flag)
{
    if (c)
        c->cancel = flag;
}

static bool cancelled(const struct ts_httpc *c)
{
    return c->cancel && atomic_load(c->cancel) != 0;
}

unsigned long ts_httpc_connects(const struct ts_httpc *c)
{
    return c ? c->connects : 0;
}

unsigned long ts_httpc_resumed(const struct ts_httpc *c)
{
    return c ? c->resumed : 0;
}

void ts_http_resp_free(struct ts_http_resp *r)
{
    if (r) {
        ts_buf_free(&r->body);
        ts_buf_free(&r->head);
    }
}

const char *ts_http_resp_header(const struct ts_http_resp *r, const char *name, char *out,
                                size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = r->head.data, *end = p ? p + r->head.len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            size_t n = (size_t)(eol - v) < outsz - 1 ? (size_t)(eol - v) : outsz - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
        p = eol + 1;
    }
    return NULL;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - ts_now_mono_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static enum ts_err do_connect(struct ts_httpc *c, int64_t deadline, int timeout_ms)
{
    char e[384] = "";
    int left = remaining_ms(deadline);
    if (left == 0)
        goto timeout;
    int ct = c->connect_timeout_ms < left ? c->connect_timeout_ms : left;
    int rc = ts_tls_connect(c->tls, c->host, c->port, ct, &c->conn, e, sizeof e);
    if (rc == TS_OK) {
        c->connects++;
        c->resumed += ts_tls_resumed(c->conn);
        return TS_OK;
    }
    c->conn = NULL;
    if (rc == TS_ERR_TIMEOUT) {
        if (ct < left) { /* the connect budget ran out, not the request's */
            ts_errf(c->err, sizeof c->err, "connect to %s:%d timed out after %d ms", c->host,
                    c->port, ct);
            return rc;
        }
        goto timeout;
    }
    if (rc == TS_ERR_CERT || rc == TS_ERR_TLS)
        ts_errf(c->err, sizeof c->err, "TLS: %s (%s:%d)", e, c->host, c->port);
    else
        ts_errf(c->err, sizeof c->err, "%s", e[0] ? e : ts_strerror(rc));
    return rc;
timeout:
    ts_errf(c->err, sizeof c->err, "timed out after %d ms (connecting to %s:%d)", timeout_ms,
            c->host, c->port);
    return TS_ERR_TIMEOUT;
}

/* Retry-After: delay-seconds, or an HTTP-date turned into seconds from now. */
static int parse_retry_after(const char *v)
{
    if (!v)
        return -1;
    if (*v >= '0' && *v <= '9') {
        long n = 0;
        for (; *v >= '0' && *v <= '9'; v++)
            n = n > INT_MAX / 10 ? INT_MAX : n * 10 + (*v - '0');
        return *v == '\0' ? (int)(n > INT_MAX ? INT_MAX : n) : -1;
    }
    struct tm tm = {0};
    const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    int64_t d = (int64_t)timegm(&tm) - (int64_t)time(NULL);
    return d < 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
}

/*
 * Reads one response (skipping interim 1xx) into resp. *got_bytes tells
 * the caller whether the server said anything at all, which decides
 * whether a dead kept connection may be retried.
 */
static int read_response(struct ts_httpc *c, const char *method, int64_t deadline, int timeout_ms,
                         bool *got_bytes, struct ts_http_resp *resp)
{
    struct ts_http_msg m = {0};
    ts_buf in = {0};
    char buf[16384];
    size_t used = 0;
    int rc;
    bool head = strcmp(method, "HEAD") == 0;
    *got_bytes = false;
    for (;;) {
        if (head)
            ts_strlcpy(m.method, "HEAD", sizeof m.method);
        rc = ts_http_parse(&m, false, in.data, in.len, c->max_body, &used);
        if (rc == TS_OK && m.status < 200 && m.status != 101) {
            memmove(in.data, in.data + used, in.len - used); /* 100 Continue and friends */
            in.len -= used;
            ts_http_msg_clear(&m);
            continue;
        }
        if (rc != TS_ERR_AGAIN)
            break;
        int left = remaining_ms(deadline);
        if (c->cancel && left > CANCEL_SLICE_MS)
            left = CANCEL_SLICE_MS;
        long n = left ? ts_tls_read(c->conn, buf, sizeof buf, left) : TS_ERR_TIMEOUT;
        if (cancelled(c)) {
            rc = TS_ERR_CLOSED;
            ts_errf(c->err, sizeof c->err, "cancelled");
            goto out;
        }
        if (n == TS_ERR_TIMEOUT && remaining_ms(deadline) > 0)
            continue; /* one slice of a longer wait */
        if (n == TS_ERR_CLOSED) {
            if (in.len == 0) {
                rc = TS_ERR_CLOSED;
                ts_errf(c->err, sizeof c->err, "%s:%d closed the connection without answering",
                        c->host, c->port);
                goto out;
            }
            rc = ts_http_parse_eof(&m, in.data, in.len, c->max_body, &used);
            if (rc == TS_ERR_CLOSED)
                ts_errf(c->err, sizeof c->err, "%s:%d closed the connection mid-response", c->host,
                        c->port);
            break;
        }
        if (n == TS_ERR_TIMEOUT) {
            rc = TS_ERR_TIMEOUT;
            ts_errf(c->err, sizeof c->err, "timed out after %d ms (waiting for %s:%d)", timeout_ms,
                    c->host, c->port);
            goto out;
        }
        if (n < 0) {
            rc = (int)n;
            const char *why = ts_tls_error(c->conn);
            if (why[0]) /* the server's refusal after a TLS 1.3 handshake */
                ts_errf(c->err, sizeof c->err, "TLS: %s (%s:%d)", why, c->host, c->port);
            else
                ts_errf(c->err, sizeof c->err, "reading the response from %s:%d failed: %s",
                        c->host, c->port, ts_strerror(rc));
            goto out;
        }
        *got_bytes = true;
        if ((rc = ts_buf_append(&in, buf, (size_t)n)))
            goto out;
    }
    if (rc == TS_ERR_PROTO)
        ts_errf(c->err, sizeof c->err, "malformed HTTP response from %s:%d", c->host, c->port);
    else if (rc == TS_ERR_FULL)
        ts_errf(c->err, sizeof c->err, "response from %s:%d exceeds the size limit (%zu bytes)",
                c->host, c->port, c->max_body);
    if (rc)
        goto out;
    resp->status = m.status;
    resp->body = m.body;
    m.body = (ts_buf){0};
    const char *ct = ts_http_header(&m, "Content-Type");
    ts_strlcpy(resp->content_type, ct ? ct : "", sizeof resp->content_type);
    const char *ce = ts_http_header(&m, "Content-Encoding");
    ts_strlcpy(resp->content_encoding, ce ? ce : "", sizeof resp->content_encoding);
    resp->retry_after_s = parse_retry_after(ts_http_header(&m, "Retry-After"));
    const char *date = ts_http_header(&m, "Date");
    struct tm dtm = {0};
    const char *dend = date ? strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &dtm) : NULL;
    resp->date_s = dend && !*dend ? (int64_t)timegm(&dtm) : 0;
    for (size_t i = 0; i < m.nheaders && rc == TS_OK; i++)
        rc = ts_buf_printf(&resp->head, "%s: %s\n", m.headers[i].name, m.headers[i].value);
    if (rc)
        goto out;
    if (!m.keep_alive || used != in.len)
        ts_httpc_disconnect(c); /* closing, or sent more than it was asked for */
out:
    ts_http_msg_clear(&m);
    ts_buf_free(&in);
    return rc;
}

static bool valid_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
            strchr("()<>@,;:\\\"/[]?={}", *s))
            return false;
    return true;
}

static bool valid_target(const char *s)
{
    if (!s || (*s != '/' && *s != '*'))
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

enum ts_err ts_httpc_request(struct ts_httpc *c, const char *method, const char *path_query,
                             const char *extra_headers, const char *content_type, const void *body,
                             size_t body_len, int timeout_ms, struct ts_http_resp *resp)
{
    if (!c || !resp)
        return TS_ERR_INVAL;
    memset(resp, 0, sizeof *resp);
    resp->retry_after_s = -1;
    c->err[0] = '\0';
    if (!valid_token(method) || !valid_target(path_query) || (body_len && !body) ||
        (content_type && strpbrk(content_type, "\r\n"))) {
        ts_errf(c->err, sizeof c->err, "invalid request");
        return TS_ERR_INVAL;
    }
    if (timeout_ms <= 0)
        timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
    int64_t deadline = ts_now_mono_ms() + timeout_ms;

    ts_buf req = {0};
    int rc = ts_buf_printf(&req, "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n", method,
                           c->prefix, path_query, c->hosthdr, c->ua);
    bool wants_body = body_len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                      strcmp(method, "PATCH") == 0;
    if (!rc && content_type && content_type[0] && wants_body)
        rc = ts_buf_printf(&req, "Content-Type: %s\r\n", content_type);
    if (!rc && wants_body)
        rc = ts_buf_printf(&req, "Content-Length: %zu\r\n", body_len);
    if (!rc && extra_headers && extra_headers[0]) {
        size_t xl = strlen(extra_headers);
        rc = ts_buf_append(&req, extra_headers, xl);
        if (!rc && (xl < 2 || strcmp(extra_headers + xl - 2, "\r\n") != 0))
            rc = ts_buf_puts(&req, "\r\n");
    }
    if (!rc)
        rc = ts_buf_puts(&req, "\r\n");
    bool body_apart = body_len > 65536;
    if (!rc && body_len && !body_apart)
        rc = ts_buf_append(&req, body, body_len);
    if (rc)
        goto out;

    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = c->conn != NULL, got_bytes = false;
        if (!c->conn && (rc = do_connect(c, deadline, timeout_ms)))
            goto out;
        int left = remaining_ms(deadline);
        rc = left ? ts_tls_write(c->conn, req.data, req.len, left) : TS_ERR_TIMEOUT;
        if (rc == TS_OK && body_apart)
            rc = ts_tls_write(c->conn, body, body_len, remaining_ms(deadline));
        if (rc != TS_OK && rc != TS_ERR_TIMEOUT && reused && attempt == 0) {
            ts_httpc_disconnect(c); /* the kept connection had died: once more, fresh */
            continue;
        }
        /* Even when the write failed, the server may have answered early
         * (413 for a body it will not take) before closing. */
        int wrc = rc;
        rc = read_response(c, method, deadline, timeout_ms, &got_bytes, resp);
        if (rc == TS_OK)
            goto out;
        if (rc == TS_ERR_CERT && !reused) {
            /* A TLS 1.3 server judges our certificate after the handshake
             * ended on our side: its refusal, on the first read, means this
             * connection was never accepted, as a refused TLS 1.2
             * handshake is not. Counted the same way. */
            c->connects--;
            c->resumed -= ts_tls_resumed(c->conn);
        }
        if (rc == TS_ERR_CLOSED && !got_bytes && wrc == TS_OK && reused && attempt == 0 &&
            !cancelled(c)) {
            ts_httpc_disconnect(c);
            continue;
        }
        if (wrc == TS_ERR_TIMEOUT || rc == TS_ERR_TIMEOUT) {
            rc = TS_ERR_TIMEOUT;
            ts_errf(c->err, sizeof c->err, "timed out after %d ms (talking to %s:%d)", timeout_ms,
                    c->host, c->port);
        } else if (wrc != TS_OK && !got_bytes && rc != TS_ERR_CERT) {
            /* (a TLS 1.3 server's refusal can reset the connection under
             * our request; its alert, read after, says more) */
            rc = wrc;
            ts_errf(c->err, sizeof c->err, "sending the request to %s:%d failed: %s", c->host,
                    c->port, ts_strerror(wrc));
        }
        break;
    }
    ts_httpc_disconnect(c);
out:
    if (rc && !c->err[0])
        ts_errf(c->err, sizeof c->err, "%s", ts_strerror(rc));
    ts_buf_free(&req);
    return rc;
}
