/*
 * The epoll engine: the shared reactor with the buffered transfer
 * (event/rx_buf.c): a userspace buffer per direction, borrowed from the
 * worker's pool only while bytes are in flight.
 */
#include "event/reactor.h"
#include "sockfwd/engine.h"
#include "sockfwd/worker.h"

static const struct rx_xfer ep_xfer = {
	.pump = sf_rx_buf_pump,
	.empty = sf_rx_buf_empty,
	.release = sf_rx_buf_release,
};

static int ep_run(struct sf_worker *w) { return sf_reactor_run(w, &ep_xfer); }
const struct sf_engine sf_engine_epoll = {
	.name = "epoll",
	.probe = NULL,
	.run = ep_run,
	.stop = sf_worker_stop,
	.udp = 1,
	.pairs = 1,
};
