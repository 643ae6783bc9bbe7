/*
 * The io_uring engine (make URING=1): one ring per worker, each with its
 * own SO_REUSEPORT listener, multishot accept, multishot recv into a
 * provided buffer ring, and one send in flight per direction so bytes
 * keep their order.
 *
 * Shared policy (upstream choice and fail-over, half-close, reset,
 * accounting) is the same sf_conn_* as every engine; the upstream connect
 * is the shared non-blocking connect, completed by a poll on the ring.
 *
 * Notes that shaped it:
 * - The buffer ring and the queues of received buffers are uring_bufs.c
 *   (liburing 2.3, Debian 12's, lacks io_uring_setup_buf_ring: see there).
 * - Sockets are switched to blocking once connected: on O_NONBLOCK files
 *   some kernels complete recv with -EAGAIN instead of waiting.
 * - Backpressure: when a direction holds UR_HIGH buffers not yet sent,
 *   its multishot recv is cancelled, and armed again as sends drain it, so
 *   memory per direction stays bounded and a slow reader cannot take the
 *   whole buffer ring.
 * - A buffer being sent is never given back to the ring before its send
 *   completes, even when the connection dies: a reused buffer would leak
 *   another connection's bytes to this peer.
 * - The ring running out of buffers ends a multishot recv with -ENOBUFS;
 *   the direction waits on the starved list until a send returns one.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/uring_bufs.h"
#include "sockfwd/worker.h"

#define UR_SQ_ENTRIES 1024
#define UR_NBUFS      128 /* provided buffers per worker, a power of two: 8 MiB at 64 KiB */
#define UR_BGID	      0
#define UR_HIGH	      4 /* buffers queued per direction before recv pauses */

/* user_data: connection pointer | op << 1 | side (pointers are 16-aligned). */
enum ur_op { UR_ACCEPT = 1, UR_STOP, UR_TIMER, UR_CONNECT, UR_RECV, UR_SEND, UR_CANCEL };

struct ur_dir {
	struct sf_ubufq q; /* received, not yet sent */
	uint8_t recv_armed;
	uint8_t cancel_sent;
	uint8_t send_armed;
	uint8_t starved; /* waiting for the ring to have buffers again */
};

struct ur_conn {
	struct sf_conn c;
	struct ur_dir d[2];
	struct ur_conn *all_prev, *all_next;
	struct ur_conn *starved_next;
	int inflight; /* requests whose last completion has not come */
	uint8_t connecting;
	uint8_t closed;
	uint8_t on_starved;
};

struct ur_loop {
	struct sf_worker *w;
	struct io_uring ring;
	struct sf_ubufs bufs;
	struct ur_conn *all;
	struct ur_conn *starved;
	struct __kernel_timespec pause;
	int stop;
};

static uint64_t ud(struct ur_conn *x, enum ur_op op, int side)
{
	return (uint64_t)(uintptr_t)x | ((uint64_t)op << 1) | (unsigned)side;
}

/* An SQE, submitting pending ones first when the queue is full; or NULL. */
static struct io_uring_sqe *ur_sqe(struct ur_loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (sqe == NULL) {
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static int ur_arm_accept(struct ur_loop *l)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL)
		return -EBUSY;
	/* Blocking client sockets: see the note at the top. */
	io_uring_prep_multishot_accept(sqe, l->w->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_ACCEPT, 0));
	return 0;
}

static void ur_free(struct ur_loop *l, struct ur_conn *x)
{
	if (x->all_prev != NULL)
		x->all_prev->all_next = x->all_next;
	else
		l->all = x->all_next;
	if (x->all_next != NULL)
		x->all_next->all_prev = x->all_prev;
	free(x);
}

/* One request of x completed for good; free x if it was the last of a closed one. */
static void ur_put(struct ur_loop *l, struct ur_conn *x)
{
	if (--x->inflight == 0 && x->closed && !x->on_starved)
		ur_free(l, x);
}

static void ur_cancel(struct ur_loop *l, struct ur_conn *x, enum ur_op op, int side)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL)
		return; /* the ring's exit cancels it at worst */
	io_uring_prep_cancel64(sqe, ud(x, op, side), 0);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_CANCEL, 0));
}

/*
 * End x through the shared policy. Requests still in flight are
 * cancelled; x is freed when the last of them completes. Queued buffers
 * go back to the ring, but for one being sent (see top).
 */
