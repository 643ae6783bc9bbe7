/*
 * The config file loader: the input is written to a file in a private
 * scratch directory and read with sf_config_load (libconfig's parser,
 * then every key and value sockfwd checks), then sf_config_finish, as
 * `sockfwd -c FILE` does.
 *
 * @include: the scratch directory holds inc.conf (a valid rule) and
 * bad.conf (a syntax error) to include. An input whose @include names
 * anything but a plain file name ([A-Za-z0-9._-], which cannot leave the
 * directory) is skipped, so the fuzzer never reads /dev/zero, a FIFO, or
 * a file of the machine.
 *
 * Properties: an error is "FILE:LINE: ..." naming a file of the scratch
 * directory; a loaded config has rules with unique names, each with
 * listen addresses and 1 to SF_POOL_MAX upstreams.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include "fuzz.h"
#include "sockfwd/config.h"
#include "sockfwd/options.h"

#define MAX_INPUT 16384

static char dir[64];
static char path[96];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void cleanup(void)
{
	if (dir[0] != '\0')
		nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *name, const char *text)
{
	char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	FUZZ_CHECK(f != NULL, "cannot create %s", p);
	fputs(text, f);
	fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	/* A file written per input: memory (/dev/shm) rather than a disk. */
	if (tmp == NULL || strlen(tmp) >= 32)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/sockfwd-fuzz.XXXXXX", tmp);
	FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
	atexit(cleanup);
	snprintf(path, sizeof(path), "%s/fuzz.conf", dir);
	write_file("inc.conf", "inc = { listen = \"127.0.0.1:9000\"; upstream = \"127.0.0.1:80\"; "
			       "};\n");
	write_file("bad.conf", "x = = ;\n");
	return 0;
}

/* 1 when every @include names a plain file of the scratch directory. */
static int includes_safe(const uint8_t *data, size_t size)
{
	static const char kw[] = "@include";
	const uint8_t *p = data, *end = data + size;

	while ((p = memmem(p, (size_t)(end - p), kw, sizeof(kw) - 1)) != NULL) {
		p += sizeof(kw) - 1;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end || *p != '"')
			continue; /* not an include, a syntax error */
		for (p++; p < end && *p != '"'; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
				return 0;
	}
	return 1;
}

static void check_loaded(const struct sf_config *cfg)
{
	size_t i, j;

	FUZZ_CHECK(cfg->nrules >= 1, "no rules");
	for (i = 0; i < cfg->nrules; i++) {
		const struct sf_rule_conf *r = &cfg->rules[i];

		FUZZ_CHECK(memchr(r->name, '\0', sizeof(r->name)) != NULL, "name not terminated");
		/* meet joins two listens, bridge two upstreams; forward has both sides. */
		if (r->mode == SF_MODE_MEET)
			FUZZ_CHECK(r->nlisten == 2 && r->nups == 0 && r->proto == SF_PROTO_TCP,
				   "meet rule %s: %zu listen, %zu upstreams, proto %d", r->name,
				   r->nlisten, r->nups, r->proto);
		else if (r->mode == SF_MODE_BRIDGE)
			FUZZ_CHECK(r->nlisten == 0 && r->nups == 2 && r->proto == SF_PROTO_TCP,
				   "bridge rule %s: %zu listen, %zu upstreams, proto %d", r->name,
				   r->nlisten, r->nups, r->proto);
		else
			FUZZ_CHECK(r->mode == SF_MODE_FORWARD && r->nlisten >= 1 && r->nups >= 1 &&
					   r->nups <= SF_POOL_MAX,
				   "rule %s: mode %d, %zu listen, %zu upstreams", r->name, r->mode,
				   r->nlisten, r->nups);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(cfg->rules[j].name, r->name) != 0, "rule %s twice",
				   r->name);
	}
}

static void check_err(const char *err, size_t errlen)
{
	fuzz_check_err(err, errlen);
	FUZZ_CHECK(strncmp(err, dir, strlen(dir)) == 0 && strchr(err, ':') != NULL,
		   "error without FILE:LINE: %s", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[] = { "sockfwd", "-c", path, NULL };
	struct sf_config cfg;
	char err[1024];
	int fd, rc;

	if (size > MAX_INPUT || !includes_safe(data, size))
		return 0;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0, "open %s", path);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "write %s", path);
	close(fd);

	rc = sf_options_parse(3, argv, &cfg, err, sizeof(err));
	FUZZ_CHECK(rc == SF_OPT_RUN, "options: %s", err);
	memset(err, 0, sizeof(err));
	rc = sf_config_load(&cfg, err, sizeof(err));
	if (rc == 0) {
		check_loaded(&cfg);
		rc = sf_config_finish(&cfg, err, sizeof(err));
		if (rc == 0)
			fuzz_check_finished(&cfg);
	}
	if (rc < 0)
		check_err(err, sizeof(err));
	sf_config_free(&cfg);
	return 0;
}
