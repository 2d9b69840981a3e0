/*
 * Unit tests for the payment card guard (drivers/guard.c), symbology and
 * GS1 element strings (drivers/symbology.c), the serial framer
 * (drivers/serial.c) and the input registry (drivers/input.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "guard.h"
#include "input.h"
#include "netallow.h"
#include "serial.h"
#include "symbology.h"
#include "ts.h"

static enum ts_guard_verdict g(const char *aim, const char *s)
{
    return ts_guard_check(NULL, aim, s, strlen(s));
}

static void guard_drops_card_data(void **st)
{
    (void)st;
    assert_int_equal(g(NULL, "%B4111111111111111^DOE/JOHN^2512101000000000000?"), TS_GUARD_TRACK);
    assert_int_equal(g(NULL, ";4111111111111111=25121010000000000000?"), TS_GUARD_TRACK);
    assert_int_equal(g(NULL, "4111111111111111=2512101"), TS_GUARD_TRACK);
    assert_int_equal(g(NULL, "4111111111111111"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "4111 1111 1111 1111"), TS_GUARD_PAN);
    assert_int_equal(g("]Q1", "pay:378282246310005;"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "4222222222222"), TS_GUARD_PAN); /* 13 digits, not an EAN-13 */
}

static void guard_passes_codes(void **st)
{
    (void)st;
    assert_int_equal(g("]E0", "5901234123457"), TS_GUARD_PASS); /* EAN-13, passes Luhn too */
    assert_true(ts_luhn_valid("5901234123457", 13));
    assert_int_equal(g("]E0", "2100000000012"), TS_GUARD_PASS);
    assert_int_equal(g(NULL, "4111111111111112"), TS_GUARD_PASS);        /* Luhn fails */
    assert_int_equal(g("]C1", "8018106141410000000019"), TS_GUARD_PASS); /* GSRN */
    /* 20 digits with no Luhn-valid 13..19 window inside */
    assert_int_equal(g(NULL, "10000000000000000000"), TS_GUARD_PASS);
    assert_int_equal(g("]C1", "0109501101530003"), TS_GUARD_PASS); /* GTIN */
    assert_int_equal(g("]C1", "01095011015300031012345\x1d"
                              "21ABC"),
                     TS_GUARD_PASS); /* + lot */
    assert_int_equal(g("]Q1", "https://shop.example/o/ORD-1001"), TS_GUARD_PASS);
}

/* The bypasses found in the security review: each was taken as a loyalty
 * code before. */
static void guard_catches_bypasses(void **st)
{
    (void)st;
    /* GS1 element strings are not a free pass: free-text AIs are text. */
    assert_int_equal(g("]C1", "905200828282828210"), TS_GUARD_PAN); /* AI 90 + PAN */
    assert_int_equal(g("]d2", "216011111111111117"), TS_GUARD_PAN); /* AI 21 + PAN */
    assert_int_equal(g("]Q3", "0109501101530003216011111111111117"), TS_GUARD_PAN);
    assert_int_equal(g("]C1", "(90)378282246310005"), TS_GUARD_PAN); /* human-readable */
    /* Separators: dots, several spaces, dashes, mixed. */
    assert_int_equal(g(NULL, "5105.1051.0510.5100"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "3566  0020  2036  0505"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "3566-0020-2036-0505"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "3782 822463 10005"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "4111_1111/1111 - 1111"), TS_GUARD_PAN);
    /* A number inside a longer run, at the start, middle or end. */
    assert_int_equal(g(NULL, "1234"
                             "6011000990139424"),
                     TS_GUARD_PAN); /* 20 digits */
    assert_int_equal(g(NULL, "6011000990139424"
                             "9876"),
                     TS_GUARD_PAN);
    assert_int_equal(g(NULL, "99"
                             "6011000990139424"
                             "77"),
                     TS_GUARD_PAN);
    assert_int_equal(g(NULL, "41111111111111111111"), TS_GUARD_PAN);
    /* A group of its own inside a joined run that fails Luhn as a whole. */
    assert_int_equal(g(NULL, "12 4111111111111111"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "4111111111111111 22"), TS_GUARD_PAN);
    assert_int_equal(g(NULL, "0004111111111111111"), TS_GUARD_PAN); /* zero-padded */
    /* Track 2 and track 1 shapes. */
    assert_int_equal(g(NULL, ";5200828282828210=25121010000000000000?"), TS_GUARD_TRACK);
    assert_int_equal(g(NULL, "B5200828282828210^DOE/JANE^25121010000"), TS_GUARD_TRACK);
    /* Long runs far past the chunk size still have their windows looked at. */
    char big[2000];
    memset(big, '0', sizeof big);
    memcpy(big + 1500, "4000056655665556", 16);
    assert_int_equal(ts_guard_check(NULL, NULL, big, sizeof big), TS_GUARD_PAN);
    memcpy(big + 1500, "0000000000000000", 16);
    memcpy(big + 505, "4000056655665556", 16); /* across the first chunk's end */
    assert_int_equal(ts_guard_check(NULL, NULL, big, sizeof big), TS_GUARD_PAN);
}

/* Finds every card number in text, masks it to its last four. */
static char *masked(const char *in, size_t *count)
{
    static char buf[512];
    ts_strlcpy(buf, in, sizeof buf);
    *count = ts_guard_mask(NULL, buf, strlen(buf), NULL);
    return buf;
}

static void guard_masks_text(void **st)
{
    (void)st;
    size_t c;
    assert_string_equal(masked("Geschenkkarte 4000056655665556", &c),
                        "Geschenkkarte ************5556");
    assert_int_equal(c, 1);
    assert_string_equal(masked("Gift 378282246310005 and 5105.1051.0510.5100 x", &c),
                        "Gift ***********0005 and ****.****.****.5100 x");
    assert_int_equal(c, 2);
    assert_string_equal(masked(";5200828282828210=25121010000000000000?", &c),
                        "*************8210**********************");
    assert_string_equal(masked("%B4111111111111111^DOE/JOHN^2512101000?", &c),
                        "**************1111*********************");
    /* A number inside a longer run: the kept four digits do not join the rest
     * into a new one. */
    char *m = masked("ref 1234601100099013942400000000000000 end", &c);
    assert_true(c >= 1);
    assert_int_equal(ts_guard_find(NULL, m, strlen(m), NULL), TS_GUARD_PASS);
    assert_null(strstr(m, "6011000990139424"));
    /* Not card numbers: products, prices, dates, a 13-digit EAN-13 among text. */
    const char *fine[] = {"4006381333931 Milch 1,29 A", "Hammer 2 @ 9.99   19.98",
                          "12.03.2025 10:15 Kasse 3", "SUMME EUR 1.234,56", "EAN 5901234123457 x2"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        assert_string_equal(masked(fine[i], &c), fine[i]);
        assert_int_equal(c, 0);
    }
    /* Machine-made keys and zero-padded numbers are not card numbers. */
    const char *keys[] = {"3f2b1c4d-1234-4567-8910-123456789012", /* UUID */
                          /* the agent's consent key around a UUID whose groups hold a
                           * Luhn-valid run (5787343439045): the hub refused such keys */
                          "consent:681e39c5-7873-4343-9045-aa3e616abf7d",
                          "return:681e39c5-7873-4343-9045-aa3e616abf7d",
                          "0123456789012345678901234567890a", /* hex-32 card reference */
                          "0001-0001-000000123"};             /* a zero-padded receipt number */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_int_equal(ts_guard_find(NULL, keys[i], strlen(keys[i]), NULL), TS_GUARD_PASS);
    /* ...a word before a card number is no key... */
    assert_int_equal(ts_guard_find(NULL, "consent:4111111111111111", 24, NULL), TS_GUARD_PAN);
    assert_int_equal(ts_guard_find(NULL, "Consent:681e39c5-7873-4343-9045-aa3e616abf7d", 44, NULL),
                     TS_GUARD_PAN);
    /* ...but a card number with zeros in front of it, in one run, is one. */
    assert_int_equal(ts_guard_find(NULL, "0004111111111111111", 19, NULL), TS_GUARD_PAN);
    struct ts_guard_hit h;
    assert_int_equal(ts_guard_find(NULL, "x 3566  0020  2036  0505", 24, &h), TS_GUARD_PAN);
    assert_int_equal(h.off, 2);
    assert_int_equal(h.end, 24);
    assert_string_equal(h.last4, "0505");
}

