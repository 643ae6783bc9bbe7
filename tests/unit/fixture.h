/*
 * Real fixtures for the unit tests of conn.c and the reactor: a
 * generation built from a config file's text exactly as sockfwd builds
 * it (options, sf_config_load, sf_config_finish, sf_gen_build), loopback
 * listeners and connected TCP pairs. No mocks: the code under test sees
 * what it sees in production.
 */
#ifndef SOCKFWD_TESTS_FIXTURE_H
#define SOCKFWD_TESTS_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockfwd/config.h"
#include "sockfwd/options.h"
#include "sockfwd/rule.h"

/* The generation of config text (printf-style), for nworkers workers. */
static inline struct sf_gen *fx_gen(unsigned nworkers, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline struct sf_gen *fx_gen(unsigned nworkers, const char *fmt, ...)
{
	char path[] = "/tmp/sockfwd-unit-XXXXXX", err[512] = "";
	char *argv[] = { "sockfwd", "-c", path, NULL };
	struct sf_config cfg;
	struct sf_gen *g = NULL;
	va_list ap;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	cr_assert(fd >= 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(sf_options_parse(3, argv, &cfg, err, sizeof(err)), SF_OPT_RUN, "%s", err);
	cr_assert_eq(sf_config_load(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sf_config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	unlink(path);
	cr_assert_eq(sf_gen_build(&cfg, nworkers, &g, err, sizeof(err)), 0, "%s", err);
	return g;
}

static inline struct sockaddr_in fx_lo(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	return a;
}

/* A listening loopback TCP socket on an ephemeral port (*port), with backlog. */
static inline int fx_listen(int *port, int backlog)
{
	struct sockaddr_in a = fx_lo(0);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(listen(fd, backlog) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A loopback port nothing listens on (bound, never listening: refused). */
static inline int fx_refused_port(int *holder)
{
	struct sockaddr_in a = fx_lo(0);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	/* Kept bound, so no other test takes the port and listens on it. */
	*holder = fd;
	return ntohs(a.sin_port);
}

/* A free loopback port (closed again: the caller binds it soon). */
static inline int fx_free_port(void)
{
	int port, fd = fx_listen(&port, 1);

	close(fd);
	return port;
}

/* Bound every blocking call of fd: a hang becomes an error, not a stuck test. */
static inline void fx_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A blocking loopback TCP client of port (bounded by fx_timeouts). */
static inline int fx_connect(int port)
{
	struct sockaddr_in a = fx_lo(port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	fx_timeouts(fd);
	cr_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect :%d: %s", port,
		  strerror(errno));
	return fd;
}

/* A connected loopback TCP pair: fd[0] the connecting end, fd[1] the accepted one. */
static inline void fx_tcp_pair(int fd[2])
{
	int port, lfd = fx_listen(&port, 4);

	fd[0] = fx_connect(port);
	fd[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(fd[1] >= 0);
	fx_timeouts(fd[1]);
	close(lfd);
}

/* Wait (bounded: 5 s) until fd is readable; 1 if it is. */
static inline int fx_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 5000) == 1;
}

/* Read exactly len bytes (bounded by the socket's timeouts). Returns bytes read, -errno. */
static inline ssize_t fx_read_all(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = recv(fd, (char *)buf + got, len - got, 0);
		if (n < 0)
			return got > 0 ? (ssize_t)got : -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/*
 * A loopback upstream that never answers a SYN: a listener with a
 * backlog of 0 whose one queued connection is never accepted drops the
 * next SYNs, so a connect to it times out.
 */
struct fx_blackhole {
	int lfd, filler, port;
};

static inline void fx_blackhole_open(struct fx_blackhole *b)
{
	b->lfd = fx_listen(&b->port, 0);
	b->filler = fx_connect(b->port);
}

static inline void fx_blackhole_close(struct fx_blackhole *b)
{
	close(b->filler);
	close(b->lfd);
}

#endif
