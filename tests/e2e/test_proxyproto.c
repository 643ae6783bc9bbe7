/*
 * The PROXY protocol (HAProxy's proxy-protocol.txt). --proxy-protocol
 * v1|v2: the upstream receives a header carrying the client's addresses
 * before any client byte, compared byte for byte (SRV_HEAD records it).
 * --accept-proxy: a header from a load balancer in front is read and
 * removed, and its source is the client for logs, allow/deny, source
 * hashing and the header sent upstream; a malformed, truncated or late
 * header resets the connection.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PP_PAYLOAD 1000
#define PP_SLOW_MS 10000 /* bound for the 5 s header deadline */

static const unsigned char v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/*
 * sockfwd -b engine -r s with a listener of family, then flags (NULL
 * terminated); ready from /proc, so only the test's clients arrive.
 */
static void start_pp(struct fwd *f, const char *engine, int family, const struct srv *s,
		     const char *const *flags)
{
	struct fwd_opts o = { .engine = engine, .family = family, .no_probe = 1 };
	char remote[64];
	int n = 0;

	o.remote = srv_addr(s, remote, sizeof(remote));
	for (int i = 0; flags[i] != NULL; i++) {
		cr_assert(n < FWD_EXTRA - 1, "too many flags");
		o.extra[n++] = flags[i];
	}
	o.extra[n] = NULL;
	fwd_start(f, &o);
}

/*
 * A v2 header into out: PROXY (cmd 1) or LOCAL (0), TCP over family
 * (AF_INET, AF_INET6; AF_UNSPEC with LOCAL), addresses as text, then
 * tlv. Returns its length.
 */
static size_t v2_build(unsigned char *out, int local, int family, const char *src, const char *dst,
		       unsigned sport, unsigned dport, const unsigned char *tlv, size_t tlvlen)
{
	size_t alen = family == AF_INET ? 12 : family == AF_INET6 ? 36 : 0, n = 16;

	memcpy(out, v2_sig, 12);
	out[12] = local ? 0x20 : 0x21;
	out[13] = family == AF_INET ? 0x11 : family == AF_INET6 ? 0x21 : 0x00;
	out[14] = (unsigned char)((alen + tlvlen) >> 8);
	out[15] = (unsigned char)(alen + tlvlen);
	if (family != AF_UNSPEC) {
		size_t as = family == AF_INET ? 4 : 16;

		cr_assert(inet_pton(family, src, out + n) == 1, "bad address %s", src);
		cr_assert(inet_pton(family, dst, out + n + as) == 1, "bad address %s", dst);
		n += 2 * as;
		out[n++] = (unsigned char)(sport >> 8);
		out[n++] = (unsigned char)sport;
		out[n++] = (unsigned char)(dport >> 8);
		out[n++] = (unsigned char)dport;
	}
	if (tlvlen > 0)
		memcpy(out + n, tlv, tlvlen);
	return n + tlvlen;
}

/* got equals want, or fail showing both in hex. */
static void bytes_eq(const unsigned char *got, size_t glen, const unsigned char *want, size_t wlen,
		     const char *what)
{
	char g[700], w[700];
	size_t gi = 0, wi = 0;

	if (glen == wlen && memcmp(got, want, glen) == 0)
		return;
	for (size_t i = 0; i < glen && gi + 4 < sizeof(g); i++)
		gi += (size_t)snprintf(g + gi, sizeof(g) - gi, "%02x ", got[i]);
	for (size_t i = 0; i < wlen && wi + 4 < sizeof(w); i++)
		wi += (size_t)snprintf(w + wi, sizeof(w) - wi, "%02x ", want[i]);
	g[gi] = w[wi] = '\0';
	cr_assert_fail("%s: upstream received %zu header bytes \"%.*s\"\n  %s\nexpected %zu "
		       "\"%.*s\"\n  %s%s",
		       what, glen, (int)glen, got, g, wlen, (int)wlen, want, w, fwd_note());
}

/* Send hdr and n payload bytes of seed in one write; the echo is the payload alone. */
static void send_hdr_echo(int fd, const void *hdr, size_t hlen, uint64_t seed, size_t n)
{
	unsigned char *buf = malloc(hlen + n);
	struct gen g;

	cr_assert(buf != NULL, "malloc failed");
	memcpy(buf, hdr, hlen);
	gen_init(&g, seed);
	gen_fill(&g, buf + hlen, n);
	send_all(fd, buf, hlen + n);
	recv_exact(fd, buf, n);
	cr_assert(hash_update(HASH_INIT, buf, n) == gen_hash(seed, n),
		  "echo of the %zu bytes after a %zu-byte header differs (header forwarded?)", n,
		  hlen);
	free(buf);
}

/* ---- --proxy-protocol: headers sent upstream ---- */

/*
 * Two clients through --proxy-protocol version to an SRV_HEAD upstream:
 * each upstream connection begins with exactly the header for that
 * client's address and port and the listener's; the payload follows intact.
 */
static void send_header(const char *engine, const char *version, int family, int upfamily)
{
	const char *flags[] = { "--proxy-protocol", version, NULL };
	const char *lo = family == AF_INET6 ? "::1" : "127.0.0.1";
	unsigned char want[128];
	struct srv s;
	struct fwd f;

	srv_bind(&s, upfamily, SRV_HEAD, 0);
	srv_listen(&s);
	start_pp(&f, engine, family, &s, flags);
	for (int i = 0; i < 2; i++) {
		int fd = tcp_connect(family, f.port), port = sock_local_port(fd);
		const unsigned char *got;
		size_t glen, wlen;
		char what[64];

		echo_roundtrip(fd, 1 + (uint64_t)i, PP_PAYLOAD);
		got = srv_head_wait(&s, i, &glen);
		if (strcmp(version, "v1") == 0)
			wlen = (size_t)snprintf(
				(char *)want, sizeof(want), "PROXY %s %s %s %d %d\r\n",
				family == AF_INET6 ? "TCP6" : "TCP4", lo, lo, port, f.port);
		else
			wlen = v2_build(want, 0, family, lo, lo, (unsigned)port, (unsigned)f.port,
					NULL, 0);
		snprintf(what, sizeof(what), "--proxy-protocol %s, client %d", version, i);
		bytes_eq(got, glen, want, wlen, what);
		echo_roundtrip(fd, 10 + (uint64_t)i, PP_PAYLOAD);
		close(fd);
	}
	fwd_stop(&f);
	srv_stop(&s);
}

ENGINE_TEST(proxyproto, send_v1_ipv4, 60) { send_header(engine, "v1", AF_INET, AF_INET); }
ENGINE_TEST(proxyproto, send_v2_ipv4, 60) { send_header(engine, "v2", AF_INET, AF_INET); }
ENGINE_TEST(proxyproto, send_v1_ipv6, 60) { send_header(engine, "v1", AF_INET6, AF_INET6); }
ENGINE_TEST(proxyproto, send_v2_ipv6, 60) { send_header(engine, "v2", AF_INET6, AF_INET6); }

/* The header describes the client's side: an IPv4 client to an IPv6 upstream is TCP4. */
ENGINE_TEST(proxyproto, send_v2_ipv4_client_ipv6_upstream, 60)
{
	send_header(engine, "v2", AF_INET, AF_INET6);
}

/* ---- --accept-proxy ---- */

/*
 * Good v1 headers are removed: one sent with its payload in one write,
 * one in three pieces; the payload is echoed intact, and the -v line
 * shows the address from the header.
 */
ENGINE_TEST(proxyproto, accept_v1, 60)
{
	const char *flags[] = { "--accept-proxy", "-v", NULL };
	char hdr[128];
	struct srv s;
	struct fwd f;
	size_t hlen;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_pp(&f, engine, AF_INET, &s, flags);
	hlen = (size_t)snprintf(hdr, sizeof(hdr), "PROXY TCP4 192.0.2.7 127.0.0.1 4242 %d\r\n",
				f.port);
	fd = tcp_connect(AF_INET, f.port);
	send_hdr_echo(fd, hdr, hlen, 1, PP_PAYLOAD);
	echo_roundtrip(fd, 2, PP_PAYLOAD);
	close(fd);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, "192.0.2.7:4242", NULL),
		  "no -v line shows the client from the header, 192.0.2.7:4242; stderr:\n%s",
		  fwd_stderr_tail(&f));

	hlen = (size_t)snprintf(hdr, sizeof(hdr), "PROXY TCP4 192.0.2.8 127.0.0.1 4343 %d\r\n",
				f.port);
	fd = tcp_connect(AF_INET, f.port);
	send_all(fd, hdr, 5);
	sleep_ms(30);
	send_all(fd, hdr + 5, 10);
	sleep_ms(30);
	send_hdr_echo(fd, hdr + 15, hlen - 15, 3, PP_PAYLOAD);
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * Good v2 headers are removed: TCP over IPv4 with a NOOP TLV to skip,
 * TCP over IPv6 on an IPv4 listener, LOCAL.
 */
