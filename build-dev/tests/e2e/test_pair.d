build-dev/tests/e2e/test_pair.o: tests/e2e/test_pair.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
