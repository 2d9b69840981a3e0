"""Trust, as a store's IT sees it: enrolling a terminal with a one-time token
on a fresh state directory, certificate renewal before expiry, revoking a
stolen terminal, pinning the hub's public key, expiry warnings in status and
/metrics, and the TLS version floor. Real hub and agent binaries, real TLS."""
import http.client
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time

import tslib
from tslib import check, wait_for, run, HUB_BIN, AGENT_BIN, TENANT_KEY, WRITE_KEY


# ---- a hub with enrolment --------------------------------------------------

def start_trust_hub(w, extra_hub=""):
    """The hub with the enrolment listener and the test CA as enrolment CA."""
    c = w.certs
    w.enroll_port = tslib.free_port()
    conf = os.path.join(w.dir, "hub.conf")
    with open(conf, "w") as f:
        f.write(f"""[hub]
listen = 127.0.0.1:{w.hub_port}
enroll_listen = 127.0.0.1:{w.enroll_port}
db = {w.db}
tls_cert = {c}/hub.pem
tls_key = {c}/hub.key
client_ca = {c}/ca.pem
ca_cert = {c}/ca.pem
ca_key = {c}/ca.key
cert_days = 90
log_level = info
{extra_hub}
[cdp]
write_key = {WRITE_KEY}

[tenant]
name = acme
key = {TENANT_KEY}
key_version = 1
""")
    w.hub_conf_path = conf
    p = tslib.Proc("hub", [HUB_BIN, "run", "-c", conf], os.path.join(w.dir, "hub.log"))
    w.procs.append(p)
    wait_for(lambda: (w._port_open(w.hub_port) and w._port_open(w.enroll_port))
             or (not p.alive() and w._died(p)), what="hub and enrolment listener")
    w.hub = p
    return p


def hub_cli(w, *args, check_rc=True):
    return run([HUB_BIN, *args, "-c", w.hub_conf_path], check_rc=check_rc)


def enroll_token(w, store="S001", terminal="T07", ttl="24h"):
    p = hub_cli(w, "enroll-token", "--store", store, "--terminal", terminal, "--ttl", ttl)
    token = p.stdout.strip()
    check(len(token) >= 32 and "\n" not in token, f"enroll-token printed {p.stdout!r}")
    check(terminal in p.stderr and store in p.stderr, f"enroll-token explains: {p.stderr}")
    return token


