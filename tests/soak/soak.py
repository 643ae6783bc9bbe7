#!/usr/bin/env python3
"""Chaos soak for sockfwd (issue 10, docs/testing.md "Chaos soak").

Runs the real binary (-j 2, every engine `sockfwd -V` lists, in turn)
between a load generator and upstream servers that misbehave on purpose,
and checks invariants the whole time:

  data       every transfer that ended without a reset carried exactly the
             bytes sent (sha256 of what was sent against what came back or
             what the sink received); a healthy upstream never ends a
             transfer early, by FIN or by reset
  reset      every connection the forwarder gave up on (upstream reset,
             client reset, idle timeout, connect timeout, upstream killed,
             out of descriptors) was reset on the other side, never ended
             with a clean FIN after a partial transfer
  resources  after each phase: sockets and other descriptors back to the
             baseline (pipes at most the splice pipe pool), RSS within a
             tolerance, no connection left active in the metrics
  idle_cpu   with only idle connections, utime+stime under 2% of a CPU
  exit       SIGTERM: exit 0, accepted == closed in the stats line, every
             reload sent applied, no error line in the log
  coverage   every scenario ran at least its minimum number of times, and
             the faults really happened (kills, pool failover, EMFILE)

Python 3 standard library only. Loopback only, ports picked free, a
timeout on every socket operation, a global deadline, children in their
own process groups killed on exit. Exit status 0 when every check passed,
1 otherwise, 2 on bad usage.
"""

import argparse
import ctypes
import errno
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

LO = "127.0.0.1"
BLOB_SIZE = 8 << 20
HDR = 64  # fixed-size request header: "KIND token off len\n" padded
IDLE_TIMEOUT = 2  # s, rules idle, noread, backlog
CONNECT_TIMEOUT = 1  # s, every rule
OP_TIMEOUT = 20.0  # s, the longest any one client operation may take
CPU_LIMIT = 0.02  # of one CPU, idle
RSS_TOL = 8 << 20  # bytes over the warm baseline after a phase
URING_BUFS = 2 * 128 * (64 << 10)  # uring: workers x UR_NBUFS x buffer size
RSS_DRIFT = 4 << 20  # bytes over the RSS after the first phase, later
PIPE_POOL_FDS = 2 * 32 * 2  # splice: 2 workers x 32 idle pipes x 2 fds
CLK_TCK = os.sysconf("SC_CLK_TCK")

# One deterministic 8 MiB blob: every payload is a slice of it, so a
# server in another process or a check long after can rebuild it.
BLOB = random.Random(0x50A4).randbytes(BLOB_SIZE)
BLOBV = memoryview(BLOB)


HEALTHY_RULES = ("echo", "idle", "sink", "source", "early", "rst", "noread", "pool")


def now():
    return time.monotonic()


def sha(b):
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- checks


class Checks:
    """Pass/fail counts per invariant set, failure messages, scenario counts."""

    SETS = ("data", "reset", "resources", "idle_cpu", "exit", "coverage")

    def __init__(self, break_mode):
        self.lock = threading.Lock()
        self.passed = {s: 0 for s in self.SETS}
        self.failed = {s: 0 for s in self.SETS}
        self.failures = []
        self.counts = {}  # "engine/scenario/outcome" -> n
        self.engine = "-"
        self.break_mode = break_mode

    def ok(self, iset):
        with self.lock:
            self.passed[iset] += 1

    def fail(self, iset, what, msg):
        port = getattr(LAST, "port", None)
        if port and iset in ("data", "reset"):
            # The -v close line of that connection: grep for 127.0.0.1:PORT.
            msg += " [client 127.0.0.1:%d]" % port
        with self.lock:
            self.failed[iset] += 1
            if len(self.failures) < 200:
                self.failures.append({"set": iset, "engine": self.engine, "what": what, "msg": msg})
        log("FAIL [%s] %s %s: %s" % (iset, self.engine, what, msg))

    def check(self, iset, cond, what, msg):
        if cond:
            self.ok(iset)
        else:
            self.fail(iset, what, msg)
        return cond

    def count(self, scenario, outcome="ok"):
        key = "%s/%s/%s" % (self.engine, scenario, outcome)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def n(self, scenario, outcome=None):
        pre = "%s/%s/" % (self.engine, scenario)
        with self.lock:
            return sum(v for k, v in self.counts.items() if k.startswith(pre) and (outcome is None or k.endswith("/" + outcome)))


LOG_LOCK = threading.Lock()
T0 = now()


def log(msg):
    with LOG_LOCK:
        sys.stdout.write("soak %6.1fs: %s\n" % (now() - T0, msg))
        sys.stdout.flush()


# ---------------------------------------------------------------- sockets


def free_port(_rnd=random.Random(os.getpid())):
    """A free port below the ephemeral range: ports the soak binds again
    (the killed upstream, the pool member, the forwarder's listeners) must
    not be taken meanwhile as the source port of some connection."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError):
        lo = 32768
    for _ in range(1000):
        port = _rnd.randint(max(1024, lo // 2), lo - 1)
        s = socket.socket()
        try:
            s.bind((LO, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port below %d" % lo)


def listener(port=0, backlog=128, linger0=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if linger0:
        # Inherited by accepted sockets: a SIGKILL then resets them all.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.bind((LO, port))
    s.listen(backlog)
    return s


LAST = threading.local()  # this thread's latest client port, for failure messages


def connect(port, timeout=5.0):
    LAST.port = None
    s = socket.create_connection((LO, port), timeout=timeout)
    LAST.port = s.getsockname()[1]
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def set_linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def hdr(kind, token, off, ln):
    h = ("%s %016x %d %d" % (kind, token, off, ln)).encode()
    return h + b" " * (HDR - 1 - len(h)) + b"\n"


def parse_hdr(b):
    f = b.split()
    return f[0].decode(), int(f[1], 16), int(f[2]), int(f[3])


def recv_exact(s, n, deadline):
    """n bytes, or (partial, outcome) on eof/reset/timeout."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - now()
        if left <= 0:
            return bytes(buf), "timeout"
        s.settimeout(min(left, 5.0))
        try:
            b = s.recv(n - len(buf))
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return bytes(buf), "reset"
        except OSError as e:
            return bytes(buf), "error:%s" % errno.errorcode.get(e.errno, e.errno)
        if not b:
            return bytes(buf), "eof"
        buf += b
    return bytes(buf), "ok"


class Rx:
    """What a client read: length, sha256, first mismatch against expected."""

    def __init__(self, expect):
        self.expect = expect
        self.n = 0
        self.h = hashlib.sha256()
        self.bad_at = -1

    def feed(self, b):
        if self.bad_at < 0 and self.expect[self.n : self.n + len(b)] != b:
            e = bytes(self.expect[self.n : self.n + len(b)])
            i = next((k for k in range(min(len(e), len(b))) if e[k] != b[k]), min(len(e), len(b)))
            self.bad_at = self.n + i
        self.h.update(b)
        self.n += len(b)


