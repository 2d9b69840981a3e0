/*
 * Trust at the hub: enrolment tokens, the enrolment listener, certificate
 * renewal and revocation (docs/PROTOCOL.md "Enrolment and renewal",
 * docs/OPERATIONS.md); the commands that make tokens and revoke are in
 * cmd_enroll.c.
 *
 * State lives in the hub's database, in tables of its own (trust_*), on a
 * connection of its own, so `tillside-hub enroll-token` and `revoke` work
 * from another process while the hub runs. Tokens are stored as their
 * SHA-256 only: a copy of the database does not enrol anybody.
 *
 * Revocation is checked at every handshake and before every request on a
 * kept connection, and before an answer leaves (ts_httpd's peer_check). The
 * revocation list is small and held in memory; a generation counter in
 * trust_meta, bumped by `revoke`, tells the hub to reload it.
 */
#include "hub.h"
#include "throttle.h"
#include "../sync/pki.h"

#include <jansson.h>
#include <mbedtls/md.h>
#include <pthread.h>
#include "sql.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define COMP "trust"
#define DAY_MS (24LL * 3600 * 1000)
#define TOKEN_BYTES 16
#define SKEW_S 3600 /* notBefore an hour back: terminals with a slow clock */

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS trust_tokens(hash TEXT PRIMARY KEY, store TEXT NOT NULL,"
    " terminal TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " used INTEGER, serial TEXT);"
    "CREATE TABLE IF NOT EXISTS trust_issued(serial TEXT PRIMARY KEY, cn TEXT NOT NULL,"
    " ou TEXT NOT NULL, o TEXT NOT NULL, issued INTEGER NOT NULL, not_after INTEGER NOT NULL,"
    " via TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS trust_issued_name ON trust_issued(cn, ou);"
    /* serial set: that certificate; serial NULL: every certificate of the
     * terminal cn (of store ou, or of any store when ou is '') that this
     * hub did not issue after `at` */
    "CREATE TABLE IF NOT EXISTS trust_revoked(id INTEGER PRIMARY KEY, serial TEXT, cn TEXT,"
    " ou TEXT, at INTEGER NOT NULL, reason TEXT);"
    "CREATE TABLE IF NOT EXISTS trust_meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
    /* terminals whose lookups mostly missed (throttle.c), for `stats` */
    "CREATE TABLE IF NOT EXISTS trust_flags(ou TEXT NOT NULL, cn TEXT NOT NULL,"
    " at INTEGER NOT NULL, lookups INTEGER NOT NULL, misses INTEGER NOT NULL,"
    " PRIMARY KEY(ou, cn));";

struct rule {
    char serial[48], cn[64], ou[64];
    int64_t at;
};

struct ts_hub_trust {
    const struct ts_hub_config *cfg;
    int64_t (*now_ms)(void);
    pthread_mutex_t mu; /* guards db and the rules */
    struct ts_sql *db;
    struct ts_pki_signer *signer; /* NULL: no [hub] ca_key, enrolment and renewal off */
    int main_port;
    struct rule *rules;
    size_t nrules;
    int64_t generation;
};

static int64_t wall_now(void)
{
    return ts_now_wall_ms();
}

/* ---- database ------------------------------------------------------------ */

/* The trust tables live in the hub's database (SQLite or PostgreSQL, so
 * hubs sharing one see the same tokens and revocations). */
static enum ts_err db_open(const char *path, struct ts_sql **out, char *err, size_t errsz)
{
    struct ts_sql *db = NULL;
    char e[512];
    if (ts_sql_open(path, 0, &db, e, sizeof e) != TS_OK) {
        ts_errf(err, errsz, "cannot open %s", e);
        return TS_ERR_DB;
    }
    if (ts_sql_exec(db, "PRAGMA journal_mode=WAL") != TS_OK ||
        ts_sql_exec(db, "BEGIN IMMEDIATE") != TS_OK || ts_sql_exec_ddl(db, SCHEMA) != TS_OK ||
        ts_sql_exec(db, "COMMIT") != TS_OK) {
        ts_errf(err, errsz, "%s: cannot create the trust tables: %s", path, ts_sql_errmsg(db));
        ts_sql_close(db);
        return TS_ERR_DB;
    }
    *out = db;
    return TS_OK;
}

/* Prepares sql and binds text/integers given as a format: 't' text, 'i'
 * int64, 'n' NULL. */
static struct ts_sql_stmt *prep(struct ts_sql *db, const char *sql, const char *types, ...)
{
    struct ts_sql_stmt *st = NULL;
    if (ts_sql_prepare(db, sql, &st) != TS_OK) {
        TS_ERROR(COMP, "%s: %s", sql, ts_sql_errmsg(db));
        return NULL;
    }
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't')
            ts_sql_bind_text(st, i + 1, va_arg(ap, const char *));
        else if (types[i] == 'i')
            ts_sql_bind_int64(st, i + 1, va_arg(ap, int64_t));
        else
            ts_sql_bind_null(st, i + 1);
    }
    va_end(ap);
    return st;
}

/* Runs a statement without rows; TS_OK when it is done. */
static int exec_st(struct ts_sql_stmt *st)
{
    int rc = st && ts_sql_step(st) == TS_SQL_DONE ? TS_OK : TS_ERR_DB;
    ts_sql_finalize(st);
    return rc;
}

static int64_t generation(struct ts_sql *db)
{
    struct ts_sql_stmt *st = prep(db, "SELECT v FROM trust_meta WHERE k='revocations'", "");
    int64_t g = st && ts_sql_step(st) == TS_SQL_ROW ? ts_sql_column_int64(st, 0) : 0;
    ts_sql_finalize(st);
    return g;
}

static int bump_generation(struct ts_sql *db)
{
    return exec_st(prep(db,
                        "INSERT INTO trust_meta(k, v) VALUES('revocations', 1) "
                        "ON CONFLICT(k) DO UPDATE SET v = trust_meta.v + 1",
                        ""));
}

/* Reloads the revocation rules when `revoke` changed them (t->mu held).
 * The generation is read every time: one indexed row, a few microseconds,
 * and a revocation then holds from the very next request. */
static void refresh_rules(struct ts_hub_trust *t)
{
    int64_t g = generation(t->db);
    if (t->rules && g == t->generation)
        return;
    struct ts_sql_stmt *st = prep(t->db, "SELECT serial, cn, ou, at FROM trust_revoked", "");
    struct rule *r = NULL;
    size_t n = 0, cap = 0;
    bool ok = st != NULL;
    int step = TS_SQL_DONE;
    while (ok && (step = ts_sql_step(st)) == TS_SQL_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct rule *nr = realloc(r, cap * sizeof *nr);
            if (!nr) {
                ok = false;
                break;
            }
            r = nr;
        }
        struct rule *x = &r[n++];
        memset(x, 0, sizeof *x);
        const char *s = ts_sql_column_text(st, 0);
        ts_strlcpy(x->serial, s ? s : "", sizeof x->serial);
        s = ts_sql_column_text(st, 1);
        ts_strlcpy(x->cn, s ? s : "", sizeof x->cn);
        s = ts_sql_column_text(st, 2);
        ts_strlcpy(x->ou, s ? s : "", sizeof x->ou);
        x->at = ts_sql_column_int64(st, 3);
    }
    if (ok && step != TS_SQL_DONE)
        ok = false;
    ts_sql_finalize(st);
    if (!ok) {
        /* Keep enforcing what we had; say so once per attempt. */
        TS_ERROR(COMP, "cannot reload the revocation list: %s", ts_sql_errmsg(t->db));
        free(r);
        return;
    }
    free(t->rules);
    /* Never NULL once loaded, so "not loaded yet" stays distinguishable. */
    t->rules = r ? r : calloc(1, sizeof *r);
    t->nrules = n;
    t->generation = g;
}

/* ---- open / close -------------------------------------------------------- */

enum ts_err ts_hub_trust_open(const struct ts_hub_config *cfg, int64_t (*now_ms)(void),
                              struct ts_hub_trust **out, char *err, size_t errsz)
{
    struct ts_hub_trust *t = calloc(1, sizeof *t);
    if (!t)
        return TS_ERR_NOMEM;
    t->cfg = cfg;
    t->now_ms = now_ms ? now_ms : wall_now;
    pthread_mutex_init(&t->mu, NULL);
    int rc = db_open(cfg->db, &t->db, err, errsz);
    if (rc == TS_OK && cfg->ca_key[0]) {
        const char *ca = cfg->ca_cert[0] ? cfg->ca_cert : cfg->client_ca;
        char e[400];
        if ((rc = ts_pki_signer_new(ca, cfg->ca_key, &t->signer, e, sizeof e)))
            ts_errf(err, errsz, "enrolment CA: %s", e);
    }
    if (rc == TS_OK) {
        pthread_mutex_lock(&t->mu);
        refresh_rules(t);
        pthread_mutex_unlock(&t->mu);
        *out = t;
        return TS_OK;
    }
    ts_hub_trust_close(t);
    return rc;
}

void ts_hub_trust_close(struct ts_hub_trust *t)
{
    if (!t)
        return;
    ts_sql_close(t->db);
    ts_pki_signer_free(t->signer);
    pthread_mutex_destroy(&t->mu);
    free(t->rules);
    free(t);
}

void ts_hub_trust_set_main_port(struct ts_hub_trust *t, int port)
{
    if (t)
        t->main_port = port;
}

/* ---- revocation check -----------------------------------------------------*/

/* Was serial issued by this hub after at_ms? (t->mu held) */
static bool issued_after(struct ts_hub_trust *t, const char *serial, int64_t at_ms)
{
    struct ts_sql_stmt *st =
        prep(t->db, "SELECT issued FROM trust_issued WHERE serial = ?", "t", serial);
    bool after = st && ts_sql_step(st) == TS_SQL_ROW && ts_sql_column_int64(st, 0) > at_ms;
    ts_sql_finalize(st);
    return after;
}

bool ts_hub_trust_peer_ok(void *ud, const struct ts_peer_id *peer, char *why, size_t whysz)
{
    struct ts_hub_trust *t = ud;
    if (!t || !peer)
        return true;
    bool ok = true;
    int64_t name_at = -1;
    pthread_mutex_lock(&t->mu);
    refresh_rules(t);
    for (size_t i = 0; ok && i < t->nrules; i++) {
        const struct rule *r = &t->rules[i];
        if (r->serial[0]) {
            if (strcasecmp(r->serial, peer->serial) == 0) {
                ok = false;
                ts_errf(why, whysz, "certificate revoked (serial %s)", peer->serial);
            }
        } else if (strcmp(r->cn, peer->cn) == 0 && (!r->ou[0] || strcmp(r->ou, peer->ou) == 0)) {
            name_at = r->at > name_at ? r->at : name_at;
        }
    }
    /* A terminal revoked by name comes back only with a certificate this
     * hub issued after the revocation (enrolled again). */
    if (ok && name_at >= 0 && !issued_after(t, peer->serial, name_at)) {
        ok = false;
        ts_errf(why, whysz, "certificate revoked (terminal %s of store %s)", peer->cn,
                peer->ou[0] ? peer->ou : "-");
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

/* ---- signing ----------------------------------------------------------------*/

static void sha256_hex(const char *s, char out[65])
{
    unsigned char h[32];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md || mbedtls_md(md, (const unsigned char *)s, strlen(s), h) != 0)
        memset(h, 0, sizeof h);
    ts_hex_encode(h, sizeof h, out);
}

static void answer(struct ts_httpd_resp *resp, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (!s) {
        ts_httpd_error(resp, 500, "out of memory");
    } else {
        resp->status = 200;
        ts_buf_reset(&resp->body);
        ts_buf_puts(&resp->body, s);
    }
    free(s);
    json_decref(o);
}

/* The request body as a JSON object, or a 400 naming the problem. */
static json_t *body_object(const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    json_error_t je;
    json_t *o = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        char msg[256];
        snprintf(msg, sizeof msg, "malformed request: %s",
                 o ? "body must be a JSON object" : je.text);
        ts_httpd_error(resp, 400, msg);
        json_decref(o);
        return NULL;
    }
    return o;
}

struct signed_cert {
    char *pem;
    char serial[48];
    int64_t not_after_s;
};

/* Signs the csr for cn/ou; 400 for a request to refuse, 500 otherwise. */
static bool sign(struct ts_hub_trust *t, const char *csr, const char *cn, const char *ou,
                 struct signed_cert *out, struct ts_httpd_resp *resp)
{
    char err[300];
    int64_t now = t->now_ms() / 1000;
    out->not_after_s = now + (int64_t)t->cfg->cert_days * 86400;
    int rc = ts_pki_signer_sign(t->signer, csr, strlen(csr), cn, ou, t->cfg->tenant, now - SKEW_S,
                                out->not_after_s, &out->pem, out->serial, err, sizeof err);
    if (rc == TS_ERR_INVAL) {
        ts_httpd_error(resp, 400, err);
        return false;
    }
    if (rc) {
        TS_ERROR(COMP, "cannot sign a certificate for %s/%s: %s", ou, cn, err);
        ts_httpd_error(resp, 500, "cannot sign the certificate");
        return false;
    }
    return true;
}

static int record_issued(struct ts_hub_trust *t, const struct signed_cert *c, const char *cn,
                         const char *ou, const char *via)
{
    return exec_st(prep(t->db,
                        "INSERT INTO trust_issued(serial, cn, ou, o, issued, not_after, via)"
                        " VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(serial) DO UPDATE SET"
                        " cn = excluded.cn, ou = excluded.ou, o = excluded.o,"
                        " issued = excluded.issued, not_after = excluded.not_after,"
                        " via = excluded.via",
                        "ttttiit", c->serial, cn, ou, t->cfg->tenant, t->now_ms(),
                        c->not_after_s * 1000, via));
}

/* The main listener's URL for the agent's configuration: [hub] public_url,
 * or the host the agent reached us under with the main listener's port. */
static void hub_url(const struct ts_hub_trust *t, const struct ts_httpd_req *req, char *out,
                    size_t outsz)
{
    if (t->cfg->public_url[0]) {
        ts_strlcpy(out, t->cfg->public_url, outsz);
        return;
    }
    char host[256] = "";
    const char *h = req->msg ? ts_http_header(req->msg, "Host") : NULL;
    if (h && strlen(h) < sizeof host &&
        strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                  "TUVWXYZ0123456789.-:[]") == strlen(h)) {
        ts_strlcpy(host, h, sizeof host);
        char *end = host[0] == '[' ? strchr(host, ']') : NULL;
        char *colon = strrchr(end ? end : host, ':');
        if (colon)
            *colon = '\0';
    }
    if (!host[0]) {
        ts_strlcpy(host, t->cfg->listen, sizeof host);
        char *colon = strrchr(host, ':');
        if (colon)
            *colon = '\0';
    }
    snprintf(out, outsz, "%s://%s:%d", t->cfg->tls_cert[0] ? "https" : "http", host, t->main_port);
}

/*
 * POST /v1/enroll {"token", "csr"}: a valid, unused, unexpired token buys
 * one certificate for the store and terminal it was made for. The token is
 * spent in the same transaction that records the certificate; a request
 * refused for its CSR leaves the token usable.
 */
