"""Feed semantics between a real hub and a real agent (docs/PROTOCOL.md):

- erase_reaches_store: `tillside-hub erase` of a synced customer; within one
  sync cycle the card is gone from the store and neither the customer's name
  nor the identifier HMAC (hex or raw bytes) is anywhere in cache.db, its WAL
  or its shm file; a scan then says unknown.
- resync_beside_live_cache: the hub comes back on a new database (new epoch
  → 410 Gone); the agent rebuilds the slice page by page (page_limit 1, a few
  hundred customers) while scans keep finding cards from the old cache, and
  afterwards the cache is exactly the new slice (a renamed customer has the
  new name, one the new hub does not have is gone).
- long_poll_delivers_fast: with poll_interval_ms = 60000 only the long-poll
  can deliver a change; a rename at the hub shows at the till within 5 s.
- key_rotation_no_gap: the tenant key rotates in the documented steps (both
  know both keys → the hub switches → the agent switches → the old key goes)
  and a scan finds the customer from the cache at every step, the last ones
  with the hub down.
- gzip_pages: the hub gzips feed pages for clients that accept it, the bytes
  inflate to the same page, and the agent's own sync used it.
"""
import gzip
import hashlib
import hmac
import http.client
import json
import os
import re
import time

import tslib
from tslib import check, wait_for

KEY2 = "2c" * 32  # the tenant key rotated to (version 2)


def edit_ini(path, values):
    """Sets {(section, key): value} in an INI file (None removes the key),
    adding keys and sections that are not there yet."""
    with open(path) as f:
        lines = f.read().splitlines()
    todo = dict(values)
    out, section = [], None

    def flush(sec):
        for (s, k), v in list(todo.items()):
            if s == sec:
                if v is not None:
                    out.append(f"{k} = {v}")
                del todo[(s, k)]

    for line in lines:
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            flush(section)
            section = m.group(1).strip()
            out.append(line)
            continue
        m = re.match(r"\s*([A-Za-z0-9_]+)\s*=", line)
        if m and (section, m.group(1)) in todo:
            v = todo.pop((section, m.group(1)))
            if v is not None:
                out.append(f"{m.group(1)} = {v}")
            continue
        out.append(line)
    flush(section)
    for sec in sorted({s for s, _ in todo}):
        out.append(f"[{sec}]")
        flush(sec)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def start_hub(w, **ini):
    """Starts the hub with tslib's configuration edited by ini
    (section__key=value)."""
    conf = w.hub_conf()
    edit_ini(conf, {tuple(k.split("__")): v for k, v in ini.items()})
    p = tslib.Proc("hub", [tslib.HUB_BIN, "run", "-c", conf], os.path.join(w.dir, "hub.log"))
    w.procs.append(p)
    wait_for(lambda: w._port_open(w.hub_port) or (not p.alive() and w._died(p)),
             what="hub to listen")
    w.hub = p
    return p


def start_agent(w, poll_ms=300, **ini):
    conf = w.agent_conf(poll_ms=poll_ms)
    edit_ini(conf, {tuple(k.split("__")): v for k, v in ini.items()})
    p = tslib.Proc("agent", [tslib.AGENT_BIN, "run", "-c", conf],
                   os.path.join(w.dir, "agent.log"))
    w.procs.append(p)
    wait_for(lambda: (w.api("GET", "/readyz")[0] == 200) or (not p.alive() and w._died(p)),
             what="agent /readyz")
    w.agent = p
    return p


def ident_key(code, key_hex=tslib.TENANT_KEY, kind="loyalty"):
    """hex(HMAC-SHA256(tenant key, kind + ":" + normalized)) as PROTOCOL.md
    defines it (the codes used here are already normalized)."""
    return hmac.new(bytes.fromhex(key_hex), f"{kind}:{code}".encode(), hashlib.sha256).hexdigest()


def scan(w, code):
    s, sess = w.api("POST", "/api/v1/scan", {"code": code})
    check(s == 200, f"scan answered {s}: {sess}")
    return sess


def card_name(sess):
    return (sess.get("card") or {}).get("name")


