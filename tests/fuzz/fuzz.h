/*
 * Helpers shared by the libFuzzer harnesses of tests/fuzz (docs/testing.md).
 *
 * A harness feeds one parser the fuzzer's bytes and checks, besides the
 * sanitizers' verdict, properties the parser promises (a round trip, an
 * oracle, bounds). A broken property is a crash: FUZZ_CHECK prints what
 * failed and aborts, so libFuzzer saves the input as crash-*.
 */
#ifndef SOCKFWD_TESTS_FUZZ_H
#define SOCKFWD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockfwd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__,        \
				#cond);                                                            \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * The input as a malloc'd C string of exactly size + 1 bytes, so reading
 * past its NUL is an AddressSanitizer report. Bytes after an embedded NUL
 * are unseen by the parser, as they would be in argv or a config value.
 * NULL when out of memory (the harness then skips the input).
 */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The message a parser put in err must be a C string within its buffer. */
static inline void fuzz_check_err(const char *err, size_t errlen)
{
	FUZZ_CHECK(memchr(err, '\0', errlen) != NULL, "err not terminated");
}

/*
 * What sf_config_finish promises of a config it accepts, checked the slow
 * way: every rule's policy complete, port ranges of one rule of one
 * length, and no two listen entries of one host spelling sharing a port.
 */
static inline void fuzz_check_finished(const struct sf_config *cfg)
{
	size_t i, j, k, l, n = 0;

	for (i = 0; i < cfg->nrules; i++) {
		const struct sf_rule_conf *r = &cfg->rules[i];

		FUZZ_CHECK(r->pol.connect_timeout_ms > 0, "rule %s: connect_timeout 0", r->name);
		FUZZ_CHECK(r->pol.balance >= SF_BAL_ROUNDROBIN && r->pol.balance <= SF_BAL_FIRST,
			   "rule %s: balance %d", r->name, r->pol.balance);
		for (j = 0; j < r->nlisten + r->nups; j++) {
			const struct sf_hostport *hp =
				j < r->nlisten ? &r->listen[j].hp : &r->ups[j - r->nlisten].hp;
			unsigned last = j < r->nlisten ? r->listen[j].port_last
						       : r->ups[j - r->nlisten].port_last;

			FUZZ_CHECK(hp->port <= last, "rule %s: range %u-%u", r->name, hp->port,
				   last);
			if (last == hp->port)
				continue;
			FUZZ_CHECK(n == 0 || n == last - hp->port + 1u,
				   "rule %s: ranges %zu and %u", r->name, n, last - hp->port + 1u);
			n = last - hp->port + 1u;
		}
		n = 0;
	}
	for (i = 0; i < cfg->nrules; i++)
		for (j = 0; j < cfg->rules[i].nlisten; j++)
			for (k = i; k < cfg->nrules; k++)
				for (l = k == i ? j + 1 : 0; l < cfg->rules[k].nlisten; l++) {
					const struct sf_listen_conf *a = &cfg->rules[i].listen[j];
					const struct sf_listen_conf *b = &cfg->rules[k].listen[l];

					/* A TCP and a UDP rule may share a port. */
					FUZZ_CHECK(cfg->rules[i].proto != cfg->rules[k].proto ||
							   strcmp(a->hp.host, b->hp.host) != 0 ||
							   a->port_last < b->hp.port ||
							   b->port_last < a->hp.port,
						   "listen %s:%u-%u overlaps %u-%u", a->hp.host,
						   a->hp.port, a->port_last, b->hp.port,
						   b->port_last);
				}
}

#endif
