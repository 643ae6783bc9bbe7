/*
 * The metrics endpoint (metrics.h): libmicrohttpd on its own internal
 * thread (epoll), on a socket opened before the workers start, and the
 * exposition of the counters of stats.h.
 *
 * What is exported: the rules of the current generation, each with every
 * upstream of its pool; a rule (or upstream) that a reload removed stays
 * exported while it still has active connections, then disappears. Its
 * counters are kept, and go on should it come back.
 */
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sockfwd/expo.h"
#include "sockfwd/log.h"
#include "sockfwd/metrics.h"
#include "sockfwd/net.h"
#include "sockfwd/options.h"
#include "sockfwd/stats.h"
#include "sockfwd/worker.h"

/*
 * Bounds for scrapers: a few at a time, each idle for at most the
 * timeout; a request's headers must fit in the memory limit (else 431).
 */
#define MX_CONN_LIMIT	  32
#define MX_CONN_TIMEOUT	  10 /* s */
#define MX_MEMORY_LIMIT	  (32u * 1024)
#define MX_LISTEN_BACKLOG 64

static struct {
	int fd; /* the listening socket, -1 */
	char addr[SF_ADDRSTRLEN];
	struct sf_hostport hp; /* as configured, to notice a reload changing it */
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock; /* gen, against main's reload swap */
	struct sf_gen *gen;   /* a reference */
	char engine[32];
	double start_time; /* process start, Unix seconds */
	uint64_t serial;   /* scrapes, for the registry entries' seen marks */
} mx = { .fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

int sf_metrics_listen(const struct sf_config *cfg, char *err, size_t errlen)
{
	struct sf_addrlist al;
	char aerr[256];
	size_t i;
	int fd = -EADDRNOTAVAIL;

	if (!cfg->has_metrics)
		return 0;
	mx.hp = cfg->metrics;
	if (sf_addr_resolve(&cfg->metrics, 1, &al, aerr, sizeof(aerr)) < 0) {
		snprintf(err, errlen, "--metrics: %s", aerr);
		return -ENOENT;
	}
	/*
	 * SO_REUSEPORT, as the listeners: a new sockfwd started beside this
	 * one for a restart binds the same address.
	 */
	for (i = 0; i < al.n; i++) {
		fd = sf_net_listen(&al.a[i], MX_LISTEN_BACKLOG, NULL);
		if (fd >= 0 || (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL))
			break;
	}
	sf_addr_format((const struct sockaddr *)&al.a[i < al.n ? i : 0].ss, mx.addr,
		       sizeof(mx.addr));
	if (fd < 0) {
		snprintf(err, errlen, "--metrics: cannot listen on %s: %s%s", mx.addr,
			 strerror(-fd),
			 fd == -EADDRINUSE ? " (address in use by another program)" : "");
		return fd;
	}
	mx.fd = fd;
	return 0;
}

/*
 * The process's start time in Unix seconds: its start in clock ticks
 * after boot (/proc/self/stat) plus the boot time (/proc/stat), as the
 * Prometheus client libraries compute it; the current time when /proc
 * cannot tell.
 */
static double process_start_time(void)
{
	char buf[1024], *p;
	unsigned long long ticks = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f;
	int i;

	if ((f = fopen("/proc/self/stat", "r")) != NULL) {
		if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL) {
			/* After "pid (comm)", field 3 on; starttime is field 22. */
			for (i = 3, p += 2; i < 22 && p != NULL; i++) {
				p = strchr(p, ' ');
				if (p != NULL)
					p++;
			}
			if (p != NULL)
				ticks = strtoull(p, NULL, 10);
		}
		fclose(f);
	}
	if ((f = fopen("/proc/stat", "r")) != NULL) {
		while (fgets(buf, sizeof(buf), f) != NULL)
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	if (btime == 0 || hz <= 0)
		return (double)time(NULL);
	return (double)btime + (double)ticks / (double)hz;
}

/*
 * Descriptors open in this process, or 0. Since Linux 6.2 the size of
 * /proc/self/fd is that count: one stat, where reading the directory
 * costs a scrape time in proportion to the open connections. Older
 * kernels say 0 there; then the entries are counted.
 */
static uint64_t open_fds(void)
{
	struct dirent *de;
	struct stat st;
	uint64_t n = 0;
	DIR *d;

	if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
		return (uint64_t)st.st_size;
	if ((d = opendir("/proc/self/fd")) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0; /* not the directory's own */
}

/* Resident set size in bytes (/proc/self/statm), or 0. */
static uint64_t resident_bytes(void)
{
	unsigned long long size, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &rss) != 2)
		rss = 0;
	fclose(f);
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* One exported rule: its entry, sums, and its exported upstreams. */
struct mx_up {
	struct sf_stats_up *e;
	struct sf_up_sum sum;
	int current; /* in the current generation: up/down is known */
};

struct mx_rule {
	struct sf_stats_rule *e;
	struct sf_rule_sum sum;
	struct mx_up *ups;
	size_t nups;
};

struct mx_view {
	struct mx_rule *rules;
	size_t n;
};

static void view_free(struct mx_view *v)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		free(v->rules[i].ups);
	free(v->rules);
}

