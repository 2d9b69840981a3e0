/* Unit tests for common/: buffers, time, hex, config parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "sqlerr.h"
#include "ts.h"
#include "url.h"
#include "worker.h"

static void test_buf_grows_and_terminates(void **state)
{
    (void)state;
    ts_buf b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ts_buf_printf(&b, "%d,", i), TS_OK);
    assert_true(b.len > 3000);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data, "0,1,2,", 6);
    ts_buf_free(&b);
    ts_buf_free(NULL);
}

static void test_iso8601_roundtrip(void **state)
{
    (void)state;
    char s[32];
    ts_iso8601(1795883835123LL, s, sizeof s);
    assert_string_equal(s, "2026-11-28T16:37:15.123Z");
    int64_t ms;
    assert_int_equal(ts_iso8601_parse(s, &ms), TS_OK);
    assert_int_equal(ms, 1795883835123LL);
    assert_int_equal(ts_iso8601_parse("2026-11-28T17:37:15+01:00", &ms), TS_OK);
    assert_int_equal(ms, 1795883835000LL);
    assert_int_equal(ts_iso8601_parse("yesterday", &ms), TS_ERR_INVAL);
    assert_int_equal(ts_iso8601_parse("2026-13-28T17:37:15Z", &ms), TS_ERR_INVAL);
    /* Truncated offsets must not read past the string. */
    assert_int_equal(ts_iso8601_parse("2026-11-28T17:37:15+1:2", &ms), TS_ERR_INVAL);
    assert_int_equal(ts_iso8601_parse("2026-11-28T17:37:15+", &ms), TS_ERR_INVAL);
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t in[3] = {0x00, 0xab, 0xff}, out[3];
    char hex[7];
    size_t n;
    ts_hex_encode(in, 3, hex);
    assert_string_equal(hex, "00abff");
    assert_int_equal(ts_hex_decode("00ABff", out, sizeof out, &n), TS_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(in, out, 3);
    assert_int_equal(ts_hex_decode("0g", out, sizeof out, &n), TS_ERR_INVAL);
    assert_int_equal(ts_hex_decode("abc", out, sizeof out, &n), TS_ERR_INVAL);
}

static void test_conf_values_and_errors(void **state)
{
    (void)state;
    char err[256] = "";
    struct ts_conf *c = NULL;
    assert_int_equal(ts_conf_parse("t.conf",
                                   "[hub]\nurl = https://h:1\ncert = ; empty\n[api]\nport = abc\n",
                                   &c, err, sizeof err),
                     TS_OK);
    assert_string_equal(ts_conf_get(c, "hub", "url", NULL), "https://h:1");
    assert_string_equal(ts_conf_get(c, "hub", "missing", "def"), "def");
    assert_string_equal(ts_conf_get(c, "hub", "cert", "x"), ""); /* comment is not a value */
    long v = 0;
    assert_int_equal(ts_conf_get_int(c, "api", "port", 8765, 1, 65535, &v, err, sizeof err),
                     TS_ERR_CONFIG);
    /* The message names the file, line and key so a technician can fix it. */
    assert_non_null(strstr(err, "t.conf:5"));
    assert_non_null(strstr(err, "port"));
    assert_string_equal(ts_conf_section(c, 0), "hub");
    assert_string_equal(ts_conf_section(c, 1), "api");
    assert_null(ts_conf_section(c, 2));
    ts_conf_free(c);

    assert_int_equal(ts_conf_parse("bad.conf", "[hub\nurl\n", &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "bad.conf:1"));
}

/* A size near SIZE_MAX must be refused, not wrap len + extra + 1 into a
 * small number that "fits" and then let the caller write past the end. */
static void test_buf_reserve_refuses_overflow(void **state)
{
    (void)state;
    ts_buf b = {0};
    assert_int_equal(ts_buf_reserve(&b, SIZE_MAX), TS_ERR_NOMEM);
    assert_int_equal(ts_buf_puts(&b, "abc"), TS_OK);
    size_t cap = b.cap;
    assert_int_equal(ts_buf_reserve(&b, SIZE_MAX - 2), TS_ERR_NOMEM);
    assert_int_equal(ts_buf_reserve(&b, SIZE_MAX - 3), TS_ERR_NOMEM);
    assert_int_equal(ts_buf_append(&b, "x", SIZE_MAX - 1), TS_ERR_NOMEM);
    assert_int_equal(b.cap, cap); /* untouched */
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    ts_buf_free(&b);
}

