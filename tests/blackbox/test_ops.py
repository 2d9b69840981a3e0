"""Operations: the Debian packages on this machine (install, files, user,
units, conffile kept across an upgrade, purge), the units' hardening score,
Prometheus' own checker on both /metrics, the systemd notify protocol and
journald priorities, `tillside doctor` and both check-config commands.

The package scenario installs into the real system (CI runs as root on a
throwaway machine) and removes everything it added; it needs no running
systemd. docs/OPERATIONS.md describes what is checked here.
"""
import datetime
import email.utils
import fcntl
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import tslib
from tslib import check, run, wait_for

SRC = os.environ.get("TS_SRC_DIR", os.path.join(os.path.dirname(__file__), "../.."))
UNITS = os.path.join(SRC, "packaging", "systemd")


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


# ---- packages ---------------------------------------------------------------

def _cpack(w, version, out):
    env = dict(os.environ, TS_PKG_VERSION=version)
    run(["cpack", "-G", "DEB", "--config", os.path.join(tslib.BIN, "CPackConfig.cmake"),
         "-B", out], env=env)
    debs = sorted(glob.glob(os.path.join(out, "*.deb")))
    check(len(debs) == 2, f"cpack made {debs}")
    return debs


def _installed(pkg):
    p = run(["dpkg-query", "-W", "-f=${Status} ${Version}", pkg], check_rc=False)
    return p.stdout if p.returncode == 0 and "install ok installed" in p.stdout else ""


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def package_install_upgrade(w):
    if os.geteuid() != 0:
        skip("installs packages into the system: needs root (CI runs as root)")
    for tool in ("cpack", "dpkg", "dpkg-deb"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed")
    if _installed("tillside") or _installed("tillside-hub"):
        skip("tillside packages are already installed on this machine; not touching them")
    # Two build directories may run this at once: dpkg has one database.
    lock = open("/tmp/ts-pkg-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    users_before = {u: _user_exists(u) for u in ("tillside", "tillside-hub")}
    old = _cpack(w, "0.1.0~test1", os.path.join(w.dir, "v1"))
    new = _cpack(w, "0.1.0~test2", os.path.join(w.dir, "v2"))
    try:
        # Debian's checker, reported for the log only.
        if shutil.which("lintian"):
            p = run(["lintian", "--no-tag-display-limit", *old], check_rc=False)
            print("lintian:\n" + (p.stdout + p.stderr).strip())

        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["dpkg", "-i", *old], env=env)
        check(_installed("tillside").endswith("0.1.0~test1"), "tillside 0.1.0~test1 installed")
        check(_installed("tillside-hub").endswith("0.1.0~test1"), "tillside-hub installed")

        for f in ("/usr/bin/tillside", "/usr/bin/tillside-hub"):
            check(os.access(f, os.X_OK), f"{f} executable")
        for f in ("/lib/systemd/system/tillside.service", "/lib/systemd/system/tillside-hub.service",
                  "/lib/udev/rules.d/60-tillside-scanners.rules",
                  "/usr/share/man/man1/tillside.1.gz", "/usr/share/man/man1/tillside-hub.1.gz",
                  "/usr/share/man/man5/tillside.conf.5.gz",
                  "/usr/share/doc/tillside-hub/examples/nginx/tillside-hub.conf",
                  "/usr/share/doc/tillside-hub/examples/nginx/tillside-hub-stream.conf"):
            check(os.path.isfile(f), f"{f} installed")
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "tillside", "tillside-hub"]).stdout
        check("/etc/tillside/tillside.conf" in conffiles and "/etc/tillside-hub/hub.conf" in
              conffiles, f"conffiles registered: {conffiles!r}")
        p = run(["/usr/bin/tillside", "version"])
        check("tillside" in p.stdout, f"installed binary runs: {p.stdout!r}")

        # The users, their groups, the state directories and who may read the
        # configuration (it holds the tenant key).
        u = pwd.getpwnam("tillside")
        groups = {g.gr_name for g in grp.getgrall() if "tillside" in g.gr_mem}
        check({"dialout", "plugdev", "input"} <= groups, f"tillside's groups: {groups}")
        check(u.pw_shell.endswith("nologin"), f"tillside shell {u.pw_shell}")
        st = os.stat("/var/lib/tillside")
        check(st.st_uid == u.pw_uid and (st.st_mode & 0o777) == 0o700,
              f"/var/lib/tillside owner {st.st_uid} mode {oct(st.st_mode)}")
        st = os.stat("/etc/tillside/tillside.conf")
        check(st.st_gid == u.pw_gid and (st.st_mode & 0o777) == 0o640,
              f"tillside.conf group {st.st_gid} mode {oct(st.st_mode)}")
        hu = pwd.getpwnam("tillside-hub")
        st = os.stat("/var/lib/tillside-hub")
        check(st.st_uid == hu.pw_uid, "hub state dir owned by tillside-hub")

        # The shipped configuration is a template: check-config says which
        # key of which line is missing, as ExecStartPre would in the journal.
        p = run(["/usr/bin/tillside", "check-config"], check_rc=False)
        check(p.returncode == 1 and re.search(r"/etc/tillside/tillside.conf:\d+: \[hub\] url:",
                                              p.stderr), f"template check-config: {p.stderr!r}")

        # An operator's edit survives an upgrade to a newer build.
        with open("/etc/tillside/tillside.conf", "a") as f:
            f.write("\n; edited by the test: kept across upgrades\n")
        with open("/etc/tillside-hub/hub.conf", "a") as f:
            f.write("\n; hub edited by the test\n")
        run(["dpkg", "-i", *new], env=env)
        check(_installed("tillside").endswith("0.1.0~test2"), "upgraded to 0.1.0~test2")
        with open("/etc/tillside/tillside.conf") as f:
            check("edited by the test" in f.read(), "agent conffile edit survives the upgrade")
        with open("/etc/tillside-hub/hub.conf") as f:
            check("hub edited by the test" in f.read(), "hub conffile edit survives the upgrade")
        check(not glob.glob("/etc/tillside/*.dpkg-*"), "no .dpkg-new/.dpkg-dist left")

        # Purge removes the files and the cached customer data.
        open("/var/lib/tillside/cache.db", "w").close()
        run(["dpkg", "--purge", "tillside", "tillside-hub"], env=env)
        for f in ("/usr/bin/tillside", "/lib/systemd/system/tillside.service",
                  "/etc/tillside/tillside.conf", "/var/lib/tillside"):
            check(not os.path.exists(f), f"{f} gone after purge")
    finally:
        if _installed("tillside") or _installed("tillside-hub"):
            run(["dpkg", "--purge", "tillside", "tillside-hub"], check_rc=False)
        # Leave the machine as found: the users are ours only if they were
        # not there before (Debian's postrm keeps system users).
        for name, existed in users_before.items():
            if not existed and _user_exists(name):
                run(["userdel", name], check_rc=False)
        lock.close()


