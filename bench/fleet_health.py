#!/usr/bin/env python3
"""What HQ's view of the fleet costs the hub (issue 14, "HQ sees every till").

1. A feed poll carrying a health report (X-Tillside-Health, a ~300-byte
   report that changes every time, so the hub writes it each poll) against the
   same poll without one, on one kept-alive mutual-TLS connection: median and
   p99 of --polls each, interleaved.
2. Reading the fleet with --terminals terminals in --stores stores (rows put
   into the hub database's fleet table directly, as the hub writes them):
   `GET /metrics` (the store aggregates), `GET /v1/fleet` and
   `tillside-hub fleet --json`, median of --runs each; the baseline is
   `GET /metrics` on the same hub with an empty fleet table.

    python3 bench/fleet_health.py [--terminals 10000] [--stores 100] [--polls 500]
"""
import argparse
import base64
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def report(i):
    r = {"v": 1, "version": "0.1.0", "os": "Debian GNU/Linux 13 (trixie)", "link": "up",
         "lag_s": 0, "cards": 1000 + i, "outbox": {"depth": i % 3, "oldest_s": 0, "dead": 0},
         "inputs": [{"name": "front", "state": "open"}], "cert_days": 80, "skew_s": 0}
    return json.dumps(r, separators=(",", ":"))


def b64url(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def timed_get(conn, path, headers=None):
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {body[:200]!r}")
    return dt, body


def ms(xs):
    return f"{bl.median(xs) * 1000:.2f} ms (p99 {bl.pct(xs, 99) * 1000:.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(bl.ROOT, "build", "bench"))
    ap.add_argument("--terminals", type=int, default=10000)
    ap.add_argument("--stores", type=int, default=100)
    ap.add_argument("--polls", type=int, default=500)
    ap.add_argument("--runs", type=int, default=9)
    a = ap.parse_args()
    bins = bl.Bins(a.bin_dir)
    work = os.path.join(bl.ROOT, "build", "bench", "work", "fleet_health")
    s = bl.Setup(bins, work)
    db = os.path.join(work, "hub.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    out = [f"## HQ's view of the fleet (`bench/fleet_health.py`)", "",
           f"Machine: {bl.machine()}; load average {os.getloadavg()[0]:.1f} at start.", ""]
    try:
        s.start_hub(db)
        conn = s.hub_conn("t01")
        timed_get(conn, "/v1/feed?limit=1")  # the handshake, outside the timings
        plain, with_report = [], []
        for i in range(a.polls):
            plain.append(timed_get(conn, "/v1/feed?limit=1")[0])
            hdr = {"X-Tillside-Health": b64url(report(i))}
            with_report.append(timed_get(conn, "/v1/feed?limit=1", hdr)[0])
        out += [f"Feed poll on a kept-alive mutual-TLS connection, {a.polls} each, interleaved:", "",
                "| poll | median (p99) |", "|---|---:|",
                f"| without a report (baseline) | {ms(plain)} |",
                f"| with a new report each time (a write per poll) | {ms(with_report)} |",
                f"| ratio of medians | {bl.median(with_report) / bl.median(plain):.2f} |", ""]

        cdp = s.hub_conn("cdp")
        empty = [timed_get(cdp, "/metrics")[0] for _ in range(a.runs)]
        now = int(time.time() * 1000)
        # As the hub writes a healthy report: no problems, the outbox figures.
        rows = [("acme", f"S{1 + i % a.stores:03d}", f"T{i:05d}", now, now, report(i), 0, i % 3)
                for i in range(a.terminals)]
        with sqlite3.connect(db, timeout=30) as c:
            c.executemany("INSERT OR REPLACE INTO fleet(tenant, store_id, terminal, seen_at,"
                          " reported_at, report, problems, outbox_depth, dead_letters)"
                          " VALUES(?,?,?,?,?,?,?,?,0)", rows)
        metrics = [timed_get(cdp, "/metrics")[0] for _ in range(a.runs)]
        js = []
        for _ in range(a.runs):
            dt, body = timed_get(cdp, "/v1/fleet")
            js.append(dt)
        size = len(body)
        if json.loads(body)["count"] != a.terminals + 1:  # and T01, which polled above
            raise SystemExit("the fleet JSON does not list every terminal")
        unhealthy = [timed_get(cdp, "/v1/fleet?unhealthy=1")[0] for _ in range(a.runs)]
        cli = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            bl.run([bins.hub, "fleet", "--json", "-c", os.path.join(work, "hub.conf")])
            cli.append(time.perf_counter() - t0)
        out += [f"Reading the fleet: {a.terminals} terminals in {a.stores} stores, median of "
                f"{a.runs}:", "", "| read | median (p99) |", "|---|---:|",
                f"| `GET /metrics`, empty fleet (baseline) | {ms(empty)} |",
                f"| `GET /metrics` with the store aggregates | {ms(metrics)} |",
                f"| `GET /v1/fleet` ({size / 1e6:.1f} MB of JSON) | {ms(js)} |",
                f"| `GET /v1/fleet?unhealthy=1` (none) | {ms(unhealthy)} |",
                f"| `tillside-hub fleet --json` (a process) | {ms(cli)} |",
                f"| /metrics ratio of medians | {bl.median(metrics) / bl.median(empty):.1f} |",
                ""]
    finally:
        s.stop_all()
    text = "\n".join(out)
    print(text)
    with open(os.path.join(bl.ROOT, "build", "bench", "work", "fleet_health.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
