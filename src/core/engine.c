/*
 * The table of engines compiled into this binary.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sockfwd/config.h"
#include "sockfwd/engine.h"

static const struct sf_engine *const engines[] = {
	&sf_engine_naive,
	&sf_engine_epoll,
	&sf_engine_splice,
#ifdef SF_HAVE_URING
	&sf_engine_uring,
#endif
};

#define NENGINES (sizeof(engines) / sizeof(engines[0]))

const struct sf_engine *sf_engine_default(void) { return &sf_engine_splice; }

char *sf_engine_names(char *buf, size_t len, const char *sep)
{
	size_t i, off = 0;

	buf[0] = '\0';
	for (i = 0; i < NENGINES && off < len; i++)
		off += snprintf(buf + off, len - off, "%s%s", i ? sep : "", engines[i]->name);
	return buf;
}

char *sf_engine_udp_names(char *buf, size_t len, const char *sep)
{
	size_t i, off = 0;
	int n = 0;

	buf[0] = '\0';
	for (i = 0; i < NENGINES && off < len; i++)
		if (engines[i]->udp)
			off += snprintf(buf + off, len - off, "%s%s", n++ ? sep : "",
					engines[i]->name);
	return buf;
}

const struct sf_engine *sf_engine_find(const char *name, char *err, size_t errlen)
{
	char names[128];
	size_t i;

	for (i = 0; i < NENGINES; i++)
		if (strcmp(engines[i]->name, name) == 0)
			return engines[i];
	if (strcmp(name, "uring") == 0)
		snprintf(err, errlen,
			 "this build lacks the io_uring engine (rebuild with make URING=1, or use "
			 "-b splice)");
	else
		snprintf(err, errlen, "unknown engine '%s' (this build has: %s)", name,
			 sf_engine_names(names, sizeof(names), ", "));
	return NULL;
}

int sf_engine_check_modes(const struct sf_engine *e, const struct sf_config *cfg, char *err,
			  size_t errlen)
{
	char names[128];
	size_t i, off = 0;

	if (e->pairs)
		return 0;
	for (i = 0; i < cfg->nrules; i++) {
		const struct sf_rule_conf *r = &cfg->rules[i];

		if (r->mode == SF_MODE_FORWARD)
			continue;
		names[0] = '\0';
		for (size_t k = 0; k < NENGINES && off < sizeof(names); k++)
			if (engines[k]->pairs)
				off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
							off ? ", " : "", engines[k]->name);
		if (cfg->file != NULL)
			snprintf(err, errlen,
				 "%s: rule '%s': engine %s does not serve mode %s (engines that "
				 "do: %s)",
				 cfg->file, r->name, e->name, sf_mode_name(r->mode), names);
		else
			snprintf(err, errlen,
				 "--%s: engine %s does not serve it (use -b with one of: %s)",
				 sf_mode_name(r->mode), e->name, names);
		return -EINVAL;
	}
	return 0;
}