/* Add rule entry e (with its sums) to v. Returns 0 or -ENOMEM. */
static int view_add(struct mx_view *v, size_t cap, struct sf_stats_rule *e,
		    const struct sf_rule_sum *sum, uint64_t serial)
{
	struct mx_rule *r;
	struct sf_stats_up *u;
	size_t n = 0;

	if (v->n >= cap)
		return 0; /* entries published during this scrape: next time */
	r = &v->rules[v->n];
	r->e = e;
	r->sum = *sum;
	for (u = sf_stats_ups(e); u != NULL; u = sf_stats_up_next(u))
		n++;
	r->ups = calloc(n ? n : 1, sizeof(*r->ups));
	if (r->ups == NULL)
		return -ENOMEM;
	r->nups = 0;
	for (u = sf_stats_ups(e); u != NULL && r->nups < n; u = sf_stats_up_next(u)) {
		struct mx_up *x = &r->ups[r->nups];

		x->e = u;
		x->current = u->seen == serial;
		sf_stats_up_sum(u, &x->sum);
		if (x->current || x->sum.active > 0)
			r->nups++;
	}
	v->n++;
	return 0;
}

/*
 * The rules to export: those of g, in order, marking their upstream
 * entries with up/down from g's passive health; then the registry's
 * other entries that still have active connections.
 */
static int view_build(struct mx_view *v, struct sf_gen *g)
{
	struct sf_stats_rule *e;
	struct sf_rule_sum sum;
	uint64_t serial = ++mx.serial, now = sf_now_ms();
	size_t cap = 0, i;
	unsigned k;
	int rc = 0;

	memset(v, 0, sizeof(*v));
	for (e = sf_stats_rules(); e != NULL; e = sf_stats_rule_next(e))
		cap++;
	v->rules = calloc(cap ? cap : 1, sizeof(*v->rules));
	if (v->rules == NULL)
		return -ENOMEM;
	for (i = 0; i < g->nrules; i++) {
		struct sf_rule *r = &g->rules[i];

		for (k = 0; k < r->nups; k++) {
			struct sf_upstream *u = &r->ups[k];
			int up = __atomic_load_n(&u->down_until_ms, __ATOMIC_RELAXED) <= now;

			/* One label twice in a pool: one entry, up if either is. */
			if (u->st->seen != serial)
				u->st->up = 0;
			u->st->seen = serial;
			u->st->up |= up;
		}
	}
	for (i = 0; i < g->nrules && rc == 0; i++) {
		e = g->rules[i].st;
		if (e->seen == serial)
			continue;
		e->seen = serial;
		sf_stats_rule_sum(e, &sum);
		rc = view_add(v, cap, e, &sum, serial);
	}
	for (e = sf_stats_rules(); e != NULL && rc == 0; e = sf_stats_rule_next(e)) {
		if (e->seen == serial)
			continue;
		sf_stats_rule_sum(e, &sum);
		if (sum.active > 0)
			rc = view_add(v, cap, e, &sum, serial);
	}
	return rc;
}

