#!/usr/bin/env python3
"""Fleet benchmark: N simulated terminals (bench/fleetsim.c, on the agent's
own httpc/TLS/feed code) polling one hub's feed every 30 s with jitter and
uploading purchases, while the CDP keeps sending changes. Reports the
client-observed latency percentiles, the hub's CPU (utime+stime from
/proc over the measured window) and peak RSS. Baseline in the same run: one
terminal polling alone against the same hub and data (unloaded latency).
Also in the same run, before the fleet: the cost of one poll on a full TLS
handshake and on a resumed session (one terminal polling back to back,
--cost-seconds each): client CPU (the simulator's own getrusage) and hub CPU
(/proc) per poll, and the poll's latency.

    python3 bench/fleet.py [--bin build/bench] [--terminals 2000] [--stores 100]
        [--customers 20000] [--duration 120] [--interval 30] [--no-resume]

With --pg the hub runs on the PostgreSQL database of TS_TEST_PG instead of
SQLite (run under tests/tools/with_pg.sh; TS_PG_FSYNC=on keeps the server's
fsync on), the data imported into it first; the server's CPU (its processes
in /proc) is reported beside the hub's:

    TS_PG_FSYNC=on tests/tools/with_pg.sh python3 bench/fleet.py --pg ...
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


def busy_s():
    """CPU seconds the whole machine spent busy so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def fleetsim(sim, url, pki, terminals, stores, threads, interval, duration, purchase_every,
             resume=True, warmup=0, on_measure=None):
    """Runs ts_fleetsim; on_measure() is called when its measured window
    begins (after the warm-up)."""
    p = subprocess.Popen([sim, "--url", url, "--pki", pki, "--terminals", str(terminals),
                          "--stores", str(stores), "--threads", str(threads),
                          "--interval", str(interval), "--duration", str(duration),
                          "--purchase-every", str(purchase_every), "--warmup", str(warmup)] +
                         ([] if resume else ["--no-resume"]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []

    def read_err():
        for line in p.stderr:
            if line.startswith("fleetsim: measuring"):
                if on_measure:
                    on_measure()
            else:
                err.append(line)

    t = threading.Thread(target=read_err, daemon=True)
    t.start()
    out = p.stdout.read()
    p.wait()
    t.join()
    stderr = "".join(err)
    if not out.strip().startswith("{"):
        raise SystemExit(f"fleetsim failed ({p.returncode}): {stderr}")
    r = json.loads(out)
    r["rc"] = p.returncode
    if stderr.strip():
        log(stderr.strip()[-500:])
    return r


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def poll_cost(sim, url, pki, hub_pid, seconds, resume):
    """One terminal polling back to back (every 50 ms, no purchases, no CDP
    traffic): CPU per poll on each side, and the poll's latency. Every poll
    is a new connection; with resume all but the first resume a session."""
    c0 = cpu_s(hub_pid)
    r = fleetsim(sim, url, pki, 1, 1, 1, 0.05, seconds, 1e9, resume)
    c1 = cpu_s(hub_pid)
    polls = r["feed"]["n"] + r["feed_first"]["n"]
    if not polls:
        raise SystemExit(f"poll cost run made no polls: {r}")
    return {"resume": resume, "polls": polls, "handshakes": r["handshakes"],
            "errors": r["errors"],
            "client_cpu_ms_per_poll": round(1000.0 * r["cpu_s"] / polls, 2),
            "hub_cpu_ms_per_poll": round(1000.0 * (c1 - c0) / polls, 2),
            "poll_p50_ms": r["feed"]["p50"], "poll_p99_ms": r["feed"]["p99"]}


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


def pg_cpu_s():
    """CPU seconds of the PostgreSQL server's processes alive now."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += cpu_s(int(pid))
        except OSError:
            pass
    return total


def import_pg(bins, d, uri):
    """The dataset's events (from dataset()) imported into an emptied uri."""
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", uri, "-c",
                    "SET client_min_messages = warning; DROP SCHEMA public CASCADE;"
                    " CREATE SCHEMA public"], check=True)
    conf = os.path.join(d, "import-pg.conf")
    with open(conf, "w") as f:
        f.write(f"[hub]\nlisten = 127.0.0.1:0\ndb = {uri}\nlog_level = warn\n"
                f"[cdp]\nwrite_key = {benchlib.WRITE_KEY}\n"
                f"[tenant]\nname = acme\nkey = {benchlib.TENANT_KEY}\nkey_version = 1\n")
    log("importing the dataset into PostgreSQL")
    t0 = time.monotonic()
    benchlib.run([bins.hub, "import", "-c", conf, os.path.join(d, "events.jsonl")])
    log(f"imported in {time.monotonic() - t0:.0f} s")


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


