/* What every sfload subcommand shares: errors, clocks, addresses, waiting. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sfload.h"

volatile sig_atomic_t stop_flag;

void die(const char *what)
{
	fprintf(stderr, "sfload: %s: %s\n", what, strerror(errno));
	exit(1);
}

void diex(const char *what)
{
	fprintf(stderr, "sfload: %s\n", what);
	exit(1);
}

/* Monotonic time in nanoseconds. */
uint64_t now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		die("clock_gettime");
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

/* This process's CPU time (user + system, all threads) in seconds. */
double cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		die("getrusage");
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Raise the soft descriptor limit to the hard one (idle needs thousands). */
void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit");
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit");
}

/* Parse "a.b.c.d:port" into sa. Returns 0, or -1 when malformed. */
int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* Parse a size with an optional k or m suffix. Returns 0 when malformed. */
size_t parse_size(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*end == 'k' || *end == 'K')
		v *= 1024, end++;
	else if (*end == 'm' || *end == 'M')
		v *= 1024 * 1024, end++;
	return *end == '\0' ? v : 0;
}

/*
 * Wait until fd is ready for events, or until deadline (monotonic ns).
 * Returns 1 when ready, 0 at the deadline.
 */
int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		uint64_t t = now_ns();
		int rc;

		if (t >= deadline)
			return 0;
		rc = poll(&p, 1, (int)((deadline - t) / 1000000 + 1));
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			die("poll");
	}
}

/* Wait for a line on stdin (or its end), at most SL_IDLE_WAIT_MAX_S. */
void wait_stdin_line(void)
{
	char c;
	uint64_t limit = now_ns() + SL_IDLE_WAIT_MAX_S * NS;

	while (wait_fd(0, POLLIN, limit)) {
		ssize_t n = read(0, &c, 1);

		if (n <= 0 || c == '\n')
			return;
	}
}

static void on_stop(int sig) { stop_flag = sig; }

/*
 * Set stop_flag on SIGTERM and SIGINT. No SA_RESTART: a server blocked in
 * epoll_wait or poll returns EINTR and sees the flag.
 */
void catch_stop_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		die("sigaction");
}

/* A server's first line on stdout: it listens on sa. */
void print_ready(const struct sockaddr_in *sa)
{
	printf("{\"ready\": true, \"port\": %u}\n", ntohs(sa->sin_port));
	if (fflush(stdout) == EOF)
		die("stdout");
}

/* Sleep until monotonic time t (ns); returns at once if t has passed. */
void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / NS), (long)(t % NS) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}
