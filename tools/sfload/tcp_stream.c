/*
 * `sfload stream`: N concurrent bulk TCP streams, spread over T threads,
 * each thread one epoll loop over its share of the streams.
 *
 * Thousands of streams must not take thousands of threads (nor a 256 KiB
 * buffer each), and the generator must not be what makes the streams
 * unfair: every ready stream gets at most SL_STREAM_TURN bytes per turn
 * of its thread's loop (level-triggered), so a stream the forwarder
 * serves is never starved by a neighbour the generator favours. Each
 * stream's bytes are counted for the fairness figures (Jain's index,
 * min/mean).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"

#define SL_STREAM_TURN SL_CHUNK /* bytes a stream may move per turn */

/* One bulk stream: its socket and what it moved. */
struct stream {
	int fd;
	int done; /* c2s: the sink's close came; s2c: the source closed */
	uint64_t bytes;
};

/* One thread's share of the streams: streams[first, first + count). */
struct sthread {
	const struct opts *o;
	pthread_barrier_t *go;
	struct stream *ss;
	unsigned first, count;
	uint64_t t_end;
	unsigned failed;
};

static uint64_t stream_start; /* set by the first thread through the barrier */

/*
 * Move up to SL_STREAM_TURN bytes on s in the run's direction. Returns 0
 * while the stream goes on, 1 when it ended (EOF), -1 on a failure.
 */
static int stream_turn(const struct opts *o, struct stream *s, char *buf)
{
	for (size_t moved = 0; moved < SL_STREAM_TURN;) {
		ssize_t n = o->dir == DIR_S2C ? recv(s->fd, buf, o->size, 0)
					      : send(s->fd, buf, o->size, MSG_NOSIGNAL);

		if (n > 0) {
			s->bytes += (uint64_t)n;
			moved += (size_t)n;
		} else if (n == 0) {
			return 1; /* s2c: the source never stops on its own */
		} else if (errno == EAGAIN) {
			return 0;
		} else if (errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* Register every stream of t with ep for events, data.ptr the stream. */
static void stream_watch(int ep, struct sthread *t, uint32_t events, int op)
{
	for (unsigned i = 0; i < t->count; i++) {
		struct stream *s = &t->ss[t->first + i];
		struct epoll_event ev = { .events = events, .data.ptr = s };

		if (!s->done && epoll_ctl(ep, op, s->fd, &ev) < 0)
			die("epoll_ctl");
	}
}

/* Move data on t's streams until the deadline; returns the streams still open. */
static unsigned stream_run(int ep, struct sthread *t, char *buf, uint64_t deadline)
{
	struct epoll_event evs[SL_MAX_EVENTS];
	unsigned open = t->count;
	uint64_t now;

	while (open > 0 && (now = now_ns()) < deadline) {
		int n = epoll_wait(ep, evs, SL_MAX_EVENTS, (int)((deadline - now) / 1000000 + 1));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct stream *s = evs[i].data.ptr;
			int rc = stream_turn(t->o, s, buf);

			if (rc == 0)
				continue;
			if (rc < 0)
				die(t->o->dir == DIR_S2C ? "stream recv" : "stream send");
			s->done = 1;
			t->failed++;
			open--;
			if (epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL) < 0)
				die("epoll_ctl");
		}
	}
	return open;
}

/*
 * c2s end: half-close every stream and wait for each sink's close, so
 * t_end is when the last byte was read at the far end. A close that never
 * comes within SL_DRAIN_TIMEOUT_NS fails the stream.
 */
static void stream_drain(int ep, struct sthread *t, char *buf, unsigned open)
{
	struct epoll_event evs[SL_MAX_EVENTS];
	uint64_t limit = now_ns() + SL_DRAIN_TIMEOUT_NS, now;

	for (unsigned i = 0; i < t->count; i++)
		if (!t->ss[t->first + i].done && shutdown(t->ss[t->first + i].fd, SHUT_WR) < 0)
			die("shutdown");
	stream_watch(ep, t, EPOLLIN, EPOLL_CTL_MOD);
	while (open > 0 && (now = now_ns()) < limit) {
		int n = epoll_wait(ep, evs, SL_MAX_EVENTS, (int)((limit - now) / 1000000 + 1));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct stream *s = evs[i].data.ptr;
			ssize_t r = recv(s->fd, buf, t->o->size, 0);

			if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
				continue;
			if (r < 0 && errno != ECONNRESET)
				die("stream recv");
			s->done = 1;
			open--;
			if (epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL) < 0)
				die("epoll_ctl");
		}
	}
	t->failed += open; /* the close never came through */
}

/* Thread body: wait for every stream to be connected, then run t's share. */
static void *stream_thread(void *arg)
{
	struct sthread *t = arg;
	char *buf = malloc(t->o->size);
	uint64_t deadline;
	unsigned open;
	int ep, rc;

	if (buf == NULL)
		die("malloc");
	memset(buf, 'x', t->o->size);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	stream_watch(ep, t, t->o->dir == DIR_S2C ? EPOLLIN : EPOLLOUT, EPOLL_CTL_ADD);
	rc = pthread_barrier_wait(t->go);
	if (rc == PTHREAD_BARRIER_SERIAL_THREAD)
		__atomic_store_n(&stream_start, now_ns(), __ATOMIC_RELEASE);
	while (__atomic_load_n(&stream_start, __ATOMIC_ACQUIRE) == 0)
		sched_yield();
	deadline = stream_start + (uint64_t)(t->o->seconds * 1e9);
	open = stream_run(ep, t, buf, deadline);
	if (t->o->dir != DIR_S2C)
		stream_drain(ep, t, buf, open);
	t->t_end = now_ns();
	close(ep);
	free(buf);
	return NULL;
}

