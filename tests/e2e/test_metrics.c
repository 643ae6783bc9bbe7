/*
 * --metrics: the Prometheus endpoint, scraped over a real socket.
 * Counters equal known values after hash-checked transfers of known
 * sizes (every engine, and as bytes move, not only at close); closes are
 * counted by reason; an upstream's attempts, failures and up/down follow
 * its health; counters go on across a SIGHUP reload; promtool accepts
 * the text; /health answers, anything else is 404; hostile scrapers stall
 * neither forwarding nor other scrapes; an address in use fails at start.
 */
#include "harness.h"

#include <dirent.h>
#include <endian.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define HTTP_MAX  (1024 * 1024) /* a response, headers and body */
#define METRIC_MS 10000		/* bound for a counter to reach its value */
#define RELOAD_MS 10000

struct http_resp {
	int status;
	char ctype[128];
	char *raw; /* malloc'd: the whole response, NUL terminated */
	const char *body;
	size_t blen;
};

static void http_free(struct http_resp *r)
{
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

/* Connect to 127.0.0.1:port, retrying while refused (bounded). */
static int connect_retry(int port)
{
	uint64_t deadline = now_ms() + E2E_READY_MS;
	int fd;

	for (int i = 0; i < 100000; i++) {
		fd = tcp_connect_try(AF_INET, port);
		if (fd >= 0 || now_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	cr_assert(fd >= 0, "connect to the metrics port %d: %s%s", port, strerror(-fd), fwd_note());
	return fd;
}

/* Read until EOF into r->raw (at most HTTP_MAX); fails on error or timeout. */
static void read_all(int fd, struct http_resp *r)
{
	size_t len = 0;
	ssize_t n;

	r->raw = malloc(HTTP_MAX + 1);
	cr_assert(r->raw != NULL, "malloc");
	for (;;) {
		n = recv(fd, r->raw + len, HTTP_MAX - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		sys_assert(n >= 0, "recv of an HTTP response");
		if (n == 0)
			break;
		len += (size_t)n;
		cr_assert(len < HTTP_MAX, "HTTP response larger than %d bytes", HTTP_MAX);
	}
	r->raw[len] = '\0';
}

/* Split r->raw into status, content type and body; fails when it is no HTTP response. */
static void parse_resp(struct http_resp *r)
{
	char *hend = strstr(r->raw, "\r\n\r\n"), *line;

	cr_assert(hend != NULL && sscanf(r->raw, "HTTP/1.%*d %d", &r->status) == 1,
		  "not an HTTP response: %.200s", r->raw);
	*hend = '\0';
	r->body = hend + 4;
	r->blen = strlen(r->body);
	r->ctype[0] = '\0';
	for (line = strstr(r->raw, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n"))
		if (strncasecmp(line + 2, "Content-Type:", 13) == 0) {
			const char *v = line + 15;
			size_t n = strcspn(v, "\r");

			while (*v == ' ') {
				v++;
				n--;
			}
			snprintf(r->ctype, sizeof(r->ctype), "%.*s", (int)n, v);
		}
}

/* METHOD path over a fresh connection to the metrics port; the whole response in r. */
static void http_req(int port, const char *method, const char *path, struct http_resp *r)
{
	char req[256];
	int fd = connect_retry(port);

	memset(r, 0, sizeof(*r));
	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
		 method, path);
	send_all(fd, req, strlen(req));
	read_all(fd, r);
	close(fd);
	parse_resp(r);
}

/* GET /metrics: asserts 200 and the exposition content type. */
static void scrape(int port, struct http_resp *r)
{
	http_req(port, "GET", "/metrics", r);
	cr_assert_eq(r->status, 200, "GET /metrics: status %d", r->status);
	cr_assert_str_eq(r->ctype, "text/plain; version=0.0.4; charset=utf-8");
}

/*
 * The value of series (name{labels} exactly as written) in text, or -1
 * when it is absent.
 */
static long long metric(const char *text, const char *series)
{
	size_t n = strlen(series);
	const char *p = text;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

/* name{rule="rule"} and the like, into buf. */
static const char *series1(char *buf, size_t len, const char *name, const char *rule)
{
	snprintf(buf, len, "%s{rule=\"%s\"}", name, rule);
	return buf;
}

static const char *series2(char *buf, size_t len, const char *name, const char *rule, const char *k,
			   const char *v)
{
	snprintf(buf, len, "%s{rule=\"%s\",%s=\"%s\"}", name, rule, k, v);
	return buf;
}

/* Scrape until series equals want (bounded); assert it does. Returns the last body. */
static void wait_metric(int port, const char *series, long long want)
{
	uint64_t deadline = now_ms() + METRIC_MS;
	struct http_resp r;
	long long v = -2;

	for (int i = 0; i < 10000; i++) {
		scrape(port, &r);
		v = metric(r.body, series);
		http_free(&r);
		if (v == want || now_ms() >= deadline)
			break;
		sleep_ms(20);
	}
	cr_assert_eq(v, want, "%s is %lld, expected %lld (-1: absent)%s", series, v, want,
		     fwd_note());
}

/* Assert series equals want in text. */
static void expect_metric(const char *text, const char *series, long long want)
{
	long long v = metric(text, series);

	cr_assert_eq(v, want, "%s is %lld, expected %lld (-1: absent); metrics:\n%s", series, v,
		     want, text);
}

/* promtool check metrics on text: exit 0 required. */
static void promtool_check(const char *text)
{
	char path[] = "/tmp/sockfwd-metrics-XXXXXX", cmd[128], out[4096] = "";
	size_t n = 0;
	FILE *p;
	int fd = mkstemp(path), st;

	sys_assert(fd >= 0, "mkstemp");
	cr_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s", path);
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	sys_assert(p != NULL, "popen promtool");
	while (n < sizeof(out) - 1 && fgets(out + n, (int)(sizeof(out) - n), p) != NULL)
		n = strlen(out);
	st = pclose(p);
	unlink(path);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "promtool check metrics failed (status %d):\n%s\nmetrics:\n%s", st, out, text);
}

/* A port for --metrics; "127.0.0.1:P" into buf. */
static int metrics_port(char *buf, size_t len)
{
	int port = pick_port(AF_INET);

	loop_addr(buf, len, AF_INET, port);
	return port;
}

/* A number after key= in the exit "stats:" line of f. */
static long long stats_field(const struct fwd *f, const char *key)
{
	char line[1024], k[32];
	const char *p;

	fwd_log_line(f, "stats:", NULL, line, sizeof(line));
	snprintf(k, sizeof(k), " %s=", key);
	p = strstr(line, k);
	cr_assert(p != NULL, "no %s in the stats line: %s", key, line);
	return strtoll(p + strlen(k), NULL, 10);
}

/* Send len bytes of seed, then half-close; check the SRV_HALFCLOSE reply. */
static void halfclose_finish(int fd, uint64_t seed, uint64_t len, uint64_t reply)
{
	struct halfclose_hdr hdr;
	uint64_t h, n;

	sys_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
	recv_exact(fd, &hdr, sizeof(hdr));
	cr_assert_eq(le64toh(hdr.len), len, "upstream read %llu of %llu bytes",
		     (unsigned long long)le64toh(hdr.len), (unsigned long long)len);
	cr_assert(le64toh(hdr.hash) == gen_hash(seed, len), "upstream received other bytes");
	n = recv_to_eof(fd, &h, reply + 1);
	cr_assert_eq(n, reply, "reply: %llu of %llu bytes", (unsigned long long)n,
		     (unsigned long long)reply);
	cr_assert(h == gen_hash(halfclose_seed(le64toh(hdr.hash), len), reply), "reply differs");
}

#define C2U "client_to_upstream"
#define U2C "upstream_to_client"

/*
 * Two hash-checked transfers of known, different sizes each way through
 * two workers: while the first is open its bytes are counted already
 * (progress, not only at close); after both, every counter is exact and
 * equal to the exit stats line; splice counts spliced bytes, the others
 * none; promtool accepts the text.
 */
ENGINE_TEST(metrics, transfer_counts, 120)
{
	const uint64_t len[2] = { 3 * MiB + 7, 1 * MiB + 3 }, reply = 2 * MiB + 11;
	struct fwd_opts o = { .engine = engine, .threads = 2, .no_probe = 1 };
	char maddr[64], remote[64], s[512], up[320];
	long long sp[2];
	struct http_resp r;
	struct srv srv;
	struct fwd f;
	int mport, fd;

	srv_start(&srv, AF_INET, SRV_HALFCLOSE, reply, 0);
	mport = metrics_port(maddr, sizeof(maddr));
	o.remote = srv_addr(&srv, remote, sizeof(remote));
	o.extra[0] = "--metrics";
	o.extra[1] = maddr;
	fwd_start(&f, &o);

	for (int i = 0; i < 2; i++) {
		fd = tcp_connect(AF_INET, f.port);
		send_gen(fd, 100 + (uint64_t)i, len[i]);
		/* Delivered upstream (it has read them all) before the half-close. */
		wait_metric(
			mport,
			series2(s, sizeof(s), "sockfwd_bytes_total", "default", "direction", C2U),
			(long long)(len[0] * (uint64_t)i + len[i]));
		wait_metric(mport, series1(s, sizeof(s), "sockfwd_connections_active", "default"),
			    1);
		halfclose_finish(fd, 100 + (uint64_t)i, len[i], reply);
		close(fd);
	}
	wait_metric(mport, series1(s, sizeof(s), "sockfwd_connections_active", "default"), 0);
	scrape(mport, &r);
	promtool_check(r.body);
	expect_metric(r.body,
		      series1(s, sizeof(s), "sockfwd_connections_accepted_total", "default"), 2);
	expect_metric(r.body,
		      series2(s, sizeof(s), "sockfwd_connections_closed_total", "default", "reason",
			      "eof"),
		      2);
	expect_metric(r.body,
		      series2(s, sizeof(s), "sockfwd_connections_closed_total", "default", "reason",
			      "reset"),
		      0);
	expect_metric(r.body,
		      series2(s, sizeof(s), "sockfwd_bytes_total", "default", "direction", C2U),
		      (long long)(len[0] + len[1]));
	expect_metric(r.body,
		      series2(s, sizeof(s), "sockfwd_bytes_total", "default", "direction", U2C),
		      (long long)(2 * (reply + sizeof(struct halfclose_hdr))));
	sp[0] = metric(r.body, series2(s, sizeof(s), "sockfwd_spliced_bytes_total", "default",
				       "direction", C2U));
	sp[1] = metric(r.body, series2(s, sizeof(s), "sockfwd_spliced_bytes_total", "default",
				       "direction", U2C));
	if (strcmp(engine, "splice") == 0)
		cr_assert(sp[0] > 0 && sp[0] <= (long long)(len[0] + len[1]) && sp[1] > 0 &&
				  sp[1] <= (long long)(2 * (reply + 16)),
			  "splice: spliced %lld/%lld of the bytes", sp[0], sp[1]);
	else
		cr_assert(sp[0] == 0 && sp[1] == 0, "%s spliced %lld/%lld bytes", engine, sp[0],
			  sp[1]);
	/* Two connections are far below any engine's pipe cap. */
	expect_metric(r.body, series1(s, sizeof(s), "sockfwd_pipe_fallbacks_total", "default"), 0);
	snprintf(up, sizeof(up), "{rule=\"default\",upstream=\"%s\"}", remote);
	snprintf(s, sizeof(s), "sockfwd_upstream_connect_attempts_total%s", up);
	expect_metric(r.body, s, 2);
	snprintf(s, sizeof(s), "sockfwd_upstream_connect_failures_total%s", up);
	expect_metric(r.body, s, 0);
	snprintf(s, sizeof(s), "sockfwd_upstream_up%s", up);
	expect_metric(r.body, s, 1);
	snprintf(s, sizeof(s), "sockfwd_upstream_connections_active%s", up);
	expect_metric(r.body, s, 0);
	snprintf(s, sizeof(s), "sockfwd_build_info{version=\"0.1.0\",engine=\"%s\"}", engine);
	expect_metric(r.body, s, 1);
	cr_assert(metric(r.body, "process_open_fds") > 0 &&
			  metric(r.body, "process_resident_memory_bytes") > 0 &&
			  metric(r.body, "process_start_time_seconds") > 1000000000,
		  "process metrics missing:\n%s", r.body);

	/* The exit line counts the same. */
	fwd_signal_wait(&f, SIGTERM);
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "exit: %s",
		  fwd_status_str(&f));
	cr_assert_eq(stats_field(&f, "accepted"), 2);
	cr_assert_eq(stats_field(&f, "pipe_fallbacks"), 0);
	cr_assert_eq(stats_field(&f, "c2u"),
		     metric(r.body, series2(s, sizeof(s), "sockfwd_bytes_total", "default",
					    "direction", C2U)));
	cr_assert_eq(stats_field(&f, "u2c"),
		     metric(r.body, series2(s, sizeof(s), "sockfwd_bytes_total", "default",
					    "direction", U2C)));
	{
		char line[1024], want[64];

		fwd_log_line(&f, "stats:", NULL, line, sizeof(line));
		snprintf(want, sizeof(want), "spliced=%lld/%lld", sp[0], sp[1]);
		cr_assert(strstr(line, want) != NULL, "stats line %s, metrics say %s", line, want);
	}
	http_free(&r);
	fwd_release(&f);
	srv_stop(&srv);
}

/*
 * A client of 127.0.0.1:port whose receive buffer is a few KiB, so that
 * what the forwarder sends it piles up in the forwarder.
 */
static int connect_small_rcvbuf(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = E2E_HANG_MS / 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), v = 4096;

	sys_assert(fd >= 0, "socket");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sys_assert(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) == 0, "SO_RCVBUF");
	sys_assert(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0, "SO_RCVTIMEO");
	sys_assert(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect to port %d", port);
	return fd;
}

/* sf_pipepool_cap for one worker, 256 KiB pipes and 4 KiB pages, from this machine's sysctl. */
static int expected_pipe_cap(long nofile)
{
	FILE *fp = fopen("/proc/sys/fs/pipe-user-pages-soft", "r");
	long soft = 0, cap = nofile / 10;

	if (fp != NULL) {
		if (fscanf(fp, "%ld", &soft) != 1)
			soft = 0;
		fclose(fp);
	}
	if (soft > 0 && soft / 64 < cap)
		cap = soft / 64;
	return (int)cap;
}

#define CAP_NOFILE 96
#define CAP_CONNS  16
#define CAP_LEN	   (8 * MiB)
#define CAP_MS	   20000

/*
 * The splice engine's pipe cap follows RLIMIT_NOFILE: with 96 descriptors
 * and one worker it may lend 96 / 10 = 9 pipes (fs.pipe-user-pages-soft
 * allows more). 16 clients that read nothing at first each get 8 MiB
 * from the upstream: each connection's upstream-to-client direction
 * stops with bytes in flight and keeps what holds them, a pipe while
 * there is one. The forwarder never has more than 9 pipes open, the
 * directions beyond them go through buffers and are counted
 * (sockfwd_pipe_fallbacks_total, pipe_fallbacks= at exit, equal); then
 * every client reads its 8 MiB intact, and the sockets go back to the
 * baseline with at most the 9 pooled pipes left.
 */
Test(metrics, splice_pipe_cap_fallbacks, .timeout = 180)
{
	struct fwd_opts o = {
		.engine = "splice", .threads = 1, .no_probe = 1, .nofile = CAP_NOFILE
	};
	char maddr[64], remote[64], s[256], want[64];
	int fds[CAP_CONNS], mport, cap, sock0, fd0, pipes = 0, i;
	long long fb = 0, spliced;
	uint64_t deadline, h, n, rb = 1 << 20;
	struct http_resp r;
	struct srv srv;
	struct fwd f;

	srv_start(&srv, AF_INET, SRV_SOURCE, CAP_LEN, 77);
	mport = metrics_port(maddr, sizeof(maddr));
	o.remote = srv_addr(&srv, remote, sizeof(remote));
	o.extra[0] = "--metrics";
	o.extra[1] = maddr;
	o.extra[2] = "-v";
	fwd_start(&f, &o);
	cap = expected_pipe_cap(CAP_NOFILE);
	cr_assert(cap > 0 && cap < CAP_CONNS, "cap %d: the test needs 0 < cap < %d", cap,
		  CAP_CONNS);
	snprintf(want, sizeof(want), "splice: at most %d pipes of", cap);
	cr_assert(fwd_log_wait(&f, E2E_READY_MS, want, NULL), "no \"%s\" line; stderr:\n%s", want,
		  fwd_stderr_tail(&f));
	sock0 = proc_fds_of(f.pid, "socket:");
	fd0 = proc_fd_count(f.pid);
	cr_assert_eq(proc_fds_of(f.pid, "pipe:"), 0, "pipes open before any transfer");

	for (i = 0; i < CAP_CONNS; i++)
		fds[i] = connect_small_rcvbuf(f.port);
	/* Every pipe lent, and directions beyond them on buffers. */
	deadline = now_ms() + CAP_MS;
	for (i = 0; i < 100000; i++) {
		pipes = proc_fds_of(f.pid, "pipe:");
		cr_assert(pipes <= 2 * cap, "%d pipe descriptors open, cap %d pipes", pipes, cap);
		scrape(mport, &r);
		fb = metric(r.body,
			    series1(s, sizeof(s), "sockfwd_pipe_fallbacks_total", "default"));
		http_free(&r);
		if ((fb > 0 && pipes == 2 * cap) || now_ms() >= deadline)
			break;
		sleep_ms(20);
	}
	cr_assert(fb > 0 && pipes == 2 * cap,
		  "%lld fallbacks, %d pipe descriptors (cap %d pipes) with %d stalled clients%s",
		  fb, pipes, cap, CAP_CONNS, fwd_note());
	for (i = 0; i < CAP_CONNS; i++) {
		setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
		n = recv_to_eof(fds[i], &h, CAP_LEN);
		cr_assert(n == CAP_LEN && h == gen_hash(77, CAP_LEN),
			  "client %d: %llu bytes of %llu, hash %s", i, (unsigned long long)n,
			  (unsigned long long)CAP_LEN,
			  h == gen_hash(77, CAP_LEN) ? "ok" : "differs");
		close(fds[i]);
		pipes = proc_fds_of(f.pid, "pipe:");
		cr_assert(pipes <= 2 * cap, "%d pipe descriptors open, cap %d pipes", pipes, cap);
	}
	wait_metric(mport, series1(s, sizeof(s), "sockfwd_connections_active", "default"), 0);
	/* Back to the baseline: the sockets exactly, pipes at most those pooled. */
	deadline = now_ms() + CAP_MS;
	for (i = 0; i < 100000 && proc_fds_of(f.pid, "socket:") != sock0 && now_ms() < deadline;
	     i++)
		sleep_ms(20);
	cr_assert_eq(proc_fds_of(f.pid, "socket:"), sock0, "sockets left open%s", fwd_note());
	pipes = proc_fds_of(f.pid, "pipe:");
	cr_assert(pipes <= 2 * cap && pipes % 2 == 0, "%d pipe descriptors left", pipes);
	cr_assert_eq(proc_fd_count(f.pid), fd0 + pipes, "descriptors other than pipes left");
	scrape(mport, &r);
	fb = metric(r.body, series1(s, sizeof(s), "sockfwd_pipe_fallbacks_total", "default"));
	spliced = metric(r.body, series2(s, sizeof(s), "sockfwd_spliced_bytes_total", "default",
					 "direction", U2C));
	http_free(&r);
	cr_assert(fb > 0 && spliced > 0, "%lld fallbacks, %lld bytes spliced", fb, spliced);

	fwd_signal_wait(&f, SIGTERM);
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "exit: %s",
		  fwd_status_str(&f));
	cr_assert_eq(stats_field(&f, "u2c"), (long long)(CAP_CONNS * CAP_LEN));
	cr_assert_eq(stats_field(&f, "pipe_fallbacks"), fb, "stats line and metric differ");
	fwd_release(&f);
	srv_stop(&srv);
}

/* Each rule of this file ends its one connection with another reason. */
static const char reasons_conf[] =
	"engine = \"@E\";\nthreads = 2;\nmetrics = \"127.0.0.1:@L7\";\n"
	"rules = {\n"
	"  ok = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"  rst = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U1\"; };\n"
	"  refused = { listen = \"127.0.0.1:@L2\"; upstream = \"127.0.0.1:@U2\"; };\n"
	"  denied = { listen = \"127.0.0.1:@L3\"; upstream = \"127.0.0.1:@U0\";\n"
	"             deny = \"127.0.0.0/8\"; };\n"
	"  idle = { listen = \"127.0.0.1:@L4\"; upstream = \"127.0.0.1:@U0\";\n"
	"           idle_timeout = \"300ms\"; };\n"
	"  cto = { listen = \"127.0.0.1:@L5\"; upstream = \"127.0.0.1:@U3\";\n"
	"          connect_timeout = \"300ms\"; };\n"
	"  ph = { listen = \"127.0.0.1:@L6\"; upstream = \"127.0.0.1:@U0\"; accept_proxy = true; "
	"};\n"
	"};\n";

static const char *const reason_names[] = { "eof",	    "reset",  "refused", "connect-timeout",
					    "idle-timeout", "denied", "limit",	 "proxy-header",
					    "stop" };
#define NREASONS (sizeof(reason_names) / sizeof(reason_names[0]))

/* Rule rule closed its one connection with reason: that count 1, every other 0. */
static void expect_one_close(const char *text, const char *rule, const char *reason)
{
	char s[256];

	expect_metric(text, series1(s, sizeof(s), "sockfwd_connections_accepted_total", rule), 1);
	expect_metric(text, series1(s, sizeof(s), "sockfwd_connections_active", rule), 0);
	for (size_t i = 0; i < NREASONS; i++)
		expect_metric(text,
			      series2(s, sizeof(s), "sockfwd_connections_closed_total", rule,
				      "reason", reason_names[i]),
			      strcmp(reason_names[i], reason) == 0);
}

/* Upstream port of rule: attempts, failures and up as expected. */
static void expect_upstream(const char *text, const char *rule, int port, int attempts,
			    int failures, int up)
{
	char s[256];

	snprintf(s, sizeof(s),
		 "sockfwd_upstream_connect_attempts_total{rule=\"%s\",upstream=\"127.0.0.1:%d\"}",
		 rule, port);
	expect_metric(text, s, attempts);
	snprintf(s, sizeof(s),
		 "sockfwd_upstream_connect_failures_total{rule=\"%s\",upstream=\"127.0.0.1:%d\"}",
		 rule, port);
	expect_metric(text, s, failures);
	snprintf(s, sizeof(s), "sockfwd_upstream_up{rule=\"%s\",upstream=\"127.0.0.1:%d\"}", rule,
		 port);
	expect_metric(text, s, up);
}

/*
 * eof, reset (the upstream resets), refused (nothing listens), denied
 * (deny list), idle-timeout, connect-timeout (a silent upstream) and
 * proxy-header (a client without a PROXY header), one connection each:
 * counted under its reason, every other reason 0 (and present).
 */
ENGINE_TEST(metrics, closed_by_reason, 60)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 8 };
	struct srv echo, rst;
	struct silent q;
	struct http_resp r;
	struct fwd f;
	char s[256];
	int fd;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	srv_start(&rst, AF_INET, SRV_RST, 0, 0);
	silent_start(&q, AF_INET);
	c.up[0] = echo.port;
	c.up[1] = rst.port;
	c.up[2] = free_port(AF_INET); /* bound once, then closed: refused */
	c.up[3] = q.port;
	fwd_start_conf(&f, &c, reasons_conf);

	echo_once(AF_INET, c.lport[0], 1, 1000);
	fd = tcp_connect(AF_INET, c.lport[1]);
	send_all(fd, "hello", 5);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	for (int i = 2; i <= 3; i++) {
		fd = tcp_connect(AF_INET, c.lport[i]);
		recv_expect_reset(fd, E2E_RESET_MS);
		close(fd);
	}
	fd = tcp_connect(AF_INET, c.lport[4]);
	echo_roundtrip(fd, 2, 100);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	fd = tcp_connect(AF_INET, c.lport[5]);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);
	fd = tcp_connect(AF_INET, c.lport[6]);
	send_all(fd, "hello, no header\r\n", 18);
	recv_expect_reset(fd, E2E_RESET_MS);
	close(fd);

	/* A close is counted after its client saw the EOF or the reset. */
	{
		static const char *const want[][2] = {
			{ "ok", "eof" },
			{ "rst", "reset" },
			{ "refused", "refused" },
			{ "denied", "denied" },
			{ "idle", "idle-timeout" },
			{ "cto", "connect-timeout" },
			{ "ph", "proxy-header" },
		};

		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
			wait_metric(c.lport[7],
				    series2(s, sizeof(s), "sockfwd_connections_closed_total",
					    want[i][0], "reason", want[i][1]),
				    1);
	}
	scrape(c.lport[7], &r);
	promtool_check(r.body);
	expect_one_close(r.body, "ok", "eof");
	expect_one_close(r.body, "rst", "reset");
	expect_one_close(r.body, "refused", "refused");
	expect_one_close(r.body, "denied", "denied");
	expect_one_close(r.body, "idle", "idle-timeout");
	expect_one_close(r.body, "cto", "connect-timeout");
	expect_one_close(r.body, "ph", "proxy-header");
	expect_upstream(r.body, "ok", echo.port, 1, 0, 1);
	expect_upstream(r.body, "refused", c.up[2], 1, 1, 0);
	expect_upstream(r.body, "cto", q.port, 1, 1, 0);
	expect_upstream(r.body, "denied", echo.port, 0, 0, 1);
	http_free(&r);
	fwd_stop(&f);
	srv_stop(&echo);
	srv_stop(&rst);
	silent_stop(&q);
	conf_remove(&c);
}

