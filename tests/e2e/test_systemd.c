/*
 * systemd: socket activation and sd_notify, against the real binary.
 *
 * Socket activation is driven two ways: by systemd's own
 * systemd-socket-activate (which binds, waits for a first client, then
 * execs sockfwd with LISTEN_FDS), and by this process passing sockets it
 * made itself (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set in the child
 * before exec), which controls every case of the matching rules. Bytes
 * are checked by hash; that sockfwd used the passed socket rather than a
 * socket of its own is checked in /proc (one listening socket on the
 * address, the very one passed). sd_notify is read from an AF_UNIX
 * datagram socket named by NOTIFY_SOCKET. The unit files are checked with
 * systemd-analyze verify (tests/systemd/verify-units.sh).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOCKET_ACTIVATE "/usr/bin/systemd-socket-activate"
#define SD_ARGS		48
#define SD_ENV		512
#define SD_FDS		4
#define NOTIFY_MS	10000 /* bound for one notification to arrive */
#define NOTIFY_MSGS	32
#define EXIT_MS		10000
#define PAR_CONNS	16

extern char **environ;

/* ---- spawning with an environment and passed descriptors ---- */

struct sd_child {
	const char *argv[SD_ARGS]; /* argv[0]: the program's path; NULL terminated */
	const char *env[8];	   /* NAME=VALUE added to the environment, NULL terminated */
	int fds[SD_FDS];	   /* passed as 3, 4, ... with LISTEN_FDS and LISTEN_PID */
	int nfds;
	const char *fdnames; /* LISTEN_FDNAMES, or NULL */
};

/* Is e one of the variables the child gets from us only? */
static int env_ours(const char *e)
{
	return strncmp(e, "LISTEN_", 7) == 0 || strncmp(e, "NOTIFY_SOCKET=", 14) == 0;
}

