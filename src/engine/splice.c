/*
 * The splice engine: the shared reactor moving each direction socket ->
 * pipe -> socket with splice(2), so payload never enters userspace.
 *
 * Kernel behaviour this relies on (see docs/architecture.md):
 * - splice(sock -> pipe) answers EAGAIN both when the socket is empty and
 *   when the pipe is full (in bytes or in its 16 buffer slots), so the
 *   bytes in each pipe are counted: with an empty pipe EAGAIN can only
 *   mean "socket empty"; otherwise drain and read again ourselves, since
 *   edge-triggered epoll will not report those bytes a second time.
 * - SPLICE_F_MORE is never passed: it corks small replies for up to
 *   200 ms (measured: +208 ms per request/response).
 * - splice returns 0 at the source's FIN; never call it with length 0.
 * - EINVAL means splice is refused for these descriptors: that direction
 *   falls back to a userspace buffer for good. When no pipe can be had
 *   (the worker's pipe cap reached, descriptors out, or the user past
 *   fs.pipe-user-pages-soft) it uses a buffer until drained, and that is
 *   counted (pipe_fallbacks= at exit, sockfwd_pipe_fallbacks_total).
 *   The cap is derived at start from the limits (sf_pipepool_cap).
 *
 * Small messages go through a buffer, as HAProxy's splice-auto does: for
 * 64 bytes, recv+send is two calls where splice needs three (in, out, and
 * one more read, since a short splice can mean "pipe out of slots" rather
 * than "socket empty"). A direction starts on a buffer and moves to splice
 * once a read fills the whole buffer (bulk); SP_STREAK splice bursts in a
 * row of 1 byte to less than SP_SMALL, each begun with an empty pipe and
 * not resumed after a spent budget, send it back (sp_streak). Modes change
 * only while the direction
 * holds no bytes, so order is kept; bytes moved either way are counted
 * apart (spliced=), so the share is always visible.
 *
 * What splice keeps (its modes, the pipe and its fill, the small-burst
 * streak, the pipe pool) is its own: the reactor only sees rx_xfer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "event/reactor.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/pipepool.h"
#include "sockfwd/worker.h"

/* SP_STREAK splice bursts in a row moving less than SP_SMALL: back to a buffer. */
#define SP_SMALL  4096u
#define SP_STREAK 4
#define PIPE_IDLE 32 /* free pipes kept per worker (at most its pipe cap) */

enum sp_mode {
	SP_BUF_SMALL = 0, /* small messages: a buffer until a read fills it (the start) */
	SP_SPLICE,	  /* socket -> pipe -> socket */
	SP_BUF,		  /* userspace buffer, for good (splice refused) */
	SP_BUF_BURST,	  /* userspace buffer until drained (no pipe to be had) */
};

struct sp_dir {
	struct sf_pipe *pipe; /* lent while bytes are in flight */
	uint32_t inpipe;      /* bytes in pipe: tells "pipe full" from "socket empty" */
	uint8_t mode;	      /* enum sp_mode */
	uint8_t small_bursts; /* splice bursts in a row that moved little */
	uint8_t resumed;      /* the last call spent its budget (RX_MORE) */
};

static struct sf_pipepool *sp_pipes(struct rx_loop *l) { return l->priv; }

static struct sp_dir *sp_dir(struct rx_loop *l, struct rx_conn *x, int d)
{
	return rx_priv(x, l, d);
}

/* Give back direction d's pipe; one still holding bytes is closed. */
static void sp_release_pipe(struct rx_loop *l, struct sp_dir *sd)
{
	if (sd->pipe == NULL)
		return;
	if (sd->inpipe > 0)
		sf_pipepool_discard(sp_pipes(l), sd->pipe);
	else
		sf_pipepool_put(sp_pipes(l), sd->pipe);
	sd->pipe = NULL;
	sd->inpipe = 0;
}

/*
 * No pipe for a burst of a direction of x (err: errno of
 * sf_pipepool_get): count it in the rule's and the worker's counters, and
 * tell the operator once per worker why, since the cap or a limit may
 * want raising.
 */
static void sp_no_pipe(struct rx_loop *l, struct rx_conn *x, int err)
{
	struct sf_pipepool *pp = sp_pipes(l);
	int sh = l->w->ctr_shared;

	sf_ctr_add(&x->c.ctr->pipe_fallbacks, 1, sh);
	sf_ctr_add(&l->w->stats.pipe_fallbacks, 1, sh);
	if (pp->short_warned)
		return;
	pp->short_warned = 1;
	if (err == ENOBUFS && pp->max_live == 0)
		sf_log_warnx("worker %u: its pipe cap is 0 (RLIMIT_NOFILE or "
			     "fs.pipe-user-pages-soft too low for a pipe per worker); every byte "
			     "copies through buffers (see docs/operations.md, Limits)",
			     l->w->id);
	else if (err == ENOBUFS)
		sf_log_warnx("worker %u: all %u pipes of its cap are lent; more bulk directions "
			     "copy through buffers (see docs/operations.md, Limits)",
			     l->w->id, pp->max_live);
	else if (err == ENOSPC)
		sf_log_warnx("worker %u: the kernel only grants shrunk pipes "
			     "(fs.pipe-user-pages-soft reached); directions copy through buffers",
			     l->w->id);
	else
		sf_log_warnx("worker %u: cannot create a pipe (%s); directions copy through "
			     "buffers",
			     l->w->id, strerror(err));
}

