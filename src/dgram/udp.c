/*
 * UDP forwarding shared by every engine that serves it: sessions, their
 * table, timeouts and LRU eviction, the batched data path both ways, and
 * accounting. See include/sockfwd/udp.h for the model.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockfwd/conn.h"
#include "sockfwd/log.h"
#include "sockfwd/stats.h"
#include "sockfwd/udp.h"
#include "sockfwd/worker.h"

/*
 * A buffer holds any datagram whole (65,527 bytes is IPv6's largest
 * payload without jumbograms), so MSG_TRUNC never cuts one; the pages a
 * small datagram does not touch are never faulted in.
 */
#define UDP_BUF	      (64u * 1024)
#define UDP_BATCH     16u
#define UDP_CTL	      128u /* pktinfo (v4 or v6) and SO_RXQ_OVFL */
#define UDP_BUDGET    8u   /* batches per wakeup, so one busy socket cannot starve the loop */
#define UDP_TAB_MIN   256u
#define UDP_SENDFLAGS (MSG_DONTWAIT | MSG_NOSIGNAL)

int sf_gen_has_udp(const struct sf_gen *g)
{
	size_t i;

	for (i = 0; i < g->nrules; i++)
		if (g->rules[i].proto == SF_PROTO_UDP)
			return 1;
	return 0;
}

/* ---- the session table ---- */

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

/* Family, port and address: what identifies a peer (not flow label or scope). */
static uint32_t addr_hash(uint32_t h, const struct sf_inaddr *a)
{
	if (a->len == 0)
		return fnv(h, "", 1);
	if (a->u.sa.sa_family == AF_INET) {
		h = fnv(h, &a->u.in.sin_port, sizeof(a->u.in.sin_port));
		return fnv(h, &a->u.in.sin_addr, sizeof(a->u.in.sin_addr));
	}
	h = fnv(h, &a->u.in6.sin6_port, sizeof(a->u.in6.sin6_port));
	return fnv(h, &a->u.in6.sin6_addr, sizeof(a->u.in6.sin6_addr));
}

static int addr_eq(const struct sf_inaddr *a, const struct sf_inaddr *b)
{
	if (a->len == 0 || b->len == 0)
		return a->len == b->len;
	if (a->u.sa.sa_family != b->u.sa.sa_family)
		return 0;
	if (a->u.sa.sa_family == AF_INET)
		return a->u.in.sin_port == b->u.in.sin_port &&
		       a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
	return a->u.in6.sin6_port == b->u.in6.sin6_port &&
	       memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, sizeof(struct in6_addr)) == 0;
}

uint32_t sf_udp_hash(int lfd, const struct sf_inaddr *peer, const struct sf_inaddr *local)
{
	uint32_t h = fnv(2166136261u, &lfd, sizeof(lfd));

	return addr_hash(addr_hash(h, peer), local);
}

struct sf_udp_sess *sf_udp_find(const struct sf_udp *u, int lfd, const struct sf_inaddr *peer,
				const struct sf_inaddr *local)
{
	uint32_t h = sf_udp_hash(lfd, peer, local);
	struct sf_udp_sess *s;

	if (u->tab == NULL)
		return NULL;
	for (s = u->tab[h & u->mask]; s != NULL; s = s->hnext)
		if (s->hash == h && s->lfd == lfd && addr_eq(&s->peer, peer) &&
		    addr_eq(&s->local, local))
			return s;
	return NULL;
}

/* Double the buckets (or make the first ones): O(n), once per doubling. */
static int tab_grow(struct sf_udp *u)
{
	size_t nb = u->tab == NULL ? UDP_TAB_MIN : (u->mask + 1) * 2, i;
	struct sf_udp_sess **t = calloc(nb, sizeof(*t)), *s, *next;

	if (t == NULL)
		return -ENOMEM;
	for (i = 0; u->tab != NULL && i <= u->mask; i++) {
		for (s = u->tab[i]; s != NULL; s = next) {
			next = s->hnext;
			s->hnext = t[s->hash & (nb - 1)];
			t[s->hash & (nb - 1)] = s;
		}
	}
	free(u->tab);
	u->tab = t;
	u->mask = nb - 1;
	return 0;
}

int sf_udp_insert(struct sf_udp *u, struct sf_udp_sess *s)
{
	/* A load factor of at most 1; a failed growth keeps the longer chains. */
	if ((u->tab == NULL || u->n > u->mask) && tab_grow(u) < 0 && u->tab == NULL)
		return -ENOMEM;
	s->hnext = u->tab[s->hash & u->mask];
	u->tab[s->hash & u->mask] = s;
	u->n++;
	return 0;
}

void sf_udp_remove(struct sf_udp *u, struct sf_udp_sess *s)
{
	struct sf_udp_sess **pp = &u->tab[s->hash & u->mask];

	for (; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			s->hnext = NULL;
			u->n--;
			return;
		}
	}
}

/* ---- set up ---- */

int sf_udp_init(struct sf_udp *u, struct sf_worker *w, struct sf_timers *timers,
		const struct sf_udp_ops *ops, void *loop)
{
	memset(u, 0, sizeof(*u));
	u->w = w;
	u->timers = timers;
	u->ops = ops;
	u->loop = loop;
	u->epfd = -1;
	u->batch = UDP_BATCH;
	/* Virtual memory: only the pages datagrams touch become resident. */
	u->bufs = malloc((size_t)UDP_BATCH * UDP_BUF);
	u->slot = calloc(UDP_BATCH, sizeof(*u->slot));
	u->mm = calloc(UDP_BATCH, sizeof(struct mmsghdr));
	u->iov = calloc(UDP_BATCH, sizeof(struct iovec));
	u->name = calloc(UDP_BATCH, sizeof(struct sockaddr_in6));
	u->ctl = calloc(UDP_BATCH, UDP_CTL);
	if (u->bufs == NULL || u->slot == NULL || u->mm == NULL || u->iov == NULL ||
	    u->name == NULL || u->ctl == NULL) {
		sf_udp_destroy(u);
		return -ENOMEM;
	}
	return 0;
}

void sf_udp_reap(struct sf_udp *u)
{
	struct sf_udp_sess *s;

	while ((s = u->dead) != NULL) {
		u->dead = s->hnext;
		free(s);
	}
}

void sf_udp_destroy(struct sf_udp *u)
{
	sf_udp_end_all(u, SF_R_STOP);
	sf_udp_reap(u);
	free(u->tab);
	free(u->bufs);
	free(u->slot);
	free(u->mm);
	free(u->iov);
	free(u->name);
	free(u->ctl);
	if (u->epfd >= 0)
		close(u->epfd);
	memset(u, 0, sizeof(*u));
	u->epfd = -1;
}

/* ---- an epoll set of its own, for engines without a readiness loop ---- */

static int own_add(void *loop, struct sf_io *io)
{
	struct sf_udp *u = loop;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = io };

	return epoll_ctl(u->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

static void own_del(void *loop, struct sf_io *io)
{
	struct sf_udp *u = loop;

	epoll_ctl(u->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

static const struct sf_udp_ops own_ops = { own_add, own_del };

int sf_udp_init_own(struct sf_udp *u, struct sf_worker *w, struct sf_timers *timers)
{
	int rc = sf_udp_init(u, w, timers, &own_ops, u);

	if (rc < 0)
		return rc;
	/* Level-triggered, as the reactor: what a budget left wakes it again. */
	u->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (u->epfd < 0) {
		rc = -errno;
		sf_udp_destroy(u);
		return rc;
	}
	u->loop = u;
	return 0;
}

static void own_on_listen(void *ctx, struct sf_io *io, uint32_t ev)
{
	sf_udp_on_listen(ctx, SF_CONTAINER_OF(io, struct sf_lsock, io));
}

void sf_udp_listen(struct sf_udp *u, struct sf_gen *g, int on)
{
	size_t i;

	for (i = 0; i < g->nls; i++) {
		struct sf_lsock *ls = &g->ls[i].socks[u->w->id];

		if (g->ls[i].proto != SF_PROTO_UDP || ls->io.fd < 0)
			continue;
		if (!on) {
			own_del(u, &ls->io);
			continue;
		}
		ls->io.cb = own_on_listen;
		if (own_add(u, &ls->io) < 0)
			sf_log_warn("worker %u: cannot watch a UDP listener", u->w->id);
	}
}

int sf_udp_poll(struct sf_udp *u)
{
	struct epoll_event evs[64];
	int i, n;

	do
		n = epoll_wait(u->epfd, evs, 64, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (i = 0; i < n; i++) {
		struct sf_io *io = evs[i].data.ptr;

		io->cb(u, io, evs[i].events);
	}
	sf_udp_reap(u);
	return n;
}

/* ---- sessions ---- */

static struct sf_up_ctr *up_ctr(const struct sf_udp_sess *s)
{
	return &s->rule->ups[s->up].st->w[s->u->w->id];
}

static void log_end(const struct sf_udp_sess *s, int reason)
{
	char cbuf[SF_ADDRSTRLEN];
	const char *ubuf = s->up >= 0 ? s->rule->ups[s->up].label : "-";
	uint64_t dur = sf_now_ms() - s->start_ms;

	sf_addr_format(&s->peer.u.sa, cbuf, sizeof(cbuf));
	{
		const struct sf_log_kv kv[] = {
			SF_KV_S("rule", s->rule->name),
			SF_KV_S("protocol", "udp"),
			SF_KV_S("client", cbuf),
			SF_KV_S("upstream", ubuf),
			SF_KV_U("bytes_c2u", s->bytes[0]),
			SF_KV_U("bytes_u2c", s->bytes[1]),
			SF_KV_U("duration_ms", dur),
			SF_KV_S("reason", sf_reason_name(reason)),
		};

		sf_log_event(SF_LOG_VERBOSE, "close", kv, sizeof(kv) / sizeof(kv[0]),
			     "close udp %s -> %s rule=%s c2u=%llu u2c=%llu time=%llu.%03llus "
			     "reason=%s",
			     cbuf, ubuf, s->rule->name, (unsigned long long)s->bytes[0],
			     (unsigned long long)s->bytes[1], (unsigned long long)(dur / 1000u),
			     (unsigned long long)(dur % 1000u), sf_reason_name(reason));
	}
}

/*
 * End s: its socket, timer, table and list places go; counted as a
 * connection closed with reason. Freed after the current batch of events.
 */
static void sess_end(struct sf_udp *u, struct sf_udp_sess *s, int reason)
{
	struct sf_rule *r = s->rule;
	int sh = u->w->ctr_shared;

	if (s->io.fd < 0)
		return;
	u->ops->del(u->loop, &s->io);
	close(s->io.fd);
	s->io.fd = -1;
	sf_timer_del(u->timers, &s->timer);
	sf_udp_remove(u, s);
	sf_lru_unlink(&s->lru);
	r->udp[u->w->id].n--;
	SF_ATOMIC_SUB(r->sessions, 1);
	sf_ctr_add_rel(&up_ctr(s)->closed, 1, sh);
	if (r->pol->balance == SF_BAL_LEASTCONN)
		SF_ATOMIC_SUB(r->ups[s->up].active, 1);
	sf_ctr_add_rel(&s->ctr->closed[reason], 1, sh);
	if (sf_log_level() >= SF_LOG_VERBOSE)
		log_end(s, reason);
	sf_gen_unref(s->gen);
	s->gen = NULL;
	s->hnext = u->dead;
	u->dead = s;
}

void sf_udp_end_all(struct sf_udp *u, int reason)
{
	size_t i;

	for (i = 0; u->tab != NULL && i <= u->mask; i++)
		while (u->tab[i] != NULL)
			sess_end(u, u->tab[i], reason);
}

void sf_udp_gen_changed(struct sf_udp *u, const struct sf_gen *g)
{
	struct sf_udp_sess *s, *next;
	size_t i, k;

	for (i = 0; u->tab != NULL && i <= u->mask; i++) {
		for (s = u->tab[i]; s != NULL; s = next) {
			next = s->hnext;
			for (k = 0; k < g->nls; k++)
				if (g->ls[k].socks[u->w->id].io.fd == s->lfd &&
				    g->ls[k].proto == SF_PROTO_UDP)
					break;
			/* Its listener is gone: a reply has no socket to leave from. */
			if (k == g->nls)
				sess_end(u, s, SF_R_STOP);
		}
	}
}

/* The timer: end s after udp_timeout without a datagram, else re-arm for the rest. */
static void sess_on_timer(void *ctx, struct sf_timer *tm)
{
	struct sf_udp_sess *s = SF_CONTAINER_OF(tm, struct sf_udp_sess, timer);
	struct sf_udp *u = s->u;
	uint64_t due = s->last_ms + s->rule->pol->udp_timeout_ms;

	if (u->w->now_ms >= due)
		sess_end(u, s, SF_R_IDLE_TIMEOUT);
	else if (sf_timer_set(u->timers, &s->timer, due) < 0)
		sess_end(u, s, SF_R_LIMIT);
}

static void sess_on_io(void *ctx, struct sf_io *io, uint32_t ev) { sf_udp_on_upstream(io); }

/*
 * Let the kernel coalesce a burst of datagrams of one flow into one
 * buffer (UDP GRO), which is forwarded with UDP_SEGMENT so the datagrams
 * come out as they went in: best effort, a kernel without it delivers
 * them one by one.
 */
static void udp_gro(int fd)
{
	int one = 1;

	(void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
}

/*
 * Open s's upstream socket: the rule's balance mode over its pool (source
 * hash keeps a client on one upstream), each resolved address in turn.
 * connect() on UDP only sets the peer, so it fails only locally (no
 * route, no descriptor). Returns 0 or -errno.
 */
static int sess_connect(struct sf_udp *u, struct sf_udp_sess *s, const struct sf_listener *l)
{
	struct sf_rule *r = s->rule;
	uint64_t tried = 0, now = u->w->now_ms;
	int sh = u->w->ctr_shared, rc = -ECONNREFUSED, idx, fd;
	size_t k;

	while ((idx = sf_rule_pick(r, &s->peer.u.sa, tried, now)) >= 0) {
		struct sf_upstream *up = &r->ups[idx];

		tried |= 1ull << idx;
		for (k = 0; k < up->addrs.n; k++) {
			struct sf_sockaddr a = up->addrs.a[k];

			if (up->conf.port_last != up->conf.hp.port)
				sf_addr_set_port(&a, (uint16_t)(up->conf.hp.port + l->index));
			sf_ctr_add(&up->st->w[u->w->id].attempts, 1, sh);
			fd = socket(a.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    IPPROTO_UDP);
			if (fd >= 0 && connect(fd, (struct sockaddr *)&a.ss, a.len) == 0) {
				udp_gro(fd);
				s->io.fd = fd;
				s->up = idx;
				sf_ctr_add_rel(&up->st->w[u->w->id].opened, 1, sh);
				/* leastconn counts sessions, as it counts connections. */
				if (r->pol->balance == SF_BAL_LEASTCONN)
					SF_ATOMIC_ADD(up->active, 1);
				return 0;
			}
			rc = -errno;
			if (fd >= 0)
				close(fd);
			sf_ctr_add(&up->st->w[u->w->id].failures, 1, sh);
			if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM)
				return rc;
		}
		sf_upstream_failed(r, up, now);
	}
	return rc;
}

/*
 * A session for the datagram in slot, which arrived on ls: allowed, room
 * made (the rule's least recently used session of this worker evicted
 * when it is full), upstream socket open. Returns it, or NULL with *drop
 * set (enum sf_udp_drop).
 */
static struct sf_udp_sess *sess_new(struct sf_udp *u, struct sf_lsock *ls,
				    const struct sf_udp_slot *slot, int *drop)
{
	struct sf_rule *r = ls->l->rule;
	struct sf_rule_udp *ru = &r->udp[u->w->id];
	struct sf_udp_sess *s;
	int sh = u->w->ctr_shared;

	if (!sf_rule_allows(r, &slot->peer.u.sa)) {
		*drop = SF_UD_DENIED;
		return NULL;
	}
	if (SF_ATOMIC_GET(r->sessions) >= r->pol->max_sessions) {
		if (sf_lru_empty(&ru->lru)) {
			*drop = SF_UD_LIMIT; /* the other workers hold them all */
			return NULL;
		}
		sess_end(u, SF_CONTAINER_OF(ru->lru.next, struct sf_udp_sess, lru), SF_R_LIMIT);
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*drop = SF_UD_LIMIT;
		return NULL;
	}
	s->u = u;
	s->rule = r;
	s->ls = ls;
	s->lfd = ls->io.fd;
	s->peer = slot->peer;
	s->local = slot->local;
	s->ifindex = slot->ifindex;
	s->up = -1;
	s->start_ms = s->last_ms = u->w->now_ms;
	s->hash = sf_udp_hash(s->lfd, &s->peer, &s->local);
	if (sess_connect(u, s, ls->l) < 0) {
		free(s);
		*drop = SF_UD_UPSTREAM;
		return NULL;
	}
	s->io.cb = sess_on_io;
	sf_timer_init(&s->timer, sess_on_timer);
	if (sf_udp_insert(u, s) < 0)
		goto fail;
	if (u->ops->add(u->loop, &s->io) < 0 ||
	    sf_timer_set(u->timers, &s->timer, s->last_ms + r->pol->udp_timeout_ms) < 0) {
		sf_udp_remove(u, s);
		sf_timer_del(u->timers, &s->timer);
		goto fail;
	}
	s->gen = ls->l->gen; /* not the worker's: a reload may have moved on */
	sf_gen_ref(s->gen);
	s->ctr = &r->st->w[u->w->id];
	sf_lru_push(&ru->lru, &s->lru);
	ru->n++;
	SF_ATOMIC_ADD(r->sessions, 1);
	sf_ctr_add(&s->ctr->accepted, 1, sh);
	return s;
fail:
	/* Out of memory: undo what sess_connect counted (the socket leaves epoll as it closes). */
	close(s->io.fd);
	sf_ctr_add_rel(&r->ups[s->up].st->w[u->w->id].closed, 1, sh);
	if (r->pol->balance == SF_BAL_LEASTCONN)
		SF_ATOMIC_SUB(r->ups[s->up].active, 1);
	free(s);
	*drop = SF_UD_LIMIT;
	return NULL;
}

/* ---- the data path ---- */

/* Point the batch's headers at its buffers, names and (with ctl) control buffers. */
static void batch_prepare(struct sf_udp *u, unsigned n, int ctl)
{
	struct mmsghdr *mm = u->mm;
	struct iovec *iov = u->iov;
	struct sockaddr_in6 *nm = u->name;
	unsigned i;

	for (i = 0; i < n; i++) {
		iov[i].iov_base = u->bufs + (size_t)i * UDP_BUF;
		iov[i].iov_len = UDP_BUF;
		memset(&mm[i].msg_hdr, 0, sizeof(mm[i].msg_hdr));
		mm[i].msg_hdr.msg_name = &nm[i];
		mm[i].msg_hdr.msg_namelen = sizeof(nm[i]);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		if (ctl) {
			mm[i].msg_hdr.msg_control = (char *)u->ctl + (size_t)i * UDP_CTL;
			mm[i].msg_hdr.msg_controllen = UDP_CTL;
		}
	}
}

/* recvmmsg without waiting. Returns how many, or -errno. */
static int batch_recv(struct sf_udp *u, int fd, int ctl)
{
	int n;

	batch_prepare(u, u->batch, ctl);
	do
		n = recvmmsg(fd, u->mm, u->batch, MSG_DONTWAIT, NULL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/*
 * What the kernel told about datagram i: its source, the local address
 * it was sent to (wildcard listeners), and the socket's drop count.
 */
static void slot_parse(struct sf_udp *u, struct sf_lsock *ls, unsigned i)
{
	struct mmsghdr *m = &((struct mmsghdr *)u->mm)[i];
	struct sf_udp_slot *sl = &u->slot[i];
	struct cmsghdr *c;

	memset(sl, 0, sizeof(*sl));
	sl->len = m->msg_len;
	sl->flags = m->msg_hdr.msg_flags;
	if (m->msg_hdr.msg_namelen <= sizeof(sl->peer.u)) {
		memcpy(&sl->peer.u, m->msg_hdr.msg_name, m->msg_hdr.msg_namelen);
		sl->peer.len = m->msg_hdr.msg_namelen;
	}
	for (c = CMSG_FIRSTHDR(&m->msg_hdr); c != NULL; c = CMSG_NXTHDR(&m->msg_hdr, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
			uint32_t drops, delta;

			memcpy(&drops, CMSG_DATA(c), sizeof(drops));
			delta = drops - SF_ATOMIC_GET(ls->drops);
			SF_ATOMIC_SET(ls->drops, drops);
			if (delta > 0 && delta < (1u << 31))
				sf_ctr_add(&ls->l->rule->st->w[u->w->id].udp_drops[SF_UD_QUEUE],
					   delta, u->w->ctr_shared);
		} else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
			int gso;

			memcpy(&gso, CMSG_DATA(c), sizeof(gso));
			sl->gso = gso > 0 ? gso : 0;
		} else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			sl->local.u.in.sin_family = AF_INET;
			/* spec_dst: the local address (ipi_addr may be a broadcast one). */
			sl->local.u.in.sin_addr = pi.ipi_spec_dst;
			sl->local.len = sizeof(struct sockaddr_in);
			sl->ifindex = pi.ipi_ifindex;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(c), sizeof(pi));
			sl->local.u.in6.sin6_family = AF_INET6;
			sl->local.u.in6.sin6_addr = pi.ipi6_addr;
			sl->local.len = sizeof(struct sockaddr_in6);
			sl->ifindex = (int)pi.ipi6_ifindex;
		}
	}
}

static void count_drop(struct sf_udp *u, struct sf_rule *r, int why, uint64_t n)
{
	sf_ctr_add(&r->st->w[u->w->id].udp_drops[why], n, u->w->ctr_shared);
}

/* A datagram either way: the loop's clock for the timer, the tail of the LRU. */
static void sess_touch(struct sf_udp *u, struct sf_udp_sess *s)
{
	s->last_ms = u->w->now_ms;
	sf_lru_touch(&s->rule->udp[u->w->id].lru, &s->lru);
}

/* Datagrams in a buffer of len bytes coalesced by GRO into gso-byte segments (0: one). */
static unsigned segments(size_t len, int gso)
{
	if (gso <= 0 || len <= (size_t)gso)
		return 1;
	return (unsigned)((len + (size_t)gso - 1) / (size_t)gso);
}

/* Append a UDP_SEGMENT control message for gso to msg's control buffer (room checked by caller). */
static void add_segment_ctl(struct msghdr *msg, int gso)
{
	struct cmsghdr *c = (struct cmsghdr *)((char *)msg->msg_control + msg->msg_controllen);
	uint16_t v = (uint16_t)gso;

	memset(c, 0, CMSG_SPACE(sizeof(v)));
	c->cmsg_level = SOL_UDP;
	c->cmsg_type = UDP_SEGMENT;
	c->cmsg_len = CMSG_LEN(sizeof(v));
	memcpy(CMSG_DATA(c), &v, sizeof(v));
	msg->msg_controllen += CMSG_SPACE(sizeof(v));
}

/* GSO refused (route MTU, no checksum offload, too many segments): send them one by one. */
static int gso_refused(int err)
{
	return err == -EINVAL || err == -EMSGSIZE || err == -EIO || err == -EOPNOTSUPP;
}

/*
 * Message i of the batch, received on a listener, as a datagram for a
 * session's connected socket: no name; with UDP_SEGMENT when GRO
 * coalesced several datagrams of one client, so the upstream receives
 * exactly the datagrams the client sent.
 */
static void up_msg(struct sf_udp *u, unsigned i)
{
	struct mmsghdr *m = &((struct mmsghdr *)u->mm)[i];
	struct iovec *iov = &((struct iovec *)u->iov)[i];

	iov->iov_base = u->bufs + (size_t)i * UDP_BUF;
	iov->iov_len = u->slot[i].len;
	memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
	m->msg_hdr.msg_iov = iov;
	m->msg_hdr.msg_iovlen = 1;
	if (segments(u->slot[i].len, u->slot[i].gso) > 1) {
		m->msg_hdr.msg_control = (char *)u->ctl + (size_t)i * UDP_CTL;
		add_segment_ctl(&m->msg_hdr, u->slot[i].gso);
	}
}

/* Message i was refused with its UDP_SEGMENT: send its datagrams one by one. Returns how many went.
 */
static unsigned up_split(struct sf_udp *u, struct sf_udp_sess *s, unsigned i)
{
	char *buf = u->bufs + (size_t)i * UDP_BUF;
	size_t len = u->slot[i].len, gso = (size_t)u->slot[i].gso, off;
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	unsigned sent = 0;

	for (off = 0; off < len; off += gso) {
		iov.iov_base = buf + off;
		iov.iov_len = len - off < gso ? len - off : gso;
		if (sendmsg(s->io.fd, &msg, UDP_SENDFLAGS) >= 0)
			sent++;
	}
	return sent;
}

/*
 * The control message that makes a reply leave from s->local, into
 * msg's control buffer: IP_PKTINFO for an IPv4 socket, IPV6_PKTINFO
 * otherwise (a v4-mapped address for an IPv4 client of a dual-stack
 * socket, which Linux takes). The interface is given only for a
 * link-local address, which needs it. Nothing when local is the
 * listener's own address.
 */
static void add_reply_ctl(const struct sf_udp_sess *s, struct msghdr *msg)
{
	struct cmsghdr *c = (struct cmsghdr *)((char *)msg->msg_control + msg->msg_controllen);

	if (s->local.len == 0)
		return;
	if (s->local.u.sa.sa_family == AF_INET) {
		struct in_pktinfo pi = { .ipi_spec_dst = s->local.u.in.sin_addr };

		memset(c, 0, CMSG_SPACE(sizeof(pi)));
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		msg->msg_controllen += CMSG_SPACE(sizeof(pi));
	} else {
		struct in6_pktinfo pi = { .ipi6_addr = s->local.u.in6.sin6_addr };

		if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr))
			pi.ipi6_ifindex = (unsigned)s->ifindex;
		memset(c, 0, CMSG_SPACE(sizeof(pi)));
		c->cmsg_level = IPPROTO_IPV6;
		c->cmsg_type = IPV6_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(pi));
		memcpy(CMSG_DATA(c), &pi, sizeof(pi));
		msg->msg_controllen += CMSG_SPACE(sizeof(pi));
	}
}

