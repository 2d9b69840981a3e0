/* The agent's shared state: scans to sessions, link state, status. */
#include "agent.h"
#include "gzip.h"
#include "httpc.h"
#include "hublink.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUS_CAPACITY 256

/* Reads the API token, or creates one (0600) on first start so that only
 * processes that can read the state directory may change the session. */
static enum ts_err load_token(struct ts_agent *a, char *err, size_t errsz)
{
    char *text = NULL;
    int rc = ts_read_file(a->cfg.token_file, 4096, &text, NULL);
    if (rc == TS_OK) {
        size_t n = strcspn(text, "\r\n");
        text[n] = '\0';
        if (n < 16 || n >= sizeof a->token) {
            snprintf(err, errsz, "%s: token must be 16 to 64 characters", a->cfg.token_file);
            free(text);
            return TS_ERR_CONFIG;
        }
        memcpy(a->token, text, n + 1);
        free(text);
        return TS_OK;
    }
    if (rc != TS_ERR_NOTFOUND) {
        snprintf(err, errsz, "%s: cannot read (%s)", a->cfg.token_file, ts_strerror(rc));
        return rc;
    }
    uint8_t raw[32];
    if ((rc = ts_random(raw, sizeof raw)))
        return rc;
    ts_hex_encode(raw, sizeof raw, a->token);
    char line[80];
    int n = snprintf(line, sizeof line, "%s\n", a->token);
    rc = ts_write_file_atomic(a->cfg.token_file, line, (size_t)n, 0600);
    if (rc)
        snprintf(err, errsz, "%s: cannot write (%s)", a->cfg.token_file, ts_strerror(rc));
    return rc;
}

enum ts_err ts_agent_open(const struct ts_agent_config *cfg, struct ts_agent **out, char *err,
                          size_t errsz)
{
    struct ts_agent *a = calloc(1, sizeof *a);
    if (!a)
        return TS_ERR_NOMEM;
    a->cfg = *cfg;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->cache_mu, NULL);
    int rc = ts_mkdir_p(cfg->state_dir, 0700);
    if (rc) {
        snprintf(err, errsz, "state directory %s: %s", cfg->state_dir, ts_strerror(rc));
        goto fail;
    }
    char path[TS_AGENT_PATH_MAX + 16];
    ts_agent_cache_path(cfg, path, sizeof path);
    if ((rc = ts_cache_open(path, &a->cache, err, errsz)))
        goto fail;
    chmod(path, 0600);
    /* Status shows the last sync even before this run's first poll. */
    a->last_sync_wall_ms = ts_cache_last_sync(a->cache);
    if ((rc = load_token(a, err, errsz)))
        goto fail;
    if ((rc = ts_agent_page_key_init(a)))
        goto fail;
    if ((rc = ts_rules_new(&cfg->rules, &a->rules, err, errsz)))
        goto fail;
    if ((rc = ts_bus_new(BUS_CAPACITY, &a->bus)))
        goto fail;
    struct ts_hublink_opts ho = {.cfg = &a->cfg,
                                 .cache = a->cache,
                                 .cache_mu = &a->cache_mu,
                                 .unreachable = &a->sync_interrupt};
    if ((rc = ts_hublink_new(&ho, &a->hub)))
        goto fail;
    *out = a;
    return TS_OK;
fail:
    ts_agent_close(a);
    return rc;
}

void ts_agent_close(struct ts_agent *a)
{
    if (!a)
        return;
    ts_cache_close(a->cache);
    ts_rules_free(a->rules);
    ts_bus_free(a->bus);
    ts_hublink_free(a->hub);
    free(a->session_json);
    for (size_t i = 0; i < TS_AGENT_RECENT; i++)
        free(a->recent[i]);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->cache_mu);
    free(a);
}

void ts_agent_set_journal(struct ts_agent *a, struct ts_outbox *journal)
{
    a->journal = journal;
}

