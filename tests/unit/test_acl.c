/*
 * acl.h: parsing and formatting CIDR blocks, matching addresses against
 * sets of them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <criterion/criterion.h>

#include "sockfwd/acl.h"
#include "unit.h"

/* ---- helpers ---------------------------------------------------------- */

static struct sf_cidr parse_ok(const char *s)
{
	struct sf_cidr c;
	char err[256] = "";
	int r;

	memset(&c, 0x5a, sizeof(c));
	r = sf_cidr_parse(s, &c, err, sizeof(err));
	cr_assert_eq(r, 0, "sf_cidr_parse(\"%s\") = %d (%s), want 0", s, r, err);
	return c;
}

/*
 * s must be rejected with a message that quotes it; returns the message so
 * callers can look for the problem in it.
 */
static const char *parse_bad(const char *s)
{
	static char err[512];
	struct sf_cidr c;
	int r;

	memset(err, 0, sizeof(err));
	r = sf_cidr_parse(s, &c, err, sizeof(err));
	cr_assert_eq(r, -EINVAL, "sf_cidr_parse(\"%s\") = %d, want -EINVAL", s ? s : "(null)", r);
	cr_assert_neq(err[0], '\0', "sf_cidr_parse(\"%s\"): empty error message", s ? s : "(null)");
	if (s != NULL && *s != '\0')
		cr_assert(strstr(err, s) != NULL, "error \"%s\" should name the input \"%s\"", err,
			  s);
	return err;
}

/* The 16 bytes of an IPv6 address, or of an IPv4 one mapped. */
static void addr_bytes(const char *ip, uint8_t out[16])
{
	struct in_addr a4;

	if (strchr(ip, ':') != NULL) {
		cr_assert_eq(inet_pton(AF_INET6, ip, out), 1, "bad test address %s", ip);
		return;
	}
	cr_assert_eq(inet_pton(AF_INET, ip, &a4), 1, "bad test address %s", ip);
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &a4, 4);
}

static void assert_cidr(const struct sf_cidr *c, const char *ip, unsigned prefix, const char *what)
{
	uint8_t want[16];

	addr_bytes(ip, want);
	cr_assert(memcmp(c->addr, want, 16) == 0, "%s: address differs from %s", what, ip);
	cr_assert_eq(c->prefix, prefix, "%s: prefix %u, want %u", what, c->prefix, prefix);
}

/* A socket address: AF_INET6 when ip has a ':', else AF_INET. */
static struct sockaddr_storage sa_of(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(1234);
		cr_assert_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1, "bad test address %s", ip);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(1234);
		cr_assert_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1, "bad test address %s", ip);
	}
	return ss;
}

static int match(const struct sf_cidrset *s, const char *ip)
{
	struct sockaddr_storage ss = sa_of(ip);

	return sf_cidrset_match(s, (struct sockaddr *)&ss);
}

#define SET(...) set_of((const char *[]){ __VA_ARGS__, NULL })

static struct sf_cidrset *set_of(const char **list)
{
	struct sf_cidr blocks[64];
	struct sf_cidrset *s;
	size_t n = 0;

	for (; *list != NULL; list++) {
		cr_assert_lt(n, 64);
		blocks[n++] = parse_ok(*list);
	}
	s = sf_cidrset_new(blocks, n);
	cr_assert_not_null(s);
	return s;
}

#define MATCHES(s, ip) cr_assert_eq(match((s), (ip)), 1, "%s should match", (ip))
#define MISSES(s, ip)  cr_assert_eq(match((s), (ip)), 0, "%s should not match", (ip))

/* ---- parsing ---------------------------------------------------------- */

Test(cidr_parse, ipv4_block)
{
	struct sf_cidr c = parse_ok("10.0.0.0/8");

	assert_cidr(&c, "::ffff:10.0.0.0", 104, "10.0.0.0/8");
	c = parse_ok("192.168.1.0/24");
	assert_cidr(&c, "192.168.1.0", 120, "192.168.1.0/24");
}

Test(cidr_parse, ipv6_block)
{
	struct sf_cidr c = parse_ok("2001:db8::/32");

	assert_cidr(&c, "2001:db8::", 32, "2001:db8::/32");
	c = parse_ok("2001:DB8:0:1::/64");
	assert_cidr(&c, "2001:db8:0:1::", 64, "2001:DB8:0:1::/64");
}

