/*
 * Reload (SIGHUP re-reads the -c file): under a client loop that connects
 * without pause and a large transfer in flight, 20 reloads alternating
 * two configs refuse or reset nothing and the transfer arrives intact;
 * a listen address kept across a reload keeps its very socket; added
 * rules listen, removed ones stop accepting while their connections run
 * to their end, changed ones apply to new connections; an invalid file
 * is logged and the old rules keep serving.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELOADS	     20
#define RELOAD_MS    10000 /* bound for one reload to show */
#define BULK_LEN     (1024 * MiB)
#define BULK_HOLD    (16 * MiB) /* unread until the reloads are done */
#define BULK_SEED    77
#define LOOP_MAX     50000 /* client loop bound */
#define LOOP_BETWEEN 50	   /* clients that end between two reloads, at least */
#define LOOP_IO_MS   5000
#define RELOAD_CHUNK (256 * 1024)
#define INODES_MAX   16

/* Listening socket inodes of pid on port, sorted; their count. */
static int listen_set(pid_t pid, int port, unsigned long *ino)
{
	int n = proc_listen_inodes(pid, port, ino, INODES_MAX);

	cr_assert(n > 0 && n <= INODES_MAX, "%d listening sockets on port %d", n, port);
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && ino[k - 1] > ino[k]; k--) {
			unsigned long t = ino[k];

			ino[k] = ino[k - 1];
			ino[k - 1] = t;
		}
	return n;
}

/* The listening sockets on port are the very ones of before (n, ino). */
static void same_sockets(struct fwd *f, int port, int n, const unsigned long *ino, int reload)
{
	unsigned long now[INODES_MAX];
	int m = listen_set(f->pid, port, now);

	cr_assert(m == n && memcmp(now, ino, (size_t)n * sizeof(*ino)) == 0,
		  "after reload %d the listener on port %d is another socket (%d sockets, "
		  "first inode %lu; before %d, %lu): an address kept must keep its socket",
		  reload, port, m, now[0], n, ino[0]);
}

/*
 * SIGHUP, then wait until port listens and main has logged "reloaded":
 * the port listens as soon as main opened it, but only the log line says
 * every worker serves the new rules (before it, a client of a changed
 * rule may still meet the old one).
 */
static void reload_until_listening(struct fwd *f, int port)
{
	int before = fwd_log_count(f, "reloaded ", NULL);

	fwd_assert_alive(f);
	sys_assert(kill(f->pid, SIGHUP) == 0, "kill SIGHUP");
	fwd_wait_port(f, port, 1, RELOAD_MS);
	for (int i = 0; i < RELOAD_MS / 10 && fwd_log_count(f, "reloaded ", NULL) <= before; i++)
		sleep_ms(10);
	cr_assert_gt(fwd_log_count(f, "reloaded ", NULL), before,
		     "no 'reloaded' line within %d ms of SIGHUP", RELOAD_MS);
}

/* ---- the client loop (a thread: no assertions) ---- */

struct client_loop {
	int port;
	_Atomic int stop;
	_Atomic int done; /* the loop ended (stop, or LOOP_MAX clients) */
	_Atomic int ok;
	_Atomic int failed;
	/* The first failure: */
	int first_err;	      /* -errno (id_read_try's own for the identity) */
	int first_at;	      /* its index */
	int first_connect;    /* 1: the connect failed, 0: reading the identity */
	int first_stopped;    /* stop was set while it was in flight */
	uint64_t first_ms;    /* how long it took */
	char first_seen[192]; /* what the kernel showed of it then (loop_seen) */
	pthread_t th;
};