def pump(s, out, expect, deadline, shut=True, stop_after=None, slow=None):
    """Full duplex on one socket: send out (then SHUT_WR if shut), read into
    an Rx of expect until EOF. stop_after: return once that many bytes were
    sent (the caller then resets). slow: (chunk, pause) for a slow reader.
    Returns (outcome, sent, rx); outcome eof | reset | timeout | error:X | stopped."""
    s.setblocking(False)
    p = select.poll()
    rx = Rx(expect)
    sent = 0
    wdone = len(out) == 0
    if wdone and shut:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    limit = len(out) if stop_after is None else min(stop_after, len(out))
    outcome = None
    try:
        while outcome is None:
            left = deadline - now()
            if left <= 0:
                outcome = "timeout"
                break
            p.register(s, select.POLLIN | (0 if wdone else select.POLLOUT))
            ev = p.poll(min(left, 0.5) * 1000)
            if not ev:
                continue
            m = ev[0][1]
            if m & select.POLLOUT and not wdone:
                try:
                    sent += s.send(out[sent : min(limit, sent + 65536)])
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    outcome = "reset"
                    break
                if sent >= limit:
                    if stop_after is not None:
                        outcome = "stopped"
                        break
                    wdone = True
                    if shut:
                        try:
                            s.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass  # reset meanwhile: the read below says so
            if m & (select.POLLIN | select.POLLERR | select.POLLHUP):
                try:
                    b = s.recv(slow[0] if slow else 262144)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    outcome = "reset"
                    break
                except OSError as e:
                    outcome = "error:%s" % errno.errorcode.get(e.errno, e.errno)
                    break
                if not b:
                    outcome = "eof"
                    break
                rx.feed(b)
                if slow:
                    time.sleep(slow[1])
    finally:
        s.setblocking(True)
    return outcome, sent, rx


# ---------------------------------------------------------------- upstream servers


class Server:
    """A threaded loopback server; handler(conn) runs per connection."""

    def __init__(self, name, handler, backlog=128, accept=True, linger0=False, port=0):
        self.name = name
        self.handler = handler
        self.lsock = listener(port, backlog, linger0)
        self.port = self.lsock.getsockname()[1]
        self.backlog = backlog
        self.stop = threading.Event()
        self.down = threading.Event()  # pool member: stop listening while set
        self.accepted = 0
        self.active = 0  # handlers still running
        self.lock = threading.Lock()
        self.records = {}  # token -> (outcome, nbytes, sha)
        self.outcomes = {}
        if accept:
            threading.Thread(target=self._accept_loop, daemon=True).start()

    def record(self, token, outcome, n=0, digest=""):
        with self.lock:
            if token is not None:
                self.records[token] = (outcome, n, digest)
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def wait_record(self, token, timeout):
        end = now() + timeout
        while now() < end:
            with self.lock:
                r = self.records.pop(token, None)
            if r is not None:
                return r
            time.sleep(0.02)
        return None

    def _accept_loop(self):
        p = select.poll()
        ls = self.lsock
        while not self.stop.is_set():
            if self.down.is_set():
                # Down: a backlog of 0 and no accept. The forwarder's
                # connects then time out (SYNs dropped once one waits in the
                # queue); that one is served when the member comes back.
                # (Closing the listener instead would reset whatever sits
                # in its queue at that moment: a race no client could
                # tell from a forwarder fault.)
                ls.listen(0)
                while self.down.is_set() and not self.stop.is_set():
                    time.sleep(0.02)
                ls.listen(self.backlog)
                continue
            p = select.poll()
            p.register(ls, select.POLLIN)
            if not p.poll(50):
                continue
            try:
                ls.setblocking(False)
                c, _ = ls.accept()
            except OSError:
                continue
            self._spawn(c)
        if ls is not None:
            ls.close()

    def _spawn(self, c):
        c.setblocking(True)
        c.settimeout(OP_TIMEOUT)
        with self.lock:
            self.accepted += 1
            self.active += 1
        threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(self, c)
        except Exception as e:  # a server bug must not kill the soak silently
            self.record(None, "exception:%r" % (e,))
        finally:
            c.close()
            with self.lock:
                self.active -= 1


def read_hdr(c):
    b, st = recv_exact(c, HDR, now() + OP_TIMEOUT)
    if st != "ok":
        return None, b, st
    return parse_hdr(b), b, "ok"


def h_echo(srv, c):
    """Echo every byte; after the client's FIN, FIN back. Records the end
    (eof or reset) under the header's token."""
    h, first, st = read_hdr(c)
    if h is None:
        srv.record(None, "nohdr-" + st)
        return
    token = h[1]
    n = 0
    d = hashlib.sha256()
    try:
        c.sendall(first)
        while True:
            b = c.recv(262144)
            if not b:
                try:
                    c.shutdown(socket.SHUT_WR)
                except OSError as e:
                    # A reset right behind the FIN: recv gave the FIN, the
                    # socket is gone by the shutdown (ENOTCONN). Unrecorded,
                    # the check would see no end at all.
                    if e.errno != errno.ENOTCONN:
                        raise
                    srv.record(token, "reset", n)
                    return
                srv.record(token, "eof", n, d.hexdigest())
                return
            d.update(b)
            n += len(b)
            c.sendall(b)
    except (ConnectionResetError, BrokenPipeError):
        srv.record(token, "reset", n)
    except socket.timeout:
        srv.record(token, "timeout", n)
    except OSError as e:
        srv.record(token, "error-%s" % errno.errorcode.get(e.errno, e.errno), n)


def h_sink(srv, c):
    """Read to EOF, answer 'LEN SHA256\\n', close (half-close client first)."""
    d = hashlib.sha256()
    n = 0
    try:
        while True:
            b = c.recv(262144)
            if not b:
                break
            d.update(b)
            n += len(b)
        c.sendall(b"%d %s\n" % (n, d.hexdigest().encode()))
        srv.record(None, "eof")
    except (ConnectionResetError, BrokenPipeError):
        srv.record(None, "reset")


def h_source(srv, c):
    """Header OFF LEN: send that slice and FIN first (upstream half-closes
    first), then read the client's bytes to EOF and record their hash."""
    h, _, st = read_hdr(c)
    if h is None:
        srv.record(None, "nohdr-" + st)
        return
    _, token, off, ln = h
    try:
        c.sendall(BLOBV[off : off + ln])
        c.shutdown(socket.SHUT_WR)
        d = hashlib.sha256()
        n = 0
        while True:
            b = c.recv(262144)
            if not b:
                break
            d.update(b)
            n += len(b)
        srv.record(token, "eof", n, d.hexdigest())
    except (ConnectionResetError, BrokenPipeError):
        srv.record(token, "reset")
    except OSError as e:
        # ENOTCONN: the shutdown came after a reset (as in h_echo).
        srv.record(token, "reset" if e.errno == errno.ENOTCONN else "error-%s" % errno.errorcode.get(e.errno, e.errno))


def h_early(srv, c):
    """Header OFF LEN: send LEN bytes (fewer than the client wants), close
    cleanly: the client must get exactly those bytes, then EOF."""
    h, _, st = read_hdr(c)
    if h is None:
        srv.record(None, "nohdr-" + st)
        return
    _, token, off, ln = h
    try:
        c.sendall(BLOBV[off : off + ln])
        srv.record(None, "closed")
    except (ConnectionResetError, BrokenPipeError):
        srv.record(None, "reset")


def h_rst(srv, c):
    """Header OFF LEN: send LEN bytes, then reset (SO_LINGER 0)."""
    h, _, st = read_hdr(c)
    if h is None:
        srv.record(None, "nohdr-" + st)
        return
    _, token, off, ln = h
    try:
        c.sendall(BLOBV[off : off + ln])
        time.sleep(random.random() * 0.02)
        set_linger0(c)
        srv.record(None, "sent-rst")
    except (ConnectionResetError, BrokenPipeError):
        srv.record(None, "reset")


