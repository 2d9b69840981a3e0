#!/usr/bin/env python3
"""A backlog of purchases drained by the tillside agent's uploader, beside the
same events sent by Segment's Node SDK (@segment/analytics-node, npm) to the
same local endpoint.

The endpoint is a small TLS sink in this process (the bench CA's "localhost"
certificate, client certificates optional): POST /v1/purchases answers the
hub's way (every messageId accepted), POST /v1/batch answers Segment's way.
It counts distinct messageIds.

  tillside  N purchases written into <state_dir>/outbox.db (the agent stopped),
            then `tillside run` against the sink: time until the sink has all N,
            CPU seconds and peak RSS of the agent (wait4 rusage).
  segment   node bench/segment_peer/send.js tracking the same N events (read
            from a JSONL file), closeAndFlush(): the same figures for node.
  killed    each again, SIGKILLed once the sink has half of them; tillside is
            restarted (its outbox is on disk), the SDK cannot be (its queue was
            in memory): lost = N - distinct messageIds the sink ever got.

  python3 bench/purchase_backlog.py [--bin build/hpa-rel] [--events 100000] [--runs 3]
Needs node + `npm install` in bench/segment_peer (done here when missing).
"""
import argparse
import http.server
import json
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import Bins, Proc, Setup, log, machine, median, wait  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "segment_peer")