/* Every string of a document: identifiers refused, free text masked. */
static void guard_json_documents(void **st)
{
    (void)st;
    static const char *const idents[] = {"barcode", "products[].sku", "customer.code", NULL};
    json_t *doc = json_loads(
        "{\"receipt\":\"R1\",\"barcode\":\";5200828282828210=25121010000000000000?\","
        "\"products\":[{\"sku\":\"6011111111111117\",\"name\":\"Card 378282246310005\"},"
        "{\"sku\":\"4006381333931\",\"name\":\"Milk\"}],\"note\":{\"x\":[\"4000056655665556\"]}}",
        0, NULL);
    assert_non_null(doc);
    json_t *refused = json_array();
    struct ts_guard_json_report rep;
    assert_int_equal(ts_guard_json(NULL, doc, idents, refused, &rep), TS_OK);
    assert_int_equal(rep.refused, 2);
    assert_int_equal(rep.masked, 2);
    assert_int_equal(json_array_size(refused), 2);
    assert_string_equal(json_string_value(json_array_get(refused, 0)), "barcode");
    assert_string_equal(json_string_value(json_array_get(refused, 1)), "products[0].sku");
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_null(strstr(text, "378282246310005"));
    assert_null(strstr(text, "4000056655665556"));
    assert_non_null(strstr(text, "Card ***********0005"));
    assert_non_null(strstr(text, "4006381333931"));
    free(text);
    json_decref(refused);
    json_decref(doc);
    /* A key holding a card number cannot be masked: refused. */
    doc = json_loads("{\"a\":{\"4111111111111111\":1}}", 0, NULL);
    assert_int_equal(ts_guard_json(NULL, doc, NULL, NULL, &rep), TS_OK);
    assert_int_equal(rep.refused, 1);
    assert_string_equal(rep.field, "a.(key)");
    json_decref(doc);
}

/* The tap's allow-list of POS addresses (drivers/netallow.c). */
static void netallow_lists(void **st)
{
    (void)st;
    struct ts_netallow a;
    const char *bad = NULL;
    assert_int_equal(ts_netallow_parse("127.0.0.0/8, 10.1.2.0/24 ::1 fd00::/8", &a, &bad), TS_OK);
    assert_int_equal(a.n, 4);
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    const char *yes4[] = {"127.0.0.1", "127.255.0.9", "10.1.2.77"};
    const char *no4[] = {"10.1.3.1", "192.0.2.10", "128.0.0.1"};
    for (size_t i = 0; i < 3; i++) {
        inet_pton(AF_INET, yes4[i], &v4.sin_addr);
        assert_true(ts_netallow_match(&a, (struct sockaddr *)&v4));
        inet_pton(AF_INET, no4[i], &v4.sin_addr);
        assert_false(ts_netallow_match(&a, (struct sockaddr *)&v4));
    }
    inet_pton(AF_INET6, "::ffff:10.1.2.5", &v6.sin6_addr); /* dual-stack listener */
    assert_true(ts_netallow_match(&a, (struct sockaddr *)&v6));
    inet_pton(AF_INET6, "fd12::1", &v6.sin6_addr);
    assert_true(ts_netallow_match(&a, (struct sockaddr *)&v6));
    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
    assert_false(ts_netallow_match(&a, (struct sockaddr *)&v6));
    assert_int_equal(ts_netallow_parse("127.0.0.1, 10.0.0.0/33", &a, &bad), TS_ERR_INVAL);
    assert_string_equal(bad, "10.0.0.0/33");
    assert_int_equal(ts_netallow_parse("localhost", &a, &bad), TS_ERR_INVAL);
}

