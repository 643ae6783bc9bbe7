/*
 * core/conn.c: the connection policy every engine shares, on rules built
 * from config text and real sockets (socketpairs, loopback TCP): the
 * deadlines, half-close and reset as the peers see them, the upstream
 * connect with pool fail-over and its counters, the close reasons, byte
 * accounting, the PROXY header read, admission by ACL and max_conns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fixture.h"
#include "sockfwd/conn.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/proxy.h"
#include "sockfwd/stats.h"
#include "sockfwd/worker.h"

static struct sf_worker w;

static void worker_setup(void)
{
	memset(&w, 0, sizeof(w));
	w.now_ms = sf_now_ms();
}

/* The (first) listener socket of worker 0 for rule name of g. */
static struct sf_lsock *lsock(struct sf_gen *g, const char *name)
{
	struct sf_rule *r = sf_gen_rule(g, name);

	cr_assert_not_null(r, "no rule %s", name);
	for (size_t i = 0; i < g->nls; i++)
		if (g->ls[i].rule == r)
			return &g->ls[i].socks[0];
	cr_assert_fail("rule %s has no listener", name);
	return NULL;
}

/* This worker's counters of upstream i of c's rule. */
static struct sf_up_ctr *upc(const struct sf_conn *c, int i) { return &c->rule->ups[i].st->w[0]; }

/* A connection of rule name on client socket cfd, as an engine starts one. */
static void conn_start(struct sf_conn *c, struct sf_gen *g, const char *name, int cfd)
{
	struct sf_lsock *ls = lsock(g, name);

	cr_assert(sf_rule_reserve(ls->l->rule));
	sf_conn_init(c, &w, ls, cfd, NULL);
}

static void gen_done(struct sf_gen *g)
{
	cr_assert_eq(w.stats.active, 0, "a connection was not finished");
	cr_assert_eq(g->refs, 1, "a connection kept its generation reference");
	sf_gen_unref(g);
}

/* ---- deadlines, idle, accounting ---- */

Test(conn, deadline_and_idle_follow_the_rule, .init = worker_setup)
{
	struct sf_gen *g =
		fx_gen(1,
		       "rules = {\n"
		       " t = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:9\";\n"
		       "       idle_timeout = \"5s\"; connect_timeout = \"2s\"; };\n"
		       " n = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:9\"; };\n"
		       "};\n",
		       fx_free_port(), fx_free_port());
	struct sf_conn c, d;
	int sp[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	conn_start(&c, g, "t", sp[0]);
	c.start_ms = 500;
	c.last_ms = 1000;
	cr_assert_eq(sf_conn_deadline(&c, 1, 1200), 1200 + 2000, "connecting: the connect timeout");
	cr_assert_eq(sf_conn_deadline(&c, 0, 1200), 1000 + 5000, "established: idle after last");
	cr_assert_eq(sf_conn_idle(&c, 5999), 0);
	cr_assert_eq(sf_conn_idle(&c, 6000), 1);
	/* A byte moves: the idle clock restarts at the loop's time. */
	w.now_ms = 5500;
	sf_conn_count(&c, SF_U2C, 10, 0);
	cr_assert_eq(c.last_ms, 5500);
	cr_assert_eq(sf_conn_idle(&c, 6000), 0, "a byte at 5500 keeps it alive at 6000");
	cr_assert_eq(sf_conn_deadline(&c, 0, 6000), 5500 + 5000);
	/* While a PROXY header is awaited, its own deadline from the start. */
	c.flags |= SF_CONN_PROXY;
	cr_assert_eq(sf_conn_deadline(&c, 0, 6000), 500 + SF_PROXY_TIMEOUT);
	cr_assert_eq(sf_conn_deadline(&c, 1, 6000), 500 + SF_PROXY_TIMEOUT);
	c.flags &= ~SF_CONN_PROXY;

	/* No idle_timeout: no timer once established, never idle. */
	conn_start(&d, g, "n", sp[1]);
	d.last_ms = 1000;
	cr_assert_eq(sf_conn_deadline(&d, 0, 1200), 0);
	cr_assert_eq(sf_conn_deadline(&d, 1, 1200), 1200 + SF_DEFAULT_CONNECT_TIMEOUT_MS);
	cr_assert_eq(sf_conn_idle(&d, UINT64_MAX / 2), 0);
	sf_conn_close(&c);
	sf_conn_close(&d);
	gen_done(g);
}

Test(conn, count_bytes_and_spliced, .init = worker_setup)
{
	struct sf_gen *g = fx_gen(1,
				  "rules = { cnt = { listen = \"127.0.0.1:%d\";\n"
				  "  upstream = \"127.0.0.1:9\"; }; };\n",
				  fx_free_port());
	struct sf_rule_ctr *rc;
	struct sf_conn c;
	int sp[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	conn_start(&c, g, "cnt", sp[0]);
	rc = c.ctr;
	cr_assert_eq(rc, &g->rules[0].st->w[0]);
	cr_assert_eq(rc->accepted, 1);
	sf_conn_count(&c, SF_C2U, 100, 0);
	sf_conn_count(&c, SF_C2U, 50, 1);
	sf_conn_count(&c, SF_U2C, 7, 1);
	cr_assert(c.bytes[0] == 150 && c.bytes[1] == 7);
	cr_assert(c.spliced[0] == 50 && c.spliced[1] == 7);
	cr_assert(rc->bytes[0] == 150 && rc->bytes[1] == 7, "the rule counts as bytes move");
	cr_assert(rc->spliced[0] == 50 && rc->spliced[1] == 7);
	cr_assert_eq(w.stats.bytes[0], 0, "the worker's totals wait for the close");
	close(sp[1]);
	sf_conn_close(&c);
	cr_assert(w.stats.bytes[0] == 150 && w.stats.bytes[1] == 7);
	cr_assert(w.stats.spliced[0] == 50 && w.stats.spliced[1] == 7);
	cr_assert(w.stats.closed == 1 && w.stats.resets == 0);
	cr_assert_eq(rc->closed[SF_R_EOF], 1);
	cr_assert(c.fd[0] == -1 && c.fd[1] == -1);
	gen_done(g);
}

/* ---- half-close and reset, as the peers see them ---- */

/*
 * The connection's client socket is cl[1] (its peer cl[0]), its upstream
 * up[0] (its peer up[1]).
 */
static void half_close(int cl[2], int up[2])
{
	struct sf_gen *g = fx_gen(1,
				  "rules = { hc = { listen = \"127.0.0.1:%d\";\n"
				  "  upstream = \"127.0.0.1:9\"; }; };\n",
				  fx_free_port());
	struct sf_conn c;
	char buf[16];

	conn_start(&c, g, "hc", cl[1]);
	c.fd[SF_UPSTREAM] = up[0];
	/* The client sent FIN: pass it on to the upstream only. */
	sf_conn_eof(&c, SF_C2U);
	cr_assert_eq(sf_conn_shut(&c, SF_C2U, 1), 0, "one direction done is not both");
	cr_assert(fx_readable(up[1]));
	cr_assert_eq(recv(up[1], buf, sizeof(buf), 0), 0, "the upstream sees EOF");
	/* The other direction still flows, both ways through the connection's sockets. */
	cr_assert_eq(send(up[1], "reply", 5, MSG_NOSIGNAL), 5, "upstream can still write");
	cr_assert(fx_readable(c.fd[SF_UPSTREAM]));
	cr_assert_eq(recv(c.fd[SF_UPSTREAM], buf, sizeof(buf), 0), 5);
	cr_assert_eq(send(c.fd[SF_CLIENT], "reply", 5, MSG_NOSIGNAL), 5);
	cr_assert(fx_readable(cl[0]));
	cr_assert_eq(recv(cl[0], buf, sizeof(buf), 0), 5);
	cr_assert_eq(memcmp(buf, "reply", 5), 0);
	/* And the client has not seen EOF. */
	errno = 0;
	cr_assert_eq(recv(cl[0], buf, sizeof(buf), MSG_DONTWAIT), -1, "the client saw EOF");
	cr_assert_eq(errno, EAGAIN);
	/*
	 * The upstream's FIN: both done, so no shutdown is made (the
	 * client sees nothing yet) and the close passes the FIN on, an
	 * orderly EOF, not a reset.
	 */
	cr_assert_eq(sf_conn_shut(&c, SF_U2C, 1), 1);
	cr_assert_eq(c.flags & (SF_CONN_SHUT(0) | SF_CONN_SHUT(1)),
		     SF_CONN_SHUT(0) | SF_CONN_SHUT(1));
	errno = 0;
	cr_assert_eq(recv(cl[0], buf, sizeof(buf), MSG_DONTWAIT), -1, "EOF before the close");
	cr_assert_eq(errno, EAGAIN);
	sf_conn_close(&c);
	cr_assert(fx_readable(cl[0]));
	cr_assert_eq(recv(cl[0], buf, sizeof(buf), 0), 0, "the client sees EOF after the close");
	cr_assert_eq(g->rules[0].st->w[0].closed[SF_R_EOF], 1);
	close(cl[0]);
	close(up[1]);
	gen_done(g);
}

Test(conn, shut_half_closes_socketpairs, .init = worker_setup)
{
	int cl[2], up[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cl) == 0);
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, up) == 0);
	half_close(cl, up);
}

Test(conn, shut_half_closes_tcp, .init = worker_setup)
{
	int cl[2], up[2];

	fx_tcp_pair(cl);
	fx_tcp_pair(up);
	half_close(cl, up);
}

