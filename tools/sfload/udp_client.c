/*
 * The UDP client workloads (wire format in udp.h, server in udp_serve.c):
 *
 * udp-stream  fixed-size datagrams as fast as the client can (or at -R
 *             datagrams/s) for -t seconds, sendmmsg/recvmmsg in batches of
 *             -b. c2s: the server sinks them and reports what it counted
 *             when queried at the end; echo: the server sends each back
 *             and the client counts them. Loss from sequence numbers.
 * udp-rr      one datagram out, its echo back, on one socket: latency.
 * udp-sessions -n sockets (sources spread over -a addresses 127.65.x.y),
 *             one echoed datagram each, -w in flight: sessions/s; then
 *             hold them (-H, -W) and check each still gets an answer.
 *
 * No loop waits without a deadline, and a peer that stops answering ends
 * the run (rr, sessions) or is reported (stream) instead of spinning.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

#define UC_BUF	      (4 << 20)	    /* socket buffers asked for (capped by rmem_max) */
#define UC_REPLY_NS   200000000ull  /* rr, query: how long one reply may take */
#define UC_SESSION_NS 1000000000ull /* udp-sessions: how long an answer may take */
#define UC_GONE	      10	    /* rr: losses in a row that end the run */
#define UC_REFUSED    1000	    /* stream: refused sends (port unreachable) that end it */
#define UC_TAIL_NS    100000000ull  /* echo stream: quiet time that ends the tail */

/*
 * Open a UDP socket connected to o->target, bound to source address idx of
 * the 127.65.x.y spread when o->naddr > 0. Returns the socket, or -errno.
 */
static int udp_socket(const struct opts *o, unsigned idx, int nonblock, int bigbuf)
{
	int fd, err, size = UC_BUF;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (bigbuf) {
		/* Best effort: the kernel caps these at net.core.[rw]mem_max. */
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
	if (o->naddr > 0) {
		struct sockaddr_in src;

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl((127u << 24) | (65u << 16) | (1 + idx % o->naddr));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&o->target, sizeof(o->target)) < 0)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

/* The datagram size of o (main.c checked its range): 64 B unless -s says. */
static size_t udp_size(struct opts *o)
{
	if (o->size == 0)
		o->size = 64;
	return o->size;
}

/*
 * Ask the server, through the non-blocking socket fd, what its sink counted
 * from us: up to tries queries, each given UC_REPLY_NS. Datagrams other
 * than the report are skipped. Returns 0 with *rep filled, or -1.
 */
static int udp_query(int fd, struct udp_report *rep, int tries)
{
	static uint64_t qseq;
	char buf[UDP_MAX_SIZE + 1];
	struct udp_hdr q;

	for (int t = 0; t < tries; t++) {
		uint64_t deadline = now_ns() + UC_REPLY_NS;

		udp_fill(&q, sizeof(q), UDP_QUERY, ++qseq);
		if (send(fd, &q, sizeof(q), 0) < 0 && errno != ECONNREFUSED && errno != EAGAIN)
			die("udp query send");
		while (wait_fd(fd, POLLIN, deadline)) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);

			if (n < 0 && errno == ECONNREFUSED) {
				sleep_until(deadline); /* nobody there yet: no busy loop */
				break;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0)
				die("udp query recv");
			memcpy(rep, buf, (size_t)n < sizeof(*rep) ? (size_t)n : sizeof(*rep));
			if ((size_t)n == sizeof(*rep) && rep->h.magic == UDP_MAGIC &&
			    rep->h.kind == UDP_REPORT && rep->h.seq == qseq)
				return 0;
		}
	}
	return -1;
}

/* ---- udp-stream ---- */

/* One udp-stream run: the socket, the batch buffers and the counts. */
struct ustream {
	struct opts *o;
	int fd;
	unsigned batch;
	struct mmsghdr *msgs, *rmsgs;
	struct iovec *iov, *riov;
	char *bufs, *rbufs;
	size_t stride; /* buffer to buffer: a multiple of 8, so headers are aligned */
	uint64_t sent, send_errors;
	uint64_t received, reordered, bad, max_seq;
};

