/*
 * Starting sockfwd the way a service manager would: with stderr as the
 * stream JOURNAL_STREAM names, or already running as another user. The
 * result is a struct fwd like fwd_spawn's, for every harness helper.
 */
#ifndef SOCKFWD_E2E_SPAWN_H
#define SOCKFWD_E2E_SPAWN_H

#include <sys/types.h>

#include "harness.h"

struct spawn_opts {
	int journal; /* JOURNAL_STREAM set to stderr's "DEV:INODE", as systemd does */
	int as_user; /* drop to uid/gid (no groups) before exec; needs root */
	uid_t uid;
	gid_t gid;
};

/*
 * fwd_spawn with o: argv[0] is replaced by fwd_bin(), stdout and stderr
 * go to memfds, SIGKILL when the test process dies. Does not wait.
 */
void fwd_spawn_opts(struct fwd *f, const char *const *argv, const struct spawn_opts *o);

/*
 * Run a python3 script (text) with args (NULL terminated) to its end;
 * its stdout and stderr into out. Returns the exit status, or -1 when
 * python3 cannot be run.
 */
int run_python(const char *script, const char *const *args, char *out, size_t outlen);

/* Write f's stderr into a new file under /tmp; its path into path. */
void stderr_to_file(const struct fwd *f, char *path, size_t len);

#endif
