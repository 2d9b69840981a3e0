#!/usr/bin/env python3
"""A TCP fault proxy for tests: sits between an agent and the hub, forwards
bytes opaquely (TLS passes through untouched, so point the agent at
https://localhost:PROXYPORT and the hub certificate still matches), and
misbehaves on command. Standard library only.

Modes (set_mode(name, **params)); a change applies to new connections and,
at their next chunk, to open ones:

  pass       forward both ways
  drop       the link is down: every connection (new or open) is reset at once
  delay      sleep `ms` (default 200) before forwarding each chunk, both ways
  reset      RST (SO_LINGER 0) both sides after `after` hub->agent bytes
  truncate   forward `after` hub->agent bytes, then close both sides cleanly (FIN)
  garbage    after `after` hub->agent bytes, splice `bytes` (default 64) random
             bytes into the hub->agent stream, once per connection
  stall      stop forwarding hub->agent (agent->hub still flows); the
             connection stays open; `pass` releases what the kernel buffered

`after` counts bytes since the connection entered the mode; when not given,
each connection draws it from [0, max_after] (default 16384) with the
proxy's seeded random generator, so a run is reproducible yet hits the TLS
handshake as well as the middle of a response.

In-process use (tests):
    p = FaultProxy(target_port=hub_port, seed=1).start()
    p.set_mode("stall"); ...; p.set_mode("pass"); p.stop()

As a program, with a line-based control socket (`mode NAME [k=v ...]`,
`stats`, answered with one line):
    faultproxy.py --listen 9443 --target 127.0.0.1:8443 --control 9444
"""
import argparse
import json
import random
import select
import socket
import struct
import sys
import threading
import time

MODES = ("pass", "drop", "delay", "reset", "truncate", "garbage", "stall")
TICK = 0.05  # how often an idle connection looks at the mode