/* A TCP state as /proc/net/tcp numbers it, in words. */
static const char *tcp_state(unsigned st)
{
	static const char *const names[] = { "?",	   "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
					     "FIN_WAIT1",  "FIN_WAIT2",	  "TIME_WAIT", "CLOSE",
					     "CLOSE_WAIT", "LAST_ACK",	  "LISTEN",    "CLOSING" };

	return st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

/*
 * /proc/net/tcp's view of the forwarder's end of client fd on port, and
 * of port's listeners, in words: which of "not accepted" (the connection
 * waits in a listener's queue: its socket has no inode yet) or
 * "accepted" (the forwarder holds it), its state and queues, and how
 * many connections each listener holds unaccepted.
 */
static void loop_seen(int fd, int port, char *out, size_t len)
{
	struct sockaddr_in me;
	socklen_t mlen = sizeof(me);
	char line[512], lq[64] = "";
	size_t n = 0, q = 0;
	FILE *fp;

	snprintf(out, len, "no end seen in /proc/net/tcp");
	if (getsockname(fd, (struct sockaddr *)&me, &mlen) < 0 ||
	    (fp = fopen("/proc/net/tcp", "re")) == NULL)
		return;
	for (int i = 0; i < 10000000 && fgets(line, sizeof(line), fp) != NULL; i++) {
		unsigned lport, rport, st, tx, rx;
		unsigned long inode;

		if (sscanf(line, " %*d: %*x:%x %*x:%x %x %x:%x %*x:%*x %*x %*u %*u %lu", &lport,
			   &rport, &st, &tx, &rx, &inode) != 6 ||
		    (int)lport != port)
			continue;
		if (st == 0x0A && q < sizeof(lq))
			q += (size_t)snprintf(lq + q, sizeof(lq) - q, "%s%u", q ? " " : "", rx);
		else if (rport == ntohs(me.sin_port) && n < len)
			n += (size_t)snprintf(
				out + n, len - n,
				"%sthe forwarder's end of port %u: %s, %s, rx %u tx %u",
				n ? "; " : "", rport, inode ? "accepted" : "in a listener's queue",
				tcp_state(st), rx, tx);
	}
	fclose(fp);
	if (n == 0)
		n = (size_t)snprintf(out, len, "the forwarder has no end of port %u",
				     ntohs(me.sin_port));
	if (n < len)
		snprintf(out + n, len - n, "; unaccepted in the listeners: %s",
			 q ? lq : "no listener");
}

/*
 * Connect, read the upstream's identity, close: 0 or -errno, the
 * connect's or id_read_try's own (-ETIMEDOUT, -EPIPE for an EOF, -EPROTO
 * for bytes that are no identity). *connecting says which failed.
 */
static int loop_once(int port, int *connecting, char *seen, size_t seenlen)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = LOOP_IO_MS / 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	*connecting = 1;
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		r = -errno;
	} else {
		*connecting = 0;
		r = id_read_try(fd, LOOP_IO_MS);
		r = r >= 0 ? 0 : r;
		if (r < 0 && seen != NULL)
			loop_seen(fd, port, seen, seenlen);
	}
	close(fd);
	return r;
}

/* A failure of loop_once in words, as id_read words them. */
static const char *loop_err(int err)
{
	return err == EPROTO	  ? "not an identity"
	       : err == EPIPE	  ? "EOF"
	       : err == ETIMEDOUT ? "timed out"
				  : strerror(err);
}

static void *client_loop_main(void *arg)
{
	struct client_loop *l = arg;

	for (int i = 0; i < LOOP_MAX && !atomic_load(&l->stop); i++) {
		uint64_t t = now_ms();
		int connecting, r;

		r = loop_once(l->port, &connecting, l->failed == 0 ? l->first_seen : NULL,
			      sizeof(l->first_seen));

		if (r == 0) {
			l->ok++;
			continue;
		}
		if (l->failed++ == 0) {
			l->first_err = -r;
			l->first_at = i;
			l->first_connect = connecting;
			l->first_ms = now_ms() - t;
			l->first_stopped = atomic_load(&l->stop);
		}
	}
	atomic_store(&l->done, 1);
	return NULL;
}

/*
 * Let LOOP_BETWEEN more clients end (served or not), bounded by
 * RELOAD_MS, so that clients connect across every reload whatever the
 * speed of the machine: 20 reloads can take 0.4 s, or the loop can
 * spend its LOOP_MAX clients long before they end. A client that hangs
 * is the loop's to report.
 */
static void loop_wait_clients(struct client_loop *l)
{
	int base = atomic_load(&l->ok) + atomic_load(&l->failed);

	for (int i = 0; i < RELOAD_MS && !atomic_load(&l->done) &&
			atomic_load(&l->ok) + atomic_load(&l->failed) < base + LOOP_BETWEEN;
	     i++)
		sleep_ms(1);
}

