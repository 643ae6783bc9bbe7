"""The workloads: what sfload runs for each one, where, over which protocol, how often."""

from collections import namedtuple

from .params import (CURVE_BG_SLACK_S, CURVE_BG_WARMUP_S, CURVE_CAP, CRR_CLIENTS, CRR_MAX, CRR_SIZE, IDLE_CAP, RR_SIZE, SRC_ADDRS, UDP_BATCH,
                     UDP_PACED_PPS, UDP_PACED_SIZE, UDP_RR_SIZE, UDP_SESSIONS_CAP, UDP_SIZES,
                     UDP_SRC_ADDRS, UDP_WINDOW, base_name)
from .procs import nofile

# id: the workload's name in results; argv: sfload's arguments without -c;
# place: the PLACEMENT key; proto: "tcp" or "udp" (which server, which
# forwarders); rounds: how many of the profile's rounds run it (None: all).
# The curves' points (curves.py) add: threads (the forwarder's workers),
# curve and x (which curve, which point) and bg (a Background client run
# through the same forwarder next to the measured one, or None).
Workload = namedtuple("Workload", "id argv place proto rounds threads curve x bg",
                      defaults=("tcp", None, 1, None, None, None))

# A client run next to the measured one: kind "idle" (holds x connections,
# -n set per forwarder) or "stream" (x bulk streams); argv without -c.
Background = namedtuple("Background", "kind argv x")

# Workloads that hold connections or sessions and report them held.
HOLDING = ("idle", "udp_sessions")


