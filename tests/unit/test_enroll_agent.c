/*
 * The agent's side of enrolment that needs no hub: what config loading
 * takes from <state_dir>/enrolled.conf, which file an error names, and the
 * [hub] pin_sha256 / renew_days settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

#define KEY_A "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
#define KEY_B "7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c"

static char g_dir[256], g_main[300], g_enrolled[300];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The main file: state_dir plus extra lines. */
static void write_main(const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text, "[agent]\nstate_dir = %s/state\n%s", g_dir, extra);
    write_file(g_main, text);
}

static int setup(void **state)
{
    (void)state;
    char d[300];
    snprintf(g_dir, sizeof g_dir, "/tmp/ts-test-enroll-agent-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(d, sizeof d, "%s/state", g_dir);
    mkdir(d, 0700);
    snprintf(g_main, sizeof g_main, "%s/tillside.conf", g_dir);
    snprintf(g_enrolled, sizeof g_enrolled, "%s/state/enrolled.conf", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void expect_error(const char *where, const char *words)
{
    struct ts_agent_config cfg;
    char err[1024] = "";
    assert_int_equal(ts_agent_config_load(g_main, &cfg, err, sizeof err), TS_ERR_CONFIG);
    if (!strstr(err, where) || !strstr(err, words))
        fail_msg("error \"%s\" lacks \"%s\" or \"%s\"", err, where, words);
}

/* A packaged config without identity is incomplete until enrolment. */
static void test_unenrolled_config_says_enroll(void **state)
{
    (void)state;
    remove(g_enrolled);
    write_main("[api]\nlisten = 127.0.0.1:0\n");
    expect_error("tillside.conf", "tillside enroll");
}

static void test_enrolled_conf_completes_and_overrides(void **state)
{
    (void)state;
    char text[2048];
    write_main("[hub]\nurl = https://old.example:8443\ncert = /etc/tillside/terminal.pem\n"
               "poll_interval_ms = 700\n[identity]\ntenant_key = " KEY_A "\n");
    snprintf(text, sizeof text,
             "; written by tillside enroll\n[agent]\nstore = S001\nterminal = T07\n"
             "[hub]\nurl = https://hub.example:8443\nca = %s/state/hub-ca.pem\n"
             "cert = %s/state/terminal.pem\nkey = %s/state/terminal.key\n"
             "[identity]\ntenant_key = " KEY_B "\nkey_version = 3\n",
             g_dir, g_dir, g_dir);
    write_file(g_enrolled, text);
    struct ts_agent_config cfg;
    char err[1024] = "", want[600];
    if (ts_agent_config_load(g_main, &cfg, err, sizeof err) != TS_OK)
        fail_msg("%s", err);
    assert_string_equal(cfg.store, "S001");
    assert_string_equal(cfg.terminal, "T07");
    assert_string_equal(cfg.hub_url, "https://hub.example:8443");
    snprintf(want, sizeof want, "%s/state/terminal.pem", g_dir);
    assert_string_equal(cfg.hub_cert, want);
    assert_string_equal(cfg.enrolled, g_enrolled);
    assert_int_equal(cfg.tenant.version, 3);
    assert_int_equal(cfg.tenant.key[0], 0x7c);
    assert_int_equal(cfg.poll_interval_ms, 700); /* what enrolment does not set stays */
    assert_int_equal(cfg.renew_days, 30);
    assert_string_equal(cfg.hub_pin, "");

    /* an error in enrolled.conf names enrolled.conf and its line */
    snprintf(text, sizeof text,
             "[hub]\nurl = https://hub.example:8443\n[identity]\n"
             "tenant_key = 6b6b\n");
    write_file(g_enrolled, text);
    expect_error("enrolled.conf:4", "tenant_key");
    remove(g_enrolled);
}

static void test_pin_and_renew_days(void **state)
{
    (void)state;
    remove(g_enrolled);
    const char *base = "[hub]\nurl = https://h:1\n[identity]\ntenant_key = " KEY_A "\n[hub]\n";
    char text[1024];
    snprintf(text, sizeof text,
             "%spin_sha256 = 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
             "renew_days = 0\n",
             base);
    write_main(text);
    struct ts_agent_config cfg;
    char err[1024] = "";
    if (ts_agent_config_load(g_main, &cfg, err, sizeof err) != TS_OK)
        fail_msg("%s", err);
    assert_string_equal(cfg.hub_pin, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    assert_int_equal(cfg.renew_days, 0);
    snprintf(text, sizeof text, "%spin_sha256 = sha256//abc\n", base);
    write_main(text);
    expect_error("tillside.conf:8", "pin_sha256");
    snprintf(text, sizeof text, "%srenew_days = -1\n", base);
    write_main(text);
    expect_error("tillside.conf:8", "renew_days");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unenrolled_config_says_enroll),
        cmocka_unit_test(test_enrolled_conf_completes_and_overrides),
        cmocka_unit_test(test_pin_and_renew_days),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