/* Reset: both peers see ECONNRESET, not EOF, even with bytes unread. */
Test(conn, reset_is_econnreset_not_eof, .init = worker_setup)
{
	struct sf_gen *g = fx_gen(1,
				  "rules = { rs = { listen = \"127.0.0.1:%d\";\n"
				  "  upstream = \"127.0.0.1:9\"; }; };\n",
				  fx_free_port());
	struct sf_conn c;
	int cl[2], up[2];
	char buf[16];

	fx_tcp_pair(cl);
	fx_tcp_pair(up);
	conn_start(&c, g, "rs", cl[1]);
	c.fd[SF_UPSTREAM] = up[0];
	/* Unread bytes in the connection's sockets: a close would RST anyway; a reset must. */
	cr_assert_eq(send(up[1], "x", 1, 0), 1);
	sf_log_setlevel(SF_LOG_VERBOSE); /* and the close line is written */
	sf_conn_reset(&c, SF_R_IDLE_TIMEOUT, -1, 0);
	sf_log_setlevel(SF_LOG_NORMAL);
	cr_assert(c.fd[0] == -1 && c.fd[1] == -1);
	for (int i = 0; i < 2; i++) {
		int fd = i ? up[1] : cl[0];

		cr_assert(fx_readable(fd));
		errno = 0;
		cr_assert_eq(recv(fd, buf, sizeof(buf), 0), -1, "peer %d saw EOF, not a reset", i);
		cr_assert_eq(errno, ECONNRESET, "peer %d: %s", i, strerror(errno));
		close(fd);
	}
	cr_assert_eq(g->rules[0].st->w[0].closed[SF_R_IDLE_TIMEOUT], 1);
	cr_assert(w.stats.resets == 1 && w.stats.closed == 1);
	gen_done(g);
}

/* A plain close with nothing unread: the client peer sees EOF. */
Test(conn, close_is_eof, .init = worker_setup)
{
	struct sf_gen *g = fx_gen(1,
				  "rules = { cl = { listen = \"127.0.0.1:%d\";\n"
				  "  upstream = \"127.0.0.1:9\"; }; };\n",
				  fx_free_port());
	struct sf_conn c;
	int cl[2];
	char buf[4];

	fx_tcp_pair(cl);
	conn_start(&c, g, "cl", cl[1]);
	sf_conn_close(&c);
	cr_assert(fx_readable(cl[0]));
	cr_assert_eq(recv(cl[0], buf, sizeof(buf), 0), 0);
	cr_assert_eq(w.stats.resets, 0);
	close(cl[0]);
	gen_done(g);
}

/* ---- upstream connect, pool fail-over ---- */

/* Accept on an upstream listener, bounded. */
static int up_accept_plain(int lfd)
{
	int fd;

	cr_assert(fx_readable(lfd));
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(fd >= 0);
	fx_timeouts(fd);
	return fd;
}

struct pool {
	struct sf_gen *g;
	int lfd;    /* the listening upstream */
	int holder; /* keeps the refused port bound */
};

/* A rule "p" of balance first: upstream 0 refuses, upstream 1 listens (swap: the reverse). */
static void pool_setup(struct pool *p, int swap, int both_refused)
{
	int lport, rport, rport2, h2 = -1;

	p->lfd = fx_listen(&lport, 8);
	rport = fx_refused_port(&p->holder);
	if (both_refused) {
		rport2 = fx_refused_port(&h2);
		close(p->lfd);
		p->lfd = h2;
		lport = rport2;
	}
	p->g = fx_gen(1,
		      "rules = { p = { listen = \"127.0.0.1:%d\"; balance = \"first\";\n"
		      "  connect_timeout = \"5s\";\n"
		      "  upstream = [ \"127.0.0.1:%d\", \"127.0.0.1:%d\" ]; }; };\n",
		      fx_free_port(), swap ? lport : rport, swap ? rport : lport);
}

static void pool_done(struct pool *p)
{
	close(p->lfd);
	close(p->holder);
	gen_done(p->g);
}

/* Drive a non-blocking connect as the reactor does: writability, SO_ERROR, next. */
static int connect_nonblocking(struct sf_conn *c)
{
	int rc = sf_conn_connect(c, 0);

	for (int i = 0; i < 8 && rc == -EINPROGRESS; i++) {
		struct pollfd pf = { .fd = c->fd[SF_UPSTREAM], .events = POLLOUT };
		int err;

		cr_assert_eq(poll(&pf, 1, 5000), 1, "a loopback connect did not complete");
		err = sf_net_so_error(c->fd[SF_UPSTREAM]);
		rc = err < 0 ? sf_conn_connect_next(c, err) : 0;
	}
	return rc;
}

