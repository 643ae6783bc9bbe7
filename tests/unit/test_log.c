/*
 * log.h: how a line is rendered (text, journal, JSON), JSON escaping and
 * cutting, ISO-8601 times and the JOURNAL_STREAM match. Every JSON line
 * is checked with a strict parser of flat objects, written here.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sockfwd/config.h"
#include "sockfwd/log.h"

/* 2026-11-29T13:40:01.123Z */
#define T_SEC 1795959601
#define T_NS  123456789

static size_t render(char *buf, size_t cap, int format, int journal, int prio, const char *text,
		     const char *msg, const struct sf_log_kv *kv, size_t nkv)
{
	struct sf_log_rec r = { .prio = prio, .text = text, .msg = msg, .kv = kv, .nkv = nkv };

	r.ts.tv_sec = T_SEC;
	r.ts.tv_nsec = T_NS;
	return sf_log_render(buf, cap, format, journal, &r);
}

/* ---- a strict parser of one flat JSON object ---- */

struct jp {
	const char *p;
	const char *end;
};

/* A JSON string; its decoded bytes (\uXXXX as UTF-8) into out when not NULL. */
static int jp_string(struct jp *j, char *out, size_t cap)
{
	size_t n = 0;

	if (j->p >= j->end || *j->p != '"')
		return 0;
	j->p++;
	while (j->p < j->end && *j->p != '"') {
		unsigned char c = (unsigned char)*j->p;
		char ch[4];
		size_t k = 1;

		if (c < 0x20)
			return 0; /* raw control character */
		if (c == '\\') {
			if (++j->p >= j->end)
				return 0;
			switch (*j->p) {
			case '"':
			case '\\':
			case '/':
				ch[0] = *j->p;
				break;
			case 'n':
				ch[0] = '\n';
				break;
			case 'r':
				ch[0] = '\r';
				break;
			case 't':
				ch[0] = '\t';
				break;
			case 'b':
				ch[0] = '\b';
				break;
			case 'f':
				ch[0] = '\f';
				break;
			case 'u': {
				unsigned v;

				if (j->end - j->p < 5)
					return 0;
				for (int d = 1; d <= 4; d++)
					if (!isxdigit((unsigned char)j->p[d]))
						return 0;
				sscanf(j->p + 1, "%4x", &v);
				j->p += 4;
				if (v < 0x80) {
					ch[0] = (char)v;
				} else if (v < 0x800) {
					ch[0] = (char)(0xc0 | (v >> 6));
					ch[1] = (char)(0x80 | (v & 0x3f));
					k = 2;
				} else {
					ch[0] = (char)(0xe0 | (v >> 12));
					ch[1] = (char)(0x80 | ((v >> 6) & 0x3f));
					ch[2] = (char)(0x80 | (v & 0x3f));
					k = 3;
				}
				break;
			}
			default:
				return 0;
			}
		} else {
			ch[0] = (char)c;
		}
		if (out != NULL) {
			cr_assert(n + k < cap, "decoded string too long");
			memcpy(out + n, ch, k);
		}
		n += k;
		j->p++;
	}
	if (j->p >= j->end)
		return 0;
	j->p++;
	if (out != NULL)
		out[n] = '\0';
	return 1;
}

static int jp_lit(struct jp *j, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
		return 0;
	j->p += n;
	return 1;
}

static int jp_value(struct jp *j)
{
	if (j->p < j->end && *j->p == '"')
		return jp_string(j, NULL, 0);
	if (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
			return 0; /* leading zero */
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
		return 1;
	}
	return jp_lit(j, "true") || jp_lit(j, "false") || jp_lit(j, "null");
}

/*
 * Is [s, s+len) exactly one flat JSON object and a newline? When key is
 * given, its string value is decoded into out (1 when found).
 */
