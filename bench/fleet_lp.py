#!/usr/bin/env python3
"""Fleet with long-poll: N simulated terminals as agents run them by default
(bench/fleetsim_lp.c: one kept connection each, GET /v1/feed?wait=20 asked
again at once after every answer, purchases on a second connection), on one
hub process. Reports, over the measured window after a warm-up (every
terminal's first full sync, spread over --warmup seconds):

- the hub's CPU (utime+stime from /proc) and RSS (VmRSS sampled every 2 s;
  idle = before any terminal connected), the memory per held connection
  ((RSS loaded - RSS idle) / the long-polls the hub holds, from its /metrics
  gauge tillside_hub_httpd_parked),
- change -> affected terminal informed: every --cdp-every seconds one
  /v1/batch gives a new customer of one store (round robin over the stores)
  the card name lpmark-N; the simulator records when each of that store's
  terminals had the answer carrying it. p50/p99 over all (change, terminal)
  pairs, and per change the time until the last of its terminals had it,
- CDP /v1/batch latency (on one kept-alive TLS connection with the write
  key): against the idle hub first (the same batches, --baseline-batches of
  them, before any terminal connects), then during the window; their ratio,
- purchase upload latency, errors by kind (goal: 0), the simulator's own
  CPU and memory.

    python3 bench/fleet_lp.py [--bin build/release] [--terminals 10000] [--stores 100]
        [--customers 20000] [--warmup 300] [--duration 120] [--threads 4]
"""
import argparse
import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import fleet  # noqa: E402
from benchlib import log  # noqa: E402


class Cdp:
    """One kept-alive connection to the hub's /v1/batch with the write key
    (reconnects when the hub closed it)."""

    def __init__(self, st):
        self.st = st
        self.auth = base64.b64encode(f"{benchlib.WRITE_KEY}:".encode()).decode()
        self.c = None

    def batch(self, events):
        body = json.dumps({"batch": events})
        for attempt in range(2):
            if self.c is None:
                self.c = self.st.hub_conn("cdp")
            t0 = time.monotonic()
            try:
                self.c.request("POST", "/v1/batch", body=body,
                               headers={"Authorization": f"Basic {self.auth}",
                                        "Content-Type": "application/json"})
                r = self.c.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException) as e:
                self.c.close()
                self.c = None
                if attempt == 0:
                    continue
                log(f"CDP batch failed: {e}")
                return None, 0
            return time.monotonic() - t0, r.status
        return None, 0