def fleet_args(bin_dir, terminals, stores, duration, warmup, purchase_every, threads):
    """The simulated fleet's options (fleetsim()), with the caller's defaults."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=bin_dir)
    ap.add_argument("--terminals", type=int, default=terminals)
    ap.add_argument("--stores", type=int, default=stores)
    ap.add_argument("--duration", type=float, default=duration)
    ap.add_argument("--interval", type=float, default=30)
    ap.add_argument("--purchase-every", type=float, default=purchase_every,
                    help="mean seconds between purchases per terminal")
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--warmup", type=float, default=warmup,
                    help="seconds over which the terminals' first polls (full handshake, full "
                         "sync) run before the measured window; 0 = within it (a cold start)")
    return ap


def main():
    ap = fleet_args("build/bench", terminals=2000, stores=100, duration=120, warmup=120,
                    purchase_every=300, threads=64)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--cdp-rate", type=int, default=20, help="CDP events per second")
    ap.add_argument("--no-resume", action="store_true",
                    help="fleet terminals do a full TLS handshake on every poll")
    ap.add_argument("--cost-seconds", type=float, default=20,
                    help="length of each poll-cost run (full, resumed); 0 = skip")
    ap.add_argument("--pg", action="store_true",
                    help="the hub on the PostgreSQL database of TS_TEST_PG (tests/tools/with_pg.sh)")
    a = ap.parse_args()

    bins = benchlib.Bins(a.bin)
    sim = os.path.join(bins.dir, "bench", "ts_fleetsim")
    work = os.path.join(bins.dir, "work")
    stores = ",".join(f"S{i:03d}" for i in range(1, a.stores + 1))
    db_src = dataset(bins, work, a.customers, a.stores, stores)
    st = benchlib.Setup(bins, os.path.join(work, "fleet"))
    if a.pg:
        db = os.environ.get("TS_TEST_PG", "")
        if not db:
            raise SystemExit("--pg: TS_TEST_PG is not set (run under tests/tools/with_pg.sh)")
        import_pg(bins, os.path.dirname(os.path.dirname(db_src)), db)
    else:
        db = os.path.join(st.dir, "hub.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        subprocess.run(["cp", db_src, db], check=True)
    backend = "PostgreSQL" if a.pg else "SQLite"
    hub = st.start_hub(db)
    url = f"https://localhost:{st.hub_port}"
    users = [f"g7-{i:06d}" for i in range(0, a.customers, max(1, a.customers // 500))]
    try:
        cost = {}
        if a.cost_seconds > 0:
            for resume in (False, True):
                log(f"poll cost: one terminal, {'resumed sessions' if resume else 'full handshakes'}")
                cost["resumed" if resume else "full"] = poll_cost(sim, url, st.pki, hub.pid,
                                                                  a.cost_seconds, resume)
        log("baseline: one terminal polling alone")
        base = fleetsim(sim, url, st.pki, 1, 1, 1, 0.05, 10, 1.0, not a.no_resume)
        cdp = CdpStream(st, users, a.cdp_rate)
        cdp.t.start()
        log(f"fleet: {a.terminals} terminals in {a.stores} stores, {a.warmup:.0f} s warm-up, "
            f"{a.duration:.0f} s measured")
        at = {}

        def measure():
            at.update(c0=cpu_s(hub.pid), w0=time.monotonic(), b0=busy_s(), load0=loadavg(),
                      pg0=pg_cpu_s())
            log("fleet: measured window begins")

        fleet = fleetsim(sim, url, st.pki, a.terminals, a.stores, a.threads, a.interval,
                         a.duration, a.purchase_every, not a.no_resume, a.warmup, measure)
        c1, w1, b1, uptime1 = cpu_s(hub.pid), time.monotonic(), busy_s(), loadavg()
        pg_cpu = pg_cpu_s() - at["pg0"]
        c0, w0, uptime0 = at["c0"], at["w0"], at["load0"]
        # everything else on the machine: other processes, this script, the CDP stream
        other = (b1 - at["b0"]) - (c1 - c0) - fleet["cpu_s"] - pg_cpu
        cdp.stop.set()
        cdp.t.join()
        rss = hub.proc_status("VmHWM")
    finally:
        st.stop_all()
    cpu = 100.0 * (c1 - c0) / (w1 - w0)
    sim_cpu = 100.0 * fleet["cpu_s"] / (w1 - w0)
    other_cpu = 100.0 * max(other, 0.0) / (w1 - w0)
    polls = fleet["sched_late"]["n"]  # polls started in the measured window
    out = {"machine": benchlib.machine(), "loadavg_before": uptime0, "loadavg_after": uptime1,
           "poll_cost": cost, "baseline": base, "fleet": fleet,
           "hub_cpu_pct_of_one_core": round(cpu, 1), "sim_cpu_pct_of_one_core": round(sim_cpu, 1),
           "other_cpu_pct_of_one_core": round(other_cpu, 1), "hub_peak_rss_kb": rss,
           "backend": backend, "pg_server_cpu_pct_of_one_core": round(100.0 * pg_cpu / (w1 - w0), 1),
           "cdp_events": cdp.sent, "req_per_s": round((polls + fleet["purchase"]["n"]) /
                                                      fleet["ran_s"], 1)}
    print(json.dumps(out, indent=1))
    f, b = fleet["feed"], base["feed"]
    late = fleet["sched_late"]["p99"]
    valid = late < a.interval * 1000.0 / 10
    hs = fleet["handshakes"]
    pg_pct = 100.0 * pg_cpu / (w1 - w0)
    md = f"""### Fleet: {a.terminals} terminals, {a.stores} stores, {backend}

