"""Black-box tests of the hub's sinks ([sink.NAME], hub/sink*.c): the real
tillside-hub over mutual TLS takes purchases from a terminal certificate and
forwards them over TLS to contract servers (tests/contract/) that enforce
each vendor's published API: Segment, Klaviyo, Braze. What a retailer would
notice: each purchase arrives once and mapped the vendor's way, an outage or
a 429 storm costs no purchase and no busy loop, a bad item is dead-lettered
while the rest go on and `upstream retry` sends it once, a kill -9 loses
nothing, and one vendor down never holds another back."""
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "contract"))
from braze_server import BrazeServer  # noqa: E402
from klaviyo_server import KlaviyoServer  # noqa: E402
from segment_server import SegmentServer  # noqa: E402
from test_purchases_hub import online_customer, post, purchase  # noqa: E402
from tslib import HUB_BIN, Proc, check, main, metric, run, wait_for  # noqa: E402

KL_KEY, BZ_KEY, SEG_KEY = "pk_test_klaviyo", "braze-rest-key", "seg-write-key"


def sink_conf(name, server, typ, **keys):
    lines = [f"[sink.{name}]", f"type = {typ}", f"url = {server.url}",
             f"ca_file = {server.ca_file}", "max_backoff_s = 2"]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def start(w, *sections):
    conf = w.hub_conf(extra="\n" + "\n".join(sections))
    p = Proc("hub", [HUB_BIN, "run", "-c", conf], os.path.join(w.dir, "hub.log"))
    w.procs.append(p)
    wait_for(lambda: w._port_open(w.hub_port) or (not p.alive() and w._died(p)),
             what="hub to listen")
    w.hub = p
    return conf


def upstream(w, *args):
    return run([HUB_BIN, "upstream", *args, "-c", os.path.join(w.dir, "hub.conf")])


def sinks_stats(w):
    return {s["sink"]: s for s in w.hub_stats().get("sinks", [])}


def sales(n, cid, prefix="m", start_no=1000, lines=1):
    out = []
    for i in range(n):
        ev = purchase(f"{prefix}-{i}", f"S001-T01-{start_no + i:06d}", "SKU-HAT-1", cid=cid,
                      total=10.0 * lines)
        ev["properties"]["products"] = [
            {"product_id": f"SKU-{j}", "sku": f"SKU-{j}", "name": f"Item {j}", "price": 10.0,
             "quantity": 1} for j in range(lines)]
        out.append(ev)
    return out


def post_all(w, evs):
    for i in range(0, len(evs), 100):
        st, ans = post(w, evs[i:i + 100])
        check(st == 200 and len(ans["accepted"]) == len(evs[i:i + 100]),
              f"purchases answered {st}: {ans}")


# ---- per vendor: once, mapped ------------------------------------------------

def klaviyo_once_mapped(w):
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        cid = online_customer(w)
        evs = sales(1, cid, lines=2) + [purchase("m-anon", "S001-T01-009999", "SKU-HAT-1")]
        post_all(w, evs)
        wait_for(lambda: kl.ledger.count() == 3, what="Placed Order + 2 Ordered Product")
        wait_for(lambda: sinks_stats(w).get("kl", {}).get("pending") == 0,
                 what="the queue to drain")
        names = sorted(e["metric"] for e in kl.ledger.items)
        check(names == ["Ordered Product", "Ordered Product", "Placed Order"], f"got {names}")
        po = next(e for e in kl.ledger.items if e["metric"] == "Placed Order")
        check(po["profile"] == {"external_id": "u-ada"}, f"profile {po['profile']}")
        check(po["unique_id"] == "m-0" and po["value"] == 20.0 and
              po["value_currency"] == "EUR", f"Placed Order {po}")
        check(po["properties"]["OrderId"] == "S001-T01-001000" and
              po["properties"]["ItemNames"] == ["Item 0", "Item 1"], f"props {po['properties']}")
        st = sinks_stats(w)["kl"]
        check(st["sent"] == 3 and st["skipped"] == 1 and st["dead"] == 0, f"stats {st}")
        _, text = w.hub_request("GET", "/metrics")
        check(metric(text, 'tillside_hub_sink_skipped_anonymous{sink="kl"}') == 1,
              "the anonymous purchase is not counted as skipped")
        check(kl.ledger.duplicates == 0, "sent twice")
        check(KL_KEY not in w.hub.log(), "the API key is in the log")
    finally:
        kl.stop()


def braze_once_mapped(w):
    bz = BrazeServer(w.certs, BZ_KEY)
    leg = BrazeServer(w.certs, BZ_KEY)
    try:
        start(w, sink_conf("bz", bz, "braze", api_key=BZ_KEY),
              sink_conf("bzlegacy", leg, "braze", api_key=BZ_KEY, purchases="legacy"))
        cid = online_customer(w)
        post_all(w, sales(1, cid, lines=2))
        wait_for(lambda: bz.ledger.count() == 1 and leg.ledger.count() == 2,
                 what="the order at both Braze sinks")
        ev = bz.ledger.items[0]
        check(ev["_array"] == "events" and ev["name"] == "ecommerce.order_placed" and
              ev["external_id"] == "u-ada", f"event {ev}")
        p = ev["properties"]
        check(p["order_id"] == "S001-T01-001000" and p["total_value"] == 20.0 and
              p["currency"] == "EUR" and len(p["products"]) == 2, f"properties {p}")
        check({x["_array"] for x in leg.ledger.items} == {"purchases"} and
              sorted(x["product_id"] for x in leg.ledger.items) == ["SKU-0", "SKU-1"],
              f"legacy {leg.ledger.items}")
        wait_for(lambda: all(s["pending"] == 0 for s in sinks_stats(w).values()),
                 what="queues to drain")
        check(bz.count() == 1 and leg.count() == 1, "more requests than the one order needs")
    finally:
        bz.stop()
        leg.stop()


def segment_once_mapped(w):
    sg = SegmentServer(w.certs, SEG_KEY)
    try:
        start(w, sink_conf("seg", sg, "segment", write_key=SEG_KEY))
        cid = online_customer(w)
        post_all(w, sales(2, cid) + [purchase("m-anon", "S001-T01-009999", "SKU-HAT-1")])
        wait_for(lambda: sg.ledger.count() == 3, what="three Order Completed")
        by = {e["messageId"]: e for e in sg.ledger.items}
        check(by["m-0"]["event"] == "Order Completed" and by["m-0"]["userId"] == "u-ada",
              f"mapped {by['m-0']}")
        check("userId" not in by["m-anon"] and by["m-anon"]["anonymousId"] == "S001:T01",
              "the anonymous sale should go with its anonymousId only")
        check(sg.ledger.duplicates == 0, "sent twice")
    finally:
        sg.stop()


# ---- outage and 429 storm --------------------------------------------------------

def _ride_out(w, server, section, items_per_sale):
    start(w, section)
    cid = online_customer(w)
    server.down = 503
    post_all(w, sales(30, cid))
    wait_for(lambda: server.count() >= 1, what="a first attempt")
    t0, n0 = time.monotonic(), server.count()
    wait_for(lambda: time.monotonic() - t0 > 3, what="3 s of outage")  # a clock, not a sync
    during = server.count() - n0
    check(during <= 8, f"{during} requests in 3 s of outage: not backing off")
    server.down = False
    server.storm.start(3)
    n1 = server.count()
    wait_for(lambda: server.ledger.count() == 30 * items_per_sale, timeout=40,
             what="everything delivered after the storm")
    storm_reqs = sum(1 for r in server.requests[n1:] if r.status == 429)
    check(storm_reqs <= 10, f"{storm_reqs} requests answered 429: not slowing down")
    check(server.ledger.duplicates == 0, f"{server.ledger.duplicates} duplicates")
    _, text = w.hub_request("GET", "/metrics")
    name = section.split("]")[0][6:]
    check((metric(text, f'tillside_hub_sink_throttled_total{{sink="{name}"}}') or 0) >= 1,
          "the 429s are not counted")


def klaviyo_outage_storm(w):
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        _ride_out(w, kl, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY), 2)
    finally:
        kl.stop()


def braze_outage_storm(w):
    bz = BrazeServer(w.certs, BZ_KEY)
    try:
        _ride_out(w, bz, sink_conf("bz", bz, "braze", api_key=BZ_KEY), 1)
    finally:
        bz.stop()


def segment_outage_storm(w):
    sg = SegmentServer(w.certs, SEG_KEY)
    try:
        _ride_out(w, sg, sink_conf("seg", sg, "segment", write_key=SEG_KEY), 1)
    finally:
        sg.stop()


# ---- a bad item, then upstream retry ----------------------------------------------

def klaviyo_bad_item_split(w):
    """Klaviyo refuses a whole request for one event dated before 2000: the
    batch is split and only that purchase is dead-lettered."""
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        cid = online_customer(w)
        evs = sales(5, cid)
        evs[2]["originalTimestamp"] = "1999-12-31T10:00:00.000Z"
        post_all(w, evs)
        wait_for(lambda: kl.ledger.count() == 8, what="the four good purchases")
        wait_for(lambda: sinks_stats(w)["kl"]["pending"] == 0, what="the queue to drain")
        st = sinks_stats(w)["kl"]
        check(st["dead"] == 2 and st["sent"] == 8, f"stats {st}")  # Placed Order + its line
        out = json.loads(upstream(w, "list", "--json").stdout)
        check({d["event"] for d in out["dead"]} == {"m-2"}, f"dead letters {out['dead']}")
        show = json.loads(upstream(w, "show", "m-2", "--sink", "kl").stdout)
        row = show["rows"][0]
        check(row["state"] == "dead" and "2000" in (row["reply"] or "") and
              row["payload"]["type"] == "event-bulk-create", f"show {row}")
        before = kl.count()
        r = upstream(w, "retry", "m-2", "--sink", "kl")
        check("queued again 2" in r.stdout, r.stdout)
        wait_for(lambda: sinks_stats(w)["kl"]["dead"] == 2 and kl.count() > before,
                 what="the retried letters to go (and be refused again)")
        check(kl.count() - before == 2, f"{kl.count() - before} requests for 2 retried items")
        r = upstream(w, "drop", "--all", "--sink", "kl")
        check("dropped 2" in r.stdout and sinks_stats(w)["kl"]["dead"] == 0, r.stdout)
    finally:
        kl.stop()


def braze_bad_item_per_item(w):
    """Braze stores the good objects of a request and names the bad one in
    "errors": only it is dead-lettered, nothing is sent twice."""
    bz = BrazeServer(w.certs, BZ_KEY)
    try:
        start(w, sink_conf("bz", bz, "braze", api_key=BZ_KEY))
        cid = online_customer(w)
        evs = sales(5, cid)
        evs[3]["properties"]["products"][0]["name"] = "X" * 300  # over 255 (B8)
        post_all(w, evs)
        wait_for(lambda: bz.ledger.count() == 4, what="the four good orders")
        wait_for(lambda: sinks_stats(w)["bz"]["dead"] == 1, what="the bad one dead-lettered")
        time.sleep(0)  # nothing to wait for: the counts below are final
        check(bz.count() <= 2, f"{bz.count()} requests for one batch")
        check(len(bz.ledger.items) == 4, "a good order was sent twice (Braze has no dedup)")
        show = json.loads(upstream(w, "show", "m-3").stdout)
        check("255" in show["rows"][0]["reason"], f"reason {show['rows'][0]}")
    finally:
        bz.stop()


def segment_retry_sends_once(w):
    """Segment refused one event while the destination was misconfigured;
    once fixed, `upstream retry` sends it exactly once."""
    sg = SegmentServer(w.certs, SEG_KEY)
    try:
        start(w, sink_conf("seg", sg, "segment", write_key=SEG_KEY))
        cid = online_customer(w)
        sg.refuse = lambda ev: "refused" if ev.get("messageId") == "m-1" else None
        post_all(w, sales(4, cid))
        wait_for(lambda: sg.ledger.count() == 3 and sinks_stats(w)["seg"]["dead"] == 1,
                 what="three delivered, one dead-lettered")
        sg.refuse = lambda ev: None
        upstream(w, "retry", "--all")
        wait_for(lambda: sg.ledger.count() == 4, what="the retried event")
        wait_for(lambda: sinks_stats(w)["seg"]["pending"] == 0, what="the queue to drain")
        sent = sum(1 for r in sg.requests if r.json and
                   any(e.get("messageId") == "m-1" for e in r.json["batch"]) and r.status == 200)
        check(sent == 1, f"m-1 accepted {sent} times")
        check(sg.ledger.duplicates == 0, "duplicates")
    finally:
        sg.stop()


