/*
 * The PROXY protocol, versions 1 and 2, after HAProxy's
 * doc/proxy-protocol.txt. The decoder is strict: anything the spec does
 * not allow is rejected, and as early as the bytes received so far show
 * it, so that a bad sender is dropped without waiting for a timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sockfwd/proxy.h"

static const uint8_t v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

#define V2_HDR	   16
#define V2_VERSION 0x20 /* high nibble of byte 13 */
#define V2_LOCAL   0x00
#define V2_PROXY   0x01
#define V2_TCP4	   0x11
#define V2_TCP6	   0x21
#define V2_ADDR4   12  /* 2 * 4 + 2 * 2 */
#define V2_ADDR6   36  /* 2 * 16 + 2 * 2 */
#define V2_ADDRUN  216 /* 2 * 108 */
#define V2_TLV_HDR 3

#define V1_ADDR_MAX (INET6_ADDRSTRLEN - 1) /* longest text inet_pton may accept */
#define V1_PORT_MAX 5

/* An endpoint reduced to what the header carries. */
struct pp_end {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint16_t port; /* network order */
};

/*
 * Read sa into e, turning an IPv4-mapped IPv6 address into plain IPv4
 * when unmap is set. Returns 0, or -EINVAL for other families.
 */
static int pp_end_get(const struct sockaddr *sa, int unmap, struct pp_end *e)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	memset(e, 0, sizeof(*e));
	if (sa == NULL)
		return -EINVAL;
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		e->family = AF_INET;
		memcpy(e->addr, &sin->sin_addr, 4);
		e->port = sin->sin_port;
		return 0;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		e->port = sin6->sin6_port;
		if (unmap && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			e->family = AF_INET;
			memcpy(e->addr, &sin6->sin6_addr.s6_addr[12], 4);
		} else {
			e->family = AF_INET6;
			memcpy(e->addr, &sin6->sin6_addr, 16);
		}
		return 0;
	default:
		return -EINVAL;
	}
}

/* Is sa IPv4, either plainly or as an IPv4-mapped IPv6 address? */
static int pp_is_v4(const struct sockaddr *sa)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

	if (sa->sa_family == AF_INET)
		return 1;
	return sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
}

/* Turn a plain IPv4 endpoint into its IPv4-mapped IPv6 form. */
static void pp_end_map(struct pp_end *e)
{
	if (e->family != AF_INET)
		return;
	memmove(&e->addr[12], e->addr, 4);
	memset(e->addr, 0, 10);
	e->addr[10] = 0xff;
	e->addr[11] = 0xff;
	e->family = AF_INET6;
}

/*
 * Write the header into tmp (SF_PROXY_ENC_MAX bytes). Both ends have the
 * same family. Returns the length.
 */
static size_t pp_encode_v1(const struct pp_end *s, const struct pp_end *d, char *tmp)
{
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	int n;

	inet_ntop(s->family, s->addr, sa, sizeof(sa));
	inet_ntop(d->family, d->addr, da, sizeof(da));
	n = snprintf(tmp, SF_PROXY_ENC_MAX, "PROXY %s %s %s %u %u\r\n",
		     s->family == AF_INET ? "TCP4" : "TCP6", sa, da, ntohs(s->port),
		     ntohs(d->port));
	return (size_t)n;
}

/* Same for version 2: the 16-byte header and a TCP4 or TCP6 address block. */
static size_t pp_encode_v2(const struct pp_end *s, const struct pp_end *d, uint8_t *tmp)
{
	size_t alen = s->family == AF_INET ? 4 : 16;
	size_t blk = 2 * alen + 4;
	uint8_t *p = tmp + V2_HDR;

	memcpy(tmp, v2_sig, sizeof(v2_sig));
	tmp[12] = V2_VERSION | V2_PROXY;
	tmp[13] = s->family == AF_INET ? V2_TCP4 : V2_TCP6;
	tmp[14] = 0;
	tmp[15] = (uint8_t)blk;
	memcpy(p, s->addr, alen);
	memcpy(p + alen, d->addr, alen);
	memcpy(p + 2 * alen, &s->port, 2);
	memcpy(p + 2 * alen + 2, &d->port, 2);
	return V2_HDR + blk;
}

