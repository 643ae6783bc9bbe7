/*
 * Upstream pools (-r given several times): each balance mode's
 * distribution and stickiness, failover past refused and silent
 * upstreams, passive health (down, then back), backup upstreams, connect
 * time-outs and the reset a client sees only when every upstream failed.
 *
 * Upstreams are SRV_ID servers, so each client learns which one served
 * it. The forwarder runs one worker (-j 1) and is found ready from /proc
 * (no probe connection), so a balancer's state sees only the test's
 * clients.
 */
#include "harness.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define POOL_MAX   6
#define POOL_FLAGS 10

/* "127.0.0.1:P" then opts (",weight=2", ",backup" or "") into buf. */
static char *up_addr(char *buf, size_t len, const struct srv *s, const char *opts)
{
	char a[64];

	snprintf(buf, len, "%s%s", srv_addr(s, a, sizeof(a)), opts ? opts : "");
	return buf;
}

/*
 * Start sockfwd -b engine -j 1 with one -r per entry of ups (NULL
 * terminated), then flags (NULL terminated, may be NULL).
 */
static void start_pool(struct fwd *f, const char *engine, const char *const *ups,
		       const char *const *flags)
{
	struct fwd_opts o = { .engine = engine, .threads = 1, .no_probe = 1 };
	int n = 0;

	for (int i = 0; ups[i] != NULL; i++) {
		cr_assert(i < POOL_MAX, "too many upstreams");
		o.extra[n++] = "-r";
		o.extra[n++] = ups[i];
	}
	for (int i = 0; flags != NULL && flags[i] != NULL; i++) {
		cr_assert(n < FWD_EXTRA - 1, "too many flags");
		o.extra[n++] = flags[i];
	}
	o.extra[n] = NULL;
	fwd_start(f, &o);
}

/* k sequential clients (from src); counts[id]++ for the upstream that served each. */
static void tally(const struct fwd *f, const char *src, int k, int *counts, int nids)
{
	for (int i = 0; i < k; i++) {
		int id = id_query(AF_INET, src, f->port);

		cr_assert(id >= 0 && id < nids, "client %d served by unknown upstream %d", i, id);
		counts[id]++;
	}
}

/* Every one of k sequential clients is served by upstream want. */
static void all_served_by(const struct fwd *f, int k, int want, const char *what)
{
	for (int i = 0; i < k; i++) {
		int id = id_query(AF_INET, NULL, f->port);

		cr_assert_eq(id, want, "%s: client %d of %d served by upstream %d, expected %d",
			     what, i, k, id, want);
	}
}

/*
 * Poll (bounded by ms) until a client is served by upstream want; the
 * clients meanwhile must all be served by someone. Returns 1 when seen.
 */
static int wait_served_by(const struct fwd *f, int want, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;

	for (int i = 0; i < 100000; i++) {
		if (id_query(AF_INET, NULL, f->port) == want)
			return 1;
		if (now_ms() >= deadline)
			break;
		sleep_ms(50);
	}
	return 0;
}

static void stop_all(struct fwd *f, struct srv *s, int n)
{
	fwd_stop(f);
	for (int i = 0; i < n; i++)
		srv_stop(&s[i]);
}

/* Default balance is round robin: 3 equal upstreams, 9 clients in turn, 3 each. */
ENGINE_TEST(pool, roundrobin_equal, 60)
{
	char a[3][96];
	const char *ups[4];
	int counts[3] = { 0 };
	struct srv s[3];
	struct fwd f;

	for (int i = 0; i < 3; i++) {
		srv_start_id(&s[i], AF_INET, i);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	}
	ups[3] = NULL;
	start_pool(&f, engine, ups, NULL);
	tally(&f, NULL, 9, counts, 3);
	cr_assert(counts[0] == 3 && counts[1] == 3 && counts[2] == 3,
		  "round robin over 3 upstreams gave %d/%d/%d of 9 clients, expected 3/3/3",
		  counts[0], counts[1], counts[2]);
	stop_all(&f, s, 3);
}