static const char *const dir_names[2] = { "client_to_upstream", "upstream_to_client" };

/* The per-rule families. */
static void write_rules(struct sf_expo *x, const struct mx_view *v)
{
	size_t i;
	int k;

	sf_expo_family(x, "sockfwd_connections_accepted_total", "counter",
		       "Connections accepted, per rule.");
	for (i = 0; i < v->n; i++) {
		const char *l[] = { "rule", v->rules[i].e->name, NULL };

		sf_expo_u64(x, "sockfwd_connections_accepted_total", l, v->rules[i].sum.accepted);
	}
	sf_expo_family(x, "sockfwd_connections_active", "gauge",
		       "Connections open (accepted and not yet closed), per rule.");
	for (i = 0; i < v->n; i++) {
		const char *l[] = { "rule", v->rules[i].e->name, NULL };

		sf_expo_u64(x, "sockfwd_connections_active", l, v->rules[i].sum.active);
	}
	sf_expo_family(x, "sockfwd_connections_closed_total", "counter",
		       "Connections closed, per rule and reason (eof: both sides finished; "
		       "the others end with a reset).");
	for (i = 0; i < v->n; i++)
		for (k = 0; k < SF_R_COUNT; k++) {
			const char *l[] = { "rule", v->rules[i].e->name, "reason",
					    sf_reason_name(k), NULL };

			sf_expo_u64(x, "sockfwd_connections_closed_total", l,
				    v->rules[i].sum.closed[k]);
		}
	sf_expo_family(x, "sockfwd_bytes_total", "counter",
		       "Bytes forwarded, per rule and direction, counted as they are written.");
	for (i = 0; i < v->n; i++)
		for (k = 0; k < 2; k++) {
			const char *l[] = { "rule", v->rules[i].e->name, "direction", dir_names[k],
					    NULL };

			sf_expo_u64(x, "sockfwd_bytes_total", l, v->rules[i].sum.bytes[k]);
		}
	sf_expo_family(x, "sockfwd_spliced_bytes_total", "counter",
		       "The part of sockfwd_bytes_total that went through a pipe with splice(2).");
	for (i = 0; i < v->n; i++)
		for (k = 0; k < 2; k++) {
			const char *l[] = { "rule", v->rules[i].e->name, "direction", dir_names[k],
					    NULL };

			sf_expo_u64(x, "sockfwd_spliced_bytes_total", l,
				    v->rules[i].sum.spliced[k]);
		}
	sf_expo_family(
		x, "sockfwd_pipe_fallbacks_total", "counter",
		"Bursts the splice engine moved through a userspace buffer because no pipe "
		"could be had (its pipe cap, descriptors, fs.pipe-user-pages-soft), per rule.");
	for (i = 0; i < v->n; i++) {
		const char *l[] = { "rule", v->rules[i].e->name, NULL };

		sf_expo_u64(x, "sockfwd_pipe_fallbacks_total", l, v->rules[i].sum.pipe_fallbacks);
	}
}

/* The UDP families, for the rules that are (or were) UDP. */
static void write_udp(struct sf_expo *x, const struct mx_view *v)
{
	size_t i;
	int k, any = 0;

	for (i = 0; i < v->n; i++)
		any |= __atomic_load_n(&v->rules[i].e->udp, __ATOMIC_RELAXED);
	if (!any)
		return; /* a TCP-only configuration shows no UDP families */
	sf_expo_family(x, "sockfwd_udp_datagrams_total", "counter",
		       "UDP datagrams forwarded, per rule and direction.");
	for (i = 0; i < v->n; i++)
		for (k = 0; k < 2 && __atomic_load_n(&v->rules[i].e->udp, __ATOMIC_RELAXED); k++) {
			const char *l[] = { "rule", v->rules[i].e->name, "direction", dir_names[k],
					    NULL };

			sf_expo_u64(x, "sockfwd_udp_datagrams_total", l, v->rules[i].sum.dgrams[k]);
		}
	sf_expo_family(x, "sockfwd_udp_dropped_total", "counter",
		       "UDP datagrams dropped, per rule and reason (denied, limit, upstream, "
		       "send, queue, truncated).");
	for (i = 0; i < v->n; i++)
		for (k = 0;
		     k < SF_UD_COUNT && __atomic_load_n(&v->rules[i].e->udp, __ATOMIC_RELAXED);
		     k++) {
			const char *l[] = { "rule", v->rules[i].e->name, "reason",
					    sf_udp_drop_name(k), NULL };

			sf_expo_u64(x, "sockfwd_udp_dropped_total", l,
				    v->rules[i].sum.udp_drops[k]);
		}
	sf_expo_family(x, "sockfwd_udp_port_unreachable_total", "counter",
		       "ICMP port unreachable answers from upstreams (ECONNREFUSED on a "
		       "session's socket), per rule; the session goes on.");
	for (i = 0; i < v->n; i++) {
		const char *l[] = { "rule", v->rules[i].e->name, NULL };

		if (__atomic_load_n(&v->rules[i].e->udp, __ATOMIC_RELAXED))
			sf_expo_u64(x, "sockfwd_udp_port_unreachable_total", l,
				    v->rules[i].sum.udp_unreach);
	}
}

enum { UP_ATTEMPTS, UP_FAILURES, UP_UP, UP_ACTIVE, UP_COUNT };

static const struct {
	const char *name, *type, *help;
} up_families[UP_COUNT] = {
	[UP_ATTEMPTS] = { "sockfwd_upstream_connect_attempts_total", "counter",
			  "Connect attempts to an upstream (one per address tried)." },
	[UP_FAILURES] = { "sockfwd_upstream_connect_failures_total", "counter",
			  "Connect attempts to an upstream that failed or timed out." },
	[UP_UP] = { "sockfwd_upstream_up", "gauge",
		    "1 while passive health considers the upstream up, 0 while it is "
		    "marked down (max_fails, fail_timeout)." },
	[UP_ACTIVE] = { "sockfwd_upstream_connections_active", "gauge",
			"Connections established to the upstream and still open." },
};

/* The per-upstream families. */
static void write_upstreams(struct sf_expo *x, const struct mx_view *v)
{
	size_t i, j;
	int f;

	for (f = 0; f < UP_COUNT; f++) {
		sf_expo_family(x, up_families[f].name, up_families[f].type, up_families[f].help);
		for (i = 0; i < v->n; i++)
			for (j = 0; j < v->rules[i].nups; j++) {
				const struct mx_up *u = &v->rules[i].ups[j];
				const char *l[] = { "rule", v->rules[i].e->name, "upstream",
						    u->e->label, NULL };
				uint64_t val;

				if (f == UP_UP && !u->current)
					continue; /* removed: health no longer kept */
				val = f == UP_ATTEMPTS	 ? u->sum.attempts
				      : f == UP_FAILURES ? u->sum.failures
				      : f == UP_UP	 ? (uint64_t)u->e->up
							 : u->sum.active;
				sf_expo_u64(x, up_families[f].name, l, val);
			}
	}
}

