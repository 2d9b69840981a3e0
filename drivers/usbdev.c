/*
 * libusb plumbing for the USB scanner drivers (see usbdev.h).
 */
#include "usbdev.h"

#include <libusb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define REPORT_MAX 64 /* full-speed interrupt endpoints carry at most 64 bytes */

struct ts_usbdev {
    struct ts_usbdev_cfg cfg;
    struct ts_driver_host host;
    ts_usbdev_report_fn on_report;
    ts_usbdev_lost_fn on_lost;
    void *ctx;

    libusb_context *usb;
    libusb_device_handle *h;
    struct libusb_transfer *xfer;
    bool xfer_busy; /* submitted and not yet called back */
    bool lost;      /* set by the transfer callback; acted on in dispatch */
    bool detached;  /* we detached a kernel driver: give it back on close */
    int iface;
    uint8_t bus, addr;
    uint8_t buf[REPORT_MAX];

    int64_t next_try_ms, backoff_ms;
    enum ts_input_state state;
    char detail[320];
    bool state_sent;
};

static int64_t now_ms(const struct ts_usbdev *d)
{
    return d->host.now_mono_ms ? d->host.now_mono_ms(d->host.ctx) : ts_now_mono_ms();
}

/* Reports a state change once (repeats of the same state and detail, e.g.
 * every backoff round of a missing device, stay quiet). */
static void set_state(struct ts_usbdev *d, enum ts_input_state st, const char *detail)
{
    if (d->state_sent && d->state == st && strcmp(d->detail, detail) == 0)
        return;
    d->state = st;
    d->state_sent = true;
    ts_strlcpy(d->detail, detail, sizeof d->detail);
    if (st == TS_INPUT_OPEN)
        TS_INFO("usb", "[%s] %s", d->cfg.input, detail);
    else
        TS_WARN("usb", "[%s] %s", d->cfg.input, detail);
    if (d->host.on_state)
        d->host.on_state(d->host.ctx, d->cfg.input, st, detail);
}

void ts_usbdev_perm_hint(uint8_t bus, uint8_t addr, uint16_t vid, uint16_t pid, char *out,
                         size_t outsz)
{
    ts_errf(out, outsz,
            "cannot open /dev/bus/usb/%03u/%03u (%04x:%04x): permission denied; install "
            "packaging/udev/60-tillside-scanners.rules (the Debian package puts it in "
            "/lib/udev/rules.d/; it gives group 'plugdev' access), make sure the service user "
            "is in group plugdev, run 'udevadm control --reload-rules && udevadm trigger' and "
            "replug the scanner",
            bus, addr, vid, pid);
}

enum ts_err ts_usbdev_parse_conf(const struct ts_conf *conf, const char *section,
                                 struct ts_usbdev_cfg *out, char *err, size_t errsz)
{
    struct ts_usbdev_cfg c;
    memset(&c, 0, sizeof c);
    c.interface = -1;
    c.input = section;
    const char *dev = ts_conf_get(conf, section, "device", NULL);
    unsigned vid, pid;
    int used = 0;
    if (!dev || sscanf(dev, "%4x:%4x%n", &vid, &pid, &used) != 2 || dev[used] != '\0') {
        ts_conf_errf(conf, section, "device", err, errsz,
                     "expected the scanner's USB id as vid:pid (hex, e.g. 0c2e:0b61; 'tillside "
                     "devices' lists them)%s",
                     dev && dev[0] == '/' ? ", not a path (a /dev/input path is for driver = evdev)"
                                          : "");
        return TS_ERR_CONFIG;
    }
    c.vid = (uint16_t)vid;
    c.pid = (uint16_t)pid;
    const char *serial = ts_conf_get(conf, section, "serial", "");
    if (strlen(serial) >= sizeof c.serial) {
        ts_conf_errf(conf, section, "serial", err, errsz, "longer than %zu characters",
                     sizeof c.serial - 1);
        return TS_ERR_CONFIG;
    }
    ts_strlcpy(c.serial, serial, sizeof c.serial);
    long iface;
    int rc = ts_conf_get_int(conf, section, "interface", -1, -1, 255, &iface, err, errsz);
    if (rc)
        return rc;
    c.interface = (int)iface;
    *out = c;
    return TS_OK;
}

