/*
 * Generations: a parsed configuration made runnable (names resolved,
 * ACL matchers built, port ranges expanded into listeners), their
 * listening sockets, and their lifetime.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockfwd/log.h"
#include "sockfwd/net.h"
#include "sockfwd/rule.h"
#include "sockfwd/systemd.h"
#include "sockfwd/stats.h"

#define LISTEN_BACKLOG 4096

static const char *const reason_names[SF_R_COUNT] = {
	[SF_R_EOF] = "eof",
	[SF_R_RESET] = "reset",
	[SF_R_REFUSED] = "refused",
	[SF_R_CONNECT_TIMEOUT] = "connect-timeout",
	[SF_R_IDLE_TIMEOUT] = "idle-timeout",
	[SF_R_DENIED] = "denied",
	[SF_R_LIMIT] = "limit",
	[SF_R_PROXY_HEADER] = "proxy-header",
	[SF_R_STOP] = "stop",
};

const char *sf_reason_name(int r) { return r >= 0 && r < SF_R_COUNT ? reason_names[r] : "?"; }

/*
 * Format an error about the item at line: "FILE:LINE: ..." from a
 * config file, "FLAG: ..." from the command line. Returns -EINVAL.
 */
static int SF_PRINTF(6, 7) gen_err(const struct sf_config *cfg, int line, const char *flag,
				   char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (cfg->file != NULL)
		n = snprintf(err, errlen, "%s:%d: ", cfg->file, line);
	else
		n = snprintf(err, errlen, "%s: ", flag);
	if (n < 0 || (size_t)n >= errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Order listeners by their first candidate address, to find duplicates. */
static int addr_cmp(const struct sf_sockaddr *a, const struct sf_sockaddr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return a->ss.ss_family < b->ss.ss_family ? -1 : 1;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;

		if (x->sin_port != y->sin_port)
			return ntohs(x->sin_port) < ntohs(y->sin_port) ? -1 : 1;
		return memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr));
	} else {
		const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;

		if (x->sin6_port != y->sin6_port)
			return ntohs(x->sin6_port) < ntohs(y->sin6_port) ? -1 : 1;
		return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
}