/* pid in decimal into buf (async-signal-safe: no snprintf after fork). */
static void put_pid(char *buf, pid_t pid)
{
	char tmp[16];
	int n = 0;

	do
		tmp[n++] = (char)('0' + pid % 10);
	while ((pid /= 10) > 0 && n < 15);
	while (n > 0)
		*buf++ = tmp[--n];
	*buf = '\0';
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void sd_child_exec(const struct sd_child *c, char **envp, char *pidvar, int devnull, int out,
			  int err, pid_t parent)
{
	struct sigaction sa;
	sigset_t none;
	int hi[SD_FDS];

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(125);
	/* Out of the way first: a passed descriptor may sit where another goes. */
	for (int i = 0; i < c->nfds; i++)
		if ((hi[i] = fcntl(c->fds[i], F_DUPFD, 100)) < 0)
			_exit(125);
	if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(125);
	for (int i = 0; i < c->nfds; i++)
		if (dup2(hi[i], 3 + i) < 0)
			_exit(125);
	close_range(3 + (unsigned)c->nfds, ~0u, 0);
	if (pidvar != NULL)
		put_pid(pidvar + strlen("LISTEN_PID="), getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(c->argv[0], (char *const *)c->argv, envp);
	_exit(127);
}

/*
 * Start c as the harness's fwd_spawn starts sockfwd (stdout and stderr
 * into memfds, SIGKILL when this process dies), with c's environment
 * and descriptors. Does not wait.
 */
static void sd_spawn(struct fwd *f, const struct sd_child *c)
{
	static char nfds[32], names[256], pidvar[40];
	static char *envp[SD_ENV];
	pid_t parent = getpid();
	int devnull, n = 0;

	sys_assert(access(c->argv[0], X_OK) == 0, "%s", c->argv[0]);
	for (char **e = environ; *e != NULL && n < SD_ENV - 16; e++)
		if (!env_ours(*e))
			envp[n++] = *e;
	for (int i = 0; i < 8 && c->env[i] != NULL; i++)
		envp[n++] = (char *)c->env[i];
	pidvar[0] = '\0';
	if (c->nfds > 0) {
		snprintf(nfds, sizeof(nfds), "LISTEN_FDS=%d", c->nfds);
		envp[n++] = nfds;
		snprintf(pidvar, sizeof(pidvar), "LISTEN_PID=%*s", 12, "");
		envp[n++] = pidvar;
		if (c->fdnames != NULL) {
			snprintf(names, sizeof(names), "LISTEN_FDNAMES=%s", c->fdnames);
			envp[n++] = names;
		}
	}
	envp[n] = NULL;

	devnull = fwd_outputs(f);
	f->family = AF_INET;
	f->pid = fork();
	sys_assert(f->pid >= 0, "fork");
	if (f->pid == 0)
		sd_child_exec(c, envp, c->nfds > 0 ? pidvar : NULL, devnull, f->out_fd, f->err_fd,
			      parent);
	close(devnull);
}

/* argv[0..] = sockfwd's path then the arguments in args (NULL terminated). */
static void sd_argv_sockfwd(struct sd_child *c, const char *const *args)
{
	static char bin[4096];
	int n = 0;

	sys_assert(realpath(fwd_bin(), bin) != NULL, "sockfwd binary %s", fwd_bin());
	c->argv[n++] = bin;
	for (int i = 0; args[i] != NULL; i++) {
		cr_assert(n < SD_ARGS - 1, "too many arguments");
		c->argv[n++] = args[i];
	}
	c->argv[n] = NULL;
}

/* Wait (bounded) for sockfwd's start-up line: every listener is open. */
static void sd_wait_started(struct fwd *f)
{
	if (fwd_log_wait(f, E2E_READY_MS, "listening on", NULL))
		return;
	fwd_wait(f, 0);
	cr_assert_fail("sockfwd did not start (%s); stderr:\n%s", fwd_status_str(f),
		       fwd_stderr_tail(f));
}

/* Wait (bounded) for f to exit; its exit status (fails on a signal or time-out). */
static int sd_exit_status(struct fwd *f)
{
	if (!fwd_wait(f, EXIT_MS)) {
		kill(f->pid, SIGKILL);
		fwd_wait(f, EXIT_MS);
		cr_assert_fail("sockfwd still runs after %d ms; stderr:\n%s", EXIT_MS,
			       fwd_stderr_tail(f));
	}
	cr_assert(WIFEXITED(f->status), "sockfwd %s; stderr:\n%s", fwd_status_str(f),
		  fwd_stderr_tail(f));
	return WEXITSTATUS(f->status);
}

/* ---- sockets made here ---- */

/*
 * A TCP socket of the test bound to the loopback address of family, port;
 * listening when backlog >= 0.
 */
static int test_listener_af(int family, int port, int backlog)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc;

	sys_assert(fd >= 0, "socket");
	sys_assert(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0,
		   "SO_REUSEADDR");
	if (family == AF_INET6) {
		sin6.sin6_addr = in6addr_loopback;
		sin6.sin6_port = htons((uint16_t)port);
		rc = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6));
	} else {
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons((uint16_t)port);
		rc = bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	}
	sys_assert(rc == 0, "bind loopback port %d", port);
	if (backlog >= 0)
		sys_assert(listen(fd, backlog) == 0, "listen");
	return fd;
}

static int test_listener(int port, int backlog) { return test_listener_af(AF_INET, port, backlog); }

static unsigned long sock_inode(int fd)
{
	struct stat st;

	sys_assert(fstat(fd, &st) == 0, "fstat");
	return (unsigned long)st.st_ino;
}

/* The child listens on port through exactly the one socket ino, whatever its threads. */
static void assert_only_socket(struct fwd *f, int port, unsigned long ino)
{
	unsigned long got[16];
	int n = proc_listen_inodes(f->pid, port, got, 16);

	cr_assert(n >= 1, "sockfwd holds no listening socket on port %d", port);
	for (int i = 0; i < n && i < 16; i++)
		cr_assert(got[i] == ino,
			  "sockfwd listens on port %d through socket %lu besides the one passed "
			  "(%lu): it bound the address itself",
			  port, got[i], ino);
}

/* The inode of the one listening socket the child holds on port (several fds). */
static unsigned long one_listener(struct fwd *f, int port)
{
	unsigned long got[16];
	int n = proc_listen_inodes(f->pid, port, got, 16);

	cr_assert(n >= 1, "sockfwd holds no listening socket on port %d", port);
	assert_only_socket(f, port, got[0]);
	return got[0];
}

/* Connect to port, retrying while refused (the socket is not bound yet), bounded. */
static int connect_retry(int port)
{
	uint64_t deadline = now_ms() + E2E_READY_MS;

	for (int i = 0; i < 100000; i++) {
		int fd = tcp_connect_try(AF_INET, port);

		if (fd >= 0)
			return fd;
		cr_assert(fd == -ECONNREFUSED && now_ms() < deadline, "connect to port %d: %s",
			  port, strerror(-fd));
		sleep_ms(10);
	}
	cr_assert_fail("connect to port %d: no luck", port);
	return -1;
}

