/*
 * driver = serial (see serial.h for the options). libserialport opens and
 * configures the port and hands us its fd; the input thread polls it.
 *
 * A USB-CDC scanner that is unplugged hangs the tty up: poll reports
 * POLLHUP/POLLERR and read fails with EIO (or returns 0). The driver then
 * closes the port, says WAITING and tries again with backoff (250 ms
 * doubling to 5 s) from its own timer, so a replugged scanner is read again
 * without restarting the agent.
 */
#include "serial.h"
#include "ts.h"

#include <errno.h>
#include <grp.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define UDEV_RULES "packaging/udev/60-tillside-scanners.rules"
#define UDEV_RULES_INSTALLED "/lib/udev/rules.d/60-tillside-scanners.rules"

/* ---- framer ----------------------------------------------------------------*/

enum ts_err ts_serial_suffix_parse(const char *s, enum ts_serial_suffix *out)
{
    static const char *names[] = {"none", "cr", "lf", "crlf", "tab", "etx"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum ts_serial_suffix)i;
            return TS_OK;
        }
    return TS_ERR_INVAL;
}

void ts_serial_framer_init(struct ts_serial_framer *f, enum ts_serial_suffix suffix, long ict_ms,
                           bool aim_prefix)
{
    memset(f, 0, sizeof *f);
    f->suffix = suffix;
    f->ict_ms = ict_ms;
    f->aim_prefix = aim_prefix;
}

void ts_serial_framer_reset(struct ts_serial_framer *f)
{
    explicit_bzero(f->buf, sizeof f->buf);
    f->len = 0;
    f->overflow = false;
}

static bool is_aim(const char *s, size_t n)
{
    /* ISO/IEC 15424 §4: ']' + symbology code character + modifier. */
    return n >= 3 && s[0] == ']' &&
           ((s[1] >= 'A' && s[1] <= 'Z') || (s[1] >= 'a' && s[1] <= 'z')) &&
           ((s[2] >= '0' && s[2] <= '9') || (s[2] >= 'A' && s[2] <= 'Z'));
}

/* Hands the buffered code over (trimming framing bytes) and wipes it. */
static void finish(struct ts_serial_framer *f, ts_serial_code_fn fn, void *ctx)
{
    char *s = f->buf;
    size_t n = f->len;
    /* Leading STX (ETX framing) and stray CR/LF from a scanner sending one
     * more suffix byte than configured. */
    while (n && (s[0] == 0x02 || s[0] == '\r' || s[0] == '\n')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    char aim[4] = "";
    if (f->aim_prefix && is_aim(s, n)) {
        memcpy(aim, s, 3);
        s += 3;
        n -= 3;
    }
    if (!f->overflow && n)
        fn(ctx, s, n, aim);
    ts_serial_framer_reset(f);
}

static bool is_end(const struct ts_serial_framer *f, uint8_t c)
{
    switch (f->suffix) {
    case TS_SUFFIX_CR:
        return c == '\r';
    case TS_SUFFIX_LF:
    case TS_SUFFIX_CRLF:
        return c == '\n';
    case TS_SUFFIX_TAB:
        return c == '\t';
    case TS_SUFFIX_ETX:
        return c == 0x03;
    case TS_SUFFIX_NONE:
        break;
    }
    return false;
}

void ts_serial_framer_feed(struct ts_serial_framer *f, const uint8_t *p, size_t n, int64_t now_ms,
                           ts_serial_code_fn fn, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        /* A pause longer than the timeout between two bytes of one read
         * cannot happen; between reads tick() ends the code first. */
        if (is_end(f, p[i])) {
            finish(f, fn, ctx);
            continue;
        }
        if (f->len >= sizeof f->buf - 1) {
            if (!f->overflow)
                TS_WARN("serial", "a code longer than %d bytes was dropped", TS_SCAN_MAX - 1);
            explicit_bzero(f->buf, sizeof f->buf);
            f->len = 0;
            f->overflow = true;
            /* Without a suffix only the timeout can end the overflow. */
        }
        f->buf[f->len++] = (char)p[i];
    }
    if (n)
        f->last_ms = now_ms;
}

int64_t ts_serial_framer_deadline(const struct ts_serial_framer *f)
{
    if (f->ict_ms <= 0 || (f->len == 0 && !f->overflow))
        return INT64_MAX;
    return f->last_ms + f->ict_ms;
}

void ts_serial_framer_tick(struct ts_serial_framer *f, int64_t now_ms, ts_serial_code_fn fn,
                           void *ctx)
{
    if (now_ms >= ts_serial_framer_deadline(f))
        finish(f, fn, ctx);
}

