/*
 * driver = hidpos: USB HID Point-of-Sale scanners through libusb.
 *
 *   [input.front]
 *   driver = hidpos
 *   device = 0c2e:0b61      ; vid:pid, 'tillside devices' lists it
 *   serial = 19086B1234     ; optional, when two identical scanners are attached
 *   interface = 0           ; optional, else the first non-keyboard HID interface
 *
 * Reports are read from the interrupt IN endpoint (drivers/usbdev.c) and
 * joined on the continuation bit (hidpos.h has the layout and sources).
 */
#include "hidpos.h"

#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "ts.h"
#include "usbdev.h"
#include "usbdrv.h"

struct hidpos {
    char input[64];
    struct ts_driver_host host;
    struct ts_usbdev *dev;
    struct ts_hidpos_asm asm_;
};

static void on_report(void *ctx, const uint8_t *rep, size_t n)
{
    struct hidpos *p = ctx;
    enum ts_hidpos_feed r = ts_hidpos_feed(&p->asm_, rep, n);
    if (r == TS_HIDPOS_DONE) {
        ts_driver_emit(&p->host, p->input, p->asm_.data, p->asm_.len, p->asm_.aim);
        ts_hidpos_asm_reset(&p->asm_);
    } else if (r == TS_HIDPOS_DROPPED) {
        TS_WARN("hidpos", "[%s] dropped a code longer than %d bytes or holding NUL", p->input,
                TS_SCAN_MAX - 1);
    } else if (r == TS_HIDPOS_IGNORED) {
        TS_DEBUG("hidpos", "[%s] ignored a %zu-byte report with id 0x%02x", p->input, n,
                 n ? rep[0] : 0);
    }
}

/* A scanner pulled mid-code: the first half must not prefix the next scan. */
static void on_lost(void *ctx)
{
    struct hidpos *p = ctx;
    ts_hidpos_asm_reset(&p->asm_);
}

static enum ts_err hidpos_check(const struct ts_conf *conf, const char *section, char *err,
                                size_t errsz)
{
    struct ts_usbdev_cfg cfg;
    return ts_usbdev_parse_conf(conf, section, &cfg, err, errsz);
}

static enum ts_err hidpos_open(const struct ts_conf *conf, const char *section,
                               const struct ts_driver_host *host, void **self, char *err,
                               size_t errsz)
{
    struct ts_usbdev_cfg cfg;
    int rc = ts_usbdev_parse_conf(conf, section, &cfg, err, errsz);
    if (rc)
        return rc;
    cfg.want = TS_USBDEV_WANT_HIDPOS;
    struct hidpos *p = calloc(1, sizeof *p);
    if (!p)
        return TS_ERR_NOMEM;
    ts_strlcpy(p->input, ts_input_name(section), sizeof p->input);
    cfg.input = p->input;
    p->host = *host;
    rc = ts_usbdev_new(&cfg, host, on_report, on_lost, p, &p->dev, err, errsz);
    if (rc) {
        free(p);
        return rc;
    }
    *self = p;
    return TS_OK;
}

static int hidpos_pollfds(void *self, struct pollfd *fds, int max, int64_t *deadline)
{
    struct hidpos *p = self;
    return ts_usbdev_pollfds(p->dev, fds, max, deadline);
}

static void hidpos_dispatch(void *self, struct pollfd *fds, int n, int64_t now)
{
    struct hidpos *p = self;
    ts_usbdev_dispatch(p->dev, fds, n, now);
}

static void hidpos_close(void *self)
{
    struct hidpos *p = self;
    if (!p)
        return;
    ts_usbdev_free(p->dev);
    explicit_bzero(p, sizeof *p);
    free(p);
}

const struct ts_driver_ops ts_driver_hidpos = {
    .name = "hidpos",
    .open = hidpos_open,
    .pollfds = hidpos_pollfds,
    .dispatch = hidpos_dispatch,
    .close = hidpos_close,
    .check = hidpos_check,
    .keys = (const char *const[]){"device", "serial", "interface", NULL},
};