ENGINE_TEST(proxyproto, accept_v2, 60)
{
	static const unsigned char noop[] = { 0x04, 0x00, 0x02, 0xAA, 0xBB };
	const char *flags[] = { "--accept-proxy", NULL };
	unsigned char hdr[128];
	size_t hlen[3];
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_pp(&f, engine, AF_INET, &s, flags);
	for (int i = 0; i < 3; i++) {
		int fd = tcp_connect(AF_INET, f.port);

		if (i == 0)
			hlen[i] = v2_build(hdr, 0, AF_INET, "192.0.2.7", "127.0.0.1", 4242,
					   (unsigned)f.port, noop, sizeof(noop));
		else if (i == 1)
			hlen[i] = v2_build(hdr, 0, AF_INET6, "2001:db8::7", "2001:db8::1", 4242,
					   443, NULL, 0);
		else
			hlen[i] = v2_build(hdr, 1, AF_UNSPEC, NULL, NULL, 0, 0, NULL, 0);
		send_hdr_echo(fd, hdr, hlen[i], 20 + (uint64_t)i, PP_PAYLOAD);
		echo_roundtrip(fd, 30 + (uint64_t)i, PP_PAYLOAD);
		close(fd);
	}
	fwd_stop(&f);
	srv_stop(&s);
}

struct relay_case {
	unsigned char in[128];
	size_t inlen;
	unsigned char out[128];
	size_t outlen;
};

/*
 * --accept-proxy with --proxy-protocol: each case's header goes in, its
 * expected header must come out at the upstream, byte for byte.
 */
static void relay(const char *engine, const char *version, struct relay_case *cs, int n,
		  void (*fill)(struct relay_case *, int, int, int))
{
	const char *flags[] = { "--accept-proxy", "--proxy-protocol", version, NULL };
	struct srv s;
	struct fwd f;

	srv_bind(&s, AF_INET, SRV_HEAD, 0);
	srv_listen(&s);
	start_pp(&f, engine, AF_INET, &s, flags);
	for (int i = 0; i < n; i++) {
		int fd = tcp_connect(AF_INET, f.port);
		const unsigned char *got;
		char what[96];
		size_t glen;

		/* Cases that keep the real peer need its port. */
		fill(&cs[i], i, sock_local_port(fd), f.port);
		send_hdr_echo(fd, cs[i].in, cs[i].inlen, 40 + (uint64_t)i, PP_PAYLOAD);
		got = srv_head_wait(&s, i, &glen);
		snprintf(what, sizeof(what), "--accept-proxy --proxy-protocol %s, case %d", version,
			 i);
		bytes_eq(got, glen, cs[i].out, cs[i].outlen, what);
		close(fd);
	}
	fwd_stop(&f);
	srv_stop(&s);
}

#define V1_TCP4_EXAMPLE "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
#define V1_FFFF		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#define V1_TCP6_EXAMPLE "PROXY TCP6 " V1_FFFF " " V1_FFFF " 65535 65535\r\n"

/* Copy text into a header buffer; its length. */
static size_t text(unsigned char *dst, const char *s)
{
	size_t n = strlen(s);

	memcpy(dst, s, n);
	return n;
}

static void fill_v1(struct relay_case *c, int i, int port, int lport)
{
	char real[96];

	snprintf(real, sizeof(real), "PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", port, lport);
	switch (i) {
	case 0: /* the spec's examples pass through unchanged */
		c->inlen = text(c->in, V1_TCP4_EXAMPLE);
		c->outlen = text(c->out, V1_TCP4_EXAMPLE);
		break;
	case 1:
		c->inlen = text(c->in, V1_TCP6_EXAMPLE);
		c->outlen = text(c->out, V1_TCP6_EXAMPLE);
		break;
	case 2: /* v2 in, v1 out */
		c->inlen = v2_build(c->in, 0, AF_INET, "192.0.2.7", "203.0.113.9", 4242, 8443, NULL,
				    0);
		c->outlen = text(c->out, "PROXY TCP4 192.0.2.7 203.0.113.9 4242 8443\r\n");
		break;
	case 3: /* LOCAL keeps the real peer */
		c->inlen = v2_build(c->in, 1, AF_UNSPEC, NULL, NULL, 0, 0, NULL, 0);
		c->outlen = text(c->out, real);
		break;
	default: /* so does UNKNOWN */
		c->inlen = text(c->in, "PROXY UNKNOWN\r\n");
		c->outlen = text(c->out, real);
		break;
	}
}

static void fill_v2(struct relay_case *c, int i, int port, int lport)
{
	switch (i) {
	case 0:
		c->inlen = text(c->in, "PROXY TCP4 192.0.2.7 198.51.100.20 4242 443\r\n");
		c->outlen = v2_build(c->out, 0, AF_INET, "192.0.2.7", "198.51.100.20", 4242, 443,
				     NULL, 0);
		break;
	case 1:
		c->inlen = text(c->in, "PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\n");
		c->outlen = v2_build(c->out, 0, AF_INET6, "2001:db8::7", "2001:db8::1", 4242, 443,
				     NULL, 0);
		break;
	case 2:
		c->inlen = text(c->in, V1_TCP6_EXAMPLE);
		c->outlen = v2_build(c->out, 0, AF_INET6, V1_FFFF, V1_FFFF, 65535, 65535, NULL, 0);
		break;
	default:
		c->inlen = text(c->in, "PROXY UNKNOWN\r\n");
		c->outlen = v2_build(c->out, 0, AF_INET, "127.0.0.1", "127.0.0.1", (unsigned)port,
				     (unsigned)lport, NULL, 0);
		break;
	}
}

ENGINE_TEST(proxyproto, accept_relay_v1, 60)
{
	struct relay_case cs[5];

	relay(engine, "v1", cs, 5, fill_v1);
}

ENGINE_TEST(proxyproto, accept_relay_v2, 60)
{
	struct relay_case cs[4];

	relay(engine, "v2", cs, 4, fill_v2);
}

/* Send bytes, optionally half-close, and expect a reset (bounded by ms). */
static void bad_client(const struct fwd *f, const void *buf, size_t len, int fin, int ms,
		       const char *what)
{
	int fd = tcp_connect(AF_INET, f->port);

	cr_log_info("accept-proxy: %s", what);
	if (len > 0)
		send_all(fd, buf, len);
	/* Failing means a reset came already: recv still reports it. */
	if (fin)
		shutdown(fd, SHUT_WR);
	recv_expect_reset(fd, ms);
	close(fd);
}

/*
 * Bad headers reset the connection: malformed (not PROXY, a bad address,
 * a bad v2 version, a v1 line past 107 bytes), truncated then FIN, and
 * slow or missing ones, which must be reset by the 5 s deadline (bounded
 * wait 10 s). Meanwhile a good client is served.
 */
ENGINE_TEST(proxyproto, accept_bad_headers, 60)
{
	const char *flags[] = { "--accept-proxy", NULL };
	static const char http[] = "GET / HTTP/1.0\r\n\r\n";
	static const char badaddr[] = "PROXY TCP4 192.0.2.300 127.0.0.1 4242 80\r\n";
	static const char trunc1[] = "PROXY TCP4 192.0.2.7 ";
	unsigned char v2[64], longline[160];
	char good[96];
	int slow[3], fd;
	size_t v2len;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_pp(&f, engine, AF_INET, &s, flags);
	/* The slow ones first, so that their deadline runs during the rest. */
	slow[0] = tcp_connect(AF_INET, f.port);
	send_all(slow[0], "PROXY TCP4 192.0.2.7 127.0.0.1 ", 31);
	slow[1] = tcp_connect(AF_INET, f.port);
	send_all(slow[1], v2_sig, 8);
	slow[2] = tcp_connect(AF_INET, f.port); /* sends nothing */

	bad_client(&f, http, sizeof(http) - 1, 0, E2E_RESET_MS, "HTTP instead of a header");
	bad_client(&f, badaddr, sizeof(badaddr) - 1, 0, E2E_RESET_MS, "bad v1 address");
	memset(longline, '1', sizeof(longline));
	memcpy(longline, "PROXY TCP4 ", 11);
	bad_client(&f, longline, sizeof(longline), 0, E2E_RESET_MS, "v1 line past 107 bytes");
	v2len = v2_build(v2, 0, AF_INET, "192.0.2.7", "127.0.0.1", 4242, 80, NULL, 0);
	v2[12] = 0x31; /* version 3 */
	bad_client(&f, v2, v2len, 0, E2E_RESET_MS, "v2 version 3");
	bad_client(&f, trunc1, sizeof(trunc1) - 1, 1, E2E_RESET_MS, "truncated v1, then FIN");
	v2len = v2_build(v2, 0, AF_INET, "192.0.2.7", "127.0.0.1", 4242, 80, NULL, 0);
	bad_client(&f, v2, 20, 1, E2E_RESET_MS, "truncated v2, then FIN");

	snprintf(good, sizeof(good), "PROXY TCP4 192.0.2.7 127.0.0.1 4242 %d\r\n", f.port);
	fd = tcp_connect(AF_INET, f.port);
	send_hdr_echo(fd, good, strlen(good), 1, PP_PAYLOAD);
	close(fd);
	for (int i = 0; i < 3; i++) {
		cr_log_info("accept-proxy: slow client %d", i);
		recv_expect_reset(slow[i], PP_SLOW_MS);
		close(slow[i]);
	}
	fd = tcp_connect(AF_INET, f.port);
	send_hdr_echo(fd, good, strlen(good), 2, PP_PAYLOAD);
	close(fd);
	fwd_stop(&f);
	srv_stop(&s);
}

