"""Inbound CDP sources (docs/PROTOCOL.md "Sources"): each vendor's webhook,
signed as the vendor signs it, puts a customer's online activity on the card
at the till; a bad signature, a stale timestamp and a replay are refused and
store nothing; an event sent twice counts once.

The requests go to whichever listener serves /v1/sources/ (post_source takes
the port: the main listener today, [hub] cdp_listen once it exists)."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import time

import tslib
from tslib import check

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "sources")

SOURCES = {
    "seg": {"type": "segment_webhook", "secret": "seg-shared-secret-0123", "extra": "replay_window_s = 600"},
    "rs": {"type": "rudderstack_webhook", "secret": "rs-header-secret-0123", "extra": "header = X-Rudder-Secret"},
    "braze": {"type": "braze_currents", "secret": "braze-bearer-token-0123", "extra": ""},
    "klaviyo": {"type": "klaviyo_webhook", "secret": "klaviyo-signing-secret-0123", "extra": ""},
    "bloomreach": {"type": "bloomreach_webhook", "secret": "bloomreach-password-0123",
                   "extra": "user = bloomreach"},
    "sfdc": {"type": "salesforce_data_action", "secret": "sfdc-secret-key-0123456789", "extra": ""},
}


def sources_conf():
    return "".join(f"\n[source.{n}]\ntype = {s['type']}\nsecret = {s['secret']}\n{s['extra']}\n"
                   for n, s in SOURCES.items())


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def fixture(vendor_type, user, loyalty, run, now=None):
    now = time.time() if now is None else now
    with open(os.path.join(FIXTURES, vendor_type + ".json")) as f:
        text = f.read()
    text = (text.replace('"@NOW_S@"', str(int(now))).replace("@NOW_ISO@", iso(now))
            .replace("@USER@", user).replace("@LOYALTY@", loyalty).replace("@RUN@", run))
    return json.loads(text)


def signed(name, body, now=None, secret=None):
    """Headers for body (bytes) as the vendor of source name sends them."""
    s = SOURCES[name]
    key = (secret or s["secret"]).encode()
    t = s["type"]
    h = {"Content-Type": "application/json"}
    if t == "segment_webhook":
        # X-Signature: hex HMAC-SHA1 of the body
        # (https://segment.com/docs/connections/destinations/catalog/actions-webhook/)
        h["X-Signature"] = hmac.new(key, body, hashlib.sha1).hexdigest()
    elif t == "rudderstack_webhook":
        h["X-Rudder-Secret"] = key.decode()  # a header of the destination's settings
    elif t == "braze_currents":
        h["Authorization"] = "Bearer " + key.decode()  # the Current's bearer token
    elif t == "klaviyo_webhook":
        # hex HMAC-SHA256 of body + Klaviyo-Timestamp
        # (https://developers.klaviyo.com/en/docs/working_with_system_webhooks)
        ts = iso(time.time() if now is None else now)
        h["Klaviyo-Timestamp"] = ts
        h["Klaviyo-Webhook-Id"] = "01HWEBHOOK"
        h["Klaviyo-Signature"] = hmac.new(key, body + ts.encode(), hashlib.sha256).hexdigest()
    elif t == "bloomreach_webhook":
        h["Authorization"] = "Basic " + base64.b64encode(b"bloomreach:" + key).decode()
    elif t == "salesforce_data_action":
        # x-signature: Base64 HMAC-SHA256 of the payload (Data Cloud's Java sample)
        h["x-signature"] = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
    return h


def start_hub_with_sources(w):
    """A hub serving the sources on its CDP listener ([hub] cdp_listen,
    server-only TLS), where a vendor's webhook reaches it."""
    w.cdp_port = tslib.free_port()
    w.start_hub(extra=f"[hub]\ncdp_listen = 127.0.0.1:{w.cdp_port}\n" + sources_conf())
    tslib.wait_for(lambda: w._port_open(w.cdp_port), what="the CDP listener")


