/*
 * sockfwd: options, the first generation, workers, signals (stop,
 * reload) and exit codes; nothing else.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "sockfwd/config.h"
#include "sockfwd/drain.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/metrics.h"
#include "sockfwd/options.h"
#include "sockfwd/priv.h"
#include "sockfwd/rule.h"
#include "sockfwd/systemd.h"
#include "sockfwd/stats.h"
#include "sockfwd/worker.h"

enum { EXIT_USAGE = 2 };

#define GEN_ACK_MS 5000 /* how long a reload waits for every worker to take it */

struct sf_main {
	int argc;
	char **argv;
	const struct sf_engine *engine;
	unsigned nworkers;
	struct sf_worker *workers;
	struct sf_gen *gen; /* the current generation (main's reference) */
	struct sf_drain drain;
	struct sf_priv priv; /* --user, resolved */
	int drop;	     /* become priv once listening */
};

/* Raise the soft descriptor limit to the hard one: forwarding is fds. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			sf_log_warn("cannot raise RLIMIT_NOFILE");
	}
}

/*
 * Parse argv and the config file it names into *cfg, completed.
 * Returns an enum sf_opt_result, or -EINVAL with the message in err.
 */
static int load_config(struct sf_main *m, struct sf_config *cfg, char *err, size_t errlen)
{
	int rc = sf_options_parse(m->argc, m->argv, cfg, err, errlen);

	if (rc != SF_OPT_RUN)
		return rc;
	if (cfg->file != NULL && (rc = sf_config_load(cfg, err, errlen)) < 0)
		return rc;
	return sf_config_finish(cfg, err, errlen);
}

/*
 * Does engine e serve every rule of g? A UDP rule needs an engine that
 * serves UDP. Returns 0, or -EINVAL with a message naming the rule.
 */
static int check_engine(const struct sf_engine *e, const struct sf_gen *g, char *err, size_t errlen)
{
	char names[128];
	size_t i;

	for (i = 0; i < g->nrules && !e->udp; i++) {
		if (g->rules[i].proto != SF_PROTO_UDP)
			continue;
		snprintf(err, errlen,
			 "-b %s: engine %s does not serve UDP (rule '%s'); UDP rules need one of: "
			 "%s",
			 e->name, e->name, g->rules[i].name,
			 sf_engine_udp_names(names, sizeof(names), ", "));
		return -EINVAL;
	}
	return 0;
}

/* The line of a meet or bridge rule: its two ends. */
static void log_pair_rule(const struct sf_main *m, const struct sf_gen *g, const struct sf_rule *r)
{
	char a[SF_ADDRSTRLEN] = "-", b[SF_ADDRSTRLEN] = "-";
	size_t j;

	if (r->mode == SF_MODE_BRIDGE) {
		sf_log_info("rule '%s': bridging %s and %s, %u pair%s (engine %s, worker 0)",
			    r->name, r->ups[0].label, r->ups[1].label, r->pol->pairs,
			    r->pol->pairs > 1 ? "s" : "", m->engine->name);
		return;
	}
	for (j = 0; j < g->nls; j++) {
		if (g->ls[j].rule == r)
			sf_addr_format((const struct sockaddr *)&g->ls[j].addr.ss,
				       g->ls[j].side ? b : a, SF_ADDRSTRLEN);
	}
	sf_log_info("rule '%s': meeting clients of %s and %s (engine %s, worker 0)", r->name, a, b,
		    m->engine->name);
}

/* One line per rule at start and after a reload. */
static void log_rules(const struct sf_main *m, const struct sf_gen *g)
{
	char lbuf[SF_ADDRSTRLEN];
	size_t i, j, n;

	for (i = 0; i < g->nrules; i++) {
		const struct sf_rule *r = &g->rules[i];
		const struct sf_listener *first = NULL;

		if (sf_rule_paired(r)) {
			log_pair_rule(m, g, r);
			continue;
		}
		for (j = 0, n = 0; j < g->nls; j++) {
			if (g->ls[j].rule != r)
				continue;
			if (first == NULL)
				first = &g->ls[j];
			n++;
		}
		if (first == NULL)
			continue;
		sf_log_info("rule '%s': listening on %s%s%s, forwarding to %s%s (engine %s, %u "
			    "thread%s)",
			    r->name, r->proto == SF_PROTO_UDP ? "udp " : "",
			    sf_addr_format((const struct sockaddr *)&first->addr.ss, lbuf,
					   sizeof(lbuf)),
			    n > 1 ? " and more" : "", r->ups[0].label,
			    r->nups > 1 ? " and more" : "", m->engine->name, m->nworkers,
			    m->nworkers > 1 ? "s" : "");
	}
}

