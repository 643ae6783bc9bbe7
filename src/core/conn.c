/*
 * Per-connection policy shared by every engine: upstream connect with
 * fail-over across resolved addresses, half-close, reset propagation,
 * accounting and the close log line.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/worker.h"

#define STAT_ADD(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define STAT_SUB(field, n) __atomic_fetch_sub(&(field), (n), __ATOMIC_RELAXED)

void sf_conn_init(struct sf_conn *c, struct sf_worker *w, int cfd, const struct sf_sockaddr *peer)
{
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->fd[SF_CLIENT] = cfd;
	c->fd[SF_UPSTREAM] = -1;
	c->start_ms = sf_now_ms();
	if (peer != NULL)
		c->peer = *peer;
	STAT_ADD(w->stats.accepted, 1);
	STAT_ADD(w->stats.active, 1);
}

int sf_conn_connect(struct sf_conn *c, int blocking)
{
	const struct sf_addrlist *ups = c->w->upstreams;
	int rc = -ENOENT;

	for (; c->upstream < ups->n; c->upstream++) {
		rc = sf_net_connect(&ups->a[c->upstream], blocking, &c->fd[SF_UPSTREAM]);
		if (rc == 0 || rc == -EINPROGRESS)
			return rc;
		/* Out of descriptors: another address will not help. */
		if (rc == -EMFILE || rc == -ENFILE)
			break;
	}
	return rc;
}

int sf_conn_connect_next(struct sf_conn *c, int err)
{
	/* sf_conn_connect already tried every address when it left no socket. */
	if (c->fd[SF_UPSTREAM] < 0)
		return err;
	close(c->fd[SF_UPSTREAM]);
	c->fd[SF_UPSTREAM] = -1;
	c->upstream++;
	if (c->upstream >= c->w->upstreams->n)
		return err;
	return sf_conn_connect(c, 0);
}

int sf_conn_shut(struct sf_conn *c, int d)
{
	/*
	 * ENOTCONN here means the destination already went away; the next
	 * write or read on it reports that, so nothing to do now.
	 */
	(void)shutdown(c->fd[!d], SHUT_WR);
	c->flags |= SF_CONN_SHUT(d);
	return (c->flags & (SF_CONN_SHUT(SF_C2U) | SF_CONN_SHUT(SF_U2C))) ==
	       (SF_CONN_SHUT(SF_C2U) | SF_CONN_SHUT(SF_U2C));
}

/* Fold the connection into its worker's counters and log its close line. */
static void conn_finish(struct sf_conn *c, const char *reason, int err, int reset)
{
	struct sf_worker *w = c->w;
	char cbuf[SF_ADDRSTRLEN], ubuf[SF_ADDRSTRLEN];
	uint64_t dur = sf_now_ms() - c->start_ms;

	c->flags |= SF_CONN_CLOSED;
	STAT_SUB(w->stats.active, 1);
	STAT_ADD(w->stats.closed, 1);
	if (reset)
		STAT_ADD(w->stats.resets, 1);
	STAT_ADD(w->stats.bytes[0], c->bytes[0]);
	STAT_ADD(w->stats.bytes[1], c->bytes[1]);
	STAT_ADD(w->stats.spliced[0], c->spliced[0]);
	STAT_ADD(w->stats.spliced[1], c->spliced[1]);
	if (sf_log_level() < SF_LOG_VERBOSE)
		return;
	if (c->upstream < w->upstreams->n)
		sf_addr_format((const struct sockaddr *)&w->upstreams->a[c->upstream].ss, ubuf,
			       sizeof(ubuf));
	else
		strcpy(ubuf, "-");
	sf_log_verbose("close %s -> %s c2u=%llu u2c=%llu spliced=%llu/%llu time=%llu.%03llus "
		       "%s=%s%s%s",
		       sf_addr_format((const struct sockaddr *)&c->peer.ss, cbuf, sizeof(cbuf)),
		       ubuf, (unsigned long long)c->bytes[0], (unsigned long long)c->bytes[1],
		       (unsigned long long)c->spliced[0], (unsigned long long)c->spliced[1],
		       (unsigned long long)(dur / 1000u), (unsigned long long)(dur % 1000u),
		       reset ? "reset" : "reason", reason, err ? ": " : "",
		       err ? strerror(-err) : "");
}

void sf_conn_close(struct sf_conn *c, const char *reason)
{
	close(c->fd[SF_CLIENT]);
	if (c->fd[SF_UPSTREAM] >= 0)
		close(c->fd[SF_UPSTREAM]);
	c->fd[SF_CLIENT] = c->fd[SF_UPSTREAM] = -1;
	conn_finish(c, reason, 0, 0);
}

void sf_conn_reset(struct sf_conn *c, const char *reason, int err)
{
	sf_net_reset(c->fd[SF_CLIENT]);
	if (c->fd[SF_UPSTREAM] >= 0)
		sf_net_reset(c->fd[SF_UPSTREAM]);
	c->fd[SF_CLIENT] = c->fd[SF_UPSTREAM] = -1;
	conn_finish(c, reason, err, 1);
}
