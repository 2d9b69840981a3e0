/* Peer address allow-lists (netallow.h). */
#include "netallow.h"
#include "ts.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static enum ts_err item(const char *s, size_t n, struct ts_netallow *o)
{
    char tmp[64];
    if (n >= sizeof tmp || o->n >= TS_NETALLOW_MAX)
        return TS_ERR_INVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *slash = strchr(tmp, '/');
    if (slash)
        *slash++ = '\0';
    int k = o->n;
    memset(&o->net[k], 0, sizeof o->net[k]);
    if (inet_pton(AF_INET, tmp, o->net[k].addr) == 1)
        o->net[k].v6 = false;
    else if (inet_pton(AF_INET6, tmp, o->net[k].addr) == 1)
        o->net[k].v6 = true;
    else
        return TS_ERR_INVAL;
    unsigned max = o->net[k].v6 ? 128 : 32;
    o->net[k].bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash, &end, 10);
        if (!*slash || *end || b < 0 || b > (long)max)
            return TS_ERR_INVAL;
        o->net[k].bits = (unsigned)b;
    }
    o->n++;
    return TS_OK;
}

enum ts_err ts_netallow_parse(const char *list, struct ts_netallow *out, const char **bad)
{
    struct ts_netallow a = {0};
    const char *p = list ? list : "";
    while (*p) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n && item(p, n, &a) != TS_OK) {
            if (bad)
                *bad = p;
            return TS_ERR_INVAL;
        }
        p += n;
    }
    *out = a;
    return TS_OK;
}

static bool prefix_eq(const uint8_t *x, const uint8_t *y, unsigned bits)
{
    size_t whole = bits / 8;
    if (memcmp(x, y, whole) != 0)
        return false;
    unsigned rest = bits % 8;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (x[whole] & mask) == (y[whole] & mask);
}

bool ts_netallow_match(const struct ts_netallow *a, const struct sockaddr *sa)
{
    uint8_t peer[16];
    bool v6;
    if (sa->sa_family == AF_INET) {
        memcpy(peer, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        v6 = false;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        v6 = !IN6_IS_ADDR_V4MAPPED(in6);
        memcpy(peer, v6 ? in6->s6_addr : in6->s6_addr + 12, v6 ? 16 : 4);
    } else {
        return false;
    }
    for (int i = 0; i < a->n; i++)
        if (a->net[i].v6 == v6 && prefix_eq(peer, a->net[i].addr, a->net[i].bits))
            return true;
    return false;
}

void ts_netallow_peer(const struct sockaddr *sa, char *out, size_t outsz)
{
    const void *src = NULL;
    int fam = sa->sa_family;
    if (fam == AF_INET)
        src = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (fam == AF_INET6)
        src = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (!src || !inet_ntop(fam, src, out, (socklen_t)outsz))
        ts_strlcpy(out, "?", outsz);
}
