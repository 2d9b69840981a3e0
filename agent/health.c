/*
 * The health report (health.h): version, OS release, link and cursor lag,
 * cache size, outbox depth and oldest age, dead letters, each input's state,
 * certificate days left and clock skew, as compact JSON in base64url in the
 * X-Tillside-Health header of feed polls (docs/PROTOCOL.md "Health
 * reports"). Sent when it changed or every TS_HEALTH_HEARTBEAT_MS; the
 * values that move by themselves (lag, oldest age, skew) do not count as a
 * change, or every poll would carry one.
 */
#include "health.h"
#include "purchase.h"
#include "txcount.h"
#include "input.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OS_RELEASE "/etc/os-release"
#define MAX_INPUTS 16 /* the hub's TS_FLEET_MAX_INPUTS */
/* Looked at no more often than this: building a report counts the cache's
 * cards (a scan of the table under the lookup lock), and while catching up
 * the agent asks for page after page. */
#define LOOK_EVERY_MS 5000

struct ts_health {
    char os[129];
    char last_sig[TS_HEALTH_MAX_JSON + 1]; /* the last report sent, moving values zeroed */
    int64_t last_sent_ms;                  /* monotonic; 0 = never */
    int64_t last_look_ms;                  /* monotonic; 0 = never */
    bool has_skew;
    int64_t skew_s;
};

/* PRETTY_NAME of os-release(5): KEY=value, the value maybe quoted. */
static void os_release(char *out, size_t outsz)
{
    char *text = NULL;
    out[0] = '\0';
    if (ts_read_file(OS_RELEASE, 64 * 1024, &text, NULL) != TS_OK)
        return;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "PRETTY_NAME=", 12) != 0)
            continue;
        char *v = line + 12;
        size_t n = strlen(v);
        if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
            v[n - 1] = '\0';
            v++;
        }
        ts_sanitize(v, strlen(v), out, outsz, '?');
        break;
    }
    free(text);
}

static json_t *inputs_json(const struct ts_agent_parts *p)
{
    json_t *devs = ts_inputs_devices_json(p->inputs ? ts_agent_inputs_drivers(p->inputs) : NULL),
           *out = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d)
    {
        if (i >= MAX_INPUTS)
            break;
        char name[41]; /* 16 inputs fit the report's size limit */
        const char *n = json_string_value(json_object_get(d, "name"));
        ts_sanitize(n ? n : "", n ? strlen(n) : 0, name, sizeof name, '?');
        json_array_append_new(out, json_pack("{s:s, s:s}", "name", name, "state",
                                             json_string_value(json_object_get(d, "state"))));
    }
    json_decref(devs);
    return out;
}

/* The report object; with sig, the values that move by themselves zeroed. */
static json_t *report(struct ts_health *h, const struct ts_agent_parts *p, bool sig)
{
    struct ts_agent *a = p->core;
    int own = 0, hub = 0;
    bool have_hub = false, have_own = ts_trust_days(p->trust, &own, &have_hub, &hub);
    int64_t now = ts_now_wall_ms();
    pthread_mutex_lock(&a->cache_mu);
    int64_t cards = ts_cache_count(a->cache);
    pthread_mutex_unlock(&a->cache_mu);
    pthread_mutex_lock(&a->mu);
    bool up = a->link_online;
    int64_t last = a->last_sync_wall_ms;
    pthread_mutex_unlock(&a->mu);
    struct ts_outbox_stats st = {0};
    if (p->purch)
        ts_outbox_stats(p->purch->ob, &st);
    int64_t lag = !last ? -1 : now > last ? (now - last) / 1000 : 0;
    int64_t oldest = st.oldest_pending_ms && now > st.oldest_pending_ms
                         ? (now - st.oldest_pending_ms) / 1000
                         : 0;
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I}, s:o}", "v", 1,
                          "version", TS_VERSION, "os", h->os, "link", up ? "up" : "down", "lag_s",
                          (json_int_t)(sig && lag > 0 ? 0 : lag), "cards",
                          (json_int_t)(cards < 0 ? 0 : cards), "outbox", "depth",
                          (json_int_t)st.pending, "oldest_s", (json_int_t)(sig ? 0 : oldest),
                          "dead", (json_int_t)st.dead, "inputs", inputs_json(p));
    if (o && have_own)
        json_object_set_new(o, "cert_days", json_integer(own));
    json_t *tx = p->purch ? ts_txcount_report(p->purch->tx, now) : NULL;
    if (o && tx) /* the match rate's transactions (txcount.c) */
        json_object_set_new(o, "tx", tx);
    /* Whether the skew is a problem counts as a change; its exact value not. */
    if (o && h->has_skew)
        json_object_set_new(o, "skew_s",
                            json_integer(!sig ? h->skew_s : h->skew_s > 60 || h->skew_s < -60));
    return o;
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

enum ts_err ts_health_json(struct ts_health *h, const struct ts_agent_parts *p, ts_buf *out)
{
    char *s = dump(report(h, p, false));
    enum ts_err rc = s ? ts_buf_puts(out, s) : TS_ERR_NOMEM;
    free(s);
    return rc;
}

void ts_health_headers(struct ts_health **hp, const struct ts_agent_parts *p, const char *base,
                       char *out, size_t outsz)
{
    ts_strlcpy(out, base, outsz);
    if (!*hp && (*hp = calloc(1, sizeof **hp)) != NULL)
        os_release((*hp)->os, sizeof(*hp)->os);
    struct ts_health *h = *hp;
    if (!h)
        return;
    int64_t mono = ts_now_mono_ms();
    if (h->last_look_ms && mono - h->last_look_ms < LOOK_EVERY_MS)
        return;
    h->last_look_ms = mono;
    char *sig = dump(report(h, p, true)), *full = NULL;
    bool due = sig && (!h->last_sent_ms || mono - h->last_sent_ms >= TS_HEALTH_HEARTBEAT_MS ||
                       strcmp(sig, h->last_sig) != 0);
    if (due)
        full = dump(report(h, p, false));
    size_t n = full ? strlen(full) : 0, used = strlen(out);
    char enc[TS_HEALTH_MAX_JSON * 4 / 3 + 8];
    if (full && n <= TS_HEALTH_MAX_JSON && strlen(sig) < sizeof h->last_sig &&
        ts_base64_encode(full, n, enc, sizeof enc) && used + strlen(enc) + 24 < outsz) {
        /* base64url without padding (RFC 4648 §5). */
        size_t e = 0;
        for (char *c = enc; *c && *c != '='; c++, e++)
            *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
        enc[e] = '\0';
        snprintf(out + used, outsz - used, "X-Tillside-Health: %s\r\n", enc);
        ts_strlcpy(h->last_sig, sig, sizeof h->last_sig);
        h->last_sent_ms = mono;
    } else if (full) {
        TS_WARN("sync", "health report of %zu bytes not sent (over %d)", n, TS_HEALTH_MAX_JSON);
        h->last_sent_ms = mono; /* said once a heartbeat, not every poll */
    }
    free(sig);
    free(full);
}

void ts_health_note(struct ts_health *h, const struct ts_http_resp *r)
{
    if (!h || !r->date_s)
        return;
    h->skew_s = ts_now_wall_ms() / 1000 - r->date_s;
    h->has_skew = true;
}

void ts_health_free(struct ts_health *h)
{
    free(h);
}
