#!/usr/bin/env python3
"""Memory per held connection at the hub (issue 14): the hub's RSS with N
long-polls parked (TLS connections from terminals, each with a GET /v1/feed
?wait=25 the hub holds because nothing changes) against the same hub with
none, per run a fresh hub; the median of --runs runs.

Each connection resumes one TLS 1.2 session, as terminals do, so opening a
few thousand costs the hub little CPU; the held state is the same either way
(the mbedTLS context with its record buffers, the socket, the parsed
request). Opening more than the hub's 25 s long-poll wait allows (about
4,000 here) lets the first ones be answered, empty, before the last is
open: each answered one is asked again at once (the agent's behaviour), so
N are held at the hub when RSS is read; "held_at_read" says how many
connections were open then.

    python3 bench/held_conns.py --bin build/release [--conns 2000] [--runs 3]
"""
import argparse
import json
import os
import resource
import select
import socket
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import log, median  # noqa: E402


def rss_kb(proc):
    return proc.proc_status("VmRSS")


def settle(proc, secs=2.0):
    """RSS after it stopped moving (sampled every 0.2 s for secs)."""
    vals = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        vals.append(rss_kb(proc))
        time.sleep(0.2)
    return median(vals[len(vals) // 2:])


def repoll(socks, cursor):
    """Asks again on every connection whose long-poll was answered."""
    p = select.poll()
    byfd = {s.fileno(): s for s in socks}
    for fd in byfd:
        p.register(fd, select.POLLIN)
    for fd, _ in p.poll(0):
        s = byfd[fd]
        try:
            data = s.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        if data:
            s.sendall(f"GET /v1/feed?since={cursor}&wait=25 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                      .encode())


def one_run(bins, workroot, n):
    st = benchlib.Setup(bins, os.path.join(workroot, f"run-{time.monotonic_ns()}"))
    hub = st.start_hub(os.path.join(st.dir, "hub.db"))
    ctx = st.ssl_ctx()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = st.hub_conn()
    c.request("GET", "/v1/feed?limit=1")
    page = json.loads(c.getresponse().read())
    c.close()
    cursor = page["cursor"]
    # a warm baseline: the hub has served a handshake and a feed page
    base = settle(hub)
    sess = None
    socks = []
    t0 = time.monotonic()
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", st.hub_port), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
        sess = s.session
        s.sendall(f"GET /v1/feed?since={cursor}&wait=25 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  .encode())
        socks.append(s)
        if len(socks) % 200 == 0:
            repoll(socks, cursor)
    opened = time.monotonic() - t0
    repoll(socks, cursor)
    held = settle(hub)
    log(f"{n} held in {opened:.1f} s: RSS {base} kB -> {held} kB")
    for s in socks:
        s.close()
    st.stop_all()
    return base, held, opened


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bins = benchlib.Bins(a.bin)
    work = tempfile.mkdtemp(prefix="ts-held-")
    runs = [one_run(bins, work, a.conns) for _ in range(a.runs)]
    per = [(h - b) * 1024 / a.conns for b, h, _ in runs]
    out = {"conns": a.conns, "runs": a.runs,
           "rss_idle_kb": [b for b, _, _ in runs], "rss_held_kb": [h for _, h, _ in runs],
           "bytes_per_held_conn": [round(p) for p in per],
           "bytes_per_held_conn_median": round(median(per)),
           "open_s": [round(o, 1) for _, _, o in runs], "machine": benchlib.machine()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
