/* Agent configuration: defaults, and errors that name file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "agent.h"

#define KEY "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"

static void test_defaults(void **state)
{
    (void)state;
    struct ts_agent_config c;
    char err[512] = "";
    assert_int_equal(ts_agent_config_parse("a.conf",
                                           "[hub]\nurl = https://hub:8443\n"
                                           "[identity]\ntenant_key = " KEY "\n",
                                           &c, err, sizeof err),
                     TS_OK);
    assert_string_equal(c.state_dir, "/var/lib/tillside");
    assert_string_equal(c.api_host, "127.0.0.1");
    assert_int_equal(c.api_port, 8765);
    assert_int_equal(c.lookup_timeout_ms, 300);
    assert_string_equal(c.token_file, "/var/lib/tillside/api.token");
    assert_int_equal(c.tenant.len, 32);
}

static void expect_error(const char *text, const char *where, const char *what)
{
    struct ts_agent_config c;
    char err[512] = "";
    assert_int_equal(ts_agent_config_parse("t.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    if (!strstr(err, where) || !strstr(err, what))
        fail_msg("error '%s' lacks '%s' / '%s'", err, where, what);
}

static void test_errors_name_file_line_key(void **state)
{
    (void)state;
    expect_error("[hub]\nurl = ftp://x\n[identity]\ntenant_key = " KEY "\n", "t.conf:2", "url");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = nothex\n", "t.conf:4",
                 "tenant_key");
    expect_error("[hub]\nurl = https://x\n", "t.conf", "tenant_key");
    expect_error("[hub]\nurl = https://x\ntimeout_ms = soon\n[identity]\ntenant_key = " KEY "\n",
                 "t.conf:3", "timeout_ms");
    /* The API must never listen beyond loopback by accident. */
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY
                 "\n[api]\nlisten = 0.0.0.0:8765\n",
                 "t.conf:6", "loopback");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_file_line_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