def h_noread(srv, c):
    """Accept and never read while the forwarder's idle timeout runs out;
    then read what arrived: a prefix of the blob, ended by a reset (the
    forwarder gave up), never by a clean FIN."""
    time.sleep(IDLE_TIMEOUT + 0.5)
    rx = Rx(BLOBV)
    c.settimeout(OP_TIMEOUT / 2)
    out = None
    try:
        while out is None:
            b = c.recv(262144)
            if not b:
                out = "eof"
            else:
                rx.feed(b)
    except ConnectionResetError:
        out = "reset"
    except socket.timeout:
        out = "timeout"
    srv.record(None, out if rx.bad_at < 0 else "corrupt@%d" % rx.bad_at)
    with srv.lock:
        srv.records.setdefault("noread", []).append((out, rx.n, rx.bad_at))


def serve_killable(port):
    """--serve-echo PORT: the upstream the soak SIGKILLs and restarts. Its
    sockets have SO_LINGER 0 (inherited from the listener), so a kill
    resets them all; a transfer that ends normally turns it off first."""

    def one(c):
        try:
            while True:
                b = c.recv(262144)
                if not b:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
                    c.shutdown(socket.SHUT_WR)
                    break
                c.sendall(b)
        except OSError:
            pass
        finally:
            c.close()

    ppid = os.getppid()
    ls = listener(port, 128, linger0=True)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    ls.settimeout(0.5)
    while os.getppid() == ppid:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        c.settimeout(OP_TIMEOUT)
        threading.Thread(target=one, args=(c,), daemon=True).start()
    return 0


# ---------------------------------------------------------------- the forwarder


CHILDREN = set()


def pdeathsig_and_limit(nofile, pdeath):
    def fn():
        try:
            if not pdeath:
                raise OSError("no PDEATHSIG")
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
        if nofile:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return fn


def spawn(argv, nofile=None, stdout=None, stderr=None, pdeath=True):
    """A child in its own process group, killed with the soak. PDEATHSIG
    follows the forking thread: children forked by a controller thread that
    ends before them (the killed upstream) watch getppid() instead."""
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=pdeathsig_and_limit(nofile, pdeath),
    )
    CHILDREN.add(p)
    return p


def kill_children():
    for p in list(CHILDREN):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            p.wait(timeout=2)
        except Exception:
            pass
        CHILDREN.discard(p)


class Fwd:
    """One sockfwd process run from the soak's config file."""

    def __init__(self, ctx, engine, tag, nofile=None):
        self.ctx = ctx
        self.engine = engine
        self.logpath = os.path.join(ctx.out, "%s-%s.log" % (engine, tag))
        self.logf = open(self.logpath, "wb")
        self.reloads = 0
        # -v: one line per close with its reason, the evidence for a failure.
        argv = [ctx.sockfwd, "-c", ctx.conf, "-b", engine, "-j", "2", "-v"]
        self.p = spawn(argv, nofile=nofile, stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.p.pid
        self.nofile = nofile
        self.rss_first = None

    def wait_ready(self, timeout=10.0):
        """Every rule's "listening on" line in the log (not a probe
        connection: the misbehaving upstreams must see only the soak's
        own clients)."""
        end = now() + timeout
        while now() < end and self.p.poll() is None:
            with open(self.logpath, errors="replace") as f:
                if len(re.findall(r"rule '\w+': listening on", f.read())) >= len(self.ctx.ports):
                    time.sleep(0.1)
                    return True
            time.sleep(0.05)
        return False

    def fds(self):
        kinds = {"socket": 0, "pipe": 0, "other": 0}
        d = "/proc/%d/fd" % self.pid
        for f in os.listdir(d):
            try:
                t = os.readlink(os.path.join(d, f))
            except OSError:
                continue
            k = t.split(":", 1)[0]
            kinds[k if k in kinds else "other"] += 1
        return kinds

    def rss(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu(self):
        with open("/proc/%d/stat" % self.pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def metrics(self):
        url = "http://%s:%d/metrics" % (LO, self.ctx.metrics_port)
        with urllib.request.urlopen(url, timeout=3) as r:
            text = r.read().decode()
        out = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-z_]+)(\{(.*)\})? (\S+)$", line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            out.append((m.group(1), labels, float(m.group(4))))
        return out

    def reload(self):
        self.ctx.write_conf()
        os.kill(self.pid, signal.SIGHUP)
        self.reloads += 1

    def stop(self, chk):
        """SIGTERM: exit 0 within 10 s, stats accepted == closed, every
        reload applied, no error line."""
        what = "sigterm-" + os.path.basename(self.logpath)
        try:
            os.kill(self.pid, signal.SIGTERM)
            rc = self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(self.pid, signal.SIGKILL)
            self.p.wait(timeout=5)
        CHILDREN.discard(self.p)
        self.logf.close()
        chk.check("exit", rc == 0, what, "exit status %r (want 0), log %s" % (rc, self.logpath))
        with open(self.logpath, errors="replace") as f:
            text = f.read()
        m = re.findall(r"stats: accepted=(\d+) closed=(\d+) resets=(\d+)", text)
        if chk.check("exit", len(m) == 1, what, "no stats line in %s" % self.logpath):
            acc, clo, rst = (int(x) for x in m[-1])
            chk.check("exit", acc == clo and acc > 0, what, "stats accepted=%d closed=%d (leaked or nothing done)" % (acc, clo))
        n = len(re.findall(r"reloaded ", text))
        chk.check("exit", n == self.reloads, what, "%d reloads sent, %d logged 'reloaded'" % (self.reloads, n))
        errs = [l for l in text.splitlines() if re.search(r" error: |^sockfwd: error|Sanitizer|runtime error", l)]
        chk.check("exit", not errs, what, "error lines: %r" % errs[:3])
        # The -v close lines: a healthy upstream never refuses or times out
        # (the pool's down member is failed over, never a client's end).
        bad = [l for l in text.splitlines() if re.search(r"rule=(%s) .*reset=(refused|connect-timeout)" % "|".join(HEALTHY_RULES), l)]
        chk.check("exit", not bad, what, "%d close lines blame a healthy upstream, first: %s" % (len(bad), bad[:1]))
        return rc


# ---------------------------------------------------------------- context


class Ctx:
    def __init__(self, args):
        self.sockfwd = os.path.abspath(args.sockfwd)
        with open(self.sockfwd, "rb") as f:
            self.sanitized = b"__asan_init" in f.read()
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.conf = os.path.join(self.out, "soak.conf")
        self.chk = Checks(args.break_mode)
        self.break_mode = args.break_mode
        self.stop = threading.Event()
        self.token = 0
        self.tlock = threading.Lock()
        self.pool_weight = 1
        self.phases = []
        self.servers = {}

    def next_token(self):
        with self.tlock:
            self.token += 1
            return self.token

    def start_servers(self):
        S = self.servers
        S["echo"] = Server("echo", h_echo)
        S["sink"] = Server("sink", h_sink)
        S["source"] = Server("source", h_source)
        S["early"] = Server("early", h_early)
        S["rst"] = Server("rst", h_rst)
        S["noread"] = Server("noread", h_noread)
        S["backlog"] = Server("backlog", None, backlog=1, accept=False)
        S["pool_a"] = Server("pool_a", h_echo)
        S["pool_b"] = Server("pool_b", h_echo, port=free_port())
        self.killed_port = free_port()
        self.killed = None
        self.kills = 0
        self.start_killable()
        self.metrics_port = free_port()
        self.ports = {r: free_port() for r in ("echo", "idle", "sink", "source", "early", "rst", "noread", "backlog", "killed", "pool")}

    def start_killable(self):
        errlog = os.path.join(self.out, "killed-upstream.err")
        for attempt in range(3):
            with open(errlog, "ab") as err:
                p = spawn([sys.executable, os.path.abspath(__file__), "--serve-echo", str(self.killed_port)], stdout=subprocess.PIPE, stderr=err, pdeath=False)
            r, _, _ = select.select([p.stdout], [], [], 10)
            line = p.stdout.readline() if r else b""
            if line == b"ready\n":
                self.killed = p
                return
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
            p.stdout.close()
            CHILDREN.discard(p)
            time.sleep(0.2)
        raise RuntimeError("killable echo server did not start on port %d (%s)" % (self.killed_port, errlog))

    def kill_killable(self):
        p = self.killed
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=5)
        p.stdout.close()
        CHILDREN.discard(p)
        self.kills += 1

    def write_conf(self):
        S = self.servers
        up = lambda n: '"%s:%d"' % (LO, S[n].port)
        rules = {
            "echo": up("echo"),
            "idle": up("echo") + '; idle_timeout = "%ds"' % IDLE_TIMEOUT,
            "sink": up("sink"),
            "source": up("source"),
            "early": up("early"),
            "rst": up("rst"),
            "noread": up("noread") + '; idle_timeout = "%ds"' % IDLE_TIMEOUT,
            "backlog": up("backlog") + '; idle_timeout = "%ds"' % IDLE_TIMEOUT,
            "killed": '"%s:%d"' % (LO, self.killed_port),
            "pool": '( %s, "%s:%d weight=%d" )' % (up("pool_a"), LO, S["pool_b"].port, self.pool_weight),
        }
        lines = [
            "# written by tests/soak/soak.py; rewritten before every SIGHUP",
            'metrics = "%s:%d";' % (LO, self.metrics_port),
            "defaults = {",
            '  connect_timeout = "%ds";' % CONNECT_TIMEOUT,
            "  max_fails = 1;",
            '  fail_timeout = "1s";',
            "};",
            "rules = {",
        ]
        for name, ups in rules.items():
            lines.append('  %s = { listen = "%s:%d"; upstream = %s; };' % (name, LO, self.ports[name], ups))
        lines.append("};")
        tmp = self.conf + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(tmp, self.conf)
        self.pool_weight = 3 if self.pool_weight == 1 else 1