/* ---- back-off ---- */

static void test_backoff_bounds_cap_floor(void **state)
{
    (void)state;
    /* both ends of [floor, min(cap, base * 2^attempt)] are reached */
    assert_int_equal(ts_backoff_pick_ms(0, 1000, 30000, 0, 0), 0);
    assert_int_equal(ts_backoff_pick_ms(0, 1000, 30000, 0, UINT32_MAX), 1000);
    assert_int_equal(ts_backoff_pick_ms(0, 1000, 30000, 100, 0), 100);
    assert_int_equal(ts_backoff_pick_ms(2, 1000, 30000, 100, UINT32_MAX), 4000);
    /* the cap, also for attempts that would overflow a shift */
    assert_int_equal(ts_backoff_pick_ms(5, 1000, 30000, 100, UINT32_MAX), 30000);
    assert_int_equal(ts_backoff_pick_ms(4000000000u, 1000, 30000, 100, UINT32_MAX), 30000);
    /* a floor at or above the ceiling wins */
    assert_int_equal(ts_backoff_pick_ms(0, 50, 30000, 100, UINT32_MAX), 100);
    assert_int_equal(ts_backoff_pick_ms(9, 1000, 30000, 40000, 0), 40000);
    /* the midpoint draw lands mid-range: jitter scales, it does not clamp */
    int64_t mid = ts_backoff_pick_ms(10, 1000, 300000, 50, 1u << 31);
    assert_true(mid >= 150000 && mid <= 150050);
    for (unsigned a = 0; a < 70; a++)
        for (int i = 0; i < 50; i++) {
            int64_t d = ts_backoff_ms(a, 500, 30000, 100);
            int64_t ceil = a >= 6 ? 30000 : 500LL << a;
            if (ceil < 100)
                ceil = 100;
            assert_true(d >= 100 && d <= ceil);
        }
}

/* Full jitter is uniform over the whole range: every tenth of
 * [floor, ceiling] gets its share of draws (not "ceiling/2 + jitter", not
 * the floor most of the time). 40000 draws: a tenth is 4000 +- ~190 at 3
 * sigma; the bounds below are wider than 6 sigma. */
static void test_backoff_distribution(void **state)
{
    (void)state;
    enum { N = 40000 };
    unsigned bucket[10] = {0};
    double sum = 0;
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < N; i++) {
        int64_t d = ts_backoff_ms(3, 125, 30000, 0); /* [0, 1000] */
        assert_true(d >= 0 && d <= 1000);
        bucket[d == 1000 ? 9 : d / 100]++;
        sum += (double)d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    for (int b = 0; b < 10; b++)
        if (bucket[b] < 3600 || bucket[b] > 4400)
            fail_msg("bucket %d holds %u of %d draws", b, bucket[b], N);
    assert_true(sum / (double)N > 480 && sum / (double)N < 520);
    assert_true(lo < 10 && hi > 990);
    /* the scaling itself is exact: the 1000 equal slices of r map one to one
     * onto the 1000 values of [0, 999] */
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t r = (uint32_t)((((uint64_t)i << 32) / 1000) + 1);
        assert_int_equal(ts_backoff_pick_ms(0, 999, 999, 0, r), i);
    }
}

/* ---- worker ---- */

struct probe {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the test waits on this, never on a sleep */
    int rounds;
    bool exited;
    enum ts_worker_wake wake;
    int64_t woke_after_ms; /* of the last sleep */
};

