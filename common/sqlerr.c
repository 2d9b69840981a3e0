/* SQLite result codes as enum ts_err (sqlerr.h). */
#include "sqlerr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define SPACE_LOW_BYTES (1024u * 1024u) /* less than this free counts as full */

bool ts_space_exhausted(const char *path)
{
    char dir[4096];
    if (!path || !*path || ts_strlcpy(dir, path, sizeof dir) >= sizeof dir)
        return false;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    struct statvfs vfs;
    if (statvfs(slash ? (dir[0] ? dir : "/") : ".", &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < SPACE_LOW_BYTES)
        return true;
    struct rlimit lim;
    if (getrlimit(RLIMIT_FSIZE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return false;
    static const char *const suffix[] = {"", "-wal", "-journal"};
    for (size_t i = 0; i < 3; i++) {
        char p[4096 + 16];
        struct stat st;
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        if (stat(p, &st) == 0 && (uint64_t)st.st_size + SPACE_LOW_BYTES >= lim.rlim_cur)
            return true;
    }
    return false;
}

enum ts_err ts_sqlite_err(sqlite3 *db, int rc, const char *path)
{
    int prim = rc & 0xff;
    if (prim == SQLITE_OK || prim == SQLITE_DONE || prim == SQLITE_ROW)
        return TS_OK;
    int sys = db ? sqlite3_system_errno(db) : 0;
    if (!path && db)
        path = sqlite3_db_filename(db, "main"); /* "" for :memory: */
    if (prim == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT || sys == EFBIG ||
        (prim == SQLITE_IOERR && ts_space_exhausted(path)))
        return TS_ERR_FULL;
    if (prim == SQLITE_NOMEM)
        return TS_ERR_NOMEM;
    return TS_ERR_DB;
}
