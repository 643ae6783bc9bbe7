/*
 * --user USER[:GROUP] (config key user), run as root: once listening,
 * every thread of the process shows the new uid, gid and groups in
 * /proc (all four ids), no capability left and NoNewPrivs 1, and
 * forwarding still works (checked by hash) on every engine, on a port
 * below 1024 too. An unknown user or group is a usage error (exit 2); a
 * process that is not root cannot switch (exit 1); a reload after the
 * drop reads the file still, and cannot bind a new port below 1024.
 */
#include "harness.h"
#include "spawn.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PRIV_MS	  10000 /* bound for sockfwd to listen, exit or log */
#define XFER_LEN  (8 * MiB)
#define MAXGROUPS 64

#define NEED_ROOT()                                                                                \
	do {                                                                                       \
		if (geteuid() != 0)                                                                \
			cr_skip_test("not root (euid %u): the privilege drop is tested as root",   \
				     (unsigned)geteuid());                                         \
	} while (0)

/* Who sockfwd must have become. */
struct ids {
	uid_t uid;
	gid_t gid;
	gid_t groups[MAXGROUPS];
	int ngroups;
};

/* USER[:GROUP] as the test expects it: initgroups(3)'s list, GROUP as the gid. */
static void ids_of(struct ids *w, const char *user, const char *group)
{
	struct passwd *pw = getpwnam(user);

	cr_assert(pw != NULL, "no user %s on this system", user);
	w->uid = pw->pw_uid;
	w->gid = pw->pw_gid;
	if (group != NULL) {
		struct group *gr = getgrnam(group);

		if (gr == NULL)
			cr_skip_test("no group %s on this system", group);
		w->gid = gr->gr_gid;
	}
	w->ngroups = MAXGROUPS;
	cr_assert(getgrouplist(user, w->gid, w->groups, &w->ngroups) >= 0, "getgrouplist");
}

/*
 * "Name:\tA\tB\tC\tD" of a status file: the numbers into v, their count;
 * -1 when the thread is gone (naive's connection threads come and go).
 */
static int status_numbers(const char *path, const char *name, unsigned long long *v, int max)
{
	char buf[8192], *line;
	size_t nl = strlen(name), len;
	int n = -1;
	FILE *fp = fopen(path, "re");

	if (fp == NULL)
		return -1;
	len = fread(buf, 1, sizeof(buf) - 1, fp);
	if (ferror(fp) || len == 0) {
		fclose(fp);
		return -1;
	}
	fclose(fp);
	buf[len] = '\0';
	for (line = buf; line != NULL && *line != '\0';) {
		char *p = line + nl + 1, *end, *next = strchr(line, '\n');

		if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
			for (n = 0; n < max; n++) {
				unsigned long long x = strtoull(p, &end, name[0] == 'C' ? 16 : 10);

				if (end == p || (next != NULL && end > next))
					break;
				v[n] = x;
				p = end;
			}
			break;
		}
		line = next != NULL ? next + 1 : NULL;
	}
	cr_assert(n >= 0, "%s has no %s line", path, name);
	return n;
}

/* One thread's status matches w: four uids, four gids, the groups, no caps, NoNewPrivs. */
static void check_status(const char *path, const struct ids *w)
{
	unsigned long long u[4], g[4], grp[MAXGROUPS + 1], nnp, eff, prm;
	int n, ngrp;

	/* Read everything first: a thread that ends meanwhile is skipped whole. */
	if ((n = status_numbers(path, "Uid", u, 4)) < 0 || status_numbers(path, "Gid", g, 4) < 0 ||
	    (ngrp = status_numbers(path, "Groups", grp, MAXGROUPS + 1)) < 0 ||
	    status_numbers(path, "NoNewPrivs", &nnp, 1) < 1 ||
	    status_numbers(path, "CapEff", &eff, 1) < 1 ||
	    status_numbers(path, "CapPrm", &prm, 1) < 1)
		return;
	cr_assert(n == 4 && u[0] == w->uid && u[1] == w->uid && u[2] == w->uid && u[3] == w->uid,
		  "%s: Uid %llu %llu %llu %llu, expected %u four times", path, u[0], u[1], u[2],
		  u[3], (unsigned)w->uid);
	cr_assert(g[0] == w->gid && g[1] == w->gid && g[2] == w->gid && g[3] == w->gid,
		  "%s: Gid %llu %llu %llu %llu, expected %u four times", path, g[0], g[1], g[2],
		  g[3], (unsigned)w->gid);
	cr_assert_eq(ngrp, w->ngroups, "%s: %d supplementary groups, expected %d", path, ngrp,
		     w->ngroups);
	for (int i = 0; i < w->ngroups; i++) {
		int k = 0;

		while (k < ngrp && grp[k] != w->groups[i])
			k++;
		cr_assert(k < ngrp, "%s: group %u missing from Groups", path,
			  (unsigned)w->groups[i]);
	}
	cr_assert_eq(nnp, 1, "%s: NoNewPrivs %llu", path, nnp);
	if (w->uid != 0) {
		cr_assert_eq(eff, 0, "%s: CapEff %llx after the drop", path, eff);
		cr_assert_eq(prm, 0, "%s: CapPrm %llx after the drop", path, prm);
	}
}

