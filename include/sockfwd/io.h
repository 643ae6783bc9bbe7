/*
 * A descriptor registered with an event loop, with the callback its
 * readiness goes to (as Redis's ae.c file events): listeners,
 * connection sockets, the worker's command channel, later UDP sockets.
 * The loop passes its own context, so one callback serves every loop.
 */
#ifndef SOCKFWD_IO_H
#define SOCKFWD_IO_H

#include <stddef.h>
#include <stdint.h>

struct sf_io {
	int fd;
	void (*cb)(void *ctx, struct sf_io *io, uint32_t events);
};

#define SF_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
