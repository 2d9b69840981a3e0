/*
 * Forwarding store purchases to a CDP (hub/upstream.c), played by an
 * in-process ts_httpd server (outage with Retry-After, a refused event
 * dead-lettered); the purchase parser's limits; [upstream] configuration;
 * a failed receipt lookup names the connection that failed.
 */
#include "hub_purchases_fx.h"

struct cdp {
    pthread_mutex_t mu;
    int requests;
    int fail_next;   /* answer fail_status this many times */
    int fail_status; /* with Retry-After: 7 for 503 and 429 */
    json_t *got;     /* messageId → userId (or "") of every accepted event */
    int got_twice;   /* an accepted messageId arrived again */
    char auth[128];
};

static void cdp_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct cdp *c = ud;
    pthread_mutex_lock(&c->mu);
    c->requests++;
    const char *h = ts_http_header(req->msg, "Authorization");
    ts_strlcpy(c->auth, h ? h : "", sizeof c->auth);
    if (c->fail_next > 0) {
        c->fail_next--;
        if (c->fail_status == 503 || c->fail_status == 429)
            ts_strlcpy(resp->extra_headers, "Retry-After: 7\r\n", sizeof resp->extra_headers);
        ts_httpd_error(resp, c->fail_status, "not now");
        pthread_mutex_unlock(&c->mu);
        return;
    }
    json_t *b = json_loads(req->body, 0, NULL), *arr = json_object_get(b, "batch");
    /* Like Segment: an invalid event fails the whole request. */
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (strstr(json_string_value(json_object_get(
                       json_object_get(json_array_get(arr, i), "properties"), "order_id")),
                   "BAD")) {
            ts_httpd_error(resp, 400, "invalid event");
            json_decref(b);
            pthread_mutex_unlock(&c->mu);
            return;
        }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *e = json_array_get(arr, i);
        const char *mid = json_string_value(json_object_get(e, "messageId"));
        const char *uid = json_string_value(json_object_get(e, "userId"));
        if (json_object_get(c->got, mid))
            c->got_twice++;
        json_object_set_new(c->got, mid, json_string(uid ? uid : ""));
    }
    json_decref(b);
    ts_buf_reset(&resp->body);
    ts_buf_puts(&resp->body, "{\"success\":true}");
    pthread_mutex_unlock(&c->mu);
}

/* When the forwarder looks again with nothing pending: not until woken on
 * SQLite (a new purchase wakes it), in a second on PostgreSQL, where other
 * hubs sharing the database queue purchases too. */
static bool idle_next(int64_t next, int64_t now)
{
    int64_t wall = ts_now_wall_ms(); /* run_once moves its clock on to the wall's */
    if (!getenv("TS_TEST_PG"))
        return next == INT64_MAX;
    return next >= now + 1000 && next <= (wall > now ? wall : now) + 1000;
}

