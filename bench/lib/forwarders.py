"""The forwarders measured (direct, every sockfwd engine, the peers), their configs, and the sfload servers.

Every forwarder forwards TCP; those that forward UDP too list "udp" in
their protocols, and those that cannot say why in no_udp (table.md
prints it).
"""

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile

from .params import LABEL_SEP, TEMPLATES, THREADS, base_name
from .procs import echo_check, log, nofile, pin, run_cmd, stop_process, udp_echo_check, wait_port


class Server:
    """An sfload server: `serve` (TCP sink, source, echo) or `udp-serve` (UDP echo, sink)."""

    def __init__(self, sfload, port, cpus, proto="tcp"):
        self.port = port
        self.proc = subprocess.Popen(
            [sfload, "udp-serve" if proto == "udp" else "serve", "-l", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=pin(cpus), start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 5)
        if not ready or '"ready"' not in self.proc.stdout.readline():
            self.stop()
            raise RuntimeError("sfload serve did not start")

    def stop(self):
        """Stop the server."""
        stop_process(self.proc)
        self.proc.stdout.close()


class Forwarder:
    """Base: one forwarder (or none, for direct) in front of a server port."""

    name = "?"
    kind = "?"
    protocols = ("tcp",)
    no_udp = "no UDP forwarding"

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.errfile = None
        self.threads = THREADS  # workers of the next start()

    def command(self, listen, upstream, rundir, proto="tcp"):
        """Return the argv that forwards 127.0.0.1:listen to :upstream over proto."""
        raise NotImplementedError

    def start(self, listen, upstream, cpus, proto="tcp", threads=THREADS):
        """Start forwarding listen -> upstream over proto with threads workers.

        Raises RuntimeError when it does not forward.
        """
        self.threads = threads
        rundir = tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.workdir)
        self.errpath = os.path.join(rundir, "stderr.log")
        self.errfile = open(self.errpath, "w")
        self.proc = subprocess.Popen(
            self.command(listen, upstream, rundir, proto), stdin=subprocess.DEVNULL,
            stdout=self.errfile, stderr=self.errfile, preexec_fn=pin(cpus),
            start_new_session=True, cwd=rundir)
        if proto == "udp":
            ok = udp_echo_check(listen)
        else:
            ok = wait_port(listen) and echo_check(listen)
        if not ok:
            self.stop()
            raise RuntimeError(f"{self.name} does not forward {proto.upper()}: "
                               f"{self.tail_err()}")

    def tail_err(self):
        """Return the last lines the forwarder wrote on stderr."""
        try:
            with open(self.errpath) as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    def roots(self):
        """Return the pids whose process trees make up the forwarder."""
        return [self.proc.pid] if self.proc else []

    def stop(self):
        """Stop the forwarder; return what it reported ({} if nothing)."""
        if self.proc:
            stop_process(self.proc)
            self.proc = None
        if self.errfile:
            self.errfile.close()
            self.errfile = None
        return {}


class Direct(Forwarder):
    """No forwarder: the client talks to the server, the physical reference."""

    name = kind = "direct"
    protocols = ("tcp", "udp")

    def start(self, listen, upstream, cpus, proto="tcp", threads=THREADS):
        """Nothing to start."""

    def roots(self):
        """No process."""
        return []


class Sockfwd(Forwarder):
    """One sockfwd engine of one binary; a baseline build's entry carries its label."""

    kind = "sockfwd"

    def __init__(self, workdir, binary, engine, label=None):
        super().__init__(workdir)
        self.binary, self.engine, self.label = binary, engine, label
        self.name = f"sockfwd-{engine}" + (f"{LABEL_SEP}{label}" if label else "")

    def probe_udp(self):
        """Find out whether this engine of this binary forwards UDP (`-u`); set protocols.

        A build whose `-V` says "udp: ENGINES" answers directly. Otherwise
        start `sockfwd -u` for half a second: a build without UDP, or an
        engine that does not serve it, exits at once (usage error, exit 2)
        and its message becomes no_udp.
        """
        listed = version_list(run_cmd([self.binary, "-V"]), "udp")
        if listed is not None:
            if self.engine in listed:
                self.protocols = ("tcp", "udp")
            else:
                self.no_udp = (f"engine {self.engine} does not serve UDP "
                               f"(`sockfwd -V`: udp: {' '.join(listed) or 'none'})")
            return
        ports = []
        for _ in range(2):
            with socket.socket(type=socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        proc = subprocess.Popen(self.command(ports[0], ports[1], None, "udp"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            rc = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            rc = None
        stop_process(proc)
        out = proc.stdout.read().strip()
        proc.stdout.close()
        if rc is None:
            self.protocols = ("tcp", "udp")
            return
        last = out.splitlines()[-1] if out else ""
        # "2026-...Z sockfwd: error: unknown option '-u'": the message only.
        last = last.split(" sockfwd: ", 1)[-1]
        self.no_udp = f"`sockfwd -u -b {self.engine}` exits {rc}: {last}"

    def command(self, listen, upstream, rundir, proto="tcp"):
        """sockfwd with self.threads workers, not quiet: we want its stats line."""
        return [self.binary] + (["-u"] if proto == "udp" else []) + [
            "-b", self.engine, "-l", f"127.0.0.1:{listen}", "-r", f"127.0.0.1:{upstream}",
            "-j", str(self.threads)]

    def stop(self):
        """Stop sockfwd and parse its exit stats line."""
        super().stop()
        stats = {}
        try:
            with open(self.errpath) as f:
                for line in f:
                    if "stats:" not in line:
                        continue
                    for kv in line.split("stats:", 1)[1].split():
                        k, v = kv.split("=", 1)
                        if k == "spliced":
                            a, b = v.split("/")
                            stats["spliced_c2u"], stats["spliced_u2c"] = int(a), int(b)
                        else:
                            stats[k] = int(v)
        except (OSError, ValueError):
            pass
        return stats


def render(template, **values):
    """Fill a bench/configs template: @KEY@ is replaced by values[key]."""
    with open(os.path.join(TEMPLATES, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k.upper()}@", str(v))
    return text


class Haproxy(Forwarder):
    """HAProxy in TCP mode, with forced splice or none."""

    kind = "haproxy"
    no_udp = "no UDP forwarding in HAProxy 2.6 (Debian's; UDP is in the commercial edition)"

    def __init__(self, workdir, splice):
        super().__init__(workdir)
        self.splice = splice
        self.name = "haproxy-splice" if splice else "haproxy"

    def command(self, listen, upstream, rundir, proto="tcp"):
        """haproxy -db on a generated config."""
        splice = ("option splice-request\n    option splice-response"
                  if self.splice else "# no splice")
        cfg = os.path.join(rundir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(render("haproxy.cfg.in", listen=listen, upstream=upstream,
                           threads=self.threads, splice=splice, maxconn=(nofile() - 300) // 2))
        return ["haproxy", "-f", cfg, "-db"]


def nginx_stream_module():
    """Return the path of nginx's stream module, or None."""
    for p in ("/usr/lib/nginx/modules/ngx_stream_module.so",
              "/usr/share/nginx/modules/ngx_stream_module.so"):
        if os.path.exists(p):
            return p
    return None


class Nginx(Forwarder):
    """nginx's stream module (master + worker processes)."""

    name = kind = "nginx"
    protocols = ("tcp", "udp")

    def command(self, listen, upstream, rundir, proto="tcp"):
        """nginx in the foreground with its own prefix, pid and logs."""
        cfg = os.path.join(rundir, "nginx.conf")
        template = "nginx-udp.conf.in" if proto == "udp" else "nginx.conf.in"
        with open(cfg, "w") as f:
            f.write(render(template, listen=listen, upstream=upstream,
                           threads=self.threads, module=nginx_stream_module(), dir=rundir,
                           nofile=nofile()))
        return ["nginx", "-p", rundir, "-c", cfg, "-e", os.path.join(rundir, "error.log")]


class Socat(Forwarder):
    """socat, a process forked per connection."""

    name = kind = "socat"
    protocols = ("tcp", "udp")

    def command(self, listen, upstream, rundir, proto="tcp"):
        """socat with TCP_NODELAY on both sides like every other forwarder.

        UDP: a child per client address (fork), ended after 60 s without a
        datagram (-T, sockfwd's default --udp-timeout and nginx's
        proxy_timeout here).
        """
        if proto == "udp":
            return ["socat", "-T", "60", f"UDP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork",
                    f"UDP:127.0.0.1:{upstream}"]
        return ["socat", f"TCP-LISTEN:{listen},bind=127.0.0.1,reuseaddr,fork,backlog=4096,nodelay",
                f"TCP:127.0.0.1:{upstream},nodelay"]


def version_list(out, key):
    """The names after "KEY:" in a `sockfwd -V` line, up to ";" or ")"; None without KEY.

    "sockfwd 0.1.0 (engines: naive epoll splice; udp: epoll splice)" gives
    [naive, epoll, splice] for engines and [epoll, splice] for udp; a build
    from before UDP has no "udp:" part.
    """
    line = out.splitlines()[0] if out else ""
    if f"{key}:" not in line:
        return None
    return line.split(f"{key}:", 1)[1].split(";", 1)[0].split(")", 1)[0].split()


def sockfwd_engines(binary):
    """Return the engines `sockfwd -V` lists."""
    out = run_cmd([binary, "-V"])
    engines = version_list(out, "engines")
    if engines is None:
        sys.exit(f"bench: cannot read the engines from `{binary} -V`: {out!r}")
    return engines


def peers_installed():
    """Return the names of the peers installed here."""
    found = []
    if shutil.which("haproxy"):
        found += ["haproxy-splice", "haproxy"]
    if shutil.which("nginx") and nginx_stream_module():
        found.append("nginx")
    if shutil.which("socat"):
        found.append("socat")
    return found


def engine_plan(args):
    """Return the sockfwd entries to measure: a list of (binary, engine, label).

    Every engine of args.sockfwd (label None) in `-V` order, each followed
    by the same engine of args.baseline when that binary has it, then the
    engines only the baseline has.  args.engines (comma-separated) keeps
    those engines only, in both binaries; naming one that neither binary
    has ends the run with a message.
    """
    mine = sockfwd_engines(args.sockfwd)
    base = sockfwd_engines(args.baseline) if args.baseline else []
    if args.engines:
        want = [e for e in args.engines.split(",") if e]
        unknown = [e for e in want if e not in mine and e not in base]
        if unknown:
            have = " ".join(dict.fromkeys(mine + base))
            sys.exit(f"bench: no engine {', '.join(unknown)} in {args.sockfwd}"
                     + (f" or {args.baseline}" if args.baseline else "") + f" (engines: {have})")
        mine = [e for e in mine if e in want]
        base = [e for e in base if e in want]
    plan = []
    for e in mine:
        plan.append((args.sockfwd, e, None))
        if e in base:
            plan.append((args.baseline, e, args.baseline_label))
    plan += [(args.baseline, e, args.baseline_label) for e in base if e not in mine]
    if args.baseline:
        only_mine = [e for e in mine if e not in base]
        only_base = [e for e in base if e not in mine]
        if only_mine:
            log(f"{args.baseline_label} ({args.baseline}) lacks engine(s) "
                f"{' '.join(only_mine)}: measured in this build only")
        if only_base:
            log(f"engine(s) {' '.join(only_base)} only in {args.baseline_label}: "
                "measured in the baseline only")
    return plan


def make_forwarders(args, workdir):
    """Return the list of forwarders to measure, direct first.

    args.plan comes from engine_plan().  args.only keeps direct and the
    forwarders named; naming sockfwd-ENGINE keeps its baseline entry too.
    """
    fwds = [Direct(workdir)]
    fwds += [Sockfwd(workdir, binary, e, label) for binary, e, label in args.plan]
    peers = peers_installed()
    for name in peers:
        if name == "haproxy-splice":
            fwds.append(Haproxy(workdir, True))
        elif name == "haproxy":
            fwds.append(Haproxy(workdir, False))
        elif name == "nginx":
            fwds.append(Nginx(workdir))
        elif name == "socat":
            fwds.append(Socat(workdir))
    if args.only:
        keep = set(args.only.split(","))
        fwds = [f for f in fwds
                if f.name in keep or base_name(f.name) in keep or f.name == "direct"]
    if "udp" in args.protocols:
        for f in fwds:
            if isinstance(f, Sockfwd):
                f.probe_udp()
            if "udp" not in f.protocols:
                log(f"{f.name}: UDP workloads skipped: {f.no_udp}")
    return fwds
