/*
 * The enrolment listener's handler: ts_hub_enroll_handle (enroll.c) behind
 * the enrolment-token throttle (throttle.c). An address whose tokens keep
 * being refused is answered 429 without its token being looked at; behind
 * nginx the address is the one the trusted proxy forwarded (X-Real-IP), so
 * one guesser does not shut out every terminal enrolling through the proxy.
 */
#include "throttle.h"
#include "proxy.h"

#include <stdio.h>
#include <string.h>

void ts_hub_enroll_listener_handle(void *ud, const struct ts_httpd_req *req,
                                   struct ts_httpd_resp *resp)
{
    struct ts_hub_api *api = ud;
    struct ts_httpd_req r = *req;
    const char *fwd = req->msg ? ts_http_header(req->msg, "X-Real-IP") : NULL;
    char addr[64];
    if (fwd && fwd[0] && ts_hub_proxy_trusted(api->cfg, req->remote_addr)) {
        ts_strlcpy(addr, fwd, sizeof addr);
        snprintf(r.remote_addr, sizeof r.remote_addr, "%.40s via %.16s", fwd, req->remote_addr);
    } else {
        ts_strlcpy(addr, req->remote_addr, sizeof addr);
    }
    bool enrol =
        strcmp(req->path, "/v1/enroll") == 0 && req->method && strcmp(req->method, "POST") == 0;
    int64_t now = api->now_ms();
    if (enrol) {
        int wait = ts_hub_throttle_auth_wait(api->throttle, TS_HUB_SECRET_ENROLL_TOKEN, addr, now);
        if (wait) {
            ts_strlcpy(resp->content_type, "application/json", sizeof resp->content_type);
            ts_hub_throttle_answer_429(resp, wait,
                                       "too many refused enrolment tokens from this address");
            return;
        }
    }
    ts_hub_enroll_handle(api->trust, &r, resp);
    /* enroll.c answers 403 only for the token (unknown, used, expired); a
     * bad CSR (400) with a good token is no guess. */
    if (enrol && resp->status == 403)
        ts_hub_throttle_auth_failed(api->throttle, TS_HUB_SECRET_ENROLL_TOKEN, addr, now);
    else if (enrol && resp->status == 200)
        ts_hub_throttle_auth_ok(api->throttle, TS_HUB_SECRET_ENROLL_TOKEN, addr);
}
