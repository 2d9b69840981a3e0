"""Black-box tests of in-store purchases at the hub: the real tillside-hub over
mutual TLS, a terminal certificate posting POST /v1/purchases, the card in the
store's feed, receipt and order lookups, and forwarding to a CDP played by a
local Python HTTP server (outage with 503 + Retry-After, an event the CDP
refuses, a hub killed with forwards pending)."""
import base64
import http.server
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import (HUB_BIN, Proc, World, check, customer_batch, free_port, main,  # noqa: E402
                   wait_for)

UPSTREAM_KEY = "cdp-upstream-key"


class FakeCDP:
    """A Segment-compatible /v1/batch endpoint. mode: "up", "down" (503 with
    Retry-After: 1). A batch holding an order_id with BAD in it is refused
    with 400 as a whole, as Segment does for an invalid event."""

    def __init__(self, port=None):
        self.mode = "up"
        self.requests = 0
        self.received = {}  # messageId -> event
        self.twice = []     # messageIds delivered again after a 200
        self.bad_auth = 0
        self.mu = threading.Lock()
        cdp = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                want = "Basic " + base64.b64encode(f"{UPSTREAM_KEY}:".encode()).decode()
                with cdp.mu:
                    cdp.requests += 1
                    if self.headers.get("Authorization") != want:
                        cdp.bad_auth += 1
                    if self.path != "/v1/batch":
                        return self._answer(404, {"error": "not found"})
                    if cdp.mode == "down":
                        return self._answer(503, {"error": "maintenance"}, {"Retry-After": "1"})
                    batch = json.loads(body)["batch"]
                    if any("BAD" in e.get("properties", {}).get("order_id", "") for e in batch):
                        return self._answer(400, {"error": "invalid event"})
                    for e in batch:
                        if e["messageId"] in cdp.received:
                            cdp.twice.append(e["messageId"])
                        cdp.received[e["messageId"]] = e
                    return self._answer(200, {"success": True})

            def _answer(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.port = port or free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def start_hub(w, upstream_port=None):
    """The hub with [upstream] pointing at the fake CDP (the same db across
    restarts)."""
    extra = ""
    if upstream_port:
        extra = (f"\n[upstream]\nurl = http://127.0.0.1:{upstream_port}/v1/batch\n"
                 f"write_key = {UPSTREAM_KEY}\nmax_backoff_s = 2\n")
    conf = w.hub_conf(extra=extra)
    p = Proc("hub", [HUB_BIN, "run", "-c", conf], os.path.join(w.dir, "hub.log"))
    w.procs.append(p)
    wait_for(lambda: w._port_open(w.hub_port) or (not p.alive() and w._died(p)),
             what="hub to listen")
    w.hub = p
    return p


def purchase(mid, receipt, sku, cid=None, store="S001", total=129.0):
    tl = {"store": store, "terminal": "T01", "receipt": receipt, "source": "api"}
    if cid:
        tl["cid"] = cid
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"type": "track", "event": "Order Completed", "messageId": mid,
            "anonymousId": f"{store}:T01", "originalTimestamp": now, "sentAt": now,
            "properties": {"order_id": receipt, "total": total, "revenue": total, "tax": 0,
                           "discount": 0, "currency": "EUR",
                           "products": [{"product_id": sku, "sku": sku, "name": "IN STORE ITEM",
                                         "price": total, "quantity": 1}]},
            "context": {"tillside": tl}}


def post(w, events, cert="t01"):
    return w.hub_request("POST", "/v1/purchases", {"batch": events, "sentAt": "x"}, cert=cert)


def feed_card(w, cid):
    st, page = w.hub_request("GET", "/v1/feed?limit=1000", cert="t01")
    check(st == 200, f"feed answered {st}: {page}")
    cards = [i["card"] for i in page["items"] if i["cid"] == cid and i["op"] == "upsert"]
    check(cards, f"customer {cid} not in the S001 feed: {page}")
    return cards[0]


def cart_of(card):
    return [i["product_id"] for i in card.get("interests", []) if i["signal"] == "cart"]


def online_customer(w):
    """Ada of S001, the rain jacket in her online cart and one online order;
    returns her cid."""
    ev = customer_batch()
    ev.append({"type": "track", "event": "Order Completed", "userId": "u-ada",
               "messageId": "u-ada-o1",
               "properties": {"order_id": "W-1001", "total": 59.9, "currency": "EUR",
                              "products": [{"product_id": "SKU-SOCK-1", "name": "Socks"}]}})
    st, _ = w.send_batch(ev)
    check(st == 200, f"CDP batch answered {st}")
    st, ans = w.hub_request("GET", "/v1/lookup?order=W-1001", cert="t01")
    check(st == 200, f"order lookup answered {st}: {ans}")
    return ans["cid"]


def purchase_reaches_feed(w):
    start_hub(w)
    cid = online_customer(w)
    check("SKU-JKT-7" in cart_of(feed_card(w, cid)), "the jacket should start in the cart")

    ev = purchase("m-ada-1", "S001-T01-000123", "SKU-JKT-7", cid=cid)
    st, ans = post(w, [ev])
    check(st == 200 and ans["accepted"] == ["m-ada-1"], f"purchase answered {st}: {ans}")
    # The terminal retries (it never saw our answer): a duplicate, stored once.
    st, ans = post(w, [ev])
    check(st == 200 and ans["duplicates"] == ["m-ada-1"] and not ans["accepted"],
          f"retry answered {st}: {ans}")
    # A terminal cannot record another store's sale.
    st, ans = post(w, [purchase("m-s2", "S002-T01-000001", "SKU-X", store="S002")])
    check(st == 200 and not ans["accepted"] and ans["rejected"][0]["messageId"] == "m-s2",
          f"other store's sale answered {st}: {ans}")
    # Not a batch at all.
    st, ans = w.hub_request("POST", "/v1/purchases", "[", cert="t01")
    check(st == 400, f"garbage answered {st}: {ans}")

    card = feed_card(w, cid)
    check("SKU-JKT-7" not in cart_of(card), f"bought jacket still in the cart: {card}")
    orders = {o["order_id"]: o for o in card["orders"]}
    check("S001-T01-000123" in orders, f"in-store order missing from the card: {card}")
    o = orders["S001-T01-000123"]
    check(o["status"] == "in store" and o["store"] == "S001" and o["total"] == 129.0,
          f"in-store order: {o}")
    check(orders.get("W-1001", {}).get("status") == "placed", f"online order: {card}")

    # Scanning the printed receipt later, in any store, finds sale and card.
    st, ans = w.hub_request("GET", "/v1/lookup?receipt=S001-T01-000123", cert="t01")
    check(st == 200 and ans["cid"] == cid and ans["purchase"]["receipt"] == "S001-T01-000123",
          f"receipt lookup answered {st}: {ans}")
    check(ans["purchase"]["products"][0]["sku"] == "SKU-JKT-7", f"purchase lines: {ans}")
    check(ans["card"]["name"] == "Ada Lovelace", f"receipt lookup card: {ans}")
    st, ans = w.hub_request("GET", "/v1/lookup?order=W-1001", cert="t01")
    check(st == 200 and ans["order"]["status"] == "placed" and ans["cid"] == cid,
          f"order lookup answered {st}: {ans}")
    # The CDP ships the online order: the order lookup says so.
    st, _ = w.send_batch([{"type": "track", "event": "Order Shipped", "userId": "u-ada",
                           "messageId": "u-ada-o1-shipped",
                           "properties": {"order_id": "W-1001"}}])
    check(st == 200, f"Order Shipped answered {st}")
    st, ans = w.hub_request("GET", "/v1/lookup?order=W-1001", cert="t01")
    check(st == 200 and ans["order"]["status"] == "shipped", f"order lookup answered {st}: {ans}")
    st, _ = w.hub_request("GET", "/v1/lookup?receipt=S001-T01-999999", cert="t01")
    check(st == 404, f"unknown receipt answered {st}")

    stats = w.hub_stats()
    check(stats["purchases"]["stored"] == 1, f"stats: {stats}")


def forwarding_through_outage(w):
    cdp = FakeCDP()
    try:
        cdp.mode = "down"
        start_hub(w, cdp.port)
        cid = online_customer(w)
        evs = [purchase("m-f1", "S001-T01-000201", "SKU-JKT-7", cid=cid),
               purchase("m-f2", "S001-T01-000202", "SKU-HAT-1"),
               purchase("m-f3", "S001-T01-BAD203", "SKU-HAT-1")]
        st, ans = post(w, evs)
        check(st == 200 and len(ans["accepted"]) == 3, f"purchases answered {st}: {ans}")
        wait_for(lambda: cdp.requests >= 1, what="a first forwarding attempt")
        # Down for three seconds: retries wait for Retry-After (1 s) and the
        # backoff; a busy loop would send hundreds of requests.
        time.sleep(3)
        check(w.hub_stats()["purchases"]["pending"] == 3, "all three should still be pending")
        with cdp.mu:
            during = cdp.requests
            cdp.mode = "up"
        check(during <= 6, f"{during} requests in 3 s of outage: not backing off")
        wait_for(lambda: w.hub_stats()["purchases"]["pending"] == 0, timeout=30,
                 what="the outbox to drain")
        stats = w.hub_stats()["purchases"]
        check(stats == {"stored": 3, "forwarded": 2, "pending": 0, "dead": 1}, f"stats: {stats}")
        with cdp.mu:
            check(sorted(cdp.received) == ["m-f1", "m-f2"], f"CDP got {sorted(cdp.received)}")
            check(not cdp.twice, f"delivered twice: {cdp.twice}")
            check(cdp.received["m-f1"].get("userId") == "u-ada",
                  f"known customer's userId missing: {cdp.received['m-f1']}")
            check("userId" not in cdp.received["m-f2"], "anonymous sale got a userId")
            check(cdp.bad_auth == 0, "requests without the upstream write key")
        st, text = w.hub_request("GET", "/metrics")
        check(st == 200 and "tillside_hub_upstream_dead 1\n" in text and
              "tillside_hub_upstream_forwarded_total 2\n" in text, f"metrics: {text}")
        check("dead-lettered: HTTP 400" in w.hub.log(), "dead letter not logged with reason")
    finally:
        cdp.stop()


def restart_with_pending(w):
    port = free_port()  # nobody listens yet: the CDP is unreachable
    start_hub(w, port)
    evs = [purchase(f"m-r{i}", f"S001-T01-{300 + i:06d}", "SKU-HAT-1") for i in range(20)]
    st, ans = post(w, evs)
    check(st == 200 and len(ans["accepted"]) == 20, f"purchases answered {st}: {ans}")
    wait_for(lambda: "not forwarded" in w.hub.log(), what="a failed forwarding attempt")
    # Killed outright: only what the database holds survives.
    w.hub.stop(sig=signal.SIGKILL)
    check(w.hub_stats()["purchases"]["pending"] == 20, "pending forwards lost with the hub")
    cdp = FakeCDP(port)  # the CDP comes up where the hub was told it is
    try:
        start_hub(w, port)
        wait_for(lambda: len(cdp.received) == 20, timeout=30, what="all 20 to be forwarded")
        wait_for(lambda: w.hub_stats()["purchases"]["pending"] == 0, what="the outbox to drain")
        stats = w.hub_stats()["purchases"]
        check(stats["forwarded"] == 20 and stats["dead"] == 0, f"stats: {stats}")
        with cdp.mu:
            check(not cdp.twice, f"delivered twice: {cdp.twice}")
    finally:
        cdp.stop()


if __name__ == "__main__":
    main({"purchase_reaches_feed": purchase_reaches_feed,
          "forwarding_through_outage": forwarding_through_outage,
          "restart_with_pending": restart_with_pending})
