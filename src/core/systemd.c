/*
 * systemd integration: socket activation and sd_notify. See
 * include/sockfwd/systemd.h for the matching rules.
 *
 * A passed socket is one listening socket that every worker accepts from
 * (each through its own dup), instead of one SO_REUSEPORT socket per
 * worker: systemd bound it once and holds it across restarts.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "sockfwd/log.h"
#include "sockfwd/rule.h"
#include "sockfwd/systemd.h"

struct sd_sock {
	int fd;
	char *name; /* FileDescriptorName=, "unknown" when systemd gave none */
	struct sf_sockaddr addr;
};

static struct sd_sock *socks;
static size_t nsocks;
static int taken; /* the environment was read */

/* Same family, port and address (scope and flow label do not matter). */
static int addr_eq(const struct sf_sockaddr *a, const struct sf_sockaddr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return 0;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;

		return x->sin_port == y->sin_port &&
		       memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr)) == 0;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return 0;
}

static const char *fmt(const struct sf_sockaddr *a, char *buf, size_t len)
{
	return sf_addr_format((const struct sockaddr *)&a->ss, buf, len);
}

/*
 * Check that fd is a listening TCP socket over IPv4 or IPv6, record its
 * address in s and make it non-blocking (the engines expect it; the flag
 * is shared by every dup). Returns 0, or -EINVAL with a message.
 */
static int check_sock(int fd, struct sd_sock *s, char *err, size_t errlen)
{
	int type = 0, acc = 0, proto = 0, fl;
	socklen_t len = sizeof(int);
	const char *what = NULL;

	s->addr.len = sizeof(s->addr.ss);
	if (getsockname(fd, (struct sockaddr *)&s->addr.ss, &s->addr.len) < 0)
		what = "is not a socket";
	else if (s->addr.ss.ss_family != AF_INET && s->addr.ss.ss_family != AF_INET6)
		what = "is not an IPv4 or IPv6 socket";
	else if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM)
		/*
		 * One passed datagram socket would be shared by every worker, so
		 * one client's datagrams could reach two workers and open two
		 * sessions: UDP rules bind their own SO_REUSEPORT sockets.
		 */
		what = "is a datagram socket (ListenDatagram=), not a TCP stream socket: UDP "
		       "rules bind their own sockets, one per worker; remove it from the "
		       "socket unit";
	else if (type != SOCK_STREAM ||
		 getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &(socklen_t){ sizeof(int) }) < 0 ||
		 proto != IPPROTO_TCP)
		what = "is not a TCP stream socket (ListenStream= is needed)";
	else if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &(socklen_t){ sizeof(int) }) < 0 ||
		 !acc)
		what = "is not listening (Accept=no is needed)";
	if (what != NULL) {
		snprintf(err, errlen, "socket activation: passed descriptor %d (name '%s') %s", fd,
			 s->name, what);
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "socket activation: descriptor %d: O_NONBLOCK: %s", fd,
			 strerror(errno));
		return -EINVAL;
	}
	return 0;
}

/*
 * Take the sockets systemd passed, once. Returns their number, or
 * -EINVAL with a message (the process should not run half-activated).
 */
static int take_socks(char *err, size_t errlen)
{
	char **names = NULL;
	int i, n, rc = 0;

	if (taken)
		return (int)nsocks;
	taken = 1;
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		snprintf(err, errlen, "socket activation: LISTEN_FDS: %s", strerror(-n));
		return -EINVAL;
	}
	if (n == 0)
		return 0;
	socks = calloc((size_t)n, sizeof(*socks));
	if (socks == NULL)
		rc = -ENOMEM;
	for (i = 0; i < n && rc == 0; i++) {
		struct sd_sock *s = &socks[i];

		s->fd = SD_LISTEN_FDS_START + i;
		/* libsystemd names every socket, "unknown" by default. */
		s->name = strdup(names != NULL && names[i] != NULL ? names[i] : "unknown");
		if (s->name == NULL) {
			rc = -ENOMEM;
			break;
		}
		nsocks++;
		rc = check_sock(s->fd, s, err, errlen);
	}
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	for (i = 0; names != NULL && i < n; i++)
		free(names[i]);
	free(names);
	return rc < 0 ? rc : n;
}

/* The listener of g bound (by candidate address) where s is, or NULL. */
static struct sf_listener *find_listener(struct sf_gen *g, const struct sd_sock *s)
{
	size_t i, k;

	for (i = 0; i < g->nls; i++)
		for (k = 0; k < g->ls[i].cand.n && g->ls[i].proto == SF_PROTO_TCP; k++)
			if (addr_eq(&g->ls[i].cand.a[k], &s->addr))
				return &g->ls[i];
	return NULL;
}

