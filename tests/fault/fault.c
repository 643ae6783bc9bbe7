/*
 * libsffault.so: make chosen system calls of a process fail, so that the
 * error paths of sockfwd run in tests, not only in production. Preloaded
 * into the forwarder by the e2e suite (tests/e2e/test_fault.c):
 *
 *	LD_PRELOAD=build/libsffault.so SF_FAULT='splice:20:EIO' sockfwd ...
 *
 * SF_FAULT is a comma-separated list of CALL:WHICH:ERRNO, where CALL is one
 * of the wrapped functions below, WHICH is N (the Nth call only, counted
 * from 1 across the process), N-M (calls N to M) or N+ (the Nth and every
 * later one), and ERRNO a name from the table below. A failing call does
 * nothing and returns -1 with that errno, as the kernel would.
 *
 * Calls libc makes internally (getaddrinfo's sockets, for instance) do not
 * go through the PLT and are neither counted nor failed. io_uring
 * operations do not go through libc at all: the uring engine asks the
 * hooks of sockfwd/fault.h, defined here, so these are also CALLs:
 *
 *	sqe		getting a submission queue entry (ERRNO is not used:
 *			the engine sees a queue that stays full)
 *	cqe_connect	the upstream connect's completion
 *	cqe_recv	a receive completion
 *	cqe_send	a send completion
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "sockfwd/fault.h"

enum {
	F_ACCEPT4,
	F_CONNECT,
	F_SOCKET,
	F_SPLICE,
	F_PIPE2,
	F_RECV,
	F_SEND,
	F_SQE,
	F_CQE, /* F_CQE + enum sf_fault_cqe */
	F_COUNT = F_CQE + 3
};

static const char *const names[F_COUNT] = { "accept4",	   "connect",  "socket",  "splice",
					    "pipe2",	   "recv",     "send",	  "sqe",
					    "cqe_connect", "cqe_recv", "cqe_send" };

static const struct {
	const char *name;
	int err;
} errs[] = {
	{ "EIO", EIO },
	{ "EINVAL", EINVAL },
	{ "EMFILE", EMFILE },
	{ "ENFILE", ENFILE },
	{ "ENOMEM", ENOMEM },
	{ "ENOBUFS", ENOBUFS },
	{ "EPIPE", EPIPE },
	{ "ECONNRESET", ECONNRESET },
	{ "ECONNREFUSED", ECONNREFUSED },
	{ "ENETUNREACH", ENETUNREACH },
	{ "EPERM", EPERM },
	{ "EBUSY", EBUSY },
	{ "ETIMEDOUT", ETIMEDOUT },
};

#define MAX_RULES 8

struct rule {
	int call;
	uint64_t first, last; /* 1-based, inclusive */
	int err;
};

static struct rule rules[MAX_RULES];
static int nrules;
static uint64_t calls[F_COUNT];

static void die(const char *what, const char *spec)
{
	fprintf(stderr, "libsffault: SF_FAULT: %s in '%s'\n", what, spec);
	_exit(99);
}

/* Parse one CALL:WHICH:ERRNO into r; bad input ends the process (exit 99). */
static void parse_rule(char *s, struct rule *r)
{
	char *call = strtok(s, ":"), *which = strtok(NULL, ":"), *err = strtok(NULL, ":"), *end;
	size_t i;

	if (call == NULL || which == NULL || err == NULL)
		die("expected CALL:WHICH:ERRNO", s);
	for (r->call = 0; r->call < F_COUNT && strcmp(names[r->call], call) != 0; r->call++)
		;
	if (r->call == F_COUNT)
		die("unknown call", call);
	r->first = strtoull(which, &end, 10);
	if (r->first == 0)
		die("WHICH counts from 1", which);
	if (*end == '+' && end[1] == '\0')
		r->last = UINT64_MAX;
	else if (*end == '-')
		r->last = strtoull(end + 1, &end, 10);
	else
		r->last = r->first;
	if (*end != '\0' && *end != '+')
		die("bad WHICH", which);
	for (i = 0; i < sizeof(errs) / sizeof(errs[0]) && strcmp(errs[i].name, err) != 0; i++)
		;
	if (i == sizeof(errs) / sizeof(errs[0]))
		die("unknown errno name", err);
	r->err = errs[i].err;
}

__attribute__((constructor)) static void fault_init(void)
{
	const char *env = getenv("SF_FAULT");
	char buf[512], *save = NULL, *tok;

	if (env == NULL || strlen(env) >= sizeof(buf))
		return;
	strcpy(buf, env);
	for (tok = strtok_r(buf, ",", &save); tok != NULL && nrules < MAX_RULES;
	     tok = strtok_r(NULL, ",", &save)) {
		char one[128];

		snprintf(one, sizeof(one), "%s", tok);
		parse_rule(one, &rules[nrules++]);
	}
}

/*
 * Count a call of c; returns the errno it must fail with, or 0 to let it
 * through. Counted with an atomic add: several workers call at once.
 */
static int fault(int c)
{
	uint64_t n = __atomic_add_fetch(&calls[c], 1, __ATOMIC_RELAXED);

	for (int i = 0; i < nrules; i++)
		if (rules[i].call == c && n >= rules[i].first && n <= rules[i].last)
			return rules[i].err;
	return 0;
}

#define NEXT(type, name) ((type)dlsym(RTLD_NEXT, name))

#define FAIL_OR_CALL(c, type, name, ...)                                                           \
	do {                                                                                       \
		static type real_;                                                                 \
		int e_ = fault(c);                                                                 \
		if (e_ != 0) {                                                                     \
			errno = e_;                                                                \
			return -1;                                                                 \
		}                                                                                  \
		if (real_ == NULL)                                                                 \
			real_ = NEXT(type, name);                                                  \
		return real_(__VA_ARGS__);                                                         \
	} while (0)

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*socket_fn)(int, int, int);
typedef ssize_t (*splice_fn)(int, loff_t *, int, loff_t *, size_t, unsigned int);
typedef int (*pipe2_fn)(int[2], int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	FAIL_OR_CALL(F_ACCEPT4, accept4_fn, "accept4", fd, sa, len, flags);
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	FAIL_OR_CALL(F_CONNECT, connect_fn, "connect", fd, sa, len);
}

int socket(int domain, int type, int protocol)
{
	FAIL_OR_CALL(F_SOCKET, socket_fn, "socket", domain, type, protocol);
}

ssize_t splice(int in, loff_t *inoff, int out, loff_t *outoff, size_t len, unsigned int flags)
{
	FAIL_OR_CALL(F_SPLICE, splice_fn, "splice", in, inoff, out, outoff, len, flags);
}

int pipe2(int fds[2], int flags) { FAIL_OR_CALL(F_PIPE2, pipe2_fn, "pipe2", fds, flags); }

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	FAIL_OR_CALL(F_RECV, recv_fn, "recv", fd, buf, len, flags);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	FAIL_OR_CALL(F_SEND, send_fn, "send", fd, buf, len, flags);
}

int sf_fault_sqe(void) { return fault(F_SQE) != 0; }

int sf_fault_cqe(int kind, int res)
{
	int e = kind >= 0 && kind < F_COUNT - F_CQE ? fault(F_CQE + kind) : 0;

	return e != 0 ? -e : res;
}
