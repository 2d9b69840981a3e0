/*
 * ts_replay: runs one input driver from a config file the way the agent's
 * input thread does (poll on the driver's fds, dispatch, injected nothing:
 * the real clock) and prints what a user would see, one line each:
 *
 *   state INPUT WAITING|OPEN|ERROR DETAIL
 *   scan INPUT AIM DATA            (AIM "-" when none)
 *
 * It stops after --scans N scans (exit 0) or --timeout-ms (exit 3). Used
 * under umockdev-run by tests/replay/test_replay.py.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "driver.h"
#include "ts.h"
#include "usbdrv.h"

static int scans;

static void on_scan(void *ctx, const struct ts_scan *s)
{
    (void)ctx;
    printf("scan %s %s %s\n", s->source, s->aim[0] ? s->aim : "-", s->data);
    fflush(stdout);
    scans++;
}

static void on_state(void *ctx, const char *input, enum ts_input_state st, const char *detail)
{
    (void)ctx;
    static const char *names[] = {"WAITING", "OPEN", "ERROR"};
    printf("state %s %s %s\n", input, names[st], detail);
    fflush(stdout);
}

static void on_drop(void *ctx, const char *input)
{
    (void)ctx;
    printf("guard-drop %s\n", input);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ts_replay CONFIG SECTION [--scans N] [--timeout-ms MS]\n");
        return 2;
    }
    long want = 1, timeout = 10000;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--scans") == 0)
            want = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout = strtol(argv[i + 1], NULL, 10);
    }
    char err[512];
    struct ts_conf *conf = NULL;
    if (ts_conf_load(argv[1], &conf, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    const char *drv = ts_conf_get(conf, argv[2], "driver", "");
    const struct ts_driver_ops *all[] = {&ts_driver_hidpos, &ts_driver_usbkbd, &ts_driver_evdev};
    const struct ts_driver_ops *ops = NULL;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(all[i]->name, drv) == 0)
            ops = all[i];
    if (!ops) {
        fprintf(stderr, "unknown driver '%s'\n", drv);
        ts_conf_free(conf);
        return 2;
    }
    struct ts_driver_host host = {
        .on_scan = on_scan, .on_state = on_state, .on_guard_drop = on_drop};
    void *self = NULL;
    if (ops->open(conf, argv[2], &host, &self, err, sizeof err)) {
        printf("config-error %s\n", err);
        ts_conf_free(conf);
        return 1;
    }
    int64_t end = ts_now_mono_ms() + timeout;
    int rc = 3;
    while (ts_now_mono_ms() < end) {
        struct pollfd fds[32];
        int64_t deadline = end;
        int n = ops->pollfds(self, fds, 32, &deadline);
        int64_t wait = deadline - ts_now_mono_ms();
        if (wait < 0)
            wait = 0;
        if (wait > 100) /* also re-checks the scan count now and then */
            wait = 100;
        poll(fds, (nfds_t)n, (int)wait);
        ops->dispatch(self, fds, n, ts_now_mono_ms());
        if (scans >= want) {
            rc = 0;
            break;
        }
    }
    ops->close(self);
    ts_conf_free(conf);
    return rc;
}
