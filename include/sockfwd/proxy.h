/*
 * The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2,
 * for TCP over IPv4 and IPv6: headers sent to an upstream before any
 * client byte (--proxy-protocol), and headers read from a load balancer
 * in front (--accept-proxy). Pure functions over buffers: no sockets.
 */
#ifndef SOCKFWD_PROXY_H
#define SOCKFWD_PROXY_H

#include <stddef.h>
#include <sys/types.h>

#include "addr.h"

/* The longest header sf_proxy_decode accepts (v2: 16 + 65535 is legal; we cap TLVs). */
#define SF_PROXY_V1_MAX	 107 /* including CRLF, per the spec */
#define SF_PROXY_V2_MAX	 536 /* 16-byte header + address block + TLVs we skip */
#define SF_PROXY_ENC_MAX 108 /* room for any header sf_proxy_encode writes */

/*
 * Write a version 1 or 2 header for a TCP connection from src to dst
 * (the client's address and the address it connected to) into buf.
 * Mixed families are sent with both as IPv6 (IPv4-mapped) for v2, and as
 * "TCP6" with mapped addresses for v1. Two IPv4 ends, plain or
 * IPv4-mapped (as a dual-stack listener reports them), are sent as IPv4
 * ("TCP4", 0x11) with the plain addresses. Returns the header length, or
 * -EINVAL (unknown version or family), -ENOSPC (len too small).
 */
ssize_t sf_proxy_encode(int version, const struct sockaddr *src, const struct sockaddr *dst,
			void *buf, size_t len);

struct sf_proxy_info {
	int version; /* 1 or 2 */
	int local;   /* v2 LOCAL, v1 UNKNOWN, or v2 non-TCP: keep the real peer address */
	struct sf_sockaddr src, dst; /* valid when !local */
};

/*
 * Decode the header at the start of buf (len bytes received so far).
 * Returns the header's length (> 0) with *out filled, 0 when more bytes
 * are needed to decide, or -EPROTO for anything malformed (bad
 * signature, version, command, family, length, address, or a v1 line
 * longer than 107 bytes without CRLF). -EPROTO comes as soon as the
 * bytes so far cannot start a valid header; a v1 IPv6 address is only
 * checked in full once the space after it arrives. The first byte picks
 * the version: 'P' for v1, 0x0D for v2, anything else is -EPROTO.
 * v1 UNKNOWN, v2 LOCAL, and v2 PROXY with an UNSPEC, UDP or UNIX
 * family decode with out->local set. v2 TLVs are skipped, each one's
 * length checked. *out is written only when a header is returned.
 */
ssize_t sf_proxy_decode(const void *buf, size_t len, struct sf_proxy_info *out);

#endif