/* Set up st for o: buffers of o->batch datagrams each way. */
static void ustream_init(struct ustream *st, struct opts *o)
{
	size_t sz = udp_size(o);

	memset(st, 0, sizeof(*st));
	st->o = o;
	st->batch = o->batch;
	/* Paced: batches no more than about 1 ms apart. */
	if (o->rate > 0 && o->rate / 1000 < st->batch)
		st->batch = o->rate >= 1000 ? (unsigned)(o->rate / 1000) : 1;
	st->msgs = calloc(o->batch, sizeof(*st->msgs));
	st->rmsgs = calloc(o->batch, sizeof(*st->rmsgs));
	st->iov = calloc(o->batch, sizeof(*st->iov));
	st->riov = calloc(o->batch, sizeof(*st->riov));
	st->stride = (sz + 1 + 7) & ~(size_t)7;
	st->bufs = malloc(o->batch * st->stride);
	st->rbufs = malloc(o->batch * st->stride);
	if (!st->msgs || !st->rmsgs || !st->iov || !st->riov || !st->bufs || !st->rbufs)
		die("malloc");
	for (unsigned i = 0; i < o->batch; i++) {
		/* The payload is seq 0's pattern; only the header changes. */
		udp_fill(st->bufs + i * st->stride, sz, o->dir == DIR_ECHO ? UDP_ECHO : UDP_SINK,
			 0);
		st->iov[i].iov_base = st->bufs + i * st->stride;
		st->iov[i].iov_len = sz;
		st->msgs[i].msg_hdr.msg_iov = &st->iov[i];
		st->msgs[i].msg_hdr.msg_iovlen = 1;
		st->riov[i].iov_base = st->rbufs + i * st->stride;
		st->riov[i].iov_len = sz + 1; /* a longer echo shows as bad, not cut */
		st->rmsgs[i].msg_hdr.msg_iov = &st->riov[i];
		st->rmsgs[i].msg_hdr.msg_iovlen = 1;
	}
	st->fd = udp_socket(o, 0, 1, 1);
	if (st->fd < 0) {
		errno = -st->fd;
		die("udp socket");
	}
}

static void ustream_free(struct ustream *st)
{
	close(st->fd);
	free(st->msgs);
	free(st->rmsgs);
	free(st->iov);
	free(st->riov);
	free(st->bufs);
	free(st->rbufs);
}

/*
 * Send up to count datagrams numbered from st->sent in one sendmmsg.
 * Returns how many went, 0 when the socket is full, or -1 once UC_REFUSED
 * sends were refused: ICMP port unreachable comes back, nobody listens
 * (a forwarder keeps its session and sends none).
 */
static int ustream_send(struct ustream *st, unsigned count)
{
	int n;

	for (unsigned i = 0; i < count; i++)
		((struct udp_hdr *)st->iov[i].iov_base)->seq = st->sent + i;
	n = sendmmsg(st->fd, st->msgs, count, 0);
	if (n > 0) {
		st->sent += (unsigned)n;
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0 && errno == ECONNREFUSED) {
		return ++st->send_errors >= UC_REFUSED ? -1 : 0;
	}
	die("sendmmsg");
}

/* Receive and count every echo queued (echo mode). */
static void ustream_recv(struct ustream *st)
{
	size_t sz = st->o->size;

	for (;;) {
		int n = recvmmsg(st->fd, st->rmsgs, st->o->batch, MSG_DONTWAIT, NULL);

		if (n < 0 && errno == ECONNREFUSED) {
			st->send_errors++;
			continue;
		}
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			const struct udp_hdr *h = st->riov[i].iov_base;

			if (st->rmsgs[i].msg_len != sz || h->magic != UDP_MAGIC ||
			    h->kind != UDP_ECHO || h->seq >= st->sent) {
				st->bad++;
				continue;
			}
			if (st->received > 0 && h->seq <= st->max_seq)
				st->reordered++;
			else
				st->max_seq = h->seq;
			st->received++;
		}
	}
}