static void guard_allowed_prefixes(void **st)
{
    (void)st;
    struct ts_conf *c = NULL;
    struct ts_guard gd;
    char err[256];
    assert_int_equal(
        ts_conf_parse("t.conf", "[guard]\nallow_prefixes = 6036, 7777\n", &c, err, sizeof err),
        TS_OK);
    assert_int_equal(ts_guard_conf(c, &gd, err, sizeof err), TS_OK);
    ts_conf_free(c);
    /* 6036 + Luhn-valid: a private-label loyalty card allowed by config. */
    char num[] = "6036000000000000";
    for (char d = '0'; d <= '9'; d++) {
        num[15] = d;
        if (ts_luhn_valid(num, 16))
            break;
    }
    assert_int_equal(ts_guard_check(NULL, NULL, num, 16), TS_GUARD_PAN);
    assert_int_equal(ts_guard_check(&gd, NULL, num, 16), TS_GUARD_PASS);
    assert_int_equal(
        ts_conf_parse("t.conf", "[guard]\nallow_prefixes = 60x\n", &c, err, sizeof err), TS_OK);
    assert_int_equal(ts_guard_conf(c, &gd, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "t.conf:2"));
    ts_conf_free(c);
}

static void check_digits(void **st)
{
    (void)st;
    assert_true(ts_gs1_is_ean13("4006381333931", 13));
    assert_false(ts_gs1_is_ean13("4006381333932", 13));
    assert_true(ts_gs1_is_ean8("96385074", 8));
    assert_true(ts_gs1_is_upca("036000291452", 12));
    assert_true(ts_gs1_check_ok("106141411234567897", 18)); /* SSCC */
    assert_false(ts_gs1_check_ok("10614141123456789X", 18));
}

static void upos_types(void **st)
{
    (void)st;
    assert_int_equal(ts_symbology_upos("]E0", "5901234123457", 13), TS_SDT_EAN13);
    assert_int_equal(ts_symbology_upos("]E0", "0036000291452", 13), TS_SDT_UPCA);
    assert_int_equal(ts_symbology_upos("]E4", "96385074", 8), TS_SDT_EAN8);
    assert_int_equal(ts_symbology_upos("]C0", "ABC", 3), TS_SDT_CODE128);
    assert_int_equal(ts_symbology_upos("]C1", "01", 2), TS_SDT_EAN128);
    assert_int_equal(ts_symbology_upos("]Q1", "x", 1), TS_SDT_QRCODE);
    assert_int_equal(ts_symbology_upos("]d2", "x", 1), TS_SDT_DATAMATRIX);
    assert_int_equal(ts_symbology_upos(NULL, "x", 1), TS_SDT_UNKNOWN);
    assert_string_equal(ts_symbology_name(TS_SDT_EAN13), "EAN-13");
}

static void gs1_strings(void **st)
{
    (void)st;
    struct ts_gs1 p;
    char err[128];
    const char *s = "010950110153000317250101"
                    "10ABC123\x1d"
                    "21XYZ";
    assert_int_equal(ts_gs1_parse(s, strlen(s), &p, err, sizeof err), TS_OK);
    assert_int_equal(p.n, 4);
    assert_string_equal(ts_gs1_get(&p, "01"), "09501101530003");
    assert_string_equal(ts_gs1_get(&p, "17"), "250101");
    assert_string_equal(ts_gs1_get(&p, "10"), "ABC123");
    assert_string_equal(ts_gs1_get(&p, "21"), "XYZ");
    s = "8018106141410000000019";
    assert_int_equal(ts_gs1_parse(s, strlen(s), &p, err, sizeof err), TS_OK);
    assert_string_equal(ts_gs1_get(&p, "8018"), "106141410000000019");
    s = "(00)106141411234567897(10)L1";
    assert_int_equal(ts_gs1_parse(s, strlen(s), &p, err, sizeof err), TS_OK);
    assert_string_equal(ts_gs1_get(&p, "00"), "106141411234567897");
    assert_string_equal(ts_gs1_get(&p, "10"), "L1");
    /* Wrong check digit, cut short, unknown AI. */
    s = "8018106141410000000018";
    assert_int_equal(ts_gs1_parse(s, strlen(s), &p, err, sizeof err), TS_ERR_INVAL);
    assert_non_null(strstr(err, "check digit"));
    s = "0109501101530";
    assert_int_equal(ts_gs1_parse(s, strlen(s), &p, err, sizeof err), TS_ERR_INVAL);
    s = "05123";
    assert_int_equal(ts_gs1_parse(s, strlen(s), &p, err, sizeof err), TS_ERR_INVAL);
}

struct codes {
    int n;
    char data[4][64];
    char aim[4][4];
};

