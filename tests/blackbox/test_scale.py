"""The hub at chain scale, as its operators and its CDP see it: 1,000
long-polls held by one hub while a CDP batch, a purchase and a new terminal's
first page are answered; a class over its capacity answered 503 with
Retry-After over TLS, and an agent that backs off and catches up; hostile
clients (silent connections kept re-opened, headers one byte at a time, on
the main and the enrolment listener) that cannot lock the tills out; the
CDP's own listener without client certificates, gzip'd batches, and a gzip
bomb refused. Real hub and agent binaries, real TLS."""
import base64
import gzip
import os
import resource
import select
import socket
import ssl
import threading
import time

import tslib
from tslib import check, wait_for, customer_batch, hub_metric, WRITE_KEY

FEED = "/v1/feed"


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def auth():
    return "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def purchase(mid):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"type": "track", "event": "Order Completed", "messageId": mid,
            "anonymousId": "S001:T01", "originalTimestamp": now, "sentAt": now,
            "properties": {"order_id": mid, "total": 10.0, "revenue": 10.0, "tax": 0,
                           "discount": 0, "currency": "EUR",
                           "products": [{"product_id": "SKU-1", "sku": "SKU-1", "name": "X",
                                         "price": 10.0, "quantity": 1}]},
            "context": {"tillside": {"store": "S001", "terminal": "T01", "receipt": mid,
                                     "source": "api"}}}


def cursor_now(w):
    st, page = w.hub_request("GET", FEED + "?limit=1000", cert="t01")
    check(st == 200, f"feed answered {st}: {page}")
    while page["more"]:
        st, page = w.hub_request("GET", f"{FEED}?limit=1000&since={page['cursor']}", cert="t01")
        check(st == 200, f"feed answered {st}")
    return page["cursor"]


_ctx = {}


def tls_sock(w, port, cert="t01", src=None, resume=False):
    """A TLS connection to the hub; resume=True resumes one TLS 1.2 session
    (as terminals do), so a thousand of them cost the hub little CPU."""
    key = (w.dir, cert, resume)
    if key not in _ctx:
        ctx = w.hub_ssl(cert)
        if resume:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        _ctx[key] = [ctx, None]
    ctx, sess = _ctx[key]
    raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                   source_address=(src, 0) if src else None)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=sess if resume else None)
    if resume:
        _ctx[key][1] = s.session
    return s


