"""The hub behind real nginx doing mutual TLS (docs/OPERATIONS.md "Behind
nginx"), with the site file we ship (packaging/nginx/tillside-hub.conf) and
only its paths and ports rewritten for a temp dir. nginx runs in the
foreground with its own prefix, no system service.

- agent_through_nginx: the CDP's batch through nginx's no-client-cert server,
  the agent syncing over nginx (mTLS) → a scan shows the card; with
  poll_interval_ms = 60000 only a long-poll through nginx can deliver a
  rename, and it does; a purchase batch posted through nginx is accepted,
  and identity headers a terminal sends itself are not believed.
- refusals: nginx refuses a client without a certificate and one from
  another CA; a terminal revoked with `tillside-hub revoke` is refused by the
  hub at once (403, before nginx knows) and, after `tillside-hub crl` and an
  nginx reload, by nginx itself; the hub's plain listener refuses identity
  headers from a non-trusted address and agent requests without them.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import tslib
from tslib import check, wait_for

SRC = os.environ.get("TS_SRC_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SITE = os.path.join(SRC, "packaging", "nginx", "tillside-hub.conf")


def nginx_bin():
    for p in ("/usr/sbin/nginx", shutil.which("nginx") or ""):
        if p and os.access(p, os.X_OK):
            return p
    return None


STREAM = os.path.join(SRC, "packaging", "nginx", "tillside-hub-stream.conf")
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def rewrite(path, subs):
    """The shipped file at path with each (old, new) replaced (every old
    must be there) and its IPv6 lines dropped (IPv6 may be off in a CI
    container)."""
    with open(path) as f:
        text = f.read()
    for old, new in subs:
        check(old in text, f"the shipped {os.path.basename(path)} no longer has '{old}'")
        text = text.replace(old, new)
    return "\n".join(l for l in text.splitlines() if "[::]" not in l)


class Nginx:
    """nginx in the foreground under w.dir/nginx with the shipped site
    (hub_plain_port: nginx does the TLS) or the shipped stream balancer
    (stream_to: two hubs' TLS ports, nginx passes TCP through round robin)."""

    def __init__(self, w, hub_plain_port=None, stream_to=None):
        self.w = w
        self.dir = os.path.join(w.dir, "nginx")
        for d in ("", "tmp", "logs"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        self.port = tslib.free_port()      # terminals (mTLS)
        self.crl = os.path.join(w.dir, "crl.pem")
        c = w.certs
        d = self.dir
        self.site = os.path.join(d, "site.conf")
        if stream_to:
            a, b = stream_to
            site = rewrite(STREAM, [("server 192.0.2.11:8443", f"server 127.0.0.1:{a}"),
                                    ("server 192.0.2.12:8443", f"server 127.0.0.1:{b}"),
                                    ("listen 8443;", f"listen 127.0.0.1:{self.port};")])
            # Debian loads it from /etc/nginx/modules-enabled, which this
            # nginx.conf does not include; a missing module fails `nginx -t`.
            mods = f"load_module {STREAM_MODULE};\n" if os.path.exists(STREAM_MODULE) else ""
            blocks = f"include {self.site};\n"
        else:
            self.cdp_port = tslib.free_port()  # CDP and enrolment
            site = rewrite(SITE, [
                ("server 127.0.0.1:8080;", f"server 127.0.0.1:{hub_plain_port};"),
                ("listen 8443 ssl;", f"listen 127.0.0.1:{self.port} ssl;"),
                ("listen 8444 ssl;", f"listen 127.0.0.1:{self.cdp_port} ssl;"),
                ("/etc/tillside-hub/tls/server.pem", f"{c}/hub.pem"),
                ("/etc/tillside-hub/tls/server.key", f"{c}/hub.key"),
                ("/etc/tillside-hub/pki/ca.pem", f"{c}/ca.pem"),
                ("/var/lib/tillside-hub/crl.pem", self.crl),
            ])
            temps = "\n".join(f"    {k}_temp_path {d}/tmp/{k};"
                              for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            mods = ""
            blocks = (f"http {{\n    access_log {d}/logs/access.log;\n{temps}\n"
                    f"    include {self.site};\n}}\n")
        with open(self.site, "w") as f:
            f.write(site)
        # As root the workers would switch to nobody, who cannot traverse
        # the private temp dir; they read nothing after start, but keep the
        # user that owns it.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(f"""{mods}{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 512; }}
{blocks}""")
        self.stream = bool(stream_to)
        self.proc = None

    def start(self):
        p = tslib.run([nginx_bin(), "-t", "-p", self.dir, "-e", f"{self.dir}/logs/early.log",
                       "-c", self.conf], check_rc=False)
        hint = ("" if not self.stream or os.path.exists(STREAM_MODULE) else
                f" ({STREAM_MODULE} is missing: apt-get install libnginx-mod-stream)")
        check(p.returncode == 0, f"nginx -t refused the shipped config{hint}:\n{p.stderr}")
        self.proc = tslib.Proc("nginx", [nginx_bin(), "-p", self.dir, "-e",
                                         f"{self.dir}/logs/early.log", "-c", self.conf],
                               os.path.join(self.dir, "logs", "stdout.log"))
        self.proc.log = self.error_log
        self.w.procs.append(self.proc)
        wait_for(lambda: self.w._port_open(self.port) or (not self.proc.alive() and
                                                          self.w._died(self.proc)),
                 what="nginx to listen")

    def error_log(self):
        try:
            with open(os.path.join(self.dir, "logs", "error.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def reload(self):
        """SIGHUP; returns once a new worker runs with the new files."""
        before = self.error_log().count("start worker process")
        self.proc.p.send_signal(signal.SIGHUP)
        wait_for(lambda: self.error_log().count("start worker process") > before,
                 what="nginx to start a new worker after the reload")
        time.sleep(0.3)  # the old worker finishes its kept connections


def tls_ctx(w, cert=None, certs_dir=None):
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    if cert:
        d = certs_dir or w.certs
        ctx.load_cert_chain(f"{d}/{cert}.pem", f"{d}/{cert}.key")
    return ctx


def request(port, method, path, ctx=None, body=None, headers=None, src=None, plain=False):
    """One request; (status, parsed JSON or text). src binds the client's
    source address (a loopback alias), plain speaks HTTP without TLS."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    sa = (src, 0) if src else None
    if plain:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=sa)
    else:
        conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10,
                                           source_address=sa)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        try:
            return r.status, json.loads(data) if data else None
        except json.JSONDecodeError:
            return r.status, data
    finally:
        conn.close()


def start(w):
    """Hub (plain listener for nginx, no TLS of its own) and nginx in front."""
    plain = tslib.free_port()
    w.hub_conf(extra="")
    conf = os.path.join(w.dir, "hub.conf")
    with open(conf) as f:
        text = f.read()
    # No TLS at the hub: nginx does it. The main listener then has no
    # identity at all; terminals come through listen_plain only.
    text = re.sub(r"^(tls_cert|tls_key) = .*\n", "", text, flags=re.M)
    text = text.replace("[hub]\n", f"[hub]\nlisten_plain = 127.0.0.1:{plain}\n"
                                   f"trusted_proxy = 127.0.0.1\n"
                                   f"ca_key = {w.certs}/ca.key\n", 1)
    with open(conf, "w") as f:
        f.write(text)
    ng = Nginx(w, plain)
    # nginx needs a CRL before the hub ever ran: an empty one.
    p = tslib.run([tslib.HUB_BIN, "crl", "-c", conf, "--out", ng.crl])
    check("0 revoked certificates" in p.stdout, f"first CRL: {p.stdout}")
    p = tslib.Proc("hub", [tslib.HUB_BIN, "run", "-c", conf], os.path.join(w.dir, "hub.log"))
    w.procs.append(p)
    w.hub = p
    wait_for(lambda: w._port_open(plain) or (not p.alive() and w._died(p)),
             what="hub plain listener")
    ng.start()
    return ng, plain


def send_batch(w, ng, events):
    import base64
    auth = base64.b64encode(f"{tslib.WRITE_KEY}:".encode()).decode()
    return request(ng.cdp_port, "POST", "/v1/batch", tls_ctx(w), {"batch": events},
                   {"Authorization": f"Basic {auth}"})


def scan(w, code):
    s, sess = w.api("POST", "/api/v1/scan", {"code": code, "aim": "]E0"})
    check(s == 200, f"scan answered {s}: {sess}")
    return sess


def rename(user, name, mid):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return [{"type": "identify", "userId": user, "messageId": mid, "timestamp": now,
             "traits": {"name": name}}]


def purchase(mid, receipt, store="S001"):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"type": "track", "event": "Order Completed", "messageId": mid,
            "anonymousId": f"{store}:T01", "originalTimestamp": now, "sentAt": now,
            "properties": {"order_id": receipt, "total": 10.0, "revenue": 10.0, "tax": 0,
                           "discount": 0, "currency": "EUR",
                           "products": [{"product_id": "SKU-1", "sku": "SKU-1", "name": "Socks",
                                         "price": 10.0, "quantity": 1}]},
            "context": {"tillside": {"store": store, "terminal": "T01", "receipt": receipt,
                                     "source": "api"}}}


