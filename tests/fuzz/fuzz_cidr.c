/*
 * CIDR lists (--allow, --deny, allow = [...]): the input is a list of
 * blocks, one a line. Each goes through sf_cidr_parse; the ones that
 * parse make a set (sf_cidrset_new).
 *
 * Properties: a parsed block has its host bits cleared and formats
 * (sf_cidr_format) to text that parses back to the same block; the set
 * answers every probe as a linear scan of the blocks does. Probes are
 * each block's first and last address and their neighbours, in IPv6
 * form and, when IPv4-mapped, in IPv4 form too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include "fuzz.h"
#include "sockfwd/acl.h"

#define MAX_INPUT  4096
#define MAX_BLOCKS 64

static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Does a (16 bytes) fall in c? */
static int block_has(const struct sf_cidr *c, const uint8_t a[16])
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;

	if (memcmp(a, c->addr, full) != 0)
		return 0;
	return rest == 0 || ((a[full] ^ c->addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static void check_block(const struct sf_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], err[256];
	struct sf_cidr again;
	unsigned i;

	FUZZ_CHECK(c->prefix <= 128, "prefix %u", c->prefix);
	for (i = c->prefix; i < 128; i++)
		FUZZ_CHECK(!(c->addr[i / 8] & (0x80 >> (i % 8))), "host bit %u set", i);
	sf_cidr_format(c, buf, sizeof(buf));
	FUZZ_CHECK(sf_cidr_parse(buf, &again, err, sizeof(err)) == 0, "'%s' does not reparse: %s",
		   buf, err);
	FUZZ_CHECK(again.prefix == c->prefix && memcmp(again.addr, c->addr, 16) == 0,
		   "'%s' reparses as another block", buf);
}

/* a + delta (delta -1 or +1), wrapping. */
static void add(uint8_t a[16], int delta)
{
	int i;

	for (i = 15; i >= 0; i--) {
		a[i] = (uint8_t)(a[i] + delta);
		if ((delta > 0 && a[i] != 0) || (delta < 0 && a[i] != 0xff))
			break;
	}
}

static void probe(const struct sf_cidrset *set, const struct sf_cidr *v, size_t n,
		  const uint8_t a[16])
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	int want = 0;
	size_t i;

	for (i = 0; i < n && !want; i++)
		want = block_has(&v[i], a);
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	memcpy(&s6.sin6_addr, a, 16);
	FUZZ_CHECK(sf_cidrset_match(set, (struct sockaddr *)&s6) == want, "IPv6 probe, want %d",
		   want);
	if (memcmp(a, mapped, sizeof(mapped)) != 0)
		return;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	memcpy(&s4.sin_addr, a + 12, 4);
	FUZZ_CHECK(sf_cidrset_match(set, (struct sockaddr *)&s4) == want, "IPv4 probe, want %d",
		   want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_cidr v[MAX_BLOCKS];
	struct sf_cidrset *set;
	char err[256], *s, *line, *save = NULL;
	uint8_t a[16];
	size_t n = 0, i;
	unsigned b;

	if (size > MAX_INPUT)
		return 0;
	if ((s = fuzz_cstr(data, size)) == NULL)
		return 0;
	for (line = strtok_r(s, "\n", &save); line != NULL && n < MAX_BLOCKS;
	     line = strtok_r(NULL, "\n", &save)) {
		if (sf_cidr_parse(line, &v[n], err, sizeof(err)) == 0) {
			check_block(&v[n]);
			n++;
		} else {
			fuzz_check_err(err, sizeof(err));
		}
	}
	free(s);

	set = sf_cidrset_new(v, n);
	FUZZ_CHECK(set != NULL, "cidrset_new: %d", errno);
	for (i = 0; i < n; i++) {
		/* First address, the one before, last, the one after. */
		memcpy(a, v[i].addr, 16);
		probe(set, v, n, a);
		add(a, -1);
		probe(set, v, n, a);
		memcpy(a, v[i].addr, 16);
		for (b = v[i].prefix; b < 128; b++)
			a[b / 8] |= (uint8_t)(0x80 >> (b % 8));
		probe(set, v, n, a);
		add(a, +1);
		probe(set, v, n, a);
	}
	sf_cidrset_free(set);
	return 0;
}
