/*
 * The configuration as written by the operator, from the command line or
 * a config file (libconfig syntax, docs/config.md), before any name is
 * resolved or socket opened: everything here is safe to unit test.
 *
 * rule.c turns a struct sf_config into a running generation (resolved
 * addresses, ACL tables, listeners); errors found there still point at
 * the file and line kept in each item.
 */
#ifndef SOCKFWD_CONFIG_H
#define SOCKFWD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "addr.h"
#include "net.h"

#define SF_NAME_MAX	 64   /* rule names, with the NUL */
#define SF_POOL_MAX	 64   /* upstreams per rule */
#define SF_WEIGHT_MAX	 256u /* upstream weight, 1 to this */
#define SF_DEFAULT_RULE	 "default"
#define SF_PROXY_TIMEOUT 5000u /* ms: --accept-proxy header deadline */

enum sf_balance {
	SF_BAL_ROUNDROBIN = 0,
	SF_BAL_LEASTCONN,
	SF_BAL_SOURCE,
	SF_BAL_FIRST,
};

/* PROXY protocol version sent upstream (--proxy-protocol). */
enum sf_pp { SF_PP_NONE = 0, SF_PP_V1 = 1, SF_PP_V2 = 2 };

/* Policy keys: a rule inherits each key it does not set from defaults. */
enum {
	SF_P_BALANCE = 1u << 0,
	SF_P_MAX_FAILS = 1u << 1,
	SF_P_FAIL_TIMEOUT = 1u << 2,
	SF_P_CONNECT_TIMEOUT = 1u << 3,
	SF_P_IDLE_TIMEOUT = 1u << 4,
	SF_P_KEEPALIVE = 1u << 5,
	SF_P_MAX_CONNS = 1u << 6,
	SF_P_ALLOW = 1u << 7, /* allow and deny lists replace the defaults' whole */
	SF_P_DENY = 1u << 8,
	SF_P_PROXY_PROTOCOL = 1u << 9,
	SF_P_ACCEPT_PROXY = 1u << 10,
	SF_P_SNDBUF = 1u << 11,
	SF_P_RCVBUF = 1u << 12,
	/* UDP rules (protocol = udp); bits far from the others' so additions do not collide */
	SF_P_UDP_TIMEOUT = 1u << 20,
	SF_P_MAX_SESSIONS = 1u << 21,
};

/*
 * Meet and bridge policy keys: high bits of their own, merged by their
 * own loop (config.c, pair_merge), so other key families can grow
 * from bit 11 up without meeting them.
 */
enum {
	SF_P_MEET_TIMEOUT = 1u << 22,
	SF_P_PAIRS = 1u << 23,
};

/* What a rule does with its addresses (config: mode = ...). */
enum sf_mode {
	SF_MODE_FORWARD = 0, /* accept on listen, connect to an upstream */
	SF_MODE_MEET,	     /* accept one client on each of two listens, join them */
	SF_MODE_BRIDGE,	     /* connect to each of two upstreams, join them */
};

#define SF_PAIRS_MAX 1024u /* --pairs, pairs = */

/* sndbuf, rcvbuf: 0 (the kernel's autotuning), or this range in bytes. */
#define SF_MIN_SOCKBUF 1024u
#define SF_MAX_SOCKBUF (64u * 1024 * 1024)

/* Built-in defaults of the policy keys. */
#define SF_DEFAULT_CONNECT_TIMEOUT_MS 10000u
#define SF_DEFAULT_FAIL_TIMEOUT_MS    10000u
#define SF_DEFAULT_MAX_FAILS	      1u
#define SF_DEFAULT_UDP_TIMEOUT_MS     60000u
#define SF_DEFAULT_MAX_SESSIONS	      65536u
#define SF_MAX_SESSIONS_MAX	      (1u << 24)

/* A rule's transport (protocol = tcp | udp; -u on the command line). */
enum sf_proto { SF_PROTO_TCP = 0, SF_PROTO_UDP = 1 };

struct sf_policy {
	unsigned set; /* SF_P_* keys given explicitly */
	int balance;  /* enum sf_balance */
	unsigned max_fails;
	uint64_t fail_timeout_ms;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms; /* 0: none */
	int keepalive;		  /* SO_KEEPALIVE idle 60 s, interval 10 s, 6 probes */
	unsigned max_conns;	  /* 0: none */
	struct sf_cidr *allow;	  /* malloc'd arrays */
	size_t nallow;
	struct sf_cidr *deny;
	size_t ndeny;
	int proxy_protocol; /* enum sf_pp */
	int accept_proxy;
	struct sf_sockbufs bufs;  /* TCP: SO_SNDBUF, SO_RCVBUF of both sides; 0: the kernel's */
	uint64_t udp_timeout_ms;  /* UDP: a session ends after this without a datagram */
	unsigned max_sessions;	  /* UDP: sessions per rule; the least recently used goes */
	uint64_t meet_timeout_ms; /* meet: close a client waiting that long; 0: never */
	unsigned pairs;		  /* bridge: pairs kept (default 1) */
};

/* A listen address, or a port range host:first-last. */
struct sf_listen_conf {
	struct sf_hostport hp; /* hp.port is the first port */
	uint16_t port_last;    /* == hp.port for one port */
	int line;	       /* in the config file, 0 from the command line */
};