# ---------------------------------------------------------------- client scenarios
#
# Each returns nothing and records its own checks. A healthy-path failure
# (reset, short EOF, wrong bytes, timeout) is a "data" failure; a
# give-up path that ends with a FIN instead of a reset is a "reset" one.


def expect_slice(ctx, rnd, lo, hi):
    ln = rnd.randint(lo, hi)
    off = rnd.randint(0, BLOB_SIZE - ln)
    return off, ln


def check_healthy(ctx, what, outcome, rx, want_len, want_sha):
    """A transfer through a healthy upstream: clean EOF after exactly the
    expected bytes, sha256 equal."""
    chk = ctx.chk
    got = rx.h.hexdigest()
    if ctx.break_mode == "hash":
        want_sha = sha(b"x" + bytes(want_sha, "ascii"))  # validation: the check must fail
    if outcome == "eof" and rx.n == want_len and got == want_sha:
        chk.ok("data")
        chk.count(what)
        return True
    if outcome == "eof" and rx.n < want_len:
        chk.fail("reset", what, "clean EOF after %d of %d bytes from a healthy upstream" % (rx.n, want_len))
    chk.fail("data", what, "outcome %s, %d/%d bytes, sha %s (want %s), first bad byte %d" % (outcome, rx.n, want_len, got[:12], want_sha[:12], rx.bad_at))
    chk.count(what, "fail")
    return False


def sc_bulk(ctx, rnd):
    off, ln = expect_slice(ctx, rnd, 256 << 10, 4 << 20)
    tok = ctx.next_token()
    out = hdr("E", tok, off, ln) + BLOB[off : off + ln]
    s = connect(ctx.ports["echo"])
    try:
        outcome, sent, rx = pump(s, memoryview(out), memoryview(out), now() + OP_TIMEOUT)
    finally:
        s.close()
    check_healthy(ctx, "bulk", outcome, rx, len(out), sha(out))


def sc_reqresp(ctx, rnd):
    tok = ctx.next_token()
    s = connect(ctx.ports["echo"])
    end = now() + OP_TIMEOUT
    try:
        h = hdr("E", tok, 0, 0)
        s.sendall(h)
        b, st = recv_exact(s, HDR, end)
        if st != "ok" or b != h:
            ctx.chk.fail("data", "reqresp", "header echo: %s, %d bytes" % (st, len(b)))
            return
        for i in range(rnd.randint(10, 40)):
            off, ln = expect_slice(ctx, rnd, 1, 1500)
            req = BLOB[off : off + ln]
            s.sendall(req)
            b, st = recv_exact(s, ln, end)
            if st != "ok" or sha(b) != sha(req):
                ctx.chk.fail("data", "reqresp", "round trip %d: %s, %d/%d bytes" % (i, st, len(b), ln))
                ctx.chk.count("reqresp", "fail")
                return
        s.shutdown(socket.SHUT_WR)
        b, st = recv_exact(s, 1, end)
        if ctx.chk.check("data", st == "eof" and not b, "reqresp", "end: %s with %d extra bytes (want clean EOF)" % (st, len(b))):
            ctx.chk.count("reqresp")
    finally:
        s.close()


def sc_half_client_first(ctx, rnd):
    """Client sends, FINs, then reads the sink's answer (length and sha256
    of what it received): the FIN must reach the sink after every byte."""
    off, ln = expect_slice(ctx, rnd, 1, 2 << 20)
    want = ("%d %s\n" % (ln, sha(BLOBV[off : off + ln]))).encode()
    s = connect(ctx.ports["sink"])
    try:
        outcome, sent, rx = pump(s, BLOBV[off : off + ln], memoryview(want), now() + OP_TIMEOUT)
    finally:
        s.close()
    check_healthy(ctx, "half_client_first", outcome, rx, len(want), sha(want))


def sc_half_upstream_first(ctx, rnd, slow=False):
    """The source sends and FINs first; the client reads to EOF, then sends
    its own bytes and FINs: the source must get them all."""
    what = "slow_reader" if slow else "half_upstream_first"
    if slow:
        off, ln = expect_slice(ctx, rnd, 512 << 10, 1536 << 10)
    else:
        off, ln = expect_slice(ctx, rnd, 0, 1 << 20)
    tok = ctx.next_token()
    s = connect(ctx.ports["source"])
    end = now() + OP_TIMEOUT
    try:
        s.sendall(hdr("S", tok, off, ln))
        outcome, _, rx = pump(s, b"", BLOBV[off : off + ln], end, shut=False, slow=(16384, 0.005) if slow else None)
        if not check_healthy(ctx, what, outcome, rx, ln, sha(BLOBV[off : off + ln])):
            return
        off2, ln2 = expect_slice(ctx, rnd, 0, 1 << 20)
        s.settimeout(OP_TIMEOUT)
        s.sendall(BLOBV[off2 : off2 + ln2])
        s.shutdown(socket.SHUT_WR)
    except (ConnectionResetError, BrokenPipeError) as e:
        ctx.chk.fail("data", what, "second half: %r" % (e,))
        return
    finally:
        s.close()
    r = ctx.servers["source"].wait_record(tok, OP_TIMEOUT)
    want = ("eof", ln2, sha(BLOBV[off2 : off2 + ln2]))
    ctx.chk.check("data", r == want, what, "source received %r, want %r" % (r and r[:2], want[:2]))


