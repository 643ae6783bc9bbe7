/*
 * Drain: the first SIGTERM with a drain timeout (--drain-timeout,
 * drain_timeout) stops accepting on every listener of every worker, lets
 * the open connections finish for up to the timeout, and then main stops
 * the workers as for a fast stop, which resets whatever is still open.
 * Main's side of it: the workers' side is sf_worker_unlisten.
 */
#ifndef SOCKFWD_DRAIN_H
#define SOCKFWD_DRAIN_H

#include <signal.h>
#include <stdint.h>

struct sf_worker;

struct sf_drain {
	int started;
	int announced;	     /* the start line was logged */
	uint64_t start_ms;   /* CLOCK_MONOTONIC */
	uint64_t timeout_ms; /* as it was at the SIGTERM (a reload may change it) */
	uint64_t closed0;    /* connections closed before the drain, every worker */
	uint64_t stopped0;   /* of those, reset by a stop */
	const char *end;     /* why it ended */
};

/*
 * Drain the n workers of ws for up to timeout_ms, taking the signals of
 * sigs meanwhile (sigwait: they must be blocked): SF_SIG_DRAINED wakes it
 * to check the workers, SIGHUP is ignored with a warning (no reload while
 * draining: it would open listeners again), SIGINT or a second SIGTERM
 * end the drain at once. Returns the exit status once the caller is to
 * stop the workers: 0, or 1 when a worker failed (SIGUSR1).
 */
int sf_drain_run(struct sf_drain *d, struct sf_worker *ws, unsigned n, uint64_t timeout_ms,
		 const sigset_t *sigs);

/*
 * After the workers stopped and were joined: log how the drain ended,
 * how many connections finished during it and how many the stop reset.
 * Nothing when no drain was started.
 */
void sf_drain_report(struct sf_drain *d, struct sf_worker *ws, unsigned n);

#endif