# ---- units ------------------------------------------------------------------

def _exposure(unit):
    p = run(["systemd-analyze", "security", "--offline=true", "--no-pager",
             os.path.join(UNITS, unit)], check_rc=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout + p.stderr)
    check(m, f"no exposure in systemd-analyze output:\n{p.stdout}{p.stderr}")
    return float(m.group(1)), p.stdout


def unit_security(w):
    if not shutil.which("systemd-analyze"):
        skip("systemd-analyze is not installed (Debian package systemd)")
    for unit in ("tillside.service", "tillside-hub.service"):
        level, out = _exposure(unit)
        print(f"{unit}: exposure {level}")
        check(level <= 2.0, f"{unit}: exposure {level} > 2.0\n{out}")
    with open(os.path.join(UNITS, "tillside.service")) as f:
        unit = f.read()
    for need in ("Type=notify", "WatchdogSec=", "DevicePolicy=closed", "DeviceAllow=char-hidraw",
                 "DeviceAllow=char-usb_device", "DeviceAllow=char-ttyACM", "DeviceAllow=char-input",
                 "ProtectSystem=strict", "StateDirectory=tillside", "NoNewPrivileges=yes",
                 "SystemCallFilter=@system-service"):
        check(need in unit, f"tillside.service lacks {need}")


