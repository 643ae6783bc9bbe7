build-dev/tests/e2e/test_transfer.o: tests/e2e/test_transfer.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
