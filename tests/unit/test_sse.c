/* The SSE parser behind `tillside watch`: framing, split reads, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sse.h"

struct seen {
    int n;
    char type[8][64];
    char data[8][256];
    char id[8][64];
};

static void collect(void *ud, const struct ts_sse_event *ev)
{
    struct seen *s = ud;
    if (s->n >= 8)
        return;
    snprintf(s->type[s->n], 64, "%s", ev->type);
    snprintf(s->data[s->n], 256, "%.*s", (int)ev->data_len, ev->data);
    snprintf(s->id[s->n], 64, "%s", ev->id);
    s->n++;
}

static const char stream[] = ": tillside\nretry: 2000\n\n"
                             "id: 7\r\nevent: customer\r\ndata: {\"a\":1}\r\n\r\n"
                             ": keepalive\n\n"
                             "event: link\ndata: line1\ndata:line2\n\n"
                             "data: plain\n\n"
                             "event: orphan\n\n";

static void test_whole_stream(void **state)
{
    (void)state;
    struct ts_sse p;
    struct seen s = {0};
    ts_sse_init(&p);
    assert_int_equal(ts_sse_feed(&p, stream, strlen(stream), collect, &s), TS_OK);
    ts_sse_free(&p);
    assert_int_equal(s.n, 3); /* comments and an event without data dispatch nothing */
    assert_string_equal(s.type[0], "customer");
    assert_string_equal(s.data[0], "{\"a\":1}");
    assert_string_equal(s.id[0], "7");
    assert_string_equal(s.type[1], "link");
    assert_string_equal(s.data[1], "line1\nline2");
    assert_string_equal(s.type[2], "message");
}

static void test_byte_by_byte_equals_whole(void **state)
{
    (void)state;
    struct ts_sse p;
    struct seen s = {0};
    ts_sse_init(&p);
    for (size_t i = 0; i < strlen(stream); i++)
        ts_sse_feed(&p, stream + i, 1, collect, &s);
    ts_sse_free(&p);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.data[1], "line1\nline2");
    assert_string_equal(s.id[2], "7"); /* the last id carries over */
}

static void test_overlong_line_is_dropped(void **state)
{
    (void)state;
    static char big[TS_SSE_MAX_LINE + 100];
    memset(big, 'x', sizeof big);
    memcpy(big, "data: ", 6);
    struct ts_sse p;
    struct seen s = {0};
    ts_sse_init(&p);
    assert_int_equal(ts_sse_feed(&p, big, sizeof big, collect, &s), TS_ERR_FULL);
    const char tail[] = "\n\ndata: ok\n\n";
    assert_int_equal(ts_sse_feed(&p, tail, strlen(tail), collect, &s), TS_OK);
    ts_sse_free(&p);
    assert_int_equal(s.n, 1); /* the stream recovers with the next event */
    assert_string_equal(s.data[0], "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_byte_by_byte_equals_whole),
        cmocka_unit_test(test_overlong_line_is_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
