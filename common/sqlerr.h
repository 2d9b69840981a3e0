/*
 * SQLite result codes as enum ts_err, in one place, so every database of
 * ours (cache.db, outbox.db, the hub's store) tells a full disk apart from
 * a broken file the same way: a full disk is TS_ERR_FULL (the API answers
 * 507, the sync loop waits), anything else TS_ERR_DB.
 */
#ifndef TS_SQLERR_H
#define TS_SQLERR_H

#include "ts.h"

#include <sqlite3.h>

/*
 * Translates rc (a result of a call on db; SQLITE_OK, _DONE and _ROW are
 * TS_OK). Full: SQLITE_FULL, an OS errno of ENOSPC / EDQUOT / EFBIG, or an
 * I/O error while the file system of path (the database file; NULL = db's
 * main file) is nearly full or its files reached RLIMIT_FSIZE: SQLite reports a
 * refused write as SQLITE_IOERR_WRITE and the errno it keeps is not reliable
 * by the time the statement returns. Logs nothing: the caller decides.
 */
enum ts_err ts_sqlite_err(sqlite3 *db, int rc, const char *path);

/* True when path's file system has (almost) no space left, or path (or its
 * -wal / -journal) reached the process's RLIMIT_FSIZE. */
bool ts_space_exhausted(const char *path);

#endif
