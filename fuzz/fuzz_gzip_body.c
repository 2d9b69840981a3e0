/*
 * libFuzzer target for gzip request bodies (Content-Encoding: gzip on the
 * hub's POST endpoints, sync/httpd.c): ts_gzip_decode_body with a small
 * inflated-size limit, so bombs, truncated members, bad CRCs and trailing
 * bytes all run. What it hands back must fit the limit and be
 * NUL-terminated; a refused body must be left as received.
 */
#include "gzip.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT (64u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ts_buf b = {0};
    if (ts_buf_append(&b, data, size) != TS_OK)
        return 0;
    enum ts_err rc = ts_gzip_decode_body(&b, "gzip", LIMIT);
    if (rc == TS_OK) {
        if (b.len > LIMIT || (b.data && b.data[b.len] != '\0'))
            __builtin_trap();
    } else if (b.len != size || (size && memcmp(b.data, data, size) != 0)) {
        __builtin_trap();
    }
    ts_buf_free(&b);
    return 0;
}
