/*
 * event/reactor.c, run as sockfwd runs it: a worker thread in this
 * process serving a generation built from config text, with the test
 * thread as both the client and the upstream on loopback sockets. What
 * is checked is where a reactor bug loses bytes or hangs: data through
 * the wakeup budget's ready queue (edge-triggered epoll gives no second
 * edge), half-close ordering, the timers (idle, connect timeout with
 * fail-over), accept paused at max_conns and resumed, a stop resetting
 * open connections, buffers and pipes lent only while bytes are in
 * flight and given back once per direction, the PROXY header and the
 * lists at admission, drain and reload keeping open connections whole.
 *
 * Besides the epoll and splice engines, a "chunk" engine drives the
 * reactor with a pump of its own that moves at most CHUNK bytes per call
 * and then claims its budget spent (RX_MORE), so every byte past the
 * first chunk of a burst is moved from the ready queue, and counts the
 * reactor's release calls.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "event/reactor.h"
#include "fixture.h"
#include "sockfwd/conn.h"
#include "sockfwd/engine.h"
#include "sockfwd/net.h"
#include "sockfwd/pipepool.h"
#include "sockfwd/stats.h"
#include "sockfwd/worker.h"

/* ---- the chunk engine ---- */

#define CHUNK	  1024
#define CHUNK_CAP (256 * 1024)

/* A direction's bytes read and not yet written: buf[off, len). */
struct chunk_dir {
	char buf[CHUNK_CAP];
	size_t len, off;
	unsigned long spent_wait; /* rt_waits at its last RX_MORE, if spent */
	int spent;
};

/*
 * Written by the worker thread, read after it is joined. The reactor
 * releases a direction after each RX_MORE and once at the end of its
 * connection, so releases == more + 2 per connection; a release while
 * bytes are held would drop them in a connection that ends cleanly.
 */
static unsigned chunk_more, chunk_releases, chunk_release_held;

/*
 * Pumps of a direction in the turn of the loop where it spent its budget,
 * told by the epoll_wait calls of the worker's thread, not by the loop's
 * own turn counter; and budgets spent while the connection was carried
 * into the turn by its other direction (the case rx_run_ready defers).
 */
static unsigned chunk_twice, chunk_deferred;
static _Thread_local unsigned long rt_waits;

/* Every epoll_wait of this binary, counted per thread: one per loop turn. */
int epoll_wait(int epfd, struct epoll_event *ev, int maxevents, int timeout)
{
	rt_waits++;
	return (int)syscall(SYS_epoll_pwait, epfd, ev, maxevents, timeout, NULL, (size_t)8);
}

/* Write what the direction holds. Returns 1 when it is empty, 0 when dst is full, -errno. */
static int chunk_flush(struct rx_conn *x, struct chunk_dir *cd, int d)
{
	while (cd->off < cd->len) {
		ssize_t n = send(x->c.fd[!d], cd->buf + cd->off, cd->len - cd->off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			x->err_side = (int8_t)!d;
			return -errno;
		}
		cd->off += (size_t)n;
		sf_conn_count(&x->c, d, (uint64_t)n, 0);
	}
	cd->len = cd->off = 0;
	return 1;
}

/*
 * Read one chunk per call at most, then claim the budget spent: the
 * rest of a burst is moved from the ready queue. Reads ahead while the
 * destination is full (up to CHUNK_CAP), and reports a FIN as soon as it
 * is next in the socket, so a FIN often comes with bytes still held: the
 * reactor must not pass it on before they are written.
 */
