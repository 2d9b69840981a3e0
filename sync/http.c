/*
 * HTTP/1.1 message parsing (RFC 9112): one request or response head, then a
 * Content-Length, chunked or read-until-close body. Strict on purpose: the
 * hub faces the network, so anything a smuggling attack relies on (obs-fold,
 * bare CR or LF, conflicting lengths, unknown transfer codings) is refused.
 */
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* BODY_TOO_LARGE: the head was fine but declares a body over the limit;
 * head_len stays set so a server can answer 413 rather than 431. */
enum body_mode {
    BODY_UNKNOWN = 0,
    BODY_NONE,
    BODY_LENGTH,
    BODY_CHUNKED,
    BODY_UNTIL_CLOSE,
    BODY_TOO_LARGE
};

#define CHUNK_LINE_MAX 4096 /* chunk-size line with extensions */
#define TRAILER_MAX 4096    /* trailer section after the last chunk */

/* RFC 9110 §5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values and reason phrases: HTAB, SP, VCHAR and obs-text. */
static bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_hex(unsigned char c, unsigned *v)
{
    if (c >= '0' && c <= '9')
        *v = c - '0';
    else if (c >= 'a' && c <= 'f')
        *v = c - 'a' + 10u;
    else if (c >= 'A' && c <= 'F')
        *v = c - 'A' + 10u;
    else
        return false;
    return true;
}

void ts_http_msg_clear(struct ts_http_msg *m)
{
    if (!m)
        return;
    free(m->ps.store);
    ts_buf_free(&m->body);
    memset(m, 0, sizeof *m);
}

/* Drops what a head parse filled in, keeping a response's m->method (the
 * caller's note that this answers a HEAD request) and the scan progress. */
static void unfill(struct ts_http_msg *m, bool is_request)
{
    free(m->ps.store);
    m->ps.store = NULL;
    m->target = NULL;
    m->nheaders = 0;
    m->status = 0;
    m->minor_version = 0;
    m->keep_alive = false;
    if (is_request)
        m->method[0] = '\0';
}

/*
 * Looks for the blank line ending the head, resuming where the last call
 * stopped. Every CR must start a CRLF and every LF end one, which rejects
 * bare CR and bare LF line endings before anything else looks at the bytes.
 */
static enum ts_err scan_head(struct ts_http_msg *m, const char *buf, size_t len)
{
    size_t i = m->ps.head_scan;
    if (i < m->ps.head_start)
        i = m->ps.head_start;
    for (; i < len; i++) {
        char c = buf[i];
        if (c == '\n')
            return TS_ERR_PROTO; /* a CRLF's LF is stepped over below */
        if (c != '\r')
            continue;
        if (i + 1 >= len)
            break;
        if (buf[i + 1] != '\n')
            return TS_ERR_PROTO;
        if (i >= m->ps.head_start + 2 && buf[i - 2] == '\r' && buf[i - 1] == '\n') {
            m->ps.head_len = i + 2 - m->ps.head_start;
            m->ps.head_scan = i + 2;
            return TS_OK;
        }
        i++;
    }
    m->ps.head_scan = i;
    return TS_ERR_AGAIN;
}

static enum ts_err parse_version(const char *s, size_t n, int *minor)
{
    if (n != 8 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1'))
        return TS_ERR_PROTO;
    *minor = s[7] - '0';
    return TS_OK;
}

/* method SP request-target SP HTTP-version */
static enum ts_err parse_request_line(struct ts_http_msg *m, char *line, size_t n)
{
    char *sp1 = memchr(line, ' ', n);
    if (!sp1 || sp1 == line || (size_t)(sp1 - line) >= sizeof m->method)
        return TS_ERR_PROTO;
    for (char *p = line; p < sp1; p++)
        if (!is_tchar((unsigned char)*p))
            return TS_ERR_PROTO;
    char *tgt = sp1 + 1, *end = line + n;
    char *sp2 = tgt;
    while (sp2 < end && *sp2 != ' ') {
        if ((unsigned char)*sp2 <= 0x20 || (unsigned char)*sp2 >= 0x7f)
            return TS_ERR_PROTO;
        sp2++;
    }
    if (sp2 == tgt || sp2 == end)
        return TS_ERR_PROTO;
    if (parse_version(sp2 + 1, (size_t)(end - sp2 - 1), &m->minor_version))
        return TS_ERR_PROTO;
    memcpy(m->method, line, (size_t)(sp1 - line));
    m->method[sp1 - line] = '\0';
    *sp2 = '\0';
    m->target = tgt;
    return TS_OK;
}

/* HTTP-version SP 3DIGIT [SP reason-phrase] (a missing SP after the code is
 * tolerated: some servers send "HTTP/1.1 200"). */
static enum ts_err parse_status_line(struct ts_http_msg *m, const char *line, size_t n)
{
    if (n < 12 || parse_version(line, 8, &m->minor_version) || line[8] != ' ')
        return TS_ERR_PROTO;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return TS_ERR_PROTO;
        st = st * 10 + (line[i] - '0');
    }
    if (st < 100)
        return TS_ERR_PROTO;
    if (n > 12 && line[12] != ' ')
        return TS_ERR_PROTO;
    for (size_t i = 13; i < n; i++)
        if (!is_field_char((unsigned char)line[i]))
            return TS_ERR_PROTO;
    m->status = st;
    return TS_OK;
}

/* One "name: value" line, NUL-terminated in place; value trimmed of OWS. */
static enum ts_err parse_field(char *line, size_t n, char **name, char **value)
{
    if (n == 0 || line[0] == ' ' || line[0] == '\t')
        return TS_ERR_PROTO; /* obs-fold or whitespace before the name */
    char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return TS_ERR_PROTO;
    for (char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return TS_ERR_PROTO;
    char *v = colon + 1, *end = line + n;
    for (char *p = v; p < end; p++)
        if (!is_field_char((unsigned char)*p))
            return TS_ERR_PROTO;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *colon = '\0';
    *end = '\0';
    *name = line;
    *value = v;
    return TS_OK;
}

/* Content-Length: 1*DIGIT, or a list of identical values ("5, 5"). Values
 * too large for size_t saturate so the caller reports a limit, not junk. */
static enum ts_err parse_clen(const char *v, size_t *out, bool *have)
{
    const char *p = v;
    for (;;) {
        size_t n = 0;
        const char *d = p;
        while (*p >= '0' && *p <= '9') {
            size_t digit = (size_t)(*p - '0');
            n = n > (SIZE_MAX - digit) / 10 ? SIZE_MAX : n * 10 + digit;
            p++;
        }
        if (p == d)
            return TS_ERR_PROTO;
        if (*have && *out != n)
            return TS_ERR_PROTO; /* conflicting Content-Length */
        *out = n;
        *have = true;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return TS_OK;
        if (*p != ',')
            return TS_ERR_PROTO;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
    }
}

/* Does a comma-separated header value list contain token (any case)? */
static bool has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return true;
    }
    return false;
}

/*
 * Parses the head at p[0..n) (ending in CRLFCRLF, CR/LF already checked)
 * into m, and decides the body framing. On error m holds nothing new.
 */