/* Every thread of pid (each /proc/PID/task entry) is w; returns how many were checked. */
static int check_threads(pid_t pid, const struct ids *w)
{
	char path[384];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	check_status(path, w);
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	sys_assert(d != NULL, "%s", path);
	for (int i = 0; i < 100000 && (de = readdir(d)) != NULL; i++) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, de->d_name);
		check_status(path, w);
		n++;
	}
	closedir(d);
	return n;
}

/* sockfwd -b engine -j 2 --user spec in front of an echo server: ids, then a transfer. */
static void drop_and_forward(const char *engine, const char *spec, const struct ids *w)
{
	struct fwd_opts o = { .engine = engine, .threads = 2 };
	char upstream[64];
	struct srv s;
	struct fwd f;
	int threads;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, upstream, sizeof(upstream));
	o.extra[0] = "--user";
	o.extra[1] = spec;
	fwd_start(&f, &o);
	cr_assert(fwd_log_wait(&f, PRIV_MS, "privileges dropped", NULL),
		  "no line about the drop; stderr:\n%s", fwd_stderr_tail(&f));
	/* Logged once every worker started. */
	cr_assert(fwd_log_wait(&f, PRIV_MS, "listening on", NULL), "stderr:\n%s",
		  fwd_stderr_tail(&f));
	threads = check_threads(f.pid, w);
	cr_assert(threads >= 3, "%d threads: main and two workers expected", threads);
	(void)echo_bulk_port(f.port, 41, XFER_LEN);
	(void)echo_bulk_port(f.port, 42, 1);
	/* Threads started while serving (naive's, io_uring's) carry the ids too. */
	check_threads(f.pid, w);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * A child running as pw that holds pipes until the user is past
 * fs.pipe-user-pages-soft, so that the kernel grants that user's next
 * pipes two pages only. Returns the child's pid and, in *ready, 1 once
 * it holds them, 0 when the user's pipes do not shrink (no soft limit);
 * the child exits when *hold (its end of a pipe) is closed.
 */
