/*
 * ESC/POS stream parser (see escpos.h). A byte-at-a-time state machine so
 * that commands split across reads cost nothing special: the command's
 * header bytes collect in cmd[] until its length is known, then its payload
 * is skipped or captured by count.
 *
 * Layouts below cite the Epson ESC/POS Command Reference page of each
 * command ("ESC/POS ref, GS v 0" ...), cross-checked against the printed
 * TM-T81 and HPRT TP809 programming manuals (firmware-notes/README.md).
 */
#include "escpos.h"
#include "escpos_cp.h"
#include "ts.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ESC 0x1B
#define GS 0x1D
#define DLE 0x10
#define FS 0x1C

enum st {
    ST_TEXT,    /* printable text and single-byte controls */
    ST_CMD,     /* collecting a command header in cmd[] */
    ST_SKIP,    /* skipping remain payload bytes (images, graphics, settings) */
    ST_CAPTURE, /* capturing remain payload bytes (GS k, GS ( k store data) */
    ST_NULTERM, /* skipping or capturing up to a NUL (GS k m=0..6, ESC D) */
    ST_UDC_X,   /* ESC &: expecting the x (width) byte of the next character */
};

enum cap { CAP_NONE, CAP_BARCODE, CAP_CODE2D };

struct ts_escpos {
    enum ts_escpos_cp default_cp, cp;
    ts_escpos_receipt_fn cb;
    void *ctx;
    enum st st;
    uint8_t cmd[16];
    size_t cmdlen;
    uint64_t remain; /* ST_SKIP / ST_CAPTURE bytes left; ST_NULTERM: max bytes left */
    enum cap cap;    /* what ST_CAPTURE / ST_NULTERM collect into */
    int cap_type;    /* GS k m or GS ( k cn */
    char capbuf[TS_ESCPOS_CODE_MAX + 1];
    size_t caplen;
    unsigned udc_left; /* ESC &: characters still to define */
    unsigned udc_y;    /* ESC &: bytes per column */
    ts_buf line, text;
    char barcode[TS_ESCPOS_CODE_MAX + 1];
    int barcode_type;
    char code2d[TS_ESCPOS_CODE_MAX + 1];
    int code2d_type;
    bool truncated;
    struct ts_escpos_stats stats;
};

enum ts_err ts_escpos_cp_parse(const char *s, enum ts_escpos_cp *out)
{
    if (!s)
        return TS_ERR_INVAL;
    if (!strncasecmp(s, "cp", 2) || !strncasecmp(s, "pc", 2))
        s += 2;
    else if (!strncasecmp(s, "wpc", 3))
        s += 3;
    if (!strcmp(s, "437"))
        *out = TS_ESCPOS_CP437;
    else if (!strcmp(s, "850"))
        *out = TS_ESCPOS_CP850;
    else if (!strcmp(s, "858"))
        *out = TS_ESCPOS_CP858;
    else if (!strcmp(s, "1252"))
        *out = TS_ESCPOS_CP1252;
    else
        return TS_ERR_INVAL;
    return TS_OK;
}

enum ts_err ts_escpos_new(enum ts_escpos_cp default_cp, ts_escpos_receipt_fn on_receipt, void *ctx,
                          struct ts_escpos **out)
{
    struct ts_escpos *p = calloc(1, sizeof *p);
    if (!p)
        return TS_ERR_NOMEM;
    p->default_cp = p->cp = default_cp;
    p->cb = on_receipt;
    p->ctx = ctx;
    p->barcode_type = p->code2d_type = -1;
    *out = p;
    return TS_OK;
}

void ts_escpos_free(struct ts_escpos *p)
{
    if (!p)
        return;
    ts_buf_free(&p->line);
    ts_buf_free(&p->text);
    free(p);
}

void ts_escpos_stats(const struct ts_escpos *p, struct ts_escpos_stats *out)
{
    *out = p->stats;
}

