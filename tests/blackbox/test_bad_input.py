"""Bad input gets a clear error and changes nothing: malformed batches and
wrong write keys at the hub, unknown codes at the till, garbled feed pages."""
import http.server
import json
import ssl
import threading

import tslib
from tslib import check, wait_for


def batch_rejected(w):
    w.start_hub()
    before = w.hub_stats()
    cases = [
        ("malformed JSON", dict(raw='{"batch": [ {"type": "identify", ')),
        ("no batch array", dict(raw='{"events": []}')),
        ("event without type", dict(events=[{"userId": "u1", "traits": {"name": "X"}}])),
        ("valid event then invalid one", dict(events=tslib.customer_batch(user="u-half") +
                                              [{"type": "track", "event": "Product Viewed"}])),
        ("wrong write key", dict(events=tslib.customer_batch(user="u-key"), write_key="nope")),
    ]
    for what, kw in cases:
        s, body = w.send_batch(kw.get("events"), write_key=kw.get("write_key", tslib.WRITE_KEY),
                               raw=kw.get("raw"))
        check(400 <= s < 500, f"{what}: expected 4xx, got {s}")
        check(isinstance(body, dict) and body.get("error"), f"{what}: no error message: {body}")
        print(f"{what}: {s} {body['error']}")
    after = w.hub_stats()
    check(after["customers"] == before["customers"] == 0,
          f"something was stored: {before} -> {after}")
    s, body = w.send_batch(tslib.customer_batch())
    check(s == 200, "a good batch after bad ones must still work")
    check(w.hub_stats()["customers"] == 1, "good batch not stored")


def unknown_code(w):
    w.start_hub()
    w.send_batch(tslib.customer_batch())
    w.start_agent()
    w.wait_cards(1)
    s, sess = w.api("POST", "/api/v1/scan", {"code": "9999999999994"})
    check(s == 200 and sess["status"] == "unknown", f"unknown scan: {s} {sess}")
    check(not sess.get("card"), "unknown scan must not show a card")
    s, sess = w.api("GET", "/api/v1/session")
    check(s == 200 and sess["status"] == "unknown", "session shows the unknown customer")
    for body in ('{"code": ', '{"nocode": 1}', '{"code": ""}'):
        s, r = w.api("POST", "/api/v1/scan", body)
        check(s == 400 and r.get("error"), f"bad scan body {body!r}: {s} {r}")
    s, r = w.api("POST", "/api/v1/scan", {"code": "2000000000015"}, auth=False)
    check(s == 401, f"scan without token must be refused: {s}")
    s, r = w.api("GET", "/api/v1/status", host="evil.example")
    check(s in (403, 421), f"foreign Host header must be refused: {s}")


class FakeHub(http.server.ThreadingHTTPServer):
    """A TLS server with the real hub's certificate that answers every feed
    request with a garbled page."""

    def __init__(self, w, pages):
        self.pages = pages
        self.seen = []
        super().__init__(("127.0.0.1", w.hub_port), FakeHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{w.certs}/hub.pem", f"{w.certs}/hub.key")
        ctx.load_verify_locations(f"{w.certs}/ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.socket = ctx.wrap_socket(self.socket, server_side=True)


class FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.seen.append(self.path)
        body = srv.pages[(len(srv.seen) - 1) % len(srv.pages)]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def garbled_feed_page(w):
    w.start_hub()
    batch = []
    for i in range(3):
        batch += tslib.customer_batch(user=f"u{i}", loyalty=f"20000000{i:05d}",
                                      name=f"Customer {i}")
    w.send_batch(batch)
    w.start_agent()
    w.wait_cards(3)
    w.hub.stop()

    garbage = [
        b'{"kv":1,"items":[{"op":"upsert","cid":"x","keys":["zz"],"card":{}}],"cursor":"c","mor',
        json.dumps({"kv": 1, "items": [{"op": "explode", "cid": "abc"}], "cursor": "c9",
                    "more": False}).encode(),
        json.dumps({"kv": 1, "items": [{"op": "erase", "cid": "abc"}] * 2 +
                    [{"op": "upsert", "cid": "d", "keys": ["not-hex"], "card": {"name": "Evil"}}],
                    "cursor": "c10", "more": False}).encode(),
        b"\x00\xff\xfe not json at all",
    ]
    fake = FakeHub(w, garbage)
    t = threading.Thread(target=fake.serve_forever, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(fake.seen) >= 4, timeout=30, what="agent to fetch garbled pages")
        wait_for(lambda: "feed page rejected" in w.agent.log(), what="a logged rejection")
        st = w.status()
        check(st["cards"] == 3, f"cache changed: {st['cards']} cards")
        sinces = {p.split("since=")[1].split("&")[0] for p in fake.seen if "since=" in p}
        check(len(sinces) == 1 and "" not in sinces,
              f"cursor moved or was dropped after a rejected page: {fake.seen}")
        s, sess = w.api("POST", "/api/v1/scan", {"code": "2000000000001"})
        check(sess["status"] == "found" and sess["card"]["name"] == "Customer 1",
              f"lookup after garbled pages: {sess}")
        check("Evil" not in json.dumps(w.status()), "garbage leaked into status")
    finally:
        fake.shutdown()
        fake.server_close()


if __name__ == "__main__":
    tslib.main({"batch_rejected": batch_rejected, "unknown_code": unknown_code,
                "garbled_feed_page": garbled_feed_page})