/*
 * SIGHUP: read the file again. An invalid file, or an address that
 * cannot be bound, leaves the running rules untouched. Otherwise every
 * worker takes the new generation; addresses in both keep their sockets.
 */
static void reload(struct sf_main *m)
{
	struct sf_config cfg;
	struct sf_gen *g;
	char err[1024];
	uint64_t deadline;
	unsigned i;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	rc = load_config(m, &cfg, err, sizeof(err));
	if (rc == SF_OPT_RUN && cfg.file == NULL) {
		sf_log_warnx("SIGHUP: no config file (-c) to reload; ignored");
		sf_config_free(&cfg);
		return;
	}
	if (rc != SF_OPT_RUN) {
		sf_log_error("reload failed, keeping the running rules: %s", err);
		sf_stats_reloaded(0);
		sf_config_free(&cfg);
		return;
	}
	if (cfg.engine != m->engine || cfg.threads != m->nworkers)
		sf_log_warnx("reload: engine and threads changes take effect at restart");
	/* Workers size their buffer and pipe pools, and the pipe cap, at start. */
	if (cfg.buffer_size != m->gen->cfg.buffer_size || cfg.pipe_size != m->gen->cfg.pipe_size)
		sf_log_warnx("reload: buffer_size and pipe_size changes take effect at restart");
	if (sf_engine_check_modes(m->engine, &cfg, err, sizeof(err)) < 0) {
		sf_log_error("reload failed, keeping the running rules: %s", err);
		sf_stats_reloaded(0);
		sf_config_free(&cfg);
		return;
	}
	if (strcmp(cfg.user, m->gen->cfg.user) != 0)
		sf_log_warnx("reload: a user change takes effect at restart");
	sf_log_setlevel(cfg.loglevel);
	sf_log_setformat(cfg.log_format);
	rc = sf_gen_build(&cfg, m->nworkers, &g, err, sizeof(err));
	sf_config_free(&cfg);
	if (rc < 0) {
		sf_log_error("reload failed, keeping the running rules: %s", err);
		sf_stats_reloaded(0);
		return;
	}
	if (check_engine(m->engine, g, err, sizeof(err)) < 0 ||
	    sf_sd_match(g, err, sizeof(err)) < 0 ||
	    sf_gen_listen(g, m->gen, err, sizeof(err)) < 0) {
		sf_log_error("reload failed, keeping the running rules: %s", err);
		sf_stats_reloaded(0);
		sf_gen_unref(g);
		return;
	}
	for (i = 0; i < m->nworkers; i++)
		sf_worker_post_gen(&m->workers[i], g);
	/* Wait until every worker serves g, so reloads never overlap. */
	deadline = sf_now_ms() + GEN_ACK_MS;
	for (i = 0; i < m->nworkers; i++) {
		while (__atomic_load_n(&m->workers[i].gen, __ATOMIC_ACQUIRE) != g &&
		       sf_now_ms() < deadline)
			usleep(1000);
	}
	sf_gen_unref(m->gen);
	m->gen = g;
	sf_metrics_publish(g);
	sf_stats_reloaded(1);
	sf_log_info("reloaded %s", g->cfg.file);
	log_rules(m, g);
}

/*
 * Wait for a worker thread at most until deadline; a worker stuck past it
 * is abandoned, since exit() ends it anyway.
 */
static int join_until(struct sf_worker *w, const struct timespec *deadline)
{
	if (pthread_timedjoin_np(w->thread, NULL, deadline) == 0)
		return 0;
	sf_log_warnx("worker %u did not stop in time", w->id);
	return -1;
}

