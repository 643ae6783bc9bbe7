/*
 * The Prometheus text exposition format 0.0.4, written into a growing
 * buffer: a family's HELP and TYPE lines, then its samples. Label values
 * are escaped as the format asks (backslash, double quote, newline), so
 * any rule name is safe in a label.
 */
#ifndef SOCKFWD_EXPO_H
#define SOCKFWD_EXPO_H

#include <stddef.h>
#include <stdint.h>

#define SF_EXPO_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct sf_expo {
	char *buf; /* malloc'd, NUL terminated; NULL until the first write */
	size_t len;
	size_t cap;
	int err; /* -ENOMEM once a write failed: the text is incomplete */
};

void sf_expo_init(struct sf_expo *e);
/* Free the buffer; e may be reused after sf_expo_init. */
void sf_expo_free(struct sf_expo *e);
/* Hand the buffer over (the caller frees it) and reset e. */
char *sf_expo_take(struct sf_expo *e, size_t *len);

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge). */
void sf_expo_family(struct sf_expo *e, const char *name, const char *type, const char *help);

/*
 * One sample: name{k1="v1",...} value. labels holds key, value pairs
 * and ends with a NULL key; it may be NULL for no label.
 */
void sf_expo_u64(struct sf_expo *e, const char *name, const char *const *labels, uint64_t v);
void sf_expo_double(struct sf_expo *e, const char *name, const char *const *labels, double v);

/* Append s escaped as a label value (without the quotes). */
void sf_expo_escape_label(struct sf_expo *e, const char *s);

#endif
