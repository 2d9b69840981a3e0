/*
 * driver = evdev: keyboard-wedge scanners through /dev/input, for sites
 * that keep the kernel's usbhid driver. EVIOCGRAB makes this process the
 * only reader, so the scanner's keystrokes stop reaching the desktop.
 *
 *   [input.front]
 *   driver = evdev
 *   device = /dev/input/by-id/usb-Honeywell_Imaging___Mobility_1900-event-kbd
 *   keymap = fr              ; the scanner's keyboard country
 *   grab = true              ; default; false shares the keys with the desktop
 *
 * Key events (struct input_event, linux/input.h; codes from
 * input-event-codes.h) are turned into HID usages and decoded with the
 * shared keymap (keymap.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "driver.h"
#include "keymap.h"
#include "ts.h"
#include "usbdrv.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000

struct evdev {
    char input[64];
    char path[256];
    bool grab;
    struct ts_driver_host host;
    struct ts_kbd kbd;
    int fd;
    unsigned mods_down; /* bit per held modifier key, see mod_bit() */
    int64_t next_try_ms, backoff_ms;
    enum ts_input_state state;
    char detail[320];
    bool state_sent;
};

static void set_state(struct evdev *e, enum ts_input_state st, const char *detail)
{
    if (e->state_sent && e->state == st && strcmp(e->detail, detail) == 0)
        return;
    e->state = st;
    e->state_sent = true;
    ts_strlcpy(e->detail, detail, sizeof e->detail);
    if (st == TS_INPUT_OPEN)
        TS_INFO("evdev", "[%s] %s", e->input, detail);
    else
        TS_WARN("evdev", "[%s] %s", e->input, detail);
    if (e->host.on_state)
        e->host.on_state(e->host.ctx, e->input, st, detail);
}

static void on_code(void *ctx, const char *code, size_t len)
{
    struct evdev *e = ctx;
    ts_driver_emit(&e->host, e->input, code, len, NULL);
}

static void retry_later(struct evdev *e, int64_t now)
{
    e->next_try_ms = now + e->backoff_ms;
    e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
}

static void close_fd(struct evdev *e)
{
    if (e->fd >= 0) {
        if (e->grab)
            ioctl(e->fd, EVIOCGRAB, 0);
        close(e->fd);
    }
    e->fd = -1;
    e->mods_down = 0;
    ts_kbd_reset(&e->kbd);
}

static void try_open(struct evdev *e, int64_t now)
{
    char msg[320];
    int fd = open(e->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == EACCES || errno == EPERM) {
            ts_errf(msg, sizeof msg,
                    "cannot open %s: permission denied; the service user must be in group "
                    "'input' (packaging/udev/60-tillside-scanners.rules gives it the scanner's "
                    "event device), then 'udevadm control --reload-rules && udevadm trigger' "
                    "and replug the scanner",
                    e->path);
            set_state(e, TS_INPUT_ERROR, msg);
        } else {
            ts_errf(msg, sizeof msg, "waiting for %s (%s)", e->path, strerror(errno));
            set_state(e, TS_INPUT_WAITING, msg);
        }
        retry_later(e, now);
        return;
    }
    if (e->grab && ioctl(fd, EVIOCGRAB, 1) != 0) {
        ts_errf(msg, sizeof msg, "cannot grab %s: %s%s", e->path, strerror(errno),
                errno == EBUSY ? " (another program grabbed it)" : "");
        set_state(e, TS_INPUT_ERROR, msg);
        close(fd);
        retry_later(e, now);
        return;
    }
    e->fd = fd;
    e->backoff_ms = BACKOFF_MIN_MS;
    ts_errf(msg, sizeof msg, "reading %s (%s, keymap %s)", e->path,
            e->grab ? "grabbed" : "not grabbed", ts_keymap_name(e->kbd.map));
    set_state(e, TS_INPUT_OPEN, msg);
}

/* Held modifiers by key code: bit 0 Shift, bit 1 AltGr, bit 2 Ctrl, bit 3
 * left Alt (Ctrl+Alt counts as AltGr, as in the boot report decoder). */
static unsigned mod_bit(unsigned code)
{
    switch (code) {
    case KEY_LEFTSHIFT:
        return 1u << 0;
    case KEY_RIGHTSHIFT:
        return 1u << 4;
    case KEY_RIGHTALT:
        return 1u << 1;
    case KEY_LEFTCTRL:
        return 1u << 2;
    case KEY_RIGHTCTRL:
        return 1u << 5;
    case KEY_LEFTALT:
        return 1u << 3;
    default:
        return 0;
    }
}

static unsigned mods_of(unsigned down)
{
    unsigned m = 0;
    bool ctrl = down & ((1u << 2) | (1u << 5));
    if (down & ((1u << 0) | (1u << 4)))
        m |= TS_KBD_SHIFT;
    if ((down & (1u << 1)) || (ctrl && (down & (1u << 3))))
        m |= TS_KBD_ALTGR;
    else if (ctrl)
        m |= TS_KBD_CTRL;
    return m;
}

