/*
 * Meet (listen to listen) and bridge (connect to connect), end to end on
 * every engine that serves them (epoll, splice): pairs joined both ways
 * with bulk compared by hash, half-close in both orders, a partner that
 * leaves while waiting, --meet-timeout, bridge reconnects after either
 * server restarts, backoff, --pairs, the reverse tunnel the two make
 * together (two processes, and one config file), and the invocations
 * that are usage errors.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* The engines that serve meet and bridge (uring refuses them: pair_cli). */
#define PAIR_TEST(suite, name, to)                                                                 \
	static void name(const char *engine);                                                      \
	Test(suite, name##_naive, .timeout = (to)) { name("naive"); }                              \
	Test(suite, name##_epoll, .timeout = (to)) { name("epoll"); }                              \
	Test(suite, name##_splice, .timeout = (to)) { name("splice"); }                            \
	static void name(const char *engine)

#define PAIR_ARGS 32

/* ---- test-side servers: a listener whose connections the test accepts ---- */

/* Listen on 127.0.0.1:port (SO_REUSEADDR, so a restart binds at once). */
static int lsn_open(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	sys_assert(fd >= 0, "socket");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sys_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind 127.0.0.1:%d", port);
	sys_assert(listen(fd, 64) == 0, "listen");
	return fd;
}

/* Accept within ms, with send/recv timeouts of E2E_HANG_MS; -1 when none came. */
static int lsn_accept(int lfd, int ms)
{
	struct timeval tv = { .tv_sec = E2E_HANG_MS / 1000 };
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int fd;

	if (poll(&p, 1, ms) != 1)
		return -1;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	sys_assert(fd >= 0, "accept");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/*
 * The connection of lfd that carries msg (sent by the test into the other
 * end of the pair): connections of attempts that failed meanwhile were
 * reset by the bridge and are skipped. Bounded by ms in all.
 */
static int lsn_accept_live(int lfd, const char *msg, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	size_t n = strlen(msg);
	char buf[64];

	cr_assert(n < sizeof(buf));
	for (int i = 0; i < 1000 && now_ms() < deadline; i++) {
		int fd = lsn_accept(lfd, (int)(deadline - now_ms()));

		if (fd < 0)
			break;
		if (recv_exact_ms(fd, buf, n, 3000) == 0 && memcmp(buf, msg, n) == 0)
			return fd;
		close(fd);
	}
	cr_assert_fail("no connection carrying '%s' within %d ms; %s", msg, ms, fwd_note());
	return -1;
}

/* ---- sockfwd in meet and bridge mode ---- */

/* argv: "sockfwd", then args (NULL terminated), then -b engine -v. */
static void pair_argv(const char **argv, const char *const *args, const char *engine)
{
	int n = 0;

	argv[n++] = "sockfwd";
	for (int i = 0; args[i] != NULL; i++) {
		cr_assert(n < PAIR_ARGS - 4, "too many arguments");
		argv[n++] = args[i];
	}
	argv[n++] = "-b";
	argv[n++] = engine;
	argv[n++] = "-v";
	argv[n] = NULL;
}

/*
 * Start sockfwd --meet on two free loopback ports (*pa, *pb) with extra
 * arguments (NULL terminated, may be NULL) and wait until both listen.
 */
static void meet_start(struct fwd *f, const char *engine, int *pa, int *pb,
		       const char *const *extra)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		const char *args[PAIR_ARGS], *argv[PAIR_ARGS];
		char a[64], b[64];
		int ports[2], n = 0;

		ports[0] = pick_port(AF_INET);
		do
			ports[1] = pick_port(AF_INET);
		while (ports[1] == ports[0]);
		loop_addr(a, sizeof(a), AF_INET, ports[0]);
		loop_addr(b, sizeof(b), AF_INET, ports[1]);
		args[n++] = "--meet";
		args[n++] = "-l";
		args[n++] = a;
		args[n++] = "-l";
		args[n++] = b;
		args[n++] = "-j";
		args[n++] = "2";
		for (int i = 0; extra != NULL && extra[i] != NULL; i++)
			args[n++] = extra[i];
		args[n] = NULL;
		pair_argv(argv, args, engine);
		fwd_spawn(f, argv, 0);
		if (fwd_wait_listening(f, ports, 2, E2E_READY_MS)) {
			*pa = ports[0];
			*pb = ports[1];
			return;
		}
		fwd_release(f);
	}
	cr_assert_fail("sockfwd --meet: address in use on 10 pairs of ports");
}

/* Start sockfwd --bridge between 127.0.0.1:pa and 127.0.0.1:pb, with extra arguments. */
static void bridge_start(struct fwd *f, const char *engine, int pa, int pb,
			 const char *const *extra)
{
	const char *args[PAIR_ARGS], *argv[PAIR_ARGS];
	char a[64], b[64];
	int n = 0;

	loop_addr(a, sizeof(a), AF_INET, pa);
	loop_addr(b, sizeof(b), AF_INET, pb);
	args[n++] = "--bridge";
	args[n++] = "-r";
	args[n++] = a;
	args[n++] = "-r";
	args[n++] = b;
	args[n++] = "-j";
	args[n++] = "2";
	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	pair_argv(argv, args, engine);
	fwd_spawn(f, argv, 0);
}

static void pair_ping(int p, int q, const char *tag);

/*
 * p and q are the two ends of one pair: len bytes each way at once, each
 * side then shuts down writing; each must read exactly what the other
 * sent (hash), then EOF. A ping first: a FIN from a meet client still
 * waiting for its partner would mean it left.
 */
static void pair_bulk(int p, int q, uint64_t len)
{
	struct sender sp, sq;
	uint64_t hp, hq, np, nq;

	pair_ping(p, q, "joined");
	sender_start(&sp, p, 101, len, 1);
	sender_start(&sq, q, 202, len, 1);
	nq = recv_to_eof(q, &hq, len);
	np = recv_to_eof(p, &hp, len);
	sender_join(&sp);
	sender_join(&sq);
	cr_assert_eq(nq, len, "second end read %llu of %llu bytes; %s", (unsigned long long)nq,
		     (unsigned long long)len, fwd_note());
	cr_assert_eq(np, len, "first end read %llu of %llu bytes; %s", (unsigned long long)np,
		     (unsigned long long)len, fwd_note());
	cr_assert(hq == gen_hash(101, len), "bytes first to second differ");
	cr_assert(hp == gen_hash(202, len), "bytes second to first differ");
}

/* A short message from one end must reach the other, both ways. */
static void pair_ping(int p, int q, const char *tag)
{
	char buf[64];
	size_t n = strlen(tag);

	send_all(p, tag, n);
	recv_exact(q, buf, n);
	cr_assert(memcmp(buf, tag, n) == 0, "'%s' arrived as '%.*s'", tag, (int)n, buf);
	send_all(q, tag, n);
	recv_exact(p, buf, n);
	cr_assert(memcmp(buf, tag, n) == 0, "'%s' came back as '%.*s'", tag, (int)n, buf);
}

/* ---- meet ---- */

/* Two clients, one on each address, joined: 16 MiB each way at once, by hash. */
PAIR_TEST(meet, bulk_16m, 120)
{
	struct fwd f;
	int pa, pb, a, b;

	meet_start(&f, engine, &pa, &pb, NULL);
	a = tcp_connect(AF_INET, pa);
	b = tcp_connect(AF_INET, pb);
	pair_bulk(a, b, 16 * MiB);
	close(a);
	close(b);
	cr_assert(fwd_log_wait(&f, E2E_HANG_MS, "c2u=16777222 u2c=16777222", "reason=eof"),
		  "no close line for the pair; stderr:\n%s", fwd_stderr_tail(&f));
	/* The second comer is joined too: B first, then A. */
	b = tcp_connect(AF_INET, pb);
	a = tcp_connect(AF_INET, pa);
	pair_bulk(a, b, 1 * MiB);
	close(a);
	close(b);
	fwd_stop(&f);
	fwd_release(&f);
}

/*
 * Bytes a client sends before its partner arrives are not lost; then
 * half-close in both orders: the FIN passes on, the other way goes on.
 */
PAIR_TEST(meet, early_bytes_and_halfclose, 60)
{
	struct fwd f;
	int pa, pb;
	uint64_t h, n;

	meet_start(&f, engine, &pa, &pb, NULL);
	for (int order = 0; order < 2; order++) {
		int a = tcp_connect(AF_INET, pa), first, second, b;

		send_gen(a, 7, 100 * KiB); /* sent while alone */
		b = tcp_connect(AF_INET, pb);
		first = order == 0 ? a : b;
		second = order == 0 ? b : a;
		if (order == 0) {
			char j;

			/*
			 * A FIN while waiting means "left": shut down only once
			 * the pair is joined, which a byte from B proves.
			 */
			send_all(b, "j", 1);
			recv_exact(a, &j, 1);
			sys_assert(shutdown(a, SHUT_WR) == 0, "shutdown");
			n = recv_to_eof(b, &h, 100 * KiB);
			cr_assert(n == 100 * KiB && h == gen_hash(7, 100 * KiB),
				  "early bytes lost or changed (%llu)", (unsigned long long)n);
		} else {
			/* The early bytes arrive, then B shuts down first. */
			unsigned char *tmp = malloc(100 * KiB);

			cr_assert(tmp != NULL);
			recv_exact(b, tmp, 100 * KiB);
			cr_assert(hash_update(HASH_INIT, tmp, 100 * KiB) == gen_hash(7, 100 * KiB),
				  "early bytes changed");
			free(tmp);
			sys_assert(shutdown(b, SHUT_WR) == 0, "shutdown");
			recv_expect_eof(a);
		}
		/* The half-closed end still reads what the other sends, to EOF. */
		send_gen(second, 8 + (uint64_t)order, 1 * MiB);
		sys_assert(shutdown(second, SHUT_WR) == 0, "shutdown");
		n = recv_to_eof(first, &h, 1 * MiB);
		cr_assert(n == 1 * MiB && h == gen_hash(8 + (uint64_t)order, 1 * MiB),
			  "the other way after a half-close: %llu bytes", (unsigned long long)n);
		if (order == 1)
			recv_expect_eof(b);
		close(a);
		close(b);
	}
	cr_assert(fwd_log_wait(&f, E2E_HANG_MS, "c2u=1150976", "reason=eof"),
		  "no eof close line; stderr:\n%s", fwd_stderr_tail(&f));
	cr_assert_eq(fwd_log_count(&f, "reset=", NULL), 0, "a pair was reset; stderr:\n%s",
		     fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
}

/* A reset on one end of a pair resets the other end. */
PAIR_TEST(meet, reset_propagates, 30)
{
	struct fwd f;
	int pa, pb, a, b;

	meet_start(&f, engine, &pa, &pb, NULL);
	a = tcp_connect(AF_INET, pa);
	b = tcp_connect(AF_INET, pb);
	pair_ping(a, b, "hello");
	close_rst(a);
	recv_expect_reset(b, E2E_RESET_MS);
	close(b);
	fwd_stop(&f);
	fwd_release(&f);
}

/*
 * Clients that leave while waiting (one with a FIN, one with a reset) are
 * dropped from the queue: the next client on their side is paired with
 * the following one of the other side, never with a dead one.
 */
PAIR_TEST(meet, partner_leaves_while_waiting, 30)
{
	struct fwd f;
	int pa, pb, gone1, gone2, a, b;
	char buf[8];

	meet_start(&f, engine, &pa, &pb, NULL);
	gone1 = tcp_connect(AF_INET, pa);
	gone2 = tcp_connect(AF_INET, pa);
	close(gone1);
	close_rst(gone2);
	a = tcp_connect(AF_INET, pa);
	send_all(a, "live", 4);
	b = tcp_connect(AF_INET, pb);
	recv_exact(b, buf, 4);
	cr_assert(memcmp(buf, "live", 4) == 0, "B was paired with a client that had left");
	pair_ping(a, b, "both ways");
	close(a);
	close(b);
	/* The two that left were counted and logged as such, not as pairs. */
	cr_assert(fwd_log_wait(&f, E2E_HANG_MS, "-> - rule=default c2u=0 u2c=0", NULL),
		  "no close line for a client that left; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
}

/* --meet-timeout closes a client left waiting; the next ones pair as usual. */
PAIR_TEST(meet, meet_timeout, 30)
{
	const char *extra[] = { "--meet-timeout", "300ms", NULL };
	struct fwd f;
	int pa, pb, lonely, a, b;
	char buf[4];

	meet_start(&f, engine, &pa, &pb, extra);
	lonely = tcp_connect(AF_INET, pa);
	/* Closed (EOF or reset) within a bound far above the timeout. */
	cr_assert(recv_exact_ms(lonely, buf, 1, E2E_RESET_MS) != -ETIMEDOUT,
		  "a waiting client outlived --meet-timeout; %s", fwd_note());
	close(lonely);
	cr_assert(fwd_log_wait(&f, E2E_HANG_MS, "idle-timeout", NULL),
		  "no idle-timeout close line; stderr:\n%s", fwd_stderr_tail(&f));
	b = tcp_connect(AF_INET, pb);
	a = tcp_connect(AF_INET, pa);
	pair_ping(a, b, "after");
	close(a);
	close(b);
	fwd_stop(&f);
	fwd_release(&f);
}

/*
 * --max-conns counts waiting clients and pairs: with one slot, a client
 * waiting on B still gets its partner from A (the rule is full, but the
 * partner only joins); a second pair waits until the first ends.
 */
PAIR_TEST(meet, max_conns, 30)
{
	const char *extra[] = { "--max-conns", "1", NULL };
	struct fwd f;
	int pa, pb, a, b, a2, b2;

	meet_start(&f, engine, &pa, &pb, extra);
	b = tcp_connect(AF_INET, pb);
	sleep_ms(50); /* let it be accepted and wait: the rule is then full */
	a = tcp_connect(AF_INET, pa);
	pair_ping(a, b, "full but joined");
	/* The rule is full: these wait in the backlog until the pair ends. */
	b2 = tcp_connect(AF_INET, pb);
	a2 = tcp_connect(AF_INET, pa);
	close(a);
	close(b);
	pair_ping(a2, b2, "next pair");
	close(a2);
	close(b2);
	fwd_stop(&f);
	fwd_release(&f);
}

/* ---- bridge ---- */

/* A pair against two servers: 16 MiB each way by hash; when it ends, a new pair. */
PAIR_TEST(bridge, bulk_16m_and_again, 120)
{
	int pa = pick_port(AF_INET), pb, la, lb, a, b;
	struct fwd f;

	do
		pb = pick_port(AF_INET);
	while (pb == pa);
	la = lsn_open(pa);
	lb = lsn_open(pb);
	bridge_start(&f, engine, pa, pb, NULL);
	a = lsn_accept(la, E2E_HANG_MS);
	b = lsn_accept(lb, E2E_HANG_MS);
	cr_assert(a >= 0 && b >= 0, "the bridge did not connect to both servers; %s", fwd_note());
	pair_bulk(a, b, 16 * MiB);
	close(a);
	close(b);
	/* The pair ended: the bridge connects again. */
	a = lsn_accept(la, E2E_HANG_MS);
	b = lsn_accept(lb, E2E_HANG_MS);
	cr_assert(a >= 0 && b >= 0, "no new pair after the first ended; %s", fwd_note());
	pair_ping(a, b, "again");
	close(a);
	close(b);
	fwd_stop(&f);
	fwd_release(&f);
	close(la);
	close(lb);
}

/* Either server restarts (stops listening, listens again on its port): a new pair forms. */
PAIR_TEST(bridge, reconnect_after_restart, 90)
{
	int pa = pick_port(AF_INET), pb, la, lb, a, b;
	struct fwd f;

	do
		pb = pick_port(AF_INET);
	while (pb == pa);
	la = lsn_open(pa);
	lb = lsn_open(pb);
	bridge_start(&f, engine, pa, pb, NULL);
	a = lsn_accept(la, E2E_HANG_MS);
	b = lsn_accept(lb, E2E_HANG_MS);
	cr_assert(a >= 0 && b >= 0, "the bridge did not connect; %s", fwd_note());
	pair_ping(a, b, "first");

	/* A goes away: its FIN reaches B, the pair ends; A refuses for a while. */
	close(a);
	close(la);
	recv_expect_eof(b);
	close(b);
	cr_assert(fwd_log_wait(&f, E2E_HANG_MS, "reset=refused", NULL),
		  "no refused attempt while A was down; stderr:\n%s", fwd_stderr_tail(&f));
	la = lsn_open(pa);
	a = lsn_accept(la, 40000);
	cr_assert(a >= 0, "the bridge did not come back to A; %s", fwd_note());
	send_all(a, "second", 6);
	b = lsn_accept_live(lb, "second", 40000);
	pair_ping(b, a, "second ok");

	/* Now B restarts. */
	close(b);
	close(lb);
	recv_expect_eof(a);
	close(a);
	lb = lsn_open(pb);
	b = lsn_accept(lb, 40000);
	cr_assert(b >= 0, "the bridge did not come back to B; %s", fwd_note());
	send_all(b, "third", 5);
	a = lsn_accept_live(la, "third", 40000);
	pair_ping(a, b, "third ok");
	close(a);
	close(b);
	fwd_stop(&f);
	fwd_release(&f);
	close(la);
	close(lb);
}

/*
 * While the servers refuse, attempts back off (100 ms doubling): over
 * 3.2 s a fixed 100 ms retry would make about 32 attempts, the backoff
 * about 6. Counted from the -v lines; a loaded machine only makes fewer.
 */
PAIR_TEST(bridge, backoff, 30)
{
	int pa = pick_port(AF_INET), pb, n;
	struct fwd f;

	do
		pb = pick_port(AF_INET);
	while (pb == pa);
	bridge_start(&f, engine, pa, pb, NULL);
	sleep_ms(3200);
	fwd_assert_alive(&f);
	n = fwd_log_count(&f, "reset=refused", NULL);
	cr_assert(n >= 2, "%d attempts in 3.2 s: no retry; stderr:\n%s", n, fwd_stderr_tail(&f));
	cr_assert(n <= 12, "%d attempts in 3.2 s: no backoff; stderr:\n%s", n, fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
}

/* --pairs 3 keeps three pairs, each joining one A connection to one B connection. */
PAIR_TEST(bridge, pairs_3, 60)
{
	const char *extra[] = { "--pairs", "3", NULL };
	int pa = pick_port(AF_INET), pb, la, lb, as[3], bs[3], seen[3] = { 0 };
	struct pollfd p;
	struct fwd f;

	do
		pb = pick_port(AF_INET);
	while (pb == pa);
	la = lsn_open(pa);
	lb = lsn_open(pb);
	bridge_start(&f, engine, pa, pb, extra);
	for (int i = 0; i < 3; i++) {
		as[i] = lsn_accept(la, E2E_HANG_MS);
		bs[i] = lsn_accept(lb, E2E_HANG_MS);
		cr_assert(as[i] >= 0 && bs[i] >= 0, "pair %d did not connect; %s", i, fwd_note());
	}
	for (int i = 0; i < 3; i++) {
		char c = (char)('0' + i);

		send_all(as[i], &c, 1);
	}
	for (int i = 0; i < 3; i++) {
		char c;

		recv_exact(bs[i], &c, 1);
		cr_assert(c >= '0' && c <= '2' && !seen[c - '0'], "B connection %d got '%c'", i, c);
		seen[c - '0'] = 1;
	}
	/* No fourth pair. */
	p = (struct pollfd){ .fd = la, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 300), 0, "a fourth connection to A");
	for (int i = 0; i < 3; i++) {
		close(as[i]);
		close(bs[i]);
	}
	fwd_stop(&f);
	fwd_release(&f);
	close(la);
	close(lb);
}

/* ---- the reverse tunnel ---- */

/*
 * docs/tunnel.md on loopback: "public" sockfwd --meet -l :P9000 -l :P2222,
 * "behind NAT" sockfwd --bridge -r SERVICE -r public:P9000, with an echo
 * server as the service; a client of P2222 reaches it, twice in a row.
 */
PAIR_TEST(tunnel, two_processes, 90)
{
	struct fwd pub, nat;
	struct srv echo;
	int p9000, p2222;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	meet_start(&pub, engine, &p9000, &p2222, NULL);
	bridge_start(&nat, engine, echo.port, p9000, NULL);
	for (int session = 0; session < 2; session++) {
		int c = tcp_connect(AF_INET, p2222);
		struct sender snd;
		uint64_t h, n;

		/* Joined first: a FIN while waiting for the tunnel would mean "left". */
		echo_roundtrip(c, 299, 16);
		sender_start(&snd, c, 300 + (uint64_t)session, 4 * MiB, 1);
		n = recv_to_eof(c, &h, 4 * MiB);
		sender_join(&snd);
		cr_assert(n == 4 * MiB && h == gen_hash(300 + (uint64_t)session, 4 * MiB),
			  "session %d through the tunnel: %llu bytes", session,
			  (unsigned long long)n);
		close(c);
	}
	fwd_stop(&nat);
	fwd_stop(&pub);
	fwd_release(&nat);
	fwd_release(&pub);
	srv_stop(&echo);
}

/* The same tunnel as two rules of one config file: mode = "meet" and mode = "bridge". */
PAIR_TEST(tunnel, config_file, 60)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 2 };
	struct srv echo;
	struct fwd f;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = echo.port;
	fwd_start_conf(&f, &c,
		       "engine = \"@E\";\n"
		       "log_level = \"verbose\";\n"
		       "rules = {\n"
		       "  public = { mode = \"meet\"; listen = [\"127.0.0.1:@L0\", "
		       "\"127.0.0.1:@L1\"]; meet_timeout = \"1m\"; };\n"
		       "  nat = { mode = \"bridge\"; upstream = [\"127.0.0.1:@U0\", "
		       "\"127.0.0.1:@L0\"]; pairs = 2; };\n"
		       "};\n");
	for (int i = 0; i < 3; i++)
		echo_once(AF_INET, c.lport[1], 400 + (uint64_t)i, 64 * KiB);
	fwd_stop(&f);
	fwd_release(&f);
	conf_remove(&c);
	srv_stop(&echo);
}

/* ---- reload ---- */

/* SIGHUP, then wait (bounded) until main logged one more "reloaded". */
static void pair_reload(struct fwd *f)
{
	int before = fwd_log_count(f, "reloaded ", NULL);

	fwd_assert_alive(f);
	sys_assert(kill(f->pid, SIGHUP) == 0, "kill SIGHUP");
	for (int i = 0; i < 1000 && fwd_log_count(f, "reloaded ", NULL) <= before; i++)
		sleep_ms(10);
	cr_assert_gt(fwd_log_count(f, "reloaded ", NULL), before,
		     "no 'reloaded' line after SIGHUP; stderr:\n%s", fwd_stderr_tail(f));
}

/*
 * A reload that drops a bridge rule ends its pair; the bridge rule it
 * adds starts its own; a meet rule added by the reload meets clients.
 */
PAIR_TEST(tunnel, reload, 60)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 3 };
	int la, lb, lc, ld, a, b, x, y;
	char buf[8];
	struct fwd f;

	for (int i = 0; i < 4; i++) {
		do
			c.up[i] = pick_port(AF_INET);
		while (i > 0 && c.up[i] == c.up[i - 1]);
	}
	la = lsn_open(c.up[0]);
	lb = lsn_open(c.up[1]);
	lc = lsn_open(c.up[2]);
	ld = lsn_open(c.up[3]);
	fwd_start_conf(&f, &c,
		       "engine = \"@E\";\n"
		       "log_level = \"verbose\";\n"
		       "rules = {\n"
		       "  fwd = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		       "  b1 = { mode = \"bridge\"; upstream = [\"127.0.0.1:@U0\", "
		       "\"127.0.0.1:@U1\"]; };\n"
		       "};\n");
	a = lsn_accept(la, E2E_HANG_MS);
	b = lsn_accept(lb, E2E_HANG_MS);
	cr_assert(a >= 0 && b >= 0, "b1 did not connect; %s", fwd_note());
	pair_ping(a, b, "b1");
	conf_write(&c, "engine = \"@E\";\n"
		       "log_level = \"verbose\";\n"
		       "rules = {\n"
		       "  fwd = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		       "  b2 = { mode = \"bridge\"; upstream = [\"127.0.0.1:@U2\", "
		       "\"127.0.0.1:@U3\"]; };\n"
		       "  m = { mode = \"meet\"; listen = [\"127.0.0.1:@L1\", "
		       "\"127.0.0.1:@L2\"]; };\n"
		       "};\n");
	pair_reload(&f);
	/* b1's pair ends with a reset; b2 connects. */
	cr_assert_neq(recv_exact_ms(a, buf, 1, E2E_RESET_MS), -ETIMEDOUT, "b1's pair lives on");
	cr_assert_neq(recv_exact_ms(b, buf, 1, E2E_RESET_MS), -ETIMEDOUT, "b1's pair lives on");
	close(a);
	close(b);
	x = lsn_accept(lc, E2E_HANG_MS);
	y = lsn_accept(ld, E2E_HANG_MS);
	cr_assert(x >= 0 && y >= 0, "b2 did not connect after the reload; %s", fwd_note());
	pair_ping(x, y, "b2");
	cr_assert(lsn_accept(la, 300) < 0, "b1 connected again after it was dropped");
	fwd_wait_port(&f, c.lport[1], 1, E2E_READY_MS);
	a = tcp_connect(AF_INET, c.lport[1]);
	b = tcp_connect(AF_INET, c.lport[2]);
	pair_ping(a, b, "m");
	close(a);
	close(b);
	close(x);
	close(y);
	fwd_stop(&f);
	fwd_release(&f);
	conf_remove(&c);
	close(la);
	close(lb);
	close(lc);
	close(ld);
}

/* ---- usage errors ---- */

/* argv (with "@A", "@B" replaced by free loopback addresses) exits 2 naming words. */
static void expect_usage(const char *const *argv, const char *words)
{
	static char err[1 << 14];
	const char *args[PAIR_ARGS];
	char a[64], b[64];
	int st;

	loop_addr(a, sizeof(a), AF_INET, pick_port(AF_INET));
	loop_addr(b, sizeof(b), AF_INET, pick_port(AF_INET));
	for (int i = 0;; i++) {
		cr_assert(i < PAIR_ARGS);
		args[i] = argv[i];
		if (argv[i] == NULL)
			break;
		if (strcmp(argv[i], "@A") == 0)
			args[i] = a;
		else if (strcmp(argv[i], "@B") == 0)
			args[i] = b;
	}
	st = fwd_run(args, 20000, NULL, 0, err, sizeof(err));
	cr_assert_eq(st, 2, "exit %d, expected 2; stderr:\n%s", st, err);
	cr_assert(strstr(err, words) != NULL, "stderr does not mention '%s':\n%s", words, err);
}

Test(pair_cli, usage_errors, .timeout = 120)
{
	expect_usage((const char *[]){ "sockfwd", "--meet", "-l", "@A", NULL }, "two -l");
	expect_usage(
		(const char *[]){ "sockfwd", "--meet", "-l", "@A", "-l", "@B", "-r", "@A", NULL },
		"no -r");
	expect_usage((const char *[]){ "sockfwd", "--bridge", "-r", "@A", NULL }, "two -r");
	expect_usage(
		(const char *[]){ "sockfwd", "--bridge", "-r", "@A", "-r", "@B", "-l", "@A", NULL },
		"no -l");
	expect_usage(
		(const char *[]){ "sockfwd", "--meet", "--bridge", "-l", "@A", "-l", "@B", NULL },
		"--meet and --bridge");
	expect_usage((const char *[]){ "sockfwd", "--pairs", "2", "-l", "@A", "-r", "@B", NULL },
		     "--pairs needs --bridge");
	expect_usage((const char *[]){ "sockfwd", "--meet-timeout", "1s", "--bridge", "-r", "@A",
				       "-r", "@B", NULL },
		     "--meet-timeout needs --meet");
	expect_usage((const char *[]){ "sockfwd", "--bridge", "--pairs", "0", "-r", "@A", "-r",
				       "@B", NULL },
		     "--pairs 0");
	expect_usage((const char *[]){ "sockfwd", "--meet", "--meet-timeout", "soon", "-l", "@A",
				       "-l", "@B", NULL },
		     "--meet-timeout soon");
	expect_usage((const char *[]){ "sockfwd", "--meet", "-l", "127.0.0.1:20000-20001", "-l",
				       "@B", NULL },
		     "no port ranges");
	expect_usage((const char *[]){ "sockfwd", "--bridge", "-r", "@A", "-r", "@B",
				       "--proxy-protocol", "v1", NULL },
		     "--proxy-protocol");
	expect_usage((const char *[]){ "sockfwd", "--meet", "-c", "/dev/null", NULL },
		     "-c cannot be combined with --meet");
}

#ifdef SF_HAVE_URING
/* The uring engine does not serve meet and bridge, and says so. */
Test(pair_cli, uring_refuses, .timeout = 60)
{
	expect_usage((const char *[]){ "sockfwd", "-b", "uring", "--meet", "-l", "@A", "-l", "@B",
				       NULL },
		     "does not serve");
	expect_usage((const char *[]){ "sockfwd", "-b", "uring", "--bridge", "-r", "@A", "-r", "@B",
				       NULL },
		     "does not serve");
}
#endif

/* Config: a meet or bridge rule of the wrong shape is refused by -t with exit 2. */
Test(pair_cli, config_errors, .timeout = 60)
{
	static const struct {
		const char *text, *words;
	} cases[] = {
		{ "rules = { r = { mode = \"sideways\"; listen = \"127.0.0.1:1\"; upstream = "
		  "\"127.0.0.1:2\"; }; };",
		  "unknown mode 'sideways'" },
		{ "rules = { r = { mode = \"meet\"; listen = \"127.0.0.1:1\"; }; };",
		  "exactly two listen" },
		{ "rules = { r = { mode = \"meet\"; listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]; "
		  "upstream = \"127.0.0.1:3\"; }; };",
		  "takes no upstream" },
		{ "rules = { r = { mode = \"bridge\"; upstream = \"127.0.0.1:1\"; }; };",
		  "exactly two upstreams" },
		{ "rules = { r = { mode = \"bridge\"; listen = \"127.0.0.1:9\"; upstream = "
		  "[\"127.0.0.1:1\", \"127.0.0.1:2\"]; }; };",
		  "takes no listen" },
		{ "rules = { r = { mode = \"bridge\"; upstream = [\"127.0.0.1:1\", "
		  "\"127.0.0.1:2\"]; pairs = 0; }; };",
		  "out of range" },
		{ "rules = { r = { mode = \"meet\"; listen = [\"127.0.0.1:1-2\", \"127.0.0.1:5\"]; "
		  "}; };",
		  "no port range" },
	};
	static char err[1 << 14];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[] = "/tmp/sockfwd-pair-XXXXXX";
		int fd = mkstemp(path), st;
		const char *argv[] = { "sockfwd", "-t", "-c", path, NULL };

		sys_assert(fd >= 0, "mkstemp");
		cr_assert(write(fd, cases[i].text, strlen(cases[i].text)) ==
			  (ssize_t)strlen(cases[i].text));
		close(fd);
		st = fwd_run(argv, 20000, NULL, 0, err, sizeof(err));
		unlink(path);
		cr_assert_eq(st, 2, "case %zu: exit %d; stderr:\n%s", i, st, err);
		cr_assert(strstr(err, cases[i].words) != NULL,
			  "case %zu: stderr does not mention '%s':\n%s", i, cases[i].words, err);
	}
}
