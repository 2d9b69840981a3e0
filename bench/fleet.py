#!/usr/bin/env python3
"""Fleet benchmark: N simulated terminals (bench/fleetsim.c, on the agent's
own httpc/TLS/feed code) polling one hub's feed every 30 s with jitter and
uploading purchases, while the CDP keeps sending changes. Reports the
client-observed latency percentiles, the hub's CPU (utime+stime from
/proc over the measured window) and peak RSS. Baseline in the same run: one
terminal polling alone against the same hub and data (unloaded latency).

    python3 bench/fleet.py [--bin build/bench] [--terminals 2000] [--stores 100]
        [--customers 20000] [--duration 120] [--interval 30]

SQLite only: the PostgreSQL backend does not exist yet (issue 7).
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import log  # noqa: E402


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def fleetsim(sim, url, pki, terminals, stores, threads, interval, duration, purchase_every):
    p = subprocess.run([sim, "--url", url, "--pki", pki, "--terminals", str(terminals),
                        "--stores", str(stores), "--threads", str(threads),
                        "--interval", str(interval), "--duration", str(duration),
                        "--purchase-every", str(purchase_every)],
                       capture_output=True, text=True)
    if not p.stdout.strip().startswith("{"):
        raise SystemExit(f"fleetsim failed ({p.returncode}): {p.stderr}")
    r = json.loads(p.stdout)
    r["rc"] = p.returncode
    if p.stderr.strip():
        log(p.stderr.strip()[-500:])
    return r


class CdpStream:
    """Renames a few customers every second through /v1/batch, so polls
    carry changes (about `rate` events/s)."""

    def __init__(self, st, users, rate):
        self.st, self.users, self.rate = st, users, rate
        self.stop = threading.Event()
        self.sent = 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        auth = base64.b64encode(f"{benchlib.WRITE_KEY}:".encode()).decode()
        n = 0
        while not self.stop.wait(1.0):
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            ev = []
            for _ in range(self.rate):
                n += 1
                ev.append({"type": "identify", "userId": self.users[n % len(self.users)],
                           "messageId": f"fleet-cdp-{n}-{time.time()}", "timestamp": now,
                           "traits": {"points": n}})
            try:
                c = self.st.hub_conn("cdp")
                c.request("POST", "/v1/batch", body=json.dumps({"batch": ev}),
                          headers={"Authorization": f"Basic {auth}",
                                   "Content-Type": "application/json"})
                c.getresponse().read()
                c.close()
                self.sent += len(ev)
            except OSError as e:
                log(f"CDP batch failed: {e}")


def dataset(bins, work, customers, nstores, stores):
    """benchlib.dataset names its directory after the store list, too long
    for 100 stores: the same build (gen --out + import) under a short name."""
    d = os.path.join(work, f"fleet-n{customers}-s{nstores}")
    db = os.path.join(d, "db", "hub.db")
    if os.path.exists(os.path.join(d, "imported.ok")):
        return db
    os.makedirs(os.path.join(d, "db"), exist_ok=True)
    events = os.path.join(d, "events.jsonl")
    log(f"generating {customers} customers over {nstores} stores")
    benchlib.run([bins.hub, "gen", "--out", events, "--customers", str(customers),
                  "--stores", stores, "--seed", "7"])
    conf = os.path.join(d, "import.conf")
    with open(conf, "w") as f:
        f.write(f"[hub]\nlisten = 127.0.0.1:0\ndb = {db}\nlog_level = warn\n"
                f"[cdp]\nwrite_key = {benchlib.WRITE_KEY}\n"
                f"[tenant]\nname = acme\nkey = {benchlib.TENANT_KEY}\nkey_version = 1\n")
    benchlib.run([bins.hub, "import", "-c", conf, events])
    open(os.path.join(d, "imported.ok"), "w").close()
    return db


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bench")
    ap.add_argument("--terminals", type=int, default=2000)
    ap.add_argument("--stores", type=int, default=100)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--interval", type=float, default=30)
    ap.add_argument("--purchase-every", type=float, default=300,
                    help="mean seconds between purchases per terminal")
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--cdp-rate", type=int, default=20, help="CDP events per second")
    a = ap.parse_args()

    bins = benchlib.Bins(a.bin)
    sim = os.path.join(bins.dir, "bench", "ts_fleetsim")
    work = os.path.join(bins.dir, "work")
    stores = ",".join(f"S{i:03d}" for i in range(1, a.stores + 1))
    db_src = dataset(bins, work, a.customers, a.stores, stores)
    st = benchlib.Setup(bins, os.path.join(work, "fleet"))
    db = os.path.join(st.dir, "hub.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    subprocess.run(["cp", db_src, db], check=True)
    hub = st.start_hub(db)
    url = f"https://localhost:{st.hub_port}"
    users = [f"g7-{i:06d}" for i in range(0, a.customers, max(1, a.customers // 500))]
    try:
        log("baseline: one terminal polling alone")
        base = fleetsim(sim, url, st.pki, 1, 1, 1, 0.05, 10, 1.0)
        cdp = CdpStream(st, users, a.cdp_rate)
        cdp.t.start()
        log(f"fleet: {a.terminals} terminals in {a.stores} stores, {a.duration:.0f} s")
        c0, w0 = cpu_s(hub.pid), time.monotonic()
        fleet = fleetsim(sim, url, st.pki, a.terminals, a.stores, a.threads, a.interval,
                         a.duration, a.purchase_every)
        c1, w1 = cpu_s(hub.pid), time.monotonic()
        cdp.stop.set()
        cdp.t.join()
        rss = hub.proc_status("VmHWM")
    finally:
        st.stop_all()
    cpu = 100.0 * (c1 - c0) / (w1 - w0)
    polls = fleet["feed"]["n"] + fleet["feed_first"]["n"]
    out = {"machine": benchlib.machine(), "baseline": base, "fleet": fleet,
           "hub_cpu_pct_of_one_core": round(cpu, 1), "hub_peak_rss_kb": rss,
           "cdp_events": cdp.sent, "req_per_s": round((polls + fleet["purchase"]["n"]) /
                                                      fleet["ran_s"], 1)}
    print(json.dumps(out, indent=1))
    f, b = fleet["feed"], base["feed"]
    md = f"""### Fleet: {a.terminals} terminals, {a.stores} stores, SQLite