/*
 * A pool of two with --balance first, max_fails 1 and a fail_timeout
 * longer than the test: while the first refuses, a client fails over to
 * the second and the first is down (attempts 1, failures 1, up 0). Then
 * the first listens and the second stops: the next client finds the
 * second down and, every upstream being down, tries the first again,
 * whose success marks it up. No step depends on time.
 */
ENGINE_TEST(metrics, upstream_down_then_up, 60)
{
	struct fwd_opts o = { .engine = engine, .no_probe = 1 };
	char maddr[64], ra[64], rb[64];
	struct srv a, b;
	struct http_resp r;
	struct fwd f;
	int mport, n = 0;

	srv_bind(&a, AF_INET, SRV_ID, 0);
	a.id = 0;
	srv_start_id(&b, AF_INET, 1);
	mport = metrics_port(maddr, sizeof(maddr));
	o.remote = srv_addr(&a, ra, sizeof(ra));
	o.extra[n++] = "-r";
	o.extra[n++] = srv_addr(&b, rb, sizeof(rb));
	o.extra[n++] = "--balance";
	o.extra[n++] = "first";
	o.extra[n++] = "--fail-timeout";
	o.extra[n++] = "1h";
	o.extra[n++] = "--metrics";
	o.extra[n++] = maddr;
	fwd_start(&f, &o);

	cr_assert_eq(id_query(AF_INET, NULL, f.port), 1, "the first upstream refuses");
	scrape(mport, &r);
	promtool_check(r.body);
	expect_upstream(r.body, "default", a.port, 1, 1, 0);
	expect_upstream(r.body, "default", b.port, 1, 0, 1);
	http_free(&r);

	srv_listen(&a);
	srv_stop(&b);
	cr_assert_eq(id_query(AF_INET, NULL, f.port), 0, "the first upstream is back");
	scrape(mport, &r);
	expect_upstream(r.body, "default", a.port, 2, 1, 1);
	expect_upstream(r.body, "default", b.port, 2, 1, 0);
	http_free(&r);
	fwd_stop(&f);
	srv_stop(&a);
}

