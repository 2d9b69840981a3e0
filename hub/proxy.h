/*
 * The hub behind a TLS-terminating proxy (nginx, docs/OPERATIONS.md "Behind
 * nginx"): a second, plain-HTTP listener ([hub] listen_plain) that answers
 * only the proxy's own addresses ([hub] trusted_proxy) and takes the client
 * certificate identity the proxy verified from request headers.
 */
#ifndef TS_HUB_PROXY_H
#define TS_HUB_PROXY_H

#include "hub.h"
#include "../common/conf.h"

/* Reads [hub] listen_plain, trusted_proxy and the header names into o
 * (called by config.c). err gets "file:line: ..." on failure. */
enum ts_err ts_hub_proxy_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz);

/*
 * The identity a trusted proxy vouches for, from its headers (names from
 * cfg): verify must read "SUCCESS", the subject DN (RFC 2253, as nginx's
 * $ssl_client_s_dn, or the legacy "/O=.../CN=..." form) gives CN, OU and O,
 * the serial header the serial. Returns TS_OK with *out filled
 * (verified = true); TS_ERR_NOTFOUND when the request carries no verify
 * header (or "NONE": no certificate was presented); TS_ERR_AUTH when the
 * proxy says the certificate failed, or the headers do not parse (why says
 * which).
 */
enum ts_err ts_hub_proxy_identity(const struct ts_hub_config *cfg, const struct ts_http_msg *msg,
                                  struct ts_peer_id *out, char *why, size_t whysz);

/* Is addr (as ts_httpd_req.remote_addr) one of [hub] trusted_proxy? */
bool ts_hub_proxy_trusted(const struct ts_hub_config *cfg, const char *addr);

/* The ts_httpd handler of the plain listener; ud is the struct ts_hub_api
 * the TLS listener uses. Refuses untrusted peers (403), then runs the
 * request through ts_hub_api_handle with the proxy's identity as its peer,
 * after the same revocation check the TLS listener makes. */
void ts_hub_proxy_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp);

/* Starts the plain listener when [hub] listen_plain is set (*out stays NULL
 * otherwise). api must outlive it; stop it with ts_httpd_stop. */
enum ts_err ts_hub_proxy_start(struct ts_hub_api *api, struct ts_httpd **out, char *err,
                               size_t errsz);

#endif
