/*
 * Receipt rules (escpos_rules.h). Each rule is a POSIX extended regex
 * (regcomp(3), REG_EXTENDED) applied line by line to the receipt text; the
 * first capture group is the value (the whole match when the regex has no
 * group). Item rules map several groups to fields by name.
 */
#include "escpos_rules.h"
#include "ts.h"

#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum field { F_SKIP, F_SKU, F_NAME, F_QTY, F_PRICE, F_MAX };
#define MAX_GROUPS 9

struct rule {
    bool set;
    regex_t re;
};

struct ts_receipt_rules {
    char store[64], terminal[64], currency[4];
    char receipt_format[128];
    char decimal; /* 0 = auto */
    bool price_is_line;
    int barcode_from; /* 0 = code then 2D, 1 = code, 2 = 2D, 3 = none */
    struct rule store_re, terminal_re, receipt_re, total_re, tax_re, discount_re, currency_re,
        loyalty_re, item_re, qty_re, skip_re, refund_re, original_re;
    struct rule coupon_re; /* an offer's code printed on the receipt (issue 18) */
    enum field item_fields[MAX_GROUPS], qty_fields[MAX_GROUPS];
};

static void rule_free(struct rule *r)
{
    if (r->set)
        regfree(&r->re);
    r->set = false;
}

void ts_receipt_rules_free(struct ts_receipt_rules *r)
{
    if (!r)
        return;
    struct rule *all[] = {&r->store_re,   &r->terminal_re, &r->receipt_re,  &r->total_re,
                          &r->tax_re,     &r->discount_re, &r->currency_re, &r->loyalty_re,
                          &r->item_re,    &r->qty_re,      &r->skip_re,     &r->refund_re,
                          &r->original_re};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        rule_free(all[i]);
    rule_free(&r->coupon_re);
    free(r);
}

static enum ts_err compile(const struct ts_conf *conf, const char *sec, const char *key,
                           struct rule *r, char *err, size_t errsz)
{
    const char *v = ts_conf_get(conf, sec, key, NULL);
    char msg[256];
    int rc;
    if (!v || !*v)
        return TS_OK;
    rc = regcomp(&r->re, v, REG_EXTENDED);
    if (rc != 0) {
        regerror(rc, &r->re, msg, sizeof msg);
        ts_conf_errf(conf, sec, key, err, errsz, "bad regular expression: %s", msg);
        return TS_ERR_CONFIG;
    }
    r->set = true;
    return TS_OK;
}

/* "sku name qty price" (or with commas): one name per capture group, "-"
 * for a group to ignore. */
