"""Two hub processes on one PostgreSQL database behind real nginx as a TCP
balancer (the `stream` module, round robin, TLS passed through to the
hubs), with the stream config we ship (packaging/nginx/
tillside-hub-stream.conf) and only its addresses and port rewritten. Run
under tests/tools/with_pg.sh.

- round_robin_resumes: a terminal reconnecting through nginx, each time
  offering the session it has, resumes on both hubs (each hub's /metrics
  counts resumed handshakes, together one per reconnect); after
  `tillside-hub revoke` it resumes on neither (both hubs refuse it and log
  its subject), while another terminal still resumes.

The stream module is a test package (./run installs libnginx-mod-stream):
without it this fails, it does not skip.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tslib  # noqa: E402
from tslib import check, run, wait_for  # noqa: E402
from test_nginx import Nginx, nginx_bin  # noqa: E402
from test_pg import _refused, metrics, start_hubs  # noqa: E402
from test_tls import _ctx, _get  # noqa: E402

RECONNECTS = 6


def handshakes(w, hub):
    """The hub's completed TLS handshakes on its main listener: (full, resumed)."""
    st, text = metrics(w, hub["port"])
    check(st == 200, f"/metrics on :{hub['port']} answered {st}")
    got = {}
    for kind in ("full", "resumed"):
        m = re.search(r'^tillside_hub_tls_handshakes_total\{listener="main",kind="%s"\} (\d+)$'
                      % kind, text, re.M)
        check(m, f"/metrics has no {kind} handshake count:\n{text[-800:]}")
        got[kind] = int(m.group(1))
    return got["full"], got["resumed"]


def start(w):
    """Two hubs on the database and nginx's stream balancer in front."""
    hubs = start_hubs(w)
    ng = Nginx(w, stream_to=[h["port"] for h in hubs])
    ng.start()
    return hubs, ng


def round_robin_resumes(w):
    hubs, ng = start(w)
    c = w.certs
    w.pki("issue", "--dir", c, "--cn", "T02", "--ou", "S001", "--o", "acme", "--out", f"{c}/t02")
    ctx1, ctx2 = _ctx(w, "t01", False), _ctx(w, "t02", False)
    before = [handshakes(w, h)[1] for h in hubs]
    line, _, s1, reused = _get(ctx1, ng.port, "/v1/feed")
    check(" 200 " in line + " " and not reused and s1.has_ticket, f"T01's first poll: {line}")
    sess = s1
    for i in range(RECONNECTS):
        line, body, s, reused = _get(ctx1, ng.port, "/v1/feed?limit=10", sess)
        check(reused, f"reconnect {i + 1} through nginx did not resume its session")
        check(" 200 " in line + " " and '"items"' in body, f"resumed poll: {line} {body[:200]}")
    resumed = [handshakes(w, h)[1] - b for h, b in zip(hubs, before)]
    check(all(n >= 1 for n in resumed) and sum(resumed) == RECONNECTS,
          f"resumed handshakes per hub {resumed}: round robin should have resumed on both, "
          f"{RECONNECTS} in all")
    _, _, s2, _ = _get(ctx2, ng.port, "/v1/feed")
    run([tslib.HUB_BIN, "revoke", "--terminal", "T01", "--store", "S001", "--reason", "stolen",
         "-c", hubs[0]["conf"]])
    before = [handshakes(w, h)[1] for h in hubs]
    for _ in hubs:  # round robin: one connection to each
        _refused(ctx1, ng.port, s1)
    for i in range(len(hubs)):
        path = os.path.join(w.dir, f"hub{i}.log")
        wait_for(lambda: re.search(r"certificate revoked.*CN=T01", open(path).read()),
                 what=f"hub{i} to log its refusal of the revoked terminal T01")
    after = [handshakes(w, h)[1] for h in hubs]
    check(after == before, f"a revoked terminal resumed: resumed handshakes {before} -> {after}")
    line, _, _, reused = _get(ctx2, ng.port, "/v1/feed", s2)
    check(reused and " 200 " in line + " ", f"T02 through nginx: {line}, reused={reused}")


if __name__ == "__main__":
    if not tslib.PG_URI:
        print("TS_TEST_PG is not set: run under tests/tools/with_pg.sh", file=sys.stderr)
        sys.exit(2)
    if not nginx_bin():
        print("nginx is not installed (./run test installs it)", file=sys.stderr)
        sys.exit(1)
    tslib.main({"round_robin_resumes": round_robin_resumes})