/*
 * Both ends IPv4 (plain or mapped, as a dual-stack listener reports
 * them) go out as TCP4 with plain addresses; any other pair goes out as
 * TCP6, an IPv4 end mapped into IPv6, since a header has one family.
 */
ssize_t sf_proxy_encode(int version, const struct sockaddr *src, const struct sockaddr *dst,
			void *buf, size_t len)
{
	uint8_t tmp[SF_PROXY_ENC_MAX];
	struct pp_end s, d;
	size_t n;
	int v4;

	if ((version != 1 && version != 2) || src == NULL || dst == NULL || buf == NULL)
		return -EINVAL;
	if ((src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
	    (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
		return -EINVAL;
	v4 = pp_is_v4(src) && pp_is_v4(dst);
	if (pp_end_get(src, v4, &s) < 0 || pp_end_get(dst, v4, &d) < 0)
		return -EINVAL;
	if (!v4) {
		pp_end_map(&s);
		pp_end_map(&d);
	}
	if (version == 1)
		n = pp_encode_v1(&s, &d, (char *)tmp);
	else
		n = pp_encode_v2(&s, &d, tmp);
	if (n > len)
		return -ENOSPC;
	memcpy(buf, tmp, n);
	return (ssize_t)n;
}

/* Fill out as a TCP connection between the two endpoints. */
static void pp_info_set(struct sf_proxy_info *out, int version, const struct pp_end *s,
			const struct pp_end *d)
{
	const struct pp_end *e[2] = { s, d };
	struct sf_sockaddr *sa[2] = { &out->src, &out->dst };
	int i;

	memset(out, 0, sizeof(*out));
	out->version = version;
	for (i = 0; i < 2; i++) {
		if (e[i]->family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&sa[i]->ss;

			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, e[i]->addr, 4);
			sin->sin_port = e[i]->port;
			sa[i]->len = sizeof(*sin);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&sa[i]->ss;

			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, e[i]->addr, 16);
			sin6->sin6_port = e[i]->port;
			sa[i]->len = sizeof(*sin6);
		}
	}
}

static void pp_info_local(struct sf_proxy_info *out, int version)
{
	memset(out, 0, sizeof(*out));
	out->version = version;
	out->local = 1;
}

/*
 * Version 1. The line is parsed field by field over the bytes received
 * so far; a field cut short by the end of the data is checked as a
 * prefix (character class, length, and for IPv4 and ports the value), a
 * complete one in full. The helpers return 1 (done, cursor moved past
 * it), V1_MORE or V1_BAD.
 */
#define V1_MORE 0
#define V1_BAD	(-1)

struct v1_cur {
	const char *p, *end;
};

/*
 * Match the literal lit at the cursor. Returns 1 (matched, cursor moved),
 * V1_MORE (the data ends inside a matching prefix) or V1_BAD.
 */
static int v1_lit(struct v1_cur *c, const char *lit)
{
	size_t n = strlen(lit), have = (size_t)(c->end - c->p);

	if (memcmp(c->p, lit, have < n ? have : n) != 0)
		return V1_BAD;
	if (have < n)
		return V1_MORE;
	c->p += n;
	return 1;
}

/*
 * Find the end of a field made of bytes from accept, at most max long,
 * ended by delim. Returns 1 with *flen set when delim was seen, V1_MORE
 * with *flen the bytes so far when the data ends first, or V1_BAD.
 */
static int v1_span(const struct v1_cur *c, const char *accept, size_t max, char delim, size_t *flen)
{
	size_t n;

	for (n = 0; c->p + n < c->end; n++) {
		if (c->p[n] == delim) {
			*flen = n;
			return n > 0 ? 1 : V1_BAD;
		}
		if (n == max || c->p[n] == '\0' || strchr(accept, c->p[n]) == NULL)
			return V1_BAD;
	}
	*flen = n;
	return V1_MORE;
}

/*
 * Check s[0..n) as dotted-quad IPv4 text: four decimal numbers 0-255
 * without leading zeros. With partial, s only has to be a prefix of
 * such text. Returns 1 or 0.
 */
static int v1_ipv4_ok(const char *s, size_t n, int partial)
{
	int dots = 0, digits = 0, val = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (digits == 0 || ++dots > 3)
				return 0;
			digits = val = 0;
			continue;
		}
		if (digits == 1 && val == 0)
			return 0; /* leading zero */
		val = val * 10 + (s[i] - '0');
		if (++digits > 3 || val > 255)
			return 0;
	}
	return partial || (dots == 3 && digits > 0);
}

