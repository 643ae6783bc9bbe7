/*
 * The io_uring engine's provided buffers: a pool of buffer groups, and
 * the per-direction queues of buffers received and not yet sent (URING=1
 * only).
 *
 * A group is one provided buffer ring registered under its own group id
 * (bgid). A receive names a group; the kernel picks a buffer from that
 * ring for each completion and names it by id (bid). Until it is handed
 * back, that buffer is ours: queued in arrival order, sent from its head,
 * and given back once every byte of it is sent or its connection dies.
 * A queued buffer is named by a ref, its group's slot and its bid, since
 * one direction may receive from several groups over its life.
 *
 * The pool starts with one group and grows a group at a time while
 * receives run out of buffers (-ENOBUFS) or the free buffers run low, up
 * to a cap; once the buffers out fit in one group less with room to
 * spare, it retires its highest group: unregistered at once (receives
 * armed on it then end with -ENOBUFS and move to a live group), its
 * memory unmapped once every buffer of it is back and no completion can
 * still name it. Group 0 is never retired.
 *
 * Free buffers are not all in the rings: the rings of all groups hold
 * circ less the buffers out, at least vis_min (while there are free
 * ones); the rest wait on their group's stash and go in at a tick. The
 * kernel takes buffers only from the rings, so what it can take before
 * the owner next looks stays what one group of circ gives, however far
 * the pool has grown. By default circ and vis_min are nbufs: one group
 * behaves as if there were no stash.
 */
#ifndef SOCKFWD_URING_BUFS_H
#define SOCKFWD_URING_BUFS_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

#define SF_UBUF_BID_BITS 15  /* bids below 32768: a ref is slot << 15 | bid */
#define SF_UBP_SLOTS	 64  /* groups a pool can have at most */
#define SF_UBP_SHRINK_MS 250 /* at most one group retired per period */

struct sf_ubuf {
	int next;     /* next ref in its queue, -1 at the tail */
	uint32_t len; /* bytes received into it */
};

enum sf_ubg_state { SF_UBG_FREE, SF_UBG_LIVE, SF_UBG_RETIRED };

/* One group: a registered buffer ring of nbufs buffers of bufsize. */
struct sf_ubufs {
	struct io_uring_buf_ring *br;
	char *mem;
	size_t bufsize;
	unsigned nbufs; /* a power of two */
	unsigned short bgid;
	size_t br_bytes, mem_bytes;
	struct sf_ubuf *bufs; /* by bid */
	unsigned nout;	      /* buffers out of the ring */
	/*
	 * Buffers back home but held out of the ring (see the pool's circ),
	 * as a stack of bids: the last back goes out first, so the buffers
	 * that circulate are the same few and the rest stay untouched.
	 */
	unsigned short *stash;
	unsigned nstash;
	struct sf_ubpool *pool; /* its pool, NULL alone */
	/* Pool bookkeeping. */
	enum sf_ubg_state state;
	unsigned promised;     /* receives armed on it in this tick */
	uint64_t retired_tick; /* the pool's tick when it was unregistered */
};

struct sf_ubpool {
	struct io_uring *ring;
	struct sf_ubufs g[SF_UBP_SLOTS]; /* group slot s has bgid bgid0 + s */
	unsigned nbufs;			 /* per group */
	size_t bufsize;
	unsigned max;  /* groups at most, 1..SF_UBP_SLOTS */
	unsigned live; /* groups registered */
	/*
	 * Free buffers in the rings (all groups together) at most: circ less
	 * those out, but at least vis_min while any are free. See ubp_room.
	 */
	unsigned circ, vis_min;
	unsigned short bgid0;
	uint64_t tick;		 /* sf_ubpool_tick calls */
	uint64_t last_change_ms; /* last grow or retire */
	uint64_t calm_since_ms;	 /* when the plan began asking for fewer groups */
	int calm;		 /* it has asked so at every tick since */
	/* Totals, for the stats line and metrics. */
	uint64_t starved; /* receives that had to wait for a buffer (counted by the engine) */
	uint64_t grown, retired;
	size_t bytes; /* buffer and ring memory mapped now, retired groups' too */
};

struct sf_ubufq {
	int head, tail; /* refs, -1 when empty */
	unsigned n;	/* buffers queued */
	uint32_t off;	/* bytes of the head already sent */
};

/*
 * Register nbufs buffers of bufsize as group bgid of ring, as liburing
 * >= 2.4's io_uring_setup_buf_ring does (page-aligned ring memory and
 * io_uring_register_buf_ring, since Debian 12's 2.3 lacks the helper).
 * Returns 0 or -errno.
 */
int sf_ubufs_init(struct sf_ubufs *b, struct io_uring *ring, unsigned nbufs, size_t bufsize,
		  unsigned short bgid);
/* Free the memory; the ring must have been exited or the group unregistered. */
void sf_ubufs_destroy(struct sf_ubufs *b);

