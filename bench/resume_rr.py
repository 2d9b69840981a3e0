#!/usr/bin/env python3
"""Share of resumed TLS handshakes when a terminal's reconnects alternate
between two hub processes, as behind a round-robin balancer that passes TLS
through (nginx `stream` with `proxy_pass` to an upstream of both): the
client alternates the two ports itself, which is what the balancer does to
it (bench/fleet_rr.py measures a fleet through real nginx). On PostgreSQL the
two processes share their session ticket keys through the database (issue
14); on SQLite (two processes on one file) each keeps its own, the control.
Baseline in the same run: every reconnect to the same hub.

    tests/tools/with_pg.sh python3 bench/resume_rr.py --bin build/release [--reconnects 200]
    python3 bench/resume_rr.py --bin build/release          # the SQLite control

A reconnect is a new TCP + TLS 1.2 connection offering the last session
(ticket) the client got, then one GET /v1/feed?limit=1 (a terminal's poll).
Uses the black-box harness (tests/blackbox/tslib.py, test_pg.start_hubs).
"""
import argparse
import json
import os
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "blackbox"))


def poll(ctx, port, sess):
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
    s.sendall(b"GET /v1/feed?limit=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"poll on {port} answered {data[:100]!r}")
    resumed, sess = s.session_reused, s.session
    s.close()
    return resumed, sess


def share(ctx, ports, n):
    sess, got = None, 0
    t0 = time.monotonic()
    for i in range(n):
        resumed, sess = poll(ctx, ports[i % len(ports)], sess)
        got += resumed and i > 0
    return {"resumed": got, "of": n - 1, "share": round(got / (n - 1), 3),
            "wall_s": round(time.monotonic() - t0, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--reconnects", type=int, default=200)
    a = ap.parse_args()
    os.environ["TS_BIN_DIR"] = os.path.abspath(a.bin)
    import tslib
    from test_pg import start_hubs
    w = tslib.World("resume-rr")
    try:
        hubs = start_hubs(w)
        ctx = w.hub_ssl("t01")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ports = [h["port"] for h in hubs]
        out = {"db": "postgresql" if tslib.PG_URI else "sqlite",
               "same_hub": share(ctx, ports[:1], a.reconnects),
               "round_robin": share(ctx, ports, a.reconnects),
               "load_avg": os.getloadavg()}
        print(json.dumps(out, indent=1))
    finally:
        w.close(True)


if __name__ == "__main__":
    main()