/* The stats line: text for the bench and people, fields in JSON. */
static void log_stats(const struct sf_worker_stats *t)
{
	const struct sf_log_kv kv[] = {
		SF_KV_U("accepted", t->accepted),
		SF_KV_U("closed", t->closed),
		SF_KV_U("resets", t->resets),
		SF_KV_U("bytes_c2u", t->bytes[0]),
		SF_KV_U("bytes_u2c", t->bytes[1]),
		SF_KV_U("spliced_c2u", t->spliced[0]),
		SF_KV_U("spliced_u2c", t->spliced[1]),
		SF_KV_U("uring_starved", sf_stats_ubuf(SF_UB_STARVED)),
		SF_KV_U("uring_grown", sf_stats_ubuf(SF_UB_GROWN)),
		SF_KV_U("uring_retired", sf_stats_ubuf(SF_UB_RETIRED)),
		SF_KV_U("pipe_fallbacks", t->pipe_fallbacks),
	};

	sf_log_event(SF_LOG_NORMAL, "stats", kv, sizeof(kv) / sizeof(kv[0]),
		     "stats: accepted=%llu closed=%llu resets=%llu c2u=%llu u2c=%llu "
		     "spliced=%llu/%llu uring_starved=%llu uring_grown=%llu uring_retired=%llu "
		     "pipe_fallbacks=%llu",
		     (unsigned long long)t->accepted, (unsigned long long)t->closed,
		     (unsigned long long)t->resets, (unsigned long long)t->bytes[0],
		     (unsigned long long)t->bytes[1], (unsigned long long)t->spliced[0],
		     (unsigned long long)t->spliced[1],
		     (unsigned long long)sf_stats_ubuf(SF_UB_STARVED),
		     (unsigned long long)sf_stats_ubuf(SF_UB_GROWN),
		     (unsigned long long)sf_stats_ubuf(SF_UB_RETIRED),
		     (unsigned long long)t->pipe_fallbacks);
}

/*
 * One line with the totals of every worker, at exit: what the bench reads
 * to know how much really went through splice.
 */
static void log_totals(const struct sf_worker *ws, unsigned n)
{
	struct sf_worker_stats t = { 0 };
	unsigned i;

	for (i = 0; i < n; i++) {
		t.accepted += SF_ATOMIC_GET(ws[i].stats.accepted);
		t.closed += SF_ATOMIC_GET(ws[i].stats.closed);
		t.resets += SF_ATOMIC_GET(ws[i].stats.resets);
		t.bytes[0] += SF_ATOMIC_GET(ws[i].stats.bytes[0]);
		t.bytes[1] += SF_ATOMIC_GET(ws[i].stats.bytes[1]);
		t.spliced[0] += SF_ATOMIC_GET(ws[i].stats.spliced[0]);
		t.spliced[1] += SF_ATOMIC_GET(ws[i].stats.spliced[1]);
		t.pipe_fallbacks += SF_ATOMIC_GET(ws[i].stats.pipe_fallbacks);
	}
	log_stats(&t);
}

/*
 * The UDP rules' totals at exit, when there were any: sessions (counted
 * as connections per rule, not in the line above), datagrams and bytes
 * each way, drops and ICMP port unreachable answers.
 */
static void log_udp_totals(void)
{
	const struct sf_stats_rule *e;
	struct sf_rule_sum s, t;
	uint64_t drops = 0;
	int any = 0, k;

	memset(&t, 0, sizeof(t));
	for (e = sf_stats_rules(); e != NULL; e = sf_stats_rule_next(e)) {
		if (!__atomic_load_n(&e->udp, __ATOMIC_RELAXED))
			continue;
		any = 1;
		sf_stats_rule_sum(e, &s);
		t.accepted += s.accepted;
		for (k = 0; k < 2; k++) {
			t.dgrams[k] += s.dgrams[k];
			t.bytes[k] += s.bytes[k];
		}
		for (k = 0; k < SF_UD_COUNT; k++)
			drops += s.udp_drops[k];
		t.udp_unreach += s.udp_unreach;
	}
	if (!any)
		return;
	{
		const struct sf_log_kv kv[] = {
			SF_KV_U("sessions", t.accepted),
			SF_KV_U("datagrams_c2u", t.dgrams[0]),
			SF_KV_U("datagrams_u2c", t.dgrams[1]),
			SF_KV_U("bytes_c2u", t.bytes[0]),
			SF_KV_U("bytes_u2c", t.bytes[1]),
			SF_KV_U("dropped", drops),
			SF_KV_U("unreachable", t.udp_unreach),
		};

		sf_log_event(SF_LOG_NORMAL, "stats_udp", kv, sizeof(kv) / sizeof(kv[0]),
			     "stats udp: sessions=%llu datagrams=%llu/%llu c2u=%llu u2c=%llu "
			     "dropped=%llu unreachable=%llu",
			     (unsigned long long)t.accepted, (unsigned long long)t.dgrams[0],
			     (unsigned long long)t.dgrams[1], (unsigned long long)t.bytes[0],
			     (unsigned long long)t.bytes[1], (unsigned long long)drops,
			     (unsigned long long)t.udp_unreach);
	}
}