static void probe_loop(struct ts_worker *w, void *arg)
{
    struct probe *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        p->rounds++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        int64_t t0 = ts_now_mono_ms();
        bool stop = ts_worker_sleep(w, 60000, p->wake);
        pthread_mutex_lock(&p->mu);
        p->woke_after_ms = ts_now_mono_ms() - t0;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
    }
    pthread_mutex_lock(&p->mu);
    p->exited = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Waits (on the probe's condvar, 10 s at most) until rounds >= n. */
static bool wait_rounds(struct probe *p, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&p->mu);
    while (p->rounds < n && pthread_cond_timedwait(&p->cv, &p->mu, &dl) == 0) {
    }
    bool ok = p->rounds >= n;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void probe_init(struct probe *p, enum ts_worker_wake wake)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->wake = wake;
}

/* A loop asleep for a minute stops, and is joined, at once; so does it
 * wake at once for a kick. (Latency bounds are generous for loaded CI.) */
static void test_worker_stop_and_kick_latency(void **state)
{
    (void)state;
    struct ts_worker w;
    struct probe p;
    probe_init(&p, TS_WORKER_KICKABLE);
    assert_int_equal(ts_worker_init(&w), TS_OK);
    assert_int_equal(ts_worker_start(&w, probe_loop, &p), TS_OK);
    assert_true(wait_rounds(&p, 1));
    int64_t t0 = ts_now_mono_ms();
    ts_worker_kick(&w);
    assert_true(wait_rounds(&p, 2));
    assert_true(ts_now_mono_ms() - t0 < 2000);
    /* a kick made while the loop is busy is not lost */
    ts_worker_kick(&w);
    assert_true(wait_rounds(&p, 3));
    t0 = ts_now_mono_ms();
    ts_worker_stop(&w);
    assert_true(ts_now_mono_ms() - t0 < 2000);
    assert_true(p.exited); /* joined: the loop has returned */
    assert_true(p.woke_after_ms < 2000);
    ts_worker_destroy(&w);
    ts_worker_destroy(&w); /* idempotent */
}

/* A back-off sleep is not cut short by a kick, only by stop; the kick is
 * kept for the next kickable sleep. */
static void test_worker_no_kick_sleep(void **state)
{
    (void)state;
    struct ts_worker w;
    assert_int_equal(ts_worker_init(&w), TS_OK);
    ts_worker_kick(&w);
    int64_t t0 = ts_now_mono_ms();
    assert_false(ts_worker_sleep(&w, 150, TS_WORKER_NO_KICK));
    assert_true(ts_now_mono_ms() - t0 >= 140); /* a timed wait never ends early */
    t0 = ts_now_mono_ms();
    assert_false(ts_worker_sleep(&w, 60000, TS_WORKER_KICKABLE)); /* the kept kick */
    assert_true(ts_now_mono_ms() - t0 < 1000);
    ts_worker_request_stop(&w);
    assert_true(ts_worker_stopping(&w));
    assert_true(ts_worker_sleep(&w, 60000, TS_WORKER_NO_KICK));
    ts_worker_stop(&w); /* never started: nothing to join */
    ts_worker_destroy(&w);

    /* a loop in a NO_KICK sleep ends at stop */
    struct probe p;
    probe_init(&p, TS_WORKER_NO_KICK);
    assert_int_equal(ts_worker_init(&w), TS_OK);
    assert_int_equal(ts_worker_start(&w, probe_loop, &p), TS_OK);
    assert_true(wait_rounds(&p, 1));
    ts_worker_kick(&w);
    t0 = ts_now_mono_ms();
    ts_worker_destroy(&w);
    assert_true(ts_now_mono_ms() - t0 < 2000);
    assert_int_equal(p.rounds, 1); /* the kick did not start a round */
    assert_true(p.exited);
}

/* ---- base64, sanitising, Basic auth ---- */

/* "Basic " + base64(raw) */
static const char *basic(const char *raw)
{
    static char h[128];
    memcpy(h, "Basic ", 6);
    ts_base64_encode(raw, strlen(raw), h + 6, sizeof h - 6);
    return h;
}

static void test_basic_auth(void **state)
{
    (void)state;
    /* A write key as the user, any password or none (Segment's form). */
    assert_true(ts_basic_auth_ok(basic("wk1:"), "wk1", NULL));
    assert_true(ts_basic_auth_ok(basic("wk1"), "wk1", NULL));
    assert_true(ts_basic_auth_ok(basic("wk1:whatever"), "wk1", NULL));
    assert_false(ts_basic_auth_ok(basic("wk2:"), "wk1", NULL));
    assert_false(ts_basic_auth_ok(basic("wk"), "wk1", NULL));
    assert_false(ts_basic_auth_ok(basic(":"), "", NULL)); /* never an empty secret */
    /* A user and a password: both must match; a colon is needed. */
    assert_true(ts_basic_auth_ok(basic("hq:s3cret"), "hq", "s3cret"));
    assert_false(ts_basic_auth_ok(basic("hq:s3cre"), "hq", "s3cret"));
    assert_false(ts_basic_auth_ok(basic("hq:"), "hq", "s3cret"));
    assert_false(ts_basic_auth_ok(basic("hq"), "hq", "s3cret"));
    assert_false(ts_basic_auth_ok(basic("hq:"), "hq", ""));
    assert_false(ts_basic_auth_ok(basic("h:qs3cret"), "hq", "s3cret"));
    /* The scheme in any case, spaces around the token; others refused. */
    char h[160]; /* room for basic()'s 128 and the spaces: -Wformat-truncation at -O2 */
    snprintf(h, sizeof h, "bAsIc   %s  ", basic("hq:s3cret") + 6);
    assert_true(ts_basic_auth_ok(h, "hq", "s3cret"));
    assert_false(ts_basic_auth_ok("Bearer aHE6czNjcmV0", "hq", "s3cret"));
    assert_false(ts_basic_auth_ok("Basic not*base64", "hq", "s3cret"));
    assert_false(ts_basic_auth_ok(NULL, "hq", "s3cret"));
}

