/*
 * Meet and bridge in the reactor (epoll and splice engines): connections
 * whose two sockets come from somewhere else than accept + connect, then
 * pumped, timed and torn down by the reactor like any other, with the
 * policy of conn.c (half-close, resets, counters, the -v close line).
 *
 * Meet: a client accepted on either listen address of a meet rule waits
 * in its side's queue (first come, first served) as a connection with
 * one socket, registered for EPOLLRDHUP so that a client leaving (FIN or
 * RST) is dropped from the queue at once; its bytes stay in its socket
 * until the pair starts. A client arriving on the other address takes
 * the first live waiter; the pair is then one connection.
 *
 * Bridge: each bridge rule has pairs slots; a slot connects to both
 * upstreams, and when its pair ends it connects again. While connects
 * fail it backs off, from RX_BACKOFF_MIN doubling to RX_BACKOFF_MAX; an
 * established pair resets the backoff.
 *
 * Worker 0 serves every meet and bridge rule (rule.h, SF_PAIR_WORKER):
 * both clients of a pair must meet in one loop, and --pairs counts pairs
 * of the whole process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>

#include "event/reactor.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/worker.h"

#define RX_BACKOFF_MIN 100u   /* ms */
#define RX_BACKOFF_MAX 30000u /* ms */

/* The waiting clients of one meet rule, by side, found by rule name across reloads. */
struct rx_meetq {
	char name[SF_NAME_MAX];
	/* Used through the queue macros, which cppcheck does not follow into. */
	/* cppcheck-suppress unusedStructMember */
	TAILQ_HEAD(, rx_conn) q[2];
	LIST_ENTRY(rx_meetq) link;
};

/* One pair a bridge rule keeps: its connection, or the time of its next attempt. */
struct rx_slot {
	char name[SF_NAME_MAX]; /* its rule, looked up in the worker's generation */
	unsigned idx;		/* 0 .. pairs-1 */
	uint64_t backoff_ms;	/* the delay after the next failure */
	struct sf_timer timer;	/* the next attempt */
	struct rx_conn *x;	/* the pair, connecting or up; NULL between attempts */
	int gone;		/* its rule was dropped: freed once its pair ends */
	LIST_ENTRY(rx_slot) link;
};

struct rx_pairs {
	/* Used through the queue macros, which cppcheck does not follow into. */
	/* cppcheck-suppress unusedStructMember */
	LIST_HEAD(, rx_meetq) meets;
	/* cppcheck-suppress unusedStructMember */
	LIST_HEAD(, rx_slot) slots;
	int stopping; /* teardown or drain: nothing new starts */
};

int rx_serves(const struct rx_loop *l, const struct sf_lsock *ls)
{
	if (ls->io.fd < 0)
		return 0;
	return !sf_rule_paired(ls->l->rule) || l->w->id == SF_PAIR_WORKER;
}

static struct rx_pairs *pairs_of(struct rx_loop *l)
{
	if (l->pairs == NULL && (l->pairs = calloc(1, sizeof(*l->pairs))) != NULL) {
		LIST_INIT(&l->pairs->meets);
		LIST_INIT(&l->pairs->slots);
	}
	return l->pairs;
}

/* ---- meet ---- */

/* The queue of the meet rule named name, created on first use; NULL: out of memory. */
static struct rx_meetq *meetq_get(struct rx_loop *l, const char *name)
{
	struct rx_pairs *ps = pairs_of(l);
	struct rx_meetq *q;

	if (ps == NULL)
		return NULL;
	LIST_FOREACH(q, &ps->meets, link)
	if (strcmp(q->name, name) == 0)
		return q;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	snprintf(q->name, sizeof(q->name), "%s", name);
	TAILQ_INIT(&q->q[0]);
	TAILQ_INIT(&q->q[1]);
	LIST_INSERT_HEAD(&ps->meets, q, link);
	return q;
}

/*
 * Has waiting client x left? Its EPOLLRDHUP may not have been read yet
 * (it can sit behind the partner's accept in one batch), so ask the
 * socket too: a FIN or a reset shows as POLLRDHUP, POLLHUP or POLLERR
 * even with unread bytes before it.
 */