/*
 * --user: look the names up now, before anything listens; an unknown user
 * or group is a usage error. Unless only checking (-t), make sure the
 * switch will be allowed, and set PR_SET_NO_NEW_PRIVS while no thread
 * exists yet: it is per thread, so every thread, started before the drop
 * or after, carries it.
 */
static void priv_prepare(struct sf_main *m, const struct sf_config *cfg)
{
	char err[1024];
	int rc;

	if (cfg->user[0] == '\0')
		return;
	rc = sf_priv_resolve(cfg->user, &m->priv, err, sizeof(err));
	if (rc < 0)
		sf_fatalx(rc == -ENOENT || rc == -EINVAL ? EXIT_USAGE : 1, "%s", err);
	if (cfg->check)
		return;
	if (sf_priv_check(&m->priv, err, sizeof(err)) < 0)
		sf_fatalx(1, "%s", err);
	if ((rc = sf_priv_nnp()) < 0) {
		errno = -rc;
		sf_fatal(1, "PR_SET_NO_NEW_PRIVS");
	}
	m->drop = 1;
}

/*
 * --user: become the user once every socket is open and before the
 * workers start; any failed step ends the process (exit 1).
 */
static void priv_drop(struct sf_main *m)
{
	char err[1024];
	int rc;

	if (!m->drop)
		return;
	if ((rc = sf_priv_drop(&m->priv, err, sizeof(err))) < 0)
		sf_fatalx(1, "%s", err);
	if (rc > 0)
		sf_log_info("already running as uid %u gid %u: nothing to drop, groups and "
			    "capabilities left as they are",
			    (unsigned)m->priv.uid, (unsigned)m->priv.gid);
	else
		sf_log_info("privileges dropped: uid %u%s%s%s gid %u, %d supplementary group%s",
			    (unsigned)m->priv.uid, m->priv.name[0] ? " (" : "", m->priv.name,
			    m->priv.name[0] ? ")," : ",", (unsigned)m->priv.gid, m->priv.ngroups,
			    m->priv.ngroups == 1 ? "" : "s");
}

/* Take signals until a stop; returns the exit status. */
static int serve(struct sf_main *m, sigset_t *sigs)
{
	int sig;

	for (;;) {
		if (sigwait(sigs, &sig) != 0)
			return 0;
		switch (sig) {
		case SIGHUP: {
			const struct sf_gen *old = m->gen;

			sf_sd_reloading();
			reload(m);
			/* A failed reload keeps the old generation: READY=1 all the same. */
			sf_sd_ready(m->gen, m->gen == old);
			break;
		}
		case SIGUSR1: /* a worker failed: see sf_worker_fail */
			return 1;
		case SF_SIG_DRAINED: /* only meant for a drain: ignored */
			break;
		case SIGTERM:
			/* The current generation's value: a reload may have changed it. */
			if (m->gen->cfg.drain_timeout_ms == 0)
				return 0;
			sf_sd_stopping(); /* at the start of the drain, not its end */
			sf_metrics_draining();
			return sf_drain_run(&m->drain, m->workers, m->nworkers,
					    m->gen->cfg.drain_timeout_ms, sigs);
		default:
			return 0;
		}
	}
}

