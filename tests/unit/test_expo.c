/*
 * expo.h: the Prometheus text format writer (escaping of label values
 * and HELP text, sample lines, families); stats.h: the counter registry
 * (entries found again by name, sums over workers).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sockfwd/expo.h"
#include "sockfwd/stats.h"

/* The text written so far, for comparisons. */
static const char *text(const struct sf_expo *e) { return e->buf != NULL ? e->buf : ""; }

Test(expo, sample_without_labels)
{
	struct sf_expo e;

	sf_expo_init(&e);
	sf_expo_u64(&e, "sockfwd_reloads_total", NULL, 0);
	sf_expo_u64(&e, "process_open_fds", NULL, 18446744073709551615ull);
	cr_assert_str_eq(text(&e),
			 "sockfwd_reloads_total 0\nprocess_open_fds 18446744073709551615\n");
	cr_assert_eq(e.err, 0);
	sf_expo_free(&e);
}

Test(expo, labels_in_order)
{
	const char *l[] = { "rule", "web", "direction", "client_to_upstream", NULL };
	struct sf_expo e;

	sf_expo_init(&e);
	sf_expo_u64(&e, "sockfwd_bytes_total", l, 42);
	cr_assert_str_eq(text(&e),
			 "sockfwd_bytes_total{rule=\"web\",direction=\"client_to_upstream\"} 42\n");
	sf_expo_free(&e);
}

/* Backslash, double quote and newline are escaped in label values, nothing else. */
Test(expo, label_value_escaping)
{
	const char *l[] = { "rule", "a\\b\"c\nd'e{f}=g,h", NULL };
	struct sf_expo e;

	sf_expo_init(&e);
	sf_expo_u64(&e, "m", l, 1);
	cr_assert_str_eq(text(&e), "m{rule=\"a\\\\b\\\"c\\nd'e{f}=g,h\"} 1\n");
	sf_expo_free(&e);
}

Test(expo, empty_and_utf8_label_values)
{
	const char *l[] = { "rule", "", "upstream", "h\xc3\xa9te:80", NULL };
	struct sf_expo e;

	sf_expo_init(&e);
	sf_expo_u64(&e, "m", l, 7);
	cr_assert_str_eq(text(&e), "m{rule=\"\",upstream=\"h\xc3\xa9te:80\"} 7\n");
	sf_expo_free(&e);
}

/* HELP escapes backslash and newline, but keeps double quotes. */
Test(expo, family_help_and_type)
{
	struct sf_expo e;

	sf_expo_init(&e);
	sf_expo_family(&e, "m_total", "counter", "say \"hi\"\\now\nnext");
	cr_assert_str_eq(text(&e),
			 "# HELP m_total say \"hi\"\\\\now\\nnext\n# TYPE m_total counter\n");
	sf_expo_free(&e);
}

Test(expo, doubles)
{
	struct sf_expo e;

	sf_expo_init(&e);
	sf_expo_double(&e, "t", NULL, 1795958858.25);
	sf_expo_double(&e, "z", NULL, 0);
	cr_assert_str_eq(text(&e), "t 1795958858.25\nz 0\n");
	sf_expo_free(&e);
}

/* A long text grows the buffer and stays whole. */
Test(expo, grows)
{
	struct sf_expo e;
	char *t;
	size_t len, lines = 0;

	sf_expo_init(&e);
	for (int i = 0; i < 10000; i++)
		sf_expo_u64(&e, "sockfwd_connections_accepted_total", NULL, (uint64_t)i);
	t = sf_expo_take(&e, &len);
	cr_assert_eq(e.buf, NULL, "take leaves the writer empty");
	cr_assert_eq(len, strlen(t));
	for (size_t i = 0; i < len; i++)
		lines += t[i] == '\n';
	cr_assert_eq(lines, 10000);
	cr_assert(strstr(t, "sockfwd_connections_accepted_total 9999\n") != NULL);
	free(t);
}

/* A name is found again (a rule kept across reloads); another name is another entry. */
Test(stats, registry_by_name)
{
	struct sf_stats_rule *a = sf_stats_rule_get("stats_web", 2);
	struct sf_stats_rule *b = sf_stats_rule_get("stats_db", 2);
	struct sf_stats_up *u, *v;

	cr_assert(a != NULL && b != NULL && a != b);
	cr_assert_eq(sf_stats_rule_get("stats_web", 2), a);
	u = sf_stats_up_get(a, "10.0.0.5:80");
	v = sf_stats_up_get(a, "10.0.0.6:80");
	cr_assert(u != NULL && v != NULL && u != v);
	cr_assert_eq(sf_stats_up_get(a, "10.0.0.5:80"), u);
	cr_assert_eq(sf_stats_ups(a), u);
	cr_assert_eq(sf_stats_up_next(u), v);
	cr_assert_eq(((uintptr_t)a->w % SF_CACHELINE), 0, "blocks are cache-line aligned");
	cr_assert_eq(sizeof(a->w[0]) % SF_CACHELINE, 0, "one block per cache line set");
}

/* Sums run over every worker's block; active is accepted - closed. */
Test(stats, sums_over_workers)
{
	struct sf_stats_rule *r = sf_stats_rule_get("stats_sum", 3);
	struct sf_stats_up *u = sf_stats_up_get(r, "h:1");
	struct sf_rule_sum s;
	struct sf_up_sum us;

	for (unsigned w = 0; w < 3; w++) {
		sf_ctr_add(&r->w[w].accepted, 10 + w, 0);
		sf_ctr_add_rel(&r->w[w].closed[SF_R_EOF], 5, 0);
		sf_ctr_add_rel(&r->w[w].closed[SF_R_RESET], w, 1);
		sf_ctr_add(&r->w[w].bytes[0], 1000, 0);
		sf_ctr_add(&r->w[w].spliced[1], 7, 1);
		sf_ctr_add(&u->w[w].attempts, 4, 0);
		sf_ctr_add(&u->w[w].failures, 1, 0);
		sf_ctr_add_rel(&u->w[w].opened, 3, 0);
		sf_ctr_add_rel(&u->w[w].closed, 2, 0);
	}
	sf_stats_rule_sum(r, &s);
	cr_assert_eq(s.accepted, 33);
	cr_assert_eq(s.closed[SF_R_EOF], 15);
	cr_assert_eq(s.closed[SF_R_RESET], 3);
	cr_assert_eq(s.active, 33 - 18);
	cr_assert_eq(s.bytes[0], 3000);
	cr_assert_eq(s.spliced[1], 21);
	sf_stats_up_sum(u, &us);
	cr_assert_eq(us.attempts, 12);
	cr_assert_eq(us.failures, 3);
	cr_assert_eq(us.active, 3);
}

Test(stats, reloads)
{
	uint64_t ok = sf_stats_reloads(), bad = sf_stats_reload_failures();

	sf_stats_reloaded(1);
	sf_stats_reloaded(0);
	sf_stats_reloaded(0);
	cr_assert_eq(sf_stats_reloads(), ok + 1);
	cr_assert_eq(sf_stats_reload_failures(), bad + 2);
}
