/*
 * Addresses: parsing "host:port", "[v6]:port" and ":port", resolving them,
 * and formatting socket addresses for logs.
 */
#ifndef SOCKFWD_ADDR_H
#define SOCKFWD_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define SF_HOST_MAX   256
#define SF_ADDR_MAX   16 /* resolved addresses kept per host name */
#define SF_ADDRSTRLEN (INET6_ADDRSTRLEN + 9)

struct sf_hostport {
	char host[SF_HOST_MAX]; /* empty for ":port": every address */
	uint16_t port;
};

struct sf_sockaddr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/*
 * An IPv4 or IPv6 socket address in 32 bytes rather than
 * sockaddr_storage's 128: what a connection keeps of its peers.
 */
struct sf_inaddr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} u;
	socklen_t len; /* 0: unknown */
};

/* Copy s into d when it is IPv4 or IPv6, else make d unknown. */
void sf_inaddr_set(struct sf_inaddr *d, const struct sf_sockaddr *s);

struct sf_addrlist {
	size_t n;
	struct sf_sockaddr a[SF_ADDR_MAX];
};

/*
 * Parse s into hp. Accepted: "host:port", "1.2.3.4:port", "[v6]:port",
 * ":port". The port is decimal, 1 to 65535.
 * Returns 0, or -EINVAL with a message naming the problem in err.
 */
int sf_addr_parse(const char *s, struct sf_hostport *hp, char *err, size_t errlen);

/*
 * As sf_addr_parse, and the port may also be a range "first-last" with
 * first <= last: hp->port is the first, *last the last (== hp->port for
 * a single port). Returns 0, or -EINVAL with a message in err.
 */
int sf_addr_parse_range(const char *s, struct sf_hostport *hp, uint16_t *last, char *err,
			size_t errlen);

/*
 * Resolve hp with getaddrinfo (TCP). With passive and an empty host, the
 * result is the IPv6 wildcard (dual stack) then the IPv4 one.
 * Returns 0 with out->n >= 1, or -ENOENT with a message in err.
 */
int sf_addr_resolve(const struct sf_hostport *hp, int passive, struct sf_addrlist *out, char *err,
		    size_t errlen);

/* Set the port of an AF_INET or AF_INET6 address. */
void sf_addr_set_port(struct sf_sockaddr *a, uint16_t port);

/* Format sa as "1.2.3.4:80" or "[::1]:80" into buf; returns buf. */
char *sf_addr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif
