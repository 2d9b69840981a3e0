/*
 * 'tillside devices' (PRODUCT.md §4.6): serial ports through libserialport,
 * USB devices through libusb, classified by the vendor table and by the
 * interface class:
 *   HID (0x03) with report usage page 0x8C  -> HID POS      (driver = hidpos)
 *   HID subclass 1 protocol 1 (boot kbd)    -> keyboard wedge (usbkbd / evdev)
 *   CDC (0x02) / CDC data (0x0A)            -> serial (CDC ACM)   (driver = serial)
 * Interface classes: USB-IF class codes; boot keyboard: HID 1.11 §4.2-4.3.
 * The report descriptor comes from sysfs (report_descriptor of the hid
 * device under the interface), which needs no device access; it is absent
 * when no kernel driver is bound (e.g. tillside holds the scanner).
 */
#include "devices.h"

#include <dirent.h>
#include <libserialport.h>
#include <libusb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ts.h"
#include "usbdev.h"

/* Vendor ids: the USB-IF list as published in the usb.ids database
 * (linux-usb.org) and the vendors' own manuals (firmware-notes/). Keep in
 * step with packaging/udev/60-tillside-scanners.rules. */
static const struct {
    uint16_t vid;
    const char *name;
} vendors[] = {
    {0x0c2e, "Honeywell (Hand Held Products / Metrologic)"},
    {0x0536, "Honeywell (Hand Held Products)"},
    {0x05e0, "Zebra (Symbol)"},
    {0x05f9, "Datalogic (PSC)"},
    {0x080c, "Datalogic"},
    {0x1eab, "Newland"},
    {0x065a, "Opticon"},
};

const char *ts_devices_vendor(uint16_t vid)
{
    for (size_t i = 0; i < sizeof vendors / sizeof *vendors; i++)
        if (vendors[i].vid == vid)
            return vendors[i].name;
    return NULL;
}

bool ts_devices_report_is_hidpos(const uint8_t *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = d[i];
        if (b == 0xfe) { /* long item: bDataSize follows */
            if (i + 1 >= n)
                return false;
            i += 3 + (size_t)d[i + 1];
            continue;
        }
        size_t sz = (b & 3) == 3 ? 4 : (b & 3);
        if (i + 1 + sz > n)
            return false;
        if ((b & 0xfc) == 0x04) { /* Usage Page (global) */
            uint32_t page = 0;
            for (size_t k = 0; k < sz; k++)
                page |= (uint32_t)d[i + 1 + k] << (8 * k);
            if (page == 0x8c)
                return true;
        }
        i += 1 + sz;
    }
    return false;
}

static long read_long(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    long v = -1;
    if (ts_read_file(path, 64, &buf, &len) == TS_OK)
        v = strtol(buf, NULL, 10);
    free(buf);
    return v;
}

/* Reads the report descriptors of interface ifnum of the device at bus/addr
 * from sysfs: /sys/bus/usb/devices/<dev>/<dev>:1.<ifnum>/<hid>/report_descriptor.
 * The device directory is found by its busnum/devnum files (port numbers
 * are not always known to libusb). opendir/readdir rather than glob(3),
 * whose internal directory calls bypass umockdev's preload in the tests. */
static bool iface_is_hidpos(uint8_t bus, uint8_t addr, int ifnum)
{
    static const char base[] = "/sys/bus/usb/devices";
    char path[1024];
    bool pos = false;
    DIR *dir = opendir(base);
    if (!dir)
        return false;
    struct dirent *de;
    while (!pos && (de = readdir(dir))) {
        if (de->d_name[0] == '.' || strchr(de->d_name, ':'))
            continue;
        snprintf(path, sizeof path, "%s/%s/busnum", base, de->d_name);
        if (read_long(path) != bus)
            continue;
        snprintf(path, sizeof path, "%s/%s/devnum", base, de->d_name);
        if (read_long(path) != addr)
            continue;
        char ifdir[600];
        if (strlen(de->d_name) > 64) /* sysfs USB names are short: "1-2.3.4" */
            continue;
        snprintf(ifdir, sizeof ifdir, "%s/%.64s/%.64s:1.%d", base, de->d_name, de->d_name, ifnum);
        DIR *id = opendir(ifdir);
        if (!id)
            break;
        struct dirent *he;
        while (!pos && (he = readdir(id))) {
            if (he->d_name[0] == '.')
                continue;
            char *buf = NULL;
            size_t len = 0;
            snprintf(path, sizeof path, "%s/%.255s/report_descriptor", ifdir, he->d_name);
            if (ts_read_file(path, 4096, &buf, &len) == TS_OK)
                pos = ts_devices_report_is_hidpos((const uint8_t *)buf, len);
            free(buf);
        }
        closedir(id);
        break;
    }
    closedir(dir);
    return pos;
}

