/*
 * proxy.h: the PROXY protocol encoder and decoder, against HAProxy's
 * doc/proxy-protocol.txt.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sockfwd/proxy.h"
#include "unit.h"

/* The v2 signature, spec section 2.2. */
#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"

/* What a client sends after the header; decode must never count it. */
static const char payload[] = "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";

static struct sockaddr_storage sa_make(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "bad test address %s",
			     ip);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	return ss;
}

/* Encode the pair (ip:port each) and return the length; the header is in out. */
static ssize_t enc(int version, const char *sip, unsigned sport, const char *dip, unsigned dport,
		   uint8_t *out, size_t len)
{
	struct sockaddr_storage s = sa_make(sip, sport), d = sa_make(dip, dport);

	return sf_proxy_encode(version, (struct sockaddr *)&s, (struct sockaddr *)&d, out, len);
}

static void enc_v1_eq(const char *sip, unsigned sport, const char *dip, unsigned dport,
		      const char *want)
{
	uint8_t out[SF_PROXY_ENC_MAX + 1];
	ssize_t n;

	memset(out, 0, sizeof(out));
	n = enc(1, sip, sport, dip, dport, out, SF_PROXY_ENC_MAX);
	cr_assert_eq(n, (ssize_t)strlen(want), "v1 %s -> %s: length %zd, want %zu (got \"%s\")",
		     sip, dip, n, strlen(want), (char *)out);
	cr_assert_str_eq((char *)out, want);
}

static void enc_v2_eq(const char *sip, unsigned sport, const char *dip, unsigned dport,
		      const uint8_t *want, size_t wlen)
{
	uint8_t out[SF_PROXY_ENC_MAX];
	ssize_t n;
	size_t i;

	n = enc(2, sip, sport, dip, dport, out, sizeof(out));
	cr_assert_eq(n, (ssize_t)wlen, "v2 %s -> %s: length %zd, want %zu", sip, dip, n, wlen);
	for (i = 0; i < wlen; i++)
		cr_assert_eq(out[i], want[i], "v2 %s -> %s: byte %zu is %#04x, want %#04x", sip,
			     dip, i, out[i], want[i]);
}

/*
 * Decode exactly n bytes from a heap copy, so that AddressSanitizer
 * catches any read past what was received.
 */
static ssize_t dec_n(const void *buf, size_t n, struct sf_proxy_info *info)
{
	uint8_t *copy = malloc(n ? n : 1);
	ssize_t r;

	cr_assert_not_null(copy);
	memcpy(copy, buf, n);
	r = sf_proxy_decode(copy, n, info);
	free(copy);
	return r;
}

/*
 * Feed hdr (hlen bytes) followed by the client payload one byte at a
 * time: 0 until the header is complete, then exactly hlen however much
 * payload follows. Returns the info of the last decode.
 */
static struct sf_proxy_info feed(const void *hdr, size_t hlen)
{
	uint8_t buf[700];
	struct sf_proxy_info info;
	size_t total = hlen + sizeof(payload) - 1, k;
	ssize_t r;

	cr_assert_leq(total, sizeof(buf));
	memcpy(buf, hdr, hlen);
	memcpy(buf + hlen, payload, sizeof(payload) - 1);
	for (k = 0; k < hlen; k++) {
		r = dec_n(buf, k, &info);
		cr_assert_eq(r, 0, "prefix of %zu/%zu bytes: %zd, want 0 (need more)", k, hlen, r);
	}
	for (k = hlen; k <= total; k++) {
		memset(&info, 0x5a, sizeof(info));
		r = dec_n(buf, k, &info);
		cr_assert_eq(r, (ssize_t)hlen, "%zu bytes (header %zu): %zd", k, hlen, r);
	}
	return info;
}

static struct sf_proxy_info feed_str(const char *line) { return feed(line, strlen(line)); }

/*
 * The first at bytes of buf are where decoding can first tell it is
 * not a header: every shorter prefix needs more, every longer one fails.
 */
