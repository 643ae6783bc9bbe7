/*
 * Socket buffer sizes (--sndbuf, --rcvbuf; sndbuf, rcvbuf keys): the
 * forwarder's own sockets are looked at, each taken out of the running
 * process with pidfd_getfd(2), and asked SO_SNDBUF and SO_RCVBUF (Linux
 * reports twice the size set): its listeners, the client socket they
 * accepted, and the socket it connected upstream, with bytes through the
 * connection compared by hash.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* What the kernel reports for a size set: twice it (socket(7)). */
#define SEEN(z) (2 * (z))

/* Buffer sizes of the forwarder's sockets of one kind; count 0 when none. */
struct seen {
	int n;
	int snd, rcv; /* of the last one, after checking all agree */
	int differ;   /* sockets of this kind did not all agree */
};

struct fwd_socks {
	struct seen listen, client, upstream;
};

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static int pidfd_getfd_(int pidfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0); }

static int sock_port(int fd, int peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
		     : getsockname(fd, (struct sockaddr *)&ss, &len);

	if (r < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

static void seen_add(struct seen *s, int fd)
{
	int snd = 0, rcv = 0;
	socklen_t len = sizeof(int);

	sys_assert(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &len) == 0, "SO_SNDBUF");
	len = sizeof(int);
	sys_assert(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &len) == 0, "SO_RCVBUF");
	if (s->n > 0 && (snd != s->snd || rcv != s->rcv))
		s->differ = 1;
	s->snd = snd;
	s->rcv = rcv;
	s->n++;
}

/*
 * The TCP sockets of pid: listeners on lport, connections accepted on it
 * (from a client on cport), connections to the upstream on uport.
 * Skips the test when this process may not take descriptors out of pid
 * (pidfd_getfd needs ptrace rights over it).
 */
static void fwd_socks_of(pid_t pid, int lport, int cport, int uport, struct fwd_socks *out)
{
	char dir[64], path[320], link[64];
	struct dirent *e;
	int pidfd;
	DIR *d;

	memset(out, 0, sizeof(*out));
	pidfd = pidfd_open_(pid);
	sys_assert(pidfd >= 0, "pidfd_open");
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	sys_assert(d != NULL, "opendir %s", dir);
	while ((e = readdir(d)) != NULL) {
		int type = 0, acc = 0, fd, local, peer;
		socklen_t len = sizeof(int);
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "socket:", 7) != 0)
			continue;
		fd = pidfd_getfd_(pidfd, atoi(e->d_name));
		if (fd < 0 && (errno == EPERM || errno == ENOSYS)) {
			closedir(d);
			close(pidfd);
			cr_skip_test("pidfd_getfd: %s: cannot look at the forwarder's sockets",
				     strerror(errno));
		}
		if (fd < 0)
			continue; /* closed meanwhile */
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
			close(fd);
			continue;
		}
		len = sizeof(int);
		(void)getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len);
		local = sock_port(fd, 0);
		peer = sock_port(fd, 1);
		if (acc && local == lport)
			seen_add(&out->listen, fd);
		else if (!acc && local == lport && peer == cport)
			seen_add(&out->client, fd);
		else if (!acc && peer == uport)
			seen_add(&out->upstream, fd);
		close(fd);
	}
	closedir(d);
	close(pidfd);
}

/* One kind of socket was found, all alike, with these sizes set. */
static void expect_sizes(const struct seen *s, const char *what, int snd, int rcv)
{
	cr_assert(s->n > 0, "no %s socket found in the forwarder", what);
	cr_assert(!s->differ, "the forwarder's %s sockets differ in buffer sizes", what);
	cr_assert_eq(s->snd, SEEN(snd), "%s socket: SO_SNDBUF %d, --sndbuf %d gives %d", what,
		     s->snd, snd, SEEN(snd));
	cr_assert_eq(s->rcv, SEEN(rcv), "%s socket: SO_RCVBUF %d, --rcvbuf %d gives %d", what,
		     s->rcv, rcv, SEEN(rcv));
}

/*
 * A client through f to s, bytes echoed and compared; the forwarder's
 * three sockets of it must have snd and rcv set. The client stays open
 * while they are looked at.
 */
static void check_conn(struct fwd *f, int lport, const struct srv *s, int snd, int rcv)
{
	struct fwd_socks fs;
	int fd = tcp_connect(AF_INET, lport);

	echo_roundtrip(fd, 7, 256 * 1024);
	fwd_socks_of(f->pid, lport, sock_local_port(fd), s->port, &fs);
	expect_sizes(&fs.listen, "listening", snd, rcv);
	expect_sizes(&fs.client, "client", snd, rcv);
	expect_sizes(&fs.upstream, "upstream", snd, rcv);
	echo_roundtrip(fd, 8, 64 * 1024);
	close(fd);
}

/* --sndbuf and --rcvbuf set both sides of a connection and the listeners, every engine. */
ENGINE_TEST(sockbuf, flags_set_every_socket, 60)
{
	struct fwd_opts o = { .engine = engine, .threads = 2 };
	struct srv s;
	struct fwd f;
	char r[64];

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, r, sizeof(r));
	o.extra[0] = "--sndbuf";
	o.extra[1] = "24k";
	o.extra[2] = "--rcvbuf";
	o.extra[3] = "40k";
	o.extra[4] = NULL;
	fwd_start(&f, &o);
	check_conn(&f, f.port, &s, 24 * 1024, 40 * 1024);
	fwd_stop(&f);
	srv_stop(&s);
}

