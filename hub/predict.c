/*
 * Predictions on the card (predict.h, docs/PROTOCOL.md "Predictions"): the
 * [predictions] section, the bands a CDP's prediction traits are turned
 * into when an identify arrives, and the card's "prediction" member.
 *
 * Where the default trait names and thresholds come from:
 * - Klaviyo's profile "predictive_analytics" object (predicted_clv,
 *   historic_clv, churn_probability "Probability the customer has
 *   churned", expected_date_of_next_order "as calculated at the time of
 *   their most recent order"):
 *   https://developers.klaviyo.com/en/reference/get_profile (additional
 *   field predictive_analytics, PredictiveAnalytics schema).
 * - Braze Predictive Churn: "a Churn Risk Score between 0 and 100 ... 0 and
 *   50 ... Low Risk, 50 and 75 ... Medium Risk, 75 and 100 ... High Risk":
 *   https://www.braze.com/docs/user_guide/brazeai/predictive_suite/predictive_churn/prediction_analytics/
 *   (the churn thresholds' defaults, 0.5 and 0.75, are these boundaries).
 * - Segment Predictions: computed traits named by the retailer, "scores
 *   represented as percentage cohorts ... 0.8 indicates the user is in the
 *   80th percentile": https://segment.com/docs/unify/traits/predictions/using-predictions/
 * - Shopify's CustomerRfmGroup (CHAMPIONS, LOYAL, ACTIVE, ... AT_RISK,
 *   DORMANT): https://shopify.dev/docs/api/admin-graphql/latest/enums/customerrfmgroup
 */
#include "hub.h"

#include "../common/conf.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DAY_MS (24LL * 3600 * 1000)

static const char *const kind_key[TS_PRED_KINDS] = {
    [TS_PRED_VALUE_AMOUNT] = "value_traits",
    [TS_PRED_VALUE_COHORT] = "value_cohort_traits",
    [TS_PRED_CHURN] = "churn_traits",
    [TS_PRED_CHURN_SCORE] = "churn_score_traits",
    [TS_PRED_CHURN_WORD] = "churn_category_traits",
    [TS_PRED_RFM] = "rfm_traits",
    [TS_PRED_NEXT_ORDER] = "next_order_traits",
};

static const char *const kind_default[TS_PRED_KINDS] = {
    [TS_PRED_VALUE_AMOUNT] = "predictive_analytics.predicted_clv, predicted_clv",
    [TS_PRED_VALUE_COHORT] = "", /* Segment Predictions: the retailer names them */
    [TS_PRED_CHURN] = "predictive_analytics.churn_probability, churn_probability",
    [TS_PRED_CHURN_SCORE] = "churn_risk_score",
    [TS_PRED_CHURN_WORD] = "churn_risk_category",
    [TS_PRED_RFM] = "statistics.rfmGroup, rfm_group",
    [TS_PRED_NEXT_ORDER] =
        "predictive_analytics.expected_date_of_next_order, expected_date_of_next_order",
};

static struct ts_hub_predict_conf current;
static bool current_set;

static bool path_ok(const char *s)
{
    if (!*s || *s == '.')
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && !(*p == '.' && p[1] != '.'))
            return false;
    return s[strlen(s) - 1] != '.';
}

/* "a, b ,c" into out[max][len]; false when one is too long or too many. */
static bool split_list(const char *v, char *out, size_t len, size_t max, size_t *n)
{
    *n = 0;
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *e = v;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (t > v) {
            if (*n == max || (size_t)(t - v) >= len)
                return false;
            memcpy(out + *n * len, v, (size_t)(t - v));
            out[*n * len + (size_t)(t - v)] = '\0';
            (*n)++;
        }
        v = e;
    }
    return true;
}

void ts_hub_predict_defaults(struct ts_hub_predict_conf *o)
{
    memset(o, 0, sizeof *o);
    o->hints = true;
    for (int k = 0; k < TS_PRED_KINDS; k++)
        split_list(kind_default[k], o->traits[k].path[0], TS_PRED_TRAIT_LEN, TS_PRED_MAX_TRAITS,
                   &o->traits[k].n);
    o->value_top = 1000;
    o->value_high = 500;
    o->value_medium = 100;
    o->cohort_top = 0.9;
    o->cohort_high = 0.7;
    o->cohort_medium = 0.4;
    o->churn_high = 0.75;
    o->churn_medium = 0.5;
    o->due_days = 7;
}

static enum ts_err get_num(const struct ts_conf *c, const char *key, double min, double max,
                           double *out, char *err, size_t errsz)
{
    const char *v = ts_conf_get(c, "predictions", key, NULL);
    if (!v)
        return TS_OK;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d) || d < min || d > max)
        return ts_conf_errf(c, "predictions", key, err, errsz, "expected a number from %g to %g",
                            min, max);
    *out = d;
    return TS_OK;
}

enum ts_err ts_hub_predict_conf(const struct ts_conf *c, struct ts_hub_predict_conf *o, char *err,
                                size_t errsz)
{
    ts_hub_predict_defaults(o);
    o->configured = ts_conf_key(c, "predictions", 0) != NULL;
    int rc = ts_conf_get_bool(c, "predictions", "hints", true, &o->hints, err, errsz);
    if (rc)
        return rc;
    const char *v = ts_conf_get(c, "predictions", "stores_off", "");
    if (!split_list(v, o->stores_off[0], sizeof o->stores_off[0], TS_PRED_MAX_STORES,
                    &o->nstores_off))
        return ts_conf_errf(c, "predictions", "stores_off", err, errsz,
                            "at most %d store ids of up to 63 characters", TS_PRED_MAX_STORES);
    for (int k = 0; k < TS_PRED_KINDS; k++) {
        v = ts_conf_get(c, "predictions", kind_key[k], NULL);
        if (!v)
            continue;
        struct ts_pred_traits *t = &o->traits[k];
        if (!split_list(v, t->path[0], TS_PRED_TRAIT_LEN, TS_PRED_MAX_TRAITS, &t->n))
            return ts_conf_errf(c, "predictions", kind_key[k], err, errsz,
                                "at most %d trait names of up to %d characters", TS_PRED_MAX_TRAITS,
                                TS_PRED_TRAIT_LEN - 1);
        for (size_t i = 0; i < t->n; i++)
            if (!path_ok(t->path[i]))
                return ts_conf_errf(c, "predictions", kind_key[k], err, errsz,
                                    "\"%s\": a trait name is letters, digits, _ and -, with . "
                                    "between the names of nested objects",
                                    t->path[i]);
    }
    long due = o->due_days;
    if ((rc = get_num(c, "value_top", 0, 1e12, &o->value_top, err, errsz)) ||
        (rc = get_num(c, "value_high", 0, 1e12, &o->value_high, err, errsz)) ||
        (rc = get_num(c, "value_medium", 0, 1e12, &o->value_medium, err, errsz)) ||
        (rc = get_num(c, "cohort_top", 0, 1, &o->cohort_top, err, errsz)) ||
        (rc = get_num(c, "cohort_high", 0, 1, &o->cohort_high, err, errsz)) ||
        (rc = get_num(c, "cohort_medium", 0, 1, &o->cohort_medium, err, errsz)) ||
        (rc = get_num(c, "churn_high", 0, 1, &o->churn_high, err, errsz)) ||
        (rc = get_num(c, "churn_medium", 0, 1, &o->churn_medium, err, errsz)) ||
        (rc = ts_conf_get_int(c, "predictions", "due_days", due, 0, 366, &due, err, errsz)))
        return rc;
    o->due_days = (int)due;
    if (!(o->value_top >= o->value_high && o->value_high >= o->value_medium))
        return ts_conf_errf(c, "predictions", "value_top", err, errsz,
                            "value_top >= value_high >= value_medium is needed");
    if (!(o->cohort_top >= o->cohort_high && o->cohort_high >= o->cohort_medium))
        return ts_conf_errf(c, "predictions", "cohort_top", err, errsz,
                            "cohort_top >= cohort_high >= cohort_medium is needed");
    if (!(o->churn_high >= o->churn_medium))
        return ts_conf_errf(c, "predictions", "churn_high", err, errsz,
                            "churn_high >= churn_medium is needed");
    return TS_OK;
}

