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
#include <sys/time.h>
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

/*
 * A connection's bytes never reach another connection's peer, when many
 * clients reset in the middle of a transfer while new clients come and
 * go. Found by the hour soak on uring: a stream began with 64 KiB of
 * someone else's, then its own bytes. The uring engine had prepared a
 * send for a connection, then closed the connection's sockets in the same
 * batch (its client reset), and the kernel looked the descriptor number
 * up only at submission, by when the next upstream socket had taken it:
 * the dead connection's buffer went to a new connection's upstream.
 * Resetting clients pump a pattern of their own both ways and reset after
 * a random number of writes; fresh clients each echo a stream of their
 * own and must get exactly it back, then EOF. Bounded by a count and by
 * time; the assertions are on bytes only.
 */
#define LEAK_RESETTERS 4
#define LEAK_VICTIMS   4
#define LEAK_STREAMS   2000  /* victim streams, all threads */
#define LEAK_MS	       20000 /* bound on the run */
#define LEAK_MAX       (128 * 1024)

struct leak {
	int port;
	uint64_t end;
	_Atomic int streams, resets, bad, errors;
	_Atomic uint64_t ids;		      /* victim stream seeds */
	_Atomic int64_t first_len, first_got; /* the first bad stream, for the message */
	_Atomic int first_err;
};

/* Blocking loopback connect with E2E_HANG_MS timeouts; -errno. Thread-safe (no asserts). */
static int leak_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = E2E_HANG_MS / 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), e;

	if (fd < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	e = errno;
	close(fd);
	return -e;
}

static int leak_running(struct leak *k)
{
	return atomic_load(&k->streams) < LEAK_STREAMS && now_ms() < k->end;
}

/* Pump a pattern both ways for n writes of 64 KiB, then reset. */
static void *leak_resetter(void *arg)
{
	struct leak *k = arg;
	unsigned char out[64 * 1024], in[64 * 1024];
	unsigned seed = 1;

	memset(out, 0xEE, sizeof(out));
	while (leak_running(k)) {
		int fd, n = 1 + (int)(rand_r(&seed) % 32);

		/* About two resets per echo: resets alone would crowd the echoes out. */
		if (atomic_load(&k->resets) > 2 * atomic_load(&k->streams) + 16) {
			sleep_ms(1);
			continue;
		}
		fd = leak_connect(k->port);
		if (fd < 0)
			continue;
		for (int i = 0; i < n; i++) {
			(void)send(fd, out, sizeof(out), MSG_DONTWAIT | MSG_NOSIGNAL);
			(void)recv(fd, in, sizeof(in), MSG_DONTWAIT);
		}
		close_rst(fd);
		atomic_fetch_add(&k->resets, 1);
	}
	return NULL;
}

/* Record the first failure's numbers. */
static void leak_fail(struct leak *k, uint64_t len, uint64_t got, int err)
{
	if (atomic_fetch_add(&k->bad, 1) == 0) {
		atomic_store(&k->first_len, (int64_t)len);
		atomic_store(&k->first_got, (int64_t)got);
		atomic_store(&k->first_err, err);
	}
}

/* One echo of len bytes of seed on a fresh connection: exactly them, then EOF. */
static void leak_victim_once(struct leak *k, uint64_t seed, uint64_t len)
{
	unsigned char buf[16 * 1024];
	uint64_t got = 0, h = HASH_INIT;
	int fd = leak_connect(k->port);
	struct gen g;
	ssize_t r;

	if (fd < 0) {
		atomic_fetch_add(&k->errors, 1);
		leak_fail(k, len, 0, -fd);
		return;
	}
	gen_init(&g, seed);
	for (uint64_t off = 0; off < len;) {
		size_t n = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);

		gen_fill(&g, buf, n);
		if (send(fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
		off += n;
	}
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < 100000 && (r = recv(fd, buf, sizeof(buf), 0)) > 0; i++) {
		h = hash_update(h, buf, (size_t)r);
		got += (uint64_t)r;
	}
	if (r != 0 || got != len || h != gen_hash(seed, len))
		leak_fail(k, len, got, r < 0 ? errno : 0);
	close(fd);
	atomic_fetch_add(&k->streams, 1);
}

static void *leak_victim(void *arg)
{
	struct leak *k = arg;
	unsigned seed = 2;

	while (leak_running(k))
		leak_victim_once(k, 1000 + atomic_fetch_add(&k->ids, 1),
				 1 + rand_r(&seed) % LEAK_MAX);
	return NULL;
}

ENGINE_TEST(transfer, resets_never_leak_into_other_connections, 120)
{
	struct fwd_opts o = { .engine = engine, .threads = 1 };
	pthread_t th[LEAK_RESETTERS + LEAK_VICTIMS];
	struct leak k;
	struct srv s;
	struct fwd f;
	char r[64];
	int i;

	raise_nofile();
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, r, sizeof(r));
	fwd_start(&f, &o);
	memset(&k, 0, sizeof(k));
	k.port = f.port;
	k.end = now_ms() + LEAK_MS;
	for (i = 0; i < LEAK_RESETTERS + LEAK_VICTIMS; i++)
		cr_assert(pthread_create(&th[i], NULL,
					 i < LEAK_RESETTERS ? leak_resetter : leak_victim,
					 &k) == 0);
	for (i = 0; i < LEAK_RESETTERS + LEAK_VICTIMS; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&k.bad), 0,
		     "%d of %d echo streams wrong (%d could not connect); the first: %lld of %lld "
		     "bytes, %s",
		     atomic_load(&k.bad), atomic_load(&k.streams), atomic_load(&k.errors),
		     (long long)atomic_load(&k.first_got), (long long)atomic_load(&k.first_len),
		     atomic_load(&k.first_err) ? strerror(atomic_load(&k.first_err))
					       : "then EOF, bytes differ or extra");
	/* It ran: enough of both kinds for the race to have had its chances. */
	cr_assert(atomic_load(&k.streams) >= 100 && atomic_load(&k.resets) >= 100,
		  "only %d streams and %d resets", atomic_load(&k.streams), atomic_load(&k.resets));
	fwd_stop(&f);
	srv_stop(&s);
}
