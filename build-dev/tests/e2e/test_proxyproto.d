build-dev/tests/e2e/test_proxyproto.o: tests/e2e/test_proxyproto.c \
 tests/e2e/harness.h
tests/e2e/harness.h:
