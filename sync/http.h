/*
 * HTTP/1.1 message parsing shared by the hub's server and the agent's client.
 * Parses one request or response head plus a Content-Length or chunked body
 * from a byte buffer. Limits are hard: hostile peers get TS_ERR_PROTO, never
 * unbounded memory.
 */
#ifndef TS_HTTP_H
#define TS_HTTP_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>

#define TS_HTTP_MAX_HEADERS 48
#define TS_HTTP_MAX_HEAD 16384

struct ts_http_header {
    char *name; /* as sent; compare case-insensitively */
    char *value;
};

struct ts_http_msg {
    /* request line (requests only) */
    char method[16];
    char *target; /* raw request-target, e.g. "/v1/feed?since=x" */
    /* status line (responses only) */
    int status;
    /* both */
    int minor_version; /* 0 or 1 */
    struct ts_http_header headers[TS_HTTP_MAX_HEADERS];
    size_t nheaders;
    bool keep_alive;
    ts_buf body; /* de-chunked body */
};

/*
 * Tries to parse one complete message from buf[0..len).
 * Returns TS_OK with *consumed set when a whole message (head and body) is
 * present, TS_ERR_AGAIN when more bytes are needed, TS_ERR_PROTO on malformed
 * input and TS_ERR_FULL when the head or body exceeds the limits
 * (max_body bytes of body). is_request selects request vs response syntax.
 * For responses to HEAD or with 1xx/204/304 status there is no body.
 * On success the message owns its memory; release it with ts_http_msg_clear.
 */
int ts_http_parse(struct ts_http_msg *m, bool is_request, const char *buf, size_t len,
                  size_t max_body, size_t *consumed);
void ts_http_msg_clear(struct ts_http_msg *m);

/* Case-insensitive header lookup; borrowed pointer valid until clear. */
const char *ts_http_header(const struct ts_http_msg *m, const char *name);

/* Splits "path?query" at '?': copies the path (no percent decoding). */
int ts_http_target_path(const char *target, char *path, size_t pathsz);
/* Finds query parameter name in target and percent-decodes it into out.
 * Returns TS_ERR_NOTFOUND when absent. */
int ts_http_query_param(const char *target, const char *name, char *out, size_t outsz);

#endif
