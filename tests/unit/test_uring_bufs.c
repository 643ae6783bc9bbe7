/*
 * The io_uring engine's provided buffers (URING=1 builds), on a real
 * ring: the kernel picks buffers for real receives, the queue keeps their
 * order, partial sends keep their offset, buffers go back to their group
 * exactly once, an exhausted group recovers when one comes back, and the
 * pool grows with the load, retires groups when it falls (receives armed
 * on a retired group end with -ENOBUFS) and frees them once every buffer
 * is back, so idle memory returns to one group.
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
static struct sf_ubpool bufs;
static int sp[2];

static void setup_pool(unsigned nbufs, size_t size, unsigned max)
{
	int rc = io_uring_queue_init(16, &ring, 0);

	cr_assert_eq(rc, 0, "io_uring_queue_init: %s", strerror(-rc));
	rc = sf_ubpool_init(&bufs, &ring, nbufs, size, max, BGID);
	cr_assert_eq(rc, 0, "sf_ubpool_init: %s", strerror(-rc));
	/* Every group's buffers in its ring (the cap has a test of its own). */
	bufs.circ = bufs.vis_min = nbufs * max;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0, "socketpair");
}

static void setup_n(unsigned nbufs, size_t size) { setup_pool(nbufs, size, 1); }

static void teardown(void)
{
	close(sp[0]);
	close(sp[1]);
	io_uring_queue_exit(&ring);
	sf_ubpool_destroy(&bufs);
}

/*
 * Write s on one end, receive it on the other with a buffer the kernel
 * picks from group bgid. Returns the buffer's ref, or -errno (e.g.
 * -ENOBUFS).
 */
static int recv_from(unsigned short bgid, const char *s)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int rc;

	cr_assert_eq(write(sp[0], s, strlen(s)), (ssize_t)strlen(s), "write");
	sqe = io_uring_get_sqe(&ring);
	cr_assert_not_null(sqe);
	io_uring_prep_recv(sqe, sp[1], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = bgid;
	cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1, "submit");
	cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0, "wait_cqe");
	rc = cqe->res;
	if (rc >= 0) {
		cr_assert(cqe->flags & IORING_CQE_F_BUFFER, "no buffer selected");
		cr_assert_eq((size_t)rc, strlen(s), "received %d of %zu bytes", rc, strlen(s));
		rc = sf_ubpool_ref(&bufs, bgid, (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		cr_assert(rc >= 0, "a buffer of group %u that the pool does not know", bgid);
	}
	io_uring_cqe_seen(&ring, cqe);
	return rc;
}

/* Receive s into the group the pool picks, as the engine arms a receive. */
static int recv_into_ring(const char *s)
{
	unsigned avail;

	return recv_from(sf_ubpool_pick(&bufs, &avail), s);
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
	int ref = sf_ubufq_peek(&bufs, q, &p, &len);

	cr_assert(ref >= 0, "queue empty, expected \"%s\"", want);
	cr_assert_eq(len, strlen(want), "head has %u bytes, expected %zu", len, strlen(want));
	cr_assert(memcmp(p, want, len) == 0, "head is \"%.*s\", expected \"%s\"", (int)len, p,
		  want);
}

Test(uring_bufs, init_rejects_bad_counts)
{
	struct io_uring r;
	struct sf_ubufs b;
	struct sf_ubpool p;

	cr_assert_eq(io_uring_queue_init(4, &r, 0), 0);
	cr_assert_eq(sf_ubufs_init(&b, &r, 3, 4096, 1), -EINVAL, "not a power of two");
	cr_assert_eq(sf_ubufs_init(&b, &r, 0, 4096, 1), -EINVAL, "zero buffers");
	cr_assert_eq(sf_ubpool_init(&p, &r, 4, 4096, 0, 1), -EINVAL, "no group allowed");
	cr_assert_eq(sf_ubpool_init(&p, &r, 4, 4096, SF_UBP_SLOTS + 1, 1), -EINVAL,
		     "more groups than slots");
	cr_assert_eq(sf_ubpool_init(&p, &r, 4, 4096, 4, 65534), -EINVAL, "group ids past 65535");
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
	cr_assert(a >= 0 && b >= 0 && a != b, "refs %d %d", a, b);
	sf_ubufq_push(&bufs, &q, a, 5);
	sf_ubufq_push(&bufs, &q, b, 6);
	cr_assert_eq(sf_ubpool_nout(&bufs), 2);
	cr_assert_eq(q.n, 2);

	expect_head(&q, "hello");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 2), 0, "head not finished after 2 of 5");
	expect_head(&q, "llo");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 3), 1, "head finished after 5 of 5");
	cr_assert_eq(sf_ubpool_nout(&bufs), 1, "finished head went back");
	expect_head(&q, "world!");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 6), 1);
	cr_assert_eq(q.n, 0);
	cr_assert_eq(q.head, -1);
	cr_assert_eq(sf_ubpool_nout(&bufs), 0, "every buffer back in the ring");
}

Test(uring_bufs, exhausted_ring_recovers, .fini = teardown)
{
	struct sf_ubufq q;
	int ref;

	setup_n(4, 1024);
	sf_ubufq_init(&q);
	for (int i = 0; i < 4; i++) {
		ref = recv_into_ring("x");
		cr_assert(ref >= 0, "receive %d: %s", i, strerror(-ref));
		sf_ubufq_push(&bufs, &q, ref, 1);
	}
	cr_assert_eq(recv_into_ring("y"), -ENOBUFS, "a fifth receive with 4 buffers out");
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, 0, 1), 0, "a pool of at most one group grew");
	cr_assert_eq(bufs.live, 1);
	drain(1);
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 1), 1);
	cr_assert_eq(sf_ubpool_nout(&bufs), 3);
	ref = recv_into_ring("z");
	cr_assert(ref >= 0, "receive after a buffer came back: %s", strerror(-ref));
	sf_ubufq_push(&bufs, &q, ref, 1);
	sf_ubufq_release(&bufs, &q, 0);
	cr_assert_eq(sf_ubpool_nout(&bufs), 0);
	cr_assert_eq(q.n, 0);
}

Test(uring_bufs, release_keeps_head_of_send_in_flight, .fini = teardown)
{
	struct sf_ubufq q;
	const char *msgs[] = { "one", "two", "three" };
	int refs[3];

	setup_n(8, 4096);
	sf_ubufq_init(&q);
	for (int i = 0; i < 3; i++) {
		refs[i] = recv_into_ring(msgs[i]);
		cr_assert(refs[i] >= 0);
		sf_ubufq_push(&bufs, &q, refs[i], (uint32_t)strlen(msgs[i]));
	}
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 1), 0, "a partial send of the head");
	sf_ubufq_release(&bufs, &q, 1);
	cr_assert_eq(q.n, 1, "only the head is kept");
	cr_assert_eq(q.head, refs[0]);
	cr_assert_eq(q.tail, refs[0]);
	cr_assert_eq(sf_ubpool_nout(&bufs), 1);
	expect_head(&q, "ne");
	sf_ubufq_release(&bufs, &q, 0);
	cr_assert_eq(sf_ubpool_nout(&bufs), 0);
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
		int ref;

		snprintf(msg, sizeof(msg), "m%d", i);
		ref = recv_into_ring(msg);
		cr_assert(ref >= 0 && ref < 4, "receive %d: ref %d", i, ref);
		sf_ubufq_push(&bufs, &q, ref, (uint32_t)strlen(msg));
		expect_head(&q, msg);
		cr_assert_eq(sf_ubufq_sent(&bufs, &q, (uint32_t)strlen(msg)), 1);
	}
	cr_assert_eq(sf_ubpool_nout(&bufs), 0);
}