class Sink:
    def __init__(self, pki):
        self.lock = threading.Lock()
        self.seen = set()
        self.received = 0
        self.requests = 0
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._send(404, b'{"error":"no feed here"}')

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                batch = json.loads(body)["batch"]
                ids = [e["messageId"] for e in batch]
                with sink.lock:
                    sink.requests += 1
                    sink.received += len(ids)
                    sink.seen.update(ids)
                if self.path == "/v1/purchases":
                    ans = {"accepted": ids, "duplicates": [], "rejected": []}
                else:
                    ans = {"success": True}
                self._send(200, json.dumps(ans).encode())

            def _send(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.srv = S(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{pki}/hub.pem", f"{pki}/hub.key")
        ctx.load_verify_locations(f"{pki}/ca.pem")
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.seen = set()
            self.received = 0
            self.requests = 0

    def distinct(self):
        with self.lock:
            return len(self.seen)


def make_event(i):
    """An event as the agent records it (agent/purchase.c), without sentAt."""
    receipt = f"S001-T01-{i:07d}"
    total = round(10 + (i % 90) + 0.9, 2)
    return {
        "type": "track", "event": "Order Completed", "messageId": str(uuid.uuid4()),
        "anonymousId": "S001:T01", "originalTimestamp": "2026-11-28T16:37:15.000Z",
        "properties": {"order_id": receipt, "total": total, "revenue": round(total * 0.84, 2),
                       "tax": round(total * 0.16, 2), "discount": 0.0, "currency": "EUR",
                       "products": [{"product_id": f"SKU-{(i * 7 + k) % 5000:05d}",
                                     "sku": f"SKU-{(i * 7 + k) % 5000:05d}",
                                     "name": "Rain Jacket", "price": 19.9, "quantity": 1}
                                    for k in range(1 + i % 3)]},
        "context": {"tillside": {"store": "S001", "terminal": "T01", "receipt": receipt,
                                 "source": "api"},
                    "library": {"name": "tillside", "version": "0.1.0"}},
    }


def build_backlog(setup, bins, n, work):
    """outbox.db with n pending purchases, and the same events as JSONL."""
    d = os.path.join(work, f"backlog-{n}")
    db = os.path.join(d, "state", "outbox.db")
    jsonl = os.path.join(d, "events.jsonl")
    if os.path.exists(os.path.join(d, "ok")):
        return d
    shutil.rmtree(d, ignore_errors=True)
    state = os.path.join(d, "state")
    os.makedirs(state)
    # the agent makes the schema (pointed at a closed port, nothing is sent)
    conf = setup.agent_conf(state, extra_hub="")
    a = Proc("agent", [bins.agent, "run", "-c", conf], os.path.join(work, "agent.log"))
    wait(lambda: setup.api("GET", "/readyz")[0] == 200, 60, "agent /readyz", a)
    a.stop()
    log(f"writing {n} purchases into {db}")
    con = sqlite3.connect(db)
    with open(jsonl, "w") as f, con:
        rows = []
        for i in range(n):
            e = make_event(i)
            text = json.dumps(e, separators=(",", ":"))
            f.write(text + "\n")
            rows.append((e["messageId"], e["properties"]["order_id"], "api", text,
                         1764347835000 + i))
        con.executemany("INSERT INTO journal(message_id, receipt, source, event, created) "
                        "VALUES(?, ?, ?, ?, ?)", rows)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    open(os.path.join(d, "ok"), "w").close()
    return d


class HWM:
    """Samples VmHWM of a child every 20 ms until it exits. (wait4's ru_maxrss
    is no good here: it counts the child before exec, a copy of this Python
    process with the backlog in memory.)"""

    def __init__(self, pid):
        self.pid, self.kb = pid, 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while True:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.kb = max(self.kb, int(line.split()[1]))
            except (OSError, ValueError):
                return
            time.sleep(0.02)


def rusage_wait(p, hwm=None):
    """Waits for a child; (exit status, CPU seconds, peak RSS in MB)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    return status, ru.ru_utime + ru.ru_stime, (hwm.kb if hwm else 0) / 1024.0


def run_tillside(setup, bins, backlog, sink, n, work, kill_at=None):
    state = os.path.join(work, "agent-state")
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(os.path.join(backlog, "state"), state)
    conf = setup.agent_conf(state, extra_hub="")
    # the agent talks to the sink: rewrite the hub URL
    with open(conf) as f:
        text = f.read().replace(f"https://localhost:{setup.hub_port}",
                                f"https://localhost:{sink.port}")
    with open(conf, "w") as f:
        f.write(text)
    sink.reset()
    logf = open(os.path.join(work, "agent.log"), "ab")
    t0 = time.monotonic()
    p = subprocess.Popen([bins.agent, "run", "-c", conf], stdout=logf, stderr=subprocess.STDOUT)
    hwm = HWM(p.pid)
    if kill_at:
        while sink.distinct() < kill_at:
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        rusage_wait(p)
        got = sink.distinct()
        p = subprocess.Popen([bins.agent, "run", "-c", conf], stdout=logf,
                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while sink.distinct() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        rusage_wait(p)
        logf.close()
        return {"at_kill": got, "lost": n - sink.distinct(), "resent": sink.received - n}
    while sink.distinct() < n:
        if p.poll() is not None:
            raise SystemExit("agent exited")
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    p.send_signal(signal.SIGTERM)
    _, cpu, rss = rusage_wait(p, hwm)
    logf.close()
    return {"s": elapsed, "cpu": cpu, "rss": rss, "requests": sink.requests}


def run_segment(setup, backlog, sink, n, flush_at, kill_at=None):
    sink.reset()
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=f"{setup.pki}/ca.pem")
    t0 = time.monotonic()
    p = subprocess.Popen(["node", os.path.join(PEER, "send.js"),
                          os.path.join(backlog, "events.jsonl"), f"https://localhost:{sink.port}",
                          str(flush_at)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    hwm = HWM(p.pid)
    if kill_at:
        while sink.distinct() < kill_at and p.poll() is None:
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        rusage_wait(p)
        got = sink.distinct()
        time.sleep(0.5)
        return {"at_kill": got, "lost": n - sink.distinct()}
    status, cpu, rss = rusage_wait(p, hwm)
    elapsed = time.monotonic() - t0
    out = p.stdout.read().decode(errors="replace")
    if status != 0 or sink.distinct() != n:
        raise SystemExit(f"segment peer: status {status}, {sink.distinct()}/{n} arrived: {out}")
    return {"s": elapsed, "cpu": cpu, "rss": rss, "requests": sink.requests}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(benchlib.ROOT, "build", "bench"))
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    bins = Bins(args.bin)
    work = os.path.join(args.bin, "work", "purchases")
    setup = Setup(bins, work)
    if not os.path.exists(os.path.join(PEER, "node_modules", "@segment", "analytics-node")):
        log("npm install in bench/segment_peer")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=PEER, check=True)
    backlog = build_backlog(setup, bins, args.events, work)
    sink = Sink(setup.pki)
    n = args.events
    res = {"tillside": [], "segment (flushAt 15, default)": [], "segment (flushAt 500)": []}
    for r in range(args.runs):
        log(f"run {r + 1}/{args.runs}")
        res["tillside"].append(run_tillside(setup, bins, backlog, sink, n, work))
        res["segment (flushAt 15, default)"].append(run_segment(setup, backlog, sink, n, 15))
        res["segment (flushAt 500)"].append(run_segment(setup, backlog, sink, n, 500))
        for k, v in res.items():
            log(f"  {k}: {v[-1]}")
    killed = {"tillside": run_tillside(setup, bins, backlog, sink, n, work, kill_at=n // 2),
              "segment (flushAt 15, default)": run_segment(setup, backlog, sink, n, 15,
                                                           kill_at=n // 2)}
    log(f"killed halfway: {killed}")
    base = median([x["s"] for x in res["tillside"]])
    lines = [f"### Purchase backlog: {n:,} events drained (`bench/purchase_backlog.py --events {n} "
             f"--runs {args.runs}`)", "", machine(), "",
             "| sender | events/s (median) | time s | CPU s | peak RSS MB | requests | "
             "time vs tillside |", "|---|---|---|---|---|---|---|"]
    for k, v in res.items():
        s = median([x["s"] for x in v])
        lines.append(f"| {k} | {n / s:,.0f} | {s:.2f} | {median([x['cpu'] for x in v]):.2f} | "
                     f"{median([x['rss'] for x in v]):.1f} | {v[0]['requests']} | "
                     f"{s / base:.2f}× |")
    lines += ["", "Killed (SIGKILL) once the endpoint had half of them:", "",
              "| sender | at the kill | lost | note |", "|---|---|---|---|"]
    t = killed["tillside"]
    lines.append(f"| tillside | {t['at_kill']:,} | {t['lost']} | restarted: the outbox was on "
                 f"disk; {t['resent']} sent twice (acknowledged by the endpoint, not yet "
                 f"marked sent) |")
    s = killed["segment (flushAt 15, default)"]
    lines.append(f"| segment (flushAt 15) | {s['at_kill']:,} | {s['lost']:,} | its queue was in "
                 f"memory; nothing to restart from |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(work, "purchase_backlog.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