def change(k, prefix, store):
    """A new customer of store, card name PREFIX-k."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"type": "identify", "userId": f"{prefix}-{k}", "messageId": f"{prefix}-msg-{k}",
            "timestamp": now,
            "traits": {"name": f"{prefix}-{k}", "home_store": store,
                       "loyalty_ids": [f"{prefix.upper()}{k:07d}"]}}


def changes(cdp, prefix, stores, n, every, stop=None):
    """n batches every `every` s (or until stop is set): [(k, store,
    wall-clock send time, latency s, status)]."""
    out = []
    t_next = time.monotonic()
    for k in range(n):
        if stop is not None and stop.is_set():
            break
        store = stores[k % len(stores)]
        sent = time.time()
        lat, status = cdp.batch([change(k, prefix, store)])
        out.append((k, store, sent, lat, status))
        t_next += every
        d = t_next - time.monotonic()
        if d > 0:
            time.sleep(d)
    return out


def metric(st, name):
    """A gauge's value from the hub's /metrics (the main listener's line)."""
    c = st.hub_conn()
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    for line in text.splitlines():
        if line.startswith(name) and ('listener="main"' in line or "{" not in line):
            return float(line.rsplit(" ", 1)[1])
    return None


def pstats(xs_ms):
    if not xs_ms:
        return {"n": 0, "p50": 0, "p99": 0, "max": 0}
    return {"n": len(xs_ms), "p50": round(benchlib.pct(xs_ms, 50), 1),
            "p99": round(benchlib.pct(xs_ms, 99), 1), "max": round(max(xs_ms), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/release")
    ap.add_argument("--terminals", type=int, default=10000)
    ap.add_argument("--stores", type=int, default=100)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--warmup", type=float, default=300)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--long-poll", type=int, default=20, help="the agents' long_poll_s")
    ap.add_argument("--purchase-every", type=float, default=300,
                    help="mean seconds between purchases per terminal")
    ap.add_argument("--cdp-every", type=float, default=0.5,
                    help="seconds between the CDP's changes (each one store's new customer)")
    ap.add_argument("--baseline-batches", type=int, default=200)
    ap.add_argument("--baseline-every", type=float, default=0.2,
                    help="seconds between the baseline's batches (the idle hub)")
    a = ap.parse_args()

    bins = benchlib.Bins(a.bin)
    sim = os.path.join(bins.dir, "bench", "ts_fleetsim")
    work = os.path.join(bins.dir, "work")
    stores = [f"S{i:03d}" for i in range(1, a.stores + 1)]
    db_src = fleet.dataset(bins, work, a.customers, a.stores, ",".join(stores))
    st = benchlib.Setup(bins, os.path.join(work, "fleet"))
    db = os.path.join(st.dir, "hub.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    subprocess.run(["cp", db_src, db], check=True)
    uptime_before = open("/proc/loadavg").read().split()[:3]
    hub = st.start_hub(db)
    url = f"https://localhost:{st.hub_port}"
    cdp = Cdp(st)
    try:
        time.sleep(1)
        log(f"baseline: {a.baseline_batches} CDP batches against the idle hub")
        base = changes(cdp, "lpbase", stores, a.baseline_batches, a.baseline_every)
        time.sleep(1)
        rss_idle = hub.proc_status("VmRSS")
        cpu_idle0, w_idle0 = fleet.cpu_s(hub.pid), time.monotonic()
        time.sleep(5)
        idle_cpu = 100.0 * (fleet.cpu_s(hub.pid) - cpu_idle0) / (time.monotonic() - w_idle0)
        log(f"idle hub: RSS {rss_idle} kB, CPU {idle_cpu:.1f} %")

        at = {}
        stop = threading.Event()
        rss_samples, parked_samples = [], []
        loaded = []
        n_changes = max(1, int((a.duration - 10) / a.cdp_every))

        def sampler():
            while not stop.wait(2.0):
                v = hub.proc_status("VmRSS")
                if v:
                    rss_samples.append(v)
                try:
                    p = metric(st, "tillside_hub_httpd_parked")
                    if p is not None:
                        parked_samples.append((v, p))
                except (OSError, http.client.HTTPException, ssl.SSLError):
                    pass

        def cdp_run():
            loaded.extend(changes(cdp, "lpmark", stores, n_changes, a.cdp_every, stop))

        threads = [threading.Thread(target=sampler, daemon=True),
                   threading.Thread(target=cdp_run, daemon=True)]

        def measure():
            at.update(c0=fleet.cpu_s(hub.pid), w0=time.monotonic(), b0=fleet.busy_s(),
                      load0=fleet.loadavg())
            log("fleet: measured window begins")
            for t in threads:
                t.start()

        log(f"fleet: {a.terminals} terminals in {a.stores} stores, long-poll {a.long_poll} s, "
            f"{a.warmup:.0f} s warm-up, {a.duration:.0f} s measured")
        p = subprocess.Popen([sim, "--long-poll", str(a.long_poll), "--url", url, "--pki",
                              st.pki, "--terminals", str(a.terminals), "--stores",
                              str(a.stores), "--threads", str(a.threads), "--duration",
                              str(a.duration), "--warmup", str(a.warmup), "--purchase-every",
                              str(a.purchase_every)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        err = []

        def read_err():
            for line in p.stderr:
                if line.startswith("fleetsim: measuring"):
                    measure()
                else:
                    err.append(line)

        te = threading.Thread(target=read_err, daemon=True)
        te.start()
        out = p.stdout.read()
        p.wait()
        te.join()
        c1, w1, b1, load1 = fleet.cpu_s(hub.pid), time.monotonic(), fleet.busy_s(), fleet.loadavg()
        stop.set()
        for t in threads:
            t.join()
        rss_peak = hub.proc_status("VmHWM")
        if not out.strip().startswith("{"):
            raise SystemExit(f"fleetsim failed ({p.returncode}): {''.join(err)[-2000:]}")
        r = json.loads(out)
        if err:
            log("".join(err).strip()[-500:])
    finally:
        st.stop_all()
    uptime_after = open("/proc/loadavg").read().split()[:3]

    win = w1 - at["w0"]
    hub_cpu = 100.0 * (c1 - at["c0"]) / win
    sim_cpu = 100.0 * r["cpu_s"] / win
    other_cpu = 100.0 * max(0.0, (b1 - at["b0"]) - (c1 - at["c0"]) - r["cpu_s"]) / win

    # change -> terminal informed
    per_term = {}
    for mark, term, wall in r["marks"]:
        key = (mark, term)
        if key not in per_term or wall < per_term[key]:
            per_term[key] = wall
    lat, last, missed = [], [], 0
    for k, store, sent, _, status in loaded:
        si = stores.index(store)
        expect = [i for i in range(a.terminals) if i % a.stores == si]
        got = [per_term.get((k, i)) for i in expect]
        reached = [g - sent * 1000.0 for g in got if g is not None]
        missed += len(expect) - len(reached)
        lat.extend(reached)
        if reached and len(reached) == len(expect):
            last.append(max(reached))
    store_of = {k: stores.index(store) for k, store, *_ in loaded}
    extra = sum(1 for (k, i) in per_term if k in store_of and i % a.stores != store_of[k])
    base_ms = [x[3] * 1000 for x in base if x[3] is not None]
    load_ms = [x[3] * 1000 for x in loaded if x[3] is not None]
    cdp_fail = sum(1 for x in base + loaded if x[4] != 200)
    mid = rss_samples[len(rss_samples) // 2:] if rss_samples else [0]
    rss_loaded = sorted(mid)[len(mid) // 2]
    parked = [pk for _, pk in parked_samples[len(parked_samples) // 2:]]
    held = sorted(parked)[len(parked) // 2] if parked else r["held_at_end"]
    per_conn = (rss_loaded - rss_idle) / held if held else 0
    sim_rss = r["rss_kb"]
    sim_per_conn = (sim_rss["held"] - sim_rss["setup"]) / r["held_at_end"] if r["held_at_end"] else 0
    bs, ls = pstats(base_ms), pstats(load_ms)
    res = {
        "machine": benchlib.machine(), "loadavg_before": uptime_before,
        "loadavg_window": [at["load0"], load1], "loadavg_after": uptime_after,
        "terminals": a.terminals, "stores": a.stores, "threads": a.threads,
        "hub_cpu_pct_of_one_core": round(hub_cpu, 1), "hub_idle_cpu_pct": round(idle_cpu, 1),
        "sim_cpu_pct_of_one_core": round(sim_cpu, 1), "other_cpu_pct_of_one_core": round(other_cpu, 1),
        "hub_rss_kb": {"idle": rss_idle, "loaded_median": rss_loaded, "peak": rss_peak},
        "held": held, "hub_kb_per_held_conn": round(per_conn, 1),
        "sim_rss_kb": sim_rss, "sim_kb_per_held_conn": round(sim_per_conn, 1),
        "change_to_terminal_ms": pstats(lat), "change_to_all_terminals_ms": pstats(last),
        "changes": len(loaded), "missed": missed, "marks_outside_store": extra,
        "cdp_batch_idle_ms": bs, "cdp_batch_loaded_ms": ls,
        "cdp_p99_ratio": round(ls["p99"] / bs["p99"], 2) if bs["p99"] else None,
        "cdp_non200": cdp_fail,
        "sim": {k: v for k, v in r.items() if k != "marks"},
    }
    print(json.dumps(res, indent=1))
    f = r["errors_by_kind"]
    errs = ", ".join(f"{k} {v}" for k, v in f.items() if v) or "none"
    werrs = ", ".join(f"{k} {v}" for k, v in r["errors_warmup_by_kind"].items() if v) or "none"
    ct, ca = res["change_to_terminal_ms"], res["change_to_all_terminals_ms"]
    md = f"""### Fleet with long-poll: {a.terminals} terminals, {a.stores} stores, SQLite

`python3 bench/fleet_lp.py --terminals {a.terminals} --stores {a.stores} --customers {a.customers} --warmup {a.warmup:.0f} --duration {a.duration:.0f} --threads {a.threads}`

{benchlib.machine()}. Load average before / window start / window end / after: {' '.join(uptime_before)} /
{' '.join(at['load0'])} / {' '.join(load1)} / {' '.join(uptime_after)}.

| | |
|---|---|
| long-polls held by the hub (median of the window) | {held:.0f} |
| hub CPU, window | {hub_cpu:.1f} % of one core (idle hub: {idle_cpu:.1f} %) |
| hub RSS idle / loaded (median) / peak | {rss_idle / 1024:.0f} / {rss_loaded / 1024:.0f} / {(rss_peak or 0) / 1024:.0f} MB |
| memory per held connection (hub) | {per_conn:.1f} KB |
| change → terminal informed, p50 / p99 / max | {ct['p50']} / {ct['p99']} / {ct['max']} ms over {ct['n']} (change, terminal) pairs |
| change → every terminal of the store informed, p50 / p99 | {ca['p50']} / {ca['p99']} ms over {ca['n']} of {len(loaded)} changes; {missed} terminal(s) missed a change |
| CDP `/v1/batch` p50 / p99, idle hub | {bs['p50']} / {bs['p99']} ms ({bs['n']} batches) |
| CDP `/v1/batch` p50 / p99, with the fleet | {ls['p50']} / {ls['p99']} ms ({ls['n']} batches); p99 ratio {res['cdp_p99_ratio']} |
| purchase upload p50 / p99 | {r['purchase']['p50']:.1f} / {r['purchase']['p99']:.1f} ms ({r['purchase']['n']} uploads) |
| long-polls answered with changes / empty | {r['long_polls_answered']['with_items']} / {r['long_polls_answered']['empty']} |
| errors in the window | {r['errors']} ({errs}); warm-up: {werrs}; CDP non-200: {cdp_fail} |
| handshakes in the window (full / resumed) | {r['handshakes']['full']} / {r['handshakes']['resumed']}; warm-up {r['handshakes_warmup']['full']} / {r['handshakes_warmup']['resumed']} |
| simulator | {a.threads} threads, {sim_cpu:.1f} % of one core, {sim_rss['held'] / 1024:.0f} MB RSS ({sim_per_conn:.1f} KB per held connection over its {sim_rss['setup'] / 1024:.0f} MB of loaded certificates); connects in the window (TCP + TLS): resumed p99 {r['connect_resumed']['p99']:.1f} ms ({r['connect_resumed']['n']}), full p99 {r['connect_full']['p99']:.1f} ms ({r['connect_full']['n']}) |
| everything else on the machine | {other_cpu:.0f} % of one core |
"""
    print(md)
    with open(os.path.join(work, f"fleet_lp-{a.terminals}.md"), "w") as fh:
        fh.write(md)


if __name__ == "__main__":
    main()
