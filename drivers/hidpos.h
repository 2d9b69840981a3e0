/*
 * HID Point-of-Sale scanned-data reports (usage page 0x8C) and their
 * reassembly into one code. Layout of the 64-byte input report (USB HID
 * Point of Sale Usage Tables 1.02, §3 Bar Code Scanner page 0x8C, usages
 * Symbology Identifier 1-3 0xFB-0xFD, Decoded Data 0xFE, Decoded Data
 * Continued 0xFF; byte positions as vendors implement the report, e.g.
 * Access-IS LSR116 manual App. A "HID reports"; Honeywell and Zebra HID POS
 * the same, see firmware-notes/):
 *
 *   byte 0      report id (0x02, scanned data)
 *   byte 1      number of data bytes in this report (0..56)
 *   bytes 2-4   AIM symbology identifier: ']', code character, modifier
 *   bytes 5-60  decoded data, zero padded
 *   byte 61     vendor symbology id
 *   byte 62     reserved
 *   byte 63     bit 0: Decoded Data Continued (more reports follow)
 */
#ifndef TS_HIDPOS_H
#define TS_HIDPOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scan.h"

#define TS_HIDPOS_REPORT_ID 0x02
#define TS_HIDPOS_DATA_MAX 56

struct ts_hidpos_asm {
    char data[TS_SCAN_MAX];
    size_t len;
    char aim[4];
    bool overflow; /* longer than TS_SCAN_MAX - 1: the code is dropped whole */
    unsigned long dropped;
};

enum ts_hidpos_feed {
    TS_HIDPOS_MORE = 0,    /* part of a code; wait for the next report */
    TS_HIDPOS_DONE = 1,    /* a->data/len/aim hold a complete code */
    TS_HIDPOS_IGNORED = 2, /* not a scanned-data report (other id, too short) */
    TS_HIDPOS_DROPPED = 3, /* the code ended but was too long or empty */
};

/* Feeds one input report (n bytes as received). After TS_HIDPOS_DONE the
 * caller uses the code and then calls ts_hidpos_asm_reset, which wipes it. */
enum ts_hidpos_feed ts_hidpos_feed(struct ts_hidpos_asm *a, const uint8_t *rep, size_t n);
void ts_hidpos_asm_reset(struct ts_hidpos_asm *a);

#endif
