"""Returns and consent at the till (issue 18), black-box over a real hub and
real agents over mutual TLS:

- a return posted at POST /api/v1/returns arrives upstream once as Segment's
  "Order Refunded" (the CDP played by test_purchases_hub.FakeCDP) and at
  Braze once as ecommerce.order_refunded, at Klaviyo once as "Refunded
  Order", at Bloomreach once as a purchase with purchase_status "refunded"
  at Iterable once as the custom event "refund" and in Data Cloud once as
  records with event_type "return" (tests/contract/*_server.py),
  under the customer of the original sale; posting it again is a duplicate;
  bad bodies get 400 naming the fields; the sale's receipt lookup and the
  card's order say "returned"; scanning the old receipt shows the sale;
- a return and its sale recorded while the hub is away survive a kill -9
  of the agent after the 202 and arrive once each;
- consent withdrawn at a till of store S001 empties the customer's card on
  the screen at once, and at a terminal of store S002 (her home store) after
  its next feed page; the hub keeps the audit row (terminal, associate).
"""
import os
import signal
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "contract"))
import tslib  # noqa: E402
from tslib import Proc, check, customer_batch, free_port, wait_for  # noqa: E402
from bloomreach_server import Bloomreach  # noqa: E402
from braze_server import BrazeServer  # noqa: E402
from iterable_server import Iterable  # noqa: E402
from salesforce_server import DataCloud  # noqa: E402
from klaviyo_server import KlaviyoServer  # noqa: E402
import test_escpos  # noqa: E402
import test_purchases_hub  # noqa: E402
import test_sinks  # noqa: E402

FAST = "[outbox]\nbackoff_ms = 100\nbackoff_max_ms = 1000\n"
RECEIPT_RULE = "[rule.receipt]\nregex = ^S[0-9]{3}-T[0-9]{2}-[0-9]{6}$\nkind = receipt\n"
BZ_KEY, KL_KEY = "braze-rest-key", "pk_test_klaviyo"
ADA = ("u-ada", "4711000123", "Ada Lovelace")


def start_hub(w, cdp, *sections):
    """The hub with [upstream] at the fake CDP, and more sink sections."""
    return test_sinks.start(w, f"[upstream]\nurl = http://127.0.0.1:{cdp.port}/v1/batch\n"
                               f"write_key = {test_purchases_hub.UPSTREAM_KEY}\nmax_backoff_s = 2\n",
                            *sections)


def braze_conf(bz):
    return (f"[sink.bz]\ntype = braze\nurl = {bz.url}\nca_file = {bz.ca_file}\n"
            f"api_key = {BZ_KEY}\nmax_backoff_s = 2\nsend = purchases, returns\n")


def klaviyo_conf(kl):
    return (f"[sink.kl]\ntype = klaviyo\nurl = {kl.url}\nca_file = {kl.ca_file}\n"
            f"api_key = {KL_KEY}\nmax_backoff_s = 2\nsend = purchases, returns\n")


BR_TOKEN = "0a1b2c3d-4e5f"


def bloomreach_conf(br):
    return (f"[sink.br]\ntype = bloomreach\nurl = {br.url}\nca_file = {br.ca_file}\n"
            f"project_token = {BR_TOKEN}\nkey_id = key-id-1\nkey_secret = key-secret-1\n"
            f"max_backoff_s = 2\nsend = purchases, returns\n")


def iterable_conf(it):
    return (f"[sink.it]\ntype = iterable\nurl = {it.url}\nca_file = {it.ca_file}\n"
            f"api_key = it-key\nmax_backoff_s = 2\nsend = purchases, returns\n")


def datacloud_conf(dc):
    return (f"[sink.dc]\ntype = salesforce\nurl = {dc.login.url}\nlogin_url = {dc.login.url}\n"
            f"ca_file = {dc.login.ca_file}\nclient_id = client-1\nclient_secret = secret-1\n"
            f"source = tillside_pos\nobject = purchase_line\nmax_backoff_s = 2\n"
            f"send = purchases, returns\n")


