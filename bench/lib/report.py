"""The outputs: table.md, the CSV files, chart.png (summary.py computes, targets.py judges)."""

import csv
import os
import shutil
import subprocess

from .params import IDLE_CAP, LABEL_SEP, THREADS, UDP_SESSIONS_CAP, base_name
from .procs import log, nofile
from .summary import GEN_METRICS, METRICS, added, cell, fmt, med, ratio, summarize  # noqa: F401
from .targets import targets, udp_targets

# The build-against-build table: (metric id, column head).
BASELINE_METRICS = [
    ("stream_c2s_gbps", "c2s Gbit/s"), ("stream_s2c_gbps", "s2c Gbit/s"),
    ("stream4_c2s_gbps", "4 streams c2s"), ("cpu_s_per_gb", "CPU-s/GB"),
    ("crr_cps", "crr conn/s"), ("crr_p99_us", "crr p99 us"), ("rr_p50_us", "rr p50 us"),
    ("rr_p99_us", "rr p99 us"), ("idle_rss_per_conn_b", "idle RSS B/conn"),
    ("udp64_pps", "UDP 64 B pkt/s"), ("udp64_fwd_ns_per_pkt", "UDP 64 B ns/pkt"),
    ("udp_rr_p99_us", "udp_rr p99 us"), ("udp_rss_per_session_b", "UDP RSS B/session"),
]


def baseline_rows(summary, names, label):
    """Compare every sockfwd engine measured with its baseline entry, ENGINE@label.

    Returns one dict per engine, in the order of names: engine, this and
    baseline (the two forwarder names, None for a build that lacks the
    engine) and metrics {metric: {ratio, within_spread}}, where ratio is
    this build's median over the baseline's and within_spread says whether
    the two builds' min-max ranges overlap.
    """
    rows, seen = [], set()
    for n in names:
        this = base_name(n)
        if not this.startswith("sockfwd-") or this in seen:
            continue
        seen.add(this)
        twin = this + LABEL_SEP + label
        row = {"engine": this[len("sockfwd-"):], "this": this if this in names else None,
               "baseline": twin if twin in names else None, "metrics": {}}
        if row["this"] and row["baseline"]:
            for mid, _ in BASELINE_METRICS:
                a, b = summary[this].get(mid), summary[twin].get(mid)
                if a and b and b["median"]:
                    row["metrics"][mid] = {
                        "ratio": round(a["median"] / b["median"], 4),
                        "within_spread": a["min"] <= b["max"] and b["min"] <= a["max"]}
        rows.append(row)
    return rows


def baseline_md(summary, names, label):
    """Return the Markdown lines comparing this build with the baseline build."""
    rows = baseline_rows(summary, names, label)
    cols = [(mid, head) for mid, head in BASELINE_METRICS
            if any(mid in r["metrics"] for r in rows)]
    lines = ["", f"### This build against {label} (medians: sockfwd-ENGINE / "
             f"sockfwd-ENGINE{LABEL_SEP}{label})", "",
             "| engine | " + " | ".join(h for _, h in cols) + " |", "|---|" + "---|" * len(cols)]
    outside = 0
    for r in rows:
        if not (r["this"] and r["baseline"]):
            where = "this build" if r["this"] else label
            lines.append(f"| {r['engine']} (only in {where}) |" + " - |" * len(cols))
            continue
        cells = []
        for mid, _ in cols:
            m = r["metrics"].get(mid)
            if not m:
                cells.append("-")
                continue
            cells.append(f"{m['ratio']:.2f}x" + ("" if m["within_spread"] else " *"))
            outside += not m["within_spread"]
        lines.append(f"| {r['engine']} | " + " | ".join(cells) + " |")
    if not rows:
        lines.append("| (no sockfwd engine measured) |" + " - |" * len(cols))
    lines += ["", "Above 1.00x is better for Gbit/s and conn/s, below 1.00x for CPU-s/GB, "
              "latency and RSS. " + (
                  f"*: the two builds' min–max ranges do not overlap ({outside} of the ratios), "
                  "a difference beyond this run's spread; the others are within it."
                  if outside else "Every ratio is within the spread: the two builds' min–max "
                  "ranges overlap.")]
    return lines