/* Weights 1, 3, 2: every 6 clients in a row give 1, 3 and 2 (any starting point). */
ENGINE_TEST(pool, roundrobin_weighted, 60)
{
	static const char *const opts[3] = { NULL, ",weight=3", ",weight=2" };
	const char *flags[] = { "--balance", "roundrobin", NULL };
	char a[3][96];
	const char *ups[4];
	int counts[3] = { 0 };
	struct srv s[3];
	struct fwd f;

	for (int i = 0; i < 3; i++) {
		srv_start_id(&s[i], AF_INET, i);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], opts[i]);
	}
	ups[3] = NULL;
	start_pool(&f, engine, ups, flags);
	tally(&f, NULL, 12, counts, 3);
	cr_assert(counts[0] == 2 && counts[1] == 6 && counts[2] == 4,
		  "weights 1/3/2 gave %d/%d/%d of 12 clients, expected 2/6/4", counts[0], counts[1],
		  counts[2]);
	stop_all(&f, s, 3);
}

/* Connect, read the identity, keep the connection; its local port into *port. */
static int hold(const struct fwd *f, int *fd, int *port)
{
	*fd = tcp_connect(AF_INET, f->port);
	*port = sock_local_port(*fd);
	return id_read(*fd);
}

/* Close fd and wait (bounded) for the forwarder's -v close line of client port. */
static void close_and_wait(struct fwd *f, int fd, int port)
{
	char needle[64];

	close(fd);
	snprintf(needle, sizeof(needle), "127.0.0.1:%d", port);
	cr_assert(fwd_log_wait(f, E2E_RESET_MS, needle, "close"),
		  "no -v close line for client %s within %d ms; stderr:\n%s", needle, E2E_RESET_MS,
		  fwd_stderr_tail(f));
}

/*
 * leastconn: with one connection held on upstream X, a second goes to the
 * other, Y; once that one has ended (its close line is logged) and X is
 * still held, every new client goes to Y (round robin would alternate).
 */
ENGINE_TEST(pool, leastconn, 60)
{
	const char *flags[] = { "--balance", "leastconn", "-v", NULL };
	char a[2][96];
	const char *ups[3];
	struct srv s[2];
	struct fwd f;
	int c1, c2, p1, p2, x, y;

	for (int i = 0; i < 2; i++) {
		srv_start_id(&s[i], AF_INET, i);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	}
	ups[2] = NULL;
	start_pool(&f, engine, ups, flags);
	x = hold(&f, &c1, &p1);
	y = hold(&f, &c2, &p2);
	cr_assert_neq(x, y,
		      "leastconn: a second client went to upstream %d, which holds the "
		      "only other connection",
		      x);
	close_and_wait(&f, c2, p2);
	for (int i = 0; i < 4; i++) {
		int fd, port, id = hold(&f, &fd, &port);

		cr_assert_eq(id, y,
			     "leastconn: client %d went to upstream %d (1 active) instead of %d "
			     "(none active)",
			     i, id, y);
		close_and_wait(&f, fd, port);
	}
	echo_roundtrip(c1, 1, 1000);
	close(c1);
	stop_all(&f, s, 2);
}

/*
 * source: the same client address always reaches the same upstream, from
 * any port; 12 addresses (127.0.0.2 ...) spread over more than one of 4.
 */
ENGINE_TEST(pool, source_sticky, 60)
{
	const char *flags[] = { "--balance", "source", NULL };
	char a[4][96], src[32];
	const char *ups[5];
	int first[12], seen[4] = { 0 }, distinct = 0;
	struct srv s[4];
	struct fwd f;

	for (int i = 0; i < 4; i++) {
		srv_start_id(&s[i], AF_INET, i);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	}
	ups[4] = NULL;
	start_pool(&f, engine, ups, flags);
	for (int round = 0; round < 3; round++) {
		for (int k = 0; k < 12; k++) {
			int id;

			snprintf(src, sizeof(src), "127.0.0.%d", 2 + k);
			id = id_query(AF_INET, src, f.port);
			cr_assert(id >= 0 && id < 4, "unknown upstream %d", id);
			if (round == 0) {
				first[k] = id;
				distinct += !seen[id]++;
			}
			cr_assert_eq(id, first[k],
				     "source: client %s went to upstream %d, earlier to %d", src,
				     id, first[k]);
		}
	}
	cr_assert(distinct >= 2, "source: 12 client addresses all hashed to one upstream of 4");
	stop_all(&f, s, 4);
}

/* first: every client goes to the first upstream while it is up. A bare duration is seconds. */
ENGINE_TEST(pool, first_in_order, 60)
{
	const char *flags[] = { "--balance", "first", "--connect-timeout", "5", NULL };
	char a[3][96];
	const char *ups[4];
	struct srv s[3];
	struct fwd f;

	for (int i = 0; i < 3; i++) {
		srv_start_id(&s[i], AF_INET, i);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	}
	ups[3] = NULL;
	start_pool(&f, engine, ups, flags);
	all_served_by(&f, 6, 0, "balance first");
	stop_all(&f, s, 3);
}

