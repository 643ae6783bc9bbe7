build-dev/tests/e2e/test_config.o: tests/e2e/test_config.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
