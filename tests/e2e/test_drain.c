/*
 * Stop and drain: with --drain-timeout the first SIGTERM closes every
 * listener (new connects are refused), lets a transfer in flight finish
 * intact and exits 0 as soon as no connection is left; a connection still
 * open at the deadline is reset, as is every one at a second SIGTERM or a
 * SIGINT; a SIGHUP meanwhile is ignored. Without a drain timeout SIGTERM
 * is the fast stop: it resets what is open, never closes it with a FIN.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DRAIN_PART (8 * MiB) /* bytes sent before the SIGTERM, and as many after */
#define DRAIN_SEED 4242

/* The log lines of the drain (see src/core/drain.c). */
#define LOG_START "drain: stopped accepting"
#define LOG_DONE  "drain: done"

/*
 * sockfwd -b engine -j 2 [--drain-timeout timeout] forwarding to s; no
 * probe connection, so the drain's counts are the test's own.
 */
static void start(struct fwd *f, const char *engine, const struct srv *s, const char *timeout)
{
	struct fwd_opts o = { .engine = engine, .threads = 2, .no_probe = 1 };
	char remote[64];

	if (timeout != NULL) {
		o.extra[0] = "--drain-timeout";
		o.extra[1] = timeout;
	}
	o.remote = srv_addr(s, remote, sizeof(remote));
	fwd_start(f, &o);
}

/* Wait (bounded) for a stderr line holding a and b; fail with the log otherwise. */
static void log_expect(struct fwd *f, const char *a, const char *b)
{
	cr_assert(fwd_log_wait(f, E2E_EXIT_MS, a, b), "no log line with '%s'%s%s; stderr:\n%s", a,
		  b ? " and " : "", b ? b : "", fwd_stderr_tail(f));
}

/* Wait (bounded) for the exit; assert status 0. */
static void expect_exit0(struct fwd *f, const char *after)
{
	if (!fwd_wait(f, E2E_EXIT_MS)) {
		kill(f->pid, SIGKILL);
		fwd_wait(f, E2E_EXIT_MS);
		cr_assert_fail("sockfwd still running %d ms after %s; stderr:\n%s", E2E_EXIT_MS,
			       after, fwd_stderr_tail(f));
	}
	cr_assert(WIFEXITED(f->status) && WEXITSTATUS(f->status) == 0,
		  "after %s: %s, expected exit 0; stderr:\n%s", after, fwd_status_str(f),
		  fwd_stderr_tail(f));
}

/* A connect to the (closed) listener is refused, not queued nor reset. */
static void expect_refused(struct fwd *f)
{
	int fd = tcp_connect_try(AF_INET, f->port);

	if (fd >= 0)
		close(fd);
	cr_assert(fd == -ECONNREFUSED, "connect after the drain started: %s, expected refused",
		  fd >= 0 ? "accepted" : strerror(-fd));
}

/* ---- the reader of the echo (a thread: no assertions) ---- */

struct reader {
	int fd;
	uint64_t got;
	uint64_t hash;
	int err; /* errno, 0 after EOF */
	pthread_t th;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned char *buf = malloc(64 * KiB);

	r->hash = HASH_INIT;
	if (buf == NULL) {
		r->err = ENOMEM;
		return NULL;
	}
	for (int i = 0; i < 10000000; i++) {
		ssize_t n = recv(r->fd, buf, 64 * KiB, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r->err = n < 0 ? errno : 0;
			break;
		}
		r->hash = hash_update(r->hash, buf, (size_t)n);
		r->got += (uint64_t)n;
	}
	free(buf);
	return NULL;
}

/* Send the next n bytes of the stream g on fd. */
static void send_stream(int fd, struct gen *g, uint64_t n)
{
	unsigned char *buf = malloc(64 * KiB);

	cr_assert(buf != NULL, "malloc failed");
	while (n > 0) {
		size_t k = n < 64 * KiB ? (size_t)n : 64 * KiB;

		gen_fill(g, buf, k);
		send_all(fd, buf, k);
		n -= k;
	}
	free(buf);
}

