/*
 * A worker: one thread serving every rule, with its own SO_REUSEPORT
 * socket for every listener, and whatever state its engine keeps.
 * Counters are written by the worker's own threads only (sf_ctr_add of
 * stats.h: a plain store, or an atomic add where the engine runs
 * connections on threads of their own), read by main at exit.
 *
 * The main thread talks to a worker through a command channel: an
 * eventfd that becomes readable, and a set of command bits (stop, a new
 * generation to take, drain).
 *
 * Drain (SIGTERM with --drain-timeout): the worker closes its listening
 * sockets and keeps serving its connections. The policy is here and in
 * core/drain.c; an engine only unregisters its listeners (uring: cancels
 * its accepts) and calls sf_worker_unlisten. Main learns that a worker is
 * done from sf_worker_drained, woken by SIGUSR2.
 */
#ifndef SOCKFWD_WORKER_H
#define SOCKFWD_WORKER_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "rule.h"

struct sf_worker_stats {
	uint64_t accepted;
	uint64_t active;
	uint64_t closed;
	uint64_t resets;
	uint64_t bytes[2];	 /* client->upstream, upstream->client */
	uint64_t spliced[2];	 /* the part of bytes[] moved by splice */
	uint64_t stopped;	 /* reset by a stop (reason stop) */
	uint64_t pipe_fallbacks; /* splice: bursts moved through a buffer, no pipe to be had */
};

enum { SF_WCMD_STOP = 1u << 0, SF_WCMD_GEN = 1u << 1, SF_WCMD_DRAIN = 1u << 2 };

/* Sent to the process when a draining worker has no connection left. */
#define SF_SIG_DRAINED SIGUSR2

struct sf_engine;

struct sf_worker {
	unsigned id;
	const struct sf_engine *engine;
	size_t buffer_size; /* fixed at start, as the engine and threads */
	size_t pipe_size;
	struct sf_gen *gen;	/* the generation served (a reference) */
	struct sf_gen *pending; /* the next one, under lock */
	pthread_mutex_t lock;
	int cmdfd;    /* eventfd: readable once a command waits */
	unsigned cmd; /* SF_WCMD_* (atomic) */
	pthread_t thread;
	int result;
	struct sf_worker_stats stats;
	int ctr_shared; /* counters have several writers (engine conn_threads) */
	void *engine_state;
	uint64_t now_ms;       /* the loop's clock, read on the data path */
	uint64_t last_warn_ms; /* rate limit for accept warnings */
	int draining;	       /* listeners closed (atomic: read by main, naive's threads) */
};

/* How long accept stays paused after EMFILE/ENFILE, or while a rule is full. */
#define SF_ACCEPT_PAUSE_MS 100

/* Set up w (id, engine, a reference to gen) and its command channel. Returns 0 or -errno. */
int sf_worker_init(struct sf_worker *w, unsigned id, const struct sf_engine *engine,
		   size_t buffer_size, size_t pipe_size, struct sf_gen *gen);

/* Start w's thread running its engine. Returns 0 or -errno. */
int sf_worker_start(struct sf_worker *w);

/* Ask w to stop. Async-signal-safe. */
void sf_worker_stop(struct sf_worker *w);

/* Ask w to drain: stop accepting, keep serving. Async-signal-safe. */
void sf_worker_drain(struct sf_worker *w);

/*
 * In the worker, on SF_WCMD_DRAIN (after any SF_WCMD_GEN of the same
 * batch), once its engine neither waits on nor can still complete an
 * accept on its listeners: close them, so that the kernel sends new
 * clients to another socket of the address (another process), and tell
 * main when no connection is left.
 */
void sf_worker_unlisten(struct sf_worker *w);

/* In the worker: one of its connections ended (conn.c). */
void sf_worker_conn_ended(struct sf_worker *w);

/* In main: 1 once w closed its listeners and has no connection left. */
int sf_worker_drained(struct sf_worker *w);

/* Hand w a new generation (takes a reference for it). */
void sf_worker_post_gen(struct sf_worker *w, struct sf_gen *g);

/*
 * In the worker: drain the command channel. Returns the SF_WCMD_* bits
 * that were set since the last call.
 */
unsigned sf_worker_commands(struct sf_worker *w);

/*
 * In the worker: take the generation posted, or NULL. The caller moves
 * its listeners over, then calls sf_worker_adopt.
 */
struct sf_gen *sf_worker_take_gen(struct sf_worker *w);

/* Make g current: close the listeners it dropped, let the old one go. */
void sf_worker_adopt(struct sf_worker *w, struct sf_gen *g);

/* Close w's listeners and channel, drop its references. */
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

#endif
