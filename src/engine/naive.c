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
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/udp.h"
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
	/* meet: a client waiting for its partner (under nv_worker.lock) */
	int efd;		   /* eventfd: written once it is joined */
	int joined;		   /* joined by the accept loop */
	TAILQ_ENTRY(nv_conn) wait; /* in its queue while waiting */
	struct nv_meetq *meetq;	   /* that queue */
	struct nv_slot *slot;	   /* bridge: its slot, told when the pair is gone */
	/*
	 * bridge: both sides connected (under nv_worker.lock). Until then its
	 * slot thread writes the sockets and the stop must not read them: the
	 * thread sees the stop itself (stopfd, pairs_stopping).
	 */
	int started;
};

struct nv_meetq;
struct nv_slot;

/*
 * A worker's live connections. Their threads are detached and use the
 * worker (counters, config), so run() returns only once they are gone:
 * on stop it shuts down their client sockets, which wakes every thread,
 * and waits. One stuck past main's join deadline (a blocking connect to a
 * silent host) makes main exit without freeing the workers.
 */
struct nv_worker {
	/*
	 * UDP rules: served by the accept thread with the shared readiness
	 * code (dgram/udp.c) on an epoll set of its own, polled here as one
	 * descriptor, and the session timers in this heap.
	 */
	struct sf_udp udp;
	struct sf_timers timers;
	pthread_mutex_t lock;
	pthread_cond_t gone; /* live dropped to 0 */
	struct nv_conn *conns;
	unsigned live;
	int stopping;
	/* meet and bridge (worker 0), under lock */
	int stopfd;	       /* eventfd: written at stop, wakes the bridge threads */
	unsigned pair_threads; /* bridge slot threads running */
	int pairs_stopping;    /* drain or stop: no bridge connects again */
	/* Used through the queue macros, which cppcheck does not follow into. */
	/* cppcheck-suppress unusedStructMember */
	LIST_HEAD(, nv_meetq) meets; /* waiting meet clients, per rule name */
	/* cppcheck-suppress unusedStructMember */
	LIST_HEAD(, nv_slot) slots; /* bridge pairs kept */
};

static void nv_meet_accept(struct sf_worker *w, struct sf_lsock *ls, int fd,
			   const struct sf_sockaddr *peer);
static int nv_pairs_gen(struct sf_worker *w);
static int nv_meet_reserve(struct sf_worker *w, const struct sf_lsock *ls);
static void nv_pairs_drain(struct sf_worker *w);
static void nv_pairs_stop(struct nv_worker *nw);

static struct nv_worker *nv_of(const struct nv_conn *n) { return n->c.w->engine_state; }
static struct nv_worker *nv_of_w(const struct sf_worker *w) { return w->engine_state; }

static void nv_slot_done(struct nv_worker *nw, struct nv_conn *n);

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
	nv_slot_done(nw, n);
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
		/* nv_put closes later: a stop between would reset the FIN. */
		sf_conn_shut(&n->c, d, 0);
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

	nv_pairs_stop(nw);
	pthread_mutex_lock(&nw->lock);
	__atomic_store_n(&nw->stopping, 1, __ATOMIC_RELEASE);
	for (n = nw->conns; n != NULL; n = n->next) {
		if (n->slot != NULL && !n->started)
			continue;
		sf_net_set_rst(n->c.fd[SF_CLIENT]);
		shutdown(n->c.fd[SF_CLIENT], SHUT_RD);
	}
	while (nw->live > 0 || nw->pair_threads > 0)
		pthread_cond_wait(&nw->gone, &nw->lock);
	pthread_mutex_unlock(&nw->lock);
}

/*
 * The poll set: the command channel, then every listener of the
 * generation, then the UDP epoll set. A paused listener (its rule full,
 * EMFILE, no thread) is left out (fd -1) until its own time is up, so
 * one full rule never stops the others; UDP listeners are always left
 * out here (the UDP epoll set watches them).
 */
struct nv_pollset {
	struct pollfd *pfd;
	uint64_t *until; /* 0, or when listener i resumes */
	size_t n;
};