`{'TS_PG_FSYNC=on tests/tools/with_pg.sh ' if a.pg else ''}python3 bench/fleet.py{' --pg' if a.pg else ''} --terminals {a.terminals} --stores {a.stores} --customers {a.customers} --duration {a.duration:.0f} --warmup {a.warmup:.0f}{' --no-resume' if a.no_resume else ''}`

Run {'valid' if valid else '**not valid**'}: simulator lateness p99 {late:.0f} ms (valid below a tenth of
the {a.interval:.0f} s interval). Measured window: load average at start/end {' '.join(uptime0)} /
{' '.join(uptime1)}; CPU: hub {cpu:.0f} %{f', PostgreSQL server {pg_pct:.0f} %' if a.pg else ''}, simulator {sim_cpu:.0f} %, everything else {other_cpu:.0f} % of one
core. Handshakes in the window: {hs['full']} full, {hs['resumed']} resumed (warm-up:
{fleet['handshakes_warmup']['full']} full; its lateness p99 {fleet['sched_late_warmup']['p99']:.0f} ms).

| backend | terminals | req/s | feed p50 | feed p99 | purchase p50 | purchase p99 | hub CPU | hub peak RSS | errors |
|---|---|---|---|---|---|---|---|---|---|
| {backend} | {a.terminals} | {out['req_per_s']} | {f['p50']:.1f} ms | {f['p99']:.1f} ms | {fleet['purchase']['p50']:.1f} ms | {fleet['purchase']['p99']:.1f} ms | {cpu:.0f} % of a core | {rss / 1024 if rss else 0:.0f} MB | {fleet['errors']} + {fleet['non2xx']} non-2xx |

Baseline (same run, one terminal alone): feed p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms
(ratio at p50: {f['p50'] / b['p50'] if b['p50'] else 0:.1f}×). First (full-slice) polls: p50
{fleet['feed_first']['p50']:.1f} ms, p99 {fleet['feed_first']['p99']:.1f} ms over {fleet['feed_first']['n']}.
Simulator lateness p99 {fleet['sched_late']['p99']:.0f} ms (how far behind schedule it started polls).
"""
    for k, c in cost.items():
        md += (f"Poll cost, {k}: client {c['client_cpu_ms_per_poll']} ms CPU, hub "
               f"{c['hub_cpu_ms_per_poll']} ms CPU, latency p50 {c['poll_p50_ms']:.1f} ms "
               f"({c['polls']} polls, {c['handshakes']['resumed']} resumed).\n")
    print(md)
    with open(os.path.join(work, "fleet.md"), "w") as fh:
        fh.write(md)


if __name__ == "__main__":
    main()