/* Message i of the batch as a reply to s's client: whole, or (seg > 0) its segment at off. */
static void reply_msg(struct sf_udp *u, struct sf_udp_sess *s, unsigned i, size_t off, size_t seg)
{
	struct mmsghdr *m = &((struct mmsghdr *)u->mm)[i];
	struct iovec *iov = &((struct iovec *)u->iov)[i];
	int gso = u->slot[i].gso;

	iov->iov_base = u->bufs + (size_t)i * UDP_BUF + off;
	iov->iov_len = seg ? seg : u->slot[i].len;
	memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
	m->msg_hdr.msg_name = &s->peer.u;
	m->msg_hdr.msg_namelen = s->peer.len;
	m->msg_hdr.msg_iov = iov;
	m->msg_hdr.msg_iovlen = 1;
	m->msg_hdr.msg_control = (char *)u->ctl + (size_t)i * UDP_CTL;
	add_reply_ctl(s, &m->msg_hdr);
	if (!seg && segments(u->slot[i].len, gso) > 1)
		add_segment_ctl(&m->msg_hdr, gso);
	if (m->msg_hdr.msg_controllen == 0)
		m->msg_hdr.msg_control = NULL;
}

/*
 * Message i was refused with its UDP_SEGMENT: send its datagrams one by
 * one. Returns how many went.
 */
