/*
 * The fixture of the agent API tests (test_agent_api.c, test_agent_sse.c):
 * a real agent on a temporary state directory, the API on an ephemeral
 * port, and a plain socket client that checks the bytes that come back.
 * Include after <cmocka.h>.
 */
#ifndef TS_TEST_AGENT_API_FX_H
#define TS_TEST_AGENT_API_FX_H

#include <arpa/inet.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "agent_fx.h"

#define IO_TIMEOUT_MS 5000

struct fx {
    char dir[64];
    struct ts_agent *a;
    struct ts_api *api;
    int port;
    char host[32]; /* the Host value the guard accepts */
};

static inline int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->a = ts_test_agent_open(f->dir, "/tmp/ts-api-test-XXXXXX");
    char err[256];
    struct ts_agent_parts deps = {.core = f->a};
    assert_int_equal(ts_api_start(&deps, &f->api, err, sizeof err), TS_OK);
    f->port = ts_api_port(f->api);
    assert_true(f->port > 0);
    snprintf(f->host, sizeof f->host, "127.0.0.1:%d", f->port);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    ts_bus_close(f->a->bus); /* as the agent's shutdown does */
    ts_api_stop(f->api);
    ts_agent_close(f->a);
    ts_test_rm_tree(f->dir);
    free(f);
    return 0;
}

/* ---- a tiny HTTP client -----------------------------------------------------*/

static inline int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static inline void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Appends what arrives within timeout_ms; 0 = peer closed, -1 = timeout. */
static inline int recv_some(int fd, ts_buf *b, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    char tmp[8192];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0)
        return 0;
    assert_int_equal(ts_buf_append(b, tmp, (size_t)n), TS_OK);
    return (int)n;
}

struct resp {
    int status;
    char *head; /* status line and headers */
    char *body;
    size_t body_len;
};

static inline void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
}

/* Case-insensitive header lookup; returns a static copy of the value or NULL. */
static inline const char *header(const struct resp *r, const char *name)
{
    static char val[512];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(val, sizeof val, "%.*s", (int)len, v);
            return val;
        }
    }
    return NULL;
}

/* Sends a raw request and reads the answer until the server closes. */
static inline struct resp raw_request(int port, const char *req, size_t len)
{
    struct resp r = {0};
    ts_buf b = {0};
    int fd = dial(port);
    send_all(fd, req, len);
    int n;
    while ((n = recv_some(fd, &b, IO_TIMEOUT_MS)) > 0)
        ;
    assert_int_equal(n, 0); /* "Connection: close" must end it */
    close(fd);
    assert_non_null(b.data);
    char *end = strstr(b.data, "\r\n\r\n");
    assert_non_null(end);
    assert_int_equal(sscanf(b.data, "HTTP/1.%*d %d", &r.status), 1);
    r.head = strndup(b.data, (size_t)(end - b.data) + 2);
    r.body_len = b.len - (size_t)(end + 4 - b.data);
    r.body = malloc(r.body_len + 1);
    memcpy(r.body, end + 4, r.body_len);
    r.body[r.body_len] = '\0';
    ts_buf_free(&b);
    return r;
}

/* A request with Connection: close; host NULL = the right one, auth NULL =
 * none, auth "" = the agent's token. */
static inline struct resp http(struct fx *f, const char *method, const char *path, const char *host,
                               const char *auth, const char *body)
{
    ts_buf q = {0};
    ts_buf_printf(&q, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path,
                  host ? host : f->host);
    if (auth)
        ts_buf_printf(&q, "Authorization: Bearer %s\r\n", *auth ? auth : f->a->token);
    if (body)
        ts_buf_printf(&q, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                      strlen(body));
    ts_buf_printf(&q, "\r\n%s", body ? body : "");
    struct resp r = raw_request(f->port, q.data, q.len);
    ts_buf_free(&q);
    return r;
}

/* Every JSON answer: the right headers, an object body, never CORS. */
static inline json_t *json_body(const struct resp *r)
{
    assert_string_equal(header(r, "Content-Type"), "application/json");
    assert_string_equal(header(r, "Cache-Control"), "no-store");
    assert_string_equal(header(r, "X-Content-Type-Options"), "nosniff");
    assert_null(header(r, "Access-Control-Allow-Origin"));
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_object(j));
    return j;
}

static inline void expect_error(struct resp r, int status)
{
    assert_int_equal(r.status, status);
    json_t *j = json_body(&r);
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    resp_free(&r);
}

static inline const char *jstr(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_string_value(v);
}

/* ---- an SSE client ----------------------------------------------------------*/

struct sse {
    int fd;
    bool chunked, ended;
    ts_buf raw, text; /* bytes as received; the de-chunked stream */
    size_t rpos, chunk_left, tpos;
};

struct event {
    char type[16];
    uint64_t id;
    char *data;
};

static inline void sse_open(struct fx *f, struct sse *s, const char *last_event_id)
{
    memset(s, 0, sizeof *s);
    char req[256];
    int n = snprintf(req, sizeof req, "GET /api/v1/events HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n",
                     f->host, last_event_id ? "Last-Event-ID: " : "",
                     last_event_id ? last_event_id : "", last_event_id ? "\r\n" : "");
    s->fd = dial(f->port);
    send_all(s->fd, req, (size_t)n);
    char *end;
    while (!(s->raw.data && (end = strstr(s->raw.data, "\r\n\r\n"))))
        assert_true(recv_some(s->fd, &s->raw, IO_TIMEOUT_MS) > 0);
    struct resp r = {.head = strndup(s->raw.data, (size_t)(end - s->raw.data) + 2)};
    assert_non_null(strstr(r.head, " 200 "));
    assert_string_equal(header(&r, "Content-Type"), "text/event-stream");
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    assert_string_equal(header(&r, "X-Accel-Buffering"), "no");
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    const char *te = header(&r, "Transfer-Encoding");
    s->chunked = te && strcasecmp(te, "chunked") == 0;
    s->rpos = (size_t)(end + 4 - s->raw.data);
    free(r.head);
}

