/*
 * Userspace buffers for the epoll engine and for the splice engine's
 * fallback. A buffer is borrowed from its worker's pool while bytes are in
 * flight and given back once drained, so an idle connection holds none.
 */
#ifndef SOCKFWD_BUF_H
#define SOCKFWD_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct sf_buf {
	struct sf_buf *next; /* free list link */
	uint32_t cap;
	uint32_t off; /* first unsent byte */
	uint32_t len; /* bytes held, from off */
	char data[];
};

struct sf_bufpool {
	struct sf_buf *free;
	size_t size; /* capacity of every buffer */
	unsigned nfree;
	unsigned max_idle; /* free buffers kept; more are released */
	unsigned nlive;	   /* buffers lent out */
};

void sf_bufpool_init(struct sf_bufpool *bp, size_t size, unsigned max_idle);
/* Release every free buffer; lent ones must have been put back first. */
void sf_bufpool_destroy(struct sf_bufpool *bp);
/* An empty buffer, or NULL when memory is exhausted. */
struct sf_buf *sf_bufpool_get(struct sf_bufpool *bp);
/* Give back a buffer (any content is discarded). */
void sf_bufpool_put(struct sf_bufpool *bp, struct sf_buf *b);

static inline int sf_buf_empty(const struct sf_buf *b) { return b->len == 0; }
static inline int sf_buf_full(const struct sf_buf *b) { return b->off + b->len == b->cap; }

/*
 * Read once from fd into the free tail of b.
 * Returns bytes read (> 0), 0 at EOF, or -errno (-EAGAIN when empty).
 * Must not be called on a full buffer.
 */
ssize_t sf_buf_read(struct sf_buf *b, int fd);

/*
 * Send once from b to fd (MSG_NOSIGNAL). Returns bytes sent (> 0) or
 * -errno (-EAGAIN when the socket is full). Must not be called on an empty
 * buffer. The buffer rewinds to its start when it empties.
 */
ssize_t sf_buf_write(struct sf_buf *b, int fd);

#endif