def sc_client_reset(ctx, rnd):
    """Send part of a transfer, then reset (SO_LINGER 0): the upstream must
    see a reset, not a clean FIN."""
    off, ln = expect_slice(ctx, rnd, 1 << 20, 4 << 20)
    tok = ctx.next_token()
    out = hdr("E", tok, off, ln) + BLOB[off : off + ln]
    s = connect(ctx.ports["echo"])
    stop = rnd.randint(HDR + 1, len(out) // 2)
    after_fin = rnd.random() < 0.25
    try:
        # The header's echo first: the upstream then knows the token, so
        # its end can be looked up (a reset before the upstream connect
        # completes never reaches it, and needs nothing from it).
        s.sendall(out[:HDR])
        b, st = recv_exact(s, HDR, now() + OP_TIMEOUT)
        if st != "ok" or b != out[:HDR]:
            ctx.chk.fail("data", "client_reset", "header echo: %s, %d bytes" % (st, len(b)))
            return
        out = out[HDR:]
        stop -= HDR
        if after_fin:
            # A client that FINs, then resets before reading the echo back.
            s.sendall(out[:stop])
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.01)
            outcome = "stopped"
        else:
            outcome, sent, rx = pump(s, memoryview(out), memoryview(out), now() + OP_TIMEOUT, stop_after=stop)
        set_linger0(s)
    finally:
        s.close()
    if outcome != "stopped":
        ctx.chk.fail("data", "client_reset", "before the reset: %s" % outcome)
        return
    r = ctx.servers["echo"].wait_record(tok, OP_TIMEOUT)
    if r is not None and r[0] == "eof" and after_fin and r[1] == stop:
        # It FINed after every byte it sent, and the echo finished before
        # the reset arrived: a clean end is correct here.
        ctx.chk.ok("reset")
        ctx.chk.count("client_reset", "fin-first")
        return
    if ctx.chk.check("reset", r is not None and r[0] == "reset", "client_reset", "upstream saw %r after the client's reset (want reset)" % (r,)):
        ctx.chk.count("client_reset")


def sc_silent_idle(ctx, rnd):
    """Connect and say nothing. On the idle rule the forwarder gives up at
    the idle timeout: that must be a reset."""
    if True:
        s = connect(ctx.ports["idle"])
        try:
            b, st = recv_exact(s, 1, now() + IDLE_TIMEOUT + 8)
        finally:
            s.close()
        if ctx.chk.check("reset", st == "reset" and not b, "silent_idle", "idle timeout ended the connection with %s (want reset), %d bytes" % (st, len(b))):
            ctx.chk.count("silent_idle")


def sc_silent_fin(ctx, rnd):
    """Connect, say nothing, FIN: the upstream FINs back, a clean EOF."""
    if True:
        s = connect(ctx.ports["echo"])
        try:
            time.sleep(rnd.random() * 0.5)
            s.shutdown(socket.SHUT_WR)
            b, st = recv_exact(s, 1, now() + OP_TIMEOUT)
        finally:
            s.close()
        if ctx.chk.check("data", st == "eof" and not b, "silent_fin", "%s with %d bytes (want clean EOF)" % (st, len(b))):
            ctx.chk.count("silent_fin")


def sc_burst(ctx, rnd):
    """A burst of short connections, each one round trip."""
    for i in range(rnd.randint(20, 50)):
        tok = ctx.next_token()
        off, ln = expect_slice(ctx, rnd, 1, 200)
        out = hdr("E", tok, off, ln) + BLOB[off : off + ln]
        s = connect(ctx.ports["echo"])
        try:
            s.sendall(out)
            b, st = recv_exact(s, len(out), now() + OP_TIMEOUT)
        finally:
            s.close()
        if not ctx.chk.check("data", st == "ok" and b == out, "burst", "connection %d: %s, %d/%d bytes" % (i, st, len(b), len(out))):
            ctx.chk.count("burst", "fail")
            return
        ctx.chk.count("burst_conn")
    ctx.chk.count("burst")


def sc_early(ctx, rnd):
    """The upstream sends fewer bytes than asked and closes cleanly: exactly
    those bytes, then a clean EOF (its FIN passed on, not turned into a reset)."""
    off, ln = expect_slice(ctx, rnd, 0, 512 << 10)
    if rnd.random() < 0.2:
        ln = 0
    s = connect(ctx.ports["early"])
    try:
        s.sendall(hdr("X", ctx.next_token(), off, ln))
        outcome, _, rx = pump(s, b"", BLOBV[off : off + ln], now() + OP_TIMEOUT, shut=False)
    finally:
        s.close()
    check_healthy(ctx, "upstream_close_early", outcome, rx, ln, sha(BLOBV[off : off + ln]))


def sc_rst(ctx, rnd):
    """The upstream sends some bytes then resets: the client must see
    ECONNRESET (reset propagation), and only correct bytes before it."""
    off, ln = expect_slice(ctx, rnd, 0, 256 << 10)
    s = connect(ctx.ports["rst"])
    try:
        s.sendall(hdr("X", ctx.next_token(), off, ln))
        outcome, _, rx = pump(s, b"", BLOBV[off : off + ln], now() + OP_TIMEOUT, shut=False)
    finally:
        s.close()
    ctx.chk.check("data", rx.bad_at < 0 and rx.n <= ln, "upstream_reset", "wrong bytes before the reset at %d (%d/%d)" % (rx.bad_at, rx.n, ln))
    if ctx.chk.check("reset", outcome == "reset", "upstream_reset", "upstream reset after %d bytes; client got %s after %d (want reset)" % (ln, outcome, rx.n)):
        ctx.chk.count("upstream_reset")


def sc_noread(ctx, rnd):
    """The upstream accepts and never reads: send until nothing moves, FIN,
    and wait: the idle timeout must reset us (not FIN)."""
    s = connect(ctx.ports["noread"])
    out = BLOBV[: 8 << 20]
    sent = 0
    try:
        s.setblocking(False)
        p = select.poll()
        p.register(s, select.POLLOUT)
        end = now() + OP_TIMEOUT
        while now() < end and sent < len(out):
            if not p.poll(300):
                break  # nothing moved for 300 ms: the path is full
            try:
                sent += s.send(out[sent : sent + 65536])
            except BlockingIOError:
                pass
        s.setblocking(True)
        b, st = recv_exact(s, 1, now() + IDLE_TIMEOUT + 10)
    except (ConnectionResetError, BrokenPipeError):
        st, b = "reset", b""
    finally:
        s.close()
    if ctx.chk.check("reset", st == "reset" and not b, "upstream_noread", "after %d bytes sent, client got %s (want reset at the idle timeout)" % (sent, st)):
        ctx.chk.count("upstream_noread")


def sc_backlog(ctx, rnd):
    """The upstream's backlog is full (listen(1), never accepts): connect
    timeout or idle timeout; either way the client must be reset."""
    s = connect(ctx.ports["backlog"])
    try:
        s.sendall(hdr("X", ctx.next_token(), 0, 0))
        b, st = recv_exact(s, 1, now() + CONNECT_TIMEOUT + IDLE_TIMEOUT + 10)
    finally:
        s.close()
    if ctx.chk.check("reset", st == "reset" and not b, "upstream_backlog_full", "client got %s (want reset)" % st):
        ctx.chk.count("upstream_backlog_full")


