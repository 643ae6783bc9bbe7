/*
 * `sfload serve`: the TCP upstream. The first byte a client sends picks
 * what the server does with that connection: 'K' sink (read until EOF,
 * then close), 'S' source (write until the peer goes away), 'E' echo (echo
 * until EOF, then close).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"

enum { SRV_NEW = 0, SRV_SINK = 'K', SRV_SOURCE = 'S', SRV_ECHO = 'E' };

/* One server connection. pend holds echo bytes the peer was not ready for. */
struct srv_conn {
	int fd;
	int mode;
	char *pend;
	size_t pend_off, pend_len;
};

static char srv_buf[SL_CHUNK];	  /* scratch for reads */
static char source_buf[SL_CHUNK]; /* what 'S' connections send */

static void srv_close(struct srv_conn *c)
{
	if (close(c->fd) < 0 && errno != EINTR)
		die("close");
	free(c->pend);
	free(c);
}

/* Change the epoll interest of c to events. */
static void srv_watch(int ep, struct srv_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl");
}

/*
 * Send echo bytes to c: first the pending ones, then data[0..len). Keeps
 * what the socket does not take and waits for EPOLLOUT. Returns 0, or -1
 * when the connection failed.
 */
static int srv_echo(int ep, struct srv_conn *c, const char *data, size_t len)
{
	if (c->pend_len == 0 && len == 0)
		return 0;
	if (c->pend_len == 0 && len > 0) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		}
		if (len == 0)
			return 0;
		if ((c->pend = malloc(len)) == NULL)
			die("malloc");
		memcpy(c->pend, data, len);
		c->pend_off = 0;
		c->pend_len = len;
		srv_watch(ep, c, EPOLLOUT);
		return 0;
	}
	while (c->pend_len > 0) {
		ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return -1;
		c->pend_off += (size_t)n;
		c->pend_len -= (size_t)n;
	}
	free(c->pend);
	c->pend = NULL;
	srv_watch(ep, c, EPOLLIN);
	return 0;
}

/*
 * Handle readiness of one server connection, at most turns reads or
 * writes of a chunk. Returns 0 to keep it, -1 to close it (EOF, error, or
 * the peer gone).
 */
static int srv_event(int ep, struct srv_conn *c, int turns)
{
	if (c->mode == SRV_SOURCE) {
		for (int i = 0; i < turns; i++) {
			ssize_t n = send(c->fd, source_buf, sizeof(source_buf), MSG_NOSIGNAL);

			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -1;
		}
		return 0;
	}
	if (c->pend_len > 0)
		return srv_echo(ep, c, NULL, 0);
	for (int i = 0; i < turns; i++) {
		ssize_t n = recv(c->fd, srv_buf, sizeof(srv_buf), 0);
		const char *p = srv_buf;

		if (n == 0)
			return -1;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		if (c->mode == SRV_NEW) {
			c->mode = *p++;
			n--;
			if (c->mode == SRV_SOURCE) {
				srv_watch(ep, c, EPOLLOUT);
				return 0;
			}
			if (c->mode != SRV_SINK && c->mode != SRV_ECHO)
				return -1;
		}
		if (c->mode == SRV_ECHO) {
			if (srv_echo(ep, c, p, (size_t)n) < 0)
				return -1;
			if (c->pend_len > 0)
				return 0;
		}
	}
	return 0;
}

/* Accept every pending connection on lfd. */
static void srv_accept(int ep, int lfd)
{
	for (;;) {
		struct srv_conn *c;
		struct epoll_event ev;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				fprintf(stderr, "sfload: accept: %s\n", strerror(errno));
				return;
			}
			die("accept");
		}
		set_nodelay(fd);
		if ((c = calloc(1, sizeof(*c))) == NULL)
			die("calloc");
		c->fd = fd;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
	}
}

/* `sfload serve`: sink, source and echo on one port until SIGTERM or SIGINT. */
int cmd_serve(const struct opts *o)
{
	struct epoll_event ev, evs[SL_MAX_EVENTS];
	int lfd, ep, one = 1;

	memset(source_buf, 'x', sizeof(source_buf));
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("SO_REUSEADDR");
	if (bind(lfd, (const struct sockaddr *)&o->target, sizeof(o->target)) < 0)
		die("bind");
	if (listen(lfd, 4096) < 0)
		die("listen");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");
	catch_stop_signals();
	print_ready(&o->target);
	while (!stop_flag) {
		int n = epoll_wait(ep, evs, SL_MAX_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		/*
		 * One busy connection may move 16 chunks a wakeup; among several,
		 * each moves one (level-triggered: the rest on the next turn), so
		 * the server is not what makes many streams unfair.
		 */
		for (int i = 0; i < n; i++) {
			struct srv_conn *c = evs[i].data.ptr;

			if (c == NULL)
				srv_accept(ep, lfd);
			else if (srv_event(ep, c, n == 1 ? 16 : 1) < 0)
				srv_close(c);
		}
	}
	return 0;
}
