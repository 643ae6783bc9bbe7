/*
 * The config file (-c, libconfig syntax, docs/config.md): several rules
 * in one process, defaults and per-rule policy, upstream options in the
 * file's syntax, -t on good and bad files (exit 2 with FILE:LINE:), -c
 * with -l or -r as a usage error, command-line flags over the file, and
 * port ranges on the command line and in a rule.
 */
#include "harness.h"

#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONF_EXIT_MS 30000 /* -t, or a start that must fail */
#define RANGE_N	     5

static char conf_err[1 << 16];

/*
 * Two rules in one file: "web" with two listen addresses and a pool of
 * two, "db" with one upstream; both forward, web balances round robin.
 * The file names the engine (engine = "@E") and one thread.
 */
ENGINE_TEST(config, multi_rule, 60)
{
	static const char text[] = "engine = \"@E\";\n"
				   "threads = 1;\n"
				   "defaults = { connect_timeout = \"5s\"; keepalive = true; };\n"
				   "rules = {\n"
				   "  web = {\n"
				   "    listen = [ \"127.0.0.1:@L0\", \"127.0.0.1:@L2\" ];\n"
				   "    upstream = [ \"127.0.0.1:@U0\", \"127.0.0.1:@U1\" ];\n"
				   "    balance = \"roundrobin\";\n"
				   "  };\n"
				   "  db = {\n"
				   "    listen = \"127.0.0.1:@L1\";\n"
				   "    upstream = \"127.0.0.1:@U2\";\n"
				   "    idle_timeout = \"30s\";\n"
				   "  };\n"
				   "};\n";
	struct fwd_conf c = { .engine = engine, .nlisten = 3 };
	struct srv s[2], echo;
	int counts[2] = { 0 };
	struct fwd f;

	for (int i = 0; i < 2; i++) {
		srv_start_id(&s[i], AF_INET, i);
		c.up[i] = s[i].port;
	}
	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	c.up[2] = echo.port;
	fwd_start_conf(&f, &c, text);
	for (int i = 0; i < 4; i++) {
		int id = id_query(AF_INET, NULL, c.lport[i % 2 ? 2 : 0]);

		cr_assert(id == 0 || id == 1, "rule web: unknown upstream %d", id);
		counts[id]++;
	}
	cr_assert(counts[0] == 2 && counts[1] == 2,
		  "rule web (round robin over 2): %d/%d of 4 clients", counts[0], counts[1]);
	echo_once(AF_INET, c.lport[1], 1, 64 * 1024);
	echo_once(AF_INET, c.lport[1], 2, 100);
	fwd_stop(&f);
	for (int i = 0; i < 2; i++)
		srv_stop(&s[i]);
	srv_stop(&echo);
	conf_remove(&c);
}

/* k clients to port; counts[id]++ for each. */
static void tally_port(int port, int k, int *counts, int nids)
{
	for (int i = 0; i < k; i++) {
		int id = id_query(AF_INET, NULL, port);

		cr_assert(id >= 0 && id < nids, "unknown upstream %d", id);
		counts[id]++;
	}
}

/*
 * defaults {} apply to every rule that does not set the key: balance
 * "first" sends everything to the first upstream, a rule that sets
 * "roundrobin" alternates. Upstream options in the file's syntax:
 * "weight=2" and "backup" after the address.
 */