static enum ts_err parse_fields(const struct ts_conf *conf, const char *sec, const char *key,
                                const char *def, enum field *out, char *err, size_t errsz)
{
    const char *v = ts_conf_get(conf, sec, key, def);
    char buf[256], *save = NULL;
    int i = 0;
    bool have_name = false, have_price = false;
    ts_strlcpy(buf, v, sizeof buf);
    for (char *t = strtok_r(buf, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
        enum field f;
        if (!strcmp(t, "sku"))
            f = F_SKU;
        else if (!strcmp(t, "name"))
            f = F_NAME;
        else if (!strcmp(t, "qty") || !strcmp(t, "quantity"))
            f = F_QTY;
        else if (!strcmp(t, "price"))
            f = F_PRICE;
        else if (!strcmp(t, "-"))
            f = F_SKIP;
        else {
            ts_conf_errf(conf, sec, key, err, errsz,
                         "unknown field \"%s\" (sku, name, qty, price, -)", t);
            return TS_ERR_CONFIG;
        }
        if (i == MAX_GROUPS) {
            ts_conf_errf(conf, sec, key, err, errsz, "at most %d groups", MAX_GROUPS);
            return TS_ERR_CONFIG;
        }
        have_name |= f == F_NAME;
        have_price |= f == F_PRICE;
        out[i++] = f;
    }
    if (!strcmp(key, "item_fields") && (!have_name || !have_price)) {
        ts_conf_errf(conf, sec, key, err, errsz, "needs at least name and price");
        return TS_ERR_CONFIG;
    }
    return TS_OK;
}

enum ts_err ts_receipt_rules_load(const struct ts_conf *conf, const char *sec,
                                  struct ts_receipt_rules **out, char *err, size_t errsz)
{
    struct ts_receipt_rules *r = calloc(1, sizeof *r);
    const char *v;
    int rc = TS_ERR_CONFIG;
    if (!r)
        return TS_ERR_NOMEM;
    ts_strlcpy(r->store, ts_conf_get(conf, sec, "store", ""), sizeof r->store);
    ts_strlcpy(r->terminal, ts_conf_get(conf, sec, "terminal", ""), sizeof r->terminal);
    ts_strlcpy(r->receipt_format, ts_conf_get(conf, sec, "receipt_format", "{receipt}"),
               sizeof r->receipt_format);
    v = ts_conf_get(conf, sec, "currency", "");
    if (*v && (strlen(v) != 3 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z' ||
               v[2] < 'A' || v[2] > 'Z')) {
        ts_conf_errf(conf, sec, "currency", err, errsz, "an ISO 4217 code like EUR");
        goto out;
    }
    ts_strlcpy(r->currency, v, sizeof r->currency);
    v = ts_conf_get(conf, sec, "decimal", "");
    if (*v && strcmp(v, ",") && strcmp(v, ".")) {
        ts_conf_errf(conf, sec, "decimal", err, errsz, "\",\" or \".\"");
        goto out;
    }
    r->decimal = *v;
    v = ts_conf_get(conf, sec, "item_price", "line");
    if (strcmp(v, "line") && strcmp(v, "unit")) {
        ts_conf_errf(conf, sec, "item_price", err, errsz, "\"line\" or \"unit\"");
        goto out;
    }
    r->price_is_line = !strcmp(v, "line");
    v = ts_conf_get(conf, sec, "barcode_from", "any");
    if (!strcmp(v, "any"))
        r->barcode_from = 0;
    else if (!strcmp(v, "barcode"))
        r->barcode_from = 1;
    else if (!strcmp(v, "2d"))
        r->barcode_from = 2;
    else if (!strcmp(v, "none"))
        r->barcode_from = 3;
    else {
        ts_conf_errf(conf, sec, "barcode_from", err, errsz, "any, barcode, 2d or none");
        goto out;
    }
    if ((rc = compile(conf, sec, "store_re", &r->store_re, err, errsz)) ||
        (rc = compile(conf, sec, "terminal_re", &r->terminal_re, err, errsz)) ||
        (rc = compile(conf, sec, "receipt_re", &r->receipt_re, err, errsz)) ||
        (rc = compile(conf, sec, "total_re", &r->total_re, err, errsz)) ||
        (rc = compile(conf, sec, "tax_re", &r->tax_re, err, errsz)) ||
        (rc = compile(conf, sec, "discount_re", &r->discount_re, err, errsz)) ||
        (rc = compile(conf, sec, "currency_re", &r->currency_re, err, errsz)) ||
        (rc = compile(conf, sec, "loyalty_re", &r->loyalty_re, err, errsz)) ||
        (rc = compile(conf, sec, "item_re", &r->item_re, err, errsz)) ||
        (rc = compile(conf, sec, "qty_re", &r->qty_re, err, errsz)) ||
        (rc = compile(conf, sec, "skip_re", &r->skip_re, err, errsz)) ||
        (rc = compile(conf, sec, "coupon_re", &r->coupon_re, err, errsz)) ||
        (rc = compile(conf, sec, "refund_re", &r->refund_re, err, errsz)) ||
        (rc = compile(conf, sec, "original_re", &r->original_re, err, errsz)) ||
        (rc = parse_fields(conf, sec, "item_fields", "name price", r->item_fields, err, errsz)) ||
        (rc = parse_fields(conf, sec, "qty_fields", "qty price", r->qty_fields, err, errsz)))
        goto out;
    rc = TS_ERR_CONFIG;
    {
        const char *missing = !r->receipt_re.set                       ? "receipt_re"
                              : !r->total_re.set                       ? "total_re"
                              : !r->item_re.set                        ? "item_re"
                              : (!*r->currency && !r->currency_re.set) ? "currency"
                                                                       : NULL;
        if (missing) {
            ts_conf_errf(conf, sec, missing, err, errsz,
                         "required for a receipt tap (see OPERATIONS.md)");
            goto out;
        }
    }
    *out = r;
    r = NULL;
    rc = TS_OK;
out:
    ts_receipt_rules_free(r);
    return rc;
}

/* Copies group g of the match (whole match when the regex has no groups,
 * i.e. g == 1 and re_nsub == 0), trimmed of blanks. */
static void group(const struct rule *r, const char *line, const regmatch_t *m, size_t g, char *out,
                  size_t outsz)
{
    size_t idx = r->re.re_nsub == 0 ? 0 : g;
    size_t len;
    const char *s;
    out[0] = '\0';
    if (idx > r->re.re_nsub || m[idx].rm_so < 0)
        return;
    s = line + m[idx].rm_so;
    len = (size_t)(m[idx].rm_eo - m[idx].rm_so);
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= outsz)
        len = outsz - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

static bool match(const struct rule *r, const char *line, regmatch_t *m)
{
    return r->set && regexec(&r->re, line, MAX_GROUPS + 1, m, 0) == 0;
}

/*
 * "1.234,56", "1,234.56", "12,50", "-3.00", "3.00-" (a trailing minus is
 * how many POS print a discount). The decimal separator is the configured
 * one, else the last '.' or ',' in the number; other separators are
 * thousands marks.
 */
static bool parse_amount(const char *s, char dec, double *out)
{
    char digits[64];
    size_t n = 0;
    bool neg = false, any = false;
    const char *last = NULL;
    if (!dec) {
        for (const char *q = s; *q; q++)
            if (*q == '.' || *q == ',')
                last = q;
    }
    for (const char *q = s; *q; q++) {
        if (*q >= '0' && *q <= '9') {
            if (n + 2 >= sizeof digits)
                return false;
            digits[n++] = *q;
            any = true;
        } else if (*q == '-') {
            neg = true;
        } else if (*q == '.' || *q == ',') {
            if ((dec && *q == dec) || (!dec && q == last)) {
                if (n + 2 >= sizeof digits)
                    return false;
                digits[n++] = '.';
            }
        } else if (*q != ' ' && *q != '+') {
            return false;
        }
    }
    if (!any)
        return false;
    digits[n] = '\0';
    *out = strtod(digits, NULL) * (neg ? -1 : 1);
    return isfinite(*out);
}

static double money(double v)
{
    return round(v * 100.0) / 100.0;
}

static json_t *number(double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        return json_integer((json_int_t)v);
    return json_real(v);
}

/* The first line a rule matches gives its value. */
static void first_value(const struct rule *r, const char *text, char *out, size_t outsz)
{
    char line[1024];
    regmatch_t m[MAX_GROUPS + 1];
    const char *p = text;
    out[0] = '\0';
    if (!r->set)
        return;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        ts_strlcpy(line, p, len + 1 < sizeof line ? len + 1 : sizeof line);
        if (match(r, line, m)) {
            group(r, line, m, 1, out, outsz);
            return;
        }
        p += len + (nl ? 1 : 0);
    }
}

