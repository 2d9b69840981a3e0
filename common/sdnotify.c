/* sd_notify(3) by hand: see sdnotify.h. */
#include "sdnotify.h"
#include "ts.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum ts_err ts_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return TS_OK; /* not started by systemd: nobody to tell */
    /* "@name" is an abstract socket: a leading NUL byte instead of '@'. */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path)
        return TS_ERR_INVAL;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TS_ERR_IO;
    ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)strlen(state) ? TS_OK : TS_ERR_IO;
}

int64_t ts_sd_watchdog_usec(void)
{
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!us || !*us)
        return 0;
    /* A WATCHDOG_PID of another process (a parent that forked us) means the
     * pings are not ours to send. */
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
        return 0;
    char *end;
    long long v = strtoll(us, &end, 10);
    return *end || v <= 0 ? 0 : (int64_t)v;
}

void ts_sd_block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int ts_sd_run_until_signal(const sigset_t *set, bool (*alive)(void *ud), void *ud)
{
    ts_sd_notify("READY=1");
    int64_t wd = ts_sd_watchdog_usec();
    int sig = -1;
    while (sig < 0) {
        if (!wd) {
            int s = 0;
            if (sigwait(set, &s) == 0)
                sig = s;
            continue;
        }
        int64_t half = wd / 2 > 1000 ? wd / 2 : 1000; /* never a busy loop */
        struct timespec ts = {.tv_sec = (time_t)(half / 1000000),
                              .tv_nsec = (long)(half % 1000000) * 1000};
        int s = sigtimedwait(set, NULL, &ts);
        if (s > 0)
            sig = s;
        else if (errno == EAGAIN && (!alive || alive(ud)))
            ts_sd_notify("WATCHDOG=1");
    }
    ts_sd_notify("STOPPING=1");
    return sig;
}
