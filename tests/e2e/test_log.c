/*
 * Logs of the real binary: ISO-8601 UTC times and level words in text;
 * under systemd (stderr is the stream JOURNAL_STREAM names) a "<N>"
 * priority and no time of ours; --log-format json gives one object per
 * line, checked by python3's json module, whose close line carries the
 * byte counts of a hash-checked transfer; a reload switches the format.
 */
#include "harness.h"
#include "spawn.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_MS	    10000 /* bound for a line to show */
#define XFER_LEN    (4 * MiB)
#define CLOCK_SKEW  300 /* s: a log time is the test's clock, in UTC, not local time */
#define PY_OUT	    (1 << 20)
#define STDERR_SIZE (1 << 20)

/*
 * Every line a JSON object with time (ISO-8601 UTC, ms), level, msg; in
 * journal-json mode after a "<N>" that matches the level. Prints the
 * close and stats lines' fields for the C side.
 */
static const char json_check[] =
	"import json, re, sys\n"
	"path, mode = sys.argv[1], sys.argv[2]\n"
	"TIME = re.compile(r'\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\Z')\n"
	"PRIO = {'error': 3, 'warning': 4, 'info': 6}\n"
	"n = 0\n"
	"with open(path, 'rb') as f:\n"
	"    for raw in f:\n"
	"        n += 1\n"
	"        line = raw.decode('utf-8')\n"
	"        assert line.endswith('\\n'), 'line %d: no newline: %r' % (n, line)\n"
	"        prio = None\n"
	"        if mode == 'journal-json':\n"
	"            m = re.match(r'<(\\d)>', line)\n"
	"            assert m, 'line %d: no <N> prefix: %r' % (n, line)\n"
	"            prio, line = int(m.group(1)), line[m.end():]\n"
	"        o = json.loads(line)\n"
	"        assert type(o) is dict, line\n"
	"        assert TIME.match(o['time']), 'time: ' + line\n"
	"        assert o['level'] in PRIO, 'level: ' + line\n"
	"        assert type(o['msg']) is str, 'msg: ' + line\n"
	"        assert prio is None or PRIO[o['level']] == prio, 'prefix: ' + line\n"
	"        if o['msg'] == 'close':\n"
	"            for k in ('bytes_c2u', 'bytes_u2c', 'spliced_c2u', 'spliced_u2c',\n"
	"                      'duration_ms'):\n"
	"                assert type(o[k]) is int and o[k] >= 0, k + ': ' + line\n"
	"            assert type(o['reset']) is bool, line\n"
	"            print('close', o['client'], o['upstream'], o['rule'], o['bytes_c2u'],\n"
	"                  o['bytes_u2c'], o['spliced_c2u'], o['spliced_u2c'],\n"
	"                  o['duration_ms'], o['reason'], int(o['reset']))\n"
	"        elif o['msg'] == 'stats':\n"
	"            print('stats', o['accepted'], o['closed'], o['bytes_c2u'], o['bytes_u2c'])\n"
	"        else:\n"
	"            print('line', o['level'], o['msg'])\n"
	"print('lines', n)\n";

/* SIGTERM and a clean exit 0, keeping the captured output (fwd_stop frees it). */
static void stop_keep(struct fwd *f)
{
	fwd_assert_alive(f);
	fwd_signal_wait(f, SIGTERM);
	cr_assert(WIFEXITED(f->status) && WEXITSTATUS(f->status) == 0,
		  "sockfwd after SIGTERM: %s, expected exit 0; stderr:\n%s", fwd_status_str(f),
		  fwd_stderr_tail(f));
}

