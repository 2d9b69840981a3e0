#!/usr/bin/env python3
"""./run demo: a throwaway CA and certificates, a hub on embedded SQLite with
a generated data set, an agent synced from it over mutual TLS, a few replayed
scans, then the associate page URL and what to try. Ctrl-C stops everything.

Environment: TS_DEMO_BIN_DIR (build dir with the binaries, set by ./run),
TS_DEMO_DIR (state, default ./.demo), TS_DEMO_HUB_PORT (8443),
TS_DEMO_API_PORT (8765), TS_DEMO_CUSTOMERS (3000).
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("TS_DEMO_BIN_DIR", os.path.join(ROOT, "build", "release")))
HUB = os.path.join(BIN, "hub", "tillside-hub")
AGENT = os.path.join(BIN, "agent", "tillside")
DIR = os.path.abspath(os.environ.get("TS_DEMO_DIR", os.path.join(ROOT, ".demo")))
HUB_PORT = int(os.environ.get("TS_DEMO_HUB_PORT", "8443"))
API_PORT = int(os.environ.get("TS_DEMO_API_PORT", "8765"))
CUSTOMERS = int(os.environ.get("TS_DEMO_CUSTOMERS", "3000"))

procs = []


def say(msg=""):
    print(msg, flush=True)


def step(msg):
    say(f"\033[1m==> {msg}\033[0m")


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"demo: {' '.join(args[:2])} failed with exit code {p.returncode}")
    return p.stdout


def start(name, args):
    log = open(os.path.join(DIR, f"{name}.log"), "ab")
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    procs.append((name, p))
    return p


def stop_all(*_):
    for name, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    procs.clear()


def get_json(path):
    req = urllib.request.Request(f"http://127.0.0.1:{API_PORT}{path}")
    with urllib.request.urlopen(req, timeout=3) as r:
        return json.loads(r.read() or b"null")


def wait(pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                raise SystemExit(f"demo: {name} exited ({p.returncode}); see {DIR}/{name}.log")
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}; logs in {DIR}")


def main():
    for path in (HUB, AGENT):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"demo: {path} is missing; run ./run demo to build it")
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(os.path.join(DIR, "agent"))
    pki = os.path.join(DIR, "pki")

    step("creating a throwaway CA, a hub certificate and a terminal certificate")
    run(HUB, "pki", "init", "--dir", pki, "--cn", "tillside demo CA")
    run(HUB, "pki", "issue", "--dir", pki, "--cn", "localhost", "--dns", "localhost", "--server",
        "--out", f"{pki}/hub")
    run(HUB, "pki", "issue", "--dir", pki, "--cn", "T01", "--ou", "S001", "--o", "demo",
        "--out", f"{pki}/t01")
    run(HUB, "pki", "issue", "--dir", pki, "--cn", "cdp", "--ou", "cdp", "--o", "demo",
        "--out", f"{pki}/cdp")

    tenant_key = secrets.token_hex(32)
    write_key = secrets.token_hex(12)
    hub_conf = os.path.join(DIR, "hub.conf")
    with open(hub_conf, "w") as f:
        f.write(f"""[hub]
listen = 127.0.0.1:{HUB_PORT}
db = {DIR}/hub.db
tls_cert = {pki}/hub.pem
tls_key = {pki}/hub.key
client_ca = {pki}/ca.pem

[cdp]
write_key = {write_key}

[tenant]
name = demo
key = {tenant_key}
key_version = 1
""")
    agent_conf = os.path.join(DIR, "tillside.conf")
    with open(agent_conf, "w") as f:
        f.write(f"""[agent]
store = S001
terminal = T01
state_dir = {DIR}/agent

[hub]
url = https://localhost:{HUB_PORT}
ca = {pki}/ca.pem
cert = {pki}/t01.pem
key = {pki}/t01.key
poll_interval_ms = 2000
timeout_ms = 3000

[identity]
tenant_key = {tenant_key}
key_version = 1