# ---- system call filter -------------------------------------------------------

def _expand(group, seen=None):
    """The system calls of a systemd group (@name), nested groups resolved."""
    out = run(["systemd-analyze", "syscall-filter", group]).stdout
    names = set()
    for ln in out.splitlines()[1:]:
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        names |= _expand(ln) if ln.startswith("@") else {ln}
    return names


def _allowed(unit):
    """What the SystemCallFilter= lines of a unit let through, read in order
    as systemd.exec(5) says: the first line is an allow list, then each line
    adds to it, or with "~" takes away from it."""
    allow = None
    with open(os.path.join(UNITS, unit)) as f:
        for ln in f:
            if not ln.startswith("SystemCallFilter="):
                continue
            v = ln.split("=", 1)[1].strip()
            names = set()
            for item in v.lstrip("~").split():
                names |= _expand(item) if item.startswith("@") else {item}
            if allow is None:
                check(not v.startswith("~"), f"{unit}: the first SystemCallFilter is a deny list")
                allow = names
            elif v.startswith("~"):
                allow -= names
            else:
                allow |= names
    check(allow, f"{unit} has no SystemCallFilter allow list")
    return allow


def _strace_calls(path):
    calls = set()
    with open(path, errors="replace") as f:
        for ln in f:
            m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", ln)
            if m:
                calls.add(m.group(1))
    return calls


def _stop_traced(p):
    """SIGTERM to the program strace runs (strace's only child); strace then
    ends with it."""
    kids = open(f"/proc/{p.p.pid}/task/{p.p.pid}/children").read().split()
    check(kids, "the traced program is not running")
    os.kill(int(kids[0]), signal.SIGTERM)
    p.p.wait(20)