/* The sizing rule alone: grow, hold, shrink, and the bounds. */
Test(uring_bufs, plan_grows_holds_and_shrinks)
{
	/* live, max, nbufs, out, nstarved -> want */
	static const unsigned cases[][6] = {
		{ 1, 8, 128, 0, 0, 1 },	    /* idle: one group */
		{ 1, 8, 128, 100, 0, 1 },   /* 28 free of 128: enough */
		{ 1, 8, 128, 113, 0, 2 },   /* 15 free, under 128 / 8: grow */
		{ 1, 8, 128, 0, 1, 2 },	    /* someone waits: grow */
		{ 8, 8, 128, 1024, 40, 8 }, /* at the cap: hold, whoever waits */
		{ 1, 1, 128, 128, 5, 1 },   /* a cap of one group */
		{ 3, 8, 128, 128, 0, 2 },   /* 128 fit in 2 groups at half: shrink */
		{ 3, 8, 128, 129, 0, 3 },   /* 129 do not: hold (between the marks) */
		{ 3, 8, 128, 10, 2, 4 },    /* few out but some wait: grow, never shrink */
		{ 2, 8, 128, 64, 0, 1 },    /* back to one */
		{ 2, 8, 128, 65, 0, 2 },    { 1, 8, 128, 0, 0, 1 }, /* never below one */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const unsigned *c = cases[i];

		cr_assert_eq(sf_ubpool_plan(c[0], c[1], c[2], c[3], c[4]), c[5],
			     "case %zu: live %u max %u nbufs %u out %u starved %u: want %u, got %u",
			     i, c[0], c[1], c[2], c[3], c[4], c[5],
			     sf_ubpool_plan(c[0], c[1], c[2], c[3], c[4]));
	}
	/* No flapping: after a shrink the plan does not ask to grow back. */
	for (unsigned live = 2; live <= 8; live++)
		for (unsigned out = 0; out <= (live - 1) * 64; out++)
			cr_assert_eq(sf_ubpool_plan(live - 1, 8, 128, out, 0) > live - 1, 0,
				     "shrunk to %u at %u out, then asked to grow", live - 1, out);
}

/*
 * Exhaust group 0, tick: a second group comes; the pick names it and the
 * kernel fills a receive from it. At the cap the pool stops growing.
 */
Test(uring_bufs, grows_under_starvation_up_to_the_cap, .fini = teardown)
{
	struct sf_ubufq q;
	size_t one;
	unsigned avail;
	int ref, i;

	setup_pool(4, 1024, 3);
	one = bufs.bytes;
	cr_assert_eq(bufs.live, 1, "starts with one group");
	sf_ubufq_init(&q);
	for (i = 0; i < 4; i++) {
		ref = recv_into_ring("a");
		cr_assert(ref >= 0, "receive %d: %s", i, strerror(-ref));
		sf_ubufq_push(&bufs, &q, ref, 1);
	}
	cr_assert_eq(recv_from(BGID, "b"), -ENOBUFS);
	drain(1);
	cr_assert_eq(sf_ubpool_avail(&bufs), 0, "avail with every buffer out");
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, 1000, 1), 1, "no growth for a starved receive");
	cr_assert_eq(bufs.live, 2);
	cr_assert_eq(bufs.grown, 1);
	cr_assert_eq(bufs.bytes, 2 * one, "mapped %zu, one group is %zu", bufs.bytes, one);
	cr_assert_eq(sf_ubpool_avail(&bufs), 4);
	cr_assert_eq(sf_ubpool_pick(&bufs, &avail), BGID + 1, "the new group is picked");
	cr_assert_eq(avail, 4);
	cr_assert_eq(sf_ubpool_avail(&bufs), 3, "one promised");
	ref = recv_from(BGID + 1, "c");
	cr_assert(ref >= 0, "receive from the new group: %s", strerror(-ref));
	cr_assert_eq((unsigned)ref >> SF_UBUF_BID_BITS, 1, "ref %d not in slot 1", ref);
	sf_ubufq_push(&bufs, &q, ref, 1);
	expect_head(&q, "a");
	/* Still starved: the third group, then the cap holds. */
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, 2000, 1), 1);
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, 3000, 1), 0, "grew past the cap of 3");
	cr_assert_eq(bufs.live, 3);
	cr_assert_eq(bufs.bytes, 3 * one);
	sf_ubufq_release(&bufs, &q, 0);
	cr_assert_eq(sf_ubpool_nout(&bufs), 0);
}

/*
 * The load goes away: one group retired per SF_UBP_SHRINK_MS of the
 * clock given; a receive armed on a retired group ends with -ENOBUFS (the
 * engine then arms it on a live group); a retired group holding a queued
 * buffer stays mapped until that buffer is sent, and is freed only in a
 * later quiet tick. In the end one group is mapped, as at the start.
 */
Test(uring_bufs, shrinks_back_to_one_group_when_idle, .fini = teardown)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct sf_ubufq q;
	uint64_t t = 10000;
	size_t one;
	int ref, i;

	setup_pool(4, 1024, 3);
	one = bufs.bytes;
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, t, 1), 1);
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, t, 1), 1);
	cr_assert_eq(bufs.live, 3);
	sf_ubufq_init(&q);
	/* One buffer of the highest group stays queued. */
	ref = recv_from(BGID + 2, "held");
	cr_assert(ref >= 0);
	sf_ubufq_push(&bufs, &q, ref, 4);
	/* A multishot receive armed on group 2 before it is retired. */
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv_multishot(sqe, sp[1], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID + 2;
	cr_assert_eq(io_uring_submit(&ring), 1);

	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 1, 1), 0);
	cr_assert_eq(bufs.live, 3, "retired right after a growth");
	t += SF_UBP_SHRINK_MS + 1;
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t, 1), 0);
	cr_assert_eq(bufs.live, 2, "idle for %d ms and nothing retired", SF_UBP_SHRINK_MS);
	cr_assert_eq(bufs.retired, 1);
	cr_assert_eq(bufs.g[2].state, SF_UBG_RETIRED, "not the highest group retired");
	cr_assert(!sf_ubpool_live(&bufs, BGID + 2));

	/* Data for the receive armed on the retired group: -ENOBUFS. */
	cr_assert_eq(write(sp[0], "late", 4), 4);
	cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
	cr_assert_eq(cqe->res, -ENOBUFS, "receive on a retired group: %d", cqe->res);
	cr_assert(!(cqe->flags & IORING_CQE_F_MORE), "the multishot receive goes on");
	io_uring_cqe_seen(&ring, cqe);
	drain(4);

	/* Its queued buffer keeps group 2 mapped, readable, and out of the ring. */
	for (i = 0; i < 4; i++)
		cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 1 + (uint64_t)i, 1), 0);
	cr_assert_eq(bufs.g[2].state, SF_UBG_RETIRED, "freed with a buffer still queued");
	expect_head(&q, "held");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 4), 1);
	cr_assert_eq(sf_ubpool_nout(&bufs), 0);
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 10, 0), 0);
	cr_assert_eq(bufs.g[2].state, SF_UBG_RETIRED, "freed while completions were pending");
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 11, 1), 0);
	cr_assert_eq(bufs.g[2].state, SF_UBG_FREE, "all back, quiet, still mapped");
	cr_assert_eq(bufs.bytes, 2 * one);

	/* The next period retires group 1, the one after frees it; group 0 stays. */
	t += SF_UBP_SHRINK_MS;
	sf_ubpool_tick(&bufs, 0, t, 1);
	sf_ubpool_tick(&bufs, 0, t + 1, 1);
	t += SF_UBP_SHRINK_MS;
	sf_ubpool_tick(&bufs, 0, t, 1);
	cr_assert_eq(bufs.live, 1);
	cr_assert_eq(bufs.bytes, one, "idle pool maps %zu, started with %zu", bufs.bytes, one);
	cr_assert(!sf_ubpool_pending(&bufs));
	cr_assert_eq(bufs.retired, 2);
	/* Group 0 still serves. */
	ref = recv_into_ring("again");
	cr_assert(ref >= 0 && (unsigned)ref >> SF_UBUF_BID_BITS == 0);
	sf_ubufq_push(&bufs, &q, ref, 5);
	expect_head(&q, "again");
	sf_ubufq_release(&bufs, &q, 0);
}