/* 4 MiB sent and echoed on fd at once, then half-closed: intact, then EOF. */
static void echo_bulk_fd(int fd, uint64_t seed)
{
	const uint64_t len = 4 * MiB;
	struct sender snd;
	uint64_t h, n;

	sender_start(&snd, fd, seed, len, 1);
	n = recv_to_eof(fd, &h, len);
	sender_join(&snd);
	cr_assert_eq(n, len, "echoed %llu of %llu bytes", (unsigned long long)n,
		     (unsigned long long)len);
	cr_assert(h == gen_hash(seed, len), "the echo differs from what was sent");
}

/*
 * PAR_CONNS connections opened at once, then each echoes 64 KiB: the
 * workers share one passed socket, and every client is accepted once.
 */
static void echo_parallel(int port, uint64_t seed)
{
	int fds[PAR_CONNS];

	for (int i = 0; i < PAR_CONNS; i++)
		fds[i] = tcp_connect(AF_INET, port);
	for (int i = 0; i < PAR_CONNS; i++) {
		echo_roundtrip(fds[i], seed + (uint64_t)i, 64 * KiB);
		close(fds[i]);
	}
}

/* ---- systemd-socket-activate ---- */

/*
 * systemd-socket-activate -l 127.0.0.1:L0 [--fdname=NAME] sockfwd args...
 * started; the first client (which makes it exec sockfwd) is returned.
 */
static int activate(struct fwd *f, int port, const char *fdname, const char *const *args)
{
	struct sd_child c = { .nfds = 0 };
	static char listen[64], name[128];
	static char bin[4096];
	int n = 0, fd;

	sys_assert(access(SOCKET_ACTIVATE, X_OK) == 0,
		   "%s (Debian package systemd; tools/install-deps.sh test)", SOCKET_ACTIVATE);
	sys_assert(realpath(fwd_bin(), bin) != NULL, "sockfwd binary %s", fwd_bin());
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	c.argv[n++] = SOCKET_ACTIVATE;
	c.argv[n++] = "-l";
	c.argv[n++] = listen;
	if (fdname != NULL) {
		snprintf(name, sizeof(name), "--fdname=%s", fdname);
		c.argv[n++] = name;
	}
	c.argv[n++] = bin;
	for (int i = 0; args[i] != NULL; i++) {
		cr_assert(n < SD_ARGS - 1, "too many arguments");
		c.argv[n++] = args[i];
	}
	c.argv[n] = NULL;
	sd_spawn(f, &c);
	f->port = port;
	fd = connect_retry(port);
	return fd;
}

/*
 * Through systemd-socket-activate, named for rule "web" (fdname "web")
 * or matched by address (fdname NULL: systemd gives no name): the first
 * client's 4 MiB echo arrives intact, sockfwd holds no socket of its own
 * on the passed address (one listening socket there, its workers share
 * it) while it binds the address not passed (one socket per worker), and
 * parallel clients are each served.
 */
static void activated(const char *engine, const char *fdname)
{
	static const char text[] =
		"rules = {\n"
		"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"  other = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"};\n";
	struct fwd_conf conf = { .engine = engine, .nlisten = 2 };
	const char *args[] = { "-c", NULL, "-b", engine, "-j", "3", NULL };
	struct srv s;
	struct fwd f;
	unsigned long got[16];
	int fd, n;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	conf.up[0] = s.port;
	conf_write(&conf, text);
	args[1] = conf.path;
	fd = activate(&f, conf.lport[0], fdname, args);
	echo_bulk_fd(fd, 11);
	close(fd);
	sd_wait_started(&f);
	one_listener(&f, conf.lport[0]);
	n = proc_listen_inodes(f.pid, conf.lport[1], got, 16);
	cr_assert_eq(n, 3, "sockfwd holds %d sockets on its own address, expected one per worker",
		     n);
	echo_parallel(conf.lport[0], 100);
	echo_once(AF_INET, conf.lport[1], 12, 256 * KiB);
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&conf);
}

ENGINE_TEST(systemd, activate_named, 60) { activated(engine, "web"); }

