/*
 * The power-cut VFS of faultvfs.h. A shim in the manner of SQLite's own
 * test_vfstrace.c / test_devsym.c: our sqlite3_file wraps the real one
 * (allocated right behind it, szOsFile bytes), and every method forwards.
 *
 * Undo records per path (not per handle: the record must outlive the
 * connection that is closed after the "power cut"): for each write since
 * the last sync, the offset and the bytes that were there before; for a
 * truncate, the bytes cut off. Restoring applies them newest first, then
 * truncates the file back to its size at the last sync.
 */
#include "faultvfs.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct undo {
    sqlite3_int64 off;
    int len; /* bytes in old (the part of the range that existed before) */
    unsigned char *old;
};

struct fstate {
    char path[1024];
    struct undo *u;
    int n, cap;
    bool dirty;                /* writes since the last sync */
    sqlite3_int64 synced_size; /* size at the last sync (valid when dirty) */
    struct fstate *next;
};

struct ffile {
    sqlite3_file base;
    struct fstate *st; /* NULL for files without a path (temp files) */
    sqlite3_file *real;
};

static sqlite3_vfs fvfs;
static sqlite3_vfs *real_vfs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct fstate *states;
static long countdown; /* 0 = never */
static bool dead;
static long dropped;

static struct fstate *state_for(const char *path)
{
    for (struct fstate *s = states; s; s = s->next)
        if (strcmp(s->path, path) == 0)
            return s;
    struct fstate *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->path, sizeof s->path, "%s", path);
    s->next = states;
    states = s;
    return s;
}

/* Counts one durable-state operation; true when the power is (now) off. */
static bool tick(void)
{
    if (!dead && countdown > 0 && --countdown == 0)
        dead = true;
    return dead;
}

static void clear_undo(struct fstate *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->u[i].old);
    s->n = 0;
    s->dirty = false;
}

/* Saves what [off, off+amt) holds now, before it is overwritten or cut. */
static int save(struct ffile *f, sqlite3_int64 off, sqlite3_int64 amt)
{
    struct fstate *s = f->st;
    sqlite3_int64 size = 0;
    if (f->real->pMethods->xFileSize(f->real, &size) != SQLITE_OK)
        return SQLITE_IOERR;
    if (!s->dirty) {
        s->dirty = true;
        s->synced_size = size;
    }
    sqlite3_int64 have = off < size ? (size - off < amt ? size - off : amt) : 0;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        struct undo *u = realloc(s->u, (size_t)cap * sizeof *u);
        if (!u)
            return SQLITE_NOMEM;
        s->u = u;
        s->cap = cap;
    }
    struct undo *u = &s->u[s->n];
    u->off = off;
    u->len = (int)have;
    u->old = NULL;
    if (have > 0) {
        u->old = malloc((size_t)have);
        if (!u->old)
            return SQLITE_NOMEM;
        int rc = f->real->pMethods->xRead(f->real, u->old, (int)have, off);
        if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
            free(u->old);
            return rc;
        }
    }
    s->n++;
    return SQLITE_OK;
}

/* ---- io methods ---------------------------------------------------------------*/

static int f_close(sqlite3_file *p)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xClose(f->real);
}

static int f_read(sqlite3_file *p, void *buf, int amt, sqlite3_int64 off)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xRead(f->real, buf, amt, off);
}