def agent_through_nginx(w):
    ng, _ = start(w)
    s, body = send_batch(w, ng, tslib.customer_batch())
    check(s == 200 and body.get("success") is True, f"batch through nginx: {s} {body}")
    # Slow polling: only the long-poll can bring the rename below in time.
    w.start_agent(url=f"https://localhost:{ng.port}", poll_ms=60000)
    w.wait_cards(1)
    sess = scan(w, "2000000000015")
    check(sess["status"] == "found" and sess["card"]["name"] == "Ada Lovelace",
          f"card synced through nginx: {sess}")
    feed_lines = [l for l in w.hub.log().splitlines() if "feed store=S001" in l]
    check(feed_lines, "the hub logged no feed request from store S001 (via nginx)")

    time.sleep(1.0)  # the agent now waits in a long-poll, through nginx
    t0 = time.monotonic()
    s, body = send_batch(w, ng, rename("u-ada", "Ada King", "nginx-rename-1"))
    check(s == 200, f"rename batch: {s} {body}")
    wait_for(lambda: scan(w, "2000000000015")["card"]["name"] == "Ada King", timeout=15,
             interval=0.1, what="the rename at the till through the nginx long-poll")
    print(f"rename reached the till through nginx in {time.monotonic() - t0:.2f} s "
          f"(poll interval 60 s)")
    check("Connection reset" not in ng.error_log() and "upstream timed out" not in
          ng.error_log(), f"nginx errors: {ng.error_log()[-2000:]}")

    # A purchase batch through nginx, and the terminal's own identity
    # headers are replaced by nginx: claiming store S002 does not make it so.
    t01 = tls_ctx(w, "t01")
    s, ans = request(ng.port, "POST", "/v1/purchases", t01,
                     {"batch": [purchase("ng-m1", "S001-T01-000001")], "sentAt": "x"})
    check(s == 200 and ans["accepted"] == ["ng-m1"], f"purchase through nginx: {s} {ans}")
    forged = {"X-SSL-Client-S-DN": "CN=T01,OU=S002,O=acme", "X-SSL-Client-Verify": "SUCCESS"}
    s, ans = request(ng.port, "POST", "/v1/purchases", t01,
                     {"batch": [purchase("ng-m2", "S002-T01-000001", store="S002")],
                      "sentAt": "x"}, headers=forged)
    check(s == 200 and not ans["accepted"] and ans["rejected"][0]["messageId"] == "ng-m2",
          f"forged S002 identity believed: {s} {ans}")


