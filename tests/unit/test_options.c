/*
 * options.h: sf_parse_size, sf_options_parse, usage and version text;
 * engine.h: looking engines up by name.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
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

/* The one rule of the command line: its first listen address and upstream. */
#define LISTEN(cfg) ((cfg).rules[0].listen[0].hp)
#define REMOTE(cfg) ((cfg).rules[0].ups[0].hp)

Test(options, minimal_defaults)
{
	struct sf_config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "127.0.0.1:80"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(LISTEN(cfg).host, "");
	cr_assert_eq(LISTEN(cfg).port, 9000);
	cr_assert_str_eq(REMOTE(cfg).host, "127.0.0.1");
	cr_assert_eq(REMOTE(cfg).port, 80);
	cr_assert_not_null(cfg.engine);
	cr_assert_str_eq(cfg.engine->name, "splice");
	cr_assert_eq(cfg.engine, sf_engine_default());
	cr_assert_eq(cfg.buffer_size, SF_DEFAULT_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_DEFAULT_PIPE_SIZE);
	cr_assert_geq(cfg.threads, 1);
	cr_assert_leq(cfg.threads, SF_MAX_THREADS);
	cr_assert_eq(cfg.loglevel, SF_LOG_NORMAL);
	sf_config_free(&cfg);
}

Test(options, long_forms)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "--listen", "127.0.0.1:9001", "--remote", "[::1]:8080",
			   "--backend", "epoll", "--threads", "3", "--buffer-size", "128k",
			   "--pipe-size", "1m", "--verbose"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(LISTEN(cfg).host, "127.0.0.1");
	cr_assert_eq(LISTEN(cfg).port, 9001);
	cr_assert_str_eq(REMOTE(cfg).host, "::1");
	cr_assert_eq(REMOTE(cfg).port, 8080);
	cr_assert_str_eq(cfg.engine->name, "epoll");
	cr_assert_eq(cfg.threads, 3);
	cr_assert_eq(cfg.buffer_size, 128 * 1024);
	cr_assert_eq(cfg.pipe_size, 1024 * 1024);
	cr_assert_eq(cfg.loglevel, SF_LOG_VERBOSE);
	sf_config_free(&cfg);
}

Test(options, long_forms_with_equals)
{
	struct sf_config cfg;

	cr_assert_eq(
		PARSE(&cfg, "--listen=:9000", "--remote=localhost:80", "--threads=2", "--quiet"),
		SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(LISTEN(cfg).port, 9000);
	cr_assert_str_eq(REMOTE(cfg).host, "localhost");
	cr_assert_eq(cfg.threads, 2);
	cr_assert_eq(cfg.loglevel, SF_LOG_QUIET);
	sf_config_free(&cfg);
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
	sf_config_free(&cfg);

	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "127.0.0.1:80", "-q"), SF_OPT_RUN, "%s",
		     errbuf);
	cr_assert_eq(cfg.loglevel, SF_LOG_QUIET);
	sf_config_free(&cfg);
}

Test(options, size_limits_inclusive)
{
	struct sf_config cfg;

	cr_assert_eq(
		PARSE(&cfg, "-l", ":1", "-r", "h:2", "--buffer-size", "1k", "--pipe-size", "4k"),
		SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.buffer_size, SF_MIN_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_MIN_PIPE_SIZE);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--buffer-size", "64m", "--pipe-size",
			   "1g", "-j", "1024"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.buffer_size, SF_MAX_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_MAX_PIPE_SIZE);
	cr_assert_eq(cfg.threads, SF_MAX_THREADS);
	sf_config_free(&cfg);
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
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":9001", "-r", "127.0.0.1:81", "-j", "3"), SF_OPT_RUN,
		     "second parse: %s", errbuf);
	cr_assert_eq(LISTEN(cfg).port, 9001);
	cr_assert_eq(REMOTE(cfg).port, 81);
	cr_assert_eq(cfg.threads, 3);
	sf_config_free(&cfg);
}

Test(options, parse_after_error_in_one_process)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-x", "-r", "127.0.0.1:80"), -EINVAL);
	cr_assert_eq(PARSE(&cfg, "-l", ":9002", "-r", "127.0.0.1:82"), SF_OPT_RUN,
		     "parse after an error: %s", errbuf);
	cr_assert_eq(LISTEN(cfg).port, 9002);
	sf_config_free(&cfg);
	/* Defaults are reset on every call, not left from the previous one. */
	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "h:1", "-b", "naive", "-v", "--balance",
			   "first", "--allow", "10.0.0.0/8"),
		     SF_OPT_RUN, "%s", errbuf);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "h:1"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.engine->name, "splice");
	cr_assert_eq(cfg.loglevel, SF_LOG_NORMAL);
	cr_assert_eq(cfg.gset, 0);
	cr_assert_eq(cfg.defaults.set, 0);
	cr_assert_eq(cfg.defaults.nallow, 0);
	sf_config_free(&cfg);
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

/* ---- several listen addresses and upstreams, policy flags, -c and -t ---- */

Test(options, repeatable_listen_and_remote)
{
	struct sf_config cfg;
	const struct sf_rule_conf *r;

	cr_assert_eq(PARSE(&cfg, "-l", ":9000", "-r", "a:1", "--listen", "[::1]:9001", "-r",
			   "b:2,weight=3", "-l", "127.0.0.1:10000-10099", "--remote", "c:3,backup",
			   "-r", "[::1]:20000-20099,weight=256,backup"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.nrules, 1);
	r = &cfg.rules[0];
	cr_assert_str_eq(r->name, SF_DEFAULT_RULE);
	cr_assert_eq(r->line, 0);
	cr_assert_eq(r->pol.set, 0, "the rule inherits every key from the defaults");
	cr_assert_eq(r->nlisten, 3);
	cr_assert_str_eq(r->listen[0].hp.host, "");
	cr_assert_eq(r->listen[0].hp.port, 9000);
	cr_assert_eq(r->listen[0].port_last, 9000);
	cr_assert_str_eq(r->listen[1].hp.host, "::1");
	cr_assert_eq(r->listen[1].hp.port, 9001);
	cr_assert_str_eq(r->listen[2].hp.host, "127.0.0.1");
	cr_assert_eq(r->listen[2].hp.port, 10000);
	cr_assert_eq(r->listen[2].port_last, 10099);
	cr_assert_eq(r->listen[2].line, 0);
	/* The pool, in the order given. */
	cr_assert_eq(r->nups, 4);
	cr_assert_str_eq(r->ups[0].hp.host, "a");
	cr_assert_eq(r->ups[0].weight, 1);
	cr_assert_eq(r->ups[0].backup, 0);
	cr_assert_str_eq(r->ups[1].hp.host, "b");
	cr_assert_eq(r->ups[1].hp.port, 2);
	cr_assert_eq(r->ups[1].weight, 3);
	cr_assert_str_eq(r->ups[2].hp.host, "c");
	cr_assert_eq(r->ups[2].backup, 1);
	cr_assert_str_eq(r->ups[3].hp.host, "::1");
	cr_assert_eq(r->ups[3].hp.port, 20000);
	cr_assert_eq(r->ups[3].port_last, 20099);
	cr_assert_eq(r->ups[3].weight, 256);
	cr_assert_eq(r->ups[3].backup, 1);
	cr_assert_null(cfg.file);
	cr_assert_eq(cfg.check, 0);
	sf_config_free(&cfg);
}

Test(options, many_listen_addresses)
{
	char *argv[1 + 2 * 300 + 2];
	char ports[300][16];
	struct sf_config cfg;
	int argc = 0;

	argv[argc++] = "sockfwd";
	for (int i = 0; i < 300; i++) {
		snprintf(ports[i], sizeof(ports[i]), ":%d", 10000 + i);
		argv[argc++] = "-l";
		argv[argc++] = ports[i];
	}
	argv[argc++] = "-r";
	argv[argc++] = "h:1";
	cr_assert_eq(sf_options_parse(argc, argv, &cfg, errbuf, sizeof(errbuf)), SF_OPT_RUN, "%s",
		     errbuf);
	cr_assert_eq(cfg.rules[0].nlisten, 300);
	for (int i = 0; i < 300; i++)
		cr_assert_eq(cfg.rules[0].listen[i].hp.port, 10000 + i);
	sf_config_free(&cfg);
}

Test(options, pool_limit)
{
	char *argv[1 + 2 + 2 * (SF_POOL_MAX + 1)];
	char ups[SF_POOL_MAX + 1][16];
	struct sf_config cfg;
	int argc = 0;

	argv[argc++] = "sockfwd";
	argv[argc++] = "-l";
	argv[argc++] = ":1";
	for (int i = 0; i < SF_POOL_MAX + 1; i++) {
		snprintf(ups[i], sizeof(ups[i]), "h:%d", i + 1);
		argv[argc++] = "-r";
		argv[argc++] = ups[i];
	}
	cr_assert_eq(sf_options_parse(argc - 2, argv, &cfg, errbuf, sizeof(errbuf)), SF_OPT_RUN,
		     "%s", errbuf);
	cr_assert_eq(cfg.rules[0].nups, SF_POOL_MAX);
	sf_config_free(&cfg);
	cr_assert_eq(sf_options_parse(argc, argv, &cfg, errbuf, sizeof(errbuf)), -EINVAL);
	cr_assert_err_mentions(errbuf, "more than 64");
}

Test(options, globals_mark_what_the_command_line_set)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.gset, 0);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "-b", "epoll"), SF_OPT_RUN);
	cr_assert_eq(cfg.gset, SF_G_ENGINE);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "-j", "2"), SF_OPT_RUN);
	cr_assert_eq(cfg.gset, SF_G_THREADS);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--buffer-size", "4k"), SF_OPT_RUN);
	cr_assert_eq(cfg.gset, SF_G_BUFFER_SIZE);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--pipe-size", "64k"), SF_OPT_RUN);
	cr_assert_eq(cfg.gset, SF_G_PIPE_SIZE);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "-v"), SF_OPT_RUN);
	cr_assert_eq(cfg.gset, SF_G_LOGLEVEL);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "-q", "-b", "naive", "-j", "1",
			   "--buffer-size", "4k", "--pipe-size", "64k"),
		     SF_OPT_RUN);
	cr_assert_eq(cfg.gset, SF_G_ENGINE | SF_G_THREADS | SF_G_BUFFER_SIZE | SF_G_PIPE_SIZE |
				       SF_G_LOGLEVEL);
	cr_assert_eq(cfg.defaults.set, 0);
	sf_config_free(&cfg);
}