def _rst(sock):
    """Closes sock with a TCP RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1", listen_port=0,
                 listen_host="127.0.0.1", seed=0):
        self.target = (target_host, target_port)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self._mode = ("pass", {}, 0)  # name, params, generation
        self.attempts = []  # monotonic time of every accepted connection
        self.stats = {"connections": 0, "open": 0, "bytes_up": 0, "bytes_down": 0,
                      "resets": 0, "truncations": 0, "garbage": 0, "dropped": 0}
        self._stop = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((listen_host, listen_port))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self._threads = []

    # ---- control ------------------------------------------------------
    def start(self):
        t = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        _close(self.lsock)
        for t in self._threads:
            t.join(2)

    def set_mode(self, name, **params):
        if name not in MODES:
            raise ValueError(f"unknown mode {name!r}; have {MODES}")
        with self.lock:
            self._mode = (name, dict(params), self._mode[2] + 1)

    @property
    def mode(self):
        with self.lock:
            return self._mode[0]

    def attempts_between(self, t0, t1):
        with self.lock:
            return sum(1 for t in self.attempts if t0 <= t < t1)

    def snapshot(self):
        with self.lock:
            s = dict(self.stats)
            s["mode"] = self._mode[0]
            s["params"] = self._mode[1]
            s["attempts"] = len(self.attempts)
            return s

    def _count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def _draw_after(self, params):
        if "after" in params:
            return int(params["after"])
        with self.lock:
            return self.rng.randint(0, int(params.get("max_after", 16384)))

    def _random_bytes(self, n):
        with self.lock:
            return bytes(self.rng.getrandbits(8) for _ in range(n))

    # ---- data path ----------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.attempts.append(time.monotonic())
                self.stats["connections"] += 1
                mode = self._mode[0]
            if mode == "drop":
                self._count("dropped")
                _rst(c)
                continue
            t = threading.Thread(target=self._serve, args=(c,), name="faultproxy-conn",
                                 daemon=True)
            t.start()

    def _serve(self, client):
        try:
            up = socket.create_connection(self.target, timeout=5)
        except OSError:
            _rst(client)
            return
        up.settimeout(None)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._count("open")
        try:
            self._pump(client, up)
        finally:
            self._count("open", -1)

    def _pump(self, client, up):
        gen = -1
        down = 0  # hub->agent bytes since this connection entered the mode
        after = 0
        spliced = False
        client_eof = up_eof = False
        held = b""  # hub->agent bytes read just as a stall began
        while not self._stop.is_set():
            with self.lock:
                name, params, g = self._mode
            if held and name != "stall":
                if not self._send(client, held):
                    _rst(client)
                    _rst(up)
                    return
                self._count("bytes_down", len(held))
                held = b""
            if g != gen:
                gen, down, spliced = g, 0, False
                after = self._draw_after(params) if name in ("reset", "truncate",
                                                             "garbage") else 0
            if name == "drop":
                self._count("dropped")
                _rst(client)
                _rst(up)
                return
            if name in ("reset", "truncate") and down >= after:
                self._end(name, client, up)
                return
            rl = []
            if not client_eof:
                rl.append(client)
            if not up_eof and name != "stall":
                rl.append(up)
            if not rl:
                if client_eof and up_eof:
                    break
                time.sleep(TICK)  # stalled with the agent side finished
                continue
            try:
                ready, _, _ = select.select(rl, [], [], TICK)
            except (OSError, ValueError):
                break
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    _rst(client)
                    _rst(up)
                    return
                if s is client:
                    if not data:
                        client_eof = True
                        self._shut_wr(up)
                        continue
                    if name == "delay":
                        time.sleep(float(params.get("ms", 200)) / 1000.0)
                    if not self._send(up, data):
                        _rst(client)
                        _rst(up)
                        return
                    self._count("bytes_up", len(data))
                    continue
                # hub -> agent
                if not data:
                    up_eof = True
                    self._shut_wr(client)
                    continue
                if self.mode == "stall":
                    # The stall began while select() waited: hold the bytes
                    # back until the link passes again.
                    held += data
                    continue
                if name == "delay":
                    time.sleep(float(params.get("ms", 200)) / 1000.0)
                if name in ("reset", "truncate") and down + len(data) >= after:
                    keep = after - down
                    if keep > 0:
                        self._send(client, data[:keep])
                        self._count("bytes_down", keep)
                    self._end(name, client, up)
                    return
                if name == "garbage" and not spliced and down + len(data) > after:
                    k = max(0, after - down)
                    junk = self._random_bytes(int(params.get("bytes", 64)))
                    data = data[:k] + junk + data[k:]
                    spliced = True
                    self._count("garbage")
                down += len(data)
                if not self._send(client, data):
                    _rst(client)
                    _rst(up)
                    return
                self._count("bytes_down", len(data))
            if client_eof and up_eof:
                break
        _close(client)
        _close(up)

    def _end(self, name, client, up):
        if name == "reset":
            self._count("resets")
            _rst(client)
            _rst(up)
        else:
            self._count("truncations")
            _close(client)
            _close(up)

    @staticmethod
    def _send(sock, data):
        try:
            sock.sendall(data)
            return True
        except OSError:
            return False

    @staticmethod
    def _shut_wr(sock):
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # ---- control socket -----------------------------------------------
    def serve_control(self, port, host="127.0.0.1"):
        """Answers `mode NAME [k=v ...]` and `stats` lines on host:port
        (in a background thread); returns the bound port."""
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen(8)

        def loop():
            while not self._stop.is_set():
                try:
                    c, _ = ls.accept()
                except OSError:
                    return
                threading.Thread(target=self._control_conn, args=(c,), daemon=True).start()

        t = threading.Thread(target=loop, name="faultproxy-control", daemon=True)
        t.start()
        self._threads.append(t)
        return ls.getsockname()[1]

    def _control_conn(self, c):
        with c, c.makefile("rw", encoding="utf-8", newline="\n") as f:
            for line in f:
                words = line.split()
                try:
                    if not words:
                        continue
                    if words[0] == "mode" and len(words) >= 2:
                        params = dict(w.split("=", 1) for w in words[2:])
                        self.set_mode(words[1], **params)
                        f.write("ok\n")
                    elif words[0] == "stats":
                        f.write(json.dumps(self.snapshot()) + "\n")
                    else:
                        f.write("error: expected 'mode NAME [k=v ...]' or 'stats'\n")
                except ValueError as e:
                    f.write(f"error: {e}\n")
                f.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=int, required=True, help="port to listen on (127.0.0.1)")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--control", type=int, default=0, help="control port (0 = none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="pass", choices=MODES)
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    p = FaultProxy(int(port), host or "127.0.0.1", a.listen, seed=a.seed).start()
    p.set_mode(a.mode)
    msg = f"faultproxy: 127.0.0.1:{p.port} -> {a.target}"
    if a.control:
        msg += f", control on 127.0.0.1:{p.serve_control(a.control)}"
    print(msg, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        p.stop()


if __name__ == "__main__":
    sys.exit(main())