ENGINE_TEST(systemd, activate_by_address, 60) { activated(engine, NULL); }

/*
 * systemd-socket-activate -d passes a UDP socket: exit 2 naming it,
 * rather than accepting on something that is not a TCP listener.
 */
Test(systemd, activate_datagram_refused, .timeout = 30)
{
	static char listen[64], bin[4096], err[8192];
	struct sd_child c = { .nfds = 0 };
	int port = pick_port(AF_INET), fd, st;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct fwd f;

	sys_assert(realpath(fwd_bin(), bin) != NULL, "sockfwd binary %s", fwd_bin());
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	c.argv[0] = SOCKET_ACTIVATE;
	c.argv[1] = "-d";
	c.argv[2] = "-l";
	c.argv[3] = listen;
	c.argv[4] = bin;
	c.argv[5] = "-l";
	c.argv[6] = listen;
	c.argv[7] = "-r";
	c.argv[8] = "127.0.0.1:9";
	c.argv[9] = NULL;
	sd_spawn(&f, &c);
	/* A datagram wakes it up: retry until one reached it and sockfwd ran. */
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	sys_assert(fd >= 0, "socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	for (int i = 0; i < 1000 && !fwd_wait(&f, 10); i++)
		sendto(fd, "x", 1, 0, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	st = sd_exit_status(&f);
	fwd_stderr(&f, err, sizeof(err));
	cr_assert_eq(st, 2, "a UDP socket passed: exit %d, expected 2; stderr:\n%s", st, err);
	cr_assert(strstr(err, "not a TCP stream socket") != NULL,
		  "no message about the UDP socket; stderr:\n%s", err);
	fwd_release(&f);
}

/* ---- sockets passed by this process ---- */

/*
 * Sockets passed by name and by address next to one bound by sockfwd,
 * over reloads (rule a has max_conns, which the uring engine accepts for
 * after a poll rather than with a multishot accept): a reload adding a rule keeps the passed
 * sockets (the same ones, still forwarding); a reload whose file no longer has a listener for a
 * passed socket fails, and the running rules keep serving.
 */
ENGINE_TEST(systemd, passed_and_reload, 90)
{
	static const char text[] =
		"rules = {\n"
		"  a = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\";\n"
		"        max_conns = 100; };\n"
		"  b = { listen = [ \"127.0.0.1:@L1\", \"127.0.0.1:@L2\" ];\n"
		"        upstream = \"127.0.0.1:@U0\"; };\n"
		"};\n";
	static const char more[] =
		"rules = {\n"
		"  a = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\";\n"
		"        max_conns = 100; };\n"
		"  b = { listen = [ \"127.0.0.1:@L1\", \"127.0.0.1:@L2\" ];\n"
		"        upstream = \"127.0.0.1:@U0\"; };\n"
		"  c = { listen = \"127.0.0.1:@L3\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"};\n";
	static const char fewer[] = "rules = {\n"
				    "  b = { listen = [ \"127.0.0.1:@L1\", \"127.0.0.1:@L2\" ];\n"
				    "        upstream = \"127.0.0.1:@U0\"; };\n"
				    "};\n";
	struct fwd_conf conf = { .engine = engine, .nlisten = 4 };
	const char *args[] = { "-c", NULL, "-b", engine, "-j", "2", NULL };
	struct sd_child c = { .nfds = 2, .fdnames = "a:whatever" };
	unsigned long ino0, ino2;
	int keep, nodelay = 0;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	conf.up[0] = s.port;
	conf_write(&conf, text);
	args[1] = conf.path;
	sd_argv_sockfwd(&c, args);
	c.fds[0] = test_listener(conf.lport[0], 128);
	c.fds[1] = test_listener(conf.lport[2], 128);
	ino0 = sock_inode(c.fds[0]);
	ino2 = sock_inode(c.fds[1]);
	keep = dup(c.fds[0]);
	sys_assert(keep >= 0, "dup");
	sd_spawn(&f, &c);
	close(c.fds[0]);
	close(c.fds[1]);
	sd_wait_started(&f);
	/* Set on the passed socket, as on sockfwd's own: accepted sockets inherit it. */
	cr_assert_eq(
		getsockopt(keep, IPPROTO_TCP, TCP_NODELAY, &nodelay, &(socklen_t){ sizeof(int) }),
		0);
	cr_assert_neq(nodelay, 0, "no TCP_NODELAY on the passed listener");
	close(keep);
	assert_only_socket(&f, conf.lport[0], ino0);
	assert_only_socket(&f, conf.lport[2], ino2);
	cr_assert_eq(proc_listen_inodes(f.pid, conf.lport[1], NULL, 0), 2,
		     "the address not passed: not one socket per worker");
	echo_parallel(conf.lport[0], 200);
	echo_parallel(conf.lport[2], 300);
	echo_once(AF_INET, conf.lport[1], 21, 256 * KiB);

	conf_write(&conf, more);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	fwd_wait_port(&f, conf.lport[3], 1, E2E_READY_MS);
	assert_only_socket(&f, conf.lport[0], ino0);
	assert_only_socket(&f, conf.lport[2], ino2);
	echo_parallel(conf.lport[0], 400);
	echo_parallel(conf.lport[2], 500);
	echo_once(AF_INET, conf.lport[3], 22, 256 * KiB);

	conf_write(&conf, fewer);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, E2E_READY_MS, "reload failed", "socket 'a'"),
		  "a reload leaving passed socket 'a' unused did not fail; stderr:\n%s",
		  fwd_stderr_tail(&f));
	assert_only_socket(&f, conf.lport[0], ino0);
	echo_once(AF_INET, conf.lport[0], 23, 256 * KiB);
	echo_once(AF_INET, conf.lport[3], 24, 256 * KiB);
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&conf);
}

