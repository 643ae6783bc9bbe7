/*
 * The running rule model. A generation is an immutable snapshot of the
 * configuration with every name resolved: its rules (listen addresses,
 * upstream pool, policy, counters) and its listeners. Workers and
 * connections hold references to it; a reload builds a new generation
 * and swaps it in, and the old one is freed when its last connection
 * ends. Listening sockets belong to the workers (one per listener per
 * worker, SO_REUSEPORT), and pass from one generation to the next when
 * the address stays, so a reload never refuses a client.
 *
 * Shared mutable state (passive health, the round-robin cursor, a
 * rule's active count for max_conns, an upstream's for leastconn) is
 * written with relaxed atomics: several workers serve every rule.
 * Counters are not here but in the registry of stats.h, per worker and
 * kept across reloads; rules and upstreams point at their entries.
 */
#ifndef SOCKFWD_RULE_H
#define SOCKFWD_RULE_H

#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "addr.h"
#include "config.h"
#include "io.h"
#include "timer.h"

#define SF_ATOMIC_ADD(f, n) __atomic_fetch_add(&(f), (n), __ATOMIC_RELAXED)
#define SF_ATOMIC_SUB(f, n) __atomic_fetch_sub(&(f), (n), __ATOMIC_RELAXED)
#define SF_ATOMIC_GET(f)    __atomic_load_n(&(f), __ATOMIC_RELAXED)
#define SF_ATOMIC_SET(f, v) __atomic_store_n(&(f), (v), __ATOMIC_RELAXED)

/* Why connections end, as counted per rule and shown in -v lines. */
enum sf_reason {
	SF_R_EOF = 0,
	SF_R_RESET,	      /* a peer reset or an I/O error */
	SF_R_REFUSED,	      /* every upstream failed */
	SF_R_CONNECT_TIMEOUT, /* ... the last by timing out */
	SF_R_IDLE_TIMEOUT,
	SF_R_DENIED,
	SF_R_LIMIT,	   /* out of memory or descriptors for it */
	SF_R_PROXY_HEADER, /* --accept-proxy: missing, malformed, late */
	SF_R_STOP,
	SF_R_COUNT
};

const char *sf_reason_name(int r);

struct sf_stats_rule;
struct sf_stats_up;

struct sf_upstream {
	struct sf_upstream_conf conf;
	struct sf_addrlist addrs; /* resolved once, at the first port */
	char label[SF_HOST_MAX + 8];
	/* passive health */
	unsigned fails;		/* failures in a row */
	uint64_t down_until_ms; /* skipped until then */
	uint64_t active;	/* connections open (leastconn only) */
	struct sf_stats_up *st; /* its counters (stats.h) */
};

/* A node of a circular doubly linked list, or its head (UDP session LRU). */
struct sf_lru {
	struct sf_lru *prev, *next;
};

/* One worker's UDP sessions of one rule, least recently used first. */
struct __attribute__((aligned(64))) sf_rule_udp {
	struct sf_lru lru;
	unsigned n;
};

struct sf_rule {
	char name[SF_NAME_MAX];
	const struct sf_policy *pol; /* in the generation's config */
	struct sf_upstream *ups;
	unsigned nups;
	unsigned weight_sum;		 /* of the non-backup upstreams */
	struct sf_cidrset *allow, *deny; /* NULL: no list */
	unsigned rr;			 /* round-robin cursor */
	uint64_t active;		 /* connections open; counted only with max_conns */
	struct sf_stats_rule *st;	 /* its counters (stats.h) */
	int proto;			 /* enum sf_proto */
	uint64_t sessions;		 /* UDP sessions open, every worker (atomic) */
	struct sf_rule_udp *udp;	 /* UDP: one per worker */
	int mode;			 /* enum sf_mode */
};

struct sf_worker;

/*
 * One listener's socket in one worker: what its event loop registers.
 * 16-aligned: io_uring's user_data keeps an operation in the low bits.
 */
struct __attribute__((aligned(16))) sf_lsock {
	struct sf_io io; /* io.fd: the socket, -1 when not open */
	struct sf_listener *l;
	struct sf_timer resume; /* armed while accepting is paused (limit, EMFILE) */
	uint8_t paused;
	uint8_t armed;	/* engine state: accept submitted (uring) */
	uint32_t drops; /* UDP: the kernel's drop count last seen (SO_RXQ_OVFL) */
};

