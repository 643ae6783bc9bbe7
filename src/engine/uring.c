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
 * - The provided buffers and the queues of received buffers are
 *   uring_bufs.c (liburing 2.3, Debian 12's, lacks io_uring_setup_buf_ring:
 *   see there). One group of UR_NBUFS buffers while the load is light;
 *   more groups, each a ring of its own, while receives run out, up to
 *   UR_POOL_BYTES per worker (switched off: UR_POOL_GROW); retired again
 *   when the load falls, so an idle worker maps one group whatever it
 *   went through. The rings hold one group's worth less the buffers out
 *   (at least UR_RING_MIN), however many groups there are: what a turn
 *   of the loop receives is what the rings hold, and more per turn costs
 *   CPU per byte (see UR_POOL_GROW).
 * - Sockets are switched to blocking once connected: on O_NONBLOCK files
 *   some kernels complete recv with -EAGAIN instead of waiting.
 * - Backpressure: when a direction holds UR_HIGH buffers not yet sent,
 *   its multishot recv is cancelled, and armed again as sends drain it, so
 *   memory per direction stays bounded and a slow reader cannot take the
 *   whole buffer ring.
 * - A buffer being sent is never given back to the ring before its send
 *   completes, even when the connection dies: a reused buffer would leak
 *   another connection's bytes to this peer.
 * - An SQE names its socket by descriptor number, looked up only when it
 *   is submitted: a connection's SQEs are submitted before its sockets
 *   close (ur_flush), or a new socket given the same number in the
 *   meantime would get them (the hour soak's foreign 64 KiB, 2026-11-29).
 * - At a reload, a kept listener's new accept is armed only once the old
 *   one's cancellation completed (ur_arm_accept): accepts are exclusive
 *   waiters, and a cancelled one still queued swallows a client's wakeup.
 * - A group running out of buffers ends a multishot recv with -ENOBUFS:
 *   armed again at once on a group with free buffers if there is one,
 *   else the direction waits on the starved list (counted when the pool
 *   has no stashed buffer either) until a send returns a buffer, the
 *   next turn puts stashed ones in the rings or the pool grows, woken in
 *   order, as many as there are free buffers in the rings (up to twice
 *   that: the tick forgets the promises before the batch's receives are
 *   submitted). Under load most such completions come to receives a
 *   wake just armed (the first one woken takes the buffers); removing
 *   them (branch h-enobufs-exp) did not lower the cost of the
 *   many-stream slow mode, which is a GB queued in the kernel's socket
 *   buffers (docs/benchmarks.md, "The uring ENOBUFS churn").
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/engine.h"
#include "sockfwd/fault.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/stats.h"
#include "sockfwd/udp.h"
#include "sockfwd/uring_bufs.h"
#include "sockfwd/worker.h"

#define UR_SQ_ENTRIES	 1024
#define UR_NBUFS	 128 /* provided buffers per group, a power of two: 8 MiB at 64 KiB */
#define UR_POOL_BYTES	 (64u << 20) /* buffer memory per worker at most */
#define UR_BGID		 0
#define UR_HIGH		 4  /* buffers queued per direction before recv pauses */
#define UR_ACCEPT_BUDGET 64 /* userspace accepts per readiness (max_conns rules) */

/*
 * Counters of the receive path, for measuring it (make
 * CPPFLAGS=-DUR_COUNTERS; off in every other build): each worker writes
 * them at its exit as one "urc wN stats: urc_KEY=N ..." line on stderr,
 * which the bench keeps with the stats line's fields (fwd_stats in
 * results.json). docs/benchmarks.md, "The uring ENOBUFS churn", used
 * them.
 */
enum {
	UR_C_TURNS,	  /* loop turns: io_uring_enter and the completions it returned */
	UR_C_DATA,	  /* receive completions with bytes */
	UR_C_BYTES,	  /* their bytes */
	UR_C_NOBUFS,	  /* receive completions with -ENOBUFS */
	UR_C_NB_WOKEN,	  /* of those, on a receive armed by a wake, no bytes since */
	UR_C_NB_STARVE,	  /* of those, put on the starved list */
	UR_C_WAKES,	  /* directions woken */
	UR_C_ARMS,	  /* receives armed */
	UR_C_HIGHCANCEL,  /* receives cancelled at UR_HIGH */
	UR_C_SENDS,	  /* send completions */
	UR_C_STARVED_SUM, /* connections on the starved list, summed at each turn's end */
	UR_C_COUNT
};
#ifdef UR_COUNTERS
#define UR_CTR(l, k, n) ((l)->ctr[(k)] += (n))
#else
#define UR_CTR(l, k, n) ((void)0)
#endif

/*
 * user_data: a pointer | op << 1 | side (pointers are 16-aligned): a
 * connection, or for UR_ACCEPT its listener socket (struct sf_lsock).
 * UR_CONNECT on the upstream side waits for the connect, on the client
 * side for a PROXY header's bytes; UR_LTIMEOUT is the connect's linked
 * timeout.
 */
enum ur_op { UR_ACCEPT = 1, UR_CMD, UR_LTIMEOUT, UR_CONNECT, UR_RECV, UR_SEND, UR_CANCEL };

struct ur_dir {
	struct sf_ubufq q; /* received, not yet sent */
	uint8_t recv_armed;
	uint8_t cancel_sent;
	uint8_t send_armed;
	uint8_t starved;     /* waiting for a group to have buffers again */
	uint8_t woken;	     /* armed by a wake, no bytes since (UR_COUNTERS) */
	unsigned short bgid; /* the group its receive was armed on */
};

struct ur_conn {
	struct sf_conn c;
	struct ur_dir d[2];
	LIST_ENTRY(ur_conn) all; /* until freed, closed ones too */
	struct ur_conn *starved_next;
	struct ur_conn *dead_next;
	struct __kernel_timespec cto; /* the connect's linked timeout */
	int inflight;		      /* requests whose last completion has not come */
	uint64_t sqe_submits;	      /* l->submits when it last got an SQE naming its sockets */
	uint8_t connecting;
	uint8_t closed;
	uint8_t on_starved;
	uint8_t on_dead;
};

struct ur_loop {
	struct sf_worker *w;
	struct io_uring ring;
	struct sf_ubpool bufs;
	struct sf_timer pool_tm; /* ticks the pool while it may shrink */
	uint64_t submits;	 /* submissions so far, from 1 (see ur_flush) */
	uint64_t pub[3];	 /* starved, grown, retired: published so far */
	size_t pub_bytes;
	unsigned pub_live;
	struct sf_timers timers;
	/* Used through the LIST_* macros, which cppcheck does not follow into. */
	/* cppcheck-suppress unusedStructMember */
	LIST_HEAD(, ur_conn) all;		 /* every connection not yet freed */
	struct ur_conn *starved, **starved_tail; /* FIFO */
	unsigned nstarved;			 /* connections on it */
	struct ur_conn *dead;			 /* closed, freed after the completion batch */
	unsigned naccepts; /* accepts (or their polls) armed, any generation */
	/*
	 * Listener sockets of older generations whose accept was cancelled
	 * and has not completed yet: no accept is armed on a descriptor of
	 * theirs before that (see ur_arm_accept).
	 */
	struct sf_lsock **cancelled;
	unsigned ncancelled, capcancelled;
	int stop;
	int draining; /* accepts cancelled: the listeners close once none is armed */
	/*
	 * UDP rules: the shared readiness code (dgram/udp.c) on an epoll set
	 * of its own, watched by one poll on the ring (UR_CMD, side 1).
	 */
	struct sf_udp udp;
#ifdef UR_COUNTERS
	uint64_t ctr[UR_C_COUNT];
#endif
};

static uint64_t ud(void *x, enum ur_op op, int side)
{
	return (uint64_t)(uintptr_t)x | ((uint64_t)op << 1) | (unsigned)side;
}

/*
 * Hand every prepared SQE to the kernel, counted in l->submits. Returns
 * the number submitted or -errno (io_uring_submit).
 */
static int ur_submit(struct ur_loop *l)
{
	l->submits++;
	return io_uring_submit(&l->ring);
}

/* An SQE, submitting pending ones first when the queue is full; or NULL. */
static struct io_uring_sqe *ur_sqe(struct ur_loop *l)
{
	struct io_uring_sqe *sqe;

	if (sf_fault_sqe != NULL && sf_fault_sqe() != 0)
		return NULL;
	sqe = io_uring_get_sqe(&l->ring);
	if (sqe == NULL) {
		ur_submit(l);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

/* ur_sqe for a request on a socket of x: x then has an SQE not yet submitted. */
static struct io_uring_sqe *ur_sqe_for(struct ur_loop *l, struct ur_conn *x)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe != NULL)
		x->sqe_submits = l->submits;
	return sqe;
}

/*
 * Before x's sockets are closed: submit x's SQEs still in our hands. An
 * SQE names its socket by descriptor number, and the kernel looks the
 * number up only when the SQE is submitted (at the end of the batch).
 * Closed before that, the number goes to the next socket opened in the
 * process (this worker's next upstream connect, another thread's
 * accept), and a send prepared for x then writes x's bytes to another
 * connection's peer; a receive would take that connection's bytes.
 * Submitted, each request holds its own reference to x's socket, and the
 * close is safe. Costs a system call only for a connection that got an
 * SQE in the batch that closes it (a reset in the middle of a transfer).
 */
static void ur_flush(struct ur_loop *l, struct ur_conn *x)
{
	int rc;

	if (x->sqe_submits != l->submits)
		return;
	rc = ur_submit(l);
	if (rc < 0 && l->w->now_ms - l->w->last_warn_ms >= 1000) {
		l->w->last_warn_ms = l->w->now_ms;
		sf_log_warnx("worker %u: cannot submit before a close: %s", l->w->id,
			     strerror(-rc));
	}
}

/* Accepting on ls stops for SF_ACCEPT_PAUSE_MS (EMFILE, rule full, no SQE). */
static void ur_pause(struct ur_loop *l, struct sf_lsock *ls)
{
	if (!ls->paused)
		sf_timer_set(&l->timers, &ls->resume, l->w->now_ms + SF_ACCEPT_PAUSE_MS);
	ls->paused = 1;
}

/* A rule with max_conns accepts in userspace, after a poll: see ur_arm_accept. */
static int ur_polled(const struct sf_lsock *ls) { return ls->l->rule->pol->max_conns != 0; }

/* Is an accept of an older generation on descriptor fd cancelled but not yet completed? */
static int ur_cancelling(const struct ur_loop *l, int fd)
{
	unsigned i;

	for (i = 0; i < l->ncancelled; i++)
		if (l->cancelled[i]->io.fd == fd)
			return 1;
	return 0;
}

/*
 * Remember ls, whose accept is being cancelled, until its last
 * completion. Returns 0, or -ENOMEM (then the caller arms the new accept
 * at once, as before this list).
 */
static int ur_cancelled_add(struct ur_loop *l, struct sf_lsock *ls)
{
	if (l->ncancelled == l->capcancelled) {
		unsigned cap = l->capcancelled ? l->capcancelled * 2 : 16;
		struct sf_lsock **v = realloc(l->cancelled, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		l->cancelled = v;
		l->capcancelled = cap;
	}
	l->cancelled[l->ncancelled++] = ls;
	return 0;
}

static void ur_arm_accept(struct ur_loop *l, struct sf_lsock *ls);

/*
 * The last completion of an accept armed on ls came. If it had been
 * cancelled, the socket is free for an accept of the generation being
 * served: arm the one that ur_arm_accept held back (a kept listener's),
 * if any. Call before ls's generation is let go.
 */
static void ur_accept_ended(struct ur_loop *l, struct sf_lsock *ls)
{
	struct sf_gen *g = l->w->gen;
	unsigned i;
	size_t k;

	for (i = 0; i < l->ncancelled && l->cancelled[i] != ls; i++)
		;
	if (i == l->ncancelled)
		return;
	l->cancelled[i] = l->cancelled[--l->ncancelled];
	if (ls->l->gen == g)
		return;
	for (k = 0; k < g->nls; k++) {
		struct sf_lsock *cur = &g->ls[k].socks[l->w->id];

		if (cur->io.fd == ls->io.fd && g->ls[k].proto != SF_PROTO_UDP)
			ur_arm_accept(l, cur);
	}
}

/*
 * Arm accepting on ls unless it is armed: one multishot accept, or, for a
 * rule with max_conns, a poll for readiness after which the worker takes
 * a slot and only then accepts, so a full rule leaves its clients in the
 * backlog and no slot is held by an accept still waiting for a client
 * (with several workers that would strand clients queued on another
 * worker's socket). Each armed request holds a reference on its
 * generation: its completions name ls, which lives there, and may come
 * after a reload.
 *
 * Not while an accept of an older generation on the same socket (a
 * listener a reload kept) is cancelled but not yet completed: accepts
 * wait on the socket as exclusive waiters (EPOLLEXCLUSIVE), and a new
 * client's wakeup goes to the first of them only. The cancelled one,
 * first in line until its cancellation runs (task work, at a later
 * io_uring_enter), takes it and does nothing; the new accept sleeps on,
 * and the client waits in the backlog until another client or reload
 * comes (reload::under_load_uring's clients timed out there after the
 * last reload). ur_accept_ended arms it once the old one is gone, and
 * a client queued meanwhile is taken as the accept is armed.
 */
static void ur_arm_accept(struct ur_loop *l, struct sf_lsock *ls)
{
	struct io_uring_sqe *sqe;
	int polled = ur_polled(ls);

	if (ls->armed || ls->paused || l->stop || l->draining || ur_cancelling(l, ls->io.fd))
		return;
	if (polled && SF_ATOMIC_GET(ls->l->rule->active) >= ls->l->rule->pol->max_conns) {
		ur_pause(l, ls);
		return;
	}
	sqe = ur_sqe(l);
	if (sqe == NULL) {
		ur_pause(l, ls);
		return;
	}
	/* Blocking client sockets: see the note at the top. */
	if (polled)
		io_uring_prep_poll_add(sqe, ls->io.fd, POLLIN);
	else
		io_uring_prep_multishot_accept(sqe, ls->io.fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud(ls, UR_ACCEPT, polled));
	ls->armed = 1;
	l->naccepts++;
	sf_gen_ref(ls->l->gen);
}

static void ur_on_resume(void *ctx, struct sf_timer *tm)
{
	struct sf_lsock *ls = SF_CONTAINER_OF(tm, struct sf_lsock, resume);

	ls->paused = 0;
	ur_arm_accept(ctx, ls);
}

static void ur_cancel(struct ur_loop *l, void *x, enum ur_op op, int side)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL) {
		/*
		 * No SQE: cancel synchronously. Left armed, a receive would
		 * hold its socket's file open past our close, so a reset
		 * would never be sent and the connection never freed.
		 */
		struct io_uring_sync_cancel_reg reg = {
			.addr = ud(x, op, side),
			.timeout = { .tv_sec = -1, .tv_nsec = -1 },
		};

		(void)io_uring_register_sync_cancel(&l->ring, &reg);
		return;
	}
	io_uring_prep_cancel64(sqe, ud(x, op, side), 0);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_CANCEL, 0));
}

