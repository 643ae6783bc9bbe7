"""The metrics of a run and their medians over rounds."""

import statistics

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
    # UDP (workloads.udp_workloads).  pps: datagrams the server received per second.
    ("udp64_pps", "udp_stream_64", "pps", "pkt/s", "high"),
    ("udp64_loss_pct", "udp_stream_64", "loss_pct", "%", "low"),
    ("udp64_fwd_ns_per_pkt", "udp_stream_64", "fwd_cpu_ns_per_pkt", "ns", "low"),
    ("udp1400_pps", "udp_stream_1400", "pps", "pkt/s", "high"),
    ("udp1400_gbps", "udp_stream_1400", "gbps", "Gbit/s", "high"),
    ("udp1400_loss_pct", "udp_stream_1400", "loss_pct", "%", "low"),
    ("udp1400_fwd_ns_per_pkt", "udp_stream_1400", "fwd_cpu_ns_per_pkt", "ns", "low"),
    ("udp_paced_loss_pct", "udp_paced", "loss_pct", "%", "low"),
    ("udp_paced_fwd_ns_per_pkt", "udp_paced", "fwd_cpu_ns_per_pkt", "ns", "low"),
    ("udp_rr_p50_us", "udp_rr", ("lat_us", "p50"), "us", "low"),
    ("udp_rr_p99_us", "udp_rr", ("lat_us", "p99"), "us", "low"),
    ("udp_rr_p999_us", "udp_rr", ("lat_us", "p999"), "us", "low"),
    ("udp_rr_lost", "udp_rr", "lost", "", "low"),
    ("udp_sessions_rate", "udp_sessions", "rate", "sessions/s", "high"),
    ("udp_sessions_held", "udp_sessions", "held", "sessions", "high"),
    ("udp_sessions_checked_ok", "udp_sessions", "checked_ok", "sessions", "high"),
    ("udp_rss_per_session_b", "udp_sessions", "rss_per_session_b", "B", "low"),
]

# The UDP metrics: a forwarder with none of them was not measured over UDP.
UDP_METRIC_IDS = [m[0] for m in METRICS if m[1].startswith("udp_")]

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


