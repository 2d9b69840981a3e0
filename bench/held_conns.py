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
N are held at the hub when RSS is read.

Then, with the N held (and, as the baseline, on the same hub before any is
held): a CDP batch, a purchase upload and a new connection's feed page,
each timed --samples times (median); and last one CDP change to the store
all N poll: the time from the batch to each held long-poll's answer
(p50, p99, and how many were answered).

With --stores K the N connections are spread over K stores (terminal
T01 of stores S001..SK, N/K each) and the change is to S001: only S001's
polls have news. Then the figures are also the hub's CPU seconds from the
change until S001's polls were all answered plus one second (what the other
stores' polls cost it: with a wake of every parked poll each re-runs its
query; woken per store, none does) and how many parked polls the hub handed
over again (tillside_hub_httpd_woken_total, where the hub has it).

    python3 bench/held_conns.py --bin build/release [--conns 2000] [--stores 1] [--runs 3]
"""
import argparse
import base64
import json
import os
import resource
import select
import socket
import ssl
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import log, median  # noqa: E402


def cpu_s(proc):
    """utime + stime of the process so far, in seconds."""
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def woken(st):
    """tillside_hub_httpd_woken_total of the main listener, or None."""
    try:
        text = request(st, "cdp", "GET", "/metrics").decode()
    except SystemExit:
        return None
    for line in text.splitlines():
        if line.startswith('tillside_hub_httpd_woken_total{listener="main"} '):
            return float(line.split()[1])
    return None


def fresh_cursor(st):
    path = "/v1/feed?limit=1000"
    while True:
        page = json.loads(request(st, "t01", "GET", path))
        if not page["more"]:
            return page["cursor"]
        path = f"/v1/feed?limit=1000&since={page['cursor']}"


def parked_now(st):
    """tillside_hub_httpd_parked of the main listener, or None."""
    try:
        text = request(st, "cdp", "GET", "/metrics").decode()
    except SystemExit:
        return None
    for line in text.splitlines():
        if line.startswith('tillside_hub_httpd_parked{listener="main"} '):
            return int(float(line.split()[1]))
    return None


def store_cert(st, k):
    """The certificate of terminal T01 of store k (1 = S001, the Setup's)."""
    if k == 1:
        return "t01"
    name = f"s{k:03d}"
    if not os.path.exists(f"{st.pki}/{name}.pem"):
        benchlib.run([st.b.hub, "pki", "issue", "--dir", st.pki, "--cn", "T01", "--ou",
                      f"S{k:03d}", "--o", "acme", "--out", f"{st.pki}/{name}"])
    return name


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


def hold(st, ctxs, n, cursor):
    """n long-polls from cursor on their own connections, the i-th with
    ctxs[i % len(ctxs)] (a store's terminal), each resuming that context's
    last TLS 1.2 session; the answered ones asked again. Returns the sockets."""
    sess = [None] * len(ctxs)
    socks = []
    for i in range(n):
        k = i % len(ctxs)
        raw = socket.create_connection(("127.0.0.1", st.hub_port), timeout=30)
        s = ctxs[k].wrap_socket(raw, server_hostname="localhost", session=sess[k])
        sess[k] = s.session
        s.sendall(f"GET /v1/feed?since={cursor}&wait=25 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  .encode())
        socks.append(s)
        if len(socks) % 200 == 0:
            repoll(socks, cursor)
    repoll(socks, cursor)
    return socks


def timed(fn, samples):
    ts = []
    for i in range(samples):
        t = time.monotonic()
        fn(i)
        ts.append((time.monotonic() - t) * 1000)
    return round(median(ts), 2)


def request(st, cert, method, path, body=None, headers=None, fresh=True):
    c = st.hub_conn(cert)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise SystemExit(f"{method} {path} answered {r.status}: {data[:200]!r}")
    return data


def batch(st, tag):
    auth = base64.b64encode(f"{benchlib.WRITE_KEY}:".encode()).decode()
    ev = [{"type": "identify", "userId": f"held-{tag}", "messageId": f"held-{tag}",
           "traits": {"name": f"Held {tag}", "home_store": "S001"}}]
    request(st, "cdp", "POST", "/v1/batch", json.dumps({"batch": ev}),
            {"Authorization": f"Basic {auth}", "Content-Type": "application/json"})


def purchase(st, tag):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    mid = f"held-p-{tag}-{time.monotonic_ns()}"
    ev = {"type": "track", "event": "Order Completed", "messageId": mid,
          "anonymousId": "S001:T01", "originalTimestamp": now, "sentAt": now,
          "properties": {"order_id": mid, "total": 1.0, "currency": "EUR",
                         "products": [{"product_id": "SKU-1", "price": 1.0, "quantity": 1}]},
          "context": {"tillside": {"store": "S001", "terminal": "T01", "receipt": mid,
                                   "source": "api"}}}
    request(st, "t01", "POST", "/v1/purchases", json.dumps({"batch": [ev]}),
            {"Content-Type": "application/json"})


def served(st, samples, tag):
    """Medians (ms) of a CDP batch, a purchase, a first feed page; new
    connections each (full handshakes, as a new CDP client or terminal)."""
    return {"cdp_batch_ms": timed(lambda i: batch(st, f"{tag}-{i}"), samples),
            "purchase_ms": timed(lambda i: purchase(st, f"{tag}-{i}"), samples),
            "first_feed_page_ms": timed(lambda i: request(st, "t01", "GET", "/v1/feed?limit=500"),
                                        samples)}


def informed(st, socks, hub=None, others=()):
    """One CDP change (to S001, whose polls are socks); ms from it to each of
    socks' answers; with hub, its CPU seconds until they all were plus 1 s,
    and how many of others (other stores' polls) were answered with a change."""
    p = select.poll()
    byfd = {s.fileno(): s for s in socks}
    for fd in byfd:
        p.register(fd, select.POLLIN)
    w0 = woken(st) if hub else None
    c0 = cpu_s(hub) if hub else 0
    t0 = time.monotonic()
    done = {}

    def send():  # on its own thread: its answer may come after the polls'
        batch(st, "change")
        done["batch_ms"] = round((time.monotonic() - t0) * 1000, 1)

    th = threading.Thread(target=send)
    th.start()
    got = []
    pending = set(byfd)
    while pending and time.monotonic() - t0 < 60:
        for fd, _ in p.poll(1000):
            if fd in pending:
                pending.discard(fd)
                p.unregister(fd)
                got.append((time.monotonic() - t0) * 1000)
    th.join()
    got.sort()
    out = {"answered": len(got), "of": len(socks), "batch_answer_ms": done.get("batch_ms"),
           "p50_ms": round(got[len(got) // 2], 1) if got else None,
           "p99_ms": round(got[max(0, int(len(got) * 0.99) - 1)], 1) if got else None}
    if hub:
        time.sleep(1.0)  # what the wake still costs after the last answer: measured, not waited on
        out["hub_cpu_s"] = round(cpu_s(hub) - c0, 3)
        w1 = woken(st)
        out["woken"] = None if w0 is None or w1 is None else w1 - w0
        out["others_with_news"] = sum(with_news(s) for s in readable_now(others))
    return out


def with_news(s):
    """Whether the answer waiting on s carries a change (not the empty page
    of a wait that ran out)."""
    try:
        return b'"op":' in s.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError, OSError):
        return False


def readable_now(socks):
    if not socks:
        return []
    p = select.poll()
    byfd = {s.fileno(): s for s in socks}
    for fd in byfd:
        p.register(fd, select.POLLIN)
    return [byfd[fd] for fd, _ in p.poll(0)]


def one_run(bins, workroot, n, stores=1, samples=5):
    st = benchlib.Setup(bins, os.path.join(workroot, f"run-{time.monotonic_ns()}"))
    try:
        return measure(st, n, samples, stores)
    finally:
        st.stop_all()


def measure(st, n, samples, stores=1):
    certs = [store_cert(st, k) for k in range(1, stores + 1)]
    hub = st.start_hub(os.path.join(st.dir, "hub.db"))
    ctxs = []
    for cert in certs:
        ctx = st.ssl_ctx(cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctxs.append(ctx)
    c = st.hub_conn()
    c.request("GET", "/v1/feed?limit=1")
    page = json.loads(c.getresponse().read())
    c.close()
    cursor = page["cursor"]
    # a warm baseline: the hub has served a handshake and a feed page
    base = settle(hub)
    idle = served(st, samples, "idle")
    t0 = time.monotonic()
    socks = hold(st, ctxs, n, cursor)
    opened = time.monotonic() - t0
    held = settle(hub)
    log(f"{n} held in {opened:.1f} s: RSS {base} kB -> {held} kB")
    busy = served(st, samples, "held")
    # The batches above changed S001: its polls were answered. Everyone asks
    # again from the newest cursor, and the change below finds them parked.
    cursor = fresh_cursor(st)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        repoll(socks, cursor)
        parked = parked_now(st)
        if parked == n or (parked is None and not readable_now(socks)):
            break
        time.sleep(0.2)  # polling with a deadline, not a wait for a guess
    mine = [s for i, s in enumerate(socks) if i % stores == 0]
    others = [s for i, s in enumerate(socks) if i % stores != 0]
    inf = informed(st, mine, hub, others)
    log(f"idle hub {idle}; with {n} held {busy}; change -> held polls {inf}")
    for s in socks:
        s.close()
    return base, held, opened, idle, busy, inf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--stores", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bins = benchlib.Bins(a.bin)
    work = tempfile.mkdtemp(prefix="ts-held-")
    runs = [one_run(bins, work, a.conns, a.stores) for _ in range(a.runs)]
    per = [(r[1] - r[0]) * 1024 / a.conns for r in runs]
    out = {"conns": a.conns, "stores": a.stores, "runs": a.runs,
           "rss_idle_kb": [r[0] for r in runs], "rss_held_kb": [r[1] for r in runs],
           "bytes_per_held_conn": [round(p) for p in per],
           "bytes_per_held_conn_median": round(median(per)),
           "open_s": [round(r[2], 1) for r in runs],
           "served_idle": [r[3] for r in runs], "served_held": [r[4] for r in runs],
           "change_to_held": [r[5] for r in runs],
           "load_avg": os.getloadavg(), "machine": benchlib.machine()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
