/*
 * What the hub's endpoint files (api*.c) share: JSON error answers, the
 * check of an agent's certificate, and query parameters.
 */
#include "api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "hub"

void ts_hub_api_ok(struct ts_httpd_resp *resp, const char *text)
{
    resp->status = 200;
    ts_buf_reset(&resp->body);
    ts_buf_puts(&resp->body, text);
}

/* Agent endpoints need a verified terminal certificate of this tenant. The
 * refusal names what is wrong with the certificate: a missing OU first (a
 * certificate made for something else than a terminal has neither OU nor
 * O, and "another tenant" sent its owner looking in the wrong place). */
bool ts_hub_api_peer_ok(const struct ts_hub_api *api, const struct ts_httpd_req *req, bool need_ou,
                        struct ts_httpd_resp *resp)
{
    const struct ts_peer_id *p = req->peer;
    char why[160] = "";
    if (!p || !p->verified)
        ts_strlcpy(why, "a verified client certificate is required", sizeof why);
    else if (need_ou && p->ou[0] == '\0')
        ts_strlcpy(why, "client certificate has no OU (store)", sizeof why);
    else if (api->cfg->tenant[0] && p->o[0] == '\0')
        ts_strlcpy(why, "client certificate has no O (tenant)", sizeof why);
    else if (api->cfg->tenant[0] && strcmp(p->o, api->cfg->tenant) != 0)
        snprintf(why, sizeof why, "client certificate belongs to another tenant (O=%.60s)", p->o);
    if (!why[0])
        return true;
    /* Logged: a terminal polling with the wrong certificate shows up here. */
    TS_WARN(COMP, "%s from %s (%s) refused: %s", req->path, req->remote_addr,
            p ? p->subject : "no certificate", why);
    ts_httpd_error(resp, 403, why);
    return false;
}

/* A query parameter: TS_ERR_NOTFOUND when absent, TS_ERR_INVAL when it does
 * not fit. Empty values read as absent. */
enum ts_err ts_hub_api_param(const struct ts_httpd_req *req, const char *name, char *out,
                             size_t outsz)
{
    int rc = ts_http_query_param(req->target ? req->target : "", name, out, outsz);
    if (rc == TS_OK && out[0] == '\0')
        return TS_ERR_NOTFOUND;
    return rc == TS_OK || rc == TS_ERR_NOTFOUND ? rc : TS_ERR_INVAL;
}
