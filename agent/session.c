/*
 * Around the current session: what the associate page needs beyond "show
 * the card".
 *
 * - The idle clear: a card left on screen after the customer walked away is
 *   the creepy part of a customer card, so after [page] idle_clear_s without
 *   a new scan the session goes and `clear` tells every page and watch.
 * - The last few sessions, for the "previous card" key: an associate who
 *   cleared too early, or scanned a product by mistake, gets the customer
 *   back. Kept in memory only, for TS_AGENT_RECENT_MAX_MS at most.
 * - The page key: Esc on the page clears the card, and POST
 *   /api/v1/session/clear needs a credential. The page is served with a key
 *   derived from the API token that is good for that endpoint and POST
 *   /api/v1/consent (the page's consent control) only, so whoever can load
 *   the page (any local process can; a web page elsewhere cannot read it: no
 *   CORS and the Host guard) can at worst blank the screen or record a
 *   consent choice, never scan or record a purchase.
 */
#include "agent.h"
#include "worker.h"

#include <jansson.h>
#include <mbedtls/md.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Long enough to undo a mistaken clear, short enough that a card does not
 * come back for the next customer in the queue. */
#define TS_AGENT_RECENT_MAX_MS (10LL * 60 * 1000)

/* Drops sessions older than TS_AGENT_RECENT_MAX_MS (a->mu held). */
static void prune_locked(struct ts_agent *a, int64_t now)
{
    for (size_t i = 0; i < TS_AGENT_RECENT; i++) {
        if (a->recent[i] && now - a->recent_mono_ms[i] > TS_AGENT_RECENT_MAX_MS) {
            free(a->recent[i]);
            a->recent[i] = NULL;
        }
    }
}

void ts_agent_remember_locked(struct ts_agent *a, const char *sess)
{
    char *copy = strdup(sess);
    if (!copy)
        return; /* history is a convenience: losing an entry is harmless */
    free(a->recent[TS_AGENT_RECENT - 1]);
    memmove(&a->recent[1], &a->recent[0], (TS_AGENT_RECENT - 1) * sizeof a->recent[0]);
    memmove(&a->recent_mono_ms[1], &a->recent_mono_ms[0],
            (TS_AGENT_RECENT - 1) * sizeof a->recent_mono_ms[0]);
    a->recent[0] = copy;
    a->recent_mono_ms[0] = ts_now_mono_ms();
}

char *ts_agent_previous(struct ts_agent *a, int n)
{
    char *out = NULL;
    if (n < 1)
        return NULL;
    pthread_mutex_lock(&a->mu);
    prune_locked(a, ts_now_mono_ms());
    /* recent[0] is the session on screen, if there is one. */
    size_t idx = (size_t)n - 1 + (a->session_json ? 1 : 0);
    if (idx < TS_AGENT_RECENT && a->recent[idx])
        out = strdup(a->recent[idx]);
    pthread_mutex_unlock(&a->mu);
    return out;
}

void ts_agent_clear_reason(struct ts_agent *a, const char *reason)
{
    json_t *o = json_pack("{s:s}", "reason", reason);
    char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pthread_mutex_lock(&a->mu);
    free(a->session_json);
    a->session_json = NULL;
    pthread_mutex_unlock(&a->mu);
    ts_bus_publish(a->bus, "clear", data ? data : "{}");
    free(data);
}

enum ts_err ts_agent_page_key_init(struct ts_agent *a)
{
    static const char label[] = "tillside page key v1";
    uint8_t mac[32];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    /* HMAC(token, label): unguessable without the token, the same after a
     * restart so an open page keeps working, and useless for anything but
     * the clear endpoint. */
    if (!md || mbedtls_md_hmac(md, (const unsigned char *)a->token, strlen(a->token),
                               (const unsigned char *)label, sizeof label - 1, mac) != 0)
        return TS_ERR_INVAL;
    ts_hex_encode(mac, sizeof mac, a->page_key);
    return TS_OK;
}

char *ts_agent_page_render(const struct ts_agent *a, size_t *len)
{
    char idle[24];
    snprintf(idle, sizeof idle, "%ld", a->cfg.idle_clear_s);
    unsigned ch = a->cfg.consent_channels;
    const char *channels = (ch & TS_CONSENT_EMAIL) && (ch & TS_CONSENT_SMS) ? "email,sms"
                           : ch & TS_CONSENT_EMAIL                          ? "email"
                           : ch & TS_CONSENT_SMS                            ? "sms"
                                                                            : "";
    /* Placeholders in agent/page/index.html, filled when the page is served. */
    const char *const fill[][2] = {{"@@PAGE_KEY@@", a->page_key},
                                   {"@@IDLE_CLEAR_S@@", idle},
                                   {"@@CONSENT_CHANNELS@@", channels}};
    const size_t nfill = sizeof fill / sizeof fill[0];
    ts_buf b = {0};
    const char *p = ts_page_index_html, *end = ts_page_index_html + ts_page_index_html_len;
    int rc = TS_OK;
    while (rc == TS_OK && p < end) {
        const char *next = NULL;
        size_t which = 0;
        for (size_t i = 0; i < nfill; i++) {
            const char *at = strstr(p, fill[i][0]);
            if (at && (!next || at < next))
                next = at, which = i;
        }
        if (!next) {
            rc = ts_buf_append(&b, p, (size_t)(end - p));
            break;
        }
        rc = ts_buf_append(&b, p, (size_t)(next - p));
        if (rc == TS_OK)
            rc = ts_buf_puts(&b, fill[which][1]);
        p = next + strlen(fill[which][0]);
    }
    if (rc != TS_OK || !b.data) {
        ts_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return ts_buf_steal(&b);
}

/* ---- the idle clear ------------------------------------------------------*/

struct ts_idle {
    struct ts_agent *a;
    struct ts_worker w;
};

#define IDLE_TICK_MS 250 /* how late a clear may come, at most */

static void idle_main(struct ts_worker *w, void *arg)
{
    struct ts_idle *t = arg;
    struct ts_agent *a = t->a;
    const int64_t limit = a->cfg.idle_clear_s * 1000;
    while (!ts_worker_sleep(w, IDLE_TICK_MS, TS_WORKER_NO_KICK)) {
        pthread_mutex_lock(&a->mu);
        /* Decided and done under one lock, so a scan landing right now is
         * never the one cleared. */
        bool due = a->session_json && ts_now_mono_ms() - a->session_mono_ms >= limit;
        if (due) {
            free(a->session_json);
            a->session_json = NULL;
        }
        prune_locked(a, ts_now_mono_ms());
        pthread_mutex_unlock(&a->mu);
        if (due) {
            TS_INFO("page", "card cleared after %ld s without a scan", a->cfg.idle_clear_s);
            ts_bus_publish(a->bus, "clear", "{\"reason\":\"idle\"}");
        }
    }
}

enum ts_err ts_idle_start(struct ts_agent *a, struct ts_idle **out)
{
    *out = NULL;
    if (a->cfg.idle_clear_s <= 0)
        return TS_OK; /* "0 = never": no thread at all */
    struct ts_idle *t = calloc(1, sizeof *t);
    if (!t)
        return TS_ERR_NOMEM;
    t->a = a;
    if (ts_worker_init(&t->w) != TS_OK || ts_worker_start(&t->w, idle_main, t) != TS_OK) {
        ts_worker_destroy(&t->w);
        free(t);
        return TS_ERR_NOMEM;
    }
    *out = t;
    return TS_OK;
}

void ts_idle_stop(struct ts_idle *t)
{
    if (!t)
        return;
    ts_worker_destroy(&t->w); /* stops and joins */
    free(t);
}
