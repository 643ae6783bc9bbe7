/*
 * sfload: the load generator and servers of the sockfwd bench suite.
 *
 * main.c parses the command line and runs one subcommand; util.c and
 * stats.c hold what every workload shares (clock, CPU time, addresses,
 * latency samples); tcp_*.c are the TCP server and workloads (tcp_conn.c
 * their sockets), udp_*.c the UDP ones (udp_conn.c their sockets, udp.h
 * their wire format).
 */
#ifndef SFLOAD_H
#define SFLOAD_H

#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define SL_CHUNK	       (256u * 1024)	  /* default stream write/read size */
#define SL_MAX_EVENTS	       256		  /* epoll batch */
#define SL_LAT_CAP	       (8u * 1024 * 1024) /* latency samples kept at most */
#define SL_DRAIN_TIMEOUT_NS    10000000000ull	  /* wait for the sink's close */
#define SL_IDLE_OPEN_TIMEOUT_S 120		  /* opening all idle connections */
#define SL_IDLE_WAIT_MAX_S     300		  /* waiting on stdin while holding */
#define SL_INFLIGHT	       128		  /* idle: connects in flight at once */
#define NS		       1000000000ull

/* Stream direction (-d): c2s and s2c for TCP, c2s and echo for UDP. */
enum { DIR_C2S = 0, DIR_S2C, DIR_ECHO };

/* Options shared by every subcommand; unused ones keep their defaults. */
struct opts {
	struct sockaddr_in target;
	int have_target;
	unsigned n;	   /* streams, clients, connections, sessions */
	double seconds;	   /* measured duration */
	size_t size;	   /* chunk (stream), message (crr, rr) or datagram size */
	unsigned long max; /* crr: connections at most, 0 = no limit */
	unsigned naddr;	   /* spread over this many source addresses */
	int dir;	   /* stream direction, DIR_* */
	double hold;	   /* idle, udp-sessions: seconds to hold before the check */
	int wait_stdin;	   /* idle, udp-sessions: also wait for a line on stdin */
	double rate;	   /* udp-stream: datagrams per second, 0 = as fast as it can */
	unsigned batch;	   /* udp-stream: datagrams per sendmmsg/recvmmsg */
	unsigned window;   /* udp-sessions: first datagrams in flight at once */
	unsigned threads;  /* stream: threads the streams are spread over */
	int per_stream;	   /* stream: list every stream's bytes in the result */
};

/* Latency samples in nanoseconds, kept up to SL_LAT_CAP. */
struct lat {
	uint32_t *v;
	size_t n, cap;
	uint64_t dropped;
};

extern volatile sig_atomic_t stop_flag;

/* util.c */
void die(const char *what) __attribute__((noreturn));
void diex(const char *what) __attribute__((noreturn));
uint64_t now_ns(void);
double cpu_s(void);
void raise_nofile(void);
int parse_addr(const char *s, struct sockaddr_in *sa);
size_t parse_size(const char *s);
int wait_fd(int fd, short events, uint64_t deadline);
void sleep_until(uint64_t t);
void wait_stdin_line(void);
void catch_stop_signals(void);
void print_ready(const struct sockaddr_in *sa);

/* stats.c */
void lat_add(struct lat *l, uint64_t ns);
void lat_print(struct lat *l);
void lat_free(struct lat *l);

/* tcp_conn.c */
void set_nodelay(int fd);
int open_conn(const struct opts *o, unsigned idx);
int connect_wait(const struct opts *o);
void write_all(int fd, const void *buf, size_t len);

/* The subcommands: each returns the process exit code. */
int cmd_serve(const struct opts *o);
int cmd_stream(struct opts *o);
int cmd_crr(struct opts *o);
int cmd_rr(struct opts *o);
int cmd_idle(struct opts *o);
int cmd_udp_serve(const struct opts *o);
int cmd_udp_stream(struct opts *o);
int cmd_udp_rr(struct opts *o);
int cmd_udp_sessions(struct opts *o);

#endif /* SFLOAD_H */
