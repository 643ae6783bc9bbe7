/*
 * addr.h: parsing "host:port", resolving and formatting.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sockfwd/addr.h"
#include "unit.h"

static void parse_ok(const char *s, const char *host, unsigned port)
{
	struct sf_hostport hp;
	char err[256] = "";
	int r;

	memset(&hp, 0x5a, sizeof(hp));
	r = sf_addr_parse(s, &hp, err, sizeof(err));
	cr_assert_eq(r, 0, "sf_addr_parse(\"%s\") = %d (%s), want 0", s, r, err);
	cr_assert_str_eq(hp.host, host, "sf_addr_parse(\"%s\"): host \"%s\", want \"%s\"", s,
			 hp.host, host);
	cr_assert_eq(hp.port, port, "sf_addr_parse(\"%s\"): port %u, want %u", s, hp.port, port);
}

/* Returns the error message so callers can look for a keyword in it. */
static const char *parse_bad(const char *s)
{
	static char err[256];
	struct sf_hostport hp;
	int r;

	memset(err, 0, sizeof(err));
	r = sf_addr_parse(s, &hp, err, sizeof(err));
	cr_assert_eq(r, -EINVAL, "sf_addr_parse(\"%s\") = %d, want -EINVAL", s, r);
	cr_assert_neq(err[0], '\0', "sf_addr_parse(\"%s\"): empty error message", s);
	return err;
}

Test(addr_parse, ipv4) { parse_ok("127.0.0.1:80", "127.0.0.1", 80); }

Test(addr_parse, hostname)
{
	parse_ok("localhost:8080", "localhost", 8080);
	parse_ok("host.example:65535", "host.example", 65535);
}

Test(addr_parse, empty_host) { parse_ok(":9000", "", 9000); }

Test(addr_parse, ipv6_bracketed)
{
	parse_ok("[::1]:443", "::1", 443);
	parse_ok("[2001:db8::1]:1", "2001:db8::1", 1);
}

Test(addr_parse, port_bounds)
{
	parse_ok("h:1", "h", 1);
	parse_ok("h:65535", "h", 65535);
}

