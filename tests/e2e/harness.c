/*
 * End-to-end harness: the sockfwd child process, /proc readers, client
 * socket helpers and small upstream servers. See harness.h.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK		  (256 * 1024)
#define SRV_STACK	  (256 * 1024)
#define SRV_IO_TIMEOUT_MS 30000
#define SRV_MAX_BYTES	  (1ull << 32)
#define MAX_ARGS	  48

/* ---- time ---- */

void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- data ---- */

void gen_init(struct gen *g, uint64_t seed)
{
	/* Spread the seed; xorshift needs a non-zero state. */
	g->s = (seed + 1) * 0x9e3779b97f4a7c15ull;
	if (g->s == 0)
		g->s = 0x2545f4914f6cdd1dull;
	g->word = 0;
	g->avail = 0;
}

static uint64_t gen_next(struct gen *g)
{
	uint64_t x = g->s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	g->s = x;
	return x;
}

void gen_fill(struct gen *g, void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n > 0 && g->avail > 0) {
		*p++ = (unsigned char)g->word;
		g->word >>= 8;
		g->avail--;
		n--;
	}
	while (n >= 8) {
		uint64_t w = htole64(gen_next(g));

		memcpy(p, &w, 8);
		p += 8;
		n -= 8;
	}
	if (n > 0) {
		g->word = gen_next(g);
		g->avail = 8;
		while (n > 0) {
			*p++ = (unsigned char)g->word;
			g->word >>= 8;
			g->avail--;
			n--;
		}
	}
}

uint64_t hash_update(uint64_t h, const void *buf, size_t n)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t gen_hash(uint64_t seed, uint64_t len)
{
	unsigned char *buf = malloc(CHUNK);
	struct gen g;
	uint64_t h = HASH_INIT;

	cr_assert(buf != NULL, "malloc failed");
	gen_init(&g, seed);
	while (len > 0) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;

		gen_fill(&g, buf, n);
		h = hash_update(h, buf, n);
		len -= n;
	}
	free(buf);
	return h;
}

uint64_t halfclose_seed(uint64_t hash, uint64_t len)
{
	return hash ^ (len * 0x9e3779b97f4a7c15ull);
}

/* ---- the sockfwd process ---- */

/* The forwarder of the running test, for failure messages. */
static struct fwd *cur_fwd;

const char *fwd_note(void)
{
	static char buf[2048];

	/* Only on a failure path: give a dying child a moment to become waitable. */
	if (cur_fwd == NULL || !fwd_wait(cur_fwd, 300))
		return "";
	snprintf(buf, sizeof(buf), " [sockfwd %s; stderr: %.1500s]", fwd_status_str(cur_fwd),
		 fwd_stderr_tail(cur_fwd));
	return buf;
}

const char *fwd_bin(void)
{
	const char *b = getenv("SOCKFWD_BIN");

	return b && *b ? b : "build/sockfwd";
}

/*
 * Where a forwarder's stderr goes: a memfd, or with SOCKFWD_TEST_STDERR_DIR
 * set (debugging a failure that kills the test before it can print), a
 * file there named by test process and forwarder, kept after the test.
 */
static int stderr_fd(void)
{
	static int seq;
	const char *dir = getenv("SOCKFWD_TEST_STDERR_DIR");
	char path[4096];
	int fd;

	if (dir == NULL || *dir == '\0')
		return memfd_create("sockfwd-stderr", MFD_CLOEXEC);
	snprintf(path, sizeof(path), "%s/sockfwd-%d-%d.err", dir, (int)getpid(), seq++);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	sys_assert(fd >= 0, "open %s", path);
	return fd;
}

int fwd_outputs(struct fwd *f)
{
	int devnull;

	memset(f, 0, sizeof(*f));
	f->out_fd = memfd_create("sockfwd-stdout", MFD_CLOEXEC);
	sys_assert(f->out_fd >= 0, "memfd_create");
	f->err_fd = stderr_fd();
	sys_assert(f->err_fd >= 0, "memfd_create");
	/*
	 * O_APPEND: a memfd's shared file offset is not updated atomically, so
	 * lines written by two threads at once could land on the same offset.
	 */
	sys_assert(fcntl(f->out_fd, F_SETFL, O_APPEND) == 0, "fcntl O_APPEND");
	sys_assert(fcntl(f->err_fd, F_SETFL, O_APPEND) == 0, "fcntl O_APPEND");
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sys_assert(devnull >= 0, "open /dev/null");
	return devnull;
}

