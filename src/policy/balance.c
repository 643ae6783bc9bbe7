/*
 * Choosing an upstream: the balance modes and passive health (as nginx's
 * max_fails and fail_timeout). Pools are small (SF_POOL_MAX), so a pick
 * is a scan of the pool: no lock, a few relaxed atomics, whatever the
 * number of rules or connections.
 */
#include <netinet/in.h>
#include <string.h>

#include "sockfwd/rule.h"

/* Who may be chosen, in turn: up and not backup, up backups, then (all down) any, backups last. */
enum { PASS_UP, PASS_BACKUP, PASS_ANY, PASS_ANY_BACKUP };

static int is_up(const struct sf_upstream *u, uint64_t now)
{
	return SF_ATOMIC_GET(u->down_until_ms) <= now;
}

/* May upstream i be chosen in this pass? */
static int candidate(const struct sf_rule *r, unsigned i, uint64_t tried, int pass, uint64_t now)
{
	const struct sf_upstream *u = &r->ups[i];

	if (tried & (1ull << i))
		return 0;
	switch (pass) {
	case PASS_UP:
		return !u->conf.backup && is_up(u, now);
	case PASS_BACKUP:
		return u->conf.backup && is_up(u, now);
	case PASS_ANY:
		return !u->conf.backup;
	default:
		return u->conf.backup;
	}
}

static unsigned weight(const struct sf_upstream *u) { return u->conf.weight ? u->conf.weight : 1; }

/*
 * The candidate that position k (0 <= k < total weight of the
 * candidates) falls on, each candidate owning weight-many positions.
 */
static int by_position(const struct sf_rule *r, uint64_t tried, int pass, uint64_t now, uint64_t k)
{
	unsigned i;

	for (i = 0; i < r->nups; i++) {
		if (!candidate(r, i, tried, pass, now))
			continue;
		if (k < weight(&r->ups[i]))
			return (int)i;
		k -= weight(&r->ups[i]);
	}
	return -1;
}

/* FNV-1a of the client's IP (not its port); IPv4-mapped counts as IPv4. */
static uint64_t client_hash(const struct sockaddr *sa)
{
	const unsigned char *p = NULL;
	uint64_t h = 0xcbf29ce484222325ull;
	size_t n = 0, i;

	if (sa != NULL && sa->sa_family == AF_INET) {
		p = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		n = 4;
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		p = a->s6_addr;
		n = 16;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			p += 12;
			n = 4;
		}
	}
	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* leastconn: fewest active per weight; ties go round, from the cursor on. */
static int least(struct sf_rule *r, uint64_t tried, int pass, uint64_t now)
{
	unsigned start = SF_ATOMIC_ADD(r->rr, 1), k;
	int best = -1;
	uint64_t ba = 0, bw = 1;

	for (k = 0; k < r->nups; k++) {
		unsigned i = (start + k) % r->nups;
		uint64_t a, w;

		if (!candidate(r, i, tried, pass, now))
			continue;
		a = SF_ATOMIC_GET(r->ups[i].active);
		w = weight(&r->ups[i]);
		if (best < 0 || a * bw < ba * w) {
			best = (int)i;
			ba = a;
			bw = w;
		}
	}
	return best;
}

int sf_rule_pick(struct sf_rule *r, const struct sockaddr *client, uint64_t tried, uint64_t now)
{
	int pass;

	for (pass = PASS_UP; pass <= PASS_ANY_BACKUP; pass++) {
		uint64_t total = 0;
		unsigned i;

		for (i = 0; i < r->nups; i++)
			if (candidate(r, i, tried, pass, now))
				total += weight(&r->ups[i]);
		if (total == 0)
			continue;
		switch (r->pol->balance) {
		case SF_BAL_FIRST:
			return by_position(r, tried, pass, now, 0);
		case SF_BAL_LEASTCONN:
			return least(r, tried, pass, now);
		case SF_BAL_SOURCE:
			return by_position(r, tried, pass, now, client_hash(client) % total);
		default:
			return by_position(r, tried, pass, now, SF_ATOMIC_ADD(r->rr, 1) % total);
		}
	}
	return -1;
}

void sf_upstream_failed(const struct sf_rule *r, struct sf_upstream *u, uint64_t now)
{
	unsigned max = r->pol->max_fails;

	if (max == 0)
		return; /* max_fails 0: never marked down */
	if (SF_ATOMIC_ADD(u->fails, 1) + 1 >= max) {
		SF_ATOMIC_SET(u->down_until_ms, now + r->pol->fail_timeout_ms);
		SF_ATOMIC_SET(u->fails, 0);
	}
}

void sf_upstream_ok(struct sf_upstream *u)
{
	/* Read first: most connects change nothing, and a store would bounce the line. */
	if (SF_ATOMIC_GET(u->fails) != 0)
		SF_ATOMIC_SET(u->fails, 0);
	if (SF_ATOMIC_GET(u->down_until_ms) != 0)
		SF_ATOMIC_SET(u->down_until_ms, 0);
}