/*
 * The header's source is the client for allow/deny: with --allow
 * 192.0.2.0/24 a local client whose header says 192.0.2.7 is served, one
 * whose header says 198.51.100.1 is refused (logged, never upstream), and
 * so is a LOCAL header (the real peer, 127.0.0.1, is not allowed).
 */
ENGINE_TEST(proxyproto, accept_acl, 60)
{
	const char *flags[] = { "--accept-proxy", "--allow", "192.0.2.0/24", "-v", NULL };
	unsigned char v2[64];
	char hdr[96];
	struct srv s;
	struct fwd f;
	size_t len;
	int fd;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_pp(&f, engine, AF_INET, &s, flags);
	snprintf(hdr, sizeof(hdr), "PROXY TCP4 192.0.2.7 127.0.0.1 4242 %d\r\n", f.port);
	fd = tcp_connect(AF_INET, f.port);
	send_hdr_echo(fd, hdr, strlen(hdr), 1, PP_PAYLOAD);
	close(fd);
	cr_assert_eq(atomic_load(&s.accepted), 1, "upstream connections: %d",
		     atomic_load(&s.accepted));

	/* Header and payload in one write: a refused client may be reset right after. */
	snprintf(hdr, sizeof(hdr), "PROXY TCP4 198.51.100.1 127.0.0.1 5151 %d\r\nhello", f.port);
	fd = tcp_connect(AF_INET, f.port);
	send_all(fd, hdr, strlen(hdr));
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	cr_assert(fwd_log_wait(&f, E2E_RESET_MS, "198.51.100.1", "denied"),
		  "no -v line with 198.51.100.1 and denied; stderr:\n%s", fwd_stderr_tail(&f));

	len = v2_build(v2, 1, AF_UNSPEC, NULL, NULL, 0, 0, NULL, 0);
	memcpy(v2 + len, "hello", 5);
	fd = tcp_connect(AF_INET, f.port);
	send_all(fd, v2, len + 5);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	cr_assert_eq(atomic_load(&s.accepted), 1,
		     "refused clients reached the upstream: %d connections, expected 1",
		     atomic_load(&s.accepted));
	fwd_stop(&f);
	srv_stop(&s);
}

/* The header's source is the client for source hashing: same address, same upstream. */
ENGINE_TEST(proxyproto, accept_source_hash, 60)
{
	struct fwd_opts o = { .engine = engine, .threads = 1, .no_probe = 1 };
	char a[4][64], hdr[96];
	int first[12], seen[4] = { 0 }, distinct = 0;
	struct srv s[4];
	struct fwd f;
	int n = 0;

	for (int i = 0; i < 4; i++) {
		srv_start_id(&s[i], AF_INET, i);
		o.extra[n++] = "-r";
		o.extra[n++] = srv_addr(&s[i], a[i], sizeof(a[i]));
	}
	o.extra[n++] = "--balance";
	o.extra[n++] = "source";
	o.extra[n++] = "--accept-proxy";
	o.extra[n] = NULL;
	fwd_start(&f, &o);
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < 12; k++) {
			int fd = tcp_connect(AF_INET, f.port), id;

			snprintf(hdr, sizeof(hdr), "PROXY TCP4 192.0.2.%d 127.0.0.1 %d %d\r\n",
				 10 + k, 4000 + 100 * round + k, f.port);
			send_all(fd, hdr, strlen(hdr));
			id = id_read(fd);
			close(fd);
			cr_assert(id >= 0 && id < 4, "unknown upstream %d", id);
			if (round == 0) {
				first[k] = id;
				distinct += !seen[id]++;
			}
			cr_assert_eq(id, first[k],
				     "header source 192.0.2.%d went to upstream %d, earlier %d",
				     10 + k, id, first[k]);
		}
	}
	cr_assert(distinct >= 2,
		  "12 header sources all hashed to one upstream of 4: the real peer (all "
		  "127.0.0.1) was hashed instead?");
	fwd_stop(&f);
	for (int i = 0; i < 4; i++)
		srv_stop(&s[i]);
}
