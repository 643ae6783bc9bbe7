"""The workloads: what sfload runs for each one, where, over which protocol, how often."""

from collections import namedtuple

from .params import (CRR_CLIENTS, CRR_MAX, CRR_SIZE, IDLE_CAP, RR_SIZE, SRC_ADDRS, UDP_BATCH,
                     UDP_PACED_PPS, UDP_PACED_SIZE, UDP_RR_SIZE, UDP_SESSIONS_CAP, UDP_SIZES,
                     UDP_SRC_ADDRS, UDP_WINDOW, base_name)
from .procs import nofile

# id: the workload's name in results; argv: sfload's arguments without -c;
# place: the PLACEMENT key; proto: "tcp" or "udp" (which server, which
# forwarders); rounds: how many of the profile's rounds run it (None: all).
Workload = namedtuple("Workload", "id argv place proto rounds", defaults=("tcp", None))

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


def workloads(prof, protocols=("tcp", "udp")):
    """Return the workloads of a profile for the protocols asked, TCP first."""
    wl = tcp_workloads(prof) if "tcp" in protocols else []
    return wl + (udp_workloads(prof) if "udp" in protocols else [])
