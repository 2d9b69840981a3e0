#!/usr/bin/env python3
"""Hub purchase intake and upstream drain (issue 4, hub side).

1. Intake: --purchases in-store purchases POSTed to /v1/purchases in batches of
   --batch over one kept-alive mutual-TLS connection (terminal certificate),
   each batch committed with synchronous=FULL before the answer. Baseline in
   the same run: as many CDP "Order Completed" events of the same shape POSTed
   to /v1/batch (write key, synchronous=NORMAL) the same way. Reported: events/s
   and the per-batch round trip (median, p99).
2. Drain: the hub is stopped with all of them pending upstream, a local Python
   Segment-compatible endpoint comes up, the hub is started again, and the
   time until the endpoint holds every event (each exactly once) is measured.
   Baseline: the same events POSTed to that endpoint by a Python client in
   batches of 500 (as the hub sends them) on one kept-alive connection (the
   endpoint's own ceiling).

    python3 bench/hub_purchases.py [--bin build/bench] [--purchases 20000] [--batch 100] [--runs 3]
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

UPSTREAM_KEY = "bench-upstream-key"


class CDP:
    def __init__(self, port):
        self.got = {}
        self.dups = 0
        self.mu = threading.Lock()
        cdp = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                batch = json.loads(body)["batch"]
                with cdp.mu:
                    for e in batch:
                        if e["messageId"] in cdp.got:
                            cdp.dups += 1
                        cdp.got[e["messageId"]] = 1
                data = b'{"success":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def purchase(run, i):
    receipt = f"S001-T01-{run:02d}{i:07d}"
    return {"type": "track", "event": "Order Completed", "messageId": f"p-{run}-{i}",
            "anonymousId": "S001:T01", "originalTimestamp": "2026-11-28T10:00:00.000Z",
            "sentAt": "2026-11-28T10:00:01.000Z",
            "properties": {"order_id": receipt, "total": 59.9, "revenue": 50.34, "tax": 9.56,
                           "discount": 0, "currency": "EUR",
                           "products": [{"product_id": f"SKU-{i % 500}", "sku": f"SKU-{i % 500}",
                                         "name": "TRAIL JKT M", "price": 59.9, "quantity": 1}]},
            "context": {"tillside": {"store": "S001", "terminal": "T01", "receipt": receipt,
                                     "source": "api"}}}


def cdp_event(run, i):
    e = purchase(run, i)
    e["messageId"] = f"c-{run}-{i}"
    e["userId"] = f"u-{i % 1000}"
    e["properties"]["order_id"] = f"W-{run}-{i}"
    del e["context"]
    return e


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_all(conn, path, events, batch, headers):
    """POSTs events in batches; returns (seconds, per-batch round trips)."""
    rts = []
    t0 = time.perf_counter()
    for k in range(0, len(events), batch):
        body = json.dumps({"batch": events[k:k + batch], "sentAt": "2026-11-28T10:00:01Z"})
        t = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        rts.append(time.perf_counter() - t)
        if r.status != 200:
            raise SystemExit(f"{path} answered {r.status}: {data[:200]}")
        if path == "/v1/purchases" and len(json.loads(data)["accepted"]) != len(events[k:k + batch]):
            raise SystemExit(f"not all accepted: {data[:300]}")
    return time.perf_counter() - t0, rts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(bl.ROOT, "build", "bench"))
    ap.add_argument("--purchases", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    bins = bl.Bins(a.bin)
    work = os.path.join(os.path.abspath(a.bin), "work", "hub_purchases")
    shutil.rmtree(work, ignore_errors=True)
    s = bl.Setup(bins, work)
    auth = base64.b64encode(f"{bl.WRITE_KEY}:".encode()).decode()
    res = {"p_rate": [], "c_rate": [], "p_rt": [], "c_rt": [], "drain": [], "direct": [],
           "dups": 0, "p_cpu": [], "c_cpu": [], "drain_cpu": [], "drain_rss": []}
    n = a.purchases
    try:
        for run in range(a.runs):
            db = os.path.join(work, f"hub{run}.db")
            cdp_port = bl.free_port()
            conf = s.hub_conf(db, log_level="warn")
            with open(conf, "a") as f:
                f.write(f"\n[upstream]\nurl = http://127.0.0.1:{cdp_port}\n"
                        f"write_key = {UPSTREAM_KEY}\nmax_backoff_s = 1\n")
            hub = bl.Proc("hub", [bins.hub, "run", "-c", conf], os.path.join(work, "hub.log"))
            s.procs.append(hub)
            bl.wait(lambda: bl.port_open(s.hub_port), 60, "hub to listen", hub)
            pevents = [purchase(run, i) for i in range(n)]
            cevents = [cdp_event(run, i) for i in range(n)]
            # Alternate which goes first so neither always meets a warmer database.
            order = [("p", pevents), ("c", cevents)] if run % 2 == 0 else \
                    [("c", cevents), ("p", pevents)]
            for kind, evs in order:
                conn = s.hub_conn("t01" if kind == "p" else "cdp")
                hdrs = {"Content-Type": "application/json"}
                if kind == "c":
                    hdrs["Authorization"] = f"Basic {auth}"
                c0 = cpu_s(hub.pid)
                secs, rts = post_all(conn, "/v1/purchases" if kind == "p" else "/v1/batch",
                                     evs, a.batch, hdrs)
                conn.close()
                res[f"{kind}_cpu"].append(cpu_s(hub.pid) - c0)
                res[f"{kind}_rate"].append(n / secs)
                res[f"{kind}_rt"].extend(rts)
                bl.log(f"run {run}: {kind} {n / secs:.0f} events/s")
            hub.stop()
            s.procs.remove(hub)
            cdp = CDP(cdp_port)
            try:
                t0 = time.perf_counter()
                hub = bl.Proc("hub", [bins.hub, "run", "-c", conf], os.path.join(work, "hub.log"))
                s.procs.append(hub)
                bl.wait(lambda: len(cdp.got) >= n, 600, "the backlog to drain", hub)
                res["drain"].append(time.perf_counter() - t0)
                res["drain_cpu"].append(cpu_s(hub.pid))
                res["drain_rss"].append(hub.proc_status("VmHWM") or 0)
                res["dups"] += cdp.dups
                bl.log(f"run {run}: drained {n} in {res['drain'][-1]:.2f} s")
                hub.stop()
                s.procs.remove(hub)
                # Baseline: the endpoint's own ceiling with a Python client.
                cdp.got.clear()
                conn = http.client.HTTPConnection("127.0.0.1", cdp_port, timeout=60)
                secs, _ = post_all(conn, "/v1/batch", cevents, 500,
                                   {"Content-Type": "application/json"})
                conn.close()
                res["direct"].append(secs)
            finally:
                cdp.stop()
    finally:
        s.stop_all()
    med = bl.median
    pr, cr = med(res["p_rate"]), med(res["c_rate"])
    md = f"""### Hub purchase intake and upstream drain (`bench/hub_purchases.py`)