bool ts_agent_alive(struct ts_agent *a)
{
    pthread_mutex_lock(&a->cache_mu);
    pthread_mutex_unlock(&a->cache_mu);
    pthread_mutex_lock(&a->mu);
    pthread_mutex_unlock(&a->mu);
    return true;
}

/*
 * Asks the hub for one card on a cache miss, within lookup_timeout_ms in
 * total so the till never waits long: the key under the current tenant key
 * first, then (during a rotation, if time is left) the previous one.
 * Returns the card JSON (malloc'd) or NULL; the hub link has checked its
 * key version and stored it in the cache.
 */
static char *live_lookup(struct ts_agent *a, char keys[][TS_IDENT_KEY_HEX], int nkeys)
{
    char *card = NULL;
    int64_t deadline = ts_now_mono_ms() + a->cfg.lookup_timeout_ms;
    for (int k = 0; k < nkeys && !card; k++) {
        int64_t left = deadline - ts_now_mono_ms();
        if (left <= 0)
            break;
        char path[192];
        snprintf(path, sizeof path, "/v1/lookup?key=%s", keys[k]);
        json_t *ans = NULL;
        enum ts_err rc = ts_hublink_get(a->hub, "live", path, (int)left, &ans, &card);
        json_decref(ans);
        if (rc == TS_ERR_CONNECT)
            break;
        if (rc == TS_OK && !card)
            TS_WARN("lookup", "live lookup answer carries no usable card");
    }
    return card;
}

/* A product scan (kind product): the session stays as it is; only the
 * `scan` event tells the page (and SSE clients) it happened. The answer is
 * {"scan": {...}, "status": "ignored", "link": ...}. */
static enum ts_err product_scan(struct ts_agent *a, json_t *scan_o, const char *masked,
                                const struct ts_scan *scan, char **session_out)
{
    pthread_mutex_lock(&a->mu);
    a->scans++;
    bool online = a->link_online;
    pthread_mutex_unlock(&a->mu);
    json_t *ans = json_pack("{s:O, s:s, s:s}", "scan", scan_o, "status", "ignored", "link",
                            online ? "online" : "offline");
    char *scan_json = json_dumps(scan_o, JSON_COMPACT);
    char *ans_json = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    json_decref(scan_o);
    if (!scan_json || !ans_json) {
        free(scan_json);
        free(ans_json);
        return TS_ERR_NOMEM;
    }
    TS_INFO("scan", "source=%s code=%s aim=%s kind=product", scan->source, masked,
            scan->aim[0] ? scan->aim : "-");
    ts_bus_publish(a->bus, "scan", scan_json);
    free(scan_json);
    if (session_out)
        *session_out = ans_json;
    else
        free(ans_json);
    return TS_OK;
}

enum ts_err ts_agent_scan(struct ts_agent *a, const struct ts_scan *scan, char **session_out)
{
    char norm[TS_SCAN_MAX], keys[2][TS_IDENT_KEY_HEX], masked[32], at[32];
    char *card = NULL;
    int64_t synced = 0;
    const char *status = "unknown", *source = NULL;
    bool online;
    struct ts_rule_match m;