/* In the child between fork and exec: async-signal-safe calls only. */
static void child_exec(const char *bin, char *const *args, int devnull, int out, int err,
		       rlim_t nofile, pid_t parent)
{
	struct sigaction sa;
	sigset_t none;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(125);
	if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(125);
	close_range(3, ~0u, 0);
	if (nofile > 0) {
		struct rlimit rl = { .rlim_cur = nofile, .rlim_max = nofile };

		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			_exit(126);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(bin, args);
	_exit(127);
}

void fwd_spawn(struct fwd *f, const char *const *argv, rlim_t nofile)
{
	const char *bin = fwd_bin();
	char *args[MAX_ARGS];
	pid_t parent = getpid();
	int devnull, n;

	sys_assert(access(bin, X_OK) == 0, "sockfwd binary %s (set SOCKFWD_BIN)", bin);
	args[0] = (char *)bin;
	for (n = 1; argv[n] != NULL; n++) {
		cr_assert(n < MAX_ARGS - 1, "too many arguments");
		args[n] = (char *)argv[n];
	}
	args[n] = NULL;

	devnull = fwd_outputs(f);
	f->pid = fork();
	sys_assert(f->pid >= 0, "fork");
	if (f->pid == 0)
		child_exec(bin, args, devnull, f->out_fd, f->err_fd, nofile, parent);
	close(devnull);
}

int fwd_wait(struct fwd *f, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;

	if (f->exited)
		return 1;
	for (int i = 0; i < 1000000; i++) {
		int st;
		pid_t r = waitpid(f->pid, &st, WNOHANG);

		sys_assert(r >= 0, "waitpid(%d)", (int)f->pid);
		if (r == f->pid) {
			f->exited = 1;
			f->status = st;
			return 1;
		}
		if (now_ms() >= deadline)
			break;
		sleep_ms(5);
	}
	return 0;
}

/* Read a memfd from its start. */
static size_t memfd_read(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	for (int i = 0; i < 4096 && len + 1 < cap; i++) {
		ssize_t r = pread(fd, buf + len, cap - 1 - len, (off_t)len);

		if (r < 0 && errno == EINTR)
			continue;
		sys_assert(r >= 0, "pread");
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	return len;
}

size_t fwd_stderr(const struct fwd *f, char *buf, size_t cap)
{
	return memfd_read(f->err_fd, buf, cap);
}

size_t fwd_stdout(const struct fwd *f, char *buf, size_t cap)
{
	return memfd_read(f->out_fd, buf, cap);
}

const char *fwd_stderr_tail(const struct fwd *f)
{
	static char buf[1 << 20];
	size_t len;

	if (f->err_fd <= 0)
		return "(no stderr)";
	len = fwd_stderr(f, buf, sizeof(buf));
	return len > 1500 ? buf + len - 1500 : buf;
}

const char *fwd_status_str(const struct fwd *f)
{
	static char buf[64];

	if (!f->exited)
		snprintf(buf, sizeof(buf), "running");
	else if (WIFEXITED(f->status))
		snprintf(buf, sizeof(buf), "exit %d", WEXITSTATUS(f->status));
	else if (WIFSIGNALED(f->status))
		snprintf(buf, sizeof(buf), "killed by signal %d (%s)", WTERMSIG(f->status),
			 strsignal(WTERMSIG(f->status)));
	else
		snprintf(buf, sizeof(buf), "status 0x%x", f->status);
	return buf;
}

void fwd_signal_wait(struct fwd *f, int sig)
{
	if (!f->exited)
		sys_assert(kill(f->pid, sig) == 0, "kill(%d, %d)", (int)f->pid, sig);
	if (fwd_wait(f, E2E_EXIT_MS))
		return;
	kill(f->pid, SIGKILL);
	fwd_wait(f, E2E_EXIT_MS);
	cr_assert_fail("sockfwd did not exit within %d ms of signal %d (%s); stderr:\n%s",
		       E2E_EXIT_MS, sig, strsignal(sig), fwd_stderr_tail(f));
}

void fwd_assert_alive(struct fwd *f)
{
	fwd_wait(f, 0);
	cr_assert(!f->exited, "sockfwd died: %s; stderr:\n%s", fwd_status_str(f),
		  fwd_stderr_tail(f));
}

void fwd_stop(struct fwd *f)
{
	fwd_assert_alive(f);
	fwd_signal_wait(f, SIGTERM);
	cr_assert(WIFEXITED(f->status) && WEXITSTATUS(f->status) == 0,
		  "sockfwd after SIGTERM: %s, expected exit 0; stderr:\n%s", fwd_status_str(f),
		  fwd_stderr_tail(f));
	fwd_release(f);
}

void fwd_release(struct fwd *f)
{
	if (cur_fwd == f)
		cur_fwd = NULL;
	if (f->pid > 0 && !f->exited) {
		kill(f->pid, SIGKILL);
		fwd_wait(f, E2E_EXIT_MS);
	}
	if (f->out_fd > 0)
		close(f->out_fd);
	if (f->err_fd > 0)
		close(f->err_fd);
	f->out_fd = f->err_fd = -1;
}

/*
 * Wait until a connect to the listener succeeds. Returns 1 when ready, 0
 * when sockfwd exited because the address was in use; fails otherwise.
 */
static int fwd_wait_ready(struct fwd *f)
{
	uint64_t deadline = now_ms() + E2E_READY_MS;

	for (int i = 0; i < 100000; i++) {
		int fd;

		if (fwd_wait(f, 0)) {
			char err[4096];

			fwd_stderr(f, err, sizeof(err));
			if (WIFEXITED(f->status) && WEXITSTATUS(f->status) == 1 &&
			    strcasestr(err, "in use") != NULL)
				return 0;
			cr_assert_fail("sockfwd exited before listening: %s; stderr:\n%s",
				       fwd_status_str(f), fwd_stderr_tail(f));
		}
		fd = tcp_connect_try(f->family, f->port);
		if (fd >= 0) {
			close(fd);
			return 1;
		}
		cr_assert(fd == -ECONNREFUSED, "probe connect to sockfwd port %d: %s", f->port,
			  strerror(-fd));
		if (now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	kill(f->pid, SIGKILL);
	fwd_wait(f, E2E_EXIT_MS);
	cr_assert_fail("sockfwd not listening after %d ms; stderr:\n%s", E2E_READY_MS,
		       fwd_stderr_tail(f));
	return 0;
}

/*
 * SOCKFWD_TEST_THREADS=N runs every forwarder fwd_start spawns without an
 * explicit thread count with -j N (make tsan runs the suite with -j 4 so
 * that more workers share the process). Returns N, or 0 when unset.
 */
static int test_threads(void)
{
	const char *s = getenv("SOCKFWD_TEST_THREADS");
	int n = s != NULL ? atoi(s) : 0;

	return n > 0 && n <= 64 ? n : 0;
}

void fwd_start(struct fwd *f, const struct fwd_opts *o)
{
	int family = o->family ? o->family : AF_INET;

	for (int attempt = 0; attempt < 10; attempt++) {
		const char *argv[MAX_ARGS];
		char listen[64], threads[16];
		int port = free_port(family), n = 0;

		loop_addr(listen, sizeof(listen), family, port);
		argv[n++] = "sockfwd";
		argv[n++] = "-l";
		argv[n++] = listen;
		if (o->remote != NULL) {
			argv[n++] = "-r";
			argv[n++] = o->remote;
		}
		if (o->engine) {
			argv[n++] = "-b";
			argv[n++] = o->engine;
		}
		if (o->threads > 0 || test_threads() > 0) {
			snprintf(threads, sizeof(threads), "%d",
				 o->threads > 0 ? o->threads : test_threads());
			argv[n++] = "-j";
			argv[n++] = threads;
		}
		/* Debugging only: tests that read the log expect it without -v. */
		if (getenv("SOCKFWD_TEST_VERBOSE") != NULL)
			argv[n++] = "-v";
		for (int i = 0; i < FWD_EXTRA && o->extra[i] != NULL; i++) {
			cr_assert(n < MAX_ARGS - 1, "too many arguments");
			argv[n++] = o->extra[i];
		}
		argv[n] = NULL;

		fwd_spawn(f, argv, o->nofile);
		f->family = family;
		f->port = port;
		cur_fwd = f;
		if (o->no_probe ? fwd_wait_listening(f, &port, 1, E2E_READY_MS) : fwd_wait_ready(f))
			return;
		fwd_release(f);
	}
	cr_assert_fail("sockfwd: address in use on 10 different free ports");
}

void fwd_start_srv(struct fwd *f, const char *engine, const struct srv *s)
{
	struct fwd_opts o = { .engine = engine, .family = s->family };
	char remote[64];

	o.remote = srv_addr(s, remote, sizeof(remote));
	fwd_start(f, &o);
}

/*
 * Call fn with the link of every descriptor of process pid (its
 * /proc/PID/fd entries; one closed meanwhile is skipped). Returns 0, or
 * -1 when the process is gone.
 */
static int proc_fd_each(pid_t pid, void (*fn)(const char *link, void *arg), void *arg)
{
	char dir[64], path[320], link[128];
	struct dirent *d;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dp = opendir(dir);
	if (dp == NULL)
		return -1;
	for (int i = 0; i < 1000000 && (d = readdir(dp)) != NULL; i++) {
		ssize_t len;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue; /* closed meanwhile */
		link[len] = '\0';
		fn(link, arg);
	}
	closedir(dp);
	return 0;
}

struct fd_kind_count {
	const char *kind;
	int n;
};

static void count_kind(const char *link, void *arg)
{
	struct fd_kind_count *c = arg;

	if (strncmp(link, c->kind, strlen(c->kind)) == 0)
		c->n++;
}

/* Descriptors of process pid whose link begins with kind ("socket:", "pipe:"). */
int proc_fds_of(pid_t pid, const char *kind)
{
	struct fd_kind_count c = { kind, 0 };

	sys_assert(proc_fd_each(pid, count_kind, &c) == 0, "opendir /proc/%d/fd", (int)pid);
	return c.n;
}

/* ---- /proc ---- */

long proc_status_field(pid_t pid, const char *name)
{
	char path[64], line[256];
	size_t nlen = strlen(name);
	long v = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "re");
	sys_assert(fp != NULL, "%s", path);
	for (int i = 0; i < 200 && fgets(line, sizeof(line), fp) != NULL; i++) {
		if (strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
			v = strtol(line + nlen + 1, NULL, 10);
			break;
		}
	}
	fclose(fp);
	cr_assert(v >= 0, "%s has no field %s", path, name);
	return v;
}

int proc_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	sys_assert(d != NULL, "%s", path);
	for (int i = 0; i < 1000000 && (de = readdir(d)) != NULL; i++) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

double proc_cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	const char *p;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	sys_assert(fd >= 0, "%s", path);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	sys_assert(len > 0, "read %s", path);
	buf[len] = '\0';
	/* Fields after "(comm)": state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime. */
	p = strrchr(buf, ')');
	cr_assert(p != NULL, "%s: no ')'", path);
	cr_assert(sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) ==
			  2,
		  "cannot parse %s: %s", path, buf);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- sockets ---- */

void raise_nofile(void)
{
	struct rlimit rl;

	sys_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
	rl.rlim_cur = rl.rlim_max;
	sys_assert(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit");
}

/* The loopback address of family, port. */
static socklen_t loop_sockaddr(struct sockaddr_storage *ss, int family, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		s6->sin6_port = htons((uint16_t)port);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s4->sin_port = htons((uint16_t)port);
	return sizeof(*s4);
}

/* Port of a bound socket. */
static int sock_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	sys_assert(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname");
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int free_port(int family)
{
	struct sockaddr_storage ss;
	socklen_t len = loop_sockaddr(&ss, family, 0);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	sys_assert(fd >= 0, "socket");
	sys_assert(bind(fd, (struct sockaddr *)&ss, len) == 0, "bind port 0");
	port = sock_port(fd);
	close(fd);
	return port;
}

char *loop_addr(char *buf, size_t len, int family, int port)
{
	snprintf(buf, len, family == AF_INET6 ? "[::1]:%d" : "127.0.0.1:%d", port);
	return buf;
}

/* send and receive time-outs: a stalled forwarder fails the call, not the run. */
static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	sys_assert(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0, "SO_RCVTIMEO");
	sys_assert(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0, "SO_SNDTIMEO");
}

int tcp_connect_try(int family, int port) { return tcp_connect_from_try(family, NULL, port); }

int tcp_connect(int family, int port)
{
	int fd = tcp_connect_try(family, port);

	cr_assert(fd >= 0, "connect to loopback port %d: %s%s", port, strerror(-fd), fwd_note());
	return fd;
}

int tcp_connect_nb(int family, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = loop_sockaddr(&ss, family, port);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	sys_assert(fd >= 0, "socket");
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		sys_assert(errno == EINPROGRESS, "non-blocking connect to port %d", port);
	return fd;
}

/* What a failed send/recv means, for messages. */
static const char *io_err(ssize_t r, int e)
{
	if (r == 0)
		return "EOF";
	if (e == EAGAIN)
		return "timed out (stalled)";
	return strerror(e);
}

void send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	size_t off = 0;

	for (int i = 0; off < n && i < 100000000; i++) {
		ssize_t r = send(fd, p + off, n - off, MSG_NOSIGNAL);
		int e = errno;

		if (r < 0 && e == EINTR)
			continue;
		cr_assert(r > 0, "send after %zu of %zu bytes: %s%s", off, n, io_err(r, e),
			  fwd_note());
		off += (size_t)r;
	}
}

void send_gen(int fd, uint64_t seed, uint64_t len)
{
	unsigned char *buf = malloc(CHUNK);
	struct gen g;

	cr_assert(buf != NULL, "malloc failed");
	gen_init(&g, seed);
	while (len > 0) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;

		gen_fill(&g, buf, n);
		send_all(fd, buf, n);
		len -= n;
	}
	free(buf);
}

void recv_exact(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t off = 0;

	for (int i = 0; off < n && i < 100000000; i++) {
		ssize_t r = recv(fd, p + off, n - off, 0);
		int e = errno;

		if (r < 0 && e == EINTR)
			continue;
		cr_assert(r > 0, "recv after %zu of %zu bytes: %s%s", off, n, io_err(r, e),
			  fwd_note());
		off += (size_t)r;
	}
}

uint64_t recv_to_eof(int fd, uint64_t *hash, uint64_t max)
{
	unsigned char *buf = malloc(CHUNK);
	uint64_t total = 0, h = HASH_INIT;

	cr_assert(buf != NULL, "malloc failed");
	for (uint64_t i = 0; i <= max; i++) {
		ssize_t r = recv(fd, buf, CHUNK, 0);
		int e = errno;

		if (r < 0 && e == EINTR)
			continue;
		cr_assert(r >= 0, "recv after %llu bytes: %s (no EOF)%s", (unsigned long long)total,
			  io_err(r, e), fwd_note());
		if (r == 0)
			break;
		h = hash_update(h, buf, (size_t)r);
		total += (uint64_t)r;
		cr_assert(total <= max, "more than the %llu bytes expected",
			  (unsigned long long)max);
	}
	free(buf);
	*hash = h;
	return total;
}

int echo_bulk_port(int port, uint64_t seed, uint64_t len)
{
	struct sender snd;
	uint64_t h, n;
	int fd = tcp_connect(AF_INET, port), local = sock_local_port(fd);

	sender_start(&snd, fd, seed, len, 1);
	n = recv_to_eof(fd, &h, len);
	sender_join(&snd);
	cr_assert_eq(n, len, "echoed %llu of %llu bytes", (unsigned long long)n,
		     (unsigned long long)len);
	cr_assert(h == gen_hash(seed, len), "echo of %llu bytes differs from what was sent",
		  (unsigned long long)len);
	close(fd);
	return local;
}

void fwd_echo_bulk(const struct fwd *f, uint64_t seed, uint64_t len)
{
	(void)echo_bulk_port(f->port, seed, len);
}

void recv_expect_eof(int fd)
{
	char c;
	ssize_t r;
	int e;

	do {
		r = recv(fd, &c, 1, 0);
		e = errno;
	} while (r < 0 && e == EINTR);
	cr_assert(r == 0, "expected EOF, got %s%s", r > 0 ? "more data" : io_err(r, e), fwd_note());
}

void recv_expect_reset(int fd, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	size_t got = 0;
	char buf[4096];

	for (int i = 0; i < 100000; i++) {
		uint64_t now = now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, now >= deadline ? 0 : (int)(deadline - now));
		ssize_t r;
		int e;

		if (pr < 0 && errno == EINTR)
			continue;
		sys_assert(pr >= 0, "poll");
		cr_assert(pr > 0, "no reset within %d ms (%zu bytes received)%s", ms, got,
			  fwd_note());
		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		e = errno;
		if (r > 0) {
			got += (size_t)r;
			cr_assert(got < 1024 * 1024, "data instead of a reset");
			continue;
		}
		if (r < 0 && (e == EINTR || e == EAGAIN))
			continue;
		cr_assert(r != 0, "orderly EOF after %zu bytes where ECONNRESET was expected%s",
			  got, fwd_note());
		cr_assert(e == ECONNRESET, "recv: %s, expected ECONNRESET%s", strerror(e),
			  fwd_note());
		return;
	}
	cr_assert_fail("no reset within %d ms", ms);
}

