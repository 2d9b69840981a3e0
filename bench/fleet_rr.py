#!/usr/bin/env python3
"""The fleet simulator (bench/fleetsim.c: every poll a new TCP + TLS
connection resuming the terminal's session) through real nginx as a TCP
balancer (the shipped packaging/nginx/tillside-hub-stream.conf: `stream`,
round robin, TLS passed through) in front of two hub processes: the share
of resumed handshakes. Two runs in one invocation: the hubs on one
PostgreSQL database (ticket keys shared through it, issue 14) and, as the
baseline, the same two hubs on one SQLite file (each process its own ticket
keys: a reconnect resumes only when round robin sends it back to the hub
that issued its ticket).

    tests/tools/with_pg.sh python3 bench/fleet_rr.py --bin build/release \\
        [--terminals 1000] [--stores 20] [--duration 60] [--warmup 30] [--interval 30]

Counted on both sides: the simulator's handshakes (full, resumed) in the
measured window, and each hub's /metrics (tillside_hub_tls_handshakes_total)
over the same window. Uses the black-box harness (tests/blackbox/tslib.py,
test_pg.start_hubs, test_nginx.Nginx) and bench/fleet.py's fleetsim().
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "blackbox"))
import benchlib  # noqa: E402
from benchlib import log  # noqa: E402


def run_one(a, sim, backend):
    import tslib
    from fleet import fleetsim, loadavg
    from test_nginx import Nginx
    from test_nginx_stream import handshakes
    from test_pg import send, start_hubs
    w = tslib.World(f"fleet-rr-{backend}")
    ok = False
    try:
        if backend == "sqlite":
            w.db = os.path.join(w.dir, "hub.db")  # both processes on this one file
        # every terminal reaches the hubs from nginx's address (OPERATIONS "Several hub processes")
        hubs = start_hubs(w, extra="[hub]\nmax_unauthenticated_per_address = 1024\n")
        st, _ = send(w, hubs[0]["port"], tslib.customer_batch())
        if st != 200:
            raise SystemExit(f"the first batch answered {st}")
        ng = Nginx(w, stream_to=[h["port"] for h in hubs])
        ng.start()
        at = {}

        def measure():
            at["hubs"] = [handshakes(w, h) for h in hubs]
            at["load"] = " ".join(loadavg())
            log(f"{backend}: measured window begins")

        log(f"{backend}: {a.terminals} terminals through nginx, {a.warmup:.0f} s warm-up, "
            f"{a.duration:.0f} s measured")
        r = fleetsim(sim, f"https://localhost:{ng.port}", w.certs, a.terminals, a.stores,
                     a.threads, a.interval, a.duration, a.purchase_every, True, a.warmup, measure)
        end = [handshakes(w, h) for h in hubs]
        # less the /metrics request that read the end figures (a full handshake)
        hub_full = [e[0] - s[0] - 1 for e, s in zip(end, at["hubs"])]
        hub_res = [e[1] - s[1] for e, s in zip(end, at["hubs"])]
        hs = r["handshakes"]
        ok = True
        return {"backend": backend, "terminals": a.terminals, "ran_s": r["ran_s"],
                "errors": r["errors"], "non2xx": r["non2xx"],
                "sched_late_p99_ms": r["sched_late"]["p99"],
                # warm-up polls started this late run inside the hubs' window
                "sched_late_warmup_max_ms": r["sched_late_warmup"].get("max"),
                "sched_late_warmup_p99_ms": r["sched_late_warmup"]["p99"],
                "sim_handshakes": hs, "sim_handshakes_warmup": r["handshakes_warmup"],
                "sim_resumed_share": round(hs["resumed"] / max(1, hs["full"] + hs["resumed"]), 3),
                "hub_full": hub_full, "hub_resumed": hub_res,
                "feed_p50_ms": r["feed"]["p50"], "feed_p99_ms": r["feed"]["p99"],
                "load_start": at["load"], "load_end": " ".join(loadavg())}
    finally:
        w.close(ok)


def main():
    from fleet import fleet_args
    a = fleet_args(os.path.join(HERE, "..", "build", "release"), terminals=1000, stores=20,
                   duration=60, warmup=30, purchase_every=1e9, threads=32).parse_args()
    bins = benchlib.Bins(a.bin)
    os.environ["TS_BIN_DIR"] = bins.dir
    if not os.environ.get("TS_TEST_PG"):
        raise SystemExit("TS_TEST_PG is not set: run under tests/tools/with_pg.sh")
    sim = os.path.join(bins.dir, "bench", "ts_fleetsim")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs = [run_one(a, sim, b) for b in ("postgresql", "sqlite")]
    print(json.dumps({"machine": benchlib.machine(), "when": when, "runs": runs}, indent=1))
    md = (f"Measured {when}; {benchlib.machine()}. Command: `tests/tools/with_pg.sh python3 "
          f"bench/fleet_rr.py --bin {a.bin} --terminals {a.terminals} --stores {a.stores} "
          f"--duration {a.duration:.0f} --warmup {a.warmup:.0f} --interval {a.interval:.0f}`\n\n"
          "| two hubs behind nginx stream | resumed (simulator, measured window) | per hub: "
          "resumed / full (hubs' /metrics) | errors | feed p50 / p99 | load average start → end |\n"
          "|---|---|---|---|---|---|\n")
    for r in runs:
        hs = r["sim_handshakes"]
        per = ", ".join(f"{x} / {y}" for x, y in zip(r["hub_resumed"], r["hub_full"]))
        md += (f"| {r['backend']} | {hs['resumed']} of {hs['full'] + hs['resumed']} "
               f"({100 * r['sim_resumed_share']:.1f} %) | {per} | {r['errors']} + {r['non2xx']} "
               f"non-2xx | {r['feed_p50_ms']:.1f} / {r['feed_p99_ms']:.1f} ms | "
               f"{r['load_start']} → {r['load_end']} |\n")
    for r in runs:
        md += (f"\n{r['backend']}: simulator lateness p99 {r['sched_late_p99_ms']:.0f} ms in the window, "
               f"warm-up p99 {r['sched_late_warmup_p99_ms']:.0f} ms, max "
               f"{r['sched_late_warmup_max_ms']:.0f} ms (late warm-up polls are full handshakes the "
               f"hubs count inside the window and the simulator as warm-up).")
    print(md)


if __name__ == "__main__":
    main()