def send(w, events):
    """Posts events in Segment-sized batches."""
    for i in range(0, len(events), 400):
        s, body = w.send_batch(events[i:i + 400])
        check(s == 200, f"batch: {s} {body}")


def customers(n, prefix="u", rename=None, skip=()):
    ev = []
    for i in range(n):
        if i in skip:
            continue
        name = rename.get(i, f"Customer {i}") if rename else f"Customer {i}"
        ev += tslib.customer_batch(user=f"{prefix}{i}", loyalty=code(i), name=name,
                                   views=1)
    return ev


def code(i):
    return tslib.ean13(f"2000000{i:05d}")


def rename_event(user, name, mid):
    return [{"type": "identify", "userId": user, "messageId": mid, "traits": {"name": name}}]


def cache_files(w):
    base = os.path.join(w.dir, "agent", "cache.db")
    return [base, base + "-wal", base + "-shm"]


def files_containing(w, needles):
    """{file: [needle...]} for every cache file holding one of the byte
    strings."""
    found = {}
    for path in cache_files(w):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        hits = [n for n in needles if n in data]
        if hits:
            found[os.path.basename(path)] = hits
    return found


def erase_reaches_store(w):
    w.start_hub()
    victim, loyalty = "Zebedee Quuxington", "2000000012345"
    send(w, tslib.customer_batch(user="u-zeb", loyalty=loyalty, name=victim) +
         tslib.customer_batch(user="u-other", loyalty="2000000054321", name="Other Person"))
    w.start_agent()
    w.wait_cards(2)
    sess = scan(w, loyalty)
    check(sess["status"] == "found" and card_name(sess) == victim, f"before erasure: {sess}")
    # The card changes once before the erasure, so an old version of it is
    # in the files too.
    send(w, rename_event("u-zeb", victim + " Jr", "zeb-rename"))
    wait_for(lambda: card_name(scan(w, loyalty)) == victim + " Jr", what="the renamed card")
    key_hex = ident_key(loyalty)
    needles = [victim.encode(), key_hex.encode(), bytes.fromhex(key_hex)]
    check(files_containing(w, needles[:1] + needles[2:]),
          "the name and key should be in the cache before the erasure (test would prove nothing)")

    p = tslib.run([tslib.HUB_BIN, "erase", "-c", os.path.join(w.dir, "hub.conf"), "u-zeb"])
    check("1 store" in p.stdout, f"erase output: {p.stdout}")
    t0 = time.monotonic()
    wait_for(lambda: w.status()["cards"] == 1, timeout=10, what="the erased card to go")
    took = time.monotonic() - t0
    check(took < 3.0, f"erasure took {took:.1f}s to reach the store (poll every 0.3 s)")
    # The WAL is truncated right after the page's commit: allow that moment.
    try:
        wait_for(lambda: not files_containing(w, needles), timeout=3, interval=0.05,
                 what="the erased bytes to leave the files")
    except tslib.Fail:
        left = files_containing(w, needles)
        check(not left, f"erased customer still in the agent's files: {left}")
    gone = time.monotonic() - t0
    sess = scan(w, loyalty)
    check(sess["status"] == "unknown" and "card" not in sess, f"after erasure: {sess}")
    check(files_containing(w, [b"Other Person"]), "the other customer must stay")
    # The hub has forgotten them too, and says so to a second erasure.
    s, _ = w.hub_request("GET", f"/v1/lookup?key={key_hex}", cert="t01")
    check(s == 404, f"hub lookup after erasure: {s}")
    p = tslib.run([tslib.HUB_BIN, "erase", "-c", os.path.join(w.dir, "hub.conf"), "--loyalty",
                   loyalty], check_rc=False)
    check(p.returncode == 1 and "no customer" in p.stderr, f"second erasure: {p.stderr}")
    print(f"card gone {took * 1000:.0f} ms after `tillside-hub erase`, "
          f"bytes gone after {gone * 1000:.0f} ms")


N_RESYNC = 300


