/*
 * Predictions on the card (hub/predict.c): each documented vendor field
 * through an identify ends as the right band on the card, never as the raw
 * number; consent hides it; [predictions] validates and a store with hints
 * off gets the member cut out of its feed.
 */
#include "hub_store_fx.h"

#include "../../common/conf.h"

/* An identify of u (loyalty number loy) with traits (JSON members) at NOW
 * minus a day; returns the card's "prediction" member (a new reference)
 * or NULL. */
static json_t *predicted(struct fx *f, const char *u, const char *loy, const char *traits)
{
    ts_buf ev = {0};
    char at[40];
    ts_iso8601(NOW - DAY, at, sizeof at);
    assert_int_equal(ts_buf_printf(&ev,
                                   "{\"type\":\"identify\",\"userId\":\"%s\",\"timestamp\":\"%s\","
                                   "\"traits\":{\"loyalty_id\":\"%s\",%s}}",
                                   u, at, loy, traits),
                     TS_OK);
    ingest(f, ev.data);
    ts_buf_free(&ev);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, loy);
    assert_non_null(a);
    json_t *p = json_incref(json_object_get(card_of(a), "prediction"));
    json_decref(a);
    return p;
}

static const char *band(json_t *p, const char *slot)
{
    return json_string_value(json_object_get(json_object_get(p, slot), "band"));
}

static void test_klaviyo_predictive_analytics(void **state)
{
    struct fx *f = *state;
    /* Klaviyo's PredictiveAnalytics object as the Profiles API returns it
     * (https://developers.klaviyo.com/en/reference/get_profile). */
    json_t *p = predicted(f, "u-k", "2000000000015",
                          "\"predictive_analytics\":{\"historic_clv\":93.87,"
                          "\"predicted_clv\":1234.56,\"total_clv\":1328.43,"
                          "\"churn_probability\":0.89,\"average_days_between_orders\":189,"
                          "\"expected_date_of_next_order\":\"2026-06-01T00:00:00+00:00\"}");
    assert_non_null(p);
    assert_string_equal(band(p, "value"), "top");
    assert_string_equal(band(p, "churn"), "high");
    assert_string_equal(json_string_value(json_object_get(p, "hint")), "valued_drifting");
    json_t *v = json_object_get(p, "value");
    assert_string_equal(json_string_value(json_object_get(v, "source")),
                        "predictive_analytics.predicted_clv");
    char asof[40];
    ts_iso8601(NOW - DAY, asof, sizeof asof);
    asof[10] = '\0';
    assert_string_equal(json_string_value(json_object_get(v, "as_of")), asof);
    json_t *n = json_object_get(p, "next_order");
    assert_string_equal(json_string_value(json_object_get(n, "date")), "2026-06-01");
    /* NOW is 2026-05-28: the order is due within the default 7 days */
    assert_true(json_is_true(json_object_get(n, "due")));
    char *dump = json_dumps(p, 0);
    assert_null(strstr(dump, "1234.56"));
    assert_null(strstr(dump, "0.89"));
    assert_null(strstr(dump, "93.87"));
    free(dump);
    json_decref(p);
}

struct band_case {
    const char *traits, *band;
};

/* Each case's traits on a new customer (loyalty numbers from base) give
 * its band in slot. */
static void check_bands(struct fx *f, long long base, const char *slot,
                        const struct band_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char u[32], loy[32];
        snprintf(u, sizeof u, "u-%s%zu", slot, i);
        snprintf(loy, sizeof loy, "%lld", base + (long long)i);
        json_t *p = predicted(f, u, loy, cases[i].traits);
        assert_non_null(p);
        assert_string_equal(band(p, slot), cases[i].band);
        json_decref(p);
    }
}

static void test_value_bands_and_thresholds(void **state)
{
    struct fx *f = *state;
    static const struct band_case cases[] = {
        {"\"predicted_clv\":1000", "top"},    {"\"predicted_clv\":999.99", "high"},
        {"\"predicted_clv\":500", "high"},    {"\"predicted_clv\":100", "medium"},
        {"\"predicted_clv\":99", "low"},      {"\"rfm_group\":\"CHAMPIONS\"", "top"},
        {"\"rfm_group\":\"LOYAL\"", "high"},  {"\"rfm_group\":\"active\"", "medium"},
        {"\"rfm_group\":\"Dormant\"", "low"},
    };
    check_bands(f, 3000000000000LL, "value", cases, sizeof cases / sizeof cases[0]);
}

static void test_churn_bands(void **state)
{
    struct fx *f = *state;
    static const struct band_case cases[] = {
        /* Braze: score 0-100 and category (Low / Medium / High Risk) */
        {"\"churn_risk_score\":80", "high"},
        {"\"churn_risk_score\":60", "medium"},
        {"\"churn_risk_score\":10", "low"},
        {"\"churn_risk_category\":\"High Risk\"", "high"},
        {"\"churn_risk_category\":\"Medium\"", "medium"},
        {"\"churn_risk_category\":\"low risk\"", "low"},
        /* Klaviyo's probability, top-level as a Segment trait */
        {"\"churn_probability\":0.75", "high"},
        {"\"churn_probability\":0.5", "medium"},
        {"\"churn_probability\":0.49", "low"},
        /* Shopify */
        {"\"rfm_group\":\"AT_RISK\"", "high"},
        {"\"rfm_group\":\"NEEDS_ATTENTION\"", "medium"},
    };
    check_bands(f, 4000000000000LL, "churn", cases, sizeof cases / sizeof cases[0]);
    /* nonsense is no band: a category word we do not know, a score out of range */
    assert_null(predicted(f, "u-x", "4000000000099",
                          "\"churn_risk_category\":\"whatever\",\"churn_risk_score\":101"));
}