static void do_enroll(struct ts_hub_trust *t, const struct ts_httpd_req *req,
                      struct ts_httpd_resp *resp)
{
    struct signed_cert c = {0};
    char hash[65], store[64] = "", terminal[64] = "", url[600], key_hex[2 * TS_TENANT_KEY_MAX + 1];
    json_t *o = body_object(req, resp);
    if (!o)
        return;
    const char *token = json_string_value(json_object_get(o, "token"));
    const char *csr = json_string_value(json_object_get(o, "csr"));
    if (!token || !token[0] || !csr || !csr[0]) {
        ts_httpd_error(resp, 400,
                       "malformed request: \"token\" and \"csr\" must be non-empty strings");
        goto out;
    }
    if (!t->signer) {
        ts_httpd_error(resp, 503, "enrolment is not configured on this hub ([hub] ca_key)");
        goto out;
    }
    sha256_hex(token, hash);
    int64_t now = t->now_ms(), expires = 0, used = 0;
    bool found = false;
    pthread_mutex_lock(&t->mu);
    struct ts_sql_stmt *st = prep(
        t->db, "SELECT store, terminal, expires, used FROM trust_tokens WHERE hash=?", "t", hash);
    if (st && ts_sql_step(st) == TS_SQL_ROW) {
        found = true;
        ts_strlcpy(store, ts_sql_column_text(st, 0), sizeof store);
        ts_strlcpy(terminal, ts_sql_column_text(st, 1), sizeof terminal);
        expires = ts_sql_column_int64(st, 2);
        used = ts_sql_column_type(st, 3) == TS_SQL_NULL ? 0 : ts_sql_column_int64(st, 3);
    }
    ts_sql_finalize(st);
    pthread_mutex_unlock(&t->mu);
    const char *why = !found           ? "unknown enrolment token"
                      : used           ? "enrolment token already used"
                      : expires <= now ? "enrolment token expired"
                                       : NULL;
    if (why) {
        TS_WARN(COMP, "enrolment from %s refused: %s%s%s%s", req->remote_addr, why,
                found ? " (terminal " : "", found ? terminal : "", found ? ")" : "");
        ts_httpd_error(resp, 403, why);
        goto out;
    }
    if (!sign(t, csr, terminal, store, &c, resp)) {
        TS_WARN(COMP, "enrolment of %s/%s from %s refused: %s", store, terminal, req->remote_addr,
                resp->body.data ? resp->body.data : "");
        goto out;
    }
    pthread_mutex_lock(&t->mu);
    int rc = ts_sql_exec(t->db, "BEGIN IMMEDIATE") == TS_OK ? TS_OK : TS_ERR_DB;
    bool spent = false;
    if (rc == TS_OK) {
        rc = exec_st(prep(t->db,
                          "UPDATE trust_tokens SET used=?, serial=? WHERE hash=? AND used IS NULL"
                          " AND expires > ?",
                          "itti", now, c.serial, hash, now));
        spent = rc == TS_OK && ts_sql_changes(t->db) == 1;
        if (spent)
            rc = record_issued(t, &c, terminal, store, "enroll");
        ts_sql_exec(t->db, rc == TS_OK && spent ? "COMMIT" : "ROLLBACK");
    }
    pthread_mutex_unlock(&t->mu);
    if (rc != TS_OK) {
        TS_ERROR(COMP, "cannot record the enrolment of %s/%s: %s", store, terminal,
                 ts_sql_errmsg(t->db));
        ts_httpd_error(resp, 500, "cannot record the enrolment");
        goto out;
    }
    if (!spent) { /* another request with the same token won the race */
        ts_httpd_error(resp, 403, "enrolment token already used");
        goto out;
    }
    hub_url(t, req, url, sizeof url);
    ts_hex_encode(t->cfg->key.key, t->cfg->key.len, key_hex);
    char until[32];
    ts_iso8601(c.not_after_s * 1000, until, sizeof until);
    TS_INFO(COMP, "enrolled terminal %s of store %s from %s: serial %s, valid until %s", terminal,
            store, req->remote_addr, c.serial, until);
    answer(resp,
           json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s}", "certificate", c.pem,
                     "ca", ts_pki_signer_ca_pem(t->signer), "tenant_key", key_hex, "key_version",
                     t->cfg->key.version, "hub_url", url, "store", store, "terminal", terminal,
                     "tenant", t->cfg->tenant, "serial", c.serial, "not_after", until));
    memset(key_hex, 0, sizeof key_hex);
out:
    free(c.pem);
    json_decref(o);
}

void ts_hub_enroll_handle(void *ud, const struct ts_httpd_req *req, struct ts_httpd_resp *resp)
{
    struct ts_hub_trust *t = ud;
    resp->status = 200;
    ts_strlcpy(resp->content_type, "application/json", sizeof resp->content_type);
    if (strcmp(req->path, "/v1/enroll") == 0) {
        if (strcmp(req->method, "POST") != 0) {
            ts_strlcpy(resp->extra_headers, "Allow: POST\r\n", sizeof resp->extra_headers);
            ts_httpd_error(resp, 405, "method not allowed");
            return;
        }
        do_enroll(t, req, resp);
    } else if (strcmp(req->path, "/livez") == 0) {
        resp->status = 200;
        ts_buf_reset(&resp->body);
        ts_buf_puts(&resp->body, "{\"ok\":true}");
    } else {
        /* Nothing else is served without a client certificate. */
        ts_httpd_error(resp, 404, "not found (this listener only enrols terminals)");
    }
}

