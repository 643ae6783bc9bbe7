/*
 * Address parsing, resolution and formatting.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockfwd/addr.h"

/*
 * Parse a decimal port 1..65535 with nothing around it.
 * Returns the port, or -1 when malformed or out of range.
 */
static int parse_port(const char *s)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > 65535)
			return -2;
	}
	return v == 0 ? -2 : (int)v;
}

/*
 * Parse the port range "first-last" of address s into hp->port and
 * *last. Returns 0, or -EINVAL with a message when a bound is malformed
 * or out of range, or the range runs backwards.
 */
static int parse_range(const char *s, const char *spec, struct sf_hostport *hp, uint16_t *last,
		       char *err, size_t errlen)
{
	char first[8], *dash;
	int a, b;

	dash = strchr(spec, '-');
	if ((size_t)(dash - spec) >= sizeof(first)) {
		snprintf(err, errlen, "'%s': port '%s' is not a decimal number or range", s, spec);
		return -EINVAL;
	}
	memcpy(first, spec, dash - spec);
	first[dash - spec] = '\0';
	a = parse_port(first);
	b = parse_port(dash + 1);
	if (a == -1 || b == -1) {
		snprintf(err, errlen,
			 "'%s': port range '%s' is malformed (expected first-last, as 10000-10099)",
			 s, spec);
		return -EINVAL;
	}
	if (a < 0 || b < 0) {
		snprintf(err, errlen, "'%s': port out of range (1-65535)", s);
		return -EINVAL;
	}
	if (a > b) {
		snprintf(err, errlen, "'%s': port range %d-%d runs backwards (first > last)", s, a,
			 b);
		return -EINVAL;
	}
	hp->port = (uint16_t)a;
	*last = (uint16_t)b;
	return 0;
}

/*
 * Parse "host:portspec" into hp. With last NULL the port is one decimal
 * number; with last set it may also be a range "first-last" (first <=
 * last), whose end goes to *last (== hp->port for a single port).
 * Returns 0, or -EINVAL with a message naming the problem in err.
 */
static int addr_parse(const char *s, struct sf_hostport *hp, uint16_t *last, char *err,
		      size_t errlen)
{
	const char *host, *colon, *port;
	size_t hlen;
	int p;

	memset(hp, 0, sizeof(*hp));
	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "empty address (expected host:port)");
		return -EINVAL;
	}
	if (*s == '[') {
		const char *close = strchr(s, ']');
		struct in6_addr a6;

		if (close == NULL) {
			snprintf(err, errlen, "'%s': missing ']' after IPv6 address", s);
			return -EINVAL;
		}
		host = s + 1;
		hlen = close - host;
		if (close[1] != ':') {
			snprintf(err, errlen, "'%s': missing ':port' after ']'", s);
			return -EINVAL;
		}
		port = close + 2;
		if (hlen == 0 || hlen >= SF_HOST_MAX) {
			snprintf(err, errlen, "'%s': empty or overlong IPv6 address in brackets",
				 s);
			return -EINVAL;
		}
		memcpy(hp->host, host, hlen);
		if (inet_pton(AF_INET6, hp->host, &a6) != 1) {
			snprintf(err, errlen, "'%s': brackets are for IPv6 addresses only", s);
			return -EINVAL;
		}
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "'%s': missing port (expected host:port)", s);
			return -EINVAL;
		}
		if (memchr(s, ':', colon - s) != NULL) {
			snprintf(err, errlen, "'%s': IPv6 addresses need brackets, as [::1]:80", s);
			return -EINVAL;
		}
		hlen = colon - s;
		port = colon + 1;
		if (hlen >= SF_HOST_MAX) {
			snprintf(err, errlen, "host name longer than %d characters",
				 SF_HOST_MAX - 1);
			return -EINVAL;
		}
		memcpy(hp->host, s, hlen);
		if (strpbrk(hp->host, " \t\r\n[]/") != NULL) {
			snprintf(err, errlen, "'%s': invalid character in host", s);
			return -EINVAL;
		}
	}
	if (last != NULL && strchr(port, '-') != NULL)
		return parse_range(s, port, hp, last, err, errlen);
	p = parse_port(port);
	if (p == -1) {
		snprintf(err, errlen, "'%s': port '%s' is not a decimal number", s, port);
		return -EINVAL;
	}
	if (p < 0) {
		snprintf(err, errlen, "'%s': port out of range (1-65535)", s);
		return -EINVAL;
	}
	hp->port = (uint16_t)p;
	if (last != NULL)
		*last = hp->port;
	return 0;
}

int sf_addr_parse(const char *s, struct sf_hostport *hp, char *err, size_t errlen)
{
	return addr_parse(s, hp, NULL, err, errlen);
}

int sf_addr_parse_range(const char *s, struct sf_hostport *hp, uint16_t *last, char *err,
			size_t errlen)
{
	return addr_parse(s, hp, last, err, errlen);
}

int sf_addr_resolve(const struct sf_hostport *hp, int passive, struct sf_addrlist *out, char *err,
		    size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	char port[8];
	int rc;

	memset(out, 0, sizeof(*out));
	if (passive && hp->host[0] == '\0') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->a[0].ss;
		struct sockaddr_in *s4 = (struct sockaddr_in *)&out->a[1].ss;

		/* Dual-stack wildcard first; IPv4 for hosts without IPv6. */
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons(hp->port);
		out->a[0].len = sizeof(*s6);
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
		s4->sin_port = htons(hp->port);
		out->a[1].len = sizeof(*s4);
		out->n = 2;
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = passive ? AI_PASSIVE : 0;
	snprintf(port, sizeof(port), "%u", hp->port);
	rc = getaddrinfo(hp->host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve host '%s': %s", hp->host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -ENOENT;
	}
	for (ai = res; ai != NULL && out->n < SF_ADDR_MAX; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(out->a[0].ss))
			continue;
		memcpy(&out->a[out->n].ss, ai->ai_addr, ai->ai_addrlen);
		out->a[out->n].len = ai->ai_addrlen;
		out->n++;
	}
	freeaddrinfo(res);
	if (out->n == 0) {
		snprintf(err, errlen, "cannot resolve host '%s': no usable address", hp->host);
		return -ENOENT;
	}
	return 0;
}

void sf_inaddr_set(struct sf_inaddr *d, const struct sf_sockaddr *s)
{
	d->len = 0;
	if ((s->ss.ss_family == AF_INET || s->ss.ss_family == AF_INET6) && s->len > 0 &&
	    s->len <= sizeof(d->u)) {
		memcpy(&d->u, &s->ss, s->len);
		d->len = s->len;
	}
}

void sf_addr_set_port(struct sf_sockaddr *a, uint16_t port)
{
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

char *sf_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
	return buf;
}
