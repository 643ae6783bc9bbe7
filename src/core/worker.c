/*
 * Workers: each owns a thread, an SO_REUSEPORT listener and a stop
 * eventfd; the engine decides the rest.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/worker.h"

#define LISTEN_BACKLOG 4096

int sf_worker_listen(struct sf_worker *w, const struct sf_addrlist *la, char *err, size_t errlen)
{
	char abuf[SF_ADDRSTRLEN];
	size_t i;
	int fd = -EADDRNOTAVAIL;

	w->lfd = w->stopfd = -1;
	for (i = 0; i < la->n; i++) {
		fd = sf_net_listen(&la->a[i], LISTEN_BACKLOG);
		if (fd >= 0)
			break;
		/* The dual-stack wildcard on a host without IPv6: try IPv4. */
		if (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)
			break;
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s%s",
			 sf_addr_format((const struct sockaddr *)&la->a[i < la->n ? i : 0].ss, abuf,
					sizeof(abuf)),
			 strerror(-fd),
			 fd == -EADDRINUSE ? " (address in use by another program)" : "");
		return fd;
	}
	w->lfd = fd;
	w->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->stopfd < 0) {
		int rc = -errno;

		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		close(w->lfd);
		w->lfd = -1;
		return rc;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct sf_worker *w = arg;

	w->result = w->cfg->engine->run(w);
	if (w->result < 0)
		sf_worker_fail(w, w->result, "engine");
	return NULL;
}

int sf_worker_start(struct sf_worker *w)
{
	return -pthread_create(&w->thread, NULL, worker_main, w);
}

void sf_worker_stop(struct sf_worker *w)
{
	uint64_t one = 1;

	if (w->stopfd >= 0 && write(w->stopfd, &one, sizeof(one)) < 0)
		return; /* the counter is already set */
}

void sf_worker_destroy(struct sf_worker *w)
{
	if (w->lfd >= 0)
		close(w->lfd);
	if (w->stopfd >= 0)
		close(w->stopfd);
	w->lfd = w->stopfd = -1;
}

uint64_t sf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int sf_worker_accept_failed(struct sf_worker *w, int rc)
{
	uint64_t now;

	if (rc == -EAGAIN)
		return 0;
	now = sf_now_ms();
	if (now - w->last_warn_ms >= 1000) {
		w->last_warn_ms = now;
		errno = -rc;
		if (rc == -EMFILE || rc == -ENFILE)
			sf_log_warn("worker %u: out of file descriptors; pausing accept "
				    "(raise ulimit -n)",
				    w->id);
		else
			sf_log_warn("worker %u: accept", w->id);
	}
	/* Everything but a vanished client means "try again a bit later". */
	return 1;
}

void sf_worker_fail(struct sf_worker *w, int rc, const char *what)
{
	errno = -rc;
	sf_log_error("worker %u: %s failed", w->id, what);
	kill(getpid(), SIGUSR1);
}
