/*
 * HID keyboard usages to characters for the layouts scanners are set to,
 * and the Enter/Tab-terminated code assembler (see keymap.h).
 *
 * Usage numbers: USB HID Usage Tables 1.3, §10 Keyboard/Keypad Page (0x07):
 * 0x04-0x1D letters a-z, 0x1E-0x27 digits 1-9 0, 0x28 Enter, 0x2B Tab,
 * 0x2C Space, 0x2D-0x38 punctuation keys, 0x54-0x63 keypad, 0x64 the ISO
 * key next to left Shift ("Non-US \ and |").
 * Characters per key: xkeyboard-config symbols/us (basic), gb (basic),
 * de (basic, nodeadkeys for the dead keys), fr (basic), be (basic),
 * es (basic), it (basic); levels 1, 2 (Shift) and 3 (AltGr). Dead keys
 * produce their spacing character, which is what a scanner that sends
 * them in a code means.
 *
 * Usage 0x32 (Non-US # and ~) and 0x31 (\ and |) reach Linux as the same
 * KEY_BACKSLASH (drivers/hid/hid-input.c, hid_keyboard[]), and XKB gives
 * both the layout's <BKSL> key, so every layout maps them alike.
 */
#include "keymap.h"

#include <string.h>

#include "conf.h"
#include "ts.h"

struct key {
    uint8_t usage;
    uint32_t base, shift, altgr;
};

struct ts_keymap {
    const char *name;
    const struct key *keys; /* overrides of the US layout */
    size_t nkeys;
};

/* US (xkb "us"): the base every other layout overrides. Letters and digits
 * are computed in ts_keymap_char; these are the other keys. */
static const struct key us_keys[] = {
    {0x1e, '1', '!', 0},
    {0x1f, '2', '@', 0},
    {0x20, '3', '#', 0},
    {0x21, '4', '$', 0},
    {0x22, '5', '%', 0},
    {0x23, '6', '^', 0},
    {0x24, '7', '&', 0},
    {0x25, '8', '*', 0},
    {0x26, '9', '(', 0},
    {0x27, '0', ')', 0},
    {0x28, '\r', '\r', '\r'},
    {0x2b, '\t', '\t', '\t'},
    {0x2c, ' ', ' ', ' '},
    {0x2d, '-', '_', 0},
    {0x2e, '=', '+', 0},
    {0x2f, '[', '{', 0},
    {0x30, ']', '}', 0},
    {0x31, '\\', '|', 0},
    {0x32, '\\', '|', 0},
    {0x33, ';', ':', 0},
    {0x34, '\'', '"', 0},
    {0x35, '`', '~', 0},
    {0x36, ',', '<', 0},
    {0x37, '.', '>', 0},
    {0x38, '/', '?', 0},
    {0x64, '\\', '|', 0},
    /* keypad, NumLock on (scanners in "keypad digits" mode rely on it) */
    {0x54, '/', '/', 0},
    {0x55, '*', '*', 0},
    {0x56, '-', '-', 0},
    {0x57, '+', '+', 0},
    {0x58, '\r', '\r', '\r'},
    {0x59, '1', '1', 0},
    {0x5a, '2', '2', 0},
    {0x5b, '3', '3', 0},
    {0x5c, '4', '4', 0},
    {0x5d, '5', '5', 0},
    {0x5e, '6', '6', 0},
    {0x5f, '7', '7', 0},
    {0x60, '8', '8', 0},
    {0x61, '9', '9', 0},
    {0x62, '0', '0', 0},
    {0x63, '.', '.', 0},
};

/* United Kingdom (xkb "gb"). */
static const struct key uk_keys[] = {
    {0x1f, '2', '"', 0},
    {0x20, '3', 0x00a3 /* £ */, 0},
    {0x21, '4', '$', 0x20ac /* € */},
    {0x31, '#', '~', 0},
    {0x32, '#', '~', 0},
    {0x34, '\'', '@', 0},
    {0x35, '`', 0x00ac /* ¬ */, '|'},
    {0x64, '\\', '|', 0},
};

