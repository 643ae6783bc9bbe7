/*
 * sfload: the load generator and servers of the sockfwd bench suite.
 *
 *   sfload serve  -l HOST:PORT
 *   sfload stream -c HOST:PORT [-n STREAMS] [-t SEC] [-d c2s|s2c] [-s CHUNK]
 *   sfload crr    -c HOST:PORT [-n CLIENTS] [-t SEC] [-m MAXCONNS] [-s SIZE] [-a NADDR]
 *   sfload rr     -c HOST:PORT [-n CONNS] [-t SEC] [-s SIZE]
 *   sfload idle   -c HOST:PORT [-n CONNS] [-H SEC] [-W] [-a NADDR]
 *
 * Protocol: the first byte a client sends picks what the server does with
 * that connection: 'K' sink (read until EOF, then close), 'S' source (write
 * until the peer goes away), 'E' echo (echo until EOF, then close).
 *
 * Every client prints one JSON object on stdout when done, with its own CPU
 * time (utime + stime of this process over the measured interval), so a
 * reader can tell whether the generator itself was the bottleneck.
 * Clients connect from spread 127.64.x.y source addresses (-a) so that
 * connection-rate runs do not run out of ephemeral ports or trip over
 * TIME_WAIT. Every loop is bounded in time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SL_CHUNK	       (256u * 1024)	  /* default stream write/read size */
#define SL_MAX_EVENTS	       256		  /* epoll batch */
#define SL_LAT_CAP	       (8u * 1024 * 1024) /* latency samples kept at most */
#define SL_DRAIN_TIMEOUT_NS    10000000000ull	  /* wait for the sink's close */
#define SL_IDLE_OPEN_TIMEOUT_S 120		  /* opening all idle connections */
#define SL_IDLE_WAIT_MAX_S     300		  /* waiting on stdin while holding */
#define SL_INFLIGHT	       128		  /* idle: connects in flight at once */
#define NS		       1000000000ull

/* Options shared by every subcommand; unused ones keep their defaults. */
struct opts {
	struct sockaddr_in target;
	int have_target;
	unsigned n;	   /* streams, clients, connections */
	double seconds;	   /* measured duration */
	size_t size;	   /* chunk (stream) or message size (crr, rr) */
	unsigned long max; /* crr: connections at most, 0 = no limit */
	unsigned naddr;	   /* spread over this many source addresses */
	int s2c;	   /* stream direction */
	double hold;	   /* idle: seconds to hold before the check */
	int wait_stdin;	   /* idle: also wait for a line on stdin */
};

/* Latency samples in nanoseconds, kept up to SL_LAT_CAP. */
struct lat {
	uint32_t *v;
	size_t n, cap;
	uint64_t dropped;
};

static void die(const char *what)
{
	fprintf(stderr, "sfload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void diex(const char *what)
{
	fprintf(stderr, "sfload: %s\n", what);
	exit(1);
}

/* Monotonic time in nanoseconds. */
static uint64_t now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		die("clock_gettime");
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* This process's CPU time (user + system, all threads) in seconds. */
static double cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		die("getrusage");
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Raise the soft descriptor limit to the hard one (idle needs thousands). */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit");
}

/* Parse "a.b.c.d:port" into sa. Returns 0, or -1 when malformed. */
static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* Parse a size with an optional k or m suffix. Returns 0 when malformed. */
static size_t parse_size(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*end == 'k' || *end == 'K')
		v *= 1024, end++;
	else if (*end == 'm' || *end == 'M')
		v *= 1024 * 1024, end++;
	return *end == '\0' ? v : 0;
}

static void usage(void)
{
	fputs("usage: sfload serve -l HOST:PORT\n"
	      "       sfload stream -c HOST:PORT [-n STREAMS] [-t SEC] [-d c2s|s2c] [-s CHUNK]\n"
	      "       sfload crr -c HOST:PORT [-n CLIENTS] [-t SEC] [-m MAX] [-s SIZE] [-a NADDR]\n"
	      "       sfload rr -c HOST:PORT [-n CONNS] [-t SEC] [-s SIZE]\n"
	      "       sfload idle -c HOST:PORT [-n CONNS] [-H SEC] [-W] [-a NADDR]\n",
	      stderr);
	exit(2);
}

