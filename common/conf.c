/* INI configuration on top of inih, remembering where each key came from. */
#include "conf.h"
#include "ts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct conf_entry {
    char *section, *key, *value;
    int line;
};

struct ts_conf {
    char *name;
    struct conf_entry *v;
    size_t n, cap;
};

static enum ts_err on_entry(void *ud, const char *section, const char *key, const char *value,
                            int line)
{
    struct ts_conf *c = ud;
    if (!key) /* section header without keys: still record it */
        key = "";
    /* Later values override earlier ones for the same key. */
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].section, section) == 0 && strcmp(c->v[i].key, key) == 0 && *key) {
            char *nv = strdup(value ? value : "");
            if (!nv)
                return TS_ERR_NOMEM;
            free(c->v[i].value);
            c->v[i].value = nv;
            c->v[i].line = line;
            return TS_OK;
        }
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        struct conf_entry *nv = realloc(c->v, cap * sizeof *nv);
        if (!nv)
            return TS_ERR_NOMEM;
        c->v = nv;
        c->cap = cap;
    }
    struct conf_entry *e = &c->v[c->n];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value ? value : "");
    e->line = line;
    if (!e->section || !e->key || !e->value) {
        free(e->section);
        free(e->key);
        free(e->value);
        return TS_ERR_NOMEM;
    }
    c->n++;
    return TS_OK;
}

/*
 * A small INI reader of our own: inih as packaged in Debian is built without
 * line numbers, and every config error must name its file and line.
 * Syntax: "[section]", "key = value", comments starting with ';' or '#',
 * blank lines. Values are trimmed; inline comments are " ;" or " #".
 */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

static enum ts_err parse_text(struct ts_conf *c, const char *text, char *err, size_t errsz)
{
    char section[128] = "";
    int lineno = 0;
    enum ts_err rc;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[2048];
        lineno++;
        if (n >= sizeof line) {
            snprintf(err, errsz, "%s:%d: line too long", c->name, lineno);
            return TS_ERR_CONFIG;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : p + n;
        char *s = trim(line);
        if (*s == '\0' || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || close == s + 1 || *trim(close + 1) != '\0') {
                snprintf(err, errsz, "%s:%d: bad section header (expected [name])", c->name,
                         lineno);
                return TS_ERR_CONFIG;
            }
            *close = '\0';
            ts_strlcpy(section, trim(s + 1), sizeof section);
            if ((rc = on_entry(c, section, NULL, NULL, lineno)) != TS_OK)
                return rc;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errsz, "%s:%d: expected key = value", c->name, lineno);
            return TS_ERR_CONFIG;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        for (char *q = val; *q; q++)
            if ((*q == ';' || *q == '#') && (q == val || q[-1] == ' ' || q[-1] == '\t')) {
                *q = '\0';
                val = trim(val);
                break;
            }
        if (*key == '\0' || section[0] == '\0') {
            snprintf(err, errsz, "%s:%d: %s", c->name, lineno,
                     *key ? "key outside of any [section]" : "missing key name");
            return TS_ERR_CONFIG;
        }
        if ((rc = on_entry(c, section, key, val, lineno)) != TS_OK)
            return rc;
    }
    return TS_OK;
}

static struct ts_conf *conf_new(const char *name)
{
    struct ts_conf *c = calloc(1, sizeof *c);
    if (c && !(c->name = strdup(name))) {
        free(c);
        c = NULL;
    }
    return c;
}

enum ts_err ts_conf_load(const char *path, struct ts_conf **out, char *err, size_t errsz)
{
    char *text = NULL;
    int rc = ts_read_file(path, 1 << 20, &text, NULL);
    if (rc != TS_OK) {
        snprintf(err, errsz, "%s: cannot read (%s)", path, ts_strerror(rc));
        return rc;
    }
    rc = ts_conf_parse(path, text, out, err, errsz);
    free(text);
    return rc;
}

