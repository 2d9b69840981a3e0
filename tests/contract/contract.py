"""Shared plumbing of the vendor contract servers (tests/contract/*_server.py).

A contract server stands in for a vendor's cloud in the tests: a loopback
HTTPS server (certificate from the test CA that tslib's World makes, so the
hub verifies it like the real thing) that enforces what the vendor's
published API reference says -- auth, payload fields and types, size and
count limits, the documented rate (429 with the vendor's own headers past
it), per-item errors the vendor's way. A server that accepts anything is not
a contract test: each vendor module cites the reference beside each rule.

This module holds what every vendor shares:
  ContractServer  the TLS server, request log, routing, outage switches
  Refuse          raised by a rule: the vendor's error answer
  Windows         fixed-window rate limits (several at once: burst + steady)
  need/need_type  rule helpers that raise Refuse with a message
Standard library only.
"""
import http.server
import json
import os
import ssl
import threading
import time


class Refuse(Exception):
    """A rule refused the request: answer status with body (an object or
    text) and headers."""

    def __init__(self, status, body, headers=None):
        super().__init__(f"{status} {body}")
        self.status, self.body, self.headers = status, body, dict(headers or {})


def need(cond, status, body, headers=None):
    """A rule: refuse with status and body unless cond holds."""
    if not cond:
        raise Refuse(status, body, headers)


def type_name(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def check_type(obj, key, want, required=True):
    """The message why obj[key] is not of JSON type want ("string",
    "number", "integer", "boolean", "object", "array", or a tuple of them),
    or None when it is (or is absent and not required)."""
    if not isinstance(obj, dict):
        return f"expected an object around '{key}'"
    if key not in obj:
        return f"'{key}' is required" if required else None
    v = obj[key]
    wants = want if isinstance(want, tuple) else (want,)
    got = type_name(v)
    for w in wants:
        if w == got or (w == "integer" and got == "number" and float(v).is_integer()):
            return None
    return f"'{key}' must be {' or '.join(wants)}, not {got}"


class Windows:
    """Fixed-window rate limits, e.g. Windows((350, 1), (3500, 60)): each
    (limit, seconds) window counts units; take() says whether they fit in
    every window and, when not, how long until the fullest one resets."""

    def __init__(self, *windows):
        self.windows = [[limit, secs, 0.0, 0] for limit, secs in windows]
        self.lock = threading.Lock()

    def take(self, units=1, now=None):
        """(ok, retry_after_s, limit, remaining, reset_s) of the tightest window."""
        now = time.monotonic() if now is None else now
        with self.lock:
            worst = None
            for w in self.windows:
                limit, secs, start, used = w
                if now - start >= secs:
                    w[2], w[3] = now - ((now - start) % secs) if start else now, 0
                reset = w[1] - (now - w[2])
                left = limit - w[3]
                if worst is None or left - units < worst[1] - units:
                    worst = (limit, left, reset)
            ok = all(w[3] + units <= w[0] for w in self.windows)
            if ok:
                for w in self.windows:
                    w[3] += units
            limit, left, reset = worst
            return ok, (0 if ok else max(reset, 0.001)), limit, max(left - (units if ok else 0), 0), reset


class Req:
    """One request as the server saw it."""

    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.at = time.monotonic()
        self.status = None  # the answer's status, set once answered
        self.handled_s = 0.0
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name)


class ContractServer:
    """A loopback HTTPS server with routes {(method, path): fn(server, req)}.

    fn returns (status, body, headers) or raises Refuse. Before routing:
    `down` (True: refuse connections' requests by closing them; or an int
    status such as 503 to answer with it) models an outage. Every request is
    kept in `requests` (with its answer's status) for the test's counts.
    certs: the World's pki directory (hub.pem/hub.key for localhost, signed by
    ca.pem, which the hub's sink gets as ca_file).
    """

    def __init__(self, certs, routes, port=0, name="vendor"):
        self.routes, self.name = routes, name
        self.requests = []
        self.lock = threading.Lock()
        self.down = False
        self.delay_s = 0.0
        self.active = self.max_active = 0  # requests being answered at once, and the most seen
        srv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                # A request counts as active from its arrival until its answer
                # starts going out (the client is waiting on us all that time).
                self._counted = True
                with srv.lock:
                    srv.active += 1
                    srv.max_active = max(srv.max_active, srv.active)
                try:
                    self._serve1()
                finally:
                    self._uncount()

            def _uncount(self):
                if self._counted:
                    self._counted = False
                    with srv.lock:
                        srv.active -= 1

            def _serve1(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Req(self.command, self.path, self.headers, body)
                with srv.lock:
                    srv.requests.append(req)
                if srv.down is True:
                    req.status = 0
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                if srv.delay_s:
                    time.sleep(srv.delay_s)  # a slow vendor, not synchronisation
                if srv.down:
                    return self._answer(req, int(srv.down), {"error": "unavailable"}, {})
                path = self.path.split("?", 1)[0]
                fn = srv.routes.get((self.command, path))
                t0 = time.monotonic()
                try:
                    if fn is None:
                        raise Refuse(404, {"error": f"no route {self.command} {path}"})
                    status, obj, hdrs = fn(srv, req)
                except Refuse as r:
                    status, obj, hdrs = r.status, r.body, r.headers
                req.handled_s = time.monotonic() - t0  # the server's own time (benchmarks)
                self._answer(req, status, obj, hdrs)

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _serve

            def _answer(self, req, status, obj, headers):
                self._uncount()
                req.status = status
                data = obj if isinstance(obj, bytes) else (
                    obj.encode() if isinstance(obj, str) else json.dumps(obj).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certs, "hub.pem"), os.path.join(certs, "hub.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"https://localhost:{self.port}"
        self.ca_file = os.path.join(certs, "ca.pem")
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, pred=lambda r: True):
        with self.lock:
            return sum(1 for r in self.requests if pred(r))

    def statuses(self):
        with self.lock:
            return [r.status for r in self.requests]


def json_body(req, max_bytes=None, status=400, too_large=413):
    """The request's JSON body, refusing a body over max_bytes or not JSON."""
    if max_bytes is not None:
        need(len(req.body) <= max_bytes, too_large,
             {"error": f"body of {len(req.body)} bytes exceeds {max_bytes}"})
    need(req.json is not None, status, {"error": "body is not JSON"})
    return req.json


class Ledger:
    """What a vendor stored, by its dedup key: items in arrival order, and
    how many arrived again under a key already stored (a vendor with a dedup
    key drops those; for one without, they would be duplicates)."""

    def __init__(self):
        self.items, self.keys, self.duplicates = [], {}, 0
        self.lock = threading.Lock()

    def add(self, key, item):
        with self.lock:
            if key is not None and key in self.keys:
                self.duplicates += 1
                return False
            if key is not None:
                self.keys[key] = item
            self.items.append(item)
            return True

    def count(self):
        with self.lock:
            return len(self.items)


class Storm:
    """Answers 429 to every request until `until` (monotonic): a vendor's
    rate-limit storm, on top of its documented windows."""

    def __init__(self):
        self.until = 0.0

    def start(self, seconds):
        self.until = time.monotonic() + seconds

    def on(self):
        return time.monotonic() < self.until