static int chunk_pump(struct rx_loop *l, struct rx_conn *x, int d)
{
	struct chunk_dir *cd = rx_priv(x, l, d);
	size_t room;
	ssize_t n;
	char c;
	int rc;

	if (cd->spent && cd->spent_wait == rt_waits)
		chunk_twice++;
	if ((rc = chunk_flush(x, cd, d)) < 0)
		return rc;
	room = CHUNK_CAP - cd->len; /* after the flush, which may have emptied it */
	if ((x->c.flags & SF_CONN_EOF(d)) || room == 0)
		return RX_WAIT; /* the destination's writability edge resumes it */
	n = recv(x->c.fd[d], cd->buf + cd->len, room < CHUNK ? room : CHUNK, MSG_DONTWAIT);
	if (n == 0) {
		sf_conn_eof(&x->c, d);
		return RX_WAIT;
	}
	if (n < 0) {
		if (errno == EAGAIN)
			return RX_WAIT;
		x->err_side = (int8_t)d;
		return -errno;
	}
	cd->len += (size_t)n;
	if (recv(x->c.fd[d], &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
		sf_conn_eof(&x->c, d);
	if ((rc = chunk_flush(x, cd, d)) <= 0)
		return rc; /* RX_MORE only with every byte written */
	if (x->c.flags & SF_CONN_EOF(d))
		return RX_WAIT;
	chunk_more++;
	cd->spent = 1;
	cd->spent_wait = rt_waits;
	if (x->queued && x->more[!d] != 0 && x->more[!d] != 1 + (l->turn & 1))
		chunk_deferred++;
	return RX_MORE;
}

static int chunk_empty(const struct rx_conn *x, int d)
{
	const struct chunk_dir *cd = (const struct chunk_dir *)x->priv + d;

	return cd->off == cd->len;
}

static void chunk_release(struct rx_loop *l, struct rx_conn *x, int d)
{
	(void)l;
	chunk_releases++;
	if (!chunk_empty(x, d))
		chunk_release_held++;
}

static const struct rx_xfer chunk_xf = {
	.dir_size = sizeof(struct chunk_dir),
	.pump = chunk_pump,
	.empty = chunk_empty,
	.release = chunk_release,
};

static int chunk_run(struct sf_worker *w) { return sf_reactor_run(w, &chunk_xf); }

static const struct sf_engine chunk_engine = {
	.name = "chunk",
	.run = chunk_run,
	.stop = sf_worker_stop,
};

/* ---- a worker serving one rule ---- */

struct rt {
	struct sf_gen *g;
	struct sf_worker w;
	int port; /* the rule's listen port */
	int stopped;
};

/*
 * Build the generation of a rule with the policy keys of body and the
 * upstream pool ups (the inside of a config list), listen, start worker
 * 0 on engine e.
 */
static void rt_start_pool(struct rt *t, const struct sf_engine *e, const char *body,
			  const char *ups)
{
	char err[512];

	memset(t, 0, sizeof(*t));
	t->port = fx_free_port();
	t->g = fx_gen(1,
		      "rules = { r = { listen = \"127.0.0.1:%d\"; %s\n  upstream = [ %s ]; }; };\n",
		      t->port, body, ups);
	cr_assert_eq(sf_gen_listen(t->g, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sf_worker_init(&t->w, 0, e, t->g->cfg.buffer_size, t->g->cfg.pipe_size, t->g),
		     0);
	cr_assert_eq(sf_worker_start(&t->w), 0);
}

/* The same with one upstream, 127.0.0.1:up_port. */
static void rt_start(struct rt *t, const struct sf_engine *e, const char *body, int up_port)
{
	char ups[64];

	snprintf(ups, sizeof(ups), "\"127.0.0.1:%d\"", up_port);
	rt_start_pool(t, e, body, ups);
}

/* Stop the worker and wait for it: its counters are then ours to read. */
static void rt_stop(struct rt *t)
{
	if (t->stopped)
		return;
	sf_worker_stop(&t->w);
	cr_assert_eq(pthread_join(t->w.thread, NULL), 0);
	cr_assert_eq(t->w.result, 0, "the loop failed: %d", t->w.result);
	t->stopped = 1;
}

static void rt_done(struct rt *t)
{
	rt_stop(t);
	cr_assert_eq(t->w.stats.active, 0);
	sf_worker_destroy(&t->w);
	sf_gen_unref(t->g);
}

static struct sf_rule_ctr *rt_ctr(struct rt *t) { return &t->g->rules[0].st->w[0]; }

/* Accept the forwarded connection on the upstream listener (bounded). */
static int up_accept(int lfd)
{
	int fd;

	cr_assert(fx_readable(lfd), "nothing reached the upstream");
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(fd >= 0);
	fx_timeouts(fd);
	return fd;
}

/* A round trip client -> upstream -> client of a short message. */
static void round_trip(int cfd, int ufd, const char *msg)
{
	size_t n = strlen(msg);
	char buf[64];

	cr_assert_eq(send(cfd, msg, n, MSG_NOSIGNAL), (ssize_t)n);
	cr_assert_eq(fx_read_all(ufd, buf, n), (ssize_t)n, "c2u lost \"%s\"", msg);
	cr_assert_eq(memcmp(buf, msg, n), 0);
	cr_assert_eq(send(ufd, msg, n, MSG_NOSIGNAL), (ssize_t)n);
	cr_assert_eq(fx_read_all(cfd, buf, n), (ssize_t)n, "u2c lost \"%s\"", msg);
	cr_assert_eq(memcmp(buf, msg, n), 0);
}

/* The peer of fd reset it: the next read says ECONNRESET, never EOF. */
static void assert_reset(int fd, const char *who)
{
	char buf[4096];
	ssize_t n;
	int i;

	for (i = 0; i < 10000; i++) {
		cr_assert(fx_readable(fd), "%s: neither reset nor EOF", who);
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
	}
	cr_assert_eq(n, -1, "%s saw EOF, not a reset", who);
	cr_assert_eq(errno, ECONNRESET, "%s: %s", who, strerror(errno));
}

/* ---- bulk data both ways ---- */

static uint8_t pattern(uint64_t i, unsigned seed)
{
	uint64_t h = (i + seed * 0x100000001b3ull) * 0x9e3779b97f4a7c15ull;

	return (uint8_t)(h >> 56);
}

struct flow {
	int from, to;
	uint64_t len, sent, got;
	unsigned seed;
	int fin_sent, eof_seen;
};

/* Write what from may take of flow f; FIN once all is sent. */
static void flow_send(struct flow *f)
{
	uint8_t buf[65536];
	ssize_t n;
	size_t k;

	while (f->sent < f->len) {
		k = f->len - f->sent < sizeof(buf) ? (size_t)(f->len - f->sent) : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = pattern(f->sent + i, f->seed);
		n = send(f->from, buf, k, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			cr_assert_eq(errno, EAGAIN, "send: %s", strerror(errno));
			return;
		}
		f->sent += (uint64_t)n;
	}
	if (!f->fin_sent) {
		cr_assert(shutdown(f->from, SHUT_WR) == 0);
		f->fin_sent = 1;
	}
}

/* Read what arrived of flow f, checking every byte; EOF only after all of it. */
static void flow_recv(struct flow *f)
{
	uint8_t buf[65536];
	ssize_t n;

	for (;;) {
		n = recv(f->to, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			cr_assert_eq(errno, EAGAIN, "recv: %s after %llu of %llu bytes",
				     strerror(errno), (unsigned long long)f->got,
				     (unsigned long long)f->len);
			return;
		}
		if (n == 0) {
			cr_assert_eq(f->got, f->len, "EOF after %llu of %llu bytes",
				     (unsigned long long)f->got, (unsigned long long)f->len);
			f->eof_seen = 1;
			return;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pattern(f->got + (uint64_t)i, f->seed))
				cr_assert_fail("byte %llu differs", (unsigned long long)f->got + i);
		f->got += (uint64_t)n;
	}
}

/*
 * For each of n connections, move c2u bytes client -> upstream and u2c
 * the other way, all at once, each followed by FIN, until every end saw
 * EOF. Bounded: 5 s without progress fails.
 */
static void transfer_n(const int *cfd, const int *ufd, int n, uint64_t c2u, uint64_t u2c)
{
	enum { NMAX = 16 };
	struct flow f[2 * NMAX];
	int done = 0;

	cr_assert_leq(n, NMAX);
	for (int k = 0; k < n; k++) {
		f[2 * k] = (struct flow){ .from = cfd[k], .to = ufd[k], .len = c2u, .seed = 1 };
		f[2 * k + 1] = (struct flow){ .from = ufd[k], .to = cfd[k], .len = u2c, .seed = 2 };
	}
	for (int round = 0; round < 1000000 && done < 2 * n; round++) {
		struct pollfd p[2 * NMAX];

		/* p[i] is f[i].from; it reads f[i ^ 1], whose destination it is. */
		for (int i = 0; i < 2 * n; i++) {
			p[i] = (struct pollfd){ .fd = f[i].from };
			if (!f[i].fin_sent)
				p[i].events |= POLLOUT;
			if (!f[i ^ 1].eof_seen)
				p[i].events |= POLLIN;
		}
		cr_assert_gt(
			poll(p, (nfds_t)(2 * n), 5000), 0,
			"stalled: c2u %llu/%llu sent, %llu read; u2c %llu/%llu sent, %llu read",
			(unsigned long long)f[0].sent, (unsigned long long)c2u,
			(unsigned long long)f[0].got, (unsigned long long)f[1].sent,
			(unsigned long long)u2c, (unsigned long long)f[1].got);
		done = 0;
		for (int i = 0; i < 2 * n; i++) {
			flow_send(&f[i]);
			if (!f[i].eof_seen)
				flow_recv(&f[i]);
			done += f[i].eof_seen;
		}
	}
	cr_assert_eq(done, 2 * n);
}

static void transfer(int cfd, int ufd, uint64_t c2u, uint64_t u2c)
{
	transfer_n(&cfd, &ufd, 1, c2u, u2c);
}

static void bulk(const struct sf_engine *e, uint64_t size)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;

	rt_start(&t, e, "", up);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	transfer(cfd, ufd, size, size + 12345);
	/* Both FINs passed on: the reactor closes, the close counted before the stop. */
	for (int i = 0;
	     i < 500 && __atomic_load_n(&rt_ctr(&t)->closed[SF_R_EOF], __ATOMIC_RELAXED) == 0; i++)
		usleep(10000);
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_EOF], 1, "the connection did not end with EOF");
	cr_assert_eq(rt_ctr(&t)->bytes[SF_C2U], size);
	cr_assert_eq(rt_ctr(&t)->bytes[SF_U2C], size + 12345);
	cr_assert_eq(t.w.stats.resets, 0);
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

Test(reactor, bulk_both_ways_epoll) { bulk(&sf_engine_epoll, 8u << 20); }

Test(reactor, bulk_both_ways_splice) { bulk(&sf_engine_splice, 8u << 20); }

/* Every chunk after a burst's first moves from the ready queue, not from an edge. */
Test(reactor, bulk_through_the_ready_queue)
{
	bulk(&chunk_engine, 1u << 20);
	cr_assert_gt(chunk_more, 1000, "the ready queue was not exercised: %u", chunk_more);
	cr_assert_eq(chunk_releases, chunk_more + 2,
		     "%u releases for %u budgets spent: once for each and once per direction at "
		     "the end",
		     chunk_releases, chunk_more);
	cr_assert_eq(chunk_release_held, 0, "released while holding bytes");
	cr_assert_eq(chunk_twice, 0,
		     "%u times a direction was pumped again in the turn it spent its budget",
		     chunk_twice);
}

/* Many connections at once through the queue: none is starved or loses a byte. */
Test(reactor, ready_queue_with_many_connections)
{
	enum { N = 8 };
	struct rt t;
	int up, lfd = fx_listen(&up, N), cfd[N], ufd[N];

	rt_start(&t, &chunk_engine, "", up);
	for (int i = 0; i < N; i++) {
		cfd[i] = fx_connect(t.port);
		ufd[i] = up_accept(lfd);
	}
	/* All at once: their chunks interleave in the ready queue. */
	transfer_n(cfd, ufd, N, 256 * 1024, 128 * 1024);
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->accepted, N);
	cr_assert_eq(chunk_releases, chunk_more + 2 * N, "%u releases for %u budgets spent",
		     chunk_releases, chunk_more);
	cr_assert_eq(chunk_release_held, 0, "released while holding bytes");
	cr_assert_eq(chunk_twice, 0,
		     "%u times a direction was pumped again in the turn it spent its budget",
		     chunk_twice);
	for (int i = 0; i < N; i++) {
		close(cfd[i]);
		close(ufd[i]);
	}
	close(lfd);
	rt_done(&t);
}

