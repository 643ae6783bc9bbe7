/*
 * config.h: durations, upstream and listen parsing, the config file
 * loader (good files, inheritance, and every kind of bad file with its
 * FILE:LINE), sf_config_finish (defaults, port ranges, overlaps).
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockfwd/config.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/options.h"
#include "unit.h"

/* ---- sf_parse_duration ---- */

static void dur_ok(const char *s, uint64_t want)
{
	uint64_t ms = 12345;
	int r = sf_parse_duration(s, &ms);

	cr_assert_eq(r, 0, "sf_parse_duration(\"%s\") = %d, want 0", s, r);
	cr_assert_eq(ms, want, "sf_parse_duration(\"%s\") gave %llu ms, want %llu", s,
		     (unsigned long long)ms, (unsigned long long)want);
}

static void dur_bad(const char *s, int want)
{
	uint64_t ms = 777;
	int r = sf_parse_duration(s, &ms);

	cr_assert_eq(r, want, "sf_parse_duration(\"%s\") = %d, want %d", s, r, want);
	cr_assert_eq(ms, 777, "sf_parse_duration(\"%s\") wrote on failure", s);
}

Test(duration, units)
{
	dur_ok("250ms", 250);
	dur_ok("10s", 10000);
	dur_ok("5m", 300000);
	dur_ok("1h", 3600000);
	dur_ok("0", 0);
	dur_ok("0ms", 0);
	dur_ok("1ms", 1);
	dur_ok("007s", 7000);
}

Test(duration, bare_number_is_seconds)
{
	dur_ok("10", 10000);
	dur_ok("1", 1000);
}

Test(duration, year_is_the_limit)
{
	dur_ok("8760h", 365ull * 24 * 3600 * 1000);
	dur_ok("31536000", 365ull * 24 * 3600 * 1000);
	dur_ok("31536000000ms", 365ull * 24 * 3600 * 1000);
	dur_bad("8761h", -ERANGE);
	dur_bad("31536001", -ERANGE);
	dur_bad("31536000001ms", -ERANGE);
	dur_bad("525601m", -ERANGE);
	dur_bad("99999999999999999999999999s", -ERANGE);
	dur_bad("18446744073709551617", -ERANGE);
}

