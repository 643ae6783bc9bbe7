/*
 * net.h: listening, connecting and accepting on loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockfwd/net.h"

#define POLL_MS 10000 /* a bound against hangs, not a timing assertion */

static struct sf_sockaddr loopback(uint16_t port)
{
	struct sf_sockaddr a;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;

	memset(&a, 0, sizeof(a));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.len = sizeof(*sin);
	return a;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	cr_assert_eq(sin.sin_family, AF_INET);
	return ntohs(sin.sin_port);
}

static int int_sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0, "getsockopt: %s", strerror(errno));
	return v;
}

static void assert_nonblock_cloexec(int fd, int nonblock)
{
	cr_assert_eq(!!(fcntl(fd, F_GETFL) & O_NONBLOCK), nonblock, "fd %d: O_NONBLOCK %s", fd,
		     nonblock ? "missing" : "set");
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "fd %d: FD_CLOEXEC missing", fd);
}

static void wait_for(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	cr_assert_eq(poll(&pfd, 1, POLL_MS), 1, "fd %d never became ready", fd);
}

/* A listener on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(struct sf_sockaddr *bound)
{
	struct sf_sockaddr a = loopback(0);
	int lfd = sf_net_listen(&a, 16, NULL);

	cr_assert_geq(lfd, 0, "sf_net_listen: %s", strerror(-lfd));
	*bound = loopback(local_port(lfd));
	return lfd;
}

/* Connect to a and wait for the outcome; returns the fd. */
static int connect_done(const struct sf_sockaddr *a)
{
	int fd = -1, r = sf_net_connect(a, 0, 0, NULL, &fd);

	cr_assert(r == 0 || r == -EINPROGRESS, "sf_net_connect: %d (%s)", r, strerror(-r));
	cr_assert_geq(fd, 0);
	if (r == -EINPROGRESS)
		wait_for(fd, POLLOUT);
	cr_assert_eq(sf_net_so_error(fd), 0);
	return fd;
}

Test(net, listen_on_ephemeral_port)
{
	struct sf_sockaddr bound;
	int lfd = listen_any(&bound);

	cr_assert_neq(local_port(lfd), 0);
	assert_nonblock_cloexec(lfd, 1);
	cr_assert_eq(int_sockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN), 1, "not listening");
	cr_assert_neq(int_sockopt(lfd, SOL_SOCKET, SO_REUSEADDR), 0, "SO_REUSEADDR missing");
	cr_assert_neq(int_sockopt(lfd, SOL_SOCKET, SO_REUSEPORT), 0, "SO_REUSEPORT missing");
	close(lfd);
}

Test(net, reuseport_allows_second_listener)
{
	struct sf_sockaddr bound;
	int lfd = listen_any(&bound), lfd2 = sf_net_listen(&bound, 16, NULL);

	cr_assert_geq(lfd2, 0, "second listener on the same port: %s", strerror(-lfd2));
	close(lfd2);
	close(lfd);
}

Test(net, accept_on_idle_listener_is_eagain)
{
	struct sf_sockaddr bound;
	int lfd = listen_any(&bound);

	cr_assert_eq(sf_net_accept(lfd, NULL, 0), -EAGAIN);
	close(lfd);
}

Test(net, connect_accept_and_talk)
{
	struct sf_sockaddr bound, peer;
	int lfd = listen_any(&bound), cfd, sfd;
	char c = 0;

	cfd = connect_done(&bound);
	assert_nonblock_cloexec(cfd, 1);
	cr_assert_neq(int_sockopt(cfd, IPPROTO_TCP, TCP_NODELAY), 0, "connect: no TCP_NODELAY");

	wait_for(lfd, POLLIN);
	memset(&peer, 0, sizeof(peer));
	sfd = sf_net_accept(lfd, &peer, 0);
	cr_assert_geq(sfd, 0, "sf_net_accept: %s", strerror(-sfd));
	assert_nonblock_cloexec(sfd, 1);
	cr_assert_neq(int_sockopt(sfd, IPPROTO_TCP, TCP_NODELAY), 0,
		      "accept: TCP_NODELAY not inherited from sf_net_listen's listener");
	cr_assert_eq(peer.len, sizeof(struct sockaddr_in));
	cr_assert_eq(peer.ss.ss_family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&peer.ss)->sin_port), local_port(cfd),
		     "peer is not the connecting socket");

	cr_assert_eq(write(cfd, "A", 1), 1);
	wait_for(sfd, POLLIN);
	cr_assert_eq(read(sfd, &c, 1), 1);
	cr_assert_eq(c, 'A');
	close(sfd);
	close(cfd);
	close(lfd);
}