/*
 * One budget per direction per turn, also for the two directions of one
 * connection: while the client's bulk keeps the connection on the ready
 * queue, each of 200 one-byte replies wakes the other direction by an
 * edge; that direction spends its (chunk) budget at once and must wait
 * for the next turn, not run again when the queue is served in this one.
 */
Test(reactor, one_budget_per_direction_per_turn)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd, pings = 0, waiting = 0;
	struct flow bulk;
	char c;

	rt_start(&t, &chunk_engine, "", up);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	bulk = (struct flow){ .from = cfd, .to = ufd, .len = 64u << 20, .seed = 3 };
	for (int round = 0; round < 1000000 && !bulk.eof_seen; round++) {
		struct pollfd p[2] = { { .fd = cfd, .events = POLLIN },
				       { .fd = ufd, .events = POLLIN } };

		if (!bulk.fin_sent)
			p[0].events |= POLLOUT;
		if (pings < 200 && !waiting)
			p[1].events |= POLLOUT;
		cr_assert_gt(poll(p, 2, 5000), 0, "stalled: %llu of %llu bytes, %d replies",
			     (unsigned long long)bulk.got, (unsigned long long)bulk.len, pings);
		flow_send(&bulk);
		flow_recv(&bulk);
		if (waiting && recv(cfd, &c, 1, MSG_DONTWAIT) == 1) {
			waiting = 0;
			pings++;
		}
		if (pings < 200 && !waiting && bulk.got < bulk.len / 2) {
			cr_assert(send(ufd, "r", 1, MSG_NOSIGNAL) == 1);
			waiting = 1;
		}
	}
	cr_assert(bulk.eof_seen, "bulk: %llu of %llu bytes", (unsigned long long)bulk.got,
		  (unsigned long long)bulk.len);
	cr_assert_gt(pings, 0);
	rt_stop(&t);
	cr_assert_eq(chunk_twice, 0,
		     "%u times a direction was pumped again in the turn it spent its budget",
		     chunk_twice);
	cr_assert_gt(chunk_deferred, 0, "no reply spent its budget while the bulk was carried");
	cr_assert_eq(chunk_release_held, 0, "released while holding bytes");
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

