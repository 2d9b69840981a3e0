/*
 * libFuzzer target for the HTTP/1.1 parser: the same bytes as a request and
 * as a response (once whole, once fed in two pieces to exercise resumption,
 * and once to the end-of-stream path), with a 64 KiB body limit.
 */
#include "http.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(bool req, const char *buf, size_t size, size_t split)
{
    struct ts_http_msg m;
    size_t used = 0;
    memset(&m, 0, sizeof m);
    int rc = ts_http_parse(&m, req, buf, split, 64 * 1024, &used);
    if (rc == TS_ERR_AGAIN)
        rc = ts_http_parse(&m, req, buf, size, 64 * 1024, &used);
    if (rc == TS_ERR_AGAIN && !req)
        rc = ts_http_parse_eof(&m, buf, size, 64 * 1024, &used);
    if (rc == TS_OK) {
        /* What the parser hands out must be consistent and readable. */
        if (used == 0 || used > size || (m.body.len && !m.body.data))
            __builtin_trap();
        for (size_t i = 0; i < m.nheaders; i++)
            if (strlen(m.headers[i].name) == 0 || strlen(m.headers[i].value) > size)
                __builtin_trap();
        if (req && (!m.target || strlen(m.target) == 0))
            __builtin_trap();
        if (m.body.data && m.body.data[m.body.len] != '\0')
            __builtin_trap();
        (void)ts_http_header(&m, "content-type");
        if (req) {
            char path[512], v[256];
            (void)ts_http_target_path(m.target, path, sizeof path);
            (void)ts_http_query_param(m.target, "since", v, sizeof v);
        }
    }
    ts_http_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t split = size ? (data[0] * size) / 256 : 0;
    one(true, buf, size, size);
    one(false, buf, size, size);
    one(true, buf, size, split);
    one(false, buf, size, split);
    return 0;
}
