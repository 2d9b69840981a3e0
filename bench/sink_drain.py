#!/usr/bin/env python3
"""Sinks draining a backlog (issue 16): N pending purchases at the hub, the
hub restarted, and Klaviyo, Braze and Segment contract servers
(tests/contract/) enforcing each vendor's documented rate limit, all three
sinks at once. Per sink: time until its queue is empty against the floor the
documented limit allows (requests needed / documented rate), requests
answered 429, duplicates delivered (items stored twice under one dedup key;
for Braze, which has none, items beyond the expected count), and the hub's
CPU seconds for the whole drain.

    python3 bench/sink_drain.py [--bin build/dev] [--purchases 100000] [--lines 1]
"""
import argparse
import http.client
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "blackbox"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "contract"))

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "dev"))
ap.add_argument("--purchases", type=int, default=100000)
ap.add_argument("--lines", type=int, default=1)
args = ap.parse_args()
os.environ["TS_BIN_DIR"] = os.path.abspath(args.bin)

import tslib  # noqa: E402
from braze_server import BrazeServer  # noqa: E402
from klaviyo_server import KlaviyoServer  # noqa: E402
from segment_server import SegmentServer  # noqa: E402
from test_purchases_hub import online_customer, purchase  # noqa: E402
from test_sinks import sink_conf, sinks_stats, start  # noqa: E402


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    w = tslib.World("sink-drain")
    kl = KlaviyoServer(w.certs, "kl-key")
    bz = BrazeServer(w.certs, "bz-key")
    sg = SegmentServer(w.certs, "sg-key")
    servers = {"kl": kl, "bz": bz, "seg": sg}
    sections = [sink_conf("kl", kl, "klaviyo", api_key="kl-key"),
                sink_conf("bz", bz, "braze", api_key="bz-key"),
                sink_conf("seg", sg, "segment", write_key="sg-key")]
    try:
        for s in servers.values():
            s.down = True  # the backlog builds up while the vendors are away
        start(w, *sections)
        cid = online_customer(w)
        n, t0 = args.purchases, time.monotonic()
        conn = http.client.HTTPSConnection("localhost", w.hub_port, context=w.hub_ssl("t01"))
        for i in range(0, n, 100):
            evs = []
            for j in range(i, min(n, i + 100)):
                ev = purchase(f"b-{j}", f"S001-T01-{j:08d}", "SKU-1", cid=cid)
                ev["properties"]["products"] = [
                    {"product_id": f"SKU-{k}", "sku": f"SKU-{k}", "name": f"Item {k}",
                     "price": 10.0, "quantity": 1} for k in range(args.lines)]
                evs.append(ev)
            for attempt in range(3):  # the hub may close a kept connection; resending is safe
                try:
                    conn.request("POST", "/v1/purchases", json.dumps({"batch": evs}),
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPSConnection("localhost", w.hub_port,
                                                       context=w.hub_ssl("t01"))
            assert r.status == 200, r.status
        intake = time.monotonic() - t0
        w.hub.stop()
        for s in servers.values():
            s.down = False
            s.requests.clear()
        t1 = time.monotonic()
        start(w, *sections)
        done = {}
        while len(done) < 3 and time.monotonic() - t1 < 3600:
            time.sleep(0.5)
            st = sinks_stats(w)
            for name in servers:
                if name not in done and st.get(name, {}).get("pending", 1) == 0:
                    done[name] = time.monotonic() - t1
        cpu = cpu_s(w.hub.p.pid)
        items = {"kl": n * (1 + args.lines), "bz": n, "seg": n}
        per_req = {"kl": 1000, "bz": 75, "seg": 500}
        rate = {"kl": 150 / 60, "bz": 1000, "seg": 500}
        out = [f"### Sinks draining {n:,} purchases ({args.lines} line each), all three at once",
               "",
               f"Intake of the backlog: {n / intake:,.0f} purchases/s. Hub CPU for the drain: "
               f"{cpu:.1f} s (user+system, the whole process).", "",
               "| sink | items | drain s | floor s | first request s | last request s | server busy s | requests | 429s | stored | duplicates |",
               "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in servers.items():
            reqs = -(-items[name] // per_req[name])
            floor = reqs / rate[name]
            st = s.statuses()
            stored = s.ledger.count()
            dup = s.ledger.duplicates + max(0, stored - items[name])
            ats = [r.at - t1 for r in s.requests]
            out.append(f"| {name} | {items[name]:,} | {done.get(name, float('nan')):.1f} | "
                       f"{floor:.1f} | {min(ats):.1f} | {max(ats):.1f} | "
                       f"{sum(r.handled_s for r in s.requests):.1f} | {len(st):,} | "
                       f"{st.count(429):,} | {stored:,} | {dup} |")
        text = "\n".join(out)
        print(text)
        with open(os.path.join(w.dir, "sink_drain.md"), "w") as f:
            f.write(text + "\n")
        w.close(True)
    finally:
        for s in servers.values():
            s.stop()


main()
