"""Consent and redeemed coupons at Klaviyo and Salesforce Data Cloud, and
Klaviyo refunds keyed by the return (issues 16 and 18), black-box: the real
hub and a real agent over mutual TLS, the vendors played by their contract
servers (tests/contract/klaviyo_server.py, salesforce_server.py).

- Klaviyo: a consent recorded at the till (POST /api/v1/consent) reaches
  Klaviyo once, the Klaviyo way: e-mail opt-out as Bulk Unsubscribe
  Profiles, opt-in as Bulk Subscribe Profiles (into [sink] list_id), the
  personalisation choice as a profile property (Create or Update Profile);
  a redeemed offer arrives once as "Redeemed Coupon"; a purchase and a
  consent queued together (recorded while the hub was away, uploaded in one
  batch) go in separate requests, each to its own endpoint.
- Klaviyo refunds: two returns of one sale are two "Refunded Order" events,
  each keyed by its own return id; the same return posted again is one.
- Data Cloud: the consent and the redemption arrive once as records of their
  configured objects, each request holding one object's records.
- check-config: Data Cloud's default send leaves out consent and coupons
  until their objects are named; send = consent without consent_object is
  refused at the send line, and run refuses it the same way (as are a bad
  object name and a Klaviyo list_id that is not one, at their lines).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "contract"))
from klaviyo_server import KlaviyoServer  # noqa: E402
from salesforce_server import DataCloud  # noqa: E402
from test_offers import offers_batch, iso  # noqa: E402
from test_returns import ADA, FAST, RECEIPT_RULE, refund, sale, scan  # noqa: E402
from test_sinks import KL_KEY, sink_conf, sinks_stats, start  # noqa: E402
from test_sinks3 import refused_at_key  # noqa: E402
from tslib import HUB_BIN, check, customer_batch, main, run, wait_for  # noqa: E402

ADA_MAIL = "ada@example.com"
LIST_ID = "Y6nRLr"
CONSENT_OBJ, COUPON_OBJ = "till_consent", "coupon_redemption"


def ada_known(w):
    """Ada at the CDP, with her e-mail address and an open offer."""
    batch = customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2])
    batch[0]["traits"]["email"] = ADA_MAIL
    st, _ = w.send_batch(batch)
    check(st == 200, f"CDP batch answered {st}")
    st, _ = w.send_batch(offers_batch([{"code": "SPRING10", "description": "10 % off a jacket",
                                        "expires_at": iso(7)}]))
    check(st == 200, f"offers batch answered {st}")


def queued_together(w, sections, sink, receipt):
    """A sale and a consent (opt out of personalisation and e-mail) recorded
    at the till while the hub is away reach it in one upload, so they wait
    in the sink's queue together and go out in the same round."""
    start(w, *sections)
    ada_known(w)
    w.start_agent(extra=FAST + RECEIPT_RULE)
    w.wait_cards(1)
    w.hub.stop()
    st, body = w.api("POST", "/api/v1/purchases", sale(receipt, customer={"code": ADA[1]}))
    check(st == 202, f"purchase answered {st}: {body}")
    scan(w, ADA[1])  # her card from the till's own copy
    st, body = w.api("POST", "/api/v1/consent", {"personalization": False, "email": False,
                                                 "associate": "A-17"})
    check(st == 202 and body.get("message_id"), f"consent answered {st}: {body}")
    check(w.status()["outbox_depth"] >= 2, f"the outbox: {w.status()}")
    start(w, *sections)
    wait_for(lambda: w.status()["outbox_depth"] == 0, timeout=60, what="the outbox to drain")
    wait_for(lambda: sinks_stats(w).get(sink, {}).get("pending", 1) == 0, timeout=60,
             what="the sink queue to drain")


def redeem(w):
    scan(w, ADA[1])
    st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10", "receipt": "R-9"})
    check(st == 200 and r.get("redeemed"), f"redeem answered {st}: {r}")


def klaviyo_consent_and_coupon(w):
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        queued_together(w, [sink_conf("kl", kl, "klaviyo", api_key=KL_KEY, list_id=LIST_ID)],
                        "kl", "S001-T01-000701")
        wait_for(lambda: len(kl.subscriptions) >= 1 and kl.profiles and
                 [e for e in kl.ledger.items if e["metric"] == "Placed Order"], timeout=60,
                 what="the sale and the consent at Klaviyo")
        check(kl.subscriptions == [(ADA_MAIL, "email", "UNSUBSCRIBED", LIST_ID)],
              f"Klaviyo subscriptions after the opt-out: {kl.subscriptions}")
        check(kl.profiles == {f"external_id={ADA[0]}": {"personalization_consent": False}},
              f"Klaviyo profile properties: {kl.profiles}")
        # Each request went to its own endpoint and was taken: a consent in the
        # events' request (or a sale in a subscription job) is refused with 400.
        with kl.lock:
            answered = [(r.path, r.status) for r in kl.requests]
        check(all(s in (200, 201, 202) for _, s in answered), f"requests: {answered}")
        paths = {p for p, _ in answered}
        check({"/api/event-bulk-create-jobs", "/api/profile-subscription-bulk-delete-jobs",
               "/api/profile-import"} <= paths, f"endpoints used: {paths}")
        # Back in: a subscription, into the list.
        st, body = w.api("POST", "/api/v1/consent", {"email": True})
        check(st == 202, f"second consent answered {st}: {body}")
        wait_for(lambda: len(kl.subscriptions) == 2, timeout=60, what="the opt-in at Klaviyo")
        check(kl.subscriptions[1] == (ADA_MAIL, "email", "SUBSCRIBED", LIST_ID),
              f"Klaviyo subscriptions after the opt-in: {kl.subscriptions}")
        sub = [r for r in kl.requests if r.path == "/api/profile-subscription-bulk-create-jobs"]
        check(sub[0].json["data"]["attributes"].get("custom_source"), "no custom_source")
        # A redeemed offer: one Redeemed Coupon, keyed for Klaviyo's dedup.
        redeem(w)
        coupons = wait_for(lambda: [e for e in kl.ledger.items if e["metric"] == "Redeemed Coupon"],
                           timeout=60, what="Redeemed Coupon at Klaviyo")
        wait_for(lambda: sinks_stats(w)["kl"]["pending"] == 0, what="the queue to drain")
        c = coupons[0]
        check(len([e for e in kl.ledger.items if e["metric"] == "Redeemed Coupon"]) == 1 and
              c["properties"]["CouponCode"] == "SPRING10" and
              c["properties"]["CouponName"] == "10 % off a jacket" and
              c["properties"]["OrderId"] == "R-9" and c["properties"]["Store"] == "S001" and
              c["profile"] == {"external_id": ADA[0]} and
              c["unique_id"].startswith("coupon-") and c["unique_id"].endswith("-SPRING10"),
              f"Redeemed Coupon: {c}")
        with kl.lock:
            imports = [r for r in kl.consent_requests if r[0] == "/api/profile-import"]
        check(len(kl.subscriptions) == 2 and len(imports) == 1 and
              kl.ledger.duplicates == 0, f"more than once: {kl.subscriptions} {imports}")
        st = sinks_stats(w)["kl"]
        check(st["dead"] == 0 and st["skipped"] == 0, f"sink stats: {st}")
    finally:
        kl.stop()


def klaviyo_returns_keyed_by_return(w):
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        ada_known(w)
        w.start_agent(extra=FAST + RECEIPT_RULE)
        w.wait_cards(1)
        hat = {"sku": "SKU-HAT-1", "name": "Wool Hat", "quantity": 1, "price": 19.0}
        st, body = w.api("POST", "/api/v1/purchases",
                         sale("S001-T01-000801", customer={"code": ADA[1]}))
        check(st == 202, f"purchase answered {st}: {body}")
        # Two returns of one sale, a hat each; the first posted twice.
        for rid in ("R-S001-0801", "R-S001-0802", "R-S001-0801"):
            st, body = w.api("POST", "/api/v1/returns",
                             refund(rid, "S001-T01-000801", total=19.0, products=[hat]))
            check(st in (200, 202), f"return {rid} answered {st}: {body}")
        wait_for(lambda: len([e for e in kl.ledger.items if e["metric"] == "Refunded Order"])
                 >= 2, timeout=60, what="two Refunded Order at Klaviyo")
        wait_for(lambda: w.status()["outbox_depth"] == 0, what="the outbox to drain")
        wait_for(lambda: sinks_stats(w)["kl"]["pending"] == 0, what="the queue to drain")
        refunds = [e for e in kl.ledger.items if e["metric"] == "Refunded Order"]
        keys = sorted(e["unique_id"] for e in refunds)
        check(keys == ["S001:return:R-S001-0801", "S001:return:R-S001-0802"],
              f"refunds keyed by {keys}")
        check(all(e["properties"]["OrderId"] == "S001-T01-000801" and e["value"] == 19.0
                  for e in refunds), f"refunds: {refunds}")
        check(sorted(e["properties"]["ReturnId"] for e in refunds) ==
              ["R-S001-0801", "R-S001-0802"], f"ReturnId: {refunds}")
        check(kl.ledger.duplicates == 0, "a refund reached Klaviyo twice")
    finally:
        kl.stop()


def klaviyo_unsubscribe_batches_of_100(w):
    """120 opt-outs stored at once go to Bulk Unsubscribe Profiles in
    requests of at most 100 profiles (its documented maximum, which the
    contract server enforces), none refused, each arriving once."""
    import time
    from test_purchases_hub import online_customer, post
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        cid = online_customer(w)
        st, _ = w.send_batch([{"type": "identify", "userId": "u-ada",
                               "messageId": "u-ada-mail", "traits": {"email": ADA_MAIL}}])
        check(st == 200, f"CDP batch answered {st}")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        evs = [{"type": "identify", "messageId": f"c-{i}", "anonymousId": "S001:T01",
                "originalTimestamp": now, "traits": {"email_consent": False},
                "context": {"tillside": {"store": "S001", "terminal": "T01", "source": "api",
                                         "receipt": f"consent:c-{i}", "cid": cid}}}
               for i in range(120)]
        st, ans = post(w, evs)
        check(st == 200 and len(ans["accepted"]) == 120, f"consents answered {st}: {ans}")
        wait_for(lambda: len(kl.subscriptions) >= 120, timeout=120,
                 what="120 opt-outs at Klaviyo")
        wait_for(lambda: sinks_stats(w)["kl"]["pending"] == 0, what="the queue to drain")
        with kl.lock:
            jobs = [(r.status, len(r.json["data"]["attributes"]["profiles"]["data"]))
                    for r in kl.requests if r.path == "/api/profile-subscription-bulk-delete-jobs"]
        check(all(st == 202 for st, _ in jobs) and max(n for _, n in jobs) == 100 and
              sum(n for _, n in jobs) == 120, f"unsubscribe jobs (status, profiles): {jobs}")
        check(len(kl.subscriptions) == 120 and
              all(s == (ADA_MAIL, "email", "UNSUBSCRIBED", None) for s in kl.subscriptions),
              f"subscriptions: {kl.subscriptions[:3]}")
    finally:
        kl.stop()


def datacloud_conf(dc, extra=""):
    return (f"[sink.dc]\ntype = salesforce\nurl = {dc.login.url}\nlogin_url = {dc.login.url}\n"
            f"ca_file = {dc.login.ca_file}\nclient_id = client-1\nclient_secret = secret-1\n"
            f"source = tillside_pos\nobject = purchase_line\nmax_backoff_s = 2\n{extra}")


def datacloud_consent_and_coupon(w):
    dc = DataCloud(w.certs, "client-1", "secret-1", "tillside_pos", "purchase_line",
                   objects={CONSENT_OBJ: "consent", COUPON_OBJ: "redemption"})
    try:
        queued_together(w, [datacloud_conf(dc, f"consent_object = {CONSENT_OBJ}\n"
                                               f"coupon_object = {COUPON_OBJ}\n")],
                        "dc", "S001-T01-000901")
        wait_for(lambda: dc.by_object[CONSENT_OBJ] and dc.records, timeout=60,
                 what="the consent and the sale in Data Cloud")
        consents = list(dc.by_object[CONSENT_OBJ].values())
        check(len(consents) == 1, f"consent records: {consents}")
        c = consents[0]
        check(c["customer_id"] == ADA[0] and c["email"] == ADA_MAIL and c["store_id"] == "S001"
              and c["terminal"] == "T01" and c["associate"] == "A-17" and
              c["personalization"] == "withdrawn" and c["email_consent"] == "withdrawn" and
              c["sms_consent"] == "" and c["consent_id"], f"consent record: {c}")
        # One object per request, every one taken (a record of another object
        # in the request is refused by the schema check).
        with dc.tenant.lock:
            answered = [(r.path, r.status) for r in dc.tenant.requests]
        check(all(s == 202 for _, s in answered), f"tenant answers: {answered}")
        objs = {o for o, _ in dc.inserts}
        check({"purchase_line", CONSENT_OBJ} <= objs, f"objects inserted: {objs}")
        redeem(w)
        wait_for(lambda: dc.by_object[COUPON_OBJ], timeout=60, what="the redemption record")
        wait_for(lambda: sinks_stats(w)["dc"]["pending"] == 0, what="the queue to drain")
        red = list(dc.by_object[COUPON_OBJ].values())
        check(len(red) == 1 and red[0]["coupon_code"] == "SPRING10" and
              red[0]["coupon_name"] == "10 % off a jacket" and red[0]["order_id"] == "R-9" and
              red[0]["customer_id"] == ADA[0] and red[0]["store_id"] == "S001" and
              red[0]["redemption_id"].endswith("-SPRING10"), f"redemption records: {red}")
        check(len(dc.by_object[CONSENT_OBJ]) == 1 and not dc.resent,
              f"sent again: {dc.resent}")
        st = sinks_stats(w)["dc"]
        check(st["dead"] == 0, f"sink stats: {st}")
    finally:
        dc.stop()


def datacloud_check_config(w):
    base = ("[sink.dc]\ntype = salesforce\nurl = https://acme.my.salesforce.com\n"
            "client_id = c\nclient_secret = s\nsource = tillside_pos\nobject = purchase_line\n")
    # No send, no objects: purchases and returns only.
    conf = w.hub_conf(extra="\n" + base)
    r = run([HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(r.returncode == 0 and
          "sink dc: salesforce at https://acme.my.salesforce.com, send = purchases, returns\n"
          in r.stdout, f"default send: {r.returncode} {r.stdout!r} {r.stderr!r}")
    # With the objects named, the default takes consent and coupons too.
    conf = w.hub_conf(extra="\n" + base + f"consent_object = {CONSENT_OBJ}\n"
                      f"coupon_object = {COUPON_OBJ}\n")
    r = run([HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(r.returncode == 0 and "send = purchases, returns, consent, coupons\n" in r.stdout,
          f"default send with objects: {r.stdout!r} {r.stderr!r}")
    # send = consent (or coupons) without its object: refused at the send line (and
    # run refuses it the same way); a bad object name at its own line.
    for what, extra, key, words in (
            ("send = consent without consent_object", "send = purchases, consent\n", "send",
             "consent needs consent_object"),
            ("send = coupons without coupon_object", "send = coupons\n", "send",
             "coupons needs coupon_object"),
            ("a consent_object that is no API name", "consent_object = no such!\n",
             "consent_object", "API name"),
            ("a Klaviyo list_id that is not one", None, "list_id", "Klaviyo list id")):
        text = (base + extra if extra else
                "[sink.dc]\ntype = klaviyo\nurl = https://a.klaviyo.com\napi_key = k\n"
                "list_id = not/one\n")
        refused_at_key(w, what, text, "sink.dc", key, words)

if __name__ == "__main__":
    main({"klaviyo_consent_and_coupon": klaviyo_consent_and_coupon,
          "klaviyo_returns_keyed_by_return": klaviyo_returns_keyed_by_return,
          "klaviyo_unsubscribe_batches_of_100": klaviyo_unsubscribe_batches_of_100,
          "datacloud_consent_and_coupon": datacloud_consent_and_coupon,
          "datacloud_check_config": datacloud_check_config})
