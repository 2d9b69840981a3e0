/*
 * Private to the source files (source.c, source_map.c and source_<vendor>.c):
 * how an adapter verifies a request and maps its payload.
 *
 * Every adapter turns the vendor's payload into Segment-shaped events (a
 * JSON array of identify and track calls, in the Segment e-commerce
 * vocabulary), which then go through the same parser (segment.c: sentAt
 * correction, identifier limits) and ingest path (ingest.c: dedupe on
 * messageId, one transaction) as /v1/batch.
 */
#ifndef TS_HUB_SOURCE_INT_H
#define TS_HUB_SOURCE_INT_H

#include "hub.h"

#include <jansson.h>
#include <mbedtls/md.h>

/* One request being handled. */
struct ts_src_ctx {
    const struct ts_hub_source_conf *conf;
    const struct ts_httpd_req *req;
    int64_t now_ms;
    json_t *out;          /* the Segment-shaped events made so far */
    size_t unknown;       /* vendor events of a kind the hub does not use */
    size_t rejected;      /* records refused one by one (lenient vendors) */
    json_t *errors;       /* their messages, an array */
    char replay_key[160]; /* the vendor's delivery id; "" = the body's hash */
    char err[256];
};

struct ts_src_vendor {
    int type;
    const char *name;
    /* Is the request the vendor's? TS_ERR_AUTH (401: bad signature or
     * token), TS_ERR_GONE (401: signed time outside the window). May set
     * c->replay_key. */
    enum ts_err (*verify)(struct ts_src_ctx *c);
    /* Appends the payload's events to c->out. TS_ERR_INVAL: the body as a
     * whole is not this vendor's (400). */
    enum ts_err (*map)(struct ts_src_ctx *c, const json_t *root);
    /* One bad record must not fail the request (Bloomreach): the good ones
     * are stored and the bad ones reported with a 200. */
    bool lenient;
    /* A replay is answered 200 {"replay": true} instead of 409, still
     * storing nothing: for a vendor that retries a 409 until it disables
     * the export (Braze). */
    bool replay_2xx;
    int default_window_s;
};

/* The adapter of an enum ts_hub_source_type, NULL when none. */
const struct ts_src_vendor *ts_src_vendor_of(int type);
/* The request's body through the adapter's map and segment.c (source.c):
 * the batch to store, and how many events were handed to segment.c.
 * TS_ERR_INVAL (err says why) is a 400; the rest of verification and
 * storing is the caller's. */
enum ts_err ts_src_batch(struct ts_src_ctx *c, const struct ts_src_vendor *v,
                         struct ts_seg_batch **out, size_t *nevents, char *err, size_t errsz);

extern const struct ts_src_vendor ts_src_segment, ts_src_rudderstack, ts_src_braze, ts_src_klaviyo,
    ts_src_bloomreach, ts_src_salesforce;

/* ---- verification (source_verify.c) ---------------------------------------*/

enum ts_src_enc { TS_SRC_HEX, TS_SRC_B64 };

/* Constant-time: does a[0..alen) equal the NUL-terminated b? */
bool ts_src_same(const void *a, size_t alen, const char *b);
/* Is sig (hex or base64 as enc, surrounding blanks ignored) the HMAC of
 * p1 || p2 under the source's secret? Compared in constant time. */
bool ts_src_hmac_ok(const struct ts_src_ctx *c, mbedtls_md_type_t md, const void *p1, size_t n1,
                    const void *p2, size_t n2, const char *sig, enum ts_src_enc enc);
/* "Authorization: Bearer <secret>". */
bool ts_src_bearer_ok(const struct ts_src_ctx *c);
/* "Authorization: Basic base64(user:secret)". */
bool ts_src_basic_ok(const struct ts_src_ctx *c);
/* A header's value, NULL when absent. */
const char *ts_src_header(const struct ts_src_ctx *c, const char *name);
/* TS_ERR_GONE when the source checks a window and sent_ms is outside it. */
enum ts_err ts_src_window(struct ts_src_ctx *c, int64_t sent_ms);
/* Seconds or milliseconds since the epoch, or ISO-8601, as the vendors send
 * times: a JSON number or string. false when unreadable. */
bool ts_src_time(const json_t *v, int64_t *ms);

/* ---- building events (source_map.c) ---------------------------------------*/

/* A new Segment-shaped event appended to c->out: type "identify" or
 * "track" (event name ev), the identity, messageId "<source>:<vendor_id>"
 * (none when vendor_id is NULL) and timestamp at_ms (0 = none: receive
 * time). Returns the event, to add traits or properties to; NULL on OOM. */
json_t *ts_src_event(struct ts_src_ctx *c, const char *ev, const char *user_id,
                     const char *anonymous_id, const char *vendor_id, int64_t at_ms);
/* The event's "traits" / "properties" object (made on first use). */
json_t *ts_src_traits(json_t *e);
json_t *ts_src_props(json_t *e);
/* Sets key to a copy of v when v is a string or number (other types and
 * NULL are left out). */
void ts_src_copy(json_t *dst, const char *key, const json_t *v);
/* The first of keys (NULL-terminated) that o has as a non-empty string or a
 * number, as text in buf; NULL when none. */
const char *ts_src_text(const json_t *o, const char *const *keys, char *buf, size_t bufsz);
/* Records a bad record (lenient vendors) with its message. */
void ts_src_reject(struct ts_src_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A shared vocabulary for vendors whose event names are free text (Braze
 * custom events, Bloomreach, Klaviyo metrics): "Viewed Product",
 * "product_viewed", "added to cart" ... to the Segment e-commerce event
 * name, NULL when none fits. */
const char *ts_src_vocab(const char *name);
/* one(c, i, arr[i]) for each element of arr, stopping at the first error;
 * arr not an array: TS_ERR_INVAL with "body must be <shape>" in c->err. */
enum ts_err ts_src_each(struct ts_src_ctx *c, const json_t *arr, const char *shape,
                        enum ts_err (*one)(struct ts_src_ctx *c, size_t i, const json_t *ev));
/* Copies the first of keys (NULL-terminated) that src has as a
 * non-empty string, number or boolean into dst[dstkey]. */
bool ts_src_pick(json_t *dst, const char *dstkey, const json_t *src, const char *const *keys);
/* Profile traits (first, last or full name, loyalty id, tier, points, home store) from the
 * usual spellings of src's keys into Segment trait names; whether src has
 * any of them. */
void ts_src_profile(json_t *traits, const json_t *src);
bool ts_src_has_profile(const json_t *src);
/* Segment-spec events (Segment and RudderStack): one object or an array of
 * them, copied as they are. */
enum ts_err ts_src_map_spec(struct ts_src_ctx *c, const json_t *root);
/* With a replay window: the (first) event's sentAt must fall in it
 * (source_segment.c). */
enum ts_err ts_src_spec_window(struct ts_src_ctx *c);

#endif