static void test_base64_round_trips(void **state)
{
    (void)state;
    static const char *const rfc[][2] = {{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    char out[64];
    for (size_t i = 0; i < sizeof rfc / sizeof rfc[0]; i++) {
        assert_int_equal(ts_base64_encode(rfc[i][0], strlen(rfc[i][0]), out, sizeof out),
                         strlen(rfc[i][1]));
        assert_string_equal(out, rfc[i][1]);
    }
    uint8_t in[96], back[96];
    char enc[160];
    for (size_t n = 0; n <= sizeof in; n++) {
        assert_int_equal(ts_random(in, n), TS_OK);
        size_t len = ts_base64_encode(in, n, enc, sizeof enc);
        assert_int_equal(len, (n + 2) / 3 * 4);
        size_t got = 0;
        assert_int_equal(ts_base64_decode(enc, len, back, sizeof back, &got), TS_OK);
        assert_int_equal(got, n);
        assert_memory_equal(back, in, n);
    }
    /* all 256 byte values survive */
    for (int i = 0; i < 96; i++)
        in[i] = (uint8_t)(i * 255 / 95);
    size_t got = 0;
    size_t len = ts_base64_encode(in, 96, enc, sizeof enc);
    assert_int_equal(ts_base64_decode(enc, len, back, sizeof back, &got), TS_OK);
    assert_memory_equal(back, in, 96);
    /* too small an output buffer: nothing, not a truncated encoding */
    assert_int_equal(ts_base64_encode("foo", 3, out, 4), 0);
    assert_int_equal(ts_base64_encode("foo", 3, out, 5), 4);
}

static void test_sanitize(void **state)
{
    (void)state;
    char out[32];
    const char evil[] = "bad\r\nINFO forged\x1b[31m\xc3\xa9  ";
    assert_int_equal(ts_sanitize(evil, strlen(evil), out, sizeof out, ' '), 21);
    assert_string_equal(out, "bad  INFO forged [31m");
    assert_int_equal(ts_sanitize("a\tb", 3, out, sizeof out, '?'), 3);
    assert_string_equal(out, "a?b");
    assert_int_equal(ts_sanitize("abcdef", 6, out, 4, ' '), 3); /* cut, terminated */
    assert_string_equal(out, "abc");
    assert_int_equal(ts_sanitize(NULL, 5, out, sizeof out, ' '), 0);
    assert_string_equal(out, "");
}

/* ---- URLs and ports ---- */

static void test_url_parse(void **state)
{
    (void)state;
    struct ts_url u;
    char err[256];
    assert_int_equal(ts_url_parse("https://hub.example:8443/base/?x#y", &u, err, sizeof err),
                     TS_OK);
    assert_true(u.https);
    assert_string_equal(u.host, "hub.example");
    assert_int_equal(u.port, 8443);
    assert_true(u.port_given);
    assert_string_equal(u.path, "/base");
    assert_int_equal(ts_url_parse("HTTP://h", &u, err, sizeof err), TS_OK);
    assert_false(u.https);
    assert_int_equal(u.port, 80);
    assert_false(u.port_given);
    assert_string_equal(u.path, "");
    assert_int_equal(ts_url_parse("https://[::1]:9/", &u, err, sizeof err), TS_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9);
    assert_int_equal(ts_url_parse("https://[fe80::1]", &u, err, sizeof err), TS_OK);
    assert_int_equal(u.port, 443);
    assert_int_equal(ts_url_parse("https://h:65535", &u, err, sizeof err), TS_OK);
    assert_int_equal(u.port, 65535);

    static const char *const bad[] = {
        "https://h:8x",
        "https://h:70000",
        "https://h:-1",
        "https://h:",
        "https://h:0",
        "https://h:99999999999",
        "https://h: 80",
        "https://h:+80",
        "ftp://h",
        "hub:8443",
        "",
        "https://",
        "https://:443",
        "https://u:p@h",
        "https://[::1",
        "https://[::1]x",
        "https://[::1]:",
        "https://[]:80",
    };
    u.port = 7;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (ts_url_parse(bad[i], &u, err, sizeof err) != TS_ERR_CONFIG)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(u.port, 7); /* out-param untouched on failure */
    assert_int_equal(ts_url_parse(NULL, &u, NULL, 0), TS_ERR_CONFIG);
}

static void test_port_parse(void **state)
{
    (void)state;
    int p = -5;
    assert_int_equal(ts_port_parse("8x", 2, false, &p), TS_ERR_INVAL);
    assert_int_equal(ts_port_parse("70000", 5, false, &p), TS_ERR_INVAL);
    assert_int_equal(ts_port_parse("-1", 2, true, &p), TS_ERR_INVAL);
    assert_int_equal(ts_port_parse("4294975488", 10, true, &p), TS_ERR_INVAL); /* atoi: 8192 */
    assert_int_equal(ts_port_parse("", 0, true, &p), TS_ERR_INVAL);
    assert_int_equal(ts_port_parse("0", 1, false, &p), TS_ERR_INVAL);
    assert_int_equal(p, -5);
    assert_int_equal(ts_port_parse("0", 1, true, &p), TS_OK);
    assert_int_equal(p, 0);
    assert_int_equal(ts_port_parse("8443/x", 4, false, &p), TS_OK); /* only the n bytes */
    assert_int_equal(p, 8443);
}

/* ---- config errors, SQLite errors ---- */

static void test_conf_errf(void **state)
{
    (void)state;
    struct ts_conf *c = NULL;
    char err[256] = "";
    assert_int_equal(ts_conf_parse("t.conf", "[a]\nx = 1\n\n[b]\ny = 2\n", &c, err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_conf_errf(c, "b", "y", err, sizeof err, "expected %d to %d", 3, 4),
                     TS_ERR_CONFIG);
    assert_string_equal(err, "t.conf:5: [b] y: expected 3 to 4");
    assert_int_equal(ts_conf_errf(c, "b", "z", err, sizeof err, "missing"), TS_ERR_CONFIG);
    assert_string_equal(err, "t.conf: [b] z: missing"); /* no line for an absent key */
    assert_int_equal(ts_conf_errf(c, "b", "z", NULL, 0, "x"), TS_ERR_CONFIG);
    ts_conf_free(c);
}

static void test_sqlite_err(void **state)
{
    (void)state;
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_OK, NULL), TS_OK);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_DONE, NULL), TS_OK);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_ROW, NULL), TS_OK);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_FULL, NULL), TS_ERR_FULL);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_CORRUPT, NULL), TS_ERR_DB);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_CONSTRAINT_UNIQUE, NULL), TS_ERR_DB);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_IOERR_WRITE, "/tmp/x.db"), TS_ERR_DB);
    assert_int_equal(ts_sqlite_err(NULL, SQLITE_NOMEM, NULL), TS_ERR_NOMEM);
    /* a real database refusing a write for space: max_page_count as the disk */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA max_page_count = 3; CREATE TABLE t(x);"
                                  "INSERT INTO t VALUES (zeroblob(100000));",
                                  NULL, NULL, NULL),
                     SQLITE_FULL);
    assert_int_equal(ts_sqlite_err(db, sqlite3_errcode(db), NULL), TS_ERR_FULL);
    sqlite3_close(db);
}

