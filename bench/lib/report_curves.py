"""The curves' outputs: their section of table.md, curves.csv, one chart per curve (gnuplot)."""

import csv
import os
import shutil
import subprocess

from .curves import BENDS, CURVES, bends, curve_targets, metrics
from .params import placement
from .procs import log, nofile
from .summary import fmt

# Line colours of the charts, one per forwarder (its -j 2 line dashed).
COLOURS = ["#000000", "#4472c4", "#ed7d31", "#a5a5a5", "#ffc000", "#5b9bd5", "#70ad47",
           "#9e480e", "#264478", "#7f6000", "#43682b"]


def points_of(csum, curve):
    """Every point measured on a curve, ascending."""
    return sorted({x for s in csum.values() for x in s.get(curve, {})})


def curve_md(csum, curve, bent):
    """Return the Markdown lines of one curve: a table per metric, series by points."""
    title, xlabel, ms = CURVES[curve]
    xs = points_of(csum, curve)
    rows = [s for s in csum if curve in csum[s]]
    if not rows:
        return []
    lines = ["", f"#### {curve}: {title} (columns: {xlabel})"]
    bend = BENDS.get(curve)
    for mid, label, _, better, digits in ms:
        if not any(mid in c for s in rows for c in csum[s][curve].values()):
            continue
        lines += ["", f"| {label} ({'higher' if better == 'high' else 'lower'} is better) | "
                  + " | ".join(f"{x:,}" for x in xs) + " |", "|---|" + "---|" * len(xs)]
        for s in rows:
            cells = []
            for x in xs:
                m = csum[s][curve].get(x, {}).get(mid)
                c = fmt(float(m["median"]), digits) if m else "-"
                if m and bend and bend[0] == mid and (s, curve, x) in bent:
                    c += " (bend)"
                cells.append(c)
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def curves_md(csum, skipped, prof_name):
    """Return the Markdown section of the curves: tables, bends, targets, points not run."""
    if not csum:
        return []
    bent = bends(csum)
    two = placement("curve", 2)
    where2 = ("unpinned: fewer than 4 CPUs, every process shares them" if two["fwd"] is None
              else f"forwarder on CPUs {two['fwd']}, generator on {two['gen']}")
    lines = ["", f"### Curves ({prof_name}, medians)", "",
             "A series NAME -j 2 runs the forwarder with 2 workers (sockfwd -j 2, HAProxy "
             "nbthread 2, nginx worker_processes 2); direct and socat (a process per connection "
             "whatever it is told) run -j 1 only. Placement: -j 1 forwarder on CPU 0, sfload "
             f"clients and server on CPU 1; -j 2 {where2}."]
    for curve in CURVES:
        lines += curve_md(csum, curve, bent)
    ran = {c for s in csum.values() for c in s}
    lines += ["", "(bend): "
              + "; ".join(f"{c}: {m} worse than {f:g}x its value at {x}"
                          for c, (m, x, f) in BENDS.items() if c in ran) + "."]
    if "crr_idle" in ran:
        lines.append(f"crr_idle's idle held: what fits the forwarder's descriptor limit "
                     f"({nofile()}, 2 per proxied connection); the column is the count asked.")
    rows = curve_targets(csum)
    if rows:
        lines += ["", "#### Issue 11's targets (sockfwd engines)", "",
                  "| target | measured | result |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if skipped:
        lines += ["", "Points not run: " + "; ".join(f"{k}: {v}" for k, v in
                                                     sorted(skipped.items())) + "."]
    return lines


def write_curves_csv(path, csum):
    """One row per series, curve, point and metric: median, min, max, runs, bend."""
    bent = bends(csum)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "curve", "x", "metric", "median", "min", "max", "runs", "bend"])
        for ser, curves in csum.items():
            for curve, points in curves.items():
                for x, cell in sorted(points.items()):
                    for mid, m in cell.items():
                        b = BENDS.get(curve, (None,))[0] == mid and (ser, curve, x) in bent
                        w.writerow([ser, curve, x, mid, m["median"], m["min"], m["max"], m["n"],
                                    int(b)])


def chart_curve(outdir, csum, curve, meta):
    """Draw curve_CURVE.png: a panel per metric, a line per series. Returns the path or None.

    Points are spaced evenly (x is categorical: 0 idle connections and
    4,096 streams on one axis); a forwarder's -j 2 line is dashed in its
    -j 1 line's colour.
    """
    title, xlabel, ms = CURVES[curve]
    xs = points_of(csum, curve)
    sers = [s for s in csum if curve in csum[s]]
    bases = list(dict.fromkeys(s.split(" -j ")[0] for s in sers))
    panels = []
    for mid, label, _, _, _ in ms:
        dat = os.path.join(outdir, f"curve_{curve}_{mid}.dat")
        blocks = []
        for s in sers:
            pts = [(i, csum[s][curve][x][mid]) for i, x in enumerate(xs)
                   if mid in csum[s][curve].get(x, {})]
            if pts:
                blocks.append((s, "\n".join(f'{i} {m["median"]} {m["min"]} {m["max"]} "{xs[i]}"'
                                            for i, m in pts)))
        if not blocks:
            continue
        with open(dat, "w") as f:
            f.write("\n\n\n".join(b for _, b in blocks) + "\n")
        plots = []
        for i, (s, _) in enumerate(blocks):
            colour = COLOURS[bases.index(s.split(" -j ")[0]) % len(COLOURS)]
            dash = "dt 2" if " -j " in s else "dt 1"
            plots.append(f'"{dat}" index {i} using 1:2:3:4 with yerrorlines lw 1.5 {dash} '
                         f'lc rgb "{colour}" pt 7 ps 0.6 title "{s}"')
        panels.append((label, mid, plots))
    if not panels:
        return None
    png = os.path.join(outdir, f"curve_{curve}.png")
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    xtics = ", ".join(f'"{x:,}" {i}' for i, x in enumerate(xs))
    gp = [f'set terminal pngcairo size {700 * cols},{420 * rows} font "sans,9"',
          f'set output "{png}"',
          f'set multiplot layout {rows},{cols} title "sockfwd bench {meta["profile"]} — {curve}: '
          f'{title} — {meta["commit"]} — {meta["date"]} (medians, bars min–max)" noenhanced',
          f"set xtics ({xtics})", f'set xlabel "{xlabel}"', f"set xrange [-0.3:{len(xs) - 0.7}]",
          "set grid", "set key outside right top noenhanced font ',8'"]
    for label, mid, plots in panels:
        gp.append("set logscale y" if mid in ("rss_mib", "p999_us") else "unset logscale y")
        gp.append("set yrange [*:*]" if mid in ("rss_mib", "p999_us")
                  else "set yrange [0:1.05]" if mid in ("jain", "min_mean") else "set yrange [0:*]")
        gp += [f'set title "{label}" noenhanced', "plot " + ", \\\n  ".join(plots)]
    gp.append("unset multiplot")
    script = os.path.join(outdir, f"curve_{curve}.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    out = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if out.returncode != 0:
        log(f"gnuplot failed on {curve}: {out.stderr.strip()[:300]}")
        return None
    return png


def chart_curves(outdir, csum, meta):
    """Draw a chart per curve measured; return the paths drawn."""
    if not csum:
        return []
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no curve charts")
        return []
    done = []
    for curve in CURVES:
        if any(curve in s for s in csum.values()):
            p = chart_curve(outdir, csum, curve, meta)
            if p:
                done.append(p)
    return done
