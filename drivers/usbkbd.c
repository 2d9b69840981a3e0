/*
 * driver = usbkbd: keyboard-wedge scanners read through libusb as a boot
 * keyboard, so their keystrokes never reach the desktop.
 *
 *   [input.front]
 *   driver = usbkbd
 *   device = 05e0:1200      ; vid:pid
 *   keymap = de             ; the keyboard country set in the scanner (us, uk, de, fr, fr-be, es,
 * it) serial = ...            ; optional interface = 0           ; optional, else the boot keyboard
 * interface
 *
 * Each 8-byte boot report (HID 1.11 Appendix B.1) goes through the keymap
 * decoder (keymap.c); Enter or Tab ends a code. The scanner must be set to
 * send one of them as suffix (firmware-notes/).
 */
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "keymap.h"
#include "ts.h"
#include "usbdev.h"
#include "usbdrv.h"

struct usbkbd {
    char input[64];
    struct ts_driver_host host;
    struct ts_usbdev *dev;
    struct ts_kbd kbd;
};

static void on_code(void *ctx, const char *code, size_t len)
{
    struct usbkbd *k = ctx;
    ts_driver_emit(&k->host, k->input, code, len, NULL);
}

static void on_report(void *ctx, const uint8_t *rep, size_t n)
{
    struct usbkbd *k = ctx;
    if (!ts_kbd_boot_report(&k->kbd, rep, n))
        TS_DEBUG("usbkbd", "[%s] ignored a %zu-byte report", k->input, n);
}

static void on_lost(void *ctx)
{
    struct usbkbd *k = ctx;
    ts_kbd_reset(&k->kbd);
}

/* The section's validation, for open and check-config alike. */
static enum ts_err usbkbd_conf(const struct ts_conf *conf, const char *section,
                               struct ts_usbdev_cfg *cfg, const struct ts_keymap **map, char *err,
                               size_t errsz)
{
    int rc = ts_usbdev_parse_conf(conf, section, cfg, err, errsz);
    return rc ? rc : ts_keymap_parse_conf(conf, section, map, err, errsz);
}

static enum ts_err usbkbd_check(const struct ts_conf *conf, const char *section, char *err,
                                size_t errsz)
{
    struct ts_usbdev_cfg cfg;
    const struct ts_keymap *map;
    return usbkbd_conf(conf, section, &cfg, &map, err, errsz);
}

static enum ts_err usbkbd_open(const struct ts_conf *conf, const char *section,
                               const struct ts_driver_host *host, void **self, char *err,
                               size_t errsz)
{
    struct ts_usbdev_cfg cfg;
    const struct ts_keymap *map;
    int rc = usbkbd_conf(conf, section, &cfg, &map, err, errsz);
    if (rc)
        return rc;
    cfg.want = TS_USBDEV_WANT_BOOTKBD;
    struct usbkbd *k = calloc(1, sizeof *k);
    if (!k)
        return TS_ERR_NOMEM;
    ts_strlcpy(k->input, ts_input_name(section), sizeof k->input);
    cfg.input = k->input;
    k->host = *host;
    ts_kbd_init(&k->kbd, map, on_code, k);
    rc = ts_usbdev_new(&cfg, host, on_report, on_lost, k, &k->dev, err, errsz);
    if (rc) {
        free(k);
        return rc;
    }
    *self = k;
    return TS_OK;
}

static int usbkbd_pollfds(void *self, struct pollfd *fds, int max, int64_t *deadline)
{
    struct usbkbd *k = self;
    return ts_usbdev_pollfds(k->dev, fds, max, deadline);
}

static void usbkbd_dispatch(void *self, struct pollfd *fds, int n, int64_t now)
{
    struct usbkbd *k = self;
    ts_usbdev_dispatch(k->dev, fds, n, now);
}

static void usbkbd_close(void *self)
{
    struct usbkbd *k = self;
    if (!k)
        return;
    ts_usbdev_free(k->dev);
    explicit_bzero(k, sizeof *k);
    free(k);
}

const struct ts_driver_ops ts_driver_usbkbd = {
    .name = "usbkbd",
    .open = usbkbd_open,
    .pollfds = usbkbd_pollfds,
    .dispatch = usbkbd_dispatch,
    .close = usbkbd_close,
    .check = usbkbd_check,
    .keys = (const char *const[]){"device", "serial", "interface", "keymap", NULL},
};
