/*
 * UDP forwarding end to end, for every engine (naive, epoll, splice,
 * uring): datagrams echoed intact with their boundaries, many client
 * addresses at once, session time-out (descriptors back to their count),
 * max-sessions eviction in LRU order, the reply's source address on a
 * wildcard listener, IPv6, an upstream port that is unreachable then
 * comes back, a flood beyond capacity, socat as a real client, and the
 * config and command-line rules around UDP.
 *
 * The upstream is a UDP echo server on a thread. The forwarder is ready
 * once it logs its "listening on udp" line; its counters are read from
 * /metrics.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define UDP_MAXDG 65507

/* ---- a UDP echo server on a thread ---- */

struct uecho {
	int fd;
	int family;
	int port;
	atomic_int stop;
	atomic_long seen; /* datagrams received */
	pthread_t th;
};

static void *uecho_main(void *arg)
{
	struct uecho *e = arg;
	/*
	 * On the heap: big thread-local arrays would raise the static TLS of
	 * every thread of the suite above the harness's 256 KiB stacks.
	 */
	char *buf = malloc(65536);
	struct sockaddr_storage from;
	socklen_t flen;
	struct pollfd p = { .fd = e->fd, .events = POLLIN };
	ssize_t n;

	while (buf != NULL && !atomic_load(&e->stop)) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		flen = sizeof(from);
		n = recvfrom(e->fd, buf, 65536, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
		if (n < 0)
			continue;
		atomic_fetch_add(&e->seen, 1);
		(void)sendto(e->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
	}
	free(buf);
	return NULL;
}

static socklen_t loop_sa(struct sockaddr_storage *ss, int family, const char *ip, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (void *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		cr_assert(inet_pton(AF_INET6, ip ? ip : "::1", &a->sin6_addr) == 1);
		return sizeof(*a);
	}
	struct sockaddr_in *a = (void *)ss;

	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	cr_assert(inet_pton(AF_INET, ip ? ip : "127.0.0.1", &a->sin_addr) == 1);
	return sizeof(*a);
}

/* A UDP socket bound to the loopback address of family (port 0: any). */
static int udp_sock(int family, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = loop_sa(&ss, family, NULL, port);
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 3 };

	sys_assert(fd >= 0, "socket");
	sys_assert(bind(fd, (struct sockaddr *)&ss, len) == 0, "bind udp %d", port);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int udp_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	sys_assert(getsockname(fd, (struct sockaddr *)&ss, &len) == 0, "getsockname");
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

/* Start an echo server on port (0: any) of family. */
static void uecho_start(struct uecho *e, int family, int port)
{
	memset(e, 0, sizeof(*e));
	e->family = family;
	e->fd = udp_sock(family, port);
	e->port = udp_port(e->fd);
	cr_assert(pthread_create(&e->th, NULL, uecho_main, e) == 0);
}

static void uecho_stop(struct uecho *e)
{
	atomic_store(&e->stop, 1);
	pthread_join(e->th, NULL);
	close(e->fd);
}

/* A UDP port of family with nothing bound to it a moment ago. */
static int udp_free_port(int family)
{
	int fd = udp_sock(family, 0), port = udp_port(fd);

	close(fd);
	return port;
}

/* ---- the forwarder ---- */

/*
 * sockfwd -u -b engine -l listen -r upstream extra... (NULL terminated),
 * ready once it logs its listener. listen is "127.0.0.1:P" style, with P
 * picked here ("%d" in the template).
 */
static void udp_fwd(struct fwd *f, const char *engine, const char *listen_fmt, int family,
		    const char *upstream, const char *const *extra)
{
	const char *argv[40];
	char listen[64];
	int n = 0, port = udp_free_port(family);

	snprintf(listen, sizeof(listen), listen_fmt, port);
	argv[n++] = "sockfwd";
	argv[n++] = "-u";
	argv[n++] = "-b";
	argv[n++] = engine;
	argv[n++] = "-j";
	argv[n++] = "1";
	argv[n++] = "-l";
	argv[n++] = listen;
	argv[n++] = "-r";
	argv[n++] = upstream;
	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	fwd_spawn(f, argv, 0);
	f->family = family;
	f->port = port;
	cr_assert(fwd_log_wait(f, E2E_READY_MS, "listening on udp", NULL),
		  "sockfwd did not start: %s", fwd_stderr_tail(f));
}

/* udp_fwd to echo server e with --metrics on a port picked here (returned). */
static int udp_fwd_metrics(struct fwd *f, const char *engine, const char *listen_fmt, int family,
			   const struct uecho *e, const char **extra)
{
	static char up[64], maddr[64];
	const char *x[20];
	int mport = free_port(AF_INET), n = 0;

	snprintf(up, sizeof(up), family == AF_INET6 ? "[::1]:%d" : "127.0.0.1:%d", e->port);
	snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", mport);
	x[n++] = "--metrics";
	x[n++] = maddr;
	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		x[n++] = extra[i];
	x[n] = NULL;
	udp_fwd(f, engine, listen_fmt, family, up, x);
	return mport;
}

/* GET /metrics into a malloc'd string. */
static char *scrape(int mport)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap), req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	int fd = -1;
	ssize_t n;

	cr_assert(buf != NULL);
	for (int i = 0; i < 100 && (fd = tcp_connect_try(AF_INET, mport)) < 0; i++)
		sleep_ms(50);
	cr_assert(fd >= 0, "metrics endpoint not reachable");
	send_all(fd, req, sizeof(req) - 1);
	while ((n = recv(fd, buf + len, cap - len - 1, 0)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf != NULL);
		}
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