/*
 * An IPv6 socket passed without a name is matched by address to an IPv6
 * listener ([::1]:P) and forwards; a second one on 127.0.0.1:P, the same
 * port in the other family, is another listener's.
 */
Test(systemd, passed_ipv6, .timeout = 60)
{
	struct sd_child c = { .nfds = 2 };
	int p = pick_port(AF_INET6);
	char l6[64], l4[64], up[64];
	const char *args[] = { "-l", l6, "-l", l4, "-r", up, "-j", "2", NULL };
	unsigned long ino6, ino4;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	snprintf(l6, sizeof(l6), "[::1]:%d", p);
	snprintf(l4, sizeof(l4), "127.0.0.1:%d", p);
	srv_addr(&s, up, sizeof(up));
	sd_argv_sockfwd(&c, args);
	c.fds[0] = test_listener_af(AF_INET6, p, 128);
	c.fds[1] = test_listener_af(AF_INET, p, 128);
	ino6 = sock_inode(c.fds[0]);
	ino4 = sock_inode(c.fds[1]);
	sd_spawn(&f, &c);
	close(c.fds[0]);
	close(c.fds[1]);
	sd_wait_started(&f);
	{
		unsigned long got[16];
		int n = proc_listen_inodes(f.pid, p, got, 16), seen6 = 0, seen4 = 0;

		for (int i = 0; i < n && i < 16; i++) {
			cr_assert(got[i] == ino6 || got[i] == ino4,
				  "sockfwd listens on port %d through a socket of its own", p);
			seen6 |= got[i] == ino6;
			seen4 |= got[i] == ino4;
		}
		cr_assert(seen6 && seen4, "sockfwd does not hold both passed sockets on port %d",
			  p);
	}
	echo_once(AF_INET6, p, 41, 256 * KiB);
	echo_once(AF_INET, p, 42, 256 * KiB);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * Run sockfwd ARGS... with the test's listening sockets on ports[] passed
 * (names "n1:n2..."), while a plain listener of the test holds hold_port
 * (0: none) so that binding anything there would fail with "in use":
 * the exit status, stderr into err.
 */
static int run_passed(const char *const *args, const int *ports, int nports, const char *names,
		      int hold_port, char *err, size_t errlen)
{
	struct sd_child c = { .nfds = nports, .fdnames = names };
	struct fwd f;
	int hold = hold_port ? test_listener(hold_port, 16) : -1, st;

	sd_argv_sockfwd(&c, args);
	for (int i = 0; i < nports; i++)
		c.fds[i] = test_listener(ports[i], 16);
	sd_spawn(&f, &c);
	for (int i = 0; i < nports; i++)
		close(c.fds[i]);
	st = sd_exit_status(&f);
	fwd_stderr(&f, err, errlen);
	fwd_release(&f);
	if (hold >= 0)
		close(hold);
	return st;
}

/*
 * A passed socket that matches no listener (neither its name nor its
 * address) stops the start with exit 2 naming it, before sockfwd binds
 * anything (the address it would bind is held here: binding first would
 * end in "address in use", exit 1).
 */
Test(systemd, passed_unmatched, .timeout = 30)
{
	static char err[8192];
	int p = pick_port(AF_INET), q = pick_port(AF_INET), st;
	char lopt[64], needle[64];
	const char *args[] = { "-l", lopt, "-r", "127.0.0.1:9", NULL };

	while (q == p)
		q = pick_port(AF_INET);
	snprintf(lopt, sizeof(lopt), "127.0.0.1:%d", p);
	st = run_passed(args, &q, 1, "stray", p, err, sizeof(err));
	snprintf(needle, sizeof(needle), "127.0.0.1:%d", q);
	cr_assert_eq(st, 2, "exit %d, expected 2; stderr:\n%s", st, err);
	cr_assert(strstr(err, "'stray'") != NULL && strstr(err, needle) != NULL,
		  "the message does not name socket 'stray' at %s; stderr:\n%s", needle, err);
}

/*
 * A socket named for rule "web" but bound where rule "api" listens: exit 2
 * naming the socket, its address and web's.
 */
Test(systemd, passed_name_mismatch, .timeout = 30)
{
	static const char text[] =
		"rules = {\n"
		"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:9\"; };\n"
		"  api = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:9\"; };\n"
		"};\n";
	static char err[8192];
	struct fwd_conf conf = { .nlisten = 2 };
	const char *args[] = { "-c", NULL, NULL };
	char web[64], api[64];
	int st;

	conf_write(&conf, text);
	args[1] = conf.path;
	st = run_passed(args, &conf.lport[1], 1, "web", conf.lport[0], err, sizeof(err));
	snprintf(web, sizeof(web), "127.0.0.1:%d", conf.lport[0]);
	snprintf(api, sizeof(api), "127.0.0.1:%d", conf.lport[1]);
	cr_assert_eq(st, 2, "exit %d, expected 2; stderr:\n%s", st, err);
	cr_assert(strstr(err, "'web'") != NULL && strstr(err, web) != NULL &&
			  strstr(err, api) != NULL,
		  "the message does not name socket 'web', %s and %s; stderr:\n%s", api, web, err);
	conf_remove(&conf);
}

/* Two sockets for one listener, or one bound but not listening: exit 2. */
Test(systemd, passed_bad_sockets, .timeout = 30)
{
	static char err[8192];
	struct sd_child c = { .nfds = 1 };
	int p = pick_port(AF_INET), st;
	char lopt[64];
	const char *args[] = { "-l", lopt, "-r", "127.0.0.1:9", NULL };
	struct fwd f;

	snprintf(lopt, sizeof(lopt), "127.0.0.1:%d", p);
	sd_argv_sockfwd(&c, args);
	c.fds[0] = test_listener(p, -1);
	sd_spawn(&f, &c);
	close(c.fds[0]);
	st = sd_exit_status(&f);
	fwd_stderr(&f, err, sizeof(err));
	fwd_release(&f);
	cr_assert_eq(st, 2, "a socket not listening: exit %d, expected 2; stderr:\n%s", st, err);
	cr_assert(strstr(err, "not listening") != NULL, "stderr:\n%s", err);

	/* The same address twice: the kernel allows it with SO_REUSEPORT. */
	{
		struct sd_child d = { .nfds = 2 };
		int one = 1;
		struct sockaddr_in sin = { .sin_family = AF_INET };

		sd_argv_sockfwd(&d, args);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons((uint16_t)p);
		for (int i = 0; i < 2; i++) {
			d.fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			sys_assert(d.fds[i] >= 0, "socket");
			sys_assert(setsockopt(d.fds[i], SOL_SOCKET, SO_REUSEPORT, &one,
					      sizeof(one)) == 0,
				   "SO_REUSEPORT");
			sys_assert(bind(d.fds[i], (struct sockaddr *)&sin, sizeof(sin)) == 0,
				   "bind");
			sys_assert(listen(d.fds[i], 16) == 0, "listen");
		}
		sd_spawn(&f, &d);
		close(d.fds[0]);
		close(d.fds[1]);
		st = sd_exit_status(&f);
		fwd_stderr(&f, err, sizeof(err));
		fwd_release(&f);
		cr_assert_eq(st, 2, "two sockets for one address: exit %d, expected 2; stderr:\n%s",
			     st, err);
		cr_assert(strstr(err, "both for") != NULL, "stderr:\n%s", err);
	}
}

/* ---- sd_notify ---- */

struct notify {
	int fd;
	char path[64]; /* abstract: "@..." as NOTIFY_SOCKET writes it */
	char env[96];
	char msgs[NOTIFY_MSGS][512];
	int n;
};

static void notify_open(struct notify *ns)
{
	static int seq;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len;

	snprintf(ns->path, sizeof(ns->path), "@sockfwd-e2e-%d-%d", (int)getpid(), seq++);
	snprintf(ns->env, sizeof(ns->env), "NOTIFY_SOCKET=%s", ns->path);
	/* Abstract: a leading NUL in sun_path, no file to clean up. */
	memcpy(sun.sun_path + 1, ns->path + 1, strlen(ns->path) - 1);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ns->path));
	ns->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	sys_assert(ns->fd >= 0, "socket AF_UNIX");
	sys_assert(bind(ns->fd, (struct sockaddr *)&sun, len) == 0, "bind %s", ns->path);
	ns->n = 0;
}

