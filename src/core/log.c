/*
 * Logging to stderr. Each line is rendered into one buffer and written
 * with a single write(2), so lines from worker threads never interleave.
 * Rendering (sf_log_render) touches no global state, so the unit tests
 * check it without stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockfwd/config.h"
#include "sockfwd/log.h"

#define MSG_MAX 1024 /* the formatted message, before escaping */

/* Set by the main thread, read by every thread: relaxed atomics. */
static int sf_loglevel = SF_LOG_NORMAL;
static int sf_logformat = SF_LOGFMT_TEXT;
static int sf_logjournal;

void sf_log_setlevel(int level) { __atomic_store_n(&sf_loglevel, level, __ATOMIC_RELAXED); }

int sf_log_level(void) { return __atomic_load_n(&sf_loglevel, __ATOMIC_RELAXED); }

void sf_log_setformat(int format) { __atomic_store_n(&sf_logformat, format, __ATOMIC_RELAXED); }

int sf_log_journal(void) { return __atomic_load_n(&sf_logjournal, __ATOMIC_RELAXED); }

int sf_log_journal_match(const char *env, uint64_t dev, uint64_t ino)
{
	unsigned long long d, i;
	char *end;

	if (env == NULL || *env < '0' || *env > '9')
		return 0;
	errno = 0;
	d = strtoull(env, &end, 10);
	if (errno != 0 || *end != ':' || end[1] < '0' || end[1] > '9')
		return 0;
	i = strtoull(end + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return 0;
	return d == dev && i == ino;
}

/*
 * systemd sets JOURNAL_STREAM for a service whose stderr (or stdout) is
 * connected to journald; a child that inherits the variable but not the
 * stream (stderr redirected to a file) must not be fooled, hence the
 * device and inode comparison systemd.exec(5) asks for.
 */
void sf_log_init(void)
{
	struct stat st;

	if (fstat(STDERR_FILENO, &st) == 0 &&
	    sf_log_journal_match(getenv("JOURNAL_STREAM"), (uint64_t)st.st_dev,
				 (uint64_t)st.st_ino))
		__atomic_store_n(&sf_logjournal, 1, __ATOMIC_RELAXED);
}

size_t sf_log_time(char *buf, size_t cap, const struct timespec *ts)
{
	struct tm tm;
	time_t t = ts->tv_sec;
	int n;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (long)(ts->tv_nsec / 1000000));
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static const char *prio_word(int prio)
{
	switch (prio) {
	case SF_PRIO_ERR:
		return "error";
	case SF_PRIO_WARNING:
		return "warning";
	default:
		return "info";
	}
}

/*
 * A line being built. Everything but the last RESERVE bytes is for
 * content; the reserve always holds what closes the line (a string's
 * quote, the object's brace, the newline, the NUL), so a cut line stays
 * valid.
 */
#define RESERVE 4

struct lbuf {
	char *p;
	size_t len;
	size_t cap;
	int full; /* something did not fit: add nothing more */
};

static int lb_fits(const struct lbuf *b, size_t n)
{
	return !b->full && b->len + n + RESERVE <= b->cap;
}

/* Append n bytes whole, or nothing and mark the line full. */
static void lb_add(struct lbuf *b, const char *s, size_t n)
{
	if (!lb_fits(b, n)) {
		b->full = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void lb_str(struct lbuf *b, const char *s) { lb_add(b, s, strlen(s)); }

/* The closing bytes: from the reserve, never refused. */
static void lb_close(struct lbuf *b, const char *s)
{
	size_t n = strlen(s);

	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/*
 * Length of the valid UTF-8 sequence at s (1 to 4), or 0 when s does not
 * start one (a stray continuation byte, an overlong form, a surrogate,
 * past U+10FFFF, or cut short by the end of the string).
 */
static size_t utf8_len(const unsigned char *s)
{
	uint32_t c;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n;
}

/*
 * A JSON string: quotes, backslash and control characters escaped,
 * invalid UTF-8 replaced by U+FFFD, so any parser takes the line. Cut at
 * a whole character when it does not fit; the closing quote always does.
 */
static void lb_json_str(struct lbuf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	char esc[8];

	lb_add(b, "\"", 1);
	if (b->full)
		return;
	while (*s != '\0' && !b->full) {
		size_t n = 1;

		if (*s == '"' || *s == '\\') {
			esc[0] = '\\', esc[1] = (char)*s;
			lb_add(b, esc, 2);
		} else if (*s == '\n') {
			lb_add(b, "\\n", 2);
		} else if (*s == '\r') {
			lb_add(b, "\\r", 2);
		} else if (*s == '\t') {
			lb_add(b, "\\t", 2);
		} else if (*s < 0x20 || *s == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *s);
			lb_add(b, esc, 6);
		} else if ((n = utf8_len(s)) == 0) {
			lb_add(b, "\\ufffd", 6);
			n = 1;
		} else {
			lb_add(b, (const char *)s, n);
		}
		s += n;
	}
	lb_close(b, "\"");
}

/* Text: control characters as \n, \t, \xNN, so one record stays one line. */
static void lb_text(struct lbuf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	char esc[8];

	for (; *s != '\0' && !b->full; s++) {
		if (*s == '\n')
			lb_add(b, "\\n", 2);
		else if (*s == '\t')
			lb_add(b, "\\t", 2);
		else if (*s < 0x20 || *s == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", *s);
			lb_add(b, esc, 4);
		} else
			lb_add(b, (const char *)s, 1);
	}
}

/* ,"key":value; the whole field or none of it. */
static void lb_json_kv(struct lbuf *b, const struct sf_log_kv *kv)
{
	char num[24];

	/* Key, quotes and colon, and room for a number or a string's quote. */
	if (!lb_fits(b, strlen(kv->key) + 4 + sizeof(num))) {
		b->full = 1;
		return;
	}
	lb_add(b, ",\"", 2);
	lb_str(b, kv->key);
	lb_add(b, "\":", 2);
	switch (kv->type) {
	case SF_KV_STR:
		if (kv->s == NULL)
			lb_str(b, "null");
		else
			lb_json_str(b, kv->s);
		break;
	case SF_KV_BOOL:
		lb_str(b, kv->u ? "true" : "false");
		break;
	default:
		snprintf(num, sizeof(num), "%" PRIu64, kv->u);
		lb_str(b, num);
		break;
	}
}

size_t sf_log_render(char *buf, size_t cap, int format, int journal, const struct sf_log_rec *r)
{
	struct lbuf b = { buf, 0, cap, 0 };
	char prefix[48];
	size_t i;

	if (journal) {
		snprintf(prefix, sizeof(prefix), "<%d>", r->prio);
		lb_str(&b, prefix);
	}
	if (format == SF_LOGFMT_JSON) {
		sf_log_time(prefix, sizeof(prefix), &r->ts);
		lb_str(&b, "{\"time\":\"");
		lb_str(&b, prefix);
		lb_str(&b, "\",\"level\":\"");
		lb_str(&b, prio_word(r->prio));
		lb_str(&b, "\",\"msg\":");
		lb_json_str(&b, r->msg != NULL ? r->msg : r->text);
		for (i = 0; i < r->nkv; i++)
			lb_json_kv(&b, &r->kv[i]);
		lb_close(&b, "}\n");
		buf[b.len] = '\0';
		return b.len;
	}
	if (!journal) {
		sf_log_time(prefix, sizeof(prefix), &r->ts);
		lb_str(&b, prefix);
		lb_str(&b, " sockfwd: ");
	}
	if (r->prio <= SF_PRIO_WARNING) {
		lb_str(&b, prio_word(r->prio));
		lb_str(&b, ": ");
	}
	lb_text(&b, r->text);
	lb_close(&b, "\n");
	buf[b.len] = '\0';
	return b.len;
}

/* Render and write one line: the message is "text[: strerror(err)]". */
static void log_write(int prio, int err, const char *msg, const struct sf_log_kv *kv, size_t nkv,
		      const char *fmt, va_list ap)
{
	char text[MSG_MAX], line[SF_LOG_LINE_MAX];
	struct sf_log_rec r = { .prio = prio, .text = text, .msg = msg, .kv = kv, .nkv = nkv };
	size_t n;
	int m;

	m = vsnprintf(text, sizeof(text), fmt, ap);
	n = m < 0 ? 0 : (size_t)m < sizeof(text) ? (size_t)m : sizeof(text) - 1;
	text[n] = '\0';
	/* Room for the reason even when the message was cut. */
	if (err && n > sizeof(text) - 128)
		n = sizeof(text) - 128;
	if (err)
		snprintf(text + n, sizeof(text) - n, ": %s", strerror(err));
	clock_gettime(CLOCK_REALTIME, &r.ts);
	n = sf_log_render(line, sizeof(line), __atomic_load_n(&sf_logformat, __ATOMIC_RELAXED),
			  sf_log_journal(), &r);
	/* Nothing sensible to do if stderr is gone. */
	while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
		;
}

#define LOG_BODY(minlevel, prio, err)                                                              \
	do {                                                                                       \
		va_list ap;                                                                        \
		int saved = errno;                                                                 \
		if (sf_log_level() < (minlevel))                                                   \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		log_write((prio), (err) ? saved : 0, NULL, NULL, 0, fmt, ap);                      \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	} while (0)

void sf_log_info(const char *fmt, ...) { LOG_BODY(SF_LOG_NORMAL, SF_PRIO_INFO, 0); }

void sf_log_verbose(const char *fmt, ...) { LOG_BODY(SF_LOG_VERBOSE, SF_PRIO_INFO, 0); }

void sf_log_warn(const char *fmt, ...) { LOG_BODY(SF_LOG_NORMAL, SF_PRIO_WARNING, 1); }

void sf_log_warnx(const char *fmt, ...) { LOG_BODY(SF_LOG_NORMAL, SF_PRIO_WARNING, 0); }

void sf_log_error(const char *fmt, ...) { LOG_BODY(SF_LOG_QUIET, SF_PRIO_ERR, 1); }

void sf_log_event(int minlevel, const char *msg, const struct sf_log_kv *kv, size_t nkv,
		  const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (sf_log_level() < minlevel)
		return;
	va_start(ap, fmt);
	log_write(SF_PRIO_INFO, 0, msg, kv, nkv, fmt, ap);
	va_end(ap);
	errno = saved;
}

void sf_fatal(int status, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	log_write(SF_PRIO_ERR, saved, NULL, NULL, 0, fmt, ap);
	va_end(ap);
	exit(status);
}

void sf_fatalx(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(SF_PRIO_ERR, 0, NULL, NULL, 0, fmt, ap);
	va_end(ap);
	exit(status);
}