static void ur_close(struct ur_loop *l, struct ur_conn *x, const char *reason, int err, int reset)
{
	int d;

	if (x->closed)
		return;
	x->closed = 1;
	for (d = 0; d < 2; d++) {
		struct ur_dir *dir = &x->d[d];

		if (dir->recv_armed)
			ur_cancel(l, x, UR_RECV, d);
		if (dir->send_armed)
			ur_cancel(l, x, UR_SEND, d);
		/* The head of a send in flight goes back when that send completes. */
		sf_ubufq_release(&l->bufs, &dir->q, dir->send_armed);
	}
	if (x->connecting)
		ur_cancel(l, x, UR_CONNECT, SF_UPSTREAM);
	if (reset)
		sf_conn_reset(&x->c, reason, err);
	else
		sf_conn_close(&x->c, reason);
	if (x->inflight == 0 && !x->on_starved)
		ur_free(l, x);
}

static void ur_fail(struct ur_loop *l, struct ur_conn *x, int side, int err)
{
	ur_close(l, x, side == SF_CLIENT ? "client" : "upstream", err, 1);
}

static void ur_arm_recv(struct ur_loop *l, struct ur_conn *x, int d)
{
	struct ur_dir *dir = &x->d[d];
	struct io_uring_sqe *sqe;

	if (x->closed || x->connecting || dir->recv_armed || dir->starved ||
	    (x->c.flags & SF_CONN_EOF(d)) || dir->q.n >= UR_HIGH)
		return;
	sqe = ur_sqe(l);
	if (sqe == NULL) {
		ur_fail(l, x, d, -EBUSY);
		return;
	}
	io_uring_prep_recv_multishot(sqe, x->c.fd[d], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = UR_BGID;
	io_uring_sqe_set_data64(sqe, ud(x, UR_RECV, d));
	dir->recv_armed = 1;
	dir->cancel_sent = 0;
	x->inflight++;
}

static void ur_arm_send(struct ur_loop *l, struct ur_conn *x, int d)
{
	struct ur_dir *dir = &x->d[d];
	struct io_uring_sqe *sqe;
	uint32_t len;
	char *p;

	if (x->closed || dir->send_armed || sf_ubufq_peek(&l->bufs, &dir->q, &p, &len) < 0)
		return;
	sqe = ur_sqe(l);
	if (sqe == NULL) {
		ur_fail(l, x, !d, -EBUSY);
		return;
	}
	/* MSG_WAITALL: the kernel retries short sends on stream sockets itself. */
	io_uring_prep_send(sqe, x->c.fd[!d], p, len, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, ud(x, UR_SEND, d));
	dir->send_armed = 1;
	x->inflight++;
}

/* Every byte of d before its FIN is sent: pass the FIN on. */
static void ur_maybe_shut(struct ur_loop *l, struct ur_conn *x, int d)
{
	if (!x->closed && (x->c.flags & SF_CONN_EOF(d)) && x->d[d].q.n == 0 &&
	    !(x->c.flags & SF_CONN_SHUT(d)) && sf_conn_shut(&x->c, d))
		ur_close(l, x, "eof", 0, 0);
}

/* Buffers came back: let starved directions receive again. */
static void ur_wake_starved(struct ur_loop *l)
{
	struct ur_conn *x = l->starved, *next;
	int d;

	l->starved = NULL;
	for (; x != NULL; x = next) {
		next = x->starved_next;
		x->on_starved = 0;
		if (x->closed) {
			if (x->inflight == 0)
				ur_free(l, x);
			continue;
		}
		for (d = 0; d < 2; d++) {
			if (x->d[d].starved) {
				x->d[d].starved = 0;
				ur_arm_recv(l, x, d);
			}
		}
	}
}

static void ur_on_recv(struct ur_loop *l, struct ur_conn *x, int d, struct io_uring_cqe *cqe)
{
	struct ur_dir *dir = &x->d[d];
	int res = cqe->res, last = !(cqe->flags & IORING_CQE_F_MORE);

	/* The request stays counted until the end, so x outlives this call. */
	if (last)
		dir->recv_armed = 0;
	if (res > 0) {
		int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);

		if (x->closed) {
			sf_ubufs_drop(&l->bufs, bid);
			goto out;
		}
		sf_ubufq_push(&l->bufs, &dir->q, bid, (uint32_t)res);
		ur_arm_send(l, x, d);
		if (dir->recv_armed && !dir->cancel_sent && dir->q.n >= UR_HIGH) {
			ur_cancel(l, x, UR_RECV, d);
			dir->cancel_sent = 1;
		}
	} else if (x->closed) {
		goto out;
	} else if (res == 0) {
		sf_conn_eof(&x->c, d);
		ur_maybe_shut(l, x, d);
	} else if (res == -ENOBUFS) {
		dir->starved = 1;
		if (!x->on_starved) {
			x->on_starved = 1;
			x->starved_next = l->starved;
			l->starved = x;
		}
	} else if (res != -ECANCELED) {
		ur_fail(l, x, d, res);
		goto out;
	}
	if (!x->closed && !dir->recv_armed)
		ur_arm_recv(l, x, d);
out:
	if (last)
		ur_put(l, x);
}

