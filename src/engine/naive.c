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
#include <sys/time.h>
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
	int reason;		     /* enum sf_reason */
	int side;		     /* whose failure, or -1 */
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
		sf_conn_reset(&n->c, n->reason, n->side, n->err);
	else
		sf_conn_close(&n->c);
	if (--nw->live == 0)
		pthread_cond_broadcast(&nw->gone);
	pthread_mutex_unlock(&nw->lock);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

/*
 * Side 'side' failed with err (reason: enum sf_reason): mark the
 * connection reset (both sockets get SO_LINGER 0, so the last close sends
 * RST) and wake the other thread.
 */
static void nv_fail(struct nv_conn *n, int reason, int side, int err)
{
	pthread_mutex_lock(&n->lock);
	if (!n->reset) {
		n->reset = 1;
		n->err = err;
		n->reason = reason;
		n->side = side;
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
			/* No loop clock here: stamp the last byte's time ourselves. */
			__atomic_store_n(&n->c.last_ms, sf_now_ms(), __ATOMIC_RELAXED);
			continue;
		}
		if (w < 0 && (errno == EINTR || errno == EAGAIN) && !nv_is_reset(n) &&
		    !nv_stopping(n))
			continue;
		return w < 0 ? -errno : -EPIPE;
	}
	return 0;
}