/* Same for a decimal port 0-65535 without leading zeros. */
static int v1_port_ok(const char *s, size_t n, uint16_t *port)
{
	long val = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (i == 1 && val == 0)
			return 0;
		val = val * 10 + (s[i] - '0');
		if (val > 65535)
			return 0;
	}
	if (port != NULL)
		*port = htons((uint16_t)val);
	return 1;
}

/* Parse an address field of the given family ended by a space. */
static int v1_addr(struct v1_cur *c, int family, struct pp_end *e)
{
	char txt[V1_ADDR_MAX + 1];
	size_t n;
	int r;

	if (family == AF_INET)
		r = v1_span(c, "0123456789.", INET_ADDRSTRLEN - 1, ' ', &n);
	else
		r = v1_span(c, "0123456789abcdefABCDEF:.", V1_ADDR_MAX, ' ', &n);
	if (r == V1_BAD)
		return V1_BAD;
	if (family == AF_INET && !v1_ipv4_ok(c->p, n, r == V1_MORE))
		return V1_BAD;
	if (r == V1_MORE)
		return V1_MORE;
	memcpy(txt, c->p, n);
	txt[n] = '\0';
	e->family = family;
	if (inet_pton(family, txt, e->addr) != 1)
		return V1_BAD;
	c->p += n + 1;
	return 1;
}

/* Parse a port field ended by delim. */
static int v1_port(struct v1_cur *c, char delim, struct pp_end *e)
{
	size_t n;
	int r;

	r = v1_span(c, "0123456789", V1_PORT_MAX, delim, &n);
	if (r == V1_BAD || !v1_port_ok(c->p, n, &e->port))
		return V1_BAD;
	if (r == V1_MORE)
		return V1_MORE;
	c->p += n + 1;
	return 1;
}

/*
 * After "UNKNOWN": a space and anything but CR or LF, or nothing, up to
 * CRLF. A lone CR or LF is not a line end, so it is an error.
 */
static int v1_unknown(struct v1_cur *c)
{
	if (c->p == c->end)
		return V1_MORE;
	if (*c->p != ' ' && *c->p != '\r')
		return V1_BAD;
	for (; c->p < c->end; c->p++) {
		if (*c->p == '\n')
			return V1_BAD;
		if (*c->p == '\r')
			break;
	}
	if (c->p + 1 >= c->end)
		return V1_MORE;
	if (c->p[1] != '\n')
		return V1_BAD;
	c->p += 2;
	return 1;
}

/* The TCP4/TCP6 fields: "SRC DST SPORT DPORT\r\n". */
static int v1_tcp(struct v1_cur *c, int family, struct pp_end *s, struct pp_end *d)
{
	int r;

	if ((r = v1_addr(c, family, s)) != 1 || (r = v1_addr(c, family, d)) != 1 ||
	    (r = v1_port(c, ' ', s)) != 1 || (r = v1_port(c, '\r', d)) != 1)
		return r;
	return v1_lit(c, "\n");
}

static ssize_t pp_decode_v1(const char *buf, size_t len, struct sf_proxy_info *out)
{
	static const char *const proto[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };
	struct v1_cur c = { buf, buf + (len < SF_PROXY_V1_MAX ? len : SF_PROXY_V1_MAX) };
	struct pp_end s, d;
	int r, i, which = -1, partial = 0;

	if ((r = v1_lit(&c, "PROXY ")) != 1)
		goto out;
	for (i = 0; i < 3; i++) {
		struct v1_cur t = c;

		r = v1_lit(&t, proto[i]);
		if (r == 1) {
			which = i;
			c = t;
			break;
		}
		if (r == V1_MORE)
			partial = 1;
	}
	if (which < 0) {
		r = partial ? V1_MORE : V1_BAD;
		goto out;
	}
	if (which == 2)
		r = v1_unknown(&c);
	else
		r = v1_tcp(&c, which == 0 ? AF_INET : AF_INET6, &s, &d);
out:
	if (r == V1_BAD || (r == V1_MORE && len >= SF_PROXY_V1_MAX))
		return -EPROTO;
	if (r == V1_MORE)
		return 0;
	if (which == 2)
		pp_info_local(out, 1);
	else
		pp_info_set(out, 1, &s, &d);
	return c.p - buf;
}

