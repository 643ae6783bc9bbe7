/*
 * The counter registry (stats.h): append-only lists written by the main
 * thread, read by the metrics thread without a lock. An entry is filled
 * in completely, then published with a release store, so a reader that
 * finds it (acquire load) sees it whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockfwd/stats.h"

static struct sf_stats_rule *rules_head, *rules_tail;

static const char *const udp_drop_names[SF_UD_COUNT] = {
	[SF_UD_DENIED] = "denied", [SF_UD_LIMIT] = "limit", [SF_UD_UPSTREAM] = "upstream",
	[SF_UD_SEND] = "send",	   [SF_UD_QUEUE] = "queue", [SF_UD_TRUNC] = "truncated",
};

const char *sf_udp_drop_name(int d) { return d >= 0 && d < SF_UD_COUNT ? udp_drop_names[d] : "?"; }
static uint64_t reloads, reload_failures;

/* nworkers zeroed cache-line-aligned blocks of size bytes, or NULL. */
static void *blocks_new(unsigned nworkers, size_t size)
{
	size_t n = (size_t)(nworkers ? nworkers : 1) * size;
	void *p = aligned_alloc(SF_CACHELINE, n);

	if (p != NULL)
		memset(p, 0, n);
	return p;
}

struct sf_stats_rule *sf_stats_rule_get(const char *name, unsigned nworkers)
{
	struct sf_stats_rule *e;

	for (e = rules_head; e != NULL; e = e->next)
		if (e->nworkers == nworkers && strcmp(e->name, name) == 0)
			return e;
	/*
	 * A name with another worker count (only unit tests build such
	 * generations: threads never change at reload) gets an entry of its own.
	 */
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->nworkers = nworkers;
	e->w = blocks_new(nworkers, sizeof(*e->w));
	if (e->w == NULL) {
		free(e);
		return NULL;
	}
	if (rules_tail != NULL)
		__atomic_store_n(&rules_tail->next, e, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&rules_head, e, __ATOMIC_RELEASE);
	rules_tail = e;
	return e;
}

struct sf_stats_up *sf_stats_up_get(struct sf_stats_rule *r, const char *label)
{
	struct sf_stats_up *u, *last = NULL;

	for (u = r->ups; u != NULL; last = u, u = u->next)
		if (strcmp(u->label, label) == 0)
			return u;
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return NULL;
	snprintf(u->label, sizeof(u->label), "%s", label);
	u->nworkers = r->nworkers;
	u->w = blocks_new(r->nworkers, sizeof(*u->w));
	if (u->w == NULL) {
		free(u);
		return NULL;
	}
	if (last != NULL)
		__atomic_store_n(&last->next, u, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&r->ups, u, __ATOMIC_RELEASE);
	return u;
}

struct sf_stats_rule *sf_stats_rules(void)
{
	return __atomic_load_n(&rules_head, __ATOMIC_ACQUIRE);
}

struct sf_stats_rule *sf_stats_rule_next(const struct sf_stats_rule *e)
{
	return __atomic_load_n(&e->next, __ATOMIC_ACQUIRE);
}

struct sf_stats_up *sf_stats_ups(const struct sf_stats_rule *r)
{
	return __atomic_load_n(&r->ups, __ATOMIC_ACQUIRE);
}

struct sf_stats_up *sf_stats_up_next(const struct sf_stats_up *u)
{
	return __atomic_load_n(&u->next, __ATOMIC_ACQUIRE);
}

/*
 * A worker counts a connection's close after its accept, in the same
 * block: reading closed before accepted (acquire) keeps active from
 * going below zero, and it is clamped anyway.
 */
void sf_stats_rule_sum(const struct sf_stats_rule *r, struct sf_rule_sum *s)
{
	unsigned i, k;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < r->nworkers; i++) {
		const struct sf_rule_ctr *b = &r->w[i];
		uint64_t closed = 0, acc;

		for (k = 0; k < SF_R_COUNT; k++) {
			uint64_t v = __atomic_load_n(&b->closed[k], __ATOMIC_ACQUIRE);

			s->closed[k] += v;
			closed += v;
		}
		acc = __atomic_load_n(&b->accepted, __ATOMIC_ACQUIRE);
		s->accepted += acc;
		s->active += acc > closed ? acc - closed : 0;
		for (k = 0; k < 2; k++) {
			s->bytes[k] += sf_ctr_get(&b->bytes[k]);
			s->spliced[k] += sf_ctr_get(&b->spliced[k]);
			s->dgrams[k] += sf_ctr_get(&b->dgrams[k]);
		}
		for (k = 0; k < SF_UD_COUNT; k++)
			s->udp_drops[k] += sf_ctr_get(&b->udp_drops[k]);
		s->udp_unreach += sf_ctr_get(&b->udp_unreach);
		s->pipe_fallbacks += sf_ctr_get(&b->pipe_fallbacks);
	}
}

void sf_stats_up_sum(const struct sf_stats_up *u, struct sf_up_sum *s)
{
	unsigned i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < u->nworkers; i++) {
		const struct sf_up_ctr *b = &u->w[i];
		uint64_t closed = __atomic_load_n(&b->closed, __ATOMIC_ACQUIRE);
		uint64_t opened = __atomic_load_n(&b->opened, __ATOMIC_ACQUIRE);

		s->attempts += sf_ctr_get(&b->attempts);
		s->failures += sf_ctr_get(&b->failures);
		s->active += opened > closed ? opened - closed : 0;
	}
}

void sf_stats_reloaded(int ok) { sf_ctr_add(ok ? &reloads : &reload_failures, 1, 0); }

uint64_t sf_stats_reloads(void) { return sf_ctr_get(&reloads); }

uint64_t sf_stats_reload_failures(void) { return sf_ctr_get(&reload_failures); }

static int64_t ubuf_ctr[SF_UB_COUNT];

void sf_stats_ubuf_add(int what, int64_t delta)
{
	if (what >= 0 && what < SF_UB_COUNT)
		__atomic_add_fetch(&ubuf_ctr[what], delta, __ATOMIC_RELAXED);
}

uint64_t sf_stats_ubuf(int what)
{
	int64_t v;

	if (what < 0 || what >= SF_UB_COUNT)
		return 0;
	v = __atomic_load_n(&ubuf_ctr[what], __ATOMIC_RELAXED);
	return v < 0 ? 0 : (uint64_t)v;
}
