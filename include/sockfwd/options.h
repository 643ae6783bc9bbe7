/*
 * Command line into a plain struct. Nothing here opens a socket or
 * resolves a name, so every function is safe to unit test.
 */
#ifndef SOCKFWD_OPTIONS_H
#define SOCKFWD_OPTIONS_H

#include <stddef.h>

#include "addr.h"

#define SF_VERSION "0.1.0"

#define SF_DEFAULT_BUFFER_SIZE (64u * 1024)
#define SF_DEFAULT_PIPE_SIZE   (256u * 1024)
#define SF_MIN_BUFFER_SIZE     1024u
#define SF_MAX_BUFFER_SIZE     (64u * 1024 * 1024)
#define SF_MIN_PIPE_SIZE       4096u
#define SF_MAX_PIPE_SIZE       (1024u * 1024 * 1024)
#define SF_MAX_THREADS	       1024u

struct sf_engine;

struct sf_config {
	struct sf_hostport listen;
	struct sf_hostport remote;
	const struct sf_engine *engine;
	unsigned threads;
	size_t buffer_size;
	size_t pipe_size;
	int loglevel; /* enum sf_loglevel */
};

enum sf_opt_result {
	SF_OPT_RUN = 0, /* cfg is complete: run */
	SF_OPT_HELP,	/* -h: print sf_usage() to stdout, exit 0 */
	SF_OPT_VERSION, /* -V: print sf_version_string(), exit 0 */
};

/*
 * Parse argv into cfg (defaults first). Returns an enum sf_opt_result, or
 * -EINVAL for a usage error with a one-line message naming it in err.
 */
int sf_options_parse(int argc, char **argv, struct sf_config *cfg, char *err, size_t errlen);

/*
 * Parse a size: decimal digits with an optional k, m or g suffix (powers
 * of 1024, any case, optionally followed by "b" or "ib").
 * Returns 0, -EINVAL for a malformed string, -ERANGE when it overflows.
 */
int sf_parse_size(const char *s, size_t *out);

/* The --help text. */
const char *sf_usage(void);
/* "sockfwd 0.1.0 (engines: naive epoll splice)" into buf; returns buf. */
char *sf_version_string(char *buf, size_t len);

#endif
