/*
 * dgram/udp.c: the session table (hash, chains, growth, removal), the
 * LRU list, and the shared data path's eviction on a real generation
 * with loopback sockets: a full rule ends its least recently used
 * session, and a datagram makes a session the most recent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockfwd/config.h"
#include "sockfwd/options.h"
#include "sockfwd/rule.h"
#include "sockfwd/stats.h"
#include "sockfwd/udp.h"
#include "sockfwd/worker.h"

static struct sf_inaddr v4(const char *ip, int port)
{
	struct sf_inaddr a;

	memset(&a, 0, sizeof(a));
	a.u.in.sin_family = AF_INET;
	a.u.in.sin_port = htons((uint16_t)port);
	cr_assert(inet_pton(AF_INET, ip, &a.u.in.sin_addr) == 1);
	a.len = sizeof(a.u.in);
	return a;
}

static struct sf_inaddr v6(const char *ip, int port)
{
	struct sf_inaddr a;

	memset(&a, 0, sizeof(a));
	a.u.in6.sin6_family = AF_INET6;
	a.u.in6.sin6_port = htons((uint16_t)port);
	cr_assert(inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr) == 1);
	a.len = sizeof(a.u.in6);
	return a;
}

static struct sf_udp_sess *sess(int lfd, struct sf_inaddr peer, struct sf_inaddr local)
{
	struct sf_udp_sess *s = calloc(1, sizeof(*s));

	cr_assert_not_null(s);
	s->lfd = lfd;
	s->peer = peer;
	s->local = local;
	s->hash = sf_udp_hash(lfd, &peer, &local);
	return s;
}

Test(udp_table, keys_are_listener_client_and_local)
{
	struct sf_udp u;
	struct sf_inaddr none = { .len = 0 };
	struct sf_udp_sess *a, *b, *c, *d, *e;

	memset(&u, 0, sizeof(u));
	a = sess(5, v4("10.0.0.1", 1000), none);
	b = sess(5, v4("10.0.0.1", 1001), none);	       /* another port */
	c = sess(6, v4("10.0.0.1", 1000), none);	       /* another listener socket */
	d = sess(5, v4("10.0.0.1", 1000), v4("127.0.0.2", 0)); /* another local address */
	e = sess(5, v6("::1", 1000), none);
	cr_assert_eq(sf_udp_insert(&u, a), 0);
	cr_assert_eq(sf_udp_insert(&u, b), 0);
	cr_assert_eq(sf_udp_insert(&u, c), 0);
	cr_assert_eq(sf_udp_insert(&u, d), 0);
	cr_assert_eq(sf_udp_insert(&u, e), 0);
	cr_assert_eq(u.n, 5);
	struct sf_inaddr k = v4("10.0.0.1", 1000);
	cr_assert_eq(sf_udp_find(&u, 5, &k, &none), a);
	cr_assert_eq(sf_udp_find(&u, 6, &k, &none), c);
	struct sf_inaddr l2 = v4("127.0.0.2", 0);
	cr_assert_eq(sf_udp_find(&u, 5, &k, &l2), d);
	struct sf_inaddr k6 = v6("::1", 1000);
	cr_assert_eq(sf_udp_find(&u, 5, &k6, &none), e);
	struct sf_inaddr miss = v4("10.0.0.2", 1000);
	cr_assert_null(sf_udp_find(&u, 5, &miss, &none));
	sf_udp_remove(&u, a);
	cr_assert_null(sf_udp_find(&u, 5, &k, &none));
	cr_assert_eq(sf_udp_find(&u, 6, &k, &none), c);
	cr_assert_eq(u.n, 4);
	free(a);
	free(b);
	free(c);
	free(d);
	free(e);
	free(u.tab);
}

/* 100,000 sessions: the table grows, every one is found, removals are exact. */
Test(udp_table, grows_and_finds_every_session)
{
	enum { N = 100000 };
	static struct sf_udp_sess *v[N];
	struct sf_inaddr none = { .len = 0 };
	struct sf_udp u;
	char ip[32];

	memset(&u, 0, sizeof(u));
	for (int i = 0; i < N; i++) {
		snprintf(ip, sizeof(ip), "10.%d.%d.1", (i >> 8) & 255, i & 255);
		v[i] = sess(3, v4(ip, 1024 + (i >> 16)), none);
		cr_assert_eq(sf_udp_insert(&u, v[i]), 0);
	}
	cr_assert_eq(u.n, N);
	cr_assert_geq(u.mask + 1, (size_t)N, "load factor above 1: %zu buckets", u.mask + 1);
	for (int i = 0; i < N; i++)
		cr_assert_eq(sf_udp_find(&u, 3, &v[i]->peer, &none), v[i], "session %d", i);
	for (int i = 0; i < N; i += 2)
		sf_udp_remove(&u, v[i]);
	cr_assert_eq(u.n, N / 2);
	for (int i = 0; i < N; i++) {
		struct sf_udp_sess *f = sf_udp_find(&u, 3, &v[i]->peer, &none);

		cr_assert_eq(f, i % 2 ? v[i] : NULL, "session %d after removals", i);
	}
	for (int i = 0; i < N; i++)
		free(v[i]);
	free(u.tab);
}

