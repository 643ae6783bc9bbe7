/*
 * Provided buffer groups and send queues of the io_uring engine.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sockfwd/log.h"
#include "sockfwd/uring_bufs.h"

/*
 * sf_ubufs_init with only the first nring buffers in the ring; the rest
 * are stashed (the last on top). Returns 0 or -errno.
 */
static int ubufs_setup(struct sf_ubufs *b, struct io_uring *ring, unsigned nbufs, size_t bufsize,
		       unsigned short bgid, unsigned nring)
{
	struct io_uring_buf_reg reg;
	unsigned i;
	int rc;

	memset(b, 0, sizeof(*b));
	if (nbufs == 0 || (nbufs & (nbufs - 1)) != 0 || nbufs > 32768)
		return -EINVAL;
	b->nbufs = nbufs;
	b->bufsize = bufsize;
	b->bgid = bgid;
	b->bufs = calloc(nbufs, sizeof(*b->bufs));
	b->stash = calloc(nbufs, sizeof(*b->stash));
	if (b->bufs == NULL || b->stash == NULL) {
		rc = -ENOMEM;
		goto fail_bufs;
	}
	b->br_bytes = nbufs * sizeof(struct io_uring_buf);
	b->br = mmap(NULL, b->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->br == MAP_FAILED) {
		rc = -errno;
		goto fail_bufs;
	}
	b->mem_bytes = (size_t)nbufs * bufsize;
	b->mem = mmap(NULL, b->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		      0);
	if (b->mem == MAP_FAILED) {
		rc = -errno;
		goto fail_br;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)b->br;
	reg.ring_entries = nbufs;
	reg.bgid = bgid;
	rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc < 0)
		goto fail_mem;
	io_uring_buf_ring_init(b->br);
	if (nring > nbufs)
		nring = nbufs;
	for (i = 0; i < nring; i++)
		io_uring_buf_ring_add(b->br, sf_ubufs_addr(b, (int)i), (unsigned)bufsize,
				      (unsigned short)i, io_uring_buf_ring_mask(nbufs), (int)i);
	io_uring_buf_ring_advance(b->br, (int)nring);
	for (i = nbufs; i > nring; i--)
		b->stash[b->nstash++] = (unsigned short)(i - 1);
	b->state = SF_UBG_LIVE;
	return 0;
fail_mem:
	munmap(b->mem, b->mem_bytes);
fail_br:
	munmap(b->br, b->br_bytes);
fail_bufs:
	free(b->bufs);
	free(b->stash);
	b->bufs = NULL;
	b->stash = NULL;
	return rc;
}

int sf_ubufs_init(struct sf_ubufs *b, struct io_uring *ring, unsigned nbufs, size_t bufsize,
		  unsigned short bgid)
{
	return ubufs_setup(b, ring, nbufs, bufsize, bgid, nbufs);
}

void sf_ubufs_destroy(struct sf_ubufs *b)
{
	if (b->bufs == NULL)
		return;
	b->state = SF_UBG_FREE;
	munmap(b->mem, b->mem_bytes);
	munmap(b->br, b->br_bytes);
	free(b->bufs);
	free(b->stash);
	b->bufs = NULL;
	b->stash = NULL;
	b->nstash = 0;
}

/* Free buffers of b in its ring now (0 unless live). */
static unsigned ubufs_vis(const struct sf_ubufs *b)
{
	unsigned used = b->nout + b->nstash;

	if (b->state != SF_UBG_LIVE || used >= b->nbufs)
		return 0;
	return b->nbufs - used;
}

/* Free buffers in the rings of p's live groups. */
static unsigned ubp_vis(const struct sf_ubpool *p)
{
	unsigned s, n = 0;

	for (s = 0; s < p->max; s++)
		n += ubufs_vis(&p->g[s]);
	return n;
}

static unsigned ubp_live_out(const struct sf_ubpool *p);

/*
 * How many free buffers the rings may have now: circ less the buffers
 * out, at least vis_min. What one turn of the engine's loop receives is
 * what the rings hold when it begins, so a pool grown past circ does not
 * hand more to a turn than one of circ buffers would (more memory per
 * turn costs CPU per byte, docs/benchmarks.md); its other buffers wait
 * for buffers held out (queued to slow peers) and keep vis_min in the
 * rings while those hold more than circ less vis_min.
 */
static unsigned ubp_room(const struct sf_ubpool *p)
{
	unsigned out = ubp_live_out(p);
	unsigned room = out < p->circ ? p->circ - out : 0;

	return room > p->vis_min ? room : p->vis_min;
}

void sf_ubufs_drop(struct sf_ubufs *b, int bid)
{
	/* A retired group's ring is unregistered: its buffers just come home. */
	if (b->state != SF_UBG_LIVE)
		return;
	/* bid, neither out nor stashed, counts in ubp_vis though not in a ring yet. */
	if (b->pool != NULL && ubp_vis(b->pool) > ubp_room(b->pool)) {
		b->stash[b->nstash++] = (unsigned short)bid;
		return;
	}
	io_uring_buf_ring_add(b->br, sf_ubufs_addr(b, bid), (unsigned)b->bufsize,
			      (unsigned short)bid, io_uring_buf_ring_mask(b->nbufs), 0);
	io_uring_buf_ring_advance(b->br, 1);
}

void sf_ubufs_put(struct sf_ubufs *b, int bid)
{
	/* Not out any more before the drop weighs the rings' room. */
	b->nout--;
	sf_ubufs_drop(b, bid);
}

/* Add a group in slot s, its ring filled up to ubp_room. Returns 0 or -errno. */
static int ubp_add(struct sf_ubpool *p, unsigned s)
{
	struct sf_ubufs *b = &p->g[s];
	unsigned vis = ubp_vis(p), room = p->live > 0 ? ubp_room(p) : p->nbufs;
	int rc;

	rc = ubufs_setup(b, p->ring, p->nbufs, p->bufsize, (unsigned short)(p->bgid0 + s),
			 vis < room ? room - vis : 0);
	if (rc < 0)
		return rc;
	b->pool = p;
	p->live++;
	p->bytes += b->br_bytes + b->mem_bytes;
	return 0;
}

int sf_ubpool_init(struct sf_ubpool *p, struct io_uring *ring, unsigned nbufs, size_t bufsize,
		   unsigned max, unsigned short bgid0)
{
	memset(p, 0, sizeof(*p));
	if (max == 0 || max > SF_UBP_SLOTS || nbufs > (1u << SF_UBUF_BID_BITS) ||
	    (unsigned)bgid0 + max > 65536)
		return -EINVAL;
	p->ring = ring;
	p->nbufs = nbufs;
	p->bufsize = bufsize;
	p->max = max;
	p->circ = nbufs;
	p->vis_min = nbufs;
	p->bgid0 = bgid0;
	return ubp_add(p, 0);
}

void sf_ubpool_destroy(struct sf_ubpool *p)
{
	unsigned s;

	for (s = 0; s < SF_UBP_SLOTS; s++)
		sf_ubufs_destroy(&p->g[s]);
	p->live = 0;
	p->bytes = 0;
}

/* Free buffers in b's ring not promised yet (0 unless live). */
static unsigned ubp_free(const struct sf_ubufs *b)
{
	unsigned vis = ubufs_vis(b);

	return vis > b->promised ? vis - b->promised : 0;
}

unsigned sf_ubpool_spare(const struct sf_ubpool *p)
{
	unsigned s, n = 0;

	for (s = 0; s < p->max; s++)
		if (p->g[s].state == SF_UBG_LIVE)
			n += p->g[s].nstash;
	return n;
}

/*
 * Move stashed buffers into the rings until ubp_room are there, lowest
 * groups first (so the highest drain and can be retired).
 */
static void ubp_fill(struct sf_ubpool *p)
{
	unsigned s, vis = ubp_vis(p), room = ubp_room(p);

	for (s = 0; s < p->max && vis < room; s++) {
		struct sf_ubufs *b = &p->g[s];
		int n = 0;

		/* A live group has its stash; scan-build cannot see that through destroy. */
		if (b->state != SF_UBG_LIVE || b->stash == NULL)
			continue;
		while (b->nstash > 0 && vis < room) {
			unsigned short bid = b->stash[--b->nstash];

			io_uring_buf_ring_add(b->br, sf_ubufs_addr(b, bid), (unsigned)b->bufsize,
					      bid, io_uring_buf_ring_mask(b->nbufs), n++);
			vis++;
		}
		io_uring_buf_ring_advance(b->br, n);
	}
}

/* The live slot with the most unpromised free buffers (slot 0 is always live). */
static unsigned ubp_best(const struct sf_ubpool *p)
{
	unsigned s, best = 0;

	for (s = 1; s < p->max; s++)
		if (ubp_free(&p->g[s]) > ubp_free(&p->g[best]))
			best = s;
	return best;
}