/*
 * Backpressure: the upstream reads nothing until every buffer on the way
 * is full and the client's sends block, and the client's FIN follows at
 * once. Only the destination's writability edge can resume the
 * direction, and the FIN must wait for the bytes held before it.
 */
static void backpressure(const struct sf_engine *e)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;
	struct flow f = { .len = 64u << 20, .seed = 3 }, back = { .len = 0, .seed = 4 };
	struct pollfd p;

	/* A small upstream window: the forwarder's side fills first. */
	int small = 4096;

	cr_assert(setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
	rt_start(&t, e, "", up);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	f.from = back.to = cfd;
	f.to = back.from = ufd;
	/* Fill (bounded by f.len) until the client's socket stays unwritable for 200 ms. */
	for (int i = 0; i < 100000 && f.sent < f.len; i++) {
		uint64_t before = f.sent;

		flow_send(&f);
		p = (struct pollfd){ .fd = cfd, .events = POLLOUT };
		if (f.sent == before && poll(&p, 1, 200) == 0)
			break;
	}
	cr_assert_lt(f.sent, f.len, "64 MiB went in without the upstream reading");
	f.len = f.sent; /* flow_send FINs now, behind the held bytes */
	flow_send(&f);
	cr_assert(f.fin_sent);
	flow_send(&back);
	for (int i = 0; i < 1000000 && !(f.eof_seen && back.eof_seen); i++) {
		/* Only the ends still waiting: one at EOF is readable for ever. */
		struct pollfd q[2] = { { .fd = f.eof_seen ? -1 : ufd, .events = POLLIN },
				       { .fd = back.eof_seen ? -1 : cfd, .events = POLLIN } };

		cr_assert_gt(poll(q, 2, 5000), 0, "stalled after %llu of %llu bytes",
			     (unsigned long long)f.got, (unsigned long long)f.len);
		if (!f.eof_seen)
			flow_recv(&f);
		if (!back.eof_seen)
			flow_recv(&back);
	}
	cr_assert(f.eof_seen && back.eof_seen);
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

Test(reactor, backpressure_resumes_on_writability_epoll) { backpressure(&sf_engine_epoll); }

Test(reactor, backpressure_resumes_on_writability_splice) { backpressure(&sf_engine_splice); }

Test(reactor, backpressure_resumes_on_writability_chunk) { backpressure(&chunk_engine); }

/* ---- timers ---- */

Test(reactor, idle_timeout_resets_both_sides)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;

	rt_start(&t, &sf_engine_epoll, "idle_timeout = \"200ms\";", up);
	cfd = fx_connect(t.port);
	/* No round trip first: it could itself outlast 200 ms on a loaded machine. */
	ufd = up_accept(lfd);
	assert_reset(cfd, "the client");
	assert_reset(ufd, "the upstream");
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_IDLE_TIMEOUT], 1);
	cr_assert_eq(t.w.stats.resets, 1);
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

