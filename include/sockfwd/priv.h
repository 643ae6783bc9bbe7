/*
 * Privilege drop (--user USER[:GROUP]): names are resolved at start,
 * before anything listens; the ids change once every socket is open and
 * before the workers start. docs/operations.md, "Privilege drop".
 */
#ifndef SOCKFWD_PRIV_H
#define SOCKFWD_PRIV_H

#include <stddef.h>
#include <sys/types.h>

#define SF_PRIV_GROUPS_MAX 256 /* supplementary groups kept */

/* Who to become: everything looked up before the drop. */
struct sf_priv {
	char spec[256]; /* USER[:GROUP] as given, for messages */
	char name[256]; /* the passwd name, "" for a uid without one */
	uid_t uid;
	gid_t gid;			  /* GROUP, else the user's primary group */
	gid_t groups[SF_PRIV_GROUPS_MAX]; /* supplementary: initgroups(3)'s list */
	int ngroups;
};

/*
 * Resolve "USER[:GROUP]" (names, or numeric ids) into *p with
 * getpwnam_r/getgrnam_r, and the supplementary groups the user has in the
 * group database (plus the chosen gid), as initgroups(3) would set them.
 * Returns 0; -ENOENT for an unknown user or group, or a uid without a
 * passwd entry and no GROUP; another -errno when the lookup itself
 * failed. The message is in err.
 */
int sf_priv_resolve(const char *spec, struct sf_priv *p, char *err, size_t errlen);

/*
 * Can this process become p? 0 when it may (it has CAP_SETUID and
 * CAP_SETGID, as root has, or already runs as p's uid and gid), else
 * -EPERM with the reason in err.
 */
int sf_priv_check(const struct sf_priv *p, char *err, size_t errlen);

/*
 * Set PR_SET_NO_NEW_PRIVS on the calling thread (threads it creates
 * later inherit it; those already running do not): no execve can gain
 * privileges again. Returns 0 or -errno.
 */
int sf_priv_nnp(void);

/*
 * Become p: supplementary groups, then gid, then uid (real, effective
 * and saved), each step checked; then verify that every id is p's and
 * that root cannot be regained, and set PR_SET_NO_NEW_PRIVS. glibc
 * applies set*id to every thread of the process. A process that already
 * runs as p without the right to switch (started as the user) is left
 * as it is, groups and capabilities included. Returns 0 after a switch,
 * 1 when already p, or -errno with the failed step in err: the caller
 * must not go on.
 */
int sf_priv_drop(const struct sf_priv *p, char *err, size_t errlen);

#endif
