/* Unit tests for the fleet (hub/fleet.c, hub/fleet_db.c): the health report
 * parser's checks, what counts as a problem at each threshold, the write
 * interval of polls without a report, and the [fleet] configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "fleet.h"

#define T0 1780000000000LL

static const char GOOD[] =
    "{\"v\":1,\"version\":\"0.1.0\",\"os\":\"Debian GNU/Linux 13 (trixie)\",\"link\":\"up\","
    "\"lag_s\":3,\"cards\":12,\"outbox\":{\"depth\":2,\"oldest_s\":40,\"dead\":0},"
    "\"inputs\":[{\"name\":\"front\",\"state\":\"open\"}],\"cert_days\":80,\"skew_s\":-1}";

static void test_parse_good_and_round_trip(void **state)
{
    (void)state;
    struct ts_fleet_report r, again;
    char err[160] = "";
    assert_int_equal(ts_fleet_report_parse(GOOD, strlen(GOOD), &r, err, sizeof err), TS_OK);
    assert_string_equal(r.os, "Debian GNU/Linux 13 (trixie)");
    assert_true(r.link_up);
    assert_int_equal(r.cards, 12);
    assert_int_equal(r.outbox_depth, 2);
    assert_int_equal(r.ninputs, 1);
    assert_string_equal(r.inputs[0].state, "open");
    assert_true(r.has_cert && r.has_skew);
    assert_int_equal(r.skew_s, -1);
    ts_buf b = {0};
    assert_int_equal(ts_fleet_report_json(&r, &b), TS_OK);
    assert_string_equal(b.data, GOOD); /* the agent writes the hub's own form */
    assert_int_equal(ts_fleet_report_parse(b.data, b.len, &again, err, sizeof err), TS_OK);
    ts_buf_free(&b);
    /* base64url without padding, as the header carries it */
    char enc[2048];
    size_t n = ts_base64_encode(GOOD, strlen(GOOD), enc, sizeof enc);
    for (size_t i = 0; i < n; i++)
        enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
    while (n && enc[n - 1] == '=')
        enc[--n] = '\0';
    assert_int_equal(ts_fleet_report_decode(enc, n, &r, err, sizeof err), TS_OK);
    /* a minimal report: the optional fields absent */
    const char *min = "{\"v\":1,\"version\":\"x\",\"link\":\"down\",\"cards\":0,"
                      "\"outbox\":{\"depth\":0,\"oldest_s\":0,\"dead\":0},\"inputs\":[]}";
    assert_int_equal(ts_fleet_report_parse(min, strlen(min), &r, err, sizeof err), TS_OK);
    assert_false(r.has_cert || r.has_skew || r.link_up);
    assert_int_equal(r.lag_s, -1);
}

/* Each report differs from GOOD in one way and is refused whole, the error
 * naming the field. */
static void test_parse_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to, *err;
    } cases[] = {
        {"\"v\":1", "\"v\":2", "v: out of range"},
        {"\"v\":1,", "", "v: missing"},
        {"\"cards\":12", "\"cards\":-1", "cards: out of range"},
        {"\"cards\":12", "\"cards\":1.5", "cards: expected an integer"},
        {"\"cards\":12", "\"cards\":\"12\"", "cards: expected an integer"},
        {"\"link\":\"up\"", "\"link\":\"left\"", "link: expected up or down"},
        {"\"os\":\"Debian GNU/Linux 13 (trixie)\"", "\"os\":\"a\\nb\"", "os: not printable"},
        {"\"os\":\"Debian GNU/Linux 13 (trixie)\"", "\"os\":\"\\u00e9\"", "os: not printable"},
        {"\"state\":\"open\"", "\"state\":\"on\"", "inputs[0].state: expected"},
        {"\"state\":\"open\"", "\"state\":\"open\",\"x\":1", "inputs[0]: expected"},
        {"\"dead\":0", "\"dead\":0,\"more\":1", "outbox: expected"},
        {"\"skew_s\":-1", "\"skew_s\":-1,\"terminal\":\"T99\"", "terminal: unknown field"},
        {"\"skew_s\":-1", "\"skew_s\":-1,\"skew_s\":2", "report: not JSON"},
        {"\"lag_s\":3", "\"lag_s\":-2", "lag_s: out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[2048], err[160] = "";
        const char *at = strstr(GOOD, cases[i].from);
        assert_non_null(at);
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at - GOOD), GOOD, cases[i].to,
                 at + strlen(cases[i].from));
        struct ts_fleet_report r;
        assert_int_equal(ts_fleet_report_parse(text, strlen(text), &r, err, sizeof err),
                         TS_ERR_INVAL);
        if (strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: err '%s', wanted '%s'", i, err, cases[i].err);
    }
    char big[TS_FLEET_MAX_JSON + 2], err[160];
    memset(big, ' ', sizeof big);
    struct ts_fleet_report r;
    assert_int_equal(ts_fleet_report_parse(big, sizeof big, &r, err, sizeof err), TS_ERR_INVAL);
    assert_int_equal(ts_fleet_report_parse("[]", 2, &r, err, sizeof err), TS_ERR_INVAL);
    assert_int_equal(ts_fleet_report_decode("e30+", 4, &r, err, sizeof err), TS_ERR_INVAL);
    /* 17 inputs */
    char many[TS_FLEET_MAX_JSON + 1] = "{\"v\":1,\"version\":\"x\",\"link\":\"up\",\"cards\":0,"
                                       "\"outbox\":{\"depth\":0,\"oldest_s\":0,\"dead\":0},"
                                       "\"inputs\":[";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 "%s{\"name\":\"i%d\",\"state\":\"open\"}", i ? "," : "", i);
    strcat(many, "]}");
    assert_int_equal(ts_fleet_report_parse(many, strlen(many), &r, err, sizeof err), TS_ERR_INVAL);
    assert_string_equal(err, "inputs: too many inputs");
}

