/* Identity rules: file order, each match key, GS1 AI extraction, the
 * built-in defaults and configuration errors that name file:line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "rules.h"

#define KEY "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
#define HEAD "[hub]\nurl = https://hub:8443\n[identity]\ntenant_key = " KEY "\n"

static struct ts_rules *load(const char *rules_text)
{
    static struct ts_agent_config c; /* large: keep it off the stack */
    char err[512] = "", *text = NULL;
    size_t n = strlen(HEAD) + strlen(rules_text) + 1;
    text = malloc(n);
    snprintf(text, n, "%s%s", HEAD, rules_text);
    int rc = ts_agent_config_parse("t.conf", text, &c, err, sizeof err);
    free(text);
    if (rc != TS_OK)
        fail_msg("config: %s", err);
    struct ts_rules *r = NULL;
    assert_int_equal(ts_rules_new(&c.rules, &r, err, sizeof err), TS_OK);
    return r;
}

/* Resolves code (an optional AIM id in front, as the API takes it). */
static struct ts_rule_match resolve(const struct ts_rules *r, const char *code)
{
    struct ts_scan s;
    struct ts_rule_match m;
    assert_int_equal(ts_scan_from_text("test", code, strlen(code), NULL, &s), TS_OK);
    assert_int_equal(ts_rules_resolve(r, &s, &m), TS_OK);
    return m;
}

#define EXPECT(r, code, kind_, rule_, value_)                                                      \
    do {                                                                                           \
        struct ts_rule_match m_ = resolve(r, code);                                                \
        assert_string_equal(ts_ident_kind_name(m_.kind), kind_);                                   \
        assert_string_equal(m_.rule, rule_);                                                       \
        assert_string_equal(m_.value, value_);                                                     \
    } while (0)

static void test_defaults_keep_loyalty(void **state)
{
    (void)state;
    struct ts_rules *r = load("");
    EXPECT(r, "2100000000012", "loyalty", "default:loyalty", "2100000000012");
    EXPECT(r, "]E04006381333931", "loyalty", "default:loyalty", "4006381333931");
    /* A GSRN in a GS1 symbol: the 18 digits of AI 8018 are the number. */
    EXPECT(r, "]C18018735000000012345671", "loyalty", "default:gsrn", "735000000012345671");
    EXPECT(r, "(8018)735000000012345671", "loyalty", "default:gsrn", "735000000012345671");
    /* The same digits without a GS1 AIM id stay as scanned. */
    EXPECT(r, "]C08018735000000012345671", "loyalty", "default:loyalty", "8018735000000012345671");
    ts_rules_free(r);
}

static void test_file_order_first_match_wins(void **state)
{
    (void)state;
    struct ts_rules *r = load("[rule.instore]\nsymbology = ]E0\nprefix = 21\nkind = loyalty\n"
                              "[rule.products]\nsymbology = EAN-13\nkind = product\n"
                              "[rule.never]\nprefix = 21\nkind = order\n");
    EXPECT(r, "]E02100000000012", "loyalty", "instore", "2100000000012");
    EXPECT(r, "]E04006381333931", "product", "products", "4006381333931");
    /* No AIM id: not EAN-13 by symbology, so the third rule takes it. */
    EXPECT(r, "2100000000012", "order", "never", "2100000000012");
    ts_rules_free(r);
}

static void test_each_key(void **state)
{
    (void)state;
    struct ts_rules *r =
        load("[rule.app]\nsymbology = QR Code\nprefix = TSAPP:\n"
             "strip_prefix = TSAPP:\nkind = loyalty\n"
             "[rule.order]\nsymbology = ]Q\nregex = ^W-[0-9]{4,8}$\nkind = order\n"
             "[rule.receipt]\nsymbology = Code 128\nregex = ^S[0-9]{3}-T[0-9]{2}-\n"
             "kind = receipt\n"
             "[rule.card128]\nsymbology = ]C0\nlength = 10\nkind = loyalty\n"
             "[rule.short]\nmin_length = 3\nmax_length = 5\nkind = product\n");
    EXPECT(r, "]Q1TSAPP:CARD-42", "loyalty", "app", "CARD-42");
    EXPECT(r, "]Q1W-10017", "order", "order", "W-10017");
    /* The regex anchors: a longer order-like code falls through. */
    EXPECT(r, "]Q1W-1001X", "loyalty", "default:loyalty", "W-1001X");
    EXPECT(r, "]C0S001-T01-000123", "receipt", "receipt", "S001-T01-000123");
    EXPECT(r, "]C01234567890", "loyalty", "card128", "1234567890");
    EXPECT(r, "]C0123456789", "loyalty", "default:loyalty", "123456789"); /* 9 ≠ 10 */
    EXPECT(r, "ABCD", "product", "short", "ABCD");
    EXPECT(r, "AB", "loyalty", "default:loyalty", "AB");
    EXPECT(r, "ABCDEF", "loyalty", "default:loyalty", "ABCDEF");
    ts_rules_free(r);
}

static void test_gs1_ai(void **state)
{
    (void)state;
    struct ts_rules *r = load("[rule.gsrn_prefix]\ngs1_ai = 8018\nprefix = 7350\n"
                              "kind = loyalty\n"
                              "[rule.gtin]\nsymbology = ]C1\ngs1_ai = 01\nkind = product\n");
    EXPECT(r, "]C18018735000000012345671", "loyalty", "gsrn_prefix", "735000000012345671");
    /* Another company prefix: the default GSRN rule still takes it. */
    EXPECT(r, "]C18018123456789012345675", "loyalty", "default:gsrn", "123456789012345675");
    /* A GTIN with a batch (AI 10, variable length). */
    EXPECT(r,
           "]C10104006381333931"
           "10ABC",
           "product", "gtin", "04006381333931");
    /* A broken check digit is no GS1 string: falls to loyalty as scanned. */
    EXPECT(r, "]C18018735000000012345670", "loyalty", "default:loyalty", "8018735000000012345670");
    ts_rules_free(r);
}

/* The example in docs/OPERATIONS.md "Identity rules", verbatim. */
static void test_operations_example(void **state)
{
    (void)state;
    struct ts_rules *r = load("; EAN-13 loyalty cards with the in-store prefix 21–29\n"
                              "[rule.instore_card]\n"
                              "symbology = ]E0\n"
                              "regex = ^2[1-9][0-9]{11}$\n"
                              "kind = loyalty\n"
                              "\n"
                              "; every other EAN-13 / UPC-A is merchandise\n"
                              "[rule.products]\n"
                              "symbology = ]E0\n"
                              "kind = product\n"
                              "\n"
                              "; GS1-128 or GS1 DataMatrix with a GSRN (also a built-in default)\n"
                              "[rule.gsrn]\n"
                              "gs1_ai = 8018\n"
                              "kind = loyalty\n"
                              "\n"
                              "; Code 128 plastic cards: 10 digits\n"
                              "[rule.card128]\n"
                              "symbology = ]C0\n"
                              "regex = ^[0-9]{10}$\n"
                              "kind = loyalty\n"
                              "\n"
                              "; the customer app shows \"TSAPP:<card number>\" as a QR code\n"
                              "[rule.app_qr]\n"
                              "symbology = QR Code\n"
                              "prefix = TSAPP:\n"
                              "strip_prefix = TSAPP:\n"
                              "kind = loyalty\n"
                              "\n"
                              "; receipt barcodes: the receipt number as printed\n"
                              "[rule.receipt]\n"
                              "symbology = ]C0\n"
                              "regex = ^S[0-9]{3}-T[0-9]{2}-[0-9]{6}$\n"
                              "kind = receipt\n"
                              "\n"
                              "; the web shop's order confirmation QR: \"ORDER:W-1001\"\n"
                              "[rule.order_qr]\n"
                              "symbology = ]Q\n"
                              "prefix = ORDER:\n"
                              "strip_prefix = ORDER:\n"
                              "kind = order\n");
    EXPECT(r, "]E02100000000012", "loyalty", "instore_card", "2100000000012");
    EXPECT(r, "]E04006381333931", "product", "products", "4006381333931");
    EXPECT(r, "]C18018735000000012345671", "loyalty", "gsrn", "735000000012345671");
    EXPECT(r, "]C01234567890", "loyalty", "card128", "1234567890");
    EXPECT(r, "]Q1TSAPP:2100000000012", "loyalty", "app_qr", "2100000000012");
    EXPECT(r, "]C0S001-T01-000123", "receipt", "receipt", "S001-T01-000123");
    EXPECT(r, "]Q1ORDER:W-1001", "order", "order_qr", "W-1001");
    EXPECT(r, "]Q1https://example.com", "loyalty", "default:loyalty", "https://example.com");
    ts_rules_free(r);
}

