"""The ESC/POS receipt tap's serial relay under umockdev: the POS on one
mocked tty (ttyACM0), the printer on another (ttyACM1), both opened by the
real libserialport code in `tillside-escpos relay` (with the TIOCM* shim of
tests/tools/tiocm_shim.c, see tests/replay/serial/README.md). The test plays
both ends through the ptys' master sides: the bytes arriving at the printer
are identical to those the POS sent, the printer's DLE EOT answers come back
to the POS, and the receipt becomes the expected purchase.
"""
import json
import os
import select
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tslib  # noqa: E402
from tslib import check, wait_for  # noqa: E402
import test_serial  # noqa: E402  (hds's umockdev helpers: gi_umockdev, SHIM, REPLAY)
import test_escpos  # noqa: E402

STATUS_ONLINE = b"\x16"


PRN_TTY = "/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/tty/ttyACM1"
PRN_IFACE = "/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0"
PRN_USB = "/devices/pci0000:00/0000:00:14.0/usb1/1-3"


class Rig:
    """The testbed with the POS on ttyACM0 and the printer on ttyACM1, and
    `tillside-escpos relay` running between them."""

    def __init__(self, w):
        test_serial.need_umockdev()
        self.UM = test_serial.gi_umockdev()
        self.tb = self.UM.Testbed.new()
        self.add("ttyACM0.umockdev")
        self.add("ttyACM1-replug.umockdev")
        # The printer by a stable name (like a udev symlink): umockdev cannot
        # re-add a node name it handed out, so the replug comes back as ttyACM2.
        self.root = self.tb.get_root_dir()
        os.symlink("ttyACM1", os.path.join(self.root, "dev", "tillside-printer"))
        with open(os.path.join(test_escpos.FIX, "rules.conf")) as f:
            rules = f.read()
        conf = os.path.join(w.dir, "tap.conf")
        with open(conf, "w") as f:
            f.write("[input.till1]\ndriver = escpos\npos_port = /dev/ttyACM0\n"
                    "printer_port = /dev/tillside-printer\nbaud = 38400\nrules = receipt.hardware\n\n"
                    + rules)
        self.out = open(os.path.join(w.dir, "tap.out"), "w+")
        env = dict(os.environ, UMOCKDEV_DIR=self.tb.get_root_dir(),
                   LD_PRELOAD=test_serial.preload())
        self.p = subprocess.Popen([test_escpos.TAP_BIN, "relay", "-c", conf], env=env,
                                  stdout=self.out, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: "state till1 open" in self.log() or self.p.poll() is not None,
                 what="both ports open")
        check(self.p.poll() is None, f"the relay exited (rc {self.p.returncode}):\n{self.log()}")
        self.pos = self.tb.get_dev_fd("/dev/ttyACM0")
        self.prn = self.tb.get_dev_fd("/dev/ttyACM1")
        self.at_printer = bytearray()
        self.done = threading.Event()
        self.t = threading.Thread(target=self._printer, daemon=True)
        self.t.start()

    def add(self, desc, renumber=False):
        with open(os.path.join(test_serial.REPLAY, desc)) as f:
            text = f.read()
        if renumber:  # the same device on USB port 1-4 as ttyACM2
            text = (text.replace("1-3", "1-4").replace("ttyACM1", "ttyACM2")
                    .replace("MINOR=1", "MINOR=2").replace("166:1", "166:2"))
        self.tb.add_from_string(text)

    def log(self):
        self.out.seek(0)
        return self.out.read()

    def _printer(self):
        # Reads like the printer, answering each DLE EOT n at once.
        while not self.done.is_set():
            fd = self.prn
            if fd < 0:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([fd], [], [], 0.1)
                if not r or fd != self.prn:
                    continue
                chunk = os.read(fd, 4096)
            except OSError:
                continue  # unplugged under us
            start = max(0, len(self.at_printer) - 2)
            self.at_printer.extend(chunk)
            i = self.at_printer.find(b"\x10\x04", start)
            while i >= 0 and i + 2 < len(self.at_printer):
                os.write(fd, STATUS_ONLINE)
                i = self.at_printer.find(b"\x10\x04", i + 3)

    def pos_send(self, data, back):
        for off in range(0, len(data), 64):
            os.write(self.pos, data[off:off + 64])
            while select.select([self.pos], [], [], 0)[0]:
                back.extend(os.read(self.pos, 64))

    def unplug_printer(self):
        """A USB printer unplugged: its line hangs up, the device goes."""
        self.paused = self.prn
        self.prn = -1
        pts = os.readlink(os.path.join(self.root, "dev", "ttyACM1"))
        os.close(self.tb.get_dev_fd("/dev/ttyACM1"))
        os.unlink(os.path.join(self.root, "dev", "tillside-printer"))
        for dev in (PRN_TTY, PRN_IFACE, PRN_USB):
            self.tb.remove_device("/sys" + dev)
        try:
            os.unlink(os.path.join(self.tb.get_root_dir(), "dev", ".ptymap",
                                   pts.replace("/", "_")))
        except FileNotFoundError:
            pass

    def replug_printer(self):
        self.add("ttyACM1-replug.umockdev", renumber=True)
        os.symlink("ttyACM2", os.path.join(self.root, "dev", "tillside-printer"))
        self.prn = self.tb.get_dev_fd("/dev/ttyACM2")

    def purchase(self):
        line = wait_for(lambda: next((ln for ln in self.log().splitlines()
                                      if ln.startswith("{")), None), what="the purchase")
        got = json.loads(line)["purchase"]
        got.pop("at")
        return got

    def stop(self):
        self.done.set()
        self.t.join(5)
        self.p.terminate()
        self.p.wait(10)
        print(self.log())


