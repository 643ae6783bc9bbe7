#!/usr/bin/env python3
"""The sockfwd bench suite: every engine and the usual alternatives, same load, one run.

    python3 bench/run.py --quick|--full --sockfwd build/sockfwd --sfload build/sfload

For each workload (tools/sfload.c: stream, crr, rr, idle) it runs direct (no
forwarder), every sockfwd engine that `sockfwd -V` lists, and the peers found
installed (HAProxy with forced splice and without, nginx stream, socat).
Runs are interleaved (round 1: A B C ..., round 2: A B C ...) and repeated;
every forwarder gets a fresh process and fresh ports for every run.  Results
go to bench/results/<timestamp>/ (results.json, results.csv, summary.csv,
table.md, chart.png) and the table is printed at the end.

Python 3 standard library only.  The whole run holds an exclusive flock on
/tmp/sockfwd-bench.lock, so two benchmarks never share the machine.
"""

import argparse
import csv
import datetime
import fcntl
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LOCK_PATH = "/tmp/sockfwd-bench.lock"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "bench", "configs")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# Suite profiles.  Durations in seconds; idle_n connections held.
PROFILES = {
    "quick": {
        "rounds": 3,
        "stream_s": 1.5,
        "multi_streams": 0,  # no multi-stream workload in the quick suite
        "crr_s": 1.5,
        "rr_s": 1.5,
        "idle_n": 10000,
        "idle_hold_s": 0.3,
    },
    "full": {
        "rounds": 5,
        "stream_s": 5.0,
        "multi_streams": 4,
        "crr_s": 3.0,
        "rr_s": 5.0,
        "idle_n": 10000,
        "idle_hold_s": 2.0,
    },
}

# Fixed parameters, the same for every forwarder.
THREADS = 1  # sockfwd -j, haproxy nbthread, nginx worker_processes
CRR_CLIENTS = 8
CRR_SIZE = 64
CRR_MAX = 20000  # connections per crr run: the forwarder's upstream ports
RR_SIZE = 64
SRC_ADDRS = 1024  # client source addresses 127.64.x.y
# Connections held in idle where 10,000 would be unsafe on this machine:
# naive takes two threads per connection (pid_max is 32768 here), socat a
# process per connection.
IDLE_CAP = {"sockfwd-naive": 4000, "socat": 200}

# CPU placement (CPU indexes into the CPUs this process may use).
# fwd: the forwarder; gen: sfload client and server.  None = unpinned.
PLACEMENT = {
    "stream": {"fwd": [0], "gen": [1]},
    "crr": {"fwd": [0], "gen": [1]},
    "rr": {"fwd": [0], "gen": [0]},  # all on one CPU, as in the calibration
    "idle": {"fwd": None, "gen": None},
}


def log(msg):
    """Print a progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- lock


def lock_holders(path):
    """Return the pids that hold a flock on path, from /proc/locks."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if "->" in parts:
                continue  # a waiter, not a holder
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want:
                pids.append(int(parts[4]))
    return pids


def ancestors():
    """Return the set of pids of this process's ancestors."""
    out, pid = set(), os.getppid()
    while pid > 1:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return out


def take_lock(timeout_s):
    """Hold the bench lock for the whole run; return the open file (keep it).

    When an ancestor already holds it (`flock /tmp/sockfwd-bench.lock make
    bench`), run under that lock instead of deadlocking on it.  Otherwise
    wait at most timeout_s for another benchmark to finish.
    """
    f = open(LOCK_PATH, "a+")
    deadline = time.monotonic() + timeout_s
    told = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            pass
        holders = lock_holders(LOCK_PATH)
        if holders and set(holders) <= ancestors():
            log(f"{LOCK_PATH} is held by our parent (pid {holders[0]}): running under it")
            return f
        if time.monotonic() > deadline:
            sys.exit(f"bench: {LOCK_PATH} still held by {holders} after {timeout_s} s")
        if not told:
            log(f"another benchmark holds {LOCK_PATH} (pids {holders}); waiting")
            told = True
        time.sleep(1)


# ---------------------------------------------------------------- /proc


def proc_table():
    """Return {pid: (ppid, cpu_ticks, rss_kib, own_ticks)} for every process.

    cpu_ticks is utime+stime+cutime+cstime: a process's own threads plus its
    reaped children (socat's forked connections); own_ticks leaves the
    children out.
    """
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state) of proc(5).
        ppid = int(fields[1])
        ticks = sum(int(x) for x in fields[11:15])
        rss_kib = int(fields[21]) * PAGE_KIB
        table[int(name)] = (ppid, ticks, rss_kib, int(fields[11]) + int(fields[12]))
    return table


