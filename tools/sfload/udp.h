/*
 * The UDP wire format of sfload's UDP workloads and udp-serve.
 *
 * Every datagram starts with struct udp_hdr. kind picks what the server
 * does: UDP_ECHO sends the datagram back as it came, UDP_SINK counts it
 * against its source address (datagrams, bytes, and those whose sequence
 * number was not above the highest seen: reordered or duplicated),
 * UDP_QUERY asks for those counts, answered by one UDP_REPORT datagram
 * carrying struct udp_report. seq numbers a client's datagrams from 0;
 * the bytes after the header follow udp_fill(), so an echo can be checked.
 * Integers are in host order: client and server run on the same machine.
 */
#ifndef SFLOAD_UDP_H
#define SFLOAD_UDP_H

#include <stddef.h>
#include <stdint.h>

#define UDP_MAGIC    0x53464c55u /* "SFLU" */
#define UDP_MIN_SIZE 16		 /* the header */
#define UDP_MAX_SIZE 65507	 /* the largest IPv4 UDP payload */

enum { UDP_ECHO = 'E', UDP_SINK = 'K', UDP_QUERY = 'Q', UDP_REPORT = 'R' };

struct udp_hdr {
	uint32_t magic;
	uint32_t kind;
	uint64_t seq;
};

/* What a sink counted for one source address. */
struct udp_report {
	struct udp_hdr h;
	uint64_t received;  /* sink datagrams */
	uint64_t bytes;	    /* their bytes, headers included */
	uint64_t reordered; /* seq not above the highest seen so far */
	uint64_t max_seq;   /* highest seq seen */
};

/* Write a datagram of len bytes (>= UDP_MIN_SIZE) of kind and seq into buf. */
static inline void udp_fill(void *buf, size_t len, uint32_t kind, uint64_t seq)
{
	struct udp_hdr *h = buf;
	uint8_t *p = buf;

	h->magic = UDP_MAGIC;
	h->kind = kind;
	h->seq = seq;
	for (size_t i = sizeof(*h); i < len; i++)
		p[i] = (uint8_t)(seq * 31 + i);
}

/* 1 when buf[0..len) is exactly what udp_fill(want_len, kind, seq) writes. */
static inline int udp_check(const void *buf, size_t len, size_t want_len, uint32_t kind,
			    uint64_t seq)
{
	const struct udp_hdr *h = buf;
	const uint8_t *p = buf;

	if (len != want_len || len < sizeof(*h) || h->magic != UDP_MAGIC || h->kind != kind ||
	    h->seq != seq)
		return 0;
	for (size_t i = sizeof(*h); i < len; i++)
		if (p[i] != (uint8_t)(seq * 31 + i))
			return 0;
	return 1;
}

/* udp_conn.c: what the UDP client workloads share. */
#define UC_BUF	    (4 << 20)	 /* socket buffers asked for (capped by rmem_max) */
#define UC_REPLY_NS 200000000ull /* how long one reply (echo, report) may take */

struct opts;
int udp_socket(const struct opts *o, unsigned idx, int nonblock, int bigbuf);
size_t udp_size(struct opts *o);
int udp_query(int fd, struct udp_report *rep, int tries);

#endif /* SFLOAD_UDP_H */