/* coupon_re: the code of an offer redeemed with this sale (its first group,
 * 1..64 printable characters) as "coupons": [code]; the agent redeems it at
 * the hub once the purchase is recorded (PROTOCOL.md "Offers"). */
static void add_coupon(const struct ts_receipt_rules *r, const char *text, json_t *o)
{
    char val[256];
    first_value(&r->coupon_re, text, val, sizeof val);
    size_t n = strlen(val);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)val[i] > 0x20 && (unsigned char)val[i] < 0x7f;
    if (ok)
        json_object_set_new(o, "coupons", json_pack("[s]", val));
}

static void format_receipt(const struct ts_receipt_rules *r, const char *store,
                           const char *terminal, const char *num, char *out, size_t outsz)
{
    ts_buf b = {0};
    for (const char *f = r->receipt_format; *f; f++) {
        if (!strncmp(f, "{store}", 7)) {
            ts_buf_puts(&b, store);
            f += 6;
        } else if (!strncmp(f, "{terminal}", 10)) {
            ts_buf_puts(&b, terminal);
            f += 9;
        } else if (!strncmp(f, "{receipt}", 9)) {
            ts_buf_puts(&b, num);
            f += 8;
        } else {
            ts_buf_append(&b, f, 1);
        }
    }
    ts_strlcpy(out, b.data ? b.data : "", outsz);
    ts_buf_free(&b);
}

