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

#endif
