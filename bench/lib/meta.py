"""What results.json says about the run: the machine, the commit, the versions, the baseline."""

import os
import platform

from .params import ROOT
from .procs import cpus_allowed, run_cmd


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


def baseline_meta(args):
    """Describe the baseline build for results.json: label, path, version, engines."""
    out = run_cmd([args.baseline, "-V"])
    return {"label": args.baseline_label, "path": args.baseline,
            "version": out.splitlines()[0] if out else "",
            "engines": [e for _, e, label in args.plan if label]}
