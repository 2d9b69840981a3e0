"""Black-box tests of the hub on PostgreSQL (run under tests/tools/with_pg.sh,
which starts a throwaway server and sets TS_TEST_PG): two real tillside-hub
processes on one database serving the same feed while the CDP writes through
both, purchases forwarded upstream exactly once by whichever hub leads, a
long-poll on one hub woken by a change through the other, and a hub that
keeps working after the database server restarts."""
import glob
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tslib  # noqa: E402
from tslib import Proc, check, customer_batch, free_port, main, run, wait_for  # noqa: E402
from test_purchases_hub import UPSTREAM_KEY, FakeCDP, purchase  # noqa: E402


def start_hubs(w, n=2, extra=""):
    """n hub processes on the one database, each on its own port."""
    hubs = []
    for i in range(n):
        port = w.hub_port if i == 0 else free_port()
        conf = w.hub_conf(extra=extra)
        with open(conf) as f:
            text = f.read().replace(f"listen = 127.0.0.1:{w.hub_port}", f"listen = 127.0.0.1:{port}")
        path = os.path.join(w.dir, f"hub{i}.conf")
        with open(path, "w") as f:
            f.write(text)
        p = Proc(f"hub{i}", [tslib.HUB_BIN, "run", "-c", path], os.path.join(w.dir, f"hub{i}.log"))
        w.procs.append(p)
        wait_for(lambda: w._port_open(port) or (not p.alive() and w._died(p)),
                 what=f"hub{i} to listen")
        hubs.append({"port": port, "proc": p, "conf": path})
    return hubs


