build-dev/tests/e2e/test_reload.o: tests/e2e/test_reload.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
