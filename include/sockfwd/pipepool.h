/*
 * Pipes for splice, borrowed from a per-worker pool only while bytes are
 * in flight (as HAProxy's src/pipe.c). A pipe that still holds bytes when
 * its connection dies is "dirty" and is closed, never reused.
 */
#ifndef SOCKFWD_PIPEPOOL_H
#define SOCKFWD_PIPEPOOL_H

#include <stddef.h>
#include <stdint.h>

struct sf_pipe {
	struct sf_pipe *next;
	int rfd, wfd;
	uint32_t cap; /* capacity the kernel granted (F_GETPIPE_SZ) */
};

struct sf_pipepool {
	struct sf_pipe *free;
	size_t size; /* capacity asked for with F_SETPIPE_SZ */
	unsigned nfree;
	unsigned max_idle; /* free pipes kept open */
	unsigned nlive;	   /* pipes lent out */
	unsigned max_live; /* lent at most, then callers fall back to buffers */
	int size_warned;
};

void sf_pipepool_init(struct sf_pipepool *pp, size_t size, unsigned max_idle, unsigned max_live);
/* Close every free pipe. */
void sf_pipepool_destroy(struct sf_pipepool *pp);
/*
 * An empty pipe, or NULL with errno set: EMFILE/ENFILE when descriptors
 * run out, ENOBUFS when max_live pipes are already lent, ENOMEM.
 */
struct sf_pipe *sf_pipepool_get(struct sf_pipepool *pp);
/* Give back an empty pipe. */
void sf_pipepool_put(struct sf_pipepool *pp, struct sf_pipe *p);
/* Close a pipe that may still hold bytes. */
void sf_pipepool_discard(struct sf_pipepool *pp, struct sf_pipe *p);

#endif
