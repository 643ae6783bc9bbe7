/*
 * The readiness loop shared by the epoll and splice engines: a small
 * loop API (descriptors registered with a callback, as Redis's ae.c;
 * timers; the worker's command channel), accept on every listener of the
 * generation, the connection lifecycle through conn.c, dispatch of
 * edge-triggered events, fairness and teardown. The engines differ only
 * in how one direction moves its bytes (their pump), which is where
 * their hot loop is.
 */
#ifndef SOCKFWD_REACTOR_H
#define SOCKFWD_REACTOR_H

#include <stdint.h>
#include <sys/queue.h>

#include "sockfwd/buf.h"
#include "sockfwd/conn.h"
#include "sockfwd/io.h"
#include "sockfwd/udp.h"

struct sf_worker;

/*
 * Bytes one direction may move per turn of the loop before others get
 * theirs. 1 MiB made a request/response neighbour of one bulk stream wait
 * 2.2-2.5 ms at p50; 256 KiB 0.6-1.2 ms, for about 10% more CPU per GB
 * at 512 splice streams (docs/benchmarks.md, "The 256 KiB budget").
 */
#define RX_BUDGET (256u << 10)

/* Pump results. */
enum { RX_WAIT = 0, RX_MORE = 1 };

/*
 * A direction's userspace buffer: the buffered transfer (rx_buf.c), the
 * epoll engine's whole data path and splice's path for small messages.
 * What else a direction keeps is its engine's, after the connection.
 */
struct rx_dir {
	struct sf_buf *buf; /* lent while bytes are in flight */
	uint8_t full_read;  /* the buffered pump filled its whole buffer */
};

struct rx_conn {
	struct sf_conn c;
	struct sf_io io[2]; /* the client and upstream sockets */
	struct rx_dir d[2];
	struct rx_conn *ready_next;
	struct rx_conn *dead_next;
	LIST_ENTRY(rx_conn) all; /* every live connection */
	uint8_t connecting;
	uint8_t dead;
	uint8_t queued;
	uint8_t more[2]; /* stopped by its budget: 0, or the turn's mark (rx_mark) */
	uint8_t hup[2];	 /* socket reported EPOLLRDHUP/HUP/ERR: read it to the end */
	int8_t err_side; /* side whose call failed, for the close line */

	/* meet and bridge (rx_pair.c) */
	uint8_t pairing;	   /* meet: waiting for a partner; bridge: connecting */
	void *pair;		   /* meet: its queue while waiting; bridge: its slot */
	TAILQ_ENTRY(rx_conn) wait; /* meet: in its queue while waiting */
	/* the engine's state per direction (rx_xfer.dir_size each) follows */
	_Alignas(16) unsigned char priv[];
};

struct rx_loop;

/*
 * How an engine moves one direction's bytes: the only part of the loop
 * that is the engine's (its hot loop).
 *
 * pump: move bytes of direction d until its socket or destination would
 * block, its source reached EOF and everything is written, or the budget
 * ran out. Returns RX_WAIT, RX_MORE (budget spent with every byte read
 * written: call again next turn), or -errno with x->err_side set (the
 * connection is then reset). On EOF it calls sf_conn_eof and leaves the
 * FIN to the reactor.
 * empty: direction d holds no byte read and not yet written.
 * release: give back what direction d borrowed, holding no byte (the
 * connection ends, or the direction waits for its next turn).
 * init/destroy: the engine's per-loop state in l->priv (may be NULL).
 */
struct rx_xfer {
	size_t dir_size;
	int (*init)(struct rx_loop *l);
	void (*destroy)(struct rx_loop *l);
	int (*pump)(struct rx_loop *l, struct rx_conn *x, int d);
	int (*empty)(const struct rx_conn *x, int d);
	void (*release)(struct rx_loop *l, struct rx_conn *x, int d);
};