static const char reload_before[] =
	"engine = \"@E\";\nthreads = 2;\nmetrics = \"127.0.0.1:@L3\";\n"
	"rules = {\n"
	"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"  old = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"};\n";
static const char reload_after[] =
	"engine = \"@E\";\nthreads = 2;\nmetrics = \"127.0.0.1:@L3\";\n"
	"rules = {\n"
	"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\";\n"
	"          idle_timeout = \"1h\"; };\n"
	"  new = { listen = \"127.0.0.1:@L2\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"};\n";
static const char reload_bad[] = "engine = \"@E\";\nrules = { web = { frobnicate = 1; }; };\n";

/*
 * A rule kept across a SIGHUP reload keeps counting from where it was; an
 * added rule appears at 0; a removed rule stays while its connection is
 * open, then goes; reloads and failed reloads are counted.
 */
ENGINE_TEST(metrics, counters_survive_reload, 60)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 4 };
	struct http_resp r;
	struct srv echo;
	struct fwd f;
	char s[256];
	int fd, mport;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = echo.port;
	fwd_start_conf(&f, &c, reload_before);
	mport = c.lport[3];
	echo_once(AF_INET, c.lport[0], 1, 100000);
	fd = tcp_connect(AF_INET, c.lport[1]);
	echo_roundtrip(fd, 2, 5000);
	wait_metric(mport, series1(s, sizeof(s), "sockfwd_connections_accepted_total", "web"), 1);
	/* naive's two directions are two threads: wait for each. */
	wait_metric(mport, series2(s, sizeof(s), "sockfwd_bytes_total", "web", "direction", C2U),
		    100000);
	wait_metric(mport, series2(s, sizeof(s), "sockfwd_bytes_total", "web", "direction", U2C),
		    100000);

	conf_write(&c, reload_after);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	fwd_wait_port(&f, c.lport[2], 1, RELOAD_MS);
	wait_metric(mport, "sockfwd_reloads_total", 1);
	scrape(mport, &r);
	promtool_check(r.body);
	expect_metric(r.body, "sockfwd_reload_failures_total", 0);
	expect_metric(r.body, series1(s, sizeof(s), "sockfwd_connections_accepted_total", "web"),
		      1);
	expect_metric(r.body, series2(s, sizeof(s), "sockfwd_bytes_total", "web", "direction", C2U),
		      100000);
	expect_metric(r.body, series1(s, sizeof(s), "sockfwd_connections_accepted_total", "new"),
		      0);
	/* Removed, but its connection is open: still there. */
	expect_metric(r.body, series1(s, sizeof(s), "sockfwd_connections_active", "old"), 1);
	http_free(&r);

	echo_once(AF_INET, c.lport[0], 3, 50000);
	echo_roundtrip(fd, 4, 5000);
	close(fd);
	wait_metric(mport, series1(s, sizeof(s), "sockfwd_connections_accepted_total", "old"), -1);
	wait_metric(
		mport,
		series2(s, sizeof(s), "sockfwd_connections_closed_total", "web", "reason", "eof"),
		2);
	scrape(mport, &r);
	expect_metric(r.body, series1(s, sizeof(s), "sockfwd_connections_accepted_total", "web"),
		      2);
	expect_metric(r.body, series2(s, sizeof(s), "sockfwd_bytes_total", "web", "direction", C2U),
		      150000);
	expect_metric(r.body, series2(s, sizeof(s), "sockfwd_bytes_total", "web", "direction", U2C),
		      150000);
	expect_upstream(r.body, "web", echo.port, 2, 0, 1);
	http_free(&r);

	conf_write(&c, reload_bad);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	wait_metric(mport, "sockfwd_reload_failures_total", 1);
	wait_metric(mport, "sockfwd_reloads_total", 1);
	echo_once(AF_INET, c.lport[0], 5, 1000);
	fwd_stop(&f);
	srv_stop(&echo);
	conf_remove(&c);
}

