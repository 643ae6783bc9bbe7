build-dev/tests/e2e/test_restart.o: tests/e2e/test_restart.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
