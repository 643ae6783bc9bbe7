/*
 * The reactor's buffered transfer: a userspace buffer per direction,
 * borrowed from the worker's pool only while bytes are in flight. It is
 * the epoll engine's whole data path, and splice's for small messages.
 */
#include <errno.h>

#include "event/reactor.h"

int sf_rx_buf_empty(const struct rx_conn *x, int d)
{
	return x->d[d].buf == NULL || sf_buf_empty(x->d[d].buf);
}

void sf_rx_buf_release(struct rx_loop *l, struct rx_conn *x, int d)
{
	if (x->d[d].buf != NULL) {
		sf_bufpool_put(&l->bufs, x->d[d].buf);
		x->d[d].buf = NULL;
	}
}

/*
 * Write what the buffer holds, then read again, until a socket would
 * block or the budget is spent. A buffer left empty goes back to the
 * pool, so an idle direction holds none (a queued one: rx_pump).
 *
 * A short recv means TCP's receive queue was empty at that moment, and
 * any byte arriving later raises a new edge, so the read that could only
 * answer EAGAIN is skipped (as nginx does). Not once the socket reported
 * RDHUP: a FIN that came before the read raises no further edge, so the
 * socket is then read until EOF.
 */
int sf_rx_buf_pump(struct rx_loop *l, struct rx_conn *x, int d)
{
	struct rx_dir *dir = &x->d[d];
	int src = x->c.fd[d], dst = x->c.fd[!d], drained = 0;
	uint32_t budget = RX_BUDGET, want;
	ssize_t n;

	for (;;) {
		while (dir->buf != NULL && !sf_buf_empty(dir->buf)) {
			n = sf_buf_write(dir->buf, dst);
			if (n == -EAGAIN)
				return RX_WAIT; /* the destination's EPOLLOUT resumes us */
			if (n < 0) {
				x->err_side = !d;
				return (int)n;
			}
			sf_conn_count(&x->c, d, (uint64_t)n, 0);
		}
		if ((x->c.flags & SF_CONN_EOF(d)) || drained)
			break;
		if (budget == 0)
			return RX_MORE; /* empty: the reactor gives the buffer back */
		if (dir->buf == NULL && (dir->buf = sf_bufpool_get(&l->bufs)) == NULL) {
			x->err_side = d;
			return -ENOMEM;
		}
		want = dir->buf->cap - dir->buf->off - dir->buf->len;
		n = sf_buf_read(dir->buf, src);
		if (n > 0) {
			budget = (uint32_t)n >= budget ? 0 : budget - (uint32_t)n;
			drained = (uint32_t)n < want && !x->hup[d];
			if ((uint32_t)n == dir->buf->cap)
				dir->full_read = 1;
		} else if (n == 0) {
			sf_conn_eof(&x->c, d);
		} else if (n == -EAGAIN) {
			break;
		} else {
			x->err_side = d;
			return (int)n;
		}
	}
	/* Drained: an idle direction holds no buffer. */
	sf_rx_buf_release(l, x, d);
	return RX_WAIT;
}