/* ---- the bulk reader (a thread: no assertions) ---- */

struct bulk {
	int fd;
	uint64_t len;
	_Atomic int reloads_done;
	_Atomic uint64_t got;
	uint64_t bad_at; /* offset of the first byte that differs */
	int err;	 /* errno; EPIPE: early EOF, EILSEQ: bytes differ */
	pthread_t th;
};

/*
 * Read to EOF, comparing each chunk with the stream regenerated here
 * (cheaper than hashing 1 GiB, and it tells where the bytes went wrong);
 * keep the last BULK_HOLD bytes unread until the reloads are done.
 */
static void *bulk_main(void *arg)
{
	struct bulk *b = arg;
	unsigned char *buf = malloc(RELOAD_CHUNK), *want = malloc(RELOAD_CHUNK);
	uint64_t got = 0;
	struct gen g;

	gen_init(&g, BULK_SEED);
	if (buf == NULL || want == NULL) {
		b->err = ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < 100000000; i++) {
		ssize_t r;

		if (b->len - got <= BULK_HOLD && !atomic_load(&b->reloads_done)) {
			sleep_ms(5);
			continue;
		}
		r = recv(b->fd, buf, RELOAD_CHUNK, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			b->err = errno;
			break;
		}
		if (r == 0) {
			if (got != b->len)
				b->err = EPIPE;
			break;
		}
		if (got + (uint64_t)r > b->len) {
			b->err = E2BIG;
			break;
		}
		gen_fill(&g, want, (size_t)r);
		if (memcmp(buf, want, (size_t)r) != 0) {
			size_t k = 0;

			while (buf[k] == want[k])
				k++;
			b->bad_at = got + k;
			b->err = EILSEQ;
			break;
		}
		got += (uint64_t)r;
		atomic_store(&b->got, got);
	}
out:
	free(buf);
	free(want);
	return NULL;
}

static const char conf_a[] =
	"engine = \"@E\";\n"
	"threads = 2;\n"
	"rules = {\n"
	"  web = { listen = \"127.0.0.1:@L0\";\n"
	"          upstream = [ \"127.0.0.1:@U0\", \"127.0.0.1:@U1\" ];\n"
	"          balance = \"roundrobin\"; connect_timeout = \"5s\"; };\n"
	"  bulk = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U2\"; };\n"
	"  a_only = { listen = \"127.0.0.1:@L2\"; upstream = \"127.0.0.1:@U0\"; };\n"
	"};\n";

static const char conf_b[] =
	"engine = \"@E\";\n"
	"threads = 2;\n"
	"rules = {\n"
	"  web = { listen = \"127.0.0.1:@L0\";\n"
	"          upstream = [ \"127.0.0.1:@U0\", \"127.0.0.1:@U1\" ];\n"
	"          balance = \"first\"; connect_timeout = \"3s\"; };\n"
	"  bulk = { listen = \"127.0.0.1:@L1\"; upstream = \"127.0.0.1:@U2\";\n"
	"           connect_timeout = \"4s\"; };\n"
	"  b_only = { listen = \"127.0.0.1:@L3\"; upstream = \"127.0.0.1:@U1\"; };\n"
	"};\n";

/*
 * 20 SIGHUPs alternating conf_a and conf_b while a client loop connects
 * to the kept rule "web" without pause and a BULK_LEN transfer runs
 * through the kept rule "bulk": no client refused or reset, the transfer
 * intact, the kept listeners the same sockets throughout, and each
 * reload's added rule listening and serving.
 */
