/*
 * The naive engine: blocking recv/send with a thread per direction, the
 * classic forwarding loop made concurrent. It is the baseline every other
 * engine is measured against, so it stays plain.
 *
 * Waking a thread blocked on a socket when the other direction fails:
 * shutdown(SHUT_RD) wakes a blocked recv without sending anything; a
 * blocked send wakes at the latest after SO_SNDTIMEO and then sees the
 * reset flag. Closing an fd another thread blocks on would be a race
 * (descriptor reuse), so the last thread out closes both.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/worker.h"

#define NV_STACK      (64u * 1024)
#define NV_SNDTIMEO_S 1

struct nv_conn {
	struct sf_conn c;
	pthread_mutex_t lock; /* c.flags, refs, reset and reason */
	int refs;
	int reset;
	int err;
	const char *reason;
	struct nv_conn *prev, *next; /* in nv_worker.conns, under its lock */
};

/*
 * A worker's live connections. Their threads are detached and use the
 * worker (counters, config), so run() returns only once they are gone:
 * on stop it shuts down their client sockets, which wakes every thread,
 * and waits. One stuck past main's join deadline (a blocking connect to a
 * silent host) makes main exit without freeing the workers.
 */
struct nv_worker {
	pthread_mutex_t lock;
	pthread_cond_t gone; /* live dropped to 0 */
	struct nv_conn *conns;
	unsigned live;
	int stopping;
};

static struct nv_worker *nv_of(const struct nv_conn *n) { return n->c.w->engine_state; }

static int nv_stopping(const struct nv_conn *n)
{
	return __atomic_load_n(&nv_of(n)->stopping, __ATOMIC_ACQUIRE);
}

/*
 * Drop one thread's reference; the last closes (or resets) both sockets,
 * under the registry lock so that a stop never shuts down a descriptor
 * already closed and reused.
 */
static void nv_put(struct nv_conn *n)
{
	struct nv_worker *nw = nv_of(n);
	int last;

	pthread_mutex_lock(&n->lock);
	last = --n->refs == 0;
	pthread_mutex_unlock(&n->lock);
	if (!last)
		return;
	pthread_mutex_lock(&nw->lock);
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		nw->conns = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	if (n->reset)
		sf_conn_reset(&n->c, n->reason, n->err);
	else
		sf_conn_close(&n->c, "eof");
	if (--nw->live == 0)
		pthread_cond_broadcast(&nw->gone);
	pthread_mutex_unlock(&nw->lock);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/*
 * Side 'side' failed with err: mark the connection reset (both sockets
 * get SO_LINGER 0, so the last close sends RST) and wake the other thread.
 */
static void nv_fail(struct nv_conn *n, int side, int err)
{
	pthread_mutex_lock(&n->lock);
	if (!n->reset) {
		n->reset = 1;
		n->err = err;
		n->reason = side == SF_CLIENT ? "client" : "upstream";
		sf_net_set_rst(n->c.fd[0]);
		sf_net_set_rst(n->c.fd[1]);
		shutdown(n->c.fd[0], SHUT_RD);
		shutdown(n->c.fd[1], SHUT_RD);
	}
	pthread_mutex_unlock(&n->lock);
}

static int nv_is_reset(struct nv_conn *n)
{
	int r;

	pthread_mutex_lock(&n->lock);
	r = n->reset;
	pthread_mutex_unlock(&n->lock);
	return r;
}

/* Send all of buf, riding out SO_SNDTIMEO wake-ups. Returns 0 or -errno. */
static int nv_send_all(struct nv_conn *n, int fd, const char *buf, size_t len, int d)
{
	ssize_t w;

	while (len > 0) {
		w = send(fd, buf, len, MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			len -= (size_t)w;
			sf_conn_count(&n->c, d, (uint64_t)w, 0);
			continue;
		}
		if (w < 0 && (errno == EINTR || errno == EAGAIN) && !nv_is_reset(n))
			continue;
		return w < 0 ? -errno : -EPIPE;
	}
	return 0;
}

/* Copy direction d until EOF or failure. */
static void nv_copy(struct nv_conn *n, int d)
{
	int src = n->c.fd[d], dst = n->c.fd[!d], rc;
	size_t size = n->c.w->cfg->buffer_size;
	char *buf = malloc(size);
	ssize_t r;

	if (buf == NULL) {
		nv_fail(n, d, -ENOMEM);
		return;
	}
	for (;;) {
		r = recv(src, buf, size, 0);
		if (r > 0) {
			rc = nv_send_all(n, dst, buf, (size_t)r, d);
			if (rc < 0) {
				nv_fail(n, !d, rc);
				break;
			}
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (nv_is_reset(n))
			break;
		if (r < 0) {
			nv_fail(n, d, -errno);
			break;
		}
		/* The worker is stopping: wake the other thread too. */
		if (nv_stopping(n)) {
			nv_fail(n, d, 0);
			break;
		}
		/* EOF: everything read before it has been sent. */
		pthread_mutex_lock(&n->lock);
		sf_conn_eof(&n->c, d);
		sf_conn_shut(&n->c, d);
		pthread_mutex_unlock(&n->lock);
		break;
	}
	free(buf);
}

static void *nv_dir_main(void *arg)
{
	struct nv_conn *n = arg;

	nv_copy(n, SF_U2C);
	nv_put(n);
	return NULL;
}

static int nv_spawn(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, NV_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -rc;
}

/*
 * First thread of a connection: connect upstream (blocking), start the
 * reverse direction's thread, then copy client to upstream.
 */
static void *nv_conn_main(void *arg)
{
	struct nv_conn *n = arg;
	struct timeval tv = { .tv_sec = NV_SNDTIMEO_S };
	int rc;

	rc = sf_conn_connect(&n->c, 1);
	if (rc < 0) {
		n->reset = 1;
		n->err = rc;
		n->reason = "upstream connect";
		nv_put(n);
		return NULL;
	}
	if (nv_stopping(n)) {
		n->reset = 1;
		n->reason = "shutdown";
		nv_put(n);
		return NULL;
	}
	setsockopt(n->c.fd[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(n->c.fd[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	n->refs = 2;
	rc = nv_spawn(nv_dir_main, n);
	if (rc < 0) {
		n->refs = 1;
		nv_fail(n, SF_CLIENT, rc);
		nv_put(n);
		return NULL;
	}
	nv_copy(n, SF_C2U);
	nv_put(n);
	return NULL;
}

static void nv_accept_one(struct sf_worker *w, int fd, const struct sf_sockaddr *peer)
{
	struct nv_worker *nw = w->engine_state;
	struct nv_conn *n = calloc(1, sizeof(*n));
	int rc;

	if (n == NULL) {
		sf_net_reset(fd);
		return;
	}
	sf_conn_init(&n->c, w, fd, peer);
	pthread_mutex_init(&n->lock, NULL);
	n->refs = 1;
	pthread_mutex_lock(&nw->lock);
	n->next = nw->conns;
	if (nw->conns != NULL)
		nw->conns->prev = n;
	nw->conns = n;
	nw->live++;
	pthread_mutex_unlock(&nw->lock);
	rc = nv_spawn(nv_conn_main, n);
	if (rc < 0) {
		sf_worker_accept_failed(w, rc);
		n->reset = 1;
		n->err = rc;
		n->reason = "thread";
		nv_put(n);
	}
}

/* Wake every connection of nw and wait until their threads are gone. */
static void nv_drain(struct nv_worker *nw)
{
	struct nv_conn *n;

	pthread_mutex_lock(&nw->lock);
	__atomic_store_n(&nw->stopping, 1, __ATOMIC_RELEASE);
	/* recv on it returns 0, send EPIPE: each thread then wakes its twin. */
	for (n = nw->conns; n != NULL; n = n->next)
		shutdown(n->c.fd[SF_CLIENT], SHUT_RDWR);
	while (nw->live > 0)
		pthread_cond_wait(&nw->gone, &nw->lock);
	pthread_mutex_unlock(&nw->lock);
}

/*
 * Accept until stopped; each connection gets its own threads. After an
 * accept failure (EMFILE...) only the stop eventfd is polled for
 * SF_ACCEPT_PAUSE_MS, so exhaustion never turns into a busy loop.
 * Returns 0 once stop is asked, or -errno.
 */
static int nv_accept_loop(struct sf_worker *w)
{
	struct pollfd pfd[2] = { { .fd = w->lfd, .events = POLLIN },
				 { .fd = w->stopfd, .events = POLLIN } };
	struct sf_sockaddr peer;
	int fd, paused = 0;

	for (;;) {
		pfd[0].fd = paused ? -1 : w->lfd;
		if (poll(pfd, 2, paused ? SF_ACCEPT_PAUSE_MS : -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[1].revents)
			return 0;
		if (paused) {
			paused = 0;
			continue;
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = sf_net_accept(w->lfd, &peer, 1);
		if (fd < 0) {
			paused = sf_worker_accept_failed(w, fd);
			continue;
		}
		nv_accept_one(w, fd, &peer);
	}
}

static int nv_run(struct sf_worker *w)
{
	struct nv_worker nw = { .conns = NULL };
	int rc;

	pthread_mutex_init(&nw.lock, NULL);
	pthread_cond_init(&nw.gone, NULL);
	w->engine_state = &nw;
	rc = nv_accept_loop(w);
	nv_drain(&nw);
	pthread_cond_destroy(&nw.gone);
	pthread_mutex_destroy(&nw.lock);
	return rc;
}

const struct sf_engine sf_engine_naive = {
	.name = "naive",
	.probe = NULL,
	.run = nv_run,
	.stop = sf_worker_stop,
};