static void LIBUSB_CALL xfer_cb(struct libusb_transfer *t)
{
    struct ts_usbdev *d = t->user_data;
    d->xfer_busy = false;
    switch (t->status) {
    case LIBUSB_TRANSFER_COMPLETED:
        if (t->actual_length > 0 && d->on_report)
            d->on_report(d->ctx, t->buffer, (size_t)t->actual_length);
        explicit_bzero(t->buffer, (size_t)t->length);
        break;
    case LIBUSB_TRANSFER_TIMED_OUT:
        break;
    case LIBUSB_TRANSFER_CANCELLED:
        return;
    default: /* NO_DEVICE, ERROR, STALL, OVERFLOW: start over from finding it */
        TS_DEBUG("usb", "[%s] transfer ended: status %d", d->cfg.input, (int)t->status);
        d->lost = true;
        return;
    }
    if (libusb_submit_transfer(t) == 0)
        d->xfer_busy = true;
    else
        d->lost = true;
}

/* Picks the interface to claim and its interrupt IN endpoint. */
static bool pick_interface(const struct ts_usbdev *d, const struct libusb_config_descriptor *cd,
                           int *iface, uint8_t *ep, uint16_t *mps)
{
    int best = -1, first_hid = -1;
    uint8_t best_ep = 0, first_ep = 0;
    uint16_t best_mps = 0, first_mps = 0;
    for (int i = 0; i < cd->bNumInterfaces; i++) {
        if (cd->interface[i].num_altsetting < 1)
            continue;
        const struct libusb_interface_descriptor *id = &cd->interface[i].altsetting[0];
        uint8_t in_ep = 0;
        uint16_t in_mps = 0;
        for (int e = 0; e < id->bNumEndpoints; e++) {
            const struct libusb_endpoint_descriptor *ed = &id->endpoint[e];
            if ((ed->bEndpointAddress & LIBUSB_ENDPOINT_IN) &&
                (ed->bmAttributes & 0x03) == LIBUSB_TRANSFER_TYPE_INTERRUPT) {
                in_ep = ed->bEndpointAddress;
                in_mps = ed->wMaxPacketSize;
                break;
            }
        }
        if (!in_ep)
            continue;
        if (d->cfg.interface >= 0) {
            if (id->bInterfaceNumber == d->cfg.interface) {
                *iface = id->bInterfaceNumber;
                *ep = in_ep;
                *mps = in_mps;
                return true;
            }
            continue;
        }
        if (id->bInterfaceClass != LIBUSB_CLASS_HID)
            continue;
        bool bootkbd = id->bInterfaceSubClass == 1 && id->bInterfaceProtocol == 1;
        if (first_hid < 0) {
            first_hid = id->bInterfaceNumber;
            first_ep = in_ep;
            first_mps = in_mps;
        }
        bool fits = d->cfg.want == TS_USBDEV_WANT_BOOTKBD ? bootkbd : !bootkbd;
        if (fits && best < 0) {
            best = id->bInterfaceNumber;
            best_ep = in_ep;
            best_mps = in_mps;
        }
    }
    if (best < 0) {
        best = first_hid;
        best_ep = first_ep;
        best_mps = first_mps;
    }
    if (best < 0)
        return false;
    *iface = best;
    *ep = best_ep;
    *mps = best_mps;
    return true;
}

static bool serial_matches(struct ts_usbdev *d, libusb_device_handle *h,
                           const struct libusb_device_descriptor *dd)
{
    unsigned char s[128];
    if (!d->cfg.serial[0])
        return true;
    if (dd->iSerialNumber == 0)
        return false;
    int n = libusb_get_string_descriptor_ascii(h, dd->iSerialNumber, s, sizeof s);
    return n > 0 && strcmp((const char *)s, d->cfg.serial) == 0;
}

/*
 * Stops reading and lets go of the device. A transfer still in flight is
 * cancelled and reaped first; if the cancel never completes (a device that
 * hangs, or a replay that does not emulate USBDEVFS_DISCARDURB),
 * libusb_close takes the transfer off libusb's in-flight list
 * (libusb 1.0.26 do_close) and it can then be freed here.
 */
