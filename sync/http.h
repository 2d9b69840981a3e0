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

    /* Parser progress kept between TS_ERR_AGAIN calls over the same, growing
     * buffer, so a body that trickles in is scanned once, not once per read.
     * Private to http.c; zeroed by ts_http_msg_clear. */
    struct {
        char *store;       /* owned copy of the head; strings point into it */
        size_t len;        /* bytes of the buffer seen so far */
        size_t head_start; /* empty lines skipped before a request line */
        size_t head_scan;  /* head bytes checked for CR/LF errors and end */
        size_t head_len;   /* head length incl. blank line; 0 = not complete */
        int body_mode;     /* framing decided from the head */
        size_t clen;       /* Content-Length */
        size_t chunk_pos;  /* offset of the next chunk-size line */
        size_t chunk_body; /* de-chunked bytes before chunk_pos */
    } ps;
};

/*
 * Tries to parse one complete message from buf[0..len).
 * m must be zeroed (or ts_http_msg_clear'ed) before the first call for a
 * message; after TS_ERR_AGAIN call again with the same m and the same bytes
 * plus more (the buffer may move), or clear m to give up. To parse the
 * response to a HEAD request, set m->method to "HEAD" first.
 * Returns TS_OK with *consumed set when a whole message (head and body) is
 * present, TS_ERR_AGAIN when more bytes are needed, TS_ERR_PROTO on malformed
 * input and TS_ERR_FULL when the head or body exceeds the limits
 * (max_body bytes of body). is_request selects request vs response syntax.
 * For responses to HEAD or with 1xx/204/304 status there is no body.
 * On success the message owns its memory; release it with ts_http_msg_clear.
 */
enum ts_err ts_http_parse(struct ts_http_msg *m, bool is_request, const char *buf, size_t len,
                          size_t max_body, size_t *consumed);
void ts_http_msg_clear(struct ts_http_msg *m);

/*
 * At end of stream: a response without Content-Length or chunked framing
 * ends when the peer closes, so after TS_ERR_AGAIN and then EOF call this to
 * complete it from buf[0..len). Returns TS_OK with the message (as
 * ts_http_parse), TS_ERR_CLOSED when buf does not hold such a response head,
 * or the errors of ts_http_parse.
 */
enum ts_err ts_http_parse_eof(struct ts_http_msg *m, const char *buf, size_t len, size_t max_body,
                              size_t *consumed);

/* Case-insensitive header lookup; borrowed pointer valid until clear. */
const char *ts_http_header(const struct ts_http_msg *m, const char *name);

/* Splits "path?query" at '?': copies the path (no percent decoding). */
enum ts_err ts_http_target_path(const char *target, char *path, size_t pathsz);
/* Finds query parameter name in target and percent-decodes it into out.
 * Returns TS_ERR_NOTFOUND when absent. */
enum ts_err ts_http_query_param(const char *target, const char *name, char *out, size_t outsz);

#endif
