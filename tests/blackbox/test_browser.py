"""The associate page in Debian's Chromium driven by playwright-core (see
tests/browser/page_test.js): scan → card, consent off, 800×480, link down."""
import os
import shutil
import subprocess
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
    bea = tslib.customer_batch(user="u-bea", loyalty="2000000000022", name="Bea Private",
                               tier="silver", consent=False)
    s, body = w.send_batch(ada + bea)
    check(s == 200, f"batch: {s} {body}")
    w.start_agent()
    w.wait_cards(2)
    shots = os.path.join(ROOT, "docs") if os.environ.get("TS_UPDATE_SCREENSHOTS") else ""
    env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token(),
               TS_HUB_PID=str(w.hub.p.pid), TS_SHOTS=shots)
    p = subprocess.run(["node", os.path.join(BROWSER_DIR, "page_test.js")], env=env,
                       capture_output=True, text=True, timeout=180)
    print(p.stdout)
    check(p.returncode == 0, f"browser scenarios failed:\n{p.stdout}\n{p.stderr}")


if __name__ == "__main__":
    tslib.main({"page_in_chromium": page_in_chromium})
