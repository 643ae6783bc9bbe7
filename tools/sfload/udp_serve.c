/*
 * `sfload udp-serve`: the UDP upstream of the bench. Echo, sink and query
 * on one socket (udp.h), recvmmsg/sendmmsg in batches, until SIGTERM or
 * SIGINT; then one JSON line with what it did and its own CPU time. It
 * sleeps in poll() while nothing arrives: no busy loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

#define US_BATCH 64	    /* datagrams per recvmmsg */
#define US_PEERS 4096	    /* sink sources tracked (a power of two) */
#define US_BUF	 (1u << 20) /* socket buffers asked for */

/* A sink's counts for one source address; port 0 marks a free slot. */
struct us_peer {
	uint32_t addr;
	uint16_t port;
	struct udp_report r;
};

/* The server: its socket, batch buffers and counts. */
struct userver {
	int fd;
	struct mmsghdr in[US_BATCH], out[US_BATCH];
	struct iovec iov[US_BATCH], oiov[US_BATCH];
	struct sockaddr_in from[US_BATCH];
	struct us_peer *peers;
	uint64_t datagrams, echoed, echo_dropped, sunk, queries, bad, untracked;
};

/* Rows a multiple of 8 bytes long: each datagram's header stays aligned. */
static char us_bufs[US_BATCH][(UDP_MAX_SIZE + 1 + 7) & ~7] __attribute__((aligned(8)));

/*
 * Find (or with create, add) the counts of source sa. Returns NULL when
 * the source is unknown and create is 0, or the table is full.
 */
static struct us_peer *us_peer(struct userver *s, const struct sockaddr_in *sa, int create)
{
	uint32_t h = (sa->sin_addr.s_addr * 2654435761u) ^ sa->sin_port;

	for (unsigned i = 0; i < US_PEERS; i++) {
		struct us_peer *p = &s->peers[(h + i) & (US_PEERS - 1)];

		if (p->port == sa->sin_port && p->addr == sa->sin_addr.s_addr)
			return p;
		if (p->port == 0) {
			if (!create)
				return NULL;
			p->addr = sa->sin_addr.s_addr;
			p->port = sa->sin_port;
			return p;
		}
	}
	return NULL;
}

/* Count one sink datagram of len bytes from sa. */
static void us_sink(struct userver *s, const struct sockaddr_in *sa, const struct udp_hdr *h,
		    size_t len)
{
	struct us_peer *p = us_peer(s, sa, 1);

	s->sunk++;
	if (p == NULL) {
		s->untracked++;
		return;
	}
	if (p->r.received > 0 && h->seq <= p->r.max_seq)
		p->r.reordered++;
	else
		p->r.max_seq = h->seq;
	p->r.received++;
	p->r.bytes += len;
}

/*
 * Queue the reply to datagram i of the batch in out[*nout]: the datagram
 * itself for an echo, a report for a query. The report lives in the
 * datagram's own buffer, which is large enough.
 */
static void us_reply(struct userver *s, unsigned i, size_t len, unsigned *nout)
{
	struct msghdr *m = &s->out[*nout].msg_hdr;

	memset(m, 0, sizeof(*m));
	m->msg_name = &s->from[i];
	m->msg_namelen = sizeof(s->from[i]);
	s->oiov[*nout].iov_base = us_bufs[i];
	s->oiov[*nout].iov_len = len;
	m->msg_iov = &s->oiov[*nout];
	m->msg_iovlen = 1;
	(*nout)++;
}

/* Handle datagram i of the batch, len bytes; queue its reply if any. */
static void us_handle(struct userver *s, unsigned i, size_t len, unsigned *nout)
{
	struct udp_hdr *h = (struct udp_hdr *)us_bufs[i];
	struct us_peer *p;
	struct udp_report rep;

	s->datagrams++;
	if (len < sizeof(*h) || h->magic != UDP_MAGIC) {
		s->bad++;
		return;
	}
	switch (h->kind) {
	case UDP_ECHO:
		us_reply(s, i, len, nout);
		break;
	case UDP_SINK:
		us_sink(s, &s->from[i], h, len);
		break;
	case UDP_QUERY:
		s->queries++;
		memset(&rep, 0, sizeof(rep));
		if ((p = us_peer(s, &s->from[i], 0)) != NULL)
			rep = p->r;
		rep.h.magic = UDP_MAGIC;
		rep.h.kind = UDP_REPORT;
		rep.h.seq = h->seq;
		memcpy(us_bufs[i], &rep, sizeof(rep));
		us_reply(s, i, sizeof(rep), nout);
		break;
	default:
		s->bad++;
	}
}

/* Send the queued replies; what the socket does not take is dropped. */
static void us_flush(struct userver *s, unsigned nout)
{
	unsigned done = 0;

	while (done < nout) {
		int n = sendmmsg(s->fd, s->out + done, nout - done, MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* EAGAIN or the client gone (ECONNREFUSED): skip one. */
			s->echo_dropped++;
			done++;
			continue;
		}
		s->echoed += (unsigned)n;
		done += (unsigned)n;
	}
}

/* Receive and answer every datagram queued, up to 64 batches. */
static void us_drain(struct userver *s)
{
	for (int round = 0; round < 64; round++) {
		unsigned nout = 0;
		int n;

		for (unsigned i = 0; i < US_BATCH; i++) {
			s->iov[i].iov_base = us_bufs[i];
			s->iov[i].iov_len = sizeof(us_bufs[i]);
			memset(&s->in[i].msg_hdr, 0, sizeof(s->in[i].msg_hdr));
			s->in[i].msg_hdr.msg_iov = &s->iov[i];
			s->in[i].msg_hdr.msg_iovlen = 1;
			s->in[i].msg_hdr.msg_name = &s->from[i];
			s->in[i].msg_hdr.msg_namelen = sizeof(s->from[i]);
		}
		n = recvmmsg(s->fd, s->in, US_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED)
				return;
			die("recvmmsg");
		}
		for (int i = 0; i < n; i++)
			us_handle(s, (unsigned)i, s->in[i].msg_len, &nout);
		us_flush(s, nout);
		if (n < US_BATCH)
			return;
	}
}

/* Open the server socket bound to sa. Exits on failure. */
static int us_open(const struct sockaddr_in *sa)
{
	int fd, one = 1, size = US_BUF;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("SO_REUSEADDR");
	/* Best effort: the kernel caps these at net.core.[rw]mem_max. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
		die("bind");
	return fd;
}

/* `sfload udp-serve`: echo, sink and query on one UDP port until stopped. */
int cmd_udp_serve(const struct opts *o)
{
	struct userver s;
	double cpu0 = cpu_s();
	uint64_t t0 = now_ns();

	memset(&s, 0, sizeof(s));
	if ((s.peers = calloc(US_PEERS, sizeof(*s.peers))) == NULL)
		die("calloc");
	s.fd = us_open(&o->target);
	catch_stop_signals();
	print_ready(&o->target);
	while (!stop_flag) {
		struct pollfd p = { .fd = s.fd, .events = POLLIN };
		int rc = poll(&p, 1, 1000); /* 1 s: a stop signal racing the check */

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			die("poll");
		us_drain(&s);
	}
	printf("{\"workload\": \"udp-serve\", \"seconds\": %.3f, \"datagrams\": %llu, "
	       "\"echoed\": %llu, \"echo_dropped\": %llu, \"sunk\": %llu, \"queries\": %llu, "
	       "\"bad\": %llu, \"untracked\": %llu, \"gen_cpu_s\": %.3f}\n",
	       (double)(now_ns() - t0) / 1e9, (unsigned long long)s.datagrams,
	       (unsigned long long)s.echoed, (unsigned long long)s.echo_dropped,
	       (unsigned long long)s.sunk, (unsigned long long)s.queries, (unsigned long long)s.bad,
	       (unsigned long long)s.untracked, cpu_s() - cpu0);
	close(s.fd);
	free(s.peers);
	return 0;
}