/* The value of series (a whole "name{labels}") in text, or -1. */
static long long metric(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text;

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atoll(p + n + 1);
		p += n;
	}
	return -1;
}

static long long metric_now(int mport, const char *series)
{
	char *t = scrape(mport);
	long long v = metric(t, series);

	free(t);
	return v;
}

/* Wait (bounded) until series reaches want; fails with its last value. */
static void wait_metric(int mport, const char *series, long long want)
{
	long long v = -1;

	for (int i = 0; i < 200; i++) {
		if ((v = metric_now(mport, series)) == want)
			return;
		sleep_ms(50);
	}
	cr_assert_fail("%s is %lld, expected %lld", series, v, want);
}

#define ACTIVE	  "sockfwd_connections_active{rule=\"default\"}"
#define ACCEPTED  "sockfwd_connections_accepted_total{rule=\"default\"}"
#define CLOSED(r) "sockfwd_connections_closed_total{rule=\"default\",reason=\"" r "\"}"
#define DGRAMS(d) "sockfwd_udp_datagrams_total{rule=\"default\",direction=\"" d "\"}"
#define DROPS(r)  "sockfwd_udp_dropped_total{rule=\"default\",reason=\"" r "\"}"
#define UNREACH	  "sockfwd_udp_port_unreachable_total{rule=\"default\"}"

/* ---- clients ---- */

/* A client socket of family, from address src (NULL: loopback). */
static int client(int family, const char *src)
{
	struct sockaddr_storage ss;
	socklen_t len = loop_sa(&ss, family, src, 0);
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 2 };

	sys_assert(fd >= 0, "socket");
	sys_assert(bind(fd, (struct sockaddr *)&ss, len) == 0, "bind client");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_to(int fd, int family, const char *dst, int port, const void *buf, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = loop_sa(&ss, family, dst, port);
	ssize_t k = sendto(fd, buf, n, 0, (struct sockaddr *)&ss, len);

	sys_assert(k == (ssize_t)n, "sendto %zu bytes", n);
}

/*
 * Send n bytes of seed to dst:port and receive the echo: whole, same
 * bytes (by hash), one datagram. Retries a lost datagram a few times
 * (loopback may drop under load); returns 0 or -ETIMEDOUT.
 */
static int echo_dg(int fd, int family, const char *dst, int port, uint64_t seed, size_t n)
{
	static unsigned char out[65536], in[65536]; /* the test's thread only */
	struct gen g;

	gen_init(&g, seed);
	gen_fill(&g, out, n);
	for (int attempt = 0; attempt < 5; attempt++) {
		send_to(fd, family, dst, port, out, n);
		ssize_t k = recv(fd, in, sizeof(in), 0);

		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		sys_assert(k >= 0, "recv echo");
		cr_assert_eq((size_t)k, n, "echo of a %zu-byte datagram is %zd bytes", n, k);
		cr_assert_eq(hash_update(HASH_INIT, in, n), hash_update(HASH_INIT, out, n),
			     "echo of %zu bytes differs", n);
		return 0;
	}
	return -ETIMEDOUT;
}

static void echo_ok(int fd, int family, const char *dst, int port, uint64_t seed, size_t n)
{
	cr_assert_eq(echo_dg(fd, family, dst, port, seed, n), 0, "no echo of %zu bytes (%s)", n,
		     fwd_note());
}

/* Every engine serves UDP. */
#define UDP_TEST ENGINE_TEST

/* ---- tests ---- */

/*
 * Every size from 1 to 65,507 bytes comes back whole, one by one; then a
 * burst of datagrams of many sizes sent without waiting comes back as as
 * many datagrams of exactly those sizes (boundaries kept, never merged).
 */