static inline char *sf_ubufs_addr(const struct sf_ubufs *b, int bid)
{
	return b->mem + (size_t)bid * b->bufsize;
}

/* Hand bid back to its ring (a retired group keeps it), counted out before. */
void sf_ubufs_put(struct sf_ubufs *b, int bid);

/* A completion brought bid for a connection that is gone: hand it back. */
void sf_ubufs_drop(struct sf_ubufs *b, int bid);

/*
 * A pool of groups with nbufs buffers of bufsize each (nbufs a power of
 * two), at most max groups, group ids from bgid0; starts with one group.
 * Returns 0 or -errno.
 */
int sf_ubpool_init(struct sf_ubpool *p, struct io_uring *ring, unsigned nbufs, size_t bufsize,
		   unsigned max, unsigned short bgid0);
/* Free every group; the ring must have been exited first. */
void sf_ubpool_destroy(struct sf_ubpool *p);

/*
 * The group for a receive to be armed: the live one with the most free
 * buffers not yet promised to a receive armed in this tick (one is
 * promised to it). Returns its bgid; *avail is what it had free before.
 */
unsigned short sf_ubpool_pick(struct sf_ubpool *p, unsigned *avail);

/* The most free buffers any live group has, less those promised in this tick. */
unsigned sf_ubpool_avail(const struct sf_ubpool *p);

/* Free buffers held out of the rings (circ): a tick puts them in when there is room. */
unsigned sf_ubpool_spare(const struct sf_ubpool *p);

/* Whether bgid is a live group of p (receives armed on it can get buffers). */
int sf_ubpool_live(const struct sf_ubpool *p, unsigned short bgid);

/*
 * The ref of buffer bid that a receive armed on group bgid brought, or
 * -EINVAL when bgid names no group with memory.
 */
int sf_ubpool_ref(const struct sf_ubpool *p, unsigned short bgid, int bid);

static inline struct sf_ubufs *sf_ubpool_group(struct sf_ubpool *p, int ref)
{
	return &p->g[(unsigned)ref >> SF_UBUF_BID_BITS];
}

static inline int sf_ubpool_bid(int ref) { return ref & ((1 << SF_UBUF_BID_BITS) - 1); }

/* A completion brought ref for a connection that is gone: hand it back. */
void sf_ubpool_drop(struct sf_ubpool *p, int ref);

/* Buffers out of every group (queued, not yet sent). */
unsigned sf_ubpool_nout(const struct sf_ubpool *p);

/*
 * How many live groups the load calls for (pure, for tests): out buffers
 * held in live groups of nbufs each, nstarved connections waiting for a
 * buffer, live groups now, at most max. One more group (to max) while
 * anyone waits or fewer than nbufs / 8 stay free; one fewer (never below
 * one) once out fits in live - 1 groups at half their size and nobody
 * waits; else live. The gap between the two keeps a steady load from
 * flapping.
 */
unsigned sf_ubpool_plan(unsigned live, unsigned max, unsigned nbufs, unsigned out,
			unsigned nstarved);

/*
 * Once per completion batch, after the batch: forget the promises, free
 * retired groups whose buffers are all back (quiet: the completion queue
 * is empty, so no completion can still name them), then act on
 * sf_ubpool_plan: grow at once, or retire the highest live group once
 * the plan has asked for fewer at every tick for SF_UBP_SHRINK_MS of
 * now_ms, at most one per SF_UBP_SHRINK_MS and not within that time of
 * a growth (a lull between bursts does not unmap what the next needs);
 * last, move stashed buffers into the rings while there is room (the
 * lowest groups first, so the highest drain and can retire).
 * Returns 1 when a group was added, 0 when not, -errno when adding one
 * failed (the pool is still usable).
 */
int sf_ubpool_tick(struct sf_ubpool *p, unsigned nstarved, uint64_t now_ms, int quiet);

/* Whether a later tick may still shrink or free something (arm a timer). */
int sf_ubpool_pending(const struct sf_ubpool *p);

void sf_ubufq_init(struct sf_ubufq *q);

/* A receive completed into ref with len bytes: append it to q. */
void sf_ubufq_push(struct sf_ubpool *p, struct sf_ubufq *q, int ref, uint32_t len);

/*
 * Where the next send starts: the unsent part of the head. Returns its
 * ref, or -1 when q is empty.
 */
int sf_ubufq_peek(struct sf_ubpool *p, const struct sf_ubufq *q, char **ptr, uint32_t *len);

/*
 * n bytes of the head were sent. Returns 1 when that finished the head
 * (it went back to its group), else 0.
 */
int sf_ubufq_sent(struct sf_ubpool *p, struct sf_ubufq *q, uint32_t n);

/*
 * Give every queued buffer back, but the head when keep_head: a send in
 * flight still reads it, and a buffer reused under it would leak another
 * connection's bytes to this peer.
 */
void sf_ubufq_release(struct sf_ubpool *p, struct sf_ubufq *q, int keep_head);

#endif
