/*
 * Zero-downtime restart: under client loops that connect without pause
 * (each connect a small hash-checked echo) and a large transfer through
 * the old process, a new sockfwd takes over the addresses and the old
 * one is drained with SIGTERM. Not one connect may be refused or reset,
 * and the transfer must arrive intact.
 *
 * SO_REUSEPORT: the new process binds the same addresses beside the old
 * one; with net.ipv4.tcp_migrate_req=1 (Linux 5.14+) the kernel moves
 * the clients queued on a closing listener to another listener of the
 * group instead of resetting them. The test sets it in a network
 * namespace of its own (unshare(CLONE_NEWNET) in the test's process,
 * which Criterion forks per test; lo brought up with SIOCSIFFLAGS), so
 * the host's setting is never touched; where no namespace can be made
 * (no CAP_SYS_ADMIN) or the sysctl is missing (before 5.14), it skips
 * and says why.
 *
 * The transfer is BULK_LEN bytes, 1 GiB, under AddressSanitizer too (the
 * whole test took 6 s there: the bytes are checked by memcmp against the
 * regenerated stream, and splice keeps them out of sockfwd). Its reader
 * holds at 1/4 until the new process runs, and then at 3/4 until the
 * drain has begun: the transfer is moving when the SIGTERM comes (a busy
 * old process leaves clients queued on its listeners longer, which is
 * what the kernel must migrate), and in flight through the old process
 * during the whole switch-over whatever the machine's speed.
 *
 * The client loops connect in bursts (LOOP_BURST connects, then the
 * echoes): with tcp_migrate_req=0 the test failed in 4 runs of 6 here
 * (clients reset in the accept queues of the closing listeners), with 1
 * it passed 8 of 8.
 */
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BULK_LEN   (1024 * MiB)
#define BULK_SEED  99
#define BULK_CHUNK (256 * 1024)
#define LOOPS	   4	 /* client loop threads */
#define LOOP_BURST 16	 /* connects at once per loop */
#define LOOP_MAX   20000 /* bursts per loop, at most */
#define LOOP_IO_MS 5000
#define LOOP_LEN   512 /* bytes echoed per connect */
#define LOOP_SEEN  50  /* connects served in a phase before the next step */
#define PHASE_MS   30000
#define MIGRATE	   "/proc/sys/net/ipv4/tcp_migrate_req"

/* The phases of a restart, as the client loops count them. */
enum { PH_OLD, PH_BOTH, PH_DRAIN, PH_NEW, PH_COUNT };

/* ---- the client loop (a thread: no assertions) ---- */

struct client_loop {
	int id;
	int port;
	_Atomic int *phase;
	_Atomic int stop;
	_Atomic int ok[PH_COUNT];
	int failed;
	int first_err; /* errno of the first failure */
	int first_phase;
	pthread_t th;
};

/* A non-blocking connect to the loopback port: the fd, or -errno. */
static int connect_start(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* The connect on fd completed (0) or failed (-errno), within ms. */
static int connect_finish(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int pr, err = 0;

	do
		pr = poll(&pfd, 1, ms);
	while (pr < 0 && errno == EINTR);
	if (pr <= 0)
		return pr < 0 ? -errno : -ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

/* Send LOOP_LEN bytes of seed on the connected fd: 0 or -errno. */
static int echo_send(int fd, uint64_t seed)
{
	unsigned char buf[LOOP_LEN];
	struct gen g;

	gen_init(&g, seed);
	gen_fill(&g, buf, sizeof(buf));
	if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) != (ssize_t)sizeof(buf))
		return errno ? -errno : -EIO;
	return 0;
}

/* Receive and check the echo of echo_send: 0, or -errno (-EIO: differs). */
static int echo_check(int fd, uint64_t seed)
{
	unsigned char buf[LOOP_LEN];
	int r = recv_exact_ms(fd, buf, sizeof(buf), LOOP_IO_MS);

	if (r == 0 && hash_update(HASH_INIT, buf, sizeof(buf)) != gen_hash(seed, sizeof(buf)))
		r = -EIO;
	return r;
}

