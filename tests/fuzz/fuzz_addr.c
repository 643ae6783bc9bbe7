/*
 * Addresses: "host:port", "[v6]:port", ":port", port ranges, and the
 * upstream and listen forms built on them (sf_addr_parse,
 * sf_addr_parse_range, sf_listen_parse, sf_upstream_parse).
 *
 * Parsing never resolves; sf_addr_resolve does, through getaddrinfo. It
 * runs here only for numeric hosts and the wildcard, and getaddrinfo is
 * replaced below by one that refuses a name (a crash: nothing may reach
 * DNS from here) and passes numeric hosts to the C library with
 * AI_NUMERICHOST, which never consults a resolver.
 *
 * Properties: what parses formats back (sf_addr_format's notation) to
 * text that parses to the same host and port; ports are 1 to 65535 with
 * first <= last; weights 1 to SF_WEIGHT_MAX.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>

#include "fuzz.h"
#include "sockfwd/addr.h"
#include "sockfwd/config.h"

#define MAX_INPUT 600

static int is_numeric(const char *host)
{
	struct in6_addr a;

	return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

/* Interposed over the C library's (and the sanitizer's weak interceptor). */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	struct addrinfo h;

	FUZZ_CHECK(node == NULL || is_numeric(node), "getaddrinfo of a name '%s'", node);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	FUZZ_CHECK(real != NULL, "no getaddrinfo");
	h = *hints;
	h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
	return real(node, service, &h, res);
}

/* "host:port" again as the parser's input notation. */
static void fmt_hp(const struct sf_hostport *hp, char *buf, size_t len)
{
	snprintf(buf, len, strchr(hp->host, ':') != NULL ? "[%s]:%u" : "%s:%u", hp->host, hp->port);
}

static void check_hp(const struct sf_hostport *hp)
{
	char buf[SF_HOST_MAX + 16], err[256];
	struct sf_hostport again;

	FUZZ_CHECK(memchr(hp->host, '\0', sizeof(hp->host)) != NULL, "host not terminated");
	FUZZ_CHECK(hp->port >= 1, "port 0");
	FUZZ_CHECK(strpbrk(hp->host, " \t\r\n[]/") == NULL, "host '%s'", hp->host);
	fmt_hp(hp, buf, sizeof(buf));
	FUZZ_CHECK(sf_addr_parse(buf, &again, err, sizeof(err)) == 0, "'%s' does not reparse: %s",
		   buf, err);
	FUZZ_CHECK(strcmp(again.host, hp->host) == 0 && again.port == hp->port,
		   "'%s' reparses as '%s' port %u", buf, again.host, again.port);
}

/* Numeric hosts and the wildcard resolve without a resolver. */
static void check_resolve(const struct sf_hostport *hp)
{
	struct sf_addrlist al;
	char err[256], buf[SF_ADDRSTRLEN];
	size_t i;
	int rc;

	if (hp->host[0] != '\0' && !is_numeric(hp->host))
		return;
	rc = sf_addr_resolve(hp, hp->host[0] == '\0', &al, err, sizeof(err));
	if (rc < 0) {
		fuzz_check_err(err, sizeof(err));
		return;
	}
	FUZZ_CHECK(al.n >= 1 && al.n <= SF_ADDR_MAX, "%zu addresses", al.n);
	for (i = 0; i < al.n; i++)
		sf_addr_format((const struct sockaddr *)&al.a[i].ss, buf, sizeof(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_hostport hp, hr;
	struct sf_listen_conf l;
	struct sf_upstream_conf u;
	char err[384], *s;
	uint16_t last;

	if (size > MAX_INPUT)
		return 0;
	if ((s = fuzz_cstr(data, size)) == NULL)
		return 0;

	if (sf_addr_parse(s, &hp, err, sizeof(err)) == 0) {
		check_hp(&hp);
		check_resolve(&hp);
	} else {
		fuzz_check_err(err, sizeof(err));
	}

	if (sf_addr_parse_range(s, &hr, &last, err, sizeof(err)) == 0) {
		check_hp(&hr);
		FUZZ_CHECK(hr.port <= last, "range %u-%u", hr.port, last);
	} else {
		fuzz_check_err(err, sizeof(err));
		/* A single port is a range of one: what sf_addr_parse takes, this takes. */
		FUZZ_CHECK(sf_addr_parse(s, &hp, err, sizeof(err)) < 0,
			   "'%s' parses as an address but not as a range", s);
	}

	if (sf_listen_parse(s, &l, err, sizeof(err)) == 0) {
		check_hp(&l.hp);
		FUZZ_CHECK(l.hp.port <= l.port_last, "listen %u-%u", l.hp.port, l.port_last);
	}

	if (sf_upstream_parse(s, &u, err, sizeof(err)) == 0) {
		check_hp(&u.hp);
		FUZZ_CHECK(u.hp.host[0] != '\0', "upstream without a host");
		FUZZ_CHECK(u.hp.port <= u.port_last, "upstream %u-%u", u.hp.port, u.port_last);
		FUZZ_CHECK(u.weight >= 1 && u.weight <= SF_WEIGHT_MAX, "weight %u", u.weight);
		FUZZ_CHECK(u.backup == 0 || u.backup == 1, "backup %d", u.backup);
	} else {
		fuzz_check_err(err, sizeof(err));
	}
	free(s);
	return 0;
}
