/*
 * Health reports (fleet.h, docs/PROTOCOL.md "Health reports"): the strict
 * parser of what a terminal sends, the one JSON form the hub keeps and
 * shows, and what counts as unhealthy.
 */
#include "fleet.h"
#include "matchrate.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum ts_err bad(char *err, size_t errsz, const char *field, const char *what)
{
    snprintf(err, errsz, "%s: %s", field, what);
    return TS_ERR_INVAL;
}

/* Printable ASCII of 0..max bytes (empty allowed) into out. */
static enum ts_err text(json_t *v, const char *field, char *out, size_t max, char *err,
                        size_t errsz)
{
    if (!json_is_string(v))
        return bad(err, errsz, field, "expected a string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max)
        return bad(err, errsz, field, "too long");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return bad(err, errsz, field, "not printable ASCII");
    memcpy(out, s, n);
    out[n] = '\0';
    return TS_OK;
}

static enum ts_err integer(json_t *v, const char *field, int64_t lo, int64_t hi, int64_t *out,
                           char *err, size_t errsz)
{
    if (!json_is_integer(v))
        return bad(err, errsz, field, "expected an integer");
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi)
        return bad(err, errsz, field, "out of range");
    *out = (int64_t)i;
    return TS_OK;
}

#define BIG 1000000000000LL /* counts and seconds above this are nonsense */

static enum ts_err parse_inputs(json_t *a, struct ts_fleet_report *r, char *err, size_t errsz)
{
    if (!json_is_array(a))
        return bad(err, errsz, "inputs", "expected an array");
    if (json_array_size(a) > TS_FLEET_MAX_INPUTS)
        return bad(err, errsz, "inputs", "too many inputs");
    size_t i;
    json_t *in;
    json_array_foreach(a, i, in)
    {
        char field[48];
        struct ts_fleet_input *d = &r->inputs[i];
        snprintf(field, sizeof field, "inputs[%zu]", i);
        if (!json_is_object(in) || json_object_size(in) != 2)
            return bad(err, errsz, field, "expected {\"name\",\"state\"}");
        int rc;
        snprintf(field, sizeof field, "inputs[%zu].name", i);
        if ((rc = text(json_object_get(in, "name"), field, d->name, TS_FLEET_MAX_NAME, err, errsz)))
            return rc;
        snprintf(field, sizeof field, "inputs[%zu].state", i);
        if ((rc = text(json_object_get(in, "state"), field, d->state, sizeof d->state - 1, err,
                       errsz)))
            return rc;
        if (strcmp(d->state, "open") != 0 && strcmp(d->state, "waiting") != 0 &&
            strcmp(d->state, "error") != 0)
            return bad(err, errsz, field, "expected open, waiting or error");
    }
    r->ninputs = json_array_size(a);
    return TS_OK;
}

static enum ts_err parse_outbox(json_t *o, struct ts_fleet_report *r, char *err, size_t errsz)
{
    int rc;
    if (!json_is_object(o) || json_object_size(o) != 3)
        return bad(err, errsz, "outbox", "expected {\"depth\",\"oldest_s\",\"dead\"}");
    if ((rc = integer(json_object_get(o, "depth"), "outbox.depth", 0, BIG, &r->outbox_depth, err,
                      errsz)) ||
        (rc = integer(json_object_get(o, "oldest_s"), "outbox.oldest_s", 0, BIG,
                      &r->outbox_oldest_s, err, errsz)) ||
        (rc = integer(json_object_get(o, "dead"), "outbox.dead", 0, BIG, &r->dead_letters, err,
                      errsz)))
        return rc;
    return TS_OK;
}