/*
 * A transfer in progress at SIGTERM: half of it sent before, half after
 * the drain started (and a SIGHUP, ignored). It arrives intact, a new
 * connect is refused meanwhile, and the process exits 0 once the
 * transfer ended, long before its 60 s timeout.
 */
ENGINE_TEST(drain, transfer_completes, 60)
{
	struct reader rd = { 0 };
	struct gen g;
	struct srv s;
	struct fwd f;
	int e;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start(&f, engine, &s, "60s");
	rd.fd = tcp_connect(AF_INET, f.port);
	e = pthread_create(&rd.th, NULL, reader_main, &rd);
	cr_assert(e == 0, "pthread_create: %s", strerror(e));
	gen_init(&g, DRAIN_SEED);
	send_stream(rd.fd, &g, DRAIN_PART);

	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	log_expect(&f, LOG_START, "1 connection open");
	expect_refused(&f);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	log_expect(&f, "SIGHUP while draining", NULL);
	fwd_assert_alive(&f);

	send_stream(rd.fd, &g, DRAIN_PART);
	sys_assert(shutdown(rd.fd, SHUT_WR) == 0, "shutdown");
	e = pthread_join(rd.th, NULL);
	cr_assert(e == 0, "pthread_join: %s", strerror(e));
	cr_assert(rd.err == 0, "the echo failed after %llu bytes: %s%s", (unsigned long long)rd.got,
		  strerror(rd.err), fwd_note());
	cr_assert_eq(rd.got, 2 * DRAIN_PART, "echo: %llu of %llu bytes", (unsigned long long)rd.got,
		     (unsigned long long)(2 * DRAIN_PART));
	cr_assert(rd.hash == gen_hash(DRAIN_SEED, 2 * DRAIN_PART), "the echo differs");
	close(rd.fd);

	expect_exit0(&f, "the drained transfer ended");
	log_expect(&f, LOG_DONE, "(no connection left)");
	log_expect(&f, LOG_DONE, "1 connection finished, 0 reset");
	log_expect(&f, "stats:", "accepted=1 closed=1 resets=0");
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * A connection still open when the drain times out is reset, on both
 * sides (the client sees ECONNRESET, not EOF); exit 0.
 */
ENGINE_TEST(drain, deadline_resets, 60)
{
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start(&f, engine, &s, "1s");
	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 7, 1000);
	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	log_expect(&f, LOG_START, "1 connection open");
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	expect_exit0(&f, "the drain timed out");
	log_expect(&f, LOG_DONE, "(timeout)");
	log_expect(&f, LOG_DONE, "0 connections finished, 1 reset");
	log_expect(&f, "stats:", "accepted=1 closed=1 resets=1");
	fwd_release(&f);
	srv_stop(&s);
	cr_assert(s.resets == 1 && s.eofs == 0,
		  "the upstream saw %d resets and %d EOFs, expected one reset", s.resets, s.eofs);
}

/*
 * sig during a 60 s drain ends it at once: exit 0 well within the bound,
 * the open connection reset.
 */
static void drain_cut(const char *engine, int sig, const char *why)
{
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start(&f, engine, &s, "60s");
	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 8, 1000);
	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	log_expect(&f, LOG_START, NULL);
	fwd_assert_alive(&f);
	sys_assert(kill(f.pid, sig) == 0, "kill %s", strsignal(sig));
	expect_exit0(&f, why);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	log_expect(&f, LOG_DONE, why);
	log_expect(&f, LOG_DONE, "0 connections finished, 1 reset");
	fwd_release(&f);
	srv_stop(&s);
	cr_assert(s.resets == 1 && s.eofs == 0,
		  "the upstream saw %d resets and %d EOFs, expected one reset", s.resets, s.eofs);
}

ENGINE_TEST(drain, second_sigterm_ends_it, 60) { drain_cut(engine, SIGTERM, "second SIGTERM"); }

ENGINE_TEST(drain, sigint_ends_it, 60) { drain_cut(engine, SIGINT, "SIGINT"); }

/*
 * The fast stop: sig with a connection open resets it on both sides and
 * exits 0, with no drain. timeout: --drain-timeout or NULL (SIGINT is a
 * fast stop even with one).
 */