Test(config, defaults_and_upstream_options, .timeout = 60)
{
	static const char text[] =
		"threads = 1;\n"
		"defaults = { balance = \"first\"; };\n"
		"rules = {\n"
		"  a = {\n"
		"    listen = \"127.0.0.1:@L0\";\n"
		"    upstream = [ \"127.0.0.1:@U0\", \"127.0.0.1:@U1\" ];\n"
		"  };\n"
		"  b = {\n"
		"    listen = \"127.0.0.1:@L1\";\n"
		"    upstream = [ \"127.0.0.1:@U0\", \"127.0.0.1:@U1 weight=2\",\n"
		"                 \"127.0.0.1:@U2 backup\" ];\n"
		"    balance = \"roundrobin\";\n"
		"  };\n"
		"};\n";
	struct fwd_conf c = { .nlisten = 2 };
	int ca[3] = { 0 }, cb[3] = { 0 };
	struct srv s[3];
	struct fwd f;

	for (int i = 0; i < 3; i++) {
		srv_start_id(&s[i], AF_INET, i);
		c.up[i] = s[i].port;
	}
	fwd_start_conf(&f, &c, text);
	tally_port(c.lport[0], 4, ca, 3);
	cr_assert(ca[0] == 4, "rule a (defaults: balance first): %d/%d/%d of 4 clients", ca[0],
		  ca[1], ca[2]);
	tally_port(c.lport[1], 6, cb, 3);
	cr_assert(cb[0] == 2 && cb[1] == 4 && cb[2] == 0,
		  "rule b (round robin, weights 1 and 2, a backup): %d/%d/%d of 6 clients, "
		  "expected 2/4/0",
		  cb[0], cb[1], cb[2]);
	fwd_stop(&f);
	for (int i = 0; i < 3; i++)
		srv_stop(&s[i]);
	conf_remove(&c);
}

/* The full set of policy keys in one rule: it loads and forwards. */
ENGINE_TEST(config, every_key, 60)
{
	static const char text[] = "engine = \"@E\";\n"
				   "threads = 2;\n"
				   "buffer_size = \"64k\";\n"
				   "pipe_size = \"256k\";\n"
				   "log_level = \"normal\";\n"
				   "defaults = {\n"
				   "  balance = \"leastconn\";\n"
				   "  max_fails = 2;\n"
				   "  fail_timeout = \"5s\";\n"
				   "  connect_timeout = \"2s\";\n"
				   "  idle_timeout = \"1m\";\n"
				   "  keepalive = false;\n"
				   "  max_conns = 100;\n"
				   "};\n"
				   "rules = {\n"
				   "  all = {\n"
				   "    listen = [ \"127.0.0.1:@L0\" ];\n"
				   "    upstream = [ \"127.0.0.1:@U0\" ];\n"
				   "    balance = \"source\";\n"
				   "    max_fails = 3;\n"
				   "    fail_timeout = \"10s\";\n"
				   "    connect_timeout = \"250ms\";\n"
				   "    idle_timeout = \"1h\";\n"
				   "    keepalive = true;\n"
				   "    max_conns = 1000;\n"
				   "    allow = [ \"127.0.0.0/8\", \"::1/128\" ];\n"
				   "    deny = [ \"10.0.0.0/8\" ];\n"
				   "    proxy_protocol = \"none\";\n"
				   "    accept_proxy = false;\n"
				   "  };\n"
				   "};\n";
	struct fwd_conf c = { .engine = engine, .nlisten = 1 };
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, text);
	echo_once(AF_INET, c.lport[0], 1, 256 * 1024);
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&c);
}

/* Run sockfwd -t -c FILE (and more args); the exit status; stderr in conf_err. */
static int check_file(struct fwd_conf *c, const char *more)
{
	const char *argv[] = { "sockfwd", "-t", "-c", c->path, more, NULL };

	return fwd_run(argv, CONF_EXIT_MS, NULL, 0, conf_err, sizeof(conf_err));
}

/* -t on a good file: exit 0, and it does not keep running or listening. */
Test(config, check_good, .timeout = 60)
{
	static const char text[] =
		"engine = \"splice\";\n"
		"rules = {\n"
		"  web = { listen = [ \"127.0.0.1:@L0\" ];\n"
		"          upstream = [ \"127.0.0.1:@U0\", \"127.0.0.1:@U1 weight=2\",\n"
		"                       \"127.0.0.1:@U2 backup\" ]; };\n"
		"  db = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U0\";\n"
		"         idle_timeout = \"2s\"; };\n"
		"  range = { listen = \"127.0.0.1:20000-20009\";\n"
		"            upstream = \"127.0.0.1:30000-30009\"; };\n"
		"};\n";
	struct fwd_conf c = { .nlisten = 2, .up = { 9001, 9002, 9003 } };
	int st;

	conf_write(&c, text);
	st = check_file(&c, NULL);
	cr_assert_eq(st, 0, "-t on a good file: exit %d; stderr:\n%s", st, conf_err);
	conf_remove(&c);
}

