/*
 * Unit tests for the USB / keyboard-wedge decoding: the HID POS report
 * reassembler, the keymaps and boot-report decoder, the evdev key mapping
 * and the HID POS report descriptor check behind 'tillside devices'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices.h"
#include "hidpos.h"
#include "keymap.h"
#include "scan.h"

static void report(uint8_t *r, const char *aim, const char *data, size_t len, bool more)
{
    memset(r, 0, 64);
    r[0] = 0x02;
    r[1] = (uint8_t)len;
    memcpy(r + 2, aim, 3);
    memcpy(r + 5, data, len);
    r[63] = more ? 1 : 0;
}

static void hidpos_single(void **state)
{
    (void)state;
    struct ts_hidpos_asm a = {0};
    uint8_t r[64];
    report(r, "]E0", "4006381333931", 13, false);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_DONE);
    assert_string_equal(a.data, "4006381333931");
    assert_string_equal(a.aim, "]E0");
    ts_hidpos_asm_reset(&a);
    assert_int_equal(a.len, 0);
    assert_string_equal(a.data, "");
}

static void hidpos_joined(void **state)
{
    (void)state;
    struct ts_hidpos_asm a = {0};
    uint8_t r[64];
    char part[57];
    memset(part, 'A', 56);
    report(r, "]Q1", part, 56, true);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_MORE);
    report(r, "]Q1", "tail", 4, false);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_DONE);
    assert_int_equal(a.len, 60);
    assert_memory_equal(a.data + 56, "tail", 4);
    assert_string_equal(a.aim, "]Q1");
}

static void hidpos_too_long_dropped_whole(void **state)
{
    (void)state;
    struct ts_hidpos_asm a = {0};
    uint8_t r[64];
    char part[56];
    memset(part, '7', sizeof part);
    for (int i = 0; i < 10; i++) { /* 560 bytes > TS_SCAN_MAX - 1 */
        report(r, "]C0", part, 56, true);
        assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_MORE);
    }
    report(r, "]C0", "1", 1, false);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_DROPPED);
    assert_int_equal(a.dropped, 1);
    /* the next code is whole, nothing of the dropped one in front */
    report(r, "]E0", "12345", 5, false);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_DONE);
    assert_string_equal(a.data, "12345");
}

static void hidpos_other_reports_ignored(void **state)
{
    (void)state;
    struct ts_hidpos_asm a = {0};
    uint8_t r[64];
    report(r, "]E0", "123", 3, false);
    r[0] = 0x04; /* e.g. a status report */
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_IGNORED);
    assert_int_equal(ts_hidpos_feed(&a, r, 3), TS_HIDPOS_IGNORED);
    /* NUL inside the data: dropped, not cut at the NUL */
    report(r, "]E0",
           "12\0"
           "45",
           5, false);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_DROPPED);
    /* a length byte past the data field is clamped */
    report(r, "]E0", "9", 1, false);
    r[1] = 200;
    memset(r + 5, '9', 56);
    assert_int_equal(ts_hidpos_feed(&a, r, 64), TS_HIDPOS_DONE);
    assert_int_equal(a.len, 56);
}

static char got[TS_SCAN_MAX];
static int ncodes;

static void on_code(void *ctx, const char *code, size_t len)
{
    (void)ctx;
    memcpy(got, code, len);
    got[len] = '\0';
    ncodes++;
}

/* Types usages with mods and Enter; returns the code. */
static const char *type(const char *layout, const uint8_t *usages, const unsigned *mods, size_t n)
{
    struct ts_kbd k;
    const struct ts_keymap *m = ts_keymap_find(layout);
    assert_non_null(m);
    ts_kbd_init(&k, m, on_code, NULL);
    got[0] = '\0';
    for (size_t i = 0; i < n; i++)
        ts_kbd_press(&k, usages[i], mods[i]);
    ts_kbd_press(&k, 0x28, 0);
    return got;
}

