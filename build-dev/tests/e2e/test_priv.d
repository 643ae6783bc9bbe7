build-dev/tests/e2e/test_priv.o: tests/e2e/test_priv.c \
 tests/e2e/harness.h tests/e2e/spawn.h
tests/e2e/harness.h:
tests/e2e/spawn.h:
