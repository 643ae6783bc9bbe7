"""What the bench measures: suite profiles, fixed parameters, CPU placement."""

import os

LOCK_PATH = "/tmp/sockfwd-bench.lock"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(ROOT, "bench", "configs")

# Suite profiles.  Durations in seconds; idle_n connections held.
PROFILES = {
    "quick": {
        # 2 rounds of 1 s (3 of 1.5 s before the curves) keep `make bench`,
        # curves included, near its 5 minutes (estimated, bench/README.md).
        "rounds": 2,
        "stream_s": 1.0,
        "multi_streams": 0,  # no multi-stream workload in the quick suite
        "crr_s": 1.0,
        "rr_s": 1.0,
        "idle_n": 10000,
        "idle_hold_s": 0.3,
        # UDP: one round of short runs, to keep `make bench` near its 5 minutes.
        "udp_rounds": 1,
        "udp_stream_s": 0.5,
        "udp_rr_s": 0.5,
        "udp_sessions_n": 10000,
        "udp_hold_s": 0.2,
        # The curves (curves.py): one round of short runs, a few points
        # each, -j 2 at the point its target names.
        "curve_rounds": 1,
        "curve_stream_s": 0.4,
        "curve_crr_s": 0.4,
        "curve_rr_s": 0.4,
        "curves": {
            "streams_c2s": {1: [8, 64, 4096], 2: [64]},
            "streams_s2c": {1: [8]},
            "crr_idle": {1: [0, 10000], 2: [0]},
            "rr_load": {1: [0, 1], 2: [1]},
            "crr1": {1: [1]},
        },
    },
    "full": {
        "rounds": 5,
        "stream_s": 5.0,
        "multi_streams": 4,
        "crr_s": 3.0,
        "rr_s": 5.0,
        "idle_n": 10000,
        "idle_hold_s": 2.0,
        "udp_rounds": 5,
        "udp_stream_s": 2.0,
        "udp_rr_s": 3.0,
        "udp_sessions_n": 10000,
        "udp_hold_s": 1.0,
        "curve_rounds": 3,
        "curve_stream_s": 2.0,
        "curve_crr_s": 2.0,
        "curve_rr_s": 3.0,
        "curves": {
            "streams_c2s": {1: [1, 8, 64, 512, 4096], 2: [1, 8, 64, 512, 4096]},
            "streams_s2c": {1: [1, 8, 64, 512, 4096], 2: [1, 8, 64, 512, 4096]},
            "crr_idle": {1: [0, 1000, 10000], 2: [0, 1000, 10000]},
            "rr_load": {1: [0, 1, 64], 2: [0, 1, 64]},
            "crr1": {1: [1], 2: [1]},
        },
    },
    # Not a measurement: the shortest runs at the smallest points, one
    # round, to check the harness end to end (--smoke).
    "smoke": {
        "rounds": 1,
        "stream_s": 0.2,
        "multi_streams": 0,
        "crr_s": 0.2,
        "rr_s": 0.2,
        "idle_n": 200,
        "idle_hold_s": 0.1,
        "udp_rounds": 1,
        "udp_stream_s": 0.2,
        "udp_rr_s": 0.2,
        "udp_sessions_n": 200,
        "udp_hold_s": 0.1,
        "curve_rounds": 1,
        "curve_stream_s": 0.2,
        "curve_crr_s": 0.2,
        "curve_rr_s": 0.2,
        "curves": {
            "streams_c2s": {1: [1, 8, 64], 2: [8]},
            "streams_s2c": {1: [1, 8], 2: [8]},
            "crr_idle": {1: [0, 100], 2: [100]},
            "rr_load": {1: [0, 1], 2: [1]},
            "crr1": {1: [1], 2: [1]},
        },
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

# UDP.  Datagram sizes of udp-stream; the paced run's rate (datagrams/s of
# 1,400 B), well below what any forwarder here saturates at, where the
# target is no loss at all; sources of udp-sessions spread over
# 127.65.x.y; first datagrams in flight at once; sessions held where
# 10,000 would be unsafe (socat forks a process per session; sockfwd's
# naive engine serves UDP from one event loop, no thread per session).
UDP_SIZES = (64, 1400)
UDP_BATCH = 32
UDP_PACED_PPS = 20000
UDP_PACED_SIZE = 1400
UDP_RR_SIZE = 64
UDP_SRC_ADDRS = 10000  # a source address per session, as issue 9 says
UDP_WINDOW = 64
UDP_SESSIONS_CAP = {"socat": 200}

# Curves (curves.py).  Streams or held connections a forwarder can take
# where the descriptor limit alone would allow more: naive takes two
# threads per connection, socat a process (as IDLE_CAP).  A point above a
# cap is not run and the table says so.
CURVE_CAP = {"sockfwd-naive": 4000, "socat": 200}
# The bulk streams of rr_load run this much longer than the rr client, so
# they cover all of it: the rr client starts WARMUP_S after them.
CURVE_BG_WARMUP_S = 0.3
CURVE_BG_SLACK_S = 1.0

# A baseline build's entries are named ENTRY@LABEL (sockfwd-splice@old).
LABEL_SEP = "@"

# CPU placement (CPU indexes into the CPUs this process may use).
# fwd: the forwarder; gen: sfload client and server.  None = unpinned.
PLACEMENT = {
    "stream": {"fwd": [0], "gen": [1]},
    "crr": {"fwd": [0], "gen": [1]},
    "rr": {"fwd": [0], "gen": [0]},  # all on one CPU, as in the calibration
    "idle": {"fwd": None, "gen": None},
    "udp_stream": {"fwd": [0], "gen": [1]},
    "udp_rr": {"fwd": [0], "gen": [0]},  # as rr
    "udp_sessions": {"fwd": [0], "gen": [1]},  # a rate, as crr
    # The curves: the forwarder on its own CPU, everything else on the other,
    # rr_load too (its bulk neighbours would otherwise take the rr client's CPU).
    "curve": {"fwd": [0], "gen": [1]},
}


def placement(place, threads=1):
    """Return {"fwd": cpus, "gen": cpus} for a workload's place and forwarder threads.

    One worker: PLACEMENT.  Two: the forwarder on two CPUs of its own and the
    generator on two others when there are four; on fewer, every process
    shares every CPU (unpinned): the forwarder cannot have two CPUs to itself
    and the generator one.
    """
    if threads == 1:
        return PLACEMENT[place]
    if len(os.sched_getaffinity(0)) >= 4:
        return {"fwd": [0, 1], "gen": [2, 3]}
    return {"fwd": None, "gen": None}


def base_name(name):
    """Return a forwarder name without its build label (sockfwd-naive@old: sockfwd-naive)."""
    return name.split(LABEL_SEP, 1)[0]
