"""Predictions on the card (docs/PROTOCOL.md "Predictions"): what a CDP
predicts, sent as profile traits through /v1/batch or a source adapter, shows
at the till as bands and a plain-language hint with its source and as-of date,
never as the raw score; hidden once consent is withdrawn and for a store listed
in [predictions] stores_off; the page in Chromium shows the hint."""
import json
import os
import subprocess
import shutil
import time

import test_sources
import tslib
from tslib import check, wait_for

BROWSER_DIR = os.path.join(os.environ.get("TS_SRC_DIR", os.path.join(
    os.path.dirname(__file__), "../..")), "tests", "browser")

# Klaviyo's profile "predictive_analytics" object, fields as the Profiles API
# documents them (https://developers.klaviyo.com/en/reference/get_profile).
# Odd numbers, so their absence from what terminals get is meaningful.
def klaviyo_pa(next_order):
    return {"historic_clv": 77.31, "predicted_clv": 4321.98, "total_clv": 4399.29,
            "historic_number_of_orders": 9, "predicted_number_of_orders": 3.17,
            "average_days_between_orders": 41, "average_order_value": 63.47,
            "churn_probability": 0.8765, "expected_date_of_next_order": next_order}


RAW = ("4321.98", "0.8765", "77.31", "63.47", "3.17", "4399.29")
CONF = "[predictions]\nstores_off = S002\nvalue_cohort_traits = predicted_ltv_pct\n"


def day(offset_days):
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + offset_days * 86400))


def feed_text(w, cert):
    s, body = w.hub_request("GET", "/v1/feed?limit=1000", cert=cert)
    check(s == 200, f"feed as {cert}: {s} {body}")
    return json.dumps(body)


def feed_cards(w, cert):
    s, body = w.hub_request("GET", "/v1/feed?limit=1000", cert=cert)
    check(s == 200, f"feed as {cert}: {s} {body}")
    return {it["card"].get("name"): it["card"] for it in body["items"] if it.get("card")}


def no_raw(text, where):
    for r in RAW:
        check(r not in text, f"raw score {r} in {where}")


def scan_card(w, code):
    s, sess = w.api("POST", "/api/v1/scan", {"code": code})
    check(s == 200 and sess.get("status") == "found", f"scan {code}: {s} {sess}")
    return sess["card"]


def batch_world(w):
    """Ada (S001): Klaviyo's predictive_analytics as Segment traits; Dan
    (S002, a store with hints off): Shopify's RFM group and a Segment
    Predictions cohort."""
    w.start_hub(extra=CONF)
    ada = tslib.customer_batch()
    ada[0]["traits"]["predictive_analytics"] = klaviyo_pa(day(3))
    dan = tslib.customer_batch(user="u-dan", loyalty="2000000000046", name="Dan Elsewhere",
                               store="S002")
    dan[0]["traits"].update({"rfm_group": "CHAMPIONS", "predicted_ltv_pct": 0.95})
    s, body = w.send_batch(ada + dan)
    check(s == 200, f"batch: {s} {body}")
    w.pki("issue", "--dir", w.certs, "--cn", "T02", "--ou", "S002", "--o", "acme",
          "--out", f"{w.certs}/t02")


def batch_bands_on_card(w):
    batch_world(w)
    p = feed_cards(w, "t01")["Ada Lovelace"].get("prediction")
    check(p is not None, "no prediction on Ada's card in the S001 feed")
    check(p["value"]["band"] == "top" and p["churn"]["band"] == "high",
          f"bands: {p}")
    check(p["value"]["source"] == "predictive_analytics.predicted_clv", f"source: {p}")
    check(p["value"]["as_of"] == day(0), f"as of: {p}")
    check(p["next_order"]["date"] == day(3) and p["next_order"]["due"] is True,
          f"next order: {p}")
    check(p["hint"] == "valued_drifting", f"hint: {p}")
    no_raw(feed_text(w, "t01"), "the S001 feed")
    # S002 has hints off: Dan's card comes without the member at all
    text = feed_text(w, "t02")
    check("Dan Elsewhere" in text and "prediction" not in text,
          f"S002's feed carries predictions: {text[:400]}")
    # and a lookup from S002 (a customer not in its slice) comes without it too
    s, body = w.hub_request("GET", "/v1/feed?limit=1000", cert="t01")
    key = next(it["keys"][0] for it in body["items"] if it["card"].get("name") == "Ada Lovelace")
    s, a1 = w.hub_request("GET", f"/v1/lookup?key={key}", cert="t01")
    s2, a2 = w.hub_request("GET", f"/v1/lookup?key={key}", cert="t02")
    check(s == 200 and "prediction" in a1["card"], f"S001 lookup: {s} {a1}")
    check(s2 == 200 and "prediction" not in a2["card"] and a2["card"]["name"] == "Ada Lovelace",
          f"S002 lookup: {s2} {a2}")
    w.start_agent()
    w.wait_cards(1)
    card = scan_card(w, "2000000000015")
    check(card.get("prediction", {}).get("hint") == "valued_drifting", f"agent card: {card}")
    no_raw(json.dumps(card), "the agent's card")
    # the terminal's text view (render.c, as `tillside watch` shows it)
    out = w.cli("scan", "2000000000015").stdout
    check("loyal customer, not seen for a while" in out and "value top" in out
          and "churn risk high" in out and "next order due now" in out, f"scan text:\n{out}")
    # consent withdrawn: the prediction leaves the card at the till
    s, _ = w.send_batch([{"type": "identify", "userId": "u-ada", "messageId": "ada-off",
                          "traits": {"consent": {"personalization": False}}}])
    check(s == 200, "consent withdrawal")
    wait_for(lambda: "prediction" not in scan_card(w, "2000000000015"),
             what="the prediction gone after consent was withdrawn")
    print("batch: bands on the S001 card, none for S002, gone without consent")


