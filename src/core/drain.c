/*
 * Drain, main's side: ask every worker to close its listeners, then wait
 * for the first of: no connection left in any worker, the timeout, a
 * second SIGTERM or a SIGINT. The caller then stops the workers, which
 * resets what is still open (reason stop): a connection cut by the stop
 * never ends with a FIN that looks complete.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sockfwd/drain.h"
#include "sockfwd/log.h"
#include "sockfwd/rule.h"
#include "sockfwd/worker.h"

/*
 * The workers wake main with SF_SIG_DRAINED; it looks at them at least
 * this often anyway, so a lost wake-up can delay the exit but never hang it.
 */
#define DRAIN_RECHECK_MS 1000

/* Connections open, closed, and reset by a stop, over the n workers. */
static void drain_totals(struct sf_worker *ws, unsigned n, uint64_t *open, uint64_t *closed,
			 uint64_t *stopped)
{
	unsigned i;

	*open = *closed = *stopped = 0;
	for (i = 0; i < n; i++) {
		*open += SF_ATOMIC_GET(ws[i].stats.active);
		*closed += SF_ATOMIC_GET(ws[i].stats.closed);
		*stopped += SF_ATOMIC_GET(ws[i].stats.stopped);
	}
}

/* "30s", "1500ms": a duration as the operator wrote it, near enough. */
static const char *fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	return buf;
}

/*
 * The start line, once every worker closed its listeners (or when the
 * drain ends first): from then on a connect is refused, or, with another
 * process on the address, goes there.
 */
static void drain_announce(struct sf_drain *d, struct sf_worker *ws, unsigned n)
{
	uint64_t open, closed, stopped;
	char dur[32];

	drain_totals(ws, n, &open, &closed, &stopped);
	d->announced = 1;
	sf_log_info("drain: stopped accepting; %llu connection%s open, waiting up to %s",
		    (unsigned long long)open, open == 1 ? "" : "s",
		    fmt_ms(d->timeout_ms, dur, sizeof(dur)));
}

/* Returns 1 when every worker has closed its listeners (and, with idle, has no connection). */
static int drain_all(struct sf_worker *ws, unsigned n, int idle)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		if (idle ? !sf_worker_drained(&ws[i])
			 : !__atomic_load_n(&ws[i].draining, __ATOMIC_ACQUIRE))
			return 0;
	}
	return 1;
}

int sf_drain_run(struct sf_drain *d, struct sf_worker *ws, unsigned n, uint64_t timeout_ms,
		 const sigset_t *sigs)
{
	uint64_t now, deadline, open;
	struct timespec ts;
	unsigned i;
	int sig;

	memset(d, 0, sizeof(*d));
	d->started = 1;
	d->start_ms = sf_now_ms();
	d->timeout_ms = timeout_ms;
	drain_totals(ws, n, &open, &d->closed0, &d->stopped0);
	for (i = 0; i < n; i++)
		sf_worker_drain(&ws[i]);
	deadline = d->start_ms + timeout_ms;
	for (;;) {
		if (!d->announced && drain_all(ws, n, 0))
			drain_announce(d, ws, n);
		if (drain_all(ws, n, 1)) {
			d->end = "no connection left";
			return 0;
		}
		now = sf_now_ms();
		if (now >= deadline) {
			d->end = "timeout";
			return 0;
		}
		now = deadline - now < DRAIN_RECHECK_MS ? deadline - now : DRAIN_RECHECK_MS;
		ts.tv_sec = (time_t)(now / 1000);
		ts.tv_nsec = (long)(now % 1000) * 1000000L;
		sig = sigtimedwait(sigs, NULL, &ts);
		switch (sig) {
		case -1: /* EAGAIN: time to look again; EINTR */
		case SF_SIG_DRAINED:
			break;
		case SIGHUP:
			sf_log_warnx(
				"SIGHUP while draining: ignored (a reload would listen again)");
			break;
		case SIGUSR1: /* a worker failed: see sf_worker_fail */
			d->end = "a worker failed";
			return 1;
		default:
			d->end = sig == SIGINT ? "SIGINT" : "second SIGTERM";
			return 0;
		}
	}
}

void sf_drain_report(struct sf_drain *d, struct sf_worker *ws, unsigned n)
{
	uint64_t open, closed, stopped, ms;

	if (!d->started)
		return;
	if (!d->announced)
		drain_announce(d, ws, n);
	drain_totals(ws, n, &open, &closed, &stopped);
	closed -= d->closed0;
	stopped -= d->stopped0;
	ms = sf_now_ms() - d->start_ms;
	/* open: only when a worker did not stop in time (see main's join). */
	sf_log_info("drain: done (%s) after %llu.%03llus: %llu connection%s finished, %llu "
		    "reset%s",
		    d->end, (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
		    (unsigned long long)(closed - stopped), closed - stopped == 1 ? "" : "s",
		    (unsigned long long)stopped, open > 0 ? ", some still open" : "");
}