/* Line items: item_re lines, each optionally followed by a qty_re line
 * ("2 x 1.29") that sets the quantity and unit price of the item above.
 * Lines any single-value rule or skip_re matches are never items. */
static enum ts_err items(const struct ts_receipt_rules *r, const char *text, json_t *products)
{
    char line[1024], val[256];
    regmatch_t m[MAX_GROUPS + 1];
    const struct rule *other[] = {&r->store_re, &r->terminal_re, &r->receipt_re,  &r->total_re,
                                  &r->tax_re,   &r->discount_re, &r->currency_re, &r->loyalty_re,
                                  &r->skip_re,  &r->refund_re,   &r->original_re, &r->coupon_re};
    json_t *last = NULL;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        bool skip = false;
        ts_strlcpy(line, p, len + 1 < sizeof line ? len + 1 : sizeof line);
        p += len + (nl ? 1 : 0);
        if (!line[0])
            continue;
        if (last && match(&r->qty_re, line, m)) {
            double qty = 1, price = NAN;
            for (size_t g = 0; g < MAX_GROUPS && g < r->qty_re.re.re_nsub; g++) {
                group(&r->qty_re, line, m, g + 1, val, sizeof val);
                if (r->qty_fields[g] == F_QTY)
                    parse_amount(val, r->decimal, &qty);
                else if (r->qty_fields[g] == F_PRICE)
                    parse_amount(val, r->decimal, &price);
            }
            json_object_set_new(last, "quantity", number(qty));
            if (!isnan(price))
                json_object_set_new(last, "price", number(money(price)));
            last = NULL;
            continue;
        }
        for (size_t i = 0; i < sizeof other / sizeof other[0] && !skip; i++)
            skip = match(other[i], line, m);
        if (skip || !match(&r->item_re, line, m))
            continue;
        {
            double qty = 1, price = NAN;
            json_t *it = json_object();
            if (!it)
                return TS_ERR_NOMEM;
            for (size_t g = 0; g < MAX_GROUPS && g < r->item_re.re.re_nsub; g++) {
                group(&r->item_re, line, m, g + 1, val, sizeof val);
                switch (r->item_fields[g]) {
                case F_SKU:
                    if (val[0])
                        json_object_set_new(it, "sku", json_string(val));
                    break;
                case F_NAME:
                    json_object_set_new(it, "name", json_string(val));
                    break;
                case F_QTY:
                    if (!parse_amount(val, r->decimal, &qty) || qty == 0)
                        qty = 1;
                    break;
                case F_PRICE:
                    parse_amount(val, r->decimal, &price);
                    break;
                default:
                    break;
                }
            }
            if (isnan(price) || !json_object_get(it, "name")) {
                json_decref(it);
                continue;
            }
            /* The purchase contract wants an sku or product_id per line; a
             * receipt that prints none names the item by what it prints. */
            if (!json_object_get(it, "sku"))
                json_object_set(it, "sku", json_object_get(it, "name"));
            if (r->price_is_line)
                price /= qty;
            json_object_set_new(it, "quantity", number(qty));
            json_object_set_new(it, "price", number(money(price)));
            json_array_append_new(products, it);
            last = it;
        }
    }
    return TS_OK;
}