/* Parse the options after the subcommand into o; exits on errors. */
static void parse_opts(int argc, char **argv, struct opts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->n = 1;
	o->seconds = 5;
	o->size = 0;
	o->hold = 1;
	while ((c = getopt(argc, argv, "l:c:n:t:d:s:m:a:H:W")) != -1) {
		switch (c) {
		case 'l':
		case 'c':
			if (parse_addr(optarg, &o->target) < 0)
				usage();
			o->have_target = 1;
			break;
		case 'n':
			o->n = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			o->seconds = strtod(optarg, NULL);
			break;
		case 'd':
			if (strcmp(optarg, "c2s") != 0 && strcmp(optarg, "s2c") != 0)
				usage();
			o->s2c = strcmp(optarg, "s2c") == 0;
			break;
		case 's':
			if ((o->size = parse_size(optarg)) == 0)
				usage();
			break;
		case 'm':
			o->max = strtoul(optarg, NULL, 10);
			break;
		case 'a':
			o->naddr = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'H':
			o->hold = strtod(optarg, NULL);
			break;
		case 'W':
			o->wait_stdin = 1;
			break;
		default:
			usage();
		}
	}
	if (!o->have_target || o->n == 0 || o->n > 1000000 || o->seconds <= 0 ||
	    o->seconds > 3600 || o->naddr > 65000 || o->hold < 0 || o->hold > 3600)
		usage();
}

/* ---- latency samples ---- */

/* Record one sample of ns nanoseconds (dropped past SL_LAT_CAP). */
static void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint32_t *v;

		if (cap > SL_LAT_CAP || (v = realloc(l->v, cap * sizeof(*v))) == NULL) {
			l->dropped++;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The q-quantile in microseconds of sorted samples (0 when there are none). */
static double lat_q(const struct lat *l, double q)
{
	size_t i;

	if (l->n == 0)
		return 0;
	i = (size_t)(q * (double)l->n);
	if (i >= l->n)
		i = l->n - 1;
	return l->v[i] / 1e3;
}

/* Sort the samples and print them as JSON members (no leading comma). */
static void lat_print(struct lat *l)
{
	qsort(l->v, l->n, sizeof(*l->v), cmp_u32);
	printf("\"lat_us\": {\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"p999\": %.2f, "
	       "\"max\": %.2f, \"samples\": %zu}",
	       lat_q(l, 0.5), lat_q(l, 0.9), lat_q(l, 0.99), lat_q(l, 0.999), lat_q(l, 1.0), l->n);
}

/* ---- sockets ---- */

/* Disable Nagle: every workload here wants its small writes sent now. */
static void set_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("TCP_NODELAY");
}

/*
 * Start a non-blocking connect to o->target, from source address number
 * idx of the spread when o->naddr > 0. Returns the socket, or -errno.
 */
static int open_conn(const struct opts *o, unsigned idx)
{
	int fd, one = 1, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	if (o->naddr > 0) {
		struct sockaddr_in src;
		uint32_t a = (127u << 24) | (64u << 16) | (1 + idx % o->naddr);

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(a);
		/* The port is chosen at connect(), per 4-tuple: many more of them. */
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&o->target, sizeof(o->target)) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

/*
 * Wait until fd is ready for events, or until deadline (monotonic ns).
 * Returns 1 when ready, 0 at the deadline.
 */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		uint64_t t = now_ns();
		int rc;

		if (t >= deadline)
			return 0;
		rc = poll(&p, 1, (int)((deadline - t) / 1000000 + 1));
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			die("poll");
	}
}

/* Connect to o->target and wait for it; exits on failure. Returns the fd. */
static int connect_wait(const struct opts *o)
{
	int fd = open_conn(o, 0), err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0) {
		errno = -fd;
		die("connect");
	}
	if (!wait_fd(fd, POLLOUT, now_ns() + 5 * NS))
		diex("connect: timed out");
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		die("SO_ERROR");
	if (err != 0) {
		errno = err;
		die("connect");
	}
	return fd;
}

/* Write all of buf to a non-blocking fd, waiting at most 5 s. Exits on errors. */
static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	uint64_t deadline = now_ns() + 5 * NS;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if (!wait_fd(fd, POLLOUT, deadline))
				diex("write: timed out");
		} else if (n < 0 && errno != EINTR) {
			die("write");
		}
	}
}

/* ---- server ---- */

enum { SRV_NEW = 0, SRV_SINK = 'K', SRV_SOURCE = 'S', SRV_ECHO = 'E' };