def sale(receipt, **kw):
    p = {"receipt": receipt, "currency": "EUR", "total": 38.0,
         "products": [{"sku": "SKU-HAT-1", "name": "Wool Hat", "quantity": 2, "price": 19.0}]}
    p.update(kw)
    return p


def refund(return_id, original, **kw):
    r = {"return_id": return_id, "original_receipt": original, "currency": "EUR",
         "total": 38.0, "reason": "too small",
         "products": [{"sku": "SKU-HAT-1", "name": "Wool Hat", "quantity": 2, "price": 19.0}]}
    r.update(kw)
    return r


def at_cdp(cdp, name, key, value):
    with cdp.mu:
        return [e for e in cdp.received.values()
                if e.get("event") == name and e.get("properties", {}).get(key) == value]


def scan(w, code):
    st, sess = w.api("POST", "/api/v1/scan", {"code": code})
    check(st == 200, f"scan answered {st}: {sess}")
    return sess


def return_arrives_once(w):
    cdp = test_purchases_hub.FakeCDP()
    bz = BrazeServer(w.certs, BZ_KEY)
    kl = KlaviyoServer(w.certs, KL_KEY)
    br = Bloomreach(w.certs, BR_TOKEN, "key-id-1", "key-secret-1")
    it = Iterable(w.certs, "it-key")
    dc = DataCloud(w.certs, "client-1", "secret-1", "tillside_pos", "purchase_line")
    try:
        start_hub(w, cdp, braze_conf(bz), klaviyo_conf(kl), bloomreach_conf(br), iterable_conf(it),
                  datacloud_conf(dc))
        st, _ = w.send_batch(customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2]))
        check(st == 200, f"CDP batch answered {st}")
        w.start_agent(extra=FAST + RECEIPT_RULE)
        w.wait_cards(1)
        st, body = w.api("POST", "/api/v1/purchases",
                         sale("S001-T01-000501", customer={"code": ADA[1]}))
        check(st == 202, f"purchase answered {st}: {body}")
        wait_for(lambda: at_cdp(cdp, "Order Completed", "order_id", "S001-T01-000501"),
                 timeout=30, what="the sale at the CDP")
        # The return names the sale, not the customer: the hub knows whose.
        st, first = w.api("POST", "/api/v1/returns", refund("R-S001-0001", "S001-T01-000501"))
        check(st == 202 and first.get("message_id"), f"return answered {st}: {first}")
        st, again = w.api("POST", "/api/v1/returns", refund("R-S001-0001", "S001-T01-000501"))
        check(st == 200 and again == {"message_id": first["message_id"], "duplicate": True},
              f"the same return again answered {st}: {again}")
        # Refused, naming the fields.
        st, body = w.api("POST", "/api/v1/returns",
                         refund("R-S001-0002", "", total=-1,
                                products=[{"sku": "SKU-HAT-1", "quantity": 0, "price": 19.0}]))
        check(st == 400 and {"original_receipt", "total", "products[0].quantity"}
              <= set(body["fields"]), f"bad return answered {st}: {body}")
        st, body = w.api("POST", "/api/v1/returns", refund("4111111111111111", "S001-T01-000501"))
        check(st == 400 and "return_id" in body["fields"] and "4111111111111111" not in str(body),
              f"a card number as return id answered {st}: {body}")
        check("4111111111111111" not in w.agent.log(), "the card number is in the agent log")

        refunds = wait_for(lambda: at_cdp(cdp, "Order Refunded", "order_id", "S001-T01-000501"),
                           timeout=30, what="Order Refunded at the CDP")
        e = refunds[0]
        check(e.get("userId") == ADA[0] and e["properties"]["total"] == 38.0 and
              e["properties"]["currency"] == "EUR" and
              e["properties"]["products"][0]["sku"] == "SKU-HAT-1" and
              e["properties"].get("reason") == "too small", f"Order Refunded upstream: {e}")
        refunded = wait_for(lambda: [x for x in bz.ledger.items
                                     if x.get("name") == "ecommerce.order_refunded"],
                            timeout=30, what="ecommerce.order_refunded at Braze")
        b = refunded[0]
        check(b["external_id"] == ADA[0] and b["properties"]["order_id"] == "S001-T01-000501" and
              b["properties"]["total_value"] == 38.0, f"Braze refund: {b}")
        # Once each, however long we look.
        wait_for(lambda: w.status()["outbox_depth"] == 0, what="the outbox to drain")
        wait_for(lambda: all(s["pending"] == 0 for s in w.hub_stats().get("sinks", [])),
                 what="the sink queues to drain")
        check(len(at_cdp(cdp, "Order Refunded", "order_id", "S001-T01-000501")) == 1 and
              not cdp.twice, f"refund at the CDP more than once: {cdp.twice}")
        check(len(refunded) == 1 and len([x for x in bz.ledger.items if x.get("name") ==
                                          "ecommerce.order_refunded"]) == 1,
              "refund at Braze more than once")
        kref = [x for x in kl.ledger.items if x.get("metric") == "Refunded Order"]
        check(len(kref) == 1 and kref[0]["value"] == 38.0 and
              kref[0]["properties"]["OrderId"] == "S001-T01-000501" and
              kref[0]["profile"].get("external_id") == ADA[0], f"Klaviyo refund: {kref}")
        with br.lock:
            bref = [d for _, d in br.events if d["event_type"] == "purchase" and
                    d["properties"]["purchase_status"] == "refunded"]
        check(len(bref) == 1 and bref[0]["properties"]["purchase_id"] == "S001-T01-000501" and
              bref[0]["properties"]["total_price"] == 38.0 and
              bref[0]["customer_ids"] == {"registered": ADA[0]} and not br.twice,
              f"Bloomreach refund: {bref}")
        with it.lock:
            iref = list(it.events.values())
        check(len(iref) == 1 and iref[0]["eventName"] == "refund" and iref[0]["userId"] == ADA[0]
              and iref[0]["dataFields"]["orderId"] == "S001-T01-000501" and
              iref[0]["dataFields"]["total"] == 38.0 and not it.repeats, f"Iterable refund: {iref}")
        with dc.lock:
            dref = [r for r in dc.records.values() if r["event_type"] == "return"]
            dsale = [r for r in dc.records.values() if r["event_type"] == "purchase"]
        check(len(dref) == 1 and dref[0]["order_id"] == "S001-T01-000501" and
              dref[0]["order_total"] == 38.0 and dref[0]["customer_id"] == ADA[0] and
              len(dsale) == 1 and not dc.resent, f"Data Cloud records: {dref} {dsale}")

        # The sale's lookup and the card's order say it came back.
        st, ans = w.hub_request("GET", "/v1/lookup?receipt=S001-T01-000501", cert="t01")
        check(st == 200 and ans["purchase"]["status"] == "returned" and
              ans["purchase"]["refunded"] == 38.0, f"receipt lookup answered {st}: {ans}")

        def order_returned():
            card = scan(w, ADA[1]).get("card", {})
            return [o for o in card.get("orders", []) if o["order_id"] == "S001-T01-000501"
                    and o["status"] == "returned"]
        wait_for(order_returned, timeout=30, what="the card's order to say returned")
        # The return desk scans the old receipt: the sale and its customer.
        sess = scan(w, "S001-T01-000501")
        check(sess["status"] == "found" and sess["purchase"]["receipt"] == "S001-T01-000501" and
              sess["card"]["name"] == ADA[2], f"receipt scan at the return desk: {sess}")
        st, text = w.api("GET", "/metrics")
        check("tillside_purchases_recorded_total 2" in text, "the return not counted as recorded")
    finally:
        dc.stop()
        it.stop()
        br.stop()
        kl.stop()
        bz.stop()
        cdp.stop()


def return_survives_kill9(w):
    """The hub is away; the sale and its return get their 202s, the agent is
    killed with -9, the hub comes, the agent restarts: each arrives once."""
    cdp = test_purchases_hub.FakeCDP()
    try:
        w.start_agent(extra=FAST)
        st, body = w.api("POST", "/api/v1/purchases", sale("S001-T01-000601"))
        check(st == 202, f"purchase answered {st}: {body}")
        st, body = w.api("POST", "/api/v1/returns", refund("R-S001-0601", "S001-T01-000601",
                                                          total=19.0))
        check(st == 202, f"return answered {st}: {body}")
        w.agent.p.send_signal(signal.SIGKILL)
        w.agent.p.wait(10)
        start_hub(w, cdp)
        w.start_agent(extra=FAST)
        wait_for(lambda: at_cdp(cdp, "Order Refunded", "order_id", "S001-T01-000601"),
                 timeout=60, what="the return at the CDP after the kill")
        wait_for(lambda: w.status()["outbox_depth"] == 0, what="the outbox to drain")
        wait_for(lambda: all(s["pending"] == 0 for s in w.hub_stats().get("sinks", [])),
                 what="the sink queue to drain")
        got = at_cdp(cdp, "Order Refunded", "order_id", "S001-T01-000601")
        check(len(got) == 1 and got[0]["properties"]["total"] == 19.0 and not cdp.twice,
              f"return upstream {got}, twice {cdp.twice}")
        check(len(at_cdp(cdp, "Order Completed", "order_id", "S001-T01-000601")) == 1,
              "the sale did not arrive once")
        st, ans = w.hub_request("GET", "/v1/lookup?receipt=S001-T01-000601", cert="t01")
        check(st == 200 and ans["purchase"]["status"] == "partly returned",
              f"half the sale came back: {ans}")
    finally:
        cdp.stop()


TAP_RULES = r"""
[receipt.tap]
store_re = ^Str ([0-9]+)
terminal_re = Reg ([0-9]+)
receipt_re = Rcpt ([0-9]+)
receipt_format = {store}-{terminal}-{receipt}
item_re = ^([A-Z][^@]*[^ @]) +(([0-9]+) @ [0-9.]+ +)?(-?[0-9]+\.[0-9]{2})$
item_fields = name - qty price
item_price = line
skip_re = ^SUBTOTAL
total_re = ^TOTAL +(-?[0-9]+\.[0-9]{2})$
tax_re = ^TAX [0-9]+% +([0-9]+\.[0-9]{2})$
loyalty_re = ^Rewards [#]: ([0-9]+)
currency = USD
refund_re = ^REFUND$
original_re = ^Orig Rcpt ([0-9]+)$
"""


def refund_receipt():
    lines = ["CORNER HARDWARE", "Str 3  Reg 1  Rcpt 000130", "REFUND", "Orig Rcpt 000123",
             "HAMMER 16OZ             -12.99", "TOTAL                   -12.99"]
    return b"\x1b@" + b"".join(x.encode() + b"\n" for x in lines) + b"\x1bd\x03\x1dV\x00"


def tap_refund_arrives_once(w):
    """The receipt tap sees Ada's sale (her rewards number on it), then a
    refund receipt naming it: Order Refunded under Ada, once, however often
    the POS prints the same refund."""
    cdp = test_purchases_hub.FakeCDP()
    listen, pport = free_port(), free_port()
    printer = test_escpos.Printer(pport)
    try:
        start_hub(w, cdp)
        st, _ = w.send_batch(customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2]))
        check(st == 200, f"CDP batch answered {st}")
        w.start_agent(extra=FAST + f"[input.till1]\ndriver = escpos\nlisten = 127.0.0.1:{listen}\n"
                      f"printer = 127.0.0.1:{pport}\nrules = receipt.tap\n" + TAP_RULES)
        w.wait_cards(1)
        with open(os.path.join(test_escpos.FIX, "hardware.bin"), "rb") as f:
            test_escpos.pos_print(listen, f.read())
        wait_for(lambda: at_cdp(cdp, "Order Completed", "order_id", "3-1-000123"), timeout=30,
                 what="the tapped sale at the CDP")
        test_escpos.pos_print(listen, refund_receipt())
        test_escpos.pos_print(listen, refund_receipt())  # a reprint: the same return
        got = wait_for(lambda: at_cdp(cdp, "Order Refunded", "order_id", "3-1-000123"),
                       timeout=30, what="the tapped refund at the CDP")
        wait_for(lambda: w.status()["outbox_depth"] == 0, what="the outbox to drain")
        wait_for(lambda: all(s["pending"] == 0 for s in w.hub_stats().get("sinks", [])),
                 what="the sink queue to drain")
        got = at_cdp(cdp, "Order Refunded", "order_id", "3-1-000123")
        e = got[0]
        check(len(got) == 1 and not cdp.twice, f"tapped refund upstream {len(got)} times")
        check(e.get("userId") == ADA[0] and e["properties"]["total"] == 12.99 and
              e["properties"]["products"][0]["price"] == 12.99 and
              e["context"]["tillside"]["receipt"] == "return:3-1-000130",
              f"tapped refund: {e}")
        check("already recorded" in w.agent.log(), "the reprint was not seen as the same return")
    finally:
        printer.close()
        cdp.stop()


class Terminal:
    """A second agent: terminal T02 of store S002, its own state and port."""

    api = tslib.World.api
    status = tslib.World.status
    wait_cards = tslib.World.wait_cards

    def __init__(self, w):
        w.pki("issue", "--dir", w.certs, "--cn", "T02", "--ou", "S002", "--o", "acme",
              "--out", f"{w.certs}/t02")
        self.api_port = free_port()
        self.dir = os.path.join(w.dir, "t02")
        os.makedirs(os.path.join(self.dir, "agent"), exist_ok=True)
        with open(w.agent_conf(cert=f"{w.certs}/t02.pem", key=f"{w.certs}/t02.key",
                               extra=FAST)) as f:
            text = f.read()
        text = (text.replace("store = S001", "store = S002")
                .replace("terminal = T01", "terminal = T02")
                .replace(f"state_dir = {w.dir}/agent", f"state_dir = {self.dir}/agent")
                .replace(f"listen = 127.0.0.1:{w.api_port}", f"listen = 127.0.0.1:{self.api_port}"))
        conf = os.path.join(self.dir, "tillside.conf")
        with open(conf, "w") as f:
            f.write(text)
        self.p = Proc("agent-t02", [tslib.AGENT_BIN, "run", "-c", conf],
                      os.path.join(self.dir, "agent.log"))
        w.procs.append(self.p)
        wait_for(lambda: self.api("GET", "/readyz")[0] == 200 or
                 (not self.p.alive() and w._died(self.p)), what="T02 /readyz")

    def token(self):
        with open(os.path.join(self.dir, "agent", "api.token")) as f:
            return f.read().strip()


