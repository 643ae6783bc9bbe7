/*
 * Sizes and durations: sf_parse_size (--buffer-size, buffer_size) and
 * sf_parse_duration (--connect-timeout, fail_timeout...), each against
 * an oracle written from its contract in options.h and config.h with
 * 128-bit arithmetic, so an overflow or a wrongly accepted suffix in the
 * parser shows as a disagreement. USER[:GROUP] (sf_user_parse) and the
 * log format ride along: small parsers of the same values.
 */
#include <errno.h>
#include <strings.h>

#include "core/config_priv.h"
#include "fuzz.h"
#include "sockfwd/config.h"
#include "sockfwd/options.h"

#define MAX_INPUT 256

typedef unsigned __int128 u128;

/* Leading decimal digits of s into *v, saturating at 2^127; returns their count. */
static size_t digits(const char *s, u128 *v)
{
	const u128 cap = (u128)1 << 127;
	size_t n = 0;

	*v = 0;
	for (; s[n] >= '0' && s[n] <= '9'; n++)
		*v = *v >= cap / 16 ? cap : *v * 10 + (unsigned)(s[n] - '0');
	return n;
}

/*
 * The size contract: digits, then optionally k, m or g in any case
 * (1024, 1024^2, 1024^3) optionally followed by "b" or "ib" in any case.
 * Digits that overflow 64 bits are -ERANGE whatever follows.
 */
static int size_oracle(const char *s, size_t *out)
{
	u128 v, mult = 1;
	size_t n = digits(s, &v);
	const char *p = s + n;

	if (n == 0)
		return -EINVAL;
	if (v > UINT64_MAX)
		return -ERANGE;
	if (*p == 'k' || *p == 'K')
		mult = (u128)1 << 10;
	else if (*p == 'm' || *p == 'M')
		mult = (u128)1 << 20;
	else if (*p == 'g' || *p == 'G')
		mult = (u128)1 << 30;
	if (mult > 1) {
		p++;
		if (strcasecmp(p, "b") == 0 || strcasecmp(p, "ib") == 0)
			p += strlen(p);
	}
	if (*p != '\0')
		return -EINVAL;
	if (v * mult > SIZE_MAX)
		return -ERANGE;
	*out = (size_t)(v * mult);
	return 0;
}

/* The duration contract: digits, then "", "s", "ms", "m" or "h"; over a year is -ERANGE. */
static int duration_oracle(const char *s, uint64_t *ms)
{
	u128 v, unit;
	size_t n = digits(s, &v);
	const char *p = s + n;

	if (n == 0)
		return -EINVAL;
	if (*p == '\0' || strcmp(p, "s") == 0)
		unit = 1000;
	else if (strcmp(p, "ms") == 0)
		unit = 1;
	else if (strcmp(p, "m") == 0)
		unit = 60000;
	else if (strcmp(p, "h") == 0)
		unit = 3600000;
	else
		return -EINVAL;
	if (v > SF_DURATION_MAX_MS || v * unit > SF_DURATION_MAX_MS)
		return -ERANGE;
	*ms = (uint64_t)(v * unit);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t z = 7, zo = 7;
	uint64_t ms = 7, mso = 7;
	char user[SF_USER_MAX], err[256], *s;
	int r, ro;

	if (size > MAX_INPUT)
		return 0;
	if ((s = fuzz_cstr(data, size)) == NULL)
		return 0;

	r = sf_parse_size(s, &z);
	ro = size_oracle(s, &zo);
	FUZZ_CHECK(r == ro, "size '%s': %d, oracle %d", s, r, ro);
	FUZZ_CHECK(z == zo, "size '%s': %zu, oracle %zu", s, z, zo);

	r = sf_parse_duration(s, &ms);
	ro = duration_oracle(s, &mso);
	FUZZ_CHECK(r == ro, "duration '%s': %d, oracle %d", s, r, ro);
	FUZZ_CHECK(ms == mso, "duration '%s': %llu ms, oracle %llu", s, (unsigned long long)ms,
		   (unsigned long long)mso);

	if (sf_user_parse(s, user, sizeof(user), err, sizeof(err)) == 0) {
		FUZZ_CHECK(strcmp(user, s) == 0, "user '%s' copied as '%s'", s, user);
		FUZZ_CHECK(user[0] != '\0' && user[0] != ':', "user '%s'", user);
	} else {
		fuzz_check_err(err, sizeof(err));
	}
	r = sf_logfmt_parse(s);
	FUZZ_CHECK(r == -EINVAL || r == SF_LOGFMT_TEXT || r == SF_LOGFMT_JSON, "logfmt %d", r);
	free(s);
	return 0;
}
