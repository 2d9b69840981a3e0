/*
 * The one URL parser: "scheme://host[:port][/path]" as our configuration
 * files write them (hub URL, public URL, upstream URL), host possibly
 * "[v6]". No credentials, no percent-decoding: we only ever connect. The
 * one exception is ts_url_query_param, for URLs customers carry in QR codes.
 */
#ifndef TS_URL_H
#define TS_URL_H

#include "ts.h"

#include <stdbool.h>
#include <stddef.h>

struct ts_url {
    bool https;
    char host[256];  /* without the brackets of a v6 literal */
    int port;        /* the scheme's default when the URL names none */
    bool port_given; /* the URL named one */
    char path[512];  /* from the first '/' up to '?' or '#', trailing '/' cut; may be "" */
};

/*
 * Parses url into *out (set on success only). TS_ERR_CONFIG, with why in err,
 * for another scheme than http/https, credentials, an empty or too long host,
 * or a port that is not 1..65535 in plain digits ("8x", "70000", "-1", "").
 */
enum ts_err ts_url_parse(const char *url, struct ts_url *out, char *err, size_t errsz);

/* A port: only the digits of [s, s+n), 1..65535; with listen, 0 too (the
 * kernel picks a free one). TS_ERR_INVAL otherwise ("8x", "70000", "-1"). */
enum ts_err ts_port_parse(const char *s, size_t n, bool listen, int *port);

/* "host:port", "[v6]:port", ":port" or "port" (host "": every address) into
 * host and port (the digits, 1..65535); TS_ERR_INVAL otherwise. */
enum ts_err ts_hostport_split(const char *v, char *host, size_t hsz, char *port, size_t psz);

/*
 * The value of query parameter name in an http(s) URL (what an app QR code
 * carries: "https://shop.example/loyalty?card=4711%2F0815"), percent-decoded
 * with '+' as a space, into out. The first parameter of that name wins.
 * TS_ERR_NOTFOUND when the URL has no such parameter; TS_ERR_INVAL when it
 * is no http(s) URL (ts_url_parse), an escape is broken or decodes to NUL,
 * or the value does not fit. out is written on success only.
 */
enum ts_err ts_url_query_param(const char *url, const char *name, char *out, size_t outsz);

#endif