UDP_TEST(udp, echo_sizes, 60)
{
	static const size_t sizes[] = { 1,    2,    3,	  64,	 512,	1400,  1472,	 1473,
					4096, 8192, 9000, 16384, 32768, 65000, UDP_MAXDG };
	static unsigned char in[65536];
	struct uecho e;
	struct fwd f;
	int fd, mport;
	unsigned seen[64] = { 0 };

	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, NULL);
	fd = client(AF_INET, NULL);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		echo_ok(fd, AF_INET, NULL, f.port, 100 + i, sizes[i]);
	/* A burst: 64 datagrams of sizes 7 + 13 i, each with its index first. */
	for (unsigned i = 0; i < 64; i++) {
		unsigned char b[1000];
		size_t n = 7 + 13 * i;
		struct gen g;

		gen_init(&g, 1000 + i);
		gen_fill(&g, b, n);
		b[0] = (unsigned char)i;
		send_to(fd, AF_INET, NULL, f.port, b, n);
	}
	for (unsigned k = 0; k < 64; k++) {
		ssize_t n = recv(fd, in, sizeof(in), 0);
		unsigned char b[1000];
		struct gen g;
		unsigned i;

		sys_assert(n > 0, "burst echo %u of 64", k);
		i = in[0];
		cr_assert(i < 64 && !seen[i], "burst echo %u: bad or repeated index %u", k, i);
		seen[i] = 1;
		cr_assert_eq((size_t)n, 7 + 13 * i, "datagram %u: %zd bytes, sent %u", i, n,
			     7 + 13 * i);
		gen_init(&g, 1000 + i);
		gen_fill(&g, b, (size_t)n);
		b[0] = (unsigned char)i;
		cr_assert(memcmp(b, in, (size_t)n) == 0, "datagram %u differs", i);
	}
	/* One client, one session, however many datagrams. */
	cr_assert_eq(metric_now(mport, ACCEPTED), 1);
	cr_assert_eq(metric_now(mport, DGRAMS("client_to_upstream")), 15 + 64);
	cr_assert_eq(metric_now(mport, DGRAMS("upstream_to_client")), 15 + 64);
	close(fd);
	fwd_signal_wait(&f, SIGTERM);
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "%s", fwd_status_str(&f));
	cr_assert_eq(fwd_log_count(&f, "stats udp: sessions=1 datagrams=79/79 ", "dropped=0"), 1,
		     "exit line: %s", fwd_stderr_tail(&f));
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * 1,000 client addresses at once: 1,000 sessions, each with its own
 * upstream socket (the forwarder's descriptors grow by 1,000), each
 * answered on its own address.
 */
UDP_TEST(udp, thousand_clients, 120)
{
	enum { N = 1000, WAVE = 50 };
	static int fds[N];
	struct uecho e;
	struct fwd f;
	int mport, base;

	raise_nofile();
	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, NULL);
	base = proc_fd_count(f.pid);
	/* In waves, so the listener's receive queue never overflows. */
	for (int w = 0; w < N; w += WAVE) {
		for (int i = w; i < w + WAVE; i++) {
			uint32_t id = (uint32_t)i;

			fds[i] = client(AF_INET, NULL);
			send_to(fds[i], AF_INET, NULL, f.port, &id, sizeof(id));
		}
		for (int i = w; i < w + WAVE; i++) {
			uint32_t got = UINT32_MAX;
			ssize_t k = recv(fds[i], &got, sizeof(got), 0);

			if (k < 0) /* lost under load: once more */
				cr_assert_eq(echo_dg(fds[i], AF_INET, NULL, f.port, i, 8), 0,
					     "client %d: no answer", i);
			else
				cr_assert(k == 4 && got == (uint32_t)i,
					  "client %d got another's datagram", i);
		}
	}
	wait_metric(mport, ACTIVE, N);
	cr_assert_geq(proc_fd_count(f.pid), base + N, "fds %d, baseline %d", proc_fd_count(f.pid),
		      base);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * --udp-timeout: idle sessions end, and the forwarder's descriptors
 * return to their count; a session kept busy past the time-out lives on.
 */
UDP_TEST(udp, session_timeout, 60)
{
	const char *x[] = { "--udp-timeout", "400ms", NULL };
	struct uecho e;
	struct fwd f;
	int fds[20], busy, mport, base, n = -1;

	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, x);
	/*
	 * The baseline: once a first session has come and gone, so that
	 * whatever the worker opens as it starts is counted in.
	 */
	fds[0] = client(AF_INET, NULL);
	echo_ok(fds[0], AF_INET, NULL, f.port, 1000, 8);
	close(fds[0]);
	base = proc_fd_count(f.pid);
	for (int i = 0; i < 200 && (n = proc_fd_count(f.pid)) != base - 1; i++)
		sleep_ms(50);
	cr_assert_eq(n, base - 1, "the first session did not end (descriptors %d of %d)", n, base);
	base = n;
	for (int i = 0; i < 20; i++) {
		fds[i] = client(AF_INET, NULL);
		echo_ok(fds[i], AF_INET, NULL, f.port, i, 32);
	}
	busy = client(AF_INET, NULL);
	echo_ok(busy, AF_INET, NULL, f.port, 99, 32);
	cr_assert_geq(proc_fd_count(f.pid), base + 21);
	/* Keep one busy, well within its time-out, while the others expire. */
	for (int i = 0; i < 200 && (n = proc_fd_count(f.pid)) != base + 1; i++) {
		sleep_ms(50);
		echo_ok(busy, AF_INET, NULL, f.port, 99, 32);
	}
	cr_assert_eq(n, base + 1, "descriptors %d, expected baseline %d + the busy session", n,
		     base);
	cr_assert_eq(metric_now(mport, CLOSED("idle-timeout")), 21);
	cr_assert_eq(metric_now(mport, ACCEPTED), 22, "the busy client kept its session");
	for (int i = 0; i < 200 && (n = proc_fd_count(f.pid)) != base; i++)
		sleep_ms(50);
	cr_assert_eq(n, base, "descriptors %d, baseline %d", n, base);
	for (int i = 0; i < 20; i++)
		close(fds[i]);
	close(busy);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * --max-sessions 5: the sixth client evicts the least recently used
 * session, and a datagram makes a session the most recently used.
 */
UDP_TEST(udp, max_sessions_lru, 60)
{
	const char *x[] = { "--max-sessions", "5", NULL };
	struct uecho e;
	struct fwd f;
	int c[8], mport;

	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, x);
	for (int i = 0; i < 8; i++) {
		c[i] = client(AF_INET, NULL);
		if (i < 5)
			echo_ok(c[i], AF_INET, NULL, f.port, i, 16);
	}
	wait_metric(mport, ACTIVE, 5);
	/* 0 is now the most recent: 1 is the least. */
	echo_ok(c[0], AF_INET, NULL, f.port, 0, 16);
	echo_ok(c[5], AF_INET, NULL, f.port, 5, 16); /* evicts 1 */
	echo_ok(c[6], AF_INET, NULL, f.port, 6, 16); /* evicts 2 */
	wait_metric(mport, CLOSED("limit"), 2);
	cr_assert_eq(metric_now(mport, ACTIVE), 5);
	cr_assert_eq(metric_now(mport, ACCEPTED), 7);
	/* 0 kept its session (no new one); 1 lost its (a new one). */
	echo_ok(c[0], AF_INET, NULL, f.port, 0, 16);
	cr_assert_eq(metric_now(mport, ACCEPTED), 7, "client 0 was evicted: not LRU order");
	echo_ok(c[1], AF_INET, NULL, f.port, 1, 16); /* evicts 3 */
	cr_assert_eq(metric_now(mport, ACCEPTED), 8);
	wait_metric(mport, CLOSED("limit"), 3);
	cr_assert_eq(metric_now(mport, ACTIVE), 5);
	for (int i = 0; i < 8; i++)
		close(c[i]);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * A wildcard listener: a client that wrote to 127.0.0.2 hears back from
 * 127.0.0.2, one that wrote to 127.0.0.1 from 127.0.0.1 (IP_PKTINFO);
 * for ":port" (dual stack) and "0.0.0.0:port".
 */
static void reply_source(const char *engine, const char *listen_fmt)
{
	static const char *const dst[] = { "127.0.0.1", "127.0.0.2", "127.0.0.3" };
	struct uecho e;
	struct fwd f;

	uecho_start(&e, AF_INET, 0);
	udp_fwd_metrics(&f, engine, listen_fmt, AF_INET, &e, NULL);
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < 3; i++) {
			int fd = client(AF_INET, NULL);
			struct sockaddr_in from;
			socklen_t flen = sizeof(from);
			char in[16], ip[INET_ADDRSTRLEN];
			ssize_t n;

			send_to(fd, AF_INET, dst[i], f.port, "where", 5);
			n = recvfrom(fd, in, sizeof(in), 0, (struct sockaddr *)&from, &flen);
			sys_assert(n == 5, "echo from %s", dst[i]);
			inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
			cr_assert_str_eq(ip, dst[i], "wrote to %s, answered from %s", dst[i], ip);
			cr_assert_eq(ntohs(from.sin_port), f.port);
			close(fd);
		}
	}
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