Test(addr_parse, host_max_length)
{
	char s[SF_HOST_MAX + 16];

	/* 255 characters fit in host[256] with the NUL. */
	memset(s, 'a', SF_HOST_MAX - 1);
	strcpy(s + SF_HOST_MAX - 1, ":80");
	s[SF_HOST_MAX - 1 - 4] = '.'; /* keep it looking like a name */
	{
		struct sf_hostport hp;
		char err[256] = "";

		cr_assert_eq(sf_addr_parse(s, &hp, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(strlen(hp.host), SF_HOST_MAX - 1);
		cr_assert_eq(hp.port, 80);
	}
}

/* Malformed input, and a word the message should contain (NULL: any). */
static const struct {
	const char *in, *word;
} malformed[] = {
	{ "", NULL },
	{ "80", "port" },
	{ "host", "port" },
	{ "host:", "port" },
	{ ":", "port" },
	{ "[::1]", "port" },
	{ "[::1]:", "port" },
	{ "[::1", "]" },
	{ "[]:80", NULL },
	{ "[1.2.3.4]:80", "bracket" },
	{ "[::1]x:80", NULL },
	{ "host:80:90", NULL },
	{ "ho st:80", NULL },
	{ "host:0", "port" },
	{ "host:65536", "port" },
	{ "host:-1", "port" },
	{ "host:+80", "port" },
	{ "host:80x", "port" },
	{ "host:0x50", "port" },
	{ "host:99999999999999999999", "port" },
	{ "host: 80", "port" },
	{ "host:8 0", "port" },
};

Test(addr_parse, malformed)
{
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		const char *err = parse_bad(malformed[i].in);

		if (malformed[i].word != NULL)
			cr_assert(err_mentions(err, malformed[i].word, (const char *)NULL),
				  "sf_addr_parse(\"%s\"): message \"%s\" should mention \"%s\"",
				  malformed[i].in, err, malformed[i].word);
	}
}

Test(addr_parse, unbracketed_ipv6_mentions_brackets)
{
	const char *err = parse_bad("::1:80");

	cr_assert_err_mentions(err, "bracket", "[");
	err = parse_bad("2001:db8::1:443");
	cr_assert_err_mentions(err, "bracket", "[");
}

Test(addr_parse, host_too_long)
{
	char s[SF_HOST_MAX + 16];
	const char *err;

	memset(s, 'a', SF_HOST_MAX);
	strcpy(s + SF_HOST_MAX, ":80");
	err = parse_bad(s);
	cr_assert_err_mentions(err, "long", "host");
}

Test(addr_parse, error_fits_small_buffer)
{
	struct sf_hostport hp;
	char err[9];

	memset(err, 'X', sizeof(err));
	cr_assert_eq(sf_addr_parse("host:65536", &hp, err, 8), -EINVAL);
	cr_assert_eq(err[8], 'X', "wrote past errlen");
	cr_assert_lt(strnlen(err, 8), 8, "message not NUL-terminated within errlen");
}

Test(addr_resolve, ipv4_literal)
{
	struct sf_hostport hp = { .host = "127.0.0.1", .port = 80 };
	struct sf_addrlist out;
	char err[256] = "";
	const struct sockaddr_in *sin;

	cr_assert_eq(sf_addr_resolve(&hp, 0, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(out.n, 1);
	cr_assert_eq(out.a[0].ss.ss_family, AF_INET);
	cr_assert_eq(out.a[0].len, sizeof(struct sockaddr_in));
	sin = (const struct sockaddr_in *)&out.a[0].ss;
	cr_assert_eq(ntohs(sin->sin_port), 80);
	cr_assert_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
}

Test(addr_resolve, ipv6_literal)
{
	struct sf_hostport hp = { .host = "::1", .port = 443 };
	struct sf_addrlist out;
	char err[256] = "";
	const struct sockaddr_in6 *sin6;

	cr_assert_eq(sf_addr_resolve(&hp, 0, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(out.n, 1);
	cr_assert_eq(out.a[0].ss.ss_family, AF_INET6);
	cr_assert_eq(out.a[0].len, sizeof(struct sockaddr_in6));
	sin6 = (const struct sockaddr_in6 *)&out.a[0].ss;
	cr_assert_eq(ntohs(sin6->sin6_port), 443);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
}

Test(addr_resolve, localhost_every_entry_has_port)
{
	struct sf_hostport hp = { .host = "localhost", .port = 8080 };
	struct sf_addrlist out;
	char err[256] = "";

	cr_assert_eq(sf_addr_resolve(&hp, 0, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_geq(out.n, 1);
	cr_assert_leq(out.n, SF_ADDR_MAX);
	for (size_t i = 0; i < out.n; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&out.a[i].ss;

		if (sa->sa_family == AF_INET)
			cr_assert_eq(ntohs(((const struct sockaddr_in *)sa)->sin_port), 8080);
		else if (sa->sa_family == AF_INET6)
			cr_assert_eq(ntohs(((const struct sockaddr_in6 *)sa)->sin6_port), 8080);
		else
			cr_assert_fail("entry %zu: family %d", i, sa->sa_family);
	}
}

Test(addr_resolve, passive_wildcard)
{
	struct sf_hostport hp = { .host = "", .port = 9000 };
	struct sf_addrlist out;
	char err[256] = "";
	const struct sockaddr *sa;

	cr_assert_eq(sf_addr_resolve(&hp, 1, &out, err, sizeof(err)), 0, "%s", err);
	cr_assert_geq(out.n, 1);
	sa = (const struct sockaddr *)&out.a[0].ss;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		cr_assert(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr), "first entry not [::]");
		cr_assert_eq(ntohs(sin6->sin6_port), 9000);
		if (out.n >= 2) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&out.a[1].ss;

			cr_assert_eq(sin->sin_family, AF_INET,
				     "IPv6 wildcard not followed by IPv4");
			cr_assert_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY));
			cr_assert_eq(ntohs(sin->sin_port), 9000);
		}
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		cr_assert_eq(sa->sa_family, AF_INET, "family %d", sa->sa_family);
		cr_assert_eq(sin->sin_addr.s_addr, htonl(INADDR_ANY), "first entry not 0.0.0.0");
		cr_assert_eq(ntohs(sin->sin_port), 9000);
	}
}

Test(addr_resolve, unknown_host)
{
	struct sf_hostport hp = { .host = "no-such-host.invalid", .port = 80 };
	struct sf_addrlist out;
	char err[256] = "";

	cr_assert_eq(sf_addr_resolve(&hp, 0, &out, err, sizeof(err)), -ENOENT);
	cr_assert_err_mentions(err, "no-such-host.invalid");
}

Test(addr_format, ipv4)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(80) };
	char buf[SF_ADDRSTRLEN];
	char *r;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r = sf_addr_format((const struct sockaddr *)&sin, buf, sizeof(buf));
	cr_assert_eq(r, buf);
	cr_assert_str_eq(buf, "127.0.0.1:80");
}

