build-dev/tests/e2e/test_process.o: tests/e2e/test_process.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
