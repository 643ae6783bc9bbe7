/*
 * Logging to stderr. Each line is formatted into one buffer and written
 * with a single write(2), so lines from worker threads never interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockfwd/log.h"

static int sf_loglevel = SF_LOG_NORMAL;

void sf_log_setlevel(int level) { sf_loglevel = level; }

int sf_log_level(void) { return sf_loglevel; }

/* Format "sockfwd: <msg>[: strerror(err)]\n" and write it in one call. */
static void log_emit(int err, const char *fmt, va_list ap)
{
	char line[1024];
	int n, m;

	n = snprintf(line, sizeof(line), "sockfwd: ");
	m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n = (m < 0) ? n : n + m;
	if (n > (int)sizeof(line) - 64)
		n = sizeof(line) - 64;
	if (err)
		n += snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
	line[n++] = '\n';
	/* Nothing sensible to do if stderr is gone. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

#define LOG_BODY(minlevel, err)                                                                    \
	do {                                                                                       \
		va_list ap;                                                                        \
		int saved = errno;                                                                 \
		if (sf_loglevel < (minlevel))                                                      \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		log_emit((err) ? saved : 0, fmt, ap);                                              \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	} while (0)

void sf_log_info(const char *fmt, ...) { LOG_BODY(SF_LOG_NORMAL, 0); }

void sf_log_verbose(const char *fmt, ...) { LOG_BODY(SF_LOG_VERBOSE, 0); }

void sf_log_warn(const char *fmt, ...) { LOG_BODY(SF_LOG_NORMAL, 1); }

void sf_log_warnx(const char *fmt, ...) { LOG_BODY(SF_LOG_NORMAL, 0); }

void sf_log_error(const char *fmt, ...) { LOG_BODY(SF_LOG_QUIET, 1); }

void sf_fatal(int status, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	log_emit(saved, fmt, ap);
	va_end(ap);
	exit(status);
}

void sf_fatalx(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(0, fmt, ap);
	va_end(ap);
	exit(status);
}