/* "a|b": text holds one of the '|'-separated lines as "FILE:LINE:". */
static int has_file_line(const char *textbuf, const char *path, const char *lines)
{
	char buf[64], needle[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", lines);
	for (char *w = strtok_r(buf, "|", &save); w != NULL; w = strtok_r(NULL, "|", &save)) {
		snprintf(needle, sizeof(needle), "%s:%s:", path, w);
		if (strstr(textbuf, needle) != NULL)
			return 1;
	}
	return 0;
}

/*
 * A bad file: -t exits 2 with "FILE:LINE:" on stderr for one of lines
 * ("7" or "7|8"); so does a real start, which must not get as far as
 * listening: a plain listener of the test holds the first rule's port,
 * so binding anything before the whole file was checked would fail with
 * "address in use" (exit 1) instead.
 */
static void bad_file(const char *text, const char *lines)
{
	struct fwd_conf c = { .nlisten = 1, .up = { 9001 } };
	const char *argv[] = { "sockfwd", "-c", NULL, NULL };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int st, fd;

	conf_write(&c, text);
	st = check_file(&c, NULL);
	cr_assert_eq(st, 2, "-t on a bad file: exit %d, expected 2; stderr:\n%s", st, conf_err);
	cr_assert(has_file_line(conf_err, c.path, lines),
		  "-t: stderr does not point at %s line %s; stderr:\n%s", c.path, lines, conf_err);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sys_assert(fd >= 0, "socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)c.lport[0]);
	sys_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind %d", c.lport[0]);
	sys_assert(listen(fd, 16) == 0, "listen");
	argv[2] = c.path;
	st = fwd_run(argv, CONF_EXIT_MS, NULL, 0, conf_err, sizeof(conf_err));
	close(fd);
	cr_assert_eq(st, 2, "starting on a bad file: exit %d, expected 2; stderr:\n%s", st,
		     conf_err);
	cr_assert(has_file_line(conf_err, c.path, lines),
		  "start: stderr does not point at %s line %s; stderr:\n%s", c.path, lines,
		  conf_err);
	conf_remove(&c);
}

/* Line 1-3 of every bad file: a good rule on @L0 that a real start would bind first. */
#define GOOD_HEAD                                                                                  \
	"rules = {\n"                                                                              \
	"  good = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"                \
	"  bad = {\n"

#define BAD_FILE_TEST(name, lines, body)                                                           \
	Test(config, bad_##name, .timeout = 60) { bad_file(GOOD_HEAD body, lines); }

/* The bad rule's lines start at 4. */
BAD_FILE_TEST(unknown_key, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    frobnicate = 1;\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(wrong_type, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    max_conns = \"many\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(wrong_type_bool, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    accept_proxy = \"yes please\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_listen_port, "4",
	      "    listen = \"127.0.0.1:99999\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_listen_address, "4",
	      "    listen = \"127.0.0.300:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_upstream_no_port, "5",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_upstream_weight, "6|5",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = [ \"127.0.0.1:9002\",\n"
	      "                 \"127.0.0.1:9003 weight=0\" ];\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_upstream_option, "5",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002 heavy\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_cidr, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    allow = [ \"10.0.0.0/8\", \"10.0.0.0/33\" ];\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_cidr_v6, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    deny = [ \"2001:db8::/129\" ];\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_duration, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    idle_timeout = \"5 parsecs\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_balance, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    balance = \"random\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(bad_proxy_protocol, "6",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "    proxy_protocol = \"v3\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(missing_upstream, "3",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(missing_listen, "3",
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "  };\n"
	      "};\n")
/* Two rules on one address: the second rule's listen (or the rule itself). */
BAD_FILE_TEST(same_listen_twice, "4|3",
	      "    listen = \"127.0.0.1:@L0\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(range_length_differs, "5|4",
	      "    listen = \"127.0.0.1:20000-20004\";\n"
	      "    upstream = \"127.0.0.1:30000-30002\";\n"
	      "  };\n"
	      "};\n")
BAD_FILE_TEST(syntax_error, "5",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = ;\n"
	      "  };\n"
	      "};\n")
/* libconfig itself refuses a duplicate name, at the second one (line 7). */
BAD_FILE_TEST(duplicate_rule, "7",
	      "    listen = \"127.0.0.1:20001\";\n"
	      "    upstream = \"127.0.0.1:9002\";\n"
	      "  };\n"
	      "  bad = { listen = \"127.0.0.1:20002\"; upstream = \"127.0.0.1:9002\"; };\n"
	      "};\n")

/* Keys outside rules: a global, defaults. */
Test(config, bad_unknown_global, .timeout = 60)
{
	bad_file("colour = \"blue\";\n" GOOD_HEAD
		 "  listen = \"127.0.0.1:20001\"; upstream = \"127.0.0.1:9002\"; };\n};\n",
		 "1");
}

Test(config, bad_log_level, .timeout = 60)
{
	bad_file("threads = 1;\nlog_level = \"loud\";\n" GOOD_HEAD
		 "  listen = \"127.0.0.1:20001\"; upstream = \"127.0.0.1:9002\"; };\n};\n",
		 "2");
}

Test(config, bad_threads_type, .timeout = 60)
{
	bad_file("threads = \"two\";\n" GOOD_HEAD
		 "  listen = \"127.0.0.1:20001\"; upstream = \"127.0.0.1:9002\"; };\n};\n",
		 "1");
}

/* listen is a rule's own key: not a default. */
Test(config, bad_listen_in_defaults, .timeout = 60)
{
	bad_file("defaults = {\n  balance = \"first\";\n  listen = "
		 "\"127.0.0.1:20003\";\n};\n" GOOD_HEAD
		 "  listen = \"127.0.0.1:20001\"; upstream = \"127.0.0.1:9002\"; };\n};\n",
		 "3");
}

/* The example config that the docs ship passes -t (docs/, docs/examples/ or examples/). */
Test(config, shipped_examples_check, .timeout = 60)
{
	static const char *const dirs[] = { "examples", "docs", "docs/examples" };
	int checked = 0;

	for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
		DIR *dir = opendir(dirs[d]);
		struct dirent *de;

		if (dir == NULL)
			continue;
		for (int i = 0; i < 10000 && (de = readdir(dir)) != NULL; i++) {
			const char *dot = strrchr(de->d_name, '.');
			char path[512];
			const char *argv[] = { "sockfwd", "-t", "-c", path, NULL };
			int st;

			if (dot == NULL || (strcmp(dot, ".conf") != 0 && strcmp(dot, ".cfg") != 0))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dirs[d], de->d_name);
			st = fwd_run(argv, CONF_EXIT_MS, NULL, 0, conf_err, sizeof(conf_err));
			cr_assert_eq(st, 0, "sockfwd -t -c %s: exit %d; stderr:\n%s", path, st,
				     conf_err);
			checked++;
		}
		closedir(dir);
	}
	cr_assert(checked > 0, "no example config (*.conf or *.cfg) in examples/ or docs/");
}

/* -c with -l or -r is a usage error (exit 2); -c alone with -t is fine. */
Test(config, config_excludes_listen_and_remote, .timeout = 60)
{
	static const char text[] = "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .nlisten = 1, .up = { 9001 } };
	char laddr[64];
	const char *with_l[] = { "sockfwd", "-c", NULL, "-l", NULL, NULL };
	const char *with_r[] = { "sockfwd", "-c", NULL, "-r", "127.0.0.1:9002", NULL };
	int st;

	conf_write(&c, text);
	st = check_file(&c, NULL);
	cr_assert_eq(st, 0, "-t -c on a good file: exit %d; stderr:\n%s", st, conf_err);
	with_l[2] = with_r[2] = c.path;
	with_l[4] = loop_addr(laddr, sizeof(laddr), AF_INET, pick_port(AF_INET));
	st = fwd_run(with_l, CONF_EXIT_MS, NULL, 0, conf_err, sizeof(conf_err));
	cr_assert_eq(st, 2, "-c with -l: exit %d, expected 2; stderr:\n%s", st, conf_err);
	cr_assert(conf_err[0] != '\0', "-c with -l: no message");
	st = fwd_run(with_r, CONF_EXIT_MS, NULL, 0, conf_err, sizeof(conf_err));
	cr_assert_eq(st, 2, "-c with -r: exit %d, expected 2; stderr:\n%s", st, conf_err);
	cr_assert(conf_err[0] != '\0', "-c with -r: no message");
	conf_remove(&c);
}

/* Stop f with SIGTERM (exit 0 expected) and read the spliced counts of its stats line. */
static void stop_read_spliced(struct fwd *f, unsigned long long *sp_c2u, unsigned long long *sp_u2c)
{
	static char err[1 << 16];
	const char *line;

	fwd_signal_wait(f, SIGTERM);
	fwd_stderr(f, err, sizeof(err));
	cr_assert(WIFEXITED(f->status) && WEXITSTATUS(f->status) == 0, "sockfwd: %s; stderr:\n%s",
		  fwd_status_str(f), err);
	line = strstr(err, "stats: ");
	cr_assert(line != NULL, "no stats line at exit; stderr:\n%s", err);
	line = strstr(line, "spliced=");
	cr_assert(line != NULL && sscanf(line, "spliced=%llu/%llu", sp_c2u, sp_u2c) == 2,
		  "no spliced= in the stats line; stderr:\n%s", err);
	fwd_release(f);
}

/*
 * The file's engine runs unless -b says otherwise: engine = "splice"
 * moves a 4 MiB echo through pipes; the same file with -b epoll splices
 * nothing.
 */
Test(config, engine_from_file_and_override, .timeout = 60)
{
	static const char text[] = "engine = \"splice\";\nthreads = 1;\n"
				   "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .nlisten = 1 };
	unsigned long long a = 0, b = 0;
	struct sender snd;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	for (int round = 0; round < 2; round++) {
		uint64_t h, n;
		int fd;

		c.extra[0] = round == 0 ? NULL : "-b";
		c.extra[1] = round == 0 ? NULL : "epoll";
		fwd_start_conf(&f, &c, text);
		fd = tcp_connect(AF_INET, c.lport[0]);
		sender_start(&snd, fd, 1, 4 * MiB, 1);
		n = recv_to_eof(fd, &h, 4 * MiB);
		sender_join(&snd);
		cr_assert(n == 4 * MiB && h == gen_hash(1, 4 * MiB), "echo differs");
		close(fd);
		stop_read_spliced(&f, &a, &b);
		if (round == 0)
			cr_assert(a > 0 && b > 0,
				  "engine = \"splice\" in the file: nothing spliced (%llu/%llu)", a,
				  b);
		else
			cr_assert(a == 0 && b == 0,
				  "-b epoll over engine = \"splice\": %llu/%llu bytes spliced", a,
				  b);
	}
	srv_stop(&s);
	conf_remove(&c);
}

/* -j 3 over threads = 1: at least main + 3 workers. */
Test(config, threads_override, .timeout = 60)
{
	static const char text[] = "engine = \"epoll\";\nthreads = 1;\n"
				   "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .nlisten = 1, .extra = { "-j", "3", NULL } };
	struct srv s;
	struct fwd f;
	long threads;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, text);
	echo_once(AF_INET, c.lport[0], 1, 1000);
	threads = proc_status_field(f.pid, "Threads");
	cr_assert(threads >= 4, "-j 3 over threads = 1: %ld threads", threads);
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&c);
}

/*
 * log_level from the file, and -v / -q over it: a client's close line is
 * logged with log_level = "verbose", or "quiet" and -v; not with
 * "verbose" and -q (checked after exit, when every line is written).
 */
Test(config, log_level_override, .timeout = 60)
{
	static const char verbose[] = "threads = 1;\nlog_level = \"verbose\";\n"
				      "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				      "\"127.0.0.1:@U0\"; }; };\n";
	static const char quiet[] = "threads = 1;\nlog_level = \"quiet\";\n"
				    "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				    "\"127.0.0.1:@U0\"; }; };\n";
	static const struct {
		const char *text, *flag;
		int logged;
	} runs[] = { { verbose, NULL, 1 }, { quiet, "-v", 1 }, { verbose, "-q", 0 } };
	struct srv s;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		struct fwd_conf c = { .nlisten = 1, .extra = { runs[i].flag, NULL } };
		char needle[64];
		struct fwd f;
		int fd;

		c.up[0] = s.port;
		fwd_start_conf(&f, &c, runs[i].text);
		fd = tcp_connect(AF_INET, c.lport[0]);
		snprintf(needle, sizeof(needle), "127.0.0.1:%d", sock_local_port(fd));
		echo_roundtrip(fd, 1, 1000);
		close(fd);
		if (runs[i].logged) {
			cr_assert(fwd_log_wait(&f, E2E_RESET_MS, needle, NULL),
				  "run %zu (%s): no close line for %s; stderr:\n%s", i,
				  runs[i].flag ? runs[i].flag : "no flag", needle,
				  fwd_stderr_tail(&f));
			fwd_stop(&f);
		} else {
			/* Wait for the upstream side to end, then stop: every line is out. */
			for (int k = 0; k < 1000 && atomic_load(&s.active) > 0; k++)
				sleep_ms(5);
			fwd_signal_wait(&f, SIGTERM);
			cr_assert_eq(fwd_log_count(&f, needle, NULL), 0,
				     "log_level verbose with -q: a close line for %s; stderr:\n%s",
				     needle, fwd_stderr_tail(&f));
			fwd_release(&f);
		}
		conf_remove(&c);
	}
	srv_stop(&s);
}

