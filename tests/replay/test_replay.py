#!/usr/bin/env python3
"""Replay tests: the real hidpos / usbkbd / evdev drivers (libusb, evdev
ioctls and reads) against umockdev recordings, through tests/replay/ts_replay.

Each scenario is one ctest entry: python3 test_replay.py FUNC.
Recordings and how they were made: tests/replay/<driver>/README.md.
"""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get('TS_SRC_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
REPLAY = os.environ.get('TS_REPLAY', 'ts_replay')
HERE = os.path.join(SRC, 'tests', 'replay')


def run(conf_text, section, umockdev_args, scans, timeout_ms=5000, env=None):
    if not shutil.which('umockdev-run'):
        print('umockdev-run missing (./run test installs umockdev)')
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix='hdu-replay-') as d:
        conf = os.path.join(d, 'tillside.conf')
        with open(conf, 'w') as f:
            f.write(conf_text)
        cmd = ['umockdev-run'] + umockdev_args + ['--', REPLAY, conf, section,
                                                  '--scans', str(scans), '--timeout-ms', str(timeout_ms)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, **(env or {})))
    lines = p.stdout.splitlines()
    return p.returncode, lines, p.stderr


def scans_of(lines):
    return [l.split(' ', 3)[2:] for l in lines if l.startswith('scan ')]


def expect(cond, msg, *dump):
    if not cond:
        print('FAIL:', msg)
        for d in dump:
            print(d if isinstance(d, str) else '\n'.join(d))
        sys.exit(1)


def hidpos(ioctl, n):
    conf = '[input.front]\ndriver = hidpos\ndevice = 0c2e:0b87\n'
    return run(conf, 'input.front', ['-d', f'{HERE}/hidpos/scanner.umockdev',
                                     '-i', f'/dev/bus/usb/001/009={HERE}/hidpos/{ioctl}'], n)


def hidpos_short_code():
    rc, lines, err = hidpos('short.ioctl', 1)
    expect(rc == 0, 'no scan within the timeout', lines, err)
    expect(any(l.startswith('state front OPEN') for l in lines), 'input never OPEN', lines)
    expect(scans_of(lines)[0] == [']E0', '4006381333931'], 'wrong first scan', lines)


def hidpos_multi_report_code():
    want = 'https://shop.example/order/' + 'A1B2C3D4E5F6G7H8J9K0' * 4 + '?s=12'
    rc, lines, err = hidpos('multi.ioctl', 2)
    expect(rc == 0, 'no scans within the timeout', lines, err)
    s = scans_of(lines)
    # the recording holds one 112-byte code in two reports; the replay loops,
    # so every scan must be the whole code, never a half
    expect(s[0] == [']Q1', want] and s[1] == [']Q1', want], 'code not joined across reports', lines)


def hidpos_card_number_dropped():
    rc, lines, err = hidpos('card.ioctl', 1)
    expect(rc == 0, 'no scan within the timeout', lines, err)
    first = [l for l in lines if l.startswith(('scan ', 'guard-drop '))][:2]
    expect(first == ['guard-drop front', 'scan front ]E0 2900000000018'],
           'card number not dropped at the driver, or the EAN-13 after it lost', lines)
    expect('4111' not in '\n'.join(lines) + err, 'card digits leaked to output or log', lines, err)


def hidpos_device_missing():
    conf = '[input.front]\ndriver = hidpos\ndevice = 0c2e:0b87\n'
    # a testbed holding only the keyboard-wedge scanner (another vid:pid)
    rc, lines, err = run(conf, 'input.front', ['-d', f'{HERE}/usbkbd/scanner.umockdev'], 1, 1500)
    expect(rc == 3, 'expected no scan', lines)
    expect(lines and lines[0].startswith('state front WAITING waiting for USB device 0c2e:0b87'),
           'missing device not reported as WAITING', lines)
    expect(not any('ERROR' in l for l in lines), 'missing device reported as an error', lines)


