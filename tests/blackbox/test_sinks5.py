"""Black-box tests of consent and redeemed offers at Braze, Bloomreach and
Iterable (issues 16 and 18), over the real hub and a real agent against the
vendors' contract servers (tests/contract/*_server.py):

- a consent recorded at a till (POST /api/v1/consent) arrives once at each,
  mapped to the vendor's own shape: Braze's email_subscribe and custom
  attributes in /users/track's attributes, Bloomreach's consent events
  (action, category, valid_until), Iterable's profile fields through
  /api/users/update;
- an offer redeemed at the till (POST /api/v1/offers/redeem) arrives once at
  each as the custom event coupon_redeemed;
- at Iterable, a purchase, a consent and a redeemed offer queued while it is
  away each go to their own endpoint when it is back, and a backlog of 40
  purchases drains with no answer 429 from the first second on.
"""
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "contract"))
from tslib import check, customer_batch, main, wait_for  # noqa: E402
from bloomreach_server import Bloomreach  # noqa: E402
from braze_server import BrazeServer  # noqa: E402
from iterable_server import Iterable  # noqa: E402
from test_offers import iso, offers_batch  # noqa: E402
from test_purchases_hub import online_customer, post  # noqa: E402
from test_sinks import sales, sinks_stats, start  # noqa: E402

FAST = "[outbox]\nbackoff_ms = 100\nbackoff_max_ms = 1000\n"
ADA = ("u-ada", "2000000000015", "Ada Lovelace")
BZ_KEY, BR_TOKEN, IT_KEY = "braze-rest-key", "0a1b2c3d-4e5f", "it-key"


def braze_conf(bz, extra=""):
    return (f"[sink.bz]\ntype = braze\nurl = {bz.url}\nca_file = {bz.ca_file}\n"
            f"api_key = {BZ_KEY}\nmax_backoff_s = 2\n{extra}")


def bloomreach_conf(br, extra=""):
    return (f"[sink.br]\ntype = bloomreach\nurl = {br.url}\nca_file = {br.ca_file}\n"
            f"project_token = {BR_TOKEN}\nkey_id = key-id-1\nkey_secret = key-secret-1\n"
            f"max_backoff_s = 2\n{extra}")


def iterable_conf(it, extra=""):
    return (f"[sink.it]\ntype = iterable\nurl = {it.url}\nca_file = {it.ca_file}\n"
            f"api_key = {IT_KEY}\nmax_backoff_s = 2\n{extra}")


def drained(w, *sinks):
    """Every named sink has nothing pending and no dead letter."""
    s = sinks_stats(w)
    return all(s[k]["pending"] == 0 for k in sinks) and s


def till_with_ada(w):
    """Ada (with the offer SPRING10) known to the hub, the S001 till online
    and her card on its screen."""
    st, _ = w.send_batch(customer_batch(user=ADA[0], loyalty=ADA[1], name=ADA[2]))
    check(st == 200, f"CDP batch answered {st}")
    st, _ = w.send_batch(offers_batch([{"code": "SPRING10", "description": "10 % off a jacket",
                                        "expires_at": iso(7)}]))
    check(st == 200, f"offers batch answered {st}")
    w.start_agent(extra=FAST)
    wait_for(lambda: w.status()["link"] == "online", what="the S001 till online")
    wait_for(lambda: (lambda r: r[0] == 200 and r[1]["status"] == "found")(
        w.api("POST", "/api/v1/scan", {"code": ADA[1]})), what="Ada found at S001")


def consent_and_coupon_at_till(w):
    st, body = w.api("POST", "/api/v1/consent", {"personalization": False, "email": False,
                                                 "sms": True, "associate": "A-17"})
    check(st == 202 and body.get("message_id"), f"consent answered {st}: {body}")
    st, r = w.api("POST", "/api/v1/offers/redeem", {"code": "SPRING10", "receipt": "R-1"})
    check(st == 200 and r.get("redeemed"), f"redeem answered {st}: {r}")