static void keymaps_each_layout(void **state)
{
    (void)state;
    /* keys: 3, Shift+3, y, z, ;-key, AltGr+e, Non-US-# key */
    const uint8_t u[] = {0x20, 0x20, 0x1c, 0x1d, 0x33, 0x08, 0x32};
    const unsigned m[] = {0, TS_KBD_SHIFT, 0, 0, 0, TS_KBD_ALTGR, 0};
    assert_string_equal(type("us", u, m, 7), "3#yz;\\");
    assert_string_equal(type("uk", u, m, 7), "3£yz;#");
    assert_string_equal(type("de", u, m, 7), "3§zyö€#");
    assert_string_equal(type("fr", u, m, 7), "\"3ywm€*");
    assert_string_equal(type("fr-be", u, m, 7), "\"3ywm€µ");
    assert_string_equal(type("es", u, m, 7), "3·yzñ€ç");
    assert_string_equal(type("it", u, m, 7), "3£yzò€ù");
    assert_null(ts_keymap_find("xx"));
    assert_non_null(ts_keymap_find("gb"));
}

static void keymap_fr_digits_and_be_row(void **state)
{
    (void)state;
    const uint8_t u[] = {0x1e, 0x23, 0x25, 0x27};
    const unsigned none[] = {0, 0, 0, 0},
                   sh[] = {TS_KBD_SHIFT, TS_KBD_SHIFT, TS_KBD_SHIFT, TS_KBD_SHIFT};
    assert_string_equal(type("fr", u, none, 4), "&-_à");
    assert_string_equal(type("fr-be", u, none, 4), "&§!à");
    assert_string_equal(type("fr", u, sh, 4), "1680");
    assert_string_equal(type("fr-be", u, sh, 4), "1680");
}

static void boot_reports(void **state)
{
    (void)state;
    struct ts_kbd k;
    ts_kbd_init(&k, ts_keymap_find("us"), on_code, NULL);
    ncodes = 0;
    const uint8_t reps[][8] = {
        {0x00, 0, 0x1e, 0, 0, 0, 0, 0}, /* 1 */
        {0x00, 0, 0x1e, 0, 0, 0, 0, 0}, /* still held: no second 1 */
        {0x00, 0, 0, 0, 0, 0, 0, 0},
        {0x00, 0, 0x1e, 0, 0, 0, 0, 0},                /* pressed again: 1 */
        {0x02, 0, 0x1e, 0x04, 0, 0, 0, 0},             /* Shift, 1 held, a new: A */
        {0x20, 0, 0x05, 0, 0, 0, 0, 0},                /* right Shift: B */
        {0x00, 0, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01}, /* rollover: ignored */
        {0x00, 0, 0x28, 0, 0, 0, 0, 0},                /* Enter */
    };
    bool ok[8];
    for (size_t i = 0; i < 8; i++)
        ok[i] = ts_kbd_boot_report(&k, reps[i], 8);
    assert_false(ok[6]);
    assert_true(ok[0] && ok[7]);
    assert_int_equal(ncodes, 1);
    assert_string_equal(got, "11AB");
    assert_false(ts_kbd_boot_report(&k, reps[0], 7));
    /* RAlt is AltGr: de AltGr+q = @ */
    ts_kbd_init(&k, ts_keymap_find("de"), on_code, NULL);
    const uint8_t altgr[8] = {0x40, 0, 0x14, 0, 0, 0, 0, 0}, enter[8] = {0, 0, 0x2b, 0, 0, 0, 0, 0};
    ts_kbd_boot_report(&k, altgr, 8);
    ts_kbd_boot_report(&k, enter, 8); /* Tab ends a code too */
    assert_string_equal(got, "@");
}

