/*
 * Timers: a binary min-heap of deadlines, one per worker loop. Adding and
 * removing cost O(log n); the loop asks for the earliest deadline in O(1)
 * and uses it as its wait timeout.
 *
 * Connections keep at most one timer each and do not touch it on the
 * data path: an idle timeout records the time of the last byte, and the
 * timer, when it fires early, re-arms itself for the remainder. So a
 * byte costs no timer operation, and 100k connections cost nothing per
 * event.
 */
#ifndef SOCKFWD_TIMER_H
#define SOCKFWD_TIMER_H

#include <stddef.h>
#include <stdint.h>

struct sf_timer {
	uint64_t when; /* CLOCK_MONOTONIC ms */
	size_t idx;    /* position in the heap, SIZE_MAX when not armed */
	/* Called by the loop when due, with the loop's context. */
	void (*fn)(void *ctx, struct sf_timer *tm);
};

struct sf_timers {
	struct sf_timer **h;
	size_t n, cap;
};

void sf_timers_init(struct sf_timers *t);
void sf_timers_destroy(struct sf_timers *t);

static inline void sf_timer_init(struct sf_timer *tm, void (*fn)(void *, struct sf_timer *))
{
	tm->idx = SIZE_MAX;
	tm->fn = fn;
}
static inline int sf_timer_armed(const struct sf_timer *tm) { return tm->idx != SIZE_MAX; }

/* Arm (or move) tm to fire at when. Returns 0 or -ENOMEM. */
int sf_timer_set(struct sf_timers *t, struct sf_timer *tm, uint64_t when);
/* Disarm tm if armed. */
void sf_timer_del(struct sf_timers *t, struct sf_timer *tm);

/* The earliest armed timer, or NULL. */
static inline struct sf_timer *sf_timers_first(const struct sf_timers *t)
{
	return t->n > 0 ? t->h[0] : NULL;
}

/*
 * Milliseconds until the first deadline from now, for epoll_wait: -1
 * when no timer is armed, 0 when one is due.
 */
int sf_timers_wait_ms(const struct sf_timers *t, uint64_t now);

/*
 * Disarm and return one timer due at now, or NULL: call in a loop, the
 * callback may re-arm it.
 */
struct sf_timer *sf_timers_pop_due(struct sf_timers *t, uint64_t now);

#endif
