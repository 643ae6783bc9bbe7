#!/usr/bin/env python3
"""Check sockfwd's defences against hostile clients, with numbers.

    python3 bench/defences.py [--sockfwd build/sockfwd] [--engines splice,epoll]
                              [--clients 3000] [--json out.json]

Three attacks, each against a fresh forwarder per engine, with a legitimate
client probing the service while the attack runs (docs/security.md):

  slowloris   CLIENTS connections that send nothing, against
              --idle-timeout 3s --max-conns 1000: descriptors and memory
              stay bounded while they hold, the legitimate client is served
              once idle connections are reaped, and every descriptor comes
              back afterwards.
  proxy-flood CLIENTS connections that send a PROXY header that never ends,
              then CLIENTS that send garbage, against --accept-proxy: no
              upstream connection is opened for any of them, each is reset
              by the 5 s header deadline (or at once for garbage), and a
              client with a valid header is served meanwhile.
  accept-storm 20,000 connections opened and reset as fast as four threads
              can: the forwarder stays up, its CPU time is counted, a
              legitimate client is served during the storm, and every
              descriptor comes back.

Numbers come from /proc (descriptors, RSS, CPU time) and the forwarder's
/metrics (closed connections by reason). The machine and its load are in
the output: this measures bounds and counts, not speed, so it may run on a
busy machine; latencies printed are informative only. Python standard
library only. Exits 1 when a bound does not hold.
"""