static void kbd_overflow_and_empty(void **state)
{
    (void)state;
    struct ts_kbd k;
    ts_kbd_init(&k, ts_keymap_find("us"), on_code, NULL);
    ncodes = 0;
    ts_kbd_press(&k, 0x28, 0); /* empty code: nothing */
    assert_int_equal(ncodes, 0);
    for (int i = 0; i < TS_SCAN_MAX + 10; i++)
        ts_kbd_press(&k, 0x1e, 0);
    ts_kbd_press(&k, 0x28, 0);
    assert_int_equal(ncodes, 0);
    assert_int_equal(k.dropped, 1);
    ts_kbd_press(&k, 0x1f, 0);
    ts_kbd_press(&k, 0x28, 0);
    assert_int_equal(ncodes, 1);
    assert_string_equal(got, "2");
}

static void evdev_codes(void **state)
{
    (void)state;
    assert_int_equal(ts_keymap_usage_from_evdev(30), 0x04); /* KEY_A */
    assert_int_equal(ts_keymap_usage_from_evdev(44), 0x1d); /* KEY_Z */
    assert_int_equal(ts_keymap_usage_from_evdev(28), 0x28); /* KEY_ENTER */
    assert_int_equal(ts_keymap_usage_from_evdev(86), 0x64); /* KEY_102ND */
    assert_int_equal(ts_keymap_usage_from_evdev(42), 0);    /* KEY_LEFTSHIFT: a modifier */
    assert_int_equal(ts_keymap_usage_from_evdev(60000), 0);
}

static void report_descriptor_pages(void **state)
{
    (void)state;
    const uint8_t pos2[] = {0x06, 0x8c, 0x00, 0x09, 0x02, 0xa1, 0x01, 0xc0};
    const uint8_t pos1[] = {0x05, 0x8c, 0x09, 0x02};
    const uint8_t kbd[] = {0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0xc0};
    /* 0x8C as data of another item must not count */
    const uint8_t data8c[] = {0x09, 0x8c, 0x15, 0x8c};
    const uint8_t cut[] = {0x06, 0x8c};
    assert_true(ts_devices_report_is_hidpos(pos2, sizeof pos2));
    assert_true(ts_devices_report_is_hidpos(pos1, sizeof pos1));
    assert_false(ts_devices_report_is_hidpos(kbd, sizeof kbd));
    assert_false(ts_devices_report_is_hidpos(data8c, sizeof data8c));
    assert_false(ts_devices_report_is_hidpos(cut, sizeof cut));
    assert_non_null(ts_devices_vendor(0x0c2e));
    assert_null(ts_devices_vendor(0x046d));
}

/* The masked code shows the last 4 characters: a scan decoded with the de
 * or fr layout that ends in an umlaut keeps it whole (half of it made the
 * session JSON invalid and the scan fail as "out of memory"). */
static void mask_keeps_whole_characters(void **state)
{
    (void)state;
    char m[32];
    ts_scan_mask("zy!\"qaw\xc3\xb6"
                 "12Z",
                 m, sizeof m);
    assert_string_equal(m, "\xe2\x80\xa6\xc3\xb6"
                           "12Z");
    ts_scan_mask("4006381333931", m, sizeof m);
    assert_string_equal(m, "\xe2\x80\xa6"
                           "3931");
    ts_scan_mask("ab\xc3\xa9", m, sizeof m); /* 3 characters: all masked */
    assert_string_equal(m, "****");
    ts_scan_mask("12345\xff\xfe", m, sizeof m); /* bytes that are no text */
    assert_string_equal(m, "\xe2\x80\xa6"
                           "45??");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hidpos_single),
        cmocka_unit_test(hidpos_joined),
        cmocka_unit_test(hidpos_too_long_dropped_whole),
        cmocka_unit_test(hidpos_other_reports_ignored),
        cmocka_unit_test(keymaps_each_layout),
        cmocka_unit_test(keymap_fr_digits_and_be_row),
        cmocka_unit_test(boot_reports),
        cmocka_unit_test(kbd_overflow_and_empty),
        cmocka_unit_test(evdev_codes),
        cmocka_unit_test(report_descriptor_pages),
        cmocka_unit_test(mask_keeps_whole_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
