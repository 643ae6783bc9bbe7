/*
 * Counters that outlive generations, for /metrics and the -v line's
 * totals.
 *
 * A process-wide registry holds one entry per rule name and one per
 * (rule name, upstream label). Entries are created by the main thread
 * when a generation is built (sf_gen_build) and never freed before exit,
 * so a rule kept across a reload finds its entry again and its counters
 * go on, and a reader never sees an entry vanish.
 *
 * Each entry holds one cache-line-aligned block per worker. A worker
 * writes only its own block, with a relaxed load and a relaxed store (a
 * plain mov, no lock prefix, no line bouncing between cores); the
 * metrics thread reads with relaxed loads and sums over workers. The
 * naive engine is the exception: a worker's connections run on threads
 * of their own, so its blocks have several writers and take atomic adds
 * (sf_ctr_add's shared flag; that engine is the baseline, not the fast
 * path).
 */
#ifndef SOCKFWD_STATS_H
#define SOCKFWD_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "rule.h"

#define SF_CACHELINE 64

/* Why a UDP datagram was dropped, as counted per rule. */
enum sf_udp_drop {
	SF_UD_DENIED = 0, /* the client is refused by allow/deny */
	SF_UD_LIMIT,	  /* no session: the rule is full on other workers, or out of memory */
	SF_UD_UPSTREAM,	  /* no upstream socket could be opened (descriptors, every address) */
	SF_UD_SEND,	  /* a send failed: the socket's buffer was full, or an error */
	SF_UD_QUEUE,	  /* the listener's receive queue overflowed (kernel, SO_RXQ_OVFL) */
	SF_UD_TRUNC,	  /* larger than a datagram can be (never with 64 KiB buffers) */
	SF_UD_COUNT
};

const char *sf_udp_drop_name(int d);

/* One worker's counters of one rule. */
struct __attribute__((aligned(SF_CACHELINE))) sf_rule_ctr {
	uint64_t accepted;
	uint64_t closed[SF_R_COUNT]; /* by enum sf_reason */
	uint64_t bytes[2];	     /* by direction (SF_C2U, SF_U2C), as written */
	uint64_t spliced[2];	     /* the part of bytes[] that went through a pipe */
	uint64_t dgrams[2];	     /* UDP datagrams forwarded, by direction */
	uint64_t udp_drops[SF_UD_COUNT];
	uint64_t udp_unreach;	 /* ICMP port unreachable from an upstream (ECONNREFUSED) */
	uint64_t pipe_fallbacks; /* splice: bursts moved through a buffer, no pipe to be had */
};

/* One worker's counters of one upstream of one rule. */
struct __attribute__((aligned(SF_CACHELINE))) sf_up_ctr {
	uint64_t attempts; /* connect attempts (one per address tried) */
	uint64_t failures; /* attempts that failed or timed out */
	uint64_t opened;   /* connections established */
	uint64_t closed;   /* of those, ended */
};

struct sf_stats_up {
	struct sf_stats_up *next; /* in its rule entry, in creation order */
	char label[SF_HOST_MAX + 8];
	unsigned nworkers;
	struct sf_up_ctr *w; /* nworkers blocks */
	/* scratch of the metrics thread (its only writer) */
	uint64_t seen;
	int up;
};

struct sf_stats_rule {
	struct sf_stats_rule *next; /* in the registry, in creation order */
	char name[SF_NAME_MAX];
	unsigned nworkers;
	struct sf_rule_ctr *w;	 /* nworkers blocks */
	struct sf_stats_up *ups; /* upstream entries of this rule */
	uint64_t seen;		 /* scratch of the metrics thread */
	int udp;		 /* a UDP rule had this name (atomic: set by main) */
};

/*
 * Add n to counter *p, whose only writer is the calling thread unless
 * shared is set (then an atomic add). Readers on other threads see whole
 * values either way.
 */
static inline void sf_ctr_add(uint64_t *p, uint64_t n, int shared)
{
	if (shared)
		__atomic_fetch_add(p, n, __ATOMIC_RELAXED);
	else
		__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/*
 * sf_ctr_add for a counter that ends what another counted before it
 * (closed after accepted): a release store, so a reader that loads it
 * first with acquire sees the earlier one at least as far. Still a plain
 * mov on x86.
 */
static inline void sf_ctr_add_rel(uint64_t *p, uint64_t n, int shared)
{
	if (shared)
		__atomic_fetch_add(p, n, __ATOMIC_RELEASE);
	else
		__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELEASE);
}

static inline uint64_t sf_ctr_get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/*
 * The entry of rule name with nworkers blocks, created (zeroed) when
 * there is none. Main thread only. Returns NULL when out of memory.
 */
struct sf_stats_rule *sf_stats_rule_get(const char *name, unsigned nworkers);

/*
 * The entry of upstream label in rule entry r, created when there is
 * none. Main thread only. Returns NULL when out of memory.
 */
struct sf_stats_up *sf_stats_up_get(struct sf_stats_rule *r, const char *label);

/* The first rule entry (then ->next); safe from any thread. */
struct sf_stats_rule *sf_stats_rules(void);
/* The next entry after e, or NULL; safe from any thread. */
struct sf_stats_rule *sf_stats_rule_next(const struct sf_stats_rule *e);
/* The first upstream entry of r (then sf_stats_up_next); safe from any thread. */
struct sf_stats_up *sf_stats_ups(const struct sf_stats_rule *r);
struct sf_stats_up *sf_stats_up_next(const struct sf_stats_up *u);

/* A rule entry's counters summed over workers. */
struct sf_rule_sum {
	uint64_t accepted;
	uint64_t closed[SF_R_COUNT];
	uint64_t bytes[2];
	uint64_t spliced[2];
	uint64_t active; /* accepted - closed */
	uint64_t dgrams[2];
	uint64_t udp_drops[SF_UD_COUNT];
	uint64_t udp_unreach;
	uint64_t pipe_fallbacks;
};

void sf_stats_rule_sum(const struct sf_stats_rule *r, struct sf_rule_sum *s);

struct sf_up_sum {
	uint64_t attempts, failures;
	uint64_t active; /* opened - closed */
};

void sf_stats_up_sum(const struct sf_stats_up *u, struct sf_up_sum *s);

/* SIGHUP reloads: ok 1 when the new rules run, 0 when refused. Main thread. */
void sf_stats_reloaded(int ok);
/* Reloads that succeeded, and that failed. */
uint64_t sf_stats_reloads(void);
uint64_t sf_stats_reload_failures(void);

/*
 * The io_uring engine's provided buffers, summed over workers: receives
 * that waited for a buffer, groups added and retired (totals), groups
 * live and bytes mapped now (gauges). Any thread.
 */
enum { SF_UB_STARVED, SF_UB_GROWN, SF_UB_RETIRED, SF_UB_GROUPS, SF_UB_BYTES, SF_UB_COUNT };
void sf_stats_ubuf_add(int what, int64_t delta);
uint64_t sf_stats_ubuf(int what);

#endif