Test(udp_table, lru_order)
{
	struct sf_lru h, e[4];
	const struct sf_lru *p;
	int order[4], n = 0;

	sf_lru_init(&h);
	cr_assert(sf_lru_empty(&h));
	for (int i = 0; i < 4; i++)
		sf_lru_push(&h, &e[i]);
	sf_lru_touch(&h, &e[0]); /* 1 2 3 0 */
	sf_lru_touch(&h, &e[0]); /* already the tail */
	sf_lru_unlink(&e[2]);	 /* 1 3 0 */
	sf_lru_touch(&h, &e[1]); /* 3 0 1 */
	for (p = h.next; p != &h; p = p->next)
		order[n++] = (int)(p - e);
	cr_assert_eq(n, 3);
	cr_assert(order[0] == 3 && order[1] == 0 && order[2] == 1, "order %d %d %d", order[0],
		  order[1], order[2]);
	cr_assert(!sf_lru_empty(&h));
}

/* ---- the data path's eviction, on a real generation ---- */

static int free_udp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0), port;

	cr_assert(fd >= 0);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int nadds;
static int fake_add(void *loop, struct sf_io *io)
{
	nadds++;
	return 0;
}
static void fake_del(void *loop, struct sf_io *io) {}
static const struct sf_udp_ops fake_ops = { fake_add, fake_del };

/* Send one datagram from client fd to the listener port, and let u read it. */
static void datagram(struct sf_udp *u, struct sf_lsock *ls, int fd, int port)
{
	struct sockaddr_in to = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	cr_assert(sendto(fd, "x", 1, 0, (struct sockaddr *)&to, sizeof(to)) == 1);
	usleep(2000);
	sf_udp_on_listen(u, ls);
	sf_udp_reap(u);
}

static struct sf_udp_sess *session_of(struct sf_udp *u, struct sf_lsock *ls, int fd)
{
	struct sf_inaddr peer = { .len = sizeof(struct sockaddr_in) }, none = { .len = 0 };
	socklen_t len = sizeof(peer.u.in);

	cr_assert(getsockname(fd, &peer.u.sa, &len) == 0);
	return sf_udp_find(u, ls->io.fd, &peer, &none);
}

Test(udp_table, full_rule_evicts_least_recently_used)
{
	char lis[32], up[32], err[512];
	const char *argv[] = { "sockfwd", "-u", "-l", lis, "-r", up, "--max-sessions", "3", NULL };
	struct sf_config cfg;
	struct sf_worker w;
	struct sf_timers t;
	struct sf_gen *g;
	struct sf_udp u;
	struct sf_lsock *ls;
	int port = free_udp_port(), c[5];

	snprintf(lis, sizeof(lis), "127.0.0.1:%d", port);
	snprintf(up, sizeof(up), "127.0.0.1:%d", free_udp_port());
	cr_assert_eq(sf_options_parse(8, (char **)argv, &cfg, err, sizeof(err)), SF_OPT_RUN, "%s",
		     err);
	cr_assert_eq(sf_config_finish(&cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sf_gen_build(&cfg, 1, &g, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sf_gen_listen(g, NULL, err, sizeof(err)), 0, "%s", err);
	ls = &g->ls[0].socks[0];
	memset(&w, 0, sizeof(w));
	w.now_ms = 1000;
	sf_timers_init(&t);
	cr_assert_eq(sf_udp_init(&u, &w, &t, &fake_ops, NULL), 0);
	for (int i = 0; i < 5; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		c[i] = socket(AF_INET, SOCK_DGRAM, 0);
		cr_assert(bind(c[i], (struct sockaddr *)&a, sizeof(a)) == 0);
	}
	for (int i = 0; i < 3; i++)
		datagram(&u, ls, c[i], port);
	cr_assert_eq(u.n, 3);
	cr_assert_eq(g->rules[0].sessions, 3);
	datagram(&u, ls, c[0], port); /* 0 is the most recent: 1 is the least */
	cr_assert_eq(u.n, 3, "a known client made a session");
	datagram(&u, ls, c[3], port); /* evicts 1 */
	cr_assert_eq(u.n, 3);
	cr_assert_not_null(session_of(&u, ls, c[0]));
	cr_assert_null(session_of(&u, ls, c[1]), "client 1 was the least recently used");
	cr_assert_not_null(session_of(&u, ls, c[2]));
	cr_assert_not_null(session_of(&u, ls, c[3]));
	datagram(&u, ls, c[4], port); /* evicts 2 */
	cr_assert_null(session_of(&u, ls, c[2]));
	cr_assert_not_null(session_of(&u, ls, c[0]));
	cr_assert_eq(g->rules[0].st->w[0].closed[SF_R_LIMIT], 2);
	cr_assert_eq(g->rules[0].st->w[0].accepted, 5);
	cr_assert_eq(nadds, 5);
	/* The time-out: every session ends once the clock passes it. */
	w.now_ms += 60000;
	for (struct sf_timer *tm; (tm = sf_timers_pop_due(&t, w.now_ms)) != NULL;)
		tm->fn(NULL, tm);
	sf_udp_reap(&u);
	cr_assert_eq(u.n, 0);
	cr_assert_eq(g->rules[0].sessions, 0);
	cr_assert_eq(g->rules[0].st->w[0].closed[SF_R_IDLE_TIMEOUT], 3);
	sf_udp_destroy(&u);
	sf_timers_destroy(&t);
	for (int i = 0; i < 5; i++)
		close(c[i]);
	sf_gen_close_worker(g, 0);
	sf_gen_unref(g);
}
