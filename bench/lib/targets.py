"""The targets of the bench issues, judged on a summary: met, MISSED, or - (not measured)."""

from .procs import nofile
from .summary import added, fmt, med, ratio

# sockfwd's UDP data path: the reactor (splice and epoll alike), then the others.
UDP_ENGINE_ORDER = ("sockfwd-splice", "sockfwd-epoll", "sockfwd-uring", "sockfwd-naive")


def targets(summary):
    """Evaluate the issue's targets on the default engine (splice); list of rows."""
    s = "sockfwd-splice"
    rows = []

    def row(what, measured, ok):
        rows.append((what, measured, "-" if ok is None else ("met" if ok else "MISSED")))

    for d in ("c2s", "s2c"):
        m = f"stream_{d}_gbps"
        sp, di, nv, hs = (med(summary, n, m) for n in (s, "direct", "sockfwd-naive",
                                                          "haproxy-splice"))
        row(f"splice 1 stream {d} >= 90% of direct",
            ratio(sp, di), None if sp is None or not di else sp >= 0.9 * di)
        row(f"splice 1 stream {d} >= 1.5x naive",
            ratio(sp, nv), None if sp is None or not nv else sp >= 1.5 * nv)
        row(f"splice 1 stream {d} ahead of haproxy-splice",
            f"{fmt(sp)} vs {fmt(hs)} Gbit/s", None if sp is None or hs is None else sp > hs)
    sp, nv, hs = (med(summary, n, "cpu_s_per_gb") for n in (s, "sockfwd-naive", "haproxy-splice"))
    row("splice CPU-s/GB <= half of naive", ratio(sp, nv),
        None if sp is None or not nv else sp <= 0.5 * nv)
    bsp, bnv = (med(summary, n, "cpu_busy_s_per_gb") for n in (s, "sockfwd-naive"))
    if bsp is not None:
        row("(same, counting softirq: CPU busy-s/GB) <= half of naive", ratio(bsp, bnv),
            None if not bnv else bsp <= 0.5 * bnv)
    row("splice CPU-s/GB below haproxy-splice", f"{fmt(sp, 3)} vs {fmt(hs, 3)}",
        None if sp is None or hs is None else sp < hs)
    sp = med(summary, s, "crr_cps")
    for peer in ("haproxy", "haproxy-splice", "nginx"):
        p = med(summary, peer, "crr_cps")
        row(f"splice crr ahead of {peer}", f"{fmt(sp)} vs {fmt(p)} conn/s",
            None if sp is None or p is None else sp > p)
    for q in ("p50", "p99"):
        a, n = added(summary, s, f"rr_{q}_us"), added(summary, "nginx", f"rr_{q}_us")
        row(f"splice rr {q} added <= half of nginx's", f"{fmt(a)} vs {fmt(n)} us",
            None if a is None or n is None else a <= 0.5 * n)
    held, ok = med(summary, s, "idle_held"), med(summary, s, "idle_checked_ok")
    rss = med(summary, s, "idle_rss_per_conn_b")
    cap = (nofile() - 400) // 2
    if cap < 10000:
        # Two descriptors per proxied connection: 10,000 cannot fit here.
        row(f"splice idle: 10,000 held and working (fd limit {nofile()}: {cap} at most here)",
            f"{fmt(held)} held, {fmt(ok)} ok",
            None if held is None else (False if ok is None or ok < held else None))
    else:
        row("splice idle: 10,000 held and working", f"{fmt(held)} held, {fmt(ok)} ok",
            None if held is None else held >= 10000 and ok is not None and ok >= 10000)
    row("splice idle: < 2 KiB RSS per connection", f"{fmt(rss)} B",
        None if rss is None else rss < 2048)
    return rows




def udp_engine(summary):
    """The sockfwd entry whose UDP results the targets judge (None if none has any)."""
    for name in UDP_ENGINE_ORDER:
        if med(summary, name, "udp64_pps") is not None:
            return name
    return None


def udp_targets(summary):
    """Evaluate issue 9's UDP targets against nginx; list of (target, measured, result) rows.

    Packets/s at least twice nginx's at half its CPU per packet (64 and
    1,400 B), rr added latency at most nginx's, no loss at the paced rate,
    RSS per idle session under 1 KiB.
    """
    s = udp_engine(summary) or "sockfwd (no UDP engine measured)"
    rows = []

    def row(what, measured, ok):
        rows.append((what, measured, "-" if ok is None else ("met" if ok else "MISSED")))

    for size in (64, 1400):
        a, n = med(summary, s, f"udp{size}_pps"), med(summary, "nginx", f"udp{size}_pps")
        row(f"{s} udp_stream {size} B pkt/s >= 2x nginx", ratio(a, n),
            None if a is None or not n else a >= 2 * n)
        a, n = (med(summary, x, f"udp{size}_fwd_ns_per_pkt") for x in (s, "nginx"))
        row(f"{s} udp_stream {size} B CPU per packet <= half of nginx's",
            f"{fmt(a)} vs {fmt(n)} ns", None if a is None or not n else a <= 0.5 * n)
    for q in ("p50", "p99"):
        a, n = added(summary, s, f"udp_rr_{q}_us"), added(summary, "nginx", f"udp_rr_{q}_us")
        row(f"{s} udp_rr {q} added <= nginx's", f"{fmt(a)} vs {fmt(n)} us",
            None if a is None or n is None else a <= n)
    loss = med(summary, s, "udp_paced_loss_pct")
    worst = summary.get(s, {}).get("udp_paced_loss_pct")
    row(f"{s} no loss below saturation (udp_paced, every round)",
        f"{fmt(worst['max'], 3)} % at most" if worst else "-",
        None if loss is None else worst["max"] == 0)
    rss = med(summary, s, "udp_rss_per_session_b")
    row(f"{s} RSS per idle session < 1 KiB", f"{fmt(rss)} B", None if rss is None else rss < 1024)
    return rows