/* Free x once closed and no completion can name it; after the batch. */
static void ur_maybe_free(struct ur_loop *l, struct ur_conn *x)
{
	if (x->closed && x->inflight == 0 && !x->on_starved && !x->on_dead) {
		x->on_dead = 1;
		x->dead_next = l->dead;
		l->dead = x;
	}
}

/* One request of x completed for good. */
static void ur_put(struct ur_loop *l, struct ur_conn *x)
{
	x->inflight--;
	ur_maybe_free(l, x);
}

static void ur_wake_starved(struct ur_loop *l);

/*
 * End x through the shared policy. Requests still in flight are
 * cancelled; x is freed after the batch in which the last of them
 * completes, so no caller ever holds a freed x. Queued buffers go back to
 * the ring, but for one being sent (see top), and wake starved directions.
 */
static void ur_close(struct ur_loop *l, struct ur_conn *x, int reason, int side, int err, int reset)
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
		ur_cancel(l, x, UR_CONNECT, (x->c.flags & SF_CONN_PROXY) ? SF_CLIENT : SF_UPSTREAM);
	sf_timer_del(&l->timers, &x->c.timer);
	ur_flush(l, x);
	if (reset)
		sf_conn_reset(&x->c, reason, side, err);
	else
		sf_conn_close(&x->c);
	ur_maybe_free(l, x);
	if (l->starved != NULL)
		ur_wake_starved(l);
}