static unsigned reply_split(struct sf_udp *u, struct sf_udp_sess *s, unsigned i)
{
	struct mmsghdr *m = &((struct mmsghdr *)u->mm)[i];
	size_t len = u->slot[i].len, gso = (size_t)u->slot[i].gso, off;
	unsigned sent = 0;

	for (off = 0; off < len; off += gso) {
		reply_msg(u, s, i, off, len - off < gso ? len - off : gso);
		if (sendmsg(s->lfd, &m->msg_hdr, UDP_SENDFLAGS) >= 0)
			sent++;
	}
	return sent;
}

/*
 * Send messages [first, end) of the batch, prepared in u->mm, for
 * direction d of s (C2U: on its connected socket; U2C: to its client on
 * the listener socket) with as few sendmmsg calls as errors allow, each a
 * datagram or (GRO) several of one segment size sent with UDP_SEGMENT.
 * An ICMP port unreachable from the upstream comes back on the next call
 * on the connected socket as ECONNREFUSED and that datagram is not sent:
 * count it and try it again, at most three times (the upstream may be
 * back); the unconnected listener socket never reports it. A full socket
 * buffer drops the rest (UDP has no backpressure to give); another error
 * drops that message and goes on. Counts bytes, datagrams and drops.
 */
static void send_batch(struct sf_udp *u, struct sf_udp_sess *s, int d, unsigned first, unsigned end)
{
	struct mmsghdr *mm = u->mm;
	int fd = d == SF_C2U ? s->io.fd : s->lfd, sh = u->w->ctr_shared, k, tries = 0;
	uint64_t bytes = 0, dgrams = 0, lost = 0;
	unsigned i, nseg, done = first;

	while (done < end) {
		k = sendmmsg(fd, mm + done, end - done, UDP_SENDFLAGS);
		if (k > 0) {
			for (i = done; i < done + (unsigned)k; i++) {
				bytes += u->slot[i].len;
				dgrams += segments(u->slot[i].len, u->slot[i].gso);
			}
			done += (unsigned)k;
			tries = 0;
			continue;
		}
		if (k == 0)
			errno = EIO; /* not seen with vlen > 0: drop that message, go on */
		if (errno == EINTR)
			continue;
		if (errno == ECONNREFUSED) {
			sf_ctr_add(&s->ctr->udp_unreach, 1, sh);
			if (++tries < 3)
				continue;
		} else if (errno == EAGAIN || errno == ENOBUFS) {
			for (i = done; i < end; i++)
				lost += segments(u->slot[i].len, u->slot[i].gso);
			break;
		}
		nseg = segments(u->slot[done].len, u->slot[done].gso);
		if (nseg > 1 && gso_refused(-errno)) {
			unsigned sent =
				d == SF_C2U ? up_split(u, s, done) : reply_split(u, s, done);

			dgrams += sent;
			lost += nseg - sent;
			bytes += u->slot[done].len; /* close enough: only counted on this path */
		} else {
			lost += nseg;
		}
		done++;
		tries = 0;
	}
	if (lost > 0)
		count_drop(u, s->rule, SF_UD_SEND, lost);
	s->bytes[d] += bytes;
	sf_ctr_add(&s->ctr->bytes[d], bytes, sh);
	sf_ctr_add(&s->ctr->dgrams[d], dgrams, sh);
}