# ---- kill -9, several sinks -----------------------------------------------------

def kill9_during_delivery(w):
    kl = KlaviyoServer(w.certs, KL_KEY)
    kl.delay_s = 0.3  # a slow vendor: the kill lands mid-delivery
    try:
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        cid = online_customer(w)
        post_all(w, sales(300, cid))
        wait_for(lambda: kl.ledger.count() > 0, what="delivery to start")
        w.hub.stop(sig=signal.SIGKILL)
        check(kl.ledger.count() < 600, "everything was delivered before the kill")
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY))
        wait_for(lambda: kl.ledger.count() == 600, timeout=60, what="all 600 items")
        wait_for(lambda: sinks_stats(w)["kl"]["pending"] == 0, what="the queue to drain")
        # A request in flight at the kill may go again: Klaviyo drops it by
        # unique_id, so the retailer sees each purchase once.
        check(len({e["unique_id"] for e in kl.ledger.items}) == 600, "lost or doubled")
    finally:
        kl.stop()


def several_sinks_one_down(w):
    kl = KlaviyoServer(w.certs, KL_KEY)
    bz = BrazeServer(w.certs, BZ_KEY)
    try:
        kl.down = True  # connections dropped: a vendor outage
        start(w, sink_conf("kl", kl, "klaviyo", api_key=KL_KEY),
              sink_conf("bz", bz, "braze", api_key=BZ_KEY))
        cid = online_customer(w)
        post_all(w, sales(40, cid))
        wait_for(lambda: bz.ledger.count() == 40, what="Braze to get everything")
        st = sinks_stats(w)
        check(st["bz"]["pending"] == 0 and st["kl"]["pending"] == 80 and
              kl.ledger.count() == 0, f"stats {st}")
        kl.down = False
        wait_for(lambda: kl.ledger.count() == 80, timeout=40, what="Klaviyo to catch up")
        check(bz.ledger.count() == 40, "Braze got more than once")
    finally:
        kl.stop()
        bz.stop()


def secrets_file(w):
    """Credentials from [hub] secrets_file: used, never shown by check-config or stats."""
    kl = KlaviyoServer(w.certs, KL_KEY)
    try:
        path = os.path.join(w.dir, "secrets.conf")
        with open(path, "w") as f:
            f.write(f"[sink.kl]\napi_key = {KL_KEY}\n")
        os.chmod(path, 0o644)
        conf = w.hub_conf(extra=f"[hub]\nsecrets_file = {path}\n" +
                          sink_conf("kl", kl, "klaviyo"))
        r = run([HUB_BIN, "check-config", "-c", conf], check_rc=False)
        check(r.returncode != 0 and "chmod 600" in r.stderr, f"world-readable: {r.stderr}")
        os.chmod(path, 0o600)
        r = run([HUB_BIN, "check-config", "-c", conf], check_rc=False)
        check(r.returncode == 0 and "sink kl: klaviyo" in r.stdout, f"check-config {r}")
        check(KL_KEY not in r.stdout + r.stderr, "check-config shows the key")
        start(w, f"[hub]\nsecrets_file = {path}\n" + sink_conf("kl", kl, "klaviyo"))
        cid = online_customer(w)
        post_all(w, sales(1, cid))
        wait_for(lambda: kl.ledger.count() == 2, what="delivery with the key from the file")
        check(KL_KEY not in json.dumps(w.hub_stats()) and KL_KEY not in w.hub.log(),
              "the key is shown")
    finally:
        kl.stop()


if __name__ == "__main__":
    main({"klaviyo_once_mapped": klaviyo_once_mapped,
          "braze_once_mapped": braze_once_mapped,
          "segment_once_mapped": segment_once_mapped,
          "klaviyo_outage_storm": klaviyo_outage_storm,
          "braze_outage_storm": braze_outage_storm,
          "segment_outage_storm": segment_outage_storm,
          "klaviyo_bad_item_split": klaviyo_bad_item_split,
          "braze_bad_item_per_item": braze_bad_item_per_item,
          "segment_retry_sends_once": segment_retry_sends_once,
          "kill9_during_delivery": kill9_during_delivery,
          "several_sinks_one_down": several_sinks_one_down,
          "secrets_file": secrets_file})
