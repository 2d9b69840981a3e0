"""Black-box tests of the sinks' concurrency and configuration checks: the
real tillside-hub over TLS against the vendors' contract servers
(tests/contract/*_server.py). Several requests of one sink in flight at once
(the vendor's documented max_in_flight, or [sink.NAME] max_in_flight), each
answered on its own, a kill -9 with several in flight losing nothing; and
`check-config` refusing each vendor's own mistakes at the key's line, with
the same message `run` gives."""
import json
import os
import re
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "contract"))
import tslib  # noqa: E402
from tslib import HUB_BIN, check, main, run, wait_for  # noqa: E402
from test_purchases_hub import online_customer, post  # noqa: E402
from test_sinks2 import BloomreachV, dead, pending, purchase  # noqa: E402


def post_many(w, n, cid, prefix="m-c", first=1000):
    for i in range(0, n, 50):
        evs = [purchase(f"{prefix}{j}", f"S001-T01-{first + j:06d}", cid=cid)
               for j in range(i, min(n, i + 50))]
        st, ans = post(w, evs)
        check(st == 200 and len(ans["accepted"]) == len(evs), f"purchases answered {st}: {ans}")


def several_in_flight_kill9(w):
    """Bloomreach allows several requests at once (4 by default): with a slow
    vendor they overlap; a kill -9 with several in flight loses nothing, and
    what goes again is at most the batches that were in flight."""
    v = BloomreachV(w)
    try:
        v.http.delay_s = 0.5  # a slow vendor: requests are in flight when the hub dies
        w.start_hub(extra=v.conf())
        cid = online_customer(w)
        post_many(w, 300, cid)
        wait_for(lambda: v.http.max_active >= 2, timeout=30, what="two requests in flight at once")
        w.hub.stop(sig=signal.SIGKILL)
        at_once = v.http.max_active  # the killed hub's; its cut requests still count a while
        check(at_once <= 4, f"{at_once} requests at once, over Bloomreach's max_in_flight 4")
        before = len(v.delivered())
        check(before < 300, "everything was delivered before the kill")
        v.http.delay_s = 0
        w.start_hub(extra=v.conf())
        wait_for(lambda: len(v.delivered()) == 300, timeout=90, what="all 300 delivered")
        wait_for(lambda: pending(w, v.name) == 0, timeout=30, what="nothing pending")
        check(dead(w, v.name) == 0, "dead letters after a kill")
        got = v.delivered()
        again = sum(n - 1 for n in got.values())
        # 50 commands a request, 3 commands a purchase: a batch touches at most
        # 18 purchases, and at most 4 batches were in flight.
        check(again <= 4 * 18, f"{again} purchases delivered twice after one kill")
        check(429 not in v.http.statuses(), "the vendor answered 429")
        print(f"  most requests at once: {at_once}; {before} purchases delivered "
              f"before the kill, {again} sent again after it")
    finally:
        v.stop()


def max_in_flight_override(w):
    """[sink.NAME] max_in_flight = 1 keeps one request at a time, however slow
    the vendor; every purchase still arrives once."""
    v = BloomreachV(w)
    try:
        v.http.delay_s = 0.2
        w.start_hub(extra=v.conf("max_in_flight = 1\n"))
        cid = online_customer(w)
        post_many(w, 100, cid)
        wait_for(lambda: len(v.delivered()) == 100, timeout=90, what="all 100 delivered")
        wait_for(lambda: pending(w, v.name) == 0, timeout=30, what="nothing pending")
        check(v.http.max_active == 1, f"{v.http.max_active} requests at once with max_in_flight 1")
        check(v.duplicates() == 0 and dead(w, v.name) == 0, "duplicates or dead letters")
    finally:
        v.stop()


# ---- e-mail from the hub's customer record ------------------------------------

ADA_KNOWN = "ada.lovelace@example.com"


def customers_with_email(w, email):
    """How many customers rows hold email, in the hub's database (SQLite, or
    PostgreSQL under tests/tools/with_pg.sh)."""
    if tslib.PG_URI:
        (n,), = tslib.pg_query("SELECT count(*) FROM customers WHERE email = '%s'"
                               % email.replace("'", "''"))
        return int(n)
    import sqlite3
    with sqlite3.connect(w.db) as db:
        return db.execute("SELECT count(*) FROM customers WHERE email = ?",
                          (email,)).fetchone()[0]


def klaviyo_email_from_customer(w):
    """identity = email: a purchase whose event carries no e-mail reaches
    Klaviyo by the address an identify gave the hub; that address stays off
    the terminals' feed, and erasing the customer removes it."""
    from test_sinks import KL_KEY, KlaviyoServer, sales, sink_conf, start, sinks_stats
    from test_purchases_hub import feed_card
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY, identity="email"))
        cid = online_customer(w)
        st, _ = w.send_batch([{"type": "identify", "userId": "u-ada", "messageId": "u-ada-mail",
                               "traits": {"email": ADA_KNOWN}}])
        check(st == 200, f"CDP batch answered {st}")
        evs = sales(1, cid, prefix="m-mail")
        check("traits" not in evs[0].get("context", {}), "the purchase carries an e-mail")
        st, ans = post(w, evs)
        check(st == 200 and len(ans["accepted"]) == 1, f"purchase answered {st}: {ans}")
        wait_for(lambda: kl.ledger.count() == 2, what="Placed Order + Ordered Product")
        wait_for(lambda: sinks_stats(w)["kl"]["pending"] == 0, what="the queue to drain")
        po = next(e for e in kl.ledger.items if e["metric"] == "Placed Order")
        check(po["profile"].get("email") == ADA_KNOWN, f"profile {po['profile']}")
        check(ADA_KNOWN not in json.dumps(feed_card(w, cid)), "the e-mail is on the feed")
        st, page = w.hub_request("GET", "/v1/feed?limit=1000", cert="t01")
        check(st == 200 and ADA_KNOWN not in json.dumps(page), "the e-mail is in a feed page")
        check(customers_with_email(w, ADA_KNOWN) == 1, "the hub did not keep the identify's e-mail")
        run([HUB_BIN, "erase", "-c", os.path.join(w.dir, "hub.conf"), "u-ada"])
        check(customers_with_email(w, ADA_KNOWN) == 0, "erase left the customer's e-mail")
    finally:
        kl.stop()


# ---- the fleet view ---------------------------------------------------------------

def fleet_shows_sinks(w):
    """`tillside-hub fleet` (table and --json) and /v1/fleet show each sink's
    pending, oldest age, sent, failed, dead and rate."""
    from test_sinks import KL_KEY, KlaviyoServer, sales, sink_conf, start
    kl = KlaviyoServer(w.certs, KL_KEY)
    conf = os.path.join(w.dir, "hub.conf")

    def fleet_json():
        r = run([HUB_BIN, "fleet", "-c", conf, "--json"])
        return {k["sink"]: k for k in json.loads(r.stdout)["sinks"]}
    try:
        kl.down = True  # the vendor is away: the purchases wait, and fail once
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        cid = online_customer(w)
        st, ans = post(w, sales(3, cid, prefix="m-fl"))
        check(st == 200 and len(ans["accepted"]) == 3, f"purchases answered {st}: {ans}")
        wait_for(lambda: fleet_json()["kl"]["failed"] == 6, timeout=30,
                 what="six items failed once")
        k = fleet_json()["kl"]
        check(k["type"] == "klaviyo" and k["pending"] == 6 and k["sent"] == 0 and
              k["dead"] == 0 and k["rate"] == 0, f"fleet --json while down: {k}")
        table = run([HUB_BIN, "fleet", "-c", conf]).stdout
        check(re.search(r"^kl\s+klaviyo\s+6\s+\d+\s+0\s+6\s+0\s+0\.0$", table, re.M),
              f"fleet table: {table}")
        kl.down = False
        wait_for(lambda: fleet_json()["kl"]["sent"] == 6, timeout=60, what="the six delivered")
        k = fleet_json()["kl"]
        check(k["pending"] == 0 and k["failed"] == 0 and k["oldest_pending_age_s"] == 0 and
              abs(k["rate"] - 0.1) < 1e-9, f"fleet --json after: {k}")
        st, page = w.hub_request("GET", "/v1/fleet", cert="cdp")
        check(st == 200 and page["sinks"] == [dict(k, rate=page["sinks"][0]["rate"])],
              f"/v1/fleet sinks: {st} {page.get('sinks')}")
        check(KL_KEY not in json.dumps(page) + table, "the API key is shown")
    finally:
        kl.stop()


