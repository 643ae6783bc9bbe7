/*
 * The splice pipe pool. Pipes are lent only while bytes are in flight;
 * an idle connection holds none (HAProxy's src/pipe.c does the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "sockfwd/log.h"
#include "sockfwd/pipepool.h"

void sf_pipepool_init(struct sf_pipepool *pp, size_t size, unsigned max_idle, unsigned max_live)
{
	pp->free = NULL;
	pp->size = size;
	pp->nfree = 0;
	pp->max_idle = max_idle;
	pp->nlive = 0;
	pp->max_live = max_live;
	pp->size_warned = 0;
}

static void pipe_close(struct sf_pipe *p)
{
	close(p->rfd);
	close(p->wfd);
	free(p);
}

void sf_pipepool_destroy(struct sf_pipepool *pp)
{
	struct sf_pipe *p;

	while ((p = pp->free) != NULL) {
		pp->free = p->next;
		pipe_close(p);
	}
	pp->nfree = 0;
}

/*
 * Create a pipe of pp->size. Past the per-user pipe-user-pages-soft limit
 * the kernel refuses F_SETPIPE_SZ (EPERM) and hands out small pipes;
 * those still work, so keep what was granted and warn once.
 */
static struct sf_pipe *pipe_new(struct sf_pipepool *pp)
{
	struct sf_pipe *p;
	int fds[2], cap;

	p = malloc(sizeof(*p));
	if (p == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		int saved = errno;

		free(p);
		errno = saved;
		return NULL;
	}
	p->rfd = fds[0];
	p->wfd = fds[1];
	if (fcntl(p->wfd, F_SETPIPE_SZ, (int)pp->size) < 0 && !pp->size_warned) {
		pp->size_warned = 1;
		sf_log_warn("cannot set pipe size to %zu bytes (fs.pipe-max-size or "
			    "fs.pipe-user-pages-soft); using smaller pipes",
			    pp->size);
	}
	cap = fcntl(p->wfd, F_GETPIPE_SZ);
	p->cap = cap > 0 ? (uint32_t)cap : 4096;
	return p;
}

struct sf_pipe *sf_pipepool_get(struct sf_pipepool *pp)
{
	struct sf_pipe *p = pp->free;

	if (p != NULL) {
		pp->free = p->next;
		pp->nfree--;
	} else {
		if (pp->nlive >= pp->max_live) {
			errno = ENOBUFS;
			return NULL;
		}
		p = pipe_new(pp);
		if (p == NULL)
			return NULL;
	}
	p->next = NULL;
	pp->nlive++;
	return p;
}

void sf_pipepool_put(struct sf_pipepool *pp, struct sf_pipe *p)
{
	pp->nlive--;
	if (pp->nfree >= pp->max_idle) {
		pipe_close(p);
		return;
	}
	p->next = pp->free;
	pp->free = p;
	pp->nfree++;
}

void sf_pipepool_discard(struct sf_pipepool *pp, struct sf_pipe *p)
{
	pp->nlive--;
	pipe_close(p);
}