`python3 bench/hub_purchases.py --purchases {n} --batch {a.batch} --runs {a.runs}`, {bl.machine()}

| | events/s (median of {a.runs}) | batch round trip median | p99 |
|---|---|---|---|
| `POST /v1/purchases` (mTLS, stored once, synchronous=FULL) | {pr:,.0f} | {med(res['p_rt']) * 1000:.1f} ms | {bl.pct(res['p_rt'], 99) * 1000:.1f} ms |
| baseline: `POST /v1/batch` same events from the CDP (synchronous=NORMAL) | {cr:,.0f} | {med(res['c_rt']) * 1000:.1f} ms | {bl.pct(res['c_rt'], 99) * 1000:.1f} ms |
| ratio purchases / baseline | {pr / cr:.2f} | | |

Hub CPU for the {n:,} events (median): purchases {med(res['p_cpu']):.2f} s, baseline {med(res['c_cpu']):.2f} s
(the rest of the wall time is waiting: the client, fsync, and the other processes on the machine).

Upstream drain after a restart with {n:,} purchases pending: {med(res['drain']):.2f} s median
({n / med(res['drain']):,.0f} events/s; hub start included), hub CPU {med(res['drain_cpu']):.2f} s, peak RSS
{med(res['drain_rss']) / 1024:.1f} MB, duplicates delivered: {res['dups']}. Baseline: the same
events POSTed straight to the same Python endpoint by a Python client in batches of 500 (the hub's batch size):
{med(res['direct']):.2f} s
({n / med(res['direct']):,.0f} events/s).
"""
    print(md)
    os.makedirs(os.path.dirname(work), exist_ok=True)
    with open(os.path.join(os.path.dirname(work), "hub_purchases.md"), "w") as f:
        f.write(md)


if __name__ == "__main__":
    main()