Test(duration, malformed)
{
	static const char *const bad[] = {
		"",   "s",   "ms",   "-1",  "+1",   " 1s", "1s ", "1 s",  "1.5s", "1d", "1S",
		"1H", "1sm", "1mss", "10x", "0x10", "1e3", "h",	  "1m1s", "1hh",  "m5",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		dur_bad(bad[i], -EINVAL);
	cr_assert_eq(sf_parse_duration(NULL, &(uint64_t){ 0 }), -EINVAL);
}

/* ---- sf_upstream_parse, sf_listen_parse ---- */

static char msg[512];

static struct sf_upstream_conf ups_ok(const char *s)
{
	struct sf_upstream_conf u;
	int r;

	memset(&u, 0x5a, sizeof(u));
	r = sf_upstream_parse(s, &u, msg, sizeof(msg));
	cr_assert_eq(r, 0, "sf_upstream_parse(\"%s\") = %d (%s)", s, r, msg);
	return u;
}

/* Fails with -EINVAL and a message mentioning word. */
static void ups_bad(const char *s, const char *word)
{
	struct sf_upstream_conf u;
	int r;

	memset(msg, 0, sizeof(msg));
	r = sf_upstream_parse(s, &u, msg, sizeof(msg));
	cr_assert_eq(r, -EINVAL, "sf_upstream_parse(\"%s\") = %d, want -EINVAL", s, r);
	cr_assert(strcasestr(msg, word) != NULL, "sf_upstream_parse(\"%s\"): \"%s\" lacks \"%s\"",
		  s, msg, word);
}

Test(upstream, plain)
{
	struct sf_upstream_conf u = ups_ok("10.0.0.5:80");

	cr_assert_str_eq(u.hp.host, "10.0.0.5");
	cr_assert_eq(u.hp.port, 80);
	cr_assert_eq(u.port_last, 80);
	cr_assert_eq(u.weight, 1);
	cr_assert_eq(u.backup, 0);
	cr_assert_eq(u.line, 0);
	u = ups_ok("[2001:db8::1]:443");
	cr_assert_str_eq(u.hp.host, "2001:db8::1");
	cr_assert_eq(u.hp.port, 443);
	u = ups_ok("db.internal:5432");
	cr_assert_str_eq(u.hp.host, "db.internal");
}

Test(upstream, options_file_and_command_line_syntax)
{
	struct sf_upstream_conf u = ups_ok("10.0.0.6:80 weight=2");

	cr_assert_eq(u.weight, 2);
	cr_assert_eq(u.backup, 0);
	u = ups_ok("10.0.0.9:80 backup");
	cr_assert_eq(u.backup, 1);
	cr_assert_eq(u.weight, 1);
	u = ups_ok("10.0.0.9:80,backup,weight=256");
	cr_assert_eq(u.backup, 1);
	cr_assert_eq(u.weight, 256);
	u = ups_ok("h:1  weight=1 ,\tbackup");
	cr_assert_eq(u.weight, 1);
	cr_assert_eq(u.backup, 1);
	cr_assert_str_eq(u.hp.host, "h");
	u = ups_ok("[::1]:80,weight=7");
	cr_assert_str_eq(u.hp.host, "::1");
	cr_assert_eq(u.weight, 7);
}

Test(upstream, port_range)
{
	struct sf_upstream_conf u = ups_ok("127.0.0.1:20000-20099 weight=3");

	cr_assert_eq(u.hp.port, 20000);
	cr_assert_eq(u.port_last, 20099);
	cr_assert_eq(u.weight, 3);
	u = ups_ok("h:5-5");
	cr_assert_eq(u.hp.port, 5);
	cr_assert_eq(u.port_last, 5);
	u = ups_ok("h:1-65535");
	cr_assert_eq(u.port_last, 65535);
}

Test(upstream, bad)
{
	ups_bad("", "empty");
	ups_bad(":80", "host");
	ups_bad("h", "port");
	ups_bad("h:0", "port");
	ups_bad("h:65536", "port");
	ups_bad("::1:80", "bracket");
	ups_bad("h:80 weightt=2", "weightt");
	ups_bad("h:80,bogus", "bogus");
	ups_bad("h:80 backupp", "backupp");
	ups_bad("h:80 weight=0", "weight");
	ups_bad("h:80 weight=257", "weight");
	ups_bad("h:80 weight=", "weight");
	ups_bad("h:80 weight=2x", "weight");
	ups_bad("h:80 weight=-1", "weight");
	ups_bad("h:80 weight=99999", "weight");
	ups_bad("h:90-80", "backwards");
	ups_bad("h:80-", "range");
	ups_bad("h:-80", "range");
	ups_bad("h:1-2-3", "range");
	ups_bad("h:1-70000", "range");
}

Test(listen, parse)
{
	struct sf_listen_conf l;

	memset(&l, 0x5a, sizeof(l));
	cr_assert_eq(sf_listen_parse(":8080", &l, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_str_eq(l.hp.host, "");
	cr_assert_eq(l.hp.port, 8080);
	cr_assert_eq(l.port_last, 8080);
	cr_assert_eq(l.line, 0);
	cr_assert_eq(sf_listen_parse("[::]:10000-10099", &l, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_str_eq(l.hp.host, "::");
	cr_assert_eq(l.hp.port, 10000);
	cr_assert_eq(l.port_last, 10099);
	cr_assert_eq(sf_listen_parse("127.0.0.1:15432", &l, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_str_eq(l.hp.host, "127.0.0.1");
	cr_assert_eq(l.port_last, 15432);
}

Test(listen, bad)
{
	static const char *const bad[] = {
		"", "8080", ":0", ":65536", "::1:80", ":90-80", ":80-", ":80 backup", "h:1-2-3",
	};
	struct sf_listen_conf l;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(msg, 0, sizeof(msg));
		cr_assert_eq(sf_listen_parse(bad[i], &l, msg, sizeof(msg)), -EINVAL, "\"%s\"",
			     bad[i]);
		cr_assert_neq(msg[0], '\0', "\"%s\": no message", bad[i]);
	}
}

Test(balance, names)
{
	cr_assert_str_eq(sf_balance_name(SF_BAL_ROUNDROBIN), "roundrobin");
	cr_assert_str_eq(sf_balance_name(SF_BAL_LEASTCONN), "leastconn");
	cr_assert_str_eq(sf_balance_name(SF_BAL_SOURCE), "source");
	cr_assert_str_eq(sf_balance_name(SF_BAL_FIRST), "first");
	cr_assert_null(sf_balance_name(-1));
	cr_assert_null(sf_balance_name(SF_BAL_FIRST + 1));
}

/* ---- the file ---- */

static char tdir[64];
static char tpath[PATH_MAX];
static char errbuf[1024];
static int nfiles;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove the temp dir and the files this test wrote in it. */
static void cleanup_dir(void)
{
	if (tdir[0] == '\0')
		return;
	nftw(tdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	tdir[0] = '\0';
}

TestSuite(config_file, .fini = cleanup_dir);
TestSuite(config_finish, .fini = cleanup_dir);

/* Write text into a new file of the test's temp dir; returns its path. */
static const char *write_file(const char *name, const char *text)
{
	static char path[PATH_MAX];
	FILE *f;

	if (tdir[0] == '\0') {
		snprintf(tdir, sizeof(tdir), "/tmp/sfconf.XXXXXX");
		cr_assert_not_null(mkdtemp(tdir), "mkdtemp");
	}
	if (name == NULL) {
		snprintf(path, sizeof(path), "%s/t%d.conf", tdir, nfiles++);
	} else {
		snprintf(path, sizeof(path), "%s/%s", tdir, name);
	}
	f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s", path);
	cr_assert_geq(fputs(text, f), 0);
	cr_assert_eq(fclose(f), 0);
	return path;
}

/*
 * Load path as "sockfwd -c path EXTRA..." would: options, then the file.
 * Returns sf_config_load's result (the options must parse).
 */
static int load_path_argv(struct sf_config *cfg, const char *path, int argc, char **extra)
{
	char *argv[32] = { "sockfwd", "-c", (char *)path };
	int r;

	cr_assert_lt(argc, 28);
	for (int i = 0; i < argc; i++)
		argv[3 + i] = extra[i];
	snprintf(tpath, sizeof(tpath), "%s", path);
	memset(errbuf, 0, sizeof(errbuf));
	r = sf_options_parse(3 + argc, argv, cfg, errbuf, sizeof(errbuf));
	cr_assert_eq(r, SF_OPT_RUN, "options: %s", errbuf);
	return sf_config_load(cfg, errbuf, sizeof(errbuf));
}

static int load_text(struct sf_config *cfg, const char *text)
{
	return load_path_argv(cfg, write_file(NULL, text), 0, NULL);
}

/* Load and finish text, which must be good. */
static void good(struct sf_config *cfg, const char *text)
{
	int r = load_text(cfg, text);

	cr_assert_eq(r, 0, "load: %s", errbuf);
	r = sf_config_finish(cfg, errbuf, sizeof(errbuf));
	cr_assert_eq(r, 0, "finish: %s", errbuf);
}

/* The 1-based line of text holding the marker "#!", else 1. */
static int marked_line(const char *text)
{
	const char *m = strstr(text, "#!");
	int line = 1;

	for (const char *p = text; m != NULL && p < m; p++)
		line += *p == '\n';
	return line;
}

/*
 * text must fail, in sf_config_load or else in sf_config_finish, with
 * -EINVAL and "FILE:LINE: " at the line marked "#!", mentioning key
 * (exactly) and word (ignoring case).
 */
static void bad(const char *text, const char *key, const char *word)
{
	struct sf_config cfg;
	char want[PATH_MAX + 32];
	int r = load_text(&cfg, text);

	if (r == 0)
		r = sf_config_finish(&cfg, errbuf, sizeof(errbuf));
	cr_assert_eq(r, -EINVAL, "got %d, want -EINVAL for:\n%s", r, text);
	snprintf(want, sizeof(want), "%s:%d: ", tpath, marked_line(text));
	cr_assert(strncmp(errbuf, want, strlen(want)) == 0,
		  "message \"%s\" should start with \"%s\"; file:\n%s", errbuf, want, text);
	cr_assert(strchr(errbuf, '\n') == NULL, "message not one line: \"%s\"", errbuf);
	if (key != NULL)
		cr_assert(strstr(errbuf, key) != NULL, "message \"%s\" should name \"%s\"", errbuf,
			  key);
	if (word != NULL)
		cr_assert(strcasestr(errbuf, word) != NULL, "message \"%s\" should say \"%s\"",
			  errbuf, word);
	sf_config_free(&cfg);
}

/* A minimal valid rules group, to append to files testing other keys. */
#define RULES "rules = { r = { listen = \":1\"; upstream = \"h:2\"; }; };\n"

/* The example of the design, verbatim. */
static const char example[] =
	"# sockfwd.conf\n"
	"engine = \"splice\";          # globals: engine, threads, buffer_size, pipe_size, "
	"log_level (\"quiet\"|\"normal\"|\"verbose\")\n"
	"threads = 2;\n"
	"defaults = {\n"
	"  connect_timeout = \"5s\";\n"
	"  keepalive = true;\n"
	"};\n"
	"rules = {\n"
	"  web = {\n"
	"    listen = [ \":8080\", \"[::]:8081\" ];\n"
	"    upstream = [ \"10.0.0.5:80\", \"10.0.0.6:80 weight=2\", \"10.0.0.9:80 backup\" ];\n"
	"    balance = \"leastconn\";\n"
	"    idle_timeout = \"5m\";\n"
	"    max_conns = 20000;\n"
	"    allow = [ \"10.0.0.0/8\", \"2001:db8::/32\" ];\n"
	"    proxy_protocol = \"v2\";\n"
	"  };\n"
	"  db = { listen = \"127.0.0.1:15432\"; upstream = \"db.internal:5432\"; };\n"
	"  range = { listen = \":10000-10099\"; upstream = \"127.0.0.1:20000-20099\"; };\n"
	"};\n";

/* Policy every rule gets from the built-in defaults, but connect_timeout 5s. */
static void assert_builtin(const struct sf_policy *p, unsigned skip)
{
	if (!(skip & SF_P_BALANCE))
		cr_assert_eq(p->balance, SF_BAL_ROUNDROBIN);
	if (!(skip & SF_P_MAX_FAILS))
		cr_assert_eq(p->max_fails, 1);
	if (!(skip & SF_P_FAIL_TIMEOUT))
		cr_assert_eq(p->fail_timeout_ms, 10000);
	if (!(skip & SF_P_CONNECT_TIMEOUT))
		cr_assert_eq(p->connect_timeout_ms, 10000);
	if (!(skip & SF_P_IDLE_TIMEOUT))
		cr_assert_eq(p->idle_timeout_ms, 0);
	if (!(skip & SF_P_KEEPALIVE))
		cr_assert_eq(p->keepalive, 1);
	if (!(skip & SF_P_MAX_CONNS))
		cr_assert_eq(p->max_conns, 0);
	if (!(skip & SF_P_ALLOW)) {
		cr_assert_eq(p->nallow, 0);
		cr_assert_null(p->allow);
	}
	if (!(skip & SF_P_DENY)) {
		cr_assert_eq(p->ndeny, 0);
		cr_assert_null(p->deny);
	}
	if (!(skip & SF_P_PROXY_PROTOCOL))
		cr_assert_eq(p->proxy_protocol, SF_PP_NONE);
	if (!(skip & SF_P_ACCEPT_PROXY))
		cr_assert_eq(p->accept_proxy, 0);
}

Test(config_file, design_example_loads_with_every_value)
{
	struct sf_config cfg;
	const struct sf_rule_conf *web, *db, *range;

	good(&cfg, example);
	cr_assert_eq(cfg.engine, &sf_engine_splice);
	cr_assert_eq(cfg.threads, 2);
	cr_assert_eq(cfg.buffer_size, SF_DEFAULT_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_DEFAULT_PIPE_SIZE);
	cr_assert_eq(cfg.loglevel, SF_LOG_NORMAL);
	cr_assert_eq(cfg.gset, 0);
	cr_assert_eq(cfg.defaults.set, SF_P_CONNECT_TIMEOUT | SF_P_KEEPALIVE);
	cr_assert_eq(cfg.defaults.connect_timeout_ms, 5000);
	cr_assert_eq(cfg.nrules, 3);
	web = &cfg.rules[0];
	db = &cfg.rules[1];
	range = &cfg.rules[2];

	cr_assert_str_eq(web->name, "web");
	cr_assert_eq(web->line, 9);
	cr_assert_eq(web->nlisten, 2);
	cr_assert_str_eq(web->listen[0].hp.host, "");
	cr_assert_eq(web->listen[0].hp.port, 8080);
	cr_assert_eq(web->listen[0].port_last, 8080);
	cr_assert_eq(web->listen[0].line, 10);
	cr_assert_str_eq(web->listen[1].hp.host, "::");
	cr_assert_eq(web->listen[1].hp.port, 8081);
	cr_assert_eq(web->nups, 3);
	cr_assert_str_eq(web->ups[0].hp.host, "10.0.0.5");
	cr_assert_eq(web->ups[0].hp.port, 80);
	cr_assert_eq(web->ups[0].weight, 1);
	cr_assert_eq(web->ups[0].backup, 0);
	cr_assert_eq(web->ups[0].line, 11);
	cr_assert_str_eq(web->ups[1].hp.host, "10.0.0.6");
	cr_assert_eq(web->ups[1].weight, 2);
	cr_assert_eq(web->ups[1].backup, 0);
	cr_assert_str_eq(web->ups[2].hp.host, "10.0.0.9");
	cr_assert_eq(web->ups[2].weight, 1);
	cr_assert_eq(web->ups[2].backup, 1);
	cr_assert_eq(web->pol.set, SF_P_BALANCE | SF_P_IDLE_TIMEOUT | SF_P_MAX_CONNS | SF_P_ALLOW |
					   SF_P_PROXY_PROTOCOL);
	cr_assert_eq(web->pol.balance, SF_BAL_LEASTCONN);
	cr_assert_eq(web->pol.idle_timeout_ms, 5 * 60 * 1000);
	cr_assert_eq(web->pol.max_conns, 20000);
	cr_assert_eq(web->pol.nallow, 2);
	/* acl.h: IPv4 is kept mapped, its prefix + 96. */
	cr_assert_eq(web->pol.allow[0].prefix, 8 + 96);
	cr_assert_eq(web->pol.allow[0].addr[12], 10);
	cr_assert_eq(web->pol.allow[1].prefix, 32);
	cr_assert_eq(web->pol.allow[1].addr[0], 0x20);
	cr_assert_eq(web->pol.allow[1].addr[1], 0x01);
	cr_assert_eq(web->pol.proxy_protocol, SF_PP_V2);
	cr_assert_eq(web->pol.connect_timeout_ms, 5000, "from defaults");
	cr_assert_eq(web->pol.keepalive, 1);
	assert_builtin(&web->pol, web->pol.set | SF_P_CONNECT_TIMEOUT);

	cr_assert_str_eq(db->name, "db");
	cr_assert_eq(db->line, 18);
	cr_assert_eq(db->nlisten, 1);
	cr_assert_str_eq(db->listen[0].hp.host, "127.0.0.1");
	cr_assert_eq(db->listen[0].hp.port, 15432);
	cr_assert_eq(db->listen[0].line, 18);
	cr_assert_eq(db->nups, 1);
	cr_assert_str_eq(db->ups[0].hp.host, "db.internal");
	cr_assert_eq(db->ups[0].hp.port, 5432);
	cr_assert_eq(db->pol.set, 0);
	cr_assert_eq(db->pol.connect_timeout_ms, 5000);
	assert_builtin(&db->pol, SF_P_CONNECT_TIMEOUT);

	cr_assert_str_eq(range->name, "range");
	cr_assert_str_eq(range->listen[0].hp.host, "");
	cr_assert_eq(range->listen[0].hp.port, 10000);
	cr_assert_eq(range->listen[0].port_last, 10099);
	cr_assert_str_eq(range->ups[0].hp.host, "127.0.0.1");
	cr_assert_eq(range->ups[0].hp.port, 20000);
	cr_assert_eq(range->ups[0].port_last, 20099);
	assert_builtin(&range->pol, SF_P_CONNECT_TIMEOUT);
	sf_config_free(&cfg);
	cr_assert_null(cfg.rules);
	cr_assert_null(cfg.file);
}

/* tests run from the repository root (Makefile). */
Test(config_file, docs_example_loads)
{
	struct sf_config cfg;
	int r = load_path_argv(&cfg, "docs/examples/sockfwd.conf", 0, NULL);

	cr_assert_eq(r, 0, "%s", errbuf);
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	cr_assert_geq(cfg.nrules, 3);
	for (size_t i = 0; i < cfg.nrules; i++) {
		cr_assert_geq(cfg.rules[i].nlisten, 1);
		cr_assert_geq(cfg.rules[i].nups, 1);
		cr_assert_gt(cfg.rules[i].pol.connect_timeout_ms, 0);
	}
	sf_config_free(&cfg);
}

Test(config_file, globals)
{
	struct sf_config cfg;

	good(&cfg, "engine = \"epoll\";\n"
		   "threads = 3;\n"
		   "buffer_size = \"128k\";\n"
		   "pipe_size = 1048576;\n"
		   "log_level = \"verbose\";\n" RULES);
	cr_assert_eq(cfg.engine, &sf_engine_epoll);
	cr_assert_eq(cfg.threads, 3);
	cr_assert_eq(cfg.buffer_size, 128 * 1024);
	cr_assert_eq(cfg.pipe_size, 1024 * 1024);
	cr_assert_eq(cfg.loglevel, SF_LOG_VERBOSE);
	sf_config_free(&cfg);
	good(&cfg, "log_level = \"quiet\";\nbuffer_size = 1024;\npipe_size = \"1g\";\n" RULES);
	cr_assert_eq(cfg.loglevel, SF_LOG_QUIET);
	cr_assert_eq(cfg.buffer_size, SF_MIN_BUFFER_SIZE);
	cr_assert_eq(cfg.pipe_size, SF_MAX_PIPE_SIZE);
	sf_config_free(&cfg);
	good(&cfg, "log_level = \"normal\";\nthreads = 1024;\n" RULES);
	cr_assert_eq(cfg.loglevel, SF_LOG_NORMAL);
	cr_assert_eq(cfg.threads, SF_MAX_THREADS);
	sf_config_free(&cfg);
}

Test(config_file, every_policy_key_and_value_forms)
{
	struct sf_config cfg;
	const struct sf_policy *p;

	good(&cfg, "rules = { r = {\n"
		   "  listen = [ \":1\" ]; upstream = ( \"h:2\", \"h:3, weight=4\" );\n"
		   "  balance = \"source\"; max_fails = 0; fail_timeout = 30;\n"
		   "  connect_timeout = \"250ms\"; idle_timeout = \"1h\"; keepalive = false;\n"
		   "  max_conns = 7; allow = \"192.168.0.0/16\"; deny = [ \"192.168.1.1\" ];\n"
		   "  proxy_protocol = \"v1\"; accept_proxy = true;\n"
		   "}; };\n");
	p = &cfg.rules[0].pol;
	cr_assert_eq(cfg.rules[0].nups, 2);
	cr_assert_eq(cfg.rules[0].ups[1].weight, 4);
	cr_assert_eq(p->set, 0x7ff, "every key set: %#x", p->set);
	cr_assert_eq(p->balance, SF_BAL_SOURCE);
	cr_assert_eq(p->max_fails, 0);
	cr_assert_eq(p->fail_timeout_ms, 30000);
	cr_assert_eq(p->connect_timeout_ms, 250);
	cr_assert_eq(p->idle_timeout_ms, 3600000);
	cr_assert_eq(p->keepalive, 0);
	cr_assert_eq(p->max_conns, 7);
	cr_assert_eq(p->nallow, 1);
	cr_assert_eq(p->allow[0].prefix, 16 + 96);
	cr_assert_eq(p->ndeny, 1);
	cr_assert_eq(p->deny[0].prefix, 128);
	cr_assert_eq(p->proxy_protocol, SF_PP_V1);
	cr_assert_eq(p->accept_proxy, 1);
	sf_config_free(&cfg);
	good(&cfg, "rules = { r = { listen = \":1\"; upstream = \"h:2\"; balance = \"first\";\n"
		   "proxy_protocol = \"none\"; max_conns = 2147483647; }; };\n");
	cr_assert_eq(cfg.rules[0].pol.balance, SF_BAL_FIRST);
	cr_assert_eq(cfg.rules[0].pol.proxy_protocol, SF_PP_NONE);
	cr_assert_eq(cfg.rules[0].pol.max_conns, 2147483647u);
	sf_config_free(&cfg);
}

Test(config_file, inheritance)
{
	struct sf_config cfg;
	const struct sf_policy *a, *b, *c;

	good(&cfg, "defaults = {\n"
		   "  allow = [ \"10.0.0.0/8\" ]; deny = \"10.1.0.0/16\";\n"
		   "  idle_timeout = 30; max_fails = 3; balance = \"leastconn\";\n"
		   "};\n"
		   "rules = {\n"
		   "  a = { listen = \":1\"; upstream = \"h:1\";\n"
		   "        allow = [ \"192.168.0.0/16\", \"fd00::/8\" ]; max_fails = 0; };\n"
		   "  b = { listen = \":2\"; upstream = \"h:2\"; };\n"
		   "  c = { listen = \":3\"; upstream = \"h:3\"; allow = []; idle_timeout = 0;\n"
		   "        balance = \"roundrobin\"; };\n"
		   "};\n");
	a = &cfg.rules[0].pol;
	b = &cfg.rules[1].pol;
	c = &cfg.rules[2].pol;
	/* A rule's allow list replaces the defaults' whole. */
	cr_assert_eq(a->nallow, 2);
	cr_assert_eq(a->allow[0].prefix, 16 + 96);
	cr_assert_eq(a->allow[1].prefix, 8);
	cr_assert_eq(a->ndeny, 1, "deny inherited");
	cr_assert_eq(a->deny[0].prefix, 16 + 96);
	cr_assert_eq(a->max_fails, 0, "an explicit 0 overrides the defaults' 3");
	cr_assert_eq(a->idle_timeout_ms, 30000);
	cr_assert_eq(a->balance, SF_BAL_LEASTCONN);
	cr_assert_eq(a->set, SF_P_ALLOW | SF_P_MAX_FAILS, "set keeps the rule's own keys");
	/* b inherits everything, in its own copy of the lists. */
	cr_assert_eq(b->nallow, 1);
	cr_assert_eq(b->allow[0].prefix, 8 + 96);
	cr_assert_neq(b->allow, cfg.defaults.allow);
	cr_assert_neq(b->deny, a->deny);
	cr_assert_eq(b->max_fails, 3);
	cr_assert_eq(b->idle_timeout_ms, 30000);
	cr_assert_eq(b->connect_timeout_ms, SF_DEFAULT_CONNECT_TIMEOUT_MS);
	cr_assert_eq(b->fail_timeout_ms, SF_DEFAULT_FAIL_TIMEOUT_MS);
	/* An empty list drops the inherited one; 0 and roundrobin override. */
	cr_assert_eq(c->nallow, 0);
	cr_assert_eq(c->ndeny, 1);
	cr_assert_eq(c->idle_timeout_ms, 0);
	cr_assert_eq(c->balance, SF_BAL_ROUNDROBIN);
	/* The defaults are completed with the built-ins too. */
	cr_assert_eq(cfg.defaults.connect_timeout_ms, SF_DEFAULT_CONNECT_TIMEOUT_MS);
	cr_assert_eq(cfg.defaults.keepalive, 1);
	/* Finishing again changes nothing (and leaks nothing under ASan). */
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	cr_assert_eq(b->nallow, 1);
	cr_assert_eq(a->nallow, 2);
	cr_assert_eq(c->nallow, 0);
	sf_config_free(&cfg);
}

/* -b -j -v -q and the sizes beat the file's globals; policy flags its defaults. */
Test(config_file, command_line_wins)
{
	struct sf_config cfg;
	const char *path = write_file(NULL, "engine = \"naive\";\nthreads = 2;\n"
					    "log_level = \"verbose\";\nbuffer_size = \"8k\";\n"
					    "pipe_size = \"8k\";\n"
					    "defaults = { idle_timeout = \"1m\"; max_conns = 5;\n"
					    "  allow = [ \"10.0.0.0/8\", \"10.2.0.0/16\" ]; };\n"
					    "rules = {\n"
					    "  a = { listen = \":1\"; upstream = \"h:1\"; };\n"
					    "  b = { listen = \":2\"; upstream = \"h:2\";\n"
					    "        idle_timeout = \"2s\"; };\n"
					    "};\n");
	char *extra[] = { "-b",		  "epoll",	    "-j",  "3",
			  "-q",		  "--buffer-size",  "16k", "--pipe-size",
			  "16k",	  "--idle-timeout", "7s",  "--allow",
			  "172.16.0.0/12" };

	cr_assert_eq(load_path_argv(&cfg, path, 13, extra), 0, "%s", errbuf);
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	cr_assert_eq(cfg.engine, &sf_engine_epoll);
	cr_assert_eq(cfg.threads, 3);
	cr_assert_eq(cfg.loglevel, SF_LOG_QUIET);
	cr_assert_eq(cfg.buffer_size, 16 * 1024);
	cr_assert_eq(cfg.pipe_size, 16 * 1024);
	cr_assert_eq(cfg.rules[0].pol.idle_timeout_ms, 7000);
	cr_assert_eq(cfg.rules[0].pol.max_conns, 5, "the file's default where no flag");
	cr_assert_eq(cfg.rules[0].pol.nallow, 1);
	cr_assert_eq(cfg.rules[0].pol.allow[0].addr[12], 172);
	cr_assert_eq(cfg.rules[1].pol.idle_timeout_ms, 2000, "a rule's own key wins");
	sf_config_free(&cfg);

	/* Without the flags, the file's globals apply. */
	cr_assert_eq(load_path_argv(&cfg, path, 0, NULL), 0, "%s", errbuf);
	cr_assert_eq(cfg.engine, &sf_engine_naive);
	cr_assert_eq(cfg.threads, 2);
	cr_assert_eq(cfg.loglevel, SF_LOG_VERBOSE);
	cr_assert_eq(cfg.buffer_size, 8 * 1024);
	sf_config_free(&cfg);
}

Test(config_file, include_is_relative_to_the_file)
{
	struct sf_config cfg;
	char want[PATH_MAX + 32];
	const char *path;

	write_file("inc.conf", "rules = {\n"
			       "  a = { listen = \":1\"; upstream = \"h:1\"; };\n"
			       "};\n");
	path = write_file("main.conf", "# main\nthreads = 1;\n@include \"inc.conf\"\n");
	cr_assert_eq(load_path_argv(&cfg, path, 0, NULL), 0, "%s", errbuf);
	cr_assert_eq(cfg.nrules, 1);
	cr_assert_str_eq(cfg.rules[0].name, "a");
	sf_config_free(&cfg);

	/* A mistake inside the included file names that file and its line. */
	write_file("inc2.conf", "rules = {\n"
				"  a = { listen = \":1\"; upstream = \"h:1\"; bogus = 1; };\n"
				"};\n");
	path = write_file("main2.conf", "@include \"inc2.conf\"\n");
	cr_assert_eq(load_path_argv(&cfg, path, 0, NULL), -EINVAL);
	snprintf(want, sizeof(want), "%s/inc2.conf:2: rules.a.bogus: ", tdir);
	cr_assert(strncmp(errbuf, want, strlen(want)) == 0, "\"%s\" should start with \"%s\"",
		  errbuf, want);
	sf_config_free(&cfg);
}

/*
 * libconfig 1.5 exits the process ("input in flex scanner failed") when an
 * @include names a directory: sf_config_load refuses those first, with
 * FILE:LINE, and one that is no regular file (a FIFO would block). Found
 * by fuzz_config: tests/fuzz/corpus/config/regress-include-empty-name.
 */
Test(config_file, include_of_a_directory_is_an_error)
{
	struct sf_config cfg;
	char want[PATH_MAX + 32], sub[PATH_MAX];
	const char *path;

	bad("@include \"\" #!\n" RULES, "@include", "directory");
	bad("threads = 1;\n  @include  \".\" #!\n" RULES, "\".\"", "directory");
	write_file(NULL, "");
	snprintf(sub, sizeof(sub), "%s/sub", tdir);
	cr_assert_eq(mkdir(sub, 0700), 0, "mkdir %s", sub);
	bad("@include \"sub\" #!\n" RULES, "sub", "directory");
	snprintf(sub, sizeof(sub), "%s/fifo", tdir);
	cr_assert_eq(mkfifo(sub, 0600), 0, "mkfifo %s", sub);
	bad("\n@include \"fifo\" #!\n" RULES, "fifo", "regular file");

	/* In an included file: that file and its line. */
	write_file("incdir.conf", "threads = 1;\n@include \"..\"\n");
	path = write_file("main.conf", "@include \"incdir.conf\"\n" RULES);
	cr_assert_eq(load_path_argv(&cfg, path, 0, NULL), -EINVAL);
	snprintf(want, sizeof(want), "%s/incdir.conf:2: @include \"..\": ", tdir);
	cr_assert(strncmp(errbuf, want, strlen(want)) == 0, "\"%s\" should start with \"%s\"",
		  errbuf, want);
	sf_config_free(&cfg);
}

/* What libconfig does not take as a directive is not checked either. */
Test(config_file, include_in_comment_or_string_is_no_include)
{
	struct sf_config cfg;

	good(&cfg, "/*\n@include \".\"\n*/\n# @include \".\"\n// @include \".\"\n"
		   "user = \"a\n@include \\\".\\\"\";\n" RULES);
	cr_assert_str_eq(cfg.user, "a\n@include \".\"");
	sf_config_free(&cfg);
}

Test(config_file, missing_file)
{
	struct sf_config cfg;
	char path[PATH_MAX];

	write_file(NULL, ""); /* makes the temp dir */
	snprintf(path, sizeof(path), "%s/nonexistent.conf", tdir);
	cr_assert_eq(load_path_argv(&cfg, path, 0, NULL), -EINVAL);
	cr_assert(strncmp(errbuf, path, strlen(path)) == 0, "\"%s\"", errbuf);
	cr_assert_err_mentions(errbuf, "cannot read");
	cr_assert_err_mentions(errbuf, "No such file");
	sf_config_free(&cfg);
}

Test(config_file, bad_syntax)
{
	bad("# c\nthreads = 2;\nengine = ; #!\n" RULES, NULL, "syntax");
	/* (A string where a name belongs is one too, but libconfig 1.5 leaks it.) */
	bad("threads = 2;\n= 1; #!\n" RULES, NULL, "syntax");
	bad("rules = {\n  a = { listen = \":1\"; upstream = \"h:1\"; }\n  b = { listen = 1 2; }; "
	    "#!\n};\n",
	    NULL, "syntax");
	/* libconfig refuses two rules of one name, at the second. */
	bad("rules = {\n  a = { listen = \":1\"; upstream = \"h:1\"; };\n"
	    "  a = { listen = \":2\"; upstream = \"h:2\"; }; #!\n};\n",
	    NULL, "duplicate");
	bad("threads = 1;\nthreads = 2; #!\n" RULES, NULL, "duplicate");
}

Test(config_file, bad_unknown_keys)
{
	bad("threads = 2;\nthread = 3; #!\n" RULES, "thread", "unknown");
	bad("defaults = {\n  connect_timeout = 5;\n  conect_timeout = 5; #!\n};\n" RULES,
	    "defaults.conect_timeout", "unknown");
	bad("defaults = { listen = \":1\"; #!\n};\n" RULES, "defaults.listen", "unknown");
	bad("rules = {\n  web = {\n    listen = \":1\"; upstream = \"h:1\";\n"
	    "    upstreams = \"h:2\"; #!\n  };\n};\n",
	    "rules.web.upstreams", "unknown");
	bad("rules = { web = { listen = \":1\"; upstream = \"h:1\"; engine = \"naive\"; #!\n};};",
	    "rules.web.engine", "unknown");
}

Test(config_file, bad_types)
{
	bad("threads = \"2\"; #!\n" RULES, "threads", "integer");
	bad("threads = 2.0; #!\n" RULES, "threads", "integer");
	bad("engine = 1; #!\n" RULES, "engine", "string");
	bad("log_level = 2; #!\n" RULES, "log_level", "string");
	bad("buffer_size = true; #!\n" RULES, "buffer_size", "size");
	bad("defaults = 1; #!\n" RULES, "defaults", "group");
	bad("defaults = {\n keepalive = \"yes\"; #!\n};\n" RULES, "defaults.keepalive", "true");
	bad("defaults = {\n accept_proxy = 1; #!\n};\n" RULES, "defaults.accept_proxy", "true");
	bad("defaults = {\n balance = 1; #!\n};\n" RULES, "defaults.balance", "string");
	bad("defaults = {\n max_conns = 1.5; #!\n};\n" RULES, "defaults.max_conns", "integer");
	bad("defaults = {\n max_fails = \"3\"; #!\n};\n" RULES, "defaults.max_fails", "integer");
	bad("defaults = {\n connect_timeout = 1.5; #!\n};\n" RULES, "defaults.connect_timeout",
	    "duration");
	bad("defaults = {\n proxy_protocol = true; #!\n};\n" RULES, "defaults.proxy_protocol",
	    "string");
	bad("defaults = {\n allow = 10; #!\n};\n" RULES, "defaults.allow", "string");
	bad("rules = 5; #!\n", "rules", "group");
	bad("rules = {\n  web = \"x\"; #!\n};\n", "rules.web", "group");
	bad("rules = { r = { listen = 5; #!\n upstream = \"h:1\"; }; };\n", "rules.r.listen",
	    "string");
	bad("rules = { r = { listen = \":1\";\n upstream = ( \"h:1\",\n 2 ); #!\n }; };\n",
	    "rules.r.upstream[1]", "string");
	/* An array [ ] holds one type: libconfig itself refuses a mix. */
	bad("rules = { r = { listen = \":1\";\n upstream = [ \"h:1\",\n 2 ]; #!\n }; };\n", NULL,
	    "mismatched");
	bad("rules = { r = { listen = \":1\"; upstream = { a = 1; }; #!\n }; };\n",
	    "rules.r.upstream", "list");
}

Test(config_file, bad_values)
{
	bad("engine = \"nosuch\"; #!\n" RULES, "engine", "nosuch");
	bad("threads = 0; #!\n" RULES, "threads", "range");
	bad("threads = 1025; #!\n" RULES, "threads", "range");
	bad("threads = -1; #!\n" RULES, "threads", "range");
	bad("log_level = \"loud\"; #!\n" RULES, "log_level", "loud");
	bad("buffer_size = \"12x\"; #!\n" RULES, "buffer_size", "malformed");
	bad("buffer_size = \"65m\"; #!\n" RULES, "buffer_size", "range");
	bad("buffer_size = 1023; #!\n" RULES, "buffer_size", "range");
	bad("pipe_size = 1024; #!\n" RULES, "pipe_size", "range");
	bad("pipe_size = \"2g\"; #!\n" RULES, "pipe_size", "range");
	bad("pipe_size = \"99999999999999999999\"; #!\n" RULES, "pipe_size", "range");
	bad("defaults = {\n balance = \"random\"; #!\n};\n" RULES, "defaults.balance", "random");
	bad("defaults = {\n proxy_protocol = \"v3\"; #!\n};\n" RULES, "defaults.proxy_protocol",
	    "v3");
	bad("defaults = {\n max_fails = -1; #!\n};\n" RULES, "defaults.max_fails", "range");
	bad("defaults = {\n max_conns = -5; #!\n};\n" RULES, "defaults.max_conns", "range");
}

Test(config_file, bad_durations)
{
	bad("defaults = {\n connect_timeout = \"5x\"; #!\n};\n" RULES, "defaults.connect_timeout",
	    "duration");
	bad("defaults = {\n connect_timeout = 0; #!\n};\n" RULES, "defaults.connect_timeout",
	    "greater than 0");
	bad("defaults = {\n connect_timeout = \"0ms\"; #!\n};\n" RULES, "defaults.connect_timeout",
	    "greater than 0");
	bad("defaults = {\n idle_timeout = -1; #!\n};\n" RULES, "defaults.idle_timeout",
	    "negative");
	bad("defaults = {\n idle_timeout = \"-1s\"; #!\n};\n" RULES, "defaults.idle_timeout",
	    "duration");
	bad("defaults = {\n fail_timeout = \"9000h\"; #!\n};\n" RULES, "defaults.fail_timeout",
	    "year");
	bad("defaults = {\n fail_timeout = 31536001; #!\n};\n" RULES, "defaults.fail_timeout",
	    "year");
	bad("rules = { r = { listen = \":1\"; upstream = \"h:1\";\n"
	    "  idle_timeout = \"1d\"; #!\n}; };\n",
	    "rules.r.idle_timeout", "duration");
}

Test(config_file, bad_addresses)
{
	bad("rules = { r = {\n listen = \"localhost\"; #!\n upstream = \"h:1\"; }; };\n",
	    "rules.r.listen", "port");
	bad("rules = { r = {\n listen = \":0\"; #!\n upstream = \"h:1\"; }; };\n", "rules.r.listen",
	    "port");
	bad("rules = { r = {\n listen = [ \":1\",\n \":90-80\" ]; #!\n upstream = \"h:1\"; }; };\n",
	    "rules.r.listen[1]", "backwards");
	bad("rules = { r = { listen = \":1\";\n upstream = \":80\"; #!\n }; };\n",
	    "rules.r.upstream", "host");
	bad("rules = { r = { listen = \":1\";\n upstream = \"::1:80\"; #!\n }; };\n",
	    "rules.r.upstream", "bracket");
	bad("rules = { r = { listen = \":1\";\n upstream = [\n \"h:80 weight=2\",\n"
	    "   \"h:81 weightt=2\" ]; #!\n }; };\n",
	    "rules.r.upstream[1]", "weightt");
	/*
	 * libconfig 1.5 dates a list's last element at the token after it:
	 * with the bracket on the next line, that line (docs/config.md).
	 */
	bad("rules = { r = { listen = \":1\";\n upstream = [\n \"h:80 weight=2\",\n"
	    "   \"h:81 weightt=2\"\n ]; }; }; #!\n",
	    "rules.r.upstream[1]", "weightt");
	bad("rules = { r = { listen = \":1\";\n upstream = \"h:80 weight=0\"; #!\n }; };\n",
	    "rules.r.upstream", "weight");
	bad("rules = { r = { listen = \":1\";\n upstream = \"h:80 weight=257\"; #!\n }; };\n",
	    "rules.r.upstream", "weight");
	bad("rules = { r = { listen = \":1\";\n upstream = \"h:80, backup, fast\"; #!\n }; };\n",
	    "rules.r.upstream", "fast");
}

Test(config_file, bad_cidrs)
{
	bad("defaults = {\n  allow = [\n    \"10.0.0.0/8\",\n    \"bogus\", #!\n"
	    "    \"192.168.0.0/16\"\n  ];\n};\n" RULES,
	    "defaults.allow[1]", NULL);
	bad("rules = { r = { listen = \":1\"; upstream = \"h:1\";\n"
	    "  deny = \"10.0.0.0/99\"; #!\n}; };\n",
	    "rules.r.deny", NULL);
	bad("rules = { r = { listen = \":1\"; upstream = \"h:1\";\n"
	    "  deny = ( \"::1\", 5 ); #!\n}; };\n",
	    "rules.r.deny[1]", "string");
}

Test(config_file, bad_rules)
{
	char text[512], name[SF_NAME_MAX + 1];

	bad("rules = {\n  web = { #!\n    upstream = \"h:1\";\n  };\n};\n", "rules.web", "listen");
	bad("rules = {\n  web = { #!\n    listen = \":1\";\n  };\n};\n", "rules.web", "upstream");
	bad("rules = {\n  web = { }; #!\n};\n", "rules.web", "listen");
	bad("rules = {\n  web = {\n    listen = [ ]; #!\n    upstream = \"h:1\";\n  };\n};\n",
	    "rules.web.listen", "empty");
	bad("rules = {\n  web = {\n    listen = \":1\";\n    upstream = ( ); #!\n  };\n};\n",
	    "rules.web.upstream", "empty");
	bad("threads = 1;\nrules = { }; #!\n", "rules", "no rules");
	bad("threads = 1;\nengine = \"epoll\";\n", NULL, "rules");
	bad("", NULL, "rules");
	bad("defaults = { keepalive = true; };\n", NULL, "rules");

	/* 63 characters fit in name[64]; 64 do not. */
	memset(name, 'n', SF_NAME_MAX);
	name[SF_NAME_MAX] = '\0';
	snprintf(text, sizeof(text),
		 "rules = {\n  %s = { listen = \":1\"; upstream = \"h:1\"; }; #!\n};\n", name);
	bad(text, "rules.nnn", "longer");
	name[SF_NAME_MAX - 1] = '\0';
	{
		struct sf_config cfg;

		snprintf(text, sizeof(text),
			 "rules = {\n  %s = { listen = \":1\"; upstream = \"h:1\"; };\n};\n", name);
		good(&cfg, text);
		cr_assert_str_eq(cfg.rules[0].name, name);
		sf_config_free(&cfg);
	}
}

/* A rule with n upstreams, marker after the last. */
static void pool_text(char *text, size_t len, int n, const char *marker)
{
	size_t o = (size_t)snprintf(text, len, "rules = { r = { listen = \":1\";\n upstream = [\n");

	for (int i = 1; i <= n; i++)
		o += (size_t)snprintf(text + o, len - o, "  \"h:%d\"%s%s\n", i, i < n ? "," : " ];",
				      i == n ? marker : "");
	snprintf(text + o, len - o, " }; };\n");
}

Test(config_file, pool_limit)
{
	char text[8192];
	struct sf_config cfg;

	pool_text(text, sizeof(text), SF_POOL_MAX + 1, " #!");
	bad(text, "rules.r.upstream[64]", "more than 64");
	pool_text(text, sizeof(text), SF_POOL_MAX, "");
	good(&cfg, text);
	cr_assert_eq(cfg.rules[0].nups, SF_POOL_MAX);
	cr_assert_eq(cfg.rules[0].ups[SF_POOL_MAX - 1].hp.port, SF_POOL_MAX);
	sf_config_free(&cfg);
}

/* ---- sf_config_finish: port ranges and overlaps ---- */

Test(config_finish, ranges_of_the_same_length)
{
	struct sf_config cfg;

	good(&cfg, "rules = {\n"
		   "  a = { listen = [ \":10000-10099\", \":11000-11099\" ];\n"
		   "        upstream = [ \"h:20000-20099\", \"g:5000\" ]; };\n"
		   "  b = { listen = \":12000-12009\"; upstream = \"h:80\"; };\n"
		   "  c = { listen = [ \":1\", \":2\" ]; upstream = [ \"h:1\", \"h:2\" ]; };\n"
		   "  d = { listen = \":13000-13009\"; upstream = \"h:30000-30009\"; };\n"
		   "};\n");
	cr_assert_eq(cfg.nrules, 4);
	cr_assert_eq(cfg.rules[0].ups[0].port_last, 20099);
	sf_config_free(&cfg);
}

Test(config_finish, ranges_of_different_lengths)
{
	bad("rules = { r = {\n  listen = \":10000-10099\";\n"
	    "  upstream = \"127.0.0.1:20000-20049\"; #!\n}; };\n",
	    "rules.r", "same length");
	bad("rules = { r = {\n  listen = [ \":10000-10099\",\n \":11000-11049\" ]; #!\n"
	    "  upstream = \"h:80\";\n}; };\n",
	    ":11000-11049", "same length");
	bad("rules = { r = {\n  listen = \":10000-10099\";\n"
	    "  upstream = [ \"h:20000-20099\",\n  \"g:1-2\" ]; #!\n}; };\n",
	    "g:1-2", "100");
	/* A single listen port has no counterpart in an upstream range. */
	bad("rules = { r = {\n  listen = [ \":10000-10099\",\n \":80\" ]; #!\n"
	    "  upstream = \"h:20000-20099\";\n}; };\n",
	    ":80", "range");
	bad("rules = { r = {\n  listen = \":80\"; #!\n  upstream = \"h:20000-20099\";\n}; };\n",
	    "rules.r", "range");
}

Test(config_finish, overlapping_listens)
{
	struct sf_config cfg;

	bad("rules = {\n  a = { listen = \":8080\"; upstream = \"h:1\"; };\n"
	    "  b = { listen = \":8000-8100\"; upstream = \"h:2\"; }; #!\n};\n",
	    "rules.b", "overlaps");
	bad("rules = {\n  a = { listen = \":8000-8100\"; upstream = \"h:1\"; };\n"
	    "  b = { listen = [ \"127.0.0.1:80\",\n  \":8100\" ]; upstream = \"h:2\"; }; #!\n};\n",
	    "'a'", "overlaps");
	bad("rules = {\n  a = { listen = [ \"[::1]:80\",\n \"[::1]:80\" ]; #!\n"
	    "  upstream = \"h:1\"; };\n};\n",
	    "[::1]:80", "overlaps");
	/* Other hosts, or ports next to each other, do not overlap. */
	good(&cfg,
	     "rules = {\n  a = { listen = [ \"127.0.0.1:80\", \":80\" ]; upstream = \"h:1\"; };\n"
	     "  b = { listen = [ \"127.0.0.2:80\", \"[::1]:80\", \":81-90\" ];\n"
	     "        upstream = \"h:1\"; };\n"
	     "  c = { listen = \":91\"; upstream = \"h:1\"; };\n};\n");
	sf_config_free(&cfg);
}

/* ---- the command-line rule through sf_config_finish ---- */

static int parse_cli(struct sf_config *cfg, int argc, char **argv)
{
	memset(errbuf, 0, sizeof(errbuf));
	return sf_options_parse(argc, argv, cfg, errbuf, sizeof(errbuf));
}

Test(config_finish, command_line_rule)
{
	char *argv[] = { "sockfwd", "-l",	   ":10000-10099",   "-r", "h:20000-20099,weight=2",
			 "-r",	    "g:80,backup", "--idle-timeout", "5s", "--no-keepalive",
			 "--deny",  "10.0.0.0/8" };
	struct sf_config cfg;
	const struct sf_rule_conf *r;

	cr_assert_eq(parse_cli(&cfg, 12, argv), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
	cr_assert_eq(cfg.nrules, 1);
	r = &cfg.rules[0];
	cr_assert_str_eq(r->name, SF_DEFAULT_RULE);
	cr_assert_eq(r->pol.set, 0);
	cr_assert_eq(r->pol.idle_timeout_ms, 5000);
	cr_assert_eq(r->pol.keepalive, 0);
	cr_assert_eq(r->pol.ndeny, 1);
	cr_assert_neq(r->pol.deny, cfg.defaults.deny);
	assert_builtin(&r->pol, SF_P_IDLE_TIMEOUT | SF_P_KEEPALIVE | SF_P_DENY);
	sf_config_free(&cfg);
}

Test(config_finish, command_line_range_mismatch)
{
	char *argv[] = { "sockfwd", "-l", ":10000-10099", "-r", "h:20000-20049" };
	char *argv2[] = { "sockfwd", "-l", ":80", "-l", "[::1]:81", "-l", ":80", "-r", "h:1" };
	struct sf_config cfg;

	cr_assert_eq(parse_cli(&cfg, 5, argv), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
	cr_assert(strncmp(errbuf, "-l/-r: ", 7) == 0, "\"%s\"", errbuf);
	cr_assert(strstr(errbuf, "h:20000-20049") && strstr(errbuf, ":10000-10099"), "\"%s\"",
		  errbuf);
	sf_config_free(&cfg);
	cr_assert_eq(parse_cli(&cfg, 9, argv2), SF_OPT_RUN, "%s", errbuf);
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
	cr_assert_err_mentions(errbuf, "overlaps");
	sf_config_free(&cfg);
}

Test(config_finish, no_rules)
{
	struct sf_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cr_assert_eq(sf_config_finish(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
	cr_assert_err_mentions(errbuf, "no rules");
	sf_config_free(&cfg);
}

Test(config_file, operations_globals)
{
	struct sf_config cfg;

	good(&cfg, "metrics = \"127.0.0.1:9100\";\n"
		   "user = \"sockfwd\";\n"
		   "drain_timeout = \"1m\";\n"
		   "log_format = \"json\";\n" RULES);
	cr_assert_eq(cfg.has_metrics, 1);
	cr_assert_eq(cfg.metrics.port, 9100);
	cr_assert_str_eq(cfg.user, "sockfwd");
	cr_assert_eq(cfg.drain_timeout_ms, 60000);
	cr_assert_eq(cfg.log_format, SF_LOGFMT_JSON);
	sf_config_free(&cfg);
}

Test(config_file, operations_command_line_wins)
{
	struct sf_config cfg;
	const char *path = write_file(NULL, "metrics = \"127.0.0.1:9100\";\nuser = \"a\";\n"
					    "drain_timeout = 5;\nlog_format = \"json\";\n" RULES);
	char *extra[] = { "--metrics",	     "[::1]:9200", "--user",	   "b:c",
			  "--drain-timeout", "0",	   "--log-format", "text" };

	cr_assert_eq(load_path_argv(&cfg, path, 8, extra), 0, "%s", errbuf);
	cr_assert_str_eq(cfg.metrics.host, "::1");
	cr_assert_eq(cfg.metrics.port, 9200);
	cr_assert_str_eq(cfg.user, "b:c");
	cr_assert_eq(cfg.drain_timeout_ms, 0);
	cr_assert_eq(cfg.log_format, SF_LOGFMT_TEXT);
	sf_config_free(&cfg);
}

Test(config_file, bad_operations_globals)
{
	bad("metrics = \"nowhere\"; #!\n" RULES, "metrics", "nowhere");
	bad("metrics = 9100; #!\n" RULES, "metrics", "string");
	bad("user = \"a:b:c\"; #!\n" RULES, "user", "USER");
	bad("drain_timeout = \"later\"; #!\n" RULES, "drain_timeout", "duration");
	bad("log_format = \"xml\"; #!\n" RULES, "log_format", "xml");
}

/* ---- UDP rules: protocol, udp_timeout, max_sessions ---- */

Test(config_file, udp_rule_keys_and_inheritance)
{
	struct sf_config cfg;

	good(&cfg, "defaults = { udp_timeout = \"5m\"; max_sessions = 10; };\n"
		   "rules = {\n"
		   "  t = { listen = \"127.0.0.1:53\"; upstream = \"127.0.0.1:54\"; };\n"
		   "  u = { protocol = \"udp\"; listen = \"127.0.0.1:53\"; upstream = "
		   "\"127.0.0.1:54\"; max_sessions = 3; };\n"
		   "  v = { protocol = \"udp\"; listen = \"127.0.0.1:55\"; upstream = "
		   "\"127.0.0.1:54\"; };\n"
		   "};\n");
	cr_assert_eq(cfg.nrules, 3);
	cr_assert_eq(cfg.rules[0].proto, SF_PROTO_TCP);
	cr_assert_eq(cfg.rules[1].proto, SF_PROTO_UDP);
	cr_assert_eq(cfg.rules[1].pol.max_sessions, 3);
	cr_assert_eq(cfg.rules[1].pol.udp_timeout_ms, 300000);
	cr_assert_eq(cfg.rules[2].pol.max_sessions, 10);
	cr_assert_eq(cfg.rules[0].pol.udp_timeout_ms, 300000, "TCP rules inherit (and ignore) it");
	sf_config_free(&cfg);
	good(&cfg, "rules = { u = { protocol = \"udp\"; listen = \":53\"; upstream = "
		   "\"127.0.0.1:54\"; }; };\n");
	cr_assert_eq(cfg.rules[0].pol.udp_timeout_ms, SF_DEFAULT_UDP_TIMEOUT_MS);
	cr_assert_eq(cfg.rules[0].pol.max_sessions, SF_DEFAULT_MAX_SESSIONS);
	sf_config_free(&cfg);
}

Test(config_file, udp_rule_mistakes)
{
	bad("rules = { u = { protocol = \"quic\"; #!\n listen = \":53\"; upstream = "
	    "\"127.0.0.1:54\"; }; };\n",
	    "rules.u.protocol", "unknown protocol");
	bad("rules = { u = { protocol = \"udp\"; listen = \":53\"; upstream = \"127.0.0.1:54\";\n"
	    " udp_timeout = 0; #!\n }; };\n",
	    "rules.u.udp_timeout", "greater than 0");
	bad("rules = { u = { protocol = \"udp\"; listen = \":53\"; upstream = \"127.0.0.1:54\";\n"
	    " max_sessions = 16777217; #!\n }; };\n",
	    "rules.u.max_sessions", "out of range");
	/* Two UDP rules on one port clash; a TCP and a UDP one do not (above). */
	bad("rules = {\n a = { protocol = \"udp\"; listen = \"127.0.0.1:53\"; upstream = "
	    "\"127.0.0.1:54\"; };\n b = { protocol = \"udp\";\n listen = \"127.0.0.1:53\"; #!\n "
	    "upstream = \"127.0.0.1:54\"; };\n};\n",
	    "rules.b", "overlaps");
	bad("rules = { u = { protocol = \"udp\"; #!\n listen = \":53\"; upstream = "
	    "\"127.0.0.1:54\"; proxy_protocol = \"v1\"; }; };\n",
	    "rules.u", "no PROXY protocol for UDP");
}