static void print_serial(FILE *out)
{
    struct sp_port **ports = NULL;
    fprintf(out, "Serial ports:\n");
    if (sp_list_ports(&ports) != SP_OK || !ports || !ports[0]) {
        fprintf(out, "  (none)\n");
        sp_free_port_list(ports);
        return;
    }
    for (int i = 0; ports[i]; i++) {
        const char *name = sp_get_port_name(ports[i]);
        const char *desc = sp_get_port_description(ports[i]);
        int vid = 0, pid = 0;
        char ids[64] = "";
        const char *vendor = NULL;
        if (sp_get_port_transport(ports[i]) == SP_TRANSPORT_USB &&
            sp_get_port_usb_vid_pid(ports[i], &vid, &pid) == SP_OK) {
            snprintf(ids, sizeof ids, " %04x:%04x", vid, pid);
            vendor = ts_devices_vendor((uint16_t)vid);
        }
        bool ok = access(name, R_OK | W_OK) == 0;
        fprintf(out, "  %-16s%s  %s%s%s\n", name, ids, vendor ? vendor : (desc ? desc : ""),
                vendor ? " scanner, serial/CDC mode" : "",
                ok ? "" : "  [no access: add the service user to group dialout]");
        fprintf(out, "      can open: %s; config: driver = serial, port = %s\n", ok ? "yes" : "NO",
                name);
    }
    sp_free_port_list(ports);
}

int ts_devices_print(FILE *out, bool all)
{
    print_serial(out);
    fprintf(out, "USB devices that look like scanners:\n");
    libusb_context *usb = NULL;
    if (libusb_init(&usb) != 0) {
        fprintf(out, "  (libusb could not start)\n");
        return 0;
    }
    libusb_device **list = NULL;
    ssize_t n = libusb_get_device_list(usb, &list);
    int found = 0;
    for (ssize_t i = 0; i < n; i++) {
        struct libusb_device_descriptor dd;
        struct libusb_config_descriptor *cd = NULL;
        if (libusb_get_device_descriptor(list[i], &dd) != 0)
            continue;
        const char *vendor = ts_devices_vendor(dd.idVendor);
        char modes[160] = "";
        const char *driver = NULL;
        bool hidpos = false;
        if (libusb_get_active_config_descriptor(list[i], &cd) == 0) {
            for (int k = 0; k < cd->bNumInterfaces; k++) {
                if (cd->interface[k].num_altsetting < 1)
                    continue;
                const struct libusb_interface_descriptor *id = &cd->interface[k].altsetting[0];
                const char *m = NULL;
                if (id->bInterfaceClass == LIBUSB_CLASS_HID) {
                    if (iface_is_hidpos(libusb_get_bus_number(list[i]),
                                        libusb_get_device_address(list[i]), id->bInterfaceNumber)) {
                        m = "HID POS";
                        hidpos = true;
                        driver = "hidpos";
                    } else if (id->bInterfaceSubClass == 1 && id->bInterfaceProtocol == 1) {
                        m = "keyboard wedge";
                        if (!driver)
                            driver = "usbkbd";
                    } else {
                        m = "HID";
                    }
                } else if (id->bInterfaceClass == LIBUSB_CLASS_COMM) {
                    m = "serial (CDC ACM)";
                    if (!driver)
                        driver = "serial";
                } else if (id->bInterfaceClass == LIBUSB_CLASS_DATA) {
                    continue;
                }
                if (m && !strstr(modes, m)) {
                    size_t l = strlen(modes);
                    snprintf(modes + l, sizeof modes - l, "%s%s", l ? ", " : "", m);
                }
            }
            libusb_free_config_descriptor(cd);
        }
        if (!vendor && !hidpos && !all)
            continue;
        found++;
        uint8_t bus = libusb_get_bus_number(list[i]), addr = libusb_get_device_address(list[i]);
        char node[64];
        snprintf(node, sizeof node, "/dev/bus/usb/%03u/%03u", bus, addr);
        bool ok = access(node, R_OK | W_OK) == 0;
        fprintf(out, "  %04x:%04x  %-44s mode: %s\n", dd.idVendor, dd.idProduct,
                vendor ? vendor : "(not a known scanner vendor)", modes[0] ? modes : "unknown");
        if (driver && strcmp(driver, "serial") == 0) {
            fprintf(out, "      use the serial port above (driver = serial)\n");
        } else if (driver) {
            fprintf(out, "      config: driver = %s, device = %04x:%04x%s\n", driver, dd.idVendor,
                    dd.idProduct,
                    strcmp(driver, "usbkbd") == 0 ? ", keymap = <scanner's country>" : "");
        }
        if (ok) {
            fprintf(out, "      can open: yes (%s)\n", node);
        } else {
            char hint[400];
            ts_usbdev_perm_hint(bus, addr, dd.idVendor, dd.idProduct, hint, sizeof hint);
            fprintf(out, "      can open: NO: %s\n", hint);
        }
    }
    if (found == 0)
        fprintf(out, "  (none)\n");
    libusb_free_device_list(list, 1);
    libusb_exit(usb);
    return found;
}