def post_source(w, name, body, headers, port=None):
    """POST /v1/sources/NAME on the listener that serves sources: port, else
    the world's cdp_port when it has one, else the main listener (which asks
    for the CDP's client certificate)."""
    port = port or getattr(w, "cdp_port", None) or w.hub_port
    # The CDP listener asks for no client certificate: the vendor has none.
    ctx = w.hub_ssl(None if port == getattr(w, "cdp_port", None) else "cdp")
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        conn.request("POST", f"/v1/sources/{name}", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        try:
            return r.status, json.loads(data) if data else None
        except json.JSONDecodeError:
            return r.status, data
    finally:
        conn.close()


def send(w, name, payload, now=None, secret=None):
    body = json.dumps(payload).encode()
    return post_source(w, name, body, signed(name, body, now, secret))


def push(w, name, payload):
    """The vendor's delivery of payload: RudderStack's webhook sends one
    event per request, the others the whole payload."""
    if SOURCES[name]["type"] == "rudderstack_webhook":
        for ev in payload:
            s, body = send(w, name, ev)
            check(s == 200, f"{name}: {s} {body}")
        return
    s, body = send(w, name, payload)
    check(s == 200, f"{name}: {s} {body}")
    check(body.get("accepted", 0) >= 5, f"{name}: too few accepted: {body}")


def source_metric(w, name, result):
    s, text = w.hub_request("GET", "/metrics")
    check(s == 200, f"/metrics: {s}")
    want = f'tillside_hub_source_events_total{{source="{name}",result="{result}"}} '
    for line in text.splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    raise tslib.Fail(f"no {want.strip()} in /metrics")


def interests_of(card):
    return {i["product_id"]: i for i in card.get("interests", [])}


def activity_on_card(name):
    def test(w):
        start_hub_with_sources(w)
        t = SOURCES[name]["type"]
        loyalty = tslib.ean13("20000000%04d" % (list(SOURCES).index(name) + 1))
        push(w, name, fixture(t, f"u-{name}", loyalty, f"{name}-1"))
        check(source_metric(w, name, "unknown") >= 1, f"{name}: the unused event is not counted")
        w.start_agent()
        w.wait_cards(1)
        s, sess = w.api("POST", "/api/v1/scan", {"code": loyalty})
        check(s == 200 and sess.get("status") == "found", f"{name}: scan {s} {sess}")
        card = sess["card"]
        check(card.get("name") == "Ada Lovelace", f"{name}: name {card.get('name')}")
        check(card.get("tier") == "gold", f"{name}: tier {card.get('tier')}")
        it = interests_of(card)
        check("SKU-RUN-42" in it and it["SKU-RUN-42"]["signal"] == "viewed"
              and it["SKU-RUN-42"]["count"] == 3, f"{name}: viewed x3 missing: {it}")
        check("SKU-JKT-7" in it and it["SKU-JKT-7"]["signal"] == "cart",
              f"{name}: cart item missing: {it}")
        print(f"{name}: {card.get('name')} {sorted(it)}")
    return test


def stored(w):
    st = w.hub_stats()
    return st["customers"], st["events"]


def refused_store_nothing(w):
    """For every source: a wrong secret, and (where the vendor signs a time)
    a stale one, are 401; the same delivery again is 409; none stores a
    thing. The same events in a new delivery count as duplicates."""
    start_hub_with_sources(w)
    for i, name in enumerate(SOURCES):
        t = SOURCES[name]["type"]
        loyalty = tslib.ean13("21000000%04d" % (i + 1))
        payload = fixture(t, f"r-{name}", loyalty, f"{name}-r")
        before = stored(w)
        s, body = send(w, name, payload, secret="wrong-secret-0123456789")
        check(s == 401, f"{name}: bad signature answered {s} {body}")
        check(stored(w) == before, f"{name}: a badly signed request stored something")
        check(source_metric(w, name, "bad_signature") == 1, f"{name}: bad signature not counted")
        if t in ("klaviyo_webhook", "salesforce_data_action", "segment_webhook"):
            old = time.time() - 2 * 86400
            stale = fixture(t, f"r-{name}", loyalty, f"{name}-r", now=old)
            s, body = send(w, name, stale, now=old)
            check(s == 401 and "stale" in json.dumps(body), f"{name}: stale answered {s} {body}")
            check(stored(w) == before, f"{name}: a stale request stored something")
            check(source_metric(w, name, "stale") == 1, f"{name}: stale not counted")
        if t == "rudderstack_webhook":
            payload = payload[1]  # one event per request
        raw = json.dumps(payload).encode()
        hdrs = signed(name, raw)
        s, body = post_source(w, name, raw, hdrs)
        check(s == 200, f"{name}: first delivery {s} {body}")
        after = stored(w)
        s, body = post_source(w, name, raw, hdrs)
        if t == "braze_currents":  # Braze retries a 409 until it disables the Current
            check(s == 200 and body.get("replay") is True and body.get("accepted") == 0,
                  f"{name}: replay answered {s} {body}")
        else:
            check(s == 409, f"{name}: replay answered {s} {body}")
        check(stored(w) == after, f"{name}: the replay stored something")
        check(source_metric(w, name, "replay") == 1, f"{name}: replay not counted")
        # The same events in a new delivery (re-serialized, re-signed): a
        # vendor's retry after a lost answer. Counted once.
        raw2 = json.dumps(payload, indent=1).encode()
        s, body = post_source(w, name, raw2, signed(name, raw2))
        check(s == 200 and body.get("accepted") == 0 and body.get("duplicates", 0) >= 1,
              f"{name}: duplicate delivery {s} {body}")
        check(stored(w) == after, f"{name}: duplicates stored something")
        check(source_metric(w, name, "duplicate") >= 1, f"{name}: duplicates not counted")
        print(f"{name}: bad signature, stale, replay refused; duplicates counted")


def bad_records(w):
    """Answers per vendor's retry rules: Bloomreach (a 4xx stops its
    webhook) gets a 200 that stores the good records and lists the bad one;
    Braze (a 400 makes it resend one by one) gets a 400 for a truly bad
    event, and nothing is stored."""
    start_hub_with_sources(w)
    good = tslib.ean13("220000000001")
    p = fixture("bloomreach_webhook", "u-good", good, "bl-bad")
    p["events"].append({"event_id": "bl-bad-x", "type": "customer_update", "timestamp": int(time.time()),
                        "customer_ids": {"registered": "u-long"}, "customer": {"loyalty_id": "9" * 600}})
    s, body = send(w, "bloomreach", p)
    check(s == 200, f"bloomreach: one bad record must not fail the request: {s} {body}")
    check(body.get("rejected") == 1 and "bl-bad-x" in json.dumps(body.get("errors"))
          and "loyalty_id" in json.dumps(body.get("errors")),
          f"bloomreach: the bad record is not reported: {body}")
    check(w.hub_stats()["customers"] == 1, "bloomreach: the good records were not stored")
    check(source_metric(w, "bloomreach", "rejected") == 1, "bloomreach: rejected not counted")
    # Even a body it cannot read is a 200 with the error: a 400 would stop the
    # webhook for every customer
    # (https://documentation.bloomreach.com/engagement/docs/creating-api-endpoint-for-webhooks).
    raw = b'{"events": [{"event_id": '
    s, body = post_source(w, "bloomreach", raw, signed("bloomreach", raw))
    check(s == 200 and body.get("success") is False and body.get("errors"),
          f"bloomreach: unreadable body answered {s} {body}")
    check(w.hub_stats()["customers"] == 1, "bloomreach: the unreadable body stored something")
    before = stored(w)
    b = fixture("braze_currents", "u-braze", tslib.ean13("220000000002"), "bz-bad")
    b["events"][0]["properties"]["custom_properties"]["loyalty_id"] = "9" * 600
    s, body = send(w, "braze", b)
    check(s == 400 and "loyalty_id" in json.dumps(body), f"braze: truly bad event: {s} {body}")
    check(stored(w) == before, "braze: a refused request stored something")
    # Unknown event types alone are no reason for a 400.
    u = {"events": [fixture("braze_currents", "u-braze", good, "bz-u")["events"][-1]]}
    s, body = send(w, "braze", u)
    check(s == 200 and body.get("ignored") == 1, f"braze: unknown events must be a 2xx: {s} {body}")
    s, body = post_source(w, "nosuch", b"{}", {"Content-Type": "application/json"})
    check(s == 404, f"unknown source answered {s}")


def check_config_lists_sources(w):
    conf = w.hub_conf(extra=sources_conf())
    p = tslib.run([tslib.HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(p.returncode == 0, f"check-config: {p.stdout}{p.stderr}")
    for n, s in SOURCES.items():
        check(f"source {n}: {s['type']}" in p.stdout, f"check-config does not list {n}: {p.stdout}")
        check(s["secret"] not in p.stdout + p.stderr, "check-config printed a secret")
    bad = w.hub_conf(extra="\n[source.x]\ntype = braze_currents\nsecret = short\n")
    p = tslib.run([tslib.HUB_BIN, "check-config", "-c", bad], check_rc=False)
    check(p.returncode != 0 and "[source.x] secret" in p.stderr, f"short secret: {p.stderr}")
    bad = w.hub_conf(extra="\n[source.x]\ntype = mailchimp\nsecret = 0123456789abcdef\n")
    p = tslib.run([tslib.HUB_BIN, "check-config", "-c", bad], check_rc=False)
    check(p.returncode != 0 and "[source.x] type" in p.stderr, f"bad type: {p.stderr}")


def bad_signatures_throttled(w):
    """After [throttle] free_failures bad signatures from one address, that
    address gets 429 with a Retry-After that grows with each further
    failure, before its signature is even checked; nothing is stored; a
    good delivery afterwards resets it; counted, and logged a bounded number
    of times."""
    w.cdp_port = tslib.free_port()
    w.start_hub(extra=f"[hub]\ncdp_listen = 127.0.0.1:{w.cdp_port}\n[throttle]\n"
                      f"free_failures = 3\nmax_delay_s = 4\n" + sources_conf())
    tslib.wait_for(lambda: w._port_open(w.cdp_port), what="the CDP listener")
    payload = fixture("braze_currents", "u-t", tslib.ean13("220000000001"), "thr")
    before = stored(w)
    waits = []
    for i in range(3):
        s, body = send(w, "braze", payload, secret="wrong-secret-0123456789")
        check(s == 401, f"bad signature {i}: {s} {body}")
    for _ in range(3):
        # shut out: even the right secret is not looked at
        s, body = send(w, "braze", payload)
        check(s == 429 and body.get("retry_after", 0) >= 1, f"shut out: {s} {body}")
        waits.append(body["retry_after"])
        tslib.wait_for(lambda: send(w, "braze", payload, secret="wrong-secret-0123456789")[0]
                       == 401, timeout=15, what="the shut-out to end")
    check(waits[0] < waits[-1] <= 4, f"Retry-After does not grow to the cap: {waits}")
    check(stored(w) == before, "a throttled or badly signed request stored something")
    check(source_metric(w, "braze", "throttled") >= 3, "429s not counted")
    s, text = w.hub_request("GET", "/metrics")
    fails = tslib.metric(text.replace('{secret="source_signature"}', ""),
                         "tillside_hub_auth_failures_total")
    check(fails is not None and fails >= 6, f"failures not counted: {fails}")
    # the right secret once the shut-out is over goes through and resets it
    s, body = tslib.wait_for(lambda: (lambda r: r[0] != 429 and r)(send(w, "braze", payload)),
                             timeout=15, what="a good delivery after the shut-out")
    check(s == 200 and body.get("accepted", 0) >= 1, f"good delivery: {s} {body}")
    s, body = send(w, "braze", payload, secret="wrong-secret-0123456789")
    check(s == 401, f"after the reset the first failure is free again: {s} {body}")
    logged = w.hub.log().count("failed source signature attempts")
    check(1 <= logged <= 4, f"{logged} throttle log lines")
    print(f"Retry-After {waits}, {fails:.0f} failures, {logged} log lines")


TESTS = {f"{n}_activity_on_card": activity_on_card(n) for n in SOURCES}
TESTS.update({"refused_store_nothing": refused_store_nothing, "bad_records": bad_records,
              "check_config_lists_sources": check_config_lists_sources,
              "bad_signatures_throttled": bad_signatures_throttled})

if __name__ == "__main__":
    tslib.main(TESTS)
