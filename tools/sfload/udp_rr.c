/*
 * `sfload udp-rr`: one datagram out, its echo back, on one blocking
 * socket: round-trip latency. A datagram unanswered within UC_REPLY_NS is
 * lost; UC_GONE lost in a row end the run (the peer is gone).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

#define UC_GONE 10 /* losses in a row that end the run */

/*
 * Send datagram seq and wait for its echo on blocking fd (SO_RCVTIMEO set).
 * Returns 1 when it came back intact, 0 when lost (timeout, refused).
 * Stale echoes of earlier datagrams are skipped and counted in *late.
 */
static int urr_exchange(int fd, char *req, char *rbuf, size_t sz, uint64_t seq, uint64_t *late)
{
	udp_fill(req, sz, UDP_ECHO, seq);
	if (send(fd, req, sz, 0) != (ssize_t)sz) {
		if (errno == ECONNREFUSED || errno == EAGAIN || errno == EINTR)
			return 0;
		die("udp-rr send");
	}
	for (;;) {
		ssize_t n = recv(fd, rbuf, UDP_MAX_SIZE + 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ECONNREFUSED) {
			sleep_until(now_ns() + UC_REPLY_NS); /* nobody there: no busy loop */
			return 0;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			die("udp-rr recv");
		if (udp_check(rbuf, (size_t)n, sz, UDP_ECHO, seq))
			return 1;
		(*late)++;
	}
}

/* `sfload udp-rr`: one datagram out, its echo back, on one socket. */
int cmd_udp_rr(struct opts *o)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = UC_REPLY_NS / 1000 };
	size_t sz = udp_size(o);
	char *req = malloc(sz), *rbuf = malloc(UDP_MAX_SIZE + 1);
	struct lat lat = { 0 };
	uint64_t seq = 0, done = 0, lost = 0, late = 0, t0, t1, deadline;
	unsigned in_a_row = 0;
	int fd, warm = 0;
	double cpu0, cpu, secs;

	if (req == NULL || rbuf == NULL)
		die("malloc");
	if ((fd = udp_socket(o, 0, 0, 0)) < 0) {
		errno = -fd;
		die("udp socket");
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		die("SO_RCVTIMEO");
	for (int i = 0; i < 10 && !warm; i++)
		warm = urr_exchange(fd, req, rbuf, sz, seq++, &late);
	if (!warm)
		diex("udp-rr: no echo: is udp-serve reachable?");
	cpu0 = cpu_s();
	t0 = now_ns();
	deadline = t0 + (uint64_t)(o->seconds * 1e9);
	for (uint64_t t = t0, t2; t < deadline && in_a_row < UC_GONE; t = t2) {
		int ok = urr_exchange(fd, req, rbuf, sz, seq++, &late);

		t2 = now_ns();
		if (ok) {
			done++;
			in_a_row = 0;
			lat_add(&lat, t2 - t);
		} else {
			lost++;
			in_a_row++;
		}
	}
	t1 = now_ns();
	cpu = cpu_s() - cpu0;
	secs = (double)(t1 - t0) / 1e9;
	printf("{\"workload\": \"udp-rr\", \"clients\": 1, \"size\": %zu, \"seconds\": %.4f, "
	       "\"done\": %llu, \"lost\": %llu, \"late\": %llu, \"errors\": %u, \"rate\": %.1f, "
	       "\"gen_cpu_s\": %.3f, \"gen_cpu_util\": %.3f, ",
	       sz, secs, (unsigned long long)done, (unsigned long long)lost,
	       (unsigned long long)late, in_a_row >= UC_GONE, (double)done / secs, cpu, cpu / secs);
	lat_print(&lat);
	printf("}\n");
	close(fd);
	free(req);
	free(rbuf);
	lat_free(&lat);
	return in_a_row >= UC_GONE || done == 0 ? 1 : 0;
}
