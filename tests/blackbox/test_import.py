"""`tillside-hub import`: Segment events from a file, validated like a
/v1/batch and stored in chunks, one transaction each.

- jsonl_then_sync: `gen --out` + import build a hub database; a re-import
  stores nothing new (messageId dedupe); a hub on that database serves an
  agent, which syncs the store's slice and finds a generated customer.
- bad_line: a malformed line stops the import with the file and line number,
  exit 1, and nothing of its chunk stored (earlier chunks stay); the same
  for {"batch":[...]} documents, with the event's index.
- copy_matches_statements (PostgreSQL): the COPY path into an empty
  database stores exactly what one statement at a time stores; into a
  database with data it falls back to statements; a bad line leaves the
  database empty.
"""
import json
import os
import re

import tslib
from tslib import HUB_BIN, check, run


def conf_for(w, name):
    """A hub config like World.hub_conf() with its own database file."""
    with open(w.hub_conf()) as f:
        text = f.read()
    text = re.sub(r"^db = .*$", f"db = {w.dir}/{name}/hub.db", text, flags=re.M)
    path = os.path.join(w.dir, f"{name}.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def stats(conf):
    return json.loads(run([HUB_BIN, "stats", "-c", conf]).stdout)


def jsonl_then_sync(w):
    events = os.path.join(w.dir, "events.jsonl")
    p = run([HUB_BIN, "gen", "--out", events, "--customers", "300", "--stores", "S001,S002",
             "--seed", "5", "--sample", "3"])
    samples = [json.loads(line) for line in p.stdout.splitlines()]
    check(len(samples) == 3, f"gen --sample: {p.stdout}")
    with open(events) as f:
        lines = sum(1 for _ in f)
    check(lines > 300, f"gen --out wrote {lines} lines")

    conf = w.hub_conf()
    p = run([HUB_BIN, "import", "-c", conf, "--format", "segment", "--chunk", "1000", events])
    print(p.stdout.strip())
    m = re.search(r"imported (\d+) events in (\d+) transactions \((\d+) applied, (\d+) dup", p.stdout)
    check(m and int(m.group(1)) == lines and int(m.group(3)) == lines and int(m.group(4)) == 0,
          f"summary: {p.stdout}")
    check(int(m.group(2)) == -(-lines // 1000), f"one transaction per 1000 events: {p.stdout}")
    check("events/s" in p.stderr, f"progress on stderr: {p.stderr}")
    st = w.hub_stats()
    check(st["customers"] == 300 and st["events"] == lines, f"stats after import: {st}")
    s001 = st["stores"].get("S001", 0)
    check(s001 + st["stores"].get("S002", 0) == 300 and s001 > 0, f"store slices: {st}")

    # Importing the same file again stores nothing new.
    p = run([HUB_BIN, "import", "-c", conf, events])
    check(f"(0 applied, {lines} duplicates)" in p.stdout, f"re-import: {p.stdout}")
    check(w.hub_stats() == st, "re-import changed the hub")

    # The imported database serves an agent like one filled over HTTP.
    w.start_hub()
    w.start_agent()
    w.wait_cards(s001, timeout=60)
    check(w.status()["cards"] == s001, f"agent holds the S001 slice: {w.status()['cards']}")
    for smp in samples:
        s, sess = w.api("POST", "/api/v1/scan", {"code": smp["loyalty_id"]})
        check(s == 200 and sess["status"] == "found" and sess["source"] == "cache" and
              sess["card"]["name"] == smp["name"], f"scan {smp}: {s} {sess}")


def identify(i, **extra):
    ev = {"type": "identify", "userId": f"b{i}", "messageId": f"b{i}-id",
          "traits": {"name": f"Bulk {i}", "loyalty_id": f"2200{i:09d}", "home_store": "S001"}}
    ev.update(extra)
    return json.dumps(ev)


def bad_line(w):
    cases = [
        # (name, line number -> replacement text, expected message part)
        ("truncated", {7: identify(6)[:-9]}, "malformed JSON"),
        ("no identity", {9: json.dumps({"type": "identify", "traits": {"name": "X"}})},
         "neither userId nor anonymousId"),
        ("two on a line", {8: identify(7) + "," + identify(70)}, "malformed JSON"),
        ("not an object", {6: "[1, 2]"}, "must be a JSON object"),
    ]
    for name, bad, words in cases:
        conf = conf_for(w, name.replace(" ", "-"))
        path = os.path.join(w.dir, name.replace(" ", "-") + ".jsonl")
        with open(path, "w") as f:
            for n in range(1, 13):
                f.write(bad.get(n, identify(n - 1)) + "\n")
                if n == 3:
                    f.write("\n")  # blank lines are skipped but counted
        line = next(iter(bad)) + (1 if next(iter(bad)) > 3 else 0)
        p = run([HUB_BIN, "import", "-c", conf, "--chunk", "5", path], check_rc=False)
        print(f"{name}: exit {p.returncode}: {p.stderr.strip().splitlines()[0]}")
        check(p.returncode == 1, f"{name}: exit {p.returncode}, expected 1: {p.stderr}")
        check(f"{path}:{line}:" in p.stderr and words in p.stderr,
              f"{name}: message should name {path}:{line} and say '{words}': {p.stderr}")
        st = stats(conf)
        check(st["customers"] == 5 and st["events"] == 5,
              f"{name}: only the first chunk (5 events) may be stored: {st}")
        check("5 events before it were" in p.stderr, f"{name}: says what was kept: {p.stderr}")

    # {"batch":[...]} documents, pretty-printed, and one with a bad event.
    conf = conf_for(w, "doc")
    good = os.path.join(w.dir, "good.json")
    with open(good, "w") as f:
        json.dump({"batch": [json.loads(identify(i)) for i in range(3)]}, f, indent=2)
    p = run([HUB_BIN, "import", "-c", conf, good])
    check("imported 3 events" in p.stdout and stats(conf)["customers"] == 3,
          f"batch document: {p.stdout} {stats(conf)}")
    bad = os.path.join(w.dir, "bad.json")
    with open(bad, "w") as f:
        f.write(json.dumps({"batch": [json.loads(identify(10)),
                                      {"type": "track", "event": "Product Viewed"}]}) + "\n")
    p = run([HUB_BIN, "import", "-c", conf, bad], check_rc=False)
    check(p.returncode == 1 and f"{bad}:1: batch[1]:" in p.stderr,
          f"bad batch document: exit {p.returncode}: {p.stderr}")
    check(stats(conf)["customers"] == 3, "nothing of the bad document stored")

    # Usage errors are exit 2; a missing file is 1.
    check(run([HUB_BIN, "import", "-c", conf], check_rc=False).returncode == 2, "no file")
    check(run([HUB_BIN, "import", "-c", conf, "--format", "csv", good],
              check_rc=False).returncode == 2, "unknown format")
    p = run([HUB_BIN, "import", "-c", conf, os.path.join(w.dir, "nope.jsonl")], check_rc=False)
    check(p.returncode == 1 and "nope.jsonl" in p.stderr, f"missing file: {p.stderr}")


def _pg_dump():
    """What the stores would see of the hub database: customers (the card
    without what depends on when it was built), feed rows, identifiers,
    orders, views, messageIds, meta seq and event count."""
    out = {}
    rows = tslib.pg_query("SELECT id, cid, card, keys, seq FROM customers ORDER BY id")
    for r in rows:
        card = json.loads(r[2])
        card.pop("updated", None)  # when it was built, and the recency
        for it in card.get("interests", []):  # weights and 7-day counts as of then
            it.pop("score", None)
            it.pop("count", None)
        r[2] = json.dumps(card, sort_keys=True)
    out["customers"] = rows
    for t, cols in (("feed", "store_id, customer, seq, op, cid"),
                    ("identifiers", "key, kind, value, customer"),
                    ("orders", "order_id, customer, total, status"),
                    ("processed", "message_id"), ("views", "customer, product_id, at"),
                    ("meta", "k, v")):
        where = " WHERE k IN ('seq', 'events')" if t == "meta" else ""
        out[t] = tslib.pg_query(f"SELECT {cols} FROM {t}{where} ORDER BY {cols}")
    return out


def copy_matches_statements(w):
    events = os.path.join(w.dir, "events.jsonl")
    run([HUB_BIN, "gen", "--out", events, "--customers", "400", "--stores", "S001,S002",
         "--seed", "9"])
    conf = w.hub_conf()
    p = run([HUB_BIN, "import", "-c", conf, "--statements", events])
    check("COPY" not in p.stdout, f"--statements must not copy: {p.stdout}")
    want = _pg_dump()
    check(len(want["customers"]) == 400 and len(want["feed"]) >= 400, "statement import")

    tslib.pg_reset()
    p = run([HUB_BIN, "import", "-c", conf, events])
    print(p.stdout.strip())
    check(re.search(r"copied \d+ tables \(\d+ rows\) into PostgreSQL with COPY", p.stdout),
          f"an empty database is loaded with COPY: {p.stdout}")
    got = _pg_dump()
    for t in want:
        diff = [(a, b) for a, b in zip(got[t], want[t]) if a != b][:1]
        check(got[t] == want[t], f"{t} differs: {diff}  between COPY and statements "
              f"({len(got[t])} vs {len(want[t])} rows)")
    check(not [f for f in os.listdir(os.environ.get("TMPDIR", "/tmp"))
               if f.startswith("tillside-import.") and
               os.stat(os.path.join(os.environ.get("TMPDIR", "/tmp"), f)).st_uid == os.getuid()
               and os.path.getmtime(os.path.join(os.environ.get("TMPDIR", "/tmp"), f)) >
               os.path.getmtime(events)], "the scratch database was left behind")

    # A database with data: statement by statement, deduplicated as always.
    more = os.path.join(w.dir, "more.jsonl")
    with open(more, "w") as f:
        f.write(identify(1) + "\n" + identify(2) + "\n")
    p = run([HUB_BIN, "import", "-c", conf, more])
    check("COPY" not in p.stdout and "the hub holds 402 customers" in p.stdout,
          f"import into a database with data: {p.stdout}")

    # A bad line on the COPY path leaves the database as empty as it was.
    tslib.pg_reset()
    bad = os.path.join(w.dir, "bad.jsonl")
    with open(bad, "w") as f:
        f.write(identify(1) + "\n" + identify(2)[:-5] + "\n")
    p = run([HUB_BIN, "import", "-c", conf, "--chunk", "1", bad], check_rc=False)
    check(p.returncode == 1 and f"{bad}:2:" in p.stderr and "nothing was stored" in p.stderr,
          f"bad line on the COPY path: {p.returncode} {p.stderr}")
    check(tslib.pg_query("SELECT count(*) FROM customers") == [["0"]],
          "the first chunk must not reach PostgreSQL")
    w.start_hub()
    w.start_agent()
    p = run([HUB_BIN, "import", "-c", conf, events])
    check("COPY" in p.stdout, f"a hub running on the empty database: {p.stdout}")
    st = w.hub_stats()
    s001 = st["stores"].get("S001", 0)
    w.wait_cards(s001, timeout=60)  # the running hub serves what COPY loaded


if __name__ == "__main__":
    tslib.main({"jsonl_then_sync": jsonl_then_sync, "bad_line": bad_line,
                "copy_matches_statements": copy_matches_statements})
