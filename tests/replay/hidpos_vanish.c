/*
 * The HID POS scanner unplugged mid-stream and plugged back in, run through
 * the real hidpos driver and libusb against a umockdev testbed (libumockdev,
 * so the device can leave sysfs and come back while the driver runs).
 * Must run under umockdev-wrapper (the preload library).
 *
 * What a user would notice, asserted:
 *  - the scan before the unplug arrives;
 *  - the unplug is reported (WAITING) and the half-read code of the
 *    interrupted scan never arrives, not even glued to the next one;
 *  - while the device is absent the input stays WAITING (retries, no error);
 *  - once it is back (new device number), the input is OPEN again and the
 *    next scan arrives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <umockdev.h>

#include "conf.h"
#include "driver.h"
#include "ts.h"
#include "usbdrv.h"

#define SYS_PATH "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"

static char scans[4][TS_SCAN_MAX];
static int nscans, nopen, nwaiting, nerror;
static int64_t gone_at = -1;

static void on_scan(void *ctx, const struct ts_scan *s)
{
    (void)ctx;
    printf("scan %s %s\n", s->aim, s->data);
    if (nscans < 4)
        ts_strlcpy(scans[nscans], s->data, sizeof scans[0]);
    nscans++;
}

static void on_state(void *ctx, const char *input, enum ts_input_state st, const char *detail)
{
    (void)ctx;
    printf("state %s %d %s\n", input, (int)st, detail);
    if (st == TS_INPUT_OPEN)
        nopen++;
    else if (st == TS_INPUT_WAITING)
        nwaiting++;
    else
        nerror++;
}

static int fail(const char *what)
{
    fprintf(stderr, "FAIL: %s\n", what);
    return 1;
}

int main(void)
{
    const char *src = getenv("TS_SRC_DIR");
    char a[512], b[512], dev1[512], dev2[512], err[256];
    if (!src)
        return fail("TS_SRC_DIR not set");
    if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "umockdev")) {
        fprintf(stderr, "not under umockdev-wrapper\n");
        return 77;
    }
    snprintf(dev1, sizeof dev1, "%s/tests/replay/hidpos/scanner.umockdev", src);
    snprintf(dev2, sizeof dev2, "%s/tests/replay/hidpos/scanner-replugged.umockdev", src);
    snprintf(a, sizeof a, "%s/tests/replay/hidpos/vanish-a.ioctl", src);
    snprintf(b, sizeof b, "%s/tests/replay/hidpos/vanish-b.ioctl", src);

    UMockdevTestbed *tb = umockdev_testbed_new();
    GError *gerr = NULL;
    if (!umockdev_testbed_add_from_file(tb, dev1, &gerr) ||
        !umockdev_testbed_load_ioctl(tb, "/dev/bus/usb/001/009", a, &gerr))
        return fail(gerr ? gerr->message : "testbed");

    struct ts_conf *conf = NULL;
    if (ts_conf_parse("vanish.conf", "[input.front]\ndriver = hidpos\ndevice = 0c2e:0b87\n", &conf,
                      err, sizeof err))
        return fail(err);
    struct ts_driver_host host = {.on_scan = on_scan, .on_state = on_state};
    void *self = NULL;
    if (ts_driver_hidpos.open(conf, "input.front", &host, &self, err, sizeof err))
        return fail(err);

    bool replugged = false;
    int64_t end = ts_now_mono_ms() + 15000;
    while (ts_now_mono_ms() < end && nscans < 2) {
        struct pollfd fds[16];
        int64_t deadline = ts_now_mono_ms() + 50;
        int n = ts_driver_hidpos.pollfds(self, fds, 16, &deadline);
        int64_t wait = deadline - ts_now_mono_ms();
        poll(fds, (nfds_t)n, wait < 0 ? 0 : (int)(wait > 50 ? 50 : wait));
        ts_driver_hidpos.dispatch(self, fds, n, ts_now_mono_ms());
        if (nwaiting == 1 && gone_at < 0 && nopen == 1) {
            /* the driver saw -ENODEV: take the device out of sysfs and /dev */
            umockdev_testbed_remove_device(tb, SYS_PATH);
            gone_at = ts_now_mono_ms();
        }
        /* absent long enough for several retries (backoff starts at 250 ms) */
        if (gone_at >= 0 && !replugged && ts_now_mono_ms() - gone_at > 1200) {
            if (!umockdev_testbed_add_from_file(tb, dev2, &gerr) ||
                !umockdev_testbed_load_ioctl(tb, "/dev/bus/usb/001/010", b, &gerr))
                return fail(gerr ? gerr->message : "replug");
            replugged = true;
        }
    }
    ts_driver_hidpos.close(self);
    ts_conf_free(conf);
    g_object_unref(tb);

    if (nscans < 1 || strcmp(scans[0], "2900000000018") != 0)
        return fail("the scan before the unplug did not arrive");
    if (gone_at < 0)
        return fail("the unplug was not reported as WAITING");
    if (!replugged)
        return fail("the test never replugged the device");
    if (nscans < 2)
        return fail("no scan after the device came back");
    if (strcmp(scans[1], "9780201379624") != 0)
        return fail("the scan after the replug is not the next code (half a code leaked?)");
    if (nopen != 2 || nerror != 0)
        return fail("expected OPEN, WAITING, OPEN and no ERROR");
    printf("ok: scan, unplug, %d waiting report(s), replug, next scan\n", nwaiting);
    return 0;
}
