/*
 * The per-connection policy every engine shares: choosing and connecting
 * the upstream, half-close, reset propagation, accounting and the close
 * log line. Engines move bytes; they decide nothing else.
 *
 * Directions are named by their source: SF_C2U reads the client (fd[0])
 * and writes the upstream (fd[1]); SF_U2C the reverse. So fd[dir] is the
 * source of dir and fd[!dir] its destination.
 */
#ifndef SOCKFWD_CONN_H
#define SOCKFWD_CONN_H

#include <stdint.h>

#include "addr.h"

struct sf_worker;

enum { SF_CLIENT = 0, SF_UPSTREAM = 1 };
enum { SF_C2U = 0, SF_U2C = 1 };

#define SF_CONN_EOF(d)	(1u << (d))	  /* source of d sent FIN */
#define SF_CONN_SHUT(d) (1u << (2 + (d))) /* FIN passed on to destination of d */
#define SF_CONN_CLOSED	(1u << 4)

struct sf_conn {
	struct sf_worker *w;
	int fd[2];
	unsigned flags;
	unsigned upstream; /* index in w->upstreams being tried */
	uint64_t bytes[2];
	uint64_t spliced[2];
	uint64_t start_ms;
	struct sf_sockaddr peer;
};

/* Start accounting for a freshly accepted client fd. */
void sf_conn_init(struct sf_conn *c, struct sf_worker *w, int cfd, const struct sf_sockaddr *peer);

/*
 * Open the upstream socket, trying the resolved addresses from
 * c->upstream on. Sets c->fd[SF_UPSTREAM]. Returns 0 when connected,
 * -EINPROGRESS when a non-blocking connect is under way, or -errno once
 * every address has failed (fd[SF_UPSTREAM] is then -1).
 */
int sf_conn_connect(struct sf_conn *c, int blocking);

/*
 * A non-blocking connect finished with error err (-errno): close that
 * socket and try the next address. Same returns as sf_conn_connect.
 */
int sf_conn_connect_next(struct sf_conn *c, int err);

/* Count n bytes forwarded in direction d (spliced: through a pipe). */
static inline void sf_conn_count(struct sf_conn *c, int d, uint64_t n, int spliced)
{
	c->bytes[d] += n;
	if (spliced)
		c->spliced[d] += n;
}

/* The source of d sent FIN; its bytes may still be in flight. */
static inline void sf_conn_eof(struct sf_conn *c, int d) { c->flags |= SF_CONN_EOF(d); }

/*
 * Every byte of direction d read before its FIN has been written: pass
 * the FIN on with shutdown(SHUT_WR). Returns 1 when both directions are
 * done (the caller then calls sf_conn_close), else 0.
 */
int sf_conn_shut(struct sf_conn *c, int d);

/* Both directions are done: close both sockets, log, count. */
void sf_conn_close(struct sf_conn *c, const char *reason);

/*
 * One side failed or reset (err is -errno, or 0): reset the other side
 * too (SO_LINGER 0, close), close both, log, count.
 */
void sf_conn_reset(struct sf_conn *c, const char *reason, int err);

#endif
