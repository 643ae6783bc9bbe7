/*
 * systemd: listening sockets passed by socket activation (LISTEN_FDS,
 * LISTEN_FDNAMES) and readiness notifications (sd_notify), both through
 * libsystemd. Outside systemd (no LISTEN_FDS for this process, no
 * NOTIFY_SOCKET) every function here does nothing.
 *
 * A passed socket whose FileDescriptorName= is the name of a rule belongs
 * to that rule, and must be bound to one of its listen addresses; any
 * other passed socket belongs to the listener whose address it is bound
 * to. Every passed socket must belong to a listener: a socket nobody
 * accepts from would queue clients forever.
 */
#ifndef SOCKFWD_SYSTEMD_H
#define SOCKFWD_SYSTEMD_H

#include <stddef.h>

struct sf_gen;
struct sf_listener;

/*
 * Match the passed sockets against the listeners of g. The first call
 * takes them from the environment (and unsets LISTEN_FDS, LISTEN_PID,
 * LISTEN_FDNAMES), checks that each is a listening TCP socket and makes
 * it non-blocking; later calls (reloads) match the same sockets again.
 * Returns the number of passed sockets (0 without socket activation), or
 * -EINVAL with a one-line message naming the socket in err.
 */
int sf_sd_match(struct sf_gen *g, char *err, size_t errlen);

/*
 * The passed socket bound to one of l's candidate addresses, or -1; when
 * found, l->addr is set to that address. The socket stays owned here:
 * callers dup it.
 */
int sf_sd_listener_fd(struct sf_listener *l);

/* Close the passed sockets (at exit; systemd keeps its own copies). */
void sf_sd_close(void);

/*
 * sd_notify: READY=1 with a STATUS= describing g (reload_failed: the
 * last reload failed and g is the generation kept); RELOADING=1 with
 * MONOTONIC_USEC=; STOPPING=1. Without NOTIFY_SOCKET, nothing.
 */
void sf_sd_ready(const struct sf_gen *g, int reload_failed);
void sf_sd_reloading(void);
void sf_sd_stopping(void);

#endif
