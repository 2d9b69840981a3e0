/* Incremental Server-Sent Events parser (see sse.h). */
#include "sse.h"

#include <string.h>

void ts_sse_init(struct ts_sse *p)
{
    memset(p, 0, sizeof *p);
}

void ts_sse_free(struct ts_sse *p)
{
    ts_buf_free(&p->line);
    ts_buf_free(&p->data);
}

static void dispatch(struct ts_sse *p, ts_sse_cb cb, void *ud)
{
    if (p->has_data) {
        /* The spec strips the one trailing newline added per data line. */
        if (p->data.len && p->data.data[p->data.len - 1] == '\n')
            p->data.data[--p->data.len] = '\0';
        struct ts_sse_event ev = {
            .type = p->type[0] ? p->type : "message",
            .id = p->id,
            .data = p->data.data ? p->data.data : "",
            .data_len = p->data.len,
        };
        cb(ud, &ev);
    }
    ts_buf_reset(&p->data);
    p->type[0] = '\0';
    p->has_data = 0;
}

/* Interprets one complete line (without its terminator). */
static enum ts_err process_line(struct ts_sse *p, const char *l, size_t n, ts_sse_cb cb, void *ud)
{
    if (n == 0) {
        dispatch(p, cb, ud);
        return TS_OK;
    }
    if (l[0] == ':')
        return TS_OK; /* comment / keepalive */
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = colon ? n - fl - 1 : 0;
    if (vl && *v == ' ') {
        v++;
        vl--;
    }
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        if (p->data.len + vl + 1 > TS_SSE_MAX_DATA) {
            ts_buf_reset(&p->data);
            p->has_data = 0;
            return TS_ERR_FULL;
        }
        int rc = ts_buf_append(&p->data, v, vl);
        if (rc == TS_OK)
            rc = ts_buf_append(&p->data, "\n", 1);
        p->has_data = 1;
        return rc;
    }
    if (fl == 5 && memcmp(l, "event", 5) == 0) {
        size_t c = vl < sizeof p->type - 1 ? vl : sizeof p->type - 1;
        memcpy(p->type, v, c);
        p->type[c] = '\0';
    } else if (fl == 2 && memcmp(l, "id", 2) == 0 && !memchr(v, '\0', vl)) {
        size_t c = vl < sizeof p->id - 1 ? vl : sizeof p->id - 1;
        memcpy(p->id, v, c);
        p->id[c] = '\0';
    }
    return TS_OK; /* "retry" and unknown fields are ignored */
}

enum ts_err ts_sse_feed(struct ts_sse *p, const char *buf, size_t n, ts_sse_cb cb, void *ud)
{
    int result = TS_OK;
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n' && p->last_cr) {
            p->last_cr = 0;
            continue; /* the LF of a CRLF */
        }
        p->last_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            if (p->skip_line) {
                p->skip_line = 0;
            } else {
                int rc = process_line(p, p->line.data ? p->line.data : "", p->line.len, cb, ud);
                if (rc)
                    result = rc;
            }
            ts_buf_reset(&p->line);
            continue;
        }
        if (p->skip_line)
            continue;
        if (p->line.len >= TS_SSE_MAX_LINE) {
            p->skip_line = 1;
            ts_buf_reset(&p->line);
            result = TS_ERR_FULL;
            continue;
        }
        if (ts_buf_append(&p->line, &c, 1))
            return TS_ERR_NOMEM;
    }
    return result;
}
