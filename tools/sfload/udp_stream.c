/*
 * `sfload udp-stream`: fixed-size datagrams as fast as the client can (or
 * at -R datagrams/s) for -t seconds, sendmmsg/recvmmsg in batches of -b.
 * c2s: the server sinks them and reports what it counted when queried at
 * the end; echo: the server sends each back and the client counts them.
 * Loss from the sequence numbers. A peer that refuses UC_REFUSED sends
 * (nobody listens) ends the run early.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

#define UC_REFUSED 1000		/* refused sends (port unreachable) that end a run */
#define UC_TAIL_NS 100000000ull /* echo: quiet time that ends the tail */

/* One udp-stream run: the socket, the batch buffers and the counts. */
struct ustream {
	struct opts *o;
	int fd;
	unsigned batch;
	struct mmsghdr *msgs, *rmsgs;
	struct iovec *iov, *riov;
	char *bufs, *rbufs;
	size_t stride; /* buffer to buffer: a multiple of 8, so headers are aligned */
	uint64_t sent, send_errors;
	uint64_t received, reordered, bad, max_seq;
};

/* Set up st for o: buffers of o->batch datagrams each way. */
static void ustream_init(struct ustream *st, struct opts *o)
{
	size_t sz = udp_size(o);

	memset(st, 0, sizeof(*st));
	st->o = o;
	st->batch = o->batch;
	/* Paced: batches no more than about 1 ms apart. */
	if (o->rate > 0 && o->rate / 1000 < st->batch)
		st->batch = o->rate >= 1000 ? (unsigned)(o->rate / 1000) : 1;
	st->msgs = calloc(o->batch, sizeof(*st->msgs));
	st->rmsgs = calloc(o->batch, sizeof(*st->rmsgs));
	st->iov = calloc(o->batch, sizeof(*st->iov));
	st->riov = calloc(o->batch, sizeof(*st->riov));
	st->stride = (sz + 1 + 7) & ~(size_t)7;
	st->bufs = malloc(o->batch * st->stride);
	st->rbufs = malloc(o->batch * st->stride);
	if (!st->msgs || !st->rmsgs || !st->iov || !st->riov || !st->bufs || !st->rbufs)
		die("malloc");
	for (unsigned i = 0; i < o->batch; i++) {
		/* The payload is seq 0's pattern; only the header changes. */
		udp_fill(st->bufs + i * st->stride, sz, o->dir == DIR_ECHO ? UDP_ECHO : UDP_SINK,
			 0);
		st->iov[i].iov_base = st->bufs + i * st->stride;
		st->iov[i].iov_len = sz;
		st->msgs[i].msg_hdr.msg_iov = &st->iov[i];
		st->msgs[i].msg_hdr.msg_iovlen = 1;
		st->riov[i].iov_base = st->rbufs + i * st->stride;
		st->riov[i].iov_len = sz + 1; /* a longer echo shows as bad, not cut */
		st->rmsgs[i].msg_hdr.msg_iov = &st->riov[i];
		st->rmsgs[i].msg_hdr.msg_iovlen = 1;
	}
	st->fd = udp_socket(o, 0, 1, 1);
	if (st->fd < 0) {
		errno = -st->fd;
		die("udp socket");
	}
}

static void ustream_free(struct ustream *st)
{
	close(st->fd);
	free(st->msgs);
	free(st->rmsgs);
	free(st->iov);
	free(st->riov);
	free(st->bufs);
	free(st->rbufs);
}

/*
 * Send up to count datagrams numbered from st->sent in one sendmmsg.
 * Returns how many went, 0 when the socket is full, or -1 once UC_REFUSED
 * sends were refused: ICMP port unreachable comes back, nobody listens
 * (a forwarder keeps its session and sends none).
 */
static int ustream_send(struct ustream *st, unsigned count)
{
	int n;

	for (unsigned i = 0; i < count; i++)
		((struct udp_hdr *)st->iov[i].iov_base)->seq = st->sent + i;
	n = sendmmsg(st->fd, st->msgs, count, 0);
	if (n > 0) {
		st->sent += (unsigned)n;
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0 && errno == ECONNREFUSED) {
		return ++st->send_errors >= UC_REFUSED ? -1 : 0;
	}
	die("sendmmsg");
}

/* Receive and count every echo queued (echo mode). */
static void ustream_recv(struct ustream *st)
{
	size_t sz = st->o->size;

	for (;;) {
		int n = recvmmsg(st->fd, st->rmsgs, st->o->batch, MSG_DONTWAIT, NULL);

		if (n < 0 && errno == ECONNREFUSED) {
			st->send_errors++;
			continue;
		}
		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			const struct udp_hdr *h = st->riov[i].iov_base;

			if (st->rmsgs[i].msg_len != sz || h->magic != UDP_MAGIC ||
			    h->kind != UDP_ECHO || h->seq >= st->sent) {
				st->bad++;
				continue;
			}
			if (st->received > 0 && h->seq <= st->max_seq)
				st->reordered++;
			else
				st->max_seq = h->seq;
			st->received++;
		}
	}
}

/* Send for o->seconds (paced at o->rate when set); returns the time spent. */
static uint64_t ustream_run(struct ustream *st)
{
	struct opts *o = st->o;
	int echo = o->dir == DIR_ECHO;
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(o->seconds * 1e9), t;

	while ((t = now_ns()) < deadline) {
		unsigned count = st->batch;
		int n;

		if (o->rate > 0) {
			uint64_t due = t0 + (uint64_t)((double)st->sent * 1e9 / o->rate);

			if (due > t) {
				if (echo &&
				    wait_fd(st->fd, POLLIN, due < deadline ? due : deadline))
					ustream_recv(st);
				else if (!echo)
					sleep_until(due < deadline ? due : deadline);
				continue;
			}
		}
		if ((n = ustream_send(st, count)) < 0)
			break;
		if (n == 0) /* full: wait for room (or echoes) */
			wait_fd(st->fd, echo ? POLLIN | POLLOUT : POLLOUT, deadline);
		if (echo)
			ustream_recv(st);
	}
	t = now_ns();
	if (echo) {
		/* The tail: echoes still on their way, until 100 ms of quiet. */
		uint64_t limit = t + 10 * UC_TAIL_NS;

		while (st->received + st->bad < st->sent &&
		       wait_fd(st->fd, POLLIN,
			       now_ns() + UC_TAIL_NS < limit ? now_ns() + UC_TAIL_NS : limit))
			ustream_recv(st);
	}
	return t - t0;
}

/* `sfload udp-stream`: datagrams as fast as we can (or at -R); loss and rate. */
int cmd_udp_stream(struct opts *o)
{
	struct ustream st;
	struct udp_report rep0, rep;
	uint64_t elapsed;
	double cpu0, cpu, secs, loss;
	int gone = 0;

	ustream_init(&st, o);
	/* The path works and the forwarder's session exists before we start. */
	if (udp_query(st.fd, &rep0, 10) < 0)
		diex("udp-stream: no answer to a query: is udp-serve reachable?");
	cpu0 = cpu_s();
	elapsed = ustream_run(&st);
	cpu = cpu_s() - cpu0;
	gone = st.send_errors >= UC_REFUSED;
	if (o->dir == DIR_C2S) {
		/* Let the last datagrams through; the query queues behind them. */
		sleep_until(now_ns() + 50000000);
		if (udp_query(st.fd, &rep, 10) < 0) {
			fprintf(stderr, "sfload: udp-stream: no report from the server\n");
			gone = 1;
			memset(&rep, 0, sizeof(rep));
		} else {
			rep.received -= rep0.received;
			rep.bytes -= rep0.bytes;
		}
		st.received = rep.received;
		st.reordered = rep.reordered;
	}
	secs = (double)elapsed / 1e9;
	loss = st.sent ? 100.0 *
				 (double)(st.sent -
					  (st.received < st.sent ? st.received : st.sent)) /
				 (double)st.sent
		       : 0;
	printf("{\"workload\": \"udp-stream\", \"dir\": \"%s\", \"size\": %zu, \"batch\": %u, "
	       "\"rate_target\": %.0f, \"seconds\": %.4f, \"sent\": %llu, \"received\": %llu, "
	       "\"reordered\": %llu, \"bad\": %llu, \"send_errors\": %llu, \"pps_sent\": %.1f, "
	       "\"pps\": %.1f, \"gbps\": %.4f, \"loss_pct\": %.4f, \"failed\": %d, "
	       "\"gen_cpu_s\": %.3f, \"gen_cpu_util\": %.3f}\n",
	       o->dir == DIR_ECHO ? "echo" : "c2s", o->size, st.batch, o->rate, secs,
	       (unsigned long long)st.sent, (unsigned long long)st.received,
	       (unsigned long long)st.reordered, (unsigned long long)st.bad,
	       (unsigned long long)st.send_errors, (double)st.sent / secs,
	       (double)st.received / secs, (double)st.received * (double)o->size * 8 / secs / 1e9,
	       loss, gone, cpu, cpu / secs);
	ustream_free(&st);
	return gone || st.received == 0 ? 1 : 0;
}
