#!/usr/bin/env python3
"""The sockfwd bench suite: every engine and the usual alternatives, same load, one run.

    python3 bench/run.py --quick|--full|--smoke --sockfwd build/sockfwd --sfload build/sfload

For each workload (tools/sfload/: stream, crr, rr, idle over TCP;
udp_stream, udp_paced, udp_rr, udp_sessions over UDP) it runs direct (no
forwarder), every sockfwd engine that `sockfwd -V` lists (over UDP: those
that `sockfwd -u` starts), and the peers found installed (HAProxy with
forced splice and without, TCP only; nginx stream and socat, both).
Runs are interleaved (round 1: A B C ..., round 2: A B C ...) and repeated;
every forwarder gets a fresh process and fresh ports for every run.  Results
go to bench/results/<timestamp>/ (results.json, results.csv, summary.csv,
table.md, chart.png; curves.csv and curve_*.png) and the table is printed
at the end.

Then the curves (bench/lib/curves.py): streams_c2s and streams_s2c (1 to
4,096 concurrent bulk streams), crr_idle (crr next to 0, 1,000 and 10,000
idle connections), rr_load (rr next to 0, 1 and 64 bulk streams) and crr1
(one sequential client), each also with 2 forwarder workers; the quick
suite runs a few points of each, the full suite all.  They add a curves
section to table.md, curves.csv and a chart per curve (curve_*.png).

With --baseline PATH a second sockfwd binary is measured in the same
rounds, every engine of it as sockfwd-ENGINE@LABEL next to sockfwd-ENGINE,
and table.md compares the two builds engine by engine.

This file is the command; the work is done by bench/lib/ (params, procs,
workloads, forwarders, measure, summary, targets, report, curves,
report_curves, meta).  Python 3 standard library only.  The whole
run holds an exclusive flock on /tmp/sockfwd-bench.lock, so two
benchmarks never share the machine.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from lib.curves import CURVES, curve_targets, summarize_curves
from lib.forwarders import engine_plan, make_forwarders, peers_installed
from lib.measure import run_cell
from lib.meta import baseline_meta, commit, machine, versions
from lib.params import (CRR_CLIENTS, CRR_MAX, CRR_SIZE, IDLE_CAP, PLACEMENT, PROFILES, ROOT,
                        RR_SIZE, SRC_ADDRS, THREADS, UDP_BATCH, UDP_PACED_PPS, UDP_PACED_SIZE,
                        UDP_RR_SIZE, UDP_SESSIONS_CAP, UDP_SIZES, UDP_SRC_ADDRS, UDP_WINDOW,
                        placement)
from lib.procs import Ports, cpus_allowed, log, nofile, take_lock
from lib.report import (baseline_rows, chart, summarize, table_md, targets, udp_targets,
                        write_csv, write_summary_csv)
from lib.report_curves import chart_curves, curves_md, write_curves_csv
from lib.workloads import curve_skip, curve_workloads, workloads


# ---------------------------------------------------------------- main


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


def gen_threads(threads):
    """sfload stream's threads (-T) at forwarder threads: one per generator CPU."""
    gen = placement("curve", threads)["gen"]
    return len(gen) if gen is not None else len(cpus_allowed())


def parse_args():
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="profile", const="quick",
                   help="the quick suite, under 5 minutes (default)")
    g.add_argument("--full", action="store_const", dest="profile", const="full",
                   help="the full suite: more rounds, longer runs, 4-stream workload, "
                   "every point of every curve")
    g.add_argument("--smoke", action="store_const", dest="profile", const="smoke",
                   help="not a measurement: one round of the shortest runs at the smallest "
                   "points, to check the harness end to end")
    ap.add_argument("--sockfwd", default=os.path.join(ROOT, "build", "sockfwd"))
    ap.add_argument("--sfload", default=os.path.join(ROOT, "build", "sfload"))
    ap.add_argument("--baseline", metavar="PATH",
                    help="a second sockfwd binary to measure in the same rounds "
                    "(entries sockfwd-ENGINE@LABEL)")
    ap.add_argument("--baseline-label", metavar="LABEL",
                    help="the baseline's label in names and tables (default: baseline)")
    ap.add_argument("--engines", help="comma-separated sockfwd engines to measure "
                    "(both binaries; default: every engine `-V` lists)")
    ap.add_argument("--rounds", type=int, help="override the profile's rounds")
    ap.add_argument("--only", help="comma-separated forwarders to run besides direct")
    ap.add_argument("--workloads", help="comma-separated workload ids (stream_c2s,crr,udp_rr,...); "
                    "'none': the curves only")
    ap.add_argument("--curves", help="comma-separated curves to run (" + ",".join(CURVES)
                    + "); 'none': no curve (default: every curve of the profile)")
    ap.add_argument("--threads", default="1,2",
                    help="forwarder worker counts the curves run with (default 1,2)")
    ap.add_argument("--protocols", default="tcp,udp",
                    help="comma-separated: tcp, udp (default both)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--no-install", action="store_true", help="never call install-deps.sh")
    ap.add_argument("--lock-timeout", type=float, default=3600)
    args = ap.parse_args()
    args.profile = args.profile or "quick"
    args.protocols = [p for p in args.protocols.split(",") if p]
    if args.curves is not None:
        args.curves = [c for c in args.curves.split(",") if c and c != "none"]
        unknown = [c for c in args.curves if c not in CURVES]
        if unknown:
            ap.error(f"--curves: no curve {', '.join(unknown)} (curves: {', '.join(CURVES)})")
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        args.threads = []
    if not args.threads or any(t not in (1, 2) for t in args.threads):
        ap.error("--threads: 1, 2 or 1,2")
    if not args.protocols or set(args.protocols) - {"tcp", "udp"}:
        ap.error("--protocols: tcp, udp or tcp,udp")
    for b in (args.sockfwd, args.sfload):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} is not built (make {os.path.relpath(b, ROOT)})")
    args.sockfwd, args.sfload = os.path.abspath(args.sockfwd), os.path.abspath(args.sfload)
    if args.baseline_label is not None and not args.baseline:
        ap.error("--baseline-label needs --baseline")
    if args.baseline:
        if not os.access(args.baseline, os.X_OK):
            sys.exit(f"bench: baseline {args.baseline} is not an executable file")
        args.baseline = os.path.abspath(args.baseline)
        args.baseline_label = args.baseline_label or "baseline"
        # The label ends up in forwarder names, CSV cells and gnuplot strings.
        if not re.fullmatch(r"[A-Za-z0-9._+-]+", args.baseline_label):
            ap.error(f"--baseline-label {args.baseline_label!r}: use letters, digits, . _ + -")
    args.plan = engine_plan(args)
    return args


