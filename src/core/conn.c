/*
 * Per-connection policy shared by every engine: admission, the upstream
 * connect with fail-over and passive health, the connected hook,
 * timeouts, half-close, reset propagation, accounting and the close log
 * line. See conn.h for the lifecycle.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/proxy.h"
#include "sockfwd/stats.h"
#include "sockfwd/worker.h"

void sf_conn_init(struct sf_conn *c, struct sf_worker *w, struct sf_lsock *ls, int cfd,
		  const struct sf_sockaddr *peer)
{
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->gen = ls->l->gen; /* not w->gen: a reload may have moved on */
	sf_gen_ref(c->gen);
	c->l = ls->l;
	c->rule = ls->l->rule;
	c->fd[SF_CLIENT] = cfd;
	c->fd[SF_UPSTREAM] = -1;
	c->up = -1;
	c->start_ms = c->last_ms = sf_now_ms();
	c->kind = (uint8_t)ls->l->rule->mode;
	if (peer != NULL)
		sf_inaddr_set(&c->peer, peer);
	sf_timer_init(&c->timer, NULL);
	c->ctr = &c->rule->st->w[w->id];
	sf_ctr_add(&w->stats.accepted, 1, w->ctr_shared);
	sf_ctr_add(&w->stats.active, 1, w->ctr_shared);
	sf_ctr_add(&c->ctr->accepted, 1, w->ctr_shared);
}

/* This worker's counters of upstream i of c's rule. */
static struct sf_up_ctr *up_ctr(const struct sf_conn *c, int i)
{
	return &c->rule->ups[i].st->w[c->w->id];
}

/* Does anything need the client's address (engines may skip getpeername)? */
static int needs_peer(const struct sf_conn *c)
{
	const struct sf_rule *r = c->rule;

	return r->allow != NULL || r->deny != NULL || r->pol->balance == SF_BAL_SOURCE ||
	       r->pol->proxy_protocol != SF_PP_NONE || sf_log_level() >= SF_LOG_VERBOSE;
}

int sf_conn_admit(struct sf_conn *c)
{
	if (c->peer.len == 0 && needs_peer(c)) {
		c->peer.len = sizeof(c->peer.u);
		if (getpeername(c->fd[SF_CLIENT], &c->peer.u.sa, &c->peer.len) < 0)
			return -errno;
	}
	if (c->rule->pol->accept_proxy) {
		c->hdr = malloc(SF_PROXY_V2_MAX);
		if (c->hdr == NULL)
			return -ENOMEM;
		c->flags |= SF_CONN_PROXY;
		return 1; /* allow/deny applies to the address in the header */
	}
	return sf_rule_allows(c->rule, &c->peer.u.sa) ? 0 : -EACCES;
}

/*
 * Header bytes are peeked, then consumed: all of them while the header
 * is incomplete (they can only be header), exactly the rest once it is
 * complete, so the first client byte stays in the socket. Works the same
 * on blocking sockets (naive), where a peek of a partial header would
 * otherwise return at once forever. uring's sockets are blocking too but
 * its worker must never wait: it asks for MSG_DONTWAIT.
 */
int sf_conn_read_proxy(struct sf_conn *c, int nonblock)
{
	int dontwait = nonblock ? MSG_DONTWAIT : 0;
	struct sf_proxy_info info;
	int fd = c->fd[SF_CLIENT];
	ssize_t n, hlen;

	for (;;) {
		n = recv(fd, c->hdr + c->hdr_len, SF_PROXY_V2_MAX - c->hdr_len,
			 MSG_PEEK | dontwait);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		if (n == 0)
			return -EPROTO; /* FIN before a whole header */
		hlen = sf_proxy_decode(c->hdr, c->hdr_len + (size_t)n, &info);
		if (hlen < 0)
			return -EPROTO;
		if (hlen == 0) {
			if (c->hdr_len + (size_t)n >= SF_PROXY_V2_MAX)
				return -EPROTO;
			/* Every byte so far is header: take them and wait for more. */
			if (recv(fd, c->hdr + c->hdr_len, (size_t)n, 0) != n)
				return -EIO;
			c->hdr_len += (uint16_t)n;
			continue;
		}
		n = hlen - c->hdr_len;
		if (n > 0 && recv(fd, c->hdr + c->hdr_len, (size_t)n, 0) != n)
			return -EIO;
		break;
	}
	free(c->hdr);
	c->hdr = NULL;
	c->flags &= ~SF_CONN_PROXY;
	if (!info.local) {
		sf_inaddr_set(&c->peer, &info.src);
		sf_inaddr_set(&c->local, &info.dst);
	}
	return sf_rule_allows(c->rule, &c->peer.u.sa) ? 1 : -EACCES;
}