static void bad_at(const void *buf, size_t n, size_t at)
{
	struct sf_proxy_info info;
	size_t k;
	ssize_t r;

	cr_assert_leq(at, n);
	for (k = 1; k <= n; k++) {
		r = dec_n(buf, k, &info);
		if (k < at)
			cr_assert_eq(r, 0,
				     "prefix of %zu bytes: %zd, want 0 (rejection due at %zu)", k,
				     r, at);
		else
			cr_assert_eq(r, -EPROTO, "prefix of %zu bytes: %zd, want -EPROTO from %zu",
				     k, r, at);
	}
}

static void bad_str_at(const char *line, size_t at) { bad_at(line, strlen(line), at); }

/* The whole line is refused, wherever that is noticed. */
static void bad_str(const char *line)
{
	struct sf_proxy_info info;
	ssize_t r = dec_n(line, strlen(line), &info);

	cr_assert_eq(r, -EPROTO, "\"%s\": %zd, want -EPROTO", line, r);
}

static void info_addr_eq(const struct sf_sockaddr *a, const char *ip, unsigned port)
{
	struct sockaddr_storage want = sa_make(ip, port);
	char got[SF_ADDRSTRLEN];

	sf_addr_format((const struct sockaddr *)&a->ss, got, sizeof(got));
	cr_assert_eq(a->ss.ss_family, want.ss_family, "%s: family %d, want %d (for %s)", got,
		     a->ss.ss_family, want.ss_family, ip);
	if (want.ss_family == AF_INET) {
		const struct sockaddr_in *g = (const struct sockaddr_in *)&a->ss;
		const struct sockaddr_in *w = (const struct sockaddr_in *)&want;

		cr_assert_eq(a->len, sizeof(struct sockaddr_in));
		cr_assert_eq(g->sin_addr.s_addr, w->sin_addr.s_addr, "%s, want %s", got, ip);
		cr_assert_eq(g->sin_port, w->sin_port, "%s, want port %u", got, port);
	} else {
		const struct sockaddr_in6 *g = (const struct sockaddr_in6 *)&a->ss;
		const struct sockaddr_in6 *w = (const struct sockaddr_in6 *)&want;

		cr_assert_eq(a->len, sizeof(struct sockaddr_in6));
		cr_assert(memcmp(&g->sin6_addr, &w->sin6_addr, 16) == 0, "%s, want %s", got, ip);
		cr_assert_eq(g->sin6_port, w->sin6_port, "%s, want port %u", got, port);
	}
}

static void info_tcp_eq(const struct sf_proxy_info *info, int version, const char *sip,
			unsigned sport, const char *dip, unsigned dport)
{
	cr_assert_eq(info->version, version);
	cr_assert_eq(info->local, 0);
	info_addr_eq(&info->src, sip, sport);
	info_addr_eq(&info->dst, dip, dport);
}

/*
 * Hand-built v2 headers (spec 2.2): signature, ver_cmd, fam, len (big
 * endian), then the address block.
 */

/* TCP4 192.168.0.1:56324 -> 192.168.0.11:443 */
static const uint8_t v2_tcp4[] = {
	/* sig */ 0x0D,
	0x0A,
	0x0D,
	0x0A,
	0x00,
	0x0D,
	0x0A,
	0x51,
	0x55,
	0x49,
	0x54,
	0x0A,
	/* ver 2, cmd PROXY */ 0x21,
	/* AF_INET, STREAM */ 0x11,
	/* len 12 */ 0x00,
	0x0C,
	/* src_addr 192.168.0.1 */ 0xC0,
	0xA8,
	0x00,
	0x01,
	/* dst_addr 192.168.0.11 */ 0xC0,
	0xA8,
	0x00,
	0x0B,
	/* src_port 56324 */ 0xDC,
	0x04,
	/* dst_port 443 */ 0x01,
	0xBB
};

/* TCP6 [2001:db8::1]:56324 -> [2001:db8::11]:443 */
static const uint8_t v2_tcp6[] = {
	/* sig */ 0x0D,
	0x0A,
	0x0D,
	0x0A,
	0x00,
	0x0D,
	0x0A,
	0x51,
	0x55,
	0x49,
	0x54,
	0x0A,
	/* ver 2, cmd PROXY */ 0x21,
	/* AF_INET6, STREAM */ 0x21,
	/* len 36 */ 0x00,
	0x24,
	/* src_addr 2001:db8::1 */ 0x20,
	0x01,
	0x0D,
	0xB8,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0x01,
	/* dst_addr 2001:db8::11 */ 0x20,
	0x01,
	0x0D,
	0xB8,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0x11,
	/* src_port 56324 */ 0xDC,
	0x04,
	/* dst_port 443 */ 0x01,
	0xBB
};

/* TCP6 [::ffff:192.168.0.1]:56324 -> [2001:db8::11]:443 (a mixed pair) */
static const uint8_t v2_mixed[] = {
	/* sig */ 0x0D,
	0x0A,
	0x0D,
	0x0A,
	0x00,
	0x0D,
	0x0A,
	0x51,
	0x55,
	0x49,
	0x54,
	0x0A,
	/* ver 2, cmd PROXY */ 0x21,
	/* AF_INET6, STREAM */ 0x21,
	/* len 36 */ 0x00,
	0x24,
	/* src_addr ::ffff:192.168.0.1 */ 0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0xFF,
	0xFF,
	0xC0,
	0xA8,
	0x00,
	0x01,
	/* dst_addr 2001:db8::11 */ 0x20,
	0x01,
	0x0D,
	0xB8,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0,
	0x11,
	/* src_port 56324 */ 0xDC,
	0x04,
	/* dst_port 443 */ 0x01,
	0xBB
};

/* The spec's example line, section 2.1. */
#define SPEC_TCP4 "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
#define FFFF6	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

Test(proxy_encode, v1_spec_example)
{
	enc_v1_eq("192.168.0.1", 56324, "192.168.0.11", 443, SPEC_TCP4);
}

/* The spec's longest TCP4 and TCP6 lines (56 and 104 bytes). */
Test(proxy_encode, v1_spec_longest_lines)
{
	enc_v1_eq("255.255.255.255", 65535, "255.255.255.255", 65535,
		  "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
	enc_v1_eq(FFFF6, 65535, FFFF6, 65535, "PROXY TCP6 " FFFF6 " " FFFF6 " 65535 65535\r\n");
	cr_assert_eq(strlen("PROXY TCP6 " FFFF6 " " FFFF6 " 65535 65535\r\n"), 104);
}

Test(proxy_encode, v1_tcp6)
{
	enc_v1_eq("2001:db8::1", 56324, "2001:db8::11", 443,
		  "PROXY TCP6 2001:db8::1 2001:db8::11 56324 443\r\n");
	enc_v1_eq("::1", 0, "::1", 1, "PROXY TCP6 ::1 ::1 0 1\r\n");
}

Test(proxy_encode, v2_bytes)
{
	enc_v2_eq("192.168.0.1", 56324, "192.168.0.11", 443, v2_tcp4, sizeof(v2_tcp4));
	enc_v2_eq("2001:db8::1", 56324, "2001:db8::11", 443, v2_tcp6, sizeof(v2_tcp6));
}

/* A mixed pair has one family in the header: IPv6, the IPv4 end mapped. */
Test(proxy_encode, mixed_families_as_ipv6)
{
	enc_v1_eq("192.168.0.1", 56324, "2001:db8::11", 443,
		  "PROXY TCP6 ::ffff:192.168.0.1 2001:db8::11 56324 443\r\n");
	enc_v1_eq("2001:db8::11", 443, "192.168.0.1", 56324,
		  "PROXY TCP6 2001:db8::11 ::ffff:192.168.0.1 443 56324\r\n");
	enc_v2_eq("192.168.0.1", 56324, "2001:db8::11", 443, v2_mixed, sizeof(v2_mixed));
	/* a mapped end next to a real IPv6 one stays mapped */
	enc_v2_eq("::ffff:192.168.0.1", 56324, "2001:db8::11", 443, v2_mixed, sizeof(v2_mixed));
}

/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: sent as IPv4. */
Test(proxy_encode, mapped_pair_as_ipv4)
{
	enc_v1_eq("::ffff:192.168.0.1", 56324, "::ffff:192.168.0.11", 443, SPEC_TCP4);
	enc_v2_eq("::ffff:192.168.0.1", 56324, "::ffff:192.168.0.11", 443, v2_tcp4,
		  sizeof(v2_tcp4));
	enc_v1_eq("192.168.0.1", 56324, "::ffff:192.168.0.11", 443, SPEC_TCP4);
	enc_v2_eq("::ffff:192.168.0.1", 56324, "192.168.0.11", 443, v2_tcp4, sizeof(v2_tcp4));
}

Test(proxy_encode, einval)
{
	struct sockaddr_storage s = sa_make("192.168.0.1", 1), d = sa_make("192.168.0.11", 2);
	struct sockaddr_storage un;
	uint8_t out[SF_PROXY_ENC_MAX];

	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	cr_assert_eq(
		sf_proxy_encode(0, (struct sockaddr *)&s, (struct sockaddr *)&d, out, sizeof(out)),
		-EINVAL);
	cr_assert_eq(
		sf_proxy_encode(3, (struct sockaddr *)&s, (struct sockaddr *)&d, out, sizeof(out)),
		-EINVAL);
	cr_assert_eq(
		sf_proxy_encode(1, (struct sockaddr *)&un, (struct sockaddr *)&d, out, sizeof(out)),
		-EINVAL);
	cr_assert_eq(
		sf_proxy_encode(2, (struct sockaddr *)&s, (struct sockaddr *)&un, out, sizeof(out)),
		-EINVAL);
	cr_assert_eq(sf_proxy_encode(2, NULL, (struct sockaddr *)&d, out, sizeof(out)), -EINVAL);
	cr_assert_eq(sf_proxy_encode(1, (struct sockaddr *)&s, NULL, out, sizeof(out)), -EINVAL);
}

/* One byte short is -ENOSPC and writes nothing; the exact size works. */
Test(proxy_encode, enospc)
{
	uint8_t out[SF_PROXY_ENC_MAX];
	size_t i;
	int v;

	for (v = 1; v <= 2; v++) {
		size_t want = v == 1 ? strlen(SPEC_TCP4) : sizeof(v2_tcp4);

		memset(out, 0xAA, sizeof(out));
		cr_assert_eq(enc(v, "192.168.0.1", 56324, "192.168.0.11", 443, out, want - 1),
			     -ENOSPC, "v%d", v);
		cr_assert_eq(enc(v, "192.168.0.1", 56324, "192.168.0.11", 443, out, 0), -ENOSPC);
		for (i = 0; i < sizeof(out); i++)
			cr_assert_eq(out[i], 0xAA, "v%d: byte %zu written on -ENOSPC", v, i);
		cr_assert_eq(enc(v, "192.168.0.1", 56324, "192.168.0.11", 443, out, want),
			     (ssize_t)want, "v%d", v);
	}
	memset(out, 0, sizeof(out));
	cr_assert_eq(enc(1, FFFF6, 65535, FFFF6, 65535, out, 103), -ENOSPC);
	cr_assert_eq(enc(1, FFFF6, 65535, FFFF6, 65535, out, 104), 104);
}

/* Encode, then decode what was written (with payload after it). */
static void round_trip(const char *sip, unsigned sport, const char *dip, unsigned dport,
		       const char *wsip, const char *wdip)
{
	uint8_t hdr[SF_PROXY_ENC_MAX];
	struct sf_proxy_info info;
	ssize_t n;
	int v;

	for (v = 1; v <= 2; v++) {
		n = enc(v, sip, sport, dip, dport, hdr, sizeof(hdr));
		cr_assert_gt(n, 0, "v%d %s -> %s: %zd", v, sip, dip, n);
		info = feed(hdr, (size_t)n);
		info_tcp_eq(&info, v, wsip, sport, wdip, dport);
	}
}

Test(proxy_round_trip, ipv4)
{
	round_trip("192.168.0.1", 56324, "192.168.0.11", 443, "192.168.0.1", "192.168.0.11");
	round_trip("0.0.0.0", 0, "255.255.255.255", 65535, "0.0.0.0", "255.255.255.255");
	round_trip("10.0.0.1", 1, "127.0.0.1", 10, "10.0.0.1", "127.0.0.1");
}

Test(proxy_round_trip, ipv6)
{
	round_trip("2001:db8::1", 56324, "2001:db8::11", 443, "2001:db8::1", "2001:db8::11");
	round_trip(FFFF6, 65535, "::", 0, FFFF6, "::");
	round_trip("fe80::1:2:3:4", 8080, "::1", 80, "fe80::1:2:3:4", "::1");
}

Test(proxy_round_trip, mapped_pair_decodes_as_ipv4)
{
	round_trip("::ffff:192.168.0.1", 56324, "::ffff:192.168.0.11", 443, "192.168.0.1",
		   "192.168.0.11");
}

Test(proxy_round_trip, mixed_decodes_as_mapped_ipv6)
{
	round_trip("192.168.0.1", 56324, "2001:db8::11", 443, "::ffff:192.168.0.1", "2001:db8::11");
	round_trip("::1", 1, "127.0.0.1", 2, "::1", "::ffff:127.0.0.1");
}

Test(proxy_decode, v1_spec_example_byte_by_byte)
{
	struct sf_proxy_info info = feed_str(SPEC_TCP4);

	info_tcp_eq(&info, 1, "192.168.0.1", 56324, "192.168.0.11", 443);
}

Test(proxy_decode, v1_tcp6_forms)
{
	struct sf_proxy_info info;

	info = feed_str("PROXY TCP6 " FFFF6 " " FFFF6 " 65535 65535\r\n");
	info_tcp_eq(&info, 1, FFFF6, 65535, FFFF6, 65535);
	/* hex digits in either case, and the embedded IPv4 form */
	info = feed_str("PROXY TCP6 2001:DB8::A ::ffff:10.0.0.1 0 65535\r\n");
	info_tcp_eq(&info, 1, "2001:db8::a", 0, "::ffff:10.0.0.1", 65535);
}

Test(proxy_decode, v1_unknown)
{
	/* the spec's worst case: 107 bytes with the CRLF */
	const char *longest = "PROXY UNKNOWN " FFFF6 " " FFFF6 " 65535 65535\r\n";
	struct sf_proxy_info info;

	cr_assert_eq(strlen(longest), SF_PROXY_V1_MAX);
	info = feed_str("PROXY UNKNOWN\r\n");
	cr_assert_eq(info.version, 1);
	cr_assert_eq(info.local, 1);
	info = feed_str(longest);
	cr_assert_eq(info.local, 1);
	info = feed_str("PROXY UNKNOWN anything at all, even ; and \"quotes\"\r\n");
	cr_assert_eq(info.local, 1);
}

Test(proxy_decode, v1_length_limit)
{
	char line[200];
	size_t n;

	/* "PROXY UNKNOWN " then padding: no CRLF in 107 bytes */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	bad_at(line, 120, SF_PROXY_V1_MAX);

	/* 108 bytes with CRLF at the end: too long, refused at 107 */
	n = 108;
	memcpy(line + n - 2, "\r\n", 2);
	bad_at(line, n, SF_PROXY_V1_MAX);

	/* 107 with CRLF: the longest accepted */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + 105, "\r\n", 2);
	feed(line, 107);

	/* a TCP6 line made 108 long by an address in the longest text form */
	bad_str("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
		"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 1 2\r\n");
}

Test(proxy_decode, v1_bad_start)
{
	bad_str_at("proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 1);
	bad_str_at("GET / HTTP/1.1\r\n", 1);
	bad_str_at("PROXy TCP4", 5);
	bad_str_at("PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", 7);
	bad_str_at("PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", 7);
	bad_str_at("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", 10);
	bad_str_at("PROXY TCP4\r\n", 11);
	bad_str_at("PROXY UNKNOWNX\r\n", 14);
	bad_str_at("PROXY\r\n", 6);
}

Test(proxy_decode, v1_bad_line_end)
{
	bad_str_at("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", 46);
	bad_str_at("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX", 47);
	bad_str_at("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n", 46);
	bad_str_at("PROXY UNKNOWN a\nb\r\n", 16);
	bad_str_at("PROXY UNKNOWN a\rb\r\n", 17);
	bad_str_at("PROXY UNKNOWN\n", 14);
}

Test(proxy_decode, v1_bad_spaces)
{
	bad_str_at("PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n", 12);
	bad_str_at("PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n", 24);
	bad_str_at("PROXY TCP4 192.168.0.1 192.168.0.11  56324 443\r\n", 37);
	bad_str_at("PROXY TCP4 192.168.0.1 192.168.0.11 56324  443\r\n", 43);
	bad_str_at("PROXY TCP4 192.168.0.1\t192.168.0.11 56324 443\r\n", 23);
	bad_str_at("PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n", 42);
}

Test(proxy_decode, v1_bad_ipv4)
{
	/* refused at the byte that cannot belong to a dotted quad */
	bad_str_at("PROXY TCP4 256.1.1.1 1.1.1.1 1 2\r\n", 14);
	bad_str_at("PROXY TCP4 192.168.01.1 1.1.1.1 1 2\r\n", 21);
	bad_str_at("PROXY TCP4 1.2.3.4.5 1.1.1.1 1 2\r\n", 19);
	bad_str_at("PROXY TCP4 1..3.4 1.1.1.1 1 2\r\n", 14);
	bad_str_at("PROXY TCP4 .1.2.3 1.1.1.1 1 2\r\n", 12);
	bad_str_at("PROXY TCP4 1234.1.1.1 1.1.1.1 1 2\r\n", 15);
	/* refused at the space, where the quad turns out short */
	bad_str_at("PROXY TCP4 192.168.0 1.1.1.1 1 2\r\n", 21);
	bad_str_at("PROXY TCP4 1.2.3. 1.1.1.1 1 2\r\n", 18);
	bad_str_at("PROXY TCP4 1.1.1.1 10.0.0 1 2\r\n", 26);
	bad_str_at("PROXY TCP4 1.1.1.1 0x01.1.1.1 1 2\r\n", 21);
}

Test(proxy_decode, v1_wrong_family)
{
	/* an IPv6 address in a TCP4 line: "2001" is no octet, ":" no IPv4 */
	bad_str_at("PROXY TCP4 2001:db8::1 2001:db8::11 56324 443\r\n", 15);
	bad_str_at("PROXY TCP4 192.168.0.1 ::1 1 2\r\n", 24);
	/* an IPv4 address in a TCP6 line: refused at its end */
	bad_str_at("PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n", 23);
	bad_str_at("PROXY TCP6 ::1 192.168.0.11 56324 443\r\n", 28);
	bad_str_at("PROXY TCP6 2001:db8:::1 ::1 1 2\r\n", 24);
	bad_str_at("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 29);
	bad_str_at("PROXY TCP6 2001:db8::g ::1 1 2\r\n", 22);
	bad_str_at("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 19);
}

Test(proxy_decode, v1_bad_ports)
{
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 65536 1\r\n", 32);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 1 99999\r\n", 34);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 +443 1\r\n", 28);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 -1 1\r\n", 28);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 0443 1\r\n", 29);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 1 00\r\n", 31);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 100000 1\r\n", 33);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 1 0x1\r\n", 31);
	bad_str_at("PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n", 31);
}

Test(proxy_decode, v1_port_bounds)
{
	struct sf_proxy_info info = feed_str("PROXY TCP4 0.0.0.0 1.2.3.4 0 65535\r\n");

	info_tcp_eq(&info, 1, "0.0.0.0", 0, "1.2.3.4", 65535);
}

Test(proxy_decode, v2_byte_by_byte)
{
	struct sf_proxy_info info;

	info = feed(v2_tcp4, sizeof(v2_tcp4));
	info_tcp_eq(&info, 2, "192.168.0.1", 56324, "192.168.0.11", 443);
	info = feed(v2_tcp6, sizeof(v2_tcp6));
	info_tcp_eq(&info, 2, "2001:db8::1", 56324, "2001:db8::11", 443);
}

Test(proxy_decode, v2_local)
{
	/* LOCAL, UNSPEC, no address: the sender's own health check */
	static const uint8_t bare[] = SIG "\x20\x00\x00\x00";
	/* LOCAL with an address block the receiver must skip and ignore */
	uint8_t with[sizeof(v2_tcp4)];
	/* LOCAL ignores the family byte, even one PROXY could not carry */
	static const uint8_t odd[] = SIG "\x20\xFF\x00\x02"
					 "ab";
	struct sf_proxy_info info;

	info = feed(bare, sizeof(bare) - 1);
	cr_assert_eq(info.version, 2);
	cr_assert_eq(info.local, 1);
	memcpy(with, v2_tcp4, sizeof(with));
	with[12] = 0x20;
	info = feed(with, sizeof(with));
	cr_assert_eq(info.local, 1);
	info = feed(odd, sizeof(odd) - 1);
	cr_assert_eq(info.local, 1);
}