/* Run json_check over f's stderr in mode; its output into out. */
static void check_json(const struct fwd *f, const char *mode, char *out, size_t len)
{
	char path[64];
	const char *args[] = { path, mode, NULL };
	int rc;

	stderr_to_file(f, path, sizeof(path));
	rc = run_python(json_check, args, out, len);
	unlink(path);
	if (rc < 0)
		cr_skip_test("python3 cannot be run: the JSON lines are not checked");
	cr_assert_eq(rc, 0, "a line is not a JSON object with time, level, msg:\n%s\nstderr:\n%s",
		     out, fwd_stderr_tail(f));
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ " at s, within CLOCK_SKEW of now in UTC. */
static int iso_time_now(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ ";
	struct tm tm;
	time_t t;

	for (size_t i = 0; i < sizeof(pat) - 1; i++) {
		if (pat[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != pat[i])
			return 0;
	}
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm);
	return llabs((long long)(t - time(NULL))) <= CLOCK_SKEW;
}

/* Lines of buf (NUL terminated) into lines[], at most max; returns the count. */
static int split_lines(char *buf, char **lines, int max)
{
	int n = 0;

	for (char *p = buf; *p != '\0' && n < max;) {
		char *nl = strchr(p, '\n');

		lines[n++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

/*
 * --log-format json -v: every line is a JSON object, and the close line
 * of a 4 MiB echo (checked by hash) gives the rule, client, upstream,
 * the bytes each way, the spliced bytes (only the splice engine has
 * any), a duration and reason eof; the exit stats line counts them too.
 */
ENGINE_TEST(log, json_close_line, 60)
{
	static char out[PY_OUT];
	char needle[64], upstream[64], want[256], *line;
	char client[64], ups[64], rule[64], reason[32];
	unsigned long long c2u, u2c, sc2u, su2c, dur, acc, closed, tc2u, tu2c;
	int reset, port;
	struct fwd_opts o = { .engine = engine };
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, upstream, sizeof(upstream));
	o.extra[0] = "-v";
	o.extra[1] = "--log-format";
	o.extra[2] = "json";
	fwd_start(&f, &o);
	port = echo_bulk_port(f.port, 31, XFER_LEN);
	snprintf(needle, sizeof(needle), "\"client\":\"127.0.0.1:%d\"", port);
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, "\"msg\":\"close\""),
		  "no JSON close line with %s; stderr:\n%s", needle, fwd_stderr_tail(&f));
	stop_keep(&f);
	check_json(&f, "json", out, sizeof(out));

	snprintf(want, sizeof(want), "close 127.0.0.1:%d ", port);
	line = strstr(out, want);
	cr_assert(line != NULL, "no close line for client port %d:\n%s", port, out);
	cr_assert_eq(sscanf(line, "close %63s %63s %63s %llu %llu %llu %llu %llu %31s %d", client,
			    ups, rule, &c2u, &u2c, &sc2u, &su2c, &dur, reason, &reset),
		     10, "close fields: %.300s", line);
	cr_assert_str_eq(ups, upstream, "upstream");
	cr_assert_str_eq(rule, "default", "rule");
	cr_assert(c2u == XFER_LEN && u2c == XFER_LEN,
		  "bytes_c2u %llu, bytes_u2c %llu: the echo moved %llu each way", c2u, u2c,
		  (unsigned long long)XFER_LEN);
	cr_assert_str_eq(reason, "eof", "reason");
	cr_assert_eq(reset, 0, "a clean end is no reset");
	if (strcmp(engine, "splice") == 0)
		cr_assert(sc2u > 0 && su2c > 0 && sc2u <= c2u && su2c <= u2c,
			  "splice: spliced %llu/%llu of %llu/%llu", sc2u, su2c, c2u, u2c);
	else
		cr_assert(sc2u == 0 && su2c == 0, "%s claims %llu/%llu spliced bytes", engine, sc2u,
			  su2c);
	line = strstr(out, "stats ");
	cr_assert(line != NULL, "no JSON stats line:\n%s", out);
	cr_assert_eq(sscanf(line, "stats %llu %llu %llu %llu", &acc, &closed, &tc2u, &tu2c), 4);
	cr_assert(acc >= 1 && closed == acc && tc2u >= XFER_LEN && tu2c >= XFER_LEN,
		  "stats: accepted %llu closed %llu bytes %llu/%llu", acc, closed, tc2u, tu2c);
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * Text, stderr not the journal's stream (JOURNAL_STREAM names another
 * file, as for a child of a service whose stderr was redirected): every
 * line starts with an ISO-8601 UTC time with milliseconds and "sockfwd: ";
 * a warning says so, the close line keeps its text form.
 */
Test(log, text_lines_have_iso_times, .timeout = 60)
{
	struct fwd_opts o = { .engine = "epoll" };
	static char err[STDERR_SIZE];
	char upstream[64], needle[64], other[64], *lines[4096];
	int n, port, warned = 0, closed = 0;
	struct stat st;
	struct srv s;
	struct fwd f;

	sys_assert(stat("/dev/null", &st) == 0, "stat /dev/null");
	snprintf(other, sizeof(other), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	sys_assert(setenv("JOURNAL_STREAM", other, 1) == 0, "setenv");
	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	o.remote = srv_addr(&s, upstream, sizeof(upstream));
	o.extra[0] = "-v";
	fwd_start(&f, &o);
	port = echo_bulk_port(f.port, 32, 64 * KiB);
	snprintf(needle, sizeof(needle), "close 127.0.0.1:%d", port);
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, NULL), "no close line; stderr:\n%s",
		  fwd_stderr_tail(&f));
	/* SIGHUP without -c: a warning. */
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, LOG_MS, "SIGHUP", NULL), "no warning for SIGHUP; stderr:\n%s",
		  fwd_stderr_tail(&f));
	stop_keep(&f);
	fwd_stderr(&f, err, sizeof(err));
	n = split_lines(err, lines, 4096);
	cr_assert(n >= 4, "%d lines:\n%s", n, fwd_stderr_tail(&f));
	for (int i = 0; i < n; i++) {
		cr_assert(iso_time_now(lines[i]),
			  "line %d does not start with an ISO-8601 UTC time of now: %s", i,
			  lines[i]);
		cr_assert(strncmp(lines[i] + 25, "sockfwd: ", 9) == 0, "line %d: %s", i, lines[i]);
		if (strstr(lines[i], "SIGHUP") != NULL) {
			cr_assert(strncmp(lines[i] + 34, "warning: SIGHUP", 15) == 0,
				  "no level word: %s", lines[i]);
			warned = 1;
		}
		if (strstr(lines[i], needle) != NULL) {
			cr_assert(strstr(lines[i], " rule=default c2u=65536 u2c=65536 ") != NULL &&
					  strstr(lines[i], upstream) != NULL &&
					  strstr(lines[i], "reason=eof") != NULL,
				  "close line: %s", lines[i]);
			closed = 1;
		}
	}
	cr_assert(warned && closed, "warning %d, close line %d", warned, closed);
	fwd_release(&f);
	srv_stop(&s);
}