def hardware():
    with open(os.path.join(test_escpos.FIX, "hardware.bin"), "rb") as f:
        return f.read()


def serial_relay(w):
    rig = Rig(w)
    try:
        data, back = hardware(), bytearray()
        rig.pos_send(data, back)
        wait_for(lambda: len(rig.at_printer) >= len(data), what="all bytes at the printer")
        wait_for(lambda: select.select([rig.pos], [], [], 0)[0] or back, what="the status reply")
        while select.select([rig.pos], [], [], 0.3)[0]:
            back.extend(os.read(rig.pos, 64))
        check(bytes(rig.at_printer) == data,
              f"printer got {len(rig.at_printer)} bytes, POS sent {len(data)}")
        check(bytes(back) == STATUS_ONLINE * data.count(b"\x10\x04"), f"POS got {bytes(back)!r}")
        got = rig.purchase()
        check(got == test_escpos.expected("hardware"), f"purchase {got}")
    finally:
        rig.stop()


def printer_unplugged(w):
    """The printer's USB cable pulled mid-receipt: the state says so, what
    the POS sends meanwhile waits (nothing is lost or skipped), and once the
    printer is back it gets the rest and the receipt is still recognised."""
    rig = Rig(w)
    try:
        data, back = hardware(), bytearray()
        cut = data.index(b"PIPE")  # before the DLE EOT status request
        rig.pos_send(data[:cut], back)
        wait_for(lambda: len(rig.at_printer) >= cut, what="the first part at the printer")
        rig.unplug_printer()
        wait_for(lambda: "state till1 waiting" in rig.log(), what="the unplug noticed")
        rig.pos_send(data[cut:], back)
        check(len(rig.at_printer) == cut, "bytes reached an unplugged printer")
        check("{" not in "".join(ln[:1] for ln in rig.log().splitlines()),
              "a purchase before the receipt was printed")
        rig.replug_printer()
        wait_for(lambda: len(rig.at_printer) >= len(data), timeout=30,
                 what=f"the rest at the printer after the replug ({len(rig.at_printer)} bytes)")
        check(bytes(rig.at_printer) == data, "printer bytes differ across the unplug")
        wait_for(lambda: select.select([rig.pos], [], [], 0)[0] or back, what="the status reply")
        while select.select([rig.pos], [], [], 0.3)[0]:
            back.extend(os.read(rig.pos, 64))
        check(bytes(back) == STATUS_ONLINE, f"POS got {bytes(back)!r}")
        got = rig.purchase()
        check(got == test_escpos.expected("hardware"), f"purchase {got}")
        states = [ln.split()[2].rstrip(":") for ln in rig.log().splitlines()
                  if ln.startswith("state ")]
        check(states == ["open", "waiting", "open"], f"states {states}")
    finally:
        rig.stop()

if __name__ == "__main__":
    tslib.main({"serial_relay": serial_relay, "printer_unplugged": printer_unplugged})