def sources_bands_on_card(w):
    """The same through the Klaviyo and Braze adapters."""
    test_sources.start_hub_with_sources(w)
    k = test_sources.fixture("klaviyo_webhook", "u-kl", "2000000000053", "kl-p")
    for d in k["data"]:
        for inc in d["payload"].get("included", []):
            if inc.get("type") == "profile":
                inc["attributes"]["predictive_analytics"] = klaviyo_pa(day(40))
    test_sources.push(w, "klaviyo", k)
    b = test_sources.fixture("braze_currents", "u-bz", "2000000000060", "bz-p")
    # Braze's churn prediction as the Current sends a custom event's
    # properties: the category names of Braze Predictive Churn
    # (https://www.braze.com/docs/user_guide/brazeai/predictive_suite/predictive_churn/prediction_analytics/)
    for ev in b["events"]:
        cp = ev["properties"].get("custom_properties", {})
        if "loyalty_id" in cp:
            cp.update({"churn_risk_category": "Medium Risk", "first_name": "Bo"})
    test_sources.push(w, "braze", b)
    cards = feed_cards(w, "t01")
    pk = cards["Ada Lovelace"]["prediction"] if "Ada Lovelace" in cards else None
    check(pk and pk["value"]["band"] == "top" and pk["churn"]["band"] == "high"
          and pk["next_order"]["due"] is False and pk["hint"] == "valued_drifting",
          f"klaviyo: {pk}")
    pb = cards.get("Bo Lovelace", {}).get("prediction")
    check(pb and pb["churn"]["band"] == "medium" and pb["churn"]["source"] == "churn_risk_category"
          and "value" not in pb and "hint" not in pb, f"braze: {pb}")
    no_raw(feed_text(w, "t01"), "the feed")
    print(f"klaviyo {pk}\nbraze {pb}")


def page_shows_hint(w):
    missing = [t for t in ("node", "/usr/bin/chromium") if not shutil.which(t)]
    if missing or not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        print(f"skipped: {missing or 'playwright-core'} missing (./run test installs them)")
        raise SystemExit(77)
    w.start_hub(extra=CONF)
    ada = tslib.customer_batch()
    ada[0]["traits"]["predictive_analytics"] = klaviyo_pa(day(3))
    bea = tslib.customer_batch(user="u-bea", loyalty="2000000000022", name="Bea Private",
                               consent=False)
    bea[0]["traits"]["rfm_group"] = "CHAMPIONS"
    s, body = w.send_batch(ada + bea)
    check(s == 200, f"batch: {s} {body}")
    w.start_agent()
    w.wait_cards(2)
    env = dict(os.environ, TS_API=f"http://127.0.0.1:{w.api_port}", TS_TOKEN=w.token(),
               TS_RAW=",".join(RAW))
    p = subprocess.run(["node", os.path.join(BROWSER_DIR, "predict_test.js")], env=env,
                       capture_output=True, text=True, timeout=300)
    print(p.stdout, end="")
    check(p.returncode == 0, f"predict_test.js failed:\n{p.stdout}\n{p.stderr}")


def check_config_validates(w):
    conf = w.hub_conf(extra=CONF)
    p = tslib.run([tslib.HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(p.returncode == 0 and "predictions: hints on" in p.stdout
          and "1 stores without hints (S002)" in p.stdout, f"check-config: {p.stdout}{p.stderr}")
    for bad, key in (("churn_high = 2", "churn_high"), ("value_traits = a b", "value_traits"),
                     ("value_top = 10", "value_top"), ("hints = sometimes", "hints")):
        p = tslib.run([tslib.HUB_BIN, "check-config", "-c",
                       w.hub_conf(extra=f"[predictions]\n{bad}\n")], check_rc=False)
        check(p.returncode != 0 and f"[predictions] {key}" in p.stderr, f"{bad}: {p.stderr}")


if __name__ == "__main__":
    tslib.main({"batch_bands_on_card": batch_bands_on_card,
                "sources_bands_on_card": sources_bands_on_card,
                "page_shows_hint": page_shows_hint,
                "check_config_validates": check_config_validates})