static void close_device(struct ts_usbdev *d)
{
    if (d->xfer && d->xfer_busy && libusb_cancel_transfer(d->xfer) == 0) {
        struct timeval tv = {0, 20000};
        for (int i = 0; i < 25 && d->xfer_busy; i++)
            libusb_handle_events_timeout_completed(d->usb, &tv, NULL);
    }
    if (d->h) {
        libusb_release_interface(d->h, d->iface);
        if (d->detached)
            libusb_attach_kernel_driver(d->h, d->iface);
        libusb_close(d->h);
        d->h = NULL;
    }
    if (d->xfer) {
        libusb_free_transfer(d->xfer);
        d->xfer = NULL;
        d->xfer_busy = false;
    }
    d->detached = false;
    d->lost = false;
    explicit_bzero(d->buf, sizeof d->buf);
}

static void retry_later(struct ts_usbdev *d, int64_t now)
{
    d->next_try_ms = now + d->backoff_ms;
    d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d->backoff_ms * 2;
}

/* One attempt to find, open and start reading the device. */
static void try_open(struct ts_usbdev *d, int64_t now)
{
    char msg[320];
    libusb_device **list = NULL;
    libusb_device_handle *h = NULL;
    struct libusb_config_descriptor *cd = NULL;
    bool denied = false;
    uint8_t bus = 0, addr = 0;
    ssize_t n = libusb_get_device_list(d->usb, &list);
    for (ssize_t i = 0; i < n && !h; i++) {
        struct libusb_device_descriptor dd;
        if (libusb_get_device_descriptor(list[i], &dd) != 0 || dd.idVendor != d->cfg.vid ||
            dd.idProduct != d->cfg.pid)
            continue;
        bus = libusb_get_bus_number(list[i]);
        addr = libusb_get_device_address(list[i]);
        int rc = libusb_open(list[i], &h);
        if (rc == LIBUSB_ERROR_ACCESS) {
            denied = true;
            h = NULL;
            continue;
        }
        if (rc != 0) {
            TS_DEBUG("usb", "[%s] open %03u/%03u: %s", d->cfg.input, bus, addr,
                     libusb_strerror(rc));
            h = NULL;
            continue;
        }
        if (!serial_matches(d, h, &dd)) {
            libusb_close(h);
            h = NULL;
        }
    }
    if (!h) {
        if (denied) {
            ts_usbdev_perm_hint(bus, addr, d->cfg.vid, d->cfg.pid, msg, sizeof msg);
            set_state(d, TS_INPUT_ERROR, msg);
        } else {
            ts_errf(msg, sizeof msg, "waiting for USB device %04x:%04x%s%s", d->cfg.vid, d->cfg.pid,
                    d->cfg.serial[0] ? " serial " : "", d->cfg.serial);
            set_state(d, TS_INPUT_WAITING, msg);
        }
        goto fail;
    }

    int iface = -1;
    uint8_t ep = 0;
    uint16_t mps = 0;
    int rc = libusb_get_active_config_descriptor(libusb_get_device(h), &cd);
    if (rc != 0 || !pick_interface(d, cd, &iface, &ep, &mps)) {
        ts_errf(msg, sizeof msg,
                "USB device %04x:%04x has no %s interface with an interrupt IN endpoint; is the "
                "scanner in the right mode (see firmware-notes/)?",
                d->cfg.vid, d->cfg.pid, d->cfg.interface >= 0 ? "such" : "HID");
        set_state(d, TS_INPUT_ERROR, msg);
        goto fail;
    }
    d->iface = iface;
    /* libusb_kernel_driver_active: 1 when usbhid holds the interface */
    if (libusb_kernel_driver_active(h, iface) == 1) {
        rc = libusb_detach_kernel_driver(h, iface);
        if (rc != 0 && rc != LIBUSB_ERROR_NOT_FOUND) {
            ts_errf(msg, sizeof msg,
                    "cannot detach the kernel driver from %04x:%04x "
                    "interface %d: %s",
                    d->cfg.vid, d->cfg.pid, iface, libusb_strerror(rc));
            set_state(d, TS_INPUT_ERROR, msg);
            goto fail;
        }
        d->detached = rc == 0;
    }
    rc = libusb_claim_interface(h, iface);
    if (rc != 0) {
        ts_errf(msg, sizeof msg, "cannot claim %04x:%04x interface %d: %s%s", d->cfg.vid,
                d->cfg.pid, iface, libusb_strerror(rc),
                rc == LIBUSB_ERROR_BUSY ? " (another program holds it)" : "");
        set_state(d, TS_INPUT_ERROR, msg);
        goto fail;
    }
    d->h = h;
    h = NULL;
    d->bus = bus;
    d->addr = addr;
    d->xfer = libusb_alloc_transfer(0);
    if (!d->xfer)
        goto fail_open;
    if (mps == 0 || mps > sizeof d->buf)
        mps = sizeof d->buf;
    libusb_fill_interrupt_transfer(d->xfer, d->h, ep, d->buf, mps, xfer_cb, d, 0);
    rc = libusb_submit_transfer(d->xfer);
    if (rc != 0) {
        ts_errf(msg, sizeof msg, "cannot read from %04x:%04x: %s", d->cfg.vid, d->cfg.pid,
                libusb_strerror(rc));
        set_state(d, TS_INPUT_ERROR, msg);
        goto fail_open;
    }
    d->xfer_busy = true;
    ts_errf(msg, sizeof msg, "reading USB device %04x:%04x (bus %03u device %03u, interface %d%s)",
            d->cfg.vid, d->cfg.pid, bus, addr, iface,
            d->detached ? ", kernel driver detached" : "");
    set_state(d, TS_INPUT_OPEN, msg);
    d->backoff_ms = BACKOFF_MIN_MS;
    libusb_free_config_descriptor(cd);
    libusb_free_device_list(list, 1);
    return;

fail_open:
    close_device(d);
fail:
    if (h)
        libusb_close(h);
    if (cd)
        libusb_free_config_descriptor(cd);
    if (list)
        libusb_free_device_list(list, 1);
    retry_later(d, now);
}

