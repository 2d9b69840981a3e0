/* Text rendering of customer cards (see render.h). */
#include "render.h"

#include <stdarg.h>
#include <string.h>

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* Writes text cut to the terminal width, counting UTF-8 code points as one
 * column each (good enough for names and product titles). */
static void put(const struct ts_render *r, const char *ansi, const char *text)
{
    int cols = 0;
    if (r->color && ansi)
        fputs(ansi, r->f);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) != 0x80) {
            if (r->width > 0 && cols >= r->width)
                break;
            cols++;
        }
        if (*p >= 0x20 || *p == '\t')
            fputc(*p, r->f); /* control characters never reach the terminal */
    }
    if (r->color && ansi)
        fputs("\033[0m", r->f);
    fputc('\n', r->f);
}

static void line(const struct ts_render *r, const char *ansi, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void line(const struct ts_render *r, const char *ansi, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    put(r, ansi, buf);
}

/* The hint a hub.conf [predictions] mapping made of the CDP's predictions
 * (docs/PROTOCOL.md "Predictions"): its plain words, the bands it rests on
 * and where they came from. Never a score: the card carries none. */
static void prediction(const struct ts_render *r, json_t *card)
{
    static const struct {
        const char *key, *text;
    } hints[] = {
        {"valued_drifting", "loyal customer, not seen for a while"},
        {"valued_due", "valued customer, usually buys again about now"},
        {"valued", "one of the most valuable customers"},
        {"drifting", "may be drifting away"},
        {"due", "usually buys again about now"},
    };
    json_t *p = json_object_get(card, "prediction");
    if (!json_is_object(p))
        return;
    const char *key = jstr(p, "hint"), *text = NULL;
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (strcmp(key, hints[i].key) == 0)
            text = hints[i].text;
    json_t *v = json_object_get(p, "value"), *c = json_object_get(p, "churn"),
           *n = json_object_get(p, "next_order");
    if (text)
        line(r, "\033[36m", "  %-22s %s", "hint", text);
    char bands[256] = "";
    int len = 0;
    if (v)
        len += snprintf(bands + len, sizeof bands - (size_t)len, "value %s", jstr(v, "band"));
    if (c && len < (int)sizeof bands)
        len += snprintf(bands + len, sizeof bands - (size_t)len, "%schurn risk %s",
                        len ? " · " : "", jstr(c, "band"));
    if (n && len < (int)sizeof bands)
        snprintf(bands + len, sizeof bands - (size_t)len, "%snext order %s", len ? " · " : "",
                 json_is_true(json_object_get(n, "due")) ? "due now" : jstr(n, "date"));
    json_t *first = v ? v : c ? c : n;
    line(r, "\033[2m", "  %-22s %s (%s, as of %s)", "predicted", bands, jstr(first, "source"),
         jstr(first, "as_of"));
}

void ts_render_card(const struct ts_render *r, json_t *card)
{
    char head[512];
    int n =
        snprintf(head, sizeof head, "%s", *jstr(card, "name") ? jstr(card, "name") : "(no name)");
    if (*jstr(card, "tier") && n < (int)sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, " · %s", jstr(card, "tier"));
    json_t *points = json_object_get(card, "points");
    if (json_is_integer(points) && n < (int)sizeof head)
        snprintf(head + n, sizeof head - (size_t)n, " · %lld points",
                 (long long)json_integer_value(points));
    put(r, "\033[1m", head);
    if (json_is_false(json_object_get(card, "consent")))
        return;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(card, "interests"), i, it)
    {
        const char *sig = jstr(it, "signal");
        long long count = json_integer_value(json_object_get(it, "count"));
        char label[48];
        if (strcmp(sig, "cart") == 0)
            snprintf(label, sizeof label, "in online cart");
        else if (strcmp(sig, "viewed") == 0 && count > 0)
            snprintf(label, sizeof label, "viewed x%lld this week", count);
        else if (strcmp(sig, "viewed") == 0)
            snprintf(label, sizeof label, "viewed earlier");
        else if (strcmp(sig, "wishlist") == 0)
            snprintf(label, sizeof label, "on wishlist");
        else
            snprintf(label, sizeof label, "%s", *sig ? sig : "interest");
        line(r, strcmp(sig, "cart") == 0 ? "\033[33m" : NULL, "  %-22s %s", label,
             jstr(it, "name"));
    }
    json_array_foreach(json_object_get(card, "orders"), i, it)
    {
        line(r, NULL, "  order %-16s %.2f %s %s", jstr(it, "order_id"),
             json_number_value(json_object_get(it, "total")), jstr(it, "currency"),
             jstr(it, "status"));
    }
    const char *sugg = jstr(json_object_get(card, "suggested"), "name");
    if (*sugg)
        line(r, "\033[32m", "  %-22s %s", "suggest", sugg);
    prediction(r, card);
}

void ts_render_session(const struct ts_render *r, json_t *session)
{
    const char *status = jstr(session, "status");
    if (strcmp(status, "found") == 0) {
        ts_render_card(r, json_object_get(session, "card"));
        const char *at = jstr(session, "synced_at");
        /* "2026-11-28T16:37:15.123Z" → "16:37" (UTC, as synced). */
        line(r, "\033[2m", "  synced %.5s UTC · from %s · link %s",
             strlen(at) >= 16 ? at + 11 : "?", jstr(session, "source"), jstr(session, "link"));
    } else {
        put(r, "\033[1m", strcmp(status, "invalid") == 0 ? "Invalid code" : "Unknown customer");
        line(r, NULL, "  %s · link %s", jstr(json_object_get(session, "scan"), "code_masked"),
             jstr(session, "link"));
    }
}
