/*
 * Allow/deny lists: CIDR blocks, IPv4 and IPv6, and a set of them that
 * answers "does this client match?" in O(log n) for any number of blocks
 * (10,000 must not show in the connection-rate benchmark).
 *
 * IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d), so an IPv4 client
 * seen on a dual-stack listener matches IPv4 blocks.
 */
#ifndef SOCKFWD_ACL_H
#define SOCKFWD_ACL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One block: the first prefix bits of addr (IPv4 mapped, prefix + 96). */
struct sf_cidr {
	uint8_t addr[16]; /* network byte order, host bits cleared */
	uint8_t prefix;	  /* 0 to 128, in the IPv6 space */
};

/*
 * Parse "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or
 * /128). Host bits set below the prefix are cleared (10.1.2.3/8 is
 * 10.0.0.0/8). No brackets, spaces, signs or zone ids. Returns 0, or
 * -EINVAL with a message quoting s and naming the problem in err (err
 * may be NULL when errlen is 0).
 */
int sf_cidr_parse(const char *s, struct sf_cidr *out, char *err, size_t errlen);

/*
 * "10.0.0.0/8" or "2001:db8::/32" into buf, always with the prefix ("::1/128");
 * blocks inside ::ffff:0:0/96 print in IPv4 form, the rest (::/0 included)
 * in IPv6 form. sf_cidr_parse reads the result back as the same block
 * (host bits cleared, as sf_cidr_parse leaves them).
 * Truncated to fit len (INET6_ADDRSTRLEN + 4 always fits); returns buf.
 */
char *sf_cidr_format(const struct sf_cidr *c, char *buf, size_t len);

struct sf_cidrset;

/*
 * A matcher for n blocks (copied; overlaps, nesting and duplicates
 * allowed). Returns it, or NULL with errno ENOMEM (EINVAL for a prefix
 * over 128, which sf_cidr_parse never yields). n may be 0: nothing
 * matches.
 */
struct sf_cidrset *sf_cidrset_new(const struct sf_cidr *blocks, size_t n);
void sf_cidrset_free(struct sf_cidrset *s);

/*
 * 1 when sa (AF_INET or AF_INET6) falls in a block of s, else 0; other
 * families never match. O(log n), no allocation.
 */
int sf_cidrset_match(const struct sf_cidrset *s, const struct sockaddr *sa);

#endif