static void handle_event(struct evdev *e, const struct input_event *ev)
{
    if (ev->type != EV_KEY)
        return;
    unsigned bit = mod_bit(ev->code);
    if (bit) {
        if (ev->value)
            e->mods_down |= bit;
        else
            e->mods_down &= ~bit;
        return;
    }
    if (ev->value != 1) /* release (0) or autorepeat (2) */
        return;
    uint8_t usage = ts_keymap_usage_from_evdev(ev->code);
    if (usage)
        ts_kbd_press(&e->kbd, usage, mods_of(e->mods_down));
}

/* The section's validation, for open and check-config alike. A vid:pid
 * (what hidpos and usbkbd take) is refused with the path to use instead. */
static enum ts_err evdev_conf(const struct ts_conf *conf, const char *section, const char **path,
                              const struct ts_keymap **map, bool *grab, char *err, size_t errsz)
{
    *path = ts_conf_get(conf, section, "device", NULL);
    if (!*path || (*path)[0] != '/' || strlen(*path) >= sizeof((struct evdev *)0)->path)
        return ts_conf_errf(conf, section, "device", err, errsz,
                            "expected the event device path, e.g. "
                            "/dev/input/by-id/usb-...-event-kbd%s",
                            *path && strchr(*path, ':') ? " (a vid:pid is for driver = hidpos or "
                                                          "usbkbd)"
                                                        : "");
    int rc = ts_keymap_parse_conf(conf, section, map, err, errsz);
    return rc ? rc : ts_conf_get_bool(conf, section, "grab", true, grab, err, errsz);
}

static enum ts_err evdev_check(const struct ts_conf *conf, const char *section, char *err,
                               size_t errsz)
{
    const char *path;
    const struct ts_keymap *map;
    bool grab;
    return evdev_conf(conf, section, &path, &map, &grab, err, errsz);
}

static enum ts_err evdev_open(const struct ts_conf *conf, const char *section,
                              const struct ts_driver_host *host, void **self, char *err,
                              size_t errsz)
{
    const struct ts_keymap *map;
    const char *path;
    bool grab;
    int rc = evdev_conf(conf, section, &path, &map, &grab, err, errsz);
    if (rc)
        return rc;
    struct evdev *e = calloc(1, sizeof *e);
    if (!e)
        return TS_ERR_NOMEM;
    ts_strlcpy(e->input, ts_input_name(section), sizeof e->input);
    ts_strlcpy(e->path, path, sizeof e->path);
    e->grab = grab;
    e->host = *host;
    e->fd = -1;
    e->backoff_ms = BACKOFF_MIN_MS;
    ts_kbd_init(&e->kbd, map, on_code, e);
    *self = e;
    return TS_OK;
}

static int evdev_pollfds(void *self, struct pollfd *fds, int max, int64_t *deadline)
{
    struct evdev *e = self;
    if (e->fd >= 0 && max > 0) {
        fds[0].fd = e->fd;
        fds[0].events = POLLIN;
        fds[0].revents = 0;
        return 1;
    }
    if (e->fd < 0 && e->next_try_ms < *deadline)
        *deadline = e->next_try_ms;
    return 0;
}

static void evdev_dispatch(void *self, struct pollfd *fds, int n, int64_t now)
{
    struct evdev *e = self;
    (void)fds;
    (void)n;
    if (e->fd < 0) {
        if (now >= e->next_try_ms)
            try_open(e, now);
        return;
    }
    struct input_event ev[64];
    for (;;) {
        ssize_t r = read(e->fd, ev, sizeof ev);
        if (r > 0) {
            for (size_t i = 0; i < (size_t)r / sizeof *ev; i++)
                handle_event(e, &ev[i]);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        /* ENODEV: unplugged. 0: the node closed under us. */
        char msg[320];
        ts_errf(msg, sizeof msg, "%s went away (%s); waiting for it to return", e->path,
                r < 0 ? strerror(errno) : "end of file");
        close_fd(e);
        set_state(e, TS_INPUT_WAITING, msg);
        e->backoff_ms = BACKOFF_MIN_MS;
        retry_later(e, now);
        break;
    }
    explicit_bzero(ev, sizeof ev);
}

static void evdev_close(void *self)
{
    struct evdev *e = self;
    if (!e)
        return;
    close_fd(e);
    explicit_bzero(e, sizeof *e);
    free(e);
}

const struct ts_driver_ops ts_driver_evdev = {
    .name = "evdev",
    .open = evdev_open,
    .pollfds = evdev_pollfds,
    .dispatch = evdev_dispatch,
    .close = evdev_close,
    .check = evdev_check,
    .keys = (const char *const[]){"device", "keymap", "grab", NULL},
};