UDP_TEST(udp, reply_source_dualstack, 30) { reply_source(engine, ":%d"); }

UDP_TEST(udp, reply_source_ipv4_any, 30) { reply_source(engine, "0.0.0.0:%d"); }

/* IPv6 both sides: [::1] listener, [::1] upstream, sizes to the largest. */
UDP_TEST(udp, ipv6, 30)
{
	struct uecho e;
	struct fwd f;
	int fd;

	uecho_start(&e, AF_INET6, 0);
	udp_fwd_metrics(&f, engine, "[::1]:%d", AF_INET6, &e, NULL);
	fd = client(AF_INET6, NULL);
	echo_ok(fd, AF_INET6, NULL, f.port, 1, 1);
	echo_ok(fd, AF_INET6, NULL, f.port, 2, 1280);
	echo_ok(fd, AF_INET6, NULL, f.port, 3, UDP_MAXDG);
	close(fd);
	/* Through a wildcard listener too, answered from ::1. */
	fwd_stop(&f);
	fwd_release(&f);
	udp_fwd_metrics(&f, engine, "[::]:%d", AF_INET6, &e, NULL);
	fd = client(AF_INET6, NULL);
	echo_ok(fd, AF_INET6, NULL, f.port, 4, 100);
	close(fd);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * An upstream port with nothing bound answers ICMP port unreachable:
 * counted, and the session goes on, so once a server binds the port the
 * same session carries the echo.
 */
UDP_TEST(udp, port_unreachable, 30)
{
	struct uecho e;
	struct fwd f;
	int fd, mport, port = udp_free_port(AF_INET);
	char in[16];

	/* A stand-in with the free port, so udp_fwd_metrics points at it. */
	e.port = port;
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, NULL);
	fd = client(AF_INET, NULL);
	for (int i = 0; i < 50 && metric_now(mport, UNREACH) < 2; i++) {
		send_to(fd, AF_INET, NULL, f.port, "ping", 4);
		sleep_ms(50);
	}
	cr_assert_geq(metric_now(mport, UNREACH), 2, "ICMP port unreachable not counted");
	cr_assert_eq(recv(fd, in, sizeof(in), MSG_DONTWAIT), -1, "an answer from nowhere");
	fwd_assert_alive(&f);
	uecho_start(&e, AF_INET, port);
	echo_ok(fd, AF_INET, NULL, f.port, 7, 300);
	cr_assert_eq(metric_now(mport, ACCEPTED), 1, "the session did not go on");
	close(fd);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * Echo a 64-byte datagram of seed on fd once the flood's own echoes are
 * out of the way: they may still be arriving (the forwarder and the echo
 * server work through their queues), so datagrams equal to the flood's
 * payload are skipped, not mistaken for a wrong echo. A probe lost on the
 * way (a queue still full) is sent again, a few times.
 */
static void echo_after_flood(int fd, int port, const char *flood, size_t flen, uint64_t seed)
{
	unsigned char out[64], in[128];
	struct gen g;

	gen_init(&g, seed);
	gen_fill(&g, out, sizeof(out));
	for (int attempt = 0; attempt < 5; attempt++) {
		send_to(fd, AF_INET, NULL, port, out, sizeof(out));
		for (int i = 0; i < 100000; i++) {
			ssize_t k = recv(fd, in, sizeof(in), 0);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && errno == EAGAIN)
				break; /* lost: send again */
			sys_assert(k >= 0, "recv echo after the flood");
			if ((size_t)k == flen && memcmp(in, flood, flen) == 0)
				continue;
			cr_assert(k == (ssize_t)sizeof(out) && memcmp(in, out, sizeof(out)) == 0,
				  "echo after the flood differs (%zd bytes)", k);
			return;
		}
	}
	cr_assert_fail("no echo after the flood");
}

