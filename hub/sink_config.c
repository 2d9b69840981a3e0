/*
 * [sink.NAME] sections (docs/OPERATIONS.md "Sinks"): any number of sinks,
 * each a vendor type with its URL, CA file, the kinds it gets, the profile
 * identifier, whether it takes anonymous events, and its credentials. The
 * credentials may live in [hub] secrets_file, an INI file of the same
 * [sink.NAME] (and [upstream]) sections that only its owner can read; they
 * are never logged or shown. [upstream] url/write_key is sink "upstream"
 * of type segment, as before.
 */
#include "hub.h"
#include "../common/conf.h"
#include "url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TS_SINK_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

static bool in(const char *const *list, const char *key)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], key) == 0)
            return true;
    return false;
}

/* ts_conf_errf at key's line, or, for a key the section lacks, at its type's
 * line (so the message still says file:line). */
static enum ts_err key_errf(const struct ts_conf *c, const char *sec, const char *key, char *err,
                            size_t errsz, const char *msg)
{
    if (ts_conf_get(c, sec, key, NULL) || !ts_conf_get(c, sec, "type", NULL))
        return ts_conf_errf(c, sec, key, err, errsz, "%s", msg);
    char where[1100];
    snprintf(err, errsz, "%s: [%s] %s: %s", ts_conf_where(c, sec, "type", where, sizeof where), sec,
             key, msg);
    return TS_ERR_CONFIG;
}

static enum ts_err put(const struct ts_conf *c, const char *sec, struct ts_sink_conf *k,
                       const char *key, const char *value, bool secret, char *err, size_t errsz)
{
    if (k->nkv == TS_SINK_MAX_KEYS)
        return ts_conf_errf(c, sec, key, err, errsz, "too many keys");
    struct ts_sink_kv *kv = &k->kv[k->nkv];
    ts_strlcpy(kv->key, key, sizeof kv->key);
    if (ts_strlcpy(kv->value, value, sizeof kv->value) >= sizeof kv->value)
        return ts_conf_errf(c, sec, key, err, errsz, "value too long (max %zu bytes)",
                            sizeof kv->value - 1);
    kv->secret = secret;
    k->nkv++;
    return TS_OK;
}

/* The vendor's keys of section sec, from c or else the secrets file. */
static enum ts_err vendor_keys(const struct ts_conf *c, const struct ts_conf *sf, const char *sec,
                               const struct ts_sink_vendor *v, struct ts_sink_conf *k, char *err,
                               size_t errsz)
{
    const char *const *lists[] = {v->required, v->secrets, v->options};
    enum ts_err rc = TS_OK;
    for (size_t l = 0; rc == TS_OK && l < 3; l++)
        for (size_t i = 0; rc == TS_OK && lists[l] && lists[l][i]; i++) {
            const char *key = lists[l][i];
            if (ts_sink_conf_get(k, key, NULL))
                continue; /* listed twice (required and secret) */
            const char *val = ts_conf_get(c, sec, key, NULL);
            bool from_sf = false;
            if (!val && sf) {
                val = ts_conf_get(sf, sec, key, NULL);
                from_sf = val != NULL;
            }
            if (val && val[0])
                rc = put(from_sf ? sf : c, sec, k, key, val, from_sf || in(v->secrets, key), err,
                         errsz);
        }
    for (size_t i = 0; rc == TS_OK && v->required && v->required[i]; i++)
        if (!ts_sink_conf_get(k, v->required[i], NULL)) {
            char msg[200];
            snprintf(msg, sizeof msg, "required for type %s (here or in [hub] secrets_file)",
                     v->type);
            rc = key_errf(c, sec, v->required[i], err, errsz, msg);
        }
    return rc;
}

/*
 * The vendor's own checks of its keys (a project token's form, a login URL):
 * its init(), run here, where both `run` and `check-config` load the
 * configuration, so check-config refuses what start would. The vendor words
 * its message "[sink.NAME] key: why"; it is reported at that key's line.
 */
static enum ts_err vendor_checks(const struct ts_conf *c, const char *sec,
                                 const struct ts_sink_vendor *v, const struct ts_sink_conf *k,
                                 char *err, size_t errsz)
{
    void *state = NULL;
    char why[400] = "";
    if (v->init(k, &state, why, sizeof why) == TS_OK) {
        if (v->fini)
            v->fini(state);
        return TS_OK;
    }
    const char *msg = why;
    char key[40] = "type";
    size_t pl = strlen(sec) + 3; /* "[sec] " */
    if (why[0] == '[' && strncmp(why + 1, sec, strlen(sec)) == 0 && why[pl - 2] == ']')
        msg = why + pl;
    size_t kl = strcspn(msg, ": ");
    bool named = msg != why && kl > 0 && kl < sizeof key;
    if (named) {
        memcpy(key, msg, kl);
        key[kl] = '\0';
    }
    if (named && msg[kl] == ':') /* "key: why": the message says the key */
        msg += kl + strspn(msg + kl, ": ");
    return key_errf(c, sec, key, err, errsz, msg);
}

static enum ts_err kinds_of(const struct ts_conf *c, const char *sec, const char *s,
                            unsigned supported, unsigned *out, char *err, size_t errsz)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"purchases", TS_SINK_PURCHASE},
                 {"returns", TS_SINK_RETURN},
                 {"consent", TS_SINK_CONSENT},
                 {"coupons", TS_SINK_COUPON}};
    *out = 0;
    char buf[200];
    ts_strlcpy(buf, s, sizeof buf);
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(t, names[i].name) == 0)
                bit = names[i].bit;
        if (!bit)
            return ts_conf_errf(c, sec, "send", err, errsz,
                                "\"%s\": expected purchases, returns, consent or coupons", t);
        if (!(supported & bit))
            return ts_conf_errf(c, sec, "send", err, errsz, "this type does not take %s", t);
        *out |= bit;
    }
    return TS_OK;
}

static enum ts_err one_sink(const struct ts_conf *c, const struct ts_conf *sf, const char *sec,
                            const char *name, const char *type, struct ts_sink_conf *k, char *err,
                            size_t errsz)
{
    memset(k, 0, sizeof *k);
    if (!name[0] || strlen(name) >= sizeof k->name ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_-") != strlen(name))
        return ts_conf_errf(c, sec, "type", err, errsz,
                            "sink names are 1 to 63 letters, digits, '_' or '-'");
    ts_strlcpy(k->name, name, sizeof k->name);
    const struct ts_sink_vendor *v = ts_sink_vendor_find(type);
    if (!v) {
        char known[200] = "";
        for (size_t i = 0; ts_sink_vendor_at(i); i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     ts_sink_vendor_at(i)->type);
        return ts_conf_errf(c, sec, "type", err, errsz, "expected one of %s", known);
    }
    ts_strlcpy(k->type, type, sizeof k->type);
    const char *url = ts_conf_get(c, sec, "url", "");
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return ts_conf_errf(c, sec, "url", err, errsz, "expected https://host[:port][/path]");
    if (ts_strlcpy(k->url, url, sizeof k->url) >= sizeof k->url)
        return ts_conf_errf(c, sec, "url", err, errsz, "too long");
    struct ts_url pu;
    char why[200];
    if (ts_url_parse(url, &pu, why, sizeof why) != TS_OK)
        return ts_conf_errf(c, sec, "url", err, errsz, "%s", why);
    size_t ul = strlen(k->url);
    while (ul > 8 && k->url[ul - 1] == '/')
        k->url[--ul] = '\0';
    if (ts_strlcpy(k->ca_file, ts_conf_get(c, sec, "ca_file", TS_SINK_DEFAULT_CA),
                   sizeof k->ca_file) >= sizeof k->ca_file)
        return ts_conf_errf(c, sec, "ca_file", err, errsz, "too long");
    enum ts_err rc;
    const char *send = ts_conf_get(c, sec, "send", NULL);
    if (send) {
        if ((rc = kinds_of(c, sec, send, v->kinds, &k->send, err, errsz)))
            return rc;
    } else {
        k->send = v->kinds;
    }
    const char *id = ts_conf_get(c, sec, "identity", "user_id");
    if (strcmp(id, "user_id") == 0)
        k->identity = TS_SINK_ID_USER;
    else if (strcmp(id, "email") == 0)
        k->identity = TS_SINK_ID_EMAIL;
    else
        return ts_conf_errf(c, sec, "identity", err, errsz, "expected user_id or email");
    long cap;
    if ((rc = ts_conf_get_bool(c, sec, "anonymous", v->anonymous, &k->anonymous, err, errsz)) ||
        (rc = ts_conf_get_int(c, sec, "max_backoff_s", 300, 1, 86400, &cap, err, errsz)))
        return rc;
    k->max_backoff_s = (int)cap;
    long mif;
    if ((rc = ts_conf_get_int(c, sec, "max_in_flight", 0, 0, TS_SINK_MAX_IN_FLIGHT, &mif, err,
                              errsz)))
        return rc;
    k->max_in_flight = (int)mif;
    const char *rate = ts_conf_get(c, sec, "rate", NULL);
    if (rate) {
        char *end;
        k->rate = strtod(rate, &end);
        if (end == rate || *end || !(k->rate > 0) || k->rate > 1e6)
            return ts_conf_errf(c, sec, "rate", err, errsz,
                                "expected requests per second, above 0");
    }
    if ((rc = vendor_keys(c, sf, sec, v, k, err, errsz)))
        return rc;
    if (!send && v->default_kinds)
        k->send = v->default_kinds(k) & v->kinds;
    return vendor_checks(c, sec, v, k, err, errsz);
}

/* The secrets file: owned by us or root, readable by its owner only. */
static enum ts_err load_secrets(const struct ts_conf *c, const char *path, struct ts_conf **out,
                                char *err, size_t errsz)
{
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0)
        return ts_conf_errf(c, "hub", "secrets_file", err, errsz, "%s: cannot read it", path);
    if ((st.st_mode & 077) || (st.st_uid != 0 && st.st_uid != geteuid()))
        return ts_conf_errf(c, "hub", "secrets_file", err, errsz,
                            "%s: must belong to root (or the hub's user) and be readable by its "
                            "owner only (chmod 600)",
                            path);
    return ts_conf_load(path, out, err, errsz);
}

