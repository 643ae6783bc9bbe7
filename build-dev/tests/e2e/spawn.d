build-dev/tests/e2e/spawn.o: tests/e2e/spawn.c tests/e2e/spawn.h \
 tests/e2e/harness.h
tests/e2e/spawn.h:
tests/e2e/harness.h:
