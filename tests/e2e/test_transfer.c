/*
 * Data moves intact through every engine: bulk echo, half-close, upstream
 * close right after its last write, many connections, a slow reader,
 * IPv6 and a host name as remote.
 */
#include "harness.h"

#include <endian.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* 32 MiB written while the echo is read concurrently comes back intact. */
ENGINE_TEST(transfer, echo_32m, 120)
{
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	fwd_echo_bulk(&f, 1, 32 * MiB);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * Bytes that went through a pipe are counted apart so anyone can prove
 * splice ran (realm once fell back to copying on every connection without
 * a word). After a 16 MiB echo, the exit stats line of the splice engine
 * shows at least 90% of each direction spliced; no other engine claims a
 * spliced byte.
 */
ENGINE_TEST(transfer, spliced_share, 60)
{
	const uint64_t len = 16 * MiB;
	static char err[1 << 16];
	unsigned long long c2u = 0, u2c = 0, sp_c2u = 0, sp_u2c = 0;
	struct srv s;
	struct fwd f;
	const char *line;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	fwd_echo_bulk(&f, 21, len);

	fwd_signal_wait(&f, SIGTERM);
	fwd_stderr(&f, err, sizeof(err));
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "sockfwd: %s; stderr:\n%s",
		  fwd_status_str(&f), err);
	line = strstr(err, "stats: ");
	cr_assert(line != NULL, "no stats line at exit; stderr:\n%s", err);
	cr_assert(sscanf(line,
			 "stats: accepted=%*u closed=%*u resets=%*u c2u=%llu u2c=%llu "
			 "spliced=%llu/%llu",
			 &c2u, &u2c, &sp_c2u, &sp_u2c) == 4,
		  "malformed stats line: %s", line);
	if (strcmp(engine, "splice") == 0) {
		cr_assert(c2u >= len && u2c >= len,
			  "stats count %llu/%llu bytes, moved %llu each way", c2u, u2c,
			  (unsigned long long)len);
		cr_assert(sp_c2u * 10 >= c2u * 9 && sp_u2c * 10 >= u2c * 9,
			  "only %llu of %llu and %llu of %llu bytes went through splice", sp_c2u,
			  c2u, sp_u2c, u2c);
	} else {
		cr_assert(sp_c2u == 0 && sp_u2c == 0, "%s claims %llu/%llu spliced bytes", engine,
			  sp_c2u, sp_u2c);
	}
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * The client half-closes after 1 MiB; upstream sees EOF only after every
 * byte, then replies through the still-open direction and closes.
 */
ENGINE_TEST(transfer, half_close, 60)
{
	const uint64_t len = 1 * MiB, reply = 1 * MiB, seed = 2;
	struct halfclose_hdr hdr;
	struct srv s;
	struct fwd f;
	uint64_t h, n;
	int fd;

	srv_start(&s, AF_INET, SRV_HALFCLOSE, reply, 0);
	fwd_start_srv(&f, engine, &s);
	fd = tcp_connect(AF_INET, f.port);
	send_gen(fd, seed, len);
	sys_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");

	recv_exact(fd, &hdr, sizeof(hdr));
	hdr.len = le64toh(hdr.len);
	hdr.hash = le64toh(hdr.hash);
	cr_assert_eq(hdr.len, len, "upstream read %llu of %llu bytes before EOF",
		     (unsigned long long)hdr.len, (unsigned long long)len);
	cr_assert(hdr.hash == gen_hash(seed, len), "upstream received different bytes");

	n = recv_to_eof(fd, &h, reply);
	cr_assert_eq(n, reply, "reply: %llu of %llu bytes before EOF", (unsigned long long)n,
		     (unsigned long long)reply);
	cr_assert(h == gen_hash(halfclose_seed(hdr.hash, hdr.len), reply), "reply differs");
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * A small request and its FIN at once, often before the upstream connect
 * completes: the FIN must still be passed on (engines that skip the read
 * after a short one must not lose a FIN that came with the data).
 */
ENGINE_TEST(transfer, small_request_then_fin, 60)
{
	const uint64_t len = 100, reply = 200;
	struct halfclose_hdr hdr;
	struct srv s;
	struct fwd f;
	uint64_t h, n;
	int fd;

	srv_start(&s, AF_INET, SRV_HALFCLOSE, reply, 0);
	fwd_start_srv(&f, engine, &s);
	for (uint64_t seed = 1; seed <= 50; seed++) {
		fd = tcp_connect(AF_INET, f.port);
		send_gen(fd, seed, len);
		sys_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
		recv_exact(fd, &hdr, sizeof(hdr));
		cr_assert_eq(le64toh(hdr.len), len, "round %llu: upstream read %llu of %llu bytes",
			     (unsigned long long)seed, (unsigned long long)le64toh(hdr.len),
			     (unsigned long long)len);
		cr_assert(le64toh(hdr.hash) == gen_hash(seed, len), "round %llu: bytes differ",
			  (unsigned long long)seed);
		n = recv_to_eof(fd, &h, reply);
		cr_assert_eq(n, reply, "round %llu: reply %llu of %llu bytes before EOF",
			     (unsigned long long)seed, (unsigned long long)n,
			     (unsigned long long)reply);
		close(fd);
	}
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * Small and bulk messages in turn on one connection: the splice engine
 * moves a direction between a buffer and a pipe as sizes change, and the
 * bytes must keep their order across every switch.
 */
ENGINE_TEST(transfer, mixed_sizes_one_connection, 60)
{
	static const size_t sizes[] = { 7,   200000, 64,    131072, 1,	  256 * 1024,
					100, 65536,  65535, 3,	    4096, 4097 };
	struct srv s;
	struct fwd f;
	uint64_t seed = 1;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	fd = tcp_connect(AF_INET, f.port);
	for (int round = 0; round < 5; round++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			echo_roundtrip(fd, seed++, sizes[i]);
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

/* Upstream writes 16 MiB and closes at once: every byte, then EOF. */
ENGINE_TEST(transfer, upstream_close_after_write, 60)
{
	const uint64_t len = 16 * MiB, seed = 3;
	struct srv s;
	struct fwd f;
	uint64_t h, n;
	int fd;

	srv_start(&s, AF_INET, SRV_SOURCE, len, seed);
	fwd_start_srv(&f, engine, &s);
	fd = tcp_connect(AF_INET, f.port);
	n = recv_to_eof(fd, &h, len);
	cr_assert_eq(n, len, "received %llu of %llu bytes before EOF", (unsigned long long)n,
		     (unsigned long long)len);
	cr_assert(h == gen_hash(seed, len), "data differs");
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

#define NCONC	 500
#define CONC_MSG (4 * 1024)

/* 500 connections open at once, each echoing its own 4 KiB. */
ENGINE_TEST(transfer, concurrent_500, 120)
{
	static int fds[NCONC];
	unsigned char *buf = malloc(CONC_MSG);
	struct srv s;
	struct fwd f;

	cr_assert(buf != NULL);
	raise_nofile();
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	for (int i = 0; i < NCONC; i++)
		fds[i] = tcp_connect(AF_INET, f.port);
	for (int i = 0; i < NCONC; i++)
		send_gen(fds[i], 1000 + (uint64_t)i, CONC_MSG);
	for (int i = 0; i < NCONC; i++) {
		recv_exact(fds[i], buf, CONC_MSG);
		cr_assert(hash_update(HASH_INIT, buf, CONC_MSG) ==
				  gen_hash(1000 + (uint64_t)i, CONC_MSG),
			  "connection %d: echo differs (upstream failures %d)", i,
			  atomic_load(&s.failures));
	}
	for (int i = 0; i < NCONC; i++)
		close(fds[i]);
	free(buf);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * A reader much slower than the forwarder: 256 MiB arrive intact and the
 * forwarder's peak RSS grows by far less than the data (it buffers at most
 * one buffer or pipe per direction and lets TCP push back). The bound is
 * on growth, so a sanitizer's own footprint does not count; buffering the
 * stream would grow it by up to 256 MiB.
 */
ENGINE_TEST(transfer, slow_reader_bounded_memory, 180)
{
	const uint64_t len = 256 * MiB, seed = 7;
	const long max_growth_kb = 64 * 1024;
	const size_t batch = 1 * MiB;
	unsigned char *buf = malloc(batch);
	uint64_t total = 0, h = HASH_INIT;
	long hwm0, hwm1;
	struct srv s;
	struct fwd f;
	int fd, eof = 0;

	cr_assert(buf != NULL);
	srv_start(&s, AF_INET, SRV_SOURCE, len, seed);
	fwd_start_srv(&f, engine, &s);
	hwm0 = proc_status_field(f.pid, "VmHWM");
	fd = tcp_connect(AF_INET, f.port);
	/* Read at most 1 MiB, pause, repeat: at most ~256 MB/s. */
	for (int i = 0; !eof && i < 100000; i++) {
		size_t got = 0;

		for (int j = 0; got < batch && j < 100000; j++) {
			ssize_t r = recv(fd, buf + got, batch - got, 0);

			sys_assert(r >= 0, "recv after %llu bytes",
				   (unsigned long long)(total + got));
			if (r == 0) {
				eof = 1;
				break;
			}
			got += (size_t)r;
		}
		h = hash_update(h, buf, got);
		total += got;
		cr_assert(total <= len, "more data than sent");
		sleep_ms(4);
	}
	cr_assert(eof, "no EOF after %llu bytes", (unsigned long long)total);
	hwm1 = proc_status_field(f.pid, "VmHWM");
	cr_log_info("%s: VmHWM %ld kB before, %ld kB after", engine, hwm0, hwm1);
	cr_assert_eq(total, len, "received %llu of %llu bytes", (unsigned long long)total,
		     (unsigned long long)len);
	cr_assert(h == gen_hash(seed, len), "data differs");
	cr_assert(hwm1 - hwm0 < max_growth_kb,
		  "forwarder peak RSS grew by %ld kB (%ld -> %ld kB) while moving %llu MiB to a "
		  "slow reader; bound %ld kB",
		  hwm1 - hwm0, hwm0, hwm1, (unsigned long long)(len / MiB), max_growth_kb);
	close(fd);
	free(buf);
	fwd_stop(&f);
	srv_stop(&s);
}

/* Listener and upstream on ::1: 1 MiB echoed intact. */
ENGINE_TEST(transfer, ipv6_echo, 60)
{
	const uint64_t len = 1 * MiB, seed = 10;
	struct sender snd;
	struct srv s;
	struct fwd f;
	uint64_t h, n;
	int fd;

	srv_start(&s, AF_INET6, SRV_ECHO, 0, 0);
	fwd_start_srv(&f, engine, &s);
	cr_assert_eq(f.family, AF_INET6);
	fd = tcp_connect(AF_INET6, f.port);
	sender_start(&snd, fd, seed, len, 1);
	n = recv_to_eof(fd, &h, len);
	sender_join(&snd);
	cr_assert_eq(n, len, "echoed %llu of %llu bytes", (unsigned long long)n,
		     (unsigned long long)len);
	cr_assert(h == gen_hash(seed, len), "echo differs");
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * -r localhost:PORT with upstream on 127.0.0.1 only: localhost may resolve
 * to ::1 first, and the forwarder must try each address.
 */
ENGINE_TEST(transfer, remote_host_name, 60)
{
	struct fwd_opts o = { .engine = engine };
	char remote[64];
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	snprintf(remote, sizeof(remote), "localhost:%d", s.port);
	o.remote = remote;
	fwd_start(&f, &o);
	for (int i = 0; i < 3; i++)
		echo_once(AF_INET, f.port, 20 + (uint64_t)i, 64 * 1024);
	fwd_stop(&f);
	srv_stop(&s);
}
