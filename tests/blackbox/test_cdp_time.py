"""What a CDP's clients send is read the way Segment reads it: a client whose
clock is 10 days off still has today's views counted as today's (sentAt
clock correction), and a loyalty id too long to keep is refused with the field
named instead of being dropped behind a 200."""
import json
import time

import tslib
from tslib import check


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def skewed_batch(user, loyalty, skew_s):
    """customer_batch as sent by a client whose clock is skew_s off: every
    event stamped and sent by that clock, views 5 minutes before sending."""
    ev = tslib.customer_batch(user=user, loyalty=loyalty, cart=None)
    client_now = time.time() + skew_s
    for e in ev:
        e.pop("timestamp", None)
        e["originalTimestamp"] = iso(client_now - 300)
        e["sentAt"] = iso(client_now)
    return ev


def viewed_label(card, product_id):
    for it in card.get("interests", []):
        if it.get("product_id") == product_id:
            return it
    return None


def clock_skew_corrected(w):
    w.start_hub()
    ada, bob = tslib.ean13("200000000001"), tslib.ean13("200000000002")
    day = 86400
    s, body = w.send_batch(skewed_batch("u-slow", ada, -10 * day))
    check(s == 200, f"slow client's batch: {s} {body}")
    # The fast client sends sentAt on the batch, as Segment's server libraries do.
    ev = skewed_batch("u-fast", bob, 10 * day)
    sent = ev[0]["sentAt"]
    for e in ev:
        del e["sentAt"]
    s, body = w.send_batch(None, raw=json.dumps({"batch": ev, "sentAt": sent}))
    check(s == 200, f"fast client's batch: {s} {body}")
    w.start_agent()
    w.wait_cards(2)
    for code, who in ((ada, "10 days slow"), (bob, "10 days fast")):
        s, sess = w.api("POST", "/api/v1/scan", {"code": code})
        check(s == 200 and sess.get("status") == "found", f"{who}: scan {s} {sess}")
        it = viewed_label(sess["card"], "SKU-RUN-42")
        check(it is not None, f"{who}: the viewed product is not on the card: {sess['card']}")
        # Three views of this week, not "viewed earlier" (count 0) and not
        # a future that decays oddly.
        check(it.get("signal") == "viewed" and it.get("count") == 3,
              f"{who}: expected 3 views this week, got {it}")
        print(f"{who}: {it}")


def long_loyalty_id(w):
    w.start_hub()
    # An app QR whose whole text is the loyalty id fits...
    url = "https://app.example/loyalty?card=" + "7" * 200
    s, body = w.send_batch(tslib.customer_batch(user="u-url", loyalty=url))
    check(s == 200, f"a 233-character loyalty id must be accepted: {s} {body}")
    # ...and one longer than a scanner can deliver is refused, naming the field.
    ev = tslib.customer_batch(user="u-long", loyalty="9" * 600)
    s, body = w.send_batch(ev)
    check(s == 400, f"over-long loyalty id: expected 400, got {s} {body}")
    msg = body.get("error", "") if isinstance(body, dict) else ""
    check("traits.loyalty_id" in msg and "511" in msg, f"the error must name the field: {msg!r}")
    check(w.hub_stats()["customers"] == 1, "nothing from the refused batch may be stored")
    w.start_agent()
    w.wait_cards(1)
    s, sess = w.api("POST", "/api/v1/scan", {"code": url})
    check(s == 200 and sess.get("status") == "found", f"scanning the app QR: {s} {sess}")
    check(sess["card"].get("name") == "Ada Lovelace", f"wrong card: {sess['card']}")


if __name__ == "__main__":
    tslib.main({"clock_skew_corrected": clock_skew_corrected, "long_loyalty_id": long_loyalty_id})