/* splice without EINTR, as a byte count or -errno. */
static ssize_t sp_splice(int in, int out, size_t len)
{
	ssize_t n;

	do
		n = splice(in, NULL, out, NULL, len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* Move the pipe's bytes to dst. Returns bytes moved, or -errno. */
static ssize_t sp_flush(struct rx_conn *x, struct sp_dir *dir, int d, int dst)
{
	ssize_t n = sp_splice(dir->pipe->rfd, dst, dir->inpipe);

	if (n > 0) {
		dir->inpipe -= (uint32_t)n;
		sf_conn_count(&x->c, d, (uint64_t)n, 1);
	} else if (n == 0) {
		n = -EPIPE; /* a non-empty pipe never reads as EOF */
	}
	return n;
}

/*
 * Keep the small-burst streak of dir after a burst that read moved bytes;
 * counts: the burst emptied its pipe, began with an empty pipe and was
 * not resumed after a spent budget (else it can only end the streak). Only such a burst tells the
 * message size: a call woken to flush the pipe reads little and means
 * nothing; one that found the socket empty (an edge for bytes the last
 * call took) means nothing either, nor one resumed after its budget whose
 * sender had not caught up (a bulk stream). Counted, those sent bulk
 * streams back to a buffer, the more the smaller the budget. A bulk
 * stream also meets a nearly dry socket now and then, hence the streak:
 * request/response traffic makes one at once.
 */
static void sp_streak(struct sp_dir *dir, int counts, uint32_t moved)
{
	if (moved >= SP_SMALL) {
		dir->small_bursts = 0;
	} else if (counts && moved > 0 && ++dir->small_bursts >= SP_STREAK) {
		dir->small_bursts = 0;
		dir->mode = SP_BUF_SMALL;
	}
}

/*
 * One direction through its pipe. Returns as a reactor pump. The pipe
 * goes back to the pool whenever it is empty and the source has nothing
 * more, so an idle connection holds no pipe.
 */
static int sp_pump(struct rx_loop *l, struct rx_conn *x, int d)
{
	struct sp_dir *dir = sp_dir(l, x, d);
	int src = x->c.fd[d], dst = x->c.fd[!d];
	uint32_t budget = RX_BUDGET;  /* RX_BUDGET - budget: bytes read this call */
	int fresh = dir->inpipe == 0; /* not just flushing an earlier burst */
	int resumed = dir->resumed;
	ssize_t n;

	dir->resumed = 0;
	if (dir->mode != SP_SPLICE) {
		int rc = sf_rx_buf_pump(l, x, d);

		dir->resumed = rc == RX_MORE;
		if (rc < 0 || !sf_rx_buf_empty(x, d))
			return rc;
		/* Empty: a burst fallback retries splice, bulk moves to it. */
		if (dir->mode == SP_BUF_BURST || (dir->mode == SP_BUF_SMALL && x->d[d].full_read)) {
			sf_rx_buf_release(l, x, d);
			dir->mode = SP_SPLICE;
			x->d[d].full_read = 0;
		}
		return rc;
	}
	for (;;) {
		int src_dry = 0;

		if (!(x->c.flags & SF_CONN_EOF(d)) && budget > 0 &&
		    (dir->pipe == NULL || dir->inpipe < dir->pipe->cap)) {
			if (dir->pipe == NULL &&
			    (dir->pipe = sf_pipepool_get(sp_pipes(l))) == NULL) {
				sp_no_pipe(l, x, errno);
				dir->mode = SP_BUF_BURST;
				return sp_pump(l, x, d);
			}
			n = sp_splice(src, dir->pipe->wfd, dir->pipe->cap - dir->inpipe);
			if (n > 0) {
				dir->inpipe += (uint32_t)n;
				budget = (uint32_t)n >= budget ? 0 : budget - (uint32_t)n;
			} else if (n == 0) {
				sf_conn_eof(&x->c, d);
			} else if (n == -EAGAIN) {
				/*
				 * Conclusive only with an empty pipe; otherwise the pipe
				 * may be out of slots: flush, then read again.
				 */
				src_dry = dir->inpipe == 0;
			} else if (n == -EINVAL && dir->inpipe == 0) {
				sp_release_pipe(l, dir);
				dir->mode = SP_BUF;
				return sp_pump(l, x, d);
			} else {
				x->err_side = d;
				return (int)n;
			}
		}
		if (dir->inpipe > 0) {
			n = sp_flush(x, dir, d, dst);
			if (n == -EAGAIN) {
				/* Bytes held: no mode change, but a big burst ends the streak. */
				sp_streak(dir, 0, RX_BUDGET - budget);
				return RX_WAIT; /* the destination's EPOLLOUT resumes us */
			}
			if (n < 0) {
				x->err_side = !d;
				return (int)n;
			}
			if (dir->inpipe > 0)
				continue; /* partial write: the next one tells why */
		}
		/* Pipe empty here. */
		if ((x->c.flags & SF_CONN_EOF(d)) || src_dry)
			break;
		if (budget == 0) {
			sp_streak(dir, 0, RX_BUDGET); /* a whole budget: not small */
			dir->resumed = 1;
			return RX_MORE; /* empty: the reactor gives the pipe back */
		}
	}
	sp_release_pipe(l, dir);
	sp_streak(dir, fresh && !resumed, RX_BUDGET - budget);
	return RX_WAIT;
}

static int sp_empty(const struct rx_conn *x, int d)
{
	/* rx_priv takes a loop only for dir_size: splice's is known here. */
	const struct sp_dir *sd = (const struct sp_dir *)(const void *)x->priv + d;

	return sf_rx_buf_empty(x, d) && sd->inpipe == 0;
}

static void sp_release(struct rx_loop *l, struct rx_conn *x, int d)
{
	sf_rx_buf_release(l, x, d);
	sp_release_pipe(l, sp_dir(l, x, d));
}

/*
 * The worker's pipe pool, its cap derived from the limits as they are
 * at start (sf_pipepool_cap): the pipe size and the worker count are
 * fixed until a restart, and sockfwd raised RLIMIT_NOFILE before.
 */
static int sp_init(struct rx_loop *l)
{
	struct sf_pipepool *pp = malloc(sizeof(*pp));
	struct sf_pipe_limits lim;
	unsigned cap;

	if (pp == NULL)
		return -ENOMEM;
	sf_pipe_limits_read(&lim);
	cap = sf_pipepool_cap(&lim, l->w->pipe_size, l->w->gen->nworkers);
	sf_pipepool_init(pp, l->w->pipe_size, cap < PIPE_IDLE ? cap : PIPE_IDLE, cap);
	if (l->w->id == 0)
		sf_log_verbose("splice: at most %u pipes of %zu bytes per worker "
			       "(RLIMIT_NOFILE %llu, fs.pipe-user-pages-soft %llu, %u worker%s)",
			       cap, l->w->pipe_size, (unsigned long long)lim.nofile,
			       (unsigned long long)lim.soft_pages, l->w->gen->nworkers,
			       l->w->gen->nworkers == 1 ? "" : "s");
	l->priv = pp;
	return 0;
}

static void sp_destroy(struct rx_loop *l)
{
	sf_pipepool_destroy(sp_pipes(l));
	free(l->priv);
	l->priv = NULL;
}

static const struct rx_xfer sp_xfer = {
	.dir_size = sizeof(struct sp_dir),
	.init = sp_init,
	.destroy = sp_destroy,
	.pump = sp_pump,
	.empty = sp_empty,
	.release = sp_release,
};

static int sp_run(struct sf_worker *w) { return sf_reactor_run(w, &sp_xfer); }

const struct sf_engine sf_engine_splice = {
	.name = "splice",
	.probe = NULL,
	.run = sp_run,
	.stop = sf_worker_stop,
	.udp = 1,
	.pairs = 1,
};