ENGINE_TEST(reload, under_load, 240)
{
	struct fwd_conf c = { .engine = engine, .nlisten = 4 };
	unsigned long web_ino[INODES_MAX], bulk_ino[INODES_MAX];
	struct client_loop loop = { 0 };
	struct bulk b = { 0 };
	struct srv s[2], src;
	int nweb, nbulk, e;
	uint64_t t0;
	struct fwd f;

	raise_nofile();
	for (int i = 0; i < 2; i++) {
		srv_start_id(&s[i], AF_INET, i);
		c.up[i] = s[i].port;
	}
	srv_start(&src, AF_INET, SRV_SOURCE, BULK_LEN, BULK_SEED);
	c.up[2] = src.port;
	fwd_start_conf(&f, &c, conf_a);
	nweb = listen_set(f.pid, c.lport[0], web_ino);
	nbulk = listen_set(f.pid, c.lport[1], bulk_ino);

	b.fd = tcp_connect(AF_INET, c.lport[1]);
	b.len = BULK_LEN;
	e = pthread_create(&b.th, NULL, bulk_main, &b);
	cr_assert(e == 0, "pthread_create: %s", strerror(e));
	loop.port = c.lport[0];
	e = pthread_create(&loop.th, NULL, client_loop_main, &loop);
	cr_assert(e == 0, "pthread_create: %s", strerror(e));
	/* The transfer is under way before the first reload. */
	for (int i = 0; i < 2000 && atomic_load(&b.got) == 0; i++)
		sleep_ms(5);
	cr_assert(atomic_load(&b.got) > 0, "the transfer did not start");

	t0 = now_ms();
	for (int r = 1; r <= RELOADS; r++) {
		int added = r % 2 ? c.lport[3] : c.lport[2];
		int removed = r % 2 ? c.lport[2] : c.lport[3];

		conf_write(&c, r % 2 ? conf_b : conf_a);
		reload_until_listening(&f, added);
		/* Done with this reload before the next: the removed rule stopped listening. */
		fwd_wait_port(&f, removed, 0, RELOAD_MS);
		cr_assert_geq(id_query(AF_INET, NULL, added), 0, "added rule");
		same_sockets(&f, c.lport[0], nweb, web_ino, r);
		same_sockets(&f, c.lport[1], nbulk, bulk_ino, r);
		loop_wait_clients(&loop);
	}
	cr_log_info("%s: %d reloads in %llu ms; %llu MiB of the transfer moved meanwhile", engine,
		    RELOADS, (unsigned long long)(now_ms() - t0),
		    (unsigned long long)(atomic_load(&b.got) / MiB));
	atomic_store(&loop.stop, 1);
	atomic_store(&b.reloads_done, 1);
	e = pthread_join(loop.th, NULL);
	cr_assert(e == 0, "pthread_join: %s", strerror(e));
	e = pthread_join(b.th, NULL);
	cr_assert(e == 0, "pthread_join: %s", strerror(e));

	cr_assert(loop.ok > 0, "the client loop was never served");
	cr_assert_eq(loop.failed, 0,
		     "%d of %d clients connecting during reloads failed; the first (number %d, "
		     "%s, after %llu ms%s): %s (%s)%s",
		     loop.failed, loop.ok + loop.failed, loop.first_at,
		     loop.first_connect ? "connecting" : "reading the identity",
		     (unsigned long long)loop.first_ms,
		     loop.first_stopped ? ", in flight when the reloads ended" : "",
		     loop_err(loop.first_err),
		     loop.first_connect ? "no connection" : loop.first_seen, fwd_note());
	cr_log_info("%s: %d clients served during the reloads", engine, loop.ok);
	cr_assert(b.err != EILSEQ, "the transfer arrived altered at byte %llu",
		  (unsigned long long)b.bad_at);
	cr_assert(b.err == 0, "the transfer failed after %llu of %llu bytes: %s%s",
		  (unsigned long long)atomic_load(&b.got), (unsigned long long)b.len,
		  b.err == EPIPE   ? "early EOF"
		  : b.err == E2BIG ? "more bytes than sent"
				   : strerror(b.err),
		  fwd_note());
	close(b.fd);
	fwd_stop(&f);
	for (int i = 0; i < 2; i++)
		srv_stop(&s[i]);
	srv_stop(&src);
	conf_remove(&c);
}

/*
 * An invalid file on SIGHUP is logged (the message names the file) and
 * changes nothing: the old rules serve, a rule of the invalid file does
 * not listen. A valid file after it is taken.
 */