struct sf_listener {
	struct sf_sockaddr addr; /* where it listens (bound address) */
	struct sf_addrlist cand; /* candidates: the first that binds wins */
	struct sf_rule *rule;
	struct sf_gen *gen;
	unsigned index; /* position in its listen port range */
	int line;
	struct sf_lsock *socks; /* one per worker (dups of one passed by systemd) */
	int proto;		/* enum sf_proto: SOCK_STREAM or SOCK_DGRAM sockets */
	int wildcard;		/* UDP: bound to a wildcard address (replies need pktinfo) */
	unsigned side;		/* meet: 0 for the rule's first listen address, 1 the second */
};

struct sf_gen {
	int refs;
	struct sf_config cfg; /* owned: the policies live here */
	struct sf_rule *rules;
	size_t nrules;
	struct sf_listener *ls;
	size_t nls;
	unsigned nworkers;
};

/*
 * Build a generation from cfg, which it takes over (cfg is zeroed):
 * resolve every upstream and listen address, build the ACL matchers,
 * expand port ranges, refuse two listeners on one address. Opens no
 * socket. Returns 0 with *out (one reference), or -EINVAL with
 * "FILE:LINE: message" (or "-l/-r: message" without a file) in err.
 */
int sf_gen_build(struct sf_config *cfg, unsigned nworkers, struct sf_gen **out, char *err,
		 size_t errlen);

/*
 * Open every listener's sockets, one per worker, taking over those of
 * prev (may be NULL) for the addresses both have. A listener with a
 * socket passed by systemd (see systemd.h; sf_sd_match first) gives each
 * worker a dup of it instead of binding. Returns 0, or -errno with a message naming the
 * address in err (then nothing new stays open and prev is untouched).
 */
int sf_gen_listen(struct sf_gen *g, const struct sf_gen *prev, char *err, size_t errlen);

static inline void sf_gen_ref(struct sf_gen *g)
{
	__atomic_fetch_add(&g->refs, 1, __ATOMIC_RELAXED);
}
/* Drop a reference; the last one frees g (never its listening sockets). */
void sf_gen_unref(struct sf_gen *g);

/* Close every listening socket of worker w in g (at exit). */
void sf_gen_close_worker(struct sf_gen *g, unsigned w);

/*
 * Worker w lets old go: close its sockets of old's listeners that
 * neither keep nor keep2 (may be NULL) holds.
 */
void sf_gen_close_dropped(const struct sf_gen *keep, const struct sf_gen *keep2,
			  const struct sf_gen *old, unsigned w);

/* The rule named name, or NULL. */
struct sf_rule *sf_gen_rule(struct sf_gen *g, const char *name);

/*
 * max_conns: take a connection slot of r. Returns 1, or 0 when the rule
 * is full (the caller leaves clients in the backlog).
 */
int sf_rule_reserve(struct sf_rule *r);
void sf_rule_release(struct sf_rule *r);

/*
 * Is the client at sa allowed by r's lists? Deny wins over allow; with
 * any allow list, only matching clients are. Returns 1 or 0.
 */
int sf_rule_allows(const struct sf_rule *r, const struct sockaddr *sa);

/*
 * Choose the upstream for a connection of r from client, skipping those
 * in tried (bit i: upstream i). Non-backup upstreams that are up first,
 * chosen by the rule's balance mode; then backups that are up; then, when
 * every upstream is down, any untried one, backups last. Returns its index,
 * or -1 when every upstream was tried.
 */
int sf_rule_pick(struct sf_rule *r, const struct sockaddr *client, uint64_t tried, uint64_t now);

/*
 * Meet and bridge rules are served by worker 0 alone: the two clients of
 * a pair must meet in one loop, and --pairs counts pairs of the whole
 * process. A meet listener has one socket (worker 0's; the others' are
 * -1), so the kernel never queues a client where nobody accepts it.
 */
#define SF_PAIR_WORKER 0u
static inline int sf_rule_paired(const struct sf_rule *r) { return r->mode != SF_MODE_FORWARD; }

/* Passive health: a connect to u failed, or succeeded. */
void sf_upstream_failed(const struct sf_rule *r, struct sf_upstream *u, uint64_t now);
void sf_upstream_ok(struct sf_upstream *u);

#endif
