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
	int short_warned; /* the caller warned that no pipe could be had */
};

/* What the live-pipe cap is derived from (sf_pipepool_cap). */
struct sf_pipe_limits {
	uint64_t nofile;     /* RLIMIT_NOFILE soft limit; 0: unlimited */
	uint64_t soft_pages; /* fs.pipe-user-pages-soft; 0: no limit, or exempt (root) */
	size_t page_size;
};

/* A pipe costs the kernel's default 16 pages when created, before F_SETPIPE_SZ. */
#define SF_PIPE_DEF_PAGES 16u
/* Pipes lent at most per worker, whatever the limits allow. */
#define SF_PIPE_LIVE_MAX (1u << 20)

/*
 * The limits of this process: RLIMIT_NOFILE and
 * /proc/sys/fs/pipe-user-pages-soft (0 when it cannot be read, or when
 * the kernel does not apply it to this process: CAP_SYS_RESOURCE or
 * CAP_SYS_ADMIN).
 */
void sf_pipe_limits_read(struct sf_pipe_limits *lim);

/*
 * Pipes of pipe_size one of nworkers workers may lend at once under
 * lim (the formula is above its definition). 0 means none: that
 * worker's splice directions always use buffers.
 */
unsigned sf_pipepool_cap(const struct sf_pipe_limits *lim, size_t pipe_size, unsigned nworkers);

void sf_pipepool_init(struct sf_pipepool *pp, size_t size, unsigned max_idle, unsigned max_live);
/* Close every free pipe. */
void sf_pipepool_destroy(struct sf_pipepool *pp);
/*
 * An empty pipe, or NULL with errno set: EMFILE/ENFILE when descriptors
 * run out, ENOBUFS when max_live pipes are already lent, ENOSPC when the
 * kernel would only grant a pipe shrunk below its default size (the
 * user is past fs.pipe-user-pages-soft), ENOMEM.
 */
struct sf_pipe *sf_pipepool_get(struct sf_pipepool *pp);
/* Give back an empty pipe. */
void sf_pipepool_put(struct sf_pipepool *pp, struct sf_pipe *p);
/* Close a pipe that may still hold bytes. */
void sf_pipepool_discard(struct sf_pipepool *pp, struct sf_pipe *p);

#endif