/* Up to three listen addresses of rule r in g, for a message. */
static void rule_addrs(const struct sf_gen *g, const struct sf_rule *r, char *buf, size_t len)
{
	char abuf[SF_ADDRSTRLEN];
	size_t i, n = 0, off = 0;

	buf[0] = '\0';
	for (i = 0; i < g->nls && off < len; i++) {
		if (g->ls[i].rule != r)
			continue;
		if (n++ == 3) {
			snprintf(buf + off, len - off, " ...");
			break;
		}
		off += (size_t)snprintf(buf + off, len - off, "%s%s", n > 1 ? " " : "",
					fmt(&g->ls[i].cand.a[0], abuf, sizeof(abuf)));
	}
}

/* Match passed socket i against g; see sf_sd_match. */
static int match_one(struct sf_gen *g, size_t i, char *err, size_t errlen)
{
	const struct sd_sock *s = &socks[i];
	struct sf_rule *r = sf_gen_rule(g, s->name);
	struct sf_listener *l = find_listener(g, s);
	char abuf[SF_ADDRSTRLEN], list[4 * SF_ADDRSTRLEN];
	size_t j;

	if (r != NULL && (l == NULL || l->rule != r)) {
		rule_addrs(g, r, list, sizeof(list));
		snprintf(err, errlen,
			 "socket activation: socket '%s' is bound to %s, which is not a listen "
			 "address of rule '%s' (%s)",
			 s->name, fmt(&s->addr, abuf, sizeof(abuf)), r->name, list);
		return -EINVAL;
	}
	if (l == NULL) {
		snprintf(err, errlen,
			 "socket activation: socket '%s' bound to %s matches no rule name and no "
			 "listen address",
			 s->name, fmt(&s->addr, abuf, sizeof(abuf)));
		return -EINVAL;
	}
	for (j = 0; j < i; j++) {
		if (find_listener(g, &socks[j]) == l) {
			snprintf(err, errlen,
				 "socket activation: sockets '%s' and '%s' are both for %s (rule "
				 "'%s')",
				 socks[j].name, s->name, fmt(&s->addr, abuf, sizeof(abuf)),
				 l->rule->name);
			return -EINVAL;
		}
	}
	return 0;
}

int sf_sd_match(struct sf_gen *g, char *err, size_t errlen)
{
	static int logged;
	char abuf[SF_ADDRSTRLEN];
	size_t i;
	int rc = take_socks(err, errlen);

	for (i = 0; rc > 0 && i < nsocks; i++) {
		int m = match_one(g, i, err, errlen);

		if (m < 0)
			return m;
	}
	/* Once, at start: which address came from systemd, for the operator. */
	for (i = 0; rc > 0 && !logged && i < nsocks; i++)
		sf_log_info("socket activation: socket '%s' on %s for rule '%s'", socks[i].name,
			    fmt(&socks[i].addr, abuf, sizeof(abuf)),
			    find_listener(g, &socks[i])->rule->name);
	logged = 1;
	return rc;
}

int sf_sd_listener_fd(struct sf_listener *l)
{
	size_t i, k;

	if (l->proto != SF_PROTO_TCP)
		return -1; /* passed sockets are TCP only (check_sock) */
	for (i = 0; i < nsocks; i++) {
		for (k = 0; k < l->cand.n; k++) {
			if (addr_eq(&l->cand.a[k], &socks[i].addr)) {
				l->addr = l->cand.a[k];
				return socks[i].fd;
			}
		}
	}
	return -1;
}

void sf_sd_close(void)
{
	size_t i;

	for (i = 0; i < nsocks; i++) {
		close(socks[i].fd);
		free(socks[i].name);
	}
	free(socks);
	socks = NULL;
	nsocks = 0;
}

void sf_sd_ready(const struct sf_gen *g, int reload_failed)
{
	(void)sd_notifyf(0, "READY=1\nSTATUS=%s%zu rule%s on %zu listener%s%s",
			 reload_failed ? "reload failed (see the log); still serving " : "serving ",
			 g->nrules, g->nrules == 1 ? "" : "s", g->nls, g->nls == 1 ? "" : "s",
			 nsocks > 0 ? ", socket-activated" : "");
}

void sf_sd_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* Type=notify-reload needs MONOTONIC_USEC to tell this reload from an older one. */
	(void)sd_notifyf(0, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
			 (unsigned long long)ts.tv_sec * 1000000ull +
				 (unsigned long long)ts.tv_nsec / 1000);
}

/* Once: a drain sends it at its start, and the stop that follows again. */
void sf_sd_stopping(void)
{
	static int sent;

	if (sent++ == 0)
		(void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}
