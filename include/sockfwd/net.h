/*
 * Socket helpers (as Redis's anet.c): every socket is created with
 * SOCK_NONBLOCK (unless asked blocking) and SOCK_CLOEXEC.
 */
#ifndef SOCKFWD_NET_H
#define SOCKFWD_NET_H

#include <stdint.h>

#include "addr.h"

/* Socket buffer sizes asked for a TCP socket (sndbuf, rcvbuf keys); 0: the kernel's. */
struct sf_sockbufs {
	uint32_t snd;
	uint32_t rcv;
};

/*
 * A non-blocking listening socket on a, with SO_REUSEADDR and
 * SO_REUSEPORT (one listener per worker), IPV6_V6ONLY off, and the
 * buffer sizes of bufs (may be NULL) before it listens. Returns the fd
 * or -errno.
 */
int sf_net_listen(const struct sf_sockaddr *a, int backlog, const struct sf_sockbufs *bufs);

/*
 * A non-blocking UDP socket bound to a, with SO_REUSEADDR and SO_REUSEPORT
 * (one per worker: the kernel keeps a client on one of them), IPV6_V6ONLY
 * off, SO_RXQ_OVFL (the kernel's drop count comes with each datagram),
 * SO_RCVBUF SF_UDP_RCVBUF (capped by the kernel at net.core.rmem_max),
 * UDP_GRO (a burst of one client's datagrams may arrive as one buffer,
 * sent on with UDP_SEGMENT), and, for a wildcard address, IP_PKTINFO /
 * IPV6_RECVPKTINFO so that a reply can leave from the address the client
 * wrote to. Returns the fd or
 * -errno.
 */
int sf_net_udp_bind(const struct sf_sockaddr *a);

/* Receive buffer asked for a UDP listener socket: 4 MiB, as QUIC servers advise. */
#define SF_UDP_RCVBUF (4 << 20)

/* 1 when a is the IPv4 or IPv6 wildcard address. */
int sf_addr_is_wildcard(const struct sf_sockaddr *a);

/*
 * accept4 one connection (non-blocking unless blocking is set, CLOEXEC).
 * TCP_NODELAY comes from the listener (sf_net_listen sets it; Linux
 * copies it to every accepted socket). peer may be NULL. Returns the fd or -errno; EINTR and
 * ECONNABORTED are retried.
 */
int sf_net_accept(int lfd, struct sf_sockaddr *peer, int blocking);

/*
 * Connect to a. Non-blocking unless blocking is set: then -EINPROGRESS
 * can come back with *fdp set, and completion is told by writability and
 * sf_net_so_error. A blocking connect gives up after timeout_ms (0:
 * the kernel's) and returns -EINPROGRESS with *fdp set. TCP_NODELAY is
 * set, and the buffer sizes of bufs (may be NULL) before connect. Returns 0 (connected),
 * -EINPROGRESS, or -errno (nothing left open).
 */
int sf_net_connect(const struct sf_sockaddr *a, int blocking, uint64_t timeout_ms,
		   const struct sf_sockbufs *bufs, int *fdp);

/*
 * SO_SNDBUF and SO_RCVBUF of fd, each unless 0 (the kernel's autotuning
 * stays). Set before connect or listen so the window scale agrees with
 * the receive buffer; accepted sockets inherit a listener's. The kernel
 * caps the value at net.core.wmem_max / rmem_max, then doubles it. Best
 * effort: a size the kernel refuses leaves its autotuning, no error.
 */
void sf_net_set_bufs(int fd, const struct sf_sockbufs *bufs);

/* SO_KEEPALIVE with idle 60 s, interval 10 s, 6 probes; or off. Best effort. */
void sf_net_keepalive(int fd, int on);

/* TCP_NODELAY, best effort: a failure only costs latency. */
void sf_net_set_nodelay(int fd);

/* Pending socket error (SO_ERROR) as -errno, or 0. */
int sf_net_so_error(int fd);

/*
 * Has the peer of connected socket fd gone (FIN or reset received), even
 * with unread bytes before it? A poll, without waiting. Returns 1 or 0.
 */
int sf_net_peer_gone(int fd);

/* Arrange for close(fd) to send RST rather than FIN (SO_LINGER 0). */
void sf_net_set_rst(int fd);

/* Set SO_LINGER 0 and close: the peer sees a reset. */
void sf_net_reset(int fd);

#endif