/* ---- the driver ------------------------------------------------------------*/

struct serial {
    char input[48];
    char port[256];
    struct ts_driver_host host;
    long baud, data_bits, stop_bits;
    enum sp_parity parity;
    enum sp_flowcontrol flow;
    struct ts_serial_framer fr;
    struct sp_port *sp;
    int fd;
    enum ts_input_state state;
    char detail[256];
    int64_t next_open_ms, backoff_ms;
};

static void set_state(struct serial *s, enum ts_input_state st, const char *detail)
{
    /* Log transitions once, not every retry. */
    if (st != s->state || strcmp(detail, s->detail)) {
        if (st == TS_INPUT_OPEN)
            TS_INFO("serial", "[%s] %s", s->input, detail);
        else if (st != s->state)
            TS_WARN("serial", "[%s] %s", s->input, detail);
        s->state = st;
        ts_strlcpy(s->detail, detail, sizeof s->detail);
        if (s->host.on_state)
            s->host.on_state(s->host.ctx, s->input, st, detail);
    }
}

static void serial_close(void *self);

/* The section's validation into s (port, line settings, framer), for open
 * and check-config alike; allocates nothing. */
static enum ts_err serial_conf(const struct ts_conf *c, const char *sec, struct serial *s,
                               char *err, size_t errsz)
{
    int rc;
    bool aim = false;
    long ict = 0;
    enum ts_serial_suffix suffix;
    const char *v = ts_conf_get(c, sec, "port", "");
    if (!*v || v[0] != '/' || ts_strlcpy(s->port, v, sizeof s->port) >= sizeof s->port)
        return ts_conf_errf(c, sec, "port", err, errsz, "the serial device, e.g. /dev/ttyACM0");
    if ((rc = ts_conf_get_int(c, sec, "baud", 9600, 300, 4000000, &s->baud, err, errsz)) ||
        (rc = ts_conf_get_int(c, sec, "data_bits", 8, 5, 8, &s->data_bits, err, errsz)) ||
        (rc = ts_conf_get_int(c, sec, "stop_bits", 1, 1, 2, &s->stop_bits, err, errsz)) ||
        (rc = ts_conf_get_int(c, sec, "inter_char_timeout_ms", 0, 0, 10000, &ict, err, errsz)) ||
        (rc = ts_conf_get_bool(c, sec, "aim_prefix", false, &aim, err, errsz)))
        return rc;
    v = ts_conf_get(c, sec, "parity", "none");
    static const struct {
        const char *name;
        enum sp_parity p;
    } parities[] = {{"none", SP_PARITY_NONE},
                    {"odd", SP_PARITY_ODD},
                    {"even", SP_PARITY_EVEN},
                    {"mark", SP_PARITY_MARK},
                    {"space", SP_PARITY_SPACE}};
    rc = TS_ERR_CONFIG;
    for (size_t i = 0; i < sizeof parities / sizeof *parities; i++)
        if (!strcmp(v, parities[i].name)) {
            s->parity = parities[i].p;
            rc = TS_OK;
        }
    if (rc)
        return ts_conf_errf(c, sec, "parity", err, errsz, "none, odd, even, mark or space");
    if (ts_serial_flow_parse(ts_conf_get(c, sec, "flow", "none"), &s->flow) != TS_OK)
        return ts_conf_errf(c, sec, "flow", err, errsz, "none, rtscts, dtrdsr or xonxoff");
    if (ts_serial_suffix_parse(ts_conf_get(c, sec, "suffix", "cr"), &suffix))
        return ts_conf_errf(c, sec, "suffix", err, errsz, "cr, lf, crlf, tab, etx or none");
    if (suffix == TS_SUFFIX_NONE && ict == 0)
        return ts_conf_errf(c, sec, "suffix", err, errsz,
                            "none needs inter_char_timeout_ms (e.g. 50) to know where a code ends");
    ts_serial_framer_init(&s->fr, suffix, ict, aim);
    return TS_OK;
}

static enum ts_err serial_check(const struct ts_conf *c, const char *sec, char *err, size_t errsz)
{
    struct serial s;
    memset(&s, 0, sizeof s);
    int rc = serial_conf(c, sec, &s, err, errsz);
    explicit_bzero(&s, sizeof s);
    return rc;
}