void ts_hub_predict_use(const struct ts_hub_predict_conf *o)
{
    current = *o;
    current_set = true;
}

const struct ts_hub_predict_conf *ts_hub_predict_current(void)
{
    if (!current_set) {
        ts_hub_predict_defaults(&current);
        current_set = true;
    }
    return &current;
}

int ts_hub_predict_check(const struct ts_hub_predict_conf *o, void *out_file)
{
    FILE *f = out_file;
    size_t n = 0;
    if (!o->configured)
        return 0;
    for (int k = 0; k < TS_PRED_KINDS; k++)
        n += o->traits[k].n;
    fprintf(f, "predictions: hints %s, %zu trait names, %zu stores without hints",
            o->hints ? "on" : "off", n, o->nstores_off);
    for (size_t i = 0; i < o->nstores_off; i++)
        fprintf(f, "%s%s", i ? ", " : " (", o->stores_off[i]);
    fprintf(f, "%s\n", o->nstores_off ? ")" : "");
    return 0;
}

bool ts_hub_predict_store_off(const struct ts_hub_predict_conf *o, const char *store)
{
    for (size_t i = 0; store && i < o->nstores_off; i++)
        if (strcmp(o->stores_off[i], store) == 0)
            return true;
    return false;
}

void ts_hub_predict_strip(ts_buf *b)
{
    static const char mark[] = ",\"prediction\":{";
    const size_t ml = sizeof mark - 1;
    size_t i = 0;
    while (b->len >= ml && i <= b->len - ml) {
        char *p = memchr(b->data + i, ',', b->len - ml + 1 - i);
        if (!p)
            break;
        i = (size_t)(p - b->data);
        if (memcmp(p, mark, ml) != 0) {
            i++;
            continue;
        }
        /* The member holds only objects, band words, dates and trait
         * paths (validated: no quotes or braces), so braces balance. */
        size_t j = i + ml, depth = 1;
        while (j < b->len && depth) {
            if (b->data[j] == '{')
                depth++;
            else if (b->data[j] == '}')
                depth--;
            j++;
        }
        memmove(b->data + i, b->data + j, b->len - j);
        b->len -= j - i;
        b->data[b->len] = '\0';
    }
}

/* ---- bands ---------------------------------------------------------------- */

static const json_t *trait_at(const json_t *tr, const char *path)
{
    char part[TS_PRED_TRAIT_LEN];
    const json_t *v = tr;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return v == tr ? NULL : v;
}

static const char *band4(double v, double top, double high, double medium)
{
    return v >= top ? "top" : v >= high ? "high" : v >= medium ? "medium" : "low";
}

static const char *churn_band(double p, const struct ts_hub_predict_conf *o)
{
    return p >= o->churn_high ? "high" : p >= o->churn_medium ? "medium" : "low";
}

/* "Low", "low risk", "Medium Risk", "HIGH", "very high" (Braze's category
 * names) to a churn band; NULL when none fits. */
static const char *churn_word(const char *w)
{
    if (strncasecmp(w, "very ", 5) == 0)
        w += 5;
    static const char *const bands[] = {"low", "medium", "high"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(bands[i]);
        if (strncasecmp(w, bands[i], n) == 0 &&
            (w[n] == '\0' || strcasecmp(w + n, " risk") == 0 || strcasecmp(w + n, "_risk") == 0))
            return bands[i];
    }
    return NULL;
}

/* Shopify's RFM groups (their documented meaning, see the top of the
 * file) as a value band and a churn band (NULL = says nothing). */
static bool rfm(const char *g, const char **value, const char **churn)
{
    static const struct {
        const char *group, *value, *churn;
    } map[] = {
        {"CHAMPIONS", "top", "low"},         {"LOYAL", "high", "low"},
        {"ACTIVE", "medium", "low"},         {"NEEDS_ATTENTION", "medium", "medium"},
        {"PROMISING", "low", "low"},         {"NEW", "low", NULL},
        {"PREVIOUSLY_LOYAL", "top", "high"}, {"AT_RISK", "high", "high"},
        {"ALMOST_LOST", "low", "high"},      {"DORMANT", "low", "high"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *a = map[i].group, *b = g;
        /* "AT_RISK", "at risk", "At-risk" alike */
        while (*a && *b &&
               (toupper((unsigned char)*b) == *a || (*a == '_' && (*b == ' ' || *b == '-'))))
            a++, b++;
        if (!*a && !*b) {
            *value = map[i].value;
            *churn = map[i].churn;
            return true;
        }
    }
    return false;
}

/* YYYY-MM-DD from a date or date-time string; false when not one. */
static bool date_of(const json_t *v, char out[11], int64_t *ms)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) < 10)
        return false;
    char iso[40];
    if (strlen(s) == 10)
        snprintf(iso, sizeof iso, "%sT00:00:00Z", s);
    else if (ts_hub_iso_shape(s))
        snprintf(iso, sizeof iso, "%.39s", s);
    else
        return false;
    if (ts_iso8601_parse(iso, ms) != TS_OK)
        return false;
    char full[40];
    ts_iso8601(*ms, full, sizeof full);
    memcpy(out, full, 10);
    out[10] = '\0';
    return true;
}

/* Sets slot ("value", "churn", "next") of st unless a newer one is there. */
static void put_slot(json_t *st, const char *slot, const char *key, const char *v, const char *src,
                     int64_t at_ms, bool *changed)
{
    const json_t *old = json_object_get(st, slot);
    if (json_integer_value(json_object_get(old, "at")) > at_ms)
        return;
    json_t *o = json_pack("{s:s, s:s, s:I}", key, v, "src", src, "at", (json_int_t)at_ms);
    if (o && json_object_set_new(st, slot, o) == 0)
        *changed = true;
}

static void apply_kind(json_t *st, int k, const char *path, const json_t *v, int64_t at,
                       const struct ts_hub_predict_conf *o, bool *done, bool *changed)
{
    double d = json_number_value(v);
    bool num = json_is_number(v);
    const char *s = json_string_value(v), *val = NULL, *ch = NULL;
    char date[11];
    int64_t ms;
    switch (k) {
    case TS_PRED_VALUE_AMOUNT:
        if (num)
            val = band4(d, o->value_top, o->value_high, o->value_medium);
        break;
    case TS_PRED_VALUE_COHORT:
        if (num && d >= 0 && d <= 1)
            val = band4(d, o->cohort_top, o->cohort_high, o->cohort_medium);
        break;
    case TS_PRED_CHURN:
        if (num && d >= 0 && d <= 1)
            ch = churn_band(d, o);
        break;
    case TS_PRED_CHURN_SCORE:
        if (num && d >= 0 && d <= 100)
            ch = churn_band(d / 100.0, o);
        break;
    case TS_PRED_CHURN_WORD:
        if (s)
            ch = churn_word(s);
        break;
    case TS_PRED_RFM:
        if (s && !rfm(s, &val, &ch))
            val = ch = NULL;
        break;
    case TS_PRED_NEXT_ORDER:
        if (!done[2] && date_of(v, date, &ms)) {
            put_slot(st, "next", "date", date, path, at, changed);
            done[2] = true;
        }
        return;
    }
    if (val && !done[0]) {
        put_slot(st, "value", "band", val, path, at, changed);
        done[0] = true;
    }
    if (ch && !done[1]) {
        put_slot(st, "churn", "band", ch, path, at, changed);
        done[1] = true;
    }
}

enum ts_err ts_hub_predict_merge(const char *old, const json_t *tr, int64_t at_ms, char **out)
{
    const struct ts_hub_predict_conf *o = ts_hub_predict_current();
    if (!json_is_object(tr))
        return TS_ERR_NOTFOUND;
    json_t *st = old ? json_loads(old, 0, NULL) : NULL;
    if (!json_is_object(st)) {
        json_decref(st);
        st = json_object();
    }
    if (!st)
        return TS_ERR_NOMEM;
    bool done[3] = {false, false, false}, changed = false;
    for (int k = 0; k < TS_PRED_KINDS; k++)
        for (size_t i = 0; i < o->traits[k].n; i++) {
            const json_t *v = trait_at(tr, o->traits[k].path[i]);
            if (v)
                apply_kind(st, k, o->traits[k].path[i], v, at_ms, o, done, &changed);
        }
    int rc = TS_ERR_NOTFOUND;
    if (changed) {
        *out = json_dumps(st, JSON_COMPACT);
        rc = *out ? TS_OK : TS_ERR_NOMEM;
    }
    json_decref(st);
    return rc;
}

