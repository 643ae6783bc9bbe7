build-dev/tests/e2e/test_uring.o: tests/e2e/test_uring.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