/*
 * The address of upstream u at index i, with a port range applied: what
 * is tried, and what the close line shows (derived, not stored).
 */
static void upstream_addr(const struct sf_conn *c, const struct sf_upstream *u, unsigned i,
			  struct sf_sockaddr *a)
{
	*a = u->addrs.a[i];
	if (u->conf.port_last != u->conf.hp.port)
		sf_addr_set_port(a, (uint16_t)(u->conf.hp.port + c->l->index));
}

/*
 * sf_conn_connect, with err the error to report when no upstream is left
 * to try: the last attempt's (a connect timeout must not be logged as
 * "Connection refused").
 */
static int conn_connect(struct sf_conn *c, int blocking, int err)
{
	struct sf_rule *r = c->rule;
	uint64_t now = sf_now_ms();
	int rc = err, idx;

	for (;;) {
		struct sf_sockaddr ua;
		struct sf_upstream *u;

		if (c->up < 0 || c->addr >= r->ups[c->up].addrs.n) {
			idx = sf_rule_pick(r, &c->peer.u.sa, c->tried, now);
			if (idx < 0)
				return rc;
			c->up = idx;
			c->addr = 0;
			c->tried |= 1ull << idx;
		}
		u = &r->ups[c->up];
		upstream_addr(c, u, c->addr, &ua);
		sf_ctr_add(&up_ctr(c, c->up)->attempts, 1, c->w->ctr_shared);
		rc = sf_net_connect(&ua, blocking, blocking ? r->pol->connect_timeout_ms : 0,
				    &r->pol->bufs, &c->fd[SF_UPSTREAM]);
		if (rc == 0 || (rc == -EINPROGRESS && !blocking))
			return rc;
		if (rc == -EINPROGRESS) {
			/* A blocking connect past SO_SNDTIMEO: the connect timeout. */
			close(c->fd[SF_UPSTREAM]);
			c->fd[SF_UPSTREAM] = -1;
			rc = -ETIMEDOUT;
		}
		/* Out of descriptors: another address will not help. */
		if (rc == -EMFILE || rc == -ENFILE) {
			c->flags |= SF_CONN_NOFD;
			return rc;
		}
		sf_ctr_add(&up_ctr(c, c->up)->failures, 1, c->w->ctr_shared);
		if (rc == -ETIMEDOUT)
			c->flags |= SF_CONN_TIMEDOUT;
		else
			c->flags &= ~SF_CONN_TIMEDOUT;
		if (++c->addr >= u->addrs.n)
			sf_upstream_failed(r, u, now);
	}
}

int sf_conn_connect(struct sf_conn *c, int blocking)
{
	return conn_connect(c, blocking, -ECONNREFUSED);
}

int sf_conn_connect_next(struct sf_conn *c, int err)
{
	struct sf_upstream *u;

	if (c->fd[SF_UPSTREAM] >= 0) {
		close(c->fd[SF_UPSTREAM]);
		c->fd[SF_UPSTREAM] = -1;
	}
	if (c->up < 0)
		return err;
	sf_ctr_add(&up_ctr(c, c->up)->failures, 1, c->w->ctr_shared);
	if (err == -ETIMEDOUT)
		c->flags |= SF_CONN_TIMEDOUT;
	else
		c->flags &= ~SF_CONN_TIMEDOUT;
	u = &c->rule->ups[c->up];
	if (++c->addr >= u->addrs.n)
		sf_upstream_failed(c->rule, u, sf_now_ms());
	return conn_connect(c, 0, err);
}

int sf_conn_refused_reason(const struct sf_conn *c, int err)
{
	if (err == -EACCES)
		return SF_R_DENIED;
	if (err == -ENOMEM || err == -EMFILE || err == -ENFILE)
		return SF_R_LIMIT;
	return (c->flags & SF_CONN_PROXY) ? SF_R_PROXY_HEADER : SF_R_RESET;
}

int sf_conn_connect_reason(const struct sf_conn *c)
{
	if (c->flags & SF_CONN_NOFD)
		return SF_R_LIMIT;
	return (c->flags & SF_CONN_TIMEDOUT) ? SF_R_CONNECT_TIMEOUT : SF_R_REFUSED;
}

/*
 * Send the PROXY header: the socket is fresh, so it fits whole or fails.
 * The peer is known: sf_conn_admit made sure of it for this rule.
 */
static int send_proxy_header(struct sf_conn *c)
{
	char hdr[SF_PROXY_ENC_MAX];
	ssize_t n, m;

	if (c->local.len == 0) {
		c->local.len = sizeof(c->local.u);
		if (getsockname(c->fd[SF_CLIENT], &c->local.u.sa, &c->local.len) < 0)
			return -errno;
	}
	n = sf_proxy_encode(c->rule->pol->proxy_protocol, &c->peer.u.sa, &c->local.u.sa, hdr,
			    sizeof(hdr));
	if (n < 0)
		return (int)n;
	do
		m = send(c->fd[SF_UPSTREAM], hdr, (size_t)n, MSG_NOSIGNAL);
	while (m < 0 && errno == EINTR);
	if (m < 0)
		return -errno;
	return m == n ? 0 : -EIO;
}

int sf_conn_connected(struct sf_conn *c)
{
	struct sf_upstream *u = &c->rule->ups[c->up];
	const struct sf_policy *p = c->rule->pol;

	sf_upstream_ok(u);
	/* The shared count, a locked add, only where leastconn reads it. */
	if (p->balance == SF_BAL_LEASTCONN)
		SF_ATOMIC_ADD(u->active, 1);
	sf_ctr_add_rel(&up_ctr(c, c->up)->opened, 1, c->w->ctr_shared);
	c->flags |= SF_CONN_UP;
	c->flags &= ~SF_CONN_TIMEDOUT;
	/* The client socket inherited keepalive from its listener. */
	if (p->keepalive)
		sf_net_keepalive(c->fd[SF_UPSTREAM], 1);
	c->last_ms = sf_now_ms();
	if (p->proxy_protocol != SF_PP_NONE)
		return send_proxy_header(c);
	return 0;
}

uint64_t sf_conn_deadline(const struct sf_conn *c, int connecting, uint64_t now)
{
	const struct sf_policy *p = c->rule->pol;

	if (c->flags & SF_CONN_PROXY)
		return c->start_ms + SF_PROXY_TIMEOUT;
	if (connecting)
		return now + p->connect_timeout_ms;
	return p->idle_timeout_ms ? c->last_ms + p->idle_timeout_ms : 0;
}

int sf_conn_idle(const struct sf_conn *c, uint64_t now)
{
	uint64_t idle = c->rule->pol->idle_timeout_ms;

	/* Relaxed: naive's two threads write last_ms while either checks it. */
	return idle != 0 && now >= __atomic_load_n(&c->last_ms, __ATOMIC_RELAXED) + idle;
}

