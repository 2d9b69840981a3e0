/* Identity rules: [rule.NAME] sections → kind and identifier (rules.h). */
#include "rules.h"
#include "../common/ts.h"
#include "../drivers/symbology.h"
#include "conf.h"
#include "url.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ts_rules {
    int n;
    struct ts_rule_conf r[TS_RULES_MAX + 2];
    regex_t re[TS_RULES_MAX + 2];
    bool has_re[TS_RULES_MAX + 2];
};

static enum ts_err rfail(const struct ts_conf *c, const char *sec, const char *key, char *err,
                         size_t errsz, const char *msg)
{
    return ts_conf_errf(c, sec, key, err, errsz, "%s", msg);
}

static enum ts_err rstr(const struct ts_conf *c, const char *sec, const char *key, char *out,
                        size_t outsz, char *err, size_t errsz)
{
    const char *v = ts_conf_get(c, sec, key, "");
    if (ts_strlcpy(out, v, outsz) >= outsz) {
        char msg[64];
        snprintf(msg, sizeof msg, "value too long (max %zu)", outsz - 1);
        return rfail(c, sec, key, err, errsz, msg);
    }
    return TS_OK;
}

/* The ScanDataType names accepted by `symbology`: what ts_symbology_name
 * prints ("EAN-13", "QR Code"), compared ignoring case, spaces and dashes,
 * so "ean13", "EAN-13" and "qrcode" all work. */
static void squash(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    for (; *in && o + 1 < outsz; in++)
        if (*in != ' ' && *in != '-' && *in != '_')
            out[o++] = (char)(*in >= 'A' && *in <= 'Z' ? *in + 32 : *in);
    out[o] = '\0';
}

static int upos_by_name(const char *name)
{
    static const int types[] = {101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 118,
                                119, 120, 131, 132, 201, 202, 203, 204, 205, 206, 207, 501};
    char want[32], have[32];
    squash(name, want, sizeof want);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        squash(ts_symbology_name((enum ts_upos_sdt)types[i]), have, sizeof have);
        if (strcmp(want, have) == 0)
            return types[i];
    }
    return 0;
}

static bool is_gs1_ai(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 4)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static const char *const rule_keys[] = {"kind",   "symbology",  "prefix",     "regex",
                                        "gs1_ai", "url_param",  "capture",    "strip_prefix",
                                        "length", "min_length", "max_length", NULL};

/* A typo in a rule key would silently widen the rule: refused. */
static enum ts_err unknown_key(const struct ts_conf *c, const char *sec, char *err, size_t errsz)
{
    const char *key;
    for (size_t i = 0; (key = ts_conf_key(c, sec, i)); i++) {
        size_t k = 0;
        while (rule_keys[k] && strcmp(rule_keys[k], key))
            k++;
        if (!rule_keys[k])
            return ts_conf_errf(c, sec, key, err, errsz,
                                "unknown key in a rule (known: kind, symbology, prefix, regex, "
                                "gs1_ai, url_param, capture, strip_prefix, length, min_length, "
                                "max_length)");
    }
    return TS_OK;
}

static bool param_name_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("_.-~[]", *s)))
            return false;
    return true;
}

static enum ts_err read_one(const struct ts_conf *c, const char *sec, struct ts_rule_conf *r,
                            char *err, size_t errsz)
{
    int rc;
    if ((rc = unknown_key(c, sec, err, errsz)))
        return rc;
    if (ts_strlcpy(r->name, sec + 5, sizeof r->name) >= sizeof r->name || !r->name[0])
        return rfail(c, sec, "kind", err, errsz, "rule name empty or longer than 47 characters");
    const char *kind = ts_conf_get(c, sec, "kind", NULL);
    if (!kind || !*kind)
        return rfail(c, sec, "kind", err, errsz,
                     "missing: expected loyalty, receipt, order or product");
    if (ts_ident_kind_parse(kind, &r->kind) != TS_OK)
        return rfail(c, sec, "kind", err, errsz, "expected loyalty, receipt, order or product");
    if ((rc = rstr(c, sec, "symbology", r->symbology, sizeof r->symbology, err, errsz)) ||
        (rc = rstr(c, sec, "prefix", r->prefix, sizeof r->prefix, err, errsz)) ||
        (rc = rstr(c, sec, "regex", r->regex, sizeof r->regex, err, errsz)) ||
        (rc = rstr(c, sec, "gs1_ai", r->gs1_ai, sizeof r->gs1_ai, err, errsz)) ||
        (rc = rstr(c, sec, "url_param", r->url_param, sizeof r->url_param, err, errsz)) ||
        (rc = rstr(c, sec, "strip_prefix", r->strip_prefix, sizeof r->strip_prefix, err, errsz)))
        return rc;
    if (r->symbology[0] == ']') {
        if (strlen(r->symbology) < 2 || strlen(r->symbology) > 3)
            return rfail(c, sec, "symbology", err, errsz,
                         "an AIM id is ']' + code character (+ modifier), e.g. ]E0 or ]Q");
    } else if (r->symbology[0] && !(r->upos = upos_by_name(r->symbology))) {
        return rfail(c, sec, "symbology", err, errsz,
                     "expected an AIM id (]E0, ]C1, ]Q3 ...) or a type name (EAN-13, UPC-A, "
                     "Code 128, GS1-128, QR Code, Data Matrix ...)");
    }
    if (r->gs1_ai[0] && !is_gs1_ai(r->gs1_ai))
        return rfail(c, sec, "gs1_ai", err, errsz, "expected a GS1 AI of 2 to 4 digits, e.g. 8018");
    if (r->url_param[0] && !param_name_ok(r->url_param))
        return rfail(c, sec, "url_param", err, errsz,
                     "a query parameter name (letters, digits, _ . - ~), e.g. card");
    long cap = 0;
    if ((rc = ts_conf_get_int(c, sec, "capture", 0, 1, 9, &cap, err, errsz)))
        return rc;
    r->capture = (int)cap;
    if (r->capture && !r->regex[0])
        return rfail(c, sec, "capture", err, errsz, "needs a regex with that many ( ) groups");
    if (r->regex[0]) {
        regex_t re;
        int e = regcomp(&re, r->regex, REG_EXTENDED);
        if (e) {
            char why[96], msg[192];
            regerror(e, &re, why, sizeof why);
            snprintf(msg, sizeof msg, "not a POSIX extended regular expression (%s)", why);
            return rfail(c, sec, "regex", err, errsz, msg);
        }
        size_t groups = re.re_nsub;
        regfree(&re);
        for (const char *p = r->regex; *p; p++)
            if (p[0] == '\\' && p[1] >= '1' && p[1] <= '9')
                return rfail(c, sec, "regex", err, errsz,
                             "back-references (\\1 ...) are not allowed: matching must stay "
                             "bounded");
            else if (p[0] == '\\' && p[1])
                p++;
        if ((size_t)r->capture > groups) {
            char msg[128];
            snprintf(msg, sizeof msg, "group %d asked for, the regex has %zu", r->capture, groups);
            return rfail(c, sec, "capture", err, errsz, msg);
        }
    }
    if ((rc = ts_conf_get_int(c, sec, "length", 0, 1, TS_SCAN_MAX - 1, &r->length, err, errsz)) ||
        (rc = ts_conf_get_int(c, sec, "min_length", 0, 1, TS_SCAN_MAX - 1, &r->min_length, err,
                              errsz)) ||
        (rc = ts_conf_get_int(c, sec, "max_length", 0, 1, TS_SCAN_MAX - 1, &r->max_length, err,
                              errsz)))
        return rc;
    if (r->min_length && r->max_length && r->min_length > r->max_length)
        return rfail(c, sec, "max_length", err, errsz, "smaller than min_length");
    if (r->length && (r->min_length || r->max_length))
        return rfail(c, sec, "length", err, errsz, "use length or min_length/max_length, not both");
    return TS_OK;
}

enum ts_err ts_rules_conf_read(const struct ts_conf *conf, struct ts_rules_conf *out, char *err,
                               size_t errsz)
{
    memset(out, 0, sizeof *out);
    const char *sec;
    for (size_t i = 0; (sec = ts_conf_section(conf, i)); i++) {
        if (strncmp(sec, "rule.", 5) != 0)
            continue;
        if (out->n == TS_RULES_MAX)
            return rfail(conf, sec, "kind", err, errsz, "too many rules (at most 32)");
        int rc = read_one(conf, sec, &out->r[out->n], err, errsz);
        if (rc)
            return rc;
        out->n++;
    }
    return TS_OK;
}

enum ts_err ts_rules_new(const struct ts_rules_conf *conf, struct ts_rules **out, char *err,
                         size_t errsz)
{
    struct ts_rules *r = calloc(1, sizeof *r);
    if (!r)
        return TS_ERR_NOMEM;
    int n = conf ? conf->n : 0;
    for (int i = 0; i < n; i++)
        r->r[i] = conf->r[i];
    /* The built-in defaults, after the configured rules. */
    struct ts_rule_conf *d = &r->r[n++];
    ts_strlcpy(d->name, "default:gsrn", sizeof d->name);
    ts_strlcpy(d->gs1_ai, "8018", sizeof d->gs1_ai);
    d->need_gs1 = true; /* "8018..." scanned as plain Code 128 stays as it was */
    d->kind = TS_IDENT_LOYALTY;
    d = &r->r[n++];
    ts_strlcpy(d->name, "default:loyalty", sizeof d->name);
    d->kind = TS_IDENT_LOYALTY;
    r->n = n;
    for (int i = 0; i < r->n; i++) {
        if (!r->r[i].regex[0])
            continue;
        if (regcomp(&r->re[i], r->r[i].regex, REG_EXTENDED | (r->r[i].capture ? 0 : REG_NOSUB))) {
            snprintf(err, errsz, "[rule.%s] regex: does not compile", r->r[i].name);
            ts_rules_free(r);
            return TS_ERR_CONFIG;
        }
        r->has_re[i] = true;
    }
    *out = r;
    return TS_OK;
}

