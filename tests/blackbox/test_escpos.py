"""The ESC/POS receipt tap's TCP relay between a Python "POS" and a Python
"printer": the bytes arriving at the printer are identical to those the POS
sent, the printer's status replies (DLE EOT) come back to the POS, each
receipt becomes the expected purchase, and a printer that is down makes the
POS's job fail instead of vanishing.

The relay runs as `tillside-escpos relay` (the escpos driver with purchases
printed as JSON lines, docs/OPERATIONS.md); the purchases fixtures and rules
come from tests/fixtures/escpos.
"""
import json
import os
import socket
import threading
import time

import tslib
from tslib import Fail, Proc, check, free_port, wait_for

SRC = os.environ.get("TS_SRC_DIR", os.path.join(os.path.dirname(__file__), "../.."))
FIX = os.path.join(SRC, "tests", "fixtures", "escpos")
TAP_BIN = os.path.join(tslib.BIN, "drivers", "tillside-escpos")
STYLES = ("supermarket", "fashion", "hardware")
STATUS_ONLINE = b"\x16"  # DLE EOT 1 answer: printer status, online (bits 1, 2, 4 fixed)


class Printer:
    """A raw 9100 printer: keeps every byte of each connection, answers
    DLE EOT n with one status byte, closes when the sender half-closes."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(4)
        self.jobs = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            got = bytearray()
            with c:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    # A status request split across reads still gets its answer.
                    start = max(0, len(got) - 2)
                    got += d
                    i = got.find(b"\x10\x04", start)
                    while i >= 0 and i + 2 < len(got):
                        c.sendall(STATUS_ONLINE)
                        i = got.find(b"\x10\x04", i + 3)
            with self.lock:
                self.jobs.append(bytes(got))

    def close(self):
        self.sock.close()


def pos_print(port, data, chunk=509):
    """Sends data like a POS (in odd-sized chunks), half-closes, and returns
    what came back (status replies) once the relay closes."""
    back = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        for off in range(0, len(data), chunk):
            s.sendall(data[off:off + chunk])
            time.sleep(0.002)
        s.shutdown(socket.SHUT_WR)
        while True:
            d = s.recv(4096)
            if not d:
                break
            back += d
    return bytes(back)


def tap_conf(w, listen, printer, style, extra=""):
    with open(os.path.join(FIX, "rules.conf")) as f:
        rules = f.read()
    path = os.path.join(w.dir, "tap.conf")
    with open(path, "w") as f:
        f.write(f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                f"printer = 127.0.0.1:{printer}\nrules = receipt.{style}\n"
                f"connect_timeout_ms = 2000\nlinger_ms = 3000\n{extra}\n{rules}")
    return path


def start_tap(w, conf, name="tap"):
    out = os.path.join(w.dir, name + ".out")
    p = Proc("tillside-escpos", [TAP_BIN, "relay", "-c", conf], os.path.join(w.dir, name + ".log"))
    # stdout (purchases) and stderr (states) both go to the log; purchases are
    # the lines that parse as JSON.
    w.procs.append(p)
    wait_for(lambda: "ready" in p.log(), what="the tap to start")
    return p, out


def purchases(p):
    got = []
    for line in p.log().splitlines():
        if line.startswith("{"):
            got.append(json.loads(line))
    return got


def expected(style):
    with open(os.path.join(FIX, style + ".json"), encoding="utf-8") as f:
        return json.load(f)


def relay_bytes_identical(w):
    for style in STYLES:
        listen, pport = free_port(), free_port()
        printer = Printer(pport)
        try:
            p, _ = start_tap(w, tap_conf(w, listen, pport, style), style)
            with open(os.path.join(FIX, style + ".bin"), "rb") as f:
                data = f.read()
            # Twice: one job per connection, the same relay.
            for n in (1, 2):
                back = pos_print(listen, data)
                job = wait_for(lambda: len(printer.jobs) >= n and printer.jobs[n - 1],
                               what=f"{style} job {n} at the printer")
                check(job == data, f"{style}: printer got {len(job)} bytes, POS sent {len(data)}"
                      f" (first difference at {next((i for i, (a, b) in enumerate(zip(job, data)) if a != b), min(len(job), len(data)))})")
                want_status = STATUS_ONLINE * data.count(b"\x10\x04")
                check(back == want_status, f"{style}: POS got {back!r}, want {want_status!r}")
            got = wait_for(lambda: len(purchases(p)) >= 2 and purchases(p), what="purchases")
            for g in got:
                check(g["input"] == "till1", f"input {g['input']}")
                pur = g["purchase"]
                check(pur.pop("at", "").endswith("Z"), "at missing")
                check(pur == expected(style),
                      f"{style}: parsed\n{json.dumps(pur, ensure_ascii=False)}\nexpected\n"
                      f"{json.dumps(expected(style), ensure_ascii=False)}")
            p.stop()
            w.procs.remove(p)
        finally:
            printer.close()


def printer_down_fails_the_job(w):
    listen, pport = free_port(), free_port()
    p, _ = start_tap(w, tap_conf(w, listen, pport, "hardware"))
    with open(os.path.join(FIX, "hardware.bin"), "rb") as f:
        data = f.read()
    # Nothing listens on the printer port: the POS must see its job fail.
    try:
        back = pos_print(listen, data)
        failed = False
    except OSError:  # reset, broken pipe, or not connected when half-closing after the reset
        back, failed = b"", True
    check(failed or back == b"", "the POS got replies from a printer that is down")
    check(failed, "the POS connection was closed cleanly although the printer is down")
    wait_for(lambda: "printer not reachable" in p.log(), what="the state saying so")
    check(purchases(p) == [], "a purchase from a job the printer never took")
    # The printer comes up: the next job goes through.
    printer = Printer(pport)
    try:
        back = pos_print(listen, data)
        wait_for(lambda: printer.jobs, what="the job at the printer")
        check(printer.jobs[0] == data, "bytes differ after the printer came back")
        check(back == STATUS_ONLINE, f"status reply {back!r}")
        wait_for(lambda: purchases(p), what="the purchase")
        check("state till1 open" in p.log(), "state did not go back to open")
    finally:
        printer.close()


def printer_stops_reading(w):
    """A printer that stops taking bytes (paper out, buffer full) holds the
    POS back: the relay does not read ahead of it, and everything arrives
    once it reads again."""
    listen, pport = free_port(), free_port()
    srv = socket.socket()
    srv.bind(("127.0.0.1", pport))
    srv.listen(1)
    p, _ = start_tap(w, tap_conf(w, listen, pport, "hardware"))
    big = (b"X" * 79 + b"\n") * 300000 + b"\x1dV\x00"  # 24 MB of text, then a cut
    sent = [0]

    def pos():
        with socket.create_connection(("127.0.0.1", listen), timeout=60) as s:
            s.setblocking(True)
            for off in range(0, len(big), 65536):
                s.sendall(big[off:off + 65536])
                sent[0] = off + min(65536, len(big) - off)
            s.shutdown(socket.SHUT_WR)
            s.recv(10)

    t = threading.Thread(target=pos, daemon=True)
    t.start()
    c, _ = srv.accept()
    # Without reading at the printer, the POS gets stuck once the socket
    # buffers on both legs are full: far less than the 24 MB job.
    wait_for(lambda: sent[0] > 0, what="the POS to start sending")
    before = -1
    while before != sent[0]:
        before = sent[0]
        time.sleep(0.5)
    check(sent[0] < len(big) // 2, f"the POS sent {sent[0]} bytes into a stalled printer")
    got = bytearray()
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
    c.close()
    srv.close()
    t.join(30)
    check(bytes(got) == big, f"printer got {len(got)} of {len(big)} bytes")


def agent_records_receipts(w):
    """Through the real agent and hub: receipts printed through the agent's
    escpos input are recorded once (a reprint and the same receipt posted by
    the POS are duplicates), reach the hub, and the printer got every byte."""
    w.start_hub()
    listen, pport = free_port(), free_port()
    with open(os.path.join(FIX, "rules.conf")) as f:
        rules = f.read()
    printer = Printer(pport)
    try:
        w.start_agent(extra=f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                            f"printer = 127.0.0.1:{pport}\nrules = receipt.supermarket\n\n{rules}")
        with open(os.path.join(FIX, "supermarket.bin"), "rb") as f:
            data = f.read()
        pos_print(listen, data)
        pos_print(listen, data)  # a reprint of the same receipt
        wait_for(lambda: len(printer.jobs) == 2, what="both jobs at the printer")
        check(printer.jobs == [data, data], "printer bytes differ from what the POS sent")
        wait_for(lambda: "already recorded" in w.agent.log() or "(duplicate)" in w.agent.log(),
                 what="the reprint seen as a duplicate")
        # The POS also posts the same sale through the API: a duplicate.
        body = expected("supermarket")
        body.pop("barcode")
        st, ans = w.api("POST", "/api/v1/purchases", body)
        check(st == 200 and ans.get("duplicate") is True, f"API post of a tapped receipt: {st} {ans}")
        wait_for(lambda: w.hub_stats()["purchases"]["stored"] == 1, timeout=30,
                 what="the purchase at the hub")
        devs = w.status().get("devices", [])
        check(any(d.get("name") == "till1" and d.get("driver") == "escpos" for d in devs),
              f"status devices: {devs}")
    finally:
        printer.close()


def card_number_not_taken(w):
    """A "loyalty number" that is a payment card number (a Luhn-valid PAN) is
    printed, forwarded to the printer as is, and never reaches the purchase."""
    listen, pport = free_port(), free_port()
    printer = Printer(pport)
    pan = "4111111111111111"  # public test card number
    try:
        p, _ = start_tap(w, tap_conf(w, listen, pport, "hardware"))
        with open(os.path.join(FIX, "hardware.bin"), "rb") as f:
            data = f.read().replace(b"4711000123", pan.encode())
        pos_print(listen, data)
        wait_for(lambda: printer.jobs, what="the job at the printer")
        check(printer.jobs[0] == data, "the printer must get the receipt unchanged")
        got = wait_for(lambda: purchases(p), what="the purchase")[0]["purchase"]
        check("customer" not in got, f"card number taken as loyalty id: {got}")
        check(got["receipt"] == "3-1-000123", "the sale itself is still recorded")
        check("guard drop till1" in p.log(), "guard drop not reported")
        check(pan not in p.log(), "the card number is in the tap's output")
    finally:
        printer.close()


def receipt_card_numbers_masked(w):
    """Card numbers in receipt text (a gift card's number in an item line,
    a card number as the loyalty number, track 2 data in a footer) are masked
    before the receipt is parsed: the printer still gets every byte, the sale
    is recorded without them, and afterwards they are in no file of the
    agent's state directory, the hub's database, any log, or what the CDP
    received."""
    from test_purchases_hub import FakeCDP, start_hub
    gift, loyal, track = "4000056655665556", "6011111111111117", "5200828282828210"
    cdp = FakeCDP()
    listen, pport = free_port(), free_port()
    with open(os.path.join(FIX, "rules.conf")) as f:
        rules = f.read()
    printer = Printer(pport)
    try:
        start_hub(w, cdp.port)
        w.start_agent(extra="[outbox]\nbackoff_ms = 100\n"
                            f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                            f"printer = 127.0.0.1:{pport}\nrules = receipt.hardware\n\n{rules}")
        with open(os.path.join(FIX, "hardware.bin"), "rb") as f:
            data = (f.read()
                    .replace(b"HAMMER 16OZ              12.99",
                             f"GESCHENKKARTE {gift} 12.99".encode())
                    .replace(b"4711000123", loyal.encode())
                    .replace(b"Survey, receipt and returns:",
                             f";{track}=25121010000000000000?".encode()))
        pos_print(listen, data)
        wait_for(lambda: printer.jobs, what="the job at the printer")
        check(printer.jobs[0] == data, "the printer must get the receipt unchanged")
        wait_for(lambda: len(cdp.received) == 1, timeout=30, what="the sale at the CDP")
        ev = next(iter(cdp.received.values()))
        names = [p["name"] for p in ev["properties"]["products"]]
        check(names[0] == "GESCHENKKARTE ************5556", f"names as forwarded: {names}")
        check(ev["properties"]["order_id"] == "3-1-000123", f"the sale: {ev}")
        check("cid" not in ev["context"]["tillside"], "a card number resolved a customer")
        log = w.agent.log()
        check("masked in receipt line" in log and "…5556" in log,
              "the masked number was not logged")
        st, text = w.api("GET", "/metrics")
        check("tillside_guard_drops_total 1\n" in text, "the drop was not counted")
        received = [json.dumps(e) for e in cdp.received.values()]
        for when in ("running", "stopped"):
            traces = tslib.card_number_traces(w, [gift, loyal, track], received)
            check(not traces, f"card numbers found ({when}): {traces}")
            w.agent.stop()
            w.hub.stop()
    finally:
        printer.close()
        cdp.stop()


def idle_and_second_pos_do_not_block(w):
    """A connection to the tap that sends nothing, and a second POS
    connection in the middle of its job, do not hold up a receipt: it is at
    the printer at once, whole; the silent connection is closed after
    idle_ms and both other jobs arrive unchanged."""
    listen, pport = free_port(), free_port()
    printer = Printer(pport)
    try:
        p, _ = start_tap(w, tap_conf(w, listen, pport, "hardware", "idle_ms = 1500\n"))
        with open(os.path.join(FIX, "hardware.bin"), "rb") as f:
            data = f.read()
        idle = socket.create_connection(("127.0.0.1", listen), timeout=10)
        t0 = time.monotonic()
        back = pos_print(listen, data)
        job = wait_for(lambda: printer.jobs and printer.jobs[0], timeout=5,
                       what="the receipt at the printer while another connection idles")
        took = time.monotonic() - t0
        check(job == data and back == STATUS_ONLINE, "the receipt changed on the way")
        check(took < 2.0, f"the receipt took {took:.1f} s with an idle connection open")
        wait_for(lambda: purchases(p), what="the purchase")
        # The silent connection is closed by the tap, not kept for ever.
        idle.settimeout(5)
        try:
            closed = idle.recv(1) == b""
        except OSError:
            closed = True
        check(closed, "the idle connection is still open")
        check("silent for 1500 ms: closed" in p.log(), "the idle close was not logged")
        idle.close()
        # Two POS connections at once: one half-way through its job while the
        # other prints a whole receipt; then the first finishes.
        half = len(data) // 2
        slow = socket.create_connection(("127.0.0.1", listen), timeout=10)
        slow.sendall(data[:half])
        time.sleep(0.3)
        t0 = time.monotonic()
        threading.Thread(target=pos_print, args=(listen, data), daemon=True).start()
        time.sleep(0.5)
        slow.sendall(data[half:])
        slow.shutdown(socket.SHUT_WR)
        slow.recv(100)
        slow.close()
        wait_for(lambda: len(printer.jobs) == 3, timeout=10, what="both jobs at the printer")
        check(printer.jobs[1:] == [data, data], "a job changed or was mixed with the other")
        check(time.monotonic() - t0 < 5, "the second job waited for the first connection")
    finally:
        printer.close()


def outsider_refused(w):
    """A peer outside the tap's allow-list is reset at once and records
    nothing; the printer never hears of it."""
    listen, pport = free_port(), free_port()
    printer = Printer(pport)
    try:
        p, _ = start_tap(w, tap_conf(w, listen, pport, "hardware",
                                     "allow = 192.0.2.10, 10.1.2.0/24\n"))
        with open(os.path.join(FIX, "hardware.bin"), "rb") as f:
            data = f.read()
        try:
            pos_print(listen, data)
            refused = False
        except OSError:
            refused = True
        check(refused, "a peer outside allow could print")
        wait_for(lambda: "refused till1: connection from 127.0.0.1" in p.log(),
                 what="the refusal in the log")
        time.sleep(0.5)
        check(printer.jobs == [], f"the printer got {len(printer.jobs)} job(s) from an outsider")
        check(purchases(p) == [], "an outsider recorded a purchase")
    finally:
        printer.close()


if __name__ == "__main__":
    tslib.main({
        "relay_bytes_identical": relay_bytes_identical,
        "printer_down_fails_the_job": printer_down_fails_the_job,
        "printer_stops_reading": printer_stops_reading,
        "agent_records_receipts": agent_records_receipts,
        "card_number_not_taken": card_number_not_taken,
        "receipt_card_numbers_masked": receipt_card_numbers_masked,
        "idle_and_second_pos_do_not_block": idle_and_second_pos_do_not_block,
        "outsider_refused": outsider_refused,
    })