def enroll_post(w, body):
    """POST /v1/enroll on the enrolment listener without a client certificate."""
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    conn = http.client.HTTPSConnection("localhost", w.enroll_port, context=ctx, timeout=10)
    try:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        conn.request("POST", "/v1/enroll", body=data,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read().decode()
        try:
            return r.status, json.loads(text)
        except json.JSONDecodeError:
            return r.status, text
    finally:
        conn.close()


def add_customers(w):
    """One customer of store S001 (Ada) and one of S002 (Bob)."""
    s, body = w.send_batch(tslib.customer_batch())
    check(s == 200, f"batch: {s} {body}")
    s, body = w.send_batch(tslib.customer_batch(user="u-bob", loyalty="2000000000022",
                                                name="Bob Store-Two", store="S002"))
    check(s == 200, f"batch: {s} {body}")


# ---- agents -----------------------------------------------------------------

class Agent:
    """One tillside agent with its own config, state directory and API port."""

    def __init__(self, w, name, identity=True, terminal="T01", store="S001", cert=None,
                 key=None, hub_extra="", poll_ms=300):
        self.w = w
        self.name = name
        self.state = os.path.join(w.dir, name)
        self.port = tslib.free_port()
        self.conf = os.path.join(w.dir, f"{name}.conf")
        os.makedirs(self.state, exist_ok=True)
        c = w.certs
        text = f"""[agent]
state_dir = {self.state}
log_level = info
"""
        if identity:
            text += f"store = {store}\nterminal = {terminal}\n"
        text += "[hub]\n"
        if identity:
            text += f"""url = https://localhost:{w.hub_port}
ca = {c}/ca.pem
cert = {cert or c + '/t01.pem'}
key = {key or c + '/t01.key'}
"""
        text += f"""poll_interval_ms = {poll_ms}
timeout_ms = 3000
{hub_extra}
[api]
listen = 127.0.0.1:{self.port}
"""
        if identity:
            text += f"[identity]\ntenant_key = {TENANT_KEY}\nkey_version = 1\n"
        with open(self.conf, "w") as f:
            f.write(text)
        self.proc = None

    def cli(self, *args, check_rc=False):
        return run([AGENT_BIN, "-c", self.conf, *args], check_rc=check_rc)

    def start(self):
        self.proc = tslib.Proc(self.name, [AGENT_BIN, "run", "-c", self.conf],
                               os.path.join(self.w.dir, f"{self.name}.log"))
        self.w.procs.append(self.proc)
        wait_for(lambda: self.get("/readyz")[0] == 200 or (not self.proc.alive() and
                                                           self.w._died(self.proc)),
                 what=f"{self.name} /readyz")
        return self

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": f"127.0.0.1:{self.port}"})
            r = conn.getresponse()
            return r.status, r.read().decode(), r.getheader("Content-Type")
        finally:
            conn.close()

    def status(self):
        s, body, _ = self.get("/api/v1/status")
        check(s == 200, f"{self.name} status {s}: {body}")
        return json.loads(body)

    def scan(self, code):
        with open(os.path.join(self.state, "api.token")) as f:
            token = f.read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/api/v1/scan", body=json.dumps({"code": code}),
                         headers={"Host": f"127.0.0.1:{self.port}",
                                  "Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, json.loads(r.read().decode())
        finally:
            conn.close()

    def wait_cards(self, n, timeout=20):
        return wait_for(lambda: self.status()["cards"] >= n and self.status(), timeout,
                        what=f"{self.name} to hold {n} cards")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cert_info(path):
    """subject, serial, days left and pins of a certificate (`pki pin`)."""
    out = run([HUB_BIN, "pki", "pin", path]).stdout
    info = {"text": out}
    for ln in out.splitlines():
        k, _, v = ln.partition(" ")
        if k in ("subject", "serial"):
            info[k] = v.strip()
    return info


# ---- enrolment ---------------------------------------------------------------

def enroll_end_to_end(w):
    """A terminal with nothing but a packaged config and the CA file enrols
    with a token, starts, syncs its store's slice and answers a scan."""
    start_trust_hub(w)
    add_customers(w)
    token = enroll_token(w, "S001", "T07")
    a = Agent(w, "t07", identity=False)
    p = a.cli("check-config")
    check(p.returncode != 0 and "enroll" in p.stderr,
          f"an unenrolled config must say what is missing: {p.stdout}{p.stderr}")

    p = a.cli("enroll", "--hub", f"https://localhost:{w.enroll_port}", "--token", token,
              "--ca", f"{w.certs}/ca.pem")
    check(p.returncode == 0, f"enroll failed: {p.stdout}{p.stderr}")
    check("T07" in p.stdout and "S001" in p.stdout, f"enroll output: {p.stdout}")
    for f, want in (("terminal.key", 0o600), ("enrolled.conf", 0o600)):
        path = os.path.join(a.state, f)
        check(os.path.exists(path), f"{f} missing")
        check(mode(path) == want, f"{f} has mode {oct(mode(path))}, want {oct(want)}")
    with open(os.path.join(a.state, "enrolled.conf")) as f:
        enrolled = f.read()
    check(TENANT_KEY in enrolled and f"localhost:{w.hub_port}" in enrolled,
          f"enrolled.conf lacks the tenant key or the main listener: {enrolled}")
    with open(os.path.join(a.state, "terminal.key")) as f:
        check("PRIVATE KEY" in f.read(), "terminal.key is not a private key")
    info = cert_info(os.path.join(a.state, "terminal.pem"))
    check(info["subject"] == "CN=T07, OU=S001, O=acme", f"certificate subject: {info}")
    p = a.cli("check-config")
    check(p.returncode == 0 and "enrolled.conf" in p.stdout, f"check-config: {p.stdout}{p.stderr}")

    a.start()
    st = a.wait_cards(1)
    check(st["terminal"] == "T07" and st["store"] == "S001", f"identity in status: {st}")
    time.sleep(1)
    st = a.status()
    check(st["cards"] == 1, f"only store S001's slice may be synced: {st['cards']} cards")
    s, sess = a.scan("2000000000015")
    check(s == 200 and sess["status"] == "found" and sess["card"]["name"] == "Ada Lovelace",
          f"scan after enrolment: {s} {sess}")
    check(st["cert_days_left"] >= 89, f"an enrolled certificate is valid 90 days: {st}")

    # The enrolment listener enrols and nothing else.
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    conn = http.client.HTTPSConnection("localhost", w.enroll_port, context=ctx, timeout=10)
    conn.request("GET", "/v1/feed")
    r = conn.getresponse()
    check(r.status == 404, f"the enrolment listener served /v1/feed: {r.status}")
    conn.close()
    check("enrolled terminal T07 of store S001" in w.hub.log(), "hub log lacks the enrolment")


def enroll_token_reused_refused(w):
    start_trust_hub(w)
    token = enroll_token(w, "S001", "T08")
    a = Agent(w, "first", identity=False)
    p = a.cli("enroll", "--hub", f"https://localhost:{w.enroll_port}", "--token", token,
              "--ca", f"{w.certs}/ca.pem")
    check(p.returncode == 0, f"first enrolment: {p.stdout}{p.stderr}")
    b = Agent(w, "second", identity=False)
    p = b.cli("enroll", "--hub", f"https://localhost:{w.enroll_port}", "--token", token,
              "--ca", f"{w.certs}/ca.pem")
    check(p.returncode != 0, "a used token must be refused")
    check("already used" in p.stderr and "403" in p.stderr, f"refusal explains: {p.stderr}")
    check(not os.path.exists(os.path.join(b.state, "enrolled.conf")),
          "a refused enrolment must not leave an enrolled.conf")
    s, body = enroll_post(w, {"token": "0" * 32, "csr": "x"})
    check(s == 403 and "unknown" in body["error"], f"unknown token: {s} {body}")
    s, body = enroll_post(w, "{not json")
    check(s == 400, f"malformed body: {s} {body}")
    s, body = enroll_post(w, {"token": 7})
    check(s == 400, f"token of the wrong type: {s} {body}")
    # A bad CSR is refused without spending a good token.
    t2 = enroll_token(w, "S001", "T09")
    s, body = enroll_post(w, {"token": t2, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                                  "-----END CERTIFICATE REQUEST-----\n"})
    check(s == 400 and "csr" in body["error"], f"bad csr: {s} {body}")
    c = Agent(w, "third", identity=False)
    p = c.cli("enroll", "--hub", f"https://localhost:{w.enroll_port}", "--token", t2,
              "--ca", f"{w.certs}/ca.pem")
    check(p.returncode == 0, f"the token survives a bad CSR: {p.stdout}{p.stderr}")
    check("already used" in w.hub.log(), "hub log lacks the refusal")


def enroll_token_expired_refused(w):
    start_trust_hub(w)
    token = enroll_token(w, "S001", "T10", ttl="1s")
    time.sleep(2.2)
    a = Agent(w, "late", identity=False)
    p = a.cli("enroll", "--hub", f"https://localhost:{w.enroll_port}", "--token", token,
              "--ca", f"{w.certs}/ca.pem")
    check(p.returncode != 0 and "expired" in p.stderr, f"expired token: {p.stdout}{p.stderr}")
    check(not os.path.exists(os.path.join(a.state, "terminal.pem")),
          "a refused enrolment must not leave a certificate")


# ---- renewal -------------------------------------------------------------------

def renew_before_expiry(w):
    """A terminal whose certificate has 5 days left, with renew_days = 30,
    renews over the mutual-TLS link and carries on syncing with the new one
    (even once the old one is revoked)."""
    start_trust_hub(w)
    c = w.certs
    w.pki("issue", "--dir", c, "--cn", "T01", "--ou", "S001", "--o", "acme", "--days", "5",
          "--out", f"{c}/short")
    state_cert, state_key = f"{w.dir}/short.pem", f"{w.dir}/short.key"
    shutil.copy(f"{c}/short.pem", state_cert)
    shutil.copy(f"{c}/short.key", state_key)
    os.chmod(state_key, 0o600)
    old = cert_info(state_cert)
    a = Agent(w, "agent", cert=state_cert, key=state_key, hub_extra="renew_days = 30")
    w.send_batch(tslib.customer_batch())
    a.start()
    a.wait_cards(1)
    st = wait_for(lambda: (a.status().get("cert_days_left") or 0) >= 89 and a.status(),
                  timeout=20, what="renewed certificate in status")
    check(st["warnings"] == [], f"no warnings after renewal: {st['warnings']}")
    new = cert_info(state_cert)
    check(new["serial"] != old["serial"] and new["subject"] == "CN=T01, OU=S001, O=acme",
          f"certificate not replaced: {old} -> {new}")
    check(mode(state_key) == 0o600, f"renewed key mode {oct(mode(state_key))}")
    check(not os.path.exists(state_key + ".new") and not os.path.exists(state_cert + ".new"),
          "renewal left .new files behind")
    check("renewed the certificate of terminal T01 of store S001" in w.hub.log(),
          "hub log lacks the renewal")
    check("renewed the terminal certificate" in a.proc.log(), "agent log lacks the renewal")
    # Revoke the old certificate: the agent's next connection uses the new one.
    hub_cli(w, "revoke", "--serial", old["serial"])
    w.send_batch(tslib.customer_batch(user="u-cy", loyalty="2000000000039",
                                      name="Cy After-Renewal"))
    a.wait_cards(2)
    check(a.status()["link"] == "online", f"link after revoking the old certificate: {a.status()}")


# ---- revocation ----------------------------------------------------------------

def revoked_terminal_refused(w):
    start_trust_hub(w)
    c = w.certs
    w.pki("issue", "--dir", c, "--cn", "T02", "--ou", "S001", "--o", "acme", "--out", f"{c}/t02")
    add_customers(w)
    a1 = Agent(w, "t01").start()
    a2 = Agent(w, "t02", terminal="T02", cert=f"{c}/t02.pem", key=f"{c}/t02.key").start()
    a1.wait_cards(1)
    a2.wait_cards(1)
    p = hub_cli(w, "revoke", "--terminal", "T01", "--store", "S001", "--reason", "stolen")
    check("T01" in p.stdout, f"revoke output: {p.stdout}")
    # A new customer: it wakes both terminals' waiting feed requests. T02
    # gets it; T01's answer is withheld and its reconnect refused.
    s, body = w.send_batch(tslib.customer_batch(user="u-dee", loyalty="2000000000046",
                                                name="Dee Later"))
    st = wait_for(lambda: a1.status()["link"] == "offline" and a1.status(), timeout=15,
                  what="the revoked terminal's link to go offline")
    err = (st.get("last_error") or "").lower()
    check("refused" in err and "revoked" in err,
          f"the error must say the hub refused a revoked certificate: {st.get('last_error')}")
    # Other terminals keep working.
    a2.wait_cards(2)
    check(a2.status()["link"] == "online", "T02 must stay online")
    time.sleep(1.5)
    st = a1.status()
    check(st["cards"] == 1 and st["link"] == "offline",
          f"the revoked terminal must not receive the new customer: {st}")
    # The revoked terminal still answers from its cache.
    s, sess = a1.scan("2000000000015")
    check(s == 200 and sess["status"] == "found" and sess["link"] == "offline",
          f"offline scan on the revoked terminal: {s} {sess}")
    log = w.hub.log()
    check("certificate revoked" in log and "CN=T01" in log,
          "hub log must name the revoked subject")
    p = hub_cli(w, "revoke", "--list")
    check("T01" in p.stdout and "stolen" in p.stdout, f"revoke --list: {p.stdout}")
    # A new enrolment lets the terminal back in.
    token = enroll_token(w, "S001", "T01")
    b = Agent(w, "t01-again", identity=False)
    p = b.cli("enroll", "--hub", f"https://localhost:{w.enroll_port}", "--token", token,
              "--ca", f"{c}/ca.pem")
    check(p.returncode == 0, f"re-enrolment: {p.stderr}")
    b.start()
    b.wait_cards(2)


# ---- pinning -------------------------------------------------------------------

def pin_of(path):
    out = run([HUB_BIN, "pki", "pin", path]).stdout
    pins = [ln.split("=", 1)[1].strip() for ln in out.splitlines()
            if ln.startswith("pin_sha256")]
    check(len(pins) == 2 and len(pins[0]) == 44 and len(pins[1]) == 64, f"pki pin: {out}")
    return pins


def pin_matches(w):
    w.start_hub()
    b64, hexpin = pin_of(f"{w.certs}/hub.pem")
    s, body = w.send_batch(tslib.customer_batch())
    a = Agent(w, "b64", hub_extra=f"pin_sha256 = {b64}").start()
    a.wait_cards(1)
    b = Agent(w, "hex", hub_extra=f"pin_sha256 = {hexpin}").start()
    b.wait_cards(1)
    check(a.status()["link"] == "online" and b.status()["link"] == "online", "pinned agents online")


def pin_mismatch(w):
    w.start_hub()
    other = w.other_ca()
    b64, _ = pin_of(f"{other}/hub.pem")  # a valid pin, of another key
    s, body = w.send_batch(tslib.customer_batch())
    a = Agent(w, "pinned", hub_extra=f"pin_sha256 = {b64}").start()
    st = wait_for(lambda: a.status().get("last_error") and a.status(), what="a sync error")
    check("public key pin mismatch" in st["last_error"], f"last_error: {st['last_error']}")
    check(st["link"] == "offline" and st["cards"] == 0, f"nothing synced past a bad pin: {st}")
    check("public key pin mismatch" in a.proc.log(), "agent log lacks the pin mismatch")
    bad = Agent(w, "badpin", hub_extra="pin_sha256 = not-a-pin")
    p = bad.cli("check-config")
    check(p.returncode != 0 and "pin_sha256" in p.stderr, f"bad pin format: {p.stderr}")


# ---- expiry ------------------------------------------------------------------------

def expiry_warning(w):
    """A certificate with 10 days left: status warns, /metrics shows it."""
    w.start_hub()
    c = w.certs
    w.pki("issue", "--dir", c, "--cn", "T01", "--ou", "S001", "--o", "acme", "--days", "10",
          "--out", f"{c}/ten")
    a = Agent(w, "agent", cert=f"{c}/ten.pem", key=f"{c}/ten.key",
              hub_extra="renew_days = 7").start()
    st = wait_for(lambda: a.status().get("warnings") and a.status(), what="an expiry warning")
    check(st["cert_days_left"] <= 10, f"cert_days_left: {st['cert_days_left']}")
    warn = " ".join(st["warnings"])
    check("terminal certificate expires in" in warn and "days" in warn, f"warnings: {warn}")
    s, text, ctype = a.get("/metrics")
    check(s == 200 and ctype.startswith("text/plain; version=0.0.4"), f"/metrics: {s} {ctype}")
    values = {}
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            name, _, v = ln.rpartition(" ")
            values[name] = float(v)
    for m in ("tillside_cert_remaining_seconds", "tillside_cards", "tillside_link_up",
              "tillside_scans_total", "tillside_feed_items_applied_total"):
        check(m in values, f"/metrics lacks {m}:\n{text}")
        check(f"# HELP {m} " in text and f"# TYPE {m} " in text, f"{m} lacks HELP/TYPE")
    check(values["tillside_cert_remaining_seconds"] <= 10 * 86400,
          f"gauge: {values['tillside_cert_remaining_seconds']}")
    wait_for(lambda: "terminal certificate expires in" in a.proc.log(), what="a WARN in the log")
    log_lines = [ln for ln in a.proc.log().splitlines() if "certificate expires in" in ln]
    check(log_lines[0].startswith("WARN"), f"log line: {log_lines[0]}")
    p = a.cli("status")
    check("cert_days_left" in p.stdout and "expires in" in p.stdout, f"status CLI: {p.stdout}")


# ---- TLS version floor ---------------------------------------------------------------

def _tls11_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def _handshake(ctx, port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.version()


def tls11_client_refused(w):
    """A client that offers only TLS 1.1 is refused by both listeners. The
    same client first proves it can speak TLS 1.1 to a server that allows
    it (openssl s_server), so the refusal is the hub's doing."""
    openssl = shutil.which("openssl")
    if not openssl:
        print("SKIP: no openssl binary for the TLS 1.1 control server")
        raise SystemExit(77)
    port = tslib.free_port()
    ctl = subprocess.Popen([openssl, "s_server", "-accept", f"127.0.0.1:{port}",
                            "-cert", f"{w.certs}/hub.pem", "-key", f"{w.certs}/hub.key",
                            "-tls1_1", "-cipher", "ALL:@SECLEVEL=0", "-www", "-quiet"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: w._port_open(port), what="control server")
        try:
            v = _handshake(_tls11_ctx(), port)
        except (ssl.SSLError, OSError) as e:
            print(f"SKIP: this Python/OpenSSL cannot offer TLS 1.1 ({e})")
            raise SystemExit(77)
        check(v == "TLSv1.1", f"control handshake gave {v}")
    finally:
        ctl.kill()
        ctl.wait()
    start_trust_hub(w)
    for port in (w.hub_port, w.enroll_port):
        try:
            v = _handshake(_tls11_ctx(), port)
            raise tslib.Fail(f"port {port} accepted {v}")
        except ssl.SSLError as e:
            print(f"refused as expected on {port}: {e}")
    # TLS 1.2 on the enrolment listener works: it is the version, not the client.
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", w.enroll_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            check(t.version() == "TLSv1.2", f"TLS 1.2: {t.version()}")


if __name__ == "__main__":
    tslib.main({
        "enroll_end_to_end": enroll_end_to_end,
        "enroll_token_reused_refused": enroll_token_reused_refused,
        "enroll_token_expired_refused": enroll_token_expired_refused,
        "renew_before_expiry": renew_before_expiry,
        "revoked_terminal_refused": revoked_terminal_refused,
        "pin_matches": pin_matches,
        "pin_mismatch": pin_mismatch,
        "expiry_warning": expiry_warning,
        "tls11_client_refused": tls11_client_refused,
    })