void close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

void echo_roundtrip(int fd, uint64_t seed, size_t n)
{
	unsigned char *buf = malloc(n);
	struct gen g;

	cr_assert(buf != NULL && n <= 256 * 1024, "echo_roundtrip: bad size %zu", n);
	gen_init(&g, seed);
	gen_fill(&g, buf, n);
	send_all(fd, buf, n);
	memset(buf, 0, n);
	recv_exact(fd, buf, n);
	cr_assert(hash_update(HASH_INIT, buf, n) == gen_hash(seed, n),
		  "echo of %zu bytes (seed %llu) differs from what was sent", n,
		  (unsigned long long)seed);
	free(buf);
}

void echo_once(int family, int port, uint64_t seed, size_t n)
{
	int fd = tcp_connect(family, port);

	echo_roundtrip(fd, seed, n);
	close(fd);
}

/* Receive exactly n bytes before deadline; 0 or -errno. */
static int recv_exact_try(int fd, unsigned char *buf, size_t n, uint64_t deadline)
{
	size_t off = 0;

	for (int i = 0; off < n && i < 1000000; i++) {
		uint64_t now = now_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, now >= deadline ? 0 : (int)(deadline - now));
		ssize_t r;

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return pr < 0 ? -errno : -ETIMEDOUT;
		r = recv(fd, buf + off, n - off, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EPIPE;
		off += (size_t)r;
	}
	return off == n ? 0 : -ETIMEDOUT;
}