def refusals(w):
    ng, plain = start(w)
    w.pki("issue", "--dir", w.certs, "--cn", "T02", "--ou", "S001", "--o", "acme",
          "--out", f"{w.certs}/t02")
    t02 = tls_ctx(w, "t02")
    s, body = request(ng.port, "GET", "/v1/feed", t02)
    check(s == 200 and "cursor" in body, f"T02 before revocation: {s} {body}")
    hub_feed = lambda: w.hub.log().count("feed store=S001")  # noqa: E731

    # No client certificate, and one from another CA: nginx answers, the
    # hub never sees the request.
    n0 = hub_feed()
    s, body = request(ng.port, "GET", "/v1/feed", tls_ctx(w))
    check(s == 400 and "No required SSL certificate" in str(body),
          f"no certificate: {s} {body}")
    other = w.other_ca()
    try:
        s, body = request(ng.port, "GET", "/v1/feed", tls_ctx(w, "t66", other))
        check(s == 400 and "SSL certificate error" in str(body),
              f"another CA's certificate: {s} {body}")
    except (ssl.SSLError, ConnectionError) as e:  # refused in the handshake is fine too
        print(f"another CA's certificate refused in the handshake: {e!r}")
    check(hub_feed() == n0, "a refused client's request reached the hub")

    # Revoked: the hub refuses at once, nginx after the new CRL.
    serial = tslib.run(["openssl", "x509", "-in", f"{w.certs}/t02.pem", "-noout", "-serial"]
                       ).stdout.strip().split("=")[1]
    tslib.run([tslib.HUB_BIN, "revoke", "-c", os.path.join(w.dir, "hub.conf"),
               "--serial", serial])
    s, body = request(ng.port, "GET", "/v1/feed", t02)
    check(s == 403 and "revoked" in str(body), f"revoked, before nginx knows: {s} {body}")
    p = tslib.run([tslib.HUB_BIN, "crl", "-c", os.path.join(w.dir, "hub.conf"), "--out", ng.crl])
    check("1 revoked certificate" in p.stdout, f"CRL after revoke: {p.stdout}")
    ng.reload()
    n0 = hub_feed()
    s, body = request(ng.port, "GET", "/v1/feed", t02)
    check(s == 400 and "SSL certificate error" in str(body), f"revoked at nginx: {s} {body}")
    check("certificate revoked" in ng.error_log(), "nginx did not log the revocation")
    check(hub_feed() == n0, "a request nginx refused as revoked reached the hub")
    # T01 is not revoked and still gets through.
    s, body = request(ng.port, "GET", "/v1/feed", tls_ctx(w, "t01"))
    check(s == 200 and "cursor" in body, f"T01 after T02's revocation: {s} {body}")

    # The plain listener itself: identity headers from a non-trusted
    # address are refused; the trusted address without them gets nothing.
    forged = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-S-DN": "CN=T01,OU=S001,O=acme"}
    s, body = request(plain, "GET", "/v1/feed", headers=forged, src="127.0.0.2", plain=True)
    check(s == 403 and "trusted proxy" in str(body), f"forged from 127.0.0.2: {s} {body}")
    s, body = request(plain, "GET", "/v1/feed", plain=True)
    check(s == 403, f"no identity headers: {s} {body}")
    s, body = request(plain, "GET", "/v1/feed", plain=True,
                      headers={"X-SSL-Client-Verify": "FAILED:certificate revoked"})
    check(s == 403, f"a failed verification passed on: {s} {body}")


if __name__ == "__main__":
    if not nginx_bin():
        print("nginx is not installed (./run test installs it)")
        raise SystemExit(77)
    tslib.main({"agent_through_nginx": agent_through_nginx, "refusals": refusals})