/* Germany (xkb "de"): QWERTZ, so y and z trade places. */
static const struct key de_keys[] = {
    {0x1c, 'z', 'Z', 0},
    {0x1d, 'y', 'Y', 0},
    {0x14, 'q', 'Q', '@'},
    {0x08, 'e', 'E', 0x20ac},
    {0x10, 'm', 'M', 0x00b5 /* µ */},
    {0x1e, '1', '!', 0},
    {0x1f, '2', '"', 0x00b2 /* ² */},
    {0x20, '3', 0x00a7 /* § */, 0x00b3 /* ³ */},
    {0x21, '4', '$', 0},
    {0x22, '5', '%', 0},
    {0x23, '6', '&', 0},
    {0x24, '7', '/', '{'},
    {0x25, '8', '(', '['},
    {0x26, '9', ')', ']'},
    {0x27, '0', '=', '}'},
    {0x2d, 0x00df /* ß */, '?', '\\'},
    {0x2e, 0x00b4 /* ´ */, '`', 0},
    {0x2f, 0x00fc /* ü */, 0x00dc, 0},
    {0x30, '+', '*', '~'},
    {0x31, '#', '\'', 0},
    {0x32, '#', '\'', 0},
    {0x33, 0x00f6 /* ö */, 0x00d6, 0},
    {0x34, 0x00e4 /* ä */, 0x00c4, 0},
    {0x35, '^', 0x00b0 /* ° */, 0},
    {0x36, ',', ';', 0},
    {0x37, '.', ':', 0},
    {0x38, '-', '_', 0},
    {0x64, '<', '>', '|'},
};

/* France (xkb "fr"): AZERTY; digits need Shift. */
static const struct key fr_keys[] = {
    {0x04, 'q', 'Q', 0},
    {0x14, 'a', 'A', 0},
    {0x1a, 'z', 'Z', 0},
    {0x1d, 'w', 'W', 0},
    {0x33, 'm', 'M', 0},
    {0x10, ',', '?', 0},
    {0x08, 'e', 'E', 0x20ac},
    {0x1e, '&', '1', 0},
    {0x1f, 0x00e9 /* é */, '2', '~'},
    {0x20, '"', '3', '#'},
    {0x21, '\'', '4', '{'},
    {0x22, '(', '5', '['},
    {0x23, '-', '6', '|'},
    {0x24, 0x00e8 /* è */, '7', '`'},
    {0x25, '_', '8', '\\'},
    {0x26, 0x00e7 /* ç */, '9', '^'},
    {0x27, 0x00e0 /* à */, '0', '@'},
    {0x2d, ')', 0x00b0, ']'},
    {0x2e, '=', '+', '}'},
    {0x2f, '^', 0x00a8 /* ¨ */, 0},
    {0x30, '$', 0x00a3, 0x00a4 /* ¤ */},
    {0x31, '*', 0x00b5, 0},
    {0x32, '*', 0x00b5, 0},
    {0x34, 0x00f9 /* ù */, '%', 0},
    {0x35, 0x00b2, 0, 0},
    {0x36, ';', '.', 0},
    {0x37, ':', '/', 0},
    {0x38, '!', 0x00a7, 0},
    {0x64, '<', '>', 0},
};

/* Belgium (xkb "be"): AZERTY like France, different digit row and
 * punctuation. */
static const struct key be_keys[] = {
    {0x04, 'q', 'Q', 0},         {0x14, 'a', 'A', 0},         {0x1a, 'z', 'Z', 0},
    {0x1d, 'w', 'W', 0},         {0x33, 'm', 'M', 0},         {0x10, ',', '?', 0},
    {0x08, 'e', 'E', 0x20ac},    {0x1e, '&', '1', '|'},       {0x1f, 0x00e9, '2', '@'},
    {0x20, '"', '3', '#'},       {0x21, '\'', '4', 0},        {0x22, '(', '5', 0},
    {0x23, 0x00a7, '6', '^'},    {0x24, 0x00e8, '7', 0},      {0x25, '!', '8', 0},
    {0x26, 0x00e7, '9', '{'},    {0x27, 0x00e0, '0', '}'},    {0x2d, ')', 0x00b0, 0},
    {0x2e, '-', '_', 0},         {0x2f, '^', 0x00a8, '['},    {0x30, '$', '*', ']'},
    {0x31, 0x00b5, 0x00a3, '`'}, {0x32, 0x00b5, 0x00a3, '`'}, {0x34, 0x00f9, '%', 0x00b4},
    {0x35, 0x00b2, 0x00b3, 0},   {0x36, ';', '.', 0},         {0x37, ':', '/', 0},
    {0x38, '=', '+', '~'},       {0x64, '<', '>', '\\'},
};

