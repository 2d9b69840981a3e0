/*
 * ESC/POS stream parser for the receipt tap (PRODUCT.md §4.1 escpos): turns
 * the bytes a POS sends to its receipt printer into receipt text (UTF-8
 * lines), the printed 1D barcode (GS k) and 2D symbol data (GS ( k), and
 * receipt boundaries (GS V / ESC i / ESC m cuts).
 *
 * The parser is streaming: bytes may arrive split anywhere, including in
 * the middle of a command or of a raster image. Every command of the Epson
 * ESC/POS set whose length can be known is skipped by its exact length, so
 * image and graphics data never leak into the text. Unknown commands are
 * counted and skipped by their most common length (ESC x n and GS x n: 3
 * bytes, FS x: 2 bytes).
 *
 * Byte layouts: Epson "ESC/POS Command Reference" (TM printers,
 * https://download4.epson.biz/sec_pubs/pos/reference_en/escpos/), one page
 * per command; each case in escpos.c names its command. Notes on the
 * printers seen in the field: firmware-notes/README.md.
 */
#ifndef TS_ESCPOS_H
#define TS_ESCPOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps that bound memory whatever the stream holds. */
#define TS_ESCPOS_TEXT_MAX (256 * 1024) /* receipt text beyond this is dropped (truncated) */
#define TS_ESCPOS_CODE_MAX 1024         /* barcode / 2D data beyond this is dropped */

/* Character code tables (ESC t n values, Epson numbering). */
enum ts_escpos_cp {
    TS_ESCPOS_CP437 = 0,
    TS_ESCPOS_CP850 = 2,
    TS_ESCPOS_CP1252 = 16,
    TS_ESCPOS_CP858 = 19,
};

/* A completed receipt, borrowed for the duration of the callback. */
struct ts_escpos_receipt {
    const char *text; /* UTF-8 lines, each ended by '\n', NUL-terminated */
    size_t text_len;
    const char *barcode; /* data of the last GS k barcode, "" when none */
    int barcode_type;    /* GS k m value (73 = CODE128 ...), -1 when none */
    const char *code2d;  /* data of the last GS ( k store-data (QR, PDF417 ...), "" when none */
    int code2d_type;     /* GS ( k cn (49 = QR, 48 = PDF417 ...), -1 when none */
    bool cut;            /* ended by a cut; false when flushed at the end of a stream */
    bool truncated;      /* text or code data exceeded the caps above */
};

typedef void (*ts_escpos_receipt_fn)(void *ctx, const struct ts_escpos_receipt *r);

struct ts_escpos_stats {
    uint64_t bytes, commands, unknown, receipts;
};

struct ts_escpos;

/*
 * A parser that calls on_receipt for each completed receipt. default_cp is
 * the table the printer uses after power-on and ESC @ (its DIP switch /
 * memory switch setting); pass TS_ESCPOS_CP437 when unsure.
 */
enum ts_err ts_escpos_new(enum ts_escpos_cp default_cp, ts_escpos_receipt_fn on_receipt, void *ctx,
                          struct ts_escpos **out);
void ts_escpos_free(struct ts_escpos *p); /* NULL ok */
/* Parses n more bytes of the stream. Never fails: garbage becomes text or
 * is skipped. */
void ts_escpos_feed(struct ts_escpos *p, const void *buf, size_t n);
/* End of a stream (the POS closed its connection): a receipt with content
 * that was not cut is handed over (cut = false), a half-read command is
 * dropped, and the print modes go back to their power-on state. */
void ts_escpos_flush(struct ts_escpos *p);
/* Drops a receipt in progress without handing it over (the printer did not
 * take all of it) and goes back to the power-on state. */
void ts_escpos_discard(struct ts_escpos *p);
void ts_escpos_stats(const struct ts_escpos *p, struct ts_escpos_stats *out);
/* Parses a table name ("437", "cp858", "1252" ...); TS_ERR_INVAL when unknown. */
enum ts_err ts_escpos_cp_parse(const char *s, enum ts_escpos_cp *out);

#endif