static void test_problems_thresholds(void **state)
{
    (void)state;
    struct ts_fleet_row row;
    char err[160];
    memset(&row, 0, sizeof row);
    row.seen_ms = T0;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), TS_FLEET_NO_REPORT);
    row.has_report = true;
    assert_int_equal(ts_fleet_report_parse(GOOD, strlen(GOOD), &row.r, err, sizeof err), TS_OK);
    assert_int_equal(ts_fleet_problems(&row, T0 + 300000, 300), 0);
    assert_int_equal(ts_fleet_problems(&row, T0 + 300001, 300), TS_FLEET_STALE);
    row.r.outbox_oldest_s = TS_FLEET_OUTBOX_OLD_S;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), 0);
    row.r.outbox_oldest_s++;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), TS_FLEET_OUTBOX_OLD);
    row.r.outbox_depth = 0; /* an empty outbox has no age */
    assert_int_equal(ts_fleet_problems(&row, T0, 300), 0);
    row.r.cert_days = TS_FLEET_CERT_DAYS;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), 0);
    row.r.cert_days--;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), TS_FLEET_CERT_EXPIRING);
    row.r.has_cert = false; /* unknown is not expiring */
    row.r.skew_s = -TS_FLEET_SKEW_S;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), 0);
    row.r.skew_s = TS_FLEET_SKEW_S + 1;
    assert_int_equal(ts_fleet_problems(&row, T0, 300), TS_FLEET_CLOCK_SKEW);
    row.r.skew_s = 0;
    row.r.dead_letters = 1;
    row.r.link_up = false;
    ts_strlcpy(row.r.inputs[0].state, "waiting", sizeof row.r.inputs[0].state);
    assert_int_equal(ts_fleet_problems(&row, T0, 300),
                     TS_FLEET_DEAD_LETTERS | TS_FLEET_LINK_DOWN | TS_FLEET_INPUT_NOT_OPEN);
    assert_string_equal(ts_fleet_problem_name(TS_FLEET_INPUT_NOT_OPEN), "input_not_open");
}

struct seen {
    int n;
    int64_t seen_ms, reported_ms;
    char who[200];
};

static void collect(void *ud, const struct ts_fleet_row *row)
{
    struct seen *s = ud;
    s->n++;
    s->seen_ms = row->seen_ms;
    s->reported_ms = row->reported_ms;
    snprintf(s->who, sizeof s->who, "%s/%s/%s%s", row->tenant, row->store, row->terminal,
             row->has_report ? " report" : "");
}

static void note(struct ts_hub_fleet *f, struct ts_hub_store *s, const char *header, int64_t now)
{
    struct ts_peer_id peer = {.verified = true, .cn = "T01", .ou = "S001", .o = "acme"};
    char req[4096];
    snprintf(req, sizeof req, "GET /v1/feed HTTP/1.1\r\nHost: h\r\n%s%s%s\r\n",
             header ? TS_FLEET_HEADER ": " : "", header ? header : "", header ? "\r\n" : "");
    struct ts_http_msg m = {0};
    size_t used;
    assert_int_equal(ts_http_parse(&m, true, req, strlen(req), 0, &used), TS_OK);
    ts_hub_fleet_note(f, s, &peer, &m, now);
    ts_http_msg_clear(&m);
}

