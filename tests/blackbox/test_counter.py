"""At the counter (issue 18), black-box over a real hub and agent:

- an app QR carrying the loyalty id inside a URL resolves through a rule
  with url_param + capture to the customer's card;
- attribution comes from the transaction: a sale posted without a customer
  while an earlier customer's card is still on screen goes upstream
  anonymous; a card scanned after the POS opened the sale
  (transaction_started_at) names the buyer; a receipt with the loyalty id
  printed on it (receipt tap, loyalty_re) is attributed whoever is on screen.
Upstream is checked where a user would: at the CDP (the hub's upstream, a
Segment /v1/batch contract server, test_purchases_hub.FakeCDP).
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tslib  # noqa: E402
from tslib import check, customer_batch, free_port, wait_for  # noqa: E402
import test_escpos  # noqa: E402
import test_purchases_hub  # noqa: E402

FAST = "[outbox]\nbackoff_ms = 100\nbackoff_max_ms = 1000\n"
APP_RULE = ("[rule.app_url]\nsymbology = ]Q\nurl_param = card\n"
            "regex = ^([0-9]{10})(-[0-9])?$\ncapture = 1\nkind = loyalty\n")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(t)) + f"{int(t * 1000) % 1000:03d}Z"


def url_qr_resolves_by_capture_rule(w):
    w.start_hub()
    st, _ = w.send_batch(customer_batch(user="u-ada", loyalty="4711000123", name="Ada Lovelace"))
    check(st == 200, f"CDP batch answered {st}")
    w.start_agent(extra=APP_RULE)
    w.wait_cards(1)
    url = "https://app.example/loyalty?v=2&card=4711%30%30%30123-7#wallet"
    st, sess = w.api("POST", "/api/v1/scan", {"code": "]Q1" + url})
    check(st == 200 and sess["status"] == "found", f"app QR scan answered {st}: {sess}")
    check(sess["card"]["name"] == "Ada Lovelace" and sess["scan"]["kind"] == "loyalty",
          f"app QR resolved to {sess}")
    check("rule=app_url" in w.agent.log(), "the log does not name the rule")
    check("4711000123" not in str(sess), "the loyalty id travels in the session")
    # The same id in a URL without the parameter is not a card.
    st, sess = w.api("POST", "/api/v1/scan", {"code": "]Q1https://app.example/loyalty?id=4711000123"})
    check(st == 200 and sess["status"] == "unknown", f"URL without card= answered {sess}")


def start(w, cdp, extra=""):
    test_purchases_hub.start_hub(w, upstream_port=cdp.port)
    for user, loyalty, name in (("u-ada", "4711000123", "Ada Lovelace"),
                                ("u-bob", "2000000000015", "Bob Example")):
        st, _ = w.send_batch(customer_batch(user=user, loyalty=loyalty, name=name))
        check(st == 200, f"CDP batch answered {st}")
    w.start_agent(extra=FAST + extra)
    w.wait_cards(2)


def upstream(cdp, receipt):
    """The Order Completed the CDP got for receipt (waits for it)."""
    def got():
        with cdp.mu:
            for e in cdp.received.values():
                if e.get("event") == "Order Completed" and \
                        e["properties"].get("order_id") == receipt:
                    return e
        return None
    return wait_for(got, timeout=30, what=f"receipt {receipt} at the CDP")


def sale(receipt, **kw):
    p = {"receipt": receipt, "currency": "EUR", "total": 19.0,
         "products": [{"sku": "SKU-HAT-1", "name": "Wool Hat", "quantity": 1, "price": 19.0}]}
    p.update(kw)
    return p


def scan(w, code, name):
    st, sess = w.api("POST", "/api/v1/scan", {"code": code})
    check(st == 200 and sess.get("card", {}).get("name") == name, f"scan of {name}: {sess}")


def stale_card_sale_goes_anonymous(w):
    cdp = test_purchases_hub.FakeCDP()
    try:
        start(w, cdp)
        scan(w, "2000000000015", "Bob Example")  # Bob paid and left; his card is still shown
        # The next sale, without a customer: anonymous, not Bob's.
        st, body = w.api("POST", "/api/v1/purchases", sale("S001-T01-000801"))
        check(st == 202, f"purchase answered {st}: {body}")
        # A sale the POS opened after Bob's scan: his card is not in it either.
        st, body = w.api("POST", "/api/v1/purchases",
                         sale("S001-T01-000802", transaction_started_at=iso(time.time())))
        check(st == 202, f"purchase answered {st}: {body}")
        check(w.api("GET", "/api/v1/session")[0] == 200, "Bob's card went without his purchase")
        # The card scanned inside the open sale names the buyer, also after a
        # misscan replaced it on screen.
        opened = iso(time.time() - 1)
        scan(w, "2000000000015", "Bob Example")
        st, sess = w.api("POST", "/api/v1/scan", {"code": "9999999999"})
        check(st == 200 and sess["status"] == "unknown", f"misscan: {sess}")
        st, body = w.api("POST", "/api/v1/purchases",
                         sale("S001-T01-000803", transaction_started_at=opened))
        check(st == 202, f"purchase answered {st}: {body}")
        for receipt in ("S001-T01-000801", "S001-T01-000802"):
            e = upstream(cdp, receipt)
            check("userId" not in e and e.get("anonymousId"),
                  f"stale-card sale {receipt} went upstream as {e.get('userId')}")
        e = upstream(cdp, "S001-T01-000803")
        check(e.get("userId") == "u-bob", f"sale inside the transaction went upstream as {e}")
        st, body = w.api("POST", "/api/v1/purchases",
                         sale("S001-T01-000804", transaction_started_at="yesterday"))
        check(st == 400 and "transaction_started_at" in body["fields"], f"bad time: {st} {body}")
    finally:
        cdp.stop()


def receipt_loyalty_id_attributed(w):
    cdp = test_purchases_hub.FakeCDP()
    listen, pport = free_port(), free_port()
    printer = test_escpos.Printer(pport)
    with open(os.path.join(test_escpos.FIX, "rules.conf")) as f:
        rules = f.read()
    try:
        start(w, cdp, f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                      f"printer = 127.0.0.1:{pport}\nrules = receipt.hardware\n\n{rules}")
        scan(w, "2000000000015", "Bob Example")  # someone else's card on screen
        hardware = test_escpos.expected("hardware")
        check(hardware["customer"]["code"] == "4711000123", "fixture lost its loyalty line")
        with open(os.path.join(test_escpos.FIX, "hardware.bin"), "rb") as f:
            test_escpos.pos_print(listen, f.read())
        e = upstream(cdp, hardware["receipt"])
        check(e.get("userId") == "u-ada", f"receipt with Ada's loyalty id went upstream as {e}")
        # The POS names the customer in the body: attributed the same way.
        st, body = w.api("POST", "/api/v1/purchases",
                         sale("S001-T01-000901", customer={"code": "4711000123"}))
        check(st == 202, f"purchase answered {st}: {body}")
        e = upstream(cdp, "S001-T01-000901")
        check(e.get("userId") == "u-ada", f"POS body with Ada's code went upstream as {e}")
    finally:
        printer.close()
        cdp.stop()


TESTS = {f.__name__: f for f in (url_qr_resolves_by_capture_rule, stale_card_sale_goes_anonymous,
                                  receipt_loyalty_id_attributed)}

if __name__ == "__main__":
    tslib.main(TESTS)
