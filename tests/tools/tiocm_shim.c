/*
 * Test-only LD_PRELOAD shim for serial replays under umockdev.
 *
 * umockdev backs a mocked tty with a pty, and libserialport 0.1.1 reads the
 * modem lines with TIOCMGET (and sets them with TIOCMBIS/TIOCMBIC) while it
 * opens and configures a port; on a pty those fail with ENOTTY, so sp_open()
 * would fail on every replay. This shim answers the TIOCM* requests as a
 * real CDC ACM port with DSR/CTS/CD up would, and passes every other ioctl
 * on (to umockdev's preload library, then libc). Never installed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <termios.h>

typedef int (*ioctl_fn)(int, unsigned long, ...);

int ioctl(int fd, unsigned long request, ...);

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
