"""Shared plumbing for the benchmarks in bench/: certificates, configs, the hub
and agent processes, generated data sets, statistics and the machine
description. Standard library only; the binaries come from a release build
(cmake --preset release -B build/bench)."""
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENANT_KEY = "6b" * 32
WRITE_KEY = "bench-write-key"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{args[:3]} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(xs):
    return statistics.median(xs)


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Bins:
    def __init__(self, bin_dir):
        self.dir = os.path.abspath(bin_dir)
        self.hub = os.path.join(self.dir, "hub", "tillside-hub")
        self.agent = os.path.join(self.dir, "agent", "tillside")
        for b in (self.hub, self.agent):
            if not os.access(b, os.X_OK):
                raise SystemExit(f"missing {b}: build with cmake --preset release -B "
                                 f"{bin_dir} && cmake --build {bin_dir}")
        cache = os.path.join(self.dir, "CMakeCache.txt")
        if os.path.exists(cache):
            with open(cache) as f:
                bt = [line.split("=", 1)[1].strip() for line in f
                      if line.startswith("CMAKE_BUILD_TYPE:")]
            if bt and bt[0] not in ("Release", "RelWithDebInfo"):
                log(f"warning: {bin_dir} is a {bt[0]} build; numbers will not be representative")


class Proc:
    def __init__(self, name, args, logpath):
        self.name = name
        self.logf = open(logpath, "ab")
        self.logpath = logpath
        self.p = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def proc_status(self, field):
        """A field of /proc/PID/status in kB (VmHWM, VmRSS), or None."""
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


class Setup:
    """A directory with a throwaway CA and certificates, and configs."""

    def __init__(self, bins, workdir):
        self.b = bins
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.pki = os.path.join(workdir, "pki")
        if not os.path.exists(os.path.join(self.pki, "t01.pem")):
            shutil.rmtree(self.pki, ignore_errors=True)
            h = self.b.hub
            run([h, "pki", "init", "--dir", self.pki, "--cn", "bench CA"])
            run([h, "pki", "issue", "--dir", self.pki, "--cn", "localhost", "--dns", "localhost",
                 "--server", "--out", f"{self.pki}/hub"])
            run([h, "pki", "issue", "--dir", self.pki, "--cn", "T01", "--ou", "S001", "--o",
                 "acme", "--out", f"{self.pki}/t01"])
            run([h, "pki", "issue", "--dir", self.pki, "--cn", "cdp", "--ou", "cdp", "--o",
                 "acme", "--out", f"{self.pki}/cdp"])
        self.hub_port = free_port()
        self.api_port = free_port()
        self.procs = []

    def hub_conf(self, db, log_level="info"):
        path = os.path.join(self.dir, "hub.conf")
        p = self.pki
        with open(path, "w") as f:
            f.write(f"""[hub]
listen = 127.0.0.1:{self.hub_port}
db = {db}
tls_cert = {p}/hub.pem
tls_key = {p}/hub.key
client_ca = {p}/ca.pem
log_level = {log_level}

[cdp]
write_key = {WRITE_KEY}

[tenant]
name = acme
key = {TENANT_KEY}
key_version = 1

; the benchmarks time bare lookup round trips from one terminal: no budget
[lookup]
rate_per_min = 600000
burst = 100000
""")
        return path

    def agent_conf(self, state_dir, extra_hub=""):
        path = os.path.join(self.dir, "tillside.conf")
        p = self.pki
        with open(path, "w") as f:
            f.write(f"""[agent]
store = S001
terminal = T01
state_dir = {state_dir}
log_level = info

[hub]
url = https://localhost:{self.hub_port}
ca = {p}/ca.pem
cert = {p}/t01.pem
key = {p}/t01.key
{extra_hub}

[identity]
tenant_key = {TENANT_KEY}
key_version = 1

[api]
listen = 127.0.0.1:{self.api_port}
""")
        return path

    def start_hub(self, db):
        conf = self.hub_conf(db)
        p = Proc("hub", [self.b.hub, "run", "-c", conf], os.path.join(self.dir, "hub.log"))
        self.procs.append(p)
        wait(lambda: port_open(self.hub_port), 60, "hub to listen", p)
        self.hub = p
        return p

    def start_agent(self, state_dir, extra_hub=""):
        shutil.rmtree(state_dir, ignore_errors=True)
        conf = self.agent_conf(state_dir, extra_hub)
        self.agent_conf_path = conf
        p = Proc("agent", [self.b.agent, "run", "-c", conf], os.path.join(self.dir, "agent.log"))
        self.procs.append(p)
        return p

    def ssl_ctx(self, cert="t01"):
        ctx = ssl.create_default_context(cafile=f"{self.pki}/ca.pem")
        ctx.load_cert_chain(f"{self.pki}/{cert}.pem", f"{self.pki}/{cert}.key")
        return ctx

    def hub_conn(self, cert="t01"):
        return http.client.HTTPSConnection("localhost", self.hub_port,
                                           context=self.ssl_ctx(cert), timeout=60)

    def api(self, method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=30)
        try:
            hdrs = {"Host": f"127.0.0.1:{self.api_port}"}
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            if body is not None:
                body = json.dumps(body)
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            conn.close()

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait(pred, timeout, what, proc=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise SystemExit(f"{proc.name} exited ({proc.p.returncode}); see {proc.logpath}")
        try:
            v = pred()
            if v:
                return v
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def dataset(bins, workroot, customers, seed, stores="S001"):
    """A hub database with `customers` generated customers, built once with
    `gen --out` + `import` and kept in workroot/n<N>-s<seed>/db/hub.db."""
    d = os.path.join(workroot, f"n{customers}-s{seed}" + ("" if stores == "S001" else
                                                           "-" + stores.replace(",", "_")))
    db = os.path.join(d, "db", "hub.db")
    if os.path.exists(os.path.join(d, "imported.ok")):
        return db
    os.makedirs(d, exist_ok=True)
    events = os.path.join(d, "events.jsonl")
    if not os.path.exists(events):
        log(f"generating {customers} customers (gen --out)")
        t0 = time.monotonic()
        run([bins.hub, "gen", "--out", events + ".tmp", "--customers", str(customers),
             "--stores", stores, "--seed", str(seed)])
        os.rename(events + ".tmp", events)
        log(f"generated in {time.monotonic() - t0:.0f}s")
    conf = os.path.join(d, "import.conf")
    with open(conf, "w") as f:
        f.write(f"[hub]\nlisten = 127.0.0.1:0\ndb = {db}\nlog_level = warn\n"
                f"[cdp]\nwrite_key = {WRITE_KEY}\n"
                f"[tenant]\nname = acme\nkey = {TENANT_KEY}\nkey_version = 1\n")
    shutil.rmtree(os.path.dirname(db), ignore_errors=True)
    log(f"importing {events}")
    t0 = time.monotonic()
    p = subprocess.run([bins.hub, "import", "-c", conf, events], stdout=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        raise SystemExit(f"import failed ({p.returncode})")
    log(f"{p.stdout.strip()} ({time.monotonic() - t0:.0f}s)")
    open(os.path.join(d, "imported.ok"), "w").close()
    return db


def machine():
    """One line describing the machine and the software measured."""
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GB"
    except OSError:
        pass
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    deb = "?"
    try:
        with open("/etc/debian_version") as f:
            deb = f.read().strip()
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem} RAM, Debian {deb}, kernel "
            f"{platform.release()}, tillside {rev}{' + uncommitted changes' if dirty else ''}")