static void failover(int blocking)
{
	struct pool p;
	struct sf_conn c;
	int cl[2], afd;

	pool_setup(&p, 0, 0);
	fx_tcp_pair(cl);
	conn_start(&c, p.g, "p", cl[1]);
	cr_assert_eq(sf_conn_admit(&c), 0);
	cr_assert_eq(blocking ? sf_conn_connect(&c, 1) : connect_nonblocking(&c), 0);
	cr_assert_eq(c.up, 1, "the second upstream of the pool serves");
	cr_assert_eq(c.tried, 3);
	cr_assert(c.fd[SF_UPSTREAM] >= 0);
	cr_assert(upc(&c, 0)->attempts == 1 && upc(&c, 0)->failures == 1,
		  "first: %llu attempts, %llu failures", (unsigned long long)upc(&c, 0)->attempts,
		  (unsigned long long)upc(&c, 0)->failures);
	cr_assert(upc(&c, 1)->attempts == 1 && upc(&c, 1)->failures == 0);
	cr_assert_gt(c.rule->ups[0].down_until_ms, 0, "max_fails 1: the refusing one is down");
	cr_assert_eq(c.rule->ups[1].down_until_ms, 0);
	afd = accept4(p.lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert(afd >= 0, "the listening upstream got the connection");
	cr_assert_eq(sf_conn_connected(&c), 0);
	cr_assert(c.flags & SF_CONN_UP);
	cr_assert_eq(upc(&c, 1)->opened, 1);
	/* Bytes flow to the upstream that was reached. */
	cr_assert_eq(send(c.fd[SF_UPSTREAM], "abc", 3, MSG_NOSIGNAL), 3);
	fx_timeouts(afd);
	char buf[4];
	cr_assert_eq(fx_read_all(afd, buf, 3), 3);
	sf_conn_close(&c);
	cr_assert_eq(upc(&c, 1)->closed, 1);
	close(afd);
	close(cl[0]);
	pool_done(&p);
}

Test(conn, connect_fails_over_blocking, .init = worker_setup) { failover(1); }

Test(conn, connect_fails_over_nonblocking, .init = worker_setup) { failover(0); }

/* The first upstream answers: nothing is counted against the second. */
Test(conn, connect_first_answers, .init = worker_setup)
{
	struct pool p;
	struct sf_conn c;
	int cl[2];

	pool_setup(&p, 1, 0);
	fx_tcp_pair(cl);
	conn_start(&c, p.g, "p", cl[1]);
	cr_assert_eq(connect_nonblocking(&c), 0);
	cr_assert_eq(c.up, 0);
	cr_assert_eq(c.tried, 1);
	cr_assert(upc(&c, 0)->attempts == 1 && upc(&c, 0)->failures == 0);
	cr_assert_eq(upc(&c, 1)->attempts, 0);
	sf_conn_reset(&c, SF_R_STOP, -1, 0);
	cr_assert_eq(w.stats.stopped, 1);
	close(cl[0]);
	pool_done(&p);
}

static void all_refused(int blocking)
{
	struct pool p;
	struct sf_conn c;
	int cl[2], rc;

	pool_setup(&p, 0, 1);
	fx_tcp_pair(cl);
	conn_start(&c, p.g, "p", cl[1]);
	rc = blocking ? sf_conn_connect(&c, 1) : connect_nonblocking(&c);
	cr_assert_eq(rc, -ECONNREFUSED, "got %d", rc);
	cr_assert_eq(c.fd[SF_UPSTREAM], -1);
	cr_assert_eq(c.tried, 3);
	cr_assert(upc(&c, 0)->failures == 1 && upc(&c, 1)->failures == 1);
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_REFUSED);
	sf_conn_reset(&c, sf_conn_connect_reason(&c), SF_UPSTREAM, rc);
	cr_assert_eq(c.ctr->closed[SF_R_REFUSED], 1);
	close(cl[0]);
	pool_done(&p);
}

Test(conn, connect_all_refused_blocking, .init = worker_setup) { all_refused(1); }

Test(conn, connect_all_refused_nonblocking, .init = worker_setup) { all_refused(0); }

/* The caller's timer fired on the last upstream: the reason is connect-timeout. */
Test(conn, connect_timeout_reason, .init = worker_setup)
{
	struct pool p;
	struct sf_conn c;
	int cl[2], rc;

	pool_setup(&p, 1, 0); /* 0 listens, 1 refuses */
	fx_tcp_pair(cl);
	conn_start(&c, p.g, "p", cl[1]);
	rc = sf_conn_connect(&c, 0);
	cr_assert(rc == 0 || rc == -EINPROGRESS);
	cr_assert_eq(c.up, 0);
	/* Upstream 0 "timed out": upstream 1 is tried, and refuses. */
	rc = sf_conn_connect_next(&c, -ETIMEDOUT);
	if (rc == -EINPROGRESS)
		rc = connect_nonblocking(&c);
	cr_assert_eq(rc, -ECONNREFUSED);
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_REFUSED, "the last attempt was refused");
	cr_assert(upc(&c, 0)->failures == 1 && upc(&c, 1)->failures == 1);
	sf_conn_reset(&c, SF_R_REFUSED, SF_UPSTREAM, rc);
	close(cl[0]);
	pool_done(&p);
}