static int nv_pollset_build(struct sf_worker *w, struct nv_pollset *ps)
{
	size_t n = (w->draining ? 1 : w->gen->nls + 1) + 1, i; /* draining: no listener */
	struct pollfd *p = realloc(ps->pfd, n * sizeof(*p));
	uint64_t *u;

	if (p == NULL)
		return -ENOMEM;
	ps->pfd = p;
	if ((u = realloc(ps->until, n * sizeof(*u))) == NULL)
		return -ENOMEM;
	ps->until = u;
	for (i = 0; i < n; i++) {
		if (i == 0)
			p[i].fd = w->cmdfd;
		else if (i == n - 1)
			p[i].fd = nv_of_w(w)->udp.epfd;
		else if (w->gen->ls[i - 1].proto == SF_PROTO_UDP)
			p[i].fd = -1;
		else
			p[i].fd = w->gen->ls[i - 1].socks[w->id].io.fd;
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

	for (i = 1; i + 1 < ps->n; i++) {
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

/* The poll timeout: the first paused listener to resume, or the first UDP timer. */
static int nv_timeout(struct sf_worker *w, struct nv_pollset *ps)
{
	int a = nv_resume(w, ps), b = sf_timers_wait_ms(&nv_of_w(w)->timers, sf_now_ms());

	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/* Serve the UDP sockets that are ready (revents of the UDP epoll set), then due timers. */
static void nv_udp(struct sf_worker *w, short revents)
{
	struct nv_worker *nw = nv_of_w(w);
	struct sf_timer *tm;

	if (revents & POLLIN)
		(void)sf_udp_poll(&nw->udp);
	while ((tm = sf_timers_pop_due(&nw->timers, w->now_ms)) != NULL)
		tm->fn(nw, tm);
	sf_udp_reap(&nw->udp);
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

	if ((rc = nv_pollset_build(w, &ps)) < 0 || (rc = nv_pairs_gen(w)) < 0)
		goto out;
	for (;;) {
		if (poll(ps.pfd, ps.n, nv_timeout(w, &ps)) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		/* Relaxed store: connection threads read it (sf_conn_count). */
		__atomic_store_n(&w->now_ms, sf_now_ms(), __ATOMIC_RELAXED);
		nv_udp(w, ps.pfd[ps.n - 1].revents);
		if (ps.pfd[0].revents) {
			unsigned cmd = sf_worker_commands(w);
			struct sf_gen *g;
			int rebuild = 0;

			if (cmd & SF_WCMD_STOP)
				break;
			if ((cmd & SF_WCMD_GEN) && !w->draining &&
			    (g = sf_worker_take_gen(w)) != NULL) {
				sf_udp_listen(&nv_of_w(w)->udp, w->gen, 0);
				sf_worker_adopt(w, g);
				sf_udp_gen_changed(&nv_of_w(w)->udp, g);
				sf_udp_listen(&nv_of_w(w)->udp, g, 1);
				if (nv_pairs_gen(w) < 0)
					sf_log_warn("worker %u: cannot start every bridge after "
						    "reload",
						    w->id);
				rebuild = 1;
			}
			/* Drain: nothing else polls the listeners, so they can close. */
			if ((cmd & SF_WCMD_DRAIN) && !w->draining) {
				/* UDP sessions end with their listeners (docs/architecture.md). */
				sf_udp_listen(&nv_of_w(w)->udp, w->gen, 0);
				sf_udp_end_all(&nv_of_w(w)->udp, SF_R_STOP);
				nv_pairs_drain(w);
				sf_worker_unlisten(w);
				rebuild = 1;
			}
			if (rebuild) {
				if ((rc = nv_pollset_build(w, &ps)) < 0)
					break;
				continue;
			}
		}
		for (i = 1; i + 1 < ps.n; i++) {
			struct sf_lsock *ls = &w->gen->ls[i - 1].socks[w->id];

			if (ps.pfd[i].fd < 0 || !(ps.pfd[i].revents & POLLIN))
				continue;
			if (!sf_rule_reserve(ls->l->rule) && !nv_meet_reserve(w, ls)) {
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
			if (sf_rule_paired(ls->l->rule))
				nv_meet_accept(w, ls, fd, &peer);
			else if (nv_accept_one(w, ls, fd, &peer))
				nv_pause(&ps, i);
		}
	}
out:
	free(ps.pfd);
	free(ps.until);
	return rc;
}

static void nv_pairs_free(struct nv_worker *nw);

static int nv_run(struct sf_worker *w)
{
	struct nv_worker nw = { .conns = NULL };
	int rc;

	sf_timers_init(&nw.timers);
	if ((rc = sf_udp_init_own(&nw.udp, w, &nw.timers)) < 0) {
		sf_timers_destroy(&nw.timers);
		return rc;
	}
	pthread_mutex_init(&nw.lock, NULL);
	pthread_cond_init(&nw.gone, NULL);
	LIST_INIT(&nw.meets);
	LIST_INIT(&nw.slots);
	nw.stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (nw.stopfd < 0)
		return -errno;
	/*
	 * nw outlives its readers: nv_stop_conns waits for every connection
	 * thread (nv_of) to be gone before this frame returns.
	 */
	/* cppcheck-suppress autoVariables */
	w->engine_state = &nw;
	sf_udp_listen(&nw.udp, w->gen, 1);
	rc = nv_accept_loop(w);
	sf_udp_destroy(&nw.udp);
	sf_timers_destroy(&nw.timers);
	nv_stop_conns(&nw);
	nv_pairs_free(&nw);
	close(nw.stopfd);
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
	.udp = 1,
	.pairs = 1,
};

/* ---- meet and bridge (worker 0; docs/tunnel.md) ---- */

#define NV_BACKOFF_MIN 100u   /* ms */
#define NV_BACKOFF_MAX 30000u /* ms */

/* The clients waiting in one meet rule, per side, found by rule name across reloads. */
struct nv_meetq {
	char name[SF_NAME_MAX];
	/* Used through the queue macros, which cppcheck does not follow into. */
	/* cppcheck-suppress unusedStructMember */
	TAILQ_HEAD(, nv_conn) q[2];
	LIST_ENTRY(nv_meetq) link;
};

/* One pair a bridge rule keeps: a thread that connects, runs the pair, connects again. */
struct nv_slot {
	struct sf_worker *w;
	char name[SF_NAME_MAX];
	unsigned idx;
	struct sf_gen *gen;   /* a reference: the generation of its next pair */
	struct sf_rule *rule; /* in gen */
	int gone;	      /* its rule was dropped (or a drain): the thread ends */
	struct nv_conn *n;    /* its pair while it lives */
	LIST_ENTRY(nv_slot) link;
};

/* Under nw->lock, from nv_put: n's slot learns that its pair is gone. */
static void nv_slot_done(struct nv_worker *nw, struct nv_conn *n)
{
	if (n->slot == NULL)
		return;
	n->slot->n = NULL;
	pthread_cond_broadcast(&nw->gone);
}

/*
 * Both sockets of n are up and blocking: copy both ways, as a forwarded
 * connection does, this thread client to upstream. Takes over the
 * caller's reference.
 */
static void nv_pair_run(struct nv_conn *n)
{
	struct timeval snd = { .tv_sec = NV_SNDTIMEO_S }, rcv = { 0 };
	uint64_t idle = n->c.rule->pol->idle_timeout_ms;
	int d, rc;

	rcv.tv_sec = (time_t)(idle / 1000);
	rcv.tv_usec = (suseconds_t)(idle % 1000) * 1000;
	for (d = 0; d < 2; d++) {
		setsockopt(n->c.fd[d], SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
		setsockopt(n->c.fd[d], SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
	}
	pthread_mutex_lock(&n->lock);
	n->refs = 2;
	pthread_mutex_unlock(&n->lock);
	rc = nv_spawn(nv_dir_main, n);
	if (rc < 0) {
		n->refs = 1;
		sf_worker_accept_failed(n->c.w, rc);
		nv_fail(n, SF_R_LIMIT, -1, rc);
		nv_put(n);
		return;
	}
	nv_copy(n, SF_C2U);
	nv_put(n);
}

/* A fresh connection of w, registered (live) under nw->lock; NULL: out of memory. */
static struct nv_conn *nv_conn_new(struct nv_worker *nw)
{
	struct nv_conn *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	pthread_mutex_init(&n->lock, NULL);
	n->refs = 1;
	n->side = -1;
	n->efd = -1;
	n->c.fd[0] = n->c.fd[1] = -1;
	n->next = nw->conns;
	if (nw->conns != NULL)
		nw->conns->prev = n;
	nw->conns = n;
	nw->live++;
	return n;
}

/* ---- meet ---- */

/* The queue of meet rule name (under nw->lock), created on first use; NULL: out of memory. */
static struct nv_meetq *nv_meetq_get(struct nv_worker *nw, const char *name)
{
	struct nv_meetq *q;

	LIST_FOREACH(q, &nw->meets, link)
	if (strcmp(q->name, name) == 0)
		return q;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	snprintf(q->name, sizeof(q->name), "%s", name);
	TAILQ_INIT(&q->q[0]);
	TAILQ_INIT(&q->q[1]);
	LIST_INSERT_HEAD(&nw->meets, q, link);
	return q;
}

/*
 * The meet rule of ls is at max_conns: take a slot all the same when a
 * client waits on the other side (the new one only joins it), else the
 * waiting clients would hold every slot for ever. 1 when taken.
 */
static int nv_meet_reserve(struct sf_worker *w, const struct sf_lsock *ls)
{
	struct nv_worker *nw = w->engine_state;
	struct sf_rule *r = ls->l->rule;
	struct nv_meetq *q;
	int ok = 0;

	if (r->mode != SF_MODE_MEET)
		return 0;
	pthread_mutex_lock(&nw->lock);
	LIST_FOREACH(q, &nw->meets, link)
	if (strcmp(q->name, r->name) == 0 && !TAILQ_EMPTY(&q->q[!ls->l->side]))
		ok = 1;
	pthread_mutex_unlock(&nw->lock);
	if (ok)
		SF_ATOMIC_ADD(r->active, 1);
	return ok;
}

/* Has the waiting client x left (FIN, reset), whether or not its thread saw it yet? */
static int nv_left(const struct nv_conn *x) { return sf_net_peer_gone(x->c.fd[SF_CLIENT]); }

/*
 * The thread of a waiting meet client: wait until it is joined (its
 * eventfd), leaves, times out (meet_timeout) or the worker stops; a
 * joined pair then runs here.
 */
static void *nv_meet_main(void *arg)
{
	struct nv_conn *n = arg;
	struct nv_worker *nw = nv_of(n);
	uint64_t until = sf_conn_meet_deadline(&n->c), now;
	int left = 0, timedout = 0, joined, err;

	for (;;) {
		struct pollfd p[2];
		int ms = -1, k;

		pthread_mutex_lock(&nw->lock);
		joined = n->joined;
		if (joined || left || timedout || nv_stopping(n) || n->reset) {
			if (!joined)
				TAILQ_REMOVE(&n->meetq->q[n->c.l->side], n, wait);
			pthread_mutex_unlock(&nw->lock);
			break;
		}
		p[0] = (struct pollfd){ .fd = n->c.fd[SF_CLIENT], .events = POLLRDHUP };
		p[1] = (struct pollfd){ .fd = n->efd, .events = POLLIN };
		pthread_mutex_unlock(&nw->lock);
		if (until != 0) {
			now = sf_now_ms();
			ms = until > now ? (int)(until - now) : 0;
		}
		k = poll(p, 2, ms);
		if (k == 0)
			timedout = 1;
		else if (k > 0 && (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			left = 1;
	}
	close(n->efd);
	n->efd = -1;
	if (joined) {
		nv_pair_run(n);
		return NULL;
	}
	if (n->reset) /* dropped by a reload or a drain (nv_fail) */
		nv_put(n);
	else if (nv_stopping(n))
		nv_abort(n, SF_R_STOP, -1, 0);
	else if (timedout)
		nv_abort(n, SF_R_IDLE_TIMEOUT, SF_CLIENT, -ETIMEDOUT);
	else if ((err = sf_net_so_error(n->c.fd[SF_CLIENT])) < 0)
		nv_abort(n, SF_R_RESET, SF_CLIENT, err);
	else
		nv_put(n); /* it left with a FIN: closed */
	return NULL;
}

/*
 * A client accepted on a meet listener (its rule slot taken): join the
 * first live client waiting on the other side, else wait in a thread
 * of its own.
 */
static void nv_meet_accept(struct sf_worker *w, struct sf_lsock *ls, int fd,
			   const struct sf_sockaddr *peer)
{
	struct nv_worker *nw = w->engine_state;
	struct sf_rule *r = ls->l->rule;
	unsigned side = ls->l->side;
	struct nv_meetq *q;
	struct nv_conn *x = NULL, *n;
	int rc;

	pthread_mutex_lock(&nw->lock);
	q = nv_meetq_get(nw, r->name);
	/* A client gone before it was accepted waits, and so leaves, as any other. */
	if (q != NULL && sf_rule_allows(r, (const struct sockaddr *)&peer->ss) &&
	    !sf_net_peer_gone(fd)) {
		TAILQ_FOREACH(x, &q->q[!side], wait)
		if (!x->joined && !nv_left(x))
			break;
	}
	if (x != NULL) {
		TAILQ_REMOVE(&q->q[!side], x, wait);
		sf_conn_meet_join(&x->c, !side, fd, peer);
		x->joined = 1;
		eventfd_write(x->efd, 1);
		pthread_mutex_unlock(&nw->lock);
		sf_rule_release(r); /* the pair holds the first client's slot */
		return;
	}
	n = nv_conn_new(nw);
	pthread_mutex_unlock(&nw->lock);
	if (n == NULL) {
		sf_rule_release(r);
		sf_net_reset(fd);
		return;
	}
	sf_conn_init(&n->c, w, ls, fd, peer);
	n->efd = eventfd(0, EFD_CLOEXEC);
	rc = sf_conn_admit(&n->c);
	if (rc == 0 && (q == NULL || n->efd < 0))
		rc = -ENOMEM;
	if (rc != 0) {
		if (n->efd >= 0)
			close(n->efd);
		rc = rc > 0 ? -EPROTO : rc;
		nv_abort(n, sf_conn_refused_reason(&n->c, rc), SF_CLIENT, rc);
		return;
	}
	pthread_mutex_lock(&nw->lock);
	n->meetq = q;
	TAILQ_INSERT_TAIL(&q->q[side], n, wait);
	pthread_mutex_unlock(&nw->lock);
	rc = nv_spawn(nv_meet_main, n);
	if (rc < 0) {
		pthread_mutex_lock(&nw->lock);
		if (!n->joined)
			TAILQ_REMOVE(&q->q[side], n, wait);
		pthread_mutex_unlock(&nw->lock);
		/* Joined meanwhile: the partner's socket goes down with it. */
		close(n->efd);
		sf_worker_accept_failed(w, rc);
		nv_abort(n, SF_R_LIMIT, -1, rc);
	}
}

/* ---- bridge ---- */

/* Nothing more to start: a drain or a stop. */
static int nv_pairs_halted(struct nv_worker *nw)
{
	return __atomic_load_n(&nw->pairs_stopping, __ATOMIC_ACQUIRE);
}

/* Sleep ms unless a drain or stop comes first. Returns 1 when it did. */
static int nv_pause_ms(struct nv_worker *nw, uint64_t ms)
{
	struct pollfd p = { .fd = nw->stopfd, .events = POLLIN };

	(void)poll(&p, 1, (int)ms);
	return nv_pairs_halted(nw);
}

/*
 * Connect side d of bridge n: non-blocking, each address in turn within
 * the connect timeout (a stop cuts it short: -ECANCELED), then made
 * blocking. Returns 0 or -errno.
 */
static int nv_bridge_connect(struct nv_conn *n, int d)
{
	struct nv_worker *nw = nv_of(n);
	int rc = sf_conn_bridge_connect(&n->c, d), fl;

	while (rc == -EINPROGRESS) {
		struct pollfd p[2] = { { .fd = n->c.fd[d], .events = POLLOUT },
				       { .fd = nw->stopfd, .events = POLLIN } };
		int k = poll(p, 2, (int)n->c.rule->pol->connect_timeout_ms), err;

		if (k < 0 && errno == EINTR)
			continue;
		if (k > 0 && p[1].revents)
			return -ECANCELED;
		if (k == 0) {
			err = -ETIMEDOUT;
		} else if (k < 0) {
			err = -errno;
		} else {
			err = sf_net_so_error(n->c.fd[d]);
			if (err == 0 && (p[0].revents & (POLLERR | POLLHUP)))
				err = -ECONNREFUSED;
			if (err == 0) {
				rc = 0;
				break;
			}
		}
		rc = sf_conn_bridge_next(&n->c, d, err);
	}
	if (rc < 0)
		return rc;
	fl = fcntl(n->c.fd[d], F_GETFL);
	if (fl < 0 || fcntl(n->c.fd[d], F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -errno;
	sf_conn_bridge_connected(&n->c, d);
	return 0;
}

/*
 * A bridge slot's thread: connect both sides, run the pair until it is
 * gone, connect again 100 ms later; while connects fail, back off,
 * doubling up to NV_BACKOFF_MAX.
 */
static void *nv_slot_main(void *arg)
{
	struct nv_slot *s = arg;
	struct sf_worker *w = s->w;
	struct nv_worker *nw = w->engine_state;
	uint64_t backoff = NV_BACKOFF_MIN, wait_ms = 0;

	for (;;) {
		struct nv_conn *n;
		int rc = 0, d;

		if (wait_ms != 0 && nv_pause_ms(nw, wait_ms))
			break;
		pthread_mutex_lock(&nw->lock);
		if (s->gone || nv_pairs_halted(nw)) {
			pthread_mutex_unlock(&nw->lock);
			break;
		}
		if ((n = nv_conn_new(nw)) != NULL) {
			sf_conn_init_bridge(&n->c, w, s->gen, s->rule);
			n->slot = s;
			s->n = n;
		}
		pthread_mutex_unlock(&nw->lock);
		if (n == NULL) {
			wait_ms = backoff;
			continue;
		}
		for (d = 0; d < 2 && rc >= 0; d++)
			rc = nv_bridge_connect(n, d);
		if (rc < 0) {
			nv_abort(n,
				 rc == -ECANCELED		  ? SF_R_STOP
				 : rc == -EMFILE || rc == -ENFILE ? SF_R_LIMIT
								  : sf_conn_connect_reason(&n->c),
				 d - 1, rc == -ECANCELED ? 0 : rc);
			wait_ms = backoff;
			backoff = backoff * 2 > NV_BACKOFF_MAX ? NV_BACKOFF_MAX : backoff * 2;
			continue;
		}
		backoff = NV_BACKOFF_MIN;
		/* Under the lock the stop takes: it sees started, or we see it. */
		pthread_mutex_lock(&nw->lock);
		if (nv_pairs_halted(nw)) {
			pthread_mutex_unlock(&nw->lock);
			nv_abort(n, SF_R_STOP, -1, 0);
			continue;
		}
		n->started = 1;
		pthread_mutex_unlock(&nw->lock);
		nv_pair_run(n);
		/* When the pair ends, not when this direction does. */
		pthread_mutex_lock(&nw->lock);
		while (s->n != NULL)
			pthread_cond_wait(&nw->gone, &nw->lock);
		pthread_mutex_unlock(&nw->lock);
		wait_ms = NV_BACKOFF_MIN;
	}
	pthread_mutex_lock(&nw->lock);
	LIST_REMOVE(s, link);
	sf_gen_unref(s->gen);
	free(s);
	nw->pair_threads--;
	pthread_cond_broadcast(&nw->gone);
	pthread_mutex_unlock(&nw->lock);
	return NULL;
}

/* Start slot idx of bridge rule r (under nw->lock). 0 or -errno. */
static int nv_slot_start(struct sf_worker *w, struct nv_worker *nw, struct sf_gen *g,
			 struct sf_rule *r, unsigned idx)
{
	struct nv_slot *s = calloc(1, sizeof(*s));
	int rc;

	if (s == NULL)
		return -ENOMEM;
	s->w = w;
	snprintf(s->name, sizeof(s->name), "%s", r->name);
	s->idx = idx;
	s->gen = g;
	s->rule = r;
	sf_gen_ref(g);
	LIST_INSERT_HEAD(&nw->slots, s, link);
	nw->pair_threads++;
	if ((rc = nv_spawn(nv_slot_main, s)) < 0) {
		LIST_REMOVE(s, link);
		nw->pair_threads--;
		sf_gen_unref(g);
		free(s);
	}
	return rc;
}

/* Reset every client waiting in q (under nw->lock): its thread ends it. */
static void nv_meetq_drop(struct nv_meetq *q)
{
	struct nv_conn *x;
	int side;

	for (side = 0; side < 2; side++)
		TAILQ_FOREACH(x, &q->q[side], wait)
	nv_fail(x, SF_R_STOP, -1, 0);
}

/*
 * Worker 0 serves generation w->gen (start, reload): slots follow its
 * bridge rules by name (a dropped one ends its pair; a kept one uses the
 * new rule from its next pair on), missing ones start; clients waiting
 * in a meet rule that is gone are reset. Returns 0 or -errno.
 */
static int nv_pairs_gen(struct sf_worker *w)
{
	struct nv_worker *nw = w->engine_state;
	struct sf_gen *g = w->gen;
	struct nv_meetq *q;
	struct nv_slot *s;
	int rc = 0;
	size_t i;
	unsigned k;

	if (w->id != SF_PAIR_WORKER)
		return 0;
	pthread_mutex_lock(&nw->lock);
	LIST_FOREACH(q, &nw->meets, link)
	{
		struct sf_rule *r = sf_gen_rule(g, q->name);

		if (r == NULL || r->mode != SF_MODE_MEET)
			nv_meetq_drop(q);
	}
	LIST_FOREACH(s, &nw->slots, link)
	{
		struct sf_rule *r = sf_gen_rule(g, s->name);

		if (s->gone)
			continue;
		if (r == NULL || r->mode != SF_MODE_BRIDGE || s->idx >= r->pol->pairs) {
			s->gone = 1;
			if (s->n != NULL)
				nv_fail(s->n, SF_R_STOP, -1, 0);
			continue;
		}
		sf_gen_ref(g);
		sf_gen_unref(s->gen);
		s->gen = g;
		s->rule = r;
	}
	for (i = 0; i < g->nrules && rc == 0; i++) {
		struct sf_rule *r = &g->rules[i];

		for (k = 0; r->mode == SF_MODE_BRIDGE && k < r->pol->pairs && rc == 0; k++) {
			LIST_FOREACH(s, &nw->slots, link)
			if (!s->gone && s->idx == k && strcmp(s->name, r->name) == 0)
				break;
			if (s == NULL)
				rc = nv_slot_start(w, nw, g, r, k);
		}
	}
	pthread_mutex_unlock(&nw->lock);
	return rc;
}

/* Drain or stop: nothing starts again; waiting meet clients are reset. */
static void nv_pairs_halt(struct nv_worker *nw)
{
	struct nv_meetq *q;

	pthread_mutex_lock(&nw->lock);
	__atomic_store_n(&nw->pairs_stopping, 1, __ATOMIC_RELEASE);
	(void)eventfd_write(nw->stopfd, 1);
	LIST_FOREACH(q, &nw->meets, link)
	nv_meetq_drop(q);
	pthread_mutex_unlock(&nw->lock);
}

static void nv_pairs_drain(struct sf_worker *w) { nv_pairs_halt(w->engine_state); }

static void nv_pairs_stop(struct nv_worker *nw) { nv_pairs_halt(nw); }

/* After the stop: every thread is gone; free the queues. */
static void nv_pairs_free(struct nv_worker *nw)
{
	struct nv_meetq *q;

	while ((q = LIST_FIRST(&nw->meets)) != NULL) {
		LIST_REMOVE(q, link);
		free(q);
	}
}
