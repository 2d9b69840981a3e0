#!/usr/bin/env python3
"""Writes the hand-made umockdev recordings for the USB replay tests.

The recordings are written from the specifications, not captured from a
device (tests/replay/*/README.md say so and how to capture real ones):
USB 2.0 §9.6 descriptors, HID 1.11 §6.2.1 HID descriptor and Appendix B.1
boot keyboard report, HID Point of Sale Usage Tables 1.02 scanned-data
report (layout in drivers/hidpos.h), and umockdev's text formats (.umockdev
sysfs dump, .ioctl tree: "USBDEVFS_REAPURBNDELAY ret type endpoint status
flags buffer_length actual_length error_count data").

Run from the repository root: python3 tests/replay/mkrec.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
BUS, DEVNUM = 1, 9


def descriptors(vid, pid, iface_class, sub, proto, mps):
    dev = struct.pack('<BBHBBBBHHHBBBB', 18, 1, 0x0200, 0, 0, 0, 64, vid, pid, 0x0100, 1, 2, 0, 1)
    iface = struct.pack('<BBBBBBBBB', 9, 4, 0, 0, 1, iface_class, sub, proto, 0)
    hid = struct.pack('<BBHBBBH', 9, 0x21, 0x0111, 0, 1, 0x22, 0x40)
    ep = struct.pack('<BBBBHB', 7, 5, 0x81, 3, mps, 1)
    total = 9 + len(iface) + len(hid) + len(ep)
    cfg = struct.pack('<BBHBBBBB', 9, 2, total, 1, 1, 0, 0x80, 50)
    return (dev + cfg + iface + hid + ep).hex().upper()


def umockdev(vid, pid, iface_class, sub, proto, mps, product, devnum=DEVNUM, port='1-2', rdesc=None, hidnum=1):
    d = descriptors(vid, pid, iface_class, sub, proto, mps)
    node = 'bus/usb/%03d/%03d' % (BUS, devnum)
    return f"""P: /devices/pci0000:00/0000:00:14.0/usb1/{port}
N: {node}={d}
E: BUSNUM={BUS:03d}
E: DEVNAME=/dev/{node}
E: DEVNUM={devnum:03d}
E: DEVTYPE=usb_device
E: DRIVER=usb
E: ID_BUS=usb
E: ID_MODEL_ID={pid:04x}
E: ID_VENDOR_ID={vid:04x}
E: MAJOR=189
E: MINOR=8
E: PRODUCT={vid:x}/{pid:x}/100
E: SUBSYSTEM=usb
E: TYPE=0/0/0
A: bConfigurationValue=1
A: bDeviceClass=00
A: bNumConfigurations=1
A: bNumInterfaces= 1
A: busnum={BUS}\\n
H: descriptors={d}
A: dev=189:8
A: devnum={devnum}\\n
A: devpath={port[2:]}
A: idProduct={pid:04x}
A: idVendor={vid:04x}
A: product={product}
A: speed=12

