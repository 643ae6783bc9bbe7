/*
 * The Prometheus text format writer (expo.h). A failed allocation is
 * remembered in e->err and later writes do nothing, so callers check once
 * at the end.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockfwd/expo.h"

void sf_expo_init(struct sf_expo *e) { memset(e, 0, sizeof(*e)); }

void sf_expo_free(struct sf_expo *e)
{
	free(e->buf);
	sf_expo_init(e);
}

char *sf_expo_take(struct sf_expo *e, size_t *len)
{
	char *b = e->buf;

	*len = e->len;
	sf_expo_init(e);
	return b;
}

/* Make room for n more bytes and the NUL. Returns 0 or -ENOMEM (also in e->err). */
static int reserve(struct sf_expo *e, size_t n)
{
	size_t cap = e->cap ? e->cap : 4096;
	char *b;

	if (e->err)
		return e->err;
	if (e->len + n + 1 <= e->cap)
		return 0;
	while (cap < e->len + n + 1)
		cap *= 2;
	b = realloc(e->buf, cap);
	if (b == NULL)
		return e->err = -ENOMEM;
	e->buf = b;
	e->cap = cap;
	return 0;
}

static void put(struct sf_expo *e, const char *s, size_t n)
{
	if (reserve(e, n) < 0)
		return;
	memcpy(e->buf + e->len, s, n);
	e->len += n;
	e->buf[e->len] = '\0';
}

static void puts_(struct sf_expo *e, const char *s) { put(e, s, strlen(s)); }

/*
 * Append s with backslash and newline escaped, and the double quote too
 * when quote is set (label values; HELP text keeps its quotes).
 */
static void escape(struct sf_expo *e, const char *s, int quote)
{
	const char *p;

	for (p = s; *p != '\0'; p++) {
		if (*p == '\\')
			put(e, "\\\\", 2);
		else if (*p == '\n')
			put(e, "\\n", 2);
		else if (*p == '"' && quote)
			put(e, "\\\"", 2);
		else
			put(e, p, 1);
	}
}

void sf_expo_escape_label(struct sf_expo *e, const char *s) { escape(e, s, 1); }

void sf_expo_family(struct sf_expo *e, const char *name, const char *type, const char *help)
{
	puts_(e, "# HELP ");
	puts_(e, name);
	put(e, " ", 1);
	escape(e, help, 0);
	puts_(e, "\n# TYPE ");
	puts_(e, name);
	put(e, " ", 1);
	puts_(e, type);
	put(e, "\n", 1);
}

/* name{labels} and a space, ready for the value. */
static void sample_head(struct sf_expo *e, const char *name, const char *const *labels)
{
	size_t i;

	puts_(e, name);
	if (labels != NULL && labels[0] != NULL) {
		put(e, "{", 1);
		for (i = 0; labels[i] != NULL; i += 2) {
			if (i > 0)
				put(e, ",", 1);
			puts_(e, labels[i]);
			put(e, "=\"", 2);
			escape(e, labels[i + 1] != NULL ? labels[i + 1] : "", 1);
			put(e, "\"", 1);
		}
		put(e, "}", 1);
	}
	put(e, " ", 1);
}

void sf_expo_u64(struct sf_expo *e, const char *name, const char *const *labels, uint64_t v)
{
	char num[24];

	sample_head(e, name, labels);
	snprintf(num, sizeof(num), "%" PRIu64 "\n", v);
	puts_(e, num);
}

void sf_expo_double(struct sf_expo *e, const char *name, const char *const *labels, double v)
{
	char num[40];

	sample_head(e, name, labels);
	if (isnan(v))
		snprintf(num, sizeof(num), "NaN\n");
	else if (isinf(v))
		snprintf(num, sizeof(num), "%s\n", v > 0 ? "+Inf" : "-Inf");
	else
		snprintf(num, sizeof(num), "%.17g\n", v);
	puts_(e, num);
}
