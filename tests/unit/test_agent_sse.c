/*
 * The agent API's Server-Sent Events stream (agent/api_events.c): live
 * events, the start position with and without Last-Event-ID, events larger
 * than one read, and streams ending at shutdown. Fixture: agent_api_fx.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent_api_fx.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sse_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_start_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_large_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_without_bus_close, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
