build-dev/tests/e2e/test_systemd.o: tests/e2e/test_systemd.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
