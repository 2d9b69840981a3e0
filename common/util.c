/* Error strings, logging, buffers, clocks and file helpers. */

#include "ts.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *ts_strerror(int err)
{
    switch (err) {
    case TS_OK:
        return "ok";
    case TS_ERR_NOMEM:
        return "out of memory";
    case TS_ERR_INVAL:
        return "invalid input";
    case TS_ERR_IO:
        return "I/O error";
    case TS_ERR_TIMEOUT:
        return "timed out";
    case TS_ERR_TLS:
        return "TLS error";
    case TS_ERR_PROTO:
        return "protocol error";
    case TS_ERR_NOTFOUND:
        return "not found";
    case TS_ERR_DB:
        return "database error";
    case TS_ERR_AUTH:
        return "not authorized";
    case TS_ERR_CLOSED:
        return "connection closed";
    case TS_ERR_FULL:
        return "no space left";
    case TS_ERR_GONE:
        return "gone (expired)";
    case TS_ERR_CERT:
        return "certificate verification failed";
    case TS_ERR_PERM:
        return "permission denied";
    case TS_ERR_AGAIN:
        return "try again";
    case TS_ERR_CONFIG:
        return "configuration error";
    case TS_ERR_CONNECT:
        return "connection failed";
    default:
        return "unknown error";
    }
}

/* ---- logging ---- */

static enum ts_log_level g_level = TS_LOG_INFO;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

void ts_log_set_level(enum ts_log_level lvl)
{
    g_level = lvl;
}

enum ts_err ts_log_level_parse(const char *s, enum ts_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum ts_log_level)i;
            return TS_OK;
        }
    }
    return TS_ERR_INVAL;
}

/*
 * Whether stderr is the journal's stream: $JOURNAL_STREAM ("dev:inode") names
 * it, and must match stderr itself (a child whose stderr was redirected
 * inherits the variable). sd-daemon(3): then each line may start with "<N>",
 * the syslog priority, which journald strips and files as PRIORITY=N.
 */
static int journal_stream(void)
{
    static int cached = -1;
    if (cached >= 0)
        return cached;
    unsigned long long dev = 0, ino = 0;
    struct stat st;
    const char *js = getenv("JOURNAL_STREAM");
    cached = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
             (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    return cached;
}

void ts_vlog(enum ts_log_level lvl, const char *comp, const char *fmt, va_list ap)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    static const char prio[] = {'7', '6', '4', '3'}; /* syslog debug, info, warning, err */
    if (lvl < g_level)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One event, one line: a log shipper splits on newlines, and a peer's
     * text quoted in a message may carry some. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    /* One write per line so concurrent threads never interleave. */
    pthread_mutex_lock(&g_log_mu);
    if (journal_stream())
        fprintf(stderr, "<%c>%s %s: %s\n", prio[lvl], names[lvl], comp, msg);
    else
        fprintf(stderr, "%s %s: %s\n", names[lvl], comp, msg);
    fflush(stderr);
    pthread_mutex_unlock(&g_log_mu);
}

void ts_log(enum ts_log_level lvl, const char *comp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ts_vlog(lvl, comp, fmt, ap);
    va_end(ap);
}

/* ---- buffers ---- */

enum ts_err ts_buf_reserve(ts_buf *b, size_t extra)
{
    /* len + extra + 1 must not wrap: a huge extra (a length read off the
     * wire, a size computed by a caller) would else "fit" a small buffer. */
    if (extra >= SIZE_MAX - b->len)
        return TS_ERR_NOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return TS_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return TS_ERR_NOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return TS_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return TS_OK;
}

enum ts_err ts_buf_append(ts_buf *b, const void *p, size_t n)
{
    int rc = ts_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return TS_OK;
}

enum ts_err ts_buf_puts(ts_buf *b, const char *s)
{
    return ts_buf_append(b, s, strlen(s));
}