def main():
    """Run the suite and write the results."""
    args = parse_args()
    prof = dict(PROFILES[args.profile])
    if args.rounds:
        prof["rounds"] = prof["udp_rounds"] = prof["curve_rounds"] = args.rounds
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
    wls = workloads(prof, args.protocols)
    if args.workloads:
        keep = set(args.workloads.split(","))
        wls = [w for w in wls if w.id in keep]
    classic = [w.id for w in wls]
    if "tcp" in args.protocols:
        wls += curve_workloads(prof, args.curves, args.threads, gen_threads)
    names = [f.name for f in fwds]
    udp_skipped = {f.name: f.no_udp for f in fwds if "udp" not in f.protocols}
    meta = {"profile": args.profile, "date": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"), "commit": commit(), "machine": machine(),
            "versions": versions(args), "forwarders": names,
            "parameters": dict(prof, threads=THREADS, crr_clients=CRR_CLIENTS, crr_size=CRR_SIZE,
                               crr_max=CRR_MAX, rr_size=RR_SIZE, src_addrs=SRC_ADDRS,
                               idle_cap=IDLE_CAP, placement=PLACEMENT,
                               udp_sizes=list(UDP_SIZES), udp_batch=UDP_BATCH,
                               udp_paced_pps=UDP_PACED_PPS, udp_paced_size=UDP_PACED_SIZE,
                               udp_rr_size=UDP_RR_SIZE, udp_src_addrs=UDP_SRC_ADDRS,
                               udp_window=UDP_WINDOW, udp_sessions_cap=UDP_SESSIONS_CAP,
                               workloads=classic,
                               curve_points=[w.id for w in wls if w.curve])}
    if any(w.proto == "udp" for w in wls):
        meta["udp_skipped"] = udp_skipped
    if args.baseline:
        meta["baseline"] = baseline_meta(args)
    rounds = max([prof["rounds"]] + [w.rounds or 0 for w in wls])
    log(f"{args.profile}: {len(fwds)} forwarders ({', '.join(names)}), "
        f"{len(wls)} workloads, {rounds} rounds -> {outdir}")
    ports = Ports()
    records = []
    skipped = {}
    try:
        for rnd in range(rounds):
            for wl in wls:
                if rnd >= (wl.rounds or prof["rounds"]):
                    continue  # this workload's rounds are done
                # Rotate the order each round so no forwarder always runs first.
                order = fwds[rnd % len(fwds):] + fwds[:rnd % len(fwds)]
                for fwd in order:
                    if wl.proto not in fwd.protocols:
                        continue
                    why = curve_skip(wl, fwd, nofile()) if wl.curve else None
                    if why:
                        # direct and socat never run -j 2: the table says so once.
                        if wl.threads == 1 or fwd.kind not in ("direct", "socat"):
                            skipped[f"{fwd.name} {wl.id}"] = why
                        continue
                    rec = run_cell(args, fwd, wl, ports, prof)
                    rec["round"] = rnd + 1
                    records.append(rec)
            log(f"round {rnd + 1}/{rounds} done ({time.monotonic() - started:.0f} s)")
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["wall_seconds"] = round(time.monotonic() - started, 1)
    summary = summarize(records, names)
    csum = summarize_curves(records, names)
    meta["curve_skipped"] = skipped
    report = table_md(summary, names, meta, records)
    report += "\n".join(curves_md(csum, skipped, args.profile)) + "\n"
    out = {"meta": meta, "summary": summary, "targets": targets(summary)}
    if csum:
        out["curves"], out["curve_targets"] = csum, curve_targets(csum)
    if any(w.proto == "udp" for w in wls):
        out["udp_targets"] = udp_targets(summary)
    if args.baseline:
        out["baseline_comparison"] = baseline_rows(summary, names, args.baseline_label)
    out["runs"] = records
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    write_csv(os.path.join(outdir, "results.csv"), records, meta)
    write_summary_csv(os.path.join(outdir, "summary.csv"), summary)
    if csum:
        write_curves_csv(os.path.join(outdir, "curves.csv"), csum)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(report)
    chart(outdir, summary, names, meta)
    chart_curves(outdir, csum, meta)
    print(report)
    print(f"results: {os.path.relpath(outdir)} (wall {meta['wall_seconds']} s)")
    lock.close()
    failed = sum(1 for r in records if "error" in r)
    return 1 if failed and failed == len(records) else 0


if __name__ == "__main__":
    sys.exit(main())
