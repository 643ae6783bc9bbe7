/*
 * The edge-triggered epoll loop behind the epoll and splice engines.
 *
 * Each connection registers both sockets once, for EPOLLIN|EPOLLOUT|
 * EPOLLRDHUP|EPOLLET, so no epoll_ctl is needed on the data path: an
 * input edge on a socket pumps the direction it is the source of, an
 * output edge the direction it is the destination of. A pump that spends
 * its budget queues its connection on the ready list, served before the
 * next epoll_wait, since edge-triggered epoll would not wake us again.
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
#define PIPE_IDLE     32
#define PIPE_LIVE     8192

/* epoll data: a connection pointer with the side in its low bit. */
#define TAG_LISTEN ((uint64_t)0)
#define TAG_STOP   ((uint64_t)1)

static uint64_t tag(struct rx_conn *x, int side) { return (uint64_t)(uintptr_t)x | (unsigned)side; }

static int rx_add(struct rx_loop *l, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int rx_add_sock(struct rx_loop *l, struct rx_conn *x, int side)
{
	return rx_add(l, x->c.fd[side], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, tag(x, side));
}

void sf_rx_dir_release(struct rx_loop *l, struct rx_dir *dir)
{
	if (dir->buf != NULL) {
		sf_bufpool_put(&l->bufs, dir->buf);
		dir->buf = NULL;
	}
	if (dir->pipe != NULL) {
		if (dir->inpipe > 0)
			sf_pipepool_discard(&l->pipes, dir->pipe);
		else
			sf_pipepool_put(&l->pipes, dir->pipe);
		dir->pipe = NULL;
		dir->inpipe = 0;
	}
}

/*
 * End x: close (reset when asked) both sockets through the shared policy,
 * give back its buffers and pipes, and defer the free past the batch.
 */
static void rx_kill(struct rx_loop *l, struct rx_conn *x, const char *reason, int err, int reset)
{
	sf_rx_dir_release(l, &x->d[0]);
	sf_rx_dir_release(l, &x->d[1]);
	if (reset)
		sf_conn_reset(&x->c, reason, err);
	else
		sf_conn_close(&x->c, reason);
	if (x->all_prev != NULL)
		x->all_prev->all_next = x->all_next;
	else
		l->all = x->all_next;
	if (x->all_next != NULL)
		x->all_next->all_prev = x->all_prev;
	x->dead = 1;
	/* A queued connection is moved to the dead list when dequeued. */
	if (!x->queued) {
		x->dead_next = l->dead;
		l->dead = x;
	}
}

static void rx_queue(struct rx_loop *l, struct rx_conn *x, int d)
{
	x->more[d] = 1;
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

static int rx_dir_empty(const struct rx_dir *dir)
{
	return (dir->buf == NULL || sf_buf_empty(dir->buf)) && dir->inpipe == 0;
}

/* Pump direction d of x once, then apply the half-close rules. */
static void rx_pump(struct rx_loop *l, struct rx_conn *x, int d)
{
	struct sf_conn *c = &x->c;
	int rc;

	if (x->dead || (c->flags & SF_CONN_SHUT(d)))
		return;
	rc = l->pump(l, x, d);
	if (rc < 0) {
		rx_kill(l, x, x->err_side == SF_CLIENT ? "client" : "upstream", rc, 1);
		return;
	}
	if (rc == RX_MORE)
		rx_queue(l, x, d);
	if ((c->flags & SF_CONN_EOF(d)) && rx_dir_empty(&x->d[d]) && sf_conn_shut(c, d))
		rx_kill(l, x, "eof", 0, 0);
}

static void rx_pause_accept(struct rx_loop *l)
{
	if (l->accept_resume_ms != 0)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->w->lfd, NULL);
	l->accept_resume_ms = sf_now_ms() + SF_ACCEPT_PAUSE_MS;
}

static void rx_resume_accept(struct rx_loop *l)
{
	l->accept_resume_ms = 0;
	/* Level-triggered: a backlog left while paused reports at once. */
	if (rx_add(l, l->w->lfd, EPOLLIN, TAG_LISTEN) < 0)
		sf_log_warn("worker %u: cannot resume accepting", l->w->id);
}

/* The upstream connect of x finished (err is 0 or -errno). */
static void rx_connected(struct rx_loop *l, struct rx_conn *x, int err)
{
	int rc = err;

	if (err < 0) {
		rc = sf_conn_connect_next(&x->c, err);
		if (rc == -EINPROGRESS || rc == 0) {
			if (rx_add_sock(l, x, SF_UPSTREAM) < 0) {
				rx_kill(l, x, "epoll_ctl", -errno, 1);
				return;
			}
		}
		if (rc == -EINPROGRESS)
			return;
	}
	if (rc < 0) {
		if (rc == -EMFILE || rc == -ENFILE)
			rx_pause_accept(l);
		rx_kill(l, x, "upstream connect", rc, 1);
		return;
	}
	x->connecting = 0;
	/* The client may have sent bytes while we waited: that edge is gone. */
	rx_pump(l, x, SF_C2U);
	rx_pump(l, x, SF_U2C);
}

/* Take a newly accepted client and start its upstream connect. */
static void rx_conn_new(struct rx_loop *l, int fd, const struct sf_sockaddr *peer)
{
	struct rx_conn *x = calloc(1, sizeof(*x));
	int rc;

	if (x == NULL) {
		sf_net_reset(fd);
		return;
	}
	sf_conn_init(&x->c, l->w, fd, peer);
	x->all_next = l->all;
	if (l->all != NULL)
		l->all->all_prev = x;
	l->all = x;
	x->d[0].mode = x->d[1].mode = l->mode;
	if (rx_add_sock(l, x, SF_CLIENT) < 0) {
		rx_kill(l, x, "epoll_ctl", -errno, 1);
		return;
	}
	rc = sf_conn_connect(&x->c, 0);
	if (rc == 0 || rc == -EINPROGRESS) {
		x->connecting = 1;
		if (rx_add_sock(l, x, SF_UPSTREAM) < 0) {
			rx_kill(l, x, "epoll_ctl", -errno, 1);
			return;
		}
		if (rc == 0)
			rx_connected(l, x, 0);
		return;
	}
	rx_connected(l, x, rc);
}

static void rx_accept(struct rx_loop *l)
{
	struct sf_sockaddr peer;
	int i, fd;

	for (i = 0; i < ACCEPT_BUDGET && l->accept_resume_ms == 0; i++) {
		fd = sf_net_accept(l->w->lfd, &peer, 0);
		if (fd < 0) {
			if (sf_worker_accept_failed(l->w, fd))
				rx_pause_accept(l);
			return;
		}
		rx_conn_new(l, fd, &peer);
	}
}

/* Dispatch one epoll event on side of x. */
static void rx_event(struct rx_loop *l, struct rx_conn *x, int side, uint32_t ev)
{
	if (x->dead)
		return;
	/* Recorded even while connecting: a FIN seen now raises no later edge. */
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		x->hup[side] = 1;
	if (x->connecting) {
		/* Client edges wait: its bytes are read once the upstream is up. */
		if (side == SF_UPSTREAM && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			rx_connected(l, x, sf_net_so_error(x->c.fd[SF_UPSTREAM]));
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		rx_pump(l, x, side);
	/*
	 * An input edge reports EPOLLOUT too whenever the socket is writable,
	 * so writability alone only matters to a direction holding bytes it
	 * could not write; an empty one is woken by its source's input edge.
	 */
	if ((ev & (EPOLLHUP | EPOLLERR)) || ((ev & EPOLLOUT) && !rx_dir_empty(&x->d[!side])))
		rx_pump(l, x, !side);
}

/* Serve the connections whose pumps ran out of budget last round. */
static void rx_run_ready(struct rx_loop *l)
{
	struct rx_conn *x = l->ready, *next;
	int d;

	l->ready = l->ready_tail = NULL;
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
			if (x->more[d]) {
				x->more[d] = 0;
				rx_pump(l, x, d);
			}
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

static int rx_timeout(struct rx_loop *l)
{
	uint64_t now;

	if (l->ready != NULL)
		return 0;
	if (l->accept_resume_ms == 0)
		return -1;
	now = sf_now_ms();
	return now >= l->accept_resume_ms ? 0 : (int)(l->accept_resume_ms - now);
}

/* Close every connection, free everything: the worker is stopping. */
static void rx_teardown(struct rx_loop *l)
{
	while (l->all != NULL)
		rx_kill(l, l->all, "shutdown", 0, 0);
	/* Dequeue so that every dead connection reaches the dead list. */
	while (l->ready != NULL)
		rx_run_ready(l);
	rx_free_dead(l);
	sf_bufpool_destroy(&l->bufs);
	sf_pipepool_destroy(&l->pipes);
	close(l->epfd);
}

int sf_reactor_run(struct sf_worker *w, rx_pump_fn pump, int mode)
{
	struct epoll_event evs[MAX_EVENTS];
	struct rx_loop l = { .w = w, .pump = pump, .mode = (uint8_t)mode };
	int i, n, stop = 0;

	l.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l.epfd < 0)
		return -errno;
	sf_bufpool_init(&l.bufs, w->cfg->buffer_size, BUF_IDLE);
	sf_pipepool_init(&l.pipes, w->cfg->pipe_size, PIPE_IDLE, PIPE_LIVE);
	if (rx_add(&l, w->lfd, EPOLLIN, TAG_LISTEN) < 0 ||
	    rx_add(&l, w->stopfd, EPOLLIN, TAG_STOP) < 0) {
		int rc = -errno;

		close(l.epfd);
		return rc;
	}
	while (!stop) {
		n = epoll_wait(l.epfd, evs, MAX_EVENTS, rx_timeout(&l));
		if (n < 0 && errno != EINTR) {
			int rc = -errno;

			rx_teardown(&l);
			return rc;
		}
		for (i = 0; i < n; i++) {
			uint64_t data = evs[i].data.u64;

			if (data == TAG_LISTEN)
				rx_accept(&l);
			else if (data == TAG_STOP)
				stop = 1;
			else
				rx_event(&l, (struct rx_conn *)(uintptr_t)(data & ~(uint64_t)1),
					 (int)(data & 1), evs[i].events);
		}
		rx_run_ready(&l);
		rx_free_dead(&l);
		if (l.accept_resume_ms != 0 && sf_now_ms() >= l.accept_resume_ms)
			rx_resume_accept(&l);
	}
	rx_teardown(&l);
	return 0;
}