int recv_exact_ms(int fd, void *buf, size_t n, int ms)
{
	return recv_exact_try(fd, buf, n, now_ms() + (uint64_t)ms);
}

int echo_try(int family, int port, uint64_t seed, size_t n, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	unsigned char *buf = malloc(n);
	struct gen g;
	int fd, r;

	cr_assert(buf != NULL, "malloc failed");
	fd = tcp_connect_try(family, port);
	if (fd < 0) {
		free(buf);
		return fd;
	}
	gen_init(&g, seed);
	gen_fill(&g, buf, n);
	r = send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -EIO;
	if (r == 0)
		r = recv_exact_try(fd, buf, n, deadline);
	if (r == 0 && hash_update(HASH_INIT, buf, n) != gen_hash(seed, n))
		r = -EIO;
	close(fd);
	free(buf);
	return r;
}

/* ---- sender thread (no assertions off the test thread) ---- */

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	unsigned char *buf = malloc(CHUNK);
	struct gen g;

	if (buf == NULL) {
		s->err = ENOMEM;
		return NULL;
	}
	gen_init(&g, s->seed);
	while (s->sent < s->len && s->err == 0) {
		size_t n = s->len - s->sent < CHUNK ? (size_t)(s->len - s->sent) : CHUNK;
		size_t off = 0;

		gen_fill(&g, buf, n);
		for (int i = 0; off < n && i < 1000000; i++) {
			ssize_t r = send(s->fd, buf + off, n - off, MSG_NOSIGNAL);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				s->err = r < 0 ? errno : EIO;
				break;
			}
			off += (size_t)r;
			s->sent += (uint64_t)r;
		}
	}
	if (s->err == 0 && s->shut && shutdown(s->fd, SHUT_WR) < 0)
		s->err = errno;
	free(buf);
	return NULL;
}

void sender_start(struct sender *s, int fd, uint64_t seed, uint64_t len, int shut)
{
	int e;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->seed = seed;
	s->len = len;
	s->shut = shut;
	e = pthread_create(&s->th, NULL, sender_main, s);
	cr_assert(e == 0, "pthread_create: %s", strerror(e));
}

void sender_join(struct sender *s)
{
	int e = pthread_join(s->th, NULL);

	cr_assert(e == 0, "pthread_join: %s", strerror(e));
	cr_assert(s->err == 0, "sending failed after %llu of %llu bytes: %s",
		  (unsigned long long)s->sent, (unsigned long long)s->len,
		  s->err == EAGAIN ? "stalled (timeout)" : strerror(s->err));
	cr_assert(s->sent == s->len, "sent %llu of %llu bytes", (unsigned long long)s->sent,
		  (unsigned long long)s->len);
}

/* ---- upstream servers (no assertions off the test thread) ---- */

struct srv_conn {
	struct srv *srv;
	int fd;
	int idx; /* in accept order, from 0 */
	enum srv_kind kind;
	uint64_t len;
	uint64_t seed;
};