/* Start sockfwd -l 127.0.0.1:PORT -r upstream extra... with stderr as the journal stream. */
static void start_journal(struct fwd *f, const char *upstream, const char *const *extra)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		const char *argv[16] = { "sockfwd", "-b", "epoll", "-r", upstream, "-l" };
		struct spawn_opts so = { .journal = 1 };
		char listen[64];
		int n = 6, port = pick_port(AF_INET);

		snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
		argv[n++] = listen;
		for (int i = 0; extra[i] != NULL && n < 15; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		fwd_spawn_opts(f, argv, &so);
		f->family = AF_INET;
		f->port = port;
		if (fwd_wait_listening(f, &port, 1, LOG_MS))
			return;
		fwd_release(f);
	}
	cr_assert_fail("address in use on 10 ports");
}

/*
 * Under systemd: JOURNAL_STREAM is stderr's "DEV:INODE". Every line
 * starts with a "<N>" priority journald reads (3 error, 4 warning, 6
 * info) and has no time and no "sockfwd: " of its own.
 */
Test(log, journal_stream_gives_priorities_no_times, .timeout = 60)
{
	const char *extra[] = { "-v", NULL };
	static char err[STDERR_SIZE];
	char upstream[64], needle[64], *lines[4096];
	int n, port, warned = 0, closed = 0, stats = 0;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_journal(&f, srv_addr(&s, upstream, sizeof(upstream)), extra);
	port = echo_bulk_port(f.port, 33, 64 * KiB);
	snprintf(needle, sizeof(needle), "close 127.0.0.1:%d", port);
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, NULL), "no close line; stderr:\n%s",
		  fwd_stderr_tail(&f));
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, LOG_MS, "SIGHUP", NULL), "no warning for SIGHUP; stderr:\n%s",
		  fwd_stderr_tail(&f));
	stop_keep(&f);
	fwd_stderr(&f, err, sizeof(err));
	n = split_lines(err, lines, 4096);
	cr_assert(n >= 4, "%d lines:\n%s", n, fwd_stderr_tail(&f));
	for (int i = 0; i < n; i++) {
		const char *l = lines[i];

		cr_assert(l[0] == '<' && (l[1] == '3' || l[1] == '4' || l[1] == '6') && l[2] == '>',
			  "line %d has no <N> priority: %s", i, l);
		cr_assert(l[3] < '0' || l[3] > '9', "line %d has a time of its own: %s", i, l);
		cr_assert(strncmp(l + 3, "sockfwd: ", 9) != 0, "line %d names sockfwd: %s", i, l);
		if (strstr(l, "SIGHUP") != NULL) {
			cr_assert(strncmp(l, "<4>warning: SIGHUP", 18) == 0, "warning: %s", l);
			warned = 1;
		}
		if (strstr(l, needle) != NULL) {
			cr_assert(strncmp(l, "<6>close ", 9) == 0, "close line: %s", l);
			closed = 1;
		}
		stats |= strncmp(l, "<6>stats: accepted=", 19) == 0;
	}
	cr_assert(warned && closed && stats, "warning %d, close line %d, stats %d", warned, closed,
		  stats);
	fwd_release(&f);
	srv_stop(&s);
}

