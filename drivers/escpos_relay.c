/*
 * The escpos input: a relay between a POS and its receipt printer that reads
 * the receipts on the way (PRODUCT.md §4.1 escpos).
 *
 *   POS --(TCP listen | serial pos_port)--> tillside --(TCP | serial)--> printer
 *       <-------- status replies (DLE EOT, GS a, GS I, GS r answers) --------
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
 * raw 9100 printer expects), several at once, each its own session and
 * parser; the printer connection is made on the POS's first byte. A serial
 * side stays open, reopened with backoff when it goes away; a TCP printer
 * behind a serial POS is kept connected; a TCP POS in front of a serial
 * printer is served one connection at a time. A TCP peer outside allow
 * (default: loopback) is reset at once, logged and counted, nothing read;
 * a POS connection silent for idle_ms is closed.
 */
#include "driver.h"
#include "escpos.h"
#include "escpos_relay.h"
#include "escpos_rules.h"
#include "guard.h"
#include "netallow.h"
#include "serial.h"
#include "ts.h"
#include "url.h"

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
#define RELAY_MAX_SESS 8 /* POS connections served at once (TCP printer) */

struct side {
    int fd;                 /* -1 = closed */
    struct sp_port *sp;     /* serial side, NULL for a socket */
    uint8_t buf[RELAY_BUF]; /* bytes from the other side still to write here */
    size_t off, len;
};

struct relay;

/* One POS connection (or the serial POS) and the printer side of its jobs. */
struct sess {
    struct relay *r;
    struct side pos, prn; /* pos.buf: towards the POS; prn.buf: towards the printer */
    bool connecting;      /* non-blocking connect to the printer in progress */
    int64_t connect_deadline;
    bool pos_eof;  /* the POS closed its side; drain to the printer, then close */
    bool prn_shut; /* TCP printer half-closed after the job; replies still pass back */
    int64_t linger_deadline;
    int64_t idle_deadline; /* a TCP POS silent until then is closed */
    char peer[64];
    struct ts_escpos *parser;
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
    long linger_ms, idle_ms;
    struct ts_netallow allow;
    /* state */
    int lfd;
    int nsess;                     /* 1, or RELAY_MAX_SESS with a TCP printer */
    struct sess s[RELAY_MAX_SESS]; /* s[0]: the serial POS / persistent printer */
    bool started;
    int64_t retry_at; /* next reopen attempt (0 = none pending) */
    int64_t backoff_ms;
    enum ts_input_state state;
    char detail[256];
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
    struct relay *r = ((struct sess *)ctx)->r;
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
static void pos_reset(struct sess *x)
{
    if (x->pos.fd >= 0 && !x->pos.sp) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(x->pos.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    side_close(&x->pos);
}

static enum ts_err tty_open(struct relay *r, const char *path, struct side *s, char *why, size_t n)
{
    struct sp_port *sp = NULL;
    int fd = -1;
    char dev[256];
    if (ts_serial_dev_name(path, dev, sizeof dev) != TS_OK) {
        ts_errf(why, n, "%s: not present", path);
        return TS_ERR_IO;
    }
    if (sp_get_port_by_name(dev, &sp) != SP_OK || sp_open(sp, SP_MODE_READ_WRITE) != SP_OK ||
        sp_set_baudrate(sp, (int)r->baud) != SP_OK || sp_set_bits(sp, 8) != SP_OK ||
        sp_set_parity(sp, SP_PARITY_NONE) != SP_OK || sp_set_stopbits(sp, 1) != SP_OK ||
        sp_set_flowcontrol(sp, r->flow) != SP_OK || sp_get_port_handle(sp, &fd) != SP_OK) {
        char *m = sp_last_error_message();
        ts_errf(why, n, "%s: %s", dev, m ? m : "cannot open");
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

/* Starts a non-blocking connect to the TCP printer for session x. */
static enum ts_err printer_connect(struct relay *r, struct sess *x, char *why, size_t whysz)
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
    x->prn.fd = fd; /* buf keeps what printer_down() queued */
    x->connecting = true;
    x->connect_deadline = mono(r) + r->connect_timeout_ms;
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

/* The printer went away or could not be reached (for session x). */
static void printer_down(struct relay *r, struct sess *x, const char *why)
{
    /* A serial POS's stream goes on once the printer is back: the bytes
     * read from the POS but not yet written stay queued (the POS line is
     * not read meanwhile, so its flow control holds the POS), and the
     * parser keeps its place in the stream. */
    bool resume = x->pos.sp != NULL;
    size_t off = x->prn.off, len = x->prn.len;
    side_close(&x->prn);
    if (resume) {
        x->prn.off = off;
        x->prn.len = len;
    }
    x->connecting = false;
    x->prn_shut = false;
    if (x->pos.fd >= 0 && !x->pos.sp) {
        pos_reset(x); /* the POS job failed: say so */
        x->pos_eof = false;
    }
    /* A TCP job the printer did not finish is not a sale we saw printed. */
    if (!resume)
        ts_escpos_discard(x->parser);
    set_state(r, TS_INPUT_WAITING, "printer not reachable: %s", why);
    if (printer_persistent(r))
        schedule_retry(r);
}

/* A TCP job is over: the POS closed and the printer took everything (and
 * closed, or the linger time ran out), or the POS went quiet. */
static void session_end(struct relay *r, struct sess *x)
{
    side_close(&x->pos);
    x->pos_eof = false;
    x->prn_shut = false;
    if (!printer_persistent(r)) {
        side_close(&x->prn);
        x->connecting = false;
    }
    ts_escpos_flush(x->parser); /* a job without a cut ends with its connection */
}

/* The POS side failed: a serial port is reopened with backoff, a TCP job
 * ends. */
static void pos_gone(struct relay *r, struct sess *x, const char *why)
{
    if (x->pos.sp) {
        side_close(&x->pos);
        ts_escpos_flush(x->parser);
        set_state(r, TS_INPUT_WAITING, "POS port %s: %s", r->pos_dev, why);
        schedule_retry(r);
        return;
    }
    TS_DEBUG("escpos", "%s: POS connection from %s ended: %s", r->input, x->peer, why);
    session_end(r, x);
}

/* Writes what is buffered towards s; the copy towards the printer goes to
 * the parser once written. false on a write error. */
static bool side_flush(struct sess *x, struct side *s)
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
        if (s == &x->prn)
            ts_escpos_feed(x->parser, s->buf + s->off, (size_t)n);
        s->off += (size_t)n;
    }
    s->off = s->len = 0;
    return true;
}

/* Reads from `from` into to->buf (empty) and forwards. Returns 1 on data,
 * 0 on EOF, -1 on error, 2 when nothing was there. */
static int side_pump(struct sess *x, struct side *from, struct side *to)
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
    return side_flush(x, to) ? 1 : -3;
}

static enum ts_err listen_open(struct relay *r, char *err, size_t errsz)
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
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
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

static void relay_close(void *self);

static enum ts_err relay_open(const struct ts_conf *conf, const char *sec,
                              const struct ts_driver_host *host, void **self, char *err,
                              size_t errsz)
{
    struct relay *r = calloc(1, sizeof *r);
    const char *v, *rules_sec;
    enum ts_escpos_cp cp = TS_ESCPOS_CP437;
    int rc = TS_ERR_CONFIG;
    if (!r)
        return TS_ERR_NOMEM;
    r->lfd = -1;
    for (int i = 0; i < RELAY_MAX_SESS; i++) {
        r->s[i].r = r;
        r->s[i].pos.fd = r->s[i].prn.fd = -1;
    }
    r->host = *host;
    r->backoff_ms = BACKOFF_MIN_MS;
    ts_strlcpy(r->input, ts_input_name(sec), sizeof r->input);
    r->state = TS_INPUT_WAITING;

    v = ts_conf_get(conf, sec, "listen", "");
    if (*v && ts_hostport_split(v, r->listen_host, sizeof r->listen_host, r->listen_port,
                                sizeof r->listen_port) != TS_OK) {
        rc = ts_conf_errf(conf, sec, "listen", err, errsz, "HOST:PORT (e.g. 127.0.0.1:9100)");
        goto out;
    }
    ts_strlcpy(r->pos_dev, ts_conf_get(conf, sec, "pos_port", ""), sizeof r->pos_dev);
    if (!*v == !r->pos_dev[0]) {
        rc = ts_conf_errf(conf, sec, "listen", err, errsz,
                          "set exactly one of listen (TCP) and pos_port (serial) for the POS side");
        goto out;
    }
    v = ts_conf_get(conf, sec, "printer", "");
    if (*v && (ts_hostport_split(v, r->prn_host, sizeof r->prn_host, r->prn_port,
                                 sizeof r->prn_port) != TS_OK ||
               !r->prn_host[0])) {
        rc = ts_conf_errf(conf, sec, "printer", err, errsz, "HOST:PORT of the real printer");
        goto out;
    }
    ts_strlcpy(r->prn_dev, ts_conf_get(conf, sec, "printer_port", ""), sizeof r->prn_dev);
    if (!*v == !r->prn_dev[0]) {
        rc = ts_conf_errf(conf, sec, "printer", err, errsz,
                          "set exactly one of printer (TCP) and printer_port (serial)");
        goto out;
    }
    if ((rc = ts_conf_get_int(conf, sec, "baud", 9600, 300, 4000000, &r->baud, err, errsz)) ||
        (rc = ts_conf_get_int(conf, sec, "connect_timeout_ms", 3000, 100, 60000,
                              &r->connect_timeout_ms, err, errsz)) ||
        (rc = ts_conf_get_int(conf, sec, "linger_ms", 5000, 0, 60000, &r->linger_ms, err, errsz)) ||
        (rc = ts_conf_get_int(conf, sec, "idle_ms", 15000, 100, 3600000, &r->idle_ms, err, errsz)))
        goto out;
    /* Who may print through the tap: the POS, by default on this machine. */
    v = ts_conf_get(conf, sec, "allow", "127.0.0.0/8, ::1");
    if (ts_netallow_parse(v, &r->allow, NULL) != TS_OK || r->allow.n == 0) {
        rc = ts_conf_errf(conf, sec, "allow", err, errsz,
                          "the POS addresses or networks, e.g. 127.0.0.1, 192.0.2.10, 10.1.2.0/24");
        goto out;
    }
    if (ts_serial_flow_parse(ts_conf_get(conf, sec, "flow", "none"), &r->flow) != TS_OK) {
        rc = ts_conf_errf(conf, sec, "flow", err, errsz, "none, rtscts, dtrdsr or xonxoff");
        goto out;
    }
    v = ts_conf_get(conf, sec, "codepage", "437");
    if (ts_escpos_cp_parse(v, &cp) != TS_OK) {
        rc = ts_conf_errf(conf, sec, "codepage", err, errsz, "437, 850, 858 or 1252");
        goto out;
    }
    /* Rules live in the input's section or in a shared [receipt.NAME]. */
    rules_sec = ts_conf_get(conf, sec, "rules", NULL);
    if ((rc = ts_receipt_rules_load(conf, rules_sec ? rules_sec : sec, &r->rules, err, errsz)))
        goto out;
    /* Several POS connections at once only where each gets a printer
     * connection of its own. */
    r->nsess = printer_persistent(r) ? 1 : RELAY_MAX_SESS;
    for (int i = 0; i < r->nsess; i++)
        if ((rc = ts_escpos_new(cp, on_receipt, &r->s[i], &r->s[i].parser)))
            goto out;
    if (r->listen_port[0] && !host->parse_only && (rc = listen_open(r, err, errsz)))
        goto out;
    *self = r;
    r = NULL;
    rc = TS_OK;
out:
    relay_close(r);
    return rc;
}

/* Opens what should be open and is not (serial sides, a persistent TCP
 * printer), from the retry timer. Persistent sides are session 0's. */
static void relay_reopen(struct relay *r)
{
    char why[256];
    struct sess *x = &r->s[0];
    r->retry_at = 0;
    if (r->prn_dev[0] && x->prn.fd < 0 && tty_open(r, r->prn_dev, &x->prn, why, sizeof why)) {
        set_state(r, TS_INPUT_WAITING, "printer port %s", why);
        schedule_retry(r);
        return;
    }
    if (r->pos_dev[0] && x->pos.fd < 0 && tty_open(r, r->pos_dev, &x->pos, why, sizeof why)) {
        set_state(r, TS_INPUT_WAITING, "POS port %s", why);
        schedule_retry(r);
        return;
    }
    if (r->pos_dev[0] && r->prn_host[0] && x->prn.fd < 0 && !x->connecting) {
        if (printer_connect(r, x, why, sizeof why) != TS_OK) {
            printer_down(r, x, why);
            return;
        }
    }
    if (!x->connecting && x->prn.fd >= 0) {
        r->backoff_ms = BACKOFF_MIN_MS;
        set_state(r, TS_INPUT_OPEN, "relaying %s%s%s to %s%s%s",
                  r->pos_dev[0] ? r->pos_dev : "TCP port ", r->pos_dev[0] ? "" : r->listen_port, "",
                  r->prn_dev[0] ? r->prn_dev : r->prn_host, r->prn_dev[0] ? "" : ":",
                  r->prn_dev[0] ? "" : r->prn_port);
    }
}

static void earliest(int64_t *deadline, int64_t t)
{
    if (*deadline < 0 || t < *deadline)
        *deadline = t;
}

static void add_fd(struct pollfd *fds, int *n, int max, int fd, short ev)
{
    /* No events wanted: leave the fd out, or a hung-up line would wake
     * poll() at once, again and again (POLLHUP is always on). */
    if (!ev || *n >= max)
        return;
    fds[*n].fd = fd;
    fds[*n].events = ev;
    fds[(*n)++].revents = 0;
}

/* A TCP POS connection waiting for its first byte: the printer is
 * connected only then. */
static bool awaiting_first_byte(const struct relay *r, const struct sess *x)
{
    return !printer_persistent(r) && x->pos.fd >= 0 && x->prn.fd < 0 && !x->connecting;
}

static struct sess *free_sess(struct relay *r)
{
    for (int i = 0; i < r->nsess; i++)
        if (r->s[i].pos.fd < 0 && (printer_persistent(r) || r->s[i].prn.fd < 0))
            return &r->s[i];
    return NULL;
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
    if (r->retry_at)
        earliest(deadline, r->retry_at);
    if (r->lfd >= 0 && free_sess(r))
        add_fd(fds, &n, max, r->lfd, POLLIN);
    for (int i = 0; i < r->nsess; i++) {
        struct sess *x = &r->s[i];
        if (x->connecting)
            earliest(deadline, x->connect_deadline);
        if (x->prn_shut)
            earliest(deadline, x->linger_deadline);
        if (x->pos.fd >= 0 && !x->pos.sp && !x->pos_eof)
            earliest(deadline, x->idle_deadline);
        if (x->prn.fd >= 0) {
            short ev = 0;
            if (x->connecting || x->prn.len)
                ev |= POLLOUT;
            if (!x->connecting && !x->pos.len)
                ev |= POLLIN; /* status replies, only while the POS side can take them */
            add_fd(fds, &n, max, x->prn.fd, ev);
        }
        if (x->pos.fd >= 0) {
            short ev = 0;
            if (x->pos.len)
                ev |= POLLOUT;
            /* Read from the POS only what the printer can take now. */
            if (!x->prn.len && !x->pos_eof && x->prn.fd >= 0 && !x->connecting)
                ev |= POLLIN;
            if (awaiting_first_byte(r, x))
                ev |= POLLIN;
            add_fd(fds, &n, max, x->pos.fd, ev);
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

/* The listening socket has a POS waiting: only a peer on the allow-list
 * is served; the printer is connected when it sends its first byte (a TCP
 * printer) or must be up already (a serial one). */
static void on_listen(struct relay *r)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(r->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct sess *x = free_sess(r);
    char peer[64];
    ts_netallow_peer((struct sockaddr *)&ss, peer, sizeof peer);
    if (!x || !ts_netallow_match(&r->allow, (struct sockaddr *)&ss)) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
        if (x) {
            TS_WARN("escpos", "%s: refused a connection from %s: not in allow", r->input, peer);
            if (r->host.on_peer_refused)
                r->host.on_peer_refused(r->host.ctx, r->input, peer);
        }
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    x->pos.fd = fd;
    x->pos.off = x->pos.len = 0;
    x->pos_eof = false;
    x->idle_deadline = mono(r) + r->idle_ms;
    ts_strlcpy(x->peer, peer, sizeof x->peer);
    if (printer_persistent(r) && (x->prn.fd < 0 || x->connecting))
        pos_reset(x); /* serial printer not open: refuse the job now */
}

static void on_connected(struct relay *r, struct sess *x, bool timed_out)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    char why[256];
    if (timed_out)
        soerr = ETIMEDOUT;
    else if (getsockopt(x->prn.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return;
    x->connecting = false;
    if (soerr) {
        ts_errf(why, sizeof why, "%s:%s: %s", r->prn_host, r->prn_port, strerror(soerr));
        printer_down(r, x, why); /* resets the POS connection waiting for it */
        return;
    }
    {
        int one = 1;
        setsockopt(x->prn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    r->backoff_ms = BACKOFF_MIN_MS;
    set_state(r, TS_INPUT_OPEN, "relaying %s%s to printer %s:%s",
              r->pos_dev[0] ? r->pos_dev : "TCP port ", r->pos_dev[0] ? "" : r->listen_port,
              r->prn_host, r->prn_port);
}

static void sess_dispatch(struct relay *r, struct sess *x, struct pollfd *fds, int n, int64_t now)
{
    short pev = x->prn.fd >= 0 ? revents_of(fds, n, x->prn.fd) : 0;
    short sev = x->pos.fd >= 0 ? revents_of(fds, n, x->pos.fd) : 0;
    const short gone = POLLHUP | POLLERR;
    char why[256];
    int rc;

    if (x->connecting) {
        if (pev & (POLLOUT | gone))
            on_connected(r, x, false);
        else if (now >= x->connect_deadline)
            on_connected(r, x, true);
        pev = 0; /* this round's events were for the connect */
    }
    /* The POS's first byte: connect its printer, read once it is up. */
    if (awaiting_first_byte(r, x) && (sev & (POLLIN | gone))) {
        if (printer_connect(r, x, why, sizeof why) != TS_OK)
            printer_down(r, x, why);
        return;
    }

    /* Printer side: flush what the POS sent, then pass status replies back. */
    if (x->prn.fd >= 0 && !x->connecting) {
        if ((pev & POLLOUT) && !side_flush(x, &x->prn)) {
            printer_down(r, x, strerror(errno));
            goto timers;
        }
        if ((pev & (POLLIN | gone)) && x->pos.fd < 0) {
            /* No POS to pass a reply to: read it to learn of a close. */
            uint8_t sink[256];
            ssize_t k = x->prn.sp ? sp_nonblocking_read(x->prn.sp, sink, sizeof sink)
                                  : recv(x->prn.fd, sink, sizeof sink, 0);
            if ((k == 0 && !x->prn.sp) || (k <= 0 && (pev & gone)))
                printer_down(r, x, "the printer closed the connection");
            else if (k < 0 && errno != EAGAIN && errno != EINTR)
                printer_down(r, x, strerror(errno));
            goto timers;
        }
        if ((pev & (POLLIN | gone)) && !x->pos.len) {
            rc = side_pump(x, &x->prn, &x->pos);
            if (rc == 0 && x->prn_shut) {
                session_end(r, x); /* the printer finished the job */
                goto timers;
            }
            if (rc == 0 || rc == -1 || (rc == 2 && (pev & gone))) {
                printer_down(r, x,
                             rc == -1 ? strerror(errno) : "the printer closed the connection");
                goto timers;
            }
            if (rc == -3) {
                pos_gone(r, x, strerror(errno));
                goto timers;
            }
        }
    }
    /* POS side: pass replies on, then read the next chunk for the printer. */
    if (x->pos.fd >= 0) {
        if ((sev & POLLOUT) && !side_flush(x, &x->pos)) {
            pos_gone(r, x, strerror(errno));
            goto timers;
        }
        if (x->pos_eof && (sev & gone) && x->prn_shut) {
            session_end(r, x); /* nobody left to pass replies to */
            goto timers;
        }
        if ((sev & (POLLIN | gone)) && x->prn.fd >= 0 && !x->connecting && !x->prn.len &&
            !x->pos_eof) {
            rc = side_pump(x, &x->pos, &x->prn);
            if (rc == 0) {
                x->pos_eof = true;
            } else if (rc == -1 || (rc == 2 && (sev & gone))) {
                pos_gone(r, x, rc == -1 ? strerror(errno) : "hung up");
                goto timers;
            } else if (rc == -3) {
                printer_down(r, x, strerror(errno));
                goto timers;
            } else if (rc == 1) {
                x->idle_deadline = now + r->idle_ms;
            }
        }
        if (x->pos_eof && !x->prn.len && x->prn.fd >= 0 && !x->prn_shut) {
            if (printer_persistent(r)) {
                session_end(r, x);
            } else {
                /* Half-close: the printer prints the rest, may still answer
                 * a status request, and closes its side when done. */
                shutdown(x->prn.fd, SHUT_WR);
                x->prn_shut = true;
                x->linger_deadline = now + r->linger_ms;
            }
        }
    }
timers:
    if (x->prn_shut && now >= x->linger_deadline)
        session_end(r, x);
    /* A POS connection that went quiet (a stuck POS, or anyone holding the
     * port) gives its place back. */
    if (x->pos.fd >= 0 && !x->pos.sp && !x->pos_eof && now >= x->idle_deadline) {
        TS_INFO("escpos", "%s: POS connection from %s silent for %ld ms: closed", r->input, x->peer,
                r->idle_ms);
        session_end(r, x);
    }
}

static void relay_dispatch(void *self, struct pollfd *fds, int n, int64_t now)
{
    struct relay *r = self;
    if (revents_of(fds, n, r->lfd) & POLLIN)
        on_listen(r);
    for (int i = 0; i < r->nsess; i++)
        sess_dispatch(r, &r->s[i], fds, n, now);
    if (r->retry_at && now >= r->retry_at)
        relay_reopen(r);
}

static void relay_close(void *self)
{
    struct relay *r = self;
    if (!r)
        return;
    for (int i = 0; i < RELAY_MAX_SESS; i++) {
        side_close(&r->s[i].pos);
        side_close(&r->s[i].prn);
        ts_escpos_free(r->s[i].parser);
    }
    if (r->lfd >= 0)
        close(r->lfd);
    ts_receipt_rules_free(r->rules);
    free(r);
}

const struct ts_driver_ops ts_escpos_driver = {
    .name = "escpos",
    .open = relay_open,
    .pollfds = relay_pollfds,
    .dispatch = relay_dispatch,
    .close = relay_close,
    .keys = (const char *const[]){"listen", "pos_port", "printer", "printer_port", "baud", "flow",
                                  "connect_timeout_ms", "linger_ms", "idle_ms", "allow", "codepage",
                                  "rules", TS_RECEIPT_RULES_KEYS, NULL},
};