def resync_beside_live_cache(w):
    w.start_hub()
    send(w, customers(N_RESYNC))
    # Through a fault proxy: during the resync it delays every chunk, so the
    # rebuild lasts seconds however fast this machine is, and the scans
    # below always meet it half done.
    px = w.start_proxy(seed=3)
    start_agent(w, hub__page_limit=1, hub__url=w.proxy_url(px))
    w.wait_cards(N_RESYNC, timeout=120)

    # The hub's database is replaced: same customers re-sent, except that
    # customer 0 is renamed and the last one is missing. It is filled on
    # another port first, so the agent meets it complete.
    w.hub.stop()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(os.path.join(w.dir, "hub.db" + suffix))
        except FileNotFoundError:
            pass
    port = w.hub_port
    w.hub_port = tslib.free_port()
    start_hub(w)
    send(w, customers(N_RESYNC, rename={0: "Renamed Zero"}, skip={N_RESYNC - 1}))
    w.hub.stop()
    w.hub_port = port
    px.set_mode("delay", ms=15)
    start_hub(w)

    # While the agent rebuilds the slice, the old cache keeps answering:
    # including the customer the new hub does not have.
    during = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = w.status()
        if not st.get("resyncing"):
            if during or "resync complete" in w.agent.log():
                break
            time.sleep(0.02)
            continue
        swapped = False
        for i in (7, N_RESYNC - 1, 0):
            sess = scan(w, code(i))
            if sess["status"] != "found" and not w.status()["resyncing"]:
                swapped = True  # the new slice came in between: correct, and the end
                break
            check(sess["status"] == "found" and sess["source"] == "cache",
                  f"scan of customer {i} during the resync: {sess}")
            check(card_name(sess) in (f"Customer {i}", "Renamed Zero"), f"card: {sess}")
        if swapped:
            break
        during += 1
    check(during >= 3, f"only {during} scan rounds happened during the resync; make it longer")
    check("410" in w.agent.log(), "the agent never saw 410 Gone")

    px.set_mode("pass")
    st = wait_for(lambda: (not w.status()["resyncing"]) and w.status(), what="resync to end")
    want = w.hub_stats()["stores"]["S001"]
    check(want == N_RESYNC - 1, f"hub slice: {want}")
    check(st["cards"] == want, f"cache holds {st['cards']} cards, the hub's slice {want}")
    sess = scan(w, code(0))
    check(card_name(sess) == "Renamed Zero" and sess["source"] == "cache", f"renamed: {sess}")
    sess = scan(w, code(N_RESYNC - 1))
    check(sess["status"] == "unknown", f"customer the new hub lacks: {sess}")
    sess = scan(w, code(150))
    check(sess["status"] == "found" and sess["source"] == "cache", f"customer 150: {sess}")
    print(f"{during} scan rounds answered from the old cache during the resync")


def long_poll_delivers_fast(w):
    w.start_hub()
    send(w, tslib.customer_batch(user="u-lp", loyalty="2000000077777", name="Before Rename"))
    # A poll interval of a minute: within 5 s only the long-poll can bring a
    # change. Once the first page is in, the agent is caught up and its next
    # request is a long-poll; a change sent before it parks is newer than its
    # cursor and answered at once, so no sleep is needed to line them up.
    w.start_agent(poll_ms=60000)
    w.wait_cards(1)
    timings = []
    for n in range(3):
        name = f"After Rename {n}"
        t0 = time.monotonic()
        send(w, rename_event("u-lp", name, f"lp-rename-{n}"))
        wait_for(lambda: card_name(scan(w, "2000000077777")) == name, timeout=5, interval=0.02,
                 what=f"'{name}' at the till within 5 s (the poll interval is 60 s)")
        timings.append(time.monotonic() - t0)
    print("online change to the till: " + ", ".join(f"{t * 1000:.0f} ms" for t in timings))


