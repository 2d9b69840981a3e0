/*
 * The libusb plumbing shared by the hidpos and usbkbd drivers: find a device
 * by vid:pid (+ serial), detach the kernel driver, claim the interface,
 * keep one interrupt IN transfer going, hand each report to the driver, and
 * when the device goes away report WAITING and re-find it with backoff.
 *
 * Non-blocking: libusb's own fds (libusb_get_pollfds) go into the input
 * thread's poll set and dispatch runs libusb_handle_events_timeout with a
 * zero timeout. Kernel drivers are detached by hand
 * (libusb_kernel_driver_active + libusb_detach_kernel_driver), not with
 * libusb_set_auto_detach_kernel_driver, which fails under umockdev replay.
 */
#ifndef TS_USBDEV_H
#define TS_USBDEV_H

#include "../common/ts.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver.h"

struct ts_usbdev;

/* Which interface to claim when the config names none. */
enum ts_usbdev_want {
    TS_USBDEV_WANT_HIDPOS,  /* a HID interface that is not a boot keyboard, else the first HID */
    TS_USBDEV_WANT_BOOTKBD, /* HID subclass 1 protocol 1, else the first HID */
};

struct ts_usbdev_cfg {
    uint16_t vid, pid;
    char serial[64]; /* "" = any */
    int interface;   /* -1 = choose by want */
    enum ts_usbdev_want want;
    const char *input; /* section name, for states and logs */
};

/* Called with each completed interrupt IN report (borrowed for the call). */
typedef void (*ts_usbdev_report_fn)(void *ctx, const uint8_t *rep, size_t n);
/* Called when the device went away (so the driver drops half a code). */
typedef void (*ts_usbdev_lost_fn)(void *ctx);

/*
 * Reads vid:pid ("device = 0c2e:0b61"), "serial" and "interface" from the
 * section. TS_ERR_CONFIG with "file:line: [section] key: ..." on bad values.
 */
enum ts_err ts_usbdev_parse_conf(const struct ts_conf *conf, const char *section,
                                 struct ts_usbdev_cfg *out, char *err, size_t errsz);

/* Allocates; does not need the device. The first attempt to open it runs
 * from the first dispatch (deadline "now"). */
enum ts_err ts_usbdev_new(const struct ts_usbdev_cfg *cfg, const struct ts_driver_host *host,
                          ts_usbdev_report_fn on_report, ts_usbdev_lost_fn on_lost, void *ctx,
                          struct ts_usbdev **out, char *err, size_t errsz);
int ts_usbdev_pollfds(struct ts_usbdev *d, struct pollfd *fds, int max, int64_t *deadline);
void ts_usbdev_dispatch(struct ts_usbdev *d, struct pollfd *fds, int n, int64_t now);
void ts_usbdev_free(struct ts_usbdev *d);

/* The sentence tillside prints when a USB device node cannot be opened
 * (shared with tillside devices). */
void ts_usbdev_perm_hint(uint8_t bus, uint8_t addr, uint16_t vid, uint16_t pid, char *out,
                         size_t outsz);

#endif