    ts_scan_mask(scan->data, masked, sizeof masked);
    ts_iso8601(scan->wall_ms, at, sizeof at);
    /* The identity rules say what was scanned and which part of it is the
     * identifier (rules.h); loyalty when no rule is configured. */
    bool resolved = ts_rules_resolve(a->rules, scan, &m) == TS_OK;
    if (!resolved)
        m.kind = TS_IDENT_LOYALTY;
    json_t *scan_o = json_pack("{s:s, s:s, s:s, s:s}", "code_masked", masked, "aim", scan->aim,
                               "kind", ts_ident_kind_name(m.kind), "at", at);
    if (!scan_o)
        return TS_ERR_NOMEM;
    if (resolved && m.kind == TS_IDENT_PRODUCT)
        return product_scan(a, scan_o, masked, scan, session_out);
    int nkeys = resolved && ts_ident_normalize(m.value, strlen(m.value), norm, sizeof norm) == TS_OK
                    ? ts_agent_ident_keys(&a->cfg, m.kind, norm, keys)
                    : 0;
    bool valid = nkeys > 0;
    json_t *sess = NULL;
    if (m.kind == TS_IDENT_RECEIPT || m.kind == TS_IDENT_ORDER) {
        pthread_mutex_lock(&a->mu);
        a->scans++;
        online = a->link_online;
        pthread_mutex_unlock(&a->mu);
        sess = json_pack("{s:O, s:s, s:s}", "scan", scan_o, "status", valid ? "unknown" : "invalid",
                         "link", online ? "online" : "offline");
        /* The journal and the hub know receipts by the number as printed:
         * the rule's identifier, not its normalized form. */
        if (sess && valid &&
            ts_agent_resolve_sale(a, m.kind, m.value, keys, nkeys, online, sess) == TS_OK)
            status = "found", source = json_string_value(json_object_get(sess, "source"));
        else if (!valid)
            status = "invalid";
        goto publish;
    }
    bool hit = ts_agent_cache_find(a, keys, nkeys, &card, &synced) == TS_OK;
    pthread_mutex_lock(&a->mu);
    a->scans++;
    online = a->link_online;
    if (hit) {
        a->lookups_hit++;
        source = "cache";
    } else {
        a->lookups_miss++;
    }
    pthread_mutex_unlock(&a->mu);
    if (!valid)
        status = "invalid";
    else if (!card && online && (card = live_lookup(a, keys, nkeys))) {
        source = "live";
        synced = ts_now_wall_ms();
    }
    if (card)
        status = "found";

    sess = json_pack("{s:O, s:s, s:s}", "scan", scan_o, "status", status, "link",
                     online ? "online" : "offline");
    if (sess && source) {
        char synced_s[32];
        ts_iso8601(synced, synced_s, sizeof synced_s);
        json_object_set_new(sess, "source", json_string(source));
        json_object_set_new(sess, "synced_at", json_string(synced_s));
        json_t *card_o = json_loads(card, 0, NULL);
        json_object_set_new(sess, "card", card_o ? card_o : json_null());
    }
publish:;
    char *scan_json = json_dumps(scan_o, JSON_COMPACT);
    char *sess_json = sess ? json_dumps(sess, JSON_COMPACT) : NULL;
    char log_source[16];
    ts_strlcpy(log_source, source ? source : "-", sizeof log_source);
    json_decref(scan_o);
    json_decref(sess);
    free(card);
    if (!scan_json || !sess_json) {
        free(scan_json);
        free(sess_json);
        return TS_ERR_NOMEM;
    }
    TS_INFO("scan", "source=%s code=%s aim=%s kind=%s rule=%s status=%s from=%s", scan->source,
            masked, scan->aim[0] ? scan->aim : "-", ts_ident_kind_name(m.kind),
            resolved ? m.rule : "-", status, log_source);

    pthread_mutex_lock(&a->mu);
    free(a->session_json);
    a->session_json = strdup(sess_json);
    a->session_mono_ms = ts_now_mono_ms(); /* the idle clear counts from here */
    ts_agent_remember_locked(a, sess_json);
    pthread_mutex_unlock(&a->mu);
    ts_bus_publish(a->bus, "scan", scan_json);
    ts_bus_publish(a->bus, "customer", sess_json);
    free(scan_json);
    if (session_out)
        *session_out = sess_json;
    else
        free(sess_json);
    return TS_OK;
}

char *ts_agent_session(struct ts_agent *a)
{
    pthread_mutex_lock(&a->mu);
    char *s = a->session_json ? strdup(a->session_json) : NULL;
    pthread_mutex_unlock(&a->mu);
    return s;
}

void ts_agent_clear(struct ts_agent *a)
{
    pthread_mutex_lock(&a->mu);
    free(a->session_json);
    a->session_json = NULL;
    pthread_mutex_unlock(&a->mu);
    ts_bus_publish(a->bus, "clear", "{}");
}

