"""One run of one workload against one forwarder: the sfload client and what /proc says."""

import json
import select
import subprocess
import time

from .forwarders import Direct, Server
from .params import CURVE_BG_SLACK_S, CURVE_BG_WARMUP_S, placement
from .procs import (CLK_TCK, PeakRss, cpu_busy, log, nofile, other_delta, other_ticks, pin,
                    pinned_cpus, stop_process, tree_usage)
from .workloads import HOLDING, count_arg, curve_idle_target


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


class BackgroundClient:
    """An sfload client run through the same forwarder next to the measured one.

    Started with -W, it reports an event (idle: "held", its connections
    open; stream: "running", its streams connected) and waits for a line on
    stdin: go() sends it (idle: check the connections and end; stream:
    start moving data), finish() collects the final JSON object.
    """

    def __init__(self, argv, cpus, timeout_s):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=pin(cpus),
                                     start_new_session=True)
        self.sent = False
        self.event = self.read(timeout_s)
        if not self.event or "event" not in self.event:
            self.stop()
            raise RuntimeError(f"background {argv[1]} did not start: {self.err or 'no event'}")

    def read(self, timeout_s):
        """Return the client's next JSON line, or None at its end or after timeout_s."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line.strip() else None

    def go(self):
        """Let the client proceed past its event (once)."""
        if not self.sent and self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        self.sent = True

    def finish(self, timeout_s):
        """Return the client's final JSON object (None if it gave none) and stop it."""
        self.go()
        res = self.read(timeout_s)
        self.stop()
        return res

    def stop(self):
        """Stop the client and keep what it wrote on stderr in self.err."""
        stop_process(self.proc, timeout_s=5)
        self.err = self.proc.stderr.read().strip()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def start_background(args, wl, fwd, target, cpus, rec):
    """Start wl's background client through target; return it (None without one).

    An idle background holds what fits (workloads.curve_idle_target); the
    count held goes into rec as bg_held.  A stream background is started
    and given CURVE_BG_WARMUP_S to reach speed.
    """
    if wl.bg is None:
        return None
    argv = [args.sfload] + wl.bg.argv + ["-c", f"127.0.0.1:{target}"]
    if wl.bg.kind == "idle":
        n = curve_idle_target(wl, fwd, nofile())
        bg = BackgroundClient(argv + ["-n", str(n)], cpus, timeout_s=150)
        rec["bg_wanted"], rec["bg_held"] = wl.bg.x, bg.event.get("held")
        time.sleep(0.2)  # let the forwarder settle its last accepts
        return bg
    bg = BackgroundClient(argv, cpus, timeout_s=60)
    rec["bg_streams"] = bg.event.get("streams")
    bg.go()
    time.sleep(CURVE_BG_WARMUP_S)
    return bg


def finish_background(bg, wl, rec):
    """Collect the background client's result into rec (bg_*)."""
    if bg is None:
        return
    res = bg.finish(timeout_s=CURVE_BG_SLACK_S + 30 if wl.bg.kind == "stream" else 60)
    if res is None:
        rec["bg_error"] = bg.err or "no result"
        return
    if wl.bg.kind == "idle":
        rec["bg_checked_ok"] = res.get("checked_ok")
    else:
        rec["bg_gbps"], rec["bg_failed"] = res.get("gbps"), res.get("failed")


def curve_fields(rec, wl, res, rss0, peak, fwd):
    """Add a curve point's own fields to rec: the point, RSS, fairness."""
    rec.update(curve=wl.curve, x=wl.x, threads=wl.threads)
    if isinstance(fwd, Direct):
        return
    rec["rss0_kib"], rec["fwd_rss_peak_kib"] = rss0, peak
    conns = res.get("streams") or rec.get("bg_held")
    if conns and peak:
        rec["fwd_rss_per_conn_kib"] = round((peak - rss0) / conns, 2)
    if res.get("fair"):
        rec["jain"], rec["min_mean"] = res["fair"]["jain"], res["fair"]["min_mean"]


def run_cell(args, fwd, wl, ports, prof):
    """Run one workload (workloads.Workload) against one forwarder once; return the record."""
    wid, tail = wl.id, wl.argv
    where = placement(wl.place, wl.threads)
    upstream, listen = ports.take(), ports.take()
    server = Server(args.sfload, upstream, where["gen"], wl.proto)
    rec = {"forwarder": fwd.name, "kind": fwd.kind, "workload": wid}
    if wl.proto != "tcp":
        rec["proto"] = wl.proto
    if getattr(fwd, "label", None):
        rec["build"] = fwd.label
    bg = None
    try:
        fwd.start(listen, upstream, where["fwd"], wl.proto, threads=wl.threads)
        target = upstream if isinstance(fwd, Direct) else listen
        argv = [args.sfload] + tail + ["-c", f"127.0.0.1:{target}"]
        argv += count_arg(wl, prof, fwd.name)
        rss_start = tree_usage(fwd.roots())[1]
        bg = start_background(args, wl, fwd, target, where["gen"], rec)
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
        with PeakRss(fwd.roots() if wl.curve else []) as peak:
            res = run_client(argv, where["gen"], timeout_s=180, on_held=on_held)
        wall = time.monotonic() - t0
        # Read before the background ends: closing its connections (10,000
        # idle ones) is the forwarder's work too, but not this workload's.
        cpu1, _ = tree_usage(fwd.roots())
        srv1, _ = tree_usage([server.proc.pid])
        others1 = other_ticks(fwd.roots() + [server.proc.pid])
        busy_s = (cpu_busy(fcpus) - busy0) / CLK_TCK
        finish_background(bg, wl, rec)
        bg = None
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
        if wl.curve:
            curve_fields(rec, wl, res, rss_start, max(peak.peak_kib, rss0), fwd)
        if res.get("workload") == "crr" and res.get("done") and not isinstance(fwd, Direct):
            rec["fwd_cpu_us_per_conn"] = round((cpu1 - cpu0) / res["done"] * 1e6, 2)
        if wid in HOLDING and held and not isinstance(fwd, Direct):
            rec["rss0_kib"] = rss0
            rec["rss_held_kib"] = held["rss_kib"]
            if held["held"]:
                per = "rss_per_conn_b" if wid == "idle" else "rss_per_session_b"
                rec[per] = round((held["rss_kib"] - rss0) * 1024 / held["held"])
        if wid.startswith("udp_") and res.get("received") and not isinstance(fwd, Direct):
            # Per datagram the forwarder delivered to the server (c2s: what it forwarded).
            rec["fwd_cpu_ns_per_pkt"] = round((cpu1 - cpu0) / res["received"] * 1e9, 1)
            if fcpus:
                rec["fwd_cpu_busy_ns_per_pkt"] = round(busy_s / res["received"] * 1e9, 1)
        if wid.startswith("stream"):
            time.sleep(0.2)  # let the forwarder close both sides: stats count closed ones
    except (RuntimeError, OSError, ValueError) as e:
        rec["error"] = str(e)
        log(f"{fwd.name} {wid}: {e}")
    finally:
        if bg is not None:
            bg.stop()
        stats = fwd.stop()
        server.stop()
    if stats:
        rec["fwd_stats"] = stats
        moved = stats.get("c2u", 0) + stats.get("u2c", 0)
        if moved and "spliced_c2u" in stats:
            rec["spliced_share"] = round((stats["spliced_c2u"] + stats["spliced_u2c"]) / moved, 4)
    return rec
