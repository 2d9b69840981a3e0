/*
 * The escpos input: a relay between a POS and its receipt printer that reads
 * the receipts on the way (PRODUCT.md §4.1 escpos).
 *
 *   POS --(TCP listen | serial pos_port)--> tillside --(TCP printer | serial printer_port)-->
 * printer
 *       <----------- status replies (DLE EOT, GS a, GS I, GS r answers) ------------
 *
 * Rules the relay keeps:
 * - Printing is never held up: bytes go to the printer first; the parser
 *   sees a copy of exactly the bytes the printer took, after they were
 *   written. A purchase is therefore only ever made of printed bytes.
 * - Nothing is taken from the POS that the printer has not taken: the POS
 *   side is read only while the buffer towards the printer is empty, so a
 *   slow or stopped printer pushes back on the POS (TCP window, serial flow
 *   control). A TCP POS connection is accepted only once the printer
 *   connection is up; when the printer cannot be reached the POS connection
 *   is accepted and reset at once, so the POS reports a failed print rather
 *   than believing it printed.
 * - Both directions are byte-transparent: nothing is added, dropped or
 *   reordered.
 *
 * TCP POS + TCP printer: one printer connection per POS connection (what a
 * raw 9100 printer expects). A serial side stays open and is reopened with
 * backoff when it goes away; a TCP printer behind a serial POS is kept
 * connected and reconnected with backoff.
 */
#include "driver.h"
#include "escpos.h"
#include "escpos_relay.h"
#include "escpos_rules.h"
#include "guard.h"
#include "serial.h"
#include "ts.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libserialport.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define RELAY_BUF 4096
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000

struct side {
    int fd;                 /* -1 = closed */
    struct sp_port *sp;     /* serial side, NULL for a socket */
    uint8_t buf[RELAY_BUF]; /* bytes from the other side still to write here */
    size_t off, len;
};

struct relay {
    char input[64];
    struct ts_driver_host host;
    /* configuration */
    char listen_host[256], listen_port[16];
    char pos_dev[256];
    char prn_host[256], prn_port[16];
    char prn_dev[256];
    long baud, connect_timeout_ms;
    enum sp_flowcontrol flow;
    /* state */
    int lfd;
    struct side pos, prn; /* pos.buf: towards the POS; prn.buf: towards the printer */
    bool connecting;      /* non-blocking connect to the printer in progress */
    int64_t connect_deadline;
    bool pos_eof;  /* the POS closed its side; drain to the printer, then close */
    bool prn_shut; /* TCP printer half-closed after the job; replies still pass back */
    int64_t linger_deadline;
    long linger_ms;
    bool started;
    int64_t retry_at; /* next reopen attempt (0 = none pending) */
    int64_t backoff_ms;
    enum ts_input_state state;
    char detail[256];
    struct ts_escpos *parser;
    struct ts_receipt_rules *rules;
};

static int64_t mono(const struct relay *r)
{
    return r->host.now_mono_ms ? r->host.now_mono_ms(r->host.ctx) : ts_now_mono_ms();
}

static int64_t wall(const struct relay *r)
{
    return r->host.now_wall_ms ? r->host.now_wall_ms(r->host.ctx) : ts_now_wall_ms();
}

