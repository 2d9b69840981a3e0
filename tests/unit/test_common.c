/* Unit tests for common/: buffers, time, hex, config parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "conf.h"
#include "ts.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_and_terminates),
        cmocka_unit_test(test_iso8601_roundtrip),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_conf_values_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