def read_response(s, timeout):
    """(status, headers dict, body bytes) of one response, or None when the
    connection closed first."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return status, hdrs, body


def readable(socks):
    """The sockets with something to read now (poll: fds may pass 1024)."""
    p = select.poll()
    byfd = {s.fileno(): s for s in socks}
    for fd in byfd:
        p.register(fd, select.POLLIN)
    return [byfd[fd] for fd, _ in p.poll(0)]


def long_poll(w, cursor, wait_s=25, src=None):
    s = tls_sock(w, w.hub_port, src=src, resume=True)
    s.sendall(f"GET {FEED}?since={cursor}&wait={wait_s} HTTP/1.1\r\nHost: localhost\r\n"
              "\r\n".encode())
    return s


def answered_quickly(w, what, fn):
    """A terminal-side request with the client's own deadline (5 s): it must
    be answered, whatever else the hub holds."""
    st, ans = fn()
    check(st == 200, f"{what} answered {st}: {ans}")


def terminal_works(w, n):
    answered_quickly(w, "a terminal's feed poll",
                     lambda: w.hub_request("GET", FEED + "?limit=1", cert="t01"))
    answered_quickly(w, "a purchase upload",
                     lambda: w.hub_request("POST", "/v1/purchases",
                                           {"batch": [purchase(f"m-{n}-{time.time_ns()}")]},
                                           cert="t01"))


# ---- 1,000 long-polls --------------------------------------------------------

def thousand_long_polls(w):
    raise_nofile()
    w.pki("issue", "--dir", w.certs, "--cn", "T02", "--ou", "S001", "--o", "acme",
          "--out", f"{w.certs}/t02")
    w.start_hub()
    st, _ = w.send_batch(customer_batch(user="u-first", loyalty="2000000000022"))
    check(st == 200, f"first batch answered {st}")
    cur = cursor_now(w)
    polls = [long_poll(w, cur) for _ in range(1000)]
    # All held: none is answered while nothing changes.
    time.sleep(0.5)  # not synchronisation: a grace for a wrong early answer to show
    r = readable(polls)
    check(not r, f"{len(r)} long-polls answered with nothing new")
    # A new terminal's first feed page, a purchase and a CDP batch are answered.
    st, page = w.hub_request("GET", FEED + "?limit=1000", cert="t02")
    check(st == 200 and page["items"], f"new terminal's first page answered {st}: {page}")
    st, ans = w.hub_request("POST", "/v1/purchases", {"batch": [purchase("m-1")]}, cert="t01")
    check(st == 200 and ans["accepted"] == ["m-1"], f"purchase answered {st}: {ans}")
    r = readable(polls)
    check(not r, f"{len(r)} long-polls answered before the CDP's change")
    st, _ = w.send_batch(customer_batch(user="u-second", loyalty="2000000000039"))
    check(st == 200, f"CDP batch answered {st}")
    # ... and that change reaches every held long-poll.
    deadline = time.monotonic() + 60
    got = 0
    for s in polls:
        resp = read_response(s, max(0.1, deadline - time.monotonic()))
        check(resp and resp[0] == 200 and b'"op":"upsert"' in resp[2],
              f"long-poll {got} answered {resp and resp[0]}: {resp and resp[2][:200]}")
        got += 1
        s.close()
    check(got == 1000, f"{got} long-polls answered")


def other_process_wakes_parked(w):
    """A change committed by another process (`tillside-hub import`) wakes a
    parked long-poll well before its 25 s wait is over: on SQLite nothing
    signals it but the hub's data_version watch."""
    import json
    w.start_hub()
    cur = cursor_now(w)
    s = long_poll(w, cur, wait_s=25)
    t0 = time.monotonic()
    path = os.path.join(w.dir, "events.jsonl")
    with open(path, "w") as f:
        for ev in customer_batch(user="u-imported", loyalty="2000000000053"):
            f.write(json.dumps(ev) + "\n")
    tslib.run([tslib.HUB_BIN, "import", "-c", os.path.join(w.dir, "hub.conf"), path])
    resp = read_response(s, 30)
    check(resp and resp[0] == 200 and b'"op":"upsert"' in resp[2],
          f"the parked long-poll answered {resp and resp[0]}: {resp and resp[2][:200]}")
    # the wait was 25 s: an answer with the item before it means it was woken
    check(time.monotonic() - t0 < 20, "the long-poll was not woken by the import")
    s.close()


def store_poll(w, cert, cursor, wait_s=25):
    s = tls_sock(w, w.hub_port, cert=cert, resume=True)
    s.sendall(f"GET {FEED}?since={cursor}&wait={wait_s} HTTP/1.1\r\nHost: localhost\r\n"
              "\r\n".encode())
    return s


def wake_only_changed_store(w):
    """A change to store S001's feed answers S001's parked long-poll and does
    not hand S002's over at all (it stays parked, and is answered by S002's
    own change later): one store's change does not make every terminal of
    the chain run its feed query again."""
    w.pki("issue", "--dir", w.certs, "--cn", "T09", "--ou", "S002", "--o", "acme",
          "--out", f"{w.certs}/t09")
    w.start_hub()
    for cert in ("t01", "t09"):
        st, _ = w.hub_request("GET", FEED + "?limit=1000", cert=cert)
        check(st == 200, f"{cert}'s first page answered {st}")
    cur_a, cur_b = cursor_now(w), None
    st, page = w.hub_request("GET", FEED + "?limit=1000", cert="t09")
    cur_b = page["cursor"]
    a = store_poll(w, "t01", cur_a)
    b = store_poll(w, "t09", cur_b)
    wait_for(lambda: hub_metric(w, "tillside_hub_httpd_parked", listener="main") == 2,
             what="both long-polls parked")
    woken0 = hub_metric(w, "tillside_hub_httpd_woken_total", listener="main")
    st, _ = w.send_batch(customer_batch(user="u-a", loyalty="2000000000022", store="S001"))
    check(st == 200, f"S001's batch answered {st}")
    resp = read_response(a, 20)
    check(resp and resp[0] == 200 and b'"op":"upsert"' in resp[2],
          f"S001's long-poll answered {resp and resp[0]}: {resp and resp[2][:200]}")
    check(not readable([b]), "S002's long-poll was answered by S001's change")
    woken = hub_metric(w, "tillside_hub_httpd_woken_total", listener="main") - woken0
    check(woken == 1, f"{woken:g} parked long-polls handed over for one store's change (want 1)")
    check(hub_metric(w, "tillside_hub_httpd_parked", listener="main") == 1,
          "S002's long-poll is no longer parked")
    st, _ = w.send_batch(customer_batch(user="u-b", loyalty="2000000000039", store="S002"))
    check(st == 200, f"S002's batch answered {st}")
    resp = read_response(b, 20)
    check(resp and resp[0] == 200 and b'"op":"upsert"' in resp[2],
          f"S002's long-poll answered {resp and resp[0]}: {resp and resp[2][:200]}")
    a.close()
    b.close()


