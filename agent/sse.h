/*
 * An incremental Server-Sent Events parser (WHATWG HTML §9.2 event stream
 * interpretation): feed it bytes as they arrive, it calls back once per
 * complete event. Used by `tillside watch`; bytes come from the local API but
 * are parsed as untrusted (bounded line and event sizes).
 */
#ifndef TS_SSE_H
#define TS_SSE_H

#include "../common/ts.h"

#include <stddef.h>

#define TS_SSE_MAX_LINE 65536
#define TS_SSE_MAX_DATA (1u << 20)

struct ts_sse_event {
    const char *type; /* "message" when the stream gave none */
    const char *id;   /* last event id seen ("" when none) */
    const char *data; /* data lines joined with '\n' */
    size_t data_len;
};

typedef void (*ts_sse_cb)(void *ud, const struct ts_sse_event *ev);

struct ts_sse {
    ts_buf line;
    ts_buf data;
    char type[64];
    char id[128];
    int has_data;
    int skip_line; /* dropping an over-long line up to its end */
    int last_cr;   /* previous byte was CR (CRLF counts once) */
};

void ts_sse_init(struct ts_sse *p);
/* Consumes n bytes, calling cb for each complete event. TS_ERR_FULL when
 * an event's data exceeds TS_SSE_MAX_DATA (the event is dropped). */
enum ts_err ts_sse_feed(struct ts_sse *p, const char *buf, size_t n, ts_sse_cb cb, void *ud);
void ts_sse_free(struct ts_sse *p);

#endif
