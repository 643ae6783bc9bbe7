/*
 * The io_uring engine's provided buffer ring, and the per-direction queues
 * of buffers received and not yet sent (URING=1 only).
 *
 * The kernel picks a buffer from the ring for each receive completion and
 * names it by id (bid). Until it is handed back with sf_ubufs_put, that
 * buffer is ours: queued in arrival order, sent from its head, and given
 * back once every byte of it is sent or its connection dies. nout counts
 * the buffers out of the ring, so a leak shows.
 */
#ifndef SOCKFWD_URING_BUFS_H
#define SOCKFWD_URING_BUFS_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

struct sf_ubuf {
	int next;     /* next bid in its queue, -1 at the tail */
	uint32_t len; /* bytes received into it */
};

struct sf_ubufs {
	struct io_uring_buf_ring *br;
	char *mem;
	size_t bufsize;
	unsigned nbufs; /* a power of two */
	unsigned short bgid;
	size_t br_bytes, mem_bytes;
	struct sf_ubuf *bufs; /* by bid */
	unsigned nout;	      /* buffers out of the ring */
};

struct sf_ubufq {
	int head, tail; /* bids, -1 when empty */
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

/* Hand back bid, taken out with sf_ubufq_push. */
void sf_ubufs_put(struct sf_ubufs *b, int bid);

/* A completion brought bid for a connection that is gone: hand it back. */
void sf_ubufs_drop(struct sf_ubufs *b, int bid);

void sf_ubufq_init(struct sf_ubufq *q);

/* A receive completed into bid with len bytes: append it to q. */
void sf_ubufq_push(struct sf_ubufs *b, struct sf_ubufq *q, int bid, uint32_t len);

/*
 * Where the next send starts: the unsent part of the head. Returns its
 * bid, or -1 when q is empty.
 */
int sf_ubufq_peek(const struct sf_ubufs *b, const struct sf_ubufq *q, char **p, uint32_t *len);

/*
 * n bytes of the head were sent. Returns 1 when that finished the head
 * (it went back to the kernel), else 0.
 */
int sf_ubufq_sent(struct sf_ubufs *b, struct sf_ubufq *q, uint32_t n);

/*
 * Give every queued buffer back, but the head when keep_head: a send in
 * flight still reads it, and a buffer reused under it would leak another
 * connection's bytes to this peer.
 */
void sf_ubufq_release(struct sf_ubufs *b, struct sf_ubufq *q, int keep_head);

#endif