def syscalls_allowed(w):
    """Every system call the agent and the hub make in a sync, scan, metrics
    and shutdown is one their unit's SystemCallFilter= allows: under the unit
    any other fails with EPERM (SystemCallErrorNumber=) on a real terminal."""
    for tool in ("strace", "systemd-analyze"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed")
    ldd = run(["ldd", tslib.AGENT_BIN], check_rc=False).stdout
    if "libasan" in ldd:
        skip("sanitizer builds make system calls of their own; checked in the dev build")
    hub_trace = os.path.join(w.dir, "hub.strace")
    conf = w.hub_conf()
    hub = tslib.Proc("hub", ["strace", "-f", "-qq", "-o", hub_trace, tslib.HUB_BIN, "run", "-c",
                             conf], os.path.join(w.dir, "hub.log"))
    w.procs.append(hub)
    wait_for(lambda: w._port_open(w.hub_port), what="traced hub to listen")
    w.hub = hub
    w.send_batch(tslib.customer_batch())
    agent_trace = os.path.join(w.dir, "agent.strace")
    aconf = w.agent_conf()
    agent = tslib.Proc("agent", ["strace", "-f", "-qq", "-o", agent_trace, tslib.AGENT_BIN, "run",
                                 "-c", aconf], os.path.join(w.dir, "agent.log"))
    w.procs.append(agent)
    wait_for(lambda: w.api("GET", "/readyz")[0] == 200, what="traced agent ready")
    w.wait_cards(1)
    s, body = w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
    check(s == 200, f"scan: {s} {body}")
    w.api("GET", "/metrics")
    w.hub_request("GET", "/metrics")
    _stop_traced(agent)
    _stop_traced(hub)
    for unit, trace in (("tillside.service", agent_trace), ("tillside-hub.service", hub_trace)):
        used = _strace_calls(trace)
        check(len(used) > 20, f"{trace}: only {sorted(used)}")
        refused = sorted(used - _allowed(unit))
        print(f"{unit}: {len(used)} system calls used, refused by the filter: {refused}")
        check(not refused, f"{unit}'s SystemCallFilter refuses {refused}, which the program uses")


# ---- metrics ----------------------------------------------------------------

def metrics_promtool(w):
    if not shutil.which("promtool"):
        skip("promtool is not installed (Debian package prometheus)")
    w.start_hub()
    w.send_batch(tslib.customer_batch())
    w.start_agent()
    w.wait_cards(1)
    w.api("POST", "/api/v1/scan", {"code": "2000000000015"})
    s, agent_text = w.api("GET", "/metrics")
    check(s == 200 and "tillside_cards" in agent_text, f"agent /metrics: {s}")
    s, hub_text = w.hub_request("GET", "/metrics")
    check(s == 200 and "tillside_hub" in hub_text, f"hub /metrics: {s} {hub_text!r:.200}")
    for who, text in (("agent", agent_text), ("hub", hub_text)):
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        check(p.returncode == 0, f"promtool rejects the {who}'s /metrics:\n{p.stdout}{p.stderr}")


# ---- systemd protocol and journald ------------------------------------------

class NotifySocket:
    """What systemd listens on for sd_notify(3): a datagram socket."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.stop = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stop:
            try:
                self.msgs.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


def notify_watchdog(w):
    w.start_hub()
    conf = w.agent_conf()
    ns = NotifySocket(os.path.join(w.dir, "notify.sock"))
    log = os.path.join(w.dir, "agent-notify.log")
    try:
        with open(log, "wb") as lf:
            st = os.fstat(lf.fileno())
            env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="300000",
                       JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
            p = subprocess.Popen([tslib.AGENT_BIN, "run", "-c", conf], stdout=lf, stderr=lf,
                                 env=env)
            try:
                wait_for(lambda: "READY=1" in ns.msgs, what="READY=1 on the notify socket")
                # Pings keep coming while the agent is healthy: several within
                # a few intervals, not a single one.
                wait_for(lambda: ns.msgs.count("WATCHDOG=1") >= 3, what="3 WATCHDOG=1 pings")
                check(w.api("GET", "/readyz")[0] == 200, "API up when READY=1 was sent")
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
        wait_for(lambda: "STOPPING=1" in ns.msgs, what="STOPPING=1")
        check(ns.msgs.index("READY=1") < ns.msgs.index("WATCHDOG=1"), f"order {ns.msgs[:3]}")
    finally:
        ns.close()
    # journald reads "<N>" as the line's priority: info is 6, and every line
    # has one.
    with open(log) as f:
        lines = [ln for ln in f.read().splitlines() if ln]
    check(lines and all(re.match(r"<[3467]>", ln) for ln in lines),
          f"priority prefixes under JOURNAL_STREAM: {lines[:5]}")
    check(any(ln.startswith("<6>INFO agent: ") for ln in lines), f"info line: {lines[:5]}")
    # Without the journal (a terminal, a file), no prefixes.
    check(not re.search(r"^<\d>", w.hub.log(), re.M), "plain lines outside the journal")

    # The hub speaks the same protocol.
    ns = NotifySocket(os.path.join(w.dir, "notify-hub.sock"))
    try:
        env = dict(os.environ, NOTIFY_SOCKET=ns.path)
        w.hub.stop()
        p = subprocess.Popen([tslib.HUB_BIN, "run", "-c", os.path.join(w.dir, "hub.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            wait_for(lambda: "READY=1" in ns.msgs, what="hub READY=1")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    finally:
        ns.close()


# ---- doctor and check-config --------------------------------------------------

def _lines(out):
    return {ln.split()[1]: ln for ln in out.splitlines() if len(ln.split()) > 1 and
            ln.split()[0] in ("ok", "WARN", "FAIL")}


class SkewedHub:
    """A TLS server with the hub's certificate whose Date header is wrong by
    skew seconds: a hub on a machine with a bad clock."""

    def __init__(self, w, skew):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(f"{w.certs}/hub.pem", f"{w.certs}/hub.key")
        self.ctx.load_verify_locations(f"{w.certs}/ca.pem")
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.skew = skew
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(c, server_side=True) as s:
                    s.recv(4096)
                    date = email.utils.formatdate(time.time() + self.skew, usegmt=True)
                    s.sendall(f"HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n".encode())
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.sock.close()


def doctor(w):
    w.start_hub()
    w.send_batch(tslib.customer_batch())
    w.start_agent()
    w.wait_cards(1)
    p = w.cli("doctor")
    print(p.stdout)
    lines = _lines(p.stdout)
    check(p.returncode in (0, 3) and "FAIL" not in p.stdout, f"healthy doctor:\n{p.stdout}")
    check("TLS handshake ok, HTTP 200" in lines.get("hub", ""), f"hub line: {lines.get('hub')}")
    check(lines.get("clock", "").startswith("ok"), f"clock line: {lines.get('clock')}")
    check(lines.get("certificate", "").startswith("ok") and "CN=T01" in lines["certificate"],
          f"certificate line: {lines.get('certificate')}")
    check(re.search(r"1 cards, last sync \d+ s ago", lines.get("cache", "")),
          f"cache line: {lines.get('cache')}")
    check(re.search(r"\d+ MiB free", lines.get("disk", "")), f"disk line: {lines.get('disk')}")
    check("devices" in lines, f"no devices line:\n{p.stdout}")

    # The hub down: a failure naming the hub, exit 1.
    w.agent.stop()
    w.hub.stop()
    p = w.cli("doctor")
    lines = _lines(p.stdout)
    check(p.returncode == 1 and lines.get("hub", "").startswith("FAIL"),
          f"doctor with the hub down ({p.returncode}):\n{p.stdout}")

    # A hub whose clock is ten minutes ahead.
    sk = SkewedHub(w, 600)
    try:
        w.agent_conf(url=f"https://localhost:{sk.port}")
        p = w.cli("doctor")
        lines = _lines(p.stdout)
        clock = lines.get("clock", "")
        check(p.returncode == 1 and clock.startswith("FAIL") and
              re.search(r" -(599|600|601) s against the hub", clock),
              f"doctor against a skewed hub ({p.returncode}):\n{p.stdout}")
        sk.skew = 8
        p = w.cli("doctor")
        lines = _lines(p.stdout)
        check(lines.get("clock", "").startswith("WARN"), f"8 s skew warns:\n{p.stdout}")
    finally:
        sk.close()

    # A bad configuration: doctor and check-config name file, line and key.
    w.agent_conf(extra="[cache]\nretention_days = soon\n")
    p = w.cli("check-config")
    check(p.returncode == 1 and re.search(r"tillside.conf:\d+: \[cache\] retention_days",
                                          p.stderr), f"check-config: {p.returncode} {p.stderr!r}")
    p = w.cli("doctor")
    check(p.returncode == 1 and "FAIL  config" in p.stdout and "retention_days" in p.stdout,
          f"doctor on a bad config:\n{p.stdout}")


def hub_check_config(w):
    conf = w.hub_conf()
    p = run([tslib.HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(p.returncode == 0 and p.stdout.strip() == f"{conf}: OK", f"good: {p.stdout!r}")
    conf = w.hub_conf(key=os.path.join(w.dir, "missing.key"))
    p = run([tslib.HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(p.returncode == 1 and re.search(r"hub.conf:\d+: \[hub\] tls_key: cannot read .*missing.key",
                                          p.stderr), f"missing key: {p.returncode} {p.stderr!r}")
    conf = w.hub_conf(extra="tombstone_days = forever\n")
    p = run([tslib.HUB_BIN, "check-config", "-c", conf], check_rc=False)
    check(p.returncode == 1 and re.search(r"hub.conf:\d+: \[feed\] tombstone_days", p.stderr),
          f"bad number: {p.returncode} {p.stderr!r}")


if __name__ == "__main__":
    tslib.main({"package_install_upgrade": package_install_upgrade,
                "unit_security": unit_security,
                "syscalls_allowed": syscalls_allowed,
                "metrics_promtool": metrics_promtool,
                "notify_watchdog": notify_watchdog,
                "doctor": doctor,
                "hub_check_config": hub_check_config})