/* RANGE_N SRV_ID servers on consecutive ports; returns the first. */
static int start_range_servers(struct srv *s)
{
	int base = pick_ports(AF_INET, RANGE_N);

	for (int i = 0; i < RANGE_N; i++) {
		srv_bind(&s[i], AF_INET, SRV_ID, base + i);
		s[i].id = i;
		srv_listen(&s[i]);
	}
	return base;
}

/*
 * sockfwd -l 127.0.0.1:A-B -r remote: wait until every port of the range
 * listens; picks another A on "in use". Returns A.
 */
static int start_range_cli(struct fwd *f, const char *engine, const char *remote)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		int a = pick_ports(AF_INET, RANGE_N), ports[RANGE_N];
		char listen[64];
		const char *argv[] = { "sockfwd", "-b",	  engine, "-j",	  "1",
				       "-l",	  listen, "-r",	  remote, NULL };

		snprintf(listen, sizeof(listen), "127.0.0.1:%d-%d", a, a + RANGE_N - 1);
		for (int i = 0; i < RANGE_N; i++)
			ports[i] = a + i;
		fwd_spawn(f, argv, 0);
		f->family = AF_INET;
		f->port = a;
		if (fwd_wait_listening(f, ports, RANGE_N, E2E_READY_MS))
			return a;
		fwd_release(f);
	}
	cr_assert_fail("address in use on 10 port ranges");
	return -1;
}