/*
 * The next notification (one datagram) within NOTIFY_MS; fails the test
 * when none comes or sockfwd exits. Returns it, NUL terminated.
 */
static const char *notify_next(struct notify *ns, struct fwd *f)
{
	uint64_t deadline = now_ms() + NOTIFY_MS;
	char *m;

	cr_assert(ns->n < NOTIFY_MSGS, "too many notifications");
	m = ns->msgs[ns->n];
	for (int i = 0; i < 100000; i++) {
		struct pollfd p = { .fd = ns->fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 50) > 0) {
			r = recv(ns->fd, m, sizeof(ns->msgs[0]) - 1, MSG_DONTWAIT);
			sys_assert(r >= 0 || errno == EAGAIN, "recv notify");
			if (r >= 0) {
				m[r] = '\0';
				ns->n++;
				return m;
			}
		}
		fwd_wait(f, 0);
		cr_assert(!f->exited, "sockfwd exited (%s) before notifying; stderr:\n%s",
			  fwd_status_str(f), fwd_stderr_tail(f));
		cr_assert(now_ms() < deadline, "no notification within %d ms; stderr:\n%s",
			  NOTIFY_MS, fwd_stderr_tail(f));
	}
	cr_assert_fail("no notification");
	return NULL;
}

/* Does message m hold the line "line" (a whole line)? */
static int has_line(const char *m, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = m; p != NULL && *p != '\0';) {
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return 1;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return 0;
}