/* PROXY with a family we do not forward: valid, keep the real address. */
Test(proxy_decode, v2_unspec_udp_unix)
{
	static const uint8_t unspec[] = SIG "\x21\x00\x00\x00";
	uint8_t udp4[sizeof(v2_tcp4)], udp6[sizeof(v2_tcp6)];
	uint8_t unx[16 + 216];
	struct sf_proxy_info info;

	info = feed(unspec, sizeof(unspec) - 1);
	cr_assert_eq(info.local, 1);
	cr_assert_eq(info.version, 2);

	memcpy(udp4, v2_tcp4, sizeof(udp4));
	udp4[13] = 0x12;
	info = feed(udp4, sizeof(udp4));
	cr_assert_eq(info.local, 1);

	memcpy(udp6, v2_tcp6, sizeof(udp6));
	udp6[13] = 0x22;
	info = feed(udp6, sizeof(udp6));
	cr_assert_eq(info.local, 1);

	memset(unx, 'u', sizeof(unx));
	memcpy(unx, SIG "\x21\x31\x00\xD8", 16); /* UNIX stream, len 216 */
	info = feed(unx, sizeof(unx));
	cr_assert_eq(info.local, 1);
	unx[13] = 0x32; /* UNIX datagram */
	info = feed(unx, sizeof(unx));
	cr_assert_eq(info.local, 1);
}

