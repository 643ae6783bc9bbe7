/*
 * UDP forwarding, engine-neutral and readiness-driven (src/dgram/udp.c).
 *
 * The first datagram from a client address and port (to one local
 * address, on one listener socket) creates a session with its own
 * connected upstream socket: the kernel matches replies to it, and an
 * upstream's ICMP port unreachable comes back on it as ECONNREFUSED
 * (counted; the session goes on). Replies leave through the listener
 * socket the client wrote to, from the address it wrote to (IP_PKTINFO /
 * IPV6_PKTINFO on a wildcard listener). Datagrams are read and written
 * whole, in batches (recvmmsg, sendmmsg): never merged, split or
 * truncated.
 *
 * Sessions live in a hash table per worker, keyed by listener socket,
 * client and local address; each has one timer in the loop's heap that
 * the data path never touches (the loop clock is stored per datagram, the
 * timer re-arms itself when it fires early), and a place in its rule's
 * per-worker LRU list, moved to the tail per datagram, so both the
 * udp_timeout and the max_sessions eviction cost O(1) per datagram.
 *
 * An engine registers each UDP listener socket for input readiness and
 * calls sf_udp_on_listen; session sockets it registers through the ops
 * it passes (its sf_io callback being sf_udp_on_upstream's caller).
 */
#ifndef SOCKFWD_UDP_H
#define SOCKFWD_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "io.h"
#include "rule.h"
#include "timer.h"

struct sf_worker;
struct sf_udp;

/* Largest UDP payload over IPv4 (65,535 - 20 - 8): what a session carries whole. */
#define SF_UDP_MAX 65507u

/* How the shared code registers a session's upstream socket with the engine's loop. */
struct sf_udp_ops {
	/* Watch io->fd for input; io->cb is already set. Returns 0 or -errno. */
	int (*add)(void *loop, struct sf_io *io);
	/* Stop watching io->fd (it is closed right after). */
	void (*del)(void *loop, struct sf_io *io);
};

struct sf_udp_sess {
	struct sf_io io; /* the connected upstream socket */
	struct sf_udp *u;
	struct sf_udp_sess *hnext; /* hash chain */
	struct sf_lru lru;	   /* in its rule's list for this worker */
	struct sf_timer timer;
	struct sf_gen *gen; /* a reference: the rule outlives a reload */
	struct sf_rule *rule;
	struct sf_lsock *ls; /* the listener socket it came in on: replies leave there */
	struct sf_rule_ctr *ctr;
	uint64_t start_ms;
	uint64_t last_ms; /* last datagram either way, the loop's clock */
	uint64_t bytes[2];
	uint32_t hash;
	int up;			/* upstream index */
	int lfd;		/* ls->io.fd, part of the key */
	int ifindex;		/* where local arrived (wildcard listeners) */
	struct sf_inaddr peer;	/* the client */
	struct sf_inaddr local; /* the address it wrote to; len 0: the listener's own */
};

/* One datagram of a batch, as received. */
struct sf_udp_slot {
	struct sf_inaddr peer;
	struct sf_inaddr local;
	int ifindex;
	size_t len;
	int flags;
	int gso; /* GRO: several datagrams of this segment size (the last may be shorter), else 0 */
};

struct sf_udp {
	struct sf_worker *w;
	struct sf_timers *timers; /* the loop's heap */
	const struct sf_udp_ops *ops;
	void *loop;
	struct sf_udp_sess **tab; /* hash buckets, a power of two */
	size_t mask;
	size_t n;		  /* sessions */
	struct sf_udp_sess *dead; /* ended in this batch of events, freed after it */
	int epfd;		  /* its own epoll set (sf_udp_init_own), else -1 */
	/* one batch, for recvmmsg and sendmmsg */
	unsigned batch;
	char *bufs; /* batch * SF_UDP_BUF */
	struct sf_udp_slot *slot;
	void *mm;   /* struct mmsghdr[batch] */
	void *iov;  /* struct iovec[batch] */
	void *name; /* struct sockaddr_in6[batch] */
	void *ctl;  /* control buffers */
};