/* The value of "KEY=" in message m, or NULL (a static copy). */
static const char *field(const char *m, const char *key)
{
	static char buf[512];
	size_t n = strlen(key);

	for (const char *p = m; p != NULL && *p != '\0';) {
		if (strncmp(p, key, n) == 0 && p[n] == '=') {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p - n - 1) : strlen(p + n + 1);

			snprintf(buf, sizeof(buf), "%.*s", (int)len, p + n + 1);
			return buf;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return NULL;
}

static uint64_t mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * SIGHUP, then the next two notifications are RELOADING=1 (with a
 * MONOTONIC_USEC taken after the signal was sent) and READY=1; returns
 * READY's STATUS (a static copy, "" when none).
 */
static const char *notify_reload(struct notify *ns, struct fwd *f)
{
	static char status[512];
	uint64_t before = mono_usec(), at;
	const char *m, *v;
	char *end;

	sys_assert(kill(f->pid, SIGHUP) == 0, "kill SIGHUP");
	m = notify_next(ns, f);
	cr_assert(has_line(m, "RELOADING=1"), "after SIGHUP: '%s', expected RELOADING=1", m);
	v = field(m, "MONOTONIC_USEC");
	cr_assert(v != NULL, "RELOADING=1 without MONOTONIC_USEC: '%s'", m);
	at = strtoull(v, &end, 10);
	cr_assert(*end == '\0' && at >= before && at <= mono_usec(),
		  "MONOTONIC_USEC=%s is not a CLOCK_MONOTONIC time of this reload", v);
	m = notify_next(ns, f);
	cr_assert(has_line(m, "READY=1"), "after RELOADING=1: '%s', expected READY=1", m);
	v = field(m, "STATUS");
	snprintf(status, sizeof(status), "%s", v ? v : "");
	return status;
}

/*
 * The notifications of a whole life: READY=1 (with a STATUS) once
 * listening, and the listener then accepts at once; RELOADING=1 and
 * READY=1 around a SIGHUP, after which the added rule accepts at once;
 * the same around a SIGHUP with an invalid file (READY=1 again: the old
 * rules keep serving, and STATUS says the reload failed); STOPPING=1 at
 * SIGTERM (with --drain-timeout: at the start of the drain, and only
 * once), then exit 0.
 */
ENGINE_TEST(systemd, notify_lifecycle, 60)
{
	static const char one[] = "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; }; };\n";
	static const char two[] =
		"rules = {\n"
		"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"  api = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"};\n";
	struct fwd_conf conf = { .engine = engine, .nlisten = 2 };
	const char *args[] = { "-c", NULL, "-b", engine, "-j", "2", "--drain-timeout", "5s", NULL };
	struct sd_child c = { .nfds = 0 };
	struct notify ns;
	const char *m, *status;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	conf.up[0] = s.port;
	notify_open(&ns);
	for (int attempt = 0;; attempt++) {
		conf_pick(&conf);
		conf_write(&conf, one);
		args[1] = conf.path;
		sd_argv_sockfwd(&c, args);
		c.env[0] = ns.env;
		sd_spawn(&f, &c);
		/* Picked ports can be taken meanwhile: try others (bounded). */
		if (fwd_wait(&f, 300) && WIFEXITED(f.status) && WEXITSTATUS(f.status) == 1 &&
		    attempt < 10) {
			fwd_release(&f);
			continue;
		}
		break;
	}
	m = notify_next(&ns, &f);
	cr_assert(has_line(m, "READY=1"), "first notification '%s', expected READY=1", m);
	cr_assert(field(m, "STATUS") != NULL, "READY=1 without STATUS: '%s'", m);
	echo_once(AF_INET, conf.lport[0], 31, 256 * KiB);

	conf_write(&conf, two);
	status = notify_reload(&ns, &f);
	cr_assert(strstr(status, "reload failed") == NULL, "STATUS after a good reload: %s",
		  status);
	echo_once(AF_INET, conf.lport[1], 32, 256 * KiB);

	conf_write(&conf, "rules = { web = { listen = ; }; };\n");
	status = notify_reload(&ns, &f);
	cr_assert(strstr(status, "reload failed") != NULL,
		  "STATUS after a failed reload does not say so: '%s'", status);
	echo_once(AF_INET, conf.lport[0], 33, 256 * KiB);
	echo_once(AF_INET, conf.lport[1], 34, 256 * KiB);

	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	m = notify_next(&ns, &f);
	cr_assert(has_line(m, "STOPPING=1"), "after SIGTERM: '%s', expected STOPPING=1", m);
	cr_assert_eq(sd_exit_status(&f), 0, "exit after SIGTERM; stderr:\n%s", fwd_stderr_tail(&f));
	{
		char extra[512];
		ssize_t r = recv(ns.fd, extra, sizeof(extra) - 1, MSG_DONTWAIT);

		if (r >= 0)
			extra[r] = '\0';
		cr_assert(r < 0, "a notification after STOPPING=1: '%s'", r >= 0 ? extra : "");
	}
	fwd_release(&f);
	close(ns.fd);
	srv_stop(&s);
	conf_remove(&conf);
}

/* ---- the unit files ---- */

/*
 * dist/systemd/ passes systemd-analyze verify without a warning, and has
 * what the issue asks of it (tests/systemd/verify-units.sh, which also
 * shows that a broken unit does not pass).
 */
Test(systemd, units_verify, .timeout = 120)
{
	static char out[16384];
	static char bin[4096];
	struct sd_child c = { .nfds = 0 };
	struct fwd f;
	int st;

	sys_assert(realpath(fwd_bin(), bin) != NULL, "sockfwd binary %s", fwd_bin());
	c.argv[0] = "/bin/sh";
	c.argv[1] = "tests/systemd/verify-units.sh";
	c.argv[2] = bin;
	c.argv[3] = "dist/systemd";
	c.argv[4] = NULL;
	sd_spawn(&f, &c);
	st = sd_exit_status(&f);
	fwd_stdout(&f, out, sizeof(out));
	cr_assert_eq(st, 0, "verify-units.sh: exit %d\n%s\n%s", st, out, fwd_stderr_tail(&f));
	fwd_release(&f);
}