/* The per-process families. */
static void write_process(struct sf_expo *x)
{
	const char *bl[] = { "version", SF_VERSION, "engine", mx.engine, NULL };

	sf_expo_family(x, "sockfwd_build_info", "gauge",
		       "Always 1; the labels tell the version and the engine running.");
	sf_expo_u64(x, "sockfwd_build_info", bl, 1);
	sf_expo_family(x, "process_start_time_seconds", "gauge",
		       "Start time of the process since the Unix epoch, in seconds.");
	sf_expo_double(x, "process_start_time_seconds", NULL, mx.start_time);
	sf_expo_family(x, "process_open_fds", "gauge", "Open file descriptors.");
	sf_expo_u64(x, "process_open_fds", NULL, open_fds());
	sf_expo_family(x, "process_resident_memory_bytes", "gauge",
		       "Resident memory size in bytes.");
	sf_expo_u64(x, "process_resident_memory_bytes", NULL, resident_bytes());
	sf_expo_family(x, "sockfwd_reloads_total", "counter",
		       "SIGHUP reloads that put new rules in service.");
	sf_expo_u64(x, "sockfwd_reloads_total", NULL, sf_stats_reloads());
	sf_expo_family(x, "sockfwd_reload_failures_total", "counter",
		       "SIGHUP reloads refused (invalid file, address that cannot be bound); "
		       "the running rules were kept.");
	sf_expo_u64(x, "sockfwd_reload_failures_total", NULL, sf_stats_reload_failures());
}

/* The io_uring engine's provided buffer pool (stats.h), when it runs. */
static void write_uring(struct sf_expo *x)
{
	static const struct {
		const char *name, *type, *help;
		int what;
	} f[] = {
		{ "sockfwd_uring_buffer_starved_total", "counter",
		  "Receives that found no free provided buffer in any group and waited for one.",
		  SF_UB_STARVED },
		{ "sockfwd_uring_buffer_groups_grown_total", "counter",
		  "Provided buffer groups added under load.", SF_UB_GROWN },
		{ "sockfwd_uring_buffer_groups_retired_total", "counter",
		  "Provided buffer groups given back as the load fell.", SF_UB_RETIRED },
		{ "sockfwd_uring_buffer_groups", "gauge",
		  "Provided buffer groups in service, all workers.", SF_UB_GROUPS },
		{ "sockfwd_uring_buffer_bytes", "gauge",
		  "Memory mapped for provided buffers, retired groups not yet freed included.",
		  SF_UB_BYTES },
	};
	size_t i;

	if (strcmp(mx.engine, "uring") != 0)
		return;
	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		sf_expo_family(x, f[i].name, f[i].type, f[i].help);
		sf_expo_u64(x, f[i].name, NULL, sf_stats_ubuf(f[i].what));
	}
}

int sf_metrics_render(char **text, size_t *len)
{
	struct sf_expo x;
	struct mx_view v = { NULL, 0 };
	struct sf_gen *g;
	int rc = 0;

	/* The lock only guards the pointer swap; the reference keeps g. */
	pthread_mutex_lock(&mx.lock);
	g = mx.gen;
	if (g != NULL)
		sf_gen_ref(g);
	pthread_mutex_unlock(&mx.lock);
	if (g != NULL) {
		rc = view_build(&v, g);
		sf_gen_unref(g);
	}
	sf_expo_init(&x);
	write_process(&x);
	write_uring(&x);
	if (rc == 0) {
		write_rules(&x, &v);
		write_upstreams(&x, &v);
		write_udp(&x, &v);
	}
	view_free(&v);
	if (rc == 0)
		rc = x.err;
	if (rc < 0) {
		sf_expo_free(&x);
		return rc;
	}
	*text = sf_expo_take(&x, len);
	return 0;
}

/* Queue a response of status with body (malloc'd: freed by MHD, or static). */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
			       int owned, const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body,
					    owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Set once a drain starts: /health answers 503 from then on. */
static int mx_draining;

void sf_metrics_draining(void) { __atomic_store_n(&mx_draining, 1, __ATOMIC_RELAXED); }

/*
 * Every request: GET (or HEAD) /metrics and /health (200 while serving,
 * 503 once draining, so a load balancer stops sending clients before the
 * listeners close); anything else 404.
 * A GET is answered at the second call, once its headers are complete:
 * a response queued at the first one makes libmicrohttpd close the
 * connection, where a scraper would keep it alive. Other methods are
 * answered at once (then the connection closes); a GET that sends a body
 * is dropped: no request body is ever read.
 */
