# sockfwd: `make` builds build/sockfwd; `make URING=1` adds the io_uring engine.
# `make test` runs the unit and end-to-end tests, `make asan` the same under
# AddressSanitizer and UndefinedBehaviorSanitizer. Missing Debian packages
# are installed by tools/install-deps.sh.

PREFIX  ?= /usr/local
DESTDIR ?=
# Where `make install` puts things (docs/operations.md, "Installing").
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
DOCDIR    ?= $(PREFIX)/share/doc/sockfwd
UNITDIR   ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
CC      ?= cc
URING   ?= 0
WERROR  ?= 0
V       ?= 0

Q := $(if $(filter 1,$(V)),,@)

CPPFLAGS_BASE := -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS_BASE   := -std=gnu11 -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -pthread
LDLIBS_BASE   := -pthread -lconfig -lmicrohttpd -lsystemd

# src/core: rules, config, connections, workers; src/event: the readiness
# loop; src/engine: one file per engine; src/policy: balancing, ACLs, PROXY.
SRC_URING := src/engine/uring.c src/engine/uring_bufs.c
SRC_LIB   := $(filter-out $(SRC_URING),$(wildcard src/core/*.c src/event/*.c src/engine/*.c src/policy/*.c src/dgram/*.c))
ifeq ($(URING),1)
SRC_LIB       += $(SRC_URING)
CPPFLAGS_BASE += -DSF_HAVE_URING
LDLIBS_BASE   += -luring
endif
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif

SRC_MAIN := src/main.c
SRC_UNIT := $(wildcard tests/unit/*.c)
SRC_E2E  := $(wildcard tests/e2e/*.c)

ALL_CPPFLAGS = $(CPPFLAGS_BASE) $(CPPFLAGS)
ALL_CFLAGS   = $(CFLAGS_BASE) $(EXTRA_CFLAGS) $(CFLAGS)
ALL_LDLIBS   = $(LDLIBS_BASE) $(LDLIBS)

# One build tree per flavour; a stamp of the flags forces a rebuild when
# they change, so stale objects are never linked.
B ?= build
FLAGS_STAMP := $(B)/.flags

.PHONY: bench bench-full deps-bench
FORMAT_SRC = $(wildcard src/*.c src/*/*.c src/*/*.h include/sockfwd/*.h tests/*/*.c tests/*/*.h tools/*.c tools/*/*.c tools/*/*.h)

.PHONY: fuzz fuzz-build deps-fuzz test-grow analyze deps-analyze deps-build all test test-unit test-e2e check-man asan tsan coverage soak install uninstall deb clean deps deps-test format FORCE

all: $(B)/sockfwd

$(FLAGS_STAMP): FORCE
	@mkdir -p $(B)
	@echo '$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDLIBS) $(LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(ALL_LDLIBS) $(LDFLAGS)' > $@

$(B)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

OBJ_LIB  := $(SRC_LIB:%.c=$(B)/%.o)
OBJ_MAIN := $(SRC_MAIN:%.c=$(B)/%.o)
OBJ_UNIT := $(SRC_UNIT:%.c=$(B)/%.o)
OBJ_E2E  := $(SRC_E2E:%.c=$(B)/%.o)

$(B)/sockfwd: $(OBJ_LIB) $(OBJ_MAIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS)

$(B)/test_unit: $(OBJ_UNIT) $(OBJ_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ -lcriterion $(ALL_LDLIBS)

$(B)/test_e2e: $(OBJ_E2E)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ -lcriterion $(ALL_LDLIBS)

# Tests: the unit tests, then the real binary end to end for every engine
# compiled in. Criterion's --jobs keeps the 2-core machine from being
# oversubscribed by the heavy end-to-end transfers.
TEST_JOBS ?= 2
E2E_JOBS  ?= 1

test: deps-test
	$(Q)$(MAKE) --no-print-directory test-unit test-e2e check-man check-sfload

test-unit: $(B)/test_unit
	$(B)/test_unit --jobs $(TEST_JOBS) $(TEST_ARGS)

test-e2e: $(B)/sockfwd $(B)/test_e2e $(B)/libsffault.so
	SOCKFWD_BIN=$(B)/sockfwd $(B)/test_e2e --jobs $(E2E_JOBS) $(TEST_ARGS)

# The fault injection shim the e2e suite preloads into the forwarder
# (tests/fault/fault.c): built without sanitizers, it only forwards calls.
$(B)/libsffault.so: tests/fault/fault.c $(FLAGS_STAMP)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS_BASE) $(CFLAGS_BASE) -fPIC -shared -o $@ $< -ldl

# The manual pages: mandoc lint clean, every option of -h in sockfwd(1),
# every key of the config loader in sockfwd.conf(5), examples that load.
check-man: $(B)/sockfwd
	tools/check-man.sh $(B)/sockfwd

# The bench's load generator against its own servers: UDP counts by
# sequence number, the TCP workloads still run (a few seconds).
.PHONY: check-sfload
check-sfload: $(B)/sfload
	tools/check-sfload.sh $(B)/sfload

# Sanitizers: a separate tree so normal objects are never mixed in.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

asan: deps-test
	$(Q)$(MAKE) --no-print-directory B=build/asan EXTRA_CFLAGS='$(ASAN_FLAGS)' \
		LDFLAGS='$(ASAN_FLAGS) $(LDFLAGS)' test-unit test-e2e check-sfload
ifeq ($(URING)$(TEST_ARGS),1)
	$(Q)$(MAKE) --no-print-directory B=build/asan EXTRA_CFLAGS='$(ASAN_FLAGS)' \
		LDFLAGS='$(ASAN_FLAGS) $(LDFLAGS)' test-grow
endif

# The uring engine's buffer pool growth is built off (uring.c UR_POOL_GROW:
# it cost throughput at 512 streams, docs/benchmarks.md). This builds a
# forwarder with it on ($(B)/grow) and runs the pool's growth tests
# against it, so the code stays tested while it is off (make URING=1;
# make URING=1 asan runs it too unless TEST_ARGS narrows the suite).
test-grow: $(B)/test_e2e
	$(if $(filter 1,$(URING)),,$(error test-grow needs URING=1: the pool is the uring engine's))
	$(Q)$(MAKE) --no-print-directory B=$(B)/grow \
		EXTRA_CFLAGS='$(EXTRA_CFLAGS) -DUR_POOL_GROW=1' $(B)/grow/sockfwd
	SF_TEST_GROW=1 SOCKFWD_BIN=$(B)/grow/sockfwd $(B)/test_e2e --jobs 1 \
		--filter='uring_pool/*' $(TEST_ARGS)

# ThreadSanitizer: the forwarder built with -fsanitize=thread, driven by the
# end-to-end suite with two workers, then four (tools/run-tsan.sh; the test
# binary stays a normal build: Criterion aborts under TSan). Any report fails.
TSAN_FLAGS := -O1 -g -fsanitize=thread -fno-omit-frame-pointer

tsan: deps-test $(B)/test_e2e
	$(Q)$(MAKE) --no-print-directory B=build/tsan EXTRA_CFLAGS='$(TSAN_FLAGS)' \
		LDFLAGS='-fsanitize=thread $(LDFLAGS)' build/tsan/sockfwd build/tsan/libsffault.so
	tools/run-tsan.sh build/tsan/sockfwd $(B)/test_e2e $(TEST_ARGS)

# Coverage: unit and end-to-end suites on a --coverage build (build/cov),
# every forwarder the tests start adding its counts; lcov then writes line
# and branch coverage of src/ to build/cov/html/index.html and prints the
# totals. Fails when a test fails (the report is still written).
COV_FLAGS := -O0 -g --coverage
LCOV      := lcov --quiet --rc lcov_branch_coverage=1

coverage:
	@tools/install-deps.sh --check coverage >/dev/null 2>&1 || tools/install-deps.sh coverage
	rm -rf build/cov
	$(Q)rc=0; $(MAKE) --no-print-directory B=build/cov EXTRA_CFLAGS='$(COV_FLAGS)' \
		LDFLAGS='--coverage $(LDFLAGS)' test-unit test-e2e || rc=1; \
	$(LCOV) --capture --directory build/cov --output-file build/cov/all.info && \
	$(LCOV) --extract build/cov/all.info '$(CURDIR)/src/*' --output-file build/cov/src.info && \
	genhtml --quiet --branch-coverage --output-directory build/cov/html build/cov/src.info && \
	$(LCOV) --summary build/cov/src.info && \
	echo "coverage: build/cov/html/index.html" && exit $$rc

# Fuzzing (docs/testing.md): one libFuzzer harness per parser, tests/fuzz/
# fuzz_NAME.c, built with clang under ASan and UBSan in build/fuzz; `make
# fuzz` runs each for FUZZ_SECONDS and fails on any crash, leak, sanitizer
# report, timeout or memory blow-up (tools/fuzz.sh). FUZZ=NAME... picks some.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_ALL     := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ         ?= $(FUZZ_ALL)
FUZZ_SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
		-fno-sanitize-recover=undefined
FUZZ_B       := build/fuzz

$(B)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(OBJ_LIB) $(FLAGS_STAMP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(OBJ_LIB) \
		$(ALL_LDLIBS)

fuzz-build: deps-fuzz
	$(Q)$(MAKE) --no-print-directory B=$(FUZZ_B) CC=$(FUZZ_CC) \
		EXTRA_CFLAGS='$(FUZZ_SAN) -fsanitize=fuzzer-no-link' LDFLAGS='$(FUZZ_SAN)' \
		$(addprefix $(FUZZ_B)/fuzz_,$(FUZZ))

fuzz: fuzz-build
	tools/fuzz.sh $(FUZZ_B) $(FUZZ_SECONDS) $(FUZZ)

deps-fuzz:
	@tools/install-deps.sh --check build fuzz >/dev/null 2>&1 || tools/install-deps.sh build fuzz

# Static analysis of src/ (tools/analyze.sh): scan-build and cppcheck, both
# with zero findings.
analyze: deps-analyze
	tools/analyze.sh build/analyze

deps-analyze:
	@tools/install-deps.sh --check build uring analyze >/dev/null 2>&1 || \
		tools/install-deps.sh build uring analyze
# Chaos soak (docs/testing.md): the real forwarder, -j 2, every engine
# compiled in, between a load generator and misbehaving upstreams, with
# invariants checked throughout (tests/soak/soak.py, Python 3 stdlib only).
# SOAK_SECONDS of load split over the engines, plus about 8 s an engine for
# starts and checks; report in $(B)/soak/report.json.
SOAK_SECONDS ?= 300

soak: $(B)/sockfwd
	@tools/install-deps.sh --check soak >/dev/null 2>&1 || tools/install-deps.sh soak
	python3 tests/soak/soak.py --sockfwd $(B)/sockfwd --seconds $(SOAK_SECONDS) --out $(B)/soak $(SOAK_ARGS)

deps:
	tools/install-deps.sh build

deps-test:
	@tools/install-deps.sh --check test >/dev/null 2>&1 || tools/install-deps.sh test

$(B)/sockfwd: | deps-build
deps-build:
	@tools/install-deps.sh --check build >/dev/null 2>&1 || tools/install-deps.sh build

# The bench suite (bench/README.md): every engine and the peers installed,
# on the same load in one run. The load generator is tools/sfload/.
# sfload's modules (tools/sfload/sfload.h): main, util, stats, the TCP
# server and workloads (tcp_*), the UDP ones (udp_*).
SRC_SFLOAD := $(wildcard tools/sfload/*.c)
OBJ_SFLOAD := $(SRC_SFLOAD:%.c=$(B)/%.o)

$(B)/sfload: $(OBJ_SFLOAD)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(ALL_LDLIBS) -lm

deps-bench:
	@tools/install-deps.sh --check build bench >/dev/null 2>&1 || tools/install-deps.sh build bench

bench: deps-bench $(B)/sockfwd $(B)/sfload
	python3 bench/run.py --quick --sockfwd $(B)/sockfwd --sfload $(B)/sfload $(BENCH_ARGS)

bench-full: deps-bench $(B)/sockfwd $(B)/sfload
	python3 bench/run.py --full --sockfwd $(B)/sockfwd --sfload $(B)/sfload $(BENCH_ARGS)

# install: the binary, the manual pages, the example config, the systemd
# units of dist/systemd (their /usr/bin/sockfwd pointed at $(BINDIR)) and
# an empty $(SYSCONFDIR)/sockfwd for the units' NAME.conf files.
UNITS    := $(wildcard dist/systemd/*.service dist/systemd/*.socket)

install: $(B)/sockfwd
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(SYSCONFDIR)/sockfwd
	install -m 0755 $(B)/sockfwd $(DESTDIR)$(BINDIR)/sockfwd
	install -m 0644 man/sockfwd.1 $(DESTDIR)$(MANDIR)/man1/sockfwd.1
	install -m 0644 man/sockfwd.conf.5 $(DESTDIR)$(MANDIR)/man5/sockfwd.conf.5
	install -m 0644 docs/examples/sockfwd.conf $(DESTDIR)$(DOCDIR)/examples/sockfwd.conf
ifneq ($(UNITS),)
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do \
		sed 's|/usr/bin/sockfwd|$(BINDIR)/sockfwd|g' $$u > $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp && \
		mv -f $(DESTDIR)$(UNITDIR)/$${u##*/}.tmp $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
endif

# uninstall: what install put there; directories only when left empty.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sockfwd $(DESTDIR)$(MANDIR)/man1/sockfwd.1 \
		$(DESTDIR)$(MANDIR)/man5/sockfwd.conf.5 $(DESTDIR)$(DOCDIR)/examples/sockfwd.conf \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/sockfwd 2>/dev/null

# deb: a Debian package in $(B)/deb/ (debian/, tools/build-deb.sh);
# tools/check-deb.sh checks its contents.
deb:
	@tools/install-deps.sh --check deb >/dev/null 2>&1 || tools/install-deps.sh deb
	tools/build-deb.sh $(B)/deb

format:
	clang-format -i $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(B) -name '*.d' 2>/dev/null)