static void ur_fail(struct ur_loop *l, struct ur_conn *x, int side, int err)
{
	ur_close(l, x, SF_R_RESET, side, err, 1);
}

static void ur_arm_recv(struct ur_loop *l, struct ur_conn *x, int d)
{
	struct ur_dir *dir = &x->d[d];
	struct io_uring_sqe *sqe;
	unsigned avail;

	if (x->closed || x->connecting || dir->recv_armed || dir->starved ||
	    (x->c.flags & SF_CONN_EOF(d)) || dir->q.n >= UR_HIGH)
		return;
	sqe = ur_sqe_for(l, x);
	if (sqe == NULL) {
		ur_fail(l, x, d, -EBUSY);
		return;
	}
	io_uring_prep_recv_multishot(sqe, x->c.fd[d], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	dir->bgid = sf_ubpool_pick(&l->bufs, &avail);
	sqe->buf_group = dir->bgid;
	io_uring_sqe_set_data64(sqe, ud(x, UR_RECV, d));
	dir->recv_armed = 1;
	dir->cancel_sent = 0;
	x->inflight++;
	UR_CTR(l, UR_C_ARMS, 1);
}

static void ur_arm_send(struct ur_loop *l, struct ur_conn *x, int d)
{
	struct ur_dir *dir = &x->d[d];
	struct io_uring_sqe *sqe;
	uint32_t len;
	char *p;

	if (x->closed || dir->send_armed || sf_ubufq_peek(&l->bufs, &dir->q, &p, &len) < 0)
		return;
	sqe = ur_sqe_for(l, x);
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
	    !(x->c.flags & SF_CONN_SHUT(d)) && sf_conn_shut(&x->c, d, 0))
		ur_close(l, x, SF_R_EOF, -1, 0, 0);
}

/* Direction d of x ran out of buffers: wait at the tail of the starved list. */
static void ur_starve(struct ur_loop *l, struct ur_conn *x, int d)
{
	x->d[d].starved = 1;
	/* Counted when no buffer is free, not when stashed ones wait for the next turn. */
	if (sf_ubpool_spare(&l->bufs) == 0)
		l->bufs.starved++;
	if (x->on_starved)
		return;
	x->on_starved = 1;
	x->starved_next = NULL;
	if (l->starved == NULL)
		l->starved = x;
	else
		*l->starved_tail = x;
	l->starved_tail = &x->starved_next;
	l->nstarved++;
}

/*
 * Buffers came back or the pool grew: let starved directions receive
 * again, oldest first, while a group has a free buffer not yet promised
 * to a receive (each woken one is promised one), so a single returned
 * buffer does not wake every waiter into another -ENOBUFS.
 */
static void ur_wake_starved(struct ur_loop *l)
{
	struct ur_conn *x;
	int d;

	while ((x = l->starved) != NULL && (x->closed || sf_ubpool_avail(&l->bufs) > 0)) {
		l->starved = x->starved_next;
		l->nstarved--;
		x->on_starved = 0;
		if (x->closed) {
			ur_maybe_free(l, x);
			continue;
		}
		for (d = 0; d < 2; d++) {
			if (x->d[d].starved) {
				x->d[d].starved = 0;
				x->d[d].woken = 1;
				UR_CTR(l, UR_C_WAKES, 1);
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
		int ref = sf_ubpool_ref(&l->bufs, dir->bgid,
					(int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));

		if (ref < 0) {
			/* Cannot happen: a group is freed only once nothing names it. */
			sf_log_warnx("worker %u: receive into unknown buffer group %u", l->w->id,
				     dir->bgid);
			if (!x->closed)
				ur_fail(l, x, d, -EIO);
			goto out;
		}
		if (x->closed) {
			sf_ubpool_drop(&l->bufs, ref);
			if (l->starved != NULL)
				ur_wake_starved(l);
			goto out;
		}
		UR_CTR(l, UR_C_DATA, 1);
		UR_CTR(l, UR_C_BYTES, (uint64_t)res);
		dir->woken = 0;
		sf_ubufq_push(&l->bufs, &dir->q, ref, (uint32_t)res);
		ur_arm_send(l, x, d);
		if (dir->recv_armed && !dir->cancel_sent && dir->q.n >= UR_HIGH) {
			UR_CTR(l, UR_C_HIGHCANCEL, 1);
			ur_cancel(l, x, UR_RECV, d);
			dir->cancel_sent = 1;
		}
	} else if (x->closed) {
		goto out;
	} else if (res == 0) {
		sf_conn_eof(&x->c, d);
		ur_maybe_shut(l, x, d);
	} else if (res == -ENOBUFS) {
		/*
		 * Its group ran dry or was retired: armed again below on the
		 * group with the most free buffers, or it waits for one.
		 */
		UR_CTR(l, UR_C_NOBUFS, 1);
		UR_CTR(l, UR_C_NB_WOKEN, dir->woken);
		dir->woken = 0;
		if (sf_ubpool_avail(&l->bufs) == 0) {
			UR_CTR(l, UR_C_NB_STARVE, 1);
			ur_starve(l, x, d);
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
	UR_CTR(l, UR_C_SENDS, 1);
	if (x->closed || res <= 0) {
		/* The head was kept for this completion: now it can go back. */
		sf_ubufq_release(&l->bufs, &dir->q, 0);
		if (!x->closed)
			ur_fail(l, x, !d, res < 0 ? res : -EPIPE);
		else if (l->starved != NULL)
			ur_wake_starved(l);
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

/* Arm x's timer for its state (idle, header deadline), or disarm it. */
static void ur_arm_timer(struct ur_loop *l, struct ur_conn *x)
{
	uint64_t when = sf_conn_deadline(&x->c, 0, l->w->now_ms);

	if (when == 0)
		sf_timer_del(&l->timers, &x->c.timer);
	else if (sf_timer_set(&l->timers, &x->c.timer, when) < 0)
		ur_close(l, x, SF_R_LIMIT, -1, -ENOMEM, 1);
}

/* Connected: the shared hook, then both sockets blocking and receiving. */
static void ur_start(struct ur_loop *l, struct ur_conn *x)
{
	int rc;

	x->connecting = 0;
	rc = sf_conn_connected(&x->c);
	if (rc < 0) {
		ur_fail(l, x, SF_UPSTREAM, rc);
		return;
	}
	/* O_NONBLOCK is the only status flag sf_net_connect sets: clear it. */
	if (fcntl(x->c.fd[SF_UPSTREAM], F_SETFL, 0) < 0) {
		ur_fail(l, x, SF_UPSTREAM, -errno);
		return;
	}
	ur_arm_timer(l, x);
	ur_arm_recv(l, x, SF_C2U);
	ur_arm_recv(l, x, SF_U2C);
}

/*
 * Wait for the non-blocking connect of x to finish, or for the client's
 * PROXY header (side SF_CLIENT). The connect's poll carries a linked
 * timeout: when it fires the poll completes with -ECANCELED, which is
 * then the connect timeout; one completion decides either way.
 */
static void ur_arm_poll(struct ur_loop *l, struct ur_conn *x, int side)
{
	struct io_uring_sqe *sqe = ur_sqe_for(l, x), *lt;
	uint64_t ms = x->c.rule->pol->connect_timeout_ms;

	if (sqe == NULL) {
		ur_close(l, x, SF_R_LIMIT, side, -EBUSY, 1);
		return;
	}
	io_uring_prep_poll_add(sqe, x->c.fd[side], side == SF_UPSTREAM ? POLLOUT : POLLIN);
	io_uring_sqe_set_data64(sqe, ud(x, UR_CONNECT, side));
	x->connecting = 1;
	x->inflight++;
	if (side != SF_UPSTREAM)
		return;
	sqe->flags |= IOSQE_IO_LINK;
	lt = ur_sqe(l);
	if (lt == NULL) {
		/* The poll was submitted alone: no timeout for this attempt. */
		sf_log_warnx("worker %u: no SQE for a connect timeout", l->w->id);
		return;
	}
	x->cto.tv_sec = (long long)(ms / 1000);
	x->cto.tv_nsec = (long long)(ms % 1000) * 1000000;
	io_uring_prep_link_timeout(lt, &x->cto, 0);
	io_uring_sqe_set_data64(lt, ud(x, UR_LTIMEOUT, SF_UPSTREAM));
	x->inflight++;
}

/* Start or go on with the upstream connect; rc is a first attempt's result. */
static void ur_connect_result(struct ur_loop *l, struct ur_conn *x, int rc)
{
	if (rc == -EINPROGRESS) {
		ur_arm_poll(l, x, SF_UPSTREAM);
		return;
	}
	if (rc < 0) {
		ur_close(l, x, sf_conn_connect_reason(&x->c), SF_UPSTREAM, rc, 1);
		return;
	}
	ur_start(l, x);
}

/* The connect's poll completed with res (a poll mask, or -errno). */
static void ur_on_connect(struct ur_loop *l, struct ur_conn *x, int res)
{
	int rc = res == -ECANCELED ? -ETIMEDOUT : res < 0 ? res : sf_net_so_error(x->c.fd[1]);

	x->connecting = 0;
	if (rc < 0)
		rc = sf_conn_connect_next(&x->c, rc);
	ur_connect_result(l, x, rc);
}

/* The client became readable while its PROXY header is awaited. */
static void ur_on_header(struct ur_loop *l, struct ur_conn *x, int res)
{
	int rc = res < 0 ? res : sf_conn_read_proxy(&x->c, 1);

	x->connecting = 0;
	if (rc == 0) {
		ur_arm_poll(l, x, SF_CLIENT);
		return;
	}
	if (rc < 0) {
		ur_close(l, x, sf_conn_refused_reason(&x->c, rc), SF_CLIENT, rc, 1);
		return;
	}
	sf_timer_del(&l->timers, &x->c.timer);
	ur_connect_result(l, x, sf_conn_connect(&x->c, 0));
}

/* x's timer: the PROXY header's deadline, or the idle timeout. */
static void ur_on_timer(void *ctx, struct sf_timer *tm)
{
	struct ur_loop *l = ctx;
	struct ur_conn *x = SF_CONTAINER_OF(tm, struct ur_conn, c.timer);

	if (x->closed)
		return;
	if (x->c.flags & SF_CONN_PROXY)
		ur_close(l, x, SF_R_PROXY_HEADER, SF_CLIENT, -ETIMEDOUT, 1);
	else if (sf_conn_idle(&x->c, l->w->now_ms))
		ur_close(l, x, SF_R_IDLE_TIMEOUT, -1, 0, 1);
	else
		ur_arm_timer(l, x);
}

/* A client was accepted on ls (its slot taken); peer is NULL from a multishot accept. */
static void ur_conn_new(struct ur_loop *l, struct sf_lsock *ls, int fd,
			const struct sf_sockaddr *peer)
{
	struct ur_conn *x;
	int rc;

	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		sf_rule_release(ls->l->rule);
		sf_net_reset(fd);
		return;
	}
	sf_conn_init(&x->c, l->w, ls, fd, peer);
	sf_timer_init(&x->c.timer, ur_on_timer);
	sf_ubufq_init(&x->d[0].q);
	sf_ubufq_init(&x->d[1].q);
	LIST_INSERT_HEAD(&l->all, x, all);
	rc = sf_conn_admit(&x->c);
	if (rc < 0) {
		ur_close(l, x, sf_conn_refused_reason(&x->c, rc), SF_CLIENT, rc, 1);
		return;
	}
	if (rc == 1) {
		ur_arm_timer(l, x);
		ur_arm_poll(l, x, SF_CLIENT);
		return;
	}
	ur_connect_result(l, x, sf_conn_connect(&x->c, 0));
}

/* Is ls still served (no stop or drain, not a listener of an older generation)? */
static int ur_serving(const struct ur_loop *l, const struct sf_lsock *ls)
{
	return !l->stop && !l->draining && ls->l->gen == l->w->gen;
}

/* The listener of a max_conns rule is readable: accept while slots last. */
static void ur_on_accept_poll(struct ur_loop *l, struct sf_lsock *ls, int res)
{
	struct sf_sockaddr peer;
	int i, fd;

	ls->armed = 0;
	l->naccepts--;
	for (i = 0; i < UR_ACCEPT_BUDGET && res >= 0 && ur_serving(l, ls); i++) {
		if (!sf_rule_reserve(ls->l->rule)) {
			ur_pause(l, ls);
			break;
		}
		fd = sf_net_accept(ls->io.fd, &peer, 1);
		if (fd < 0) {
			sf_rule_release(ls->l->rule);
			if (sf_worker_accept_failed(l->w, fd))
				ur_pause(l, ls);
			break;
		}
		ur_conn_new(l, ls, fd, &peer);
	}
	if (res != -ECANCELED && ur_serving(l, ls))
		ur_arm_accept(l, ls);
	ur_accept_ended(l, ls);
	sf_gen_unref(ls->l->gen); /* taken when armed; ls may be gone after it */
}

static void ur_on_accept(struct ur_loop *l, struct sf_lsock *ls, struct io_uring_cqe *cqe)
{
	int fd = cqe->res, last = !(cqe->flags & IORING_CQE_F_MORE);

	if (fd >= 0) {
		/* max_conns is 0 here: the reservation always succeeds. */
		sf_rule_reserve(ls->l->rule);
		ur_conn_new(l, ls, fd, NULL);
	}
	if (!last)
		return;
	ls->armed = 0;
	l->naccepts--;
	if (ur_serving(l, ls) && fd != -ECANCELED) {
		if (fd < 0 && sf_worker_accept_failed(l->w, fd))
			ur_pause(l, ls);
		else
			ur_arm_accept(l, ls);
	}
	ur_accept_ended(l, ls);
	sf_gen_unref(ls->l->gen); /* taken when armed; ls may be gone after it */
}

/* Arm accepting on every listener of g; or cancel it. */
static void ur_listen(struct ur_loop *l, struct sf_gen *g, int on)
{
	size_t i;

	sf_udp_listen(&l->udp, g, on);
	for (i = 0; i < g->nls; i++) {
		struct sf_lsock *ls = &g->ls[i].socks[l->w->id];

		if (g->ls[i].proto == SF_PROTO_UDP)
			continue;
		if (on) {
			ls->armed = ls->paused = 0;
			sf_timer_init(&ls->resume, ur_on_resume);
			ur_arm_accept(l, ls);
			continue;
		}
		if (ls->paused)
			sf_timer_del(&l->timers, &ls->resume);
		ls->paused = 0;
		if (!ls->armed)
			continue;
		ur_cancel(l, ls, UR_ACCEPT, ur_polled(ls));
		(void)ur_cancelled_add(l, ls);
	}
}

static void ur_arm_cmd(struct ur_loop *l)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL) {
		l->stop = 1; /* cannot hear commands: stop rather than go deaf */
		return;
	}
	io_uring_prep_poll_add(sqe, l->w->cmdfd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_CMD, 0));
}

/*
 * One poll on the UDP epoll set, armed again after each completion. Not
 * multishot: a budget may leave sockets ready with no new wake-up, and a
 * fresh poll sees that readiness at once.
 */
static void ur_arm_udp(struct ur_loop *l)
{
	struct io_uring_sqe *sqe = ur_sqe(l);

	if (sqe == NULL) {
		l->stop = 1; /* deaf to UDP: stop rather than hang */
		return;
	}
	io_uring_prep_poll_add(sqe, l->udp.epfd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud(NULL, UR_CMD, 1));
}

/*
 * The UDP epoll set is readable. Draining, its sessions have ended but its
 * sockets stay open until the accepts are cancelled (ur_unlisten): a
 * datagram read then would start a session nobody ends, so none is read.
 */
static void ur_on_udp(struct ur_loop *l)
{
	if (l->draining)
		return;
	(void)sf_udp_poll(&l->udp);
	if (!l->stop)
		ur_arm_udp(l);
}

static void ur_on_cmd(struct ur_loop *l)
{
	unsigned cmd = sf_worker_commands(l->w);
	struct sf_gen *g;

	if ((cmd & SF_WCMD_GEN) && !l->draining && (g = sf_worker_take_gen(l->w)) != NULL) {
		/*
		 * Cancel first: closing a descriptor does not end an accept in
		 * flight on it, the ring holds its own reference to the file.
		 */
		ur_listen(l, l->w->gen, 0);
		ur_submit(l);
		sf_worker_adopt(l->w, g);
		sf_udp_gen_changed(&l->udp, g);
		ur_listen(l, g, 1);
	}
	/* Drain: the listeners close in ur_unlisten, once every accept completed. */
	if ((cmd & SF_WCMD_DRAIN) && !l->draining) {
		l->draining = 1;
		ur_listen(l, l->w->gen, 0);
		/* UDP sessions end with their listeners (docs/architecture.md). */
		sf_udp_end_all(&l->udp, SF_R_STOP);
	}
	if (cmd & SF_WCMD_STOP)
		l->stop = 1;
	else
		ur_arm_cmd(l);
}

/*
 * Tests only (sockfwd/fault.h): whether the fault hook changes the result
 * of cqe, an (op, side) completion; if so *fc is the completion to act on.
 * A receive's buffer goes back to the ring first, as the kernel never
 * hands one out with an error. The multishot flag is kept: the kernel's
 * request is still armed, and the failed connection's close cancels it.
 */
static int ur_fault(struct ur_loop *l, struct ur_conn *x, enum ur_op op, int side,
		    const struct io_uring_cqe *cqe, struct io_uring_cqe *fc)
{
	int kind, res;

	if (op == UR_RECV)
		kind = SF_FAULT_CQE_RECV;
	else if (op == UR_SEND)
		kind = SF_FAULT_CQE_SEND;
	else if (op == UR_CONNECT && side == SF_UPSTREAM)
		kind = SF_FAULT_CQE_CONNECT;
	else
		return 0;
	res = sf_fault_cqe(kind, cqe->res);
	if (res == cqe->res)
		return 0;
	fc->user_data = cqe->user_data;
	fc->res = res;
	fc->flags = cqe->flags;
	if (res < 0 && (fc->flags & IORING_CQE_F_BUFFER)) {
		int ref = sf_ubpool_ref(&l->bufs, x->d[side].bgid,
					(int)(fc->flags >> IORING_CQE_BUFFER_SHIFT));

		if (ref >= 0)
			sf_ubpool_drop(&l->bufs, ref);
		fc->flags &= ~(uint32_t)IORING_CQE_F_BUFFER;
		if (l->starved != NULL)
			ur_wake_starved(l);
	}
	return 1;
}

static void ur_dispatch(struct ur_loop *l, struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	void *p = (void *)(uintptr_t)(data & ~(uint64_t)15);
	struct ur_conn *x = p;
	int side = (int)(data & 1);
	struct io_uring_cqe fc;

	if (sf_fault_cqe != NULL && ur_fault(l, x, (enum ur_op)((data >> 1) & 7), side, cqe, &fc))
		cqe = &fc;
	switch ((enum ur_op)((data >> 1) & 7)) {
	case UR_ACCEPT:
		if (side)
			ur_on_accept_poll(l, p, cqe->res);
		else
			ur_on_accept(l, p, cqe);
		break;
	case UR_CMD:
		if (side)
			ur_on_udp(l);
		else
			ur_on_cmd(l);
		break;
	case UR_LTIMEOUT:
		ur_put(l, x);
		break;
	case UR_CONNECT:
		x->inflight--;
		if (x->closed)
			ur_maybe_free(l, x);
		else if (side == SF_UPSTREAM)
			ur_on_connect(l, x, cqe->res);
		else
			ur_on_header(l, x, cqe->res);
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

/*
 * Groups at most for buffers of size: UR_POOL_BYTES, at least one group.
 * UR_POOL_GROW 0 keeps one group, as before the pool (make
 * CPPFLAGS=-DUR_POOL_GROW=1 builds it on, for the bench). Twice switched
 * off for faults that were not the pool's: the hour soak's foreign 64 KiB
 * (a closed descriptor's SQE, ur_flush) and a client reset in
 * uring_pool's rounds test (its echo server gave up 30 s into a hold and
 * closed; the forwarder passed on the reset from that upstream). Then
 * off for a cost that was the pool's: the bench's 512- and 4,096-stream
 * curves ran at 0.24-0.41x of the throughput at 2.5-5x the CPU per GB.
 * The cause, measured (2026-11-30, docs/benchmarks.md): every free
 * buffer of every group sat in the rings, and one turn of the loop (one
 * io_uring_enter, whose deferred task work runs every ready receive)
 * took as many as the rings held: 8.3-8.7 MB per turn with 8 groups
 * against 0.4-1 MB with one, whose ring holds only what the buffers out
 * leave; the CPU per byte followed the turn's size. perf shows the same
 * functions (the copies in and out) taking longer, no new one: most
 * likely 8 MB copied in no longer stay in the caches until copied out.
 * Not the buffers a held direction takes: limited to UR_HIGH per receive
 * (Linux 6.17's multishot limit), growth cost as much. Now the rings
 * hold one group's worth less the buffers out (the pool's circ, at least
 * UR_RING_MIN): a grown pool turns as one group does, at 14-17 MiB RSS.
 * Still off: growing only when no buffer is spare still cost at 512
 * client-to-server streams (2.2-6.1 against 10.2-19.5 Gbit/s, three
 * rounds, 2026-11-30), as growing on any starvation did. `make URING=1
 * test-grow` runs the growth tests against a build with it on.
 */
#ifndef UR_POOL_GROW
#define UR_POOL_GROW 0
#endif

static unsigned ur_pool_max(size_t size)
{
	size_t n;

	if (!UR_POOL_GROW)
		return 1;
	n = UR_POOL_BYTES / ((size_t)UR_NBUFS * size);
	return n < 1 ? 1 : n > SF_UBP_SLOTS ? SF_UBP_SLOTS : (unsigned)n;
}

/*
 * Free buffers of size the rings keep while the pool has them, however
 * many are out: UR_RING_MIN bytes, 1 to a group. So with buffers held
 * out past one group's worth, the other directions still receive (what
 * the growth is for), about as much per turn as one group gave them.
 */
#define UR_RING_MIN (1u << 20)

static unsigned ur_ring_min(size_t size)
{
	size_t n = UR_RING_MIN / size;

	return n < 1 ? 1 : n > UR_NBUFS ? UR_NBUFS : (unsigned)n;
}

/* Bring the process-wide counters (stats.h) up to this worker's pool. */
static void ur_publish(struct ur_loop *l)
{
	const struct sf_ubpool *p = &l->bufs;
	const uint64_t now[3] = { p->starved, p->grown, p->retired };
	int k;

	for (k = 0; k < 3; k++) {
		if (now[k] != l->pub[k])
			sf_stats_ubuf_add(SF_UB_STARVED + k, (int64_t)(now[k] - l->pub[k]));
		l->pub[k] = now[k];
	}
	if (p->live != l->pub_live)
		sf_stats_ubuf_add(SF_UB_GROUPS, (int64_t)p->live - (int64_t)l->pub_live);
	if (p->bytes != l->pub_bytes)
		sf_stats_ubuf_add(SF_UB_BYTES, (int64_t)p->bytes - (int64_t)l->pub_bytes);
	l->pub_live = p->live;
	l->pub_bytes = p->bytes;
}

/* The worker ends: its groups are gone from the gauges (the totals stay). */
static void ur_unpublish(struct ur_loop *l)
{
	sf_stats_ubuf_add(SF_UB_GROUPS, -(int64_t)l->pub_live);
	sf_stats_ubuf_add(SF_UB_BYTES, -(int64_t)l->pub_bytes);
	l->pub_live = 0;
	l->pub_bytes = 0;
}

/*
 * After each batch: let the pool grow, shrink or free a retired group
 * (sf_ubpool_tick), wake starved directions onto new buffers, and keep
 * a timer while the pool is above one group, so an idle worker still
 * gives its groups back.
 */
static void ur_pool_tick(struct ur_loop *l)
{
	int quiet = io_uring_cq_ready(&l->ring) == 0 && !io_uring_cq_has_overflow(&l->ring);
	/* Waiters grow the pool only when it has no stashed buffer either. */
	unsigned short_of = sf_ubpool_spare(&l->bufs) == 0 ? l->nstarved : 0;
	int rc = sf_ubpool_tick(&l->bufs, short_of, l->w->now_ms, quiet);

	if (rc < 0 && l->w->now_ms - l->w->last_warn_ms >= 1000) {
		l->w->last_warn_ms = l->w->now_ms;
		sf_log_warnx("worker %u: cannot add an io_uring buffer group: %s", l->w->id,
			     strerror(-rc));
	}
	if (l->starved != NULL)
		ur_wake_starved(l);
	if (sf_ubpool_pending(&l->bufs) && !sf_timer_armed(&l->pool_tm) && !l->stop)
		sf_timer_set(&l->timers, &l->pool_tm, l->w->now_ms + SF_UBP_SHRINK_MS);
	ur_publish(l);
}

/* The pool's timer: the tick after it runs in the loop (ur_pool_tick). */
static void ur_on_pool_timer(void *ctx, struct sf_timer *tm)
{
	(void)ctx;
	(void)tm;
}

static void ur_free_dead(struct ur_loop *l)
{
	struct ur_conn *x;

	while ((x = l->dead) != NULL) {
		l->dead = x->dead_next;
		LIST_REMOVE(x, all);
		free(x);
	}
}

/*
 * Draining: close the listeners once no accept is armed on them. Not
 * before: the ring holds its own reference to a listener's file until
 * its accept completes, so a close would leave the socket listening with
 * nobody accepting, and clients queued there would be lost.
 */
static void ur_unlisten(struct ur_loop *l)
{
	if (l->draining && l->naccepts == 0)
		sf_worker_unlisten(l->w);
}

/* Wait for a completion, or for the first timer. */
static int ur_wait(struct ur_loop *l)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	int ms = sf_timers_wait_ms(&l->timers, sf_now_ms());

	l->submits++;
	if (ms < 0)
		return io_uring_submit_and_wait(&l->ring, 1);
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	return io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
}

/* UR_COUNTERS only: the worker's counters, one line on stderr (see UR_C_*). */
static void ur_counters_log(const struct ur_loop *l)
{
#ifdef UR_COUNTERS
	static const char *const names[UR_C_COUNT] = {
		"turns", "data", "bytes",      "nobufs", "nb_woken",	"nb_starve",
		"wakes", "arms", "highcancel", "sends",	 "starved_sum",
	};
	char line[512];
	size_t len;
	int k;

	len = (size_t)snprintf(line, sizeof(line), "urc w%u stats:", l->w->id);
	for (k = 0; k < UR_C_COUNT && len < sizeof(line); k++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, " urc_%s=%llu", names[k],
					(unsigned long long)l->ctr[k]);
	fprintf(stderr, "%s\n", line);
#else
	(void)l;
#endif
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

/*
 * The ring is gone: the accepts armed on the current generation's
 * listeners will never complete, so drop what each one held.
 */
static void ur_drop_accepts(struct sf_worker *w)
{
	size_t i;

	for (i = 0; i < w->gen->nls; i++) {
		struct sf_lsock *ls = &w->gen->ls[i].socks[w->id];

		if (!ls->armed)
			continue;
		ls->armed = 0;
		sf_gen_unref(w->gen);
	}
}

static int ur_run(struct sf_worker *w)
{
	struct ur_loop *l;
	struct ur_conn *x;
	struct io_uring_cqe *cqe;
	struct sf_timer *tm;
	unsigned head, n;
	int rc;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->w = w;
	l->submits = 1; /* a new connection's 0 is then no submission's */
	LIST_INIT(&l->all);
	sf_timers_init(&l->timers);
	/* Created in the worker thread: SINGLE_ISSUER binds it to this thread. */
	rc = ur_ring_init(&l->ring, UR_SQ_ENTRIES);
	if (rc < 0)
		goto fail_l;
	rc = sf_ubpool_init(&l->bufs, &l->ring, UR_NBUFS, w->buffer_size,
			    ur_pool_max(w->buffer_size), UR_BGID);
	if (rc < 0)
		goto fail_ring;
	l->starved_tail = &l->starved;
	l->bufs.vis_min = ur_ring_min(w->buffer_size);
	sf_timer_init(&l->pool_tm, ur_on_pool_timer);
	ur_publish(l);
	rc = sf_udp_init_own(&l->udp, w, &l->timers);
	if (rc < 0) {
		sf_ubpool_destroy(&l->bufs);
		ur_unpublish(l);
		goto fail_ring;
	}
	ur_arm_cmd(l);
	ur_arm_udp(l);
	ur_listen(l, w->gen, 1);
	while (!l->stop) {
		rc = ur_wait(l);
		if (rc < 0 && rc != -EINTR && rc != -ETIME)
			break;
		rc = 0;
		w->now_ms = sf_now_ms();
		n = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			ur_dispatch(l, cqe);
			n++;
		}
		io_uring_cq_advance(&l->ring, n);
		while ((tm = sf_timers_pop_due(&l->timers, w->now_ms)) != NULL)
			tm->fn(l, tm);
		ur_pool_tick(l);
		UR_CTR(l, UR_C_TURNS, 1);
		UR_CTR(l, UR_C_STARVED_SUM, l->nstarved);
		ur_free_dead(l);
		sf_udp_reap(&l->udp);
		ur_unlisten(l);
	}
	/*
	 * Stop: reset every connection (bytes may be queued: a FIN would make
	 * a cut stream look complete); the ring's exit cancels the rest.
	 */
	LIST_FOREACH(x, &l->all, all)
	ur_close(l, x, SF_R_STOP, -1, 0, 1);
	ur_counters_log(l);
	io_uring_queue_exit(&l->ring);
	ur_drop_accepts(w);
	/* No completion can come now: free every connection, waiting or not. */
	l->dead = NULL;
	l->starved = NULL;
	while ((x = LIST_FIRST(&l->all)) != NULL) {
		LIST_REMOVE(x, all);
		free(x);
	}
	sf_udp_destroy(&l->udp);
	sf_timers_destroy(&l->timers);
	sf_ubpool_destroy(&l->bufs);
	ur_unpublish(l);
	free(l->cancelled);
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
	static const int ops[] = { IORING_OP_ACCEPT,	   IORING_OP_RECV,
				   IORING_OP_SEND,	   IORING_OP_POLL_ADD,
				   IORING_OP_LINK_TIMEOUT, IORING_OP_ASYNC_CANCEL };
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
	.udp = 1,
};
