/*
 * The hub behind a TLS-terminating proxy (proxy.h). nginx verifies the
 * terminal's certificate against the hub's enrolment CA and its CRL
 * (`tillside-hub crl`), then forwards plain HTTP with what it verified in
 * headers (packaging/nginx/tillside-hub.conf):
 *
 *   X-SSL-Client-Verify: SUCCESS             $ssl_client_verify
 *   X-SSL-Client-S-DN:   CN=T01,OU=S001,O=acme  $ssl_client_s_dn (RFC 2253)
 *   X-SSL-Client-Serial: 5A1F...              $ssl_client_serial
 *   X-SSL-Client-V-End:  Sep  4 12:00:00 2026 GMT  $ssl_client_v_end
 *
 * Anybody can send such headers, so they count only from the proxy's own
 * addresses; every other peer is refused before anything is read. The
 * hub's own revocation list is still checked on every request: a CRL that
 * nginx has not reloaded yet does not let a revoked terminal through.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define COMP "proxy"

static enum ts_err conf_fail(const struct ts_conf *c, const char *key, const char *what, char *err,
                             size_t errsz)
{
    char where[TS_HUB_PATH_MAX + 32];
    snprintf(err, errsz, "%s: [hub] %s: %s", ts_conf_where(c, "hub", key, where, sizeof where), key,
             what);
    return TS_ERR_CONFIG;
}

static enum ts_err conf_str(const struct ts_conf *c, const char *key, const char *def, char *out,
                            size_t outsz, char *err, size_t errsz)
{
    const char *v = ts_conf_get(c, "hub", key, def);
    if (ts_strlcpy(out, v ? v : "", outsz) >= outsz)
        return conf_fail(c, key, "value too long", err, errsz);
    return TS_OK;
}

/* One address of a comma-separated list, parsed as IPv4 or IPv6. */
struct addr {
    int family;
    unsigned char b[16];
};

static bool parse_addr(const char *s, size_t n, struct addr *a)
{
    char tmp[64];
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof tmp)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, tmp, a->b) == 1) {
        a->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, tmp, a->b) == 1) {
        a->family = AF_INET6;
        /* IPv4-mapped (::ffff:a.b.c.d) compares as the IPv4 address. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a->b, mapped, sizeof mapped) == 0) {
            memmove(a->b, a->b + 12, 4);
            memset(a->b + 4, 0, 12);
            a->family = AF_INET;
        }
        return true;
    }
    return false;
}

/* Calls fn for each item of a comma-separated list; stops at false. */
static bool each_addr(const char *list, bool (*fn)(const struct addr *, void *), void *ud,
                      bool *bad)
{
    *bad = false;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        struct addr a;
        if (!parse_addr(p, n, &a)) {
            *bad = true;
            return false;
        }
        if (!fn(&a, ud))
            return true;
        p += n + (e ? 1 : 0);
    }
    return false;
}

static bool accept_any(const struct addr *a, void *ud)
{
    (void)a;
    (void)ud;
    return true;
}