def usbkbd(layout):
    conf = f'[input.k]\ndriver = usbkbd\ndevice = 05e0:1200\nkeymap = {layout}\n'
    rc, lines, err = run(conf, 'input.k', ['-d', f'{HERE}/usbkbd/scanner.umockdev',
                                           '-i', f'/dev/bus/usb/001/009={HERE}/usbkbd/keys.ioctl'], 1)
    expect(rc == 0, 'no scan within the timeout', lines, err)
    return scans_of(lines)[0][1]


# The recording presses the same keys for every layout (HID usages of the US
# legend): y z Shift+1 Shift+2 q a w ; 1 2 Shift+y Enter.
def usbkbd_us():
    got = usbkbd('us')
    expect(got == 'yz!@qaw;12Y', f'us layout decoded as {got!r}')


def usbkbd_de():
    got = usbkbd('de')  # QWERTZ: y/z swapped, Shift+2 is ", ; key is ö
    expect(got == 'zy!"qawö12Z', f'de layout decoded as {got!r}')


def usbkbd_fr():
    got = usbkbd('fr')  # AZERTY: a/q, z/w swapped, digits need Shift, ; key is m
    expect(got == 'yw12aqzm&éY', f'fr layout decoded as {got!r}')


def evdev(grab):
    conf = ('[input.e]\ndriver = evdev\n'
            'device = /dev/input/by-id/usb-Zebra_Symbol_Bar_Code_Scanner-event-kbd\n'
            f'keymap = de\ngrab = {"true" if grab else "false"}\n')
    return run(conf, 'input.e', ['-d', f'{HERE}/evdev/scanner.umockdev',
                                 '-i', f'/dev/input/event7={HERE}/evdev/grab.ioctl',
                                 '-e', f'/dev/input/event7={HERE}/evdev/keys.evemu'], 1,
               env={'UMOCKDEV_DEBUG': 'ioctl'})


EVIOCGRAB = 'request 40044590: emulated, result 0'  # _IOW('E', 0x90, int)


def evdev_grab():
    rc, lines, err = evdev(True)
    expect(rc == 0, 'no scan within the timeout', lines, err)
    expect(scans_of(lines)[0] == ['-', 'zy!"qawö12Z'], 'wrong code from the event device', lines)
    expect(any('OPEN' in l and '(grabbed' in l for l in lines), 'input not reported as grabbed', lines)
    # the driver grabs on open and releases on close: two EVIOCGRAB calls
    expect(err.count(EVIOCGRAB) == 2, 'EVIOCGRAB not issued (grab + release)', err)


def evdev_no_grab():
    rc, lines, err = evdev(False)
    expect(rc == 0, 'no scan within the timeout', lines, err)
    expect(any('(not grabbed' in l for l in lines), 'input not reported as not grabbed', lines)
    expect(EVIOCGRAB not in err, 'EVIOCGRAB issued although grab = false', err)


def devices(umockdev_file):
    p = subprocess.run(['umockdev-run', '-d', umockdev_file, '--', os.environ['TS_TILLSIDE'], 'devices'],
                       capture_output=True, text=True, timeout=60)
    expect(p.returncode == 0, 'tillside devices failed', p.stdout, p.stderr)
    return p.stdout


def devices_lists_scanners():
    if not shutil.which('umockdev-run'):
        sys.exit(77)
    out = devices(f'{HERE}/hidpos/scanner.umockdev')
    expect('0c2e:0b87  Honeywell' in out and 'mode: HID POS' in out, 'HID POS scanner not recognised', out)
    expect('config: driver = hidpos, device = 0c2e:0b87' in out, 'no hidpos config line', out)
    expect('can open: yes' in out, 'access not reported', out)
    out = devices(f'{HERE}/usbkbd/scanner.umockdev')
    expect('05e0:1200  Zebra' in out and 'mode: keyboard wedge' in out, 'keyboard wedge not recognised', out)
    expect('driver = usbkbd, device = 05e0:1200' in out, 'no usbkbd config line', out)
    expect('HID POS' not in out, 'keyboard wedge reported as HID POS', out)


if __name__ == '__main__':
    globals()[sys.argv[1]]()
    print('ok', sys.argv[1])