`python3 bench/fleet.py --terminals {a.terminals} --stores {a.stores} --customers {a.customers} --duration {a.duration:.0f}`

| backend | terminals | req/s | feed p50 | feed p99 | purchase p50 | purchase p99 | hub CPU | hub peak RSS | errors |
|---|---|---|---|---|---|---|---|---|---|
| SQLite | {a.terminals} | {out['req_per_s']} | {f['p50']:.1f} ms | {f['p99']:.1f} ms | {fleet['purchase']['p50']:.1f} ms | {fleet['purchase']['p99']:.1f} ms | {cpu:.0f} % of a core | {rss / 1024 if rss else 0:.0f} MB | {fleet['errors']} + {fleet['non2xx']} non-2xx |
| PostgreSQL | — | — | — | — | — | — | — | — | not built yet |

Baseline (same run, one terminal alone): feed p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms
(ratio at p50: {f['p50'] / b['p50'] if b['p50'] else 0:.1f}×). First (full-slice) polls: p50
{fleet['feed_first']['p50']:.1f} ms, p99 {fleet['feed_first']['p99']:.1f} ms over {fleet['feed_first']['n']}.
Simulator lateness p99 {fleet['sched_late']['p99']:.0f} ms (how far behind schedule it started polls).
"""
    print(md)
    with open(os.path.join(work, "fleet.md"), "w") as fh:
        fh.write(md)


if __name__ == "__main__":
    main()
