/* The agent's link to the hub for live lookups (hublink.h). */
#include "hublink.h"
#include "feed.h"
#include "gzip.h"
#include "httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Inflated lookup answers larger than this are refused (one card, a sale). */
#define LOOKUP_MAX_BODY (1u << 20)

struct ts_hublink {
    struct ts_hublink_opts o;
    pthread_mutex_t mu;    /* guards http (a client is single-threaded) */
    struct ts_httpc *http; /* NULL until the first lookup */
    atomic_uint_fast64_t answers;
};

enum ts_err ts_hublink_client(const struct ts_agent_config *cfg, int connect_timeout_ms,
                              struct ts_httpc **out, char *err, size_t errsz)
{
    struct ts_httpc_opts o = {
        .base_url = cfg->hub_url,
        .ca_file = cfg->hub_ca,
        .cert_file = cfg->hub_cert,
        .key_file = cfg->hub_key,
        .pin_sha256 = cfg->hub_pin,
        .connect_timeout_ms = connect_timeout_ms,
        .max_body = 64u << 20,
    };
    return ts_httpc_new(&o, out, err, errsz);
}

enum ts_err ts_hublink_new(const struct ts_hublink_opts *o, struct ts_hublink **out)
{
    struct ts_hublink *h = calloc(1, sizeof *h);
    if (!h)
        return TS_ERR_NOMEM;
    h->o = *o;
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    return TS_OK;
}

void ts_hublink_free(struct ts_hublink *h)
{
    if (!h)
        return;
    ts_httpc_free(h->http);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

uint64_t ts_hublink_answers(const struct ts_hublink *h)
{
    return h ? atomic_load(&h->answers) : 0;
}

/*
 * The card of an answer: parsed as a one-card page, its key versions
 * checked, then written to the cache. Returns the card text (malloc'd) or
 * NULL, having said why in the log.
 */
static char *take_card(struct ts_hublink *h, const char *what, const ts_buf *body)
{
    struct ts_feed_page one;
    char err[256];
    int rc = ts_feed_parse_lookup(body->data, body->len, &one, err, sizeof err);
    if (rc == TS_OK && !ts_agent_kv_usable(h->o.cfg, one.kv, one.prev_kv)) {
        snprintf(err, sizeof err, "key version %d, ours is %d", one.kv, h->o.cfg->tenant.version);
        ts_feed_page_free(&one);
        rc = TS_ERR_PROTO;
    }
    if (rc != TS_OK) {
        TS_WARN("lookup", "%s lookup: card rejected: %s", what, err);
        return NULL;
    }
    if (h->o.cache) {
        pthread_mutex_lock(h->o.cache_mu);
        int crc = ts_cache_put_live(h->o.cache, &one, ts_now_wall_ms());
        pthread_mutex_unlock(h->o.cache_mu);
        if (crc != TS_OK)
            TS_WARN("lookup", "%s lookup: card not cached: %s", what, ts_strerror(crc));
    }
    char *card = one.items[0].card;
    one.items[0].card = NULL;
    ts_feed_page_free(&one);
    return card;
}

/* One request; *status the HTTP status. A 200's card is taken as in
 * ts_hublink_get; another status's JSON object body is the answer as it
 * is (NULL when it has none). */
static enum ts_err request(struct ts_hublink *h, const char *what, const char *method,
                           const char *path, const char *body, size_t len, int timeout_ms,
                           int *status, json_t **answer, char **card)
{
    char err[256];
    enum ts_err rc;
    struct ts_http_resp r = {0};
    json_t *ans = NULL;
    char *text = NULL;
    *status = 0;
    pthread_mutex_lock(&h->mu);
    if (!h->http &&
        (rc = ts_hublink_client(h->o.cfg, timeout_ms, &h->http, err, sizeof err)) != TS_OK) {
        TS_WARN("lookup", "live lookup unavailable: %s", err);
        goto out;
    }
    if (ts_httpc_request(h->http, method, path, "Accept-Encoding: gzip\r\n",
                         body ? "application/json" : NULL, body, len, timeout_ms, &r) != TS_OK) {
        TS_WARN("lookup", "%s lookup failed: %s", what, ts_httpc_error(h->http));
        ts_httpc_disconnect(h->http);
        /* The sync thread may be sitting in a long-poll on a link that just
         * died: have it check now, so status and the next card say offline
         * within seconds. */
        if (h->o.unreachable)
            atomic_store(h->o.unreachable, 1);
        rc = TS_ERR_CONNECT;
        goto out;
    }
    *status = r.status;
    rc = TS_ERR_PROTO;
    enum ts_err grc = ts_gzip_decode_body(&r.body, r.content_encoding, LOOKUP_MAX_BODY);
    if (grc != TS_OK) {
        TS_WARN("lookup", "%s lookup: body cannot be decoded (%s)", what, ts_strerror(grc));
        goto out;
    }
    ans = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    if (!json_is_object(ans)) {
        json_decref(ans);
        ans = NULL;
        if (r.status == 200)
            TS_WARN("lookup", "%s lookup: the answer is not a JSON object", what);
        rc = r.status == 200 ? TS_ERR_PROTO : TS_OK;
        goto out;
    }
    if (r.status != 200 || !json_object_get(ans, "card") || (text = take_card(h, what, &r.body)))
        atomic_fetch_add(&h->answers, r.status == 200);
    else
        json_object_del(ans, "card");
    rc = TS_OK;
out:
    pthread_mutex_unlock(&h->mu);
    ts_http_resp_free(&r);
    if (rc == TS_OK) {
        *answer = ans;
        if (card)
            *card = text;
        else
            free(text);
    }
    return rc;
}

enum ts_err ts_hublink_get(struct ts_hublink *h, const char *what, const char *path, int timeout_ms,
                           json_t **answer, char **card)
{
    int status;
    json_t *ans = NULL;
    char *text = NULL;
    enum ts_err rc = request(h, what, "GET", path, NULL, 0, timeout_ms, &status, &ans, &text);
    if (rc == TS_OK && status != 200) {
        if (status != 404)
            TS_WARN("lookup", "%s lookup answered HTTP %d", what, status);
        json_decref(ans);
        free(text);
        return status == 404 ? TS_ERR_NOTFOUND : TS_ERR_PROTO;
    }
    if (rc == TS_OK) {
        *answer = ans;
        if (card)
            *card = text;
        else
            free(text);
    }
    return rc;
}

enum ts_err ts_hublink_post(struct ts_hublink *h, const char *what, const char *path,
                            const char *body, size_t len, int timeout_ms, int *status,
                            json_t **answer)
{
    return request(h, what, "POST", path, body, len, timeout_ms, status, answer, NULL);
}
