"""The associate page at the counter in Chromium (issue 18), against a real
agent synced from a real hub: the consent control (tests/browser/consent_test.js)
and a returned sale on the customer's card (tests/browser/returns_test.js)."""
import os
import shutil
import subprocess

import tslib
from tslib import check, wait_for

from test_browser import BROWSER_DIR


def need_browser():
    missing = [t for t in ("node", "/usr/bin/chromium") if not shutil.which(t)]
    if missing or not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        print(f"skipped: {missing or 'playwright-core'} missing (./run test installs them)")
        raise SystemExit(77)


def consent_control_in_chromium(w):
    need_browser()
    w.start_hub()
    s, body = w.send_batch(tslib.customer_batch())
    check(s == 200, f"batch: {s} {body}")
    w.start_agent()
    w.wait_cards(1)
    env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token())
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "consent_test.js")], env=env,
                       capture_output=True, text=True, timeout=240)
    print(r.stdout, end="")
    check(r.returncode == 0, f"consent scenarios failed:\n{r.stdout}\n{r.stderr}")
    check("recorded consent" in w.agent.log(), "the agent did not record the consent")


def returned_order_in_chromium(w):
    """A sale at the till, then its return: once the hub has the return,
    the card's order says so on the page (en and de)."""
    need_browser()
    import test_purchases_hub
    import test_returns
    from test_returns import ADA
    cdp = test_purchases_hub.FakeCDP()
    try:
        test_returns.start_hub(w, cdp)
        s, body = w.send_batch(tslib.customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2]))
        check(s == 200, f"batch: {s} {body}")
        w.start_agent(extra=test_returns.FAST + test_returns.RECEIPT_RULE)
        w.wait_cards(1)
        receipt = "S001-T01-000901"
        s, body = w.api("POST", "/api/v1/purchases",
                        test_returns.sale(receipt, customer={"code": ADA[1]}))
        check(s == 202, f"purchase answered {s}: {body}")
        s, body = w.api("POST", "/api/v1/returns", test_returns.refund("R-S001-0901", receipt))
        check(s == 202, f"return answered {s}: {body}")

        def returned():
            card = test_returns.scan(w, ADA[1]).get("card", {})
            return [o for o in card.get("orders", []) if o.get("order_id") == receipt and
                    o.get("status") == "returned"]
        wait_for(returned, timeout=30, what="the card's order to say returned")
        env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token(),
                   TS_CODE=ADA[1], TS_RECEIPT=receipt)
        r = subprocess.run(["node", os.path.join(BROWSER_DIR, "returns_test.js")], env=env,
                           capture_output=True, text=True, timeout=240)
        print(r.stdout, end="")
        check(r.returncode == 0, f"returned-order page failed:\n{r.stdout}\n{r.stderr}")
    finally:
        cdp.stop()


if __name__ == "__main__":
    tslib.main({"consent_control_in_chromium": consent_control_in_chromium,
                "returned_order_in_chromium": returned_order_in_chromium})
