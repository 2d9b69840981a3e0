"""Inputs that tell the truth (issue 18): for every driver, the real agent
under its umockdev replay (tests/replay/<driver>/) reports the input `open`
in /api/v1/status, /metrics, `tillside status` and `tillside devices` while its scans arrive;
and `check-config` refuses every `device =` (and key) mistake that `run`
refuses, with file, line and key.

USB replays (hidpos, usbkbd) and the evdev replay are loaded into a umockdev
testbed through its GObject API (as test_serial.py does for the serial
port); the agent runs with UMOCKDEV_DIR and the umockdev preload library.
The serial scanner needs the TIOCM shim before umockdev's (test_serial.py),
the escpos tap needs no device (TCP POS and printer, test_escpos.py).
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tslib  # noqa: E402
from tslib import check, wait_for, free_port  # noqa: E402
import test_serial  # noqa: E402
import test_escpos  # noqa: E402

REPLAY = os.path.join(HERE, "..", "replay")


class UsbBed:
    """A testbed holding one recorded device, its ioctl tree and events."""

    def __init__(self, desc, ioctls=(), evemu=()):
        UM = test_serial.gi_umockdev()
        self.tb = UM.Testbed.new()
        self.root = self.tb.get_root_dir()
        with open(os.path.join(REPLAY, desc)) as f:
            self.tb.add_from_string(f.read())
        for dev, path in ioctls:
            self.tb.load_ioctl(dev, os.path.join(REPLAY, path))
        for dev, path in evemu:
            self.tb.load_evemu_events(dev, os.path.join(REPLAY, path))


start_under = test_serial.start_agent_under


def metric(w, name):
    s, text = w.api("GET", "/metrics")
    check(s == 200, f"/metrics answered {s}")
    for ln in text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    return None


def scans(w):
    return metric(w, "tillside_scans_total") or 0


def check_open(w, name, driver):
    """After a scan arrived: every place a technician looks says open."""
    dev = [d for d in w.status().get("devices", []) if d["name"] == name]
    check(len(dev) == 1, f"status devices: {w.status().get('devices')}")
    check(dev[0]["driver"] == driver and dev[0]["state"] == "open",
          f"{driver}: status says {dev[0]} while scans arrive")
    check(metric(w, 'tillside_inputs{state="open"}') == 1 and
          metric(w, 'tillside_inputs{state="waiting"}') == 0,
          f"{driver}: /metrics inputs by state wrong")
    for cmd in ("status", "devices"):
        p = w.cli(cmd)
        check(p.returncode == 0 and re.search(rf"input\s+{name} \({driver}\): open, ", p.stdout),
              f"{driver}: tillside {cmd}: {p.stdout}")


def usb_case(w, desc, ioctl, section, name, driver, n):
    test_serial.need_umockdev()
    bed = UsbBed(desc, [("/dev/bus/usb/001/009", ioctl)])
    start_under(w, bed.root, "libumockdev-preload.so.0", section)
    # The recordings wrap: the same code arrives again and again.
    wait_for(lambda: scans(w) >= n, what=f"{driver} scans through the agent")
    check_open(w, name, driver)


def status_open_hidpos(w):
    usb_case(w, "hidpos/scanner.umockdev", "hidpos/short.ioctl",
             "[input.front]\ndriver = hidpos\ndevice = 0c2e:0b87\n", "front", "hidpos", 2)


def status_open_usbkbd(w):
    usb_case(w, "usbkbd/scanner.umockdev", "usbkbd/keys.ioctl",
             "[input.k]\ndriver = usbkbd\ndevice = 05e0:1200\nkeymap = us\n", "k", "usbkbd", 1)


def status_open_evdev(w):
    test_serial.need_umockdev()
    bed = UsbBed("evdev/scanner.umockdev", [("/dev/input/event7", "evdev/grab.ioctl")],
                 [("/dev/input/event7", "evdev/keys.evemu")])
    start_under(w, bed.root, "libumockdev-preload.so.0",
                "[input.e]\ndriver = evdev\n"
                "device = /dev/input/by-id/usb-Zebra_Symbol_Bar_Code_Scanner-event-kbd\n"
                "keymap = de\ngrab = true\n")
    wait_for(lambda: scans(w) >= 1, what="evdev scan through the agent")
    check_open(w, "e", "evdev")


def status_open_serial(w):
    test_serial.need_umockdev()
    bed = test_serial.Bed()
    start_under(w, bed.root, test_serial.preload(),
                f"[input.front]\ndriver = serial\nport = /dev/{test_serial.LINK}\nsuffix = cr\n"
                "aim_prefix = true\n")
    wait_for(lambda: any(d["state"] == "open" for d in w.status()["devices"]), what="port open")
    bed.send("agent-card.script")
    wait_for(lambda: scans(w) >= 1, what="serial scan through the agent")
    check_open(w, "front", "serial")


def status_open_escpos(w):
    listen, pport = free_port(), free_port()
    with open(os.path.join(test_escpos.FIX, "rules.conf")) as f:
        rules = f.read()
    printer = test_escpos.Printer(pport)
    try:
        w.start_agent(extra=f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                            f"printer = 127.0.0.1:{pport}\nrules = receipt.supermarket\n\n{rules}")
        with open(os.path.join(test_escpos.FIX, "supermarket.bin"), "rb") as f:
            test_escpos.pos_print(listen, f.read())
        wait_for(lambda: "recorded" in w.agent.log(), what="the receipt recorded")
        check_open(w, "till1", "escpos")
    finally:
        printer.close()


# Every device = mistake per driver, and per-driver keys unknown or malformed:
# (section text, key the error must name).
MISTAKES = [
    ("driver = hidpos\ndevice = /dev/bus/usb/001/009\n", "device"),  # a path, not vid:pid
    ("driver = hidpos\ndevice = /dev/input/event7\n", "device"),
    ("driver = hidpos\ndevice = 0c2e\n", "device"),
    ("driver = hidpos\ndevice = 0c2e:0b87x\n", "device"),
    ("driver = hidpos\n", "device"),                                 # missing
    ("driver = hidpos\ndevice = 0c2e:0b87\ninterface = 300\n", "interface"),
    ("driver = hidpos\ndevice = 0c2e:0b87\nkeymap = de\n", "keymap"),  # not a hidpos key
    ("driver = usbkbd\ndevice = /dev/input/event7\n", "device"),
    ("driver = usbkbd\ndevice = 05e0:1200\nkeymap = klingon\n", "keymap"),
    ("driver = usbkbd\ndevice = 05e0:1200\ngrab = true\n", "grab"),
    ("driver = evdev\ndevice = 05e0:1200\n", "device"),              # vid:pid, not a path
    ("driver = evdev\ndevice = event7\n", "device"),
    ("driver = evdev\n", "device"),
    ("driver = evdev\ndevice = /dev/input/event7\ngrab = maybe\n", "grab"),
    ("driver = evdev\ndevice = /dev/input/event7\nkeymap = xx\n", "keymap"),
    ("driver = evdev\ndevice = /dev/input/event7\nbaud = 9600\n", "baud"),
    ("driver = serial\nport = 0c2e:0b61\n", "port"),
    ("driver = serial\n", "port"),
    ("driver = serial\ndevice = /dev/ttyACM0\n", "device"),          # the key is port =
    ("driver = serial\nport = /dev/ttyACM0\nbaud = fast\n", "baud"),
    ("driver = serial\nport = /dev/ttyACM0\nparity = sometimes\n", "parity"),
    ("driver = serial\nport = /dev/ttyACM0\nsuffix = none\n", "suffix"),
    ("driver = serial\nport = /dev/ttyACM0\nbuad = 9600\n", "buad"),
    ("driver = escpos\nlisten = 127.0.0.1:9100\n", "printer"),
    ("driver = escpos\nlisten = nowhere\nprinter = 127.0.0.1:9101\n", "listen"),
    ("driver = escpos\nlisten = 127.0.0.1:9100\nprinter = 127.0.0.1:9101\ncodepage = 999\n",
     "codepage"),
    ("driver = escpos\nlisten = 127.0.0.1:9100\nprinter = 127.0.0.1:9101\ndevice = /dev/x\n",
     "device"),
]


def check_config_refuses_what_run_refuses(w):
    for i, (body, key) in enumerate(MISTAKES):
        conf = w.agent_conf(extra=f"[input.x]\n{body}")
        # The section starts on this line of the file; the error's line is in it.
        with open(conf) as f:
            lines = f.read().splitlines()
        first = lines.index("[input.x]") + 1
        p = w.cli("check-config")
        # file:line: [input.x] key: ... (a missing key has no line of its own)
        m = re.search(rf"{re.escape(conf)}(?::(\d+))?: \[input\.x\] {key}( = '[^']*')?: ",
                      p.stderr)
        check(p.returncode != 0 and m and (m.group(1) is None and "\n" + key not in body or
                                           int(m.group(1) or 0) > first),
              f"check-config on mistake {i} ({body!r}): rc {p.returncode} {p.stderr!r}")
        if key in ("device", "port") and i % 3 == 0:
            # run refuses the same configuration with the same sentence
            r = tslib.run([tslib.AGENT_BIN, "run", "-c", conf], check_rc=False)
            check(r.returncode != 0 and m.group(0) in r.stderr,
                  f"run on mistake {i}: rc {r.returncode} {r.stderr!r}")
    # and what run accepts check-config accepts
    for body in ("driver = hidpos\ndevice = 0c2e:0b87\nserial = X1\ninterface = 0\n",
                 "driver = evdev\ndevice = /dev/input/by-id/x-event-kbd\nkeymap = fr\n",
                 "driver = serial\nport = /dev/ttyACM0\nsuffix = none\n"
                 "inter_char_timeout_ms = 50\n"):
        w.agent_conf(extra=f"[input.x]\n{body}")
        p = w.cli("check-config")
        check(p.returncode == 0, f"check-config refused a good section {body!r}: {p.stderr}")


TESTS = {f.__name__: f for f in (status_open_hidpos, status_open_usbkbd, status_open_evdev,
                                  status_open_serial, status_open_escpos,
                                  check_config_refuses_what_run_refuses)}

if __name__ == "__main__":
    if any(a.startswith("status_open_") and a != "status_open_escpos" for a in sys.argv[1:]):
        test_serial.need_umockdev()
        test_serial.gi_umockdev()
    tslib.main(TESTS)