Test(cidr_parse, bare_addresses)
{
	struct sf_cidr c = parse_ok("10.1.2.3");

	assert_cidr(&c, "10.1.2.3", 128, "10.1.2.3");
	c = parse_ok("::1");
	assert_cidr(&c, "::1", 128, "::1");
	c = parse_ok("::");
	assert_cidr(&c, "::", 128, "::");
}

Test(cidr_parse, prefix_bounds)
{
	struct sf_cidr c = parse_ok("0.0.0.0/0");

	assert_cidr(&c, "::ffff:0.0.0.0", 96, "0.0.0.0/0");
	c = parse_ok("10.1.2.3/32");
	assert_cidr(&c, "10.1.2.3", 128, "10.1.2.3/32");
	c = parse_ok("::/0");
	assert_cidr(&c, "::", 0, "::/0");
	c = parse_ok("2001:db8::1/128");
	assert_cidr(&c, "2001:db8::1", 128, "2001:db8::1/128");
}

Test(cidr_parse, host_bits_cleared)
{
	struct sf_cidr c = parse_ok("10.1.2.3/8");

	assert_cidr(&c, "10.0.0.0", 104, "10.1.2.3/8");
	c = parse_ok("10.1.2.255/31");
	assert_cidr(&c, "10.1.2.254", 127, "10.1.2.255/31");
	c = parse_ok("255.255.255.255/0");
	assert_cidr(&c, "0.0.0.0", 96, "255.255.255.255/0");
	c = parse_ok("192.168.255.255/17");
	assert_cidr(&c, "192.168.128.0", 113, "192.168.255.255/17");
	c = parse_ok("2001:db8:ffff::1/33");
	assert_cidr(&c, "2001:db8:8000::", 33, "2001:db8:ffff::1/33");
	c = parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/0");
	assert_cidr(&c, "::", 0, "all-ones/0");
	c = parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/65");
	assert_cidr(&c, "ffff:ffff:ffff:ffff:8000::", 65, "all-ones/65");
}

/* IPv4 written in IPv6 form is the same block as the IPv4 spelling. */
Test(cidr_parse, mapped_spelling)
{
	struct sf_cidr a = parse_ok("::ffff:10.0.0.0/104");
	struct sf_cidr b = parse_ok("10.0.0.0/8");

	cr_assert(memcmp(&a, &b, sizeof(a)) == 0);
}

Test(cidr_parse, empty)
{
	cr_assert_err_mentions(parse_bad(""), "empty");
	cr_assert_err_mentions(parse_bad(NULL), "empty");
}

Test(cidr_parse, missing_address)
{
	cr_assert_err_mentions(parse_bad("/8"), "missing address");
	cr_assert_err_mentions(parse_bad("/"), "missing address");
}

Test(cidr_parse, missing_prefix)
{
	cr_assert_err_mentions(parse_bad("10.0.0.0/"), "missing prefix");
	cr_assert_err_mentions(parse_bad("2001:db8::/"), "missing prefix");
}

Test(cidr_parse, prefix_out_of_range)
{
	const char *e;

	e = parse_bad("10.0.0.0/33");
	cr_assert_err_mentions(e, "out of range");
	cr_assert_err_mentions(e, "0-32");
	e = parse_bad("::/129");
	cr_assert_err_mentions(e, "out of range");
	cr_assert_err_mentions(e, "0-128");
	/* An IPv4 prefix counts in IPv4 bits, not the mapped ones. */
	cr_assert_err_mentions(parse_bad("10.0.0.0/104"), "out of range");
	/* Huge values must not wrap around into range. */
	cr_assert_err_mentions(parse_bad("10.0.0.0/4294967304"), "out of range");
	cr_assert_err_mentions(parse_bad("::/99999999999999999999999999"), "out of range");
}

Test(cidr_parse, prefix_not_a_number)
{
	cr_assert_err_mentions(parse_bad("10.0.0.0/x"), "decimal");
	cr_assert_err_mentions(parse_bad("10.0.0.0/+8"), "decimal");
	cr_assert_err_mentions(parse_bad("10.0.0.0/-8"), "decimal");
	cr_assert_err_mentions(parse_bad("::/-0"), "decimal");
	cr_assert_err_mentions(parse_bad("10.0.0.0/0x8"), "after the prefix");
	cr_assert_err_mentions(parse_bad("10.0.0.0//8"), "decimal");
}

