/*
 * --metrics ADDR: an HTTP endpoint (libmicrohttpd, on its own thread)
 * serving GET /metrics in the Prometheus text format and GET /health.
 * It reads the workers' counters (stats.h) with plain loads, never a lock
 * a worker takes, so a slow or hostile scraper cannot stall forwarding;
 * the only lock it shares is the current generation's, with main's
 * reload swap.
 *
 * Main calls, in order: sf_metrics_listen once the listeners are open
 * (and before any privilege drop), sf_metrics_start once signals are
 * blocked (the HTTP thread inherits the mask), sf_metrics_publish after
 * each reload, sf_metrics_stop at exit. Without --metrics they do nothing.
 */
#ifndef SOCKFWD_METRICS_H
#define SOCKFWD_METRICS_H

#include <stddef.h>

#include "config.h"
#include "rule.h"

/*
 * Open the metrics socket at cfg->metrics, when set. Returns 0, -ENOENT
 * (the address does not resolve: a config error) or another -errno
 * (cannot bind), with a message naming the address in err.
 */
int sf_metrics_listen(const struct sf_config *cfg, char *err, size_t errlen);

/*
 * Serve on the socket opened by sf_metrics_listen, exporting gen (a
 * reference is taken) for engine. Returns 0 (also without a socket) or
 * -errno with a message in err.
 */
int sf_metrics_start(struct sf_gen *gen, const char *engine, char *err, size_t errlen);

/* Export g from now on (after a reload; a reference is taken). */
void sf_metrics_publish(struct sf_gen *g);

/*
 * A drain started: /health answers 503 "draining" from now on, while
 * /metrics goes on serving until sf_metrics_stop.
 */
void sf_metrics_draining(void);

/* Stop serving, close the socket, drop the reference. */
void sf_metrics_stop(void);

/*
 * Write the whole exposition into *text (malloc'd, *len bytes): what
 * GET /metrics answers. Returns 0 or -ENOMEM.
 */
int sf_metrics_render(char **text, size_t *len);

#endif
