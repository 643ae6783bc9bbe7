"""Process control and accounting: the bench lock, /proc, CPU pinning, ports.

Every process the bench starts runs in its own session, so it can be
stopped with its whole process group and nothing else.
"""

import fcntl
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from .params import LOCK_PATH

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


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


class PeakRss:
    """Sample the RSS of process trees every interval_s in a thread; keep the highest.

    Used as a context manager around a client's run: peak_kib is the
    largest sum of VmRSS over the trees seen meanwhile (0 before the first
    sample).
    """

    def __init__(self, roots, interval_s=0.25):
        self.roots, self.interval_s = roots, interval_s
        self.peak_kib = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        """Sample until stopped."""
        while True:
            self.peak_kib = max(self.peak_kib, tree_usage(self.roots)[1])
            if self.done.wait(self.interval_s):
                return

    def __enter__(self):
        if self.roots:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        return False


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
    """Hand out fresh loopback ports below the ephemeral range, free for TCP and UDP."""

    def __init__(self, first=20000, last=32000):
        self.first, self.last = first, last
        self.next = first + (os.getpid() * 7) % (last - first)

    def take(self):
        """Return a port that can be bound on 127.0.0.1 right now."""
        for _ in range(self.last - self.first):
            port = self.next
            self.next = self.first if self.next >= self.last else self.next + 1
            with socket.socket() as s, socket.socket(type=socket.SOCK_DGRAM) as u:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                    u.bind(("127.0.0.1", port))
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


# sfload's UDP header (tools/sfload/udp.h): magic, kind, sequence number.
UDP_MAGIC = 0x53464C55


def udp_echo_check(port, timeout_s=5.0):
    """Send a datagram through 127.0.0.1:port to udp-serve; True once it echoes back.

    One socket, so one session in the forwarder; retried every 200 ms while
    the forwarder is not there yet (refused) or the datagram is lost.
    """
    msg = struct.pack("=IIQ", UDP_MAGIC, ord("E"), 1) + b"sockfwd-bench-check"
    deadline = time.monotonic() + timeout_s
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                s.send(msg)
                if s.recv(2048) == msg:
                    return True
            except ConnectionRefusedError:
                time.sleep(0.2)
            except OSError:
                pass
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
