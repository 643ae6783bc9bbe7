/*
 * options.h: sf_parse_size, sf_options_parse, usage and version text;
 * engine.h: looking engines up by name.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/options.h"
#include "unit.h"

/* ---- sf_parse_size ---- */

static void size_ok(const char *s, size_t want)
{
	size_t v = 12345;
	int r = sf_parse_size(s, &v);

	cr_assert_eq(r, 0, "sf_parse_size(\"%s\") = %d, want 0", s, r);
	cr_assert_eq(v, want, "sf_parse_size(\"%s\") gave %zu, want %zu", s, v, want);
}

static void size_bad(const char *s, int want)
{
	size_t v = 0;
	int r = sf_parse_size(s, &v);

	cr_assert_eq(r, want, "sf_parse_size(\"%s\") = %d, want %d", s, r, want);
}

Test(parse_size, plain)
{
	size_ok("0", 0);
	size_ok("1", 1);
	size_ok("100", 100);
	size_ok("65536", 65536);
}

Test(parse_size, suffixes)
{
	size_ok("64k", 65536);
	size_ok("64K", 65536);
	size_ok("1m", 1048576);
	size_ok("1M", 1048576);
	size_ok("1g", 1073741824);
	size_ok("1G", 1073741824);
	size_ok("3g", (size_t)3 << 30);
}

Test(parse_size, byte_suffixes)
{
	size_ok("64kb", 65536);
	size_ok("64KB", 65536);
	size_ok("64KiB", 65536);
	size_ok("64kib", 65536);
	size_ok("1MiB", 1048576);
	size_ok("2gb", (size_t)2 << 30);
}

Test(parse_size, malformed)
{
	static const char *const bad[] = {
		"",	  "k",	  "12x", "1.5m", "-1",	" 64k", "64k ", "1mm", "64ki",
		"64kibb", "64bk", "+5",	 "0x10", "1 k", "kb",	"64 ",	"1e3", "1t",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		size_bad(bad[i], -EINVAL);
}

Test(parse_size, overflow)
{
	size_bad("99999999999999999999", -ERANGE);
	size_bad("99999999999g", -ERANGE);
	size_bad("18446744073709551616", -ERANGE);
	size_bad("17179869184g", -ERANGE);	 /* 2^34 GiB = 2^64 */
	size_bad("18014398509481984k", -ERANGE); /* 2^54 KiB = 2^64 */
}

Test(parse_size, near_overflow)
{
	size_ok("18446744073709551615", SIZE_MAX);
	size_ok("17179869183g", SIZE_MAX - ((size_t)1 << 30) + 1);
}

/* ---- sf_options_parse ---- */

#define ARGV(...) ((char *[]){ "sockfwd", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof((char *[]){ "sockfwd", __VA_ARGS__ }) / sizeof(char *)))

static char errbuf[256];

/* Parse "sockfwd ARGS..." into *cfg; returns the result. */
#define PARSE(cfg, ...)                                                                            \
	(memset(errbuf, 0, sizeof(errbuf)),                                                        \
	 sf_options_parse(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (cfg), errbuf, sizeof(errbuf)))

/* The parse fails with -EINVAL and a message mentioning one of the words. */
#define PARSE_BAD(words, ...)                                                                      \
	do {                                                                                       \
		struct sf_config cfg_;                                                             \
		int r_ = PARSE(&cfg_, __VA_ARGS__);                                                \
		cr_assert_eq(r_, -EINVAL, "sockfwd %s: got %d, want -EINVAL", #__VA_ARGS__, r_);   \
		cr_assert_neq(errbuf[0], '\0', "sockfwd %s: empty message", #__VA_ARGS__);         \
		cr_assert(strchr(errbuf, '\n') == NULL || strchr(errbuf, '\n')[1] == '\0',         \
			  "sockfwd %s: message not one line: \"%s\"", #__VA_ARGS__, errbuf);       \
		cr_assert(err_mentions words, "sockfwd %s: message \"%s\" should mention %s",      \
			  #__VA_ARGS__, errbuf, #words);                                           \
	} while (0)
#define WORDS(...) (errbuf, __VA_ARGS__, (const char *)NULL)

Test(options, minimal_defaults)
{
	struct sf_config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "127.0.0.1:80"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.listen.host, "");
	cr_assert_eq(cfg.listen.port, 9000);
	cr_assert_str_eq(cfg.remote.host, "127.0.0.1");
	cr_assert_eq(cfg.remote.port, 80);
	cr_assert_not_null(cfg.engine);
	cr_assert_str_eq(cfg.engine->name, "splice");
	cr_assert_eq(cfg.engine, sf_engine_default());
	cr_assert_eq(cfg.buffer_size, SF_DEFAULT_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_DEFAULT_PIPE_SIZE);
	cr_assert_geq(cfg.threads, 1);
	cr_assert_leq(cfg.threads, SF_MAX_THREADS);
	cr_assert_eq(cfg.loglevel, SF_LOG_NORMAL);
}

Test(options, long_forms)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "--listen", "127.0.0.1:9001", "--remote", "[::1]:8080",
			   "--backend", "epoll", "--threads", "3", "--buffer-size", "128k",
			   "--pipe-size", "1m", "--verbose"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.listen.host, "127.0.0.1");
	cr_assert_eq(cfg.listen.port, 9001);
	cr_assert_str_eq(cfg.remote.host, "::1");
	cr_assert_eq(cfg.remote.port, 8080);
	cr_assert_str_eq(cfg.engine->name, "epoll");
	cr_assert_eq(cfg.threads, 3);
	cr_assert_eq(cfg.buffer_size, 128 * 1024);
	cr_assert_eq(cfg.pipe_size, 1024 * 1024);
	cr_assert_eq(cfg.loglevel, SF_LOG_VERBOSE);
}

Test(options, long_forms_with_equals)
{
	struct sf_config cfg;

	cr_assert_eq(
		PARSE(&cfg, "--listen=:9000", "--remote=localhost:80", "--threads=2", "--quiet"),
		SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.listen.port, 9000);
	cr_assert_str_eq(cfg.remote.host, "localhost");
	cr_assert_eq(cfg.threads, 2);
	cr_assert_eq(cfg.loglevel, SF_LOG_QUIET);
}

Test(options, short_forms)
{
	struct sf_config cfg;

	cr_assert_eq(
		PARSE(&cfg, "-r", "127.0.0.1:80", "-l", ":9000", "-b", "naive", "-j", "4", "-v"),
		SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.engine->name, "naive");
	cr_assert_eq(cfg.engine, &sf_engine_naive);
	cr_assert_eq(cfg.threads, 4);
	cr_assert_eq(cfg.loglevel, SF_LOG_VERBOSE);

	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "127.0.0.1:80", "-q"), SF_OPT_RUN, "%s",
		     errbuf);
	cr_assert_eq(cfg.loglevel, SF_LOG_QUIET);
}