/*
 * An upstream: "host:port[-last]" then options, in a file as
 * "10.0.0.6:80 weight=2 backup", on the command line as
 * "10.0.0.6:80,weight=2,backup" (spaces and commas both separate).
 */
struct sf_upstream_conf {
	struct sf_hostport hp;
	uint16_t port_last; /* == hp.port unless a range */
	unsigned weight;    /* 1 to SF_WEIGHT_MAX, default 1 */
	int backup;	    /* used only when every other upstream is down */
	int line;
};

struct sf_rule_conf {
	char name[SF_NAME_MAX];
	int line;
	struct sf_listen_conf *listen; /* malloc'd */
	size_t nlisten;
	struct sf_upstream_conf *ups; /* malloc'd, in order */
	size_t nups;
	struct sf_policy pol; /* complete once sf_config_finish merged the defaults */
	int proto;	      /* enum sf_proto */
	int proto_line;	      /* line of its protocol key, 0 when not given */
	int mode;	      /* enum sf_mode */
};

/* Globals the command line set, so the file does not override them. */
enum {
	SF_G_ENGINE = 1u << 0,
	SF_G_THREADS = 1u << 1,
	SF_G_BUFFER_SIZE = 1u << 2,
	SF_G_PIPE_SIZE = 1u << 3,
	SF_G_LOGLEVEL = 1u << 4,
	SF_G_METRICS = 1u << 5,
	SF_G_USER = 1u << 6,
	SF_G_DRAIN_TIMEOUT = 1u << 7,
	SF_G_LOG_FORMAT = 1u << 8,
};

/* --log-format */
enum sf_logfmt { SF_LOGFMT_TEXT = 0, SF_LOGFMT_JSON };

#define SF_USER_MAX 256 /* USER[:GROUP], with the NUL */

struct sf_engine;

struct sf_config {
	/* globals */
	const struct sf_engine *engine;
	unsigned threads;
	size_t buffer_size;
	size_t pipe_size;
	int loglevel;		    /* enum sf_loglevel */
	unsigned gset;		    /* SF_G_* given on the command line */
	char *file;		    /* -c FILE (malloc'd), NULL for a command-line rule */
	int check;		    /* -t: validate and exit */
	int log_format;		    /* enum sf_logfmt */
	int has_metrics;	    /* metrics set: serve /metrics there */
	struct sf_hostport metrics; /* --metrics ADDR */
	char user[SF_USER_MAX];	    /* --user USER[:GROUP], "" for none */
	uint64_t drain_timeout_ms;  /* --drain-timeout: 0 for a fast stop */
	struct sf_policy defaults;  /* command-line policy flags, or the file's defaults {} */
	struct sf_rule_conf *rules; /* malloc'd */
	size_t nrules;
	int udp; /* -u: the command-line rule is UDP */
};

/*
 * Parse a duration: "250ms", "10s", "5m", "1h", or a bare number of
 * seconds. Returns 0 with *ms set, -EINVAL when malformed, -ERANGE past
 * a year.
 */
int sf_parse_duration(const char *s, uint64_t *ms);

/*
 * Parse one upstream, "host:port[-last][ ,]option..." with options
 * "weight=N" and "backup". Returns 0, or -EINVAL with a message in err.
 */
int sf_upstream_parse(const char *s, struct sf_upstream_conf *u, char *err, size_t errlen);

/*
 * Parse a listen address "host:port", "[v6]:port", ":port", each with an
 * optional range "first-last" in place of the port. Returns 0 or -EINVAL
 * with a message in err.
 */
int sf_listen_parse(const char *s, struct sf_listen_conf *l, char *err, size_t errlen);

/*
 * Read the config file cfg->file into cfg: globals not already set on
 * the command line (gset), defaults, rules. Every mistake (syntax,
 * unknown key, wrong type, bad value, duplicate rule, rule without listen
 * or upstream) comes back as -EINVAL with "FILE:LINE: message" in err.
 * Then sf_config_finish is still to be called.
 */
int sf_config_load(struct sf_config *cfg, char *err, size_t errlen);

/*
 * Merge cfg->defaults into every rule's policy for the keys the rule did
 * not set, and fill built-in defaults. Returns 0 or -EINVAL with a
 * message (a port range whose upstream range differs in length).
 */
int sf_config_finish(struct sf_config *cfg, char *err, size_t errlen);

/* Free what parsing allocated (rules, lists, file name); cfg may be reused. */
void sf_config_free(struct sf_config *cfg);

/*
 * Check "USER[:GROUP]" for --user (names or numeric ids; resolved only
 * when dropping privileges). Returns 0, or -EINVAL with a message.
 */
int sf_user_parse(const char *s, char *out, size_t outlen, char *err, size_t errlen);

/* "text" or "json" into an enum sf_logfmt; -EINVAL for anything else. */
int sf_logfmt_parse(const char *s);

/* "tcp" or "udp" for enum sf_proto. */
const char *sf_proto_name(int p);

/* "roundrobin" ... for enum sf_balance; NULL when out of range. */
const char *sf_balance_name(int b);

/* "forward", "meet" or "bridge" for enum sf_mode ("?" out of range); parse: -EINVAL. */
const char *sf_mode_name(int m);
int sf_mode_parse(const char *s);

#endif