/* Spain (xkb "es"). */
static const struct key es_keys[] = {
    {0x08, 'e', 'E', 0x20ac},
    {0x1e, '1', '!', '|'},
    {0x1f, '2', '"', '@'},
    {0x20, '3', 0x00b7 /* · */, '#'},
    {0x21, '4', '$', '~'},
    {0x22, '5', '%', 0},
    {0x23, '6', '&', 0x00ac},
    {0x24, '7', '/', 0},
    {0x25, '8', '(', 0},
    {0x26, '9', ')', 0},
    {0x27, '0', '=', 0},
    {0x2d, '\'', '?', 0},
    {0x2e, 0x00a1 /* ¡ */, 0x00bf /* ¿ */, 0},
    {0x2f, '`', '^', '['},
    {0x30, '+', '*', ']'},
    {0x31, 0x00e7, 0x00c7, '}'},
    {0x32, 0x00e7, 0x00c7, '}'},
    {0x33, 0x00f1 /* ñ */, 0x00d1, 0},
    {0x34, 0x00b4, 0x00a8, '{'},
    {0x35, 0x00ba /* º */, 0x00aa /* ª */, '\\'},
    {0x36, ',', ';', 0},
    {0x37, '.', ':', 0},
    {0x38, '-', '_', 0},
    {0x64, '<', '>', 0},
};

/* Italy (xkb "it"). */
static const struct key it_keys[] = {
    {0x08, 'e', 'E', 0x20ac},
    {0x1f, '2', '"', 0},
    {0x20, '3', 0x00a3, 0},
    {0x21, '4', '$', 0},
    {0x22, '5', '%', 0},
    {0x23, '6', '&', 0},
    {0x24, '7', '/', 0},
    {0x25, '8', '(', 0},
    {0x26, '9', ')', 0},
    {0x27, '0', '=', 0},
    {0x2d, '\'', '?', 0},
    {0x2e, 0x00ec /* ì */, '^', 0},
    {0x2f, 0x00e8, 0x00e9, '['},
    {0x30, '+', '*', ']'},
    {0x31, 0x00f9, 0x00a7, 0},
    {0x32, 0x00f9, 0x00a7, 0},
    {0x33, 0x00f2 /* ò */, 0x00e7, '@'},
    {0x34, 0x00e0, 0x00b0, '#'},
    {0x35, '\\', '|', 0},
    {0x36, ',', ';', 0},
    {0x37, '.', ':', 0},
    {0x38, '-', '_', 0},
    {0x64, '<', '>', 0},
};

#define N(a) (sizeof(a) / sizeof *(a))
static const struct ts_keymap maps[] = {
    {"us", NULL, 0},
    {"uk", uk_keys, N(uk_keys)},
    {"de", de_keys, N(de_keys)},
    {"fr", fr_keys, N(fr_keys)},
    {"fr-be", be_keys, N(be_keys)},
    {"es", es_keys, N(es_keys)},
    {"it", it_keys, N(it_keys)},
};

const struct ts_keymap *ts_keymap_find(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "gb") == 0)
        name = "uk";
    else if (strcmp(name, "be") == 0)
        name = "fr-be";
    for (size_t i = 0; i < N(maps); i++)
        if (strcmp(maps[i].name, name) == 0)
            return &maps[i];
    return NULL;
}

const char *ts_keymap_list(void)
{
    return "us, uk, de, fr, fr-be, es, it";
}

const char *ts_keymap_name(const struct ts_keymap *m)
{
    return m ? m->name : "";
}

enum ts_err ts_keymap_parse_conf(const struct ts_conf *conf, const char *section,
                                 const struct ts_keymap **out, char *err, size_t errsz)
{
    const char *name = ts_conf_get(conf, section, "keymap", "us");
    const struct ts_keymap *m = ts_keymap_find(name);
    if (!m) {
        ts_conf_errf(conf, section, "keymap", err, errsz, "unknown layout '%s' (known: %s)", name,
                     ts_keymap_list());
        return TS_ERR_CONFIG;
    }
    *out = m;
    return TS_OK;
}

static uint32_t pick(const struct key *k, unsigned mods)
{
    if (mods & TS_KBD_ALTGR)
        return k->altgr;
    return (mods & TS_KBD_SHIFT) ? k->shift : k->base;
}

uint32_t ts_keymap_char(const struct ts_keymap *m, uint8_t usage, unsigned mods)
{
    if (!m || (mods & TS_KBD_CTRL))
        return 0;
    for (size_t i = 0; i < m->nkeys; i++)
        if (m->keys[i].usage == usage)
            return pick(&m->keys[i], mods);
    if (usage >= 0x04 && usage <= 0x1d) {
        if (mods & TS_KBD_ALTGR)
            return 0;
        return (uint32_t)(((mods & TS_KBD_SHIFT) ? 'A' : 'a') + (usage - 0x04));
    }
    for (size_t i = 0; i < N(us_keys); i++)
        if (us_keys[i].usage == usage)
            return pick(&us_keys[i], mods);
    return 0;
}

/* Linux KEY_* (include/uapi/linux/input-event-codes.h) to HID usage; the
 * inverse of hid_keyboard[] in drivers/hid/hid-input.c for the keys a
 * scanner types. */