static int meet_left(struct rx_conn *x)
{
	return x->hup[SF_CLIENT] || sf_net_peer_gone(x->c.fd[SF_CLIENT]);
}

int rx_meet_reserve(struct rx_loop *l, const struct sf_lsock *ls)
{
	struct sf_rule *r = ls->l->rule;
	struct rx_meetq *q;

	if (r->mode != SF_MODE_MEET || l->pairs == NULL)
		return 0;
	LIST_FOREACH(q, &l->pairs->meets, link)
	if (strcmp(q->name, r->name) == 0 && !TAILQ_EMPTY(&q->q[!ls->l->side])) {
		SF_ATOMIC_ADD(r->active, 1);
		return 1;
	}
	return 0;
}

/* Waiting client x left, or its time is up: end it as its socket tells. */
static void meet_drop(struct rx_loop *l, struct rx_conn *x)
{
	int err = sf_net_so_error(x->c.fd[SF_CLIENT]);

	if (err < 0)
		rx_kill(l, x, SF_R_RESET, SF_CLIENT, err, 1);
	else
		rx_kill(l, x, SF_R_EOF, -1, 0, 0); /* its FIN answered with ours */
}

/*
 * The first live client waiting on side of q, or NULL; clients found to
 * have left on the way are dropped.
 */
static struct rx_conn *meet_first(struct rx_loop *l, struct rx_meetq *q, unsigned side)
{
	struct rx_conn *x;

	while ((x = TAILQ_FIRST(&q->q[side])) != NULL) {
		if (!meet_left(x))
			return x;
		meet_drop(l, x);
	}
	return NULL;
}

/*
 * Client fd joins x, waiting on side wside: the pair becomes one
 * connection (conn.c, sf_conn_meet_join), its sockets registered by side,
 * then both directions are pumped: either client may have sent bytes.
 */
static void meet_join(struct rx_loop *l, struct rx_conn *x, unsigned wside, int fd,
		      const struct sf_sockaddr *peer)
{
	struct rx_meetq *q = x->pair;
	int nside = !wside;

	TAILQ_REMOVE(&q->q[wside], x, wait);
	x->pair = NULL;
	x->pairing = 0;
	sf_timer_del(&l->timers, &x->c.timer);
	sf_conn_meet_join(&x->c, wside, fd, peer);
	if (wside == 1) {
		/* The waiting socket moves to slot 1: point its registration there. */
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					  .data.ptr = &x->io[1] };

		x->io[1].fd = x->c.fd[1];
		x->io[0].fd = -1;
		x->hup[1] = x->hup[0];
		x->hup[0] = 0;
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, x->c.fd[1], &ev) < 0) {
			rx_kill(l, x, SF_R_LIMIT, 1, -errno, 1);
			return;
		}
	}
	if (rx_add_sock(l, x, nside) < 0) {
		rx_kill(l, x, SF_R_LIMIT, nside, -errno, 1);
		return;
	}
	rx_arm(l, x);
	if (x->dead)
		return;
	rx_pump(l, x, SF_C2U);
	rx_pump(l, x, SF_U2C);
}

