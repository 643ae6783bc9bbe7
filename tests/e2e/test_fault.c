/*
 * Fault injection: the forwarder runs with libsffault.so preloaded
 * (tests/fault/fault.c), which makes the Nth accept4, connect, socket,
 * splice, pipe2, recv or send fail with a chosen errno. The error paths
 * of the shared policy (conn.c), the reactor, splice's fallbacks and each
 * engine's I/O then run here, where a test sees what the client and the
 * upstream get:
 *
 * - an I/O error mid-transfer resets both sides: the client sees
 *   ECONNRESET, never a clean EOF after part of the bytes, and the
 *   upstream sees a reset too; the next connection is served intact;
 * - splice refusing a socket (EINVAL) or pipes running out moves the
 *   connection to the buffer path with every byte intact;
 * - accept failing with EMFILE pauses accepting, warns, and then serves;
 * - a failed upstream connect fails over to the next upstream, and an
 *   upstream socket that cannot be created resets that client only.
 *
 * Readiness is taken from /proc (no probe connection), so the forwarder's
 * calls are counted from the test's first client. uring moves bytes with
 * io_uring operations that never reach libc, so only its connect and
 * socket paths are reachable here.
 */
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Preload the fault library into the next forwarder, failing calls per spec. */
static void fault_env(const char *spec)
{
	const char *bin = fwd_bin(), *slash = strrchr(bin, '/');
	const char *asan = getenv("ASAN_OPTIONS");
	char lib[PATH_MAX], opts[1024];

	snprintf(lib, sizeof(lib), "%.*s/libsffault.so", slash ? (int)(slash - bin) : 1,
		 slash ? bin : ".");
	sys_assert(access(lib, R_OK) == 0, "%s (built by make next to sockfwd)", lib);
	setenv("LD_PRELOAD", lib, 1);
	setenv("SF_FAULT", spec, 1);
	/* An ASan build wants its runtime first; the shim only forwards calls. */
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
		 asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
}

/* sockfwd -b engine -j 1 -v to the servers' addresses, with the fault spec. */
static void start_fault(struct fwd *f, const char *engine, const char *spec,
			const char *const *extra)
{
	struct fwd_opts o = { .engine = engine, .threads = 1, .no_probe = 1 };
	int n = 0;

	o.extra[n++] = "-v";
	for (int i = 0; extra != NULL && extra[i] != NULL; i++)
		o.extra[n++] = extra[i];
	o.extra[n] = NULL;
	fault_env(spec);
	fwd_start(f, &o);
	unsetenv("LD_PRELOAD");
	unsetenv("SF_FAULT");
}

static void start_fault_srv(struct fwd *f, const char *engine, const char *spec,
			    const struct srv *s)
{
	char remote[64];
	const char *extra[] = { "-r", srv_addr(s, remote, sizeof(remote)), NULL };

	start_fault(f, engine, spec, extra);
}

/*
 * The exit stats line's spliced byte counts and pipe fallbacks, after
 * SIGTERM and exit 0.
 */
static void stop_spliced(struct fwd *f, unsigned long long *c2u, unsigned long long *sp,
			 unsigned long long *fallbacks)
{
	static char err[1 << 16];
	unsigned long long u2c, sp_u2c;
	const char *line;

	fwd_signal_wait(f, SIGTERM);
	fwd_stderr(f, err, sizeof(err));
	cr_assert(WIFEXITED(f->status) && WEXITSTATUS(f->status) == 0, "sockfwd: %s; stderr:\n%s",
		  fwd_status_str(f), err);
	line = strstr(err, "stats: ");
	cr_assert(line != NULL &&
			  sscanf(line,
				 "stats: accepted=%*u closed=%*u resets=%*u c2u=%llu u2c=%llu "
				 "spliced=%llu/%llu",
				 c2u, &u2c, sp, &sp_u2c) == 4,
		  "no stats line at exit; stderr:\n%s", err);
	/* Fields after spliced= are appended over time: find this one by name. */
	line = strstr(line, " pipe_fallbacks=");
	cr_assert(line != NULL && sscanf(line, " pipe_fallbacks=%llu", fallbacks) == 1,
		  "no pipe_fallbacks= in the stats line; stderr:\n%s", err);
	*sp += sp_u2c;
}

/*
 * Read what a SRV_SOURCE upstream sends through f (len bytes) while the
 * forwarder fails mid-transfer. Asserts the client ends with ECONNRESET:
 * an EOF before every byte came would look like a clean end. The client
 * only reads, so no send of its own can consume the socket's error first.
 */
static void source_expect_reset(const struct fwd *f, uint64_t len)
{
	static unsigned char buf[64 * 1024];
	uint64_t got = 0;
	int fd = tcp_connect(AF_INET, f->port), e = 0;
	ssize_t r = 0;

	for (int i = 0; i < 1000000; i++) {
		r = recv(fd, buf, sizeof(buf), 0);
		e = errno;
		if (r < 0 && e == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	close(fd);
	cr_assert(got < len, "all %llu bytes came: the fault never hit", (unsigned long long)len);
	cr_assert(r < 0 && e == ECONNRESET,
		  "after %llu of %llu bytes the client saw %s, not a reset",
		  (unsigned long long)got, (unsigned long long)len,
		  r == 0 ? "a clean EOF" : strerror(e));
}

/*
 * Wait (bounded) until the upstream's connection ended; it must not have
 * ended with an orderly EOF. (A reset that arrives before the echo server
 * read anything discards its queue and is counted as neither.)
 */
static void wait_upstream_reset(struct srv *s)
{
	uint64_t deadline = now_ms() + E2E_RESET_MS;

	while ((atomic_load(&s->accepted) < 1 || atomic_load(&s->active) > 0) &&
	       now_ms() < deadline)
		sleep_ms(5);
	cr_assert(atomic_load(&s->accepted) >= 1 && atomic_load(&s->active) == 0,
		  "the upstream connection did not end");
	cr_assert(atomic_load(&s->eofs) == 0,
		  "upstream saw an orderly end (%d resets, %d EOFs), expected a reset",
		  atomic_load(&s->resets), atomic_load(&s->eofs));
}

/*
 * An I/O error in the middle of a transfer (spec: the 40th recv, send or
 * splice fails): the client is reset, the failure is logged with its
 * cause, and the next connection is served intact.
 */
static void io_error_resets(const char *engine, const char *spec)
{
	struct srv src, echo;
	struct fwd f, g;

	srv_start(&src, AF_INET, SRV_SOURCE, 64 * MiB, 5);
	start_fault_srv(&f, engine, spec, &src);
	source_expect_reset(&f, 64 * MiB);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, "reset=reset", NULL),
		  "no -v line with reset=reset; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&src);

	/* The same fault in an echo: the upstream is reset too, never FIN'd. */
	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	start_fault_srv(&g, engine, spec, &echo);
	{
		struct sender snd;
		int fd = tcp_connect(AF_INET, g.port);

		sender_start(&snd, fd, 7, 64 * MiB, 1);
		wait_upstream_reset(&echo);
		cr_assert(fwd_log_wait(&g, E2E_RESET_MS, "reset=reset", NULL),
			  "the echo connection ended without the fault; stderr:\n%s",
			  fwd_stderr_tail(&g));
		shutdown(fd, SHUT_RDWR);
		pthread_join(snd.th, NULL);
		close(fd);
	}
	fwd_echo_bulk(&g, 3, 1 * MiB);
	fwd_stop(&g);
	fwd_release(&g);
	srv_stop(&echo);
}

Test(fault, recv_error_resets_naive, .timeout = 60) { io_error_resets("naive", "recv:40:EIO"); }
Test(fault, recv_error_resets_epoll, .timeout = 60) { io_error_resets("epoll", "recv:40:EIO"); }
Test(fault, splice_error_resets, .timeout = 60) { io_error_resets("splice", "splice:40:EIO"); }
Test(fault, send_error_resets_epoll, .timeout = 60) { io_error_resets("epoll", "send:40:EPIPE"); }

#ifdef SF_HAVE_URING
/*
 * io_uring moves bytes without libc: the uring engine's own hooks
 * (sockfwd/fault.h, defined by the shim) fail the 40th receive or send
 * completion, or leave it without a submission queue entry.
 */
Test(fault, recv_error_resets_uring, .timeout = 60) { io_error_resets("uring", "cqe_recv:40:EIO"); }
Test(fault, send_error_resets_uring, .timeout = 60)
{
	io_error_resets("uring", "cqe_send:40:EPIPE");
}
/* One new connection echoes one byte: 1, or 0 when it fails in any way. */
static int one_byte_echo(int port)
{
	struct timeval tv = { .tv_sec = 2 };
	int fd = tcp_connect_try(AF_INET, port), ok;
	char c = 'x';

	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ok = send(fd, &c, 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, 0) == 1 && c == 'x';
	close(fd);
	return ok;
}

/*
 * No SQE for twenty calls in a row (one alone may be a cancel or a
 * connect's timeout, which fail softly: a synchronous cancel, no
 * timeout; among twenty during a transfer one is a send or receive):
 * the client is reset mid-transfer, never given a clean EOF; once SQEs
 * come back, new clients are served (the first few may still meet the
 * failing calls).
 */
Test(fault, no_sqe_resets_uring, .timeout = 60)
{
	struct srv src, echo;
	struct fwd f;
	int i, failed = 0, served = 0;

	srv_start(&src, AF_INET, SRV_SOURCE, 64 * MiB, 5);
	start_fault_srv(&f, "uring", "sqe:40-59:EBUSY", &src);
	source_expect_reset(&f, 64 * MiB);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, "reset=", NULL), "no close line; stderr:\n%s",
		  fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&src);

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	start_fault_srv(&f, "uring", "sqe:20-39:EBUSY", &echo);
	for (i = 0; i < 60 && !(failed > 0 && served); i++) {
		if (one_byte_echo(f.port))
			served = failed > 0;
		else
			failed++;
	}
	cr_assert(failed > 0, "no connection met the missing SQEs");
	cr_assert(served, "no client served after the SQEs came back");
	fwd_echo_bulk(&f, 3, 1 * MiB);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&echo);
}
#endif

