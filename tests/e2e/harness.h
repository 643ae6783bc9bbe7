/*
 * End-to-end harness: runs the real sockfwd binary as a child process,
 * talks to it over loopback sockets and checks what arrives. Every wait is
 * bounded; every helper fails the test with a message showing errno.
 */
#ifndef SOCKFWD_E2E_HARNESS_H
#define SOCKFWD_E2E_HARNESS_H

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <criterion/criterion.h>

/* Failure bounds (never timing assertions). */
#define E2E_HANG_MS  20000 /* one blocking socket call */
#define E2E_READY_MS 10000 /* sockfwd listening */
#define E2E_EXIT_MS  10000 /* sockfwd gone after a signal */
#define E2E_RESET_MS 10000 /* a reset reaching the client */

/* cr_assert for a system call: errno is captured before the message is built. */
#define sys_assert(cond, fmt, ...)                                                                 \
	do {                                                                                       \
		int sys_ok_ = !!(cond);                                                            \
		int sys_errno_ = errno;                                                            \
		cr_assert(sys_ok_, fmt ": %s", ##__VA_ARGS__, strerror(sys_errno_));               \
	} while (0)

#define KiB (1024ull)
#define MiB (1024ull * 1024)

/*
 * One Test per engine for a scenario, named suite::scenario_engine:
 *
 *	ENGINE_TEST(transfer, echo_32m, 120)
 *	{
 *		... uses the parameter `engine` ...
 *	}
 */
#ifdef SF_HAVE_URING
#define E2E_URING_TEST(suite, name, to)                                                            \
	Test(suite, name##_uring, .timeout = (to)) { name("uring"); }
#else
#define E2E_URING_TEST(suite, name, to)
#endif

#define ENGINE_TEST(suite, name, to)                                                               \
	static void name(const char *engine);                                                      \
	Test(suite, name##_naive, .timeout = (to)) { name("naive"); }                              \
	Test(suite, name##_epoll, .timeout = (to)) { name("epoll"); }                              \
	Test(suite, name##_splice, .timeout = (to)) { name("splice"); }                            \
	E2E_URING_TEST(suite, name, to)                                                            \
	static void name(const char *engine)

/* ---- data: a deterministic byte stream and a 64-bit hash ---- */

/* xorshift64 byte stream; the same seed gives the same bytes however it is chunked. */
struct gen {
	uint64_t s;
	uint64_t word;
	unsigned avail;
};

void gen_init(struct gen *g, uint64_t seed);
void gen_fill(struct gen *g, void *buf, size_t n);

#define HASH_INIT 0xcbf29ce484222325ull

/* FNV-1a 64, streaming: h = hash_update(h, ...) starting from HASH_INIT. */
uint64_t hash_update(uint64_t h, const void *buf, size_t n);
/* Hash of the first len bytes of the stream for seed. */
uint64_t gen_hash(uint64_t seed, uint64_t len);

/* ---- the sockfwd process ---- */

struct srv;

struct fwd {
	pid_t pid;
	int out_fd; /* memfd holding the child's stdout */
	int err_fd; /* memfd holding the child's stderr */
	int exited; /* waited for; status is valid */
	int status;
	int family; /* of the listener */
	int port;   /* listener port */
};

#define FWD_EXTRA 24

struct fwd_opts {
	const char *engine; /* -b, NULL: default */
	const char *remote; /* -r, NULL: only those in extra */
	int family;	    /* listener on 127.0.0.1 (AF_INET, default) or [::1] (AF_INET6) */
	int threads;	    /* -j, 0: default */
	const char *extra[FWD_EXTRA]; /* more arguments, NULL terminated */
	rlim_t nofile;		      /* RLIMIT_NOFILE soft = hard in the child, 0: inherited */
	/*
	 * Readiness from /proc (a listening socket of the child on the port)
	 * instead of a probe connection, so that no connection reaches the
	 * forwarder before the test's own: balancing order, upstream counts
	 * and logs then see only the test's clients.
	 */
	int no_probe;
};

/* Path of the binary: $SOCKFWD_BIN or build/sockfwd. */
const char *fwd_bin(void);

/*
 * Fork and exec sockfwd with argv (argv[0] is replaced by fwd_bin()),
 * stdout and stderr into memfds, stdin /dev/null, SIGPIPE default, and
 * SIGKILL when the test process dies. Does not wait.
 */
void fwd_spawn(struct fwd *f, const char *const *argv, rlim_t nofile);

/*
 * Zero f and give it its stdout and stderr memfds (O_APPEND); returns a
 * /dev/null descriptor for the child's stdin, for the caller to close
 * after fork. What every spawner of a forwarder starts with.
 */
int fwd_outputs(struct fwd *f);

/*
 * Start sockfwd on a free loopback port and wait until a TCP connect to it
 * succeeds. Retries with another port when it exits because the address
 * is in use; fails the test with its stderr on any other exit.
 */
void fwd_start(struct fwd *f, const struct fwd_opts *o);

/* fwd_start with -r at server s, listener of the same family, -b engine. */
void fwd_start_srv(struct fwd *f, const char *engine, const struct srv *s);

/* Wait up to ms for the child to exit. Returns 1 once it has (status in f). */
int fwd_wait(struct fwd *f, int ms);
/* Send sig and wait (bounded); SIGKILL and fail when it does not exit. */
void fwd_signal_wait(struct fwd *f, int sig);
/* SIGTERM, and assert a clean exit 0 (catches a forwarder that crashed earlier). */
void fwd_stop(struct fwd *f);
/* Assert the child is still running (not killed by SIGPIPE, not crashed). */
void fwd_assert_alive(struct fwd *f);
/* Free the memfds. */
void fwd_release(struct fwd *f);

/* Captured stderr / stdout into buf (NUL terminated); returns its length. */
size_t fwd_stderr(const struct fwd *f, char *buf, size_t cap);
size_t fwd_stdout(const struct fwd *f, char *buf, size_t cap);
/* The last bytes of stderr, in a static buffer, for failure messages. */
const char *fwd_stderr_tail(const struct fwd *f);
/* "" while the current test's sockfwd runs, else its exit status and stderr. */
const char *fwd_note(void);
/* "exit N" / "signal N" / "running", in a static buffer. */
const char *fwd_status_str(const struct fwd *f);

/* ---- /proc of the child ---- */

/* A "Name:  value" field of /proc/PID/status as a number (kB for Vm*). */
long proc_status_field(pid_t pid, const char *name);
/* Entries of /proc/PID/fd. */
int proc_fd_count(pid_t pid);
/* Descriptors of pid whose link begins with kind ("socket:", "pipe:"). */
int proc_fds_of(pid_t pid, const char *kind);
/* utime + stime of the whole process, in seconds. */
double proc_cpu_seconds(pid_t pid);

/* ---- sockets of the test process ---- */

/* Raise this process's RLIMIT_NOFILE soft limit to its hard limit. */
void raise_nofile(void);
/* A port on the loopback address of family that was free a moment ago. */
int free_port(int family);
/* "127.0.0.1:P" or "[::1]:P" into buf; returns buf. */
char *loop_addr(char *buf, size_t len, int family, int port);

/* Blocking connect to the loopback address; send/recv time out after E2E_HANG_MS. */
int tcp_connect(int family, int port);
/* Same, but returns -errno instead of failing. */
int tcp_connect_try(int family, int port);
/* Non-blocking connect: returns the fd, connected or in progress. */
int tcp_connect_nb(int family, int port);

void send_all(int fd, const void *buf, size_t n);
/* Send len bytes of the stream for seed. */
void send_gen(int fd, uint64_t seed, uint64_t len);
/* Read exactly n bytes; fails on EOF, error or timeout. */
void recv_exact(int fd, void *buf, size_t n);
/* Read until EOF (recv == 0) or max bytes; fails on error or timeout. */
uint64_t recv_to_eof(int fd, uint64_t *hash, uint64_t max);
/*
 * Write len bytes of seed through forwarder f (to an echo server) while
 * reading the echo concurrently, then half-close; the echo must come back
 * whole and intact, then EOF.
 */
struct fwd;
void fwd_echo_bulk(const struct fwd *f, uint64_t seed, uint64_t len);
/* The same through AF_INET port; returns the client's local port. */
int echo_bulk_port(int port, uint64_t seed, uint64_t len);
/*
 * Read exactly n bytes within ms without failing: 0, -ETIMEDOUT, -EPIPE
 * (EOF first) or -errno.
 */
int recv_exact_ms(int fd, void *buf, size_t n, int ms);
/* Assert the next recv returns 0 (EOF), not data and not an error. */
void recv_expect_eof(int fd);
/* Read until an error; assert it is ECONNRESET (EOF fails the test). */
void recv_expect_reset(int fd, int ms);
/* Close with SO_LINGER {1,0}: the peer gets a RST. */
void close_rst(int fd);

/* Connect, send n distinct bytes, read the echo, close. */
void echo_once(int family, int port, uint64_t seed, size_t n);
/*
 * echo_once without failing: 0 when the echo came back intact within ms,
 * else -errno (-EIO: echo differs).
 */
int echo_try(int family, int port, uint64_t seed, size_t n, int ms);
/* Send n bytes of seed on an open connection and check their echo. */
void echo_roundtrip(int fd, uint64_t seed, size_t n);

/* Sends len bytes of a stream on a thread, then optionally shuts down writing. */
struct sender {
	int fd;
	uint64_t seed;
	uint64_t len;
	int shut;
	uint64_t sent;
	int err; /* errno of the failure, 0 */
	pthread_t th;
};

void sender_start(struct sender *s, int fd, uint64_t seed, uint64_t len, int shut);
/* Join; assert every byte was sent. */
void sender_join(struct sender *s);

/* ---- upstream servers on threads, one thread per connection ---- */

enum srv_kind {
	SRV_ECHO,      /* echo everything; close after EOF */
	SRV_SOURCE,    /* send len bytes of seed, close at once, read nothing */
	SRV_HALFCLOSE, /* read to EOF; reply {len, hash} + len bytes of seed hash^len; close */
	SRV_RST,       /* read at least one byte, then close with a RST */
	SRV_ID,	       /* send its identity (SRV_ID_LEN bytes) at once, then echo */
	SRV_HEAD,      /* record a leading PROXY header (srv_head_wait), then echo the rest */
};

#define SRV_ID_LEN   8 /* "srv0042\n" */
#define SRV_HEADS    32
#define SRV_HEAD_MAX 640

/* The PROXY header (or its absence: len 0) that one SRV_HEAD connection began with. */
struct srv_head {
	_Atomic int done;
	size_t len;
	unsigned char buf[SRV_HEAD_MAX];
};

struct srv {
	int lfd;
	int family;
	int port;
	enum srv_kind kind;
	uint64_t len;
	uint64_t seed;
	int id;			/* SRV_ID: identity sent to each client */
	int listening;		/* srv_listen ran: the accept thread exists */
	struct srv_head *heads; /* SRV_HEAD: SRV_HEADS slots in accept order */
	_Atomic int accepted;	/* connections */
	_Atomic int failures;	/* connections that could not be served */
	_Atomic int active;	/* connection threads running */
	_Atomic int eofs;	/* SRV_ECHO connections with data that ended with EOF */
	_Atomic int resets;	/* SRV_ECHO connections with data that ended with a reset */
	_Atomic int timeouts;	/* connections ended by io_timeout_ms without progress */
	/*
	 * How long a connection thread waits on one recv or send before it
	 * gives up and closes (SRV_IO_TIMEOUT_MS unless set between srv_bind
	 * and srv_listen). A test that keeps an upstream blocked on purpose
	 * (a client that does not read, for longer than that) must raise it:
	 * the close would reset a connection the test still means to use.
	 */
	int io_timeout_ms;
	pthread_t th;
};

/* Bind port 0 on the loopback address of family, listen, accept on a thread. */
void srv_start(struct srv *s, int family, enum srv_kind kind, uint64_t len, uint64_t seed);
/* srv_start for SRV_ID with identity id. */
void srv_start_id(struct srv *s, int family, int id);
/*
 * Bind port (0: any) on the loopback address of family without listening:
 * a connect to it is refused until srv_listen, which starts the server
 * on the same port (an upstream "down, then back" with no port race).
 * Fields such as id may be set in between.
 */
void srv_bind(struct srv *s, int family, enum srv_kind kind, int port);
void srv_listen(struct srv *s);
/*
 * SRV_HEAD: wait (bounded) for the header of the i-th accepted connection
 * (from 0); returns its bytes with *len (0: the connection began without
 * a PROXY header).
 */
const unsigned char *srv_head_wait(struct srv *s, int i, size_t *len);
/*
 * Stop accepting and wait (bounded) for the connection threads, which end
 * when their peers do: call it after the forwarder has stopped.
 */
void srv_stop(struct srv *s);
/* "127.0.0.1:P" of the server into buf. */
char *srv_addr(const struct srv *s, char *buf, size_t len);

/* Reply of SRV_HALFCLOSE: header of two little-endian words, then payload. */
struct halfclose_hdr {
	uint64_t len;
	uint64_t hash;
};

uint64_t halfclose_seed(uint64_t hash, uint64_t len);

/* ---- a silent upstream: SYNs get no answer ---- */

#define SILENT_FILL 8

/*
 * A listener with backlog 0 whose accept queue is full of connections
 * nobody accepts: the kernel drops further SYNs, so a connect to it
 * neither completes nor fails until the connector gives up. silent_start
 * checks that a further connect really hangs.
 */
struct silent {
	int lfd;
	int family;
	int port;
	int fill[SILENT_FILL];
	int nfill;
};

void silent_start(struct silent *q, int family);
void silent_stop(struct silent *q);

/* ---- clients with a chosen source address, and upstream identities ---- */

/* Port of a bound socket. */
int sock_local_port(int fd);
/*
 * Blocking connect to the loopback address of family, port, from source
 * address src ("127.0.0.2": any loopback alias works on Linux; NULL: the
 * kernel's choice). Send/recv time out after E2E_HANG_MS.
 */
int tcp_connect_from(int family, const char *src, int port);
/* Same, but returns -errno instead of failing. */
int tcp_connect_from_try(int family, const char *src, int port);

/* Read a SRV_ID identity from fd; returns the id (fails on anything else). */
int id_read(int fd);
/* Same without failing: the id, or -errno (-EPROTO: not an identity). */
int id_read_try(int fd, int ms);
/* Connect (from src, NULL: any), read the identity of the upstream, close. */
int id_query(int family, const char *src, int port);

/* ---- listeners of the child, from /proc ---- */

/*
 * Inodes (up to max into ino, which may be NULL) of the listening TCP
 * sockets on port held by process pid. Returns how many it holds.
 */
int proc_listen_inodes(pid_t pid, int port, unsigned long *ino, int max);
/* 1 when pid holds a listening socket on port. */
int proc_listening(pid_t pid, int port);
/* How many ports of lo..hi pid listens on (one pass over /proc, for thousands). */
int proc_listening_ports(pid_t pid, int lo, int hi);

/*
 * Wait up to ms until the child listens on every one of ports. Returns 1
 * when it does, 0 when it exited because an address was in use; fails
 * the test on any other exit or on time-out.
 */
int fwd_wait_listening(struct fwd *f, const int *ports, int n, int ms);
/* Wait up to ms until the child does (listening 1) or does not (0) listen on port; fails. */
void fwd_wait_port(struct fwd *f, int port, int listening, int ms);

/*
 * A free port of family below the kernel's ephemeral range, so that no
 * outgoing connection takes it before the forwarder binds it (reload
 * binds new ports long after they were picked).
 */
int pick_port(int family);
/*
 * The first of n consecutive such ports; for n > 1 free for a listener
 * with SO_REUSEADDR (sockfwd's listen ranges), TIME_WAIT there allowed.
 */
int pick_ports(int family, int n);

/* ---- the child's log ---- */

/*
 * Wait up to ms for a stderr line that holds a and b (b may be NULL);
 * a needle ending in a digit never matches the start of a longer number
 * ("127.0.0.1:4123" does not match "127.0.0.1:41234"). Returns 1 when found.
 */
int fwd_log_wait(struct fwd *f, int ms, const char *a, const char *b);
/* Lines of stderr that hold a and b (b may be NULL). */
int fwd_log_count(const struct fwd *f, const char *a, const char *b);
/* The first such line into buf (NUL terminated, "" when none); returns buf. */
char *fwd_log_line(const struct fwd *f, const char *a, const char *b, char *buf, size_t len);

/* ---- config files ---- */

#define CONF_PORTS 8

/*
 * A config file written from a template. In the text, @L0..@L7 become
 * listen ports picked here, @U0..@U7 the numbers in up[], @E the engine.
 */
struct fwd_conf {
	const char *engine;	      /* for @E */
	int family;		      /* of the @L ports (AF_INET when 0) */
	int nlisten;		      /* @L ports to pick */
	int consecutive;	      /* pick them as one range of consecutive ports */
	int up[CONF_PORTS];	      /* @U values */
	const char *extra[FWD_EXTRA]; /* arguments after -c FILE, NULL terminated */
	/* filled in */
	char path[64];
	int lport[CONF_PORTS];
	int picked;
};

/* Pick the @L ports (again). */
void conf_pick(struct fwd_conf *c);
/*
 * Write text into c->path, created on first use, with the placeholders
 * replaced; atomically (a rename), so a reload reads one version or the
 * other. Picks the ports first when not done yet.
 */
void conf_write(struct fwd_conf *c, const char *text);
/*
 * Write text and run sockfwd -c FILE extra..., then wait until every @L
 * port of text listens (every picked port when consecutive). Picks new
 * ports and retries when an address was in use. f->port is lport[0].
 */
void fwd_start_conf(struct fwd *f, struct fwd_conf *c, const char *text);
/* Remove the file. */
void conf_remove(struct fwd_conf *c);

/*
 * Run sockfwd with argv to its exit (bounded: fails when it still runs
 * after ms or dies of a signal); stdout and stderr into out and err
 * (either may be NULL). Returns the exit status.
 */
int fwd_run(const char *const *argv, int ms, char *out, size_t outlen, char *err, size_t errlen);

void sleep_ms(int ms);
uint64_t now_ms(void);

#endif