void ts_hub_trust_renew(struct ts_hub_trust *t, const struct ts_httpd_req *req,
                        struct ts_httpd_resp *resp)
{
    struct signed_cert c = {0};
    if (!t || !t->signer) {
        ts_httpd_error(resp, 503,
                       "certificate renewal is not configured on this hub ([hub] ca_key)");
        return;
    }
    json_t *o = body_object(req, resp);
    if (!o)
        return;
    const char *csr = json_string_value(json_object_get(o, "csr"));
    const struct ts_peer_id *p = req->peer;
    if (!csr || !csr[0]) {
        ts_httpd_error(resp, 400, "malformed request: \"csr\" must be a non-empty string");
    } else if (sign(t, csr, p->cn, p->ou, &c, resp)) {
        pthread_mutex_lock(&t->mu);
        int rc = record_issued(t, &c, p->cn, p->ou, "renew");
        pthread_mutex_unlock(&t->mu);
        if (rc) {
            ts_httpd_error(resp, 500, "cannot record the certificate");
        } else {
            char until[32];
            ts_iso8601(c.not_after_s * 1000, until, sizeof until);
            TS_INFO(COMP,
                    "renewed the certificate of terminal %s of store %s: serial %s -> %s, "
                    "valid until %s",
                    p->cn, p->ou, p->serial, c.serial, until);
            answer(resp, json_pack("{s:s, s:s, s:s, s:s}", "certificate", c.pem, "ca",
                                   ts_pki_signer_ca_pem(t->signer), "serial", c.serial, "not_after",
                                   until));
        }
    } else {
        TS_WARN(COMP, "renewal for %s refused: %s", p->subject,
                resp->body.data ? resp->body.data : "");
    }
    free(c.pem);
    json_decref(o);
}

/* ---- tokens and revocations, for the commands (cmd_enroll.c) --------------*/

enum ts_err ts_hub_trust_add_token(const char *target, const char *store, const char *terminal,
                                   int64_t now_ms, int64_t ttl_ms, char token[TS_HUB_TOKEN_HEX],
                                   char *err, size_t errsz)
{
    struct ts_sql *db = NULL;
    unsigned char raw[TOKEN_BYTES];
    char hash[65];
    enum ts_err rc = db_open(target, &db, err, errsz);
    if (rc != TS_OK)
        return rc;
    if ((rc = ts_random(raw, sizeof raw)) != TS_OK) {
        ts_errf(err, errsz, "no randomness for a token");
        ts_sql_close(db);
        return rc;
    }
    ts_hex_encode(raw, sizeof raw, token);
    sha256_hex(token, hash);
    rc = exec_st(prep(db,
                      "INSERT INTO trust_tokens(hash, store, terminal, created, expires) "
                      "VALUES(?, ?, ?, ?, ?)",
                      "tttii", hash, store, terminal, now_ms, now_ms + ttl_ms));
    if (rc != TS_OK)
        ts_errf(err, errsz, "cannot store the token in %s: %s", target, ts_sql_errmsg(db));
    ts_sql_close(db);
    return rc;
}

enum ts_err ts_hub_trust_revoke(const char *target, const char *terminal, const char *store,
                                const char *serial, const char *reason, int64_t now_ms, char *shown,
                                size_t shownsz, long *certs, char *err, size_t errsz)
{
    struct ts_sql *db = NULL;
    char lower[48] = "";
    enum ts_err rc = db_open(target, &db, err, errsz);
    if (rc != TS_OK)
        return rc;
    for (size_t i = 0; serial && serial[i] && i + 1 < sizeof lower; i++)
        lower[i] = (char)(serial[i] >= 'A' && serial[i] <= 'F' ? serial[i] - 'A' + 'a' : serial[i]);
    /* serials are compared without leading zero bytes, as handshakes see them */
    const char *sv = lower;
    while (sv[0] == '0' && sv[1] == '0' && sv[2])
        sv += 2;
    *certs = 0;
    rc = ts_sql_exec(db, "BEGIN IMMEDIATE") == TS_OK ? TS_OK : TS_ERR_DB;
    if (rc == TS_OK)
        rc = exec_st(serial ? prep(db,
                                   "INSERT INTO trust_revoked(serial, at, reason) "
                                   "VALUES(?, ?, ?)",
                                   "tit", sv, now_ms, reason)
                            : prep(db,
                                   "INSERT INTO trust_revoked(cn, ou, at, reason) "
                                   "VALUES(?, ?, ?, ?)",
                                   "ttit", terminal, store ? store : "", now_ms, reason));
    if (rc == TS_OK && !serial) {
        struct ts_sql_stmt *st =
            prep(db, "SELECT count(*) FROM trust_issued WHERE cn=? AND (?='' OR ou=?)", "ttt",
                 terminal, store ? store : "", store ? store : "");
        *certs = st && ts_sql_step(st) == TS_SQL_ROW ? (long)ts_sql_column_int64(st, 0) : 0;
        ts_sql_finalize(st);
    }
    if (rc == TS_OK)
        rc = bump_generation(db);
    ts_sql_exec(db, rc == TS_OK ? "COMMIT" : "ROLLBACK");
    if (rc != TS_OK)
        ts_errf(err, errsz, "cannot record the revocation in %s: %s", target, ts_sql_errmsg(db));
    else
        ts_strlcpy(shown, sv, shownsz);
    ts_sql_close(db);
    return rc;
}

enum ts_err ts_hub_trust_list_revoked(const char *target,
                                      void (*fn)(void *ud, const struct ts_hub_revocation *r),
                                      void *ud, char *err, size_t errsz)
{
    struct ts_sql *db = NULL;
    enum ts_err rc = db_open(target, &db, err, errsz);
    if (rc != TS_OK)
        return rc;
    struct ts_sql_stmt *st =
        prep(db, "SELECT serial, cn, ou, at, reason FROM trust_revoked ORDER BY at", "");
    while (st && ts_sql_step(st) == TS_SQL_ROW) {
        struct ts_hub_revocation r = {
            .serial = ts_sql_column_text(st, 0),
            .cn = ts_sql_column_text(st, 1),
            .ou = ts_sql_column_text(st, 2),
            .at_ms = ts_sql_column_int64(st, 3),
            .reason = ts_sql_column_text(st, 4),
        };
        fn(ud, &r);
    }
    ts_sql_finalize(st);
    ts_sql_close(db);
    return TS_OK;
}

/* ---- flagged terminals (throttle.c) -----------------------------------------*/

void ts_hub_trust_record_flag(void *ud, const struct ts_hub_flag *f)
{
    struct ts_hub_trust *t = ud;
    pthread_mutex_lock(&t->mu);
    int rc = exec_st(
        prep(t->db,
             "INSERT INTO trust_flags(ou, cn, at, lookups, misses) VALUES(?, ?, ?, ?, ?)"
             " ON CONFLICT(ou, cn) DO UPDATE SET at = excluded.at,"
             " lookups = excluded.lookups, misses = excluded.misses",
             "ttiii", f->store, f->terminal, f->at_ms, (int64_t)f->lookups, (int64_t)f->misses));
    if (rc != TS_OK)
        TS_ERROR(COMP, "cannot record the flag on terminal %s/%s: %s", f->store, f->terminal,
                 ts_sql_errmsg(t->db));
    pthread_mutex_unlock(&t->mu);
}

enum ts_err ts_hub_trust_list_flags(const char *target,
                                    void (*fn)(void *ud, const struct ts_hub_flag *f), void *ud,
                                    char *err, size_t errsz)
{
    struct ts_sql *db = NULL;
    enum ts_err rc = db_open(target, &db, err, errsz);
    if (rc != TS_OK)
        return rc;
    struct ts_sql_stmt *st =
        prep(db, "SELECT ou, cn, at, lookups, misses FROM trust_flags ORDER BY at", "");
    while (st && ts_sql_step(st) == TS_SQL_ROW) {
        struct ts_hub_flag f = {
            .store = ts_sql_column_text(st, 0),
            .terminal = ts_sql_column_text(st, 1),
            .at_ms = ts_sql_column_int64(st, 2),
            .lookups = (unsigned long)ts_sql_column_int64(st, 3),
            .misses = (unsigned long)ts_sql_column_int64(st, 4),
        };
        fn(ud, &f);
    }
    ts_sql_finalize(st);
    ts_sql_close(db);
    return TS_OK;
}
