build-dev/tests/e2e/test_log.o: tests/e2e/test_log.c tests/e2e/harness.h \
 tests/e2e/spawn.h
tests/e2e/harness.h:
tests/e2e/spawn.h:
