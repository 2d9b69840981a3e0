"""Black-box tests of in-store purchases on the agent: POST /api/v1/purchases,
the durable outbox and the uploader, against the real tillside-hub over
mutual TLS. Faults come from tests/tools/faultproxy.py (link down, stall,
reset) and from HubFront below, a small TLS front that answers 503/429 with
Retry-After, or 400, or spoils one event, before passing requests on to the
real hub. What reached the hub is read from its SQLite file (read-only)."""
import http.client
import http.server
import json
import os
import random
import resource
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tslib import (AGENT_BIN, Proc, SSEClient, World, check, customer_batch,  # noqa: E402
                   main, wait_for)

FAST = "[outbox]\nbackoff_ms = 100\nbackoff_max_ms = 1000\n"


def purchase(receipt, total=59.9, sku="SKU-JKT-7", qty=1, **kw):
    p = {"receipt": receipt, "currency": "EUR", "total": total, "tax": 9.56, "discount": 0,
         "products": [{"sku": sku, "name": "Rain Jacket", "quantity": qty, "price": total}]}
    p.update(kw)
    return p


def hub_purchases(w):
    """{receipt: [message_id, ...]} of S001 at the hub, from its database."""
    db = sqlite3.connect(f"file:{w.dir}/hub.db?mode=ro", uri=True, timeout=10)
    try:
        out = {}
        for receipt, mid in db.execute(
                "SELECT receipt, message_id FROM purchases WHERE store_id = 'S001'"):
            out.setdefault(receipt, []).append(mid)
        return out
    finally:
        db.close()


def outbox(w):
    s = w.status()
    return s["outbox_depth"], s["dead_letters"]


def wait_drained(w, timeout=60):
    wait_for(lambda: outbox(w)[0] == 0, timeout, what="the outbox to drain")


def check_exactly_once(w, acked, posted=None):
    """Every acknowledged purchase is at the hub once, with the id the agent
    gave; nothing else than what was posted is there."""
    at_hub = hub_purchases(w)
    missing = [r for r in acked if r not in at_hub]
    check(not missing, f"{len(missing)} acknowledged purchases missing at the hub: {missing[:5]}")
    wrong = [r for r, mid in acked.items() if at_hub[r] != [mid]]
    check(not wrong, f"hub holds other ids for {wrong[:5]}: {[at_hub[r] for r in wrong[:5]]}")
    if posted is not None:
        extra = [r for r in at_hub if r not in posted]
        check(not extra, f"hub holds purchases never posted: {extra[:5]}")
    return at_hub