int sf_conn_shut(struct sf_conn *c, int d, int closing)
{
	int both;

	c->flags |= SF_CONN_SHUT(d);
	both = (c->flags & (SF_CONN_SHUT(SF_C2U) | SF_CONN_SHUT(SF_U2C))) ==
	       (SF_CONN_SHUT(SF_C2U) | SF_CONN_SHUT(SF_U2C));
	/*
	 * The last direction of a caller that closes at once: the close
	 * sends the FIN, one system call fewer per connection. Nothing is
	 * unread on that socket (its own direction ended with EOF), so the
	 * close cannot turn into a reset. ENOTCONN from the shutdown means
	 * the destination already went away; the next write or read on it
	 * reports that, so nothing to do now.
	 */
	if (!both || !closing)
		(void)shutdown(c->fd[!d], SHUT_WR);
	return both;
}

/* ---- meet and bridge ---- */

int sf_conn_meet_join(struct sf_conn *c, unsigned wside, int fd, const struct sf_sockaddr *peer)
{
	if (wside == 1) {
		c->fd[1] = c->fd[0];
		c->fd[0] = fd;
		c->partner = c->peer;
		memset(&c->peer, 0, sizeof(c->peer));
		if (peer != NULL)
			sf_inaddr_set(&c->peer, peer);
	} else {
		c->fd[1] = fd;
		if (peer != NULL)
			sf_inaddr_set(&c->partner, peer);
	}
	c->last_ms = sf_now_ms();
	return (int)wside;
}

uint64_t sf_conn_meet_deadline(const struct sf_conn *c)
{
	uint64_t t = c->rule->pol->meet_timeout_ms;

	return t ? c->start_ms + t : 0;
}

void sf_conn_init_bridge(struct sf_conn *c, struct sf_worker *w, struct sf_gen *g,
			 struct sf_rule *r)
{
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->gen = g;
	sf_gen_ref(g);
	c->rule = r;
	c->kind = SF_MODE_BRIDGE;
	c->fd[0] = c->fd[1] = -1;
	c->up = -1;
	c->start_ms = c->last_ms = sf_now_ms();
	sf_timer_init(&c->timer, NULL);
	c->ctr = &r->st->w[w->id];
	sf_ctr_add(&w->stats.accepted, 1, w->ctr_shared);
	sf_ctr_add(&w->stats.active, 1, w->ctr_shared);
	sf_ctr_add(&c->ctr->accepted, 1, w->ctr_shared);
}

/* Side d's address failed with rc: count it; the last one marks its upstream failed. */
static void bridge_failed(struct sf_conn *c, int d, int rc)
{
	struct sf_upstream *u = &c->rule->ups[d];

	sf_ctr_add(&up_ctr(c, d)->failures, 1, c->w->ctr_shared);
	if (rc == -ETIMEDOUT)
		c->flags |= SF_CONN_TIMEDOUT;
	else
		c->flags &= ~SF_CONN_TIMEDOUT;
	if (++c->baddr[d] >= u->addrs.n)
		sf_upstream_failed(c->rule, u, sf_now_ms());
}

int sf_conn_bridge_connect(struct sf_conn *c, int d)
{
	struct sf_upstream *u = &c->rule->ups[d];
	int rc = -ECONNREFUSED;

	while (c->baddr[d] < u->addrs.n) {
		sf_ctr_add(&up_ctr(c, d)->attempts, 1, c->w->ctr_shared);
		rc = sf_net_connect(&u->addrs.a[c->baddr[d]], 0, 0, &c->rule->pol->bufs, &c->fd[d]);
		if (rc == 0 || rc == -EINPROGRESS)
			return rc;
		c->fd[d] = -1;
		if (rc == -EMFILE || rc == -ENFILE)
			return rc;
		bridge_failed(c, d, rc);
	}
	return rc;
}

int sf_conn_bridge_next(struct sf_conn *c, int d, int err)
{
	if (c->fd[d] >= 0) {
		close(c->fd[d]);
		c->fd[d] = -1;
	}
	bridge_failed(c, d, err);
	if (c->baddr[d] >= c->rule->ups[d].addrs.n)
		return err;
	return sf_conn_bridge_connect(c, d);
}

