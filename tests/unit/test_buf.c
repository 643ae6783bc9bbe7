/*
 * buf.h: the buffer pool and one-shot reads and writes through sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockfwd/buf.h"

static void nb_socketpair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0,
		     "socketpair: %s", strerror(errno));
}

/* Fill fd's send path until the kernel refuses more. */
static void fill_socket(int fd)
{
	static char junk[65536];
	ssize_t n;

	for (;;) {
		n = send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
		if (n < 0)
			break;
	}
	cr_assert_eq(errno, EAGAIN, "filling socket: %s", strerror(errno));
}

static unsigned char pattern(size_t i) { return (unsigned char)((i * 31u + (i >> 9)) & 0xff); }

Test(bufpool, get_returns_empty_buffer)
{
	struct sf_bufpool bp;
	struct sf_buf *b;

	sf_bufpool_init(&bp, 4096, 4);
	cr_assert_eq(bp.size, 4096);
	cr_assert_eq(bp.nfree, 0);
	cr_assert_eq(bp.nlive, 0);
	b = sf_bufpool_get(&bp);
	cr_assert_not_null(b);
	cr_assert_eq(b->cap, 4096);
	cr_assert_eq(b->off, 0);
	cr_assert_eq(b->len, 0);
	cr_assert(sf_buf_empty(b));
	cr_assert(!sf_buf_full(b));
	cr_assert_eq(bp.nlive, 1);
	/* The whole capacity is usable memory. */
	memset(b->data, 0xee, b->cap);
	sf_bufpool_put(&bp, b);
	cr_assert_eq(bp.nlive, 0);
	sf_bufpool_destroy(&bp);
}

Test(bufpool, put_then_get_reuses)
{
	struct sf_bufpool bp;
	struct sf_buf *a, *b;

	sf_bufpool_init(&bp, 4096, 4);
	a = sf_bufpool_get(&bp);
	cr_assert_not_null(a);
	a->off = 10;
	a->len = 100;
	sf_bufpool_put(&bp, a);
	cr_assert_eq(bp.nfree, 1);
	cr_assert_eq(bp.nlive, 0);
	b = sf_bufpool_get(&bp);
	cr_assert_eq(b, a, "free buffer not reused");
	cr_assert_eq(bp.nfree, 0);
	cr_assert_eq(bp.nlive, 1);
	/* Content given back is discarded. */
	cr_assert_eq(b->off, 0);
	cr_assert_eq(b->len, 0);
	cr_assert_eq(b->cap, 4096);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
}

Test(bufpool, counters_track_many_buffers)
{
	struct sf_bufpool bp;
	struct sf_buf *b[10];

	sf_bufpool_init(&bp, 1024, 16);
	for (int i = 0; i < 10; i++) {
		b[i] = sf_bufpool_get(&bp);
		cr_assert_not_null(b[i]);
		for (int j = 0; j < i; j++)
			cr_assert_neq(b[i], b[j], "buffer lent twice");
		cr_assert_eq(bp.nlive, (unsigned)i + 1);
	}
	for (int i = 0; i < 10; i++)
		sf_bufpool_put(&bp, b[i]);
	cr_assert_eq(bp.nlive, 0);
	cr_assert_eq(bp.nfree, 10);
	sf_bufpool_destroy(&bp);
}

Test(bufpool, max_idle_respected)
{
	struct sf_bufpool bp;
	struct sf_buf *b[10];

	sf_bufpool_init(&bp, 4096, 3);
	for (int i = 0; i < 10; i++) {
		b[i] = sf_bufpool_get(&bp);
		cr_assert_not_null(b[i]);
	}
	for (int i = 0; i < 10; i++) {
		sf_bufpool_put(&bp, b[i]);
		cr_assert_leq(bp.nfree, 3, "kept %u free buffers, max_idle 3", bp.nfree);
	}
	cr_assert_eq(bp.nfree, 3);
	cr_assert_eq(bp.nlive, 0);
	sf_bufpool_destroy(&bp);
}

Test(bufpool, max_idle_zero_keeps_none)
{
	struct sf_bufpool bp;
	struct sf_buf *b;

	sf_bufpool_init(&bp, 4096, 0);
	b = sf_bufpool_get(&bp);
	cr_assert_not_null(b);
	sf_bufpool_put(&bp, b);
	cr_assert_eq(bp.nfree, 0);
	cr_assert_eq(bp.nlive, 0);
	sf_bufpool_destroy(&bp);
}