static int json_line(const char *s, size_t len, const char *key, char *out, size_t cap)
{
	struct jp j = { s, s + len - 1 };
	char k[128];
	int found = 0;

	if (len < 3 || s[len - 1] != '\n' || *j.p++ != '{')
		return 0;
	for (int first = 1;; first = 0) {
		if (j.p < j.end && *j.p == '}' && first)
			break;
		if (!jp_string(&j, k, sizeof(k)) || !jp_lit(&j, ":"))
			return 0;
		if (key != NULL && strcmp(k, key) == 0 && j.p < j.end && *j.p == '"') {
			if (!jp_string(&j, out, cap))
				return 0;
			found = 1;
		} else if (!jp_value(&j)) {
			return 0;
		}
		if (jp_lit(&j, "}"))
			break;
		if (!jp_lit(&j, ","))
			return 0;
	}
	if (j.p != j.end)
		return 0;
	return key == NULL || found;
}

/* ---- rendering ---- */

Test(log, time_is_iso8601_utc_with_milliseconds)
{
	struct timespec ts = { T_SEC, T_NS };
	char buf[64];

	cr_assert_eq(sf_log_time(buf, sizeof(buf), &ts), 24);
	cr_assert_str_eq(buf, "2026-11-29T13:40:01.123Z");
	ts.tv_sec = 0;
	ts.tv_nsec = 999999999;
	sf_log_time(buf, sizeof(buf), &ts);
	cr_assert_str_eq(buf, "1970-01-01T00:00:00.999Z", "milliseconds are cut, never rounded up");
	ts.tv_sec = 951782400; /* a leap day */
	ts.tv_nsec = 5000000;
	sf_log_time(buf, sizeof(buf), &ts);
	cr_assert_str_eq(buf, "2000-02-29T00:00:00.005Z");
}

Test(log, text_line_has_time_name_and_level_word)
{
	char buf[SF_LOG_LINE_MAX];
	size_t n;

	n = render(buf, sizeof(buf), SF_LOGFMT_TEXT, 0, SF_PRIO_WARNING, "cannot raise", NULL, NULL,
		   0);
	cr_assert_str_eq(buf, "2026-11-29T13:40:01.123Z sockfwd: warning: cannot raise\n");
	cr_assert_eq(n, strlen(buf));
	render(buf, sizeof(buf), SF_LOGFMT_TEXT, 0, SF_PRIO_ERR, "bind: in use", NULL, NULL, 0);
	cr_assert_str_eq(buf, "2026-11-29T13:40:01.123Z sockfwd: error: bind: in use\n");
	render(buf, sizeof(buf), SF_LOGFMT_TEXT, 0, SF_PRIO_INFO, "stats: accepted=1", NULL, NULL,
	       0);
	cr_assert_str_eq(buf, "2026-11-29T13:40:01.123Z sockfwd: stats: accepted=1\n");
}

Test(log, journal_line_has_priority_and_no_time)
{
	char buf[SF_LOG_LINE_MAX];

	render(buf, sizeof(buf), SF_LOGFMT_TEXT, 1, SF_PRIO_WARNING, "w", NULL, NULL, 0);
	cr_assert_str_eq(buf, "<4>warning: w\n");
	render(buf, sizeof(buf), SF_LOGFMT_TEXT, 1, SF_PRIO_ERR, "e", NULL, NULL, 0);
	cr_assert_str_eq(buf, "<3>error: e\n");
	render(buf, sizeof(buf), SF_LOGFMT_TEXT, 1, SF_PRIO_INFO, "i", NULL, NULL, 0);
	cr_assert_str_eq(buf, "<6>i\n");
	/* JSON under journald: the prefix, then the object journald stores as the message. */
	render(buf, sizeof(buf), SF_LOGFMT_JSON, 1, SF_PRIO_WARNING, "w", NULL, NULL, 0);
	cr_assert_str_eq(
		buf,
		"<4>{\"time\":\"2026-11-29T13:40:01.123Z\",\"level\":\"warning\",\"msg\":\"w\"}\n");
	cr_assert(json_line(buf + 3, strlen(buf + 3), NULL, NULL, 0));
}