void rx_meet_accept(struct rx_loop *l, struct sf_lsock *ls, int fd, const struct sf_sockaddr *peer)
{
	struct sf_rule *r = ls->l->rule;
	unsigned side = ls->l->side;
	struct rx_meetq *q = meetq_get(l, r->name);
	struct rx_conn *x;
	uint64_t when;
	int rc;

	/*
	 * A refused client gets a connection of its own, counted as denied;
	 * so does one that left before it was accepted (a FIN or a reset
	 * still in the backlog), which then leaves the queue as any other.
	 */
	if (q != NULL && sf_rule_allows(r, (const struct sockaddr *)&peer->ss) &&
	    !sf_net_peer_gone(fd) && (x = meet_first(l, q, !side)) != NULL) {
		sf_rule_release(r); /* the pair holds one slot: the first client's */
		meet_join(l, x, !side, fd, peer);
		return;
	}
	if ((x = rx_conn_alloc(l)) == NULL) {
		sf_rule_release(r);
		sf_net_reset(fd);
		return;
	}
	sf_conn_init(&x->c, l->w, ls, fd, peer);
	rx_conn_track(l, x);
	rc = sf_conn_admit(&x->c);
	if (rc != 0) {
		rc = rc > 0 ? -EPROTO : rc; /* no PROXY header in meet (config.c) */
		rx_kill(l, x, sf_conn_refused_reason(&x->c, rc), SF_CLIENT, rc, 1);
		return;
	}
	if (q == NULL || rx_add_sock(l, x, SF_CLIENT) < 0) {
		rx_kill(l, x, SF_R_LIMIT, SF_CLIENT, q == NULL ? -ENOMEM : -errno, 1);
		return;
	}
	x->pairing = 1;
	x->pair = q;
	TAILQ_INSERT_TAIL(&q->q[side], x, wait);
	when = sf_conn_meet_deadline(&x->c);
	if (when != 0 && sf_timer_set(&l->timers, &x->c.timer, when) < 0)
		rx_kill(l, x, SF_R_LIMIT, -1, -ENOMEM, 1);
}

/* ---- bridge ---- */

static void slot_start(struct rx_loop *l, struct rx_slot *s);

/* Try again after the slot's backoff, which then doubles (bounded). */
static void slot_retry(struct rx_loop *l, struct rx_slot *s, uint64_t delay)
{
	if (l->pairs->stopping || s->gone)
		return;
	if (sf_timer_set(&l->timers, &s->timer, l->w->now_ms + delay) < 0)
		sf_log_warnx("bridge '%s': out of memory, pair %u not restarted", s->name, s->idx);
}

static void slot_backoff(struct rx_loop *l, struct rx_slot *s)
{
	uint64_t delay = s->backoff_ms;

	s->backoff_ms = delay * 2 > RX_BACKOFF_MAX ? RX_BACKOFF_MAX : delay * 2;
	slot_retry(l, s, delay);
}

static void slot_free(struct rx_loop *l, struct rx_slot *s)
{
	sf_timer_del(&l->timers, &s->timer);
	LIST_REMOVE(s, link);
	free(s);
}

/* Both sides of bridge x are connected: it becomes an established connection. */
static void bridge_up(struct rx_loop *l, struct rx_conn *x)
{
	struct rx_slot *s = x->pair;

	x->pairing = 0;
	x->connecting = 0;
	s->backoff_ms = RX_BACKOFF_MIN;
	rx_arm(l, x);
	if (x->dead)
		return;
	/* Either server may have sent bytes (a banner) while the other connected. */
	rx_pump(l, x, SF_C2U);
	rx_pump(l, x, SF_U2C);
}

/*
 * Side d of bridge x has a connect result rc (0, -EINPROGRESS or
 * -errno): register the socket, or go on, or end the attempt.
 */
static void bridge_step(struct rx_loop *l, struct rx_conn *x, int d, int rc)
{
	if (rc == 0 || rc == -EINPROGRESS) {
		if (rx_add_sock(l, x, d) < 0) {
			rx_kill(l, x, SF_R_LIMIT, d, -errno, 1);
			return;
		}
		if (rc == 0 && sf_conn_bridge_connected(&x->c, d))
			bridge_up(l, x);
		return;
	}
	rx_kill(l, x, rc == -EMFILE || rc == -ENFILE ? SF_R_LIMIT : sf_conn_connect_reason(&x->c),
		d, rc, 1);
}

/* Slot s starts a pair: both connects at once, under one connect timeout. */
static void slot_start(struct rx_loop *l, struct rx_slot *s)
{
	struct sf_rule *r = sf_gen_rule(l->w->gen, s->name);
	struct rx_conn *x;
	int d;

	if (l->pairs->stopping || l->w->draining)
		return;
	if (r == NULL || r->mode != SF_MODE_BRIDGE || s->idx >= r->pol->pairs) {
		slot_free(l, s);
		return;
	}
	if ((x = rx_conn_alloc(l)) == NULL) {
		slot_backoff(l, s);
		return;
	}
	sf_conn_init_bridge(&x->c, l->w, l->w->gen, r);
	rx_conn_track(l, x);
	x->pair = s;
	x->pairing = 1;
	x->connecting = 1;
	s->x = x;
	rx_arm(l, x);
	for (d = 0; d < 2 && !x->dead; d++)
		bridge_step(l, x, d, sf_conn_bridge_connect(&x->c, d));
}