/* /health is 200 "ok"; other paths and methods 404; HEAD is GET without a body. */
Test(metrics, health_and_not_found, .timeout = 60)
{
	struct fwd_opts o = { .no_probe = 1 };
	struct http_resp r;
	char maddr[64], remote[64];
	struct srv echo;
	struct fwd f;
	int mport;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	mport = metrics_port(maddr, sizeof(maddr));
	o.remote = srv_addr(&echo, remote, sizeof(remote));
	o.extra[0] = "--metrics";
	o.extra[1] = maddr;
	fwd_start(&f, &o);

	http_req(mport, "GET", "/health", &r);
	cr_assert_eq(r.status, 200, "GET /health: %d", r.status);
	cr_assert(strncmp(r.body, "ok", 2) == 0, "GET /health body: %s", r.body);
	http_free(&r);
	http_req(mport, "GET", "/nope", &r);
	cr_assert_eq(r.status, 404, "GET /nope: %d", r.status);
	http_free(&r);
	http_req(mport, "GET", "/metrics/x", &r);
	cr_assert_eq(r.status, 404, "GET /metrics/x: %d", r.status);
	http_free(&r);
	http_req(mport, "POST", "/metrics", &r);
	cr_assert_eq(r.status, 404, "POST /metrics: %d", r.status);
	http_free(&r);
	http_req(mport, "DELETE", "/health", &r);
	cr_assert_eq(r.status, 404, "DELETE /health: %d", r.status);
	http_free(&r);
	/* Two requests on one connection (keep-alive, as Prometheus scrapes): both answered. */
	{
		static const char two[] =
			"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
			"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
		int fd = connect_retry(mport);

		send_all(fd, two, sizeof(two) - 1);
		read_all(fd, &r);
		close(fd);
		cr_assert(strncmp(r.raw, "HTTP/1.1 200", 12) == 0 &&
				  strstr(r.raw + 12, "HTTP/1.1 200") != NULL &&
				  strstr(r.raw, "sockfwd_build_info") != NULL,
			  "two requests on one connection:\n%s", r.raw);
		http_free(&r);
	}
	/* An idle forwarder: its descriptors as /proc counts them, give or take the scrape's. */
	scrape(mport, &r);
	{
		long long v = metric(r.body, "process_open_fds");
		int n = proc_fd_count(f.pid);

		cr_assert(v >= n - 1 && v <= n + 1, "process_open_fds %lld, /proc/PID/fd has %d", v,
			  n);
	}
	http_free(&r);
	http_req(mport, "HEAD", "/metrics", &r);
	cr_assert_eq(r.status, 200, "HEAD /metrics: %d", r.status);
	cr_assert_eq(r.blen, 0, "HEAD /metrics sent a body");
	http_free(&r);
	fwd_stop(&f);
	srv_stop(&echo);
}

