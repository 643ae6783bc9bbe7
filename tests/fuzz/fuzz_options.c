/*
 * The command line: sf_options_parse on an argv made of the input split
 * at NUL bytes (after argv[0] "sockfwd"), then, for a command-line rule,
 * sf_config_finish (defaults, port ranges, overlaps), as main runs them.
 * With -c the file is only named, never read here (fuzz_config reads).
 *
 * Properties: a usage error leaves a message and nothing to free; a
 * run has exactly one rule with listen addresses and upstreams, or a
 * file; every value is inside its documented bounds.
 */
#include <errno.h>

#include "fuzz.h"
#include "sockfwd/config.h"
#include "sockfwd/options.h"

#define MAX_INPUT 2048
#define MAX_ARGS  64

static void check_cfg(const struct sf_config *cfg)
{
	size_t i;

	FUZZ_CHECK(cfg->threads >= 1 && cfg->threads <= SF_MAX_THREADS, "threads %u", cfg->threads);
	FUZZ_CHECK(cfg->buffer_size >= SF_MIN_BUFFER_SIZE && cfg->buffer_size <= SF_MAX_BUFFER_SIZE,
		   "buffer %zu", cfg->buffer_size);
	FUZZ_CHECK(cfg->pipe_size >= SF_MIN_PIPE_SIZE && cfg->pipe_size <= SF_MAX_PIPE_SIZE,
		   "pipe %zu", cfg->pipe_size);
	FUZZ_CHECK(cfg->engine != NULL, "no engine");
	if (cfg->file != NULL) {
		FUZZ_CHECK(cfg->nrules == 0, "-c with %zu rules", cfg->nrules);
		return;
	}
	FUZZ_CHECK(cfg->nrules == 1, "%zu rules", cfg->nrules);
	/* --meet joins two listens, --bridge two upstreams; forward has both sides. */
	if (cfg->rules[0].mode == SF_MODE_MEET)
		FUZZ_CHECK(cfg->rules[0].nlisten == 2 && cfg->rules[0].nups == 0,
			   "meet: %zu listen, %zu upstreams", cfg->rules[0].nlisten,
			   cfg->rules[0].nups);
	else if (cfg->rules[0].mode == SF_MODE_BRIDGE)
		FUZZ_CHECK(cfg->rules[0].nlisten == 0 && cfg->rules[0].nups == 2,
			   "bridge: %zu listen, %zu upstreams", cfg->rules[0].nlisten,
			   cfg->rules[0].nups);
	else
		FUZZ_CHECK(cfg->rules[0].mode == SF_MODE_FORWARD && cfg->rules[0].nlisten >= 1 &&
				   cfg->rules[0].nups >= 1 && cfg->rules[0].nups <= SF_POOL_MAX,
			   "mode %d: %zu listen, %zu upstreams", cfg->rules[0].mode,
			   cfg->rules[0].nlisten, cfg->rules[0].nups);
	for (i = 0; i < cfg->rules[0].nups; i++)
		FUZZ_CHECK(cfg->rules[0].ups[i].weight >= 1 &&
				   cfg->rules[0].ups[i].weight <= SF_WEIGHT_MAX,
			   "weight %u", cfg->rules[0].ups[i].weight);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_config cfg;
	char *argv[MAX_ARGS + 2], *buf, *p, err[512];
	int argc = 0, rc;
	size_t i;

	if (size > MAX_INPUT)
		return 0;
	if ((buf = fuzz_cstr(data, size)) == NULL)
		return 0;
	argv[argc++] = "sockfwd";
	/* Each NUL ends an argument; the last one ends at the input's end. */
	for (p = buf, i = 0; i <= size && argc <= MAX_ARGS; i++) {
		if (buf[i] == '\0') {
			argv[argc++] = p;
			p = buf + i + 1;
		}
	}
	argv[argc] = NULL;

	memset(err, 0, sizeof(err));
	rc = sf_options_parse(argc, argv, &cfg, err, sizeof(err));
	FUZZ_CHECK(rc == -EINVAL || rc == SF_OPT_RUN || rc == SF_OPT_HELP || rc == SF_OPT_VERSION,
		   "rc %d", rc);
	if (rc == -EINVAL)
		FUZZ_CHECK(err[0] != '\0', "usage error without a message");
	fuzz_check_err(err, sizeof(err));
	if (rc == SF_OPT_RUN) {
		check_cfg(&cfg);
		if (cfg.file == NULL && sf_config_finish(&cfg, err, sizeof(err)) < 0)
			FUZZ_CHECK(err[0] != '\0', "finish failed without a message");
		else if (cfg.file == NULL)
			fuzz_check_finished(&cfg);
		sf_config_free(&cfg);
	}
	free(buf);
	return 0;
}
