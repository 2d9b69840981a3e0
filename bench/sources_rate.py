#!/usr/bin/env python3
"""Inbound CDP sources (issue 17): events per second and hub CPU per 10,000
events through each vendor adapter (POST /v1/sources/NAME), beside /v1/batch
with the same events, all in one run against one hub.

Every request carries one customer's activity as the vendor sends it: the
vendor fixture of tests/fixtures/sources (identify/profile, three views of one
product, one of another, a cart add; signed as the vendor signs, see
tests/blackbox/test_sources.py), for a new customer each time, so every event
is stored (no duplicates, no replays). RudderStack's webhook destination sends
one event per request, the others the fixture's whole payload. The baseline is
the same six events per customer as a Segment batch on /v1/batch (Basic write
key). All go to the CDP listener ([hub] cdp_listen: TLS, no client
certificate) over one kept-alive connection, one request at a time, each
committed before its answer. Reported per path, median of --runs: events/s,
request round trip (median), hub CPU seconds per 10,000 events, and the ratio
to /v1/batch.

    python3 bench/sources_rate.py [--bin build/release] [--events 10000] [--runs 3]
"""
import argparse
import base64
import http.client
import json
import os
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "blackbox"))
import benchlib as bl  # noqa: E402
from hub_purchases import cpu_s  # noqa: E402
import test_sources as ts  # noqa: E402  (fixtures and the vendors' signatures)
import tslib  # noqa: E402


def requests_for(name, run, n_events):
    """(body bytes, headers, events) for name's deliveries, n_events in all."""
    out, events, i = [], 0, 0
    while events < n_events:
        user, loy, rid = f"b{run}-{name}-{i}", tslib.ean13("29%010d" % (run * 1000000 + i)), \
            f"b{run}-{name}-{i}"
        if name == "batch":
            evs = tslib.customer_batch(user=user, loyalty=loy)
            for e in evs:
                e["messageId"] = f"{rid}-{e['messageId']}"
            body = json.dumps({"batch": evs}).encode()
            out.append((body, None, len(evs)))
            events += len(evs)
        else:
            payload = ts.fixture(ts.SOURCES[name]["type"], user, loy, rid)
            parts = payload if ts.SOURCES[name]["type"] == "rudderstack_webhook" else [payload]
            for p in parts:
                body = json.dumps(p).encode()
                out.append((body, name, None))
            # about six events a delivery; what counts is the hub's "accepted"
            events += len(payload) if isinstance(payload, list) else 6
        i += 1
    return out


def send_all(conn, reqs):
    """Posts reqs; returns (seconds, accepted events, round trips)."""
    auth = {"Authorization": "Basic " + base64.b64encode(
        f"{bl.WRITE_KEY}:".encode()).decode(), "Content-Type": "application/json"}
    rts, accepted = [], 0
    t0 = time.perf_counter()
    for body, src, _ in reqs:
        if src is None:
            path, hdrs = "/v1/batch", auth
        else:
            path, hdrs = f"/v1/sources/{src}", ts.signed(src, body)
        t = time.perf_counter()
        conn.request("POST", path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        rts.append(time.perf_counter() - t)
        if r.status != 200:
            raise SystemExit(f"{path} answered {r.status}: {data[:300]}")
        accepted += json.loads(data).get("accepted", 0)
    return time.perf_counter() - t0, accepted, rts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/release")
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    bins = bl.Bins(args.bin)
    work = os.path.join(args.bin, "work", "sources_rate")
    s = bl.Setup(bins, work)
    db = os.path.join(work, "hub.db")
    for f in (db, db + "-wal", db + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    conf = s.hub_conf(db, log_level="warn")
    cdp_port = bl.free_port()
    with open(conf, "a") as f:
        f.write(f"\n[hub]\ncdp_listen = 127.0.0.1:{cdp_port}\n" + ts.sources_conf())
    hub = bl.Proc("hub", [bins.hub, "run", "-c", conf], os.path.join(work, "hub.log"))
    s.procs.append(hub)
    paths = ["batch"] + list(ts.SOURCES)
    res = {p: {"eps": [], "cpu": [], "rt": [], "req": 0, "acc": 0} for p in paths}
    try:
        bl.wait(lambda: bl.port_open(cdp_port), 60, "the CDP listener", hub)
        ctx = ssl.create_default_context(cafile=f"{s.pki}/ca.pem")
        for run in range(args.runs):
            for p in paths:
                reqs = requests_for(p, run, args.events)
                conn = http.client.HTTPSConnection("localhost", cdp_port, context=ctx, timeout=60)
                c0 = cpu_s(hub.pid)
                secs, acc, rts = send_all(conn, reqs)
                cpu = cpu_s(hub.pid) - c0
                conn.close()
                r = res[p]
                r["eps"].append(acc / secs)
                r["cpu"].append(cpu / acc * 10000)
                r["rt"].append(bl.median(rts) * 1000)
                r["req"], r["acc"] = len(reqs), acc
                bl.log(f"run {run + 1} {p}: {acc} events in {len(reqs)} requests, "
                       f"{acc / secs:.0f} events/s, hub CPU {cpu:.2f} s")
    finally:
        s.stop_all()
    base = bl.median(res["batch"]["eps"])
    lines = [f"Command: `python3 bench/sources_rate.py --bin {args.bin} --events {args.events} "
             f"--runs {args.runs}`. {bl.machine()}", "",
             "| path | requests | events | events/s | vs /v1/batch | round trip (median) "
             "| hub CPU s / 10,000 events |", "|---|---|---|---|---|---|---|"]
    for p in paths:
        r = res[p]
        label = "/v1/batch" if p == "batch" else f"{ts.SOURCES[p]['type']}"
        lines.append(f"| {label} | {r['req']} | {r['acc']} | {bl.median(r['eps']):.0f} | "
                     f"{bl.median(r['eps']) / base:.2f} | {bl.median(r['rt']):.2f} ms | "
                     f"{bl.median(r['cpu']):.2f} |")
    md = "\n".join(lines) + "\n"
    print(md)
    with open(os.path.join(args.bin, "work", "sources_rate.md"), "w") as f:
        f.write(md)


if __name__ == "__main__":
    main()
