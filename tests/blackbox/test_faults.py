"""The store link misbehaving, through a TCP fault proxy between the agent and
the hub (tests/tools/faultproxy.py), while the CDP keeps sending batches
straight to the hub:

- each_mode: every fault mode in turn; the agent never crashes, never holds
  more cards than the hub's slice nor a card with a name the hub never sent,
  says offline when the link is down (drop, stall, reset), and once the link
  passes again its cache converges to the hub's slice.
- flapping: the mode changes every 0.5-3 s (fixed seed) for ~2 minutes
  (TS_FLAP_SECONDS) while customers are added, renamed and moved between
  stores; within 90 s of the link settling (the backoff cap is 30 s), every customer's card in the
  cache has its latest name and moved-out customers are gone.
- stalled_scan: with the hub stalled (one-way), a scan of a code that is not
  in the cache answers "unknown" within about the 300 ms lookup timeout
  instead of hanging the till.
- no_busy_loop: with every connection dropped, the agent backs off: a handful
  of connection attempts in 10 s, not hundreds; it still comes back.
"""
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import tslib
from tslib import Fail, check, wait_for

CONVERGE_S = 30


class Model:
    """What the test sent to the hub: per user their loyalty id, current
    home store and name, and every name they ever had."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.users = {}
        self.ever_s001 = set()
        self.n = 0
        self.msg = 0

    def _mid(self, user):
        self.msg += 1
        return f"{user}-m{self.msg}"

    def new_customer(self, store="S001"):
        """Events creating one customer (identify, views, a cart line)."""
        with self.lock:
            i = self.n
            self.n += 1
            user, loyalty, name = f"fu{i}", tslib.ean13(f"2100{i:08d}"), f"Customer {i} v0"
            self.users[user] = {"loyalty": loyalty, "store": store, "name": name,
                                "names": {name}}
            if store == "S001":
                self.ever_s001.add(user)
        return tslib.customer_batch(user=user, loyalty=loyalty, name=name, store=store)

    def bulk(self, k):
        """Events for k new S001 customers, stored by the hub in one
        transaction and so sent to the agent in one page; returns them with
        the first and last loyalty id (see Monitor._check_bulk)."""
        ev = []
        for _ in range(k):
            ev += self.new_customer("S001")
        with self.lock:
            first, last = f"fu{self.n - k}", f"fu{self.n - 1}"
            return ev, (self.users[first]["loyalty"], self.users[last]["loyalty"])

    def rename(self, user):
        with self.lock:
            u = self.users[user]
            ver = len(u["names"])
            name = f"Customer {user[2:]} v{ver}"
            u["name"] = name
            u["names"].add(name)
            return [{"type": "identify", "userId": user, "messageId": self._mid(user),
                     "traits": {"name": name}}]

    def move(self, user):
        """Moves a customer to the other store (S001 <-> S002)."""
        with self.lock:
            store = "S002" if self.users[user]["store"] == "S001" else "S001"
            self.users[user]["store"] = store
            if store == "S001":
                self.ever_s001.add(user)
            return [{"type": "identify", "userId": user, "messageId": self._mid(user),
                     "traits": {"home_store": store}}]

    def pick(self, k):
        with self.lock:
            names = list(self.users)
        return self.rng.sample(names, min(k, len(names)))

    def slice(self):
        with self.lock:
            return {u: dict(v) for u, v in self.users.items() if v["store"] == "S001"}

    def snapshot(self):
        with self.lock:
            return {u: dict(v, names=set(v["names"])) for u, v in self.users.items()}


class Sender(threading.Thread):
    """Sends a batch to the hub (not through the proxy) every `every` s while
    running: new customers, renames and, when moves=True, home-store moves."""

    def __init__(self, w, model, every=0.4, moves=False, bulk=None):
        super().__init__(daemon=True)
        self.w, self.m, self.every, self.moves = w, model, every, moves
        self.bulk = bulk  # a Monitor: send an occasional big batch it watches
        self.running = threading.Event()
        self.idle = threading.Event()
        self.quit = False
        self.error = None
        self.batches = 0

    def run(self):
        try:
            while not self.quit:
                if not self.running.is_set():
                    self.idle.set()
                    time.sleep(0.05)
                    continue
                self.idle.clear()
                r = self.m.rng
                ev = self.m.new_customer("S001" if r.random() < 0.8 else "S002")
                for u in self.m.pick(r.randint(1, 4)):
                    ev += self.m.rename(u)
                if self.moves and r.random() < 0.5:
                    ev += self.m.move(self.m.pick(1)[0])
                if self.bulk and r.random() < 0.015:
                    more, ends = self.m.bulk(60)
                    ev += more
                    self.bulk.watch(ends)
                s, body = self.w.send_batch(ev)
                if s != 200:
                    raise Fail(f"hub refused a batch: {s} {body}")
                self.batches += 1
                time.sleep(self.every)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
            self.idle.set()

    def pause(self):
        self.running.clear()
        self.idle.clear()
        if not self.idle.wait(30):
            raise Fail("sender did not pause")
        if self.error:
            raise Fail(f"sender failed: {self.error!r}")

    def resume(self):
        if self.error:
            raise Fail(f"sender failed: {self.error!r}")
        self.running.set()

    def stop(self):
        self.quit = True
        self.running.clear()
        self.join(30)


def lookup(w, loyalty):
    """The card in the agent's cache for a loyalty id (None when unknown),
    read by `tillside lookup` straight from the cache."""
    p = w.cli("lookup", loyalty)
    if p.returncode == 0:
        return json.loads(p.stdout)
    check("unknown customer" in p.stdout, f"lookup {loyalty} failed: {p.stdout} {p.stderr}")
    return None


class Monitor(threading.Thread):
    """Samples the agent every ~150 ms: it is alive, its link state (kept per
    proxy mode), and that it never holds more cards than the S001 customers
    ever sent, a card whose name the hub never had, or part of a page."""

    def __init__(self, w, model, px):
        super().__init__(daemon=True)
        self.w, self.m, self.px = w, model, px
        self.bulks = []  # (first, last) loyalty ids of big batches
        self.bulk_lock = threading.Lock()
        self.links = {}  # mode -> set of link states seen
        self.violation = None
        self.quit = False
        self.samples = 0
        self.rng = random.Random(7)

    def run(self):
        last_lookup = 0.0
        while not self.quit and not self.violation:
            try:
                self._sample()
                if time.monotonic() - last_lookup > 0.5:
                    last_lookup = time.monotonic()
                    self._check_names()
                    self._check_bulk()
            except Fail as e:
                self.violation = str(e)
            except Exception as e:  # noqa: BLE001 - the API may be briefly busy
                if not self.w.agent.alive():
                    self.violation = f"agent died: {e!r}"
            time.sleep(0.15)

    def _sample(self):
        mode = self.px.mode
        if not self.w.agent.alive():
            raise Fail(f"agent exited with {self.w.agent.p.returncode} in mode {mode}")
        st = self.w.status()
        with self.m.lock:
            bound = len(self.m.ever_s001)
        if st["cards"] > bound:
            raise Fail(f"agent holds {st['cards']} cards, the hub's slice never had more than "
                       f"{bound} (mode {mode})")
        self.links.setdefault(mode, set()).add(st["link"])
        self.samples += 1

    def _check_names(self):
        snap = self.m.snapshot()
        for user in self.rng.sample(list(snap), min(2, len(snap))):
            card = lookup(self.w, snap[user]["loyalty"])
            if card is None or card.get("name") in snap[user]["names"]:
                continue
            # The sender may have renamed the customer (and the agent synced
            # it) while the lookup ran: a name joins the model before its
            # batch is sent, so what the model holds after the lookup is
            # every name the hub could have had by then.
            with self.m.lock:
                names = set(self.m.users[user]["names"])
            if card.get("name") not in names:
                raise Fail(f"card for {user} has name {card.get('name')!r}, never sent "
                           f"(sent {sorted(names)})")

    def watch(self, ends):
        with self.bulk_lock:
            self.bulks.append(ends)

    def _check_bulk(self):
        """A big batch travels in one page, applied with its cursor in one
        transaction: its first customer cached without its last would be a
        partial page. First is read before last, so a page applied between
        the two reads cannot raise a false alarm."""
        with self.bulk_lock:
            bulks = list(self.bulks)
        for first, last in bulks:
            if lookup(self.w, first) is not None and lookup(self.w, last) is None:
                raise Fail(f"partial page applied: {first} cached, {last} not "
                           f"(mode {self.px.mode})")

    def check(self):
        if self.violation:
            raise Fail(self.violation)


def sync_state(w):
    """What changes when the agent applies a page."""
    st = w.status()
    return st["cards"], st.get("feed_items_applied"), st


def converge(w, model, timeout=CONVERGE_S, every_user=False):
    """Waits until the agent's cache equals the hub's S001 slice (the sender
    must be paused): the card count, the latest name of every S001 customer
    (or a sample), and no card for customers who left S001. Returns the
    seconds until the cache was found converged. A check counts from its
    start only if the agent applied nothing while it ran, so the time spent
    looking cards up is not charged to the agent."""
    t0 = time.monotonic()
    why = "not checked"
    snap = model.snapshot()
    want = {u for u, v in snap.items() if v["store"] == "S001"}
    hub = w.hub_stats()["stores"].get("S001", 0)
    check(hub == len(want), f"hub slice has {hub} customers, the test sent {len(want)}")
    users = sorted(snap) if every_user else random.Random(len(snap)).sample(
        sorted(snap), min(40, len(snap)))
    while time.monotonic() < t0 + timeout:
        t_check = time.monotonic()
        before = sync_state(w)
        if before[0] != len(want):
            why = f"agent has {before[0]} cards, hub slice {len(want)}"
            time.sleep(0.2)
            continue
        with ThreadPoolExecutor(4) as pool:
            cards = list(pool.map(lambda u: lookup(w, snap[u]["loyalty"]), users))
        bad = []
        for u, card in zip(users, cards):
            if u in want and (card is None or card.get("name") != snap[u]["name"]):
                bad.append(f"{u}: {card and card.get('name')!r} != {snap[u]['name']!r}")
            elif u not in want and card is not None:
                bad.append(f"{u}: moved out of S001 but still cached")
        if bad:
            why = f"{len(bad)} stale: " + "; ".join(bad[:5])
            time.sleep(0.2)
            continue
        if sync_state(w)[:2] == before[:2]:
            return t_check - t0
    raise Fail(f"cache did not converge to the hub's slice within {timeout}s: {why}")


def setup(w, seed, initial=40):
    """Hub with `initial` customers (most in S001), a fault proxy, and an
    agent synced through it, with the product's 300 ms lookup budget (what
    stalled_scan measures). Returns (model, proxy)."""
    w.start_hub()
    model = Model(seed)
    ev = []
    for i in range(initial):
        ev += model.new_customer("S001" if i % 5 else "S002")
    s, body = w.send_batch(ev)
    check(s == 200, f"initial batch: {s} {body}")
    px = w.start_proxy(seed=seed)
    w.start_agent(url=w.proxy_url(px), lookup_ms=300)
    converge(w, model)
    return model, px


def each_mode(w):
    model, px = setup(w, seed=11)
    sender = Sender(w, model)
    mon = Monitor(w, model, px)
    sender.start()
    mon.start()
    plan = [("drop", {}), ("delay", {"ms": 100}), ("reset", {"max_after": 4096}),
            ("truncate", {"max_after": 8192}), ("garbage", {"max_after": 8192}),
            ("stall", {})]
    # What the proxy counts each time it does a mode's harm: a mode lasts
    # until it has hit the link twice (not for a fixed time, which says
    # nothing about whether the fault happened at all).
    harm = {"drop": "dropped", "delay": "bytes_down", "reset": "resets",
            "truncate": "truncations", "garbage": "garbage"}
    try:
        for mode, params in plan:
            before = px.snapshot()
            px.set_mode(mode, **params)
            # A page of 150 cards in flight: cut, reset or spliced mid-body.
            ev, ends = model.bulk(150)
            mon.watch(ends)
            s, body = w.send_batch(ev)
            check(s == 200, f"bulk batch: {s} {body}")
            sender.resume()
            if mode in harm:
                key = harm[mode]
                wait_for(lambda: px.snapshot()[key] >= before[key] + 2 or mon.violation,
                         timeout=60, what=f"{mode} to hit the link twice ({key})")
            if mode in ("drop", "stall", "reset"):
                # A stalled long-poll is only noticed when it times out
                # (timeout_ms + the long-poll wait), so allow for that.
                wait_for(lambda: "offline" in mon.links.get(mode, ()) or mon.violation,
                         timeout=40, what=f"status to say offline during {mode}")
            if mode == "delay":
                # A slow link is still a link: seen online while delayed. The
                # delay hits the link at once, so without this wait the mode
                # could end before the monitor had looked at all.
                wait_for(lambda: "online" in mon.links.get(mode, ()) or mon.violation,
                         timeout=40, what="status to say online during delay")
            mon.check()
            px.set_mode("pass")
            time.sleep(1)
            sender.pause()
            took = converge(w, model)
            mon.check()
            print(f"{mode}: link states {sorted(mon.links.get(mode, ()))}, "
                  f"converged {took:.1f}s after pass, proxy {px.snapshot()}")
        for mode in ("drop", "stall", "reset"):
            check("offline" in mon.links.get(mode, set()),
                  f"status never said offline during {mode}: {mon.links.get(mode)}")
        check("online" in mon.links.get("delay", set()),
              f"a slow link is still a link: {mon.links.get('delay')}")
        converge(w, model, every_user=True)
        check(w.agent.alive(), "agent exited")
    finally:
        mon.quit = True
        sender.stop()
        mon.join(10)
    mon.check()
    check(sender.error is None, f"sender failed: {sender.error!r}")


def flapping(w):
    seconds = float(os.environ.get("TS_FLAP_SECONDS", "120"))
    model, px = setup(w, seed=23)
    mon = Monitor(w, model, px)
    sender = Sender(w, model, every=0.3, moves=True, bulk=mon)
    sender.start()
    mon.start()
    rng = random.Random(1234)
    modes = ["pass", "pass", "drop", "delay", "reset", "truncate", "garbage", "stall"]
    changes = []
    try:
        sender.resume()
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            mode = rng.choice(modes)
            params = {"delay": {"ms": rng.choice((20, 100, 400))},
                      "reset": {"max_after": rng.choice((512, 4096, 65536))},
                      "truncate": {"max_after": rng.choice((512, 4096, 65536))},
                      "garbage": {"max_after": rng.choice((512, 4096, 65536))}}.get(mode, {})
            px.set_mode(mode, **params)
            changes.append(mode)
            time.sleep(rng.uniform(0.5, 3.0))
            mon.check()
        px.set_mode("pass")
        sender.pause()
        # The agent may have just backed off to its 30 s cap.
        took = converge(w, model, timeout=CONVERGE_S + 60, every_user=True)
        print(f"{len(changes)} mode changes over {seconds:.0f}s "
              f"({ {m: changes.count(m) for m in set(changes)} }), {sender.batches} batches, "
              f"{model.n} customers; converged {took:.1f}s after the link settled; "
              f"proxy {px.snapshot()}")
    finally:
        mon.quit = True
        sender.stop()
        mon.join(10)
    mon.check()
    check(sender.error is None, f"sender failed: {sender.error!r}")
    check(w.agent.alive(), "agent exited")


def stalled_scan(w):
    model, px = setup(w, seed=31, initial=10)
    cached = model.slice()
    known = next(iter(cached.values()))["loyalty"]
    # A customer the hub learns about only after the link stalls: a cache
    # miss at the till that the hub could answer, if it answered.
    px.set_mode("stall")
    s, body = w.send_batch(model.new_customer("S001"))
    check(s == 200, f"batch: {s} {body}")
    fresh = model.users[f"fu{model.n - 1}"]["loyalty"]
    results = []
    for label, code, want in (("miss while the link looks up", fresh, "unknown"),
                              ("cached customer", known, "found"),
                              ("unknown code", "2999999999996", "unknown")):
        t0 = time.monotonic()
        s, sess = w.api("POST", "/api/v1/scan", {"code": code})
        dt = time.monotonic() - t0
        results.append((label, dt, sess.get("status"), sess.get("link")))
        check(s == 200, f"{label}: scan answered {s}: {sess}")
        check(sess["status"] == want, f"{label}: status {sess['status']}, expected {want}")
        check(dt < 2.0, f"{label}: scan took {dt:.2f}s with the hub stalled")
    check(results[0][3] == "online",
          f"the first scan should have tried the hub (link still online): {results[0]}")
    # Once the stalled feed request has timed out the link is offline, and
    # a miss answers from the cache at once.
    wait_for(lambda: w.status()["link"] == "offline", timeout=40,
             what="link offline (a stalled long-poll times out after timeout_ms + wait)")
    t0 = time.monotonic()
    s, sess = w.api("POST", "/api/v1/scan", {"code": fresh})
    dt = time.monotonic() - t0
    check(s == 200 and sess["status"] == "unknown" and dt < 2.0,
          f"offline miss: {s} {sess} in {dt:.2f}s")
    results.append(("miss while offline", dt, sess["status"], sess["link"]))
    for r in results:
        print(f"{r[0]}: {r[1] * 1000:.0f} ms, status {r[2]}, link {r[3]}")
    px.set_mode("pass")
    converge(w, model)


def no_busy_loop(w):
    w.start_hub()
    s, _ = w.send_batch(tslib.customer_batch())
    check(s == 200, "batch")
    px = w.start_proxy(seed=41)
    px.set_mode("drop")
    w.start_agent(url=w.proxy_url(px))
    t0 = time.monotonic()
    wait_for(lambda: w.status()["link"] == "offline", timeout=10,
             what="the status to say offline with every connection dropped")
    # The measurement window: ten seconds of attempts, counted by the proxy.
    time.sleep(max(0.0, t0 + 10 - time.monotonic()))
    per_s = [px.attempts_between(t0 + i, t0 + i + 1) for i in range(10)]
    total = sum(per_s)
    print(f"connection attempts per second with the link dropped: {per_s} (total {total})")
    check(total >= 2, f"the agent should keep trying: {total} attempts in 10 s")
    check(total <= 15, f"{total} connection attempts in 10 s: the agent is not backing off")
    check(sum(per_s[5:]) <= sum(per_s[:5]) + 1,
          f"attempts should thin out as the backoff grows: {per_s}")
    # The backoff is capped (30 s): the link coming back is noticed.
    px.set_mode("pass")
    w.wait_cards(1, timeout=45)
    check(w.status()["link"] == "online", "link back online")


if __name__ == "__main__":
    tslib.main({"each_mode": each_mode, "flapping": flapping, "stalled_scan": stalled_scan,
                "no_busy_loop": no_busy_loop})