def sc_killed(ctx, rnd):
    """Echo through the upstream that is SIGKILLed and restarted: either a
    complete exact transfer, or a reset with only correct bytes before it."""
    off, ln = expect_slice(ctx, rnd, 64 << 10, 1 << 20)
    out = BLOBV[off : off + ln]
    try:
        s = connect(ctx.ports["killed"])
    except ConnectionResetError:
        # Reset while connecting: the upstream was down (refused) and the
        # forwarder reset us before connect() returned.
        ctx.chk.ok("reset")
        ctx.chk.count("upstream_killed", "reset")
        time.sleep(0.02)
        return
    try:
        outcome, sent, rx = pump(s, out, out, now() + OP_TIMEOUT)
    finally:
        s.close()
    if outcome == "reset":
        ctx.chk.check("data", rx.bad_at < 0, "upstream_killed", "wrong byte at %d before the reset" % rx.bad_at)
        ctx.chk.ok("reset")
        ctx.chk.count("upstream_killed", "reset")
        time.sleep(0.02)
        return
    check_healthy(ctx, "upstream_killed", outcome, rx, ln, sha(out))


def sc_pool(ctx, rnd):
    """Echo through the two-upstream pool while one member goes down and
    comes back: failover means no client ever sees a failure."""
    off, ln = expect_slice(ctx, rnd, 16 << 10, 512 << 10)
    tok = ctx.next_token()
    out = hdr("E", tok, off, ln) + BLOB[off : off + ln]
    s = connect(ctx.ports["pool"])
    try:
        outcome, sent, rx = pump(s, memoryview(out), memoryview(out), now() + OP_TIMEOUT)
    finally:
        s.close()
    check_healthy(ctx, "pool", outcome, rx, len(out), sha(out))


for _f in (sc_silent_idle, sc_noread, sc_backlog):
    _f.slow = True

CLIENT_MIX = [
    (sc_bulk, 4),
    (sc_reqresp, 3),
    (sc_half_client_first, 2),
    (sc_half_upstream_first, 2),
    (lambda c, r: sc_half_upstream_first(c, r, slow=True), 1),
    (sc_client_reset, 2),
    (sc_silent_idle, 1),
    (sc_silent_fin, 1),
    (sc_burst, 1),
]
UPSTREAM_MIX = [
    (sc_early, 2),
    (sc_rst, 3),
    (sc_noread, 1),
    (sc_backlog, 1),
    (sc_killed, 3),
    (sc_pool, 3),
    (sc_bulk, 1),
]
# Minimum runs per engine: the soak fails if a scenario ran fewer times.
MIN_RUNS = {
    "bulk": 3, "reqresp": 2, "half_client_first": 2, "half_upstream_first": 2, "slow_reader": 1,
    "client_reset": 2, "silent_idle": 1, "silent_fin": 1, "burst": 1, "burst_conn": 20,
    "upstream_close_early": 2, "upstream_reset": 2, "upstream_noread": 1, "upstream_backlog_full": 1,
    "upstream_killed": 1, "pool": 3, "emfile_op": 10, "noread_upstream_side": 1,
}


# ---------------------------------------------------------------- phases


def client_loop(ctx, mix, deadline, seed, idx=0, nthreads=1):
    """Every scenario of the mix once first (thread idx starting at its own
    share of the list, so the threads together cover the mix at once), then
    the weighted mix, shuffled, in a cycle."""
    rnd = random.Random(seed)
    distinct = [f for f, w in mix]
    k = idx * len(distinct) // max(1, nthreads)
    first = distinct[k:] + distinct[:k]
    rest = [f for f, w in mix for _ in range(w)]
    rnd.shuffle(rest)
    i = 0
    while now() < deadline and not ctx.stop.is_set():
        if i < len(first):
            fn = first[i]
        else:
            fn = rest[(i - len(first)) % len(rest)]
            if getattr(fn, "slow", False) and deadline - now() < IDLE_TIMEOUT + 1:
                i += 1
                continue  # it would wait for an idle timeout past the deadline
        i += 1
        try:
            fn(ctx, rnd)
        except Exception as e:
            import traceback

            tb = traceback.extract_tb(e.__traceback__)[-1]
            ctx.chk.fail("data", getattr(fn, "__name__", "?"), "exception %r at line %d" % (e, tb.lineno))


def every(ctx, stop, interval, fn):
    while not stop.wait(interval):
        try:
            fn()
        except Exception as e:
            ctx.chk.fail("coverage", "controller", "%r" % (e,))


def kill_controller(ctx, stop, rnd):
    try:
        first = True
        while not stop.wait(0.5 if first else rnd.uniform(1.0, 2.5)):
            first = False
            ctx.kill_killable()
            log("upstream %d killed" % ctx.killed_port)
            if stop.wait(rnd.uniform(0.1, 0.5)):
                break
            ctx.start_killable()
        if ctx.killed.poll() is not None:
            ctx.start_killable()
    except Exception as e:
        ctx.chk.fail("coverage", "kill_controller", repr(e))


def pool_controller(ctx, stop, rnd):
    b = ctx.servers["pool_b"]
    first = True
    while not stop.wait(0.3 if first else rnd.uniform(0.8, 1.5)):
        first = False
        log("pool member %d down" % b.port)
        b.down.set()
        ctx.pool_downs += 1
        if stop.wait(rnd.uniform(1.2, 2.0)):
            break
        b.down.clear()
    b.down.clear()


def run_phase(ctx, fwd, name, seconds, mix, nclients, controllers=(), reload_every=None, extra=()):
    chk = ctx.chk
    log("%s: phase %s, %.1f s, %d clients" % (fwd.engine, name, seconds, nclients))
    t0 = now()
    deadline = t0 + seconds
    stop = threading.Event()
    ths = [threading.Thread(target=c, args=(ctx, stop, random.Random(i)), daemon=True) for i, c in enumerate(controllers)]
    if reload_every:
        ths.append(threading.Thread(target=every, args=(ctx, stop, reload_every, fwd.reload), daemon=True))
    for t in ths:
        t.start()
    cl = [threading.Thread(target=client_loop, args=(ctx, mix, deadline, hash((fwd.engine, name, i)), i, nclients), daemon=True) for i in range(nclients)]
    cl += [threading.Thread(target=client_loop, args=(ctx, m, deadline, 0), daemon=True) for m in extra]
    for t in cl:
        t.start()
    for t in cl:
        t.join(max(0.1, deadline + 3 * OP_TIMEOUT - now()))
        if t.is_alive():
            chk.fail("data", name, "a client thread is still running past every timeout")
    stop.set()
    for t in ths:
        t.join(10)
    if ctx.break_mode == "fd" and name == "clients":
        # Validation: a connection held open across the check, as a leak
        # in the forwarder would hold its two sockets.
        ctx.leak = connect(ctx.ports["echo"])
        time.sleep(0.5)  # accepted and connected upstream before the check
    settle(ctx, fwd, name)
    if getattr(ctx, "leak", None):
        ctx.leak.close()
        ctx.leak = None
    ctx.phases.append({"engine": fwd.engine, "phase": name, "seconds": round(now() - t0, 2)})


