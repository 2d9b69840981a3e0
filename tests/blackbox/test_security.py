"""What a hostile client sees of the hub (docs/OPERATIONS.md "Security"), one
scenario each:

- tls_suites: only AEAD suites with forward secrecy are accepted (a CBC-SHA1,
  a CCM_8 and a Camellia suite are refused; every TLS 1.2 suite this OpenSSL
  knows is tried and the accepted ones listed; TLS 1.3 suites through
  `openssl s_client` where the hub speaks 1.3), and the agent offers only
  those as a client;
- http10_chunked: an HTTP/1.0 request with Transfer-Encoding is answered 400
  and the connection closed (RFC 9112 §6.1);
- files_owner_only: started with umask 022 outside systemd, the hub's
  database, its -wal/-shm, the CRL and the keys it writes are 0600;
- duplicate_keys: a batch naming a key twice is refused and stores nothing;
- no_ou_certificate: a certificate without OU is told so;
- lookup_guessing: 200 guessed order ids from one terminal: slowed (429 with
  Retry-After), flagged (log once, /metrics, stats), and with
  orders_own_store no other store's order comes back; another terminal is
  not slowed;
- signed_orders: with [lookup] order_secret only a signed order code finds
  the order;
- write_key_guessing / enroll_token_guessing: failed secrets from one
  address get 429 with a Retry-After that doubles up to the cap; the right
  secret from another address (or another forwarded address behind a
  trusted proxy) is not slowed; a success resets. Prints tries/s.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import threading
import time

import tslib
from tslib import HUB_BIN, Fail, check, run, wait_for

# The suites the hub may accept (OpenSSL names), TLS 1.2 and 1.3.
AEAD_12 = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
           "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256",
           "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"}
AEAD_13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
# One of each kind the probe found offered (mbedTLS's default list).
MUST_REFUSE = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES128-CCM8",
               "ECDHE-ECDSA-CAMELLIA128-SHA256"]


def start_hub(w, extra=""):
    return w.start_hub(extra=extra)


def _hub_best(w):
    out = run([HUB_BIN, "version"]).stdout
    return "TLS 1.3" if "up to TLS 1.3" in out else "TLS 1.2"


# ---- TLS suites ---------------------------------------------------------------

def _try12(w, cipher):
    """The suite the hub took when a TLS 1.2 client offers only cipher, or None."""
    ctx = w.hub_ssl("t01")
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher + ":@SECLEVEL=0")
    # (OpenSSL lists the TLS 1.3 suites too; SHA-1 suites say "TLSv1")
    offered = [c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    check(offered == [cipher], f"the client cannot offer {cipher} alone: {offered}")
    try:
        with socket.create_connection(("127.0.0.1", w.hub_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.cipher()[0]
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return None


def _try13(w, suite):
    """Whether the hub completes a TLS 1.3 handshake offering only suite."""
    c = w.certs
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{w.hub_port}",
                        "-servername", "localhost", "-tls1_3", "-ciphersuites", suite,
                        "-CAfile", f"{c}/ca.pem", "-cert", f"{c}/t01.pem", "-key", f"{c}/t01.key",
                        "-brief"], input=b"", capture_output=True, timeout=20)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    m = re.search(r"Ciphersuite: (\S+)", out)
    return m.group(1) if m else None


# IANA codes of the suites a ClientHello may name (RFC 8446 B.4, RFC 5289,
# RFC 7905), and the signalling values that are not suites (RFC 5746, 7507).
SUITE_NAMES = {
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256", 0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}
SCSV = {0x00FF, 0x5600}


def _read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise Fail(f"the agent closed after {len(buf)} of {n} bytes of its ClientHello")
        buf += chunk
    return buf


def _agent_offers(w):
    """The suites the agent offers as a client, read from its ClientHello
    itself (RFC 5246 7.4.1.2 / RFC 8446 4.1.2) by a bare TCP listener: no
    TLS library's idea of "shared" ciphers in between (Python's
    shared_ciphers() gives the server's own list on some versions)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = {}

    def serve():
        srv.settimeout(20)
        try:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                head = _read_exact(conn, 5)  # record: type, version, length
                if head[0] != 22:
                    raise Fail(f"first record is type {head[0]}, not a handshake")
                rec = _read_exact(conn, int.from_bytes(head[3:5], "big"))
                if rec[0] != 1:
                    raise Fail(f"first handshake message is type {rec[0]}, not ClientHello")
                i = 4 + 2 + 32  # handshake header, client_version, random
                i += 1 + rec[i]  # session_id
                n = int.from_bytes(rec[i:i + 2], "big")
                codes = [int.from_bytes(rec[i + 2 + k:i + 4 + k], "big") for k in range(0, n, 2)]
                got["offered"] = [SUITE_NAMES.get(c, f"0x{c:04X}") for c in codes
                                  if c not in SCSV]
        except Exception as e:  # noqa: BLE001
            got["error"] = repr(e)
        finally:
            srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    w.start_agent(url=f"https://localhost:{port}")
    t.join(25)
    check("offered" in got, f"no ClientHello from the agent: {got}")
    return got["offered"]