int sf_conn_bridge_connected(struct sf_conn *c, int d)
{
	struct sf_upstream *u = &c->rule->ups[d];

	sf_upstream_ok(u);
	sf_ctr_add_rel(&up_ctr(c, d)->opened, 1, c->w->ctr_shared);
	c->bup |= (uint8_t)(1u << d);
	if (c->rule->pol->keepalive)
		sf_net_keepalive(c->fd[d], 1);
	if (c->bup != 3)
		return 0;
	c->flags &= ~SF_CONN_TIMEDOUT;
	c->last_ms = sf_now_ms();
	return 1;
}

/* A bridge connection ends: its connected sides count as closed upstream connections. */
static void bridge_finish(struct sf_conn *c)
{
	int d;

	for (d = 0; d < 2; d++)
		if (c->bup & (1u << d))
			sf_ctr_add_rel(&up_ctr(c, d)->closed, 1, c->w->ctr_shared);
}

/*
 * The two ends of a meet or bridge connection for its close line: the
 * clients of the first and second listen address, or the addresses of
 * the two upstreams (the one being tried while connecting).
 */
static void pair_addrs(const struct sf_conn *c, char *a, char *b, size_t len)
{
	char *out[2] = { a, b };
	int d;

	if (c->kind == SF_MODE_MEET) {
		const struct sf_inaddr *in[2] = { &c->peer, &c->partner };

		for (d = 0; d < 2; d++) {
			if (in[d]->len > 0)
				sf_addr_format(&in[d]->u.sa, out[d], len);
			else
				snprintf(out[d], len, "-");
		}
		return;
	}
	for (d = 0; d < 2; d++) {
		const struct sf_upstream *u = &c->rule->ups[d];
		unsigned i = c->baddr[d] < u->addrs.n ? c->baddr[d] : u->addrs.n - 1;

		sf_addr_format((const struct sockaddr *)&u->addrs.a[i].ss, out[d], len);
	}
}

/*
 * The -v close line. Text keeps the line operators know; JSON gets the
 * same facts as fields (docs/operations.md lists them).
 */
static void log_close(const struct sf_conn *c, int reason, int side, int err, int reset)
{
	char cbuf[SF_ADDRSTRLEN], ubuf[SF_ADDRSTRLEN], detail[160] = "";
	const char *sidename = side == SF_CLIENT ? "client" : side == SF_UPSTREAM ? "upstream" : "";
	uint64_t dur = sf_now_ms() - c->start_ms;

	if (c->kind != SF_MODE_FORWARD) {
		pair_addrs(c, cbuf, ubuf, sizeof(cbuf));
	} else if (c->up >= 0) {
		const struct sf_upstream *u = &c->rule->ups[c->up];
		struct sf_sockaddr ua;

		/* After the last address failed, addr is one past it. */
		upstream_addr(c, u, c->addr < u->addrs.n ? c->addr : u->addrs.n - 1, &ua);
		sf_addr_format((const struct sockaddr *)&ua.ss, ubuf, sizeof(ubuf));
	} else {
		strcpy(ubuf, "-");
	}
	if (c->kind != SF_MODE_FORWARD)
		; /* pair_addrs named both ends */
	else if (c->peer.len > 0)
		sf_addr_format(&c->peer.u.sa, cbuf, sizeof(cbuf));
	else
		strcpy(cbuf, "-");
	if (side >= 0 || err != 0)
		snprintf(detail, sizeof(detail), " (%s%s%s)", sidename,
			 side >= 0 && err ? ": " : "", err ? strerror(-err) : "");
	{
		const struct sf_log_kv kv[] = {
			SF_KV_S("rule", c->rule->name),
			SF_KV_S("client",
				c->peer.len > 0 || c->kind == SF_MODE_BRIDGE ? cbuf : NULL),
			SF_KV_S("upstream", c->up >= 0 || c->kind != SF_MODE_FORWARD ? ubuf : NULL),
			SF_KV_U("bytes_c2u", c->bytes[0]),
			SF_KV_U("bytes_u2c", c->bytes[1]),
			SF_KV_U("spliced_c2u", c->spliced[0]),
			SF_KV_U("spliced_u2c", c->spliced[1]),
			SF_KV_U("duration_ms", dur),
			SF_KV_S("reason", sf_reason_name(reason)),
			SF_KV_B("reset", reset),
			SF_KV_S("side", side >= 0 ? sidename : NULL),
			SF_KV_S("error", err ? strerror(-err) : NULL),
		};

		sf_log_event(SF_LOG_VERBOSE, "close", kv, sizeof(kv) / sizeof(kv[0]),
			     "close %s -> %s rule=%s c2u=%llu u2c=%llu spliced=%llu/%llu "
			     "time=%llu.%03llus %s=%s%s",
			     cbuf, ubuf, c->rule->name, (unsigned long long)c->bytes[0],
			     (unsigned long long)c->bytes[1], (unsigned long long)c->spliced[0],
			     (unsigned long long)c->spliced[1], (unsigned long long)(dur / 1000u),
			     (unsigned long long)(dur % 1000u), reset ? "reset" : "reason",
			     sf_reason_name(reason), detail);
	}
}

