"""Black-box test of the match rate (issue 18): a real agent counts every
purchase it records, identified or not, per local day, keeps the counts across
a restart and reports them with its health on feed polls; the real hub adds how
many identified purchases reached the CDP (a local Segment-compatible server,
held down for part of the day) and shows exact counts per store and day in
`tillside-hub stats`, `tillside-hub fleet`, /v1/fleet, the /fleet page (Chromium)
and /metrics."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import HUB_BIN, check, customer_batch, main, run, wait_for  # noqa: E402
from test_purchases_hub import FakeCDP, start_hub  # noqa: E402

LOYALTY = "2000000000015"
AGENT_EXTRA = "[hub]\nlong_poll_s = 0\n"  # a poll (and its report) every 300 ms


def sale(w, n, identified):
    body = {"receipt": f"R-{n}", "currency": "EUR", "total": 10.0,
            "products": [{"sku": "SKU-1", "quantity": 1, "price": 10.0}]}
    if identified:
        body["customer"] = {"code": LOYALTY}
    st, r = w.api("POST", "/api/v1/purchases", body)
    check(st == 202, f"purchase {n}: {st} {r}")


def match_row(w):
    rows = w.hub_stats().get("match_rate", [])
    return rows[0] if rows else None


def ordered(cdp):
    return [e for e in cdp.received.values() if e.get("event") == "Order Completed"]


def seven_of_ten_five_of_seven(w):
    cdp = FakeCDP()
    try:
        start_hub(w, cdp.port)
        w.send_batch(customer_batch())
        w.start_agent(extra=AGENT_EXTRA)
        w.wait_cards(1)
        for n in range(5):
            sale(w, n, True)
        wait_for(lambda: len(ordered(cdp)) == 5 or None, what="5 purchases upstream")
        cdp.mode = "down"  # the sink held down: the rest stays pending
        for n in range(5, 7):
            sale(w, n, True)
        for n in range(7, 10):
            sale(w, n, False)
        today = time.strftime("%Y-%m-%d", time.localtime())
        want = {"store": "S001", "day": today, "terminals": 1, "transactions": 10,
                "identified": 7, "delivered": 5, "identified_share": "7/10",
                "delivered_share": "5/7"}
        row = wait_for(lambda: (lambda r: r if r and r["transactions"] == 10 and
                                r["delivered"] == 5 else None)(match_row(w)),
                       what="the hub to hold 10 transactions")
        check(row == want, f"stats match_rate: {row}")
        st, text = w.hub_request("GET", "/metrics")
        for name, v in (("transactions", 10), ("identified", 7), ("delivered", 5)):
            line = f'tillside_hub_match_{name}{{store="S001",day="{today}"}} {v}\n'
            check(line in text, f"/metrics lacks {line!r}")
        st, fl = w.hub_request("GET", "/v1/fleet", cert="cdp")
        check(st == 200 and fl["match_rate"] == [want], f"/v1/fleet: {st} {fl.get('match_rate')}")
        out = run([HUB_BIN, "fleet", "-c", os.path.join(w.dir, "hub.conf")]).stdout
        check(any(ln.split() == ["S001", today, "1", "7", "7/10", "5", "5/7"]
                  for ln in out.splitlines()), f"fleet table:\n{out}")
        # The fleet page in Chromium shows the same row.
        browser = os.path.join(os.environ.get("TS_SRC_DIR", os.path.join(
            os.path.dirname(__file__), "../..")), "tests", "browser")
        env = dict(os.environ, TS_HUB=f"https://localhost:{w.hub_port}",
                   TS_CERT=f"{w.certs}/cdp.pem", TS_KEY=f"{w.certs}/cdp.key",
                   TS_WANT=json.dumps(["S001", today, "1", "10", "7/10", "5/7"]))
        p = subprocess.run(["node", os.path.join(browser, "matchrate_test.js")], env=env,
                           capture_output=True, text=True, timeout=120)
        print(p.stdout, end="")
        check(p.returncode == 0, f"fleet page in Chromium:\n{p.stdout}\n{p.stderr}")
        # The counts survive a restart of the agent; the CDP back up
        # delivers the two held purchases.
        w.agent.stop()
        w.start_agent(extra=AGENT_EXTRA)
        sale(w, 10, False)
        cdp.mode = "up"
        row = wait_for(lambda: (lambda r: r if r and r["transactions"] == 11 and
                                r["delivered"] == 7 else None)(match_row(w)), timeout=40,
                       what="11 transactions, 7 delivered")
        check(row["identified_share"] == "7/11" and row["delivered_share"] == "7/7", f"{row}")
    finally:
        cdp.stop()


if __name__ == "__main__":
    main({"seven_of_ten_five_of_seven": seven_of_ten_five_of_seven})
