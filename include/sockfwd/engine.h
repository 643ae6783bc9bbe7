/*
 * The engines compiled into this binary, as an ops table chosen at run
 * time so the bench compares them in one binary.
 */
#ifndef SOCKFWD_ENGINE_H
#define SOCKFWD_ENGINE_H

#include <stddef.h>

struct sf_worker;

struct sf_engine {
	const char *name;
	/* 0 if usable on this kernel, else -errno with a message in err. */
	int (*probe)(char *err, size_t errlen);
	/* The worker's loop; returns after stop, 0 or -errno. */
	int (*run)(struct sf_worker *w);
	/* Ask run to return; async-signal-safe. */
	void (*stop)(struct sf_worker *w);
	/*
	 * Connections run on threads of their own, not the worker's: its
	 * counters then have several writers (stats.h).
	 */
	int conn_threads;
	/* Serves UDP rules (protocol = udp); the others refuse them at start and reload. */
	int udp;
	/* Serves meet and bridge rules (config mode), not only forward ones. */
	int pairs;
};

/*
 * Find an engine by name. Returns it, or NULL with a message in err (an
 * unknown name, or an engine this build lacks).
 */
const struct sf_engine *sf_engine_find(const char *name, char *err, size_t errlen);
/*
 * Can e run every rule of cfg? Returns 0, or -EINVAL with a message
 * naming the first rule whose mode e does not serve and the engines that do.
 */
struct sf_config;
int sf_engine_check_modes(const struct sf_engine *e, const struct sf_config *cfg, char *err,
			  size_t errlen);

/* The default engine (splice). */
const struct sf_engine *sf_engine_default(void);
/* Names of the engines compiled in that serve UDP, separated by sep, into buf. */
char *sf_engine_udp_names(char *buf, size_t len, const char *sep);
/* Space-separated names of the engines compiled in, into buf. */
char *sf_engine_names(char *buf, size_t len, const char *sep);

extern const struct sf_engine sf_engine_naive;
extern const struct sf_engine sf_engine_epoll;
extern const struct sf_engine sf_engine_splice;
#ifdef SF_HAVE_URING
extern const struct sf_engine sf_engine_uring;
#endif

#endif
