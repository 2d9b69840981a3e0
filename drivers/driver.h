/*
 * The driver interface (PRODUCT.md §4.1): one ops struct per driver, all
 * inputs polled by one thread, time injected.
 *
 *   [input.front]            ->  ts_driver_find("serial")->open(conf, "input.front", host, ...)
 *   driver = serial
 *   port = /dev/ttyACM0
 *
 * A driver never blocks: it hands the input thread the fds to poll and the
 * monotonic deadline of its next timer (inter-character timeout, reopen
 * backoff), and does its work in dispatch(). A device that is missing or
 * unplugged is not an error for open(): the driver reports the state through
 * host->on_state and retries with backoff from its own timer. open() fails
 * only on a configuration the driver cannot work with (err names the file,
 * line and key via ts_conf_where).
 *
 * Completed scans go through ts_driver_emit (drivers/emit.c), which runs the
 * payment card guard before anything leaves the driver layer: a dropped scan
 * is counted and never reaches host->on_scan, a log or a buffer that outlives
 * the call (drivers wipe their own framing buffers after emitting).
 */
#ifndef TS_DRIVER_H
#define TS_DRIVER_H

#include "../common/ts.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "scan.h"

struct json_t;
struct ts_guard;

/* What an input is doing, for status, metrics and the log. */
enum ts_input_state {
    TS_INPUT_WAITING = 0, /* device not present (yet); retrying with backoff */
    TS_INPUT_OPEN,        /* open and reading */
    TS_INPUT_ERROR,       /* present but cannot be opened (permissions, busy): detail says why */
};

/* Supplied by whoever runs the inputs (the agent, a test, a benchmark). */
struct ts_driver_host {
    void *ctx;
    /* A scan that passed the guard. Called on the input thread; must not block for long. */
    void (*on_scan)(void *ctx, const struct ts_scan *scan);
    /* State changes (detail: a sentence a technician can act on, e.g. the
     * device, the group and the udev rule to install on EACCES). */
    void (*on_state)(void *ctx, const char *input, enum ts_input_state st, const char *detail);
    /* A scan dropped by the payment card guard (for the metric); optional. */
    void (*on_guard_drop)(void *ctx, const char *input);
    /* A network peer an input refused (not on its allow-list: the escpos
     * tap); optional, for the metric. */
    void (*on_peer_refused)(void *ctx, const char *input, const char *peer);
    /* Injected clock; NULL means ts_now_mono_ms / ts_now_wall_ms. */
    int64_t (*now_mono_ms)(void *ctx);
    int64_t (*now_wall_ms)(void *ctx);
    /* A purchase parsed from a printed receipt by the escpos tap
     * (drivers/escpos_relay.c): the POST /api/v1/purchases body plus
     * "barcode" (borrowed for the call; json_incref to keep it). Called on
     * the input thread after the bytes went to the printer. Optional: NULL
     * means the tap only logs what it parsed. */
    void (*on_purchase)(void *ctx, const char *input, struct json_t *purchase);
    /* The payment card guard's allowed ranges ([guard], drivers/guard.h);
     * NULL = only the built-in exceptions. */
    const struct ts_guard *guard;
    /* Set by ts_inputs_check (check-config): open() validates everything it
     * would refuse but binds, opens and starts nothing; the caller closes
     * at once. */
    bool parse_only;
};

struct ts_driver_ops {
    const char *name; /* the config's driver = value */
    /* Parses [section] of conf and allocates the driver; does not need the
     * device to be present. TS_ERR_CONFIG with err "file:line: [section] key: ..." */
    enum ts_err (*open)(const struct ts_conf *conf, const char *section,
                        const struct ts_driver_host *host, void **self, char *err, size_t errsz);
    /* Fills up to max pollfds (returns how many) and lowers *deadline_mono_ms
     * to the driver's next timer when it has one (leave it as is otherwise). */
    int (*pollfds)(void *self, struct pollfd *fds, int max, int64_t *deadline_mono_ms);
    /* Handles the fds returned by the last pollfds() (revents filled in) and
     * any timer that is due at now_mono_ms. */
    void (*dispatch)(void *self, struct pollfd *fds, int n, int64_t now_mono_ms);
    void (*close)(void *self);
    /* The one validation of [section], run by open() and by check-config
     * (ts_inputs_check) alike: everything open() refuses as a configuration
     * error it refuses, with "file:line: [section] key: ...". NULL: the
     * driver's open() honours host->parse_only and is the check. */
    enum ts_err (*check)(const struct ts_conf *conf, const char *section, char *err, size_t errsz);
    /* The keys the driver reads besides driver=, NULL-terminated: any
     * other key in its section is refused as unknown (a typo that would
     * otherwise silently keep a default). */
    const char *const *keys;
};

/* The input's name for states, scans and logs: "front" for the section
 * [input.front] (the name status, metrics and the page show), the section
 * as is otherwise. Every driver names its input with it. */
const char *ts_input_name(const char *section);

/* The registry: NULL when no driver has that name. */
const struct ts_driver_ops *ts_driver_find(const char *name);
/* Names of the registered drivers, NULL-terminated (for error messages). */
const char *const *ts_driver_names(void);

/*
 * Hands a completed scan to the host after the payment card guard
 * (ts_guard_check in drivers/guard.h). Fills source, timestamps from the
 * host clock. data/len: the decoded bytes without AIM prefix; aim may be
 * NULL or "". Returns true when the scan was passed on, false when dropped.
 */
bool ts_driver_emit(const struct ts_driver_host *host, const char *input, const char *data,
                    size_t len, const char *aim);

#endif
