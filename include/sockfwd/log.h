/*
 * Logging: one line per call on stderr, written with a single write(2) so
 * lines from different threads never interleave.
 */
#ifndef SOCKFWD_LOG_H
#define SOCKFWD_LOG_H

#include <stdarg.h>

enum sf_loglevel {
	SF_LOG_QUIET = 0, /* errors only */
	SF_LOG_NORMAL,	  /* start-up line and warnings */
	SF_LOG_VERBOSE,	  /* plus one line per connection close */
};

void sf_log_setlevel(int level);
int sf_log_level(void);

#define SF_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Informational line, shown at SF_LOG_NORMAL and above. */
void sf_log_info(const char *fmt, ...) SF_PRINTF(1, 2);
/* Per-connection detail, shown only at SF_LOG_VERBOSE. */
void sf_log_verbose(const char *fmt, ...) SF_PRINTF(1, 2);
/* Warning with ": strerror(errno)" appended. */
void sf_log_warn(const char *fmt, ...) SF_PRINTF(1, 2);
/* Warning without errno. */
void sf_log_warnx(const char *fmt, ...) SF_PRINTF(1, 2);
/* Error shown even when quiet, with strerror(errno). */
void sf_log_error(const char *fmt, ...) SF_PRINTF(1, 2);
/* Print an error and exit(status); errno appended for sf_fatal. */
void sf_fatal(int status, const char *fmt, ...) SF_PRINTF(2, 3) __attribute__((noreturn));
void sf_fatalx(int status, const char *fmt, ...) SF_PRINTF(2, 3) __attribute__((noreturn));

#endif