enum ts_err ts_hub_proxy_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz)
{
    int rc;
    if ((rc = conf_str(c, "listen_plain", "", o->listen_plain, sizeof o->listen_plain, err,
                       errsz)) ||
        (rc = conf_str(c, "trusted_proxy", "", o->trusted_proxy, sizeof o->trusted_proxy, err,
                       errsz)) ||
        (rc = conf_str(c, "proxy_verify_header", "X-SSL-Client-Verify", o->proxy_verify_header,
                       sizeof o->proxy_verify_header, err, errsz)) ||
        (rc = conf_str(c, "proxy_dn_header", "X-SSL-Client-S-DN", o->proxy_dn_header,
                       sizeof o->proxy_dn_header, err, errsz)) ||
        (rc = conf_str(c, "proxy_serial_header", "X-SSL-Client-Serial", o->proxy_serial_header,
                       sizeof o->proxy_serial_header, err, errsz)) ||
        (rc = conf_str(c, "proxy_v_end_header", "X-SSL-Client-V-End", o->proxy_v_end_header,
                       sizeof o->proxy_v_end_header, err, errsz)))
        return rc;
    if (!o->listen_plain[0])
        return TS_OK;
    const char *colon = strrchr(o->listen_plain, ':');
    if (!colon || colon == o->listen_plain || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return conf_fail(c, "listen_plain", "expected host:port", err, errsz);
    /* Without it anybody who reaches the port could claim any terminal. */
    if (!o->trusted_proxy[0])
        return conf_fail(c, "trusted_proxy",
                         "required with listen_plain (the proxy's addresses, e.g. 127.0.0.1)", err,
                         errsz);
    bool bad;
    each_addr(o->trusted_proxy, accept_any, NULL, &bad);
    if (bad)
        return conf_fail(c, "trusted_proxy", "expected IP addresses separated by commas", err,
                         errsz);
    if (!o->proxy_verify_header[0] || !o->proxy_dn_header[0])
        return conf_fail(c, o->proxy_verify_header[0] ? "proxy_dn_header" : "proxy_verify_header",
                         "must name a header", err, errsz);
    return TS_OK;
}

static bool same_addr(const struct addr *a, void *ud)
{
    const struct addr *want = ud;
    /* false stops the walk: found */
    return !(a->family == want->family && memcmp(a->b, want->b, 16) == 0);
}

bool ts_hub_proxy_trusted(const struct ts_hub_config *cfg, const char *addr)
{
    struct addr peer;
    bool bad;
    if (!cfg->trusted_proxy[0] || !addr || !parse_addr(addr, strlen(addr), &peer))
        return false;
    return each_addr(cfg->trusted_proxy, same_addr, &peer, &bad) && !bad;
}

/* ---- the subject DN --------------------------------------------------------*/

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/*
 * One "type=value" of the DN into out (unescaped), advancing *p past the
 * separator. RFC 4514 §2.4 escapes: "\," "\+" "\\" ... and "\HH" for a byte
 * (OpenSSL writes UTF-8 that way). sep is ',' (RFC 2253) or '/' (legacy).
 */
static bool next_rdn(const char **p, char sep, char *type, size_t tsz, char *val, size_t vsz)
{
    const char *s = *p;
    size_t tn = 0, vn = 0;
    while (*s == ' ')
        s++;
    while (*s && *s != '=') {
        if (tn + 1 >= tsz)
            return false;
        type[tn++] = *s++;
    }
    type[tn] = '\0';
    if (*s != '=' || tn == 0)
        return false;
    s++;
    while (*s && *s != sep && !(sep == ',' && *s == '+')) {
        char ch = *s++;
        if (ch == '\\') {
            int h1 = hexval(s[0]), h2 = h1 >= 0 ? hexval(s[1]) : -1;
            if (h1 >= 0 && h2 >= 0) {
                ch = (char)(h1 * 16 + h2);
                s += 2;
            } else if (*s) {
                ch = *s++;
            } else {
                return false;
            }
        }
        if (vn + 1 >= vsz)
            return false;
        val[vn++] = ch;
    }
    val[vn] = '\0';
    if (*s)
        s++;
    *p = s;
    return true;
}

static enum ts_err parse_dn(const char *dn, struct ts_peer_id *out)
{
    char sep = ',';
    if (dn[0] == '/') { /* $ssl_client_s_dn_legacy: "/O=acme/OU=S001/CN=T01" */
        sep = '/';
        dn++;
    }
    while (*dn) {
        char type[32], val[128];
        if (!next_rdn(&dn, sep, type, sizeof type, val, sizeof val))
            return TS_ERR_INVAL;
        char *dst = NULL;
        size_t dsz = 0;
        if (strcasecmp(type, "CN") == 0 || strcmp(type, "2.5.4.3") == 0) {
            dst = out->cn;
            dsz = sizeof out->cn;
        } else if (strcasecmp(type, "OU") == 0 || strcmp(type, "2.5.4.11") == 0) {
            dst = out->ou;
            dsz = sizeof out->ou;
        } else if (strcasecmp(type, "O") == 0 || strcmp(type, "2.5.4.10") == 0) {
            dst = out->o;
            dsz = sizeof out->o;
        }
        /* The first of a repeated attribute wins, like tls_verify.c's walk
         * would see it last: refuse the ambiguity instead. */
        if (dst && dst[0])
            return TS_ERR_INVAL;
        if (dst && ts_strlcpy(dst, val, dsz) >= dsz)
            return TS_ERR_INVAL;
    }
    return out->cn[0] ? TS_OK : TS_ERR_INVAL;
}

/* nginx's $ssl_client_serial: uppercase hex of the serial's bytes. Stored
 * as tls_verify.c has it: lowercase, no leading zero bytes. */
static enum ts_err parse_serial(const char *s, char *out, size_t outsz)
{
    size_t n = strlen(s);
    if (n == 0 || strspn(s, "0123456789abcdefABCDEF") != n)
        return TS_ERR_INVAL;
    if (n % 2) { /* a nibble short: pad to whole bytes */
        if (n + 2 > outsz)
            return TS_ERR_INVAL;
        out[0] = '0';
        ts_strlcpy(out + 1, s, outsz - 1);
    } else if (ts_strlcpy(out, s, outsz) >= outsz) {
        return TS_ERR_INVAL;
    }
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    size_t skip = 0;
    while (out[skip] == '0' && out[skip + 1] == '0' && out[skip + 2])
        skip += 2;
    memmove(out, out + skip, strlen(out + skip) + 1);
    return TS_OK;
}

/* $ssl_client_v_end, "Sep  4 12:00:00 2026 GMT", to whole days left. */
static bool days_left(const char *v_end, int *out)
{
    struct tm tm = {0};
    const char *e = v_end ? strptime(v_end, "%b %d %H:%M:%S %Y GMT", &tm) : NULL;
    if (!e)
        return false;
    int64_t left = (int64_t)timegm(&tm) - (int64_t)time(NULL);
    *out = (int)(left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
    return true;
}

enum ts_err ts_hub_proxy_identity(const struct ts_hub_config *cfg, const struct ts_http_msg *msg,
                                  struct ts_peer_id *out, char *why, size_t whysz)
{
    const char *verify = msg ? ts_http_header(msg, cfg->proxy_verify_header) : NULL;
    if (!verify || strcmp(verify, "NONE") == 0)
        return TS_ERR_NOTFOUND;
    if (strcmp(verify, "SUCCESS") != 0) {
        ts_errf(why, whysz, "the proxy did not verify the client certificate (%.80s)", verify);
        return TS_ERR_AUTH;
    }
    struct ts_peer_id id = {0};
    const char *dn = ts_http_header(msg, cfg->proxy_dn_header);
    if (!dn || parse_dn(dn, &id) != TS_OK) {
        ts_errf(why, whysz, "missing or malformed %s header", cfg->proxy_dn_header);
        return TS_ERR_AUTH;
    }
    /* Revocation by serial needs it; a deployment that does not pass it
     * still has revocation by terminal name and nginx's CRL. */
    const char *serial =
        cfg->proxy_serial_header[0] ? ts_http_header(msg, cfg->proxy_serial_header) : NULL;
    if (serial && parse_serial(serial, id.serial, sizeof id.serial) != TS_OK) {
        ts_errf(why, whysz, "malformed %s header", cfg->proxy_serial_header);
        return TS_ERR_AUTH;
    }
    const char *v_end =
        cfg->proxy_v_end_header[0] ? ts_http_header(msg, cfg->proxy_v_end_header) : NULL;
    if (!days_left(v_end, &id.days_left))
        id.days_left = 0;
    snprintf(id.subject, sizeof id.subject, "CN=%s, OU=%s, O=%s", id.cn, id.ou, id.o);
    id.verified = true;
    *out = id;
    return TS_OK;
}

static void refuse(struct ts_httpd_resp *resp, const struct ts_httpd_req *req, const char *why)
{
    TS_WARN(COMP, "%s %s from %s refused: %s", req->method ? req->method : "?", req->path,
            req->remote_addr, why);
    ts_httpd_error(resp, 403, why);
}

void ts_hub_proxy_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct ts_hub_api *api = ud;
    const struct ts_hub_config *cfg = api->cfg;
    char why[200] = "";
    if (!ts_hub_proxy_trusted(cfg, req->remote_addr)) {
        refuse(resp, req, "plain HTTP is accepted from the trusted proxy only");
        return;
    }
    struct ts_httpd_req r = *req;
    struct ts_peer_id id;
    r.peer = NULL;
    int rc = ts_hub_proxy_identity(cfg, req->msg, &id, why, sizeof why);
    if (rc == TS_ERR_AUTH) {
        refuse(resp, req, why);
        return;
    }
    if (rc == TS_OK) {
        if (!ts_hub_trust_peer_ok(api->trust, &id, why, sizeof why)) {
            TS_WARN(COMP, "%s (%s) via %s: %s", req->path, id.subject, req->remote_addr, why);
            ts_httpd_error(resp, 403, why[0] ? why : "certificate revoked");
            return;
        }
        r.peer = &id;
    }
    /* Logs name the terminal's address, not only the proxy's. */
    const char *fwd = req->msg ? ts_http_header(req->msg, "X-Real-IP") : NULL;
    if (fwd && fwd[0])
        snprintf(r.remote_addr, sizeof r.remote_addr, "%.40s via %.16s", fwd, req->remote_addr);
    ts_hub_api_handle(api, &r, resp);
}

enum ts_err ts_hub_proxy_start(struct ts_hub_api *api, struct ts_httpd **out, char *err,
                               size_t errsz)
{
    const struct ts_hub_config *cfg = api->cfg;
    if (!cfg->listen_plain[0])
        return TS_OK;
    /* Long-polls hold a connection each, and nginx keeps its upstream
     * connections alive: as many as the TLS listener takes. */
    struct ts_httpd_opts o = {.listen = cfg->listen_plain, .max_body = TS_HUB_MAX_BODY};
    ts_hub_api_serve_opts(cfg, &o);
    o.max_pending_per_source = o.max_pending; /* every connection comes from the proxy */
    int rc = ts_httpd_start(&o, ts_hub_proxy_handle, api, out, err, errsz);
    if (rc == TS_OK)
        TS_INFO(COMP, "plain HTTP for the proxy at %s on %s (port %d)", cfg->trusted_proxy,
                cfg->listen_plain, ts_httpd_port(*out));
    return rc;
}