def idle_target(prof, name):
    """Connections to hold in idle for forwarder name.

    Each proxied connection takes two descriptors in the forwarder, so the
    descriptor limit (which we cannot raise without CAP_SYS_RESOURCE) caps
    the count; naive and socat have their own caps (IDLE_CAP), which a
    baseline build's entry (sockfwd-naive@old) shares.
    """
    n = min(prof["idle_n"], (nofile() - 400) // 2)
    return min(n, IDLE_CAP.get(base_name(name), n))


def udp_sessions_target(prof, name):
    """Sessions to open in udp_sessions for forwarder name.

    A session takes one descriptor in the forwarder (its upstream socket)
    and one in the client; socat has its own cap (UDP_SESSIONS_CAP).
    """
    n = min(prof["udp_sessions_n"], nofile() - 400)
    return min(n, UDP_SESSIONS_CAP.get(base_name(name), n))


def count_arg(wl, prof, name):
    """The -n argument a holding workload gets for forwarder name ([] for others)."""
    if wl.id == "idle":
        return ["-n", str(idle_target(prof, name))]
    if wl.id == "udp_sessions":
        return ["-n", str(udp_sessions_target(prof, name))]
    return []


def tcp_workloads(prof):
    """The TCP workloads of a profile: stream, crr, rr, idle."""
    t = prof["stream_s"]
    wl = [
        Workload("stream_c2s", ["stream", "-n", "1", "-t", str(t), "-d", "c2s"], "stream"),
        Workload("stream_s2c", ["stream", "-n", "1", "-t", str(t), "-d", "s2c"], "stream"),
    ]
    if prof["multi_streams"]:
        n = str(prof["multi_streams"])
        wl.append(Workload(f"stream{n}_c2s", ["stream", "-n", n, "-t", str(t), "-d", "c2s"],
                           "stream"))
    wl += [
        Workload("crr", ["crr", "-n", str(CRR_CLIENTS), "-t", str(prof["crr_s"]), "-s",
                         str(CRR_SIZE), "-m", str(CRR_MAX), "-a", str(SRC_ADDRS)], "crr"),
        Workload("rr", ["rr", "-n", "1", "-t", str(prof["rr_s"]), "-s", str(RR_SIZE)], "rr"),
        Workload("idle", ["idle", "-H", str(prof["idle_hold_s"]), "-W", "-a", "64"], "idle"),
    ]
    return wl


def udp_workloads(prof):
    """The UDP workloads of a profile: udp_stream_SIZE, udp_paced, udp_rr, udp_sessions.

    udp_stream_SIZE sends SIZE-byte datagrams as fast as the client can;
    udp_paced sends at UDP_PACED_PPS, below every forwarder's saturation,
    where nothing should be lost.
    """
    t, rounds = str(prof["udp_stream_s"]), prof["udp_rounds"]
    wl = [Workload(f"udp_stream_{size}", ["udp-stream", "-t", t, "-s", str(size), "-d", "c2s",
                                          "-b", str(UDP_BATCH)], "udp_stream", "udp", rounds)
          for size in UDP_SIZES]
    wl += [
        Workload("udp_paced", ["udp-stream", "-t", t, "-s", str(UDP_PACED_SIZE), "-d", "c2s",
                               "-R", str(UDP_PACED_PPS)], "udp_stream", "udp", rounds),
        Workload("udp_rr", ["udp-rr", "-t", str(prof["udp_rr_s"]), "-s", str(UDP_RR_SIZE)],
                 "udp_rr", "udp", rounds),
        Workload("udp_sessions", ["udp-sessions", "-a", str(UDP_SRC_ADDRS), "-w",
                                  str(UDP_WINDOW), "-H", str(prof["udp_hold_s"]), "-W"],
                 "udp_sessions", "udp", rounds),
    ]
    return wl


def curve_point(prof, curve, x, threads, gen_threads):
    """Return the Workload of one point of a curve (curves.CURVES) at forwarder threads.

    streams_DIR: x bulk streams, the generator's streams spread over
    gen_threads threads.  crr_idle: crr with CRR_CLIENTS clients while a
    Background idle client holds x connections through the same forwarder
    (its upstream connections count in the forwarder's ephemeral ports, so
    crr's own cap shrinks by x).  rr_load: rr on one connection while x
    bulk c2s streams run.  crr1: crr with one client.
    """
    wid = f"{curve}_{x}" + (f"_j{threads}" if threads != 1 else "")
    common = dict(place="curve", rounds=prof["curve_rounds"], threads=threads, curve=curve, x=x)
    if curve.startswith("streams_"):
        return Workload(wid, ["stream", "-n", str(x), "-t", str(prof["curve_stream_s"]),
                              "-d", curve.split("_", 1)[1], "-T", str(gen_threads)], **common)
    if curve == "crr_idle":
        bg = Background("idle", ["idle", "-H", "0", "-W", "-a", "64"], x) if x else None
        return Workload(wid, ["crr", "-n", str(CRR_CLIENTS), "-t", str(prof["curve_crr_s"]),
                              "-s", str(CRR_SIZE), "-m", str(max(2000, CRR_MAX - x)),
                              "-a", str(SRC_ADDRS)], bg=bg, **common)
    if curve == "rr_load":
        t = prof["curve_rr_s"] + CURVE_BG_WARMUP_S + CURVE_BG_SLACK_S
        bg = Background("stream", ["stream", "-n", str(x), "-t", f"{t:g}", "-d", "c2s", "-T",
                                   str(gen_threads), "-W"], x) if x else None
        return Workload(wid, ["rr", "-n", "1", "-t", str(prof["curve_rr_s"]), "-s",
                              str(RR_SIZE)], bg=bg, **common)
    if curve == "crr1":
        return Workload(wid, ["crr", "-n", "1", "-t", str(prof["curve_crr_s"]), "-s",
                              str(CRR_SIZE), "-m", str(CRR_MAX), "-a", str(SRC_ADDRS)], **common)
    raise ValueError(f"unknown curve {curve}")


def curve_workloads(prof, curves=None, threads=(1, 2), gen_threads=lambda t: 1):
    """Return every point of the profile's curves, -j 1 first, then -j 2.

    curves (names) and threads keep those only; gen_threads(t) is how many
    generator threads a point with forwarder threads t gets.
    """
    out = []
    for t in threads:
        for curve, by_threads in prof["curves"].items():
            if curves is not None and curve not in curves:
                continue
            out += [curve_point(prof, curve, x, t, gen_threads(t)) for x in by_threads.get(t, [])]
    return out


def curve_skip(wl, fwd, nfile):
    """Why forwarder fwd does not run curve point wl (None: it does).

    direct has no workers to double; socat forks a process per connection
    whatever it is told, so -j 2 would repeat its -j 1 run.  A point above a
    forwarder's CURVE_CAP, or beyond what the forwarder's descriptor limit
    holds (2 per proxied connection: x streams, or x idle plus the crr
    clients), is not run.
    """
    if wl.threads != 1 and fwd.kind in ("direct", "socat"):
        return f"no -j {wl.threads} for {fwd.kind}"
    if fwd.kind == "direct":
        return None
    conns = (wl.x or 0) + (CRR_CLIENTS if wl.curve == "crr_idle" else 0)
    if wl.curve == "rr_load":
        conns += 1
    cap = CURVE_CAP.get(base_name(fwd.name))
    if cap is not None and conns > cap:
        return f"{conns} connections: above {base_name(fwd.name)}'s cap of {cap}"
    fit = (nfile - 400) // 2
    if conns > fit and wl.curve != "crr_idle":
        return f"{conns} connections need {2 * conns} descriptors: limit {nfile}"
    return None


def curve_idle_target(wl, fwd, nfile):
    """Connections the idle background of crr_idle point wl holds through fwd.

    What fits: the forwarder's descriptor limit (2 per connection, 400 kept
    for its own use and crr's clients) and its CURVE_CAP.
    """
    n = min(wl.bg.x, (nfile - 400) // 2 - 2 * CRR_CLIENTS)
    return min(n, CURVE_CAP.get(base_name(fwd.name), n))


def workloads(prof, protocols=("tcp", "udp")):
    """Return the workloads of a profile for the protocols asked, TCP first."""
    wl = tcp_workloads(prof) if "tcp" in protocols else []
    return wl + (udp_workloads(prof) if "udp" in protocols else [])