Test(conn, connect_timeout_on_the_last_upstream, .init = worker_setup)
{
	struct pool p;
	struct sf_conn c;
	int cl[2], rc;

	pool_setup(&p, 0, 0); /* 0 refuses, 1 listens */
	fx_tcp_pair(cl);
	conn_start(&c, p.g, "p", cl[1]);
	/* A synchronous refusal of upstream 0 moves on to upstream 1 at once. */
	rc = sf_conn_connect(&c, 0);
	cr_assert(rc == 0 || rc == -EINPROGRESS, "got %d", rc);
	if (c.up == 0) {
		/* The refusal came asynchronously: report it as the reactor would. */
		struct pollfd pf = { .fd = c.fd[SF_UPSTREAM], .events = POLLOUT };

		cr_assert_eq(poll(&pf, 1, 5000), 1);
		rc = sf_conn_connect_next(&c, sf_net_so_error(c.fd[SF_UPSTREAM]));
		cr_assert(rc == 0 || rc == -EINPROGRESS);
	}
	cr_assert_eq(c.up, 1);
	rc = sf_conn_connect_next(&c, -ETIMEDOUT);
	cr_assert_eq(rc, -ETIMEDOUT, "every upstream tried, the last timed out: %d", rc);
	cr_assert_eq(c.fd[SF_UPSTREAM], -1, "the timed out socket is closed");
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_CONNECT_TIMEOUT);
	cr_assert_eq(upc(&c, 1)->failures, 1);
	sf_conn_reset(&c, SF_R_CONNECT_TIMEOUT, SF_UPSTREAM, rc);
	cr_assert_eq(c.ctr->closed[SF_R_CONNECT_TIMEOUT], 1);
	close(cl[0]);
	pool_done(&p);
}

/* Out of descriptors: no upstream is blamed, the reason is limit. */
Test(conn, connect_out_of_descriptors, .init = worker_setup)
{
	struct rlimit old, low;
	struct pool p;
	struct sf_conn c;
	int cl[2], rc, top;

	pool_setup(&p, 1, 0);
	fx_tcp_pair(cl);
	conn_start(&c, p.g, "p", cl[1]);
	/* The lowest free descriptor is the limit: socket() gets EMFILE. */
	top = dup(0);
	cr_assert(top >= 0);
	close(top);
	cr_assert(getrlimit(RLIMIT_NOFILE, &old) == 0);
	low = old;
	low.rlim_cur = (rlim_t)top;
	cr_assert(setrlimit(RLIMIT_NOFILE, &low) == 0);
	rc = sf_conn_connect(&c, 0);
	cr_assert(setrlimit(RLIMIT_NOFILE, &old) == 0);
	cr_assert_eq(rc, -EMFILE, "got %d", rc);
	cr_assert(c.flags & SF_CONN_NOFD);
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_LIMIT);
	cr_assert_eq(upc(&c, 0)->failures, 0, "no upstream failed");
	cr_assert_eq(c.rule->ups[0].down_until_ms, 0);
	sf_conn_reset(&c, SF_R_LIMIT, SF_UPSTREAM, rc);
	close(cl[0]);
	pool_done(&p);
}

/* ---- admission ---- */

Test(conn, admit_applies_allow_and_deny, .init = worker_setup)
{
	struct sf_gen *g =
		fx_gen(1,
		       "rules = {\n"
		       " other = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:9\";\n"
		       "   allow = \"10.0.0.0/8\"; };\n"
		       " lo = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:9\";\n"
		       "   allow = \"127.0.0.0/8\"; };\n"
		       " nolo = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:9\";\n"
		       "   allow = \"127.0.0.0/8\"; deny = \"127.0.0.1/32\"; };\n"
		       "};\n",
		       fx_free_port(), fx_free_port(), fx_free_port());
	static const char *const names[] = { "other", "lo", "nolo" };
	static const int want[] = { -EACCES, 0, -EACCES };

	for (int i = 0; i < 3; i++) {
		struct sf_conn c;
		int cl[2], rc;

		fx_tcp_pair(cl);
		conn_start(&c, g, names[i], cl[1]);
		rc = sf_conn_admit(&c);
		cr_assert_eq(rc, want[i], "rule %s: %d", names[i], rc);
		cr_assert_gt(c.peer.len, 0, "the peer was looked up for the lists");
		cr_assert_eq(c.peer.u.sa.sa_family, AF_INET);
		if (rc < 0) {
			cr_assert_eq(sf_conn_refused_reason(&c, rc), SF_R_DENIED);
			sf_conn_reset(&c, SF_R_DENIED, SF_CLIENT, rc);
			cr_assert_eq(c.ctr->closed[SF_R_DENIED], 1);
		} else {
			sf_conn_close(&c);
		}
		close(cl[0]);
	}
	gen_done(g);
}