static void set_state(struct relay *r, enum ts_input_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_state(struct relay *r, enum ts_input_state st, const char *fmt, ...)
{
    char d[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d, sizeof d, fmt, ap);
    va_end(ap);
    if (st == r->state && !strcmp(d, r->detail))
        return;
    r->state = st;
    ts_strlcpy(r->detail, d, sizeof r->detail);
    TS_INFO("escpos", "%s: %s", r->input, d);
    if (r->host.on_state)
        r->host.on_state(r->host.ctx, r->input, st, d);
}

/* A completed receipt: rules → purchase → host. Runs after its bytes were
 * written to the printer. */
static void on_receipt(void *ctx, const struct ts_escpos_receipt *rc)
{
    struct relay *r = ctx;
    json_t *purchase = NULL;
    char err[256];
    /* The payment card guard on every line and printed code, before the
     * rules see them (a card number in the loyalty line, a gift card's number
     * in an item line): what the rules make holds masked text only. */
    struct ts_receipt_guarded gr;
    if (ts_receipt_guard(r->host.guard, rc, &gr) != TS_OK) {
        TS_WARN("escpos", "%s: receipt not taken as a sale: out of memory", r->input);
        return;
    }
    if (gr.hits) {
        if (gr.first_line)
            TS_WARN("guard", "%s: payment card %s masked in receipt line %u (…%s)%s", r->input,
                    gr.first.kind == TS_GUARD_TRACK ? "track data" : "number", gr.first_line,
                    gr.first.last4, gr.hits > 1 ? ", and more" : "");
        else
            TS_WARN("guard", "%s: printed code with payment card data dropped (…%s)", r->input,
                    gr.first.last4);
        if (r->host.on_guard_drop)
            r->host.on_guard_drop(r->host.ctx, r->input);
    }
    int rv = ts_receipt_rules_apply(r->rules, &gr.r, wall(r), &purchase, err, sizeof err);
    ts_receipt_guarded_free(&gr);
    if (rv != TS_OK) {
        TS_INFO("escpos", "%s: receipt not taken as a sale: %s", r->input, err);
        return;
    }
    TS_INFO("escpos", "%s: receipt %s parsed (%zu items)", r->input,
            json_string_value(json_object_get(purchase, "receipt")),
            json_array_size(json_object_get(purchase, "products")));
    if (r->host.on_purchase)
        r->host.on_purchase(r->host.ctx, r->input, purchase);
    json_decref(purchase);
}

/* "host:port", "[v6]:port" or ":port" / "port" (listen on every address). */
static int split_hostport(const char *v, char *host, size_t hsz, char *port, size_t psz)
{
    const char *colon = strrchr(v, ':');
    const char *h = v;
    size_t hl;
    if (!colon) {
        host[0] = '\0';
        ts_strlcpy(port, v, psz);
    } else {
        hl = (size_t)(colon - v);
        if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']')
            h++, hl -= 2;
        if (hl >= hsz)
            return TS_ERR_INVAL;
        memcpy(host, h, hl);
        host[hl] = '\0';
        ts_strlcpy(port, colon + 1, psz);
    }
    if (!port[0] || strspn(port, "0123456789") != strlen(port) || atol(port) < 1 ||
        atol(port) > 65535)
        return TS_ERR_INVAL;
    return TS_OK;
}

static void side_close(struct side *s)
{
    if (s->sp) {
        sp_close(s->sp);
        sp_free_port(s->sp);
        s->sp = NULL;
    } else if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = -1;
    s->off = s->len = 0;
}

/* Closes a TCP POS connection with a reset (SO_LINGER 0) so the POS sees
 * an error for the job rather than a clean close. */