Test(proxy_decode, v2_tlvs_skipped)
{
	uint8_t hdr[sizeof(v2_tcp4) + 9];
	struct sf_proxy_info info;

	memcpy(hdr, v2_tcp4, sizeof(v2_tcp4));
	/* ALPN "h2", then an empty NOOP and a one-byte custom type */
	memcpy(hdr + sizeof(v2_tcp4), "\x01\x00\x02h2\x04\x00\x00", 8);
	hdr[15] = 12 + 8;
	info = feed(hdr, 16 + 20);
	info_tcp_eq(&info, 2, "192.168.0.1", 56324, "192.168.0.11", 443);

	memcpy(hdr + sizeof(v2_tcp4),
	       "\xE0\x00\x01X\x04\x00\x02"
	       "ab",
	       9);
	hdr[15] = 12 + 9;
	info = feed(hdr, 16 + 21);
	info_tcp_eq(&info, 2, "192.168.0.1", 56324, "192.168.0.11", 443);
}

Test(proxy_decode, v2_bad_tlvs)
{
	uint8_t hdr[sizeof(v2_tcp4) + 5];

	/* a TLV whose length runs past the header */
	memcpy(hdr, v2_tcp4, sizeof(v2_tcp4));
	memcpy(hdr + sizeof(v2_tcp4), "\x01\x00\x03h2", 5);
	hdr[15] = 12 + 5;
	bad_at(hdr, sizeof(hdr), sizeof(hdr));
	/* two bytes left: not even a TLV header */
	memcpy(hdr + sizeof(v2_tcp4), "\x04\x00", 2);
	hdr[15] = 12 + 2;
	bad_at(hdr, sizeof(v2_tcp4) + 2, sizeof(v2_tcp4) + 2);
}