/* max_conns: a full rule takes no connection; a close gives the slot back. */
Test(conn, max_conns_slots, .init = worker_setup)
{
	struct sf_gen *g = fx_gen(1,
				  "rules = { mc = { listen = \"127.0.0.1:%d\";\n"
				  "  upstream = \"127.0.0.1:9\"; max_conns = 2; }; };\n",
				  fx_free_port());
	struct sf_rule *r = sf_gen_rule(g, "mc");
	struct sf_conn c[2];
	int cl[2][2];

	for (int i = 0; i < 2; i++) {
		fx_tcp_pair(cl[i]);
		conn_start(&c[i], g, "mc", cl[i][1]);
		cr_assert_eq(sf_conn_admit(&c[i]), 0);
	}
	cr_assert_eq(r->active, 2);
	cr_assert_eq(sf_rule_reserve(r), 0, "a third connection of a full rule");
	sf_conn_close(&c[0]);
	cr_assert_eq(r->active, 1, "the close gave the slot back");
	cr_assert_eq(sf_rule_reserve(r), 1);
	sf_rule_release(r);
	sf_conn_reset(&c[1], SF_R_RESET, -1, 0);
	cr_assert_eq(r->active, 0, "so did the reset");
	for (int i = 0; i < 2; i++)
		close(cl[i][0]);
	gen_done(g);
}

/* ---- the PROXY header ---- */

static struct sf_gen *proxy_gen(void)
{
	return fx_gen(1,
		      "rules = { pp = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:9\";\n"
		      "  accept_proxy = true; allow = \"10.0.0.0/8\"; }; };\n",
		      fx_free_port());
}

/* A connection of proxy_gen's rule on a loopback pair, its header awaited. */
static void proxy_conn(struct sf_conn *c, struct sf_gen *g, int cl[2])
{
	fx_tcp_pair(cl);
	conn_start(c, g, "pp", cl[1]);
	/* 127.0.0.1 is not allowed: the lists wait for the header's address. */
	cr_assert_eq(sf_conn_admit(c), 1);
	cr_assert(c->flags & SF_CONN_PROXY);
	cr_assert_not_null(c->hdr);
}

/* Header then payload, sent in two parts split at cut (0: whole). */
static void proxy_read(const char *hdr, size_t hlen, size_t cut, int want, const char *want_src)
{
	struct sf_gen *g = proxy_gen();
	struct sf_conn c;
	char buf[64], ip[INET6_ADDRSTRLEN];
	int cl[2], rc;

	proxy_conn(&c, g, cl);
	rc = sf_conn_read_proxy(&c, 1);
	cr_assert_eq(rc, 0, "no byte yet: need more");
	if (cut > 0) {
		cr_assert_eq(send(cl[0], hdr, cut, 0), (ssize_t)cut);
		cr_assert(fx_readable(cl[1]));
		rc = sf_conn_read_proxy(&c, 1);
		cr_assert_eq(rc, 0, "a truncated header needs more, got %d", rc);
		cr_assert_eq(c.hdr_len, cut, "the partial header was consumed");
	}
	cr_assert_eq(send(cl[0], hdr + cut, hlen - cut, 0), (ssize_t)(hlen - cut));
	cr_assert_eq(send(cl[0], "PAYLOAD", 7, 0), 7);
	cr_assert(fx_readable(cl[1]));
	rc = sf_conn_read_proxy(&c, 1);
	cr_assert_eq(rc, want, "got %d, want %d", rc, want);
	if (rc == 1) {
		cr_assert_null(c.hdr);
		cr_assert_eq(c.flags & SF_CONN_PROXY, 0);
		cr_assert_eq(c.peer.u.sa.sa_family, AF_INET);
		inet_ntop(AF_INET, &c.peer.u.in.sin_addr, ip, sizeof(ip));
		cr_assert_str_eq(ip, want_src, "the header's source is the peer now");
		cr_assert_eq(ntohs(c.peer.u.in.sin_port), 4000);
		inet_ntop(AF_INET, &c.local.u.in.sin_addr, ip, sizeof(ip));
		cr_assert_str_eq(ip, "10.0.0.9");
		/* Exactly the header was consumed: the first client byte is still there. */
		cr_assert_eq(recv(cl[1], buf, sizeof(buf), MSG_DONTWAIT), 7);
		cr_assert_eq(memcmp(buf, "PAYLOAD", 7), 0);
		sf_conn_close(&c);
	} else {
		cr_assert_eq(sf_conn_refused_reason(&c, rc),
			     rc == -EACCES ? SF_R_DENIED : SF_R_PROXY_HEADER);
		sf_conn_reset(&c, sf_conn_refused_reason(&c, rc), SF_CLIENT, rc);
	}
	close(cl[0]);
	gen_done(g);
}

