/*
 * Unit tests for the ESC/POS receipt parser (drivers/escpos.c) and the
 * receipt rules (drivers/escpos_rules.c): one test per command family and
 * code page, the fixtures of tests/fixtures/escpos through the rules, and
 * the fixtures fed one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "escpos.h"
#include "escpos_rules.h"
#include "ts.h"

#ifndef TS_ESCPOS_FIXTURES
#error "TS_ESCPOS_FIXTURES must name tests/fixtures/escpos"
#endif

/* What the parser handed over, copied out of the callback. */
struct got {
    int n;
    char text[8][4096];
    char barcode[8][256];
    char code2d[8][256];
    int barcode_type[8];
    bool cut[8];
};

static void collect(void *ctx, const struct ts_escpos_receipt *r)
{
    struct got *g = ctx;
    if (g->n >= 8)
        return;
    ts_strlcpy(g->text[g->n], r->text, sizeof g->text[0]);
    ts_strlcpy(g->barcode[g->n], r->barcode, sizeof g->barcode[0]);
    ts_strlcpy(g->code2d[g->n], r->code2d, sizeof g->code2d[0]);
    g->barcode_type[g->n] = r->barcode_type;
    g->cut[g->n] = r->cut;
    g->n++;
}

static void parse(const void *bytes, size_t n, enum ts_escpos_cp cp, struct got *g)
{
    struct ts_escpos *p = NULL;
    memset(g, 0, sizeof *g);
    assert_int_equal(ts_escpos_new(cp, collect, g, &p), TS_OK);
    ts_escpos_feed(p, bytes, n);
    ts_escpos_flush(p);
    ts_escpos_free(p);
}

#define PARSE(lit, cp, g) parse(lit, sizeof(lit) - 1, cp, g)

static void test_text_lines_and_cut(void **state)
{
    (void)state;
    struct got g;
    /* ESC @, CR ignored, HT becomes a blank, trailing blanks trimmed, GS V 0 cuts */
    PARSE("\x1b@Hello\r\nA\tB   \nsecond\x1dV\x00third\n\x1dV\x01", TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.text[0], "Hello\nA B\nsecond\n");
    assert_true(g.cut[0]);
    assert_string_equal(g.text[1], "third\n");
}