Test(net, blocking_connect_and_accept)
{
	struct sf_sockaddr bound;
	int lfd = listen_any(&bound), cfd = -1, sfd, r;

	r = sf_net_connect(&bound, 1, 0, NULL, &cfd);
	cr_assert_eq(r, 0, "blocking sf_net_connect: %d (%s)", r, strerror(-r));
	assert_nonblock_cloexec(cfd, 0);
	wait_for(lfd, POLLIN);
	sfd = sf_net_accept(lfd, NULL, 1);
	cr_assert_geq(sfd, 0);
	assert_nonblock_cloexec(sfd, 0);
	close(sfd);
	close(cfd);
	close(lfd);
}

Test(net, connect_refused)
{
	struct sf_sockaddr bound;
	int lfd = listen_any(&bound), fd = -1, r;

	close(lfd); /* nothing listens on that port any more */
	r = sf_net_connect(&bound, 0, 0, NULL, &fd);
	if (r == -EINPROGRESS) {
		cr_assert_geq(fd, 0);
		wait_for(fd, POLLOUT);
		r = sf_net_so_error(fd);
		close(fd);
	}
	cr_assert_eq(r, -ECONNREFUSED, "got %d (%s), want -ECONNREFUSED", r, strerror(-r));
}

Test(net, reset_sends_rst)
{
	struct sf_sockaddr bound;
	int lfd = listen_any(&bound), cfd, sfd;
	char c;

	cfd = connect_done(&bound);
	wait_for(lfd, POLLIN);
	sfd = sf_net_accept(lfd, NULL, 0);
	cr_assert_geq(sfd, 0);
	sf_net_reset(cfd);
	wait_for(sfd, POLLIN);
	errno = 0;
	cr_assert_eq(read(sfd, &c, 1), -1, "peer saw FIN, not RST");
	cr_assert_eq(errno, ECONNRESET, "%s", strerror(errno));
	close(sfd);
	close(lfd);
}

/* A net.core sysctl as a number, or -1. */
static long net_core_sysctl(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/sys/net/core/%s", name);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/*
 * A UDP listener socket asks for SF_UDP_RCVBUF: the kernel grants it up
 * to net.core.rmem_max (and reports twice what it grants), so the buffer
 * is at least the larger of the default and what the cap allows.
 */
Test(net, udp_bind_raises_receive_buffer)
{
	struct sf_sockaddr a = loopback(0);
	long max = net_core_sysctl("rmem_max"), def = net_core_sysctl("rmem_default");
	long want = SF_UDP_RCVBUF < max ? SF_UDP_RCVBUF : max;
	int fd = sf_net_udp_bind(&a);

	cr_assert_geq(fd, 0, "sf_net_udp_bind: %s", strerror(-fd));
	if (max < 0 || def < 0)
		cr_skip_test("no /proc/sys/net/core");
	if (want <= def)
		cr_skip_test(
			"net.core.rmem_max %ld is not above rmem_default %ld: nothing to raise",
			max, def);
	cr_assert_geq(int_sockopt(fd, SOL_SOCKET, SO_RCVBUF), 2 * want,
		      "SO_RCVBUF %d, expected 2 x %ld", int_sockopt(fd, SOL_SOCKET, SO_RCVBUF),
		      want);
	close(fd);
}
