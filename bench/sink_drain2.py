"""A backlog of purchases drained by the hub's sinks into their contract
servers (tests/contract/*_server.py), each enforcing the vendor's documented
rate limit: one vendor at a time, or all seven sinks of one hub at once
(--together).

Per vendor: N purchases (two lines each, the customer's e-mail as profile)
are posted by a terminal while the vendor is unreachable, the hub is stopped,
the vendor comes up, and the hub is started again: the time from that start
until the vendor holds all N, against the floor the limits allow (the fewest
requests the vendor's per-request limits permit, divided by its documented
requests per second), the 429s it answered, the duplicates it received, the
hub's CPU seconds (user + system over the drain).

  python3 bench/sink_drain2.py [--bin build/bench] [--vendors bloomreach,salesforce,iterable,
                                 segment,rudderstack,klaviyo,braze] [--events 100000]
                               [--iterable-events 1000] [--runs 1] [--together]

Iterable takes one purchase per request at 10/s, so 100,000 would take 2.8
hours: its count is separate. With --runs N each vendor is drained N times
(a fresh hub and contract server each time): the table gives the median of
the N with the least and greatest, and the load average at the drains'
starts and ends. Results: a Markdown table on stdout, each run's figures
on stderr as it ends.
"""
import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "contract"))
from benchlib import Bins, Proc, Setup, log, machine, median, port_open, wait  # noqa: E402
from bloomreach_server import MAX_COMMANDS, Bloomreach  # noqa: E402
from iterable_server import Iterable  # noqa: E402
from salesforce_server import MAX_PAYLOAD, DataCloud  # noqa: E402
from braze_server import BrazeServer  # noqa: E402
from klaviyo_server import KlaviyoServer  # noqa: E402
from segment_server import SegmentServer  # noqa: E402


def event(i):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    r = f"S001-T01-{i:08d}"
    return {"type": "track", "event": "Order Completed", "messageId": f"bench-{i:08d}",
            "anonymousId": "S001:T01", "originalTimestamp": now, "sentAt": now,
            "properties": {"order_id": r, "total": 139.8, "revenue": 139.8, "tax": 0,
                           "discount": 0, "currency": "EUR",
                           "products": [{"product_id": "SKU-JKT-7", "sku": "SKU-JKT-7",
                                         "name": "RAIN JACKET", "price": 129.9, "quantity": 1},
                                        {"product_id": "SKU-SOCK", "sku": "SKU-SOCK",
                                         "name": "SOCKS", "price": 4.95, "quantity": 2}]},
            "context": {"tillside": {"store": "S001", "terminal": "T01", "receipt": r,
                                     "source": "api"},
                        "traits": {"email": f"c{i % 5000}@example.com"}}}


class Vendor:
    """name, conf(), delivered(), duplicates(), n429(), floor(n), requests()"""


class BR(Vendor):
    name, rate = "bloomreach", 100.0  # tracking-api-overview-2: 100 requests/s per IP

    def __init__(self, pki):
        self.s = Bloomreach(pki, "0a1b2c3d", "kid", "ksec")
        self.http = self.s

    def conf(self):
        return (f"[sink.br]\ntype = bloomreach\nurl = {self.s.url}\nca_file = {self.s.ca_file}\n"
                f"project_token = 0a1b2c3d\nkey_id = kid\nkey_secret = ksec\nidentity = email\n"
                f"max_backoff_s = 1\n")

    def delivered(self):
        with self.s.lock:
            return sum(1 for cid, _ in self.s.events if cid.endswith(":0"))

    def duplicates(self):
        return len(self.s.twice)

    def floor(self, n):
        return math.ceil(3 * n / MAX_COMMANDS) / self.rate  # a purchase + 2 lines = 3 commands


