/*
 * libFuzzer target: the keyboard-wedge decoder (drivers/keymap.c). Byte 0
 * picks the layout; the rest is a stream of 8-byte boot keyboard reports,
 * with a byte pair (0xFF, code) now and then fed as a Linux key code through
 * the evdev mapping, as drivers/evdev.c does. Checks that every code handed
 * on is non-empty, fits TS_SCAN_MAX and is valid UTF-8.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "keymap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 0;
        assert(k > 0 && i + k <= n);
        for (size_t j = 1; j < k; j++)
            assert(((unsigned char)s[i + j] & 0xc0) == 0x80);
        i += k;
    }
}

static void done(void *ctx, const char *code, size_t len)
{
    (void)ctx;
    assert(len > 0 && len < TS_SCAN_MAX);
    check_utf8(code, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *layouts[] = {"us", "uk", "de", "fr", "fr-be", "es", "it"};
    if (size < 1)
        return 0;
    struct ts_kbd k;
    ts_kbd_init(&k, ts_keymap_find(layouts[data[0] % 7]), done, NULL);
    size_t i = 1;
    while (i < size) {
        if (data[i] == 0xff && i + 2 < size) {
            uint8_t u = ts_keymap_usage_from_evdev(data[i + 1]);
            if (u)
                ts_kbd_press(&k, u, data[i + 2] & 7);
            i += 3;
            continue;
        }
        size_t n = size - i < 8 ? size - i : 8;
        ts_kbd_boot_report(&k, data + i, n);
        i += n;
    }
    ts_kbd_reset(&k);
    return 0;
}