/* Sends an endless header line until the server stops it (or 8 MiB). */
struct endless {
	int fd;
	uint64_t sent;
	int err;
	pthread_t th;
};

static void *endless_main(void *arg)
{
	struct endless *e = arg;
	static const char start[] = "GET /metrics HTTP/1.1\r\nX-Endless: ";
	char chunk[4096];
	ssize_t n;

	memset(chunk, 'a', sizeof(chunk));
	if (send(e->fd, start, sizeof(start) - 1, MSG_NOSIGNAL) < 0) {
		e->err = errno;
		return NULL;
	}
	while (e->sent < 8 * MiB) {
		n = send(e->fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n < 0) {
			e->err = errno;
			break;
		}
		e->sent += (uint64_t)n;
	}
	return NULL;
}

/*
 * One scraper connects and sends nothing; another sends a header that
 * never ends. Meanwhile forwarding works and /metrics answers another
 * client; the endless header is cut off by the server well before 8 MiB.
 */
Test(metrics, hostile_scrapers, .timeout = 60)
{
	struct fwd_opts o = { .no_probe = 1 };
	struct http_resp r;
	struct endless e = { 0 };
	char maddr[64], remote[64], buf[256];
	struct srv echo;
	struct fwd f;
	int mport, idle;
	ssize_t n;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	mport = metrics_port(maddr, sizeof(maddr));
	o.remote = srv_addr(&echo, remote, sizeof(remote));
	o.extra[0] = "--metrics";
	o.extra[1] = maddr;
	fwd_start(&f, &o);

	idle = connect_retry(mport);
	e.fd = connect_retry(mport);
	cr_assert(pthread_create(&e.th, NULL, endless_main, &e) == 0, "pthread_create");
	for (int i = 0; i < 5; i++) {
		echo_once(AF_INET, f.port, 10 + (uint64_t)i, 256 * 1024);
		scrape(mport, &r);
		cr_assert(metric(r.body, "sockfwd_connections_accepted_total{rule=\"default\"}") ==
				  i + 1,
			  "scrape %d while hostile clients are connected:\n%s", i, r.body);
		http_free(&r);
	}
	pthread_join(e.th, NULL);
	cr_assert(e.sent < 8 * MiB,
		  "the server took 8 MiB of one header line without cutting it off");
	/* What the endless client got back: an error status, or nothing before a close. */
	n = recv(e.fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		cr_assert(strncmp(buf, "HTTP/1.1 4", 10) == 0, "reply to an endless header: %s",
			  buf);
	}
	close(e.fd);
	close(idle);
	fwd_stop(&f);
	srv_stop(&echo);
}