struct rx_loop {
	struct sf_worker *w;
	int epfd;
	const struct rx_xfer *xf;
	void *priv; /* the engine's per-loop state */
	int stop;
	int cmd_pending; /* the command channel woke: act after the batch */
	struct sf_bufpool bufs;
	struct sf_timers timers;
	struct sf_io cmd; /* the worker's command channel */
	struct rx_conn *ready, *ready_tail;
	unsigned turn; /* turns of the loop: tells this turn's queued from the last's */
	struct rx_conn *dead;
	LIST_HEAD(, rx_conn) all;
	struct sf_udp udp;	/* UDP rules: sessions (dgram/udp.c) */
	struct rx_pairs *pairs; /* meet queues and bridge slots (rx_pair.c), worker 0 */
};

/* Run the loop of worker w, moving bytes with xf. Returns 0 after stop, or -errno. */
int sf_reactor_run(struct sf_worker *w, const struct rx_xfer *xf);

/* The engine's state of direction d of x. */
static inline void *rx_priv(struct rx_conn *x, const struct rx_loop *l, int d)
{
	return x->priv + (size_t)d * l->xf->dir_size;
}

/*
 * The reactor's own steps that meet and bridge (rx_pair.c) reuse, so a
 * pair is pumped, timed and torn down as any connection: register side's
 * socket, pump direction d, arm x's timer for its state, end x.
 */
int rx_add_sock(struct rx_loop *l, struct rx_conn *x, int side);
void rx_pump(struct rx_loop *l, struct rx_conn *x, int d);
void rx_arm(struct rx_loop *l, struct rx_conn *x);
void rx_kill(struct rx_loop *l, struct rx_conn *x, int reason, int side, int err, int reset);
/*
 * A zeroed connection of l (NULL: out of memory); once its sf_conn is
 * initialised, rx_conn_track gives it the reactor's timer callback and
 * puts it among l's live connections. Its sockets are registered apart.
 */
struct rx_conn *rx_conn_alloc(struct rx_loop *l);
void rx_conn_track(struct rx_loop *l, struct rx_conn *x);

/*
 * Meet and bridge in the reactor (rx_pair.c). Worker 0 serves them.
 * rx_meet_accept: a client accepted on a meet listener (its rule slot
 * taken). rx_pair_event / rx_pair_timer: an event or the timer of a
 * connection still pairing (a waiting meet client, a bridge connecting).
 * rx_pair_killed: x, with x->pair set, ends (from rx_kill). rx_pairs_gen:
 * the worker serves a generation (start, reload): bridge slots follow
 * its rules, meet clients of dropped rules are reset. rx_pairs_drain:
 * no new bridge connects, waiting meet clients reset. rx_pairs_stop and
 * rx_pairs_free: at teardown, before and after the connections are killed.
 */
void rx_meet_accept(struct rx_loop *l, struct sf_lsock *ls, int fd, const struct sf_sockaddr *peer);
void rx_pair_event(struct rx_loop *l, struct rx_conn *x, int side, uint32_t ev);
void rx_pair_timer(struct rx_loop *l, struct rx_conn *x);
void rx_pair_killed(struct rx_loop *l, struct rx_conn *x);
int rx_pairs_gen(struct rx_loop *l);
void rx_pairs_drain(struct rx_loop *l);
void rx_pairs_stop(struct rx_loop *l);
void rx_pairs_free(struct rx_loop *l);
/*
 * The rule of meet listener ls is at max_conns: take a slot all the same
 * when a client waits on the other side, since the new client only joins
 * it (and gives the slot back); else the waiting clients, holding every
 * slot, would wait for ever. Returns 1 when a slot was taken.
 */
int rx_meet_reserve(struct rx_loop *l, const struct sf_lsock *ls);
/* Does worker w serve listener socket ls (meet listeners: worker 0 only)? */
int rx_serves(const struct rx_loop *l, const struct sf_lsock *ls);

/* The buffered transfer (rx_buf.c), as an rx_xfer's pump, empty and release. */
int sf_rx_buf_pump(struct rx_loop *l, struct rx_conn *x, int d);
int sf_rx_buf_empty(const struct rx_conn *x, int d);
void sf_rx_buf_release(struct rx_loop *l, struct rx_conn *x, int d);

#endif
