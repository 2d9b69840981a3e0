/*
 * tillside common definitions: the one error enum, logging, a growable
 * buffer, clocks and small helpers shared by every component.
 */
#ifndef TS_COMMON_H
#define TS_COMMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_VERSION "0.1.0"

/* Every fallible call returns one of these: 0 is success, negatives name
 * the kind of failure. Translate errno / mbedTLS / SQLite codes where the
 * call happens and keep the detail in the log line. */
enum ts_err {
    TS_OK = 0,
    TS_ERR_NOMEM = -1,    /* allocation failed */
    TS_ERR_INVAL = -2,    /* bad argument or malformed input */
    TS_ERR_IO = -3,       /* OS-level I/O error */
    TS_ERR_TIMEOUT = -4,  /* deadline passed */
    TS_ERR_TLS = -5,      /* TLS handshake or record error */
    TS_ERR_PROTO = -6,    /* peer spoke something we do not understand */
    TS_ERR_NOTFOUND = -7, /* no such thing */
    TS_ERR_DB = -8,       /* SQLite error */
    TS_ERR_AUTH = -9,     /* authentication / authorization refused */
    TS_ERR_CLOSED = -10,  /* peer closed the connection */
    TS_ERR_FULL = -11,    /* disk or queue full */
    TS_ERR_GONE = -12,    /* resource expired (e.g. feed cursor too old) */
    TS_ERR_CERT = -13,    /* certificate verification failed */
    TS_ERR_PERM = -14,    /* permission denied */
    TS_ERR_AGAIN = -15,   /* need more input / try again */
    TS_ERR_CONFIG = -16,  /* configuration error */
    TS_ERR_CONNECT = -17, /* could not connect */
};

const char *ts_strerror(int err);

/* ---- logging ------------------------------------------------------------
 * One line per event on stderr, "LEVEL component: message", which journald
 * and log shippers read as-is. Never log customer identifiers raw. */
enum ts_log_level { TS_LOG_DEBUG = 0, TS_LOG_INFO, TS_LOG_WARN, TS_LOG_ERROR };

void ts_log_set_level(enum ts_log_level lvl);
enum ts_err ts_log_level_parse(const char *s, enum ts_log_level *out);
void ts_log(enum ts_log_level lvl, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ts_vlog(enum ts_log_level lvl, const char *comp, const char *fmt, va_list ap);

#define TS_DEBUG(comp, ...) ts_log(TS_LOG_DEBUG, comp, __VA_ARGS__)
#define TS_INFO(comp, ...) ts_log(TS_LOG_INFO, comp, __VA_ARGS__)
#define TS_WARN(comp, ...) ts_log(TS_LOG_WARN, comp, __VA_ARGS__)
#define TS_ERROR(comp, ...) ts_log(TS_LOG_ERROR, comp, __VA_ARGS__)

/* ---- growable byte buffer -----------------------------------------------
 * data is always NUL-terminated (not counted in len) so text can be used
 * directly. A zeroed struct is a valid empty buffer. */
typedef struct ts_buf {
    char *data;
    size_t len;
    size_t cap;
} ts_buf;

enum ts_err ts_buf_reserve(ts_buf *b, size_t extra);
enum ts_err ts_buf_append(ts_buf *b, const void *p, size_t n);
enum ts_err ts_buf_puts(ts_buf *b, const char *s);
enum ts_err ts_buf_printf(ts_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ts_buf_reset(ts_buf *b);
void ts_buf_free(ts_buf *b);
/* Hands the heap string to the caller; the buffer becomes empty. */
char *ts_buf_steal(ts_buf *b);

/* ---- clocks ---------------------------------------------------------------
 * Monotonic milliseconds for deadlines, wall-clock seconds / milliseconds for
 * timestamps shown to people or sent upstream. */
int64_t ts_now_mono_ms(void);
int64_t ts_now_wall_ms(void);
/* ISO-8601 UTC with milliseconds, "2026-11-28T16:37:15.123Z". out >= 32. */
void ts_iso8601(int64_t wall_ms, char *out, size_t outsz);
/* Parses ISO-8601 ("...Z" or "+hh:mm", optional fraction). */
enum ts_err ts_iso8601_parse(const char *s, int64_t *wall_ms);
void ts_sleep_ms(int64_t ms);

/* ---- helpers --------------------------------------------------------------*/
/* printf into a caller's error buffer; err NULL or errsz 0 is allowed. */
void ts_errf(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ts_hex_encode(const uint8_t *in, size_t n, char *out); /* out: 2n+1 */
enum ts_err ts_hex_decode(const char *hex, uint8_t *out, size_t outsz, size_t *outlen);
/* The value of one hex digit (either case), -1 when c is not one. */
int ts_hexval(char c);
/* Cryptographically random bytes from getrandom(2). */
enum ts_err ts_random(void *out, size_t n);
/* strlcpy semantics: always terminates, returns strlen(src). */
size_t ts_strlcpy(char *dst, const char *src, size_t size);
/* FNV-1a of a NUL-terminated string (hash tables keyed by names). */
uint32_t ts_hash_str(const char *s);
/* Reads a whole file (max_bytes cap); *out is NUL-terminated, free() it. */
enum ts_err ts_read_file(const char *path, size_t max_bytes, char **out, size_t *len);
/* Writes atomically (tmp + fsync + rename) with the given mode. */
enum ts_err ts_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* mkdir -p with mode for created components. */
enum ts_err ts_mkdir_p(const char *path, unsigned mode);
/* Creates the directory a file path lives in (mode 0750), so a fresh install
 * starts without a manual mkdir; bare names and ":memory:" need nothing. */
enum ts_err ts_mkdir_for_file(const char *file);

/* Base64 (RFC 4648, standard or URL-safe alphabet, padding optional) into
 * out; TS_ERR_INVAL on a bad character, bad length or when out is too small. */
enum ts_err ts_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsz,
                             size_t *outlen);

/* Base64 (RFC 4648 standard alphabet, padded) of n bytes into out,
 * NUL-terminated; returns the length, 0 when out (needs 4*ceil(n/3)+1) is
 * too small. The one encoder: HTTP Basic, key pins, CSRs. */
size_t ts_base64_encode(const void *in, size_t n, char *out, size_t outsz);

/* Is got[0..glen) the secret want? In time that depends on want's length
 * only, so a secret cannot be guessed byte by byte from answer times. */
bool ts_secret_eq(const char *got, size_t glen, const char *want);

/* Does an Authorization value (RFC 7617: "Basic " base64(user ":" password),
 * the scheme in any case) name user, and password unless that is NULL (any
 * password or none: Segment sends base64(write_key ":"))? Compared with
 * ts_secret_eq; an empty user or password never matches. NULL or another
 * scheme: false. The one Basic check: the CDP's write key, a Bloomreach
 * source, the fleet page's admin. */
bool ts_basic_auth_ok(const char *authorization, const char *user, const char *password);

/* Peer- or user-supplied bytes made fit for one log line: printable ASCII
 * kept, anything else (newlines, escapes, UTF-8) becomes repl; with repl ' '
 * trailing blanks are cut. out is always terminated; returns its length.
 * Logs must not let a hostile peer forge lines or drive a terminal. */
size_t ts_sanitize(const void *in, size_t len, char *out, size_t outsz, char repl);

/* The error body of every JSON API of ours (PROTOCOL.md):
 * {"error":"<msg>"}, msg JSON-escaped; b is reset first. */
enum ts_err ts_json_error(ts_buf *b, const char *msg);

/* ---- back-off (backoff.c) -------------------------------------------------
 * Full jitter: uniform in [floor, min(cap, base * 2^attempt)], attempt 0 the
 * first retry after a failure. _pick takes the random number (tests). */
int64_t ts_backoff_pick_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, int64_t floor_ms,
                           uint32_t r);
int64_t ts_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, int64_t floor_ms);

#endif
