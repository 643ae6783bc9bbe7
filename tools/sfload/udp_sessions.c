/*
 * `sfload udp-sessions`: -n client sockets (sources spread over -a
 * addresses 127.65.x.y), one echoed datagram each, -w in flight: new
 * sessions/s and their first round trip; then hold them (-H, -W) and
 * check each still gets an answer. An answer may take UC_SESSION_NS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

#define UC_SESSION_NS 1000000000ull /* how long an answer may take */

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