Test(options, policy_flags)
{
	struct sf_config cfg;
	const struct sf_policy *d = &cfg.defaults;

	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--balance", "leastconn", "--max-fails",
			   "5", "--fail-timeout", "30s", "--connect-timeout", "250ms",
			   "--idle-timeout", "5m", "--no-keepalive", "--max-conns", "20000",
			   "--allow", "10.0.0.0/8", "--deny", "10.1.2.3", "--allow",
			   "2001:db8::/32", "--proxy-protocol", "v2", "--accept-proxy"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(d->set, 0x7ff, "every policy key set: %#x", d->set);
	cr_assert_eq(d->balance, SF_BAL_LEASTCONN);
	cr_assert_eq(d->max_fails, 5);
	cr_assert_eq(d->fail_timeout_ms, 30000);
	cr_assert_eq(d->connect_timeout_ms, 250);
	cr_assert_eq(d->idle_timeout_ms, 300000);
	cr_assert_eq(d->keepalive, 0);
	cr_assert_eq(d->max_conns, 20000);
	/* Repeated --allow append, in order. */
	cr_assert_eq(d->nallow, 2);
	cr_assert_eq(d->allow[0].prefix, 8 + 96);
	cr_assert_eq(d->allow[0].addr[12], 10);
	cr_assert_eq(d->allow[1].prefix, 32);
	cr_assert_eq(d->allow[1].addr[1], 0x01);
	cr_assert_eq(d->ndeny, 1);
	cr_assert_eq(d->deny[0].prefix, 128);
	cr_assert_eq(d->proxy_protocol, SF_PP_V2);
	cr_assert_eq(d->accept_proxy, 1);
	cr_assert_eq(cfg.rules[0].pol.set, 0, "flags go to the defaults, not the rule");
	cr_assert_eq(cfg.gset, 0);
	sf_config_free(&cfg);
}