/* -l A-(A+4) -r C-(C+4): port A+i reaches upstream C+i, for each i, twice. */
ENGINE_TEST(config, port_range_cli, 60)
{
	struct srv s[RANGE_N];
	char remote[64];
	struct fwd f;
	int c = start_range_servers(s), a;

	snprintf(remote, sizeof(remote), "127.0.0.1:%d-%d", c, c + RANGE_N - 1);
	a = start_range_cli(&f, engine, remote);
	for (int round = 0; round < 2; round++) {
		for (int i = RANGE_N - 1; i >= 0; i--) {
			int id = id_query(AF_INET, NULL, a + i);

			cr_assert_eq(id, i, "listen port %d (+%d) reached upstream +%d", a + i, i,
				     id);
		}
	}
	fwd_stop(&f);
	for (int i = 0; i < RANGE_N; i++)
		srv_stop(&s[i]);
}

/* A single upstream port takes every listen port of the range. */
ENGINE_TEST(config, port_range_one_upstream, 60)
{
	struct srv s;
	char remote[64];
	struct fwd f;
	int a;

	srv_start_id(&s, AF_INET, 7);
	srv_addr(&s, remote, sizeof(remote));
	a = start_range_cli(&f, engine, remote);
	for (int i = 0; i < RANGE_N; i++)
		cr_assert_eq(id_query(AF_INET, NULL, a + i), 7, "listen port +%d", i);
	fwd_stop(&f);
	srv_stop(&s);
}