enum ts_err ts_buf_printf(ts_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return TS_ERR_INVAL;
    }
    int rc = ts_buf_reserve(b, (size_t)n);
    if (rc == TS_OK) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    return rc;
}

void ts_buf_reset(ts_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ts_buf_free(ts_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *ts_buf_steal(ts_buf *b)
{
    char *p = b->data;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- clocks ---- */

int64_t ts_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ts_now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ts_iso8601(int64_t wall_ms, char *out, size_t outsz)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
}

enum ts_err ts_iso8601_parse(const char *s, int64_t *wall_ms)
{
    int y, mo, d, h, mi, sec;
    int n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return TS_ERR_INVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return TS_ERR_INVAL;
    const char *p = s + n;
    int ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return TS_ERR_INVAL;
        while (digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* Exactly "+hh:mm": check every byte before stepping over it. */
        for (int i = 1; i <= 5; i++)
            if (i == 3 ? p[i] != ':' : (p[i] < '0' || p[i] > '9'))
                return TS_ERR_INVAL;
        int oh = (p[1] - '0') * 10 + (p[2] - '0'), om = (p[4] - '0') * 10 + (p[5] - '0');
        if (oh > 23 || om > 59)
            return TS_ERR_INVAL;
        off = (oh * 60 + om) * 60L * (*p == '-' ? -1 : 1);
        p += 6;
    } else if (*p != '\0') {
        return TS_ERR_INVAL;
    }
    if (*p != '\0')
        return TS_ERR_INVAL;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *wall_ms = ((int64_t)t - off) * 1000 + ms;
    return TS_OK;
}

void ts_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- helpers ---- */

void ts_errf(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || errsz == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

void ts_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int ts_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum ts_err ts_hex_decode(const char *hex, uint8_t *out, size_t outsz, size_t *outlen)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > outsz)
        return TS_ERR_INVAL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = ts_hexval(hex[2 * i]), lo = ts_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return TS_ERR_INVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *outlen = n / 2;
    return TS_OK;
}

enum ts_err ts_random(void *out, size_t n)
{
    uint8_t *p = out;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return TS_ERR_IO;
        }
        p += r;
        n -= (size_t)r;
    }
    return TS_OK;
}

uint32_t ts_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

size_t ts_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

static enum ts_err errno_to_ts(int e)
{
    switch (e) {
    case ENOENT:
        return TS_ERR_NOTFOUND;
    case EACCES:
    case EPERM:
        return TS_ERR_PERM;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return TS_ERR_FULL;
    case ENOMEM:
        return TS_ERR_NOMEM;
    default:
        return TS_ERR_IO;
    }
}

enum ts_err ts_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno_to_ts(errno);
    ts_buf b = {0};
    int rc = TS_OK;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = errno_to_ts(errno);
            goto out;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max_bytes) {
            rc = TS_ERR_FULL;
            goto out;
        }
        if ((rc = ts_buf_append(&b, chunk, (size_t)n)))
            goto out;
    }
    if (len)
        *len = b.len;
    *out = ts_buf_steal(&b);
out:
    close(fd);
    ts_buf_free(&b);
    return rc;
}

enum ts_err ts_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp)
        return TS_ERR_INVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return errno_to_ts(errno);
    int rc = TS_OK;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = errno_to_ts(errno);
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (rc == TS_OK && fchmod(fd, (mode_t)mode) != 0)
        rc = errno_to_ts(errno);
    if (rc == TS_OK && fsync(fd) != 0)
        rc = errno_to_ts(errno);
    close(fd);
    if (rc == TS_OK && rename(tmp, path) != 0)
        rc = errno_to_ts(errno);
    if (rc != TS_OK)
        unlink(tmp);
    return rc;
}

enum ts_err ts_mkdir_p(const char *path, unsigned mode)
{
    char buf[4096];
    if (ts_strlcpy(buf, path, sizeof buf) >= sizeof buf)
        return TS_ERR_INVAL;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
            return errno_to_ts(errno);
        *p = '/';
    }
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
        return errno_to_ts(errno);
    return TS_OK;
}