/* Extraction: a query parameter of an app's URL QR, a regex group. */
static void test_extract(void **state)
{
    (void)state;
    struct ts_rules *r = load("[rule.app_url]\nsymbology = ]Q\nurl_param = card\n"
                              "regex = ^[0-9]{10}$\nkind = loyalty\n"
                              "[rule.group]\nregex = ^CARD-([0-9]+)-(X|Y)$\ncapture = 1\n"
                              "kind = loyalty\n"
                              "[rule.both]\nurl_param = c\nregex = ^v([0-9]+)$\ncapture = 1\n"
                              "strip_prefix = 00\nkind = loyalty\n");
    EXPECT(r, "]Q1https://app.example/loyalty?card=4711000123", "loyalty", "app_url", "4711000123");
    /* Percent-decoding, another parameter first, a fragment after. */
    EXPECT(r, "]Q1https://app.example/l?x=1&card=47110%30%30123#top", "loyalty", "app_url",
           "4711000123");
    /* The first parameter of that name wins; a URL without it falls through. */
    EXPECT(r, "]Q1https://app.example/l?card=4711000123&card=9999999999", "loyalty", "app_url",
           "4711000123");
    EXPECT(r, "]Q1https://app.example/l?cardx=4711000123", "loyalty", "default:loyalty",
           "https://app.example/l?cardx=4711000123");
    /* Not a URL, a broken escape, %00, a value the regex refuses: no match. */
    EXPECT(r, "]Q1card=4711000123", "loyalty", "default:loyalty", "card=4711000123");
    EXPECT(r, "]Q1https://a.example/?card=47%G1000123", "loyalty", "default:loyalty",
           "https://a.example/?card=47%G1000123");
    EXPECT(r, "]Q1https://a.example/?card=4711%00", "loyalty", "default:loyalty",
           "https://a.example/?card=4711%00");
    EXPECT(r, "]Q1https://a.example/?card=4711%", "loyalty", "default:loyalty",
           "https://a.example/?card=4711%");
    EXPECT(r, "CARD-123456-Y", "loyalty", "group", "123456");
    EXPECT(r, "CARD-123456-Z", "loyalty", "default:loyalty", "CARD-123456-Z");
    EXPECT(r, "http://h/?c=v0012345", "loyalty", "both", "12345");
    ts_rules_free(r);
}

static void expect_error(const char *rules_text, const char *where, const char *what)
{
    static struct ts_agent_config c;
    char err[512] = "", text[2048];
    snprintf(text, sizeof text, "%s%s", HEAD, rules_text);
    assert_int_equal(ts_agent_config_parse("t.conf", text, &c, err, sizeof err), TS_ERR_CONFIG);
    if (!strstr(err, where) || !strstr(err, what))
        fail_msg("error '%s' lacks '%s' / '%s'", err, where, what);
}

static void test_config_errors(void **state)
{
    (void)state;
    /* HEAD is 4 lines: the rule section starts on line 5. */
    expect_error("[rule.a]\nprefix = 21\n", "t.conf", "[rule.a] kind: missing");
    expect_error("[rule.a]\nkind = coupon\n", "t.conf:6", "[rule.a] kind");
    expect_error("[rule.a]\nkind = loyalty\nregex = ([0-9]\n", "t.conf:7",
                 "[rule.a] regex: not a POSIX extended regular expression");
    expect_error("[rule.a]\nkind = loyalty\nsymbology = Barcode 9000\n", "t.conf:7",
                 "[rule.a] symbology");
    expect_error("[rule.a]\nkind = loyalty\nsymbology = ]\n", "t.conf:7", "[rule.a] symbology");
    expect_error("[rule.a]\nkind = loyalty\ngs1_ai = 80x8\n", "t.conf:7", "[rule.a] gs1_ai");
    expect_error("[rule.a]\nkind = loyalty\nlength = 0\n", "t.conf:7", "length");
    expect_error("[rule.a]\nkind = loyalty\nmin_length = 9\nmax_length = 3\n", "t.conf:8",
                 "[rule.a] max_length: smaller than min_length");
    expect_error("[rule.a]\nkind = loyalty\n[rule.b]\nkind = receipt\nlength = 5\nmin_length = 2\n",
                 "t.conf:9", "[rule.b] length");
    expect_error("[rule.a]\nkind = loyalty\ncapture = 1\n", "t.conf:7",
                 "[rule.a] capture: needs a regex");
    expect_error("[rule.a]\nkind = loyalty\nregex = ^a(b)$\ncapture = 2\n", "t.conf:8",
                 "[rule.a] capture: group 2 asked for, the regex has 1");
    expect_error("[rule.a]\nkind = loyalty\nregex = ^a(b)$\ncapture = 10\n", "t.conf:8",
                 "[rule.a] capture");
    expect_error("[rule.a]\nkind = loyalty\nregex = ^(a+)\\1$\n", "t.conf:7",
                 "[rule.a] regex: back-references");
    expect_error("[rule.a]\nkind = loyalty\nurl_param = ca rd\n", "t.conf:7", "[rule.a] url_param");
    expect_error("[rule.a]\nkind = loyalty\nstrip-prefix = X\n", "t.conf:7",
                 "[rule.a] strip-prefix: unknown key");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_keep_loyalty),
        cmocka_unit_test(test_file_order_first_match_wins),
        cmocka_unit_test(test_each_key),
        cmocka_unit_test(test_gs1_ai),
        cmocka_unit_test(test_operations_example),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_extract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