/*
 * A flood beyond capacity: the forwarder is stopped (SIGSTOP) while
 * 20,000 datagrams arrive, so its receive queue overflows; once it runs
 * again the kernel's drops are counted (SO_RXQ_OVFL), every datagram is
 * either forwarded or counted as dropped, and service resumes.
 */
UDP_TEST(udp, flood, 60)
{
	enum { N = 20000 };
	struct uecho e;
	struct fwd f;
	int fd, mport;
	long long fwdd, drops;
	char b[64] = "flood";

	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, NULL);
	fd = client(AF_INET, NULL);
	echo_ok(fd, AF_INET, NULL, f.port, 1, 64); /* the session exists */
	sys_assert(kill(f.pid, SIGSTOP) == 0, "SIGSTOP");
	for (int i = 0; i < N; i++)
		send_to(fd, AF_INET, NULL, f.port, b, sizeof(b));
	sys_assert(kill(f.pid, SIGCONT) == 0, "SIGCONT");
	/* The next datagram read carries the drop count: send until it is seen. */
	for (int i = 0; i < 100 && metric_now(mport, DROPS("queue")) <= 0; i++) {
		send_to(fd, AF_INET, NULL, f.port, b, sizeof(b));
		sleep_ms(20);
	}
	drops = metric_now(mport, DROPS("queue"));
	cr_assert_gt(drops, 0, "no receive queue drop counted");
	fwd_assert_alive(&f);
	/* Service resumes, for this client and a new one. */
	{
		int c2 = client(AF_INET, NULL);

		echo_after_flood(fd, f.port, b, sizeof(b), 2);
		echo_ok(c2, AF_INET, NULL, f.port, 3, 64);
		close(c2);
	}
	fwdd = metric_now(mport, DGRAMS("client_to_upstream"));
	drops = metric_now(mport, DROPS("queue"));
	/* Every datagram of the flood was forwarded or counted as dropped. */
	cr_assert_geq(fwdd + drops, N, "forwarded %lld + dropped %lld < %d sent", fwdd, drops, N);
	close(fd);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/* socat as a real client: a line out, the same line back. */
UDP_TEST(udp, socat_client, 30)
{
	struct uecho e;
	struct fwd f;
	char cmd[256], out[256] = "";
	FILE *p;

	if (system("command -v socat >/dev/null 2>&1") != 0)
		cr_skip_test("socat not installed (tools/install-deps.sh test)");
	uecho_start(&e, AF_INET, 0);
	udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, NULL);
	snprintf(cmd, sizeof(cmd),
		 "echo hello-over-udp | timeout 10 socat -t 3 - UDP:127.0.0.1:%d 2>&1", f.port);
	p = popen(cmd, "r");
	cr_assert(p != NULL);
	if (fgets(out, sizeof(out), p) == NULL)
		out[0] = '\0';
	pclose(p);
	cr_assert_str_eq(out, "hello-over-udp\n", "socat got '%s'", out);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * A config file: a TCP rule and a UDP rule on the same port both serve;
 * two UDP rules on one port, or a UDP rule with a PROXY protocol key,
 * are refused by -t.
 */
Test(udp, config_tcp_and_udp_one_port, .timeout = 60)
{
	struct fwd_conf c = { .engine = "epoll", .nlisten = 1 };
	struct uecho e;
	struct srv s;
	struct fwd f;
	char text[1024];
	int fd;

	uecho_start(&e, AF_INET, 0);
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	c.up[1] = e.port;
	snprintf(text, sizeof(text),
		 "engine = \"@E\";\nthreads = 2;\nrules = {\n"
		 "  t = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		 "  u = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		 "\"127.0.0.1:@U1\"; udp_timeout = \"5s\"; max_sessions = 10; };\n"
		 "};\n");
	fwd_start_conf(&f, &c, text);
	cr_assert(fwd_log_wait(&f, E2E_READY_MS, "listening on udp", NULL));
	echo_once(AF_INET, c.lport[0], 5, 100000);
	fd = client(AF_INET, NULL);
	echo_ok(fd, AF_INET, NULL, c.lport[0], 6, 1000);
	close(fd);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
	uecho_stop(&e);

	/* Refused: two UDP rules on one address, PROXY protocol on UDP. */
	static const char *const bad[] = {
		"rules = {\n a = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		"\"127.0.0.1:9\"; };\n b = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; "
		"upstream = \"127.0.0.1:9\"; };\n};\n",
		"rules = {\n a = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		"\"127.0.0.1:9\"; proxy_protocol = \"v2\"; };\n};\n",
		"defaults = { accept_proxy = true; };\nrules = {\n a = { protocol = \"udp\"; "
		"listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:9\"; };\n};\n",
		"rules = {\n a = { protocol = \"sctp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		"\"127.0.0.1:9\"; };\n};\n",
		"rules = {\n a = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		"\"127.0.0.1:9\"; max_sessions = 0; };\n};\n",
	};
	static const char *const want[] = { "overlaps", "no PROXY protocol for UDP",
					    "accept_proxy is TCP only", "unknown protocol 'sctp'",
					    "out of range" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[] = { "sockfwd", "-t", "-c", c.path, NULL };
		char err[1024];
		int st;

		conf_write(&c, bad[i]);
		st = fwd_run(argv, E2E_EXIT_MS, NULL, 0, err, sizeof(err));
		cr_assert_eq(st, 2, "file %zu: exit %d: %s", i, st, err);
		cr_assert(strstr(err, want[i]) != NULL, "file %zu: message: %s", i, err);
	}
	conf_remove(&c);
}

/* Command-line mistakes around -u. */
Test(udp, cli_errors, .timeout = 30)
{
	static const char *const args[][12] = {
		{ "sockfwd", "-u", "-l", "127.0.0.1:1", "-r", "127.0.0.1:2", "--proxy-protocol",
		  "v1", NULL },
		{ "sockfwd", "-u", "-l", "127.0.0.1:1", "-r", "127.0.0.1:2", "--udp-timeout", "0",
		  NULL },
		{ "sockfwd", "-u", "-l", "127.0.0.1:1", "-r", "127.0.0.1:2", "--max-sessions", "x",
		  NULL },
		{ "sockfwd", "-u", "-c", "/nonexistent.conf", NULL },
	};
	static const char *const want[] = { "no PROXY protocol for UDP", "greater than 0",
					    "expected a number", "-u cannot be combined with -c" };

	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
		char err[1024];
		int st = fwd_run((const char *const *)args[i], E2E_EXIT_MS, NULL, 0, err,
				 sizeof(err));

		cr_assert_eq(st, 2, "case %zu: exit %d: %s", i, st, err);
		cr_assert(strstr(err, want[i]) != NULL, "case %zu: message: %s", i, err);
	}
}

/* SIGHUP, then wait until main has logged "reloaded" once more. */
static void sighup(struct fwd *f)
{
	int before = fwd_log_count(f, "reloaded ", NULL);

	fwd_assert_alive(f);
	sys_assert(kill(f->pid, SIGHUP) == 0, "kill SIGHUP");
	for (int i = 0; i < 1000 && fwd_log_count(f, "reloaded ", NULL) <= before; i++)
		sleep_ms(10);
	cr_assert_gt(fwd_log_count(f, "reloaded ", NULL), before, "no 'reloaded' line (%s)",
		     fwd_stderr_tail(f));
}

/* A datagram from fd to port gets no answer within ms. */
static int no_answer(int fd, int port, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	char in[64];
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	send_to(fd, AF_INET, NULL, port, "anyone", 6);
	n = recv(fd, in, sizeof(in), 0);
	tv.tv_sec = 2;
	tv.tv_usec = 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return n < 0;
}

/*
 * Reload: a session keeps the generation it began in (its upstream, even
 * when the rule now names another), a new client gets the new rule, and
 * when the rule is removed its sessions end and the port stops answering
 * UDP (its TCP rule, on the same port, stays).
 */
UDP_TEST(udp, reload, 60)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 1 };
	struct uecho e1, e2;
	struct fwd f;
	static const char *const conf =
		"engine = \"@E\";\nthreads = 1;\nlog_level = \"verbose\";\nrules = {\n"
		"  t = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:9\"; };\n"
		"  u = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		"\"127.0.0.1:@U0\"; };\n};\n";
	static const char *const conf_tcp =
		"engine = \"@E\";\nthreads = 1;\nlog_level = \"verbose\";\nrules = {\n"
		"  t = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:9\"; };\n};\n";
	int a, b;

	uecho_start(&e1, AF_INET, 0);
	uecho_start(&e2, AF_INET, 0);
	c.up[0] = e1.port;
	fwd_start_conf(&f, &c, conf);
	cr_assert(fwd_log_wait(&f, E2E_READY_MS, "listening on udp", NULL));
	a = client(AF_INET, NULL);
	echo_ok(a, AF_INET, NULL, c.lport[0], 1, 100);
	cr_assert_eq(atomic_load(&e1.seen), 1);
	/* The rule now forwards to e2: a keeps e1, a new client b gets e2. */
	c.up[0] = e2.port;
	conf_write(&c, conf);
	sighup(&f);
	echo_ok(a, AF_INET, NULL, c.lport[0], 2, 100);
	cr_assert_eq(atomic_load(&e1.seen), 2, "the session moved to the new rule's upstream");
	b = client(AF_INET, NULL);
	echo_ok(b, AF_INET, NULL, c.lport[0], 3, 100);
	cr_assert_eq(atomic_load(&e2.seen), 1);
	cr_assert_eq(fwd_log_count(&f, "close udp", NULL), 0, "a session ended at reload");
	/* The rule goes: both sessions end, and nothing answers on its port. */
	conf_write(&c, conf_tcp);
	sighup(&f);
	cr_assert(fwd_log_wait(&f, 5000, "close udp", "reason=stop"));
	for (int i = 0; i < 100 && fwd_log_count(&f, "close udp", "reason=stop") < 2; i++)
		sleep_ms(20);
	cr_assert_eq(fwd_log_count(&f, "close udp", "reason=stop"), 2);
	cr_assert(no_answer(a, c.lport[0], 300), "a removed UDP rule still answers");
	close(a);
	close(b);
	fwd_stop(&f);
	fwd_release(&f);
	conf_remove(&c);
	uecho_stop(&e1);
	uecho_stop(&e2);
}

/*
 * Drain (SIGTERM with --drain-timeout): UDP listeners close at once and
 * their sessions end, while a TCP connection goes on to its end.
 */
