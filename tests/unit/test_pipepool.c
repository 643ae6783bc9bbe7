/*
 * pipepool.h: borrowing, reusing, capping and closing pipes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockfwd/pipepool.h"

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static void assert_closed(int fd)
{
	errno = 0;
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "fd %d still open", fd);
	cr_assert_eq(errno, EBADF);
}

static void assert_usable_pipe(const struct sf_pipe *p)
{
	int avail = -1;
	char c = 0;

	cr_assert_not_null(p);
	cr_assert(p->rfd >= 0 && p->wfd >= 0 && p->rfd != p->wfd, "fds %d %d", p->rfd, p->wfd);
	cr_assert(fd_is_open(p->rfd) && fd_is_open(p->wfd));
	cr_assert_eq((int)p->cap, fcntl(p->rfd, F_GETPIPE_SZ), "cap %u, kernel says %d", p->cap,
		     fcntl(p->rfd, F_GETPIPE_SZ));
	cr_assert_eq(ioctl(p->rfd, FIONREAD, &avail), 0);
	cr_assert_eq(avail, 0, "pipe from the pool is not empty");
	/* rfd is the read end, wfd the write end. */
	cr_assert_eq(write(p->wfd, "z", 1), 1, "write end: %s", strerror(errno));
	cr_assert_eq(read(p->rfd, &c, 1), 1, "read end: %s", strerror(errno));
	cr_assert_eq(c, 'z');
}

static size_t pipe_max_size(void)
{
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
	unsigned long v = 1048576;

	if (f != NULL) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 1048576;
		fclose(f);
	}
	return v;
}

Test(pipepool, get_returns_empty_pipe_of_asked_size)
{
	struct sf_pipepool pp;
	struct sf_pipe *p;
	size_t want = 256 * 1024;

	sf_pipepool_init(&pp, want, 4, 8);
	p = sf_pipepool_get(&pp);
	assert_usable_pipe(p);
	if (geteuid() == 0 || want <= pipe_max_size())
		cr_assert_geq(p->cap, want, "cap %u < %zu", p->cap, want);
	cr_assert_eq(pp.nlive, 1);
	cr_assert_eq(pp.nfree, 0);
	sf_pipepool_put(&pp, p);
	cr_assert_eq(pp.nlive, 0);
	cr_assert_eq(pp.nfree, 1);
	sf_pipepool_destroy(&pp);
}

Test(pipepool, put_then_get_reuses_fds)
{
	struct sf_pipepool pp;
	struct sf_pipe *p;
	int rfd, wfd;

	sf_pipepool_init(&pp, 65536, 4, 8);
	p = sf_pipepool_get(&pp);
	assert_usable_pipe(p);
	rfd = p->rfd;
	wfd = p->wfd;
	sf_pipepool_put(&pp, p);
	cr_assert(fd_is_open(rfd) && fd_is_open(wfd), "free pipe closed");
	p = sf_pipepool_get(&pp);
	cr_assert_not_null(p);
	cr_assert_eq(p->rfd, rfd, "free pipe not reused");
	cr_assert_eq(p->wfd, wfd);
	cr_assert_eq(pp.nfree, 0);
	cr_assert_eq(pp.nlive, 1);
	assert_usable_pipe(p);
	sf_pipepool_put(&pp, p);
	sf_pipepool_destroy(&pp);
}

Test(pipepool, max_idle_closes_the_excess)
{
	struct sf_pipepool pp;
	struct sf_pipe *p[5];
	int fds[5][2];
	int open = 0;

	sf_pipepool_init(&pp, 65536, 2, 8);
	for (int i = 0; i < 5; i++) {
		p[i] = sf_pipepool_get(&pp);
		cr_assert_not_null(p[i], "get %d: %s", i, strerror(errno));
		fds[i][0] = p[i]->rfd;
		fds[i][1] = p[i]->wfd;
	}
	cr_assert_eq(pp.nlive, 5);
	for (int i = 0; i < 5; i++) {
		sf_pipepool_put(&pp, p[i]);
		cr_assert_leq(pp.nfree, 2, "kept %u free pipes, max_idle 2", pp.nfree);
	}
	cr_assert_eq(pp.nfree, 2);
	cr_assert_eq(pp.nlive, 0);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(fd_is_open(fds[i][0]), fd_is_open(fds[i][1]), "pipe %d half closed",
			     i);
		if (fd_is_open(fds[i][0]))
			open++;
		else
			assert_closed(fds[i][1]);
	}
	cr_assert_eq(open, 2, "%d pipes left open, want max_idle (2)", open);
	sf_pipepool_destroy(&pp);
	for (int i = 0; i < 5; i++) {
		assert_closed(fds[i][0]);
		assert_closed(fds[i][1]);
	}
}

Test(pipepool, max_live_then_enobufs)
{
	struct sf_pipepool pp;
	struct sf_pipe *a, *b, *c;

	sf_pipepool_init(&pp, 65536, 4, 2);
	a = sf_pipepool_get(&pp);
	b = sf_pipepool_get(&pp);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	errno = 0;
	c = sf_pipepool_get(&pp);
	cr_assert_null(c, "lent more than max_live pipes");
	cr_assert_eq(errno, ENOBUFS, "errno %d (%s), want ENOBUFS", errno, strerror(errno));
	cr_assert_eq(pp.nlive, 2);

	/* Giving one back makes room again, from the free list. */
	sf_pipepool_put(&pp, a);
	c = sf_pipepool_get(&pp);
	cr_assert_eq(c, a);
	errno = 0;
	cr_assert_null(sf_pipepool_get(&pp));
	cr_assert_eq(errno, ENOBUFS);

	/* A discarded pipe is no longer lent either. */
	sf_pipepool_discard(&pp, b);
	b = sf_pipepool_get(&pp);
	assert_usable_pipe(b);
	sf_pipepool_put(&pp, b);
	sf_pipepool_put(&pp, c);
	cr_assert_eq(pp.nlive, 0);
	sf_pipepool_destroy(&pp);
}

Test(pipepool, discard_closes_both_fds)
{
	struct sf_pipepool pp;
	struct sf_pipe *p;
	int rfd, wfd;

	sf_pipepool_init(&pp, 65536, 4, 8);
	p = sf_pipepool_get(&pp);
	cr_assert_not_null(p);
	rfd = p->rfd;
	wfd = p->wfd;
	cr_assert_eq(write(p->wfd, "dirty", 5), 5);
	sf_pipepool_discard(&pp, p);
	assert_closed(rfd);
	assert_closed(wfd);
	cr_assert_eq(pp.nlive, 0);
	cr_assert_eq(pp.nfree, 0, "a dirty pipe went to the free list");
	sf_pipepool_destroy(&pp);
}

Test(pipepool, destroy_closes_free_pipes)
{
	struct sf_pipepool pp;
	struct sf_pipe *p[3];
	int fds[3][2];

	sf_pipepool_init(&pp, 65536, 4, 8);
	for (int i = 0; i < 3; i++) {
		p[i] = sf_pipepool_get(&pp);
		cr_assert_not_null(p[i]);
		fds[i][0] = p[i]->rfd;
		fds[i][1] = p[i]->wfd;
	}
	for (int i = 0; i < 3; i++)
		sf_pipepool_put(&pp, p[i]);
	cr_assert_eq(pp.nfree, 3);
	sf_pipepool_destroy(&pp);
	for (int i = 0; i < 3; i++) {
		assert_closed(fds[i][0]);
		assert_closed(fds[i][1]);
	}
}

Test(pipepool, distinct_pipes_while_lent)
{
	struct sf_pipepool pp;
	struct sf_pipe *a, *b;

	sf_pipepool_init(&pp, 65536, 4, 8);
	a = sf_pipepool_get(&pp);
	b = sf_pipepool_get(&pp);
	assert_usable_pipe(a);
	assert_usable_pipe(b);
	cr_assert_neq(a, b);
	cr_assert(a->rfd != b->rfd && a->rfd != b->wfd && a->wfd != b->rfd && a->wfd != b->wfd);
	sf_pipepool_put(&pp, a);
	sf_pipepool_put(&pp, b);
	sf_pipepool_destroy(&pp);
}

/* sf_pipepool_cap with 4 KiB pages. */
static unsigned cap_of(uint64_t nofile, uint64_t soft, size_t size, unsigned workers)
{
	struct sf_pipe_limits lim = { .nofile = nofile, .soft_pages = soft, .page_size = 4096 };

	return sf_pipepool_cap(&lim, size, workers);
}

/*
 * The cap is the least of RLIMIT_NOFILE / 10 and pipe-user-pages-soft
 * over the pages one pipe is charged (its size in pages rounded up to a
 * power of two, at least 16), split between the workers.
 */
Test(pipepool, cap_descriptors_bound)
{
	/* 96 / 10 = 9, while 16384 pages allow 256 pipes of 256 KiB. */
	cr_assert_eq(cap_of(96, 16384, 256 * 1024, 1), 9);
	/* A fifth of the descriptors, two per pipe: 2C + 2(C/4) = F. */
	cr_assert_eq(cap_of(20000, 0, 256 * 1024, 1), 2000);
	cr_assert_eq(cap_of(20000, 0, 256 * 1024, 2), 1000);
	cr_assert_eq(cap_of(1048576, 0, 256 * 1024, 32), 3276);
	cr_assert_eq(cap_of(9, 16384, 65536, 1), 0, "fewer than 10 descriptors: no pipe");
}

Test(pipepool, cap_pipe_pages_bound)
{
	/* 16384 pages (64 MiB) / 64 pages = 256 pipes of 256 KiB, shared by the workers. */
	cr_assert_eq(cap_of(20000, 16384, 256 * 1024, 1), 256);
	cr_assert_eq(cap_of(20000, 16384, 256 * 1024, 2), 128);
	cr_assert_eq(cap_of(20000, 16384, 256 * 1024, 3), 85);
	/* 1 MiB pipes: 256 pages each. */
	cr_assert_eq(cap_of(1048576, 16384, 1024 * 1024, 1), 64);
	/* 300 KiB is 75 pages, charged as 128. */
	cr_assert_eq(cap_of(1048576, 16384, 300 * 1024, 1), 128);
	/* A 4 KiB pipe is created with 16 pages before it shrinks: charged 16. */
	cr_assert_eq(cap_of(1048576, 16384, 4096, 1), 1024);
	/* 64 KiB pages: a 256 KiB pipe is 4 pages, still charged the 16 it starts with. */
	{
		struct sf_pipe_limits lim = { .nofile = 1048576,
					      .soft_pages = 16384,
					      .page_size = 65536 };

		cr_assert_eq(sf_pipepool_cap(&lim, 256 * 1024, 1), 1024);
	}
}

Test(pipepool, cap_unlimited_and_workers)
{
	/* Neither limit (RLIM_INFINITY, pipe-user-pages-soft 0): the ceiling. */
	cr_assert_eq(cap_of(0, 0, 256 * 1024, 1), SF_PIPE_LIVE_MAX);
	cr_assert_eq(cap_of(0, 16384, 256 * 1024, 4), 64);
	/* More workers than pipes allowed: none each (buffers only), never more than the total. */
	cr_assert_eq(cap_of(96, 16384, 256 * 1024, 16), 0);
	/* 0 workers is taken as one. */
	cr_assert_eq(cap_of(96, 16384, 256 * 1024, 0), 9);
}

/* CapEff of this process, from /proc/self/status (0 when unreadable). */
static unsigned long long cap_eff(void)
{
	char line[128];
	unsigned long long eff = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (f != NULL)
		fclose(f);
	return eff;
}

/*
 * The limits as the kernel applies them to this process: the page budget
 * is 0 (none) for a process with CAP_SYS_RESOURCE or CAP_SYS_ADMIN, as
 * the kernel exempts it; otherwise it is the sysctl.
 */
Test(pipepool, limits_read_this_process)
{
	struct sf_pipe_limits lim;
	struct rlimit rl;
	unsigned long long soft = 0;
	FILE *f = fopen("/proc/sys/fs/pipe-user-pages-soft", "r");

	if (f != NULL) {
		if (fscanf(f, "%llu", &soft) != 1)
			soft = 0;
		fclose(f);
	}
	if (cap_eff() & (1ull << 24 | 1ull << 21)) /* CAP_SYS_RESOURCE, CAP_SYS_ADMIN */
		soft = 0;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	sf_pipe_limits_read(&lim);
	cr_assert_eq(lim.nofile, rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur);
	cr_assert_eq(lim.soft_pages, soft);
	cr_assert_eq(lim.page_size, (size_t)sysconf(_SC_PAGESIZE));
}

/* A cap of 0 lends nothing and opens nothing. */
Test(pipepool, cap_zero_lends_none)
{
	struct sf_pipepool pp;
	int before = -1, after = -1;

	before = dup(0);
	close(before);
	sf_pipepool_init(&pp, 65536, 0, 0);
	errno = 0;
	cr_assert_null(sf_pipepool_get(&pp));
	cr_assert_eq(errno, ENOBUFS);
	cr_assert_eq(pp.nlive, 0);
	after = dup(0);
	close(after);
	cr_assert_eq(before, after, "a descriptor was opened");
	sf_pipepool_destroy(&pp);
}
