/*
 * The edge-triggered epoll loop behind the epoll and splice engines.
 *
 * Every descriptor is registered with a struct sf_io: its callback gets
 * the loop and the io, so listeners, connection sockets and the command
 * channel are dispatched alike. Timers (connect, idle and PROXY header
 * deadlines; paused listeners) sit in one heap whose first deadline is
 * the epoll_wait timeout.
 *
 * Each connection registers both sockets once, for EPOLLIN|EPOLLOUT|
 * EPOLLRDHUP|EPOLLET, so no epoll_ctl is needed on the data path: an
 * input edge on a socket pumps the direction it is the source of, an
 * output edge the direction it is the destination of. A pump that spends
 * its budget queues its connection on the ready list, since edge-triggered
 * epoll would not wake us again; the list is served in the next turn of
 * the loop, after that turn's events (epoll_wait does not sleep then).
 *
 * Connections closed while events for them are still in the current
 * batch are marked dead and freed only after the batch.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "event/reactor.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/worker.h"

#define MAX_EVENTS    256
#define ACCEPT_BUDGET 64
#define BUF_IDLE      32

static int rx_add(struct rx_loop *l, struct sf_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

/*
 * Listeners are registered with EPOLLEXCLUSIVE: a socket passed by systemd
 * is one socket in every worker's epoll set, and a client arriving on it
 * then wakes one idle worker, not all of them to race for one accept
 * (the losers would only see EAGAIN). A worker's own SO_REUSEPORT socket
 * has one waiter, so the flag changes nothing there. Listeners are only
 * ever added and deleted, never modified, which EPOLLEXCLUSIVE requires.
 */
static int rx_add_listener(struct rx_loop *l, struct sf_lsock *ls)
{
	return rx_add(l, &ls->io, EPOLLIN | EPOLLEXCLUSIVE);
}

