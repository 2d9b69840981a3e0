/*
 * Schema versions of our SQLite files, kept in the file header's
 * PRAGMA user_version (sqlite.org/pragma.html#pragma_user_version): a 32-bit
 * integer written inside the transaction like any change, so a migration and
 * its version number commit together or not at all.
 *
 * Every database names the newest version this build knows. Opening a file
 * with a higher one fails (a downgraded package must not write into a schema
 * it does not know); a lower one runs the steps above it in order.
 */
#ifndef TS_DBVER_H
#define TS_DBVER_H

#include "../common/ts.h"

#include <sqlite3.h>
#include <stddef.h>

struct ts_db_step {
    int version;                              /* the version this step brings the file to */
    const char *sql;                          /* run with sqlite3_exec, or NULL */
    enum ts_err (*fn)(sqlite3 *db, void *ud); /* or this (TS_OK = done), or NULL */
};

/* PRAGMA user_version; 0 for a file made before versions were kept. */
enum ts_err ts_db_version(sqlite3 *db, int *out);

/* Fails with TS_ERR_DB and "PATH: schema version N is newer than ..." when
 * the file is newer than latest; a missing or older file is fine. */
enum ts_err ts_db_version_check(sqlite3 *db, const char *path, int latest, char *err, size_t errsz);

/*
 * In the caller's write transaction: checks as above, runs each step whose
 * version is above the file's, in array order, then stores latest.
 * *from (optional) gets the version the file had.
 */
enum ts_err ts_db_migrate(sqlite3 *db, const char *path, int latest, const struct ts_db_step *steps,
                          size_t n, void *ud, int *from, char *err, size_t errsz);

#endif