static const uint8_t evdev_to_usage[128] = {
    [1] = 0x29,  [2] = 0x1e,  [3] = 0x1f,  [4] = 0x20,  [5] = 0x21,  [6] = 0x22,  [7] = 0x23,
    [8] = 0x24,  [9] = 0x25,  [10] = 0x26, [11] = 0x27, [12] = 0x2d, [13] = 0x2e, [14] = 0x2a,
    [15] = 0x2b, [16] = 0x14, [17] = 0x1a, [18] = 0x08, [19] = 0x15, [20] = 0x17, [21] = 0x1c,
    [22] = 0x18, [23] = 0x0c, [24] = 0x12, [25] = 0x13, [26] = 0x2f, [27] = 0x30, [28] = 0x28,
    [30] = 0x04, [31] = 0x16, [32] = 0x07, [33] = 0x09, [34] = 0x0a, [35] = 0x0b, [36] = 0x0d,
    [37] = 0x0e, [38] = 0x0f, [39] = 0x33, [40] = 0x34, [41] = 0x35, [43] = 0x32, [44] = 0x1d,
    [45] = 0x1b, [46] = 0x06, [47] = 0x19, [48] = 0x05, [49] = 0x11, [50] = 0x10, [51] = 0x36,
    [52] = 0x37, [53] = 0x38, [55] = 0x55, [57] = 0x2c, [71] = 0x5f, [72] = 0x60, [73] = 0x61,
    [74] = 0x56, [75] = 0x5c, [76] = 0x5d, [77] = 0x5e, [78] = 0x57, [79] = 0x59, [80] = 0x5a,
    [81] = 0x5b, [82] = 0x62, [83] = 0x63, [86] = 0x64, [96] = 0x58, [98] = 0x54,
};

uint8_t ts_keymap_usage_from_evdev(unsigned code)
{
    return code < N(evdev_to_usage) ? evdev_to_usage[code] : 0;
}

void ts_kbd_init(struct ts_kbd *k, const struct ts_keymap *map,
                 void (*done)(void *ctx, const char *code, size_t len), void *ctx)
{
    memset(k, 0, sizeof *k);
    k->map = map;
    k->done = done;
    k->ctx = ctx;
}

void ts_kbd_reset(struct ts_kbd *k)
{
    explicit_bzero(k->buf, sizeof k->buf);
    memset(k->prev, 0, sizeof k->prev);
    k->len = 0;
    k->overflow = false;
}

static void put_utf8(struct ts_kbd *k, uint32_t c)
{
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xc0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3f));
        n = 2;
    } else {
        u[0] = (char)(0xe0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        u[2] = (char)(0x80 | (c & 0x3f));
        n = 3;
    }
    if (k->len + n >= sizeof k->buf) {
        k->overflow = true;
        return;
    }
    memcpy(k->buf + k->len, u, n);
    k->len += n;
}

void ts_kbd_press(struct ts_kbd *k, uint8_t usage, unsigned mods)
{
    uint32_t c = ts_keymap_char(k->map, usage, mods);
    if (c == 0)
        return;
    if (c == '\r' || c == '\t') {
        if (k->overflow)
            k->dropped++;
        else if (k->len > 0 && k->done)
            k->done(k->ctx, k->buf, k->len);
        explicit_bzero(k->buf, k->len);
        k->len = 0;
        k->overflow = false;
        return;
    }
    put_utf8(k, c);
}

bool ts_kbd_boot_report(struct ts_kbd *k, const uint8_t *rep, size_t n)
{
    if (n != 8)
        return false;
    if (rep[2] == 0x01) /* ErrorRollOver: every slot 0x01, state unknown */
        return false;
    /* Byte 0 bits (HID 1.11 §8.3 / Usage Tables 0xE0-0xE7): 0 LCtrl,
     * 1 LShift, 2 LAlt, 3 LGUI, 4 RCtrl, 5 RShift, 6 RAlt (AltGr), 7 RGUI.
     * Ctrl+Alt is how some layouts' firmware sends AltGr. */
    uint8_t m = rep[0];
    unsigned mods = 0;
    if (m & 0x22)
        mods |= TS_KBD_SHIFT;
    if ((m & 0x40) || ((m & 0x11) && (m & 0x04)))
        mods |= TS_KBD_ALTGR;
    else if (m & 0x11)
        mods |= TS_KBD_CTRL;
    for (size_t i = 2; i < 8; i++) {
        uint8_t u = rep[i];
        if (u < 0x04)
            continue;
        bool was = false;
        for (size_t j = 0; j < 6; j++)
            was |= k->prev[j] == u;
        if (!was)
            ts_kbd_press(k, u, mods);
    }
    memcpy(k->prev, rep + 2, 6);
    return true;
}
