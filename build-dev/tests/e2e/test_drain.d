build-dev/tests/e2e/test_drain.o: tests/e2e/test_drain.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
