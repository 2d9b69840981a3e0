#!/usr/bin/env python3
"""Full sync of a store's slice (PRODUCT.md §6: "a full sync of 1,000,000 cards
within 1.5x of downloading the same bytes with curl plus bulk-loading them
with sqlite3, in bounded memory").

Builds (once, cached under --work) a hub database with N customers in store
S001 using `tillside-hub gen --out` + `tillside-hub import`, starts the hub
(release build), then per run:

  agent     `tillside run` from an empty state directory until
            /api/v1/status says cards == N; its peak RSS (VmHWM).
  curl      one curl process fetching every feed page of the same full sync
            over one keep-alive TLS connection with the terminal's client
            certificate (the cursors were collected in an untimed priming
            pass, so curl does no parsing). Uses --compressed when the hub
            serves gzip.
  sqlite3   one sqlite3 process loading those page files into the agent's
            cache schema (cards + card_keys) in one transaction, parsing
            them with its JSON1 functions (baseline "json").
  sqlite3   the same rows pre-extracted (untimed) to TSV and bulk-loaded
            with .import in one transaction (baseline "tsv": no JSON at all,
            the strictest lower bound).

Runs alternate the order of agent and baseline, N runs (default 3), and
print medians, the ratios agent / (curl + sqlite3), and a Markdown section
for docs/BENCHMARKS.md.

    python3 bench/sync_full.py                      # N = 1,000,000 (slow first time)
    python3 bench/sync_full.py --customers 100000   # quick
"""
import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def prime(s, limit):
    """Follows the feed cursor once (untimed) and returns the page paths,
    the number of items, the body bytes and whether the hub serves gzip."""
    conn = s.hub_conn()
    paths, items, raw, since = [], 0, 0, ""
    gz = None
    while True:
        path = f"/v1/feed?limit={limit}&since={since}"
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"priming: {path} answered {r.status}: {body[:200]!r}")
        if gz is None:
            gz = (r.getheader("Content-Encoding") or "").lower() == "gzip"
        raw += len(body)
        if (r.getheader("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        page = json.loads(body)
        paths.append(path)
        items += len(page["items"])
        since = page["cursor"]
        if not page["more"]:
            break
    conn.close()
    return paths, items, raw, gz


APPLIED = re.compile(rb"applied (\d+) change\(s\)[^,]*, more=(\d)")


class LogWatch:
    """Follows the agent's log for the sync thread's "applied N change(s),
    more=M" lines. Asking /api/v1/status instead would count the cache
    (SELECT count(*) over up to a million rows) under the agent's lock
    several times a second and slow down the very sync being measured."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.f.seek(0, os.SEEK_END)
        self.items = 0
        self.last_more = None
        self.buf = b""

    def poll(self):
        self.buf += self.f.read()
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            m = APPLIED.search(line)
            if m:
                self.items += int(m.group(1))
                self.last_more = m.group(2) == b"1"
        return self.items


def agent_run(s, n, state):
    os.makedirs(s.dir, exist_ok=True)
    logpath = os.path.join(s.dir, "agent.log")
    open(logpath, "ab").close()
    watch = LogWatch(logpath)
    t0 = time.monotonic()
    a = s.start_agent(state)

    def done():
        if watch.poll() >= n and watch.last_more is False:
            return True
        # No progress lines at all after a while: the log format changed;
        # fall back to the status API, once a second.
        if watch.items == 0 and time.monotonic() - t0 > 30:
            time.sleep(0.95)
            code, st = s.api("GET", "/api/v1/status")
            return code == 200 and st["cards"] >= n
        return False

    bl.wait(done, 3600, f"agent to hold {n} cards", a, interval=0.05)
    secs = time.monotonic() - t0
    hwm = a.proc_status("VmHWM")
    rss = a.proc_status("VmRSS")
    code, st = s.api("GET", "/api/v1/status")
    a.stop()
    s.procs.remove(a)
    size = sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state))
    return {"secs": secs, "hwm_kb": hwm, "rss_kb": rss, "cards": st["cards"], "bytes": size,
            "how": "log" if watch.items else "status"}


def curl_run(s, paths, pages_dir, compressed):
    shutil.rmtree(pages_dir, ignore_errors=True)
    os.makedirs(pages_dir)
    cfg = os.path.join(s.dir, "curl.cfg")
    with open(cfg, "w") as f:
        for i, p in enumerate(paths):
            f.write(f'url = "https://localhost:{s.hub_port}{p}"\n'
                    f'output = "{pages_dir}/p{i:06d}.json"\n')
    args = ["curl", "-q", "--silent", "--show-error", "--fail", "--cacert",
            f"{s.pki}/ca.pem", "--cert", f"{s.pki}/t01.pem", "--key", f"{s.pki}/t01.key",
            "--config", cfg]
    if compressed:
        args.append("--compressed")
    t0 = time.monotonic()
    bl.run(args)
    secs = time.monotonic() - t0
    size = sum(os.path.getsize(os.path.join(pages_dir, f)) for f in os.listdir(pages_dir))
    return {"secs": secs, "bytes": size, "cmd": args}


# The agent's cache schema (sync/cache.c) with the keys as hex text:
# Debian 12's sqlite3 (3.40) has no unhex(), the agent stores 32-byte blobs.
SCHEMA = """PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE cards(cid TEXT PRIMARY KEY, card TEXT NOT NULL, kv INTEGER NOT NULL,
  synced_at INTEGER NOT NULL);
CREATE TABLE card_keys(key TEXT PRIMARY KEY, cid TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX card_keys_cid ON card_keys(cid);
"""


def fresh_db(path):
    for suf in ("", "-wal", "-shm"):
        if os.path.exists(path + suf):
            os.remove(path + suf)


def sqlite_json_run(s, pages_dir, db):
    fresh_db(db)
    sql = os.path.join(s.dir, "load.sql")
    with open(sql, "w") as f:
        f.write(SCHEMA + "CREATE TEMP TABLE pg(v TEXT);\nBEGIN;\n")
        for name in sorted(os.listdir(pages_dir)):
            p = os.path.join(pages_dir, name).replace("'", "''")
            f.write(f"DELETE FROM pg; INSERT INTO pg SELECT value FROM "
                    f"json_each(readfile('{p}'), '$.items');\n"
                    "INSERT OR REPLACE INTO cards SELECT json_extract(v, '$.cid'), "
                    "json_extract(v, '$.card'), 1, 0 FROM pg;\n"
                    "INSERT OR REPLACE INTO card_keys SELECT k.value, json_extract(pg.v, '$.cid')"
                    " FROM pg, json_each(pg.v, '$.keys') k;\n")
        f.write("COMMIT;\n")
    t0 = time.monotonic()
    with open(sql) as f:
        p = subprocess.run(["sqlite3", "-bail", db], stdin=f, capture_output=True, text=True)
    secs = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"sqlite3 load failed: {p.stderr}")
    return {"secs": secs, "cards": count(db), "bytes": os.path.getsize(db)}


def extract_tsv(pages_dir, cards_tsv, keys_tsv):
    with open(cards_tsv, "w") as c, open(keys_tsv, "w") as k:
        for name in sorted(os.listdir(pages_dir)):
            with open(os.path.join(pages_dir, name), "rb") as f:
                page = json.load(f)
            for it in page["items"]:
                if it.get("op") != "upsert":
                    continue
                c.write(f"{it['cid']}\t{json.dumps(it['card'], separators=(',', ':'))}\t1\t0\n")
                for key in it["keys"]:
                    k.write(f"{key}\t{it['cid']}\n")


def sqlite_tsv_run(s, cards_tsv, keys_tsv, db):
    fresh_db(db)
    script = (SCHEMA + ".mode tabs\nBEGIN;\n"
              f".import {cards_tsv} cards\n.import {keys_tsv} card_keys\nCOMMIT;\n")
    t0 = time.monotonic()
    p = subprocess.run(["sqlite3", "-bail", db], input=script, capture_output=True, text=True)
    secs = time.monotonic() - t0
    if p.returncode != 0 or p.stderr.strip():
        raise SystemExit(f"sqlite3 .import failed: {p.stderr}")
    return {"secs": secs, "cards": count(db), "bytes": os.path.getsize(db)}


def count(db):
    return int(bl.run(["sqlite3", db, "SELECT count(*) FROM cards"]).stdout.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--page-limit", type=int, default=500,
                    help="feed page size for agent and curl (the agent's default is 500)")
    ap.add_argument("--compressed", choices=("auto", "yes", "no"), default="auto",
                    help="curl --compressed: auto = when the hub serves gzip")
    ap.add_argument("--bin-dir", default=os.path.join(bl.ROOT, "build", "bench"))
    ap.add_argument("--work", default=os.path.join(bl.ROOT, "build", "bench", "work"))
    a = ap.parse_args()
    for tool in ("curl", "sqlite3"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install {tool})")
    bins = bl.Bins(a.bin_dir)
    n = a.customers
    db = bl.dataset(bins, a.work, n, a.seed)
    s = bl.Setup(bins, os.path.join(a.work, f"sync-full-n{n}"))
    try:
        s.start_hub(db)
        st = json.loads(bl.run([bins.hub, "stats", "-c", os.path.join(s.dir, "hub.conf")]).stdout)
        slice_n = st["stores"].get("S001", 0)
        if slice_n != n:
            raise SystemExit(f"hub slice S001 has {slice_n} customers, expected {n}: {st}")
        bl.log("priming pass: collecting the feed cursors")
        paths, items, wire, gz = prime(s, a.page_limit)
        if items != n:
            raise SystemExit(f"full feed has {items} items, expected {n}")
        compressed = gz if a.compressed == "auto" else a.compressed == "yes"
        bl.log(f"{len(paths)} pages, {items} items, {wire} bytes on the wire "
               f"(hub gzip: {gz}); curl --compressed: {compressed}")
        pages_dir = os.path.join(s.dir, "pages")
        base_db = os.path.join(s.dir, "baseline.db")
        cards_tsv, keys_tsv = os.path.join(s.dir, "cards.tsv"), os.path.join(s.dir, "keys.tsv")
        state = os.path.join(s.dir, "agent-state")
        rows = []
        for r in range(a.runs):
            res = {}

            def baseline():
                res["curl"] = curl_run(s, paths, pages_dir, compressed)
                res["json"] = sqlite_json_run(s, pages_dir, base_db)
                if r == 0 or not os.path.exists(cards_tsv):
                    extract_tsv(pages_dir, cards_tsv, keys_tsv)
                res["tsv"] = sqlite_tsv_run(s, cards_tsv, keys_tsv, base_db)

            def agent():
                res["agent"] = agent_run(s, n, state)

            for step in ((agent, baseline) if r % 2 == 0 else (baseline, agent)):
                step()
            for k in ("json", "tsv"):
                if res[k]["cards"] != n:
                    raise SystemExit(f"baseline {k} loaded {res[k]['cards']} cards")
            if res["agent"]["cards"] != n:
                raise SystemExit(f"agent ended with {res['agent']['cards']} cards, expected {n}")
            res["load"] = os.getloadavg()[0]
            rows.append(res)
            bl.log(f"run {r + 1}: load {res['load']:.1f}, agent ({res['agent']['how']}) "
                   f"{res['agent']['secs']:.1f}s (VmHWM "
                   f"{res['agent']['hwm_kb'] / 1024:.1f} MB), curl {res['curl']['secs']:.1f}s, "
                   f"sqlite3 json {res['json']['secs']:.1f}s, sqlite3 tsv {res['tsv']['secs']:.1f}s")
    finally:
        s.stop_all()
    report(a, n, paths, wire, gz, compressed, rows)


def report(a, n, paths, wire, gz, compressed, rows):
    med = {k: bl.median([r[k]["secs"] for r in rows]) for k in ("agent", "curl", "json", "tsv")}
    b_json = bl.median([r["curl"]["secs"] + r["json"]["secs"] for r in rows])
    b_tsv = bl.median([r["curl"]["secs"] + r["tsv"]["secs"] for r in rows])
    hwm = [r["agent"]["hwm_kb"] / 1024 for r in rows]
    cmd = "python3 bench/sync_full.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    out = [
        f"### Full sync, {n:,} cards ({len(rows)} runs, medians)",
        "",
        f"Command: `{cmd.strip()}` (release build in build/bench)  ",
        f"Machine: {bl.machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d')}  ",
        f"Feed: {len(paths)} pages of {a.page_limit}, {wire / 1e6:.0f} MB on the wire"
        f" (hub gzip: {'yes' if gz else 'no'}; curl --compressed: "
        f"{'yes' if compressed else 'no'}), {rows[0]['curl']['bytes'] / 1e6:.0f} MB of JSON",
        "",
        "| | median s | runs (s) |",
        "|---|---:|---|",
        f"| agent: empty state dir → status cards = {n:,} | {med['agent']:.1f} | "
        + ", ".join(f"{r['agent']['secs']:.1f}" for r in rows) + " |",
        f"| curl: all pages, one connection | {med['curl']:.1f} | "
        + ", ".join(f"{r['curl']['secs']:.1f}" for r in rows) + " |",
        f"| sqlite3: load the pages (JSON1), one transaction | {med['json']:.1f} | "
        + ", ".join(f"{r['json']['secs']:.1f}" for r in rows) + " |",
        f"| sqlite3: .import pre-extracted TSV, one transaction | {med['tsv']:.1f} | "
        + ", ".join(f"{r['tsv']['secs']:.1f}" for r in rows) + " |",
        f"| baseline curl + sqlite3 (JSON1) | {b_json:.1f} | "
        + ", ".join(f"{r['curl']['secs'] + r['json']['secs']:.1f}" for r in rows) + " |",
        f"| baseline curl + sqlite3 (TSV) | {b_tsv:.1f} | "
        + ", ".join(f"{r['curl']['secs'] + r['tsv']['secs']:.1f}" for r in rows) + " |",
        "",
        f"Ratio agent / (curl + sqlite3 JSON1): **{med['agent'] / b_json:.2f}×**; "
        f"agent / (curl + sqlite3 TSV): **{med['agent'] / b_tsv:.2f}×** (target ≤ 1.5×).  ",
        f"Agent peak RSS (VmHWM): median {bl.median(hwm):.1f} MB, max {max(hwm):.1f} MB; "
        f"cache on disk {rows[-1]['agent']['bytes'] / 1e6:.0f} MB "
        f"(baseline database {rows[-1]['json']['bytes'] / 1e6:.0f} MB).  ",
        "1-minute load average at the end of each run: "
        + ", ".join(f"{r['load']:.1f}" for r in rows) + f" (on {os.cpu_count()} cores).",
    ]
    text = "\n".join(out) + "\n"
    print(text)
    path = os.path.join(a.work, f"sync_full-n{n}.md")
    with open(path, "w") as f:
        f.write(text)
    bl.log(f"written to {path}")


if __name__ == "__main__":
    main()
