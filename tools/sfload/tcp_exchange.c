/*
 * `sfload crr`, `rr` and `idle`: one epoll loop over many small TCP
 * exchanges (send a request, read its echo).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sfload.h"

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

/* Release what ex_init() set up (the slots' sockets are closed already). */
static void ex_free(struct exrun *r)
{
	close(r->ep);
	free(r->slots);
	free(r->req);
	free(r->rbuf);
	lat_free(&r->lat);
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
int cmd_crr(struct opts *o)
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
	ex_free(&r);
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
int cmd_rr(struct opts *o)
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
		ex_free(&r);
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
	ex_free(&r);
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

/* `sfload idle`: hold n idle connections, then check each still echoes. */
int cmd_idle(struct opts *o)
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
	ex_free(&r);
	return ok == o->n ? 0 : 1;
}