static void test_forwarding(void **state)
{
    struct fx *f = *state;
    struct cdp c = {.got = json_object()};
    pthread_mutex_init(&c.mu, NULL);
    struct ts_httpd *srv = NULL;
    char err[256], url[64], e1[2048], e2[2048], e3[2048], cid[64];
    struct ts_httpd_opts o = {.listen = "127.0.0.1:0"};
    assert_int_equal(ts_httpd_start(&o, cdp_handle, &c, &srv, err, sizeof err), TS_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/batch", ts_httpd_port(srv));
    char conf[256];
    snprintf(conf, sizeof conf, "[upstream]\nurl = %s\nwrite_key = cdp-key\nmax_backoff_s = 60\n",
             url);
    teardown(state);
    setup_with(state, conf);
    f = *state;
    struct ts_hub_upstream *u = NULL;
    assert_int_equal(ts_hub_upstream_new(f->store, &f->cfg, &u, err, sizeof err), TS_OK);
    f->api.upstream = u;

    online_customer(f, cid);
    event(e1, sizeof e1, "m-f1", "S001-T01-000041", "S001", cid, "SKU-JKT", "EUR");
    event(e2, sizeof e2, "m-f2", "S001-T01-000042", "S001", NULL, "SKU-1", "EUR");
    event(e3, sizeof e3, "m-f3", "S001-T01-BAD43", "S001", NULL, "SKU-1", "EUR");
    struct answer a = post(f, &f->t01, e1, e2);
    assert_int_equal(count(a.json, "accepted"), 2);
    json_decref(a.json);
    a = post(f, &f->t01, e3, NULL);
    assert_int_equal(count(a.json, "accepted"), 1);
    json_decref(a.json);
    assert_int_equal(pstat(f, "pending"), 3);

    /* Timeouts and rate limits without Retry-After are retried after a
     * backoff (never at once), and lose nothing. */
    int64_t now = NOW, next;
    static const int transient[] = {408, 500, 502};
    for (size_t i = 0; i < 3; i++) {
        c.fail_next = 1;
        c.fail_status = transient[i];
        assert_int_equal(ts_hub_upstream_run_once(u, now, &next), TS_OK);
        assert_int_equal(c.requests, (int)i + 1);
        assert_true(next >= now + 100);
        assert_int_equal(pstat(f, "pending"), 3);
        now = next;
    }
    /* The CDP is down: one request, then nothing until Retry-After. */
    c.requests = 0;
    c.fail_next = 1;
    c.fail_status = 429;
    assert_int_equal(ts_hub_upstream_run_once(u, now, &next), TS_OK);
    assert_int_equal(c.requests, 1);
    assert_true(next >= now + 7000);
    assert_true(next <= now + 60000);
    assert_int_equal(ts_hub_upstream_run_once(u, now + 3000, &next), TS_OK);
    assert_int_equal(c.requests, 1); /* no busy loop while paused */
    assert_int_equal(pstat(f, "pending"), 3);
    c.fail_next = 1;
    c.fail_status = 503;
    assert_int_equal(ts_hub_upstream_run_once(u, next, &next), TS_OK);
    assert_int_equal(c.requests, 2);
    assert_int_equal(pstat(f, "pending"), 3);

    /* Back up: the batch is refused for the BAD event, sent one by one,
     * and only that event dies. */
    int64_t t = next;
    assert_int_equal(ts_hub_upstream_run_once(u, t, &next), TS_OK);
    assert_int_equal(pstat(f, "pending"), 0);
    assert_int_equal(pstat(f, "forwarded"), 2);
    assert_int_equal(pstat(f, "dead"), 1);
    assert_int_equal(json_object_size(c.got), 2);
    assert_int_equal(c.got_twice, 0);
    assert_string_equal(json_string_value(json_object_get(c.got, "m-f1")), "u-ada");
    assert_string_equal(json_string_value(json_object_get(c.got, "m-f2")), "");
    assert_string_equal(c.auth, "Basic Y2RwLWtleTo="); /* base64("cdp-key:") */
    assert_true(idle_next(next, t));
    int before = c.requests;
    t = ts_now_wall_ms() + 1000;
    assert_int_equal(ts_hub_upstream_run_once(u, t, &next), TS_OK);
    assert_int_equal(c.requests, before); /* nothing left to send */
    assert_true(idle_next(next, t));

    struct ts_httpd_resp resp;
    memset(&resp, 0, sizeof resp);
    struct ts_httpd_req req = {.method = "GET", .target = "/metrics", .path = "/metrics"};
    ts_hub_metrics_handle(&f->api, &req, &resp);
    assert_non_null(strstr(resp.body.data, "tillside_hub_upstream_dead 1\n"));
    assert_non_null(strstr(resp.body.data, "tillside_hub_upstream_pending 0\n"));
    assert_non_null(strstr(resp.body.data, "tillside_hub_upstream_forwarded_total 2\n"));
    ts_buf_free(&resp.body);

    ts_hub_upstream_free(u);
    ts_httpd_stop(srv);
    json_decref(c.got);
    pthread_mutex_destroy(&c.mu);
}

static void test_parser_limits(void **state)
{
    (void)state;
    struct ts_hub_pbatch *b = NULL;
    char err[256];
    /* An event over 32 KB, otherwise valid, is refused on its own. */
    size_t n = 40 * 1024;
    char *big = malloc(n + 4096), e[2048];
    assert_non_null(big);
    event(e, sizeof e, "m", "S001-T01-000900", "S001", NULL, "SKU-1", "EUR");
    char *cut = strstr(e, "\"discount\":0");
    assert_non_null(cut);
    int k = snprintf(big, n + 4096, "{\"batch\":[%.*s\"note\":\"", (int)(cut - e), e);
    memset(big + k, 'x', n);
    snprintf(big + k + n, 4096 - (size_t)k, "\",%s, 7]}", cut);
    assert_int_equal(ts_hub_purchases_parse(big, strlen(big), "S001", NOW, &b, err, sizeof err),
                     TS_OK);
    assert_int_equal(b->n, 2);
    assert_int_equal(b->p[0].status, TS_HUB_P_REJECTED);
    assert_non_null(strstr(b->p[0].error, "32 KB"));
    assert_int_equal(b->p[1].status, TS_HUB_P_REJECTED);
    assert_null(b->p[1].message_id);
    ts_hub_pbatch_free(b);
    b = NULL;
    /* A key given twice (a second total after the one the till printed) is
     * refused with the body, not read last-wins. */
    event(e, sizeof e, "m-dup", "S001-T01-000901", "S001", NULL, "SKU-1", "EUR");
    cut = strstr(e, "\"discount\":0");
    snprintf(big, n + 4096, "{\"batch\":[%.*s\"discount\":5,%s]}", (int)(cut - e), e, cut);
    assert_int_equal(ts_hub_purchases_parse(big, strlen(big), "S001", NOW, &b, err, sizeof err),
                     TS_ERR_INVAL);
    assert_null(b);
    assert_non_null(strstr(err, "duplicate"));
    free(big);
}

static void test_upstream_config(void **state)
{
    (void)state;
    struct ts_hub_config cfg;
    char err[256];
    const char *base = "[cdp]\nwrite_key = k\n[tenant]\nkey = " KEY_HEX "\n[upstream]\n";
    char conf[512];
    snprintf(conf, sizeof conf, "%surl = https://api.segment.io/v1/batch\nwrite_key = w\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_OK);
    assert_string_equal(cfg.upstream_url, "https://api.segment.io"); /* the batch path is ours */
    assert_int_equal(cfg.upstream_max_backoff_s, 300);
    snprintf(conf, sizeof conf, "%surl = https://cdp.example\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[upstream] write_key"));
    snprintf(conf, sizeof conf, "%surl = ftp://cdp.example\nwrite_key = w\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "[upstream] url"));
    snprintf(conf, sizeof conf, "%s", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", conf, &cfg, err, sizeof err), TS_OK);
    assert_string_equal(cfg.upstream_url, ""); /* not forwarded */
}

/* What fn(arg) writes to stderr (the log), NUL-terminated, into out. */
static void capture_stderr(void (*fn)(void *), void *arg, char *out, size_t outsz)
{
    char path[] = "/tmp/ts-test-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    assert_true(dup2(fd, 2) == 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, outsz - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

struct lookup_call {
    struct ts_hub_store *store;
    int rc;
};

static void lookup_receipt(void *arg)
{
    struct lookup_call *c = arg;
    ts_buf out = {0};
    c->rc = ts_hub_lookup_receipt(c->store, "S001-T01-000042", &out);
    ts_buf_free(&out);
}

/* A lookup that fails on the read side's connection says why it failed
 * there, not what the writer last said (which is nothing wrong at all). */
static void test_lookup_failure_names_reader_error(void **state)
{
    (void)state;
    char dir[] = "/tmp/ts-test-hub-XXXXXX", db[1024], err[256], log[4096];
    struct ts_tenant_key key = {.len = 32, .version = 1};
    memset(key.key, 0x6b, 32);
    assert_non_null(mkdtemp(dir));
    test_hub_db_file(db, sizeof db, dir);
    struct ts_hub_store *store = NULL;
    assert_int_equal(ts_hub_store_open(db, &key, 0, &store, err, sizeof err), TS_OK);
    /* Another process takes the table away under the running hub. */
    struct ts_sql *other = NULL;
    assert_int_equal(ts_sql_open(db, 0, &other, err, sizeof err), TS_OK);
    assert_int_equal(ts_sql_exec(other, "DROP TABLE purchases"), TS_OK);
    ts_sql_close(other);
    struct lookup_call c = {.store = store};
    capture_stderr(lookup_receipt, &c, log, sizeof log);
    assert_int_equal(c.rc, TS_ERR_DB);
    assert_non_null(strstr(log, "receipt lookup"));
    assert_non_null(strstr(log, "purchases")); /* "no such table" / "does not exist" */
    ts_hub_store_close(store);
    if (!getenv("TS_TEST_PG")) {
        char f[1100];
        static const char *const tails[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            snprintf(f, sizeof f, "%s%s", db, tails[i]);
            unlink(f);
        }
    }
    rmdir(dir);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    ts_log_set_level(TS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        T(test_forwarding),
        cmocka_unit_test(test_parser_limits),
        cmocka_unit_test(test_upstream_config),
        cmocka_unit_test(test_lookup_failure_names_reader_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
