/*
 * The per-connection policy every engine shares: admission (allow/deny,
 * the PROXY header of --accept-proxy), choosing and connecting the
 * upstream with fail-over and passive health, the `connected` hook
 * (keepalive, the PROXY header sent upstream), timeouts, half-close,
 * reset propagation, accounting and the close log line. Engines move
 * bytes and call these; they decide nothing else.
 *
 * Directions are named by their source: SF_C2U reads the client (fd[0])
 * and writes the upstream (fd[1]); SF_U2C the reverse. So fd[dir] is the
 * source of dir and fd[!dir] its destination.
 *
 * Lifecycle, as every engine drives it:
 *   sf_conn_init          accepted (the rule's max_conns slot is taken)
 *   sf_conn_admit         allowed? header to read first?
 *   sf_conn_read_proxy    (--accept-proxy) until it returns 1
 *   sf_conn_connect       first attempt; sf_conn_connect_next per failure
 *   sf_conn_connected     the upstream is up: then bytes flow
 *   sf_conn_shut / sf_conn_close / sf_conn_reset
 * with sf_conn_deadline telling when the connection's one timer is due
 * and sf_conn_expired what that means.
 */
#ifndef SOCKFWD_CONN_H
#define SOCKFWD_CONN_H

#include <stdint.h>

#include "addr.h"
#include "rule.h"
#include "stats.h"
#include "timer.h"
#include "worker.h"

struct sf_worker;

enum { SF_CLIENT = 0, SF_UPSTREAM = 1 };
enum { SF_C2U = 0, SF_U2C = 1 };

#define SF_CONN_EOF(d)	 (1u << (d))	   /* source of d sent FIN */
#define SF_CONN_SHUT(d)	 (1u << (2 + (d))) /* FIN passed on to destination of d */
#define SF_CONN_CLOSED	 (1u << 4)
#define SF_CONN_PROXY	 (1u << 5) /* a PROXY header is still to be read */
#define SF_CONN_UP	 (1u << 6) /* connected: counted in its upstream's active */
#define SF_CONN_TIMEDOUT (1u << 7) /* the last connect attempt timed out */
#define SF_CONN_NOFD	 (1u << 8) /* the upstream socket failed: out of descriptors */

struct sf_conn {
	struct sf_worker *w;
	struct sf_gen *gen; /* a reference, so the rule outlives a reload */
	struct sf_rule *rule;
	struct sf_rule_ctr *ctr; /* the rule's counters of this connection's worker */
	const struct sf_listener *l;
	int fd[2];
	unsigned flags;
	int up;		/* upstream being tried or used, -1 before */
	unsigned addr;	/* its resolved address being tried */
	uint64_t tried; /* upstreams tried, bit per index */
	uint64_t bytes[2];
	uint64_t spliced[2];
	uint64_t start_ms;
	uint64_t last_ms;	/* last byte written either way (idle timeout) */
	struct sf_inaddr peer;	/* the client: its socket's, or its PROXY header's */
	struct sf_inaddr local; /* where it connected to (PROXY headers) */
	struct sf_timer timer;
	char *hdr; /* --accept-proxy: header bytes read so far */
	uint16_t hdr_len;
	uint8_t kind;		  /* enum sf_mode of its rule */
	uint8_t bup;		  /* bridge: sides connected, a bit per side */
	unsigned baddr[2];	  /* bridge: address of side's upstream being tried */
	struct sf_inaddr partner; /* meet: the client of the second listen address */
};

/*
 * A client fd was accepted on ls (its rule's slot already taken with
 * sf_rule_reserve): start accounting, take a generation reference.
 */
void sf_conn_init(struct sf_conn *c, struct sf_worker *w, struct sf_lsock *ls, int cfd,
		  const struct sf_sockaddr *peer);

/*
 * Decide on a new connection. Returns 0 to connect upstream now, 1 when
 * a PROXY header must be read first (sf_conn_read_proxy when the client
 * is readable, within SF_PROXY_TIMEOUT), or -EACCES when the client is
 * refused (the caller resets it with SF_R_DENIED).
 */
int sf_conn_admit(struct sf_conn *c);

/*
 * Read the client's PROXY header, without waiting when nonblock is set
 * (else blocking, bounded by the socket's receive timeout): peeks, then consumes exactly the
 * header, so no client byte is lost. Returns 1 when read (the address it carries is now the peer;
 * allow/deny applied), 0 when more bytes are needed, or -errno: -EPROTO malformed or truncated,
 * -EACCES refused by the lists, other errors from recv. The caller resets with SF_R_PROXY_HEADER
 * (SF_R_DENIED for -EACCES).
 */
int sf_conn_read_proxy(struct sf_conn *c, int nonblock);

/*
 * Open the upstream socket: choose an upstream (balance, health) and try
 * its addresses, then the next upstream, until one connects or is under
 * way. Sets fd[SF_UPSTREAM]. Returns 0 when connected, -EINPROGRESS when
 * a non-blocking connect is under way (completion is told by
 * writability; the connect timeout is the caller's timer), or -errno
 * once every upstream failed (fd[SF_UPSTREAM] is then -1).
 */
int sf_conn_connect(struct sf_conn *c, int blocking);

/*
 * The attempt under way failed with err (-errno; -ETIMEDOUT when the
 * caller's timer fired): close that socket, count the failure, go on to
 * the next address or upstream. Same returns as sf_conn_connect.
 */
int sf_conn_connect_next(struct sf_conn *c, int err);

/*
 * The upstream connect completed: record it for health and leastconn,
 * set keepalive, send the PROXY header (before any client byte). Returns
 * 0, or -errno (the caller resets the connection).
 */