ENGINE_TEST(reload, invalid_file_keeps_rules, 60)
{
	static const char good[] =
		"engine = \"@E\";\nthreads = 1;\n"
		"rules = {\n"
		"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"  extra = { listen = \"127.0.0.1:@L1\"; upstream = "
		"\"127.0.0.1:@U1\"; };\n"
		"};\n";
	static const char bad[] =
		"engine = \"@E\";\nthreads = 1;\n"
		"rules = {\n"
		"  web = { listen = \"127.0.0.1:@L0\"; upstream = \"127.0.0.1:@U0\"; };\n"
		"  fresh = { listen = \"127.0.0.1:@L2\"; upstream = "
		"\"127.0.0.1:@U1\"; };\n"
		"  broken = { listen = \"127.0.0.1:@L3\"; upstream = "
		"\"127.0.0.1:@U1\"; frobnicate = 1; };\n"
		"};\n";
	static const char good2[] = "engine = \"@E\";\nthreads = 1;\n"
				    "rules = {\n"
				    "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				    "\"127.0.0.1:@U0\"; };\n"
				    "  fresh = { listen = \"127.0.0.1:@L2\"; upstream = "
				    "\"127.0.0.1:@U1\"; };\n"
				    "};\n";
	struct fwd_conf c = { .engine = engine, .nlisten = 4 };
	struct srv s[2];
	struct fwd f;

	for (int i = 0; i < 2; i++) {
		srv_start_id(&s[i], AF_INET, i);
		c.up[i] = s[i].port;
	}
	fwd_start_conf(&f, &c, good);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[0]), 0);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[1]), 1);

	conf_write(&c, bad);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, RELOAD_MS, c.path, NULL),
		  "an invalid file on SIGHUP: no message naming %s within %d ms; stderr:\n%s",
		  c.path, RELOAD_MS, fwd_stderr_tail(&f));
	fwd_assert_alive(&f);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[0]), 0, "rule web after a bad reload");
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[1]), 1, "rule extra after a bad reload");
	cr_assert(!proc_listening(f.pid, c.lport[2]) && !proc_listening(f.pid, c.lport[3]),
		  "a rule of the invalid file listens");

	conf_write(&c, good2);
	reload_until_listening(&f, c.lport[2]);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[2]), 1, "rule fresh after a good reload");
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[0]), 0, "rule web after a good reload");
	fwd_stop(&f);
	for (int i = 0; i < 2; i++)
		srv_stop(&s[i]);
	conf_remove(&c);
}

/*
 * An @include naming a directory on SIGHUP: libconfig 1.5 exits the
 * process from inside its parser on one, so sockfwd refuses it first; the
 * reload fails like any invalid file and the rules keep serving (found by
 * tests/fuzz/fuzz_config). The reload path is the engines' common code:
 * one engine is enough.
 */
Test(reload, include_of_a_directory_keeps_rules, .timeout = 60)
{
	static const char good[] = "engine = \"@E\";\nthreads = 1;\n"
				   "rules = {\n"
				   "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				   "\"127.0.0.1:@U0\"; };\n"
				   "};\n";
	static const char bad[] = "engine = \"@E\";\nthreads = 1;\n@include \".\"\n"
				  "rules = {\n"
				  "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "};\n";
	struct fwd_conf c = { .engine = "epoll", .nlisten = 1 };
	struct srv s;
	struct fwd f;

	srv_start_id(&s, AF_INET, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, good);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[0]), 0);

	conf_write(&c, bad);
	sys_assert(kill(f.pid, SIGHUP) == 0, "kill SIGHUP");
	cr_assert(fwd_log_wait(&f, RELOAD_MS, c.path, "directory"),
		  "@include of a directory on SIGHUP: no message naming %s within %d ms; "
		  "stderr:\n%s",
		  c.path, RELOAD_MS, fwd_stderr_tail(&f));
	fwd_assert_alive(&f);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[0]), 0, "rule web after the bad reload");
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&c);
}

/*
 * pipe_size and buffer_size are read at start (the pools and the splice
 * pipe cap are sized then): a reload that changes them says so, and
 * applies the rest of the file (here a new rule).
 */