def parked_poll_answered_at_stop(w):
    """SIGTERM while long-polls are parked: each gets the answer it would
    have got at the end of its wait (200, nothing new, its cursor,
    Connection: close), not a bare close; the agent then only fails to
    reach the stopped hub, and catches up once it is back."""
    import re
    w.start_hub()
    st, _ = w.send_batch(customer_batch(user="u-first", loyalty="2000000000022"))
    check(st == 200, f"first batch answered {st}")
    cur = cursor_now(w)
    raw = long_poll(w, cur)
    w.start_agent()  # the default settings: it long-polls
    w.wait_cards(1)
    wait_for(lambda: hub_metric(w, "tillside_hub_httpd_parked", listener="main") == 2,
             what="the agent's and our long-poll parked")
    before = len(w.agent.log())
    w.hub.stop()
    resp = read_response(raw, 5)
    check(resp is not None, "the parked long-poll was closed without an answer")
    st, hdrs, body = resp
    check(st == 200 and hdrs.get("connection") == "close" and b'"items":[]' in body,
          f"the parked long-poll answered {st} {hdrs}: {body[:200]}")
    check(f'"cursor":"{cur}"'.encode() in body, f"the answer moved the cursor: {body[:200]}")
    check("answered 2 parked request(s) before stopping" in w.hub.log(),
          "the hub did not say it answered both parked polls")
    raw.close()
    w.start_hub()
    st, _ = w.send_batch(customer_batch(user="u-second", loyalty="2000000000039"))
    check(st == 200, f"batch after the restart answered {st}")
    w.wait_cards(2, timeout=40)
    # Between the two the agent found no hub to connect to, and nothing else:
    # no answer it could not read, no connection cut under its poll.
    errors = [ln for ln in w.agent.log()[before:].splitlines() if re.search(r"\bERROR\b", ln)]
    odd = [ln for ln in errors
           if not re.search(r"feed request failed: .*(connect|refused)", ln, re.I)]
    check(not odd, f"the agent logged errors beyond the hub being down: {odd}")


# ---- over capacity -----------------------------------------------------------

def refusals_logged(w, what):
    """Sums 'N <what> over capacity' from the hub's bounded refusal lines."""
    import re
    total = 0
    for m in re.finditer(r"(\d+) " + what + " over capacity", w.hub.log()):
        total += int(m.group(1))
    return total