static void collect(void *ctx, const char *data, size_t len, const char *aim)
{
    struct codes *c = ctx;
    if (c->n < 4) {
        snprintf(c->data[c->n], sizeof c->data[0], "%.*s", (int)len, data);
        snprintf(c->aim[c->n], sizeof c->aim[0], "%s", aim);
        c->n++;
    }
}

static void framer_suffix_and_timeout(void **st)
{
    (void)st;
    struct ts_serial_framer f;
    struct codes c = {0};
    ts_serial_framer_init(&f, TS_SUFFIX_CRLF, 0, true);
    const char *in = "]E0123\r\n456\r";
    ts_serial_framer_feed(&f, (const uint8_t *)in, 8, 0, collect, &c);
    ts_serial_framer_feed(&f, (const uint8_t *)in + 8, strlen(in) - 8, 1, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "123");
    assert_string_equal(c.aim[0], "]E0");
    assert_int_equal(f.len, 4); /* "456\r" waits for its LF */

    /* Inter-character timeout: nothing before the deadline, the code after. */
    memset(&c, 0, sizeof c);
    ts_serial_framer_init(&f, TS_SUFFIX_NONE, 50, false);
    ts_serial_framer_feed(&f, (const uint8_t *)"ABC", 3, 1000, collect, &c);
    assert_int_equal(ts_serial_framer_deadline(&f), 1050);
    ts_serial_framer_tick(&f, 1049, collect, &c);
    assert_int_equal(c.n, 0);
    ts_serial_framer_tick(&f, 1050, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "ABC");
    assert_int_equal(ts_serial_framer_deadline(&f), INT64_MAX);

    /* Too long: dropped whole, the next code is fine. */
    memset(&c, 0, sizeof c);
    ts_serial_framer_init(&f, TS_SUFFIX_CR, 0, false);
    char big[TS_SCAN_MAX + 10];
    memset(big, 'x', sizeof big);
    ts_serial_framer_feed(&f, (const uint8_t *)big, sizeof big, 0, collect, &c);
    ts_serial_framer_feed(&f, (const uint8_t *)"\rOK\r", 4, 0, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.data[0], "OK");
}

static void registry_and_unknown_driver(void **st)
{
    (void)st;
    assert_non_null(ts_driver_find("serial"));
    assert_null(ts_driver_find("nope"));
    struct ts_conf *c = NULL;
    char err[512];
    assert_int_equal(ts_conf_parse("a.conf", "[agent]\nx=1\n[input.front]\ndriver = seriel\n", &c,
                                   err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_inputs_check(c, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "a.conf:4"));
    assert_non_null(strstr(err, "seriel"));
    assert_non_null(strstr(err, "serial"));
    ts_conf_free(c);
}

/* Emitted scans go through the guard: a PAN never reaches on_scan. */
struct seen {
    int scans, drops;
};
static void on_scan(void *ctx, const struct ts_scan *s)
{
    struct seen *x = ctx;
    (void)s;
    x->scans++;
}
static void on_drop(void *ctx, const char *input)
{
    struct seen *x = ctx;
    (void)input;
    x->drops++;
}

static void emit_runs_the_guard(void **st)
{
    (void)st;
    struct seen x = {0};
    struct ts_driver_host h = {.ctx = &x, .on_scan = on_scan, .on_guard_drop = on_drop};
    assert_false(ts_driver_emit(&h, "front", "4111111111111111", 16, NULL));
    assert_true(ts_driver_emit(&h, "front", "5901234123457", 13, "]E0"));
    assert_int_equal(x.scans, 1);
    assert_int_equal(x.drops, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guard_drops_card_data),
        cmocka_unit_test(guard_passes_codes),
        cmocka_unit_test(guard_catches_bypasses),
        cmocka_unit_test(guard_masks_text),
        cmocka_unit_test(guard_json_documents),
        cmocka_unit_test(netallow_lists),
        cmocka_unit_test(guard_allowed_prefixes),
        cmocka_unit_test(check_digits),
        cmocka_unit_test(upos_types),
        cmocka_unit_test(gs1_strings),
        cmocka_unit_test(framer_suffix_and_timeout),
        cmocka_unit_test(registry_and_unknown_driver),
        cmocka_unit_test(emit_runs_the_guard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
