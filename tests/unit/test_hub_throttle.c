/* Unit tests for the hub's lookup limits and failed-secret throttling
 * (hub/throttle.c), with the clock passed in, and their configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"
#include "throttle.h"

#define T0 1780000000000LL

static const char BASE[] = "[cdp]\nwrite_key = k\n[tenant]\nname = acme\nkey = " /* 32 bytes */
                           "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n";

static void conf(struct ts_hub_config *c, const char *extra)
{
    char text[2048], err[256] = "";
    snprintf(text, sizeof text, "%s%s", BASE, extra);
    if (ts_hub_config_parse("hub.conf", text, c, err, sizeof err) != TS_OK)
        fail_msg("config: %s", err);
}

static int flags_seen;
static char flagged_term[64];
static void on_flag(void *ud, const struct ts_hub_flag *f)
{
    (void)ud;
    flags_seen++;
    snprintf(flagged_term, sizeof flagged_term, "%s/%s %lu/%lu", f->store, f->terminal, f->misses,
             f->lookups);
}

/* The burst goes at once, then one lookup per 60/rate seconds; other
 * terminals have their own bucket. */
static void test_lookup_bucket(void **state)
{
    (void)state;
    struct ts_hub_config c;
    conf(&c, "[lookup]\nrate_per_min = 60\nburst = 5\n");
    struct ts_hub_throttle *l = NULL;
    assert_int_equal(ts_hub_throttle_new(&c, &l), TS_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0), 0);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0), 1);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T02", T0), 0);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 999), 1);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 1000), 0);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 1000), 1);
    /* refills to the burst, not beyond */
    for (int i = 0; i < 5; i++)
        assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 60000), 0);
    assert_int_not_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 60000), 0);
    ts_hub_throttle_free(l);
    ts_hub_throttle_free(NULL);
    assert_int_equal(ts_hub_throttle_lookup_take(NULL, "S001", "T01", T0), 0);
}

/* Mostly misses over the window: flagged once, slowed, let go after a
 * window without it. Hits keep a terminal unflagged. */
static void test_lookup_flagging(void **state)
{
    (void)state;
    struct ts_hub_config c;
    conf(&c, "[lookup]\nrate_per_min = 600\nburst = 100\nflagged_rate_per_min = 6\n"
             "miss_min = 10\nmiss_percent = 80\nmiss_window_s = 60\n");
    struct ts_hub_throttle *l = NULL;
    assert_int_equal(ts_hub_throttle_new(&c, &l), TS_OK);
    ts_hub_throttle_on_flag(l, on_flag, NULL);
    flags_seen = 0;
    /* T02: half its lookups find something: never flagged */
    for (int i = 0; i < 40; i++)
        ts_hub_throttle_lookup_done(l, "S001", "T02", i % 2 == 0, T0);
    assert_int_equal(flags_seen, 0);
    /* T01: 9 misses are not enough, the 10th is */
    for (int i = 0; i < 9; i++)
        ts_hub_throttle_lookup_done(l, "S001", "T01", false, T0);
    assert_int_equal(flags_seen, 0);
    ts_hub_throttle_lookup_done(l, "S001", "T01", false, T0);
    assert_int_equal(flags_seen, 1);
    assert_string_equal(flagged_term, "S001/T01 10/10");
    for (int i = 0; i < 20; i++)
        ts_hub_throttle_lookup_done(l, "S001", "T01", false, T0 + 1);
    assert_int_equal(flags_seen, 1); /* once */
    ts_buf m = {0};
    ts_hub_throttle_metrics(l, &m);
    assert_non_null(
        strstr(m.data, "tillside_hub_lookup_flagged{store=\"S001\",terminal=\"T01\"} 1"));
    assert_non_null(strstr(m.data, "tillside_hub_lookup_flagged_terminals 1\n"));
    assert_null(strstr(m.data, "terminal=\"T02\""));
    ts_buf_free(&m);
    /* slowed: one lookup, then 10 s (6/min) to the next; T02 keeps its burst */
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 2), 0);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 2), 10);
    for (int i = 0; i < 50; i++)
        assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T02", T0 + 2), 0);
    /* the next window (still flagged) passes quietly, the one after lets go */
    ts_hub_throttle_lookup_done(l, "S001", "T01", true, T0 + 61000);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 122000), 0);
    assert_int_equal(ts_hub_throttle_lookup_take(l, "S001", "T01", T0 + 122000), 0);
    m = (ts_buf){0};
    ts_hub_throttle_metrics(l, &m);
    assert_non_null(strstr(m.data, "tillside_hub_lookup_flagged_terminals 0\n"));
    ts_buf_free(&m);
    ts_hub_throttle_free(l);
}

