/*
 * The command line: usage errors exit 2 with a message naming the problem,
 * a taken address exits 1, -h and -V exit 0.
 */
#include "harness.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLI_EXIT_MS  30000 /* name resolution of a bad host may take a while */
#define CLI_MAX_ARGS 16

static char cli_out[1 << 16], cli_err[1 << 16];

/*
 * Run sockfwd with argv, "@L" and "@R" replaced by free loopback addresses,
 * and wait (bounded) for it to exit. Output in cli_out, cli_err.
 */
static int run_cli(const char *const *argv)
{
	const char *args[CLI_MAX_ARGS];
	char laddr[64], raddr[64];
	struct fwd f;
	int status;

	loop_addr(laddr, sizeof(laddr), AF_INET, free_port(AF_INET));
	loop_addr(raddr, sizeof(raddr), AF_INET, free_port(AF_INET));
	for (int i = 0;; i++) {
		cr_assert(i < CLI_MAX_ARGS, "too many arguments");
		args[i] = argv[i];
		if (argv[i] == NULL)
			break;
		if (strcmp(argv[i], "@L") == 0)
			args[i] = laddr;
		else if (strcmp(argv[i], "@R") == 0)
			args[i] = raddr;
	}
	fwd_spawn(&f, args, 0);
	if (!fwd_wait(&f, CLI_EXIT_MS)) {
		fwd_stderr(&f, cli_err, sizeof(cli_err));
		fwd_release(&f);
		cr_assert_fail("sockfwd did not exit within %d ms; stderr:\n%s", CLI_EXIT_MS,
			       cli_err);
	}
	fwd_stdout(&f, cli_out, sizeof(cli_out));
	fwd_stderr(&f, cli_err, sizeof(cli_err));
	cr_assert(WIFEXITED(f.status), "sockfwd %s; stderr:\n%s", fwd_status_str(&f), cli_err);
	status = WEXITSTATUS(f.status);
	fwd_release(&f);
	return status;
}

/* text contains one of the '|'-separated words, ignoring case. */
static int mentions(const char *text, const char *words)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", words);
	for (char *w = strtok_r(buf, "|", &save); w != NULL; w = strtok_r(NULL, "|", &save)) {
		if (strcasestr(text, w) != NULL)
			return 1;
	}
	return 0;
}

/* argv must exit with status and print a stderr message mentioning one of words. */
static void expect_error(const char *const *argv, int status, const char *words)
{
	int st = run_cli(argv);

	cr_assert_eq(st, status, "exit %d, expected %d; stderr:\n%s", st, status, cli_err);
	cr_assert(cli_err[0] != '\0', "no message on stderr");
	cr_assert(mentions(cli_err, words), "stderr does not mention any of \"%s\":\n%s", words,
		  cli_err);
}

#define CLI_USAGE_TEST(name, words, ...)                                                           \
	Test(cli, name, .timeout = 60)                                                             \
	{                                                                                          \
		const char *argv[] = { "sockfwd", __VA_ARGS__, NULL };                             \
		expect_error(argv, 2, words);                                                      \
	}

CLI_USAGE_TEST(listen_port_out_of_range, "port|70000", "-l", ":70000", "-r", "127.0.0.1:1")
CLI_USAGE_TEST(listen_port_zero, "port", "-l", ":0", "-r", "@R")
CLI_USAGE_TEST(remote_port_out_of_range, "port|99999", "-l", "@L", "-r", "127.0.0.1:99999")
CLI_USAGE_TEST(unknown_engine, "nosuch|engine|backend", "-l", "@L", "-r", "@R", "-b", "nosuch")
CLI_USAGE_TEST(unresolvable_host, "no-such-host.invalid|resolve|host|name", "-l", "@L", "-r",
	       "no-such-host.invalid:80")
CLI_USAGE_TEST(unknown_option, "frobnicate|option|unrecognized", "-l", "@L", "-r", "@R",
	       "--frobnicate")
CLI_USAGE_TEST(missing_listen, "listen|-l", "-r", "@R")
CLI_USAGE_TEST(missing_remote, "remote|-r", "-l", "@L")
CLI_USAGE_TEST(malformed_size, "size|12x", "-l", "@L", "-r", "@R", "--buffer-size", "12x")
CLI_USAGE_TEST(zero_threads, "thread|-j", "-l", "@L", "-r", "@R", "-j", "0")
CLI_USAGE_TEST(listen_without_port, "port", "-l", "127.0.0.1", "-r", "@R")
CLI_USAGE_TEST(unbracketed_ipv6, "::1:80|bracket|ipv6|address", "-l", "::1:80", "-r", "@R")

/* No arguments at all is a usage error too. */
Test(cli, no_arguments, .timeout = 60)
{
	const char *argv[] = { "sockfwd", NULL };

	cr_assert_eq(run_cli(argv), 2, "stderr:\n%s", cli_err);
	cr_assert(cli_err[0] != '\0', "no message on stderr");
}

/* A listener without SO_REUSEPORT holds the port: exit 1, "in use". */
Test(cli, address_in_use, .timeout = 60)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	const char *argv[] = { "sockfwd", "-l", NULL, "-r", "@R", NULL };
	char laddr[64];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sys_assert(fd >= 0, "socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sys_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind");
	sys_assert(listen(fd, 16) == 0, "listen");
	sys_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0, "getsockname");
	argv[2] = loop_addr(laddr, sizeof(laddr), AF_INET, ntohs(sin.sin_port));
	expect_error(argv, 1, "in use");
	close(fd);
}

Test(cli, help, .timeout = 60)
{
	const char *argv[] = { "sockfwd", "-h", NULL };
	int st = run_cli(argv);

	cr_assert_eq(st, 0, "-h: exit %d; stderr:\n%s", st, cli_err);
	cr_assert(strcasestr(cli_out, "listen") && strcasestr(cli_out, "remote"),
		  "-h: stdout does not describe --listen and --remote:\n%s", cli_out);
}

Test(cli, version, .timeout = 60)
{
	static const char *const engines[] = {
		"naive",
		"epoll",
		"splice",
#ifdef SF_HAVE_URING
		"uring",
#endif
	};
	const char *argv[] = { "sockfwd", "-V", NULL };
	int st = run_cli(argv);

	cr_assert_eq(st, 0, "-V: exit %d; stderr:\n%s", st, cli_err);
	for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++)
		cr_assert(strstr(cli_out, engines[i]) != NULL, "-V does not list engine %s:\n%s",
			  engines[i], cli_out);
}
