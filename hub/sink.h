/*
 * The vendor interface of the hub's forwarder (docs/ARCHITECTURE.md
 * "Sinks"), in the spirit of libusb's backends: each vendor is one file,
 * hub/sink_<type>.c, that defines one const struct ts_sink_vendor of
 * function pointers and its documented limits; the generic forwarder
 * (sink_core.c, sink_queue.c) owns everything else: the durable queue rows
 * per sink, retries with full-jitter backoff, the token bucket, splitting a
 * refused batch down to the one bad item, dead letters, metrics.
 *
 * The life of a stored event at one sink:
 *   1. map():   the stored event (a Segment-shaped track event, kind
 *               purchase, return or consent) -> 1..N vendor items, each a
 *               JSON text with its dedup key. The forwarder stores the items
 *               as the sink's queue rows, so a dead letter keeps the mapped
 *               payload and an acknowledged item is never sent again.
 *   2. build(): up to limits.max_items items (and limits.max_bytes) -> one
 *               request: method, path under the sink's url, headers, body.
 *   3. auth():  the Authorization (or vendor) header lines, static or an
 *               OAuth token; called before the first request, when
 *               auth.expires_ms has passed, and once after a 401.
 *   4. parse(): the answer -> a whole-request verdict or one verdict per
 *               item; rate(): its rate headers -> hints for the bucket.
 *
 * Vendor functions run on the sink's own thread only (never two at once for
 * one sink), so their state needs no lock: with limits.max_in_flight > 1 only
 * the HTTPS round trips overlap, on the sink's sender threads; building,
 * auth and parsing stay on its own thread. They must not block except in
 * auth() through the given ts_sink_fetch.
 */
#ifndef TS_HUB_SINK_H
#define TS_HUB_SINK_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The kinds of stored events a sink can be sent (a bit set: [sink.NAME]
 * send = purchases, returns, consent). Returns and consent are stored by
 * another part of the hub; the interface carries them already. */
enum ts_sink_kind {
    TS_SINK_PURCHASE = 1u << 0,
    TS_SINK_RETURN = 1u << 1,
    TS_SINK_CONSENT = 1u << 2,
    TS_SINK_COUPON = 1u << 3, /* Coupon Applied: an offer redeemed at a till (offers.c) */
};

/* Which profile identifier the sink gets ([sink.NAME] identity). */
enum ts_sink_identity {
    TS_SINK_ID_USER = 0, /* the CDP user id of the customer (default) */
    TS_SINK_ID_EMAIL,    /* the e-mail address where the hub knows it, else the user id */
};

/* The most requests one sink has in flight ([sink.NAME] max_in_flight). */
#define TS_SINK_MAX_IN_FLIGHT 16

/* A vendor's documented limits, cited in its file. 0 = no limit. */
struct ts_sink_limits {
    size_t max_items;      /* items per request */
    size_t max_bytes;      /* bytes of one request body */
    size_t max_item_bytes; /* bytes of one item (a larger one is dead-lettered unsent) */
    double rate;           /* documented sustained rate: requests (or items) per second */
    double burst;          /* the bucket's depth in the same unit (0 = rate, at least 1) */
    bool rate_per_item;    /* rate counts items, not requests */
    int max_in_flight; /* requests at once (0 = 1); 1 where the vendor's order or docs demand it */
};

/* [sink.NAME] as configured: every key of the section, credentials merged
 * in from [hub] secrets_file. Fixed-size, so the hub's configuration stays
 * a plain value. Read with ts_sink_conf_get. */
#define TS_SINK_MAX_KEYS 24
struct ts_sink_kv {
    char key[40];
    char value[512];
    bool secret; /* from secrets_file or a credential key: never logged or shown */
};
struct ts_sink_conf {
    char name[64];     /* NAME */
    char type[24];     /* segment, rudderstack, klaviyo, braze, ... */
    char url[512];     /* the API base, https://host[:port][/prefix], no trailing '/' */
    char ca_file[512]; /* "" = the system's */
    unsigned send;     /* enum ts_sink_kind bits */
    enum ts_sink_identity identity;
    bool anonymous;    /* sends events without a known customer ([sink.NAME] anonymous) */
    int max_backoff_s; /* cap of the retry backoff */
    double rate;       /* [sink.NAME] rate: overrides limits.rate when > 0 */
    int max_in_flight; /* [sink.NAME] max_in_flight: overrides limits.max_in_flight when > 0 */
    size_t nkv;
    struct ts_sink_kv kv[TS_SINK_MAX_KEYS];
};

