#!/usr/bin/env python3
"""Change latency: from a /v1/batch at the hub changing a synced customer to
the agent's card showing the change (issue 5: "a change online shows in the
store within 5 s when the link is up").

A hub with a small generated data set plus --changes customers of our own,
an agent synced from it (default config: long-poll when the agent has it,
otherwise poll_interval_ms). Then, --changes times: wait a random 0-2 s (so
changes land at every phase of the agent's polling), rename one customer
with an identify in a /v1/batch, and poll the agent's local API
(POST /api/v1/scan of the customer's loyalty id, answered from the cache)
every 5 ms until the card shows the new name. Latency = from just before the
batch is sent to the first scan showing the change.

Baselines in the same run: the /v1/batch round trip itself, and a bare
GET /v1/lookup round trip to the hub with the terminal's certificate, on a
kept-alive TLS connection and on a new one each time.

    python3 bench/change_latency.py [--changes 50]
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def key_hex(loyalty):
    """The identifier key (docs/PROTOCOL.md): HMAC-SHA256(tenant key,
    "loyalty:" + normalized)."""
    norm = re.sub(r"[\s\-]", "", loyalty).upper()
    return hmac.new(bytes.fromhex(bl.TENANT_KEY), f"loyalty:{norm}".encode(),
                    hashlib.sha256).hexdigest()


def send_batch(conn, events):
    auth = base64.b64encode(f"{bl.WRITE_KEY}:".encode()).decode()
    conn.request("POST", "/v1/batch", body=json.dumps({"batch": events}),
                 headers={"Authorization": f"Basic {auth}",
                          "Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"batch refused: {r.status} {body[:200]!r}")


def stats(xs):
    return {"median": bl.median(xs) * 1000, "p99": bl.pct(xs, 99) * 1000,
            "max": max(xs) * 1000, "n": len(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--customers", type=int, default=10000, help="generated background data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-long-poll", action="store_true",
                    help="agent with long_poll_s = 0: interval polling only (poll_interval_ms)")
    ap.add_argument("--bin-dir", default=os.path.join(bl.ROOT, "build", "bench"))
    ap.add_argument("--work", default=os.path.join(bl.ROOT, "build", "bench", "work"))
    a = ap.parse_args()
    bins = bl.Bins(a.bin_dir)
    db = bl.dataset(bins, a.work, a.customers, a.seed)
    s = bl.Setup(bins, os.path.join(a.work, "change-latency"))
    rng = random.Random(a.seed)
    lat, post, lk_keep, lk_new = [], [], [], []
    try:
        s.start_hub(db)
        cdp = s.hub_conn("cdp")
        users = []
        events = []
        run_id = int(time.time())
        for i in range(a.changes):
            u = f"lat-{run_id}-{i}"
            loyalty = f"23{run_id % 100000:05d}{i:06d}"
            users.append({"user": u, "loyalty": loyalty, "v": 0})
            events.append({"type": "identify", "userId": u, "messageId": f"{u}-0",
                           "traits": {"name": f"Latency {i} v0", "loyalty_id": loyalty,
                                      "home_store": "S001"}})
        send_batch(cdp, events)
        expect = json.loads(bl.run([bins.hub, "stats", "-c", os.path.join(s.dir, "hub.conf")])
                            .stdout)["stores"]["S001"]
        state = os.path.join(s.dir, "agent-state")
        agent = s.start_agent(state, "long_poll_s = 0" if a.no_long_poll else "")
        bl.wait(lambda: s.api("GET", "/api/v1/status")[1]["cards"] >= expect, 600,
                "the agent to sync", agent)
        with open(os.path.join(state, "api.token")) as f:
            token = f.read().strip()
        bl.log(f"agent synced {expect} cards; measuring {a.changes} changes")

        for i, u in enumerate(users):
            time.sleep(rng.uniform(0, 2.0))
            u["v"] += 1
            name = f"Latency {i} v{u['v']}"
            ev = [{"type": "identify", "userId": u["user"], "messageId": f"{u['user']}-{u['v']}",
                   "traits": {"name": name}}]
            t0 = time.perf_counter()
            send_batch(cdp, ev)
            t_ack = time.perf_counter()
            while True:
                code, sess = s.api("POST", "/api/v1/scan", {"code": u["loyalty"]}, token=token)
                if code == 200 and (sess.get("card") or {}).get("name") == name:
                    break
                if time.perf_counter() - t0 > 120:
                    raise SystemExit(f"change {i} not seen after 120 s: {sess}")
                time.sleep(0.005)
            t1 = time.perf_counter()
            lat.append(t1 - t0)
            post.append(t_ack - t0)
        cdp.close()

        # Bare round trips to the hub with the terminal's certificate.
        conn = s.hub_conn()
        conn.request("GET", f"/v1/lookup?key={key_hex(users[0]['loyalty'])}")
        conn.getresponse().read()  # the handshake is not part of a kept-alive round trip
        for u in users:
            path = f"/v1/lookup?key={key_hex(u['loyalty'])}"
            t0 = time.perf_counter()
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            lk_keep.append(time.perf_counter() - t0)
            if r.status != 200:
                raise SystemExit(f"lookup answered {r.status}")
            c2 = s.hub_conn()
            t0 = time.perf_counter()
            c2.request("GET", path)
            c2.getresponse().read()
            lk_new.append(time.perf_counter() - t0)
            c2.close()
        conn.close()
    finally:
        s.stop_all()

    syncer = open(os.path.join(bl.ROOT, "agent", "syncer.c")).read()
    long_poll = "wait=" in syncer and not a.no_long_poll
    mech = ("long-poll: the caught-up agent asks GET /v1/feed?...&wait=S and the hub answers "
            "as soon as the store's feed changes" if long_poll else
            "interval polling (poll_interval_ms, default 5000)" +
            (", long-poll switched off (long_poll_s = 0)" if a.no_long_poll else
             " — no long-poll in this build"))
    rows = [("batch at the hub → card changed at the agent", stats(lat)),
            ("baseline: POST /v1/batch round trip", stats(post)),
            ("baseline: GET /v1/lookup, kept-alive TLS connection", stats(lk_keep)),
            ("baseline: GET /v1/lookup, new TLS connection", stats(lk_new))]
    cmd = "python3 bench/change_latency.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    out = [f"### Change latency ({a.changes} changes)", "",
           f"Command: `{cmd.strip()}` (release build in build/bench)  ",
           f"Machine: {bl.machine()}  ",
           f"Date: {time.strftime('%Y-%m-%d')}  ",
           f"Mechanism measured: {mech}.  ",
           f"Hub data: {a.customers:,} generated customers + {a.changes} test customers; "
           f"agent with its default [hub] settings.", "",
           "| | median ms | p99 ms | max ms |", "|---|---:|---:|---:|"]
    for label, st in rows:
        out.append(f"| {label} | {st['median']:.1f} | {st['p99']:.1f} | {st['max']:.1f} |")
    m = stats(lat)["median"] / stats(lk_keep)["median"]
    out += ["", f"Median change latency is {m:.1f}× a kept-alive hub round trip "
                f"(the agent is asked at once after the batch is acknowledged, then every 5 ms)."]
    text = "\n".join(out) + "\n"
    print(text)
    path = os.path.join(a.work, "change_latency%s.md" % ("-poll" if a.no_long_poll else ""))
    with open(path, "w") as f:
        f.write(text)
    bl.log(f"written to {path}")


if __name__ == "__main__":
    main()