static enum ts_err parse_head(struct ts_http_msg *m, bool is_request, const char *p, size_t n,
                              size_t max_body)
{
    int rc = TS_OK;
    char *store = malloc(n + 1);
    if (!store)
        return TS_ERR_NOMEM;
    memcpy(store, p, n);
    store[n] = '\0';
    m->ps.store = store;
    m->nheaders = 0;

    char *line = store, *end = store + n - 2; /* drop the final empty line */
    bool first = true, have_clen = false, chunked = false, conn_close = false, conn_ka = false;
    int n_te = 0;
    size_t clen = 0;
    while (line < end) {
        char *eol = memchr(line, '\r', (size_t)(end + 2 - line)); /* each CR starts a CRLF */
        size_t ln = (size_t)(eol - line);
        *eol = '\0';
        if (first) {
            rc = is_request ? parse_request_line(m, line, ln) : parse_status_line(m, line, ln);
            if (rc)
                goto out;
            first = false;
        } else {
            char *name, *value;
            if ((rc = parse_field(line, ln, &name, &value)))
                goto out;
            if (m->nheaders >= TS_HTTP_MAX_HEADERS) {
                rc = TS_ERR_FULL;
                goto out;
            }
            m->headers[m->nheaders].name = name;
            m->headers[m->nheaders].value = value;
            m->nheaders++;
            if (strcasecmp(name, "content-length") == 0) {
                if ((rc = parse_clen(value, &clen, &have_clen)))
                    goto out;
            } else if (strcasecmp(name, "transfer-encoding") == 0) {
                n_te++;
                chunked = strcasecmp(value, "chunked") == 0;
                if (!chunked || n_te > 1) {
                    rc = TS_ERR_PROTO; /* only a single "chunked" is understood */
                    goto out;
                }
            } else if (strcasecmp(name, "connection") == 0) {
                conn_close |= has_token(value, "close");
                conn_ka |= has_token(value, "keep-alive");
            }
        }
        line = eol + 2;
    }
    if (first) {
        rc = TS_ERR_PROTO;
        goto out;
    }
    if (chunked && have_clen) {
        rc = TS_ERR_PROTO; /* RFC 9112 §6.3: a smuggling attempt until proven otherwise */
        goto out;
    }
    /* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty
     * framing (1.0 has no chunked coding; a proxy in between may frame it
     * otherwise). Refused; the server answers 400 and closes. */
    if (n_te && m->minor_version == 0) {
        rc = TS_ERR_PROTO;
        goto out;
    }

    int mode;
    bool no_body = !is_request && (strcmp(m->method, "HEAD") == 0 || m->status < 200 ||
                                   m->status == 204 || m->status == 304);
    if (no_body)
        mode = BODY_NONE;
    else if (chunked)
        mode = BODY_CHUNKED;
    else if (have_clen)
        mode = clen ? BODY_LENGTH : BODY_NONE;
    else
        mode = is_request ? BODY_NONE : BODY_UNTIL_CLOSE;
    if (mode == BODY_LENGTH && clen > max_body) {
        m->ps.body_mode = BODY_TOO_LARGE;
        rc = TS_ERR_FULL;
        goto out;
    }
    m->keep_alive = m->minor_version == 1 ? !conn_close : (conn_ka && !conn_close);
    if (mode == BODY_UNTIL_CLOSE)
        m->keep_alive = false;
    m->ps.body_mode = mode;
    m->ps.clen = clen;
out:
    if (rc)
        unfill(m, is_request);
    return rc;
}

/*
 * Walks chunks from m->ps.chunk_pos. With out == NULL it validates and
 * records progress (so the next call resumes at the first incomplete chunk);
 * with out it appends the data of an already validated body. *end gets the
 * offset just past the trailer section.
 */