static inline void sse_close(struct sse *s)
{
    close(s->fd);
    ts_buf_free(&s->raw);
    ts_buf_free(&s->text);
}

/* Moves received bytes into s->text, undoing chunked framing. */
static inline void sse_decode(struct sse *s)
{
    while (s->rpos < s->raw.len) {
        const char *p = s->raw.data + s->rpos;
        size_t avail = s->raw.len - s->rpos;
        if (!s->chunked || s->chunk_left) {
            size_t n = s->chunked && avail > s->chunk_left ? s->chunk_left : avail;
            ts_buf_append(&s->text, p, n);
            s->rpos += n;
            if (s->chunked)
                s->chunk_left -= n;
            continue;
        }
        const char *eol = memmem(p, avail, "\r\n", 2);
        if (!eol)
            return;
        s->rpos += (size_t)(eol - p) + 2;
        if (eol == p) /* the CRLF closing the previous chunk */
            continue;
        s->chunk_left = strtoul(p, NULL, 16);
        if (s->chunk_left == 0)
            s->ended = true;
    }
}

/*
 * The next event (comments and retry-only blocks skipped) within timeout_ms.
 * Returns false when the stream ended or nothing came.
 */
static inline bool sse_next(struct sse *s, struct event *ev, int timeout_ms)
{
    int64_t deadline = ts_now_mono_ms() + timeout_ms;
    memset(ev, 0, sizeof *ev);
    for (;;) {
        char *blk = s->text.data ? s->text.data + s->tpos : NULL;
        char *end = blk ? strstr(blk, "\n\n") : NULL;
        if (end) {
            s->tpos += (size_t)(end + 2 - blk);
            ts_buf data = {0};
            for (char *line = blk; line < end + 1;) {
                size_t n = strcspn(line, "\n");
                if (strncmp(line, "id: ", 4) == 0)
                    ev->id = strtoull(line + 4, NULL, 10);
                else if (strncmp(line, "event: ", 7) == 0)
                    snprintf(ev->type, sizeof ev->type, "%.*s", (int)(n - 7), line + 7);
                else if (strncmp(line, "data: ", 6) == 0) /* joined with \n (SSE spec) */
                    ts_buf_printf(&data, "%s%.*s", data.len ? "\n" : "", (int)(n - 6), line + 6);
                line += n + 1;
            }
            if (ev->type[0]) {
                ev->data = ts_buf_steal(&data);
                return true;
            }
            ts_buf_free(&data);
            continue;
        }
        int64_t left = deadline - ts_now_mono_ms();
        if (s->ended || left <= 0)
            return false;
        int n = recv_some(s->fd, &s->raw, (int)left);
        if (n == 0)
            s->ended = true;
        sse_decode(s);
    }
}

/* ---- tests --------------------------------------------------------------------*/

/* Posts a scan on its own connection and checks it was accepted. */
static inline void scan(struct fx *f, const char *code)
{
    char body[128];
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    struct resp r = http(f, "POST", "/api/v1/scan", NULL, "", body);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static inline void expect_event(struct sse *s, const char *type, const char *needle, uint64_t id)
{
    struct event ev;
    assert_true(sse_next(s, &ev, IO_TIMEOUT_MS));
    assert_string_equal(ev.type, type);
    if (needle)
        assert_non_null(strstr(ev.data, needle));
    if (id)
        assert_int_equal(ev.id, id);
    json_t *j = json_loads(ev.data, 0, NULL);
    assert_non_null(j);
    json_decref(j);
    free(ev.data);
}

/* Puts one customer into the cache the way the sync thread would, keyed by
 * the HMAC of code under the agent's tenant key. */
static inline void seed_card(struct fx *f, const char *code, const char *cid, const char *card_json)
{
    char norm[64], key[TS_IDENT_KEY_HEX], err[256] = "";
    assert_int_equal(ts_ident_normalize(code, strlen(code), norm, sizeof norm), TS_OK);
    assert_int_equal(ts_ident_key(&f->a->cfg.tenant, TS_IDENT_LOYALTY, norm, key), TS_OK);
    ts_buf page = {0};
    ts_buf_printf(&page,
                  "{\"kv\":1,\"items\":[{\"op\":\"upsert\",\"cid\":\"%s\",\"keys\":[\"%s\"],"
                  "\"card\":%s}],\"cursor\":\"c1.test.1\",\"more\":false}",
                  cid, key, card_json);
    struct ts_feed_page p;
    assert_int_equal(ts_feed_parse(page.data, page.len, &p, err, sizeof err), TS_OK);
    pthread_mutex_lock(&f->a->cache_mu);
    assert_int_equal(ts_cache_apply_page(f->a->cache, &p, ts_now_wall_ms(), err, sizeof err),
                     TS_OK);
    pthread_mutex_unlock(&f->a->cache_mu);
    ts_feed_page_free(&p);
    ts_buf_free(&page);
}

#define ADA_CARD                                                                                   \
    "{\"cid\":\"c-ada\",\"name\":\"Ada Lovelace\",\"tier\":\"gold\",\"points\":1200,"              \
    "\"consent\":true,\"interests\":[{\"product_id\":\"SKU-1\",\"name\":\"Trail jacket\","         \
    "\"signal\":\"cart\"}],\"orders\":[],\"suggested\":{\"product_id\":\"SKU-7\","                 \
    "\"name\":\"Rain cover\"}}"

#endif