/* One server connection. pend holds echo bytes the peer was not ready for. */
struct srv_conn {
	int fd;
	int mode;
	char *pend;
	size_t pend_off, pend_len;
};

static char srv_buf[SL_CHUNK];	  /* scratch for reads */
static char source_buf[SL_CHUNK]; /* what 'S' connections send */

static void srv_close(struct srv_conn *c)
{
	if (close(c->fd) < 0 && errno != EINTR)
		die("close");
	free(c->pend);
	free(c);
}

/* Change the epoll interest of c to events. */
static void srv_watch(int ep, struct srv_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl");
}

/*
 * Send echo bytes to c: first the pending ones, then data[0..len). Keeps
 * what the socket does not take and waits for EPOLLOUT. Returns 0, or -1
 * when the connection failed.
 */
static int srv_echo(int ep, struct srv_conn *c, const char *data, size_t len)
{
	if (c->pend_len == 0 && len == 0)
		return 0;
	if (c->pend_len == 0 && len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		}
		if (len == 0)
			return 0;
		if ((c->pend = malloc(len)) == NULL)
			die("malloc");
		memcpy(c->pend, data, len);
		c->pend_off = 0;
		c->pend_len = len;
		srv_watch(ep, c, EPOLLOUT);
		return 0;
	}
	while (c->pend_len > 0) {
		ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return -1;
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	free(c->pend);
	c->pend = NULL;
	srv_watch(ep, c, EPOLLIN);
	return 0;
}

/*
 * Handle readiness of one server connection. Returns 0 to keep it, -1 to
 * close it (EOF, error, or the peer gone).
 */
static int srv_event(int ep, struct srv_conn *c)
{
	if (c->mode == SRV_SOURCE) {
		for (int i = 0; i < 16; i++) {
			ssize_t n = send(c->fd, source_buf, sizeof(source_buf), MSG_NOSIGNAL);

			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -1;
		}
		return 0;
	}
	if (c->pend_len > 0)
		return srv_echo(ep, c, NULL, 0);
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(c->fd, srv_buf, sizeof(srv_buf), 0);
		const char *p = srv_buf;

		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (c->mode == SRV_NEW) {
			c->mode = *p++;
			n--;
			if (c->mode == SRV_SOURCE) {
				srv_watch(ep, c, EPOLLOUT);
				return 0;
			}
			if (c->mode != SRV_SINK && c->mode != SRV_ECHO)
				return -1;
		}
		if (c->mode == SRV_ECHO) {
			if (srv_echo(ep, c, p, (size_t)n) < 0)
				return -1;
			if (c->pend_len > 0)
				return 0;
		}
	}
	return 0;
}

/* Accept every pending connection on lfd. */
static void srv_accept(int ep, int lfd)
{
	for (;;) {
		struct srv_conn *c;
		struct epoll_event ev;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				fprintf(stderr, "sfload: accept: %s\n", strerror(errno));
				return;
			}
			die("accept");
		}
		set_nodelay(fd);
		if ((c = calloc(1, sizeof(*c))) == NULL)
			die("calloc");
		c->fd = fd;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
	}
}

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig) { stop_flag = sig; }

/* `sfload serve`: sink, source and echo on one port until SIGTERM or SIGINT. */
static int cmd_serve(const struct opts *o)
{
	struct epoll_event ev, evs[SL_MAX_EVENTS];
	struct sigaction sa;
	int lfd, ep, one = 1;

	memset(source_buf, 'x', sizeof(source_buf));
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("SO_REUSEADDR");
	if (bind(lfd, (const struct sockaddr *)&o->target, sizeof(o->target)) < 0)
		die("bind");
	if (listen(lfd, 4096) < 0)
		die("listen");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop; /* no SA_RESTART: epoll_wait returns EINTR */
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		die("sigaction");
	printf("{\"ready\": true, \"port\": %u}\n", ntohs(o->target.sin_port));
	if (fflush(stdout) == EOF)
		die("stdout");
	while (!stop_flag) {
		int n = epoll_wait(ep, evs, SL_MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct srv_conn *c = evs[i].data.ptr;

			if (c == NULL)
				srv_accept(ep, lfd);
			else if (srv_event(ep, c) < 0)
				srv_close(c);
		}
	}
	return 0;
}

/* ---- stream ---- */

