/* Schema versions and ordered migrations for SQLite files: see dbver.h. */
#include "dbver.h"
#include "../common/ts.h"

#include <stdio.h>

enum ts_err ts_db_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = TS_ERR_DB;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = TS_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

enum ts_err ts_db_version_check(sqlite3 *db, const char *path, int latest, char *err, size_t errsz)
{
    int v = 0;
    if (ts_db_version(db, &v) != TS_OK) {
        snprintf(err, errsz, "%s: cannot read the schema version: %s", path, sqlite3_errmsg(db));
        return TS_ERR_DB;
    }
    if (v > latest) {
        snprintf(err, errsz,
                 "%s: schema version %d is newer than this program's %d (written by a newer "
                 "tillside; downgrades are not supported, install the newer version again)",
                 path, v, latest);
        return TS_ERR_DB;
    }
    return TS_OK;
}

enum ts_err ts_db_migrate(sqlite3 *db, const char *path, int latest, const struct ts_db_step *steps,
                          size_t n, void *ud, int *from, char *err, size_t errsz)
{
    int v = 0, rc = ts_db_version_check(db, path, latest, err, errsz);
    if (rc || (rc = ts_db_version(db, &v)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (steps[i].version <= v)
            continue;
        if ((steps[i].sql && sqlite3_exec(db, steps[i].sql, NULL, NULL, NULL) != SQLITE_OK) ||
            (steps[i].fn && steps[i].fn(db, ud) != TS_OK)) {
            snprintf(err, errsz, "%s: migration to schema version %d failed: %s", path,
                     steps[i].version, sqlite3_errmsg(db));
            return TS_ERR_DB;
        }
    }
    if (v != latest) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", latest);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errsz, "%s: cannot store schema version %d: %s", path, latest,
                     sqlite3_errmsg(db));
            return TS_ERR_DB;
        }
    }
    if (from)
        *from = v;
    return TS_OK;
}
