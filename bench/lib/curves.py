"""The curves (issue 11): how a forwarder's cost grows with the work.

A curve is one workload run at several points x (params.PROFILES'
"curves": x per forwarder worker count), each point a workloads.Workload
with curve, x and threads set.  This module says what each curve reports,
takes the medians per forwarder, worker count and point, and finds where
a curve bends; report_curves.py writes them out.
"""

import statistics

from .summary import pick

# curve: (title, x label, [(metric, label, record key, better, digits)]).
CURVES = {
    "streams_c2s": ("concurrent bulk streams, client to server", "streams", [
        ("gbps", "total Gbit/s", "gbps", "high", 2),
        ("cpu_s_per_gb", "fwd CPU-s/GB", "fwd_cpu_s_per_gb", "low", 3),
        ("rss_mib", "fwd RSS MiB", "fwd_rss_peak_kib", "low", 1),
        ("rss_kib_per_conn", "fwd RSS KiB/stream", "fwd_rss_per_conn_kib", "low", 1),
        ("jain", "Jain's index", "jain", "high", 3),
        ("min_mean", "slowest/mean", "min_mean", "high", 3),
    ]),
    "streams_s2c": ("concurrent bulk streams, server to client", "streams", None),
    "crr_idle": ("crr (8 clients) with idle connections held", "idle held", [
        ("cps", "conn/s", "rate", "high", 0),
        ("p50_us", "p50 us", ("lat_us", "p50"), "low", 0),
        ("p99_us", "p99 us", ("lat_us", "p99"), "low", 0),
        ("held", "idle held", "bg_held", "high", 0),
        ("rss_mib", "fwd RSS MiB", "fwd_rss_peak_kib", "low", 1),
        ("rss_kib_per_conn", "fwd RSS KiB/idle conn", "fwd_rss_per_conn_kib", "low", 2),
    ]),
    "rr_load": ("pinned 64 B rr next to bulk streams", "bulk streams", [
        ("p50_us", "rr p50 us", ("lat_us", "p50"), "low", 1),
        ("p99_us", "rr p99 us", ("lat_us", "p99"), "low", 1),
        ("p999_us", "rr p99.9 us", ("lat_us", "p999"), "low", 0),
        ("bulk_gbps", "bulk Gbit/s", "bg_gbps", "high", 2),
    ]),
    "crr1": ("crr, one sequential client", "clients", [
        ("cps", "conn/s", "rate", "high", 0),
        ("p50_us", "p50 us", ("lat_us", "p50"), "low", 0),
        ("p99_us", "p99 us", ("lat_us", "p99"), "low", 0),
        ("p999_us", "p99.9 us", ("lat_us", "p999"), "low", 0),
    ]),
}
CURVES["streams_s2c"] = CURVES["streams_s2c"][:2] + (CURVES["streams_c2s"][2],)

# Where a curve bends: (metric, reference point, factor).  A point bends
# when its median is worse than factor times the reference point's (the
# issue's flat-cost targets): CPU-s/GB 15% above the 8-stream value,
# conn/s 10% below the rate with no idle connection, rr p99 over twice the
# quiet p99.
BENDS = {
    "streams_c2s": ("cpu_s_per_gb", 8, 1.15),
    "streams_s2c": ("cpu_s_per_gb", 8, 1.15),
    "crr_idle": ("cps", 0, 0.90),
    "rr_load": ("p99_us", 0, 2.0),
}


def metrics(curve):
    """The metric tuples of a curve."""
    return CURVES[curve][2]


def value(rec, key):
    """A record's value for a metric key (RSS in MiB for fwd_rss_peak_kib)."""
    v = pick(rec, key)
    if v is not None and key == "fwd_rss_peak_kib":
        v = v / 1024
    return v


def series(name, threads):
    """A curve line's name: the forwarder, with its worker count past one."""
    return name if threads == 1 else f"{name} -j {threads}"


def summarize_curves(records, names):
    """Return {series: {curve: {x: {metric: {median, min, max, n}}}}} over error-free runs.

    series(): forwarder names in the order of names, each worker count
    after the other; points and curves in the order they ran.
    """
    out = {}
    runs = [r for r in records if r.get("curve") and "error" not in r]
    for threads in sorted({r["threads"] for r in runs}):
        for name in names:
            mine = [r for r in runs if r["forwarder"] == name and r["threads"] == threads]
            if not mine:
                continue
            s = out.setdefault(series(name, threads), {})
            for r in mine:
                s.setdefault(r["curve"], {}).setdefault(r["x"], {})
            for curve, points in s.items():
                for x, cell in points.items():
                    at = [r for r in mine if r["curve"] == curve and r["x"] == x]
                    for mid, _, key, _, _ in metrics(curve):
                        vals = [v for v in (value(r, key) for r in at) if v is not None]
                        if vals:
                            cell[mid] = {"median": statistics.median(vals), "min": min(vals),
                                         "max": max(vals), "n": len(vals)}
    return out