UDP_TEST(udp, drain, 60)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 1 };
	struct uecho e;
	struct srv s;
	struct fwd f;
	static const char *const conf =
		"engine = \"@E\";\nthreads = 2;\nlog_level = \"verbose\";\n"
		"drain_timeout = \"20s\";\nrules = {\n"
		"  t = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U1\"; };\n"
		"  u = { protocol = \"udp\"; listen = \"127.0.0.1:@L0\"; upstream = "
		"\"127.0.0.1:@U0\"; };\n};\n";
	int a, t;

	uecho_start(&e, AF_INET, 0);
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = e.port;
	c.up[1] = s.port;
	fwd_start_conf(&f, &c, conf);
	cr_assert(fwd_log_wait(&f, E2E_READY_MS, "listening on udp", NULL));
	a = client(AF_INET, NULL);
	echo_ok(a, AF_INET, NULL, c.lport[0], 1, 100);
	t = tcp_connect(AF_INET, c.lport[0]);
	echo_roundtrip(t, 5, 1000);
	sys_assert(kill(f.pid, SIGTERM) == 0, "SIGTERM");
	cr_assert(fwd_log_wait(&f, 5000, "close udp", "reason=stop"), "%s", fwd_stderr_tail(&f));
	/* Every worker closed its sockets (one may still hold its own till then). */
	cr_assert(fwd_log_wait(&f, 5000, "drain: stopped accepting", NULL), "%s",
		  fwd_stderr_tail(&f));
	cr_assert(no_answer(a, c.lport[0], 300), "a draining forwarder still answers UDP");
	/* The TCP connection goes on, then ends the drain. */
	echo_roundtrip(t, 6, 1000);
	fwd_assert_alive(&f);
	close(t);
	cr_assert(fwd_wait(&f, E2E_EXIT_MS), "the drain did not end with its last connection");
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "%s", fwd_status_str(&f));
	close(a);
	fwd_release(&f);
	conf_remove(&c);
	srv_stop(&s);
	uecho_stop(&e);
}

/* ---- GSO bursts both ways ---- */

#include <netinet/udp.h>

/* Send n bytes of seed from fd to dst (connected when NULL) as gso-byte datagrams in one call. */
static void send_gso(int fd, const struct sockaddr_storage *dst, socklen_t dlen, uint64_t seed,
		     size_t n, int gso)
{
	unsigned char *buf = malloc(n); /* called from two threads */
	char ctl[CMSG_SPACE(sizeof(uint16_t))] = { 0 };
	struct iovec iov = { buf, n };
	struct msghdr msg = { .msg_name = (void *)dst,
			      .msg_namelen = dlen,
			      .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = ctl,
			      .msg_controllen = sizeof(ctl) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	uint16_t v = (uint16_t)gso;
	struct gen g;

	cr_assert(buf != NULL);
	gen_init(&g, seed);
	gen_fill(&g, buf, n);
	c->cmsg_level = SOL_UDP;
	c->cmsg_type = UDP_SEGMENT;
	c->cmsg_len = CMSG_LEN(sizeof(v));
	memcpy(CMSG_DATA(c), &v, sizeof(v));
	sys_assert(sendmsg(fd, &msg, 0) == (ssize_t)n, "sendmsg with UDP_SEGMENT");
	free(buf);
}

/*
 * Receive the datagrams a GSO send of n bytes of seed in gso-byte
 * segments makes, on fd: each one whole, in order, of the right size and
 * bytes. Fails otherwise.
 */
static void recv_segments(int fd, uint64_t seed, size_t n, int gso, const char *who)
{
	static unsigned char want[65536], in[65536]; /* the test's thread only */
	struct gen g;
	size_t off;
	int k = 0;

	gen_init(&g, seed);
	gen_fill(&g, want, n);
	for (off = 0; off < n; off += (size_t)gso, k++) {
		size_t len = n - off < (size_t)gso ? n - off : (size_t)gso;
		ssize_t r = recv(fd, in, sizeof(in), 0);

		sys_assert(r >= 0, "%s: datagram %d", who, k);
		cr_assert_eq((size_t)r, len,
			     "%s: datagram %d is %zd bytes, sent %zu (merged or split)", who, k, r,
			     len);
		cr_assert(memcmp(in, want + off, len) == 0, "%s: datagram %d differs", who, k);
	}
}

struct gso_up {
	int fd;
	struct sockaddr_storage peer;
	socklen_t plen;
	atomic_int got; /* datagrams checked */
	atomic_int fail;
	pthread_t th;
};

/* The upstream: checks the client's burst, then answers with a burst of its own. */
static void *gso_up_main(void *arg)
{
	struct gso_up *up = arg;
	static unsigned char want[65536], in[65536];
	struct gen g;
	size_t off;

	gen_init(&g, 77);
	gen_fill(&g, want, 20500);
	for (off = 0; off < 20500; off += 1000) {
		size_t len = 20500 - off < 1000 ? 20500 - off : 1000;
		ssize_t r;

		up->plen = sizeof(up->peer);
		r = recvfrom(up->fd, in, sizeof(in), 0, (struct sockaddr *)&up->peer, &up->plen);
		if (r != (ssize_t)len || memcmp(in, want + off, len) != 0) {
			atomic_store(&up->fail, (int)(off / 1000) + 1);
			return NULL;
		}
		atomic_fetch_add(&up->got, 1);
	}
	send_gso(up->fd, &up->peer, up->plen, 78, 36700, 1200);
	return NULL;
}

/*
 * A client's GSO burst (20 datagrams of 1,000 bytes and one of 500, in
 * one sendmsg) reaches the upstream as the same 21 datagrams (the
 * forwarder's GRO and UDP_SEGMENT, or its fallback, keep boundaries),
 * and the upstream's burst back (30 of 1,200 and one of 700) reaches
 * the client the same way.
 */
UDP_TEST(udp, gso_bursts, 30)
{
	struct gso_up up = { .fd = udp_sock(AF_INET, 0) };
	struct uecho stand_in;
	struct sockaddr_storage dst;
	socklen_t dlen;
	struct fwd f;
	int fd, mport;

	stand_in.port = udp_port(up.fd);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &stand_in, NULL);
	cr_assert(pthread_create(&up.th, NULL, gso_up_main, &up) == 0);
	fd = client(AF_INET, NULL);
	dlen = loop_sa(&dst, AF_INET, NULL, f.port);
	send_gso(fd, &dst, dlen, 77, 20500, 1000);
	recv_segments(fd, 78, 36700, 1200, "client");
	pthread_join(up.th, NULL);
	cr_assert_eq(atomic_load(&up.fail), 0, "upstream: datagram %d wrong",
		     atomic_load(&up.fail) - 1);
	cr_assert_eq(atomic_load(&up.got), 21);
	cr_assert_eq(metric_now(mport, DGRAMS("client_to_upstream")), 21);
	cr_assert_eq(metric_now(mport, DGRAMS("upstream_to_client")), 31);
	cr_assert_eq(metric_now(mport, DROPS("send")), 0);
	close(fd);
	close(up.fd);
	fwd_stop(&f);
	fwd_release(&f);
}

