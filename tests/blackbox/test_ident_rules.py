"""Black-box tests of the identity rules ([rule.*]): the real hub and agent
over mutual TLS, scans posted to the agent's local API as POS software would.
A product EAN leaves the card on screen; a receipt barcode finds the sale and
its customer (this terminal's journal, and a sale the hub holds); an online
order QR finds the order and its customer; a GSRN (GS1 AI 8018) is a loyalty
number; a payment card number posted to the API is refused and counted."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import SSEClient, check, customer_batch, main, wait_for  # noqa: E402,F401

GSRN = "735000000012345671"  # 73500000001234567 + GS1 mod-10 check digit
RULES = """
[rule.instore]
symbology = ]E0
prefix = 2
kind = loyalty

[rule.products]
symbology = EAN-13
kind = product

[rule.order_qr]
symbology = QR Code
prefix = ORDER:
strip_prefix = ORDER:
kind = order

[rule.receipt]
regex = ^S[0-9]{3}-T[0-9]{2}-[0-9]{6}$
kind = receipt
"""


def setup(w):
    w.start_hub()
    ev = customer_batch()  # Ada, loyalty 2000000000015
    ev += customer_batch(user="u-bob", loyalty=GSRN, name="Bob GSRN", cart=None)
    ev.append({"type": "track", "event": "Order Completed", "userId": "u-ada",
               "messageId": "u-ada-o1",
               "properties": {"order_id": "W-1001", "total": 59.9, "currency": "EUR",
                              "products": [{"product_id": "SKU-SOCK-1", "name": "Socks"}]}})
    st, _ = w.send_batch(ev)
    check(st == 200, f"CDP batch answered {st}")
    w.start_agent(extra=RULES)
    w.wait_cards(2)


def scan(w, code, aim=None):
    body = {"code": code}
    if aim:
        body["aim"] = aim
    st, sess = w.api("POST", "/api/v1/scan", body)
    check(st == 200, f"scan answered {st}: {sess}")
    return sess


def product_keeps_card(w):
    setup(w)
    sess = scan(w, "2000000000015", "]E0")
    check(sess["status"] == "found" and sess["card"]["name"] == "Ada Lovelace",
          f"loyalty scan: {sess}")
    check(sess["scan"]["kind"] == "loyalty", f"kind: {sess}")
    sse = SSEClient(w.api_port)
    try:
        # A new client gets the current session first.
        sse.wait_event("customer", lambda d: d["scan"]["kind"] == "loyalty")
        ans = scan(w, "4006381333931", "]E0")
        check(ans["status"] == "ignored" and ans["scan"]["kind"] == "product", f"product: {ans}")
        check("card" not in ans, f"a product answer carries no card: {ans}")
        st, cur = w.api("GET", "/api/v1/session")
        check(st == 200 and cur["card"]["name"] == "Ada Lovelace"
              and cur["scan"]["kind"] == "loyalty", f"session after a product scan: {cur}")
        # The stream tells of the scan, but of no new customer.
        sse.wait_event("scan", lambda d: d["kind"] == "product")
        scan(w, "2000000000015", "]E0")
        sse.wait_event("scan", lambda d: d["kind"] == "loyalty")
        sse.wait_event("customer", lambda d: d["scan"]["kind"] == "loyalty"
                       and d is not None, timeout=10)
        with sse.cv:
            kinds = [e["event"] for e in sse.events]
        # initial customer, scan (product), scan + customer (loyalty)
        check(kinds.count("customer") <= 2 and kinds[:2] == ["customer", "scan"],
              f"events: {kinds}")
    finally:
        sse.close()


def receipt_finds_sale(w):
    setup(w)
    purchase = {"receipt": "S001-T01-000777", "currency": "EUR", "total": 129.0, "tax": 20.6,
                "products": [{"sku": "SKU-JKT-7", "name": "Rain Jacket", "quantity": 1,
                              "price": 129.0, "product_id": "SKU-JKT-7"}],
                "customer": {"code": "2000000000015"}}
    st, ans = w.api("POST", "/api/v1/purchases", purchase)
    check(st == 202, f"purchase answered {st}: {ans}")
    w.api("POST", "/api/v1/session/clear")
    # Code 128 printed on the receipt, as a scanner sends it.
    sess = scan(w, "S001-T01-000777", "]C0")
    check(sess["scan"]["kind"] == "receipt", f"kind: {sess}")
    check(sess["status"] == "found", f"receipt scan: {sess}")
    check(sess["purchase"]["receipt"] == "S001-T01-000777"
          and sess["purchase"]["total"] == 129.0
          and sess["purchase"]["products"][0]["sku"] == "SKU-JKT-7", f"purchase: {sess}")
    # Once uploaded, the hub names the customer too (the card).
    wait_for(lambda: w.status().get("outbox_depth") == 0, what="the purchase to upload")
    sess = wait_for(lambda: (lambda s: s.get("card") and s)(scan(w, "S001-T01-000777", "]C0")),
                    what="the receipt's card")
    check(sess["card"]["name"] == "Ada Lovelace", f"receipt card: {sess}")
    st, cur = w.api("GET", "/api/v1/session")
    check(cur["purchase"]["receipt"] == "S001-T01-000777", f"session: {cur}")

    # A sale this terminal never recorded: only the hub knows it.
    cid = w.hub_request("GET", "/v1/lookup?order=W-1001", cert="t01")[1]["cid"]
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    ev = {"type": "track", "event": "Order Completed", "messageId": "m-other-till",
          "anonymousId": "S001:T02", "originalTimestamp": now, "sentAt": now,
          "properties": {"order_id": "S001-T02-000042", "total": 19.0, "revenue": 19.0,
                         "tax": 0, "discount": 0, "currency": "EUR",
                         "products": [{"product_id": "SKU-HAT-1", "sku": "SKU-HAT-1",
                                       "name": "Wool Hat", "price": 19.0, "quantity": 1}]},
          "context": {"tillside": {"store": "S001", "terminal": "T02",
                                   "receipt": "S001-T02-000042", "source": "api", "cid": cid}}}
    st, ans = w.hub_request("POST", "/v1/purchases", {"batch": [ev], "sentAt": now}, cert="t01")
    check(st == 200 and ans["accepted"] == ["m-other-till"], f"hub purchase: {st} {ans}")
    sess = scan(w, "S001-T02-000042")
    check(sess["status"] == "found" and sess["purchase"]["total"] == 19.0
          and sess["card"]["name"] == "Ada Lovelace", f"other till's receipt: {sess}")
    sess = scan(w, "S001-T09-999999")
    check(sess["status"] == "unknown" and sess["scan"]["kind"] == "receipt",
          f"unknown receipt: {sess}")


def order_qr_finds_order(w):
    setup(w)
    sess = scan(w, "ORDER:W-1001", "]Q1")
    check(sess["scan"]["kind"] == "order", f"kind: {sess}")
    check(sess["status"] == "found" and sess["order"]["order_id"] == "W-1001"
          and sess["order"]["status"] == "placed", f"order: {sess}")
    check(sess["card"]["name"] == "Ada Lovelace", f"order's customer: {sess}")
    sess = scan(w, "ORDER:W-9999", "]Q1")
    check(sess["status"] == "unknown" and "card" not in sess, f"unknown order: {sess}")


def gsrn_loyalty(w):
    setup(w)
    # GS1-128 with FNC1 first (]C1): AI 8018 carries the GSRN.
    sess = scan(w, "8018" + GSRN, "]C1")
    check(sess["scan"]["kind"] == "loyalty" and sess["status"] == "found"
          and sess["card"]["name"] == "Bob GSRN", f"GSRN scan: {sess}")
    check(sess["scan"]["code_masked"].endswith(GSRN[-4:]) and GSRN not in str(sess["scan"]),
          f"masked: {sess}")


def api_guard(w):
    setup(w)
    scan(w, "2000000000015", "]E0")
    for code in ("4111111111111111", ";4111111111111111=30121010000000000000?"):
        st, ans = w.api("POST", "/api/v1/scan", {"code": code})
        check(st == 422 and "payment card" in ans["error"], f"card number answered {st}: {ans}")
        check("4111" not in str(ans), f"the answer echoes the number: {ans}")
    st, cur = w.api("GET", "/api/v1/session")
    check(cur["card"]["name"] == "Ada Lovelace", f"session changed: {cur}")
    st, metrics = w.api("GET", "/metrics")
    check("tillside_guard_drops_total 2" in metrics, f"metrics: {metrics}")
    with open(os.path.join(w.dir, "agent.log"), errors="replace") as f:
        log = f.read()
    check("411111" not in log, "the card number reached the log")


if __name__ == "__main__":
    main({"product_keeps_card": product_keeps_card, "receipt_finds_sale": receipt_finds_sale,
          "order_qr_finds_order": order_qr_finds_order, "gsrn_loyalty": gsrn_loyalty,
          "api_guard": api_guard})