static void ur_on_send(struct ur_loop *l, struct ur_conn *x, int d, int res)
{
	struct ur_dir *dir = &x->d[d];

	dir->send_armed = 0;
	if (x->closed || res <= 0) {
		/* The head was kept for this completion: now it can go back. */
		sf_ubufq_release(&l->bufs, &dir->q, 0);
		if (!x->closed)
			ur_fail(l, x, !d, res < 0 ? res : -EPIPE);
		ur_put(l, x);
		return;
	}
	sf_conn_count(&x->c, d, (uint64_t)res, 0);
	if (sf_ubufq_sent(&l->bufs, &dir->q, (uint32_t)res) && l->starved != NULL)
		ur_wake_starved(l);
	ur_arm_send(l, x, d);
	ur_arm_recv(l, x, d);
	ur_maybe_shut(l, x, d);
	ur_put(l, x);
}

/* Connected (or not): make both sockets blocking and start receiving. */
static void ur_start(struct ur_loop *l, struct ur_conn *x)
{
	/* O_NONBLOCK is the only status flag sf_net_connect sets: clear it. */
	if (fcntl(x->c.fd[SF_UPSTREAM], F_SETFL, 0) < 0) {
		ur_fail(l, x, SF_UPSTREAM, -errno);
		return;
	}
	x->connecting = 0;
	ur_arm_recv(l, x, SF_C2U);
	ur_arm_recv(l, x, SF_U2C);
}

/* Wait for the non-blocking connect of x to finish. */
static void ur_arm_connect(struct ur_loop *l, struct ur_conn *x)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL) {
		ur_close(l, x, "upstream connect", -EBUSY, 1);
		return;
	}
	io_uring_prep_poll_add(sqe, x->c.fd[SF_UPSTREAM], POLLOUT);
	io_uring_sqe_set_data64(sqe, ud(x, UR_CONNECT, SF_UPSTREAM));
	x->inflight++;
}

/* The connect's poll fired; rc is 0 or -errno from a first attempt. */
static void ur_connected(struct ur_loop *l, struct ur_conn *x, int rc)
{
	if (rc == 0)
		rc = sf_net_so_error(x->c.fd[SF_UPSTREAM]);
	if (rc < 0)
		rc = sf_conn_connect_next(&x->c, rc);
	if (rc == -EINPROGRESS) {
		ur_arm_connect(l, x);
		return;
	}
	if (rc < 0) {
		ur_close(l, x, "upstream connect", rc, 1);
		return;
	}
	ur_start(l, x);
}

static void ur_pause_accept(struct ur_loop *l)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL)
		return;
	l->pause.tv_sec = 0;
	l->pause.tv_nsec = SF_ACCEPT_PAUSE_MS * 1000000L;
	io_uring_prep_timeout(sqe, &l->pause, 0, 0);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_TIMER, 0));
}

static void ur_on_accept(struct ur_loop *l, struct io_uring_cqe *cqe)
{
	struct sf_sockaddr peer;
	struct ur_conn *x;
	int fd = cqe->res, rc;

	if (!(cqe->flags & IORING_CQE_F_MORE) && !l->stop) {
		/* Multishot accept ended: on error pause first (EMFILE...). */
		if (fd < 0 && sf_worker_accept_failed(l->w, fd))
			ur_pause_accept(l);
		else
			ur_arm_accept(l);
	}
	if (fd < 0)
		return;
	sf_net_set_nodelay(fd);
	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		sf_net_reset(fd);
		return;
	}
	peer.len = sizeof(peer.ss);
	if (sf_log_level() < SF_LOG_VERBOSE ||
	    getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len) < 0)
		memset(&peer, 0, sizeof(peer));
	sf_conn_init(&x->c, l->w, fd, &peer);
	sf_ubufq_init(&x->d[0].q);
	sf_ubufq_init(&x->d[1].q);
	x->all_next = l->all;
	if (l->all != NULL)
		l->all->all_prev = x;
	l->all = x;
	x->connecting = 1;
	rc = sf_conn_connect(&x->c, 0);
	if (rc == -EINPROGRESS) {
		ur_arm_connect(l, x);
		return;
	}
	if (rc == -EMFILE || rc == -ENFILE)
		ur_pause_accept(l);
	ur_connected(l, x, rc);
}

