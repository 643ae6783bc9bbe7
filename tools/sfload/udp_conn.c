/*
 * What the UDP client workloads share: a connected socket from a spread
 * of source addresses, the datagram size, and the sink's report query.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

/*
 * Open a UDP socket connected to o->target, bound to source address idx of
 * the 127.65.x.y spread when o->naddr > 0. Returns the socket, or -errno.
 */
int udp_socket(const struct opts *o, unsigned idx, int nonblock, int bigbuf)
{
	int fd, err, size = UC_BUF;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	if (bigbuf) {
		/* Best effort: the kernel caps these at net.core.[rw]mem_max. */
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
	if (o->naddr > 0) {
		struct sockaddr_in src;

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl((127u << 24) | (65u << 16) | (1 + idx % o->naddr));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&o->target, sizeof(o->target)) < 0)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

/* The datagram size of o (main.c checked its range): 64 B unless -s says. */
size_t udp_size(struct opts *o)
{
	if (o->size == 0)
		o->size = 64;
	return o->size;
}

/*
 * Ask the server, through the non-blocking socket fd, what its sink counted
 * from us: up to tries queries, each given UC_REPLY_NS. Datagrams other
 * than the report are skipped. Returns 0 with *rep filled, or -1.
 */
int udp_query(int fd, struct udp_report *rep, int tries)
{
	static uint64_t qseq;
	char buf[UDP_MAX_SIZE + 1];
	struct udp_hdr q;

	for (int t = 0; t < tries; t++) {
		uint64_t deadline = now_ns() + UC_REPLY_NS;

		udp_fill(&q, sizeof(q), UDP_QUERY, ++qseq);
		if (send(fd, &q, sizeof(q), 0) < 0 && errno != ECONNREFUSED && errno != EAGAIN)
			die("udp query send");
		while (wait_fd(fd, POLLIN, deadline)) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);

			if (n < 0 && errno == ECONNREFUSED) {
				sleep_until(deadline); /* nobody there yet: no busy loop */
				break;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0)
				die("udp query recv");
			memcpy(rep, buf, (size_t)n < sizeof(*rep) ? (size_t)n : sizeof(*rep));
			if ((size_t)n == sizeof(*rep) && rep->h.magic == UDP_MAGIC &&
			    rep->h.kind == UDP_REPORT && rep->h.seq == qseq)
				return 0;
		}
	}
	return -1;
}
