/*
 * Failures on either side: refused upstream, resets in both directions,
 * a client vanishing mid-transfer (SIGPIPE), descriptor leaks and running
 * out of descriptors.
 */
#include "harness.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Nothing listens at the remote: every client is reset, not closed. */
ENGINE_TEST(errors, upstream_refused, 60)
{
	struct fwd_opts o = { .engine = engine };
	char remote[64];
	struct fwd f;

	/* Bound once, then closed without listen(): connect gets refused. */
	o.remote = loop_addr(remote, sizeof(remote), AF_INET, free_port(AF_INET));
	fwd_start(&f, &o);
	for (int i = 0; i < 3; i++) {
		int fd = tcp_connect(AF_INET, f.port);

		recv_expect_reset(fd, E2E_RESET_MS);
		close(fd);
	}
	fwd_stop(&f);
}

/* Upstream reads a little, then resets: the client sees ECONNRESET. */
ENGINE_TEST(errors, upstream_reset_reaches_client, 60)
{
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_RST, 0, 0);
	fwd_start_srv(&f, engine, &s);
	fd = tcp_connect(AF_INET, f.port);
	send_all(fd, "hello", 5);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

/* The client resets an established connection: upstream sees ECONNRESET, not EOF. */
ENGINE_TEST(errors, client_reset_reaches_upstream, 60)
{
	uint64_t deadline;
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 5, 1000);
	close_rst(fd);
	/* Only connections that carried data are counted: not the readiness probe. */
	deadline = now_ms() + E2E_RESET_MS;
	for (int i = 0; i < 100000 && now_ms() < deadline; i++) {
		if (atomic_load(&s.resets) + atomic_load(&s.eofs) > 0)
			break;
		sleep_ms(5);
	}
	cr_assert(atomic_load(&s.resets) == 1 && atomic_load(&s.eofs) == 0,
		  "after the client reset, upstream saw %d resets and %d orderly EOFs "
		  "(expected one reset within %d ms)",
		  atomic_load(&s.resets), atomic_load(&s.eofs), E2E_RESET_MS);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * Clients reset while upstream is still streaming to them: the forwarder
 * writes into dead sockets and must not be killed by SIGPIPE.
 */
ENGINE_TEST(errors, client_gone_no_sigpipe, 60)
{
	unsigned char buf[64 * 1024];
	struct srv src;
	struct fwd f;

	srv_start(&src, AF_INET, SRV_SOURCE, 64 * MiB, 11);
	fwd_start_srv(&f, engine, &src);
	for (int i = 0; i < 5; i++) {
		int fd = tcp_connect(AF_INET, f.port);

		recv_exact(fd, buf, sizeof(buf));
		close_rst(fd);
	}
	/* A fresh connection is served in full: the forwarder outlived the resets. */
	for (int i = 0; i < 2; i++) {
		int fd = tcp_connect(AF_INET, f.port);

		recv_exact(fd, buf, sizeof(buf));
		cr_assert(hash_update(HASH_INIT, buf, sizeof(buf)) == gen_hash(11, sizeof(buf)),
			  "data differs");
		close_rst(fd);
	}
	fwd_assert_alive(&f);
	fwd_stop(&f);
	srv_stop(&src);
}

/* Wait (bounded) until the forwarder holds at most want descriptors; returns the count. */
static int wait_fd_count_at_most(pid_t pid, int want, int ms)
{
	uint64_t deadline = now_ms() + (uint64_t)ms;
	int n = proc_fd_count(pid);

	for (int i = 0; i < 100000 && n > want && now_ms() < deadline; i++) {
		sleep_ms(10);
		n = proc_fd_count(pid);
	}
	return n;
}

/* 2,000 short connections leave no descriptor behind. */
ENGINE_TEST(errors, no_fd_leak, 180)
{
	struct srv s;
	struct fwd f;
	int base, n;

	raise_nofile();
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	for (int i = 0; i < 50; i++)
		echo_once(AF_INET, f.port, (uint64_t)i, 100);
	base = proc_fd_count(f.pid);
	for (int i = 0; i < 2000; i++)
		echo_once(AF_INET, f.port, 100 + (uint64_t)i, 100);
	n = wait_fd_count_at_most(f.pid, base, 10000);
	cr_log_info("%s: %d descriptors after warm-up, %d after 2000 more connections", engine,
		    base, n);
	cr_assert(n <= base,
		  "forwarder holds %d descriptors 10 s after 2000 closed connections; %d after "
		  "the warm-up",
		  n, base);
	fwd_stop(&f);
	srv_stop(&s);
}

#define FD_LIMIT       96
#define FD_ESTABLISHED 10
#define FD_FLOOD       60

/*
 * RLIMIT_NOFILE = 96 (at most 6 descriptors per connection with splice's
 * two pipes: 10 established connections fit, the 60 more do not).
 * While out of descriptors the forwarder must not spin, must keep the
 * established connections flowing, and must serve again once they free.
 */
ENGINE_TEST(errors, out_of_fds, 120)
{
	int est[FD_ESTABLISHED], flood[FD_FLOOD];
	struct fwd_opts o = { .engine = engine, .threads = 1, .nofile = FD_LIMIT };
	double cpu0, cpu1;
	char remote[64];
	uint64_t deadline;
	struct srv s;
	struct fwd f;
	int r = -1, nfd;

	raise_nofile();
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, remote, sizeof(remote));
	fwd_start(&f, &o);
	for (int i = 0; i < FD_ESTABLISHED; i++) {
		est[i] = tcp_connect(AF_INET, f.port);
		echo_roundtrip(est[i], 300 + (uint64_t)i, 1000);
	}
	for (int i = 0; i < FD_FLOOD; i++)
		flood[i] = tcp_connect_nb(AF_INET, f.port);
	/* Until the forwarder is (nearly) at its limit; not reaching it is fine too. */
	for (int i = 0; i < 500 && proc_fd_count(f.pid) < FD_LIMIT - 4; i++)
		sleep_ms(10);
	nfd = proc_fd_count(f.pid);
	cr_log_info("%s: %d descriptors open (limit %d) with %d clients", engine, nfd, FD_LIMIT,
		    FD_ESTABLISHED + FD_FLOOD);

	/* A measurement window, not synchronisation: a busy loop burns ~2 s here. */
	cpu0 = proc_cpu_seconds(f.pid);
	sleep_ms(2000);
	cpu1 = proc_cpu_seconds(f.pid);
	cr_assert(cpu1 - cpu0 < 1.0,
		  "forwarder used %.2f s of CPU in 2 s while out of descriptors (%d open, "
		  "limit %d): busy loop",
		  cpu1 - cpu0, nfd, FD_LIMIT);
	fwd_assert_alive(&f);

	for (int i = 0; i < FD_ESTABLISHED; i++)
		echo_roundtrip(est[i], 400 + (uint64_t)i, 1000);
	for (int i = 0; i < FD_ESTABLISHED; i++)
		close(est[i]);
	for (int i = 0; i < FD_FLOOD; i++)
		close(flood[i]);

	/* Service resumes: a fresh connection echoes within a bounded retry. */
	deadline = now_ms() + 10000;
	for (int i = 0; i < 100 && now_ms() < deadline; i++) {
		r = echo_try(AF_INET, f.port, 500 + (uint64_t)i, 1000, 5000);
		if (r == 0)
			break;
		sleep_ms(100);
	}
	cr_assert(r == 0, "no fresh connection echoed within 10 s after descriptors freed: %s",
		  r == -EIO ? "echo differs" : strerror(-r));
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * A forwarder started with one descriptor over what it holds idle: the
 * next client's accept takes the last one, so its upstream socket cannot
 * be made. The client is reset, and the -v line says reason limit (out of
 * descriptors), not refused: the upstream refused nothing (found by the
 * chaos soak, docs/testing.md: naive and uring logged refused).
 */
ENGINE_TEST(errors, upstream_socket_emfile_is_limit, 60)
{
	const char *flags[] = { "-v", NULL };
	struct fwd_opts o = { .engine = engine, .threads = 1, .no_probe = 1 };
	char remote[64], needle[64], line[1024];
	struct srv s;
	struct fwd f;
	int idle, fd;

	raise_nofile();
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, remote, sizeof(remote));
	o.extra[0] = flags[0];
	o.extra[1] = NULL;
	/* The same forwarder without a limit first: what it holds idle. */
	fwd_start(&f, &o);
	sleep_ms(200);
	idle = proc_fd_count(f.pid);
	fwd_stop(&f);
	fwd_release(&f);

	o.nofile = (rlim_t)idle + 1;
	fwd_start(&f, &o);
	sleep_ms(200);
	cr_assert(proc_fd_count(f.pid) == idle, "%d descriptors idle with the limit, %d without",
		  proc_fd_count(f.pid), idle);
	fd = tcp_connect(AF_INET, f.port);
	snprintf(needle, sizeof(needle), "127.0.0.1:%d ", sock_local_port(fd));
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, needle, "reset="),
		  "no -v close line for %s; stderr:\n%s", needle, fwd_stderr_tail(&f));
	fwd_log_line(&f, needle, "reset=", line, sizeof(line));
	cr_assert(strstr(line, "reset=limit") != NULL,
		  "out of descriptors for the upstream socket, but the close line says: %s", line);
	fwd_stop(&f);
	srv_stop(&s);
}