static void test_next_order_and_newer_wins(void **state)
{
    struct fx *f = *state;
    json_t *p =
        predicted(f, "u-n", "5000000000001", "\"expected_date_of_next_order\":\"2026-08-01\"");
    json_t *n = json_object_get(p, "next_order");
    assert_string_equal(json_string_value(json_object_get(n, "date")), "2026-08-01");
    assert_true(json_is_false(json_object_get(n, "due")));
    assert_null(json_object_get(p, "hint"));
    json_decref(p);
    /* a later identify with a churn band keeps the date and adds the band */
    p = predicted(f, "u-n", "5000000000001", "\"churn_risk_score\":90");
    assert_string_equal(band(p, "churn"), "high");
    assert_non_null(json_object_get(p, "next_order"));
    assert_string_equal(json_string_value(json_object_get(p, "hint")), "drifting");
    json_decref(p);
}

static void test_consent_withdrawn_hides(void **state)
{
    struct fx *f = *state;
    json_t *p = predicted(f, "u-w", "6000000000001", "\"predicted_clv\":5000");
    assert_non_null(p);
    json_decref(p);
    p = predicted(f, "u-w", "6000000000001", "\"personalization_consent\":false");
    assert_null(p);
    json_t *a = lookup(f, TS_IDENT_LOYALTY, "6000000000001");
    char *dump = json_dumps(a, 0);
    assert_null(strstr(dump, "prediction"));
    free(dump);
    json_decref(a);
}

static void test_strip_for_store_off(void **state)
{
    struct fx *f = *state;
    json_decref(predicted(
        f, "u-s", "7000000000001",
        "\"home_store\":\"S001\",\"name\":\"A \\\",\\\"prediction\\\":{\",\"predicted_clv\":5000"));
    ts_buf b = {0};
    struct ts_hub_feed_page pg = {0};
    assert_int_equal(ts_hub_store_feed(f->s, "S001", 0, 100, &pg), TS_OK);
    assert_non_null(strstr(pg.items.data, "\"prediction\":{"));
    ts_hub_predict_strip(&pg.items);
    assert_int_equal(ts_buf_printf(&b, "[%s]", pg.items.data), TS_OK);
    json_t *arr = json_loads(b.data, 0, NULL);
    assert_non_null(arr); /* still JSON */
    json_t *card = json_object_get(json_array_get(arr, 0), "card");
    assert_null(json_object_get(card, "prediction"));
    /* a name that spells the marker inside a string is left alone */
    assert_string_equal(json_string_value(json_object_get(card, "name")), "A \",\"prediction\":{");
    json_decref(arr);
    ts_buf_free(&b);
    ts_buf_free(&pg.items);
}

static void test_config(void **state)
{
    (void)state;
    struct ts_conf *c = NULL;
    struct ts_hub_predict_conf o;
    char err[256];
    assert_int_equal(ts_conf_parse("t.conf",
                                   "[predictions]\nhints = on\nstores_off = S002, S003\n"
                                   "value_cohort_traits = predicted_ltv_pct\nvalue_top = 2000\n"
                                   "churn_high = 0.8\ndue_days = 3\n",
                                   &c, err, sizeof err),
                     TS_OK);
    assert_int_equal(ts_hub_predict_conf(c, &o, err, sizeof err), TS_OK);
    ts_conf_free(c);
    assert_true(o.hints);
    assert_int_equal(o.nstores_off, 2);
    assert_true(ts_hub_predict_store_off(&o, "S003"));
    assert_false(ts_hub_predict_store_off(&o, "S001"));
    assert_int_equal(o.traits[TS_PRED_VALUE_COHORT].n, 1);
    assert_true(o.value_top == 2000 && o.value_high == 500);
    assert_int_equal(o.due_days, 3);
    static const char *const bad[] = {
        "[predictions]\nchurn_high = 1.5\n",
        "[predictions]\nvalue_top = 10\n",
        "[predictions]\nchurn_traits = a\"b\n",
        "[predictions]\nhints = maybe\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ts_conf_parse("t.conf", bad[i], &c, err, sizeof err), TS_OK);
        assert_int_equal(ts_hub_predict_conf(c, &o, err, sizeof err), TS_ERR_CONFIG);
        assert_non_null(strstr(err, "[predictions]"));
        ts_conf_free(c);
    }
}

static void test_segment_cohort_and_hints_off(void **state)
{
    struct fx *f = *state;
    struct ts_hub_predict_conf o;
    ts_hub_predict_defaults(&o);
    strcpy(o.traits[TS_PRED_VALUE_COHORT].path[0], "predicted_ltv_pct");
    o.traits[TS_PRED_VALUE_COHORT].n = 1;
    ts_hub_predict_use(&o);
    json_t *p = predicted(f, "u-seg", "8000000000001", "\"predicted_ltv_pct\":0.92");
    assert_string_equal(band(p, "value"), "top");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "value"), "source")),
                        "predicted_ltv_pct");
    json_decref(p);
    o.hints = false;
    ts_hub_predict_use(&o);
    assert_null(predicted(f, "u-seg", "8000000000001", "\"predicted_ltv_pct\":0.5"));
    ts_hub_predict_defaults(&o);
    ts_hub_predict_use(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_klaviyo_predictive_analytics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_bands_and_thresholds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_churn_bands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_order_and_newer_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consent_withdrawn_hides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strip_for_store_off, setup, teardown),
        cmocka_unit_test(test_config),
        cmocka_unit_test_setup_teardown(test_segment_cohort_and_hints_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
