/*
 * Test helper: a real agent on a fresh temporary state directory, with the
 * configuration the API and purchase tests share (a hub that is never
 * asked, the API on an ephemeral loopback port). Include after <cmocka.h>.
 */
#ifndef TS_TEST_AGENT_FX_H
#define TS_TEST_AGENT_FX_H

#include "agent.h"
#include "tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes dir from tmpl ("/tmp/NAME-XXXXXX", at most 63 characters) and opens
 * an agent on it; the caller closes it and removes the tree. */
static inline struct ts_agent *ts_test_agent_open(char dir[64], const char *tmpl)
{
    char text[1024], err[256];
    struct ts_agent_config cfg;
    struct ts_agent *a = NULL;
    ts_log_set_level(TS_LOG_ERROR);
    ts_strlcpy(dir, tmpl, 64);
    assert_non_null(mkdtemp(dir));
    snprintf(text, sizeof text,
             "[agent]\nstore = S001\nterminal = T01\nstate_dir = %s\n"
             "[hub]\nurl = https://localhost:1\nca = /nonexistent/ca.pem\n"
             "cert = /nonexistent/t.pem\nkey = /nonexistent/t.key\n"
             "[identity]\ntenant_key = "
             "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b\n"
             "[api]\nlisten = 127.0.0.1:0\n",
             dir);
    assert_int_equal(ts_agent_config_parse("test.conf", text, &cfg, err, sizeof err), TS_OK);
    assert_int_equal(ts_agent_open(&cfg, &a, err, sizeof err), TS_OK);
    return a;
}

#endif
