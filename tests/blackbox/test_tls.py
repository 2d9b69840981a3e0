"""Mutual TLS refusals, one test each: the agent refuses a hub certificate
from another CA, with the wrong host name, or expired; the hub refuses a
client without a certificate or with one from another CA. The hub speaks
the best version its mbedTLS has (TLS 1.3 on 3.6, 1.2 on 2.28). And session
resumption as a third-party client (Python's OpenSSL) sees it, as a TLS 1.2
client (an agent on Debian 12) and with the best version: the hub resumes a
terminal's session with its identity intact, and a terminal revoked since
cannot resume."""
import os
import socket
import ssl

import tslib
from tslib import check, run, wait_for


def _agent_refuses(w, hub_cert_prefix, words):
    w.start_hub(cert=hub_cert_prefix + ".pem", key=hub_cert_prefix + ".key")
    w.start_agent()
    st = wait_for(lambda: (w.status().get("last_error") or None) and w.status(),
                  what="agent to report a sync error")
    err = (st.get("last_error") or "").lower()
    check(any(x in err for x in words), f"last_error does not explain: {st.get('last_error')}")
    check(st["link"] == "offline", f"link should be offline: {st['link']}")
    check(st["cards"] == 0, "nothing may be synced from an untrusted hub")
    log = w.agent.log().lower()
    check(any(x in log for x in words), "agent log does not explain the refusal")


def agent_refuses_other_ca(w):
    o = w.other_ca()
    _agent_refuses(w, f"{o}/hub", ["trust", "ca"])


def agent_refuses_wrong_host(w):
    w.pki("issue", "--dir", w.certs, "--cn", "hub.elsewhere.example", "--dns",
          "hub.elsewhere.example", "--server", "--out", f"{w.certs}/wronghost")
    _agent_refuses(w, f"{w.certs}/wronghost", ["host name", "hostname", "cn mismatch"])


def agent_refuses_expired(w):
    w.pki("issue", "--dir", w.certs, "--cn", "localhost", "--dns", "localhost", "--server",
          "--expired", "--out", f"{w.certs}/expired")
    _agent_refuses(w, f"{w.certs}/expired", ["expired"])


def agent_missing_cert_stays_up(w):
    """A terminal whose certificate file is missing keeps serving the till
    from its cache and says why the link is down."""
    w.start_hub()
    w.start_agent(cert=f"{w.certs}/missing.pem")
    st = wait_for(lambda: w.status().get("last_error") and w.status(),
                  what="agent to report the certificate problem")
    check(st["link"] == "offline", f"link: {st['link']}")
    check("missing.pem" in st["last_error"], f"error does not name the file: {st['last_error']}")
    s, _ = w.api("GET", "/")
    check(s == 200, "the associate page must still be served")