unsigned short sf_ubpool_pick(struct sf_ubpool *p, unsigned *avail)
{
	unsigned s = ubp_best(p);

	*avail = ubp_free(&p->g[s]);
	p->g[s].promised++;
	return p->g[s].bgid;
}

unsigned sf_ubpool_avail(const struct sf_ubpool *p) { return ubp_free(&p->g[ubp_best(p)]); }

/* The slot of bgid, or -1 when it is none of p's. */
static int ubp_slot(const struct sf_ubpool *p, unsigned short bgid)
{
	if (bgid < p->bgid0 || bgid - p->bgid0 >= SF_UBP_SLOTS)
		return -1;
	return bgid - p->bgid0;
}

int sf_ubpool_live(const struct sf_ubpool *p, unsigned short bgid)
{
	int s = ubp_slot(p, bgid);

	return s >= 0 && p->g[s].state == SF_UBG_LIVE;
}

int sf_ubpool_ref(const struct sf_ubpool *p, unsigned short bgid, int bid)
{
	int s = ubp_slot(p, bgid);

	if (s < 0 || p->g[s].state == SF_UBG_FREE || bid < 0 || (unsigned)bid >= p->g[s].nbufs)
		return -EINVAL;
	return (s << SF_UBUF_BID_BITS) | bid;
}

void sf_ubpool_drop(struct sf_ubpool *p, int ref)
{
	sf_ubufs_drop(sf_ubpool_group(p, ref), sf_ubpool_bid(ref));
}

unsigned sf_ubpool_nout(const struct sf_ubpool *p)
{
	unsigned s, n = 0;

	for (s = 0; s < p->max; s++)
		n += p->g[s].nout;
	return n;
}

unsigned sf_ubpool_plan(unsigned live, unsigned max, unsigned nbufs, unsigned out,
			unsigned nstarved)
{
	unsigned cap = live * nbufs;

	if (live < max && (nstarved > 0 || out + nbufs / 8 > cap))
		return live + 1;
	if (live > 1 && nstarved == 0 && out <= (live - 1) * nbufs / 2)
		return live - 1;
	return live;
}

/* Buffers out of live groups only: what the live capacity carries. */
static unsigned ubp_live_out(const struct sf_ubpool *p)
{
	unsigned s, n = 0;

	for (s = 0; s < p->max; s++)
		if (p->g[s].state == SF_UBG_LIVE)
			n += p->g[s].nout;
	return n;
}

/*
 * Retire the highest live group (never slot 0): unregistered now, so no
 * receive can take a buffer from it any more; freed by ubp_reap.
 */
static void ubp_retire(struct sf_ubpool *p)
{
	unsigned s;
	int rc;

	for (s = p->max - 1; s > 0; s--)
		if (p->g[s].state == SF_UBG_LIVE)
			break;
	if (s == 0)
		return;
	rc = io_uring_unregister_buf_ring(p->ring, p->g[s].bgid);
	if (rc < 0) {
		sf_log_warnx("io_uring: cannot unregister buffer group %u: %s", p->g[s].bgid,
			     strerror(-rc));
		return;
	}
	p->g[s].state = SF_UBG_RETIRED;
	p->g[s].nstash = 0; /* home: no ring to go back to */
	p->g[s].retired_tick = p->tick;
	p->live--;
	p->retired++;
}

/*
 * Unmap retired groups whose buffers are all back. Not in the tick that
 * retired them, and only with the completion queue empty: a completion
 * the kernel posted before the group was unregistered may name one of
 * its buffers, and it has been handled only once the queue was read
 * through after the unregistration.
 */
static void ubp_reap(struct sf_ubpool *p, int quiet)
{
	unsigned s;

	if (!quiet)
		return;
	for (s = 1; s < p->max; s++) {
		struct sf_ubufs *b = &p->g[s];

		if (b->state != SF_UBG_RETIRED || b->nout != 0 || b->retired_tick >= p->tick)
			continue;
		p->bytes -= b->br_bytes + b->mem_bytes;
		sf_ubufs_destroy(b);
	}
}

/* The lowest slot without a group, or -1. */
static int ubp_free_slot(const struct sf_ubpool *p)
{
	unsigned s;

	for (s = 0; s < p->max; s++)
		if (p->g[s].state == SF_UBG_FREE)
			return (int)s;
	return -1;
}

