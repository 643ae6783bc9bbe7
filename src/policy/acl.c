/*
 * CIDR blocks and sets of them.
 *
 * Every block lives in the IPv6 space, IPv4 as ::ffff:a.b.c.d with the
 * prefix raised by 96, so one sorted table answers for both families and
 * an IPv4 client on a dual-stack listener (reported IPv4-mapped) matches
 * IPv4 blocks without a special case.
 *
 * A set is the union of its blocks as disjoint, sorted, inclusive
 * intervals of 128-bit integers; a lookup is one binary search.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockfwd/acl.h"

/* A 128-bit address as two host-order halves, hi first. */
struct u128 {
	uint64_t hi;
	uint64_t lo;
};

/* Inclusive: every address a with lo <= a <= hi. */
struct interval {
	struct u128 lo;
	struct u128 hi;
};

struct sf_cidrset {
	size_t n;
	struct interval *v; /* sorted by lo, disjoint and not adjacent */
};

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Format the message into err (when there is room) and return -EINVAL. */
static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Clear every bit of addr after the first prefix bits (prefix <= 128). */
static void clear_host_bits(uint8_t addr[16], unsigned prefix)
{
	unsigned i;

	for (i = 0; i < 16; i++) {
		if (prefix >= 8 * (i + 1))
			continue;
		if (prefix <= 8 * i)
			addr[i] = 0;
		else
			addr[i] &= (uint8_t)(0xff << (8 - (prefix - 8 * i)));
	}
}

/*
 * Parse the prefix after '/': decimal digits only, at most max.
 * Returns the prefix, or -EINVAL with a message naming s in err.
 */
static int parse_prefix(const char *s, const char *p, unsigned max, const char *family, char *err,
			size_t errlen)
{
	unsigned v = 0;

	if (*p == '\0')
		return fail(err, errlen, "'%s': missing prefix length after '/'", s);
	if (*p < '0' || *p > '9')
		return fail(err, errlen, "'%s': prefix length '%s' is not a decimal number", s, p);
	for (; *p >= '0' && *p <= '9'; p++) {
		/* Saturate: "/99999999999" is out of range, not a wrap. */
		if (v <= 128)
			v = v * 10 + (unsigned)(*p - '0');
	}
	if (*p != '\0')
		return fail(err, errlen, "'%s': unexpected '%s' after the prefix length", s, p);
	if (v > max)
		return fail(err, errlen, "'%s': prefix length out of range for %s (0-%u)", s,
			    family, max);
	return (int)v;
}

int sf_cidr_parse(const char *s, struct sf_cidr *out, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash;
	struct in_addr a4;
	size_t hlen;
	int prefix, is6;

	memset(out, 0, sizeof(*out));
	if (s == NULL || *s == '\0')
		return fail(err, errlen, "empty CIDR block (expected address or address/prefix)");
	if (strpbrk(s, " \t\r\n\v\f") != NULL)
		return fail(err, errlen, "'%s': whitespace is not allowed in a CIDR block", s);
	if (strpbrk(s, "[]") != NULL)
		return fail(err, errlen, "'%s': no brackets in a CIDR block (write 2001:db8::/32)",
			    s);
	slash = strchr(s, '/');
	hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (hlen == 0)
		return fail(err, errlen, "'%s': missing address before '/'", s);
	if (hlen >= sizeof(host))
		return fail(err, errlen, "'%s': address is too long for IPv4 or IPv6", s);
	memcpy(host, s, hlen);
	host[hlen] = '\0';

	/* A ':' decides the family, so the error can say which one failed. */
	is6 = strchr(host, ':') != NULL;
	if (is6) {
		if (inet_pton(AF_INET6, host, out->addr) != 1)
			return fail(err, errlen, "'%s': '%s' is not a valid IPv6 address", s, host);
	} else {
		if (inet_pton(AF_INET, host, &a4) != 1)
			return fail(err, errlen, "'%s': '%s' is not a valid IPv4 address", s, host);
		memcpy(out->addr, v4mapped_prefix, sizeof(v4mapped_prefix));
		memcpy(out->addr + 12, &a4, 4);
	}

	if (slash == NULL)
		prefix = is6 ? 128 : 32;
	else if ((prefix = parse_prefix(s, slash + 1, is6 ? 128 : 32, is6 ? "IPv6" : "IPv4", err,
					errlen)) < 0) {
		memset(out, 0, sizeof(*out));
		return prefix;
	}
	if (!is6)
		prefix += 96;
	/* As nginx does: 10.1.2.3/8 means 10.0.0.0/8. */
	clear_host_bits(out->addr, (unsigned)prefix);
	out->prefix = (uint8_t)prefix;
	return 0;
}

/*
 * Mapped blocks of /96 or longer are IPv4 blocks and print as such; the
 * rest, /0 included (it covers both families), print as IPv6. The result
 * always carries the prefix, and sf_cidr_parse reads it back unchanged.
 */