/* --metrics on an address held without SO_REUSEPORT: exit 1 at start, naming it. */
Test(metrics, address_in_use, .timeout = 60)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);
	char listen_a[64], remote[64], maddr[64], err[4096];
	const char *argv[] = { "sockfwd", "-l", listen_a, "-r", remote, "--metrics", maddr, NULL };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), st;

	sys_assert(fd >= 0, "socket");
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sys_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0, "bind");
	sys_assert(listen(fd, 16) == 0, "listen");
	sys_assert(getsockname(fd, (struct sockaddr *)&sin, &slen) == 0, "getsockname");
	loop_addr(maddr, sizeof(maddr), AF_INET, ntohs(sin.sin_port));
	loop_addr(listen_a, sizeof(listen_a), AF_INET, pick_port(AF_INET));
	loop_addr(remote, sizeof(remote), AF_INET, free_port(AF_INET));
	st = fwd_run(argv, E2E_EXIT_MS, NULL, 0, err, sizeof(err));
	cr_assert_eq(st, 1, "exit %d, expected 1; stderr:\n%s", st, err);
	cr_assert(strstr(err, maddr) != NULL && strstr(err, "in use") != NULL,
		  "the message does not name %s and 'in use': %s", maddr, err);
	cr_assert(strchr(err, '\n') == strrchr(err, '\n'), "more than one line: %s", err);
	close(fd);
}

