/*
 * Command line parsing. Usage errors come back as -EINVAL with one line
 * naming the problem; main prints it and exits 2.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/config_priv.h"
#include "sockfwd/config.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/options.h"

enum {
	OPT_BUFFER_SIZE = 256,
	OPT_PIPE_SIZE,
	OPT_BALANCE,
	OPT_MAX_FAILS,
	OPT_FAIL_TIMEOUT,
	OPT_CONNECT_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_NO_KEEPALIVE,
	OPT_MAX_CONNS,
	OPT_ALLOW,
	OPT_DENY,
	OPT_PROXY_PROTOCOL,
	OPT_ACCEPT_PROXY,
	OPT_METRICS,
	OPT_USER,
	OPT_DRAIN_TIMEOUT,
	OPT_LOG_FORMAT,
	OPT_UDP_TIMEOUT,
	OPT_MAX_SESSIONS,
	OPT_MEET,
	OPT_BRIDGE,
	OPT_MEET_TIMEOUT,
	OPT_PAIRS,
	OPT_SNDBUF,
	OPT_RCVBUF,
};

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "remote", required_argument, NULL, 'r' },
	{ "config", required_argument, NULL, 'c' },
	{ "check", no_argument, NULL, 't' },
	{ "backend", required_argument, NULL, 'b' },
	{ "threads", required_argument, NULL, 'j' },
	{ "buffer-size", required_argument, NULL, OPT_BUFFER_SIZE },
	{ "pipe-size", required_argument, NULL, OPT_PIPE_SIZE },
	{ "balance", required_argument, NULL, OPT_BALANCE },
	{ "max-fails", required_argument, NULL, OPT_MAX_FAILS },
	{ "fail-timeout", required_argument, NULL, OPT_FAIL_TIMEOUT },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "no-keepalive", no_argument, NULL, OPT_NO_KEEPALIVE },
	{ "max-conns", required_argument, NULL, OPT_MAX_CONNS },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "deny", required_argument, NULL, OPT_DENY },
	{ "proxy-protocol", required_argument, NULL, OPT_PROXY_PROTOCOL },
	{ "accept-proxy", no_argument, NULL, OPT_ACCEPT_PROXY },
	{ "sndbuf", required_argument, NULL, OPT_SNDBUF },
	{ "rcvbuf", required_argument, NULL, OPT_RCVBUF },
	{ "metrics", required_argument, NULL, OPT_METRICS },
	{ "user", required_argument, NULL, OPT_USER },
	{ "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
	{ "log-format", required_argument, NULL, OPT_LOG_FORMAT },
	{ "udp", no_argument, NULL, 'u' },
	{ "udp-timeout", required_argument, NULL, OPT_UDP_TIMEOUT },
	{ "max-sessions", required_argument, NULL, OPT_MAX_SESSIONS },
	{ "meet", no_argument, NULL, OPT_MEET },
	{ "bridge", no_argument, NULL, OPT_BRIDGE },
	{ "meet-timeout", required_argument, NULL, OPT_MEET_TIMEOUT },
	{ "pairs", required_argument, NULL, OPT_PAIRS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

const char *sf_usage(void)
{
	return "usage: sockfwd [OPTIONS] -l LISTEN [-l LISTEN]... -r REMOTE [-r REMOTE]...\n"
	       "       sockfwd [OPTIONS] -c FILE [-t]\n"
	       "       sockfwd [OPTIONS] --meet -l A -l B [--meet-timeout DUR]\n"
	       "       sockfwd [OPTIONS] --bridge -r A -r B [--pairs N]\n"
	       "Forward every TCP connection accepted on LISTEN to an upstream of the\n"
	       "REMOTE pool, or run every rule of a config file.\n"
	       "\n"
	       "  -l, --listen ADDR            host:port, [v6addr]:port or :port (all\n"
	       "                               addresses); the port may be a range\n"
	       "                               first-last; repeat for more addresses\n"
	       "  -r, --remote ADDR[,OPT]...   upstream for each client; repeat for a pool,\n"
	       "                               in order. OPT: weight=N (1-256), backup.\n"
	       "                               Host names are resolved at start and each\n"
	       "                               address is tried in turn\n"
	       "  -c, --config FILE            run the rules of FILE (docs/config.md);\n"
	       "                               not with -l or -r\n"
	       "  -t, --check                  with -c: check FILE, exit 0 or 2\n"
	       "  -b, --backend NAME           engine: naive | epoll | splice (default)"
#ifdef SF_HAVE_URING
	       " | uring"
#endif
	       "\n"
	       "  -j, --threads N              worker threads, each with its own SO_REUSEPORT\n"
	       "                               listener (default: online CPUs)\n"
	       "      --buffer-size N          userspace buffer per direction, naive and\n"
	       "                               epoll (default 64k); also uring's buffer size\n"
	       "      --pipe-size N            pipe capacity for splice (default 256k)\n"
	       "      --balance MODE           roundrobin (default) | leastconn | source |\n"
	       "                               first\n"
	       "      --max-fails N            failed connects in a row that mark an\n"
	       "                               upstream down (default 1; 0: never)\n"
	       "      --fail-timeout DUR       how long it stays down (default 10s)\n"
	       "      --connect-timeout DUR    upstream connect deadline (default 10s)\n"
	       "      --idle-timeout DUR       close a connection idle that long both ways\n"
	       "                               (default 0: never)\n"
	       "      --no-keepalive           no TCP keepalive probes (default: on)\n"
	       "      --max-conns N            active connections per rule (default 0: no\n"
	       "                               limit)\n"
	       "      --allow CIDR             serve only matching clients; repeatable\n"
	       "      --deny CIDR              refuse matching clients, even allowed ones;\n"
	       "                               repeatable\n"
	       "      --proxy-protocol VER     send a PROXY header upstream: v1 | v2\n"
	       "      --accept-proxy           clients send a PROXY v1 or v2 header first\n"
	       "      --sndbuf N               SO_SNDBUF of TCP sockets, both sides\n"
	       "                               (default 0: the kernel's autotuning)\n"
	       "      --rcvbuf N               SO_RCVBUF, the same way\n"
	       "      --metrics ADDR           serve Prometheus /metrics and /health over\n"
	       "                               HTTP at ADDR (host:port; keep it on loopback\n"
	       "                               or a management network)\n"
	       "      --user USER[:GROUP]      once listening, drop to USER's uid, gid and\n"
	       "                               groups (GROUP: another primary group)\n"
	       "      --drain-timeout DUR      at SIGTERM stop accepting and let connections\n"
	       "                               finish for up to DUR, then reset the rest\n"
	       "                               (default 0: reset at once)\n"
	       "      --log-format FMT         text (default) | json: one object per line\n"
	       "  -u, --udp                    forward UDP datagrams instead of TCP: a\n"
	       "                               session per client address and port\n"
	       "      --udp-timeout DUR        end a UDP session after DUR without a\n"
	       "                               datagram either way (default 60s)\n"
	       "      --max-sessions N         UDP sessions per rule; the least recently\n"
	       "                               used is evicted when full (default 65536)\n"
	       "      --meet                   join a client of the first -l with one of the\n"
	       "                               second, first come first served (no -r)\n"
	       "      --meet-timeout DUR       with --meet: close a client left waiting that\n"
	       "                               long for its partner (default 0: never)\n"
	       "      --bridge                 connect to both -r and join them; connect\n"
	       "                               again when the pair ends, backing off from\n"
	       "                               100ms to 30s while either fails (no -l)\n"
	       "      --pairs N                with --bridge: pairs kept (default 1)\n"
	       "  -v, --verbose                one line per connection close: peers, bytes\n"
	       "                               each way, duration, reason\n"
	       "  -q, --quiet                  errors only\n"
	       "  -h, --help                   this text\n"
	       "  -V, --version                version and the engines compiled in\n"
	       "\n"
	       "With -c, -b -j -v -q and the sizes override the file's globals, and the\n"
	       "policy flags (--balance to --accept-proxy, --udp-timeout and\n"
	       "--max-sessions) its defaults. Sizes take k, m\n"
	       "or g suffixes (64k, 1m); durations ms, s, m or h (250ms, 5m; a bare\n"
	       "number is seconds). Exit status: 0 after SIGINT or SIGTERM, 1 on a\n"
	       "runtime failure, 2 on a usage or config error.\n";
}

char *sf_version_string(char *buf, size_t len)
{
	char names[128], unames[128];

	/* "(engines: ...)" last and whole: scripts read the engine list from it. */
	snprintf(buf, len, "sockfwd %s (udp: %s) (engines: %s)", SF_VERSION,
		 sf_engine_udp_names(unames, sizeof(unames), " "),
		 sf_engine_names(names, sizeof(names), " "));
	return buf;
}