Test(options, policy_flag_values)
{
	static const char *const modes[] = { "roundrobin", "leastconn", "source", "first" };
	struct sf_config cfg;

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--balance", (char *)modes[i]),
			     SF_OPT_RUN, "%s", errbuf);
		cr_assert_eq(cfg.defaults.balance, i);
		cr_assert_eq(cfg.defaults.set, SF_P_BALANCE);
		sf_config_free(&cfg);
	}
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--proxy-protocol=v1", "--max-fails=0",
			   "--max-conns=0", "--idle-timeout=0", "--fail-timeout=0"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.defaults.proxy_protocol, SF_PP_V1);
	cr_assert_eq(cfg.defaults.max_fails, 0);
	cr_assert_eq(cfg.defaults.max_conns, 0);
	cr_assert_eq(cfg.defaults.idle_timeout_ms, 0);
	cr_assert_eq(cfg.defaults.fail_timeout_ms, 0);
	cr_assert_eq(cfg.defaults.set, SF_P_PROXY_PROTOCOL | SF_P_MAX_FAILS | SF_P_MAX_CONNS |
					       SF_P_IDLE_TIMEOUT | SF_P_FAIL_TIMEOUT);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--connect-timeout", "10",
			   "--idle-timeout", "1h", "--fail-timeout", "8760h"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.defaults.connect_timeout_ms, 10000, "a bare number is seconds");
	cr_assert_eq(cfg.defaults.idle_timeout_ms, 3600000);
	cr_assert_eq(cfg.defaults.fail_timeout_ms, 8760ull * 3600 * 1000);
	sf_config_free(&cfg);
}

Test(options, bad_policy_flags)
{
	PARSE_BAD(WORDS("--balance", "random"), "-l", ":1", "-r", "h:2", "--balance", "random");
	PARSE_BAD(WORDS("--balance", "argument"), "-l", ":1", "-r", "h:2", "--balance");
	PARSE_BAD(WORDS("--max-fails"), "-l", ":1", "-r", "h:2", "--max-fails", "-1");
	PARSE_BAD(WORDS("--max-fails"), "-l", ":1", "-r", "h:2", "--max-fails", "abc");
	PARSE_BAD(WORDS("--max-fails"), "-l", ":1", "-r", "h:2", "--max-fails", "3x");
	PARSE_BAD(WORDS("--max-fails"), "-l", ":1", "-r", "h:2", "--max-fails", "");
	PARSE_BAD(WORDS("--max-fails"), "-l", ":1", "-r", "h:2", "--max-fails", "99999999999");
	PARSE_BAD(WORDS("--fail-timeout", "duration"), "-l", ":1", "-r", "h:2", "--fail-timeout",
		  "5x");
	PARSE_BAD(WORDS("--fail-timeout", "year"), "-l", ":1", "-r", "h:2", "--fail-timeout",
		  "8761h");
	PARSE_BAD(WORDS("--connect-timeout", "greater than 0"), "-l", ":1", "-r", "h:2",
		  "--connect-timeout", "0");
	PARSE_BAD(WORDS("--connect-timeout", "greater than 0"), "-l", ":1", "-r", "h:2",
		  "--connect-timeout", "0ms");
	PARSE_BAD(WORDS("--connect-timeout", "duration"), "-l", ":1", "-r", "h:2",
		  "--connect-timeout", "1.5s");
	PARSE_BAD(WORDS("--idle-timeout", "duration"), "-l", ":1", "-r", "h:2", "--idle-timeout",
		  "-1");
	PARSE_BAD(WORDS("--idle-timeout", "duration"), "-l", ":1", "-r", "h:2", "--idle-timeout",
		  "");
	PARSE_BAD(WORDS("--max-conns"), "-l", ":1", "-r", "h:2", "--max-conns", "many");
	PARSE_BAD(WORDS("--max-conns"), "-l", ":1", "-r", "h:2", "--max-conns", "-5");
	PARSE_BAD(WORDS("--allow"), "-l", ":1", "-r", "h:2", "--allow", "bogus");
	PARSE_BAD(WORDS("--allow"), "-l", ":1", "-r", "h:2", "--allow", "10.0.0.0/8", "--allow",
		  "300.0.0.0/8");
	PARSE_BAD(WORDS("--deny"), "-l", ":1", "-r", "h:2", "--deny", "10.0.0.0/99");
	PARSE_BAD(WORDS("--deny", "argument"), "-l", ":1", "-r", "h:2", "--deny");
	PARSE_BAD(WORDS("--proxy-protocol", "v3"), "-l", ":1", "-r", "h:2", "--proxy-protocol",
		  "v3");
	PARSE_BAD(WORDS("--proxy-protocol"), "-l", ":1", "-r", "h:2", "--proxy-protocol", "V1");
	PARSE_BAD(WORDS("--no-keepalive", "option"), "-l", ":1", "-r", "h:2", "--no-keepalive=1");
	PARSE_BAD(WORDS("--accept-proxy", "option"), "-l", ":1", "-r", "h:2", "--accept-proxy=yes");
}

Test(options, bad_upstreams_and_ranges)
{
	PARSE_BAD(WORDS("-r", "host"), "-l", ":1", "-r", ":80");
	PARSE_BAD(WORDS("-r", "weight"), "-l", ":1", "-r", "h:80,weight=0");
	PARSE_BAD(WORDS("-r", "weight"), "-l", ":1", "-r", "h:80,weight=257");
	PARSE_BAD(WORDS("-r", "fast"), "-l", ":1", "-r", "h:80,backup,fast");
	PARSE_BAD(WORDS("-r", "backwards"), "-l", ":1", "-r", "h:90-80");
	PARSE_BAD(WORDS("-l", "backwards"), "-l", ":90-80", "-r", "h:1");
	PARSE_BAD(WORDS("-l", "port"), "-l", ":1-70000", "-r", "h:1");
	PARSE_BAD(WORDS("-l", "port"), "-l", ":80,backup", "-r", "h:1");
	/* The second of several is checked too. */
	PARSE_BAD(WORDS("-r", "port"), "-l", ":1", "-r", "h:1", "-r", "h:0");
	PARSE_BAD(WORDS("-l", "port"), "-l", ":1", "-l", "x", "-r", "h:1");
}

Test(options, config_file)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-c", "/etc/sockfwd.conf"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.file, "/etc/sockfwd.conf");
	cr_assert_eq(cfg.check, 0);
	cr_assert_eq(cfg.nrules, 0, "the file is not read here");
	cr_assert_null(cfg.rules);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "--config=x.conf", "--check", "-j", "2", "--max-conns", "9"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_str_eq(cfg.file, "x.conf");
	cr_assert_eq(cfg.check, 1);
	cr_assert_eq(cfg.threads, 2);
	cr_assert_eq(cfg.gset, SF_G_THREADS);
	cr_assert_eq(cfg.defaults.max_conns, 9);
	cr_assert_eq(cfg.defaults.set, SF_P_MAX_CONNS);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-t", "-c", "y.conf"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.check, 1);
	sf_config_free(&cfg);
}

Test(options, config_file_usage_errors)
{
	PARSE_BAD(WORDS("-c", "-l"), "-c", "f.conf", "-l", ":1");
	PARSE_BAD(WORDS("-c", "-r"), "-c", "f.conf", "-r", "h:1");
	PARSE_BAD(WORDS("-c", "-l/-r"), "-l", ":1", "-r", "h:1", "--config", "f.conf");
	PARSE_BAD(WORDS("-t", "-c"), "-t");
	PARSE_BAD(WORDS("-t", "-c"), "-l", ":1", "-r", "h:1", "--check");
	PARSE_BAD(WORDS("-c", "one"), "-c", "a.conf", "-c", "b.conf");
	PARSE_BAD(WORDS("-c", "argument"), "-c");
	PARSE_BAD(WORDS("-q", "-v"), "-c", "f.conf", "-q", "-v");
}

/* -h wins over what comes before it, and leaves nothing allocated. */
Test(options, help_after_allocations)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-c", "f.conf", "--allow", "10.0.0.0/8", "-h"), SF_OPT_HELP);
	cr_assert_null(cfg.file);
	cr_assert_eq(cfg.defaults.nallow, 0);
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:1", "-V"), SF_OPT_VERSION);
	cr_assert_null(cfg.rules);
}