/* send() everything; 0 or -1. */
static int srv_send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	size_t off = 0;

	for (int i = 0; off < n && i < 1000000; i++) {
		ssize_t r = send(fd, p + off, n - off, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return off == n ? 0 : -1;
}

/* Echo until EOF or an error; count how connections that carried data ended. */
static void srv_echo(struct srv *s, int fd, unsigned char *buf)
{
	for (uint64_t total = 0; total < SRV_MAX_BYTES;) {
		ssize_t r = recv(fd, buf, CHUNK, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 && total > 0)
			atomic_fetch_add(&s->eofs, 1);
		if (r > 0 && srv_send_all(fd, buf, (size_t)r) == 0) {
			total += (uint64_t)r;
			continue;
		}
		if (r != 0 && total > 0 && (errno == ECONNRESET || errno == EPIPE))
			atomic_fetch_add(&s->resets, 1);
		if (r != 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			atomic_fetch_add(&s->timeouts, 1);
		return;
	}
}

static void srv_source(int fd, unsigned char *buf, uint64_t len, uint64_t seed)
{
	struct gen g;

	gen_init(&g, seed);
	while (len > 0) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;

		gen_fill(&g, buf, n);
		if (srv_send_all(fd, buf, n) < 0)
			return;
		len -= n;
	}
}

/* Read to EOF, then reply with what was read and a payload derived from it. */
static void srv_halfclose(int fd, unsigned char *buf, uint64_t len)
{
	uint64_t total = 0, h = HASH_INIT;
	struct halfclose_hdr hdr;

	for (int i = 0; total < SRV_MAX_BYTES && i < 100000000; i++) {
		ssize_t r = recv(fd, buf, CHUNK, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return;
		if (r == 0)
			break;
		h = hash_update(h, buf, (size_t)r);
		total += (uint64_t)r;
	}
	hdr.len = htole64(total);
	hdr.hash = htole64(h);
	if (srv_send_all(fd, &hdr, sizeof(hdr)) < 0)
		return;
	srv_source(fd, buf, len, halfclose_seed(h, total));
}

static const unsigned char pp_v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					     0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* recv one byte; 1, or 0 on EOF or an error. */
static int srv_recv1(int fd, unsigned char *c)
{
	for (int i = 0; i < 1000; i++) {
		ssize_t r = recv(fd, c, 1, 0);

		if (r < 0 && errno == EINTR)
			continue;
		return r == 1;
	}
	return 0;
}

/*
 * Read a leading PROXY header byte by byte: "PROXY " up to CRLF (at most
 * 107 bytes), or the v2 signature, 4 more bytes and the length they
 * give. Bytes that turn out to be no header stay in h as payload.
 * Returns the header length (0: none); *n is how many bytes h holds;
 * *eof is set when the peer ended or failed first.
 */
static size_t srv_read_head(int fd, unsigned char *h, size_t *n, int *eof)
{
	static const char v1[] = "PROXY ";
	size_t len = 0, want = 0;

	*eof = 0;
	for (int i = 0; len < SRV_HEAD_MAX; i++) {
		int is_v1 = len <= 6 && memcmp(h, v1, len) == 0;
		int is_v2 = len <= 12 && memcmp(h, pp_v2_sig, len) == 0;

		if (len >= 6 && memcmp(h, v1, 6) == 0) {
			if (len >= 2 && h[len - 2] == '\r' && h[len - 1] == '\n')
				break;
			if (len >= 107)
				break;
		} else if (len >= 12 && memcmp(h, pp_v2_sig, 12) == 0) {
			if (len == 16)
				want = 16 + ((size_t)h[14] << 8 | h[15]);
			if (len >= 16 && len >= want)
				break;
		} else if (!is_v1 && !is_v2) {
			*n = len;
			return 0;
		}
		if (!srv_recv1(fd, &h[len])) {
			*eof = 1;
			break;
		}
		len++;
	}
	*n = len;
	return len;
}

/* SRV_HEAD: record the header of connection c, then echo the rest. */
static void srv_head(struct srv_conn *c, unsigned char *buf)
{
	struct srv *s = c->srv;
	size_t n = 0, hl;
	int eof;

	hl = srv_read_head(c->fd, buf, &n, &eof);
	if (c->idx < SRV_HEADS) {
		struct srv_head *sh = &s->heads[c->idx];

		memcpy(sh->buf, buf, hl);
		sh->len = hl;
		atomic_store(&sh->done, 1);
	}
	if (eof)
		return;
	if (n > hl && srv_send_all(c->fd, buf + hl, n - hl) < 0)
		return;
	srv_echo(s, c->fd, buf);
}

static void *srv_conn_main(void *arg)
{
	struct srv_conn *c = arg;
	struct srv *s = c->srv;
	unsigned char *buf = malloc(CHUNK);
	struct timeval tv = { .tv_sec = s->io_timeout_ms / 1000,
			      .tv_usec = (s->io_timeout_ms % 1000) * 1000 };
	int rst = 0;

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (buf != NULL) {
		switch (c->kind) {
		case SRV_ECHO:
			srv_echo(c->srv, c->fd, buf);
			break;
		case SRV_SOURCE:
			srv_source(c->fd, buf, c->len, c->seed);
			break;
		case SRV_HALFCLOSE:
			srv_halfclose(c->fd, buf, c->len);
			break;
		case SRV_ID: {
			char id[16];

			snprintf(id, sizeof(id), "srv%04u\n", (unsigned)s->id % 10000u);
			if (srv_send_all(c->fd, id, SRV_ID_LEN) == 0)
				srv_echo(c->srv, c->fd, buf);
			break;
		}
		case SRV_HEAD:
			srv_head(c, buf);
			break;
		case SRV_RST: {
			ssize_t r;

			do
				r = recv(c->fd, buf, 64, 0);
			while (r < 0 && errno == EINTR);
			rst = r > 0;
			break;
		}
		}
	}
	if (rst)
		close_rst(c->fd);
	else
		close(c->fd);
	free(buf);
	free(c);
	atomic_fetch_sub(&s->active, 1);
	return NULL;
}

static void *srv_accept_main(void *arg)
{
	struct srv *s = arg;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, SRV_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (int i = 0; i < 10000000; i++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC), idx;
		struct srv_conn *c;
		pthread_t th;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				atomic_fetch_add(&s->failures, 1);
				sleep_ms(10);
				continue;
			}
			break; /* EINVAL after srv_stop's shutdown */
		}
		/*
		 * active before accepted: a waiter that sees accepted >= 1 and
		 * active == 0 must be looking at a connection that ended, not
		 * at one whose thread is not counted yet.
		 */
		atomic_fetch_add(&s->active, 1);
		idx = atomic_fetch_add(&s->accepted, 1);
		c = malloc(sizeof(*c));
		if (c == NULL) {
			atomic_fetch_sub(&s->active, 1);
			atomic_fetch_add(&s->failures, 1);
			close_rst(fd);
			continue;
		}
		*c = (struct srv_conn){ .srv = s,
					.fd = fd,
					.idx = idx,
					.kind = s->kind,
					.len = s->len,
					.seed = s->seed };
		if (pthread_create(&th, &attr, srv_conn_main, c) != 0) {
			atomic_fetch_sub(&s->active, 1);
			atomic_fetch_add(&s->failures, 1);
			close_rst(fd);
			free(c);
		}
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

void srv_bind(struct srv *s, int family, enum srv_kind kind, int port)
{
	struct sockaddr_storage ss;
	socklen_t slen = loop_sockaddr(&ss, family, port);

	memset(s, 0, sizeof(*s));
	s->family = family;
	s->kind = kind;
	s->io_timeout_ms = SRV_IO_TIMEOUT_MS;
	s->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sys_assert(s->lfd >= 0, "socket");
	sys_assert(bind(s->lfd, (struct sockaddr *)&ss, slen) == 0, "bind port %d", port);
	s->port = sock_port(s->lfd);
	if (kind == SRV_HEAD) {
		s->heads = calloc(SRV_HEADS, sizeof(*s->heads));
		cr_assert(s->heads != NULL, "calloc failed");
	}
}

void srv_listen(struct srv *s)
{
	int e;

	cr_assert(!s->listening, "srv_listen twice");
	sys_assert(listen(s->lfd, 4096) == 0, "listen");
	e = pthread_create(&s->th, NULL, srv_accept_main, s);
	cr_assert(e == 0, "pthread_create: %s", strerror(e));
	s->listening = 1;
}

void srv_start(struct srv *s, int family, enum srv_kind kind, uint64_t len, uint64_t seed)
{
	srv_bind(s, family, kind, 0);
	s->len = len;
	s->seed = seed;
	srv_listen(s);
}

void srv_start_id(struct srv *s, int family, int id)
{
	srv_bind(s, family, SRV_ID, 0);
	s->id = id;
	srv_listen(s);
}

const unsigned char *srv_head_wait(struct srv *s, int i, size_t *len)
{
	uint64_t deadline = now_ms() + E2E_HANG_MS;

	cr_assert(s->heads != NULL && i >= 0 && i < SRV_HEADS, "srv_head_wait: not SRV_HEAD");
	for (int k = 0; k < 1000000 && !atomic_load(&s->heads[i].done); k++) {
		cr_assert(now_ms() < deadline,
			  "upstream connection %d: no header within %d ms (%d accepted)%s", i,
			  E2E_HANG_MS, atomic_load(&s->accepted), fwd_note());
		sleep_ms(2);
	}
	*len = s->heads[i].len;
	return s->heads[i].buf;
}

void srv_stop(struct srv *s)
{
	uint64_t deadline = now_ms() + E2E_EXIT_MS;
	int e;

	if (!s->listening) {
		close(s->lfd);
		s->lfd = -1;
		free(s->heads);
		s->heads = NULL;
		return;
	}
	/* On Linux, shutdown() of a listening socket wakes accept() with EINVAL. */
	sys_assert(shutdown(s->lfd, SHUT_RDWR) == 0, "shutdown listener");
	e = pthread_join(s->th, NULL);
	cr_assert(e == 0, "pthread_join: %s", strerror(e));
	close(s->lfd);
	s->lfd = -1;
	s->listening = 0;
	/* Connection threads use *s: wait for them (their peers are gone by now). */
	for (int i = 0; i < 100000 && atomic_load(&s->active) > 0; i++) {
		if (now_ms() >= deadline)
			break;
		sleep_ms(5);
	}
	cr_assert(atomic_load(&s->active) == 0,
		  "%d upstream connections still open %d ms after the forwarder stopped",
		  atomic_load(&s->active), E2E_EXIT_MS);
	free(s->heads);
	s->heads = NULL;
}

char *srv_addr(const struct srv *s, char *buf, size_t len)
{
	return loop_addr(buf, len, s->family, s->port);
}

/* ---- a silent upstream ---- */

/* A non-blocking connect to port: 1 when it completes within ms, 0 when still pending. */
static int connect_completes(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int err = 0, pr;
	socklen_t len = sizeof(err);

	do
		pr = poll(&pfd, 1, ms);
	while (pr < 0 && errno == EINTR);
	sys_assert(pr >= 0, "poll");
	if (pr == 0)
		return 0;
	sys_assert(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0, "SO_ERROR");
	cr_assert(err == 0, "connect to the silent listener failed: %s", strerror(err));
	return 1;
}

void silent_start(struct silent *q, int family)
{
	struct sockaddr_storage ss;
	socklen_t slen = loop_sockaddr(&ss, family, 0);

	memset(q, 0, sizeof(*q));
	q->family = family;
	q->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sys_assert(q->lfd >= 0, "socket");
	sys_assert(bind(q->lfd, (struct sockaddr *)&ss, slen) == 0, "bind");
	sys_assert(listen(q->lfd, 0) == 0, "listen");
	q->port = sock_port(q->lfd);
	/* Fill the accept queue; the first connect that hangs proves SYNs are dropped. */
	for (int i = 0; i < SILENT_FILL; i++) {
		int fd = tcp_connect_nb(family, q->port);

		if (!connect_completes(fd, 300)) {
			close(fd);
			return;
		}
		q->fill[q->nfill++] = fd;
	}
	cr_assert_fail("%d connects to a listener with backlog 0 all completed: this kernel "
		       "does not drop SYNs when the accept queue is full",
		       SILENT_FILL);
}

void silent_stop(struct silent *q)
{
	for (int i = 0; i < q->nfill; i++)
		close(q->fill[i]);
	close(q->lfd);
	q->nfill = 0;
	q->lfd = -1;
}

/* ---- clients with a chosen source, identities ---- */

int sock_local_port(int fd) { return sock_port(fd); }

/* Connect to the loopback port, bound first to src unless it is NULL. */
int tcp_connect_from_try(int family, const char *src, int port)
{
	struct sockaddr_storage ss, sa;
	socklen_t len = loop_sockaddr(&ss, family, port);
	int fd, e;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sys_assert(fd >= 0, "socket");
	set_timeouts(fd, E2E_HANG_MS);
	if (src != NULL) {
		memset(&sa, 0, sizeof(sa));
		if (family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;

			s6->sin6_family = AF_INET6;
			cr_assert(inet_pton(AF_INET6, src, &s6->sin6_addr) == 1, "bad address %s",
				  src);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;

			s4->sin_family = AF_INET;
			cr_assert(inet_pton(AF_INET, src, &s4->sin_addr) == 1, "bad address %s",
				  src);
		}
		sys_assert(bind(fd, (struct sockaddr *)&sa,
				family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in)) == 0,
			   "bind the client to %s", src);
	}
	for (int i = 0; i < 100; i++) {
		if (connect(fd, (struct sockaddr *)&ss, len) == 0)
			return fd;
		if (errno != EINTR)
			break;
	}
	e = errno;
	close(fd);
	return -e;
}

