"""`tillside-hub import` into PostgreSQL: N generated customers (`gen --out`)
imported into an empty database, --runs times per size; the median wall time,
events/s and the importer's CPU. Run under tests/tools/with_pg.sh (it sets
TS_TEST_PG; TS_PG_FSYNC=on for figures), e.g.

  TS_PG_FSYNC=on tests/tools/with_pg.sh python3 bench/pg_import.py --bin build/release \\
      --sizes 20000,200000 --runs 3 [--import-args=--statements]

--import-args passes flags to `import` (--statements: one statement at a time,
the path every import took before COPY). The baseline is the same events
imported into SQLite (a file), the engine the bulk path stages through.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, TENANT_KEY, WRITE_KEY, log, machine, median, run  # noqa: E402


def events_file(hub, work, n):
    d = os.path.join(work, f"import-n{n}")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "events.jsonl")
    if not os.path.exists(path):
        log(f"generating {n} customers")
        run([hub, "gen", "--out", path + ".tmp", "--customers", str(n), "--stores",
             "S001,S002,S003", "--seed", "7"])
        os.rename(path + ".tmp", path)
    with open(path) as f:
        nev = sum(1 for _ in f)
    return path, nev


def psql(uri, sql):
    return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", uri, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def one_import(hub, conf, events, extra):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run([hub, "import", "-c", conf] + extra + [events], capture_output=True,
                       text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"import failed ({p.returncode}): {p.stdout}\n{p.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stdout.strip()


def write_conf(path, db):
    with open(path, "w") as f:
        f.write(f"[hub]\nlisten = 127.0.0.1:0\ndb = {db}\nlog_level = warn\n"
                f"[cdp]\nwrite_key = {WRITE_KEY}\n"
                f"[tenant]\nname = acme\nkey = {TENANT_KEY}\nkey_version = 1\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--sizes", default="20000,200000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--import-args", default="")
    ap.add_argument("--sqlite", action="store_true", help="also import into SQLite (baseline)")
    a = ap.parse_args()
    uri = os.environ.get("TS_TEST_PG")
    if not uri:
        raise SystemExit("TS_TEST_PG is not set: run under tests/tools/with_pg.sh")
    hub = os.path.join(os.path.abspath(a.bin), "hub", "tillside-hub")
    work = os.path.join(ROOT, "build", "bench", "work")
    extra = a.import_args.split() if a.import_args else []
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        events, nev = events_file(hub, work, n)
        conf = os.path.join(work, f"import-n{n}", f"pg-{os.getpid()}.conf")  # one per run of this script
        write_conf(conf, uri)
        walls, cpus = [], []
        for r in range(a.runs):
            psql(uri, "SET client_min_messages = warning; DROP SCHEMA public CASCADE;"
                      " CREATE SCHEMA public")
            wall, cpu, out = one_import(hub, conf, events, extra)
            got = int(psql(uri, "SELECT count(*) FROM customers"))
            if got != n:
                raise SystemExit(f"imported {got} customers, expected {n}")
            log(f"n={n} run {r + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU: {out}")
            walls.append(wall)
            cpus.append(cpu)
        row = {"n": n, "events": nev, "wall": median(walls), "cpu": median(cpus),
               "walls": walls}
        if a.sqlite:
            db = os.path.join(work, f"import-n{n}", "sqlite", "hub.db")
            sw = []
            for _ in range(a.runs):
                subprocess.run(["rm", "-rf", os.path.dirname(db)], check=True)
                sconf = os.path.join(work, f"import-n{n}", f"sqlite-{os.getpid()}.conf")
                write_conf(sconf, db)
                wall, _, _ = one_import(hub, sconf, events, [])
                sw.append(wall)
            row["sqlite"] = median(sw)
        rows.append(row)
    mode = " ".join(extra) or "default"
    lines = [f"PostgreSQL import (`import {mode}`), {machine()}", "",
             "| customers | events | median wall | events/s | importer CPU | runs (s) |"
             + (" SQLite file (median) |" if a.sqlite else ""),
             "|---|---|---|---|---|---|" + ("---|" if a.sqlite else "")]
    for r in rows:
        runs = ", ".join(f"{w:.1f}" for w in r["walls"])
        lines.append(f"| {r['n']:,} | {r['events']:,} | {r['wall']:.1f} s | "
                     f"{r['events'] / r['wall']:,.0f} | {r['cpu']:.1f} s | {runs} |"
                     + (f" {r['sqlite']:.1f} s |" if a.sqlite else ""))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(work, f"pg_import{'-' + mode.strip('-') if extra else ''}.md"),
              "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
