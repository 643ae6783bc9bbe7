/* `sfload stream`: N parallel bulk TCP streams, one thread each. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfload.h"

/* One bulk stream: its socket and what it moved, filled in by its thread. */
struct stream {
	const struct opts *o;
	pthread_barrier_t *go;
	int fd;
	uint64_t bytes, t_end;
	int failed;
	uint64_t deadline;
};

static uint64_t stream_start; /* set by the first thread through the barrier */

/*
 * Send for o->seconds, then half-close and wait for the sink's close, so
 * t_end is when the last byte was read at the far end.
 */
static void stream_c2s(struct stream *s, char *buf)
{
	while (now_ns() < s->deadline) {
		ssize_t n = send(s->fd, buf, s->o->size, MSG_NOSIGNAL);

		if (n > 0)
			s->bytes += (uint64_t)n;
		else if (n < 0 && errno == EAGAIN)
			wait_fd(s->fd, POLLOUT, s->deadline);
		else if (n < 0 && errno != EINTR)
			die("stream send");
	}
	if (shutdown(s->fd, SHUT_WR) < 0)
		die("shutdown");
	for (uint64_t limit = now_ns() + SL_DRAIN_TIMEOUT_NS;;) {
		ssize_t n = recv(s->fd, buf, s->o->size, 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n < 0 && errno == EAGAIN) {
			if (!wait_fd(s->fd, POLLIN, limit)) {
				s->failed = 1; /* the close never came through */
				break;
			}
		} else if (n < 0 && errno != EINTR) {
			die("stream recv");
		}
	}
	s->t_end = now_ns();
}

/* Receive for o->seconds; t_end is when we stop counting. */
static void stream_s2c(struct stream *s, char *buf)
{
	while (now_ns() < s->deadline) {
		ssize_t n = recv(s->fd, buf, s->o->size, 0);

		if (n > 0) {
			s->bytes += (uint64_t)n;
		} else if (n == 0) {
			s->failed = 1; /* the source never stops on its own */
			break;
		} else if (errno == EAGAIN) {
			wait_fd(s->fd, POLLIN, s->deadline);
		} else if (errno != EINTR) {
			die("stream recv");
		}
	}
	s->t_end = now_ns();
}

/* Thread body: wait for every stream to be connected, then run one. */
static void *stream_thread(void *arg)
{
	struct stream *s = arg;
	char *buf = malloc(s->o->size);
	int rc;

	if (buf == NULL)
		die("malloc");
	memset(buf, 'x', s->o->size);
	rc = pthread_barrier_wait(s->go);
	if (rc == PTHREAD_BARRIER_SERIAL_THREAD)
		__atomic_store_n(&stream_start, now_ns(), __ATOMIC_RELEASE);
	while (__atomic_load_n(&stream_start, __ATOMIC_ACQUIRE) == 0)
		sched_yield();
	s->deadline = stream_start + (uint64_t)(s->o->seconds * 1e9);
	if (s->o->dir == DIR_S2C)
		stream_s2c(s, buf);
	else
		stream_c2s(s, buf);
	free(buf);
	return NULL;
}

/* `sfload stream`: N parallel bulk streams in one direction. */
int cmd_stream(struct opts *o)
{
	struct stream *ss = calloc(o->n, sizeof(*ss));
	pthread_t *th = calloc(o->n, sizeof(*th));
	pthread_barrier_t go;
	uint64_t bytes = 0, t_end = 0;
	double cpu0, cpu1, secs;
	unsigned failed = 0;

	if (ss == NULL || th == NULL)
		die("calloc");
	if (o->size == 0)
		o->size = SL_CHUNK;
	if (pthread_barrier_init(&go, NULL, o->n) != 0)
		diex("pthread_barrier_init");
	for (unsigned i = 0; i < o->n; i++) {
		char mode = o->dir == DIR_S2C ? 'S' : 'K';

		ss[i].o = o;
		ss[i].go = &go;
		ss[i].fd = connect_wait(o);
		write_all(ss[i].fd, &mode, 1);
	}
	cpu0 = cpu_s();
	for (unsigned i = 0; i < o->n; i++)
		if ((errno = pthread_create(&th[i], NULL, stream_thread, &ss[i])) != 0)
			die("pthread_create");
	for (unsigned i = 0; i < o->n; i++) {
		if ((errno = pthread_join(th[i], NULL)) != 0)
			die("pthread_join");
		bytes += ss[i].bytes;
		failed += (unsigned)ss[i].failed;
		if (ss[i].t_end > t_end)
			t_end = ss[i].t_end;
	}
	cpu1 = cpu_s();
	secs = (double)(t_end - stream_start) / 1e9;
	for (unsigned i = 0; i < o->n; i++)
		if (close(ss[i].fd) < 0)
			die("close");
	printf("{\"workload\": \"stream\", \"dir\": \"%s\", \"streams\": %u, \"seconds\": %.4f, "
	       "\"bytes\": %llu, \"gbps\": %.3f, \"failed\": %u, \"gen_cpu_s\": %.3f, "
	       "\"gen_cpu_util\": %.3f}\n",
	       o->dir == DIR_S2C ? "s2c" : "c2s", o->n, secs, (unsigned long long)bytes,
	       (double)bytes * 8 / secs / 1e9, failed, cpu1 - cpu0, (cpu1 - cpu0) / secs);
	free(ss);
	free(th);
	pthread_barrier_destroy(&go);
	return failed ? 1 : 0;
}
