/*
 * sockfwd: options, signals, workers and exit codes; nothing else.
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
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/options.h"
#include "sockfwd/worker.h"

enum { EXIT_USAGE = 2 };

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

/*
 * One line with the totals of every worker, at exit: what the bench reads
 * to know how much really went through splice.
 */
static void log_totals(const struct sf_worker *ws, unsigned n)
{
	struct sf_worker_stats t = { 0 };
	unsigned i;

	for (i = 0; i < n; i++) {
		t.accepted += __atomic_load_n(&ws[i].stats.accepted, __ATOMIC_RELAXED);
		t.closed += __atomic_load_n(&ws[i].stats.closed, __ATOMIC_RELAXED);
		t.resets += __atomic_load_n(&ws[i].stats.resets, __ATOMIC_RELAXED);
		t.bytes[0] += __atomic_load_n(&ws[i].stats.bytes[0], __ATOMIC_RELAXED);
		t.bytes[1] += __atomic_load_n(&ws[i].stats.bytes[1], __ATOMIC_RELAXED);
		t.spliced[0] += __atomic_load_n(&ws[i].stats.spliced[0], __ATOMIC_RELAXED);
		t.spliced[1] += __atomic_load_n(&ws[i].stats.spliced[1], __ATOMIC_RELAXED);
	}
	sf_log_info("stats: accepted=%llu closed=%llu resets=%llu c2u=%llu u2c=%llu "
		    "spliced=%llu/%llu",
		    (unsigned long long)t.accepted, (unsigned long long)t.closed,
		    (unsigned long long)t.resets, (unsigned long long)t.bytes[0],
		    (unsigned long long)t.bytes[1], (unsigned long long)t.spliced[0],
		    (unsigned long long)t.spliced[1]);
}

int main(int argc, char **argv)
{
	static struct sf_config cfg;
	static struct sf_addrlist listen_addrs, upstreams;
	const struct sf_hostport *listen_hp, *remote_hp;
	struct sf_worker *workers;
	char err[512], lbuf[SF_ADDRSTRLEN], names[128];
	struct timespec deadline;
	sigset_t sigs;
	unsigned i, started = 0;
	int rc, sig, status = 0, stuck = 0;

	rc = sf_options_parse(argc, argv, &cfg, err, sizeof(err));
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
	if (cfg.file != NULL && sf_config_load(&cfg, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	if (sf_config_finish(&cfg, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "%s", err);
	if (cfg.check) {
		printf("%s: ok, %zu rule%s\n", cfg.file, cfg.nrules, cfg.nrules > 1 ? "s" : "");
		sf_config_free(&cfg);
		return 0;
	}
	sf_log_setlevel(cfg.loglevel);
	/* Until the rule runtime lands: the first rule's first listen and upstream. */
	listen_hp = &cfg.rules[0].listen[0].hp;
	remote_hp = &cfg.rules[0].ups[0].hp;
	if (cfg.nrules > 1 || cfg.rules[0].nlisten > 1 || cfg.rules[0].nups > 1 ||
	    cfg.rules[0].listen[0].port_last != listen_hp->port)
		sf_log_warnx("this build serves only the first listen port and upstream of "
			     "rule '%s'",
			     cfg.rules[0].name);
	if (cfg.engine->probe != NULL && cfg.engine->probe(err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "-b %s: %s", cfg.engine->name, err);
	if (sf_addr_resolve(remote_hp, 0, &upstreams, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "-r: %s", err);
	if (sf_addr_resolve(listen_hp, 1, &listen_addrs, err, sizeof(err)) < 0)
		sf_fatalx(EXIT_USAGE, "-l: %s", err);

	/* SIGPIPE never kills a forwarder; sends use MSG_NOSIGNAL as well. */
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* Workers inherit this mask, so only the main thread takes signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	workers = calloc(cfg.threads, sizeof(*workers));
	if (workers == NULL)
		sf_fatal(1, "calloc");
	for (i = 0; i < cfg.threads; i++) {
		workers[i].id = i;
		workers[i].cfg = &cfg;
		workers[i].upstreams = &upstreams;
		if (sf_worker_listen(&workers[i], &listen_addrs, err, sizeof(err)) < 0)
			sf_fatalx(1, "%s", err);
	}
	for (i = 0; i < cfg.threads; i++, started++) {
		rc = sf_worker_start(&workers[i]);
		if (rc < 0) {
			errno = -rc;
			sf_log_error("cannot start worker thread %u", i);
			status = 1;
			break;
		}
	}
	if (status == 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		getsockname(workers[0].lfd, (struct sockaddr *)&ss, &len);
		sf_log_info("listening on %s, forwarding to %s:%u (engine %s, %u thread%s)",
			    sf_addr_format((struct sockaddr *)&ss, lbuf, sizeof(lbuf)),
			    remote_hp->host, remote_hp->port, cfg.engine->name, cfg.threads,
			    cfg.threads > 1 ? "s" : "");
		if (sigwait(&sigs, &sig) != 0)
			sig = SIGTERM;
		/* SIGUSR1 comes from a worker that failed: see sf_worker_fail. */
		status = sig == SIGUSR1 ? 1 : 0;
	}

	/* Stop accepting, close, and be gone within a second. */
	for (i = 0; i < started; i++)
		cfg.engine->stop(&workers[i]);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_nsec += 800 * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (i = 0; i < started; i++)
		stuck |= join_until(&workers[i], &deadline);
	/* After the joins, so connections closed by the stop count too. */
	log_totals(workers, started);
	/* A stuck worker may still use its state: leave it to exit(). */
	if (stuck)
		exit(status);
	for (i = 0; i < cfg.threads; i++)
		sf_worker_destroy(&workers[i]);
	free(workers);
	sf_config_free(&cfg);
	return status;
}
