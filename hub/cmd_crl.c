/*
 * `tillside-hub crl`: the hub's revocation list as a CRL signed by the
 * enrolment CA, for nginx's ssl_crl when nginx terminates TLS in front of
 * the hub (proxy.c, docs/OPERATIONS.md "Behind nginx").
 *
 * The list comes from the trust_* tables `revoke` writes (enroll.c): every
 * certificate revoked by serial, and every certificate this hub issued to a
 * terminal before it was revoked by name. A certificate made outside the
 * hub (`pki issue`) and revoked only by name has no serial the hub knows:
 * it cannot be listed, and the command says how many such rules there are
 * (the hub itself still refuses them on every request).
 */
#include "cmd.h"
#include "proxy.h"
#include "../sync/pki_crl.h"

#include <errno.h>
#include "sql.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DAY_S 86400

/* Revoked serials, each once with its earliest revocation time (ms in the
 * table, seconds in the CRL). */
static const char SQL_SERIALS[] =
    "SELECT serial, min(at) FROM ("
    " SELECT serial, at FROM trust_revoked WHERE serial IS NOT NULL AND serial <> ''"
    " UNION ALL"
    " SELECT i.serial, r.at FROM trust_revoked r JOIN trust_issued i"
    "  ON r.serial IS NULL AND i.cn = r.cn AND (coalesce(r.ou, '') = '' OR i.ou = r.ou)"
    "  AND i.issued <= r.at"
    ") r GROUP BY serial ORDER BY serial";

/* Name rules with no certificate issued here before them. */
static const char SQL_UNLISTED[] =
    "SELECT count(*) FROM trust_revoked r WHERE r.serial IS NULL AND NOT EXISTS ("
    " SELECT 1 FROM trust_issued i WHERE i.cn = r.cn AND (coalesce(r.ou, '') = '' OR i.ou = r.ou)"
    " AND i.issued <= r.at)";

struct list {
    struct ts_pki_crl_entry *e;
    char (*serial)[48];
    size_t n, cap;
};

static enum ts_err grow(struct list *l)
{
    size_t cap = l->cap ? l->cap * 2 : 64;
    struct ts_pki_crl_entry *e = realloc(l->e, cap * sizeof *e);
    if (!e)
        return TS_ERR_NOMEM;
    l->e = e;
    char(*s)[48] = realloc(l->serial, cap * sizeof *s);
    if (!s)
        return TS_ERR_NOMEM;
    l->serial = s;
    l->cap = cap;
    return TS_OK;
}

/* A database the hub never ran on has no trust tables: nothing revoked. */
static enum ts_err read_revoked(const char *path, struct list *l, long *unlisted, char *err,
                                size_t errsz)
{
    struct ts_sql *db = NULL;
    struct ts_sql_stmt *st = NULL;
    int rc = TS_OK;
    *unlisted = 0;
    if (!ts_sql_target_is_pg(path) && access(path, F_OK) != 0 && errno == ENOENT) {
        fprintf(stderr, "tillside-hub: crl: %s does not exist yet: nothing is revoked\n", path);
        return TS_OK;
    }
    char e[512];
    if (ts_sql_open(path, TS_SQL_RDONLY, &db, e, sizeof e) != TS_OK) {
        ts_errf(err, errsz, "cannot open %s", e);
        rc = TS_ERR_DB;
        goto out;
    }
    int step = ts_sql_prepare(db, SQL_SERIALS, &st) == TS_OK ? ts_sql_step(st) : TS_ERR_DB;
    for (; step == TS_SQL_ROW; step = ts_sql_step(st)) {
        if (l->n == l->cap && (rc = grow(l)))
            goto out;
        const char *s = ts_sql_column_text(st, 0);
        ts_strlcpy(l->serial[l->n], s ? s : "", sizeof l->serial[l->n]);
        l->e[l->n].revoked_at = ts_sql_column_int64(st, 1) / 1000;
        l->n++;
    }
    if (step != TS_SQL_DONE) {
        /* SQLite: "no such table"; PostgreSQL: relation "..." does not exist */
        if (strstr(ts_sql_errmsg(db), "no such table") ||
            strstr(ts_sql_errmsg(db), "does not exist"))
            goto out;
        ts_errf(err, errsz, "%s: %s", path, ts_sql_errmsg(db));
        rc = TS_ERR_DB;
        goto out;
    }
    /* the serial texts moved with realloc: point at them only now */
    for (size_t i = 0; i < l->n; i++)
        l->e[i].serial_hex = l->serial[i];
    ts_sql_finalize(st);
    st = NULL;
    if (ts_sql_prepare(db, SQL_UNLISTED, &st) == TS_OK && ts_sql_step(st) == TS_SQL_ROW)
        *unlisted = (long)ts_sql_column_int64(st, 0);
out:
    ts_sql_finalize(st);
    ts_sql_close(db);
    return rc;
}