static void loop_count(struct client_loop *l, int ph, int r)
{
	if (r == 0) {
		atomic_fetch_add(&l->ok[ph], 1);
		return;
	}
	if (l->failed++ == 0) {
		l->first_err = -r;
		l->first_phase = ph;
	}
}

/*
 * Connect LOOP_BURST clients at once, then echo on each (every send
 * first, then every check); again, without pause. Bursts keep clients
 * in the accept queues, where a listener's close would reset them.
 */
static void *client_loop_main(void *arg)
{
	struct client_loop *l = arg;
	int fd[LOOP_BURST], r[LOOP_BURST];

	for (int i = 0; i < LOOP_MAX && !atomic_load(&l->stop); i++) {
		uint64_t seed = ((uint64_t)l->id << 40) + (uint64_t)i * LOOP_BURST;
		int ph = atomic_load(l->phase);

		for (int k = 0; k < LOOP_BURST; k++) {
			fd[k] = connect_start(l->port);
			r[k] = fd[k] < 0 ? fd[k] : 0;
		}
		for (int k = 0; k < LOOP_BURST; k++)
			if (r[k] == 0 && (r[k] = connect_finish(fd[k], LOOP_IO_MS)) == 0)
				r[k] = echo_send(fd[k], seed + (uint64_t)k);
		for (int k = 0; k < LOOP_BURST; k++) {
			if (r[k] == 0)
				r[k] = echo_check(fd[k], seed + (uint64_t)k);
			if (fd[k] >= 0)
				close(fd[k]);
			loop_count(l, ph, r[k]);
		}
	}
	return NULL;
}

/* ---- the transfer's reader (a thread: no assertions) ---- */

struct bulk {
	int fd;
	_Atomic uint64_t hold; /* read no further for now */
	_Atomic uint64_t got;
	uint64_t bad_at; /* offset of the first byte that differs */
	int err;	 /* errno; EPIPE: early EOF, EILSEQ: bytes differ, E2BIG: too many */
	pthread_t th;
};

/* Read to EOF, comparing with the stream regenerated here; never past hold. */
static void *bulk_main(void *arg)
{
	struct bulk *b = arg;
	unsigned char *buf = malloc(BULK_CHUNK), *want = malloc(BULK_CHUNK);
	uint64_t got = 0;
	struct gen g;

	gen_init(&g, BULK_SEED);
	if (buf == NULL || want == NULL) {
		b->err = ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < 100000000; i++) {
		ssize_t r;

		if (got >= atomic_load(&b->hold) && got < BULK_LEN) {
			sleep_ms(5);
			continue;
		}
		r = recv(b->fd, buf, BULK_CHUNK, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			b->err = errno;
			break;
		}
		if (r == 0) {
			if (got != BULK_LEN)
				b->err = EPIPE;
			break;
		}
		if (got + (uint64_t)r > BULK_LEN) {
			b->err = E2BIG;
			break;
		}
		gen_fill(&g, want, (size_t)r);
		if (memcmp(buf, want, (size_t)r) != 0) {
			size_t k = 0;

			while (buf[k] == want[k])
				k++;
			b->bad_at = got + k;
			b->err = EILSEQ;
			break;
		}
		got += (uint64_t)r;
		atomic_store(&b->got, got);
	}
out:
	free(buf);
	free(want);
	return NULL;
}

/* ---- the scenario ---- */

static const char conf_text[] =
	"threads = 2;\n"
	"rules = {\n"
	"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"  bulk = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U1\"; };\n"
	"};\n";

struct restart {
	struct fwd_conf c; /* rules web (echo) and bulk (the transfer) */
	struct srv echo, src;
	struct client_loop loops[LOOPS];
	_Atomic int phase;
	struct bulk b;
	struct fwd old, new;
	/* How the processes are started: the old one, then the new beside it. */
	void (*start_old)(struct restart *r);
	void (*start_new)(struct restart *r);
};

/* Connects served in phase ph, over every loop. */
static int served(struct restart *r, int ph)
{
	int n = 0;

	for (int i = 0; i < LOOPS; i++)
		n += atomic_load(&r->loops[i].ok[ph]);
	return n;
}