def over_capacity_503(w):
    w.start_hub(extra="[hub]\nmax_feed_polls = 2\nretry_after_s = 1\n")
    cur = cursor_now(w)
    held = [long_poll(w, cur) for _ in range(2)]

    def class_full():
        """A feed request that parks nothing (wait=0): 503 once both polls
        are held, 200 while the hub has not taken them in yet."""
        p = tls_sock(w, w.hub_port)
        p.sendall(f"GET {FEED}?since={cur}&wait=0 HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        r = read_response(p, 10)
        p.close()
        return r is not None and r[0] == 503

    wait_for(class_full, 20, what="both long-polls to be held")
    # The third gets a real answer over TLS, never a bare close.
    s = tls_sock(w, w.hub_port)
    s.sendall(f"GET {FEED}?since={cur}&wait=30 HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    resp = read_response(s, 10)
    check(resp is not None, "over capacity: the connection closed without an answer")
    check(resp[0] == 503 and resp[1].get("retry-after") == "1",
          f"over capacity answered {resp[0]} {resp[1]}")
    # The same connection stays usable: a lookup is no feed request.
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n")
    resp = read_response(s, 10)
    check(resp and resp[0] == 200, f"/livez after a 503 answered {resp and resp[0]}")
    s.close()
    # An agent meets the full class: it backs off and, once there is room,
    # catches up.
    w.start_agent(extra="")
    wait_for(lambda: "503" in w.agent.log(), 20, what="the agent to meet a 503")
    time.sleep(4)  # the hold the agent must sit out, not synchronisation
    for h in held:
        h.close()
    st, _ = w.send_batch(customer_batch())
    check(st == 200, f"CDP batch answered {st}")
    w.wait_cards(1, timeout=30)
    counted = hub_metric(w, "tillside_hub_httpd_refused_total", listener="main",
                         reason="class", **{"class": "feed"})
    w.hub.stop()
    refused = refusals_logged(w, "feed requests")
    check(counted == refused, f"/metrics counted {counted} feed refusals, the log {refused}")
    # Without backoff an agent would be refused hundreds of times in those
    # 4 s; with Retry-After 1 and jitter, a handful.
    check(1 <= refused <= 12, f"the agent was refused {refused} times")


# ---- hostile clients ---------------------------------------------------------

class Attack(threading.Thread):
    """Keeps n connections from src open: silent, or trickling a request
    head one byte every `every` seconds."""

    def __init__(self, w, port, n, src="127.0.0.2", trickle=None, every=1.0, cert=None):
        super().__init__(daemon=True)
        self.w, self.port, self.n, self.src = w, port, n, src
        self.trickle, self.every, self.cert = trickle, every, cert
        self.stop = threading.Event()
        self.opened = self.cut = self.timeouts_408 = 0
        self.max_sent = 0

    def _open(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                       source_address=(self.src, 0))
        if self.trickle is None:
            return raw
        ctx = ssl.create_default_context(cafile=f"{self.w.certs}/ca.pem")
        if self.cert:
            ctx.load_cert_chain(f"{self.w.certs}/{self.cert}.pem",
                                f"{self.w.certs}/{self.cert}.key")
        return ctx.wrap_socket(raw, server_hostname="localhost")

    def run(self):
        socks = {}
        while not self.stop.is_set():
            while len(socks) < self.n and not self.stop.is_set():
                try:
                    socks[self._open()] = 0
                    self.opened += 1
                except OSError:
                    break
            for s in list(socks):
                s.setblocking(False)
                try:
                    d = s.recv(4096)
                    if d and b" 408 " in d[:20]:
                        self.timeouts_408 += 1
                    gone = True
                except (BlockingIOError, ssl.SSLWantReadError):
                    gone = False
                except OSError:
                    gone = True
                if not gone and self.trickle is not None:
                    i = socks[s]
                    try:
                        s.setblocking(True)
                        s.settimeout(2)
                        s.sendall(self.trickle[i % len(self.trickle):][:1])
                        socks[s] = i + 1
                        self.max_sent = max(self.max_sent, i + 1)
                    except OSError:
                        gone = True
                if gone:
                    self.cut += 1
                    s.close()
                    del socks[s]
            self.stop.wait(self.every if self.trickle is not None else 0.2)
        for s in socks:
            s.close()


def silent_connections(w):
    raise_nofile()
    w.start_hub(extra="[hub]\nhandshake_timeout_s = 2\n")
    a = Attack(w, w.hub_port, 260)
    a.start()
    try:
        wait_for(lambda: a.opened >= 260, 20, what="260 silent connections")
        deadline = time.monotonic() + 8
        n = 0
        while time.monotonic() < deadline:
            terminal_works(w, n)
            n += 1
        wait_for(lambda: a.cut >= 260, 20, what="the hub to cut silent connections")
    finally:
        a.stop.set()
        a.join()
    m = {r: hub_metric(w, "tillside_hub_httpd_refused_total", listener="main", reason=r)
         for r in ("per_source", "handshake_deadline")}
    check(m["per_source"] >= 1 and m["handshake_deadline"] >= 1,
          f"/metrics did not count the silent connections' refusals: {m}")
    w.hub.stop()
    log = w.hub.log()
    lines = [ln for ln in log.splitlines() if "refused" in ln and "connection(s)" in ln]
    check(len(lines) <= 4, f"{len(lines)} refusal lines in ~10 s: {lines[:3]}")
    check("over 128 per source address" in log, "no per-source refusal was counted")


def slow_headers(w):
    raise_nofile()
    c = w.certs
    w.enroll_port = tslib.free_port()
    w.start_hub(extra=f"[hub]\nrequest_head_timeout_s = 3\nenroll_listen = 127.0.0.1:"
                      f"{w.enroll_port}\nca_cert = {c}/ca.pem\nca_key = {c}/ca.key\n"
                      "max_unauthenticated_per_address = 1000\n")
    head = b"GET /v1/feed?limit=1 HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 64
    main = Attack(w, w.hub_port, 255, trickle=head, every=1.0, cert="t01")
    enrol = Attack(w, w.enroll_port, 32, trickle=head, every=1.0)
    main.start()
    enrol.start()
    try:
        # 287 TLS handshakes made one by one in Python: ~5 s here, 30 s was
        # not enough in a fresh root on a loaded machine.
        wait_for(lambda: main.opened >= 255 and enrol.opened >= 32, 90,
                 what="the slow connections")
        deadline = time.monotonic() + 6
        n = 0
        while time.monotonic() < deadline:
            terminal_works(w, n)
            n += 1
        # The enrolment listener still answers a new terminal (a wrong token).
        s = tls_sock(w, w.enroll_port, cert=None)
        body = b'{"token":"nope","csr":"x"}'
        s.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        resp = read_response(s, 5)
        check(resp and 400 <= resp[0] < 500, f"enrolment answered {resp and resp[0]}")
        s.close()
        # The head deadline is overall, not per read: the trickling heads
        # (90+ bytes at one a second) are cut with 408 long before they end.
        wait_for(lambda: main.cut >= 255 and enrol.cut >= 32, 30,
                 what="the hub to cut the slow heads")
        check(main.max_sent < len(head) and enrol.max_sent < len(head),
              f"a slow head got to byte {max(main.max_sent, enrol.max_sent)} of {len(head)}")
        check(main.timeouts_408 > 0, "no slow head was answered 408")
    finally:
        main.stop.set()
        enrol.stop.set()
        main.join()
        enrol.join()


# ---- the CDP listener --------------------------------------------------------

def cdp_request(w, port, method, path, body=b"", headers=None):
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")  # no client certificate
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    hdrs = {"Host": "localhost", "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    s.sendall(head.encode() + b"\r\n" + body)
    resp = read_response(s, 10)
    s.close()
    check(resp is not None, f"{method} {path}: closed without an answer")
    return resp[0], resp[2]


def cdp_listener(w):
    port = tslib.free_port()
    w.start_hub(extra=f"[hub]\ncdp_listen = 127.0.0.1:{port}\n")
    wait_for(lambda: w._port_open(port), what="the CDP listener")
    import json
    js = {"Authorization": auth(), "Content-Type": "application/json"}
    body = json.dumps({"batch": customer_batch()}).encode()
    st, ans = cdp_request(w, port, "POST", "/v1/batch", body, js)
    check(st == 200, f"a batch without a client certificate answered {st}: {ans}")
    st, _ = cdp_request(w, port, "POST", "/v1/batch", body, {"Content-Type": "application/json"})
    check(st == 401, f"a batch without the write key answered {st}")
    st, _ = cdp_request(w, port, "GET", FEED)
    check(st == 404, f"the feed on the CDP listener answered {st}")
    st, _ = cdp_request(w, port, "POST", "/v1/purchases", b"{}", js)
    check(st == 404, f"purchases on the CDP listener answered {st}")
    # gzip'd, as RudderStack's Node SDK sends by default
    ev = customer_batch(user="u-zip", loyalty="2000000000046", name="Zip Zed")
    z = gzip.compress(json.dumps({"batch": ev}).encode())
    st, ans = cdp_request(w, port, "POST", "/v1/batch", z, {**js, "Content-Encoding": "gzip"})
    check(st == 200, f"a gzip'd batch answered {st}: {ans}")
    before = w.hub_stats()
    check(before["customers"] == 2, f"customers after two batches: {before}")
    # A bomb: 64 MB of one event's padding inflating from a small body.
    pad = b'{"batch":[{"type":"identify","userId":"u-bomb","traits":{"x":"' + b"a" * (64 << 20)
    bomb = gzip.compress(pad + b'"}}]}', 9)
    check(len(bomb) < 500 * 1024, f"the bomb is {len(bomb)} bytes")
    st, ans = cdp_request(w, port, "POST", "/v1/batch", bomb, {**js, "Content-Encoding": "gzip"})
    check(st == 413, f"a gzip bomb answered {st}: {ans[:200]}")
    st, _ = cdp_request(w, port, "POST", "/v1/batch", b"\x1f\x8b garbage",
                        {**js, "Content-Encoding": "gzip"})
    check(st == 400, f"a broken gzip body answered {st}")
    after = w.hub_stats()
    check(after["customers"] == before["customers"], f"the bomb stored something: {after}")
    # gzip works on the main listener's POSTs too.
    st, _ = w.hub_request("POST", "/v1/purchases",
                          gzip.compress(json.dumps({"batch": [purchase("m-z")]}).encode()),
                          headers={"Content-Encoding": "gzip",
                                   "Content-Type": "application/json"}, cert="t01")
    check(st == 200, f"a gzip'd purchase upload answered {st}")


if __name__ == "__main__":
    tslib.main({f.__name__: f for f in (thousand_long_polls, other_process_wakes_parked,
                                        wake_only_changed_store, parked_poll_answered_at_stop,
                                        over_capacity_503,
                                        silent_connections, slow_headers, cdp_listener)})
