build-dev/tests/e2e/test_metrics.o: tests/e2e/test_metrics.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
