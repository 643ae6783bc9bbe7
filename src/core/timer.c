/*
 * A binary min-heap of timers; each timer knows its index, so removal is
 * O(log n) without a search.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "sockfwd/timer.h"

void sf_timers_init(struct sf_timers *t)
{
	t->h = NULL;
	t->n = t->cap = 0;
}

void sf_timers_destroy(struct sf_timers *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		t->h[i]->idx = SIZE_MAX;
	free(t->h);
	sf_timers_init(t);
}

static void place(struct sf_timers *t, size_t i, struct sf_timer *tm)
{
	t->h[i] = tm;
	tm->idx = i;
}

static void sift_up(struct sf_timers *t, size_t i)
{
	struct sf_timer *tm = t->h[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (t->h[p]->when <= tm->when)
			break;
		place(t, i, t->h[p]);
		i = p;
	}
	place(t, i, tm);
}

static void sift_down(struct sf_timers *t, size_t i)
{
	struct sf_timer *tm = t->h[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= t->n)
			break;
		if (c + 1 < t->n && t->h[c + 1]->when < t->h[c]->when)
			c++;
		if (tm->when <= t->h[c]->when)
			break;
		place(t, i, t->h[c]);
		i = c;
	}
	place(t, i, tm);
}

int sf_timer_set(struct sf_timers *t, struct sf_timer *tm, uint64_t when)
{
	if (sf_timer_armed(tm)) {
		uint64_t old = tm->when;

		tm->when = when;
		if (when < old)
			sift_up(t, tm->idx);
		else
			sift_down(t, tm->idx);
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct sf_timer **h = realloc(t->h, cap * sizeof(*h));

		if (h == NULL)
			return -ENOMEM;
		t->h = h;
		t->cap = cap;
	}
	tm->when = when;
	place(t, t->n++, tm);
	sift_up(t, tm->idx);
	return 0;
}

void sf_timer_del(struct sf_timers *t, struct sf_timer *tm)
{
	size_t i = tm->idx;
	struct sf_timer *last;

	if (!sf_timer_armed(tm))
		return;
	tm->idx = SIZE_MAX;
	last = t->h[--t->n];
	if (i == t->n)
		return;
	place(t, i, last);
	if (i > 0 && t->h[(i - 1) / 2]->when > last->when)
		sift_up(t, i);
	else
		sift_down(t, i);
}

int sf_timers_wait_ms(const struct sf_timers *t, uint64_t now)
{
	uint64_t when;

	if (t->n == 0)
		return -1;
	when = t->h[0]->when;
	if (when <= now)
		return 0;
	return when - now > INT32_MAX ? INT32_MAX : (int)(when - now);
}

struct sf_timer *sf_timers_pop_due(struct sf_timers *t, uint64_t now)
{
	struct sf_timer *tm;

	if (t->n == 0 || t->h[0]->when > now)
		return NULL;
	tm = t->h[0];
	sf_timer_del(t, tm);
	return tm;
}