def key_rotation_no_gap(w):
    k1, k2 = tslib.TENANT_KEY, KEY2
    start_hub(w)
    send(w, customers(5, prefix="kr"))
    start_agent(w)
    w.wait_cards(5)

    def found_in_cache(i, step):
        sess = scan(w, code(i))
        check(sess["status"] == "found" and sess["source"] == "cache" and
              card_name(sess) == f"Customer {i}", f"{step}: customer {i}: {sess}")

    def restart_hub(**ini):
        w.hub.stop()
        start_hub(w, **ini)

    def restart_agent(**ini):
        w.agent.stop()
        start_agent(w, **ini)

    found_in_cache(1, "before")
    # 1. Both sides know both keys; the old one is still current. (The agent
    #    first, so the re-stamped cards are counted by the new process.)
    restart_agent(identity__previous_tenant_key=k2, identity__previous_key_version=2)
    restart_hub(tenant__previous_key=k2, tenant__previous_key_version=2)
    wait_for(lambda: w.status()["feed_items_applied"] >= 5, what="re-stamped cards (step 1)")
    found_in_cache(1, "step 1")
    # 2. The hub switches: every card comes again with keys under key 2
    #    and, as prev_keys, key 1, which is what this agent still uses.
    before = w.status()["feed_items_applied"]
    restart_hub(tenant__key=k2, tenant__key_version=2, tenant__previous_key=k1,
                tenant__previous_key_version=1)
    wait_for(lambda: w.status()["feed_items_applied"] >= before + 5,
             what="re-stamped cards (step 2)")
    send(w, tslib.customer_batch(user="kr-new", loyalty=code(99), name="Customer 99", views=1))
    w.wait_cards(6)
    for i in (2, 99):
        found_in_cache(i, "step 2")
    # 3. The agent switches. Even with the hub down, the cache answers.
    restart_agent(identity__tenant_key=k2, identity__key_version=2,
                  identity__previous_tenant_key=k1, identity__previous_key_version=1)
    w.hub.stop()
    wait_for(lambda: w.status()["link"] == "offline", what="link down")
    for i in (3, 99):
        found_in_cache(i, "step 3 (hub down)")
    # 4. Key 1 is retired on both sides.
    restart_agent(identity__tenant_key=k2, identity__key_version=2)
    start_hub(w, tenant__key=k2, tenant__key_version=2)
    wait_for(lambda: w.status()["feed_items_applied"] >= 6, what="re-stamped cards (step 4)")
    w.hub.stop()
    for i in (4, 99):
        found_in_cache(i, "step 4 (hub down)")
    check(scan(w, "2999999999996")["status"] == "unknown", "unknown codes stay unknown")


def gzip_pages(w):
    w.start_hub()
    send(w, customers(20, prefix="gz"))
    w.start_agent()
    w.wait_cards(20)

    def get(headers):
        conn = http.client.HTTPSConnection("localhost", w.hub_port, context=w.hub_ssl("t01"),
                                           timeout=10)
        try:
            conn.request("GET", "/v1/feed?limit=100", headers=headers)
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            conn.close()

    s, h, plain = get({})
    check(s == 200 and "content-encoding" not in h, f"plain: {s} {h}")
    check("accept-encoding" in h.get("vary", "").lower(), f"Vary missing: {h}")
    s, h, body = get({"Accept-Encoding": "gzip"})
    check(s == 200 and h.get("content-encoding") == "gzip", f"gzip: {s} {h}")
    check(len(body) * 3 < len(plain), f"gzip saved little: {len(body)} of {len(plain)} bytes")
    check(gzip.decompress(body) == plain, "the gzip page inflates to another page")
    check(len(json.loads(plain)["items"]) == 20, "page content")
    # The agent asked for gzip and took its pages that way.
    agent_lines = [l for l in w.hub.log().splitlines() if "feed store=S001 since=-" in l]
    check(agent_lines and agent_lines[0].endswith(" gzip"),
          f"the agent's first (full) page was not gzip'd: {agent_lines[:1]}")
    print(f"a 20-card page: {len(plain)} bytes, {len(body)} gzip'd")


if __name__ == "__main__":
    tslib.main({
        "erase_reaches_store": erase_reaches_store,
        "resync_beside_live_cache": resync_beside_live_cache,
        "long_poll_delivers_fast": long_poll_delivers_fast,
        "key_rotation_no_gap": key_rotation_no_gap,
        "gzip_pages": gzip_pages,
    })
