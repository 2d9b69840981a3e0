/*
 * Segment and RudderStack (hub/sink.h): both take the Segment HTTP Tracking
 * API's POST /v1/batch with the source's write key as the Basic-auth user.
 * The stored event already is a Segment "Order Completed" track event
 * (Segment's e-commerce spec), so map() only adds the profile.
 *
 * Segment: https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
 *   - "Authenticate by Basic auth: the write key as the user name, empty password"
 *   - batch: at most 500 KB per request, 32 KB per event; 400 past either
 *   - "no hard rate limit ... do not exceed 500 requests per second"
 *   - dedup: messageId
 *   - a request needs userId or anonymousId on every event
 * RudderStack: https://www.rudderstack.com/docs/api/http-api/
 *   - the same Basic write-key auth and /v1/batch shape; batch payload up to
 *     4 MB, 32 KB per event ("Payload size limits"); messageId dedup
 */
#include "sink.h"

#include <jansson.h>
#include <string.h>

static const char *const required[] = {"write_key", NULL};
static const char *const secrets[] = {"write_key", NULL};

struct seg {
    char auth[600];
};

static enum ts_err init(const struct ts_sink_conf *c, void **state, char *err, size_t errsz)
{
    struct seg *s = calloc(1, sizeof *s);
    if (!s) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    const char *key = ts_sink_conf_get(c, "write_key", "");
    char user[300], enc[420];
    snprintf(user, sizeof user, "%s:", key);
    ts_base64_encode(user, strlen(user), enc, sizeof enc);
    snprintf(s->auth, sizeof s->auth, "Authorization: Basic %s\r\n", enc);
    *state = s;
    return TS_OK;
}

static void fini(void *state)
{
    free(state);
}

static enum ts_err map(void *state, const struct ts_sink_event *e, struct ts_sink_items *out,
                       char *err, size_t errsz)
{
    (void)state;
    json_t *ev = json_deep_copy(e->event);
    if (!ev) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    /* The CDP's user id when the hub knows the customer (the profile the
     * purchase belongs to); the till's anonymousId stays either way. */
    if (e->user_id)
        json_object_set_new(ev, "userId", json_string(e->user_id));
    if (e->email && e->profile == e->email) {
        json_t *ctx = json_object_get(ev, "context");
        if (!json_is_object(ctx))
            json_object_set_new(ev, "context", ctx = json_object());
        json_t *traits = json_object_get(ctx, "traits");
        if (!json_is_object(traits))
            json_object_set_new(ctx, "traits", traits = json_object());
        json_object_set_new(traits, "email", json_string(e->email));
    }
    return ts_sink_items_add(out, ev, e->id); /* messageId is Segment's dedup key */
}

static enum ts_err build(void *state, const struct ts_sink_item *const *items, size_t n,
                         struct ts_sink_request *req, char *err, size_t errsz)
{
    (void)state;
    char sent[40], tail[80];
    ts_iso8601(ts_now_wall_ms(), sent, sizeof sent);
    snprintf(tail, sizeof tail, "],\"sentAt\":\"%s\"}", sent);
    snprintf(req->path, sizeof req->path, "/v1/batch");
    if (ts_sink_join(items, n, "{\"batch\":[", tail, &req->body) != TS_OK) {
        ts_errf(err, errsz, "out of memory");
        return TS_ERR_NOMEM;
    }
    return TS_OK;
}

static enum ts_err auth(void *state, const struct ts_sink_conf *c, struct ts_sink_fetch *f,
                        int64_t now_ms, struct ts_sink_auth *out, char *err, size_t errsz)
{
    (void)c, (void)f, (void)now_ms, (void)err, (void)errsz;
    ts_strlcpy(out->headers, ((struct seg *)state)->auth, sizeof out->headers);
    out->expires_ms = 0;
    return TS_OK;
}

/* Segment answers 200 for every accepted batch and 400 for a too-large
 * or malformed one, refusing the batch as a whole: the forwarder splits it
 * (docs "Errors"). A 401 is a wrong write key: no refresh can fix it. */
static enum ts_sink_verdict parse(void *state, const struct ts_sink_answer *a,
                                  const struct ts_sink_item *const *items, size_t n,
                                  struct ts_sink_result *r)
{
    (void)state, (void)items;
    enum ts_sink_verdict v = ts_sink_status_verdict(a->status, n);
    if (v == TS_SINK_AUTH)
        v = TS_SINK_RETRY; /* a static key: retried with backoff until fixed */
    if (v != TS_SINK_OK)
        ts_sink_reason(a, r[0].reason, sizeof r[0].reason);
    return v;
}

const struct ts_sink_vendor ts_sink_segment = {
    .type = "segment",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = true,                    /* anonymousId is enough for Segment */
    .limits = {.max_items = 500,          /* fewer round trips; bytes bound it first */
               .max_bytes = 475u * 1024u, /* 500 KB, with room */
               .max_item_bytes = 32u * 1024u,
               .rate = 500,
               .max_in_flight = 4,
               .burst = 50},
    .required = required,
    .secrets = secrets,
    .init = init,
    .fini = fini,
    .map = map,
    .build = build,
    .auth = auth,
    .parse = parse,
};

const struct ts_sink_vendor ts_sink_rudderstack = {
    .type = "rudderstack",
    .kinds = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON,
    .anonymous = true,
    .limits = {.max_items = 500,
               .max_bytes = 3900u * 1024u, /* 4 MB, with room */
               .max_item_bytes = 32u * 1024u,
               .rate = 500,
               .max_in_flight = 4,
               .burst = 50},
    .required = required,
    .secrets = secrets,
    .init = init,
    .fini = fini,
    .map = map,
    .build = build,
    .auth = auth,
    .parse = parse,
};