Test(options, size_limits_inclusive)
{
	struct sf_config cfg;

	cr_assert_eq(
		PARSE(&cfg, "-l", ":1", "-r", "h:2", "--buffer-size", "1k", "--pipe-size", "4k"),
		SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.buffer_size, SF_MIN_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_MIN_PIPE_SIZE);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--buffer-size", "64m", "--pipe-size",
			   "1g", "-j", "1024"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.buffer_size, SF_MAX_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_MAX_PIPE_SIZE);
	cr_assert_eq(cfg.threads, SF_MAX_THREADS);
}

Test(options, help_and_version)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-h"), SF_OPT_HELP);
	cr_assert_eq(PARSE(&cfg, "--help"), SF_OPT_HELP);
	cr_assert_eq(PARSE(&cfg, "-V"), SF_OPT_VERSION);
	cr_assert_eq(PARSE(&cfg, "--version"), SF_OPT_VERSION);
}

Test(options, missing_listen) { PARSE_BAD(WORDS("listen", "-l"), "-r", "127.0.0.1:80"); }

Test(options, missing_remote) { PARSE_BAD(WORDS("remote", "-r"), "-l", ":9000"); }

Test(options, no_arguments)
{
	char *argv[] = { "sockfwd", NULL };
	struct sf_config cfg;

	memset(errbuf, 0, sizeof(errbuf));
	cr_assert_eq(sf_options_parse(1, argv, &cfg, errbuf, sizeof(errbuf)), -EINVAL);
	cr_assert_err_mentions(errbuf, "listen", "remote", "-l", "-r");
}

Test(options, unknown_flag)
{
	PARSE_BAD(WORDS("-x", "option", "unknown", "invalid", "unrecognized"), "-l", ":9000", "-r",
		  "127.0.0.1:80", "-x");
	PARSE_BAD(WORDS("--bogus", "option", "unknown", "invalid", "unrecognized"), "-l", ":9000",
		  "-r", "127.0.0.1:80", "--bogus");
}

Test(options, missing_option_argument)
{
	PARSE_BAD(WORDS("remote", "-r", "argument", "requires"), "-l", ":9000", "-r");
}

Test(options, unknown_engine)
{
	PARSE_BAD(WORDS("nosuch"), "-l", ":9000", "-r", "127.0.0.1:80", "-b", "nosuch");
}

Test(options, bad_threads)
{
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "0");
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "2000");
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "1025");
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "abc");
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "-1");
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "2x");
	PARSE_BAD(WORDS("thread", "-j"), "-l", ":9000", "-r", "127.0.0.1:80", "-j", "");
}

Test(options, bad_buffer_size)
{
	PARSE_BAD(WORDS("buffer"), "-l", ":9000", "-r", "127.0.0.1:80", "--buffer-size", "12x");
	PARSE_BAD(WORDS("buffer"), "-l", ":9000", "-r", "127.0.0.1:80", "--buffer-size", "10");
	PARSE_BAD(WORDS("buffer"), "-l", ":9000", "-r", "127.0.0.1:80", "--buffer-size", "1023");
	PARSE_BAD(WORDS("buffer"), "-l", ":9000", "-r", "127.0.0.1:80", "--buffer-size", "65m");
	PARSE_BAD(WORDS("buffer"), "-l", ":9000", "-r", "127.0.0.1:80", "--buffer-size",
		  "99999999999999999999");
}

Test(options, bad_pipe_size)
{
	PARSE_BAD(WORDS("pipe"), "-l", ":9000", "-r", "127.0.0.1:80", "--pipe-size", "1k");
	PARSE_BAD(WORDS("pipe"), "-l", ":9000", "-r", "127.0.0.1:80", "--pipe-size", "4095");
	PARSE_BAD(WORDS("pipe"), "-l", ":9000", "-r", "127.0.0.1:80", "--pipe-size", "2g");
	PARSE_BAD(WORDS("pipe"), "-l", ":9000", "-r", "127.0.0.1:80", "--pipe-size", "1.5m");
}

Test(options, bad_addresses)
{
	PARSE_BAD(WORDS("listen", "-l", "port"), "-l", "9000", "-r", "127.0.0.1:80");
	PARSE_BAD(WORDS("listen", "-l", "port"), "-l", ":0", "-r", "127.0.0.1:80");
	PARSE_BAD(WORDS("remote", "-r", "port"), "-l", ":9000", "-r", "127.0.0.1");
	PARSE_BAD(WORDS("remote", "-r", "bracket"), "-l", ":9000", "-r", "::1:80");
}

Test(options, stray_argument)
{
	PARSE_BAD(WORDS("extra", "argument", "unexpected"), "-l", ":9000", "-r", "127.0.0.1:80",
		  "extra");
}

Test(options, quiet_and_verbose_conflict)
{
	PARSE_BAD(WORDS("quiet", "verbose", "-q", "-v"), "-l", ":9000", "-r", "127.0.0.1:80", "-q",
		  "-v");
	PARSE_BAD(WORDS("quiet", "verbose", "-q", "-v"), "-l", ":9000", "-r", "127.0.0.1:80", "-v",
		  "-q");
}

/*
 * getopt keeps global state: a parser that does not reset it would skip
 * arguments on its second call in one process.
 */
Test(options, parse_twice_in_one_process)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "127.0.0.1:80", "-j", "2"), SF_OPT_RUN, "%s",
		     errbuf);
	cr_assert_eq(PARSE(&cfg, "-l", ":9001", "-r", "127.0.0.1:81", "-j", "3"), SF_OPT_RUN,
		     "second parse: %s", errbuf);
	cr_assert_eq(cfg.listen.port, 9001);
	cr_assert_eq(cfg.remote.port, 81);
	cr_assert_eq(cfg.threads, 3);
}

Test(options, parse_after_error_in_one_process)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-x", "-r", "127.0.0.1:80"), -EINVAL);
	cr_assert_eq(PARSE(&cfg, "-l", ":9002", "-r", "127.0.0.1:82"), SF_OPT_RUN,
		     "parse after an error: %s", errbuf);
	cr_assert_eq(cfg.listen.port, 9002);
	/* Defaults are reset on every call, not left from the previous one. */
	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "h:1", "-b", "naive", "-v"), SF_OPT_RUN, "%s",
		     errbuf);
	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "h:1"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.engine->name, "splice");
	cr_assert_eq(cfg.loglevel, SF_LOG_NORMAL);
}

Test(options, version_string)
{
	char buf[256];
	char *r = sf_version_string(buf, sizeof(buf));

	cr_assert_eq(r, buf);
	cr_assert(strstr(buf, SF_VERSION) != NULL, "\"%s\" lacks the version", buf);
	cr_assert(strstr(buf, "sockfwd") != NULL, "\"%s\"", buf);
	cr_assert(strstr(buf, "splice") != NULL, "\"%s\" lacks splice", buf);
	cr_assert(strstr(buf, "epoll") != NULL, "\"%s\" lacks epoll", buf);
	cr_assert(strstr(buf, "naive") != NULL, "\"%s\" lacks naive", buf);
}

Test(options, version_string_truncates)
{
	char buf[12];

	memset(buf, 'X', sizeof(buf));
	sf_version_string(buf, 8);
	cr_assert_eq(buf[8], 'X', "wrote past len");
	cr_assert_lt(strnlen(buf, 8), 8);
}

Test(options, usage_text)
{
	const char *u = sf_usage();

	cr_assert_not_null(u);
	cr_assert(strstr(u, "--listen") != NULL);
	cr_assert(strstr(u, "--remote") != NULL);
	cr_assert(strstr(u, "--backend") != NULL);
}

/* ---- engine.h ---- */

Test(engine, find_known)
{
	char err[256] = "";

	cr_assert_eq(sf_engine_find("epoll", err, sizeof(err)), &sf_engine_epoll);
	cr_assert_eq(sf_engine_find("splice", err, sizeof(err)), &sf_engine_splice);
	cr_assert_eq(sf_engine_find("naive", err, sizeof(err)), &sf_engine_naive);
	cr_assert_str_eq(sf_engine_epoll.name, "epoll");
	cr_assert_eq(sf_engine_default(), &sf_engine_splice);
}

Test(engine, find_unknown)
{
	char err[256] = "";

	cr_assert_null(sf_engine_find("nosuch", err, sizeof(err)));
	cr_assert_err_mentions(err, "nosuch");
	memset(err, 0, sizeof(err));
	cr_assert_null(sf_engine_find("", err, sizeof(err)));
	cr_assert_neq(err[0], '\0');
}

Test(engine, uring)
{
	char err[256] = "";
	const struct sf_engine *e = sf_engine_find("uring", err, sizeof(err));

#ifdef SF_HAVE_URING
	cr_assert_eq(e, &sf_engine_uring, "%s", err);
#else
	cr_assert_null(e);
	cr_assert(strstr(err, "URING") != NULL || strcasestr(err, "rebuild") != NULL,
		  "message \"%s\" should say how to get the uring engine", err);
#endif
}

Test(engine, names)
{
	char buf[128];

	cr_assert_eq(sf_engine_names(buf, sizeof(buf), " "), buf);
	cr_assert(strstr(buf, "naive") && strstr(buf, "epoll") && strstr(buf, "splice"), "\"%s\"",
		  buf);
#ifndef SF_HAVE_URING
	cr_assert(strstr(buf, "uring") == NULL, "\"%s\"", buf);
#endif
	sf_engine_names(buf, sizeof(buf), ", ");
	cr_assert(strstr(buf, ", ") != NULL, "separator ignored: \"%s\"", buf);
}

Test(engine, probes_pass_on_linux)
{
	char err[256] = "";

	const struct sf_engine *const engines[] = { &sf_engine_naive, &sf_engine_epoll,
						    &sf_engine_splice };

	for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
		const struct sf_engine *e = engines[i];

		cr_assert_not_null(e->run, "%s: no run", e->name);
		cr_assert_not_null(e->stop, "%s: no stop", e->name);
		if (e->probe != NULL)
			cr_assert_eq(e->probe(err, sizeof(err)), 0, "%s: %s", e->name, err);
	}
}