/* One top-level key; unknown keys are an error. */
static enum ts_err field(const char *k, json_t *v, struct ts_fleet_report *r, char *err,
                         size_t errsz)
{
    int64_t n;
    int rc;
    if (strcmp(k, "v") == 0) {
        if ((rc = integer(v, "v", 1, 1, &n, err, errsz)))
            return rc;
    } else if (strcmp(k, "version") == 0) {
        return text(v, k, r->version, TS_FLEET_MAX_TEXT, err, errsz);
    } else if (strcmp(k, "os") == 0) {
        return text(v, k, r->os, TS_FLEET_MAX_TEXT, err, errsz);
    } else if (strcmp(k, "link") == 0) {
        char s[8];
        if ((rc = text(v, k, s, sizeof s - 1, err, errsz)))
            return rc;
        if (strcmp(s, "up") != 0 && strcmp(s, "down") != 0)
            return bad(err, errsz, k, "expected up or down");
        r->link_up = s[0] == 'u';
    } else if (strcmp(k, "lag_s") == 0) {
        return integer(v, k, -1, BIG, &r->lag_s, err, errsz);
    } else if (strcmp(k, "cards") == 0) {
        return integer(v, k, 0, BIG, &r->cards, err, errsz);
    } else if (strcmp(k, "outbox") == 0) {
        return parse_outbox(v, r, err, errsz);
    } else if (strcmp(k, "inputs") == 0) {
        return parse_inputs(v, r, err, errsz);
    } else if (strcmp(k, "cert_days") == 0) {
        r->has_cert = true;
        return integer(v, k, -100000, 100000, &r->cert_days, err, errsz);
    } else if (strcmp(k, "skew_s") == 0) {
        r->has_skew = true;
        return integer(v, k, -BIG, BIG, &r->skew_s, err, errsz);
    } else if (strcmp(k, "tx") == 0) {
        return ts_hub_match_parse_tx(v, r, err, errsz); /* matchrate.c */
    } else {
        char name[40];
        ts_sanitize(k, strlen(k), name, sizeof name, '?');
        return bad(err, errsz, name, "unknown field");
    }
    return TS_OK;
}

enum ts_err ts_fleet_report_parse(const char *text_in, size_t len, struct ts_fleet_report *out,
                                  char *err, size_t errsz)
{
    struct ts_fleet_report r;
    json_error_t je;
    memset(&r, 0, sizeof r);
    if (len > TS_FLEET_MAX_JSON)
        return bad(err, errsz, "report", "too large");
    json_t *o = json_loadb(text_in, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return bad(err, errsz, "report", "not JSON");
    int rc = TS_OK;
    static const char *const required[] = {"v", "version", "link", "cards", "outbox", "inputs"};
    if (!json_is_object(o)) {
        rc = bad(err, errsz, "report", "expected an object");
        goto out;
    }
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!json_object_get(o, required[i])) {
            rc = bad(err, errsz, required[i], "missing");
            goto out;
        }
    r.lag_s = -1;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if ((rc = field(k, v, &r, err, errsz)))
            goto out;
    }
    *out = r;
out:
    json_decref(o);
    return rc;
}

enum ts_err ts_fleet_report_decode(const char *value, size_t len, struct ts_fleet_report *out,
                                   char *err, size_t errsz)
{
    uint8_t raw[TS_FLEET_MAX_JSON];
    size_t n;
    if (len > TS_FLEET_MAX_ENCODED)
        return bad(err, errsz, TS_FLEET_HEADER, "too long");
    for (size_t i = 0; i < len; i++)
        if (value[i] == '+' || value[i] == '/')
            return bad(err, errsz, TS_FLEET_HEADER, "expected base64url");
    if (ts_base64_decode(value, len, raw, sizeof raw, &n) != TS_OK)
        return bad(err, errsz, TS_FLEET_HEADER, "not base64url or too large");
    return ts_fleet_report_parse((const char *)raw, n, out, err, errsz);
}