enum ts_err ts_usbdev_new(const struct ts_usbdev_cfg *cfg, const struct ts_driver_host *host,
                          ts_usbdev_report_fn on_report, ts_usbdev_lost_fn on_lost, void *ctx,
                          struct ts_usbdev **out, char *err, size_t errsz)
{
    struct ts_usbdev *d = calloc(1, sizeof *d);
    if (!d)
        return TS_ERR_NOMEM;
    d->cfg = *cfg;
    d->host = *host;
    d->on_report = on_report;
    d->on_lost = on_lost;
    d->ctx = ctx;
    d->backoff_ms = BACKOFF_MIN_MS;
    d->next_try_ms = 0; /* first dispatch tries */
    int rc = libusb_init(&d->usb);
    if (rc != 0) {
        ts_errf(err, errsz, "[%s] libusb: %s", cfg->input, libusb_strerror(rc));
        free(d);
        return TS_ERR_IO;
    }
    *out = d;
    return TS_OK;
}

int ts_usbdev_pollfds(struct ts_usbdev *d, struct pollfd *fds, int max, int64_t *deadline)
{
    int n = 0;
    if (d->h) {
        const struct libusb_pollfd **p = libusb_get_pollfds(d->usb);
        for (int i = 0; p && p[i] && n < max; i++) {
            fds[n].fd = p[i]->fd;
            fds[n].events = p[i]->events;
            fds[n].revents = 0;
            n++;
        }
        libusb_free_pollfds(p);
        struct timeval tv;
        if (libusb_get_next_timeout(d->usb, &tv) == 1) {
            int64_t due = now_ms(d) + (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
            if (due < *deadline)
                *deadline = due;
        }
        if (d->lost && *deadline > 0)
            *deadline = 0;
    } else if (d->next_try_ms < *deadline) {
        *deadline = d->next_try_ms;
    }
    return n;
}

void ts_usbdev_dispatch(struct ts_usbdev *d, struct pollfd *fds, int n, int64_t now)
{
    (void)fds;
    (void)n;
    if (d->h) {
        struct timeval zero = {0, 0};
        libusb_handle_events_timeout_completed(d->usb, &zero, NULL);
        if (d->lost) {
            char msg[160];
            close_device(d);
            if (d->on_lost)
                d->on_lost(d->ctx);
            ts_errf(msg, sizeof msg, "USB device %04x:%04x went away; waiting for it to return",
                    d->cfg.vid, d->cfg.pid);
            set_state(d, TS_INPUT_WAITING, msg);
            d->backoff_ms = BACKOFF_MIN_MS;
            retry_later(d, now);
        }
        return;
    }
    if (now >= d->next_try_ms)
        try_open(d, now);
}

void ts_usbdev_free(struct ts_usbdev *d)
{
    if (!d)
        return;
    close_device(d);
    libusb_exit(d->usb);
    explicit_bzero(d, sizeof *d);
    free(d);
}
