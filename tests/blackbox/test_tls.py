"""Mutual TLS refusals, one test each: the agent refuses a hub certificate
from another CA, with the wrong host name, or expired; the hub refuses a
client without a certificate or with one from another CA."""
import socket
import ssl

import tslib
from tslib import check, wait_for


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


if __name__ == "__main__":
    tslib.main({
        "agent_refuses_other_ca": agent_refuses_other_ca,
        "agent_refuses_wrong_host": agent_refuses_wrong_host,
        "agent_refuses_expired": agent_refuses_expired,
        "agent_missing_cert_stays_up": agent_missing_cert_stays_up,
        "hub_refuses_no_client_cert": hub_refuses_no_client_cert,
        "hub_refuses_other_ca_client": hub_refuses_other_ca_client,
    })