static void pos_reset(struct relay *r)
{
    if (r->pos.fd >= 0 && !r->pos.sp) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(r->pos.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    side_close(&r->pos);
}

static int serial_open(struct relay *r, const char *path, struct side *s, char *why, size_t whysz)
{
    struct sp_port *sp = NULL;
    int fd = -1;
    char dev[256];
    if (ts_serial_dev_name(path, dev, sizeof dev) != TS_OK) {
        ts_errf(why, whysz, "%s: not present", path);
        return TS_ERR_IO;
    }
    if (sp_get_port_by_name(dev, &sp) != SP_OK || sp_open(sp, SP_MODE_READ_WRITE) != SP_OK ||
        sp_set_baudrate(sp, (int)r->baud) != SP_OK || sp_set_bits(sp, 8) != SP_OK ||
        sp_set_parity(sp, SP_PARITY_NONE) != SP_OK || sp_set_stopbits(sp, 1) != SP_OK ||
        sp_set_flowcontrol(sp, r->flow) != SP_OK || sp_get_port_handle(sp, &fd) != SP_OK) {
        char *m = sp_last_error_message();
        ts_errf(why, whysz, "%s: %s", dev, m ? m : "cannot open");
        sp_free_error_message(m);
        if (sp) {
            sp_close(sp);
            sp_free_port(sp);
        }
        return TS_ERR_IO;
    }
    s->sp = sp;
    s->fd = fd; /* buf keeps what printer_down() queued */
    return TS_OK;
}

/* Starts a non-blocking connect to the TCP printer. */
static int printer_connect(struct relay *r, char *why, size_t whysz)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int fd = -1, rc = getaddrinfo(r->prn_host, r->prn_port, &hints, &ai);
    if (rc != 0) {
        ts_errf(why, whysz, "printer %s:%s: %s", r->prn_host, r->prn_port, gai_strerror(rc));
        return TS_ERR_CONNECT;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        ts_errf(why, whysz, "printer %s:%s: %s", r->prn_host, r->prn_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return TS_ERR_CONNECT;
    }
    freeaddrinfo(ai);
    r->prn.fd = fd; /* buf keeps what printer_down() queued */
    r->connecting = true;
    r->connect_deadline = mono(r) + r->connect_timeout_ms;
    return TS_OK;
}

static void schedule_retry(struct relay *r)
{
    r->retry_at = mono(r) + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static bool printer_persistent(const struct relay *r)
{
    return r->prn_dev[0] || r->pos_dev[0];
}

/* The printer went away or could not be reached. */
static void printer_down(struct relay *r, const char *why)
{
    /* A serial POS's stream goes on once the printer is back: the bytes
     * read from the POS but not yet written stay queued (the POS line is
     * not read meanwhile, so its flow control holds the POS), and the
     * parser keeps its place in the stream. */
    bool resume = r->pos.sp != NULL;
    size_t off = r->prn.off, len = r->prn.len;
    side_close(&r->prn);
    if (resume) {
        r->prn.off = off;
        r->prn.len = len;
    }
    r->connecting = false;
    r->prn_shut = false;
    if (r->pos.fd >= 0 && !r->pos.sp) {
        pos_reset(r); /* the POS job failed: say so */
        r->pos_eof = false;
    }
    /* A TCP job the printer did not finish is not a sale we saw printed. */
    if (!resume)
        ts_escpos_discard(r->parser);
    set_state(r, TS_INPUT_WAITING, "printer not reachable: %s", why);
    if (printer_persistent(r))
        schedule_retry(r);
}

/* A TCP job is over: the POS closed and the printer took everything (and
 * closed, or the linger time ran out). */
static void session_end(struct relay *r)
{
    side_close(&r->pos);
    r->pos_eof = false;
    r->prn_shut = false;
    if (!printer_persistent(r))
        side_close(&r->prn);
    ts_escpos_flush(r->parser); /* a job without a cut ends with its connection */
}

/* The POS side failed: a serial port is reopened with backoff, a TCP job
 * ends. */
static void pos_gone(struct relay *r, const char *why)
{
    if (r->pos.sp) {
        side_close(&r->pos);
        ts_escpos_flush(r->parser);
        set_state(r, TS_INPUT_WAITING, "POS port %s: %s", r->pos_dev, why);
        schedule_retry(r);
        return;
    }
    TS_DEBUG("escpos", "%s: POS connection ended: %s", r->input, why);
    session_end(r);
}

/* Writes what is buffered towards s; the copy towards the printer goes to
 * the parser once written. false on a write error. */
static bool side_flush(struct relay *r, struct side *s)
{
    while (s->off < s->len) {
        ssize_t n;
        if (s->sp)
            n = sp_nonblocking_write(s->sp, s->buf + s->off, s->len - s->off);
        else
            n = send(s->fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL);
        if (n < 0 && !s->sp && (errno == EAGAIN || errno == EINTR))
            return true;
        if (n < 0)
            return false;
        if (n == 0)
            return true;
        if (s == &r->prn)
            ts_escpos_feed(r->parser, s->buf + s->off, (size_t)n);
        s->off += (size_t)n;
    }
    s->off = s->len = 0;
    return true;
}

/* Reads from `from` into to->buf (empty) and forwards. Returns 1 on data,
 * 0 on EOF, -1 on error, 2 when nothing was there. */
static int side_pump(struct relay *r, struct side *from, struct side *to)
{
    ssize_t n;
    if (from->sp)
        n = sp_nonblocking_read(from->sp, to->buf, sizeof to->buf);
    else
        n = recv(from->fd, to->buf, sizeof to->buf, 0);
    if (n < 0 && !from->sp && (errno == EAGAIN || errno == EINTR))
        return 2;
    if (n < 0)
        return -1;
    if (n == 0)
        return from->sp ? 2 : 0;
    to->off = 0;
    to->len = (size_t)n;
    return side_flush(r, to) ? 1 : -3;
}

static int listen_open(struct relay *r, char *err, size_t errsz)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int one = 1, fd = -1;
    int rc = getaddrinfo(r->listen_host[0] ? r->listen_host : NULL, r->listen_port, &hints, &ai);
    if (rc != 0) {
        ts_errf(err, errsz, "listen %s:%s: %s", r->listen_host, r->listen_port, gai_strerror(rc));
        return TS_ERR_CONFIG;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 8) != 0) {
        ts_errf(err, errsz, "listen %s:%s: %s", r->listen_host, r->listen_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return TS_ERR_IO;
    }
    freeaddrinfo(ai);
    r->lfd = fd;
    return TS_OK;
}

static int conf_err(const struct ts_conf *conf, const char *sec, const char *key, char *err,
                    size_t errsz, const char *msg)
{
    return ts_conf_errf(conf, sec, key, err, errsz, "%s", msg);
}

static void relay_close(void *self);

static int relay_open(const struct ts_conf *conf, const char *sec,
                      const struct ts_driver_host *host, void **self, char *err, size_t errsz)
{
    struct relay *r = calloc(1, sizeof *r);
    const char *v, *rules_sec;
    enum ts_escpos_cp cp = TS_ESCPOS_CP437;
    int rc = TS_ERR_CONFIG;
    if (!r)
        return TS_ERR_NOMEM;
    r->lfd = r->pos.fd = r->prn.fd = -1;
    r->host = *host;
    r->backoff_ms = BACKOFF_MIN_MS;
    ts_strlcpy(r->input, strncmp(sec, "input.", 6) ? sec : sec + 6, sizeof r->input);
    r->state = TS_INPUT_WAITING;

    v = ts_conf_get(conf, sec, "listen", "");
    if (*v && split_hostport(v, r->listen_host, sizeof r->listen_host, r->listen_port,
                             sizeof r->listen_port) != TS_OK) {
        rc = conf_err(conf, sec, "listen", err, errsz, "HOST:PORT (e.g. 0.0.0.0:9100)");
        goto out;
    }
    ts_strlcpy(r->pos_dev, ts_conf_get(conf, sec, "pos_port", ""), sizeof r->pos_dev);
    if (!*v == !r->pos_dev[0]) {
        rc = conf_err(conf, sec, "listen", err, errsz,
                      "set exactly one of listen (TCP) and pos_port (serial) for the POS side");
        goto out;
    }
    v = ts_conf_get(conf, sec, "printer", "");
    if (*v && (split_hostport(v, r->prn_host, sizeof r->prn_host, r->prn_port,
                              sizeof r->prn_port) != TS_OK ||
               !r->prn_host[0])) {
        rc = conf_err(conf, sec, "printer", err, errsz, "HOST:PORT of the real printer");
        goto out;
    }
    ts_strlcpy(r->prn_dev, ts_conf_get(conf, sec, "printer_port", ""), sizeof r->prn_dev);
    if (!*v == !r->prn_dev[0]) {
        rc = conf_err(conf, sec, "printer", err, errsz,
                      "set exactly one of printer (TCP) and printer_port (serial)");
        goto out;
    }
    if ((rc = ts_conf_get_int(conf, sec, "baud", 9600, 300, 4000000, &r->baud, err, errsz)) ||
        (rc = ts_conf_get_int(conf, sec, "connect_timeout_ms", 3000, 100, 60000,
                              &r->connect_timeout_ms, err, errsz)) ||
        (rc = ts_conf_get_int(conf, sec, "linger_ms", 5000, 0, 60000, &r->linger_ms, err, errsz)))
        goto out;
    if (ts_serial_flow_parse(ts_conf_get(conf, sec, "flow", "none"), &r->flow) != TS_OK) {
        rc = conf_err(conf, sec, "flow", err, errsz, "none, rtscts, dtrdsr or xonxoff");
        goto out;
    }
    v = ts_conf_get(conf, sec, "codepage", "437");
    if (ts_escpos_cp_parse(v, &cp) != TS_OK) {
        rc = conf_err(conf, sec, "codepage", err, errsz, "437, 850, 858 or 1252");
        goto out;
    }
    /* Rules live in the input's section or in a shared [receipt.NAME]. */
    rules_sec = ts_conf_get(conf, sec, "rules", NULL);
    if ((rc = ts_receipt_rules_load(conf, rules_sec ? rules_sec : sec, &r->rules, err, errsz)) ||
        (rc = ts_escpos_new(cp, on_receipt, r, &r->parser)))
        goto out;
    if (r->listen_port[0] && (rc = listen_open(r, err, errsz)))
        goto out;
    *self = r;
    r = NULL;
    rc = TS_OK;
out:
    relay_close(r);
    return rc;
}

/* Opens what should be open and is not (serial sides, a persistent TCP
 * printer), from the retry timer. */
static void relay_reopen(struct relay *r)
{
    char why[256];
    r->retry_at = 0;
    if (r->prn_dev[0] && r->prn.fd < 0 && serial_open(r, r->prn_dev, &r->prn, why, sizeof why)) {
        set_state(r, TS_INPUT_WAITING, "printer port %s", why);
        schedule_retry(r);
        return;
    }
    if (r->pos_dev[0] && r->pos.fd < 0 && serial_open(r, r->pos_dev, &r->pos, why, sizeof why)) {
        set_state(r, TS_INPUT_WAITING, "POS port %s", why);
        schedule_retry(r);
        return;
    }
    if (r->pos_dev[0] && r->prn_host[0] && r->prn.fd < 0 && !r->connecting) {
        if (printer_connect(r, why, sizeof why) != TS_OK) {
            printer_down(r, why);
            return;
        }
    }
    if (!r->connecting && r->prn.fd >= 0) {
        r->backoff_ms = BACKOFF_MIN_MS;
        set_state(r, TS_INPUT_OPEN, "relaying %s%s%s to %s%s%s",
                  r->pos_dev[0] ? r->pos_dev : "TCP port ", r->pos_dev[0] ? "" : r->listen_port, "",
                  r->prn_dev[0] ? r->prn_dev : r->prn_host, r->prn_dev[0] ? "" : ":",
                  r->prn_dev[0] ? "" : r->prn_port);
    }
}

static int relay_pollfds(void *self, struct pollfd *fds, int max, int64_t *deadline)
{
    struct relay *r = self;
    int n = 0;
    if (!r->started) {
        r->started = true;
        /* First round: open the persistent sides now (open() must not
         * need the devices to be present). */
        if (printer_persistent(r))
            relay_reopen(r);
        else
            set_state(r, TS_INPUT_OPEN, "listening on port %s for the POS, printer %s:%s",
                      r->listen_port, r->prn_host, r->prn_port);
    }
    if (r->retry_at && (*deadline < 0 || r->retry_at < *deadline))
        *deadline = r->retry_at;
    if (r->connecting && (*deadline < 0 || r->connect_deadline < *deadline))
        *deadline = r->connect_deadline;
    if (r->prn_shut && (*deadline < 0 || r->linger_deadline < *deadline))
        *deadline = r->linger_deadline;
    if (n < max && r->lfd >= 0 && r->pos.fd < 0 && !(r->connecting && !printer_persistent(r))) {
        fds[n].fd = r->lfd;
        fds[n].events = POLLIN;
        fds[n++].revents = 0;
    }
    if (n < max && r->prn.fd >= 0) {
        short ev = 0;
        if (r->connecting || r->prn.len)
            ev |= POLLOUT;
        if (!r->connecting && !r->pos.len)
            ev |= POLLIN; /* status replies, only while the POS side can take them */
        /* No events wanted: leave the fd out, or a hung-up line would
         * wake poll() at once, again and again (POLLHUP is always on). */
        if (ev) {
            fds[n].fd = r->prn.fd;
            fds[n].events = ev;
            fds[n++].revents = 0;
        }
    }
    if (n < max && r->pos.fd >= 0) {
        short ev = 0;
        if (r->pos.len)
            ev |= POLLOUT;
        /* Read from the POS only what the printer can take now. */
        if (!r->prn.len && !r->pos_eof && r->prn.fd >= 0 && !r->connecting)
            ev |= POLLIN;
        if (ev) {
            fds[n].fd = r->pos.fd;
            fds[n].events = ev;
            fds[n++].revents = 0;
        }
    }
    return n;
}

static short revents_of(const struct pollfd *fds, int n, int fd)
{
    for (int i = 0; fd >= 0 && i < n; i++)
        if (fds[i].fd == fd)
            return fds[i].revents;
    return 0;
}

/* The listening socket has a POS waiting: connect the printer first. */
static void on_listen(struct relay *r)
{
    char why[256];
    if (r->prn.fd >= 0 && !r->connecting) {
        int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            r->pos.fd = fd;
            r->pos.off = r->pos.len = 0;
            r->pos_eof = false;
        }
        return;
    }
    if (r->prn_dev[0]) {
        /* Serial printer not open: refuse the job now. */
        int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            r->pos.fd = fd;
            pos_reset(r);
        }
        return;
    }
    if (printer_connect(r, why, sizeof why) != TS_OK) {
        int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            r->pos.fd = fd;
            pos_reset(r);
        }
        printer_down(r, why);
    }
}

static void on_connected(struct relay *r, bool timed_out)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    char why[256];
    if (timed_out)
        soerr = ETIMEDOUT;
    else if (getsockopt(r->prn.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return;
    r->connecting = false;
    if (soerr) {
        ts_errf(why, sizeof why, "%s:%s: %s", r->prn_host, r->prn_port, strerror(soerr));
        if (!printer_persistent(r)) {
            int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                r->pos.fd = fd;
                pos_reset(r);
            }
        }
        printer_down(r, why);
        return;
    }
    {
        int one = 1;
        setsockopt(r->prn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    r->backoff_ms = BACKOFF_MIN_MS;
    set_state(r, TS_INPUT_OPEN, "relaying %s%s to printer %s:%s",
              r->pos_dev[0] ? r->pos_dev : "TCP port ", r->pos_dev[0] ? "" : r->listen_port,
              r->prn_host, r->prn_port);
    if (!printer_persistent(r))
        on_listen(r); /* accept the POS that was waiting */
}

static void relay_dispatch(void *self, struct pollfd *fds, int n, int64_t now)
{
    struct relay *r = self;
    short lev = revents_of(fds, n, r->lfd);
    short pev = r->prn.fd >= 0 ? revents_of(fds, n, r->prn.fd) : 0;
    short sev = r->pos.fd >= 0 ? revents_of(fds, n, r->pos.fd) : 0;
    const short gone = POLLHUP | POLLERR;
    int rc;

    if (r->connecting) {
        if (pev & (POLLOUT | gone))
            on_connected(r, false);
        else if (now >= r->connect_deadline)
            on_connected(r, true);
        pev = 0; /* this round's events were for the connect */
    }
    if ((lev & POLLIN) && r->pos.fd < 0 && !r->connecting)
        on_listen(r);

    /* Printer side: flush what the POS sent, then pass status replies back. */
    if (r->prn.fd >= 0 && !r->connecting) {
        if ((pev & POLLOUT) && !side_flush(r, &r->prn)) {
            printer_down(r, strerror(errno));
            goto timers;
        }
        if ((pev & (POLLIN | gone)) && r->pos.fd < 0) {
            /* No POS to pass a reply to: read it to learn of a close. */
            uint8_t sink[256];
            ssize_t k = r->prn.sp ? sp_nonblocking_read(r->prn.sp, sink, sizeof sink)
                                  : recv(r->prn.fd, sink, sizeof sink, 0);
            if ((k == 0 && !r->prn.sp) || (k <= 0 && (pev & gone)))
                printer_down(r, "the printer closed the connection");
            else if (k < 0 && errno != EAGAIN && errno != EINTR)
                printer_down(r, strerror(errno));
            goto timers;
        }
        if ((pev & (POLLIN | gone)) && !r->pos.len) {
            rc = side_pump(r, &r->prn, &r->pos);
            if (rc == 0 && r->prn_shut) {
                session_end(r); /* the printer finished the job */
                goto timers;
            }
            if (rc == 0 || rc == -1 || (rc == 2 && (pev & gone))) {
                printer_down(r, rc == -1 ? strerror(errno) : "the printer closed the connection");
                goto timers;
            }
            if (rc == -3) {
                pos_gone(r, strerror(errno));
                goto timers;
            }
        }
    }
    /* POS side: pass replies on, then read the next chunk for the printer. */
    if (r->pos.fd >= 0) {
        if ((sev & POLLOUT) && !side_flush(r, &r->pos)) {
            pos_gone(r, strerror(errno));
            goto timers;
        }
        if (r->pos_eof && (sev & gone) && r->prn_shut) {
            session_end(r); /* nobody left to pass replies to */
            goto timers;
        }
        if ((sev & (POLLIN | gone)) && r->prn.fd >= 0 && !r->connecting && !r->prn.len &&
            !r->pos_eof) {
            rc = side_pump(r, &r->pos, &r->prn);
            if (rc == 0) {
                r->pos_eof = true;
            } else if (rc == -1 || (rc == 2 && (sev & gone))) {
                pos_gone(r, rc == -1 ? strerror(errno) : "hung up");
                goto timers;
            } else if (rc == -3) {
                printer_down(r, strerror(errno));
                goto timers;
            }
        }
        if (r->pos_eof && !r->prn.len && r->prn.fd >= 0 && !r->prn_shut) {
            if (printer_persistent(r)) {
                session_end(r);
            } else {
                /* Half-close: the printer prints the rest, may still answer
                 * a status request, and closes its side when done. */
                shutdown(r->prn.fd, SHUT_WR);
                r->prn_shut = true;
                r->linger_deadline = now + r->linger_ms;
            }
        }
    }
timers:
    if (r->prn_shut && now >= r->linger_deadline)
        session_end(r);
    if (r->retry_at && now >= r->retry_at)
        relay_reopen(r);
}

static void relay_close(void *self)
{
    struct relay *r = self;
    if (!r)
        return;
    side_close(&r->pos);
    side_close(&r->prn);
    if (r->lfd >= 0)
        close(r->lfd);
    ts_escpos_free(r->parser);
    ts_receipt_rules_free(r->rules);
    free(r);
}

const struct ts_driver_ops ts_escpos_driver = {
    .name = "escpos",
    .open = relay_open,
    .pollfds = relay_pollfds,
    .dispatch = relay_dispatch,
    .close = relay_close,
};
