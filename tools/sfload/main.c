/*
 * sfload: the load generator and servers of the sockfwd bench suite.
 *
 *   sfload serve        -l HOST:PORT
 *   sfload stream       -c HOST:PORT [-n STREAMS] [-t SEC] [-d c2s|s2c] [-s CHUNK]
 *                       [-T THREADS] [-P] [-W]
 *   sfload crr          -c HOST:PORT [-n CLIENTS] [-t SEC] [-m MAXCONNS] [-s SIZE] [-a NADDR]
 *   sfload rr           -c HOST:PORT [-n CONNS] [-t SEC] [-s SIZE]
 *   sfload idle         -c HOST:PORT [-n CONNS] [-H SEC] [-W] [-a NADDR]
 *   sfload udp-serve    -l HOST:PORT
 *   sfload udp-stream   -c HOST:PORT [-t SEC] [-s SIZE] [-d c2s|echo] [-R PPS] [-b BATCH]
 *   sfload udp-rr       -c HOST:PORT [-t SEC] [-s SIZE]
 *   sfload udp-sessions -c HOST:PORT [-n SESSIONS] [-s SIZE] [-a NADDR] [-w WINDOW]
 *                       [-H SEC] [-W]
 *
 * TCP protocol: the first byte a client sends picks what the server does
 * with that connection: 'K' sink, 'S' source, 'E' echo (tcp_serve.c). UDP:
 * every datagram starts with a header (udp.h) whose kind picks echo, sink
 * or a query for the sink's counts, and carries a sequence number.
 *
 * Every client prints one JSON object on stdout when done, with its own CPU
 * time (utime + stime of this process over the measured interval), so a
 * reader can tell whether the generator itself was the bottleneck. Clients
 * connect from spread 127.64.x.y (TCP) or 127.65.x.y (UDP) source
 * addresses (-a). Every loop is bounded in time.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sfload.h"
#include "udp.h"

/* A subcommand: its name, its function and the stream directions it takes. */
struct command {
	const char *name;
	int (*run)(struct opts *);
	unsigned dirs; /* bit (1 << DIR_*) per direction -d accepts */
	int udp;       /* -s is a datagram size: 16 to 65507 */
};

static int run_serve(struct opts *o) { return cmd_serve(o); }
static int run_udp_serve(struct opts *o) { return cmd_udp_serve(o); }

static const struct command commands[] = {
	{ "serve", run_serve, 0, 0 },
	{ "stream", cmd_stream, 1u << DIR_C2S | 1u << DIR_S2C, 0 },
	{ "crr", cmd_crr, 0, 0 },
	{ "rr", cmd_rr, 0, 0 },
	{ "idle", cmd_idle, 0, 0 },
	{ "udp-serve", run_udp_serve, 0, 1 },
	{ "udp-stream", cmd_udp_stream, 1u << DIR_C2S | 1u << DIR_ECHO, 1 },
	{ "udp-rr", cmd_udp_rr, 0, 1 },
	{ "udp-sessions", cmd_udp_sessions, 0, 1 },
};

static void __attribute__((noreturn)) usage(void)
{
	fputs("usage: sfload serve -l HOST:PORT\n"
	      "       sfload stream -c HOST:PORT [-n STREAMS] [-t SEC] [-d c2s|s2c] [-s CHUNK]"
	      " [-T THREADS] [-P] [-W]\n"
	      "       sfload crr -c HOST:PORT [-n CLIENTS] [-t SEC] [-m MAX] [-s SIZE] [-a NADDR]\n"
	      "       sfload rr -c HOST:PORT [-n CONNS] [-t SEC] [-s SIZE]\n"
	      "       sfload idle -c HOST:PORT [-n CONNS] [-H SEC] [-W] [-a NADDR]\n"
	      "       sfload udp-serve -l HOST:PORT\n"
	      "       sfload udp-stream -c HOST:PORT [-t SEC] [-s SIZE] [-d c2s|echo] [-R PPS]"
	      " [-b BATCH]\n"
	      "       sfload udp-rr -c HOST:PORT [-t SEC] [-s SIZE]\n"
	      "       sfload udp-sessions -c HOST:PORT [-n SESSIONS] [-s SIZE] [-a NADDR]"
	      " [-w WINDOW] [-H SEC] [-W]\n",
	      stderr);
	exit(2);
}

/* Parse -d's argument into a DIR_* value; -1 when unknown. */
static int parse_dir(const char *s)
{
	if (strcmp(s, "c2s") == 0)
		return DIR_C2S;
	if (strcmp(s, "s2c") == 0)
		return DIR_S2C;
	if (strcmp(s, "echo") == 0)
		return DIR_ECHO;
	return -1;
}

/* Parse the options after the subcommand cmd into o; exits on errors. */
static void parse_opts(int argc, char **argv, const struct command *cmd, struct opts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->n = 1;
	o->seconds = 5;
	o->size = 0;
	o->hold = 1;
	o->batch = 32;
	o->window = 64;
	o->threads = 1;
	while ((c = getopt(argc, argv, "l:c:n:t:d:s:m:a:H:WR:b:w:T:P")) != -1) {
		switch (c) {
		case 'l':
		case 'c':
			if (parse_addr(optarg, &o->target) < 0)
				usage();
			o->have_target = 1;
			break;
		case 'n':
			o->n = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 't':
			o->seconds = strtod(optarg, NULL);
			break;
		case 'd':
			o->dir = parse_dir(optarg);
			if (o->dir < 0 || !(cmd->dirs & 1u << o->dir))
				usage();
			break;
		case 's':
			if ((o->size = parse_size(optarg)) == 0)
				usage();
			break;
		case 'm':
			o->max = strtoul(optarg, NULL, 10);
			break;
		case 'a':
			o->naddr = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'H':
			o->hold = strtod(optarg, NULL);
			break;
		case 'W':
			o->wait_stdin = 1;
			break;
		case 'R':
			o->rate = strtod(optarg, NULL);
			break;
		case 'b':
			o->batch = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			o->window = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'T':
			o->threads = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'P':
			o->per_stream = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !o->have_target || o->n == 0 || o->n > 1000000 || o->seconds <= 0 ||
	    o->seconds > 3600 || o->naddr > 65000 || o->hold < 0 || o->hold > 3600 || o->rate < 0 ||
	    o->rate > 1e8 || o->batch == 0 || o->batch > 1024 || o->window == 0 ||
	    o->window > 65536 || o->threads == 0 || o->threads > 256)
		usage();
	if (cmd->udp && o->size != 0 && (o->size < UDP_MIN_SIZE || o->size > UDP_MAX_SIZE)) {
		fprintf(stderr, "sfload: -s %zu: a datagram is 16 to 65507 bytes\n", o->size);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct opts o;

	if (argc < 2)
		usage();
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("signal");
	raise_nofile();
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		parse_opts(argc - 1, argv + 1, &commands[i], &o);
		return commands[i].run(&o);
	}
	usage();
}