/* JSON under systemd: "<N>" then the object (journald strips the prefix). */
Test(log, journal_stream_json, .timeout = 60)
{
	const char *extra[] = { "-v", "--log-format", "json", NULL };
	static char out[PY_OUT];
	char upstream[64], needle[160];
	int port;
	struct srv s;
	struct fwd f;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	start_journal(&f, srv_addr(&s, upstream, sizeof(upstream)), extra);
	port = echo_bulk_port(f.port, 34, 64 * KiB);
	snprintf(needle, sizeof(needle), "\"client\":\"127.0.0.1:%d\"", port);
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, NULL), "no close line; stderr:\n%s",
		  fwd_stderr_tail(&f));
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, LOG_MS, "<4>{", "SIGHUP"), "no <4> JSON warning; stderr:\n%s",
		  fwd_stderr_tail(&f));
	stop_keep(&f);
	check_json(&f, "journal-json", out, sizeof(out));
	snprintf(needle, sizeof(needle), "close 127.0.0.1:%d %s default 65536 65536 ", port,
		 upstream);
	cr_assert(strstr(out, needle) != NULL, "no close line \"%s\" in:\n%s", needle, out);
	fwd_release(&f);
	srv_stop(&s);
}

/*
 * A reload takes log_format from the file: text before, JSON after (the
 * "reloaded" line already), with the close line's fields.
 */
ENGINE_TEST(log, reload_switches_format, 60)
{
	static const char text[] = "engine = \"@E\";\nthreads = 1;\nlog_level = \"verbose\";\n"
				   "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; }; };\n";
	static const char json[] = "engine = \"@E\";\nthreads = 1;\nlog_level = \"verbose\";\n"
				   "log_format = \"json\";\n"
				   "rules = { web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; }; };\n";
	struct fwd_conf c = { .engine = engine, .nlisten = 1 };
	char needle[64];
	struct srv s;
	struct fwd f;
	int port;

	srv_start(&s, AF_INET, SRV_ECHO, 0, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, text);
	port = echo_bulk_port(f.port, 35, 256 * KiB);
	snprintf(needle, sizeof(needle), "close 127.0.0.1:%d", port);
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, "c2u=262144 u2c=262144"),
		  "no text close line; stderr:\n%s", fwd_stderr_tail(&f));

	conf_write(&c, json);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, LOG_MS, "{\"time\":\"", "\"msg\":\"reloaded "),
		  "no JSON line after the reload; stderr:\n%s", fwd_stderr_tail(&f));
	port = echo_bulk_port(f.port, 36, 128 * KiB);
	snprintf(needle, sizeof(needle), "\"client\":\"127.0.0.1:%d\"", port);
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, "\"bytes_c2u\":131072,\"bytes_u2c\":131072"),
		  "no JSON close line with the byte counts; stderr:\n%s", fwd_stderr_tail(&f));
	cr_assert(fwd_log_wait(&f, LOG_MS, needle, "\"rule\":\"web\""), "rule; stderr:\n%s",
		  fwd_stderr_tail(&f));
	fwd_stop(&f);
	fwd_release(&f);
	srv_stop(&s);
	conf_remove(&c);
}