/* {"band" or "date", "source", "as_of"} from a stored slot. */
static json_t *card_slot(const json_t *slot, const char *key)
{
    char at[40];
    ts_iso8601(json_integer_value(json_object_get(slot, "at")), at, sizeof at);
    at[10] = '\0';
    return json_pack("{s:O, s:O, s:s}", key, json_object_get(slot, key), "source",
                     json_object_get(slot, "src"), "as_of", at);
}

/* The plain-language hint (docs/PROTOCOL.md "Predictions"), NULL = none. */
static const char *hint_of(const char *value, const char *churn, bool due)
{
    bool valued = value && (strcmp(value, "top") == 0 || strcmp(value, "high") == 0);
    bool drifting = churn && strcmp(churn, "high") == 0;
    if (valued && drifting)
        return "valued_drifting";
    if (valued && due)
        return "valued_due";
    if (drifting)
        return "drifting";
    if (due)
        return "due";
    return valued ? "valued" : NULL;
}

json_t *ts_hub_predict_card(const char *stored, int64_t now_ms)
{
    const struct ts_hub_predict_conf *o = ts_hub_predict_current();
    if (!o->hints || !stored)
        return NULL;
    json_t *st = json_loads(stored, 0, NULL), *card = json_object();
    const json_t *value = json_object_get(st, "value"), *churn = json_object_get(st, "churn"),
                 *next = json_object_get(st, "next");
    bool due = false, ok = card && (value || churn || next);
    if (ok && value)
        ok = json_object_set_new(card, "value", card_slot(value, "band")) == 0;
    if (ok && churn)
        ok = json_object_set_new(card, "churn", card_slot(churn, "band")) == 0;
    if (ok && next) {
        json_t *n = card_slot(next, "date");
        char today[40];
        /* due when the expected day is at most due_days away, or past */
        ts_iso8601(now_ms + (int64_t)o->due_days * DAY_MS, today, sizeof today);
        const char *d = json_string_value(json_object_get(next, "date"));
        due = d && strncmp(d, today, 10) <= 0;
        ok = n && json_object_set_new(n, "due", json_boolean(due)) == 0 &&
             json_object_set_new(card, "next_order", n) == 0;
    }
    const char *h = hint_of(json_string_value(json_object_get(value, "band")),
                            json_string_value(json_object_get(churn, "band")), due);
    if (ok && h)
        ok = json_object_set_new(card, "hint", json_string(h)) == 0;
    json_decref(st);
    if (!ok) {
        json_decref(card);
        return NULL;
    }
    return card;
}

/* The first name of a trait path ("predictive_analytics" of
 * "predictive_analytics.churn_probability"). */
static void head_of(const char *path, char out[TS_PRED_TRAIT_LEN])
{
    size_t n = strcspn(path, ".");
    memcpy(out, path, n);
    out[n] = '\0';
}

void ts_hub_predict_copy(json_t *dst, const json_t *src)
{
    const struct ts_hub_predict_conf *o = ts_hub_predict_current();
    char head[TS_PRED_TRAIT_LEN];
    for (int k = 0; json_is_object(src) && k < TS_PRED_KINDS; k++)
        for (size_t i = 0; i < o->traits[k].n; i++) {
            head_of(o->traits[k].path[i], head);
            json_t *v = json_object_get(src, head);
            if (v && !json_object_get(dst, head))
                json_object_set_new(dst, head, json_deep_copy(v));
        }
}

bool ts_hub_predict_present(const json_t *src)
{
    const struct ts_hub_predict_conf *o = ts_hub_predict_current();
    for (int k = 0; json_is_object(src) && k < TS_PRED_KINDS; k++)
        for (size_t i = 0; i < o->traits[k].n; i++)
            if (trait_at(src, o->traits[k].path[i]))
                return true;
    return false;
}