def tls_suites(w):
    start_hub(w)
    for cipher in MUST_REFUSE:
        took = _try12(w, cipher)
        print(f"TLS 1.2 offering only {cipher}: {'accepted ' + took if took else 'refused'}")
        check(took is None, f"the hub accepted {cipher}")
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.set_ciphers("ALL:@SECLEVEL=0")
    every = sorted({c["name"] for c in probe.get_ciphers() if c["protocol"] != "TLSv1.3"})
    accepted = [c for c in every if _try12(w, c)]
    print(f"TLS 1.2: {len(every)} suites tried, accepted: {', '.join(accepted)}")
    check(set(accepted) <= AEAD_12, f"accepted beyond the AEAD list: {set(accepted) - AEAD_12}")
    check({"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"} <= set(accepted),
          f"the GCM suites must be accepted: {accepted}")
    if _hub_best(w) == "TLS 1.3":
        tried = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                 "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
                 "TLS_AES_128_CCM_8_SHA256"]
        acc13 = [s for s in tried if _try13(w, s)]
        print(f"TLS 1.3: tried {', '.join(tried)}; accepted: {', '.join(acc13)}")
        check(set(acc13) <= AEAD_13, f"TLS 1.3 accepted {set(acc13) - AEAD_13}")
        check("TLS_AES_128_GCM_SHA256" in acc13, "TLS 1.3 must take AES-128-GCM")
    else:
        print("TLS 1.3: this mbedTLS has none (TLS 1.2 only)")
    offered = _agent_offers(w)
    print(f"the agent offers: {', '.join(offered)}")
    allowed = AEAD_12 | AEAD_13  # an agent on 3.6 offers its TLS 1.3 suites too
    check(offered and set(offered) <= allowed, f"the agent offers {set(offered) - allowed}")


# ---- HTTP framing -------------------------------------------------------------