/*
 * Set up u for worker w, with the loop's timer heap and the engine's
 * ops (loop is passed back to them). Returns 0 or -ENOMEM.
 */
int sf_udp_init(struct sf_udp *u, struct sf_worker *w, struct sf_timers *timers,
		const struct sf_udp_ops *ops, void *loop);

/*
 * For an engine without a readiness loop of its own (naive, uring): u
 * keeps its own epoll set for its listener and session sockets, which
 * the engine watches as one descriptor (u->epfd) and serves with
 * sf_udp_poll; timers stay in the engine's heap. Returns 0 or -errno.
 */
int sf_udp_init_own(struct sf_udp *u, struct sf_worker *w, struct sf_timers *timers);

/* Own epoll set: watch this worker's UDP listener sockets of g (on), or stop (off). */
void sf_udp_listen(struct sf_udp *u, struct sf_gen *g, int on);

/*
 * Own epoll set: serve what is ready, without waiting, then free the
 * sessions ended. Returns how many sockets were ready, or -errno.
 */
int sf_udp_poll(struct sf_udp *u);

/* End every session (reason stop) and free u's memory. */
void sf_udp_destroy(struct sf_udp *u);

/*
 * The UDP listener socket ls is readable: read a bounded number of
 * batches, create sessions as needed, send each datagram upstream.
 * Level-triggered registration is assumed (what is left raises another
 * wakeup). Returns 0.
 */
int sf_udp_on_listen(struct sf_udp *u, struct sf_lsock *ls);

/* The session whose io this is is readable: send what its upstream sent to the client. */
void sf_udp_on_upstream(struct sf_io *io);

/*
 * The worker moved to generation g (its dropped listeners already
 * closed): end the sessions whose listener socket g no longer has.
 */
void sf_udp_gen_changed(struct sf_udp *u, const struct sf_gen *g);

/*
 * Free the sessions ended since the last call: the engine calls it after
 * each batch of events, which may still name them.
 */
void sf_udp_reap(struct sf_udp *u);

/* End every session with reason (an enum sf_reason): drain, stop. */
void sf_udp_end_all(struct sf_udp *u, int reason);

/* 1 when g has a UDP rule. */
int sf_gen_has_udp(const struct sf_gen *g);

/* ---- the session table, exposed for unit tests ---- */

/* Hash of a session key. */
uint32_t sf_udp_hash(int lfd, const struct sf_inaddr *peer, const struct sf_inaddr *local);
/* The session of the key, or NULL. */
struct sf_udp_sess *sf_udp_find(const struct sf_udp *u, int lfd, const struct sf_inaddr *peer,
				const struct sf_inaddr *local);
/* Put s (key and hash filled in) into the table, growing it. Returns 0 or -ENOMEM. */
int sf_udp_insert(struct sf_udp *u, struct sf_udp_sess *s);
/* Take s out of the table. */
void sf_udp_remove(struct sf_udp *u, struct sf_udp_sess *s);

/* LRU lists (struct sf_lru, circular with a head). */
static inline void sf_lru_init(struct sf_lru *h) { h->prev = h->next = h; }
static inline int sf_lru_empty(const struct sf_lru *h) { return h->next == h; }
static inline void sf_lru_unlink(struct sf_lru *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}
/* Append e at the tail of h (most recently used). */
static inline void sf_lru_push(struct sf_lru *h, struct sf_lru *e)
{
	e->prev = h->prev;
	e->next = h;
	h->prev->next = e;
	h->prev = e;
}
/* Move e, in h, to the tail: a plain unlink and push, O(1). */
static inline void sf_lru_touch(struct sf_lru *h, struct sf_lru *e)
{
	if (h->prev == e)
		return;
	sf_lru_unlink(e);
	sf_lru_push(h, e);
}

#endif
