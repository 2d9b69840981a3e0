"""Black-box tests of the payment card guard on purchases (PRODUCT.md §6: the
agent never keeps a card number): the real agent and hub, a fake CDP
upstream. Card numbers posted in a purchase body are refused where they are
identifiers and masked in free text; the hub's intake does the same as a
second line; scans that used to slip past (GS1 strings, separators, long
runs) are refused. Afterwards no card number is in any file of the agent's
state directory or the hub's database (raw bytes, WAL included), in any log,
or in what the CDP received."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import card_number_traces, check, main, metric, wait_for  # noqa: E402
from test_purchases_hub import FakeCDP, post, purchase as hub_event, start_hub  # noqa: E402

FAST = "[outbox]\nbackoff_ms = 100\nbackoff_max_ms = 1000\n"
# Public test card numbers (issuers' test ranges).
TRACK2 = ";5200828282828210=25121010000000000000?"
PANS = ["5200828282828210", "6011111111111117", "378282246310005", "4000056655665556",
        "5105105105105100", "3566002020360505", "6011000990139424", "4111111111111111",
        "4012888888881881", "5555555555554444"]


def body(receipt, **kw):
    b = {"receipt": receipt, "currency": "EUR", "total": 20.0,
         "products": [{"sku": "SKU-HAT-1", "name": "Hat", "quantity": 1, "price": 20.0}]}
    b.update(kw)
    return b


def purchases_never_keep_card_numbers(w):
    cdp = FakeCDP()
    try:
        start_hub(w, cdp.port)
        w.start_agent(extra=FAST)

        # The finding: track 2 as the barcode, a PAN as the sku, another in
        # the name. Identifiers are refused (masking would change what they
        # name), all named at once; nothing is recorded.
        bad = body("S001-T01-000901", barcode=TRACK2,
                   products=[{"sku": "6011111111111117", "name": "Amex 378282246310005",
                              "quantity": 1, "price": 20.0}])
        st, ans = w.api("POST", "/api/v1/purchases", bad)
        check(st == 400, f"card numbers in identifiers answered {st}: {ans}")
        check("barcode" in ans["fields"] and "products[0].sku" in ans["fields"],
              f"400 does not name both fields: {ans}")
        check("payment card" in ans["error"], f"the error does not say why: {ans}")
        st, ans = w.api("POST", "/api/v1/purchases",
                        body("S001-T01-000902", customer={"code": "4111 1111 1111 1111"}))
        check(st == 400 and ans["fields"] == ["customer.code"], f"card as customer: {st} {ans}")
        st, ans = w.api("POST", "/api/v1/purchases",
                        body("4012888888881881"))
        check(st == 400 and ans["fields"] == ["receipt"], f"card as receipt: {st} {ans}")
        check(w.status()["outbox_depth"] == 0, "a refused purchase was recorded")

        # Free text: masked to the last four, the purchase kept.
        ok = body("S001-T01-000903",
                  products=[{"sku": "SKU-GIFT", "name": "Geschenkkarte 4000056655665556",
                             "quantity": 1, "price": 20.0},
                            {"sku": "SKU-HAT-1", "name": "Hat (card 5105.1051.0510.5100)",
                             "quantity": 1, "price": 0.0}],
                  note="paid with 3566  0020  2036  0505")
        st, ans = w.api("POST", "/api/v1/purchases", ok)
        check(st == 202, f"a purchase with a masked name answered {st}: {ans}")
        wait_for(lambda: len(cdp.received) == 1, timeout=30, what="the purchase at the CDP")
        ev = next(iter(cdp.received.values()))
        names = [p["name"] for p in ev["properties"]["products"]]
        check(names == ["Geschenkkarte ************5556", "Hat (card ****.****.****.5100)"],
              f"names as forwarded: {names}")

        # The hub's second line: a terminal without the guard.
        e1 = hub_event("m-g1", "S001-T01-000904", "SKU-HAT-1")
        e1["properties"]["products"][0]["name"] = "Gift 6011 0009 9013 9424"
        e2 = hub_event("m-g2", "S001-T01-000905", "5555555555554444")
        e3 = hub_event("m-g3", "S001-T01-000906", "SKU-HAT-1")
        e3["context"]["tillside"]["barcode"] = ";5555555555554444=2512101?"
        st, ans = post(w, [e1, e2, e3])
        check(st == 200 and ans["accepted"] == ["m-g1"], f"hub answered {st}: {ans}")
        reasons = {r["messageId"]: r["error"] for r in ans["rejected"]}
        check(set(reasons) == {"m-g2", "m-g3"} and
              all("payment card" in r for r in reasons.values()), f"hub rejections: {ans}")
        wait_for(lambda: len(cdp.received) == 2, timeout=30, what="m-g1 at the CDP")
        check(cdp.received["m-g1"]["properties"]["products"][0]["name"] ==
              "Gift **** **** **** 9424", f"hub forwarded {cdp.received['m-g1']}")

        # Scans that slipped past the guard before.
        for aim, code in (("]C1", "90" + "5200828282828210"), ("]d2", "21" + "6011111111111117"),
                          (None, "5105.1051.0510.5100"), (None, "3566  0020  2036  0505"),
                          (None, "1234" + "6011000990139424"), (None, TRACK2)):
            scan = {"code": code} if aim is None else {"code": code, "aim": aim}
            st, ans = w.api("POST", "/api/v1/scan", scan)
            check(st == 422, f"scan {aim} {code[-4:]} answered {st}: {ans}")

        st, text = w.api("GET", "/metrics")
        drops = metric(text, "tillside_guard_drops_total")
        check(drops is not None and drops >= 10, f"agent guard drops {drops}")
        st, text = w.hub_request("GET", "/metrics")
        hub_drops = metric(text, "tillside_hub_guard_drops_total")
        check(hub_drops is not None and hub_drops >= 3, f"hub guard drops {hub_drops}")
        check("payment card number masked in products[0].name" in w.agent.log() and
              "…5556" in w.agent.log(), "the masked number was not logged")

        received = [json.dumps(e) for e in cdp.received.values()]
        traces = card_number_traces(w, PANS, received)
        check(not traces, f"card numbers found while running: {traces}")
        w.agent.stop()
        w.hub.stop()
        traces = card_number_traces(w, PANS, received)
        check(not traces, f"card numbers found after stopping: {traces}")
    finally:
        cdp.stop()


if __name__ == "__main__":
    main({"purchases_never_keep_card_numbers": purchases_never_keep_card_numbers})