/* One bulk stream: its socket and what it moved, filled in by its thread. */
struct stream {
	const struct opts *o;
	pthread_barrier_t *go;
	int fd;
	uint64_t bytes, t_end;
	int failed;
	uint64_t deadline;
};

static uint64_t stream_start; /* set by the first thread through the barrier */

/*
 * Send for o->seconds, then half-close and wait for the sink's close, so
 * t_end is when the last byte was read at the far end.
 */
static void stream_c2s(struct stream *s, char *buf)
{
	while (now_ns() < s->deadline) {
		ssize_t n = send(s->fd, buf, s->o->size, MSG_NOSIGNAL);

		if (n > 0)
			s->bytes += (uint64_t)n;
		else if (n < 0 && errno == EAGAIN)
			wait_fd(s->fd, POLLOUT, s->deadline);
		else if (n < 0 && errno != EINTR)
			die("stream send");
	}
	if (shutdown(s->fd, SHUT_WR) < 0)
		die("shutdown");
	for (uint64_t limit = now_ns() + SL_DRAIN_TIMEOUT_NS;;) {
		ssize_t n = recv(s->fd, buf, s->o->size, 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0 && errno == EAGAIN) {
			if (!wait_fd(s->fd, POLLIN, limit)) {
				s->failed = 1; /* the close never came through */
				break;
			}
		} else if (n < 0 && errno != EINTR) {
			die("stream recv");
		}
	}
	s->t_end = now_ns();
}

/* Receive for o->seconds; t_end is when we stop counting. */
static void stream_s2c(struct stream *s, char *buf)
{
	while (now_ns() < s->deadline) {
		ssize_t n = recv(s->fd, buf, s->o->size, 0);

		if (n > 0) {
			s->bytes += (uint64_t)n;
		} else if (n == 0) {
			s->failed = 1; /* the source never stops on its own */
			break;
		} else if (errno == EAGAIN) {
			wait_fd(s->fd, POLLIN, s->deadline);
		} else if (errno != EINTR) {
			die("stream recv");
		}
	}
	s->t_end = now_ns();
}

/* Thread body: wait for every stream to be connected, then run one. */
static void *stream_thread(void *arg)
{
	struct stream *s = arg;
	char *buf = malloc(s->o->size);
	int rc;

	if (buf == NULL)
		die("malloc");
	memset(buf, 'x', s->o->size);
	rc = pthread_barrier_wait(s->go);
	if (rc == PTHREAD_BARRIER_SERIAL_THREAD)
		__atomic_store_n(&stream_start, now_ns(), __ATOMIC_RELEASE);
	while (__atomic_load_n(&stream_start, __ATOMIC_ACQUIRE) == 0)
		sched_yield();
	s->deadline = stream_start + (uint64_t)(s->o->seconds * 1e9);
	if (s->o->s2c)
		stream_s2c(s, buf);
	else
		stream_c2s(s, buf);
	free(buf);
	return NULL;
}

/* `sfload stream`: N parallel bulk streams in one direction. */
static int cmd_stream(struct opts *o)
{
	struct stream *ss = calloc(o->n, sizeof(*ss));
	pthread_t *th = calloc(o->n, sizeof(*th));
	pthread_barrier_t go;
	uint64_t bytes = 0, t_end = 0;
	double cpu0, cpu1, secs;
	unsigned failed = 0;

	if (ss == NULL || th == NULL)
		die("calloc");
	if (o->size == 0)
		o->size = SL_CHUNK;
	if (pthread_barrier_init(&go, NULL, o->n) != 0)
		diex("pthread_barrier_init");
	for (unsigned i = 0; i < o->n; i++) {
		char mode = o->s2c ? 'S' : 'K';

		ss[i].o = o;
		ss[i].go = &go;
		ss[i].fd = connect_wait(o);
		write_all(ss[i].fd, &mode, 1);
	}
	cpu0 = cpu_s();
	for (unsigned i = 0; i < o->n; i++)
		if ((errno = pthread_create(&th[i], NULL, stream_thread, &ss[i])) != 0)
			die("pthread_create");
	for (unsigned i = 0; i < o->n; i++) {
		if ((errno = pthread_join(th[i], NULL)) != 0)
			die("pthread_join");
		bytes += ss[i].bytes;
		failed += (unsigned)ss[i].failed;
		if (ss[i].t_end > t_end)
			t_end = ss[i].t_end;
	}
	cpu1 = cpu_s();
	secs = (double)(t_end - stream_start) / 1e9;
	for (unsigned i = 0; i < o->n; i++)
		if (close(ss[i].fd) < 0)
			die("close");
	printf("{\"workload\": \"stream\", \"dir\": \"%s\", \"streams\": %u, \"seconds\": %.4f, "
	       "\"bytes\": %llu, \"gbps\": %.3f, \"failed\": %u, \"gen_cpu_s\": %.3f, "
	       "\"gen_cpu_util\": %.3f}\n",
	       o->s2c ? "s2c" : "c2s", o->n, secs, (unsigned long long)bytes,
	       (double)bytes * 8 / secs / 1e9, failed, cpu1 - cpu0, (cpu1 - cpu0) / secs);
	free(ss);
	free(th);
	pthread_barrier_destroy(&go);
	return failed ? 1 : 0;
}

/* ---- crr, rr and idle: one epoll loop over many small exchanges ---- */

enum { EX_CONNECTING, EX_SENDING, EX_RECEIVING, EX_DONE };

/* One connection doing exchanges: send out[0..outlen), then read inlen bytes. */
struct slot {
	int fd;
	int state;
	unsigned idx;
	uint64_t t0;
	const char *out;
	size_t outlen, outoff;
	size_t inlen, inoff;
};

/* A run of exchanges and what it counted. */
struct exrun {
	const struct opts *o;
	int ep;
	struct slot *slots;
	char *req;	    /* 'E' followed by size bytes of request */
	char *rbuf;	    /* scratch for responses */
	uint64_t done;	    /* completed exchanges (crr: connections) */
	uint64_t errors;    /* failed connects or exchanges */
	uint64_t opened;    /* connections opened */
	unsigned live;	    /* slots with an fd */
	unsigned next_addr; /* round robin over source addresses */
	struct lat lat;
};

/* Start slot s's connection; returns 0, or -1 when connect failed at once. */
static int ex_open(struct exrun *r, struct slot *s)
{
	struct epoll_event ev;

	s->fd = open_conn(r->o, r->next_addr++);
	if (s->fd < 0) {
		r->errors++;
		s->fd = -1;
		return -1;
	}
	/* Edge-triggered, registered once: no epoll_ctl per exchange. */
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	ev.data.ptr = s;
	if (epoll_ctl(r->ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
		die("epoll_ctl");
	s->state = EX_CONNECTING;
	r->opened++;
	r->live++;
	return 0;
}

static void ex_close(struct exrun *r, struct slot *s)
{
	if (s->fd >= 0) {
		if (close(s->fd) < 0)
			die("close");
		s->fd = -1;
		r->live--;
	}
	s->state = EX_DONE;
}

/* Begin an exchange on s: send out[0..outlen), expect inlen bytes back. */
static void ex_begin(struct slot *s, const char *out, size_t outlen, size_t inlen)
{
	s->out = out;
	s->outlen = outlen;
	s->outoff = 0;
	s->inlen = inlen;
	s->inoff = 0;
	s->t0 = now_ns();
	if (s->state != EX_CONNECTING)
		s->state = EX_SENDING;
}

/*
 * Advance s as far as the socket allows. Returns 1 when its exchange
 * completed, 0 when it waits for an event, -1 on failure.
 */
static int ex_step(struct exrun *r, struct slot *s)
{
	if (s->state == EX_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			die("SO_ERROR");
		if (err != 0)
			return -1;
		s->state = EX_SENDING;
	}
	while (s->state == EX_SENDING) {
		ssize_t n = send(s->fd, s->out + s->outoff, s->outlen - s->outoff, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTCONN)
			return 0; /* connect still in progress */
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return -1;
		s->outoff += (size_t)n;
		if (s->outoff == s->outlen)
			s->state = EX_RECEIVING;
	}
	while (s->state == EX_RECEIVING) {
		size_t want = s->inlen - s->inoff;
		ssize_t n = recv(s->fd, r->rbuf, want > SL_CHUNK ? SL_CHUNK : want, 0);

		if (n == 0)
			return -1;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return -1;
		s->inoff += (size_t)n;
		if (s->inoff == s->inlen) {
			s->state = EX_DONE;
			return 1;
		}
	}
	return 0;
}

/* Set up r for o with nslots slots. */
static void ex_init(struct exrun *r, const struct opts *o, unsigned nslots)
{
	memset(r, 0, sizeof(*r));
	r->o = o;
	if ((r->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	r->slots = calloc(nslots, sizeof(*r->slots));
	r->req = malloc(o->size + 1);
	r->rbuf = malloc(SL_CHUNK);
	if (r->slots == NULL || r->req == NULL || r->rbuf == NULL)
		die("malloc");
	r->req[0] = 'E';
	memset(r->req + 1, 'q', o->size);
	for (unsigned i = 0; i < nslots; i++) {
		r->slots[i].fd = -1;
		r->slots[i].idx = i;
		r->slots[i].state = EX_DONE;
	}
}

/*
 * Wait for events until deadline and call done(r, slot, result) for each
 * slot whose step finished (result 1) or failed (-1). Returns when the
 * deadline passes or no slot is live.
 */
static void ex_loop(struct exrun *r, uint64_t deadline,
		    void (*done)(struct exrun *, struct slot *, int))
{
	struct epoll_event evs[SL_MAX_EVENTS];

	while (r->live > 0) {
		uint64_t t = now_ns();
		int n;

		if (t >= deadline)
			return;
		n = epoll_wait(r->ep, evs, SL_MAX_EVENTS, (int)((deadline - t) / 1000000 + 1));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;
			int rc;

			if (s->fd < 0 || s->state == EX_DONE)
				continue;
			if ((rc = ex_step(r, s)) != 0)
				done(r, s, rc);
		}
	}
}

static uint64_t crr_deadline; /* no new connections after this */

/* crr: count a finished (rc > 0) or failed (rc < 0) connection and close it. */
static void crr_account(struct exrun *r, struct slot *s, int rc)
{
	if (rc > 0) {
		r->done++;
		lat_add(&r->lat, now_ns() - s->t0);
	} else {
		r->errors++;
	}
	ex_close(r, s);
}

/*
 * crr: start the next connection on slot s, unless the deadline, the
 * connection cap or too many errors say stop.
 */
static void crr_next(struct exrun *r, struct slot *s)
{
	while (now_ns() < crr_deadline && (r->o->max == 0 || r->opened < r->o->max) &&
	       r->errors < 1000 + r->done) {
		uint64_t t0 = now_ns();
		int rc;

		if (ex_open(r, s) < 0)
			continue;
		ex_begin(s, r->req, r->o->size + 1, r->o->size);
		s->t0 = t0; /* the latency includes socket() and connect() */
		if ((rc = ex_step(r, s)) == 0)
			return;
		crr_account(r, s, rc);
	}
}

/* crr: a connection finished or failed; replace it. */
static void crr_done(struct exrun *r, struct slot *s, int rc)
{
	crr_account(r, s, rc);
	crr_next(r, s);
}

/* Print the common JSON of crr and rr, from t0 to t1 (ns), cpu in seconds. */
static void ex_report(struct exrun *r, const char *name, uint64_t t0, uint64_t t1, double cpu)
{
	double secs = (double)(t1 - t0) / 1e9;

	printf("{\"workload\": \"%s\", \"clients\": %u, \"size\": %zu, \"seconds\": %.4f, "
	       "\"done\": %llu, \"errors\": %llu, \"rate\": %.1f, \"gen_cpu_s\": %.3f, "
	       "\"gen_cpu_util\": %.3f, ",
	       name, r->o->n, r->o->size, secs, (unsigned long long)r->done,
	       (unsigned long long)r->errors, (double)r->done / secs, cpu, cpu / secs);
	lat_print(&r->lat);
	printf("}\n");
}

/* `sfload crr`: connect, request, response, close, with n clients. */
static int cmd_crr(struct opts *o)
{
	struct exrun r;
	uint64_t t0, t1;
	double cpu0;

	if (o->size == 0)
		o->size = 64;
	ex_init(&r, o, o->n);
	cpu0 = cpu_s();
	t0 = now_ns();
	crr_deadline = t0 + (uint64_t)(o->seconds * 1e9);
	for (unsigned i = 0; i < o->n; i++)
		crr_next(&r, &r.slots[i]);
	/* Let the last connections finish, 2 s at most. */
	ex_loop(&r, crr_deadline + 2 * NS, crr_done);
	t1 = now_ns();
	for (unsigned i = 0; i < o->n; i++)
		ex_close(&r, &r.slots[i]);
	ex_report(&r, "crr", t0, t1, cpu_s() - cpu0);
	return r.done > 0 ? 0 : 1;
}

/* rr: record the round trip and send the next request (no 'E' now). */
static void rr_done(struct exrun *r, struct slot *s, int rc)
{
	if (rc < 0) {
		r->errors++;
		ex_close(r, s);
		return;
	}
	r->done++;
	lat_add(&r->lat, now_ns() - s->t0);
	for (;;) {
		ex_begin(s, r->req + 1, r->o->size, r->o->size);
		if ((rc = ex_step(r, s)) == 0)
			return;
		if (rc < 0) {
			r->errors++;
			ex_close(r, s);
			return;
		}
		r->done++;
		lat_add(&r->lat, now_ns() - s->t0);
	}
}

/* rr warm-up: the connection is up and echoing; measured exchanges start now. */
static void rr_ready(struct exrun *r, struct slot *s, int rc)
{
	if (rc < 0) {
		r->errors++;
		ex_close(r, s);
	}
}

/*
 * rr on a single connection: blocking send and recv, two system calls per
 * round trip, so the generator adds as little as it can to the latency.
 * Fills r's counters and samples between *t0 and *t1.
 */
static void rr_single(struct exrun *r, const struct opts *o, uint64_t *t0, uint64_t *t1)
{
	struct timeval tv = { .tv_sec = 5 };
	int fd = connect_wait(o), fl;
	uint64_t deadline;

	write_all(fd, r->req, o->size + 1); /* 'E' and a first request: warm-up */
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		die("fcntl");
	/* Bounded: a lost reply fails the run after 5 s instead of hanging. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		die("SO_RCVTIMEO");
	if (recv(fd, r->rbuf, o->size, MSG_WAITALL) != (ssize_t)o->size)
		diex("rr: warm-up exchange failed");
	*t0 = now_ns();
	deadline = *t0 + (uint64_t)(o->seconds * 1e9);
	for (uint64_t t = *t0, t2; t < deadline; t = t2) {
		if (send(fd, r->req + 1, o->size, MSG_NOSIGNAL) != (ssize_t)o->size ||
		    recv(fd, r->rbuf, o->size, MSG_WAITALL) != (ssize_t)o->size) {
			r->errors++;
			break;
		}
		t2 = now_ns();
		r->done++;
		lat_add(&r->lat, t2 - t);
	}
	*t1 = now_ns();
	if (close(fd) < 0)
		die("close");
}

/* `sfload rr`: request/response round trips on n persistent connections. */
static int cmd_rr(struct opts *o)
{
	struct exrun r;
	uint64_t t0, t1;
	double cpu0;

	if (o->size == 0)
		o->size = 64;
	ex_init(&r, o, o->n);
	if (o->n == 1) {
		cpu0 = cpu_s();
		rr_single(&r, o, &t0, &t1);
		ex_report(&r, "rr", t0, t1, cpu_s() - cpu0);
		return r.errors ? 1 : 0;
	}
	/* Connect and do one exchange each before measuring. */
	for (unsigned i = 0; i < o->n; i++) {
		if (ex_open(&r, &r.slots[i]) < 0)
			diex("rr: connect failed");
		ex_begin(&r.slots[i], r.req, o->size + 1, o->size);
		if (ex_step(&r, &r.slots[i]) < 0)
			diex("rr: connect failed");
	}
	for (uint64_t limit = now_ns() + 5 * NS; now_ns() < limit;) {
		unsigned ready = 0;

		ex_loop(&r, now_ns() + 10000000, rr_ready);
		for (unsigned i = 0; i < o->n; i++)
			ready += r.slots[i].state == EX_DONE && r.slots[i].fd >= 0;
		if (ready == o->n || r.errors > 0)
			break;
	}
	if (r.errors > 0 || r.live < o->n)
		diex("rr: warm-up exchange failed");
	cpu0 = cpu_s();
	t0 = now_ns();
	for (unsigned i = 0; i < o->n; i++) {
		struct slot *s = &r.slots[i];
		int rc;

		ex_begin(s, r.req + 1, o->size, o->size);
		if ((rc = ex_step(&r, s)) != 0)
			rr_done(&r, s, rc);
	}
	ex_loop(&r, t0 + (uint64_t)(o->seconds * 1e9), rr_done);
	t1 = now_ns();
	ex_report(&r, "rr", t0, t1, cpu_s() - cpu0);
	for (unsigned i = 0; i < o->n; i++)
		ex_close(&r, &r.slots[i]);
	return r.errors ? 1 : 0;
}

/* ---- idle ---- */

static unsigned idle_pending; /* exchanges still to finish in this phase */

static void idle_fail(struct exrun *r, struct slot *s)
{
	r->errors++;
	ex_close(r, s);
}

/* idle: a connection's exchange finished (or failed); it stays open. */
static void idle_done(struct exrun *r, struct slot *s, int rc)
{
	idle_pending--;
	if (rc > 0)
		r->done++;
	else
		idle_fail(r, s);
}

/*
 * Open o->n connections, SL_INFLIGHT at a time, each verified by one echoed
 * byte. Returns how many are open.
 */
static uint64_t idle_open(struct exrun *r, const struct opts *o)
{
	uint64_t limit = now_ns() + SL_IDLE_OPEN_TIMEOUT_S * NS;
	unsigned next = 0;

	while ((next < o->n || idle_pending > 0) && now_ns() < limit) {
		while (next < o->n && idle_pending < SL_INFLIGHT) {
			struct slot *s = &r->slots[next++];
			int rc;

			if (ex_open(r, s) < 0)
				continue;
			ex_begin(s, r->req, 2, 1);
			idle_pending++;
			if ((rc = ex_step(r, s)) != 0)
				idle_done(r, s, rc);
		}
		ex_loop(r, now_ns() + 10000000, idle_done);
	}
	return r->done;
}

/* Wait for a line on stdin (or its end), at most SL_IDLE_WAIT_MAX_S. */
static void wait_stdin_line(void)
{
	char c;
	uint64_t limit = now_ns() + SL_IDLE_WAIT_MAX_S * NS;

	while (wait_fd(0, POLLIN, limit)) {
		ssize_t n = read(0, &c, 1);

		if (n <= 0 || c == '\n')
			return;
	}
}

/* `sfload idle`: hold n idle connections, then check each still echoes. */
static int cmd_idle(struct opts *o)
{
	struct exrun r;
	uint64_t held, ok, t0;
	double cpu0 = cpu_s(), open_s;
	static const char probe = 'p';

	o->size = 1;
	ex_init(&r, o, o->n);
	r.req[1] = 'o';
	t0 = now_ns();
	held = idle_open(&r, o);
	open_s = (double)(now_ns() - t0) / 1e9;
	printf("{\"event\": \"held\", \"held\": %llu}\n", (unsigned long long)held);
	if (fflush(stdout) == EOF)
		die("stdout");
	if (o->hold > 0) {
		struct timespec ts = { (time_t)o->hold,
				       (long)((o->hold - (double)(time_t)o->hold) * 1e9) };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (o->wait_stdin)
		wait_stdin_line();
	/* The check: one byte each way on every connection still open. */
	r.done = 0;
	for (unsigned i = 0; i < o->n; i++) {
		struct slot *s = &r.slots[i];
		int rc;

		if (s->fd < 0)
			continue;
		ex_begin(s, &probe, 1, 1);
		idle_pending++;
		if ((rc = ex_step(&r, s)) != 0)
			idle_done(&r, s, rc);
	}
	for (uint64_t limit = now_ns() + 30 * NS; idle_pending > 0 && now_ns() < limit;)
		ex_loop(&r, now_ns() + 10000000, idle_done);
	ok = r.done;
	for (unsigned i = 0; i < o->n; i++)
		ex_close(&r, &r.slots[i]);
	printf("{\"workload\": \"idle\", \"wanted\": %u, \"held\": %llu, \"checked_ok\": %llu, "
	       "\"errors\": %llu, \"open_seconds\": %.3f, \"gen_cpu_s\": %.3f}\n",
	       o->n, (unsigned long long)held, (unsigned long long)ok, (unsigned long long)r.errors,
	       open_s, cpu_s() - cpu0);
	return ok == o->n ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct opts o;
	const char *cmd;

	if (argc < 2)
		usage();
	cmd = argv[1];
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("signal");
	raise_nofile();
	parse_opts(argc - 1, argv + 1, &o);
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(&o);
	if (strcmp(cmd, "stream") == 0)
		return cmd_stream(&o);
	if (strcmp(cmd, "crr") == 0)
		return cmd_crr(&o);
	if (strcmp(cmd, "rr") == 0)
		return cmd_rr(&o);
	if (strcmp(cmd, "idle") == 0)
		return cmd_idle(&o);
	usage();
	return 2;
}
