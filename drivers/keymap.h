/*
 * Keyboard-wedge decoding shared by drivers/usbkbd.c (USB boot keyboard
 * reports) and drivers/evdev.c (Linux key events): HID keyboard usages to
 * characters through a national layout, and the code assembler that ends a
 * code on Enter or Tab.
 *
 * Usages: USB HID Usage Tables 1.3, §10 "Keyboard/Keypad Page (0x07)".
 * Layouts: xkeyboard-config symbols files us, gb, de, fr, be, es, it (the
 * base level, Shift and AltGr of each key). The firmware-notes files say which
 * scanner setting matches which layout.
 */
#ifndef TS_KEYMAP_H
#define TS_KEYMAP_H

#include "../common/ts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scan.h"

/* Modifier state for ts_kbd_press (not the HID bit layout). */
enum {
    TS_KBD_SHIFT = 1,
    TS_KBD_ALTGR = 2,
    TS_KBD_CTRL = 4,
};

struct ts_keymap;

/* The layout called name ("us", "uk", "de", "fr", "fr-be", "es", "it";
 * "gb" and "be" are accepted too), NULL when unknown. */
const struct ts_keymap *ts_keymap_find(const char *name);
/* "us, uk, de, ..." for error messages. */
const char *ts_keymap_list(void);
const char *ts_keymap_name(const struct ts_keymap *m);
/* The Unicode character a key gives with mods in layout m, 0 for none
 * (modifiers, function keys, dead keys). Enter and Tab give '\r', '\t'. */
uint32_t ts_keymap_char(const struct ts_keymap *m, uint8_t usage, unsigned mods);
struct ts_conf;
/* The section's "keymap" option (default "us"); TS_ERR_CONFIG naming
 * file:line and the known layouts when it is unknown. */
enum ts_err ts_keymap_parse_conf(const struct ts_conf *conf, const char *section,
                                 const struct ts_keymap **out, char *err, size_t errsz);
/* Linux input key code (KEY_*) to HID usage, 0 when it has none. */
uint8_t ts_keymap_usage_from_evdev(unsigned code);

/*
 * The code assembler: characters accumulate until Enter or Tab, then done()
 * gets the code (UTF-8, without the suffix; borrowed for the call, wiped
 * afterwards). A code longer than TS_SCAN_MAX - 1 bytes is dropped whole
 * rather than cut, since a truncated loyalty number would resolve wrongly.
 */
struct ts_kbd {
    const struct ts_keymap *map;
    void (*done)(void *ctx, const char *code, size_t len);
    void *ctx;
    uint8_t prev[6]; /* keys down in the previous boot report */
    char buf[TS_SCAN_MAX];
    size_t len;
    bool overflow;
    unsigned long dropped; /* codes dropped for length */
};

void ts_kbd_init(struct ts_kbd *k, const struct ts_keymap *map,
                 void (*done)(void *ctx, const char *code, size_t len), void *ctx);
/* One key press (key-down edge) of usage with mods. */
void ts_kbd_press(struct ts_kbd *k, uint8_t usage, unsigned mods);
/*
 * One boot keyboard input report (HID 1.11 Appendix B.1: byte 0 modifier
 * bits, byte 1 reserved, bytes 2..7 up to six usages of the keys down).
 * Keys not down in the previous report are presses. Reports of another
 * length, and the phantom state (all usages 0x01, ErrorRollOver), are
 * ignored. Returns false when the report was ignored.
 */
bool ts_kbd_boot_report(struct ts_kbd *k, const uint8_t *rep, size_t n);
/* Forgets a half-typed code (device gone) and wipes the buffer. */
void ts_kbd_reset(struct ts_kbd *k);

#endif