/* Does any line of text match rule? */
static bool first_line(const struct rule *rule, const char *text)
{
    char line[1024];
    regmatch_t m[MAX_GROUPS + 1];
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        if (match(rule, line, m))
            return true;
        p = nl ? nl + 1 : p + len;
    }
    return false;
}

/* A refund receipt becomes the body of POST /api/v1/returns: its own number
 * is the return's id, original_re's value (formatted like the receipt)
 * names the sale it refunds; lines count what came back, positive. */
static void as_return(const struct ts_receipt_rules *r, const char *store, const char *terminal,
                      const char *text, json_t *o)
{
    char num[128], original[192];
    json_object_set_new(o, "kind", json_string("return"));
    json_object_set(o, "return_id", json_object_get(o, "receipt"));
    first_value(&r->original_re, text, num, sizeof num);
    if (num[0]) {
        format_receipt(r, store, terminal, num, original, sizeof original);
        json_object_set_new(o, "original_receipt", json_string(original));
    }
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(o, "products"), i, it)
    {
        static const char *const keys[] = {"quantity", "price"};
        for (size_t k = 0; k < 2; k++) {
            json_t *v = json_object_get(it, keys[k]);
            if (json_is_number(v) && json_number_value(v) < 0)
                json_object_set_new(it, keys[k], number(-json_number_value(v)));
        }
    }
}

enum ts_err ts_receipt_rules_apply(const struct ts_receipt_rules *r,
                                   const struct ts_escpos_receipt *rc, int64_t wall_ms,
                                   json_t **out, char *err, size_t errsz)
{
    char store[64], terminal[64], num[128], receipt[192], cur[64], val[128], at[40];
    double total, amount;
    json_t *o = NULL, *products = NULL;
    int ret = TS_ERR_NOTFOUND;
    const char *text = rc->text;

    first_value(&r->store_re, text, store, sizeof store);
    if (!store[0])
        ts_strlcpy(store, r->store, sizeof store);
    first_value(&r->terminal_re, text, terminal, sizeof terminal);
    if (!terminal[0])
        ts_strlcpy(terminal, r->terminal, sizeof terminal);
    first_value(&r->receipt_re, text, num, sizeof num);
    if (!num[0]) {
        ts_errf(err, errsz, "no receipt number (receipt_re matched no line)");
        goto out;
    }
    format_receipt(r, store, terminal, num, receipt, sizeof receipt);
    /* A refund receipt (refund_re matched a line) prints its amounts
     * negative or not: they are what went back, as positive amounts. */
    bool refund = r->refund_re.set && first_line(&r->refund_re, text);
    first_value(&r->total_re, text, val, sizeof val);
    bool got_total = parse_amount(val, r->decimal, &total);
    if (got_total && refund)
        total = fabs(total);
    if (!got_total || total < 0) {
        ts_errf(err, errsz, "receipt %s: no total (total_re matched no line with an amount)",
                receipt);
        goto out;
    }
    first_value(&r->currency_re, text, cur, sizeof cur);
    if (!strcmp(cur, "\xE2\x82\xAC")) /* U+20AC EURO SIGN as printed */
        ts_strlcpy(cur, "EUR", sizeof cur);
    else if (!strcmp(cur, "\xC2\xA3")) /* U+00A3 POUND SIGN */
        ts_strlcpy(cur, "GBP", sizeof cur);
    else if (!strcmp(cur, "$"))
        ts_strlcpy(cur, "USD", sizeof cur);
    if (!cur[0])
        ts_strlcpy(cur, r->currency, sizeof cur);
    if (strlen(cur) != 3) {
        ts_errf(err, errsz, "receipt %s: no currency", receipt);
        goto out;
    }
    ret = TS_ERR_NOMEM;
    if (!(o = json_object()) || !(products = json_array()))
        goto out;
    if ((ret = items(r, text, products)) != TS_OK)
        goto out;
    if (json_array_size(products) == 0) {
        ts_errf(err, errsz, "receipt %s: no line items (item_re matched no line)", receipt);
        ret = TS_ERR_NOTFOUND;
        goto out;
    }
    json_object_set_new(o, "receipt", json_string(receipt));
    json_object_set_new(o, "currency", json_string(cur));
    json_object_set_new(o, "total", number(money(total)));
    first_value(&r->tax_re, text, val, sizeof val);
    if (parse_amount(val, r->decimal, &amount))
        json_object_set_new(o, "tax", number(money(amount)));
    first_value(&r->discount_re, text, val, sizeof val);
    if (parse_amount(val, r->decimal, &amount))
        json_object_set_new(o, "discount", number(money(fabs(amount))));
    ts_iso8601(wall_ms, at, sizeof at);
    json_object_set_new(o, "at", json_string(at));
    json_object_set(o, "products", products);
    first_value(&r->loyalty_re, text, val, sizeof val);
    if (val[0]) {
        json_t *c = json_object();
        json_object_set_new(c, "code", json_string(val));
        json_object_set_new(o, "customer", c);
    }
    add_coupon(r, text, o);
    if ((r->barcode_from == 0 || r->barcode_from == 1) && rc->barcode[0])
        json_object_set_new(o, "barcode", json_string(rc->barcode));
    else if ((r->barcode_from == 0 || r->barcode_from == 2) && rc->code2d[0])
        json_object_set_new(o, "barcode", json_string(rc->code2d));
    if (store[0])
        json_object_set_new(o, "store", json_string(store));
    if (terminal[0])
        json_object_set_new(o, "terminal", json_string(terminal));
    if (refund)
        as_return(r, store, terminal, text, o);
    *out = o;
    o = NULL;
    ret = TS_OK;
out:
    json_decref(products);
    json_decref(o);
    return ret;
}