/* Polls without a report are written once per touch interval (a third of
 * stale_after_s), reports always; the row is named by the certificate. */
static void test_note_writes(void **state)
{
    (void)state;
    struct ts_tenant_key k = {.version = 1, .len = 32};
    memset(k.key, 0x6b, 32);
    struct ts_hub_store *s = NULL;
    struct ts_hub_fleet *f = NULL;
    char err[256];
    assert_int_equal(ts_hub_store_open(":memory:", &k, 0, &s, err, sizeof err), TS_OK);
    assert_int_equal(ts_hub_fleet_new(30, &f), TS_OK); /* touch every 10 s */
    struct seen got = {0};
    note(f, s, NULL, T0);
    assert_int_equal(ts_hub_fleet_list(s, NULL, collect, &got), TS_OK);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.who, "acme/S001/T01");
    assert_true(got.seen_ms == T0 && got.reported_ms == 0);
    note(f, s, NULL, T0 + 9999);
    memset(&got, 0, sizeof got);
    ts_hub_fleet_list(s, NULL, collect, &got);
    assert_true(got.seen_ms == T0);
    note(f, s, NULL, T0 + 10000);
    ts_hub_fleet_list(s, NULL, collect, &got);
    assert_true(got.seen_ms == T0 + 10000);
    /* a report is written at once; a bad one is dropped (the poll still seen later) */
    note(f, s, "not*base64", T0 + 10001);
    memset(&got, 0, sizeof got);
    ts_hub_fleet_list(s, NULL, collect, &got);
    assert_string_equal(got.who, "acme/S001/T01");
    char enc[2048];
    size_t n = ts_base64_encode(GOOD, strlen(GOOD), enc, sizeof enc);
    for (size_t i = 0; i < n; i++)
        enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
    note(f, s, enc, T0 + 10002);
    memset(&got, 0, sizeof got);
    ts_hub_fleet_list(s, NULL, collect, &got);
    assert_string_equal(got.who, "acme/S001/T01 report");
    assert_true(got.seen_ms == T0 + 10002 && got.reported_ms == T0 + 10002);
    memset(&got, 0, sizeof got);
    assert_int_equal(ts_hub_fleet_list(s, "S002", collect, &got), TS_OK);
    assert_int_equal(got.n, 0);
    /* store aggregates */
    ts_buf b = {0};
    ts_hub_fleet_metrics(s, T0 + 10002, 30, &b);
    assert_non_null(strstr(b.data, "tillside_hub_fleet_terminals{store=\"S001\"} 1\n"));
    assert_non_null(strstr(b.data, "tillside_hub_fleet_outbox_depth{store=\"S001\"} 2\n"));
    assert_non_null(strstr(b.data, "tillside_hub_fleet_stale_terminals{store=\"S001\"} 0\n"));
    ts_buf_reset(&b);
    ts_hub_fleet_metrics(s, T0 + 10002 + 30001, 30, &b);
    assert_non_null(strstr(b.data, "tillside_hub_fleet_stale_terminals{store=\"S001\"} 1\n"));
    ts_buf_free(&b);
    ts_hub_fleet_free(f);
    ts_hub_fleet_free(NULL);
    ts_hub_store_close(s);
}

static void test_config(void **state)
{
    (void)state;
    static const char base[] = "[cdp]\nwrite_key = k\n[tenant]\nname = acme\nkey = "
                               "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n";
    struct ts_hub_config c;
    char text[1024], err[512];
    assert_int_equal(ts_hub_config_parse("hub.conf", base, &c, err, sizeof err), TS_OK);
    assert_int_equal(c.fleet_stale_after_s, 300);
    assert_string_equal(c.fleet_admin_user, "");
    snprintf(text, sizeof text, "%s[fleet]\nstale_after_s = 1\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "stale_after_s"));
    snprintf(text, sizeof text, "%s[fleet]\nadmin_user = hq\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "go together"));
    snprintf(text, sizeof text, "%s[fleet]\nadmin_user = h:q\nadmin_password_file = /x\n", base);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    snprintf(text, sizeof text, "%s[fleet]\nadmin_user = hq\nadmin_password_file = /nonexistent\n",
             base);
    assert_int_equal(ts_hub_config_parse("hub.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "admin_password_file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good_and_round_trip),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_problems_thresholds),
        cmocka_unit_test(test_note_writes),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