enum ts_err ts_hub_sinks_conf(const struct ts_conf *c, struct ts_hub_config *o, char *err,
                              size_t errsz)
{
    struct ts_conf *sf = NULL;
    enum ts_err rc = TS_OK;
    o->nsinks = 0;
    const char *path = ts_conf_get(c, "hub", "secrets_file", "");
    if (ts_strlcpy(o->secrets_file, path, sizeof o->secrets_file) >= sizeof o->secrets_file)
        return ts_conf_errf(c, "hub", "secrets_file", err, errsz, "too long");
    if (path[0] && (rc = load_secrets(c, path, &sf, err, errsz)))
        return rc;
    /* [upstream] keeps working: sink "upstream" of type segment. */
    if (o->upstream_url[0]) {
        struct ts_sink_conf *k = &o->sinks[o->nsinks++];
        memset(k, 0, sizeof *k);
        ts_strlcpy(k->name, "upstream", sizeof k->name);
        ts_strlcpy(k->type, "segment", sizeof k->type);
        ts_strlcpy(k->url, o->upstream_url, sizeof k->url);
        ts_strlcpy(k->ca_file, o->upstream_ca_file, sizeof k->ca_file);
        /* a Segment source takes every till event (PROTOCOL.md "Till events")
         * and the Coupon Applied of a redeemed offer */
        k->send = TS_SINK_PURCHASE | TS_SINK_RETURN | TS_SINK_CONSENT | TS_SINK_COUPON;
        k->anonymous = true;
        k->max_backoff_s = o->upstream_max_backoff_s;
        const char *key = o->upstream_write_key;
        if (!key[0] && sf)
            key = ts_conf_get(sf, "upstream", "write_key", "");
        if (!key[0])
            rc = ts_conf_errf(c, "upstream", "write_key", err, errsz,
                              "required when url is set (here or in [hub] secrets_file)");
        else
            rc = put(c, "upstream", k, "write_key", key, true, err, errsz);
    }
    for (size_t i = 0; rc == TS_OK; i++) {
        const char *sec = ts_conf_section(c, i);
        if (!sec)
            break;
        if (strncmp(sec, "sink.", 5) != 0)
            continue;
        for (size_t j = 0; j < o->nsinks; j++)
            if (strcmp(o->sinks[j].name, sec + 5) == 0) {
                rc = ts_conf_errf(c, sec, "type", err, errsz,
                                  "a second sink named %s (or [upstream])", sec + 5);
                break;
            }
        if (rc == TS_OK && o->nsinks == TS_HUB_MAX_SINKS)
            rc = ts_conf_errf(c, sec, "type", err, errsz, "at most %d sinks", TS_HUB_MAX_SINKS);
        if (rc == TS_OK)
            rc = one_sink(c, sf, sec, sec + 5, ts_conf_get(c, sec, "type", ""),
                          &o->sinks[o->nsinks], err, errsz);
        if (rc == TS_OK)
            o->nsinks++;
    }
    ts_conf_free(sf);
    return rc;
}
