build-dev/tests/e2e/test_cli.o: tests/e2e/test_cli.c tests/e2e/harness.h
tests/e2e/harness.h:
