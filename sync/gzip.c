/* gzip bodies with zlib (see gzip.h). */
#include "gzip.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define GZIP_WINDOW (15 + 16) /* 32 KiB window, gzip header and trailer */
#define CHUNK 65536

enum ts_err ts_gzip_compress(const void *in, size_t n, ts_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (n > UINT_MAX)
        return TS_ERR_INVAL; /* zlib counts in uInt; pages are far smaller */
    if (deflateInit2(&z, 6, Z_DEFLATED, GZIP_WINDOW, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return TS_ERR_NOMEM;
    size_t start = out->len;
    uLong bound = deflateBound(&z, (uLong)n);
    int rc = ts_buf_reserve(out, bound);
    if (rc == TS_OK) {
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = (uInt)n;
        z.next_out = (Bytef *)out->data + start;
        z.avail_out = (uInt)bound;
        /* deflateBound is an upper bound for a single Z_FINISH call. */
        rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? TS_OK : TS_ERR_NOMEM;
    }
    if (rc == TS_OK) {
        out->len = start + z.total_out;
        out->data[out->len] = '\0';
    } else if (out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    deflateEnd(&z);
    return rc;
}

enum ts_err ts_gzip_inflate(const void *in, size_t n, size_t max_out, ts_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ts_buf_reset(out);
    if (n > UINT_MAX)
        return TS_ERR_FULL;
    if (inflateInit2(&z, GZIP_WINDOW) != Z_OK)
        return TS_ERR_NOMEM;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    int rc = TS_OK, zr = Z_OK;
    while (zr != Z_STREAM_END) {
        /* Grow by at most CHUNK and never past max_out + 1: one byte over
         * the limit is enough to know the limit was exceeded. */
        size_t room = max_out + 1 - out->len;
        if (room == 0) {
            rc = TS_ERR_FULL;
            break;
        }
        if (room > CHUNK)
            room = CHUNK;
        if ((rc = ts_buf_reserve(out, room)))
            break;
        z.next_out = (Bytef *)out->data + out->len;
        z.avail_out = (uInt)room;
        zr = inflate(&z, Z_NO_FLUSH);
        out->len += room - z.avail_out;
        if (out->len > max_out) {
            rc = TS_ERR_FULL;
            break;
        }
        if (zr == Z_MEM_ERROR) {
            rc = TS_ERR_NOMEM;
            break;
        }
        /* With room to write, no progress (Z_BUF_ERROR) or unused room
         * with no input left means the input ended mid-stream. */
        if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR || zr == Z_STREAM_ERROR || zr == Z_BUF_ERROR ||
            (zr == Z_OK && z.avail_in == 0 && z.avail_out != 0)) {
            rc = TS_ERR_PROTO;
            break;
        }
    }
    if (rc == TS_OK && z.avail_in != 0)
        rc = TS_ERR_PROTO; /* trailing bytes: a second member or garbage */
    inflateEnd(&z);
    if (rc != TS_OK) {
        ts_buf_free(out);
        return rc;
    }
    if (out->data)
        out->data[out->len] = '\0';
    return TS_OK;
}

enum ts_err ts_gzip_decode_body(ts_buf *body, const char *ce, size_t max_out)
{
    if (!ce || !*ce || strcasecmp(ce, "identity") == 0)
        return TS_OK;
    if (strcasecmp(ce, "gzip") != 0 && strcasecmp(ce, "x-gzip") != 0)
        return TS_ERR_PROTO;
    ts_buf plain = {0};
    int rc = ts_gzip_inflate(body->data, body->len, max_out, &plain);
    if (rc != TS_OK)
        return rc;
    ts_buf_free(body);
    *body = plain;
    if (!body->data) /* an empty body inflated to nothing */
        rc = ts_buf_puts(body, "");
    return rc;
}

/* The q value of one Accept-Encoding element's parameters (";q=0.5"). */
static double qvalue(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            return strtod(p + 2, NULL);
        while (p < end && *p != ';')
            p++;
    }
    return 1.0;
}

bool ts_gzip_accepted(const char *v)
{
    int gzip = -1, star = -1;
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v + strcspn(v, ",");
        size_t tl = strcspn(v, ";, \t");
        if (tl > (size_t)(e - v))
            tl = (size_t)(e - v);
        int ok = qvalue(v + tl, e) > 0.0;
        if ((tl == 4 && strncasecmp(v, "gzip", 4) == 0) ||
            (tl == 6 && strncasecmp(v, "x-gzip", 6) == 0))
            gzip = ok;
        else if (tl == 1 && *v == '*')
            star = ok;
        v = e;
    }
    return gzip >= 0 ? gzip == 1 : star == 1;
}