static json_t *report_obj(const struct ts_fleet_report *r)
{
    json_t *ins = json_array();
    for (size_t i = 0; ins && i < r->ninputs; i++)
        json_array_append_new(
            ins, json_pack("{s:s, s:s}", "name", r->inputs[i].name, "state", r->inputs[i].state));
    json_t *o = json_pack(
        "{s:i, s:s, s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I}, s:o}", "v", 1, "version", r->version,
        "os", r->os, "link", r->link_up ? "up" : "down", "lag_s", (json_int_t)r->lag_s, "cards",
        (json_int_t)r->cards, "outbox", "depth", (json_int_t)r->outbox_depth, "oldest_s",
        (json_int_t)r->outbox_oldest_s, "dead", (json_int_t)r->dead_letters, "inputs", ins);
    if (o && r->has_cert)
        json_object_set_new(o, "cert_days", json_integer((json_int_t)r->cert_days));
    if (o && r->has_skew)
        json_object_set_new(o, "skew_s", json_integer((json_int_t)r->skew_s));
    if (o && r->ntx)
        json_object_set_new(o, "tx", ts_hub_match_tx_json(r));
    return o;
}

enum ts_err ts_fleet_report_json(const struct ts_fleet_report *r, ts_buf *out)
{
    json_t *o = report_obj(r);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    enum ts_err rc = s ? ts_buf_puts(out, s) : TS_ERR_NOMEM;
    free(s);
    json_decref(o);
    return rc;
}

static const char *const problem_names[TS_FLEET_NPROBLEMS] = {
    "stale",         "link_down",  "outbox_old",     "dead_letters",
    "cert_expiring", "clock_skew", "input_not_open", "no_report",
};

const char *ts_fleet_problem_name(unsigned bit)
{
    for (unsigned i = 0; i < TS_FLEET_NPROBLEMS; i++)
        if (bit == 1u << i)
            return problem_names[i];
    return "?";
}

unsigned ts_fleet_problems(const struct ts_fleet_row *row, int64_t now_ms, int stale_after_s)
{
    unsigned p = 0;
    const struct ts_fleet_report *r = &row->r;
    if (now_ms - row->seen_ms > (int64_t)stale_after_s * 1000)
        p |= TS_FLEET_STALE;
    if (!row->has_report)
        return p | TS_FLEET_NO_REPORT;
    if (!r->link_up)
        p |= TS_FLEET_LINK_DOWN;
    if (r->outbox_depth > 0 && r->outbox_oldest_s > TS_FLEET_OUTBOX_OLD_S)
        p |= TS_FLEET_OUTBOX_OLD;
    if (r->dead_letters > 0)
        p |= TS_FLEET_DEAD_LETTERS;
    if (r->has_cert && r->cert_days < TS_FLEET_CERT_DAYS)
        p |= TS_FLEET_CERT_EXPIRING;
    if (r->has_skew && (r->skew_s > TS_FLEET_SKEW_S || r->skew_s < -TS_FLEET_SKEW_S))
        p |= TS_FLEET_CLOCK_SKEW;
    for (size_t i = 0; i < r->ninputs; i++)
        if (strcmp(r->inputs[i].state, "open") != 0)
            p |= TS_FLEET_INPUT_NOT_OPEN;
    return p;
}

json_t *ts_fleet_row_json(const struct ts_fleet_row *row, int64_t now_ms, int stale_after_s)
{
    char seen[40], rep[40];
    unsigned p = ts_fleet_problems(row, now_ms, stale_after_s);
    ts_iso8601(row->seen_ms, seen, sizeof seen);
    json_t *probs = json_array();
    for (unsigned i = 0; probs && i < TS_FLEET_NPROBLEMS; i++)
        if (p & (1u << i))
            json_array_append_new(probs, json_string(problem_names[i]));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:b, s:o}", "store", row->store, "terminal", row->terminal,
                  "seen_at", seen, "age_s", (json_int_t)((now_ms - row->seen_ms) / 1000), "stale",
                  (p & TS_FLEET_STALE) != 0, "problems", probs);
    if (o && row->has_report) {
        ts_iso8601(row->reported_ms, rep, sizeof rep);
        json_object_set_new(o, "reported_at", json_string(rep));
        json_object_set_new(o, "report", report_obj(&row->r));
    }
    return o;
}
