/*
 * Allow-lists of peer addresses for the inputs that listen on a network
 * port (the escpos tap): "127.0.0.1, 10.1.2.0/24, ::1, fd00::/8". An
 * IPv4-mapped IPv6 peer (::ffff:a.b.c.d, a dual-stack listener) matches as
 * its IPv4 address.
 */
#ifndef TS_NETALLOW_H
#define TS_NETALLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

#define TS_NETALLOW_MAX 32

struct ts_netallow {
    int n;
    struct {
        bool v6;
        uint8_t addr[16];
        unsigned bits; /* prefix length */
    } net[TS_NETALLOW_MAX];
};

/* Parses a comma- or space-separated list of addresses and ADDR/BITS
 * networks. TS_ERR_INVAL (nothing set) on a bad item; *bad (may be NULL)
 * then points at it. */
enum ts_err ts_netallow_parse(const char *list, struct ts_netallow *out, const char **bad);

/* Whether the peer sa is in the list. */
bool ts_netallow_match(const struct ts_netallow *a, const struct sockaddr *sa);

/* The peer as text ("192.0.2.7", "2001:db8::1") for a log line. */
void ts_netallow_peer(const struct sockaddr *sa, char *out, size_t outsz);

#endif
