/* The payment card guard over JSON documents (ts_guard_json in guard.h):
 * purchase and return bodies on the agent, purchase events at the hub. */
#include "guard.h"
#include "ts.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct walk {
    const struct ts_guard *g;
    const char *const *idents;
    json_t *refused;
    struct ts_guard_json_report *rep;
    int rc;
};

static bool is_ident(const struct walk *w, const char *pattern)
{
    for (size_t i = 0; w->idents && w->idents[i]; i++)
        if (strcmp(w->idents[i], pattern) == 0)
            return true;
    return false;
}

static void note(struct walk *w, const char *path, const struct ts_guard_hit *h, bool refused)
{
    struct ts_guard_json_report *r = w->rep;
    if (refused) {
        if (r->refused++ == 0) {
            ts_strlcpy(r->field, path, sizeof r->field);
            ts_strlcpy(r->last4, h->last4, sizeof r->last4);
            r->kind = h->kind;
        }
        if (w->refused)
            json_array_append_new(w->refused, json_string(path));
        return;
    }
    if (r->masked++ == 0 && r->refused == 0) {
        ts_strlcpy(r->field, path, sizeof r->field);
        ts_strlcpy(r->last4, h->last4, sizeof r->last4);
        r->kind = h->kind;
    }
}

static void str(struct walk *w, json_t *v, const char *path, const char *pattern)
{
    struct ts_guard_hit h;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (ts_guard_find(w->g, s, n, &h) == TS_GUARD_PASS)
        return;
    if (is_ident(w, pattern)) {
        note(w, path, &h, true);
        return;
    }
    char *copy = malloc(n + 1);
    if (!copy) {
        w->rc = TS_ERR_NOMEM;
        note(w, path, &h, true);
        return;
    }
    memcpy(copy, s, n + 1);
    ts_guard_mask(w->g, copy, n, NULL);
    if (json_string_setn(v, copy, n) != 0) {
        w->rc = TS_ERR_NOMEM;
        note(w, path, &h, true);
    } else {
        note(w, path, &h, false);
    }
    explicit_bzero(copy, n);
    free(copy);
}

static void walk(struct walk *w, json_t *v, const char *path, const char *pattern)
{
    char p[160], q[160];
    if (json_is_string(v)) {
        str(w, v, path, pattern);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            snprintf(q, sizeof q, "%s[]", pattern);
            walk(w, e, p, q);
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            struct ts_guard_hit h;
            snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", k);
            snprintf(q, sizeof q, "%s%s%s", pattern, *pattern ? "." : "", k);
            if (ts_guard_find(w->g, k, strlen(k), &h) != TS_GUARD_PASS) {
                snprintf(p, sizeof p, "%s%s(key)", path, *path ? "." : "");
                note(w, p, &h, true);
                continue;
            }
            walk(w, e, p, q);
        }
    }
}

enum ts_err ts_guard_json(const struct ts_guard *g, json_t *doc, const char *const *idents,
                          json_t *refused, struct ts_guard_json_report *rep)
{
    struct walk w = {.g = g, .idents = idents, .refused = refused, .rep = rep, .rc = TS_OK};
    memset(rep, 0, sizeof *rep);
    walk(&w, doc, "", "");
    return w.rc;
}