static const uint16_t *cp_table(enum ts_escpos_cp cp)
{
    switch (cp) {
    case TS_ESCPOS_CP850:
        return ts_escpos_cp850;
    case TS_ESCPOS_CP858:
        return ts_escpos_cp858;
    case TS_ESCPOS_CP1252:
        return ts_escpos_cp1252;
    case TS_ESCPOS_CP437:
    default:
        return ts_escpos_cp437;
    }
}

static void put_char(struct ts_escpos *p, uint8_t b)
{
    uint32_t u = b < 0x80 ? b : cp_table(p->cp)[b - 0x80];
    char enc[3];
    size_t n;
    if (u < 0x80) {
        enc[0] = (char)u;
        n = 1;
    } else if (u < 0x800) {
        enc[0] = (char)(0xC0 | (u >> 6));
        enc[1] = (char)(0x80 | (u & 0x3F));
        n = 2;
    } else {
        enc[0] = (char)(0xE0 | (u >> 12));
        enc[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        enc[2] = (char)(0x80 | (u & 0x3F));
        n = 3;
    }
    if (p->line.len + p->text.len + n > TS_ESCPOS_TEXT_MAX) {
        p->truncated = true;
        return;
    }
    if (ts_buf_append(&p->line, enc, n) != TS_OK)
        p->truncated = true;
}

/* LF, ESC d, ESC J, FF: the printer prints its line buffer. Trailing blanks
 * carry nothing (right-aligned columns are padded with them). */
static void end_line(struct ts_escpos *p)
{
    while (p->line.len && p->line.data[p->line.len - 1] == ' ')
        p->line.data[--p->line.len] = '\0';
    if (p->text.len + p->line.len + 1 > TS_ESCPOS_TEXT_MAX ||
        ts_buf_append(&p->text, p->line.data ? p->line.data : "", p->line.len) != TS_OK ||
        ts_buf_append(&p->text, "\n", 1) != TS_OK)
        p->truncated = true;
    ts_buf_reset(&p->line);
}

static bool has_content(const struct ts_escpos *p)
{
    for (size_t i = 0; i < p->text.len; i++)
        if (p->text.data[i] != '\n' && p->text.data[i] != ' ')
            return true;
    return p->barcode[0] || p->code2d[0];
}

static void complete(struct ts_escpos *p, bool cut)
{
    if (p->line.len)
        end_line(p);
    if (has_content(p)) {
        struct ts_escpos_receipt r = {
            .text = p->text.data ? p->text.data : "",
            .text_len = p->text.len,
            .barcode = p->barcode,
            .barcode_type = p->barcode_type,
            .code2d = p->code2d,
            .code2d_type = p->code2d_type,
            .cut = cut,
            .truncated = p->truncated,
        };
        p->stats.receipts++;
        if (p->cb)
            p->cb(p->ctx, &r);
    }
    ts_buf_reset(&p->text);
    ts_buf_reset(&p->line);
    p->barcode[0] = p->code2d[0] = '\0';
    p->barcode_type = p->code2d_type = -1;
    p->truncated = false;
}

static void text_byte(struct ts_escpos *p, uint8_t b)
{
    switch (b) {
    case ESC:
    case GS:
    case DLE:
    case FS:
        p->cmd[0] = b;
        p->cmdlen = 1;
        p->st = ST_CMD;
        return;
    case 0x0A: /* LF: print and line feed */
    case 0x0C: /* FF: print (page mode) */
        end_line(p);
        return;
    case 0x09: /* HT: horizontal tab; columns become one blank for the rules */
        put_char(p, ' ');
        return;
    default:
        /* CR is ignored with auto line feed off (the default), other C0
         * controls print nothing; DEL is not printable. */
        if (b >= 0x20 && b != 0x7F)
            put_char(p, b);
        return;
    }
}

static inline unsigned u16le(const uint8_t *c)
{
    return (unsigned)c[0] | (unsigned)c[1] << 8;
}

/*
 * The number of header bytes (function bytes and fixed parameters) the
 * command collected so far needs, or 0 when more bytes are needed to tell.
 * Payloads that follow the header are handled in exec().
 */
static size_t header_len(const uint8_t *c, size_t n)
{
    if (n < 2)
        return 0;
    switch (c[0]) {
    case ESC:
        switch (c[1]) {
        case '@':  /* ESC @ initialize */
        case '2':  /* ESC 2 default line spacing */
        case '<':  /* ESC < return home */
        case 'i':  /* ESC i partial cut (one point left) */
        case 'm':  /* ESC m partial cut (three points left) */
        case 'L':  /* ESC L page mode */
        case 'S':  /* ESC S standard mode */
        case 0x0C: /* ESC FF print data in page mode */
            return 2;
        case 'c':  /* ESC c 0/1/3/4/5 n: paper, sensors, panel buttons */
        case '$':  /* ESC $ nL nH absolute position */
        case '\\': /* ESC \ nL nH relative position */
            return 4;
        case 'p': /* ESC p m t1 t2 drawer kick-out pulse */
        case '*': /* ESC * m nL nH bit image */
        case '(': /* ESC ( fn pL pH ...: length-prefixed functions */
        case '&': /* ESC & y c1 c2 ...: define user-defined characters */
            return 5;
        case 'W': /* ESC W xL xH yL yH dxL dxH dyL dyH print area in page mode */
            return 10;
        case 'D': /* ESC D n1 .. nk NUL tab positions */
            return 2;
        default: /* ESC ! n, ESC E n, ESC a n, ESC t n, ESC d n, ESC J n, ESC - n,
                  * ESC 3 n, ESC M n, ESC G n, ESC R n, ESC SP n, ESC V n ... */
            return 3;
        }
    case GS:
        switch (c[1]) {
        case ':': /* GS : start/end macro definition */
            return 2;
        case 'k': /* GS k m d1..dk NUL (m 0..6) or GS k m n d1..dn (m 65..79) */
            if (n < 3)
                return 0;
            return c[2] <= 6 ? 3 : 4;
        case 'v': /* GS v 0 m xL xH yL yH d1..dk raster bit image */
        case 'Q': /* GS Q 0 m xL xH yL yH d1..dk variable vertical size bit image */
            if (n < 3)
                return 0;
            return c[2] == '0' ? 8 : 3;
        case 'V': /* GS V m (0, 1, 48, 49) or GS V m n (65, 66, 97, 98, 103, 104) cut */
            if (n < 3)
                return 0;
            return (c[2] == 65 || c[2] == 66 || c[2] == 97 || c[2] == 98 || c[2] == 103 ||
                    c[2] == 104)
                       ? 4
                       : 3;
        case '(': /* GS ( fn pL pH ...; GS ( k also reads cn fn m to find store data */
            if (n < 5)
                return 0;
            return (c[2] == 'k' && u16le(c + 3) >= 3) ? 8 : 5;
        case '8': /* GS 8 fn p1 p2 p3 p4 ...: 32-bit length (GS 8 L graphics) */
            return 7;
        case '*':  /* GS * x y d1..d(x*y*8) define downloaded bit image */
        case 'L':  /* GS L nL nH left margin */
        case 'W':  /* GS W nL nH print area width */
        case '$':  /* GS $ nL nH absolute vertical position (page mode) */
        case '\\': /* GS \ nL nH relative vertical position */
        case 'P':  /* GS P x y motion units */
            return 4;
        case 'g': /* GS g 0 m nL nH / GS g 2 m nL nH maintenance counters */
            if (n < 3)
                return 0;
            return (c[2] == '0' || c[2] == '2') ? 6 : 3;
        default: /* GS ! n, GS B n, GS H n, GS f n, GS h n, GS w n, GS a n, GS I n,
                  * GS r n, GS b n, GS / m ... */
            return 3;
        }
    case DLE:
        switch (c[1]) {
        case 0x04: /* DLE EOT n, DLE EOT 7 a, DLE EOT 8 a: real-time status */
            if (n < 3)
                return 0;
            return (c[2] == 7 || c[2] == 8) ? 4 : 3;
        case 0x05: /* DLE ENQ n real-time request */
            return 3;
        case 0x14: /* DLE DC4 fn ...: real-time pulse, power-off, buzzer, clear */
            if (n < 3)
                return 0;
            switch (c[2]) {
            case 1: /* DLE DC4 1 m t */
            case 2: /* DLE DC4 2 a b */
            case 3: /* DLE DC4 3 a b */
                return 5;
            case 7: /* DLE DC4 7 m */
                return 4;
            case 8: /* DLE DC4 8 d1..d7 */
                return 10;
            default:
                return 3;
            }
        default:
            return 1; /* a lone DLE: not a command (see exec) */
        }
    case FS:
        switch (c[1]) {
        case '&': /* FS & Kanji mode on */
        case '.': /* FS . Kanji mode off */
            return 2;
        case '!': /* FS ! n */
        case '-': /* FS - n */
        case 'C': /* FS C n */
        case 'W': /* FS W n */
            return 3;
        case 'S': /* FS S n1 n2 */
        case 'p': /* FS p n m print NV bit image */
            return 4;
        case '(': /* FS ( fn pL pH ... */
            return 5;
        default:
            return 2;
        }
    default:
        return 1;
    }
}

static void start_skip(struct ts_escpos *p, uint64_t n)
{
    p->remain = n;
    p->st = n ? ST_SKIP : ST_TEXT;
}

static void start_capture(struct ts_escpos *p, enum cap cap, int type, uint64_t n)
{
    p->cap = cap;
    p->cap_type = type;
    p->caplen = 0;
    p->remain = n;
    p->st = n ? ST_CAPTURE : ST_TEXT;
}

static void cap_byte(struct ts_escpos *p, uint8_t b)
{
    if (p->cap == CAP_NONE)
        return;
    if (p->caplen < TS_ESCPOS_CODE_MAX)
        p->capbuf[p->caplen++] = (char)b;
    else
        p->truncated = true;
}

/*
 * GS k m = 73 (CODE128) data carries code set selectors: "{A", "{B", "{C"
 * switch sets, "{{" is a literal '{', "{1".."{4" are FNC1..FNC4, "{S" is
 * SHIFT; in code set C each byte (0..99) is two digits (ESC/POS ref, GS k,
 * "When CODE128 is used"). A scanner reading the printed symbol transmits
 * the decoded characters, so that is what we keep: FNC1 becomes GS (0x1D)
 * except in first position (GS1-128 marker), other functions are dropped.
 */
static size_t code128_decode(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    bool set_c = false;
    for (size_t i = 0; i < n && o + 2 < outsz; i++) {
        uint8_t b = (uint8_t)in[i];
        if (b == '{' && i + 1 < n) {
            char f = in[++i];
            if (f == 'C')
                set_c = true;
            else if (f == 'A' || f == 'B')
                set_c = false;
            else if (f == '{')
                out[o++] = '{';
            else if (f == '1' && o > 0)
                out[o++] = 0x1D;
            continue;
        }
        if (set_c) {
            if (b > 99)
                continue;
            out[o++] = (char)('0' + b / 10);
            out[o++] = (char)('0' + b % 10);
        } else {
            out[o++] = (char)b;
        }
    }
    out[o] = '\0';
    return o;
}

/* A barcode's data must be text to be matched later by a scanner; NULs
 * inside 2D data end it here (the field is a C string). */
static void cap_done(struct ts_escpos *p)
{
    char *dst = p->cap == CAP_BARCODE ? p->barcode : p->code2d;
    if (p->cap == CAP_NONE)
        return;
    if (p->cap == CAP_BARCODE && p->cap_type == 73) {
        code128_decode(p->capbuf, p->caplen, dst, TS_ESCPOS_CODE_MAX + 1);
    } else {
        memcpy(dst, p->capbuf, p->caplen);
        dst[p->caplen] = '\0';
    }
    if (p->cap == CAP_BARCODE)
        p->barcode_type = p->cap_type;
    else
        p->code2d_type = p->cap_type;
    p->cap = CAP_NONE;
}

/* The command in cmd[] is complete: apply it and pick the next state. */
static void exec(struct ts_escpos *p)
{
    const uint8_t *c = p->cmd;
    p->st = ST_TEXT;
    p->stats.commands++;
    switch (c[0]) {
    case ESC:
        switch (c[1]) {
        case '@': /* ESC @: modes and the code table back to power-on */
            p->cp = p->default_cp;
            return;
        case 't': /* ESC t n: select character code table */
            if (c[2] == TS_ESCPOS_CP437 || c[2] == TS_ESCPOS_CP850 || c[2] == TS_ESCPOS_CP858 ||
                c[2] == TS_ESCPOS_CP1252)
                p->cp = (enum ts_escpos_cp)c[2];
            else
                p->stats.unknown++; /* keep the table we have: closest guess */
            return;
        case 'd': /* ESC d n: print and feed n lines */
        case 'J': /* ESC J n: print and feed n dots */
            end_line(p);
            return;
        case 'i':
        case 'm':
            complete(p, true);
            return;
        case '*': { /* ESC * m nL nH: m 0/1 one byte per column, 32/33 three */
            uint64_t cols = u16le(c + 3);
            start_skip(p, (c[2] == 32 || c[2] == 33) ? 3 * cols : cols);
            return;
        }
        case '(':
            start_skip(p, u16le(c + 3));
            return;
        case '&': /* ESC & y c1 c2 [x d1..d(y*x)] per character c1..c2 */
            p->udc_y = c[2];
            p->udc_left = c[4] >= c[3] ? (unsigned)(c[4] - c[3] + 1) : 0;
            p->st = p->udc_left ? ST_UDC_X : ST_TEXT;
            return;
        case 'D': /* up to 32 tab positions and the NUL */
            p->cap = CAP_NONE;
            p->remain = 33;
            p->st = ST_NULTERM;
            return;
        case '!':
        case 'E':
        case 'a':
        case '-':
        case 'G':
        case 'M':
        case ' ':
        case '3':
        case '2':
        case 'R':
        case 'V':
        case '{':
        case 'c':
        case 'p':
        case '$':
        case '\\':
        case '<':
        case 'L':
        case 'S':
        case 'W':
        case 'U':
        case 'r':
        case '=':
        case 'T':
        case '%':
        case '?':
        case 'e':
        case 0x0C:
            return; /* layout and style only */
        default:
            p->stats.unknown++;
            return;
        }
    case GS:
        switch (c[1]) {
        case 'V':
            complete(p, true);
            return;
        case 'k':
            if (c[2] <= 6) { /* function A: data up to NUL, at most 255 bytes */
                p->cap = CAP_BARCODE;
                p->cap_type = c[2];
                p->caplen = 0;
                p->remain = 256;
                p->st = ST_NULTERM;
            } else {
                start_capture(p, CAP_BARCODE, c[2], c[3]);
            }
            return;
        case 'v':
        case 'Q':
            if (c[2] == '0')
                start_skip(p, (uint64_t)u16le(c + 4) * u16le(c + 6));
            else
                p->stats.unknown++;
            return;
        case '(': {
            uint64_t len = u16le(c + 3);
            if (c[2] == 'k' && len >= 3) {
                /* cn fn m read: fn 80 = store symbol data d1..dk, k = len - 3 */
                if (c[6] == 80)
                    start_capture(p, CAP_CODE2D, c[5], len - 3);
                else
                    start_skip(p, len - 3);
            } else {
                start_skip(p, len);
            }
            return;
        }
        case '8':
            start_skip(p, (uint64_t)u16le(c + 3) | (uint64_t)u16le(c + 5) << 16);
            return;
        case '*':
            start_skip(p, (uint64_t)c[2] * c[3] * 8);
            return;
        case '!':
        case 'B':
        case 'H':
        case 'f':
        case 'h':
        case 'w':
        case 'a':
        case 'I':
        case 'r':
        case 'b':
        case '/':
        case 'L':
        case 'W':
        case '$':
        case '\\':
        case 'P':
        case 'g':
        case ':':
        case 'T':
        case 'j':
        case 'E':
            return;
        default:
            p->stats.unknown++;
            return;
        }
    case DLE:
        if (p->cmdlen == 1) {
            /* Not a real-time command: the DLE itself prints nothing and the
             * byte after it is handled as usual. */
            uint8_t next = c[1];
            p->stats.commands--;
            text_byte(p, next);
        }
        return;
    case FS:
        switch (c[1]) {
        case '(':
            start_skip(p, u16le(c + 3));
            return;
        case '&':
        case '.':
        case '!':
        case '-':
        case 'C':
        case 'W':
        case 'S':
        case 'p':
            return;
        default:
            p->stats.unknown++;
            return;
        }
    default:
        return;
    }
}

static void cmd_byte(struct ts_escpos *p, uint8_t b)
{
    size_t need;
    p->cmd[p->cmdlen++] = b;
    need = header_len(p->cmd, p->cmdlen);
    if (need == 1) { /* lone DLE: exec() re-reads cmd[1] as text */
        p->cmdlen = 1;
        exec(p);
        return;
    }
    if (need && p->cmdlen >= need)
        exec(p);
}

static void feed_byte(struct ts_escpos *p, uint8_t b)
{
    switch (p->st) {
    case ST_TEXT:
        text_byte(p, b);
        return;
    case ST_CMD:
        cmd_byte(p, b);
        return;
    case ST_SKIP:
        if (--p->remain == 0)
            p->st = p->udc_left ? ST_UDC_X : ST_TEXT;
        return;
    case ST_CAPTURE:
        cap_byte(p, b);
        if (--p->remain == 0) {
            cap_done(p);
            p->st = ST_TEXT;
        }
        return;
    case ST_NULTERM:
        if (b == 0) {
            cap_done(p);
            p->st = ST_TEXT;
            return;
        }
        cap_byte(p, b);
        if (--p->remain == 0) { /* no NUL where one must be: resynchronise */
            p->cap = CAP_NONE;
            p->st = ST_TEXT;
        }
        return;
    case ST_UDC_X:
        /* One character: x columns of udc_y bytes each. */
        p->udc_left--;
        start_skip(p, (uint64_t)p->udc_y * b);
        if (p->st == ST_TEXT && p->udc_left)
            p->st = ST_UDC_X;
        return;
    }
}

void ts_escpos_feed(struct ts_escpos *p, const void *buf, size_t n)
{
    const uint8_t *b = buf;
    p->stats.bytes += n;
    for (size_t i = 0; i < n; i++)
        feed_byte(p, b[i]);
}

void ts_escpos_flush(struct ts_escpos *p)
{
    p->st = ST_TEXT;
    p->cmdlen = 0;
    p->remain = 0;
    p->cap = CAP_NONE;
    p->udc_left = 0;
    complete(p, false);
    p->cp = p->default_cp;
}

void ts_escpos_discard(struct ts_escpos *p)
{
    p->st = ST_TEXT;
    p->cmdlen = 0;
    p->remain = 0;
    p->cap = CAP_NONE;
    p->udc_left = 0;
    ts_buf_reset(&p->text);
    ts_buf_reset(&p->line);
    p->barcode[0] = p->code2d[0] = '\0';
    p->barcode_type = p->code2d_type = -1;
    p->truncated = false;
    p->cp = p->default_cp;
}