/*
 * Fold the connection into its worker's counters (its bytes were counted
 * in its rule's as they moved), log, let go.
 */
static void conn_finish(struct sf_conn *c, int reason, int side, int err, int reset)
{
	struct sf_worker *w = c->w;
	struct sf_rule *r = c->rule;
	int sh = w->ctr_shared;

	c->flags |= SF_CONN_CLOSED;
	sf_ctr_add(&w->stats.closed, 1, sh);
	if (reset)
		sf_ctr_add(&w->stats.resets, 1, sh);
	sf_ctr_add(&w->stats.bytes[0], c->bytes[0], sh);
	sf_ctr_add(&w->stats.bytes[1], c->bytes[1], sh);
	sf_ctr_add(&w->stats.spliced[0], c->spliced[0], sh);
	sf_ctr_add(&w->stats.spliced[1], c->spliced[1], sh);
	if (reason == SF_R_STOP)
		sf_ctr_add(&w->stats.stopped, 1, sh);
	if (c->kind == SF_MODE_BRIDGE)
		bridge_finish(c);
	if (c->flags & SF_CONN_UP) {
		if (r->pol->balance == SF_BAL_LEASTCONN)
			SF_ATOMIC_SUB(r->ups[c->up].active, 1);
		sf_ctr_add_rel(&up_ctr(c, c->up)->closed, 1, sh);
	}
	/* Last of the counters: a reader that sees the close sees the rest. */
	sf_ctr_add_rel(&c->ctr->closed[reason], 1, sh);
	sf_rule_release(r);
	free(c->hdr);
	c->hdr = NULL;
	if (sf_log_level() >= SF_LOG_VERBOSE)
		log_close(c, reason, side, err, reset);
	/* Last: the rule lives in the generation. */
	sf_gen_unref(c->gen);
	c->gen = NULL;
	/* After the counters, so that a drained worker has counted everything. */
	sf_worker_conn_ended(w);
}

void sf_conn_close(struct sf_conn *c)
{
	close(c->fd[SF_CLIENT]);
	if (c->fd[SF_UPSTREAM] >= 0)
		close(c->fd[SF_UPSTREAM]);
	c->fd[SF_CLIENT] = c->fd[SF_UPSTREAM] = -1;
	conn_finish(c, SF_R_EOF, -1, 0, 0);
}

void sf_conn_reset(struct sf_conn *c, int reason, int side, int err)
{
	sf_net_reset(c->fd[SF_CLIENT]);
	if (c->fd[SF_UPSTREAM] >= 0)
		sf_net_reset(c->fd[SF_UPSTREAM]);
	c->fd[SF_CLIENT] = c->fd[SF_UPSTREAM] = -1;
	conn_finish(c, reason, side, err, 1);
}