/* The value of key in the sink's section (or the secrets file), else def. */
const char *ts_sink_conf_get(const struct ts_sink_conf *c, const char *key, const char *def);

/* One stored event, as given to map(). */
struct ts_sink_event {
    enum ts_sink_kind kind;
    const char *id;      /* the stored event's id (its messageId) */
    const void *event;   /* json_t *: the stored event, Segment track shape; borrowed */
    const char *user_id; /* the CDP user id of the known customer; NULL = unknown */
    const char *email;   /* the customer's e-mail address; NULL = unknown */
    const char *profile; /* the identifier the sink is configured to get (user_id or
                          * email); NULL = an anonymous event */
    int64_t at_ms;       /* when it happened */
    int64_t now_ms;      /* when it is mapped */
};

/* One vendor item: a JSON text (an element of the vendor's batch). */
struct ts_sink_item {
    char *json; /* malloc'd, NUL-terminated */
    size_t len;
    char dedup[160]; /* the vendor's dedup key for it ("" = the vendor has none) */
    int kind;        /* the stored event's enum ts_sink_kind (set by the forwarder) */
};

struct ts_sink_items {
    struct ts_sink_item *v;
    size_t n, cap;
};

/* Appends the compact JSON of item (a json_t *, reference stolen) with its
 * dedup key (NULL = none). */
enum ts_err ts_sink_items_add(struct ts_sink_items *it, void *item, const char *dedup);
void ts_sink_items_free(struct ts_sink_items *it);

/* One request to the vendor, filled by build(). The forwarder prepares it
 * empty (method "POST", content type "application/json"). */
struct ts_sink_request {
    char method[8];
    char path[512]; /* path and query under conf.url, starting with '/' */
    char content_type[64];
    ts_buf headers; /* vendor header lines "Name: value\r\n" (not auth) */
    ts_buf body;
};

/* A plain HTTPS request for auth() (a token endpoint on another host).
 * The forwarder's own client: TLS verified against the sink's ca_file. */
struct ts_sink_fetch_resp {
    int status;
    ts_buf body;
};
struct ts_sink_fetch {
    enum ts_err (*request)(struct ts_sink_fetch *f, const char *method, const char *url,
                           const char *headers, const char *content_type, const char *body,
                           size_t len, struct ts_sink_fetch_resp *resp, char *err, size_t errsz);
    void *ctx;
};
void ts_sink_fetch_resp_free(struct ts_sink_fetch_resp *r);

/* What auth() fills. */
struct ts_sink_auth {
    char headers[4096]; /* "Authorization: ...\r\n" (or the vendor's key header) */
    int64_t expires_ms; /* wall ms after which auth() is called again; 0 = never */
    char base_url[512]; /* non-empty: send requests there instead of conf.url
                         * (Data Cloud's tenant URL learned from the token exchange) */
};

/* The answer as parse() and rate() see it. */
struct ts_sink_answer {
    int status;
    const char *body; /* NUL-terminated; "" when none */
    size_t len;
    /* The value of a response header (case-insensitive), NULL when absent. */
    const char *(*header)(const struct ts_sink_answer *a, const char *name);
    const void *ctx;
};

/* One verdict, for the whole request or one item. */
enum ts_sink_verdict {
    TS_SINK_OK = 0, /* acknowledged: never sent again */
    TS_SINK_RETRY,  /* later, with backoff (408, 429, 5xx, a timeout) */
    TS_SINK_SPLIT,  /* the batch was refused as a whole: send its items one by one */
    TS_SINK_DEAD,   /* refused for good: a dead letter with the reason */
    TS_SINK_AUTH,   /* the credentials were refused (401): auth() again, then once more */
    TS_SINK_ITEMS,  /* parse() only: see the per-item results */
};

struct ts_sink_result {
    enum ts_sink_verdict v; /* OK, RETRY or DEAD */
    char reason[200];       /* for RETRY and DEAD, printable */
};

/* Hints from rate headers (rate()); -1 = not given. */
struct ts_sink_rate_hint {
    int64_t retry_after_ms; /* wait at least this long before the next request */
    long limit;             /* requests allowed per window */
    long remaining;         /* left in the current window */
    int64_t reset_ms;       /* until the window resets */
};

/*
 * The default verdict of a whole answer from its status (the brief's
 * rules): 2xx OK, 401 AUTH, 408/429/5xx RETRY, another 4xx SPLIT when n > 1
 * else DEAD, anything else RETRY. Vendors start from it.
 */
enum ts_sink_verdict ts_sink_status_verdict(int status, size_t n);
/* Parses the IETF draft RateLimit headers (prefix "RateLimit-": Limit,
 * Remaining, Reset in seconds) or Braze's ("X-RateLimit-": Limit,
 * Remaining, Reset as a Unix time) and Retry-After into h. */
void ts_sink_rate_headers(const struct ts_sink_answer *a, const char *prefix, bool reset_is_epoch,
                          struct ts_sink_rate_hint *h);
/* "HTTP 400: <answer>" cut to fit and printable. */
void ts_sink_reason(const struct ts_sink_answer *a, char *out, size_t outsz);

/* A vendor backend. Every pointer but rate and fini is required. */
struct ts_sink_vendor {
    const char *type; /* the [sink.NAME] type value */
    unsigned kinds;   /* the kinds it can take (enum ts_sink_kind bits) */
    bool anonymous;   /* default of [sink.NAME] anonymous */
    struct ts_sink_limits limits;
    /* The [sink.NAME] keys it requires ("write_key", ...), NULL-terminated;
     * check-config and start-up refuse a sink missing one. */
    const char *const *required;
    /* Its credential keys (never logged or shown), NULL-terminated. */
    const char *const *secrets;
    /* Its other optional keys ("revision", "purchases", ...), NULL-terminated
     * or NULL. The forwarder's own keys (type, url, ca_file, send, identity,
     * anonymous, max_backoff_s, rate, max_in_flight) are read for every sink. */
    const char *const *options;

    /* Reads its options from c; *state is its own (NULL allowed). */
    enum ts_err (*init)(const struct ts_sink_conf *c, void **state, char *err, size_t errsz);
    void (*fini)(void *state);
    /* The event -> items (appended to out). TS_ERR_INVAL with err = the
     * event cannot be sent to this vendor: a dead letter without a request. */
    enum ts_err (*map)(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                       char *err, size_t errsz);
    /* items[0..n) -> req (n >= 1, within limits). */
    enum ts_err (*build)(void *state, const struct ts_sink_item *const *items, size_t n,
                         struct ts_sink_request *req, char *err, size_t errsz);
    enum ts_err (*auth)(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                        int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz);
    /* The answer to the request build() made of items[0..n): a whole verdict (with reason
     * filled for RETRY/DEAD/SPLIT in results[0]), or TS_SINK_ITEMS with
     * results[0..n) each OK, RETRY or DEAD. */
    enum ts_sink_verdict (*parse)(void *state, const struct ts_sink_answer *a,
                                  const struct ts_sink_item *const *items, size_t n,
                                  struct ts_sink_result *results);
    /* Rate headers -> h (preset to -1). NULL = Retry-After only. */
    void (*rate)(void *state, const struct ts_sink_answer *a, struct ts_sink_rate_hint *h);
    /* Whether item b may go in one request after a, the request's first.
     * NULL = any two may. A vendor whose kinds (or whose items of one kind)
     * go to different endpoints cuts its batches here: build() then sees
     * items of one endpoint only, and picks it from items[0]. */
    bool (*together)(void *state, const struct ts_sink_item *a, const struct ts_sink_item *b);
    /* The kinds a sink of this type gets when its section sets no send,
     * from its keys (Data Cloud: consent only where consent_object names
     * the object for it). NULL = kinds. */
    unsigned (*default_kinds)(const struct ts_sink_conf *c);
};

/* The registry (sink_vendors.c): the vendor of a type, NULL when unknown. */
const struct ts_sink_vendor *ts_sink_vendor_find(const char *type);
/* The i-th known vendor, NULL past the end (check-config, docs). */
const struct ts_sink_vendor *ts_sink_vendor_at(size_t i);

/* A vendor file's helpers for the common JSON shapes (sink_util.c). */
/* body = prefix + items joined by ',' + suffix. */
enum ts_err ts_sink_join(const struct ts_sink_item *const *items, size_t n, const char *prefix,
                         const char *suffix, ts_buf *body);
/* The Segment "Order Completed" properties of a stored event (a json_t *
 * object borrowed from e->event; NULL when it has none). */
const void *ts_sink_props(const struct ts_sink_event *e);

#endif