int main(int argc, char **argv)
{
	static struct sf_main m;
	struct sf_config cfg;
	char err[1024], names[128];
	struct timespec deadline;
	sigset_t sigs;
	unsigned i, started = 0;
	int rc, status = 0, stuck = 0;

	sf_log_init();
	m.argc = argc;
	m.argv = argv;
	memset(&cfg, 0, sizeof(cfg));
	rc = load_config(&m, &cfg, err, sizeof(err));
	if (rc == SF_OPT_HELP) {
		fputs(sf_usage(), stdout);
		return 0;
	}
	if (rc == SF_OPT_VERSION) {
		puts(sf_version_string(names, sizeof(names)));
		return 0;
	}
	if (rc < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	sf_log_setlevel(cfg.loglevel);
	sf_log_setformat(cfg.log_format);
	priv_prepare(&m, &cfg);
	m.engine = cfg.engine;
	m.nworkers = cfg.threads;
	if (!cfg.check && m.engine->probe != NULL && m.engine->probe(err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "-b %s: %s", m.engine->name, err);
	if (sf_engine_check_modes(m.engine, &cfg, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	if (sf_gen_build(&cfg, m.nworkers, &m.gen, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	if (check_engine(m.engine, m.gen, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	if (m.gen->cfg.check) {
		printf("%s: OK (%zu rule%s, %zu listener%s)\n", m.gen->cfg.file, m.gen->nrules,
		       m.gen->nrules > 1 ? "s" : "", m.gen->nls, m.gen->nls > 1 ? "s" : "");
		return 0;
	}

	/* SIGPIPE never kills a forwarder; sends use MSG_NOSIGNAL as well. */
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* Sockets passed by systemd are matched before anything is bound. */
	if (sf_sd_match(m.gen, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	/* Nothing listens until the whole configuration is valid. */
	if (sf_gen_listen(m.gen, NULL, err, sizeof(err)) < 0)
		sf_fatalx(1, "%s", err);
	if ((rc = sf_metrics_listen(&m.gen->cfg, err, sizeof(err))) < 0)
		sf_fatalx(rc == -ENOENT ? EXIT_USAGE : 1, "%s", err);
	/* Workers inherit this mask, so only the main thread takes signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SF_SIG_DRAINED);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	if (sf_metrics_start(m.gen, m.engine->name, err, sizeof(err)) < 0)
		sf_fatalx(1, "%s", err);

	m.workers = calloc(m.nworkers, sizeof(*m.workers));
	if (m.workers == NULL)
		sf_fatal(1, "calloc");
	for (i = 0; i < m.nworkers; i++) {
		rc = sf_worker_init(&m.workers[i], i, m.engine, m.gen->cfg.buffer_size,
				    m.gen->cfg.pipe_size, m.gen);
		if (rc < 0) {
			errno = -rc;
			sf_fatal(1, "worker %u", i);
		}
	}
	/*
	 * Every listener is open: drop root now, before any worker runs (the
	 * workers set up their rings and pipes as the user). The metrics
	 * socket must be opened before this line too.
	 */
	priv_drop(&m);
	for (i = 0; i < m.nworkers; i++, started++) {
		rc = sf_worker_start(&m.workers[i]);
		if (rc < 0) {
			errno = -rc;
			sf_log_error("cannot start worker thread %u", i);
			status = 1;
			break;
		}
	}
	if (status == 0) {
		log_rules(&m, m.gen);
		sf_sd_ready(m.gen, 0);
		status = serve(&m, &sigs);
	}
	sf_sd_stopping();

	/* Stop accepting, reset what is open, and be gone within a second. */
	sf_metrics_stop();
	for (i = 0; i < started; i++)
		m.engine->stop(&m.workers[i]);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_nsec += 800 * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (i = 0; i < started; i++)
		stuck |= join_until(&m.workers[i], &deadline);
	/* After the joins, so connections closed by the stop count too. */
	sf_drain_report(&m.drain, m.workers, started);
	log_totals(m.workers, started);
	log_udp_totals();
	/* A stuck worker may still use its state: leave it to exit(). */
	if (stuck)
		exit(status);
	for (i = 0; i < m.nworkers; i++)
		sf_worker_destroy(&m.workers[i]);
	free(m.workers);
	sf_gen_unref(m.gen);
	sf_sd_close();
	return status;
}