Test(reactor, connect_timeout_fails_over_to_the_next_upstream)
{
	char ups[128];
	struct fx_blackhole b;
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;

	fx_blackhole_open(&b);
	snprintf(ups, sizeof(ups), "\"127.0.0.1:%d\", \"127.0.0.1:%d\"", b.port, up);
	rt_start_pool(&t, &sf_engine_epoll, "balance = \"first\"; connect_timeout = \"300ms\";",
		      ups);
	cfd = fx_connect(t.port);
	/* Sent while the first upstream is still being tried: must not be lost. */
	cr_assert_eq(send(cfd, "early", 5, 0), 5);
	ufd = up_accept(lfd);
	{
		char buf[8];

		cr_assert_eq(fx_read_all(ufd, buf, 5), 5);
		cr_assert_eq(memcmp(buf, "early", 5), 0);
	}
	round_trip(cfd, ufd, "after fail-over");
	close(cfd);
	close(ufd);
	rt_stop(&t);
	cr_assert_eq(t.g->rules[0].ups[0].st->w[0].failures, 1, "the blackhole's timeout counted");
	cr_assert_eq(t.g->rules[0].ups[1].st->w[0].failures, 0);
	cr_assert_eq(t.g->rules[0].ups[1].st->w[0].opened, 1);
	close(lfd);
	fx_blackhole_close(&b);
	rt_done(&t);
}

Test(reactor, connect_timeout_resets_the_client)
{
	struct fx_blackhole b;
	struct rt t;
	int cfd;

	fx_blackhole_open(&b);
	rt_start(&t, &sf_engine_epoll, "connect_timeout = \"200ms\";", b.port);
	cfd = fx_connect(t.port);
	assert_reset(cfd, "the client");
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_CONNECT_TIMEOUT], 1);
	cr_assert_eq(t.g->rules[0].ups[0].st->w[0].failures, 1);
	close(cfd);
	fx_blackhole_close(&b);
	rt_done(&t);
}

/* ---- accept paused at max_conns, resumed ---- */

Test(reactor, max_conns_pauses_accept_then_resumes)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), a, ua, b, ub;
	struct pollfd p;

	rt_start(&t, &sf_engine_epoll, "max_conns = 1;", up);
	a = fx_connect(t.port);
	ua = up_accept(lfd);
	round_trip(a, ua, "a1");
	/* The kernel completes b's handshake; the full rule leaves it in the backlog. */
	b = fx_connect(t.port);
	cr_assert_eq(send(b, "b", 1, 0), 1);
	round_trip(a, ua, "a2");
	p = (struct pollfd){ .fd = lfd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 0), 0, "b was forwarded while the rule was full");
	/* a ends: its slot is free, and accepting resumes after the pause. */
	close(a);
	close(ua);
	ub = up_accept(lfd);
	{
		char buf[2];

		cr_assert_eq(fx_read_all(ub, buf, 1), 1, "b's byte was lost in the pause");
		cr_assert_eq(buf[0], 'b');
	}
	round_trip(b, ub, "b2");
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->accepted, 2);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_EOF], 1);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_STOP], 1);
	close(b);
	close(ub);
	close(lfd);
	rt_done(&t);
}

/* ---- stop and errors: resets, never a FIN that makes a cut stream look whole ---- */

static void stop_resets(const struct sf_engine *e)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;

	rt_start(&t, e, "", up);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	round_trip(cfd, ufd, "before the stop");
	rt_stop(&t);
	assert_reset(cfd, "the client");
	assert_reset(ufd, "the upstream");
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_STOP], 1);
	cr_assert(t.w.stats.stopped == 1 && t.w.stats.resets == 1);
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

Test(reactor, stop_resets_open_connections_epoll) { stop_resets(&sf_engine_epoll); }

Test(reactor, stop_resets_open_connections_splice) { stop_resets(&sf_engine_splice); }

Test(reactor, stop_resets_open_connections_chunk)
{
	stop_resets(&chunk_engine);
	cr_assert_eq(chunk_releases, chunk_more + 2, "%u releases for %u budgets spent",
		     chunk_releases, chunk_more);
}

/* The client resets after sending: the upstream gets the bytes, then a reset, not EOF. */
static void client_reset(const struct sf_engine *e)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;

	rt_start(&t, e, "", up);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	round_trip(cfd, ufd, "hello");
	sf_net_reset(cfd);
	assert_reset(ufd, "the upstream");
	for (int i = 0;
	     i < 500 && __atomic_load_n(&rt_ctr(&t)->closed[SF_R_RESET], __ATOMIC_RELAXED) == 0;
	     i++)
		usleep(10000);
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_RESET], 1);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_EOF], 0);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

Test(reactor, client_reset_propagates_epoll) { client_reset(&sf_engine_epoll); }

Test(reactor, client_reset_propagates_splice) { client_reset(&sf_engine_splice); }

/* ---- buffers and pipes: lent while bytes are in flight, given back after ---- */