/* Run cmd through the shell; assert exit 0, showing its output otherwise. */
static void run_ok(const char *cmd)
{
	char out[4096] = "";
	size_t n = 0;
	FILE *p = popen(cmd, "r");
	int st;

	sys_assert(p != NULL, "popen %s", cmd);
	while (n < sizeof(out) - 1 && fgets(out + n, (int)(sizeof(out) - n), p) != NULL)
		n = strlen(out);
	st = pclose(p);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %d\n%s", cmd, st,
		  out);
}

/* The alerting rules and the scrape config that docs/operations.md shows pass promtool. */
Test(metrics, example_rules_and_config, .timeout = 60)
{
	run_ok("promtool check rules docs/examples/sockfwd-alerts.yml 2>&1");
	run_ok("promtool check config docs/examples/prometheus.yml 2>&1");
}

/*
 * A drain: /health turns 503 "draining" so a load balancer stops sending
 * clients, /metrics goes on answering with the connection still open, and
 * the process exits 0 once that connection ends.
 */
Test(metrics, health_while_draining, .timeout = 60)
{
	struct fwd_opts o = { .no_probe = 1 };
	struct http_resp r;
	char maddr[64], remote[64], s[128];
	struct srv echo;
	struct fwd f;
	int mport, fd, status = 0;

	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	mport = metrics_port(maddr, sizeof(maddr));
	o.remote = srv_addr(&echo, remote, sizeof(remote));
	o.extra[0] = "--metrics";
	o.extra[1] = maddr;
	o.extra[2] = "--drain-timeout";
	o.extra[3] = "30s";
	fwd_start(&f, &o);

	fd = tcp_connect(AF_INET, f.port);
	echo_roundtrip(fd, 7, 1000);
	http_req(mport, "GET", "/health", &r);
	cr_assert_eq(r.status, 200, "GET /health before the drain: %d", r.status);
	http_free(&r);
	sys_assert(kill(f.pid, SIGTERM) == 0, "kill SIGTERM");
	for (int i = 0; i < 500 && status != 503; i++) {
		http_req(mport, "GET", "/health", &r);
		status = r.status;
		http_free(&r);
		if (status != 503)
			sleep_ms(20);
	}
	cr_assert_eq(status, 503, "GET /health while draining: %d", status);
	wait_metric(mport, series1(s, sizeof(s), "sockfwd_connections_active", "default"), 1);
	/* The drained connection still forwards, then ends the drain. */
	echo_roundtrip(fd, 8, 1000);
	close(fd);
	cr_assert(fwd_wait(&f, 10000), "still running after its last connection ended%s",
		  fwd_note());
	cr_assert(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0, "exit status %#x", f.status);
	fwd_release(&f);
	srv_stop(&echo);
}