class DC(Vendor):
    name, rate = "salesforce", 25.0  # not documented in what we read: the sink's default

    def __init__(self, pki):
        self.d = DataCloud(pki, "cid", "csec", "tillside_pos", "purchase_line")
        self.s = self.d.tenant
        self.http = self.s

    def conf(self):
        return (f"[sink.dc]\ntype = salesforce\nurl = {self.d.login.url}\n"
                f"ca_file = {self.d.login.ca_file}\nclient_id = cid\nclient_secret = csec\n"
                f"source = tillside_pos\nobject = purchase_line\nidentity = email\n"
                f"max_backoff_s = 1\n")

    def delivered(self):
        with self.d.lock:
            return sum(1 for k in self.d.records if k.endswith(":1"))

    def duplicates(self):
        return len(self.d.resent)

    def floor(self, n):
        with self.s.lock:
            sizes = [len(r.body) for r in self.s.requests if r.status == 202]
            recs = sum(len(r.json["data"]) for r in self.s.requests if r.status == 202)
        per_rec = (sum(sizes) / recs) if recs else 450
        return math.ceil(2 * n * per_rec / MAX_PAYLOAD) / self.rate

    def stop(self):
        self.d.stop()


class IT(Vendor):
    name, rate = "iterable", 10.0  # the sink's conservative default (see sink_iterable.c)

    def __init__(self, pki):
        self.s = Iterable(pki, "it-key")
        self.http = self.s

    def conf(self):
        return (f"[sink.it]\ntype = iterable\nurl = {self.s.url}\nca_file = {self.s.ca_file}\n"
                f"api_key = it-key\nidentity = email\nmax_backoff_s = 1\n")

    def delivered(self):
        with self.s.lock:
            return len(self.s.purchases)

    def duplicates(self):
        return len(self.s.repeats)

    def floor(self, n):
        return n / self.rate


class Ledgered(Vendor):
    """A contract server with a Ledger: per purchase `per` items stored; a
    vendor without a dedup key (Braze) counts what is stored past that."""
    per, per_request, key, extra, dedup = 1, 1, "", "", True

    def conf(self):
        return (f"[sink.{self.sink}]\ntype = {self.name}\nurl = {self.s.url}\n"
                f"ca_file = {self.s.ca_file}\n{self.key}\nmax_backoff_s = 1\n{self.extra}")

    def delivered(self):
        return self.s.ledger.count() // self.per

    def duplicates(self):
        return self.s.ledger.duplicates + (0 if self.dedup else max(
            0, self.s.ledger.count() - self.per * self.n))

    def floor(self, n):
        return math.ceil(self.per * n / self.per_request) / self.rate


class SEG(Ledgered):
    # http-api: 500 KB a batch, "no hard rate limit", asked to keep under 500 requests/s
    name, sink, rate, per_request, key = "segment", "seg", 500.0, 500, "write_key = sg-key"

    def __init__(self, pki):
        self.s = self.http = SegmentServer(pki, "sg-key")


class RS(Ledgered):
    name, sink, rate, per_request, key = "rudderstack", "rs", 500.0, 500, "write_key = rs-key"

    def __init__(self, pki):
        self.s = self.http = SegmentServer(pki, "rs-key", max_batch=4 * 1024 * 1024)


class KL(Ledgered):
    # Placed Order + one Ordered Product per line (2); 1,000 events a request, 150/min steady
    name, sink, rate, per_request, per = "klaviyo", "kl", 150 / 60, 1000, 3
    key, extra = "api_key = kl-key", "identity = email\n"

    def __init__(self, pki):
        self.s = self.http = KlaviyoServer(pki, "kl-key")


class BZ(Ledgered):
    # one order_placed event per purchase, 75 a request, 3,000 requests per 3 s
    name, sink, rate, per_request, dedup = "braze", "bz", 1000.0, 75, False
    key, extra = "api_key = bz-key", "identity = email\n"

    def __init__(self, pki):
        self.s = self.http = BrazeServer(pki, "bz-key")