/* Send for o->seconds (paced at o->rate when set); returns the time spent. */
static uint64_t ustream_run(struct ustream *st)
{
	struct opts *o = st->o;
	int echo = o->dir == DIR_ECHO;
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(o->seconds * 1e9), t;

	while ((t = now_ns()) < deadline) {
		unsigned count = st->batch;
		int n;

		if (o->rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)st->sent * 1e9 / o->rate);

			if (due > t) {
				if (echo &&
				    wait_fd(st->fd, POLLIN, due < deadline ? due : deadline))
					ustream_recv(st);
				else if (!echo)
					sleep_until(due < deadline ? due : deadline);
				continue;
			}
		}
		if ((n = ustream_send(st, count)) < 0)
			break;
		if (n == 0) /* full: wait for room (or echoes) */
			wait_fd(st->fd, echo ? POLLIN | POLLOUT : POLLOUT, deadline);
		if (echo)
			ustream_recv(st);
	}
	t = now_ns();
	if (echo) {
		/* The tail: echoes still on their way, until 100 ms of quiet. */
		uint64_t limit = t + 10 * UC_TAIL_NS;

		while (st->received + st->bad < st->sent &&
		       wait_fd(st->fd, POLLIN,
			       now_ns() + UC_TAIL_NS < limit ? now_ns() + UC_TAIL_NS : limit))
			ustream_recv(st);
	}
	return t - t0;
}

/* `sfload udp-stream`: datagrams as fast as we can (or at -R); loss and rate. */
int cmd_udp_stream(struct opts *o)
{
	struct ustream st;
	struct udp_report rep0, rep;
	uint64_t elapsed;
	double cpu0, cpu, secs, loss;
	int gone = 0;

	ustream_init(&st, o);
	/* The path works and the forwarder's session exists before we start. */
	if (udp_query(st.fd, &rep0, 10) < 0)
		diex("udp-stream: no answer to a query: is udp-serve reachable?");
	cpu0 = cpu_s();
	elapsed = ustream_run(&st);
	cpu = cpu_s() - cpu0;
	gone = st.send_errors >= UC_REFUSED;
	if (o->dir == DIR_C2S) {
		/* Let the last datagrams through; the query queues behind them. */
		sleep_until(now_ns() + 50000000);
		if (udp_query(st.fd, &rep, 10) < 0) {
			fprintf(stderr, "sfload: udp-stream: no report from the server\n");
			gone = 1;
			memset(&rep, 0, sizeof(rep));
		} else {
			rep.received -= rep0.received;
			rep.bytes -= rep0.bytes;
		}
		st.received = rep.received;
		st.reordered = rep.reordered;
	}
	secs = (double)elapsed / 1e9;
	loss = st.sent ? 100.0 *
				 (double)(st.sent -
					  (st.received < st.sent ? st.received : st.sent)) /
				 (double)st.sent
		       : 0;
	printf("{\"workload\": \"udp-stream\", \"dir\": \"%s\", \"size\": %zu, \"batch\": %u, "
	       "\"rate_target\": %.0f, \"seconds\": %.4f, \"sent\": %llu, \"received\": %llu, "
	       "\"reordered\": %llu, \"bad\": %llu, \"send_errors\": %llu, \"pps_sent\": %.1f, "
	       "\"pps\": %.1f, \"gbps\": %.4f, \"loss_pct\": %.4f, \"failed\": %d, "
	       "\"gen_cpu_s\": %.3f, \"gen_cpu_util\": %.3f}\n",
	       o->dir == DIR_ECHO ? "echo" : "c2s", o->size, st.batch, o->rate, secs,
	       (unsigned long long)st.sent, (unsigned long long)st.received,
	       (unsigned long long)st.reordered, (unsigned long long)st.bad,
	       (unsigned long long)st.send_errors, (double)st.sent / secs,
	       (double)st.received / secs, (double)st.received * (double)o->size * 8 / secs / 1e9,
	       loss, gone, cpu, cpu / secs);
	ustream_free(&st);
	return gone || st.received == 0 ? 1 : 0;
}