def coupon_props_ok(p, what):
    check(p.get("coupon_id") == "SPRING10" and p.get("order_id") == "R-1" and
          p.get("coupon_name") == "10 % off a jacket" and p.get("store") == "S001",
          f"{what}: coupon properties {p}")


def braze_consent_and_coupon(w):
    """Braze: the consent is one attributes object for Ada (e-mail
    unsubscribed, SMS into the configured subscription group,
    personalization_consent false), the offer one coupon_redeemed event."""
    bz = BrazeServer(w.certs, BZ_KEY)
    try:
        start(w, braze_conf(bz, "sms_group = sg-sms-1\n"))
        till_with_ada(w)
        consent_and_coupon_at_till(w)
        wait_for(lambda: bz.stored("attributes") and bz.stored("events"), timeout=60,
                 what="the consent and the coupon at Braze")
        wait_for(lambda: drained(w, "bz"), timeout=60, what="the Braze queue to drain")
        attrs, evs = bz.stored("attributes"), bz.stored("events")
        check(len(attrs) == 1 and len(evs) == 1, f"at Braze: {attrs} {evs}")
        a = attrs[0]
        check(a.get("external_id") == ADA[0] and a.get("email_subscribe") == "unsubscribed" and
              a.get("personalization_consent") is False and
              a.get("subscription_groups") == [{"subscription_group_id": "sg-sms-1",
                                               "subscription_state": "subscribed"}] and
              a.get("_update_existing_only") is False and "sms_consent" not in a,
              f"the consent at Braze: {a}")
        e = evs[0]
        check(e["name"] == "coupon_redeemed" and e.get("external_id") == ADA[0],
              f"the coupon at Braze: {e}")
        coupon_props_ok(e["properties"], "Braze")
        check(bz.ledger.duplicates == 0 and sinks_stats(w)["bz"]["dead"] == 0,
              "duplicates or dead letters at Braze")
    finally:
        bz.stop()


def bloomreach_consent_and_coupon(w):
    """Bloomreach: one consent event per channel asked (e-mail and
    personalization rejected, SMS accepted until further notice), under the
    configured categories; the offer one coupon_redeemed event."""
    br = Bloomreach(w.certs, BR_TOKEN, "key-id-1", "key-secret-1")
    try:
        start(w, bloomreach_conf(br, "consent_email = newsletter\n"))
        till_with_ada(w)
        consent_and_coupon_at_till(w)
        wait_for(lambda: len(br.of_type("consent")) >= 3 and br.of_type("coupon_redeemed"),
                 timeout=60, what="the consent and the coupon at Bloomreach")
        wait_for(lambda: drained(w, "br"), timeout=60, what="the Bloomreach queue to drain")
        got = {d["properties"]["category"]: d for d in br.of_type("consent")}
        check(len(br.of_type("consent")) == 3 and set(got) == {"newsletter", "sms",
                                                                "personalization"},
              f"consent events: {br.of_type('consent')}")
        for cat, action in (("newsletter", "reject"), ("sms", "accept"),
                            ("personalization", "reject")):
            d = got[cat]
            p = d["properties"]
            check(d["customer_ids"] == {"registered": ADA[0]} and p["action"] == action and
                  isinstance(p["timestamp"], int) and p.get("store") == "S001",
                  f"consent {cat}: {d}")
            check((p.get("valid_until") == "unlimited") == (action == "accept"),
                  f"consent {cat}: valid_until {p.get('valid_until')}")
        cps = br.of_type("coupon_redeemed")
        check(len(cps) == 1 and cps[0]["customer_ids"] == {"registered": ADA[0]},
              f"coupon at Bloomreach: {cps}")
        coupon_props_ok(cps[0]["properties"], "Bloomreach")
        check(br.twice == [] and sinks_stats(w)["br"]["dead"] == 0,
              "duplicates or dead letters at Bloomreach")
    finally:
        br.stop()


def iterable_kinds_own_endpoints(w):
    """Iterable: a purchase, a consent and a redeemed offer queued while it is
    away go, once it is back, each to its own endpoint: trackPurchase,
    users/update (the choices as profile fields) and events/track
    (coupon_redeemed under the stored event's id)."""
    it = Iterable(w.certs, IT_KEY)
    try:
        it.down = True
        start(w, iterable_conf(it))
        cid = online_customer(w)
        till_with_ada(w)
        consent_and_coupon_at_till(w)
        st, ans = post(w, sales(1, cid, prefix="m-it"))
        check(st == 200 and len(ans["accepted"]) == 1, f"purchase answered {st}: {ans}")
        wait_for(lambda: sinks_stats(w)["it"]["pending"] == 3, timeout=30,
                 what="the three queued for Iterable")
        it.down = False
        wait_for(lambda: it.purchases and it.updates and it.events, timeout=60,
                 what="all three at Iterable")
        wait_for(lambda: drained(w, "it"), timeout=60, what="the Iterable queue to drain")
        with it.lock:
            paths = sorted(r.path for r in it.requests if r.status == 200)
            bodies = {r.path: r.json for r in it.requests if r.status == 200}
        check(paths == ["/api/commerce/trackPurchase", "/api/events/track", "/api/users/update"],
              f"answered requests: {paths}")
        check("items" in bodies["/api/commerce/trackPurchase"] and
              "dataFields" in bodies["/api/users/update"] and
              bodies["/api/events/track"].get("eventName") == "coupon_redeemed",
              f"each endpoint got its own kind: {bodies}")
        u = bodies["/api/users/update"]
        check(u.get("userId") == ADA[0] and u.get("preferUserId") is True, f"update: {u}")
        f = it.users[ADA[0]]
        check(f.get("email_consent") is False and f.get("sms_consent") is True and
              f.get("personalization_consent") is False and f.get("consent_store") == "S001",
              f"Ada's profile fields at Iterable: {f}")
        (eid, ev), = it.events.items()
        check(eid and ev.get("userId") == ADA[0], f"the coupon event: {ev}")
        coupon_props_ok(ev["dataFields"], "Iterable")
        check(it.repeats == [] and sinks_stats(w)["it"]["dead"] == 0,
              "repeats or dead letters at Iterable")
    finally:
        it.stop()


def iterable_backlog_no_429(w):
    """40 purchases waiting when the hub starts drain into Iterable's fixed
    one-second window (10 requests) without one answer 429: the sink does not
    start with a burst."""
    it = Iterable(w.certs, IT_KEY)
    try:
        it.down = True
        start(w, iterable_conf(it))
        cid = online_customer(w)
        for i in range(0, 40, 20):
            st, ans = post(w, sales(20, cid, prefix=f"m-b{i}", start_no=2000 + i))
            check(st == 200 and len(ans["accepted"]) == 20, f"purchases answered {st}: {ans}")
        wait_for(lambda: sinks_stats(w)["it"]["pending"] == 40, timeout=30,
                 what="40 queued for Iterable")
        w.hub.stop(sig=signal.SIGTERM)
        it.down = False
        with it.lock:
            it.requests.clear()
        start(w, iterable_conf(it))
        wait_for(lambda: len(it.purchases) == 40, timeout=120, what="the 40 at Iterable")
        check(it.n429() == 0, f"{it.n429()} answers 429 of {it.count()} requests")
        check(it.count() == 40 and it.repeats == [], f"{it.count()} requests for 40 purchases")
    finally:
        it.stop()


TESTS = {f.__name__: f for f in (braze_consent_and_coupon, bloomreach_consent_and_coupon,
                                  iterable_kinds_own_endpoints, iterable_backlog_no_429)}

if __name__ == "__main__":
    main(TESTS)
