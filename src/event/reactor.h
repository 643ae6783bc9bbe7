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
#include "sockfwd/pipepool.h"

struct sf_worker;

/* Bytes one direction may move per wakeup before others get a turn. */
#define RX_BUDGET (1u << 20)

enum rx_mode {
	RX_SPLICE = 0, /* socket -> pipe -> socket */
	RX_BUF,	       /* userspace buffer, for good (epoll engine; splice refused) */
	RX_BUF_BURST,  /* userspace buffer until drained (no pipe to be had) */
	RX_BUF_SMALL,  /* small messages: a buffer until a read fills it */
};

/* Pump results. */
enum { RX_WAIT = 0, RX_MORE = 1 };

struct rx_dir {
	struct sf_buf *buf;   /* lent while bytes are in flight */
	struct sf_pipe *pipe; /* lent while bytes are in flight */
	uint32_t inpipe;      /* bytes in pipe: tells "pipe full" from "socket empty" */
	uint8_t mode;	      /* enum rx_mode */
	uint8_t full_read;    /* the buffered pump filled its whole buffer */
	uint8_t small_bursts; /* splice bursts in a row that moved little */
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
	uint8_t more[2]; /* direction stopped by its budget */
	uint8_t hup[2];	 /* socket reported EPOLLRDHUP/HUP/ERR: read it to the end */
	int8_t err_side; /* side whose call failed, for the close line */
};

struct rx_loop;

/*
 * Move bytes of direction d until its socket or destination would block,
 * its source reached EOF and everything is written, or the budget ran out.
 * Returns RX_WAIT, RX_MORE (call again soon), or -errno with x->err_side
 * set (the connection is then reset). On EOF it calls sf_conn_eof and
 * leaves the FIN to the reactor.
 */
typedef int (*rx_pump_fn)(struct rx_loop *l, struct rx_conn *x, int d);

struct rx_loop {
	struct sf_worker *w;
	int epfd;
	rx_pump_fn pump;
	uint8_t mode; /* enum rx_mode every new direction starts in */
	int stop;
	int cmd_pending; /* the command channel woke: act after the batch */
	struct sf_bufpool bufs;
	struct sf_pipepool pipes;
	struct sf_timers timers;
	struct sf_io cmd; /* the worker's command channel */
	struct rx_conn *ready, *ready_tail;
	struct rx_conn *dead;
	LIST_HEAD(, rx_conn) all;
};

/*
 * Run the loop of worker w: every direction starts in mode (enum rx_mode)
 * and moves its bytes with pump. Returns 0 after stop, or -errno.
 */
int sf_reactor_run(struct sf_worker *w, rx_pump_fn pump, int mode);

/* The buffered pump (eng_epoll.c), also splice's fallback. */
int sf_rx_pump_buf(struct rx_loop *l, struct rx_conn *x, int d);

/* Give back what direction d borrowed; a pipe still holding bytes is closed. */
void sf_rx_dir_release(struct rx_loop *l, struct rx_dir *dir);

#endif