/* ---- udp-rr ---- */

/*
 * Send datagram seq and wait for its echo on blocking fd (SO_RCVTIMEO set).
 * Returns 1 when it came back intact, 0 when lost (timeout, refused).
 * Stale echoes of earlier datagrams are skipped and counted in *late.
 */
static int urr_exchange(int fd, char *req, char *rbuf, size_t sz, uint64_t seq, uint64_t *late)
{
	udp_fill(req, sz, UDP_ECHO, seq);
	if (send(fd, req, sz, 0) != (ssize_t)sz) {
		if (errno == ECONNREFUSED || errno == EAGAIN || errno == EINTR)
			return 0;
		die("udp-rr send");
	}
	for (;;) {
		ssize_t n = recv(fd, rbuf, UDP_MAX_SIZE + 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ECONNREFUSED) {
			sleep_until(now_ns() + UC_REPLY_NS); /* nobody there: no busy loop */
			return 0;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			die("udp-rr recv");
		if (udp_check(rbuf, (size_t)n, sz, UDP_ECHO, seq))
			return 1;
		(*late)++;
	}
}

/* `sfload udp-rr`: one datagram out, its echo back, on one socket. */
int cmd_udp_rr(struct opts *o)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = UC_REPLY_NS / 1000 };
	size_t sz = udp_size(o);
	char *req = malloc(sz), *rbuf = malloc(UDP_MAX_SIZE + 1);
	struct lat lat = { 0 };
	uint64_t seq = 0, done = 0, lost = 0, late = 0, t0, t1, deadline;
	unsigned in_a_row = 0;
	int fd, warm = 0;
	double cpu0, cpu, secs;

	if (req == NULL || rbuf == NULL)
		die("malloc");
	if ((fd = udp_socket(o, 0, 0, 0)) < 0) {
		errno = -fd;
		die("udp socket");
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		die("SO_RCVTIMEO");
	for (int i = 0; i < 10 && !warm; i++)
		warm = urr_exchange(fd, req, rbuf, sz, seq++, &late);
	if (!warm)
		diex("udp-rr: no echo: is udp-serve reachable?");
	cpu0 = cpu_s();
	t0 = now_ns();
	deadline = t0 + (uint64_t)(o->seconds * 1e9);
	for (uint64_t t = t0, t2; t < deadline && in_a_row < UC_GONE; t = t2) {
		int ok = urr_exchange(fd, req, rbuf, sz, seq++, &late);

		t2 = now_ns();
		if (ok) {
			done++;
			in_a_row = 0;
			lat_add(&lat, t2 - t);
		} else {
			lost++;
			in_a_row++;
		}
	}
	t1 = now_ns();
	cpu = cpu_s() - cpu0;
	secs = (double)(t1 - t0) / 1e9;
	printf("{\"workload\": \"udp-rr\", \"clients\": 1, \"size\": %zu, \"seconds\": %.4f, "
	       "\"done\": %llu, \"lost\": %llu, \"late\": %llu, \"errors\": %u, \"rate\": %.1f, "
	       "\"gen_cpu_s\": %.3f, \"gen_cpu_util\": %.3f, ",
	       sz, secs, (unsigned long long)done, (unsigned long long)lost,
	       (unsigned long long)late, in_a_row >= UC_GONE, (double)done / secs, cpu, cpu / secs);
	lat_print(&lat);
	printf("}\n");
	close(fd);
	free(req);
	free(rbuf);
	lat_free(&lat);
	return in_a_row >= UC_GONE || done == 0 ? 1 : 0;
}

/* ---- udp-sessions ---- */

enum { SS_IDLE, SS_WAIT, SS_OK, SS_LOST };

/* Many client sockets, each one session, and what their datagrams got. */
struct usess {
	struct opts *o;
	int ep;
	int *fd;	  /* per session, -1 until opened */
	uint8_t *state;	  /* SS_* in the current phase */
	uint64_t *t_sent; /* when its datagram of this phase went out */
	unsigned *order;  /* sessions in the order their datagrams went out */
	unsigned head, tail, inflight;
	uint64_t seq_base; /* a session's datagram in this phase: seq_base + index */
	uint64_t ok, lost, late, errors;
	struct lat lat;
	char *req, *rbuf;
};

/* Set up s for o->n sessions. */
static void usess_init(struct usess *s, struct opts *o)
{
	memset(s, 0, sizeof(*s));
	s->o = o;
	if ((s->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	s->fd = malloc(o->n * sizeof(*s->fd));
	s->state = calloc(o->n, sizeof(*s->state));
	s->t_sent = calloc(o->n, sizeof(*s->t_sent));
	s->order = calloc(o->n, sizeof(*s->order));
	s->req = malloc(udp_size(o));
	s->rbuf = malloc(UDP_MAX_SIZE + 1);
	if (!s->fd || !s->state || !s->t_sent || !s->order || !s->req || !s->rbuf)
		die("malloc");
	for (unsigned i = 0; i < o->n; i++)
		s->fd[i] = -1;
}

/* Mark session i lost (or failed) if it was waiting. */
static void usess_fail(struct usess *s, unsigned i, int error)
{
	if (s->state[i] == SS_WAIT)
		s->inflight--;
	s->state[i] = SS_LOST;
	if (error)
		s->errors++;
	else
		s->lost++;
}

/*
 * Send session i's datagram of this phase, opening its socket first if it
 * has none. Returns 0, or -1 when that failed (the session is lost).
 */
static int usess_send(struct usess *s, unsigned i)
{
	size_t sz = s->o->size;

	if (s->fd[i] < 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		int fd = udp_socket(s->o, i, 1, 0);

		if (fd < 0) {
			usess_fail(s, i, 1);
			return -1;
		}
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
		s->fd[i] = fd;
	}
	udp_fill(s->req, sz, UDP_ECHO, s->seq_base + i);
	s->t_sent[i] = now_ns();
	if (send(s->fd[i], s->req, sz, 0) != (ssize_t)sz) {
		usess_fail(s, i, 1);
		return -1;
	}
	s->state[i] = SS_WAIT;
	s->order[s->tail++] = i;
	s->inflight++;
	return 0;
}

/* Read what session i's socket holds; its echo ends its wait. */
static void usess_recv(struct usess *s, unsigned i)
{
	for (;;) {
		ssize_t n = recv(s->fd[i], s->rbuf, UDP_MAX_SIZE + 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ECONNREFUSED) {
			usess_fail(s, i, 1);
			return;
		}
		if (n < 0)
			return; /* EAGAIN */
		if (s->state[i] == SS_WAIT &&
		    udp_check(s->rbuf, (size_t)n, s->o->size, UDP_ECHO, s->seq_base + i)) {
			s->state[i] = SS_OK;
			s->inflight--;
			s->ok++;
			if (s->seq_base == 0) /* a new session's round trip */
				lat_add(&s->lat, now_ns() - s->t_sent[i]);
		} else {
			s->late++;
		}
	}
}

/*
 * Give up on the sessions whose answer is overdue (the oldest first).
 * Returns the milliseconds until the next one is due, at most 100.
 */
static int usess_expire(struct usess *s)
{
	uint64_t t = now_ns();

	while (s->head < s->tail) {
		unsigned i = s->order[s->head];

		if (s->state[i] != SS_WAIT) {
			s->head++;
			continue;
		}
		if (t < s->t_sent[i] + UC_SESSION_NS) {
			uint64_t ms = (s->t_sent[i] + UC_SESSION_NS - t) / 1000000 + 1;

			return ms < 100 ? (int)ms : 100;
		}
		usess_fail(s, i, 0);
		s->head++;
	}
	return 100;
}

/*
 * One phase: a datagram from every session (first) or from every session
 * answered so far (the check), o->window in flight, until each is answered
 * or overdue, or until limit. Returns the sessions answered in the phase.
 */
static uint64_t usess_phase(struct usess *s, int first, uint64_t limit)
{
	struct epoll_event evs[SL_MAX_EVENTS];
	unsigned next = 0;
	uint64_t failed0 = s->lost + s->errors;

	s->ok = 0;
	s->head = s->tail = s->inflight = 0;
	s->seq_base = first ? 0 : s->o->n;
	while ((next < s->o->n || s->inflight > 0) && now_ns() < limit) {
		int n, ms;

		/* Not one answer to the first windows: the peer is gone, stop. */
		if (s->ok == 0 && s->lost + s->errors - failed0 >= 2 * (uint64_t)s->o->window) {
			fprintf(stderr,
				"sfload: udp-sessions: no answers: is udp-serve reachable?\n");
			break;
		}

		while (next < s->o->n && s->inflight < s->o->window) {
			unsigned i = next++;

			if (first || s->state[i] == SS_OK)
				(void)usess_send(s, i);
		}
		ms = usess_expire(s);
		if (s->inflight == 0)
			continue;
		n = epoll_wait(s->ep, evs, SL_MAX_EVENTS, ms);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int k = 0; k < n; k++)
			usess_recv(s, evs[k].data.u32);
	}
	for (unsigned i = 0; i < s->o->n; i++)
		if (s->state[i] == SS_WAIT)
			usess_fail(s, i, 0);
	return s->ok;
}

/* `sfload udp-sessions`: n client addresses, one answered datagram each, held. */
int cmd_udp_sessions(struct opts *o)
{
	struct usess s;
	uint64_t held, ok, t0;
	double cpu0 = cpu_s(), open_s;

	usess_init(&s, o);
	t0 = now_ns();
	held = usess_phase(&s, 1, t0 + SL_IDLE_OPEN_TIMEOUT_S * NS);
	open_s = (double)(now_ns() - t0) / 1e9;
	printf("{\"event\": \"held\", \"held\": %llu}\n", (unsigned long long)held);
	if (fflush(stdout) == EOF)
		die("stdout");
	if (o->hold > 0)
		sleep_until(now_ns() + (uint64_t)(o->hold * 1e9));
	if (o->wait_stdin)
		wait_stdin_line();
	ok = held > 0 ? usess_phase(&s, 0, now_ns() + 30 * NS) : 0;
	printf("{\"workload\": \"udp-sessions\", \"wanted\": %u, \"held\": %llu, "
	       "\"checked_ok\": %llu, \"lost\": %llu, \"late\": %llu, \"errors\": %llu, "
	       "\"open_seconds\": %.3f, \"rate\": %.1f, \"gen_cpu_s\": %.3f, ",
	       o->n, (unsigned long long)held, (unsigned long long)ok, (unsigned long long)s.lost,
	       (unsigned long long)s.late, (unsigned long long)s.errors, open_s,
	       open_s > 0 ? (double)held / open_s : 0, cpu_s() - cpu0);
	lat_print(&s.lat);
	printf("}\n");
	for (unsigned i = 0; i < o->n; i++)
		if (s.fd[i] >= 0)
			close(s.fd[i]);
	close(s.ep);
	free(s.fd);
	free(s.state);
	free(s.t_sent);
	free(s.order);
	free(s.req);
	free(s.rbuf);
	lat_free(&s.lat);
	return ok == o->n ? 0 : 1;
}
