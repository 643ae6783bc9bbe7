build-dev/tests/e2e/test_pool.o: tests/e2e/test_pool.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