/*
 * Every balance mode fails over: the first upstream refuses, and every
 * client (from several addresses, for source hashing) is still served,
 * by the second.
 */
ENGINE_TEST(pool, failover_every_mode, 60)
{
	static const char *const modes[] = { "roundrobin", "leastconn", "source", "first" };
	char a[2][96], src[32];
	const char *ups[3];
	struct srv s[2];

	srv_bind(&s[0], AF_INET, SRV_ID, 0); /* bound, never listening: refused */
	srv_start_id(&s[1], AF_INET, 1);
	for (int i = 0; i < 2; i++)
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	ups[2] = NULL;
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		const char *flags[] = { "--balance", modes[m], NULL };
		struct fwd f;

		start_pool(&f, engine, ups, flags);
		for (int k = 0; k < 6; k++) {
			int id;

			snprintf(src, sizeof(src), "127.0.0.%d", 2 + k);
			id = id_query(AF_INET, src, f.port);
			cr_assert_eq(id, 1, "balance %s: client %s served by %d, expected 1",
				     modes[m], src, id);
		}
		fwd_stop(&f);
	}
	srv_stop(&s[0]);
	srv_stop(&s[1]);
}

#define FAIL_TIMEOUT_MS 1500

/*
 * Passive health, down and then back: upstream 0 refuses, so it is
 * marked down (--max-fails 1) and clients fail over to 1. Once it
 * listens again it stays skipped until --fail-timeout has passed since
 * its failure (which came after t0, the start), then serves again.
 */
ENGINE_TEST(pool, failover_down_then_back, 60)
{
	const char *flags[] = { "--max-fails", "1", "--fail-timeout", "1500ms", NULL };
	char a[2][96];
	const char *ups[3];
	struct srv s[2];
	uint64_t t0;
	struct fwd f;
	int skipped = 0;

	srv_bind(&s[0], AF_INET, SRV_ID, 0);
	s[0].id = 0;
	srv_start_id(&s[1], AF_INET, 1);
	for (int i = 0; i < 2; i++)
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	ups[2] = NULL;
	t0 = now_ms();
	start_pool(&f, engine, ups, flags);
	/* Round robin tries upstream 0 for one of the first two: it fails over. */
	all_served_by(&f, 4, 1, "upstream 0 refusing");
	srv_listen(&s[0]);
	/* Marked down until at least t0 + fail-timeout: still skipped. */
	for (int i = 0; i < 20 && now_ms() + 300 < t0 + FAIL_TIMEOUT_MS; i++, skipped++) {
		int id = id_query(AF_INET, NULL, f.port);

		cr_assert_eq(id, 1,
			     "upstream 0 served a client %llu ms after its failure, within "
			     "--fail-timeout %d ms",
			     (unsigned long long)(now_ms() - t0), FAIL_TIMEOUT_MS);
		sleep_ms(20);
	}
	/* Not a warning: Criterion exits 1 on any warning even when every test passes. */
	if (skipped == 0)
		cr_log_info("%s: too slow to check the fail-timeout window", engine);
	cr_assert(wait_served_by(&f, 0, 10000),
		  "upstream 0 listens again but served no client within 10 s (fail-timeout "
		  "%d ms)",
		  FAIL_TIMEOUT_MS);
	stop_all(&f, s, 2);
}

/* Nothing answers: every client is reset, and the forwarder lives on. */
ENGINE_TEST(pool, all_down_reset, 60)
{
	char a[2][96];
	const char *ups[3];
	struct srv s[2];
	struct fwd f;

	for (int i = 0; i < 2; i++) {
		srv_bind(&s[i], AF_INET, SRV_ID, 0);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], NULL);
	}
	ups[2] = NULL;
	start_pool(&f, engine, ups, NULL);
	/* The second and third find both marked down: all are tried anyway. */
	for (int i = 0; i < 3; i++) {
		int fd = tcp_connect(AF_INET, f.port);

		recv_expect_reset(fd, E2E_RESET_MS);
		close(fd);
	}
	fwd_assert_alive(&f);
	/* All down means all tried: one coming back serves at once. */
	s[1].id = 1;
	srv_listen(&s[1]);
	cr_assert(wait_served_by(&f, 1, 10000),
		  "with every upstream marked down, one listening again served nobody");
	stop_all(&f, s, 2);
}

