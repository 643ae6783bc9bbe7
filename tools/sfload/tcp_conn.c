/* TCP client sockets: connect (from a spread of source addresses), write all. */
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"

/* Disable Nagle: every workload here wants its small writes sent now. */
void set_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("TCP_NODELAY");
}

/*
 * Start a non-blocking connect to o->target, from source address number
 * idx of the spread when o->naddr > 0. Returns the socket, or -errno.
 */
int open_conn(const struct opts *o, unsigned idx)
{
	int fd, one = 1, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	if (o->naddr > 0) {
		struct sockaddr_in src;
		uint32_t a = (127u << 24) | (64u << 16) | (1 + idx % o->naddr);

		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(a);
		/* The port is chosen at connect(), per 4-tuple: many more of them. */
		if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)&o->target, sizeof(o->target)) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

/* Connect to o->target and wait for it; exits on failure. Returns the fd. */
int connect_wait(const struct opts *o)
{
	int fd = open_conn(o, 0), err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0) {
		errno = -fd;
		die("connect");
	}
	if (!wait_fd(fd, POLLOUT, now_ns() + 5 * NS))
		diex("connect: timed out");
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		die("SO_ERROR");
	if (err != 0) {
		errno = err;
		die("connect");
	}
	return fd;
}

/* Write all of buf to a non-blocking fd, waiting at most 5 s. Exits on errors. */
void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	uint64_t deadline = now_ns() + 5 * NS;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if (!wait_fd(fd, POLLOUT, deadline))
				diex("write: timed out");
		} else if (n < 0 && errno != EINTR) {
			die("write");
		}
	}
}