enum ts_err ts_conf_parse(const char *name, const char *text, struct ts_conf **out, char *err,
                          size_t errsz)
{
    struct ts_conf *c = conf_new(name);
    if (!c)
        return TS_ERR_NOMEM;
    int rc = parse_text(c, text, err, errsz);
    if (rc != TS_OK) {
        ts_conf_free(c);
        return rc;
    }
    *out = c;
    return TS_OK;
}

void ts_conf_free(struct ts_conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].section);
        free(c->v[i].key);
        free(c->v[i].value);
    }
    free(c->v);
    free(c->name);
    free(c);
}

static const struct conf_entry *find(const struct ts_conf *c, const char *section, const char *key)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].section, section) == 0 && strcmp(c->v[i].key, key) == 0)
            return &c->v[i];
    return NULL;
}

const char *ts_conf_get(const struct ts_conf *c, const char *section, const char *key,
                        const char *def)
{
    const struct conf_entry *e = find(c, section, key);
    return e ? e->value : def;
}

const char *ts_conf_where(const struct ts_conf *c, const char *section, const char *key, char *buf,
                          size_t bufsz)
{
    const struct conf_entry *e = find(c, section, key);
    if (e)
        snprintf(buf, bufsz, "%s:%d", c->name, e->line);
    else
        snprintf(buf, bufsz, "%s", c ? c->name : "(defaults)");
    return buf;
}

enum ts_err ts_conf_errf(const struct ts_conf *c, const char *section, const char *key, char *err,
                         size_t errsz, const char *fmt, ...)
{
    if (!err || errsz == 0)
        return TS_ERR_CONFIG;
    char where[1100], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errsz, "%s: [%s] %s: %s", ts_conf_where(c, section, key, where, sizeof where),
             section, key, msg);
    return TS_ERR_CONFIG;
}

enum ts_err ts_conf_get_int(const struct ts_conf *c, const char *section, const char *key, long def,
                            long min, long max, long *out, char *err, size_t errsz)
{
    const struct conf_entry *e = find(c, section, key);
    if (!e) {
        *out = def;
        return TS_OK;
    }
    char *end;
    errno = 0;
    long v = strtol(e->value, &end, 10);
    if (errno || end == e->value || *end != '\0' || v < min || v > max) {
        snprintf(err, errsz, "%s:%d: [%s] %s = '%s': expected an integer from %ld to %ld", c->name,
                 e->line, section, key, e->value, min, max);
        return TS_ERR_CONFIG;
    }
    *out = v;
    return TS_OK;
}

enum ts_err ts_conf_get_bool(const struct ts_conf *c, const char *section, const char *key,
                             bool def, bool *out, char *err, size_t errsz)
{
    const struct conf_entry *e = find(c, section, key);
    if (!e) {
        *out = def;
        return TS_OK;
    }
    static const char *yes[] = {"1", "yes", "true", "on"}, *no[] = {"0", "no", "false", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(e->value, yes[i]) == 0) {
            *out = true;
            return TS_OK;
        }
        if (strcasecmp(e->value, no[i]) == 0) {
            *out = false;
            return TS_OK;
        }
    }
    snprintf(err, errsz, "%s:%d: [%s] %s = '%s': expected yes or no", c->name, e->line, section,
             key, e->value);
    return TS_ERR_CONFIG;
}

const char *ts_conf_section(const struct ts_conf *c, size_t i)
{
    size_t seen = 0;
    for (size_t k = 0; k < c->n; k++) {
        int dup = 0;
        for (size_t j = 0; j < k; j++)
            if (strcmp(c->v[j].section, c->v[k].section) == 0) {
                dup = 1;
                break;
            }
        if (dup)
            continue;
        if (seen == i)
            return c->v[k].section;
        seen++;
    }
    return NULL;
}

const char *ts_conf_key(const struct ts_conf *c, const char *section, size_t i)
{
    size_t seen = 0;
    for (size_t k = 0; k < c->n; k++) {
        if (strcmp(c->v[k].section, section) != 0 || !c->v[k].key[0])
            continue;
        if (seen == i)
            return c->v[k].key;
        seen++;
    }
    return NULL;
}
