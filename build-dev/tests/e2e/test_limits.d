build-dev/tests/e2e/test_limits.o: tests/e2e/test_limits.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
