/*
 * timer.h: the heap every loop uses for connect, idle and header
 * deadlines. Checked against a plain sorted order under random adds,
 * moves and deletes.
 */
#include <stdint.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "sockfwd/timer.h"

#define N 2000

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

Test(timer, empty_heap_waits_forever)
{
	struct sf_timers t;

	sf_timers_init(&t);
	cr_assert_eq(sf_timers_wait_ms(&t, 100), -1);
	cr_assert_null(sf_timers_pop_due(&t, UINT64_MAX));
	sf_timers_destroy(&t);
}

Test(timer, wait_is_time_to_first_deadline)
{
	struct sf_timers t;
	struct sf_timer a, b;

	sf_timers_init(&t);
	sf_timer_init(&a, NULL);
	sf_timer_init(&b, NULL);
	cr_assert_eq(sf_timer_set(&t, &a, 500), 0);
	cr_assert_eq(sf_timer_set(&t, &b, 300), 0);
	cr_assert_eq(sf_timers_wait_ms(&t, 100), 200);
	cr_assert_eq(sf_timers_wait_ms(&t, 300), 0);
	cr_assert_eq(sf_timers_wait_ms(&t, 900), 0);
	/* Moving the first one later makes the other first. */
	cr_assert_eq(sf_timer_set(&t, &b, 1000), 0);
	cr_assert_eq(sf_timers_wait_ms(&t, 100), 400);
	sf_timer_del(&t, &a);
	cr_assert(!sf_timer_armed(&a));
	cr_assert_eq(sf_timers_wait_ms(&t, 100), 900);
	sf_timer_del(&t, &a); /* twice: harmless */
	sf_timers_destroy(&t);
	cr_assert(!sf_timer_armed(&b), "destroy disarms what was left");
}

/* Random adds, moves and deletes; timers come out due in deadline order. */
Test(timer, pops_in_order_under_random_changes)
{
	static struct sf_timer tm[N];
	struct sf_timers t;
	uint64_t s = 0x9e3779b97f4a7c15ull, last = 0, now;
	int armed = 0, popped = 0, i, k;

	sf_timers_init(&t);
	for (i = 0; i < N; i++)
		sf_timer_init(&tm[i], NULL);
	for (k = 0; k < 20 * N; k++) {
		i = (int)(rnd(&s) % N);
		if (rnd(&s) % 4 == 0) {
			armed -= sf_timer_armed(&tm[i]);
			sf_timer_del(&t, &tm[i]);
		} else {
			armed += !sf_timer_armed(&tm[i]);
			cr_assert_eq(sf_timer_set(&t, &tm[i], 1 + rnd(&s) % 100000), 0);
		}
	}
	cr_assert_eq(t.n, (size_t)armed, "heap holds %zu, %d armed", t.n, armed);
	for (now = 0; now < 100000 + 997; now += 997) {
		struct sf_timer *x;

		while ((x = sf_timers_pop_due(&t, now)) != NULL) {
			cr_assert(x->when <= now, "popped %llu at %llu",
				  (unsigned long long)x->when, (unsigned long long)now);
			cr_assert(x->when >= last, "out of order: %llu after %llu",
				  (unsigned long long)x->when, (unsigned long long)last);
			cr_assert(!sf_timer_armed(x));
			last = x->when;
			popped++;
		}
		if (sf_timers_first(&t) != NULL)
			cr_assert_gt(sf_timers_first(&t)->when, now);
	}
	cr_assert_eq(popped, armed);
	cr_assert_eq(t.n, 0);
	sf_timers_destroy(&t);
}
