/*
 * The configuration file (libconfig syntax, docs/config.md) and the
 * values it shares with the command line: durations, upstreams, listen
 * addresses with port ranges, policy keys. Nothing here opens a socket or
 * resolves a name; rule.c does that with the result.
 *
 * Every mistake in a file is reported as "FILE:LINE: key.path: problem",
 * the line being the one of the offending setting or list element.
 */
#include <errno.h>
#include <libconfig.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config_priv.h"
#include "sockfwd/config.h"
#include "sockfwd/engine.h"
#include "sockfwd/log.h"
#include "sockfwd/options.h"

#define POLICY_KEYS                                                                                \
	"balance, max_fails, fail_timeout, connect_timeout, idle_timeout, keepalive, "             \
	"max_conns, allow, deny, proxy_protocol, accept_proxy, sndbuf, rcvbuf, udp_timeout, "      \
	"max_sessions, meet_timeout, pairs"
#define GLOBAL_KEYS                                                                                \
	"engine, threads, buffer_size, pipe_size, log_level, log_format, metrics, user, "          \
	"drain_timeout, defaults or rules"
#define UPS_SEP " \t,"

static const char *const balance_names[] = {
	[SF_BAL_ROUNDROBIN] = "roundrobin",
	[SF_BAL_LEASTCONN] = "leastconn",
	[SF_BAL_SOURCE] = "source",
	[SF_BAL_FIRST] = "first",
};

/* What a rule gets for a key neither it nor the defaults set. */
static const struct sf_policy builtin_policy = {
	.balance = SF_BAL_ROUNDROBIN,
	.max_fails = SF_DEFAULT_MAX_FAILS,
	.fail_timeout_ms = SF_DEFAULT_FAIL_TIMEOUT_MS,
	.connect_timeout_ms = SF_DEFAULT_CONNECT_TIMEOUT_MS,
	.idle_timeout_ms = 0,
	.keepalive = 1,
	.max_conns = 0,
	.proxy_protocol = SF_PP_NONE,
	.accept_proxy = 0,
	.udp_timeout_ms = SF_DEFAULT_UDP_TIMEOUT_MS,
	.max_sessions = SF_DEFAULT_MAX_SESSIONS,
	.meet_timeout_ms = 0,
	.pairs = 1,
};

static const char *const mode_names[] = {
	[SF_MODE_FORWARD] = "forward",
	[SF_MODE_MEET] = "meet",
	[SF_MODE_BRIDGE] = "bridge",
};

/* ---- values shared with the command line ---- */

int sf_parse_duration(const char *s, uint64_t *ms)
{
	uint64_t v = 0, unit;
	const char *p = s;
	int big = 0;

	if (s == NULL || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		/* Clamp so a long string of digits cannot wrap around. */
		if (v > SF_DURATION_MAX_MS) {
			v = SF_DURATION_MAX_MS;
			big = 1;
		}
	}
	if (*p == '\0' || strcmp(p, "s") == 0)
		unit = 1000;
	else if (strcmp(p, "ms") == 0)
		unit = 1;
	else if (strcmp(p, "m") == 0)
		unit = 60 * 1000;
	else if (strcmp(p, "h") == 0)
		unit = 3600 * 1000;
	else
		return -EINVAL;
	if (big || v > SF_DURATION_MAX_MS / unit)
		return -ERANGE;
	*ms = v * unit;
	return 0;
}

/* Parse the N of "weight=N" (len characters at p). 0, or -1 if not 1 to SF_WEIGHT_MAX. */
static int parse_weight(const char *p, size_t len, unsigned *w)
{
	unsigned v = 0;
	size_t i;

	if (len == 0 || len > 4)
		return -1;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v < 1 || v > SF_WEIGHT_MAX)
		return -1;
	*w = v;
	return 0;
}

int sf_upstream_parse(const char *s, struct sf_upstream_conf *u, char *err, size_t errlen)
{
	char addr[SF_HOST_MAX + 16];
	const char *p;
	size_t len;

	memset(u, 0, sizeof(*u));
	u->weight = 1;
	if (s == NULL || *s == '\0') {
		snprintf(err, errlen, "empty upstream (expected host:port)");
		return -EINVAL;
	}
	len = strcspn(s, UPS_SEP);
	if (len >= sizeof(addr)) {
		snprintf(err, errlen, "upstream address longer than %zu characters",
			 sizeof(addr) - 1);
		return -EINVAL;
	}
	memcpy(addr, s, len);
	addr[len] = '\0';
	if (sf_addr_parse_range(addr, &u->hp, &u->port_last, err, errlen) < 0)
		return -EINVAL;
	if (u->hp.host[0] == '\0') {
		snprintf(err, errlen, "'%s': the upstream needs a host", addr);
		return -EINVAL;
	}
	for (p = s + len; *p != '\0'; p += len) {
		p += strspn(p, UPS_SEP);
		len = strcspn(p, UPS_SEP);
		if (len == 0)
			break;
		if (len == 6 && strncmp(p, "backup", 6) == 0) {
			u->backup = 1;
		} else if (len >= 7 && strncmp(p, "weight=", 7) == 0) {
			if (parse_weight(p + 7, len - 7, &u->weight) < 0) {
				snprintf(err, errlen,
					 "'%s': weight '%.*s' is not a number from 1 to %u", s,
					 (int)(len - 7), p + 7, SF_WEIGHT_MAX);
				return -EINVAL;
			}
		} else {
			snprintf(err, errlen,
				 "'%s': unknown upstream option '%.*s' (expected weight=N or "
				 "backup)",
				 s, (int)len, p);
			return -EINVAL;
		}
	}
	return 0;
}

int sf_listen_parse(const char *s, struct sf_listen_conf *l, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	return sf_addr_parse_range(s, &l->hp, &l->port_last, err, errlen) < 0 ? -EINVAL : 0;
}

const char *sf_balance_name(int b)
{
	if (b < 0 || (size_t)b >= sizeof(balance_names) / sizeof(balance_names[0]))
		return NULL;
	return balance_names[b];
}