/* Print the per-stream fairness members: min, mean, max, min/mean, Jain's index. */
static void stream_fairness(const struct stream *ss, unsigned n, int list)
{
	double sum = 0, sq = 0, mean;
	uint64_t lo = UINT64_MAX, hi = 0;

	for (unsigned i = 0; i < n; i++) {
		double b = (double)ss[i].bytes;

		sum += b;
		sq += b * b;
		lo = ss[i].bytes < lo ? ss[i].bytes : lo;
		hi = ss[i].bytes > hi ? ss[i].bytes : hi;
	}
	mean = sum / n;
	/* Jain: (sum x)^2 / (n sum x^2), 1 when all equal, 1/n when one takes all. */
	printf("\"fair\": {\"min\": %llu, \"mean\": %.0f, \"max\": %llu, \"min_mean\": %.4f, "
	       "\"jain\": %.4f}",
	       (unsigned long long)lo, mean, (unsigned long long)hi,
	       mean > 0 ? (double)lo / mean : 0, sq > 0 ? sum * sum / (n * sq) : 0);
	if (!list)
		return;
	printf(", \"stream_bytes\": [");
	for (unsigned i = 0; i < n; i++)
		printf("%s%llu", i ? ", " : "", (unsigned long long)ss[i].bytes);
	printf("]");
}

/* Connect the n streams, each announcing its mode by its first byte. */
static void stream_connect(const struct opts *o, struct stream *ss)
{
	char mode = o->dir == DIR_S2C ? 'S' : 'K';

	for (unsigned i = 0; i < o->n; i++) {
		ss[i].fd = connect_wait(o);
		write_all(ss[i].fd, &mode, 1);
	}
}

/*
 * `sfload stream`: n concurrent bulk streams in one direction over
 * o->threads threads. With -W it prints {"event": "running"} once every
 * stream is connected and starts on a line on stdin: a harness that runs
 * another client next to the streams starts that one then.
 */
int cmd_stream(struct opts *o)
{
	unsigned nt = o->threads < o->n ? o->threads : o->n, failed = 0;
	struct stream *ss = calloc(o->n, sizeof(*ss));
	struct sthread *ts = calloc(nt, sizeof(*ts));
	pthread_t *th = calloc(nt, sizeof(*th));
	pthread_barrier_t go;
	uint64_t bytes = 0, t_end = 0;
	double cpu0, cpu1, secs;

	if (ss == NULL || ts == NULL || th == NULL)
		die("calloc");
	if (o->size == 0)
		o->size = SL_CHUNK;
	if (pthread_barrier_init(&go, NULL, nt) != 0)
		diex("pthread_barrier_init");
	stream_connect(o, ss);
	if (o->wait_stdin) {
		printf("{\"event\": \"running\", \"streams\": %u}\n", o->n);
		if (fflush(stdout) == EOF)
			die("stdout");
		wait_stdin_line();
	}
	cpu0 = cpu_s();
	for (unsigned i = 0, first = 0; i < nt; i++) {
		ts[i] = (struct sthread){ .o = o, .go = &go, .ss = ss, .first = first };
		ts[i].count = o->n / nt + (i < o->n % nt);
		first += ts[i].count;
		if ((errno = pthread_create(&th[i], NULL, stream_thread, &ts[i])) != 0)
			die("pthread_create");
	}
	for (unsigned i = 0; i < nt; i++) {
		if ((errno = pthread_join(th[i], NULL)) != 0)
			die("pthread_join");
		failed += ts[i].failed;
		if (ts[i].t_end > t_end)
			t_end = ts[i].t_end;
	}
	cpu1 = cpu_s();
	secs = (double)(t_end - stream_start) / 1e9;
	for (unsigned i = 0; i < o->n; i++) {
		bytes += ss[i].bytes;
		if (close(ss[i].fd) < 0)
			die("close");
	}
	printf("{\"workload\": \"stream\", \"dir\": \"%s\", \"streams\": %u, \"threads\": %u, "
	       "\"seconds\": %.4f, \"bytes\": %llu, \"gbps\": %.3f, \"failed\": %u, "
	       "\"gen_cpu_s\": %.3f, \"gen_cpu_util\": %.3f, ",
	       o->dir == DIR_S2C ? "s2c" : "c2s", o->n, nt, secs, (unsigned long long)bytes,
	       (double)bytes * 8 / secs / 1e9, failed, cpu1 - cpu0, (cpu1 - cpu0) / secs);
	stream_fairness(ss, o->n, o->per_stream);
	printf("}\n");
	free(ss);
	free(ts);
	free(th);
	pthread_barrier_destroy(&go);
	return failed ? 1 : 0;
}