def _hub_refuses(w, ctx):
    w.start_hub()
    refused = False
    try:
        with socket.create_connection(("127.0.0.1", w.hub_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /v1/feed HTTP/1.1\r\nHost: localhost\r\n\r\n")
                data = s.recv(4096)
                # TLS 1.3 reports a missing/bad client certificate after the
                # handshake, on the first read: an alert or a closed socket.
                refused = data == b""
                check(not data.startswith(b"HTTP/1.1 200"), f"hub served: {data[:200]!r}")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        refused = True
        print(f"refused as expected: {e}")
    check(refused, "hub did not refuse the handshake")
    s, _ = w.hub_request("GET", "/livez", cert="t01")
    check(s == 200, "a valid terminal must still be served")


def hub_refuses_no_client_cert(w):
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    _hub_refuses(w, ctx)


def hub_refuses_other_ca_client(w):
    o = w.other_ca()
    ctx = ssl.create_default_context(cafile=f"{w.certs}/ca.pem")
    ctx.load_cert_chain(f"{o}/t66.pem", f"{o}/t66.key")
    _hub_refuses(w, ctx)


# ---- versions --------------------------------------------------------------

def _hub_tls(w):
    """(library, best version) from `tillside-hub version`: ("mbedTLS 3.6.6",
    "TLS 1.3")."""
    line = run([tslib.HUB_BIN, "version"]).stdout.splitlines()[1]
    lib, _, rest = line.partition(", ")
    return lib, rest.rpartition(" up to ")[2]


def hub_speaks_best_tls(w):
    """A client that offers everything gets the best version the hub's mbedTLS
    has, and a TLS 1.2-only client (Debian 12's agent) is still served."""
    w.start_hub()
    lib, best = _hub_tls(w)
    with socket.create_connection(("127.0.0.1", w.hub_port), timeout=5) as raw:
        with w.hub_ssl("t01").wrap_socket(raw, server_hostname="localhost") as s:
            got = s.version().replace("TLSv", "TLS ")
    print(f"{lib}, {got}")
    check(got == best, f"negotiated {got}, the hub's mbedTLS offers up to {best}")
    line, _, _, _ = _get(_ctx(w, "t01", False), w.hub_port, "/v1/feed?limit=1")
    check(" 200 " in line + " ", f"a TLS 1.2 client: {line}")


# ---- session resumption ------------------------------------------------------

def _ctx(w, cert, best):
    """A terminal's client context: TLS 1.2 only (tickets as RFC 5077 has
    them, an agent on Debian 12), or whatever the hub offers best (TLS 1.3
    tickets arrive after the handshake, one fresh per resumption)."""
    ctx = w.hub_ssl(cert)
    if not best:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _get(ctx, port, path, session=None):
    """One GET on a fresh connection offering session; returns (status line,
    body, the connection's session, whether OpenSSL says it was reused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            return head.split(b"\r\n")[0].decode(), body.decode("utf-8", "replace"), \
                s.session, s.session_reused


def hub_resumes_session(w, best=False):
    """A second connection offering the first one's session is resumed by the
    hub (OpenSSL reports it reused), and the hub still knows the terminal:
    its store's feed is served. A certificate without a store is refused the
    same way on the resumed session as on the full one."""
    w.start_hub()
    ctx = _ctx(w, "t01", best)
    line, _, sess, reused = _get(ctx, w.hub_port, "/v1/feed?limit=10")
    check(" 200 " in line + " " and not reused, f"first poll: {line}, reused={reused}")
    check(sess is not None and sess.has_ticket, "the hub must issue a session ticket")
    check(0 < sess.ticket_lifetime_hint <= 3600,
          f"ticket lifetime hint {sess.ticket_lifetime_hint} s (want at most 1 h)")
    for i in range(2):
        line, body, sess2, reused = _get(ctx, w.hub_port, "/v1/feed?limit=10", sess)
        check(reused, f"connection {i + 2} was not resumed")
        check(" 200 " in line + " ", f"resumed poll: {line} {body[:200]}")
        if best:  # TLS 1.3: each resumption brings the next ticket
            check(sess2.has_ticket, "a resumed TLS 1.3 connection must bring a fresh ticket")
            sess = sess2
        else:
            check(sess2.id == sess.id, "a resumed connection carries the same session")
    w.pki("issue", "--dir", w.certs, "--cn", "T09", "--o", "acme", "--out", f"{w.certs}/nostore")
    ctx = _ctx(w, "nostore", best)
    _, _, sess, reused = _get(ctx, w.hub_port, "/v1/feed")
    line, body, _, reused = _get(ctx, w.hub_port, "/v1/feed", sess)
    check(reused, "the store-less terminal's second connection was not resumed")
    check(" 403 " in line + " " and "no OU (store)" in body,
          f"identity on the resumed session: {line} {body[:200]}")


def hub_resumes_session_best(w):
    hub_resumes_session(w, best=True)


def revoked_cannot_resume(w, best=False):
    """`tillside-hub revoke` after a terminal's session began: its ticket is
    not taken, the full handshake that follows refuses the certificate
    (certificate_revoked), and another terminal's sessions still resume."""
    w.start_hub()
    c = w.certs
    w.pki("issue", "--dir", c, "--cn", "T02", "--ou", "S001", "--o", "acme", "--out", f"{c}/t02")
    ctx1, ctx2 = _ctx(w, "t01", best), _ctx(w, "t02", best)
    _, _, s1, _ = _get(ctx1, w.hub_port, "/v1/feed")
    _, _, s2, _ = _get(ctx2, w.hub_port, "/v1/feed")
    line, _, _, reused = _get(ctx1, w.hub_port, "/v1/feed", s1)
    check(reused and " 200 " in line + " ", f"T01 before revocation: {line}, reused={reused}")
    run([tslib.HUB_BIN, "revoke", "--terminal", "T01", "--store", "S001", "--reason", "stolen",
         "-c", os.path.join(w.dir, "hub.conf")])
    refused = False
    try:
        line, body, _, reused = _get(ctx1, w.hub_port, "/v1/feed", s1)
        check(not reused, "the revoked terminal's session was resumed")
        check(" 200 " not in line + " ", f"the revoked terminal was served: {line}")
        refused = line == ""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        refused = True
        check("revoked" in str(e).lower(), f"refusal does not say revoked: {e}")
    check(refused, "the hub did not refuse the revoked terminal")
    line, _, _, reused = _get(ctx2, w.hub_port, "/v1/feed", s2)
    check(reused and " 200 " in line + " ", f"T02 after T01's revocation: {line}, {reused}")
    log = w.hub.log()
    check("certificate revoked" in log and "CN=T01" in log,
          "hub log must name the revoked subject")


def revoked_cannot_resume_best(w):
    revoked_cannot_resume(w, best=True)


if __name__ == "__main__":
    tslib.main({
        "agent_refuses_other_ca": agent_refuses_other_ca,
        "agent_refuses_wrong_host": agent_refuses_wrong_host,
        "agent_refuses_expired": agent_refuses_expired,
        "agent_missing_cert_stays_up": agent_missing_cert_stays_up,
        "hub_refuses_no_client_cert": hub_refuses_no_client_cert,
        "hub_refuses_other_ca_client": hub_refuses_other_ca_client,
        "hub_speaks_best_tls": hub_speaks_best_tls,
        "hub_resumes_session": hub_resumes_session,
        "hub_resumes_session_best": hub_resumes_session_best,
        "revoked_cannot_resume": revoked_cannot_resume,
        "revoked_cannot_resume_best": revoked_cannot_resume_best,
    })