enum ts_err ts_receipt_guard(const struct ts_guard *g, const struct ts_escpos_receipt *in,
                             struct ts_receipt_guarded *out)
{
    memset(out, 0, sizeof *out);
    out->r = *in;
    out->text = malloc(in->text_len + 1);
    if (!out->text)
        return TS_ERR_NOMEM;
    memcpy(out->text, in->text, in->text_len);
    out->text[in->text_len] = '\0';
    out->r.text = out->text;
    /* Line by line, as the rules read it: a number never spans two lines. */
    unsigned line = 1;
    for (size_t i = 0; i < in->text_len; line++) {
        size_t e = i;
        while (e < in->text_len && out->text[e] != '\n')
            e++;
        struct ts_guard_hit h;
        size_t k = ts_guard_mask(g, out->text + i, e - i, &h);
        if (k && out->hits == 0) {
            out->first = h;
            out->first_line = line;
        }
        out->hits += k;
        i = e + 1;
    }
    /* A printed code that is card data is not the receipt's barcode. */
    const char **codes[] = {&out->r.barcode, &out->r.code2d};
    for (size_t c = 0; c < 2; c++) {
        const char *v = *codes[c];
        struct ts_guard_hit h;
        if (!v || !*v || ts_guard_find(g, v, strlen(v), &h) == TS_GUARD_PASS ||
            (ts_guard_check(g, "", v, strlen(v)) == TS_GUARD_PASS))
            continue;
        if (out->hits++ == 0) {
            out->first = h;
            out->first_line = 0;
        }
        *codes[c] = "";
    }
    return TS_OK;
}

void ts_receipt_guarded_free(struct ts_receipt_guarded *gr)
{
    if (!gr || !gr->text)
        return;
    explicit_bzero(gr->text, gr->r.text_len);
    free(gr->text);
    gr->text = NULL;
}