# ---- check-config: each vendor's own checks -------------------------------------

def _line_of(path, section, key):
    """The line of key in [section] of path (1-based), or of its type."""
    sec_line, cur = None, None
    with open(path) as f:
        for i, line in enumerate(f, 1):
            s = line.strip()
            if s.startswith("["):
                cur = s.strip("[]")
            elif cur == section and s.split("=", 1)[0].strip() == key:
                return i
            elif cur == section and s.split("=", 1)[0].strip() == "type":
                sec_line = i
    return sec_line


CA = "/etc/ssl/certs/ca-certificates.crt"
BAD = [
    # (what, section text, section, key, words of the message)
    ("a bloomreach project_token that is not one",
     "[sink.br]\ntype = bloomreach\nurl = https://api.exponea.com\nproject_token = not a token!\n"
     "key_id = k\nkey_secret = s\n", "sink.br", "project_token", "token"),
    ("salesforce without object",
     "[sink.dc]\ntype = salesforce\nurl = https://x.my.salesforce.com\n"
     "login_url = https://x.my.salesforce.com\nclient_id = c\nclient_secret = s\n"
     "source = tillside_pos\n", "sink.dc", "object", "required"),
    ("an unknown type", "[sink.zz]\ntype = mailchimp\nurl = https://x.example\n", "sink.zz",
     "type", "expected one of"),
    ("a URL without a host", "[sink.kl]\ntype = klaviyo\nurl = https://\napi_key = k\n",
     "sink.kl", "url", "invalid url"),
    ("a URL with a bad port", "[sink.kl]\ntype = klaviyo\nurl = https://a.klaviyo.com:99999\n"
     "api_key = k\n", "sink.kl", "url", "url"),
    ("braze purchases neither ecommerce nor legacy",
     "[sink.bz]\ntype = braze\nurl = https://rest.iad-01.braze.com\napi_key = k\n"
     "purchases = both\n", "sink.bz", "purchases", "ecommerce"),
    ("max_in_flight out of range",
     "[sink.kl]\ntype = klaviyo\nurl = https://a.klaviyo.com\napi_key = k\n"
     "max_in_flight = 99\n", "sink.kl", "max_in_flight", ""),
]


def refused_at_key(w, what, text, sec, key, words):
    """check-config refuses the hub configuration with section text at
    [sec] key's line (or its type's), saying words; run refuses it the same
    way, before it serves anything."""
    conf = w.hub_conf(extra=f"\n{text}ca_file = {CA}\n")
    r = run([HUB_BIN, "check-config", "-c", conf], check_rc=False)
    line = _line_of(conf, sec, key)
    m = re.search(r"hub\.conf:(\d+): \[%s\] %s(?: = '[^']*')?: (.*)"
                  % (re.escape(sec), re.escape(key)), r.stderr)
    check(r.returncode == 1 and m, f"{what}: check-config {r.returncode} {r.stderr!r}")
    check(int(m.group(1)) == line, f"{what}: reported at line {m.group(1)}, not {line}")
    check(words.lower() in m.group(2).lower(), f"{what}: {m.group(2)!r}")
    rr = run([HUB_BIN, "run", "-c", conf], check_rc=False)
    check(rr.returncode != 0 and m.group(0) in rr.stderr + rr.stdout,
          f"{what}: run said {rr.returncode} {rr.stderr!r}")


def check_config_vendor_keys(w):
    for what, text, sec, key, words in BAD:
        refused_at_key(w, what, text, sec, key, words)
    # And a good one of each passes, listed.
    good = ("[sink.br]\ntype = bloomreach\nurl = https://api.exponea.com\n"
            "project_token = 0a1b2c3d-4e5f\nkey_id = k\nkey_secret = s\n")
    conf = w.hub_conf(extra=f"\n{good}ca_file = {CA}\n")
    r = run([HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(r.returncode == 0 and "sink br: bloomreach" in r.stdout, f"good config: {r}")


if __name__ == "__main__":
    main({"several_in_flight_kill9": several_in_flight_kill9,
          "max_in_flight_override": max_in_flight_override,
          "klaviyo_email_from_customer": klaviyo_email_from_customer,
          "fleet_shows_sinks": fleet_shows_sinks,
          "check_config_vendor_keys": check_config_vendor_keys})