def bends(csum):
    """Return {(series, curve, x)} of the points where a curve bends (BENDS)."""
    out = set()
    for ser, curves in csum.items():
        for curve, points in curves.items():
            if curve not in BENDS:
                continue
            mid, ref_x, factor = BENDS[curve]
            ref = points.get(ref_x, {}).get(mid)
            if not ref or not ref["median"]:
                continue
            for x, cell in points.items():
                m = cell.get(mid)
                if x == ref_x or not m:
                    continue
                worse = (m["median"] < factor * ref["median"] if factor < 1
                         else m["median"] > factor * ref["median"])
                if worse:
                    out.add((ser, curve, x))
    return out


def cmed(csum, ser, curve, x, mid):
    """A point's median, or None."""
    m = csum.get(ser, {}).get(curve, {}).get(x, {}).get(mid)
    return m["median"] if m else None


def largest(csum, ser, curve, at_most=None):
    """The largest point a series measured on a curve (at most at_most), or None."""
    xs = [x for x in csum.get(ser, {}).get(curve, {}) if at_most is None or x <= at_most]
    return max(xs) if xs else None


def curve_targets(csum):
    """Judge issue 11's targets for every sockfwd engine measured: rows (target, measured, result).

    Flat cost (CPU-s/GB at the most streams within 15% of 8 streams; crr
    with the most idle connections held within 10% of none), -j 2 at least
    1.6x -j 1 at 64 streams, rr under one bulk neighbour at most 2x the
    quiet p99, and against the peers at every streams point: Gbit/s at
    least haproxy-splice's and nginx's, CPU-s/GB at most 0.7x the best
    peer's.
    """
    rows = []

    def row(what, measured, ok):
        rows.append((what, measured, "-" if ok is None else ("met" if ok else "MISSED")))

    def r(v, d=2):
        return "-" if v is None else f"{v:.{d}f}"

    peers = ("haproxy-splice", "haproxy", "nginx")
    for ser in [s for s in csum if s.startswith("sockfwd-") and " -j " not in s]:
        for curve in ("streams_c2s", "streams_s2c"):
            top = largest(csum, ser, curve)
            a, b = cmed(csum, ser, curve, top, "cpu_s_per_gb"), cmed(csum, ser, curve, 8,
                                                                      "cpu_s_per_gb")
            if top and top > 8:
                row(f"{ser} {curve}: CPU-s/GB at {top} streams within 15% of 8 streams",
                    f"{r(a, 3)} vs {r(b, 3)}", None if a is None or not b else a <= 1.15 * b)
            gb_ok = cpu_ok = total = 0
            for x in sorted(csum[ser].get(curve, {})):
                g = cmed(csum, ser, curve, x, "gbps")
                pg = [cmed(csum, p, curve, x, "gbps") for p in ("haproxy-splice", "nginx")]
                pc = [v for v in (cmed(csum, p, curve, x, "cpu_s_per_gb") for p in peers)
                      if v is not None]
                c = cmed(csum, ser, curve, x, "cpu_s_per_gb")
                if g is None or None in pg or c is None or not pc:
                    continue
                total += 1
                gb_ok += g >= max(pg)
                cpu_ok += c <= 0.7 * min(pc)
            if total:
                row(f"{ser} {curve}: Gbit/s >= haproxy-splice's and nginx's", f"{gb_ok} of "
                    f"{total} points", gb_ok == total)
                row(f"{ser} {curve}: CPU-s/GB <= 0.7x the best peer's", f"{cpu_ok} of {total} "
                    "points", cpu_ok == total)
        top = largest(csum, ser, "crr_idle")
        a, b = cmed(csum, ser, "crr_idle", top, "cps"), cmed(csum, ser, "crr_idle", 0, "cps")
        if top:
            held = cmed(csum, ser, "crr_idle", top, "held")
            row(f"{ser} crr with {r(held, 0)} idle held within 10% of none",
                f"{r(a, 0)} vs {r(b, 0)} conn/s", None if a is None or not b else a >= 0.9 * b)
        j1, j2 = (cmed(csum, s, "streams_c2s", 64, "gbps") for s in (ser, f"{ser} -j 2"))
        if j2 is not None:
            row(f"{ser} -j 2 at 64 streams c2s >= 1.6x -j 1", f"{r(j2)} vs {r(j1)} Gbit/s",
                None if not j1 else j2 >= 1.6 * j1)
        a, b = cmed(csum, ser, "rr_load", 1, "p99_us"), cmed(csum, ser, "rr_load", 0, "p99_us")
        if a is not None:
            row(f"{ser} rr p99 next to 1 bulk stream <= 2x quiet", f"{r(a, 1)} vs {r(b, 1)} us",
                None if not b else a <= 2 * b)
    return rows