void ts_agent_set_link(struct ts_agent *a, bool online, const char *error)
{
    pthread_mutex_lock(&a->mu);
    bool changed = !a->link_known || a->link_online != online;
    a->link_known = true;
    a->link_online = online;
    ts_strlcpy(a->last_error, error ? error : "", sizeof a->last_error);
    pthread_mutex_unlock(&a->mu);
    if (changed) {
        /* The reason was logged once by whoever decided (the sync thread);
         * this line only marks the transition. */
        if (online)
            TS_INFO("sync", "link online (%s)", a->cfg.hub_url);
        else
            TS_INFO("sync", "link offline: serving from the cache");
        ts_bus_publish(a->bus, "link", online ? "{\"link\":\"online\"}" : "{\"link\":\"offline\"}");
    }
}

void ts_agent_note_page(struct ts_agent *a, size_t items, int64_t wall_ms)
{
    pthread_mutex_lock(&a->mu);
    a->feed_pages_applied++;
    a->feed_items_applied += items;
    a->last_sync_wall_ms = wall_ms;
    pthread_mutex_unlock(&a->mu);
}

void ts_agent_counters(struct ts_agent *a, struct ts_agent_counters *out)
{
    pthread_mutex_lock(&a->cache_mu);
    out->cards = ts_cache_count(a->cache);
    pthread_mutex_unlock(&a->cache_mu);
    pthread_mutex_lock(&a->mu);
    out->link_up = a->link_online;
    out->scans = a->scans;
    out->feed_items_applied = a->feed_items_applied;
    out->feed_pages_applied = a->feed_pages_applied;
    out->lookups_hit = a->lookups_hit;
    out->lookups_miss = a->lookups_miss;
    out->last_sync_wall_ms = a->last_sync_wall_ms;
    pthread_mutex_unlock(&a->mu);
    out->lookups_live = ts_hublink_answers(a->hub);
}

json_t *ts_agent_status_object(struct ts_agent *a)
{
    char cursor[TS_FEED_MAX_CURSOR + 1], last_sync[32], pos[TS_FEED_MAX_CURSOR + 1];
    bool resyncing = false;
    pthread_mutex_lock(&a->cache_mu);
    int64_t cards = ts_cache_count(a->cache);
    ts_cache_cursor(a->cache, cursor, sizeof cursor);
    ts_cache_position(a->cache, pos, sizeof pos, &resyncing);
    pthread_mutex_unlock(&a->cache_mu);
    pthread_mutex_lock(&a->mu);
    if (a->last_sync_wall_ms)
        ts_iso8601(a->last_sync_wall_ms, last_sync, sizeof last_sync);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:o, s:o, s:I, s:I, s:I, s:{s:I, s:I, s:I}}",
        "version", TS_VERSION, "link", a->link_online ? "online" : "offline", "store", a->cfg.store,
        "terminal", a->cfg.terminal, "hub", a->cfg.hub_url, "cards", (json_int_t)cards,
        "cursor_saved", cursor[0] != '\0', "last_sync",
        a->last_sync_wall_ms ? json_string(last_sync) : json_null(), "last_error",
        a->last_error[0] ? json_string(a->last_error) : json_null(), "feed_pages_applied",
        (json_int_t)a->feed_pages_applied, "feed_items_applied", (json_int_t)a->feed_items_applied,
        "scans", (json_int_t)a->scans, "lookups", "hit", (json_int_t)a->lookups_hit, "miss",
        (json_int_t)a->lookups_miss, "live", (json_int_t)ts_hublink_answers(a->hub));
    pthread_mutex_unlock(&a->mu);
    /* A 410 resync builds the new slice beside the live cards: lookups
     * still answer from "cards" while this is true. */
    if (o)
        json_object_set_new(o, "resyncing", json_boolean(resyncing));
    return o;
}
