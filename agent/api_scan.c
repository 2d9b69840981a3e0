/* POST /api/v1/scan: a posted code through the guard into the core. */
#include "api_int.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HTTP status for a failure of the core. */
static unsigned status_for(int rc)
{
    switch (rc) {
    case TS_ERR_INVAL:
        return MHD_HTTP_BAD_REQUEST;
    case TS_ERR_TIMEOUT:
        return MHD_HTTP_GATEWAY_TIMEOUT;
    case TS_ERR_CLOSED:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/*
 * POST /api/v1/scan {"code": "...", "aim": "]E0"}: validates the body,
 * normalises it into a scan like any input and answers with the session the
 * core made of it. The code itself is never logged or echoed back.
 */
enum MHD_Result ts_api_post_scan(struct ts_api *api, struct MHD_Connection *c, const ts_buf *body)
{
    enum MHD_Result ret = MHD_NO;
    char msg[256] = "";
    unsigned status = MHD_HTTP_BAD_REQUEST;
    char *session = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body->data ? body->data : "", body->len, 0, &jerr);
    if (!root) {
        snprintf(msg, sizeof msg, "invalid JSON: %s", jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(msg, sizeof msg, "body must be a JSON object");
        goto out;
    }
    json_t *code = json_object_get(root, "code");
    json_t *aim = json_object_get(root, "aim");
    if (!json_is_string(code)) {
        snprintf(msg, sizeof msg, "\"code\" must be a string");
        goto out;
    }
    if (json_string_length(code) == 0) {
        snprintf(msg, sizeof msg, "\"code\" is empty");
        goto out;
    }
    if (aim && !json_is_null(aim) && !json_is_string(aim)) {
        snprintf(msg, sizeof msg, "\"aim\" must be a string");
        goto out;
    }

    struct ts_scan scan;
    int rc = ts_scan_from_text("api", json_string_value(code), json_string_length(code),
                               json_is_string(aim) ? json_string_value(aim) : NULL, &scan);
    if (rc != TS_OK) {
        snprintf(msg, sizeof msg, "invalid code");
        goto out;
    }
    /* The payment card guard, as at the driver boundary: POS software may
     * post whatever the scanner read. Counted, never logged or stored. It
     * sees the code as a driver's framer would pass it: without the
     * surrounding whitespace and suffix (" 2100019914270\r\n" is an EAN-13). */
    size_t g0 = 0, g1 = scan.data_len;
    while (g0 < g1 && (unsigned char)scan.data[g0] <= ' ')
        g0++;
    while (g1 > g0 && (unsigned char)scan.data[g1 - 1] <= ' ')
        g1--;
    if (ts_guard_check(&api->a->cfg.guard, scan.aim, scan.data + g0, g1 - g0) != TS_GUARD_PASS) {
        atomic_fetch_add(&api->a->api_guard_drops, 1);
        TS_WARN("guard", "payment card data dropped from the local API");
        memset(&scan, 0, sizeof scan);
        status = 422; /* Unprocessable Content */
        snprintf(msg, sizeof msg,
                 "payment card data refused: a card number or magnetic stripe data is never "
                 "processed");
        goto out;
    }
    rc = ts_agent_scan(api->a, &scan, &session);
    if (rc == TS_OK && !session)
        session = ts_agent_session(api->a);
    if (rc != TS_OK || !session) {
        status = rc == TS_OK ? MHD_HTTP_INTERNAL_SERVER_ERROR : status_for(rc);
        snprintf(msg, sizeof msg, "scan failed: %s", ts_strerror(rc == TS_OK ? TS_ERR_NOMEM : rc));
        goto out;
    }
    ret = ts_api_send_json(c, MHD_HTTP_OK, session, NULL);
out:
    if (*msg)
        ret = ts_api_send_error(c, status, msg, NULL);
    free(session);
    json_decref(root);
    return ret;
}