Test(cidr_parse, trailing_garbage)
{
	cr_assert_err_mentions(parse_bad("10.0.0.0/8x"), "after the prefix");
	cr_assert_err_mentions(parse_bad("10.0.0.0/8/8"), "after the prefix");
	cr_assert_err_mentions(parse_bad("10.0.0.0/8,"), "after the prefix");
	cr_assert_err_mentions(parse_bad("10.0.0.0x/8"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("10.0.0.1x"), "not a valid IPv4");
}

Test(cidr_parse, bad_ipv4)
{
	cr_assert_err_mentions(parse_bad("+10.0.0.0/8"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("-10.0.0.0/8"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("10.0.0/8"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("10.0.0.256"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("1.2.3.4.5/32"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("localhost"), "not a valid IPv4");
	cr_assert_err_mentions(parse_bad("0x0a000000/8"), "not a valid IPv4");
}

Test(cidr_parse, bad_ipv6)
{
	cr_assert_err_mentions(parse_bad("2001:db8::g/32"), "not a valid IPv6");
	cr_assert_err_mentions(parse_bad("2001:db8:::1"), "not a valid IPv6");
	cr_assert_err_mentions(parse_bad("1:2:3:4:5:6:7:8:9"), "not a valid IPv6");
	cr_assert_err_mentions(parse_bad("fe80::1%eth0/64"), "not a valid IPv6");
	cr_assert_err_mentions(parse_bad(":"), "not a valid IPv6");
}

Test(cidr_parse, brackets)
{
	cr_assert_err_mentions(parse_bad("[::1]/128"), "bracket");
	cr_assert_err_mentions(parse_bad("[::1]"), "bracket");
	cr_assert_err_mentions(parse_bad("[2001:db8::]/32"), "bracket");
}

Test(cidr_parse, spaces)
{
	cr_assert_err_mentions(parse_bad(" 10.0.0.0/8"), "whitespace");
	cr_assert_err_mentions(parse_bad("10.0.0.0/8 "), "whitespace");
	cr_assert_err_mentions(parse_bad("10.0.0.0 /8"), "whitespace");
	cr_assert_err_mentions(parse_bad("10.0.0.0/ 8"), "whitespace");
	cr_assert_err_mentions(parse_bad("10.0.0.0/8\n"), "whitespace");
	cr_assert_err_mentions(parse_bad("::1\t"), "whitespace");
}

Test(cidr_parse, overlong_address)
{
	char s[300];

	memset(s, '1', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	cr_assert_err_mentions(parse_bad(s), "too long");
	memcpy(s + 200, "/8", 3);
	cr_assert_err_mentions(parse_bad(s), "too long");
}

/* The message is cut to the buffer and stays terminated; no buffer is fine. */
Test(cidr_parse, small_error_buffer)
{
	struct sf_cidr c;
	char err[8];

	memset(err, 'x', sizeof(err));
	cr_assert_eq(sf_cidr_parse("10.0.0.0/99", &c, err, sizeof(err)), -EINVAL);
	cr_assert_eq(err[sizeof(err) - 1], '\0');
	cr_assert_eq(strlen(err), sizeof(err) - 1);
	cr_assert_eq(sf_cidr_parse("10.0.0.0/99", &c, NULL, 0), -EINVAL);
}

/* ---- formatting ------------------------------------------------------- */

static void format_is(const char *in, const char *want)
{
	struct sf_cidr c = parse_ok(in), back;
	char buf[64], err[256] = "";
	char *r;

	memset(buf, 'x', sizeof(buf));
	r = sf_cidr_format(&c, buf, sizeof(buf));
	cr_assert_eq(r, buf, "sf_cidr_format must return buf");
	cr_assert_str_eq(buf, want, "format(parse(\"%s\")) = \"%s\", want \"%s\"", in, buf, want);
	cr_assert_eq(sf_cidr_parse(buf, &back, err, sizeof(err)), 0, "reparse \"%s\": %s", buf,
		     err);
	cr_assert(memcmp(&back, &c, sizeof(c)) == 0, "\"%s\" did not round-trip", buf);
}

Test(cidr_format, ipv4)
{
	format_is("10.0.0.0/8", "10.0.0.0/8");
	format_is("192.168.1.0/24", "192.168.1.0/24");
	format_is("10.1.2.3", "10.1.2.3/32");
	format_is("10.1.2.3/8", "10.0.0.0/8");
	format_is("0.0.0.0/0", "0.0.0.0/0");
	format_is("255.255.255.255/32", "255.255.255.255/32");
}

Test(cidr_format, ipv6)
{
	format_is("2001:db8::/32", "2001:db8::/32");
	format_is("2001:DB8::1", "2001:db8::1/128");
	format_is("2001:db8:ffff::1/33", "2001:db8:8000::/33");
	format_is("::1", "::1/128");
	format_is("::/0", "::/0");
	format_is("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");
}

/* Mapped blocks print as IPv4 once they lie inside ::ffff:0:0/96. */
Test(cidr_format, mapped)
{
	format_is("::ffff:10.0.0.0/104", "10.0.0.0/8");
	format_is("::ffff:0:0/96", "0.0.0.0/0");
	format_is("::ffff:1.2.3.4", "1.2.3.4/32");
	/* Wider than the IPv4 space: stays IPv6. */
	format_is("::ffff:0:0/95", "::fffe:0:0/95");
}

/* Whatever inet_ntop prints for ::a00:1, it must read back as itself. */
Test(cidr_format, ipv4_compatible_round_trip)
{
	struct sf_cidr c = parse_ok("::a00:1"), back;
	char buf[64];

	sf_cidr_format(&c, buf, sizeof(buf));
	back = parse_ok(buf);
	cr_assert(memcmp(&back, &c, sizeof(c)) == 0, "\"%s\" did not round-trip", buf);
}

/*
 * A hand-made block with host bits set in the ::ffff: part but a prefix
 * under 96 is not an IPv4 block: no negative IPv4 prefix.
 */
Test(cidr_format, short_prefix_on_mapped_bits)
{
	struct sf_cidr c;
	char buf[64];

	addr_bytes("10.0.0.0", c.addr);
	c.prefix = 80;
	sf_cidr_format(&c, buf, sizeof(buf));
	cr_assert(strchr(buf, ':') != NULL, "\"%s\" should be in IPv6 form", buf);
	cr_assert(strstr(buf, "/80") != NULL, "\"%s\" should end in /80", buf);
}

Test(cidr_format, truncates)
{
	struct sf_cidr c = parse_ok("10.0.0.0/8");
	char buf[5];

	memset(buf, 'x', sizeof(buf));
	sf_cidr_format(&c, buf, sizeof(buf));
	cr_assert_str_eq(buf, "10.0");
}

/* ---- a deterministic PRNG (splitmix64) and a reference matcher -------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_bytes(uint8_t *b, size_t n)
{
	while (n-- > 0)
		*b++ = (uint8_t)rng();
}

/* Clear the bits of a after the first prefix ones (the test's own mask). */
static void mask(uint8_t a[16], unsigned prefix)
{
	unsigned bit;

	for (bit = prefix; bit < 128; bit++)
		a[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
}

/* Set the bits of a after the first prefix ones. */
static void fill(uint8_t a[16], unsigned prefix)
{
	unsigned bit;

	for (bit = prefix; bit < 128; bit++)
		a[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
}

/* a += d (d is +1 or -1), wrapping at the ends of the space. */
static void step(uint8_t a[16], int d)
{
	int i;

	for (i = 15; i >= 0; i--) {
		a[i] = (uint8_t)(a[i] + d);
		if (a[i] != (d > 0 ? 0x00 : 0xff))
			break;
	}
}

/* Does a share the first c->prefix bits of c->addr? Whole bytes, then bits. */
static int in_block(const struct sf_cidr *c, const uint8_t a[16])
{
	unsigned whole = c->prefix / 8, rest = c->prefix % 8;
	uint8_t m;

	if (memcmp(a, c->addr, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	m = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & m) == (c->addr[whole] & m);
}

static int brute_match(const struct sf_cidr *b, size_t n, const uint8_t a[16])
{
	size_t i;

	for (i = 0; i < n; i++)
		if (in_block(&b[i], a))
			return 1;
	return 0;
}

static int is_mapped(const uint8_t a[16])
{
	static const uint8_t p[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, p, 12) == 0;
}

/*
 * Match a through the set as AF_INET6 and, when it is IPv4-mapped, as
 * AF_INET too; both must agree with the brute-force answer, returned.
 */
static int check_against_brute(const struct sf_cidrset *s, const struct sf_cidr *b, size_t n,
			       const uint8_t a[16])
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	char txt[INET6_ADDRSTRLEN];
	int want = brute_match(b, n, a), got;

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	memcpy(&s6.sin6_addr, a, 16);
	got = sf_cidrset_match(s, (struct sockaddr *)&s6);
	if (got != want) {
		inet_ntop(AF_INET6, a, txt, sizeof(txt));
		cr_assert_fail("AF_INET6 %s: match %d, brute force %d", txt, got, want);
	}
	if (!is_mapped(a))
		return want;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	memcpy(&s4.sin_addr, a + 12, 4);
	got = sf_cidrset_match(s, (struct sockaddr *)&s4);
	if (got != want) {
		inet_ntop(AF_INET, a + 12, txt, sizeof(txt));
		cr_assert_fail("AF_INET %s: match %d, brute force %d", txt, got, want);
	}
	return want;
}

/* ---- matching --------------------------------------------------------- */

Test(cidrset_match, ipv4_edges)
{
	struct sf_cidrset *s = SET("10.0.0.0/8");

	MISSES(s, "9.255.255.255");
	MATCHES(s, "10.0.0.0");
	MATCHES(s, "10.123.45.67");
	MATCHES(s, "10.255.255.255");
	MISSES(s, "11.0.0.0");
	sf_cidrset_free(s);

	s = SET("192.168.1.128/25");
	MISSES(s, "192.168.1.127");
	MATCHES(s, "192.168.1.128");
	MATCHES(s, "192.168.1.255");
	MISSES(s, "192.168.2.0");
	sf_cidrset_free(s);
}

Test(cidrset_match, ipv6_edges)
{
	struct sf_cidrset *s = SET("2001:db8::/32");

	MISSES(s, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff");
	MATCHES(s, "2001:db8::");
	MATCHES(s, "2001:db8:1234::5");
	MATCHES(s, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
	MISSES(s, "2001:db9::");
	sf_cidrset_free(s);
}

/* Prefixes on either side of the split between the two 64-bit halves. */
Test(cidrset_match, edges_around_64_bits)
{
	struct sf_cidrset *s = SET("2001:db8:0:1::/64");

	MISSES(s, "2001:db8:0:0:ffff:ffff:ffff:ffff");
	MATCHES(s, "2001:db8:0:1::");
	MATCHES(s, "2001:db8:0:1:ffff:ffff:ffff:ffff");
	MISSES(s, "2001:db8:0:2::");
	sf_cidrset_free(s);

	s = SET("2001:db8:0:2::/63");
	MISSES(s, "2001:db8:0:1:ffff:ffff:ffff:ffff");
	MATCHES(s, "2001:db8:0:2::");
	MATCHES(s, "2001:db8:0:3:ffff:ffff:ffff:ffff");
	MISSES(s, "2001:db8:0:4::");
	sf_cidrset_free(s);

	s = SET("2001:db8:0:1:8000::/65");
	MISSES(s, "2001:db8:0:1:7fff:ffff:ffff:ffff");
	MATCHES(s, "2001:db8:0:1:8000::");
	MATCHES(s, "2001:db8:0:1:ffff:ffff:ffff:ffff");
	MISSES(s, "2001:db8:0:2::");
	sf_cidrset_free(s);
}

Test(cidrset_match, single_addresses)
{
	struct sf_cidrset *s = SET("10.1.2.3/32", "2001:db8::7");

	MISSES(s, "10.1.2.2");
	MATCHES(s, "10.1.2.3");
	MISSES(s, "10.1.2.4");
	MISSES(s, "2001:db8::6");
	MATCHES(s, "2001:db8::7");
	MISSES(s, "2001:db8::8");
	sf_cidrset_free(s);
}

/* The lowest and highest addresses of the space, and blocks ending there. */
Test(cidrset_match, ends_of_the_space)
{
	struct sf_cidrset *s = SET("::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128",
				   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");

	MATCHES(s, "::");
	MISSES(s, "::1");
	MISSES(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd");
	MATCHES(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	MATCHES(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	sf_cidrset_free(s);

	s = SET("8000::/1", "ffff::/16");
	MISSES(s, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	MATCHES(s, "8000::");
	MATCHES(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	MISSES(s, "::");
	sf_cidrset_free(s);
}

/* 10.0.0.0/8 is IPv4 only; 2001:db8::/32 IPv6 only, whatever the bits. */
Test(cidrset_match, families_kept_apart)
{
	struct sf_cidrset *s = SET("10.0.0.0/8");

	MISSES(s, "2001:db8::1");
	MISSES(s, "::a00:1");	     /* IPv4-compatible 10.0.0.1, not mapped */
	MISSES(s, "a00::1");	     /* 10.0.0.0 in the top bits */
	MISSES(s, "::ffff:0:a00:1"); /* IPv4-translated, not mapped */
	sf_cidrset_free(s);

	s = SET("2001:db8::/32");
	MISSES(s, "32.1.13.184"); /* 0x20010db8 */
	MISSES(s, "::ffff:32.1.13.184");
	sf_cidrset_free(s);

	s = SET("::/96");
	MISSES(s, "10.0.0.1"); /* ::ffff:0:0/96 is not in ::/96 */
	MATCHES(s, "::10.0.0.1");
	sf_cidrset_free(s);
}

/* A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d. */
Test(cidrset_match, mapped_addresses)
{
	struct sf_cidrset *s = SET("10.0.0.0/8", "192.0.2.1");

	MATCHES(s, "::ffff:10.0.0.0");
	MATCHES(s, "::ffff:10.255.255.255");
	MISSES(s, "::ffff:11.0.0.0");
	MISSES(s, "::ffff:9.255.255.255");
	MATCHES(s, "::ffff:192.0.2.1");
	MISSES(s, "::ffff:192.0.2.2");
	sf_cidrset_free(s);

	/* And an AF_INET client matches blocks written in IPv6 form. */
	s = SET("::ffff:0:0/96");
	MATCHES(s, "0.0.0.0");
	MATCHES(s, "10.1.2.3");
	MATCHES(s, "255.255.255.255");
	MISSES(s, "::");
	MISSES(s, "::1:0:0");
	MISSES(s, "2001:db8::1");
	sf_cidrset_free(s);

	s = SET("::ffff:10.0.0.0/104");
	MATCHES(s, "10.9.9.9");
	MISSES(s, "11.0.0.0");
	sf_cidrset_free(s);
}

Test(cidrset_match, zero_prefix)
{
	struct sf_cidrset *s = SET("::/0");

	MATCHES(s, "0.0.0.0");
	MATCHES(s, "255.255.255.255");
	MATCHES(s, "::");
	MATCHES(s, "::1");
	MATCHES(s, "2001:db8::1");
	MATCHES(s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	sf_cidrset_free(s);

	/* 0.0.0.0/0 is every IPv4 address and nothing else. */
	s = SET("0.0.0.0/0");
	MATCHES(s, "0.0.0.0");
	MATCHES(s, "255.255.255.255");
	MATCHES(s, "::ffff:127.0.0.1");
	MISSES(s, "::");
	MISSES(s, "::1");
	MISSES(s, "2001:db8::1");
	sf_cidrset_free(s);
}

Test(cidrset_match, nested_and_duplicates)
{
	struct sf_cidrset *s = SET("10.1.2.3", "10.1.0.0/16", "10.0.0.0/8", "10.0.0.0/8",
				   "10.1.0.0/16", "10.255.255.255/32");

	MISSES(s, "9.255.255.255");
	MATCHES(s, "10.0.0.0");
	MATCHES(s, "10.1.2.3");
	MATCHES(s, "10.2.0.0");
	MATCHES(s, "10.255.255.255");
	MISSES(s, "11.0.0.0");
	sf_cidrset_free(s);
}

Test(cidrset_match, overlapping_and_adjacent)
{
	/* Two halves touching: one range, no hole at the seam. */
	struct sf_cidrset *s = SET("10.128.0.0/9", "10.0.0.0/9");

	MISSES(s, "9.255.255.255");
	MATCHES(s, "10.127.255.255");
	MATCHES(s, "10.128.0.0");
	MATCHES(s, "10.255.255.255");
	MISSES(s, "11.0.0.0");
	sf_cidrset_free(s);

	/* A one-address hole must stay a hole. */
	s = SET("10.0.0.0/32", "10.0.0.2/31", "10.0.0.4/30");
	MATCHES(s, "10.0.0.0");
	MISSES(s, "10.0.0.1");
	MATCHES(s, "10.0.0.2");
	MATCHES(s, "10.0.0.7");
	MISSES(s, "10.0.0.8");
	sf_cidrset_free(s);

	/* A short block, then one starting inside it and sticking out. */
	s = SET("2001:db8::/48", "2001:db8::/32", "2001:db9::/48", "2001:db8:5::/48");
	MATCHES(s, "2001:db8:ffff::1");
	MATCHES(s, "2001:db9::1");
	MATCHES(s, "2001:db9:0:ffff:ffff:ffff:ffff:ffff");
	MISSES(s, "2001:db9:1::");
	MISSES(s, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff");
	sf_cidrset_free(s);
}

Test(cidrset_match, empty_set)
{
	struct sf_cidrset *s = sf_cidrset_new(NULL, 0);

	cr_assert_not_null(s);
	MISSES(s, "0.0.0.0");
	MISSES(s, "10.0.0.1");
	MISSES(s, "::");
	MISSES(s, "::1");
	sf_cidrset_free(s);
	sf_cidrset_free(NULL);
}

Test(cidrset_match, other_families)
{
	struct sf_cidrset *s = SET("::/0", "0.0.0.0/0");
	struct sockaddr_un un;
	struct sockaddr_storage ss;

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	cr_assert_eq(sf_cidrset_match(s, (struct sockaddr *)&un), 0);
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNSPEC;
	cr_assert_eq(sf_cidrset_match(s, (struct sockaddr *)&ss), 0);
	sf_cidrset_free(s);
}

/* The set keeps its own copy; changing the caller's array changes nothing. */
Test(cidrset_match, blocks_are_copied)
{
	struct sf_cidr b[2] = { parse_ok("10.0.0.0/8"), parse_ok("2001:db8::/32") };
	struct sf_cidrset *s = sf_cidrset_new(b, 2);

	cr_assert_not_null(s);
	b[0] = parse_ok("192.168.0.0/16");
	memset(&b[1], 0, sizeof(b[1]));
	MATCHES(s, "10.0.0.1");
	MATCHES(s, "2001:db8::1");
	MISSES(s, "192.168.0.1");
	MISSES(s, "::");
	sf_cidrset_free(s);
}

/* Blocks built by hand with host bits set still mean their prefix. */
Test(cidrset_match, host_bits_in_hand_made_blocks)
{
	struct sf_cidr b;
	struct sf_cidrset *s;

	addr_bytes("10.1.2.3", b.addr);
	b.prefix = 104;
	s = sf_cidrset_new(&b, 1);
	cr_assert_not_null(s);
	MATCHES(s, "10.0.0.0");
	MATCHES(s, "10.255.255.255");
	MISSES(s, "11.0.0.0");
	MISSES(s, "9.255.255.255");
	sf_cidrset_free(s);
}

Test(cidrset_new, prefix_over_128)
{
	struct sf_cidr b[2] = { parse_ok("10.0.0.0/8") };

	b[1] = b[0];
	b[1].prefix = 129;
	errno = 0;
	cr_assert_null(sf_cidrset_new(b, 2));
	cr_assert_eq(errno, EINVAL);
}

/* ---- against brute force ---------------------------------------------- */

/*
 * Many small sets crowded into 10.0.0.0/24, checked exhaustively over the
 * block and one address on either side: every merge case comes up.
 */
Test(cidrset_random, small_sets_exhaustive)
{
	struct sf_cidr b[24];
	struct sf_cidrset *s;
	uint8_t a[16];
	int round, i, n;

	rng_state = 1;
	for (round = 0; round < 300; round++) {
		n = (int)(rng() % 24);
		for (i = 0; i < n; i++) {
			addr_bytes("10.0.0.0", b[i].addr);
			b[i].addr[15] = (uint8_t)rng();
			b[i].prefix = (uint8_t)(120 + rng() % 9);
			mask(b[i].addr, b[i].prefix);
		}
		s = sf_cidrset_new(b, (size_t)n);
		cr_assert_not_null(s);
		addr_bytes("9.255.255.255", a);
		for (i = 0; i < 258; i++) {
			check_against_brute(s, b, (size_t)n, a);
			step(a, +1);
		}
		sf_cidrset_free(s);
	}
}

/* One random block: IPv4 in 10/8, IPv6 in 2001:db8::/32, or anywhere. */
static void random_block(struct sf_cidr *c)
{
	switch (rng() % 4) {
	case 0:
		addr_bytes("10.0.0.0", c->addr);
		rng_bytes(c->addr + 13, 3);
		c->prefix = (uint8_t)(96 + 20 + rng() % 13);
		break;
	case 1:
		addr_bytes("2001:db8::", c->addr);
		/* Only 2001:db8::/38: blocks overlap and nest. */
		c->addr[4] = (uint8_t)(rng() % 4);
		rng_bytes(c->addr + 5, 11);
		c->prefix = (uint8_t)(40 + rng() % 89);
		break;
	case 2:
		addr_bytes("0.0.0.0", c->addr);
		rng_bytes(c->addr + 12, 4);
		c->prefix = (uint8_t)(96 + 12 + rng() % 21);
		break;
	default:
		rng_bytes(c->addr, 16);
		c->prefix = (uint8_t)(8 + rng() % 121);
		break;
	}
	mask(c->addr, c->prefix);
}

/* A query: an edge of a block (inside or just out), or near the blocks. */
static void random_query(const struct sf_cidr *b, size_t n, uint8_t a[16])
{
	const struct sf_cidr *c = &b[rng() % n];

	switch (rng() % 8) {
	case 0: /* first address */
		memcpy(a, c->addr, 16);
		break;
	case 1: /* one before */
		memcpy(a, c->addr, 16);
		step(a, -1);
		break;
	case 2: /* last address */
		memcpy(a, c->addr, 16);
		fill(a, c->prefix);
		break;
	case 3: /* one after */
		memcpy(a, c->addr, 16);
		fill(a, c->prefix);
		step(a, +1);
		break;
	case 4:
		addr_bytes("10.0.0.0", a);
		rng_bytes(a + 13, 3);
		break;
	case 5:
		addr_bytes("2001:db8::", a);
		a[4] = (uint8_t)(rng() % 4);
		rng_bytes(a + 5, 11);
		break;
	case 6:
		addr_bytes("0.0.0.0", a);
		rng_bytes(a + 12, 4);
		break;
	default:
		rng_bytes(a, 16);
		break;
	}
}

Test(cidrset_random, ten_thousand_blocks)
{
	enum { NBLOCKS = 10000, NQUERIES = 5000 };
	struct sf_cidr *b = calloc(NBLOCKS, sizeof(*b));
	struct sf_cidrset *s;
	uint8_t a[16];
	int i, hits = 0;

	cr_assert_not_null(b);
	rng_state = 20261129;
	for (i = 0; i < NBLOCKS; i++)
		random_block(&b[i]);
	s = sf_cidrset_new(b, NBLOCKS);
	cr_assert_not_null(s);
	for (i = 0; i < NQUERIES; i++) {
		random_query(b, NBLOCKS, a);
		hits += check_against_brute(s, b, NBLOCKS, a);
	}
	/* Both answers must have come up often, or the test proves little. */
	cr_assert_gt(hits, NQUERIES / 5, "only %d of %d queries matched", hits, NQUERIES);
	cr_assert_lt(hits, NQUERIES * 4 / 5, "%d of %d queries matched", hits, NQUERIES);
	sf_cidrset_free(s);
	free(b);
}

/*
 * 100,000 single addresses, every other one of 10.0.0.0 + 2i, in shuffled
 * order: the set builds and tells the even ones from the odd ones.
 */
Test(cidrset_random, hundred_thousand_blocks)
{
	enum { NBLOCKS = 100000 };
	struct sf_cidr *b = calloc(NBLOCKS, sizeof(*b)), t;
	struct sf_cidrset *s;
	char ip[INET_ADDRSTRLEN];
	uint32_t base = 0x0a000000, v;
	size_t i, j;

	cr_assert_not_null(b);
	for (i = 0; i < NBLOCKS; i++) {
		v = htonl(base + 2 * (uint32_t)i);
		addr_bytes("0.0.0.0", b[i].addr);
		memcpy(b[i].addr + 12, &v, 4);
		b[i].prefix = 128;
	}
	rng_state = 7;
	for (i = NBLOCKS - 1; i > 0; i--) {
		j = rng() % (i + 1);
		t = b[i];
		b[i] = b[j];
		b[j] = t;
	}
	s = sf_cidrset_new(b, NBLOCKS);
	cr_assert_not_null(s);
	free(b);

	for (i = 0; i < 2000; i++) {
		uint32_t k = (i < 2 ? (uint32_t)i * (NBLOCKS - 1) : (uint32_t)(rng() % NBLOCKS));

		v = htonl(base + 2 * k);
		inet_ntop(AF_INET, &v, ip, sizeof(ip));
		MATCHES(s, ip);
		v = htonl(base + 2 * k + 1);
		inet_ntop(AF_INET, &v, ip, sizeof(ip));
		MISSES(s, ip);
	}
	MISSES(s, "9.255.255.255");
	v = htonl(base + 2 * NBLOCKS);
	inet_ntop(AF_INET, &v, ip, sizeof(ip));
	MISSES(s, ip);
	MISSES(s, "::a00:0");
	sf_cidrset_free(s);
}