Test(buf, read_empty_socket_is_eagain)
{
	struct sf_bufpool bp;
	struct sf_buf *b;
	int sv[2];

	nb_socketpair(sv);
	sf_bufpool_init(&bp, 4096, 1);
	b = sf_bufpool_get(&bp);
	cr_assert_eq(sf_buf_read(b, sv[1]), -EAGAIN);
	cr_assert_eq(b->len, 0);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
	close(sv[0]);
	close(sv[1]);
}

Test(buf, read_after_peer_close_is_eof)
{
	struct sf_bufpool bp;
	struct sf_buf *b;
	int sv[2];

	nb_socketpair(sv);
	sf_bufpool_init(&bp, 4096, 1);
	b = sf_bufpool_get(&bp);
	cr_assert_eq(send(sv[0], "hello", 5, 0), 5);
	close(sv[0]);
	cr_assert_eq(sf_buf_read(b, sv[1]), 5);
	cr_assert_eq(b->len, 5);
	cr_assert_eq(memcmp(b->data + b->off, "hello", 5), 0);
	cr_assert_eq(sf_buf_read(b, sv[1]), 0);
	cr_assert_eq(b->len, 5, "EOF changed the buffer");
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
	close(sv[1]);
}

Test(buf, read_appends_to_tail_and_stops_at_cap)
{
	struct sf_bufpool bp;
	struct sf_buf *b;
	char data[3000];
	int sv[2];
	ssize_t n;

	nb_socketpair(sv);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)pattern(i);
	sf_bufpool_init(&bp, 1024, 1);
	b = sf_bufpool_get(&bp);
	cr_assert_eq(send(sv[0], data, 100, 0), 100);
	cr_assert_eq(sf_buf_read(b, sv[1]), 100);
	cr_assert_eq(send(sv[0], data + 100, sizeof(data) - 100, 0), (ssize_t)sizeof(data) - 100);
	n = sf_buf_read(b, sv[1]);
	cr_assert_eq(n, 1024 - 100, "read %zd, want the free tail (924)", n);
	cr_assert_eq(b->len, 1024);
	cr_assert(sf_buf_full(b));
	cr_assert_eq(memcmp(b->data + b->off, data, 1024), 0);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
	close(sv[0]);
	close(sv[1]);
}

Test(buf, write_rewinds_when_empty)
{
	struct sf_bufpool bp;
	struct sf_buf *b;
	char out[200];
	int sv[2];

	nb_socketpair(sv);
	sf_bufpool_init(&bp, 4096, 1);
	b = sf_bufpool_get(&bp);
	memcpy(b->data, "0123456789", 10);
	b->off = 0;
	b->len = 10;
	cr_assert_eq(sf_buf_write(b, sv[0]), 10);
	cr_assert_eq(b->len, 0);
	cr_assert_eq(b->off, 0, "buffer did not rewind");
	cr_assert(sf_buf_empty(b));

	/* Same from the middle of the buffer. */
	memcpy(b->data + 50, "abcdef", 6);
	b->off = 50;
	b->len = 6;
	cr_assert_eq(sf_buf_write(b, sv[0]), 6);
	cr_assert_eq(b->off, 0, "buffer did not rewind");
	cr_assert_eq(b->len, 0);
	cr_assert_eq(recv(sv[1], out, sizeof(out), 0), 16);
	cr_assert_eq(memcmp(out, "0123456789abcdef", 16), 0);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
	close(sv[0]);
	close(sv[1]);
}

Test(buf, write_to_full_socket_is_eagain)
{
	struct sf_bufpool bp;
	struct sf_buf *b;
	int sv[2];

	nb_socketpair(sv);
	fill_socket(sv[0]);
	sf_bufpool_init(&bp, 4096, 1);
	b = sf_bufpool_get(&bp);
	memset(b->data, 'x', 100);
	b->len = 100;
	cr_assert_eq(sf_buf_write(b, sv[0]), -EAGAIN);
	cr_assert_eq(b->len, 100);
	cr_assert_eq(b->off, 0);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
	close(sv[0]);
	close(sv[1]);
}

/* MSG_NOSIGNAL: a closed peer gives -EPIPE, not a SIGPIPE that kills us. */
Test(buf, write_to_closed_peer_is_epipe)
{
	struct sf_bufpool bp;
	struct sf_buf *b;
	int sv[2];

	nb_socketpair(sv);
	close(sv[1]);
	sf_bufpool_init(&bp, 4096, 1);
	b = sf_bufpool_get(&bp);
	memset(b->data, 'x', 10);
	b->len = 10;
	cr_assert_eq(sf_buf_write(b, sv[0]), -EPIPE);
	cr_assert_eq(b->len, 10);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
	close(sv[0]);
}