static void slot_on_timer(void *ctx, struct sf_timer *tm)
{
	slot_start(ctx, SF_CONTAINER_OF(tm, struct rx_slot, timer));
}

/* ---- the connection hooks ---- */

void rx_pair_event(struct rx_loop *l, struct rx_conn *x, int side, uint32_t ev)
{
	int err;

	if (x->c.kind == SF_MODE_MEET) {
		/* A waiting client's bytes stay in its socket; leaving drops it. */
		if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			meet_drop(l, x);
		return;
	}
	/* Bridge: an edge of a connected side waits until both are. */
	if ((x->c.bup & (1u << side)) || !(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
		return;
	err = sf_net_so_error(x->c.fd[side]);
	if (err == 0 && (ev & (EPOLLERR | EPOLLHUP)))
		err = -ECONNREFUSED;
	if (err == 0) {
		if (sf_conn_bridge_connected(&x->c, side))
			bridge_up(l, x);
		return;
	}
	/* The failed socket leaves the epoll set as it is closed. */
	bridge_step(l, x, side, sf_conn_bridge_next(&x->c, side, err));
}

void rx_pair_timer(struct rx_loop *l, struct rx_conn *x)
{
	int d;

	if (x->c.kind == SF_MODE_MEET) {
		rx_kill(l, x, SF_R_IDLE_TIMEOUT, SF_CLIENT, -ETIMEDOUT, 1);
		return;
	}
	/* The connect timeout: each side still connecting tries its next address. */
	rx_arm(l, x);
	for (d = 0; d < 2 && !x->dead && x->pairing; d++)
		if (!(x->c.bup & (1u << d)))
			bridge_step(l, x, d, sf_conn_bridge_next(&x->c, d, -ETIMEDOUT));
}

void rx_pair_killed(struct rx_loop *l, struct rx_conn *x)
{
	struct rx_slot *s;

	if (x->c.kind == SF_MODE_MEET) {
		struct rx_meetq *q = x->pair;

		TAILQ_REMOVE(&q->q[x->c.l->side], x, wait);
		x->pair = NULL;
		return;
	}
	s = x->pair;
	x->pair = NULL;
	s->x = NULL;
	if (s->gone) {
		slot_free(l, s);
		return;
	}
	/* An established pair ended: connect again soon; a failed one backs off. */
	if (!x->pairing)
		slot_retry(l, s, RX_BACKOFF_MIN);
	else
		slot_backoff(l, s);
}

/* ---- generations, drain, teardown ---- */

/* Does g have a rule named name in mode? */
static struct sf_rule *rule_in(struct sf_gen *g, const char *name, int mode)
{
	struct sf_rule *r = sf_gen_rule(g, name);

	return r != NULL && r->mode == mode ? r : NULL;
}

/* Reset every client waiting in q (SF_R_STOP) and free q. */
static void meetq_flush(struct rx_loop *l, struct rx_meetq *q)
{
	struct rx_conn *x;
	int side;

	for (side = 0; side < 2; side++)
		while ((x = TAILQ_FIRST(&q->q[side])) != NULL)
			rx_kill(l, x, SF_R_STOP, -1, 0, 1);
	LIST_REMOVE(q, link);
	free(q);
}

/*
 * Slots follow the rules of the worker's generation: a slot whose rule
 * is gone (or no longer a bridge, or beyond its pairs) ends its pair; a
 * missing slot starts. A pair of a rule that stays goes on, and connects
 * with the new rule when it next connects. Missing slots are started
 * before dropped ones end: ending frees slots, and clang's analyzer loses
 * track of a list head after LIST_REMOVE (it would report the search for
 * missing slots as a use after free). Returns 0 or -ENOMEM.
 */
static int slots_sync(struct rx_loop *l, struct rx_pairs *ps, struct sf_gen *g)
{
	struct rx_slot *s, *next;
	size_t i;
	unsigned k;
	int rc = 0;

	for (i = 0; i < g->nrules; i++) {
		struct sf_rule *r = &g->rules[i];

		if (r->mode != SF_MODE_BRIDGE)
			continue;
		for (k = 0; k < r->pol->pairs; k++) {
			LIST_FOREACH(s, &ps->slots, link)
			if (s->idx == k && strcmp(s->name, r->name) == 0)
				break;
			if (s != NULL)
				continue;
			if ((s = calloc(1, sizeof(*s))) == NULL) {
				rc = -ENOMEM;
				break;
			}
			snprintf(s->name, sizeof(s->name), "%s", r->name);
			s->idx = k;
			s->backoff_ms = RX_BACKOFF_MIN;
			sf_timer_init(&s->timer, slot_on_timer);
			LIST_INSERT_HEAD(&ps->slots, s, link);
			slot_start(l, s);
		}
	}
	for (s = LIST_FIRST(&ps->slots); s != NULL; s = next) {
		struct sf_rule *r = rule_in(g, s->name, SF_MODE_BRIDGE);

		next = LIST_NEXT(s, link);
		if (r != NULL && s->idx < r->pol->pairs)
			continue;
		s->gone = 1;
		if (s->x != NULL)
			rx_kill(l, s->x, SF_R_STOP, -1, 0, 1); /* frees s */
		else
			slot_free(l, s);
	}
	return rc;
}

int rx_pairs_gen(struct rx_loop *l)
{
	struct sf_gen *g = l->w->gen;
	struct rx_meetq *q, *next;
	struct rx_pairs *ps;
	size_t i;

	if (l->w->id != SF_PAIR_WORKER)
		return 0;
	for (i = 0; i < g->nrules && !sf_rule_paired(&g->rules[i]); i++)
		;
	if (i == g->nrules && l->pairs == NULL)
		return 0; /* nothing paired, now or before */
	if ((ps = pairs_of(l)) == NULL)
		return -ENOMEM;
	l->w->now_ms = sf_now_ms(); /* before the loop's first turn sets it */
	/* Clients waiting for a rule that no longer meets would wait forever. */
	for (q = LIST_FIRST(&ps->meets); q != NULL; q = next) {
		next = LIST_NEXT(q, link);
		if (rule_in(g, q->name, SF_MODE_MEET) == NULL)
			meetq_flush(l, q);
	}
	return slots_sync(l, ps, g);
}

void rx_pairs_drain(struct rx_loop *l)
{
	struct rx_pairs *ps = l->pairs;
	struct rx_slot *s, *next;

	if (ps == NULL)
		return;
	ps->stopping = 1;
	/* No partner can come any more: waiting clients are let go. */
	while (!LIST_EMPTY(&ps->meets))
		meetq_flush(l, LIST_FIRST(&ps->meets));
	/* Pairs under way go on; nothing starts again. */
	for (s = LIST_FIRST(&ps->slots); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (s->x != NULL)
			s->gone = 1;
		else
			slot_free(l, s);
	}
}

void rx_pairs_stop(struct rx_loop *l)
{
	if (l->pairs != NULL)
		l->pairs->stopping = 1;
}

void rx_pairs_free(struct rx_loop *l)
{
	struct rx_pairs *ps = l->pairs;
	struct rx_slot *s, *sn;
	struct rx_meetq *q, *qn;

	if (ps == NULL)
		return;
	/* Next pointers saved before each free (see slots_sync on the analyzer). */
	for (s = LIST_FIRST(&ps->slots); s != NULL; s = sn) {
		sn = LIST_NEXT(s, link);
		slot_free(l, s);
	}
	for (q = LIST_FIRST(&ps->meets); q != NULL; q = qn) {
		qn = LIST_NEXT(q, link);
		meetq_flush(l, q);
	}
	free(ps);
	l->pairs = NULL;
}