static void ur_dispatch(struct ur_loop *l, struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	struct ur_conn *x = (struct ur_conn *)(uintptr_t)(data & ~(uint64_t)15);
	int side = (int)(data & 1);

	switch ((enum ur_op)((data >> 1) & 7)) {
	case UR_ACCEPT:
		ur_on_accept(l, cqe);
		break;
	case UR_STOP:
		l->stop = 1;
		break;
	case UR_TIMER:
		if (!l->stop)
			ur_arm_accept(l);
		break;
	case UR_CONNECT:
		x->inflight--;
		if (x->closed) {
			if (x->inflight == 0 && !x->on_starved)
				ur_free(l, x);
			break;
		}
		ur_connected(l, x, cqe->res < 0 ? cqe->res : 0);
		break;
	case UR_RECV:
		ur_on_recv(l, x, side, cqe);
		break;
	case UR_SEND:
		ur_on_send(l, x, side, cqe->res);
		break;
	case UR_CANCEL:
		break;
	}
}

/* A ring with the cheapest task-running mode this kernel takes. */
static int ur_ring_init(struct io_uring *ring, unsigned entries)
{
	static const unsigned modes[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	struct io_uring_params p;
	unsigned i;
	int rc = -EINVAL;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = modes[i];
		rc = io_uring_queue_init_params(entries, ring, &p);
		if (rc != -EINVAL)
			break;
	}
	return rc;
}

static int ur_run(struct sf_worker *w)
{
	struct ur_loop *l;
	struct ur_conn *x, *next;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	unsigned head, n;
	int rc;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->w = w;
	/* Created in the worker thread: SINGLE_ISSUER binds it to this thread. */
	rc = ur_ring_init(&l->ring, UR_SQ_ENTRIES);
	if (rc < 0)
		goto fail_l;
	rc = sf_ubufs_init(&l->bufs, &l->ring, UR_NBUFS, w->cfg->buffer_size, UR_BGID);
	if (rc < 0)
		goto fail_ring;
	sqe = ur_sqe(l);
	io_uring_prep_poll_add(sqe, w->stopfd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_STOP, 0));
	ur_arm_accept(l);
	while (!l->stop) {
		rc = io_uring_submit_and_wait(&l->ring, 1);
		if (rc < 0 && rc != -EINTR)
			break;
		rc = 0;
		n = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			ur_dispatch(l, cqe);
			n++;
		}
		io_uring_cq_advance(&l->ring, n);
	}
	/* Stop: close every connection; the ring's exit cancels the rest. */
	for (x = l->all; x != NULL; x = next) {
		next = x->all_next;
		if (!x->closed)
			ur_close(l, x, "shutdown", 0, 0);
	}
	io_uring_queue_exit(&l->ring);
	while ((x = l->all) != NULL) {
		l->all = x->all_next;
		free(x);
	}
	sf_ubufs_destroy(&l->bufs);
	free(l);
	return rc;
fail_ring:
	io_uring_queue_exit(&l->ring);
fail_l:
	free(l);
	return rc;
}

/*
 * Can this kernel run the engine? Names the cause when not: io_uring
 * missing (ENOSYS), forbidden (EPERM: kernel.io_uring_disabled, seccomp),
 * or too old for the operations used.
 */
static int ur_probe(char *err, size_t errlen)
{
	static const int ops[] = { IORING_OP_ACCEPT,   IORING_OP_RECV,	  IORING_OP_SEND,
				   IORING_OP_POLL_ADD, IORING_OP_TIMEOUT, IORING_OP_ASYNC_CANCEL };
	struct io_uring_probe *probe;
	struct io_uring ring;
	int rc, disabled = -1;
	unsigned i;
	FILE *f;

	rc = ur_ring_init(&ring, 4);
	if (rc < 0) {
		f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
		if (f != NULL) {
			if (fscanf(f, "%d", &disabled) != 1)
				disabled = -1;
			fclose(f);
		}
		if (disabled > 0)
			snprintf(err, errlen,
				 "io_uring is disabled on this machine "
				 "(kernel.io_uring_disabled=%d): "
				 "%s; use -b splice",
				 disabled, strerror(-rc));
		else
			snprintf(err, errlen, "io_uring is not available: %s%s; use -b splice",
				 strerror(-rc),
				 rc == -EPERM ? " (forbidden by a seccomp or security policy?)"
					      : "");
		return rc;
	}
	probe = io_uring_get_probe_ring(&ring);
	for (i = 0; probe != NULL && i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (!io_uring_opcode_supported(probe, ops[i])) {
			snprintf(err, errlen,
				 "this kernel's io_uring lacks operation %d; use -b splice",
				 ops[i]);
			rc = -EOPNOTSUPP;
			break;
		}
	}
	if (probe != NULL)
		io_uring_free_probe(probe);
	io_uring_queue_exit(&ring);
	return rc;
}

const struct sf_engine sf_engine_uring = {
	.name = "uring",
	.probe = ur_probe,
	.run = ur_run,
	.stop = sf_worker_stop,
};