def audit_rows(w):
    """(store, terminal, cid, personalization, associate) of every consent
    audit row, from the hub's database (SQLite or PostgreSQL)."""
    sql = "SELECT store_id, terminal, cid, personalization, associate FROM consent_audit"
    if tslib.PG_URI:
        return [(st, t, c, int(p), a) for st, t, c, p, a in tslib.pg_query(sql)]
    db = sqlite3.connect(f"file:{w.dir}/hub.db?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def consent_withdrawn_everywhere(w):
    cdp = test_purchases_hub.FakeCDP()
    try:
        start_hub(w, cdp)
        # Ada's home store is S002: her card is in T02's feed.
        st, _ = w.send_batch(customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2],
                                            store="S002"))
        check(st == 200, f"CDP batch answered {st}")
        t02 = Terminal(w)
        t02.wait_cards(1)
        st, sess = t02.api("POST", "/api/v1/scan", {"code": ADA[1]})
        check(st == 200 and sess["card"]["consent"] and sess["card"].get("interests"),
              f"T02 shows Ada's interests before: {sess}")
        # She shops at S001 (a live lookup) and opts out at the counter.
        w.start_agent(extra=FAST)
        wait_for(lambda: w.status()["link"] == "online", what="S001's link to the hub")
        sess = scan(w, ADA[1])
        check(sess["status"] == "found" and sess["card"].get("interests"), f"S001 scan: {sess}")
        st, body = w.api("POST", "/api/v1/consent", {"personalization": False, "email": True,
                                                     "associate": "A-17"})
        check(st == 202 and body.get("message_id"), f"consent answered {st}: {body}")
        st, now = w.api("GET", "/api/v1/session")
        check(st == 200 and now["card"]["consent"] is False and "interests" not in now["card"]
              and now["card"]["name"] == ADA[2], f"the card on screen after opting out: {now}")
        # No customer: refused, naming what is missing.
        w.api("POST", "/api/v1/session/clear", {})
        st, body = w.api("POST", "/api/v1/consent", {"personalization": False})
        check(st == 400 and body["fields"] == ["customer"], f"consent without customer: {body}")
        st, body = w.api("POST", "/api/v1/consent", {"personalization": "no", "cid": "c1"})
        check(st == 400 and "personalization" in body["fields"], f"bad choice: {body}")

        def t02_emptied():
            st, s = t02.api("POST", "/api/v1/scan", {"code": ADA[1]})
            c = s.get("card", {}) if st == 200 else {}
            return c.get("consent") is False and not c.get("interests") and c
        card = wait_for(t02_emptied, timeout=30, what="T02's card of Ada to empty")
        check(card["name"] == ADA[2], f"T02 still knows who she is: {card}")
        rows = audit_rows(w)
        check(len(rows) == 1 and rows[0][:2] == ("S001", "T01") and rows[0][3] == 0 and
              rows[0][4] == "A-17", f"audit rows: {rows}")
        ident = wait_for(lambda: [e for e in list(cdp.received.values())
                                  if e.get("type") == "identify"], timeout=30,
                         what="the consent identify at the CDP")
        check(ident[0].get("userId") == ADA[0] and
              ident[0]["traits"] == {"personalization_consent": False, "email_consent": True},
              f"identify upstream: {ident[0]}")
    finally:
        cdp.stop()


def consent_channels_configured(w):
    """[page] consent_channels: a retailer that markets by e-mail only gets
    no SMS choice on the page and cannot record one through the API;
    check-config refuses a channel it does not know, at its line."""
    w.start_hub()
    st, _ = w.send_batch(customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2]))
    check(st == 200, f"CDP batch answered {st}")
    w.start_agent(extra=FAST + "[page]\nconsent_channels = email\n")
    w.wait_cards(1)
    st, page = w.api("GET", "/")
    check(st == 200 and '<meta name="tillside-consent-channels" content="email">' in page,
          "the page does not name the till's consent channels")
    scan(w, ADA[1])
    st, body = w.api("POST", "/api/v1/consent", {"personalization": True, "sms": True})
    check(st == 400 and body.get("fields") == ["sms"] and "consent_channels" in body["error"],
          f"an SMS choice at an e-mail-only till answered {st}: {body}")
    st, body = w.api("POST", "/api/v1/consent", {"personalization": True, "email": True})
    check(st == 202 and body.get("message_id"), f"an e-mail choice answered {st}: {body}")
    for bad in ("fax", " , "):
        conf = w.agent_conf(extra=f"[page]\nconsent_channels = {bad}\n")
        with open(conf) as f:
            line = next(i for i, ln in enumerate(f.read().splitlines(), 1)
                        if ln.startswith("consent_channels"))
        p = w.cli("check-config")
        check(p.returncode != 0 and f"{conf}:{line}: [page] consent_channels" in p.stderr,
              f"check-config on consent_channels = {bad!r}: rc {p.returncode} {p.stderr!r}")
    conf = w.agent_conf(extra="[page]\nconsent_channels = none\n")
    p = w.cli("check-config")
    check(p.returncode == 0, f"check-config refused consent_channels = none: {p.stderr}")


TESTS = {f.__name__: f for f in (return_arrives_once, return_survives_kill9,
                                  tap_refund_arrives_once, consent_withdrawn_everywhere,
                                  consent_channels_configured)}

if __name__ == "__main__":
    tslib.main(TESTS)