enum ts_err ts_mkdir_for_file(const char *file)
{
    char dir[4096];
    if (ts_strlcpy(dir, file, sizeof dir) >= sizeof dir)
        return TS_ERR_INVAL;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return TS_OK;
    *slash = '\0';
    return ts_mkdir_p(dir, 0750);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

enum ts_err ts_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsz,
                             size_t *outlen)
{
    size_t end = inlen, n = 0;
    int pad = 0;
    while (end > 0 && in[end - 1] == '=' && pad < 2) {
        end--;
        pad++;
    }
    if ((pad && (end + (size_t)pad) % 4 != 0) || end % 4 == 1)
        return TS_ERR_INVAL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < end; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return TS_ERR_INVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= outsz)
                return TS_ERR_INVAL;
            out[n++] = (uint8_t)(acc >> bits);
        }
        acc &= (1u << bits) - 1u;
    }
    *outlen = n;
    return TS_OK;
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ts_base64_encode(const void *in, size_t n, char *out, size_t outsz)
{
    const unsigned char *s = in;
    size_t need = (n + 2) / 3 * 4;
    if (n > (SIZE_MAX - 3) / 4 * 3 || outsz <= need)
        return 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        out[o++] = b64_std[(v >> 18) & 63];
        out[o++] = b64_std[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_std[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_std[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

size_t ts_sanitize(const void *in, size_t len, char *out, size_t outsz, char repl)
{
    if (!out || outsz == 0)
        return 0;
    const unsigned char *s = in;
    size_t n = 0;
    for (size_t i = 0; s && i < len && n + 1 < outsz; i++)
        out[n++] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : repl;
    if (repl == ' ')
        while (n && out[n - 1] == ' ')
            n--;
    out[n] = '\0';
    return n;
}

enum ts_err ts_json_error(ts_buf *b, const char *msg)
{
    ts_buf_reset(b);
    int rc = ts_buf_puts(b, "{\"error\":\"");
    for (const unsigned char *p = (const unsigned char *)(msg ? msg : ""); *p && !rc; p++) {
        if (*p == '"' || *p == '\\')
            rc = ts_buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            rc = ts_buf_puts(b, "\\n");
        else if (*p == '\r')
            rc = ts_buf_puts(b, "\\r");
        else if (*p == '\t')
            rc = ts_buf_puts(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            rc = ts_buf_printf(b, "\\u%04x", *p);
        else
            rc = ts_buf_append(b, p, 1);
    }
    return rc ? rc : ts_buf_puts(b, "\"}");
}

bool ts_secret_eq(const char *got, size_t glen, const char *want)
{
    size_t wlen = strlen(want);
    unsigned char diff = glen != wlen;
    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)(want[i] ^ (i < glen ? got[i] : 0));
    return diff == 0;
}

bool ts_basic_auth_ok(const char *authorization, const char *user, const char *password)
{
    const char *h = authorization;
    if (!h || strncasecmp(h, "Basic ", 6) != 0 || !user[0] || (password && !password[0]))
        return false;
    h += 6;
    while (*h == ' ')
        h++;
    size_t len = strlen(h);
    while (len && (h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    uint8_t dec[512];
    size_t n;
    if (len > 4 * sizeof dec / 3 || ts_base64_decode(h, len, dec, sizeof dec, &n) != TS_OK)
        return false;
    const char *s = (const char *)dec, *colon = memchr(dec, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    bool ok = ts_secret_eq(s, ulen, user);
    if (password) /* both halves compared, so the time does not tell which was wrong */
        ok =
            ts_secret_eq(colon ? colon + 1 : "", colon ? n - ulen - 1 : 0, password) & ok & !!colon;
    memset(dec, 0, sizeof dec);
    return ok;
}
