/*
 * Workers: each owns a thread, its listeners' sockets and a command
 * channel; the engine decides the rest.
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
#include "sockfwd/worker.h"

int sf_worker_init(struct sf_worker *w, unsigned id, const struct sf_engine *engine,
		   size_t buffer_size, size_t pipe_size, struct sf_gen *gen)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->engine = engine;
	w->ctr_shared = engine->conn_threads;
	w->buffer_size = buffer_size;
	w->pipe_size = pipe_size;
	w->cmdfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->cmdfd < 0)
		return -errno;
	pthread_mutex_init(&w->lock, NULL);
	sf_gen_ref(gen);
	w->gen = gen;
	w->now_ms = sf_now_ms();
	return 0;
}

static void *worker_main(void *arg)
{
	struct sf_worker *w = arg;

	w->result = w->engine->run(w);
	if (w->result < 0)
		sf_worker_fail(w, w->result, "engine");
	return NULL;
}

int sf_worker_start(struct sf_worker *w)
{
	return -pthread_create(&w->thread, NULL, worker_main, w);
}

static void wake(struct sf_worker *w)
{
	uint64_t one = 1;

	if (w->cmdfd >= 0 && write(w->cmdfd, &one, sizeof(one)) < 0)
		return; /* the counter is already set */
}

void sf_worker_stop(struct sf_worker *w)
{
	__atomic_fetch_or(&w->cmd, SF_WCMD_STOP, __ATOMIC_RELEASE);
	wake(w);
}

void sf_worker_drain(struct sf_worker *w)
{
	__atomic_fetch_or(&w->cmd, SF_WCMD_DRAIN, __ATOMIC_RELEASE);
	wake(w);
}

/*
 * Tell main that w may be done. Both this and sf_worker_conn_ended use
 * sequentially consistent operations on draining and active, so that of
 * the last connection ending and the listeners closing, whichever comes
 * second sees the other: main is never left waiting for a worker that is
 * done. A signal is sent at most twice per worker; main checks every
 * worker each time.
 */
static void drained_notify(void) { kill(getpid(), SF_SIG_DRAINED); }

void sf_worker_unlisten(struct sf_worker *w)
{
	struct sf_gen *g;

	if (__atomic_load_n(&w->draining, __ATOMIC_RELAXED))
		return;
	/* A generation posted but never served: its new sockets go too. */
	if ((g = sf_worker_take_gen(w)) != NULL) {
		sf_gen_close_dropped(w->gen, NULL, g, w->id);
		sf_gen_unref(g);
	}
	sf_gen_close_worker(w->gen, w->id);
	__atomic_store_n(&w->draining, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&w->stats.active, __ATOMIC_SEQ_CST) == 0)
		drained_notify();
}

void sf_worker_conn_ended(struct sf_worker *w)
{
	if (__atomic_sub_fetch(&w->stats.active, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&w->draining, __ATOMIC_SEQ_CST))
		drained_notify();
}

int sf_worker_drained(struct sf_worker *w)
{
	return __atomic_load_n(&w->draining, __ATOMIC_SEQ_CST) &&
	       __atomic_load_n(&w->stats.active, __ATOMIC_SEQ_CST) == 0;
}

void sf_worker_post_gen(struct sf_worker *w, struct sf_gen *g)
{
	struct sf_gen *old;

	sf_gen_ref(g);
	pthread_mutex_lock(&w->lock);
	old = w->pending;
	w->pending = g;
	pthread_mutex_unlock(&w->lock);
	/* Two reloads before the worker looked: the first is never served. */
	if (old != NULL) {
		sf_gen_close_dropped(g, w->gen, old, w->id);
		sf_gen_unref(old);
	}
	__atomic_fetch_or(&w->cmd, SF_WCMD_GEN, __ATOMIC_RELEASE);
	wake(w);
}

unsigned sf_worker_commands(struct sf_worker *w)
{
	uint64_t v;

	if (read(w->cmdfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return 0;
	return __atomic_exchange_n(&w->cmd, 0, __ATOMIC_ACQUIRE);
}

struct sf_gen *sf_worker_take_gen(struct sf_worker *w)
{
	struct sf_gen *g;

	pthread_mutex_lock(&w->lock);
	g = w->pending;
	w->pending = NULL;
	pthread_mutex_unlock(&w->lock);
	return g;
}

void sf_worker_adopt(struct sf_worker *w, struct sf_gen *g)
{
	struct sf_gen *old = w->gen;

	sf_gen_close_dropped(g, NULL, old, w->id);
	/*
	 * Release: main polls w->gen (acquire) to learn that every worker
	 * serves g before it drops the previous generation.
	 */
	__atomic_store_n(&w->gen, g, __ATOMIC_RELEASE); /* the reference of sf_worker_post_gen */
	sf_gen_unref(old);
}

void sf_worker_destroy(struct sf_worker *w)
{
	struct sf_gen *g = sf_worker_take_gen(w);

	if (g != NULL) {
		sf_gen_close_dropped(w->gen, NULL, g, w->id);
		sf_gen_unref(g);
	}
	if (w->gen != NULL) {
		sf_gen_close_worker(w->gen, w->id);
		sf_gen_unref(w->gen);
		w->gen = NULL;
	}
	if (w->cmdfd >= 0)
		close(w->cmdfd);
	w->cmdfd = -1;
	pthread_mutex_destroy(&w->lock);
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