int sf_conn_connected(struct sf_conn *c);

/*
 * When the connection's timer is due (CLOCK_MONOTONIC ms), or 0 for
 * none: the connect timeout while connecting (from now), the header
 * deadline while a PROXY header is awaited, else the idle timeout after
 * the last byte.
 */
uint64_t sf_conn_deadline(const struct sf_conn *c, int connecting, uint64_t now);

/*
 * The timer fired at now on an established connection: returns 1 when
 * it is idle (the caller resets with SF_R_IDLE_TIMEOUT), else 0 and the
 * caller re-arms at sf_conn_deadline.
 */
int sf_conn_idle(const struct sf_conn *c, uint64_t now);

/*
 * Count n bytes forwarded in direction d (spliced: through a pipe), in
 * the connection and in its rule's counters, as they move, so /metrics
 * shows a long transfer's progress. The worker's own counter block: no
 * lock, no locked add (stats.h). The time of the last byte, for the idle
 * timeout, is the loop's clock: no clock read per write.
 */
static inline void sf_conn_count(struct sf_conn *c, int d, uint64_t n, int spliced)
{
	int sh = c->w->ctr_shared;

	c->bytes[d] += n;
	sf_ctr_add(&c->ctr->bytes[d], n, sh);
	if (spliced) {
		c->spliced[d] += n;
		sf_ctr_add(&c->ctr->spliced[d], n, sh);
	}
	/* Relaxed: naive's connection threads read the clock its accept loop writes. */
	__atomic_store_n(&c->last_ms, __atomic_load_n(&c->w->now_ms, __ATOMIC_RELAXED),
			 __ATOMIC_RELAXED);
}

/* The source of d sent FIN; its bytes may still be in flight. */
static inline void sf_conn_eof(struct sf_conn *c, int d) { c->flags |= SF_CONN_EOF(d); }

/*
 * Every byte of direction d read before its FIN has been written: pass
 * the FIN on with shutdown(SHUT_WR). Returns 1 when both directions are
 * done (the caller then calls sf_conn_close), else 0. closing: the caller
 * closes both sockets at once, in this thread, with no operation of its
 * own still holding them; then the last FIN is left to that close. The
 * threads of naive (a stop may come between) and the ring of uring (the
 * uring soak lost bytes without the shutdown, not yet understood) pass 0.
 */
int sf_conn_shut(struct sf_conn *c, int d, int closing);

/* Both directions are done: close both sockets, log, count. */
void sf_conn_close(struct sf_conn *c);

/*
 * End the connection with a reset on both sides (SO_LINGER 0, close):
 * reason is an enum sf_reason, side the socket whose failure caused it
 * (SF_CLIENT, SF_UPSTREAM, or -1), err a -errno or 0. Logs and counts.
 */
void sf_conn_reset(struct sf_conn *c, int reason, int side, int err);

/*
 * The reason a failed connect ends with: refused, connect-timeout, or
 * limit when no descriptor was left for the upstream socket.
 */
int sf_conn_connect_reason(const struct sf_conn *c);

/*
 * The reason a connection refused before its upstream connect ends with,
 * from the -errno of sf_conn_admit or sf_conn_read_proxy: denied, limit
 * (memory, descriptors), proxy-header while a header was awaited, else
 * reset.
 */
int sf_conn_refused_reason(const struct sf_conn *c, int err);

/*
 * Meet (listen to listen): a client accepted on a meet listener is an
 * sf_conn_init connection waiting for its partner, with fd[SF_CLIENT] its
 * socket; its rule slot is held while it waits. When a client arrives on
 * the other address, it joins the waiting one: fd[0] becomes the client
 * of the rule's first listen address and fd[1] the second's, so SF_C2U is
 * first-to-second whoever came first. A pair counts as one connection
 * (accepted once, when its first client arrives); the joining client's
 * rule slot is given back by the caller. From then on the pair is an
 * established connection: sf_conn_shut, sf_conn_close, sf_conn_reset.
 */

/*
 * The client fd (address peer) of listen side !wside joins c, waiting on
 * side wside. Returns the slot of fd[] that now holds the waiting
 * client's socket (wside).
 */
int sf_conn_meet_join(struct sf_conn *c, unsigned wside, int fd, const struct sf_sockaddr *peer);

/* When a waiting client's meet_timeout is due (ms), or 0 for never. */
uint64_t sf_conn_meet_deadline(const struct sf_conn *c);

/*
 * Bridge (connect to connect): side d of the connection is connected to
 * upstream d of its rule (exactly two). The connection is counted when
 * it starts (accepted), its connects with the upstreams' attempts,
 * failures and opened counters and passive health, as a forward
 * connect; each side tries its upstream's resolved addresses in turn.
 * Both sides connected: an established connection as any other.
 */
void sf_conn_init_bridge(struct sf_conn *c, struct sf_worker *w, struct sf_gen *g,
			 struct sf_rule *r);

/*
 * Start side d's non-blocking connect from its current address on; sets
 * fd[d]. Returns 0 when connected, -EINPROGRESS when under way (writable
 * when done; the timeout is the caller's), or -errno once every address
 * failed (fd[d] is -1).
 */
int sf_conn_bridge_connect(struct sf_conn *c, int d);

/* Side d's attempt failed with err (-ETIMEDOUT from the caller's timer): the next address. */
int sf_conn_bridge_next(struct sf_conn *c, int d, int err);

/* Side d connected: health, counters, keepalive. Returns 1 once both sides are, else 0. */
int sf_conn_bridge_connected(struct sf_conn *c, int d);

#endif