static pid_t hog_pipe_pages(const struct passwd *pw, int *hold, int *ready)
{
	int sync[2], stay[2];
	char c = 0;
	pid_t pid;

	sys_assert(pipe2(sync, O_CLOEXEC) == 0 && pipe2(stay, O_CLOEXEC) == 0, "pipe2");
	pid = fork();
	sys_assert(pid >= 0, "fork");
	if (pid == 0) {
		char ok = 0;
		int fds[2] = { -1, -1 }, i;

		close(sync[0]);
		close(stay[1]);
		if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			_exit(1);
		/* After setuid: a change of credentials clears the death signal. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/*
		 * 1 MiB pipes (256 pages each) while the kernel grows them, then
		 * pipes of the default 16 pages until one comes out shrunk.
		 */
		for (i = 0; i < 4096; i++) {
			if (pipe2(fds, O_CLOEXEC) < 0)
				break;
			if (fcntl(fds[1], F_GETPIPE_SZ) < 65536) {
				ok = 1;
				break;
			}
			fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
		}
		if (write(sync[1], &ok, 1) != 1)
			_exit(1);
		while (read(stay[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(sync[1]);
	close(stay[0]);
	*ready = read(sync[0], &c, 1) == 1 ? c : -1;
	close(sync[0]);
	*hold = stay[1];
	return pid;
}

/*
 * The user sockfwd runs as is past fs.pipe-user-pages-soft (another of
 * its processes holds the pipes): the kernel grants the splice engine
 * only pipes of two pages, which it closes and moves every burst
 * through a buffer instead, counted (pipe_fallbacks=) and warned about
 * once; every byte comes back, no pipe stays open. A user of its own
 * ("games", which nothing else here runs as) keeps the hog from
 * shrinking other tests' pipes.
 */
Test(priv, shrunk_pipes_buffer_path, .timeout = 60)
{
	struct fwd_opts o = { .engine = "splice", .threads = 1 };
	const struct passwd *pw;
	char upstream[64], line[1024];
	const char *p;
	struct srv s;
	struct fwd f;
	int hold, ready, st;
	pid_t hog;

	NEED_ROOT();
	pw = getpwnam("games");
	if (pw == NULL)
		cr_skip_test("no user games on this system");
	hog = hog_pipe_pages(pw, &hold, &ready);
	if (ready == 0) {
		close(hold);
		waitpid(hog, &st, 0);
		cr_skip_test("fs.pipe-user-pages-soft is 0: pipes never shrink");
	}
	cr_assert_eq(ready, 1, "the pipe hog failed");
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, upstream, sizeof(upstream));
	o.extra[0] = "--user";
	o.extra[1] = "games";
	fwd_start(&f, &o);
	(void)echo_bulk_port(f.port, 43, XFER_LEN);
	(void)echo_bulk_port(f.port, 44, 1 * MiB);
	cr_assert_eq(proc_fds_of(f.pid, "pipe:"), 0, "shrunk pipes kept open");
	fwd_signal_wait(&f, SIGTERM);
	close(hold);
	waitpid(hog, &st, 0);
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "exit: %s",
		  fwd_status_str(&f));
	cr_assert_eq(fwd_log_count(&f, "shrunk pipes", NULL), 1,
		     "no single warning about shrunk pipes; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_log_line(&f, "stats:", NULL, line, sizeof(line));
	cr_assert(strstr(line, " spliced=0/0 ") != NULL, "spliced through shrunk pipes: %s", line);
	p = strstr(line, " pipe_fallbacks=");
	cr_assert(p != NULL && strtoull(p + 16, NULL, 10) >= 2, "fallbacks not counted: %s", line);
	fwd_release(&f);
	srv_stop(&s);
}

ENGINE_TEST(priv, user_nobody, 60)
{
	struct ids w;

	NEED_ROOT();
	ids_of(&w, "nobody", NULL);
	drop_and_forward(engine, "nobody", &w);
}

ENGINE_TEST(priv, user_nobody_nogroup, 60)
{
	struct ids w;

	NEED_ROOT();
	ids_of(&w, "nobody", "nogroup");
	drop_and_forward(engine, "nobody:nogroup", &w);
}

/* GROUP other than the user's primary one: it is the gid, and the primary group is gone. */
Test(priv, user_with_another_group, .timeout = 60)
{
	struct ids w;

	NEED_ROOT();
	ids_of(&w, "nobody", "daemon");
	cr_assert_neq(w.gid, getpwnam("nobody")->pw_gid, "daemon is nobody's primary group");
	drop_and_forward("epoll", "nobody:daemon", &w);
}

/* Numeric ids with no passwd or group entry: exactly those, GROUP the only group. */
Test(priv, numeric_ids, .timeout = 60)
{
	struct ids w = { .ngroups = 1 };
	char spec[64];

	NEED_ROOT();
	w.uid = 4242;
	for (int i = 0; i < 100 && getpwuid(w.uid) != NULL; i++)
		w.uid++;
	cr_assert(getpwuid(w.uid) == NULL, "no free uid near 4242");
	w.gid = w.groups[0] = w.uid + 1000;
	snprintf(spec, sizeof(spec), "%u:%u", (unsigned)w.uid, (unsigned)w.gid);
	drop_and_forward("splice", spec, &w);
}

/* The config key user does the same. */
Test(priv, config_key_user, .timeout = 60)
{
	static const char text[] = "engine = \"@E\";\nthreads = 2;\nuser = \"nobody\";\n"
				   "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .engine = "epoll", .nlisten = 1 };
	struct srv s;
	struct fwd f;
	struct ids w;

	NEED_ROOT();
	ids_of(&w, "nobody", NULL);
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, text);
	cr_assert(fwd_log_wait(&f, PRIV_MS, "privileges dropped", NULL),
		  "no line about the drop; stderr:\n%s", fwd_stderr_tail(&f));
	check_threads(f.pid, &w);
	(void)echo_bulk_port(f.port, 43, XFER_LEN);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
	conf_remove(&c);
}

/* argv exits with status, and its stderr mentions word. */
static void expect_exit(const char *const *argv, int status, const char *word)
{
	char err[4096];
	int st = fwd_run(argv, PRIV_MS, NULL, 0, err, sizeof(err));

	cr_assert_eq(st, status, "%s %s: exit %d, expected %d; stderr:\n%s", argv[1], argv[2], st,
		     status, err);
	cr_assert(strcasestr(err, word) != NULL, "stderr does not say \"%s\":\n%s", word, err);
	cr_assert(strchr(err, '\n') == strrchr(err, '\n'), "more than one line:\n%s", err);
}

/* Unknown names are usage errors, found before anything listens. */
Test(priv, unknown_user_or_group_exits_2, .timeout = 60)
{
	char listen[64], bare[32];
	uid_t free_uid = 4242;
	int port = free_port(AF_INET);

	loop_addr(listen, sizeof(listen), AF_INET, port);
	{
		const char *a[] = { "sockfwd", "--user", "no-such-user-sf", "-l",
				    listen,    "-r",	 "127.0.0.1:9",	    NULL };
		const char *b[] = { "sockfwd",	   "--user", "nobody:no-such-group-sf",
				    "-l",	   listen,   "-r",
				    "127.0.0.1:9", NULL };
		const char *c[] = { "sockfwd", "--user", bare,		"-l",
				    listen,    "-r",	 "127.0.0.1:9", NULL };

		expect_exit(a, 2, "unknown user 'no-such-user-sf'");
		expect_exit(b, 2, "unknown group 'no-such-group-sf'");
		for (int i = 0; i < 100 && getpwuid(free_uid) != NULL; i++)
			free_uid++;
		snprintf(bare, sizeof(bare), "%u", (unsigned)free_uid);
		expect_exit(c, 2, "GROUP");
	}
}

/* -t checks the user of the file too. */
Test(priv, check_mode_resolves_user, .timeout = 60)
{
	static const char bad[] = "user = \"no-such-user-sf\";\n"
				  "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:9\"; }; };\n";
	struct fwd_conf c = { .nlisten = 1 };
	char err[4096];
	int st;

	conf_write(&c, bad);
	{
		const char *argv[] = { "sockfwd", "-t", "-c", c.path, NULL };

		st = fwd_run(argv, PRIV_MS, NULL, 0, err, sizeof(err));
	}
	cr_assert_eq(st, 2, "-t with an unknown user: exit %d; stderr:\n%s", st, err);
	cr_assert(strstr(err, "unknown user") != NULL, "stderr:\n%s", err);
	conf_remove(&c);
}

/* A free port below 1024 on 127.0.0.1, or 0. */
static int low_port(void)
{
	for (int p = 1023; p >= 600; p--) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p) };
		int ok;

		sys_assert(fd >= 0, "socket");
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(fd);
		if (ok)
			return p;
	}
	return 0;
}