import argparse
import json
import os
import platform
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Echo:
    """A selectors-based echo upstream in a thread; counts accepts."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4096)
        self.ls.setblocking(False)
        self.port = self.ls.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.ls, selectors.EVENT_READ)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                s = key.fileobj
                if s is self.ls:
                    try:
                        while True:
                            c, _ = self.ls.accept()
                            c.setblocking(False)
                            self.accepted += 1
                            self.sel.register(c, selectors.EVENT_READ)
                    except (BlockingIOError, OSError):
                        pass
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    s.close()
                    continue
                try:
                    s.sendall(data)
                except OSError:
                    self.sel.unregister(s)
                    s.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


class Fwd:
    def __init__(self, binpath, engine, upstream, extra):
        self.port = free_port()
        self.mport = free_port()
        args = [binpath, "-b", engine, "-j", "2", "-l", f"127.0.0.1:{self.port}",
                "-r", f"127.0.0.1:{upstream}", "--metrics", f"127.0.0.1:{self.mport}"] + extra
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.mport), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("sockfwd did not start: " + " ".join(args))
        time.sleep(0.2)

    def fds(self):
        return len(os.listdir(f"/proc/{self.p.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def cpu_s(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric(self, name, **labels):
        """Sum of the samples of name whose labels include these."""
        s = socket.create_connection(("127.0.0.1", self.mport), 2)
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        body = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            body += d
        s.close()
        total = 0.0
        for line in body.decode().splitlines():
            m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(lab.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        return rc


def legit(port, header=b"", timeout=15.0):
    """Connect, echo 1 KiB; returns seconds taken, or None when not served."""
    t0 = time.time()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout)
        s.settimeout(timeout)
        msg = os.urandom(1024)
        s.sendall(header + msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        return time.time() - t0 if got == msg else None
    except OSError:
        return None


def open_many(port, n, payload=b""):
    """n connected sockets (each having sent payload), or as many as fit."""
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), 5)
            if payload:
                s.sendall(payload)
            socks.append(s)
        except OSError:
            break
    return socks


def wait_until(pred, secs):
    deadline = time.time() + secs
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


class Report:
    def __init__(self):
        self.results = []
        self.failed = 0

    def check(self, engine, attack, what, ok, value):
        self.results.append({"engine": engine, "attack": attack, "check": what,
                             "ok": bool(ok), "value": value})
        if not ok:
            self.failed += 1
        print(f"  [{'ok' if ok else 'FAIL'}] {what}: {value}")


def slowloris(binpath, engine, n, rep):
    up = Echo()
    f = Fwd(binpath, engine, up.port, ["--idle-timeout", "3s", "--max-conns", "1000"])
    base_fd, base_rss = f.fds(), f.rss_kib()
    socks = open_many(f.port, n)
    time.sleep(1.0)
    fd_hold, rss_hold = f.fds(), f.rss_kib()
    active = f.metric("sockfwd_connections_active")
    rep.check(engine, "slowloris", f"{len(socks)} silent clients held, active <= max-conns 1000",
              active <= 1000 and len(socks) == n, int(active))
    rep.check(engine, "slowloris", "forwarder descriptors bounded by 2 x max-conns + listeners",
              fd_hold - base_fd <= 2 * 1000 + 16, f"{base_fd} -> {fd_hold}")
    rep.check(engine, "slowloris", "RSS while held (KiB, growth per held connection)", True,
              f"{base_rss} -> {rss_hold} ({(rss_hold - base_rss) * 1024 // max(1, int(active))} B/conn)")
    lat = legit(f.port)
    rep.check(engine, "slowloris", "legitimate client served (s, waits for idle reaping)",
              lat is not None, None if lat is None else round(lat, 2))
    reaped = wait_until(lambda: f.metric("sockfwd_connections_closed_total",
                                         reason="idle-timeout") >= n, 3 * 3 + n / 200)
    rep.check(engine, "slowloris", "every silent client reaped by the idle timeout",
              reaped, int(f.metric("sockfwd_connections_closed_total", reason="idle-timeout")))
    for s in socks:
        s.close()
    back = wait_until(lambda: f.fds() <= base_fd, 5)
    rep.check(engine, "slowloris", "descriptors back to baseline", back, f"{f.fds()} (baseline {base_fd})")
    rc = f.stop()
    rep.check(engine, "slowloris", "exit status after SIGTERM", rc == 0, rc)
    up.close()


def pp_v1(src_port):
    return f"PROXY TCP4 192.0.2.1 127.0.0.1 {src_port} 80\r\n".encode()


def proxy_flood(binpath, engine, n, rep):
    up = Echo()
    f = Fwd(binpath, engine, up.port, ["--accept-proxy"])
    base_fd = f.fds()
    t0 = time.time()
    partial = open_many(f.port, n, b"PROXY TCP4 192.0.2.1 ")
    time.sleep(0.5)
    fd_hold = f.fds()
    rep.check(engine, "proxy-flood", f"{len(partial)} unfinished headers: no upstream connection",
              up.accepted == 0 and len(partial) == n, f"upstream accepts {up.accepted}")
    rep.check(engine, "proxy-flood", "forwarder descriptors: one per waiting client",
              fd_hold - base_fd <= n + 16, f"{base_fd} -> {fd_hold}")
    lat = legit(f.port, pp_v1(40000))
    rep.check(engine, "proxy-flood", "client with a valid header served during the flood (s)",
              lat is not None, None if lat is None else round(lat, 3))
    done = wait_until(lambda: f.metric("sockfwd_connections_closed_total",
                                       reason="proxy-header") >= n, 5 + 5 + n / 200)
    rep.check(engine, "proxy-flood", "every unfinished header reset at its deadline (s after start)",
              done, round(time.time() - t0, 1))
    for s in partial:
        s.close()
    before = f.metric("sockfwd_connections_closed_total", reason="proxy-header")
    garbage = open_many(f.port, n, os.urandom(200).replace(b"\r", b"x"))
    done = wait_until(lambda: f.metric("sockfwd_connections_closed_total",
                                       reason="proxy-header") - before >= len(garbage), 5 + n / 200)
    rep.check(engine, "proxy-flood", f"{len(garbage)} garbage headers reset without waiting",
              done and up.accepted == 1,
              int(f.metric("sockfwd_connections_closed_total", reason="proxy-header") - before))
    for s in garbage:
        s.close()
    back = wait_until(lambda: f.fds() <= base_fd, 5)
    rep.check(engine, "proxy-flood", "descriptors back to baseline", back, f"{f.fds()} (baseline {base_fd})")
    rc = f.stop()
    rep.check(engine, "proxy-flood", "exit status after SIGTERM", rc == 0, rc)
    up.close()


def storm_thread(port, count, out):
    linger = struct.pack("ii", 1, 0)
    made = 0
    for _ in range(count):
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.settimeout(2)
            s.connect(("127.0.0.1", port))
            s.close()
            made += 1
        except OSError:
            s.close()
    out.append(made)


def accept_storm(binpath, engine, total, rep):
    up = Echo()
    f = Fwd(binpath, engine, up.port, [])
    base_fd, cpu0 = f.fds(), f.cpu_s()
    made, threads = [], []
    t0 = time.time()
    for _ in range(4):
        t = threading.Thread(target=storm_thread, args=(f.port, total // 4, made))
        t.start()
        threads.append(t)
    time.sleep(0.3)
    lat = legit(f.port)
    for t in threads:
        t.join()
    secs = time.time() - t0
    cpu = f.cpu_s() - cpu0
    rep.check(engine, "accept-storm", "legitimate client served during the storm (s)",
              lat is not None, None if lat is None else round(lat, 3))
    rep.check(engine, "accept-storm", f"{sum(made)} connect+reset in {secs:.1f} s, forwarder CPU s",
              f.p.poll() is None, round(cpu, 2))
    back = wait_until(lambda: f.fds() <= base_fd, 10)
    rep.check(engine, "accept-storm", "descriptors back to baseline", back, f"{f.fds()} (baseline {base_fd})")
    rc = f.stop()
    rep.check(engine, "accept-storm", "exit status after SIGTERM", rc == 0, rc)
    up.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockfwd", default=os.path.join(ROOT, "build/sockfwd"))
    ap.add_argument("--engines", default="")
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--storm", type=int, default=20000)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    v = subprocess.run([a.sockfwd, "-V"], capture_output=True, text=True).stdout
    m = re.search(r"engines: ([^);]*)", v)
    engines = a.engines.split(",") if a.engines else [e for e in m.group(1).split() if e != "naive"]
    print(f"sockfwd defences: {v.strip()}; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"kernel {platform.release()}, load {os.getloadavg()[0]:.2f}")
    rep = Report()
    for e in engines:
        for name, fn, n in (("slowloris", slowloris, a.clients), ("proxy-flood", proxy_flood, a.clients),
                            ("accept-storm", accept_storm, a.storm)):
            print(f"{e} {name}:")
            fn(a.sockfwd, e, n, rep)
    print(f"{len(rep.results) - rep.failed} passed, {rep.failed} failed")
    if a.json:
        with open(a.json, "w") as fp:
            json.dump({"version": v.strip(), "results": rep.results}, fp, indent=1)
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
