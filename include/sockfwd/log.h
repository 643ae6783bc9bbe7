/*
 * Logging: one line per call on stderr, written with a single write(2) so
 * lines from different threads never interleave.
 *
 * Three shapes of line (docs/operations.md, "Logs"):
 *  - text:    "2026-11-29T13:40:01.123Z sockfwd: warning: MSG" (UTC, ms);
 *  - journal: "<4>warning: MSG" when stderr is the stream JOURNAL_STREAM
 *             names: journald stamps the time and reads the syslog priority;
 *  - json:    {"time":"...","level":"warning","msg":"MSG",...} per line
 *             (under journald too, then after the "<N>" prefix).
 * Errors and warnings carry a level word in text, every line in JSON.
 */
#ifndef SOCKFWD_LOG_H
#define SOCKFWD_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum sf_loglevel {
	SF_LOG_QUIET = 0, /* errors only */
	SF_LOG_NORMAL,	  /* start-up line and warnings */
	SF_LOG_VERBOSE,	  /* plus one line per connection close */
};

/* Severity of a line: syslog's numbers, as journald reads them from "<N>". */
enum sf_logprio {
	SF_PRIO_ERR = 3,
	SF_PRIO_WARNING = 4,
	SF_PRIO_INFO = 6,
};

/*
 * Look at JOURNAL_STREAM and stderr once, before the first line: when
 * stderr is the journal's stream, lines get "<N>" and no time of ours.
 */
void sf_log_init(void);
void sf_log_setlevel(int level);
int sf_log_level(void);
/* enum sf_logfmt (config.h): text or json; a reload may change it. */
void sf_log_setformat(int format);
int sf_log_journal(void);

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

/* A named field of a structured line. */
enum sf_kvtype { SF_KV_STR, SF_KV_U64, SF_KV_BOOL };

struct sf_log_kv {
	const char *key; /* a JSON-safe name: letters, digits, '_' */
	int type;	 /* enum sf_kvtype */
	const char *s;	 /* SF_KV_STR; NULL writes null */
	uint64_t u;	 /* SF_KV_U64, SF_KV_BOOL */
};

#define SF_KV_S(k, v)                                                                              \
	{                                                                                          \
		(k), SF_KV_STR, (v), 0                                                             \
	}
#define SF_KV_U(k, v)                                                                              \
	{                                                                                          \
		(k), SF_KV_U64, NULL, (v)                                                          \
	}
#define SF_KV_B(k, v)                                                                              \
	{                                                                                          \
		(k), SF_KV_BOOL, NULL, (v) != 0                                                    \
	}

/*
 * An informational line with fields, shown at minlevel and above: text
 * format writes fmt (which should carry the same information), JSON
 * writes msg and the fields.
 */
void sf_log_event(int minlevel, const char *msg, const struct sf_log_kv *kv, size_t nkv,
		  const char *fmt, ...) SF_PRINTF(5, 6);

/* Everything one line is made of; what sf_log_render reads. */
struct sf_log_rec {
	int prio;		    /* enum sf_logprio */
	struct timespec ts;	    /* CLOCK_REALTIME */
	const char *text;	    /* the formatted message */
	const char *msg;	    /* JSON "msg"; NULL: text */
	const struct sf_log_kv *kv; /* JSON fields after msg */
	size_t nkv;
};

#define SF_LOG_LINE_MAX 4096 /* one line, its newline included */

/*
 * Render r as one line ending in '\n' into buf (cap >= 64) in format
 * (enum sf_logfmt), journal style or not, NUL terminated. A message too
 * long is cut, and a JSON line stays valid JSON. Returns the length
 * without the NUL (< cap).
 */
size_t sf_log_render(char *buf, size_t cap, int format, int journal, const struct sf_log_rec *r);

/*
 * "2026-11-29T13:40:01.123Z" (UTC, milliseconds) into buf, NUL
 * terminated (cap >= 25). Returns the length, 24.
 */
size_t sf_log_time(char *buf, size_t cap, const struct timespec *ts);

/*
 * Does JOURNAL_STREAM's value ("DEV:INODE", decimal) name the file of
 * dev and ino? 1 or 0; 0 for NULL or a malformed value.
 */
int sf_log_journal_match(const char *env, uint64_t dev, uint64_t ino);

#endif
