/*
 * Privilege drop, as nginx and HAProxy do it: the user's supplementary
 * groups from the group database (initgroups(3): nginx calls
 * initgroups(user, gid), HAProxy setgroups(0) then initgroups(user, gid)),
 * then the gid, then the uid. Every lookup happens at start, while the
 * name service is reachable and before anything listens; the drop itself
 * only makes system calls and checks their outcome.
 */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sockfwd/priv.h"

#define PW_BUF_MAX (1u << 20) /* a passwd or group entry larger than this is refused */

/* getpwnam_r and friends report "not found" as 0 with no result, or as one of these. */
static int not_found(int rc)
{
	return rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM;
}

/* A decimal id ("0" to 4294967294: -1 means "unchanged" to set*id). */
static int parse_id(const char *s, uint32_t *id)
{
	unsigned long long v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(*s - '0');
		if (v >= UINT32_MAX)
			return -ERANGE;
	}
	*id = (uint32_t)v;
	return 0;
}

/*
 * Look a user up by name (by_id 0) or uid. Returns 1 found (uid, gid and
 * name set), 0 not found, -errno when the lookup failed.
 */
static int user_lookup(const char *name, uid_t uid, int by_id, struct sf_priv *p, gid_t *gid)
{
	struct passwd pw, *res = NULL;
	size_t len = 4096;
	char *buf = NULL, *nbuf;
	int rc;

	for (;;) {
		if ((nbuf = realloc(buf, len)) == NULL) {
			free(buf);
			return -ENOMEM;
		}
		buf = nbuf;
		rc = by_id ? getpwuid_r(uid, &pw, buf, len, &res)
			   : getpwnam_r(name, &pw, buf, len, &res);
		if (rc != ERANGE || len >= PW_BUF_MAX)
			break;
		len *= 2;
	}
	if (res != NULL) {
		p->uid = pw.pw_uid;
		*gid = pw.pw_gid;
		snprintf(p->name, sizeof(p->name), "%s", pw.pw_name);
		rc = strlen(pw.pw_name) < sizeof(p->name) ? 1 : -ENAMETOOLONG;
	} else {
		rc = not_found(rc) ? 0 : -rc;
	}
	free(buf);
	return rc;
}

/* Look a group up by name. Returns 1 found (*gid set), 0 not found, -errno. */
static int group_lookup(const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	size_t len = 4096;
	char *buf = NULL, *nbuf;
	int rc;

	for (;;) {
		if ((nbuf = realloc(buf, len)) == NULL) {
			free(buf);
			return -ENOMEM;
		}
		buf = nbuf;
		rc = getgrnam_r(name, &gr, buf, len, &res);
		if (rc != ERANGE || len >= PW_BUF_MAX)
			break;
		len *= 2;
	}
	if (res != NULL) {
		*gid = gr.gr_gid;
		rc = 1;
	} else {
		rc = not_found(rc) ? 0 : -rc;
	}
	free(buf);
	return rc;
}

/* USER part: a name first, then a number (as chown(1) reads it). */
static int resolve_user(const char *user, struct sf_priv *p, gid_t *pgid, int *has_pw, char *err,
			size_t errlen)
{
	uint32_t id;
	int rc;

	*has_pw = 0;
	if ((rc = user_lookup(user, 0, 0, p, pgid)) == 0 && parse_id(user, &id) == 0) {
		p->uid = id;
		rc = user_lookup(NULL, id, 1, p, pgid);
		if (rc == 0)
			return 0; /* a bare uid: GROUP is required */
	}
	if (rc < 0) {
		snprintf(err, errlen, "--user %s: cannot look up user '%s': %s", p->spec, user,
			 strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		snprintf(err, errlen, "--user %s: unknown user '%s'", p->spec, user);
		return -ENOENT;
	}
	*has_pw = 1;
	return 0;
}

/* GROUP part: a name first, then a number. */
static int resolve_group(const char *group, struct sf_priv *p, char *err, size_t errlen)
{
	uint32_t id;
	int rc = group_lookup(group, &p->gid);

	if (rc == 0 && parse_id(group, &id) == 0) {
		p->gid = id;
		return 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "--user %s: cannot look up group '%s': %s", p->spec, group,
			 strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		snprintf(err, errlen, "--user %s: unknown group '%s'", p->spec, group);
		return -ENOENT;
	}
	return 0;
}

int sf_priv_resolve(const char *spec, struct sf_priv *p, char *err, size_t errlen)
{
	char user[sizeof(p->spec)], *group;
	gid_t pgid = 0;
	int has_pw, rc, n;

	memset(p, 0, sizeof(*p));
	if (strlen(spec) >= sizeof(p->spec)) {
		snprintf(err, errlen, "--user: '%.32s...': too long", spec);
		return -EINVAL;
	}
	memcpy(p->spec, spec, strlen(spec) + 1);
	memcpy(user, spec, strlen(spec) + 1);
	if ((group = strchr(user, ':')) != NULL)
		*group++ = '\0';
	if ((rc = resolve_user(user, p, &pgid, &has_pw, err, errlen)) < 0)
		return rc;
	if (group != NULL) {
		if ((rc = resolve_group(group, p, err, errlen)) < 0)
			return rc;
	} else if (has_pw) {
		p->gid = pgid;
	} else {
		snprintf(err, errlen,
			 "--user %s: uid %u has no passwd entry, so no primary group: give "
			 "--user %s:GROUP",
			 spec, (unsigned)p->uid, spec);
		return -ENOENT;
	}
	if (!has_pw) {
		/* No name to list groups for: the chosen group alone. */
		p->groups[0] = p->gid;
		p->ngroups = 1;
		return 0;
	}
	n = SF_PRIV_GROUPS_MAX;
	if (getgrouplist(p->name, p->gid, p->groups, &n) < 0) {
		snprintf(err, errlen, "--user %s: user '%s' is in more than %d groups", spec,
			 p->name, SF_PRIV_GROUPS_MAX);
		return -E2BIG;
	}
	p->ngroups = n;
	return 0;
}

/* The effective set's low 32 bits (CAP_SETUID, CAP_SETGID) and the whole permitted set. */
static int cap_effective(uint32_t *eff, uint32_t *perm)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0)
		return -errno;
	*eff = d[0].effective;
	*perm = d[0].permitted | d[1].permitted;
	return 0;
}

/* Real, effective and saved uid and gid are already p's. */
static int already(const struct sf_priv *p)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0)
		return 0;
	return r == p->uid && e == p->uid && s == p->uid && rg == p->gid && eg == p->gid &&
	       sg == p->gid;
}

static int can_switch(void)
{
	uint32_t eff = 0, perm = 0; /* none, should capget fail without an errno */
	uint32_t need = (1u << CAP_SETUID) | (1u << CAP_SETGID);

	return cap_effective(&eff, &perm) == 0 && (eff & need) == need;
}

int sf_priv_check(const struct sf_priv *p, char *err, size_t errlen)
{
	if (already(p) || can_switch())
		return 0;
	snprintf(err, errlen,
		 "--user %s: running as uid %u, and only root (or a process with CAP_SETUID "
		 "and CAP_SETGID) can switch to uid %u gid %u",
		 p->spec, (unsigned)geteuid(), (unsigned)p->uid, (unsigned)p->gid);
	return -EPERM;
}

/* The supplementary groups are p's, as a set (the kernel sorts them). */
static int groups_match(const struct sf_priv *p)
{
	gid_t got[SF_PRIV_GROUPS_MAX];
	int n = getgroups(SF_PRIV_GROUPS_MAX, got), i, j;

	if (n < 0)
		return 0;
	for (i = 0; i < n; i++) {
		for (j = 0; j < p->ngroups && p->groups[j] != got[i]; j++)
			;
		if (j == p->ngroups)
			return 0;
	}
	for (j = 0; j < p->ngroups; j++) {
		for (i = 0; i < n && got[i] != p->groups[j]; i++)
			;
		if (i == n)
			return 0;
	}
	return 1;
}

/* After the switch: every id is p's and nothing leads back. */
static int verify(const struct sf_priv *p, int switched, int from_root, char *err, size_t errlen)
{
	uint32_t eff = 0, perm = 0;

	if (!already(p)) {
		snprintf(err, errlen,
			 "--user %s: real, effective and saved ids are not all uid %u gid %u",
			 p->spec, (unsigned)p->uid, (unsigned)p->gid);
		return -EPERM;
	}
	if (switched && !groups_match(p)) {
		snprintf(err, errlen, "--user %s: supplementary groups were not set", p->spec);
		return -EPERM;
	}
	if (p->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen, "--user %s: root could be regained after the drop", p->spec);
		return -EPERM;
	}
	if (p->gid != 0 && p->uid != 0 && (setgid(0) == 0 || setegid(0) == 0)) {
		snprintf(err, errlen, "--user %s: gid 0 could be regained after the drop", p->spec);
		return -EPERM;
	}
	/* From root to another uid the kernel clears every capability (no SECBIT_KEEP_CAPS). */
	if (from_root && p->uid != 0 && (cap_effective(&eff, &perm) < 0 || eff != 0 || perm != 0)) {
		snprintf(err, errlen, "--user %s: capabilities remain after the drop", p->spec);
		return -EPERM;
	}
	return 0;
}

int sf_priv_nnp(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : -EPERM;
}

int sf_priv_drop(const struct sf_priv *p, char *err, size_t errlen)
{
	uid_t r = 1, e = 1, s = 1;
	int switched = 0, from_root, rc;

	(void)getresuid(&r, &e, &s);
	from_root = r == 0 || e == 0 || s == 0;

	/*
	 * Already p (started as the user, e.g. by systemd with User=): nothing
	 * to switch, and no right to touch the groups either. Any capability
	 * given on purpose (AmbientCapabilities=) stays.
	 */
	if (!already(p) || can_switch()) {
		if (setgroups((size_t)p->ngroups, p->groups) < 0) {
			rc = -errno;
			snprintf(err, errlen, "--user %s: setgroups: %s", p->spec, strerror(errno));
			return rc;
		}
		if (setresgid(p->gid, p->gid, p->gid) < 0) {
			rc = -errno;
			snprintf(err, errlen, "--user %s: setresgid(%u): %s", p->spec,
				 (unsigned)p->gid, strerror(errno));
			return rc;
		}
		if (setresuid(p->uid, p->uid, p->uid) < 0) {
			rc = -errno;
			snprintf(err, errlen, "--user %s: setresuid(%u): %s", p->spec,
				 (unsigned)p->uid, strerror(errno));
			return rc;
		}
		switched = 1;
	}
	if ((rc = verify(p, switched, from_root, err, errlen)) < 0)
		return rc;
	if ((rc = sf_priv_nnp()) < 0) {
		snprintf(err, errlen, "--user %s: PR_SET_NO_NEW_PRIVS: %s", p->spec, strerror(-rc));
		return rc;
	}
	return switched ? 0 : 1;
}
