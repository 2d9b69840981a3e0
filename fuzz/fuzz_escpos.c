/* libFuzzer target: the ESC/POS receipt parser and the receipt rules on
 * hostile printer streams. Checks the promises the relay relies on, not
 * only that nothing crashes: the receipts do not depend on how the stream
 * was split into reads (fed whole, then split at a point the input picks),
 * receipt text is valid UTF-8 within the caps, and a purchase the rules make
 * always has a receipt, a currency, a total >= 0 and at least one product. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conf.h"
#include "escpos.h"
#include "escpos_rules.h"
#include "ts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Rules in the style of tests/fixtures/escpos/rules.conf. */
static const char rules_conf[] =
    "[r]\n"
    "store_re = ^Str ([0-9]+)\n"
    "terminal_re = Reg ([0-9]+)\n"
    "receipt_re = Rcpt ([0-9]+)\n"
    "receipt_format = {store}-{terminal}-{receipt}\n"
    "item_re = ^([A-Z][^@]*[^ @]) +(([0-9]+) @ [0-9.]+ +)?([0-9.,]+-?)$\n"
    "item_fields = name - qty price\n"
    "qty_re = ^ +([0-9]+) x ([0-9]+,[0-9]{2})$\n"
    "total_re = ^TOTAL +([0-9.,]+)$\n"
    "tax_re = ^TAX [0-9]+% +([0-9.,]+)$\n"
    "discount_re = ^OFF (.*)$\n"
    "loyalty_re = ^Rewards: ([0-9]+)\n"
    "currency_re = ^CUR ([A-Z]{3}|€)\n"
    "currency = USD\n";

static struct ts_receipt_rules *rules;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct ts_conf *conf = NULL;
    char err[256];
    (void)argc;
    (void)argv;
    ts_log_set_level(TS_LOG_ERROR);
    if (ts_conf_parse("fuzz.conf", rules_conf, &conf, err, sizeof err) != TS_OK ||
        ts_receipt_rules_load(conf, "r", &rules, err, sizeof err) != TS_OK)
        abort();
    ts_conf_free(conf);
    return 0;
}

static bool valid_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : 9;
        if (k == 9 || i + k >= n + (k ? 0 : 1))
            return false;
        for (size_t j = 1; j <= k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80)
                return false;
        i += k + 1;
    }
    return true;
}

static void on_receipt(void *ctx, const struct ts_escpos_receipt *r)
{
    ts_buf *log = ctx;
    json_t *p = NULL;
    char err[256];
    if (strlen(r->text) != r->text_len || r->text_len > TS_ESCPOS_TEXT_MAX ||
        !valid_utf8(r->text, r->text_len) || strlen(r->barcode) > TS_ESCPOS_CODE_MAX ||
        strlen(r->code2d) > TS_ESCPOS_CODE_MAX)
        abort();
    ts_buf_printf(log, "%d|%s|%d|%s|%d|%d|", r->cut, r->barcode, r->barcode_type, r->code2d,
                  r->code2d_type, r->truncated);
    ts_buf_append(log, r->text, r->text_len);
    if (ts_receipt_rules_apply(rules, r, 0, &p, err, sizeof err) == TS_OK) {
        json_t *products = json_object_get(p, "products");
        const char *cur = json_string_value(json_object_get(p, "currency"));
        char *s;
        if (!json_string_value(json_object_get(p, "receipt")) || !cur || strlen(cur) != 3 ||
            json_number_value(json_object_get(p, "total")) < 0 || json_array_size(products) < 1)
            abort();
        s = json_dumps(p, 0);
        if (!s)
            abort();
        free(s);
        json_decref(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ts_buf whole = {0}, split = {0};
    struct ts_escpos *p = NULL;
    size_t cut_at;
    enum ts_escpos_cp cp;
    if (size < 2)
        return 0;
    cp = data[0] & 1 ? TS_ESCPOS_CP858 : TS_ESCPOS_CP437;
    cut_at = data[1] % size;
    data += 2;
    size -= 2;
    if (cut_at > size)
        cut_at = size;

    if (ts_escpos_new(cp, on_receipt, &whole, &p) != TS_OK)
        abort();
    ts_escpos_feed(p, data, size);
    ts_escpos_flush(p);
    ts_escpos_free(p);

    if (ts_escpos_new(cp, on_receipt, &split, &p) != TS_OK)
        abort();
    ts_escpos_feed(p, data, cut_at);
    ts_escpos_feed(p, data + cut_at, size - cut_at);
    ts_escpos_flush(p);
    ts_escpos_free(p);

    if (whole.len != split.len || (whole.len && memcmp(whole.data, split.data, whole.len)))
        abort();
    ts_buf_free(&whole);
    ts_buf_free(&split);
    return 0;
}