/* The biggest header taken: SF_PROXY_V2_MAX bytes; one more is refused. */
Test(proxy_decode, v2_max_length)
{
	uint8_t hdr[SF_PROXY_V2_MAX + 1];
	size_t tlv = SF_PROXY_V2_MAX - sizeof(v2_tcp4) - 3;
	struct sf_proxy_info info;

	memset(hdr, 'z', sizeof(hdr));
	memcpy(hdr, v2_tcp4, sizeof(v2_tcp4));
	hdr[14] = (SF_PROXY_V2_MAX - 16) >> 8;
	hdr[15] = (SF_PROXY_V2_MAX - 16) & 0xFF;
	hdr[sizeof(v2_tcp4)] = 0xE0;
	hdr[sizeof(v2_tcp4) + 1] = tlv >> 8;
	hdr[sizeof(v2_tcp4) + 2] = tlv & 0xFF;
	cr_assert_eq(dec_n(hdr, 16, &info), 0);
	cr_assert_eq(dec_n(hdr, SF_PROXY_V2_MAX - 1, &info), 0);
	cr_assert_eq(dec_n(hdr, SF_PROXY_V2_MAX, &info), SF_PROXY_V2_MAX);
	info_tcp_eq(&info, 2, "192.168.0.1", 56324, "192.168.0.11", 443);

	/* one byte longer: refused as soon as the length field is complete */
	hdr[15]++;
	hdr[sizeof(v2_tcp4) + 2]++;
	bad_at(hdr, sizeof(hdr), 16);
	/* and the largest length the field can hold */
	hdr[14] = hdr[15] = 0xFF;
	bad_at(hdr, 16, 16);
}

Test(proxy_decode, v2_bad_signature)
{
	uint8_t hdr[sizeof(v2_tcp4)];
	size_t i;

	/* any signature byte wrong: refused at that byte */
	for (i = 1; i < 12; i++) {
		memcpy(hdr, v2_tcp4, sizeof(hdr));
		hdr[i] ^= 0x40;
		bad_at(hdr, sizeof(hdr), i + 1);
	}
	/* neither 'P' nor CR first: refused on the first byte */
	bad_at("\x16\x03\x01", 3, 1);
	bad_at("\x00", 1, 1);
	bad_at("\x0A\x0D", 2, 1);
}

Test(proxy_decode, v2_bad_version_command)
{
	static const uint8_t bad[] = { 0x11, 0x31, 0x01, 0xF1, 0x10, 0x22, 0x2F, 0x23, 0x12 };
	uint8_t hdr[sizeof(v2_tcp4)];
	size_t i;

	for (i = 0; i < sizeof(bad); i++) {
		memcpy(hdr, v2_tcp4, sizeof(hdr));
		hdr[12] = bad[i];
		bad_at(hdr, sizeof(hdr), 13);
	}
}

Test(proxy_decode, v2_bad_family)
{
	static const uint8_t bad[] = { 0x41, 0x13, 0xF1, 0x1F, 0x03, 0x40 };
	uint8_t hdr[sizeof(v2_tcp4)];
	size_t i;

	for (i = 0; i < sizeof(bad); i++) {
		memcpy(hdr, v2_tcp4, sizeof(hdr));
		hdr[13] = bad[i];
		bad_at(hdr, sizeof(hdr), 14);
	}
}

/* A length too short for the family's address block: refused at 16 bytes. */
Test(proxy_decode, v2_short_length)
{
	uint8_t hdr[16 + 216];

	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, v2_tcp4, sizeof(v2_tcp4));
	hdr[15] = 11;
	bad_at(hdr, 16 + 11, 16);
	hdr[15] = 0;
	bad_at(hdr, 16, 16);
	memcpy(hdr, v2_tcp6, sizeof(v2_tcp6));
	hdr[15] = 12;
	bad_at(hdr, 16 + 12, 16);
	hdr[15] = 35;
	bad_at(hdr, 16 + 35, 16);
	hdr[13] = 0x22; /* UDP6 too */
	bad_at(hdr, 16 + 35, 16);
	hdr[13] = 0x31; /* UNIX stream */
	hdr[15] = 215;
	bad_at(hdr, 16 + 215, 16);
}

/* Decode writes *out only when it returns a header. */
Test(proxy_decode, out_untouched_unless_done)
{
	struct sf_proxy_info info, before;

	memset(&info, 0x5a, sizeof(info));
	before = info;
	cr_assert_eq(sf_proxy_decode(SPEC_TCP4, 20, &info), 0);
	cr_assert_eq(sf_proxy_decode("PROXY TCP9", 10, &info), -EPROTO);
	cr_assert_eq(sf_proxy_decode(v2_tcp4, 20, &info), 0);
	cr_assert_eq(sf_proxy_decode("", 0, &info), 0);
	cr_assert(memcmp(&info, &before, sizeof(info)) == 0);
}