Test(log, text_keeps_one_record_on_one_line)
{
	char buf[SF_LOG_LINE_MAX];

	render(buf, sizeof(buf), SF_LOGFMT_TEXT, 1, SF_PRIO_INFO,
	       "a\nb\tc\rd\x7f"
	       "e\\f",
	       NULL, NULL, 0);
	cr_assert_str_eq(buf, "<6>a\\nb\\tc\\x0dd\\x7fe\\f\n");
}

Test(log, json_line_has_time_level_msg_and_fields)
{
	const struct sf_log_kv kv[] = {
		SF_KV_S("rule", "web"),	 SF_KV_S("upstream", NULL),
		SF_KV_U("bytes_c2u", 0), SF_KV_U("bytes_u2c", UINT64_MAX),
		SF_KV_B("reset", 1),	 SF_KV_B("proxy", 0),
	};
	char buf[SF_LOG_LINE_MAX], out[256];

	render(buf, sizeof(buf), SF_LOGFMT_JSON, 0, SF_PRIO_INFO, "close 1.2.3.4:5 -> -", "close",
	       kv, sizeof(kv) / sizeof(kv[0]));
	cr_assert_str_eq(buf,
			 "{\"time\":\"2026-11-29T13:40:01.123Z\",\"level\":\"info\",\"msg\":"
			 "\"close\",\"rule\":\"web\",\"upstream\":null,\"bytes_c2u\":0,"
			 "\"bytes_u2c\":18446744073709551615,\"reset\":true,\"proxy\":false}\n");
	cr_assert(json_line(buf, strlen(buf), "msg", out, sizeof(out)));
	cr_assert_str_eq(out, "close");
	/* Without msg the text is the message. */
	render(buf, sizeof(buf), SF_LOGFMT_JSON, 0, SF_PRIO_ERR, "bind: in use", NULL, NULL, 0);
	cr_assert(json_line(buf, strlen(buf), "msg", out, sizeof(out)));
	cr_assert_str_eq(out, "bind: in use");
	cr_assert(json_line(buf, strlen(buf), "level", out, sizeof(out)));
	cr_assert_str_eq(out, "error");
}

Test(log, json_escapes_quotes_backslash_and_control_characters)
{
	const char *in = "q\"b\\s/n\nr\rt\tx\x01y\x1f"
			 "z\x7f"
			 "end";
	char buf[SF_LOG_LINE_MAX], out[256];

	render(buf, sizeof(buf), SF_LOGFMT_JSON, 0, SF_PRIO_INFO, in, NULL, NULL, 0);
	cr_assert(strstr(buf, "\"msg\":\"q\\\"b\\\\s/n\\nr\\rt\\tx\\u0001y\\u001fz\\u007fend\"") !=
			  NULL,
		  "escaped: %s", buf);
	cr_assert(json_line(buf, strlen(buf), "msg", out, sizeof(out)), "not JSON: %s", buf);
	cr_assert_str_eq(out, in, "round trip");
}

Test(log, json_keeps_valid_utf8_and_replaces_the_rest)
{
	static const struct {
		const char *in;
		const char *want; /* the msg value as written */
	} cases[] = {
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
		{ "a\xff"
		  "b",
		  "a\\ufffdb" },					/* never a UTF-8 byte */
		{ "\xc0\xaf", "\\ufffd\\ufffd" },			/* overlong '/' */
		{ "\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd" },		/* overlong, 3 bytes */
		{ "\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd" },		/* a UTF-16 surrogate */
		{ "\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd" }, /* past U+10FFFF */
		{ "x\xe2\x82", "x\\ufffd\\ufffd" },			/* cut at the end */
		{ "\x80z", "\\ufffdz" },				/* lone continuation */
	};
	char buf[SF_LOG_LINE_MAX], want[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		render(buf, sizeof(buf), SF_LOGFMT_JSON, 0, SF_PRIO_INFO, cases[i].in, NULL, NULL,
		       0);
		snprintf(want, sizeof(want), "\"msg\":\"%s\"}", cases[i].want);
		cr_assert(strstr(buf, want) != NULL, "case %zu: %s, want %s", i, buf, want);
		cr_assert(json_line(buf, strlen(buf), NULL, NULL, 0), "case %zu: not JSON: %s", i,
			  buf);
	}
}