VENDORS = {"bloomreach": BR, "salesforce": DC, "iterable": IT, "segment": SEG,
           "rudderstack": RS, "klaviyo": KL, "braze": BZ}


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(bins, Vs, n, work):
    """Vs drained by one hub at once: {name: result}."""
    setup = Setup(bins, work)
    vs = [V(setup.pki) for V in Vs]
    for v in vs:
        v.n = n
    db = os.path.join(work, "hub.db")
    for f in (db, db + "-wal", db + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    names = ",".join(v.name for v in vs)
    try:
        base = setup.hub_conf(db, log_level="warn")
        with open(base, "a") as f:
            for v in vs:
                v.http.down = True
                f.write("\n" + v.conf())
        hub = Proc("hub", [bins.hub, "run", "-c", base], os.path.join(work, "hub.log"))
        wait(lambda: port_open(setup.hub_port), 60, "hub to listen", hub)
        log(f"{names}: posting {n:,} purchases")
        for i in range(0, n, 500):
            body = json.dumps({"batch": [event(j) for j in range(i, min(n, i + 500))],
                               "sentAt": "x"})
            conn = setup.hub_conn()
            conn.request("POST", "/v1/purchases", body=body,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            ans = json.loads(r.read())
            conn.close()
            if r.status != 200 or len(ans["accepted"]) != min(n, i + 500) - i:
                raise SystemExit(f"purchases answered {r.status}: {str(ans)[:300]}")
        hub.p.send_signal(signal.SIGTERM)
        hub.p.wait(60)
        for v in vs:
            v.http.down = False
            with v.http.lock:
                v.http.requests.clear()
        load0 = os.getloadavg()[0]
        hub = Proc("hub", [bins.hub, "run", "-c", base], os.path.join(work, "hub.log"))
        t0 = time.monotonic()
        log(f"{names}: draining (load average {load0:.2f})")
        done = {}

        def all_done():
            for v in vs:
                if v.name not in done and v.delivered() >= n:
                    done[v.name] = time.monotonic() - t0
            return len(done) == len(vs)
        wait(all_done, 4 * 3600, f"{n} purchases at {names}", hub, interval=0.1)
        cpu = cpu_s(hub.pid)
        out = {}
        for v in vs:
            out[v.name] = {"seconds": done[v.name], "floor": v.floor(n),
                           "n429": v.http.count(lambda r: r.status == 429),
                           "requests": v.http.count(), "duplicates": v.duplicates(), "cpu": cpu,
                           "load0": load0, "load1": os.getloadavg()[0]}
        hub.stop()
        log(f"{names}: {out}")
        return out
    finally:
        for v in vs:
            (getattr(v, "stop", None) or v.s.stop)()


def spread(rs):
    """The median, the least and the greatest of each measure over runs rs;
    for the load average (lo["load0"], hi["load1"]) the least and the
    greatest seen at any drain's start or end."""
    keys = rs[0].keys()
    lo, hi = {k: min(r[k] for r in rs) for k in keys}, {k: max(r[k] for r in rs) for k in keys}
    loads = [r[k] for r in rs for k in ("load0", "load1")]
    lo["load0"], hi["load1"] = min(loads), max(loads)
    return {k: median([r[k] for r in rs]) for k in keys}, lo, hi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), "build", "bench"))
    ap.add_argument("--vendors", default="bloomreach,salesforce,iterable")
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--iterable-events", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--together", action="store_true",
                    help="every vendor's sink on one hub, --events purchases each")
    a = ap.parse_args()
    bins = Bins(a.bin)
    work = tempfile.mkdtemp(prefix="ts-sinkdrain2-")
    names = a.vendors.split(",")
    rows = []
    if a.together:
        rs = [one_run(bins, [VENDORS[x] for x in names], a.events, os.path.join(work, f"all-{k}"))
              for k in range(a.runs)]
        for name in names:
            rows.append((name, a.events) + spread([r[name] for r in rs]))
    for name in [] if a.together else names:
        n = a.iterable_events if name == "iterable" else a.events
        rs = [one_run(bins, [VENDORS[name]], n, os.path.join(work, f"{name}-{k}"))[name]
              for k in range(a.runs)]
        rows.append((name, n) + spread(rs))
    print(f"### Sink drain{' (all at once, one hub)' if a.together else ''} "
          f"(`bench/sink_drain2.py`, median of {a.runs} run(s))\n")
    print(f"{machine()}\n")
    print("| vendor | purchases | drain (s), median (min–max) | floor (s) | drain/floor | requests | "
          "429s, median (min–max) | resent | hub CPU (s) | load average |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, m, lo, hi in rows:
        print(f"| {name} | {n:,} | {m['seconds']:.1f} ({lo['seconds']:.1f}–{hi['seconds']:.1f}) | "
              f"{m['floor']:.1f} | {m['seconds'] / m['floor']:.2f} | {m['requests']:.0f} | "
              f"{m['n429']:.0f} ({lo['n429']:.0f}–{hi['n429']:.0f}) | {m['duplicates']:.0f} | "
              f"{m['cpu']:.1f} | {lo['load0']:.1f}–{hi['load1']:.1f} |")


if __name__ == "__main__":
    main()
