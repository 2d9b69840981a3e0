/*
 * 'tillside devices': the serial ports and the USB devices that look like
 * barcode scanners, with vendor, mode and whether this user can open them.
 */
#ifndef TS_DEVICES_H
#define TS_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The scanner vendor for a USB vendor id, NULL when not in the table. */
const char *ts_devices_vendor(uint16_t vid);
/* True when a HID report descriptor declares usage page 0x8C (Bar Code
 * Scanner, HID Point of Sale Usage Tables 1.02 §3). Walks the short items
 * (HID 1.11 §6.2.2.2); a Usage Page item is tag 0x04 of the global type. */
bool ts_devices_report_is_hidpos(const uint8_t *desc, size_t n);
/* Prints the listing; returns the number of scanner-like devices found. With
 * all, every USB device is listed, not only scanner-like ones. */
int ts_devices_print(FILE *out, bool all);

#endif
