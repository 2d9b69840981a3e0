/*
 * driver = serial: RS-232 and USB-CDC (ttyACM) scanners through
 * libserialport, and the byte framer behind it (also fuzzed on its own).
 *
 *   [input.front]
 *   driver = serial
 *   port = /dev/ttyACM0           ; or /dev/tillside-scanner-0c2e-0b61 (udev symlink)
 *   baud = 9600                   ; 300 .. 4000000
 *   data_bits = 8                 ; 5 .. 8
 *   parity = none                 ; none | odd | even | mark | space
 *   stop_bits = 1                 ; 1 | 2
 *   flow = none                   ; none | rtscts | dtrdsr | xonxoff
 *   suffix = cr                   ; cr | lf | crlf | tab | etx | none
 *   inter_char_timeout_ms = 0     ; > 0: a pause this long also ends a code (required with suffix =
 * none) aim_prefix = false            ; true: each code starts with its AIM id ("]E0...")
 *
 * The scanner's suffix and AIM settings are in firmware-notes/.
 */
#ifndef TS_SERIAL_H
#define TS_SERIAL_H

#include "driver.h"

#include <libserialport.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern const struct ts_driver_ops ts_driver_serial;

enum ts_serial_suffix {
    TS_SUFFIX_NONE = 0,
    TS_SUFFIX_CR,
    TS_SUFFIX_LF,
    TS_SUFFIX_CRLF,
    TS_SUFFIX_TAB,
    TS_SUFFIX_ETX,
};

enum ts_err ts_serial_suffix_parse(const char *s, enum ts_serial_suffix *out);

/* The kernel's device node behind a udev symlink (/dev/tillside-scanner-… →
 * /dev/ttyACM1): libserialport 0.1.1 finds ports in /sys/class/tty by name.
 * TS_ERR_NOTFOUND when the path does not exist (unplugged). */
enum ts_err ts_serial_dev_name(const char *path, char *out, size_t outsz);

/* "none", "rtscts", "dtrdsr" or "xonxoff"; TS_ERR_CONFIG otherwise. */
enum ts_err ts_serial_flow_parse(const char *v, enum sp_flowcontrol *out);

/* Splits a byte stream into codes: at the suffix, or after ict_ms without a
 * byte (when > 0). A code longer than TS_SCAN_MAX - 1 is dropped whole. The
 * buffer is wiped after each code. */
struct ts_serial_framer {
    enum ts_serial_suffix suffix;
    long ict_ms;
    bool aim_prefix;
    bool overflow;   /* dropping bytes until the next suffix */
    int64_t last_ms; /* when the last byte came */
    size_t len;
    char buf[TS_SCAN_MAX];
};

/* A completed code: data without suffix and (aim_prefix) without AIM id;
 * aim is "" when there was none. The bytes live until the callback returns. */
typedef void (*ts_serial_code_fn)(void *ctx, const char *data, size_t len, const char *aim);

void ts_serial_framer_init(struct ts_serial_framer *f, enum ts_serial_suffix suffix, long ict_ms,
                           bool aim_prefix);
void ts_serial_framer_feed(struct ts_serial_framer *f, const uint8_t *p, size_t n, int64_t now_ms,
                           ts_serial_code_fn fn, void *ctx);
/* Ends a pending code when the inter-character timeout passed at now_ms. */
void ts_serial_framer_tick(struct ts_serial_framer *f, int64_t now_ms, ts_serial_code_fn fn,
                           void *ctx);
/* When tick has work to do (INT64_MAX: nothing pending). */
int64_t ts_serial_framer_deadline(const struct ts_serial_framer *f);
/* Drops a partial code (device gone). */
void ts_serial_framer_reset(struct ts_serial_framer *f);

#endif
