/*
 * Unit tests for the agent's loopback API (agent/api.c): a real agent on a
 * temporary state directory, the API on an ephemeral port, and a plain
 * socket client that checks the bytes that come back — Host guard, bearer
 * token, status codes, JSON shapes, the page, and the SSE stream.
 * No syncer runs, so the link is never online and no hub is ever asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
#include "tmpdir.h"

#define IO_TIMEOUT_MS 5000

struct fx {
    char dir[64];
    struct ts_agent *a;
    struct ts_api *api;
    int port;
    char host[32]; /* the Host value the guard accepts */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char text[1024], err[256];
    struct ts_agent_config cfg;
    assert_non_null(f);
    ts_log_set_level(TS_LOG_ERROR);
    strcpy(f->dir, "/tmp/ts-api-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(text, sizeof text,
             "[agent]\nstore = S001\nterminal = T01\nstate_dir = %s\n"
             "[hub]\nurl = https://localhost:1\nca = /nonexistent/ca.pem\n"
             "cert = /nonexistent/t.pem\nkey = /nonexistent/t.key\n"
             "[identity]\ntenant_key = "
             "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n"
             "[api]\nlisten = 127.0.0.1:0\n",
             f->dir);
    assert_int_equal(ts_agent_config_parse("test.conf", text, &cfg, err, sizeof err), TS_OK);
    assert_int_equal(ts_agent_open(&cfg, &f->a, err, sizeof err), TS_OK);
    assert_int_equal(ts_api_start(f->a, &f->api, err, sizeof err), TS_OK);
    f->port = ts_api_port(f->api);
    assert_true(f->port > 0);
    snprintf(f->host, sizeof f->host, "127.0.0.1:%d", f->port);
    *state = f;
    return 0;
}

static int teardown(void **state)
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

static int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Appends what arrives within timeout_ms; 0 = peer closed, -1 = timeout. */
static int recv_some(int fd, ts_buf *b, int timeout_ms)
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

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
}

/* Case-insensitive header lookup; returns a static copy of the value or NULL. */
static const char *header(const struct resp *r, const char *name)
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
static struct resp raw_request(int port, const char *req, size_t len)
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
static struct resp http(struct fx *f, const char *method, const char *path, const char *host,
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
static json_t *json_body(const struct resp *r)
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

static void expect_error(struct resp r, int status)
{
    assert_int_equal(r.status, status);
    json_t *j = json_body(&r);
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    resp_free(&r);
}

static const char *jstr(json_t *o, const char *path1, const char *path2)
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

static void sse_open(struct fx *f, struct sse *s, const char *last_event_id)
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

static void sse_close(struct sse *s)
{
    close(s->fd);
    ts_buf_free(&s->raw);
    ts_buf_free(&s->text);
}

/* Moves received bytes into s->text, undoing chunked framing. */
static void sse_decode(struct sse *s)
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
static bool sse_next(struct sse *s, struct event *ev, int timeout_ms)
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

static void test_host_guard(void **state)
{
    struct fx *f = *state;
    char h[64];
    expect_error(http(f, "GET", "/livez", "evil.example", NULL, NULL), 421);
    expect_error(http(f, "GET", "/", "evil.example", NULL, NULL), 421);
    expect_error(http(f, "GET", "/api/v1/events", "evil.example", NULL, NULL), 421);
    /* A rebinding page would send its own name, even with our token. */
    expect_error(http(f, "POST", "/api/v1/scan", "evil.example:80", "", "{\"code\":\"1\"}"), 421);
    snprintf(h, sizeof h, "127.0.0.1:%d", f->port + 1);
    expect_error(http(f, "GET", "/livez", h, NULL, NULL), 421);

    const char *ok[] = {"127.0.0.1:%d", "localhost:%d", "[::1]:%d"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(h, sizeof h, ok[i], f->port);
        struct resp r = http(f, "GET", "/livez", h, NULL, NULL);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    static const char nohost[] = "GET /livez HTTP/1.0\r\n\r\n";
    struct resp r = raw_request(f->port, nohost, sizeof nohost - 1);
    assert_int_equal(r.status, 400);
    resp_free(&r);
}

static void test_bearer(void **state)
{
    struct fx *f = *state;
    const char *body = "{\"code\":\"CARD-0001\"}";
    struct resp r = http(f, "POST", "/api/v1/scan", NULL, NULL, body);
    assert_int_equal(r.status, 401);
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "error", NULL), "missing or wrong bearer token");
    json_decref(j);
    resp_free(&r);
    expect_error(http(f, "POST", "/api/v1/scan", NULL, "not-the-token", body), 401);
    char almost[80];
    snprintf(almost, sizeof almost, "%.*sX", (int)strlen(f->a->token) - 1, f->a->token);
    expect_error(http(f, "POST", "/api/v1/scan", NULL, almost, body), 401);
    expect_error(http(f, "POST", "/api/v1/session/clear", NULL, NULL, "{}"), 401);
    /* Nothing happened. */
    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 204);
    resp_free(&r);
}