/* Long messages are cut, never past the buffer, and the line stays one valid object. */
Test(log, long_lines_are_cut_and_stay_valid)
{
	static char text[8192];
	const char fill[] = { '"', '\\', '\x01', 'a', '\xe2', '\x82', '\xac' };
	const struct sf_log_kv kv[] = { SF_KV_S("rule", "r"), SF_KV_U("bytes_c2u", 42) };
	char buf[SF_LOG_LINE_MAX + 16];

	for (size_t f = 0; f < sizeof(fill); f++) {
		for (size_t k = 0; k + 1 < sizeof(text); k++)
			text[k] = fill[(k + f) % sizeof(fill)];
		text[sizeof(text) - 1] = '\0';
		for (size_t cap = 64; cap <= SF_LOG_LINE_MAX; cap += 61) {
			size_t n;

			memset(buf, 'X', sizeof(buf));
			n = render(buf, cap, SF_LOGFMT_JSON, f & 1, SF_PRIO_INFO, text, NULL, kv,
				   2);
			cr_assert(n <= cap, "fill %zu cap %zu: wrote %zu", f, cap, n);
			cr_assert_eq(buf[cap], 'X', "fill %zu cap %zu: wrote past cap", f, cap);
			cr_assert(json_line(buf + (f & 1 ? 3 : 0), n - (f & 1 ? 3 : 0), NULL, NULL,
					    0),
				  "fill %zu cap %zu: not JSON: %.*s", f, cap, (int)n, buf);
			n = render(buf, cap, SF_LOGFMT_TEXT, 0, SF_PRIO_INFO, text, NULL, NULL, 0);
			cr_assert(n <= cap && buf[n - 1] == '\n' &&
					  memchr(buf, '\n', n - 1) == NULL,
				  "fill %zu cap %zu: text line", f, cap);
		}
	}
	/* A field that does not fit is left out whole; a short message keeps them all. */
	render(buf, SF_LOG_LINE_MAX, SF_LOGFMT_JSON, 0, SF_PRIO_INFO, "m", NULL, kv, 2);
	cr_assert(strstr(buf, "\"rule\":\"r\",\"bytes_c2u\":42}") != NULL, "%s", buf);
}

Test(log, journal_stream_match)
{
	cr_assert(sf_log_journal_match("2049:123456", 2049, 123456));
	cr_assert(sf_log_journal_match("0:1", 0, 1));
	cr_assert(sf_log_journal_match("18446744073709551615:18446744073709551614", UINT64_MAX,
				       UINT64_MAX - 1));
	cr_assert_not(sf_log_journal_match("2049:123457", 2049, 123456), "other inode");
	cr_assert_not(sf_log_journal_match("2048:123456", 2049, 123456), "other device");
	cr_assert_not(sf_log_journal_match(NULL, 2049, 123456));
	cr_assert_not(sf_log_journal_match("", 2049, 123456));
	cr_assert_not(sf_log_journal_match("2049", 2049, 123456));
	cr_assert_not(sf_log_journal_match("2049:", 2049, 123456));
	cr_assert_not(sf_log_journal_match(":123456", 2049, 123456));
	cr_assert_not(sf_log_journal_match("2049:123456x", 2049, 123456));
	cr_assert_not(sf_log_journal_match(" 2049:123456", 2049, 123456));
	cr_assert_not(sf_log_journal_match("2049:-123456", 2049, 123456));
	cr_assert_not(sf_log_journal_match("99999999999999999999:1", UINT64_MAX, 1), "overflow");
}
