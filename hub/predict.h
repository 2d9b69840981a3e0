/*
 * What a CDP predicts about a customer, on the card (predict.c,
 * docs/PROTOCOL.md "Predictions", docs/OPERATIONS.md "Predictions"): the
 * [predictions] section names the profile traits that carry each vendor's
 * prediction and the thresholds that turn them into bands. Only bands, an
 * expected date and a hint key reach the card, never a raw score. This
 * header holds what the configuration needs, so hub.h can embed it.
 */
#ifndef TS_HUB_PREDICT_H
#define TS_HUB_PREDICT_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_PRED_MAX_TRAITS 8
#define TS_PRED_TRAIT_LEN 96 /* a trait path: letters, digits, _ - and . between names */
#define TS_PRED_MAX_STORES 64

/* How a trait's value becomes a band. */
enum ts_pred_kind {
    TS_PRED_VALUE_AMOUNT, /* money, e.g. Klaviyo predicted_clv: value_top/high/medium */
    TS_PRED_VALUE_COHORT, /* 0..1 percentile, e.g. Segment Predictions' predicted LTV */
    TS_PRED_CHURN,        /* 0..1 probability or percentile: churn_high/medium */
    TS_PRED_CHURN_SCORE,  /* 0..100, e.g. Braze Churn Risk Score */
    TS_PRED_CHURN_WORD,   /* "Low", "Medium Risk", "High" ... (Braze churn risk category) */
    TS_PRED_RFM,          /* Shopify's CustomerRfmGroup: a value and a churn band */
    TS_PRED_NEXT_ORDER,   /* a date (Klaviyo expected_date_of_next_order) */
    TS_PRED_KINDS
};

struct ts_pred_traits {
    char path[TS_PRED_MAX_TRAITS][TS_PRED_TRAIT_LEN];
    size_t n;
};

struct ts_hub_predict_conf {
    bool hints;      /* [predictions] hints: the block is on cards at all */
    bool configured; /* the section is in the file (check-config prints it then) */
    char stores_off[TS_PRED_MAX_STORES][64]; /* stores whose terminals never get it */
    size_t nstores_off;
    struct ts_pred_traits traits[TS_PRED_KINDS]; /* first one present wins, kinds in order */
    double value_top, value_high, value_medium;  /* amounts, at or above */
    double cohort_top, cohort_high, cohort_medium;
    double churn_high, churn_medium; /* 0..1; a 0..100 score is compared / 100 */
    int due_days;                    /* next order within this many days = "due now" */
};

struct ts_conf;
/* [predictions] into *o (defaults when the section is absent). */
enum ts_err ts_hub_predict_conf(const struct ts_conf *c, struct ts_hub_predict_conf *o, char *err,
                                size_t errsz);
/* The built-in defaults (docs/OPERATIONS.md "Predictions"). */
void ts_hub_predict_defaults(struct ts_hub_predict_conf *o);
/* The configuration card rebuilds and ingest use from now on (set by
 * ts_hub_config_parse; the defaults until then). Not thread-safe: set it
 * before serving. */
void ts_hub_predict_use(const struct ts_hub_predict_conf *o);
const struct ts_hub_predict_conf *ts_hub_predict_current(void);
/* check-config: one line saying what the section does, when the file has
 * one; returns 0. */
int ts_hub_predict_check(const struct ts_hub_predict_conf *o, void *out_file);
/* Does the store's feed leave predictions out ([predictions] stores_off)? */
bool ts_hub_predict_store_off(const struct ts_hub_predict_conf *o, const char *store);
/* Removes every card's "prediction" member from JSON text the hub wrote
 * (a feed page or a lookup answer), in place. */
void ts_hub_predict_strip(ts_buf *b);

/* ---- ingest and card (predict.c) ----------------------------------------- */
struct json_t;
/* The customer's stored predictions (JSON text old, NULL = none) updated
 * with what identify traits tr carry, said at at_ms: *out is malloc'd text
 * to store. TS_ERR_NOTFOUND when tr carries no configured prediction (store
 * nothing then). Only bands and dates are kept, never the raw numbers. */
enum ts_err ts_hub_predict_merge(const char *old, const struct json_t *tr, int64_t at_ms,
                                 char **out);
/* The card's "prediction" member from the stored text, NULL when there is
 * nothing to show (or hints are off). now_ms decides "due now". */
struct json_t *ts_hub_predict_card(const char *stored, int64_t now_ms);
/* Source adapters (source_map.c): copies into dst the members of src that
 * the configured prediction traits start with (a nested object whole), and
 * says whether src has any. */
void ts_hub_predict_copy(struct json_t *dst, const struct json_t *src);
bool ts_hub_predict_present(const struct json_t *src);

#endif