static int f_write(sqlite3_file *p, const void *buf, int amt, sqlite3_int64 off)
{
    struct ffile *f = (struct ffile *)p;
    pthread_mutex_lock(&mu);
    int rc = SQLITE_IOERR_WRITE;
    if (!tick()) {
        rc = f->st ? save(f, off, amt) : SQLITE_OK;
        if (rc == SQLITE_OK)
            rc = f->real->pMethods->xWrite(f->real, buf, amt, off);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

static int f_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    struct ffile *f = (struct ffile *)p;
    pthread_mutex_lock(&mu);
    int rc = SQLITE_IOERR_TRUNCATE;
    if (!tick()) {
        sqlite3_int64 cur = 0;
        rc = f->real->pMethods->xFileSize(f->real, &cur);
        if (rc == SQLITE_OK && f->st && cur > size)
            rc = save(f, size, cur - size);
        if (rc == SQLITE_OK)
            rc = f->real->pMethods->xTruncate(f->real, size);
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

static int f_sync(sqlite3_file *p, int flags)
{
    struct ffile *f = (struct ffile *)p;
    pthread_mutex_lock(&mu);
    int rc = SQLITE_IOERR_FSYNC;
    if (!tick()) {
        rc = f->real->pMethods->xSync(f->real, flags);
        if (rc == SQLITE_OK && f->st)
            clear_undo(f->st); /* on the platter now */
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

static int f_size(sqlite3_file *p, sqlite3_int64 *size)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xFileSize(f->real, size);
}

static int f_lock(sqlite3_file *p, int l)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xLock(f->real, l);
}

static int f_unlock(sqlite3_file *p, int l)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xUnlock(f->real, l);
}

static int f_reserved(sqlite3_file *p, int *out)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int f_fcntl(sqlite3_file *p, int op, void *arg)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int f_sector(sqlite3_file *p)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xSectorSize(f->real);
}

static int f_devchar(sqlite3_file *p)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int f_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int f_shm_lock(sqlite3_file *p, int off, int n, int flags)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void f_shm_barrier(sqlite3_file *p)
{
    struct ffile *f = (struct ffile *)p;
    f->real->pMethods->xShmBarrier(f->real);
}

static int f_shm_unmap(sqlite3_file *p, int del)
{
    struct ffile *f = (struct ffile *)p;
    return f->real->pMethods->xShmUnmap(f->real, del);
}

/* Version 2: shared memory (WAL) but no memory-mapped I/O, so every write
 * passes through f_write. */
static const sqlite3_io_methods fio = {
    2,          f_close,       f_read,      f_write, f_truncate, f_sync,    f_size,
    f_lock,     f_unlock,      f_reserved,  f_fcntl, f_sector,   f_devchar, f_shm_map,
    f_shm_lock, f_shm_barrier, f_shm_unmap, NULL,    NULL,
};

/* ---- vfs methods --------------------------------------------------------------*/

static int v_open(sqlite3_vfs *v, const char *name, sqlite3_file *p, int flags, int *out_flags)
{
    struct ffile *f = (struct ffile *)p;
    (void)v;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK)
        return rc;
    if (name) {
        pthread_mutex_lock(&mu);
        f->st = state_for(name);
        pthread_mutex_unlock(&mu);
    }
    f->base.pMethods = &fio;
    return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *v, const char *name, int syncdir)
{
    (void)v;
    pthread_mutex_lock(&mu);
    bool off = dead;
    if (!off)
        for (struct fstate *s = states; s; s = s->next)
            if (strcmp(s->path, name) == 0)
                clear_undo(s);
    pthread_mutex_unlock(&mu);
    if (off)
        return SQLITE_IOERR_DELETE;
    return real_vfs->xDelete(real_vfs, name, syncdir);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int v_fullpath(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *v, const char *f)
{
    (void)v;
    return real_vfs->xDlOpen(real_vfs, f);
}

static void v_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    real_vfs->xDlError(real_vfs, n, out);
}

static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *s))(void)
{
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, s);
}

static void v_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}

static int v_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int v_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}

static int v_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int v_lasterr(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xGetLastError(real_vfs, n, out);
}

static int v_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int faultvfs_register(void)
{
    if (real_vfs)
        return SQLITE_OK;
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs)
        return SQLITE_ERROR;
    fvfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct ffile) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = FAULTVFS_NAME,
        .xOpen = v_open,
        .xDelete = v_delete,
        .xAccess = v_access,
        .xFullPathname = v_fullpath,
        .xDlOpen = v_dlopen,
        .xDlError = v_dlerror,
        .xDlSym = v_dlsym,
        .xDlClose = v_dlclose,
        .xRandomness = v_random,
        .xSleep = v_sleep,
        .xCurrentTime = v_time,
        .xGetLastError = v_lasterr,
        .xCurrentTimeInt64 = v_time64,
    };
    return sqlite3_vfs_register(&fvfs, 0);
}

void faultvfs_arm(long n)
{
    pthread_mutex_lock(&mu);
    countdown = n;
    pthread_mutex_unlock(&mu);
}

bool faultvfs_dead(void)
{
    pthread_mutex_lock(&mu);
    bool d = dead;
    pthread_mutex_unlock(&mu);
    return d;
}

long faultvfs_dropped_writes(void)
{
    return dropped;
}

int faultvfs_power_cut(void)
{
    int files = 0;
    pthread_mutex_lock(&mu);
    for (struct fstate *s = states; s; s = s->next) {
        if (s->dirty) {
            int fd = open(s->path, O_RDWR);
            if (fd >= 0) {
                for (int i = s->n - 1; i >= 0; i--)
                    if (s->u[i].len > 0 && pwrite(fd, s->u[i].old, (size_t)s->u[i].len,
                                                  (off_t)s->u[i].off) != (ssize_t)s->u[i].len)
                        fprintf(stderr, "faultvfs: cannot restore %s\n", s->path);
                if (ftruncate(fd, (off_t)s->synced_size) != 0)
                    fprintf(stderr, "faultvfs: cannot truncate %s\n", s->path);
                close(fd);
            }
            dropped += s->n;
            files++;
        }
        clear_undo(s);
        size_t n = strlen(s->path);
        if (n > 4 && strcmp(s->path + n - 4, "-wal") == 0) {
            char shm[1100];
            snprintf(shm, sizeof shm, "%.*s-shm", (int)(n - 4), s->path);
            unlink(shm);
        }
    }
    dead = false;
    countdown = 0;
    pthread_mutex_unlock(&mu);
    return files;
}