def tcp_md(summary, names):
    """Return the Markdown lines of the TCP results table and its ratios."""
    multi = any("stream4_c2s_gbps" in summary[n] for n in names)
    head = ["forwarder", "stream c2s Gbit/s", "stream s2c Gbit/s"]
    if multi:
        head.append("4 streams c2s Gbit/s")
    head += ["fwd CPU-s/GB", "fwd CPU busy-s/GB", "spliced", "crr conn/s", "crr p99 us",
             "rr p50 us", "rr p99 us", "rr p99.9 us", "idle held", "idle RSS B/conn"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
    return lines


def table_md(summary, names, meta, records):
    """Return the Markdown report: results, ratios, targets, generator check."""
    p = meta["parameters"]
    lines = [f"## sockfwd bench ({meta['profile']}, {p['rounds']} interleaved rounds, "
             f"median [min–max])", "",
             f"{meta['date']}, commit {meta['commit']}, {meta['machine']['cpu_model']} x "
             f"{meta['machine']['cpus']}, Linux {meta['machine']['kernel']}; "
             f"{THREADS} thread/worker per forwarder.", ""]
    ran = set(p.get("workloads", []))
    tcp_ran = any(not w.startswith("udp_") for w in ran)
    if tcp_ran:
        lines += tcp_md(summary, names)
    if meta.get("baseline"):
        lines += baseline_md(summary, names, meta["baseline"]["label"])
    if tcp_ran:
        lines += ["", "### Targets (sockfwd-splice, the default engine)", "",
                  "| target | measured | result |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in targets(summary)]
    if any(w.startswith("udp_") for w in ran):
        lines += udp_md(summary, names, meta)
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
    lines += ["", "Placement: stream, crr, udp_stream, udp_paced and udp_sessions: forwarder on "
              "CPU 0, sfload client and server on CPU 1 (direct: client and server on CPU 1 too); "
              "rr and udp_rr: all on CPU 0; idle: unpinned. "
              f"Idle connections held: {p['idle_n']} at most, capped by the descriptor limit "
              f"({nofile()}, 2 per proxied connection); naive {IDLE_CAP['sockfwd-naive']} "
              f"(2 threads per connection), socat {IDLE_CAP['socat']} (a process per connection)."]
    return "\n".join(lines) + "\n"


def udp_md(summary, names, meta):
    """Return the Markdown lines of the UDP results, their targets, and who was not measured."""
    p = meta["parameters"]
    skipped = meta.get("udp_skipped", {})
    rows = [n for n in names if n not in skipped]
    head = ["forwarder", "64 B pkt/s", "64 B loss %", "64 B fwd ns/pkt", "1400 B pkt/s",
            "1400 B Gbit/s", "1400 B loss %", "1400 B fwd ns/pkt", "paced loss %",
            "udp_rr p50 us", "udp_rr p99 us", "udp_rr p99.9 us", "sessions/s",
            "sessions held", "RSS B/session"]
    lines = ["", f"### UDP ({p.get('udp_rounds', p['rounds'])} interleaved rounds, median "
             "[min–max])", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in rows:
        row = [n, cell(summary, n, "udp64_pps", 0), cell(summary, n, "udp64_loss_pct", 2),
               cell(summary, n, "udp64_fwd_ns_per_pkt", 0), cell(summary, n, "udp1400_pps", 0),
               cell(summary, n, "udp1400_gbps", 2), cell(summary, n, "udp1400_loss_pct", 2),
               cell(summary, n, "udp1400_fwd_ns_per_pkt", 0),
               cell(summary, n, "udp_paced_loss_pct", 3), cell(summary, n, "udp_rr_p50_us", 1),
               cell(summary, n, "udp_rr_p99_us", 1), cell(summary, n, "udp_rr_p999_us", 0),
               cell(summary, n, "udp_sessions_rate", 0),
               fmt(med(summary, n, "udp_sessions_held")),
               cell(summary, n, "udp_rss_per_session_b", 0)]
        if summary[n].get("errors"):
            row[0] += f" ({summary[n]['errors']} failed runs)"
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"pkt/s: datagrams the server received per second; loss: sent but never "
              f"received (sequence numbers); fwd ns/pkt: the forwarder's utime+stime per "
              f"datagram it delivered; paced: {p.get('udp_paced_pps')} datagrams/s of "
              f"{p.get('udp_paced_size')} B, below every forwarder's saturation; sessions: "
              f"{p.get('udp_sessions_n')} client addresses at most, one echoed datagram each "
              f"({', '.join(f'{k} {v}' for k, v in UDP_SESSIONS_CAP.items())}), RSS per "
              "session = (RSS held - RSS before) / sessions."]
    for n, why in skipped.items():
        lines.append(f"Not measured over UDP: {n}: {why}.")
    lines += ["", "### UDP targets (issue 9; against nginx)", "",
              "| target | measured | result |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in udp_targets(summary)]
    return lines


def write_csv(path, records, meta):
    """One row per run, with the machine and commit on every row."""
    keys = ["forwarder", "kind", "workload", "round", "gbps", "bytes", "seconds", "rate",
            "done", "errors", "held", "checked_ok", "fwd_cpu_s", "fwd_cpu_s_per_gb",
            "fwd_cpu_us_per_conn", "fwd_cpu_busy_s_per_gb", "spliced_share", "rss_per_conn_b", "gen_cpu_util",
            "fwd_cpu_util", "other_cpu_util", "p50_us", "p90_us", "p99_us", "p999_us", "error",
            # UDP (appended: the columns before keep their places)
            "proto", "sent", "received", "pps", "loss_pct", "lost", "fwd_cpu_ns_per_pkt",
            "rss_per_session_b"]
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
              ("idle_rss_per_conn_b", "idle RSS per connection (B)"),
              ("udp64_pps", "UDP 64 B datagrams/s"), ("udp1400_gbps", "UDP 1400 B (Gbit/s)"),
              ("udp64_fwd_ns_per_pkt", "UDP 64 B forwarder CPU ns per datagram"),
              ("udp_rr_p99_us", "UDP rr p99 pinned (us)"),
              ("udp_sessions_rate", "UDP new sessions/s"),
              ("udp_rss_per_session_b", "UDP RSS per idle session (B)")]
    plots = []
    skipped = meta.get("udp_skipped", {})
    for mid, title in panels:
        if not any(summary[n].get(mid) for n in names):
            continue
        # A UDP panel leaves out the forwarders not measured over UDP.
        shown = [n for n in names if not (mid.startswith("udp") and n in skipped)]
        dat = os.path.join(outdir, f"chart_{mid}.dat")
        with open(dat, "w") as f:
            for n in shown:
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
          "set xtics rotate by -30 nomirror noenhanced",  # labels as written: @ in sockfwd-ENGINE@LABEL
          "set grid ytics", "unset key"]
    for dat, title in plots:
        # RSS spans 300 B (sockfwd) to megabytes (socat): log scale there.
        gp.append("set logscale y\nset yrange [100:*]" if "RSS" in title
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
