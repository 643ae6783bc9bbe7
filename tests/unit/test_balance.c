/*
 * balance.c: how a rule picks an upstream (every balance mode, backups,
 * passive health, the tried set), on pools built by hand: no sockets.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sockfwd/rule.h"

static struct sf_policy pol;
static struct sf_upstream ups[4];
static struct sf_rule rule;

/* A rule with n upstreams of the given weights (0: backup, weight 1). */
static void pool(int balance, int n, const unsigned *w)
{
	memset(&pol, 0, sizeof(pol));
	memset(ups, 0, sizeof(ups));
	memset(&rule, 0, sizeof(rule));
	pol.balance = balance;
	pol.max_fails = 1;
	pol.fail_timeout_ms = 10000;
	for (int i = 0; i < n; i++) {
		ups[i].conf.weight = w[i] ? w[i] : 1;
		ups[i].conf.backup = w[i] == 0;
	}
	rule.pol = &pol;
	rule.ups = ups;
	rule.nups = (unsigned)n;
}

static struct sockaddr_in client(const char *ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(1000) };

	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static int pick(uint64_t tried, uint64_t now)
{
	struct sockaddr_in c = client("10.0.0.1");

	return sf_rule_pick(&rule, (struct sockaddr *)&c, tried, now);
}

Test(balance, roundrobin_follows_weights)
{
	static const unsigned w[] = { 1, 3, 2 };
	int count[3] = { 0 };

	pool(SF_BAL_ROUNDROBIN, 3, w);
	for (int i = 0; i < 60; i++)
		count[pick(0, 0)]++;
	cr_assert(count[0] == 10 && count[1] == 30 && count[2] == 20, "got %d/%d/%d", count[0],
		  count[1], count[2]);
}

Test(balance, first_takes_the_first_up)
{
	static const unsigned w[] = { 1, 1, 1 };

	pool(SF_BAL_FIRST, 3, w);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(pick(0, 0), 0);
	sf_upstream_failed(&rule, &ups[0], 100);
	cr_assert_eq(pick(0, 200), 1, "a failed upstream is skipped");
	cr_assert_eq(pick(0, 100 + 10000), 0, "and back after fail_timeout");
}

Test(balance, leastconn_prefers_fewest_per_weight)
{
	static const unsigned w[] = { 1, 2 };

	pool(SF_BAL_LEASTCONN, 2, w);
	ups[0].active = 2;
	ups[1].active = 3; /* 1.5 per weight unit, fewer than 2 */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pick(0, 0), 1);
	ups[1].active = 5;
	cr_assert_eq(pick(0, 0), 0);
}

Test(balance, source_is_sticky_and_spreads)
{
	static const unsigned w[] = { 1, 1, 1, 1 };
	char ip[32];
	int seen[4] = { 0 }, spread = 0;

	pool(SF_BAL_SOURCE, 4, w);
	for (int i = 1; i <= 64; i++) {
		struct sockaddr_in c;
		struct sockaddr_in6 m = { .sin6_family = AF_INET6 };
		int a, b;

		snprintf(ip, sizeof(ip), "192.0.2.%d", i);
		c = client(ip);
		a = sf_rule_pick(&rule, (struct sockaddr *)&c, 0, 0);
		c.sin_port = htons(2000); /* another port of the same client */
		b = sf_rule_pick(&rule, (struct sockaddr *)&c, 0, 0);
		cr_assert_eq(a, b, "%s: %d then %d", ip, a, b);
		/* The same client seen on a dual-stack listener. */
		snprintf(ip, sizeof(ip), "::ffff:192.0.2.%d", i);
		inet_pton(AF_INET6, ip, &m.sin6_addr);
		cr_assert_eq(sf_rule_pick(&rule, (struct sockaddr *)&m, 0, 0), a, "%s", ip);
		seen[a] = 1;
	}
	for (int i = 0; i < 4; i++)
		spread += seen[i];
	cr_assert_geq(spread, 3, "64 clients on %d of 4 upstreams", spread);
}

Test(balance, backup_only_when_the_others_are_down)
{
	static const unsigned w[] = { 1, 1, 0 };

	pool(SF_BAL_ROUNDROBIN, 3, w);
	for (int i = 0; i < 10; i++)
		cr_assert_neq(pick(0, 0), 2);
	sf_upstream_failed(&rule, &ups[0], 0);
	sf_upstream_failed(&rule, &ups[1], 0);
	cr_assert_eq(pick(0, 1), 2);
	/* The backup down too: all are tried anyway, the others first. */
	sf_upstream_failed(&rule, &ups[2], 0);
	cr_assert_neq(pick(0, 1), 2);
	cr_assert_eq(pick((1u << 0) | (1u << 1), 1), 2);
	cr_assert_eq(pick(7, 1), -1, "every upstream tried");
}

Test(balance, tried_ones_are_skipped)
{
	static const unsigned w[] = { 1, 1, 1 };

	pool(SF_BAL_ROUNDROBIN, 3, w);
	for (int i = 0; i < 9; i++) {
		int a = pick(1u << 1, 0);

		cr_assert(a == 0 || a == 2, "picked %d", a);
	}
}

Test(balance, max_fails_counts_failures_in_a_row)
{
	static const unsigned w[] = { 1, 1 };

	pool(SF_BAL_FIRST, 2, w);
	pol.max_fails = 3;
	sf_upstream_failed(&rule, &ups[0], 0);
	sf_upstream_failed(&rule, &ups[0], 0);
	cr_assert_eq(pick(0, 1), 0, "two failures of three: still up");
	sf_upstream_ok(&ups[0]);
	sf_upstream_failed(&rule, &ups[0], 0);
	sf_upstream_failed(&rule, &ups[0], 0);
	cr_assert_eq(pick(0, 1), 0, "a success in between starts the count again");
	sf_upstream_failed(&rule, &ups[0], 0);
	cr_assert_eq(pick(0, 1), 1, "three in a row: down");
	pol.max_fails = 0;
	sf_upstream_ok(&ups[1]);
	for (int i = 0; i < 10; i++)
		sf_upstream_failed(&rule, &ups[1], 0);
	cr_assert_eq(pick(1, 1), 1, "max_fails 0: never marked down");
}