/* A lull shorter than SF_UBP_SHRINK_MS between busy ticks retires nothing. */
Test(uring_bufs, a_short_lull_keeps_the_groups, .fini = teardown)
{
	const uint64_t t = 50000, p = SF_UBP_SHRINK_MS;

	setup_pool(4, 1024, 2);
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, t, 1), 1);
	cr_assert_eq(bufs.live, 2);
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + p, 1), 0);
	cr_assert_eq(bufs.live, 2, "retired at the first calm tick");
	/* Busy again (someone waits, at the cap): the calm period starts over. */
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, t + p + p / 2, 1), 0);
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 2 * p, 1), 0);
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 3 * p - 1, 1), 0);
	cr_assert_eq(bufs.live, 2, "retired %llu ms into a calm period",
		     (unsigned long long)(p - 1));
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, t + 3 * p, 1), 0);
	cr_assert_eq(bufs.live, 1, "calm for %llu ms and nothing retired", (unsigned long long)p);
	cr_assert_eq(bufs.retired, 1);
}

/*
 * A grown pool's rings hold circ less the buffers out, at least vis_min;
 * its other free buffers wait on the stash (spare) and go in at a tick
 * when buffers out come back or more go out. So the kernel cannot take
 * more before the next tick than circ buffers' worth, however many
 * groups there are.
 */
Test(uring_bufs, rings_hold_circ_less_out, .fini = teardown)
{
	struct sf_ubufq q;
	int ref, i;

	setup_pool(4, 1024, 2);
	bufs.circ = 4;
	bufs.vis_min = 1;
	cr_assert_eq(sf_ubpool_tick(&bufs, 1, 1000, 1), 1, "no second group");
	cr_assert_eq(sf_ubpool_spare(&bufs), 4, "the new group's buffers went into its ring");
	sf_ubufq_init(&q);
	/* Group 0's four, then nothing in any ring: the spare four wait for a tick. */
	for (i = 0; i < 4; i++) {
		ref = recv_into_ring("a");
		cr_assert(ref >= 0 && (unsigned)ref >> SF_UBUF_BID_BITS == 0, "receive %d: %d", i,
			  ref);
		sf_ubufq_push(&bufs, &q, ref, 1);
	}
	cr_assert_eq(recv_from(BGID + 1, "b"), -ENOBUFS, "a stashed buffer was in a ring");
	drain(1);
	/* Four out: circ less out is 0, so the tick puts vis_min (one) in. */
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, 1001, 1), 0);
	cr_assert_eq(sf_ubpool_spare(&bufs), 3);
	cr_assert_eq(sf_ubpool_avail(&bufs), 1);
	ref = recv_into_ring("c");
	cr_assert(ref >= 0 && (unsigned)ref >> SF_UBUF_BID_BITS == 1, "ref %d not in group 1", ref);
	sf_ubufq_push(&bufs, &q, ref, 1);
	cr_assert_eq(recv_from(BGID + 1, "d"), -ENOBUFS, "more than vis_min in the rings");
	drain(1);
	/* Sent, the first goes back to its ring (none there); the next to the stash. */
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 1), 1);
	cr_assert_eq(sf_ubpool_spare(&bufs), 3, "stashed with the rings empty");
	cr_assert_eq(sf_ubufq_sent(&bufs, &q, 1), 1);
	cr_assert_eq(sf_ubpool_spare(&bufs), 4, "in a ring past circ less out");
	/* All back: a tick fills the rings to circ, and no more. */
	sf_ubufq_release(&bufs, &q, 0);
	cr_assert_eq(sf_ubpool_nout(&bufs), 0);
	cr_assert_eq(sf_ubpool_tick(&bufs, 0, 1002, 1), 0);
	cr_assert_eq(sf_ubpool_spare(&bufs), 4, "rings hold more or less than circ");
	for (i = 0; i < 4; i++) {
		ref = recv_into_ring("e");
		cr_assert(ref >= 0, "rings short after the fill: %d", ref);
		sf_ubufq_push(&bufs, &q, ref, 1);
	}
	cr_assert_eq(recv_from(BGID, "f"), -ENOBUFS, "group 0's ring past circ");
	drain(1);
	cr_assert_eq(recv_from(BGID + 1, "g"), -ENOBUFS, "group 1's ring past circ");
	drain(1);
	sf_ubufq_release(&bufs, &q, 0);
}

#endif