def settle(ctx, fwd, phase):
    """Resources back to the baseline after a phase (bounded wait: the idle
    timeout frees what a stuck peer held)."""
    chk = ctx.chk
    base = fwd.base
    end = now() + IDLE_TIMEOUT + 6
    while True:
        f = fwd.fds()
        ok_fd = f["socket"] <= base["socket"] and f["other"] <= base["other"] and f["pipe"] <= fwd.pipe_cap
        if ok_fd or now() > end:
            break
        time.sleep(0.1)
    rss = fwd.rss()
    chk.check("resources", ok_fd, "fds-" + phase, "descriptors %r, baseline %r (pipes up to %d)" % (f, base, fwd.pipe_cap))
    # uring's provided buffers (128 per worker, 64 KiB each) are touched
    # lazily, as the ring hands them out: up to 16 MiB more once warm.
    tol = RSS_TOL + (URING_BUFS if fwd.engine == "uring" else 0)
    if ctx.sanitized:
        # ASan's quarantine keeps freed memory (256 MiB by default): RSS
        # says nothing there; its leak check at exit does (exit status).
        tol = 1 << 40
    chk.check("resources", rss <= fwd.base_rss + tol, "rss-" + phase, "RSS %d KiB, baseline %d KiB + %d KiB" % (rss >> 10, fwd.base_rss >> 10, tol >> 10))
    # Drift: after the first phase, later phases may not keep growing.
    if fwd.rss_first is None:
        fwd.rss_first = rss
    else:
        chk.check("resources", ctx.sanitized or rss <= fwd.rss_first + RSS_DRIFT, "rss-drift-" + phase, "RSS %d KiB, %d KiB after the first phase + %d KiB" % (rss >> 10, fwd.rss_first >> 10, RSS_DRIFT >> 10))
    try:
        act = sum(v for n, l, v in fwd.metrics() if n == "sockfwd_connections_active")
        chk.check("resources", act == 0, "active-" + phase, "%d connections still active in the metrics" % act)
    except OSError as e:
        chk.fail("resources", "metrics-" + phase, "metrics: %r" % (e,))
    ctx.phases.append({"engine": fwd.engine, "phase": phase + ":settled", "fds": f, "rss_kib": rss >> 10})
    log("%s: after %s: fds %s (baseline %s), RSS %d KiB (baseline %d KiB)" % (fwd.engine, phase, f, base, rss >> 10, fwd.base_rss >> 10))


def idle_cpu(ctx, fwd, seconds):
    """Idle connections open, nothing moving: utime+stime under 2% of a CPU."""
    held = []
    try:
        for i in range(8):
            held.append(connect(ctx.ports["echo"]))
        for i in range(2):
            s = connect(ctx.ports["echo"])
            s.shutdown(socket.SHUT_WR)  # half-closed: its upstream FINs back
            held.append(s)
        time.sleep(0.3)
        c0 = fwd.cpu()
        t0 = now()
        time.sleep(seconds)
        c1 = fwd.cpu()
        dt = now() - t0
    finally:
        for s in held:
            s.close()
    frac = (c1 - c0) / dt
    ctx.chk.check("idle_cpu", frac < CPU_LIMIT, "idle", "%.2f%% of a CPU over %.1f s idle (limit %.0f%%)" % (frac * 100, dt, CPU_LIMIT * 100))
    ctx.phases.append({"engine": fwd.engine, "phase": "idle", "cpu_percent": round(frac * 100, 3), "seconds": round(dt, 2)})
    log("%s: idle CPU %.2f%% over %.1f s" % (fwd.engine, frac * 100, dt))


def wait_quiet(fwd, timeout=5.0):
    """Until the metrics show no active connection (bounded), then a beat."""
    end = now() + timeout
    while now() < end:
        try:
            if sum(v for n, l, v in fwd.metrics() if n == "sockfwd_connections_active") == 0:
                break
        except OSError:
            pass
        time.sleep(0.05)
    time.sleep(0.2)


def baseline(ctx, fwd, parallel=8):
    """Warm up (every path once, so lazily made pools exist), settle, then
    take the descriptor and RSS baseline."""
    rnd = random.Random(1)
    for fn in (sc_reqresp, sc_half_client_first, sc_half_upstream_first, sc_pool):
        fn(ctx, rnd)
    # Bulk in parallel, so every worker's buffer pool (uring's provided
    # buffers, the pipe pool) has been touched before RSS is measured.
    th = [threading.Thread(target=sc_bulk, args=(ctx, random.Random(i))) for i in range(parallel)]
    for t in th:
        t.start()
    for t in th:
        t.join(OP_TIMEOUT + 5)
    wait_quiet(fwd)
    fwd.base = fwd.fds()
    fwd.pipe_cap = PIPE_POOL_FDS if fwd.engine == "splice" else fwd.base["pipe"]
    fwd.base_rss = fwd.rss()
    log("%s: baseline fds %s, RSS %d KiB" % (fwd.engine, fwd.base, fwd.base_rss >> 10))


def emfile_phase(ctx, fwd, seconds, limit):
    """RLIMIT_NOFILE is low: more clients than descriptors. Each operation
    must complete exactly, or be reset (accept paused, or no descriptor for
    the upstream); the forwarder must really have reached its limit."""
    chk = ctx.chk
    log("%s: phase emfile, %.1f s, RLIMIT_NOFILE %d" % (fwd.engine, seconds, limit))
    deadline = now() + seconds
    peak = [0]
    stop = threading.Event()

    def sampler():
        while not stop.wait(0.01):
            try:
                peak[0] = max(peak[0], len(os.listdir("/proc/%d/fd" % fwd.pid)))
            except OSError:
                pass

    def worker(seed):
        rnd = random.Random(seed)
        while now() < deadline:
            big = rnd.random() < 0.2
            off, ln = expect_slice(ctx, rnd, 1, (1 << 20) if big else (16 << 10))
            tok = ctx.next_token()
            out = hdr("E", tok, off, ln) + BLOB[off : off + ln]
            try:
                s = connect(ctx.ports["echo"], timeout=OP_TIMEOUT)
            except ConnectionResetError:
                chk.ok("reset")  # no descriptor for the upstream: reset at once
                chk.count("emfile_op", "reset")
                continue
            except OSError as e:
                chk.fail("data", "emfile_op", "connect: %r" % (e,))
                continue
            try:
                time.sleep(rnd.random() * 0.2)  # hold descriptors a while
                outcome, _, rx = pump(s, memoryview(out), memoryview(out), now() + OP_TIMEOUT)
            finally:
                s.close()
            if outcome == "reset":
                chk.check("data", rx.bad_at < 0, "emfile_op", "wrong byte at %d before a reset" % rx.bad_at)
                chk.ok("reset")
                chk.count("emfile_op", "reset")
            elif check_healthy(ctx, "emfile_op", outcome, rx, len(out), sha(out)):
                pass

    th = [threading.Thread(target=sampler, daemon=True)]
    th += [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(40)]
    for t in th:
        t.start()
    for t in th[1:]:
        t.join(max(0.1, deadline + 3 * OP_TIMEOUT - now()))
    stop.set()
    th[0].join(2)
    chk.check("coverage", peak[0] >= limit - 2, "emfile-reached", "peak %d descriptors, limit %d: EMFILE never reached" % (peak[0], limit))
    ctx.phases.append({"engine": fwd.engine, "phase": "emfile", "limit": limit, "peak_fds": peak[0], "ok": chk.n("emfile_op", "ok"), "reset": chk.n("emfile_op", "reset")})
    log("%s: emfile: peak %d fds of %d, %d complete, %d reset" % (fwd.engine, peak[0], limit, chk.n("emfile_op", "ok"), chk.n("emfile_op", "reset")))
    settle(ctx, fwd, "emfile")


