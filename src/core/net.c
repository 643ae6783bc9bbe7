/*
 * Socket helpers.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sockfwd/net.h"

void sf_net_set_nodelay(int fd)
{
	int one = 1;

	/* Best effort: a failure only costs latency. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * A non-blocking socket of type for address a, shared with the other
 * workers and processes of the address (SO_REUSEADDR, SO_REUSEPORT) and,
 * for IPv6, taking IPv4 clients too (":port" binds [::]). Returns the
 * descriptor, or -errno.
 */
static int net_shared_socket(const struct sf_sockaddr *a, int type, int proto)
{
	int fd, one = 1, zero = 0, rc;

	fd = socket(a->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    (a->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int sf_net_listen(const struct sf_sockaddr *a, int backlog, const struct sf_sockbufs *bufs)
{
	int fd, rc;

	if ((fd = net_shared_socket(a, SOCK_STREAM, IPPROTO_TCP)) < 0)
		return fd;
	/* Accepted sockets inherit it: no setsockopt per connection. */
	sf_net_set_nodelay(fd);
	sf_net_set_bufs(fd, bufs);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		goto fail;
	if (listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	rc = -errno;
	close(fd);
	return rc;
}

int sf_net_accept(int lfd, struct sf_sockaddr *peer, int blocking)
{
	struct sf_sockaddr tmp;
	int fd;

	if (peer == NULL)
		peer = &tmp;
	for (;;) {
		peer->len = sizeof(peer->ss);
		fd = accept4(lfd, (struct sockaddr *)&peer->ss, &peer->len,
			     SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK));
		if (fd >= 0)
			break;
		/* A client that gave up before we got to it is no error of ours. */
		if (errno != EINTR && errno != ECONNABORTED)
			return -errno;
	}
	return fd;
}

void sf_net_set_bufs(int fd, const struct sf_sockbufs *bufs)
{
	int v;

	if (bufs == NULL)
		return;
	if (bufs->snd > 0) {
		v = (int)bufs->snd;
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	if (bufs->rcv > 0) {
		v = (int)bufs->rcv;
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	}
}

int sf_net_connect(const struct sf_sockaddr *a, int blocking, uint64_t timeout_ms,
		   const struct sf_sockbufs *bufs, int *fdp)
{
	int fd, rc;

	*fdp = -1;
	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK),
		    IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	sf_net_set_nodelay(fd);
	sf_net_set_bufs(fd, bufs);
	if (blocking && timeout_ms > 0) {
		/* Linux bounds a blocking connect by SO_SNDTIMEO (EINPROGRESS after it). */
		struct timeval tv = { .tv_sec = (time_t)(timeout_ms / 1000),
				      .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000 };

		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	do
		rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
	while (rc < 0 && errno == EINTR && blocking);
	if (rc == 0 || errno == EINPROGRESS || (errno == EINTR && !blocking)) {
		*fdp = fd;
		return rc == 0 ? 0 : -EINPROGRESS;
	}
	rc = -errno;
	close(fd);
	return rc;
}

void sf_net_keepalive(int fd, int on)
{
	int idle = 60, intvl = 10, cnt = 6;

	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (!on)
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

int sf_net_so_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

void sf_net_set_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void sf_net_reset(int fd)
{
	sf_net_set_rst(fd);
	close(fd);
}

int sf_addr_is_wildcard(const struct sf_sockaddr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
	return 0;
}

int sf_net_udp_bind(const struct sf_sockaddr *a)
{
	int fd, one = 1, rc, rcvbuf = SF_UDP_RCVBUF;
	int family = a->ss.ss_family;

	if ((fd = net_shared_socket(a, SOCK_DGRAM, IPPROTO_UDP)) < 0)
		return fd;
	/* Best effort: without it only the drop count is missing. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	/*
	 * Best effort: the default (net.core.rmem_default, 208 KiB: about 90
	 * datagrams of 1,400 bytes) overflows when the worker is held off its
	 * CPU for a few milliseconds, even far below saturation (bench
	 * udp_paced lost up to 0.5% at 20,000 datagrams/s). The kernel caps
	 * the value at net.core.rmem_max.
	 */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	/* Best effort: GRO batches are forwarded with UDP_SEGMENT (dgram/udp.c). */
	(void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
	if (sf_addr_is_wildcard(a)) {
		/* [::] gets IPv4 clients' destination as a v4-mapped IPV6_PKTINFO. */
		if (family == AF_INET6 &&
		    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) < 0)
			goto fail;
		if (family == AF_INET &&
		    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) < 0)
			goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		goto fail;
	return fd;
fail:
	rc = -errno;
	close(fd);
	return rc;
}

int sf_net_peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}