P: /devices/pci0000:00/0000:00:14.0/usb1/{port}/{port}:1.0
E: DEVTYPE=usb_interface
E: DRIVER=usbhid
E: INTERFACE={iface_class}/{sub}/{proto}
E: PRODUCT={vid:x}/{pid:x}/100
E: SUBSYSTEM=usb
A: bAlternateSetting= 0
A: bInterfaceClass={iface_class:02x}
A: bInterfaceNumber=00
A: bInterfaceProtocol={proto:02x}
A: bInterfaceSubClass={sub:02x}
A: bNumEndpoints=01
""" + ('' if rdesc is None else f"""
P: /devices/pci0000:00/0000:00:14.0/usb1/{port}/{port}:1.0/0003:{vid:04X}:{pid:04X}.{hidnum:04X}
E: DRIVER=hid-generic
E: HID_ID=0003:{vid:08X}:{pid:08X}
E: SUBSYSTEM=hid
H: report_descriptor={rdesc.hex().upper()}
""")


# A HID POS report descriptor as the kernel shows it in sysfs, cut down to
# the scanned-data report (HID 1.11 §6.2.2 items; HID POS Usage Tables 1.02
# §3: page 0x8C, 0x02 Bar Code Scanner, 0x12 Scanned Data Report, 0xFE
# Decoded Data). Illustrative: 'tillside devices' only looks for page 0x8C.
HIDPOS_RDESC = bytes.fromhex('068C00 0902 A101 0912 A102 8502 1500 26FF00 7508 953F 09FE 8102 C0 C0'.replace(' ', ''))


def reap(buf_len, data=b'', status=0):
    """One completed interrupt IN URB on endpoint 0x81 (type 1 = interrupt)."""
    return 'USBDEVFS_REAPURBNDELAY 0 1 129 %d 0 %d %d 0 %s' % (status, buf_len, len(data), data.hex().upper())


def hidpos_reports(code, aim=b']E0'):
    """Splits code into 64-byte scanned-data reports, continuation bit on all but the last."""
    out = []
    chunks = [code[i:i + 56] for i in range(0, len(code), 56)] or [b'']
    for i, c in enumerate(chunks):
        r = bytearray(64)
        r[0] = 0x02
        r[1] = len(c)
        r[2:5] = aim
        r[5:5 + len(c)] = c
        r[63] = 1 if i < len(chunks) - 1 else 0
        out.append(bytes(r))
    return out


# HID usages (HID Usage Tables 1.3 §10) for the keys the keyboard tests type
USAGE = {c: 0x04 + i for i, c in enumerate('abcdefghijklmnopqrstuvwxyz')}
USAGE.update({c: 0x1e + i for i, c in enumerate('1234567890')})
ENTER = 0x28


def kbd_reports(keys):
    """keys: list of (usage, modifier byte); each press is followed by a release report."""
    out = []
    for u, mods in keys:
        out.append(bytes([mods, 0, u, 0, 0, 0, 0, 0]))
        out.append(bytes(8))
    return out


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def ioctl(lines, devnum=DEVNUM):
    return '@DEV /dev/bus/usb/%03d/%03d (usbfs)\n' % (BUS, devnum) + '\n'.join(lines) + '\n'


def main():
    # --- HID POS: Honeywell vendor id, illustrative product id ---------------
    write(f'{HERE}/hidpos/scanner.umockdev', umockdev(0x0c2e, 0x0b87, 3, 0, 0, 64, 'HID POS scanner', rdesc=HIDPOS_RDESC))
    write(f'{HERE}/hidpos/short.ioctl', ioctl(
        [reap(64, r) for r in hidpos_reports(b'4006381333931', b']E0')]))
    long_code = b'https://shop.example/order/' + b'A1B2C3D4E5F6G7H8J9K0' * 4 + b'?s=12'
    write(f'{HERE}/hidpos/multi.ioctl', ioctl(
        [reap(64, r) for r in hidpos_reports(long_code, b']Q1')]))
    # A payment card number scanned by mistake (Luhn-valid test PAN, no AIM
    # id as a magstripe-emulating scanner sends it), then an in-store EAN-13.
    write(f'{HERE}/hidpos/card.ioctl', ioctl(
        [reap(64, r) for r in hidpos_reports(b'4111111111111111', b']C0')] +
        [reap(64, r) for r in hidpos_reports(b'2900000000018', b']E0')]))

    # The unplug test (hidpos_vanish.c): a code, the first report of a
    # two-report code, then the URB ends with -ENODEV (-19) as usbfs reports
    # an unplugged device; the test then removes the device from the
    # testbed and later adds it back with a new device number (as a replug
    # gets), whose recording holds the next scan.
    half = hidpos_reports(b'X' * 70, b']C0')[0]
    write(f'{HERE}/hidpos/vanish-a.ioctl', ioctl(
        [reap(64, r) for r in hidpos_reports(b'2900000000018', b']E0')] +
        [reap(64, half), reap(64, b'', status=-19)]))
    write(f'{HERE}/hidpos/scanner-replugged.umockdev',
          umockdev(0x0c2e, 0x0b87, 3, 0, 0, 64, 'HID POS scanner', devnum=10, port='1-3', rdesc=HIDPOS_RDESC,
                   hidnum=2))
    write(f'{HERE}/hidpos/vanish-b.ioctl', ioctl(
        [reap(64, r) for r in hidpos_reports(b'9780201379624', b']E0')], devnum=10))

    # --- keyboard wedge (boot keyboard): Zebra vendor id, illustrative pid ---
    write(f'{HERE}/usbkbd/scanner.umockdev', umockdev(0x05e0, 0x1200, 3, 1, 1, 8, 'Keyboard wedge scanner'))
    SHIFT = 0x02
    # The same key presses in every layout: y z, Shift+1 Shift+2, q a w m, 1 2, Enter.
    keys = [(USAGE['y'], 0), (USAGE['z'], 0), (USAGE['1'], SHIFT), (USAGE['2'], SHIFT),
            (USAGE['q'], 0), (USAGE['a'], 0), (USAGE['w'], 0), (0x33, 0),
            (USAGE['1'], 0), (USAGE['2'], 0), (USAGE['y'], SHIFT), (ENTER, 0)]
    write(f'{HERE}/usbkbd/keys.ioctl', ioctl([reap(8, r) for r in kbd_reports(keys)]))

    # --- evdev: the same key positions as Linux key events (evemu format) --
    # KEY_* codes from linux/input-event-codes.h
    key = {'y': 21, 'z': 44, '1': 2, '2': 3, 'q': 16, 'a': 30, 'w': 17, ';': 39, 'enter': 28}
    lshift = 42
    seq = [('y', 0), ('z', 0), ('1', 1), ('2', 1), ('q', 0), ('a', 0), ('w', 0), (';', 0),
           ('1', 0), ('2', 0), ('y', 1), ('enter', 0)]
    lines = ['# EVEMU 1.3', '# hand-written by tests/replay/mkrec.py; see README.md']
    t = 0.0

    def ev(typ, code, val):
        lines.append('E: %.6f %04x %04x %04d' % (t, typ, code, val))
    for k, shifted in seq:
        t += 0.002
        if shifted:
            ev(1, lshift, 1), ev(0, 0, 0)
        ev(1, key[k], 1), ev(0, 0, 0)
        t += 0.002
        ev(1, key[k], 0), ev(0, 0, 0)
        if shifted:
            ev(1, lshift, 0), ev(0, 0, 0)
    write(f'{HERE}/evdev/keys.evemu', '\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