static const char conf_1[] =
	"engine = \"@E\";\n"
	"threads = 1;\n"
	"defaults = { sndbuf = \"32k\"; rcvbuf = 65536; };\n"
	"rules = {\n"
	"  a = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"  b = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U1\";\n"
	"        rcvbuf = \"20k\"; };\n"
	"};\n";

static const char conf_2[] = "engine = \"@E\";\n"
			     "threads = 1;\n"
			     "defaults = { sndbuf = \"32k\"; rcvbuf = 65536; };\n"
			     "rules = {\n"
			     "  a = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\";\n"
			     "        sndbuf = \"48k\"; };\n"
			     "  b = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U1\";\n"
			     "        rcvbuf = \"20k\"; };\n"
			     "};\n";

/* conf_2 with a's size changed again and a rule whose listen address is taken. */
static const char conf_bad_reload[] =
	"engine = \"@E\";\n"
	"threads = 1;\n"
	"defaults = { sndbuf = \"32k\"; rcvbuf = 65536; };\n"
	"rules = {\n"
	"  a = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\";\n"
	"        sndbuf = \"56k\"; };\n"
	"  b = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U1\";\n"
	"        rcvbuf = \"20k\"; };\n"
	"  taken = { listen = \"127.0.0.1:@U0\"; upstream = \"127.0.0.1:@U1\"; };\n"
	"};\n";

/*
 * The keys from defaults and per rule; a reload that changes a kept
 * rule's size applies to its listener and the connections after it; a
 * reload that fails changes no size.
 */
Test(sockbuf, config_keys_and_reload, .timeout = 60)
{
	struct fwd_conf c = { .engine = "splice", .nlisten = 2 };
	struct srv s[2];
	struct fwd f;

	for (int i = 0; i < 2; i++) {
		srv_start(&s[i], AF_INET, SRV_ECHO, 0, 0);
		c.up[i] = s[i].port;
	}
	fwd_start_conf(&f, &c, conf_1);
	check_conn(&f, c.lport[0], &s[0], 32 * 1024, 64 * 1024);
	check_conn(&f, c.lport[1], &s[1], 32 * 1024, 20 * 1024);

	conf_write(&c, conf_2);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, 10000, "reloaded ", NULL), "no 'reloaded' line after SIGHUP");
	check_conn(&f, c.lport[0], &s[0], 48 * 1024, 64 * 1024);
	check_conn(&f, c.lport[1], &s[1], 32 * 1024, 20 * 1024);

	conf_write(&c, conf_bad_reload);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, 10000, "reload failed", NULL),
		  "no 'reload failed' line for a listen address in use");
	check_conn(&f, c.lport[0], &s[0], 48 * 1024, 64 * 1024);

	fwd_stop(&f);
	for (int i = 0; i < 2; i++)
		srv_stop(&s[i]);
	conf_remove(&c);
}

/* Bad sizes are usage errors naming the flag or key; 0 is the kernel's default. */
Test(sockbuf, bad_sizes_exit_2, .timeout = 30)
{
	static const char *const bad[] = { "10", "1023", "65m", "1g", "x", "-1", "" };
	static const char *const flag[] = { "--sndbuf", "--rcvbuf" };
	static const char *const conf_bad[] = { "100", "-1", "\"65m\"", "\"x\"", "true" };
	char out[256], err[1024], text[256];
	struct fwd_conf c = { .engine = "splice", .nlisten = 1 };
	int rc;

	for (size_t f = 0; f < 2; f++) {
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *argv[] = { "sockfwd",     flag[f], bad[i],	      "-l",
					       "127.0.0.1:1", "-r",    "127.0.0.1:2", NULL };

			rc = fwd_run(argv, 10000, out, sizeof(out), err, sizeof(err));
			cr_assert_eq(rc, 2, "%s '%s': exit %d, not 2", flag[f], bad[i], rc);
			cr_assert(strstr(err, flag[f]) != NULL, "%s '%s': message: %s", flag[f],
				  bad[i], err);
		}
	}
	for (size_t i = 0; i < sizeof(conf_bad) / sizeof(conf_bad[0]); i++) {
		const char *argv[] = { "sockfwd", "-t", "-c", c.path, NULL };

		snprintf(text, sizeof(text),
			 "rules = { a = { listen = \"127.0.0.1:@L0\"; upstream = "
			 "\"127.0.0.1:1\"; rcvbuf = %s; }; };\n",
			 conf_bad[i]);
		conf_write(&c, text);
		rc = fwd_run(argv, 10000, out, sizeof(out), err, sizeof(err));
		cr_assert_eq(rc, 2, "rcvbuf = %s: exit %d, not 2", conf_bad[i], rc);
		cr_assert(strstr(err, "rules.a.rcvbuf") != NULL, "rcvbuf = %s: message: %s",
			  conf_bad[i], err);
	}
	/* 0 and the bounds are taken. */
	conf_write(&c, "defaults = { sndbuf = 0; rcvbuf = \"64m\"; };\n"
		       "rules = { a = { listen = \"127.0.0.1:@L0\"; upstream = "
		       "\"127.0.0.1:1\"; sndbuf = \"1k\"; }; };\n");
	{
		const char *argv[] = { "sockfwd", "-t", "-c", c.path, NULL };

		rc = fwd_run(argv, 10000, out, sizeof(out), err, sizeof(err));
		cr_assert_eq(rc, 0, "0, 1k and 64m: exit %d: %s", rc, err);
	}
	conf_remove(&c);
}
