/*
 * libFuzzer target: the payment card guard (drivers/guard.c) over what enters
 * from outside as text — a purchase body (every string, ts_guard_json as
 * agent/purchase.c and hub/purchase_parse.c run it) and receipt text from
 * the tap (ts_receipt_guard as drivers/escpos_relay.c runs it). The first
 * byte picks which. Beyond "no crash", it checks the promise with an oracle
 * of its own, simpler than the guard: in what would be stored (a body not
 * refused, a receipt's masked text) no run of digits holds a Luhn-valid
 * 13..19 digit number (from a non-zero digit; every window of a run longer
 * than 19), other than a 13-digit run that is an EAN-13 or a text that is a
 * whole UUID / hex digest (guard.h), and no track 1 / track 2 shape is left.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escpos.h"
#include "escpos_rules.h"
#include "guard.h"
#include "symbology.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "fuzz_guard: %s in \"%.*s\"\n", what, (int)(n > 300 ? 300 : n), s);
    abort();
}

static bool dg(char c)
{
    return c >= '0' && c <= '9';
}

static bool luhn(const char *d, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)(d[n - 1 - i] - '0');
        if (i % 2) {
            v *= 2;
            v = v > 9 ? v - 9 : v;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

static bool whole_key(const char *s, size_t n)
{
    bool letter = false;
    if (n != 32 && n != 36 && n != 40 && n != 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (n == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (c != '-')
                return false;
        } else if (dg(c)) {
        } else if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
            letter = true;
        } else {
            return false;
        }
    }
    return letter;
}

/* whole_key, or "<lowercase word>:" + whole_key (a journal key). */
static bool journal_key(const char *s, size_t n)
{
    size_t w = 0;
    while (w < n && w < 16 && s[w] >= 'a' && s[w] <= 'z')
        w++;
    return (w > 0 && w < n && s[w] == ':' && whole_key(s + w + 1, n - w - 1)) || whole_key(s, n);
}

/* The oracle: aborts if s[0..n) still holds a card number. */
static void clean(const char *s, size_t n)
{
    if (journal_key(s, n))
        return;
    for (size_t i = 0; i < n;) {
        if (!dg(s[i])) {
            i++;
            continue;
        }
        size_t e = i;
        while (e < n && dg(s[e]))
            e++;
        size_t len = e - i;
        if (len >= 12 && len <= 19 && e < n && (s[e] == '^' || s[e] == '='))
            if (s[e] == '^' ||
                (e + 4 < n && dg(s[e + 1]) && dg(s[e + 2]) && dg(s[e + 3]) && dg(s[e + 4])))
                die("track data survived", s, n);
        if (len <= 19) {
            size_t a = i;
            while (a < e && s[a] == '0')
                a++;
            if (e - a >= 13 && luhn(s + a, e - a) && !(len == 13 && ts_gs1_check_ok(s + i, 13)))
                die("card number survived", s, n);
        } else {
            for (size_t a = i; a + 13 <= e; a++)
                for (size_t l = 13; l <= 19 && a + l <= e; l++)
                    if (s[a] != '0' && luhn(s + a, l))
                        die("card number inside a long run survived", s, n);
        }
        i = e;
    }
}

static void clean_json(json_t *v)
{
    if (json_is_string(v)) {
        clean(json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) clean_json(e);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            clean(k, strlen(k));
            clean_json(e);
        }
    }
}

static void body(const uint8_t *data, size_t size)
{
    static const char *const idents[] = {
        "receipt", "barcode", "customer.code", "products[].sku", "products[].product_id", NULL};
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!doc)
        return;
    json_t *refused = json_array();
    struct ts_guard_json_report rep;
    int rc = ts_guard_json(NULL, doc, idents, refused, &rep);
    if (rc == 0 && rep.refused == 0)
        clean_json(doc); /* what the agent would build its event from */
    else if (json_array_size(refused) == 0)
        die("refused without naming a field", "", 0);
    json_decref(refused);
    json_decref(doc);
}

static void receipt(const uint8_t *data, size_t size)
{
    /* text up to the first NUL, barcode after it (as the parser hands them) */
    char *copy = malloc(size + 1);
    if (!copy)
        return;
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t tl = strlen(copy);
    struct ts_escpos_receipt rc = {.text = copy,
                                   .text_len = tl,
                                   .barcode = tl < size ? copy + tl + 1 : "",
                                   .barcode_type = 73,
                                   .code2d = "",
                                   .code2d_type = -1};
    struct ts_receipt_guarded gr;
    if (ts_receipt_guard(NULL, &rc, &gr) == 0) {
        if (gr.r.text_len != tl)
            die("masking changed the length", copy, tl);
        for (size_t i = 0; i < tl;) { /* line by line, as the rules read it */
            size_t e = i;
            while (e < tl && gr.r.text[e] != '\n')
                e++;
            clean(gr.r.text + i, e - i);
            i = e + 1;
        }
        clean(gr.r.barcode, strlen(gr.r.barcode));
        ts_receipt_guarded_free(&gr);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        body(data + 1, size - 1);
    else
        receipt(data + 1, size - 1);
    return 0;
}
