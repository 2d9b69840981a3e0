"""The associate page in Debian's Chromium driven by playwright-core (see
tests/browser/page_test.js): scan → card, consent off, 800×480, accessibility and
size, keys (Esc, previous card), two tabs and reconnecting across an agent restart,
link down, languages, purchase → the card clears."""
import os
import shutil
import subprocess
import threading
import time

import tslib
from tslib import check

ROOT = os.environ.get("TS_SRC_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")


def page_in_chromium(w):
    missing = [t for t in ("node", "/usr/bin/chromium") if not shutil.which(t)]
    if missing or not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        print(f"skipped: {missing or 'playwright-core'} missing (./run test installs them)")
        raise SystemExit(77)
    w.start_hub()
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    ada = tslib.customer_batch()
    ada.append({"type": "track", "event": "Order Completed", "userId": "u-ada",
                "messageId": "u-ada-o1", "timestamp": now,
                "properties": {"order_id": "W-1001", "total": 59.9, "currency": "EUR",
                               "products": [{"product_id": "SKU-SOCK", "name": "Wool Socks",
                                             "price": 59.9, "quantity": 1}]}})
    # The online order is waiting in the store (hub/suggest.c order status).
    ada.append({"type": "track", "event": "Order Updated", "userId": "u-ada",
                "messageId": "u-ada-o1-ready", "timestamp": now,
                "properties": {"order_id": "W-1001", "status": "Ready for pickup"}})
    bea = tslib.customer_batch(user="u-bea", loyalty="2000000000022", name="Bea Private",
                               tier="silver", consent=False)
    # Another customer who looked at Ada's top interest (the jacket in her
    # cart) bought socks: the
    # hub suggests them to Ada (co-occurrence, hub/suggest.c).
    cem = tslib.customer_batch(user="u-cem", loyalty="2000000000039", name="Cem Peer",
                               store="S002", viewed=("SKU-JKT-7", "Rain Jacket"), views=1,
                               cart=None)
    cem.append({"type": "track", "event": "Order Completed", "userId": "u-cem",
                "messageId": "u-cem-o1", "timestamp": now,
                "properties": {"order_id": "W-2001", "total": 15.0, "currency": "EUR",
                               "products": [{"product_id": "SKU-SCK-3", "name": "Trek Socks",
                                             "price": 15.0, "quantity": 1}]}})
    s, body = w.send_batch(cem)
    check(s == 200, f"batch: {s} {body}")
    s, body = w.send_batch(ada + bea)
    check(s == 200, f"batch: {s} {body}")
    w.start_agent()
    w.wait_cards(2)
    shots = os.path.join(ROOT, "docs") if os.environ.get("TS_UPDATE_SCREENSHOTS") else ""
    env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token(),
               TS_HUB_PID=str(w.hub.p.pid), TS_SHOTS=shots)
    run_scenarios(w, env)


def run_scenarios(w, env):
    """Runs page_test.js. It may ask for things only this side can do, one
    line "@@<command>" on its stdout, answered "ok" (or "error ...") on its
    stdin: "agent-stop" and "agent-start" restart the real agent."""
    p = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "page_test.js")], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, bufsize=1)
    timer = threading.Timer(300, p.kill)  # a hung browser must not hang ctest
    timer.start()
    out = []
    try:
        for line in p.stdout:
            if not line.startswith("@@"):
                out.append(line)
                print(line, end="", flush=True)
                continue
            cmd = line[2:].strip()
            try:
                if cmd == "agent-stop":
                    w.agent.stop()
                elif cmd == "agent-start":
                    w.start_agent()
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                p.stdin.write("ok\n")
            except Exception as e:  # noqa: BLE001 - reported to the script
                p.stdin.write(f"error {e}\n")
            p.stdin.flush()
        err = p.stderr.read()
        rc = p.wait()
    finally:
        timer.cancel()
    check(rc == 0, f"browser scenarios failed:\n{''.join(out)}\n{err}")


if __name__ == "__main__":
    tslib.main({"page_in_chromium": page_in_chromium})