/* free_failures free tries, then 1, 2, 4 ... s up to the cap; another
 * address and another kind of secret are not affected; a success resets. */
static void test_auth_backoff(void **state)
{
    (void)state;
    struct ts_hub_config c;
    conf(&c, "[throttle]\nfree_failures = 3\nmax_delay_s = 5\n");
    struct ts_hub_throttle *l = NULL;
    assert_int_equal(ts_hub_throttle_new(&c, &l), TS_OK);
    const enum ts_hub_secret K = TS_HUB_SECRET_WRITE_KEY;
    int64_t now = T0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ts_hub_throttle_auth_wait(l, K, "10.0.0.1", now), 0);
        ts_hub_throttle_auth_failed(l, K, "10.0.0.1", now);
    }
    assert_int_equal(ts_hub_throttle_auth_wait(l, K, "10.0.0.1", now), 0);
    ts_hub_throttle_auth_failed(l, K, "10.0.0.1", now); /* the third */
    static const int want[] = {1, 2, 4, 5, 5};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        assert_int_equal(ts_hub_throttle_auth_wait(l, K, "10.0.0.1", now), want[i]);
        assert_int_equal(ts_hub_throttle_auth_wait(l, K, "10.0.0.2", now), 0);
        assert_int_equal(ts_hub_throttle_auth_wait(l, TS_HUB_SECRET_ENROLL_TOKEN, "10.0.0.1", now),
                         0);
        now += want[i] * 1000;
        assert_int_equal(ts_hub_throttle_auth_wait(l, K, "10.0.0.1", now), 0);
        ts_hub_throttle_auth_failed(l, K, "10.0.0.1", now);
    }
    ts_hub_throttle_auth_ok(l, K, "10.0.0.1");
    for (int i = 0; i < 2; i++) {
        ts_hub_throttle_auth_failed(l, K, "10.0.0.1", now);
        assert_int_equal(ts_hub_throttle_auth_wait(l, K, "10.0.0.1", now), 0);
    }
    ts_hub_throttle_free(l);
}

/* The address behind the plain listener's " via PROXY". */
static void test_client_addr(void **state)
{
    (void)state;
    struct ts_httpd_req r = {0};
    char a[64];
    ts_strlcpy(r.remote_addr, "203.0.113.7 via 127.0.0.1", sizeof r.remote_addr);
    ts_hub_throttle_client_addr(&r, a, sizeof a);
    assert_string_equal(a, "203.0.113.7");
    ts_strlcpy(r.remote_addr, "2001:db8::1", sizeof r.remote_addr);
    ts_hub_throttle_client_addr(&r, a, sizeof a);
    assert_string_equal(a, "2001:db8::1");
}

/* check-config (and run) refuse bad values with file:line. */
static void test_config(void **state)
{
    (void)state;
    struct ts_hub_config c;
    conf(&c, "");
    assert_int_equal(c.lookup_rate_per_min, 60);
    assert_int_equal(c.lookup_burst, 20);
    assert_false(c.lookup_orders_own_store);
    assert_int_equal(c.order_secret_len, 0);
    assert_int_equal(c.throttle_free_failures, 5);
    assert_int_equal(c.throttle_max_delay_s, 300);
    conf(&c, "[lookup]\norders_own_store = true\norder_secret = " /* 16 bytes */
             "00112233445566778899aabbccddeeff\n");
    assert_true(c.lookup_orders_own_store);
    assert_int_equal(c.order_secret_len, 16);
    static const struct {
        const char *text, *words;
    } bad[] = {
        {"[lookup]\nrate_per_min = 0\n", "rate_per_min"},
        {"[lookup]\nburst = lots\n", "burst"},
        {"[lookup]\nrate_per_min = 10\nflagged_rate_per_min = 20\n", "flagged_rate_per_min"},
        {"[lookup]\nmiss_percent = 101\n", "miss_percent"},
        {"[lookup]\norders_own_store = maybe\n", "orders_own_store"},
        {"[lookup]\norder_secret = 0011\n", "order_secret"},
        {"[lookup]\norder_secret = zz112233445566778899aabbccddeeff\n", "order_secret"},
        {"[throttle]\nfree_failures = 0\n", "free_failures"},
        {"[throttle]\nmax_delay_s = -1\n", "max_delay_s"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[2048], err[256] = "";
        snprintf(text, sizeof text, "%s%s", BASE, bad[i].text);
        assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
        if (!strstr(err, bad[i].words) || !strstr(err, "hub.conf:"))
            fail_msg("%s: error '%s' lacks '%s' or the line", bad[i].text, err, bad[i].words);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_bucket), cmocka_unit_test(test_lookup_flagging),
        cmocka_unit_test(test_auth_backoff),  cmocka_unit_test(test_client_addr),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