Test(buf, read_bad_fd)
{
	struct sf_bufpool bp;
	struct sf_buf *b;

	sf_bufpool_init(&bp, 4096, 1);
	b = sf_bufpool_get(&bp);
	cr_assert_eq(sf_buf_read(b, -1), -EBADF);
	sf_bufpool_put(&bp, b);
	sf_bufpool_destroy(&bp);
}

/*
 * Relay 100 KiB from one socket pair to another through a 4 KiB buffer,
 * borrowing it only while bytes are in flight, as the engines do:
 *   test -> in[0] ~> in[1] -> buf -> out[0] ~> out[1] -> test
 */
Test(buf, relay_100k_intact)
{
	enum { TOTAL = 100 * 1024 };
	unsigned char *src = malloc(TOTAL), *dst = malloc(TOTAL + 1);
	struct sf_bufpool bp;
	struct sf_buf *b = NULL;
	size_t sent = 0, got = 0;
	int in[2], out[2], eof = 0, sndbuf = 4096;
	unsigned long borrows = 0;

	cr_assert(src && dst);
	for (size_t i = 0; i < TOTAL; i++)
		src[i] = pattern(i);
	nb_socketpair(in);
	nb_socketpair(out);
	/* A small destination makes partial writes and -EAGAIN likely. */
	setsockopt(out[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	sf_bufpool_init(&bp, 4096, 2);

	for (long iter = 0; iter < 10000000 && !(eof && b == NULL && got == TOTAL); iter++) {
		ssize_t n;

		if (sent < TOTAL) {
			n = send(in[0], src + sent, TOTAL - sent > 7000 ? 7000 : TOTAL - sent,
				 MSG_NOSIGNAL);
			if (n > 0)
				sent += n;
			else
				cr_assert_eq(errno, EAGAIN, "send: %s", strerror(errno));
			if (sent == TOTAL)
				cr_assert_eq(shutdown(in[0], SHUT_WR), 0);
		}
		if (!eof) {
			if (b == NULL) {
				b = sf_bufpool_get(&bp);
				cr_assert_not_null(b);
				cr_assert(sf_buf_empty(b));
				borrows++;
			}
			if (!sf_buf_full(b)) {
				n = sf_buf_read(b, in[1]);
				if (n == 0)
					eof = 1;
				else if (n < 0)
					cr_assert_eq(n, -EAGAIN, "sf_buf_read: %zd", n);
				else
					cr_assert_leq(b->off + b->len, b->cap);
			}
		}
		if (b != NULL && !sf_buf_empty(b)) {
			uint32_t before = b->len;

			n = sf_buf_write(b, out[0]);
			if (n > 0) {
				cr_assert_eq(b->len, before - n);
				if (sf_buf_empty(b))
					cr_assert_eq(b->off, 0, "emptied buffer did not rewind");
			} else {
				cr_assert_eq(n, -EAGAIN, "sf_buf_write: %zd", n);
			}
		}
		if (b != NULL && sf_buf_empty(b)) {
			sf_bufpool_put(&bp, b);
			b = NULL;
		}
		n = recv(out[1], dst + got, TOTAL - got + 1, 0);
		if (n > 0) {
			got += n;
			cr_assert_leq(got, TOTAL, "more bytes out than in");
		} else if (got < TOTAL) {
			cr_assert(n < 0 && errno == EAGAIN, "recv: %zd %s", n, strerror(errno));
		}
	}
	cr_assert_eq(sent, TOTAL);
	cr_assert(eof, "EOF never seen");
	cr_assert_null(b, "buffer still borrowed");
	cr_assert_eq(got, TOTAL, "received %zu of %d bytes", got, TOTAL);
	for (size_t i = 0; i < TOTAL; i++)
		if (dst[i] != src[i])
			cr_assert_fail("byte %zu: 0x%02x, want 0x%02x", i, dst[i], src[i]);
	cr_assert_eq(bp.nlive, 0);
	cr_assert_leq(bp.nfree, 2);
	cr_assert_gt(borrows, 1, "buffer never given back between bursts");

	sf_bufpool_destroy(&bp);
	close(in[0]);
	close(in[1]);
	close(out[0]);
	close(out[1]);
	free(src);
	free(dst);
}