[api]
listen = 127.0.0.1:{API_PORT}
""")

    step(f"starting the hub on https://localhost:{HUB_PORT} (SQLite at {DIR}/hub.db)")
    hub = start("hub", [HUB, "run", "-c", hub_conf])
    wait(lambda: "listening" in open(os.path.join(DIR, "hub.log")).read(), "the hub to listen")

    step(f"sending {CUSTOMERS} customers' online behaviour through /v1/batch (Segment format)")
    sample = run(HUB, "gen", "--url", f"https://localhost:{HUB_PORT}", "--write-key", write_key,
                 "--ca", f"{pki}/ca.pem", "--cert", f"{pki}/cdp.pem", "--key", f"{pki}/cdp.key",
                 "--customers", str(CUSTOMERS), "--stores", "S001,S002,S003", "--seed", "7",
                 "--sample", "3")
    samples = [json.loads(line) for line in sample.splitlines() if line.startswith("{")]

    step(f"starting the agent (associate page on http://127.0.0.1:{API_PORT}/)")
    start("agent", [AGENT, "run", "-c", agent_conf])
    wait(lambda: get_json("/readyz") is not None, "the agent to be ready")
    wait(lambda: get_json("/api/v1/status")["cards"] > 0 and
         get_json("/api/v1/status")["link"] == "online", "the first sync")
    st = get_json("/api/v1/status")
    say(f"    synced {st['cards']} cards of store S001 over mutual TLS")

    step("replaying scans at the till")
    for s in samples[:2] + [{"loyalty_id": "2999999999996", "name": "(not a customer)"}]:
        say(f"  $ tillside scan {s['loyalty_id']}      # {s['name']}")
        p = subprocess.run([AGENT, "scan", s["loyalty_id"], "-c", agent_conf],
                           capture_output=True, text=True)
        for line in (p.stdout or p.stderr).rstrip().splitlines():
            say(f"    {line}")
    step("a purchase at the till (POST /api/v1/purchases), uploaded through the outbox")
    if samples:
        subprocess.run([AGENT, "scan", samples[0]["loyalty_id"], "-c", agent_conf],
                       capture_output=True, text=True)
    with open(os.path.join(DIR, "agent", "api.token")) as f:
        token = f.read().strip()
    body = {"receipt": f"S001-T01-{int(time.time()) % 1000000:06d}", "currency": "EUR",
            "total": 129.0, "tax": 20.6,
            "products": [{"sku": "SKU-JKT-7", "name": "Rain Jacket", "quantity": 1,
                          "price": 129.0}]}
    req = urllib.request.Request(f"http://127.0.0.1:{API_PORT}/api/v1/purchases",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            say(f"    receipt {body['receipt']}: HTTP {r.status} {r.read().decode()}")
        wait(lambda: get_json("/api/v1/status")["outbox_depth"] == 0, "the upload", 30)
        say("    uploaded to the hub (outbox empty); `tillside outbox list --sent` shows it")
    except (OSError, ValueError) as e:
        say(f"    purchase failed: {e}")

    say()
    say(f"Associate page: http://127.0.0.1:{API_PORT}/")
    say()
    say("Try next (in another terminal):")
    code = samples[0]["loyalty_id"] if samples else "2000000000015"
    say(f"  scan a customer:   {AGENT} scan {code} -c {agent_conf}")
    say(f"  look up offline:   {AGENT} lookup {code} -c {agent_conf}")
    say(f"  agent status:      {AGENT} status -c {agent_conf}")
    say(f"  the outbox:        {AGENT} outbox list --all -c {agent_conf}")
    say(f"  pull the link:     kill -STOP {hub.pid}    (restore: kill -CONT {hub.pid})")
    say(f"  logs:              {DIR}/hub.log {DIR}/agent.log")
    say("Press Ctrl-C to stop the hub and the agent.")

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        for name, p in procs:
            if p.poll() is not None:
                say(f"demo: {name} exited unexpectedly ({p.returncode}); see {DIR}/{name}.log")
        return 1
    except KeyboardInterrupt:
        say("\nstopping ...")
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        stop_all()
        raise
