/*
 * agent/purchase.c and the uploader's back-off: what the POS (or the receipt
 * tap) hands in, what is refused and why, and the Segment event that ends up
 * in the outbox.
 */
#include "agent.h"
#include "purchase.h"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_fx.h"

struct fx {
    char dir[64];
    struct ts_agent *a;
    struct ts_purch *p; /* the purchases handle, as `tillside run` makes it */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->a = ts_test_agent_open(f->dir, "/tmp/ts-purchase-test-XXXXXX");
    char err[256];
    assert_int_equal(ts_purchase_open(f->a, &f->p, err, sizeof err), TS_OK);
    ts_agent_set_journal(f->a, f->p->ob);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ts_purchase_close(f->p);
    ts_agent_close(f->a);
    ts_test_rm_tree(f->dir);
    free(f);
    return 0;
}

static json_t *body(const char *text)
{
    json_error_t e;
    json_t *o = json_loads(text, 0, &e);
    if (!o)
        fail_msg("test JSON: %s", e.text);
    return o;
}

static const char good[] =
    "{\"receipt\": \"S001-T01-000123\", \"currency\": \"eur\", \"total\": 59.90, \"tax\": 9.56,"
    " \"discount\": 0, \"at\": \"2026-11-28T16:37:15Z\", \"products\": [{\"sku\": \"SKU-JKT-7\","
    " \"name\": \"Rain Jacket\", \"quantity\": 1, \"price\": 59.90}]}";

static void submit_records_segment_event(void **state)
{
    struct fx *f = *state;
    char mid[64], mid2[64], err[256], st[8];
    bool dup = true;
    json_t *p = body(good);
    assert_int_equal(ts_agent_purchase_submit(f->p, "api", p, mid, &dup, err, sizeof err), TS_OK);
    assert_false(dup);
    assert_int_equal(strlen(mid), 36); /* a UUID */
    /* the receipt tap printing the same receipt: one purchase, the first id */
    assert_int_equal(ts_agent_purchase_submit(f->p, "escpos:front", p, mid2, &dup, err, sizeof err),
                     TS_OK);
    assert_true(dup);
    assert_string_equal(mid, mid2);
    json_decref(p);

    char *text = NULL;
    assert_int_equal(ts_outbox_find_receipt(f->p->ob, "S001-T01-000123", &text, st), TS_OK);
    assert_string_equal(st, "pending");
    json_t *ev = body(text);
    free(text);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "track");
    assert_string_equal(json_string_value(json_object_get(ev, "event")), "Order Completed");
    assert_string_equal(json_string_value(json_object_get(ev, "messageId")), mid);
    assert_string_equal(json_string_value(json_object_get(ev, "anonymousId")), "S001:T01");
    assert_string_equal(json_string_value(json_object_get(ev, "originalTimestamp")),
                        "2026-11-28T16:37:15.000Z");
    json_t *pr = json_object_get(ev, "properties");
    assert_string_equal(json_string_value(json_object_get(pr, "order_id")), "S001-T01-000123");
    assert_string_equal(json_string_value(json_object_get(pr, "currency")), "EUR");
    assert_float_equal(json_number_value(json_object_get(pr, "total")), 59.90, 1e-9);
    assert_float_equal(json_number_value(json_object_get(pr, "revenue")), 50.34, 1e-9);
    json_t *l = json_array_get(json_object_get(pr, "products"), 0);
    assert_string_equal(json_string_value(json_object_get(l, "product_id")), "SKU-JKT-7");
    assert_string_equal(json_string_value(json_object_get(l, "sku")), "SKU-JKT-7");
    assert_int_equal(json_integer_value(json_object_get(l, "quantity")), 1);
    json_t *tl = json_object_get(json_object_get(ev, "context"), "tillside");
    assert_string_equal(json_string_value(json_object_get(tl, "store")), "S001");
    assert_string_equal(json_string_value(json_object_get(tl, "source")), "api");
    assert_null(json_object_get(tl, "cid"));    /* nobody on screen */
    assert_null(json_object_get(ev, "sentAt")); /* stamped at each send */
    json_decref(ev);
}

static void invalid_fields_listed(void **state)
{
    struct fx *f = *state;
    char mid[64], err[256];
    bool dup;
    json_t *fields = json_array();
    json_t *p =
        body("{\"receipt\": \"a\\nb\", \"currency\": \"E1R\", \"total\": \"9\", \"tax\": -1,"
             " \"at\": \"yesterday\", \"customer\": {\"code\": 5}, \"products\": ["
             "{\"name\": \"no sku\", \"quantity\": 1.5, \"price\": -2}]}");
    assert_int_equal(ts_purchase_submit_fields(f->p, "api", p, mid, &dup, fields, err, sizeof err),
                     TS_ERR_INVAL);
    const char *want[] = {"receipt",
                          "currency",
                          "total",
                          "tax",
                          "at",
                          "products[0].sku",
                          "products[0].quantity",
                          "products[0].price",
                          "customer.code"};
    assert_int_equal(json_array_size(fields), sizeof want / sizeof *want);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        assert_string_equal(json_string_value(json_array_get(fields, i)), want[i]);
    assert_non_null(strstr(err, "products[0].quantity"));
    json_decref(p);
    json_decref(fields);

    /* a purchase whose event would pass 32 KB is refused, not truncated */
    p = body(good);
    json_t *lines = json_object_get(p, "products");
    for (int i = 0; i < 400; i++)
        json_array_append_new(lines, json_pack("{s:s, s:s, s:i, s:f}", "sku", "SKU-0123456789",
                                               "name", "A product with a long name here",
                                               "quantity", 1, "price", 1.0));
    assert_int_equal(ts_agent_purchase_submit(f->p, "api", p, mid, &dup, err, sizeof err),
                     TS_ERR_INVAL);
    assert_non_null(strstr(err, "32 KB"));
    json_decref(p);
    struct ts_outbox_stats st;
    assert_int_equal(ts_outbox_stats(f->p->ob, &st), TS_OK);
    assert_int_equal(st.pending, 0);
}

/* Full jitter: uniform in [MIN, min(cap, base * 2^(n-1))] (both ends
 * reachable, common/backoff.c), never under Retry-After, growing ceiling,
 * capped. */
static void backoff_full_jitter(void **state)
{
    (void)state;
    assert_int_equal(ts_uploader_backoff_ms(1, 1000, 300000, 0, 0), 50); /* the floor */
    assert_int_equal(ts_uploader_backoff_ms(1, 1000, 300000, 0, UINT32_MAX), 1000);
    assert_int_equal(ts_uploader_backoff_ms(3, 1000, 300000, 0, UINT32_MAX), 4000);
    assert_int_equal(ts_uploader_backoff_ms(60, 1000, 300000, 0, UINT32_MAX), 300000);
    assert_int_equal(ts_uploader_backoff_ms(60, 1000, 300000, 0, 1u << 31), 150025);
    assert_int_equal(ts_uploader_backoff_ms(1, 1000, 300000, 7000, 0), 7000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(submit_records_segment_event, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_fields_listed, setup, teardown),
        cmocka_unit_test(backoff_full_jitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