/* Enter phase ph, and wait (bounded) until the loops were served LOOP_SEEN times in it. */
static void phase(struct restart *r, int ph, const char *what)
{
	uint64_t deadline = now_ms() + PHASE_MS;

	atomic_store(&r->phase, ph);
	for (int i = 0; i < 100000 && served(r, ph) < LOOP_SEEN; i++) {
		if (now_ms() >= deadline)
			break;
		sleep_ms(5);
	}
	cr_assert(served(r, ph) >= LOOP_SEEN, "%s: %d connects served in %d ms", what,
		  served(r, ph), PHASE_MS);
}

static void log_expect(struct fwd *f, const char *who, const char *a, const char *b)
{
	cr_assert(fwd_log_wait(f, E2E_EXIT_MS, a, b), "%s: no log line with '%s'%s%s; stderr:\n%s",
		  who, a, b ? " and " : "", b ? b : "", fwd_stderr_tail(f));
}

/* Start, switch over and check; the processes come from r's callbacks. */
static void restart_run(struct restart *r)
{
	int e;

	raise_nofile();
	srv_start(&r->echo, AF_INET, SRV_ECHO, 0, 0);
	srv_start(&r->src, AF_INET, SRV_SOURCE, BULK_LEN, BULK_SEED);
	r->c.nlisten = 2;
	r->c.up[0] = r->echo.port;
	r->c.up[1] = r->src.port;
	r->start_old(r);

	r->b.fd = tcp_connect(AF_INET, r->c.lport[1]);
	atomic_store(&r->b.hold, BULK_LEN / 4);
	e = pthread_create(&r->b.th, NULL, bulk_main, &r->b);
	cr_assert(e == 0, "pthread_create: %s", strerror(e));
	for (int i = 0; i < LOOPS; i++) {
		r->loops[i].id = i;
		r->loops[i].port = r->c.lport[0];
		r->loops[i].phase = &r->phase;
		e = pthread_create(&r->loops[i].th, NULL, client_loop_main, &r->loops[i]);
		cr_assert(e == 0, "pthread_create: %s", strerror(e));
	}
	phase(r, PH_OLD, "the old process alone");

	/* The new process accepts before the old one closes its listeners. */
	r->start_new(r);
	phase(r, PH_BOTH, "both processes");
	/* Moving at the SIGTERM (the old process busy), held again at 3/4 if fast. */
	atomic_store(&r->b.hold, BULK_LEN / 4 * 3);
	sys_assert(kill(r->old.pid, SIGTERM) == 0, "kill SIGTERM");
	log_expect(&r->old, "old", "drain: stopped accepting", NULL);
	phase(r, PH_DRAIN, "the old process draining");

	/* The rest of the transfer, through the draining old process. */
	atomic_store(&r->b.hold, BULK_LEN);
	e = pthread_join(r->b.th, NULL);
	cr_assert(e == 0, "pthread_join: %s", strerror(e));
	cr_assert(r->b.err != EILSEQ, "the transfer arrived altered at byte %llu",
		  (unsigned long long)r->b.bad_at);
	cr_assert(r->b.err == 0, "the transfer failed after %llu of %llu bytes: %s; old: %s",
		  (unsigned long long)atomic_load(&r->b.got), (unsigned long long)BULK_LEN,
		  r->b.err == EPIPE   ? "early EOF"
		  : r->b.err == E2BIG ? "more bytes than sent"
				      : strerror(r->b.err),
		  fwd_stderr_tail(&r->old));
	close(r->b.fd);
	if (!fwd_wait(&r->old, E2E_EXIT_MS))
		cr_assert_fail("the old process still runs %d ms after its last connection; "
			       "stderr:\n%s",
			       E2E_EXIT_MS, fwd_stderr_tail(&r->old));
	cr_assert(WIFEXITED(r->old.status) && WEXITSTATUS(r->old.status) == 0,
		  "old process: %s, expected exit 0; stderr:\n%s", fwd_status_str(&r->old),
		  fwd_stderr_tail(&r->old));
	log_expect(&r->old, "old", "drain: done (no connection left)", " 0 reset");
	phase(r, PH_NEW, "the new process alone");

	for (int i = 0; i < LOOPS; i++)
		atomic_store(&r->loops[i].stop, 1);
	for (int i = 0; i < LOOPS; i++) {
		e = pthread_join(r->loops[i].th, NULL);
		cr_assert(e == 0, "pthread_join: %s", strerror(e));
	}
	cr_log_info("restart: connects served: %d with the old process alone, %d with both, "
		    "%d while it drained, %d after it exited",
		    served(r, PH_OLD), served(r, PH_BOTH), served(r, PH_DRAIN), served(r, PH_NEW));
	for (int i = 0; i < LOOPS; i++) {
		struct client_loop *l = &r->loops[i];

		cr_assert_eq(l->failed, 0,
			     "loop %d: %d connects failed; the first, in phase %d (0 old, 1 "
			     "both, 2 draining, 3 new): %s",
			     i, l->failed, l->first_phase, strerror(l->first_err));
	}
	fwd_release(&r->old);
	fwd_stop(&r->new);
	srv_stop(&r->echo);
	srv_stop(&r->src);
	conf_remove(&r->c);
}