/* sf_ubpool_tick but for filling the rings. */
static int ubp_tick(struct sf_ubpool *p, unsigned nstarved, uint64_t now_ms, int quiet)
{
	unsigned s, want;
	int slot, rc;

	p->tick++;
	for (s = 0; s < p->max; s++)
		p->g[s].promised = 0;
	ubp_reap(p, quiet);
	want = sf_ubpool_plan(p->live, p->max, p->nbufs, ubp_live_out(p), nstarved);
	if (want > p->live) {
		/* Slots of retired groups not yet freed are busy: then wait. */
		slot = ubp_free_slot(p);
		if (slot < 0)
			return 0;
		rc = ubp_add(p, (unsigned)slot);
		if (rc < 0)
			return rc;
		p->grown++;
		p->last_change_ms = now_ms;
		p->calm = 0;
		return 1;
	}
	if (want >= p->live) {
		p->calm = 0;
		return 0;
	}
	if (!p->calm) {
		p->calm = 1;
		p->calm_since_ms = now_ms;
	}
	if (now_ms - p->calm_since_ms >= SF_UBP_SHRINK_MS &&
	    now_ms - p->last_change_ms >= SF_UBP_SHRINK_MS) {
		ubp_retire(p);
		p->last_change_ms = now_ms;
		p->calm_since_ms = now_ms;
	}
	return 0;
}

int sf_ubpool_tick(struct sf_ubpool *p, unsigned nstarved, uint64_t now_ms, int quiet)
{
	int rc = ubp_tick(p, nstarved, now_ms, quiet);

	ubp_fill(p);
	return rc;
}

int sf_ubpool_pending(const struct sf_ubpool *p)
{
	unsigned s;

	for (s = 1; s < p->max; s++)
		if (p->g[s].state != SF_UBG_FREE)
			return 1;
	return 0;
}

void sf_ubufq_init(struct sf_ubufq *q)
{
	q->head = q->tail = -1;
	q->n = 0;
	q->off = 0;
}

static struct sf_ubuf *ubuf(struct sf_ubpool *p, int ref)
{
	return &sf_ubpool_group(p, ref)->bufs[sf_ubpool_bid(ref)];
}

void sf_ubufq_push(struct sf_ubpool *p, struct sf_ubufq *q, int ref, uint32_t len)
{
	struct sf_ubuf *u = ubuf(p, ref);

	sf_ubpool_group(p, ref)->nout++;
	u->len = len;
	u->next = -1;
	if (q->head >= 0)
		ubuf(p, q->tail)->next = ref;
	else
		q->head = ref;
	q->tail = ref;
	q->n++;
}

int sf_ubufq_peek(struct sf_ubpool *p, const struct sf_ubufq *q, char **ptr, uint32_t *len)
{
	if (q->head < 0)
		return -1;
	*ptr = sf_ubufs_addr(sf_ubpool_group(p, q->head), sf_ubpool_bid(q->head)) + q->off;
	*len = ubuf(p, q->head)->len - q->off;
	return q->head;
}

/* Give ref back to its group. */
static void ubufq_put(struct sf_ubpool *p, int ref)
{
	sf_ubufs_put(sf_ubpool_group(p, ref), sf_ubpool_bid(ref));
}

/* Unlink the head of q and give it back. */
static void ubufq_pop(struct sf_ubpool *p, struct sf_ubufq *q)
{
	int ref = q->head;

	q->head = ubuf(p, ref)->next;
	if (q->head < 0)
		q->tail = -1;
	q->n--;
	q->off = 0;
	ubufq_put(p, ref);
}

int sf_ubufq_sent(struct sf_ubpool *p, struct sf_ubufq *q, uint32_t n)
{
	q->off += n;
	if (q->off < ubuf(p, q->head)->len)
		return 0;
	ubufq_pop(p, q);
	return 1;
}

void sf_ubufq_release(struct sf_ubpool *p, struct sf_ubufq *q, int keep_head)
{
	while (q->head >= 0 && !(keep_head && q->n == 1)) {
		if (keep_head) {
			/* Give back the second: the head stays for its send. */
			struct sf_ubuf *h = ubuf(p, q->head);
			int ref = h->next;

			h->next = ubuf(p, ref)->next;
			if (q->tail == ref)
				q->tail = q->head;
			q->n--;
			ubufq_put(p, ref);
		} else {
			ubufq_pop(p, q);
		}
	}
}
