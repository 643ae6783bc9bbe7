/*
 * Userspace buffers and their per-worker pool.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/buf.h"

void sf_bufpool_init(struct sf_bufpool *bp, size_t size, unsigned max_idle)
{
	bp->free = NULL;
	bp->size = size;
	bp->nfree = 0;
	bp->max_idle = max_idle;
	bp->nlive = 0;
}

void sf_bufpool_destroy(struct sf_bufpool *bp)
{
	struct sf_buf *b;

	while ((b = bp->free) != NULL) {
		bp->free = b->next;
		free(b);
	}
	bp->nfree = 0;
}

struct sf_buf *sf_bufpool_get(struct sf_bufpool *bp)
{
	struct sf_buf *b = bp->free;

	if (b != NULL) {
		bp->free = b->next;
		bp->nfree--;
	} else {
		b = malloc(sizeof(*b) + bp->size);
		if (b == NULL)
			return NULL;
		b->cap = (uint32_t)bp->size;
	}
	b->next = NULL;
	b->off = b->len = 0;
	bp->nlive++;
	return b;
}

void sf_bufpool_put(struct sf_bufpool *bp, struct sf_buf *b)
{
	bp->nlive--;
	if (bp->nfree >= bp->max_idle) {
		free(b);
		return;
	}
	b->next = bp->free;
	bp->free = b;
	bp->nfree++;
}

ssize_t sf_buf_read(struct sf_buf *b, int fd)
{
	uint32_t tail = b->off + b->len;
	ssize_t n;

	do
		n = recv(fd, b->data + tail, b->cap - tail, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	b->len += (uint32_t)n;
	return n;
}

ssize_t sf_buf_write(struct sf_buf *b, int fd)
{
	ssize_t n;

	do
		n = send(fd, b->data + b->off, b->len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	b->off += (uint32_t)n;
	b->len -= (uint32_t)n;
	if (b->len == 0)
		b->off = 0;
	return n;
}