static const char V1[] = "PROXY TCP4 10.1.2.3 10.0.0.9 4000 80\r\n";

Test(conn_proxy, v1_whole, .init = worker_setup)
{
	proxy_read(V1, sizeof(V1) - 1, 0, 1, "10.1.2.3");
}

Test(conn_proxy, v1_truncated_then_completed, .init = worker_setup)
{
	proxy_read(V1, sizeof(V1) - 1, 15, 1, "10.1.2.3");
}

static size_t v2(char *out, const char *src)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons(4000) };
	struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons(80) };
	ssize_t n;

	inet_pton(AF_INET, src, &s.sin_addr);
	inet_pton(AF_INET, "10.0.0.9", &d.sin_addr);
	n = sf_proxy_encode(SF_PP_V2, (struct sockaddr *)&s, (struct sockaddr *)&d, out,
			    SF_PROXY_ENC_MAX);
	cr_assert_gt(n, 16);
	return (size_t)n;
}

Test(conn_proxy, v2_whole, .init = worker_setup)
{
	char h[SF_PROXY_ENC_MAX];
	size_t n = v2(h, "10.7.7.7");

	proxy_read(h, n, 0, 1, "10.7.7.7");
}

Test(conn_proxy, v2_truncated_in_signature_and_in_addresses, .init = worker_setup)
{
	char h[SF_PROXY_ENC_MAX];
	size_t n = v2(h, "10.7.7.7");

	proxy_read(h, n, 5, 1, "10.7.7.7");
	proxy_read(h, n, n - 3, 1, "10.7.7.7");
}

Test(conn_proxy, header_address_denied, .init = worker_setup)
{
	char h[SF_PROXY_ENC_MAX];
	size_t n = v2(h, "192.168.1.1");

	proxy_read(h, n, 0, -EACCES, NULL);
}

Test(conn_proxy, bad_header, .init = worker_setup)
{
	static const char get[] = "GET / HTTP/1.0\r\n\r\n";
	static const char v1bad[] = "PROXY TCP4 10.1.2.3 nonsense 4000 80\r\n";

	proxy_read(get, sizeof(get) - 1, 0, -EPROTO, NULL);
	proxy_read(v1bad, sizeof(v1bad) - 1, 0, -EPROTO, NULL);
}

/* FIN before a whole header: malformed, never "need more" for ever. */
Test(conn_proxy, eof_inside_header, .init = worker_setup)
{
	struct sf_gen *g = proxy_gen();
	struct sf_conn c;
	int cl[2], rc;

	proxy_conn(&c, g, cl);
	cr_assert_eq(send(cl[0], V1, 10, 0), 10);
	cr_assert(shutdown(cl[0], SHUT_WR) == 0);
	cr_assert(fx_readable(cl[1]));
	rc = sf_conn_read_proxy(&c, 1);
	cr_assert_eq(rc, -EPROTO, "got %d", rc);
	cr_assert_eq(sf_conn_refused_reason(&c, rc), SF_R_PROXY_HEADER);
	sf_conn_reset(&c, SF_R_PROXY_HEADER, SF_CLIENT, rc);
	cr_assert_eq(c.ctr->closed[SF_R_PROXY_HEADER], 1);
	close(cl[0]);
	gen_done(g);
}

/* v1 UNKNOWN keeps the socket's own address, which the lists then judge. */
Test(conn_proxy, unknown_keeps_the_socket_address, .init = worker_setup)
{
	static const char unk[] = "PROXY UNKNOWN\r\n";
	struct sf_gen *g = proxy_gen();
	struct sf_conn c;
	int cl[2], rc;

	proxy_conn(&c, g, cl);
	cr_assert_eq(send(cl[0], unk, sizeof(unk) - 1, 0), (ssize_t)sizeof(unk) - 1);
	cr_assert(fx_readable(cl[1]));
	rc = sf_conn_read_proxy(&c, 1);
	cr_assert_eq(rc, -EACCES, "127.0.0.1 is not in 10.0.0.0/8: %d", rc);
	cr_assert_eq(c.peer.u.in.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	sf_conn_reset(&c, SF_R_DENIED, SF_CLIENT, rc);
	close(cl[0]);
	gen_done(g);
}

/* The reasons of a refused connection, by error and state. */
Test(conn, refused_reasons, .init = worker_setup)
{
	struct sf_gen *g = proxy_gen();
	struct sf_conn c;
	int cl[2];

	proxy_conn(&c, g, cl);
	cr_assert_eq(sf_conn_refused_reason(&c, -EACCES), SF_R_DENIED);
	cr_assert_eq(sf_conn_refused_reason(&c, -ENOMEM), SF_R_LIMIT);
	cr_assert_eq(sf_conn_refused_reason(&c, -EMFILE), SF_R_LIMIT);
	cr_assert_eq(sf_conn_refused_reason(&c, -ENFILE), SF_R_LIMIT);
	cr_assert_eq(sf_conn_refused_reason(&c, -ECONNRESET), SF_R_PROXY_HEADER,
		     "any other error while the header is awaited");
	c.flags &= ~SF_CONN_PROXY;
	cr_assert_eq(sf_conn_refused_reason(&c, -ECONNRESET), SF_R_RESET);
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_REFUSED);
	c.flags |= SF_CONN_TIMEDOUT;
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_CONNECT_TIMEOUT);
	c.flags |= SF_CONN_NOFD;
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_LIMIT, "no descriptor wins");
	sf_conn_close(&c); /* frees the header buffer */
	close(cl[0]);
	gen_done(g);
}