/* A message with quotes, a newline and control bytes stays one valid JSON
 * string: a client's parser, and a log line, see the message and no more. */
static void test_json_error(void **state)
{
    (void)state;
    ts_buf b = {0};
    assert_int_equal(ts_buf_puts(&b, "left over"), TS_OK);
    assert_int_equal(ts_json_error(&b, "bad \"x\"\\\n\x01\t\x7f"), TS_OK);
    assert_string_equal(b.data, "{\"error\":\"bad \\\"x\\\"\\\\\\n\\u0001\\t\\u007f\"}");
    assert_int_equal(ts_json_error(&b, NULL), TS_OK);
    assert_string_equal(b.data, "{\"error\":\"\"}");
    ts_buf_free(&b);
}

/* A query parameter of a customer's QR URL: decoded, bounded, out set on
 * success only. */
static void test_url_query_param(void **state)
{
    (void)state;
    char v[8];
    assert_int_equal(
        ts_url_query_param("https://a.example/l?x=1&card=12%2B3+4#f", "card", v, sizeof v), TS_OK);
    assert_string_equal(v, "12+3 4");
    assert_int_equal(ts_url_query_param("https://a.example/l?card=&card=9", "card", v, sizeof v),
                     TS_OK);
    assert_string_equal(v, ""); /* the first of that name */
    strcpy(v, "keep");
    assert_int_equal(ts_url_query_param("https://a.example/l?card=12345678", "card", v, sizeof v),
                     TS_ERR_INVAL); /* 8 bytes do not fit with the NUL */
    assert_string_equal(v, "keep");
    assert_int_equal(ts_url_query_param("https://a.example/l?card=1%0", "card", v, sizeof v),
                     TS_ERR_INVAL);
    assert_int_equal(ts_url_query_param("https://a.example/l?card=%00", "card", v, sizeof v),
                     TS_ERR_INVAL);
    assert_string_equal(v, "keep");
    assert_int_equal(ts_url_query_param("https://a.example/l#card=1", "card", v, sizeof v),
                     TS_ERR_NOTFOUND);
    assert_int_equal(ts_url_query_param("https://a.example/l?xcard=1", "card", v, sizeof v),
                     TS_ERR_NOTFOUND);
    assert_int_equal(ts_url_query_param("ftp://a.example/?card=1", "card", v, sizeof v),
                     TS_ERR_INVAL);
    assert_int_equal(ts_url_query_param("card=1", "card", v, sizeof v), TS_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_and_terminates),
        cmocka_unit_test(test_iso8601_roundtrip),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_url_query_param),
        cmocka_unit_test(test_conf_values_and_errors),
        cmocka_unit_test(test_buf_reserve_refuses_overflow),
        cmocka_unit_test(test_backoff_bounds_cap_floor),
        cmocka_unit_test(test_backoff_distribution),
        cmocka_unit_test(test_worker_stop_and_kick_latency),
        cmocka_unit_test(test_worker_no_kick_sleep),
        cmocka_unit_test(test_base64_round_trips),
        cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_port_parse),
        cmocka_unit_test(test_conf_errf),
        cmocka_unit_test(test_sqlite_err),
        cmocka_unit_test(test_json_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
