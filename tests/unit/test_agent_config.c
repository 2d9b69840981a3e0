/* Agent configuration: defaults, and errors that name file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    /* A port that is not 1..65535 in plain digits is a configuration error
     * at load (it used to pass here and fail, or worse, later). */
    expect_error("[hub]\nurl = https://x:8x\n[identity]\ntenant_key = " KEY "\n", "t.conf:2",
                 "url");
    expect_error("[hub]\nurl = https://x:70000\n[identity]\ntenant_key = " KEY "\n", "t.conf:2",
                 "url");
    expect_error("[hub]\nurl = https://x:-1/\n[identity]\ntenant_key = " KEY "\n", "t.conf:2",
                 "url");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY
                 "\n[api]\nlisten = 127.0.0.1:+8765\n",
                 "t.conf:6", "listen");
    /* The API must never listen beyond loopback by accident. */
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY
                 "\n[api]\nlisten = 0.0.0.0:8765\n",
                 "t.conf:6", "loopback");
}

/* The documented example leaves token_file empty: that means the default,
 * as does any key written with nothing after '='. */
static void test_empty_values_mean_default(void **state)
{
    (void)state;
    struct ts_agent_config c;
    char err[512] = "";
    assert_int_equal(ts_agent_config_parse("a.conf",
                                           "[agent]\nstate_dir = /srv/ts\nlog_level =\n"
                                           "[hub]\nurl = https://hub:8443\npoll_interval_ms =\n"
                                           "[identity]\ntenant_key = " KEY "\nkey_version = \n"
                                           "[api]\nlisten =\ntoken_file =           ; default\n",
                                           &c, err, sizeof err),
                     TS_OK);
    assert_string_equal(c.token_file, "/srv/ts/api.token");
    assert_int_equal(c.poll_interval_ms, 5000);
    assert_int_equal(c.tenant.version, 1);
    assert_int_equal(c.api_port, 8765);
    assert_int_equal(c.log_level, TS_LOG_INFO);
}

static void test_full_example(void **state)
{
    (void)state;
    struct ts_agent_config c;
    char err[512] = "";
    assert_int_equal(ts_agent_config_parse("a.conf",
                                           "[agent]\nstore = S001 ; informational\n"
                                           "terminal = T01\nstate_dir = /var/lib/tillside\n"
                                           "log_level = debug\n"
                                           "[hub]\nurl = https://localhost:8443\n"
                                           "ca = /etc/tillside/ca.pem\n"
                                           "cert = /etc/tillside/terminal.pem\n"
                                           "key = /etc/tillside/terminal.key\n"
                                           "poll_interval_ms = 1000\ntimeout_ms = 2000\n"
                                           "lookup_timeout_ms = 250\npage_limit = 1000\n"
                                           "[identity]\ntenant_key = " KEY "\nkey_version = 7\n"
                                           "[api]\nlisten = [::1]:9000\n"
                                           "token_file = /run/ts/token\n",
                                           &c, err, sizeof err),
                     TS_OK);
    assert_string_equal(c.store, "S001");
    assert_string_equal(c.terminal, "T01");
    assert_int_equal(c.log_level, TS_LOG_DEBUG);
    assert_string_equal(c.hub_url, "https://localhost:8443");
    assert_string_equal(c.hub_key, "/etc/tillside/terminal.key");
    assert_int_equal(c.poll_interval_ms, 1000);
    assert_int_equal(c.timeout_ms, 2000);
    assert_int_equal(c.lookup_timeout_ms, 250);
    assert_int_equal(c.page_limit, 1000);
    assert_int_equal(c.tenant.version, 7);
    assert_string_equal(c.api_host, "::1");
    assert_int_equal(c.api_port, 9000);
    assert_string_equal(c.token_file, "/run/ts/token");
}

static void test_more_errors(void **state)
{
    (void)state;
    const char *base = "[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n";
    char text[512];
    snprintf(text, sizeof text, "%s[hub]\npage_limit = 1001\n", base);
    expect_error(text, "t.conf:6", "page_limit");
    snprintf(text, sizeof text, "%s[hub]\npoll_interval_ms = -5\n", base);
    expect_error(text, "t.conf:6", "poll_interval_ms");
    snprintf(text, sizeof text, "%s[agent]\nlog_level = loud\n", base);
    expect_error(text, "t.conf:6", "log_level");
    snprintf(text, sizeof text, "%s[api]\nlisten = 127.0.0.1\n", base);
    expect_error(text, "t.conf:6", "listen");
    snprintf(text, sizeof text, "%s[api]\nlisten = 10.1.2.3:8765\n", base);
    expect_error(text, "t.conf:6", "loopback");
    snprintf(text, sizeof text, "%s[identity]\nkey_version = 0\n", base);
    expect_error(text, "t.conf:6", "key_version");
    /* A short key is not a tenant key. */
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = 6b6b\n", "t.conf:4",
                 "tenant_key");
    /* Syntax errors come from the INI reader, also with the line. */
    expect_error("[hub\nurl = https://x\n", "t.conf:1", "");
}