char *sf_cidr_format(const struct sf_cidr *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	if (c->prefix >= 96 && memcmp(c->addr, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
		inet_ntop(AF_INET, c->addr + 12, host, sizeof(host));
		snprintf(buf, len, "%s/%u", host, (unsigned)(c->prefix - 96));
	} else {
		inet_ntop(AF_INET6, c->addr, host, sizeof(host));
		snprintf(buf, len, "%s/%u", host, (unsigned)c->prefix);
	}
	return buf;
}

static struct u128 u128_load(const uint8_t b[16])
{
	struct u128 x = { 0, 0 };
	int i;

	for (i = 0; i < 8; i++) {
		x.hi = x.hi << 8 | b[i];
		x.lo = x.lo << 8 | b[8 + i];
	}
	return x;
}

/* -1, 0 or 1 as a is below, equal to or above b. */
static int u128_cmp(struct u128 a, struct u128 b)
{
	if (a.hi != b.hi)
		return a.hi < b.hi ? -1 : 1;
	if (a.lo != b.lo)
		return a.lo < b.lo ? -1 : 1;
	return 0;
}

static int u128_is_max(struct u128 a) { return a.hi == UINT64_MAX && a.lo == UINT64_MAX; }

/* a + 1; never called on the maximum. */
static struct u128 u128_inc(struct u128 a)
{
	a.lo++;
	if (a.lo == 0)
		a.hi++;
	return a;
}

/* Block c as [first, last]; host bits in c are ignored, not trusted. */
static struct interval block_interval(const struct sf_cidr *c)
{
	struct interval iv;
	struct u128 host; /* the host bits: ones below the prefix */
	unsigned p = c->prefix;

	if (p == 0)
		host = (struct u128){ UINT64_MAX, UINT64_MAX };
	else if (p < 64)
		host = (struct u128){ UINT64_MAX >> p, UINT64_MAX };
	else if (p < 128)
		host = (struct u128){ 0, UINT64_MAX >> (p - 64) };
	else
		host = (struct u128){ 0, 0 };
	iv.lo = u128_load(c->addr);
	iv.lo.hi &= ~host.hi;
	iv.lo.lo &= ~host.lo;
	iv.hi.hi = iv.lo.hi | host.hi;
	iv.hi.lo = iv.lo.lo | host.lo;
	return iv;
}

/* By start only: the merge keeps the larger end, whatever the order. */
static int interval_cmp(const void *a, const void *b)
{
	const struct interval *x = a, *y = b;

	return u128_cmp(x->lo, y->lo);
}

/*
 * Merge the sorted intervals v[0..n) in place into disjoint ones that do
 * not touch either (one interval for 10.0.0.0/9 and 10.128.0.0/9), so a
 * lookup needs only the last interval starting at or below the address.
 * Returns the new count.
 */
static size_t merge_intervals(struct interval *v, size_t n)
{
	size_t i, out = 0;

	for (i = 1; i < n; i++) {
		struct interval *cur = &v[out];
		int joins = u128_cmp(v[i].lo, cur->hi) <= 0 ||
			    (!u128_is_max(cur->hi) && u128_cmp(v[i].lo, u128_inc(cur->hi)) == 0);

		if (joins) {
			if (u128_cmp(v[i].hi, cur->hi) > 0)
				cur->hi = v[i].hi;
		} else {
			v[++out] = v[i];
		}
	}
	return n == 0 ? 0 : out + 1;
}

/*
 * Also fails with errno EINVAL for a prefix over 128, which sf_cidr_parse
 * never produces.
 */
struct sf_cidrset *sf_cidrset_new(const struct sf_cidr *blocks, size_t n)
{
	struct sf_cidrset *s;
	struct interval *shrunk;
	size_t i;

	for (i = 0; i < n; i++) {
		if (blocks[i].prefix > 128) {
			errno = EINVAL;
			return NULL;
		}
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if (n == 0)
		return s;
	if ((s->v = calloc(n, sizeof(*s->v))) == NULL) {
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	for (i = 0; i < n; i++)
		s->v[i] = block_interval(&blocks[i]);
	qsort(s->v, n, sizeof(*s->v), interval_cmp);
	s->n = merge_intervals(s->v, n);
	/* Overlapping lists shrink a lot; a failed shrink keeps the old array. */
	if (s->n < n && (shrunk = realloc(s->v, s->n * sizeof(*s->v))) != NULL)
		s->v = shrunk;
	return s;
}

void sf_cidrset_free(struct sf_cidrset *s)
{
	if (s == NULL)
		return;
	free(s->v);
	free(s);
}

/*
 * Binary search for the last interval whose start is at or below the
 * address; the address matches when it is also at or below that end.
 * A NULL set matches nothing.
 */
int sf_cidrset_match(const struct sf_cidrset *s, const struct sockaddr *sa)
{
	uint8_t b[16];
	struct u128 x;
	size_t lo, hi, mid;

	if (s == NULL || sa == NULL || s->n == 0)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		memcpy(b, v4mapped_prefix, sizeof(v4mapped_prefix));
		memcpy(b + 12, &s4->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		memcpy(b, &s6->sin6_addr, 16);
	} else {
		return 0;
	}
	x = u128_load(b);

	/* Invariant: v[0..lo) start at or below x, v[hi..n) above it. */
	lo = 0;
	hi = s->n;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (u128_cmp(s->v[mid].lo, x) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && u128_cmp(x, s->v[lo - 1].hi) <= 0;
}