def http10_chunked(w):
    start_hub(w)
    ctx = w.hub_ssl("t01")
    with socket.create_connection(("127.0.0.1", w.hub_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /livez HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not chunk:
                    break
                data += chunk
    line = data.split(b"\r\n")[0].decode()
    print(f"HTTP/1.0 + chunked: {line!r}, then the connection closed")
    check(" 400 " in line + " ", f"expected 400, got {data[:200]!r}")
    check(b"Connection: close" in data, f"the answer must say close: {data[:300]!r}")
    # the same over HTTP/1.1 is served
    s, body = w.hub_request("GET", "/livez", cert="t01")
    check(s == 200, f"/livez: {s} {body}")


# ---- file modes ---------------------------------------------------------------

def files_owner_only(w):
    if tslib.PG_URI:
        print("skipped: the database is a PostgreSQL server")
        return
    old = os.umask(0o022)
    try:
        # keys and certificates from pki, made under the lax umask
        w.pki("init", "--dir", f"{w.dir}/pki2", "--cn", "umask CA")
        w.pki("issue", "--dir", f"{w.dir}/pki2", "--cn", "T05", "--ou", "S001", "--o", "acme",
              "--out", f"{w.dir}/pki2/t05")
        start_hub(w, extra=f"[hub]\nca_key = {w.certs}/ca.key\n")
        s, body = w.send_batch(tslib.customer_batch())
        check(s == 200, f"batch: {s} {body}")
        wait_for(lambda: os.path.exists(w.db + "-wal") and os.path.exists(w.db + "-shm"),
                 what="the WAL files")
        run([HUB_BIN, "crl", "-c", os.path.join(w.dir, "hub.conf"), "--out", f"{w.dir}/crl.pem"])
    finally:
        os.umask(old)
    files = [w.db, w.db + "-wal", w.db + "-shm", f"{w.dir}/pki2/ca.key",
             f"{w.dir}/pki2/t05.key"]
    for f in files:
        mode = stat.S_IMODE(os.stat(f).st_mode)
        print(f"{oct(mode)} {os.path.relpath(f, w.dir)}")
        check(mode & 0o077 == 0, f"{f} is {oct(mode)}: readable by others")
    # The CRL and certificates are public by design (serials, public keys
    # and signatures; nginx reads them): readable, but nobody else may
    # change them.
    for f in (f"{w.dir}/crl.pem", f"{w.dir}/pki2/t05.pem"):
        mode = stat.S_IMODE(os.stat(f).st_mode)
        print(f"{oct(mode)} {os.path.relpath(f, w.dir)} (public)")
        check(mode & 0o022 == 0, f"{f} is {oct(mode)}: writable by others")


# ---- JSON and certificates ----------------------------------------------------

def duplicate_keys(w):
    start_hub(w)
    auth = base64.b64encode(f"{tslib.WRITE_KEY}:".encode()).decode()
    raw = ('{"batch":[{"type":"identify","userId":"u-ada","userId":"u-eve",'
           '"traits":{"name":"Eve"}}]}')
    s, body = w.hub_request("POST", "/v1/batch", raw, headers={
        "Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    print(f"batch with userId twice: {s} {body}")
    check(s == 400 and "duplicate" in json.dumps(body), f"expected 400 duplicate: {s} {body}")
    check(w.hub_stats()["customers"] == 0, "nothing may be stored")
    raw_p = ('{"batch":[{"type":"track","event":"Order Completed","messageId":"m1",'
             '"messageId":"m2","properties":{}}]}')
    s, body = w.hub_request("POST", "/v1/purchases", raw_p, cert="t01",
                            headers={"Content-Type": "application/json"})
    print(f"purchases with messageId twice: {s} {body}")
    check(s == 400 and "duplicate" in json.dumps(body), f"expected 400 duplicate: {s} {body}")


def no_ou_certificate(w):
    start_hub(w)
    w.pki("issue", "--dir", w.certs, "--cn", "T98", "--out", f"{w.certs}/bare")
    w.pki("issue", "--dir", w.certs, "--cn", "T97", "--o", "acme", "--out", f"{w.certs}/noou")
    for cert in ("bare", "noou"):
        for path in ("/v1/feed", "/v1/lookup?order=W-1"):
            s, body = w.hub_request("GET", path, cert=cert)
            print(f"{cert} {path}: {s} {body}")
            check(s == 403 and body.get("error") == "client certificate has no OU (store)",
                  f"{cert} {path}: {s} {body}")


# ---- lookups ------------------------------------------------------------------

def _orders(w, ids_stores):
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    ev = []
    for i, (oid, store) in enumerate(ids_stores):
        user = f"u-{oid.lower()}"
        ev.append({"type": "identify", "userId": user, "messageId": f"{user}-id",
                   "timestamp": now, "traits": {"name": f"Customer {oid}"}})
        props = {"order_id": oid, "total": 10.0 + i, "currency": "EUR",
                 "products": [{"product_id": "SKU-1", "price": 10.0, "quantity": 1}]}
        if store:
            props["pickup_store"] = store
        ev.append({"type": "track", "event": "Order Completed", "userId": user,
                   "messageId": f"{user}-o", "timestamp": now, "properties": props})
    s, body = w.send_batch(ev)
    check(s == 200, f"orders batch: {s} {body}")


class Terminal:
    """A kept-alive TLS connection of one terminal certificate."""

    def __init__(self, w, cert):
        self.conn = http.client.HTTPSConnection("localhost", w.hub_port,
                                                context=w.hub_ssl(cert), timeout=10)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        return r.status, r.getheader("Retry-After"), json.loads(data) if data else None

    def close(self):
        self.conn.close()


def _metrics(w):
    s, text = w.hub_request("GET", "/metrics", cert="t01")
    check(s == 200, f"/metrics: {s}")
    return text


def lookup_guessing(w):
    for cn, ou, name in (("T02", "S001", "t02"), ("T01", "S002", "s002-t01")):
        w.pki("issue", "--dir", w.certs, "--cn", cn, "--ou", ou, "--o", "acme",
              "--out", f"{w.certs}/{name}")
    start_hub(w, extra="[lookup]\norders_own_store = true\n")
    # ten click-and-collect orders for S002, one for S001, one for home delivery
    _orders(w, [(f"W-{1001 + i}", "S002") for i in range(10)] + [("W-1100", "S001"),
                                                                 ("W-1150", None)])
    t = Terminal(w, "t01")
    answers = []
    t0 = time.monotonic()
    for i in range(200):
        s, ra, body = t.get(f"/v1/lookup?order=W-{1000 + i}")
        answers.append((1000 + i, s, ra, body))
    dt = time.monotonic() - t0
    t.close()
    by = {}
    for _, s, _, _ in answers:
        by[s] = by.get(s, 0) + 1
    print(f"200 guesses in {dt:.2f} s from S001/T01: {by}")
    foreign = [(o, b) for o, s, _, b in answers
               if s == 200 and (b.get("order") or {}).get("store") != "S001"]
    check(not foreign, f"orders of other stores came back: {foreign[:3]}")
    limited = [(o, ra, b) for o, s, ra, b in answers if s == 429]
    check(len(limited) >= 150, f"only {len(limited)} of 200 guesses were refused 429")
    check(all(ra and int(ra) >= 1 for _, ra, _ in limited), "429 without Retry-After")
    check(all(b.get("retry_after") == int(ra) for _, ra, b in limited),
          "the body's retry_after must match the header")
    # flagged: in /metrics, in stats, logged once, and slowed (Retry-After
    # beyond the 1 s an unflagged terminal waits for its next token)
    m = _metrics(w)
    check('tillside_hub_lookup_flagged{store="S001",terminal="T01"} 1' in m,
          f"T01 not flagged in /metrics:\n{m}")
    check("tillside_hub_lookup_flagged_terminals 1" in m, "flagged gauge")
    check(re.search(r'tillside_hub_lookups_total\{result="limited"\} (\d+)', m), "limited count")
    flagged = w.hub_stats().get("flagged_terminals", [])
    print(f"stats flagged_terminals: {flagged}")
    check([(f["store"], f["terminal"]) for f in flagged] == [("S001", "T01")],
          f"stats: {flagged}")
    log = w.hub.log()
    check(log.count("T01 flagged") == 1, f"flag logged {log.count('T01 flagged')} times")
    check(log.count("lookups over the limit") <= 2, "429s must be logged rate-limited")
    late = [int(ra) for o, s, ra, _ in answers[-20:] if s == 429]
    print(f"Retry-After of the last 429s (flagged): {sorted(set(late))}")
    check(late and max(late) > 1, f"a flagged terminal is not slowed: {late}")
    # another terminal of the same store is not slowed, and finds its order
    t2 = Terminal(w, "t02")
    s, ra, body = t2.get("/v1/lookup?order=W-1100")
    check(s == 200 and body["order"]["store"] == "S001", f"T02 own-store order: {s} {body}")
    s, ra, body = t2.get("/v1/lookup?order=W-1150")
    check(s == 404, f"a home-delivery order names no store: {s} {body}")
    t2.close()
    # the order T01 guessed exists and its own store finds it
    t3 = Terminal(w, "s002-t01")
    s, ra, body = t3.get("/v1/lookup?order=W-1001")
    check(s == 200 and body["order"]["store"] == "S002", f"S002 finds its order: {s} {body}")
    t3.close()


def signed_orders(w):
    secret = "5e" * 32
    w.pki("issue", "--dir", w.certs, "--cn", "T02", "--ou", "S001", "--o", "acme",
          "--out", f"{w.certs}/t02")
    start_hub(w, extra=f"[lookup]\norder_secret = {secret}\n")
    _orders(w, [("W-2001", "S001"), ("W-2002", None)])
    sig = hmac.new(bytes.fromhex(secret), b"W-2001", hashlib.sha256).hexdigest()[:32]
    t = Terminal(w, "t01")
    cases = [("W-2001", 403), (f"W-2001.{sig}", 200), (f"W-2001.{sig.upper()}", 200),
             (f"W-2002.{sig}", 403), (f"W-2001.{'0' * 32}", 403), (f"W-2001.{sig[:30]}", 403)]
    for code, want in cases:
        s, _, body = t.get(f"/v1/lookup?order={code}")
        print(f"order={code}: {s} {body.get('error') or body.get('order', {}).get('order_id')}")
        check(s == want, f"{code}: {s} {body}, wanted {want}")
        if s == 200:
            check(body["order"]["order_id"] == "W-2001", f"{body}")
    t.close()


# ---- failed secrets -----------------------------------------------------------

def _post(w, port, path, body, headers, source="127.0.0.1", ctx=None, plain=False):
    if plain:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                          source_address=(source, 0))
    else:
        conn = http.client.HTTPSConnection("localhost", port, context=ctx or w.hub_ssl("cdp"),
                                           timeout=10, source_address=(source, 0))
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read().decode()
    conn.close()
    return r.status, r.getheader("Retry-After"), data


def _basic(key):
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
            "Content-Type": "application/json"}


def guess_rate(fn, seconds=2.0):
    """Tries per second that reached the secret check (not refused 429),
    over one kept-alive connection."""
    n_tries = n_429 = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        s = fn()
        if s == 429:
            n_429 += 1
        else:
            n_tries += 1
    dt = time.monotonic() - t0
    return n_tries / dt, n_429 / dt


def _batch_guesser(w):
    conn = http.client.HTTPSConnection("localhost", w.hub_port, context=w.hub_ssl("cdp"),
                                       timeout=10)
    body = json.dumps({"batch": []})

    def one():
        conn.request("POST", "/v1/batch", body=body, headers=_basic(os.urandom(8).hex()))
        r = conn.getresponse()
        r.read()
        return r.status
    return one, conn


def _slowed(what, fn, conn):
    """A guesser's tries per second that reach the check, printed and
    bounded: 5 free failures and the first waits fit in 2 s, no more."""
    tries, refused = guess_rate(fn)
    conn.close()
    print(f"{what} guessing: {tries:.1f} tries/s reach the check, {refused:.0f}/s answered 429")
    check(tries < 10, f"{what}: {tries:.1f} tries/s")


def _enroll_guesser(w, port, source):
    """One random enrolment token per call on a kept-alive connection."""
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10,
                                       source_address=(source, 0))

    def one():
        conn.request("POST", "/v1/enroll", body=json.dumps({"token": os.urandom(16).hex(),
                                                           "csr": "x"}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status
    return one, conn


def write_key_guessing(w):
    start_hub(w, extra="[throttle]\nfree_failures = 5\nmax_delay_s = 4\n")
    empty = json.dumps({"batch": []})
    seen = [_post(w, w.hub_port, "/v1/batch", empty, _basic("wrong"))[:2] for _ in range(6)]
    print(f"six wrong keys: {seen}")
    check([s for s, _ in seen[:5]] == [401] * 5, f"the first five are checked: {seen}")
    check(seen[5] == (429, "1"), f"the sixth waits 1 s: {seen[5]}")
    s, ra, _ = _post(w, w.hub_port, "/v1/batch", empty, _basic(tslib.WRITE_KEY))
    check(s == 429, f"even the right key waits from the guessing address: {s}")
    s, _, data = _post(w, w.hub_port, "/v1/batch", empty, _basic(tslib.WRITE_KEY),
                       source="127.0.0.2")
    check(s == 200, f"the right key from another address is not slowed: {s} {data}")
    # the wait doubles, up to the cap (4 s)
    waits = []
    for _ in range(3):
        time.sleep(int(seen[-1][1]) + 0.2)
        s1 = _post(w, w.hub_port, "/v1/batch", empty, _basic("wrong"))[:2]
        seen.append(_post(w, w.hub_port, "/v1/batch", empty, _basic("wrong"))[:2])
        check(s1[0] == 401 and seen[-1][0] == 429, f"after the wait: {s1} {seen[-1]}")
        waits.append(int(seen[-1][1]))
    print(f"Retry-After after each further failure: {waits}")
    check(waits == [2, 4, 4], f"doubling capped at 4 s: {waits}")
    # a success resets
    time.sleep(4.2)
    s, _, _ = _post(w, w.hub_port, "/v1/batch", empty, _basic(tslib.WRITE_KEY))
    check(s == 200, f"the right key after the wait: {s}")
    s = [_post(w, w.hub_port, "/v1/batch", empty, _basic("wrong"))[0] for _ in range(5)]
    check(s == [401] * 5, f"reset after a success: {s}")
    log = w.hub.log()
    check(0 < log.count("failed write key attempts") <= 6, "shut-outs logged, not every guess")
    # measured: what a guesser gets now (from a fresh address)
    _slowed("write key", *_batch_guesser(w))


def write_key_behind_proxy(w):
    """On the plain listener the trusted proxy's X-Real-IP is the address."""
    plain = tslib.free_port()
    start_hub(w, extra=f"[hub]\nlisten_plain = 127.0.0.1:{plain}\ntrusted_proxy = 127.0.0.1\n"
                       "[throttle]\nfree_failures = 3\n")
    wait_for(lambda: w._port_open(plain), what="plain listener")
    empty = json.dumps({"batch": []})

    def via(addr, key):
        h = dict(_basic(key), **{"X-Real-IP": addr, "X-SSL-Client-Verify": "NONE"})
        return _post(w, plain, "/v1/batch", empty, h, plain=True)[0]
    got = [via("203.0.113.7", "wrong") for _ in range(4)]
    print(f"via the proxy from 203.0.113.7: {got}")
    check(got == [401, 401, 401, 429], f"{got}")
    s = via("198.51.100.9", tslib.WRITE_KEY)
    check(s == 200, f"another client behind the same proxy is not slowed: {s}")


def enroll_token_guessing(w):
    enroll_port = tslib.free_port()
    start_hub(w, extra=f"[hub]\nenroll_listen = 127.0.0.1:{enroll_port}\n"
                       f"ca_key = {w.certs}/ca.key\n[throttle]\nfree_failures = 5\n")
    wait_for(lambda: w._port_open(enroll_port), what="enrolment listener")
    tok = run([HUB_BIN, "enroll-token", "-c", os.path.join(w.dir, "hub.conf"), "--store", "S001",
               "--terminal", "T07", "--ttl", "1h"]).stdout.strip().split()[-1]
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    hdr = {"Content-Type": "application/json"}

    def guess(token, source="127.0.0.1"):
        body = json.dumps({"token": token, "csr": "x"})
        return _post(w, enroll_port, "/v1/enroll", body, hdr, source=source, ctx=ctx)
    seen = [guess(os.urandom(16).hex())[:2] for _ in range(6)]
    print(f"six wrong tokens: {seen}")
    check([s for s, _ in seen[:5]] == [403] * 5 and seen[5] == (429, "1"), f"{seen}")
    # the real token from another address is looked at (its CSR "x" is bad: 400)
    s, _, data = guess(tok, source="127.0.0.2")
    check(s == 400 and "csr" in data.lower(), f"a good token from elsewhere: {s} {data}")
    _slowed("enrolment token", *_enroll_guesser(w, enroll_port, "127.0.0.3"))


def measure(w):
    """Not a ctest scenario: guesses per second against whatever hub
    TS_BIN_DIR holds, for docs/OPERATIONS.md (before/after numbers)."""
    enroll_port = tslib.free_port()
    start_hub(w, extra=f"[hub]\nenroll_listen = 127.0.0.1:{enroll_port}\n"
                       f"ca_key = {w.certs}/ca.key\n")
    wait_for(lambda: w._port_open(enroll_port), what="enrolment listener")
    fn, conn = _batch_guesser(w)
    tries, _ = guess_rate(fn, 3.0)
    conn.close()
    print(f"write keys: {tries:.0f} tries/s")
    one, conn = _enroll_guesser(w, enroll_port, "127.0.0.1")
    tries, _ = guess_rate(one, 3.0)
    conn.close()
    print(f"enrolment tokens: {tries:.0f} tries/s")
    t = Terminal(w, "t01")

    def look():
        return t.get(f"/v1/lookup?order=W-{os.urandom(3).hex()}")[0]
    tries, _ = guess_rate(look, 3.0)
    t.close()
    print(f"order lookups from one terminal: {tries:.0f} answered/s")


if __name__ == "__main__":
    tslib.main({f.__name__: f for f in (tls_suites, http10_chunked, files_owner_only,
                                        duplicate_keys, no_ou_certificate, lookup_guessing,
                                        signed_orders, write_key_guessing, write_key_behind_proxy,
                                        enroll_token_guessing, measure)})
