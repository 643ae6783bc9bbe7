/*
 * Provided buffer ring and send queues of the io_uring engine.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sockfwd/uring_bufs.h"

int sf_ubufs_init(struct sf_ubufs *b, struct io_uring *ring, unsigned nbufs, size_t bufsize,
		  unsigned short bgid)
{
	struct io_uring_buf_reg reg;
	unsigned i;
	int rc;

	memset(b, 0, sizeof(*b));
	if (nbufs == 0 || (nbufs & (nbufs - 1)) != 0 || nbufs > 32768)
		return -EINVAL;
	b->nbufs = nbufs;
	b->bufsize = bufsize;
	b->bgid = bgid;
	b->bufs = calloc(nbufs, sizeof(*b->bufs));
	if (b->bufs == NULL)
		return -ENOMEM;
	b->br_bytes = nbufs * sizeof(struct io_uring_buf);
	b->br = mmap(NULL, b->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->br == MAP_FAILED) {
		rc = -errno;
		goto fail_bufs;
	}
	b->mem_bytes = (size_t)nbufs * bufsize;
	b->mem = mmap(NULL, b->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		      0);
	if (b->mem == MAP_FAILED) {
		rc = -errno;
		goto fail_br;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)b->br;
	reg.ring_entries = nbufs;
	reg.bgid = bgid;
	rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc < 0)
		goto fail_mem;
	io_uring_buf_ring_init(b->br);
	for (i = 0; i < nbufs; i++)
		io_uring_buf_ring_add(b->br, sf_ubufs_addr(b, (int)i), (unsigned)bufsize,
				      (unsigned short)i, io_uring_buf_ring_mask(nbufs), (int)i);
	io_uring_buf_ring_advance(b->br, (int)nbufs);
	return 0;
fail_mem:
	munmap(b->mem, b->mem_bytes);
fail_br:
	munmap(b->br, b->br_bytes);
fail_bufs:
	free(b->bufs);
	b->bufs = NULL;
	return rc;
}

void sf_ubufs_destroy(struct sf_ubufs *b)
{
	if (b->bufs == NULL)
		return;
	munmap(b->mem, b->mem_bytes);
	munmap(b->br, b->br_bytes);
	free(b->bufs);
	b->bufs = NULL;
}

void sf_ubufs_drop(struct sf_ubufs *b, int bid)
{
	io_uring_buf_ring_add(b->br, sf_ubufs_addr(b, bid), (unsigned)b->bufsize,
			      (unsigned short)bid, io_uring_buf_ring_mask(b->nbufs), 0);
	io_uring_buf_ring_advance(b->br, 1);
}

void sf_ubufs_put(struct sf_ubufs *b, int bid)
{
	sf_ubufs_drop(b, bid);
	b->nout--;
}

void sf_ubufq_init(struct sf_ubufq *q)
{
	q->head = q->tail = -1;
	q->n = 0;
	q->off = 0;
}

void sf_ubufq_push(struct sf_ubufs *b, struct sf_ubufq *q, int bid, uint32_t len)
{
	b->nout++;
	b->bufs[bid].len = len;
	b->bufs[bid].next = -1;
	if (q->head >= 0)
		b->bufs[q->tail].next = bid;
	else
		q->head = bid;
	q->tail = bid;
	q->n++;
}

int sf_ubufq_peek(const struct sf_ubufs *b, const struct sf_ubufq *q, char **p, uint32_t *len)
{
	if (q->head < 0)
		return -1;
	*p = sf_ubufs_addr(b, q->head) + q->off;
	*len = b->bufs[q->head].len - q->off;
	return q->head;
}

/* Unlink the head of q and give it back. */
static void ubufq_pop(struct sf_ubufs *b, struct sf_ubufq *q)
{
	int bid = q->head;

	q->head = b->bufs[bid].next;
	if (q->head < 0)
		q->tail = -1;
	q->n--;
	q->off = 0;
	sf_ubufs_put(b, bid);
}

int sf_ubufq_sent(struct sf_ubufs *b, struct sf_ubufq *q, uint32_t n)
{
	q->off += n;
	if (q->off < b->bufs[q->head].len)
		return 0;
	ubufq_pop(b, q);
	return 1;
}

void sf_ubufq_release(struct sf_ubufs *b, struct sf_ubufq *q, int keep_head)
{
	while (q->head >= 0 && !(keep_head && q->n == 1)) {
		if (keep_head) {
			/* Give back the second: the head stays for its send. */
			int bid = b->bufs[q->head].next;

			b->bufs[q->head].next = b->bufs[bid].next;
			if (q->tail == bid)
				q->tail = q->head;
			q->n--;
			sf_ubufs_put(b, bid);
		} else {
			ubufq_pop(b, q);
		}
	}
}