int rx_add_sock(struct rx_loop *l, struct rx_conn *x, int side)
{
	x->io[side].fd = x->c.fd[side];
	return rx_add(l, &x->io[side], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

/*
 * End x: close both sockets (reset when asked) through the shared policy,
 * give back what its directions borrowed, and defer the free past the batch.
 * reason is an enum sf_reason, side the failing socket or -1.
 */
void rx_kill(struct rx_loop *l, struct rx_conn *x, int reason, int side, int err, int reset)
{
	if (x->pair != NULL)
		rx_pair_killed(l, x);
	l->xf->release(l, x, SF_C2U);
	l->xf->release(l, x, SF_U2C);
	sf_timer_del(&l->timers, &x->c.timer);
	if (reset)
		sf_conn_reset(&x->c, reason, side, err);
	else
		sf_conn_close(&x->c);
	LIST_REMOVE(x, all);
	x->dead = 1;
	/* A queued connection is moved to the dead list when dequeued. */
	if (!x->queued) {
		x->dead_next = l->dead;
		l->dead = x;
	}
}

/*
 * The mark of a direction queued in this turn of the loop: never 0, and
 * never the last turn's. The list being served holds only those two
 * (rx_run_ready sends a direction with this turn's mark on to the next),
 * so one bit of the turn tells them apart.
 */
static uint8_t rx_mark(const struct rx_loop *l) { return (uint8_t)(1 + (l->turn & 1)); }

static void rx_queue(struct rx_loop *l, struct rx_conn *x, int d)
{
	x->more[d] = rx_mark(l);
	if (x->queued)
		return;
	x->queued = 1;
	x->ready_next = NULL;
	if (l->ready_tail != NULL)
		l->ready_tail->ready_next = x;
	else
		l->ready = x;
	l->ready_tail = x;
}

/* Pump direction d of x once, then apply the half-close rules. */
void rx_pump(struct rx_loop *l, struct rx_conn *x, int d)
{
	struct sf_conn *c = &x->c;
	int rc;

	if (x->dead || (c->flags & SF_CONN_SHUT(d)))
		return;
	/*
	 * A direction that spent its budget waits for its turn on the ready
	 * list even when a new edge arrives: one budget per direction per
	 * loop turn, or a bulk stream would take two for every epoll_wait
	 * that its neighbours get.
	 */
	if (x->queued && x->more[d])
		return;
	rc = l->xf->pump(l, x, d);
	if (rc < 0) {
		rx_kill(l, x, SF_R_RESET, x->err_side, rc, 1);
		return;
	}
	if (rc == RX_MORE) {
		/*
		 * It holds nothing now: give back its buffer or pipe while
		 * queued, or every busy direction would keep one across the
		 * turn and the bytes would run through hundreds of them instead
		 * of the few the pools keep warm (37.7 MiB RSS at 512 epoll
		 * streams against 5.7).
		 */
		l->xf->release(l, x, d);
		rx_queue(l, x, d);
	}
	if ((c->flags & SF_CONN_EOF(d)) && l->xf->empty(x, d) && sf_conn_shut(c, d, 1))
		rx_kill(l, x, SF_R_EOF, -1, 0, 0);
}

/* Arm x's one timer for its current state, or disarm it. */
void rx_arm(struct rx_loop *l, struct rx_conn *x)
{
	uint64_t when = sf_conn_deadline(&x->c, x->connecting, l->w->now_ms);

	if (when == 0)
		sf_timer_del(&l->timers, &x->c.timer);
	else if (sf_timer_set(&l->timers, &x->c.timer, when) < 0)
		rx_kill(l, x, SF_R_LIMIT, -1, -ENOMEM, 1);
}

/* Stop accepting on ls for SF_ACCEPT_PAUSE_MS (its rule is full, or EMFILE). */
static void rx_pause(struct rx_loop *l, struct sf_lsock *ls)
{
	if (ls->paused)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, ls->io.fd, NULL);
	ls->paused = 1;
	sf_timer_set(&l->timers, &ls->resume, l->w->now_ms + SF_ACCEPT_PAUSE_MS);
}

static void rx_on_resume(void *ctx, struct sf_timer *tm)
{
	struct rx_loop *l = ctx;
	struct sf_lsock *ls = SF_CONTAINER_OF(tm, struct sf_lsock, resume);

	ls->paused = 0;
	/* Level-triggered: a backlog left while paused reports at once. */
	if (rx_add_listener(l, ls) < 0)
		sf_log_warn("worker %u: cannot resume accepting", l->w->id);
}

static void rx_connected(struct rx_loop *l, struct rx_conn *x, int err, uint32_t ev);

/* Admitted: start the upstream connect. */
static void rx_start_connect(struct rx_loop *l, struct rx_conn *x)
{
	int rc = sf_conn_connect(&x->c, 0);

	if (rc == -EMFILE || rc == -ENFILE) {
		/*
		 * No descriptor for the upstream socket: no upstream was tried,
		 * so none may count a failure (rx_connected would move on to
		 * the next one and mark this one down).
		 */
		rx_kill(l, x, SF_R_LIMIT, SF_UPSTREAM, rc, 1);
		return;
	}
	if (rc == 0 || rc == -EINPROGRESS) {
		x->connecting = 1;
		if (rx_add_sock(l, x, SF_UPSTREAM) < 0) {
			rx_kill(l, x, SF_R_LIMIT, SF_UPSTREAM, -errno, 1);
			return;
		}
		if (rc == 0)
			rx_connected(l, x, 0, EPOLLIN);
		else
			rx_arm(l, x);
		return;
	}
	rx_connected(l, x, rc, EPOLLIN);
}

/*
 * The upstream connect of x finished (err is 0 or -errno, -ETIMEDOUT from
 * the timer). ev: the upstream's event that told it (EPOLLIN when none):
 * without EPOLLIN the upstream had sent nothing yet, and what it sends
 * later raises an edge of its own, so its read is left to that edge.
 */
static void rx_connected(struct rx_loop *l, struct rx_conn *x, int err, uint32_t ev)
{
	int rc = err;

	if (err < 0) {
		/* The failed socket leaves the epoll set as it is closed. */
		rc = sf_conn_connect_next(&x->c, err);
		if (rc == -EINPROGRESS || rc == 0) {
			if (rx_add_sock(l, x, SF_UPSTREAM) < 0) {
				rx_kill(l, x, SF_R_LIMIT, SF_UPSTREAM, -errno, 1);
				return;
			}
		}
		if (rc == -EINPROGRESS) {
			rx_arm(l, x);
			return;
		}
	}
	if (rc < 0) {
		rx_kill(l, x, sf_conn_connect_reason(&x->c), SF_UPSTREAM, rc, 1);
		return;
	}
	x->connecting = 0;
	rc = sf_conn_connected(&x->c);
	if (rc < 0) {
		rx_kill(l, x, SF_R_RESET, SF_UPSTREAM, rc, 1);
		return;
	}
	rx_arm(l, x);
	if (x->dead)
		return;
	/* The client may have sent bytes while we waited: that edge is gone. */
	rx_pump(l, x, SF_C2U);
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		rx_pump(l, x, SF_U2C);
}

/* The client is readable while its PROXY header is awaited. */
static void rx_read_proxy(struct rx_loop *l, struct rx_conn *x)
{
	int rc = sf_conn_read_proxy(&x->c, 1);

	if (rc == 0)
		return;
	if (rc < 0) {
		rx_kill(l, x, sf_conn_refused_reason(&x->c, rc), SF_CLIENT, rc, 1);
		return;
	}
	sf_timer_del(&l->timers, &x->c.timer);
	rx_start_connect(l, x);
}

/*
 * Dispatch one epoll event on side of x. An error on either socket ends
 * the connection at once, whatever its directions are doing: a client
 * that resets after its FIN must not go unnoticed while the upstream is
 * idle.
 */
static void rx_event(struct rx_loop *l, struct rx_conn *x, int side, uint32_t ev)
{
	int err;

	if (x->dead)
		return;
	/* Recorded even while connecting: a FIN seen now raises no later edge. */
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		x->hup[side] = 1;
	if (x->pairing) {
		rx_pair_event(l, x, side, ev);
		return;
	}
	if (x->c.flags & SF_CONN_PROXY) {
		if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			rx_read_proxy(l, x);
		return;
	}
	if (x->connecting) {
		/* Client edges wait: its bytes are read once the upstream is up. */
		/*
		 * A failed connect always reports EPOLLERR (tcp_poll checks
		 * sk_err, set before the wakeup), and a socket still in
		 * SYN_SENT reports no EPOLLOUT: writability alone is a
		 * connect done, without asking SO_ERROR.
		 */
		if (side == SF_UPSTREAM && (ev & (EPOLLERR | EPOLLHUP)))
			rx_connected(l, x, sf_net_so_error(x->c.fd[SF_UPSTREAM]), ev);
		else if (side == SF_UPSTREAM && (ev & EPOLLOUT))
			rx_connected(l, x, 0, ev);
		return;
	}
	if ((ev & EPOLLERR) && (err = sf_net_so_error(x->c.fd[side])) < 0) {
		rx_kill(l, x, SF_R_RESET, side, err, 1);
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		rx_pump(l, x, side);
	/*
	 * An input edge reports EPOLLOUT too whenever the socket is writable,
	 * so writability alone only matters to a direction holding bytes it
	 * could not write; an empty one is woken by its source's input edge.
	 */
	if ((ev & (EPOLLHUP | EPOLLERR)) || ((ev & EPOLLOUT) && !l->xf->empty(x, !side)))
		rx_pump(l, x, !side);
}

static void rx_on_client(void *ctx, struct sf_io *io, uint32_t ev)
{
	rx_event(ctx, SF_CONTAINER_OF(io, struct rx_conn, io[SF_CLIENT]), SF_CLIENT, ev);
}

static void rx_on_upstream(void *ctx, struct sf_io *io, uint32_t ev)
{
	rx_event(ctx, SF_CONTAINER_OF(io, struct rx_conn, io[SF_UPSTREAM]), SF_UPSTREAM, ev);
}

/* x's timer: connect timeout, PROXY header deadline, or idle timeout. */
static void rx_on_timer(void *ctx, struct sf_timer *tm)
{
	struct rx_loop *l = ctx;
	struct rx_conn *x = SF_CONTAINER_OF(tm, struct rx_conn, c.timer);

	if (x->dead)
		return;
	if (x->pairing)
		rx_pair_timer(l, x);
	else if (x->c.flags & SF_CONN_PROXY)
		rx_kill(l, x, SF_R_PROXY_HEADER, SF_CLIENT, -ETIMEDOUT, 1);
	else if (x->connecting)
		rx_connected(l, x, -ETIMEDOUT, EPOLLIN);
	else if (sf_conn_idle(&x->c, l->w->now_ms))
		rx_kill(l, x, SF_R_IDLE_TIMEOUT, -1, 0, 1);
	else
		rx_arm(l, x);
}

struct rx_conn *rx_conn_alloc(struct rx_loop *l)
{
	struct rx_conn *x = calloc(1, sizeof(*x) + 2 * l->xf->dir_size);

	if (x == NULL)
		return NULL;
	x->io[SF_CLIENT].cb = rx_on_client;
	x->io[SF_UPSTREAM].cb = rx_on_upstream;
	x->io[0].fd = x->io[1].fd = -1;
	return x;
}

void rx_conn_track(struct rx_loop *l, struct rx_conn *x)
{
	sf_timer_init(&x->c.timer, rx_on_timer);
	LIST_INSERT_HEAD(&l->all, x, all);
}

/* Take a newly accepted client: admit it, then read its header or connect. */
static void rx_conn_new(struct rx_loop *l, struct sf_lsock *ls, int fd,
			const struct sf_sockaddr *peer)
{
	struct rx_conn *x = calloc(1, sizeof(*x) + 2 * l->xf->dir_size);
	int rc;

	if (x == NULL) {
		sf_rule_release(ls->l->rule);
		sf_net_reset(fd);
		return;
	}
	sf_conn_init(&x->c, l->w, ls, fd, peer);
	sf_timer_init(&x->c.timer, rx_on_timer);
	x->io[SF_CLIENT].cb = rx_on_client;
	x->io[SF_UPSTREAM].cb = rx_on_upstream;
	x->io[1].fd = -1;
	LIST_INSERT_HEAD(&l->all, x, all);
	rc = sf_conn_admit(&x->c);
	if (rc < 0) {
		rx_kill(l, x, sf_conn_refused_reason(&x->c, rc), SF_CLIENT, rc, 1);
		return;
	}
	if (rx_add_sock(l, x, SF_CLIENT) < 0) {
		rx_kill(l, x, SF_R_LIMIT, SF_CLIENT, -errno, 1);
		return;
	}
	if (rc == 1) /* the header's bytes raise the client's first edge */
		rx_arm(l, x);
	else
		rx_start_connect(l, x);
}

static void rx_on_listen(void *ctx, struct sf_io *io, uint32_t ev)
{
	struct rx_loop *l = ctx;
	struct sf_lsock *ls = SF_CONTAINER_OF(io, struct sf_lsock, io);
	struct sf_sockaddr peer;
	int i, fd;

	for (i = 0; i < ACCEPT_BUDGET && !ls->paused; i++) {
		/* max_conns: a full rule leaves its clients in the backlog. */
		if (!sf_rule_reserve(ls->l->rule) && !rx_meet_reserve(l, ls)) {
			rx_pause(l, ls);
			return;
		}
		fd = sf_net_accept(io->fd, &peer, 0);
		if (fd < 0) {
			sf_rule_release(ls->l->rule);
			if (sf_worker_accept_failed(l->w, fd))
				rx_pause(l, ls);
			return;
		}
		if (sf_rule_paired(ls->l->rule))
			rx_meet_accept(l, ls, fd, &peer);
		else
			rx_conn_new(l, ls, fd, &peer);
	}
}

/* A UDP listener socket is readable: the shared UDP code reads it. */
static void rx_on_udp_listen(void *ctx, struct sf_io *io, uint32_t ev)
{
	struct rx_loop *l = ctx;

	sf_udp_on_listen(&l->udp, SF_CONTAINER_OF(io, struct sf_lsock, io));
}

/*
 * UDP session sockets, level-triggered: the shared code reads a bounded
 * number of batches per wakeup and what is left wakes the loop again.
 */
static int rx_udp_add(void *loop, struct sf_io *io) { return rx_add(loop, io, EPOLLIN); }

static void rx_udp_del(void *loop, struct sf_io *io)
{
	struct rx_loop *l = loop;

	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

static const struct sf_udp_ops rx_udp_ops = { rx_udp_add, rx_udp_del };

/* Register every listener of g for this worker. */
static int rx_listen(struct rx_loop *l, struct sf_gen *g)
{
	size_t i;
	int rc;

	for (i = 0; i < g->nls; i++) {
		struct sf_lsock *ls = &g->ls[i].socks[l->w->id];

		if (!rx_serves(l, ls))
			continue;
		ls->io.cb = g->ls[i].proto == SF_PROTO_UDP ? rx_on_udp_listen : rx_on_listen;
		ls->paused = 0;
		sf_timer_init(&ls->resume, rx_on_resume);
		if ((rc = rx_add_listener(l, ls)) < 0)
			return rc;
	}
	return 0;
}

/* Unregister every listener of g for this worker (paused ones too). */
static void rx_unlisten(struct rx_loop *l, struct sf_gen *g)
{
	size_t i;

	for (i = 0; i < g->nls; i++) {
		struct sf_lsock *ls = &g->ls[i].socks[l->w->id];

		if (!rx_serves(l, ls))
			continue;
		if (ls->paused)
			sf_timer_del(&l->timers, &ls->resume);
		else
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, ls->io.fd, NULL);
		ls->paused = 0;
	}
}

/* A reload: move to the generation posted; connections keep theirs. */
static void rx_take_gen(struct rx_loop *l)
{
	struct sf_gen *g = sf_worker_take_gen(l->w);

	if (g == NULL)
		return;
	rx_unlisten(l, l->w->gen);
	sf_worker_adopt(l->w, g);
	sf_udp_gen_changed(&l->udp, g);
	if (rx_listen(l, g) < 0)
		sf_log_warn("worker %u: cannot listen on every address after reload", l->w->id);
	if (rx_pairs_gen(l) < 0)
		sf_log_warn("worker %u: cannot start every bridge after reload", l->w->id);
}

/*
 * Commands wait for the end of the batch: events for the old
 * generation's listeners may follow in it, and must not find them freed.
 */
static void rx_on_cmd(void *ctx, struct sf_io *io, uint32_t ev)
{
	struct rx_loop *l = ctx;

	l->cmd_pending = 1;
}

static void rx_run_cmds(struct rx_loop *l)
{
	unsigned cmd = sf_worker_commands(l->w);

	l->cmd_pending = 0;
	if ((cmd & SF_WCMD_GEN) && !l->w->draining)
		rx_take_gen(l);
	/* Drain: no listener left in the epoll set, then the shared policy. */
	if ((cmd & SF_WCMD_DRAIN) && !l->w->draining) {
		rx_pairs_drain(l);
		rx_unlisten(l, l->w->gen);
		/*
		 * UDP sessions end with their listeners: a reply could not
		 * leave from the closed socket, and a socket kept open would
		 * steal datagrams from the process that takes over the port.
		 */
		sf_udp_end_all(&l->udp, SF_R_STOP);
		sf_worker_unlisten(l->w);
	}
	if (cmd & SF_WCMD_STOP)
		l->stop = 1;
}

/*
 * Take the ready list (the connections whose pumps spent their budget)
 * and begin a new turn: those queued from now on wait for the next one.
 */
static struct rx_conn *rx_take_ready(struct rx_loop *l)
{
	struct rx_conn *x = l->ready;

	l->ready = l->ready_tail = NULL;
	l->turn++;
	return x;
}

/*
 * Pump again the directions of list x (from rx_take_ready) that spent
 * their budget in the last turn. A direction of the same connection that
 * spent its own in this turn's events waits for the next, as it would on
 * a connection of its own: one budget per direction per turn.
 */
static void rx_run_ready(struct rx_loop *l, struct rx_conn *x)
{
	struct rx_conn *next;
	int d;

	for (; x != NULL; x = next) {
		next = x->ready_next;
		x->queued = 0;
		if (x->dead) {
			/* Killed while queued: rx_kill left the dead list to us. */
			x->dead_next = l->dead;
			l->dead = x;
			continue;
		}
		for (d = 0; d < 2 && !x->dead; d++) {
			if (x->more[d] == 0)
				continue;
			if (x->more[d] == rx_mark(l)) {
				rx_queue(l, x, d);
				continue;
			}
			x->more[d] = 0;
			rx_pump(l, x, d);
		}
	}
}

static void rx_free_dead(struct rx_loop *l)
{
	struct rx_conn *x;

	while ((x = l->dead) != NULL) {
		l->dead = x->dead_next;
		free(x);
	}
}

static void rx_run_timers(struct rx_loop *l)
{
	struct sf_timer *tm;

	while ((tm = sf_timers_pop_due(&l->timers, l->w->now_ms)) != NULL)
		tm->fn(l, tm);
}

/*
 * The worker is stopping: every connection still open is reset, never
 * closed with a FIN, since bytes may still sit in its buffers or pipes
 * and a FIN would make a cut stream look complete.
 */
static void rx_teardown(struct rx_loop *l)
{
	rx_pairs_stop(l);
	while (!LIST_EMPTY(&l->all))
		rx_kill(l, LIST_FIRST(&l->all), SF_R_STOP, -1, 0, 1);
	rx_pairs_free(l);
	/* Dequeue so that every dead connection reaches the dead list. */
	while (l->ready != NULL)
		rx_run_ready(l, rx_take_ready(l));
	rx_free_dead(l);
	sf_udp_destroy(&l->udp);
	sf_timers_destroy(&l->timers);
	sf_bufpool_destroy(&l->bufs);
	if (l->xf->destroy != NULL)
		l->xf->destroy(l);
	close(l->epfd);
}

int sf_reactor_run(struct sf_worker *w, const struct rx_xfer *xf)
{
	struct epoll_event evs[MAX_EVENTS];
	struct rx_loop l = { .w = w, .xf = xf };
	int i, n, rc;

	l.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l.epfd < 0)
		return -errno;
	LIST_INIT(&l.all);
	sf_timers_init(&l.timers);
	sf_bufpool_init(&l.bufs, w->buffer_size, BUF_IDLE);
	if ((rc = sf_udp_init(&l.udp, w, &l.timers, &rx_udp_ops, &l)) < 0) {
		sf_bufpool_destroy(&l.bufs);
		close(l.epfd);
		return rc;
	}
	if (xf->init != NULL && (rc = xf->init(&l)) < 0) {
		sf_udp_destroy(&l.udp);
		sf_bufpool_destroy(&l.bufs);
		close(l.epfd);
		return rc;
	}
	/*
	 * l lives as long as the loop, which runs in this frame until the
	 * worker stops; nothing reads engine_state after it returns.
	 */
	/* cppcheck-suppress autoVariables */
	w->engine_state = &l;
	l.cmd.fd = w->cmdfd;
	l.cmd.cb = rx_on_cmd;
	if ((rc = rx_add(&l, &l.cmd, EPOLLIN)) < 0 || (rc = rx_listen(&l, w->gen)) < 0 ||
	    (rc = rx_pairs_gen(&l)) < 0) {
		rx_teardown(&l);
		return rc;
	}
	while (!l.stop) {
		struct rx_conn *carried;

		w->now_ms = sf_now_ms();
		n = epoll_wait(l.epfd, evs, MAX_EVENTS,
			       l.ready != NULL ? 0 : sf_timers_wait_ms(&l.timers, w->now_ms));
		if (n < 0 && errno != EINTR) {
			rc = -errno;
			rx_teardown(&l);
			return rc;
		}
		w->now_ms = sf_now_ms();
		/*
		 * The directions carried over from the last turn run after this
		 * turn's events, and those that spend their budget now wait for
		 * the next turn: between two budgets of a bulk stream every
		 * other socket gets an epoll_wait.
		 */
		carried = rx_take_ready(&l);
		for (i = 0; i < n; i++) {
			struct sf_io *io = evs[i].data.ptr;

			io->cb(&l, io, evs[i].events);
		}
		rx_run_ready(&l, carried);
		rx_run_timers(&l);
		rx_free_dead(&l);
		sf_udp_reap(&l.udp);
		if (l.cmd_pending)
			rx_run_cmds(&l);
	}
	rx_teardown(&l);
	return 0;
}