Test(reload, pipe_size_change_warns, .timeout = 60)
{
	static const char one[] = "engine = \"@E\";\nthreads = 1;\npipe_size = \"256k\";\n"
				  "rules = {\n"
				  "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "};\n";
	static const char two[] = "engine = \"@E\";\nthreads = 1;\npipe_size = \"1m\";\n"
				  "rules = {\n"
				  "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "  more = { listen = \"127.0.0.1:@L1\"; upstream = "
				  "\"127.0.0.1:@U0\"; };\n"
				  "};\n";
	struct fwd_conf c = { .engine = "splice", .nlisten = 2 };
	struct srv s;
	struct fwd f;

	srv_start_id(&s, AF_INET, 0);
	c.up[0] = s.port;
	fwd_start_conf(&f, &c, one);
	cr_assert_eq(fwd_log_count(&f, "pipe_size changes", NULL), 0, "warned at start");
	conf_write(&c, two);
	reload_until_listening(&f, c.lport[1]);
	cr_assert_eq(id_query(AF_INET, NULL, c.lport[1]), 0, "rule more after the reload");
	cr_assert(fwd_log_wait(&f, RELOAD_MS, "pipe_size changes take effect at restart", NULL),
		  "no warning about pipe_size; stderr:\n%s", fwd_stderr_tail(&f));
	fwd_stop(&f);
	srv_stop(&s);
	conf_remove(&c);
}

/*
 * A removed rule stops accepting (its port is closed: connects are
 * refused) while its established connection carries on to its natural
 * end; a changed rule (web: another upstream) applies to new connections
 * only; an added rule listens; the kept address keeps its socket.
 */
ENGINE_TEST(reload, removed_changed_added, 60)
{
	static const char before[] = "engine = \"@E\";\nthreads = 2;\n"
				     "rules = {\n"
				     "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				     "\"127.0.0.1:@U0\"; };\n"
				     "  old = { listen = \"127.0.0.1:@L1\"; upstream = "
				     "\"127.0.0.1:@U2\"; };\n"
				     "};\n";
	static const char after[] = "engine = \"@E\";\nthreads = 2;\n"
				    "rules = {\n"
				    "  web = { listen = \"127.0.0.1:@L0\"; upstream = "
				    "\"127.0.0.1:@U1\"; };\n"
				    "  new = { listen = \"127.0.0.1:@L2\"; upstream = "
				    "\"127.0.0.1:@U2\"; };\n"
				    "};\n";
	struct fwd_conf c = { .engine = engine, .nlisten = 3 };
	unsigned long ino[INODES_MAX];
	struct srv s[2], echo;
	int web_fd, old_fd, n, r;
	struct fwd f;

	for (int i = 0; i < 2; i++) {
		srv_start_id(&s[i], AF_INET, i);
		c.up[i] = s[i].port;
	}
	srv_start(&echo, AF_INET, SRV_ECHO, 0, 0);
	c.up[2] = echo.port;
	fwd_start_conf(&f, &c, before);
	n = listen_set(f.pid, c.lport[0], ino);
	web_fd = tcp_connect(AF_INET, c.lport[0]);
	cr_assert_eq(id_read(web_fd), 0);
	old_fd = tcp_connect(AF_INET, c.lport[1]);
	echo_roundtrip(old_fd, 1, 1000);

	conf_write(&c, after);
	reload_until_listening(&f, c.lport[2]);
	fwd_wait_port(&f, c.lport[1], 0, RELOAD_MS);
	r = tcp_connect_try(AF_INET, c.lport[1]);
	if (r >= 0)
		close(r);
	cr_assert_eq(r, -ECONNREFUSED, "a connect to the removed rule's port: %s",
		     r >= 0 ? "accepted" : strerror(-r));
	same_sockets(&f, c.lport[0], n, ino, 1);

	/* Established connections go on, each with the rule it began with. */
	for (int i = 0; i < 3; i++) {
		echo_roundtrip(old_fd, 10 + (uint64_t)i, 64 * 1024);
		echo_roundtrip(web_fd, 20 + (uint64_t)i, 1000);
	}
	sys_assert(shutdown(old_fd, SHUT_WR) == 0, "shutdown");
	recv_expect_eof(old_fd);
	close(old_fd);
	close(web_fd);

	for (int i = 0; i < 2; i++)
		cr_assert_eq(id_query(AF_INET, NULL, c.lport[0]), 1,
			     "a new client of the changed rule web went to its old upstream");
	echo_once(AF_INET, c.lport[2], 30, 1000);
	fwd_stop(&f);
	for (int i = 0; i < 2; i++)
		srv_stop(&s[i]);
	srv_stop(&echo);
	conf_remove(&c);
}