int sf_balance_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(balance_names) / sizeof(balance_names[0]); i++)
		if (strcmp(s, balance_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

int sf_pp_parse(const char *s)
{
	if (strcmp(s, "none") == 0)
		return SF_PP_NONE;
	if (strcmp(s, "v1") == 0)
		return SF_PP_V1;
	if (strcmp(s, "v2") == 0)
		return SF_PP_V2;
	return -EINVAL;
}

int sf_array_push(void *arrp, size_t *n, size_t size, const void *elem)
{
	char *a;

	memcpy(&a, arrp, sizeof(a));
	/* Full when n is 0 or a power of two: the capacity is the next one. */
	if ((*n & (*n - 1)) == 0) {
		size_t cap = *n == 0 ? 1 : *n * 2;
		char *na;

		if (cap > SIZE_MAX / size)
			return -ENOMEM;
		na = realloc(a, cap * size);
		if (na == NULL)
			return -ENOMEM;
		a = na;
		memcpy(arrp, &a, sizeof(a));
	}
	memcpy(a + *n * size, elem, size);
	(*n)++;
	return 0;
}

int sf_policy_add_cidr(struct sf_policy *p, int deny, const char *s, char *err, size_t errlen)
{
	struct sf_cidr c;
	int rc;

	memset(&c, 0, sizeof(c));
	if (sf_cidr_parse(s, &c, err, errlen) < 0)
		return -EINVAL;
	if (deny)
		rc = sf_array_push(&p->deny, &p->ndeny, sizeof(c), &c);
	else
		rc = sf_array_push(&p->allow, &p->nallow, sizeof(c), &c);
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
	return rc;
}

void sf_policy_clear(struct sf_policy *p)
{
	free(p->allow);
	free(p->deny);
	p->allow = p->deny = NULL;
	p->nallow = p->ndeny = 0;
}

/* ---- the file ---- */

struct loader {
	struct sf_config *cfg;
	const char *incdir; /* @include files are relative to it */
	char *err;
	size_t errlen;
};

/*
 * The name of a file libconfig read, as the user can open it: libconfig
 * names an included file as written in @include, relative to incdir.
 */
static const char *file_name(const struct loader *ld, const char *file, char *buf, size_t len)
{
	if (file == NULL)
		return ld->cfg->file;
	if (strcmp(file, ld->cfg->file) == 0 || file[0] == '/' || strcmp(ld->incdir, ".") == 0)
		return file;
	snprintf(buf, len, "%s/%s", ld->incdir, file);
	return buf;
}

static int fail_msg(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	SF_PRINTF(3, 4);
/*
 * fail() is an expression of value -EINVAL, not a call returning it: the
 * static analyzer does not follow calls into variadic functions, so with
 * a plain call it assumed fail() might return 0 and a get_*() helper
 * succeed without setting its output (make analyze).
 */
#define fail(...) (fail_msg(__VA_ARGS__), -EINVAL)

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "nothing";
}

/* "rules.web.upstream[2]" for s into buf; "" for the root. Returns buf. */
static char *setting_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *parent = config_setting_parent(s);
	size_t used;

	buf[0] = '\0';
	if (parent == NULL)
		return buf;
	setting_path(parent, buf, len);
	used = strlen(buf);
	if (config_setting_name(s) != NULL)
		snprintf(buf + used, len - used, "%s%s", used > 0 ? "." : "",
			 config_setting_name(s));
	else
		snprintf(buf + used, len - used, "[%d]", config_setting_index(s));
	return buf;
}

/*
 * Put "FILE:LINE: key.path: message" about setting s (NULL: the file as
 * a whole, line 1) into the loader's err. The file is the one s came
 * from, which differs from cfg->file inside an @include. Returns -EINVAL.
 */
static int fail_msg(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	char msg[512], path[256], fbuf[PATH_MAX];
	const char *file = NULL;
	int line = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s != NULL) {
		file = config_setting_source_file(s);
		line = config_setting_source_line(s);
	}
	file = file_name(ld, file, fbuf, sizeof(fbuf));
	if (line <= 0)
		line = 1;
	if (s != NULL && config_setting_parent(s) != NULL)
		snprintf(ld->err, ld->errlen, "%s:%d: %s: %s", file, line,
			 setting_path(s, path, sizeof(path)), msg);
	else
		snprintf(ld->err, ld->errlen, "%s:%d: %s", file, line, msg);
	return -EINVAL;
}

static int is_int(const config_setting_t *s)
{
	return config_setting_type(s) == CONFIG_TYPE_INT ||
	       config_setting_type(s) == CONFIG_TYPE_INT64;
}

static int get_string(struct loader *ld, const config_setting_t *s, const char **out)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "expected a string, got %s", type_name(config_setting_type(s)));
	*out = config_setting_get_string(s);
	return 0;
}

static int get_bool(struct loader *ld, const config_setting_t *s, int *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail(ld, s, "expected true or false, got %s",
			    type_name(config_setting_type(s)));
	*out = config_setting_get_bool(s) ? 1 : 0;
	return 0;
}

/* An integer from min to max. */
static int get_int(struct loader *ld, const config_setting_t *s, long long min, long long max,
		   long long *out)
{
	long long v;

	if (!is_int(s))
		return fail(ld, s, "expected an integer, got %s",
			    type_name(config_setting_type(s)));
	v = config_setting_get_int64(s);
	if (v < min || v > max)
		return fail(ld, s, "%lld is out of range (%lld to %lld)", v, min, max);
	*out = v;
	return 0;
}

/*
 * A duration: a string for sf_parse_duration, or an integer of seconds.
 * With positive, 0 is refused.
 */
static int get_duration(struct loader *ld, const config_setting_t *s, int positive, uint64_t *ms)
{
	const char *str;
	long long v;
	int rc;

	if (is_int(s)) {
		v = config_setting_get_int64(s);
		if (v < 0)
			return fail(ld, s, "negative duration %lld", v);
		if ((unsigned long long)v > SF_DURATION_MAX_MS / 1000)
			return fail(ld, s, "duration %lld s is longer than a year", v);
		*ms = (uint64_t)v * 1000;
	} else if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		str = config_setting_get_string(s);
		rc = sf_parse_duration(str, ms);
		if (rc == -ERANGE)
			return fail(ld, s, "duration '%s' is longer than a year", str);
		if (rc < 0)
			return fail(ld, s,
				    "'%s' is not a duration (expected 250ms, 10s, 5m, 1h or a "
				    "number of seconds)",
				    str);
	} else {
		return fail(ld, s, "expected a duration (\"10s\") or seconds, got %s",
			    type_name(config_setting_type(s)));
	}
	if (positive && *ms == 0)
		return fail(ld, s, "must be greater than 0");
	return 0;
}

/* A size in bytes from min to max: an integer, or a string for sf_parse_size. */
static int get_size(struct loader *ld, const config_setting_t *s, size_t min, size_t max,
		    size_t *out)
{
	const char *str;
	long long v;
	size_t z;
	int rc;

	if (is_int(s)) {
		v = config_setting_get_int64(s);
		if (v < 0 || (unsigned long long)v < min || (unsigned long long)v > max)
			return fail(ld, s, "size %lld out of range (%zu to %zu bytes)", v, min,
				    max);
		*out = (size_t)v;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, "expected a size (\"64k\") or bytes, got %s",
			    type_name(config_setting_type(s)));
	str = config_setting_get_string(s);
	rc = sf_parse_size(str, &z);
	if (rc == -ERANGE || (rc == 0 && (z < min || z > max)))
		return fail(ld, s, "size '%s' out of range (%zu to %zu bytes)", str, min, max);
	if (rc < 0)
		return fail(ld, s, "malformed size '%s' (expected digits with k, m or g)", str);
	*out = z;
	return 0;
}

typedef int (*item_fn)(struct loader *ld, const config_setting_t *s, const char *str, void *arg);

/*
 * Call fn for a string, or for each string of an array or list (whose
 * elements carry their own line). An empty list is an error unless
 * allow_empty.
 */
static int each_string(struct loader *ld, const config_setting_t *s, int allow_empty, item_fn fn,
		       void *arg)
{
	const config_setting_t *e;
	int type = config_setting_type(s), n, i, rc;

	if (type == CONFIG_TYPE_STRING)
		return fn(ld, s, config_setting_get_string(s), arg);
	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
		return fail(ld, s, "expected a string or a list of strings, got %s",
			    type_name(type));
	n = config_setting_length(s);
	if (n == 0 && !allow_empty)
		return fail(ld, s, "empty list");
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return fail(ld, e, "expected a string, got %s",
				    type_name(config_setting_type(e)));
		rc = fn(ld, e, config_setting_get_string(e), arg);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int listen_item(struct loader *ld, const config_setting_t *s, const char *str, void *arg)
{
	struct sf_rule_conf *r = arg;
	struct sf_listen_conf l;
	char msg[384];

	if (sf_listen_parse(str, &l, msg, sizeof(msg)) < 0)
		return fail(ld, s, "%s", msg);
	l.line = config_setting_source_line(s);
	if (sf_array_push(&r->listen, &r->nlisten, sizeof(l), &l) < 0)
		return fail(ld, s, "out of memory");
	return 0;
}

static int upstream_item(struct loader *ld, const config_setting_t *s, const char *str, void *arg)
{
	struct sf_rule_conf *r = arg;
	struct sf_upstream_conf u;
	char msg[384];

	if (r->nups == SF_POOL_MAX)
		return fail(ld, s, "more than %d upstreams in one rule", SF_POOL_MAX);
	if (sf_upstream_parse(str, &u, msg, sizeof(msg)) < 0)
		return fail(ld, s, "%s", msg);
	u.line = config_setting_source_line(s);
	if (sf_array_push(&r->ups, &r->nups, sizeof(u), &u) < 0)
		return fail(ld, s, "out of memory");
	return 0;
}

struct cidr_arg {
	struct sf_policy *pol;
	int deny;
};

static int cidr_item(struct loader *ld, const config_setting_t *s, const char *str, void *arg)
{
	struct cidr_arg *ca = arg;
	char msg[384];
	int rc;

	rc = sf_policy_add_cidr(ca->pol, ca->deny, str, msg, sizeof(msg));
	if (rc < 0)
		return fail(ld, s, "%s", msg);
	return 0;
}

/*
 * A policy key of defaults {} or of a rule into p, setting its bit.
 * Returns 1 when s was a policy key, 0 when it is none (the caller names
 * it unknown), or -EINVAL with the message in the loader's err.
 */
static int load_policy_key(struct loader *ld, const config_setting_t *s, struct sf_policy *p)
{
	const char *name = config_setting_name(s), *str = NULL;
	struct cidr_arg ca = { p, 0 };
	unsigned bit;
	long long v;
	size_t z;
	int rc = 0, b;

	if (strcmp(name, "balance") == 0) {
		bit = SF_P_BALANCE;
		if ((rc = get_string(ld, s, &str)) == 0) {
			if ((b = sf_balance_parse(str)) < 0)
				return fail(ld, s,
					    "unknown mode '%s' (expected roundrobin, leastconn, "
					    "source or first)",
					    str);
			p->balance = b;
		}
	} else if (strcmp(name, "max_fails") == 0) {
		bit = SF_P_MAX_FAILS;
		if ((rc = get_int(ld, s, 0, INT_MAX, &v)) == 0)
			p->max_fails = (unsigned)v;
	} else if (strcmp(name, "fail_timeout") == 0) {
		bit = SF_P_FAIL_TIMEOUT;
		rc = get_duration(ld, s, 0, &p->fail_timeout_ms);
	} else if (strcmp(name, "connect_timeout") == 0) {
		bit = SF_P_CONNECT_TIMEOUT;
		rc = get_duration(ld, s, 1, &p->connect_timeout_ms);
	} else if (strcmp(name, "idle_timeout") == 0) {
		bit = SF_P_IDLE_TIMEOUT;
		rc = get_duration(ld, s, 0, &p->idle_timeout_ms);
	} else if (strcmp(name, "keepalive") == 0) {
		bit = SF_P_KEEPALIVE;
		rc = get_bool(ld, s, &p->keepalive);
	} else if (strcmp(name, "max_conns") == 0) {
		bit = SF_P_MAX_CONNS;
		if ((rc = get_int(ld, s, 0, INT_MAX, &v)) == 0)
			p->max_conns = (unsigned)v;
	} else if (strcmp(name, "allow") == 0 || strcmp(name, "deny") == 0) {
		/* An empty list is meaningful: it drops the inherited one. */
		ca.deny = name[0] == 'd';
		bit = ca.deny ? SF_P_DENY : SF_P_ALLOW;
		rc = each_string(ld, s, 1, cidr_item, &ca);
	} else if (strcmp(name, "proxy_protocol") == 0) {
		bit = SF_P_PROXY_PROTOCOL;
		if ((rc = get_string(ld, s, &str)) == 0) {
			if ((b = sf_pp_parse(str)) < 0)
				return fail(ld, s, "unknown version '%s' (expected v1, v2 or none)",
					    str);
			p->proxy_protocol = b;
		}
	} else if (strcmp(name, "accept_proxy") == 0) {
		bit = SF_P_ACCEPT_PROXY;
		rc = get_bool(ld, s, &p->accept_proxy);
	} else if (strcmp(name, "sndbuf") == 0 || strcmp(name, "rcvbuf") == 0) {
		bit = name[0] == 's' ? SF_P_SNDBUF : SF_P_RCVBUF;
		if ((rc = get_size(ld, s, 0, SF_MAX_SOCKBUF, &z)) == 0 && z > 0 &&
		    z < SF_MIN_SOCKBUF)
			return fail(ld, s, "size %zu out of range (0, or %u to %u bytes)", z,
				    SF_MIN_SOCKBUF, SF_MAX_SOCKBUF);
		if (rc == 0)
			*(bit == SF_P_SNDBUF ? &p->bufs.snd : &p->bufs.rcv) = (uint32_t)z;
	} else if (strcmp(name, "udp_timeout") == 0) {
		bit = SF_P_UDP_TIMEOUT;
		rc = get_duration(ld, s, 1, &p->udp_timeout_ms);
	} else if (strcmp(name, "max_sessions") == 0) {
		bit = SF_P_MAX_SESSIONS;
		if ((rc = get_int(ld, s, 1, SF_MAX_SESSIONS_MAX, &v)) == 0)
			p->max_sessions = (unsigned)v;
	} else if (strcmp(name, "meet_timeout") == 0) {
		bit = SF_P_MEET_TIMEOUT;
		rc = get_duration(ld, s, 0, &p->meet_timeout_ms);
	} else if (strcmp(name, "pairs") == 0) {
		bit = SF_P_PAIRS;
		if ((rc = get_int(ld, s, 1, SF_PAIRS_MAX, &v)) == 0)
			p->pairs = (unsigned)v;
	} else {
		return 0;
	}
	if (rc < 0)
		return rc;
	p->set |= bit;
	return 1;
}

/*
 * A global into cfg, unless the command line set it (gset): the value is
 * still checked, so -t finds its mistakes. Returns 1 when s was a global,
 * 0 when it is none, or -EINVAL.
 */
static int load_global(struct loader *ld, const config_setting_t *s)
{
	struct sf_config *cfg = ld->cfg;
	const char *name = config_setting_name(s), *str = NULL;
	const struct sf_engine *e;
	char msg[256];
	long long v;
	size_t z;
	int rc, level;

	if (strcmp(name, "engine") == 0) {
		if ((rc = get_string(ld, s, &str)) < 0)
			return rc;
		e = sf_engine_find(str, msg, sizeof(msg));
		if (e == NULL)
			return fail(ld, s, "%s", msg);
		if (!(cfg->gset & SF_G_ENGINE))
			cfg->engine = e;
	} else if (strcmp(name, "threads") == 0) {
		if ((rc = get_int(ld, s, 1, SF_MAX_THREADS, &v)) < 0)
			return rc;
		if (!(cfg->gset & SF_G_THREADS))
			cfg->threads = (unsigned)v;
	} else if (strcmp(name, "buffer_size") == 0) {
		if ((rc = get_size(ld, s, SF_MIN_BUFFER_SIZE, SF_MAX_BUFFER_SIZE, &z)) < 0)
			return rc;
		if (!(cfg->gset & SF_G_BUFFER_SIZE))
			cfg->buffer_size = z;
	} else if (strcmp(name, "pipe_size") == 0) {
		if ((rc = get_size(ld, s, SF_MIN_PIPE_SIZE, SF_MAX_PIPE_SIZE, &z)) < 0)
			return rc;
		if (!(cfg->gset & SF_G_PIPE_SIZE))
			cfg->pipe_size = z;
	} else if (strcmp(name, "log_level") == 0) {
		if ((rc = get_string(ld, s, &str)) < 0)
			return rc;
		if (strcmp(str, "quiet") == 0)
			level = SF_LOG_QUIET;
		else if (strcmp(str, "normal") == 0)
			level = SF_LOG_NORMAL;
		else if (strcmp(str, "verbose") == 0)
			level = SF_LOG_VERBOSE;
		else
			return fail(ld, s, "unknown level '%s' (expected quiet, normal or verbose)",
				    str);
		if (!(cfg->gset & SF_G_LOGLEVEL))
			cfg->loglevel = level;
	} else if (strcmp(name, "log_format") == 0) {
		if ((rc = get_string(ld, s, &str)) < 0)
			return rc;
		if ((level = sf_logfmt_parse(str)) < 0)
			return fail(ld, s, "unknown format '%s' (expected text or json)", str);
		if (!(cfg->gset & SF_G_LOG_FORMAT))
			cfg->log_format = level;
	} else if (strcmp(name, "metrics") == 0) {
		struct sf_hostport hp;

		if ((rc = get_string(ld, s, &str)) < 0)
			return rc;
		if (sf_addr_parse(str, &hp, msg, sizeof(msg)) < 0)
			return fail(ld, s, "%s", msg);
		if (!(cfg->gset & SF_G_METRICS)) {
			cfg->metrics = hp;
			cfg->has_metrics = 1;
		}
	} else if (strcmp(name, "user") == 0) {
		char user[SF_USER_MAX];

		if ((rc = get_string(ld, s, &str)) < 0)
			return rc;
		if (sf_user_parse(str, user, sizeof(user), msg, sizeof(msg)) < 0)
			return fail(ld, s, "%s", msg);
		if (!(cfg->gset & SF_G_USER))
			memcpy(cfg->user, user, sizeof(user));
	} else if (strcmp(name, "drain_timeout") == 0) {
		uint64_t ms;

		if ((rc = get_duration(ld, s, 0, &ms)) < 0)
			return rc;
		if (!(cfg->gset & SF_G_DRAIN_TIMEOUT))
			cfg->drain_timeout_ms = ms;
	} else {
		return 0;
	}
	return 1;
}

/* Copy the key bit of src into dst, the CIDR lists deeply. 0 or -ENOMEM. */
static int policy_copy_key(struct sf_policy *dst, const struct sf_policy *src, unsigned bit)
{
	struct sf_cidr **da = bit == SF_P_ALLOW ? &dst->allow : &dst->deny, *a = NULL;
	size_t *dn = bit == SF_P_ALLOW ? &dst->nallow : &dst->ndeny;
	const struct sf_cidr *sa = bit == SF_P_ALLOW ? src->allow : src->deny;
	size_t sn = bit == SF_P_ALLOW ? src->nallow : src->ndeny;

	switch (bit) {
	case SF_P_BALANCE:
		dst->balance = src->balance;
		return 0;
	case SF_P_MAX_FAILS:
		dst->max_fails = src->max_fails;
		return 0;
	case SF_P_FAIL_TIMEOUT:
		dst->fail_timeout_ms = src->fail_timeout_ms;
		return 0;
	case SF_P_CONNECT_TIMEOUT:
		dst->connect_timeout_ms = src->connect_timeout_ms;
		return 0;
	case SF_P_IDLE_TIMEOUT:
		dst->idle_timeout_ms = src->idle_timeout_ms;
		return 0;
	case SF_P_KEEPALIVE:
		dst->keepalive = src->keepalive;
		return 0;
	case SF_P_MAX_CONNS:
		dst->max_conns = src->max_conns;
		return 0;
	case SF_P_PROXY_PROTOCOL:
		dst->proxy_protocol = src->proxy_protocol;
		return 0;
	case SF_P_ACCEPT_PROXY:
		dst->accept_proxy = src->accept_proxy;
		return 0;
	case SF_P_SNDBUF:
		dst->bufs.snd = src->bufs.snd;
		return 0;
	case SF_P_RCVBUF:
		dst->bufs.rcv = src->bufs.rcv;
		return 0;
	case SF_P_UDP_TIMEOUT:
		dst->udp_timeout_ms = src->udp_timeout_ms;
		return 0;
	case SF_P_MAX_SESSIONS:
		dst->max_sessions = src->max_sessions;
		return 0;
	case SF_P_ALLOW:
	case SF_P_DENY:
		if (sn > 0) {
			a = malloc(sn * sizeof(*a));
			if (a == NULL)
				return -ENOMEM;
			memcpy(a, sa, sn * sizeof(*a));
		}
		free(*da);
		*da = a;
		*dn = sn;
		return 0;
	}
	return 0;
}

/* Give dst every key it did not set (its set bits) from src. 0 or -ENOMEM. */
static int policy_merge(struct sf_policy *dst, const struct sf_policy *src)
{
	unsigned bit;

	/* Every bit: keys are added in more than one place (SF_P_* of config.h). */
	for (bit = 1; bit != 0; bit <<= 1)
		if (!(dst->set & bit) && policy_copy_key(dst, src, bit) < 0)
			return -ENOMEM;
	return 0;
}

/* Copy the meet/bridge key bit of src into dst. */
static void pair_copy_key(struct sf_policy *dst, const struct sf_policy *src, unsigned bit)
{
	if (bit == SF_P_MEET_TIMEOUT)
		dst->meet_timeout_ms = src->meet_timeout_ms;
	else if (bit == SF_P_PAIRS)
		dst->pairs = src->pairs;
}

/*
 * policy_merge for the meet and bridge keys: dst keeps every key it set.
 * With gain_bits (defaults {} under the command line's), only keys src
 * set are copied, and dst then counts them as set.
 */
static void pair_merge(struct sf_policy *dst, const struct sf_policy *src, int gain_bits)
{
	unsigned bit;

	for (bit = SF_P_MEET_TIMEOUT; bit <= SF_P_PAIRS; bit <<= 1) {
		if ((dst->set & bit) || (gain_bits && !(src->set & bit)))
			continue;
		pair_copy_key(dst, src, bit);
		if (gain_bits)
			dst->set |= bit;
	}
}

/*
 * defaults {}: its keys go into cfg->defaults, except those the command
 * line already set there, which win (as -b, -j, -v and -q win over the
 * file's globals).
 */
static int load_defaults(struct loader *ld, const config_setting_t *g)
{
	struct sf_policy fd, *d = &ld->cfg->defaults;
	const config_setting_t *m;
	int i, n, rc = 0;
	unsigned bit;

	if (!config_setting_is_group(g))
		return fail(ld, g, "expected a group { key = value; ... }, got %s",
			    type_name(config_setting_type(g)));
	memset(&fd, 0, sizeof(fd));
	n = config_setting_length(g);
	for (i = 0; i < n && rc >= 0; i++) {
		m = config_setting_get_elem(g, (unsigned)i);
		rc = load_policy_key(ld, m, &fd);
		if (rc == 0)
			rc = fail(ld, m, "unknown key (defaults take " POLICY_KEYS ")");
	}
	for (bit = 1; rc >= 0 && bit != 0; bit <<= 1) {
		if (!(fd.set & bit) || (d->set & bit))
			continue;
		if (policy_copy_key(d, &fd, bit) < 0)
			rc = fail(ld, g, "out of memory");
		d->set |= bit;
	}
	if (rc >= 0)
		pair_merge(d, &fd, 1);
	sf_policy_clear(&fd);
	return rc < 0 ? rc : 0;
}

/* protocol = "tcp" | "udp" of a rule. */
static int load_protocol(struct loader *ld, const config_setting_t *s, struct sf_rule_conf *r)
{
	const char *str = NULL;
	int rc;

	if ((rc = get_string(ld, s, &str)) < 0)
		return rc;
	if (strcmp(str, "tcp") == 0)
		r->proto = SF_PROTO_TCP;
	else if (strcmp(str, "udp") == 0)
		r->proto = SF_PROTO_UDP;
	else
		return fail(ld, s, "unknown protocol '%s' (expected tcp or udp)", str);
	r->proto_line = config_setting_source_line(s);
	return 0;
}

/* mode = "forward" | "meet" | "bridge" */
static int load_mode(struct loader *ld, const config_setting_t *s, struct sf_rule_conf *r)
{
	const char *str = NULL;
	int rc, m;

	if ((rc = get_string(ld, s, &str)) < 0)
		return rc;
	if ((m = sf_mode_parse(str)) < 0)
		return fail(ld, s, "unknown mode '%s' (expected forward, meet or bridge)", str);
	r->mode = m;
	return 0;
}

/*
 * A meet rule has exactly two listen addresses and no upstream; a bridge
 * rule exactly two upstreams and no listen address; neither takes port
 * ranges (one address pairs with one address).
 */
static int check_pair_rule(struct loader *ld, const config_setting_t *s,
			   const struct sf_rule_conf *r)
{
	size_t i;

	if (r->mode == SF_MODE_MEET) {
		if (r->nlisten != 2)
			return fail(ld, s,
				    "mode meet needs exactly two listen addresses, got %zu "
				    "(listen = [\"A\", \"B\"];)",
				    r->nlisten);
		if (r->nups != 0)
			return fail(ld, s, "mode meet takes no upstream (it joins two clients)");
		for (i = 0; i < r->nlisten; i++)
			if (r->listen[i].port_last != r->listen[i].hp.port)
				return fail(ld, s,
					    "mode meet takes no port range (listen %s:%u-%u)",
					    r->listen[i].hp.host, r->listen[i].hp.port,
					    r->listen[i].port_last);
		return 0;
	}
	if (r->nups != 2)
		return fail(ld, s,
			    "mode bridge needs exactly two upstreams, got %zu "
			    "(upstream = [\"A\", \"B\"];)",
			    r->nups);
	if (r->nlisten != 0)
		return fail(ld, s, "mode bridge takes no listen address (it connects out)");
	for (i = 0; i < r->nups; i++)
		if (r->ups[i].port_last != r->ups[i].hp.port || r->ups[i].backup ||
		    r->ups[i].weight != 1)
			return fail(ld, s,
				    "mode bridge takes plain host:port upstreams (no range, "
				    "weight or backup)");
	return 0;
}

/* One member of rules {}: its name is the rule's. */
static int load_rule(struct loader *ld, const config_setting_t *s, struct sf_rule_conf *r)
{
	const char *name = config_setting_name(s), *mname;
	const config_setting_t *m;
	int i, n, rc;

	if (strlen(name) >= SF_NAME_MAX)
		return fail(ld, s, "rule name longer than %d characters", SF_NAME_MAX - 1);
	if (!config_setting_is_group(s))
		return fail(ld, s, "expected a group { listen = ...; upstream = ...; }, got %s",
			    type_name(config_setting_type(s)));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->line = config_setting_source_line(s);
	n = config_setting_length(s);
	for (i = 0; i < n; i++) {
		m = config_setting_get_elem(s, (unsigned)i);
		mname = config_setting_name(m);
		if (strcmp(mname, "listen") == 0)
			rc = each_string(ld, m, 0, listen_item, r);
		else if (strcmp(mname, "upstream") == 0)
			rc = each_string(ld, m, 0, upstream_item, r);
		else if (strcmp(mname, "protocol") == 0)
			rc = load_protocol(ld, m, r);
		else if (strcmp(mname, "mode") == 0)
			rc = load_mode(ld, m, r);
		else if ((rc = load_policy_key(ld, m, &r->pol)) == 0)
			rc = fail(ld, m,
				  "unknown key (a rule takes listen, upstream, protocol, "
				  "mode, " POLICY_KEYS ")");
		if (rc < 0)
			return rc;
	}
	if (r->mode != SF_MODE_FORWARD)
		return check_pair_rule(ld, s, r);
	if (r->nlisten == 0)
		return fail(ld, s, "no listen address (add listen = \"host:port\";)");
	if (r->nups == 0)
		return fail(ld, s, "no upstream (add upstream = \"host:port\";)");
	return 0;
}

static int load_rules(struct loader *ld, const config_setting_t *g)
{
	struct sf_config *cfg = ld->cfg;
	struct sf_rule_conf *rules;
	int i, n, rc;

	if (!config_setting_is_group(g))
		return fail(ld, g,
			    "expected a group { NAME = { listen = ...; upstream = ...; }; }, "
			    "got %s",
			    type_name(config_setting_type(g)));
	n = config_setting_length(g);
	if (n == 0)
		return fail(ld, g, "no rules in the group");
	rules = realloc(cfg->rules, (cfg->nrules + (size_t)n) * sizeof(*rules));
	if (rules == NULL)
		return fail(ld, g, "out of memory");
	cfg->rules = rules;
	memset(rules + cfg->nrules, 0, (size_t)n * sizeof(*rules));
	for (i = 0; i < n; i++) {
		/* Counted first, so sf_config_free frees a half-read rule. */
		cfg->nrules++;
		rc = load_rule(ld, config_setting_get_elem(g, (unsigned)i),
			       &cfg->rules[cfg->nrules - 1]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- @include, checked before libconfig follows it ---- */

#define INCLUDE_DEPTH_MAX 10 /* libconfig's own limit (MAX_INCLUDE_DEPTH) */

/* The regular file at path, NUL-terminated, into *out (malloc'd). Its length, or -errno. */
static long slurp(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return -errno;
	do {
		if (cap - len < 4096) {
			nb = realloc(buf, cap + 65536);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = nb;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	buf[len] = '\0';
	fclose(f);
	*out = buf;
	return (long)len;
}

/*
 * After "@include" at p: blanks, then a quoted file name unescaped as
 * libconfig's scanner does (\\ and \" only; any other backslash is
 * dropped) into name, with *lines the newlines it spans. Returns the
 * position after the closing quote, or NULL when p starts no complete
 * directive or the name does not fit (libconfig reports either).
 */
static const char *include_name(const char *p, const char *end, char *name, size_t len, int *lines)
{
	size_t n = 0;

	if (p == end || (*p != ' ' && *p != '\t'))
		return NULL;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end || *p++ != '"')
		return NULL;
	for (*lines = 0; p < end && *p != '"'; p++) {
		if (*p == '\\' && p + 1 < end && (p[1] == '\\' || p[1] == '"'))
			p++;
		else if (*p == '\\')
			continue;
		*lines += *p == '\n';
		if (n + 1 >= len)
			return NULL;
		name[n++] = *p;
	}
	if (p == end)
		return NULL;
	name[n] = '\0';
	return p + 1;
}

/*
 * libconfig 1.5 opens an @include with fopen and leaves a read error to
 * its flex scanner, whose fatal-error handler calls exit(2): an @include
 * naming a directory ("", ".", "conf.d/") ended the process from inside
 * config_read_file, and a SIGHUP reload took the running forwarder down
 * with it (found by tests/fuzz/fuzz_config). So every @include of the file
 * at path, and of the files it includes, must name a regular file or
 * nothing (libconfig reports a missing one) before libconfig reads it.
 * libconfig takes a line starting with blanks, @include, blanks and a
 * quote, outside comments and strings, as a directive, and the name as
 * relative to incdir; so does this scan.
 * Returns 0, 1 when libconfig is left to refuse the nesting depth, or
 * -EINVAL with "FILE:LINE: message" in the loader's err.
 */
static int check_includes(struct loader *ld, const char *path, int depth)
{
	enum { CODE, STRING, COMMENT } st = CODE;
	char *text = NULL, name[PATH_MAX], full[PATH_MAX];
	const char *p, *q, *end;
	int line = 1, bol = 1, rc = 0, nl;
	struct stat sb;
	long n;

	if (depth > INCLUDE_DEPTH_MAX)
		return 1;
	if ((n = slurp(path, &text)) < 0)
		return 0;
	end = text + n;
	for (p = text; p < end && rc == 0; p++) {
		if (st == CODE && bol) {
			for (q = p; q < end && (*q == ' ' || *q == '\t'); q++)
				;
			if (end - q >= 8 && memcmp(q, "@include", 8) == 0 &&
			    (q = include_name(q + 8, end, name, sizeof(name), &nl)) != NULL) {
				if ((size_t)snprintf(full, sizeof(full), "%s/%s", ld->incdir,
						     name) >= sizeof(full) ||
				    stat(full, &sb) < 0) {
					/* too long or missing: libconfig says so */
				} else if (!S_ISREG(sb.st_mode)) {
					snprintf(ld->err, ld->errlen, "%s:%d: @include \"%s\": %s",
						 path, line, name,
						 S_ISDIR(sb.st_mode) ? "is a directory, not a file"
								     : "not a regular file");
					rc = -EINVAL;
				} else {
					rc = check_includes(ld, full, depth + 1);
				}
				line += nl;
				p = q;
				if (p == end)
					break;
			}
		}
		bol = 0;
		if (st == CODE && (*p == '#' || (*p == '/' && p + 1 < end && p[1] == '/'))) {
			while (p + 1 < end && p[1] != '\n')
				p++;
		} else if (st == CODE && *p == '/' && p + 1 < end && p[1] == '*') {
			st = COMMENT;
			p++;
		} else if (st == CODE && *p == '"') {
			st = STRING;
		} else if (st == STRING && *p == '\\' && p + 1 < end) {
			line += *++p == '\n';
		} else if (st == STRING && *p == '"') {
			st = CODE;
		} else if (st == COMMENT && *p == '*' && p + 1 < end && p[1] == '/') {
			st = CODE;
			p++;
		} else if (*p == '\n') {
			line++;
			bol = 1;
		}
	}
	free(text);
	return rc;
}

int sf_config_load(struct sf_config *cfg, char *err, size_t errlen)
{
	struct loader ld = { cfg, ".", err, errlen };
	const config_setting_t *root, *s, *rules = NULL;
	const char *name;
	config_t cf;
	char *dir, fbuf[PATH_MAX];
	int i, n, rc = 0, saved;
	struct stat sb;

	if (cfg->file == NULL) {
		snprintf(err, errlen, "no config file given");
		return -EINVAL;
	}
	dir = strdup(cfg->file);
	if (dir == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->file);
		return -ENOMEM;
	}
	config_init(&cf);
	/* @include "x.conf" is relative to the including file, not the cwd. */
	ld.incdir = dirname(dir);
	config_set_include_dir(&cf, ld.incdir);
	/* Only a regular file can be read twice (not a pipe given as -c). */
	if (stat(cfg->file, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    (rc = check_includes(&ld, cfg->file, 1)) < 0)
		goto out;
	rc = 0;
	errno = 0;
	if (!config_read_file(&cf, cfg->file)) {
		saved = errno;
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read: %s", cfg->file,
				 strerror(saved != 0 ? saved : EIO));
		else
			snprintf(err, errlen, "%s:%d: %s",
				 file_name(&ld, config_error_file(&cf), fbuf, sizeof(fbuf)),
				 config_error_line(&cf), config_error_text(&cf));
		rc = -EINVAL;
		goto out;
	}
	root = config_root_setting(&cf);
	n = config_setting_length(root);
	for (i = 0; i < n && rc >= 0; i++) {
		s = config_setting_get_elem(root, (unsigned)i);
		name = config_setting_name(s);
		if (strcmp(name, "defaults") == 0) {
			rc = load_defaults(&ld, s);
		} else if (strcmp(name, "rules") == 0) {
			rules = s;
			rc = load_rules(&ld, s);
		} else if ((rc = load_global(&ld, s)) == 0) {
			rc = fail(&ld, s, "unknown key (expected " GLOBAL_KEYS ")");
		}
	}
	if (rc >= 0 && rules == NULL)
		rc = fail(&ld, NULL,
			  "no rules (add rules = { NAME = { listen = \"host:port\"; "
			  "upstream = \"host:port\"; }; };)");
out:
	config_destroy(&cf);
	free(dir);
	return rc < 0 ? rc : 0;
}

/* ---- after loading ---- */

/* "host:port", "[v6]:port" or with "-last" for a range, into buf. */
static char *fmt_ports(const struct sf_hostport *hp, uint16_t last, char *buf, size_t len)
{
	const char *fmt = strchr(hp->host, ':') != NULL ? "[%s]:%u" : "%s:%u";
	int n = snprintf(buf, len, fmt, hp->host, hp->port);

	if (last != hp->port && n > 0 && (size_t)n < len)
		snprintf(buf + n, len - (size_t)n, "-%u", last);
	return buf;
}

/*
 * A mistake found after loading, about rule r at line: "FILE:LINE:
 * rules.NAME: message" for a file, "-l/-r: message" for the command
 * line. Returns -EINVAL.
 */
static int rule_fail(const struct sf_config *cfg, const struct sf_rule_conf *r, int line, char *err,
		     size_t errlen, const char *fmt, ...) SF_PRINTF(6, 7);

static int rule_fail(const struct sf_config *cfg, const struct sf_rule_conf *r, int line, char *err,
		     size_t errlen, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cfg->file != NULL)
		snprintf(err, errlen, "%s:%d: rules.%s: %s", cfg->file,
			 line > 0 ? line : (r->line > 0 ? r->line : 1), r->name, msg);
	else
		snprintf(err, errlen, "-l/-r: %s", msg);
	return -EINVAL;
}

/*
 * Port ranges of one rule map listen port first+i to upstream port
 * first+i. The rule kept simple: every range of a rule, listen or
 * upstream, has the same length N, and single ports are always fine on
 * the listen side (with single upstream ports) and on the upstream side
 * (every listen port goes to that one port). An upstream range also
 * needs every listen address of its rule to be a range, since a single
 * listen port would have no counterpart but the range's first port.
 */
static int check_ranges(const struct sf_config *cfg, const struct sf_rule_conf *r, char *err,
			size_t errlen)
{
	char a[SF_HOST_MAX + 16], b[SF_HOST_MAX + 16];
	const struct sf_hostport *first_hp = NULL;
	uint16_t first_last = 0;
	const char *first_what = "";
	const struct sf_upstream_conf *urange = NULL;
	unsigned n = 0, len;
	size_t i;

	for (i = 0; i < r->nlisten + r->nups; i++) {
		const struct sf_hostport *hp;
		uint16_t last;
		int line;
		const char *what = i < r->nlisten ? "listen" : "upstream";

		if (i < r->nlisten) {
			hp = &r->listen[i].hp;
			last = r->listen[i].port_last;
			line = r->listen[i].line;
		} else {
			hp = &r->ups[i - r->nlisten].hp;
			last = r->ups[i - r->nlisten].port_last;
			line = r->ups[i - r->nlisten].line;
			if (last != hp->port)
				urange = &r->ups[i - r->nlisten];
		}
		len = (unsigned)last - hp->port + 1;
		if (len == 1)
			continue;
		if (n == 0) {
			n = len;
			first_hp = hp;
			first_last = last;
			first_what = what;
		} else if (len != n) {
			return rule_fail(cfg, r, line, err, errlen,
					 "%s %s has %u ports but %s %s has %u: every port range of "
					 "a rule must have the same length",
					 what, fmt_ports(hp, last, a, sizeof(a)), len, first_what,
					 fmt_ports(first_hp, first_last, b, sizeof(b)), n);
		}
	}
	if (urange == NULL)
		return 0;
	for (i = 0; i < r->nlisten; i++) {
		const struct sf_listen_conf *l = &r->listen[i];

		if (l->port_last == l->hp.port)
			return rule_fail(cfg, r, l->line, err, errlen,
					 "listen %s is one port but upstream %s is a range: give "
					 "the listen a range of %u ports, or the upstream one port",
					 fmt_ports(&l->hp, l->port_last, a, sizeof(a)),
					 fmt_ports(&urange->hp, urange->port_last, b, sizeof(b)),
					 n);
	}
	return 0;
}

struct lref {
	const struct sf_rule_conf *r;
	const struct sf_listen_conf *l;
	size_t seq; /* order in the file */
};

static int lref_cmp(const void *pa, const void *pb)
{
	const struct lref *a = pa, *b = pb;
	int c;

	/* TCP and UDP listeners never clash: one port may have one of each. */
	if (a->r->proto != b->r->proto)
		return a->r->proto < b->r->proto ? -1 : 1;
	c = strcmp(a->l->hp.host, b->l->hp.host);

	if (c != 0)
		return c;
	if (a->l->hp.port != b->l->hp.port)
		return a->l->hp.port < b->l->hp.port ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/*
 * Two listen entries, in one rule or two, that share a host written the
 * same way and overlap in ports: SO_REUSEPORT would let both bind and
 * split the clients between them, so refuse. Sorting makes this O(n log
 * n) for files with thousands of ports. Spellings of one address that
 * differ (":80" and "0.0.0.0:80") are left to the resolver in rule.c.
 */
static int check_overlaps(const struct sf_config *cfg, char *err, size_t errlen)
{
	struct lref *v, *x, *y;
	size_t i, j, n = 0, hold = 0;
	char a[SF_HOST_MAX + 16], b[SF_HOST_MAX + 16];
	int rc = 0;

	for (i = 0; i < cfg->nrules; i++)
		n += cfg->rules[i].nlisten;
	v = calloc(n ? n : 1, sizeof(*v));
	if (v == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n = 0;
	for (i = 0; i < cfg->nrules; i++)
		for (j = 0; j < cfg->rules[i].nlisten; j++, n++)
			v[n] = (struct lref){ &cfg->rules[i], &cfg->rules[i].listen[j], n };
	qsort(v, n, sizeof(*v), lref_cmp);
	for (i = 1; i < n; i++) {
		if (strcmp(v[i].l->hp.host, v[i - 1].l->hp.host) != 0 ||
		    v[i].r->proto != v[i - 1].r->proto) {
			hold = i;
			continue;
		}
		if (v[i].l->hp.port <= v[hold].l->port_last) {
			/* Report the later one, pointing at the earlier. */
			x = v[i].seq > v[hold].seq ? &v[i] : &v[hold];
			y = x == &v[i] ? &v[hold] : &v[i];
			fmt_ports(&x->l->hp, x->l->port_last, a, sizeof(a));
			fmt_ports(&y->l->hp, y->l->port_last, b, sizeof(b));
			if (cfg->file != NULL)
				rc = rule_fail(cfg, x->r, x->l->line, err, errlen,
					       "listen %s overlaps %s of rule '%s' (line %d)", a, b,
					       y->r->name, y->l->line);
			else
				rc = rule_fail(cfg, x->r, 0, err, errlen,
					       "listen %s overlaps %s given before", a, b);
			break;
		}
		if (v[i].l->port_last > v[hold].l->port_last)
			hold = i;
	}
	free(v);
	return rc;
}

/*
 * A UDP rule has no PROXY protocol (nginx refuses it on udp listeners too,
 * and no common UDP server reads one): refuse it, inherited or not, rather
 * than forward datagrams the upstream would misread. The other TCP-only
 * keys (keepalive, connect_timeout, idle_timeout, max_conns, sndbuf,
 * rcvbuf) are ignored
 * by UDP rules, as docs/config.md says.
 */
static int check_udp(const struct sf_config *cfg, const struct sf_rule_conf *r, char *err,
		     size_t errlen)
{
	const char *key = NULL;

	if (r->proto != SF_PROTO_UDP)
		return 0;
	if (r->pol.accept_proxy)
		key = "accept_proxy";
	else if (r->pol.proxy_protocol != SF_PP_NONE)
		key = "proxy_protocol";
	if (key == NULL)
		return 0;
	if (cfg->file == NULL) {
		snprintf(err, errlen, "-u: --%s is TCP only (no PROXY protocol for UDP)",
			 key[0] == 'a' ? "accept-proxy" : "proxy-protocol");
		return -EINVAL;
	}
	return rule_fail(cfg, r, r->proto_line, err, errlen,
			 "%s is TCP only (no PROXY protocol for UDP)%s", key,
			 key[0] == 'p' ? "; set proxy_protocol = \"none\" in this rule if "
					 "it comes from defaults"
				       : "; set accept_proxy = false in this rule if it "
					 "comes from defaults");
}

const char *sf_proto_name(int p) { return p == SF_PROTO_UDP ? "udp" : "tcp"; }

/*
 * What meet and bridge rules cannot use: PROXY headers (there is no
 * client and upstream to describe) and, for bridge, max_conns (pairs
 * is its count). Returns 0 or -EINVAL.
 */
static int pair_finish(struct sf_config *cfg, struct sf_rule_conf *r, char *err, size_t errlen)
{
	if (r->mode == SF_MODE_FORWARD)
		return 0;
	/* Joining two datagram flows has no sessions to key them: TCP only. */
	if (r->proto == SF_PROTO_UDP && cfg->file == NULL) {
		snprintf(err, errlen, "--%s is TCP only: -u cannot be combined with it",
			 sf_mode_name(r->mode));
		return -EINVAL;
	}
	if (r->proto == SF_PROTO_UDP)
		return rule_fail(cfg, r, r->proto_line, err, errlen,
				 "mode %s is TCP only (protocol udp forwards)",
				 sf_mode_name(r->mode));
	if (r->pol.accept_proxy || r->pol.proxy_protocol != SF_PP_NONE)
		return rule_fail(cfg, r, 0, err, errlen,
				 "mode %s takes no PROXY protocol (accept_proxy, proxy_protocol)",
				 sf_mode_name(r->mode));
	if (r->mode == SF_MODE_BRIDGE)
		r->pol.max_conns = 0;
	return 0;
}

int sf_config_finish(struct sf_config *cfg, char *err, size_t errlen)
{
	size_t i;
	int rc;

	if (cfg->nrules == 0) {
		snprintf(err, errlen, "%s%sno rules to run", cfg->file ? cfg->file : "",
			 cfg->file ? ": " : "");
		return -EINVAL;
	}
	/* Built-ins fill what the defaults lack, then defaults what rules lack. */
	if (policy_merge(&cfg->defaults, &builtin_policy) < 0)
		goto nomem;
	pair_merge(&cfg->defaults, &builtin_policy, 0);
	for (i = 0; i < cfg->nrules; i++) {
		if (policy_merge(&cfg->rules[i].pol, &cfg->defaults) < 0)
			goto nomem;
		pair_merge(&cfg->rules[i].pol, &cfg->defaults, 0);
		if ((rc = pair_finish(cfg, &cfg->rules[i], err, errlen)) < 0)
			return rc;
		rc = check_ranges(cfg, &cfg->rules[i], err, errlen);
		if (rc < 0)
			return rc;
		if ((rc = check_udp(cfg, &cfg->rules[i], err, errlen)) < 0)
			return rc;
	}
	return check_overlaps(cfg, err, errlen);
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

int sf_user_parse(const char *s, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *colon = strchr(s, ':');
	size_t n = strlen(s);

	if (n == 0 || s[0] == ':') {
		snprintf(err, errlen, "'%s': expected USER or USER:GROUP", s);
		return -EINVAL;
	}
	if (colon != NULL && (colon[1] == '\0' || strchr(colon + 1, ':') != NULL)) {
		snprintf(err, errlen, "'%s': expected USER or USER:GROUP", s);
		return -EINVAL;
	}
	if (n >= outlen) {
		snprintf(err, errlen, "'%.32s...': name too long", s);
		return -EINVAL;
	}
	memcpy(out, s, n + 1);
	return 0;
}

const char *sf_mode_name(int m)
{
	if (m < 0 || (size_t)m >= sizeof(mode_names) / sizeof(mode_names[0]))
		return "?";
	return mode_names[m];
}

int sf_mode_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(s, mode_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

int sf_logfmt_parse(const char *s)
{
	if (strcmp(s, "text") == 0)
		return SF_LOGFMT_TEXT;
	if (strcmp(s, "json") == 0)
		return SF_LOGFMT_JSON;
	return -EINVAL;
}

void sf_config_free(struct sf_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nrules; i++) {
		free(cfg->rules[i].listen);
		free(cfg->rules[i].ups);
		sf_policy_clear(&cfg->rules[i].pol);
	}
	free(cfg->rules);
	sf_policy_clear(&cfg->defaults);
	free(cfg->file);
	memset(cfg, 0, sizeof(*cfg));
}