/*
 * Walk the TLVs in p[0..n): each must fit. Their contents are not
 * interpreted. Returns 0 or -EPROTO.
 */
static int v2_tlvs_ok(const uint8_t *p, size_t n)
{
	size_t tl;

	while (n > 0) {
		if (n < V2_TLV_HDR)
			return -EPROTO;
		tl = V2_TLV_HDR + ((size_t)p[1] << 8 | p[2]);
		if (tl > n)
			return -EPROTO;
		p += tl;
		n -= tl;
	}
	return 0;
}

/*
 * Version 2. What the first 16 bytes say is checked as soon as they
 * arrive; the addresses once the whole header has.
 */
static ssize_t pp_decode_v2(const uint8_t *buf, size_t len, struct sf_proxy_info *out)
{
	size_t total, blk = 0;
	uint8_t cmd, fam, proto;
	struct pp_end s, d;
	size_t alen;

	if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
		return -EPROTO;
	if (len <= 12)
		return 0;
	cmd = buf[12] & 0x0F;
	if ((buf[12] & 0xF0) != V2_VERSION || (cmd != V2_LOCAL && cmd != V2_PROXY))
		return -EPROTO;
	if (len == 13)
		return 0;
	fam = buf[13] >> 4;
	proto = buf[13] & 0x0F;
	/* AF_UNSPEC..AF_UNIX, UNSPEC..DGRAM; LOCAL ignores the family */
	if (cmd == V2_PROXY && (fam > 3 || proto > 2))
		return -EPROTO;
	if (len < V2_HDR)
		return 0;
	total = V2_HDR + ((size_t)buf[14] << 8 | buf[15]);
	if (cmd == V2_PROXY) {
		if (fam != 0 && proto != 0)
			blk = fam == 1 ? V2_ADDR4 : fam == 2 ? V2_ADDR6 : V2_ADDRUN;
		if (total < V2_HDR + blk)
			return -EPROTO;
	}
	if (total > SF_PROXY_V2_MAX)
		return -EPROTO;
	if (len < total)
		return 0;
	/* LOCAL, UNSPEC, UDP and UNIX: valid, but keep the real addresses */
	if (cmd == V2_LOCAL || (buf[13] != V2_TCP4 && buf[13] != V2_TCP6)) {
		pp_info_local(out, 2);
		return (ssize_t)total;
	}
	if (v2_tlvs_ok(buf + V2_HDR + blk, total - V2_HDR - blk) < 0)
		return -EPROTO;
	alen = buf[13] == V2_TCP4 ? 4 : 16;
	memset(&s, 0, sizeof(s));
	memset(&d, 0, sizeof(d));
	s.family = d.family = alen == 4 ? AF_INET : AF_INET6;
	memcpy(s.addr, buf + V2_HDR, alen);
	memcpy(d.addr, buf + V2_HDR + alen, alen);
	memcpy(&s.port, buf + V2_HDR + 2 * alen, 2);
	memcpy(&d.port, buf + V2_HDR + 2 * alen + 2, 2);
	pp_info_set(out, 2, &s, &d);
	return (ssize_t)total;
}

ssize_t sf_proxy_decode(const void *buf, size_t len, struct sf_proxy_info *out)
{
	const uint8_t *p = buf;

	if (len == 0)
		return 0;
	if (p[0] == 'P')
		return pp_decode_v1(buf, len, out);
	if (p[0] == v2_sig[0])
		return pp_decode_v2(p, len, out);
	return -EPROTO;
}