static int ls_cmp(const void *a, const void *b)
{
	const struct sf_listener *x = *(const struct sf_listener *const *)a;
	const struct sf_listener *y = *(const struct sf_listener *const *)b;
	int c = addr_cmp(&x->cand.a[0], &y->cand.a[0]);

	/* One address may have a TCP and a UDP listener: the protocol is in the key. */
	if (c == 0 && x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	return c;
}

/* Resolve the upstreams of rule conf rc into r. */
static int build_pool(const struct sf_config *cfg, struct sf_rule_conf *rc, struct sf_rule *r,
		      char *err, size_t errlen)
{
	char aerr[256];
	size_t i;

	if (rc->nups == 0 && rc->mode == SF_MODE_MEET)
		return 0; /* two listen addresses, no upstream */
	if (rc->nups == 0)
		return gen_err(cfg, rc->line, "-r", err, errlen, "rule '%s' has no upstream",
			       rc->name);
	if (rc->nups > SF_POOL_MAX)
		return gen_err(cfg, rc->line, "-r", err, errlen,
			       "rule '%s' has %zu upstreams (at most %d)", rc->name, rc->nups,
			       SF_POOL_MAX);
	r->ups = calloc(rc->nups, sizeof(*r->ups));
	if (r->ups == NULL)
		return -ENOMEM;
	r->nups = (unsigned)rc->nups;
	for (i = 0; i < rc->nups; i++) {
		struct sf_upstream *u = &r->ups[i];

		u->conf = rc->ups[i];
		if (sf_addr_resolve(&u->conf.hp, 0, &u->addrs, aerr, sizeof(aerr)) < 0)
			return gen_err(cfg, u->conf.line, "-r", err, errlen, "rule '%s': %s",
				       rc->name, aerr);
		if (strchr(u->conf.hp.host, ':') != NULL)
			snprintf(u->label, sizeof(u->label), "[%s]:%u", u->conf.hp.host,
				 u->conf.hp.port);
		else
			snprintf(u->label, sizeof(u->label), "%s:%u", u->conf.hp.host,
				 u->conf.hp.port);
		if (!u->conf.backup)
			r->weight_sum += u->conf.weight ? u->conf.weight : 1;
	}
	return 0;
}

static int build_acl(const struct sf_policy *p, struct sf_rule *r)
{
	if (p->nallow > 0 && (r->allow = sf_cidrset_new(p->allow, p->nallow)) == NULL)
		return -ENOMEM;
	if (p->ndeny > 0 && (r->deny = sf_cidrset_new(p->deny, p->ndeny)) == NULL)
		return -ENOMEM;
	return 0;
}

/*
 * Point r and its upstreams at their counters, found by name (and label)
 * so that a rule kept across a reload goes on counting.
 */
static int attach_stats(struct sf_rule *r, unsigned nworkers)
{
	unsigned i;

	if ((r->st = sf_stats_rule_get(r->name, nworkers)) == NULL)
		return -ENOMEM;
	if (r->proto == SF_PROTO_UDP)
		__atomic_store_n(&r->st->udp, 1, __ATOMIC_RELAXED);
	for (i = 0; i < r->nups; i++)
		if ((r->ups[i].st = sf_stats_up_get(r->st, r->ups[i].label)) == NULL)
			return -ENOMEM;
	return 0;
}

/* A UDP rule's per-worker session lists, empty. */
static int build_udp(struct sf_rule *r, unsigned nworkers)
{
	unsigned w;

	r->udp = aligned_alloc(64, (nworkers ? nworkers : 1) * sizeof(*r->udp));
	if (r->udp == NULL)
		return -ENOMEM;
	for (w = 0; w < nworkers; w++) {
		r->udp[w].lru.prev = r->udp[w].lru.next = &r->udp[w].lru;
		r->udp[w].n = 0;
	}
	return 0;
}

/* Count the listeners rc expands to (a port range gives one per port). */
static size_t count_listeners(const struct sf_rule_conf *rc)
{
	size_t i, n = 0;

	for (i = 0; i < rc->nlisten; i++)
		n += (size_t)rc->listen[i].port_last - rc->listen[i].hp.port + 1;
	return n;
}

/* Resolve rc's listen addresses into g->ls from *pos on. */
static int build_listeners(const struct sf_config *cfg, struct sf_rule_conf *rc, struct sf_rule *r,
			   struct sf_gen *g, size_t *pos, char *err, size_t errlen)
{
	struct sf_addrlist base;
	char aerr[256];
	size_t i, k;
	unsigned p;

	if (rc->nlisten == 0 && rc->mode == SF_MODE_BRIDGE)
		return 0; /* it only connects out */
	if (rc->nlisten == 0)
		return gen_err(cfg, rc->line, "-l", err, errlen, "rule '%s' has no listen address",
			       rc->name);
	for (i = 0; i < rc->nlisten; i++) {
		const struct sf_listen_conf *lc = &rc->listen[i];

		if (sf_addr_resolve(&lc->hp, 1, &base, aerr, sizeof(aerr)) < 0)
			return gen_err(cfg, lc->line, "-l", err, errlen, "rule '%s': %s", rc->name,
				       aerr);
		for (p = lc->hp.port; p <= lc->port_last; p++) {
			struct sf_listener *l = &g->ls[(*pos)++];

			l->cand = base;
			for (k = 0; k < l->cand.n; k++)
				sf_addr_set_port(&l->cand.a[k], (uint16_t)p);
			l->addr = l->cand.a[0];
			l->rule = r;
			l->proto = rc->proto;
			l->gen = g;
			l->index = p - lc->hp.port;
			l->side = (unsigned)i;
			l->line = lc->line ? lc->line : rc->line;
			l->socks = aligned_alloc(16, g->nworkers * sizeof(*l->socks));
			if (l->socks == NULL)
				return -ENOMEM;
			memset(l->socks, 0, g->nworkers * sizeof(*l->socks));
			for (k = 0; k < g->nworkers; k++) {
				l->socks[k].io.fd = -1;
				l->socks[k].l = l;
			}
		}
	}
	return 0;
}

/* Refuse two listeners on one address (in one rule or two). */
static int check_duplicates(const struct sf_config *cfg, struct sf_gen *g, char *err, size_t errlen)
{
	struct sf_listener **v;
	char abuf[SF_ADDRSTRLEN];
	size_t i;
	int rc = 0;

	if (g->nls < 2)
		return 0;
	v = malloc(g->nls * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	for (i = 0; i < g->nls; i++)
		v[i] = &g->ls[i];
	qsort(v, g->nls, sizeof(*v), ls_cmp);
	for (i = 1; i < g->nls; i++) {
		if (ls_cmp(&v[i - 1], &v[i]) != 0)
			continue;
		/* Report the later of the two in the file. */
		struct sf_listener *a = v[i - 1], *b = v[i];

		if (b->line < a->line) {
			a = v[i];
			b = v[i - 1];
		}
		rc = gen_err(
			cfg, b->line, "-l", err, errlen,
			"rule '%s' listens on %s, as rule '%s' does (line %d)", b->rule->name,
			sf_addr_format((struct sockaddr *)&b->cand.a[0].ss, abuf, sizeof(abuf)),
			a->rule->name, a->line);
		break;
	}
	free(v);
	return rc;
}

int sf_gen_build(struct sf_config *cfg, unsigned nworkers, struct sf_gen **out, char *err,
		 size_t errlen)
{
	struct sf_gen *g;
	size_t i, nls = 0, pos = 0;
	int rc;

	*out = NULL;
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->refs = 1;
	g->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	cfg = &g->cfg;
	g->nworkers = nworkers;
	if (cfg->nrules == 0) {
		rc = gen_err(cfg, 1, "-l", err, errlen, "no rule to run");
		goto fail;
	}
	g->rules = calloc(cfg->nrules, sizeof(*g->rules));
	if (g->rules == NULL)
		goto nomem;
	g->nrules = cfg->nrules;
	for (i = 0; i < cfg->nrules; i++)
		nls += count_listeners(&cfg->rules[i]);
	g->ls = calloc(nls ? nls : 1, sizeof(*g->ls));
	if (g->ls == NULL)
		goto nomem;
	g->nls = nls;
	for (i = 0; i < cfg->nrules; i++) {
		struct sf_rule_conf *rcf = &cfg->rules[i];
		struct sf_rule *r = &g->rules[i];

		snprintf(r->name, sizeof(r->name), "%s", rcf->name);
		r->pol = &rcf->pol;
		r->proto = rcf->proto;
		if (r->proto == SF_PROTO_UDP && (rc = build_udp(r, nworkers)) < 0)
			goto fail_rc;
		r->mode = rcf->mode;
		if ((rc = build_pool(cfg, rcf, r, err, errlen)) < 0 ||
		    (rc = build_acl(&rcf->pol, r)) < 0 ||
		    (rc = build_listeners(cfg, rcf, r, g, &pos, err, errlen)) < 0)
			goto fail_rc;
	}
	if ((rc = check_duplicates(cfg, g, err, errlen)) < 0)
		goto fail_rc;
	/* Last, so that a file with a mistake creates no counters. */
	for (i = 0; i < g->nrules; i++)
		if ((rc = attach_stats(&g->rules[i], nworkers)) < 0)
			goto fail_rc;
	*out = g;
	return 0;
nomem:
	rc = -ENOMEM;
fail_rc:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
fail:
	sf_gen_unref(g);
	return rc;
}

void sf_gen_unref(struct sf_gen *g)
{
	size_t i;

	if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (i = 0; i < g->nrules; i++) {
		free(g->rules[i].ups);
		free(g->rules[i].udp);
		sf_cidrset_free(g->rules[i].allow);
		sf_cidrset_free(g->rules[i].deny);
	}
	for (i = 0; i < g->nls; i++)
		free(g->ls[i].socks);
	free(g->rules);
	free(g->ls);
	sf_config_free(&g->cfg);
	free(g);
}

/*
 * Listener l has a socket passed by systemd (sd): every worker accepts
 * from it, each through its own descriptor, so that closing one worker's
 * (a reload dropping l) is the same as for a socket of its own. Returns
 * 0, or -errno with a message (nothing left open).
 */
static int open_passed(struct sf_gen *g, struct sf_listener *l, int sd, char *err, size_t errlen)
{
	char abuf[SF_ADDRSTRLEN];
	unsigned w;
	int rc;

	for (w = 0; w < g->nworkers; w++) {
		l->socks[w].io.fd = fcntl(sd, F_DUPFD_CLOEXEC, 0);
		if (l->socks[w].io.fd < 0)
			goto fail;
	}
	/* As sf_net_listen does: accepted sockets inherit it. */
	sf_net_set_nodelay(sd);
	return 0;
fail:
	rc = -errno;
	snprintf(err, errlen, "socket passed by systemd for %s (rule '%s'): dup: %s",
		 sf_addr_format((const struct sockaddr *)&l->addr.ss, abuf, sizeof(abuf)),
		 l->rule->name, strerror(-rc));
	while (w-- > 0) {
		close(l->socks[w].io.fd);
		l->socks[w].io.fd = -1;
	}
	return rc;
}

/* One socket of l on a: listening TCP, or bound UDP. Returns the fd or -errno. */
static int open_one(const struct sf_listener *l, const struct sf_sockaddr *a)
{
	if (l->proto == SF_PROTO_UDP)
		return sf_net_udp_bind(a);
	return sf_net_listen(a, LISTEN_BACKLOG, &l->rule->pol->bufs);
}

/*
 * Open listener l's socket for every worker: the one systemd passed for
 * it, else on the first candidate that binds.
 */
static int open_listener(struct sf_gen *g, struct sf_listener *l, char *err, size_t errlen)
{
	char abuf[SF_ADDRSTRLEN];
	size_t i = 0;
	unsigned w;
	int fd = sf_sd_listener_fd(l);

	if (fd >= 0)
		return open_passed(g, l, fd, err, errlen);
	fd = -EADDRNOTAVAIL;
	for (i = 0; i < l->cand.n; i++) {
		fd = open_one(l, &l->cand.a[i]);
		if (fd >= 0)
			break;
		/* The dual-stack wildcard on a host without IPv6: try IPv4. */
		if (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)
			break;
	}
	if (fd < 0)
		goto fail;
	l->addr = l->cand.a[i];
	l->wildcard = l->proto == SF_PROTO_UDP && sf_addr_is_wildcard(&l->addr);
	l->socks[0].io.fd = fd;
	for (w = 1; w < g->nworkers && !sf_rule_paired(l->rule); w++) {
		fd = open_one(l, &l->addr);
		if (fd < 0)
			goto fail;
		l->socks[w].io.fd = fd;
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot listen on %s (rule '%s'): %s%s",
		 sf_addr_format((const struct sockaddr *)&l->cand.a[i < l->cand.n ? i : 0].ss, abuf,
				sizeof(abuf)),
		 l->rule->name, strerror(-fd),
		 fd == -EADDRINUSE ? " (address in use by another program)" : "");
	for (w = 0; w < g->nworkers; w++) {
		if (l->socks[w].io.fd >= 0)
			close(l->socks[w].io.fd);
		l->socks[w].io.fd = -1;
	}
	return fd;
}

/* Binary search of the previous generation's listeners sorted by address. */
static struct sf_listener *find_prev(struct sf_listener **v, size_t n, const struct sf_listener *l)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ls_cmp(&v[mid], &l);

		if (c == 0)
			return v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Can l take over o's sockets? Not when one is a meet listener (worker
 * 0's socket only) and the other is served by every worker: l then
 * binds sockets of its own beside o's (SO_REUSEPORT), and o's are closed
 * when the workers let the old generation go.
 */
static int same_workers(const struct sf_listener *o, const struct sf_listener *l)
{
	return sf_rule_paired(o->rule) == sf_rule_paired(l->rule);
}

/*
 * Accepted sockets inherit keepalive and buffer sizes from their TCP
 * listener l: give it its rule's. A new socket has them already but for
 * one systemd passed; a kept one gets this generation's, though a size
 * back to 0 cannot be undone on it (the kernel keeps a set size), as
 * docs/config.md says.
 */
static void listener_opts(struct sf_listener *l, unsigned nworkers, int kept)
{
	const struct sf_policy *p = l->rule->pol;
	unsigned w;

	if (l->proto == SF_PROTO_UDP)
		return;
	for (w = 0; w < nworkers; w++) {
		int fd = l->socks[w].io.fd;

		/* A meet listener has worker 0's socket only. */
		if (fd < 0)
			continue;
		if (p->keepalive || kept)
			sf_net_keepalive(fd, p->keepalive);
		sf_net_set_bufs(fd, &p->bufs);
	}
}

int sf_gen_listen(struct sf_gen *g, const struct sf_gen *prev, char *err, size_t errlen)
{
	struct sf_listener **v = NULL;
	size_t i, nprev = prev != NULL ? prev->nls : 0;
	unsigned w;
	int rc = 0;

	if (nprev > 0) {
		v = malloc(nprev * sizeof(*v));
		if (v == NULL) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		for (i = 0; i < nprev; i++)
			v[i] = &prev->ls[i];
		qsort(v, nprev, sizeof(*v), ls_cmp);
	}
	for (i = 0; i < g->nls; i++) {
		struct sf_listener *l = &g->ls[i], *o = v ? find_prev(v, nprev, l) : NULL;
		if (o != NULL && o->socks[0].io.fd >= 0 && same_workers(o, l)) {
			l->addr = o->addr;
			l->wildcard = o->wildcard;
			for (w = 0; w < g->nworkers; w++) {
				l->socks[w].io.fd = o->socks[w].io.fd;
				/* The count is the socket's: go on from it. */
				l->socks[w].drops = SF_ATOMIC_GET(o->socks[w].drops);
			}
		} else if ((rc = open_listener(g, l, err, errlen)) < 0) {
			break;
		}
	}
	/* Only once every listener is there: a failed reload leaves prev's untouched. */
	for (i = 0; rc == 0 && i < g->nls; i++) {
		struct sf_listener *l = &g->ls[i], *o = v ? find_prev(v, nprev, l) : NULL;

		listener_opts(l, g->nworkers, o != NULL && same_workers(o, l));
	}
	if (rc < 0) {
		/* Close what this call opened; what was taken over stays prev's. */
		size_t j;

		for (j = 0; j < i; j++) {
			struct sf_listener *l = &g->ls[j];

			struct sf_listener *o = v != NULL ? find_prev(v, nprev, l) : NULL;

			if (o != NULL && same_workers(o, l))
				continue;
			for (w = 0; w < g->nworkers; w++)
				if (l->socks[w].io.fd >= 0)
					close(l->socks[w].io.fd);
		}
		for (j = 0; j < g->nls; j++)
			for (w = 0; w < g->nworkers; w++)
				g->ls[j].socks[w].io.fd = -1;
	}
	free(v);
	return rc;
}

void sf_gen_close_worker(struct sf_gen *g, unsigned w)
{
	size_t i;

	for (i = 0; i < g->nls; i++) {
		if (g->ls[i].socks[w].io.fd >= 0)
			close(g->ls[i].socks[w].io.fd);
		g->ls[i].socks[w].io.fd = -1;
	}
}

/* Mark worker w's listener fds of g (may be NULL) in bitmap m of nbits. */
static void mark_fds(const struct sf_gen *g, unsigned w, unsigned char *m, size_t nbits)
{
	size_t i;

	for (i = 0; g != NULL && i < g->nls; i++) {
		int fd = g->ls[i].socks[w].io.fd;

		if (fd >= 0 && (size_t)fd < nbits)
			m[fd / 8] |= (unsigned char)(1u << (fd % 8));
	}
}

static int max_fd(const struct sf_gen *g, unsigned w)
{
	size_t i;
	int m = -1;

	for (i = 0; g != NULL && i < g->nls; i++)
		if (g->ls[i].socks[w].io.fd > m)
			m = g->ls[i].socks[w].io.fd;
	return m;
}

/*
 * Sockets pass between generations by descriptor number, so "dropped"
 * is decided on numbers: exact whatever generations were skipped.
 */
void sf_gen_close_dropped(const struct sf_gen *keep, const struct sf_gen *keep2,
			  const struct sf_gen *old, unsigned w)
{
	size_t i, nbits;
	unsigned char *m;
	int top = max_fd(keep, w);

	if (max_fd(keep2, w) > top)
		top = max_fd(keep2, w);
	nbits = (size_t)top + 1;
	m = calloc(nbits / 8 + 1, 1);
	if (m == NULL)
		return; /* leaves sockets open: better than closing one in use */
	mark_fds(keep, w, m, nbits);
	mark_fds(keep2, w, m, nbits);
	for (i = 0; i < old->nls; i++) {
		int fd = old->ls[i].socks[w].io.fd;

		if (fd >= 0 && ((size_t)fd >= nbits || !(m[fd / 8] & (1u << (fd % 8)))))
			close(fd);
	}
	free(m);
}

struct sf_rule *sf_gen_rule(struct sf_gen *g, const char *name)
{
	size_t i;

	for (i = 0; i < g->nrules; i++)
		if (strcmp(g->rules[i].name, name) == 0)
			return &g->rules[i];
	return NULL;
}

int sf_rule_reserve(struct sf_rule *r)
{
	unsigned max = r->pol->max_conns;
	uint64_t cur;

	/*
	 * Without a limit nothing reads the count: no locked add on a cache
	 * line every worker shares, per accept.
	 */
	if (max == 0)
		return 1;
	cur = SF_ATOMIC_GET(r->active);
	do {
		if (cur >= max)
			return 0;
	} while (!__atomic_compare_exchange_n(&r->active, &cur, cur + 1, 1, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return 1;
}

void sf_rule_release(struct sf_rule *r)
{
	/* The policy of a generation never changes: as sf_rule_reserve counted. */
	if (r->pol->max_conns != 0)
		SF_ATOMIC_SUB(r->active, 1);
}

int sf_rule_allows(const struct sf_rule *r, const struct sockaddr *sa)
{
	if (r->deny != NULL && sf_cidrset_match(r->deny, sa))
		return 0;
	return r->allow == NULL || sf_cidrset_match(r->allow, sa);
}