/* Written beside the target and renamed over it, so nginx reloading at the
 * wrong moment reads the old list or the new one, never half of one. */
static enum ts_err write_file(const char *path, const char *text, char *err, size_t errsz)
{
    char tmp[TS_HUB_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        ts_errf(err, errsz, "cannot write %s: %s", tmp, strerror(errno));
        return TS_ERR_IO;
    }
    /* A CRL is public: nginx's workers may run as another user. */
    fchmod(fileno(f), 0644);
    bool ok = fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        ts_errf(err, errsz, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return TS_ERR_IO;
    }
    return TS_OK;
}

static int usage(void)
{
    fprintf(stderr, "usage: tillside-hub crl [-c FILE] --out FILE|- [--days N]\n"
                    "  writes the revoked terminal certificates as a CRL (PEM) signed by the\n"
                    "  enrolment CA ([hub] ca_cert or client_ca, and ca_key), valid N days\n"
                    "  (default 7); reload nginx after it changes\n");
    return 2;
}

int ts_hub_crl_main(int argc, char **argv, const char *conf)
{
    const char *out = NULL;
    long days = 7;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && v)
            conf = argv[++i];
        else if (strcmp(a, "--out") == 0 && v)
            out = argv[++i];
        else if (strcmp(a, "--days") == 0 && v) {
            char *end;
            days = strtol(argv[++i], &end, 10);
            if (*end || days < 1 || days > 3650)
                return usage();
        } else
            return usage();
    }
    if (!out)
        return usage();
    struct ts_hub_config cfg;
    char err[512];
    if (ts_hub_cmd_config(conf, &cfg))
        return 1;
    const char *ca = cfg.ca_cert[0] ? cfg.ca_cert : cfg.client_ca;
    if (!ca[0] || !cfg.ca_key[0]) {
        fprintf(stderr,
                "tillside-hub: crl: %s: [hub] ca_key and ca_cert (or client_ca) must name "
                "the enrolment CA that signs the CRL\n",
                conf);
        return 1;
    }
    struct list l = {0};
    long unlisted = 0;
    char *pem = NULL;
    int code = 1;
    int rc = read_revoked(cfg.db, &l, &unlisted, err, sizeof err);
    int64_t now = ts_now_wall_ms() / 1000;
    /* cRLNumber must grow with every new list (RFC 5280 §5.2.3): the time
     * does, for lists made at most once a second. */
    if (rc == TS_OK)
        rc = ts_pki_crl_make(ca, cfg.ca_key, l.e, l.n, now - 60, now + days * DAY_S, (uint64_t)now,
                             &pem, err, sizeof err);
    if (rc == TS_OK && strcmp(out, "-") == 0)
        rc = fputs(pem, stdout) >= 0 ? TS_OK : TS_ERR_IO;
    else if (rc == TS_OK)
        rc = write_file(out, pem, err, sizeof err);
    if (rc != TS_OK) {
        fprintf(stderr, "tillside-hub: crl: %s\n", err);
        goto done;
    }
    if (strcmp(out, "-") != 0)
        printf("wrote %s: %zu revoked certificate%s, valid %ld day%s\n", out, l.n,
               l.n == 1 ? "" : "s", days, days == 1 ? "" : "s");
    if (unlisted)
        fprintf(stderr,
                "tillside-hub: crl: %ld terminal revocation%s name%s no certificate this hub "
                "issued: such certificates are refused by the hub but not listed in the CRL\n",
                unlisted, unlisted == 1 ? "" : "s", unlisted == 1 ? "s" : "");
    code = 0;
done:
    free(pem);
    free(l.e);
    free(l.serial);
    return code;
}