int tcp_connect_from(int family, const char *src, int port)
{
	int fd = tcp_connect_from_try(family, src, port);

	cr_assert(fd >= 0, "connect from %s to loopback port %d: %s%s", src ? src : "any", port,
		  strerror(-fd), fwd_note());
	return fd;
}

int id_read_try(int fd, int ms)
{
	unsigned char buf[SRV_ID_LEN + 1];
	int id = 0, r;

	r = recv_exact_try(fd, buf, SRV_ID_LEN, now_ms() + (uint64_t)ms);
	if (r < 0)
		return r;
	buf[SRV_ID_LEN] = '\0';
	if (memcmp(buf, "srv", 3) != 0 || buf[SRV_ID_LEN - 1] != '\n')
		return -EPROTO;
	for (int i = 3; i < SRV_ID_LEN - 1; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -EPROTO;
		id = id * 10 + (buf[i] - '0');
	}
	return id;
}

int id_read(int fd)
{
	int id = id_read_try(fd, E2E_HANG_MS);

	cr_assert(id >= 0, "reading the upstream's identity: %s%s",
		  id == -EPROTO	     ? "not an identity"
		  : id == -EPIPE     ? "EOF"
		  : id == -ETIMEDOUT ? "timed out"
				     : strerror(-id),
		  fwd_note());
	return id;
}

int id_query(int family, const char *src, int port)
{
	int fd = tcp_connect_from(family, src, port), id;

	id = id_read(fd);
	close(fd);
	return id;
}

/* ---- listeners of the child ---- */

struct inode_set {
	unsigned long *v;
	size_t n, cap;
};

static void add_socket_inode(const char *link, void *arg)
{
	struct inode_set *set = arg;
	unsigned long ino;

	if (sscanf(link, "socket:[%lu]", &ino) != 1)
		return;
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 256;
		unsigned long *v = realloc(set->v, cap * sizeof(*v));

		cr_assert(v != NULL, "realloc failed");
		set->v = v;
		set->cap = cap;
	}
	set->v[set->n++] = ino;
}

/* Socket inodes of /proc/PID/fd; 0, or -1 when the process is gone. */
static int pid_socket_inodes(pid_t pid, struct inode_set *set)
{
	return proc_fd_each(pid, add_socket_inode, set);
}

static int cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

typedef void (*listener_fn)(int port, unsigned long inode, void *arg);

/* Listening sockets found, by port and inode. */
struct listener_list {
	struct {
		int port;
		unsigned long inode;
	} * v;
	size_t n, cap;
};

static void listener_add(struct listener_list *l, int port, unsigned long inode)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		void *v = realloc(l->v, cap * sizeof(*l->v));

		cr_assert(v != NULL, "realloc failed");
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].port = port;
	l->v[l->n++].inode = inode;
}

/*
 * Add the listening TCP sockets of family to l, from the kernel's socket
 * diagnostics (what ss -lt reads). The kernel walks only its listening
 * sockets, where /proc/net/tcp has a line for every socket: with the
 * tens of thousands of TIME_WAIT sockets that tests full of short
 * connections leave behind, each read of it took 0.1-0.2 s, and the
 * reload tests, which poll it, slowed down 5-10 times. Returns 0, or
 * -errno (no sock_diag: the caller reads the files).
 */
static int diag_listeners(int family, struct listener_list *l)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req = {
		.nlh = { .nlmsg_len = sizeof(req),
			 .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.r = { .sdiag_family = (uint8_t)family,
		       .sdiag_protocol = IPPROTO_TCP,
		       .idiag_states = 1u << 10 /* TCP_LISTEN */ },
	};
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	long buf[8192 / sizeof(long)];
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), rc = -EIO;

	if (fd < 0)
		return -errno;
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
		rc = -errno;
		goto out;
	}
	for (int i = 0; i < 100000; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE) {
				rc = 0;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				rc = e->error < 0 ? e->error : -EIO;
				goto out;
			}
			listener_add(l, ntohs(m->id.idiag_sport), m->idiag_inode);
		}
	}
out:
	close(fd);
	return rc;
}