/* ---- (b) SO_REUSEPORT and tcp_migrate_req ---- */

/*
 * Move this test's process into a network namespace of its own with lo
 * up and tcp_migrate_req=1. Threads and processes made from now on live
 * there. Returns 0, or -1 with the reason in why.
 */
static int netns_enter(char *why, size_t len)
{
	struct ifreq ifr;
	char v = 0;
	int fd;

	if (unshare(CLONE_NEWNET) < 0) {
		snprintf(why, len, "unshare(CLONE_NEWNET): %s", strerror(errno));
		return -1;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	sys_assert(fd >= 0, "socket");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	sys_assert(ioctl(fd, SIOCGIFFLAGS, &ifr) == 0, "SIOCGIFFLAGS lo");
	ifr.ifr_flags |= IFF_UP;
	sys_assert(ioctl(fd, SIOCSIFFLAGS, &ifr) == 0, "SIOCSIFFLAGS lo up");
	close(fd);
	fd = open(MIGRATE, O_RDWR | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1 || pread(fd, &v, 1, 0) != 1 || v != '1') {
		snprintf(why, len, "cannot set %s (Linux 5.14 or later needed): %s", MIGRATE,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static void reuseport_old(struct restart *r)
{
	r->c.extra[0] = "--drain-timeout";
	r->c.extra[1] = "120s";
	fwd_start_conf(&r->old, &r->c, conf_text);
	log_expect(&r->old, "old", "listening on", NULL);
}

/* The same file and flags beside the old process: SO_REUSEPORT lets it bind. */
static void reuseport_new(struct restart *r)
{
	const char *argv[] = { "sockfwd", "-c", r->c.path, NULL };

	fwd_spawn(&r->new, argv, 0);
	r->new.family = AF_INET;
	r->new.port = r->c.lport[0];
	cr_assert(fwd_wait_listening(&r->new, r->c.lport, 2, E2E_READY_MS),
		  "the new process could not bind beside the old one; stderr:\n%s",
		  fwd_stderr_tail(&r->new));
	/* Logged once its workers run: it accepts from now on. */
	log_expect(&r->new, "new", "listening on", NULL);
}

Test(restart, reuseport_migrate, .timeout = 300)
{
	static struct restart r;
	char why[256];

	if (netns_enter(why, sizeof(why)) < 0)
		cr_skip_test("SO_REUSEPORT restart not tested: %s", why);
	r.start_old = reuseport_old;
	r.start_new = reuseport_new;
	restart_run(&r);
}

/* ---- (a) socket activation ---- */

extern char **environ;

#define SA_ENV 512

/* The listening sockets of rules web and bulk, held here as systemd holds them. */
static int sa_fds[2] = { -1, -1 };

/* A listening socket on the loopback port, as a .socket unit makes it. */
static int sa_listener(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	sys_assert(fd >= 0, "socket");
	sys_assert(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0,
		   "SO_REUSEADDR");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	sys_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind port %d", port);
	sys_assert(listen(fd, 4096) == 0, "listen");
	return fd;
}

/* pid in decimal at buf (async-signal-safe, for the child after fork). */
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
static void sa_child(const char *bin, char *const *argv, char **envp, char *pidvar, int devnull,
		     int out, int err, pid_t parent)
{
	struct sigaction sa;
	sigset_t none;
	int hi[2];

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(125);
	/* Out of the way first: a passed descriptor may sit where another goes. */
	for (int i = 0; i < 2; i++)
		if ((hi[i] = fcntl(sa_fds[i], F_DUPFD, 100)) < 0)
			_exit(125);
	if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
		_exit(125);
	for (int i = 0; i < 2; i++)
		if (dup2(hi[i], 3 + i) < 0)
			_exit(125);
	close_range(5, ~0u, 0);
	put_pid(pidvar + strlen("LISTEN_PID="), getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(bin, argv, envp);
	_exit(127);
}

/*
 * Start sockfwd -c path [--drain-timeout 120s] with sa_fds passed as 3
 * and 4, as systemd does: LISTEN_FDS=2, LISTEN_FDNAMES naming the rules,
 * LISTEN_PID the child's own pid (set after the fork). stdout and stderr
 * into memfds, as fwd_spawn does.
 */
static void sa_spawn(struct fwd *f, const char *path, int drain)
{
	static char pidvar[40], bin[4096];
	static char *envp[SA_ENV];
	const char *argv[] = { bin, "-c", path, drain ? "--drain-timeout" : NULL, "120s", NULL };
	pid_t parent = getpid();
	int devnull, n = 0;

	sys_assert(realpath(fwd_bin(), bin) != NULL, "sockfwd binary %s", fwd_bin());
	for (char **e = environ; *e != NULL && n < SA_ENV - 4; e++)
		if (strncmp(*e, "LISTEN_", 7) != 0 && strncmp(*e, "NOTIFY_SOCKET=", 14) != 0)
			envp[n++] = *e;
	envp[n++] = "LISTEN_FDS=2";
	envp[n++] = "LISTEN_FDNAMES=web:bulk";
	snprintf(pidvar, sizeof(pidvar), "LISTEN_PID=%*s", 12, "");
	envp[n++] = pidvar;
	envp[n] = NULL;

	devnull = fwd_outputs(f);
	f->family = AF_INET;
	f->pid = fork();
	sys_assert(f->pid >= 0, "fork");
	if (f->pid == 0)
		sa_child(bin, (char *const *)argv, envp, pidvar, devnull, f->out_fd, f->err_fd,
			 parent);
	close(devnull);
}

/* Started, on the passed sockets (each named for its rule), not sockets of its own. */
static void sa_started(struct fwd *f, const char *who)
{
	log_expect(f, who, "socket activation: socket 'web'", "for rule 'web'");
	log_expect(f, who, "socket activation: socket 'bulk'", "for rule 'bulk'");
	log_expect(f, who, "listening on", NULL);
}

static void activated_old(struct restart *r)
{
	conf_write(&r->c, conf_text);
	for (int i = 0; i < 2; i++)
		sa_fds[i] = sa_listener(r->c.lport[i]);
	sa_spawn(&r->old, r->c.path, 1);
	r->old.port = r->c.lport[0];
	sa_started(&r->old, "old");
}

/* The same sockets to a second process, as a second service with Sockets= gets them. */
static void activated_new(struct restart *r)
{
	sa_spawn(&r->new, r->c.path, 0);
	r->new.port = r->c.lport[0];
	sa_started(&r->new, "new");
}

/*
 * Both processes accept from the one queue of each socket, which the
 * test holds throughout: no migration is involved, and the old process
 * closing its descriptors closes no socket.
 */
Test(restart, socket_activation, .timeout = 300)
{
	static struct restart r;

	r.start_old = activated_old;
	r.start_new = activated_new;
	restart_run(&r);
	for (int i = 0; i < 2; i++)
		close(sa_fds[i]);
}