void ts_rules_free(struct ts_rules *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        if (r->has_re[i])
            regfree(&r->re[i]);
    free(r);
}

static bool symbology_ok(const struct ts_rule_conf *rc, const struct ts_scan *s, int upos)
{
    if (!rc->symbology[0])
        return true;
    if (rc->symbology[0] == ']')
        return strncmp(s->aim, rc->symbology, strlen(rc->symbology)) == 0;
    return upos == rc->upos;
}

/* Does rule i hold for scan s? The identifier goes to value: the data, or
 * the AI's value with gs1_ai; prefix, regex and the lengths test it. */
static bool match(const struct ts_rules *r, int i, const struct ts_scan *s, int upos,
                  const struct ts_gs1 *gs1, bool gs1_ok, char *value, size_t valuesz)
{
    const struct ts_rule_conf *rc = &r->r[i];
    char param[TS_SCAN_MAX], group[TS_SCAN_MAX];
    regmatch_t m[10];
    if (!symbology_ok(rc, s, upos))
        return false;
    const char *v = s->data;
    if (rc->need_gs1 && !ts_symbology_is_gs1_aim(s->aim) && s->data[0] != '(')
        return false;
    if (rc->gs1_ai[0]) {
        if (!gs1_ok || !(v = ts_gs1_get(gs1, rc->gs1_ai)))
            return false;
    }
    if (rc->url_param[0]) {
        if (ts_url_query_param(v, rc->url_param, param, sizeof param) != TS_OK || !param[0])
            return false;
        v = param;
    }
    size_t n = strlen(v);
    if (rc->prefix[0] && strncmp(v, rc->prefix, strlen(rc->prefix)) != 0)
        return false;
    if (rc->length && n != (size_t)rc->length)
        return false;
    if (rc->min_length && n < (size_t)rc->min_length)
        return false;
    if (rc->max_length && n > (size_t)rc->max_length)
        return false;
    size_t nm = rc->capture ? (size_t)rc->capture + 1 : 0;
    if (r->has_re[i] && regexec(&r->re[i], v, nm, nm ? m : NULL, 0) != 0)
        return false;
    if (rc->capture) {
        regmatch_t g = m[rc->capture];
        if (g.rm_so < 0 || g.rm_eo < g.rm_so) /* the group took no part in the match */
            return false;
        memcpy(group, v + g.rm_so, (size_t)(g.rm_eo - g.rm_so));
        group[g.rm_eo - g.rm_so] = '\0';
        v = group;
    }
    size_t sp = strlen(rc->strip_prefix);
    if (sp && strncmp(v, rc->strip_prefix, sp) == 0)
        v += sp;
    ts_strlcpy(value, v, valuesz);
    return true;
}

enum ts_err ts_rules_resolve(const struct ts_rules *r, const struct ts_scan *scan,
                             struct ts_rule_match *out)
{
    /* Scans from the API carry only the AIM id: derive the type from it. */
    int upos = scan->upos_type ? scan->upos_type
                               : (int)ts_symbology_upos(scan->aim, scan->data, scan->data_len);
    /* Parsed once, lazily: most scans are plain EAN-13s no rule asks to
     * take apart. */
    struct ts_gs1 gs1;
    int gs1_state = 0; /* 0 = not tried, 1 = parsed, -1 = not GS1 */
    for (int i = 0; i < r->n; i++) {
        if (r->r[i].gs1_ai[0] && gs1_state == 0) {
            char why[128];
            gs1_state =
                ts_gs1_parse(scan->data, scan->data_len, &gs1, why, sizeof why) == TS_OK ? 1 : -1;
        }
        if (match(r, i, scan, upos, &gs1, gs1_state == 1, out->value, sizeof out->value)) {
            out->kind = r->r[i].kind;
            out->rule = r->r[i].name;
            return out->value[0] ? TS_OK : TS_ERR_INVAL;
        }
    }
    return TS_ERR_INVAL; /* not reached: default:loyalty takes anything */
}
