"""The serial scanner driver under umockdev (tests/replay/serial/README.md):
every framing mode replayed through the real libserialport code, the
scanner unplugged mid-code and replugged, a scan through the agent to the
customer card on the SSE stream, and the payment card guard leaving no trace.

Framing replays run `umockdev-run -d ttyACM0.umockdev -s /dev/ttyACM0=SCRIPT`
around ts-input-run. Unplug/replug and the agent tests need to act on the
device while the program runs (close the pty like a USB unplug, add the
replugged device, start the scan only once the SSE stream is connected), so
they build the umockdev testbed through its GObject API (python3-gi,
gir1.2-umockdev-1.0: Debian's /usr/bin/python3 is re-executed when the
current interpreter lacks them).
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tslib  # noqa: E402
from tslib import check, wait_for, SSEClient  # noqa: E402

REPLAY = os.path.join(HERE, "..", "replay", "serial")
TOOLS = os.path.join(tslib.BIN, "tests")
INPUT_RUN = os.path.join(TOOLS, "ts-input-run")
SHIM = os.path.join(TOOLS, "tiocm_shim.so")
TTY0 = "/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/tty/ttyACM0"
USB0 = "/devices/pci0000:00/0000:00:14.0/usb1/1-2"
LINK = "tillside-scanner-0c2e-0b61"  # what packaging/udev makes for the scanner
# Under the asan preset the umockdev preload library comes before the ASan
# runtime in LD_PRELOAD; ASan must be told that is fine.
os.environ["ASAN_OPTIONS"] = ":".join(
    x for x in (os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)


def need_umockdev():
    if subprocess.run(["sh", "-c", "command -v umockdev-run"], capture_output=True).returncode:
        print("umockdev-run missing (Debian package umockdev; ./run test installs it)")
        sys.exit(77)


def gi_umockdev():
    """The UMockdev GI module; re-executes under /usr/bin/python3 once."""
    try:
        import gi
        gi.require_version("UMockdev", "1.0")
        from gi.repository import UMockdev
        return UMockdev
    except (ImportError, ValueError):
        if os.environ.get("TS_REEXEC") != "1" and os.path.exists("/usr/bin/python3") and \
                os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.environ["TS_REEXEC"] = "1"
            os.execv("/usr/bin/python3", ["/usr/bin/python3", "-u", *sys.argv])
        print("python3-gi / gir1.2-umockdev-1.0 missing (./run test installs them)")
        sys.exit(77)


def serial_conf(path, port="/dev/ttyACM0", suffix="cr", extra=""):
    with open(path, "w") as f:
        f.write(f"[input.front]\ndriver = serial\nport = {port}\nbaud = 115200\n"
                f"suffix = {suffix}\naim_prefix = true\n{extra}")
    return path


def preload():
    return f"{SHIM}:libumockdev-preload.so.0"


# ---- framing replays (umockdev-run + scripts) -------------------------------

def replay(w, script, suffix, extra=""):
    need_umockdev()
    conf = serial_conf(os.path.join(w.dir, "in.conf"), suffix=suffix, extra=extra)
    p = subprocess.run(
        ["umockdev-run", "-d", os.path.join(REPLAY, "ttyACM0.umockdev"),
         "-s", f"/dev/ttyACM0={os.path.join(REPLAY, script)}", "--",
         "sh", "-c", f'LD_PRELOAD="{SHIM}:$LD_PRELOAD" exec "$0" "$@"',
         INPUT_RUN, "-c", conf, "-n", "3", "-t", "15000"],
        capture_output=True, text=True, timeout=60)
    scans = [ln for ln in p.stdout.splitlines() if ln.startswith("scan ")]
    with open(os.path.join(REPLAY, "expected.txt")) as f:
        want = f.read().splitlines()
    check(p.returncode == 0 and scans == want,
          f"{script}: rc {p.returncode}\ngot  {scans}\nwant {want}\n{p.stdout}{p.stderr}")


def replay_cr(w): replay(w, "cr.script", "cr")
def replay_lf(w): replay(w, "lf.script", "lf")
def replay_crlf(w): replay(w, "crlf.script", "crlf")
def replay_tab(w): replay(w, "tab.script", "tab")
def replay_etx(w): replay(w, "etx.script", "etx")
def replay_timeout(w): replay(w, "timeout.script", "none", "inter_char_timeout_ms = 300\n")


# ---- testbed (unplug, replug, agent) ----------------------------------------

class Bed:
    """An umockdev testbed with the scanner plugged in as ttyACM0 and the udev
    symlink the packaging rule creates."""

    def __init__(self):
        self.UM = gi_umockdev()
        self.tb = self.UM.Testbed.new()
        self.root = self.tb.get_root_dir()
        self.plug("ttyACM0.umockdev", "ttyACM0")

    def plug(self, desc, node):
        with open(os.path.join(REPLAY, desc)) as f:
            self.tb.add_from_string(f.read())
        os.symlink(node, os.path.join(self.root, "dev", LINK))
        self.node = node

    def unplug(self):
        """What a USB unplug does to a tty: the line hangs up (the pty master
        closes), the device and its node disappear."""
        pts = os.readlink(os.path.join(self.root, "dev", self.node))
        os.close(self.tb.get_dev_fd(f"/dev/{self.node}"))
        self.tb.remove_device("/sys" + TTY0)
        self.tb.remove_device("/sys" + USB0)
        os.unlink(os.path.join(self.root, "dev", LINK))
        # umockdev 0.17 keeps the pty's map entry; the next pty may reuse the number.
        try:
            os.unlink(os.path.join(self.root, "dev", ".ptymap", pts.replace("/", "_")))
        except FileNotFoundError:
            pass

    def send(self, script):
        self.tb.load_script(f"/dev/{self.node}", os.path.join(REPLAY, script))

    def env(self):
        return dict(os.environ, UMOCKDEV_DIR=self.root, LD_PRELOAD=preload())


def replug(w):
    bed = Bed()
    conf = serial_conf(os.path.join(w.dir, "in.conf"), port=f"/dev/{LINK}")
    out = open(os.path.join(w.dir, "run.out"), "w+")
    p = subprocess.Popen([INPUT_RUN, "-c", conf, "-n", "2", "-t", "30000"], env=bed.env(),
                         stdout=out, stderr=subprocess.STDOUT, text=True)

    def lines():
        out.seek(0)
        return out.read().splitlines()
    try:
        wait_for(lambda: any(" open " in ln for ln in lines()), what="port open")
        bed.send("replug-before.script")  # one code, then half of the next
        wait_for(lambda: any(ln.startswith("scan ") for ln in lines()), what="first scan")
        bed.unplug()
        wait_for(lambda: any("went away" in ln for ln in lines()), what="unplug noticed")
        bed.plug("ttyACM1-replug.umockdev", "ttyACM1")
        wait_for(lambda: sum(" open " in ln for ln in lines()) >= 2, what="reopened")
        bed.send("replug-after.script")
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    got = lines()
    scans = [ln for ln in got if ln.startswith("scan ")]
    check(scans == ["scan front ]E0 104 2100000000012", "scan front ]E0 104 5901234123457"],
          f"scans around the replug: {got}")
    states = [ln.split()[2] for ln in got if ln.startswith("state ")]
    check("waiting" in states[states.index("open"):], f"no waiting state after unplug: {got}")


def start_agent_under(w, root, preload_libs, extra):
    """The agent started inside the umockdev testbed at root."""
    saved = {k: os.environ.get(k) for k in ("UMOCKDEV_DIR", "LD_PRELOAD")}
    os.environ.update(UMOCKDEV_DIR=root, LD_PRELOAD=preload_libs)
    try:
        w.start_agent(extra=extra)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def agent_with_scanner(w, extra=""):
    bed = Bed()
    port_conf = (f"[input.front]\ndriver = serial\nport = /dev/{LINK}\nsuffix = cr\n"
                 f"aim_prefix = true\n{extra}")
    start_agent_under(w, bed.root, preload(), port_conf)
    wait_for(lambda: any(d["name"] == "front" and d["state"] == "open"
                         for d in w.status().get("devices", [])), what="scanner open")
    return bed


def agent_card(w):
    w.start_hub()
    s, body = w.send_batch(tslib.customer_batch())
    check(s == 200, f"batch refused: {s} {body}")
    bed = agent_with_scanner(w)
    w.wait_cards(1)
    dev = [d for d in w.status()["devices"] if d["name"] == "front"][0]
    check(dev["driver"] == "serial" and LINK in dev["detail"], f"status devices: {dev}")
    sse = SSEClient(w.api_port)
    try:
        bed.send("agent-card.script")  # ]E02000000000015 CR
        ev = sse.wait_event("customer", lambda d: d.get("status") == "found", timeout=20)
    finally:
        sse.close()
    check(ev["card"]["name"] == "Ada Lovelace", f"card: {ev}")
    check(ev["scan"]["aim"] == "]E0", f"aim lost: {ev['scan']}")
    check("2000000000015" not in str(ev), "raw code on the SSE stream")


# Public test card numbers (never issued to anyone).
PANS = ["4111111111111111", "5555555555554444", "378282246310005"]


def metric(w, name):
    s, text = w.api("GET", "/metrics")
    for ln in (text if isinstance(text, str) else text.decode()).splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    return None


def guard_leaves_no_trace(w):
    # The EAN-13 5901234123457 passes the Luhn check too: it is a card.
    w.start_hub()
    s, body = w.send_batch(tslib.customer_batch(user="u-eve", loyalty="5901234123457",
                                                name="Eve Example"))
    check(s == 200, f"batch refused: {s} {body}")
    bed = agent_with_scanner(w)
    w.wait_cards(1)
    sse = SSEClient(w.api_port)
    try:
        # track 1, track 2 (no sentinels' help needed), a bare PAN, then the EAN-13.
        bed.send("guard.script")
        ev = sse.wait_event("customer", lambda d: d.get("status") == "found", timeout=20)
        time.sleep(0.5)  # any late event would land in sse.events too
        stream = str(sse.events)
    finally:
        sse.close()
    check(ev["card"]["name"] == "Eve Example", f"EAN-13 passing Luhn lost its card: {ev}")
    check(metric(w, "tillside_guard_drops_total") == 3,
          f"guard drops: {metric(w, 'tillside_guard_drops_total')}")
    scans = [e for e in sse.events if e["event"] == "scan"]
    check(len(scans) == 1, f"dropped scans reached the stream: {scans}")
    w.agent.stop()
    places = {"SSE stream": stream, "agent log": w.agent.log()}
    for name in ("cache.db", "cache.db-wal", "outbox.db", "outbox.db-wal", "cache.db-journal"):
        path = os.path.join(w.dir, "agent", name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                places[name] = f.read().decode("latin-1")
    check("cache.db" in places, "no cache.db to search")
    for where, text in places.items():
        for pan in PANS:
            for piece in (pan, pan[6:-4] + pan[-4:], "DOE/JOHN"):
                check(piece not in text, f"{where} holds card data ({piece[:2]}…)")
    check("payment card data dropped from input front" in places["agent log"],
          "the drop was not logged")


def unknown_driver(w):
    conf = w.agent_conf(extra="[input.front]\ndriver = seriel\nport = /dev/ttyACM0\n")
    p = w.cli("check-config")
    check(p.returncode != 0, f"check-config accepted an unknown driver: {p.stdout}")
    err = p.stderr
    check(f"{conf}:" in err and "seriel" in err and "serial" in err and "hidpos" in err,
          f"error should name file:line and the known drivers: {err}")


TESTS = {f.__name__: f for f in (replay_cr, replay_lf, replay_crlf, replay_tab, replay_etx,
                                  replay_timeout, replug, agent_card, guard_leaves_no_trace,
                                  unknown_driver)}

if __name__ == "__main__":
    if any(a in ("replug", "agent_card", "guard_leaves_no_trace") for a in sys.argv[1:]):
        need_umockdev()
        gi_umockdev()
    tslib.main(TESTS)