/* The loop's state, once the worker published it. */
static struct rx_loop *loop_of(struct rt *t)
{
	void *l = NULL;

	for (int i = 0;
	     i < 500 && (l = __atomic_load_n(&t->w.engine_state, __ATOMIC_ACQUIRE)) == NULL; i++)
		usleep(10000);
	cr_assert_not_null(l);
	return l;
}

/*
 * Poll (bounded) until *n is 0: the worker gives a buffer or pipe back
 * right after the write that emptied it, which may follow the reader's
 * wakeup by a moment. A leak never gets there.
 */
static unsigned settle(const unsigned *n)
{
	unsigned v = 0;

	for (int i = 0; i < 500 && (v = __atomic_load_n(n, __ATOMIC_RELAXED)) != 0; i++)
		usleep(10000);
	return v;
}

static void lent_in_flight(const struct sf_engine *e, int pipes)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;
	struct rx_loop *l;
	char buf[65536];

	rt_start(&t, e, "", up);
	l = loop_of(&t);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	memset(buf, 'x', sizeof(buf));
	/* 4 MiB each way, no FIN: the connection stays open and goes idle. */
	for (int round = 0; round < 2; round++) {
		int from = round ? ufd : cfd, to = round ? cfd : ufd;
		uint64_t got = 0;

		for (int i = 0; i < 64; i++) {
			cr_assert_eq(send(from, buf, sizeof(buf), MSG_NOSIGNAL),
				     (ssize_t)sizeof(buf));
			while (got < (uint64_t)(i + 1) * sizeof(buf)) {
				ssize_t n = recv(to, buf, sizeof(buf), 0);

				cr_assert_gt(n, 0, "stalled after %llu bytes",
					     (unsigned long long)got);
				got += (uint64_t)n;
			}
			memset(buf, 'x', sizeof(buf));
		}
	}
	cr_assert_eq(settle(&l->bufs.nlive), 0, "an idle connection holds a buffer");
	if (pipes) {
		struct sf_pipepool *pp = l->priv;

		cr_assert_eq(settle(&pp->nlive), 0, "an idle connection holds a pipe");
		cr_assert_geq(__atomic_load_n(&pp->nfree, __ATOMIC_RELAXED), 1,
			      "the pipe used was not given back clean");
	}
	rt_stop(&t);
	if (pipes)
		cr_assert_gt(rt_ctr(&t)->spliced[SF_C2U], 0, "splice never spliced");
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

Test(reactor, buffers_lent_only_in_flight_epoll) { lent_in_flight(&sf_engine_epoll, 0); }

Test(reactor, pipes_lent_only_in_flight_splice) { lent_in_flight(&sf_engine_splice, 1); }

/* ---- admission in the loop ---- */

/* --accept-proxy: the header is read off, the payload after it arrives whole. */
Test(reactor, accept_proxy_strips_the_header)
{
	static const char hdr[] = "PROXY TCP4 10.1.2.3 10.0.0.9 4000 80\r\n";
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd;
	char buf[16];

	rt_start(&t, &sf_engine_epoll, "accept_proxy = true; allow = \"10.0.0.0/8\";", up);
	cfd = fx_connect(t.port);
	/* In two parts, the second with the first payload bytes. */
	cr_assert_eq(send(cfd, hdr, 12, 0), 12);
	cr_assert_eq(send(cfd, hdr + 12, sizeof(hdr) - 1 - 12, MSG_MORE),
		     (ssize_t)sizeof(hdr) - 13);
	cr_assert_eq(send(cfd, "payload", 7, 0), 7);
	ufd = up_accept(lfd);
	cr_assert_eq(fx_read_all(ufd, buf, 7), 7);
	cr_assert_eq(memcmp(buf, "payload", 7), 0,
		     "the header leaked upstream, or bytes were lost");
	round_trip(cfd, ufd, "more");
	close(cfd);
	close(ufd);
	close(lfd);
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_DENIED], 0);
	rt_done(&t);
}

/* A malformed header: the client is reset, nothing reaches the upstream. */
Test(reactor, accept_proxy_bad_header_resets)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd;
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	rt_start(&t, &sf_engine_epoll, "accept_proxy = true;", up);
	cfd = fx_connect(t.port);
	cr_assert_eq(send(cfd, "GET / HTTP/1.0\r\n\r\n", 18, 0), 18);
	assert_reset(cfd, "the client without a header");
	rt_stop(&t);
	cr_assert_eq(poll(&p, 1, 0), 0, "a client without a header reached the upstream");
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_PROXY_HEADER], 1);
	close(cfd);
	close(lfd);
	rt_done(&t);
}

