build-dev/tests/e2e/test_errors.o: tests/e2e/test_errors.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
