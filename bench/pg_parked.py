#!/usr/bin/env python3
"""What idle parked long-polls cost the PostgreSQL database (docs/OPERATIONS.md
"Sizing"): --conns terminals' long-polls (GET /v1/feed?wait=25 on their own
TLS connections; nothing changes) held at one hub on the database of
TS_TEST_PG for --seconds, each one answered at the end of its wait asked
again at once (bench/held_conns.py's hold and repoll: the agent's
behaviour). Counted over the window: the scans of the feed table the
database made (pg_stat_user_tables, seq_scan + idx_scan: each feed query
scans it once), and the hub's own tillside_hub_feed_reads_total and
tillside_hub_feed_rechecks_total where it has them. Baseline in the same
run: the same window with no poll held. Compare builds with --bin:

    tests/tools/with_pg.sh python3 bench/pg_parked.py --bin build/release [--conns 2000] [--seconds 60]
"""
import argparse
import json
import os
import resource
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import log  # noqa: E402
from held_conns import fresh_cursor, hold, parked_now, repoll, request  # noqa: E402

SCANS = "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'feed'"


def psql(uri, sql):
    return benchlib.run(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", uri, "-c", sql]).stdout.strip()


def hub_counts(st):
    """(feed reads, rechecks) from the hub's /metrics; None where it has not them."""
    text = request(st, "cdp", "GET", "/metrics").decode()
    got = {}
    for line in text.splitlines():
        for name in ("tillside_hub_feed_reads_total", "tillside_hub_feed_rechecks_total"):
            if line.startswith(name + " "):
                got[name] = float(line.split()[1])
    return got.get("tillside_hub_feed_reads_total"), got.get("tillside_hub_feed_rechecks_total")


def window(st, uri, seconds, socks, cursor):
    """Feed scans per second at the database (and the hub's counts) over seconds."""
    # A backend's statistics reach pg_stat_user_tables within a second of a
    # transaction, or 10 s once it idles: what came before the window first
    # (the parking's own reads), then both ends lag alike.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 11:
        repoll(socks, cursor)
        time.sleep(0.2)  # a paced loop for a fixed time, not a wait for a condition
    s0, (r0, k0), t0 = int(psql(uri, SCANS) or 0), hub_counts(st), time.monotonic()
    load0 = os.getloadavg()
    while time.monotonic() - t0 < seconds:
        repoll(socks, cursor)
        time.sleep(0.2)  # a paced loop for the window's length, not a wait for a condition
    s1, (r1, k1), t1 = int(psql(uri, SCANS) or 0), hub_counts(st), time.monotonic()
    dt = t1 - t0
    return {"held": len(socks), "seconds": round(dt, 1),
            "db_feed_scans_per_s": round((s1 - s0) / dt, 2),
            "hub_feed_reads_per_s": None if r0 is None else round((r1 - r0) / dt, 2),
            "hub_rechecks": None if k0 is None else k1 - k0,
            "load_start": [round(x, 2) for x in load0],
            "load_end": [round(x, 2) for x in os.getloadavg()]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    uri = os.environ.get("TS_TEST_PG", "")
    if not uri:
        raise SystemExit("TS_TEST_PG is not set: run under tests/tools/with_pg.sh")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bins = benchlib.Bins(a.bin)
    psql(uri, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    st = benchlib.Setup(bins, tempfile.mkdtemp(prefix="ts-pg-parked-"))
    try:
        st.start_hub(uri)
        cursor = fresh_cursor(st)
        log(f"baseline: {a.seconds:.0f} s with nothing held")
        base = window(st, uri, a.seconds, [], cursor)
        ctx = st.ssl_ctx("t01")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        socks = hold(st, [ctx], a.conns, cursor)
        deadline = time.monotonic() + 120
        while parked_now(st) != a.conns:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {parked_now(st)} of {a.conns} parked after 120 s")
            repoll(socks, cursor)
            time.sleep(0.2)  # polling with a deadline
        log(f"{a.conns} parked; {a.seconds:.0f} s measured")
        held = window(st, uri, a.seconds, socks, cursor)
        for s in socks:
            s.close()
    finally:
        st.stop_all()
    print(json.dumps({"bin": a.bin, "machine": benchlib.machine(),
                      "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "idle_hub": base, "parked": held}, indent=1))


if __name__ == "__main__":
    main()