/*
 * --connect-timeout 300ms: a silent upstream (SYNs dropped) costs a
 * client 300 ms, then it fails over; with the 10 s default the bounded
 * read below would fail.
 */
ENGINE_TEST(pool, connect_timeout_failover, 60)
{
	const char *flags[] = { "--connect-timeout", "300ms", NULL };
	char a[2][96], sa[64];
	const char *ups[3];
	struct silent q;
	struct srv s;
	struct fwd f;

	silent_start(&q, AF_INET);
	srv_start_id(&s, AF_INET, 1);
	ups[0] = loop_addr(a[0], sizeof(a[0]), AF_INET, q.port);
	ups[1] = srv_addr(&s, sa, sizeof(sa));
	ups[2] = NULL;
	start_pool(&f, engine, ups, flags);
	for (int i = 0; i < 4; i++) {
		int fd = tcp_connect(AF_INET, f.port), id = id_read_try(fd, 5000);

		cr_assert_eq(id, 1,
			     "client %d: %s, expected upstream 1 within 5 s (connect timeout "
			     "300 ms)%s",
			     i, id >= 0 ? "another upstream" : strerror(-id), fwd_note());
		close(fd);
	}
	fwd_stop(&f);
	srv_stop(&s);
	silent_stop(&q);
}

/*
 * Only a silent upstream: after --connect-timeout the client is reset, each
 * time, and the close line gives the timeout as the cause, not a refusal.
 */
ENGINE_TEST(pool, connect_timeout_reset, 60)
{
	const char *flags[] = { "--connect-timeout", "300ms", "-v", NULL };
	char a[64];
	const char *ups[2];
	struct silent q;
	struct fwd f;

	silent_start(&q, AF_INET);
	ups[0] = loop_addr(a, sizeof(a), AF_INET, q.port);
	ups[1] = NULL;
	start_pool(&f, engine, ups, flags);
	for (int i = 0; i < 2; i++) {
		int fd = tcp_connect(AF_INET, f.port);

		recv_expect_reset(fd, 5000);
		close(fd);
	}
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, "connect-timeout", "timed out"),
		  "no close line with the timeout as its cause; stderr:\n%s", fwd_stderr_tail(&f));
	cr_assert_eq(fwd_log_count(&f, "connect-timeout", "refused"), 0,
		     "a connect timeout logged as refused; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_stop(&f);
	silent_stop(&q);
}

/* A backup is never used while a normal upstream is up. */
ENGINE_TEST(pool, backup_idle_while_up, 60)
{
	static const char *const opts[3] = { NULL, NULL, ",backup" };
	char a[3][96];
	const char *ups[4];
	int counts[3] = { 0 };
	struct srv s[3];
	struct fwd f;

	for (int i = 0; i < 3; i++) {
		srv_start_id(&s[i], AF_INET, i);
		ups[i] = up_addr(a[i], sizeof(a[i]), &s[i], opts[i]);
	}
	ups[3] = NULL;
	start_pool(&f, engine, ups, NULL);
	tally(&f, NULL, 8, counts, 3);
	cr_assert(counts[2] == 0 && counts[0] == 4 && counts[1] == 4,
		  "upstreams 0, 1 and backup 2 served %d/%d/%d of 8 clients, expected 4/4/0",
		  counts[0], counts[1], counts[2]);
	stop_all(&f, s, 3);
}

/*
 * Backup with weight, after a down normal upstream: clients go to the
 * backup, and back to the normal one once it listens again and its
 * fail-timeout has passed.
 */
ENGINE_TEST(pool, backup_when_down, 60)
{
	const char *flags[] = { "--fail-timeout", "1s", NULL };
	char a[2][96];
	const char *ups[3];
	struct srv s[2];
	struct fwd f;

	srv_bind(&s[0], AF_INET, SRV_ID, 0);
	srv_start_id(&s[1], AF_INET, 1);
	ups[0] = up_addr(a[0], sizeof(a[0]), &s[0], NULL);
	ups[1] = up_addr(a[1], sizeof(a[1]), &s[1], ",weight=2,backup");
	ups[2] = NULL;
	start_pool(&f, engine, ups, flags);
	all_served_by(&f, 4, 1, "only normal upstream refusing");
	srv_listen(&s[0]);
	cr_assert(wait_served_by(&f, 0, 10000),
		  "the normal upstream listens again but served no client within 10 s");
	all_served_by(&f, 4, 0, "normal upstream back");
	stop_all(&f, s, 2);
}
