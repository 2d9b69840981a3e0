"""The associate's view around the card, against a real agent: the idle
clear, the "previous card" history, and the page key that lets the served
page clear the card (and nothing else)."""
import http.client
import json
import re
import time

import tslib
from tslib import check, wait_for

ADA, BEA = "2000000000015", "2000000000022"


def two_customers(w, extra=""):
    w.start_hub()
    s, body = w.send_batch(tslib.customer_batch() +
                           tslib.customer_batch(user="u-bea", loyalty=BEA, name="Bea Bauer"))
    check(s == 200, f"batch: {s} {body}")
    w.start_agent(extra=extra)
    w.wait_cards(2)


def scan(w, code):
    s, body = w.api("POST", "/api/v1/scan", {"code": code})
    check(s == 200, f"scan answered {s}: {body}")
    return body


def name_of(session):
    return ((session or {}).get("card") or {}).get("name")


def idle_clear(w):
    """[page] idle_clear_s = 1: the card goes by itself, every stream is told."""
    two_customers(w, extra="[page]\nidle_clear_s = 1\n")
    sse = tslib.SSEClient(w.api_port)
    try:
        scan(w, ADA)
        sse.wait_event("customer", lambda d: name_of(d) == "Ada Lovelace")
        d = sse.wait_event("clear", timeout=10)
        check(d.get("reason") == "idle", f"clear without the idle reason: {d}")
        s, _ = w.api("GET", "/api/v1/session")
        check(s == 204, f"session still there after the idle clear: {s}")
        # The customer can still be brought back by the associate.
        s, prev = w.api("GET", "/api/v1/session?previous=1")
        check(s == 200 and name_of(prev) == "Ada Lovelace", f"previous after idle: {s} {prev}")
    finally:
        sse.close()


def idle_clear_off(w):
    """idle_clear_s = 0 means never: the card is still there after a while."""
    two_customers(w, extra="[page]\nidle_clear_s = 0\n")
    sse = tslib.SSEClient(w.api_port)
    try:
        scan(w, ADA)
        sse.wait_event("customer")
        # A later event proves time passed on the stream without a clear.
        scan(w, BEA)
        sse.wait_event("customer", lambda d: name_of(d) == "Bea Bauer")
        time.sleep(2.5)
        check(not [e for e in sse.events if e["event"] == "clear"],
              f"cleared although idle_clear_s = 0: {[e['event'] for e in sse.events]}")
        s, cur = w.api("GET", "/api/v1/session")
        check(s == 200 and name_of(cur) == "Bea Bauer", f"session lost: {s}")
    finally:
        sse.close()


def previous_cards(w):
    """?previous=N walks back through the cards shown, newest first."""
    two_customers(w)
    s, _ = w.api("GET", "/api/v1/session?previous=1")
    check(s == 204, f"a previous card before any scan: {s}")
    scan(w, ADA)
    scan(w, BEA)
    s, prev = w.api("GET", "/api/v1/session?previous=1")
    check(s == 200 and name_of(prev) == "Ada Lovelace", f"previous=1: {s} {prev}")
    s, _ = w.api("GET", "/api/v1/session?previous=2")
    check(s == 204, f"previous=2 with only two scans: {s}")
    # After a clear, the card just cleared is the first one back.
    s, _ = w.api("POST", "/api/v1/session/clear", {})
    check(s == 200, "clear")
    s, prev = w.api("GET", "/api/v1/session?previous=1")
    check(s == 200 and name_of(prev) == "Bea Bauer", f"previous=1 after clear: {s} {prev}")
    for bad in ("0", "6", "x", "-1"):
        s, _ = w.api("GET", f"/api/v1/session?previous={bad}")
        check(s == 400, f"previous={bad} answered {s}")


def page_key(w):
    """The page carries a key that clears the card, and can do nothing else;
    it is not the API token."""
    two_customers(w)
    s, html = w.api("GET", "/")
    check(s == 200 and isinstance(html, str), f"page: {s}")
    m = re.search(r'<meta name="tillside-page-key" content="([0-9a-f]{64})">', html)
    check(m, "the page carries no key")
    key = m.group(1)
    token = w.token()
    check(key != token and token not in html, "the page leaks the API token")
    check('content="120"' in html, "the default idle_clear_s (120) is not on the page")

    def post(path, auth, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", w.api_port, timeout=10)
        try:
            conn.request("POST", path, body=json.dumps(body or {}),
                         headers={"Host": f"127.0.0.1:{w.api_port}",
                                  "Authorization": f"Bearer {auth}",
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            conn.close()

    check(post("/api/v1/scan", key, {"code": ADA}) == 401, "the page key was accepted for a scan")
    check(post("/api/v1/purchases", key, {"receipt": "x"}) in (401, 404),
          "the page key was accepted for a purchase")
    scan(w, ADA)
    check(post("/api/v1/session/clear", "0" * 64) == 401, "a wrong key cleared the card")
    s, _ = w.api("GET", "/api/v1/session")
    check(s == 200, "the card went with a wrong key")
    check(post("/api/v1/session/clear", key) == 200, "the page key did not clear the card")
    s, _ = w.api("GET", "/api/v1/session")
    check(s == 204, f"the card is still there after the page cleared it: {s}")
    # The key survives a restart (derived from the token), so an open page
    # keeps working.
    w.agent.stop()
    w.start_agent()
    s, html2 = w.api("GET", "/")
    check(key in html2, "the page key changed across a restart")


if __name__ == "__main__":
    tslib.main({"idle_clear": idle_clear, "idle_clear_off": idle_clear_off,
                "previous_cards": previous_cards, "page_key": page_key})
