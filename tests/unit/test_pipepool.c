/*
 * pipepool.h: borrowing, reusing, capping and closing pipes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
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