static void test_scan_and_session(void **state)
{
    struct fx *f = *state;
    struct resp r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    resp_free(&r);

    r = http(f, "POST", "/api/v1/scan", NULL, "",
             "{\"code\":\"CARD-UNKNOWN-0042\",\"aim\":\"]C0\"}");
    assert_int_equal(r.status, 200);
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "status", NULL), "unknown");
    assert_string_equal(jstr(j, "link", NULL), "offline");
    assert_string_equal(jstr(j, "scan", "code_masked"), "…0042");
    assert_string_equal(jstr(j, "scan", "aim"), "]C0");
    assert_null(strstr(r.body, "CARD-UNKNOWN")); /* never echoed raw */
    json_decref(j);
    char *posted = strdup(r.body);
    resp_free(&r);

    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_decref(json_body(&r));
    assert_string_equal(r.body, posted);
    resp_free(&r);
    free(posted);

    r = http(f, "POST", "/api/v1/session/clear", NULL, "", NULL);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    resp_free(&r);
    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 204);
    resp_free(&r);
}

static void test_bad_requests(void **state)
{
    struct fx *f = *state;
    const char *bad[] = {"{\"code\":",
                         "[1,2]",
                         "{}",
                         "{\"code\":5}",
                         "{\"code\":\"\"}",
                         "{\"code\":\"ok\",\"aim\":7}",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(http(f, "POST", "/api/v1/scan", NULL, "", bad[i]), 400);

    struct resp r = http(f, "POST", "/api/v1/scan", NULL, "", "{\"code\":\"1234\",\"aim\":\"xx\"}");
    assert_int_equal(r.status, 400);
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "error", NULL), "invalid code");
    json_decref(j);
    resp_free(&r);

    /* 64 KiB + 1 of otherwise valid JSON. */
    size_t big = 64 * 1024 + 1;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    memcpy(body, "{\"code\":\"1234\"}", 15);
    body[big] = '\0';
    expect_error(http(f, "POST", "/api/v1/scan", NULL, "", body), 413);
    free(body);

    /* Without Content-Length (chunked) the cap holds too. */
    ts_buf q = {0};
    ts_buf_printf(&q,
                  "POST /api/v1/scan HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                  f->host, f->a->token);
    for (int i = 0; i < 20; i++) {
        ts_buf_printf(&q, "1000\r\n");
        for (int k = 0; k < 0x1000; k++)
            ts_buf_append(&q, " ", 1);
        ts_buf_puts(&q, "\r\n");
    }
    ts_buf_puts(&q, "0\r\n\r\n");
    expect_error(raw_request(f->port, q.data, q.len), 413);
    ts_buf_free(&q);

    expect_error(http(f, "GET", "/api/v1/nope", NULL, NULL, NULL), 404);
    expect_error(http(f, "GET", "/index.php", NULL, NULL, NULL), 404);
    r = http(f, "DELETE", "/api/v1/session", NULL, "", NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(&r, "Allow"), "GET, HEAD");
    resp_free(&r);
    r = http(f, "GET", "/api/v1/scan", NULL, NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(header(&r, "Allow"), "POST");
    json_decref(json_body(&r));
    resp_free(&r);
    /* CORS preflights get nothing that would let a page read us. */
    r = http(f, "OPTIONS", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
}

static void test_page_and_probes(void **state)
{
    struct fx *f = *state;
    struct resp r = http(f, "GET", "/", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_string_equal(header(&r, "Cache-Control"), "no-store");
    assert_non_null(strstr(header(&r, "Content-Security-Policy"), "default-src 'self'"));
    assert_null(header(&r, "Access-Control-Allow-Origin"));
    /* The embedded page with the page key filled in (session.c); the
     * issue's budget is 50 KB for everything the page needs. */
    assert_true(r.body_len <= 50 * 1024);
    assert_non_null(strstr(r.body, f->a->page_key));
    assert_null(strstr(r.body, f->a->token));
    assert_null(strstr(r.body, "@@"));
    assert_non_null(strstr(r.body, "<html"));
    assert_non_null(strstr(r.body, "/api/v1/events"));
    assert_null(strstr(r.body, "http://"));
    assert_null(strstr(r.body, "https://"));
    assert_null(strstr(r.body, "innerHTML"));
    resp_free(&r);

    r = http(f, "GET", "/livez", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *j = json_body(&r);
    assert_true(json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    resp_free(&r);
    r = http(f, "GET", "/readyz", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_true(json_is_true(json_object_get(j, "ready")));
    json_decref(j);
    resp_free(&r);
    r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    j = json_body(&r);
    assert_string_equal(jstr(j, "version", NULL), TS_VERSION);
    assert_string_equal(jstr(j, "link", NULL), "offline");
    json_decref(j);
    resp_free(&r);
}

/* Posts a scan on its own connection and checks it was accepted. */
static void scan(struct fx *f, const char *code)
{
    char body[128];
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    struct resp r = http(f, "POST", "/api/v1/scan", NULL, "", body);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void expect_event(struct sse *s, const char *type, const char *needle, uint64_t id)
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
static void seed_card(struct fx *f, const char *code, const char *cid, const char *card_json)
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

/*
 * A scan of a cached customer: the POST answers only after `scan` and
 * `customer` were published, the session carries the card with its
 * freshness, every open stream gets it, and the raw code is nowhere.
 */
static void test_scan_found_from_cache(void **state)
{
    struct fx *f = *state;
    struct sse s1, s2;
    seed_card(f, "2100-0199-1427-0", "c-ada", ADA_CARD);
    sse_open(f, &s1, NULL);
    sse_open(f, &s2, NULL);

    uint64_t before = ts_bus_last_id(f->a->bus);
    struct resp r = http(f, "POST", "/api/v1/scan", NULL, "",
                         "{\"code\":\" 2100019914270\\r\\n\",\"aim\":\"]E0\"}");
    assert_int_equal(r.status, 200);
    assert_true(ts_bus_last_id(f->a->bus) >= before + 2); /* published before the answer */
    json_t *j = json_body(&r);
    assert_string_equal(jstr(j, "status", NULL), "found");
    assert_string_equal(jstr(j, "source", NULL), "cache");
    assert_string_equal(jstr(j, "link", NULL), "offline");
    assert_string_equal(jstr(j, "card", "name"), "Ada Lovelace");
    assert_string_equal(jstr(j, "card", "tier"), "gold");
    assert_string_equal(jstr(j, "scan", "code_masked"), "…4270");
    assert_string_equal(jstr(j, "scan", "aim"), "]E0");
    assert_string_equal(jstr(j, "scan", "kind"), "loyalty");
    int64_t synced;
    assert_int_equal(ts_iso8601_parse(jstr(j, "synced_at", NULL), &synced), TS_OK);
    assert_true(llabs(ts_now_wall_ms() - synced) < 60000);
    assert_null(strstr(r.body, "2100019914270"));
    json_decref(j);
    char *posted = strdup(r.body);
    resp_free(&r);

    for (struct sse *s = &s1; s; s = s == &s1 ? &s2 : NULL) {
        struct event ev;
        assert_true(sse_next(s, &ev, IO_TIMEOUT_MS));
        assert_string_equal(ev.type, "scan");
        assert_null(strstr(ev.data, "2100019914270"));
        free(ev.data);
        assert_true(sse_next(s, &ev, IO_TIMEOUT_MS));
        assert_string_equal(ev.type, "customer");
        assert_string_equal(ev.data, posted); /* the same session the POST answered */
        free(ev.data);
    }
    sse_close(&s1);
    sse_close(&s2);

    r = http(f, "GET", "/api/v1/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, posted);
    resp_free(&r);
    free(posted);

    /* Another code of no one is unknown, and replaces the session. */
    r = http(f, "POST", "/api/v1/scan", NULL, "", "{\"code\":\"2100019914287\"}");
    j = json_body(&r);
    assert_string_equal(jstr(j, "status", NULL), "unknown");
    assert_null(json_object_get(j, "card"));
    json_decref(j);
    resp_free(&r);
}

static void test_status_fields(void **state)
{
    struct fx *f = *state;
    struct resp r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    json_t *j = json_body(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "cards")), 0);
    assert_true(json_is_false(json_object_get(j, "cursor_saved")));
    assert_true(json_is_null(json_object_get(j, "last_sync")));
    assert_true(json_is_null(json_object_get(j, "last_error")));
    assert_string_equal(jstr(j, "hub", NULL), "https://localhost:1");
    assert_string_equal(jstr(j, "store", NULL), "S001");
    assert_string_equal(jstr(j, "terminal", NULL), "T01");
    json_decref(j);
    resp_free(&r);

    seed_card(f, "CARD-0001", "c1", ADA_CARD);
    ts_agent_note_page(f->a, 1, ts_now_wall_ms());
    ts_agent_set_link(f->a, false, "feed request failed: TLS: certificate expired");
    r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    j = json_body(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "cards")), 1);
    assert_true(json_is_true(json_object_get(j, "cursor_saved")));
    int64_t at;
    assert_int_equal(ts_iso8601_parse(jstr(j, "last_sync", NULL), &at), TS_OK);
    assert_string_equal(jstr(j, "last_error", NULL),
                        "feed request failed: TLS: certificate expired");
    assert_string_equal(jstr(j, "link", NULL), "offline");
    assert_int_equal(json_integer_value(json_object_get(j, "feed_pages_applied")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "feed_items_applied")), 1);
    json_decref(j);
    resp_free(&r);

    ts_agent_set_link(f->a, true, NULL);
    r = http(f, "GET", "/api/v1/status", NULL, NULL, NULL);
    j = json_body(&r);
    assert_string_equal(jstr(j, "link", NULL), "online");
    json_decref(j);
    resp_free(&r);
}

static void test_sse_live(void **state)
{
    struct fx *f = *state;
    struct sse s1, s2;
    struct event ev;
    sse_open(f, &s1, NULL);
    sse_open(f, &s2, NULL);
    /* No session yet: nothing but the greeting. */
    assert_false(sse_next(&s1, &ev, 300));

    scan(f, "CARD-UNKNOWN-0007");
    for (struct sse *s = &s1; s; s = s == &s1 ? &s2 : NULL) {
        expect_event(s, "scan", "0007", 1);
        expect_event(s, "customer", "\"unknown\"", 2);
    }
    struct resp r = http(f, "POST", "/api/v1/session/clear", NULL, "", "");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    expect_event(&s1, "clear", NULL, 3);
    expect_event(&s2, "clear", NULL, 3);
    ts_agent_set_link(f->a, false, "hub unreachable");
    expect_event(&s1, "link", "\"offline\"", 4);
    sse_close(&s2);
    sse_close(&s1);
}

static void test_sse_start_position(void **state)
{
    struct fx *f = *state;
    struct sse s;
    struct event ev;
    scan(f, "CARD-UNKNOWN-0001");
    scan(f, "CARD-UNKNOWN-0002"); /* events 1..4 */

    /* A fresh page gets the current card at once, id = newest. */
    sse_open(f, &s, NULL);
    expect_event(&s, "customer", "…0002", 4);
    assert_false(sse_next(&s, &ev, 300));
    sse_close(&s);

    /* A reconnecting page resumes after what it saw. */
    sse_open(f, &s, "1");
    expect_event(&s, "customer", "…0001", 2);
    expect_event(&s, "scan", "0002", 3);
    expect_event(&s, "customer", "…0002", 4);
    sse_close(&s);

    /* An id from before an agent restart counts as fresh. */
    sse_open(f, &s, "9999");
    expect_event(&s, "customer", "…0002", 4);
    sse_close(&s);
}

static void test_sse_large_event(void **state)
{
    struct fx *f = *state;
    struct sse s;
    struct event ev;
    size_t n = 100 * 1024;
    char *json = malloc(n + 32);
    int k = snprintf(json, n + 32, "{\"link\":\"online\",\"pad\":\"");
    memset(json + k, 'x', n);
    strcpy(json + k + n, "\"}");
    sse_open(f, &s, NULL);
    uint64_t id = ts_bus_publish(f->a->bus, "link", json);
    assert_true(sse_next(&s, &ev, IO_TIMEOUT_MS));
    assert_string_equal(ev.type, "link");
    assert_int_equal(ev.id, id);
    assert_string_equal(ev.data, json);
    free(ev.data);
    /* Line breaks in a payload cannot break the framing. */
    const char *multi = "{\"link\":\r\n\"offline\",\n\n\"x\":1}";
    id = ts_bus_publish(f->a->bus, "link", multi);
    assert_true(sse_next(&s, &ev, IO_TIMEOUT_MS));
    assert_int_equal(ev.id, id);
    assert_string_equal(ev.data, "{\"link\":\n\"offline\",\n\n\"x\":1}");
    free(ev.data);
    /* And the stream goes on after them. */
    ts_agent_clear(f->a);
    expect_event(&s, "clear", NULL, id + 1);
    sse_close(&s);
    free(json);
}

/* The agent's shutdown order: bus closed, then the API stopped. Streams end
 * cleanly and stopping does not wait for a keepalive. */
static void test_shutdown_ends_streams(void **state)
{
    struct fx *f = *state;
    struct sse s1, s2;
    struct event ev;
    sse_open(f, &s1, NULL);
    sse_open(f, &s2, NULL);
    int64_t t0 = ts_now_mono_ms();
    ts_bus_close(f->a->bus);
    assert_false(sse_next(&s1, &ev, IO_TIMEOUT_MS));
    assert_true(s1.ended);
    ts_api_stop(f->api);
    f->api = NULL;
    assert_true(ts_now_mono_ms() - t0 < 3000);
    assert_false(sse_next(&s2, &ev, IO_TIMEOUT_MS));
    assert_true(s2.ended);
    sse_close(&s1);
    sse_close(&s2);
}

/* ts_api_stop alone (bus still open) must not hang on a waiting stream. */
static void test_stop_without_bus_close(void **state)
{
    struct fx *f = *state;
    struct sse s;
    struct event ev;
    sse_open(f, &s, NULL);
    int64_t t0 = ts_now_mono_ms();
    ts_api_stop(f->api);
    f->api = NULL;
    assert_true(ts_now_mono_ms() - t0 < 3000);
    assert_false(sse_next(&s, &ev, IO_TIMEOUT_MS));
    assert_true(s.ended);
    sse_close(&s);
}

static void test_listen_errors(void **state)
{
    struct fx *f = *state;
    struct ts_api *other = NULL;
    char err[256], want[128];
    int saved_port = f->a->cfg.api_port;
    f->a->cfg.api_port = f->port;
    assert_int_not_equal(ts_api_start(f->a, &other, err, sizeof err), TS_OK);
    assert_null(other);
    snprintf(want, sizeof want, "cannot listen on 127.0.0.1:%d: Address already in use", f->port);
    assert_string_equal(err, want);
    f->a->cfg.api_port = saved_port;

    char saved_host[sizeof f->a->cfg.api_host];
    memcpy(saved_host, f->a->cfg.api_host, sizeof saved_host);
    strcpy(f->a->cfg.api_host, "0.0.0.0");
    assert_int_equal(ts_api_start(f->a, &other, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "loopback"));
    memcpy(f->a->cfg.api_host, saved_host, sizeof saved_host);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_and_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_and_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_found_from_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_start_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_large_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_without_bus_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