def coverage(ctx, fwd_metrics):
    """Every scenario ran its minimum, and the faults really happened."""
    chk = ctx.chk
    for sc, m in MIN_RUNS.items():
        n = chk.n(sc, "ok")
        chk.check("coverage", n >= m, "runs-" + sc, "%d successful runs (minimum %d)" % (n, m))
    chk.check("coverage", chk.n("upstream_killed", "reset") >= 1, "killed-resets", "no transfer was cut by a kill")
    chk.check("coverage", ctx.kills_engine >= 1, "kills", "upstream never killed")
    pb = "%s:%d" % (LO, ctx.servers["pool_b"].port)
    fails = sum(v for n, l, v in fwd_metrics if n == "sockfwd_upstream_connect_failures_total" and l.get("upstream") == pb)
    chk.check("coverage", fails >= 1, "pool-failover", "no connect to the down pool member failed (%d)" % fails)
    chk.check("coverage", ctx.pool_downs_engine >= 1, "pool-downs", "pool member never went down")


def noread_upstream_side(ctx):
    """The never-reading upstream's view: every connection the forwarder
    gave up on (idle timeout) ended with a reset, after correct bytes."""
    srv = ctx.servers["noread"]
    end = now() + OP_TIMEOUT
    while now() < end and srv.active:
        time.sleep(0.05)
    with srv.lock:
        recs = srv.records.pop("noread", [])
    for out, n, bad in recs:
        if ctx.chk.check("reset", out == "reset" and bad < 0, "noread_upstream_side", "upstream got %d bytes (bad at %d) then %s (want reset)" % (n, bad, out)):
            ctx.chk.count("noread_upstream_side")


def run_engine(ctx, engine, budget, idle_s):
    chk = ctx.chk
    chk.engine = engine
    ctx.kills_engine = ctx.kills
    ctx.pool_downs = getattr(ctx, "pool_downs", 0)
    downs0 = ctx.pool_downs
    ctx.write_conf()
    fwd = Fwd(ctx, engine, "main")
    if not chk.check("exit", fwd.wait_ready(), "start-" + engine, "not listening (log %s)" % fwd.logpath):
        fwd.stop(chk)
        return
    baseline(ctx, fwd)
    # Load for the engine's share less about 10 s of starts, settles and
    # idle checks; short runs keep at least 65% of it as load (then the
    # wall time runs over, by about 8 s an engine).
    work = max(6.0, budget * 0.65, budget - 10)
    reload_every = max(1.0, min(3.0, work / 8))
    run_phase(ctx, fwd, "clients", work * 0.35, CLIENT_MIX, 6, reload_every=reload_every)
    run_phase(ctx, fwd, "upstreams", work * 0.40, UPSTREAM_MIX, 6, controllers=(kill_controller, pool_controller), reload_every=reload_every, extra=([(sc_pool, 1)], [(sc_pool, 1)], [(sc_killed, 1)]))
    ctx.kills_engine = ctx.kills - ctx.kills_engine
    noread_upstream_side(ctx)
    ctx.pool_downs_engine = ctx.pool_downs - downs0
    idle_cpu(ctx, fwd, idle_s)
    settle(ctx, fwd, "idle")
    try:
        m = fwd.metrics()
    except OSError:
        m = []
    chk.check("exit", any(n == "sockfwd_reloads_total" and v == fwd.reloads for n, l, v in m), "reloads-metric", "sockfwd_reloads_total != %d sent" % fwd.reloads)
    chk.check("exit", any(n == "sockfwd_reload_failures_total" and v == 0 for n, l, v in m), "reload-failures", "a reload failed")
    ctx.metrics_main = m
    base_total = sum(fwd.base.values())
    fwd.stop(chk)

    # EMFILE: a second process with a low descriptor limit, same rules.
    limit = base_total + 30
    fwd = Fwd(ctx, engine, "emfile", nofile=limit)
    if not chk.check("exit", fwd.wait_ready(), "start-emfile-" + engine, "not listening with RLIMIT_NOFILE %d (log %s)" % (limit, fwd.logpath)):
        fwd.stop(chk)
        return
    baseline(ctx, fwd, parallel=2)  # 8 would hit the descriptor limit already
    emfile_phase(ctx, fwd, work * 0.25, limit)
    idle_cpu(ctx, fwd, idle_s)
    fwd.stop(chk)
    coverage(ctx, ctx.metrics_main)


def engines_of(sockfwd):
    out = subprocess.run([sockfwd, "-V"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"engines: ([^)]*)\)", out)
    return m.group(1).split() if m else []


def main():
    ap = argparse.ArgumentParser(description="sockfwd chaos soak")
    ap.add_argument("--sockfwd", default="build/sockfwd")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)))
    ap.add_argument("--out", default="build/soak")
    ap.add_argument("--engines", help="comma-separated subset of `sockfwd -V`")
    ap.add_argument("--break", dest="break_mode", choices=("hash", "fin", "fd"), help="validation only: make one invariant fail on purpose")
    ap.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_echo:
        return serve_killable(args.serve_echo)
    if args.seconds < 10:
        print("soak: --seconds must be at least 10", file=sys.stderr)
        return 2
    if not os.access(args.sockfwd, os.X_OK):
        print("soak: %s: not an executable (make first)" % args.sockfwd, file=sys.stderr)
        return 2
    engines = engines_of(args.sockfwd)
    if args.engines:
        want = args.engines.split(",")
        bad = [e for e in want if e not in engines]
        if bad:
            print("soak: engine(s) %s not in %s" % (",".join(bad), engines), file=sys.stderr)
            return 2
        engines = want
    if not engines:
        print("soak: no engines from %s -V" % args.sockfwd, file=sys.stderr)
        return 2

    ctx = Ctx(args)
    global_deadline = now() + args.seconds * 1.5 + 60

    def watchdog():
        while now() < global_deadline:
            time.sleep(1)
        log("global deadline passed: killing everything")
        ctx.chk.fail("exit", "deadline", "the soak overran its global deadline")
        finish(ctx, args, engines)
        kill_children()
        os._exit(1)

    def on_signal(sig, frame):
        kill_children()
        os._exit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=watchdog, daemon=True).start()
    try:
        if args.break_mode == "fin":
            global h_rst
            h_rst = h_early  # validation: the "resetting" upstream closes cleanly
        ctx.start_servers()
        ctx.pool_downs = 0
        budget = args.seconds / len(engines)
        idle_s = 1.5 if budget < 40 else 3.0
        log("sockfwd %s, engines %s, %.0f s each, report in %s" % (args.sockfwd, " ".join(engines), budget, os.path.join(ctx.out, "report.json")))
        if ctx.sanitized:
            log("AddressSanitizer build: RSS not checked, LeakSanitizer at exit instead")
        for e in engines:
            run_engine(ctx, e, budget, idle_s)
    finally:
        kill_children()
    return finish(ctx, args, engines)


FINISHED = threading.Lock()


def finish(ctx, args, engines):
    if not FINISHED.acquire(blocking=False):
        return 1
    chk = ctx.chk
    report = {
        "sockfwd": ctx.sockfwd,
        "seconds": args.seconds,
        "wall_seconds": round(now() - T0, 1),
        "engines": engines,
        "break": args.break_mode,
        "invariants": {s: {"passed": chk.passed[s], "failed": chk.failed[s]} for s in chk.SETS},
        "scenarios": dict(sorted(chk.counts.items())),
        "phases": ctx.phases,
        "failures": chk.failures,
    }
    path = os.path.join(ctx.out, "report.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    bad = 0
    for s in chk.SETS:
        print("soak: %-9s %d passed, %d failed" % (s, chk.passed[s], chk.failed[s]))
        bad += chk.failed[s]
    total = sum(chk.passed.values())
    if total == 0 or sum(v for k, v in chk.counts.items() if not k.endswith("/fail")) == 0:
        print("soak: nothing ran")
        bad += 1
    print("soak: report %s (%.0f s wall)" % (path, now() - T0))
    print("soak: %s" % ("FAILED" if bad else "passed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
