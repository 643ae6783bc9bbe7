/*
 * Per-rule limits: the idle time-out (both sides reset, logged), the
 * connection limit (the next client waits in the backlog and is served
 * once one ends), and allow/deny lists for IPv4 and IPv6 (a refused
 * client is reset and never reaches the upstream).
 *
 * Loopback aliases (127.0.0.2, ...) give other IPv4 client addresses;
 * IPv6 has only ::1. The forwarder is found ready from /proc, so the
 * upstream counts and the log see only the test's clients.
 */
#include "harness.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* sockfwd -b engine -r s, listener of s's family, then flags (NULL terminated). */
static void start_flags(struct fwd *f, const char *engine, const struct srv *s, int threads,
			const char *const *flags)
{
	struct fwd_opts o = { .engine = engine, .family = s->family, .threads = threads };
	char remote[64];
	int n = 0;

	o.no_probe = 1;
	o.remote = srv_addr(s, remote, sizeof(remote));
	for (int i = 0; flags[i] != NULL; i++) {
		cr_assert(n < FWD_EXTRA - 1, "too many flags");
		o.extra[n++] = flags[i];
	}
	o.extra[n] = NULL;
	fwd_start(f, &o);
}

/* The address a -v line shows for a client socket fd: "127.0.0.2:P" or ":P" for IPv6. */
static char *client_needle(char *buf, size_t len, int family, const char *src, int fd)
{
	if (family == AF_INET6)
		snprintf(buf, len, ":%d", sock_local_port(fd));
	else
		snprintf(buf, len, "%s:%d", src ? src : "127.0.0.1", sock_local_port(fd));
	return buf;
}

/* Wait (bounded) until the upstream saw n connections end with a reset. */
static void wait_upstream_resets(struct srv *s, int n)
{
	uint64_t deadline = now_ms() + E2E_RESET_MS;

	for (int i = 0; i < 100000 && atomic_load(&s->resets) < n; i++) {
		if (now_ms() >= deadline)
			break;
		sleep_ms(5);
	}
	cr_assert(atomic_load(&s->resets) >= n && atomic_load(&s->eofs) == 0,
		  "upstream saw %d resets and %d orderly ends, expected %d resets",
		  atomic_load(&s->resets), atomic_load(&s->eofs), n);
}

/*
 * --idle-timeout 500ms: a connection that moved bytes and then fell
 * silent is reset on both sides, and its -v line says idle-timeout.
 */
ENGINE_TEST(limits, idle_timeout, 60)
{
	const char *flags[] = { "--idle-timeout", "500ms", "-v", NULL };
	char needle[64], line[1024];
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 0, flags);
	fd = tcp_connect(AF_INET, f.port);
	client_needle(needle, sizeof(needle), AF_INET, NULL, fd);
	echo_roundtrip(fd, 1, 1000);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	wait_upstream_resets(&s, 1);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, needle, "idle-timeout"),
		  "no -v line with %s and idle-timeout; stderr:\n%s", needle, fwd_stderr_tail(&f));
	fwd_log_line(&f, needle, "idle-timeout", line, sizeof(line));
	cr_assert(strstr(line, "reset=idle-timeout") || strstr(line, "reason=idle-timeout"),
		  "close line does not give idle-timeout as its reason: %s", line);
	/* The forwarder still serves. */
	echo_once(AF_INET, f.port, 2, 1000);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * Bytes keep a connection alive: with --idle-timeout 800ms, a small
 * echo every 100 ms for 1.6 s (twice the time-out) is never cut.
 */
ENGINE_TEST(limits, idle_timeout_activity, 60)
{
	const char *flags[] = { "--idle-timeout", "800ms", NULL };
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 0, flags);
	fd = tcp_connect(AF_INET, f.port);
	for (int i = 0; i < 16; i++) {
		echo_roundtrip(fd, 10 + (uint64_t)i, 10);
		sleep_ms(100);
	}
	echo_roundtrip(fd, 99, 1000);
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

#define MAXC_WAIT_MS 500

/*
 * --max-conns 2 with two workers: two held connections fill the rule; a
 * third connects (kernel backlog) but gets no echo while they are open;
 * once one ends, the third is served and its bytes arrive intact.
 */
ENGINE_TEST(limits, max_conns, 60)
{
	const char *flags[] = { "--max-conns", "2", NULL };
	unsigned char buf[1000];
	struct gen g;
	struct srv s;
	struct fwd f;
	int c[3], r;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 2, flags);
	for (int i = 0; i < 2; i++) {
		c[i] = tcp_connect(AF_INET, f.port);
		echo_roundtrip(c[i], 1 + (uint64_t)i, 1000);
	}
	c[2] = tcp_connect(AF_INET, f.port);
	gen_init(&g, 3);
	gen_fill(&g, buf, sizeof(buf));
	send_all(c[2], buf, sizeof(buf));
	/* A negative check over a bounded wait: nothing may come back yet. */
	r = recv_exact_ms(c[2], buf, 1, MAXC_WAIT_MS);
	cr_assert_eq(r, -ETIMEDOUT,
		     "a third client with --max-conns 2 and two open: %s within %d ms, "
		     "expected nothing (upstream accepted %d)",
		     r == 0 ? "data" : strerror(-r), MAXC_WAIT_MS, atomic_load(&s.accepted));
	cr_assert_eq(atomic_load(&s.accepted), 2,
		     "upstream accepted %d connections with --max-conns 2",
		     atomic_load(&s.accepted));
	close(c[0]);
	recv_exact(c[2], buf, sizeof(buf));
	cr_assert(hash_update(HASH_INIT, buf, sizeof(buf)) == gen_hash(3, sizeof(buf)),
		  "the waiting client's echo differs");
	echo_roundtrip(c[1], 4, 1000);
	echo_roundtrip(c[2], 5, 1000);
	close(c[1]);
	close(c[2]);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * A client the lists refuse: reset at once, logged with -v as denied,
 * and the upstream never sees a connection (accepted stays at before).
 */
static void expect_denied(struct fwd *f, struct srv *s, int family, const char *src)
{
	int before = atomic_load(&s->accepted);
	char needle[64];
	int fd = tcp_connect_from(family, src, f->port);

	client_needle(needle, sizeof(needle), family, src, fd);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	cr_assert(fwd_log_wait(f, E2E_RESET_MS, needle, "denied"),
		  "client %s refused but no -v line with %s and \"denied\"; stderr:\n%s",
		  src ? src : "::1", needle, fwd_stderr_tail(f));
	cr_assert_eq(atomic_load(&s->accepted), before,
		     "refused client %s reached the upstream (%d connections, %d before)",
		     src ? src : "::1", atomic_load(&s->accepted), before);
}

/* A client the lists let in: echoed through to the upstream. */
static void expect_served(struct fwd *f, struct srv *s, int family, const char *src)
{
	int before = atomic_load(&s->accepted);
	int fd = tcp_connect_from(family, src, f->port);

	echo_roundtrip(fd, 7, 1000);
	close(fd);
	cr_assert_eq(atomic_load(&s->accepted), before + 1, "upstream connections %d, expected %d",
		     atomic_load(&s->accepted), before + 1);
}

/* --allow 127.0.0.2/32: only that client is served. */
ENGINE_TEST(limits, allow_ipv4, 60)
{
	const char *flags[] = { "--allow", "127.0.0.2/32", "-v", NULL };
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 0, flags);
	expect_denied(&f, &s, AF_INET, "127.0.0.1");
	expect_denied(&f, &s, AF_INET, "127.0.0.3");
	expect_served(&f, &s, AF_INET, "127.0.0.2");
	expect_denied(&f, &s, AF_INET, "127.0.0.1");
	fwd_stop(&f);
	srv_stop(&s);
}

/* Deny wins over allow; a /29 covers .8 to .15; deny alone refuses only its blocks. */
ENGINE_TEST(limits, deny_wins_ipv4, 60)
{
	const char *flags[] = { "--allow", "127.0.0.0/8",  "--deny", "127.0.0.3/32",
				"--deny",  "127.0.0.8/29", "-v",     NULL };
	const char *flags2[] = { "--deny", "127.0.0.3/32", "-v", NULL };
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 0, flags);
	expect_served(&f, &s, AF_INET, "127.0.0.2");
	expect_denied(&f, &s, AF_INET, "127.0.0.3");
	expect_served(&f, &s, AF_INET, "127.0.0.1");
	expect_denied(&f, &s, AF_INET, "127.0.0.9");
	expect_denied(&f, &s, AF_INET, "127.0.0.15");
	expect_served(&f, &s, AF_INET, "127.0.0.16");
	fwd_stop(&f);

	start_flags(&f, engine, &s, 0, flags2);
	expect_served(&f, &s, AF_INET, "127.0.0.2");
	expect_denied(&f, &s, AF_INET, "127.0.0.3");
	expect_served(&f, &s, AF_INET, NULL);
	fwd_stop(&f);
	srv_stop(&s);
}

/* IPv6: allow ::1/128 serves [::1]; deny ::1/128 refuses it. */
ENGINE_TEST(limits, allow_deny_ipv6, 60)
{
	const char *allow[] = { "--allow", "::1/128", "-v", NULL };
	const char *deny[] = { "--deny", "::1/128", "-v", NULL };
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET6, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 0, allow);
	expect_served(&f, &s, AF_INET6, NULL);
	fwd_stop(&f);
	start_flags(&f, engine, &s, 0, deny);
	expect_denied(&f, &s, AF_INET6, NULL);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * The families stay apart: an IPv4 allow list refuses an IPv6 client,
 * and an IPv6 one refuses an IPv4 client.
 */
ENGINE_TEST(limits, acl_family_separation, 60)
{
	const char *v4only[] = { "--allow", "127.0.0.0/8", "-v", NULL };
	const char *v6only[] = { "--allow", "::1/128", "-v", NULL };
	struct srv s6, s4;
	struct fwd f;

	srv_start(&s6, AF_INET6, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s6, 0, v4only);
	expect_denied(&f, &s6, AF_INET6, NULL);
	fwd_stop(&f);
	srv_stop(&s6);

	srv_start(&s4, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s4, 0, v6only);
	expect_denied(&f, &s4, AF_INET, "127.0.0.1");
	fwd_stop(&f);
	srv_stop(&s4);
}

/* --no-keepalive is accepted and changes nothing visible to the bytes. */
ENGINE_TEST(limits, no_keepalive, 60)
{
	const char *flags[] = { "--no-keepalive", NULL };
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_flags(&f, engine, &s, 0, flags);
	echo_once(AF_INET, f.port, 1, 64 * 1024);
	fwd_stop(&f);
	srv_stop(&s);
}