def tree(root, table):
    """Return the pids of root and all its descendants in table."""
    kids = {}
    for pid, (ppid, _, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(kids.get(pid, []))
    return out


def tree_usage(roots):
    """Return (cpu_seconds, rss_kib) summed over the process trees of roots."""
    table = proc_table()
    ticks = rss = 0
    for root in roots:
        for pid in tree(root, table):
            ticks += table[pid][1]
            rss += table[pid][2]
    return ticks / CLK_TCK, rss


def cpu_busy(cpus):
    """Return busy ticks (user+nice+system+irq+softirq+steal) summed over cpus.

    Besides the forwarder's own utime+stime (which already holds the softirq
    work that ran in its context) this counts what ran on its CPU for it
    elsewhere: ksoftirqd, interrupt-context softirqs.
    """
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            parts = line.split()
            if int(parts[0][3:]) in cpus:
                v = [int(x) for x in parts[1:9]]
                total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return total


def other_ticks(ours):
    """Return {pid: cpu_ticks} of every process outside our trees and this script."""
    table = proc_table()
    mine = {os.getpid()}
    for root in ours:
        mine.update(tree(root, table))
    for pid, (ppid, _, _, _) in table.items():
        if ppid == os.getpid():
            mine.update(tree(pid, table))  # the sfload client, started meanwhile
    # Own time only: a parent's cutime jumps by a child's whole life at its exit.
    return {pid: v[3] for pid, v in table.items() if pid not in mine}


def other_delta(before, after):
    """CPU seconds other processes used between two other_ticks() snapshots.

    A process that started meanwhile counts in full; our own sfload client
    started meanwhile too, so it is excluded by the caller's pid list.
    """
    ticks = 0
    for pid, t in after.items():
        ticks += t - before.get(pid, 0) if t >= before.get(pid, 0) else 0
    return ticks / CLK_TCK


# ---------------------------------------------------------------- helpers


def cpus_allowed():
    """Return the sorted list of CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def nofile():
    """The descriptor limit every process of the run gets (the hard limit)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def idle_target(prof, name):
    """Connections to hold in idle for forwarder name.

    Each proxied connection takes two descriptors in the forwarder, so the
    descriptor limit (which we cannot raise without CAP_SYS_RESOURCE) caps
    the count; naive and socat have their own caps (IDLE_CAP).
    """
    n = min(prof["idle_n"], (nofile() - 400) // 2)
    return min(n, IDLE_CAP.get(name, n))


def pinned_cpus(index_list):
    """Return the set of CPU ids for CPU indexes (empty when unpinned)."""
    if index_list is None:
        return set()
    cpus = cpus_allowed()
    return {cpus[i % len(cpus)] for i in index_list}


def pin(index_list):
    """Return a preexec_fn pinning the child to the given CPU indexes, or None."""
    if index_list is None:
        return None
    chosen = pinned_cpus(index_list)
    return lambda: os.sched_setaffinity(0, chosen)


class Ports:
    """Hand out fresh loopback TCP ports below the ephemeral range."""

    def __init__(self, first=20000, last=32000):
        self.first, self.last = first, last
        self.next = first + (os.getpid() * 7) % (last - first)

    def take(self):
        """Return a port that can be bound on 127.0.0.1 right now."""
        for _ in range(self.last - self.first):
            port = self.next
            self.next = self.first if self.next >= self.last else self.next + 1
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue
        raise RuntimeError("no free port")


def wait_port(port, timeout_s=5.0):
    """Wait until 127.0.0.1:port accepts connections; return True if it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def echo_check(port, timeout_s=3.0):
    """Send bytes through 127.0.0.1:port to the echo server; True if they return."""
    msg = b"sockfwd-bench-check"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"E" + msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(len(msg) - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == msg
    except OSError:
        return False


def run_cmd(cmd, timeout=10):
    """Run cmd and return its stdout+stderr as text ('' if it cannot run)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def stop_process(proc, timeout_s=3.0):
    """SIGTERM proc, wait, then SIGKILL what is left of its process group."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: its leftovers only
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} did not exit")


# ---------------------------------------------------------------- forwarders


class Server:
    """An `sfload serve` process: the sink, source and echo upstream."""

    def __init__(self, sfload, port, cpus):
        self.port = port
        self.proc = subprocess.Popen(
            [sfload, "serve", "-l", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=pin(cpus), start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 5)
        if not ready or '"ready"' not in self.proc.stdout.readline():
            self.stop()
            raise RuntimeError("sfload serve did not start")

    def stop(self):
        """Stop the server."""
        stop_process(self.proc)
        self.proc.stdout.close()


class Forwarder:
    """Base: one forwarder (or none, for direct) in front of a server port."""

    name = "?"
    kind = "?"

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.errfile = None

    def command(self, listen, upstream, rundir):
        """Return the argv that forwards 127.0.0.1:listen to :upstream."""
        raise NotImplementedError

    def start(self, listen, upstream, cpus):
        """Start forwarding listen -> upstream; raise if it does not forward."""
        rundir = tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.workdir)
        self.errpath = os.path.join(rundir, "stderr.log")
        self.errfile = open(self.errpath, "w")
        self.proc = subprocess.Popen(
            self.command(listen, upstream, rundir), stdin=subprocess.DEVNULL,
            stdout=self.errfile, stderr=self.errfile, preexec_fn=pin(cpus),
            start_new_session=True, cwd=rundir)
        if not wait_port(listen) or not echo_check(listen):
            self.stop()
            raise RuntimeError(f"{self.name} does not forward: {self.tail_err()}")

    def tail_err(self):
        """Return the last lines the forwarder wrote on stderr."""
        try:
            with open(self.errpath) as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def roots(self):
        """Return the pids whose process trees make up the forwarder."""
        return [self.proc.pid] if self.proc else []

    def stop(self):
        """Stop the forwarder; return what it reported ({} if nothing)."""
        if self.proc:
            stop_process(self.proc)
            self.proc = None
        if self.errfile:
            self.errfile.close()
            self.errfile = None
        return {}


class Direct(Forwarder):
    """No forwarder: the client talks to the server, the physical reference."""

    name = kind = "direct"

    def start(self, listen, upstream, cpus):
        """Nothing to start."""

    def roots(self):
        """No process."""
        return []


class Sockfwd(Forwarder):
    """One sockfwd engine."""

    kind = "sockfwd"

    def __init__(self, workdir, binary, engine):
        super().__init__(workdir)
        self.binary, self.engine = binary, engine
        self.name = f"sockfwd-{engine}"

    def command(self, listen, upstream, rundir):
        """sockfwd with THREADS workers, not quiet: we want its stats line."""
        return [self.binary, "-b", self.engine, "-l", f"127.0.0.1:{listen}",
                "-r", f"127.0.0.1:{upstream}", "-j", str(THREADS)]

    def stop(self):
        """Stop sockfwd and parse its exit stats line."""
        super().stop()
        stats = {}
        try:
            with open(self.errpath) as f:
                for line in f:
                    if "stats:" not in line:
                        continue
                    for kv in line.split("stats:", 1)[1].split():
                        k, v = kv.split("=", 1)
                        if k == "spliced":
                            a, b = v.split("/")
                            stats["spliced_c2u"], stats["spliced_u2c"] = int(a), int(b)
                        else:
                            stats[k] = int(v)
        except (OSError, ValueError):
            pass
        return stats


def render(template, **values):
    """Fill a bench/configs template: @KEY@ is replaced by values[key]."""
    with open(os.path.join(TEMPLATES, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k.upper()}@", str(v))
    return text


class Haproxy(Forwarder):
    """HAProxy in TCP mode, with forced splice or none."""

    kind = "haproxy"

    def __init__(self, workdir, splice):
        super().__init__(workdir)
        self.splice = splice
        self.name = "haproxy-splice" if splice else "haproxy"

    def command(self, listen, upstream, rundir):
        """haproxy -db on a generated config."""
        splice = ("option splice-request\n    option splice-response"
                  if self.splice else "# no splice")
        cfg = os.path.join(rundir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(render("haproxy.cfg.in", listen=listen, upstream=upstream,
                           threads=THREADS, splice=splice, maxconn=(nofile() - 300) // 2))
        return ["haproxy", "-f", cfg, "-db"]


def nginx_stream_module():
    """Return the path of nginx's stream module, or None."""
    for p in ("/usr/lib/nginx/modules/ngx_stream_module.so",
              "/usr/share/nginx/modules/ngx_stream_module.so"):
        if os.path.exists(p):
            return p
    return None


class Nginx(Forwarder):
    """nginx's stream module (master + worker processes)."""

    name = kind = "nginx"

    def command(self, listen, upstream, rundir):
        """nginx in the foreground with its own prefix, pid and logs."""
        cfg = os.path.join(rundir, "nginx.conf")
        with open(cfg, "w") as f:
            f.write(render("nginx.conf.in", listen=listen, upstream=upstream,
                           threads=THREADS, module=nginx_stream_module(), dir=rundir,
                           nofile=nofile()))
        return ["nginx", "-p", rundir, "-c", cfg, "-e", os.path.join(rundir, "error.log")]


class Socat(Forwarder):
    """socat, a process forked per connection."""

    name = kind = "socat"

    def command(self, listen, upstream, rundir):
        """socat with TCP_NODELAY on both sides like every other forwarder."""
        return ["socat", f"TCP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork,backlog=4096,nodelay",
                f"TCP:127.0.0.1:{upstream},nodelay"]


def sockfwd_engines(binary):
    """Return the engines `sockfwd -V` lists."""
    out = run_cmd([binary, "-V"])
    if "engines:" not in out:
        sys.exit(f"bench: cannot read the engines from `{binary} -V`: {out!r}")
    return out.split("engines:", 1)[1].strip(" )\n").split()


def peers_installed():
    """Return the names of the peers installed here."""
    found = []
    if shutil.which("haproxy"):
        found += ["haproxy-splice", "haproxy"]
    if shutil.which("nginx") and nginx_stream_module():
        found.append("nginx")
    if shutil.which("socat"):
        found.append("socat")
    return found


def make_forwarders(args, workdir):
    """Return the list of forwarders to measure, direct first."""
    fwds = [Direct(workdir)]
    fwds += [Sockfwd(workdir, args.sockfwd, e) for e in sockfwd_engines(args.sockfwd)]
    peers = peers_installed()
    for name in peers:
        if name == "haproxy-splice":
            fwds.append(Haproxy(workdir, True))
        elif name == "haproxy":
            fwds.append(Haproxy(workdir, False))
        elif name == "nginx":
            fwds.append(Nginx(workdir))
        elif name == "socat":
            fwds.append(Socat(workdir))
    if args.only:
        keep = set(args.only.split(","))
        fwds = [f for f in fwds if f.name in keep or f.name == "direct"]
    return fwds


# ---------------------------------------------------------------- workloads


def workloads(prof):
    """Return the workload list of a profile: (id, sfload argv tail, placement key)."""
    t = prof["stream_s"]
    wl = [
        ("stream_c2s", ["stream", "-n", "1", "-t", str(t), "-d", "c2s"], "stream"),
        ("stream_s2c", ["stream", "-n", "1", "-t", str(t), "-d", "s2c"], "stream"),
    ]
    if prof["multi_streams"]:
        n = str(prof["multi_streams"])
        wl.append((f"stream{n}_c2s", ["stream", "-n", n, "-t", str(t), "-d", "c2s"], "stream"))
    wl += [
        ("crr", ["crr", "-n", str(CRR_CLIENTS), "-t", str(prof["crr_s"]), "-s", str(CRR_SIZE),
                 "-m", str(CRR_MAX), "-a", str(SRC_ADDRS)], "crr"),
        ("rr", ["rr", "-n", "1", "-t", str(prof["rr_s"]), "-s", str(RR_SIZE)], "rr"),
        ("idle", ["idle", "-H", str(prof["idle_hold_s"]), "-W", "-a", "64"], "idle"),
    ]
    return wl


def run_client(argv, cpus, timeout_s, on_held=None):
    """Run an sfload client; return its final JSON object.

    on_held(event) is called when an idle client reports its connections
    held; the client proceeds once it returns.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=pin(cpus),
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    result = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if not ready:
                continue
            line = proc.stdout.readline()
            if not line:
                break
            obj = json.loads(line)
            if obj.get("event") == "held":
                if on_held:
                    on_held(obj)
                proc.stdin.write("\n")
                proc.stdin.flush()
            else:
                result = obj
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            log(f"client timed out: {' '.join(argv)}")
        stop_process(proc, timeout_s=5)
        err = proc.stderr.read().strip()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    if result is None:
        raise RuntimeError(f"sfload failed: {err or 'no result'}")
    result["exit"] = proc.returncode
    return result


def run_cell(args, fwd, wl, ports, prof):
    """Run one workload against one forwarder once; return the record."""
    wid, tail, place = wl
    where = PLACEMENT[place]
    upstream, listen = ports.take(), ports.take()
    server = Server(args.sfload, upstream, where["gen"])
    rec = {"forwarder": fwd.name, "kind": fwd.kind, "workload": wid}
    try:
        fwd.start(listen, upstream, where["fwd"])
        target = upstream if isinstance(fwd, Direct) else listen
        argv = [args.sfload] + tail + ["-c", f"127.0.0.1:{target}"]
        if wid == "idle":
            argv += ["-n", str(idle_target(prof, fwd.name))]
        cpu0, rss0 = tree_usage(fwd.roots())
        srv0, _ = tree_usage([server.proc.pid])
        others0 = other_ticks(fwd.roots() + [server.proc.pid])
        fcpus = pinned_cpus(where["fwd"]) if not isinstance(fwd, Direct) else set()
        busy0 = cpu_busy(fcpus)
        held = {}

        def on_held(event):
            time.sleep(0.2)  # let the forwarder settle its last accepts
            held["rss_kib"] = tree_usage(fwd.roots())[1]
            held["held"] = event["held"]

        t0 = time.monotonic()
        res = run_client(argv, where["gen"], timeout_s=180, on_held=on_held)
        wall = time.monotonic() - t0
        cpu1, _ = tree_usage(fwd.roots())
        srv1, _ = tree_usage([server.proc.pid])
        others1 = other_ticks(fwd.roots() + [server.proc.pid])
        busy_s = (cpu_busy(fcpus) - busy0) / CLK_TCK
        rec.update(res)
        rec["workload"], rec["sfload_workload"] = wid, res.get("workload")
        rec["fwd_cpu_s"] = round(cpu1 - cpu0, 3)
        rec["server_cpu_s"] = round(srv1 - srv0, 3)
        # Generator = sfload client (its own report) + server (from /proc).
        secs = res.get("seconds") or wall
        rec["gen_cpu_util"] = round((res.get("gen_cpu_s", 0) + srv1 - srv0) / secs, 3)
        rec["fwd_cpu_util"] = round((cpu1 - cpu0) / secs, 3)
        # CPU that processes other than ours used meanwhile: other work.
        rec["other_cpu_util"] = round(other_delta(others0, others1) / wall, 3)
        rec["cell_seconds"] = round(wall, 2)
        if wid.startswith("stream") and res.get("bytes") and not isinstance(fwd, Direct):
            rec["fwd_cpu_s_per_gb"] = round((cpu1 - cpu0) / (res["bytes"] / 1e9), 4)
            if fcpus:
                rec["fwd_cpu_busy_s"] = round(busy_s, 3)
                rec["fwd_cpu_busy_s_per_gb"] = round(busy_s / (res["bytes"] / 1e9), 4)
        if wid == "crr" and res.get("done") and not isinstance(fwd, Direct):
            rec["fwd_cpu_us_per_conn"] = round((cpu1 - cpu0) / res["done"] * 1e6, 2)
        if wid == "idle" and held and not isinstance(fwd, Direct):
            rec["rss0_kib"] = rss0
            rec["rss_held_kib"] = held["rss_kib"]
            if held["held"]:
                rec["rss_per_conn_b"] = round((held["rss_kib"] - rss0) * 1024 / held["held"])
        if wid.startswith("stream"):
            time.sleep(0.2)  # let the forwarder close both sides: stats count closed ones
    except (RuntimeError, OSError, ValueError) as e:
        rec["error"] = str(e)
        log(f"{fwd.name} {wid}: {e}")
    finally:
        stats = fwd.stop()
        server.stop()
    if stats:
        rec["fwd_stats"] = stats
        moved = stats.get("c2u", 0) + stats.get("u2c", 0)
        if moved and "spliced_c2u" in stats:
            rec["spliced_share"] = round((stats["spliced_c2u"] + stats["spliced_u2c"]) / moved, 4)
    return rec


# ---------------------------------------------------------------- summary

# (metric id, workload, record key or function, unit, better)
METRICS = [
    ("stream_c2s_gbps", "stream_c2s", "gbps", "Gbit/s", "high"),
    ("stream_s2c_gbps", "stream_s2c", "gbps", "Gbit/s", "high"),
    ("stream4_c2s_gbps", "stream4_c2s", "gbps", "Gbit/s", "high"),
    ("cpu_s_per_gb", "stream_", "fwd_cpu_s_per_gb", "CPU-s/GB", "low"),
    ("cpu_busy_s_per_gb", "stream_", "fwd_cpu_busy_s_per_gb", "CPU-s/GB", "low"),
    ("spliced_share", "stream_", "spliced_share", "", "high"),
    ("crr_cps", "crr", "rate", "conn/s", "high"),
    ("crr_p50_us", "crr", ("lat_us", "p50"), "us", "low"),
    ("crr_p99_us", "crr", ("lat_us", "p99"), "us", "low"),
    ("crr_fwd_cpu_us_per_conn", "crr", "fwd_cpu_us_per_conn", "us", "low"),
    ("rr_p50_us", "rr", ("lat_us", "p50"), "us", "low"),
    ("rr_p90_us", "rr", ("lat_us", "p90"), "us", "low"),
    ("rr_p99_us", "rr", ("lat_us", "p99"), "us", "low"),
    ("rr_p999_us", "rr", ("lat_us", "p999"), "us", "low"),
    ("rr_rate", "rr", "rate", "1/s", "high"),
    ("idle_held", "idle", "held", "conns", "high"),
    ("idle_checked_ok", "idle", "checked_ok", "conns", "high"),
    ("idle_rss_per_conn_b", "idle", "rss_per_conn_b", "B", "low"),
]

GEN_METRICS = [("gen_cpu_util", "gen_cpu_util"), ("fwd_cpu_util", "fwd_cpu_util"),
               ("other_cpu_util", "other_cpu_util")]


def pick(rec, key):
    """Return rec[key] (or a nested key tuple), None when absent."""
    if isinstance(key, tuple):
        v = rec
        for k in key:
            v = v.get(k) if isinstance(v, dict) else None
        return v
    return rec.get(key)


def matches(rec, wl):
    """True if rec is a run of workload wl (a prefix ending in '_' matches 1-stream runs)."""
    if wl.endswith("_"):
        return rec["workload"] in ("stream_c2s", "stream_s2c")
    return rec["workload"] == wl


def summarize(records, names):
    """Return {forwarder: {metric: {median, min, max, n}}} over error-free runs."""
    out = {}
    for name in names:
        mine = [r for r in records if r["forwarder"] == name and "error" not in r]
        out[name] = {}
        for mid, wl, key, _, _ in METRICS:
            vals = [pick(r, key) for r in mine if matches(r, wl)]
            vals = [v for v in vals if v is not None]
            if vals:
                out[name][mid] = {"median": statistics.median(vals), "min": min(vals),
                                  "max": max(vals), "n": len(vals)}
        out[name]["errors"] = sum(1 for r in records if r["forwarder"] == name and "error" in r)
    return out


def med(summary, name, metric):
    """Median of a metric, or None."""
    m = summary.get(name, {}).get(metric)
    return m["median"] if m else None


def fmt(v, digits=1):
    """Format a number for the table ('-' for None)."""
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else f"{v:,}"


def cell(summary, name, metric, digits=1, scale=1.0):
    """'median [min-max]' of a metric, scaled."""
    m = summary.get(name, {}).get(metric)
    if not m:
        return "-"
    s = lambda v: fmt(v * scale if isinstance(v, (int, float)) else v, digits)
    if m["n"] == 1 or m["min"] == m["max"]:
        return s(m["median"])
    return f"{s(m['median'])} [{s(m['min'])}–{s(m['max'])}]"


def ratio(a, b):
    """a/b formatted as '1.23x', '-' when either is missing."""
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x"


def added(summary, name, metric):
    """Latency a forwarder adds over direct (us), or None."""
    a, d = med(summary, name, metric), med(summary, "direct", metric)
    return None if a is None or d is None else a - d


def targets(summary):
    """Evaluate the issue's targets on the default engine (splice); list of rows."""
    s = "sockfwd-splice"
    rows = []

    def row(what, measured, ok):
        rows.append((what, measured, "-" if ok is None else ("met" if ok else "MISSED")))

    for d in ("c2s", "s2c"):
        m = f"stream_{d}_gbps"
        sp, di, nv, hs = (med(summary, n, m) for n in (s, "direct", "sockfwd-naive",
                                                          "haproxy-splice"))
        row(f"splice 1 stream {d} >= 90% of direct",
            ratio(sp, di), None if sp is None or not di else sp >= 0.9 * di)
        row(f"splice 1 stream {d} >= 1.5x naive",
            ratio(sp, nv), None if sp is None or not nv else sp >= 1.5 * nv)
        row(f"splice 1 stream {d} ahead of haproxy-splice",
            f"{fmt(sp)} vs {fmt(hs)} Gbit/s", None if sp is None or hs is None else sp > hs)
    sp, nv, hs = (med(summary, n, "cpu_s_per_gb") for n in (s, "sockfwd-naive", "haproxy-splice"))
    row("splice CPU-s/GB <= half of naive", ratio(sp, nv),
        None if sp is None or not nv else sp <= 0.5 * nv)
    bsp, bnv = (med(summary, n, "cpu_busy_s_per_gb") for n in (s, "sockfwd-naive"))
    if bsp is not None:
        row("(same, counting softirq: CPU busy-s/GB) <= half of naive", ratio(bsp, bnv),
            None if not bnv else bsp <= 0.5 * bnv)
    row("splice CPU-s/GB below haproxy-splice", f"{fmt(sp, 3)} vs {fmt(hs, 3)}",
        None if sp is None or hs is None else sp < hs)
    sp = med(summary, s, "crr_cps")
    for peer in ("haproxy", "haproxy-splice", "nginx"):
        p = med(summary, peer, "crr_cps")
        row(f"splice crr ahead of {peer}", f"{fmt(sp)} vs {fmt(p)} conn/s",
            None if sp is None or p is None else sp > p)
    for q in ("p50", "p99"):
        a, n = added(summary, s, f"rr_{q}_us"), added(summary, "nginx", f"rr_{q}_us")
        row(f"splice rr {q} added <= half of nginx's", f"{fmt(a)} vs {fmt(n)} us",
            None if a is None or n is None else a <= 0.5 * n)
    held, ok = med(summary, s, "idle_held"), med(summary, s, "idle_checked_ok")
    rss = med(summary, s, "idle_rss_per_conn_b")
    cap = (nofile() - 400) // 2
    if cap < 10000:
        # Two descriptors per proxied connection: 10,000 cannot fit here.
        row(f"splice idle: 10,000 held and working (fd limit {nofile()}: {cap} at most here)",
            f"{fmt(held)} held, {fmt(ok)} ok",
            None if held is None else (False if ok is None or ok < held else None))
    else:
        row("splice idle: 10,000 held and working", f"{fmt(held)} held, {fmt(ok)} ok",
            None if held is None else held >= 10000 and ok is not None and ok >= 10000)
    row("splice idle: < 2 KiB RSS per connection", f"{fmt(rss)} B",
        None if rss is None else rss < 2048)
    return rows


def table_md(summary, names, meta, records):
    """Return the Markdown report: results, ratios, targets, generator check."""
    p = meta["parameters"]
    lines = [f"## sockfwd bench ({meta['profile']}, {p['rounds']} interleaved rounds, "
             f"median [min–max])", "",
             f"{meta['date']}, commit {meta['commit']}, {meta['machine']['cpu_model']} x "
             f"{meta['machine']['cpus']}, Linux {meta['machine']['kernel']}; "
             f"{THREADS} thread/worker per forwarder.", ""]
    multi = any("stream4_c2s_gbps" in summary[n] for n in names)
    head = ["forwarder", "stream c2s Gbit/s", "stream s2c Gbit/s"]
    if multi:
        head.append("4 streams c2s Gbit/s")
    head += ["fwd CPU-s/GB", "fwd CPU busy-s/GB", "spliced", "crr conn/s", "crr p99 us", "rr p50 us", "rr p99 us",
             "rr p99.9 us", "idle held", "idle RSS B/conn"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        row = [n, cell(summary, n, "stream_c2s_gbps", 2), cell(summary, n, "stream_s2c_gbps", 2)]
        if multi:
            row.append(cell(summary, n, "stream4_c2s_gbps", 2))
        share = med(summary, n, "spliced_share")
        row += [cell(summary, n, "cpu_s_per_gb", 3), cell(summary, n, "cpu_busy_s_per_gb", 3),
                "-" if share is None else f"{share * 100:.1f}%",
                cell(summary, n, "crr_cps", 0), cell(summary, n, "crr_p99_us", 0),
                cell(summary, n, "rr_p50_us", 1), cell(summary, n, "rr_p99_us", 1),
                cell(summary, n, "rr_p999_us", 0), fmt(med(summary, n, "idle_held")),
                cell(summary, n, "idle_rss_per_conn_b", 0)]
        if summary[n].get("errors"):
            row[0] += f" ({summary[n]['errors']} failed runs)"
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "### Ratios (medians) against sockfwd-naive and direct; latency added over direct", "",
              "| forwarder | c2s ×naive | c2s ×direct | s2c ×naive | s2c ×direct | CPU/GB ×naive "
              "| crr ×naive | crr ×direct | rr p50 added us | rr p99 added us |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    nv, di = "sockfwd-naive", "direct"
    for n in names:
        g = lambda name, m: med(summary, name, m)
        lines.append("| " + " | ".join([
            n, ratio(g(n, "stream_c2s_gbps"), g(nv, "stream_c2s_gbps")),
            ratio(g(n, "stream_c2s_gbps"), g(di, "stream_c2s_gbps")),
            ratio(g(n, "stream_s2c_gbps"), g(nv, "stream_s2c_gbps")),
            ratio(g(n, "stream_s2c_gbps"), g(di, "stream_s2c_gbps")),
            ratio(g(n, "cpu_s_per_gb"), g(nv, "cpu_s_per_gb")),
            ratio(g(n, "crr_cps"), g(nv, "crr_cps")), ratio(g(n, "crr_cps"), g(di, "crr_cps")),
            fmt(added(summary, n, "rr_p50_us")), fmt(added(summary, n, "rr_p99_us"))]) + " |")
    lines += ["", "### Targets (sockfwd-splice, the default engine)", "",
              "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(summary)]
    # Was the generator the bottleneck?  Highest use of its CPU per workload.
    lines += ["", "### Load check: highest CPU use per workload (1.0 = one CPU)", "",
              "| workload | generator (client+server) | forwarder | other work on the machine |",
              "|---|---|---|---|"]
    for wl in sorted({r["workload"] for r in records}):
        rs = [r for r in records if r["workload"] == wl and "error" not in r]
        fw = [r for r in rs if r["forwarder"] != "direct"]
        top = lambda rr, k: max((r.get(k, 0) for r in rr), default=0)
        lines.append(f"| {wl} | {top(fw, 'gen_cpu_util'):.2f} (direct {top([r for r in rs if r['forwarder'] == 'direct'], 'gen_cpu_util'):.2f}) "
                     f"| {top(fw, 'fwd_cpu_util'):.2f} | {top(rs, 'other_cpu_util'):.2f} |")
    lines += ["", "fwd CPU-s/GB: the forwarder's utime+stime per GB. fwd CPU busy-s/GB: all busy "
              "time of the forwarder's CPU (CPU 0) per GB, including softirq work run there by "
              "ksoftirqd or in interrupt context."]
    noisy = max((r.get("other_cpu_util", 0) for r in records), default=0)
    if noisy > 0.2:
        lines += ["", f"**Warning:** other processes used up to {noisy:.2f} CPU during some runs "
                  "(see other_cpu_util in results.csv): those runs are disturbed."]
    lines += ["", "Placement: stream and crr: forwarder on CPU 0, sfload client and server on "
              "CPU 1 (direct: client and server on CPU 1 too); rr: all on CPU 0; idle: unpinned. "
              f"Idle connections held: {p['idle_n']} at most, capped by the descriptor limit "
              f"({nofile()}, 2 per proxied connection); naive {IDLE_CAP['sockfwd-naive']} "
              f"(2 threads per connection), socat {IDLE_CAP['socat']} (a process per connection)."]
    return "\n".join(lines) + "\n"


def write_csv(path, records, meta):
    """One row per run, with the machine and commit on every row."""
    keys = ["forwarder", "kind", "workload", "round", "gbps", "bytes", "seconds", "rate",
            "done", "errors", "held", "checked_ok", "fwd_cpu_s", "fwd_cpu_s_per_gb",
            "fwd_cpu_us_per_conn", "fwd_cpu_busy_s_per_gb", "spliced_share", "rss_per_conn_b", "gen_cpu_util",
            "fwd_cpu_util", "other_cpu_util", "p50_us", "p90_us", "p99_us", "p999_us", "error"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["commit", "kernel", "cpu_model", "cpus", "date"])
        for r in records:
            lat = r.get("lat_us", {})
            row = [lat.get(k[:-3]) if k.endswith("_us") and k.startswith("p") else r.get(k)
                   for k in keys]
            m = meta["machine"]
            w.writerow(row + [meta["commit"], m["kernel"], m["cpu_model"], m["cpus"],
                              meta["date"]])


def write_summary_csv(path, summary):
    """One row per forwarder and metric: median, min, max, runs."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["forwarder", "metric", "median", "min", "max", "runs"])
        for name, ms in summary.items():
            for mid, m in ms.items():
                if isinstance(m, dict):
                    w.writerow([name, mid, m["median"], m["min"], m["max"], m["n"]])


def chart(outdir, summary, names, meta):
    """Draw chart.png with gnuplot: one panel per metric, bars with min-max. False if impossible."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no chart")
        return False
    panels = [("stream_c2s_gbps", "1 stream c2s (Gbit/s)"), ("stream_s2c_gbps", "1 stream s2c (Gbit/s)"),
              ("cpu_s_per_gb", "forwarder CPU-s per GB"), ("crr_cps", "crr connections/s"),
              ("rr_p50_us", "rr p50 pinned (us)"), ("rr_p99_us", "rr p99 pinned (us)"),
              ("idle_rss_per_conn_b", "idle RSS per connection (B)")]
    plots = []
    for mid, title in panels:
        if not any(summary[n].get(mid) for n in names):
            continue
        dat = os.path.join(outdir, f"chart_{mid}.dat")
        with open(dat, "w") as f:
            for n in names:
                m = summary[n].get(mid)
                if m:
                    f.write(f'"{n}" {m["median"]} {m["min"]} {m["max"]}\n')
                else:
                    f.write(f'"{n}" NaN NaN NaN\n')
        plots.append((dat, title))
    if not plots:
        return False
    cols = 2
    rows = (len(plots) + cols - 1) // cols
    gp = [f'set terminal pngcairo size 1400,{380 * rows} font "sans,9"',
          f'set output "{os.path.join(outdir, "chart.png")}"',
          f'set multiplot layout {rows},{cols} title "sockfwd bench {meta["profile"]} — '
          f'{meta["commit"]} — {meta["machine"]["cpu_model"]} x{meta["machine"]["cpus"]} — '
          f'{meta["date"]} (bars: median, whiskers: min–max)"',
          "set style data histogram", "set style histogram errorbars gap 1 lw 1",
          "set style fill solid 0.6 border -1", "set boxwidth 0.8", "set yrange [0:*]",
          "set xtics rotate by -30 nomirror", "set grid ytics", "unset key"]
    for dat, title in plots:
        # RSS spans 300 B (sockfwd) to megabytes (socat): log scale there.
        gp.append("set logscale y\nset yrange [*:*]" if "RSS" in title
                  else "unset logscale y\nset yrange [0:*]")
        gp += [f'set title "{title}"', f'plot "{dat}" using 2:3:4:xtic(1) lc rgb "#4472c4"']
    gp.append("unset multiplot")
    script = os.path.join(outdir, "chart.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    out = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if out.returncode != 0:
        log(f"gnuplot failed: {out.stderr.strip()[:300]}")
        return False
    return True


# ---------------------------------------------------------------- main


def machine():
    """Describe this machine: kernel, CPU model, CPUs, memory, peer versions."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    sysctl = {}
    for k in ("net/ipv4/tcp_tw_reuse", "net/ipv4/ip_local_port_range", "kernel/pid_max"):
        try:
            with open(f"/proc/sys/{k}") as f:
                sysctl[k.replace("/", ".")] = f.read().strip()
        except OSError:
            pass
    return {"kernel": platform.release(), "cpu_model": model, "cpus": os.cpu_count(),
            "cpus_allowed": len(cpus_allowed()), "mem_gib": round(mem_kib / 2**20, 1),
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3], "sysctl": sysctl}


def commit():
    """git short commit of the tree, with -dirty if tracked files changed."""
    head = run_cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = run_cmd(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return head + ("-dirty" if dirty else "")


def versions(args):
    """Versions of sockfwd and the peers."""
    first = lambda s: s.splitlines()[0] if s else ""
    return {"sockfwd": first(run_cmd([args.sockfwd, "-V"])),
            "haproxy": first(run_cmd(["haproxy", "-v"])),
            "nginx": first(run_cmd(["nginx", "-v"])),
            "socat": " ".join(run_cmd(["socat", "-V"]).splitlines()[1:2])}


def ensure_peers(args):
    """Install the bench packages through tools/install-deps.sh when peers are missing."""
    if args.no_install or len(peers_installed()) == 4:
        return
    script = os.path.join(ROOT, "tools", "install-deps.sh")
    log("peers missing: running tools/install-deps.sh bench")
    if subprocess.run([script, "bench"]).returncode != 0:
        log("install-deps failed: measuring the peers that are installed")


def raise_nofile():
    """Let us and our children hold the idle workload's descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args():
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="profile", const="quick",
                   help="the quick suite, under 5 minutes (default)")
    g.add_argument("--full", action="store_const", dest="profile", const="full",
                   help="the full suite: more rounds, longer runs, 4-stream workload")
    ap.add_argument("--sockfwd", default=os.path.join(ROOT, "build", "sockfwd"))
    ap.add_argument("--sfload", default=os.path.join(ROOT, "build", "sfload"))
    ap.add_argument("--rounds", type=int, help="override the profile's rounds")
    ap.add_argument("--only", help="comma-separated forwarders to run besides direct")
    ap.add_argument("--workloads", help="comma-separated workload ids (stream_c2s,crr,...)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--no-install", action="store_true", help="never call install-deps.sh")
    ap.add_argument("--lock-timeout", type=float, default=3600)
    args = ap.parse_args()
    args.profile = args.profile or "quick"
    for b in (args.sockfwd, args.sfload):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} is not built (make {os.path.relpath(b, ROOT)})")
    args.sockfwd, args.sfload = os.path.abspath(args.sockfwd), os.path.abspath(args.sfload)
    return args


def main():
    """Run the suite and write the results."""
    args = parse_args()
    prof = dict(PROFILES[args.profile])
    if args.rounds:
        prof["rounds"] = args.rounds
    lock = take_lock(args.lock_timeout)
    started = time.monotonic()
    ensure_peers(args)
    raise_nofile()
    if len(cpus_allowed()) < 2:
        log("only one CPU allowed: forwarder and generator will share it")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(args.out, stamp)
    os.makedirs(outdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="sockfwd-bench-")
    fwds = make_forwarders(args, workdir)
    wls = workloads(prof)
    if args.workloads:
        keep = set(args.workloads.split(","))
        wls = [w for w in wls if w[0] in keep]
    names = [f.name for f in fwds]
    meta = {"profile": args.profile, "date": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"), "commit": commit(), "machine": machine(),
            "versions": versions(args), "forwarders": names,
            "parameters": dict(prof, threads=THREADS, crr_clients=CRR_CLIENTS, crr_size=CRR_SIZE,
                               crr_max=CRR_MAX, rr_size=RR_SIZE, src_addrs=SRC_ADDRS,
                               idle_cap=IDLE_CAP, placement=PLACEMENT,
                               workloads=[w[0] for w in wls])}
    log(f"{args.profile}: {len(fwds)} forwarders ({', '.join(names)}), "
        f"{len(wls)} workloads, {prof['rounds']} rounds -> {outdir}")
    ports = Ports()
    records = []
    try:
        for rnd in range(prof["rounds"]):
            for wl in wls:
                # Rotate the order each round so no forwarder always runs first.
                order = fwds[rnd % len(fwds):] + fwds[:rnd % len(fwds)]
                for fwd in order:
                    rec = run_cell(args, fwd, wl, ports, prof)
                    rec["round"] = rnd + 1
                    records.append(rec)
            log(f"round {rnd + 1}/{prof['rounds']} done ({time.monotonic() - started:.0f} s)")
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["wall_seconds"] = round(time.monotonic() - started, 1)
    summary = summarize(records, names)
    report = table_md(summary, names, meta, records)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "targets": targets(summary),
                   "runs": records}, f, indent=1)
    write_csv(os.path.join(outdir, "results.csv"), records, meta)
    write_summary_csv(os.path.join(outdir, "summary.csv"), summary)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(report)
    chart(outdir, summary, names, meta)
    print(report)
    print(f"results: {os.path.relpath(outdir)} (wall {meta['wall_seconds']} s)")
    lock.close()
    failed = sum(1 for r in records if "error" in r)
    return 1 if failed and failed == len(records) else 0


if __name__ == "__main__":
    sys.exit(main())