static void test_styles_do_not_leak_into_text(void **state)
{
    (void)state;
    struct got g;
    /* ESC ! n, ESC E n, ESC a n, GS ! n, ESC - n, GS B n, ESC 3 n, ESC 2, ESC M n,
     * ESC SP n, GS L nL nH, ESC $ nL nH, ESC p m t1 t2 (drawer), GS a n, GS I n */
    PARSE("\x1b!\x30"
          "A\x1b!\x00\x1b"
          "E\x01"
          "B\x1b"
          "E\x00\x1b"
          "a\x01"
          "C\x1d!\x11"
          "D\x1b-\x01"
          "E\x1d"
          "B\x01"
          "F\x1b"
          "3\x40\x1b"
          "2G\x1bM\x01H\x1b \x05I"
          "\x1dL\x0a\x00J\x1b$\x0a\x0aK\x1bp\x00\x19\xfaL\x1d"
          "a\x00M\x1dI\x01N\n\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.text[0], "ABCDEFGHIJKLMN\n");
}

static void test_feed_commands_end_lines(void **state)
{
    (void)state;
    struct got g;
    /* ESC d n and ESC J n print the line buffer; FF too */
    PARSE("one\x1b"
          "d\x02two\x1bJ\x10three\x0c"
          "four",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.text[0], "one\ntwo\nthree\nfour\n");
    assert_false(g.cut[0]);
}

static void test_codepages(void **state)
{
    (void)state;
    struct got g;
    /* CP437 0x9C = £, 0xAB = ½, 0xCD = ═; ESC t 19 (PC858) 0xD5 = €, 0x81 = ü;
     * ESC t 16 (WPC1252) 0x80 = €, 0xE9 = é; ESC t 2 (PC850) 0xD5 = ı;
     * ESC @ back to the default table. */
    PARSE("\x9c\xab\xcd\n\x1bt\x13\xd5\x81\n\x1bt\x10\x80\xe9\n\x1bt\x02\xd5\n\x1b@\x9c\n",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.text[0], "£½═\n€ü\n€é\nı\n£\n");
    /* The configured default applies after ESC @ */
    PARSE("\x1b@\xd5\n", TS_ESCPOS_CP858, &g);
    assert_string_equal(g.text[0], "€\n");
    /* An unknown table keeps the current one */
    PARSE("\x1bt\x13\x1bt\x63\xd5\n", TS_ESCPOS_CP437, &g);
    assert_string_equal(g.text[0], "€\n");
}

static void test_barcodes(void **state)
{
    (void)state;
    struct got g;
    /* GS k function A (m = 2 EAN13, NUL-terminated) and function B (m = 73
     * CODE128 with code sets B and C, "{{" a literal brace) */
    PARSE("x\n\x1dk\x02"
          "4006381333931\x00"
          "y\n\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.barcode[0], "4006381333931");
    assert_int_equal(g.barcode_type[0], 2);
    assert_string_equal(g.text[0], "x\ny\n");
    PARSE("\x1dkI\x0c{BAB{{{C\x0c\x22\x00\x63"
          "z\n\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.barcode[0], "AB{12340099");
    assert_string_equal(g.text[0], "z\n");
    /* GS k function B with other symbologies keeps the bytes (m = 69 CODE39) */
    PARSE("\x1dkE\x04"
          "AB12\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_string_equal(g.barcode[0], "AB12");
}

static void test_qr_and_2d(void **state)
{
    (void)state;
    struct got g;
    /* GS ( k: size (fn 67), error level (fn 69), store (fn 80), print (fn 81) */
    PARSE("a\n\x1d(k\x03\x00\x31\x43\x06\x1d(k\x03\x00\x31\x45\x31"
          "\x1d(k\x08\x00\x31\x50\x30hello\x1d(k\x03\x00\x31\x51\x30"
          "b\n\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.code2d[0], "hello");
    assert_string_equal(g.text[0], "a\nb\n");
}

static void test_images_skipped_exactly(void **state)
{
    (void)state;
    struct got g;
    /* GS v 0 with 2x2 bytes holding LF, ESC, GS, 'X'; ESC * 33 with n = 1
     * (3 bytes); GS ( L graphics (pL pH length); GS 8 L (32-bit length);
     * ESC & user-defined characters (y = 1, c1..c2 = 2 chars, x = 2 each) */
    PARSE("\x1dv0\x00\x02\x00\x02\x00\n\x1b\x1dX"
          "A\x1b*\x21\x01\x00\n\n\n"
          "B\x1d(L\x04\x00\x30\x45\n\n"
          "C\x1d"
          "8L\x03\x00\x00\x00\n\n\n"
          "D\x1b&\x01\x41\x42\x02\n\n\x02\n\n"
          "E\x1b"
          "D\x08\x10\x00"
          "F\n\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.text[0], "ABCDEF\n");
}

static void test_status_requests_are_not_text(void **state)
{
    (void)state;
    struct got g;
    /* DLE EOT n, DLE EOT 7 a, DLE ENQ n, DLE DC4 1 m t, GS r n, a lone DLE */
    PARSE("A\x10\x04\x01"
          "B\x10\x04\x07\x01"
          "C\x10\x05\x02"
          "D\x10\x14\x01\x00\x05"
          "E\x1dr\x01"
          "F\x10G\n\x1dV\x00",
          TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.text[0], "ABCDEFG\n");
}

static void test_other_cuts_and_empty_receipts(void **state)
{
    (void)state;
    struct got g;
    /* GS V 65 n, ESC i, ESC m; a cut with nothing printed is no receipt */
    PARSE("\x1dV\x00one\n\x1dV\x41\x03two\n\x1bithree\n\x1bm\n\n\x1dV\x00", TS_ESCPOS_CP437, &g);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.text[0], "one\n");
    assert_string_equal(g.text[1], "two\n");
    assert_string_equal(g.text[2], "three\n");
}

static void test_unknown_commands_counted(void **state)
{
    (void)state;
    struct ts_escpos *p = NULL;
    struct ts_escpos_stats st;
    struct got g = {0};
    assert_int_equal(ts_escpos_new(TS_ESCPOS_CP437, collect, &g, &p), TS_OK);
    ts_escpos_feed(p,
                   "\x1b\x7e\x01"
                   "A\x1d\x7e\x01"
                   "B\n",
                   9);
    ts_escpos_flush(p);
    ts_escpos_stats(p, &st);
    assert_int_equal(st.unknown, 2);
    assert_int_equal(st.bytes, 9);
    assert_int_equal(st.receipts, 1);
    assert_string_equal(g.text[0], "AB\n");
    ts_escpos_free(p);
    ts_escpos_free(NULL);
}

static void test_discard_drops_partial(void **state)
{
    (void)state;
    struct ts_escpos *p = NULL;
    struct got g = {0};
    assert_int_equal(ts_escpos_new(TS_ESCPOS_CP437, collect, &g, &p), TS_OK);
    ts_escpos_feed(p,
                   "half a receipt\n\x1dk\x02"
                   "12",
                   20);
    ts_escpos_discard(p);
    ts_escpos_feed(p, "next\n\x1dV\x00", 8);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.text[0], "next\n");
    assert_string_equal(g.barcode[0], "");
    ts_escpos_free(p);
}

/* ---- fixtures through the rules ------------------------------------------ */

struct fixture_ctx {
    const struct ts_receipt_rules *rules;
    json_t *purchase;
    int receipts;
};

static void to_purchase(void *ctx, const struct ts_escpos_receipt *r)
{
    struct fixture_ctx *fc = ctx;
    char err[256];
    fc->receipts++;
    json_decref(fc->purchase);
    fc->purchase = NULL;
    if (ts_receipt_rules_apply(fc->rules, r, 1795883835123LL, &fc->purchase, err, sizeof err) !=
        TS_OK)
        print_error("rules: %s\n", err);
}

static char *read_fixture(const char *name, size_t *len)
{
    char path[1024], *data = NULL;
    snprintf(path, sizeof path, "%s/%s", TS_ESCPOS_FIXTURES, name);
    assert_int_equal(ts_read_file(path, 1 << 20, &data, len), TS_OK);
    return data;
}

static void check_fixture(const char *style, size_t chunk)
{
    char name[64], sec[64], err[512];
    size_t len = 0, jlen = 0;
    struct ts_conf *conf = NULL;
    struct ts_receipt_rules *rules = NULL;
    struct ts_escpos *p = NULL;
    struct fixture_ctx fc = {0};
    char *bin, *js, *conf_text;
    json_t *expected;

    conf_text = read_fixture("rules.conf", &jlen);
    assert_int_equal(ts_conf_parse("rules.conf", conf_text, &conf, err, sizeof err), TS_OK);
    snprintf(sec, sizeof sec, "receipt.%s", style);
    if (ts_receipt_rules_load(conf, sec, &rules, err, sizeof err) != TS_OK)
        fail_msg("%s", err);
    fc.rules = rules;
    snprintf(name, sizeof name, "%s.bin", style);
    bin = read_fixture(name, &len);
    snprintf(name, sizeof name, "%s.json", style);
    js = read_fixture(name, &jlen);
    expected = json_loads(js, 0, NULL);
    assert_non_null(expected);

    assert_int_equal(ts_escpos_new(TS_ESCPOS_CP437, to_purchase, &fc, &p), TS_OK);
    for (size_t off = 0; off < len; off += chunk)
        ts_escpos_feed(p, bin + off, len - off < chunk ? len - off : chunk);
    ts_escpos_flush(p);
    assert_int_equal(fc.receipts, 1);
    assert_non_null(fc.purchase);
    assert_string_equal(json_string_value(json_object_get(fc.purchase, "at")),
                        "2026-11-28T16:37:15.123Z");
    json_object_del(fc.purchase, "at");
    if (!json_equal(fc.purchase, expected)) {
        char *a = json_dumps(fc.purchase, JSON_SORT_KEYS),
             *b = json_dumps(expected, JSON_SORT_KEYS);
        print_error("got      %s\nexpected %s\n", a, b);
        free(a);
        free(b);
        fail();
    }
    json_decref(fc.purchase);
    json_decref(expected);
    ts_escpos_free(p);
    ts_receipt_rules_free(rules);
    ts_conf_free(conf);
    free(bin);
    free(js);
    free(conf_text);
}

static void test_fixture_supermarket(void **state)
{
    (void)state;
    check_fixture("supermarket", 4096);
    check_fixture("supermarket", 1);
}

static void test_fixture_fashion(void **state)
{
    (void)state;
    check_fixture("fashion", 4096);
    check_fixture("fashion", 1);
    check_fixture("fashion", 7);
}

static void test_fixture_hardware(void **state)
{
    (void)state;
    check_fixture("hardware", 4096);
    check_fixture("hardware", 1);
}

static int rules_from(const char *text, struct ts_receipt_rules **out, char *err, size_t errsz)
{
    struct ts_conf *conf = NULL;
    int rc = ts_conf_parse("t.conf", text, &conf, err, errsz);
    if (rc == TS_OK)
        rc = ts_receipt_rules_load(conf, "r", out, err, errsz);
    ts_conf_free(conf);
    return rc;
}

static void test_rules_config_errors(void **state)
{
    (void)state;
    struct ts_receipt_rules *r = NULL;
    char err[512];
    assert_int_equal(
        rules_from("[r]\nreceipt_re = x\ntotal_re = y\ncurrency = EUR\n", &r, err, sizeof err),
        TS_ERR_CONFIG);
    assert_non_null(strstr(err, "item_re"));
    assert_int_equal(rules_from("[r]\nreceipt_re = (\n", &r, err, sizeof err), TS_ERR_CONFIG);
    assert_non_null(strstr(err, "t.conf:2: [r] receipt_re"));
    assert_int_equal(rules_from("[r]\nreceipt_re = a\ntotal_re = b\nitem_re = c\ncurrency = E\n",
                                &r, err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "currency"));
    assert_int_equal(rules_from("[r]\nreceipt_re = a\ntotal_re = b\nitem_re = (x)\n"
                                "currency = EUR\nitem_fields = name colour\n",
                                &r, err, sizeof err),
                     TS_ERR_CONFIG);
    assert_non_null(strstr(err, "colour"));
}

static void test_rules_not_a_sale(void **state)
{
    (void)state;
    struct ts_receipt_rules *r = NULL;
    char err[512];
    json_t *o = NULL;
    struct ts_escpos_receipt rc = {.text = "X REPORT\nTOTAL 10.00\n", .barcode = "", .code2d = ""};
    assert_int_equal(rules_from("[r]\nreceipt_re = ^No ([0-9]+)\ntotal_re = ^TOTAL (.*)\n"
                                "item_re = ^(.*) ([0-9.,]+)$\ncurrency = EUR\n",
                                &r, err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_receipt_rules_apply(r, &rc, 0, &o, err, sizeof err), TS_ERR_NOTFOUND);
    assert_non_null(strstr(err, "receipt number"));
    rc.text = "No 7\nTOTAL 10.00\n";
    assert_int_equal(ts_receipt_rules_apply(r, &rc, 0, &o, err, sizeof err), TS_ERR_NOTFOUND);
    assert_non_null(strstr(err, "no line items"));
    rc.text = "No 7\nTea 1,234.50\nTOTAL 1.234,50\n";
    assert_int_equal(ts_receipt_rules_apply(r, &rc, 0, &o, err, sizeof err), TS_OK);
    /* thousands marks either way round; the total line is not an item */
    assert_true(json_real_value(json_object_get(o, "total")) == 1234.5);
    assert_int_equal(json_array_size(json_object_get(o, "products")), 1);
    assert_null(json_object_get(o, "barcode"));
    json_decref(o);
    ts_receipt_rules_free(r);
}

/* A refund receipt (refund_re) is a return: its number the return_id, the
 * refunded sale's number (original_re) formatted like a receipt, amounts
 * positive; a sale under the same rules stays a sale. */
static void test_rules_refund(void **state)
{
    (void)state;
    struct ts_receipt_rules *r = NULL;
    char err[512];
    json_t *o = NULL;
    assert_int_equal(rules_from("[r]\nstore = 3\nterminal = 1\nreceipt_re = ^No ([0-9]+)\n"
                                "receipt_format = {store}-{terminal}-{receipt}\n"
                                "total_re = ^TOTAL (.*)\nitem_re = ^([A-Z]+) (-?[0-9.]+)$\n"
                                "currency = EUR\nrefund_re = ^REFUND$\n"
                                "original_re = ^Orig No ([0-9]+)$\n",
                                &r, err, sizeof err),
                     TS_OK);
    struct ts_escpos_receipt rc = {.text = "No 130\nREFUND\nOrig No 123\nHAT -19.00\n"
                                           "TOTAL -19.00\n",
                                   .barcode = "",
                                   .code2d = ""};
    assert_int_equal(ts_receipt_rules_apply(r, &rc, 0, &o, err, sizeof err), TS_OK);
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "return");
    assert_string_equal(json_string_value(json_object_get(o, "return_id")), "3-1-130");
    assert_string_equal(json_string_value(json_object_get(o, "original_receipt")), "3-1-123");
    assert_true(json_number_value(json_object_get(o, "total")) == 19.0);
    json_t *products = json_object_get(o, "products");
    assert_int_equal(json_array_size(products), 1); /* REFUND and Orig lines are no items */
    assert_true(json_number_value(json_object_get(json_array_get(products, 0), "price")) == 19.0);
    json_decref(o);
    rc.text = "No 131\nHAT 19.00\nTOTAL 19.00\n";
    assert_int_equal(ts_receipt_rules_apply(r, &rc, 0, &o, err, sizeof err), TS_OK);
    assert_null(json_object_get(o, "kind"));
    assert_null(json_object_get(o, "return_id"));
    json_decref(o);
    ts_receipt_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_lines_and_cut),
        cmocka_unit_test(test_styles_do_not_leak_into_text),
        cmocka_unit_test(test_feed_commands_end_lines),
        cmocka_unit_test(test_codepages),
        cmocka_unit_test(test_barcodes),
        cmocka_unit_test(test_qr_and_2d),
        cmocka_unit_test(test_images_skipped_exactly),
        cmocka_unit_test(test_status_requests_are_not_text),
        cmocka_unit_test(test_other_cuts_and_empty_receipts),
        cmocka_unit_test(test_unknown_commands_counted),
        cmocka_unit_test(test_discard_drops_partial),
        cmocka_unit_test(test_fixture_supermarket),
        cmocka_unit_test(test_fixture_fashion),
        cmocka_unit_test(test_fixture_hardware),
        cmocka_unit_test(test_rules_config_errors),
        cmocka_unit_test(test_rules_not_a_sale),
        cmocka_unit_test(test_rules_refund),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
