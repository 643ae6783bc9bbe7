/*
 * PROXY v1 and v2 header decoder, the accept side (--accept-proxy):
 * sf_proxy_decode on the bytes a client sends first.
 *
 * Beyond no crash, the decoder promises an answer that only grows more
 * certain as bytes arrive (proxy.h): for every prefix of the input,
 * - a header found in the prefix is the one found in the whole input,
 * - -EPROTO for a prefix stays -EPROTO for the whole input,
 * - a prefix shorter than the header found in the whole asks for more (0).
 * A decoded TCP header encodes back (sf_proxy_encode) to one that decodes
 * to the same addresses.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "sockfwd/proxy.h"

/* Headers are at most SF_PROXY_V2_MAX; more input only repeats a verdict. */
#define MAX_INPUT 1024

static void check_same(const struct sf_proxy_info *a, const struct sf_proxy_info *b)
{
	FUZZ_CHECK(a->version == b->version && a->local == b->local, "version/local differ");
	if (a->local)
		return;
	FUZZ_CHECK(a->src.len == b->src.len && memcmp(&a->src.ss, &b->src.ss, a->src.len) == 0,
		   "src differs");
	FUZZ_CHECK(a->dst.len == b->dst.len && memcmp(&a->dst.ss, &b->dst.ss, a->dst.len) == 0,
		   "dst differs");
}

static void check_info(const struct sf_proxy_info *in)
{
	const struct sf_sockaddr *e[2] = { &in->src, &in->dst };
	int i;

	FUZZ_CHECK(in->version == 1 || in->version == 2, "version %d", in->version);
	if (in->local)
		return;
	for (i = 0; i < 2; i++) {
		int fam = e[i]->ss.ss_family;

		FUZZ_CHECK((fam == AF_INET && e[i]->len == sizeof(struct sockaddr_in)) ||
				   (fam == AF_INET6 && e[i]->len == sizeof(struct sockaddr_in6)),
			   "family %d len %u", fam, (unsigned)e[i]->len);
	}
	FUZZ_CHECK(in->src.ss.ss_family == in->dst.ss.ss_family, "mixed families");
}

/*
 * Encode what was decoded and decode that: the same endpoints. The
 * encoder may unmap an IPv4-mapped pair to TCP4, so compare as text.
 */
static void check_roundtrip(const struct sf_proxy_info *in)
{
	uint8_t buf[SF_PROXY_ENC_MAX];
	struct sf_proxy_info again;
	char a[SF_ADDRSTRLEN], b[SF_ADDRSTRLEN];
	ssize_t n, m;

	n = sf_proxy_encode(in->version, (const struct sockaddr *)&in->src.ss,
			    (const struct sockaddr *)&in->dst.ss, buf, sizeof(buf));
	FUZZ_CHECK(n > 0, "encode %zd", n);
	m = sf_proxy_decode(buf, (size_t)n, &again);
	FUZZ_CHECK(m == n, "decode of encoded %zd, want %zd", m, n);
	FUZZ_CHECK(!again.local, "encoded header decodes as local");
	if (in->src.ss.ss_family == again.src.ss.ss_family) {
		check_same(in, &again);
		return;
	}
	/* Mapped IPv6 in, TCP4 out: the ports and the IPv4 text agree. */
	sf_addr_format((const struct sockaddr *)&again.src.ss, a, sizeof(a));
	sf_addr_format((const struct sockaddr *)&in->src.ss, b, sizeof(b));
	FUZZ_CHECK(strstr(b, "::ffff:") != NULL, "family changed for %s -> %s", b, a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_proxy_info full, part;
	uint8_t *buf;
	ssize_t r, rk;
	size_t k;

	if (size > MAX_INPUT)
		size = MAX_INPUT;
	/* Exactly size bytes: any read past the end is a heap overflow. */
	buf = malloc(size ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	memset(&full, 0x5a, sizeof(full));
	r = sf_proxy_decode(buf, size, &full);
	FUZZ_CHECK(r == -EPROTO || (r >= 0 && (size_t)r <= size), "decode returned %zd", r);
	if (r > 0) {
		check_info(&full);
		FUZZ_CHECK(full.version == 1 ? r <= SF_PROXY_V1_MAX : r <= SF_PROXY_V2_MAX,
			   "header of %zd bytes", r);
		if (!full.local)
			check_roundtrip(&full);
	}
	/* Each prefix, placed at the end of buf so an over-read is caught. */
	for (k = 0; k < size; k++) {
		memmove(buf + size - k, data, k);
		memset(&part, 0x5a, sizeof(part));
		rk = sf_proxy_decode(buf + size - k, k, &part);
		FUZZ_CHECK(rk == -EPROTO || (rk >= 0 && (size_t)rk <= k), "prefix %zu: %zd", k, rk);
		if (rk == -EPROTO)
			FUZZ_CHECK(r == -EPROTO, "prefix %zu rejected, whole input gave %zd", k, r);
		if (rk > 0) {
			FUZZ_CHECK(rk == r, "prefix %zu found %zd bytes, whole input %zd", k, rk,
				   r);
			check_same(&part, &full);
		}
		if (r > 0 && k < (size_t)r)
			FUZZ_CHECK(rk == 0, "prefix %zu of a %zd-byte header gave %zd", k, r, rk);
	}
	free(buf);
	return 0;
}