class HubFront:
    """A TLS server with the hub's certificate in front of the real hub.
    mode: "pass", "503" / "429" (answer that, with Retry-After: retry_after,
    to POST /v1/purchases), "400bad" (a 400 for any batch holding a receipt
    with BAD in it), "spoil" (events whose receipt holds BAD get quantity 0
    so the real hub rejects just them). Everything else goes to the hub with
    the terminal's certificate."""

    def __init__(self, w):
        self.w = w
        self.mode = "pass"
        self.retry_after = 2
        self.uploads = []  # (monotonic time, status answered)
        self.lock = threading.Lock()
        front = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                front._forward(self, None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                front._forward(self, self.rfile.read(n))

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the hub or the agent hung up; the test checks outcomes

        self.srv = S(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{w.certs}/hub.pem", f"{w.certs}/hub.key")
        ctx.load_verify_locations(f"{w.certs}/ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def url(self):
        return f"https://localhost:{self.port}"

    def _answer(self, h, status, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _forward(self, h, body):
        if h.command == "POST" and h.path == "/v1/purchases":
            batch = json.loads(body)["batch"]
            bad = any("BAD" in e["properties"]["order_id"] for e in batch)
            with self.lock:
                mode = self.mode
                if mode in ("503", "429"):
                    self.uploads.append((time.monotonic(), int(mode)))
                    return self._answer(h, int(mode), {"error": "busy"},
                                        {"Retry-After": str(self.retry_after)})
                if mode == "400bad" and bad:
                    self.uploads.append((time.monotonic(), 400))
                    return self._answer(h, 400, {"error": "not a batch I like"})
                self.uploads.append((time.monotonic(), 200))
            if mode == "spoil":
                for e in batch:
                    if "BAD" in e["properties"]["order_id"]:
                        e["properties"]["products"][0]["quantity"] = 0
                body = json.dumps({"batch": batch, "sentAt": "x"}).encode()
        ctx = self.w.hub_ssl(cert="t01")
        c = http.client.HTTPSConnection("localhost", self.w.hub_port, context=ctx, timeout=60)
        try:
            hdrs = {k: v for k, v in h.headers.items()
                    if k.lower() in ("content-type", "accept-encoding")}
            c.request(h.command, h.path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            extra = {k: v for k, v in r.getheaders()
                     if k.lower() in ("content-encoding", "retry-after")}
            self._answer(h, r.status, data, extra)
        finally:
            c.close()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---- the local API ----------------------------------------------------------

def api_contract(w):
    """400 names the bad fields; no token, no purchase; 202 after commit, 200
    duplicate for the same receipt; the hub gets it once, with the customer
    scanned inside the sale, whose card then clears; metrics, status and the CLI show it."""
    w.start_hub()
    st, _ = w.send_batch(customer_batch())
    check(st == 200, f"CDP batch answered {st}")
    w.start_agent(extra=FAST)
    w.wait_cards(1)

    st, body = w.api("POST", "/api/v1/purchases",
                     {"receipt": "", "currency": "EURO", "total": -1,
                      "products": [{"sku": "A", "quantity": 0, "price": "x"}, 7]})
    check(st == 400, f"bad purchase answered {st}: {body}")
    for f in ("receipt", "currency", "total", "products[0].quantity", "products[0].price",
              "products[1]"):
        check(f in body["fields"], f"400 does not list {f}: {body}")
    st, body = w.api("POST", "/api/v1/purchases", {"receipt": "R1", "currency": "EUR",
                                                   "total": 1, "products": []})
    check(st == 400 and body["fields"] == ["products"], f"empty products: {st} {body}")
    st, body = w.api("POST", "/api/v1/purchases", "{not json")
    check(st == 400 and "error" in body, f"bad JSON answered {st}: {body}")
    # broken JSON that is not UTF-8 either (found by fuzz_purchase_body)
    st, body = w.api("POST", "/api/v1/purchases", b'{"receipt": "Caf\\u0\xd0\x9a"}')
    check(st == 400 and body["fields"] == [] and "invalid JSON" in body["error"],
          f"broken JSON answered {st}: {body}")
    st, body = w.api("POST", "/api/v1/purchases", purchase("S001-T01-000001"), auth=False)
    check(st == 401, f"purchase without token answered {st}: {body}")

    sse = SSEClient(w.api_port)
    # The POS opened the sale, then the card was scanned: the sale is hers.
    opened = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 1))
    st, sess = w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
    check(st == 200 and sess["status"] == "found", f"scan answered {st}: {sess}")
    cid = sess["card"]["cid"]
    st, body = w.api("POST", "/api/v1/purchases",
                     purchase("S001-T01-000001", transaction_started_at=opened))
    check(st == 202 and body["message_id"], f"purchase answered {st}: {body}")
    mid = body["message_id"]
    ev = sse.wait_event("purchase", lambda d: d["receipt"] == "S001-T01-000001")
    check(ev["message_id"] == mid and ev.get("cid") == cid, f"purchase event: {ev}")
    sse.wait_event("clear", lambda d: d.get("reason") == "purchase")
    check(w.api("GET", "/api/v1/session")[0] == 204, "the card stayed after the purchase")
    sse.close()

    st, body = w.api("POST", "/api/v1/purchases", purchase("S001-T01-000001", total=1.0))
    check(st == 200 and body == {"message_id": mid, "duplicate": True},
          f"same receipt again answered {st}: {body}")
    # a scanned code in the body names the customer with nobody on screen
    st, body = w.api("POST", "/api/v1/purchases",
                     purchase("S001-T01-000002", customer={"code": "2000000000015"}))
    check(st == 202, f"purchase with customer code answered {st}: {body}")

    wait_drained(w)
    at_hub = check_exactly_once(w, {"S001-T01-000001": mid, "S001-T01-000002": body["message_id"]})
    check(len(at_hub) == 2, f"hub holds {at_hub}")
    db = sqlite3.connect(f"file:{w.dir}/hub.db?mode=ro", uri=True)
    cids = [r[0] for r in db.execute("SELECT cid FROM purchases ORDER BY receipt")]
    db.close()
    check(cids == [cid, cid], f"hub purchases name customers {cids}, expected {cid}")

    s = w.status()
    check(s["outbox_depth"] == 0 and s["dead_letters"] == 0, f"status: {s}")
    st, metrics = w.api("GET", "/metrics")
    for m in ("tillside_outbox_depth 0", "tillside_outbox_dead_letters 0",
              "tillside_outbox_oldest_age_seconds 0", "tillside_outbox_sent_total 2"):
        check(m in metrics, f"/metrics lacks {m!r}")
    out = w.cli("outbox", "list", "--sent").stdout
    check("S001-T01-000001" in out and "sent" in out, f"outbox list --sent: {out}")


# ---- crashes ------------------------------------------------------------------

def crash_cycles(w, cycles=None):
    """Purchases posted by 4 threads while the agent is SIGKILLed at random
    moments and restarted; at the end every 202 (and 200 duplicate) is at
    the hub exactly once with the acknowledged id."""
    cycles = cycles or int(os.environ.get("TS_CRASH_CYCLES", "200"))
    rng = random.Random(int(os.environ.get("TS_CRASH_SEED", "7")))
    w.start_hub()
    conf = w.agent_conf(extra=FAST)
    acked, posted, unknown = {}, set(), []
    lock = threading.Lock()
    counter = [0]
    token = None
    kills = 0
    errors = []  # what a poster thread saw that it should not have

    def poster(stop):
        while not stop.is_set():
            with lock:
                if unknown:  # a POS retries what got no answer
                    receipt = unknown.pop()
                else:
                    counter[0] += 1
                    receipt = f"S001-T01-{counter[0]:07d}"
                posted.add(receipt)
            try:
                c = http.client.HTTPConnection("127.0.0.1", w.api_port, timeout=5)
                c.request("POST", "/api/v1/purchases", json.dumps(purchase(receipt)),
                          {"Authorization": f"Bearer {token}",
                           "Host": f"127.0.0.1:{w.api_port}",
                           "Content-Type": "application/json"})
                r = c.getresponse()
                body = json.loads(r.read() or b"{}")
                c.close()
            except (OSError, http.client.HTTPException, ValueError):
                with lock:
                    unknown.append(receipt)
                time.sleep(0.005)
                continue
            with lock:
                if r.status in (200, 202):
                    prev = acked.setdefault(receipt, body["message_id"])
                    if prev != body["message_id"]:
                        errors.append(f"{receipt} acknowledged as {prev} and "
                                      f"{body['message_id']}")
                else:
                    errors.append(f"{receipt} answered {r.status}: {body}")
                    return

    logf = os.path.join(w.dir, "agent.log")
    for cycle in range(cycles):
        p = Proc("agent", [AGENT_BIN, "run", "-c", conf], logf)
        wait_for(lambda: w._port_open(w.api_port) or (not p.alive() and w._died(p)),
                 interval=0.005, what="agent API port")
        if token is None:
            token = w.token()
        stop = threading.Event()
        threads = [threading.Thread(target=poster, args=(stop,)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.01, 0.25))
        p.p.send_signal(signal.SIGKILL)
        p.p.wait()
        p.logf.close()
        kills += 1
        stop.set()
        for t in threads:
            t.join()
        check(not errors, f"cycle {cycle}: {errors[:3]}")
    w.start_agent(extra=FAST)
    wait_drained(w, timeout=120)
    check(outbox(w)[1] == 0, f"dead letters after the crashes: {outbox(w)}")
    at_hub = check_exactly_once(w, acked, posted)
    print(f"crash: {kills} SIGKILLs, {len(posted)} receipts posted, {len(acked)} acknowledged, "
          f"{len(at_hub)} at the hub, {len(unknown)} never answered")
    # the test bites only if purchases were in flight when the kills came
    check(len(acked) >= cycles // 4, f"only {len(acked)} purchases acknowledged in {cycles} "
          "cycles")


# ---- the link -----------------------------------------------------------------

def post_many(w, n, prefix):
    acked = {}
    for i in range(n):
        r = f"{prefix}-{i:04d}"
        st, body = w.api("POST", "/api/v1/purchases", purchase(r))
        check(st == 202, f"{r} answered {st}: {body}")
        acked[r] = body["message_id"]
    return acked


def hub_down_then_up(w):
    """The link down: purchases still 202, the outbox fills, connection
    attempts stay few (no busy loop); back up, everything drains once."""
    w.start_hub()
    px = w.start_proxy(seed=3)
    px.set_mode("drop")
    w.start_agent(url=w.proxy_url(px), extra=FAST)
    acked = post_many(w, 30, "DOWN")
    check(outbox(w)[0] == 30, f"outbox while down: {outbox(w)}")
    t0 = time.monotonic()
    time.sleep(8)
    attempts = px.attempts_between(t0, time.monotonic())
    # the uploader waits at least backoff_max_ms (1 s, jittered) between
    # tries once backed off, the sync thread likewise: a busy loop would
    # make thousands of attempts in 8 s
    print(f"connection attempts while down: {attempts} in 8 s")
    check(attempts <= 40, f"{attempts} connection attempts in 8 s while the hub was down")
    px.set_mode("pass")
    wait_drained(w)
    check_exactly_once(w, acked)


def retry_after(w):
    """503 and then 429 with Retry-After: 2: the uploader waits at least that
    long between tries, then delivers everything once."""
    w.start_hub()
    front = HubFront(w)
    w.procs.append(_Stopper(front))
    front.mode = "503"
    w.start_agent(url=front.url(), extra=FAST)
    acked = post_many(w, 5, "RA")
    wait_for(lambda: len(front.uploads) >= 3, 30, what="three refused uploads")
    front.mode = "429"
    n = len(front.uploads)
    wait_for(lambda: len(front.uploads) >= n + 2, 30, what="two 429 uploads")
    front.mode = "pass"
    wait_drained(w)
    check_exactly_once(w, acked)
    with front.lock:
        refused = [t for t, s in front.uploads if s in (503, 429)]
    gaps = [b - a for a, b in zip(refused, refused[1:])]
    check(min(gaps) >= 1.9, f"retried sooner than Retry-After: gaps {gaps}")
    print(f"gaps between refused uploads: {[round(g, 2) for g in gaps]}")


def rejected_event(w):
    """One bad event in a batch: the hub's per-event rejection dead-letters
    only it; a 400 for a whole batch is narrowed down to the one event; the
    rest arrive; `tillside outbox retry` sends a dead letter again. The
    front answers 503 while a batch is posted so that it travels as one."""
    w.start_hub()
    front = HubFront(w)
    w.procs.append(_Stopper(front))
    front.retry_after = 1
    front.mode = "503"
    w.start_agent(url=front.url(), extra=FAST)
    acked = post_many_named(w, ["OK-1", "BAD-1", "OK-2"])
    front.mode = "spoil"
    wait_for(lambda: outbox(w) == (0, 1), 30, what="one dead letter, nothing pending")
    at_hub = hub_purchases(w)
    check(sorted(at_hub) == ["OK-1", "OK-2"], f"hub holds {sorted(at_hub)}")
    out = w.cli("outbox", "list", "--dead").stdout
    check("BAD-1" in out and "quantity" in out, f"dead letter without reason: {out}")

    front.mode = "503"
    acked.update(post_many_named(w, ["OK-4", "BAD-2", "OK-5"]))
    front.mode = "400bad"
    wait_for(lambda: outbox(w) == (0, 2), 30, what="two dead letters, nothing pending")
    at_hub = hub_purchases(w)
    check(sorted(at_hub) == ["OK-1", "OK-2", "OK-4", "OK-5"], f"hub holds {sorted(at_hub)}")
    out = w.cli("outbox", "list", "--dead").stdout
    check("BAD-2" in out and "HTTP 400" in out, f"dead letters: {out}")
    with front.lock:
        check(sum(1 for _, s in front.uploads if s == 400) == 2,
              f"expected the batch and then BAD-2 alone refused: {front.uploads}")

    front.mode = "pass"  # the hub takes BAD-2 as it is
    r = w.cli("outbox", "retry", acked["BAD-2"])
    check(r.returncode == 0 and "1 dead letter" in r.stdout, f"retry: {r.stdout} {r.stderr}")
    wait_for(lambda: outbox(w) == (0, 1), 30, what="the retried purchase to go")
    check("BAD-2" in hub_purchases(w), "retried dead letter not at the hub")
    check_exactly_once(w, {k: v for k, v in acked.items() if k != "BAD-1"})


def post_many_named(w, receipts):
    acked = {}
    for r in receipts:
        st, body = w.api("POST", "/api/v1/purchases", purchase(r))
        check(st == 202, f"{r} answered {st}: {body}")
        acked[r] = body["message_id"]
    return acked


class _Stopper:
    name = "front"

    def __init__(self, f):
        self.f = f

    def alive(self):
        return True

    def stop(self, *a, **kw):
        self.f.stop()
        return 0

    def log(self):
        return json.dumps(self.f.uploads[-20:]) + "\n"


def stall_and_reset(w):
    """A hub that stops answering mid-upload, then connections reset in the
    middle of requests: the uploader times out, backs off, and everything
    arrives once when the link heals."""
    w.start_hub()
    px = w.start_proxy(seed=11)
    w.start_agent(url=w.proxy_url(px), extra=FAST)
    px.set_mode("stall")
    acked = post_many(w, 20, "STALL")
    time.sleep(5)  # past the agent's 3 s request timeout, more than once
    check(outbox(w)[0] > 0, "the outbox drained through a stalled link")
    px.set_mode("reset")
    acked.update(post_many(w, 20, "RESET"))
    time.sleep(4)
    px.set_mode("pass")
    wait_drained(w)
    check_exactly_once(w, acked)
    check(outbox(w)[1] == 0, f"dead letters: {outbox(w)}")


# ---- disk full ----------------------------------------------------------------

def disk_full(w):
    """The agent's file size limit (RLIMIT_FSIZE, set on the running agent
    with prlimit) stands in for a full disk: purchases are refused with 507
    and a clear error, nothing acknowledged is lost, and once space returns
    purchases are taken and everything reaches the hub."""
    w.start_hub()
    agent = w.start_agent(extra=FAST)
    acked = post_many(w, 5, "BEFORE")
    wait_drained(w)
    state = os.path.join(w.dir, "agent")
    biggest = max(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state))
    limit = biggest + 1536 * 1024
    resource.prlimit(agent.p.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    big = [{"sku": f"SKU-{i}", "name": "x" * 200, "quantity": 1, "price": 1.0}
           for i in range(100)]
    full = None
    for i in range(2000):
        r = f"FILL-{i:05d}"
        st, body = w.api("POST", "/api/v1/purchases", purchase(r, products=big))
        if st == 507:
            full = body
            break
        check(st == 202, f"{r} answered {st}: {body}")
        acked[r] = body["message_id"]
    check(full is not None, "never refused with 507")
    check("disk full" in full["error"], f"507 error text: {full}")
    st, body = w.api("POST", "/api/v1/purchases", purchase("SMALL-WHILE-FULL"))
    check(st in (202, 507), f"while full answered {st}: {body}")
    if st == 202:
        acked["SMALL-WHILE-FULL"] = body["message_id"]
    check(agent.alive(), "the agent died on a full disk")
    resource.prlimit(agent.p.pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    acked.update(post_many(w, 3, "AFTER"))
    wait_drained(w, timeout=120)
    check_exactly_once(w, acked)
    st, metrics = w.api("GET", "/metrics")
    check("tillside_purchases_refused_disk_full_total 0" not in metrics,
          "507s not counted in /metrics")


if __name__ == "__main__":
    main({"api_contract": api_contract, "crash_cycles": crash_cycles,
          "hub_down_then_up": hub_down_then_up, "retry_after": retry_after,
          "rejected_event": rejected_event, "stall_and_reset": stall_and_reset,
          "disk_full": disk_full})
