/* URL and port parsing (url.h). */
#include "url.h"

#include <string.h>
#include <strings.h>

enum ts_err ts_port_parse(const char *s, size_t n, bool listen, int *port)
{
    if (!s || n == 0 || n > 5)
        return TS_ERR_INVAL;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return TS_ERR_INVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v < (listen ? 0 : 1) || v > 65535)
        return TS_ERR_INVAL;
    *port = (int)v;
    return TS_OK;
}

enum ts_err ts_url_parse(const char *url, struct ts_url *out, char *err, size_t errsz)
{
    struct ts_url u = {0};
    const char *p;
    if (!url)
        url = "";
    if (strncasecmp(url, "https://", 8) == 0) {
        u.https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        ts_errf(err, errsz, "URL \"%.200s\" must start with http:// or https://", url);
        return TS_ERR_CONFIG;
    }
    size_t alen = strcspn(p, "/?#");
    const char *auth_end = p + alen, *port_s = NULL;
    if (memchr(p, '@', alen)) {
        ts_errf(err, errsz, "URL may not carry credentials");
        return TS_ERR_CONFIG;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb)
            goto bad;
        hs = p + 1;
        he = rb;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':')
                goto bad;
            port_s = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        he = colon ? colon : auth_end;
        port_s = colon ? colon + 1 : NULL;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof u.host)
        goto bad;
    memcpy(u.host, hs, (size_t)(he - hs));
    u.host[he - hs] = '\0';
    u.port = u.https ? 443 : 80;
    if (port_s) {
        if (ts_port_parse(port_s, (size_t)(auth_end - port_s), false, &u.port) != TS_OK) {
            ts_errf(err, errsz, "URL \"%.200s\": the port must be a number from 1 to 65535", url);
            return TS_ERR_CONFIG;
        }
        u.port_given = true;
    }
    size_t plen = strcspn(auth_end, "?#");
    while (plen > 0 && auth_end[plen - 1] == '/')
        plen--;
    if (plen >= sizeof u.path)
        goto bad;
    memcpy(u.path, auth_end, plen);
    u.path[plen] = '\0';
    *out = u;
    return TS_OK;
bad:
    ts_errf(err, errsz, "invalid URL \"%.200s\"", url);
    return TS_ERR_CONFIG;
}

enum ts_err ts_hostport_split(const char *v, char *host, size_t hsz, char *port, size_t psz)
{
    const char *colon = strrchr(v, ':');
    if (!colon) {
        host[0] = '\0';
        ts_strlcpy(port, v, psz);
    } else {
        const char *h = v;
        size_t hl = (size_t)(colon - v);
        if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']')
            h++, hl -= 2;
        if (hl >= hsz)
            return TS_ERR_INVAL;
        memcpy(host, h, hl);
        host[hl] = '\0';
        ts_strlcpy(port, colon + 1, psz);
    }
    int n;
    return ts_port_parse(port, strlen(port), false, &n);
}

/* Percent-decodes [s, s+n) (application/x-www-form-urlencoded: '+' is a
 * space) into out, or only checks it with out NULL; *len gets the decoded
 * length. TS_ERR_INVAL on a broken escape or %00. */
static enum ts_err query_decode(const char *s, size_t n, char *out, size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++, o++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return TS_ERR_INVAL;
            int hi = ts_hexval(s[i + 1]), lo = ts_hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return TS_ERR_INVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (out)
            out[o] = c;
    }
    if (out)
        out[o] = '\0';
    *len = o;
    return TS_OK;
}

enum ts_err ts_url_query_param(const char *url, const char *name, char *out, size_t outsz)
{
    struct ts_url u;
    char why[64];
    if (!outsz || ts_url_parse(url, &u, why, sizeof why) != TS_OK)
        return TS_ERR_INVAL;
    const char *q = url + strcspn(url, "?#");
    if (*q != '?')
        return TS_ERR_NOTFOUND;
    size_t qlen = strcspn(++q, "#"), nlen = strlen(name);
    for (const char *p = q, *end = q + qlen; p < end;) {
        size_t plen = strcspn(p, "&#");
        if (plen > (size_t)(end - p))
            plen = (size_t)(end - p);
        if (plen > nlen && p[nlen] == '=' && strncmp(p, name, nlen) == 0) {
            /* Checked first: out is set on success only. */
            const char *v = p + nlen + 1;
            size_t vlen = plen - nlen - 1, dlen;
            if (query_decode(v, vlen, NULL, &dlen) != TS_OK || dlen >= outsz)
                return TS_ERR_INVAL;
            return query_decode(v, vlen, out, &dlen);
        }
        p += plen + 1;
    }
    return TS_ERR_NOTFOUND;
}