/* Receive the echo of n bytes of seed on fd: whole and the same bytes (by hash), or fail. */
static void recv_echo(int fd, uint64_t seed, size_t n, const char *who)
{
	static unsigned char out[2048], in[2048]; /* the test's thread only */
	struct gen g;
	ssize_t k;

	cr_assert(n <= sizeof(out));
	gen_init(&g, seed);
	gen_fill(&g, out, n);
	do
		k = recv(fd, in, sizeof(in), 0);
	while (k < 0 && errno == EINTR);
	sys_assert(k >= 0, "%s: no echo of datagram %#llx (%s)", who, (unsigned long long)seed,
		   fwd_note());
	cr_assert(k == (ssize_t)n &&
			  hash_update(HASH_INIT, in, n) == hash_update(HASH_INIT, out, n),
		  "%s: echo of datagram %#llx is wrong or out of order (%zd bytes)", who,
		  (unsigned long long)seed, k);
}

/* n bytes of seed to the forwarder's port on fd, without waiting for the echo. */
static void send_seed(int fd, int port, uint64_t seed, size_t n)
{
	unsigned char out[2048];
	struct gen g;

	gen_init(&g, seed);
	gen_fill(&g, out, n);
	send_to(fd, AF_INET, NULL, port, out, n);
}

/*
 * One read of the listener holds datagrams of several clients, new and
 * known, interleaved: the forwarder is stopped while 4 clients send runs
 * of 1 to 3 datagrams in turn, so that after SIGCONT one batch carries
 * them all. Each client gets every echo back, intact and in its order
 * (each run of one session goes upstream in one call).
 */
UDP_TEST(udp, interleaved_batch, 30)
{
	enum { NC = 4, ROUNDS = 6 };
	struct uecho e;
	struct fwd f;
	int c[NC], mport, sent[NC] = { 0 };

	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, NULL);
	for (int k = 0; k < NC; k++)
		c[k] = client(AF_INET, NULL);
	sys_assert(kill(f.pid, SIGSTOP) == 0, "SIGSTOP");
	for (int r = 0; r < ROUNDS; r++)
		for (int k = 0; k < NC; k++)
			for (int j = 0; j < 1 + (r + k) % 3; j++, sent[k]++)
				send_seed(c[k], f.port, (uint64_t)k << 16 | (uint64_t)sent[k],
					  (size_t)(40 + 97 * sent[k] % 1300));
	sys_assert(kill(f.pid, SIGCONT) == 0, "SIGCONT");
	for (int k = 0; k < NC; k++) {
		for (int i = 0; i < sent[k]; i++)
			recv_echo(c[k], (uint64_t)k << 16 | (uint64_t)i,
				  (size_t)(40 + 97 * i % 1300), "client");
		close(c[k]);
	}
	cr_assert_eq(metric_now(mport, ACCEPTED), NC);
	cr_assert_eq(metric_now(mport, DROPS("send")), 0);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}

/*
 * Sessions made and evicted inside one batch (--max-sessions 2; the
 * forwarder stopped while clients 0, 1, 2 and 0 again send, so one read
 * carries all four): 2 evicts 0, 0's second datagram evicts 1. Every
 * datagram goes upstream and the forwarder survives (under ASan: no
 * session used after it was freed); 2 and 0's second datagram are echoed.
 */
UDP_TEST(udp, evict_inside_batch, 30)
{
	const char *x[] = { "--max-sessions", "2", NULL };
	struct uecho e;
	struct fwd f;
	int c[3], mport;

	uecho_start(&e, AF_INET, 0);
	mport = udp_fwd_metrics(&f, engine, "127.0.0.1:%d", AF_INET, &e, x);
	for (int k = 0; k < 3; k++)
		c[k] = client(AF_INET, NULL);
	sys_assert(kill(f.pid, SIGSTOP) == 0, "SIGSTOP");
	send_seed(c[0], f.port, 0xa0, 100);
	send_seed(c[1], f.port, 0xa1, 100);
	send_seed(c[2], f.port, 0xa2, 100);
	send_seed(c[0], f.port, 0xb0, 200);
	sys_assert(kill(f.pid, SIGCONT) == 0, "SIGCONT");
	recv_echo(c[2], 0xa2, 100, "client 2");
	recv_echo(c[0], 0xb0, 200, "client 0 (its first session evicted)");
	wait_metric(mport, CLOSED("limit"), 2);
	cr_assert_eq(metric_now(mport, ACCEPTED), 4);
	cr_assert_eq(metric_now(mport, DGRAMS("client_to_upstream")), 4);
	fwd_assert_alive(&f);
	for (int k = 0; k < 3; k++)
		close(c[k]);
	fwd_stop(&f);
	fwd_release(&f);
	uecho_stop(&e);
}