/* As diag_listeners, for both families, from /proc/net/tcp and tcp6. */
static void file_listeners(struct listener_list *l)
{
	static const char *const files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	char line[512];

	for (size_t f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "re");

		if (fp == NULL)
			continue;
		for (int i = 0; i < 10000000 && fgets(line, sizeof(line), fp) != NULL; i++) {
			unsigned lport, st;
			unsigned long inode;

			if (sscanf(line,
				   " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x "
				   "%*x %*u %*u %lu",
				   &lport, &st, &inode) != 3)
				continue;
			if (st == 0x0A)
				listener_add(l, (int)lport, inode);
		}
		fclose(fp);
	}
}

/*
 * Visit the listening sockets of pid with a port in lo..hi: visit(port,
 * inode, arg) for each. Returns -1 when the process is gone, else 0.
 */
static int proc_listeners(pid_t pid, int lo, int hi, listener_fn visit, void *arg)
{
	static int no_diag;
	struct inode_set set = { 0 };
	struct listener_list l = { 0 };

	if (pid_socket_inodes(pid, &set) < 0)
		return -1;
	if (set.n > 0)
		qsort(set.v, set.n, sizeof(*set.v), cmp_ulong);
	if (no_diag || diag_listeners(AF_INET, &l) < 0 || diag_listeners(AF_INET6, &l) < 0) {
		no_diag = 1;
		l.n = 0;
		file_listeners(&l);
	}
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i].port >= lo && l.v[i].port <= hi && set.n > 0 &&
		    bsearch(&l.v[i].inode, set.v, set.n, sizeof(*set.v), cmp_ulong))
			visit(l.v[i].port, l.v[i].inode, arg);
	free(l.v);
	free(set.v);
	return 0;
}

struct inode_list {
	unsigned long *ino;
	int max;
	int found;
};

static void add_inode(int port, unsigned long inode, void *arg)
{
	struct inode_list *l = arg;

	(void)port;
	if (l->ino != NULL && l->found < l->max)
		l->ino[l->found] = inode;
	l->found++;
}

int proc_listen_inodes(pid_t pid, int port, unsigned long *ino, int max)
{
	struct inode_list l = { .ino = ino, .max = max };

	if (proc_listeners(pid, port, port, add_inode, &l) < 0)
		return 0;
	return l.found;
}

struct port_map {
	int lo;
	unsigned char *seen;
	int n;
};

static void add_port(int port, unsigned long inode, void *arg)
{
	struct port_map *m = arg;

	(void)inode;
	if (!m->seen[port - m->lo]) {
		m->seen[port - m->lo] = 1;
		m->n++;
	}
}

int proc_listening_ports(pid_t pid, int lo, int hi)
{
	struct port_map m = { .lo = lo };

	m.seen = calloc((size_t)(hi - lo + 1), 1);
	cr_assert(m.seen != NULL, "calloc failed");
	proc_listeners(pid, lo, hi, add_port, &m);
	free(m.seen);
	return m.n;
}

int proc_listening(pid_t pid, int port) { return proc_listen_inodes(pid, port, NULL, 0) > 0; }

int fwd_wait_listening(struct fwd *f, const int *ports, int n, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	int k = 0;

	for (int i = 0; i < 1000000; i++) {
		if (fwd_wait(f, 0)) {
			char err[4096];

			fwd_stderr(f, err, sizeof(err));
			if (WIFEXITED(f->status) && WEXITSTATUS(f->status) == 1 &&
			    strcasestr(err, "in use") != NULL)
				return 0;
			cr_assert_fail("sockfwd exited before listening: %s; stderr:\n%s",
				       fwd_status_str(f), fwd_stderr_tail(f));
		}
		while (k < n && proc_listening(f->pid, ports[k]))
			k++;
		if (k == n)
			return 1;
		if (now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	kill(f->pid, SIGKILL);
	fwd_wait(f, E2E_EXIT_MS);
	cr_assert_fail("sockfwd not listening on port %d after %d ms; stderr:\n%s", ports[k], ms,
		       fwd_stderr_tail(f));
	return 0;
}

void fwd_wait_port(struct fwd *f, int port, int listening, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;

	for (int i = 0; i < 1000000; i++) {
		fwd_assert_alive(f);
		if (proc_listening(f->pid, port) == listening)
			return;
		if (now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	cr_assert_fail("sockfwd %s listening on port %d after %d ms; stderr:\n%s",
		       listening ? "not" : "still", port, ms, fwd_stderr_tail(f));
}

/* Lowest port of the kernel's ephemeral range. */
static int ephemeral_low(void)
{
	FILE *fp = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
	int lo = 32768, hi;

	if (fp != NULL) {
		if (fscanf(fp, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		fclose(fp);
	}
	return lo;
}

/*
 * 1 when port can be bound on the loopback address of family right now;
 * with reuse, by a listener with SO_REUSEADDR (as sockfwd's are), which
 * connections in TIME_WAIT on the port do not stop: only another socket
 * bound to it does. Ranges for sockfwd's listeners are probed that way:
 * the TIME_WAIT left on scattered ports by the suites before (the bridge
 * suite's reconnections) made 5,000 consecutive strictly free ports
 * impossible to find. Single ports stay strict: tests bind some of them
 * without SO_REUSEADDR.
 */
static int port_free(int family, int port, int reuse)
{
	struct sockaddr_storage ss;
	socklen_t len = loop_sockaddr(&ss, family, port);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	sys_assert(fd >= 0, "socket");
	if (reuse)
		sys_assert(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)) == 0,
			   "SO_REUSEADDR");
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

int pick_ports(int family, int n)
{
	static uint64_t rnd;
	int lo = 10000, hi = ephemeral_low() - n;

	if (rnd == 0)
		rnd = ((uint64_t)getpid() << 32) ^ now_ms() ^ 0x9e3779b97f4a7c15ull;
	if (hi - lo < 1000) {
		lo = 1024;
		hi = 65535 - n;
	}
	for (int attempt = 0; attempt < 1000; attempt++) {
		int base, k;

		rnd ^= rnd << 13;
		rnd ^= rnd >> 7;
		rnd ^= rnd << 17;
		base = lo + (int)(rnd % (uint64_t)(hi - lo));
		for (k = 0; k < n && port_free(family, base + k, n > 1); k++)
			;
		if (k == n)
			return base;
	}
	cr_assert_fail("no %d consecutive free ports in %d-%d", n, lo, hi);
	return -1;
}

int pick_port(int family) { return pick_ports(family, 1); }

/* ---- the child's log ---- */

/* All of stderr, malloc'd and NUL terminated. */
static char *stderr_all(const struct fwd *f)
{
	struct stat st;
	char *buf;

	sys_assert(fstat(f->err_fd, &st) == 0, "fstat");
	buf = malloc((size_t)st.st_size + 4096);
	cr_assert(buf != NULL, "malloc failed");
	memfd_read(f->err_fd, buf, (size_t)st.st_size + 4096);
	return buf;
}

/* needle in [p, end) such that a needle ending in a digit is not followed by one. */
static int line_has(const char *p, size_t len, const char *needle)
{
	size_t nl = strlen(needle);
	int digit_end = nl > 0 && needle[nl - 1] >= '0' && needle[nl - 1] <= '9';

	for (size_t i = 0; i + nl <= len; i++) {
		if (memcmp(p + i, needle, nl) != 0)
			continue;
		if (digit_end && i + nl < len && p[i + nl] >= '0' && p[i + nl] <= '9')
			continue;
		return 1;
	}
	return 0;
}

/* Visit the lines holding a and b; stop at the first when buf is given. Returns the count. */
static int log_scan(const struct fwd *f, const char *a, const char *b, char *out, size_t outlen)
{
	char *all = stderr_all(f), *p = all;
	int n = 0;

	if (out != NULL)
		out[0] = '\0';
	for (int i = 0; i < 100000000 && *p != '\0'; i++) {
		char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (line_has(p, len, a) && (b == NULL || line_has(p, len, b))) {
			n++;
			if (out != NULL) {
				snprintf(out, outlen, "%.*s", (int)len, p);
				break;
			}
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	free(all);
	return n;
}

int fwd_log_count(const struct fwd *f, const char *a, const char *b)
{
	return log_scan(f, a, b, NULL, 0);
}

char *fwd_log_line(const struct fwd *f, const char *a, const char *b, char *buf, size_t len)
{
	log_scan(f, a, b, buf, len);
	return buf;
}

int fwd_log_wait(struct fwd *f, int ms, const char *a, const char *b)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;

	for (int i = 0; i < 1000000; i++) {
		if (log_scan(f, a, b, NULL, 0) > 0)
			return 1;
		if (now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	return 0;
}

/* ---- config files ---- */

void conf_pick(struct fwd_conf *c)
{
	int family = c->family ? c->family : AF_INET;

	cr_assert(c->nlisten >= 0 && c->nlisten <= CONF_PORTS, "nlisten %d", c->nlisten);
	if (c->consecutive && c->nlisten > 0) {
		int base = pick_ports(family, c->nlisten);

		for (int i = 0; i < c->nlisten; i++)
			c->lport[i] = base + i;
	} else {
		for (int i = 0; i < c->nlisten; i++) {
			int dup;

			do {
				c->lport[i] = pick_port(family);
				dup = 0;
				for (int k = 0; k < i; k++)
					dup |= c->lport[k] == c->lport[i];
			} while (dup);
		}
	}
	c->picked = 1;
}

/* text with the placeholders of c replaced, malloc'd. */
static char *conf_expand(const struct fwd_conf *c, const char *text)
{
	size_t cap = strlen(text) * 2 + 1024, n = 0;
	char *out = malloc(cap);

	cr_assert(out != NULL, "malloc failed");
	for (const char *p = text; *p != '\0'; p++) {
		char tmp[32];
		const char *rep = NULL;

		if (p[0] == '@' && (p[1] == 'L' || p[1] == 'U') && p[2] >= '0' &&
		    p[2] < '0' + CONF_PORTS) {
			int i = p[2] - '0';

			cr_assert(p[1] == 'U' || i < c->nlisten, "template uses @L%d of %d", i,
				  c->nlisten);
			snprintf(tmp, sizeof(tmp), "%d", p[1] == 'L' ? c->lport[i] : c->up[i]);
			rep = tmp;
			p += 2;
		} else if (p[0] == '@' && p[1] == 'E') {
			cr_assert(c->engine != NULL, "template uses @E without an engine");
			rep = c->engine;
			p += 1;
		}
		if (rep == NULL) {
			tmp[0] = *p;
			tmp[1] = '\0';
			rep = tmp;
		}
		cr_assert(n + strlen(rep) + 1 < cap, "template too long");
		memcpy(out + n, rep, strlen(rep));
		n += strlen(rep);
	}
	out[n] = '\0';
	return out;
}

/* Files made by conf_write, removed at exit even when an assertion ends the test. */
static char conf_made[16][64];

static void conf_cleanup(void)
{
	for (size_t i = 0; i < sizeof(conf_made) / sizeof(conf_made[0]); i++) {
		if (conf_made[i][0] != '\0')
			unlink(conf_made[i]);
	}
}

static void conf_track(const char *path)
{
	static int registered;

	if (!registered && atexit(conf_cleanup) == 0)
		registered = 1;
	for (size_t i = 0; i < sizeof(conf_made) / sizeof(conf_made[0]); i++) {
		if (conf_made[i][0] == '\0') {
			snprintf(conf_made[i], sizeof(conf_made[i]), "%s", path);
			return;
		}
	}
}

void conf_write(struct fwd_conf *c, const char *text)
{
	char tmp[80], *body;
	int fd;

	if (!c->picked)
		conf_pick(c);
	if (c->path[0] == '\0') {
		snprintf(c->path, sizeof(c->path), "/tmp/sockfwd-e2e-XXXXXX.conf");
		fd = mkstemps(c->path, 5);
		sys_assert(fd >= 0, "mkstemps");
		close(fd);
		conf_track(c->path);
	}
	body = conf_expand(c, text);
	snprintf(tmp, sizeof(tmp), "%s.new", c->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	sys_assert(fd >= 0, "open %s", tmp);
	for (size_t off = 0, len = strlen(body); off < len;) {
		ssize_t r = write(fd, body + off, len - off);

		sys_assert(r > 0, "write %s", tmp);
		off += (size_t)r;
	}
	close(fd);
	sys_assert(rename(tmp, c->path) == 0, "rename %s", tmp);
	free(body);
}

void conf_remove(struct fwd_conf *c)
{
	if (c->path[0] != '\0')
		unlink(c->path);
	c->path[0] = '\0';
}

void fwd_start_conf(struct fwd *f, struct fwd_conf *c, const char *text)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		const char *argv[MAX_ARGS];
		int ports[CONF_PORTS], np = 0, n = 0;

		if (attempt > 0 || !c->picked)
			conf_pick(c);
		conf_write(c, text);
		argv[n++] = "sockfwd";
		argv[n++] = "-c";
		argv[n++] = c->path;
		/* Debugging only, as in fwd_start. */
		if (getenv("SOCKFWD_TEST_VERBOSE") != NULL)
			argv[n++] = "-v";
		for (int i = 0; i < FWD_EXTRA && c->extra[i] != NULL; i++) {
			cr_assert(n < MAX_ARGS - 1, "too many arguments");
			argv[n++] = c->extra[i];
		}
		argv[n] = NULL;
		for (int i = 0; i < c->nlisten; i++) {
			char ph[16];

			snprintf(ph, sizeof(ph), "@L%d", i);
			if (c->consecutive || strstr(text, ph) != NULL)
				ports[np++] = c->lport[i];
		}
		fwd_spawn(f, argv, 0);
		f->family = c->family ? c->family : AF_INET;
		f->port = c->nlisten > 0 ? c->lport[0] : 0;
		cur_fwd = f;
		if (fwd_wait_listening(f, ports, np, E2E_READY_MS))
			return;
		fwd_release(f);
	}
	cr_assert_fail("sockfwd: address in use on 10 different sets of free ports");
}

int fwd_run(const char *const *argv, int ms, char *out, size_t outlen, char *err, size_t errlen)
{
	struct fwd f;
	int status;

	fwd_spawn(&f, argv, 0);
	if (!fwd_wait(&f, ms)) {
		const char *tail = fwd_stderr_tail(&f);

		kill(f.pid, SIGKILL);
		fwd_wait(&f, E2E_EXIT_MS);
		cr_assert_fail("sockfwd did not exit within %d ms; stderr:\n%s", ms, tail);
	}
	if (out != NULL)
		fwd_stdout(&f, out, outlen);
	if (err != NULL)
		fwd_stderr(&f, err, errlen);
	cr_assert(WIFEXITED(f.status), "sockfwd %s; stderr:\n%s", fwd_status_str(&f),
		  fwd_stderr_tail(&f));
	status = WEXITSTATUS(f.status);
	fwd_release(&f);
	return status;
}