static void fast_stop(const char *engine, int sig, const char *timeout)
{
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start(&f, engine, &s, timeout);
	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 9, 1000);
	sys_assert(kill(f.pid, sig) == 0, "kill %s", strsignal(sig));
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	expect_exit0(&f, strsignal(sig));
	cr_assert_eq(fwd_log_count(&f, "drain:", NULL), 0, "a drain at %s; stderr:\n%s",
		     strsignal(sig), fwd_stderr_tail(&f));
	log_expect(&f, "stats:", "accepted=1 closed=1 resets=1");
	fwd_release(&f);
	srv_stop(&s);
	cr_assert(s.resets == 1 && s.eofs == 0,
		  "the upstream saw %d resets and %d EOFs, expected one reset", s.resets, s.eofs);
}

ENGINE_TEST(drain, fast_stop_resets, 60) { fast_stop(engine, SIGTERM, NULL); }

ENGINE_TEST(drain, sigint_is_fast, 60) { fast_stop(engine, SIGINT, "60s"); }

/*
 * A rule with max_conns (which the uring engine accepts through a poll
 * rather than a multishot accept) drains the same way: the listener is
 * closed, the open connection finishes, exit 0.
 */
ENGINE_TEST(drain, max_conns_rule, 60)
{
	struct fwd_opts o = { .engine = engine, .threads = 2, .no_probe = 1 };
	char remote[64];
	uint64_t h;
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, remote, sizeof(remote));
	o.extra[0] = "--drain-timeout";
	o.extra[1] = "60s";
	o.extra[2] = "--max-conns";
	o.extra[3] = "10";
	fwd_start(&f, &o);
	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 13, 1000);
	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	log_expect(&f, LOG_START, "1 connection open");
	expect_refused(&f);
	echo_roundtrip(fd, 14, 1000);
	sys_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
	cr_assert_eq(recv_to_eof(fd, &h, 0), 0, "bytes after the echo");
	close(fd);
	expect_exit0(&f, "the drained connection ended");
	log_expect(&f, LOG_DONE, "1 connection finished, 0 reset");
	fwd_release(&f);
	srv_stop(&s);
}

/* With nothing open, the drain ends at once: exit 0 long before its timeout. */
ENGINE_TEST(drain, idle_exits_at_once, 60)
{
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start(&f, engine, &s, "60s");
	echo_once(AF_INET, f.port, 10, 1000);
	fwd_signal_wait(&f, SIGTERM);
	expect_exit0(&f, "SIGTERM");
	log_expect(&f, LOG_DONE, "(no connection left)");
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * drain_timeout set by a reload (the file had none): the SIGTERM after
 * it drains. The connection open at the SIGTERM then ends with the
 * client's FIN, and the process exits 0.
 */
Test(drain, timeout_from_reload, .timeout = 60)
{
	static const char plain[] = "threads = 2;\n"
				    "rules = { web = { listen = \"127.0.0.1:@L0\";\n"
				    "                  upstream = \"127.0.0.1:@U0\"; }; };\n";
	static const char with_drain[] = "threads = 2;\n"
					 "drain_timeout = \"60s\";\n"
					 "rules = { web = { listen = \"127.0.0.1:@L0\";\n"
					 "                  upstream = \"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .nlisten = 1 };
	uint64_t h;
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, plain);
	conf_write(&c, with_drain);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	log_expect(&f, "reloaded", NULL);
	fd = tcp_connect(AF_INET, c.lport[0]);
	echo_roundtrip(fd, 11, 1000);
	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	log_expect(&f, LOG_START, "waiting up to 60s");
	fwd_assert_alive(&f);
	echo_roundtrip(fd, 12, 1000);
	sys_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
	cr_assert_eq(recv_to_eof(fd, &h, 0), 0, "bytes after the echo");
	close(fd);
	expect_exit0(&f, "the drained connection ended");
	log_expect(&f, LOG_DONE, "1 connection finished, 0 reset");
	fwd_release(&f);
	srv_stop(&s);
	conf_remove(&c);
}