/*
 * Send messages [first, end) of the batch, all from one client, upstream
 * on s's connected socket: one sendmmsg for a client's burst instead of
 * one sendmsg per datagram.
 */
static void send_up(struct sf_udp *u, struct sf_udp_sess *s, unsigned first, unsigned end)
{
	unsigned i;

	for (i = first; i < end; i++)
		up_msg(u, i);
	send_batch(u, s, SF_C2U, first, end);
}

/*
 * Serve a listener: read batches, find or make each datagram's session,
 * and send each run of consecutive datagrams of one session upstream in
 * one call. A run is sent before a session is made, since making one may
 * evict (free) the least recently used session.
 */
int sf_udp_on_listen(struct sf_udp *u, struct sf_lsock *ls)
{
	struct sf_rule *r = ls->l->rule;
	struct sf_udp_sess *run;
	unsigned b, i, first;
	int n, drop;

	for (b = 0; b < UDP_BUDGET; b++) {
		n = batch_recv(u, ls->io.fd, 1);
		if (n <= 0)
			break;
		run = NULL;
		first = 0;
		for (i = 0; i < (unsigned)n; i++) {
			struct sf_udp_slot *sl = &u->slot[i];
			struct sf_udp_sess *s;

			slot_parse(u, ls, i);
			s = NULL;
			if (sl->flags & MSG_TRUNC)
				count_drop(u, r, SF_UD_TRUNC, 1);
			else if (sl->peer.len > 0) {
				if (!ls->l->wildcard)
					sl->local.len = 0;
				s = sf_udp_find(u, ls->io.fd, &sl->peer, &sl->local);
			}
			if (run != NULL && s != run) {
				send_up(u, run, first, i);
				run = NULL;
			}
			if (s == NULL && !(sl->flags & MSG_TRUNC) && sl->peer.len > 0 &&
			    (s = sess_new(u, ls, sl, &drop)) == NULL)
				count_drop(u, r, drop, 1);
			if (s == NULL)
				continue;
			sess_touch(u, s);
			if (run == NULL) {
				run = s;
				first = i;
			}
		}
		if (run != NULL)
			send_up(u, run, first, (unsigned)n);
		if ((unsigned)n < u->batch)
			break;
	}
	return 0;
}

