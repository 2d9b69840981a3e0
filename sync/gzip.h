/*
 * gzip bodies (RFC 1952) for feed pages and lookups: the hub compresses what
 * it sends, the agent inflates with a hard limit on the inflated size so a
 * hostile or broken peer cannot make it allocate without bound (zip bomb).
 * zlib does the work; this file only adds the framing rules and limits.
 */
#ifndef TS_GZIP_H
#define TS_GZIP_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>

/* Bodies smaller than this are not worth compressing (headers and CPU). */
#define TS_GZIP_MIN_BODY 1024

/*
 * Appends the gzip encoding of in[0..n) to out (zlib level 6). Returns
 * TS_ERR_NOMEM when memory runs out; out is then left as it was.
 */
enum ts_err ts_gzip_compress(const void *in, size_t n, ts_buf *out);

/*
 * Inflates one gzip member in[0..n) into out (reset first). The whole input
 * must be exactly one complete member: truncated input, a bad CRC, or bytes
 * after the member are TS_ERR_PROTO. More than max_out inflated bytes stop
 * the work at once with TS_ERR_FULL, having allocated at most max_out + 1
 * bytes. On failure out is empty.
 */
enum ts_err ts_gzip_inflate(const void *in, size_t n, size_t max_out, ts_buf *out);

/*
 * For a client: turns a received body into the plain one according to its
 * Content-Encoding ("" or "identity": as is; "gzip": inflated in place, at
 * most max_out bytes). Any other encoding is TS_ERR_PROTO; the errors of
 * ts_gzip_inflate otherwise. On failure the body is left as received.
 */
enum ts_err ts_gzip_decode_body(ts_buf *body, const char *content_encoding, size_t max_out);

/* Does an Accept-Encoding header value accept gzip (present, q not 0)? NULL
 * means no header: no. */
bool ts_gzip_accepted(const char *accept_encoding);

#endif
