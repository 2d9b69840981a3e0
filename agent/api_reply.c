/* Responses of the loopback API (api_int.h). */
#include "api_int.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_api_common_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

enum MHD_Result ts_api_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Queues body (copied) with the JSON headers; allow adds an Allow header. */
enum MHD_Result ts_api_send_json(struct MHD_Connection *c, unsigned status, const char *json,
                                 const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ts_api_common_headers(resp);
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return ts_api_queue(c, status, resp);
}

/* The error shape of PROTOCOL.md: {"error": "<message>"}. */
enum MHD_Result ts_api_send_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                  const char *allow)
{
    ts_buf b = {0};
    enum MHD_Result ret =
        ts_json_error(&b, msg) == TS_OK ? ts_api_send_json(c, status, b.data, allow) : MHD_NO;
    ts_buf_free(&b);
    return ret;
}

enum MHD_Result ts_api_send_empty(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    ts_api_common_headers(resp);
    return ts_api_queue(c, status, resp);
}

enum MHD_Result ts_api_send_page(struct ts_api *api, struct MHD_Connection *c)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(api->page_len, api->page, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    ts_api_common_headers(resp);
    return ts_api_queue(c, MHD_HTTP_OK, resp);
}

bool ts_api_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}