/* From a file: the path is in every message. */
static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/ts-conf-XXXXXX", path[64], err[512] = "";
    struct ts_agent_config c;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tillside.conf", dir);
    assert_int_equal(ts_agent_config_load(path, &c, err, sizeof err), TS_ERR_NOTFOUND);
    assert_non_null(strstr(err, path));

    static const char text[] = "[agent]\nstore = S001\n\n[hub]\nurl = https://x\n"
                               "timeout_ms = 5s\n[identity]\ntenant_key = " KEY "\n";
    assert_int_equal(ts_write_file_atomic(path, text, sizeof text - 1, 0600), TS_OK);
    assert_int_equal(ts_agent_config_load(path, &c, err, sizeof err), TS_ERR_CONFIG);
    char want[96];
    snprintf(want, sizeof want, "%s:6: [hub] timeout_ms", path);
    if (!strstr(err, want))
        fail_msg("'%s' lacks '%s'", err, want);
    unlink(path);
    rmdir(dir);
}

#define KEY2 "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b"

/* Sync, retention and key rotation settings: defaults, values, and what a
 * lookup does with a previous key. */
static void test_sync_cache_and_rotation(void **state)
{
    (void)state;
    struct ts_agent_config c;
    char err[512] = "";
    assert_int_equal(ts_agent_config_parse("a.conf",
                                           "[hub]\nurl = https://hub:8443\n"
                                           "[identity]\ntenant_key = " KEY "\n",
                                           &c, err, sizeof err),
                     TS_OK);
    assert_int_equal(c.long_poll_s, 20);
    assert_int_equal(c.retention_days, 30);
    assert_int_equal(c.max_cards, 2000000);
    assert_int_equal(c.idle_clear_s, 120); /* the card goes 2 minutes after a scan */
    assert_int_equal(c.prev_tenant.len, 0);
    char keys[2][TS_IDENT_KEY_HEX];
    assert_int_equal(ts_agent_ident_keys(&c, TS_IDENT_LOYALTY, "2000000000015", keys), 1);
    assert_true(ts_agent_kv_usable(&c, 1, 0));
    assert_false(ts_agent_kv_usable(&c, 2, 0));
    assert_true(ts_agent_kv_usable(&c, 2, 1)); /* the hub switched first */

    assert_int_equal(ts_agent_config_parse("a.conf",
                                           "[hub]\nurl = https://hub:8443\nlong_poll_s = 0\n"
                                           "[identity]\ntenant_key = " KEY2 "\nkey_version = 2\n"
                                           "previous_tenant_key = " KEY "\n"
                                           "previous_key_version = 1\n"
                                           "[cache]\nretention_days = 7\nmax_cards = 1000\n"
                                           "[page]\nidle_clear_s = 0\n",
                                           &c, err, sizeof err),
                     TS_OK);
    assert_int_equal(c.idle_clear_s, 0);
    assert_int_equal(c.long_poll_s, 0);
    assert_int_equal(c.retention_days, 7);
    assert_int_equal(c.max_cards, 1000);
    assert_int_equal(c.tenant.version, 2);
    assert_int_equal(c.prev_tenant.version, 1);
    /* Current key first, then the previous one (what the cache may still
     * hold from before the hub switched). */
    assert_int_equal(ts_agent_ident_keys(&c, TS_IDENT_LOYALTY, "2000000000015", keys), 2);
    struct ts_tenant_key k1, k2;
    char want[TS_IDENT_KEY_HEX];
    ts_tenant_key_parse(KEY, 1, &k1);
    ts_tenant_key_parse(KEY2, 2, &k2);
    ts_ident_key(&k2, TS_IDENT_LOYALTY, "2000000000015", want);
    assert_string_equal(keys[0], want);
    ts_ident_key(&k1, TS_IDENT_LOYALTY, "2000000000015", want);
    assert_string_equal(keys[1], want);
    assert_true(ts_agent_kv_usable(&c, 1, 0));
    assert_true(ts_agent_kv_usable(&c, 2, 0));
    assert_false(ts_agent_kv_usable(&c, 3, 0));
    assert_true(ts_agent_kv_usable(&c, 3, 2));

    expect_error("[hub]\nurl = https://x\nlong_poll_s = 26\n[identity]\ntenant_key = " KEY "\n",
                 "t.conf:3", "long_poll_s");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n"
                 "[cache]\nretention_days = 0\n",
                 "t.conf:6", "retention_days");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n"
                 "[page]\nidle_clear_s = -1\n",
                 "t.conf:6", "idle_clear_s");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n"
                 "previous_tenant_key = " KEY2 "\n",
                 "t.conf", "previous_key_version");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n"
                 "previous_tenant_key = " KEY2 "\nprevious_key_version = 1\n",
                 "t.conf:6", "different from key_version");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n"
                 "previous_key_version = 2\n",
                 "t.conf", "previous_tenant_key");
    expect_error("[hub]\nurl = https://x\n[identity]\ntenant_key = " KEY "\n"
                 "previous_tenant_key = nothex\nprevious_key_version = 2\n",
                 "t.conf:5", "previous_tenant_key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_empty_values_mean_default),
        cmocka_unit_test(test_full_example),
        cmocka_unit_test(test_more_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_sync_cache_and_rotation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
