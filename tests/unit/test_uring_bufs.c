/*
 * The io_uring engine's buffer ring bookkeeping (URING=1 builds), on a
 * real ring: the kernel picks buffers for real receives, the queue keeps
 * their order, partial sends keep their offset, buffers go back to the
 * ring exactly once, and an exhausted ring recovers when one comes back.
 */
#ifdef SF_HAVE_URING

#include <criterion/criterion.h>
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/uring_bufs.h"

#define BGID 7

static struct io_uring ring;
static struct sf_ubufs bufs;
static int sp[2];

static void setup_n(unsigned nbufs, size_t size)
{
	int rc = io_uring_queue_init(16, &ring, 0);

	cr_assert_eq(rc, 0, "io_uring_queue_init: %s", strerror(-rc));
	rc = sf_ubufs_init(&bufs, &ring, nbufs, size, BGID);
	cr_assert_eq(rc, 0, "sf_ubufs_init: %s", strerror(-rc));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0, "socketpair");
}

static void teardown(void)
{
	close(sp[0]);
	close(sp[1]);
	io_uring_queue_exit(&ring);
	sf_ubufs_destroy(&bufs);
}

/*
 * Write s on one end, receive it on the other with a buffer the kernel
 * picks from group BGID. Returns the bid, or -errno (e.g. -ENOBUFS).
 */
static int recv_into_ring(const char *s)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int rc;

	cr_assert_eq(write(sp[0], s, strlen(s)), (ssize_t)strlen(s), "write");
	sqe = io_uring_get_sqe(&ring);
	cr_assert_not_null(sqe);
	io_uring_prep_recv(sqe, sp[1], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1, "submit");
	cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0, "wait_cqe");
	rc = cqe->res;
	if (rc >= 0) {
		cr_assert(cqe->flags & IORING_CQE_F_BUFFER, "no buffer selected");
		cr_assert_eq((size_t)rc, strlen(s), "received %d of %zu bytes", rc, strlen(s));
		rc = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	}
	io_uring_cqe_seen(&ring, cqe);
	return rc;
}

/* Drain what an exhausted receive left in the socket. */
static void drain(size_t n)
{
	char tmp[64];

	cr_assert(n <= sizeof(tmp));
	cr_assert_eq(read(sp[1], tmp, n), (ssize_t)n, "drain");
}

static void expect_head(struct sf_ubufq *q, const char *want)
{
	uint32_t len;
	char *p;
	int bid = sf_ubufq_peek(&bufs, q, &p, &len);

	cr_assert(bid >= 0, "queue empty, expected \"%s\"", want);
	cr_assert_eq(len, strlen(want), "head has %u bytes, expected %zu", len, strlen(want));
	cr_assert(memcmp(p, want, len) == 0, "head is \"%.*s\", expected \"%s\"", (int)len, p,
		  want);
}

Test(uring_bufs, init_rejects_bad_counts)
{
	struct io_uring r;

	cr_assert_eq(io_uring_queue_init(4, &r, 0), 0);
	cr_assert_eq(sf_ubufs_init(&bufs, &r, 3, 4096, 1), -EINVAL, "not a power of two");
	cr_assert_eq(sf_ubufs_init(&bufs, &r, 0, 4096, 1), -EINVAL, "zero buffers");
	io_uring_queue_exit(&r);
}

Test(uring_bufs, fifo_order_and_partial_sends, .fini = teardown)
{
	struct sf_ubufq q;
	int a, b;

	setup_n(8, 4096);
	sf_ubufq_init(&q);
	a = recv_into_ring("hello");
	b = recv_into_ring("world!");
	cr_assert(a >= 0 && b >= 0 && a != b, "bids %d %d", a, b);
	sf_ubufq_push(&bufs, &q, a, 5);
	sf_ubufq_push(&bufs, &q, b, 6);
	cr_assert_eq(bufs.nout, 2);
	cr_assert_eq(q.n, 2);

	expect_head(&q, "hello");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 2), 0, "head not finished after 2 of 5");
	expect_head(&q, "llo");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 3), 1, "head finished after 5 of 5");
	cr_assert_eq(bufs.nout, 1, "finished head went back");
	expect_head(&q, "world!");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 6), 1);
	cr_assert_eq(q.n, 0);
	cr_assert_eq(q.head, -1);
	cr_assert_eq(bufs.nout, 0, "every buffer back in the ring");
}

Test(uring_bufs, exhausted_ring_recovers, .fini = teardown)
{
	struct sf_ubufq q;
	int bid;

	setup_n(4, 1024);
	sf_ubufq_init(&q);
	for (int i = 0; i < 4; i++) {
		bid = recv_into_ring("x");
		cr_assert(bid >= 0, "receive %d: %s", i, strerror(-bid));
		sf_ubufq_push(&bufs, &q, bid, 1);
	}
	cr_assert_eq(recv_into_ring("y"), -ENOBUFS, "a fifth receive with 4 buffers out");
	drain(1);
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 1), 1);
	cr_assert_eq(bufs.nout, 3);
	bid = recv_into_ring("z");
	cr_assert(bid >= 0, "receive after a buffer came back: %s", strerror(-bid));
	sf_ubufq_push(&bufs, &q, bid, 1);
	sf_ubufq_release(&bufs, &q, 0);
	cr_assert_eq(bufs.nout, 0);
	cr_assert_eq(q.n, 0);
}

Test(uring_bufs, release_keeps_head_of_send_in_flight, .fini = teardown)
{
	struct sf_ubufq q;
	const char *msgs[] = { "one", "two", "three" };
	int bids[3];

	setup_n(8, 4096);
	sf_ubufq_init(&q);
	for (int i = 0; i < 3; i++) {
		bids[i] = recv_into_ring(msgs[i]);
		cr_assert(bids[i] >= 0);
		sf_ubufq_push(&bufs, &q, bids[i], (uint32_t)strlen(msgs[i]));
	}
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 1), 0, "a partial send of the head");
	sf_ubufq_release(&bufs, &q, 1);
	cr_assert_eq(q.n, 1, "only the head is kept");
	cr_assert_eq(q.head, bids[0]);
	cr_assert_eq(q.tail, bids[0]);
	cr_assert_eq(bufs.nout, 1);
	expect_head(&q, "ne");
	sf_ubufq_release(&bufs, &q, 0);
	cr_assert_eq(bufs.nout, 0);
	cr_assert_eq(q.head, -1);
}

Test(uring_bufs, buffers_cycle_through_the_ring, .fini = teardown)
{
	struct sf_ubufq q;
	char msg[16];

	setup_n(4, 1024);
	sf_ubufq_init(&q);
	/* Far more receives than buffers: each goes back before the next. */
	for (int i = 0; i < 64; i++) {
		int bid;

		snprintf(msg, sizeof(msg), "m%d", i);
		bid = recv_into_ring(msg);
		cr_assert(bid >= 0 && bid < 4, "receive %d: bid %d", i, bid);
		sf_ubufq_push(&bufs, &q, bid, (uint32_t)strlen(msg));
		expect_head(&q, msg);
		cr_assert_eq(sf_ubufq_sent(&bufs, &q, (uint32_t)strlen(msg)), 1);
	}
	cr_assert_eq(bufs.nout, 0);
}

#endif
