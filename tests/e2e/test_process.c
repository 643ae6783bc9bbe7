/*
 * The process around the engines: worker threads, clean exit on signals,
 * the verbose close line.
 */
#include "harness.h"

#include <endian.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define J2_CONNS 50

/* -j 2: two workers (main + 2 threads at least) and every connection echoes. */
ENGINE_TEST(process, two_workers, 60)
{
	struct fwd_opts o = { .engine = engine, .threads = 2 };
	unsigned char buf[4096];
	int fds[J2_CONNS];
	char remote[64];
	struct srv s;
	struct fwd f;
	long threads;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, remote, sizeof(remote));
	fwd_start(&f, &o);
	/* All open at once so that both listeners get some. */
	for (int i = 0; i < J2_CONNS; i++)
		fds[i] = tcp_connect(AF_INET, f.port);
	for (int i = 0; i < J2_CONNS; i++)
		send_gen(fds[i], 2000 + (uint64_t)i, sizeof(buf));
	for (int i = 0; i < J2_CONNS; i++) {
		recv_exact(fds[i], buf, sizeof(buf));
		cr_assert(hash_update(HASH_INIT, buf, sizeof(buf)) ==
				  gen_hash(2000 + (uint64_t)i, sizeof(buf)),
			  "connection %d: echo differs", i);
		close(fds[i]);
	}
	threads = proc_status_field(f.pid, "Threads");
	cr_assert(threads >= 3, "-j 2: %ld threads, expected main + 2 workers", threads);
	fwd_stop(&f);
	srv_stop(&s);
}

/* sig with an established connection open: exit status 0 (bounded wait). */
static void exit_on_signal(const char *engine, int sig)
{
	struct srv s;
	struct fwd f;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 42, 1000);
	fwd_signal_wait(&f, sig);
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0,
		  "after %s: %s, expected exit 0; stderr:\n%s", strsignal(sig), fwd_status_str(&f),
		  fwd_stderr_tail(&f));
	close(fd);
	fwd_release(&f);
	srv_stop(&s);
}

ENGINE_TEST(process, sigterm_exits_0, 60) { exit_on_signal(engine, SIGTERM); }

ENGINE_TEST(process, sigint_exits_0, 60) { exit_on_signal(engine, SIGINT); }

/* num appears in line as a whole number (not inside a longer one). */
static int has_number(const char *line, size_t len, const char *num)
{
	size_t nl = strlen(num);

	for (size_t i = 0; i + nl <= len; i++) {
		if (memcmp(line + i, num, nl) != 0)
			continue;
		if (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
			continue;
		if (i + nl < len && line[i + nl] >= '0' && line[i + nl] <= '9')
			continue;
		return 1;
	}
	return 0;
}

/* Some line of text holds both numbers. */
static int line_with_both(const char *text, const char *a, const char *b)
{
	const char *p = text;

	for (int i = 0; i < 100000 && *p != '\0'; i++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (has_number(p, len, a) && has_number(p, len, b))
			return 1;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}

/*
 * -v: once a connection that moved 12345 bytes up and 54321 down closes,
 * stderr has a line with both counts.
 */
ENGINE_TEST(process, verbose_close_line, 60)
{
	const uint64_t up = 12345, down = 54321;
	struct fwd_opts o = { .engine = engine, .extra = { "-v", NULL } };
	static char err[1 << 20];
	struct halfclose_hdr hdr;
	char remote[64], a[32], b[32];
	uint64_t h, n, deadline;
	int fd, found = 0;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_HALFCLOSE, down - sizeof(hdr), 0);
	o.remote = srv_addr(&s, remote, sizeof(remote));
	fwd_start(&f, &o);
	fd = tcp_connect(AF_INET, f.port);
	send_gen(fd, 13, up);
	sys_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
	recv_exact(fd, &hdr, sizeof(hdr));
	cr_assert_eq(le64toh(hdr.len), up, "upstream got %llu bytes",
		     (unsigned long long)le64toh(hdr.len));
	n = recv_to_eof(fd, &h, down);
	cr_assert_eq(n + sizeof(hdr), down, "received %llu of %llu bytes",
		     (unsigned long long)(n + sizeof(hdr)), (unsigned long long)down);
	close(fd);

	snprintf(a, sizeof(a), "%llu", (unsigned long long)up);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)down);
	deadline = now_ms() + 10000;
	for (int i = 0; i < 10000 && !found; i++) {
		fwd_stderr(&f, err, sizeof(err));
		found = line_with_both(err, a, b);
		if (found || now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	cr_assert(found, "no stderr line with both %s and %s within 10 s; stderr:\n%s", a, b,
		  fwd_stderr_tail(&f));
	fwd_stop(&f);
	srv_stop(&s);
}
