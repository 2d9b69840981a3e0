/*
 * Test-only LD_PRELOAD shim for serial replays under umockdev. Never
 * installed. It sits before umockdev's preload library and fixes two
 * things umockdev gets wrong for a mocked tty:
 *
 * 1. Modem lines. umockdev backs a mocked tty with a pty, and libserialport
 *    (0.1.1 and 0.1.2) reads the modem lines with TIOCMGET (and sets them
 *    with TIOCMBIS/TIOCMBIC) while it opens and configures a port; on a pty
 *    those fail with ENOTTY, so sp_open() would fail on every replay. The
 *    shim answers the TIOCM* requests as a real CDC ACM port with DSR/CTS/CD
 *    up would, and passes every other ioctl on (to umockdev, then libc).
 *
 * 2. realpath(). libserialport 0.1.2 (Debian 13) canonicalizes the port
 *    name with realpath() in sp_get_port_by_name (upstream 95bad38, "Allow
 *    users to use symlinks"); 0.1.1 (Debian 12) never calls it. umockdev's
 *    realpath wrapper (since 0.12, still in 0.19) resolves
 *    $UMOCKDEV_DIR/dev/ttyACM0, which is a symlink to the backing pty
 *    /dev/pts/N outside the testbed, and then strips the testbed prefix
 *    from the result with memmove(r, r + prefix_len, strlen(r) - prefix_len
 *    + 1): for the shorter "/dev/pts/N" that length is negative, the copy
 *    runs over the caller's stack and the process dies with SIGSEGV before
 *    the port is even opened. (Any program calling realpath("/dev/ttyACM0")
 *    under umockdev-run crashes the same way; on a real system the path is
 *    a device node and libc's realpath is fine.) The shim answers realpath()
 *    for a /dev path of the testbed itself: symlinks inside the testbed
 *    (a udev-style /dev/tillside-scanner-* -> ttyACM0) are followed, the
 *    mocked device node is where it stops, as the kernel's node would be.
 *    Everything else goes to umockdev, then libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef char *(*realpath_fn)(const char *, char *);

int ioctl(int fd, unsigned long request, ...);
char *realpath(const char *path, char *resolved);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);

int ioctl(int fd, unsigned long request, ...)
{
    static ioctl_fn next;
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    switch (request) {
    case TIOCMGET:
        if (arg)
            *(int *)arg = TIOCM_DTR | TIOCM_RTS | TIOCM_CTS | TIOCM_DSR | TIOCM_CD;
        return 0;
    case TIOCMSET:
    case TIOCMBIS:
    case TIOCMBIC:
        return 0;
    default:
        break;
    }
    if (!next)
        next = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
    return next(fd, request, arg);
}

/*
 * The testbed's answer for a /dev path: 1 with out set, 0 when the path is
 * not one of the testbed's (umockdev's realpath is then safe: it only
 * rewrites paths it redirected), -1 with errno for a dangling link.
 */
static int testbed_dev_realpath(const char *path, char out[PATH_MAX])
{
    const char *root = getenv("UMOCKDEV_DIR");
    if (!root || !*root || strncmp(path, "/dev/", 5) != 0 || strstr(path, "/../"))
        return 0;
    char cur[PATH_MAX], tb[PATH_MAX], link[PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
        return 0;
    for (int hops = 0; hops < 16; hops++) {
        struct stat st;
        if (snprintf(tb, sizeof tb, "%s%s", root, cur) >= (int)sizeof tb)
            return 0;
        if (lstat(tb, &st) != 0)
            return hops ? (errno = ENOENT, -1) : 0;
        if (!S_ISLNK(st.st_mode))
            break;
        ssize_t n = readlink(tb, link, sizeof link - 1);
        if (n <= 0)
            return 0;
        link[n] = '\0';
        if (link[0] == '/') {
            /* the mocked node's own pty lives outside the testbed: this is
             * the device */
            if (strncmp(link, "/dev/", 5) != 0 || strncmp(link, "/dev/pts/", 9) == 0)
                break;
            snprintf(cur, sizeof cur, "%s", link);
        } else {
            char *slash = strrchr(cur, '/');
            size_t dir = (size_t)(slash - cur) + 1;
            if (dir + (size_t)n >= sizeof cur || strstr(link, ".."))
                return 0;
            memcpy(cur + dir, link, (size_t)n + 1);
        }
    }
    memcpy(out, cur, strlen(cur) + 1);
    return 1;
}

char *realpath(const char *path, char *resolved)
{
    static realpath_fn next;
    char mine[PATH_MAX];
    int t = path ? testbed_dev_realpath(path, mine) : 0;
    if (t < 0)
        return NULL;
    if (t > 0) {
        if (!resolved)
            return strdup(mine);
        memcpy(resolved, mine, strlen(mine) + 1); /* resolved holds PATH_MAX */
        return resolved;
    }
    if (!next)
        next = (realpath_fn)dlsym(RTLD_NEXT, "realpath");
    return next(path, resolved);
}

/* What -D_FORTIFY_SOURCE turns realpath(p, buf[PATH_MAX + 1]) into. */
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    (void)resolvedlen; /* glibc's check: at least PATH_MAX, which callers give */
    return realpath(path, resolved);
}