Test(addr_format, ipv6)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
	char buf[SF_ADDRSTRLEN];
	char *r;

	sin6.sin6_addr = in6addr_loopback;
	r = sf_addr_format((const struct sockaddr *)&sin6, buf, sizeof(buf));
	cr_assert_eq(r, buf);
	cr_assert_str_eq(buf, "[::1]:443");
}

Test(addr_format, longest_ipv6_fits)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(65535) };
	char buf[SF_ADDRSTRLEN];

	cr_assert_eq(inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
			       &sin6.sin6_addr),
		     1);
	sf_addr_format((const struct sockaddr *)&sin6, buf, sizeof(buf));
	cr_assert_eq(buf[0], '[');
	cr_assert(strstr(buf, "]:65535") != NULL, "got \"%s\"", buf);
}

Test(addr_format, round_trip_through_resolve)
{
	struct sf_hostport hp = { .host = "127.0.0.1", .port = 12345 };
	struct sf_addrlist out;
	char err[256] = "", buf[SF_ADDRSTRLEN];

	cr_assert_eq(sf_addr_resolve(&hp, 0, &out, err, sizeof(err)), 0, "%s", err);
	sf_addr_format((const struct sockaddr *)&out.a[0].ss, buf, sizeof(buf));
	cr_assert_str_eq(buf, "127.0.0.1:12345");
}

/* ---- sf_addr_parse_range ---- */

Test(addr_parse_range, single_port_and_range)
{
	struct sf_hostport hp;
	uint16_t last = 1;
	char err[256] = "";

	cr_assert_eq(sf_addr_parse_range("h:80", &hp, &last, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(hp.host, "h");
	cr_assert_eq(hp.port, 80);
	cr_assert_eq(last, 80);
	cr_assert_eq(sf_addr_parse_range("[::1]:10000-10099", &hp, &last, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_str_eq(hp.host, "::1");
	cr_assert_eq(hp.port, 10000);
	cr_assert_eq(last, 10099);
	cr_assert_eq(sf_addr_parse_range(":1-65535", &hp, &last, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(hp.port, 1);
	cr_assert_eq(last, 65535);
}

Test(addr_parse_range, bad_ranges)
{
	static const char *const bad[] = {
		"h:90-80", "h:0-5",   "h:1-65536", "h:-5",
		"h:5-",	   "h:1-2-3", "h:a-b",	   "h:123456789-1",
	};
	struct sf_hostport hp;
	uint16_t last;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(err, 0, sizeof(err));
		cr_assert_eq(sf_addr_parse_range(bad[i], &hp, &last, err, sizeof(err)), -EINVAL,
			     "\"%s\"", bad[i]);
		cr_assert_neq(err[0], '\0', "\"%s\": no message", bad[i]);
	}
	cr_assert_eq(sf_addr_parse_range("h:90-80", &hp, &last, err, sizeof(err)), -EINVAL);
	cr_assert_err_mentions(err, "backwards");
}

/* sf_addr_parse keeps refusing ranges: one port only. */
Test(addr_parse_range, plain_parse_refuses_ranges)
{
	const char *err = parse_bad("h:80-90");

	cr_assert_err_mentions(err, "port");
}
