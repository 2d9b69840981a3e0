"""Black-box tests of offers (issue 18): the CDP's `offers` trait on the card,
redeemed once at a till through POST /api/v1/offers/redeem (the agent asks the
real hub over mutual TLS), gone from a terminal in another store after its
next feed page, refused the second time with where and when it was used, and
refused offline; the Coupon Applied event reaches the CDP (a local
Segment-compatible server) once."""
import datetime
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import (AGENT_BIN, LOOKUP_MS, TENANT_KEY, Proc, check, customer_batch, free_port, hub_metric, main,  # noqa: E402
                   wait_for)
from test_purchases_hub import FakeCDP, start_hub  # noqa: E402

LOYALTY = "2000000000015"


def iso(days):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def offers_batch(offers, mid="u-ada-offers"):
    return [{"type": "identify", "userId": "u-ada", "messageId": mid,
             "timestamp": iso(0), "traits": {"offers": offers}}]


class OtherTill:
    """A second real agent: terminal T02 of store S002, its own state and API."""

    def __init__(self, w):
        self.w = w
        c = w.certs
        w.pki("issue", "--dir", c, "--cn", "T02", "--ou", "S002", "--o", "acme", "--out",
              f"{c}/t02")
        self.port = free_port()
        self.dir = os.path.join(w.dir, "agent2")
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(w.dir, "tillside2.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[agent]
store = S002
terminal = T02
state_dir = {self.dir}
log_level = info

[hub]
url = https://localhost:{w.hub_port}
ca = {c}/ca.pem
cert = {c}/t02.pem
key = {c}/t02.key
poll_interval_ms = 300
timeout_ms = 3000
lookup_timeout_ms = {LOOKUP_MS}

[identity]
tenant_key = {TENANT_KEY}
key_version = 1

[api]
listen = 127.0.0.1:{self.port}
""")
        p = Proc("agent2", [AGENT_BIN, "run", "-c", self.conf], os.path.join(w.dir, "agent2.log"))
        w.procs.append(p)
        wait_for(lambda: self.api("GET", "/readyz")[0] == 200 or (not p.alive() and w._died(p)),
                 what="second agent /readyz")

    def api(self, method, path, body=None):
        """World.api against this till, with its own token."""
        saved = (self.w.api_port, self.w.dir)
        self.w.api_port, self.w.dir = self.port, os.path.dirname(self.dir)
        real_token = self.w.token
        self.w.token = lambda: open(os.path.join(self.dir, "api.token")).read().strip()
        try:
            return self.w.api(method, path, body)
        finally:
            self.w.api_port, self.w.dir = saved
            self.w.token = real_token


def card_offers(session):
    return [o["code"] for o in ((session or {}).get("card") or {}).get("offers", [])]


def redeemed_once_gone_everywhere(w):
    cdp = FakeCDP()
    try:
        start_hub(w, cdp.port)
        # Ada's home store is S002: her card is in that store's feed; at S001
        # she is found by a live lookup.
        st, _ = w.send_batch(customer_batch(store="S002"))
        check(st == 200, f"batch {st}")
        st, _ = w.send_batch(offers_batch([
            {"code": "SPRING10", "description": "10 % off a jacket", "expires_at": iso(7)},
            {"code": "OLD5", "description": "expired", "expires_at": iso(-1)},
            {"code": 4711, "description": "no expiry"},
            {"description": "no code: left out"}]))
        check(st == 200, f"offers batch {st}")
        other = OtherTill(w)
        wait_for(lambda: card_offers(other.api("POST", "/api/v1/scan", {"code": LOYALTY})[1])
                 == ["SPRING10", "4711"], what="the offers on the S002 till's card")
        w.start_agent()
        wait_for(lambda: w.status()["link"] == "online", what="the S001 till online")
        s = wait_for(lambda: (lambda r: r[1] if r[0] == 200 and r[1]["status"] == "found"
                              else None)(w.api("POST", "/api/v1/scan", {"code": LOYALTY})),
                     what="Ada found live at S001")
        check(card_offers(s) == ["SPRING10", "4711"], f"offers on the card: {s['card']}")
        check(s["card"]["offers"][0]["description"] == "10 % off a jacket", f"{s['card']}")
        check("expires_at" in s["card"]["offers"][0] and
              "expires_at" not in s["card"]["offers"][1], f"{s['card']}")

        # Without the token: refused, nothing redeemed.
        st, _ = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10"}, auth=False)
        check(st == 401, f"redeem without token: {st}")
        woken0 = hub_metric(w, "tillside_hub_httpd_woken_total", listener="main")
        st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10", "receipt": "R-1"})
        check(st == 200 and r["redeemed"] and r["offer"]["code"] == "SPRING10" and
              r["offer"]["store"] == "S001", f"redeem: {st} {r}")
        # The card on screen drops it at once.
        st, s = w.api("GET", "/api/v1/session")
        check(card_offers(s) == ["4711"], f"session after redeem: {s}")
        # The card the till cached with the hub's answer has lost it too.
        st, s = w.api("POST", "/api/v1/scan", {"code": LOYALTY})
        check(card_offers(s) == ["4711"], f"scan after redeem ({s.get('source')}): {s}")
        # A second redemption, from any till, is refused with where and when.
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        want = f"offer SPRING10 was already redeemed at store S001 on {today}"
        st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10"})
        check(st == 409 and r["error"] == want, f"second redeem: {st} {r}")
        st, r = other.api("POST", "/api/v1/scan", {"code": LOYALTY})
        st2, r2 = w.api("POST", "/api/v1/offers/redeem",
                        {"code": "SPRING10", "cid": s["card"]["cid"]})
        check(st2 == 409 and r2["error"] == want, f"second redeem by cid: {st2} {r2}")
        st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "OLD5"})
        check(st == 410 and r["error"].startswith("offer OLD5 expired on "), f"expired offer: {st} {r}")
        st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "NOPE"})
        check(st == 404 and "NOPE" in r["error"], f"unknown offer: {st} {r}")
        # The S002 till's card loses the offer with its next feed page.
        wait_for(lambda: card_offers(other.api("POST", "/api/v1/scan", {"code": LOYALTY})[1])
                 == ["4711"], what="the redeemed offer to leave the S002 till's card")
        # ... because the redemption woke its parked long-poll, not because the
        # poll's wait ran out (a redemption that told no long-poll passed here
        # after 20 s on SQLite).
        woken = hub_metric(w, "tillside_hub_httpd_woken_total", listener="main")
        check(woken is not None and woken > woken0,
              f"no parked long-poll was woken by the redemption ({woken0} -> {woken})")
        # Upstream: Coupon Applied once, for Ada, with the code and receipt.
        ev = wait_for(lambda: [e for e in cdp.received.values()
                               if e.get("event") == "Coupon Applied"] or None,
                      what="Coupon Applied upstream")
        check(len(ev) == 1 and ev[0]["userId"] == "u-ada" and
              ev[0]["properties"]["coupon_id"] == "SPRING10" and
              ev[0]["properties"]["order_id"] == "R-1" and
              ev[0]["properties"]["coupon_name"] == "10 % off a jacket", f"upstream: {ev}")
        check(cdp.twice == [], f"delivered twice: {cdp.twice}")
        # The CDP re-sending the offer does not bring a redeemed one back.
        st, _ = w.send_batch(offers_batch([{"code": "SPRING10", "expires_at": iso(7)},
                                           {"code": "4711"}], mid="u-ada-offers-2"))
        check(st == 200, f"re-sent offers {st}")
        st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10"})
        check(st == 409, f"re-sent redeemed offer redeemable again: {st} {r}")
        stats = w.hub_stats()
        check(stats["offers"] == {"open": 1, "redeemed": 1}, f"stats: {stats.get('offers')}")

        # Offline: the till cannot check the offer, so it refuses it.
        w.hub.stop()
        st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "4711"})
        check(st == 503 and "cannot be checked now" in r["error"], f"offline: {st} {r}")
    finally:
        cdp.stop()


def withdrawn_and_expired(w):
    """An identify whose offers list leaves one out withdraws it; an offer
    past its expiry cannot be redeemed (410)."""
    start_hub(w)
    w.send_batch(customer_batch())
    w.send_batch(offers_batch([{"code": "A1"}, {"code": "B2"}]))
    w.start_agent()
    w.wait_cards(1)
    wait_for(lambda: card_offers(w.api("POST", "/api/v1/scan", {"code": LOYALTY})[1])
             == ["A1", "B2"], what="both offers on the card")
    w.send_batch(offers_batch([{"code": "B2"}], mid="u-ada-offers-2"))
    wait_for(lambda: card_offers(w.api("POST", "/api/v1/scan", {"code": LOYALTY})[1])
             == ["B2"], what="A1 withdrawn from the card")
    st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "A1"})
    check(st == 404, f"withdrawn offer: {st} {r}")
    # Bad bodies are refused by the agent and by the hub.
    for bad in ({}, {"code": ""}, {"code": 5}, {"code": "x" * 65}, {"code": "A1", "cid": 3}):
        st, r = w.api("POST", "/api/v1/offers/redeem", bad)
        check(st == 400, f"bad body {bad}: {st} {r}")
    for bad in (b"[]", b'{"code": "A1", "code": "B2"}', b'{"code": "a\\u0001"}'):
        st, r = w.hub_request("POST", "/v1/offers/redeem", bad, cert="t01")
        check(st == 400, f"hub, bad body {bad}: {st} {r}")
    st, r = w.hub_request("POST", "/v1/offers/redeem", {"code": "B2"}, cert="t01")
    check(st == 200 and r["redeemed"]["store"] == "S001" and "card" in r, f"hub redeem {st} {r}")


def page_offers_in_chromium(w):
    """tests/browser/offers_test.js: the page shows the offers (en, de, fr),
    leaves out one that expired in the cache, and shows a redemption and a
    refused second one."""
    browser_dir = os.path.join(os.environ.get("TS_SRC_DIR", os.path.join(
        os.path.dirname(__file__), "../..")), "tests", "browser")
    missing = [t for t in ("node", "/usr/bin/chromium") if not shutil.which(t)]
    if missing or not os.path.isdir(os.path.join(browser_dir, "node_modules", "playwright-core")):
        print(f"skipped: {missing or 'playwright-core'} missing (./run test installs them)")
        raise SystemExit(77)
    start_hub(w)
    w.send_batch(customer_batch())
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=10)
    soon_iso = soon.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    w.send_batch(offers_batch([
        {"code": "SPRING10", "description": "10 % off a jacket", "expires_at": iso(7)},
        {"code": "SOON1", "description": "ends in a moment", "expires_at": soon_iso}]))
    w.start_agent()
    w.wait_cards(1)
    env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token(),
               TS_SOON_MS=str(int(soon.replace(microsecond=0).timestamp() * 1000)))
    p = subprocess.run(["node", os.path.join(browser_dir, "offers_test.js")], env=env,
                       capture_output=True, text=True, timeout=180)
    print(p.stdout, end="")
    check(p.returncode == 0, f"offers in Chromium failed:\n{p.stdout}\n{p.stderr}")


def watch_shows_offers(w):
    """`tillside watch` in tmux: the card's offers, the redemption and the
    refused second one."""
    if not shutil.which("tmux"):
        print("tmux missing: ./run test installs it")
        raise SystemExit(77)
    start_hub(w)
    w.send_batch(customer_batch())
    w.send_batch(offers_batch([
        {"code": "SPRING10", "description": "10 % off a jacket", "expires_at": iso(7)},
        {"code": "GONE3", "description": "expired", "expires_at": iso(-1)}]))
    w.start_agent()
    w.wait_cards(1)
    sock = f"ts-offers-{w.api_port}"

    def tmux(*args):
        return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True,
                              timeout=10)

    def pane():
        return tmux("capture-pane", "-p", "-t", "watch").stdout

    r = tmux("new-session", "-d", "-s", "watch", "-x", "120", "-y", "30",
             f"{AGENT_BIN} watch -c {w.agent_conf_path}")
    check(r.returncode == 0, f"tmux: {r.stderr}")
    try:
        wait_for(lambda: "Scan a loyalty card" in pane(), what="the idle screen")
        w.api("POST", "/api/v1/scan", {"code": LOYALTY})
        until = iso(7)[:10]
        text = wait_for(lambda: "Ada Lovelace" in pane() and pane(), what="the card in watch")
        check(f"Offers  SPRING10  10 % off a jacket  until {until}" in text and
              "GONE3" not in text, f"offers in watch:\n{text}")
        st, _ = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10"})
        check(st == 200, f"redeem {st}")
        wait_for(lambda: "Offer SPRING10 redeemed" in pane() and "Offers  SPRING10" not in pane(),
                 what="the redemption in watch")
        st, _ = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10"})
        check(st == 409, f"second redeem {st}")
        wait_for(lambda: "offer SPRING10 was already redeemed at store S001" in pane(),
                 what="the refusal in watch")
    finally:
        tmux("kill-server")


def receipt_tap_redeems(w):
    """The receipt tap: a receipt printing the offer's code (the rules'
    coupon_re) redeems it at the hub with the receipt number, once; a
    reprint does not redeem it again."""
    from test_escpos import FIX, Printer, pos_print  # noqa: E402
    cdp = FakeCDP()
    listen, pport = free_port(), free_port()
    with open(os.path.join(FIX, "rules.conf")) as f:
        rules = f.read().replace("[receipt.supermarket]\n",
                                 "[receipt.supermarket]\ncoupon_re = ^GUTSCHEIN +([A-Z0-9]+)$\n")
    printer = Printer(pport)
    try:
        start_hub(w, cdp.port)
        w.send_batch(customer_batch())
        w.send_batch(offers_batch([{"code": "SPRING10", "description": "10 % off"}]))
        w.start_agent(extra=f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                            f"printer = 127.0.0.1:{pport}\nrules = receipt.supermarket\n\n{rules}")
        w.wait_cards(1)
        with open(os.path.join(FIX, "supermarket.bin"), "rb") as f:
            data = f.read()
        cut = data.index(b"\x1dV")
        data = data[:cut] + b"GUTSCHEIN SPRING10\n" + data[cut:]
        pos_print(listen, data)
        ev = wait_for(lambda: [e for e in cdp.received.values()
                               if e.get("event") == "Coupon Applied"] or None, timeout=30,
                      what="Coupon Applied from the tapped receipt")
        check(len(ev) == 1 and ev[0]["properties"]["coupon_id"] == "SPRING10" and
              ev[0]["properties"]["order_id"] == "0042-03-004217" and
              ev[0]["userId"] == "u-ada", f"upstream: {ev}")
        pos_print(listen, data)  # a reprint: already recorded, not redeemed again
        wait_for(lambda: "already recorded" in w.agent.log(), what="the reprint seen")
        check(w.agent.log().count("offer SPRING10 redeemed") == 1, "redeemed twice")
        check(w.hub_stats()["offers"] == {"open": 0, "redeemed": 1}, f"{w.hub_stats()['offers']}")
    finally:
        printer.close()
        cdp.stop()


if __name__ == "__main__":
    main({"redeemed_once_gone_everywhere": redeemed_once_gone_everywhere,
          "withdrawn_and_expired": withdrawn_and_expired,
          "page_offers_in_chromium": page_offers_in_chromium,
          "watch_shows_offers": watch_shows_offers,
          "receipt_tap_redeems": receipt_tap_redeems})