/* A range in a config rule maps the same way. */
ENGINE_TEST(config, port_range_file, 60)
{
	static const char text[] = "engine = \"@E\";\nthreads = 1;\n"
				   "rules = { r = { listen = \"127.0.0.1:@L0-@L4\";\n"
				   "                upstream = \"127.0.0.1:@U0-@U1\"; }; };\n";
	struct fwd_conf c = { .engine = engine, .nlisten = RANGE_N, .consecutive = 1 };
	struct srv s[RANGE_N];
	struct fwd f;

	c.up[0] = start_range_servers(s);
	c.up[1] = c.up[0] + RANGE_N - 1;
	fwd_start_conf(&f, &c, text);
	for (int i = 0; i < RANGE_N; i++)
		cr_assert_eq(id_query(AF_INET, NULL, c.lport[i]), i, "listen port +%d", i);
	fwd_stop(&f);
	for (int i = 0; i < RANGE_N; i++)
		srv_stop(&s[i]);
	conf_remove(&c);
}

/* Ranges of different lengths on the command line: usage error naming the problem. */
Test(config, port_range_length_differs, .timeout = 60)
{
	const char *argv[] = {
		"sockfwd", "-l", "127.0.0.1:20000-20004", "-r", "127.0.0.1:30000-30002", NULL
	};
	static const char *const words[] = { "range",	 "length", "same",
					     "mismatch", "differ", "as many" };
	int st = fwd_run(argv, CONF_EXIT_MS, NULL, 0, conf_err, sizeof(conf_err)), found = 0;

	cr_assert_eq(st, 2, "exit %d, expected 2; stderr:\n%s", st, conf_err);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		found |= strcasestr(conf_err, words[i]) != NULL;
	cr_assert(found, "the message does not say the ranges differ in length:\n%s", conf_err);
}

#define MANY_PORTS 5000
#define MANY_MS	   20000 /* "starts in a few seconds"; a hang fails here */

/*
 * 5,000 listen ports (one rule with a port range) at -j 1 start within a
 * bounded time (a realm user's 9,000 rules hung it), and the first, a
 * middle and the last port all forward.
 */
ENGINE_TEST(config, five_thousand_ports, 90)
{
	static const char text[] = "engine = \"@E\";\nthreads = 1;\n"
				   "rules = { many = { listen = \"127.0.0.1:@U1-@U2\";\n"
				   "                   upstream = \"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .engine = engine };
	const char *argv[] = { "sockfwd", "-c", NULL, NULL };
	uint64_t t0, deadline;
	struct srv s;
	struct fwd f;
	int n = 0;

	raise_nofile();
	srv_start_id(&s, AF_INET, 3);
	c.up[0] = s.port;
	/*
	 * A port of the range can be taken between the probe and the bind
	 * (another process, a TIME_WAIT left by a test before): "address in
	 * use" is then retried on another range, as fwd_start does.
	 */
	for (int attempt = 0;; attempt++) {
		c.up[1] = pick_ports(AF_INET, MANY_PORTS);
		c.up[2] = c.up[1] + MANY_PORTS - 1;
		conf_write(&c, text);
		argv[2] = c.path;
		t0 = now_ms();
		fwd_spawn(&f, argv, 0);
		deadline = t0 + MANY_MS;
		for (int i = 0; i < 100000; i++) {
			if (fwd_wait(&f, 0))
				break;
			n = proc_listening_ports(f.pid, c.up[1], c.up[2]);
			if (n == MANY_PORTS || now_ms() >= deadline)
				break;
			sleep_ms(50);
		}
		if (!f.exited)
			break;
		cr_assert(attempt < 4 && strstr(fwd_stderr_tail(&f), "in use") != NULL,
			  "sockfwd exited: %s; stderr:\n%s", fwd_status_str(&f),
			  fwd_stderr_tail(&f));
		fwd_release(&f);
		conf_remove(&c);
	}
	cr_assert_eq(n, MANY_PORTS, "%d of %d ports listening after %d ms; stderr:\n%s", n,
		     MANY_PORTS, MANY_MS, fwd_stderr_tail(&f));
	cr_log_info("%s: %d ports listening after %llu ms", engine, MANY_PORTS,
		    (unsigned long long)(now_ms() - t0));
	cr_assert_eq(id_query(AF_INET, NULL, c.up[1]), 3, "first port");
	cr_assert_eq(id_query(AF_INET, NULL, c.up[1] + MANY_PORTS / 2), 3, "middle port");
	cr_assert_eq(id_query(AF_INET, NULL, c.up[2]), 3, "last port");
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&c);
}