int sf_parse_size(const char *s, size_t *out)
{
	unsigned long long v = 0, mult = 1;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		v = v * 10 + digit;
	}
	switch (*p) {
	case 'k':
	case 'K':
		mult = 1ull << 10;
		p++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		p++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		p++;
		break;
	}
	if (mult > 1 && (strcasecmp(p, "b") == 0 || strcasecmp(p, "ib") == 0))
		p += strlen(p);
	if (*p != '\0')
		return -EINVAL;
	if (v > SIZE_MAX / mult)
		return -ERANGE;
	*out = (size_t)(v * mult);
	return 0;
}

/* Parse a size option and check its bounds; -EINVAL with a message. */
static int opt_size(const char *name, const char *arg, size_t min, size_t max, size_t *out,
		    char *err, size_t errlen)
{
	int rc = sf_parse_size(arg, out);

	if (rc == -ERANGE || (rc == 0 && (*out < min || *out > max))) {
		snprintf(err, errlen, "%s %s: size out of range (%zu to %zu bytes)", name, arg, min,
			 max);
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s %s: malformed size (expected digits with k, m or g)",
			 name, arg);
		return -EINVAL;
	}
	return 0;
}

/* Parse -j N; -EINVAL with a message. */
static int opt_threads(const char *arg, unsigned *out, char *err, size_t errlen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (*arg < '0' || *arg > '9' || *end != '\0' || errno != 0) {
		snprintf(err, errlen, "-j %s: threads must be a number", arg);
		return -EINVAL;
	}
	if (v < 1 || v > (long)SF_MAX_THREADS) {
		snprintf(err, errlen, "-j %s: threads out of range (1 to %u)", arg, SF_MAX_THREADS);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

/* Name the option getopt rejected, from argv, for the error message. */
static void bad_option(int argc, char **argv, int c, char *err, size_t errlen)
{
	const char *arg = (optind - 1 < argc && optind > 0) ? argv[optind - 1] : "?";

	if (c == ':')
		snprintf(err, errlen, "option '%s' needs an argument", arg);
	else if (optopt != 0 && strncmp(arg, "--", 2) != 0)
		snprintf(err, errlen, "unknown option '-%c' (see --help)", optopt);
	else
		snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
}

/* Parse a count from min to max for option name; -EINVAL with a message. */
static int opt_uint(const char *name, const char *arg, unsigned min, unsigned max, unsigned *out,
		    char *err, size_t errlen)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (*arg < '0' || *arg > '9' || *end != '\0' || errno != 0 || v > UINT_MAX) {
		snprintf(err, errlen, "%s %s: expected a number", name, arg);
		return -EINVAL;
	}
	if (v < min || v > max) {
		snprintf(err, errlen, "%s %s: out of range (%u to %u)", name, arg, min, max);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

/* Parse a duration for option name, > 0 with positive; -EINVAL with a message. */
static int opt_duration(const char *name, const char *arg, int positive, uint64_t *ms, char *err,
			size_t errlen)
{
	int rc = sf_parse_duration(arg, ms);

	if (rc == -ERANGE) {
		snprintf(err, errlen, "%s %s: duration longer than a year", name, arg);
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(err, errlen,
			 "%s %s: malformed duration (expected 250ms, 10s, 5m, 1h or seconds)", name,
			 arg);
		return -EINVAL;
	}
	if (positive && *ms == 0) {
		snprintf(err, errlen, "%s %s: must be greater than 0", name, arg);
		return -EINVAL;
	}
	return 0;
}

static void config_defaults(struct sf_config *cfg)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	memset(cfg, 0, sizeof(*cfg));
	cfg->engine = sf_engine_default();
	cfg->threads = ncpu > 0 ? (unsigned)(ncpu > SF_MAX_THREADS ? SF_MAX_THREADS : ncpu) : 1;
	cfg->buffer_size = SF_DEFAULT_BUFFER_SIZE;
	cfg->pipe_size = SF_DEFAULT_PIPE_SIZE;
	cfg->loglevel = SF_LOG_NORMAL;
}

/* What -l and -r gathered, until they become the rule "default". */
struct cli_rule {
	struct sf_listen_conf *listen;
	size_t nlisten;
	struct sf_upstream_conf *ups;
	size_t nups;
	int mode;     /* --meet, --bridge: enum sf_mode */
	unsigned opt; /* CLI_* given */
};

/* Meet and bridge flags seen, for the combinations that are usage errors. */
enum { CLI_MEET = 1u << 0, CLI_BRIDGE = 1u << 1, CLI_MEET_TIMEOUT = 1u << 2, CLI_PAIRS = 1u << 3 };

/* Parse -l or -r into cr; -EINVAL with a message. */
static int opt_addr(int c, const char *arg, struct cli_rule *cr, char *err, size_t errlen)
{
	struct sf_listen_conf l;
	struct sf_upstream_conf u;
	char aerr[384];
	int rc;

	if (c == 'l') {
		if (sf_listen_parse(arg, &l, aerr, sizeof(aerr)) < 0)
			goto bad;
		rc = sf_array_push(&cr->listen, &cr->nlisten, sizeof(l), &l);
	} else {
		if (cr->nups == SF_POOL_MAX) {
			snprintf(err, errlen, "-r %s: more than %d upstreams", arg, SF_POOL_MAX);
			return -EINVAL;
		}
		if (sf_upstream_parse(arg, &u, aerr, sizeof(aerr)) < 0)
			goto bad;
		rc = sf_array_push(&cr->ups, &cr->nups, sizeof(u), &u);
	}
	if (rc < 0)
		snprintf(err, errlen, "-%c %s: out of memory", c, arg);
	return rc < 0 ? -EINVAL : 0;
bad:
	snprintf(err, errlen, "-%c: %s", c, aerr);
	return -EINVAL;
}

/* --sndbuf or --rcvbuf into d: 0, or SF_MIN_SOCKBUF to SF_MAX_SOCKBUF. */
static int opt_sockbuf(int c, const char *arg, struct sf_policy *d, char *err, size_t errlen)
{
	const char *name = c == OPT_SNDBUF ? "--sndbuf" : "--rcvbuf";
	size_t z = 0;
	int rc = sf_parse_size(arg, &z);

	if (rc == -ERANGE || (rc == 0 && z > 0 && (z < SF_MIN_SOCKBUF || z > SF_MAX_SOCKBUF))) {
		snprintf(err, errlen, "%s %s: size out of range (0, or %u to %u bytes)", name, arg,
			 SF_MIN_SOCKBUF, SF_MAX_SOCKBUF);
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s %s: malformed size (expected digits with k, m or g)",
			 name, arg);
		return -EINVAL;
	}
	*(c == OPT_SNDBUF ? &d->bufs.snd : &d->bufs.rcv) = (uint32_t)z;
	d->set |= c == OPT_SNDBUF ? SF_P_SNDBUF : SF_P_RCVBUF;
	return 0;
}

/* A policy flag into d, setting its bit; -EINVAL with a message. */
static int opt_policy(int c, const char *arg, struct sf_policy *d, char *err, size_t errlen)
{
	char aerr[256];
	int v;

	switch (c) {
	case OPT_BALANCE:
		v = sf_balance_parse(arg);
		if (v < 0) {
			snprintf(err, errlen,
				 "--balance %s: unknown mode (expected roundrobin, leastconn, "
				 "source or first)",
				 arg);
			return -EINVAL;
		}
		d->balance = v;
		d->set |= SF_P_BALANCE;
		return 0;
	case OPT_MAX_FAILS:
		d->set |= SF_P_MAX_FAILS;
		return opt_uint("--max-fails", arg, 0, INT_MAX, &d->max_fails, err, errlen);
	case OPT_FAIL_TIMEOUT:
		d->set |= SF_P_FAIL_TIMEOUT;
		return opt_duration("--fail-timeout", arg, 0, &d->fail_timeout_ms, err, errlen);
	case OPT_CONNECT_TIMEOUT:
		d->set |= SF_P_CONNECT_TIMEOUT;
		return opt_duration("--connect-timeout", arg, 1, &d->connect_timeout_ms, err,
				    errlen);
	case OPT_IDLE_TIMEOUT:
		d->set |= SF_P_IDLE_TIMEOUT;
		return opt_duration("--idle-timeout", arg, 0, &d->idle_timeout_ms, err, errlen);
	case OPT_NO_KEEPALIVE:
		d->keepalive = 0;
		d->set |= SF_P_KEEPALIVE;
		return 0;
	case OPT_MAX_CONNS:
		d->set |= SF_P_MAX_CONNS;
		return opt_uint("--max-conns", arg, 0, INT_MAX, &d->max_conns, err, errlen);
	case OPT_ALLOW:
	case OPT_DENY:
		d->set |= c == OPT_DENY ? SF_P_DENY : SF_P_ALLOW;
		if (sf_policy_add_cidr(d, c == OPT_DENY, arg, aerr, sizeof(aerr)) < 0) {
			snprintf(err, errlen, "--%s: %s", c == OPT_DENY ? "deny" : "allow", aerr);
			return -EINVAL;
		}
		return 0;
	case OPT_PROXY_PROTOCOL:
		v = sf_pp_parse(arg);
		if (v < 0) {
			snprintf(err, errlen,
				 "--proxy-protocol %s: unknown version (expected v1 or v2)", arg);
			return -EINVAL;
		}
		d->proxy_protocol = v;
		d->set |= SF_P_PROXY_PROTOCOL;
		return 0;
	case OPT_SNDBUF:
	case OPT_RCVBUF:
		return opt_sockbuf(c, arg, d, err, errlen);
	case OPT_ACCEPT_PROXY:
		d->accept_proxy = 1;
		d->set |= SF_P_ACCEPT_PROXY;
		return 0;
	case OPT_UDP_TIMEOUT:
		d->set |= SF_P_UDP_TIMEOUT;
		return opt_duration("--udp-timeout", arg, 1, &d->udp_timeout_ms, err, errlen);
	case OPT_MAX_SESSIONS:
		d->set |= SF_P_MAX_SESSIONS;
		return opt_uint("--max-sessions", arg, 1, SF_MAX_SESSIONS_MAX, &d->max_sessions,
				err, errlen);
	}
	return -EINVAL;
}

/* --meet, --bridge, --meet-timeout, --pairs; -EINVAL with a message. */
static int opt_pair(int c, const char *arg, struct cli_rule *cr, struct sf_policy *d, char *err,
		    size_t errlen)
{
	switch (c) {
	case OPT_MEET:
		cr->opt |= CLI_MEET;
		cr->mode = SF_MODE_MEET;
		return 0;
	case OPT_BRIDGE:
		cr->opt |= CLI_BRIDGE;
		cr->mode = SF_MODE_BRIDGE;
		return 0;
	case OPT_MEET_TIMEOUT:
		cr->opt |= CLI_MEET_TIMEOUT;
		d->set |= SF_P_MEET_TIMEOUT;
		return opt_duration("--meet-timeout", arg, 0, &d->meet_timeout_ms, err, errlen);
	case OPT_PAIRS:
		cr->opt |= CLI_PAIRS;
		d->set |= SF_P_PAIRS;
		return opt_uint("--pairs", arg, 1, SF_PAIRS_MAX, &d->pairs, err, errlen);
	}
	return -EINVAL;
}

/*
 * --meet, --bridge and their settings: the combinations that are usage
 * errors. 0 or -EINVAL with a message.
 */
static int pair_options_check(const struct sf_config *cfg, const struct cli_rule *cr, char *err,
			      size_t errlen)
{
	const struct sf_policy *d = &cfg->defaults;
	size_t i;

	if ((cr->opt & CLI_MEET) && (cr->opt & CLI_BRIDGE)) {
		snprintf(err, errlen, "--meet and --bridge exclude each other");
		return -EINVAL;
	}
	if (cfg->file != NULL && (cr->opt & (CLI_MEET | CLI_BRIDGE))) {
		snprintf(err, errlen,
			 "-c cannot be combined with --%s (use mode = \"%s\" in a rule)",
			 cr->mode == SF_MODE_MEET ? "meet" : "bridge", sf_mode_name(cr->mode));
		return -EINVAL;
	}
	if (cfg->file != NULL)
		return 0; /* --meet-timeout and --pairs are then the file's defaults */
	if ((cr->opt & CLI_MEET_TIMEOUT) && cr->mode != SF_MODE_MEET) {
		snprintf(err, errlen, "--meet-timeout needs --meet");
		return -EINVAL;
	}
	if ((cr->opt & CLI_PAIRS) && cr->mode != SF_MODE_BRIDGE) {
		snprintf(err, errlen, "--pairs needs --bridge");
		return -EINVAL;
	}
	if (cr->mode == SF_MODE_FORWARD)
		return 0;
	if (d->accept_proxy || d->proxy_protocol != SF_PP_NONE) {
		snprintf(err, errlen, "--%s takes no --accept-proxy or --proxy-protocol",
			 sf_mode_name(cr->mode));
		return -EINVAL;
	}
	if (cr->mode == SF_MODE_MEET) {
		if (cr->nups > 0 || cr->nlisten != 2) {
			snprintf(err, errlen,
				 "--meet needs exactly two -l addresses and no -r (got %zu -l, "
				 "%zu -r)",
				 cr->nlisten, cr->nups);
			return -EINVAL;
		}
		for (i = 0; i < cr->nlisten; i++) {
			if (cr->listen[i].port_last != cr->listen[i].hp.port) {
				snprintf(err, errlen, "--meet: -l %s:%u-%u: no port ranges in meet",
					 cr->listen[i].hp.host, cr->listen[i].hp.port,
					 cr->listen[i].port_last);
				return -EINVAL;
			}
		}
		return 0;
	}
	if (cr->nlisten > 0 || cr->nups != 2) {
		snprintf(err, errlen,
			 "--bridge needs exactly two -r addresses and no -l (got %zu -r, %zu -l)",
			 cr->nups, cr->nlisten);
		return -EINVAL;
	}
	for (i = 0; i < cr->nups; i++) {
		if (cr->ups[i].port_last != cr->ups[i].hp.port || cr->ups[i].backup ||
		    cr->ups[i].weight != 1) {
			snprintf(err, errlen,
				 "--bridge: -r %s:%u: plain host:port only (no port range, weight "
				 "or backup)",
				 cr->ups[i].hp.host, cr->ups[i].hp.port);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * After the flags: the combinations that are usage errors, then the one
 * rule of the command line. 0 or -EINVAL with a message; on success the
 * arrays of cr belong to cfg.
 */
static int options_finish(struct sf_config *cfg, struct cli_rule *cr, char *err, size_t errlen)
{
	struct sf_rule_conf *r;
	int rc;

	if (cfg->file != NULL && cfg->udp) {
		snprintf(err, errlen,
			 "-u cannot be combined with -c (set protocol = \"udp\" in a rule of the "
			 "file)");
		return -EINVAL;
	}
	if ((rc = pair_options_check(cfg, cr, err, errlen)) < 0)
		return rc;
	if (cfg->file != NULL) {
		if (cr->nlisten > 0 || cr->nups > 0) {
			snprintf(err, errlen,
				 "-c cannot be combined with -l/-r (the file lists "
				 "the rules)");
			return -EINVAL;
		}
		return 0;
	}
	if (cfg->check) {
		snprintf(err, errlen, "-t/--check needs -c FILE (it checks a config file)");
		return -EINVAL;
	}
	if (cr->mode == SF_MODE_FORWARD && (cr->nlisten == 0 || cr->nups == 0)) {
		snprintf(err, errlen, "missing %s (usage: sockfwd [OPTIONS] -l LISTEN -r REMOTE)",
			 cr->nlisten == 0 ? "-l/--listen ADDR" : "-r/--remote ADDR");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EINVAL;
	}
	snprintf(r->name, sizeof(r->name), "%s", SF_DEFAULT_RULE);
	r->listen = cr->listen;
	r->nlisten = cr->nlisten;
	r->ups = cr->ups;
	r->nups = cr->nups;
	r->proto = cfg->udp ? SF_PROTO_UDP : SF_PROTO_TCP;
	r->mode = cr->mode;
	cfg->rules = r;
	cfg->nrules = 1;
	return 0;
}

int sf_options_parse(int argc, char **argv, struct sf_config *cfg, char *err, size_t errlen)
{
	struct cli_rule cr = { NULL, 0, NULL, 0, SF_MODE_FORWARD, 0 };
	int c, rc = SF_OPT_RUN, verbose = 0, quiet = 0;
	char aerr[256];

	config_defaults(cfg);
	optind = 0; /* full reset, so the parser can run more than once */
	opterr = 0;
	while (rc == SF_OPT_RUN &&
	       (c = getopt_long(argc, argv, ":l:r:c:tb:j:uvqhV", long_opts, NULL)) != -1) {
		switch (c) {
		case 'l':
		case 'r':
			rc = opt_addr(c, optarg, &cr, err, errlen);
			break;
		case 'c':
			if (cfg->file != NULL) {
				snprintf(err, errlen, "-c %s: only one config file", optarg);
				rc = -EINVAL;
			} else if ((cfg->file = strdup(optarg)) == NULL) {
				snprintf(err, errlen, "-c: out of memory");
				rc = -EINVAL;
			}
			break;
		case 't':
			cfg->check = 1;
			break;
		case 'b':
			cfg->engine = sf_engine_find(optarg, aerr, sizeof(aerr));
			if (cfg->engine == NULL) {
				snprintf(err, errlen, "-b: %s", aerr);
				rc = -EINVAL;
			}
			cfg->gset |= SF_G_ENGINE;
			break;
		case 'j':
			rc = opt_threads(optarg, &cfg->threads, err, errlen);
			cfg->gset |= SF_G_THREADS;
			break;
		case OPT_BUFFER_SIZE:
			rc = opt_size("--buffer-size", optarg, SF_MIN_BUFFER_SIZE,
				      SF_MAX_BUFFER_SIZE, &cfg->buffer_size, err, errlen);
			cfg->gset |= SF_G_BUFFER_SIZE;
			break;
		case OPT_PIPE_SIZE:
			rc = opt_size("--pipe-size", optarg, SF_MIN_PIPE_SIZE, SF_MAX_PIPE_SIZE,
				      &cfg->pipe_size, err, errlen);
			cfg->gset |= SF_G_PIPE_SIZE;
			break;
		case OPT_BALANCE:
		case OPT_MAX_FAILS:
		case OPT_FAIL_TIMEOUT:
		case OPT_CONNECT_TIMEOUT:
		case OPT_IDLE_TIMEOUT:
		case OPT_NO_KEEPALIVE:
		case OPT_MAX_CONNS:
		case OPT_ALLOW:
		case OPT_DENY:
		case OPT_PROXY_PROTOCOL:
		case OPT_ACCEPT_PROXY:
		case OPT_SNDBUF:
		case OPT_RCVBUF:
		case OPT_UDP_TIMEOUT:
		case OPT_MAX_SESSIONS:
			rc = opt_policy(c, optarg, &cfg->defaults, err, errlen);
			break;
		case OPT_METRICS:
			if (sf_addr_parse(optarg, &cfg->metrics, aerr, sizeof(aerr)) < 0) {
				snprintf(err, errlen, "--metrics: %s", aerr);
				rc = -EINVAL;
			}
			cfg->has_metrics = 1;
			cfg->gset |= SF_G_METRICS;
			break;
		case OPT_USER:
			if (sf_user_parse(optarg, cfg->user, sizeof(cfg->user), aerr,
					  sizeof(aerr)) < 0) {
				snprintf(err, errlen, "--user: %s", aerr);
				rc = -EINVAL;
			}
			cfg->gset |= SF_G_USER;
			break;
		case OPT_DRAIN_TIMEOUT:
			rc = opt_duration("--drain-timeout", optarg, 0, &cfg->drain_timeout_ms, err,
					  errlen);
			cfg->gset |= SF_G_DRAIN_TIMEOUT;
			break;
		case OPT_LOG_FORMAT:
			if ((cfg->log_format = sf_logfmt_parse(optarg)) < 0) {
				snprintf(err, errlen,
					 "--log-format %s: unknown format (expected text or json)",
					 optarg);
				rc = -EINVAL;
			}
			cfg->gset |= SF_G_LOG_FORMAT;
			break;
		case 'u':
			cfg->udp = 1;
			break;
		case OPT_MEET:
		case OPT_BRIDGE:
		case OPT_MEET_TIMEOUT:
		case OPT_PAIRS:
			rc = opt_pair(c, optarg, &cr, &cfg->defaults, err, errlen);
			break;
		case 'v':
			verbose = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			rc = SF_OPT_HELP;
			break;
		case 'V':
			rc = SF_OPT_VERSION;
			break;
		default:
			bad_option(argc, argv, c, err, errlen);
			rc = -EINVAL;
			break;
		}
	}
	if (rc == SF_OPT_RUN && optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		rc = -EINVAL;
	}
	if (rc == SF_OPT_RUN && verbose && quiet) {
		snprintf(err, errlen, "-q and -v contradict each other");
		rc = -EINVAL;
	}
	if (rc == SF_OPT_RUN)
		rc = options_finish(cfg, &cr, err, errlen);
	if (rc != SF_OPT_RUN) {
		/* Nothing to free for the caller unless it is to run. */
		free(cr.listen);
		free(cr.ups);
		sf_config_free(cfg);
		return rc;
	}
	if (verbose || quiet)
		cfg->gset |= SF_G_LOGLEVEL;
	cfg->loglevel = quiet ? SF_LOG_QUIET : verbose ? SF_LOG_VERBOSE : SF_LOG_NORMAL;
	return SF_OPT_RUN;
}