/* A blocking connect past connect_timeout: the socket is closed, the reason connect-timeout. */
Test(conn, blocking_connect_times_out, .init = worker_setup)
{
	struct fx_blackhole b;
	struct sf_gen *g;
	struct sf_conn c;
	int cl[2], rc;

	fx_blackhole_open(&b);
	g = fx_gen(1,
		   "rules = { bh = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:%d\";\n"
		   "  connect_timeout = \"200ms\"; }; };\n",
		   fx_free_port(), b.port);
	fx_tcp_pair(cl);
	conn_start(&c, g, "bh", cl[1]);
	rc = sf_conn_connect(&c, 1);
	cr_assert_eq(rc, -ETIMEDOUT, "got %d", rc);
	cr_assert_eq(c.fd[SF_UPSTREAM], -1);
	cr_assert(c.flags & SF_CONN_TIMEDOUT);
	cr_assert_eq(sf_conn_connect_reason(&c), SF_R_CONNECT_TIMEOUT);
	cr_assert_eq(upc(&c, 0)->failures, 1);
	sf_conn_reset(&c, SF_R_CONNECT_TIMEOUT, SF_UPSTREAM, rc);
	close(cl[0]);
	fx_blackhole_close(&b);
	gen_done(g);
}

/*
 * Connected with proxy_protocol: the upstream's first bytes are a header
 * naming the client and the address it connected to, before any client
 * byte. leastconn counts the connection on its upstream while it is open.
 */
static void sends_header(const char *version)
{
	struct sockaddr_in cli, srv;
	socklen_t len = sizeof(cli);
	struct sf_proxy_info info;
	struct sf_gen *g;
	struct sf_conn c;
	char hdr[SF_PROXY_V2_MAX];
	int lport, lfd = fx_listen(&lport, 4), cl[2], afd;
	ssize_t n, h;

	g = fx_gen(1,
		   "rules = { px = { listen = \"127.0.0.1:%d\"; upstream = \"127.0.0.1:%d\";\n"
		   "  proxy_protocol = \"%s\"; balance = \"leastconn\"; }; };\n",
		   fx_free_port(), lport, version);
	fx_tcp_pair(cl);
	conn_start(&c, g, "px", cl[1]);
	cr_assert_eq(sf_conn_admit(&c), 0);
	cr_assert_gt(c.peer.len, 0, "the header needs the client's address");
	cr_assert_eq(sf_conn_connect(&c, 1), 0);
	cr_assert_eq(sf_conn_connected(&c), 0);
	cr_assert_eq(c.rule->ups[0].active, 1, "leastconn counts it");
	afd = up_accept_plain(lfd);
	n = recv(afd, hdr, sizeof(hdr), 0);
	cr_assert_gt(n, 0);
	h = sf_proxy_decode(hdr, (size_t)n, &info);
	cr_assert_eq(h, n, "exactly a header, nothing else: %zd of %zd", h, n);
	cr_assert_eq(info.version, version[1] - '0');
	cr_assert(getsockname(cl[0], (struct sockaddr *)&cli, &len) == 0);
	len = sizeof(srv);
	cr_assert(getpeername(cl[0], (struct sockaddr *)&srv, &len) == 0);
	cr_assert_eq(((struct sockaddr_in *)&info.src.ss)->sin_port, cli.sin_port,
		     "the source is the client");
	cr_assert_eq(((struct sockaddr_in *)&info.dst.ss)->sin_port, srv.sin_port,
		     "the destination is where it connected");
	sf_conn_close(&c);
	cr_assert_eq(c.rule->ups[0].active, 0);
	close(afd);
	close(cl[0]);
	close(lfd);
	gen_done(g);
}

Test(conn, connected_sends_proxy_v1, .init = worker_setup) { sends_header("v1"); }

Test(conn, connected_sends_proxy_v2, .init = worker_setup) { sends_header("v2"); }
