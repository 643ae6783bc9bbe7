/*
 * Command line parsing. Usage errors come back as -EINVAL with one line
 * naming the problem; main prints it and exits 2.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/options.h"

enum { OPT_BUFFER_SIZE = 256, OPT_PIPE_SIZE };

static const struct option long_opts[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "remote", required_argument, NULL, 'r' },
	{ "backend", required_argument, NULL, 'b' },
	{ "threads", required_argument, NULL, 'j' },
	{ "buffer-size", required_argument, NULL, OPT_BUFFER_SIZE },
	{ "pipe-size", required_argument, NULL, OPT_PIPE_SIZE },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

const char *sf_usage(void)
{
	return "usage: sockfwd [OPTIONS] -l LISTEN -r REMOTE\n"
	       "Forward every TCP connection accepted on LISTEN to REMOTE.\n"
	       "\n"
	       "  -l, --listen ADDR     host:port, [v6addr]:port or :port (all addresses)\n"
	       "  -r, --remote ADDR     upstream for each client; host names are resolved\n"
	       "                        at start and each address is tried in turn\n"
	       "  -b, --backend NAME    engine: naive | epoll | splice (default)"
#ifdef SF_HAVE_URING
	       " | uring"
#endif
	       "\n"
	       "  -j, --threads N       worker threads, each with its own SO_REUSEPORT\n"
	       "                        listener (default: online CPUs)\n"
	       "      --buffer-size N   userspace buffer per direction, naive and epoll\n"
	       "                        (default 64k); also uring's buffer size\n"
	       "      --pipe-size N     pipe capacity for splice (default 256k)\n"
	       "  -v, --verbose         one line per connection close: peers, bytes each\n"
	       "                        way, duration, reason\n"
	       "  -q, --quiet           errors only\n"
	       "  -h, --help            this text\n"
	       "  -V, --version         version and the engines compiled in\n"
	       "\n"
	       "Sizes take k, m or g suffixes (64k, 1m). Exit status: 0 after SIGINT or\n"
	       "SIGTERM, 1 on a runtime failure, 2 on a usage error.\n";
}

char *sf_version_string(char *buf, size_t len)
{
	char names[128];

	snprintf(buf, len, "sockfwd %s (engines: %s)", SF_VERSION,
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

int sf_options_parse(int argc, char **argv, struct sf_config *cfg, char *err, size_t errlen)
{
	int c, have_l = 0, have_r = 0, verbose = 0, quiet = 0;
	char aerr[256];

	config_defaults(cfg);
	optind = 0; /* full reset, so the parser can run more than once */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":l:r:b:j:vqhV", long_opts, NULL)) != -1) {
		switch (c) {
		case 'l':
		case 'r':
			if (sf_addr_parse(optarg, c == 'l' ? &cfg->listen : &cfg->remote, aerr,
					  sizeof(aerr)) < 0) {
				snprintf(err, errlen, "-%c: %s", c, aerr);
				return -EINVAL;
			}
			if (c == 'r' && cfg->remote.host[0] == '\0') {
				snprintf(err, errlen, "-r %s: the upstream needs a host", optarg);
				return -EINVAL;
			}
			if (c == 'l')
				have_l = 1;
			else
				have_r = 1;
			break;
		case 'b':
			cfg->engine = sf_engine_find(optarg, aerr, sizeof(aerr));
			if (cfg->engine == NULL) {
				snprintf(err, errlen, "-b: %s", aerr);
				return -EINVAL;
			}
			break;
		case 'j':
			if (opt_threads(optarg, &cfg->threads, err, errlen) < 0)
				return -EINVAL;
			break;
		case OPT_BUFFER_SIZE:
			if (opt_size("--buffer-size", optarg, SF_MIN_BUFFER_SIZE,
				     SF_MAX_BUFFER_SIZE, &cfg->buffer_size, err, errlen) < 0)
				return -EINVAL;
			break;
		case OPT_PIPE_SIZE:
			if (opt_size("--pipe-size", optarg, SF_MIN_PIPE_SIZE, SF_MAX_PIPE_SIZE,
				     &cfg->pipe_size, err, errlen) < 0)
				return -EINVAL;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			return SF_OPT_HELP;
		case 'V':
			return SF_OPT_VERSION;
		default:
			bad_option(argc, argv, c, err, errlen);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	if (verbose && quiet) {
		snprintf(err, errlen, "-q and -v contradict each other");
		return -EINVAL;
	}
	if (!have_l || !have_r) {
		snprintf(err, errlen, "missing %s (usage: sockfwd [OPTIONS] -l LISTEN -r REMOTE)",
			 !have_l ? "-l/--listen ADDR" : "-r/--remote ADDR");
		return -EINVAL;
	}
	cfg->loglevel = quiet ? SF_LOG_QUIET : verbose ? SF_LOG_VERBOSE : SF_LOG_NORMAL;
	return SF_OPT_RUN;
}
