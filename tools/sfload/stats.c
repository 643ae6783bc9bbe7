/* Latency samples and their quantiles, printed as JSON members. */
#include <stdio.h>
#include <stdlib.h>

#include "sfload.h"

/* Record one sample of ns nanoseconds (dropped past SL_LAT_CAP). */
void lat_add(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint32_t *v;

		if (cap > SL_LAT_CAP || (v = realloc(l->v, cap * sizeof(*v))) == NULL) {
			l->dropped++;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The q-quantile in microseconds of sorted samples (0 when there are none). */
static double lat_q(const struct lat *l, double q)
{
	size_t i;

	if (l->n == 0)
		return 0;
	i = (size_t)(q * (double)l->n);
	if (i >= l->n)
		i = l->n - 1;
	return l->v[i] / 1e3;
}

/* Sort the samples and print them as JSON members (no leading comma). */
void lat_print(struct lat *l)
{
	qsort(l->v, l->n, sizeof(*l->v), cmp_u32);
	printf("\"lat_us\": {\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"p999\": %.2f, "
	       "\"max\": %.2f, \"samples\": %zu}",
	       lat_q(l, 0.5), lat_q(l, 0.9), lat_q(l, 0.99), lat_q(l, 0.999), lat_q(l, 1.0), l->n);
}

/* Release the samples. */
void lat_free(struct lat *l)
{
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