/*
 * splice(2) refusing the socket (EINVAL: a socket type or file system
 * that cannot splice) moves each direction to the buffer path before a
 * byte is lost: 16 MiB come back intact, none of them spliced.
 */
Test(fault, splice_einval_buffer_path, .timeout = 60)
{
	unsigned long long c2u, sp, fb;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_fault_srv(&f, "splice", "splice:1+:EINVAL", &s);
	fwd_echo_bulk(&f, 11, 16 * MiB);
	stop_spliced(&f, &c2u, &sp, &fb);
	cr_assert(c2u >= 16 * MiB && sp == 0, "c2u=%llu, %llu bytes spliced", c2u, sp);
	/* A pipe was had each time, splice refused it: no fallback for want of pipes. */
	cr_assert_eq(fb, 0, "%llu pipe fallbacks", fb);
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * No pipe can be had (pipe2 fails with EMFILE, as past the descriptor
 * limit): the splice engine moves the bytes through its buffers instead.
 */
Test(fault, no_pipes_buffer_path, .timeout = 60)
{
	unsigned long long c2u, sp, fb;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_fault_srv(&f, "splice", "pipe2:1+:EMFILE", &s);
	fwd_echo_bulk(&f, 12, 16 * MiB);
	fwd_echo_bulk(&f, 13, 1 * MiB);
	stop_spliced(&f, &c2u, &sp, &fb);
	cr_assert(c2u >= 17 * MiB && sp == 0, "c2u=%llu, %llu bytes spliced", c2u, sp);
	/* Counted: at least once per connection and direction that went bulk. */
	cr_assert(fb >= 2, "%llu pipe fallbacks", fb);
	cr_assert(fwd_log_count(&f, "cannot create a pipe", NULL) == 1,
		  "no single warning for the missing pipes; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * The first upstream connect fails (spec): the client reads the identity
 * of the pool's second upstream. With untouched, the first never saw a
 * connection (the failure came before the kernel connected).
 */
static void fails_over(const char *engine, const char *spec, int untouched)
{
	struct srv a, b;
	struct fwd f;
	char ra[64], rb[64];

	srv_start_id(&a, AF_INET, 1);
	srv_start_id(&b, AF_INET, 2);
	const char *extra[] = { "-r",	     srv_addr(&a, ra, sizeof(ra)),
				"-r",	     srv_addr(&b, rb, sizeof(rb)),
				"--balance", "first",
				NULL };
	start_fault(&f, engine, spec, extra);
	cr_assert_eq(id_query(AF_INET, NULL, f.port), 2, "not failed over to the second upstream");
	if (untouched)
		cr_assert_eq(atomic_load(&a.accepted), 0, "the failed upstream got a connection");
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&a);
	srv_stop(&b);
}

/*
 * accept4 fails with EMFILE three times: the worker warns that it is out
 * of descriptors, pauses accepting (no busy loop on a level-triggered
 * listener), then accepts the waiting client and serves it.
 */
static void accept_emfile_with(const char *engine, const char *flag, const char *value)
{
	struct srv s;
	struct fwd f;
	char remote[64];
	const char *extra[] = { "-r", NULL, flag, value, NULL };

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	extra[1] = srv_addr(&s, remote, sizeof(remote));
	start_fault(&f, engine, "accept4:1-3:EMFILE", extra);
	fwd_echo_bulk(&f, 14, 1 * MiB);
	cr_assert(fwd_log_count(&f, "out of file descriptors", NULL) >= 1,
		  "no descriptor warning; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
}

static void accept_emfile(const char *engine) { accept_emfile_with(engine, NULL, NULL); }

Test(fault, accept_emfile_naive, .timeout = 60) { accept_emfile("naive"); }
Test(fault, accept_emfile_epoll, .timeout = 60) { accept_emfile("epoll"); }
Test(fault, accept_emfile_splice, .timeout = 60) { accept_emfile("splice"); }

#ifdef SF_HAVE_URING
/*
 * uring accepts with accept4 only on a rule with max_conns (readiness,
 * then accept while slots last); multishot accept is the kernel's own.
 */
Test(fault, accept_emfile_uring_max_conns, .timeout = 60)
{
	accept_emfile_with("uring", "--max-conns", "64");
}

/*
 * The upstream connect's completion says refused although the kernel
 * connected: the engine closes that socket and goes on to the pool's next
 * upstream, whose identity the client reads.
 */
Test(fault, connect_cqe_fails_over_uring, .timeout = 60)
{
	fails_over("uring", "cqe_connect:1:ECONNREFUSED", 0);
}
#endif

/*
 * The first upstream connect fails at once (ENETUNREACH): the connection
 * goes on to the pool's next upstream, whose identity the client reads;
 * the failure is counted against the first.
 */
ENGINE_TEST(fault, connect_fails_over, 60) { fails_over(engine, "connect:1:ENETUNREACH", 1); }

/*
 * The upstream socket cannot be created (socket(2) fails with EMFILE; the
 * first socket is the listener of -j 1): that client is reset with reason
 * limit, never given a clean close, nothing reaches the upstream (and no
 * upstream is blamed), and the next client is served.
 */
ENGINE_TEST(fault, upstream_socket_emfile, 60)
{
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_fault_srv(&f, engine, "socket:2:EMFILE", &s);
	fd = tcp_connect(AF_INET, f.port);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, "reset=limit", NULL),
		  "the close line does not say limit; stderr:\n%s", fwd_stderr_tail(&f));
	cr_assert_eq(atomic_load(&s.accepted), 0, "the upstream got a connection");
	fwd_echo_bulk(&f, 15, 1 * MiB);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
}