Test(options, usage_lists_every_flag)
{
	static const char *const flags[] = {
		"--listen",	  "--remote",	      "--config",	"--check",
		"--backend",	  "--threads",	      "--buffer-size",	"--pipe-size",
		"--balance",	  "--max-fails",      "--fail-timeout", "--connect-timeout",
		"--idle-timeout", "--no-keepalive",   "--max-conns",	"--allow",
		"--deny",	  "--proxy-protocol", "--accept-proxy", "--verbose",
		"--quiet",	  "--help",	      "--version",	"weight=",
		"backup",
	};
	const char *u = sf_usage();

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		cr_assert(strstr(u, flags[i]) != NULL, "usage lacks %s", flags[i]);
	/* Every line fits 80 columns. */
	for (const char *p = u, *nl; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		cr_assert_not_null(nl);
		cr_assert_leq(nl - p, 80, "line too long: %.*s", (int)(nl - p), p);
	}
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

Test(options, operations_flags)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2", "--metrics", "127.0.0.1:9100", "--user",
			   "nobody:nogroup", "--drain-timeout", "30s", "--log-format", "json"),
		     SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.has_metrics, 1);
	cr_assert_str_eq(cfg.metrics.host, "127.0.0.1");
	cr_assert_eq(cfg.metrics.port, 9100);
	cr_assert_str_eq(cfg.user, "nobody:nogroup");
	cr_assert_eq(cfg.drain_timeout_ms, 30000);
	cr_assert_eq(cfg.log_format, SF_LOGFMT_JSON);
	cr_assert_eq(cfg.gset, SF_G_METRICS | SF_G_USER | SF_G_DRAIN_TIMEOUT | SF_G_LOG_FORMAT);
	sf_config_free(&cfg);

	/* Off by default. */
	cr_assert_eq(PARSE(&cfg, "-l", ":1", "-r", "h:2"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.has_metrics, 0);
	cr_assert_str_eq(cfg.user, "");
	cr_assert_eq(cfg.drain_timeout_ms, 0);
	cr_assert_eq(cfg.log_format, SF_LOGFMT_TEXT);
	sf_config_free(&cfg);
}

Test(options, bad_operations_flags)
{
	PARSE_BAD(WORDS("--metrics"), "-l", ":1", "-r", "h:2", "--metrics", "nowhere");
	PARSE_BAD(WORDS("--metrics"), "-l", ":1", "-r", "h:2", "--metrics", "127.0.0.1:0");
	PARSE_BAD(WORDS("--user"), "-l", ":1", "-r", "h:2", "--user", "");
	PARSE_BAD(WORDS("--user"), "-l", ":1", "-r", "h:2", "--user", "a:");
	PARSE_BAD(WORDS("--user"), "-l", ":1", "-r", "h:2", "--user", ":g");
	PARSE_BAD(WORDS("--user"), "-l", ":1", "-r", "h:2", "--user", "a:b:c");
	PARSE_BAD(WORDS("--drain-timeout"), "-l", ":1", "-r", "h:2", "--drain-timeout", "soon");
	PARSE_BAD(WORDS("--log-format", "xml"), "-l", ":1", "-r", "h:2", "--log-format", "xml");
}

/*
 * The shapes of the pairing modes (the fuzzer's options property once
 * expected an upstream in every rule; input
 * tests/fuzz/corpus/options/regress-udp-meet-two-listens): --meet is two
 * listens and no upstream, --bridge two upstreams and no listen; -u with
 * --meet parses, and sf_config_finish refuses it with a message.
 */
Test(options, pairing_modes_shapes)
{
	struct sf_config cfg;

	cr_assert_eq(PARSE(&cfg, "--meet", "-l", ":9000", "-l", ":9001"), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(cfg.rules[0].mode, SF_MODE_MEET);
	cr_assert_eq(cfg.rules[0].nlisten, 2);
	cr_assert_eq(cfg.rules[0].nups, 0);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "--bridge", "-r", "127.0.0.1:1", "-r", "[::1]:2"), SF_OPT_RUN,
		     "%s", errbuf);
	cr_assert_eq(cfg.rules[0].mode, SF_MODE_BRIDGE);
	cr_assert_eq(cfg.rules[0].nlisten, 0);
	cr_assert_eq(cfg.rules[0].nups, 2);
	sf_config_free(&cfg);
	cr_assert_eq(PARSE(&cfg, "-u", "--meet", "-l", ":9000", "-l", ":9001"), SF_OPT_RUN, "%s",
		     errbuf);
	memset(errbuf, 0, sizeof(errbuf));
	cr_assert_lt(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), 0);
	cr_assert(strstr(errbuf, "TCP only") != NULL, "message: %s", errbuf);
	sf_config_free(&cfg);
}