/* A port below 1024 is bound as root, then served as nobody. */
ENGINE_TEST(priv, low_port_then_drop, 60)
{
	struct ids w;
	struct srv s;
	struct fwd f;
	char upstream[64], listen[64];

	NEED_ROOT();
	ids_of(&w, "nobody", NULL);
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	srv_addr(&s, upstream, sizeof(upstream));
	for (int attempt = 0;; attempt++) {
		int port = low_port();
		const char *argv[] = { "sockfwd", "-b",	    engine,   "-l",	listen,
				       "-r",	  upstream, "--user", "nobody", NULL };

		cr_assert(port > 0 && attempt < 10, "no free port below 1024");
		loop_addr(listen, sizeof(listen), AF_INET, port);
		fwd_spawn(&f, argv, 0);
		f.family = AF_INET;
		f.port = port;
		if (fwd_wait_listening(&f, &port, 1, PRIV_MS))
			break;
		fwd_release(&f);
	}
	cr_assert(fwd_log_wait(&f, PRIV_MS, "privileges dropped", NULL), "stderr:\n%s",
		  fwd_stderr_tail(&f));
	check_threads(f.pid, &w);
	(void)echo_bulk_port(f.port, 44, XFER_LEN);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * After the drop a reload still reads the file (a new port >= 1024 is
 * bound), but a new port below 1024 cannot be bound without
 * CAP_NET_BIND_SERVICE: that reload fails and the running rules serve on.
 */
Test(priv, reload_after_drop, .timeout = 60)
{
	static const char one[] = "engine = \"epoll\";\nthreads = 1;\nuser = \"nobody\";\n"
				  "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; }; };\n";
	static const char two[] = "engine = \"epoll\";\nthreads = 1;\nuser = \"nobody\";\n"
				  "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "  more = { listen = \"127.0.0.1:@L1\"; upstream = "
				  "\"127.0.0.1:@U0\"; }; };\n";
	static const char low[] = "engine = \"epoll\";\nthreads = 1;\nuser = \"nobody\";\n"
				  "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "  more = { listen = \"127.0.0.1:@L1\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "  low = { listen = \"127.0.0.1:@U1\"; upstream = "
				  "\"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .nlisten = 2 };
	struct srv s;
	struct fwd f;
	int lport;

	NEED_ROOT();
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, one);
	cr_assert(fwd_log_wait(&f, PRIV_MS, "privileges dropped", NULL), "stderr:\n%s",
		  fwd_stderr_tail(&f));

	conf_write(&c, two);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	fwd_wait_port(&f, c.lport[1], 1, PRIV_MS);
	(void)echo_bulk_port(c.lport[1], 45, 1 * MiB);

	lport = low_port();
	cr_assert(lport > 0, "no free port below 1024");
	c.up[1] = lport;
	conf_write(&c, low);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, PRIV_MS, "reload failed", NULL),
		  "a new port below 1024 after the drop: no failed reload; stderr:\n%s",
		  fwd_stderr_tail(&f));
	fwd_assert_alive(&f);
	cr_assert(!proc_listening(f.pid, lport), "port %d bound after the drop", lport);
	(void)echo_bulk_port(c.lport[0], 46, 1 * MiB);
	(void)echo_bulk_port(c.lport[1], 47, 1 * MiB);
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
	conf_remove(&c);
}

/*
 * Not root: switching to another user fails at start with a clear
 * message (exit 1); --user naming the user it already runs as is fine.
 */
Test(priv, not_root, .timeout = 60)
{
	struct spawn_opts so = { .as_user = 1 };
	struct ids w = { .ngroups = 0 };
	char upstream[64], listen[64], err[4096];
	struct passwd *pw;
	struct srv s;
	struct fwd f;
	int port;

	NEED_ROOT();
	pw = getpwnam("nobody");
	cr_assert(pw != NULL, "no user nobody");
	so.uid = w.uid = pw->pw_uid;
	so.gid = w.gid = pw->pw_gid;
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	srv_addr(&s, upstream, sizeof(upstream));
	port = pick_port(AF_INET);
	loop_addr(listen, sizeof(listen), AF_INET, port);
	{
		const char *argv[] = { "sockfwd", "-l",	    listen, "-r",
				       upstream,  "--user", "root", NULL };

		fwd_spawn_opts(&f, argv, &so);
		cr_assert(fwd_wait(&f, PRIV_MS), "sockfwd as nobody with --user root still runs");
		fwd_stderr(&f, err, sizeof(err));
		cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 1,
			  "as nobody, --user root: %s, expected exit 1; stderr:\n%s",
			  fwd_status_str(&f), err);
		cr_assert(strstr(err, "only root") != NULL, "unclear message:\n%s", err);
		cr_assert(!strstr(err, "listening on"), "it listened first:\n%s", err);
		fwd_release(&f);
	}
	{
		const char *argv[] = { "sockfwd", "-b",	    "epoll",  "-l",	listen,
				       "-r",	  upstream, "--user", "nobody", NULL };

		fwd_spawn_opts(&f, argv, &so);
		f.family = AF_INET;
		f.port = port;
		cr_assert(fwd_wait_listening(&f, &port, 1, PRIV_MS), "port %d in use", port);
		cr_assert(fwd_log_wait(&f, PRIV_MS, "already running as uid", NULL), "stderr:\n%s",
			  fwd_stderr_tail(&f));
		check_threads(f.pid, &w);
		(void)echo_bulk_port(port, 48, 1 * MiB);
		fwd_stop(&f);
		fwd_release(&f);
	}
	srv_stop(&s);
}