/* A client the lists refuse is reset and never reaches the upstream. */
Test(reactor, denied_client_is_reset)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd;
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	rt_start(&t, &sf_engine_epoll, "deny = \"127.0.0.0/8\";", up);
	cfd = fx_connect(t.port);
	assert_reset(cfd, "the denied client");
	rt_stop(&t);
	cr_assert_eq(poll(&p, 1, 0), 0, "a denied client reached the upstream");
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_DENIED], 1);
	close(cfd);
	close(lfd);
	rt_done(&t);
}

/* ---- drain ---- */

/*
 * Drain: the listener closes, the open connection goes on to the end of
 * its data; the worker then counts as drained. The drained signal
 * (SIGUSR2, for main) is ignored here.
 */
Test(reactor, drain_keeps_serving_open_connections)
{
	struct rt t;
	int up, lfd = fx_listen(&up, 8), cfd, ufd, late;
	struct sockaddr_in a;

	signal(SF_SIG_DRAINED, SIG_IGN);
	rt_start(&t, &sf_engine_epoll, "", up);
	cfd = fx_connect(t.port);
	ufd = up_accept(lfd);
	round_trip(cfd, ufd, "before");
	sf_worker_drain(&t.w);
	/* Bounded: the listener closes once the worker ran the command. */
	for (int i = 0; i < 500 && !__atomic_load_n(&t.w.draining, __ATOMIC_SEQ_CST); i++)
		usleep(10000);
	cr_assert(__atomic_load_n(&t.w.draining, __ATOMIC_SEQ_CST), "drain never ran");
	a = fx_lo(t.port);
	late = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(late, (struct sockaddr *)&a, sizeof(a)), -1, "still listening");
	cr_assert_eq(errno, ECONNREFUSED);
	close(late);
	cr_assert_eq(sf_worker_drained(&t.w), 0, "one connection is still open");
	transfer(cfd, ufd, 1u << 20, 1u << 20);
	for (int i = 0; i < 500 && !sf_worker_drained(&t.w); i++)
		usleep(10000);
	cr_assert(sf_worker_drained(&t.w), "the last connection ended: drained");
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_EOF], 1);
	cr_assert_eq(t.w.stats.resets, 0);
	close(cfd);
	close(ufd);
	close(lfd);
	rt_done(&t);
}

/* ---- reload ---- */

/*
 * A reload to a generation with another upstream: the open connection
 * keeps its generation and its upstream, new clients go to the new one,
 * on the listening socket handed over (no client refused).
 */
Test(reactor, reload_keeps_open_connections_on_their_generation)
{
	struct rt t;
	int up1, up2, l1 = fx_listen(&up1, 8), l2 = fx_listen(&up2, 8), a, ua, b, ub;
	struct sf_gen *g2;
	char err[512];

	rt_start(&t, &sf_engine_epoll, "", up1);
	a = fx_connect(t.port);
	ua = up_accept(l1);
	round_trip(a, ua, "before the reload");
	g2 = fx_gen(
		1,
		"rules = { r = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:%d\"; }; };\n",
		t.port, up2);
	cr_assert_eq(sf_gen_listen(g2, t.g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(g2->ls[0].socks[0].io.fd, t.g->ls[0].socks[0].io.fd,
		     "the socket is handed over");
	sf_worker_post_gen(&t.w, g2);
	for (int i = 0; i < 500 && __atomic_load_n(&t.w.gen, __ATOMIC_ACQUIRE) != g2; i++)
		usleep(10000);
	cr_assert_eq(__atomic_load_n(&t.w.gen, __ATOMIC_ACQUIRE), g2, "the worker never took it");
	b = fx_connect(t.port);
	ub = up_accept(l2);
	round_trip(b, ub, "new generation");
	round_trip(a, ua, "old generation, still served");
	transfer(a, ua, 1u << 20, 1u << 20);
	rt_stop(&t);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_EOF], 1);
	cr_assert_eq(rt_ctr(&t)->closed[SF_R_STOP], 1);
	cr_assert_eq(t.g->refs, 1, "the old generation is ours alone now");
	close(a);
	close(ua);
	close(b);
	close(ub);
	close(l1);
	close(l2);
	rt_done(&t);
	sf_gen_unref(g2);
}