/* Copy direction d until EOF or failure. */
static void nv_copy(struct nv_conn *n, int d)
{
	int src = n->c.fd[d], dst = n->c.fd[!d], rc;
	size_t size = n->c.w->buffer_size;
	char *buf = malloc(size);
	ssize_t r;

	if (buf == NULL) {
		nv_fail(n, SF_R_LIMIT, d, -ENOMEM);
		return;
	}
	for (;;) {
		r = recv(src, buf, size, 0);
		if (r > 0) {
			rc = nv_send_all(n, dst, buf, (size_t)r, d);
			if (rc < 0) {
				/* Stopping: a send that waits is given up (-EAGAIN). */
				nv_fail(n, nv_stopping(n) ? SF_R_STOP : SF_R_RESET, !d, rc);
				break;
			}
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (nv_is_reset(n))
			break;
		if (r < 0 && errno == EAGAIN && !nv_stopping(n)) {
			if (!sf_conn_idle(&n->c, sf_now_ms()))
				continue;
			nv_fail(n, SF_R_IDLE_TIMEOUT, -1, 0);
			break;
		}
		if (r < 0) {
			nv_fail(n, SF_R_RESET, d, -errno);
			break;
		}
		/* The worker is stopping: wake the other thread too. */
		if (nv_stopping(n)) {
			nv_fail(n, SF_R_STOP, -1, 0);
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

/* End a connection that never got its threads going. */
static void *nv_abort(struct nv_conn *n, int reason, int side, int err)
{
	n->reset = 1;
	n->reason = reason;
	n->side = side;
	n->err = err;
	nv_put(n);
	return NULL;
}

/* --accept-proxy: read the header, blocking, within its deadline. */
static int nv_read_proxy(struct nv_conn *n)
{
	struct timeval tv = { .tv_sec = SF_PROXY_TIMEOUT / 1000,
			      .tv_usec = (SF_PROXY_TIMEOUT % 1000) * 1000 };
	int rc;

	setsockopt(n->c.fd[SF_CLIENT], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	do {
		rc = sf_conn_read_proxy(&n->c, 0);
		/* A blocking peek returns at once or after the whole deadline. */
		if (rc == 0 && sf_now_ms() >= sf_conn_deadline(&n->c, 0, 0))
			rc = -ETIMEDOUT;
	} while (rc == 0);
	return rc < 0 ? rc : 0;
}

/*
 * First thread of a connection: admit the client, connect upstream
 * (blocking, bounded by the connect timeout), start the reverse
 * direction's thread, then copy client to upstream.
 */
static void *nv_conn_main(void *arg)
{
	struct nv_conn *n = arg;
	struct timeval snd = { .tv_sec = NV_SNDTIMEO_S }, rcv = { 0 };
	uint64_t idle = n->c.rule->pol->idle_timeout_ms;
	int rc;

	rc = sf_conn_admit(&n->c);
	if (rc == 1)
		rc = nv_read_proxy(n);
	if (rc < 0)
		return nv_abort(n, sf_conn_refused_reason(&n->c, rc), SF_CLIENT, rc);
	rc = sf_conn_connect(&n->c, 1);
	if (rc < 0)
		return nv_abort(n, sf_conn_connect_reason(&n->c), SF_UPSTREAM, rc);
	if (nv_stopping(n))
		return nv_abort(n, SF_R_STOP, -1, 0);
	/* Connected: the socket's timeout goes back to the send wake-up. */
	setsockopt(n->c.fd[0], SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
	setsockopt(n->c.fd[1], SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
	rcv.tv_sec = (time_t)(idle / 1000);
	rcv.tv_usec = (suseconds_t)(idle % 1000) * 1000;
	setsockopt(n->c.fd[0], SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
	setsockopt(n->c.fd[1], SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
	rc = sf_conn_connected(&n->c);
	if (rc < 0)
		return nv_abort(n, SF_R_RESET, SF_UPSTREAM, rc);
	n->refs = 2;
	rc = nv_spawn(nv_dir_main, n);
	if (rc < 0) {
		n->refs = 1;
		sf_worker_accept_failed(n->c.w, rc);
		nv_fail(n, SF_R_LIMIT, -1, rc);
		nv_put(n);
		return NULL;
	}
	nv_copy(n, SF_C2U);
	nv_put(n);
	return NULL;
}

/*
 * A client was accepted on ls: register it and give it a thread. When no
 * thread can be had (EAGAIN: the thread limit), the client is reset, the
 * operator told, and accepting paused, as for EMFILE.
 */
static int nv_accept_one(struct sf_worker *w, struct sf_lsock *ls, int fd,
			 const struct sf_sockaddr *peer)
{
	struct nv_worker *nw = w->engine_state;
	struct nv_conn *n = calloc(1, sizeof(*n));
	int rc;

	if (n == NULL) {
		sf_rule_release(ls->l->rule);
		sf_net_reset(fd);
		return 1;
	}
	sf_conn_init(&n->c, w, ls, fd, peer);
	pthread_mutex_init(&n->lock, NULL);
	n->refs = 1;
	n->side = -1;
	pthread_mutex_lock(&nw->lock);
	n->next = nw->conns;
	if (nw->conns != NULL)
		nw->conns->prev = n;
	nw->conns = n;
	nw->live++;
	pthread_mutex_unlock(&nw->lock);
	rc = nv_spawn(nv_conn_main, n);
	if (rc < 0) {
		nv_abort(n, SF_R_LIMIT, -1, rc);
		return sf_worker_accept_failed(w, rc);
	}
	return 0;
}

/*
 * Stop: wake every connection of nw and wait until their threads are
 * gone. SHUT_RD, never SHUT_WR: that would send the client a FIN, and a
 * stream cut by the stop must end with a reset. A recv on the client then
 * returns 0 once its buffered bytes are read, and that thread resets the
 * connection (SF_R_STOP), which wakes its twin; a thread blocked in a send
 * sees the stop at its next SO_SNDTIMEO wake-up.
 */
static void nv_stop_conns(struct nv_worker *nw)
{
	struct nv_conn *n;

	pthread_mutex_lock(&nw->lock);
	__atomic_store_n(&nw->stopping, 1, __ATOMIC_RELEASE);
	for (n = nw->conns; n != NULL; n = n->next) {
		sf_net_set_rst(n->c.fd[SF_CLIENT]);
		shutdown(n->c.fd[SF_CLIENT], SHUT_RD);
	}
	while (nw->live > 0)
		pthread_cond_wait(&nw->gone, &nw->lock);
	pthread_mutex_unlock(&nw->lock);
}

/*
 * The poll set: the command channel, then every listener of the
 * generation. A paused listener (its rule full, EMFILE, no thread) is
 * left out (fd -1) until its own time is up, so one full rule never
 * stops the others.
 */
struct nv_pollset {
	struct pollfd *pfd;
	uint64_t *until; /* 0, or when listener i resumes */
	size_t n;
};

static int nv_pollset_build(struct sf_worker *w, struct nv_pollset *ps)
{
	size_t n = w->draining ? 1 : w->gen->nls + 1, i; /* draining: no listener */
	struct pollfd *p = realloc(ps->pfd, n * sizeof(*p));
	uint64_t *u;

	if (p == NULL)
		return -ENOMEM;
	ps->pfd = p;
	if ((u = realloc(ps->until, n * sizeof(*u))) == NULL)
		return -ENOMEM;
	ps->until = u;
	for (i = 0; i < n; i++) {
		p[i].fd = i == 0 ? w->cmdfd : w->gen->ls[i - 1].socks[w->id].io.fd;
		p[i].events = POLLIN;
		u[i] = 0;
	}
	ps->n = n;
	return 0;
}

static void nv_pause(struct nv_pollset *ps, size_t i)
{
	ps->until[i] = sf_now_ms() + SF_ACCEPT_PAUSE_MS;
	ps->pfd[i].fd = -1;
}

/* Put back the listeners whose pause is over; returns the poll timeout. */
static int nv_resume(struct sf_worker *w, struct nv_pollset *ps)
{
	uint64_t now = sf_now_ms(), next = UINT64_MAX;
	size_t i;

	for (i = 1; i < ps->n; i++) {
		if (ps->until[i] == 0)
			continue;
		if (ps->until[i] <= now) {
			ps->until[i] = 0;
			ps->pfd[i].fd = w->gen->ls[i - 1].socks[w->id].io.fd;
		} else if (ps->until[i] < next) {
			next = ps->until[i];
		}
	}
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

/*
 * Accept on every listener until stopped; each connection gets its own
 * threads. Returns 0 once stop is asked, or -errno.
 */
static int nv_accept_loop(struct sf_worker *w)
{
	struct nv_pollset ps = { NULL, NULL, 0 };
	struct sf_sockaddr peer;
	size_t i;
	int fd, rc;

	if ((rc = nv_pollset_build(w, &ps)) < 0)
		goto out;
	for (;;) {
		if (poll(ps.pfd, ps.n, nv_resume(w, &ps)) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (ps.pfd[0].revents) {
			unsigned cmd = sf_worker_commands(w);
			struct sf_gen *g;
			int rebuild = 0;

			if (cmd & SF_WCMD_STOP)
				break;
			if ((cmd & SF_WCMD_GEN) && !w->draining &&
			    (g = sf_worker_take_gen(w)) != NULL) {
				sf_worker_adopt(w, g);
				rebuild = 1;
			}
			/* Drain: nothing else polls the listeners, so they can close. */
			if ((cmd & SF_WCMD_DRAIN) && !w->draining) {
				sf_worker_unlisten(w);
				rebuild = 1;
			}
			if (rebuild) {
				if ((rc = nv_pollset_build(w, &ps)) < 0)
					break;
				continue;
			}
		}
		for (i = 1; i < ps.n; i++) {
			struct sf_lsock *ls = &w->gen->ls[i - 1].socks[w->id];

			if (ps.pfd[i].fd < 0 || !(ps.pfd[i].revents & POLLIN))
				continue;
			if (!sf_rule_reserve(ls->l->rule)) {
				nv_pause(&ps, i);
				continue;
			}
			fd = sf_net_accept(ls->io.fd, &peer, 1);
			if (fd < 0) {
				sf_rule_release(ls->l->rule);
				if (sf_worker_accept_failed(w, fd))
					nv_pause(&ps, i);
				continue;
			}
			if (nv_accept_one(w, ls, fd, &peer))
				nv_pause(&ps, i);
		}
	}
out:
	free(ps.pfd);
	free(ps.until);
	return rc;
}

static int nv_run(struct sf_worker *w)
{
	struct nv_worker nw = { .conns = NULL };
	int rc;

	pthread_mutex_init(&nw.lock, NULL);
	pthread_cond_init(&nw.gone, NULL);
	/*
	 * nw outlives its readers: nv_stop_conns waits for every connection
	 * thread (nv_of) to be gone before this frame returns.
	 */
	/* cppcheck-suppress autoVariables */
	w->engine_state = &nw;
	rc = nv_accept_loop(w);
	nv_stop_conns(&nw);
	pthread_cond_destroy(&nw.gone);
	pthread_mutex_destroy(&nw.lock);
	return rc;
}

const struct sf_engine sf_engine_naive = {
	.name = "naive",
	.probe = NULL,
	.run = nv_run,
	.stop = sf_worker_stop,
	.conn_threads = 1,
};
