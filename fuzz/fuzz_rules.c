/* libFuzzer: the identity rules' extraction (agent/rules.c) on arbitrary
 * scanned bytes: a URL query parameter (common/url.c, percent-decoding), a
 * regex capture group and strip_prefix. Whatever matches, the identifier
 * fits its buffer and is a NUL-terminated string without NUL inside. */
#include "rules.h"
#include "url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ts_rules *rules(void)
{
    static struct ts_rules *r;
    if (r)
        return r;
    static struct ts_rules_conf c;
    struct ts_rule_conf *a = &c.r[c.n++];
    strcpy(a->name, "app_url");
    strcpy(a->url_param, "card");
    strcpy(a->regex, "^([0-9]{4,})(-[A-Z])?$");
    a->capture = 1;
    a->kind = TS_IDENT_LOYALTY;
    struct ts_rule_conf *b = &c.r[c.n++];
    strcpy(b->name, "group");
    strcpy(b->regex, "^(ID|CARD)[:=]([^;]*);?(.*)$");
    b->capture = 2;
    strcpy(b->strip_prefix, "00");
    b->kind = TS_IDENT_LOYALTY;
    char err[128];
    if (ts_rules_new(&c, &r, err, sizeof err) != TS_OK)
        abort();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ts_scan s;
    struct ts_rule_match m;
    if (ts_scan_from_text("fuzz", (const char *)data, size, NULL, &s) == TS_OK &&
        ts_rules_resolve(rules(), &s, &m) == TS_OK && strlen(m.value) >= sizeof m.value)
        abort();
    char in[TS_SCAN_MAX + 1], out[64];
    size_t n = size < TS_SCAN_MAX ? size : TS_SCAN_MAX;
    memcpy(in, data, n);
    in[n] = '\0';
    if (ts_url_query_param(in, "card", out, sizeof out) == TS_OK && strlen(out) >= sizeof out)
        abort();
    return 0;
}
