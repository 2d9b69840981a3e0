"""Black-box test harness: starts the real tillside-hub and tillside binaries
with written configs and real certificates, and talks to them over real
sockets (TLS to the hub, loopback HTTP to the agent). Standard library only.

Each test script builds a World (temp dir, certificates, ports), starts what it
needs, asserts, and stops everything even when an assertion fails.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("TS_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/dev"))
HUB_BIN = os.path.join(BIN, "hub", "tillside-hub")
AGENT_BIN = os.path.join(BIN, "agent", "tillside")
# The agents' live lookup budget in tests ([hub] lookup_timeout_ms): the
# default 300 ms is what a till waits, but on a CI machine running the ASan
# build two tests at a time a lookup that succeeds in 5 ms idle has taken
# more (bb_consent_withdrawn_everywhere saw "timed out after 300 ms" at load
# 8). Tests that measure the budget pass lookup_ms=300 (test_faults.py).
LOOKUP_MS = 2000
TENANT_KEY = "6b" * 32
WRITE_KEY = "test-write-key"
# Under tests/tools/with_pg.sh the hub stores into that PostgreSQL server.
PG_URI = os.environ.get("TS_TEST_PG", "")


def pg_reset():
    """Empties the PostgreSQL database of TS_TEST_PG (each World starts from nothing)."""
    run(["psql", "-q", "-v", "ON_ERROR_STOP=1", PG_URI, "-c",
         "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public"])


def pg_query(sql):
    """Rows of one query on TS_TEST_PG, as lists of strings."""
    p = run(["psql", "-qAt", "-F", "\t", "-v", "ON_ERROR_STOP=1", PG_URI, "-c", sql])
    return [line.split("\t") for line in p.stdout.splitlines() if line]


class Fail(AssertionError):
    pass


class Died(Fail):
    """A daemon under test exited: wait_for stops at once instead of
    retrying until its timeout."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def wait_for(pred, timeout=20.0, interval=0.1, what="condition"):
    """Polls pred() until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Died:
            raise
        except Exception as e:  # noqa: BLE001 - the predicate may race startup
            last_exc = e
        time.sleep(interval)
    raise Fail(f"timed out after {timeout}s waiting for {what}" +
               (f" (last error: {last_exc!r})" if last_exc else ""))


PORT_DIR = os.path.join(tempfile.gettempdir(), "tillside-test-ports")
_port_locks = []


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A loopback TCP port that stays free until a daemon binds it.

    Binding port 0 and closing races under ctest -j: the kernel can hand the
    same port to another test's bind(0) or to any outgoing connection before
    our daemon binds it. So: a port below the kernel's ephemeral range (no
    connect() or bind(0) is ever given one there), reserved against every
    other test process by an exclusive lock on PORT_DIR/<port>, held until
    this process exits."""
    import fcntl
    import random
    lo, _ = _ephemeral_range()
    first = max(1024, lo - 12000)
    os.makedirs(PORT_DIR, mode=0o1777, exist_ok=True)
    start = random.randrange(first, lo)
    for i in range(lo - first):
        port = first + (start - first + i) % (lo - first)
        f = open(os.path.join(PORT_DIR, str(port)), "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:  # something outside the tests has it
            f.close()
            continue
        _port_locks.append(f)
        return port
    raise Fail(f"no free port in {first}-{lo - 1}")


def run(args, check_rc=True, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)
    if check_rc and p.returncode != 0:
        raise Fail(f"{args} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


class Proc:
    """A started binary with its log file; stop() sends SIGTERM and waits."""

    def __init__(self, name, args, logpath):
        self.name = name
        self.args = args
        self.logpath = logpath
        self.logf = open(logpath, "ab")
        self.p = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.logpath, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise Fail(f"{self.name} did not stop within {timeout}s after {sig}")
        self.logf.close()
        return self.p.returncode


class _ProxyProc:
    """Lets World.close() stop a FaultProxy like a Proc; its "log" is the
    proxy's counters."""

    name = "faultproxy"

    def __init__(self, px):
        self.px = px

    def alive(self):
        return True

    def stop(self, *a, **kw):
        self.px.stop()
        return 0

    def log(self):
        return json.dumps(self.px.snapshot()) + "\n"


class World:
    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"ts-{name}-")
        self.procs = []
        self.certs = os.path.join(self.dir, "pki")
        self.hub_port = free_port()
        self.api_port = free_port()
        self.db = f"{self.dir}/hub.db"
        if PG_URI:
            pg_reset()
            self.db = PG_URI
        self._make_certs()

    # ---- certificates -------------------------------------------------
    def pki(self, *args):
        return run([HUB_BIN, "pki", *args])

    def _make_certs(self):
        c = self.certs
        self.pki("init", "--dir", c, "--cn", "tillside test CA")
        self.pki("issue", "--dir", c, "--cn", "localhost", "--dns", "localhost", "--server",
                 "--out", f"{c}/hub")
        self.pki("issue", "--dir", c, "--cn", "T01", "--ou", "S001", "--o", "acme",
                 "--out", f"{c}/t01")
        self.pki("issue", "--dir", c, "--cn", "cdp", "--ou", "cdp", "--o", "acme",
                 "--out", f"{c}/cdp")

    def other_ca(self):
        """A second, unrelated CA with a server and a client certificate."""
        o = os.path.join(self.dir, "other")
        if not os.path.exists(o):
            self.pki("init", "--dir", o, "--cn", "evil CA")
            self.pki("issue", "--dir", o, "--cn", "localhost", "--dns", "localhost", "--server",
                     "--out", f"{o}/hub")
            self.pki("issue", "--dir", o, "--cn", "T66", "--ou", "S001", "--o", "acme",
                     "--out", f"{o}/t66")
        return o

    # ---- hub ----------------------------------------------------------
    def hub_conf(self, cert=None, key=None, extra=""):
        path = os.path.join(self.dir, "hub.conf")
        c = self.certs
        with open(path, "w") as f:
            f.write(f"""[hub]
listen = 127.0.0.1:{self.hub_port}
db = {self.db}
tls_cert = {cert or c + '/hub.pem'}
tls_key = {key or c + '/hub.key'}
client_ca = {c}/ca.pem
log_level = info

[cdp]
write_key = {WRITE_KEY}

[tenant]
name = acme
key = {TENANT_KEY}
key_version = 1

[feed]
page_limit = 500
{extra}
""")
        return path

    def start_hub(self, cert=None, key=None, extra=""):
        """extra: more INI text for hub.conf (sections may repeat)."""
        conf = self.hub_conf(cert, key, extra)
        p = Proc("hub", [HUB_BIN, "run", "-c", conf], os.path.join(self.dir, "hub.log"))
        self.procs.append(p)
        wait_for(lambda: self._port_open(self.hub_port) or (not p.alive() and
                                                            self._died(p)),
                 what="hub to listen")
        self.hub = p
        return p

    def _died(self, p):
        raise Died(f"{p.name} exited early with {p.p.returncode}:\n{p.log()}")

    @staticmethod
    def _port_open(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def hub_ssl(self, cert="cdp", ca=None):
        ctx = ssl.create_default_context(cafile=ca or f"{self.certs}/ca.pem")
        if cert:
            ctx.load_cert_chain(f"{self.certs}/{cert}.pem", f"{self.certs}/{cert}.key")
        return ctx

    def hub_request(self, method, path, body=None, headers=None, cert="cdp", ctx=None):
        """One HTTPS request to the hub; returns (status, parsed JSON or text)."""
        conn = http.client.HTTPSConnection("localhost", self.hub_port,
                                           context=ctx or self.hub_ssl(cert), timeout=10)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read().decode("utf-8", "replace")
            try:
                return r.status, json.loads(data) if data else None
            except json.JSONDecodeError:
                return r.status, data
        finally:
            conn.close()

    def send_batch(self, events, write_key=WRITE_KEY, raw=None):
        auth = base64.b64encode(f"{write_key}:".encode()).decode()
        body = raw if raw is not None else {"batch": events}
        return self.hub_request("POST", "/v1/batch", body,
                                headers={"Authorization": f"Basic {auth}",
                                         "Content-Type": "application/json"})

    def hub_stats(self):
        p = run([HUB_BIN, "stats", "-c", os.path.join(self.dir, "hub.conf")])
        return json.loads(p.stdout)

    def start_proxy(self, seed=0):
        """A fault proxy (tests/tools/faultproxy.py) in front of the hub,
        stopped with the World. Point the agent at proxy_url(px)."""
        tools = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools")
        if tools not in sys.path:
            sys.path.insert(0, tools)
        from faultproxy import FaultProxy
        px = FaultProxy(target_port=self.hub_port, seed=seed).start()
        self.procs.append(_ProxyProc(px))
        return px

    @staticmethod
    def proxy_url(px):
        # localhost, not 127.0.0.1: the hub certificate names DNS localhost.
        return f"https://localhost:{px.port}"

    # ---- agent --------------------------------------------------------
    def agent_conf(self, ca=None, cert=None, key=None, url=None, poll_ms=300, extra="",
                   lookup_ms=LOOKUP_MS):
        """extra: more INI text appended (e.g. "[page]\nidle_clear_s = 1\n").
        lookup_ms: the live lookup's budget (the product's default is 300 ms;
        tests that do not measure it allow more, for a loaded CI machine)."""
        path = os.path.join(self.dir, "tillside.conf")
        c = self.certs
        os.makedirs(os.path.join(self.dir, "agent"), exist_ok=True)
        with open(path, "w") as f:
            f.write(f"""[agent]
store = S001
terminal = T01
state_dir = {self.dir}/agent
log_level = info

[hub]
url = {url or f'https://localhost:{self.hub_port}'}
ca = {ca or c + '/ca.pem'}
cert = {cert or c + '/t01.pem'}
key = {key or c + '/t01.key'}
poll_interval_ms = {poll_ms}
timeout_ms = 3000
lookup_timeout_ms = {lookup_ms}
page_limit = 500

[identity]
tenant_key = {TENANT_KEY}
key_version = 1

[api]
listen = 127.0.0.1:{self.api_port}
{extra}
""")
        self.agent_conf_path = path
        return path

    def start_agent(self, **kw):
        conf = self.agent_conf(**kw)
        p = Proc("agent", [AGENT_BIN, "run", "-c", conf], os.path.join(self.dir, "agent.log"))
        self.procs.append(p)
        wait_for(lambda: (self.api("GET", "/readyz")[0] == 200) or (not p.alive() and
                                                                    self._died(p)),
                 what="agent /readyz")
        self.agent = p
        return p

    def token(self):
        with open(os.path.join(self.dir, "agent", "api.token")) as f:
            return f.read().strip()

    def api(self, method, path, body=None, auth=True, host=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10)
        try:
            hdrs = {"Host": host or f"127.0.0.1:{self.api_port}"}
            if auth and method != "GET":
                hdrs["Authorization"] = f"Bearer {self.token()}"
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read().decode("utf-8", "replace")
            try:
                return r.status, json.loads(data) if data else None
            except json.JSONDecodeError:
                return r.status, data
        finally:
            conn.close()

    def status(self):
        s, body = self.api("GET", "/api/v1/status")
        check(s == 200, f"status answered {s}: {body}")
        return body

    def wait_cards(self, n, timeout=20):
        return wait_for(lambda: self.status()["cards"] >= n and self.status(), timeout,
                        what=f"agent cache to hold {n} cards")

    def cli(self, *args, check_rc=False):
        return run([AGENT_BIN, *args, "-c", self.agent_conf_path], check_rc=check_rc)

    # ---- teardown -----------------------------------------------------
    def close(self, ok):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001
                print(f"stopping {p.name}: {e}", file=sys.stderr)
        if ok and not os.environ.get("TS_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"test files kept in {self.dir}", file=sys.stderr)
            for p in self.procs:
                print(f"---- {p.name} log ----\n{p.log()[-4000:]}", file=sys.stderr)


def hub_metric(w, name, **labels):
    """One sample of the hub's /metrics, by name and labels; None if absent."""
    st, text = w.hub_request("GET", "/metrics")
    check(st == 200, f"/metrics answered {st}")
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, val = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(val)
    return None


class SSEClient:
    """Collects Server-Sent Events from the agent in a background thread.
    With reconnect=True it behaves as the page's EventSource does: a stream
    the agent closes is opened again, with Last-Event-ID once an event with
    an id has arrived (`reconnects` counts them)."""

    def __init__(self, port, reconnect=False):
        self.port = port
        self.reconnect = reconnect
        self.reconnects = 0
        self.closed = False
        self.events = []
        self.cv = threading.Condition()
        self.sock = self._open(None)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _open(self, last_id):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        sock.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                     f"Accept: text/event-stream\r\n{extra}\r\n".encode())
        return sock

    def _run(self):
        before = []
        while True:
            self._read(before)
            with self.cv:
                if not self.reconnect or self.closed:
                    return
                before = list(self.events)
                ids = [e["id"] for e in before if e["id"]]
            try:
                self.sock.close()
                time.sleep(0.2)  # EventSource waits `retry` ms; the agent asks 2000
                self.sock = self._open(ids[-1] if ids else None)
            except OSError:
                return
            self.reconnects += 1

    def _read(self, before):
        buf = b""
        head_done = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if not head_done:
                    if b"\r\n\r\n" not in buf:
                        continue
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.head = head.decode()
                    head_done = True
                # The stream may be chunked; strip chunk-size lines conservatively
                # by parsing events on the text after removing chunk framing.
                text = self._dechunk(buf) if "chunked" in self.head.lower() else buf.decode(
                    "utf-8", "replace")
                blocks = text.replace("\r\n", "\n").split("\n\n")
                complete = blocks[:-1]
                with self.cv:
                    self.events = before + [self._parse(b) for b in complete if self._parse(b)]
                    self.cv.notify_all()
        except OSError:
            pass

    @staticmethod
    def _dechunk(raw):
        out = b""
        rest = raw
        while rest:
            if b"\r\n" not in rest:
                break
            size_line, after = rest.split(b"\r\n", 1)
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                break
            if size == 0 or len(after) < size + 2:
                if len(after) >= size:
                    out += after[:size]
                break
            out += after[:size]
            rest = after[size + 2:]
        return out.decode("utf-8", "replace")

    @staticmethod
    def _parse(block):
        ev = {"event": "message", "data": "", "id": None}
        has = False
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "data":
                ev["data"] += v
                has = True
            elif k in ("event", "id"):
                ev[k] = v
        return ev if has else None

    def wait_event(self, name, pred=lambda d: True, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.events:
                    if e["event"] == name:
                        try:
                            d = json.loads(e["data"])
                        except json.JSONDecodeError:
                            d = e["data"]
                        if pred(d):
                            return d
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail(f"no SSE '{name}' event matching within {timeout}s; got "
                               f"{[e['event'] for e in self.events]}")
                self.cv.wait(left)

    def close(self):
        with self.cv:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def ean13(body):
    """body (12 digits) + its GS1 check digit: a valid EAN-13. Loyalty codes
    in tests should be valid EAN-13s: a 13-digit number that is not one but
    passes Luhn is dropped as a card number by the payment card guard."""
    t = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return body + str((10 - t % 10) % 10)


def customer_batch(user="u-ada", loyalty="2000000000015", name="Ada Lovelace", tier="gold",
                   store="S001", consent=True, viewed=("SKU-RUN-42", "Trail Runner 42"),
                   views=3, cart=("SKU-JKT-7", "Rain Jacket", 129.0)):
    """Segment events for one customer: identify, N views of one product, one
    view of another, one cart add."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    ev = [{"type": "identify", "userId": user, "messageId": f"{user}-id", "timestamp": now,
           "traits": {"name": name, "loyalty_id": loyalty, "tier": tier, "points": 1200,
                      "home_store": store, "consent": {"personalization": consent}}}]
    for i in range(views):
        ev.append({"type": "track", "event": "Product Viewed", "userId": user,
                   "messageId": f"{user}-v{i}", "timestamp": now,
                   "properties": {"product_id": viewed[0], "name": viewed[1], "price": 89.0}})
    ev.append({"type": "track", "event": "Product Viewed", "userId": user,
               "messageId": f"{user}-v-other", "timestamp": now,
               "properties": {"product_id": "SKU-HAT-1", "name": "Wool Hat", "price": 19.0}})
    if cart:
        ev.append({"type": "track", "event": "Product Added", "userId": user,
                   "messageId": f"{user}-c1", "timestamp": now,
                   "properties": {"product_id": cart[0], "name": cart[1], "price": cart[2],
                                  "quantity": 1}})
    return ev


def metric(text, name):
    """The value of an unlabelled metric in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def card_number_traces(w, pans, texts=()):
    """Where any of pans (digit strings) still is: the raw bytes of every file
    under the test's directory (agent state with its -wal and -shm, the hub's
    database with its WAL, every log) and each of texts (what an upstream
    received, say), also with separators taken out. Returns "where: pan"
    strings; [] when the card numbers are nowhere."""
    found = []

    def look(where, data):
        flat = re.sub(rb"[ .\-_/\t]", b"", data)
        for pan in pans:
            if pan.encode() in data or pan.encode() in flat:
                found.append(f"{where}: {pan}")

    for root, _, files in os.walk(w.dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    look(os.path.relpath(path, w.dir), f.read())
            except OSError:
                pass
    for i, t in enumerate(texts):
        look(f"text {i}", t if isinstance(t, bytes) else t.encode())
    return found


def main(tests):
    """Runs the named test function (argv[1]) or all, each in its own World."""
    names = sys.argv[1:] or list(tests)
    for n in names:
        if n not in tests:
            print(f"unknown test {n}; have {list(tests)}", file=sys.stderr)
            sys.exit(2)
    for path in (HUB_BIN, AGENT_BIN):
        if not os.access(path, os.X_OK):
            print(f"missing binary {path}", file=sys.stderr)
            sys.exit(1)
    failed = 0
    for n in names:
        w = World(n)
        ok = False
        t0 = time.monotonic()
        try:
            tests[n](w)
            ok = True
            print(f"PASS {n} ({time.monotonic() - t0:.1f}s)")
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print(f"FAIL {n}: {e}")
        finally:
            w.close(ok)
    sys.exit(1 if failed else 0)