static enum ts_err serial_open(const struct ts_conf *c, const char *sec,
                               const struct ts_driver_host *host, void **self, char *err,
                               size_t errsz)
{
    struct serial *s = calloc(1, sizeof *s);
    if (!s)
        return TS_ERR_NOMEM;
    s->host = *host;
    s->fd = -1;
    s->state = TS_INPUT_WAITING;
    s->backoff_ms = BACKOFF_MIN_MS;
    ts_strlcpy(s->input, ts_input_name(sec), sizeof s->input);
    int rc = serial_conf(c, sec, s, err, errsz);
    if (rc)
        goto out;
    set_state(s, TS_INPUT_WAITING, "not opened yet");
    *self = s;
    return TS_OK;
out:
    serial_close(s);
    return rc;
}

static void port_close(struct serial *s)
{
    if (s->sp) {
        sp_close(s->sp);
        sp_free_port(s->sp);
    }
    s->sp = NULL;
    s->fd = -1;
    ts_serial_framer_reset(&s->fr);
}

/* The technician's sentence for EACCES: the device, its group, the fix. */
static void perm_detail(const struct serial *s, char *out, size_t outsz)
{
    struct stat st;
    char group[64] = "dialout";
    if (stat(s->port, &st) == 0) {
        struct group *g = getgrgid(st.st_gid);
        if (g)
            ts_strlcpy(group, g->gr_name, sizeof group);
        else
            snprintf(group, sizeof group, "%u", (unsigned)st.st_gid);
    }
    snprintf(out, outsz,
             "permission denied opening %s (group %s): add the tillside user to group %s, or "
             "install the udev rule " UDEV_RULES " as " UDEV_RULES_INSTALLED
             " then run: udevadm control --reload-rules && udevadm trigger",
             s->port, group, group);
}

static void schedule_retry(struct serial *s, int64_t now)
{
    s->next_open_ms = now + s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

/*
 * The device node behind a udev symlink (/dev/tillside-scanner-0c2e-0b61 →
 * ttyACM1): libserialport 0.1.1 looks the port up in /sys/class/tty by the
 * name it is given, so it must get the kernel's name. A replugged scanner
 * may come back under another ttyACMn; the symlink follows it.
 */
enum ts_err ts_serial_dev_name(const char *path, char *out, size_t outsz)
{
    char cur[256], link[256];
    ts_strlcpy(cur, path, sizeof cur);
    for (int hops = 0; hops < 8; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0)
            return errno == ENOENT ? TS_ERR_NOTFOUND : TS_ERR_IO;
        if (!S_ISLNK(st.st_mode)) {
            ts_strlcpy(out, cur, outsz);
            return TS_OK;
        }
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n <= 0)
            return TS_ERR_IO;
        link[n] = '\0';
        if (link[0] == '/') {
            ts_strlcpy(cur, link, sizeof cur);
        } else {
            char *slash = strrchr(cur, '/');
            size_t dir = slash ? (size_t)(slash - cur + 1) : 0;
            if (dir + (size_t)n >= sizeof cur)
                return TS_ERR_INVAL;
            memcpy(cur + dir, link, (size_t)n + 1);
        }
    }
    return TS_ERR_INVAL; /* a loop */
}

enum ts_err ts_serial_flow_parse(const char *v, enum sp_flowcontrol *out)
{
    static const struct {
        const char *name;
        enum sp_flowcontrol f;
    } flows[] = {{"none", SP_FLOWCONTROL_NONE},
                 {"rtscts", SP_FLOWCONTROL_RTSCTS},
                 {"dtrdsr", SP_FLOWCONTROL_DTRDSR},
                 {"xonxoff", SP_FLOWCONTROL_XONXOFF}};
    for (size_t i = 0; i < sizeof flows / sizeof *flows; i++)
        if (!strcmp(v, flows[i].name)) {
            *out = flows[i].f;
            return TS_OK;
        }
    return TS_ERR_CONFIG;
}

static void try_open(struct serial *s, int64_t now)
{
    char detail[512], dev[256];
    struct sp_port *sp = NULL;
    int fd = -1;
    if (ts_serial_dev_name(s->port, dev, sizeof dev) != TS_OK) {
        snprintf(detail, sizeof detail, "waiting for %s (not present)", s->port);
        set_state(s, TS_INPUT_WAITING, detail);
        schedule_retry(s, now);
        return;
    }
    enum sp_return r = sp_get_port_by_name(dev, &sp);
    if (r == SP_OK)
        r = sp_open(sp, SP_MODE_READ);
    if (r != SP_OK) {
        int e = r == SP_ERR_FAIL ? sp_last_error_code() : 0;
        if (e == EACCES || e == EPERM) {
            perm_detail(s, detail, sizeof detail);
            set_state(s, TS_INPUT_ERROR, detail);
        } else if (e == EBUSY || e == EWOULDBLOCK) {
            /* EBUSY: the tty is held with TIOCEXCL; libserialport 0.1.2 also
             * takes flock(LOCK_EX | LOCK_NB) on open: EWOULDBLOCK when
             * another program (root passes TIOCEXCL) holds that lock */
            snprintf(detail, sizeof detail, "%s is busy (another program has it open)", s->port);
            set_state(s, TS_INPUT_ERROR, detail);
        } else {
            snprintf(detail, sizeof detail, "waiting for %s (not present)", s->port);
            set_state(s, TS_INPUT_WAITING, detail);
        }
        sp_free_port(sp);
        schedule_retry(s, now);
        return;
    }
    if (sp_set_baudrate(sp, (int)s->baud) != SP_OK || sp_set_bits(sp, (int)s->data_bits) != SP_OK ||
        sp_set_parity(sp, s->parity) != SP_OK || sp_set_stopbits(sp, (int)s->stop_bits) != SP_OK ||
        sp_set_flowcontrol(sp, s->flow) != SP_OK || sp_get_port_handle(sp, &fd) != SP_OK) {
        char *m = sp_last_error_message();
        snprintf(detail, sizeof detail, "%s: cannot configure the port: %s", s->port,
                 m ? m : "unknown error");
        sp_free_error_message(m);
        sp_close(sp);
        sp_free_port(sp);
        set_state(s, TS_INPUT_ERROR, detail);
        schedule_retry(s, now);
        return;
    }
    s->sp = sp;
    s->fd = fd;
    s->backoff_ms = BACKOFF_MIN_MS;
    ts_serial_framer_reset(&s->fr);
    snprintf(detail, sizeof detail, "reading %s at %ld baud", s->port, s->baud);
    set_state(s, TS_INPUT_OPEN, detail);
}

static void lost(struct serial *s, int64_t now, const char *why)
{
    char detail[512];
    port_close(s);
    snprintf(detail, sizeof detail, "%s went away (%s); waiting for it to come back", s->port, why);
    set_state(s, TS_INPUT_WAITING, detail);
    s->backoff_ms = BACKOFF_MIN_MS;
    schedule_retry(s, now);
}

static int serial_pollfds(void *self, struct pollfd *fds, int max, int64_t *deadline)
{
    struct serial *s = self;
    if (!s->sp) {
        if (s->next_open_ms < *deadline)
            *deadline = s->next_open_ms;
        return 0;
    }
    int64_t d = ts_serial_framer_deadline(&s->fr);
    if (d < *deadline)
        *deadline = d;
    if (max < 1)
        return 0;
    fds[0] = (struct pollfd){.fd = s->fd, .events = POLLIN};
    return 1;
}

static void on_code(void *ctx, const char *data, size_t len, const char *aim)
{
    struct serial *s = ctx;
    ts_driver_emit(&s->host, s->input, data, len, aim);
}

static void serial_dispatch(void *self, struct pollfd *fds, int n, int64_t now)
{
    struct serial *s = self;
    if (!s->sp) {
        if (now >= s->next_open_ms)
            try_open(s, now);
        return;
    }
    /* A code whose timeout passed ends before bytes that came later. */
    ts_serial_framer_tick(&s->fr, now, on_code, s);
    if (n >= 1 && fds[0].revents) {
        uint8_t buf[256];
        int got = fds[0].revents & POLLIN ? sp_nonblocking_read(s->sp, buf, sizeof buf) : 0;
        if (got > 0) {
            ts_serial_framer_feed(&s->fr, buf, (size_t)got, now, on_code, s);
            explicit_bzero(buf, sizeof buf);
        } else if (got < 0 || (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) ||
                   (fds[0].revents & POLLIN)) {
            /* POLLIN with nothing to read is end-of-file: hung up. */
            char why[128];
            if (got < 0) {
                char *m = sp_last_error_message();
                ts_strlcpy(why, m ? m : "read error", sizeof why);
                sp_free_error_message(m);
            } else {
                ts_strlcpy(why, "hung up", sizeof why);
            }
            lost(s, now, why);
            return;
        }
    }
    ts_serial_framer_tick(&s->fr, now, on_code, s);
}

static void serial_close(void *self)
{
    struct serial *s = self;
    if (!s)
        return;
    port_close(s);
    free(s);
}

const struct ts_driver_ops ts_driver_serial = {
    .name = "serial",
    .open = serial_open,
    .pollfds = serial_pollfds,
    .dispatch = serial_dispatch,
    .close = serial_close,
    .check = serial_check,
    .keys = (const char *const[]){"port", "baud", "data_bits", "stop_bits", "parity", "flow",
                                  "suffix", "inter_char_timeout_ms", "aim_prefix", NULL},
};