def request(w, port, method, path, body=None, headers=None, cert="t01", timeout=20):
    conn = http.client.HTTPSConnection("localhost", port, context=w.hub_ssl(cert), timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None:
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read().decode()
        return r.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def send(w, port, events):
    import base64
    auth = base64.b64encode(f"{tslib.WRITE_KEY}:".encode()).decode()
    return request(w, port, "POST", "/v1/batch", {"batch": events}, cert="cdp",
                   headers={"Authorization": f"Basic {auth}"})


def read_feed(w, port, since=None, limit=500):
    """Every page of S001's feed from since: (items in order, last cursor)."""
    items = []
    cursor = since
    while True:
        q = f"/v1/feed?limit={limit}" + (f"&since={cursor}" if cursor else "")
        st, page = request(w, port, "GET", q)
        check(st == 200, f"feed on :{port} answered {st}: {page}")
        items += page["items"]
        cursor = page["cursor"]
        if not page["more"]:
            return items, cursor


def latest(items):
    """cid -> card, applying items in order as an agent does."""
    cards = {}
    for it in items:
        if it["op"] == "upsert":
            cards[it["cid"]] = it["card"]
        else:
            cards.pop(it["cid"], None)
    return cards


def rename(user, name, mid):
    return {"type": "identify", "userId": user, "messageId": mid, "traits": {"name": name}}


def two_hubs_one_feed(w):
    """The CDP writes through both hubs at once while a terminal follows one
    hub's feed in small pages: every hub serves the same feed, seqs never
    go backwards, and the follower ends with exactly what a full read shows
    (no change skipped between pages)."""
    a, b = start_hubs(w)
    base = []
    for i in range(20):
        base += customer_batch(user=f"u{i}", loyalty=tslib.ean13(f"2000000{i:05d}"),
                               name=f"Customer {i}", views=1)
    st, ans = send(w, a["port"], base)
    check(st == 200, f"first batch: {st} {ans}")

    follower = {"items": [], "cursor": None, "done": False, "error": None}

    def follow():
        try:
            while True:
                done = follower["done"]
                items, cur = read_feed(w, b["port"], follower["cursor"], limit=7)
                follower["items"] += items
                follower["cursor"] = cur
                if done:
                    return
                time.sleep(0.02)
        except Exception as e:  # noqa: BLE001
            follower["error"] = e

    def writer(hub, tag, errors):
        for k in range(25):
            ev = [rename(f"u{(k * 3 + j) % 20}", f"{tag}{k}-{j}", f"{tag}-{k}-{j}")
                  for j in range(4)]
            ev += customer_batch(user=f"{tag}new{k}", loyalty=tslib.ean13(
                f"21{'1' if tag == 'A' else '2'}000{k:06d}"), name=f"New {tag}{k}", views=1)
            st, ans = send(w, hub["port"], ev)
            if st != 200:
                errors.append(f"{tag} batch {k}: {st} {ans}")

    errors = []
    ft = threading.Thread(target=follow)
    ft.start()
    ws = [threading.Thread(target=writer, args=(a, "A", errors)),
          threading.Thread(target=writer, args=(b, "B", errors))]
    for t in ws:
        t.start()
    for t in ws:
        t.join()
    follower["done"] = True
    ft.join(60)
    check(not errors, f"batches refused: {errors[:3]}")
    check(follower["error"] is None, f"follower: {follower['error']}")

    items_a, cur_a = read_feed(w, a["port"])
    items_b, cur_b = read_feed(w, b["port"])
    check(items_a == items_b, "the two hubs serve different feeds")
    check(cur_a == cur_b, f"cursors differ: {cur_a} vs {cur_b}")
    cids = [it["cid"] for it in items_a]
    check(len(cids) == len(set(cids)) == 70, f"{len(cids)} items, {len(set(cids))} distinct")
    full = latest(items_a)
    followed = latest(follower["items"])
    check(followed == full, "the follower missed changes of "
          f"{[c for c in full if followed.get(c) != full[c]][:5]}")
    # the last name each shared customer got wins, whichever hub took it
    names = {c["name"] for c in full.values()}
    check("New A24" in names and "New B24" in names, f"names: {sorted(names)[:10]}")
    # stats through either hub's config agree with the feed
    p = subprocess.run([tslib.HUB_BIN, "stats", "-c", b["conf"]], capture_output=True, text=True,
                       check=True)
    check(json.loads(p.stdout)["stores"]["S001"] == 70, f"stats: {p.stdout}")


def forward_once_with_two_hubs(w):
    """Both hubs take purchases; one forwards them upstream, each exactly
    once; when it stops, the other takes over."""
    cdp = FakeCDP()
    try:
        extra = (f"\n[upstream]\nurl = http://127.0.0.1:{cdp.port}/v1/batch\n"
                 f"write_key = {UPSTREAM_KEY}\nmax_backoff_s = 2\n")
        hubs = start_hubs(w, extra=extra)
        for k in range(40):
            hub = hubs[k % 2]
            st, ans = request(w, hub["port"], "POST", "/v1/purchases",
                              {"batch": [purchase(f"m{k}", f"R{k}", "SKU-1")], "sentAt": "x"})
            check(st == 200, f"purchase {k}: {st} {ans}")
        wait_for(lambda: len(cdp.received) == 40, timeout=30, what="40 purchases upstream")
        time.sleep(1)
        check(cdp.twice == [], f"delivered twice: {cdp.twice}")

        def forwarded(hub):
            st, text = metrics(w, hub["port"])
            for line in text.splitlines():
                if line.startswith("tillside_hub_upstream_forwarded_total "):
                    return int(float(line.split()[1]))
            return 0

        counts = [forwarded(h) for h in hubs]
        check(sorted(counts) == [0, 40], f"forwarded per hub: {counts}")
        leader = hubs[counts.index(40)]
        other = hubs[1 - counts.index(40)]
        leader["proc"].stop()
        for k in range(40, 50):
            st, ans = request(w, other["port"], "POST", "/v1/purchases",
                              {"batch": [purchase(f"m{k}", f"R{k}", "SKU-1")], "sentAt": "x"})
            check(st == 200, f"purchase {k}: {st} {ans}")
        wait_for(lambda: len(cdp.received) == 50, timeout=30,
                 what="the other hub to forward the rest")
        check(cdp.twice == [], f"delivered twice: {cdp.twice}")
        check(forwarded(other) == 10, f"the other hub forwarded {forwarded(other)}")
    finally:
        cdp.stop()


def metrics(w, port):
    conn = http.client.HTTPSConnection("localhost", port, context=w.hub_ssl("cdp"), timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def long_poll_across_hubs(w):
    """A terminal long-polling one hub gets a change sent through the other
    within the wait, not at its end."""
    a, b = start_hubs(w)
    st, _ = send(w, a["port"], customer_batch())
    check(st == 200, "first batch")
    _, cursor = read_feed(w, b["port"])
    result = {}

    def poll():
        t0 = time.monotonic()
        result["answer"] = request(w, b["port"], "GET", f"/v1/feed?since={cursor}&wait=20",
                                   timeout=30)
        result["took"] = time.monotonic() - t0

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    st, _ = send(w, a["port"], [rename("u-ada", "Ada Byron", "ren-1")])
    check(st == 200, "rename batch")
    t.join(30)
    st, page = result["answer"]
    check(st == 200 and [i["card"]["name"] for i in page["items"]] == ["Ada Byron"],
          f"long-poll answered {st}: {page}")
    check(result["took"] < 15, f"the long-poll waited {result['took']:.1f}s of 20: not woken")


def pg_restart(w):
    """The database server restarts under a running hub: requests during the
    gap fail cleanly, and afterwards the hub works again without a restart."""
    (a,) = start_hubs(w, n=1)
    st, _ = send(w, a["port"], customer_batch())
    check(st == 200, "first batch")
    pgdir = os.environ["TS_TEST_PG_DIR"]
    pgbin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    cmd = [f"{pgbin}/pg_ctl", "-D", f"{pgdir}/data", "-w", "-m", "fast", "restart",
           "-l", f"{pgdir}/server.log",
           "-o", f"-k {pgdir} -c listen_addresses= -c fsync=off"]
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True)
    answers = []

    def works():
        st, ans = send(w, a["port"], [rename("u-ada", "Ada Byron", f"ren-{len(answers)}")])
        answers.append(st)
        return st == 200

    wait_for(works, timeout=20, interval=0.3, what="a batch to be taken after the restart")
    check(all(s in (200, 500, 503) for s in answers), f"answers: {answers}")
    items, _ = read_feed(w, a["port"])
    check([i["card"]["name"] for i in items] == ["Ada Byron"], f"feed: {items}")
    check(a["proc"].alive(), "the hub exited")


def _refused(ctx, port, session):
    """A connection offering session is neither resumed nor served: the
    revoked certificate is refused in the full handshake that follows."""
    from test_tls import _get
    try:
        line, _, _, reused = _get(ctx, port, "/v1/feed", session)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        check("revoked" in str(e).lower(), f"refusal does not say revoked: {e}")
        return
    check(not reused, f"port {port} resumed the revoked terminal's session")
    check(line == "", f"port {port} served the revoked terminal: {line}")


def tickets_across_hubs(w, best=False):
    """Two hub processes on one database share their session ticket keys: a
    session made with hub A resumes on hub B and back (a round-robin
    balancer in front may send a terminal to either), the resumed
    connection still knows its store; after `tillside-hub revoke` the
    terminal resumes on neither, while another terminal still does."""
    from test_tls import _ctx, _get
    a, b = start_hubs(w)
    c = w.certs
    w.pki("issue", "--dir", c, "--cn", "T02", "--ou", "S001", "--o", "acme", "--out", f"{c}/t02")
    ctx1, ctx2 = _ctx(w, "t01", best), _ctx(w, "t02", best)
    line, _, s1, reused = _get(ctx1, a["port"], "/v1/feed")
    check(" 200 " in line + " " and not reused and s1.has_ticket, f"T01 on A: {line}")
    sess = s1
    for hub in (b, a, b):
        line, body, s, reused = _get(ctx1, hub["port"], "/v1/feed?limit=10", sess)
        check(reused, f"a session from the other hub was not resumed on port {hub['port']}")
        check(" 200 " in line + " " and '"items"' in body, f"resumed poll: {line} {body[:200]}")
        if best and s.has_ticket:
            sess = s
    _, _, s2, _ = _get(ctx2, a["port"], "/v1/feed")
    run([tslib.HUB_BIN, "revoke", "--terminal", "T01", "--store", "S001", "--reason", "stolen",
         "-c", a["conf"]])
    for hub in (a, b):
        _refused(ctx1, hub["port"], s1)
    line, _, _, reused = _get(ctx2, b["port"], "/v1/feed", s2)
    check(reused and " 200 " in line + " ", f"T02 on B with A's session: {line}, reused={reused}")
    for i, hub in enumerate((a, b)):
        log = open(os.path.join(w.dir, f"hub{i}.log")).read()
        check("certificate revoked" in log and "CN=T01" in log,
              f"hub{i}'s log must name the revoked subject")


def tickets_across_hubs_best(w):
    tickets_across_hubs(w, best=True)


def counter(w, hub, name):
    """One sample of the hub's /metrics (the main listener's, if labelled)."""
    st, text = metrics(w, hub["port"])
    check(st == 200, f"/metrics answered {st}")
    m = re.search(r'^%s(?:\{listener="main"\})? (\S+)$' % name, text, re.M)
    check(m, f"/metrics has no {name}")
    return float(m.group(1))


LISTENERS = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ts_hub' AND query = 'LISTEN tillside_feed'"


def parked_polls_lost_notify(w):
    """On PostgreSQL a parked long-poll does not look by itself: the
    listener thread looks for the whole process (one query every 10 s, each
    second while it cannot listen) and wakes the stores that moved. Idle
    parked polls make no feed reads across such a look; a change committed
    through hub B while both hubs' LISTEN connections are killed (and kept
    out by the role's connection limit, so its NOTIFY reaches nobody) still
    reaches the polls parked on hub A within their wait; with the listeners
    back, a change wakes them through NOTIFY again."""
    # a role that is no superuser, so that its connection limit holds
    tslib.pg_query("DO $$BEGIN CREATE ROLE ts_hub LOGIN; EXCEPTION WHEN duplicate_object THEN "
                   "NULL; END$$; ALTER SCHEMA public OWNER TO ts_hub")
    check("user=tillside" in tslib.PG_URI, f"TS_TEST_PG names no user: {tslib.PG_URI}")
    w.db = tslib.PG_URI.replace("user=tillside", "user=ts_hub")
    a, b = start_hubs(w)
    st, _ = send(w, a["port"], customer_batch())
    check(st == 200, "first batch")
    _, cursor = read_feed(w, a["port"])
    wait_for(lambda: tslib.pg_query(LISTENERS)[0][0] == "2", what="both hubs to listen")

    def park(n, since):
        got, threads = [], []
        for _ in range(n):
            def poll():
                t0 = time.monotonic()
                r = request(w, a["port"], "GET", f"/v1/feed?since={since}&wait=25", timeout=40)
                got.append((r, time.monotonic() - t0))
            threads.append(threading.Thread(target=poll))
            threads[-1].start()
        wait_for(lambda: counter(w, a, "tillside_hub_httpd_parked") == n, what=f"{n} polls parked")
        return got, threads

    def answered(got, threads, name, within):
        """Each poll answered name's change after at most within seconds of
        its 25: woken by it (at the end of its wait it would answer it too)."""
        for t in threads:
            t.join(40)
        check(len(got) == len(threads), f"{len(threads) - len(got)} polls never answered")
        for (st, page), took in got:
            check(st == 200 and [i["card"]["name"] for i in page["items"]] == [name],
                  f"parked poll answered {st}: {page}")
            check(took < within, f"a parked poll waited {took:.1f}s of 25: not woken by the change")
        return got[0][0][1]["cursor"]

    # Idle: across one of the listener's looks, and longer than a poll's own
    # recheck used to be (10 s), no parked poll reads the feed.
    got, threads = park(3, cursor)
    parked_at = time.monotonic()
    reads = counter(w, a, "tillside_hub_feed_reads_total")
    looks = counter(w, a, "tillside_hub_feed_rechecks_total")
    wait_for(lambda: counter(w, a, "tillside_hub_feed_rechecks_total") > looks and
             time.monotonic() - parked_at > 11, timeout=22, interval=0.5,
             what="the listener's timed look")
    check(counter(w, a, "tillside_hub_feed_reads_total") == reads,
          f"idle parked polls read the feed: {reads} -> "
          f"{counter(w, a, 'tillside_hub_feed_reads_total')}")
    check(counter(w, a, "tillside_hub_httpd_parked") == 3, "the idle polls did not stay parked")
    st, _ = send(w, b["port"], [rename("u-ada", "Ada Byron", "ren-1")])
    check(st == 200, "rename through B")
    cursor = answered(got, threads, "Ada Byron", 23)  # parked for the idle look first

    # The NOTIFY lost: both listeners killed and kept out.
    got, threads = park(3, cursor)
    n = int(tslib.pg_query("SELECT count(*) FROM pg_stat_activity WHERE usename = 'ts_hub'")[0][0])
    tslib.pg_query(f"ALTER ROLE ts_hub CONNECTION LIMIT {n - 2}")
    try:
        tslib.pg_query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "
                       "'ts_hub' AND query = 'LISTEN tillside_feed'")
        wait_for(lambda: tslib.pg_query(LISTENERS)[0][0] == "0", what="the listeners to be gone")
        st, _ = send(w, b["port"], [rename("u-ada", "Ada Lovelace", "ren-2")])
        check(st == 200, "rename through B without listeners")
        check(tslib.pg_query(LISTENERS)[0][0] == "0", "a listener came back before the commit")
        cursor = answered(got, threads, "Ada Lovelace", 15)
    finally:
        tslib.pg_query("ALTER ROLE ts_hub CONNECTION LIMIT -1")
    wait_for(lambda: tslib.pg_query(LISTENERS)[0][0] == "2", timeout=30,
             what="both listeners to reconnect")
    got, threads = park(2, cursor)
    st, _ = send(w, b["port"], [rename("u-ada", "Ada King", "ren-3")])
    check(st == 200, "rename through B with listeners back")
    answered(got, threads, "Ada King", 15)


if __name__ == "__main__":
    if not tslib.PG_URI:
        print("TS_TEST_PG is not set: run under tests/tools/with_pg.sh", file=sys.stderr)
        sys.exit(2)
    main({"two_hubs_one_feed": two_hubs_one_feed,
          "forward_once_with_two_hubs": forward_once_with_two_hubs,
          "long_poll_across_hubs": long_poll_across_hubs,
          "pg_restart": pg_restart,
          "tickets_across_hubs": tickets_across_hubs,
          "tickets_across_hubs_best": tickets_across_hubs_best,
          "parked_polls_lost_notify": parked_polls_lost_notify})
