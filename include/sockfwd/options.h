/*
 * Command line into a struct sf_config (config.h). Nothing here opens a
 * socket, reads a file or resolves a name, so every function is safe to
 * unit test.
 */
#ifndef SOCKFWD_OPTIONS_H
#define SOCKFWD_OPTIONS_H

#include <stddef.h>

#include "config.h"

#define SF_VERSION "0.1.0"

#define SF_DEFAULT_BUFFER_SIZE (64u * 1024)
#define SF_DEFAULT_PIPE_SIZE   (256u * 1024)
#define SF_MIN_BUFFER_SIZE     1024u
#define SF_MAX_BUFFER_SIZE     (64u * 1024 * 1024)
#define SF_MIN_PIPE_SIZE       4096u
#define SF_MAX_PIPE_SIZE       (1024u * 1024 * 1024)
#define SF_MAX_THREADS	       1024u

enum sf_opt_result {
	SF_OPT_RUN = 0, /* cfg is complete: run */
	SF_OPT_HELP,	/* -h: print sf_usage() to stdout, exit 0 */
	SF_OPT_VERSION, /* -V: print sf_version_string(), exit 0 */
};

/*
 * Parse argv into cfg, overwritten with the defaults first (free a used
 * one with sf_config_free before): globals, with their SF_G_* bits in gset; policy flags into
 * cfg->defaults, with their SF_P_* bits; -c FILE into cfg->file and -t
 * into cfg->check. Without -c, -l and -r build the one rule "default"
 * (SF_DEFAULT_RULE). Neither the file is read nor the defaults merged:
 * the caller runs sf_config_load (with -c), then sf_config_finish, and
 * frees cfg with sf_config_free.
 * Returns an enum sf_opt_result, or -EINVAL for a usage error with a
 * one-line message naming it in err. Only SF_OPT_RUN leaves anything in
 * cfg to free.
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
