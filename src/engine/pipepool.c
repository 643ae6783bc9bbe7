/*
 * The splice pipe pool. Pipes are lent only while bytes are in flight;
 * an idle connection holds none (HAProxy's src/pipe.c does the same).
 */
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
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
	pp->short_warned = 0;
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
 * Create a pipe of pp->size. F_SETPIPE_SZ fails (EPERM) in two cases.
 * Beyond fs.pipe-max-size (unprivileged) the pipe keeps the kernel's
 * default size: it still works, so keep it and warn once. Past the
 * user's fs.pipe-user-pages-soft (other processes of the user may hold
 * pipes too) the kernel hands out pipes of two pages: splice through one
 * costs three calls per 8 KiB, more than a buffer copy, so close it and
 * fail with ENOSPC; the caller uses its buffer path.
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
	if (fcntl(p->wfd, F_SETPIPE_SZ, (int)pp->size) < 0) {
		long page = sysconf(_SC_PAGESIZE);
		size_t def = SF_PIPE_DEF_PAGES * (size_t)(page > 0 ? page : 4096);

		cap = fcntl(p->wfd, F_GETPIPE_SZ);
		if (cap < 0 || (size_t)cap < (pp->size < def ? pp->size : def)) {
			pipe_close(p);
			errno = ENOSPC;
			return NULL;
		}
		if (!pp->size_warned) {
			pp->size_warned = 1;
			sf_log_warnx("cannot set pipe size to %zu bytes (fs.pipe-max-size); "
				     "using %d-byte pipes",
				     pp->size, cap);
		}
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

/*
 * Whether the kernel exempts this process from fs.pipe-user-pages-soft:
 * it does for CAP_SYS_RESOURCE or CAP_SYS_ADMIN (pipe_is_unprivileged_user
 * in fs/pipe.c), so root's pipes keep their size and only the descriptor
 * bound applies. Read after the privilege drop (workers start after it).
 */
static int pipe_privileged(void)
{
	char line[128];
	unsigned long long eff = 0;
	int found = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = sscanf(line, "CapEff: %llx", &eff) == 1;
	fclose(f);
	return found && (eff & (1ull << CAP_SYS_RESOURCE | 1ull << CAP_SYS_ADMIN)) != 0;
}

void sf_pipe_limits_read(struct sf_pipe_limits *lim)
{
	struct rlimit rl;
	unsigned long long v = 0;
	long page = sysconf(_SC_PAGESIZE);
	FILE *f;

	lim->nofile = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		lim->nofile = rl.rlim_cur;
	lim->soft_pages = 0;
	if (!pipe_privileged() && (f = fopen("/proc/sys/fs/pipe-user-pages-soft", "re")) != NULL) {
		if (fscanf(f, "%llu", &v) == 1)
			lim->soft_pages = v;
		fclose(f);
	}
	lim->page_size = page > 0 ? (size_t)page : 4096;
}

/* Pages the kernel charges for a pipe of size: rounded up to a power of two. */
static uint64_t pipe_pages(size_t size, size_t page_size)
{
	uint64_t n = (size + page_size - 1) / page_size, p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/*
 * The live-pipe cap of one worker, the least of two bounds shared by
 * every worker of the process:
 *
 * - Descriptors: F = RLIMIT_NOFILE. A connection holds two sockets and a
 *   pipe two descriptors. As HAProxy's default maxpipes (maxconn / 4),
 *   allow one pipe for every four connections the limit could hold:
 *   2C + 2P = F with P = C / 4 gives P = F / 10. Pipes then never take
 *   more than a fifth of the descriptors, and accept is not the one to
 *   run out.
 * - Pipe memory: S = fs.pipe-user-pages-soft (0: no limit) is what the
 *   user may hold in pipe pages before the kernel shrinks new pipes to
 *   two pages. A pipe of pipe_size is charged its size in pages rounded
 *   up to a power of two, and at least the 16 pages every pipe starts
 *   with: P = S / max(pages, 16) (64 MiB by default: 256 pipes of
 *   256 KiB). As in the kernel, it does not bind a process with
 *   CAP_SYS_RESOURCE or CAP_SYS_ADMIN (sf_pipe_limits_read gives S = 0).
 *
 * The least of the two is split evenly between the workers.
 */
unsigned sf_pipepool_cap(const struct sf_pipe_limits *lim, size_t pipe_size, unsigned nworkers)
{
	uint64_t total = UINT64_MAX, pages;

	if (lim->nofile > 0)
		total = lim->nofile / 10;
	if (lim->soft_pages > 0) {
		pages = pipe_pages(pipe_size, lim->page_size ? lim->page_size : 4096);
		if (pages < SF_PIPE_DEF_PAGES)
			pages = SF_PIPE_DEF_PAGES;
		if (lim->soft_pages / pages < total)
			total = lim->soft_pages / pages;
	}
	total /= nworkers ? nworkers : 1;
	return total > SF_PIPE_LIVE_MAX ? SF_PIPE_LIVE_MAX : (unsigned)total;
}