static enum MHD_Result mx_handle(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 /* libmicrohttpd's MHD_AccessHandlerCallback: no const to add */
				 /* cppcheck-suppress constParameter */
				 size_t *upload_data_size, void **req_cls)
{
	static char ok[] = "ok\n", notfound[] = "not found\n", oom[] = "out of memory\n",
		    draining[] = "draining\n";
	static int seen;
	int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		  strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	char *text;
	size_t len;

	if (get && *req_cls == NULL) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (get && *upload_data_size != 0)
		return MHD_NO;
	if (get && strcmp(url, "/metrics") == 0) {
		if (sf_metrics_render(&text, &len) < 0)
			return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, oom, sizeof(oom) - 1,
				       0, "text/plain");
		return respond(conn, MHD_HTTP_OK, text, len, 1, SF_EXPO_CONTENT_TYPE);
	}
	if (get && strcmp(url, "/health") == 0) {
		if (__atomic_load_n(&mx_draining, __ATOMIC_RELAXED))
			return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, draining,
				       sizeof(draining) - 1, 0, "text/plain");
		return respond(conn, MHD_HTTP_OK, ok, sizeof(ok) - 1, 0, "text/plain");
	}
	return respond(conn, MHD_HTTP_NOT_FOUND, notfound, sizeof(notfound) - 1, 0, "text/plain");
}

/* libmicrohttpd's own messages (hostile clients, mostly): -v only. */
static void mx_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	sf_log_verbose("metrics: %s", buf);
}

int sf_metrics_start(struct sf_gen *gen, const char *engine, char *err, size_t errlen)
{
	if (mx.fd < 0)
		return 0;
	snprintf(mx.engine, sizeof(mx.engine), "%s", engine);
	mx.start_time = process_start_time();
	sf_metrics_publish(gen);
	mx.daemon = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
		mx_handle, NULL, MHD_OPTION_EXTERNAL_LOGGER, mx_log, NULL, MHD_OPTION_LISTEN_SOCKET,
		(MHD_socket)mx.fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)MX_CONN_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MX_CONN_TIMEOUT,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MX_MEMORY_LIMIT, MHD_OPTION_END);
	if (mx.daemon == NULL) {
		snprintf(err, errlen, "--metrics %s: cannot start the HTTP server", mx.addr);
		return -EIO;
	}
	sf_log_info("metrics on http://%s/metrics", mx.addr);
	return 0;
}

void sf_metrics_publish(struct sf_gen *g)
{
	struct sf_gen *old;

	if (mx.fd < 0) {
		/* Only a reload gets here without a socket. */
		if (g->cfg.has_metrics)
			sf_log_warnx("reload: metrics take effect at restart");
		return;
	}
	if (!g->cfg.has_metrics || strcmp(g->cfg.metrics.host, mx.hp.host) != 0 ||
	    g->cfg.metrics.port != mx.hp.port)
		if (mx.gen != NULL)
			sf_log_warnx("reload: a metrics address change takes effect at restart");
	sf_gen_ref(g);
	pthread_mutex_lock(&mx.lock);
	old = mx.gen;
	mx.gen = g;
	pthread_mutex_unlock(&mx.lock);
	sf_gen_unref(old);
}

void sf_metrics_stop(void)
{
	struct sf_gen *old;

	/* MHD_stop_daemon joins its thread and closes the socket it was given. */
	if (mx.daemon != NULL)
		MHD_stop_daemon(mx.daemon);
	else if (mx.fd >= 0)
		close(mx.fd);
	mx.daemon = NULL;
	mx.fd = -1;
	pthread_mutex_lock(&mx.lock);
	old = mx.gen;
	mx.gen = NULL;
	pthread_mutex_unlock(&mx.lock);
	sf_gen_unref(old);
}