static enum ts_err walk_chunks(struct ts_http_msg *m, const char *buf, size_t len, size_t max_body,
                               ts_buf *out, size_t *end)
{
    size_t pos = m->ps.chunk_pos, body = m->ps.chunk_body;
    for (;;) {
        size_t lim = len - pos < CHUNK_LINE_MAX ? len : pos + CHUNK_LINE_MAX;
        const char *cr = memchr(buf + pos, '\r', lim - pos);
        if (!cr)
            return lim - pos >= CHUNK_LINE_MAX ? TS_ERR_PROTO : TS_ERR_AGAIN;
        if ((size_t)(cr - buf) + 1 >= len)
            return TS_ERR_AGAIN;
        if (cr[1] != '\n')
            return TS_ERR_PROTO;
        size_t eol = (size_t)(cr - buf), size = 0, i = pos;
        unsigned v;
        while (i < eol && is_hex((unsigned char)buf[i], &v)) {
            if (size > (SIZE_MAX >> 4))
                return TS_ERR_FULL;
            size = size << 4 | v;
            i++;
        }
        if (i == pos)
            return TS_ERR_PROTO;
        while (i < eol && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        if (i < eol && buf[i] != ';')
            return TS_ERR_PROTO;
        for (; i < eol; i++) /* chunk extensions are ignored, but must be clean */
            if (!is_field_char((unsigned char)buf[i]))
                return TS_ERR_PROTO;
        size_t data = eol + 2;
        if (size == 0) {
            /* trailer-section CRLF: fields we validate and drop */
            size_t t = data;
            for (;;) {
                size_t avail = len - t, scan = avail < TRAILER_MAX + 2 ? avail : TRAILER_MAX + 2;
                const char *tcr = memchr(buf + t, '\r', scan);
                if (!tcr)
                    return scan == TRAILER_MAX + 2 ? TS_ERR_FULL : TS_ERR_AGAIN;
                size_t te = (size_t)(tcr - buf);
                if (te + 1 >= len)
                    return TS_ERR_AGAIN;
                if (tcr[1] != '\n' || memchr(buf + t, '\n', te - t))
                    return TS_ERR_PROTO;
                if (te == t) {
                    *end = te + 2;
                    return TS_OK;
                }
                if (te - data > TRAILER_MAX)
                    return TS_ERR_FULL;
                char line[TRAILER_MAX + 1];
                char *name, *value;
                memcpy(line, buf + t, te - t);
                line[te - t] = '\0';
                if (parse_field(line, te - t, &name, &value))
                    return TS_ERR_PROTO;
                t = te + 2;
            }
        }
        if (size > max_body - body)
            return TS_ERR_FULL;
        if (len - data < size || len - data - size < 2)
            return TS_ERR_AGAIN;
        if (buf[data + size] != '\r' || buf[data + size + 1] != '\n')
            return TS_ERR_PROTO;
        if (out && ts_buf_append(out, buf + data, size))
            return TS_ERR_NOMEM;
        body += size;
        pos = data + size + 2;
        if (!out) {
            m->ps.chunk_pos = pos;
            m->ps.chunk_body = body;
        }
    }
}

/* Fills m from a complete message: head re-parsed (it was freed while
 * waiting for the body), body copied or de-chunked. */
static enum ts_err finish(struct ts_http_msg *m, bool is_request, const char *buf, size_t body_end,
                          size_t max_body, size_t *consumed)
{
    size_t start = m->ps.head_start, hl = m->ps.head_len, b0 = start + hl;
    int mode = m->ps.body_mode;
    int rc;
    if (!m->ps.store && (rc = parse_head(m, is_request, buf + start, hl, max_body)))
        return rc;
    ts_buf_reset(&m->body);
    if (mode == BODY_LENGTH || mode == BODY_UNTIL_CLOSE) {
        if ((rc = ts_buf_append(&m->body, buf + b0, body_end - b0)))
            goto out;
    } else if (mode == BODY_CHUNKED) {
        size_t end, total = m->ps.chunk_body;
        m->ps.chunk_pos = b0;
        m->ps.chunk_body = 0;
        if ((rc = ts_buf_reserve(&m->body, total)) ||
            (rc = walk_chunks(m, buf, body_end, max_body, &m->body, &end)))
            goto out;
    }
    if (m->body.data)
        m->body.data[m->body.len] = '\0'; /* reserve alone does not terminate */
    *consumed = body_end;
    rc = TS_OK;
out:
    if (rc) {
        unfill(m, is_request);
        ts_buf_free(&m->body);
    }
    return rc;
}

enum ts_err ts_http_parse(struct ts_http_msg *m, bool is_request, const char *buf, size_t len,
                          size_t max_body, size_t *consumed)
{
    if (!m || (!buf && len) || !consumed)
        return TS_ERR_INVAL;
    if (m->ps.len > len || m->ps.head_scan > len || m->ps.chunk_pos > len) {
        /* not the same bytes as before (or never zeroed): start over */
        unfill(m, is_request);
        memset(&m->ps, 0, sizeof m->ps);
    }
    m->ps.len = len;
    int rc;

    if (m->ps.head_len == 0) {
        if (is_request && m->ps.head_scan == 0) {
            /* RFC 9112 §2.2: ignore empty lines before a request-line */
            size_t s = m->ps.head_start;
            while (len - s >= 2 && buf[s] == '\r' && buf[s + 1] == '\n' && s < TS_HTTP_MAX_HEAD)
                s += 2;
            m->ps.head_start = s;
            if (len - s < 2)
                return TS_ERR_AGAIN;
        }
        rc = scan_head(m, buf, len);
        if (rc == TS_ERR_AGAIN && len - m->ps.head_start > TS_HTTP_MAX_HEAD)
            return TS_ERR_FULL;
        if (rc)
            return rc;
        if (m->ps.head_len > TS_HTTP_MAX_HEAD) {
            m->ps.head_len = 0;
            return TS_ERR_FULL;
        }
        if ((rc = parse_head(m, is_request, buf + m->ps.head_start, m->ps.head_len, max_body))) {
            if (m->ps.body_mode != BODY_TOO_LARGE)
                m->ps.head_len = 0;
            return rc;
        }
        m->ps.chunk_pos = m->ps.head_start + m->ps.head_len;
        m->ps.chunk_body = 0;
    }

    size_t b0 = m->ps.head_start + m->ps.head_len, end = b0;
    switch (m->ps.body_mode) {
    case BODY_TOO_LARGE:
        return TS_ERR_FULL;
    case BODY_NONE:
        break;
    case BODY_LENGTH:
        if (len - b0 < m->ps.clen) {
            rc = TS_ERR_AGAIN;
            goto again;
        }
        end = b0 + m->ps.clen;
        break;
    case BODY_CHUNKED:
        rc = walk_chunks(m, buf, len, max_body, NULL, &end);
        /* Framing may cost at most ~8 bytes per body byte (1-byte chunks):
         * chunk extensions must not let a peer make us buffer without end. */
        if (rc == TS_ERR_AGAIN && max_body < SIZE_MAX / 16 &&
            m->ps.chunk_pos - b0 > 8 * max_body + 65536)
            rc = TS_ERR_FULL;
        if (rc)
            goto again;
        break;
    default: /* BODY_UNTIL_CLOSE: only ts_http_parse_eof can end it */
        rc = len - b0 > max_body ? TS_ERR_FULL : TS_ERR_AGAIN;
        goto again;
    }
    return finish(m, is_request, buf, end, max_body, consumed);

again:
    /* Holding the parsed head while bytes trickle in would tie memory to
     * slow peers; keep only the numbers and parse the head again at the end. */
    unfill(m, is_request);
    return rc;
}

enum ts_err ts_http_parse_eof(struct ts_http_msg *m, const char *buf, size_t len, size_t max_body,
                              size_t *consumed)
{
    int rc = ts_http_parse(m, false, buf, len, max_body, consumed);
    if (rc != TS_ERR_AGAIN)
        return rc;
    if (m->ps.head_len == 0 || m->ps.body_mode != BODY_UNTIL_CLOSE)
        return TS_ERR_CLOSED; /* truncated message */
    return finish(m, false, buf, len, max_body, consumed);
}

const char *ts_http_header(const struct ts_http_msg *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (size_t i = 0; i < m->nheaders; i++)
        if (strcasecmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

enum ts_err ts_http_target_path(const char *target, char *path, size_t pathsz)
{
    if (!target || !path || pathsz == 0)
        return TS_ERR_INVAL;
    size_t n = strcspn(target, "?#");
    if (n >= pathsz)
        return TS_ERR_INVAL;
    memcpy(path, target, n);
    path[n] = '\0';
    return TS_OK;
}

/* Percent-decodes s[0..n) into out ('+' is a space in query strings).
 * Refuses broken escapes and %00, which would cut a C string short. */
static enum ts_err url_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            unsigned hi, lo;
            if (n - i < 3 || !is_hex((unsigned char)s[i + 1], &hi) ||
                !is_hex((unsigned char)s[i + 2], &lo) || (hi | lo) == 0)
                return TS_ERR_INVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= outsz)
            return TS_ERR_INVAL;
        out[o++] = c;
    }
    out[o] = '\0';
    return TS_OK;
}

enum ts_err ts_http_query_param(const char *target, const char *name, char *out, size_t outsz)
{
    if (!target || !name || !out || outsz == 0)
        return TS_ERR_INVAL;
    const char *q = strchr(target, '?');
    if (!q)
        return TS_ERR_NOTFOUND;
    q++;
    size_t qlen = strcspn(q, "#");
    const char *end = q + qlen;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        char key[256];
        if (ke > q && url_decode(q, (size_t)(ke - q), key, sizeof key) == TS_OK &&
            strcmp(key, name) == 0) {
            if (!eq) {
                out[0] = '\0';
                return TS_OK;
            }
            return url_decode(eq + 1, (size_t)(pe - eq - 1), out, outsz);
        }
        q = amp ? amp + 1 : end;
    }
    return TS_ERR_NOTFOUND;
}
