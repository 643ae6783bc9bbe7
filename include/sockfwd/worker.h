/*
 * A worker: one thread with its own SO_REUSEPORT listener and whatever
 * state its engine keeps. Counters are written by the worker's own
 * threads only (relaxed atomics, read by metrics later).
 */
#ifndef SOCKFWD_WORKER_H
#define SOCKFWD_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include "addr.h"
#include "options.h"

struct sf_worker_stats {
	uint64_t accepted;
	uint64_t active;
	uint64_t closed;
	uint64_t resets;
	uint64_t bytes[2];   /* client->upstream, upstream->client */
	uint64_t spliced[2]; /* the part of bytes[] moved by splice */
};

struct sf_worker {
	unsigned id;
	const struct sf_config *cfg;
	const struct sf_addrlist *upstreams;
	int lfd;    /* listening socket */
	int stopfd; /* eventfd: readable once stop was asked */
	pthread_t thread;
	int result;
	struct sf_worker_stats stats;
	void *engine_state;
	uint64_t last_warn_ms; /* rate limit for accept warnings */
};

#endif

/* How long accept stays paused after EMFILE/ENFILE (as nginx does). */
#define SF_ACCEPT_PAUSE_MS 100

/*
 * Open w's listener on the first address of la that binds.
 * Returns 0, or -errno with a message naming the address in err.
 */
int sf_worker_listen(struct sf_worker *w, const struct sf_addrlist *la, char *err, size_t errlen);

/* Start w's thread running its engine. Returns 0 or -errno. */
int sf_worker_start(struct sf_worker *w);

/* Ask w to stop: makes w->stopfd readable. Async-signal-safe. */
void sf_worker_stop(struct sf_worker *w);

/* Close what sf_worker_listen and the eventfd opened. */
void sf_worker_destroy(struct sf_worker *w);

/*
 * accept(2) failed with rc (-errno): tell the operator (at most once a
 * second per worker) when it is a descriptor or memory shortage. Returns 1
 * when the engine must pause accepting for SF_ACCEPT_PAUSE_MS, else 0.
 */
int sf_worker_accept_failed(struct sf_worker *w, int rc);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t sf_now_ms(void);

/* A worker hit a fatal runtime error: make the process exit with 1. */
void sf_worker_fail(struct sf_worker *w, int rc, const char *what);