/* Send the n messages of the batch, received on s's socket, to s's client. */
static void send_down(struct sf_udp *u, struct sf_udp_sess *s, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		reply_msg(u, s, i, 0, 0);
	send_batch(u, s, SF_U2C, 0, n);
}

/* The GRO segment size of each message of a batch received on a session socket. */
static void batch_gso(struct sf_udp *u, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		struct mmsghdr *m = &((struct mmsghdr *)u->mm)[i];
		struct cmsghdr *c;

		u->slot[i].len = m->msg_len;
		u->slot[i].gso = 0;
		for (c = CMSG_FIRSTHDR(&m->msg_hdr); c != NULL; c = CMSG_NXTHDR(&m->msg_hdr, c)) {
			int gso;

			if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO)
				continue;
			memcpy(&gso, CMSG_DATA(c), sizeof(gso));
			u->slot[i].gso = gso > 0 ? gso : 0;
		}
	}
}

void sf_udp_on_upstream(struct sf_io *io)
{
	struct sf_udp_sess *s = SF_CONTAINER_OF(io, struct sf_udp_sess, io);
	struct sf_udp *u = s->u;
	unsigned b;
	int n;

	for (b = 0; b < UDP_BUDGET && s->io.fd >= 0; b++) {
		n = batch_recv(u, s->io.fd, 1);
		if (n == -ECONNREFUSED) {
			/* ICMP port unreachable: counted; the session goes on. */
			sf_ctr_add(&s->ctr->udp_unreach, 1, u->w->ctr_shared);
			continue;
		}
		if (n <= 0)
			break;
		sess_touch(u, s);
		batch_gso(u, (unsigned)n);
		send_down(u, s, (unsigned)n);
		if ((unsigned)n < u->batch)
			break;
	}
}
